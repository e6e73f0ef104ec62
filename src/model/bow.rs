//! Bag-of-words document models: NVDM (Miao et al., 2016), NASH (Shen et al., 2018) and the
//! random-hyperplane LSH baseline (Charikar, 2002).
//!
//! A document is a sparse bag `(word id, count)`. The encoders' first layer is a linear map
//! over the whole vocabulary, but it is computed from each document's own (word, value) pairs
//! only ([`BagBatch`] keeps a batch's pairs one document after the other): the result equals
//! the dense product, at a cost and a memory linear in the number of pairs.
//!
//! * **NVDM**: MLP encoder → N(μ, σ²) → softmax decoder over the vocabulary, which scores each
//!   word of the document: log p(d | z) = Σ_w c_w log softmax(R z + b)_w.
//! * **NASH**: the same MLP → logits → Bernoulli bits with a straight-through gradient and KL
//!   to Bernoulli(½); optionally Gaussian noise is added to the bits while training, with a
//!   fixed σ or a σ(x) the encoder predicts. Codes at inference are step(p − ½).
//! * **LSH**: no training: bit j is step(w_j · tfidf(d)) for random Gaussian hyperplanes w_j.

use std::sync::Arc;

use candle_core::{CpuStorage, CustomOp1, DType, Device, Layout, Module, Result, Shape, Tensor, D};
use candle_nn::{linear, Linear, VarBuilder};
use rand::rngs::StdRng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::latent::{standard_normal, CodeMode, LatentKind, LatentParams};

/// What the encoder reads for each word of a document.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum BowInput {
    /// Raw word counts.
    #[default]
    Counts,
    /// count × idf, L2-normalised per document.
    Tfidf,
}

impl std::str::FromStr for BowInput {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "counts" => Ok(BowInput::Counts),
            "tfidf" => Ok(BowInput::Tfidf),
            _ => Err(format!("unknown input `{s}` (expected counts or tfidf)")),
        }
    }
}

impl std::fmt::Display for BowInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BowInput::Counts => "counts",
            BowInput::Tfidf => "tfidf",
        })
    }
}

/// Gaussian noise added to NASH's bits while training (never at inference).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Default)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum NashNoise {
    /// Plain straight-through bits.
    #[default]
    None,
    /// z' = z + σ ε with one fixed σ.
    Fixed { std: f64 },
    /// z' = z + σ(x) ε with σ(x) from an encoder head; the noise channel's rate
    /// KL(N(0, σ²) ‖ N(0, 1)) joins the KL term, so σ trades distortion for rate instead of
    /// collapsing to zero.
    Learned,
}

