//! Nearest neighbours of continuous codes (gaussian, bottleneck, nvdm): exact cosine top-k over
//! the encoder's μ, and the multi-sample matching of the question-clustering write-up.
//!
//! # Cosine top-k
//!
//! [`UnitVectors`] holds the corpus's μ rows L2-normalised once, so a similarity is a dot
//! product. Queries are normalised the same way and compared with a block of rows at a time by
//! one matrix product (`gemm`, [`QUERY_BLOCK`] queries × [`ROW_BLOCK`] rows, sized to stay in
//! cache); each query keeps its best `k` in a bounded heap, so no similarity row is ever sorted.
//! Many queries run in parallel by query block; a few queries (the interactive case) run in
//! parallel by row block, merging the per-block bests.
//!
//! Results are ordered by (similarity descending, index ascending): ties go to the earlier
//! entry, so the result is unique and equals sorting everything ([`UnitVectors::top_k_brute_force`]).
//! A zero vector (row or query) has no direction; its cosine with anything is defined as 0, never
//! NaN. Similarities are clamped to [−1, 1] against rounding.
//!
//! # Multi-sample matching
//!
//! A point estimate ignores how sure the encoder is. Following the write-up, each sentence's
//! posterior N(μ, σ²) is sampled `n` times, and two sentences **match** when at least `m` of the
//! `n²` (sample of one, sample of the other) pairs lie within Euclidean distance `t` of each
//! other in latent space ([`MatchRule`]). Euclidean rather than cosine because the samples
//! spread by σ in absolute units: a radius means the same thing in every direction and at every
//! distance from the origin. Every draw is seeded, per sentence (see [`entry_rng`]), so whether
//! two entries match does not depend on which other entries a search looked at.
//!
//! [`ContinuousIndex::search_matching`] uses it as a search mode: the exact cosine top
//! `candidates` are re-ranked by their count of close pairs with the query (then by similarity,
//! then index), and the best `k` returned with their counts.
//!
//! # File format
//!
//! | tensor         | dtype | shape          | content                                        |
//! |----------------|-------|----------------|------------------------------------------------|
//! | `means`        | F32   | (n, dim)       | μ per entry, as the encoder gave it            |
//! | `stds`         | F32   | (n, dim)       | σ per entry; absent when the model has none    |
//! | `labels`       | U32   | (n,)           | index into `label_names`; u32::MAX = none      |
//! | `text_bytes`   | U8    | (total,)       | the entries' texts, UTF-8, concatenated        |
//! | `text_offsets` | U64   | (n + 1,)       | where each text starts (and the end)           |
//!
//! Metadata: `format` = `latent-tui-continuous-index/1`, `dim`, `label_names` (JSON), and the
//! provenance [`IndexMeta`] as JSON under `index`, as in [`crate::search`]. The unit rows are
//! recomputed on load rather than stored, so the file holds what the encoder said.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;
use rayon::prelude::*;
use safetensors::{tensor::TensorView, Dtype, SafeTensors};
use serde::Serialize;

use crate::bow::{bag_of_words, BowCheckpoint, EVAL_BATCH};
use crate::checkpoint::write_atomically;
use crate::coder::Coder;
use crate::corpus::{normalize, Corpus, Split};
use crate::engine::Engine;
use crate::model::bow::BagBatch;
use crate::search::{file_sha256, IndexMeta, INDEX_FORMAT};
use crate::vocab::UNK;

pub const CONTINUOUS_INDEX_FORMAT: &str = "latent-tui-continuous-index/1";

/// Queries per matrix product.
pub const QUERY_BLOCK: usize = 64;
/// Corpus rows per matrix product: 2048 rows of 64 dimensions are 512 kB, and the
/// 64 × 2048 similarity block another 512 kB, so both stay in L2.
pub const ROW_BLOCK: usize = 2048;

/// One search result: the entry's position and its cosine similarity to the query.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct CosineHit {
    pub similarity: f32,
    pub index: usize,
}

impl CosineHit {
    /// The result order: higher similarity first, then the earlier entry.
    pub fn rank_cmp(&self, other: &Self) -> Ordering {
        other
            .similarity
            .total_cmp(&self.similarity)
            .then(self.index.cmp(&other.index))
    }
}

/// Heap key whose maximum is the worst hit kept.
#[derive(Clone, Copy, Debug)]
struct Ranked(CosineHit);

impl PartialEq for Ranked {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Ranked {}
impl PartialOrd for Ranked {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Ranked {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.rank_cmp(&other.0)
    }
}

/// The best `k` hits offered so far.
#[derive(Clone, Debug)]
struct TopK {
    k: usize,
    heap: BinaryHeap<Ranked>,
}

impl TopK {
    fn new(k: usize) -> Self {
        Self {
            k,
            heap: BinaryHeap::with_capacity(k + 1),
        }
    }

    #[inline(always)]
    fn offer(&mut self, hit: CosineHit) {
        if self.heap.len() < self.k {
            self.heap.push(Ranked(hit));
        } else if let Some(worst) = self.heap.peek() {
            // Most offers fail here once the heap is full: one comparison, no heap work.
            if hit.rank_cmp(&worst.0) == Ordering::Less {
                self.heap.pop();
                self.heap.push(Ranked(hit));
            }
        }
    }

    fn merge(mut self, other: TopK) -> TopK {
        for r in other.heap {
            self.offer(r.0);
        }
        self
    }

