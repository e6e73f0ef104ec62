//! A weight matrix packed once into the panels an AVX-512 micro-tile streams: `out = a · Wᵀ`
//! for a small batch of rows, step after step, without the general matrix product's repacking
//! of W on every call (the GRU's recurrent product, (B × H) · (H × 3H), runs once per word).
//!
//! Below AVX-512 callers use the general product instead; [`PackedMatrix::new`] returns `None`
//! there.

use rayon::prelude::*;

use super::kernels;

/// Output columns per panel: one 512-bit register of f32.
pub(crate) const PANEL: usize = 16;
/// Panels and rows per micro-tile: 3 × 8 = 24 accumulators.
pub(crate) const TILE_PANELS: usize = 3;
pub(crate) const TILE_ROWS: usize = 8;
pub(crate) const TILE_COLS: usize = PANEL * TILE_PANELS;

/// `W` (outputs × inner) in panels: panel p, inner index k, output j of the panel:
/// W[16p + j][k]; outputs padded with zeros to a multiple of [`TILE_COLS`].
pub(crate) struct PackedMatrix {
    outputs: usize,
    inner: usize,
    groups: usize,
    panels: Vec<f32>,
}

impl std::fmt::Debug for PackedMatrix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PackedMatrix({} × {})", self.outputs, self.inner)
    }
}

impl PackedMatrix {
    /// Packs the `outputs × inner` matrix whose row i starts at `w[i * row_stride]`, or returns
    /// `None` where the AVX-512 tile does not run.
    pub(crate) fn new(w: &[f32], outputs: usize, inner: usize, row_stride: usize) -> Option<Self> {
        if !kernels::active_level().avx512() {
            return None;
        }
        Some(Self::pack(w, outputs, inner, row_stride))
    }

    pub(crate) fn pack(w: &[f32], outputs: usize, inner: usize, row_stride: usize) -> Self {
        let groups = outputs.div_ceil(TILE_COLS);
        let mut panels = vec![0f32; groups * TILE_COLS * inner];
        let fill = |(p, panel): (usize, &mut [f32])| {
            for j in 0..PANEL.min(outputs.saturating_sub(p * PANEL)) {
                let o = p * PANEL + j;
                let row = &w[o * row_stride..o * row_stride + inner];
                for (k, &x) in row.iter().enumerate() {
                    panel[k * PANEL + j] = x;
                }
            }
        };
        // A large matrix (an output layer, packed every training step) is packed on every
        // thread; a GRU's recurrent block is not worth the hand-off.
        if outputs * inner >= 1 << 20 {
            panels
                .par_chunks_mut(PANEL * inner)
                .enumerate()
                .for_each(fill);
        } else {
            panels.chunks_mut(PANEL * inner).enumerate().for_each(fill);
        }
        Self {
            outputs,
            inner,
            groups,
            panels,
        }
    }

    /// out (m × outputs, row stride `out_stride`) = a (m × inner, row-major) · Wᵀ.
    pub(crate) fn matmul(&self, a: &[f32], m: usize, out: &mut [f32], out_stride: usize) {
        let k = self.inner;
        assert!(a.len() >= m * k, "packed matmul: lhs too short");
        assert!(
            m == 0 || out.len() >= (m - 1) * out_stride + self.outputs,
            "packed matmul: output too short"
        );
        let mut tile = [0f32; TILE_ROWS * TILE_COLS];
        for r0 in (0..m).step_by(TILE_ROWS) {
            let rows = TILE_ROWS.min(m - r0);
            let block = &a[r0 * k..(r0 + rows) * k];
            for g in 0..self.groups {
                let w = &self.panels[g * TILE_COLS * k..(g + 1) * TILE_COLS * k];
                float_tile_rows(block, w, k, &mut tile, rows);
                let c0 = g * TILE_COLS;
                let cols = TILE_COLS.min(self.outputs - c0);
                for r in 0..rows {
                    out[(r0 + r) * out_stride + c0..][..cols]
                        .copy_from_slice(&tile[r * TILE_COLS..r * TILE_COLS + cols]);
                }
            }
        }
    }
}

/// tile (8 × 48) = a (8 rows × k) · three panels of `w`: the AVX-512 kernel where the active
/// level has it, plain loops otherwise (the tests' reference).
pub(crate) fn float_tile(a: &[f32], w: &[f32], k: usize, tile: &mut [f32; TILE_ROWS * TILE_COLS]) {
    float_tile_rows(a, w, k, tile, TILE_ROWS)
}

