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
//! [`crate::index::ContinuousIndex::search_matching`] uses it as a search mode: the exact cosine top
//! `candidates` are re-ranked by their count of close pairs with the query (then by similarity,
//! then index), and the best `k` returned with their counts.
//!
//! The saved continuous index built on these is [`crate::index::continuous`].

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use anyhow::{bail, Context, Result};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;
use rayon::prelude::*;
use serde::Serialize;

/// What the encoder says about one sentence (defined with the other types models return).
pub use crate::coder::types::Posterior;

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

    /// The similarity a hit needs at least to be kept: the worst kept one once `k` are kept.
    #[inline(always)]
    fn floor(&self) -> f32 {
        match self.heap.peek() {
            Some(worst) if self.heap.len() >= self.k => worst.0.similarity,
            _ => f32::NEG_INFINITY,
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
pub(crate) fn check_vector(v: &[f32], dim: usize, what: &str) -> Result<()> {
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
        crate::model::sgemm::sgemm(
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
            // A similarity below the worst one kept cannot enter (the heap is not touched).
            let mut floor = top.floor();
            for (j, &dot) in sims[q * nr..(q + 1) * nr].iter().enumerate() {
                let similarity = finish_similarity(dot);
                if similarity < floor {
                    continue;
                }
                top.offer(CosineHit {
                    similarity,
                    index: start + j,
                });
                floor = top.floor();
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
