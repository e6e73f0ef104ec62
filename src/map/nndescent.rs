//! An approximate k-nearest-neighbour graph of unit vectors by cosine distance: a forest of
//! random-projection trees gives every entry its first neighbours, then nearest-neighbour
//! descent (Dong, Moses and Li, 2011, as PyNNDescent does it) refines them: a neighbour of a
//! neighbour is likely a neighbour, so each round compares the entries that share a neighbour
//! and keeps whatever comes closer.
//!
//! The result depends on the seed only, never on the thread count: every random choice comes
//! from a stream keyed by (seed, what it is for), a heap keeps the best `k` of everything
//! offered to it by the total order (distance, entry) so the order of the offers does not
//! matter, and the offers of each round are applied in a fixed order between rounds.
//!
//! Its recall against the exact graph is measured by `MAP_RECALL=1 cargo run --release
//! --example map_layout -- CKPT` and tested on seeded clustered sets (`tests/map.rs`).

use rayon::prelude::*;

/// Settings of [`nn_descent`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DescentOptions {
    /// Random-projection trees whose leaves seed the graph.
    pub trees: usize,
    /// Most entries in a tree's leaf.
    pub leaf_size: usize,
    /// Most refinement passes.
    pub max_iterations: usize,
    /// Stop once a pass changes fewer than `delta · n · k` edges.
    pub delta: f64,
    /// Candidates sampled per entry per pass, new and old each (PyNNDescent's
    /// `max_candidates`); None: `k`.
    pub candidates: Option<usize>,
}

impl Default for DescentOptions {
    fn default() -> Self {
        Self {
            trees: 8,
            leaf_size: 32,
            max_iterations: 12,
            delta: 0.001,
            candidates: None,
        }
    }
}

/// Entries whose offers are computed between two updates of the heaps (bounds the memory the
/// pending offers take, and lets later entries use the thresholds the earlier ones lowered).
const ROUND: usize = 4096;

/// Entries per parallel task.
const TASK: usize = 256;

/// Each entry's `k` nearest other entries among the `n` unit rows of `dim` values in `rows`
/// (row-major), by cosine distance 1 − cos: (neighbours, distances), `k` per entry, nearest
/// first, ties by entry. Needs `k < n`. Approximate: see the module's doc.
pub fn nn_descent(
    rows: &[f32],
    dim: usize,
    k: usize,
    seed: u64,
    opts: &DescentOptions,
    progress: &mut dyn FnMut(f64),
) -> (Vec<u32>, Vec<f32>) {
    let n = rows.len() / dim.max(1);
    assert!(dim > 0 && k > 0 && k < n, "nn_descent needs 0 < k < n");
    let data = Data { rows, dim };
    let mut heaps = Heaps::new(n, k);

    // Leaves of random-projection trees: entries in one leaf are offered to each other.
    let trees: Vec<Vec<Vec<u32>>> = (0..opts.trees)
        .into_par_iter()
        .map(|t| rp_tree(&data, opts.leaf_size.max(2), mix(seed ^ TREE_KEY, t as u64)))
        .collect();
    for leaves in &trees {
        let offers: Vec<Vec<Offer>> = leaves
            .par_chunks(TASK / 8)
            .map(|chunk| {
                let mut out = Vec::new();
                for leaf in chunk {
                    for (a, &p) in leaf.iter().enumerate() {
                        for &q in &leaf[a + 1..] {
                            let d = data.distance(p, q);
                            heaps.offer_both(&mut out, p, q, d);
                        }
                    }
                }
                out
            })
            .collect();
        heaps.apply(&offers);
    }
    drop(trees);
    // Entries the leaves left short of k neighbours (tiny leaves) get random ones.
    heaps.fill_random(&data, seed);
    progress(0.2);

    let m = opts.candidates.unwrap_or(k).max(1);
    let mut cands = Candidates::new(n, m);
    for iteration in 0..opts.max_iterations {
        cands.sample(&mut heaps, mix(seed ^ SAMPLE_KEY, iteration as u64));
        let mut changed = 0usize;
        for start in (0..n).step_by(ROUND) {
            let end = (start + ROUND).min(n);
            let offers: Vec<Vec<Offer>> = (0..(end - start).div_ceil(TASK))
                .into_par_iter()
                .map(|t| {
                    let from = start + t * TASK;
                    let mut out = Vec::new();
                    for p in from..(from + TASK).min(end) {
                        let new = cands.new_of(p);
                        let old = cands.old_of(p);
                        for (i, &a) in new.iter().enumerate() {
                            for &b in &new[i + 1..] {
                                heaps.offer_both(&mut out, a, b, data.distance(a, b));
                            }
                            for &b in old {
                                if a != b {
                                    heaps.offer_both(&mut out, a, b, data.distance(a, b));
                                }
                            }
                        }
                    }
                    out
                })
                .collect();
            changed += heaps.apply(&offers);
        }
        progress(0.2 + 0.8 * (iteration + 1) as f64 / opts.max_iterations as f64);
        if (changed as f64) < opts.delta * (n * k) as f64 {
            break;
        }
    }
    progress(1.0);
    (heaps.idx, heaps.dist)
}

