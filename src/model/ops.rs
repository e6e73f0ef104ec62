//! Fused operations where candle's stock composition is the bottleneck on CPU.
//!
//! `linear_nll` replaces output projection + bias + `log_softmax` + `gather`: the stock path
//! makes several passes over the (tokens × vocab) logits forward and as many again backward,
//! each allocating a full-size tensor. The fused op keeps one logits buffer and turns it into
//! the gradient in place (softmax − one-hot). Other devices fall back to the stock
//! composition, so the model still runs on CUDA.

use std::sync::Mutex;

use candle_core::{CpuStorage, CustomOp3, DType, Layout, Result, Shape, Storage, Tensor, D};
use rayon::prelude::*;

use super::bf16::{self, PackedBf16, PairRows, Precision};
use super::kernels;
use super::packed::{PackedMatrix, TILE_ROWS};
use super::sgemm::{contiguous_f32, sgemm};

/// Negative log-likelihood of `targets` (N,) under `logits` (N, V), per row, shape (N,): the
/// stock composition, used off the CPU and as the reference for the fused op.
fn stock_token_nll(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let log_probs = candle_nn::ops::log_softmax(logits, D::Minus1)?;
    let picked = log_probs.gather(&targets.unsqueeze(1)?, 1)?.squeeze(1)?;
    picked.neg()
}

/// NLL of `targets` (N,) under `hidden (N, H) · weightᵀ + bias` (a linear output layer with
/// weight (V, H) and bias (V,)), per row, shape (N,).
///
/// On CPU this is one op: the logits exist only inside it, as one buffer that the backward pass
/// turns into the softmax gradient in place, instead of a chain of (N, V) candle tensors (bias
/// broadcast, log-softmax, gather and their gradients) that each cost a full pass and allocation.
pub fn linear_nll(
    hidden: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    targets: &Tensor,
) -> Result<Tensor> {
    linear_nll_with(hidden, weight, bias, targets, Precision::Fp32)
}

/// [`linear_nll`] with its three matrix products (logits, the hidden states' gradient, the
/// weight gradient) computed at `precision`: with [`Precision::Bf16`] the operands are rounded
/// to bf16 and summed in fp32 ([`super::bf16`]); the log-softmax, the gradient of the logits
/// and the bias gradient stay fp32. Off the CPU, `precision` is ignored.
pub fn linear_nll_with(
    hidden: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    targets: &Tensor,
    precision: Precision,
) -> Result<Tensor> {
    if hidden.device().is_cpu() && hidden.dtype() == DType::F32 {
        let targets = targets
            .to_dtype(DType::U32)?
            .flatten_all()?
            .to_vec1::<u32>()?;
        hidden.contiguous()?.apply_op3(
            &weight.contiguous()?,
            &bias.contiguous()?,
            LinearNll {
                targets,
                precision,
                cache: Mutex::new(None),
            },
        )
    } else {
        let logits = hidden.matmul(&weight.t()?)?.broadcast_add(bias)?;
        stock_token_nll(&logits, targets)
    }
}

/// `x (N, in) · weightᵀ (in, out) + bias`, shape (N, out), as one op on the CPU with a
/// hand-written backward: candle's composition (matmul of a transposed view, broadcast add)
/// reduces the bias gradient over rows with a strided loop and keeps zero-filled gradient
/// buffers for each node — ~3% of a training step for the GRU input projections. The values
/// are those of the composition (same product, then the bias added to each element).
pub fn linear(x: &Tensor, weight: &Tensor, bias: &Tensor) -> Result<Tensor> {
    linear_with(x, weight, bias, Precision::Fp32)
}

/// [`linear`] with its products (forward and both gradients) at `precision`; bf16 on the CPU
/// only.
pub fn linear_with(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    precision: Precision,
) -> Result<Tensor> {
    if x.device().is_cpu() && x.dtype() == DType::F32 && x.rank() == 2 {
        x.contiguous()?.apply_op3(
            &weight.contiguous()?,
            &bias.contiguous()?,
            Linear { precision },
        )
    } else {
        x.matmul(&weight.t()?)?.broadcast_add(bias)
    }
}

struct Linear {
    precision: Precision,
}

/// `x (N, in) · weightᵀ`, shape (N, out), where one row takes gemm's general kernel like
/// many: gemm multiplies a single row with a vector kernel whose sums round differently, so
/// a one-token sentence alone would not get the bits it gets in a batch (or from a token
/// table made by this same product).
pub fn product_with_transposed(x: &Tensor, weight: &Tensor) -> Result<Tensor> {
    if x.dim(0)? == 1 && x.device().is_cpu() {
        return Tensor::cat(&[x, x], 0)?
            .matmul(&weight.t()?)?
            .narrow(0, 0, 1);
    }
    x.matmul(&weight.t()?)
}

/// Columns per task when summing a gradient's rows into a bias gradient.
const COLUMN_BLOCK: usize = 512;

