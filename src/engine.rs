//! A loaded model with its vocabulary: the high-level, sentence-in / sentence-out API that the
//! command line, the explorer and library users share.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};
use candle_nn::VarMap;
use rand::rngs::StdRng;

use crate::checkpoint::{Checkpoint, Provenance};
use crate::data::length_batches;
use crate::model::decode::{decode_restricted, Strategy};
use crate::model::word_trie::WordTrie;
use crate::model::{Built, LatentKind, LatentParams, ModelConfig, SeqAutoencoder, TokenBatch};
use crate::vocab::Vocab;

/// Word ids of a sentence as the model will see them (the one truncation rule,
/// [`Vocab::tokenize_with`]).
pub use crate::vocab::Tokenized;

/// The encoder's view of one sentence.
#[derive(Debug, Clone, PartialEq)]
pub struct Encoding {
    /// Binary kinds: bit probabilities p; gaussian: μ; bottleneck: z.
    pub mean: Vec<f32>,
    /// Gaussian: σ per dimension.
    pub std: Option<Vec<f32>>,
    /// KL to the prior (nats).
    pub kl: f32,
}

impl Encoding {
    /// The code under `mode` (binary: rounded bits; gaussian: μ) without randomness.
    pub fn deterministic_code(&self, binary: bool) -> Vec<f32> {
        if binary {
            self.mean
                .iter()
                .map(|&p| if p >= 0.5 { 1.0 } else { 0.0 })
                .collect()
        } else {
            self.mean.clone()
        }
    }
}

pub struct Engine {
    pub model: SeqAutoencoder,
    pub vocab: Vocab,
    pub config: ModelConfig,
    pub provenance: Provenance,
    pub path: PathBuf,
    pub stored_dtype: String,
    pub file_bytes: u64,
    /// SHA-256 of the checkpoint's bytes as loaded ([`Checkpoint::sha256`]).
    pub sha256: String,
    pub varmap: VarMap,
    pub device: Device,
}

impl Engine {
    /// Loads a checkpoint; every failure is an error naming the file and the problem.
    pub fn load(path: &Path, device: &Device) -> Result<Self> {
        Self::from_checkpoint(Checkpoint::read(path, device)?, device)
    }

    /// Builds the sequence model a checkpoint already read describes (an error for other
    /// families, naming what works with them).
    pub fn from_checkpoint(ckpt: Checkpoint, device: &Device) -> Result<Self> {
        let path = ckpt.path.clone();
        let cfg = ckpt
            .config
            .expect_seq()
            .map_err(|e| anyhow::anyhow!("`{}`: {e}", path.display()))?;
        let built = Built::seq(cfg, 0, device).with_context(|| {
            format!(
                "`{}`: cannot build the model its config describes",
                path.display()
            )
        })?;
        ckpt.assign_to(&built.varmap)?;
        Ok(Self {
            // Nothing trains an engine's weights: held detached (sharing the variables'
            // storage), they keep their tensor ids through every later `detached()`, so the
            // caches keyed by the weights' print (packed output layer, decoder projection,
            // encoder table) find it remembered instead of hashing the weights on each call.
            model: built.model.detached(),
            vocab: ckpt.vocab,
            config: ckpt.config,
            provenance: ckpt.provenance,
            path,
            stored_dtype: ckpt.stored_dtype,
            file_bytes: ckpt.file_bytes,
            sha256: ckpt.sha256,
            varmap: built.varmap,
            device: device.clone(),
        })
    }

    pub fn kind(&self) -> LatentKind {
        self.model.kind()
    }

    pub fn latent_dim(&self) -> usize {
        if self.kind().has_latent() {
            self.model.cfg.latent_dim
        } else {
            0
        }
    }

    pub fn max_len(&self) -> usize {
        self.model.cfg.max_len
    }

    /// Normalises and maps a raw sentence to token ids, truncated between words to the
    /// model's maximum length (in tokens; `truncated` counts the words that did not fit):
    /// [`Vocab::tokenize_with`], the rule every model input follows.
    pub fn tokenize(&self, text: &str) -> Tokenized {
        let normalized = crate::corpus::normalize(text);
        self.vocab
            .tokenize_with(&normalized, self.max_len(), &mut |w| {
                self.vocab.encode_normalized(w)
            })
    }

    /// [`Self::tokenize`] for many texts, on every worker thread, each remembering the pieces
    /// of the words it has seen: a corpus repeats its words, and a subword tokenizer's call per
    /// word costs far more than a lookup (index and encode spent a fifth of their time here).
    pub fn tokenize_many(&self, texts: &[&str]) -> Vec<Tokenized> {
        use rayon::prelude::*;
        use std::collections::HashMap;
        texts
            .par_iter()
            .map_init(HashMap::<String, Vec<u32>>::new, |seen, t| {
                let normalized = crate::corpus::normalize(t);
                self.vocab
                    .tokenize_cached(&normalized, self.max_len(), seen)
            })
            .collect()
    }

    /// The words the model sees for `ids` (unknown words as <unk>).
    pub fn words(&self, ids: &[u32]) -> String {
        self.vocab.decode(ids)
    }