const TREE_KEY: u64 = 0x243f_6a88_85a3_08d3;
const SAMPLE_KEY: u64 = 0x1319_8a2e_0370_7344;
const FILL_KEY: u64 = 0xa409_3822_299f_31d0;

/// SplitMix64's finaliser of `a` and `b`: a well-mixed key for a random stream or a priority.
fn mix(a: u64, b: u64) -> u64 {
    let mut z = a ^ b.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A SplitMix64 stream.
struct Stream(u64);

impl Stream {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix(self.0, 0)
    }

    fn below(&mut self, n: usize) -> usize {
        (((self.next() >> 32) * n as u64) >> 32) as usize
    }
}

struct Data<'a> {
    rows: &'a [f32],
    dim: usize,
}

impl Data<'_> {
    fn row(&self, i: u32) -> &[f32] {
        let i = i as usize;
        &self.rows[i * self.dim..(i + 1) * self.dim]
    }

    /// 1 − cos of two unit rows; the same bits whichever comes first (products commute and
    /// the sum runs in a fixed order).
    #[inline]
    fn distance(&self, a: u32, b: u32) -> f32 {
        1.0 - dot(self.row(a), self.row(b)).clamp(-1.0, 1.0)
    }
}

/// Dot product with eight independent accumulators (vectorised, summed in a fixed order).
#[inline]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    let mut tail = 0f32;
    for (x, y) in ra.iter().zip(rb) {
        tail += x * y;
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail
}

/// The leaves of one random-projection tree: each node splits its entries by the hyperplane
/// halfway (in angle) between two of them, chosen by the tree's stream, until a node has at
/// most `leaf` entries. The tree is built sequentially, so its stream fixes it.
fn rp_tree(data: &Data, leaf: usize, key: u64) -> Vec<Vec<u32>> {
    let n = data.rows.len() / data.dim;
    let mut rng = Stream(key);
    let mut leaves = Vec::new();
    let mut stack: Vec<Vec<u32>> = vec![(0..n as u32).collect()];
    let mut normal = vec![0f32; data.dim];
    while let Some(node) = stack.pop() {
        if node.len() <= leaf {
            leaves.push(node);
            continue;
        }
        let a = node[rng.below(node.len())];
        let mut b = node[rng.below(node.len() - 1)];
        if b == a {
            b = node[node.len() - 1];
        }
        for ((v, x), y) in normal.iter_mut().zip(data.row(a)).zip(data.row(b)) {
            *v = x - y;
        }
        let (mut left, mut right) = (Vec::new(), Vec::new());
        for &p in &node {
            let side = dot(data.row(p), &normal);
            let go_left = if side == 0.0 {
                rng.next() & 1 == 0
            } else {
                side < 0.0
            };
            if go_left {
                left.push(p);
            } else {
                right.push(p);
            }
        }
        if left.is_empty() || right.is_empty() {
            // Equal codes (or a degenerate plane): split the node at random instead.
            let mut all = node;
            for i in (1..all.len()).rev() {
                all.swap(i, rng.below(i + 1));
            }
            right = all.split_off(all.len() / 2);
            left = all;
        }
        stack.push(right);
        stack.push(left);
    }
    leaves
}

/// An offer of `cand` at distance `d` to `target`'s heap.
#[derive(Clone, Copy, Debug)]
struct Offer {
    target: u32,
    cand: u32,
    d: f32,
}

/// Per entry, its best `k` neighbours so far sorted by (distance, entry), with a flag for
/// those not yet used as candidates ("new"); `worst` is each full heap's k-th distance
/// (infinite until it is full), read while offers are computed and updated between rounds.
struct Heaps {
    k: usize,
    idx: Vec<u32>,
    dist: Vec<f32>,
    new: Vec<bool>,
    len: Vec<u32>,
    worst: Vec<f32>,
}

/// One entry's heap, borrowed from [`Heaps`]' arrays.
struct HeapRow<'a> {
    idx: &'a mut [u32],
    dist: &'a mut [f32],
    new: &'a mut [bool],
    len: &'a mut u32,
    worst: &'a mut f32,
}

