//! The one loaded-model type, [`Coder`], over every kind of checkpoint (lm, bottleneck, gaussian,
//! binary, binary-vae, gumbel, gumbel-vae, nvdm, nash, lsh): codes and latent features for
//! indexing, search, retrieval evaluation and probes, and the explorer's work (encode a text,
//! decode a code, per-bit effects, walks, prior samples, code statistics). Callers ask the model
//! what it can do ([`Capabilities`]); the dispatch to the sequence autoencoders ([`Engine`]) or
//! the bag-of-words models lives in this file alone.
//!
//! The folder: this file holds [`Coder`] and its dispatch; [`seq`] is the sequence family's half
//! (sentences through an [`Engine`]), [`bow`] the bag-of-words family's half (documents through
//! a [`BowCheckpoint`]), and [`types`] what both halves return. The halves import only
//! [`types`] and the layers below (engine, model, corpus), never this file, so the folder has
//! no import circle.
//!
//! Three readings of the encoder, as in the binary-autoencoder paper's classification table:
//!
//! | features | binary models (seq binary kinds, nash)  | lsh            | continuous models |
//! |----------|-----------------------------------------|----------------|-------------------|
//! | `codes`  | bits step(p − ½)                         | bits           | μ                 |
//! | `probs`  | p = σ(logits)                            | —              | —                 |
//! | `logits` | the encoder's logits                     | projections    | μ                 |

pub mod bow;
pub mod seq;
pub mod types;

use std::ops::ControlFlow;
use std::path::Path;

use anyhow::{bail, Result};
use candle_core::Device;
use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::bow::BowCheckpoint;
use crate::checkpoint::{Checkpoint, Provenance};
use crate::corpus::normalize;
use crate::engine::Engine;
use crate::model::decode::Strategy;
use crate::model::word_trie::WordTrie;
use crate::model::{BowModel, ModelConfig};
use crate::vocab::Vocab;

pub use seq::engine_features;
pub use types::{
    effects_chunk_sizes, effects_in_chunks, read_features, Capabilities, CodeEffects,
    EncodedSentence, FeatureKind, PartialEffects, PathPoint, PathWalk, Posterior, PriorChoice,
    Samples, SplitStats, SAMPLE_CHUNK,
};

/// Variants in the first chunk of the explorer's per-bit bars ([`Coder::code_effects_in_chunks`];
/// later chunks are three times larger, [`effects_chunk_sizes`]): on the shipped 128-bit model
/// it takes a few milliseconds on one thread, so the bars nearest the cursor are on screen
/// within a frame of the decoding.
pub const EFFECTS_CHUNK: usize = 16;

/// A loaded checkpoint of any kind: the one model type the command line, the explorer and
/// library users hold. What a kind can do is asked of it ([`Coder::capabilities`], or a method
/// that returns an error saying "a `lsh` model cannot …"); which family implements a method is
/// decided here and nowhere else.
pub struct Coder {
    family: Family,
}

/// The two implementations behind [`Coder`]; private so that no caller matches on them.
enum Family {
    Seq(Box<Engine>),
    Bow(Box<BowCheckpoint>),
}

/// Words shown for a bag-of-words model's decoding of a code.
pub const DECODED_WORDS: usize = 12;

impl Coder {
    /// Reads a checkpoint (once) and builds the model its typed config describes.
    pub fn load(path: &Path, dev: &Device) -> Result<Self> {
        Self::from_checkpoint(Checkpoint::read(path, dev)?, dev)
    }

    /// Builds the model of a checkpoint already read.
    pub fn from_checkpoint(ckpt: Checkpoint, dev: &Device) -> Result<Self> {
        let family = match ckpt.config {
            ModelConfig::Seq(_) => Family::Seq(Box::new(Engine::from_checkpoint(ckpt, dev)?)),
            ModelConfig::Nvdm(_) | ModelConfig::Nash(_) | ModelConfig::Lsh(_) => {
                Family::Bow(Box::new(BowCheckpoint::from_checkpoint(ckpt, dev)?))
            }
        };
        Ok(Self { family })
    }

