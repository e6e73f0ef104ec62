//! Clustering of latent codes, the automatic labels of clusters, and the measures that compare a
//! clustering with gold labels. Pure functions over codes and texts: no model, no terminal.
//!
//! Binary codes are clustered in Hamming space, where a mean is not a code:
//!
//! * **k-medoids** (Voronoi iteration): every centre is a member, the one with the smallest sum
//!   of Hamming distances to its cluster. That sum is computed exactly from the cluster's
//!   per-bit counts — Σᵢ d(x, mᵢ) = Σ_b (x_b ? n − c_b : c_b) — so an update costs O(n · bits),
//!   not O(n²).
//! * **k-modes**: every centre is the per-bit majority of its members (the code minimising the
//!   summed Hamming distance over *all* codes, not only members).
//!
//! Continuous codes (μ) and the TF-IDF baseline use **k-means** (Lloyd) on sparse or dense
//! vectors with squared Euclidean distance. Every method starts from k-means++ seeding and keeps
//! the cheapest of a few seeded restarts, so a result is a function of the seed (and the same
//! for any thread count: per-point work runs in parallel, sums run in point order). On a large
//! corpus k-means runs its starts and restarts on a seeded sample of
//! [`ClusterOptions::sample`] points and refines the best over every point with a few Lloyd
//! iterations ([`REFINE_ITERATIONS`]), so a corpus of 124k codes clusters in seconds and every
//! point still ends in its nearest centre's cluster.
//!
//! Labels come from the weighted log-odds of each word in a cluster against the rest of the
//! corpus with an informative Dirichlet prior (Monroe, Colaresi & Quinn, 2008): the z-score
//! rewards words that are both frequent in the cluster and rare elsewhere, and its variance
//! term keeps one-off words from topping the list.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::hamming::PackedCodes;

/// How to cluster codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClusterMethod {
    KMedoids,
    KModes,
    KMeans,
}

impl ClusterMethod {
    pub const ALL: [ClusterMethod; 3] = [
        ClusterMethod::KMedoids,
        ClusterMethod::KModes,
        ClusterMethod::KMeans,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ClusterMethod::KMedoids => "kmedoids",
            ClusterMethod::KModes => "kmodes",
            ClusterMethod::KMeans => "kmeans",
        }
    }

    /// A phrase for reports: the method and its distance.
    pub fn describe(self) -> &'static str {
        match self {
            ClusterMethod::KMedoids => "k-medoids (Hamming)",
            ClusterMethod::KModes => "k-modes (Hamming, per-bit majority centres)",
            ClusterMethod::KMeans => "k-means (squared Euclidean)",
        }
    }

    /// Whether the method needs binary codes.
    pub fn is_hamming(self) -> bool {
        !matches!(self, ClusterMethod::KMeans)
    }
}

impl fmt::Display for ClusterMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ClusterMethod {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let key = s.replace(['-', '_'], "").to_ascii_lowercase();
        ClusterMethod::ALL
            .into_iter()
            .find(|m| m.name() == key)
            .ok_or_else(|| {
                format!("unknown clustering method `{s}` (expected kmedoids, kmodes or kmeans)")
            })
    }
}

/// Settings shared by every method.
#[derive(Clone, Debug, Serialize)]
pub struct ClusterOptions {
    pub k: usize,
    pub seed: u64,
    /// Lloyd / Voronoi iterations per restart at most (stops earlier once nothing moves).
    pub max_iterations: usize,
    /// Independent k-means++ starts; the cheapest result is kept.
    pub restarts: usize,
    /// k-means: with more points than this, the starts and restarts run on a seeded sample of
    /// this many and the best is refined over every point (0: always every point). The
    /// Hamming methods, cheap per point, always use every point.
    pub sample: usize,
}

/// [`ClusterOptions::sample`] by default: enough points for stable centres at the cluster
/// counts the explorer offers (200 clusters at most), few enough for a first screen in seconds.
pub const DEFAULT_SAMPLE: usize = 10_000;

impl Default for ClusterOptions {
    fn default() -> Self {
        Self {
            k: 10,
            seed: 0,
            max_iterations: 50,
            restarts: 3,
            sample: DEFAULT_SAMPLE,
        }
    }
}

/// The outcome of a clustering.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Clustering {
    /// The cluster of each point, below `k`.
    pub assignment: Vec<usize>,
    /// Each cluster's centre: a code (0/1) for the Hamming methods, a mean for k-means.
    pub centers: Vec<Vec<f32>>,
    /// k-medoids: the point that is each cluster's centre.
    pub medoids: Option<Vec<usize>>,
    /// Summed distance of the points to their centres (Hamming, or squared Euclidean).
    pub cost: f64,
    /// Iterations of the restart that was kept (k-medoids: its k-modes start's and its own).
    pub iterations: usize,
}

impl Clustering {
    pub fn k(&self) -> usize {
        self.centers.len()
    }

    /// Points per cluster.
    pub fn sizes(&self) -> Vec<usize> {
        let mut sizes = vec![0; self.k()];
        for &c in &self.assignment {
            sizes[c] += 1;
        }
        sizes
    }

