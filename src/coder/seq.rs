//! The sequence family's half of [`super::Coder`]: sentence-level tasks over a loaded
//! [`Engine`]: encoding with notices, latent features and posteriors, Hamming paths and
//! interpolations, prior samples, per-dimension perplexities and split statistics.
//!
//! The command line (`path`, `sample`, `flip`, `eval`) and the explorer's tabs both call these,
//! so a screen in the explorer and its scripted counterpart print the same thing for the same
//! seed.

use std::collections::HashSet;
use std::sync::Arc;

use anyhow::{bail, Result};
use rand::rngs::StdRng;
use rand::SeedableRng;

use super::types::{
    read_features, walk_between, EncodedSentence, FeatureKind, PathWalk, Posterior, PriorChoice,
    Samples, SplitStats, SAMPLE_CHUNK,
};
use crate::checkpoint::Provenance;
use crate::corpus::{Corpus, Split};
use crate::data::{encode_examples, length_batches};
use crate::engine::Engine;
use crate::eval::{evaluate, EvalOptions};
use crate::explore::{self, Prior};
use crate::model::decode::Strategy;
use crate::model::variants::VariantScorer;
use crate::model::word_trie::WordTrie;
use crate::model::TokenBatch;
use crate::vocab::{Vocab, UNK};

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

/// A random Hamming path (binary codes) or a linear / spherical interpolation with `steps`
/// steps (continuous codes) from code(A) to code(B), each point decoded greedily, kept to the
/// words of `words` when given (see [`WordTrie`]: the same path, decoded in real words).
pub fn walk_path(
    engine: &Engine,
    a: &str,
    b: &str,
    seed: u64,
    steps: usize,
    slerp: bool,
    words: Option<&WordTrie>,
) -> Result<PathWalk> {
    if !engine.kind().has_latent() {
        bail!("an `lm` model has no latent space to walk");
    }
    let binary = engine.kind().is_binary();
    let ea = encode_sentence(engine, a).map_err(|e| e.context("sentence A"))?;
    let eb = encode_sentence(engine, b).map_err(|e| e.context("sentence B"))?;
    walk_between(ea, eb, binary, seed, steps, slerp, &mut |codes, rng| {
        engine.decode_restricted(codes, Strategy::Greedy, words, rng)
    })
}

/// Draws `n` codes from the prior with `seed` and decodes them, kept to the words of `words`
/// when given (see [`WordTrie`]: the same codes, decoded in real words). `bit_means` is needed
/// only for [`PriorChoice::Means`] on binary models (see [`corpus_bit_means`]).
pub fn sample_prior(
    engine: &Engine,
    n: usize,
    seed: u64,
    temperature: f32,
    prior: PriorChoice,
    bit_means: Option<&[f32]>,
    words: Option<&WordTrie>,
) -> Result<Samples> {
    Samples::collect(seed, n, |each| {
        sample_prior_each(engine, n, seed, temperature, prior, bit_means, words, each)
    })
}

/// [`sample_prior`] handing each sample (code, text) to `each` as soon as its batch of
/// [`SAMPLE_CHUNK`] is decoded, so any number of samples runs in bounded memory. Codes come
/// from one generator in order, and greedy decoding draws nothing from it, so the samples do
/// not depend on the batching. An `lm`'s samples are drawn word by word at the temperature,
/// which `words` never restricts.
#[allow(clippy::too_many_arguments)]
pub fn sample_prior_each(
    engine: &Engine,
    n: usize,
    seed: u64,
    temperature: f32,
    prior: PriorChoice,
    bit_means: Option<&[f32]>,
    words: Option<&WordTrie>,
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
                let texts = engine.decode_restricted(&codes, Strategy::Greedy, words, &mut rng)?;
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
    if spec.is_none() && provenance.stored_corpus().is_none() {
        // A factors corpus can be rebuilt from its seed (checked against the stored hash).
        if let Some(corpus) = crate::factors::regenerate_for(provenance) {
            return Ok(corpus);
        }
    }
    provenance.corpus(spec)
}

