//! Bag-of-words document models: NVDM (Miao et al., 2016), NASH (Shen et al., 2018) and the
//! random-hyperplane LSH baseline (Charikar, 2002).
//!
//! A document is a sparse bag `(word id, count)`. The encoders' first layer is a linear map
//! over the whole vocabulary, but it is computed by gathering only the columns of the words a
//! batch contains and multiplying by a (B, N) matrix of their input values, N the number of
//! (document, word) pairs; the result equals the dense product at a fraction of its cost.
//!
//! * **NVDM**: MLP encoder → N(μ, σ²) → softmax decoder over the vocabulary, which scores each
//!   word of the document: log p(d | z) = Σ_w c_w log softmax(R z + b)_w.
//! * **NASH**: the same MLP → logits → Bernoulli bits with a straight-through gradient and KL
//!   to Bernoulli(½); optionally Gaussian noise is added to the bits while training, with a
//!   fixed σ or a σ(x) the encoder predicts. Codes at inference are step(p − ½).
//! * **LSH**: no training: bit j is step(w_j · tfidf(d)) for random Gaussian hyperplanes w_j.

use candle_core::{CpuStorage, CustomOp3, DType, Device, Layout, Module, Result, Shape, Tensor, D};
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

/// A batch of documents as sparse bags.
#[derive(Debug, Clone)]
pub struct BagBatch {
    /// Word ids of every (document, word) pair, (N,) u32.
    pub ids: Tensor,
    /// counts[d, n] = count of word `ids[n]` if pair n belongs to document d, else 0; (B, N).
    pub counts: Tensor,
    /// Words per document (the sum of its counts).
    pub lengths: Vec<f32>,
    pub batch_size: usize,
    /// Label ids of the documents, (B,) u32, for the supervised NASH variant.
    pub labels: Option<Tensor>,
}

/// Most values of one batch's pair matrix `counts` (documents × pairs): 2^28, 1 GB.
pub const MAX_BATCH_CELLS: usize = 1 << 28;