impl NashNoise {
    /// Short name used in tables and descriptions: `none`, `fixed`, `learned`.
    pub fn name(&self) -> &'static str {
        match self {
            NashNoise::None => "none",
            NashNoise::Fixed { .. } => "fixed",
            NashNoise::Learned => "learned",
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct NvdmConfig {
    pub vocab_size: usize,
    pub hidden_dim: usize,
    pub latent_dim: usize,
    #[serde(default)]
    pub input: BowInput,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct NashConfig {
    pub vocab_size: usize,
    pub hidden_dim: usize,
    /// Bits.
    pub latent_dim: usize,
    #[serde(default)]
    pub input: BowInput,
    #[serde(default)]
    pub noise: NashNoise,
    /// Labels of the supervised variant's classifier from the code (0: unsupervised). The
    /// classifier only shapes training; codes are read from the encoder alone.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub labels: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct LshConfig {
    pub vocab_size: usize,
    pub bits: usize,
    /// The seed the hyperplanes were drawn from (informational: they are stored).
    pub seed: u64,
}

/// A batch of documents as sparse bags: the (word id, count) pairs of every document, one
/// document after the other, and where each document's pairs start. Memory and the first
/// layer's work grow with the number of pairs, not with documents × pairs.
#[derive(Debug, Clone)]
pub struct BagBatch {
    /// The pairs: word ids, counts and each document's range of them.
    pairs: Arc<Pairs>,
    /// Words per document (the sum of its counts).
    pub lengths: Vec<f32>,
    pub batch_size: usize,
    /// Label ids of the documents, (B,) u32, for the supervised NASH variant.
    pub labels: Option<Tensor>,
    device: Device,
}

/// The (document, word) pairs of a [`BagBatch`].
#[derive(Debug)]
struct Pairs {
    /// Word id of each pair, (N,).
    ids: Vec<u32>,
    /// Count of each pair's word in its document, (N,).
    counts: Vec<f32>,
    /// Document d's pairs are `starts[d]..starts[d + 1]`; B + 1 entries.
    starts: Vec<usize>,
}

impl Pairs {
    fn documents(&self) -> usize {
        self.starts.len() - 1
    }

    /// Document d's pairs.
    fn of(&self, d: usize) -> std::ops::Range<usize> {
        self.starts[d]..self.starts[d + 1]
    }

    /// Every word id within a vocabulary of `v` words (the ops index rows of `v` by them).
    fn check_ids(&self, v: usize) -> Result<()> {
        match self.ids.iter().find(|&&i| i as usize >= v) {
            Some(&bad) => candle_core::bail!("word id {bad} outside the vocabulary of {v}"),
            None => Ok(()),
        }
    }
}

/// Most (document, word) pairs of one batch: 2^26, 768 MB of ids, counts and input values.
pub const MAX_BATCH_PAIRS: usize = 1 << 26;

impl BagBatch {
    /// Builds a batch from bags of `(word id, count)`. Empty bags are allowed (their code comes
    /// from the biases alone).
    pub fn new(docs: &[&[(u32, f32)]], dev: &Device) -> Result<Self> {
        let b = docs.len();
        if b == 0 {
            candle_core::bail!("empty batch");
        }
        let n = docs.iter().fold(0usize, |n, d| n.saturating_add(d.len()));
        if n > MAX_BATCH_PAIRS {
            candle_core::bail!(
                "a batch of {b} documents with {n} (document, word) pairs in all is more than \
                 {MAX_BATCH_PAIRS} pairs: use fewer documents per batch"
            );
        }
        let mut ids = Vec::with_capacity(n);
        let mut counts = Vec::with_capacity(n);
        let mut starts = Vec::with_capacity(b + 1);
        let mut lengths = Vec::with_capacity(b);
        starts.push(0);
        for doc in docs {
            let mut len = 0f32;
            for &(id, c) in doc.iter() {
                ids.push(id);
                counts.push(c);
                len += c;
            }
            starts.push(ids.len());
            lengths.push(len);
        }
        Ok(Self {
            pairs: Arc::new(Pairs {
                ids,
                counts,
                starts,
            }),
            lengths,
            batch_size: b,
            labels: None,
            device: dev.clone(),
        })
    }

    /// The same batch with each document's label id (for the supervised NASH variant).
    pub fn with_labels(mut self, labels: &[u32]) -> Result<Self> {
        if labels.len() != self.batch_size {
            candle_core::bail!(
                "{} labels for a batch of {} documents",
                labels.len(),
                self.batch_size
            );
        }
        self.labels = Some(Tensor::from_slice(labels, labels.len(), &self.device)?);
        Ok(self)
    }

    /// Total words in the batch.
    pub fn words(&self) -> f64 {
        self.lengths.iter().map(|&l| l as f64).sum()
    }

    /// The encoder's input value of each pair, (N,): its count, or count × idf normalised to
    /// unit L2 norm per document. (Data, not parameters: no gradient flows into them.)
    fn input_values(&self, input: BowInput, idf: Option<&Tensor>) -> Result<Vec<f32>> {
        let pairs = &self.pairs;
        match (input, idf) {
            (BowInput::Counts, _) => Ok(pairs.counts.clone()),
            (BowInput::Tfidf, Some(idf)) => {
                let idf = idf.to_dtype(DType::F32)?.to_vec1::<f32>()?;
                pairs.check_ids(idf.len())?;
                let mut x: Vec<f32> = pairs
                    .ids
                    .iter()
                    .zip(&pairs.counts)
                    .map(|(&id, &c)| c * idf[id as usize])
                    .collect();
                for d in 0..pairs.documents() {
                    let doc = &mut x[pairs.of(d)];
                    let norm = doc.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
                    doc.iter_mut().for_each(|v| *v /= norm);
                }
                Ok(x)
            }
            (BowInput::Tfidf, None) => candle_core::bail!("tf-idf input without an idf vector"),
        }
    }

    /// Σ over each document's pairs of value × column `id` of `weight` (out, V): (B, out), the
    /// product of the dense (B, V) input with `weightᵀ`; differentiable in `weight`.
    fn product(&self, weight: &Tensor, values: Vec<f32>) -> Result<Tensor> {
        let op = BagProduct {
            pairs: self.pairs.clone(),
            values: Arc::new(values),
        };
        weight.to_dtype(DType::F32)?.contiguous()?.apply_op1(op)
    }
}

/// [`BagBatch::product`]: y[d, o] = Σ_{n ∈ d} values[n] · weight[o, ids[n]]. Each output row o
/// reads one row of the weight (V values, in cache) at the batch's word ids; its gradient adds
/// into the same entries.
struct BagProduct {
    pairs: Arc<Pairs>,
    values: Arc<Vec<f32>>,
}

impl BagProduct {
    /// A value per pair, and every word id within a weight of `v` columns.
    fn check(&self, v: usize) -> Result<()> {
        if self.values.len() != self.pairs.ids.len() {
            candle_core::bail!(
                "bag product: values for {} of {} pairs",
                self.values.len(),
                self.pairs.ids.len()
            );
        }
        self.pairs.check_ids(v)
    }
}

impl CustomOp1 for BagProduct {
    fn name(&self) -> &'static str {
        "bag-product"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (out, v) = l.shape().dims2()?;
        let weight = cpu_slice::<f32>(s, l)?;
        self.check(v)?;
        let (pairs, values) = (&self.pairs, &self.values);
        let b = pairs.documents();
        // yᵀ (out, B): row o from weight row o.
        let mut yt = vec![0f32; out * b];
        if b > 0 {
            yt.par_chunks_mut(b)
                .zip(weight.par_chunks(v))
                .for_each(|(y, w)| {
                    for (d, y) in y.iter_mut().enumerate() {
                        let r = pairs.of(d);
                        *y = pairs.ids[r.clone()]
                            .iter()
                            .zip(&values[r])
                            .map(|(&id, &x)| x * w[id as usize])
                            .sum();
                    }
                });
        }
        let mut y = vec![0f32; b * out];
        for (o, row) in yt.chunks_exact(b.max(1)).enumerate().take(out) {
            for (d, &x) in row.iter().enumerate().take(b) {
                y[d * out + o] = x;
            }
        }
        Ok((CpuStorage::F32(y), Shape::from((b, out))))
    }

    fn bwd(&self, weight: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let (out, v) = weight.dims2()?;
        self.check(v)?;
        let (pairs, values) = (&self.pairs, &self.values);
        // gᵀ (out, B)
        let gt = grad_res.to_dtype(DType::F32)?.t()?.contiguous()?;
        let gt = gt.flatten_all()?.to_vec1::<f32>()?;
        let b = pairs.documents();
        let mut dw = vec![0f32; out * v];
        if b > 0 {
            dw.par_chunks_mut(v)
                .zip(gt.par_chunks(b))
                .for_each(|(dw, g)| {
                    for (d, &g) in g.iter().enumerate() {
                        let r = pairs.of(d);
                        for (&id, &x) in pairs.ids[r.clone()].iter().zip(&values[r]) {
                            dw[id as usize] += x * g;
                        }
                    }
                });
        }
        Ok(Some(Tensor::from_vec(dw, (out, v), weight.device())?))
    }
}

/// The sparse first layer: y = x W^T + b for x over the vocabulary, with W stored (H, V) as in
/// a dense `Linear` so initialisation and saved shapes match one.
#[derive(Debug, Clone)]
struct BagLinear {
    weight: Tensor,
    bias: Tensor,
}

impl BagLinear {
    fn load(vb: VarBuilder, vocab: usize, out: usize) -> Result<Self> {
        Ok(Self {
            weight: vb.get((out, vocab), "weight")?,
            bias: vb.get(out, "bias")?,
        })
    }

    /// The input `values` of the batch's pairs (N,) → (B, out).
    fn forward(&self, batch: &BagBatch, values: Vec<f32>) -> Result<Tensor> {
        batch
            .product(&self.weight, values)?
            .broadcast_add(&self.bias) // (B, out)
    }
}

/// Two ReLU layers over the bag, shared by NVDM and NASH.
#[derive(Debug, Clone)]
struct BagEncoder {
    input: BagLinear,
    hidden: Linear,
}

impl BagEncoder {
    fn load(vb: VarBuilder, vocab: usize, hidden: usize) -> Result<Self> {
        Ok(Self {
            input: BagLinear::load(vb.pp("input"), vocab, hidden)?,
            hidden: linear(hidden, hidden, vb.pp("hidden"))?,
        })
    }

    fn forward(&self, batch: &BagBatch, values: Vec<f32>) -> Result<Tensor> {
        let h = self.input.forward(batch, values)?.relu()?; // (B, H)
        self.hidden.forward(&h)?.relu() // (B, H)
    }
}

/// The softmax decoder over the vocabulary: NLL of each document's words given z.
#[derive(Debug, Clone)]
struct WordDecoder {
    out: Linear,
}

impl WordDecoder {
    fn load(vb: VarBuilder, latent: usize, vocab: usize) -> Result<Self> {
        Ok(Self {
            out: linear(latent, vocab, vb)?,
        })
    }

    /// −Σ_w c_w log p(w | z) per document, (B,).
    fn nll(&self, z: &Tensor, batch: &BagBatch) -> Result<Tensor> {
        let logits = self.out.forward(z)?; // (B, V)
        bag_nll(&logits, batch) // (B,)
    }

    fn log_probs(&self, z: &Tensor) -> Result<Tensor> {
        candle_nn::ops::log_softmax(&self.out.forward(z)?, D::Minus1) // (B, V)
    }
}

/// −Σ_{n ∈ d} counts[n] log softmax(logits[d])[ids[n]] per document d, (B,), from logits
/// (B, V) and the batch's pairs.
///
/// One fused op: the stock `log_softmax` + `index_select` composition makes several full
/// (B × V) passes and allocations forward and backward, which was most of a training step. The
/// gradient is N_d softmax(logits[d]) − counts scattered over the vocabulary.
pub fn bag_nll(logits: &Tensor, batch: &BagBatch) -> Result<Tensor> {
    logits
        .to_dtype(DType::F32)?
        .contiguous()?
        .apply_op1(BagNll {
            pairs: batch.pairs.clone(),
        })
}

struct BagNll {
    pairs: Arc<Pairs>,
}

impl BagNll {
    fn check(&self, b: usize, v: usize) -> Result<()> {
        if b != self.pairs.documents() {
            candle_core::bail!(
                "bag_nll: {b} rows of logits for {} documents",
                self.pairs.documents()
            );
        }
        self.pairs.check_ids(v)
    }
}

/// The contiguous f32 data behind a CPU tensor argument.
fn cpu_slice<'a, T: candle_core::WithDType>(s: &'a CpuStorage, l: &Layout) -> Result<&'a [T]> {
    let (a, b) = l
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg("bag ops expect contiguous inputs".into()))?;
    Ok(&T::cpu_storage_as_slice(s)?[a..b])
}

