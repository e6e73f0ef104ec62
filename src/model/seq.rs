//! The sequence autoencoder: bidirectional GRU encoder → latent → GRU decoder with teacher
//! forcing, one word-embedding table shared by encoder and decoder. Every latent kind of the
//! literature (see [`LatentKind`]) is a config switch on this one architecture.
//!
//! Tensors are time-major: token ids (T, B), states (T, B, H).

use std::sync::{Arc, Mutex};

use candle_core::{DType, Result, Tensor, D};
use candle_nn::{Embedding, Linear, Module, VarBuilder};
use serde::{Deserialize, Serialize};

use super::bf16::Precision;
use super::gru::{
    bidirectional, bidirectional_from_table, bidirectional_last, bidirectional_token_table,
    prepare_bidirectional, Gru, PreparedBidirectional, PreparedGru,
};
use super::latent::{LatentKind, LatentParams};
use super::ops::{linear_nll_inference, linear_nll_with};
use super::output_layer::PackedOutput;
use crate::vocab::{BOS, EOS};

/// How the encoder's states become one vector per sentence.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Summary {
    /// Final forward state ‖ final backward state.
    #[default]
    Last,
    /// Mean over time of the concatenated states.
    Mean,
    /// Additive attention over the concatenated states.
    Attention,
}

impl std::str::FromStr for Summary {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "last" => Ok(Summary::Last),
            "mean" => Ok(Summary::Mean),
            "attention" => Ok(Summary::Attention),
            _ => Err(format!(
                "unknown encoder summary `{s}` (expected last, mean or attention)"
            )),
        }
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Summary::Last => "last",
            Summary::Mean => "mean",
            Summary::Attention => "attention",
        })
    }
}

