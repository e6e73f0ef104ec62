//! Sentence-level tasks over a loaded [`Engine`]: encoding with notices, Hamming paths and
//! interpolations, prior samples, per-dimension perplexities and split statistics.
//!
//! The command line (`path`, `sample`, `flip`, `eval`) and the explorer's tabs both call these,
//! so a screen in the explorer and its scripted counterpart print the same thing for the same
//! seed.

use anyhow::{bail, Result};
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::Serialize;

use crate::checkpoint::Provenance;
use crate::corpus::{Corpus, Split};
use crate::data::encode_examples;
use crate::engine::{Encoding, Engine};
use crate::eval::{evaluate, EvalOptions, EvalReport};
use crate::explore::{self, Prior};
use crate::model::decode::Strategy;

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
            let mut words: Vec<&str> = self.unknown.iter().map(String::as_str).collect();
            words.dedup();
            let n = self.unknown.len();
            out.push(format!(
                "{n} unknown word{} {}: {}",
                if n == 1 { "" } else { "s" },
                if self.bag {
                    "left out of the bag (stop words are never in it)"
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

/// Tokenizes and encodes one sentence; an input without words is an error, not a panic.
pub fn encode_sentence(engine: &Engine, text: &str) -> Result<EncodedSentence> {
    if !engine.kind().has_latent() {
        bail!("an `lm` model has no encoder, so sentences have no code");
    }
    let tok = engine.tokenize(text);
    if tok.ids.is_empty() {
        bail!("the input has no words to encode");
    }
    let encoding = engine.encode(std::slice::from_ref(&tok.ids))?.remove(0);
    let code = encoding.deterministic_code(engine.kind().is_binary());
    Ok(EncodedSentence {
        shown: engine.words(&tok.ids),
        ids: tok.ids,
        unknown: tok.unknown,
        truncated: tok.truncated,
        max_len: engine.max_len(),
        encoding,
        code,
        bag: false,
    })
}

/// [`encode_sentence`] for many texts, batched by length; None for a text without words.
pub fn encode_sentences(engine: &Engine, texts: &[&str]) -> Result<Vec<Option<EncodedSentence>>> {
    if !engine.kind().has_latent() {
        bail!("an `lm` model has no encoder, so sentences have no code");
    }
    let binary = engine.kind().is_binary();
    let toks = engine.tokenize_many(texts);
    let ids: Vec<Vec<u32>> = toks
        .iter()
        .filter(|t| !t.ids.is_empty())
        .map(|t| t.ids.clone())
        .collect();
    let mut encodings = if ids.is_empty() {
        Vec::new()
    } else {
        engine.encode(&ids)?
    }
    .into_iter();
    Ok(toks
        .into_iter()
        .map(|tok| {
            if tok.ids.is_empty() {
                return None;
            }
            let encoding = encodings.next().expect("one encoding per non-empty text");
            Some(EncodedSentence {
                shown: engine.words(&tok.ids),
                code: encoding.deterministic_code(binary),
                ids: tok.ids,
                unknown: tok.unknown,
                truncated: tok.truncated,
                max_len: engine.max_len(),
                encoding,
                bag: false,
            })
        })
        .collect())
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

/// A random Hamming path (binary codes) or a linear / spherical interpolation with `steps`
/// steps (continuous codes) from code(A) to code(B), each point decoded greedily.
pub fn walk_path(
    engine: &Engine,
    a: &str,
    b: &str,
    seed: u64,
    steps: usize,
    slerp: bool,
) -> Result<PathWalk> {
    if !engine.kind().has_latent() {
        bail!("an `lm` model has no latent space to walk");
    }
    let binary = engine.kind().is_binary();
    let ea = encode_sentence(engine, a).map_err(|e| e.context("sentence A"))?;
    let eb = encode_sentence(engine, b).map_err(|e| e.context("sentence B"))?;
    walk_between(ea, eb, binary, seed, steps, slerp, &mut |codes, rng| {
        engine.decode(codes, Strategy::Greedy, rng)
    })
}

/// The walk of [`walk_path`] between two encoded texts of any model, each point decoded by
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

/// Draws `n` codes from the prior with `seed` and decodes them. `bit_means` is needed only for
/// [`PriorChoice::Means`] on binary models (see [`corpus_bit_means`]).
pub fn sample_prior(
    engine: &Engine,
    n: usize,
    seed: u64,
    temperature: f32,
    prior: PriorChoice,
    bit_means: Option<&[f32]>,
) -> Result<Samples> {
    Samples::collect(seed, n, |each| {
        sample_prior_each(engine, n, seed, temperature, prior, bit_means, each)
    })
}

/// Samples decoded per batch by [`sample_prior_each`].
pub const SAMPLE_CHUNK: usize = 64;

/// [`sample_prior`] handing each sample (code, text) to `each` as soon as its batch of
/// [`SAMPLE_CHUNK`] is decoded, so any number of samples runs in bounded memory. Codes come
/// from one generator in order, and greedy decoding draws nothing from it, so the samples do
/// not depend on the batching.
pub fn sample_prior_each(
    engine: &Engine,
    n: usize,
    seed: u64,
    temperature: f32,
    prior: PriorChoice,
    bit_means: Option<&[f32]>,
    each: &mut dyn FnMut(Vec<f32>, String) -> Result<()>,
) -> Result<()> {
    if !temperature.is_finite() || temperature < 0.0 {
        bail!("the temperature must be a finite number ≥ 0, got {temperature}");
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let kind = engine.kind();
    let draw = if !kind.has_latent() {
        None
    } else if kind.is_binary() {
        Some(match prior {
            PriorChoice::Uniform => Prior::UniformBits,
            PriorChoice::Means => match bit_means {
                Some(m) => Prior::BitMeans(m.to_vec()),
                None => bail!("the `means` prior needs the corpus bit means"),
            },
        })
    } else {
        // Continuous codes have one prior, N(0, t²I); the command line refuses `--prior means`.
        Some(Prior::Gaussian { temperature })
    };
    let mut done = 0;
    while done < n {
        let m = SAMPLE_CHUNK.min(n - done);
        let (codes, texts) = match &draw {
            Some(p) => {
                let codes = explore::prior_samples(p, engine.latent_dim(), m, &mut rng);
                let texts = engine.decode(&codes, Strategy::Greedy, &mut rng)?;
                (codes, texts)
            }
            None => {
                let ids = crate::model::decode::decode(
                    &engine.model,
                    None,
                    m,
                    Strategy::Sample {
                        temperature: temperature as f64,
                    },
                    engine.max_len(),
                    &mut rng,
                )?;
                let texts = ids.iter().map(|s| engine.vocab.decode(s)).collect();
                (vec![Vec::new(); m], texts)
            }
        };
        for (code, text) in codes.into_iter().zip(texts) {
            each(code, text)?;
        }
        done += m;
    }
    Ok(())
}

/// The corpus a checkpoint was trained on (`spec` overrides it).
pub fn corpus_of(engine: &Engine, spec: Option<&str>) -> Result<Corpus> {
    corpus_of_provenance(&engine.provenance, spec)
}

/// [`corpus_of`] for a checkpoint of any family, by its provenance ([`Provenance::corpus`]).
pub fn corpus_of_provenance(provenance: &Provenance, spec: Option<&str>) -> Result<Corpus> {
    provenance.corpus(spec)
}

/// The checkpoint's own corpus, with a message that does not assume a command-line flag.
pub fn own_corpus(engine: &Engine, purpose: &str) -> Result<Corpus> {
    own_corpus_of(&engine.provenance, purpose)
}

/// [`own_corpus`] for a checkpoint of any family, by its provenance.
pub fn own_corpus_of(provenance: &Provenance, purpose: &str) -> Result<Corpus> {
    if provenance.stored_corpus().is_none() {
        bail!(
            "{purpose} need the corpus the checkpoint was trained on, `{}`, which is not here",
            provenance.corpus_shown()
        );
    }
    provenance.corpus(None)
}

/// Each bit's mean over (up to 2000) validation sentences of the checkpoint's corpus.
pub fn corpus_bit_means(engine: &Engine) -> Result<Vec<f32>> {
    let corpus = own_corpus(engine, "corpus bit means")?;
    let mut ids = encode_examples(&engine.vocab, corpus.split(Split::Valid), engine.max_len());
    ids.truncate(2000);
    if ids.is_empty() {
        bail!("the validation split of `{}` is empty", corpus.name);
    }
    let encs = engine.encode(&ids)?;
    let l = engine.latent_dim();
    let mut means = vec![0f32; l];
    for e in &encs {
        for (m, c) in means.iter_mut().zip(e.deterministic_code(true)) {
            *m += c / encs.len() as f32;
        }
    }
    Ok(means)
}

/// Perplexity of one sentence under a code and under variants of it.
#[derive(Clone, Debug, PartialEq)]
pub struct VariantScores {
    /// Under the code itself.
    pub base_ppl: f64,
    /// Under each variant, in order.
    pub ppl: Vec<f64>,
}

/// Scores `ids` under `code` and every variant in one batch.
pub fn variant_perplexities(
    engine: &Engine,
    ids: &[u32],
    code: &[f32],
    variants: &[Vec<f32>],
) -> Result<VariantScores> {
    // Per word, like every perplexity the tool shows.
    let tokens = (engine.vocab.word_count(ids) + 1) as f64;
    let mut all = Vec::with_capacity(variants.len() + 1);
    all.push(code.to_vec());
    all.extend(variants.iter().cloned());
    let nll = if engine.kind().has_latent() && !ids.is_empty() {
        // The bars need the normaliser over the vocabulary for every code and word: the 8-bit
        // output layer makes it four times faster, within ~1e-3 nats per word.
        let l = engine.latent_dim();
        if let Some(bad) = all.iter().find(|c| c.len() != l) {
            bail!(
                "a code has {} dimensions but the model's latent has {l}",
                bad.len()
            );
        }
        let flat: Vec<f32> = all.iter().flatten().copied().collect();
        let z = candle_core::Tensor::from_vec(flat, (all.len(), l), &engine.device)?;
        engine.model.score_sentence_quantized(&z, ids)?
    } else {
        engine.score(&all, ids)?
    };
    let ppl: Vec<f64> = nll.iter().map(|&n| (n as f64 / tokens).exp()).collect();
    Ok(VariantScores {
        base_ppl: ppl[0],
        ppl: ppl[1..].to_vec(),
    })
}

/// The variants behind per-dimension perplexity bars: binary codes with each bit flipped;
/// continuous codes with each dimension moved up by one σ (or by 1 where there is no σ).
pub fn one_change_variants(code: &[f32], binary: bool, std: Option<&[f32]>) -> Vec<Vec<f32>> {
    (0..code.len())
        .map(|j| {
            if binary {
                explore::flip(code, j)
            } else {
                let s = std.and_then(|s| s.get(j)).copied().unwrap_or(1.0);
                explore::nudge(code, j, s)
            }
        })
        .collect()
}

/// Statistics of a checkpoint over the validation split of its corpus.
#[derive(Clone, Debug)]
pub struct SplitStats {
    pub corpus: String,
    pub split: Split,
    pub report: EvalReport,
}

/// Evaluates the first `max_sentences` validation sentences (bit flips on the first
/// `flip_sentences`), reporting the fraction done through `progress`.
pub fn split_stats(
    engine: &Engine,
    max_sentences: usize,
    flip_sentences: usize,
    progress: &mut dyn FnMut(f64),
) -> Result<SplitStats> {
    let corpus = own_corpus(engine, "validation statistics")?;
    let split = Split::Valid;
    let mut ids = encode_examples(&engine.vocab, corpus.split(split), engine.max_len());
    ids.truncate(max_sentences.max(1));
    if ids.is_empty() {
        bail!("the {split} split of `{}` has no sentences", corpus.name);
    }
    let opts = EvalOptions {
        flip_sentences,
        // The Stats tab shows code statistics; reconstruction stays with `eval`.
        recon_sentences: 0,
        seed: 0,
    };
    let report = evaluate(&engine.model, &engine.vocab, &ids, &opts, progress)?;
    Ok(SplitStats {
        corpus: corpus.name,
        split,
        report,
    })
}