/// log Σ exp(row), numerically stable.
fn log_sum_exp(row: &[f32]) -> f32 {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f32 = row.iter().map(|&x| (x - max).exp()).sum();
    max + sum.ln()
}

impl CustomOp1 for BagNll {
    fn name(&self) -> &'static str {
        "bag-nll"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (b, v) = l.shape().dims2()?;
        let logits = cpu_slice::<f32>(s, l)?;
        self.check(b, v)?;
        let pairs = &self.pairs;
        let out: Vec<f32> = logits
            .par_chunks(v.max(1))
            .take(b)
            .enumerate()
            .map(|(d, row)| {
                let lse = log_sum_exp(row);
                let r = pairs.of(d);
                pairs.ids[r.clone()]
                    .iter()
                    .zip(&pairs.counts[r])
                    .filter(|(_, &c)| c != 0.0)
                    .map(|(&id, &c)| c * (lse - row[id as usize]))
                    .sum()
            })
            .collect();
        Ok((CpuStorage::F32(out), Shape::from(b)))
    }

    fn bwd(&self, logits: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let (b, v) = logits.dims2()?;
        self.check(b, v)?;
        let logits_v = logits.flatten_all()?.to_vec1::<f32>()?;
        let grad_v = grad_res.to_dtype(DType::F32)?.to_vec1::<f32>()?;
        let pairs = &self.pairs;
        let mut grad = vec![0f32; b * v];
        if v > 0 {
            grad.par_chunks_mut(v)
                .zip(logits_v.par_chunks(v))
                .zip(grad_v.par_iter())
                .enumerate()
                .for_each(|(d, ((g_row, row), &g))| {
                    let r = pairs.of(d);
                    let (ids, counts) = (&pairs.ids[r.clone()], &pairs.counts[r]);
                    let total: f32 = counts.iter().sum();
                    let lse = log_sum_exp(row);
                    let scale = g * total;
                    for (gi, &x) in g_row.iter_mut().zip(row) {
                        *gi = scale * (x - lse).exp();
                    }
                    for (&id, &c) in ids.iter().zip(counts) {
                        g_row[id as usize] -= g * c;
                    }
                });
        }
        Ok(Some(Tensor::from_vec(grad, (b, v), logits.device())?))
    }
}