/// Σ over the rows of `rows` (n × width) per column, column blocks on every thread, rows in
/// order within each (so the result does not depend on the thread count).
fn column_sums(rows: &[f32], width: usize) -> Vec<f32> {
    let mut sums = vec![0f32; width];
    sums.par_chunks_mut(COLUMN_BLOCK)
        .enumerate()
        .for_each(|(c, cols)| {
            let c0 = c * COLUMN_BLOCK;
            for row in rows.chunks_exact(width) {
                kernels::add_assign(cols, &row[c0..c0 + cols.len()]);
            }
        });
    sums
}

impl CustomOp3 for Linear {
    fn name(&self) -> &'static str {
        "linear"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (n, input) = l1.shape().dims2()?;
        let (out, input2) = l2.shape().dims2()?;
        if input2 != input || l3.shape().elem_count() != out {
            candle_core::bail!(
                "linear: input {:?}, weight {:?} and bias {:?} do not fit",
                l1.dims(),
                l2.dims(),
                l3.dims()
            );
        }
        let (x, w, b) = (
            contiguous_f32(s1, l1, "linear input")?,
            contiguous_f32(s2, l2, "linear weight")?,
            contiguous_f32(s3, l3, "linear bias")?,
        );
        // One row is multiplied as two (see `product_with_transposed`).
        if n == 0 || out == 0 {
            return Ok((CpuStorage::F32(vec![0f32; n * out]), Shape::from((n, out))));
        }
        if self.precision == Precision::Bf16 {
            // y (N, out) = x (N, in) · wᵀ (in, out) in bf16.
            let lhs = bf16::rows_operand(x, n, input);
            let lhs = PairRows::by_rows(&lhs, n, input);
            let mut y = vec![0f32; n * out];
            PackedBf16::new(w, input, out, 1, input).matmul(&lhs, &mut y);
            y.par_chunks_mut(out).for_each(|row| {
                for (v, &c) in row.iter_mut().zip(b) {
                    *v += c;
                }
            });
            return Ok((CpuStorage::F32(y), Shape::from((n, out))));
        }
        let rows = n.max(2);
        let padded;
        let x = if n == 1 {
            padded = [x, x].concat();
            &padded[..]
        } else {
            x
        };
        let mut y = vec![0f32; rows * out];
        // y (N, out) = x (N, in) · wᵀ (in, out)
        sgemm(
            rows,
            out,
            input,
            &mut y,
            (out, 1),
            false,
            x,
            (input, 1),
            w,
            (1, input),
            true,
        );
        y.truncate(n * out);
        y.par_chunks_mut(out).for_each(|row| {
            for (v, &c) in row.iter_mut().zip(b) {
                *v += c;
            }
        });
        Ok((CpuStorage::F32(y), Shape::from((n, out))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        weight: &Tensor,
        _bias: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (n, input) = x.dims2()?;
        let out = weight.dim(0)?;
        let grad = grad.contiguous()?;
        let (xg, wg, gg) = (
            x.storage_and_layout().0,
            weight.storage_and_layout().0,
            grad.storage_and_layout().0,
        );
        let (xv, wv, gv) = (
            cpu_slice(x, &xg)?,
            cpu_slice(weight, &wg)?,
            cpu_slice(&grad, &gg)?,
        );
        // The same two products as the output layer's gradients: dx (N, in) = dy (N, out) ·
        // w (out, in) and dw (out, in) = dyᵀ (out, N) · x (N, in).
        let (dx, dw) = match self.precision {
            Precision::Fp32 => linear_nll_grads_fp32(gv, xv, wv, n, input, out),
            Precision::Bf16 => linear_nll_grads_bf16(gv, xv, wv, n, input, out),
        };
        let db = column_sums(gv, out);
        let dev = x.device();
        Ok((
            Some(Tensor::from_vec(dx, (n, input), dev)?),
            Some(Tensor::from_vec(dw, (out, input), dev)?),
            Some(Tensor::from_vec(db, out, dev)?),
        ))
    }
}

/// Rows of logits computed at a time by [`linear_nll_inference`]: 32 rows of an 8000-word
/// vocabulary are 1 MB, which stays in L2 between the product and the log-sum-exp pass.
const INFERENCE_ROWS: usize = 32;

/// [`linear_nll`] without a backward pass, for scoring: the logits are made a few rows at a
/// time in a small buffer per thread and thrown away, instead of one (N, V) buffer kept for the
/// gradient (131 MB for a 4096-token batch over 8000 words) that costs page faults and a trip
/// through memory. The result carries no gradient.
pub fn linear_nll_inference(
    hidden: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    targets: &Tensor,
) -> Result<Tensor> {
    let (hidden, weight, bias) = (hidden.detach(), weight.detach(), bias.detach());
    if !(hidden.device().is_cpu() && hidden.dtype() == DType::F32) {
        return linear_nll(&hidden, &weight, &bias, targets);
    }
    let (hidden, weight, bias) = (
        hidden.contiguous()?,
        weight.contiguous()?,
        bias.contiguous()?,
    );
    let (n, h) = hidden.dims2()?;
    let (v, h2) = weight.dims2()?;
    let targets = targets
        .to_dtype(DType::U32)?
        .flatten_all()?
        .to_vec1::<u32>()?;
    if h2 != h || bias.elem_count() != v || targets.len() != n {
        candle_core::bail!(
            "linear_nll: hidden {:?}, weight {:?}, bias {:?} and {} targets do not fit",
            hidden.dims(),
            weight.dims(),
            bias.dims(),
            targets.len()
        );
    }
    if let Some(&bad) = targets.iter().find(|&&t| t as usize >= v) {
        candle_core::bail!("linear_nll: target id {bad} outside the vocabulary of {v}");
    }
    let (hg, wg, bg) = (
        hidden.storage_and_layout().0,
        weight.storage_and_layout().0,
        bias.storage_and_layout().0,
    );
    let (hidden_v, weight_v, bias_v) = (
        cpu_slice(&hidden, &hg)?,
        cpu_slice(&weight, &wg)?,
        cpu_slice(&bias, &bg)?,
    );
    let mut nll = vec![0f32; n];
    nll.par_chunks_mut(INFERENCE_ROWS)
        .zip(hidden_v.par_chunks(INFERENCE_ROWS * h))
        .zip(targets.par_chunks(INFERENCE_ROWS))
        .for_each_init(Vec::new, |logits, ((out, rows), tgt)| {
            let m = out.len();
            logits.resize(m * v, 0.0);
            // logits (m, V) = rows (m, H) · weightᵀ (H, V)
            sgemm(
                m,
                v,
                h,
                logits,
                (v, 1),
                false,
                rows,
                (h, 1),
                weight_v,
                (1, h),
                false,
            );
            for ((o, row), &t) in out.iter_mut().zip(logits.chunks_exact_mut(v)).zip(tgt) {
                *o = kernels::add_bias_log_sum_exp(row, bias_v) - row[t as usize];
            }
        });
    Tensor::from_vec(nll, n, hidden.device())
}

/// The (tokens × vocab) buffer of the last backward pass, kept for the next forward: a fresh
/// 40 MB allocation every step cost page faults and zeroing (~3% of a training step).
static SPARE_LOGITS: Mutex<Vec<f32>> = Mutex::new(Vec::new());

/// A buffer of `len` floats for logits, every element of which the caller overwrites.
fn spare_logits(len: usize) -> Vec<f32> {
    let mut buf = std::mem::take(&mut *SPARE_LOGITS.lock().unwrap_or_else(|e| e.into_inner()));
    if buf.len() < len {
        return vec![0f32; len];
    }
    buf.truncate(len);
    buf
}

fn return_spare_logits(buf: Vec<f32>) {
    *SPARE_LOGITS.lock().unwrap_or_else(|e| e.into_inner()) = buf;
}

struct LinearNll {
    targets: Vec<u32>,
    precision: Precision,
    /// Kept for the backward pass: in fp32 the biased logits (N, V) and each row's
    /// log-sum-exp; in bf16 each row's exp(logit − max) and 1 / Σ of them.
    cache: Mutex<Option<(Vec<f32>, Vec<f32>)>>,
}

fn cpu_slice<'a>(t: &'a Tensor, guard: &'a Storage) -> Result<&'a [f32]> {
    match guard {
        Storage::Cpu(s) => contiguous_f32(s, t.layout(), "linear_nll operand"),
        _ => candle_core::bail!("linear_nll expects CPU tensors"),
    }
}

impl CustomOp3 for LinearNll {
    fn name(&self) -> &'static str {
        "linear-nll"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (n, h) = l1.shape().dims2()?;
        let (v, h2) = l2.shape().dims2()?;
        if h2 != h || l3.shape().elem_count() != v || self.targets.len() != n {
            candle_core::bail!(
                "linear_nll: hidden {:?}, weight {:?}, bias {:?} and {} targets do not fit",
                l1.dims(),
                l2.dims(),
                l3.dims(),
                self.targets.len()
            );
        }
        if let Some(&bad) = self.targets.iter().find(|&&t| t as usize >= v) {
            candle_core::bail!("linear_nll: target id {bad} outside the vocabulary of {v}");
        }
        let (hidden, weight, bias) = (
            contiguous_f32(s1, l1, "hidden states")?,
            contiguous_f32(s2, l2, "output weight")?,
            contiguous_f32(s3, l3, "output bias")?,
        );
        let mut logits = spare_logits(n * v);
        if self.precision == Precision::Bf16 {
            // logits (N, V) = hidden (N, H) · weightᵀ (H, V) in bf16, a block of rows at a
            // time with its bias and softmax while the block is in cache. What the backward
            // pass keeps is each row's exp(logit − max) and 1 / Σ of them (its softmax up to
            // that factor): it then needs no exp of its own.
            let rhs = PackedBf16::new(weight, h, v, 1, h);
            let lhs = bf16::rows_operand(hidden, n, h);
            let lhs = PairRows::by_rows(&lhs, n, h);
            let targets = &self.targets;
            let block_rows = bf16::block_rows(n);
            let (nll, inv_sums): (Vec<f32>, Vec<f32>) = logits
                .par_chunks_mut(block_rows * v)
                .enumerate()
                .flat_map_iter(|(i, block)| {
                    let r0 = i * block_rows;
                    rhs.matmul_rows(&lhs, r0, block);
                    block
                        .chunks_exact_mut(v)
                        .zip(&targets[r0..])
                        .map(|(row, &t)| {
                            let t = t as usize;
                            let target = row[t] + bias[t];
                            let (max, sum) = kernels::add_bias_exp_in_place(row, bias);
                            ((max + sum.ln()) - target, 1.0 / sum)
                        })
                        .collect::<Vec<_>>()
                })
                .unzip();
            *self.cache.lock().expect("linear_nll cache") = Some((logits, inv_sums));
            return Ok((CpuStorage::F32(nll), Shape::from(n)));
        }
        let lse: Vec<f32> = {
            match PackedMatrix::new(weight, v, h, h) {
                // AVX-512: the weights packed into the tile's panels (on every thread: ~1 ms), then
                // each block of 8 rows gets all its logits and, while they are still in cache,
                // their bias and log-sum-exp. The general product reached ~120 GFLOP/s on this
                // (tokens × 256) · (256 × 8000) shape, the tile ~200.
                Some(packed) => logits
                    .par_chunks_mut(TILE_ROWS * v)
                    .zip(hidden.par_chunks(TILE_ROWS * h))
                    .flat_map_iter(|(block, rows)| {
                        let m = rows.len() / h;
                        packed.matmul(rows, m, block, v);
                        block
                            .chunks_exact_mut(v)
                            .map(|row| kernels::add_bias_log_sum_exp(row, bias))
                            .collect::<Vec<_>>()
                    })
                    .collect(),
                None => {
                    // logits (N, V) = hidden (N, H) · weightᵀ (H, V)
                    sgemm(
                        n,
                        v,
                        h,
                        &mut logits,
                        (v, 1),
                        false,
                        hidden,
                        (h, 1),
                        weight,
                        (1, h),
                        true,
                    );
                    logits
                        .par_chunks_mut(v)
                        .map(|row| kernels::add_bias_log_sum_exp(row, bias))
                        .collect()
                }
            }
        };
        let nll: Vec<f32> = (0..n)
            .map(|i| lse[i] - logits[i * v + self.targets[i] as usize])
            .collect();
        *self.cache.lock().expect("linear_nll cache") = Some((logits, lse));
        Ok((CpuStorage::F32(nll), Shape::from(n)))
    }