/// The checkpoint's own corpus, with a message that does not assume a command-line flag.
pub fn own_corpus(engine: &Engine, purpose: &str) -> Result<Corpus> {
    own_corpus_of(&engine.provenance, purpose)
}

/// [`own_corpus`] for a checkpoint of any family, by its provenance.
pub fn own_corpus_of(provenance: &Provenance, purpose: &str) -> Result<Corpus> {
    if provenance.stored_corpus().is_none() {
        if let Some(corpus) = crate::factors::regenerate_for(provenance) {
            return Ok(corpus);
        }
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

/// Scores `ids` under `code` and every variant in one batch ([`near_code_scorer`]).
pub fn variant_perplexities(
    engine: &Engine,
    ids: &[u32],
    code: &[f32],
    variants: &[Vec<f32>],
) -> Result<VariantScores> {
    let mut all = Vec::with_capacity(variants.len() + 1);
    all.push(code.to_vec());
    all.extend(variants.iter().cloned());
    let ppl = near_code_scorer(engine, ids, code)?(&all)?;
    Ok(VariantScores {
        base_ppl: ppl[0],
        ppl: ppl[1..].to_vec(),
    })
}

/// Latent sizes from which [`near_code_scorer`] scores around the base code's states: below,
/// its set-up (the base's exact logits and a head of the vocabulary at every step, ~6 ms for a
/// 13-word sentence) costs more than it saves (64 bits, Sapphire Rapids, one thread: bars 17.7
/// ms against 11.9 by the whole-vocabulary 8-bit layer; 256 bits: 27 against 41).
pub const NEAR_BASE_MIN_CODES: usize = 128;

/// Perplexity per word of `ids` under codes near `base` (one bit or one σ away: the per-bit
/// bars), one figure per code in each call. The base is scored once, exactly, when the scorer
/// is made; each nearby code through the heads of the vocabulary after the base's states,
/// within ~1e-4 of the exact figure, 4e-3 at worst ([`crate::model::variants`]) — from
/// [`NEAR_BASE_MIN_CODES`] dimensions on; smaller codes by the whole-vocabulary 8-bit layer. Every code is scored on rows
/// of its own, so scoring the codes in several calls gives the same values (the explorer's
/// bars come in chunks).
pub fn near_code_scorer<'a>(
    engine: &'a Engine,
    ids: &'a [u32],
    base: &[f32],
) -> Result<impl FnMut(&[Vec<f32>]) -> Result<Vec<f64>> + 'a> {
    // Per word, like every perplexity the tool shows.
    let tokens = (engine.vocab.word_count(ids) + 1) as f64;
    let l = engine.latent_dim();
    let check = move |code: &[f32]| {
        if code.len() != l {
            bail!(
                "a code has {} dimensions but the model's latent has {l}",
                code.len()
            );
        }
        Ok(())
    };
    let latent = engine.kind().has_latent() && !ids.is_empty();
    if latent {
        check(base)?;
    }
    let scorer = if latent && l >= NEAR_BASE_MIN_CODES {
        Some(VariantScorer::new(&engine.model, ids, base)?)
    } else {
        None
    };
    Ok(move |codes: &[Vec<f32>]| -> Result<Vec<f64>> {
        if codes.is_empty() {
            return Ok(Vec::new());
        }
        let nll = match &scorer {
            _ if latent => {
                for code in codes {
                    check(code)?;
                }
                let flat: Vec<f32> = codes.iter().flatten().copied().collect();
                let z = candle_core::Tensor::from_vec(flat, (codes.len(), l), &engine.device)?;
                match &scorer {
                    Some(scorer) => scorer.nll(&z)?,
                    // The 8-bit output layer over the whole vocabulary, every code on its own.
                    None => engine.model.score_sentence_quantized(&z, ids)?,
                }
            }
            _ => engine.score(codes, ids)?,
        };
        Ok(nll.iter().map(|&n| (n as f64 / tokens).exp()).collect())
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
    let factor_values = factor_values_of(corpus.split(split), ids.len());
    ids.truncate(max_sentences.max(1));
    if ids.is_empty() {
        bail!("the {split} split of `{}` has no sentences", corpus.name);
    }
    let opts = EvalOptions {
        flip_sentences,
        // The Stats tab shows code statistics; reconstruction stays with `eval`.
        recon_sentences: 0,
        seed: 0,
        factor_values: factor_values.map(|mut v| {
            v.truncate(ids.len());
            v
        }),
        // Every bit's flip of these sentences is decoded for the bit ↔ factor table.
        factor_flip_sentences: flip_sentences.min(200),
        ..EvalOptions::default()
    };
    let report = evaluate(&engine.model, &engine.vocab, &ids, &opts, progress)?;
    Ok(SplitStats {
        corpus: corpus.name,
        split,
        report,
    })
}

/// The words of a checkpoint's training corpus (its train split), for decoding restricted to
/// real words and for counting invented words.
#[derive(Debug, Clone)]
pub struct CorpusWords {
    /// Where the list came from, for headers and reports (the corpus name).
    pub corpus: String,
    pub words: Arc<HashSet<String>>,
    /// The trie of those words as the model spells them; `None` for a word-level vocabulary
    /// (nothing to restrict).
    pub trie: Option<Arc<WordTrie>>,
}

/// [`CorpusWords`] of `corpus`'s train split, spelled by `vocab`.
pub fn corpus_words_of(corpus: &Corpus, vocab: &Vocab) -> CorpusWords {
    let words: HashSet<String> = corpus
        .train
        .iter()
        .flat_map(|e| e.text.split(' '))
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect();
    let trie = WordTrie::new(vocab, words.iter().map(String::as_str)).map(Arc::new);
    CorpusWords {
        corpus: corpus.name.clone(),
        words: Arc::new(words),
        trie,
    }
}

/// Whether keeping `engine`'s decodings to its training corpus's words can change them: a
/// subword model that decodes codes. A word-level model emits only corpus words anyway, and an
/// `lm` samples word by word at a temperature, which is never restricted.
pub fn real_words_apply(engine: &Engine) -> bool {
    engine.kind().has_latent() && engine.vocab.kind() != crate::vocab::TokenizerKind::Word
}

/// [`CorpusWords`] of the corpus a checkpoint was trained on (an error naming it when it is not
/// here).
pub fn corpus_words(engine: &Engine) -> Result<CorpusWords> {
    let corpus = own_corpus(engine, "real-word decoding and invented-word counts")?;
    Ok(corpus_words_of(&corpus, &engine.vocab))
}

/// The factor values of `examples` when they are a factors corpus's split
/// ([`crate::factors`]) and all `encoded` of them reached the model (so values and token ids
/// stay aligned); `None` otherwise.
pub fn factor_values_of(
    examples: &[crate::corpus::Example],
    encoded: usize,
) -> Option<Vec<crate::factors::Values>> {
    crate::factors::split_values(examples).filter(|v| v.len() == encoded)
}
/// Sentences per encoding batch for the sequence models (grouped by length).
const SEQ_BATCH_TOKENS: usize = 8192;
const SEQ_MAX_BATCH: usize = 512;

/// [`super::Coder::features`] for a sequence model held as an [`Engine`] (as the explorer holds it).
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
        latent_loc(engine, texts, progress)?,
        kind,
        binary,
    ))
}

