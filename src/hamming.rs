//! Binary codes packed into 64-bit words, and exact Hamming-distance top-k search.
//!
//! Bit `i` of a code lives in word `i / 64` at position `i % 64`; unused high bits of the last
//! word are zero, so the distance of two codes is the popcount of their XOR, word by word.
//!
//! Search is one linear pass keeping the best `k` in a bounded max-heap. Once the heap is full
//! almost every code fails the `d < worst` test, a predictable branch, so the scan runs at the
//! speed of XOR + popcount. Results are ordered by (distance, index): ties go to the earlier
//! entry, which makes the result unique and equal to sorting everything (the brute force).
//!
//! Plain x86-64 builds lack the `popcnt` instruction and emulate it with a dozen operations, so
//! the scan is compiled a second time with `popcnt` enabled and picked at run time when the CPU
//! has it. One- and two-word (≤ 128-bit) codes have a third scan where the CPU has AVX-512
//! VPOPCNTQ: eight codes per XOR, popcount and compare against the worst kept distance, and
//! only the codes that pass reach the heap. Four-word codes have one too, and many queries at
//! once over two- to four-word codes scan a copy laid out word by word in groups of eight,
//! where a group's distances need no shuffles (the map's k-nearest-neighbour graph).

use std::collections::BinaryHeap;

use rayon::prelude::*;
use serde::Serialize;

/// 64-bit words needed for `bits` bits.
pub fn words_for(bits: usize) -> usize {
    bits.div_ceil(64)
}

/// Packs a code given as numbers (set when ≥ 0.5, as in [`crate::explore`]) into words.
pub fn pack(code: &[f32]) -> Vec<u64> {
    let mut words = vec![0u64; words_for(code.len())];
    for (i, &v) in code.iter().enumerate() {
        if v >= 0.5 {
            words[i / 64] |= 1 << (i % 64);
        }
    }
    words
}

/// The first `bits` bits of packed words as 0.0 / 1.0.
pub fn unpack(words: &[u64], bits: usize) -> Vec<f32> {
    (0..bits)
        .map(|i| ((words[i / 64] >> (i % 64)) & 1) as f32)
        .collect()
}

/// Hamming distance of two packed codes of the same width.
pub fn distance(a: &[u64], b: &[u64]) -> u32 {
    a.iter().zip(b).map(|(x, y)| (x ^ y).count_ones()).sum()
}

/// One search result: the entry's position in the index and its distance to the query.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Hit {
    pub distance: u32,
    pub index: usize,
}

/// A set of equal-width binary codes, bit-packed and contiguous.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PackedCodes {
    bits: usize,
    words: usize,
    data: Vec<u64>,
}

impl PackedCodes {
    pub fn new(bits: usize) -> Self {
        Self {
            bits,
            words: words_for(bits),
            data: Vec::new(),
        }
    }