    fn bwd(
        &self,
        hidden: &Tensor,
        weight: &Tensor,
        _bias: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (n, h) = hidden.dims2()?;
        let v = weight.dim(0)?;
        let grad = grad_res.to_dtype(DType::F32)?.to_vec1::<f32>()?;
        // In bf16 `lse` holds 1 / Σ exp per row and `dlogits` the exps (see `cache`).
        let (mut dlogits, lse) = self
            .cache
            .lock()
            .expect("linear_nll cache")
            .take()
            .ok_or_else(|| {
                candle_core::Error::Msg("linear_nll: backward without a forward pass".into())
            })?;
        let (hg, wg) = (hidden.storage_and_layout().0, weight.storage_and_layout().0);
        let (hidden_v, weight_v) = (cpu_slice(hidden, &hg)?, cpu_slice(weight, &wg)?);
        let (dhidden, dweight, dbias) = match self.precision {
            Precision::Fp32 => {
                // d nll_i / d logits_i = softmax(logits_i) − onehot(t_i), scaled by the
                // incoming gradient.
                dlogits.par_chunks_mut(v).enumerate().for_each(|(i, row)| {
                    kernels::scaled_softmax_in_place(row, lse[i], grad[i]);
                    row[self.targets[i] as usize] -= grad[i];
                });
                let dbias = column_sums(&dlogits, v);
                let (dhidden, dweight) =
                    linear_nll_grads_fp32(&dlogits, hidden_v, weight_v, n, h, v);
                (dhidden, dweight, dbias)
            }
            Precision::Bf16 => {
                // The same gradient of the logits, made straight into the two bf16 operands
                // and the bias gradient in one pass over the logits.
                // (The forward pass kept exp(logit − max) and 1 / Σ per row.)
                let (rows, columns, dbias) =
                    dlogits_bf16(&dlogits, &lse, &grad, &self.targets, n, v);
                let (dhidden, dweight) =
                    grads_bf16_from_operands(&rows, &columns, hidden_v, weight_v, n, h, v);
                (dhidden, dweight, dbias)
            }
        };
        return_spare_logits(dlogits);
        let dev = hidden.device();
        Ok((
            Some(Tensor::from_vec(dhidden, (n, h), dev)?),
            Some(Tensor::from_vec(dweight, (v, h), dev)?),
            Some(Tensor::from_vec(dbias, v, dev)?),
        ))
    }
}

