//! The types both model families hand out through [`super::Coder`]: a text as the model saw
//! it, walks, prior samples, code statistics, posteriors, the feature kinds and the model's
//! capabilities; and the one walk between two codes both families decode along.

use std::fmt;
use std::str::FromStr;

use anyhow::Result;
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::Serialize;

use crate::corpus::Split;
use crate::engine::Encoding;
use crate::eval::EvalReport;
use crate::explore;
use crate::model::{BowModel, LatentKind};

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

/// What a loaded model can do, asked of the model once (see [`super::Coder::capabilities`]) so that
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

/// How a text's NLL changes when its code changes in one place (the per-bit bars).
#[derive(Clone, Debug, PartialEq)]
pub struct CodeEffects {
    /// Under the code itself.
    pub base: f64,
    /// Under each variant, in order.
    pub variants: Vec<f64>,
    /// The figures are a document's NLL in nats (bag-of-words models), not a sentence's
    /// perplexity per word (sequence models).
    pub nll: bool,
}

/// [`CodeEffects`] as they are filled in, chunk by chunk
/// ([`super::Coder::code_effects_in_chunks`]).
#[derive(Clone, Debug, PartialEq)]
pub struct PartialEffects {
    /// Under the code itself (computed with the first chunk).
    pub base: f64,
    /// Under each variant, in order; `None` where not computed yet.
    pub variants: Vec<Option<f64>>,
    /// As in [`CodeEffects::nll`].
    pub nll: bool,
}

impl PartialEffects {
    /// Variants computed so far.
    pub fn filled(&self) -> usize {
        self.variants.iter().filter(|v| v.is_some()).count()
    }

    /// The effects once every variant is in.
    pub fn complete(&self) -> Option<CodeEffects> {
        Some(CodeEffects {
            base: self.base,
            variants: self
                .variants
                .iter()
                .copied()
                .collect::<Option<Vec<f64>>>()?,
            nll: self.nll,
        })
    }
}

/// How many variants each chunk of [`effects_in_chunks`] scores: `chunk` first (the base and
/// the bars nearest the cursor, on screen soon), then three times as many at a time (fewer,
/// larger batches cost less in all); one empty chunk, for the base, when there are none.
pub fn effects_chunk_sizes(variants: usize, chunk: usize) -> Vec<usize> {
    let chunk = chunk.max(1);
    let mut sizes = vec![variants.min(chunk)];
    let mut left = variants - sizes[0];
    while left > 0 {
        let n = left.min(3 * chunk);
        sizes.push(n);
        left -= n;
    }
    sizes
}