/// [`float_tile`] for the first `rows` (≤ 8) rows only, reading only those rows of `a`: a
/// decoding step's single state does not pay for eight. Each row is the same sequence of
/// fused multiply-adds whatever the row count, so the values do not depend on it.
pub(crate) fn float_tile_rows(
    a: &[f32],
    w: &[f32],
    k: usize,
    tile: &mut [f32; TILE_ROWS * TILE_COLS],
    rows: usize,
) {
    assert!(rows <= TILE_ROWS && a.len() >= rows * k && w.len() >= TILE_PANELS * k * PANEL);
    if rows == 0 {
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if kernels::active_level().avx512() {
        // SAFETY: the level is only AVX-512 where the CPU has it; the assertion bounds the loads.
        unsafe {
            match rows {
                1 => float_tile_avx512::<1>(a, w, k, tile),
                2 => float_tile_avx512::<2>(a, w, k, tile),
                3 => float_tile_avx512::<3>(a, w, k, tile),
                4 => float_tile_avx512::<4>(a, w, k, tile),
                5 => float_tile_avx512::<5>(a, w, k, tile),
                6 => float_tile_avx512::<6>(a, w, k, tile),
                7 => float_tile_avx512::<7>(a, w, k, tile),
                _ => float_tile_avx512::<TILE_ROWS>(a, w, k, tile),
            }
        }
        return;
    }
    for r in 0..rows {
        for c in 0..TILE_COLS {
            let (p, j) = (c / PANEL, c % PANEL);
            tile[r * TILE_COLS + c] = (0..k)
                .map(|i| a[r * k + i] * w[(p * k + i) * PANEL + j])
                .sum();
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn float_tile_avx512<const R: usize>(
    a: &[f32],
    w: &[f32],
    k: usize,
    tile: &mut [f32; TILE_ROWS * TILE_COLS],
) {
    use std::arch::x86_64::*;
    let (a_ptr, w_ptr) = (a.as_ptr(), w.as_ptr());
    let stride = k * PANEL;
    let mut acc = [[_mm512_setzero_ps(); TILE_PANELS]; R];
    for i in 0..k {
        let w0 = _mm512_loadu_ps(w_ptr.add(i * PANEL));
        let w1 = _mm512_loadu_ps(w_ptr.add(stride + i * PANEL));
        let w2 = _mm512_loadu_ps(w_ptr.add(2 * stride + i * PANEL));
        for (r, acc_r) in acc.iter_mut().enumerate() {
            let av = _mm512_set1_ps(*a_ptr.add(r * k + i));
            acc_r[0] = _mm512_fmadd_ps(av, w0, acc_r[0]);
            acc_r[1] = _mm512_fmadd_ps(av, w1, acc_r[1]);
            acc_r[2] = _mm512_fmadd_ps(av, w2, acc_r[2]);
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

    #[test]
    fn packed_product_matches_the_plain_one_at_every_level() {
        // 11 rows (a full tile and a ragged one), 50 outputs (two groups, one ragged), inner 7
        // read from rows of stride 9.
        let (m, outputs, inner, stride) = (11, 50, 7, 9);
        let w: Vec<f32> = (0..outputs * stride)
            .map(|i| (i as f32 * 0.31).sin())
            .collect();
        let a: Vec<f32> = (0..m * inner).map(|i| (i as f32 * 0.17).cos()).collect();
        let expected: Vec<f32> = (0..m)
            .flat_map(|r| {
                let (a, w) = (&a, &w);
                (0..outputs).map(move |o| {
                    (0..inner)
                        .map(|k| a[r * inner + k] * w[o * stride + k])
                        .sum::<f32>()
                })
            })
            .collect();
        for level in kernels::available_levels() {
            kernels::with_level(level, || {
                let packed = PackedMatrix::pack(&w, outputs, inner, stride);
                let mut out = vec![f32::NAN; m * (outputs + 3)];
                packed.matmul(&a, m, &mut out, outputs + 3);
                for r in 0..m {
                    for o in 0..outputs {
                        let (g, e) = (out[r * (outputs + 3) + o], expected[r * outputs + o]);
                        assert!(
                            (g - e).abs() < 1e-5,
                            "{}: ({r}, {o}): {g} vs {e}",
                            level.name()
                        );
                    }
                    assert!(
                        out[r * (outputs + 3) + outputs].is_nan(),
                        "wrote past the row"
                    );
                }
                assert_eq!(
                    PackedMatrix::new(&w, outputs, inner, stride).is_some(),
                    level.avx512()
                );
            });
        }
    }
}