    /// The members of cluster `c`, in point order.
    pub fn members(&self, c: usize) -> Vec<usize> {
        (0..self.assignment.len())
            .filter(|&i| self.assignment[i] == c)
            .collect()
    }
}

fn check_k(n: usize, k: usize) -> Result<(), String> {
    if k == 0 {
        return Err("the number of clusters k must be at least 1".into());
    }
    if k > n {
        return Err(format!("cannot make {k} clusters of {n} points"));
    }
    Ok(())
}

/// k-means++ seeding: the first centre uniformly, each next one with probability proportional
/// to the squared distance to the nearest centre so far. `dist(i, j)` is the distance of points
/// i and j (not squared).
fn kmeans_plus_plus(
    n: usize,
    k: usize,
    rng: &mut StdRng,
    dist: impl Fn(usize, usize) -> f64 + Sync,
) -> Vec<usize> {
    let mut chosen = vec![rng.random_range(0..n)];
    let mut nearest: Vec<f64> = (0..n)
        .into_par_iter()
        .map(|i| dist(i, chosen[0]).powi(2))
        .collect();
    while chosen.len() < k {
        let total: f64 = nearest.iter().sum();
        let next = if total > 0.0 {
            let mut target = rng.random::<f64>() * total;
            let mut pick = n - 1;
            for (i, &d) in nearest.iter().enumerate() {
                if d > 0.0 && target < d {
                    pick = i;
                    break;
                }
                target -= d;
            }
            // Rounding can leave the target past the last positive weight.
            if nearest[pick] == 0.0 {
                pick = nearest.iter().rposition(|&d| d > 0.0).expect("total > 0");
            }
            pick
        } else {
            // Fewer distinct points than clusters: any unused point (its cluster will be empty
            // until the empty-cluster repair gives it one).
            let unused: Vec<usize> = (0..n).filter(|i| !chosen.contains(i)).collect();
            unused[rng.random_range(0..unused.len())]
        };
        chosen.push(next);
        let c = next;
        nearest
            .par_iter_mut()
            .enumerate()
            .for_each(|(i, d)| *d = d.min(dist(i, c).powi(2)));
    }
    chosen
}

/// Seeds of the restarts, all drawn from one generator seeded with `seed`.
fn restart_seeds(opts: &ClusterOptions) -> Vec<u64> {
    let mut rng = StdRng::seed_from_u64(opts.seed);
    (0..opts.restarts.max(1)).map(|_| rng.random()).collect()
}

fn best_of(runs: impl Iterator<Item = Clustering>) -> Clustering {
    runs.reduce(|best, r| if r.cost < best.cost { r } else { best })
        .expect("at least one restart")
}

/// k-medoids over binary codes with Hamming distance.
///
/// Voronoi iteration started from k-means++ seeds stalls in Hamming space: codes are nearly
/// equidistant, so each seed is already the medoid of its own cell. Each restart therefore
/// starts from the medoids of a k-modes clustering with the same seed, and the Voronoi
/// iteration then lowers the k-medoids cost from there.
pub fn kmedoids(codes: &PackedCodes, opts: &ClusterOptions) -> Result<Clustering, String> {
    kmedoids_with_progress(codes, opts, &mut |_| {})
}

/// [`kmedoids`], telling `progress` the fraction done (0 to 1, never decreasing) after each
/// iteration: every restart is an equal share, half of it its k-modes start and half its
/// Voronoi iteration, each iteration 1/`max_iterations` of its half (a run that settles early
/// jumps to the end of its half).
pub fn kmedoids_with_progress(
    codes: &PackedCodes,
    opts: &ClusterOptions,
    progress: &mut dyn FnMut(f64),
) -> Result<Clustering, String> {
    check_k(codes.len(), opts.k)?;
    let seeds = restart_seeds(opts);
    let share = 1.0 / seeds.len() as f64;
    Ok(best_of(seeds.into_iter().enumerate().map(|(r, s)| {
        let base = r as f64 * share;
        let modes = hamming_lloyd(
            codes,
            opts,
            seeded_start(codes, opts.k, s),
            false,
            &mut |f| progress(base + share * 0.5 * f),
        );
        let start: Vec<usize> = (0..opts.k)
            .map(|c| {
                hamming_medoid(codes, &modes.members(c))
                    .unwrap_or_else(|| modes.assignment.iter().position(|&a| a == c).unwrap_or(0))
            })
            .collect();
        let mut medoids = hamming_lloyd(codes, opts, start, true, &mut |f| {
            progress(base + share * (0.5 + 0.5 * f))
        });
        medoids.iterations += modes.iterations;
        progress(base + share);
        medoids
    })))
}

/// k-means++ seeds for the Hamming methods.
fn seeded_start(codes: &PackedCodes, k: usize, seed: u64) -> Vec<usize> {
    let mut rng = StdRng::seed_from_u64(seed);
    kmeans_plus_plus(codes.len(), k, &mut rng, |i, j| {
        crate::hamming::distance(codes.code(i), codes.code(j)) as f64
    })
}

/// k-modes over binary codes: centres are per-bit majorities, distance is Hamming.
pub fn kmodes(codes: &PackedCodes, opts: &ClusterOptions) -> Result<Clustering, String> {
    kmodes_with_progress(codes, opts, &mut |_| {})
}