    /// Packs `codes` (each `bits` long, values set when ≥ 0.5).
    pub fn from_codes<'a>(bits: usize, codes: impl IntoIterator<Item = &'a [f32]>) -> Self {
        let mut out = Self::new(bits);
        for c in codes {
            out.push(c);
        }
        out
    }

    /// Wraps already packed words: `data.len()` must be a multiple of the words per code and
    /// the bits above `bits` must be zero.
    pub fn from_words(bits: usize, data: Vec<u64>) -> Result<Self, String> {
        let words = words_for(bits);
        if bits == 0 {
            return Err("codes must have at least one bit".into());
        }
        if !data.len().is_multiple_of(words) {
            return Err(format!(
                "{} words do not split into {bits}-bit codes of {words} words",
                data.len()
            ));
        }
        let spare = (words * 64 - bits) as u32;
        if spare > 0 {
            let mask = !0u64 << (64 - spare);
            if data.chunks_exact(words).any(|c| c[words - 1] & mask != 0) {
                return Err(format!("a code has bits set beyond bit {bits}"));
            }
        }
        Ok(Self { bits, words, data })
    }

    /// Appends one code; panics if its length is not `bits` (a programming error).
    pub fn push(&mut self, code: &[f32]) {
        assert_eq!(code.len(), self.bits, "code width");
        self.data.extend(pack(code));
    }

    pub fn len(&self) -> usize {
        self.data.len() / self.words.max(1)
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub fn bits(&self) -> usize {
        self.bits
    }

    pub fn words_per_code(&self) -> usize {
        self.words
    }

    /// The packed words of entry `i`.
    pub fn code(&self, i: usize) -> &[u64] {
        &self.data[i * self.words..(i + 1) * self.words]
    }

    /// Every entry's words, one after another.
    pub fn as_words(&self) -> &[u64] {
        &self.data
    }

    /// The `k` entries nearest to `query` (packed, `bits` wide), ordered by (distance, index).
    pub fn top_k(&self, query: &[u64], k: usize) -> Vec<Hit> {
        assert_eq!(query.len(), self.words, "query width");
        if k == 0 || self.is_empty() {
            return Vec::new();
        }
        // More than every entry is every entry; the heap is sized by k, so bound it here.
        let k = k.min(self.len());
        #[cfg(target_arch = "x86_64")]
        {
            if matches!(self.words, 1 | 2 | 4) && has_vpopcntq() {
                // SAFETY: the CPU has AVX-512F and VPOPCNTDQ, the features the functions enable.
                return unsafe {
                    match self.words {
                        1 => top_k_one_word_avx512(&self.data, query[0], k),
                        2 => top_k_two_words_avx512(&self.data, [query[0], query[1]], k),
                        _ => top_k_four_words_avx512(
                            &self.data,
                            [query[0], query[1], query[2], query[3]],
                            k,
                        ),
                    }
                };
            }
            if std::arch::is_x86_feature_detected!("popcnt") {
                // SAFETY: the CPU supports popcnt, the only feature the function enables.
                return unsafe { top_k_popcnt(&self.data, self.words, query, k) };
            }
        }
        top_k_scan(&self.data, self.words, query, k)
    }

    /// [`PackedCodes::top_k`] for many queries at once, in parallel. Codes of two to four
    /// words are first laid out word by word in groups of eight ([`Transposed`]) where the
    /// CPU has VPOPCNTQ and the queries are many enough to pay for the copy: a group's
    /// distances are then one XOR, popcount and add per word, with no shuffles.
    pub fn top_k_many(&self, queries: &[Vec<u64>], k: usize) -> Vec<Vec<Hit>> {
        #[cfg(target_arch = "x86_64")]
        {
            if queries.len() >= TRANSPOSE_MIN_QUERIES
                && (2..=4).contains(&self.words)
                && k > 0
                && !self.is_empty()
                && has_vpopcntq()
            {
                let t = Transposed::new(self);
                let k = k.min(self.len());
                return queries
                    .par_iter()
                    .map(|q| {
                        assert_eq!(q.len(), self.words, "query width");
                        // SAFETY: has_vpopcntq checked AVX-512F and VPOPCNTDQ, the features
                        // the functions enable.
                        unsafe {
                            match self.words {
                                2 => top_k_transposed_avx512::<2>(&t, q, k),
                                3 => top_k_transposed_avx512::<3>(&t, q, k),
                                _ => top_k_transposed_avx512::<4>(&t, q, k),
                            }
                        }
                    })
                    .collect();
            }
        }
        queries.par_iter().map(|q| self.top_k(q, k)).collect()
    }

    /// The reference: every distance computed, everything sorted, the first `k` kept.
    pub fn top_k_brute_force(&self, query: &[u64], k: usize) -> Vec<Hit> {
        let mut all: Vec<Hit> = (0..self.len())
            .map(|index| Hit {
                distance: distance(self.code(index), query),
                index,
            })
            .collect();
        all.sort();
        all.truncate(k);
        all
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "popcnt")]
unsafe fn top_k_popcnt(data: &[u64], words: usize, query: &[u64], k: usize) -> Vec<Hit> {
    top_k_scan(data, words, query, k)
}

/// Whether the AVX-512 one-word scan runs: the CPU has it and the kernel level is not capped
/// below AVX-512 (so the tests can force the other scans).
#[cfg(target_arch = "x86_64")]
fn has_vpopcntq() -> bool {
    use crate::model::kernels::active_level;
    active_level().avx512()
        && std::arch::is_x86_feature_detected!("avx512vpopcntdq")
        && std::arch::is_x86_feature_detected!("popcnt")
}

