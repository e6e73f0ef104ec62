//! Packed copies of the output layer for scoring many hidden states: every teacher-forced
//! NLL (`eval`, `score`, the per-bit bars, the flip analysis) is mostly a (rows × 256) ·
//! (256 × 8000) product followed by a log-sum-exp per row.
//!
//! **fp32, exact.** The weights are packed once (per set of weights) into panels of 16
//! vocabulary rows that an 8 × 48 AVX-512 micro-tile streams, so scoring never repacks 8 MB of
//! weights per block of rows the way a general matrix product does. Below AVX-512 the general
//! product ([`super::ops::linear_nll_inference`]) runs instead.
//!
//! **8-bit, approximate, for the bars and the flip analysis.** The normaliser
//! log Σ_v exp(w_v·h + b_v) is computed from integer dot products: each vocabulary row w_v is
//! stored as int8 with its own scale, each hidden state is quantised to uint8 around 128 with
//! its own scale, and AVX-512 VNNI (`vpdpbusd`) multiplies 64 byte pairs per instruction, four
//! times fp32's 16. The target word's logit and those of the words that carry most of the
//! probability (within [`LEADER_GAP`] nats of the normaliser) are then recomputed exactly in
//! fp32: one state's quantisation error shifts its logits coherently, and only the many small
//! terms of the tail, whose errors cancel, keep it. A sentence's NLL stays within ~1e-3 of the
//! exact figure (relative; the tests and `bench --interactive` measure it).
//!
//! **AMX-INT8.** Where the kernel level is AMX (Sapphire Rapids and later, the tiles granted by
//! the OS), [`PackedOutput::nll`] takes its integer products from the tiles instead (`tdpbusd`:
//! a 16 × 16 block of sums over 64 byte pairs per instruction, 16 times `vpdpbusd`'s work):
//! the int8 panels are already B tiles, blocks of 32 quantised rows are A tiles, and the
//! dequantisation, the maxima and the online normaliser are those of the VNNI path, in the
//! same order, so the NLLs are the same bits (see `nll_chunk_amx`). Greedy decoding (one row
//! at a time) keeps the VNNI tile.
//!
//! **8-bit, exact answer, for greedy decoding.** [`PackedOutput::greedy`] bounds each word's
//! 8-bit error from the scales and L1 norms of its row and of the state, and rescores in fp32
//! every word whose widened logit could still be the largest: the fp32 argmax, after reading a
//! quarter of the bytes per decoded word.
//!
//! Integer dot products are exact, so every kernel level (AMX, VNNI, the portable loops the
//! compiler vectorises for AVX2 or plain x86-64) gives the same logits; the tests check that.

use rayon::prelude::*;

use super::kernels::{self, Level};
use super::packed::{float_tile, PANEL, TILE_COLS, TILE_PANELS, TILE_ROWS};

/// How far (relative to the base state's length) a state may be from the base state of an
/// [`OutputHead`] and still be scored by it ([`PackedOutput::head_nll`]).
const HEAD_FAR: f32 = 0.2;

/// By how many nats the head's share of the normaliser may move from the base state's and the
/// state still be scored by the head: within it, the words left out stay a sliver.
const HEAD_SHIFT: f32 = 2.0;

/// [`LEADER_GAP`] for a head's words ([`PackedOutput::head_nll`]): their 8-bit logits are
/// the products of the (small) change from the base state, whose error scales with it, so
/// fewer of them need an exact logit (~4 per state instead of ~15 on the shipped models).
const HEAD_LEADER_GAP: f32 = 4.0;

/// Words whose approximate logit is within this many nats of the log-normaliser (probability
/// above e^-6 ≈ 0.25%, so at most ~400 of them) get their logit recomputed exactly.
const LEADER_GAP: f32 = 6.0;

/// Tiles (of [`TILE_COLS`] words) per stretch of the vocabulary in [`PackedOutput::nll`]: 384
/// words, 24 KB of int8 panels at hidden 256, reused by every tile of rows.
const STRETCH_GROUPS: usize = 8;
const STRETCH_COLS: usize = STRETCH_GROUPS * TILE_COLS;

/// Quads (of four bytes) in one row of an AMX A tile and in one AMX B tile's quad-rows: the
/// 64 bytes of a tile row.
const AMX_QUADS: usize = 16;

/// Length of a row's list of possible leaders at which the words that fell below the running
/// threshold are dropped from it.
const NEAR_PRUNE: usize = 512;

/// Most rows one thread scores per pass over the weights in [`PackedOutput::nll`] (their
/// quantised copies, 64 KB at hidden 256, stay in the core's caches).
const NLL_CHUNK_ROWS: usize = 256;

/// Rows per parallel chunk: as many as one pass over the weights can serve, split so that
/// every thread gets work; whole tiles.
fn chunk_rows(rows: usize, threads: usize) -> usize {
    let per_thread = rows.div_ceil(threads.max(1));
    per_thread.clamp(1, NLL_CHUNK_ROWS).div_ceil(TILE_ROWS) * TILE_ROWS
}

/// One row's online log-sum-exp over stretches of approximate logits: `max` so far, `sum` of
/// exp(l − max) so far, and the words that were within [`LEADER_GAP`] of the running
/// log-sum-exp when read (or since). The final log-sum-exp is at least every running one, so
/// each word within [`LEADER_GAP`] of it is in `near`.
#[derive(Clone, Debug)]
struct RowFold {
    max: f32,
    sum: f32,
    near: Vec<(u32, f32)>,
}

impl Default for RowFold {
    fn default() -> Self {
        Self {
            max: f32::NEG_INFINITY,
            sum: 0.0,
            near: Vec::new(),
        }
    }
}

impl RowFold {
    /// Folds in the logits of words `v0..v0 + logits.len()`, whose largest is `stretch_max`
    /// (found while the tile wrote them).
    fn add(&mut self, logits: &[f32], stretch_max: f32, v0: u32) {
        if stretch_max > self.max {
            // The first stretch rescales a zero sum (exp_coarse(−∞) is a tiny positive number).
            self.sum *= kernels::exp_coarse(self.max - stretch_max);
            self.max = stretch_max;
        }
        // The log-sum-exp so far only grows, so words below it − LEADER_GAP are never leaders
        // (a bound above the running maximum by ln Σ: on flat rows, far fewer words). Its
        // value before this stretch, with the running maximum's own term (1) as a floor, is a
        // lower bound of it after: one pass then reads the stretch for both the sum and the
        // possible leaders, keeping a few more of them than the bound after would (the
        // leaders themselves are chosen against the final log-sum-exp).
        let threshold = self.max + self.sum.max(1.0).ln() - LEADER_GAP;
        if self.near.len() >= NEAR_PRUNE {
            self.near.retain(|&(_, l)| l > threshold);
        }
        self.sum += kernels::exp_sum_pairs_above(logits, self.max, threshold, v0, &mut self.near);
    }
}

/// The output layer `logits = W h + b` (W: vocab × hidden) in the packed 8-bit form the
/// kernels read, plus the exact weights for target logits.
pub struct PackedOutput {
    vocab: usize,
    hidden: usize,
    /// ⌈hidden / 4⌉: `vpdpbusd` sums groups of four byte products.
    quads: usize,
    /// Panels, padded to a multiple of [`TILE_PANELS`].
    panels: usize,
    /// Panel p, quad q, vocabulary row j of the panel, byte i: w_q[16p + j][4q + i], so that
    /// one quad of one panel is one 64-byte vector.
    /// 64-byte aligned, as the AMX tiles read it ([`Aligned`]).
    packed: Aligned<i8>,
    /// Per vocabulary row (padded): the dequantisation scale, and 128 · Σ_k w_q[v][k], which
    /// removes the uint8 zero point from the integer dot product.
    scale: Vec<f32>,
    zero_point_sum: Vec<i32>,
    bias: Vec<f32>,
    /// The bias padded to the packed vocabulary.
    bias_padded: Vec<f32>,
    weight: Vec<f32>,
    /// Σ_k |w[v][k]| per vocabulary row: bounds the 8-bit logits' error for greedy decoding.
    weight_l1: Vec<f32>,
    /// fp32 panels: panel p, hidden unit k, vocabulary row j of the panel: w[16p + j][k].
    packed_f32: Vec<f32>,
    /// The int8 panels with quads padded with zeros to a multiple of [`AMX_QUADS`] (one AMX B
    /// tile's quad-rows), where the CPU has AMX and `quads` is not already one: `packed`
    /// itself serves otherwise.
    packed_amx: Option<Aligned<i8>>,
}

impl std::fmt::Debug for PackedOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "PackedOutput {{ vocab: {}, hidden: {} }}",
            self.vocab, self.hidden
        )
    }
}

/// A cache line: the unit of [`Aligned`]'s storage.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct CacheLine([u8; 64]);

/// Types for which every bit pattern, all zeros included, is a value.
///
/// # Safety
/// Implement only for such types (no padding, no invalid values).
unsafe trait Plain: Copy {}
// SAFETY: integers and floats of every bit pattern are values.
unsafe impl Plain for u8 {}
// SAFETY: as above.
unsafe impl Plain for i8 {}
// SAFETY: as above.
unsafe impl Plain for i32 {}
// SAFETY: as above.
unsafe impl Plain for f32 {}

/// A fixed-length buffer whose first element is 64-byte aligned. The AMX tiles read and write
/// whole rows of 64 bytes: on a Sapphire Rapids core a `tileloadd` whose rows straddle cache
/// lines took ~45 cycles instead of ~7 (and `tilestored` likewise), which made the int8 tiles
/// slower than the VNNI loop they replace. Every tile row of the output layer starts at a
/// multiple of 64 bytes from such a buffer's start.
struct Aligned<T: Plain> {
    lines: Vec<CacheLine>,
    len: usize,
    _t: std::marker::PhantomData<T>,
}

impl<T: Plain> Aligned<T> {
    fn new(len: usize, value: T) -> Self {
        let bytes = len * std::mem::size_of::<T>();
        let mut buf = Self {
            lines: vec![CacheLine([0; 64]); bytes.div_ceil(64)],
            len,
            _t: std::marker::PhantomData,
        };
        buf.fill(value);
        buf
    }
}

impl<T: Plain> std::ops::Deref for Aligned<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        // SAFETY: the lines hold at least len · size_of::<T>() initialised bytes, aligned to
        // 64 ≥ align_of::<T>() for the `Plain` types (at most 4), every one of whose bit
        // patterns is a value; the borrow of `self` bounds the slice's life.
        unsafe { std::slice::from_raw_parts(self.lines.as_ptr() as *const T, self.len) }
    }
}

impl<T: Plain> std::ops::DerefMut for Aligned<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as in `deref`, with the unique borrow of `self`.
        unsafe { std::slice::from_raw_parts_mut(self.lines.as_mut_ptr() as *mut T, self.len) }
    }
}

/// Symmetric quantisation of a row to integers in −127..=127, each stored by `store`: returns
/// the scale (0 for an all-zero or non-finite row, whose entries are all stored as 0).
#[inline(always)]
fn quantize<T>(row: &[f32], out: &mut [T], store: impl Fn(i32) -> T) -> f32 {
    let max = row.iter().fold(0f32, |m, x| m.max(x.abs()));
    if max == 0.0 || !max.is_finite() {
        out.iter_mut().for_each(|q| *q = store(0));
        return 0.0;
    }
    let inv = 127.0 / max;
    for (q, &x) in out.iter_mut().zip(row) {
        *q = store((x * inv).round().clamp(-127.0, 127.0) as i32);
    }
    max / 127.0
}

/// Symmetric int8 quantisation of a weight row: returns the scale.
fn quantize_signed(row: &[f32], out: &mut [i8]) -> f32 {
    quantize(row, out, |q| q as i8)
}

impl PackedOutput {
    /// Packs `weight` (vocab × hidden, row-major) and `bias` (vocab).
    pub fn new(weight: &[f32], bias: &[f32], vocab: usize, hidden: usize) -> Self {
        assert_eq!(weight.len(), vocab * hidden, "output weight size");
        assert_eq!(bias.len(), vocab, "output bias size");
        let quads = hidden.div_ceil(4);
        let panels = vocab.div_ceil(PANEL).div_ceil(TILE_PANELS) * TILE_PANELS;
        let padded_vocab = panels * PANEL;
        let mut packed = Aligned::new(panels * quads * 64, 0i8);
        let mut scale = vec![0f32; padded_vocab];
        let mut zero_point_sum = vec![0i32; padded_vocab];
        let mut packed_f32 = vec![0f32; panels * hidden * PANEL];
        for v in 0..vocab {
            let (p, j) = (v / PANEL, v % PANEL);
            for k in 0..hidden {
                packed_f32[(p * hidden + k) * PANEL + j] = weight[v * hidden + k];
            }
        }
        let mut row_q = vec![0i8; quads * 4];
        for v in 0..vocab {
            let s = quantize_signed(&weight[v * hidden..(v + 1) * hidden], &mut row_q[..hidden]);
            scale[v] = s;
            zero_point_sum[v] = 128 * row_q.iter().map(|&q| q as i32).sum::<i32>();
            let (p, j) = (v / PANEL, v % PANEL);
            for (k, &q) in row_q.iter().enumerate() {
                packed[(p * quads + k / 4) * 64 + j * 4 + k % 4] = q;
            }
        }
        let packed_amx = (kernels::detected_level().amx() && !quads.is_multiple_of(AMX_QUADS))
            .then(|| {
                let kq = quads.next_multiple_of(AMX_QUADS);
                let mut padded = Aligned::new(panels * kq * 64, 0i8);
                for (src, dst) in packed
                    .chunks_exact(quads * 64)
                    .zip(padded.chunks_exact_mut(kq * 64))
                {
                    dst[..quads * 64].copy_from_slice(src);
                }
                padded
            });
        Self {
            vocab,
            hidden,
            quads,
            panels,
            packed,
            packed_amx,
            scale,
            zero_point_sum,
            bias: bias.to_vec(),
            bias_padded: bias
                .iter()
                .copied()
                .chain(std::iter::repeat(0.0))
                .take(padded_vocab)
                .collect(),
            weight: weight.to_vec(),
            weight_l1: weight
                .chunks_exact(hidden)
                .map(|row| row.iter().map(|x| x.abs()).sum())
                .collect(),
            packed_f32,
        }
    }