/// [`kmodes`], telling `progress` the fraction done after each iteration (every restart an
/// equal share, as [`kmedoids_with_progress`]).
pub fn kmodes_with_progress(
    codes: &PackedCodes,
    opts: &ClusterOptions,
    progress: &mut dyn FnMut(f64),
) -> Result<Clustering, String> {
    check_k(codes.len(), opts.k)?;
    let seeds = restart_seeds(opts);
    let share = 1.0 / seeds.len() as f64;
    Ok(best_of(seeds.into_iter().enumerate().map(|(r, s)| {
        let base = r as f64 * share;
        let run = hamming_lloyd(
            codes,
            opts,
            seeded_start(codes, opts.k, s),
            false,
            &mut |f| progress(base + share * f),
        );
        progress(base + share);
        run
    })))
}

/// Nearest centre of every code (ties to the lower centre) and the distance to it.
fn assign_hamming(codes: &PackedCodes, centers: &[Vec<u64>]) -> Vec<(usize, u32)> {
    (0..codes.len())
        .into_par_iter()
        .map(|i| {
            let x = codes.code(i);
            centers
                .iter()
                .enumerate()
                .map(|(c, m)| (crate::hamming::distance(x, m), c))
                .min()
                .map(|(d, c)| (c, d))
                .expect("k ≥ 1")
        })
        .collect()
}

/// Per-bit counts of set bits among each cluster's members, and the cluster sizes.
fn bit_counts(
    codes: &PackedCodes,
    assignment: &[(usize, u32)],
    k: usize,
) -> (Vec<Vec<u32>>, Vec<u32>) {
    let bits = codes.bits();
    let mut counts = vec![vec![0u32; bits]; k];
    let mut sizes = vec![0u32; k];
    for (i, &(c, _)) in assignment.iter().enumerate() {
        sizes[c] += 1;
        for_each_set_bit(codes.code(i), |b| counts[c][b] += 1);
    }
    (counts, sizes)
}

fn for_each_set_bit(words: &[u64], mut f: impl FnMut(usize)) {
    for (w, &word) in words.iter().enumerate() {
        let mut rest = word;
        while rest != 0 {
            f(w * 64 + rest.trailing_zeros() as usize);
            rest &= rest - 1;
        }
    }
}

/// The summed Hamming distance of `code` to the members whose per-bit counts are `counts`
/// (`size` of them).
fn summed_hamming(code: &[u64], counts: &[u32], size: u32) -> u64 {
    let mut total: i64 = counts.iter().map(|&c| c as i64).sum();
    for_each_set_bit(code, |b| total += size as i64 - 2 * counts[b] as i64);
    total as u64
}

/// Among `members`, the code with the smallest summed Hamming distance to all of them (ties to
/// the earlier member).
pub fn hamming_medoid(codes: &PackedCodes, members: &[usize]) -> Option<usize> {
    let bits = codes.bits();
    let mut counts = vec![0u32; bits];
    for &i in members {
        for_each_set_bit(codes.code(i), |b| counts[b] += 1);
    }
    let size = members.len() as u32;
    members
        .iter()
        .map(|&i| (summed_hamming(codes.code(i), &counts, size), i))
        .min()
        .map(|(_, i)| i)
}

/// The per-bit majority code of `members` (a tie sets the bit when `tie_set`).
fn majority_code(counts: &[u32], size: u32, previous: Option<&[u64]>) -> Vec<u64> {
    let mut words = vec![0u64; crate::hamming::words_for(counts.len())];
    for (b, &c) in counts.iter().enumerate() {
        let set = match (2 * c).cmp(&size) {
            std::cmp::Ordering::Greater => true,
            std::cmp::Ordering::Less => false,
            // A tie keeps the previous centre's bit, so a stable cluster stops moving.
            std::cmp::Ordering::Equal => previous.is_some_and(|p| (p[b / 64] >> (b % 64)) & 1 == 1),
        };
        if set {
            words[b / 64] |= 1 << (b % 64);
        }
    }
    words
}