/// Offers to `top`, in index order, those of the eight distances `d` (of entries `first`..)
/// that beat the worst kept one; most groups have none once the heap is full.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn offer_passing(
    top: &mut TopK,
    d: std::arch::x86_64::__m512i,
    first: usize,
    distances: &mut [u64; 8],
) {
    use std::arch::x86_64::*;
    let mut pass = _mm512_cmplt_epu64_mask(d, _mm512_set1_epi64(top.worst as i64));
    if pass != 0 {
        _mm512_storeu_si512(distances.as_mut_ptr() as *mut _, d);
        while pass != 0 {
            let j = pass.trailing_zeros() as usize;
            top.offer(distances[j] as u32, first + j);
            pass &= pass - 1;
        }
    }
}

/// [`top_k_scan`] for one-word codes, eight at a time: the same hits in the same order (codes
/// that pass the filter are offered in index order, as the scalar scan offers them).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vpopcntdq,popcnt")]
unsafe fn top_k_one_word_avx512(data: &[u64], query: u64, k: usize) -> Vec<Hit> {
    use std::arch::x86_64::*;
    let mut top = TopK::new(k);
    let q = _mm512_set1_epi64(query as i64);
    let chunks = data.chunks_exact(8);
    let rest = chunks.remainder();
    let mut distances = [0u64; 8];
    for (c, chunk) in chunks.enumerate() {
        let codes = _mm512_loadu_si512(chunk.as_ptr() as *const _);
        let d = _mm512_popcnt_epi64(_mm512_xor_si512(codes, q));
        offer_passing(&mut top, d, c * 8, &mut distances);
    }
    let base = data.len() - rest.len();
    for (i, &code) in rest.iter().enumerate() {
        top.offer((code ^ query).count_ones(), base + i);
    }
    top.into_sorted()
}

/// [`top_k_scan`] for two-word codes, eight at a time (see [`top_k_one_word_avx512`]).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vpopcntdq,popcnt")]
unsafe fn top_k_two_words_avx512(data: &[u64], query: [u64; 2], k: usize) -> Vec<Hit> {
    use std::arch::x86_64::*;
    let mut top = TopK::new(k);
    let (q0, q1) = (query[0] as i64, query[1] as i64);
    let q = _mm512_set_epi64(q1, q0, q1, q0, q1, q0, q1, q0);
    // The even elements of two vectors of per-code sums: codes 0–3 from the first, 4–7 from
    // the second.
    let evens = _mm512_set_epi64(14, 12, 10, 8, 6, 4, 2, 0);
    let chunks = data.chunks_exact(16);
    let rest = chunks.remainder();
    let mut distances = [0u64; 8];
    for (c, chunk) in chunks.enumerate() {
        let per_word = |v: __m512i| {
            let p = _mm512_popcnt_epi64(_mm512_xor_si512(v, q));
            // Each 128-bit lane holds one code's two word counts: add the swapped pair.
            _mm512_add_epi64(p, _mm512_shuffle_epi32::<0x4E>(p))
        };
        let a = per_word(_mm512_loadu_si512(chunk.as_ptr() as *const _));
        let b = per_word(_mm512_loadu_si512(chunk.as_ptr().add(8) as *const _));
        let d = _mm512_permutex2var_epi64(a, evens, b);
        offer_passing(&mut top, d, c * 8, &mut distances);
    }
    let base = (data.len() - rest.len()) / 2;
    for (i, c) in rest.chunks_exact(2).enumerate() {
        top.offer(
            (c[0] ^ query[0]).count_ones() + (c[1] ^ query[1]).count_ones(),
            base + i,
        );
    }
    top.into_sorted()
}