/// The gradients of the hidden states and of the weight, given the logits' gradient `dlogits`
/// (N, V), hidden states (N, H) and weight (V, H): fp32 products. (Any linear layer's two
/// gradient products: V outputs, H inputs.)
fn linear_nll_grads_fp32(
    dlogits: &[f32],
    hidden: &[f32],
    weight: &[f32],
    n: usize,
    h: usize,
    v: usize,
) -> (Vec<f32>, Vec<f32>) {
    let mut dhidden = vec![0f32; n * h];
    // dhidden (N, H) = dlogits (N, V) · weight (V, H)
    sgemm(
        n,
        h,
        v,
        &mut dhidden,
        (h, 1),
        false,
        dlogits,
        (v, 1),
        weight,
        (h, 1),
        true,
    );
    let mut dweight = vec![0f32; v * h];
    // dweight (V, H) = dlogitsᵀ (V, N) · hidden (N, H)
    sgemm(
        v,
        h,
        n,
        &mut dweight,
        (h, 1),
        false,
        dlogits,
        (1, v),
        hidden,
        (h, 1),
        true,
    );
    (dhidden, dweight)
}

/// [`linear_nll_grads_fp32`] with bf16 operands and fp32 sums.
fn linear_nll_grads_bf16(
    dlogits: &[f32],
    hidden: &[f32],
    weight: &[f32],
    n: usize,
    h: usize,
    v: usize,
) -> (Vec<f32>, Vec<f32>) {
    let rows = bf16::rows_operand(dlogits, n, v);
    let columns = bf16::columns_operand(dlogits, n, v);
    grads_bf16_from_operands(&rows, &columns, hidden, weight, n, h, v)
}