    /// The int8 panels in AMX B-tile form and their quads per panel (a multiple of
    /// [`AMX_QUADS`]), or `None` where they were not made (no AMX on this CPU).
    fn amx_panels(&self) -> Option<(&[i8], usize)> {
        if self.quads.is_multiple_of(AMX_QUADS) {
            Some((&self.packed[..], self.quads))
        } else {
            let kq = self.quads.next_multiple_of(AMX_QUADS);
            self.packed_amx.as_ref().map(|p| (&p[..], kq))
        }
    }

    /// The int8 panels and their quads per panel where [`Self::nll`] runs on AMX tiles at
    /// `level`: the level is AMX (so the CPU has AMX-INT8 and AVX-512 VNNI, and the OS granted
    /// the tiles) and the tile form of the panels exists.
    fn amx_path(&self, level: Level) -> Option<(&[i8], usize)> {
        if level.amx() && has_vnni(level) {
            self.amx_panels()
        } else {
            None
        }
    }

    /// The integer kernel [`Self::nll`] runs at the active level: `amx-int8` (`tdpbusd`),
    /// `avx512-vnni` (`vpdpbusd`) or `portable`.
    pub fn nll_kernel(&self) -> &'static str {
        let level = kernels::active_level();
        if self.amx_path(level).is_some() {
            "amx-int8"
        } else if has_vnni(level) {
            "avx512-vnni"
        } else {
            "portable"
        }
    }

    pub fn vocab(&self) -> usize {
        self.vocab
    }

    /// NLL of `targets[i]` under row i of `hidden` (rows × hidden, row-major), one value per
    /// row. Rows are split across rayon's threads in chunks of up to [`NLL_CHUNK_ROWS`].
    ///
    /// Within a chunk the vocabulary is the outer loop: each stretch of [`STRETCH_COLS`] words
    /// (its int8 panels stay in the core's caches) is multiplied by every 8-row tile of the
    /// chunk, and each row's log-sum-exp is folded in online (a running maximum and a sum
    /// rescaled when the maximum grows), keeping only the words that may end up within
    /// [`LEADER_GAP`] of it. The weights are read once per chunk instead of once per 8 rows,
    /// and no row of logits over the whole vocabulary is written and read back.
    pub fn nll(&self, hidden: &[f32], targets: &[u32]) -> Vec<f32> {
        let h = self.hidden;
        assert_eq!(hidden.len(), targets.len() * h, "hidden states and targets");
        assert!(
            targets.iter().all(|&t| (t as usize) < self.vocab),
            "target outside the vocabulary"
        );
        let level = kernels::active_level();
        let vnni = has_vnni(level);
        let amx = self.amx_path(level);
        let mut out = vec![0f32; targets.len()];
        let chunk = chunk_rows(targets.len(), rayon::current_num_threads());
        out.par_chunks_mut(chunk)
            .zip(hidden.par_chunks(chunk * h))
            .zip(targets.par_chunks(chunk))
            .for_each(|((out, rows), tgt)| {
                let folds = self.panels().folds(rows, vnni, amx);
                self.finish_rows(&folds, rows, tgt, out)
            });
        out
    }

    /// The int8 side of the whole vocabulary, as [`Panels::folds`] reads it.
    fn panels(&self) -> Panels<'_> {
        Panels {
            hidden: self.hidden,
            quads: self.quads,
            packed: &self.packed,
            panels: self.panels,
            words: self.vocab,
            scale: &self.scale,
            zero_point_sum: &self.zero_point_sum,
            bias: &self.bias_padded,
        }
    }

    /// The words that carry all but `tail` of the probability after a base state whose exact
    /// logits are `logits` (one per word), and at least every word within `gap` nats of the
    /// log-normaliser, with their int8 rows and, as their biases, those logits: what
    /// [`Self::head_nll`] needs to score states near the base.
    ///
    /// The words are those within a margin of the log-normaliser (a histogram of the gaps, in
    /// quarters of a nat), the margin as wide as leaves out at most `tail` of the base
    /// probability and at least `gap`; the argmax is always in. Non-finite logits keep every
    /// word.
    pub fn head(&self, logits: &[f32], tail: f32, gap: f32) -> OutputHead {
        assert_eq!(logits.len(), self.vocab, "one logit per word");
        const PER_NAT: f32 = 4.0;
        const BINS: usize = 256;
        let lse = kernels::log_sum_exp(logits);
        let (words, tail_lse, head_lse) = if lse.is_finite() && logits.iter().all(|l| l.is_finite())
        {
            let bin = |l: f32| (((lse - l) * PER_NAT) as usize).min(BINS - 1);
            let mut probs = logits.to_vec();
            kernels::scaled_softmax_in_place(&mut probs, lse, 1.0);
            let mut mass = [0f64; BINS];
            for (&l, &p) in logits.iter().zip(&probs) {
                mass[bin(l)] += p as f64;
            }
            // The widest cut whose words left out weigh at most `tail`: the bins past `last`.
            // Every word within `gap` nats of the normaliser, however little the rest weighs.
            let floor = ((gap.max(0.0) * PER_NAT) as usize).min(BINS - 1);
            let (mut last, mut left_out) = (BINS - 1, 0f64);
            while last > floor && left_out + mass[last] <= tail.clamp(0.0, 0.5) as f64 {
                left_out += mass[last];
                last -= 1;
            }
            let words: Vec<u32> = (0..self.vocab as u32)
                .filter(|&v| bin(logits[v as usize]) <= last)
                .collect();
            let tail_lse = if left_out > 0.0 {
                lse + left_out.ln() as f32
            } else {
                f32::NEG_INFINITY
            };
            (words, tail_lse, lse + (1.0 - left_out).ln() as f32)
        } else {
            ((0..self.vocab as u32).collect(), f32::NEG_INFINITY, lse)
        };
        // The head's rows in the form the whole vocabulary's take on this CPU (AMX tiles' when
        // there is one), copied quad by quad from the vocabulary's panels.
        let (src, quads) = self.amx_panels().unwrap_or((&self.packed[..], self.quads));
        let panels = words.len().div_ceil(PANEL).div_ceil(TILE_PANELS) * TILE_PANELS;
        let mut packed = Aligned::new(panels * quads * 64, 0i8);
        let padded = panels * PANEL;
        let (mut scale, mut zero_point_sum, mut bias) =
            (vec![0f32; padded], vec![0i32; padded], vec![0f32; padded]);
        let panel_bytes = quads * 64;
        assert!(
            src.len() >= self.panels * panel_bytes,
            "the vocabulary's panels"
        );
        // Panel by panel: each 64-byte quad-row of the head's panel gathers its 16 words' four
        // bytes from their own panels (one word's column of a panel: 4 bytes every 64).
        for (to, panel_words) in packed
            .chunks_exact_mut(panel_bytes)
            .zip(words.chunks(PANEL))
        {
            let mut from = [0usize; PANEL];
            for (f, &v) in from.iter_mut().zip(panel_words) {
                let v = v as usize;
                *f = (v / PANEL) * panel_bytes + (v % PANEL) * 4;
            }
            for (q, row) in to.chunks_exact_mut(64).enumerate() {
                for (j, &f) in from[..panel_words.len()].iter().enumerate() {
                    let at = f + q * 64;
                    row[j * 4..j * 4 + 4].copy_from_slice(&src[at..at + 4]);
                }
            }
        }
        for (k, &v) in words.iter().enumerate() {
            let v = v as usize;
            scale[k] = self.scale[v];
            zero_point_sum[k] = self.zero_point_sum[v];
            bias[k] = logits[v];
        }
        OutputHead {
            words,
            quads,
            panels,
            packed,
            scale,
            zero_point_sum,
            bias,
            tail_lse,
            head_lse,
        }
    }

    /// NLL of `target` after each row of `states` (rows × hidden), each of which is the base
    /// state `base` of `head` ([`Self::head`]) plus the same row of `deltas`: the head's
    /// logits are the base's exact ones plus the 8-bit products of the deltas, the words left
    /// out keep their base sum, and the leaders' and the target's logits are exact.
    ///
    /// Quantising the (small) change rather than the state makes the 8-bit error scale with
    /// the change, and the head is a fifth of the vocabulary or less: the per-bit bars, whose
    /// codes are each one bit (or one σ) away from the base code. A row whose state moved far
    /// (|delta| > [`HEAD_FAR`] · |base|) or whose head's share of the normaliser changed by
    /// more than [`HEAD_SHIFT`] nats — the words left out may then matter — is scored over the
    /// whole vocabulary instead ([`Self::nll`]).
    pub fn head_nll(
        &self,
        head: &OutputHead,
        base: &[f32],
        deltas: &[f32],
        states: &[f32],
        target: u32,
    ) -> Vec<f32> {
        let h = self.hidden;
        assert_eq!(deltas.len(), states.len(), "one delta per state");
        assert_eq!(states.len() % h.max(1), 0, "whole states");
        assert!(
            (target as usize) < self.vocab,
            "target outside the vocabulary"
        );
        assert_eq!(base.len(), h, "one base state");
        let n = states.len() / h.max(1);
        let far = HEAD_FAR * HEAD_FAR * kernels::dot(base, base);
        let level = kernels::active_level();
        let vnni = has_vnni(level);
        let amx = self.amx_path(level).map(|_| (&head.packed[..], head.quads));
        let panels = Panels {
            hidden: h,
            quads: head.quads,
            packed: &head.packed,
            panels: head.panels,
            words: head.words.len(),
            scale: &head.scale,
            zero_point_sum: &head.zero_point_sum,
            bias: &head.bias,
        };
        let mut out = vec![0f32; n];
        let chunk = chunk_rows(n, rayon::current_num_threads());
        out.par_chunks_mut(chunk)
            .zip(deltas.par_chunks(chunk * h))
            .zip(states.par_chunks(chunk * h))
            .for_each(|((out, deltas), states)| {
                let folds = panels.folds(deltas, vnni, amx);
                let (mut near, mut leaders, mut whole) = (Vec::new(), Vec::new(), Vec::new());
                for (r, (fold, o)) in folds.iter().zip(out.iter_mut()).enumerate() {
                    let state = &states[r * h..(r + 1) * h];
                    let delta = &deltas[r * h..(r + 1) * h];
                    let lse = fold.max + fold.sum.max(f32::MIN_POSITIVE).ln();
                    near.clear();
                    near.extend(fold.near.iter().map(|&(k, l)| (head.words[k as usize], l)));
                    let head_lse =
                        self.correct_leaders(&near, lse, state, &mut leaders, HEAD_LEADER_GAP);
                    // Not a number fails both tests: such rows go to the whole vocabulary too.
                    let near_base = kernels::dot(delta, delta) <= far
                        && (head_lse - head.head_lse).abs() <= HEAD_SHIFT;
                    if near_base {
                        *o = log_add_exp(head_lse, head.tail_lse)
                            - self.exact_logit(state, target as usize);
                    } else {
                        whole.push(r);
                    }
                }
                if !whole.is_empty() {
                    let rows: Vec<f32> = whole
                        .iter()
                        .flat_map(|&r| states[r * h..(r + 1) * h].iter().copied())
                        .collect();
                    for (&r, x) in whole
                        .iter()
                        .zip(self.nll(&rows, &vec![target; whole.len()]))
                    {
                        out[r] = x;
                    }
                }
            });
        out
    }

    /// Exact fp32 logits (rows × vocab) of the rows of `hidden` (rows × hidden).
    pub fn exact_logits(&self, hidden: &[f32]) -> Vec<f32> {
        let h = self.hidden;
        assert_eq!(hidden.len() % h.max(1), 0, "whole states");
        let rows = hidden.len() / h.max(1);
        let mut out = Vec::with_capacity(rows * self.vocab);
        if !kernels::active_level().avx512() {
            let all: Vec<u32> = (0..self.vocab as u32).collect();
            for state in hidden.chunks_exact(h) {
                kernels::dot_rows(state, &self.weight, &self.bias, &all, &mut out);
            }
            return out;
        }
        let padded_vocab = self.panels * PANEL;
        let mut logits = vec![0f32; TILE_ROWS * padded_vocab];
        let mut a = vec![0f32; TILE_ROWS * h];
        for block in hidden.chunks(TILE_ROWS * h) {
            a.fill(0.0);
            a[..block.len()].copy_from_slice(block);
            self.exact_logits_block(&a, &mut logits, block.len() / h);
            for r in 0..block.len() / h {
                out.extend_from_slice(&logits[r * padded_vocab..][..self.vocab]);
            }
        }
        out
    }

    /// Exact logits of the first `rows` rows of `a` (8 rows × hidden, zeros past `rows`) into
    /// `logits` (8 × padded vocabulary), by the fp32 AVX-512 tile.
    fn exact_logits_block(&self, a: &[f32], logits: &mut [f32], rows: usize) {
        let h = self.hidden;
        let padded_vocab = self.panels * PANEL;
        let mut tile = [0f32; TILE_ROWS * TILE_COLS];
        for group in 0..self.panels / TILE_PANELS {
            let w = &self.packed_f32[group * TILE_PANELS * h * PANEL..][..TILE_PANELS * h * PANEL];
            float_tile(a, w, h, &mut tile);
            let v0 = group * TILE_COLS;
            for r in 0..rows {
                let dst = &mut logits[r * padded_vocab + v0..][..TILE_COLS];
                for ((d, &x), &b) in dst
                    .iter_mut()
                    .zip(&tile[r * TILE_COLS..(r + 1) * TILE_COLS])
                    .zip(&self.bias_padded[v0..v0 + TILE_COLS])
                {
                    *d = x + b;
                }
            }
        }
    }

    /// Each row's NLL from its fold over the whole vocabulary: the log-normaliser with the
    /// leaders' exact logits, less the target's exact logit.
    fn finish_rows(&self, folds: &[RowFold], rows: &[f32], targets: &[u32], out: &mut [f32]) {
        let h = self.hidden;
        let mut leaders = Vec::new();
        for (r, (fold, o)) in folds.iter().zip(out.iter_mut()).enumerate() {
            let state = &rows[r * h..(r + 1) * h];
            let lse = fold.max + fold.sum.max(f32::MIN_POSITIVE).ln();
            let lse = self.correct_leaders(&fold.near, lse, state, &mut leaders, LEADER_GAP);
            *o = lse - self.exact_logit(state, targets[r] as usize);
        }
    }

    /// Exact fp32 NLL of `targets[i]` under row i of `hidden` (rows × hidden, row-major), or
    /// `None` below AVX-512, where the caller's general matrix product is the faster choice.
    pub fn nll_exact(&self, hidden: &[f32], targets: &[u32]) -> Option<Vec<f32>> {
        if !kernels::active_level().avx512() {
            return None;
        }
        let h = self.hidden;
        assert_eq!(hidden.len(), targets.len() * h, "hidden states and targets");
        assert!(
            targets.iter().all(|&t| (t as usize) < self.vocab),
            "target outside the vocabulary"
        );
        let padded_vocab = self.panels * PANEL;
        let mut out = vec![0f32; targets.len()];
        out.par_chunks_mut(TILE_ROWS)
            .zip(hidden.par_chunks(TILE_ROWS * h))
            .zip(targets.par_chunks(TILE_ROWS))
            .for_each_init(
                || {
                    (
                        vec![0f32; TILE_ROWS * h],
                        vec![0f32; TILE_ROWS * padded_vocab],
                    )
                },
                |(a, logits), ((out, rows), tgt)| {
                    a.fill(0.0);
                    a[..rows.len()].copy_from_slice(rows);
                    self.exact_logits_block(a, logits, out.len());
                    for (r, (o, &t)) in out.iter_mut().zip(tgt).enumerate() {
                        let row = &logits[r * padded_vocab..][..self.vocab];
                        *o = kernels::log_sum_exp(row) - row[t as usize];
                    }
                },
            );
        Some(out)
    }

    /// The most likely word after each row of `hidden` (rows × hidden, row-major): the argmax
    /// of the exact fp32 logits (ties to the lower id), found by the 8-bit layer. Every word
    /// whose 8-bit logit, widened by a bound on its quantisation error, can still reach the
    /// best word's lower bound is rescored exactly, so the answer is the fp32 one — usually
    /// after a handful of exact dot products instead of the whole layer in fp32 (greedy
    /// decoding reads a quarter of the bytes per word).
    pub fn greedy(&self, hidden: &[f32]) -> Vec<u32> {
        self.greedy_masked(hidden, None)
    }

    /// [`Self::greedy`] among the words each row allows: `masks[r][v]` says whether row r may
    /// pick word v (a row with no allowed word picks among all). With `None`, all words. The
    /// answer is the argmax of the exact fp32 logits over the allowed words.
    pub fn greedy_masked(&self, hidden: &[f32], masks: Option<&[Vec<bool>]>) -> Vec<u32> {
        let h = self.hidden;
        assert_eq!(hidden.len() % h.max(1), 0, "hidden states");
        let rows_total = hidden.len() / h.max(1);
        let vnni = has_vnni(kernels::active_level());
        let padded_vocab = self.panels * PANEL;
        let mut a = vec![0u8; TILE_ROWS * self.quads * 4];
        let mut logits = vec![0f32; TILE_ROWS * padded_vocab];
        let mut out = Vec::with_capacity(rows_total);
        let mut candidates = Vec::new();
        for (block, rows) in hidden.chunks(TILE_ROWS * h).enumerate() {
            let mut row_scale = [0f32; TILE_ROWS];
            a.fill(128);
            for (r, row) in rows.chunks_exact(h).enumerate() {
                row_scale[r] = quantize_unsigned(row, &mut a[r * self.quads * 4..][..h]);
            }
            self.logits_block(&a, &row_scale, &mut logits, vnni, rows.len() / h);
            for (r, state) in rows.chunks_exact(h).enumerate() {
                let approx = &logits[r * padded_vocab..][..self.vocab];
                let s_h = row_scale[r];
                let state_term = state.iter().map(|x| x.abs()).sum::<f32>() + h as f32 * s_h / 2.0;
                candidates.clear();
                let mask = masks
                    .and_then(|m| m.get(block * TILE_ROWS + r))
                    .map(|m| &m[..self.vocab.min(m.len())])
                    .filter(|m| m.iter().any(|&a| a));
                match mask {
                    None => greedy_candidates(
                        approx,
                        &self.weight_l1,
                        &self.scale[..self.vocab],
                        s_h,
                        state_term,
                        &mut candidates,
                    ),
                    Some(mask) => allowed_candidates(
                        approx,
                        &self.weight_l1,
                        &self.scale[..self.vocab],
                        s_h,
                        state_term,
                        mask,
                        &mut candidates,
                    ),
                }
                if candidates.is_empty() {
                    // Only non-finite logits get here: rescore everything allowed.
                    candidates.extend(
                        (0..self.vocab as u32)
                            .filter(|&v| mask.is_none_or(|m| m.get(v as usize) == Some(&true))),
                    );
                }
                let mut best: Option<(f32, usize)> = None;
                for &v in &candidates {
                    let exact = self.exact_logit(state, v as usize);
                    // A NaN logit never stays the best once a number comes along.
                    if best.is_none_or(|(b, _)| exact > b || (b.is_nan() && !exact.is_nan())) {
                        best = Some((exact, v as usize));
                    }
                }
                out.push(best.map_or(0, |(_, v)| v as u32));
            }
        }
        out
    }

    fn exact_logit(&self, state: &[f32], v: usize) -> f32 {
        let h = self.hidden;
        kernels::dot(state, &self.weight[v * h..(v + 1) * h]) + self.bias[v]
    }

    /// Replaces the approximate logits of the words that carry most of the probability (those
    /// within [`LEADER_GAP`] nats of the log-normaliser) by exact ones and returns the corrected
    /// log-normaliser: the quantisation error of one state shifts all its logits alike, and
    /// the leaders' share of it would not average out.
    /// `near` holds (word, approximate logit) for every word that may be a leader
    /// ([`RowFold`]); the leaders are those above `lse − gap` (`gap` at most [`LEADER_GAP`]).
    fn correct_leaders(
        &self,
        near: &[(u32, f32)],
        lse: f32,
        state: &[f32],
        leaders: &mut Vec<u32>,
        gap: f32,
    ) -> f32 {
        let threshold = lse - gap;
        leaders.clear();
        let mut approx = Vec::with_capacity(near.len());
        for &(v, l) in near {
            if l > threshold {
                leaders.push(v);
                approx.push(l);
            }
        }
        // Σ exp(l − lse) over all words is 1; swap the leaders' approximate terms for exact ones.
        let mut exact = Vec::with_capacity(leaders.len());
        kernels::dot_rows(state, &self.weight, &self.bias, leaders, &mut exact);
        let total = 1.0 + kernels::exp_difference_sum(&exact, &approx, lse) as f64;
        lse + total.max(f64::MIN_POSITIVE).ln() as f32
    }

    /// Logits of the first `rows` (≤ 8) quantised rows of `a` into `logits` (8 × padded
    /// vocab).
    fn logits_block(
        &self,
        a: &[u8],
        row_scale: &[f32; TILE_ROWS],
        logits: &mut [f32],
        vnni: bool,
        rows: usize,
    ) {
        let padded_vocab = self.panels * PANEL;
        let stride = self.quads * 64;
        let mut tile = [0i32; TILE_ROWS * TILE_COLS];
        for group in 0..self.panels / TILE_PANELS {
            let w = &self.packed[group * TILE_PANELS * stride..][..TILE_PANELS * stride];
            int_tile(a, w, self.quads, &mut tile, vnni, rows);
            let v0 = group * TILE_COLS;
            let (scale, zps) = (
                &self.scale[v0..v0 + TILE_COLS],
                &self.zero_point_sum[v0..v0 + TILE_COLS],
            );
            let bias = &self.bias_padded[v0..v0 + TILE_COLS];
            dequantize(
                &tile,
                rows,
                zps,
                scale,
                bias,
                row_scale,
                &mut logits[v0..],
                padded_vocab,
            );
        }
    }
}

