//! The vocabulary: word-level, or subword (BPE or unigram) so that no typed word is unknown.
//! Trained with the `tokenizers` crate and stored as a standard `tokenizer.json`, so that other
//! tools (e.g. Python's `tokenizers.Tokenizer.from_str`) can read a model's vocabulary.
//!
//! Every kind sits behind the `Lowercase` normalizer and the `Whitespace` pre-tokenizer, with
//! four special tokens at fixed ids ([`PAD`], [`UNK`], [`BOS`], [`EOS`]).
//!
//! - **word** ([`TokenizerKind::Word`]): a `WordLevel` model. Encoding through the full
//!   tokenizer builds offsets, attention masks and other bookkeeping a training loop does not
//!   need, so [`Vocab`] also keeps plain hash maps and encodes by splitting [`normalize`]d text,
//!   which yields the same ids (checked in the tests).
//! - **bpe** / **unigram**: a `BPE` or `Unigram` model after a `Metaspace` pre-tokenizer that
//!   marks the start of every word with `▁`, so pieces join back into the same space-separated
//!   words the word-level vocabulary shows, and a word is counted wherever a piece starts with
//!   `▁`. Perplexity is per word either way (see [`Vocab::word_count`]).
//!
//! One deliberate difference: the full tokenizer recognises a literal `<pad>` in raw text as
//! the special token, while [`Vocab::encode`] first [`normalize`]s it into `<`, `pad`, `>`
//! like any other text, so user input can never smuggle control tokens into a sequence.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use anyhow::{bail, ensure, Context, Result};
use tokenizers::decoders::DecoderWrapper;
use tokenizers::models::bpe::{BpeTrainer, BPE};
use tokenizers::models::unigram::{Unigram, UnigramTrainer};
use tokenizers::models::wordlevel::{WordLevel, WordLevelTrainer};
use tokenizers::models::{ModelWrapper, TrainerWrapper};
use tokenizers::normalizers::{
    Lowercase, NormalizerWrapper, Sequence as NormalizerSequence, StripAccents, NFKD,
};
use tokenizers::pre_tokenizers::metaspace::{Metaspace, PrependScheme};
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::whitespace::Whitespace;
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::{AddedToken, Tokenizer};

use crate::corpus::normalize;

/// Padding, ignored by the loss.
pub const PAD: u32 = 0;
/// Any token not in the vocabulary.
pub const UNK: u32 = 1;
/// Start of sequence, fed to the decoder first.
pub const BOS: u32 = 2;
/// End of sequence.
pub const EOS: u32 = 3;

/// The special tokens, in id order.
const SPECIALS: [&str; 4] = ["<pad>", "<unk>", "<bos>", "<eos>"];
const UNK_TOKEN: &str = SPECIALS[UNK as usize];

/// Marks the start of a word inside subword pieces (SentencePiece's convention).
const WORD_START: char = '\u{2581}';

/// How text is cut into tokens.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Default,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum TokenizerKind {
    /// Whole words; words outside the vocabulary become `<unk>`.
    #[default]
    Word,
    /// Byte-pair-encoding pieces: rare words are spelled from frequent pieces.
    Bpe,
    /// Unigram-language-model pieces (SentencePiece's default).
    Unigram,
}

impl TokenizerKind {
    pub fn name(self) -> &'static str {
        match self {
            TokenizerKind::Word => "word",
            TokenizerKind::Bpe => "bpe",
            TokenizerKind::Unigram => "unigram",
        }
    }
}

/// A vocabulary: a `tokenizers` tokenizer plus fast lookup tables.
#[derive(Clone)]
pub struct Vocab {
    kind: TokenizerKind,
    tokenizer: Tokenizer,
    /// token -> id, including the special tokens.
    ids: HashMap<String, u32>,
    /// id -> token; ids are dense, `0..len`.
    tokens: Vec<String>,
    /// Subword kinds: whether each id's piece starts a word.
    starts_word: Vec<bool>,
}