/// Per-document loss terms of one batch.
#[derive(Debug, Clone)]
pub struct BowLoss {
    /// −log p(d | z) with z sampled, (B,).
    pub nll: Tensor,
    /// KL to the prior, (B,); for NASH with learned noise it includes the noise channel's rate.
    pub kl: Tensor,
    /// Cross-entropy of the supervised NASH variant's label classifier, (B,), when the model
    /// has one and the batch carries labels.
    pub supervised: Option<Tensor>,
}

/// Neural Variational Document Model.
#[derive(Debug, Clone)]
pub struct Nvdm {
    encoder: BagEncoder,
    mu: Linear,
    logvar: Linear,
    decoder: WordDecoder,
    idf: Option<Tensor>,
    pub cfg: NvdmConfig,
}

impl Nvdm {
    pub fn load(vb: VarBuilder, cfg: &NvdmConfig) -> Result<Self> {
        let (v, h, l) = (cfg.vocab_size, cfg.hidden_dim, cfg.latent_dim);
        Ok(Self {
            encoder: BagEncoder::load(vb.pp("encoder"), v, h)?,
            mu: linear(h, l, vb.pp("mu"))?,
            logvar: linear(h, l, vb.pp("logvar"))?,
            decoder: WordDecoder::load(vb.pp("decoder"), l, v)?,
            idf: load_idf(&vb, cfg.input, v)?,
            cfg: cfg.clone(),
        })
    }

    pub fn encode(&self, batch: &BagBatch) -> Result<LatentParams> {
        let x = batch.input_values(self.cfg.input, self.idf.as_ref())?; // (N,)
        let h = self.encoder.forward(batch, x)?; // (B, H)
        Ok(LatentParams {
            kind: LatentKind::Gaussian,
            loc: self.mu.forward(&h)?,              // (B, L)
            logvar: Some(self.logvar.forward(&h)?), // (B, L)
        })
    }

    pub fn loss(&self, batch: &BagBatch, rng: &mut StdRng) -> Result<BowLoss> {
        let params = self.encode(batch)?;
        let z = params.training_sample(rng, 1.0)?; // (B, L)
        Ok(BowLoss {
            nll: self.decoder.nll(&z, batch)?,
            kl: params.kl()?,
            supervised: None,
        })
    }

    /// NLL of each document with z read as `mode`, (B,).
    pub fn nll(&self, batch: &BagBatch, mode: CodeMode, rng: &mut StdRng) -> Result<Tensor> {
        let z = self.encode(batch)?.code(mode, rng)?;
        self.decoder.nll(&z, batch)
    }