    fn into_sorted(self) -> Vec<CosineHit> {
        self.heap
            .into_sorted_vec()
            .into_iter()
            .map(|r| r.0)
            .collect()
    }
}

/// A similarity as reported: −0 made +0 (so it ties with +0) and rounding clamped to [−1, 1].
#[inline(always)]
fn finish_similarity(dot: f32) -> f32 {
    (dot + 0.0).clamp(-1.0, 1.0)
}

/// `v / |v|`, or zeros for a zero vector (which has no direction).
pub fn normalized(v: &[f32]) -> Vec<f32> {
    let norm = v
        .iter()
        .map(|&x| (x as f64) * (x as f64))
        .sum::<f64>()
        .sqrt();
    if norm == 0.0 {
        vec![0.0; v.len()]
    } else {
        v.iter().map(|&x| (x as f64 / norm) as f32).collect()
    }
}

/// Cosine similarity of two vectors computed in f64 (the reference; 0 when either is zero).
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let (ua, ub) = (normalized(a), normalized(b));
    finish_similarity(
        ua.iter()
            .zip(&ub)
            .map(|(&x, &y)| x as f64 * y as f64)
            .sum::<f64>() as f32,
    )
}

/// Errors unless `v` has `dim` finite values; `what` names the vector in the message.
fn check_vector(v: &[f32], dim: usize, what: &str) -> Result<()> {
    if v.len() != dim {
        bail!(
            "{what} has {} dimensions but the index holds {dim}",
            v.len()
        );
    }
    if let Some(i) = v.iter().position(|x| !x.is_finite()) {
        bail!("{what} has a non-finite value ({}) in dimension {i}", v[i]);
    }
    Ok(())
}

/// Equal-length vectors normalised to unit length, searchable by cosine similarity.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct UnitVectors {
    dim: usize,
    /// (n, dim) row-major unit rows; a zero input row stays zero.
    data: Vec<f32>,
}

impl UnitVectors {
    /// Normalises `rows` (each `dim` long and finite).
    pub fn new<'a>(dim: usize, rows: impl IntoIterator<Item = &'a [f32]>) -> Result<Self> {
        if dim == 0 {
            bail!("vectors must have at least one dimension");
        }
        let mut data = Vec::new();
        for (i, r) in rows.into_iter().enumerate() {
            check_vector(r, dim, &format!("vector {i}"))?;
            data.extend(normalized(r));
        }
        Ok(Self { dim, data })
    }

    pub fn len(&self) -> usize {
        self.data.len() / self.dim.max(1)
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Unit row `i` (zeros for a zero input).
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }

    /// The `k` rows most similar to `query` (`dim` long, finite), ordered by (similarity
    /// descending, index ascending).
    pub fn top_k(&self, query: &[f32], k: usize) -> Result<Vec<CosineHit>> {
        Ok(self.top_k_many(&[query.to_vec()], k)?.remove(0))
    }

    /// [`UnitVectors::top_k`] for many queries at once: blocked matrix products in parallel.
    pub fn top_k_many(&self, queries: &[Vec<f32>], k: usize) -> Result<Vec<Vec<CosineHit>>> {
        for (i, q) in queries.iter().enumerate() {
            check_vector(q, self.dim, &format!("query {}", i + 1))?;
        }
        let k = k.min(self.len());
        if k == 0 {
            return Ok(vec![Vec::new(); queries.len()]);
        }
        let units: Vec<f32> = queries.iter().flat_map(|q| normalized(q)).collect();
        let query_blocks: Vec<&[f32]> = units.chunks(QUERY_BLOCK * self.dim).collect();
        let row_blocks = self.len().div_ceil(ROW_BLOCK);
        let per_block: Vec<Vec<TopK>> =
            if query_blocks.len() >= rayon::current_num_threads() || row_blocks == 1 {
                query_blocks
                    .par_iter()
                    .map(|qb| {
                        let mut tops = vec![TopK::new(k); qb.len() / self.dim];
                        let mut sims = Vec::new();
                        for b in 0..row_blocks {
                            self.scan_block(qb, b, &mut sims, &mut tops);
                        }
                        tops
                    })
                    .collect()
            } else {
                query_blocks
                    .iter()
                    .map(|qb| {
                        let fresh = || vec![TopK::new(k); qb.len() / self.dim];
                        (0..row_blocks)
                            .into_par_iter()
                            .fold(
                                || (fresh(), Vec::new()),
                                |(mut tops, mut sims), b| {
                                    self.scan_block(qb, b, &mut sims, &mut tops);
                                    (tops, sims)
                                },
                            )
                            .map(|(tops, _)| tops)
                            .reduce(fresh, |a, b| {
                                a.into_iter().zip(b).map(|(x, y)| x.merge(y)).collect()
                            })
                    })
                    .collect()
            };
        Ok(per_block
            .into_iter()
            .flatten()
            .map(TopK::into_sorted)
            .collect())
    }

    /// Similarities of the unit queries `qb` (row-major) with row block `b`, offered to `tops`.
    fn scan_block(&self, qb: &[f32], b: usize, sims: &mut Vec<f32>, tops: &mut [TopK]) {
        let dim = self.dim;
        let nq = qb.len() / dim;
        let start = b * ROW_BLOCK;
        let end = (start + ROW_BLOCK).min(self.len());
        let nr = end - start;
        let rows = &self.data[start * dim..end * dim];
        sims.clear();
        sims.resize(nq * nr, 0.0);
        // sims (nq × nr) = queries (nq × dim) · rowsᵀ (dim × nr); rows are stored (nr × dim),
        // so the transpose is just swapped strides.
        crate::model::gru::sgemm(
            nq,
            nr,
            dim,
            sims,
            (nr, 1),
            false,
            qb,
            (dim, 1),
            rows,
            (1, dim),
            false,
        );
        for (q, top) in tops.iter_mut().enumerate() {
            for (j, &dot) in sims[q * nr..(q + 1) * nr].iter().enumerate() {
                top.offer(CosineHit {
                    similarity: finish_similarity(dot),
                    index: start + j,
                });
            }
        }
    }

    /// The reference: every similarity computed in f64, everything sorted, the first `k` kept.
    pub fn top_k_brute_force(&self, query: &[f32], k: usize) -> Vec<CosineHit> {
        let q = normalized(query);
        let mut all: Vec<CosineHit> = (0..self.len())
            .map(|index| CosineHit {
                similarity: finish_similarity(
                    self.row(index)
                        .iter()
                        .zip(&q)
                        .map(|(&x, &y)| x as f64 * y as f64)
                        .sum::<f64>() as f32,
                ),
                index,
            })
            .collect();
        all.sort_by(CosineHit::rank_cmp);
        all.truncate(k);
        all
    }
}

