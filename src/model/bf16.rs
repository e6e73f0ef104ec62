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
//! with denormal inputs anyway). AMX tiles are not used: this code could not be run on a CPU
//! that has them.

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

/// Which bf16 product kernel runs at the active kernel level: `vdpbf16ps` at the AVX-512 level
/// on a CPU with AVX-512 BF16, the portable one otherwise.
pub fn kernel_name() -> &'static str {
    if has_dpbf16(kernels::active_level()) {
        "avx512-bf16"
    } else {
        "portable"
    }
}

/// Whether the `vdpbf16ps` kernel runs at `level` on this CPU.
fn has_dpbf16(level: Level) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        level == Level::Avx512 && std::arch::is_x86_feature_detected!("avx512bf16")
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
    /// Rows 2p and 2p+1 of `src` (`rows × width`) as bf16 pairs down the columns:
    /// `out[p · width + c]` = (src[2p][c], src[2p+1][c]) for the pair rows `p0..` that `out`
    /// holds; a missing odd row reads as 0.
    fn pairs_down_columns(src: &[f32], rows: usize, width: usize, p0: usize, out: &mut [u32]) {
        for (i, dst) in out.chunks_exact_mut(width.max(1)).enumerate() {
            let p = p0 + i;
            let top = &src[2 * p * width..][..width];
            if 2 * p + 1 < rows {
                let bottom = &src[(2 * p + 1) * width..][..width];
                for ((d, &a), &b) in dst.iter_mut().zip(top).zip(bottom) {
                    *d = pair(a, b);
                }
            } else {
                for (d, &a) in dst.iter_mut().zip(top) {
                    *d = pair(a, 0.0);
                }
            }
        }
    }
}

/// The A operand: `m` rows of `pairs` bf16 pairs, row r's pair q at `data[r · row_stride + q ·
/// pair_stride]` (strides in pairs).
pub struct PairRows<'a> {
    pub data: &'a [u32],
    pub rows: usize,
    pub pairs: usize,
    pub row_stride: usize,
    pub pair_stride: usize,
}

