//! The one general matrix product the hand-written CPU ops share (the GRU recurrence, the
//! linear and output-layer ops): `gemm` over strided f32 slices, bounds-checked before the
//! unsafe call, and the contiguous-f32 view of a candle storage those ops read.

use candle_core::{CpuStorage, Layout, Result};

/// Per-step recurrent products are too small to split across threads: the barrier costs more
/// than it saves (and far more when the machine is busy), so only large products go `parallel`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn sgemm(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    (dst_rs, dst_cs): (usize, usize),
    accumulate: bool,
    lhs: &[f32],
    (lhs_rs, lhs_cs): (usize, usize),
    rhs: &[f32],
    (rhs_rs, rhs_cs): (usize, usize),
    parallel: bool,
) {
    // Real asserts, not debug ones: three comparisons per product are nothing next to the
    // product itself, and release builds (the only ones we ship or test) must not read or write
    // out of bounds when a caller gets a stride wrong.
    assert_within(m, n, (dst_rs, dst_cs), dst.len(), "dst");
    assert_within(m, k, (lhs_rs, lhs_cs), lhs.len(), "lhs");
    assert_within(k, n, (rhs_rs, rhs_cs), rhs.len(), "rhs");
    let threads = candle_core::utils::get_num_threads();
    let parallelism = if parallel && threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the assertions above check that every element gemm reads or writes lies inside
    // its slice.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            dst_cs as isize,
            dst_rs as isize,
            accumulate,
            lhs.as_ptr(),
            lhs_cs as isize,
            lhs_rs as isize,
            rhs.as_ptr(),
            rhs_cs as isize,
            rhs_rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        )
    }
}

/// Panics unless a `rows × cols` matrix with strides `(rs, cs)` lies inside a slice of `len`
/// elements (an empty matrix always does). Overflow in the extent counts as out of bounds.
fn assert_within(rows: usize, cols: usize, (rs, cs): (usize, usize), len: usize, what: &str) {
    if rows == 0 || cols == 0 {
        return;
    }
    let last = (rows - 1)
        .checked_mul(rs)
        .and_then(|r| (cols - 1).checked_mul(cs).and_then(|c| r.checked_add(c)));
    assert!(
        matches!(last, Some(i) if i < len),
        "sgemm: {what} ({rows}x{cols}, strides {rs},{cs}) does not fit in {len} elements"
    );
}

pub(crate) fn contiguous_f32<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<&'a [f32]> {
    match (s, l.contiguous_offsets()) {
        (CpuStorage::F32(v), Some((a, b))) => Ok(&v[a..b]),
        _ => candle_core::bail!("gru: {what} must be a contiguous f32 tensor"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sgemm_multiplies_strided_operands() {
        // lhs 2x3 row-major, rhs 3x2 given column-major (strides 1,3).
        let lhs = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let rhs_t = [1.0, 0.0, 2.0, 0.0, 1.0, 1.0]; // columns (1,0,2) and (0,1,1)
        let mut dst = [10.0f32; 4];
        sgemm(
            2,
            2,
            3,
            &mut dst,
            (2, 1),
            true,
            &lhs,
            (3, 1),
            &rhs_t,
            (1, 3),
            false,
        );
        assert_eq!(dst, [17.0, 15.0, 26.0, 21.0]);
    }

    #[test]
    #[should_panic(expected = "sgemm: rhs")]
    fn sgemm_refuses_an_operand_that_does_not_fit() {
        let lhs = [0.0f32; 6];
        let rhs = [0.0f32; 5]; // a 3x2 matrix needs 6
        let mut dst = [0.0f32; 4];
        sgemm(
            2,
            2,
            3,
            &mut dst,
            (2, 1),
            false,
            &lhs,
            (3, 1),
            &rhs,
            (2, 1),
            false,
        );
    }

    #[test]
    #[should_panic(expected = "sgemm: dst")]
    fn sgemm_refuses_strides_whose_extent_overflows() {
        let lhs = [0.0f32; 6];
        let rhs = [0.0f32; 6];
        let mut dst = [0.0f32; 4];
        sgemm(
            2,
            2,
            3,
            &mut dst,
            (usize::MAX, 1),
            false,
            &lhs,
            (3, 1),
            &rhs,
            (2, 1),
            false,
        );
    }
}
