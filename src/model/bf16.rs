//! bf16 matrix products for mixed-precision training: operands rounded to bfloat16 (8 bits of
//! mantissa), products summed in fp32. The weights, their gradients and the optimiser state stay
//! fp32 ([`Precision`] only changes how the big products inside the fused ops are computed).
//!
//! One kernel shape serves the output layer's three products (logits, the hidden states'
//! gradient, the weight gradient): `out (m × cols) = A (m × inner) · B (inner × cols)`, with B
//! packed once per product into panels of 16 columns holding *pairs* of bf16 along the inner
//! dimension ([`PackedBf16`]) and A given as pairs too ([`PairRows`]). That is the operand
//! layout of AVX-512 BF16's `vdpbf16ps`, which adds two bf16 products to each of 16 fp32 lanes —
//! twice the multiply-adds of an fp32 FMA per instruction. Where the CPU lacks it (or the kernel
//! level is capped below AVX-512, see [`kernels::with_level`]), a portable kernel does the same
//! arithmetic with fp32 multiply-adds: a product of two bf16 values is exact in fp32, so it
//! differs from `vdpbf16ps` only in the order of roundings of the running sum.
//!
//! Rounding is to nearest, ties to even; denormals become signed zeros (what `vdpbf16ps` does
//! with denormal inputs anyway).
//!
//! At the AMX level ([`Level::Amx`]) the products run on AMX tiles (`tdpbf16ps`: a 16 × 16 fp32
//! tile plus a 16 × 32 bf16 tile times a 16 pair-rows × 16 tile, 8,192 multiply-adds per
//! instruction). B's panels are already the tile's B layout (16 pair-rows of 16 lanes, 64 bytes
//! apart); A's rows are copied into a zero-padded buffer of 16-pair rows per block of rows
//! ([`amx`]) unless they already are rows of whole tile rows, and the sums stay in the tiles over
//! a block of the inner dimension. The transposed operands ([`columns_operand`], the weight
//! gradients' A) are made as rows of pairs for that reason.

use std::sync::Mutex;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::kernels::{self, Level};

/// How the large matrix products of training are computed.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// fp32 operands and sums.
    #[default]
    Fp32,
    /// bf16 operands, fp32 sums (fp32 master weights, gradients and Adam state).
    Bf16,
}

impl std::str::FromStr for Precision {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "fp32" | "f32" => Ok(Precision::Fp32),
            "bf16" => Ok(Precision::Bf16),
            _ => Err(format!("unknown precision `{s}` (expected bf16 or fp32)")),
        }
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Precision::Fp32 => "fp32",
            Precision::Bf16 => "bf16",
        })
    }
}

/// Which bf16 product kernel runs at the active kernel level: AMX tiles at the AMX level,
/// `vdpbf16ps` at the AVX-512 level on a CPU with AVX-512 BF16, the portable one otherwise.
pub fn kernel_name() -> &'static str {
    match Path::at(kernels::active_level()) {
        Path::Amx => "amx-bf16",
        Path::Dpbf16 => "avx512-bf16",
        Path::Portable => "portable",
    }
}

/// Whether the bf16 products run on AMX tiles at the active kernel level: the one bf16 kernel
/// clearly faster than the fp32 tile for small products (on Sapphire Rapids `vdpbf16ps` made
/// 257 recurrences slower than fp32, 26.7 against 16.5 ms; the portable kernel only emulates).
pub fn fast_kernel() -> bool {
    Path::at(kernels::active_level()) == Path::Amx
}

/// The product kernel a level runs.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Path {
    Portable,
    Dpbf16,
    Amx,
}

impl Path {
    fn at(level: Level) -> Path {
        if level.amx() {
            Path::Amx
        } else if has_dpbf16(level) {
            Path::Dpbf16
        } else {
            Path::Portable
        }
    }

    /// Rows of the output per rayon task for a product of `m` rows: the AVX-512 tile's rows
    /// times 8; for AMX, blocks of whole pairs of row tiles as large as the kernel's cache
    /// blocking takes, in a multiple of the threads' number of tasks (each task streams B's
    /// panels once).
    fn block_rows(self, m: usize) -> usize {
        match self {
            Path::Amx => {
                let threads = rayon::current_num_threads().max(1);
                let tasks = m.div_ceil(AMX_BLOCK_M).next_multiple_of(threads);
                m.div_ceil(tasks).next_multiple_of(2 * AMX_ROWS)
            }
            _ => BLOCK_ROWS,
        }
    }
}

/// Whether the `vdpbf16ps` kernel runs at `level` on this CPU.
fn has_dpbf16(level: Level) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        level.avx512() && std::arch::is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = level;
        false
    }
}

/// f32 → bf16 bits, rounded to nearest (ties to even); NaN stays a (quiet) NaN, denormals
/// become zeros of their sign.
#[inline(always)]
pub fn to_bf16(x: f32) -> u16 {
    let b = x.to_bits();
    let exponent = b & 0x7f80_0000;
    let rounded = if exponent == 0 {
        b & 0x8000_0000
    } else if exponent == 0x7f80_0000 {
        // inf stays inf; NaN keeps its top bits and is made quiet.
        if b & 0x007f_ffff != 0 {
            b | 0x0040_0000
        } else {
            b
        }
    } else {
        b.wrapping_add(0x7fff + ((b >> 16) & 1))
    };
    (rounded >> 16) as u16
}

/// bf16 bits → f32 (exact).
#[inline(always)]
pub fn from_bf16(h: u16) -> f32 {
    f32::from_bits((h as u32) << 16)
}

/// Two bf16 values in one word: `lo` in the low half (the first of the pair).
#[inline(always)]
fn pair(lo: f32, hi: f32) -> u32 {
    to_bf16(lo) as u32 | (to_bf16(hi) as u32) << 16
}

/// x rounded to bf16 and back: the value a bf16 product sees.
#[inline(always)]
pub fn round(x: f32) -> f32 {
    from_bf16(to_bf16(x))
}

kernels::dispatch! {
    /// Rows of `src` (`rows × width`, row-major) as bf16 pairs along the row: row r, pair q is
    /// (src[r][2q], src[r][2q+1]) at `out[r · ⌈width/2⌉ + q]`, an odd row's last pair padded
    /// with 0.
    fn pairs_along_rows(src: &[f32], width: usize, out: &mut [u32]) {
        let pairs = width.div_ceil(2);
        for (row, dst) in src.chunks_exact(width.max(1)).zip(out.chunks_exact_mut(pairs.max(1))) {
            let (full, rest) = row.split_at(width & !1);
            for (d, c) in dst.iter_mut().zip(full.chunks_exact(2)) {
                *d = pair(c[0], c[1]);
            }
            if let Some(&last) = rest.first() {
                dst[pairs - 1] = pair(last, 0.0);
            }
        }
    }
}

kernels::dispatch! {
    /// Two rows as bf16 pairs element by element: `out[c]` = (top[c], bottom[c]).
    fn pairs_of_rows(top: &[f32], bottom: &[f32], out: &mut [u32]) {
        for ((d, &a), &b) in out.iter_mut().zip(top).zip(bottom) {
            *d = pair(a, b);
        }
    }
}

/// The A operand: `m` rows of `pairs` bf16 pairs, row r's pair q at `data[r · row_stride + q ·
/// pair_stride]` (strides in pairs).
#[derive(Clone)]
pub struct PairRows<'a> {
    pub data: &'a [u32],
    pub rows: usize,
    pub pairs: usize,
    pub row_stride: usize,
    pub pair_stride: usize,
}

impl<'a> PairRows<'a> {
    /// The operand `rows_operand(a, rows, inner)` made: row i's pairs in a run of
    /// ⌈inner / 2⌉ words.
    pub fn by_rows(data: &'a [u32], rows: usize, inner: usize) -> Self {
        let pairs = inner.div_ceil(2);
        PairRows {
            data,
            rows,
            pairs,
            row_stride: pairs,
            pair_stride: 1,
        }
    }

