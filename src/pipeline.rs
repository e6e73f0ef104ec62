//! The corpus-scale pipelines the explorer's background worker and the command line share: the
//! neighbour index of a model's corpus, the codes to cluster, a clustering with its decoded
//! centres, and the Clusters tab's structure work (a decoding, an analogy). One function each,
//! so a tab and its command compute the same thing for the same seed, under one freshness rule
//! for the index cached beside the checkpoint ([`crate::index::IndexMeta::is_fresh`]).

use anyhow::{bail, Result};

use crate::cluster::{ClusterMethod, ClusterOptions};
use crate::coder::{Coder, FeatureKind};
use crate::corpus::{Corpus, Split};
use crate::index::{self, CachedIndex, ContinuousIndex, CorpusIndex};
use crate::structure::{analogy, cluster_corpus, ClusterReport, CodedCorpus, DECODED_WORDS};

/// A corpus index of either kind of code: bits searched by Hamming distance, or continuous
/// codes (μ) by cosine similarity.
#[derive(Debug)]
pub enum CodeIndex {
    Hamming(CorpusIndex),
    Cosine(ContinuousIndex),
}

impl CodeIndex {
    pub fn len(&self) -> usize {
        match self {
            CodeIndex::Hamming(ix) => ix.len(),
            CodeIndex::Cosine(ix) => ix.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Width of the codes.
    pub fn dim(&self) -> usize {
        match self {
            CodeIndex::Hamming(ix) => ix.bits(),
            CodeIndex::Cosine(ix) => ix.dim(),
        }
    }

    /// The corpus splits indexed, as `train` or `train+valid`.
    pub fn splits(&self) -> String {
        match self {
            CodeIndex::Hamming(ix) => ix.meta.splits.join("+"),
            CodeIndex::Cosine(ix) => ix.meta.splits.join("+"),
        }
    }

    /// The codes with the distance the map keeps: Hamming for bits, cosine for μ.
    pub fn codes(&self) -> crate::map::Codes<'_> {
        match self {
            CodeIndex::Hamming(ix) => crate::map::Codes::Bits(&ix.codes),
            CodeIndex::Cosine(ix) => crate::map::Codes::Unit(ix.unit_vectors()),
        }
    }

    pub fn meta(&self) -> &index::IndexMeta {
        match self {
            CodeIndex::Hamming(ix) => &ix.meta,
            CodeIndex::Cosine(ix) => &ix.meta,
        }
    }

    pub fn texts(&self) -> &[String] {
        match self {
            CodeIndex::Hamming(ix) => &ix.texts,
            CodeIndex::Cosine(ix) => &ix.texts,
        }
    }

    pub fn labels(&self) -> &[Option<u32>] {
        match self {
            CodeIndex::Hamming(ix) => &ix.labels,
            CodeIndex::Cosine(ix) => &ix.labels,
        }
    }

    pub fn label_names(&self) -> &[String] {
        match self {
            CodeIndex::Hamming(ix) => &ix.label_names,
            CodeIndex::Cosine(ix) => &ix.label_names,
        }
    }

    /// Entry `i`'s label, an index into the label names.
    pub fn label(&self, i: usize) -> Option<u32> {
        match self {
            CodeIndex::Hamming(ix) => ix.labels[i],
            CodeIndex::Cosine(ix) => ix.labels[i],
        }
    }
}

/// The index of `corpus`'s train split for `coder`'s kind of code, cached beside the
/// checkpoint: loaded when fresh, else encoded now and saved there ([`index::load_or_build`]).
/// The explorer's Neighbors and Clusters tabs and `search` use it.
pub fn neighbor_index(
    coder: &Coder,
    corpus: &Corpus,
    progress: &mut dyn FnMut(f64),
) -> Result<CachedIndex<CodeIndex>> {
    let caps = coder.capabilities();
    if !caps.encodes {
        bail!(
            "an `{}` model has no encoder, so sentences have no codes to index",
            caps.name
        );
    }
    if !caps.is_binary() {
        let c = continuous_index(coder, corpus, progress)?;
        return Ok(CachedIndex {
            index: CodeIndex::Cosine(c.index),
            path: c.path,
            from_disk: c.from_disk,
            save_error: c.save_error,
        });
    }
    let c = binary_index(coder, corpus, progress)?;
    Ok(CachedIndex {
        index: CodeIndex::Hamming(c.index),
        path: c.path,
        from_disk: c.from_disk,
        save_error: c.save_error,
    })
}

/// [`neighbor_index`] of a binary model.
fn binary_index(
    coder: &Coder,
    corpus: &Corpus,
    progress: &mut dyn FnMut(f64),
) -> Result<CachedIndex<CorpusIndex>> {
    CorpusIndex::load_or_build_described(
        coder.path(),
        &coder.config().describe(),
        corpus,
        coder.latent_dim(),
        &mut |texts| coder.features(texts, FeatureKind::Codes, progress),
    )
}

/// [`neighbor_index`] of a model with continuous codes.
fn continuous_index(
    coder: &Coder,
    corpus: &Corpus,
    progress: &mut dyn FnMut(f64),
) -> Result<CachedIndex<ContinuousIndex>> {
    ContinuousIndex::load_or_build(
        coder.path(),
        &coder.config().describe(),
        corpus,
        coder.latent_dim(),
        &mut |texts| coder.posteriors(texts, progress),
    )
}

/// What a pipeline may do with the index cached beside the checkpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IndexCache {
    /// Use it when fresh, else build it and save it (the explorer, whose Neighbors tab searches
    /// the same index).
    LoadOrBuild,
    /// Use it only when fresh; never write a file (the `cluster` command).
    LoadOnly,
}