/// Voronoi iteration (k-medoids, `medoids`) or k-modes from the points `start` as centres.
/// `step` hears the share of `opts.max_iterations` done after each iteration.
fn hamming_lloyd(
    codes: &PackedCodes,
    opts: &ClusterOptions,
    start: Vec<usize>,
    medoids: bool,
    step: &mut dyn FnMut(f64),
) -> Clustering {
    let k = start.len();
    let mut medoid_of: Vec<usize> = start.clone();
    let mut centers: Vec<Vec<u64>> = start.iter().map(|&i| codes.code(i).to_vec()).collect();
    let mut assignment = assign_hamming(codes, &centers);
    let mut iterations = 0;
    for _ in 0..opts.max_iterations {
        iterations += 1;
        let (counts, sizes) = bit_counts(codes, &assignment, k);
        let mut new_centers = centers.clone();
        if medoids {
            // The best member of each cluster, from its counts: one pass over the points.
            let mut best: Vec<(u64, usize)> = vec![(u64::MAX, usize::MAX); k];
            for (i, &(c, _)) in assignment.iter().enumerate() {
                let cost = summed_hamming(codes.code(i), &counts[c], sizes[c]);
                if (cost, i) < best[c] {
                    best[c] = (cost, i);
                }
            }
            for c in 0..k {
                if sizes[c] > 0 {
                    medoid_of[c] = best[c].1;
                    new_centers[c] = codes.code(best[c].1).to_vec();
                }
            }
        } else {
            for c in 0..k {
                if sizes[c] > 0 {
                    new_centers[c] = majority_code(&counts[c], sizes[c], Some(&centers[c]));
                }
            }
        }
        repair_empty_hamming(codes, &assignment, &sizes, &mut new_centers, &mut medoid_of);
        let new_assignment = assign_hamming(codes, &new_centers);
        let moved = new_assignment
            .iter()
            .zip(&assignment)
            .any(|(a, b)| a.0 != b.0);
        let centers_moved = new_centers != centers;
        centers = new_centers;
        assignment = new_assignment;
        step(iterations as f64 / opts.max_iterations as f64);
        if !moved && !centers_moved {
            break;
        }
    }
    let cost = assignment.iter().map(|&(_, d)| d as f64).sum();
    Clustering {
        assignment: assignment.iter().map(|&(c, _)| c).collect(),
        centers: centers
            .iter()
            .map(|w| crate::hamming::unpack(w, codes.bits()))
            .collect(),
        medoids: medoids.then_some(medoid_of),
        cost,
        iterations,
    }
}

/// Gives each empty cluster the point farthest from its centre (among clusters with more than
/// one member), one point per empty cluster, deterministically.
fn repair_empty_hamming(
    codes: &PackedCodes,
    assignment: &[(usize, u32)],
    sizes: &[u32],
    centers: &mut [Vec<u64>],
    medoid_of: &mut [usize],
) {
    let empty: Vec<usize> = (0..sizes.len()).filter(|&c| sizes[c] == 0).collect();
    if empty.is_empty() {
        return;
    }
    let mut far: Vec<(u32, usize)> = assignment
        .iter()
        .enumerate()
        .filter(|(_, &(c, _))| sizes[c] > 1)
        .map(|(i, &(_, d))| (d, i))
        .collect();
    far.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    for (c, (_, i)) in empty.into_iter().zip(far) {
        centers[c] = codes.code(i).to_vec();
        medoid_of[c] = i;
    }
}

/// A sparse vector: (dimension, value) pairs in increasing dimension order.
pub type SparseVector = Vec<(u32, f32)>;

/// Dense vectors as sparse ones (every dimension kept), for [`kmeans_sparse`].
pub fn to_sparse(points: &[Vec<f32>]) -> Vec<SparseVector> {
    points
        .iter()
        .map(|p| p.iter().enumerate().map(|(d, &v)| (d as u32, v)).collect())
        .collect()
}

fn sparse_dot(a: &[(u32, f32)], b: &[(u32, f32)]) -> f64 {
    let (mut i, mut j, mut s) = (0, 0, 0f64);
    while i < a.len() && j < b.len() {
        match a[i].0.cmp(&b[j].0) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                s += a[i].1 as f64 * b[j].1 as f64;
                i += 1;
                j += 1;
            }
        }
    }
    s
}

fn sq_norm(a: &[(u32, f32)]) -> f64 {
    a.iter().map(|&(_, v)| (v as f64).powi(2)).sum()
}

/// Squared Euclidean distance of two dense vectors of the same length, accumulated in 16 lanes
/// (vectorised; the same order whatever the thread count).
fn sq_dist(a: &[f32], b: &[f32]) -> f32 {
    const LANES: usize = 16;
    let mut acc = [0f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..LANES {
            let d = x[l] - y[l];
            acc[l] += d * d;
        }
    }
    for (l, (x, y)) in ra.iter().zip(rb).enumerate() {
        let d = x - y;
        acc[l] += d * d;
    }
    acc.iter().sum()
}

/// The points the restarts of k-means run on: `None` for all of them, else a seeded random
/// sample of `opts.sample` (at least `k`) in increasing order, when there are more points than
/// that.
fn restart_sample(n: usize, opts: &ClusterOptions) -> Option<Vec<usize>> {
    let m = opts.sample.max(opts.k);
    if opts.sample == 0 || n <= m {
        return None;
    }
    use rand::seq::SliceRandom;
    let mut all: Vec<usize> = (0..n).collect();
    // A stream of its own, so the sample does not repeat the restarts' draws.
    all.shuffle(&mut StdRng::seed_from_u64(
        opts.seed ^ 0x5a3d_1e5a_3d1e_5a3d,
    ));
    all.truncate(m);
    all.sort_unstable();
    Some(all)
}

/// Share of points that may still change cluster when the refinement of a sampled clustering
/// over all points stops (Lloyd iterations over all points cost the most, and the last ones
/// move a handful of points).
pub const REFINE_TOLERANCE: f64 = 1e-3;

/// Lloyd iterations over all points at most after a sampled clustering (fewer once fewer than
/// [`REFINE_TOLERANCE`] of the points move).
pub const REFINE_ITERATIONS: usize = 10;

