//! Codes and latent features of any checkpoint: one API over the sequence autoencoders (through
//! [`Engine`]) and the bag-of-words models, for indexing, search, retrieval evaluation and
//! probes.
//!
//! Three readings of the encoder, as in the binary-autoencoder paper's classification table:
//!
//! | features | binary models (seq binary kinds, nash)  | lsh            | continuous models |
//! |----------|-----------------------------------------|----------------|-------------------|
//! | `codes`  | bits step(p − ½)                         | bits           | μ                 |
//! | `probs`  | p = σ(logits)                            | —              | —                 |
//! | `logits` | the encoder's logits                     | projections    | μ                 |

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use anyhow::{bail, Result};
use candle_core::Device;

use crate::bow::{bag_of_words, encode_bags, BowCheckpoint};
use crate::checkpoint::{Checkpoint, Provenance};
use crate::corpus::normalize;
use crate::data::length_batches;
use crate::engine::Engine;
use crate::model::{BowModel, LatentKind, ModelConfig, TokenBatch};
use crate::vocab::{Vocab, UNK};

/// Which reading of the encoder to return.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FeatureKind {
    Codes,
    Probs,
    Logits,
}

impl FeatureKind {
    pub const ALL: [FeatureKind; 3] = [FeatureKind::Codes, FeatureKind::Probs, FeatureKind::Logits];

    pub fn name(self) -> &'static str {
        match self {
            FeatureKind::Codes => "codes",
            FeatureKind::Probs => "probs",
            FeatureKind::Logits => "logits",
        }
    }
}

impl fmt::Display for FeatureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for FeatureKind {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        FeatureKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| format!("unknown features `{s}` (expected codes, probs or logits)"))
    }
}

/// What a loaded model can do, asked of the model once (see [`Coder::capabilities`]) so that
/// callers such as the explorer's tabs test a capability instead of matching model kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capabilities {
    /// The name users know the model by: the latent kind of a sequence model (`binary`,
    /// `gaussian`, …) or the bag-of-words family (`nash`, `nvdm`, `lsh`).
    pub name: &'static str,
    /// How its codes behave: bits (binary kinds, nash, lsh) or continuous (gaussian,
    /// bottleneck, nvdm); `lm` has none.
    pub kind: LatentKind,
    /// Texts map to codes.
    pub encodes: bool,
    /// A code decodes to a sentence (sequence models).
    pub decodes_text: bool,
    /// A code decodes to a distribution over words (nvdm, nash).
    pub decodes_words: bool,
    /// A text can be scored (its NLL) under any code.
    pub scores: bool,
}

impl Capabilities {
    /// A sequence model of latent kind `kind`.
    pub fn of_seq(kind: LatentKind) -> Self {
        Self {
            name: kind.name(),
            kind,
            encodes: kind.has_latent(),
            decodes_text: true,
            decodes_words: false,
            scores: kind.has_latent(),
        }
    }

    /// A bag-of-words model.
    pub fn of_bow(model: &BowModel) -> Self {
        let (name, kind, decoder) = match model {
            BowModel::Nvdm(_) => ("nvdm", LatentKind::Gaussian, true),
            BowModel::Nash(_) => ("nash", LatentKind::BinaryVae, true),
            BowModel::Lsh(_) => ("lsh", LatentKind::Binary, false),
        };
        Self {
            name,
            kind,
            encodes: true,
            decodes_text: false,
            decodes_words: decoder,
            scores: decoder,
        }
    }

    /// Codes are bits.
    pub fn is_binary(&self) -> bool {
        self.kind.is_binary()
    }

    /// A code decodes to something to show (a sentence or words).
    pub fn decodes(&self) -> bool {
        self.decodes_text || self.decodes_words
    }
}

/// A loaded checkpoint of any family that maps texts to codes.
pub enum Coder {
    Seq(Box<Engine>),
    Bow(Box<BowCheckpoint>),
}

/// Sentences per encoding batch for the sequence models (grouped by length).
const SEQ_BATCH_TOKENS: usize = 8192;
const SEQ_MAX_BATCH: usize = 512;

