//! Fused operations where candle's stock composition is the bottleneck on CPU.
//!
//! `token_nll` replaces `log_softmax` + `gather`: the stock path makes five passes over the
//! (tokens × vocab) logits forward and as many again backward, each allocating a full-size
//! tensor. The fused op makes two passes forward and one backward (softmax − one-hot).
//! Other devices fall back to the stock composition, so the model still runs on CUDA.

use candle_core::{CpuStorage, CustomOp2, DType, Layout, Result, Shape, Tensor, D};
use rayon::prelude::*;

/// Negative log-likelihood of `targets` (N,) under `logits` (N, V), per row, shape (N,).
pub fn token_nll(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    if logits.device().is_cpu() && logits.dtype() == DType::F32 {
        logits
            .contiguous()?
            .apply_op2(&targets.contiguous()?, TokenNll)
    } else {
        let log_probs = candle_nn::ops::log_softmax(logits, D::Minus1)?;
        let picked = log_probs.gather(&targets.unsqueeze(1)?, 1)?.squeeze(1)?;
        picked.neg()
    }
}

struct TokenNll;

fn as_f32<'a>(s: &'a CpuStorage, l: &Layout) -> Result<&'a [f32]> {
    match (s, l.contiguous_offsets()) {
        (CpuStorage::F32(v), Some((a, b))) => Ok(&v[a..b]),
        _ => candle_core::bail!("token_nll expects contiguous f32 logits"),
    }
}

fn targets_u32(s: &CpuStorage, l: &Layout) -> Result<Vec<u32>> {
    let (a, b) = l
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg("token_nll expects contiguous targets".into()))?;
    Ok(match s {
        CpuStorage::U32(v) => v[a..b].to_vec(),
        CpuStorage::I64(v) => v[a..b].iter().map(|&x| x as u32).collect(),
        CpuStorage::U8(v) => v[a..b].iter().map(|&x| x as u32).collect(),
        _ => candle_core::bail!("token_nll expects integer targets"),
    })
}

/// Returns (max, log-sum-exp) of one row; two passes, numerically stable.
fn row_lse(row: &[f32]) -> (f32, f32) {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f32 = row.iter().map(|&x| (x - max).exp()).sum();
    (max, max + sum.ln())
}

impl CustomOp2 for TokenNll {
    fn name(&self) -> &'static str {
        "token-nll"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (n, v) = l1.shape().dims2()?;
        let logits = as_f32(s1, l1)?;
        let targets = targets_u32(s2, l2)?;
        if targets.len() != n {
            candle_core::bail!(
                "token_nll: {n} rows of logits but {} targets",
                targets.len()
            );
        }
        if let Some(&bad) = targets.iter().find(|&&t| t as usize >= v) {
            candle_core::bail!("token_nll: target id {bad} outside the vocabulary of {v}");
        }
        let out: Vec<f32> = logits
            .par_chunks(v)
            .zip(targets.par_iter())
            .map(|(row, &t)| row_lse(row).1 - row[t as usize])
            .collect();
        Ok((CpuStorage::F32(out), Shape::from(n)))
    }

    fn bwd(
        &self,
        logits: &Tensor,
        targets: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (n, v) = logits.dims2()?;
        let logits_v = logits.flatten_all()?.to_vec1::<f32>()?;
        let targets_v = targets.to_dtype(DType::U32)?.to_vec1::<u32>()?;
        let grad_v = grad_res.to_dtype(DType::F32)?.to_vec1::<f32>()?;
        let mut grad = vec![0f32; n * v];
        grad.par_chunks_mut(v)
            .zip(logits_v.par_chunks(v))
            .zip(targets_v.par_iter().zip(grad_v.par_iter()))
            .for_each(|((g_row, row), (&t, &g))| {
                let (_, lse) = row_lse(row);
                for (gi, &x) in g_row.iter_mut().zip(row) {
                    *gi = g * (x - lse).exp();
                }
                g_row[t as usize] -= g;
            });
        let grad = Tensor::from_vec(grad, (n, v), logits.device())?;
        Ok((Some(grad), None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn fused_nll_matches_stock_forward_and_backward() -> Result<()> {
        let dev = Device::Cpu;
        let vals: Vec<f32> = (0..5 * 7)
            .map(|i| ((i * 37 % 11) as f32 - 5.0) * 0.3)
            .collect();
        let x = Var::from_vec(vals, (5, 7), &dev)?;
        let t = Tensor::new(&[0u32, 3, 6, 2, 2], &dev)?;
        let w = Tensor::new(&[1f32, 0.5, 2.0, -1.0, 0.25], &dev)?;
        let fused = token_nll(x.as_tensor(), &t)?;
        let lsm = candle_nn::ops::log_softmax(x.as_tensor(), D::Minus1)?;
        let stock = lsm.gather(&t.unsqueeze(1)?, 1)?.squeeze(1)?.neg()?;
        let diff = (&fused - &stock)?.abs()?.max(0)?.to_scalar::<f32>()?;
        assert!(diff < 1e-5, "forward differs by {diff}");
        let g_fused = (fused * &w)?.sum_all()?.backward()?;
        let g_stock = (stock * &w)?.sum_all()?.backward()?;
        let a = g_fused.get(&x).unwrap();
        let b = g_stock.get(&x).unwrap();
        let diff = (a - b)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?;
        assert!(diff < 1e-5, "gradient differs by {diff}");
        Ok(())
    }
}