/// What the encoder says about one sentence: μ, and σ when the model has one.
#[derive(Clone, Debug, PartialEq)]
pub struct Posterior {
    pub mean: Vec<f32>,
    /// Gaussian and nvdm: σ per dimension; bottleneck: none.
    pub std: Option<Vec<f32>>,
}

/// The multi-sample matching rule: draw `samples` codes per sentence; two sentences match when
/// at least `min_close_pairs` of the `samples²` pairs are within Euclidean distance `radius`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct MatchRule {
    /// n: codes drawn per sentence.
    pub samples: usize,
    /// m: close pairs needed for a match, out of n².
    pub min_close_pairs: usize,
    /// t: the largest Euclidean distance of a close pair (inclusive).
    pub radius: f32,
    /// For the search mode: how many cosine neighbours to re-rank (K).
    pub candidates: usize,
    pub seed: u64,
}

impl Default for MatchRule {
    fn default() -> Self {
        Self {
            samples: 10,
            min_close_pairs: 10,
            radius: 1.0,
            candidates: 100,
            seed: 0,
        }
    }
}

impl MatchRule {
    /// Errors naming the first setting that cannot work.
    pub fn validate(&self) -> Result<()> {
        if self.samples == 0 {
            bail!("multi-sample matching needs at least one sample per sentence");
        }
        let pairs = self.samples * self.samples;
        if self.min_close_pairs == 0 || self.min_close_pairs > pairs {
            bail!(
                "the close pairs needed for a match must be between 1 and {pairs} (n² for n = {}), not {}",
                self.samples,
                self.min_close_pairs
            );
        }
        if !(self.radius.is_finite() && self.radius >= 0.0) {
            bail!(
                "the match radius must be a finite distance ≥ 0, not {}",
                self.radius
            );
        }
        if self.candidates == 0 {
            bail!("multi-sample search needs at least one cosine candidate to re-rank");
        }
        Ok(())
    }

    /// Whether `close_pairs` (out of n²) make a match.
    pub fn is_match(&self, close_pairs: u32) -> bool {
        close_pairs as usize >= self.min_close_pairs
    }
}

/// splitmix64: spreads consecutive stream numbers over the seed space.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE5_E9B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// The random stream of entry `stream` under `seed`: each index entry draws from its own
/// stream (its index), and a query from [`QUERY_STREAM`], so draws never depend on order.
pub fn entry_rng(seed: u64, stream: u64) -> StdRng {
    StdRng::seed_from_u64(mix(seed ^ mix(stream)))
}

/// The stream a search query draws from.
pub const QUERY_STREAM: u64 = u64::MAX;

/// `n` codes z = μ + σ·ε, ε ~ N(0, I), row-major (n × dim). Errors when there is no σ.
pub fn draw_codes(posterior: &Posterior, n: usize, rng: &mut StdRng) -> Result<Vec<f32>> {
    let std = posterior.std.as_ref().context(
        "this model gives no σ (a bottleneck code is a point), so there is nothing to sample; \
         multi-sample matching needs a gaussian or nvdm model",
    )?;
    let mut out = Vec::with_capacity(n * posterior.mean.len());
    for _ in 0..n {
        for (&m, &s) in posterior.mean.iter().zip(std) {
            let e: f32 = rng.sample(StandardNormal);
            out.push(m + s * e);
        }
    }
    Ok(out)
}

/// How many (row of `a`, row of `b`) pairs lie within Euclidean distance `radius` (inclusive);
/// `a` and `b` are row-major codes of `dim` values.
pub fn count_close_pairs(a: &[f32], b: &[f32], dim: usize, radius: f32) -> u32 {
    let limit = radius as f64 * radius as f64;
    let mut count = 0;
    for x in a.chunks_exact(dim) {
        for y in b.chunks_exact(dim) {
            let d2: f64 = x
                .iter()
                .zip(y)
                .map(|(&p, &q)| (p as f64 - q as f64).powi(2))
                .sum();
            count += (d2 <= limit) as u32;
        }
    }
    count
}