/// k-means (Lloyd, squared Euclidean) of dense points.
///
/// With more than `opts.sample` points, the k-means++ starts and restarts run on a seeded
/// sample of that many, and the best of them is refined over every point (Lloyd from its
/// centres, until fewer than [`REFINE_TOLERANCE`] of the points move, [`REFINE_ITERATIONS`] at
/// most), so every point is assigned to its nearest final centre.
pub fn kmeans(points: &[Vec<f32>], opts: &ClusterOptions) -> Result<Clustering, String> {
    kmeans_with_progress(points, opts, &mut |_| {})
}

/// [`kmeans`], telling `progress` the fraction done (0 to 1, never decreasing) after each
/// Lloyd iteration: every restart is an equal share, and so is the refinement over every
/// point after a sampled clustering.
pub fn kmeans_with_progress(
    points: &[Vec<f32>],
    opts: &ClusterOptions,
    progress: &mut dyn FnMut(f64),
) -> Result<Clustering, String> {
    let dim = points.first().map_or(0, Vec::len);
    if points.iter().any(|p| p.len() != dim) {
        return Err("points of different dimensions".into());
    }
    check_k(points.len(), opts.k)?;
    let rows: Vec<&[f32]> = points.iter().map(Vec::as_slice).collect();
    let seeds = restart_seeds(opts);
    let restarts = |rows: &[&[f32]], progress: &mut dyn FnMut(f64)| {
        let share = 1.0 / seeds.len() as f64;
        best_of(seeds.iter().enumerate().map(|(r, &seed)| {
            let mut rng = StdRng::seed_from_u64(seed);
            let start = kmeans_plus_plus(rows.len(), opts.k, &mut rng, |i, j| {
                (sq_dist(rows[i], rows[j]) as f64).sqrt()
            });
            let centers = start.iter().map(|&i| rows[i].to_vec()).collect();
            let base = r as f64 * share;
            let run = dense_lloyd(rows, centers, opts.max_iterations, 0.0, &mut |f| {
                progress(base + share * f)
            });
            progress(base + share);
            run
        }))
    };
    Ok(match restart_sample(rows.len(), opts) {
        None => restarts(&rows, progress),
        Some(picked) => {
            let sample: Vec<&[f32]> = picked.iter().map(|&i| rows[i]).collect();
            let parts = seeds.len() as f64 + 1.0;
            let best = restarts(&sample, &mut |f| progress(f * (parts - 1.0) / parts));
            let mut full = dense_lloyd(
                &rows,
                best.centers,
                opts.max_iterations.min(REFINE_ITERATIONS),
                REFINE_TOLERANCE,
                &mut |f| progress((parts - 1.0 + f) / parts),
            );
            full.iterations += best.iterations;
            progress(1.0);
            full
        }
    })
}

/// Lloyd iterations over dense `rows` from `centers`, at most `max_iterations`, stopping once
/// no more than `tolerance` of the points changed cluster; `step` hears the share of
/// `max_iterations` done after each iteration.
fn dense_lloyd(
    rows: &[&[f32]],
    mut centers: Vec<Vec<f32>>,
    max_iterations: usize,
    tolerance: f64,
    step: &mut dyn FnMut(f64),
) -> Clustering {
    let k = centers.len();
    let dim = centers.first().map_or(0, Vec::len);
    let assign = |centers: &[Vec<f32>]| -> Vec<(usize, f64)> {
        rows.par_iter()
            .map(|p| {
                let mut best = (0, f32::INFINITY);
                for (c, m) in centers.iter().enumerate() {
                    let d = sq_dist(p, m);
                    if d < best.1 {
                        best = (c, d);
                    }
                }
                (best.0, best.1 as f64)
            })
            .collect()
    };
    let mut assignment = assign(&centers);
    let mut iterations = 0;
    for _ in 0..max_iterations {
        iterations += 1;
        let mut sums = vec![vec![0f64; dim]; k];
        let mut sizes = vec![0usize; k];
        for (p, &(c, _)) in rows.iter().zip(&assignment) {
            sizes[c] += 1;
            for (s, &v) in sums[c].iter_mut().zip(p.iter()) {
                *s += v as f64;
            }
        }
        for c in 0..k {
            if sizes[c] > 0 {
                centers[c] = sums[c]
                    .iter()
                    .map(|s| (s / sizes[c] as f64) as f32)
                    .collect();
            }
        }
        for (c, i) in refill_empty(&sizes, &assignment) {
            centers[c] = rows[i].to_vec();
        }
        let next = assign(&centers);
        let done = converged(&next, &assignment, tolerance);
        assignment = next;
        step(iterations as f64 / max_iterations as f64);
        if done {
            break;
        }
    }
    Clustering {
        assignment: assignment.iter().map(|&(c, _)| c).collect(),
        centers,
        medoids: None,
        cost: assignment.iter().map(|&(_, d)| d).sum(),
        iterations,
    }
}

/// k-means (Lloyd, squared Euclidean) of sparse points in `dim` dimensions, e.g. TF-IDF
/// vectors; centres are dense means. More than `opts.sample` points are clustered as
/// [`kmeans`] does: restarts on a seeded sample, then refined over every point.
pub fn kmeans_sparse(
    points: &[SparseVector],
    dim: usize,
    opts: &ClusterOptions,
) -> Result<Clustering, String> {
    kmeans_sparse_with_progress(points, dim, opts, &mut |_| {})
}