/// [`linear_nll_grads_bf16`] from the logits' gradient already in bf16: `rows` holds its rows
/// as pairs along the vocabulary ([`bf16::rows_operand`]), `columns` pairs down it
/// ([`bf16::columns_operand`]).
fn grads_bf16_from_operands(
    rows: &[u32],
    columns: &[u32],
    hidden: &[f32],
    weight: &[f32],
    n: usize,
    h: usize,
    v: usize,
) -> (Vec<f32>, Vec<f32>) {
    // dhidden (N, H) = dlogits (N, V) · weight (V, H): pairs along the vocabulary.
    let lhs = PairRows::by_rows(rows, n, v);
    let mut dhidden = vec![0f32; n * h];
    PackedBf16::new(weight, v, h, h, 1).matmul(&lhs, &mut dhidden);
    // dweight (V, H) = dlogitsᵀ (V, N) · hidden (N, H): pairs along the tokens.
    let lhs = PairRows::by_rows(columns, v, n);
    let mut dweight = vec![0f32; v * h];
    PackedBf16::new(hidden, n, h, h, 1).matmul(&lhs, &mut dweight);
    (dhidden, dweight)
}

/// Rows of logits per task of [`dlogits_bf16`] (even: the columns operand pairs rows).
const DLOGITS_ROWS: usize = 64;
/// Columns of two rows of logits converted at a time by [`dlogits_bf16`] (even, so that
/// pairs along a row do not straddle two pieces; a few KB: in L1).
const DLOGITS_COLUMNS: usize = 1024;