/// Close pairs of two sentences under `rule`: `a` draws from stream 0, `b` from stream 1.
pub fn close_pairs(a: &Posterior, b: &Posterior, rule: &MatchRule) -> Result<u32> {
    rule.validate()?;
    if a.mean.len() != b.mean.len() {
        bail!(
            "codes of {} and {} dimensions cannot be compared",
            a.mean.len(),
            b.mean.len()
        );
    }
    let sa = draw_codes(a, rule.samples, &mut entry_rng(rule.seed, 0))?;
    let sb = draw_codes(b, rule.samples, &mut entry_rng(rule.seed, 1))?;
    Ok(count_close_pairs(&sa, &sb, a.mean.len(), rule.radius))
}

/// Whether two sentences match: at least m of the n² sampled pairs within distance t.
pub fn matches(a: &Posterior, b: &Posterior, rule: &MatchRule) -> Result<bool> {
    Ok(rule.is_match(close_pairs(a, b, rule)?))
}

/// One entry found by a search.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ContinuousNeighbor<'a> {
    pub index: usize,
    /// Cosine similarity of the query's μ and the entry's μ.
    pub similarity: f32,
    /// Multi-sample search only: close pairs out of n² (a match when ≥ m).
    pub close_pairs: Option<u32>,
    pub text: &'a str,
    pub label: Option<&'a str>,
}

/// μ (and σ), texts and labels of a corpus, searchable by cosine similarity and by
/// multi-sample matching.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ContinuousIndex {
    /// (n, dim) μ as the encoder gave it.
    means: Vec<f32>,
    /// (n, dim) σ, when the model has one.
    stds: Option<Vec<f32>>,
    units: UnitVectors,
    pub texts: Vec<String>,
    /// Per entry, an index into `label_names`.
    pub labels: Vec<Option<u32>>,
    pub label_names: Vec<String>,
    pub meta: IndexMeta,
}

impl ContinuousIndex {
    /// An index of `posteriors` (all `dim` wide; σ for all or none) with their texts and labels.
    pub fn from_parts(
        dim: usize,
        posteriors: &[Posterior],
        texts: Vec<String>,
        labels: &[Option<String>],
        meta: IndexMeta,
    ) -> Result<Self> {
        if posteriors.len() != texts.len() || posteriors.len() != labels.len() {
            bail!(
                "{} codes, {} texts and {} labels do not line up",
                posteriors.len(),
                texts.len(),
                labels.len()
            );
        }
        let with_std = posteriors.first().is_some_and(|p| p.std.is_some());
        if posteriors.iter().any(|p| p.std.is_some() != with_std) {
            bail!("some codes come with σ and some without");
        }
        let means: Vec<f32> = posteriors.iter().flat_map(|p| p.mean.clone()).collect();
        let stds = with_std.then(|| {
            posteriors
                .iter()
                .flat_map(|p| p.std.clone().unwrap_or_default())
                .collect()
        });
        let names: BTreeMap<&str, u32> = labels
            .iter()
            .flatten()
            .map(String::as_str)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .enumerate()
            .map(|(i, n)| (n, i as u32))
            .collect();
        Self::assemble(
            dim,
            means,
            stds,
            texts,
            labels
                .iter()
                .map(|l| l.as_deref().map(|n| names[n]))
                .collect(),
            names.keys().map(|s| s.to_string()).collect(),
            meta,
        )
    }

    /// Checks the parts and normalises the rows.
    fn assemble(
        dim: usize,
        means: Vec<f32>,
        stds: Option<Vec<f32>>,
        texts: Vec<String>,
        labels: Vec<Option<u32>>,
        label_names: Vec<String>,
        meta: IndexMeta,
    ) -> Result<Self> {
        if dim == 0 {
            bail!("codes must have at least one dimension");
        }
        let n = texts.len();
        if means.len() != n * dim {
            bail!(
                "{} μ values do not make {n} codes of {dim} dimensions",
                means.len()
            );
        }
        for (i, row) in means.chunks_exact(dim).enumerate() {
            check_vector(row, dim, &format!("the μ of entry {i}"))?;
        }
        if let Some(stds) = &stds {
            if stds.len() != n * dim {
                bail!(
                    "{} σ values do not make {n} codes of {dim} dimensions",
                    stds.len()
                );
            }
            if let Some(i) = stds.iter().position(|s| !(s.is_finite() && *s >= 0.0)) {
                bail!(
                    "the σ of entry {} is {} in dimension {}; σ must be finite and ≥ 0",
                    i / dim,
                    stds[i],
                    i % dim
                );
            }
        }
        if labels.len() != n {
            bail!("{} labels for {n} texts", labels.len());
        }
        if labels
            .iter()
            .flatten()
            .any(|&l| l as usize >= label_names.len())
        {
            bail!("a label is outside the label names");
        }
        Ok(Self {
            units: UnitVectors::new(dim, means.chunks_exact(dim))?,
            means,
            stds,
            texts,
            labels,
            label_names,
            meta,
        })
    }

    /// Encodes the examples of `splits` of `corpus` with `coder` (a continuous model).
    pub fn build(
        coder: &Coder,
        corpus: &Corpus,
        splits: &[Split],
        progress: &mut dyn FnMut(f64),
    ) -> Result<Self> {
        Self::build_with(
            coder.path(),
            &coder.config().describe(),
            coder.latent_dim(),
            corpus,
            splits,
            &mut |texts| coder.posteriors(texts, progress),
        )
    }