    pub fn from_engine(engine: Engine) -> Self {
        Self {
            family: Family::Seq(Box::new(engine)),
        }
    }

    pub fn from_bow(model: BowCheckpoint) -> Self {
        Self {
            family: Family::Bow(Box::new(model)),
        }
    }

    /// What this model can do.
    pub fn capabilities(&self) -> Capabilities {
        match &self.family {
            Family::Seq(e) => Capabilities::of_seq(e.kind()),
            Family::Bow(b) => Capabilities::of_bow(&b.model),
        }
    }

    /// The name users know the kind by (`binary`, `gaussian`, `nash`, …).
    pub fn kind_name(&self) -> &'static str {
        self.capabilities().name
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

    /// The error for something this kind of model cannot do, e.g. `cannot("decode codes to
    /// sentences")`.
    pub fn cannot(&self, what: &str) -> anyhow::Error {
        anyhow::anyhow!(
            "`{}` holds a `{}` model ({}), which cannot {what}",
            self.path().display(),
            self.kind_name(),
            self.config().describe()
        )
    }

    /// The sequence autoencoder behind this model, for the sequence-only commands (`encode`,
    /// `decode`, `eval`'s sentence report, …); otherwise an error saying it cannot do `what`.
    pub fn sequence_model(&self, what: &str) -> Result<&Engine> {
        match &self.family {
            Family::Seq(e) => Ok(e),
            Family::Bow(_) => Err(self.cannot(what)),
        }
    }

    /// [`Coder::sequence_model`], taking ownership.
    pub fn into_sequence_model(self, what: &str) -> Result<Engine> {
        let err = self.cannot(what);
        match self.family {
            Family::Seq(e) => Ok(*e),
            Family::Bow(_) => Err(err),
        }
    }

    /// The bag-of-words model behind this model, for the commands only they serve (`words`,
    /// document scoring); otherwise an error saying it cannot do `what`.
    pub fn bag_of_words_model(&self, what: &str) -> Result<&BowCheckpoint> {
        match &self.family {
            Family::Bow(b) => Ok(b),
            Family::Seq(_) => Err(self.cannot(what)),
        }
    }

    pub fn path(&self) -> &Path {
        match &self.family {
            Family::Seq(e) => &e.path,
            Family::Bow(b) => &b.path,
        }
    }

    pub fn config(&self) -> &ModelConfig {
        match &self.family {
            Family::Seq(e) => &e.config,
            Family::Bow(b) => &b.config,
        }
    }

    pub fn vocab(&self) -> &Vocab {
        match &self.family {
            Family::Seq(e) => &e.vocab,
            Family::Bow(b) => &b.vocab,
        }
    }

    pub fn provenance(&self) -> &Provenance {
        match &self.family {
            Family::Seq(e) => &e.provenance,
            Family::Bow(b) => &b.provenance,
        }
    }

    /// SHA-256 of the checkpoint's bytes as this model was loaded from them: what its caches
    /// are stamped with and checked against (the file on disk may have changed since).
    pub fn checkpoint_sha256(&self) -> &str {
        match &self.family {
            Family::Seq(e) => &e.sha256,
            Family::Bow(b) => &b.sha256,
        }
    }

    /// The corpus a command works on: `given` (a `--corpus`) if any, else the checkpoint's own,
    /// rebuilt from its seed where it was the default factors corpus and its files are gone
    /// ([`seq::corpus_of_provenance`]; the one lookup every command shares).
    pub fn corpus(&self, given: Option<&str>) -> Result<crate::corpus::Corpus> {
        seq::corpus_of_provenance(self.provenance(), given)
    }