    /// The decoder's word vectors, (V, L): row w is how z moves word w's logit.
    pub fn word_vectors(&self) -> &Tensor {
        self.decoder.out.weight()
    }

    /// log p(w | z) for each row of z, (B, V).
    pub fn word_log_probs(&self, z: &Tensor) -> Result<Tensor> {
        self.decoder.log_probs(z)
    }
}

/// Neural Architecture for Semantic Hashing.
#[derive(Debug, Clone)]
pub struct Nash {
    encoder: BagEncoder,
    logits: Linear,
    /// log σ² of the training noise (learned-noise variant only).
    noise: Option<Linear>,
    /// The supervised variant's MLP from the (noisy) code to the labels.
    classifier: Option<(Linear, Linear)>,
    decoder: WordDecoder,
    idf: Option<Tensor>,
    pub cfg: NashConfig,
}

impl Nash {
    pub fn load(vb: VarBuilder, cfg: &NashConfig) -> Result<Self> {
        let (v, h, l) = (cfg.vocab_size, cfg.hidden_dim, cfg.latent_dim);
        let noise = match cfg.noise {
            NashNoise::Learned => Some(linear(h, l, vb.pp("noise"))?),
            _ => None,
        };
        let classifier = match cfg.labels {
            0 => None,
            n => Some((
                linear(l, h, vb.pp("classifier.hidden"))?,
                linear(h, n, vb.pp("classifier.out"))?,
            )),
        };
        Ok(Self {
            encoder: BagEncoder::load(vb.pp("encoder"), v, h)?,
            logits: linear(h, l, vb.pp("logits"))?,
            noise,
            classifier,
            decoder: WordDecoder::load(vb.pp("decoder"), l, v)?,
            idf: load_idf(&vb, cfg.input, v)?,
            cfg: cfg.clone(),
        })
    }

    fn hidden(&self, batch: &BagBatch) -> Result<Tensor> {
        let x = batch.input_values(self.cfg.input, self.idf.as_ref())?; // (N,)
        self.encoder.forward(batch, x) // (B, H)
    }

    /// Bit logits l; p = σ(l), codes step(p − ½).
    pub fn encode(&self, batch: &BagBatch) -> Result<LatentParams> {
        let h = self.hidden(batch)?;
        Ok(LatentParams {
            kind: LatentKind::BinaryVae,
            loc: self.logits.forward(&h)?, // (B, L)
            logvar: None,
        })
    }

    pub fn loss(&self, batch: &BagBatch, rng: &mut StdRng) -> Result<BowLoss> {
        let h = self.hidden(batch)?; // (B, H)
        let params = LatentParams {
            kind: LatentKind::BinaryVae,
            loc: self.logits.forward(&h)?,
            logvar: None,
        };
        let bits = params.training_sample(rng, 1.0)?; // (B, L), straight-through
        let mut kl = params.kl()?; // (B,)
        let z = match (&self.cfg.noise, &self.noise) {
            (NashNoise::Fixed { std }, _) if *std > 0.0 => {
                let eps = standard_normal(rng, bits.dims2()?, bits.device())?;
                (&bits + (eps * *std)?)?
            }
            (NashNoise::Learned, Some(head)) => {
                let logvar = head.forward(&h)?; // (B, L)
                let eps = standard_normal(rng, bits.dims2()?, bits.device())?;
                let std = (&logvar * 0.5)?.exp()?;
                // Rate of the Gaussian channel: KL(N(0, σ²) ‖ N(0, 1)) = ½ (σ² − 1 − log σ²).
                let rate = (((logvar.exp()? - 1.0)? - &logvar)? * 0.5)?.sum(1)?;
                kl = (kl + rate)?;
                (&bits + (std * eps)?)?
            }
            _ => bits,
        };
        let supervised = match (&self.classifier, &batch.labels) {
            (Some((hidden, out)), Some(labels)) => {
                let logits = out.forward(&hidden.forward(&z)?.relu()?)?; // (B, labels)
                let log_p = candle_nn::ops::log_softmax(&logits, D::Minus1)?; // (B, labels)
                let picked = log_p.gather(&labels.unsqueeze(1)?, 1)?.squeeze(1)?; // (B,)
                Some(picked.neg()?)
            }
            _ => None,
        };
        Ok(BowLoss {
            nll: self.decoder.nll(&z, batch)?,
            kl,
            supervised,
        })
    }

    /// NLL of each document with z read as `mode` (no training noise), (B,).
    pub fn nll(&self, batch: &BagBatch, mode: CodeMode, rng: &mut StdRng) -> Result<Tensor> {
        let z = self.encode(batch)?.code(mode, rng)?;
        self.decoder.nll(&z, batch)
    }

    pub fn word_vectors(&self) -> &Tensor {
        self.decoder.out.weight()
    }

    pub fn word_log_probs(&self, z: &Tensor) -> Result<Tensor> {
        self.decoder.log_probs(z)
    }
}

/// Random-hyperplane locality-sensitive hashing over TF-IDF.
#[derive(Debug, Clone)]
pub struct Lsh {
    hyperplanes: Tensor,
    idf: Tensor,
    pub cfg: LshConfig,
}

