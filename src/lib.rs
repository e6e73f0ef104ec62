//! latent-tui: train, measure and explore the latent spaces of text autoencoders.
//!
//! The library is layered by responsibility: [`corpus`] and [`vocab`] turn text into word ids,
//! [`data`] groups them into batches, [`model`] holds the candle models, [`train`], [`eval`]
//! and [`checkpoint`] work with them, [`engine`] is the sentence-level API over a loaded
//! checkpoint, [`explore`] the pure operations on codes and [`tasks`] the sentence-level tasks the
//! command line and the explorer share. Only [`tui`] knows about terminals.
//!
//! Bag-of-words models and semantic hashing: [`bow`] trains and loads NVDM, NASH and LSH,
//! [`coder`] reads codes and features off any checkpoint, [`hamming`] packs codes and finds the
//! exact Hamming top-k, [`search`] is a corpus's saved index, [`cosine`] the exact cosine top-k
//! and multi-sample matching of continuous codes with its saved index, [`retrieval`] measures
//! precision@k, [`probe`] classifies labels from latent features and [`projection`] maps codes
//! to 2-D.
//!
//! Structure: [`cluster`] clusters codes (Hamming k-medoids / k-modes, k-means), labels clusters
//! and scores them against gold labels; [`structure`] applies that, attribute vectors and
//! analogies to a model's codes of a corpus.

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
pub mod hamming;
pub mod meaning;
pub mod model;
pub mod probe;
pub mod projection;
pub mod retrieval;
pub mod search;
pub mod structure;
pub mod tasks;
pub mod train;
pub mod train_job;
pub mod tui;
pub mod vocab;

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