impl BagBatch {
    /// Builds a batch from bags of `(word id, count)`. Empty bags are allowed (their code comes
    /// from the biases alone); an all-empty batch gets one zero-count pair so shapes stay valid.
    pub fn new(docs: &[&[(u32, f32)]], dev: &Device) -> Result<Self> {
        let b = docs.len();
        if b == 0 {
            candle_core::bail!("empty batch");
        }
        let n = docs.iter().map(|d| d.len()).sum::<usize>().max(1);
        if b.saturating_mul(n) > MAX_BATCH_CELLS {
            candle_core::bail!(
                "a batch of {b} documents with {n} (document, word) pairs in all needs a {b} × {n} \
                 matrix, more than {MAX_BATCH_CELLS} values: use fewer documents per batch"
            );
        }
        let mut ids = Vec::with_capacity(n);
        let mut counts = vec![0f32; b * n];
        let mut lengths = Vec::with_capacity(b);
        for (row, doc) in docs.iter().enumerate() {
            let mut len = 0f32;
            for &(id, c) in doc.iter() {
                counts[row * n + ids.len()] = c;
                ids.push(id);
                len += c;
            }
            lengths.push(len);
        }
        if ids.is_empty() {
            ids.push(0);
        }
        Ok(Self {
            ids: Tensor::from_vec(ids, n, dev)?,
            counts: Tensor::from_vec(counts, (b, n), dev)?,
            lengths,
            batch_size: b,
            labels: None,
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
        let dev = self.counts.device().clone();
        self.labels = Some(Tensor::from_slice(labels, labels.len(), &dev)?);
        Ok(self)
    }

    /// Total words in the batch.
    pub fn words(&self) -> f64 {
        self.lengths.iter().map(|&l| l as f64).sum()
    }

    /// The encoder's input values per pair, (B, N): counts, or count × idf normalised to unit
    /// L2 norm per document.
    fn input_values(&self, input: BowInput, idf: Option<&Tensor>) -> Result<Tensor> {
        match (input, idf) {
            (BowInput::Counts, _) => Ok(self.counts.clone()),
            (BowInput::Tfidf, Some(idf)) => {
                let pair_idf = idf.detach().index_select(&self.ids, 0)?; // (N,)
                let x = self.counts.broadcast_mul(&pair_idf.unsqueeze(0)?)?; // (B, N)
                let norm = x.sqr()?.sum_keepdim(1)?.sqrt()?.clamp(1e-12, f64::MAX)?; // (B, 1)
                x.broadcast_div(&norm)
            }
            (BowInput::Tfidf, None) => candle_core::bail!("tf-idf input without an idf vector"),
        }
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

    /// values (B, N) over the pairs of `ids` (N,) → (B, out).
    fn forward(&self, values: &Tensor, ids: &Tensor) -> Result<Tensor> {
        let cols = self.weight.index_select(ids, 1)?; // (H, N)
        values.matmul(&cols.t()?)?.broadcast_add(&self.bias) // (B, H)
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

    fn forward(&self, values: &Tensor, ids: &Tensor) -> Result<Tensor> {
        let h = self.input.forward(values, ids)?.relu()?; // (B, H)
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
        bag_nll(&logits, &batch.ids, &batch.counts) // (B,)
    }

    fn log_probs(&self, z: &Tensor) -> Result<Tensor> {
        candle_nn::ops::log_softmax(&self.out.forward(z)?, D::Minus1) // (B, V)
    }
}

/// −Σ_n counts[d, n] log softmax(logits[d])[ids[n]] per row d, (B,), from logits (B, V), pair
/// ids (N,) and the pair counts (B, N).
///
/// On CPU this is one fused op: the stock `log_softmax` + `index_select` composition makes
/// several full (B × V) passes and allocations forward and backward, which was most of a
/// training step. The gradient is N_d softmax(logits[d]) − counts scattered over the vocabulary.
pub fn bag_nll(logits: &Tensor, ids: &Tensor, counts: &Tensor) -> Result<Tensor> {
    if logits.device().is_cpu() && logits.dtype() == DType::F32 {
        logits
            .contiguous()?
            .apply_op3(&ids.contiguous()?, &counts.contiguous()?, BagNll)
    } else {
        let logp = candle_nn::ops::log_softmax(logits, D::Minus1)?; // (B, V)
        let pair_logp = logp.index_select(ids, 1)?; // (B, N)
        (pair_logp * counts)?.sum(1)?.neg()
    }
}

struct BagNll;

/// The contiguous f32 or u32 data behind a CPU tensor argument.
fn cpu_slice<'a, T: candle_core::WithDType>(s: &'a CpuStorage, l: &Layout) -> Result<&'a [T]> {
    let (a, b) = l
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg("bag_nll expects contiguous inputs".into()))?;
    Ok(&T::cpu_storage_as_slice(s)?[a..b])
}

/// log Σ exp(row), numerically stable.
fn log_sum_exp(row: &[f32]) -> f32 {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f32 = row.iter().map(|&x| (x - max).exp()).sum();
    max + sum.ln()
}

impl CustomOp3 for BagNll {
    fn name(&self) -> &'static str {
        "bag-nll"
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
        let (b, v) = l1.shape().dims2()?;
        let logits = cpu_slice::<f32>(s1, l1)?;
        let ids = cpu_slice::<u32>(s2, l2)?;
        let counts = cpu_slice::<f32>(s3, l3)?;
        let n = ids.len();
        if counts.len() != b * n {
            candle_core::bail!("bag_nll: counts must be ({b}, {n})");
        }
        if let Some(&bad) = ids.iter().find(|&&i| i as usize >= v) {
            candle_core::bail!("bag_nll: word id {bad} outside the vocabulary of {v}");
        }
        let out: Vec<f32> = logits
            .par_chunks(v)
            .zip(counts.par_chunks(n))
            .map(|(row, c)| {
                let lse = log_sum_exp(row);
                ids.iter()
                    .zip(c)
                    .filter(|(_, &c)| c != 0.0)
                    .map(|(&id, &c)| c * (lse - row[id as usize]))
                    .sum()
            })
            .collect();
        Ok((CpuStorage::F32(out), Shape::from(b)))
    }