/// [`kmeans_sparse`], telling `progress` the fraction done as [`kmeans_with_progress`] does.
pub fn kmeans_sparse_with_progress(
    points: &[SparseVector],
    dim: usize,
    opts: &ClusterOptions,
    progress: &mut dyn FnMut(f64),
) -> Result<Clustering, String> {
    check_k(points.len(), opts.k)?;
    if let Some(bad) = points.iter().flatten().find(|&&(d, _)| d as usize >= dim) {
        return Err(format!("dimension {} outside the {dim} dimensions", bad.0));
    }
    let norms: Vec<f64> = points.iter().map(|p| sq_norm(p)).collect();
    let seeds = restart_seeds(opts);
    let restarts = |points: &[&SparseVector], norms: &[f64], progress: &mut dyn FnMut(f64)| {
        let share = 1.0 / seeds.len() as f64;
        best_of(seeds.iter().enumerate().map(|(r, &seed)| {
            let mut rng = StdRng::seed_from_u64(seed);
            let start = kmeans_plus_plus(points.len(), opts.k, &mut rng, |i, j| {
                (norms[i] + norms[j] - 2.0 * sparse_dot(points[i], points[j]))
                    .max(0.0)
                    .sqrt()
            });
            let centers = start
                .iter()
                .map(|&i| {
                    let mut c = vec![0f64; dim];
                    for &(d, v) in points[i] {
                        c[d as usize] = v as f64;
                    }
                    c
                })
                .collect();
            let base = r as f64 * share;
            let run = sparse_lloyd(
                points,
                norms,
                dim,
                centers,
                opts.max_iterations,
                0.0,
                &mut |f| progress(base + share * f),
            );
            progress(base + share);
            run
        }))
    };
    let all: Vec<&SparseVector> = points.iter().collect();
    Ok(match restart_sample(points.len(), opts) {
        None => restarts(&all, &norms, progress),
        Some(picked) => {
            let sample: Vec<&SparseVector> = picked.iter().map(|&i| &points[i]).collect();
            let sample_norms: Vec<f64> = picked.iter().map(|&i| norms[i]).collect();
            let parts = seeds.len() as f64 + 1.0;
            let best = restarts(&sample, &sample_norms, &mut |f| {
                progress(f * (parts - 1.0) / parts)
            });
            let centers = best
                .centers
                .iter()
                .map(|c| c.iter().map(|&v| v as f64).collect())
                .collect();
            let mut full = sparse_lloyd(
                &all,
                &norms,
                dim,
                centers,
                opts.max_iterations.min(REFINE_ITERATIONS),
                REFINE_TOLERANCE,
                &mut |f| progress((parts - 1.0 + f) / parts),
            );
            full.iterations += best.iterations;
            progress(1.0);
            full
        }
    })
}

/// Lloyd iterations over sparse `points` (squared norms `norms`) from dense `centers`, as
/// [`dense_lloyd`].
fn sparse_lloyd(
    points: &[&SparseVector],
    norms: &[f64],
    dim: usize,
    mut centers: Vec<Vec<f64>>,
    max_iterations: usize,
    tolerance: f64,
    step: &mut dyn FnMut(f64),
) -> Clustering {
    let k = centers.len();
    let assign = |centers: &[Vec<f64>]| -> Vec<(usize, f64)> {
        let center_norms: Vec<f64> = centers
            .iter()
            .map(|c| c.iter().map(|v| v * v).sum())
            .collect();
        points
            .par_iter()
            .zip(norms)
            .map(|(p, &pn)| {
                let mut best = (usize::MAX, f64::INFINITY);
                for (c, center) in centers.iter().enumerate() {
                    let dot: f64 = p.iter().map(|&(d, v)| v as f64 * center[d as usize]).sum();
                    let d2 = (pn + center_norms[c] - 2.0 * dot).max(0.0);
                    if d2 < best.1 {
                        best = (c, d2);
                    }
                }
                best
            })
            .collect()
    };
    let mut assignment = assign(&centers);
    let mut iterations = 0;
    for _ in 0..max_iterations {
        iterations += 1;
        let mut sums = vec![vec![0f64; dim]; k];
        let mut sizes = vec![0usize; k];
        for (p, &(c, _)) in points.iter().zip(&assignment) {
            sizes[c] += 1;
            for &(d, v) in p.iter() {
                sums[c][d as usize] += v as f64;
            }
        }
        for c in 0..k {
            if sizes[c] > 0 {
                centers[c] = sums[c].iter().map(|s| s / sizes[c] as f64).collect();
            }
        }
        for (c, i) in refill_empty(&sizes, &assignment) {
            centers[c] = vec![0f64; dim];
            for &(d, v) in points[i].iter() {
                centers[c][d as usize] = v as f64;
            }
        }
        let next = assign(&centers);
        let done = converged(&next, &assignment, tolerance);
        assignment = next;
        step(iterations as f64 / max_iterations as f64);
        if done {
            break;
        }
    }
    Clustering {
        assignment: assignment.iter().map(|&(c, _)| c).collect(),
        centers: centers
            .iter()
            .map(|c| c.iter().map(|&v| v as f32).collect())
            .collect(),
        medoids: None,
        cost: assignment.iter().map(|&(_, d)| d).sum(),
        iterations,
    }
}