impl fmt::Debug for Vocab {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vocab").field("len", &self.len()).finish()
    }
}

/// The normalizer of subword vocabularies trained now: compatibility decomposition (NFKD),
/// combining marks dropped (StripAccents), lower case — "Café" → "cafe", "ﬁ" → "fi", "Ⅳ" →
/// "iv". Letters of scripts the training text lacks (CJK, Greek, Cyrillic, emoji…) still
/// become `<unk>`.
pub fn folding_normalizer() -> NormalizerWrapper {
    NormalizerWrapper::Sequence(NormalizerSequence::new(vec![
        NormalizerWrapper::NFKD(NFKD),
        NormalizerWrapper::StripAccents(StripAccents),
        NormalizerWrapper::Lowercase(Lowercase),
    ]))
}

/// Refuses the model options of a `tokenizer.json` that latent-tui never writes: they change
/// how text is cut while the vocabulary still loads (BPE dropout makes encoding random, a
/// continuation prefix or end-of-word suffix changes every piece and made the tokenizers crate
/// panic), and a Unigram model's unknown piece must be `<unk>` (an `unk_id` of another piece
/// turned unknown words into that word).
fn refuse_unwritten_model_options(json: &serde_json::Value) -> Result<()> {
    use serde_json::Value;
    let Some(model) = json.get("model").and_then(Value::as_object) else {
        bail!("it has no `model` object");
    };
    let unset = |key: &str| model.get(key).is_none_or(Value::is_null);
    let off = |key: &str| model.get(key).is_none_or(|v| v == &Value::Bool(false));
    match model.get("type").and_then(Value::as_str) {
        Some("BPE") => {
            for key in ["dropout", "continuing_subword_prefix", "end_of_word_suffix"] {
                ensure!(
                    unset(key),
                    "the BPE model sets `{key}`, which latent-tui never writes (set it to null)"
                );
            }
            for key in ["fuse_unk", "byte_fallback", "ignore_merges"] {
                ensure!(
                    off(key),
                    "the BPE model sets `{key}`, which latent-tui never writes (set it to false)"
                );
            }
        }
        Some("Unigram") => {
            ensure!(
                off("byte_fallback"),
                "the Unigram model sets `byte_fallback`, which latent-tui never writes (set it to false)"
            );
            ensure!(
                model.get("unk_id").and_then(Value::as_u64) == Some(UNK as u64),
                "the Unigram model's `unk_id` is {}, but the unknown piece {UNK_TOKEN:?} has id {UNK}",
                model.get("unk_id").unwrap_or(&Value::Null)
            );
        }
        _ => {}
    }
    Ok(())
}

/// Whether `n` is exactly [`folding_normalizer`].
fn is_folding_normalizer(n: &NormalizerWrapper) -> bool {
    match n {
        NormalizerWrapper::Sequence(seq) => matches!(
            seq.as_ref(),
            [
                NormalizerWrapper::NFKD(_),
                NormalizerWrapper::StripAccents(_),
                NormalizerWrapper::Lowercase(_)
            ]
        ),
        _ => false,
    }
}

/// Token ids of a sentence as a model reads it ([`Vocab::tokenize_with`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Tokenized {
    pub ids: Vec<u32>,
    /// Words not in the vocabulary (shown as <unk>).
    pub unknown: Vec<String>,
    /// Words cut off beyond the model's maximum length.
    pub truncated: usize,
}

/// Most words [`Vocab::tokenize_cached`] remembers per cache (bounded memory on any corpus).
const MAX_SEEN_WORDS: usize = 1 << 20;