    fn check(&self) {
        if self.rows == 0 || self.pairs == 0 {
            return;
        }
        let last = (self.rows - 1)
            .checked_mul(self.row_stride)
            .zip((self.pairs - 1).checked_mul(self.pair_stride))
            .and_then(|(a, b)| a.checked_add(b));
        assert!(
            matches!(last, Some(i) if i < self.data.len()),
            "bf16 product: lhs does not fit its slice"
        );
    }
}

/// f32 rows (`rows × width`, row-major) as the bf16 A operand of a product over `width`.
pub fn rows_operand(src: &[f32], rows: usize, width: usize) -> Pairs {
    assert_eq!(src.len(), rows * width, "bf16 rows operand size");
    let pairs = width.div_ceil(2);
    // Every pair is written below.
    let mut out = Pairs::uninit(rows * pairs);
    if rows * width >= 1 << 18 {
        let block = 64;
        out.par_chunks_mut(block * pairs)
            .zip(src.par_chunks(block * width))
            .for_each(|(o, s)| pairs_along_rows(s, width, o));
    } else {
        pairs_along_rows(src, width, &mut out);
    }
    out
}

/// The transpose of f32 rows (`rows × width`) as the bf16 A operand of a product over `rows`:
/// `width` rows of ⌈rows/2⌉ pairs, row c's pair p = (src[2p][c], src[2p+1][c]) at
/// `out[c · ⌈rows/2⌉ + p]` (a missing odd row reads as 0): the operand
/// [`PairRows::by_rows`]`(out, width, rows)`. Tasks take [`TRANSPOSED_PAIRS`] pairs of rows
/// each, make their pairs a piece of the columns at a time and write them transposed
/// ([`TransposedPairs`]).
pub fn columns_operand(src: &[f32], rows: usize, width: usize) -> Pairs {
    assert_eq!(src.len(), rows * width, "bf16 columns operand size");
    let pairs = rows.div_ceil(2);
    // Every pair is written below.
    let mut out = Pairs::uninit(pairs * width);
    let target = TransposedPairs::new(&mut out, width, pairs);
    let zeros = vec![0f32; TRANSPOSED_COLUMNS.min(width)];
    (0..pairs.div_ceil(TRANSPOSED_PAIRS))
        .into_par_iter()
        .for_each_init(
            || vec![0u32; TRANSPOSED_PAIRS * TRANSPOSED_COLUMNS.min(width)],
            |block, t| {
                let p0 = t * TRANSPOSED_PAIRS;
                let n = TRANSPOSED_PAIRS.min(pairs - p0);
                for c0 in (0..width).step_by(TRANSPOSED_COLUMNS) {
                    let w = TRANSPOSED_COLUMNS.min(width - c0);
                    for (k, dst) in block.chunks_exact_mut(w).take(n).enumerate() {
                        let r = 2 * (p0 + k);
                        let top = &src[r * width + c0..][..w];
                        let bottom = if r + 1 < rows {
                            &src[(r + 1) * width + c0..][..w]
                        } else {
                            &zeros[..w]
                        };
                        pairs_of_rows(top, bottom, dst);
                    }
                    // SAFETY: task t alone writes pairs p0..p0 + n (of every row).
                    unsafe { target.write(&block[..n * w], n, c0, p0) };
                }
            },
        );
    out
}

/// Pairs of rows per task where a columns operand is made, and columns per piece (a block of
/// 32 × 1024 pairs: 128 KB, in L2).
pub const TRANSPOSED_PAIRS: usize = 32;
pub const TRANSPOSED_COLUMNS: usize = 1024;

/// A columns operand (`width` rows of `pairs` pairs) being written by several tasks at once,
/// each its own range of pairs: [`TransposedPairs::write`] puts a block of pairs (pairs down,
/// columns across, as they are made) in place transposed — with 16 × 16 AVX-512 transposes
/// where the kernel level has them.
pub struct TransposedPairs<'a> {
    ptr: *mut u32,
    width: usize,
    pairs: usize,
    _out: std::marker::PhantomData<&'a mut [u32]>,
}

// SAFETY: writes go through `write`, whose callers promise disjoint ranges of pairs.
unsafe impl Send for TransposedPairs<'_> {}
unsafe impl Sync for TransposedPairs<'_> {}

impl<'a> TransposedPairs<'a> {
    pub fn new(out: &'a mut [u32], width: usize, pairs: usize) -> Self {
        assert_eq!(out.len(), width * pairs, "bf16 columns operand size");
        Self {
            ptr: out.as_mut_ptr(),
            width,
            pairs,
            _out: std::marker::PhantomData,
        }
    }

    /// `block` (n pairs-rows of w columns: block[k · w + j] is pair p0 + k of column c0 + j)
    /// written to rows c0..c0 + w, pairs p0..p0 + n.
    ///
    /// # Safety
    /// No other thread writes pairs p0..p0 + n of those rows meanwhile.
    pub unsafe fn write(&self, block: &[u32], n: usize, c0: usize, p0: usize) {
        let w = block.len() / n.max(1);
        assert!(
            block.len() == n * w && c0 + w <= self.width && p0 + n <= self.pairs,
            "bf16 columns operand: block outside"
        );
        let full_j = w / 16 * 16;
        // Pairs of the first full_j columns already written by the transposes.
        #[allow(unused_mut)]
        let mut done = 0;
        #[cfg(target_arch = "x86_64")]
        if kernels::active_level().avx512() {
            let full_k = n / 16 * 16;
            for k0 in (0..full_k).step_by(16) {
                for j0 in (0..full_j).step_by(16) {
                    // SAFETY: AVX-512F at this level; rows k0..k0 + 16 of the block, columns
                    // j0..j0 + 16, are inside it, and rows c0 + j0.. of the output hold pairs
                    // p0 + k0..p0 + k0 + 16 (asserted above); the caller owns those pairs.
                    unsafe {
                        transpose_16x16(
                            block.as_ptr().add(k0 * w + j0),
                            w,
                            self.ptr.add((c0 + j0) * self.pairs + p0 + k0),
                            self.pairs,
                        )
                    };
                }
            }
            done = full_k;
        }
        for j in 0..w {
            let first = if done > 0 && j < full_j { done } else { 0 };
            for k in first..n {
                // SAFETY: inside the output (asserted above); the caller owns these pairs.
                unsafe { *self.ptr.add((c0 + j) * self.pairs + p0 + k) = block[k * w + j] };
            }
        }
    }
}

/// dst row i (words `dst_stride` apart) = column i of the 16 × 16 block of words whose row j
/// starts at `src + j · src_stride`.
///
/// # Safety
/// AVX-512F; the 16 rows of 16 words at `src` readable, those at `dst` writable.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn transpose_16x16(src: *const u32, src_stride: usize, dst: *mut u32, dst_stride: usize) {
    use std::arch::x86_64::*;
    // SAFETY: the caller's.
    unsafe {
        let mut x = [_mm512_setzero_si512(); 16];
        for (j, v) in x.iter_mut().enumerate() {
            *v = _mm512_loadu_si512(src.add(j * src_stride) as *const _);
        }
        // Pairs of rows interleaved, then quads: u[4g + j] holds rows 4g..4g + 3 of columns
        // j, j + 4, j + 8, j + 12 in its four 128-bit lanes.
        let mut t = [_mm512_setzero_si512(); 16];
        for i in 0..8 {
            t[2 * i] = _mm512_unpacklo_epi32(x[2 * i], x[2 * i + 1]);
            t[2 * i + 1] = _mm512_unpackhi_epi32(x[2 * i], x[2 * i + 1]);
        }
        let mut u = [_mm512_setzero_si512(); 16];
        for g in 0..4 {
            u[4 * g] = _mm512_unpacklo_epi64(t[4 * g], t[4 * g + 2]);
            u[4 * g + 1] = _mm512_unpackhi_epi64(t[4 * g], t[4 * g + 2]);
            u[4 * g + 2] = _mm512_unpacklo_epi64(t[4 * g + 1], t[4 * g + 3]);
            u[4 * g + 3] = _mm512_unpackhi_epi64(t[4 * g + 1], t[4 * g + 3]);
        }
        for j in 0..4 {
            let v = _mm512_shuffle_i32x4::<0x88>(u[j], u[4 + j]);
            let w = _mm512_shuffle_i32x4::<0x88>(u[8 + j], u[12 + j]);
            let v2 = _mm512_shuffle_i32x4::<0xdd>(u[j], u[4 + j]);
            let w2 = _mm512_shuffle_i32x4::<0xdd>(u[8 + j], u[12 + j]);
            for (column, row) in [
                (j, _mm512_shuffle_i32x4::<0x88>(v, w)),
                (j + 4, _mm512_shuffle_i32x4::<0x88>(v2, w2)),
                (j + 8, _mm512_shuffle_i32x4::<0xdd>(v, w)),
                (j + 12, _mm512_shuffle_i32x4::<0xdd>(v2, w2)),
            ] {
                _mm512_storeu_si512(dst.add(column * dst_stride) as *mut _, row);
            }
        }
    }
}