/// Empty clusters of a Lloyd step take the points farthest from their centres (from clusters
/// of more than one point): (empty cluster, point) pairs, farthest first, ties by index.
fn refill_empty(sizes: &[usize], assignment: &[(usize, f64)]) -> Vec<(usize, usize)> {
    let empty: Vec<usize> = (0..sizes.len()).filter(|&c| sizes[c] == 0).collect();
    if empty.is_empty() {
        return Vec::new();
    }
    let mut far: Vec<(usize, f64)> = assignment
        .iter()
        .enumerate()
        .filter(|(_, &(c, _))| sizes[c] > 1)
        .map(|(i, &(_, d))| (i, d))
        .collect();
    far.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    empty
        .into_iter()
        .zip(far)
        .map(|(c, (i, _))| (c, i))
        .collect()
}

/// Whether a Lloyd step moved no point, or fewer than `tolerance` of them.
fn converged(next: &[(usize, f64)], previous: &[(usize, f64)], tolerance: f64) -> bool {
    let moved = next
        .iter()
        .zip(previous)
        .filter(|(a, b)| a.0 != b.0)
        .count();
    moved == 0 || (moved as f64) < tolerance * next.len() as f64
}

/// Agreement of a clustering with gold labels.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Agreement {
    /// Share of points in their cluster's most frequent gold label.
    pub purity: f64,
    /// Normalised mutual information, I(U; V) / ((H(U) + H(V)) / 2).
    pub nmi: f64,
    /// Adjusted Rand index (Hubert & Arabie): 0 for chance, 1 for identical partitions.
    pub ari: f64,
}

/// The contingency table of two labelings: counts per (gold, cluster) pair.
fn contingency(gold: &[u32], predicted: &[usize]) -> (Vec<Vec<f64>>, Vec<f64>, Vec<f64>) {
    assert_eq!(gold.len(), predicted.len(), "one prediction per gold label");
    let mut gold_ids: HashMap<u32, usize> = HashMap::new();
    let mut pred_ids: HashMap<usize, usize> = HashMap::new();
    let mut cells: Vec<(usize, usize)> = Vec::with_capacity(gold.len());
    for (&g, &p) in gold.iter().zip(predicted) {
        let gn = gold_ids.len();
        let pn = pred_ids.len();
        cells.push((
            *gold_ids.entry(g).or_insert(gn),
            *pred_ids.entry(p).or_insert(pn),
        ));
    }
    let mut table = vec![vec![0f64; pred_ids.len()]; gold_ids.len()];
    for (g, p) in cells {
        table[g][p] += 1.0;
    }
    let rows = table.iter().map(|r| r.iter().sum()).collect();
    let cols = (0..pred_ids.len())
        .map(|p| table.iter().map(|r| r[p]).sum())
        .collect();
    (table, rows, cols)
}

/// Purity, NMI and ARI of `predicted` clusters against `gold` labels.
pub fn agreement(gold: &[u32], predicted: &[usize]) -> Agreement {
    let n = gold.len() as f64;
    if gold.is_empty() {
        return Agreement {
            purity: 0.0,
            nmi: 0.0,
            ari: 0.0,
        };
    }
    let (table, rows, cols) = contingency(gold, predicted);
    let purity = (0..cols.len())
        .map(|p| table.iter().map(|r| r[p]).fold(0.0, f64::max))
        .sum::<f64>()
        / n;

    let entropy = |counts: &[f64]| -> f64 {
        counts
            .iter()
            .filter(|&&c| c > 0.0)
            .map(|&c| -(c / n) * (c / n).ln())
            .sum()
    };
    let (hu, hv) = (entropy(&rows), entropy(&cols));
    let mut mi = 0.0;
    for (g, row) in table.iter().enumerate() {
        for (p, &c) in row.iter().enumerate() {
            if c > 0.0 {
                mi += (c / n) * ((c * n) / (rows[g] * cols[p])).ln();
            }
        }
    }
    // Two single-cluster partitions are identical: no information to share, perfect agreement.
    let nmi = if hu + hv == 0.0 {
        1.0
    } else {
        (mi / ((hu + hv) / 2.0)).clamp(0.0, 1.0)
    };

    let pairs = |x: f64| x * (x - 1.0) / 2.0;
    let index: f64 = table.iter().flatten().map(|&c| pairs(c)).sum();
    let sum_rows: f64 = rows.iter().map(|&c| pairs(c)).sum();
    let sum_cols: f64 = cols.iter().map(|&c| pairs(c)).sum();
    let expected = sum_rows * sum_cols / pairs(n).max(f64::MIN_POSITIVE);
    let max_index = (sum_rows + sum_cols) / 2.0;
    let ari = if (max_index - expected).abs() < 1e-12 {
        // Both partitions trivial (all singletons or one cluster): they agree exactly.
        1.0
    } else {
        (index - expected) / (max_index - expected)
    };
    Agreement { purity, nmi, ari }
}

/// A word that marks a cluster, with its log-odds z-score against the rest of the corpus and
/// the share of the cluster's texts that contain it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DistinctiveWord {
    pub word: String,
    pub z: f64,
    pub share: f64,
}