/// The int8 rows of some words (the whole vocabulary, or one step's [`OutputHead`]) in the
/// panel form the integer tiles read, with what turns their products into logits.
#[derive(Clone, Copy)]
struct Panels<'a> {
    hidden: usize,
    /// Quads per panel in `packed` (at least ⌈hidden / 4⌉; zeros past the hidden size).
    quads: usize,
    /// Panel p, quad q, word j of the panel, byte i: w_q[16p + j][4q + i].
    packed: &'a [i8],
    /// Panels, a multiple of [`TILE_PANELS`].
    panels: usize,
    /// Words (the rest of the panels pad).
    words: usize,
    scale: &'a [f32],
    zero_point_sum: &'a [i32],
    /// Added to each word's logit, padded to the panels.
    bias: &'a [f32],
}

impl<'p> Panels<'p> {
    /// Each row's online log-sum-exp over these words ([`RowFold`]) for the rows of `rows`
    /// (rows × hidden) on one thread: on AMX tiles where `amx` gives their panels (`b`, with
    /// `kq` quads each), else the VNNI or portable integer tile.
    ///
    /// The vocabulary is the outer loop: each stretch of [`STRETCH_COLS`] words (its int8
    /// panels stay in the core's caches) is multiplied by every tile of rows, and each row's
    /// log-sum-exp is folded in online (a running maximum and a sum rescaled when the maximum
    /// grows), keeping only the words that may end up within [`LEADER_GAP`] of it. The
    /// weights are read once per call instead of once per tile of rows, and no row of logits
    /// over all the words is written and read back.
    #[cfg_attr(not(target_arch = "x86_64"), allow(unused_variables))]
    fn folds(&self, rows: &[f32], vnni: bool, amx: Option<(&[i8], usize)>) -> Vec<RowFold> {
        match amx {
            #[cfg(target_arch = "x86_64")]
            Some((b, kq)) => self.folds_amx(rows, b, kq),
            _ => self.folds_tile(rows, vnni),
        }
    }

    /// The stretches of up to [`STRETCH_GROUPS`] word groups the folds walk: each one's first
    /// and end group and its number of words (the padding past the last word is not one), up to
    /// the first stretch without words.
    fn stretches(&self) -> impl Iterator<Item = (usize, usize, usize)> + '_ {
        let groups = self.panels / TILE_PANELS;
        (0..groups)
            .step_by(STRETCH_GROUPS)
            .map(move |g0| {
                let g1 = (g0 + STRETCH_GROUPS).min(groups);
                let cols = (g1 * TILE_COLS)
                    .min(self.words)
                    .saturating_sub(g0 * TILE_COLS);
                (g0, g1, cols)
            })
            .take_while(|&(_, _, cols)| cols > 0)
    }

    /// [`Self::folds`] with VNNI or the portable integer tile.
    fn folds_tile(&self, rows: &[f32], vnni: bool) -> Vec<RowFold> {
        let (h, row_bytes) = (self.hidden, self.quads * 4);
        let n = rows.len() / h;
        let tiles = n.div_ceil(TILE_ROWS);
        // Quantised rows, padded to whole tiles with the zero point.
        let mut a = vec![128u8; tiles * TILE_ROWS * row_bytes];
        let mut row_scale = vec![0f32; tiles * TILE_ROWS];
        for (r, row) in rows.chunks_exact(h).enumerate() {
            row_scale[r] = quantize_unsigned(row, &mut a[r * row_bytes..][..h]);
        }
        let mut folds = vec![RowFold::default(); n];
        let stride = self.quads * 64;
        let mut logits = vec![0f32; TILE_ROWS * STRETCH_COLS];
        for (g0, g1, cols) in self.stretches() {
            let v0 = g0 * TILE_COLS;
            for t in 0..tiles {
                let m = TILE_ROWS.min(n - t * TILE_ROWS);
                let a_t = &a[t * TILE_ROWS * row_bytes..][..TILE_ROWS * row_bytes];
                let rs = &row_scale[t * TILE_ROWS..][..TILE_ROWS];
                let mut stretch_max = [f32::NEG_INFINITY; TILE_ROWS];
                for g in g0..g1 {
                    let w = &self.packed[g * TILE_PANELS * stride..][..TILE_PANELS * stride];
                    let epilogue = self.epilogue(g, rs);
                    int_tile_logits(
                        a_t,
                        w,
                        self.quads,
                        vnni,
                        m,
                        &epilogue,
                        &mut logits[(g - g0) * TILE_COLS..],
                        STRETCH_COLS,
                        &mut stretch_max,
                    );
                }
                for (r, fold) in folds[t * TILE_ROWS..][..m].iter_mut().enumerate() {
                    fold.add(
                        &logits[r * STRETCH_COLS..][..cols],
                        stretch_max[r],
                        v0 as u32,
                    );
                }
            }
        }
        folds
    }

    /// [`Self::folds_tile`] with the integer products on AMX tiles (`tdpbusd`): `b` holds the
    /// int8 panels with `kq` quads each (a multiple of [`AMX_QUADS`], zeros past `quads`).
    ///
    /// The rows are quantised (by [`quantize_unsigned_avx512`], the same bytes) into a
    /// 64-byte aligned copy whose rows are `kq` quads long (whole A tiles), padded to whole
    /// row tiles. Per stretch of the vocabulary, each block of up to 32 rows gets its logits
    /// from [`Self::amx_stretch_logits`] — the VNNI tile's logits and stretch maxima, to the
    /// bit — and folds them in as [`Self::folds_tile`] does, stretch after stretch: the folds
    /// are those of the VNNI path, to the bit.
    #[cfg(target_arch = "x86_64")]
    fn folds_amx(&self, rows: &[f32], b: &[i8], kq: usize) -> Vec<RowFold> {
        let h = self.hidden;
        let row_bytes = kq * 4;
        let n = rows.len() / h;
        let padded_rows = n.next_multiple_of(amx::ROWS);
        // Quantised rows, padded with the zero point (the padding quads' weights are zero,
        // and the padding rows' products are never read).
        let mut a = Aligned::new(padded_rows * row_bytes, 128u8);
        let mut row_scale = vec![0f32; padded_rows];
        for (r, row) in rows.chunks_exact(h).enumerate() {
            row_scale[r] = quantize_unsigned_avx512(row, &mut a[r * row_bytes..][..h]);
        }
        let mut folds = vec![RowFold::default(); n];
        let mut logits = Aligned::new(amx::BLOCK_ROWS * STRETCH_COLS, 0f32);
        // One group's integer products for a block (12 KB), written by the tiles and read by
        // the epilogue while in L1.
        let mut dots = Aligned::new(amx::BLOCK_ROWS * TILE_COLS, 0i32);
        let mut stretch_max = [f32::NEG_INFINITY; amx::BLOCK_ROWS];
        let tiles = amx::Tiles::configure();
        for (g0, g1, cols) in self.stretches() {
            let v0 = g0 * TILE_COLS;
            for r0 in (0..n).step_by(amx::BLOCK_ROWS) {
                let m = amx::BLOCK_ROWS.min(n - r0);
                let a_block = &a[r0 * row_bytes..][..m.next_multiple_of(amx::ROWS) * row_bytes];
                self.amx_stretch_logits(
                    &tiles,
                    (a_block, kq),
                    b,
                    g0..g1,
                    &row_scale[r0..r0 + m],
                    &mut dots,
                    &mut logits,
                    &mut stretch_max[..m],
                );
                for (r, fold) in folds[r0..r0 + m].iter_mut().enumerate() {
                    fold.add(
                        &logits[r * STRETCH_COLS..][..cols],
                        stretch_max[r],
                        v0 as u32,
                    );
                }
            }
        }
        drop(tiles);
        folds
    }

    /// The logits of a block of `row_scale.len()` (≤ 32) quantised rows (`a`: whole row tiles
    /// of `kq` quads per row) for the words of groups `groups` (one stretch), row r's at
    /// `logits[r · STRETCH_COLS..]`, group by group, and `stretch_max[r]` = the largest of row
    /// r's logits over the stretch's words (−∞ if none is a number): what the VNNI tile writes
    /// for the same rows, to the bit. `dots` holds one group's integer products in between.
    #[cfg(target_arch = "x86_64")]
    #[allow(clippy::too_many_arguments)]
    fn amx_stretch_logits(
        &self,
        tiles: &amx::Tiles,
        (a, kq): (&[u8], usize),
        b: &[i8],
        groups: std::ops::Range<usize>,
        row_scale: &[f32],
        dots: &mut [i32],
        logits: &mut [f32],
        stretch_max: &mut [f32],
    ) {
        let m = row_scale.len();
        stretch_max.fill(f32::NEG_INFINITY);
        for g in groups.clone() {
            // The group's products while the block's rows of A are in L1, and its logits
            // while the products are.
            tiles.products(
                a,
                kq * 4,
                m,
                b,
                kq,
                g * TILE_PANELS..(g + 1) * TILE_PANELS,
                dots,
                TILE_COLS,
            );
            let epilogue = self.epilogue(g, row_scale);
            dequantize_block(
                dots,
                &mut logits[(g - groups.start) * TILE_COLS..],
                STRETCH_COLS,
                &epilogue,
                stretch_max,
            );
        }
    }

    /// The epilogue of word group `g` (48 words) for rows whose scales are `row_scale`.
    fn epilogue<'a>(self, g: usize, row_scale: &'a [f32]) -> TileEpilogue<'a>
    where
        'p: 'a,
    {
        let v = g * TILE_COLS;
        TileEpilogue {
            zero_point_sum: &self.zero_point_sum[v..v + TILE_COLS],
            scale: &self.scale[v..v + TILE_COLS],
            bias: &self.bias[v..v + TILE_COLS],
            row_scale,
            words: self.words.saturating_sub(v).min(TILE_COLS),
        }
    }
}