impl Vocab {
    /// Trains a vocabulary of at most `max_size` tokens (special tokens
    /// included) from `texts`, keeping the most frequent words that occur at
    /// least `min_frequency` times. Ties are broken alphabetically, so the
    /// result is deterministic. Texts may be raw or already normalized.
    pub fn train<'a>(
        texts: impl Iterator<Item = &'a str>,
        max_size: usize,
        min_frequency: u64,
    ) -> Result<Vocab> {
        ensure!(
            max_size > SPECIALS.len(),
            "vocabulary size {max_size} leaves no room for words next to the {} special tokens",
            SPECIALS.len()
        );
        let model = WordLevel::builder()
            .unk_token(UNK_TOKEN.to_owned())
            .build()
            .map_err(anyhow::Error::msg)?;
        let mut tokenizer = Tokenizer::new(model);
        tokenizer
            .with_normalizer(Some(Lowercase))
            .map_err(anyhow::Error::msg)?;
        tokenizer.with_pre_tokenizer(Some(Whitespace));

        // The trainer puts its special tokens first, in order, which is what
        // pins them to ids 0..4.
        let trainer = WordLevelTrainer::builder()
            .vocab_size(max_size)
            .min_frequency(min_frequency)
            .show_progress(false)
            .special_tokens(
                SPECIALS
                    .iter()
                    .map(|s| AddedToken::from(*s, true))
                    .collect(),
            )
            .build()
            .map_err(anyhow::Error::msg)?;
        // `train` wants a `Send` iterator so it can count words in parallel;
        // collecting the borrowed strings is cheap and accepts any iterator.
        let texts: Vec<&str> = texts.collect();
        tokenizer
            .train(
                &mut TrainerWrapper::WordLevelTrainer(trainer),
                texts.into_iter(),
            )
            .map_err(anyhow::Error::msg)
            .context("training the word-level vocabulary")?;
        Self::from_tokenizer(tokenizer)
    }

    /// Trains a vocabulary of `kind` with at most `max_size` tokens (special tokens included).
    /// For subword kinds `min_frequency` applies to merges (BPE) and is ignored by unigram.
    pub fn train_kind<'a>(
        kind: TokenizerKind,
        texts: impl Iterator<Item = &'a str>,
        max_size: usize,
        min_frequency: u64,
    ) -> Result<Vocab> {
        if kind == TokenizerKind::Word {
            return Self::train(texts, max_size, min_frequency);
        }
        ensure!(
            max_size > SPECIALS.len() + 1,
            "a {} vocabulary of {max_size} leaves no room for pieces next to the {} special tokens",
            kind.name(),
            SPECIALS.len()
        );
        let specials: Vec<AddedToken> = SPECIALS
            .iter()
            .map(|s| AddedToken::from(*s, true))
            .collect();
        let texts: Vec<&str> = texts.collect();
        let mut tokenizer = match kind {
            TokenizerKind::Bpe => Tokenizer::new(
                BPE::builder()
                    .unk_token(UNK_TOKEN.to_owned())
                    .build()
                    .map_err(anyhow::Error::msg)?,
            ),
            _ => Tokenizer::new(Unigram::default()),
        };
        // New subword vocabularies fold accents: "Café" and "café" read as "cafe" rather than
        // "caf<unk>" (vocabularies trained before keep their Lowercase normalizer).
        tokenizer
            .with_normalizer(Some(folding_normalizer()))
            .map_err(anyhow::Error::msg)?;
        tokenizer.with_pre_tokenizer(Some(subword_pre_tokenizer()));
        tokenizer.with_decoder(Some(DecoderWrapper::Metaspace(Metaspace::new(
            WORD_START,
            PrependScheme::Always,
            true,
        ))));
        let mut trainer = match kind {
            TokenizerKind::Bpe => TrainerWrapper::BpeTrainer(
                BpeTrainer::builder()
                    .vocab_size(max_size)
                    .min_frequency(min_frequency)
                    .special_tokens(specials)
                    .show_progress(false)
                    .build(),
            ),
            _ => TrainerWrapper::UnigramTrainer(
                UnigramTrainer::builder()
                    .vocab_size(max_size as u32)
                    .special_tokens(specials)
                    .unk_token(Some(UNK_TOKEN.to_owned()))
                    .show_progress(false)
                    .build()
                    .map_err(anyhow::Error::msg)?,
            ),
        };
        tokenizer
            .train(&mut trainer, texts.into_iter())
            .map_err(anyhow::Error::msg)
            .with_context(|| format!("training the {} vocabulary", kind.name()))?;
        Self::from_tokenizer(tokenizer)
    }

    /// How this vocabulary cuts text.
    pub fn kind(&self) -> TokenizerKind {
        self.kind
    }

    /// Reads a vocabulary from `tokenizer.json` text, as written by
    /// [`Vocab::to_json`].
    pub fn from_json(json: &str) -> Result<Vocab> {
        let value: serde_json::Value =
            serde_json::from_str(json).context("cannot parse tokenizer.json")?;
        refuse_unwritten_model_options(&value).context("unsupported tokenizer.json")?;
        // The tokenizers crate asserts rather than errs on some inputs (a BPE continuation
        // prefix longer than a piece panicked on a slice): a checkpoint is untrusted, so a panic
        // while it is parsed is an error too. (The default hook has printed it by then; the
        // options above refuse what is known to panic before it is reached.)
        let parsed = std::panic::catch_unwind(|| Tokenizer::from_str(json))
            .map_err(|_| anyhow::anyhow!("the tokenizers library failed on it"))
            .context("cannot parse tokenizer.json")?;
        let tokenizer = parsed
            .map_err(anyhow::Error::msg)
            .context("cannot parse tokenizer.json")?;
        Self::from_tokenizer(tokenizer).context("unsupported tokenizer.json")
    }

    /// The vocabulary as standard `tokenizer.json` text.
    pub fn to_json(&self) -> Result<String> {
        self.tokenizer
            .to_string(false)
            .map_err(anyhow::Error::msg)
            .context("cannot serialize the tokenizer")
    }

    /// Builds the lookup tables, checking that the tokenizer is one whose
    /// behaviour the fast path reproduces.
    fn from_tokenizer(tokenizer: Tokenizer) -> Result<Vocab> {
        let kind = match tokenizer.get_model() {
            ModelWrapper::WordLevel(model) => {
                ensure!(
                    model.unk_token == UNK_TOKEN,
                    "the unknown token is {:?}, expected {UNK_TOKEN:?}",
                    model.unk_token
                );
                TokenizerKind::Word
            }
            ModelWrapper::BPE(model) => {
                ensure!(
                    model.unk_token.as_deref() == Some(UNK_TOKEN),
                    "the BPE unknown token is {:?}, expected {UNK_TOKEN:?}",
                    model.unk_token
                );
                TokenizerKind::Bpe
            }
            ModelWrapper::Unigram(_) => TokenizerKind::Unigram,
            _ => bail!("the model is not a WordLevel, BPE or Unigram model"),
        };
        let folds = tokenizer
            .get_normalizer()
            .is_some_and(is_folding_normalizer);
        ensure!(
            matches!(
                tokenizer.get_normalizer(),
                Some(NormalizerWrapper::Lowercase(_))
            ) || (folds && kind != TokenizerKind::Word),
            "the normalizer is not Lowercase (or, for subword vocabularies, the sequence NFKD, StripAccents, Lowercase)"
        );
        // A checkpoint is untrusted: every tokenizer feature latent-tui never writes is refused,
        // since padding to a fixed length or truncating at 0 would change (or blow up) every
        // encoding while the model still loads.
        if let Some(p) = tokenizer.get_padding() {
            bail!(
                "the tokenizer pads every encoding ({:?}); latent-tui never writes `padding` (set it to null)",
                p.strategy
            );
        }
        if let Some(t) = tokenizer.get_truncation() {
            bail!(
                "the tokenizer truncates every encoding (max_length {}); latent-tui never writes `truncation` (set it to null)",
                t.max_length
            );
        }
        ensure!(
            tokenizer.get_post_processor().is_none(),
            "the tokenizer has a `post_processor`, which latent-tui never writes"
        );
        let added = tokenizer.get_added_tokens_decoder();
        ensure!(
            added.len() <= SPECIALS.len()
                && added
                    .values()
                    .all(|t| SPECIALS.contains(&t.content.as_str())),
            "the tokenizer has added tokens other than {SPECIALS:?}, which latent-tui never writes"
        );
        let pre = tokenizer.get_pre_tokenizer();
        if kind == TokenizerKind::Word {
            ensure!(
                matches!(pre, Some(PreTokenizerWrapper::Whitespace(_))),
                "the pre-tokenizer is not Whitespace"
            );
        } else {
            ensure!(
                pre == Some(&subword_pre_tokenizer()),
                "the pre-tokenizer of a subword vocabulary must be Whitespace then Metaspace(\u{2581}, always)"
            );
        }

        let ids: HashMap<String, u32> = tokenizer.get_vocab(true).into_iter().collect();
        for (expected, token) in (0u32..).zip(SPECIALS) {
            let found = ids.get(token).copied();
            ensure!(
                found == Some(expected),
                "special token {token:?} must have id {expected}, found {}",
                found.map_or_else(|| "none".to_owned(), |id| id.to_string())
            );
        }
        // Model outputs index `tokens` directly, so ids must be exactly 0..len.
        let mut tokens = vec![None; ids.len()];
        for (token, &id) in &ids {
            match tokens.get_mut(id as usize) {
                Some(slot @ None) => *slot = Some(token.clone()),
                Some(Some(other)) => bail!("tokens {other:?} and {token:?} share id {id}"),
                None => bail!(
                    "token {token:?} has id {id}, but the vocabulary has only {} tokens",
                    ids.len()
                ),
            }
        }
        let tokens: Vec<String> = tokens.into_iter().flatten().collect();
        let starts_word = tokens
            .iter()
            .map(|t| kind != TokenizerKind::Word && t.starts_with(WORD_START))
            .collect();
        Ok(Vocab {
            kind,
            tokenizer,
            ids,
            tokens,
            starts_word,
        })
    }

    /// Number of tokens, special tokens included.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Always false in practice: every vocabulary holds the special tokens.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Encodes raw text: [`normalize`]s it, then maps each token to its id,
    /// [`UNK`] for unknown tokens. No [`BOS`]/[`EOS`] are added.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        self.encode_normalized(&normalize(text))
    }

    /// Encodes text that is already normalized (as corpus examples are): word-level by
    /// splitting on single spaces, subword through the tokenizer.
    pub fn encode_normalized(&self, text: &str) -> Vec<u32> {
        if self.kind != TokenizerKind::Word {
            return match self.tokenizer.encode(text, false) {
                Ok(enc) => enc.get_ids().to_vec(),
                // The subword models do not fail on normalized text (unknown characters become
                // <unk>); should one ever, every word becomes <unk> rather than vanishing.
                Err(_) => vec![UNK; text.split(' ').filter(|t| !t.is_empty()).count()],
            };
        }
        text.split(' ')
            // Tolerate stray double spaces rather than emitting empty tokens.
            .filter(|token| !token.is_empty())
            .map(|token| self.id(token).unwrap_or(UNK))
            .collect()
    }

    /// The one truncation rule of every model input (issue 23, item 14): the words of the
    /// normalized `text`, each as its pieces (`pieces(word)`), kept while the ids fit in
    /// `max_len` tokens; the first word that does not fit ends the sentence, so a sentence is
    /// cut between words, never inside one. `eval`, training, `encode`, `flip`, `path`,
    /// `search` and the explorer all read sentences through it.
    pub fn tokenize_with(
        &self,
        normalized: &str,
        max_len: usize,
        pieces: &mut dyn FnMut(&str) -> Vec<u32>,
    ) -> Tokenized {
        let words: Vec<&str> = normalized.split(' ').filter(|w| !w.is_empty()).collect();
        let mut ids = Vec::with_capacity(words.len().min(max_len));
        let mut unknown = Vec::new();
        let mut kept = 0;
        for w in &words {
            let pieces = pieces(w);
            if ids.len() + pieces.len() > max_len {
                break;
            }
            if pieces.contains(&UNK) {
                unknown.push(w.to_string());
            }
            ids.extend(pieces);
            kept += 1;
        }
        Tokenized {
            ids,
            unknown,
            truncated: words.len() - kept,
        }
    }

    /// [`Self::tokenize_with`] remembering each word's pieces in `seen`: a corpus repeats its
    /// words, and a subword tokenizer's call per word costs far more than a lookup.
    pub fn tokenize_cached(
        &self,
        normalized: &str,
        max_len: usize,
        seen: &mut HashMap<String, Vec<u32>>,
    ) -> Tokenized {
        self.tokenize_with(normalized, max_len, &mut |w| {
            if let Some(pieces) = seen.get(w) {
                return pieces.clone();
            }
            let pieces = self.encode_normalized(w);
            if seen.len() < MAX_SEEN_WORDS {
                seen.insert(w.to_string(), pieces.clone());
            }
            pieces
        })
    }

    /// Words (and punctuation marks) among `ids`: what perplexity is divided by, so that it is
    /// per word whatever the tokenizer. Word-level: one per id. Subword: the pieces that start
    /// a word (the first id always does: a unigram `<unk>` can swallow the mark).
    pub fn word_count(&self, ids: &[u32]) -> usize {
        if self.kind == TokenizerKind::Word {
            return ids.len();
        }
        ids.iter()
            .enumerate()
            .filter(|&(i, &id)| i == 0 || self.starts_word.get(id as usize) == Some(&true))
            .count()
    }

    /// Subword kinds: whether the piece `id` starts a word (carries `▁`). Word-level: true.
    pub fn starts_word(&self, id: u32) -> bool {
        self.kind == TokenizerKind::Word || self.starts_word.get(id as usize) == Some(&true)
    }

    /// Turns ids back into text: words joined by spaces (subword pieces joined into their
    /// words), stopping at the first [`EOS`] and leaving out [`PAD`] and [`BOS`].
    pub fn decode(&self, ids: &[u32]) -> String {
        let tokens = ids
            .iter()
            .take_while(|&&id| id != EOS)
            .filter(|&&id| id != PAD && id != BOS)
            .map(|&id| self.token(id));
        if self.kind == TokenizerKind::Word {
            return tokens.collect::<Vec<_>>().join(" ");
        }
        let mut text = String::new();
        for t in tokens {
            match t.strip_prefix(WORD_START) {
                Some(rest) => {
                    if !text.is_empty() {
                        text.push(' ');
                    }
                    text.push_str(rest);
                }
                None => text.push_str(t),
            }
        }
        text
    }

    /// The token with id `id`; `<unk>` for ids outside the vocabulary, so a
    /// bad id shows up in the output instead of crashing the interface.
    pub fn token(&self, id: u32) -> &str {
        self.tokens
            .get(id as usize)
            .map_or(UNK_TOKEN, String::as_str)
    }

    /// The id of `token`, if it is in the vocabulary.
    pub fn id(&self, token: &str) -> Option<u32> {
        self.ids.get(token).copied()
    }

    /// The tokens of `ids`, as stored (subword pieces keep their `▁`).
    pub fn tokens_of(&self, ids: &[u32]) -> Vec<&str> {
        ids.iter().map(|&id| self.token(id)).collect()
    }

    /// The underlying tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }
}