/// Total prior pseudo-count α₀ of the informative Dirichlet prior, spread over words in
/// proportion to their corpus frequency.
const PRIOR_STRENGTH: f64 = 500.0;

/// The `top` most distinctive content words of each of `k` clusters (words counted once per
/// text; stop words and punctuation skipped). `texts` are normalized (space-separated tokens).
pub fn distinctive_words(
    texts: &[&str],
    assignment: &[usize],
    k: usize,
    top: usize,
) -> Vec<Vec<DistinctiveWord>> {
    distinctive_words_of(texts, assignment, k, top, &|w| {
        crate::bow::is_content_word(w, false)
    })
}

/// [`distinctive_words`] over the tokens `counted` keeps (the others are not words of the
/// texts at all: neither listed nor part of the corpus counts the prior is made of).
pub fn distinctive_words_of(
    texts: &[&str],
    assignment: &[usize],
    k: usize,
    top: usize,
    counted: &dyn Fn(&str) -> bool,
) -> Vec<Vec<DistinctiveWord>> {
    assert_eq!(texts.len(), assignment.len(), "one cluster per text");
    let mut ids: HashMap<&str, usize> = HashMap::new();
    let mut words: Vec<&str> = Vec::new();
    let mut per_cluster: Vec<HashMap<usize, f64>> = vec![HashMap::new(); k];
    let mut sizes = vec![0usize; k];
    let mut corpus: Vec<f64> = Vec::new();
    for (text, &c) in texts.iter().zip(assignment) {
        sizes[c] += 1;
        let mut seen: Vec<usize> = text
            .split(' ')
            .filter(|w| counted(w))
            .map(|w| {
                let next = words.len();
                *ids.entry(w).or_insert_with(|| {
                    words.push(w);
                    next
                })
            })
            .collect();
        seen.sort_unstable();
        seen.dedup();
        corpus.resize(words.len(), 0.0);
        for w in seen {
            corpus[w] += 1.0;
            *per_cluster[c].entry(w).or_default() += 1.0;
        }
    }
    let total: f64 = corpus.iter().sum();
    (0..k)
        .map(|c| {
            let in_total: f64 = per_cluster[c].values().sum();
            let out_total = total - in_total;
            let mut scored: Vec<DistinctiveWord> = per_cluster[c]
                .iter()
                .map(|(&w, &y_in)| {
                    let alpha = PRIOR_STRENGTH * corpus[w] / total;
                    let y_out = corpus[w] - y_in;
                    let log_odds = |y: f64, n: f64| {
                        ((y + alpha) / (n + PRIOR_STRENGTH - y - alpha).max(f64::MIN_POSITIVE)).ln()
                    };
                    let delta = log_odds(y_in, in_total) - log_odds(y_out, out_total);
                    let variance = 1.0 / (y_in + alpha) + 1.0 / (y_out + alpha);
                    DistinctiveWord {
                        word: words[w].to_string(),
                        z: delta / variance.sqrt(),
                        share: y_in / sizes[c].max(1) as f64,
                    }
                })
                .collect();
            scored.sort_by(|a, b| b.z.total_cmp(&a.z).then_with(|| a.word.cmp(&b.word)));
            scored.truncate(top);
            scored
        })
        .collect()
}

/// A short label from a cluster's distinctive words: the first three joined.
pub fn label_of(words: &[DistinctiveWord]) -> String {
    if words.is_empty() {
        return "(no content words)".into();
    }
    words
        .iter()
        .take(3)
        .map(|w| w.word.as_str())
        .collect::<Vec<_>>()
        .join(" · ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_names_parse() {
        for m in ClusterMethod::ALL {
            assert_eq!(m.name().parse::<ClusterMethod>(), Ok(m));
        }
        assert_eq!("k-medoids".parse(), Ok(ClusterMethod::KMedoids));
        assert!("dbscan".parse::<ClusterMethod>().is_err());
    }

    #[test]
    fn medoid_from_counts_equals_brute_force() {
        let mut rng = StdRng::seed_from_u64(5);
        for bits in [7, 64, 130] {
            let codes: Vec<Vec<f32>> = (0..60)
                .map(|_| (0..bits).map(|_| rng.random_range(0..2) as f32).collect())
                .collect();
            let packed = PackedCodes::from_codes(bits, codes.iter().map(Vec::as_slice));
            let members: Vec<usize> = (0..60).step_by(2).collect();
            let brute = members
                .iter()
                .map(|&i| {
                    let s: u32 = members
                        .iter()
                        .map(|&j| crate::hamming::distance(packed.code(i), packed.code(j)))
                        .sum();
                    (s, i)
                })
                .min()
                .unwrap()
                .1;
            assert_eq!(hamming_medoid(&packed, &members), Some(brute));
        }
    }

    #[test]
    fn k_larger_than_the_points_is_an_error() {
        let packed = PackedCodes::from_codes(4, [[1f32, 0.0, 0.0, 1.0].as_slice()]);
        let opts = ClusterOptions {
            k: 2,
            ..Default::default()
        };
        assert!(kmedoids(&packed, &opts)
            .unwrap_err()
            .contains("2 clusters of 1"));
        assert!(kmeans(&[vec![1.0]], &ClusterOptions { k: 0, ..opts }).is_err());
    }
}