/// One decoding step's head of the vocabulary after a base state ([`PackedOutput::head`]):
/// the words that carry all but a sliver of its probability, their int8 rows in panels, their
/// exact base logits, and the log of the probability mass left out (times the normaliser).
pub struct OutputHead {
    /// The head's words, in vocabulary order.
    words: Vec<u32>,
    /// Quads per panel (the vocabulary's AMX form where there is one).
    quads: usize,
    panels: usize,
    packed: Aligned<i8>,
    scale: Vec<f32>,
    zero_point_sum: Vec<i32>,
    /// Each word's exact logit after the base state (zeros past the words).
    bias: Vec<f32>,
    /// log Σ exp(logit) over the words left out, after the base state (−∞ if none).
    tail_lse: f32,
    /// log Σ exp(logit) over the head's words, after the base state.
    head_lse: f32,
}

impl OutputHead {
    /// The head's words, in vocabulary order.
    pub fn words(&self) -> &[u32] {
        &self.words
    }
}

impl std::fmt::Debug for OutputHead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutputHead")
            .field("words", &self.words.len())
            .field("tail_lse", &self.tail_lse)
            .finish_non_exhaustive()
    }
}

/// ln(eᵃ + eᵇ), either may be −∞.
fn log_add_exp(a: f32, b: f32) -> f32 {
    let m = a.max(b);
    if m == f32::NEG_INFINITY {
        return m;
    }
    m + ((a - m).exp() + (b - m).exp()).ln()
}

/// Whether the VNNI kernel runs at `level` on this CPU.
fn has_vnni(level: Level) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        level.avx512()
            && std::arch::is_x86_feature_detected!("avx512vnni")
            && std::arch::is_x86_feature_detected!("avx512bw")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = level;
        false
    }
}

kernels::dispatch! {
    /// uint8 quantisation around 128 of a hidden state: returns the scale. Runs for every
    /// state scored (~1000 per flip of a bit), so it is compiled per level, where the rounding
    /// vectorises (a plain build called `roundf` per value).
    fn quantize_unsigned(row: &[f32], out: &mut [u8]) -> f32 {
        quantize(row, out, |q| (q + 128) as u8)
    }
}

/// [`quantize_unsigned`] in AVX-512 registers, to the bit: the dispatched build's largest
/// magnitude is a scalar fold (an f32 `max` reduction does not vectorise), which was a tenth
/// of the bars once the products ran on AMX tiles. The largest |x| skips NaNs as `f32::max`
/// does (all the magnitudes are ≥ +0, so the order of the maxima does not matter), the product
/// x · (127 / max) is the same multiplication, its rounding half away from zero is
/// trunc(y) ± 1 where |y − trunc(y)| ≥ ½ (exact: the fraction of a float is a float), and a
/// NaN product stores the zero point as `as i32` of NaN does.
#[cfg(target_arch = "x86_64")]
fn quantize_unsigned_avx512(row: &[f32], out: &mut [u8]) -> f32 {
    assert_eq!(row.len(), out.len(), "one byte per value");
    assert!(kernels::detected_level().avx512(), "AVX-512 quantiser");
    // SAFETY: the CPU has AVX-512F (checked above); every access is masked to `row.len()`,
    // which is `out.len()`.
    unsafe { quantize_unsigned_avx512_inner(row, out) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn quantize_unsigned_avx512_inner(row: &[f32], out: &mut [u8]) -> f32 {
    use std::arch::x86_64::*;
    let n = row.len();
    let lanes = |i: usize| -> __mmask16 {
        if n - i >= 16 {
            0xffff
        } else {
            ((1u32 << (n - i)) - 1) as __mmask16
        }
    };
    let mut max = _mm512_setzero_ps();
    for i in (0..n).step_by(16) {
        let x = _mm512_maskz_loadu_ps(lanes(i), row.as_ptr().add(i));
        // max(|x|, max) keeps `max` where |x| is NaN.
        max = _mm512_max_ps(_mm512_abs_ps(x), max);
    }
    let max = _mm512_reduce_max_ps(max);
    if max == 0.0 || !max.is_finite() {
        out.fill(128);
        return 0.0;
    }
    let inv = _mm512_set1_ps(127.0 / max);
    let half = _mm512_set1_ps(0.5);
    let one = _mm512_set1_ps(1.0);
    let (low, high) = (_mm512_set1_ps(-127.0), _mm512_set1_ps(127.0));
    let zero_point = _mm512_set1_epi32(128);
    for i in (0..n).step_by(16) {
        let k = lanes(i);
        let y = _mm512_mul_ps(_mm512_maskz_loadu_ps(k, row.as_ptr().add(i)), inv);
        let t = _mm512_roundscale_ps::<{ _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC }>(y);
        let away = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(_mm512_abs_ps(_mm512_sub_ps(y, t)), half);
        // ±1 with y's sign, where the fraction is at least a half.
        let sign = _mm512_and_si512(_mm512_castps_si512(y), _mm512_set1_epi32(i32::MIN));
        let step = _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(one), sign));
        let r = _mm512_mask_add_ps(t, away, t, step);
        let q = _mm512_min_ps(_mm512_max_ps(r, low), high);
        let number = _mm512_cmp_ps_mask::<_CMP_ORD_Q>(y, y);
        let q = _mm512_maskz_cvttps_epi32(number, q);
        _mm512_mask_cvtepi32_storeu_epi8(
            out.as_mut_ptr().add(i) as *mut _,
            k,
            _mm512_add_epi32(q, zero_point),
        );
    }
    max / 127.0
}

kernels::dispatch! {
    /// The words whose exact logit may be the largest, given 8-bit logits `approx` of one state
    /// quantised with scale `s_h`: |w·h − s_v s_h q·p| ≤ s_h/2 ‖w‖₁ + s_v/2 · s_h ‖p‖₁, and
    /// s_h ‖p‖₁ ≤ ‖h‖₁ + H s_h / 2 = `state_term`; the rest of each bound covers fp32
    /// rounding. Appends every word whose upper bound reaches the best lower bound.
    fn greedy_candidates(approx: &[f32], weight_l1: &[f32], scale: &[f32], s_h: f32, state_term: f32, out: &mut Vec<u32>) {
        let bound = |a: f32, l1: f32, s: f32| greedy_error_bound(a, l1, s, s_h, state_term);
        let mut floor = f32::NEG_INFINITY;
        for ((&a, &l1), &s) in approx.iter().zip(weight_l1).zip(scale) {
            floor = floor.max(a - bound(a, l1, s));
        }
        for (v, ((&a, &l1), &s)) in approx.iter().zip(weight_l1).zip(scale).enumerate() {
            if a + bound(a, l1, s) >= floor {
                out.push(v as u32);
            }
        }
    }
}

/// The bound of [`greedy_candidates`] on the error of an 8-bit logit `a` of a word with row
/// L1 norm `l1` and scale `s`.
#[inline(always)]
fn greedy_error_bound(a: f32, l1: f32, s: f32, s_h: f32, state_term: f32) -> f32 {
    (0.5 * (s_h * l1 + s * state_term)) * 1.001 + 1e-4 * (1.0 + a.abs())
}

kernels::dispatch! {
    /// [`greedy_candidates`] among the words `allowed` (restricted decoding, e.g. to real
    /// words): every allowed word whose upper bound reaches the best allowed word's lower
    /// bound. Branch-free over the vocabulary (a select, not a filter), so that it vectorises
    /// like the unrestricted scan: filtering word by word was most of a real-word decoding.
    fn allowed_candidates(approx: &[f32], weight_l1: &[f32], scale: &[f32], s_h: f32, state_term: f32, allowed: &[bool], out: &mut Vec<u32>) {
        let bound = |a: f32, l1: f32, s: f32| greedy_error_bound(a, l1, s, s_h, state_term);
        let n = approx.len().min(allowed.len());
        let (approx, weight_l1, scale, allowed) = (&approx[..n], &weight_l1[..n], &scale[..n], &allowed[..n]);
        let mut floor = f32::NEG_INFINITY;
        for (((&a, &l1), &s), &ok) in approx.iter().zip(weight_l1).zip(scale).zip(allowed) {
            let lower = a - bound(a, l1, s);
            floor = floor.max(if ok { lower } else { f32::NEG_INFINITY });
        }
        for (v, (((&a, &l1), &s), &ok)) in approx.iter().zip(weight_l1).zip(scale).zip(allowed).enumerate() {
            if a + bound(a, l1, s) >= floor && ok {
                out.push(v as u32);
            }
        }
    }
}

kernels::dispatch! {
    /// logits = row_scale · scale_v · (dot − zero_point_sum_v) + b_v for the first `rows` rows
    /// of a tile, row r into `out[r · out_stride..]` (one call per tile: a call per row cost
    /// as much as the arithmetic).
    fn dequantize(tile: &[i32; TILE_ROWS * TILE_COLS], rows: usize, zero_point_sum: &[i32], scale: &[f32], bias: &[f32], row_scale: &[f32], out: &mut [f32], out_stride: usize) {
        for (r, &rs) in row_scale.iter().enumerate().take(rows) {
            let dots = &tile[r * TILE_COLS..(r + 1) * TILE_COLS];
            let out = &mut out[r * out_stride..][..TILE_COLS];
            for ((((o, &d), &z), &s), &b) in out.iter_mut().zip(dots).zip(zero_point_sum).zip(scale).zip(bias) {
                *o = rs * s * (d - z) as f32 + b;
            }
        }
    }
}

/// What turns one group of 48 words' integer dot products into logits ([`dequantize`]): the
/// words' zero-point sums, scales and biases, the rows' scales (one per row of the tile or
/// the AMX block), and how many of the 48 columns are words (the rest pad the vocabulary).
struct TileEpilogue<'a> {
    zero_point_sum: &'a [i32],
    scale: &'a [f32],
    bias: &'a [f32],
    row_scale: &'a [f32],
    words: usize,
}

impl TileEpilogue<'_> {
    /// Asserts that the word vectors cover a group of 48 columns, of which `words` are words.
    fn check_columns(&self) {
        assert!(
            self.zero_point_sum.len() >= TILE_COLS
                && self.scale.len() >= TILE_COLS
                && self.bias.len() >= TILE_COLS
                && self.words <= TILE_COLS,
            "epilogue of a group of {TILE_COLS} columns"
        );
    }
}