/// [`top_k_scan`] for four-word codes (193 to 256 bits), eight at a time (see
/// [`top_k_one_word_avx512`]): each vector holds two codes' four words.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vpopcntdq,popcnt")]
unsafe fn top_k_four_words_avx512(data: &[u64], query: [u64; 4], k: usize) -> Vec<Hit> {
    use std::arch::x86_64::*;
    let mut top = TopK::new(k);
    let [q0, q1, q2, q3] = query.map(|w| w as i64);
    let q = _mm512_set_epi64(q3, q2, q1, q0, q3, q2, q1, q0);
    // Lanes 0 and 4 of two vectors of per-code sums: codes 0–1 from the first, 2–3 from the
    // second; then the two halves of eight.
    let pairs = _mm512_set_epi64(15, 15, 15, 15, 12, 8, 4, 0);
    let halves = _mm512_set_epi64(11, 10, 9, 8, 3, 2, 1, 0);
    let chunks = data.chunks_exact(32);
    let rest = chunks.remainder();
    let mut distances = [0u64; 8];
    for (c, chunk) in chunks.enumerate() {
        let per_code = |i: usize| {
            let v = _mm512_loadu_si512(chunk.as_ptr().add(8 * i) as *const _);
            let p = _mm512_popcnt_epi64(_mm512_xor_si512(v, q));
            // Each 256-bit half holds one code's four word counts: add the swapped pairs,
            // then the swapped 128-bit blocks, so every lane of a half holds its code's sum.
            let t = _mm512_add_epi64(p, _mm512_shuffle_epi32::<0x4E>(p));
            _mm512_add_epi64(t, _mm512_shuffle_i64x2::<0b1011_0001>(t, t))
        };
        let ab = _mm512_permutex2var_epi64(per_code(0), pairs, per_code(1));
        let cd = _mm512_permutex2var_epi64(per_code(2), pairs, per_code(3));
        let d = _mm512_permutex2var_epi64(ab, halves, cd);
        offer_passing(&mut top, d, c * 8, &mut distances);
    }
    let base = (data.len() - rest.len()) / 4;
    for (i, c) in rest.chunks_exact(4).enumerate() {
        let d = c
            .iter()
            .zip(&query)
            .map(|(x, y)| (x ^ y).count_ones())
            .sum();
        top.offer(d, base + i);
    }
    top.into_sorted()
}

/// Queries from which [`PackedCodes::top_k_many`] lays the codes out word by word first (the
/// copy costs about one scan).
#[cfg(target_arch = "x86_64")]
const TRANSPOSE_MIN_QUERIES: usize = 8;

/// Codes laid out for a scan eight at a time: group g holds, for each word w, word w of codes
/// 8g..8g+8 side by side (one vector); the codes after the last full group stay as they are.
/// Only the AVX-512 scan reads it.
#[cfg(target_arch = "x86_64")]
struct Transposed<'a> {
    words: usize,
    groups: Vec<u64>,
    /// The last `len % 8` codes, packed as in [`PackedCodes`], and the index of the first.
    rest: &'a [u64],
    rest_first: usize,
}

#[cfg(target_arch = "x86_64")]
impl<'a> Transposed<'a> {
    fn new(codes: &'a PackedCodes) -> Self {
        let w = codes.words;
        let full = codes.len() / 8;
        let mut groups = vec![0u64; full * 8 * w];
        groups
            .par_chunks_mut(8 * w)
            .zip(codes.data.par_chunks_exact(8 * w))
            .for_each(|(out, src)| {
                for (c, code) in src.chunks_exact(w).enumerate() {
                    for (word, &v) in code.iter().enumerate() {
                        out[word * 8 + c] = v;
                    }
                }
            });
        Self {
            words: w,
            groups,
            rest: &codes.data[full * 8 * w..],
            rest_first: full * 8,
        }
    }
}

/// [`top_k_scan`] over [`Transposed`] codes of `W` words: the same hits in the same order
/// (codes that pass the filter are offered in index order, as the scalar scan offers them).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vpopcntdq,popcnt")]
unsafe fn top_k_transposed_avx512<const W: usize>(
    t: &Transposed<'_>,
    query: &[u64],
    k: usize,
) -> Vec<Hit> {
    use std::arch::x86_64::*;
    debug_assert_eq!(t.words, W);
    let mut top = TopK::new(k);
    let q: [__m512i; W] = std::array::from_fn(|w| _mm512_set1_epi64(query[w] as i64));
    let mut distances = [0u64; 8];
    for (g, group) in t.groups.chunks_exact(8 * W).enumerate() {
        let mut d = _mm512_setzero_si512();
        for (w, qw) in q.iter().enumerate() {
            let v = _mm512_loadu_si512(group.as_ptr().add(8 * w) as *const _);
            d = _mm512_add_epi64(d, _mm512_popcnt_epi64(_mm512_xor_si512(v, *qw)));
        }
        offer_passing(&mut top, d, g * 8, &mut distances);
    }
    for (i, c) in t.rest.chunks_exact(W).enumerate() {
        top.offer(distance(c, query), t.rest_first + i);
    }
    top.into_sorted()
}