/// The logits' gradient d_i = g_i · softmax(logits_i) − g_i · onehot(t_i) made straight into
/// both bf16 operands of the gradient products — rows as pairs along the vocabulary
/// ([`bf16::rows_operand`]'s layout) and its transpose's ([`bf16::columns_operand`]'s) — with the
/// bias gradient Σ_i d_i in fp32: one pass over the logits instead of five (softmax, column
/// sums, two conversions). `exps` holds each row's exp(logit − max) and `inv_sums` 1 / Σ of
/// them ([`kernels::add_bias_exp_in_place`]), so softmax_i = exps_i · inv_sums_i. The bias
/// gradient sums blocks of [`DLOGITS_ROWS`] rows, then the blocks in order, whatever the
/// thread count.
fn dlogits_bf16(
    exps: &[f32],
    inv_sums: &[f32],
    grad: &[f32],
    targets: &[u32],
    n: usize,
    v: usize,
) -> (bf16::Pairs, bf16::Pairs, Vec<f32>) {
    assert!(
        exps.len() == n * v && inv_sums.len() == n && grad.len() == n && targets.len() == n,
        "linear_nll: gradient operands do not fit"
    );
    let vp = v.div_ceil(2);
    let np = n.div_ceil(2);
    // Every pair of both is written below.
    let mut rows = bf16::Pairs::uninit(n * vp);
    let mut columns = bf16::Pairs::uninit(np * v);
    if n == 0 || v == 0 {
        return (rows, columns, vec![0f32; v]);
    }
    let transposed = bf16::TransposedPairs::new(&mut columns, v, np);
    let width = DLOGITS_COLUMNS.min(v);
    let partial_sums: Vec<Vec<f32>> = rows
        .par_chunks_mut(DLOGITS_ROWS * vp)
        .enumerate()
        .map_init(
            || {
                let block = vec![0u32; DLOGITS_ROWS / 2 * width];
                (vec![0f32; width], vec![0f32; width], block)
            },
            |(top, bottom, block), (c, rows_out)| {
                let mut sums = vec![0f32; v];
                let p0 = c * DLOGITS_ROWS / 2;
                let pairs_here = rows_out.len().div_ceil(2 * vp);
                // Columns c0..c0 + width of every row of the task at a time (in L1), their pairs
                // of rows gathered in `block` and written transposed.
                for c0 in (0..v).step_by(DLOGITS_COLUMNS) {
                    let width = DLOGITS_COLUMNS.min(v - c0);
                    let q0 = c0 / 2;
                    let pairs = width.div_ceil(2);
                    for (k, pair_rows) in rows_out.chunks_mut(2 * vp).enumerate() {
                        let i = 2 * (p0 + k);
                        let gradient = |i: usize, out: &mut [f32]| {
                            let exps = &exps[i * v + c0..][..width];
                            kernels::scale_into(exps, grad[i] * inv_sums[i], out);
                            if let Some(t) = (targets[i] as usize).checked_sub(c0) {
                                if t < width {
                                    out[t] -= grad[i];
                                }
                            }
                        };
                        let (top, bottom) = (&mut top[..width], &mut bottom[..width]);
                        let sums = &mut sums[c0..c0 + width];
                        gradient(i, top);
                        kernels::add_assign(sums, top);
                        let (top_pairs, bottom_pairs) =
                            pair_rows.split_at_mut(vp.min(pair_rows.len()));
                        bf16::pairs_along_rows(top, width, &mut top_pairs[q0..q0 + pairs]);
                        if i + 1 < n {
                            gradient(i + 1, bottom);
                            kernels::add_assign(sums, bottom);
                            bf16::pairs_along_rows(
                                bottom,
                                width,
                                &mut bottom_pairs[q0..q0 + pairs],
                            );
                        } else {
                            bottom.fill(0.0);
                        }
                        bf16::pairs_of_rows(top, bottom, &mut block[k * width..][..width]);
                    }
                    // SAFETY: this task alone makes pairs p0..p0 + pairs_here of the tokens.
                    unsafe { transposed.write(&block[..pairs_here * width], pairs_here, c0, p0) };
                }
                sums
            },
        )
        .collect();
    let mut dbias = vec![0f32; v];
    for sums in &partial_sums {
        kernels::add_assign(&mut dbias, sums);
    }
    (rows, columns, dbias)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs a check once per kernel level this CPU has, so the fallbacks are tested too.
    fn at_every_kernel_level(check: fn() -> Result<()>) -> Result<()> {
        for level in crate::model::kernels::available_levels() {
            eprintln!("kernel level {}", level.name());
            crate::model::kernels::with_level(level, check)?;
        }
        Ok(())
    }
    use candle_core::{Device, Var};

    /// The fused linear op gives the stock composition's values to the bit, and its
    /// gradients, for one row and for many (ragged column blocks), at every kernel level.
    #[test]
    fn linear_matches_the_stock_composition_in_value_and_gradient() -> Result<()> {
        at_every_kernel_level(|| {
            let dev = Device::Cpu;
            let val = |n: usize, k: f32| -> Vec<f32> {
                (0..n).map(|i| ((i as f32 * k).sin()) * 0.7).collect()
            };
            for (n, input, out) in [(1, 5, 3), (37, 19, 1100)] {
                let x = Var::from_vec(val(n * input, 0.37), (n, input), &dev)?;
                let w = Var::from_vec(val(out * input, 0.11), (out, input), &dev)?;
                let b = Var::from_vec(val(out, 1.3), out, &dev)?;
                let fused = linear(x.as_tensor(), w.as_tensor(), b.as_tensor())?;
                let stock = product_with_transposed(x.as_tensor(), w.as_tensor())?
                    .broadcast_add(b.as_tensor())?;
                assert_eq!(
                    fused.flatten_all()?.to_vec1::<f32>()?,
                    stock.flatten_all()?.to_vec1::<f32>()?,
                    "values, {n} rows"
                );
                let weights = Tensor::from_vec(val(n * out, 0.23), (n, out), &dev)?;
                let gf = (fused * &weights)?.sum_all()?.backward()?;
                let gs = (stock * &weights)?.sum_all()?.backward()?;
                for v in [&x, &w, &b] {
                    let d = (gf.get(v).expect("fused grad") - gs.get(v).expect("stock grad"))?
                        .abs()?
                        .flatten_all()?
                        .max(0)?
                        .to_scalar::<f32>()?;
                    assert!(d < 1e-4, "gradient of {:?} differs by {d}", v.dims());
                }
            }
            // No rows: an empty result and gradients, not a panic.
            let x = Var::from_vec(Vec::<f32>::new(), (0, 4), &dev)?;
            let w = Var::from_vec(val(12, 0.3), (3, 4), &dev)?;
            let b = Var::from_vec(val(3, 0.9), 3, &dev)?;
            let y = linear(x.as_tensor(), w.as_tensor(), b.as_tensor())?;
            assert_eq!(y.dims(), &[0, 3]);
            let g = y.sum_all()?.backward()?;
            let dw = g
                .get(&w)
                .expect("weight gradient")
                .flatten_all()?
                .to_vec1::<f32>()?;
            assert!(dw.iter().all(|&x| x == 0.0), "{dw:?}");
            Ok(())
        })
    }

    #[test]
    fn inference_nll_matches_the_training_op_and_tracks_no_gradient() -> Result<()> {
        at_every_kernel_level(|| {
            let dev = Device::Cpu;
            // 70 rows: two full chunks of 32 and a ragged one.
            let val = |n: usize, k: f32| -> Vec<f32> {
                (0..n).map(|i| ((i as f32 * k).sin()) * 0.7).collect()
            };
            let h = Var::from_vec(val(70 * 5, 0.37), (70, 5), &dev)?;
            let w = Var::from_vec(val(11 * 5, 0.11), (11, 5), &dev)?;
            let b = Var::from_vec(val(11, 1.3), 11, &dev)?;
            let t = Tensor::from_vec((0..70u32).map(|i| (i * 7) % 11).collect(), 70, &dev)?;
            let train = linear_nll(h.as_tensor(), w.as_tensor(), b.as_tensor(), &t)?;
            let infer = linear_nll_inference(h.as_tensor(), w.as_tensor(), b.as_tensor(), &t)?;
            let diff = (&train - &infer)?.abs()?.max(0)?.to_scalar::<f32>()?;
            assert!(diff < 1e-5, "inference differs by {diff}");
            assert!(!infer.track_op(), "scoring must not build a graph");
            let bad = Tensor::new(&[11u32; 70], &dev)?;
            let err = linear_nll_inference(h.as_tensor(), w.as_tensor(), b.as_tensor(), &bad)
                .unwrap_err()
                .to_string();
            assert!(err.contains("target id 11"), "{err}");
            Ok(())
        })
    }

    #[test]
    fn fused_linear_nll_matches_stock_forward_and_backward() -> Result<()> {
        at_every_kernel_level(fused_linear_nll_matches_stock_forward_and_backward_at_active_level)
    }

    fn fused_linear_nll_matches_stock_forward_and_backward_at_active_level() -> Result<()> {
        let dev = Device::Cpu;
        let val = |n: usize, k: f32| -> Vec<f32> {
            (0..n).map(|i| ((i as f32 * k).sin()) * 0.7).collect()
        };
        let h = Var::from_vec(val(6 * 5, 0.37), (6, 5), &dev)?;
        let w = Var::from_vec(val(9 * 5, 0.11), (9, 5), &dev)?;
        let b = Var::from_vec(val(9, 1.3), 9, &dev)?;
        let t = Tensor::new(&[0u32, 8, 3, 3, 5, 1], &dev)?;
        let scale = Tensor::new(&[1f32, 0.5, 2.0, -1.0, 0.25, 3.0], &dev)?;
        let fused = linear_nll(h.as_tensor(), w.as_tensor(), b.as_tensor(), &t)?;
        let logits = h
            .as_tensor()
            .matmul(&w.as_tensor().t()?)?
            .broadcast_add(b.as_tensor())?;
        let lsm = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
        let stock = lsm.gather(&t.unsqueeze(1)?, 1)?.squeeze(1)?.neg()?;
        let diff = (&fused - &stock)?.abs()?.max(0)?.to_scalar::<f32>()?;
        assert!(diff < 1e-5, "forward differs by {diff}");
        let gf = (fused * &scale)?.sum_all()?.backward()?;
        let gs = (stock * &scale)?.sum_all()?.backward()?;
        for v in [&h, &w, &b] {
            let d = (gf.get(v).unwrap() - gs.get(v).unwrap())?
                .abs()?
                .flatten_all()?
                .max(0)?
                .to_scalar::<f32>()?;
            assert!(d < 1e-5, "gradient of {:?} differs by {d}", v.dims());
        }
        Ok(())
    }

    /// The fused gradient of the logits gives, at every kernel level, exactly the bf16
    /// operands of the unfused composition (the gradient from the rows' exps, then the two
    /// conversions) and its bias gradient up to the order of the fp32 sums; the gradient itself
    /// is the softmax's within fp32 rounding. An odd row count (a lone last row), a ragged last
    /// block of rows, an odd vocabulary over more than one piece of columns.
    #[test]
    fn fused_bf16_logit_gradient_matches_the_unfused_one() -> Result<()> {
        at_every_kernel_level(|| {
            let (n, v) = (2 * DLOGITS_ROWS + 37, 2 * DLOGITS_COLUMNS + 101);
            let logits: Vec<f32> = (0..n * v).map(|i| (i as f32 * 0.37).sin() * 4.0).collect();
            let bias: Vec<f32> = (0..v).map(|i| (i as f32 * 0.7).cos()).collect();
            let grad: Vec<f32> = (0..n).map(|i| 0.5 + (i % 7) as f32 * 0.1).collect();
            let targets: Vec<u32> = (0..n).map(|i| (i * 13 % v) as u32).collect();
            let mut exps = logits.clone();
            let inv_sums: Vec<f32> = exps
                .chunks_mut(v)
                .map(|row| 1.0 / kernels::add_bias_exp_in_place(row, &bias).1)
                .collect();
            let (rows, columns, dbias) = dlogits_bf16(&exps, &inv_sums, &grad, &targets, n, v);
            let mut d = exps.clone();
            let mut softmax = logits.clone();
            for (i, (row, s)) in d.chunks_mut(v).zip(softmax.chunks_mut(v)).enumerate() {
                for x in row.iter_mut() {
                    *x *= grad[i] * inv_sums[i];
                }
                row[targets[i] as usize] -= grad[i];
                let lse = kernels::add_bias_log_sum_exp(s, &bias);
                kernels::scaled_softmax_in_place(s, lse, grad[i]);
                s[targets[i] as usize] -= grad[i];
            }
            for (a, b) in d.iter().zip(&softmax) {
                assert!((a - b).abs() <= 1e-5 * b.abs() + 1e-7, "{a} vs softmax {b}");
            }
            assert_eq!(rows[..], bf16::rows_operand(&d, n, v)[..]);
            assert_eq!(columns[..], bf16::columns_operand(&d, n, v)[..]);
            let sums = column_sums(&d, v);
            for (c, (a, b)) in dbias.iter().zip(&sums).enumerate() {
                let scale: f32 = d.chunks(v).map(|r| r[c].abs()).sum();
                assert!(
                    (a - b).abs() <= 1e-5 * scale + 1e-7,
                    "column {c}: {a} vs {b}"
                );
            }
            Ok(())
        })
    }

    /// The bf16 op against the fp32 composition, at every kernel level (the AMX and
    /// `vdpbf16ps` kernels where this CPU has them, the portable one at every level): values and gradients
    /// within what bf16 operands allow, and exactly the fp32 op's values for operands that
    /// are already bf16 numbers (whose products bf16 computes exactly).
    #[test]
    fn bf16_linear_nll_matches_fp32_within_bf16_precision() -> Result<()> {
        at_every_kernel_level(|| {
            let dev = Device::Cpu;
            // 53 rows (ragged blocks), hidden 37 (odd), 203 words (ragged column groups).
            let (n, h, v) = (53, 37, 203);
            let val = |len: usize, k: f32| -> Vec<f32> {
                (0..len).map(|i| ((i as f32 * k).sin()) * 0.7).collect()
            };
            let targets: Vec<u32> = (0..n as u32).map(|i| (i * 31) % v as u32).collect();
            let t = Tensor::from_vec(targets, n, &dev)?;
            let scale = Tensor::from_vec(val(n, 0.91), n, &dev)?;
            let run = |hv: &[f32], wv: &[f32], precision| -> Result<Vec<Vec<f32>>> {
                let hid = Var::from_vec(hv.to_vec(), (n, h), &dev)?;
                let w = Var::from_vec(wv.to_vec(), (v, h), &dev)?;
                let b = Var::from_vec(val(v, 1.3), v, &dev)?;
                let nll =
                    linear_nll_with(hid.as_tensor(), w.as_tensor(), b.as_tensor(), &t, precision)?;
                let g = (&nll * &scale)?.sum_all()?.backward()?;
                let mut out = vec![nll.to_vec1::<f32>()?];
                for var in [&hid, &w, &b] {
                    out.push(
                        g.get(var)
                            .expect("gradient")
                            .flatten_all()?
                            .to_vec1::<f32>()?,
                    );
                }
                Ok(out)
            };
            let (hv, wv) = (val(n * h, 0.37), val(v * h, 0.11));
            let fp32 = run(&hv, &wv, Precision::Fp32)?;
            let bf = run(&hv, &wv, Precision::Bf16)?;
            let names = ["nll", "d hidden", "d weight", "d bias"];
            for ((name, a), b) in names.iter().zip(&bf).zip(&fp32) {
                let size = b.iter().fold(0f32, |m, x| m.max(x.abs()));
                let worst = a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
                // Operands rounded to 8 bits of mantissa: ~2^-8 relative per product.
                assert!(
                    worst <= 2e-2 * size.max(1e-3),
                    "{name}: differs by {worst} (size {size})"
                );
                assert!(
                    worst > 0.0 || *name == "d bias",
                    "{name}: bf16 changed nothing"
                );
            }
            // Operands that are bf16 numbers already: the forward values are fp32's.
            let (hr, wr): (Vec<f32>, Vec<f32>) = (
                hv.iter().map(|&x| bf16::round(x)).collect(),
                wv.iter().map(|&x| bf16::round(x)).collect(),
            );
            let (a, b) = (
                run(&hr, &wr, Precision::Bf16)?,
                run(&hr, &wr, Precision::Fp32)?,
            );
            for (x, y) in a[0].iter().zip(&b[0]) {
                assert!((x - y).abs() <= 1e-5 * y.abs().max(1.0), "{x} vs {y}");
            }
            Ok(())
        })
    }
}