    fn bwd(
        &self,
        logits: &Tensor,
        ids: &Tensor,
        counts: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (b, v) = logits.dims2()?;
        let logits_v = logits.flatten_all()?.to_vec1::<f32>()?;
        let ids_v = ids.to_vec1::<u32>()?;
        let counts_v = counts.flatten_all()?.to_vec1::<f32>()?;
        let grad_v = grad_res.to_vec1::<f32>()?;
        let n = ids_v.len();
        let mut grad = vec![0f32; b * v];
        grad.par_chunks_mut(v)
            .zip(logits_v.par_chunks(v))
            .zip(counts_v.par_chunks(n).zip(grad_v.par_iter()))
            .for_each(|((g_row, row), (c, &g))| {
                let total: f32 = c.iter().sum();
                let lse = log_sum_exp(row);
                let scale = g * total;
                for (gi, &x) in g_row.iter_mut().zip(row) {
                    *gi = scale * (x - lse).exp();
                }
                for (&id, &c) in ids_v.iter().zip(c) {
                    g_row[id as usize] -= g * c;
                }
            });
        let grad = Tensor::from_vec(grad, (b, v), logits.device())?;
        Ok((Some(grad), None, None))
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
        let x = batch.input_values(self.cfg.input, self.idf.as_ref())?; // (B, N)
        let h = self.encoder.forward(&x, &batch.ids)?; // (B, H)
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
        let x = batch.input_values(self.cfg.input, self.idf.as_ref())?; // (B, N)
        self.encoder.forward(&x, &batch.ids) // (B, H)
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
        let x = batch.input_values(BowInput::Tfidf, Some(&self.idf))?; // (B, N)
        let cols = self.hyperplanes.index_select(&batch.ids, 1)?; // (L, N)
        x.matmul(&cols.t()?) // (B, L)
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
    fn a_batch_whose_pair_matrix_would_pass_the_bound_is_refused_before_it_is_built() {
        // 16,385 documents sharing one bag of 16,385 pairs: 16,385 × 268,468,225 cells.
        let bag: Vec<(u32, f32)> = (0..16_385u32).map(|i| (i, 1.0)).collect();
        let docs: Vec<&[(u32, f32)]> = vec![bag.as_slice(); 16_385];
        let err = BagBatch::new(&docs, &Device::Cpu).err().expect("refused");
        assert!(
            err.to_string().contains("use fewer documents per batch"),
            "{err}"
        );
        // Within the bound it is built: 4 × 65,540 cells.
        assert!(BagBatch::new(&docs[..4], &Device::Cpu).is_ok());
    }

    fn close(a: f32, b: f64, tol: f64) {
        assert!((a as f64 - b).abs() < tol, "{a} vs {b}");
    }

    #[test]
    fn sparse_first_layer_equals_the_dense_product() -> Result<()> {
        let dev = Device::Cpu;
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &dev);
        let layer = BagLinear::load(vb, 7, 3)?;
        crate::model::seeded_init(&varmap, 1)?;
        let docs: Vec<Vec<(u32, f32)>> = vec![vec![(1, 2.0), (4, 1.0)], vec![], vec![(6, 3.0)]];
        let refs: Vec<&[(u32, f32)]> = docs.iter().map(|d| d.as_slice()).collect();
        let batch = BagBatch::new(&refs, &dev)?;
        let sparse = layer.forward(&batch.counts, &batch.ids)?.to_vec2::<f32>()?;
        let mut dense = vec![0f32; 3 * 7];
        for (r, d) in docs.iter().enumerate() {
            for &(id, c) in d {
                dense[r * 7 + id as usize] += c;
            }
        }
        let dense = Tensor::from_vec(dense, (3, 7), &dev)?;
        let want = dense
            .matmul(&layer.weight.t()?)?
            .broadcast_add(&layer.bias)?
            .to_vec2::<f32>()?;
        for (a, b) in sparse.iter().flatten().zip(want.iter().flatten()) {
            close(*a, *b as f64, 1e-5);
        }
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
        let fused = bag_nll(x.as_tensor(), &batch.ids, &batch.counts)?;
        let lsm = candle_nn::ops::log_softmax(x.as_tensor(), D::Minus1)?;
        let stock = (lsm.index_select(&batch.ids, 1)? * &batch.counts)?
            .sum(1)?
            .neg()?;
        let diff = (&fused - &stock)?.abs()?.max(0)?.to_scalar::<f32>()?;
        assert!(diff < 1e-5, "forward differs by {diff}");
        let g_fused = (fused * &w)?.sum_all()?.backward()?;
        let g_stock = (stock * &w)?.sum_all()?.backward()?;
        let (a, b) = (g_fused.get(&x).unwrap(), g_stock.get(&x).unwrap());
        let diff = (a - b)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?;
        assert!(diff < 1e-5, "gradient differs by {diff}");
        Ok(())
    }

    #[test]
    fn tfidf_input_has_unit_norm() -> Result<()> {
        let dev = Device::Cpu;
        let docs: Vec<Vec<(u32, f32)>> = vec![vec![(0, 2.0), (2, 1.0)]];
        let refs: Vec<&[(u32, f32)]> = docs.iter().map(|d| d.as_slice()).collect();
        let batch = BagBatch::new(&refs, &dev)?;
        let idf = Tensor::new(&[1f32, 5.0, 3.0], &dev)?;
        let x = batch
            .input_values(BowInput::Tfidf, Some(&idf))?
            .to_vec2::<f32>()?;
        let (a, b) = (2.0f64, 3.0f64);
        let n = (a * a + b * b).sqrt();
        close(x[0][0], a / n, 1e-6);
        close(x[0][1], b / n, 1e-6);
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