/// The scan, specialised for one- and two-word codes where the loop body is a few instructions.
#[inline(always)]
fn top_k_scan(data: &[u64], words: usize, query: &[u64], k: usize) -> Vec<Hit> {
    let mut top = TopK::new(k);
    match words {
        1 => {
            let q = query[0];
            for (i, &c) in data.iter().enumerate() {
                top.offer((c ^ q).count_ones(), i);
            }
        }
        2 => {
            let (q0, q1) = (query[0], query[1]);
            for (i, c) in data.chunks_exact(2).enumerate() {
                top.offer((c[0] ^ q0).count_ones() + (c[1] ^ q1).count_ones(), i);
            }
        }
        _ => {
            for (i, c) in data.chunks_exact(words).enumerate() {
                let d = c.iter().zip(query).map(|(x, y)| (x ^ y).count_ones()).sum();
                top.offer(d, i);
            }
        }
    }
    top.into_sorted()
}

/// The best `k` (distance, index) pairs seen so far, in a max-heap.
struct TopK {
    k: usize,
    heap: BinaryHeap<(u32, usize)>,
    /// The distance a newcomer must beat; u32::MAX until the heap is full.
    worst: u32,
}

impl TopK {
    fn new(k: usize) -> Self {
        Self {
            k,
            heap: BinaryHeap::with_capacity(k + 1),
            worst: u32::MAX,
        }
    }

    #[inline(always)]
    fn offer(&mut self, distance: u32, index: usize) {
        // Indices arrive in increasing order, so a tie with the worst kept entry never wins.
        if distance < self.worst {
            self.heap.push((distance, index));
            if self.heap.len() > self.k {
                self.heap.pop();
            }
            if self.heap.len() == self.k {
                self.worst = self.heap.peek().map_or(u32::MAX, |&(d, _)| d);
            }
        }
    }