/// Columns per panel: one 512-bit register of f32 sums.
const PANEL: usize = 16;
/// Panels per micro-tile and rows per micro-tile: 4 × 6 = 24 accumulators.
const TILE_PANELS: usize = 4;
const TILE_ROWS: usize = 6;
const TILE_COLS: usize = PANEL * TILE_PANELS;
/// Rows whose tiles share one pass over a column group of B (B's group stays in cache).
const BLOCK_ROWS: usize = 8 * TILE_ROWS;

/// Rows of a product of `m` rows that [`PackedBf16::matmul`] gives one task at the active
/// kernel level: a caller splitting the rows itself (to use each block's output while it is in
/// cache) splits them so.
pub fn block_rows(m: usize) -> usize {
    Path::at(kernels::active_level()).block_rows(m)
}
/// Pairs of the inner dimension per pass (a group of B: 64 KB).
const INNER_BLOCK: usize = 256;

/// Spare buffers of bf16 pairs, handed back by dropped [`PackedBf16`]s and [`Pairs`] and reused
/// by the next ones: a training step packs the same sizes every step, and fresh buffers of tens
/// of MB cost a zero fill (or page faults) each time. At most [`SPARE_BUFFERS`] are kept.
static SPARE: Mutex<Vec<Vec<u32>>> = Mutex::new(Vec::new());
const SPARE_BUFFERS: usize = 6;
/// Smaller buffers (a GRU step's operand) are cheap to allocate and are not kept.
const MIN_SPARE: usize = 1 << 14;

/// A buffer of `len` pairs whose contents are unspecified (left over from an earlier use, or
/// zeros): the caller writes every element.
fn take_buffer(len: usize) -> Vec<u32> {
    if len < MIN_SPARE {
        return vec![0u32; len];
    }
    let mut spare = SPARE.lock().unwrap_or_else(|e| e.into_inner());
    // The smallest spare that is large enough, and not far too large (a small request must
    // not hold on to the buffer a large one is about to ask for).
    let best = spare
        .iter()
        .enumerate()
        .filter(|(_, b)| b.capacity() >= len && b.capacity() / 4 <= len)
        .min_by_key(|(_, b)| b.capacity())
        .map(|(i, _)| i);
    let Some(i) = best else {
        drop(spare);
        return vec![0u32; len];
    };
    let mut buf = spare.swap_remove(i);
    drop(spare);
    if buf.len() > len {
        buf.truncate(len);
    } else {
        buf.resize(len, 0);
    }
    buf
}

fn give_back(buf: Vec<u32>) {
    if buf.capacity() < MIN_SPARE {
        return;
    }
    let mut spare = SPARE.lock().unwrap_or_else(|e| e.into_inner());
    spare.push(buf);
    if spare.len() > SPARE_BUFFERS {
        // Drop the smallest: the large ones are the ones worth keeping.
        let (i, _) = spare
            .iter()
            .enumerate()
            .min_by_key(|(_, b)| b.capacity())
            .expect("non-empty");
        spare.swap_remove(i);
    }
}

/// An operand buffer of bf16 pairs (a [`PairRows`]'s data) that goes back to the spare
/// buffers when dropped.
pub struct Pairs(Vec<u32>);

impl Pairs {
    /// `len` pairs with unspecified contents: the caller overwrites every one.
    pub fn uninit(len: usize) -> Self {
        Self(take_buffer(len))
    }
}

impl std::ops::Deref for Pairs {
    type Target = [u32];
    fn deref(&self) -> &[u32] {
        &self.0
    }
}

impl std::ops::DerefMut for Pairs {
    fn deref_mut(&mut self) -> &mut [u32] {
        &mut self.0
    }
}

impl Drop for Pairs {
    fn drop(&mut self) {
        give_back(std::mem::take(&mut self.0));
    }
}

/// The B operand (`inner × cols`) in bf16, packed for the tile: column group g (64 columns),
/// panel p, inner pair q, lane j: (B[2q][c], B[2q+1][c]) for c = 64g + 16p + j, zero past the
/// matrix. Each panel holds `pairs` rounded up to a multiple of 16 pair-rows (the rows past
/// `pairs` zero), so that an AMX tile of 16 pair-rows never reads past it.
pub struct PackedBf16 {
    cols: usize,
    pairs: usize,
    /// Pair-rows per panel: `pairs` rounded up to a multiple of [`PANEL_PAIRS`].
    panel_pairs: usize,
    groups: usize,
    panels: Vec<u32>,
}

/// Panels' pair-rows are a multiple of this (an AMX tile's 16 rows).
const PANEL_PAIRS: usize = 16;
/// Rows of an AMX A or C tile, and rows of the output the AMX kernel takes per block (a rayon
/// task's rows are sized from it).
const AMX_ROWS: usize = 16;
const AMX_BLOCK_M: usize = 64;

impl Drop for PackedBf16 {
    fn drop(&mut self) {
        give_back(std::mem::take(&mut self.panels));
    }
}

kernels::dispatch! {
    /// One column group of B (its four panels `panel_stride` apart, `width` ≤ 64 columns from
    /// c0) from rows of B that are contiguous along the columns (`c_stride` 1), row pair by row
    /// pair so that each reads a run of the rows: panel p, pair q, lane j = (B[2q][c], B[2q+1][c]) for
    /// c = c0 + 16p + j < c0 + width; the caller has zeroed the ragged panels.
    fn pack_group_by_rows(b: &[f32], depth: usize, panel_stride: usize, k_stride: usize, c0: usize, width: usize, group: &mut [u32]) {
        let pairs = depth.div_ceil(2);
        for q in 0..pairs {
            let lo = &b[2 * q * k_stride + c0..][..width];
            let hi = (2 * q + 1 < depth).then(|| &b[(2 * q + 1) * k_stride + c0..][..width]);
            for (p, start) in (0..width).step_by(PANEL).enumerate() {
                let n = (width - start).min(PANEL);
                let dst = &mut group[p * panel_stride + q * PANEL..][..n];
                let lo = &lo[start..start + n];
                match hi {
                    Some(hi) => {
                        for ((d, &x), &y) in dst.iter_mut().zip(lo).zip(&hi[start..start + n]) {
                            *d = pair(x, y);
                        }
                    }
                    None => {
                        for (d, &x) in dst.iter_mut().zip(lo) {
                            *d = pair(x, 0.0);
                        }
                    }
                }
            }
        }
    }
}

kernels::dispatch! {
    /// One panel of B from columns of B that are contiguous along the inner dimension
    /// (`k_stride` 1): column c0 + j's pairs converted in a row, then spread to lane j.
    fn pack_panel_by_columns(b: &[f32], depth: usize, c_stride: usize, c0: usize, valid: usize, panel: &mut [u32]) {
        let mut row = [0u32; 256];
        for j in 0..valid {
            let column = &b[(c0 + j) * c_stride..][..depth];
            for (chunk, p0) in column.chunks(2 * row.len()).zip((0..).step_by(row.len())) {
                let n = chunk.len().div_ceil(2);
                let (full, rest) = chunk.split_at(chunk.len() & !1);
                for (d, c) in row.iter_mut().zip(full.chunks_exact(2)) {
                    *d = pair(c[0], c[1]);
                }
                if let Some(&last) = rest.first() {
                    row[n - 1] = pair(last, 0.0);
                }
                for (q, &x) in row[..n].iter().enumerate() {
                    panel[(p0 + q) * PANEL + j] = x;
                }
            }
        }
    }
}