impl Lsh {
    pub fn load(vb: VarBuilder, cfg: &LshConfig) -> Result<Self> {
        Ok(Self {
            hyperplanes: vb.get((cfg.bits, cfg.vocab_size), "hyperplanes")?,
            idf: vb.get(cfg.vocab_size, "idf")?,
            cfg: cfg.clone(),
        })
    }

    /// Projections w_j · tfidf(d), (B, L): the "logits" whose signs are the bits.
    pub fn project(&self, batch: &BagBatch) -> Result<Tensor> {
        let x = batch.input_values(BowInput::Tfidf, Some(&self.idf))?; // (N,)
        batch.product(&self.hyperplanes.detach(), x) // (B, L)
    }

    /// As latent parameters whose rounded code is step(projection).
    pub fn encode(&self, batch: &BagBatch) -> Result<LatentParams> {
        Ok(LatentParams {
            kind: LatentKind::Binary,
            loc: self.project(batch)?,
            logvar: None,
        })
    }
}

fn load_idf(vb: &VarBuilder, input: BowInput, vocab: usize) -> Result<Option<Tensor>> {
    match input {
        BowInput::Tfidf => Ok(Some(vb.get(vocab, "idf")?)),
        BowInput::Counts => Ok(None),
    }
}

/// Smoothed inverse document frequency, as scikit-learn's: ln((1 + n) / (1 + df)) + 1.
pub fn idf(document_frequency: &[u32], documents: usize) -> Vec<f32> {
    let n = documents as f64;
    document_frequency
        .iter()
        .map(|&df| (((1.0 + n) / (1.0 + df as f64)).ln() + 1.0) as f32)
        .collect()
}

/// Any bag-of-words model.
#[derive(Debug, Clone)]
pub enum BowModel {
    Nvdm(Nvdm),
    Nash(Nash),
    Lsh(Lsh),
}

impl BowModel {
    pub fn latent_dim(&self) -> usize {
        match self {
            BowModel::Nvdm(m) => m.cfg.latent_dim,
            BowModel::Nash(m) => m.cfg.latent_dim,
            BowModel::Lsh(m) => m.cfg.bits,
        }
    }

    /// Codes are bits.
    pub fn is_binary(&self) -> bool {
        !matches!(self, BowModel::Nvdm(_))
    }

    /// The encoder's latent parameters: μ (NVDM), bit logits (NASH) or projections (LSH).
    pub fn encode(&self, batch: &BagBatch) -> Result<LatentParams> {
        match self {
            BowModel::Nvdm(m) => m.encode(batch),
            BowModel::Nash(m) => m.encode(batch),
            BowModel::Lsh(m) => m.encode(batch),
        }
    }

    /// The training loss; LSH has none.
    pub fn loss(&self, batch: &BagBatch, rng: &mut StdRng) -> Result<BowLoss> {
        match self {
            BowModel::Nvdm(m) => m.loss(batch, rng),
            BowModel::Nash(m) => m.loss(batch, rng),
            BowModel::Lsh(_) => candle_core::bail!("an lsh model has nothing to train"),
        }
    }

    /// NLL per document under `mode` (None for LSH, which has no decoder).
    pub fn nll(
        &self,
        batch: &BagBatch,
        mode: CodeMode,
        rng: &mut StdRng,
    ) -> Result<Option<Tensor>> {
        match self {
            BowModel::Nvdm(m) => m.nll(batch, mode, rng).map(Some),
            BowModel::Nash(m) => m.nll(batch, mode, rng).map(Some),
            BowModel::Lsh(_) => Ok(None),
        }
    }

    /// The decoder's word vectors (V, L), if the model has a decoder.
    pub fn word_vectors(&self) -> Option<&Tensor> {
        match self {
            BowModel::Nvdm(m) => Some(m.word_vectors()),
            BowModel::Nash(m) => Some(m.word_vectors()),
            BowModel::Lsh(_) => None,
        }
    }

    /// log p(w | z) (B, V), if the model has a decoder.
    pub fn word_log_probs(&self, z: &Tensor) -> Result<Option<Tensor>> {
        match self {
            BowModel::Nvdm(m) => m.word_log_probs(z).map(Some),
            BowModel::Nash(m) => m.word_log_probs(z).map(Some),
            BowModel::Lsh(_) => Ok(None),
        }
    }

    pub fn device(&self) -> &Device {
        match self {
            BowModel::Nvdm(m) => m.decoder.out.weight().device(),
            BowModel::Nash(m) => m.decoder.out.weight().device(),
            BowModel::Lsh(m) => m.hyperplanes.device(),
        }
    }
}