    /// Encodes sentences (word ids), batching equal lengths together; output is in input order.
    pub fn encode(&self, sentences: &[Vec<u32>]) -> Result<Vec<Encoding>> {
        if !self.kind().has_latent() {
            bail!("an `lm` model has no encoder, so sentences have no code");
        }
        if let Some(i) = sentences.iter().position(|s| s.is_empty()) {
            bail!("sentence {} has no words to encode", i + 1);
        }
        let lengths: Vec<usize> = sentences.iter().map(|s| s.len()).collect();
        let mut out = vec![None; sentences.len()];
        // Detached once for every batch: the weights' fingerprints (which say the encoder's
        // cached tables are current) are then computed once, not per batch.
        let model = self.model.detached();
        for batch in length_batches(&lengths, ENCODE_BATCH_TOKENS, ENCODE_MAX_BATCH) {
            let rows: Vec<&[u32]> = batch.iter().map(|&i| sentences[i].as_slice()).collect();
            let tb = TokenBatch::new(&rows, None, &self.device)?;
            let params = model.encode_inference(&tb.src)?;
            let encs = encodings(&params)?;
            for (slot, enc) in batch.iter().zip(encs) {
                out[*slot] = Some(enc);
            }
        }
        Ok(out
            .into_iter()
            .map(|e| e.expect("every sentence encoded"))
            .collect())
    }

    /// Decodes each code (empty codes for `lm`, which then samples/greedily generates).
    pub fn decode(
        &self,
        codes: &[Vec<f32>],
        strategy: Strategy,
        rng: &mut StdRng,
    ) -> Result<Vec<String>> {
        let ids = self.decode_ids(codes, strategy, rng)?;
        Ok(ids.iter().map(|s| self.vocab.decode(s)).collect())
    }

    pub fn decode_ids(
        &self,
        codes: &[Vec<f32>],
        strategy: Strategy,
        rng: &mut StdRng,
    ) -> Result<Vec<Vec<u32>>> {
        self.decode_ids_restricted(codes, strategy, None, rng)
    }

    /// [`Self::decode`] with greedy and beam decoding restricted to the words of `words`
    /// (see [`WordTrie`]) when given.
    pub fn decode_restricted(
        &self,
        codes: &[Vec<f32>],
        strategy: Strategy,
        words: Option<&WordTrie>,
        rng: &mut StdRng,
    ) -> Result<Vec<String>> {
        let ids = self.decode_ids_restricted(codes, strategy, words, rng)?;
        Ok(ids.iter().map(|s| self.vocab.decode(s)).collect())
    }

    /// [`Self::decode_ids`], restricted to the words of `words` when given.
    pub fn decode_ids_restricted(
        &self,
        codes: &[Vec<f32>],
        strategy: Strategy,
        words: Option<&WordTrie>,
        rng: &mut StdRng,
    ) -> Result<Vec<Vec<u32>>> {
        if codes.is_empty() {
            return Ok(Vec::new());
        }
        let z = self.codes_tensor(codes)?;
        Ok(decode_restricted(
            &self.model,
            z.as_ref(),
            codes.len(),
            strategy,
            self.max_len(),
            words,
            rng,
        )?)
    }

    /// Teacher-forced NLL (nats, summed over the words and <eos>) of one sentence under each of
    /// many codes, in one batch: this is what per-bit perplexity bars are made of.
    pub fn score(&self, codes: &[Vec<f32>], sentence: &[u32]) -> Result<Vec<f32>> {
        if sentence.is_empty() {
            bail!("cannot score an empty sentence");
        }
        if codes.is_empty() {
            return Ok(Vec::new());
        }
        let rows: Vec<&[u32]> = vec![sentence; codes.len()];
        let tb = TokenBatch::new(&rows, None, &self.device)?;
        let z = self.codes_tensor(codes)?;
        Ok(self.model.score_nll(z.as_ref(), &tb)?.to_vec1::<f32>()?)
    }

    fn codes_tensor(&self, codes: &[Vec<f32>]) -> Result<Option<Tensor>> {
        if !self.kind().has_latent() {
            return Ok(None);
        }
        let l = self.latent_dim();
        if let Some(bad) = codes.iter().find(|c| c.len() != l) {
            bail!(
                "a code has {} dimensions but the model's latent has {l}",
                bad.len()
            );
        }
        let flat: Vec<f32> = codes.iter().flatten().copied().collect();
        Ok(Some(Tensor::from_vec(
            flat,
            (codes.len(), l),
            &self.device,
        )?))
    }

    /// A summary of the checkpoint for `latent-tui info` and the explorer's title.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "{}\n  {}\n  vocabulary {} {}, max length {}, weights stored as {} ({:.1} MB), {} parameters\n",
            crate::printable::Shown(&self.path.display().to_string()),
            self.config.describe(),
            self.vocab.len(),
            match self.vocab.kind() {
                crate::vocab::TokenizerKind::Word => "words".to_string(),
                other => format!("{} tokens (whole words shown)", other.name()),
            },
            self.max_len(),
            self.stored_dtype,
            self.file_bytes as f64 / 1e6,
            crate::model::parameter_count(&self.varmap)
        );
        s += &self.provenance.describe(self.config.has_kl());
        s
    }
}

/// Tokens per encoding batch of [`Engine::encode`] (sentences of one length batched together,
/// at most [`ENCODE_MAX_BATCH`]). The latent head's matrix product may round a row
/// differently in a batch of another size, so these stay what the saved indexes were built
/// with.
const ENCODE_BATCH_TOKENS: usize = 4096;
/// Sentences per encoding batch at most.
const ENCODE_MAX_BATCH: usize = 256;

/// Per-row encodings from the latent head's parameters.
pub fn encodings(params: &LatentParams) -> Result<Vec<Encoding>> {
    let mean = params.mean()?.to_vec2::<f32>()?;
    let std = match &params.logvar {
        Some(lv) => Some((lv * 0.5)?.exp()?.to_vec2::<f32>()?),
        None => None,
    };
    let kl = params.kl()?.to_vec1::<f32>()?;
    Ok(mean
        .into_iter()
        .enumerate()
        .map(|(i, m)| Encoding {
            mean: m,
            std: std.as_ref().map(|s| s[i].clone()),
            kl: kl[i],
        })
        .collect())
}