impl Coder {
    pub fn load(path: &Path, dev: &Device) -> Result<Self> {
        let ckpt = Checkpoint::read(path, dev)?;
        match ckpt.config {
            ModelConfig::Seq(_) => Ok(Coder::Seq(Box::new(Engine::load(path, dev)?))),
            _ => Ok(Coder::Bow(Box::new(BowCheckpoint::from_checkpoint(
                ckpt, dev,
            )?))),
        }
    }

    pub fn from_engine(engine: Engine) -> Self {
        Coder::Seq(Box::new(engine))
    }

    /// What this model can do.
    pub fn capabilities(&self) -> Capabilities {
        match self {
            Coder::Seq(e) => Capabilities::of_seq(e.kind()),
            Coder::Bow(b) => Capabilities::of_bow(&b.model),
        }
    }

    /// A code decodes to a sentence.
    pub fn can_decode_text(&self) -> bool {
        self.capabilities().decodes_text
    }

    /// A code decodes to a distribution over words.
    pub fn can_decode_words(&self) -> bool {
        self.capabilities().decodes_words
    }

    /// A text's NLL can be computed under any code.
    pub fn can_score(&self) -> bool {
        self.capabilities().scores
    }

    pub fn path(&self) -> &Path {
        match self {
            Coder::Seq(e) => &e.path,
            Coder::Bow(b) => &b.path,
        }
    }

    pub fn config(&self) -> &ModelConfig {
        match self {
            Coder::Seq(e) => &e.config,
            Coder::Bow(b) => &b.config,
        }
    }

    pub fn vocab(&self) -> &Vocab {
        match self {
            Coder::Seq(e) => &e.vocab,
            Coder::Bow(b) => &b.vocab,
        }
    }

    pub fn provenance(&self) -> &Provenance {
        match self {
            Coder::Seq(e) => &e.provenance,
            Coder::Bow(b) => &b.provenance,
        }
    }

    /// Bits (binary models) or dimensions.
    pub fn latent_dim(&self) -> usize {
        match self {
            Coder::Seq(e) => e.latent_dim(),
            Coder::Bow(b) => b.model.latent_dim(),
        }
    }

    /// Whether codes are bits (and can be indexed for Hamming search).
    pub fn is_binary(&self) -> bool {
        match self {
            Coder::Seq(e) => e.kind().is_binary(),
            Coder::Bow(b) => b.model.is_binary(),
        }
    }

    /// Whether `kind` makes sense for this model (see the module table).
    pub fn supports(&self, kind: FeatureKind) -> Result<()> {
        if let Coder::Seq(e) = self {
            if !e.kind().has_latent() {
                bail!("an `lm` model has no encoder, so sentences have no code");
            }
        }
        let has_probs = match self {
            Coder::Seq(e) => e.kind().is_binary(),
            Coder::Bow(b) => matches!(b.model, BowModel::Nash(_)),
        };
        if kind == FeatureKind::Probs && !has_probs {
            bail!(
                "a `{}` model has no bit probabilities; use codes or logits",
                self.config().family()
            );
        }
        Ok(())
    }

    /// Words of `text` the model does not know (and, for bag-of-words models, ignores).
    pub fn unknown_words(&self, text: &str) -> Vec<String> {
        let normalized = normalize(text);
        normalized
            .split(' ')
            .filter(|w| !w.is_empty() && self.vocab().id(w).is_none())
            .map(str::to_string)
            .collect()
    }

    /// Features of raw or normalized texts, in order; `progress` receives the fraction done.
    pub fn features(
        &self,
        texts: &[&str],
        kind: FeatureKind,
        progress: &mut dyn FnMut(f64),
    ) -> Result<Vec<Vec<f32>>> {
        self.supports(kind)?;
        Ok(read_features(
            self.latent_loc(texts, progress)?,
            kind,
            self.is_binary(),
        ))
    }