    /// Builds an index of `splits` of `corpus` whose posteriors (`dim` wide) come from
    /// `encode`, for the checkpoint at `checkpoint` described as `model` ([`ContinuousIndex::build`]
    /// passes a [`Coder`]'s posteriors).
    pub fn build_with(
        checkpoint: &Path,
        model: &str,
        dim: usize,
        corpus: &Corpus,
        splits: &[Split],
        encode: &mut dyn FnMut(&[&str]) -> Result<Vec<Posterior>>,
    ) -> Result<Self> {
        let entries = crate::search::index_entries(checkpoint, model, corpus, splits)?;
        let posteriors = encode(&entries.texts.iter().map(String::as_str).collect::<Vec<_>>())?;
        Self::from_parts(
            dim,
            &posteriors,
            entries.texts,
            &entries.labels,
            entries.meta,
        )
    }

    /// The index cached beside `checkpoint` if it was built from this checkpoint file and this
    /// corpus; otherwise the train split of `corpus` encoded with `encode`, saved there for next
    /// time (the same policy as [`crate::search::CorpusIndex::load_or_build`]).
    pub fn load_or_build(
        checkpoint: &Path,
        model: &str,
        corpus: &Corpus,
        dim: usize,
        encode: &mut dyn FnMut(&[&str]) -> Result<Vec<Posterior>>,
    ) -> Result<crate::search::CachedIndex<Self>> {
        crate::search::cached_beside(
            checkpoint,
            Self::load,
            |ix: &Self| {
                ix.meta.corpus_hash == corpus.hash
                    && ix.dim() == dim
                    && ix.is_current_for(checkpoint).unwrap_or(false)
            },
            |model: &str| Self::build_with(checkpoint, model, dim, corpus, &[Split::Train], encode),
            Self::save,
            model,
        )
    }

    /// Whether the index was built from the checkpoint file as it is now.
    pub fn is_current_for(&self, checkpoint: &Path) -> Result<bool> {
        Ok(file_sha256(checkpoint)? == self.meta.checkpoint_sha256)
    }

    pub fn len(&self) -> usize {
        self.texts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.texts.is_empty()
    }

    pub fn dim(&self) -> usize {
        self.units.dim()
    }

    /// Whether entries carry σ (needed for multi-sample matching).
    pub fn has_std(&self) -> bool {
        self.stds.is_some()
    }

    pub fn label(&self, i: usize) -> Option<&str> {
        self.labels[i].map(|l| self.label_names[l as usize].as_str())
    }

    /// Entry `i`'s μ.
    pub fn mean(&self, i: usize) -> &[f32] {
        &self.means[i * self.dim()..(i + 1) * self.dim()]
    }

    /// Entry `i`'s μ and σ.
    pub fn posterior(&self, i: usize) -> Posterior {
        let dim = self.dim();
        Posterior {
            mean: self.mean(i).to_vec(),
            std: self
                .stds
                .as_ref()
                .map(|s| s[i * dim..(i + 1) * dim].to_vec()),
        }
    }

    /// The unit rows the search runs over.
    pub fn unit_vectors(&self) -> &UnitVectors {
        &self.units
    }