impl Heaps {
    /// Every entry's heap with its number, in parallel.
    fn par_rows(&mut self) -> impl IndexedParallelIterator<Item = (usize, HeapRow<'_>)> {
        let k = self.k;
        self.idx
            .par_chunks_mut(k)
            .zip(self.dist.par_chunks_mut(k))
            .zip(self.new.par_chunks_mut(k))
            .zip(self.len.par_iter_mut())
            .zip(self.worst.par_iter_mut())
            .map(|((((idx, dist), new), len), worst)| HeapRow {
                idx,
                dist,
                new,
                len,
                worst,
            })
            .enumerate()
    }

    fn new(n: usize, k: usize) -> Self {
        Self {
            k,
            idx: vec![u32::MAX; n * k],
            dist: vec![f32::INFINITY; n * k],
            new: vec![false; n * k],
            len: vec![0; n],
            worst: vec![f32::INFINITY; n],
        }
    }

    /// Queues `q` for `p` and `p` for `q` where it may enter (not farther than the k-th).
    #[inline]
    fn offer_both(&self, out: &mut Vec<Offer>, p: u32, q: u32, d: f32) {
        if d <= self.worst[p as usize] {
            out.push(Offer {
                target: p,
                cand: q,
                d,
            });
        }
        if d <= self.worst[q as usize] {
            out.push(Offer {
                target: q,
                cand: p,
                d,
            });
        }
    }

    /// Applies the offers (grouped by target in the order given, then in parallel by target);
    /// returns how many entered a heap.
    fn apply(&mut self, offers: &[Vec<Offer>]) -> usize {
        let n = self.len.len();
        let total: usize = offers.iter().map(Vec::len).sum();
        if total == 0 {
            return 0;
        }
        let mut start = vec![0usize; n + 1];
        for o in offers.iter().flatten() {
            start[o.target as usize + 1] += 1;
        }
        for i in 0..n {
            start[i + 1] += start[i];
        }
        let mut fill = start.clone();
        let mut sorted = vec![(0u32, 0f32); total];
        for o in offers.iter().flatten() {
            let at = &mut fill[o.target as usize];
            sorted[*at] = (o.cand, o.d);
            *at += 1;
        }
        let k = self.k;
        self.par_rows()
            .map(
                |(
                    t,
                    HeapRow {
                        idx,
                        dist,
                        new,
                        len,
                        worst,
                    },
                )| {
                    let mut entered = 0;
                    for &(cand, d) in &sorted[start[t]..start[t + 1]] {
                        entered += insert(idx, dist, new, len, cand, d) as usize;
                    }
                    if *len as usize == k {
                        *worst = dist[k - 1];
                    }
                    entered
                },
            )
            .sum()
    }

    /// Tops up every heap short of `k` with random entries.
    fn fill_random(&mut self, data: &Data, seed: u64) {
        let k = self.k;
        let n = self.len.len();
        self.par_rows().for_each(
            |(
                p,
                HeapRow {
                    idx,
                    dist,
                    new,
                    len,
                    worst,
                },
            )| {
                let mut rng = Stream(mix(seed ^ FILL_KEY, p as u64));
                while (*len as usize) < k {
                    let q = rng.below(n) as u32;
                    if q as usize != p {
                        insert(idx, dist, new, len, q, data.distance(p as u32, q));
                    }
                }
                *worst = dist[k - 1];
            },
        );
    }
}

/// Puts `cand` at distance `d` into a sorted heap of at most `idx.len()` entries unless it is
/// there already or not better than the last one of a full heap; true if it went in (flagged
/// new).
#[inline]
fn insert(
    idx: &mut [u32],
    dist: &mut [f32],
    new: &mut [bool],
    len: &mut u32,
    cand: u32,
    d: f32,
) -> bool {
    let k = idx.len();
    let l = *len as usize;
    let before = |i: usize| (d, cand) < (dist[i], idx[i]);
    if l == k && !before(k - 1) {
        return false;
    }
    if idx[..l].contains(&cand) {
        return false;
    }
    let mut at = l.min(k - 1);
    while at > 0 && before(at - 1) {
        at -= 1;
    }
    let last = l.min(k - 1);
    idx.copy_within(at..last, at + 1);
    dist.copy_within(at..last, at + 1);
    new.copy_within(at..last, at + 1);
    idx[at] = cand;
    dist[at] = d;
    new[at] = true;
    if l < k {
        *len += 1;
    }
    true
}

/// Per entry, up to `m` new and `m` old candidates: its neighbours and the entries that have it
/// as a neighbour, sampled by a seeded priority per (entry, neighbour) pair.
struct Candidates {
    m: usize,
    new: Vec<u32>,
    new_len: Vec<u8>,
    new_pri: Vec<u64>,
    old: Vec<u32>,
    old_len: Vec<u8>,
    old_pri: Vec<u64>,
}