/// The latent head's `loc` (logits, or μ) of each text under a sequence model.
pub fn latent_loc(
    engine: &Engine,
    texts: &[&str],
    progress: &mut dyn FnMut(f64),
) -> Result<Vec<Vec<f32>>> {
    let ids: Vec<Vec<u32>> = engine
        .tokenize_many(texts)
        .into_iter()
        .map(|t| {
            let ids = t.ids;
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
    // Detached once for every batch: the weights' fingerprints (which say the encoder's cached
    // tables are current) are then computed once, not per batch.
    let model = engine.model.detached();
    for batch in length_batches(&lengths, SEQ_BATCH_TOKENS, SEQ_MAX_BATCH) {
        let rows: Vec<&[u32]> = batch.iter().map(|&i| ids[i].as_slice()).collect();
        let tb = TokenBatch::new(&rows, None, &engine.device)?;
        let loc = model.encode_inference(&tb.src)?.loc.to_vec2::<f32>()?;
        for (&slot, l) in batch.iter().zip(loc) {
            out[slot] = l;
        }
        done += batch.len();
        progress(done as f64 / ids.len().max(1) as f64);
    }
    Ok(out)
}

/// Texts per progress report when encoding with a sequence model.
const SEQ_PROGRESS_CHUNK: usize = 4096;

/// Groups of positions of `texts` that [`posteriors`] (continuous models) or [`latent_loc`]
/// (binary ones) can encode one group at a time with the very codes they give all texts at
/// once ([`super::Coder::index_parts`]): whole chunks of [`SEQ_PROGRESS_CHUNK`] texts (each is
/// encoded alone anyway), spread over the corpus, or all texts of some token lengths (a
/// length's batches are then the same rows). At least `min_part` texts per group where the
/// groups allow.
pub fn index_parts(engine: &Engine, texts: &[&str], min_part: usize) -> Vec<Vec<usize>> {
    if !engine.kind().is_binary() {
        let chunks = texts.len().div_ceil(SEQ_PROGRESS_CHUNK);
        let mut order: Vec<usize> = (0..chunks).collect();
        // 0, ½, ¼, ¾, …: each part so far lies spread over the corpus (whose entries come
        // sorted by topic).
        order.sort_by_key(|&i| (i as u32).reverse_bits());
        return order
            .into_iter()
            .map(|c| {
                (c * SEQ_PROGRESS_CHUNK..((c + 1) * SEQ_PROGRESS_CHUNK).min(texts.len())).collect()
            })
            .collect();
    }
    let lengths: Vec<usize> = engine
        .tokenize_many(texts)
        .iter()
        .map(|t| t.ids.len().max(1))
        .collect();
    let mut by_len: std::collections::BTreeMap<usize, Vec<usize>> = Default::default();
    for (i, &l) in lengths.iter().enumerate() {
        by_len.entry(l).or_default().push(i);
    }
    let mut parts: Vec<Vec<usize>> = Vec::new();
    let mut current = Vec::new();
    for (_, idx) in by_len {
        current.extend(idx);
        if current.len() >= min_part {
            current.sort_unstable();
            parts.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        current.sort_unstable();
        parts.push(current);
    }
    parts
}

/// μ and σ of each text under a continuous sequence model ([`super::Coder::posteriors`]).
/// A text with no words is encoded as `<unk>`, as [`latent_loc`] does.
pub fn posteriors(
    engine: &Engine,
    texts: &[&str],
    progress: &mut dyn FnMut(f64),
) -> Result<Vec<Posterior>> {
    if !engine.kind().has_latent() {
        bail!("an `lm` model has no encoder, so sentences have no code");
    }
    if engine.kind().is_binary() {
        bail!(
            "a `{}` model has binary codes; search it by Hamming distance (the binary index)",
            engine.kind()
        );
    }
    let mut out = Vec::with_capacity(texts.len());
    for chunk in texts.chunks(SEQ_PROGRESS_CHUNK) {
        let ids: Vec<Vec<u32>> = engine
            .tokenize_many(chunk)
            .into_iter()
            .map(|t| {
                let ids = t.ids;
                if ids.is_empty() {
                    vec![UNK]
                } else {
                    ids
                }
            })
            .collect();
        out.extend(engine.encode(&ids)?.into_iter().map(|e| Posterior {
            mean: e.mean,
            std: e.std,
        }));
        progress(out.len() as f64 / texts.len().max(1) as f64);
    }
    Ok(out)
}