    /// The `k` entries whose μ is most similar (cosine) to `query` (a μ, as the explorer holds
    /// it), ordered by (similarity descending, index ascending).
    pub fn search(&self, query: &[f32], k: usize) -> Result<Vec<ContinuousNeighbor<'_>>> {
        check_vector(query, self.dim(), "the query code")?;
        Ok(self.neighbors(&self.units.top_k(query, k)?))
    }

    /// [`ContinuousIndex::search`] for many queries at once, in parallel.
    pub fn search_many(
        &self,
        queries: &[Vec<f32>],
        k: usize,
    ) -> Result<Vec<Vec<ContinuousNeighbor<'_>>>> {
        Ok(self
            .units
            .top_k_many(queries, k)?
            .iter()
            .map(|hits| self.neighbors(hits))
            .collect())
    }

    /// Multi-sample search: the exact cosine top `rule.candidates` (at least `k`) of the
    /// query's μ, re-ranked by close pairs with the query (most first, then similarity, then
    /// index); the best `k` come back with their counts, matches (count ≥ m) and non-matches
    /// alike, so a caller can show both or keep only `rule.is_match`. The query draws from [`QUERY_STREAM`], entry `i`
    /// from stream `i`, all under `rule.seed`.
    pub fn search_matching(
        &self,
        query: &Posterior,
        k: usize,
        rule: &MatchRule,
    ) -> Result<Vec<ContinuousNeighbor<'_>>> {
        rule.validate()?;
        check_vector(&query.mean, self.dim(), "the query code")?;
        if self.stds.is_none() {
            bail!(
                "this index holds no σ (its model gives point codes), so it cannot match by sampling; \
                 use plain cosine search"
            );
        }
        let dim = self.dim();
        let query_codes = draw_codes(query, rule.samples, &mut entry_rng(rule.seed, QUERY_STREAM))?;
        let candidates = self.units.top_k(&query.mean, rule.candidates.max(k))?;
        let mut counted: Vec<(u32, CosineHit)> = candidates
            .par_iter()
            .map(|hit| {
                let codes = draw_codes(
                    &self.posterior(hit.index),
                    rule.samples,
                    &mut entry_rng(rule.seed, hit.index as u64),
                )?;
                Ok((
                    count_close_pairs(&query_codes, &codes, dim, rule.radius),
                    *hit,
                ))
            })
            .collect::<Result<_>>()?;
        counted.sort_by(|(ca, ha), (cb, hb)| cb.cmp(ca).then(ha.rank_cmp(hb)));
        counted.truncate(k);
        Ok(counted
            .into_iter()
            .map(|(count, h)| ContinuousNeighbor {
                close_pairs: Some(count),
                ..self.neighbor(&h)
            })
            .collect())
    }

    fn neighbor(&self, h: &CosineHit) -> ContinuousNeighbor<'_> {
        ContinuousNeighbor {
            index: h.index,
            similarity: h.similarity,
            close_pairs: None,
            text: &self.texts[h.index],
            label: self.label(h.index),
        }
    }

    /// Hits resolved to their texts and labels.
    pub fn neighbors(&self, hits: &[CosineHit]) -> Vec<ContinuousNeighbor<'_>> {
        hits.iter().map(|h| self.neighbor(h)).collect()
    }

    /// The default index path of a checkpoint, the same as a binary one's
    /// ([`crate::search::CorpusIndex::default_path`]): a checkpoint has one kind of code.
    pub fn default_path(checkpoint: &Path) -> PathBuf {
        crate::search::CorpusIndex::default_path(checkpoint)
    }

    /// Atomically writes the index to `path`.
    pub fn save(&self, path: &Path) -> Result<()> {
        let (n, dim) = (self.len(), self.dim());
        let means = le_bytes_f32(&self.means);
        let stds = self.stds.as_deref().map(le_bytes_f32);
        let labels: Vec<u8> = self
            .labels
            .iter()
            .flat_map(|l| l.unwrap_or(u32::MAX).to_le_bytes())
            .collect();
        let mut text_bytes = Vec::new();
        let mut offsets = vec![0u64];
        for t in &self.texts {
            text_bytes.extend_from_slice(t.as_bytes());
            offsets.push(text_bytes.len() as u64);
        }
        let offsets: Vec<u8> = offsets.iter().flat_map(|o| o.to_le_bytes()).collect();
        let mut views = vec![
            ("means", TensorView::new(Dtype::F32, vec![n, dim], &means)?),
            ("labels", TensorView::new(Dtype::U32, vec![n], &labels)?),
            (
                "text_bytes",
                TensorView::new(Dtype::U8, vec![text_bytes.len()], &text_bytes)?,
            ),
            (
                "text_offsets",
                TensorView::new(Dtype::U64, vec![n + 1], &offsets)?,
            ),
        ];
        if let Some(stds) = &stds {
            views.push(("stds", TensorView::new(Dtype::F32, vec![n, dim], stds)?));
        }
        let mut meta = HashMap::new();
        meta.insert("format".to_string(), CONTINUOUS_INDEX_FORMAT.to_string());
        meta.insert("dim".to_string(), dim.to_string());
        meta.insert(
            "label_names".to_string(),
            serde_json::to_string(&self.label_names)?,
        );
        meta.insert("index".to_string(), serde_json::to_string(&self.meta)?);
        let bytes = safetensors::serialize(views, Some(meta)).context("serialising the index")?;
        write_atomically(path, &bytes)
    }

    /// Reads an index written by [`ContinuousIndex::save`].
    pub fn load(path: &Path) -> Result<Self> {
        let shown = path.display();
        let bytes = crate::checkpoint::read_regular_file(path, "index")?;
        crate::checkpoint::check_header_size(
            &bytes,
            crate::search::MAX_INDEX_HEADER_BYTES,
            &format!("index `{shown}`"),
        )?;
        let st = SafeTensors::deserialize(&bytes)
            .map_err(|e| anyhow::anyhow!("`{shown}` is not a valid index file: {e}"))?;
        let (_, header) = SafeTensors::read_metadata(&bytes)
            .map_err(|e| anyhow::anyhow!("`{shown}` is not a valid index file: {e}"))?;
        let meta = header.metadata().clone().unwrap_or_default();
        match meta.get("format").map(String::as_str) {
            Some(CONTINUOUS_INDEX_FORMAT) => {}
            Some(INDEX_FORMAT) => bail!(
                "`{shown}` is a binary-code (Hamming) index, not a continuous one; load it with the binary index"
            ),
            _ => bail!(
                "`{shown}` is not a latent-tui continuous index (format `{CONTINUOUS_INDEX_FORMAT}`)"
            ),
        }
        let field = |k: &str| {
            meta.get(k)
                .with_context(|| format!("`{shown}` lacks the `{k}` metadata entry"))
        };
        let dim: usize = field("dim")?
            .parse()
            .with_context(|| format!("`{shown}`: `dim` is not a number"))?;
        let label_names: Vec<String> = serde_json::from_str(field("label_names")?)
            .with_context(|| format!("`{shown}`: bad `label_names`"))?;
        let info: IndexMeta = serde_json::from_str(field("index")?)
            .with_context(|| format!("`{shown}`: bad `index` metadata"))?;
        let tensor = |name: &str, dtype: Dtype| -> Result<TensorView<'_>> {
            let t = st
                .tensor(name)
                .map_err(|e| anyhow::anyhow!("`{shown}`: tensor `{name}`: {e}"))?;
            if t.dtype() != dtype {
                bail!(
                    "`{shown}`: tensor `{name}` is {:?}, expected {dtype:?}",
                    t.dtype()
                );
            }
            Ok(t)
        };
        let matrix = |name: &str| -> Result<Vec<f32>> {
            let t = tensor(name, Dtype::F32)?;
            if t.shape().len() != 2 || t.shape()[1] != dim {
                bail!(
                    "`{shown}`: tensor `{name}` has shape {:?}, expected (n, {dim})",
                    t.shape()
                );
            }
            Ok(from_le_f32(t.data()))
        };
        let means = matrix("means")?;
        let stds = if st.names().contains(&"stds") {
            Some(matrix("stds")?)
        } else {
            None
        };
        let n = means.len() / dim.max(1);
        let labels =
            crate::search::index_labels(&format!("`{shown}`"), &tensor("labels", Dtype::U32)?, n)?;
        let texts = crate::search::index_texts(
            &format!("`{shown}`"),
            &tensor("text_bytes", Dtype::U8)?,
            &tensor("text_offsets", Dtype::U64)?,
            n,
        )?;
        Self::assemble(dim, means, stds, texts, labels, label_names, info)
            .map_err(|e| anyhow::anyhow!("`{shown}`: {e}"))
    }
}

