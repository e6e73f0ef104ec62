//! The corpus-scale pipelines the explorer's background worker and the command line share: the
//! neighbour index of a model's corpus, the codes to cluster, a clustering with its decoded
//! centres, and the Clusters tab's structure work (a decoding, an analogy). One function each,
//! so a tab and its command compute the same thing for the same seed, under one freshness rule
//! for the index cached beside the checkpoint ([`crate::index::IndexMeta::is_fresh`]).

use anyhow::{bail, Result};

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::Arc;

use crate::cluster::{ClusterMethod, ClusterOptions};
use crate::coder::{Coder, FeatureKind};
use crate::corpus::{Corpus, Split};
use crate::hamming::PackedCodes;
use crate::index::{self, CachedIndex, ContinuousIndex, CorpusIndex};
use crate::map::grid::PointGrid;
use crate::map::{CachedLayout, Layout, LayoutOptions, Method};
use crate::structure::AttributeVector;
use crate::structure::{
    analogy, cluster_corpus_with_progress, ClusterReport, CodedCorpus, DECODED_WORDS,
};

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
    if !require_encoder(coder)?.is_binary() {
        return Ok(continuous_index(coder, corpus, progress)?.map(CodeIndex::Cosine));
    }
    Ok(binary_index(coder, corpus, progress)?.map(CodeIndex::Hamming))
}

/// The model's capabilities, or an error saying it has no encoder to index a corpus with.
fn require_encoder(coder: &Coder) -> Result<crate::coder::Capabilities> {
    let caps = coder.capabilities();
    if !caps.encodes {
        bail!(
            "an `{}` model has no encoder, so sentences have no codes to index",
            caps.name
        );
    }
    Ok(caps)
}

/// [`neighbor_index`] of a binary model.
fn binary_index(
    coder: &Coder,
    corpus: &Corpus,
    progress: &mut dyn FnMut(f64),
) -> Result<CachedIndex<CorpusIndex>> {
    CorpusIndex::load_or_build(
        &index::CodeSource::of(coder),
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
        &index::CodeSource::of(coder),
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
                IndexCache::LoadOnly => index::load_fresh::<CorpusIndex>(
                    &index::CodeSource::of(coder),
                    corpus,
                    coder.latent_dim(),
                ),
            };
            if let Some(ix) = saved {
                return Ok(CodedCorpus::from_index(&ix).subset(max_entries, seed));
            }
        } else if coder.capabilities().encodes {
            let saved = match cache {
                IndexCache::LoadOrBuild => Some(continuous_index(coder, corpus, progress)?.index),
                IndexCache::LoadOnly => index::load_fresh::<ContinuousIndex>(
                    &index::CodeSource::of(coder),
                    corpus,
                    coder.latent_dim(),
                ),
            };
            if let Some(ix) = saved {
                return Ok(CodedCorpus::from_continuous_index(&ix).subset(max_entries, seed));
            }
        }
    }
    CodedCorpus::encode(coder, corpus, split, max_entries, seed, progress)
}

/// The cluster count when none is asked for: one per gold label present (when there are two
/// to [`MAX_DEFAULT_K`], at least five entries each on average), else 10.
pub fn default_k(data: &CodedCorpus) -> usize {
    let labels = data
        .labels
        .iter()
        .flatten()
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    // Labels that are nearly one per entry (a factors corpus labels each sentence with its
    // whole tuple of factor values) are not groups: 500 entries gave k = 500 and cost 0.
    if (2..=MAX_DEFAULT_K).contains(&labels) && labels * 5 <= data.labels.len() {
        labels
    } else {
        10
    }
}

/// Most clusters [`default_k`] gives from gold labels; more labels than this, or fewer than
/// five entries a label, are not taken for groups.
pub const MAX_DEFAULT_K: usize = 100;

/// The clustering method when none is asked for: k-medoids for bits, k-means otherwise.
pub fn default_method(binary: bool) -> ClusterMethod {
    if binary {
        ClusterMethod::KMedoids
    } else {
        ClusterMethod::KMeans
    }
}