impl PackedBf16 {
    /// Packs B given by element (k, c) at `b[k · k_stride + c · c_stride]`.
    pub fn new(b: &[f32], inner: usize, cols: usize, k_stride: usize, c_stride: usize) -> Self {
        if inner > 0 && cols > 0 {
            let last = (inner - 1)
                .checked_mul(k_stride)
                .zip((cols - 1).checked_mul(c_stride))
                .and_then(|(a, b)| a.checked_add(b));
            assert!(
                matches!(last, Some(i) if i < b.len()),
                "bf16 product: rhs does not fit its slice"
            );
        }
        let pairs = inner.div_ceil(2);
        let panel_pairs = pairs.next_multiple_of(PANEL_PAIRS);
        let groups = cols.div_ceil(TILE_COLS);
        // Every element is written below (lanes past the matrix and pair-rows past `pairs` as
        // zeros).
        let mut panels = take_buffer(groups * TILE_PANELS * panel_pairs * PANEL);
        let panel_len = panel_pairs * PANEL;
        // One column group (four panels) per task.
        let fill = |(g, group): (usize, &mut [u32])| {
            let c0 = g * TILE_COLS;
            let width = TILE_COLS.min(cols - c0);
            for (p, panel) in group.chunks_mut(panel_len.max(1)).enumerate() {
                if p * PANEL + PANEL > width {
                    panel.fill(0);
                } else {
                    panel[pairs * PANEL..].fill(0);
                }
            }
            if c_stride == 1 {
                pack_group_by_rows(b, inner, panel_len, k_stride, c0, width, group);
                return;
            }
            for (p, panel) in group.chunks_mut(panel_len.max(1)).enumerate() {
                let c0 = c0 + p * PANEL;
                let valid = PANEL.min(cols.saturating_sub(c0));
                if valid == 0 {
                    continue;
                }
                if k_stride == 1 {
                    pack_panel_by_columns(b, inner, c_stride, c0, valid, panel);
                    continue;
                }
                for j in 0..valid {
                    let c = (c0 + j) * c_stride;
                    for q in 0..pairs {
                        let k = 2 * q;
                        let lo = b[k * k_stride + c];
                        let hi = if k + 1 < inner {
                            b[(k + 1) * k_stride + c]
                        } else {
                            0.0
                        };
                        panel[q * PANEL + j] = pair(lo, hi);
                    }
                }
            }
        };
        let group_len = (TILE_PANELS * panel_len).max(1);
        if inner * cols >= 1 << 18 {
            panels.par_chunks_mut(group_len).enumerate().for_each(fill);
        } else {
            panels.chunks_mut(group_len).enumerate().for_each(fill);
        }
        Self {
            cols,
            pairs,
            panel_pairs,
            groups,
            panels,
        }
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    /// out (a.rows × cols, row-major) = A · B, A's row blocks spread over rayon's threads.
    pub fn matmul(&self, a: &PairRows, out: &mut [f32]) {
        self.matmul_strided(a, out, self.cols, false)
    }

    /// A · B written to (or, with `accumulate`, added to) row i's columns
    /// `out[i · out_stride..][..cols]` (`out` holds a.rows rows of `out_stride`), A's row blocks
    /// spread over rayon's threads; the rest of each row is untouched.
    pub fn matmul_strided(
        &self,
        a: &PairRows,
        out: &mut [f32],
        out_stride: usize,
        accumulate: bool,
    ) {
        assert_eq!(out.len(), a.rows * out_stride, "bf16 product: output size");
        if self.cols == 0 || a.rows == 0 {
            return;
        }
        let path = Path::at(kernels::active_level());
        let block_rows = path.block_rows(a.rows);
        out.par_chunks_mut(block_rows * out_stride)
            .enumerate()
            .for_each(|(i, block)| {
                let rows = block.len() / out_stride;
                self.block(a, i * block_rows, rows, block, out_stride, accumulate, path)
            });
    }

    /// The rows `r0..` of A · B that `out` (rows × cols) holds, on this thread.
    pub fn matmul_rows(&self, a: &PairRows, r0: usize, out: &mut [f32]) {
        let rows = out.len() / self.cols.max(1);
        assert_eq!(out.len(), rows * self.cols, "bf16 product: output size");
        self.matmul_rows_strided(a, r0, rows, out, self.cols, false)
    }

    /// Rows `r0..r0 + rows` of A · B written to (or, with `accumulate`, added to) row i's
    /// columns `out[i · out_stride..][..cols]`, on this thread; the rest of `out` is untouched.
    pub fn matmul_rows_strided(
        &self,
        a: &PairRows,
        r0: usize,
        rows: usize,
        out: &mut [f32],
        out_stride: usize,
        accumulate: bool,
    ) {
        self.block(
            a,
            r0,
            rows,
            out,
            out_stride,
            accumulate,
            Path::at(kernels::active_level()),
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn block(
        &self,
        a: &PairRows,
        r0: usize,
        rows: usize,
        out: &mut [f32],
        out_stride: usize,
        accumulate: bool,
        path: Path,
    ) {
        assert_eq!(a.pairs, self.pairs, "bf16 product: inner sizes differ");
        a.check();
        assert!(r0 + rows <= a.rows, "bf16 product: rows outside the lhs");
        if rows == 0 || self.cols == 0 {
            return;
        }
        assert!(
            out_stride >= self.cols
                && (rows - 1)
                    .checked_mul(out_stride)
                    .and_then(|x| x.checked_add(self.cols))
                    .is_some_and(|end| end <= out.len()),
            "bf16 product: output does not fit its slice"
        );
        if self.pairs == 0 {
            if !accumulate {
                for r in 0..rows {
                    out[r * out_stride..][..self.cols].fill(0.0);
                }
            }
            return;
        }
        let panel_stride = self.panel_pairs * PANEL;
        #[cfg(target_arch = "x86_64")]
        if path == Path::Amx {
            // SAFETY: the AMX path is only chosen where the CPU has AMX-TILE and AMX-BF16 and
            // the OS granted the tile state; the assertions above bound A, and `amx::block`
            // checks the rest.
            unsafe {
                amx::block(
                    &self.panels,
                    panel_stride,
                    self.cols,
                    a,
                    r0,
                    rows,
                    out,
                    out_stride,
                    accumulate,
                )
            };
            return;
        }
        let dpbf16 = path == Path::Dpbf16;
        for q0 in (0..self.pairs).step_by(INNER_BLOCK) {
            let q1 = (q0 + INNER_BLOCK).min(self.pairs);
            // The first inner block writes the sums, later ones add to them.
            let add = accumulate || q0 > 0;
            for g in 0..self.groups {
                let w =
                    &self.panels[g * TILE_PANELS * panel_stride..][..TILE_PANELS * panel_stride];
                let c0 = g * TILE_COLS;
                let cols = TILE_COLS.min(self.cols - c0);
                for t0 in (0..rows).step_by(TILE_ROWS) {
                    let n = TILE_ROWS.min(rows - t0);
                    let first = (r0 + t0) * a.row_stride;
                    let lhs = &a.data[first..];
                    let dst = &mut out[t0 * out_stride + c0..];
                    tile_product(
                        lhs,
                        a.row_stride,
                        a.pair_stride,
                        n,
                        w,
                        panel_stride,
                        q0,
                        q1,
                        dst,
                        out_stride,
                        cols,
                        add,
                        dpbf16,
                    );
                }
            }
        }
    }
}

/// out[r][c] (+)= Σ_{q0 ≤ q < q1} A[r][q] · W[q][c] for the first `rows` rows and `cols`
/// columns, A's pair (r, q) at `a[r · rs + q · qs]`, W's four panels `panel_stride` apart,
/// out's element (r, c) at `out[r · out_stride + c]`; with `add` the sums are added to what
/// `out` holds, otherwise they replace it.
#[allow(clippy::too_many_arguments)]
fn tile_product(
    a: &[u32],
    rs: usize,
    qs: usize,
    rows: usize,
    w: &[u32],
    panel_stride: usize,
    q0: usize,
    q1: usize,
    out: &mut [f32],
    out_stride: usize,
    cols: usize,
    add: bool,
    dpbf16: bool,
) {
    assert!(rows <= TILE_ROWS && q0 <= q1 && cols <= TILE_COLS);
    if rows == 0 || cols == 0 {
        return;
    }
    // Bounds of every read and write below.
    assert!(
        (rows - 1) * out_stride + cols <= out.len(),
        "bf16 tile: output"
    );
    if q0 < q1 {
        assert!((rows - 1) * rs + (q1 - 1) * qs < a.len(), "bf16 tile: lhs");
        assert!(
            (TILE_PANELS - 1) * panel_stride + q1 * PANEL <= w.len(),
            "bf16 tile: rhs"
        );
    }
    #[cfg(target_arch = "x86_64")]
    if dpbf16 {
        // SAFETY: `dpbf16` is only true where the CPU has AVX-512F and AVX-512 BF16; the
        // assertions above bound every load and store (lanes past `cols` are masked off).
        unsafe {
            let f = match rows {
                1 => tile_dpbf16::<1>,
                2 => tile_dpbf16::<2>,
                3 => tile_dpbf16::<3>,
                4 => tile_dpbf16::<4>,
                5 => tile_dpbf16::<5>,
                _ => tile_dpbf16::<TILE_ROWS>,
            };
            f(
                a,
                rs,
                qs,
                w,
                panel_stride,
                q0,
                q1,
                out,
                out_stride,
                cols,
                add,
            );
        }
        return;
    }
    let _ = dpbf16;
    let mut tile = [0f32; TILE_ROWS * TILE_COLS];
    if add {
        for r in 0..rows {
            tile[r * TILE_COLS..][..cols].copy_from_slice(&out[r * out_stride..][..cols]);
        }
    }
    if q0 < q1 {
        tile_portable(a, rs, qs, rows, w, panel_stride, q0, q1, &mut tile);
    }
    for r in 0..rows {
        out[r * out_stride..][..cols].copy_from_slice(&tile[r * TILE_COLS..][..cols]);
    }
}

kernels::dispatch! {
    /// The portable tile: per pair, the high product then the low one added to the fp32 sum
    /// (`vdpbf16ps`'s order on Intel); each product of two bf16 values is exact in fp32.
    fn tile_portable(a: &[u32], rs: usize, qs: usize, rows: usize, w: &[u32], panel_stride: usize, q0: usize, q1: usize, tile: &mut [f32; TILE_ROWS * TILE_COLS]) {
        for r in 0..rows {
            let acc = &mut tile[r * TILE_COLS..(r + 1) * TILE_COLS];
            for q in q0..q1 {
                let av = a[r * rs + q * qs];
                let (lo, hi) = (from_bf16(av as u16), from_bf16((av >> 16) as u16));
                for p in 0..TILE_PANELS {
                    let wq = &w[p * panel_stride + q * PANEL..][..PANEL];
                    let acc = &mut acc[p * PANEL..(p + 1) * PANEL];
                    for j in 0..PANEL {
                        let x = wq[j];
                        let s = acc[j] + hi * from_bf16((x >> 16) as u16);
                        acc[j] = s + lo * from_bf16(x as u16);
                    }
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn tile_dpbf16<const R: usize>(
    a: &[u32],
    rs: usize,
    qs: usize,
    w: &[u32],
    panel_stride: usize,
    q0: usize,
    q1: usize,
    out: &mut [f32],
    out_stride: usize,
    cols: usize,
    add: bool,
) {
    use std::arch::x86_64::*;
    let (a_ptr, w_ptr, o_ptr) = (a.as_ptr(), w.as_ptr(), out.as_mut_ptr());
    // Lanes of each panel inside the output's `cols` columns.
    let mut masks = [0u16; TILE_PANELS];
    for (p, m) in masks.iter_mut().enumerate() {
        let valid = cols.saturating_sub(p * PANEL).min(PANEL);
        *m = ((1u32 << valid) - 1) as u16;
    }
    let mut acc = [[_mm512_setzero_ps(); TILE_PANELS]; R];
    if add {
        for (r, acc_r) in acc.iter_mut().enumerate() {
            for (p, v) in acc_r.iter_mut().enumerate() {
                if masks[p] != 0 {
                    *v = _mm512_maskz_loadu_ps(
                        masks[p],
                        o_ptr.wrapping_add(r * out_stride + p * PANEL),
                    );
                }
            }
        }
    }
    for q in q0..q1 {
        let wq = w_ptr.add(q * PANEL);
        let w0: __m512bh = std::mem::transmute(_mm512_loadu_si512(wq as *const _));
        let w1: __m512bh =
            std::mem::transmute(_mm512_loadu_si512(wq.add(panel_stride) as *const _));
        let w2: __m512bh =
            std::mem::transmute(_mm512_loadu_si512(wq.add(2 * panel_stride) as *const _));
        let w3: __m512bh =
            std::mem::transmute(_mm512_loadu_si512(wq.add(3 * panel_stride) as *const _));
        for (r, acc_r) in acc.iter_mut().enumerate() {
            let av: __m512bh =
                std::mem::transmute(_mm512_set1_epi32(*a_ptr.add(r * rs + q * qs) as i32));
            acc_r[0] = _mm512_dpbf16_ps(acc_r[0], av, w0);
            acc_r[1] = _mm512_dpbf16_ps(acc_r[1], av, w1);
            acc_r[2] = _mm512_dpbf16_ps(acc_r[2], av, w2);
            acc_r[3] = _mm512_dpbf16_ps(acc_r[3], av, w3);
        }
    }
    for (r, acc_r) in acc.iter().enumerate() {
        for (p, v) in acc_r.iter().enumerate() {
            if masks[p] == u16::MAX {
                _mm512_storeu_ps(o_ptr.add(r * out_stride + p * PANEL), *v);
            } else if masks[p] != 0 {
                _mm512_mask_storeu_ps(o_ptr.wrapping_add(r * out_stride + p * PANEL), masks[p], *v);
            }
        }
    }
}

/// The AMX tile kernel: 32 × 32 blocks of the output (four C tiles), each summed over the whole
/// inner dimension from two A tiles (rows of a zero-padded copy of A) and two B tiles (two of
/// B's panels, already in the tile layout).
#[cfg(target_arch = "x86_64")]
mod amx {
    use std::arch::asm;
    use std::cell::RefCell;

    use super::{PairRows, PANEL, PANEL_PAIRS, TILE_PANELS};

    /// Rows of an A or C tile.
    const ROWS: usize = super::AMX_ROWS;
    /// Pairs in a row of an A tile (64 bytes): one B tile's pair-rows.
    const PAIRS: usize = PANEL_PAIRS;
    /// Rows and columns of the output a call of [`tile_32x32`] computes.
    const EDGE: usize = 2 * ROWS;
    /// Rows of A copied at a time, and pairs of the inner dimension: 64 KB of A, 32 KB for two
    /// panels of B (chosen by timing the output layer's three products on a Sapphire Rapids
    /// core; the products are bound by memory, not by the tiles, and the choice moves them by
    /// ~20 %).
    const BLOCK_M: usize = super::AMX_BLOCK_M;
    const BLOCK_K: usize = 256;

    thread_local! {
        /// The current block's rows of A, padded with zeros to whole pairs of tiles.
        static LHS: RefCell<Vec<u32>> = const { RefCell::new(Vec::new()) };
    }

    /// out rows `r0..r0 + rows` (+)= A · B from B's panels (`panel_stride` words apart, four to
    /// a column group, pair-rows a multiple of 16, zero past the matrix), for `cols` columns.
    ///
    /// Blocked for the caches as GotoBLAS does: up to [`BLOCK_M`] rows of A times [`BLOCK_K`]
    /// pairs are copied into a tile-ready buffer (L2), and each pair of B's panels over those
    /// pairs (32 KB at most, L1) is multiplied by all of them before the next; sums of a later
    /// block of pairs are added to the output the earlier ones wrote.
    ///
    /// # Safety
    /// The CPU has AMX-TILE and AMX-BF16 and the OS granted the tile state; the caller checked
    /// that A holds rows `r0..r0 + rows` and that out holds `rows` rows of `out_stride` ≥ `cols`.
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn block(
        panels: &[u32],
        panel_stride: usize,
        cols: usize,
        a: &PairRows,
        r0: usize,
        rows: usize,
        out: &mut [f32],
        out_stride: usize,
        accumulate: bool,
    ) {
        let kp = a.pairs.next_multiple_of(PAIRS);
        assert_eq!(panel_stride, kp * PANEL, "bf16 tile: panel size");
        let groups = cols.div_ceil(PANEL * TILE_PANELS);
        assert!(
            panels.len() >= groups * TILE_PANELS * panel_stride,
            "bf16 tile: rhs"
        );
        assert!(
            rows > 0 && (rows - 1) * out_stride + cols <= out.len() && out_stride >= cols,
            "bf16 tile: output"
        );
        // A's rows as they are where each is a run of whole tile rows of pairs: only a ragged
        // last pair of row tiles is copied.
        let direct = a.pair_stride == 1 && a.pairs == kp;
        LHS.with_borrow_mut(|lhs| {
            let need = rows.min(BLOCK_M).next_multiple_of(EDGE) * kp.min(BLOCK_K);
            if lhs.len() < need {
                lhs.resize(need, 0);
            }
            let mut temp = [0f32; EDGE * EDGE];
            // The caller's promise: this CPU and OS give the process AMX.
            let _tiles = super::kernels::AmxTiles::configure();
            for m0 in (0..rows).step_by(BLOCK_M) {
                let m = (rows - m0).min(BLOCK_M);
                for k0 in (0..kp).step_by(BLOCK_K) {
                    let kc = (kp - k0).min(BLOCK_K);
                    if !direct {
                        copy_rows(a, r0 + m0, m, k0, kc, lhs);
                    }
                    let add = accumulate || k0 > 0;
                    for pc in (0..cols.div_ceil(PANEL)).step_by(2) {
                        // Panels pc and pc + 1 of the same column group (pc is even), from
                        // pair-row k0.
                        let b0 = pc * panel_stride + k0 * PANEL;
                        let b1 = b0 + panel_stride;
                        assert!(b1 + kc * PANEL <= panels.len());
                        let (b0, b1) = (panels[b0..].as_ptr(), panels[b1..].as_ptr());
                        let c0 = pc * PANEL;
                        let valid_cols = (cols - c0).min(EDGE);
                        for rt in (0..m).step_by(EDGE) {
                            let valid_rows = (m - rt).min(EDGE);
                            let (a0, a_stride) = if !direct {
                                (lhs[rt * kc..(rt + EDGE) * kc].as_ptr(), kc)
                            } else if valid_rows == EDGE {
                                let first = (r0 + m0 + rt) * a.row_stride + k0;
                                let end = first + (EDGE - 1) * a.row_stride + kc;
                                (a.data[first..end].as_ptr(), a.row_stride)
                            } else {
                                copy_rows(a, r0 + m0 + rt, valid_rows, k0, kc, lhs);
                                (lhs[..EDGE * kc].as_ptr(), kc)
                            };
                            let first = (m0 + rt) * out_stride + c0;
                            let steps = kc / PAIRS;
                            if valid_rows == EDGE && valid_cols == EDGE {
                                assert!(first + (EDGE - 1) * out_stride + EDGE <= out.len());
                                let c = out[first..].as_mut_ptr();
                                // SAFETY: A's 32 rows of kc pairs, B's two panels of kc
                                // pair-rows and the 32 × 32 output are inside their slices.
                                unsafe {
                                    tile_32x32(a0, a_stride, b0, b1, steps, c, out_stride, add)
                                };
                                continue;
                            }
                            if add {
                                for r in 0..valid_rows {
                                    temp[r * EDGE..][..valid_cols].copy_from_slice(
                                        &out[first + r * out_stride..][..valid_cols],
                                    );
                                }
                            }
                            let c = temp.as_mut_ptr();
                            // SAFETY: as above, the output being `temp`.
                            unsafe { tile_32x32(a0, a_stride, b0, b1, steps, c, EDGE, add) };
                            for r in 0..valid_rows {
                                out[first + r * out_stride..][..valid_cols]
                                    .copy_from_slice(&temp[r * EDGE..][..valid_cols]);
                            }
                        }
                    }
                }
            }
        });
    }

    /// A's rows `r0..r0 + m`, pairs `k0..k0 + kc`, into `lhs` as rows of kc pairs (zeros past
    /// A's pairs and past row m up to a whole pair of tiles): contiguous pairs row by row, any
    /// other strides word by word.
    fn copy_rows(a: &PairRows, r0: usize, m: usize, k0: usize, kc: usize, lhs: &mut [u32]) {
        let (pairs, rs, qs) = (a.pairs, a.row_stride, a.pair_stride);
        let data = a.data;
        let valid = pairs.saturating_sub(k0).min(kc);
        let padded = m.next_multiple_of(EDGE);
        let lhs = &mut lhs[..padded * kc];
        for (r, dst) in lhs.chunks_exact_mut(kc).take(m).enumerate() {
            let first = (r0 + r) * rs + k0 * qs;
            if qs == 1 {
                dst[..valid].copy_from_slice(&data[first..first + valid]);
            } else {
                for (q, d) in dst[..valid].iter_mut().enumerate() {
                    *d = data[first + q * qs];
                }
            }
            dst[valid..].fill(0);
        }
        lhs[m * kc..].fill(0);
    }

    /// C (32 × 32 at `c`, rows `c_stride` floats apart) (+)= A (32 rows at `a`, `a_stride`
    /// pairs apart) · B (panels `b0` and `b1`), over `steps` × 16 pairs. One asm block from
    /// the first tile instruction to the last, so no tile's contents are assumed to outlive
    /// an `asm!` (the tile registers are declared clobbered); the configuration is
    /// [`AmxTiles`](super::kernels::AmxTiles)'s.
    ///
    /// # Safety
    /// Tiles configured on this thread ([`AmxTiles`](super::kernels::AmxTiles)); every address
    /// named is readable (and C writable).
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    unsafe fn tile_32x32(
        a: *const u32,
        a_stride: usize,
        b0: *const u32,
        b1: *const u32,
        steps: usize,
        c: *mut f32,
        c_stride: usize,
        load: bool,
    ) {
        let sc = c_stride * 4;
        let c2 = c.wrapping_add(ROWS * c_stride);
        let a1 = a.wrapping_add(ROWS * a_stride);
        // SAFETY: the caller's. C's tiles are at c, c + 16, c2 and c2 + 16 floats (64 bytes).
        unsafe {
            asm!(
                "test {load:e}, {load:e}",
                "jz 2f",
                "tileloadd tmm0, [{c0} + {s}]",
                "tileloadd tmm1, [{c0} + {s} + 64]",
                "tileloadd tmm2, [{c2} + {s}]",
                "tileloadd tmm3, [{c2} + {s} + 64]",
                "jmp 3f",
                "2:",
                "tilezero tmm0",
                "tilezero tmm1",
                "tilezero tmm2",
                "tilezero tmm3",
                "3:",
                "test {steps}, {steps}",
                "jz 5f",
                "4:",
                "tileloadd tmm4, [{a0} + {sa}]",
                "tileloadd tmm6, [{b0} + {sb}]",
                "tdpbf16ps tmm0, tmm4, tmm6",
                "tileloadd tmm7, [{b1} + {sb}]",
                "tdpbf16ps tmm1, tmm4, tmm7",
                "tileloadd tmm5, [{a1} + {sa}]",
                "tdpbf16ps tmm2, tmm5, tmm6",
                "tdpbf16ps tmm3, tmm5, tmm7",
                "add {a0}, 64",
                "add {a1}, 64",
                "add {b0}, 1024",
                "add {b1}, 1024",
                "dec {steps}",
                "jnz 4b",
                "5:",
                "tilestored [{c0} + {s}], tmm0",
                "tilestored [{c0} + {s} + 64], tmm1",
                "tilestored [{c2} + {s}], tmm2",
                "tilestored [{c2} + {s} + 64], tmm3",
                load = in(reg) u32::from(load),
                c0 = in(reg) c,
                c2 = in(reg) c2,
                s = in(reg) sc,
                a0 = inout(reg) a => _,
                a1 = inout(reg) a1 => _,
                b0 = inout(reg) b0 => _,
                b1 = inout(reg) b1 => _,
                steps = inout(reg) steps => _,
                sa = in(reg) a_stride * 4,
                sb = in(reg) PANEL * 4,
                out("tmm0") _, out("tmm1") _, out("tmm2") _, out("tmm3") _,
                out("tmm4") _, out("tmm5") _, out("tmm6") _, out("tmm7") _,
                options(nostack)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, k: f32) -> Vec<f32> {
        (0..n)
            .map(|i| ((i as f32 * k).sin() + (i as f32 * k * 0.37).cos()) * 0.6)
            .collect()
    }

    #[test]
    fn rounding_is_to_nearest_even_and_keeps_specials() {
        assert_eq!(round(1.0), 1.0);
        // 1 + 2^-8 lies halfway between 1 and 1 + 2^-7: ties go to the even mantissa (1).
        assert_eq!(round(1.0 + 1.0 / 256.0), 1.0);
        assert_eq!(round(1.0 + 3.0 / 256.0), 1.0 + 4.0 / 256.0);
        assert_eq!(round(1.0 + 1.0 / 256.0 + 1e-6), 1.0 + 2.0 / 256.0);
        assert_eq!(round(-2.5), -2.5);
        assert!(round(f32::NAN).is_nan());
        assert_eq!(round(f32::INFINITY), f32::INFINITY);
        assert_eq!(
            round(f32::MAX),
            f32::INFINITY,
            "rounds up past the largest bf16"
        );
        assert_eq!(round(1e-40).to_bits(), 0);
        assert_eq!(round(-1e-40).to_bits(), 0x8000_0000);
        for x in values(1000, 0.7) {
            assert!((round(x) - x).abs() <= x.abs() / 256.0, "{x}");
        }
        assert_eq!("BF16".parse::<Precision>(), Ok(Precision::Bf16));
        assert!("fp8".parse::<Precision>().unwrap_err().contains("fp8"));
    }

    /// A · B in f64 from the bf16-rounded operands: what every kernel computes, up to the
    /// rounding of its fp32 sums.
    /// Also returns Σ|a·b| per element, which bounds the sums' rounding error.
    fn reference(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> (Vec<f32>, Vec<f32>) {
        let mut out = vec![0f32; m * n];
        let mut scale = vec![0f32; m * n];
        for r in 0..m {
            for c in 0..n {
                let terms = (0..k).map(|i| round(a[r * k + i]) as f64 * round(b[i * n + c]) as f64);
                out[r * n + c] = terms.clone().sum::<f64>() as f32;
                scale[r * n + c] = terms.map(f64::abs).sum::<f64>() as f32;
            }
        }
        (out, scale)
    }

    /// Both operand layouts, ragged sizes (odd inner size, rows and columns off the tiles,
    /// more than one inner block), against the bf16 reference at every kernel level — the
    /// `vdpbf16ps` kernel where this CPU has it, the portable one at every level — and against
    /// the fp32 product within bf16's precision.
    #[test]
    fn products_match_the_reference_at_every_level() {
        let (m, k, n) = (53, 2 * INNER_BLOCK + 37, 70);
        let a = values(m * k, 0.013);
        let b = values(k * n, 0.029);
        let (expected, scale) = reference(&a, &b, m, k, n);
        let a_t: Vec<f32> = (0..k * m).map(|i| a[(i % m) * k + i / m]).collect();
        let mut kernels_seen = Vec::new();
        let mut per_level = Vec::new();
        for level in kernels::available_levels() {
            kernels::with_level(level, || {
                kernels_seen.push(kernel_name());
                let packed = PackedBf16::new(&b, k, n, n, 1);
                let rows = rows_operand(&a, m, k);
                let by_rows = PairRows::by_rows(&rows, m, k);
                let mut out = vec![f32::NAN; m * n];
                packed.matmul(&by_rows, &mut out);
                // The same product with A given transposed (pairs down the columns of Aᵀ).
                let cols = columns_operand(&a_t, k, m);
                let by_cols = PairRows::by_rows(&cols, m, k);
                let mut out_t = vec![f32::NAN; m * n];
                packed.matmul(&by_cols, &mut out_t);
                // And Bᵀ given as the matrix with strides swapped.
                let b_t: Vec<f32> = (0..n * k).map(|i| b[(i % k) * n + i / k]).collect();
                let packed_t = PackedBf16::new(&b_t, k, n, 1, k);
                let mut out_bt = vec![f32::NAN; m * n];
                packed_t.matmul(&by_rows, &mut out_bt);
                for i in 0..m * n {
                    let e = expected[i];
                    for (what, g) in [("rows", out[i]), ("columns", out_t[i]), ("bt", out_bt[i])] {
                        assert!(
                            (g - e).abs() <= 1e-5 * scale[i] + 1e-6,
                            "{} ({}), {what}: element {i}: {g} vs {e}",
                            level.name(),
                            kernel_name()
                        );
                    }
                }
                per_level.push(out);
            });
        }
        assert!(kernels_seen.contains(&"portable"));
        if has_dpbf16(kernels::detected_level()) {
            assert!(kernels_seen.contains(&"avx512-bf16"));
        } else {
            eprintln!("no AVX-512 BF16 on this CPU: only the portable kernel ran");
        }
        if kernels::detected_level().amx() {
            assert!(kernels_seen.contains(&"amx-bf16"));
        } else {
            eprintln!("no AMX on this CPU (or not granted): the AMX kernel did not run");
        }
        // bf16 against the fp32 product: each operand carries a relative error ≤ 2^-9.
        for r in 0..m {
            for c in 0..n {
                let exact: f64 = (0..k)
                    .map(|i| a[r * k + i] as f64 * b[i * n + c] as f64)
                    .sum();
                let scale: f64 = (0..k)
                    .map(|i| (a[r * k + i] as f64 * b[i * n + c] as f64).abs())
                    .sum();
                let got = per_level[0][r * n + c] as f64;
                assert!(
                    (got - exact).abs() <= scale * 2.0 * 2f64.powi(-9) + 1e-5,
                    "({r}, {c}): {got} vs fp32 {exact}"
                );
            }
        }
    }

    #[test]
    fn matmul_rows_gives_the_rows_of_the_whole_product() {
        let (m, k, n) = (13, 9, 20);
        let a = values(m * k, 0.3);
        let b = values(k * n, 0.2);
        let packed = PackedBf16::new(&b, k, n, n, 1);
        let rows = rows_operand(&a, m, k);
        let op = PairRows {
            data: &rows,
            rows: m,
            pairs: 5,
            row_stride: 5,
            pair_stride: 1,
        };
        let mut whole = vec![0f32; m * n];
        packed.matmul(&op, &mut whole);
        let mut part = vec![0f32; 4 * n];
        packed.matmul_rows(&op, 7, &mut part);
        assert_eq!(part[..], whole[7 * n..11 * n]);
    }

    /// `lhs` · `packed` written into strided rows (`stride` ≥ n) over `before`, added to them,
    /// and rows `from..` added to the first rows on this thread: within the sums' rounding of
    /// the reference (`expected`, `scale`: m × n), the rest of each row untouched, and the
    /// rows past m − from too. Returns the written product (`stride` per row).
    #[allow(clippy::too_many_arguments)]
    fn check_written_and_added(
        packed: &PackedBf16,
        lhs: &PairRows,
        (m, n, stride): (usize, usize, usize),
        expected: &[f32],
        scale: &[f32],
        before: &[f32],
        from: usize,
        what: &dyn Fn(usize, usize) -> String,
    ) -> Vec<f32> {
        let mut replaced = before.to_vec();
        packed.matmul_strided(lhs, &mut replaced, stride, false);
        let mut added = before.to_vec();
        packed.matmul_strided(lhs, &mut added, stride, true);
        let mut added_rows = before.to_vec();
        packed.matmul_rows_strided(lhs, from, m - from, &mut added_rows, stride, true);
        for r in 0..m {
            for c in 0..stride {
                let i = r * stride + c;
                if c >= n {
                    for got in [replaced[i], added[i], added_rows[i]] {
                        assert_eq!(got.to_bits(), before[i].to_bits(), "{}", what(r, c));
                    }
                    continue;
                }
                let tol = |j: usize| 1e-5 * (scale[j] + before[i].abs()) + 1e-6;
                let j = r * n + c;
                assert!(
                    (replaced[i] - expected[j]).abs() <= tol(j),
                    "{}",
                    what(r, c)
                );
                let e = before[i] + expected[j];
                assert!((added[i] - e).abs() <= tol(j), "{}: added", what(r, c));
                if r + from < m {
                    let j = (r + from) * n + c;
                    let e = before[i] + expected[j];
                    assert!(
                        (added_rows[i] - e).abs() <= tol(j),
                        "{}: rows from {from}",
                        what(r, c)
                    );
                } else {
                    assert_eq!(
                        added_rows[i].to_bits(),
                        before[i].to_bits(),
                        "{}",
                        what(r, c)
                    );
                }
            }
        }
        replaced
    }

    /// Products written into strided rows — replacing what is there or adding to it, the rest
    /// of each row untouched, over more than one inner block and ragged tiles — at every
    /// kernel level; the written product is the plain one's bits.
    #[test]
    fn strided_and_accumulated_products_match_the_plain_one() {
        let (m, k, n) = (53, 2 * INNER_BLOCK + 5, 83);
        let a = values(m * k, 0.017);
        let b = values(k * n, 0.031);
        let (expected, scale) = reference(&a, &b, m, k, n);
        let rows = rows_operand(&a, m, k);
        let op = PairRows::by_rows(&rows, m, k);
        let stride = n + 5;
        let before = values(m * stride, 0.7);
        for level in kernels::available_levels() {
            kernels::with_level(level, || {
                let packed = PackedBf16::new(&b, k, n, n, 1);
                let mut plain = vec![f32::NAN; m * n];
                packed.matmul(&op, &mut plain);
                let what = |r: usize, c: usize| {
                    format!("{} ({}), ({r}, {c})", level.name(), kernel_name())
                };
                let replaced = check_written_and_added(
                    &packed,
                    &op,
                    (m, n, stride),
                    &expected,
                    &scale,
                    &before,
                    3,
                    &what,
                );
                for r in 0..m {
                    for c in 0..n {
                        assert_eq!(replaced[r * stride + c], plain[r * n + c], "{}", what(r, c));
                    }
                }
            });
        }
    }

    /// B read with any strides (contiguous columns, contiguous rows, neither) and packed into
    /// a reused spare buffer whose old contents are NaNs: every element of the packing is
    /// written, so the product is the reference's, at every kernel level.
    #[test]
    fn packing_any_strides_into_a_reused_buffer_gives_the_product() {
        let (m, k, n) = (9, 301, 70);
        let a = values(m * k, 0.05);
        let b = values(k * n, 0.09);
        let (expected, scale) = reference(&a, &b, m, k, n);
        let b_t: Vec<f32> = (0..n * k).map(|i| b[(i % k) * n + i / k]).collect();
        let (ks, cs) = (2, 2 * k + 1);
        let mut strided = vec![f32::NAN; (n - 1) * cs + (k - 1) * ks + 1];
        for kk in 0..k {
            for c in 0..n {
                strided[kk * ks + c * cs] = b[kk * n + c];
            }
        }
        let rows = rows_operand(&a, m, k);
        let op = PairRows::by_rows(&rows, m, k);
        for level in kernels::available_levels() {
            kernels::with_level(level, || {
                for (src, ks, cs) in [(&b, n, 1), (&b_t, 1, k), (&strided, ks, cs)] {
                    // A spare of the right size full of NaN pairs (the packing is larger than
                    // MIN_SPARE, so it draws on the spares; padded pair-rows included: AMX
                    // multiplies them by A's zero pairs, and a NaN left there would spread).
                    // Another test may take the spare first: try again until this one does.
                    let len = 2 * TILE_COLS * k.div_ceil(2).next_multiple_of(PANEL_PAIRS);
                    let packed = (0..5)
                        .map(|_| {
                            give_back(vec![u32::MAX; len + 7]);
                            PackedBf16::new(src, k, n, ks, cs)
                        })
                        .find(|p| p.panels.capacity() == len + 7)
                        .expect("the packing took the spare full of NaNs");
                    let mut out = vec![f32::NAN; m * n];
                    packed.matmul(&op, &mut out);
                    for i in 0..m * n {
                        assert!(
                            (out[i] - expected[i]).abs() <= 1e-5 * scale[i] + 1e-6,
                            "{} ({}), strides ({ks}, {cs}): element {i}: {} vs {}",
                            level.name(),
                            kernel_name(),
                            out[i],
                            expected[i]
                        );
                    }
                }
            });
        }
    }

    /// Sizes that reach every branch of the AMX kernel — A's rows read in place (pairs a
    /// multiple of 16) and copied (the transposed operand, and rows of an odd length), a
    /// ragged last pair of row tiles, more than one block of rows and of pairs, whole and
    /// ragged 32 × 32 output blocks, sums replacing or added to strided rows, rows from an
    /// offset — against the reference, at every level (where AMX is absent the other kernels
    /// run the same sizes).
    #[test]
    fn every_branch_of_the_tile_kernels_matches_the_reference() {
        for (m, k, n) in [(150, 1024, 83), (97, 2 * 300 + 1, 64), (33, 32, 17)] {
            let a = values(m * k, 0.011);
            let b = values(k * n, 0.023);
            let (expected, scale) = reference(&a, &b, m, k, n);
            let a_t: Vec<f32> = (0..k * m).map(|i| a[(i % m) * k + i / m]).collect();
            let stride = n + 3;
            let before = values(m * stride, 0.5);
            let packed = PackedBf16::new(&b, k, n, n, 1);
            let rows = rows_operand(&a, m, k);
            // A with pair p of every row together (rows contiguous): the strided operand.
            let pairs = k.div_ceil(2);
            let strided: Vec<u32> = (0..pairs * m)
                .map(|i| rows[(i % m) * pairs + i / m])
                .collect();
            let strided = PairRows {
                data: &strided,
                rows: m,
                pairs,
                row_stride: 1,
                pair_stride: m,
            };
            for level in kernels::available_levels() {
                kernels::with_level(level, || {
                    // Pairs made from the transpose (16 × 16 transposes at AVX-512 and up,
                    // word by word below, ragged edges both ways) are A's rows.
                    let cols = columns_operand(&a_t, k, m);
                    assert_eq!(
                        cols[..],
                        rows[..],
                        "{}: the transpose's columns",
                        level.name()
                    );
                    let what = |op: &str, r: usize, c: usize| {
                        format!(
                            "{} ({}), {m}×{k}×{n} {op}: ({r}, {c})",
                            level.name(),
                            kernel_name()
                        )
                    };
                    for (op, lhs) in [
                        ("rows", PairRows::by_rows(&rows, m, k)),
                        ("strided", strided.clone()),
                    ] {
                        check_written_and_added(
                            &packed,
                            &lhs,
                            (m, n, stride),
                            &expected,
                            &scale,
                            &before,
                            5,
                            &|r, c| what(op, r, c),
                        );
                    }
                });
            }
        }
    }

    #[test]
    #[should_panic(expected = "lhs does not fit")]
    fn a_lhs_that_does_not_fit_is_refused() {
        let b = values(4 * 3, 0.2);
        let packed = PackedBf16::new(&b, 4, 3, 3, 1);
        let data = vec![0u32; 5];
        let op = PairRows {
            data: &data,
            rows: 3,
            pairs: 2,
            row_stride: 2,
            pair_stride: 1,
        };
        let mut out = vec![0f32; 9];
        packed.matmul(&op, &mut out);
    }
}