fn le_bytes_f32(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn from_le_f32(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
        .collect()
}

/// Texts per progress report when encoding with a sequence model.
const SEQ_PROGRESS_CHUNK: usize = 4096;

/// μ and σ of each text under a bag-of-words model (nvdm: σ; lsh and nash give their `loc`).
pub fn bow_posteriors(
    b: &BowCheckpoint,
    texts: &[&str],
    progress: &mut dyn FnMut(f64),
) -> Result<Vec<Posterior>> {
    let bags: Vec<_> = texts
        .iter()
        .map(|t| bag_of_words(&b.vocab, &normalize(t)))
        .collect();
    let mut out = Vec::with_capacity(bags.len());
    for chunk in bags.chunks(EVAL_BATCH) {
        let refs: Vec<&[(u32, f32)]> = chunk.iter().map(Vec::as_slice).collect();
        let batch = BagBatch::new(&refs, b.model.device())?;
        let params = b.model.encode(&batch)?;
        let means = params.loc.to_vec2::<f32>()?;
        let stds = match &params.logvar {
            Some(lv) => Some((lv * 0.5)?.exp()?.to_vec2::<f32>()?),
            None => None,
        };
        for (i, mean) in means.into_iter().enumerate() {
            out.push(Posterior {
                mean,
                std: stds.as_ref().map(|s| s[i].clone()),
            });
        }
        progress(out.len() as f64 / bags.len().max(1) as f64);
    }
    Ok(out)
}

/// μ and σ of each text under a continuous sequence model ([`Coder::posteriors`]).
/// A text with no words is encoded as `<unk>`, as [`crate::coder`] does.
pub fn engine_posteriors(
    engine: &Engine,
    texts: &[&str],
    progress: &mut dyn FnMut(f64),
) -> Result<Vec<Posterior>> {
    if !engine.kind().has_latent() {
        bail!("an `lm` model has no encoder, so sentences have no code");
    }
    if engine.kind().is_binary() {
        bail!(
            "a `{}` model has binary codes; search it by Hamming distance (the binary index)",
            engine.kind()
        );
    }
    let mut out = Vec::with_capacity(texts.len());
    for chunk in texts.chunks(SEQ_PROGRESS_CHUNK) {
        let ids: Vec<Vec<u32>> = engine
            .tokenize_many(chunk)
            .into_iter()
            .map(|t| {
                let ids = t.ids;
                if ids.is_empty() {
                    vec![UNK]
                } else {
                    ids
                }
            })
            .collect();
        out.extend(engine.encode(&ids)?.into_iter().map(|e| Posterior {
            mean: e.mean,
            std: e.std,
        }));
        progress(out.len() as f64 / texts.len().max(1) as f64);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows of ±1 in 16 dimensions: unit rows are ±0.25, every product ±1/16 and every partial
    /// sum a multiple of 1/16, so similarities are exact in any summation order and tie often.
    fn sign_rows(n: usize, dim: usize, rng: &mut StdRng) -> Vec<Vec<f32>> {
        (0..n)
            .map(|_| {
                (0..dim)
                    .map(|_| if rng.random_bool(0.5) { 1.0 } else { -1.0 })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn top_k_equals_brute_force_exactly_when_similarities_are_exact() -> Result<()> {
        let mut rng = StdRng::seed_from_u64(5);
        for dim in [16, 64] {
            let mut rows = sign_rows(5000, dim, &mut rng);
            rows[10] = vec![0.0; dim];
            rows[4000] = vec![0.0; dim];
            rows[4500] = rows[3].clone();
            let index = UnitVectors::new(dim, rows.iter().map(Vec::as_slice))?;
            let mut queries = sign_rows(70, dim, &mut rng);
            queries.push(vec![0.0; dim]);
            queries.push(rows[3].iter().map(|x| x * 3.0).collect());
            for k in [1, 7, 100, 2500, 4999, 5000, 6000] {
                let many = index.top_k_many(&queries, k)?;
                for (q, hits) in queries.iter().zip(&many) {
                    let brute = index.top_k_brute_force(q, k);
                    assert_eq!(hits, &brute, "dim {dim}, k {k}");
                    assert_eq!(hits.len(), k.min(5000));
                }
                // The single-query path splits the rows across threads instead of the queries.
                for q in queries.iter().step_by(13) {
                    assert_eq!(index.top_k(q, k)?, index.top_k_brute_force(q, k));
                }
            }
            let zero = index.top_k(&vec![0.0; dim], 4)?;
            assert_eq!(
                zero.iter().map(|h| h.index).collect::<Vec<_>>(),
                vec![0, 1, 2, 3],
                "a zero query is equally similar (0) to everything; ties go to the earlier entry"
            );
            assert!(zero.iter().all(|h| h.similarity == 0.0));
            let dup = index.top_k(&rows[3], 2)?;
            assert_eq!(
                (dup[0].index, dup[0].similarity, dup[1].index),
                (3, 1.0, 4500)
            );
        }
        Ok(())
    }

    #[test]
    fn top_k_agrees_with_f64_cosine_on_gaussian_data() -> Result<()> {
        let mut rng = StdRng::seed_from_u64(9);
        let dim = 32;
        let gauss = |rng: &mut StdRng| -> Vec<f32> {
            (0..dim)
                .map(|_| rng.sample::<f32, _>(StandardNormal))
                .collect()
        };
        let rows: Vec<Vec<f32>> = (0..3000).map(|_| gauss(&mut rng)).collect();
        let index = UnitVectors::new(dim, rows.iter().map(Vec::as_slice))?;
        let queries: Vec<Vec<f32>> = (0..20).map(|_| gauss(&mut rng)).collect();
        let many = index.top_k_many(&queries, 50)?;
        for (q, hits) in queries.iter().zip(&many) {
            let brute = index.top_k_brute_force(q, 50);
            for (i, (h, b)) in hits.iter().zip(&brute).enumerate() {
                assert!((h.similarity - b.similarity).abs() < 1e-5);
                assert!((h.similarity - cosine(q, &rows[h.index])).abs() < 1e-5);
                let near_tie = [i.wrapping_sub(1), i + 1]
                    .iter()
                    .filter_map(|&j| brute.get(j))
                    .any(|o| (o.similarity - b.similarity).abs() < 1e-5);
                if !near_tie {
                    assert_eq!(h.index, b.index);
                }
            }
        }
        Ok(())
    }

    #[test]
    fn edge_cases_and_bad_input() -> Result<()> {
        let empty = UnitVectors::new(3, std::iter::empty())?;
        assert!(empty.top_k(&[1.0, 0.0, 0.0], 5)?.is_empty());
        let one = UnitVectors::new(2, [[3.0f32, 4.0].as_slice()])?;
        assert!(one.top_k(&[1.0, 0.0], 0)?.is_empty());
        let hits = one.top_k(&[1.0, 0.0], 10)?;
        assert_eq!(hits.len(), 1);
        assert!((hits[0].similarity - 0.6).abs() < 1e-6);
        assert!(one.top_k(&[1.0], 1).is_err(), "wrong width");
        let err = one.top_k(&[f32::NAN, 0.0], 1).unwrap_err().to_string();
        assert!(err.contains("non-finite"), "{err}");
        assert!(UnitVectors::new(2, [[1.0f32, f32::INFINITY].as_slice()]).is_err());
        assert!(UnitVectors::new(0, std::iter::empty()).is_err());
        assert_eq!(
            cosine(&[0.0, 0.0], &[1.0, 2.0]),
            0.0,
            "zero vectors: 0, not NaN"
        );
        Ok(())
    }

    #[test]
    fn count_close_pairs_counts_each_of_the_n_squared_pairs() {
        // a: (0,0), (10,0); b: (1,0), (10,1), (50,50), (0,2).
        let a = [0.0, 0.0, 10.0, 0.0];
        let b = [1.0, 0.0, 10.0, 1.0, 50.0, 50.0, 0.0, 2.0];
        // Within 1: (0,0)-(1,0) and (10,0)-(10,1); (0,0)-(0,2) is at 2.
        assert_eq!(count_close_pairs(&a, &b, 2, 1.0), 2);
        assert_eq!(
            count_close_pairs(&a, &b, 2, 2.0),
            3,
            "the radius is inclusive"
        );
        assert_eq!(count_close_pairs(&a, &b, 2, 0.5), 0);
        assert_eq!(count_close_pairs(&a, &b, 2, 100.0), 8);
        let rule = MatchRule {
            samples: 2,
            min_close_pairs: 3,
            ..MatchRule::default()
        };
        assert!(rule.is_match(3) && rule.is_match(4) && !rule.is_match(2));
    }

    #[test]
    fn rule_validation_names_the_bad_setting() {
        let ok = MatchRule {
            samples: 3,
            min_close_pairs: 9,
            ..MatchRule::default()
        };
        assert!(ok.validate().is_ok());
        let too_many = MatchRule {
            min_close_pairs: 10,
            ..ok
        };
        assert!(too_many
            .validate()
            .unwrap_err()
            .to_string()
            .contains("between 1 and 9"));
        assert!(MatchRule { samples: 0, ..ok }.validate().is_err());
        assert!(MatchRule { radius: -1.0, ..ok }.validate().is_err());
        assert!(MatchRule {
            radius: f32::NAN,
            ..ok
        }
        .validate()
        .is_err());
    }
}