    fn into_sorted(self) -> Vec<Hit> {
        self.heap
            .into_sorted_vec()
            .into_iter()
            .map(|(distance, index)| Hit { distance, index })
            .collect()
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_k_beyond_the_entries_returns_them_all_without_a_huge_heap() {
        let codes =
            PackedCodes::from_codes(4, [[0f32, 1.0, 0.0, 0.0], [1.0; 4]].iter().map(|c| &c[..]));
        let hits = codes.top_k(&pack(&[0.0; 4]), 2_000_000_000);
        assert_eq!(hits.len(), 2);
        assert_eq!(hits[0].distance, 1);
    }
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    fn random_codes(n: usize, bits: usize, rng: &mut StdRng) -> Vec<Vec<f32>> {
        (0..n)
            .map(|_| (0..bits).map(|_| rng.random_range(0..2) as f32).collect())
            .collect()
    }

    #[test]
    fn pack_and_unpack_round_trip() {
        let mut rng = StdRng::seed_from_u64(1);
        for bits in [1, 8, 63, 64, 65, 128, 200] {
            let code = &random_codes(1, bits, &mut rng)[0];
            let packed = pack(code);
            assert_eq!(packed.len(), words_for(bits));
            assert_eq!(&unpack(&packed, bits), code);
            assert_eq!(
                distance(&packed, &pack(&crate::explore::flip(code, bits - 1))),
                1
            );
        }
    }

    #[test]
    fn top_k_equals_brute_force_on_random_codes() {
        let mut rng = StdRng::seed_from_u64(7);
        for bits in [8, 16, 64, 100, 128, 192, 200, 256] {
            // Few bits and many codes give many ties, which the order must settle exactly.
            let codes = random_codes(3000, bits, &mut rng);
            let index = PackedCodes::from_codes(bits, codes.iter().map(Vec::as_slice));
            assert_eq!(index.len(), 3000);
            for q in random_codes(20, bits, &mut rng) {
                let q = pack(&q);
                for k in [1, 10, 100, 2999, 3000, 5000] {
                    assert_eq!(
                        index.top_k(&q, k),
                        index.top_k_brute_force(&q, k),
                        "bits {bits}, k {k}"
                    );
                }
            }
            let queries: Vec<Vec<u64>> = (0..5).map(|i| index.code(i * 7).to_vec()).collect();
            let many = index.top_k_many(&queries, 10);
            for (q, hits) in queries.iter().zip(&many) {
                assert_eq!(hits, &index.top_k_brute_force(q, 10));
                assert_eq!(hits[0].distance, 0, "a code finds itself");
            }
        }
    }

    #[test]
    fn portable_scan_agrees_with_the_dispatched_one() {
        let mut rng = StdRng::seed_from_u64(3);
        // 503 codes: a ragged last group of eight; 12- and 70-bit codes make many ties.
        for bits in [64, 12, 128, 70, 200, 256] {
            let codes = random_codes(503, bits, &mut rng);
            let index = PackedCodes::from_codes(bits, codes.iter().map(Vec::as_slice));
            for (qi, k) in [(17, 50), (502, 1), (3, 503)] {
                let q = pack(&codes[qi]);
                let portable = top_k_scan(index.as_words(), words_for(bits), &q, k);
                for level in crate::model::kernels::available_levels() {
                    let got = crate::model::kernels::with_level(level, || index.top_k(&q, k));
                    assert_eq!(got, portable, "{bits} bits, k {k}, {}", level.name());
                }
                assert_eq!(portable, index.top_k_brute_force(&q, k));
            }
        }
    }

    #[test]
    fn many_queries_agree_with_one_at_a_time_at_every_level() {
        let mut rng = StdRng::seed_from_u64(11);
        // 1,003 codes: a ragged last group; 70-bit codes make many ties the order must settle.
        for bits in [64, 70, 128, 150, 192, 200, 256, 300] {
            let codes = random_codes(1003, bits, &mut rng);
            let index = PackedCodes::from_codes(bits, codes.iter().map(Vec::as_slice));
            let queries: Vec<Vec<u64>> = (0..40).map(|i| pack(&codes[(i * 97) % 1003])).collect();
            for k in [1, 11, 1003] {
                let want: Vec<Vec<Hit>> = queries
                    .iter()
                    .map(|q| index.top_k_brute_force(q, k))
                    .collect();
                for level in crate::model::kernels::available_levels() {
                    let got =
                        crate::model::kernels::with_level(level, || index.top_k_many(&queries, k));
                    assert_eq!(got, want, "{bits} bits, k {k}, {}", level.name());
                }
            }
        }
        // Fewer codes than one group of eight.
        let codes = random_codes(5, 256, &mut rng);
        let index = PackedCodes::from_codes(256, codes.iter().map(Vec::as_slice));
        let queries: Vec<Vec<u64>> = codes.iter().map(|c| pack(c)).collect();
        let got = index.top_k_many(&queries, 3);
        for (q, hits) in queries.iter().zip(&got) {
            assert_eq!(hits, &index.top_k_brute_force(q, 3));
        }
    }

    #[test]
    fn edge_cases() {
        let index = PackedCodes::new(16);
        assert!(index.top_k(&[0], 5).is_empty());
        let index = PackedCodes::from_codes(4, [[1f32, 0.0, 0.0, 0.0].as_slice()]);
        assert!(index.top_k(&[0], 0).is_empty());
        assert_eq!(
            index.top_k(&[0], 3),
            vec![Hit {
                distance: 1,
                index: 0
            }]
        );
        assert!(PackedCodes::from_words(4, vec![0b1_0000]).is_err());
        assert!(PackedCodes::from_words(128, vec![0; 3]).is_err());
        assert_eq!(PackedCodes::from_words(4, vec![0b1010]).unwrap().len(), 1);
    }
}