/// The logits of one tile: [`int_tile`] then [`dequantize`] into `out` (row r at
/// `out[r · out_stride..]`, 48 columns), and `row_max[r]` raised to the largest logit of row
/// r among the first `epilogue.words` columns (NaNs passed over, as [`kernels::max_of`] does).
/// With VNNI the dequantisation and the maxima are computed while the integer tile is still
/// in registers, by the same operations in the same order (so the same bits) as the
/// separate passes that run otherwise.
#[allow(clippy::too_many_arguments)]
fn int_tile_logits(
    a: &[u8],
    w: &[i8],
    quads: usize,
    vnni: bool,
    rows: usize,
    epilogue: &TileEpilogue<'_>,
    out: &mut [f32],
    out_stride: usize,
    row_max: &mut [f32; TILE_ROWS],
) {
    assert!(a.len() >= TILE_ROWS * quads * 4 && w.len() >= TILE_PANELS * quads * 64);
    assert!(rows <= TILE_ROWS, "at most {TILE_ROWS} rows per tile");
    assert!(epilogue.row_scale.len() >= rows, "one scale per row");
    epilogue.check_columns();
    if rows == 0 {
        return;
    }
    assert!(
        out.len() >= (rows - 1) * out_stride + TILE_COLS,
        "tile output"
    );
    #[cfg(target_arch = "x86_64")]
    if vnni {
        // SAFETY: `vnni` is only true where the CPU has AVX-512F/BW/VNNI; the assertions above
        // bound every load and store.
        unsafe {
            let e = epilogue;
            match rows {
                1 => int_tile_logits_vnni::<1>(a, w, quads, e, out, out_stride, row_max),
                2 => int_tile_logits_vnni::<2>(a, w, quads, e, out, out_stride, row_max),
                3 => int_tile_logits_vnni::<3>(a, w, quads, e, out, out_stride, row_max),
                4 => int_tile_logits_vnni::<4>(a, w, quads, e, out, out_stride, row_max),
                5 => int_tile_logits_vnni::<5>(a, w, quads, e, out, out_stride, row_max),
                6 => int_tile_logits_vnni::<6>(a, w, quads, e, out, out_stride, row_max),
                7 => int_tile_logits_vnni::<7>(a, w, quads, e, out, out_stride, row_max),
                _ => int_tile_logits_vnni::<TILE_ROWS>(a, w, quads, e, out, out_stride, row_max),
            }
        }
        return;
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = vnni; // VNNI is x86's: elsewhere the separate passes always run.
    let mut tile = [0i32; TILE_ROWS * TILE_COLS];
    int_tile(a, w, quads, &mut tile, false, rows);
    dequantize(
        &tile,
        rows,
        epilogue.zero_point_sum,
        epilogue.scale,
        epilogue.bias,
        epilogue.row_scale,
        out,
        out_stride,
    );
    for (r, m) in row_max.iter_mut().enumerate().take(rows) {
        let tile_max = kernels::max_of(&out[r * out_stride..][..epilogue.words]);
        if tile_max > *m {
            *m = tile_max;
        }
    }
}

/// An epilogue's words in AVX-512 registers, a panel (16 words) each: zero-point sums, scales,
/// biases and the mask of the panel's real words.
#[cfg(target_arch = "x86_64")]
struct EpilogueVectors {
    zero_point: [std::arch::x86_64::__m512i; TILE_PANELS],
    scale: [std::arch::x86_64::__m512; TILE_PANELS],
    bias: [std::arch::x86_64::__m512; TILE_PANELS],
    words: [std::arch::x86_64::__mmask16; TILE_PANELS],
}

#[cfg(target_arch = "x86_64")]
impl EpilogueVectors {
    /// # Safety
    /// AVX-512F; the epilogue's slices hold [`TILE_COLS`] values (the callers assert it).
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn load(epilogue: &TileEpilogue<'_>) -> Self {
        use std::arch::x86_64::*;
        // SAFETY: the caller's.
        unsafe {
            let at = |p: usize| p * PANEL;
            Self {
                zero_point: std::array::from_fn(|p| {
                    _mm512_loadu_si512(epilogue.zero_point_sum.as_ptr().add(at(p)) as *const _)
                }),
                scale: std::array::from_fn(|p| _mm512_loadu_ps(epilogue.scale.as_ptr().add(at(p)))),
                bias: std::array::from_fn(|p| _mm512_loadu_ps(epilogue.bias.as_ptr().add(at(p)))),
                words: std::array::from_fn(|p| {
                    let n = epilogue.words.saturating_sub(at(p)).min(PANEL);
                    ((1u32 << n) - 1) as __mmask16
                }),
            }
        }
    }

    /// Panel p's logits from its dot products: [`dequantize`]'s rs · s · (d − z) + b, left to
    /// right, without fused multiply-adds (so the same bits).
    ///
    /// # Safety
    /// AVX-512F.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn logits(
        &self,
        p: usize,
        rs: std::arch::x86_64::__m512,
        dots: std::arch::x86_64::__m512i,
    ) -> std::arch::x86_64::__m512 {
        use std::arch::x86_64::*;
        let d = _mm512_cvtepi32_ps(_mm512_sub_epi32(dots, self.zero_point[p]));
        _mm512_add_ps(
            _mm512_mul_ps(_mm512_mul_ps(rs, self.scale[p]), d),
            self.bias[p],
        )
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn int_tile_logits_vnni<const R: usize>(
    a: &[u8],
    w: &[i8],
    quads: usize,
    epilogue: &TileEpilogue<'_>,
    out: &mut [f32],
    out_stride: usize,
    row_max: &mut [f32; TILE_ROWS],
) {
    use std::arch::x86_64::*;
    let stride = quads * 64;
    let a_ptr = a.as_ptr();
    let w_ptr = w.as_ptr();
    let row_bytes = quads * 4;
    let mut acc = [[_mm512_setzero_si512(); TILE_PANELS]; R];
    for q in 0..quads {
        let w0 = _mm512_loadu_si512(w_ptr.add(q * 64) as *const _);
        let w1 = _mm512_loadu_si512(w_ptr.add(stride + q * 64) as *const _);
        let w2 = _mm512_loadu_si512(w_ptr.add(2 * stride + q * 64) as *const _);
        for (r, acc_r) in acc.iter_mut().enumerate() {
            let quad = (a_ptr.add(r * row_bytes + q * 4) as *const i32).read_unaligned();
            let av = _mm512_set1_epi32(quad);
            acc_r[0] = _mm512_dpbusd_epi32(acc_r[0], av, w0);
            acc_r[1] = _mm512_dpbusd_epi32(acc_r[1], av, w1);
            acc_r[2] = _mm512_dpbusd_epi32(acc_r[2], av, w2);
        }
    }
    let e = EpilogueVectors::load(epilogue);
    let out_ptr = out.as_mut_ptr();
    for (r, acc_r) in acc.iter().enumerate() {
        let rs = _mm512_set1_ps(epilogue.row_scale[r]);
        let mut max = _mm512_set1_ps(f32::NEG_INFINITY);
        for p in 0..TILE_PANELS {
            let x = e.logits(p, rs, acc_r[p]);
            _mm512_storeu_ps(out_ptr.add(r * out_stride + p * PANEL), x);
            // max(x, max) keeps `max` where x is NaN.
            max = _mm512_mask_max_ps(max, e.words[p], x, max);
        }
        let tile_max = _mm512_reduce_max_ps(max);
        if tile_max > row_max[r] {
            row_max[r] = tile_max;
        }
    }
}

/// One group of 48 columns of an AMX block's integer products (`dots`, row r at
/// `dots[48 r..]`) turned into logits, row r into `out[r · out_stride..][..48]`, and
/// `row_max[r]` raised to the largest logit of row r among the first `epilogue.words`
/// columns: the epilogue of [`int_tile_logits_vnni`], the same operations in the same order,
/// so the same bits.
#[cfg(target_arch = "x86_64")]
fn dequantize_block(
    dots: &[i32],
    out: &mut [f32],
    out_stride: usize,
    epilogue: &TileEpilogue<'_>,
    row_max: &mut [f32],
) {
    let rows = row_max.len();
    assert_eq!(epilogue.row_scale.len(), rows, "one scale per row");
    epilogue.check_columns();
    if rows == 0 {
        return;
    }
    assert!(dots.len() >= rows * TILE_COLS, "products");
    assert!(out.len() >= (rows - 1) * out_stride + TILE_COLS, "logits");
    assert!(kernels::detected_level().avx512(), "AVX-512 epilogue");
    // SAFETY: the CPU has AVX-512F (checked above); the assertions bound every load and store.
    unsafe { dequantize_block_avx512(dots, out, out_stride, epilogue, row_max) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn dequantize_block_avx512(
    dots: &[i32],
    out: &mut [f32],
    out_stride: usize,
    epilogue: &TileEpilogue<'_>,
    row_max: &mut [f32],
) {
    use std::arch::x86_64::*;
    let e = EpilogueVectors::load(epilogue);
    let (src, dst) = (dots.as_ptr(), out.as_mut_ptr());
    // Row r's logits, stored, and their maximum vector (padding words left out; NaNs too:
    // max(x, max) keeps `max` where x is NaN).
    let row = |r: usize| {
        let rs = _mm512_set1_ps(epilogue.row_scale[r]);
        let mut max = _mm512_set1_ps(f32::NEG_INFINITY);
        for p in 0..TILE_PANELS {
            let dots = _mm512_loadu_si512(src.add(r * TILE_COLS + p * PANEL) as *const _);
            let x = e.logits(p, rs, dots);
            _mm512_storeu_ps(dst.add(r * out_stride + p * PANEL), x);
            max = _mm512_mask_max_ps(max, e.words[p], x, max);
        }
        max
    };
    let rows = row_max.len();
    let whole = rows / 16 * 16;
    for r0 in (0..whole).step_by(16) {
        let tile_max = reduce_max_16(|i| row(r0 + i));
        // The VNNI tile's `if tile_max > m { m = tile_max }`, sixteen rows at once.
        let m = row_max.as_mut_ptr().add(r0);
        let old = _mm512_loadu_ps(m);
        let grows = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(tile_max, old);
        _mm512_storeu_ps(m, _mm512_mask_mov_ps(old, grows, tile_max));
    }
    for (r, m) in row_max.iter_mut().enumerate().skip(whole) {
        let tile_max = _mm512_reduce_max_ps(row(r));
        *m = if tile_max > *m { tile_max } else { *m };
    }
}

/// `_mm512_reduce_max_ps` of each of the 16 vectors `v(0)`, …, `v(15)`, lane i for vector i,
/// by the same maxima with the same operands in the same places (`maxps` returns its second
/// operand for two zeros, so the sign of a zero maximum depends on them): halves of 8, then
/// of 4, then lanes (0, 2) and (1, 3), then 0 and 1 — sixteen vectors at once instead of one
/// after the other. The vectors are asked for in order and combined as they come, so that
/// few are live at a time (all sixteen spilled to the stack).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn reduce_max_16(
    mut v: impl FnMut(usize) -> std::arch::x86_64::__m512,
) -> std::arch::x86_64::__m512 {
    use std::arch::x86_64::*;
    // Chunks (max(a lanes 0–3, 8–11), max(a 4–7, 12–15), the same of b).
    let halves = |a: __m512, b: __m512| {
        _mm512_max_ps(
            _mm512_shuffle_f32x4::<0x44>(a, b),
            _mm512_shuffle_f32x4::<0xee>(a, b),
        )
    };
    // Chunk i: the max of the two chunks of `halves` for vector i of the four (its 4 lanes).
    let quarters = |a: __m512, b: __m512| {
        _mm512_max_ps(
            _mm512_shuffle_f32x4::<0x88>(a, b),
            _mm512_shuffle_f32x4::<0xdd>(a, b),
        )
    };
    let mut z = [_mm512_setzero_ps(); 4];
    for (j, z) in z.iter_mut().enumerate() {
        let w0 = halves(v(4 * j), v(4 * j + 1));
        let w1 = halves(v(4 * j + 2), v(4 * j + 3));
        *z = quarters(w0, w1);
    }
    // Chunk i: (max(lane 0, lane 2), max(lane 1, lane 3)) of a's chunk i, then of b's.
    let pairs = |a: __m512, b: __m512| {
        _mm512_max_ps(
            _mm512_shuffle_ps::<0x44>(a, b),
            _mm512_shuffle_ps::<0xee>(a, b),
        )
    };
    let (t0, t1) = (pairs(z[0], z[1]), pairs(z[2], z[3]));
    // Chunk i, lane j: the maximum of vector i + 4j.
    let r = _mm512_max_ps(
        _mm512_shuffle_ps::<0x88>(t0, t1),
        _mm512_shuffle_ps::<0xdd>(t0, t1),
    );
    // Lane k ← lane 4 (k mod 4) + k / 4: vector k's maximum in lane k.
    let order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    _mm512_permutexvar_ps(order, r)
}

/// The AMX-INT8 products of [`PackedOutput::nll`]: C (i32, 16 × 16) += A (16 rows × 64 u8) ·
/// B (16 quad-rows × 16 columns of four s8) per `tdpbusd`, 16 × 16 × 64 multiply-adds.
///
/// A B tile is 16 consecutive quads of one int8 panel, 1 KB contiguous: the panels' layout
/// (quad-rows of 16 words × 4 bytes) is already the tile's, so B is read in place; A tiles are
/// 16 rows of the quantised states, 64 bytes each, `a_stride` apart. Palette 1 with all eight
/// tiles 16 rows × 64 bytes, blocked 2 × 2 as in `bf16::amx`: tmm0–3 accumulate two row tiles
/// (32 rows) × two panels (32 words), tmm4–5 hold the row tiles' A and tmm6–7 the panels' B
/// of a step. Blocks of 32 rows rather than 64 (four row tiles of one panel, which read each
/// B tile once per 64 rows): the block's logits over a stretch (48 KB) are then read back by
/// the online normaliser from L1 and L2 rather than L2 alone, which was faster overall on a
/// Sapphire Rapids core. Short inner sums (4 steps at hidden 256) make the zeroing and the
/// stores of C a good part of the tiles' time. As in `bf16::amx`, the tile registers are
/// named in the asm text (Rust's AMX intrinsics are unstable); no code that Rust generates
/// uses them, and the configuration is released (`tilerelease`) when the chunk is done.
#[cfg(target_arch = "x86_64")]
mod amx {
    use std::arch::asm;
    use std::ops::Range;

    use super::{kernels, AMX_QUADS, PANEL};

    /// Rows of an A or C tile.
    pub(super) const ROWS: usize = 16;
    /// Row tiles per block.
    const ROW_TILES: usize = 2;
    /// Rows of a block.
    pub(super) const BLOCK_ROWS: usize = ROW_TILES * ROWS;
    /// Bytes of one tile row, and of one quad-row of a panel.
    const ROW_BYTES: usize = 64;
    // The tile kernel's asm steps A by 64 bytes and B by 1,024 (16 quad-rows) a step.
    const _: () = assert!(ROW_BYTES == 64 && AMX_QUADS * ROW_BYTES == 1024);

    /// The tiles configured on this thread ([`kernels::AmxTiles`]) and the products they
    /// compute.
    pub(super) struct Tiles(kernels::AmxTiles);

    impl Tiles {
        pub(super) fn configure() -> Self {
            Tiles(kernels::AmxTiles::configure())
        }

        /// The integer dot products of the first `rows` (1 to 32) rows of `a` (`a_stride` =
        /// `kq` · 4 bytes apart; whole row tiles readable, ⌈rows / 16⌉ · 16 rows) with every
        /// panel in `panels` of `b` (`kq` quads per panel, a multiple of 16), into `out` as
        /// i32 bits: row r, panel `panels.start + i` at `out[r · out_stride + 16 i..][..16]`.
        /// Rows past `rows` up to the row tile's end are computed from A's padding and written.
        #[allow(clippy::too_many_arguments)]
        pub(super) fn products(
            &self,
            a: &[u8],
            a_stride: usize,
            rows: usize,
            b: &[i8],
            kq: usize,
            panels: Range<usize>,
            out: &mut [i32],
            out_stride: usize,
        ) {
            assert!(kq > 0 && kq.is_multiple_of(AMX_QUADS), "whole B tiles");
            assert_eq!(a_stride, kq * 4, "A rows of kq quads");
            assert!(rows > 0 && rows <= BLOCK_ROWS, "1 to 32 rows");
            let row_tiles = rows.div_ceil(ROWS);
            assert!(a.len() >= row_tiles * ROWS * a_stride, "A's row tiles");
            let panel_bytes = kq * ROW_BYTES;
            assert!(panels.end * panel_bytes <= b.len(), "B's panels");
            let np = panels.len();
            if np == 0 {
                return;
            }
            assert!(
                out_stride >= np * PANEL
                    && (row_tiles * ROWS - 1) * out_stride + np * PANEL <= out.len(),
                "C's rows"
            );
            let steps = kq / AMX_QUADS;
            let c_stride = out_stride * 4;
            let a = a.as_ptr();
            for p in panels.clone().step_by(2) {
                let two = p + 1 < panels.end;
                let b0 = b[p * panel_bytes..][..panel_bytes].as_ptr();
                let b1 = if two {
                    b[(p + 1) * panel_bytes..][..panel_bytes].as_ptr()
                } else {
                    b0
                };
                let c = out[(p - panels.start) * PANEL..].as_mut_ptr() as *mut u8;
                // SAFETY: `self` configured the tiles on this thread. A: row_tiles × 16 rows of
                // kq · 4 bytes from `a` (asserted); B: panels p (and p + 1 where `two`) of kq
                // quad-rows of 64 bytes, inside `b` (asserted); C: row_tiles × 16 rows
                // `c_stride` bytes apart of 16 (32 where `two`) i32 from column
                // (p − start) · 16, which end by column np · 16, inside `out` (asserted).
                unsafe {
                    match (row_tiles, two) {
                        (2, true) => block::<2, 2>(a, a_stride, b0, b1, steps, c, c_stride),
                        (2, false) => block::<2, 1>(a, a_stride, b0, b1, steps, c, c_stride),
                        (_, true) => block::<1, 2>(a, a_stride, b0, b1, steps, c, c_stride),
                        (_, false) => block::<1, 1>(a, a_stride, b0, b1, steps, c, c_stride),
                    }
                }
            }
        }
    }

    /// C (`R` × `P` tiles: 16 · `R` rows `c_stride` bytes apart, 16 · `P` i32 each, at `c`)
    /// = A (16 · `R` rows at `a`, `a_stride` bytes apart) · B (panel `b0`, and `b1` where `P`
    /// is 2), over `steps` × 16 quads. tmm0–3 hold C's tiles (row tile i, panel j in tmm 2i + j),
    /// tmm4–5 A's, tmm6–7 B's.
    ///
    /// # Safety
    /// Tiles configured by [`Tiles::configure`]; `R` and `P` are 1 or 2; every address named is
    /// readable (C writable).
    #[inline(always)]
    unsafe fn block<const R: usize, const P: usize>(
        a: *const u8,
        a_stride: usize,
        b0: *const i8,
        b1: *const i8,
        steps: usize,
        c: *mut u8,
        c_stride: usize,
    ) {
        let a1 = a.wrapping_add(ROWS * a_stride);
        let c2 = c.wrapping_add(ROWS * c_stride);
        // One asm block from the first tile instruction to the last, so no tile's contents
        // are assumed to outlive an `asm!` (the tile registers are declared clobbered). C's
        // tile (i, j) is at c (i = 0) or c2 (i = 1), plus 64 bytes for j = 1.
        macro_rules! tiles {
            ($($line:literal),* ; $($operands:tt)*) => {
                asm!(
                    $($line),*,
                    $($operands)*
                    out("tmm0") _, out("tmm1") _, out("tmm2") _, out("tmm3") _,
                    out("tmm4") _, out("tmm5") _, out("tmm6") _, out("tmm7") _,
                    options(nostack)
                )
            };
        }
        // SAFETY: the caller's.
        unsafe {
            match (R, P) {
                (2, 2) => tiles!(
                    "tilezero tmm0", "tilezero tmm1", "tilezero tmm2", "tilezero tmm3",
                    "test {steps}, {steps}", "jz 3f",
                    "2:",
                    "tileloadd tmm4, [{a0} + {sa}]",
                    "tileloadd tmm6, [{b0} + {sb}]",
                    "tdpbusd tmm0, tmm4, tmm6",
                    "tileloadd tmm7, [{b1} + {sb}]",
                    "tdpbusd tmm1, tmm4, tmm7",
                    "tileloadd tmm5, [{a1} + {sa}]",
                    "tdpbusd tmm2, tmm5, tmm6",
                    "tdpbusd tmm3, tmm5, tmm7",
                    "add {a0}, 64", "add {a1}, 64", "add {b0}, 1024", "add {b1}, 1024",
                    "dec {steps}", "jnz 2b",
                    "3:",
                    "tilestored [{c0} + {s}], tmm0",
                    "tilestored [{c0} + {s} + 64], tmm1",
                    "tilestored [{c2} + {s}], tmm2",
                    "tilestored [{c2} + {s} + 64], tmm3";
                    a0 = inout(reg) a => _, a1 = inout(reg) a1 => _,
                    b0 = inout(reg) b0 => _, b1 = inout(reg) b1 => _,
                    steps = inout(reg) steps => _, sa = in(reg) a_stride, sb = in(reg) ROW_BYTES,
                    c0 = in(reg) c, c2 = in(reg) c2, s = in(reg) c_stride,
                ),
                (2, _) => tiles!(
                    "tilezero tmm0", "tilezero tmm2",
                    "test {steps}, {steps}", "jz 3f",
                    "2:",
                    "tileloadd tmm4, [{a0} + {sa}]",
                    "tileloadd tmm6, [{b0} + {sb}]",
                    "tdpbusd tmm0, tmm4, tmm6",
                    "tileloadd tmm5, [{a1} + {sa}]",
                    "tdpbusd tmm2, tmm5, tmm6",
                    "add {a0}, 64", "add {a1}, 64", "add {b0}, 1024",
                    "dec {steps}", "jnz 2b",
                    "3:",
                    "tilestored [{c0} + {s}], tmm0",
                    "tilestored [{c2} + {s}], tmm2";
                    a0 = inout(reg) a => _, a1 = inout(reg) a1 => _, b0 = inout(reg) b0 => _,
                    steps = inout(reg) steps => _, sa = in(reg) a_stride, sb = in(reg) ROW_BYTES,
                    c0 = in(reg) c, c2 = in(reg) c2, s = in(reg) c_stride,
                ),
                (_, 2) => tiles!(
                    "tilezero tmm0", "tilezero tmm1",
                    "test {steps}, {steps}", "jz 3f",
                    "2:",
                    "tileloadd tmm4, [{a0} + {sa}]",
                    "tileloadd tmm6, [{b0} + {sb}]",
                    "tdpbusd tmm0, tmm4, tmm6",
                    "tileloadd tmm7, [{b1} + {sb}]",
                    "tdpbusd tmm1, tmm4, tmm7",
                    "add {a0}, 64", "add {b0}, 1024", "add {b1}, 1024",
                    "dec {steps}", "jnz 2b",
                    "3:",
                    "tilestored [{c0} + {s}], tmm0",
                    "tilestored [{c0} + {s} + 64], tmm1";
                    a0 = inout(reg) a => _, b0 = inout(reg) b0 => _, b1 = inout(reg) b1 => _,
                    steps = inout(reg) steps => _, sa = in(reg) a_stride, sb = in(reg) ROW_BYTES,
                    c0 = in(reg) c, s = in(reg) c_stride,
                ),
                _ => tiles!(
                    "tilezero tmm0",
                    "test {steps}, {steps}", "jz 3f",
                    "2:",
                    "tileloadd tmm4, [{a0} + {sa}]",
                    "tileloadd tmm6, [{b0} + {sb}]",
                    "tdpbusd tmm0, tmm4, tmm6",
                    "add {a0}, 64", "add {b0}, 1024",
                    "dec {steps}", "jnz 2b",
                    "3:",
                    "tilestored [{c0} + {s}], tmm0";
                    a0 = inout(reg) a => _, b0 = inout(reg) b0 => _,
                    steps = inout(reg) steps => _, sa = in(reg) a_stride, sb = in(reg) ROW_BYTES,
                    c0 = in(reg) c, s = in(reg) c_stride,
                ),
            }
        }
    }
}

/// tile (8 × 48) = a (8 rows × quads·4 bytes, uint8) · three panels of `w`.
/// Only the first `rows` rows of the tile are computed (the rest are left as they were): a
/// block of fewer than 8 states — one word of greedy decoding, the 65th code of the bars —
/// does not pay for eight.
fn int_tile(
    a: &[u8],
    w: &[i8],
    quads: usize,
    tile: &mut [i32; TILE_ROWS * TILE_COLS],
    vnni: bool,
    rows: usize,
) {
    assert!(a.len() >= TILE_ROWS * quads * 4 && w.len() >= TILE_PANELS * quads * 64);
    assert!(rows <= TILE_ROWS, "at most {TILE_ROWS} rows per tile");
    if rows == 0 {
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if vnni {
        // SAFETY: `vnni` is only true where the CPU has AVX-512F/BW/VNNI; the assertions above
        // bound every load.
        unsafe {
            match rows {
                1 => int_tile_vnni::<1>(a, w, quads, tile),
                2 => int_tile_vnni::<2>(a, w, quads, tile),
                3 => int_tile_vnni::<3>(a, w, quads, tile),
                4 => int_tile_vnni::<4>(a, w, quads, tile),
                5 => int_tile_vnni::<5>(a, w, quads, tile),
                6 => int_tile_vnni::<6>(a, w, quads, tile),
                7 => int_tile_vnni::<7>(a, w, quads, tile),
                _ => int_tile_vnni::<TILE_ROWS>(a, w, quads, tile),
            }
        }
        return;
    }
    let _ = vnni;
    int_tile_portable(a, w, quads, tile, rows);
}

kernels::dispatch! {
    /// The reference integer tile: plain loops, which the compiler vectorises per level.
    fn int_tile_portable(a: &[u8], w: &[i8], quads: usize, tile: &mut [i32; TILE_ROWS * TILE_COLS], rows: usize) {
        let stride = quads * 64;
        for r in 0..rows {
            let a_row = &a[r * quads * 4..(r + 1) * quads * 4];
            for p in 0..TILE_PANELS {
                let mut acc = [0i32; PANEL];
                let panel = &w[p * stride..(p + 1) * stride];
                for (q, wq) in panel.chunks_exact(64).enumerate() {
                    let aq = &a_row[q * 4..q * 4 + 4];
                    for (j, acc_j) in acc.iter_mut().enumerate() {
                        let wj = &wq[j * 4..j * 4 + 4];
                        *acc_j += aq[0] as i32 * wj[0] as i32
                            + aq[1] as i32 * wj[1] as i32
                            + aq[2] as i32 * wj[2] as i32
                            + aq[3] as i32 * wj[3] as i32;
                    }
                }
                tile[r * TILE_COLS + p * PANEL..][..PANEL].copy_from_slice(&acc);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn int_tile_vnni<const R: usize>(
    a: &[u8],
    w: &[i8],
    quads: usize,
    tile: &mut [i32; TILE_ROWS * TILE_COLS],
) {
    use std::arch::x86_64::*;
    let stride = quads * 64;
    let a_ptr = a.as_ptr();
    let w_ptr = w.as_ptr();
    let row_bytes = quads * 4;
    let mut acc = [[_mm512_setzero_si512(); TILE_PANELS]; R];
    for q in 0..quads {
        let w0 = _mm512_loadu_si512(w_ptr.add(q * 64) as *const _);
        let w1 = _mm512_loadu_si512(w_ptr.add(stride + q * 64) as *const _);
        let w2 = _mm512_loadu_si512(w_ptr.add(2 * stride + q * 64) as *const _);
        for (r, acc_r) in acc.iter_mut().enumerate() {
            let quad = (a_ptr.add(r * row_bytes + q * 4) as *const i32).read_unaligned();
            let av = _mm512_set1_epi32(quad);
            acc_r[0] = _mm512_dpbusd_epi32(acc_r[0], av, w0);
            acc_r[1] = _mm512_dpbusd_epi32(acc_r[1], av, w1);
            acc_r[2] = _mm512_dpbusd_epi32(acc_r[2], av, w2);
        }
    }
    for (r, acc_r) in acc.iter().enumerate() {
        for (p, v) in acc_r.iter().enumerate() {
            _mm512_storeu_si512(
                tile.as_mut_ptr().add(r * TILE_COLS + p * PANEL) as *mut _,
                *v,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, k: f32, amp: f32) -> Vec<f32> {
        (0..n)
            .map(|i| ((i as f32 * k).sin() + (i as f32 * k * 0.37).cos()) * amp)
            .collect()
    }

    /// Exact fp32 NLL per row, computed the slow obvious way.
    fn exact_nll(w: &[f32], b: &[f32], hidden: &[f32], targets: &[u32], h: usize) -> Vec<f32> {
        let v = b.len();
        hidden
            .chunks_exact(h)
            .zip(targets)
            .map(|(row, &t)| {
                let logits: Vec<f64> = (0..v)
                    .map(|j| {
                        b[j] as f64
                            + row
                                .iter()
                                .zip(&w[j * h..(j + 1) * h])
                                .map(|(x, y)| (x * y) as f64)
                                .sum::<f64>()
                    })
                    .collect();
                let max = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let lse = max + logits.iter().map(|l| (l - max).exp()).sum::<f64>().ln();
                (lse - logits[t as usize]) as f32
            })
            .collect()
    }

    /// The 8-bit greedy search returns the argmax of the exact logits where the 8-bit logits
    /// alone would not: each state's winner gets a rival row whose weights differ by half a
    /// quantisation step (so the two quantise differently) and whose bias puts its exact logit
    /// 1e-3 below — or level with it (the lower id wins). 1 to 19 states at once, every level.
    #[test]
    fn greedy_search_finds_the_exact_argmax_at_every_level() {
        let (v, h) = (1003, 37);
        let mut w = values(v * h, 0.013, 0.6);
        let mut b = values(v, 0.7, 1.0);
        let hidden = values(19 * h, 0.29, 0.8);
        let exact = |w: &[f32], b: &[f32], state: &[f32], u: usize| {
            kernels::dot(state, &w[u * h..(u + 1) * h]) + b[u]
        };
        let argmax = |w: &[f32], b: &[f32], state: &[f32]| {
            (0..v)
                .reduce(|a, u| {
                    if exact(w, b, state, u) > exact(w, b, state, a) {
                        u
                    } else {
                        a
                    }
                })
                .unwrap()
        };
        for (i, state) in hidden.chunks_exact(h).enumerate() {
            let winner = argmax(&w, &b, state);
            let rival = 600 + 7 * i;
            let step = w[winner * h..(winner + 1) * h]
                .iter()
                .fold(0f32, |m, x| m.max(x.abs()))
                / 127.0;
            for k in 0..h {
                let nudge = if (k * 7 + i) % 3 == 0 { 0.5 } else { -0.5 };
                w[rival * h + k] = w[winner * h + k] + nudge * step;
            }
            b[rival] = 0.0;
            let gap = if i % 5 == 0 { 0.0 } else { 1e-3 };
            b[rival] = exact(&w, &b, state, winner) - gap - exact(&w, &b, state, rival);
        }
        let q = PackedOutput::new(&w, &b, v, h);
        let mut rivals_won = 0;
        for level in kernels::available_levels() {
            kernels::with_level(level, || {
                for n in [1, 2, 7, 8, 9, 19] {
                    let states = &hidden[..n * h];
                    let got = q.greedy(states);
                    for (i, state) in states.chunks_exact(h).enumerate() {
                        let best = argmax(&w, &b, state);
                        assert_eq!(
                            got[i] as usize,
                            best,
                            "{}: {n} states, row {i}",
                            level.name()
                        );
                        rivals_won += usize::from(best >= 600);
                    }
                }
            });
        }
        // The near-ties are real: rounding makes some rivals the exact winners.
        assert!(rivals_won > 0);
    }

    /// `q.nll` at every kernel level, each row within 1e-3 (relative) of `exact`.
    fn close_to_exact_at_every_level(
        q: &PackedOutput,
        hidden: &[f32],
        targets: &[u32],
        exact: &[f32],
    ) -> Vec<(kernels::Level, Vec<f32>)> {
        let mut per_level = Vec::new();
        for level in kernels::available_levels() {
            let got = kernels::with_level(level, || q.nll(hidden, targets));
            for (i, (g, e)) in got.iter().zip(exact).enumerate() {
                assert!(
                    (g - e).abs() < 1e-3 * e.abs().max(1.0),
                    "{}: row {i}: {g} vs exact {e}",
                    level.name()
                );
            }
            per_level.push((level, got));
        }
        per_level
    }

    #[test]
    fn quantized_nll_is_close_to_exact_and_equal_at_every_level() {
        // Sizes that are not multiples of the tiles: 1003 words, hidden 37, 19 rows.
        let (v, h, n) = (1003, 37, 19);
        let w = values(v * h, 0.013, 0.6);
        let b = values(v, 0.7, 1.0);
        let hidden = values(n * h, 0.29, 0.8);
        let targets: Vec<u32> = (0..n as u32).map(|i| (i * 97) % v as u32).collect();
        let q = PackedOutput::new(&w, &b, v, h);
        let exact = exact_nll(&w, &b, &hidden, &targets, h);
        // Logits here span ±20 with strongly correlated rounding; real states do better.
        let per_level = close_to_exact_at_every_level(&q, &hidden, &targets, &exact);
        let (_, reference) = &per_level[0];
        for (level, got) in &per_level[1..] {
            for (g, r) in got.iter().zip(reference) {
                assert!(
                    (g - r).abs() <= 1e-5 * r.abs().max(1.0),
                    "{}: {g} vs baseline {r}",
                    level.name()
                );
            }
        }
        // The AMX tiles and the VNNI tile compute the same logits and the same normaliser
        // (the exp-sums run the same AVX-512 kernel at both levels): the same bits.
        let at = |level| {
            per_level
                .iter()
                .find(|(l, _)| *l == level)
                .map(|(_, got)| got)
        };
        if let (Some(amx), Some(vnni)) = (at(Level::Amx), at(Level::Avx512)) {
            assert_eq!(
                kernels::with_level(Level::Amx, || q.nll_kernel()),
                "amx-int8"
            );
            assert_eq!(bits(amx), bits(vnni), "AMX vs VNNI");
        }
    }

    /// One step's head of the vocabulary after a base state, on a peaked distribution (as a
    /// trained decoder's): well under the vocabulary, the argmax in, the words left out
    /// weighing at most the tail asked for (and something), its base logits the exact ones;
    /// the NLLs of states near the base — and of one far from it, which goes to the whole
    /// vocabulary — close to the exact ones at every level, and each row's NLL the same bits
    /// alone as among others. Non-finite logits keep every word.
    #[test]
    fn head_scores_states_near_its_base_at_every_level() {
        let (v, h) = (1003, 37);
        let w = values(v * h, 0.013, 0.6);
        let b: Vec<f32> = values(v, 0.7, 1.0)
            .iter()
            .enumerate()
            .map(|(j, x)| x - 0.03 * j as f32)
            .collect();
        let base = values(h, 0.29, 0.8);
        let q = PackedOutput::new(&w, &b, v, h);
        let logits = q.exact_logits(&base);
        for (j, &l) in logits.iter().enumerate() {
            let direct: f32 = base
                .iter()
                .zip(&w[j * h..(j + 1) * h])
                .map(|(x, y)| x * y)
                .sum();
            assert!((l - direct - b[j]).abs() < 1e-4, "exact logit {j}");
        }
        let tail = 3e-4;
        let head = q.head(&logits, tail, 12.0);
        let words = head.words();
        assert!(
            words.len() > 10 && words.len() < v / 3,
            "{} words",
            words.len()
        );
        let argmax = (0..v)
            .max_by(|&a, &c| logits[a].total_cmp(&logits[c]))
            .unwrap();
        assert!(words.contains(&(argmax as u32)));
        let lse = exact_nll(&w, &b, &base, &[argmax as u32], h)[0] as f64 + logits[argmax] as f64;
        let left_out: f64 = (0..v as u32)
            .filter(|j| !words.contains(j))
            .map(|j| (logits[j as usize] as f64 - lse).exp())
            .sum();
        assert!(
            left_out > 0.0 && left_out <= tail as f64,
            "left out {left_out}"
        );
        assert!((head.tail_lse as f64 - (lse + left_out.ln())).abs() < 1e-3);
        let n = 21;
        let mut states = Vec::new();
        // Row 7 moves far, toward a word outside the head: the head alone would miss it.
        let outside = (0..v as u32).rev().find(|j| !words.contains(j)).unwrap() as usize;
        for r in 0..n {
            let d = if r == 7 {
                w[outside * h..(outside + 1) * h]
                    .iter()
                    .map(|x| 3.0 * x)
                    .collect()
            } else {
                values(h, 0.11 + r as f32 * 0.07, 0.05)
            };
            states.extend(base.iter().zip(&d).map(|(x, d)| x + d));
        }
        let deltas: Vec<f32> = states
            .chunks_exact(h)
            .flat_map(|s| s.iter().zip(&base).map(|(x, y)| x - y))
            .collect();
        let target = 5;
        let exact = exact_nll(&w, &b, &states, &vec![target; n], h);
        for level in kernels::available_levels() {
            kernels::with_level(level, || {
                let got = q.head_nll(&head, &base, &deltas, &states, target);
                for (r, (g, e)) in got.iter().zip(&exact).enumerate() {
                    assert!(
                        (g - e).abs() <= 1e-3 * e.abs().max(1.0),
                        "{}: row {r}: {g} vs exact {e}",
                        level.name()
                    );
                }
                for r in [0, 7, n - 1] {
                    let alone = q.head_nll(
                        &head,
                        &base,
                        &deltas[r * h..(r + 1) * h],
                        &states[r * h..(r + 1) * h],
                        target,
                    );
                    assert_eq!(alone[0].to_bits(), got[r].to_bits(), "row {r} alone");
                }
            });
        }
        // A head that leaves out 3% of the probability: the words left out still count (for
        // states very near the base: the sum of the words left out is the base's).
        let wide = q.head(&logits, 3e-2, 0.0);
        assert!(wide.words().len() < words.len());
        let deltas: Vec<f32> = deltas.iter().map(|d| d * 0.1).collect();
        let states: Vec<f32> = deltas
            .chunks_exact(h)
            .flat_map(|d| d.iter().zip(&base).map(|(d, x)| x + d))
            .collect();
        let exact = exact_nll(&w, &b, &states, &vec![target; n], h);
        let got = q.head_nll(&wide, &base, &deltas, &states, target);
        for (r, (g, e)) in got.iter().zip(&exact).enumerate() {
            assert!(
                (g - e).abs() <= 2e-3 * e.abs().max(1.0),
                "row {r}: {g} vs exact {e}"
            );
        }
        let mut odd = logits.clone();
        odd[3] = f32::NAN;
        assert_eq!(q.head(&odd, tail, 12.0).words().len(), v);
    }

    fn bits(x: &[f32]) -> Vec<u32> {
        x.iter().map(|v| v.to_bits()).collect()
    }

    /// The AMX tiles' logits are the VNNI tile's and the portable tile's, bit for bit, their
    /// per-stretch maxima the VNNI tile's bits (the portable maxima, taken in another order,
    /// may differ from both in the sign of a zero), and the NLLs of the AMX and VNNI levels
    /// are the same bits (the portable levels' differ by the rounding of their exp-sums):
    /// rows that are not whole tiles or
    /// blocks (1 to 100, more than one block), vocabularies that are not whole panels, tiles
    /// or pairs of panels (odd panels in a stretch), hidden sizes that are not whole B tiles
    /// (37 and 200 go through the zero-padded copy of the panels, 64 and 256 are read in
    /// place; 200 and 256 take four steps), a zero state and a tiny state over tiny weights
    /// (scales whose product underflows: logits that are zeros of both signs, over biases of
    /// both signs, whose maxima take the sign the order of the maxima gives them) and a NaN
    /// bias (left out of the maxima).
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn amx_tiles_give_the_vnni_and_portable_logits_to_the_bit() {
        if !kernels::detected_level().amx() {
            eprintln!(
                "no AMX tiles on this CPU (or not granted): only the VNNI and portable tiles run"
            );
            return;
        }
        for (v, h, n, nan) in [
            (1003, 37, 19, false),
            (777, 200, 45, false),
            (1000, 64, 33, false),
            (200, 256, 100, false),
            (150, 37, 20, true),
        ] {
            let mut w = values(v * h, 0.013, 0.6);
            // Words 48..96 tiny, and so is row 5's state: the product of their scales
            // underflows, and the row's logits there are zeros signed as the integer sums are.
            w[48 * h..96 * h].iter_mut().for_each(|x| *x *= 1e-25);
            let mut b = values(v, 0.7, 1.0);
            // The first stretch's biases: ±0 for words 48..96, negative elsewhere, so that the
            // zero and the tiny state's logits there peak at zeros of both signs.
            for (i, bias) in b.iter_mut().enumerate().take(STRETCH_COLS) {
                *bias = match i {
                    48..96 if i % 3 == 0 => -0.0,
                    48..96 => 0.0,
                    _ => -1.0 - bias.abs(),
                };
            }
            if nan {
                b[7] = f32::NAN;
            }
            let mut hidden = values(n * h, 0.29, 0.8);
            hidden[3 * h..4 * h].fill(0.0);
            hidden[5 * h..6 * h].iter_mut().for_each(|x| *x *= 1e-25);
            let targets: Vec<u32> = (0..n as u32).map(|i| (i * 97) % v as u32).collect();
            let q = PackedOutput::new(&w, &b, v, h);
            let case = format!("{v} words, hidden {h}, {n} rows");
            let (panels_amx, kq) = q.amx_path(Level::Amx).expect("AMX panels");
            assert_eq!(kq, q.quads.next_multiple_of(AMX_QUADS), "{case}");
            assert_eq!(
                panels_amx.as_ptr() as usize % 64,
                0,
                "{case}: aligned panels"
            );
            // The quantised rows in both layouts.
            let (vnni_bytes, amx_bytes) = (q.quads * 4, kq * 4);
            let mut a_vnni = vec![128u8; n.next_multiple_of(TILE_ROWS) * vnni_bytes];
            let mut a_amx = Aligned::new(n.next_multiple_of(amx::ROWS) * amx_bytes, 128u8);
            let mut row_scale = vec![0f32; n.next_multiple_of(TILE_ROWS)];
            for (r, row) in hidden.chunks_exact(h).enumerate() {
                row_scale[r] = quantize_unsigned(row, &mut a_vnni[r * vnni_bytes..][..h]);
                let s = quantize_unsigned_avx512(row, &mut a_amx[r * amx_bytes..][..h]);
                assert_eq!(s.to_bits(), row_scale[r].to_bits(), "{case}: row {r}");
            }
            let stride = q.quads * 64;
            let groups = q.panels / TILE_PANELS;
            let (mut zero_maxima, mut negative_zeros) = (0, 0);
            for g0 in (0..groups).step_by(STRETCH_GROUPS) {
                let g1 = (g0 + STRETCH_GROUPS).min(groups);
                let width = (g1 - g0) * TILE_COLS;
                // The VNNI and portable tiles, 8 rows at a time, as `nll_chunk` runs them.
                let tile_logits = |vnni: bool| {
                    let mut logits = vec![f32::NAN; n * STRETCH_COLS + TILE_COLS];
                    let mut maxima = vec![f32::NEG_INFINITY; n];
                    let level = if vnni { Level::Avx512 } else { Level::Baseline };
                    kernels::with_level(level, || {
                        for t in 0..n.div_ceil(TILE_ROWS) {
                            let m = TILE_ROWS.min(n - t * TILE_ROWS);
                            let a_t =
                                &a_vnni[t * TILE_ROWS * vnni_bytes..][..TILE_ROWS * vnni_bytes];
                            let rs = &row_scale[t * TILE_ROWS..][..TILE_ROWS];
                            let mut tile_max = [f32::NEG_INFINITY; TILE_ROWS];
                            for g in g0..g1 {
                                let epilogue = q.panels().epilogue(g, rs);
                                int_tile_logits(
                                    a_t,
                                    &q.packed[g * TILE_PANELS * stride..][..TILE_PANELS * stride],
                                    q.quads,
                                    vnni,
                                    m,
                                    &epilogue,
                                    &mut logits
                                        [t * TILE_ROWS * STRETCH_COLS + (g - g0) * TILE_COLS..],
                                    STRETCH_COLS,
                                    &mut tile_max,
                                );
                            }
                            maxima[t * TILE_ROWS..][..m].copy_from_slice(&tile_max[..m]);
                        }
                    });
                    (logits, maxima)
                };
                // The AMX tiles, a block of up to 32 rows at a time.
                let mut logits = vec![f32::NAN; n * STRETCH_COLS];
                let mut maxima = vec![f32::NEG_INFINITY; n];
                let mut block = Aligned::new(amx::BLOCK_ROWS * STRETCH_COLS, f32::NAN);
                let mut dots = Aligned::new(amx::BLOCK_ROWS * TILE_COLS, 0i32);
                let tiles = amx::Tiles::configure();
                for r0 in (0..n).step_by(amx::BLOCK_ROWS) {
                    let m = amx::BLOCK_ROWS.min(n - r0);
                    q.panels().amx_stretch_logits(
                        &tiles,
                        (
                            &a_amx[r0 * amx_bytes..][..m.next_multiple_of(amx::ROWS) * amx_bytes],
                            kq,
                        ),
                        panels_amx,
                        g0..g1,
                        &row_scale[r0..r0 + m],
                        &mut dots,
                        &mut block,
                        &mut maxima[r0..r0 + m],
                    );
                    for r in 0..m {
                        logits[(r0 + r) * STRETCH_COLS..][..width]
                            .copy_from_slice(&block[r * STRETCH_COLS..][..width]);
                    }
                }
                drop(tiles);
                for vnni in [true, false] {
                    let (ref_logits, ref_maxima) = tile_logits(vnni);
                    let what = if vnni { "VNNI" } else { "portable" };
                    for r in 0..n {
                        assert_eq!(
                            bits(&logits[r * STRETCH_COLS..][..width]),
                            bits(&ref_logits[r * STRETCH_COLS..][..width]),
                            "{case}: stretch from group {g0}, row {r}: AMX vs {what} logits"
                        );
                    }
                    if vnni {
                        assert_eq!(
                            bits(&maxima),
                            bits(&ref_maxima),
                            "{case}: stretch from group {g0}: AMX vs VNNI maxima"
                        );
                    } else {
                        // The portable maxima (`kernels::max_of`) take their maxima in
                        // another order: the same numbers, a zero's sign aside.
                        assert_eq!(
                            maxima, ref_maxima,
                            "{case}: stretch from group {g0}: AMX vs portable maxima"
                        );
                    }
                }
                zero_maxima += maxima.iter().filter(|&&x| x == 0.0).count();
                negative_zeros += logits.iter().filter(|x| x.to_bits() == 0x8000_0000).count();
            }
            // The zero state's stretch over the zero biases peaks at a zero.
            assert!(zero_maxima > 0, "{case}");
            assert!(negative_zeros > 0, "{case}: no −0 logit");
            if nan {
                continue;
            }
            let nll = |level| {
                kernels::with_level(level, || {
                    let kernel = q.nll_kernel();
                    (kernel, q.nll(&hidden, &targets))
                })
            };
            let (amx_kernel, amx) = nll(Level::Amx);
            let (vnni_kernel, vnni) = nll(Level::Avx512);
            let (portable_kernel, portable) = nll(Level::Baseline);
            assert_eq!(
                (amx_kernel, vnni_kernel, portable_kernel),
                ("amx-int8", "avx512-vnni", "portable")
            );
            assert_eq!(bits(&amx), bits(&vnni), "{case}: AMX vs VNNI NLL");
            for (x, y) in amx.iter().zip(&portable) {
                assert!(
                    (x - y).abs() <= 1e-5 * y.abs().max(1.0),
                    "{case}: {x} vs {y}"
                );
            }
        }
    }

    /// The 16-row reduction of the AMX epilogue gives `_mm512_reduce_max_ps` of each vector,
    /// to the bit: vectors of zeros of both signs (where the order of the maxima decides the
    /// sign), −∞ and numbers, in many patterns.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn sixteen_row_maxima_are_reduce_max_ps_to_the_bit() {
        if !kernels::detected_level().avx512() {
            eprintln!("no AVX-512 on this CPU: the AMX epilogue never runs");
            return;
        }
        use std::arch::x86_64::*;
        let mut seed = 0x9e37_79b9_u32;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed
        };
        let mut signed = 0;
        for round in 0..2000 {
            let lanes: [[f32; 16]; 16] = std::array::from_fn(|_| {
                std::array::from_fn(|_| match next() % 8 {
                    0..=2 => 0.0,
                    3..=5 => -0.0,
                    6 if round % 2 == 0 => f32::NEG_INFINITY,
                    _ => -((next() % 4) as f32),
                })
            });
            // SAFETY: AVX-512F (checked above); each array is 16 floats.
            let (got, want) = unsafe {
                let v = |i: usize| _mm512_loadu_ps(lanes[i].as_ptr());
                let mut got = [0f32; 16];
                _mm512_storeu_ps(got.as_mut_ptr(), reduce_max_16(v));
                (
                    got,
                    std::array::from_fn::<f32, 16, _>(|i| _mm512_reduce_max_ps(v(i))),
                )
            };
            assert_eq!(bits(&got), bits(&want), "round {round}: {lanes:?}");
            signed += want.iter().filter(|x| x.to_bits() == 0x8000_0000).count();
        }
        assert!(signed > 0, "some maxima are −0");
    }

    /// The AVX-512 quantiser of the AMX path gives the dispatched one's scale and bytes:
    /// rounding ties both ways (127 as the largest value makes the factor 1, so k + ½ are
    /// exact), values just below a tie, NaNs (stored as the zero point, and skipped by the
    /// largest magnitude), signed zeros, an infinity and all-zero or all-NaN rows (zero
    /// scale), at lengths around the 16 lanes.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn amx_quantiser_matches_the_dispatched_one_to_the_bit() {
        if !kernels::detected_level().avx512() {
            eprintln!("no AVX-512 on this CPU: the AMX path's quantiser never runs");
            return;
        }
        let below_half = 0.5f32.next_down();
        let special = [
            127.0,
            2.5,
            -2.5,
            0.5,
            -0.5,
            1.5,
            -1.5,
            126.5,
            -126.5,
            below_half,
            -below_half,
            3.0 + below_half,
            f32::NAN,
            -0.0,
            0.0,
            -127.0,
            64.5,
            -64.5,
            1e-30,
            -1e-30,
        ];
        let mut rows: Vec<Vec<f32>> = Vec::new();
        for n in [1, 2, 15, 16, 17, 20, 31, 32, 33, 37, 64, 70, 256] {
            rows.push(special.iter().cycle().take(n).copied().collect());
            rows.push(values(n, 0.37, 3.0));
            let mut with_nan = values(n, 0.11, 0.01);
            with_nan[n / 2] = f32::NAN;
            rows.push(with_nan);
        }
        rows.push(vec![0.0; 40]);
        rows.push(vec![-0.0; 17]);
        rows.push(vec![f32::NAN; 19]);
        let mut with_inf = values(33, 0.2, 1.0);
        with_inf[5] = f32::NEG_INFINITY;
        rows.push(with_inf);
        let mut ties = 0;
        for row in &rows {
            let (mut want, mut got) = (vec![7u8; row.len()], vec![9u8; row.len()]);
            let s_want = quantize_unsigned(row, &mut want);
            let s_got = quantize_unsigned_avx512(row, &mut got);
            assert_eq!(s_got.to_bits(), s_want.to_bits(), "{row:?}");
            assert_eq!(got, want, "{row:?}");
            ties += row
                .iter()
                .filter(|x| x.fract().abs() == 0.5 && s_want == 1.0)
                .count();
        }
        assert!(ties > 0, "ties were rounded");
    }

    /// The online normaliser: a bias rising along the vocabulary makes the running maximum
    /// grow in every stretch (each growth rescales the sum and the near words are those read
    /// last), and 300 rows span more than one chunk per thread; every level agrees with the
    /// exact figure.
    #[test]
    fn online_normaliser_follows_a_growing_maximum_across_chunks() {
        let (v, h, n) = (2000, 40, 300);
        let w = values(v * h, 0.011, 0.3);
        let b: Vec<f32> = (0..v).map(|i| i as f32 * 0.004).collect();
        let hidden = values(n * h, 0.23, 0.7);
        let targets: Vec<u32> = (0..n as u32).map(|i| (i * 131) % v as u32).collect();
        let q = PackedOutput::new(&w, &b, v, h);
        let exact = exact_nll(&w, &b, &hidden, &targets, h);
        close_to_exact_at_every_level(&q, &hidden, &targets, &exact);
        assert_eq!(chunk_rows(300, 1), NLL_CHUNK_ROWS);
        assert_eq!(chunk_rows(19, 2), 16);
        assert_eq!(chunk_rows(1, 8), TILE_ROWS);
    }

    #[test]
    fn packed_exact_nll_matches_the_reference_where_it_runs() {
        let (v, h, n) = (1003, 37, 19);
        let w = values(v * h, 0.013, 0.6);
        let b = values(v, 0.7, 1.0);
        let hidden = values(n * h, 0.29, 0.8);
        let targets: Vec<u32> = (0..n as u32).map(|i| (i * 97) % v as u32).collect();
        let q = PackedOutput::new(&w, &b, v, h);
        let exact = exact_nll(&w, &b, &hidden, &targets, h);
        for level in kernels::available_levels() {
            let got = kernels::with_level(level, || q.nll_exact(&hidden, &targets));
            match got {
                Some(got) => {
                    assert!(level.avx512());
                    for (g, e) in got.iter().zip(&exact) {
                        assert!((g - e).abs() < 1e-4 * e.abs().max(1.0), "{g} vs {e}");
                    }
                }
                None => assert!(!level.avx512(), "AVX-512 runs the packed kernel"),
            }
        }
    }

    #[test]
    fn integer_tiles_agree_between_vnni_and_portable_code() {
        if !has_vnni(kernels::detected_level()) {
            eprintln!("no AVX-512 VNNI on this CPU: only the portable tile runs");
            return;
        }
        let quads = 9;
        let a: Vec<u8> = (0..TILE_ROWS * quads * 4)
            .map(|i| (i * 37 % 256) as u8)
            .collect();
        let w: Vec<i8> = (0..TILE_PANELS * quads * 64)
            .map(|i| ((i * 53 % 255) as i32 - 127) as i8)
            .collect();
        for rows in 1..=TILE_ROWS {
            let (mut fast, mut slow) =
                ([0i32; TILE_ROWS * TILE_COLS], [0i32; TILE_ROWS * TILE_COLS]);
            int_tile(&a, &w, quads, &mut fast, true, rows);
            kernels::with_level(Level::Baseline, || {
                int_tile(&a, &w, quads, &mut slow, false, rows)
            });
            let used = rows * TILE_COLS;
            assert_eq!(fast[..used], slow[..used], "{rows} rows");
            assert!(slow[..used].iter().any(|&x| x != 0));
        }
    }

    /// The VNNI tile with its epilogue in registers writes the same logits and maxima, to the
    /// bit, as the portable tile followed by `dequantize` and `max_of`: every row count, a
    /// tile whose last 13 columns are padding (left out of the maxima) and a NaN scale.
    #[test]
    fn tile_logits_agree_between_vnni_and_portable_code() {
        if !has_vnni(kernels::detected_level()) {
            eprintln!("no AVX-512 VNNI on this CPU: only the portable tile runs");
            return;
        }
        let quads = 9;
        let a: Vec<u8> = (0..TILE_ROWS * quads * 4)
            .map(|i| (i * 37 % 256) as u8)
            .collect();
        let w: Vec<i8> = (0..TILE_PANELS * quads * 64)
            .map(|i| ((i * 53 % 255) as i32 - 127) as i8)
            .collect();
        let zero_point_sum: Vec<i32> = (0..TILE_COLS as i32).map(|j| j * 911 - 20000).collect();
        let mut scale = values(TILE_COLS, 0.3, 1e-3);
        scale[7] = f32::NAN;
        let bias = values(TILE_COLS, 0.9, 2.0);
        let row_scale: [f32; TILE_ROWS] = std::array::from_fn(|r| 0.01 + r as f32 * 0.003);
        let stride = TILE_COLS + 5;
        for words in [TILE_COLS, TILE_COLS - 13] {
            let epilogue = TileEpilogue {
                zero_point_sum: &zero_point_sum,
                scale: &scale,
                bias: &bias,
                row_scale: &row_scale,
                words,
            };
            for rows in 1..=TILE_ROWS {
                let run = |vnni: bool| {
                    let mut out = vec![-7.0f32; TILE_ROWS * stride];
                    let mut max = [f32::NEG_INFINITY, 1e9, -1e9, 0.0, 0.5, -3.0, 3.0, -0.1];
                    kernels::with_level(if vnni { Level::Avx512 } else { Level::Baseline }, || {
                        int_tile_logits(
                            &a, &w, quads, vnni, rows, &epilogue, &mut out, stride, &mut max,
                        )
                    });
                    (out, max)
                };
                let (fast_out, fast_max) = run(true);
                let (slow_out, slow_max) = run(false);
                let bits = |x: &[f32]| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                assert_eq!(
                    bits(&fast_out),
                    bits(&slow_out),
                    "{rows} rows, {words} words"
                );
                assert_eq!(
                    bits(&fast_max),
                    bits(&slow_max),
                    "{rows} rows, {words} words"
                );
                assert!(fast_out[..TILE_COLS].iter().any(|x| x.is_nan()));
                assert!(fast_out[..TILE_COLS]
                    .iter()
                    .any(|&x| x != -7.0 && x.is_finite()));
                // Rows past `rows` and columns past the tile are not written.
                assert!(fast_out[rows * stride..].iter().all(|&x| x == -7.0));
                assert!(fast_out[TILE_COLS..stride].iter().all(|&x| x == -7.0));
            }
        }
    }

    #[test]
    fn a_zero_state_and_a_zero_row_are_handled() {
        let (v, h) = (20, 8);
        let mut w = values(v * h, 0.1, 0.5);
        w[3 * h..4 * h].fill(0.0);
        let b = values(v, 0.3, 1.0);
        let hidden = vec![0f32; 2 * h];
        let q = PackedOutput::new(&w, &b, v, h);
        let got = q.nll(&hidden, &[3, 5]);
        let exact = exact_nll(&w, &b, &hidden, &[3, 5], h);
        for (g, e) in got.iter().zip(&exact) {
            assert!((g - e).abs() < 1e-4, "{g} vs {e}");
        }
    }
}