/// The names of parameters that are data statistics, not trained (kept out of the optimiser).
pub fn is_buffer(name: &str) -> bool {
    name == "idf" || name == "hyperplanes"
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_nn::VarMap;
    use rand::SeedableRng;

    #[test]
    fn a_batch_of_too_many_pairs_is_refused_before_it_is_built() {
        // 16,385 documents sharing one bag of 4,097 pairs: 67,129,345 pairs, past 2^26.
        let bag: Vec<(u32, f32)> = (0..4_097u32).map(|i| (i, 1.0)).collect();
        let docs: Vec<&[(u32, f32)]> = vec![bag.as_slice(); 16_385];
        let err = BagBatch::new(&docs, &Device::Cpu).expect_err("refused");
        assert!(
            err.to_string().contains("use fewer documents per batch"),
            "{err}"
        );
        // Within the bound it is built, its documents' pairs one after the other.
        let batch = BagBatch::new(&docs[..3], &Device::Cpu).expect("built");
        assert_eq!(batch.pairs.ids.len(), 3 * 4_097);
        assert_eq!(batch.pairs.starts, vec![0, 4_097, 2 * 4_097, 3 * 4_097]);
    }

    fn close(a: f32, b: f64, tol: f64) {
        assert!((a as f64 - b).abs() < tol, "{a} vs {b}");
    }

    /// The documents of `docs` as a dense (B, V) matrix of counts.
    fn dense(docs: &[Vec<(u32, f32)>], v: usize, dev: &Device) -> Result<Tensor> {
        let mut m = vec![0f32; docs.len() * v];
        for (r, d) in docs.iter().enumerate() {
            for &(id, c) in d {
                m[r * v + id as usize] += c;
            }
        }
        Tensor::from_vec(m, (docs.len(), v), dev)
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> Result<f32> {
        (a - b)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()
    }

    #[test]
    fn sparse_first_layer_equals_the_dense_product_forward_and_backward() -> Result<()> {
        let dev = Device::Cpu;
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &dev);
        let layer = BagLinear::load(vb, 7, 3)?;
        crate::model::seeded_init(&varmap, 1)?;
        // An empty document, one word twice (two pairs of one id), a document of one word and
        // one of three: four documents, three outputs (a mixed-up stride would not fit).
        let docs: Vec<Vec<(u32, f32)>> = vec![
            vec![(1, 2.0), (4, 1.0), (1, 0.5)],
            vec![],
            vec![(6, 3.0)],
            vec![(0, 1.0), (2, 2.0), (5, 1.0)],
        ];
        let refs: Vec<&[(u32, f32)]> = docs.iter().map(|d| d.as_slice()).collect();
        let batch = BagBatch::new(&refs, &dev)?;
        let sparse = layer.forward(&batch, batch.pairs.counts.clone())?;
        let want = dense(&docs, 7, &dev)?
            .matmul(&layer.weight.t()?)?
            .broadcast_add(&layer.bias)?;
        assert_eq!(sparse.dims(), &[4, 3]);
        assert!(max_diff(&sparse, &want)? < 1e-5);
        // tf-idf values: the dense product of the normalised tf-idf rows.
        let idf: Vec<f32> = (0..7).map(|i| 1.0 + i as f32 * 0.5).collect();
        let idf_t = Tensor::new(idf.as_slice(), &dev)?;
        let tfidf = layer.forward(&batch, batch.input_values(BowInput::Tfidf, Some(&idf_t))?)?;
        let rows: Vec<Vec<(u32, f32)>> = docs
            .iter()
            .map(|d| {
                let x: Vec<(u32, f32)> = d.iter().map(|&(i, c)| (i, c * idf[i as usize])).collect();
                let norm = x.iter().map(|p| p.1 * p.1).sum::<f32>().sqrt().max(1e-12);
                x.into_iter().map(|(i, v)| (i, v / norm)).collect()
            })
            .collect();
        let want_tfidf = dense(&rows, 7, &dev)?
            .matmul(&layer.weight.t()?)?
            .broadcast_add(&layer.bias)?;
        assert!(max_diff(&tfidf, &want_tfidf)? < 1e-5);
        // The weight's gradient is the dense product's, for any upstream gradient.
        let up = Tensor::new(
            &[
                [1f32, -2.0, 0.5],
                [3.0, 1.0, 1.0],
                [-1.0, 0.25, 2.0],
                [0.5, 0.5, -3.0],
            ],
            &dev,
        )?;
        let weight = varmap
            .all_vars()
            .into_iter()
            .find(|v| v.dims() == [3, 7])
            .unwrap();
        let g_sparse = (sparse * &up)?.sum_all()?.backward()?;
        let g_dense = (want * &up)?.sum_all()?.backward()?;
        let (a, b) = (
            g_sparse.get(&weight).unwrap(),
            g_dense.get(&weight).unwrap(),
        );
        assert!(max_diff(a, b)? < 1e-5, "{a} vs {b}");
        assert!(b.abs()?.sum_all()?.to_scalar::<f32>()? > 0.0);
        // A word id past the vocabulary is an error, not a read out of bounds.
        let bad = BagBatch::new(&[&[(7, 1.0)]], &dev)?;
        assert!(layer.forward(&bad, vec![1.0]).is_err());
        Ok(())
    }

    #[test]
    fn fused_bag_nll_matches_stock_forward_and_backward() -> Result<()> {
        let dev = Device::Cpu;
        let vals: Vec<f32> = (0..3 * 7)
            .map(|i| ((i * 37 % 11) as f32 - 5.0) * 0.3)
            .collect();
        let x = candle_core::Var::from_vec(vals, (3, 7), &dev)?;
        let docs: Vec<Vec<(u32, f32)>> = vec![vec![(1, 2.0), (4, 1.0)], vec![(0, 1.0)], vec![]];
        let refs: Vec<&[(u32, f32)]> = docs.iter().map(|d| d.as_slice()).collect();
        let batch = BagBatch::new(&refs, &dev)?;
        let w = Tensor::new(&[1f32, -0.5, 2.0], &dev)?;
        let fused = bag_nll(x.as_tensor(), &batch)?;
        let lsm = candle_nn::ops::log_softmax(x.as_tensor(), D::Minus1)?;
        let stock = (lsm * dense(&docs, 7, &dev)?)?.sum(1)?.neg()?;
        let diff = max_diff(&fused, &stock)?;
        assert!(diff < 1e-5, "forward differs by {diff}");
        let g_fused = (fused * &w)?.sum_all()?.backward()?;
        let g_stock = (stock * &w)?.sum_all()?.backward()?;
        let (a, b) = (g_fused.get(&x).unwrap(), g_stock.get(&x).unwrap());
        let diff = max_diff(a, b)?;
        assert!(diff < 1e-5, "gradient differs by {diff}");
        // Logits of another batch's size are refused.
        assert!(bag_nll(&x.as_tensor().narrow(0, 0, 2)?, &batch).is_err());
        Ok(())
    }

    #[test]
    fn tfidf_input_has_unit_norm_per_document() -> Result<()> {
        let dev = Device::Cpu;
        let docs: Vec<Vec<(u32, f32)>> = vec![vec![(0, 2.0), (2, 1.0)], vec![(1, 4.0)]];
        let refs: Vec<&[(u32, f32)]> = docs.iter().map(|d| d.as_slice()).collect();
        let batch = BagBatch::new(&refs, &dev)?;
        let idf = Tensor::new(&[1f32, 5.0, 3.0], &dev)?;
        let x = batch.input_values(BowInput::Tfidf, Some(&idf))?;
        let (a, b) = (2.0f64, 3.0f64);
        let n = (a * a + b * b).sqrt();
        close(x[0], a / n, 1e-6);
        close(x[1], b / n, 1e-6);
        close(x[2], 1.0, 1e-6);
        Ok(())
    }

    #[test]
    fn decoder_nll_counts_every_occurrence() -> Result<()> {
        let dev = Device::Cpu;
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &dev);
        let dec = WordDecoder::load(vb, 2, 5)?;
        crate::model::seeded_init(&varmap, 3)?;
        let docs: Vec<Vec<(u32, f32)>> = vec![vec![(1, 2.0), (3, 1.0)]];
        let refs: Vec<&[(u32, f32)]> = docs.iter().map(|d| d.as_slice()).collect();
        let batch = BagBatch::new(&refs, &dev)?;
        let z = Tensor::new(&[[0.5f32, -1.0]], &dev)?;
        let nll = dec.nll(&z, &batch)?.to_vec1::<f32>()?;
        let logp = dec.log_probs(&z)?.to_vec2::<f32>()?;
        close(nll[0], -(2.0 * logp[0][1] as f64 + logp[0][3] as f64), 1e-5);
        Ok(())
    }

    #[test]
    fn nash_kl_is_the_bernoulli_kl_and_learned_noise_adds_the_rate() -> Result<()> {
        let dev = Device::Cpu;
        for noise in [NashNoise::None, NashNoise::Learned] {
            let cfg = NashConfig {
                vocab_size: 6,
                hidden_dim: 4,
                latent_dim: 3,
                input: BowInput::Counts,
                noise,
                labels: 0,
            };
            let varmap = VarMap::new();
            let vb = VarBuilder::from_varmap(&varmap, DType::F32, &dev);
            let model = Nash::load(vb, &cfg)?;
            crate::model::seeded_init(&varmap, 5)?;
            let docs: Vec<Vec<(u32, f32)>> = vec![vec![(4, 1.0), (5, 2.0)]];
            let refs: Vec<&[(u32, f32)]> = docs.iter().map(|d| d.as_slice()).collect();
            let batch = BagBatch::new(&refs, &dev)?;
            let logits = model.encode(&batch)?.loc.to_vec2::<f32>()?;
            let mut want: f64 = logits[0]
                .iter()
                .map(|&l| {
                    let p = 1.0 / (1.0 + (-(l as f64)).exp());
                    p * p.ln() + (1.0 - p) * (1.0 - p).ln() + 2f64.ln()
                })
                .sum();
            if let Some(head) = &model.noise {
                let h = model.hidden(&batch)?;
                for lv in head.forward(&h)?.to_vec2::<f32>()?[0].iter() {
                    let lv = *lv as f64;
                    want += 0.5 * (lv.exp() - 1.0 - lv);
                }
            }
            let mut rng = StdRng::seed_from_u64(0);
            let kl = model.loss(&batch, &mut rng)?.kl.to_vec1::<f32>()?;
            close(kl[0], want, 1e-5);
        }
        Ok(())
    }
}