/// Clusters `data` with `method` (by default [`default_method`]) and `opts`, labels the
/// clusters and decodes each centre with `coder` where it has a decoder (a sequence model's
/// decodings kept to `real_words` when given).
pub fn cluster_codes(
    coder: &Coder,
    data: &CodedCorpus,
    method: Option<ClusterMethod>,
    opts: &ClusterOptions,
    real_words: Option<&crate::model::word_trie::WordTrie>,
) -> Result<ClusterReport> {
    cluster_codes_with_progress(coder, data, method, opts, real_words, &mut |_| {})
}

/// Share of [`cluster_codes_with_progress`]'s progress that the clustering (and its gold
/// scores) takes; decoding the centres takes the rest.
const CLUSTER_CODES_SHARE: f64 = 0.95;

/// [`cluster_codes`], telling `progress` the fraction done (0 to 1, never decreasing): the
/// clustering's iterations ([`crate::structure::cluster_corpus_with_progress`]), then the
/// decoded centres.
pub fn cluster_codes_with_progress(
    coder: &Coder,
    data: &CodedCorpus,
    method: Option<ClusterMethod>,
    opts: &ClusterOptions,
    real_words: Option<&crate::model::word_trie::WordTrie>,
    progress: &mut dyn FnMut(f64),
) -> Result<ClusterReport> {
    let method = method.unwrap_or(default_method(coder.is_binary()));
    let mut report = cluster_corpus_with_progress(data, method, opts, &mut |f| {
        progress(f * CLUSTER_CODES_SHARE)
    })?;
    report.decode_centers_restricted(coder, real_words)?;
    progress(1.0);
    Ok(report)
}

/// Cluster centres decoded again, kept to the training corpus's words (the explorer's `w`
/// setting) or raw: [`cluster_codes`] decodes them raw, once.
#[derive(Clone, Debug, PartialEq)]
pub struct CentreDecodings {
    /// The centres decoded, in the report's order (what a reply is matched against).
    pub centres: Vec<Vec<f32>>,
    pub real_words: bool,
    /// One decoding per centre; empty when the model has no decoder.
    pub texts: Vec<String>,
}

/// Decodes `centres` greedily as [`cluster_codes`] does, kept to `words` when given (the
/// training corpus's words; `real_words` records whether they were asked for).
pub fn decode_centres(
    coder: &Coder,
    centres: Vec<Vec<f32>>,
    real_words: bool,
    words: Option<&crate::model::word_trie::WordTrie>,
) -> Result<CentreDecodings> {
    let texts = coder
        .decode_codes_restricted(&centres, crate::structure::DECODED_WORDS, words)?
        .unwrap_or_default();
    Ok(CentreDecodings {
        centres,
        real_words,
        texts,
    })
}

/// The Clusters tab's interactive work: one decoding, or an analogy of three sentences.
#[derive(Clone, Debug, PartialEq)]
/// `real_words`: keep the decodings to the training corpus's words (the explorer's `w`
/// setting; the worker passes the words to [`compute_structure`]).
pub enum StructureJob {
    Decode {
        code: Vec<f32>,
        real_words: bool,
    },
    Analogy {
        sentences: [String; 3],
        real_words: bool,
    },
}