/// The chunk loop behind [`super::Coder::code_effects_in_chunks`], over any `score` of a
/// list of codes (one figure per code; `nll` says what the figures are): the base with the
/// first chunk, chunks of the sizes [`effects_chunk_sizes`] gives, those nearest `focus` first, `each` seeing
/// everything filled in so far after each chunk and stopping the loop (answer `None`) when it
/// breaks.
pub fn effects_in_chunks(
    score: &mut dyn FnMut(&[Vec<f32>]) -> anyhow::Result<Vec<f64>>,
    code: &[f32],
    variants: &[Vec<f32>],
    focus: usize,
    chunk: usize,
    nll: bool,
    each: &mut dyn FnMut(&PartialEffects) -> std::ops::ControlFlow<()>,
) -> anyhow::Result<Option<CodeEffects>> {
    let order = crate::explore::nearest_first(variants.len(), focus);
    let mut so_far = PartialEffects {
        base: f64::NAN,
        variants: vec![None; variants.len()],
        nll,
    };
    let mut pieces: Vec<&[usize]> = Vec::new();
    let mut rest = &order[..];
    for n in effects_chunk_sizes(variants.len(), chunk) {
        let (piece, tail) = rest.split_at(n);
        pieces.push(piece);
        rest = tail;
    }
    for (k, dims) in pieces.into_iter().enumerate() {
        let mut codes = Vec::with_capacity(dims.len() + 1);
        if k == 0 {
            codes.push(code.to_vec());
        }
        codes.extend(dims.iter().map(|&j| variants[j].clone()));
        let scores = score(&codes)?;
        anyhow::ensure!(scores.len() == codes.len(), "one score per code");
        let mut scores = scores.into_iter();
        if k == 0 {
            so_far.base = scores.next().expect("one score per code");
        }
        for (&j, s) in dims.iter().zip(scores) {
            so_far.variants[j] = Some(s);
        }
        if each(&so_far).is_break() {
            return Ok(None);
        }
    }
    Ok(so_far.complete())
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

/// A sentence as the model saw it, with its encoding and deterministic code.
#[derive(Clone, Debug, PartialEq)]
pub struct EncodedSentence {
    /// The words the model sees (unknown words as `<unk>`, truncated to the maximum length).
    pub shown: String,
    pub ids: Vec<u32>,
    /// Input words outside the vocabulary.
    pub unknown: Vec<String>,
    /// Words dropped beyond the model's maximum length.
    pub truncated: usize,
    pub max_len: usize,
    pub encoding: Encoding,
    /// Binary: rounded bits; continuous: μ.
    pub code: Vec<f32>,
    /// A bag of words (bag-of-words models): `unknown` words are left out, not `<unk>`.
    pub bag: bool,
}

impl EncodedSentence {
    /// Human-readable remarks about what happened to the input (unknown words, truncation).
    pub fn notices(&self) -> Vec<String> {
        let mut out = Vec::new();
        if !self.unknown.is_empty() {
            // Each word once, in the order they came (a repeated word was listed each time it
            // came back after another).
            let mut words: Vec<&str> = Vec::new();
            for w in &self.unknown {
                if !words.contains(&w.as_str()) {
                    words.push(w);
                }
            }
            let n = self.unknown.len();
            out.push(format!(
                "{n} {}word{} {}: {}",
                if self.bag { "" } else { "unknown " },
                if n == 1 { "" } else { "s" },
                if self.bag {
                    "left out of the bag (stop words, or not in the vocabulary)"
                } else {
                    "shown as <unk>"
                },
                words.join(", ")
            ));
        }
        if self.truncated > 0 {
            out.push(format!(
                "input truncated to the model's maximum of {} tokens ({} words dropped)",
                self.max_len, self.truncated
            ));
        }
        out
    }
}

/// One point of a walk from code(A) to code(B).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PathPoint {
    /// Binary: the bit flipped to get here (None at the start).
    pub flipped: Option<usize>,
    /// Interpolation: the position along the path, 0 at A and 1 at B.
    pub t: f32,
    pub code: Vec<f32>,
    pub text: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct PathWalk {
    pub a: EncodedSentence,
    pub b: EncodedSentence,
    pub binary: bool,
    /// Binary: the Hamming distance between the two codes.
    pub distance: Option<usize>,
    pub seed: u64,
    pub slerp: bool,
    pub points: Vec<PathPoint>,
}

/// The walk of [`super::seq::walk_path`] between two encoded texts of any model, each point decoded by
/// `decode` (a sentence, or a model's top words).
pub fn walk_between(
    ea: EncodedSentence,
    eb: EncodedSentence,
    binary: bool,
    seed: u64,
    steps: usize,
    slerp: bool,
    decode: &mut dyn FnMut(&[Vec<f32>], &mut StdRng) -> Result<Vec<String>>,
) -> Result<PathWalk> {
    let mut rng = StdRng::seed_from_u64(seed);
    let raw: Vec<(Option<usize>, Vec<f32>)> = if binary {
        explore::hamming_path(&ea.code, &eb.code, &mut rng)
            .into_iter()
            .map(|s| (s.flipped, s.code))
            .collect()
    } else if slerp {
        explore::slerp_path(&ea.code, &eb.code, steps)
            .into_iter()
            .map(|c| (None, c))
            .collect()
    } else {
        explore::lerp_path(&ea.code, &eb.code, steps)
            .into_iter()
            .map(|c| (None, c))
            .collect()
    };
    let codes: Vec<Vec<f32>> = raw.iter().map(|p| p.1.clone()).collect();
    let texts = decode(&codes, &mut rng)?;
    let last = (raw.len() - 1).max(1) as f32;
    let points = raw
        .into_iter()
        .zip(texts)
        .enumerate()
        .map(|(i, ((flipped, code), text))| PathPoint {
            flipped,
            t: i as f32 / last,
            code,
            text,
        })
        .collect();
    Ok(PathWalk {
        distance: binary.then(|| explore::hamming(&ea.code, &eb.code)),
        a: ea,
        b: eb,
        binary,
        seed,
        slerp,
        points,
    })
}

/// Where prior samples are drawn from, as named on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum PriorChoice {
    /// Binary: each bit 0 or 1 with probability ½. Gaussian: N(0, t² I).
    Uniform,
    /// Binary: each bit drawn with its mean over the checkpoint's validation sentences.
    Means,
}

impl PriorChoice {
    pub fn name(self) -> &'static str {
        match self {
            PriorChoice::Uniform => "uniform",
            PriorChoice::Means => "means",
        }
    }
}

/// Prior samples and their greedy decodings (`lm` models sample words with the temperature).
#[derive(Clone, Debug, PartialEq)]
pub struct Samples {
    pub seed: u64,
    pub codes: Vec<Vec<f32>>,
    pub texts: Vec<String>,
}

impl Samples {
    /// Gathers what a streaming sampler (`sample_prior_each` of either model family) hands out.
    pub fn collect(
        seed: u64,
        n: usize,
        sampler: impl FnOnce(&mut dyn FnMut(Vec<f32>, String) -> Result<()>) -> Result<()>,
    ) -> Result<Samples> {
        let mut codes = Vec::with_capacity(n.min(SAMPLE_CHUNK));
        let mut texts = Vec::with_capacity(n.min(SAMPLE_CHUNK));
        sampler(&mut |code, text| {
            codes.push(code);
            texts.push(text);
            Ok(())
        })?;
        Ok(Samples { seed, codes, texts })
    }
}

/// Samples decoded per batch by `sample_prior_each`.
pub const SAMPLE_CHUNK: usize = 64;

/// Statistics of a checkpoint over the validation split of its corpus.
#[derive(Clone, Debug)]
pub struct SplitStats {
    pub corpus: String,
    pub split: Split,
    pub report: EvalReport,
}

/// What the encoder says about one sentence: μ, and σ when the model has one.
#[derive(Clone, Debug, PartialEq)]
pub struct Posterior {
    pub mean: Vec<f32>,
    /// Gaussian and nvdm: σ per dimension; bottleneck: none.
    pub std: Option<Vec<f32>>,
}