impl<'a> PairRows<'a> {
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
pub fn rows_operand(src: &[f32], rows: usize, width: usize) -> Vec<u32> {
    assert_eq!(src.len(), rows * width, "bf16 rows operand size");
    let pairs = width.div_ceil(2);
    let mut out = vec![0u32; rows * pairs];
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
/// `width` rows of ⌈rows/2⌉ pairs, row c's pair p at `out[p · width + c]` (row stride 1, pair
/// stride `width`).
pub fn columns_operand(src: &[f32], rows: usize, width: usize) -> Vec<u32> {
    assert_eq!(src.len(), rows * width, "bf16 columns operand size");
    let pairs = rows.div_ceil(2);
    let mut out = vec![0u32; pairs * width];
    let block = 8;
    out.par_chunks_mut(block * width.max(1))
        .enumerate()
        .for_each(|(b, o)| pairs_down_columns(src, rows, width, b * block, o));
    out
}

/// Columns per panel: one 512-bit register of f32 sums.
const PANEL: usize = 16;
/// Panels per micro-tile and rows per micro-tile: 4 × 6 = 24 accumulators.
const TILE_PANELS: usize = 4;
const TILE_ROWS: usize = 6;
const TILE_COLS: usize = PANEL * TILE_PANELS;
/// Rows whose tiles share one pass over a column group of B (B's group stays in cache).
pub const BLOCK_ROWS: usize = 8 * TILE_ROWS;
/// Pairs of the inner dimension per pass (a group of B: 64 KB).
const INNER_BLOCK: usize = 256;

/// The B operand (`inner × cols`) in bf16, packed for the tile: column group g (64 columns),
/// panel p, inner pair q, lane j: (B[2q][c], B[2q+1][c]) for c = 64g + 16p + j, zero past the
/// matrix.
pub struct PackedBf16 {
    cols: usize,
    pairs: usize,
    groups: usize,
    panels: Vec<u32>,
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
        let groups = cols.div_ceil(TILE_COLS);
        let mut panels = vec![0u32; groups * TILE_PANELS * pairs * PANEL];
        let fill = |(p, panel): (usize, &mut [u32])| {
            let c0 = p * PANEL;
            for j in 0..PANEL.min(cols.saturating_sub(c0)) {
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
        };
        if inner * cols >= 1 << 18 {
            panels
                .par_chunks_mut((pairs * PANEL).max(1))
                .enumerate()
                .for_each(fill);
        } else {
            panels
                .chunks_mut((pairs * PANEL).max(1))
                .enumerate()
                .for_each(fill);
        }
        Self {
            cols,
            pairs,
            groups,
            panels,
        }
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    /// out (a.rows × cols, row-major) = A · B, A's row blocks spread over rayon's threads.
    pub fn matmul(&self, a: &PairRows, out: &mut [f32]) {
        assert_eq!(out.len(), a.rows * self.cols, "bf16 product: output size");
        if self.cols == 0 {
            return;
        }
        let dpbf16 = has_dpbf16(kernels::active_level());
        out.par_chunks_mut(BLOCK_ROWS * self.cols)
            .enumerate()
            .for_each(|(i, block)| self.block(a, i * BLOCK_ROWS, block, dpbf16));
    }

    /// The rows `r0..` of A · B that `out` (rows × cols) holds, on this thread.
    pub fn matmul_rows(&self, a: &PairRows, r0: usize, out: &mut [f32]) {
        self.block(a, r0, out, has_dpbf16(kernels::active_level()))
    }

    fn block(&self, a: &PairRows, r0: usize, out: &mut [f32], dpbf16: bool) {
        assert_eq!(a.pairs, self.pairs, "bf16 product: inner sizes differ");
        a.check();
        let rows = out.len() / self.cols.max(1);
        assert!(r0 + rows <= a.rows, "bf16 product: rows outside the lhs");
        out.fill(0.0);
        if self.pairs == 0 {
            return;
        }
        let panel_stride = self.pairs * PANEL;
        let mut tile = [0f32; TILE_ROWS * TILE_COLS];
        for q0 in (0..self.pairs).step_by(INNER_BLOCK) {
            let q1 = (q0 + INNER_BLOCK).min(self.pairs);
            for g in 0..self.groups {
                let w =
                    &self.panels[g * TILE_PANELS * panel_stride..][..TILE_PANELS * panel_stride];
                let c0 = g * TILE_COLS;
                let cols = TILE_COLS.min(self.cols - c0);
                for t0 in (0..rows).step_by(TILE_ROWS) {
                    let n = TILE_ROWS.min(rows - t0);
                    for r in 0..n {
                        tile[r * TILE_COLS..][..cols]
                            .copy_from_slice(&out[(t0 + r) * self.cols + c0..][..cols]);
                    }
                    let first = (r0 + t0) * a.row_stride;
                    let lhs = &a.data[first..];
                    tile_product(
                        lhs,
                        a.row_stride,
                        a.pair_stride,
                        n,
                        w,
                        panel_stride,
                        q0,
                        q1,
                        &mut tile,
                        dpbf16,
                    );
                    for r in 0..n {
                        out[(t0 + r) * self.cols + c0..][..cols]
                            .copy_from_slice(&tile[r * TILE_COLS..][..cols]);
                    }
                }
            }
        }
    }
}

/// tile[r][c] += Σ_{q0 ≤ q < q1} A[r][q] · W[q][c] for the first `rows` rows, A's pair (r, q)
/// at `a[r · rs + q · qs]`, W's four panels `panel_stride` apart.
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
    tile: &mut [f32; TILE_ROWS * TILE_COLS],
    dpbf16: bool,
) {
    assert!(rows <= TILE_ROWS && q0 <= q1);
    if rows == 0 || q0 == q1 {
        return;
    }
    // Bounds of every read below.
    assert!((rows - 1) * rs + (q1 - 1) * qs < a.len(), "bf16 tile: lhs");
    assert!(
        (TILE_PANELS - 1) * panel_stride + q1 * PANEL <= w.len(),
        "bf16 tile: rhs"
    );
    #[cfg(target_arch = "x86_64")]
    if dpbf16 {
        // SAFETY: `dpbf16` is only true where the CPU has AVX-512F and AVX-512 BF16; the
        // assertions above bound every load.
        unsafe {
            match rows {
                1 => tile_dpbf16::<1>(a, rs, qs, w, panel_stride, q0, q1, tile),
                2 => tile_dpbf16::<2>(a, rs, qs, w, panel_stride, q0, q1, tile),
                3 => tile_dpbf16::<3>(a, rs, qs, w, panel_stride, q0, q1, tile),
                4 => tile_dpbf16::<4>(a, rs, qs, w, panel_stride, q0, q1, tile),
                5 => tile_dpbf16::<5>(a, rs, qs, w, panel_stride, q0, q1, tile),
                _ => tile_dpbf16::<TILE_ROWS>(a, rs, qs, w, panel_stride, q0, q1, tile),
            }
        }
        return;
    }
    let _ = dpbf16;
    tile_portable(a, rs, qs, rows, w, panel_stride, q0, q1, tile);
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
    tile: &mut [f32; TILE_ROWS * TILE_COLS],
) {
    use std::arch::x86_64::*;
    let (a_ptr, w_ptr) = (a.as_ptr(), w.as_ptr());
    let mut acc = [[_mm512_setzero_ps(); TILE_PANELS]; R];
    for (r, acc_r) in acc.iter_mut().enumerate() {
        for (p, v) in acc_r.iter_mut().enumerate() {
            *v = _mm512_loadu_ps(tile.as_ptr().add(r * TILE_COLS + p * PANEL));
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
            _mm512_storeu_ps(tile.as_mut_ptr().add(r * TILE_COLS + p * PANEL), *v);
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
                let by_rows = PairRows {
                    data: &rows,
                    rows: m,
                    pairs: k.div_ceil(2),
                    row_stride: k.div_ceil(2),
                    pair_stride: 1,
                };
                let mut out = vec![f32::NAN; m * n];
                packed.matmul(&by_rows, &mut out);
                // The same product with A given transposed (pairs down the columns of Aᵀ).
                let cols = columns_operand(&a_t, k, m);
                let by_cols = PairRows {
                    data: &cols,
                    rows: m,
                    pairs: k.div_ceil(2),
                    row_stride: 1,
                    pair_stride: m,
                };
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