fn default_temperature() -> f64 {
    0.5
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct SeqConfig {
    pub vocab_size: usize,
    pub embed_dim: usize,
    pub hidden_dim: usize,
    /// Bits for the binary kinds, dimensions otherwise; ignored by `lm`.
    pub latent_dim: usize,
    pub latent: LatentKind,
    #[serde(default)]
    pub summary: Summary,
    /// Also feed z (through a highway layer) to every decoder input.
    #[serde(default)]
    pub z_every_step: bool,
    /// Gumbel-softmax temperature used in training.
    #[serde(default = "default_temperature")]
    pub gumbel_temperature: f64,
    /// An auxiliary network that predicts z from the decoder's states (mutual-information term).
    #[serde(default)]
    pub mi_head: bool,
    /// Longest sentence in words; longer input is truncated.
    pub max_len: usize,
}

impl SeqConfig {
    /// A small configuration for tests.
    pub fn tiny(vocab_size: usize, latent: LatentKind) -> Self {
        Self {
            vocab_size,
            embed_dim: 16,
            hidden_dim: 24,
            latent_dim: 8,
            latent,
            summary: Summary::Last,
            z_every_step: false,
            gumbel_temperature: 0.5,
            mi_head: false,
            max_len: 30,
        }
    }

    fn decoder_input_dim(&self) -> usize {
        self.embed_dim
            + if self.z_every_step && self.latent.has_latent() {
                self.latent_dim
            } else {
                0
            }
    }
}

/// Dropout masks for one training batch's decoder (see
/// [`SeqAutoencoder::sentence_nll_dropout`]): each entry is 0 with probability `p` and
/// 1 / (1 − p) otherwise, so the expected input and state are unchanged.
#[derive(Debug, Clone)]
pub struct Dropout {
    /// (T+1, B, E[+L]), multiplies the decoder's input vectors.
    pub inputs: Tensor,
    /// (T+1, B, H), multiplies the states the output layer reads.
    pub states: Tensor,
}

impl Dropout {
    /// Masks for `batch` drawn from `rng` with drop probability `p` in (0, 1).
    pub fn draw(
        model: &SeqAutoencoder,
        batch: &TokenBatch,
        p: f64,
        rng: &mut impl rand::Rng,
    ) -> Result<Self> {
        if !(p > 0.0 && p < 1.0) {
            candle_core::bail!("dropout must be within (0, 1), got {p}");
        }
        let (t, b) = batch.dec_in.dims2()?;
        let keep = 1.0 / (1.0 - p) as f32;
        let mut mask = |dim: usize| -> Result<Tensor> {
            let values: Vec<f32> = (0..t * b * dim)
                .map(|_| if rng.random::<f64>() < p { 0.0 } else { keep })
                .collect();
            Tensor::from_vec(values, (t, b, dim), model.device())
        };
        let inputs = mask(model.cfg.decoder_input_dim())?; // the embedding [+ z]
        let states = mask(model.cfg.hidden_dim)?;
        Ok(Self { inputs, states })
    }
}

/// A batch of equal-length sentences, time-major, ready for teacher forcing.
#[derive(Debug, Clone)]
pub struct TokenBatch {
    /// Encoder input: the words, (T, B).
    pub src: Tensor,
    /// Decoder input: <bos> then the words, (T+1, B).
    pub dec_in: Tensor,
    /// Decoder target: the words then <eos>, (T+1, B).
    pub targets: Tensor,
    pub batch_size: usize,
    /// Words per sentence (without <eos>).
    pub len: usize,
}

impl TokenBatch {
    /// Builds a batch from sentences that all have the same length. `dropped` optionally
    /// replaces decoder inputs (word dropout) and must have the same shape as `sentences`.
    pub fn new(
        sentences: &[&[u32]],
        dropped: Option<&[Vec<u32>]>,
        dev: &candle_core::Device,
    ) -> Result<Self> {
        let b = sentences.len();
        if b == 0 {
            candle_core::bail!("empty batch");
        }
        let len = sentences[0].len();
        if len == 0 {
            candle_core::bail!("a sentence in the batch has no words");
        }
        if let Some(bad) = sentences.iter().find(|s| s.len() != len) {
            candle_core::bail!(
                "batch sentences must have equal length ({len} vs {})",
                bad.len()
            );
        }
        let mut src = vec![0u32; len * b];
        let mut dec_in = vec![0u32; (len + 1) * b];
        let mut targets = vec![0u32; (len + 1) * b];
        for (j, s) in sentences.iter().enumerate() {
            let inputs: &[u32] = dropped.map(|d| d[j].as_slice()).unwrap_or(s);
            dec_in[j] = BOS;
            for t in 0..len {
                src[t * b + j] = s[t];
                dec_in[(t + 1) * b + j] = inputs[t];
                targets[t * b + j] = s[t];
            }
            targets[len * b + j] = EOS;
        }
        Ok(Self {
            src: Tensor::from_vec(src, (len, b), dev)?,
            dec_in: Tensor::from_vec(dec_in, (len + 1, b), dev)?,
            targets: Tensor::from_vec(targets, (len + 1, b), dev)?,
            batch_size: b,
            len,
        })
    }

    /// Target tokens (words plus <eos>) in the batch.
    pub fn target_tokens(&self) -> usize {
        (self.len + 1) * self.batch_size
    }
}

/// y = g ⊙ relu(W_h z) + (1 − g) ⊙ z with g = σ(W_g z): lets the decoder take z as is or
/// transformed at every step.
#[derive(Debug, Clone)]
struct Highway {
    gate: Linear,
    transform: Linear,
}

impl Highway {
    fn load(vb: VarBuilder, dim: usize) -> Result<Self> {
        Ok(Self {
            gate: candle_nn::linear(dim, dim, vb.pp("gate"))?,
            transform: candle_nn::linear(dim, dim, vb.pp("transform"))?,
        })
    }

    fn forward(&self, z: &Tensor) -> Result<Tensor> {
        let g = candle_nn::ops::sigmoid(&self.gate.forward(z)?)?;
        let h = self.transform.forward(z)?.relu()?;
        (&g * h)? + ((1.0 - &g)? * z)?
    }
}

#[derive(Debug, Clone)]
struct Attention {
    proj: Linear,
    score: Linear,
}

#[derive(Debug, Clone)]
struct MiHead {
    hidden: Linear,
    out: Linear,
}

#[derive(Debug, Clone)]
pub struct SeqAutoencoder {
    pub cfg: SeqConfig,
    embedding: Embedding,
    encoder: Option<(Gru, Gru)>,
    attention: Option<Attention>,
    to_latent: Option<Linear>,
    from_latent: Option<Linear>,
    highway: Option<Highway>,
    decoder: Gru,
    out: Linear,
    mi: Option<MiHead>,
    /// The 8-bit output layer of the fast scoring path, with a fingerprint of the weights it
    /// was made from, so that it is rebuilt after training changes them.
    packed_out: Arc<Mutex<Option<(u64, Arc<PackedOutput>)>>>,
    /// The encoder's input projection of every vocabulary entry (V, 6H) for inference, with a
    /// fingerprint of the weights it was made from ([`Self::encoder_token_table`]).
    encoder_table: Arc<Mutex<Option<(u64, EncoderTable)>>>,
    /// How the large products are computed in training (the output layer's in
    /// [`Self::sentence_nll`], the GRUs' input projections and recurrences); scoring and
    /// inference are always fp32.
    precision: Precision,
}

/// What inference reads instead of the encoder's weights ([`SeqAutoencoder::encoder_token_table`]).
#[derive(Clone, Debug)]
struct EncoderTable {
    /// Input projections of every vocabulary entry (V, 6H).
    table: Tensor,
    /// The recurrent weights, gathered and packed once.
    recurrent: Arc<PreparedBidirectional>,
}

/// An inference batch of at least this many tokens makes the encoder's token table (a
/// product over the whole vocabulary) if there is none yet: a typed sentence alone does not
/// pay for it, an index or a benchmark batch does after one batch.
const TOKEN_TABLE_MIN_TOKENS: usize = 512;

/// The token table is skipped for vocabularies whose table would exceed this many floats
/// (128 MB): the product per token is then cheaper than the memory.
const TOKEN_TABLE_MAX_FLOATS: usize = 32 << 20;

/// A fingerprint of the values of CPU f32 `tensors` together, or `None` if any is another
/// kind of tensor: what a cache of something derived from weights is keyed by, so that it is
/// made again after training changes them. Hashing costs a read of the weights (~0.3 ms for
/// 8000 × 256); keeping a copy to compare would cost more.
fn weights_print(tensors: &[&Tensor]) -> Result<Option<u64>> {
    // Tensors that are not variables never change (a loaded checkpoint's weights, as in the
    // explorer), so their print is computed once: the bars and every decoding ask for it.
    let frozen = tensors.iter().all(|t| !t.is_variable());
    let key: Vec<candle_core::TensorId> = tensors.iter().map(|t| t.id()).collect();
    if frozen {
        if let Some(print) = FROZEN_PRINTS.lock().expect("prints").get(&key) {
            return Ok(Some(*print));
        }
    }
    let print = weights_print_uncached(tensors)?;
    if let (true, Some(print)) = (frozen, print) {
        let mut prints = FROZEN_PRINTS.lock().expect("prints");
        if prints.len() >= 64 {
            // Models loaded and dropped over a long session: forget the oldest prints.
            prints.clear();
        }
        prints.insert(key, print);
    }
    Ok(print)
}

/// Prints of tensors that are not variables, by the tensors' ids (never reused in a process).
static FROZEN_PRINTS: std::sync::LazyLock<
    Mutex<std::collections::HashMap<Vec<candle_core::TensorId>, u64>>,
> = std::sync::LazyLock::new(|| Mutex::new(std::collections::HashMap::new()));

fn weights_print_uncached(tensors: &[&Tensor]) -> Result<Option<u64>> {
    let mut print = 0u64;
    for (i, t) in tensors.iter().enumerate() {
        if !t.device().is_cpu() || t.dtype() != DType::F32 {
            return Ok(None);
        }
        let t = t.contiguous()?;
        let guard = t.storage_and_layout().0;
        let candle_core::Storage::Cpu(s) = &*guard else {
            return Ok(None);
        };
        let values = super::sgemm::contiguous_f32(s, t.layout(), "weights")?;
        print ^= super::kernels::fingerprint(values).rotate_left(17 * i as u32);
    }
    Ok(Some(print))
}

/// The value in a cache made from weights whose print is `print`, if it holds one.
fn cached<T: Clone>(cache: &Mutex<Option<(u64, T)>>, print: u64) -> Option<T> {
    let cache = cache.lock().unwrap_or_else(|e| e.into_inner());
    cache
        .as_ref()
        .filter(|(p, _)| *p == print)
        .map(|(_, v)| v.clone())
}

fn store<T>(cache: &Mutex<Option<(u64, T)>>, print: u64, value: T) {
    *cache.lock().unwrap_or_else(|e| e.into_inner()) = Some((print, value));
}

impl SeqAutoencoder {
    pub fn load(vb: VarBuilder, cfg: &SeqConfig) -> Result<Self> {
        let (e, h, l) = (cfg.embed_dim, cfg.hidden_dim, cfg.latent_dim);
        let embedding = candle_nn::embedding(cfg.vocab_size, e, vb.pp("embedding"))?;
        let has_latent = cfg.latent.has_latent();
        let encoder = if has_latent {
            let vb = vb.pp("encoder");
            Some((
                Gru::load(vb.clone(), e, h, "")?,
                Gru::load(vb, e, h, "_reverse")?,
            ))
        } else {
            None
        };
        let attention = if has_latent && cfg.summary == Summary::Attention {
            let vb = vb.pp("attention");
            Some(Attention {
                proj: candle_nn::linear(2 * h, h, vb.pp("proj"))?,
                score: candle_nn::linear_no_bias(h, 1, vb.pp("score"))?,
            })
        } else {
            None
        };
        let to_latent = if has_latent {
            Some(candle_nn::linear(
                2 * h,
                cfg.latent.head_width(l),
                vb.pp("to_latent"),
            )?)
        } else {
            None
        };
        let from_latent = if has_latent {
            Some(candle_nn::linear(l, h, vb.pp("from_latent"))?)
        } else {
            None
        };
        let highway = if has_latent && cfg.z_every_step {
            Some(Highway::load(vb.pp("highway"), l)?)
        } else {
            None
        };
        let decoder = Gru::load(vb.pp("decoder"), cfg.decoder_input_dim(), h, "")?;
        let out = candle_nn::linear(h, cfg.vocab_size, vb.pp("out"))?;
        let mi = if has_latent && cfg.mi_head {
            let vb = vb.pp("mi");
            Some(MiHead {
                hidden: candle_nn::linear(h, h, vb.pp("hidden"))?,
                out: candle_nn::linear(h, l, vb.pp("out"))?,
            })
        } else {
            None
        };
        Ok(Self {
            cfg: cfg.clone(),
            embedding,
            encoder,
            attention,
            to_latent,
            from_latent,
            highway,
            decoder,
            out,
            mi,
            packed_out: Arc::new(Mutex::new(None)),
            encoder_table: Arc::new(Mutex::new(None)),
            precision: Precision::Fp32,
        })
    }

    /// Sets how training computes the large products ([`Precision`]); weights stay fp32.
    pub fn set_precision(&mut self, precision: Precision) {
        self.precision = precision;
        self.decoder.set_precision(precision);
        if let Some((fwd, bwd)) = &mut self.encoder {
            fwd.set_precision(precision);
            bwd.set_precision(precision);
        }
    }

    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// Whether the weights are training variables (a model being trained) rather than frozen
    /// tensors (an [`crate::engine::Engine`]'s, or [`Self::detached`]'s). Caches derived from
    /// frozen weights remember their print by tensor id; a variable's is hashed on each use.
    pub fn holds_variables(&self) -> bool {
        self.out.weight().is_variable()
    }

    /// The same model on detached weights, for inference: no op records a graph, and the
    /// fused GRU keeps no activations for a backward pass (the copies share storage). Frozen
    /// weights stay the same tensors (same ids), so detaching a detached model is free and its
    /// caches keep their remembered prints.
    pub fn detached(&self) -> Self {
        let linear = |l: &Linear| Linear::new(l.weight().detach(), l.bias().map(|b| b.detach()));
        Self {
            cfg: self.cfg.clone(),
            embedding: Embedding::new(self.embedding.embeddings().detach(), self.cfg.embed_dim),
            encoder: self
                .encoder
                .as_ref()
                .map(|(f, b)| (f.detached(), b.detached())),
            attention: self.attention.as_ref().map(|a| Attention {
                proj: linear(&a.proj),
                score: linear(&a.score),
            }),
            to_latent: self.to_latent.as_ref().map(linear),
            from_latent: self.from_latent.as_ref().map(linear),
            highway: self.highway.as_ref().map(|h| Highway {
                gate: linear(&h.gate),
                transform: linear(&h.transform),
            }),
            decoder: self.decoder.detached(),
            out: linear(&self.out),
            mi: self.mi.as_ref().map(|m| MiHead {
                hidden: linear(&m.hidden),
                out: linear(&m.out),
            }),
            packed_out: self.packed_out.clone(),
            encoder_table: self.encoder_table.clone(),
            precision: Precision::Fp32,
        }
    }

    /// [`Self::encode`] without a graph: for encoding that no gradient will follow.
    pub fn encode_inference(&self, src: &Tensor) -> Result<LatentParams> {
        self.detached().encode(&src.detach())
    }

    pub fn device(&self) -> &candle_core::Device {
        self.out.weight().device()
    }

    pub fn kind(&self) -> LatentKind {
        self.cfg.latent
    }

    fn embed(&self, ids: &Tensor) -> Result<Tensor> {
        // (T, B) -> (T, B, E)
        self.embedding.forward(ids)
    }

    /// Encodes a batch of word ids (T, B) into the latent head's parameters.
    pub fn encode(&self, src: &Tensor) -> Result<LatentParams> {
        let (fwd, bwd) = self
            .encoder
            .as_ref()
            .ok_or_else(|| candle_core::Error::Msg("an `lm` model has no encoder".into()))?;
        let table = self.encoder_token_table(src)?;
        let states = |final_only: bool| -> Result<Tensor> {
            match &table {
                // (T, B) ids -> (T, B, 2H), or with final_only (1, B, 2H)
                Some(t) => bidirectional_from_table(&t.recurrent, &t.table, src, final_only),
                None => {
                    let x = self.embed(src)?; // (T, B, E)
                    if final_only {
                        bidirectional_last(fwd, bwd, &x)?.unsqueeze(0) // (1, B, 2H)
                    } else {
                        bidirectional(fwd, bwd, &x) // (T, B, 2H)
                    }
                }
            }
        };
        let summary = match self.cfg.summary {
            // (B, 2H): the forward direction ends at T−1, the backward one at 0.
            Summary::Last => states(true)?.squeeze(0)?,
            // (T, B, 2H): forward ‖ backward -> (B, 2H)
            Summary::Mean => states(false)?.mean(0)?,
            Summary::Attention => {
                let states = states(false)?; // (T, B, 2H)
                let att = self
                    .attention
                    .as_ref()
                    .expect("attention summary has weights");
                let (t, b, w) = states.dims3()?;
                let flat = states.reshape((t * b, w))?;
                let scores = att.score.forward(&att.proj.forward(&flat)?.tanh()?)?; // (T·B, 1)
                let alpha = candle_nn::ops::softmax(&scores.reshape((t, b, 1))?, 0)?; // (T, B, 1)
                states.broadcast_mul(&alpha)?.sum(0)? // (B, 2H)
            }
        };
        let head = self
            .to_latent
            .as_ref()
            .expect("latent models have a head")
            .forward(&summary)?;
        let l = self.cfg.latent_dim;
        let (loc, logvar) = if self.cfg.latent == LatentKind::Gaussian {
            (head.narrow(1, 0, l)?, Some(head.narrow(1, l, l)?))
        } else {
            (head, None)
        };
        Ok(LatentParams {
            kind: self.cfg.latent,
            loc,
            logvar,
        })
    }

    /// The encoder's input projections of every vocabulary entry (V, 6H), for encoding `src`
    /// (T, B) without gradients: made once per set of weights (the first batch of at least
    /// [`TOKEN_TABLE_MIN_TOKENS`] tokens makes it) and then looked up per token instead of a
    /// product per token — a third of an encoder's work. `None` while training (the weights
    /// track gradients), off the CPU, for a vocabulary too large to tabulate, and for small
    /// batches before a table exists. Either way the states are the same to the bit
    /// ([`bidirectional_token_table`]).
    /// The recurrent weights come with it, gathered and packed once ([`prepare_bidirectional`]).
    fn encoder_token_table(&self, src: &Tensor) -> Result<Option<EncoderTable>> {
        let Some((fwd, bwd)) = &self.encoder else {
            return Ok(None);
        };
        let emb = self.embedding.embeddings();
        let width = 6 * self.cfg.hidden_dim;
        if emb.track_op()
            || fwd.tracks_gradient()
            || bwd.tracks_gradient()
            || self.cfg.vocab_size * width > TOKEN_TABLE_MAX_FLOATS
        {
            return Ok(None);
        }
        let mut weights = vec![emb];
        weights.extend(fwd.weights());
        weights.extend(bwd.weights());
        let Some(print) = weights_print(&weights)? else {
            return Ok(None); // not CPU f32
        };
        if let Some(table) = cached(&self.encoder_table, print) {
            return Ok(Some(table));
        }
        if src.elem_count() < TOKEN_TABLE_MIN_TOKENS {
            return Ok(None);
        }
        let table = EncoderTable {
            table: bidirectional_token_table(fwd, bwd, emb)?, // (V, 6H)
            recurrent: Arc::new(prepare_bidirectional(fwd, bwd)?),
        };
        store(&self.encoder_table, print, table.clone());
        Ok(Some(table))
    }

    /// The decoder's initial state (B, H): a linear map of z, zeros without a latent.
    pub fn initial_state(&self, z: Option<&Tensor>, batch: usize) -> Result<Tensor> {
        match (z, &self.from_latent) {
            (Some(z), Some(lin)) => lin.forward(z),
            _ => Tensor::zeros((batch, self.cfg.hidden_dim), DType::F32, self.device()),
        }
    }

    /// What the decoder sees of z at every step (B, L), if anything.
    pub fn step_latent(&self, z: Option<&Tensor>) -> Result<Option<Tensor>> {
        match (z, &self.highway) {
            (Some(z), Some(hw)) => Ok(Some(hw.forward(z)?)),
            _ => Ok(None),
        }
    }

    /// Decoder input vectors for tokens (T, B): embeddings, with z appended when configured.
    fn decoder_inputs(&self, tokens: &Tensor, step_z: Option<&Tensor>) -> Result<Tensor> {
        let x = self.embed(tokens)?; // (T, B, E)
        match step_z {
            Some(zs) => {
                let (t, b, _) = x.dims3()?;
                let zs = zs.unsqueeze(0)?.broadcast_as((t, b, self.cfg.latent_dim))?;
                Tensor::cat(&[&x, &zs.contiguous()?], 2) // (T, B, E+L)
            }
            None => Ok(x),
        }
    }

    /// Teacher-forced decoder states (T, B, H) for inputs `dec_in` (T, B) given codes z (B, L).
    pub fn decode_states(&self, z: Option<&Tensor>, dec_in: &Tensor) -> Result<Tensor> {
        self.decode_states_masked(z, dec_in, None)
    }

    /// [`Self::decode_states`] with the decoder's input vectors multiplied by `input_mask`
    /// (T, B, E[+L]) when given: dropout on the decoder's inputs while training.
    fn decode_states_masked(
        &self,
        z: Option<&Tensor>,
        dec_in: &Tensor,
        input_mask: Option<&Tensor>,
    ) -> Result<Tensor> {
        let (_t, b) = dec_in.dims2()?;
        let h0 = self.initial_state(z, b)?; // (B, H)
        let step_z = self.step_latent(z)?;
        let x = self.decoder_inputs(dec_in, step_z.as_ref())?; // (T, B, E[+L])
        let x = match input_mask {
            Some(mask) => (x * mask)?,
            None => x,
        };
        self.decoder.forward(&x, &h0, false)
    }

    /// Per-sentence NLL (B,) in nats, summed over target tokens, and the decoder states.
    pub fn sentence_nll(&self, z: Option<&Tensor>, batch: &TokenBatch) -> Result<(Tensor, Tensor)> {
        self.sentence_nll_dropout(z, batch, None)
    }

    /// [`Self::sentence_nll`] with dropout on the decoder's non-recurrent connections (its
    /// input vectors and the states fed to the output layer) when `dropout` is given, as in
    /// Zaremba et al. (2014): a regulariser for training only. The states returned are the
    /// decoder's own, before the mask.
    pub fn sentence_nll_dropout(
        &self,
        z: Option<&Tensor>,
        batch: &TokenBatch,
        dropout: Option<&Dropout>,
    ) -> Result<(Tensor, Tensor)> {
        let states = self.decode_states_masked(z, &batch.dec_in, dropout.map(|d| &d.inputs))?; // (T+1, B, H)
        let shown = match dropout {
            Some(d) => (&states * &d.states)?,
            None => states.clone(),
        };
        let flat = shown.reshape(((), self.cfg.hidden_dim))?; // ((T+1)·B, H)
        let bias = self.out.bias().expect("the output layer has a bias");
        let nll = linear_nll_with(
            &flat,
            self.out.weight(),
            bias,
            &batch.targets.flatten_all()?,
            self.precision,
        )?; // ((T+1)·B,)
        let nll = nll.reshape((batch.len + 1, batch.batch_size))?.sum(0)?; // (B,)
        Ok((nll, states))
    }

    /// Teacher-forced NLL per sentence (B,) for scoring only: the same numbers as
    /// [`Self::sentence_nll`] without a backward pass or the (tokens × vocab) buffer it keeps.
    pub fn score_nll(&self, z: Option<&Tensor>, batch: &TokenBatch) -> Result<Tensor> {
        self.score_nll_with(z, batch, None)
    }

    /// [`Self::score_nll`] with the decoder's input projection of `batch.dec_in` given
    /// ([`Self::decoder_projection`]), for callers that score one batch under several codes.
    pub fn score_nll_with(
        &self,
        z: Option<&Tensor>,
        batch: &TokenBatch,
        projection: Option<&Tensor>,
    ) -> Result<Tensor> {
        let states = self.decode_states_with(z, &batch.dec_in, projection)?; // (T+1, B, H)
        let flat = states.reshape(((), self.cfg.hidden_dim))?; // ((T+1)·B, H)
        let bias = self.out.bias().expect("the output layer has a bias");
        let targets = batch.targets.flatten_all()?;
        let packed = if flat.device().is_cpu() && flat.dtype() == DType::F32 {
            let states = flat.detach().flatten_all()?.to_vec1::<f32>()?;
            let ids = targets.to_vec1::<u32>()?;
            self.check_targets(&ids)?;
            self.packed_output()?.nll_exact(&states, &ids)
        } else {
            None
        };
        let nll = match packed {
            Some(nll) => Tensor::from_vec(nll, flat.dim(0)?, flat.device())?,
            None => linear_nll_inference(&flat, self.out.weight(), bias, &targets)?,
        }; // ((T+1)·B,)
        nll.reshape((batch.len + 1, batch.batch_size))?.sum(0) // (B,)
    }

    /// The output layer in 8-bit form (see [`super::output_layer`]), made once per set of weights.
    pub fn packed_output(&self) -> Result<Arc<PackedOutput>> {
        let bias = self.out.bias().expect("the output layer has a bias");
        let (weight, bias) = (self.out.weight().contiguous()?, bias.contiguous()?);
        let Some(print) = weights_print(&[&weight, &bias])? else {
            candle_core::bail!("the 8-bit output layer is made from f32 weights on the CPU");
        };
        if let Some(q) = cached(&self.packed_out, print) {
            return Ok(q);
        }
        let (wg, bg) = (weight.storage_and_layout().0, bias.storage_and_layout().0);
        let (w, b) = match (&*wg, &*bg) {
            (candle_core::Storage::Cpu(ws), candle_core::Storage::Cpu(bs)) => (
                super::sgemm::contiguous_f32(ws, weight.layout(), "output weight")?,
                super::sgemm::contiguous_f32(bs, bias.layout(), "output bias")?,
            ),
            _ => candle_core::bail!("the 8-bit output layer is made from CPU tensors"),
        };
        let q = Arc::new(PackedOutput::new(
            w,
            b,
            self.cfg.vocab_size,
            self.cfg.hidden_dim,
        ));
        store(&self.packed_out, print, q.clone());
        Ok(q)
    }

    /// The decoder's input projections for `dec_in` (T, B) -> (T, B, 3H), which do not depend
    /// on the code unless z is fed at every step (then `None`): one projection serves every
    /// code a batch is scored under.
    pub fn decoder_projection(&self, dec_in: &Tensor) -> Result<Option<Tensor>> {
        if self.highway.is_some() {
            return Ok(None);
        }
        Ok(Some(
            self.decoder
                .input_projection(&self.embed(dec_in)?.detach())?
                .detach(),
        ))
    }

    /// Teacher-forced NLL per sentence, like [`Self::score_nll`], with the normaliser over the
    /// vocabulary computed by the 8-bit output layer (within ~1e-3 nats per token of the exact
    /// figure; see [`super::output_layer`]). `projection` is [`Self::decoder_projection`] of
    /// `batch.dec_in`, if the caller reuses one across codes.
    pub fn score_nll_quantized(
        &self,
        z: Option<&Tensor>,
        batch: &TokenBatch,
        projection: Option<&Tensor>,
    ) -> Result<Vec<f32>> {
        let states = self.decode_states_with(z, &batch.dec_in, projection)?; // (T+1, B, H)
        let targets = batch.targets.flatten_all()?.to_vec1::<u32>()?;
        self.quantized_sentence_nll(&states, &targets, batch.batch_size)
    }

    /// NLL of one sentence (word ids) under each code row of `z` (N, L), by the 8-bit output
    /// layer: the per-bit bars. The decoder's input projection is made once for all codes.
    pub fn score_sentence_quantized(&self, z: &Tensor, sentence: &[u32]) -> Result<Vec<f32>> {
        let n = z.dim(0)?;
        let one = TokenBatch::new(&[sentence], None, self.device())?;
        let rows = vec![sentence; n];
        let batch = TokenBatch::new(&rows, None, self.device())?;
        let Some(p) = self.decoder_projection(&one.dec_in)? else {
            return self.score_nll_quantized(Some(z), &batch, None);
        };
        let states = self.sentence_states(&p, z)?; // (T+1, N, H)
        let targets = batch.targets.flatten_all()?.to_vec1::<u32>()?;
        self.quantized_sentence_nll(&states, &targets, n)
    }

    /// The decoder's recurrence made ready to step codes near a base code
    /// ([`super::gru::Gru::near_base`]), where the bf16 products run on AMX tiles.
    pub fn decoder_near_base(&self) -> Result<Option<super::gru::NearBase>> {
        self.decoder.near_base()
    }

    /// The decoder states (T+1, N, H) of one sentence whose input projections are `p`
    /// ((T+1, 1, 3H), [`Self::decoder_projection`]) under each code row of `z` (N, L).
    pub fn sentence_states(&self, p: &Tensor, z: &Tensor) -> Result<Tensor> {
        let n = z.dim(0)?;
        let (t, _, w) = p.dims3()?; // (T+1, 1, 3H)
        let model = self.detached();
        let h0 = model.initial_state(Some(&z.detach()), n)?; // (N, H)
                                                             // Every code reads step t's one projection: rows looked up by step, not copied N times.
        let steps: Vec<u32> = (0..t as u32)
            .flat_map(|s| std::iter::repeat_n(s, n))
            .collect();
        let steps = Tensor::from_vec(steps, (t, n), self.device())?;
        model.decoder.forward_rows(&p.reshape((t, w))?, &steps, &h0) // (T+1, N, H)
    }

    fn decode_states_with(
        &self,
        z: Option<&Tensor>,
        dec_in: &Tensor,
        projection: Option<&Tensor>,
    ) -> Result<Tensor> {
        let model = self.detached();
        let z = z.map(|z| z.detach());
        let Some(gi) = projection else {
            return model.decode_states(z.as_ref(), dec_in);
        };
        let (_t, b) = dec_in.dims2()?;
        let h0 = model.initial_state(z.as_ref(), b)?;
        model.decoder.forward_projected(&gi.detach(), &h0, false)
    }

    /// [`Self::quantized_token_nll`] summed per sentence: states (T+1, B, H) and targets in
    /// the same time-major order give B sums.
    fn quantized_sentence_nll(
        &self,
        states: &Tensor,
        targets: &[u32],
        batch: usize,
    ) -> Result<Vec<f32>> {
        let nll = self.quantized_token_nll(states, targets)?;
        let mut per_sentence = vec![0f32; batch];
        for row in nll.chunks_exact(batch) {
            for (s, x) in per_sentence.iter_mut().zip(row) {
                *s += x;
            }
        }
        Ok(per_sentence)
    }

    fn quantized_token_nll(&self, states: &Tensor, targets: &[u32]) -> Result<Vec<f32>> {
        let h = self.cfg.hidden_dim;
        let flat = states
            .reshape(((), h))?
            .contiguous()?
            .flatten_all()?
            .to_vec1::<f32>()?;
        self.check_targets(targets)?;
        Ok(self.packed_output()?.nll(&flat, targets))
    }

    pub(crate) fn check_targets(&self, targets: &[u32]) -> Result<()> {
        match targets.iter().find(|&&t| t as usize >= self.cfg.vocab_size) {
            Some(bad) => candle_core::bail!(
                "score: word id {bad} outside the vocabulary of {}",
                self.cfg.vocab_size
            ),
            None => Ok(()),
        }
    }

    /// Mutual-information term: an auxiliary network reads the mean decoder state and predicts
    /// z; its loss does not reach z (the target is detached). Returns a loss per sentence (B,).
    pub fn mi_loss(&self, states: &Tensor, z: &Tensor) -> Result<Option<Tensor>> {
        let Some(mi) = &self.mi else { return Ok(None) };
        let pooled = states.mean(0)?; // (B, H)
        let pred = mi.out.forward(&mi.hidden.forward(&pooled)?.tanh()?)?; // (B, L)
        let target = z.detach();
        let loss = if self.cfg.latent.is_binary() {
            // Bernoulli cross-entropy with logits: softplus(x) − x·t
            (super::latent::softplus(&pred)? - (&pred * &target)?)?
        } else {
            ((pred - target)?.sqr()? * 0.5)?
        };
        Ok(Some(loss.sum(D::Minus1)?))
    }

    /// The decoder's recurrent weights made ready for a decoding loop ([`Gru::prepare`]).
    pub fn prepared_decoder(&self) -> Result<PreparedGru> {
        self.decoder.prepare()
    }

    /// One decoding step without gradients: the next state (B, H) after reading `tokens` (B,)
    /// from `h` (B, H) — [`Self::step`]'s state, on weights made ready once per loop.
    pub fn step_state(
        &self,
        prepared: &PreparedGru,
        tokens: &Tensor,
        h: &Tensor,
        step_z: Option<&Tensor>,
    ) -> Result<Tensor> {
        let model = self.detached();
        let x = model.decoder_inputs(&tokens.unsqueeze(0)?, step_z)?; // (1, B, E[+L])
        let gi = prepared.input_projection(&model.decoder, &x)?; // (1, B, 3H)
        model
            .decoder
            .forward_prepared(prepared, &gi, h, false)?
            .squeeze(0) // (B, H)
    }

    /// The output layer's logits (B, V) for states `h` (B, H).
    pub fn logits(&self, h: &Tensor) -> Result<Tensor> {
        self.out.forward(h)
    }

    /// The most likely next word after each state of `h` (B, H) — the argmax of
    /// [`Self::logits`] — found through the 8-bit output layer on the CPU
    /// ([`PackedOutput::greedy`]), which reads a quarter of the bytes per word.
    pub fn greedy_tokens(&self, packed: Option<&PackedOutput>, h: &Tensor) -> Result<Vec<u32>> {
        match packed {
            Some(p) => Ok(p.greedy(&h.detach().flatten_all()?.to_vec1::<f32>()?)),
            None => self.logits(h)?.argmax(D::Minus1)?.to_vec1::<u32>(),
        }
    }

    /// [`Self::greedy_tokens`] among the words `masks[r]` allows for row r (restricted
    /// decoding): the argmax of the allowed logits, through the 8-bit layer where there is one.
    pub fn greedy_tokens_masked(
        &self,
        packed: Option<&PackedOutput>,
        h: &Tensor,
        masks: &[Vec<bool>],
    ) -> Result<Vec<u32>> {
        if let Some(p) = packed {
            let flat = h.detach().flatten_all()?.to_vec1::<f32>()?;
            return Ok(p.greedy_masked(&flat, Some(masks)));
        }
        let logits = self.logits(h)?.to_vec2::<f32>()?;
        Ok(logits
            .iter()
            .enumerate()
            .map(|(r, row)| masked_argmax(row, masks.get(r).map(Vec::as_slice)))
            .collect())
    }

    /// [`Self::packed_output`] where it exists (CPU, f32), for [`Self::greedy_tokens`].
    pub fn packed_output_if_cpu(&self) -> Result<Option<Arc<PackedOutput>>> {
        let w = self.out.weight();
        if w.device().is_cpu() && w.dtype() == DType::F32 {
            self.packed_output().map(Some)
        } else {
            Ok(None)
        }
    }
}

/// The id of the largest of `logits` among those `mask` allows (all when it allows none or is
/// `None`); ties go to the lower id, NaN never wins over a number.
pub fn masked_argmax(logits: &[f32], mask: Option<&[bool]>) -> u32 {
    let mask = mask.filter(|m| m.iter().any(|&a| a));
    let mut best: Option<(f32, usize)> = None;
    for (v, &l) in logits.iter().enumerate() {
        if mask.is_some_and(|m| m.get(v) != Some(&true)) {
            continue;
        }
        if best.is_none_or(|(b, _)| l > b || (b.is_nan() && !l.is_nan())) {
            best = Some((l, v));
        }
    }
    best.map_or(0, |(_, v)| v as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{named_vars, Built};
    use candle_core::Device;

    fn sentences() -> Vec<Vec<u32>> {
        vec![vec![5, 9, 13, 7, 22, 31], vec![40, 6, 6, 18, 11, 4]]
    }

    fn codes(n: usize, l: usize) -> Tensor {
        let bits: Vec<f32> = (0..n * l).map(|i| ((i * 7 + i / 3) % 2) as f32).collect();
        Tensor::from_vec(bits, (n, l), &Device::Cpu).unwrap()
    }

    /// The 8-bit scoring path against the exact one, for both decoder wirings, at every kernel
    /// level; then again after the output weights change (the cached copy must follow them).
    #[test]
    fn quantized_scores_follow_the_exact_ones_and_the_weights() -> Result<()> {
        for z_every_step in [false, true] {
            let cfg = SeqConfig {
                z_every_step,
                ..SeqConfig::tiny(50, LatentKind::Binary)
            };
            let built = Built::seq(&cfg, 3, &Device::Cpu)?;
            let model = &built.model;
            let check = |model: &SeqAutoencoder| -> Result<()> {
                for level in crate::model::kernels::available_levels() {
                    crate::model::kernels::with_level(level, || -> Result<()> {
                        let s = sentences();
                        let z = codes(5, cfg.latent_dim);
                        let got = model.score_sentence_quantized(&z, &s[0])?;
                        let rows = vec![s[0].as_slice(); 5];
                        let batch = TokenBatch::new(&rows, None, model.device())?;
                        let exact = model.score_nll(Some(&z), &batch)?.to_vec1::<f32>()?;
                        for (g, e) in got.iter().zip(&exact) {
                            assert!(
                                (g - e).abs() < 2e-3 * e.abs(),
                                "{}: {g} vs exact {e}",
                                level.name()
                            );
                        }
                        // A batch of different sentences, with and without a shared projection.
                        let rows: Vec<&[u32]> = s.iter().map(|r| r.as_slice()).collect();
                        let batch = TokenBatch::new(&rows, None, model.device())?;
                        let z = codes(2, cfg.latent_dim);
                        let projection = model.decoder_projection(&batch.dec_in)?;
                        assert_eq!(projection.is_none(), z_every_step);
                        let shared =
                            model.score_nll_quantized(Some(&z), &batch, projection.as_ref())?;
                        let alone = model.score_nll_quantized(Some(&z), &batch, None)?;
                        let exact = model
                            .score_nll_with(Some(&z), &batch, projection.as_ref())?
                            .to_vec1::<f32>()?;
                        let exact_alone = model.score_nll(Some(&z), &batch)?.to_vec1::<f32>()?;
                        for i in 0..2 {
                            assert!((shared[i] - alone[i]).abs() < 1e-5);
                            assert!((exact[i] - exact_alone[i]).abs() < 1e-5);
                            assert!((shared[i] - exact[i]).abs() < 2e-3 * exact[i].abs());
                        }
                        Ok(())
                    })?;
                }
                Ok(())
            };
            check(model)?;
            let before =
                model.score_sentence_quantized(&codes(1, cfg.latent_dim), &sentences()[0])?;
            for (name, var) in named_vars(&built.varmap) {
                if name == "out.weight" {
                    var.set(&(var.as_tensor() * 1.7)?)?;
                }
            }
            let after =
                model.score_sentence_quantized(&codes(1, cfg.latent_dim), &sentences()[0])?;
            assert!(
                (before[0] - after[0]).abs() > 1e-3,
                "the cached 8-bit layer went stale"
            );
            check(model)?;
        }
        Ok(())
    }

    /// Token ids (T, B) from a seeded generator.
    fn token_ids(t: usize, b: usize, vocab: u32, seed: u32) -> Tensor {
        let mut state = seed;
        let ids: Vec<u32> = (0..t * b)
            .map(|_| {
                state = state.wrapping_mul(1664525).wrapping_add(1013904223);
                3 + (state >> 8) % (vocab - 3)
            })
            .collect();
        Tensor::from_vec(ids, (t, b), &Device::Cpu).unwrap()
    }

    /// Encoding through the token table gives the codes of the product per token, to the bit,
    /// for every summary, for batches below and above the size that makes the table; training
    /// (tracked weights) never uses it; and a table made from old weights is not reused.
    #[test]
    fn prints_follow_a_variable_and_a_frozen_tensor_keeps_its_own() -> Result<()> {
        let dev = candle_core::Device::Cpu;
        let frozen = Tensor::new(&[1f32, 2., 3.], &dev)?;
        let first = weights_print(&[&frozen])?;
        assert!(first.is_some());
        assert_eq!(weights_print(&[&frozen])?, first, "remembered");
        // A variable with the same values has the same print, and a new one once it changes
        // (training updates weights in place: a remembered print would keep stale caches).
        let var = candle_core::Var::new(&[1f32, 2., 3.], &dev)?;
        assert_eq!(weights_print(&[var.as_tensor()])?, first);
        var.set(&Tensor::new(&[1f32, 2., 4.], &dev)?)?;
        let changed = weights_print(&[var.as_tensor()])?;
        assert!(changed.is_some() && changed != first);
        assert_eq!(weights_print(&[var.as_tensor()])?, changed);
        Ok(())
    }

    #[test]
    fn a_detached_model_keeps_its_tensors_when_detached_again() -> Result<()> {
        let dev = candle_core::Device::Cpu;
        let cfg = SeqConfig::tiny(30, LatentKind::Binary);
        let built = crate::model::Built::seq(&cfg, 1, &dev)?;
        assert!(built.model.holds_variables());
        let once = built.model.detached();
        assert!(!once.holds_variables());
        assert_ne!(once.out.weight().id(), built.model.out.weight().id());
        let twice = once.detached();
        assert_eq!(twice.out.weight().id(), once.out.weight().id());
        assert_eq!(
            twice.embedding.embeddings().id(),
            once.embedding.embeddings().id()
        );
        Ok(())
    }

    #[test]
    fn the_encoder_token_table_changes_no_bit_and_follows_the_weights() -> Result<()> {
        // Bit-for-bit comparisons need one kernel level throughout: holding it also keeps
        // other tests from switching levels in the middle.
        let level = crate::model::kernels::detected_level();
        crate::model::kernels::with_level(level, encoder_token_table_checks)
    }

    fn encoder_token_table_checks() -> Result<()> {
        for summary in [Summary::Last, Summary::Mean, Summary::Attention] {
            let cfg = SeqConfig {
                summary,
                ..SeqConfig::tiny(300, LatentKind::Binary)
            };
            let built = Built::seq(&cfg, 5, &Device::Cpu)?;
            let model = &built.model;
            let big = token_ids(12, 60, 300, 1); // 720 tokens: makes the table
            let small = token_ids(5, 3, 300, 2);
            let single = token_ids(1, 1, 300, 3);
            let loc = |m: &SeqAutoencoder, src: &Tensor| -> Result<Vec<Vec<f32>>> {
                m.encode_inference(src)?.loc.to_vec2::<f32>()
            };
            // The tracked path (training) computes the product per token.
            let per_token = |src: &Tensor| -> Result<Vec<Vec<f32>>> {
                model.encode(src)?.loc.detach().to_vec2::<f32>()
            };
            let before_small = loc(model, &small)?;
            assert!(model.encoder_table.lock().unwrap().is_none());
            assert_eq!(before_small, per_token(&small)?, "{summary:?}: small batch");
            let via_table = loc(model, &big)?;
            assert!(
                model.encoder_table.lock().unwrap().is_some(),
                "{summary:?}: a large batch makes the table"
            );
            assert_eq!(via_table, per_token(&big)?, "{summary:?}: large batch");
            // Now small batches go through the table too, with the same bits.
            assert_eq!(loc(model, &small)?, before_small, "{summary:?}");
            assert_eq!(loc(model, &single)?, per_token(&single)?, "{summary:?}");
            // Training changes the embeddings and an input weight: the table must follow.
            for (name, var) in named_vars(&built.varmap) {
                if name == "embedding.weight" || name == "encoder.weight_ih_l0_reverse" {
                    var.set(&(var.as_tensor() * 0.6)?)?;
                }
            }
            let after = loc(model, &small)?;
            assert_ne!(after, before_small, "{summary:?}: the codes must change");
            assert_eq!(after, per_token(&small)?, "{summary:?}: stale table");
            assert_eq!(loc(model, &big)?, per_token(&big)?, "{summary:?}");
        }
        Ok(())
    }
}