/// Whitespace splitting, then a `▁` before every word: the pre-tokenizer of subword kinds.
fn subword_pre_tokenizer() -> PreTokenizerWrapper {
    PreTokenizerWrapper::Sequence(Sequence::new(vec![
        PreTokenizerWrapper::Whitespace(Whitespace),
        PreTokenizerWrapper::Metaspace(Metaspace::new(WORD_START, PrependScheme::Always, true)),
    ]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::corpus::Corpus;
    use std::time::Instant;

    const TEXTS: [&str; 6] = [
        "The cat sat on the mat.",
        "the dog sat on the log!",
        "A cat and a dog, sitting together.",
        "Don't panic: 42 is the answer.",
        "Straße and Café are words too — naïve ones.",
        "the the the cat",
    ];

    fn small_vocab() -> Vocab {
        Vocab::train(TEXTS.iter().copied(), 1000, 1).unwrap()
    }

    #[test]
    fn specials_have_fixed_ids() {
        let vocab = small_vocab();
        for (id, token) in (0u32..).zip(SPECIALS) {
            assert_eq!(vocab.id(token), Some(id));
            assert_eq!(vocab.token(id), token);
        }
        assert_eq!((PAD, UNK, BOS, EOS), (0, 1, 2, 3));
        // The most frequent word comes right after the specials.
        assert_eq!(vocab.token(4), "the");
    }

    #[test]
    fn size_and_frequency_limits() {
        let vocab = Vocab::train(TEXTS.iter().copied(), 6, 1).unwrap();
        assert_eq!(vocab.len(), 6);
        assert_eq!(vocab.token(4), "the");
        let frequent = Vocab::train(TEXTS.iter().copied(), 1000, 3).unwrap();
        let words: Vec<&str> = (4..frequent.len() as u32)
            .map(|id| frequent.token(id))
            .collect();
        assert_eq!(words, ["the", ".", "cat", "sat"][..words.len()]);
        assert!(Vocab::train(TEXTS.iter().copied(), 4, 1).is_err());
    }

    #[test]
    fn unknown_words_and_decoding() {
        let vocab = small_vocab();
        let ids = vocab.encode("The zebra sat.");
        assert_eq!(ids[1], UNK);
        assert_eq!(vocab.decode(&ids), "the <unk> sat .");
        assert_eq!(vocab.encode(""), Vec::<u32>::new());
        assert_eq!(vocab.encode_normalized("the  cat"), vocab.encode("the cat"));

        let mut framed = vec![BOS];
        framed.extend(vocab.encode("the cat sat"));
        framed.extend([EOS, 4, 5, PAD, PAD]);
        assert_eq!(vocab.decode(&framed), "the cat sat");
        assert_eq!(vocab.decode(&[PAD, 4, PAD]), "the");
        assert_eq!(vocab.token(1_000_000), "<unk>");
    }

    #[test]
    fn fast_path_matches_tokenizer() {
        let vocab = small_vocab();
        for text in TEXTS.iter().copied().chain([
            "THE CAT, the Dog; and an unseen WORD!!",
            "  tabs\tand\nnewlines\r\n and   spaces ",
            "café STRASSE straße ΣΟΦΟΣ snake_case x² ½",
            "numbers 3.14 and 1,000 and 42",
            "",
        ]) {
            let reference = vocab.tokenizer().encode(text, false).unwrap();
            assert_eq!(vocab.encode(text), reference.get_ids(), "{text:?}");
        }
    }

    /// Subword vocabularies small enough to force words into pieces.
    fn subword_vocabs() -> Vec<Vocab> {
        let texts: Vec<String> = TEXTS
            .iter()
            .chain(&[
                "the cats chased the dogs",
                "dogs bark and cats purr",
                "a zebra grazed",
            ])
            .map(|t| normalize(t))
            .collect();
        [TokenizerKind::Bpe, TokenizerKind::Unigram]
            .into_iter()
            .map(|k| Vocab::train_kind(k, texts.iter().map(String::as_str), 90, 1).unwrap())
            .collect()
    }

    #[test]
    fn subword_vocabularies_spell_unseen_words_and_count_words() {
        for vocab in subword_vocabs() {
            let kind = vocab.kind().name();
            for (id, token) in (0u32..).zip(SPECIALS) {
                assert_eq!(vocab.id(token), Some(id), "{kind}");
            }
            // "barked" and "grazing" never occur, but their letters do.
            let text = "The dogs barked, cats were grazing.";
            let ids = vocab.encode(text);
            assert!(!ids.contains(&UNK), "{kind}: {:?}", vocab.tokens_of(&ids));
            assert!(
                ids.len() > 7,
                "{kind}: a 90-token vocabulary must split words"
            );
            assert_eq!(vocab.decode(&ids), normalize(text), "{kind}");
            assert_eq!(vocab.word_count(&ids), 8, "{kind}: 6 words and 2 marks");
            let reference = vocab.tokenizer().encode(text, false).unwrap();
            assert_eq!(
                ids,
                reference.get_ids(),
                "{kind}: raw text through the tokenizer"
            );
            // Control tokens typed as text stay text.
            assert!(!vocab
                .encode("<eos> <pad>")
                .iter()
                .any(|&i| i == EOS || i == PAD));
            let back = Vocab::from_json(&vocab.to_json().unwrap()).unwrap();
            assert_eq!(back.kind(), vocab.kind());
            assert_eq!(back.encode(text), ids, "{kind}: json round trip");
        }
        let word = small_vocab();
        assert_eq!(word.kind(), TokenizerKind::Word);
        assert_eq!(word.word_count(&word.encode("the zebra sat .")), 4);
    }

    #[test]
    fn json_round_trip() {
        let vocab = small_vocab();
        let json = vocab.to_json().unwrap();
        let back = Vocab::from_json(&json).unwrap();
        assert_eq!(back.tokens, vocab.tokens);
        assert_eq!(back.encode("the dog sat"), vocab.encode("the dog sat"));
        assert_eq!(back.to_json().unwrap(), json);
    }

    #[test]
    fn from_json_rejects_wrong_specials() {
        let json = small_vocab().to_json().unwrap();
        // Swap the ids of <bos> and <eos> everywhere they appear.
        let swapped = json
            .replace("\"<bos>\":2", "\"<bos>\":X")
            .replace("\"<eos>\":3", "\"<eos>\":2")
            .replace("\"<bos>\":X", "\"<bos>\":3");
        assert_ne!(swapped, json);
        let err = Vocab::from_json(&swapped).unwrap_err();
        assert!(
            format!("{err:#}").contains("\"<bos>\" must have id 2"),
            "{err:#}"
        );
        assert!(Vocab::from_json("{not json").is_err());
    }

    #[test]
    fn trains_quickly_on_the_bundled_corpus() {
        let corpus = Corpus::bundled_wordnet().unwrap();
        let start = Instant::now();
        let vocab = Vocab::train(corpus.train.iter().map(|e| e.text.as_str()), 20_000, 2).unwrap();
        let elapsed = start.elapsed();
        eprintln!(
            "trained {} tokens on {} lines in {elapsed:?}",
            vocab.len(),
            corpus.train.len()
        );
        assert_eq!(vocab.len(), 20_000);

        let start = Instant::now();
        let tokens: usize = corpus
            .train
            .iter()
            .map(|e| vocab.encode_normalized(&e.text).len())
            .sum();
        eprintln!("encoded {tokens} tokens in {:?}", start.elapsed());

        // Normalized corpus text and raw text must give the tokenizer's ids.
        for example in corpus.valid.iter().step_by(7) {
            let reference = vocab
                .tokenizer()
                .encode(example.text.as_str(), false)
                .unwrap();
            assert_eq!(vocab.encode_normalized(&example.text), reference.get_ids());
        }
    }
}