/// The codes of `split` of `corpus` to cluster, a seeded random subset of at most
/// `max_entries` (the same entries whichever way they are read): codes of the train split come
/// from the index cached beside the checkpoint (bits, or μ of a continuous model) as `cache`
/// allows, so the Neighbors and Clusters tabs encode the corpus once between them; everything
/// else is encoded now.
pub fn corpus_codes(
    coder: &Coder,
    corpus: &Corpus,
    split: Split,
    max_entries: Option<usize>,
    seed: u64,
    cache: IndexCache,
    progress: &mut dyn FnMut(f64),
) -> Result<CodedCorpus> {
    if split == Split::Train {
        if coder.is_binary() {
            let saved = match cache {
                IndexCache::LoadOrBuild => Some(binary_index(coder, corpus, progress)?.index),
                IndexCache::LoadOnly => {
                    index::load_fresh::<CorpusIndex>(coder.path(), corpus, coder.latent_dim())
                }
            };
            if let Some(ix) = saved {
                return Ok(CodedCorpus::from_index(&ix).subset(max_entries, seed));
            }
        } else if coder.capabilities().encodes {
            let saved = match cache {
                IndexCache::LoadOrBuild => Some(continuous_index(coder, corpus, progress)?.index),
                IndexCache::LoadOnly => {
                    index::load_fresh::<ContinuousIndex>(coder.path(), corpus, coder.latent_dim())
                }
            };
            if let Some(ix) = saved {
                return Ok(CodedCorpus::from_continuous_index(&ix).subset(max_entries, seed));
            }
        }
    }
    CodedCorpus::encode(coder, corpus, split, max_entries, seed, progress)
}

/// The cluster count when none is asked for: one per gold label present (when there are at
/// least two), else 10.
pub fn default_k(data: &CodedCorpus) -> usize {
    let labels = data
        .labels
        .iter()
        .flatten()
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    if labels > 1 {
        labels
    } else {
        10
    }
}

/// The clustering method when none is asked for: k-medoids for bits, k-means otherwise.
pub fn default_method(binary: bool) -> ClusterMethod {
    if binary {
        ClusterMethod::KMedoids
    } else {
        ClusterMethod::KMeans
    }
}

/// Clusters `data` with `method` (by default [`default_method`]) and `opts`, labels the
/// clusters and decodes each centre with `coder` where it has a decoder.
pub fn cluster_codes(
    coder: &Coder,
    data: &CodedCorpus,
    method: Option<ClusterMethod>,
    opts: &ClusterOptions,
) -> Result<ClusterReport> {
    let method = method.unwrap_or(default_method(coder.is_binary()));
    let mut report = cluster_corpus(data, method, opts)?;
    report.decode_centers(coder)?;
    Ok(report)
}

/// The Clusters tab's interactive work: one decoding, or an analogy of three sentences.
#[derive(Clone, Debug, PartialEq)]
pub enum StructureJob {
    Decode { code: Vec<f32> },
    Analogy { sentences: [String; 3] },
}

#[derive(Clone, Debug, PartialEq)]
pub enum StructureResult {
    Decoded {
        code: Vec<f32>,
        text: String,
    },
    Analogy {
        /// The three sentences as the model saw them, their codes and decodings.
        shown: Vec<String>,
        codes: Vec<Vec<f32>>,
        decodings: Vec<String>,
        result: Vec<f32>,
        result_decoding: String,
    },
}

/// Computes a [`StructureJob`] with `model`.
pub fn compute_structure(model: &Coder, job: &StructureJob) -> Result<StructureResult> {
    match job {
        StructureJob::Decode { code } => {
            let text = model
                .decode_codes(std::slice::from_ref(code), DECODED_WORDS)?
                .and_then(|mut t| t.pop())
                .unwrap_or_default();
            Ok(StructureResult::Decoded {
                code: code.clone(),
                text,
            })
        }
        StructureJob::Analogy { sentences } => {
            let mut shown = Vec::new();
            let mut codes = Vec::new();
            for s in sentences {
                let e = model.encode_text(s)?;
                shown.push(e.shown);
                codes.push(e.code);
            }
            let result = analogy(&codes[0], &codes[1], &codes[2], model.is_binary());
            let mut all = codes.clone();
            all.push(result.clone());
            let mut decodings = model.decode_codes(&all, DECODED_WORDS)?.unwrap_or_default();
            let result_decoding = decodings.pop().unwrap_or_default();
            Ok(StructureResult::Analogy {
                shown,
                codes,
                decodings,
                result,
                result_decoding,
            })
        }
    }
}
