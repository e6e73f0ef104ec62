//! latent-tui: train, measure and explore the latent spaces of text autoencoders.
//!
//! The library is layered by responsibility: [`corpus`] and [`vocab`] turn text into word ids,
//! [`data`] groups them into batches, [`model`] holds the candle models, [`train`], [`eval`]
//! and [`checkpoint`] work with them, [`engine`] is the sentence-level API over a loaded
//! checkpoint, [`explore`] the pure operations on codes. Only [`tui`] knows about terminals;
//! [`printable`] makes a text from a file safe for the command line to print.
//!
//! [`coder`] is the one loaded-model type over every kind, with the sequence family's half
//! ([`coder::seq`]: the sentence-level tasks the command line and the explorer share), the
//! bag-of-words family's half ([`coder::bow`]) and the types both return ([`coder::types`]).
//!
//! Bag-of-words models and semantic hashing: [`bow`] trains and loads NVDM, NASH and LSH, [`hamming`] packs codes and finds the
//! exact Hamming top-k, [`cosine`] the exact cosine top-k and multi-sample matching of
//! continuous codes, [`index`] a corpus's saved index (binary or continuous, one layer under
//! both), [`retrieval`] measures
//! precision@k, [`probe`] classifies labels from latent features and [`projection`] maps codes
//! to 2-D by PCA; [`map`] lays a corpus index out in 2-D keeping neighbourhoods (UMAP-style),
//! cached beside the checkpoint.
//!
//! Structure: [`cluster`] clusters codes (Hamming k-medoids / k-modes, k-means), labels clusters
//! and scores them against gold labels; [`structure`] applies that, attribute vectors and
//! analogies to a model's codes of a corpus; [`pipeline`] is the corpus-scale work (neighbour
//! index, codes to cluster, clustering, decodings and analogies) the explorer's worker and the
//! command line both call.

pub mod bench;
pub mod bow;
pub mod checkpoint;
pub mod cli;
pub mod cluster;
pub mod coder;
pub mod corpus;
pub mod cosine;
pub mod data;
pub mod engine;
pub mod eval;
pub mod explore;
pub mod factors;
pub mod hamming;
pub mod index;
pub mod map;
pub mod meaning;
pub mod model;
pub mod pipeline;
pub mod printable;
pub mod probe;
pub mod projection;
pub mod retrieval;
pub mod structure;
pub mod train;
pub mod train_job;
pub mod tui;
pub mod vocab;

/// The binary index under its old path (now [`index::binary`], on the shared layer [`index`]),
/// kept so code written against it still builds.
pub mod search {
    pub use crate::index::binary::*;
    pub use crate::index::{
        default_path, file_sha256, index_entries, load_or_build as cached_beside, CachedIndex,
        IndexEntries, IndexMeta,
    };
}

/// The sequence family's sentence-level tasks under their old path (now [`coder::seq`], with
/// the shared types in [`coder::types`]), kept so code written against it still builds.
pub mod tasks {
    pub use crate::coder::seq::*;
    pub use crate::coder::types::{
        walk_between, EncodedSentence, PathPoint, PathWalk, PriorChoice, Samples, SplitStats,
        SAMPLE_CHUNK,
    };
}

/// Keeps freed memory in the process instead of handing it back to the kernel.
///
/// Every training step allocates and frees the same large buffers (the output layer's logits
/// are tens of MB). glibc serves blocks over 128 kB with fresh `mmap`s and trims the heap on
/// free, so each step page-faults its buffers back in and the kernel zeroes them (the bench
/// ran 248k page faults instead of 65k with this). PyTorch keeps a caching allocator for the
/// same reason. Call once at start-up, before threads allocate.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes glibc's allocation thresholds.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
    }
}