impl StructureJob {
    /// Whether the job's decodings keep to the training corpus's words.
    pub fn real_words(&self) -> bool {
        match self {
            StructureJob::Decode { real_words, .. } | StructureJob::Analogy { real_words, .. } => {
                *real_words
            }
        }
    }
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

/// Computes a [`StructureJob`] with `model`, its greedy decodings kept to `words` when given
/// (the training corpus's words, as Explore's).
pub fn compute_structure(
    model: &Coder,
    job: &StructureJob,
    words: Option<&crate::model::word_trie::WordTrie>,
) -> Result<StructureResult> {
    match job {
        StructureJob::Decode { code, .. } => {
            let text = model
                .decode_codes_restricted(std::slice::from_ref(code), DECODED_WORDS, words)?
                .and_then(|mut t| t.pop())
                .unwrap_or_default();
            Ok(StructureResult::Decoded {
                code: code.clone(),
                text,
            })
        }
        StructureJob::Analogy { sentences, .. } => {
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
            let mut decodings = model
                .decode_codes_restricted(&all, DECODED_WORDS, words)?
                .unwrap_or_default();
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

// ---- The explorer's corpus jobs: the neighbour index, the map and the clustering, as the
// worker runs them (the CLI calls the functions above directly).

/// The corpus entries the Neighbors tab searches (the library's [`CodeIndex`]).
pub use CodeIndex as Entries;

/// A corpus index for the Neighbors tab and the map, and where it lives.
pub type NeighborIndex = CachedIndex<Entries>;

/// The corpus a job works on: `spec`, or the checkpoint's own (needed `for` something).
pub fn job_corpus(coder: &Coder, spec: Option<&str>, purpose: &str) -> anyhow::Result<Corpus> {
    match spec {
        Some(spec) => crate::coder::seq::corpus_of_provenance(coder.provenance(), Some(spec)),
        None => crate::coder::seq::own_corpus_of(coder.provenance(), purpose),
    }
}

/// The Neighbors tab's index ([`crate::pipeline::neighbor_index`]: loaded from beside the
/// checkpoint when fresh, else built and saved there).
pub fn corpus_neighbor_index(
    coder: &Coder,
    corpus: Option<&str>,
    progress: &mut dyn FnMut(f64),
) -> anyhow::Result<NeighborIndex> {
    require_encoder(coder)?;
    let corpus = job_corpus(coder, corpus, "nearest neighbours")?;
    neighbor_index(coder, &corpus, progress)
}

/// The index of the entries encoded so far while the Neighbors tab's index is built
/// ([`corpus_neighbor_index_so_far`]).
#[derive(Debug)]
pub struct IndexSoFar {
    pub index: Arc<NeighborIndex>,
    /// Entries encoded (and searched) so far, of `total`.
    pub searched: usize,
    pub total: usize,
}

/// [`corpus_neighbor_index`], telling `so_far` while it builds an index the index of the
/// entries encoded until then (after each group of [`Coder::index_parts`], growing by half at
/// least between reports), so that the first matches show within seconds. The groups give
/// the codes a build at once gives, so the index built is exactly the one
/// [`corpus_neighbor_index`] builds.
pub fn corpus_neighbor_index_so_far(
    coder: &Coder,
    corpus: Option<&str>,
    progress: &mut dyn FnMut(f64),
    so_far: &mut dyn FnMut(IndexSoFar),
) -> anyhow::Result<NeighborIndex> {
    require_encoder(coder)?;
    let corpus = job_corpus(coder, corpus, "nearest neighbours")?;
    neighbor_index_so_far(coder, &corpus, progress, so_far)
}

/// [`neighbor_index`] of `corpus`, telling `so_far` the index of the entries encoded so far
/// while it builds one ([`corpus_neighbor_index_so_far`]); the index is exactly the one
/// [`neighbor_index`] gives.
pub fn neighbor_index_so_far(
    coder: &Coder,
    corpus: &Corpus,
    progress: &mut dyn FnMut(f64),
    so_far: &mut dyn FnMut(IndexSoFar),
) -> anyhow::Result<NeighborIndex> {
    let caps = require_encoder(coder)?;
    let source = index::CodeSource::of(coder);
    let path = index::default_path(coder.path());
    let dim = coder.latent_dim();
    // Labels and provenance of the entries, for the indexes so far (read once, when building).
    let entries = std::cell::OnceCell::new();
    let entries = || -> Result<&index::IndexEntries> {
        if entries.get().is_none() {
            let e = index::index_entries(&source, corpus, &index::CACHED_SPLITS)?;
            let _ = entries.set(e);
        }
        Ok(entries.get().expect("set above"))
    };
    let snapshot = |positions: &[usize], index: CodeIndex| IndexSoFar {
        index: Arc::new(NeighborIndex {
            index,
            path: path.clone(),
            from_disk: false,
            save_error: None,
        }),
        searched: positions.len(),
        total: 0,
    };
    Ok(if caps.is_binary() {
        let c = CorpusIndex::load_or_build(&source, corpus, dim, &mut |texts| {
            encode_in_parts(
                coder,
                texts,
                &mut |part, p| coder.features(part, FeatureKind::Codes, p),
                progress,
                &mut |positions, codes| {
                    let e = entries()?;
                    let (texts, labels) = entries_at(e, positions);
                    let ix = CorpusIndex::from_parts(dim, codes, texts, &labels, e.meta.clone())?;
                    so_far(IndexSoFar {
                        total: e.texts.len(),
                        ..snapshot(positions, CodeIndex::Hamming(ix))
                    });
                    Ok(())
                },
            )
        })?;
        c.map(CodeIndex::Hamming)
    } else {
        let c = ContinuousIndex::load_or_build(&source, corpus, dim, &mut |texts| {
            encode_in_parts(
                coder,
                texts,
                &mut |part, p| coder.posteriors(part, p),
                progress,
                &mut |positions, codes| {
                    let e = entries()?;
                    let (texts, labels) = entries_at(e, positions);
                    let ix =
                        ContinuousIndex::from_parts(dim, codes, texts, &labels, e.meta.clone())?;
                    so_far(IndexSoFar {
                        total: e.texts.len(),
                        ..snapshot(positions, CodeIndex::Cosine(ix))
                    });
                    Ok(())
                },
            )
        })?;
        c.map(CodeIndex::Cosine)
    })
}

/// Texts and labels of the entries at `positions`.
fn entries_at(e: &index::IndexEntries, positions: &[usize]) -> (Vec<String>, Vec<Option<String>>) {
    positions
        .iter()
        .map(|&i| (e.texts[i].clone(), e.labels[i].clone()))
        .unzip()
}

/// Codes of some texts, reporting the fraction done.
type EncodePart<'a, C> = dyn FnMut(&[&str], &mut dyn FnMut(f64)) -> Result<Vec<C>> + 'a;
/// Positions encoded so far (in corpus order) and their codes.
type Snapshot<'a, C> = dyn FnMut(&[usize], &[C]) -> Result<()> + 'a;

/// Codes of `texts` computed group by group ([`Coder::index_parts`]) by `encode`, telling
/// `snapshot` the positions encoded so far (in corpus order) with their codes after the first
/// group and then whenever they have grown by half, before the last group.
fn encode_in_parts<C: Clone>(
    coder: &Coder,
    texts: &[&str],
    encode: &mut EncodePart<'_, C>,
    progress: &mut dyn FnMut(f64),
    snapshot: &mut Snapshot<'_, C>,
) -> Result<Vec<C>> {
    let total = texts.len();
    // A part of a sixteenth at least (binary models group whole token lengths).
    let parts = coder.index_parts(texts, total.div_ceil(16));
    let mut codes: Vec<Option<C>> = vec![None; total];
    let mut done = 0usize;
    let mut reported = 0usize;
    for (k, part) in parts.iter().enumerate() {
        let part_texts: Vec<&str> = part.iter().map(|&i| texts[i]).collect();
        let before = done;
        let got = encode(&part_texts, &mut |f| {
            progress((before as f64 + f * part.len() as f64) / total.max(1) as f64)
        })?;
        if got.len() != part.len() {
            bail!("encoding gave {} codes for {} texts", got.len(), part.len());
        }
        for (&i, c) in part.iter().zip(got) {
            codes[i] = Some(c);
        }
        done += part.len();
        if k + 1 < parts.len() && (reported == 0 || 2 * done >= 3 * reported) {
            reported = done;
            let positions: Vec<usize> = (0..total).filter(|&i| codes[i].is_some()).collect();
            let so_far: Vec<C> = positions
                .iter()
                .map(|&i| codes[i].clone().expect("encoded"))
                .collect();
            snapshot(&positions, &so_far)?;
        }
    }
    Ok(codes
        .into_iter()
        .map(|c| c.expect("every text is in one part"))
        .collect())
}

/// Cells per side of the finest grid (2^10).
pub const GRID_SIDE: usize = 1024;
/// What the worker is asked for.
#[derive(Clone, Debug, PartialEq)]
pub struct MapRequest {
    pub corpus: Option<String>,
    pub method: Method,
    /// The index already loaded by the Neighbors tab, if any (else the worker loads it).
    pub index: Option<SharedIndex>,
}

/// An index shared with the worker; equal when it is the same one.
#[derive(Clone, Debug)]
pub struct SharedIndex(pub Arc<NeighborIndex>);

impl PartialEq for SharedIndex {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

/// A layout of an index, binned for drawing.
#[derive(Debug)]
pub struct MapData {
    pub index: Arc<NeighborIndex>,
    pub layout: Layout,
    pub path: PathBuf,
    pub from_disk: bool,
    pub save_error: Option<String>,
    pub grid: PointGrid,
}

impl MapData {
    pub fn new(index: Arc<NeighborIndex>, cached: CachedLayout) -> Self {
        let grid = PointGrid::new(&cached.layout.points, GRID_SIDE);
        Self {
            index,
            layout: cached.layout,
            path: cached.path,
            from_disk: cached.from_disk,
            save_error: cached.save_error,
            grid,
        }
    }

    pub fn len(&self) -> usize {
        self.layout.points.len()
    }

    pub fn is_empty(&self) -> bool {
        self.layout.points.is_empty()
    }

    /// Where a code falls: its nearest entries' weighted mean position.
    pub fn place(&self, code: &[f32]) -> Option<[f32; 2]> {
        let codes = self.index.index.codes();
        if code.len() != codes.dim() {
            return None;
        }
        self.layout.place(codes, code).ok()
    }

    /// Entry `i`'s code as the explorer holds codes (bits, or μ).
    pub fn entry_code(&self, i: usize) -> Vec<f32> {
        match &self.index.index {
            Entries::Hamming(ix) => ix.code(i),
            Entries::Cosine(ix) => ix.mean(i).to_vec(),
        }
    }
}

/// The worker's side: the index (the Neighbors tab's, or loaded / built now), then its
/// layout (loaded from beside the checkpoint when fresh, else computed and saved there).
pub fn compute_map(
    coder: &Coder,
    req: &MapRequest,
    progress: &mut dyn FnMut(f64),
) -> anyhow::Result<MapData> {
    let index = match &req.index {
        Some(ix) => ix.0.clone(),
        None => Arc::new(corpus_neighbor_index(
            coder,
            req.corpus.as_deref(),
            &mut |f| progress(0.4 * f),
        )?),
    };
    let opts = map_options(req);
    let cached = Layout::load_or_compute(
        coder.path(),
        index.index.meta(),
        index.index.codes(),
        &opts,
        &mut |f| progress(0.4 + 0.6 * f),
    )?;
    Ok(MapData::new(index, cached))
}

fn map_options(req: &MapRequest) -> LayoutOptions {
    LayoutOptions {
        method: req.method,
        ..LayoutOptions::default()
    }
}

/// Whether `searched` of `total` entries encoded are enough for a tab to show a provisional
/// result of them while the index it needs is built: a quarter of the corpus. Fewer would be
/// sooner but unlike the corpus: a continuous model's first groups are a few runs of 4,096
/// entries of a corpus sorted by topic (the shipped vae's first 12,288 entries hold 5 of the
/// 45 WordNet labels), where a quarter spreads over eight runs.
pub fn enough_for_provisional(searched: usize, total: usize) -> bool {
    searched > 0 && 4 * searched >= total
}

/// How a map shown before the final one was made ([`MapSoFar`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapStage {
    /// A layout of the `searched` entries of `total` encoded so far, while the index is built.
    Entries { searched: usize, total: usize },
    /// The whole index's layout after `epoch` of the descent's `epochs` (0: the PCA plane the
    /// descent starts from).
    Epoch { epoch: usize, epochs: usize },
}

/// A map on its way, before the final one ([`compute_map_so_far`]).
#[derive(Debug)]
pub struct MapSoFar {
    pub data: Arc<MapData>,
    pub stage: MapStage,
}

/// [`compute_map`], telling `so_far` the map on its way: while it builds the index, a layout
/// of the entries encoded so far (once, from a quarter of them: [`enough_for_provisional`]);
/// while it lays the whole index out, the PCA plane the descent starts from and its positions
/// every tenth of the epochs ([`Layout::compute_so_far`]). The map returned (and saved) is the
/// one [`compute_map`] gives; None (no layout saved) where `so_far` breaks, which stops the job
/// at the next map on its way (an index being built is finished and saved first).
pub fn compute_map_so_far(
    coder: &Coder,
    req: &MapRequest,
    progress: &mut dyn FnMut(f64),
    so_far: &mut dyn FnMut(MapSoFar) -> ControlFlow<()>,
) -> anyhow::Result<Option<MapData>> {
    let opts = map_options(req);
    let path = Layout::default_path(coder.path());
    let not_saved = |layout: Layout| CachedLayout {
        layout,
        path: path.clone(),
        from_disk: false,
        save_error: None,
    };
    let index = match &req.index {
        Some(ix) => ix.0.clone(),
        None => {
            require_encoder(coder)?;
            let corpus = job_corpus(coder, req.corpus.as_deref(), "nearest neighbours")?;
            let mut shown = false;
            let mut stopped = false;
            let index =
                neighbor_index_so_far(coder, &corpus, &mut |f| progress(0.4 * f), &mut |p| {
                    if shown || !enough_for_provisional(p.searched, p.total) {
                        return;
                    }
                    shown = true;
                    let codes = p.index.index.codes();
                    // A provisional map is a bonus: one that fails is not shown.
                    if let Ok(layout) =
                        Layout::compute(codes, p.index.index.meta(), &opts, &mut |_| {})
                    {
                        stopped = so_far(MapSoFar {
                            data: Arc::new(MapData::new(p.index.clone(), not_saved(layout))),
                            stage: MapStage::Entries {
                                searched: p.searched,
                                total: p.total,
                            },
                        })
                        .is_break();
                    }
                })?;
            if stopped {
                return Ok(None);
            }
            Arc::new(index)
        }
    };
    let cached = Layout::load_or_compute_so_far(
        coder.path(),
        index.index.meta(),
        index.index.codes(),
        &opts,
        &mut |f| progress(0.4 + 0.6 * f),
        &mut |p| {
            let epochs = p.layout.meta.epochs;
            so_far(MapSoFar {
                data: Arc::new(MapData::new(index.clone(), not_saved(p.layout))),
                stage: MapStage::Epoch {
                    epoch: p.epoch,
                    epochs,
                },
            })
        },
    )?;
    Ok(cached.map(|cached| MapData::new(index, cached)))
}

/// What the background worker is asked for.
#[derive(Clone, Debug, PartialEq)]
pub struct ClusterRequest {
    pub corpus: Option<String>,
    /// 0: the number of gold labels (10 for an unlabelled corpus).
    pub k: usize,
    /// None: k-medoids for binary codes, k-means for continuous ones.
    pub method: Option<ClusterMethod>,
    pub seed: u64,
    /// Cluster a seeded random subset of at most this many entries (None: the whole split).
    pub max_entries: Option<usize>,
}

/// A clustering with the codes it was made of and each gold label's mean code.
#[derive(Debug)]
pub struct ClusterView {
    pub data: CodedCorpus,
    pub report: ClusterReport,
    /// Per gold label (as `data.label_names`): its mean code and entry count.
    pub label_means: Vec<Option<(Vec<f32>, usize)>>,
    /// Binary codes packed, for the nearest entries of a code.
    pub packed: Option<PackedCodes>,
}

impl ClusterView {
    /// The cluster whose centre is nearest `code` (Hamming for bits, Euclidean otherwise).
    pub fn nearest_cluster(&self, code: &[f32]) -> Option<usize> {
        let clusters = &self.report.clusters;
        if code.is_empty() || clusters.first()?.center.len() != code.len() {
            return None;
        }
        clusters
            .iter()
            .map(|c| {
                let d: f32 = c
                    .center
                    .iter()
                    .zip(code)
                    .map(|(a, b)| {
                        if self.data.binary {
                            (a - b).abs()
                        } else {
                            (a - b).powi(2)
                        }
                    })
                    .sum();
                (d, c.cluster)
            })
            .min_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)))
            .map(|(_, c)| c)
    }

    /// The members of cluster `c`, nearest its centre first (ties in corpus order).
    pub fn members_by_distance(&self, c: usize) -> Vec<usize> {
        let Some(center) = self.report.clusters.get(c).map(|s| &s.center) else {
            return Vec::new();
        };
        let mut scored: Vec<(f32, usize)> = self
            .report
            .members(c)
            .into_iter()
            .map(|i| {
                let d = self.data.codes[i]
                    .iter()
                    .zip(center)
                    .map(|(a, b)| (a - b).powi(2))
                    .sum::<f32>();
                (d, i)
            })
            .collect();
        scored.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        scored.into_iter().map(|(_, i)| i).collect()
    }

    /// The attribute vector between two gold labels (by index).
    pub fn attribute(&self, from: usize, to: usize) -> Option<AttributeVector> {
        let (a, na) = self.label_means.get(from)?.as_ref()?;
        let (b, nb) = self.label_means.get(to)?.as_ref()?;
        Some(AttributeVector {
            from: self.data.label_names[from].clone(),
            to: self.data.label_names[to].clone(),
            from_count: *na,
            to_count: *nb,
            binary: self.data.binary,
            difference: b.iter().zip(a).map(|(x, y)| x - y).collect(),
        })
    }
}

/// Clusters the train split of the model's corpus through the library's pipeline (binary
/// codes from the Neighbors tab's index, loaded from beside the checkpoint or built and saved
/// there; continuous codes encoded now), and draws its map.
pub fn compute_clusters(
    coder: &Coder,
    req: &ClusterRequest,
    progress: &mut dyn FnMut(f64),
) -> Result<ClusterView> {
    require_encoder(coder)?;
    let corpus = job_corpus(coder, req.corpus.as_deref(), "clusters")?;
    let data = corpus_codes(
        coder,
        &corpus,
        Split::Train,
        req.max_entries,
        req.seed,
        IndexCache::LoadOrBuild,
        progress,
    )?;
    let view = cluster_view(coder, data, req, &|| false, &mut |_| {})?;
    Ok(view.expect("a clustering that is never stopped is returned"))
}

/// A clustering of the entries encoded so far, while the index the Clusters tab needs is
/// built ([`compute_clusters_so_far`]).
#[derive(Debug)]
pub struct ClustersSoFar {
    pub view: Arc<ClusterView>,
    /// Entries encoded so far (the clustering's entries before any `max_entries` subset), of
    /// `total`.
    pub searched: usize,
    pub total: usize,
}

/// [`compute_clusters`], telling `so_far` while it builds the index a clustering of the
/// entries encoded so far (once, from a quarter of them: [`enough_for_provisional`]; the same
/// request: method, k, seed and subset), so that clusters show within seconds. The clustering
/// returned is exactly the one [`compute_clusters`] gives.
pub fn compute_clusters_so_far(
    coder: &Coder,
    req: &ClusterRequest,
    progress: &mut dyn FnMut(f64),
    so_far: &mut dyn FnMut(ClustersSoFar),
) -> Result<ClusterView> {
    let view = compute_clusters_until(coder, req, progress, so_far, &|| false)?;
    Ok(view.expect("a job that is never stopped returns its clustering"))
}

/// Share of a clustering job's progress ([`compute_clusters_until`], the explorer's gauge) that
/// encoding the corpus takes (nothing when its saved index is loaded instead); clustering the
/// codes, scoring and decoding the clusters take the rest, iteration by iteration.
pub const CLUSTER_ENCODING_SHARE: f64 = 0.5;

/// [`compute_clusters_so_far`] that stops between its steps once `stopped` says so (a newer
/// request has overtaken this one: gitui's `AsyncSingleJob`, as the Map's layout does): before
/// the provisional clustering, before the final clustering and after it.
/// None where it stopped. An index being built is finished and saved first (the newer request
/// loads it instead of encoding the corpus again); a clustering under way finishes its step.
pub fn compute_clusters_until(
    coder: &Coder,
    req: &ClusterRequest,
    progress: &mut dyn FnMut(f64),
    so_far: &mut dyn FnMut(ClustersSoFar),
    stopped: &dyn Fn() -> bool,
) -> Result<Option<ClusterView>> {
    require_encoder(coder)?;
    if stopped() {
        return Ok(None);
    }
    let corpus = job_corpus(coder, req.corpus.as_deref(), "clusters")?;
    let mut shown = false;
    let mut encoding = |f: f64| progress(f * CLUSTER_ENCODING_SHARE);
    let index = neighbor_index_so_far(coder, &corpus, &mut encoding, &mut |p| {
        if shown || stopped() || !enough_for_provisional(p.searched, p.total) {
            return;
        }
        shown = true;
        let data = coded_corpus(&p.index.index).subset(req.max_entries, req.seed);
        // A provisional clustering is a bonus: one that fails (or is stopped) is not shown.
        if let Ok(Some(view)) = cluster_view(coder, data, req, stopped, &mut |_| {}) {
            so_far(ClustersSoFar {
                view: Arc::new(view),
                searched: p.searched,
                total: p.total,
            });
        }
    })?;
    if stopped() {
        return Ok(None);
    }
    let data = coded_corpus(&index.index).subset(req.max_entries, req.seed);
    progress(CLUSTER_ENCODING_SHARE);
    cluster_view(coder, data, req, stopped, &mut |f| {
        progress(CLUSTER_ENCODING_SHARE + (1.0 - CLUSTER_ENCODING_SHARE) * f)
    })
}

/// The entries of an index as a coded corpus (bits, or μ).
fn coded_corpus(index: &CodeIndex) -> CodedCorpus {
    match index {
        CodeIndex::Hamming(ix) => CodedCorpus::from_index(ix),
        CodeIndex::Cosine(ix) => CodedCorpus::from_continuous_index(ix),
    }
}

/// The clustering `req` asks for of `data`, with each gold label's mean code ([`cluster_codes`]);
/// None where `stopped` says so before the clustering or once it is done. `progress` hears the
/// clustering's fraction done ([`cluster_codes_with_progress`]).
fn cluster_view(
    coder: &Coder,
    data: CodedCorpus,
    req: &ClusterRequest,
    stopped: &dyn Fn() -> bool,
    progress: &mut dyn FnMut(f64),
) -> Result<Option<ClusterView>> {
    let k = match req.k {
        0 => default_k(&data),
        k => k,
    };
    let opts = ClusterOptions {
        k: k.min(data.len()),
        seed: req.seed,
        ..ClusterOptions::default()
    };
    if stopped() {
        return Ok(None);
    }
    let report = cluster_codes_with_progress(coder, &data, req.method, &opts, None, progress)?;
    // Decoding the centres is quick (~0.1 s): a request overtaken meanwhile is dropped here.
    if stopped() {
        return Ok(None);
    }
    let label_means = data
        .label_names
        .iter()
        .map(|n| data.label_mean(n).ok())
        .collect();
    let packed = coder
        .is_binary()
        .then(|| PackedCodes::from_codes(coder.latent_dim(), data.codes.iter().map(Vec::as_slice)));
    Ok(Some(ClusterView {
        data,
        report,
        label_means,
        packed,
    }))
}