impl Candidates {
    fn new(n: usize, m: usize) -> Self {
        let m = m.min(255);
        Self {
            m,
            new: vec![0; n * m],
            new_len: vec![0; n],
            new_pri: vec![0; n * m],
            old: vec![0; n * m],
            old_len: vec![0; n],
            old_pri: vec![0; n * m],
        }
    }

    fn new_of(&self, p: usize) -> &[u32] {
        &self.new[p * self.m..p * self.m + self.new_len[p] as usize]
    }

    fn old_of(&self, p: usize) -> &[u32] {
        &self.old[p * self.m..p * self.m + self.old_len[p] as usize]
    }

    /// Samples this pass's candidates from the heaps, then marks the new neighbours sampled
    /// as old (they will have been compared once this pass is over).
    fn sample(&mut self, heaps: &mut Heaps, key: u64) {
        let (m, k) = (self.m, heaps.k);
        let n = heaps.len.len();
        self.new_len.iter_mut().for_each(|l| *l = 0);
        self.old_len.iter_mut().for_each(|l| *l = 0);
        for p in 0..n {
            for s in 0..heaps.len[p] as usize {
                let q = heaps.idx[p * k + s] as usize;
                let pri = mix(key, ((p.min(q) as u64) << 32) | p.max(q) as u64);
                let (list, len, pris) = if heaps.new[p * k + s] {
                    (&mut self.new, &mut self.new_len, &mut self.new_pri)
                } else {
                    (&mut self.old, &mut self.old_len, &mut self.old_pri)
                };
                for (a, b) in [(p, q), (q, p)] {
                    keep_lowest(
                        &mut list[a * m..(a + 1) * m],
                        &mut pris[a * m..(a + 1) * m],
                        &mut len[a],
                        b as u32,
                        pri,
                    );
                }
            }
        }
        let (new, new_len) = (&self.new, &self.new_len);
        heaps
            .idx
            .par_chunks(k)
            .zip(heaps.new.par_chunks_mut(k))
            .enumerate()
            .for_each(|(p, (idx, flags))| {
                let sampled = &new[p * m..p * m + new_len[p] as usize];
                for (q, f) in idx.iter().zip(flags) {
                    if *f && sampled.contains(q) {
                        *f = false;
                    }
                }
            });
    }
}

/// Keeps the `list.len()` members with the lowest priority (ties by member): the kept set
/// depends on what was offered, not on the order.
#[inline]
fn keep_lowest(list: &mut [u32], pris: &mut [u64], len: &mut u8, member: u32, pri: u64) {
    let l = *len as usize;
    if list[..l].contains(&member) {
        return;
    }
    if l < list.len() {
        list[l] = member;
        pris[l] = pri;
        *len += 1;
        return;
    }
    // Replace the worst kept one if this is better.
    let (w, _) = (0..l)
        .map(|i| (i, (pris[i], list[i])))
        .max_by_key(|&(_, key)| key)
        .expect("a full list is not empty");
    if (pri, member) < (pris[w], list[w]) {
        list[w] = member;
        pris[w] = pri;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_keeps_the_best_k_whatever_the_order() {
        let offers = [
            (5u32, 0.5f32),
            (2, 0.1),
            (9, 0.5),
            (4, 0.3),
            (2, 0.1),
            (7, 0.05),
        ];
        let mut results = Vec::new();
        for rot in 0..offers.len() {
            let (mut idx, mut dist, mut new, mut len) = ([0u32; 3], [0f32; 3], [false; 3], 0);
            for i in 0..offers.len() {
                let (c, d) = offers[(i + rot) % offers.len()];
                insert(&mut idx, &mut dist, &mut new, &mut len, c, d);
            }
            results.push((idx, dist, len));
        }
        assert!(results.iter().all(|r| *r == results[0]), "{results:?}");
        assert_eq!(results[0].0, [7, 2, 4]);
    }

    #[test]
    fn keep_lowest_keeps_the_same_set_whatever_the_order() {
        let offers = [(1u32, 9u64), (2, 3), (3, 7), (2, 3), (4, 1), (5, 7)];
        let mut sets = Vec::new();
        for rot in 0..offers.len() {
            let (mut list, mut pris, mut len) = ([0u32; 3], [0u64; 3], 0u8);
            for i in 0..offers.len() {
                let (m, p) = offers[(i + rot) % offers.len()];
                keep_lowest(&mut list, &mut pris, &mut len, m, p);
            }
            let mut s = list.to_vec();
            s.sort();
            sets.push(s);
        }
        assert!(sets.iter().all(|s| *s == sets[0]));
        assert_eq!(sets[0], vec![2, 3, 4]);
    }
}