    /// Bits (binary models) or dimensions; 0 for `lm`.
    pub fn latent_dim(&self) -> usize {
        match &self.family {
            Family::Seq(e) => e.latent_dim(),
            Family::Bow(b) => b.model.latent_dim(),
        }
    }

    /// The longest input in tokens (sequence models); 0 where inputs are bags without a limit.
    pub fn max_len(&self) -> usize {
        match &self.family {
            Family::Seq(e) => e.max_len(),
            Family::Bow(_) => 0,
        }
    }

    /// Whether codes are bits (and can be indexed for Hamming search).
    pub fn is_binary(&self) -> bool {
        self.capabilities().is_binary()
    }

    /// A summary of the checkpoint for `latent-tui info` and the explorer's title.
    pub fn summary(&self) -> String {
        match &self.family {
            Family::Seq(e) => e.summary(),
            Family::Bow(b) => b.summary(),
        }
    }

    /// Whether `kind` makes sense for this model (see the module table).
    pub fn supports(&self, kind: FeatureKind) -> Result<()> {
        let caps = self.capabilities();
        if !caps.encodes {
            bail!("an `lm` model has no encoder, so sentences have no code");
        }
        let has_probs = match &self.family {
            Family::Seq(e) => e.kind().is_binary(),
            Family::Bow(b) => matches!(b.model, BowModel::Nash(_)),
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
    /// Each word once, in the order it first appears.
    pub fn unknown_words(&self, text: &str) -> Vec<String> {
        let normalized = normalize(text);
        let mut seen = std::collections::HashSet::new();
        normalized
            .split(' ')
            .filter(|w| seen.insert(*w))
            // A subword vocabulary spells a word it never saw from pieces; only a word that
            // still needs `<unk>` is unknown (a word-level lookup would call every word
            // outside the piece list unknown).
            .filter(|w| {
                !w.is_empty()
                    && self
                        .vocab()
                        .encode_normalized(w)
                        .contains(&crate::vocab::UNK)
            })
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
        match &self.family {
            Family::Seq(e) => {
                if !e.kind().has_latent() {
                    bail!("an `lm` model has no encoder, so sentences have no code");
                }
                seq::latent_loc(e, texts, progress)
            }
            Family::Bow(b) => bow::latent_loc(b, texts, progress),
        }
    }

    /// Binary codes (0.0 / 1.0) of texts; an error for continuous models.
    pub fn codes(&self, texts: &[&str], progress: &mut dyn FnMut(f64)) -> Result<Vec<Vec<f32>>> {
        if !self.capabilities().encodes {
            bail!(
                "`{}` holds an `{}` model, which has no encoder and so no codes",
                self.path().display(),
                self.kind_name()
            );
        }
        if !self.is_binary() {
            bail!(
                "`{}` holds a `{}` model ({}), whose codes are continuous; this needs binary codes (binary sequence kinds, nash or lsh) — `search` and the explorer's Neighbors tab search continuous codes by cosine, indexing them themselves",
                self.path().display(),
                self.kind_name(),
                self.config().describe()
            );
        }
        self.features(texts, FeatureKind::Codes, progress)
    }

    /// Groups of positions of `texts` whose codes ([`Self::codes`], [`Self::posteriors`]) can
    /// be computed one group at a time, each group alone, with the very values computing them
    /// all at once gives (an index can then be searched while it is built), at least
    /// `min_part` texts a group where the model's batching allows; one group of every text
    /// where it does not.
    pub fn index_parts(&self, texts: &[&str], min_part: usize) -> Vec<Vec<usize>> {
        match &self.family {
            Family::Seq(e) if e.kind().has_latent() => seq::index_parts(e, texts, min_part),
            _ => vec![(0..texts.len()).collect()],
        }
    }

    /// μ and σ of each text (gaussian or bottleneck sequence models, nvdm); binary models and
    /// `lm` are refused.
    pub fn posteriors(
        &self,
        texts: &[&str],
        progress: &mut dyn FnMut(f64),
    ) -> Result<Vec<Posterior>> {
        if self.is_binary() {
            bail!(
                "`{}` holds a `{}` model with binary codes; search it by Hamming distance (the binary index)",
                self.path().display(),
                self.config().family()
            );
        }
        match &self.family {
            Family::Seq(e) => seq::posteriors(e, texts, progress),
            Family::Bow(b) => bow::posteriors(b, texts, progress),
        }
    }

    /// Refuses a query a bag-of-words model would code from no words at all (none of them in
    /// its vocabulary): its code is the same for every such text. Sequence models code any
    /// text (unknown words are `<unk>`, or pieces).
    pub fn require_words(&self, text: &str) -> Result<()> {
        match &self.family {
            Family::Seq(_) => Ok(()),
            Family::Bow(b) => bow::require_words(b, text),
        }
    }

    /// One text as the model sees it (its words, or its bag) with its encoding and code.
    pub fn encode_text(&self, text: &str) -> Result<EncodedSentence> {
        match &self.family {
            Family::Seq(e) => seq::encode_sentence(e, text),
            Family::Bow(b) => bow::encode_text(b, text),
        }
    }

    /// [`Coder::encode_text`] for many texts, in batches; None for a text with no word the
    /// model knows.
    pub fn encode_texts(&self, texts: &[&str]) -> Result<Vec<Option<EncodedSentence>>> {
        match &self.family {
            Family::Seq(e) => seq::encode_sentences(e, texts),
            Family::Bow(b) => bow::encode_texts(b, texts),
        }
    }

    /// What a decoding of a code is: "greedy decoding" (sequence models), "most probable
    /// words" (nvdm, nash), or None for a model without a decoder (lsh).
    pub fn decoding_kind(&self) -> Option<&'static str> {
        let caps = self.capabilities();
        if caps.decodes_text {
            Some("greedy decoding")
        } else if caps.decodes_words {
            Some("most probable words")
        } else {
            None
        }
    }

    /// One code decoded for display: a sentence by `strategy` (sequence models), or the
    /// decoder's most probable words with their probabilities (nvdm, nash).
    pub fn decode_line(&self, code: &[f32], strategy: Strategy, seed: u64) -> Result<String> {
        self.decode_line_restricted(code, strategy, seed, None)
    }

    /// [`Coder::decode_line`] restricted to the words of `words` (sequence models, greedy and
    /// beam; see [`crate::model::word_trie`]).
    pub fn decode_line_restricted(
        &self,
        code: &[f32],
        strategy: Strategy,
        seed: u64,
        words: Option<&WordTrie>,
    ) -> Result<String> {
        let mut rng = StdRng::seed_from_u64(seed);
        Ok(self
            .decode_lines(&[code.to_vec()], strategy, words, &mut rng)?
            .remove(0))
    }

    /// [`Coder::decode_line_restricted`] for many codes, drawing any sampling from `rng` in
    /// order. A bag-of-words decoder has one reading of a code (its most probable words, all
    /// of its vocabulary, so `words` changes nothing there), so beam search and sampling are
    /// errors there.
    pub fn decode_lines(
        &self,
        codes: &[Vec<f32>],
        strategy: Strategy,
        words: Option<&WordTrie>,
        rng: &mut StdRng,
    ) -> Result<Vec<String>> {
        match &self.family {
            Family::Seq(e) => e.decode_restricted(codes, strategy, words, rng),
            Family::Bow(b) => {
                if strategy != Strategy::Greedy {
                    return Err(self.cannot(&format!(
                        "decode by {}: its decoding is the decoder's most probable words",
                        strategy.label()
                    )));
                }
                Ok(bow::top_words(b, codes, DECODED_WORDS)?
                    .iter()
                    .map(|w| bow::words_line(w))
                    .collect())
            }
        }
    }

    /// Decodings of codes: greedy sentences, or a bag-of-words decoder's `words` most probable
    /// words; None when the model has no decoder (lsh).
    pub fn decode_codes(&self, codes: &[Vec<f32>], words: usize) -> Result<Option<Vec<String>>> {
        self.decode_codes_restricted(codes, words, None)
    }

    /// [`Coder::decode_codes`] with a sequence model's greedy decodings kept to the words of
    /// `real_words` when given.
    pub fn decode_codes_restricted(
        &self,
        codes: &[Vec<f32>],
        words: usize,
        real_words: Option<&WordTrie>,
    ) -> Result<Option<Vec<String>>> {
        if self.decoding_kind().is_none() {
            return Ok(None);
        }
        match &self.family {
            Family::Seq(e) => {
                let mut rng = StdRng::seed_from_u64(0);
                Ok(Some(e.decode_restricted(
                    codes,
                    Strategy::Greedy,
                    real_words,
                    &mut rng,
                )?))
            }
            Family::Bow(b) => Ok(Some(
                bow::top_words(b, codes, words)?
                    .iter()
                    .map(|w| {
                        w.iter()
                            .map(|(w, _)| w.as_str())
                            .collect::<Vec<_>>()
                            .join(" ")
                    })
                    .collect(),
            )),
        }
    }

    /// The `k` most probable words of p(w | z) for each code, with their probabilities; an
    /// error for models that do not decode to words.
    pub fn top_words(&self, codes: &[Vec<f32>], k: usize) -> Result<Vec<Vec<(String, f32)>>> {
        if !self.can_decode_words() {
            return Err(self.cannot("decode codes to words"));
        }
        bow::top_words(self.bag_of_words_model("decode codes to words")?, codes, k)
    }

    /// How the encoded text `ids` fares under `code` and under each of `variants` (the code
    /// with one bit flipped or one dimension nudged): perplexity per word for sequence models,
    /// the document's NLL for bag-of-words models.
    pub fn code_effects(
        &self,
        ids: &[u32],
        code: &[f32],
        variants: &[Vec<f32>],
    ) -> Result<CodeEffects> {
        let mut all = Vec::with_capacity(variants.len() + 1);
        all.push(code.to_vec());
        all.extend(variants.iter().cloned());
        let scores = self.code_scorer(ids, code)?(&all)?;
        Ok(CodeEffects {
            base: scores[0],
            variants: scores[1..].to_vec(),
            nll: self.scores_are_nll(),
        })
    }

    /// [`Self::code_effects`] in chunks ([`effects_chunk_sizes`]`(variants, chunk)`), those
    /// nearest `focus` first
    /// ([`crate::explore::nearest_first`]; the base with the first chunk). After each chunk
    /// `each` sees everything filled in so far; when it breaks, the rest is not computed and
    /// the answer is `None` (the explorer abandons bars a newer request has overtaken). Each
    /// figure equals [`Self::code_effects`]'s: every code is scored on rows of its own.
    pub fn code_effects_in_chunks(
        &self,
        ids: &[u32],
        code: &[f32],
        variants: &[Vec<f32>],
        focus: usize,
        chunk: usize,
        each: &mut dyn FnMut(&PartialEffects) -> ControlFlow<()>,
    ) -> Result<Option<CodeEffects>> {
        effects_in_chunks(
            &mut self.code_scorer(ids, code)?,
            code,
            variants,
            focus,
            chunk,
            self.scores_are_nll(),
            each,
        )
    }

    /// Whether [`Self::score_codes`] gives a document's NLL (bag-of-words models) rather than
    /// a perplexity per word.
    fn scores_are_nll(&self) -> bool {
        matches!(self.family, Family::Bow(_))
    }

    /// What scores the encoded text `ids` under codes near `base` (each call: a list of
    /// codes, one figure per code): perplexity per word for sequence models
    /// ([`seq::near_code_scorer`]), the document's NLL for bag-of-words models.
    #[allow(clippy::type_complexity)]
    fn code_scorer<'a>(
        &'a self,
        ids: &'a [u32],
        base: &[f32],
    ) -> Result<Box<dyn FnMut(&[Vec<f32>]) -> Result<Vec<f64>> + 'a>> {
        if !self.capabilities().encodes {
            return Err(self.cannot("score a text under a code: it has no encoder, so no code"));
        }
        if !self.can_score() {
            return Err(self.cannot("score a text under a code: it has no decoder"));
        }
        Ok(match &self.family {
            Family::Seq(e) => Box::new(seq::near_code_scorer(e, ids, base)?),
            Family::Bow(b) => Box::new(move |codes: &[Vec<f32>]| bow::document_nll(b, ids, codes)),
        })
    }

    /// A Hamming path (binary codes) or an interpolation (continuous codes) from text A's code
    /// to text B's, each point decoded.
    /// With `words`, a sequence model's decodings keep to those words (a bag-of-words
    /// decoder's words are its vocabulary's anyway).
    pub fn walk_path(
        &self,
        a: &str,
        b: &str,
        seed: u64,
        steps: usize,
        slerp: bool,
        words: Option<&WordTrie>,
    ) -> Result<PathWalk> {
        match &self.family {
            Family::Seq(e) => seq::walk_path(e, a, b, seed, steps, slerp, words),
            Family::Bow(m) => bow::walk_path(m, a, b, seed, steps, slerp),
        }
    }

    /// `n` codes drawn from the prior with `seed`, decoded. `bit_means` is needed for the
    /// `means` prior of binary codes (see [`Coder::corpus_bit_means`]); with `words`, a
    /// sequence model's decodings keep to those words (the same codes).
    pub fn sample_prior(
        &self,
        n: usize,
        seed: u64,
        temperature: f32,
        prior: PriorChoice,
        bit_means: Option<&[f32]>,
        words: Option<&WordTrie>,
    ) -> Result<Samples> {
        Samples::collect(seed, n, |each| {
            self.sample_prior_each(n, seed, temperature, prior, bit_means, words, each)
        })
    }

    /// [`Coder::sample_prior`] handing each sample (code, decoding) to `each` as soon as its
    /// batch is decoded, so any number of samples runs in bounded memory; the samples are the
    /// same as [`Coder::sample_prior`]'s for the same seed.
    #[allow(clippy::too_many_arguments)]
    pub fn sample_prior_each(
        &self,
        n: usize,
        seed: u64,
        temperature: f32,
        prior: PriorChoice,
        bit_means: Option<&[f32]>,
        words: Option<&WordTrie>,
        each: &mut dyn FnMut(Vec<f32>, String) -> Result<()>,
    ) -> Result<()> {
        match &self.family {
            Family::Seq(e) => {
                seq::sample_prior_each(e, n, seed, temperature, prior, bit_means, words, each)
            }
            Family::Bow(b) => {
                bow::sample_prior_each(b, n, seed, temperature, prior, bit_means, each)
            }
        }
    }

    /// Each bit's mean over validation sentences of the checkpoint's corpus.
    pub fn corpus_bit_means(&self) -> Result<Vec<f32>> {
        match &self.family {
            Family::Seq(e) => seq::corpus_bit_means(e),
            Family::Bow(b) => bow::corpus_bit_means(b),
        }
    }

    /// Code statistics over (up to `max_sentences`) validation sentences of the checkpoint's
    /// corpus, with per-bit flip effects on the first `flip_sentences`.
    pub fn code_stats(
        &self,
        max_sentences: usize,
        flip_sentences: usize,
        progress: &mut dyn FnMut(f64),
    ) -> Result<SplitStats> {
        match &self.family {
            Family::Seq(e) => seq::split_stats(e, max_sentences, flip_sentences, progress),
            Family::Bow(b) => bow::code_stats(b, max_sentences, flip_sentences, progress),
        }
    }
}