    /// The latent head's raw output per text (logits, projections or μ), from which
    /// [`read_features`] derives every feature kind without encoding again.
    pub fn latent_loc(
        &self,
        texts: &[&str],
        progress: &mut dyn FnMut(f64),
    ) -> Result<Vec<Vec<f32>>> {
        match self {
            Coder::Seq(e) => {
                if !e.kind().has_latent() {
                    bail!("an `lm` model has no encoder, so sentences have no code");
                }
                seq_loc(e, texts, progress)
            }
            Coder::Bow(b) => {
                let bags: Vec<_> = texts
                    .iter()
                    .map(|t| bag_of_words(&b.vocab, &normalize(t)))
                    .collect();
                let chunk = 16 * crate::bow::EVAL_BATCH;
                let mut out = Vec::with_capacity(bags.len());
                for part in bags.chunks(chunk) {
                    out.extend(encode_bags(&b.model, part)?);
                    progress(out.len() as f64 / bags.len().max(1) as f64);
                }
                Ok(out)
            }
        }
    }

    /// Binary codes (0.0 / 1.0) of texts; an error for continuous models.
    pub fn codes(&self, texts: &[&str], progress: &mut dyn FnMut(f64)) -> Result<Vec<Vec<f32>>> {
        if !self.is_binary() {
            bail!(
                "`{}` holds a `{}` model with continuous codes; Hamming search needs binary codes (binary sequence kinds, nash or lsh)",
                self.path().display(),
                self.config().family()
            );
        }
        self.features(texts, FeatureKind::Codes, progress)
    }
}

/// [`Coder::features`] for a sequence model held as an [`Engine`] (as the explorer holds it).
pub fn engine_features(
    engine: &Engine,
    texts: &[&str],
    kind: FeatureKind,
    progress: &mut dyn FnMut(f64),
) -> Result<Vec<Vec<f32>>> {
    if !engine.kind().has_latent() {
        bail!("an `lm` model has no encoder, so sentences have no code");
    }
    let binary = engine.kind().is_binary();
    if kind == FeatureKind::Probs && !binary {
        bail!("a `{}` model has no bit probabilities", engine.kind());
    }
    Ok(read_features(
        seq_loc(engine, texts, progress)?,
        kind,
        binary,
    ))
}

/// Features of kind `kind` from the latent head's `loc` (logits, projections or μ) of a
/// binary or continuous model.
pub fn read_features(loc: Vec<Vec<f32>>, kind: FeatureKind, binary: bool) -> Vec<Vec<f32>> {
    match (kind, binary) {
        (FeatureKind::Codes, true) => loc
            .into_iter()
            .map(|l| {
                l.iter()
                    .map(|&x| if x >= 0.0 { 1.0 } else { 0.0 })
                    .collect()
            })
            .collect(),
        (FeatureKind::Probs, _) => loc
            .into_iter()
            .map(|l| l.iter().map(|&x| 1.0 / (1.0 + (-x).exp())).collect())
            .collect(),
        _ => loc,
    }
}

/// The latent head's `loc` (logits, or μ) of each text under a sequence model.
fn seq_loc(
    engine: &Engine,
    texts: &[&str],
    progress: &mut dyn FnMut(f64),
) -> Result<Vec<Vec<f32>>> {
    let ids: Vec<Vec<u32>> = texts
        .iter()
        .map(|t| {
            let ids = engine.tokenize(t).ids;
            if ids.is_empty() {
                vec![UNK]
            } else {
                ids
            }
        })
        .collect();
    let lengths: Vec<usize> = ids.iter().map(Vec::len).collect();
    let mut out = vec![Vec::new(); ids.len()];
    let mut done = 0usize;
    for batch in length_batches(&lengths, SEQ_BATCH_TOKENS, SEQ_MAX_BATCH) {
        let rows: Vec<&[u32]> = batch.iter().map(|&i| ids[i].as_slice()).collect();
        let tb = TokenBatch::new(&rows, None, &engine.device)?;
        let loc = engine.model.encode(&tb.src)?.loc.to_vec2::<f32>()?;
        for (&slot, l) in batch.iter().zip(loc) {
            out[slot] = l;
        }
        done += batch.len();
        progress(done as f64 / ids.len().max(1) as f64);
    }
    Ok(out)
}
