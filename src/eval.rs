//! Measuring a model on a corpus split.
//!
//! Perplexity is corpus-level: `exp(Σ NLL / Σ tokens)`, where each sentence's NLL is summed
//! over its words and the closing <eos> (the <bos> input is not predicted), in nats. It is
//! reported with z read three ways: the mean (p or μ), the rounded code (bits, or μ) and a
//! sample. For the binary kinds the report adds each bit's mean, the perplexity when that one
//! bit is flipped in every sentence's rounded code, and the correlation matrix of the rounded
//! codes; for gaussian models the KL per dimension and the number of active units.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use anyhow::Result;
use candle_core::{DType, Tensor};
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::Serialize;

use crate::data::length_batches;
use crate::model::word_trie::WordTrie;
use crate::model::{CodeMode, LatentKind, SeqAutoencoder, TokenBatch};
use crate::vocab::Vocab;

/// Summed NLL and KL over a set of sentences.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct SplitScore {
    pub sentences: usize,
    /// Target tokens: tokens plus one <eos> per sentence.
    pub tokens: usize,
    /// Words plus one <eos> per sentence: what perplexity is per (equal to `tokens` for a
    /// word-level vocabulary).
    pub words: usize,
    pub nll_sum: f64,
    pub kl_sum: f64,
}

impl SplitScore {
    pub fn nll_per_word(&self) -> f64 {
        self.nll_sum / self.words.max(1) as f64
    }
    /// Perplexity per word: exp(Σ NLL over every token and <eos> / Σ (words + 1)), so that
    /// figures compare across tokenizers.
    pub fn ppl(&self) -> f64 {
        self.nll_per_word().exp()
    }
    pub fn nll_per_sentence(&self) -> f64 {
        self.nll_sum / self.sentences.max(1) as f64
    }
    pub fn kl_per_sentence(&self) -> f64 {
        self.kl_sum / self.sentences.max(1) as f64
    }
}

use crate::model::bulk::all_codes;
use crate::model::bulk::{decode_texts, EVAL_BATCH_TOKENS, EVAL_MAX_BATCH};

/// Teacher-forced NLL of `sentences` with the code read as `mode`.
pub fn score_sentences(
    model: &SeqAutoencoder,
    vocab: &Vocab,
    sentences: &[Vec<u32>],
    mode: CodeMode,
    rng: &mut StdRng,
) -> Result<SplitScore> {
    let mut scores = score_sentences_modes(model, vocab, sentences, &[mode], rng)?;
    Ok(scores.remove(0))
}

/// [`score_sentences`] for several code modes in one pass over the batches: the encoder and
/// the decoder's input projection run once per batch for all of them. Only sampling draws from
/// `rng`, so each mode's figure is the one a pass of its own would give.
pub fn score_sentences_modes(
    model: &SeqAutoencoder,
    vocab: &Vocab,
    sentences: &[Vec<u32>],
    modes: &[CodeMode],
    rng: &mut StdRng,
) -> Result<Vec<SplitScore>> {
    let mut scores = vec![SplitScore::default(); modes.len()];
    let lengths: Vec<usize> = sentences.iter().map(|s| s.len()).collect();
    for idx in length_batches(&lengths, EVAL_BATCH_TOKENS, EVAL_MAX_BATCH) {
        let rows: Vec<&[u32]> = idx.iter().map(|&i| sentences[i].as_slice()).collect();
        let batch = TokenBatch::new(&rows, None, model.device())?;
        let params = if model.kind().has_latent() {
            Some(model.encode_inference(&batch.src)?)
        } else {
            None
        };
        let kl = match &params {
            Some(p) => p.kl()?.sum_all()?.to_scalar::<f32>()? as f64,
            None => 0.0,
        };
        let projection = model.decoder_projection(&batch.dec_in)?;
        let words = rows.iter().map(|r| vocab.word_count(r) + 1).sum::<usize>();
        for (score, &mode) in scores.iter_mut().zip(modes) {
            let z = params.as_ref().map(|p| p.code(mode, rng)).transpose()?;
            let nll = model.score_nll_with(z.as_ref(), &batch, projection.as_ref())?;
            score.nll_sum += nll.sum_all()?.to_scalar::<f32>()? as f64;
            score.kl_sum += kl;
            score.sentences += rows.len();
            score.tokens += batch.target_tokens();
            score.words += words;
        }
    }
    Ok(scores)
}

#[derive(Clone, Debug, Serialize)]
pub struct BitReport {
    /// Mean of each rounded bit over the split.
    pub means: Vec<f64>,
    /// Mean of each bit's probability p over the split.
    pub prob_means: Vec<f64>,
    /// Perplexity of the rounded code on the sentences used for flipping.
    pub base_ppl: f64,
    /// Perplexity when bit j is flipped in every sentence's rounded code.
    pub flip_ppl: Vec<f64>,
    /// flip_ppl / base_ppl − 1, as a fraction (0.10 = 10% higher perplexity).
    pub flip_growth: Vec<f64>,
    pub flip_sentences: usize,
    /// Pearson correlation of the rounded bits (L × L); constant bits correlate 0.
    pub correlation: Vec<Vec<f64>>,
}

impl BitReport {
    /// Bits whose rounded value is the same in every code of the split (mean 0 or 1): they
    /// carry nothing about the sentence, whatever a flip of them does to the decoding.
    pub fn constant_bits(&self) -> Vec<usize> {
        (self.means.iter().enumerate())
            .filter(|(_, &m)| m <= 0.0 || m >= 1.0)
            .map(|(j, _)| j)
            .collect()
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct GaussianReport {
    /// Mean KL per dimension over the split.
    pub kl_per_dim: Vec<f64>,
    /// Variance over the split of each dimension's μ.
    pub mean_variance: Vec<f64>,
    /// Dimensions whose μ varies by more than `active_threshold` over the split.
    pub active_units: usize,
    pub active_threshold: f64,
}

/// How well greedy decoding of each sentence's own code gives the sentence back, in words
/// (subword pieces joined), over the first `sentences` of the split.
#[derive(Clone, Debug, Serialize)]
pub struct ReconReport {
    pub sentences: usize,
    /// How the sentences were decoded ("greedy", "beam 4", …).
    pub decoding: String,
    /// Share of sentences decoded exactly.
    pub exact_match: f64,
    /// Share of reference words reproduced at their position.
    pub word_accuracy: f64,
    /// Corpus BLEU-4 (uniform weights, brevity penalty, no smoothing), 0–1.
    pub bleu4: f64,
    /// Share of input words that reach the model as (or containing) `<unk>`.
    pub input_unk_rate: f64,
    /// Whether decoding was restricted to the training corpus's words (`--real-words`).
    pub real_words: bool,
    /// Share of decoded words that the training corpus does not hold (when its word list was
    /// available).
    pub invented_word_rate: Option<f64>,
    /// Decoded words over reference words (below 1: decodings come out short).
    pub length_ratio: f64,
    /// Share of decodings that repeat some 3-gram three times or more ([`repeats_itself`]).
    pub repetition_rate: f64,
    /// The same share over greedy decodings of codes along paths between the sentences' codes
    /// (random Hamming paths for bits, straight lines otherwise): how the model decodes away
    /// from its data, where degenerate loops show first.
    pub path_repetition_rate: f64,
    /// Decodings the path figure is over.
    pub path_decodings: usize,
}

/// True when some 3-gram occurs three times or more among `text`'s words: the loop a
/// degenerate decoder falls into ("of the of the of the").
pub fn repeats_itself(text: &str) -> bool {
    let words: Vec<&str> = text.split_whitespace().collect();
    let mut counts: std::collections::HashMap<&[&str], usize> = Default::default();
    words.windows(3).any(|g| {
        let c = counts.entry(g).or_default();
        *c += 1;
        *c >= 3
    })
}

/// The share of `texts` that [`repeats_itself`] (0 for none).
pub fn repetition_rate<'a>(texts: impl IntoIterator<Item = &'a str>) -> f64 {
    let (mut n, mut repeating) = (0usize, 0usize);
    for t in texts {
        n += 1;
        repeating += usize::from(repeats_itself(t));
    }
    repeating as f64 / n.max(1) as f64
}

/// Sentence pairs whose paths [`reconstruction`] decodes, and the points taken on each.
const PATH_PAIRS: usize = 25;
const POINTS_PER_PATH: usize = 8;

#[derive(Clone, Debug, Serialize)]
pub struct EvalReport {
    pub kind: LatentKind,
    pub sentences: usize,
    pub tokens: usize,
    /// Words plus one <eos> per sentence: what the perplexities are per.
    pub words: usize,
    /// Perplexity by code mode ("mean", "rounded", "sample"; "none" for lm).
    pub ppl: BTreeMap<String, f64>,
    /// NLL per sentence (nats) by code mode.
    pub nll_per_sentence: BTreeMap<String, f64>,
    /// KL to the prior per sentence (nats); none where the model has no KL term
    /// ([`crate::model::ModelConfig::has_kl`]): `null` in JSON, not 0.
    pub kl_per_sentence: Kl,
    pub bits: Option<BitReport>,
    pub gaussian: Option<GaussianReport>,
    /// Models with a code; absent when `recon_sentences` is 0.
    pub reconstruction: Option<ReconReport>,
    /// Disentanglement, when the corpus is a factors corpus ([`crate::factors`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub factors: Option<crate::factors::FactorReport>,
}

/// A KL to the prior in nats where the model has one (`Some`), or none: an `lm` has no code, a
/// bottleneck's code has no prior and lsh's hashing no posterior, and a 0 there read as a
/// posterior equal to its prior. JSON: the number or `null`; printed (`{:.3}` and the like):
/// the number as an `f64` prints, or `none`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(transparent)]
pub struct Kl(pub Option<f64>);

impl Kl {
    /// The KL in nats, where the model has one.
    pub fn nats(self) -> Option<f64> {
        self.0
    }
}

impl std::fmt::Display for Kl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(v) => std::fmt::Display::fmt(&v, f),
            None => f.write_str("none"),
        }
    }
}

#[derive(Clone, Debug)]
pub struct EvalOptions {
    /// Sentences (the first N of the split) used for the bit-flip analysis; 0 skips it.
    pub flip_sentences: usize,
    /// Sentences (the first N of the split) decoded from their own code; 0 skips it.
    pub recon_sentences: usize,
    /// How those reconstructions are decoded (greedy unless asked otherwise).
    pub recon_strategy: crate::model::decode::Strategy,
    pub seed: u64,
    /// How reconstruction decodes and what it counts.
    pub recon: ReconOptions,
    /// Factor values of every sentence, when the corpus is a factors corpus
    /// ([`crate::factors`]): the report then measures disentanglement.
    pub factor_values: Option<Vec<crate::factors::Values>>,
    /// Sentences (the first N) whose single-bit flips are decoded for the factor measures.
    pub factor_flip_sentences: usize,
}

impl Default for EvalOptions {
    fn default() -> Self {
        Self {
            flip_sentences: 1000,
            recon_sentences: 500,
            recon_strategy: crate::model::decode::Strategy::Greedy,
            seed: 0,
            recon: ReconOptions::default(),
            factor_values: None,
            factor_flip_sentences: 500,
        }
    }
}

/// Full evaluation of `sentences`; `progress` receives the fraction done, from 0 to 1.
pub fn evaluate(
    model: &SeqAutoencoder,
    vocab: &Vocab,
    sentences: &[Vec<u32>],
    opts: &EvalOptions,
    progress: &mut dyn FnMut(f64),
) -> Result<EvalReport> {
    let kind = model.kind();
    let mut rng = StdRng::seed_from_u64(opts.seed);
    let mut ppl = BTreeMap::new();
    let mut nll_ps = BTreeMap::new();
    let modes: Vec<CodeMode> = if kind.has_latent() {
        CodeMode::ALL.to_vec()
    } else {
        vec![CodeMode::Mean]
    };
    let flip_n = if kind.is_binary() {
        opts.flip_sentences.min(sentences.len())
    } else {
        0
    };
    // Work units: one pass per mode, one for code statistics, one per flipped bit (of a subset).
    let flip_weight = flip_n as f64 / sentences.len().max(1) as f64;
    let total = modes.len() as f64 + 1.0 + flip_weight * model.cfg.latent_dim as f64;
    let mut done = 0.0;
    let mut kl = 0.0;
    let (mut tokens, mut words) = (0, 0);
    let per_mode = score_sentences_modes(model, vocab, sentences, &modes, &mut rng)?;
    for (mode, s) in modes.iter().zip(per_mode) {
        let name = if kind.has_latent() {
            mode.name()
        } else {
            "none"
        };
        ppl.insert(name.to_string(), s.ppl());
        nll_ps.insert(name.to_string(), s.nll_per_sentence());
        kl = s.kl_per_sentence();
        tokens = s.tokens;
        words = s.words;
        done += 1.0;
        progress(done / total);
    }
    let (bits, gaussian) = if kind.has_latent() {
        let (means_p, codes) = all_codes(model, sentences)?;
        done += 1.0;
        progress(done / total);
        if kind.is_binary() {
            let bits = bit_report(
                model,
                vocab,
                sentences,
                &means_p,
                &codes,
                flip_n,
                &mut |f| progress((done + f * flip_weight * model.cfg.latent_dim as f64) / total),
            )?;
            (Some(bits), None)
        } else if kind == LatentKind::Gaussian {
            (None, Some(gaussian_report(model, sentences)?))
        } else {
            (None, None)
        }
    } else {
        (None, None)
    };
    let reconstruction = if kind.has_latent() && opts.recon_sentences > 0 {
        let n = opts.recon_sentences.min(sentences.len());
        Some(reconstruction_with(
            model,
            vocab,
            &sentences[..n],
            opts.recon_strategy,
            &opts.recon,
        )?)
    } else {
        None
    };
    let factors = match &opts.factor_values {
        Some(values) if kind.has_latent() => Some(crate::factors::measure(
            model,
            vocab,
            sentences,
            values,
            opts.factor_flip_sentences,
        )?),
        _ => None,
    };
    progress(1.0);
    Ok(EvalReport {
        kind,
        sentences: sentences.len(),
        tokens,
        words,
        ppl,
        nll_per_sentence: nll_ps,
        kl_per_sentence: Kl(kind.has_kl().then_some(kl)),
        bits,
        gaussian,
        reconstruction,
        factors,
    })
}

/// Decodings (by `strategy`) of each sentence's deterministic code (rounded bits, μ), compared
/// in words; the path figures are always greedy.
pub fn reconstruction(
    model: &SeqAutoencoder,
    vocab: &Vocab,
    sentences: &[Vec<u32>],
    strategy: crate::model::decode::Strategy,
) -> Result<ReconReport> {
    reconstruction_with(model, vocab, sentences, strategy, &ReconOptions::default())
}

/// What [`reconstruction_with`] decodes with and counts.
#[derive(Clone, Debug, Default)]
pub struct ReconOptions {
    /// Restrict greedy decoding to these words (`eval --real-words`).
    pub real_words: Option<Arc<WordTrie>>,
    /// The training corpus's words: decoded words outside it are counted as invented.
    pub corpus_words: Option<Arc<HashSet<String>>>,
}

/// [`reconstruction`], optionally restricted to real words and counting invented words.
pub fn reconstruction_with(
    model: &SeqAutoencoder,
    vocab: &Vocab,
    sentences: &[Vec<u32>],
    strategy: crate::model::decode::Strategy,
    opts: &ReconOptions,
) -> Result<ReconReport> {
    let (_, codes) = all_codes(model, sentences)?;
    let decoded = decode_texts(model, vocab, &codes, strategy, opts.real_words.as_deref())?;
    let pairs: Vec<(String, String)> = sentences
        .iter()
        .zip(decoded)
        .map(|(s, d)| (vocab.decode(s), d))
        .collect();
    // Points along paths between consecutive sentences' codes (endpoints left out).
    let mut rng = StdRng::seed_from_u64(0);
    let binary = model.kind().is_binary();
    let mut path_codes = Vec::new();
    for pair in codes.chunks_exact(2).take(PATH_PAIRS) {
        let (a, b) = (&pair[0], &pair[1]);
        let points: Vec<Vec<f32>> = if binary {
            crate::explore::hamming_path(a, b, &mut rng)
                .into_iter()
                .map(|s| s.code)
                .collect()
        } else {
            crate::explore::lerp_path(a, b, POINTS_PER_PATH + 1)
        };
        let inner = points.len().saturating_sub(2);
        let take = inner.min(POINTS_PER_PATH);
        for k in 0..take {
            // Evenly spread over the inner points.
            path_codes.push(points[1 + k * inner / take].clone());
        }
    }
    let path_texts = decode_texts(
        model,
        vocab,
        &path_codes,
        crate::model::decode::Strategy::Greedy,
        None,
    )?;
    let (mut unk_words, mut input_words) = (0usize, 0usize);
    for s in sentences {
        input_words += vocab.word_count(s);
        // A word is unknown when one of its tokens is <unk>: count each run of <unk>s once.
        unk_words += s
            .iter()
            .enumerate()
            .filter(|&(i, &t)| t == crate::vocab::UNK && (i == 0 || s[i - 1] != crate::vocab::UNK))
            .count();
    }
    let mut report = compare_words(&pairs);
    report.input_unk_rate = unk_words as f64 / input_words.max(1) as f64;
    report.real_words = opts.real_words.is_some();
    if let Some(words) = &opts.corpus_words {
        let (invented, total) = invented_words(pairs.iter().map(|p| p.1.as_str()), words);
        report.invented_word_rate = Some(invented as f64 / total.max(1) as f64);
    }
    report.decoding = strategy.label();
    report.path_repetition_rate = repetition_rate(path_texts.iter().map(String::as_str));
    report.path_decodings = path_texts.len();
    Ok(report)
}

/// Decoded words (space-separated) that `words` does not hold, and all decoded words.
pub fn invented_words<'a>(
    texts: impl IntoIterator<Item = &'a str>,
    words: &HashSet<String>,
) -> (usize, usize) {
    let (mut invented, mut total) = (0, 0);
    for w in texts.into_iter().flat_map(str::split_whitespace) {
        total += 1;
        invented += usize::from(!words.contains(w));
    }
    (invented, total)
}

/// Exact match, positional word accuracy and corpus BLEU-4 of (reference, hypothesis) texts.
pub fn compare_words(pairs: &[(String, String)]) -> ReconReport {
    let (mut exact, mut right, mut ref_words, mut hyp_words) = (0usize, 0usize, 0usize, 0usize);
    let mut matches = [0usize; 4];
    let mut totals = [0usize; 4];
    for (reference, hypothesis) in pairs {
        let r: Vec<&str> = reference.split_whitespace().collect();
        let h: Vec<&str> = hypothesis.split_whitespace().collect();
        exact += usize::from(r == h);
        right += r.iter().zip(&h).filter(|(a, b)| a == b).count();
        ref_words += r.len();
        hyp_words += h.len();
        for n in 1..=4 {
            let mut counts: std::collections::HashMap<&[&str], usize> = Default::default();
            for g in r.windows(n) {
                *counts.entry(g).or_default() += 1;
            }
            for g in h.windows(n) {
                if let Some(c) = counts.get_mut(g).filter(|c| **c > 0) {
                    *c -= 1;
                    matches[n - 1] += 1;
                }
            }
            totals[n - 1] += h.len().saturating_sub(n - 1);
        }
    }
    let bleu4 = if matches.contains(&0) || hyp_words == 0 {
        0.0
    } else {
        let log_precision: f64 = (0..4)
            .map(|i| (matches[i] as f64 / totals[i] as f64).ln())
            .sum::<f64>()
            / 4.0;
        let brevity = if hyp_words >= ref_words {
            1.0
        } else {
            (1.0 - ref_words as f64 / hyp_words as f64).exp()
        };
        brevity * log_precision.exp()
    };
    ReconReport {
        sentences: pairs.len(),
        decoding: String::new(),
        exact_match: exact as f64 / pairs.len().max(1) as f64,
        word_accuracy: right as f64 / ref_words.max(1) as f64,
        bleu4,
        input_unk_rate: 0.0,
        real_words: false,
        invented_word_rate: None,
        length_ratio: hyp_words as f64 / ref_words.max(1) as f64,
        repetition_rate: repetition_rate(pairs.iter().map(|(_, h)| h.as_str())),
        path_repetition_rate: 0.0,
        path_decodings: 0,
    }
}

fn column_means(rows: &[Vec<f32>]) -> Vec<f64> {
    let l = rows.first().map_or(0, |r| r.len());
    let mut sums = vec![0f64; l];
    for r in rows {
        for (s, &v) in sums.iter_mut().zip(r) {
            *s += v as f64;
        }
    }
    sums.iter().map(|s| s / rows.len().max(1) as f64).collect()
}

/// Pearson correlation matrix of the columns of `rows`.
pub fn correlation(rows: &[Vec<f32>]) -> Vec<Vec<f64>> {
    let l = rows.first().map_or(0, |r| r.len());
    let means = column_means(rows);
    let mut cov = vec![vec![0f64; l]; l];
    for r in rows {
        for i in 0..l {
            let di = r[i] as f64 - means[i];
            for j in i..l {
                cov[i][j] += di * (r[j] as f64 - means[j]);
            }
        }
    }
    let mut corr = vec![vec![0f64; l]; l];
    for i in 0..l {
        for j in i..l {
            let denom = (cov[i][i] * cov[j][j]).sqrt();
            let c = if denom > 1e-12 {
                cov[i][j] / denom
            } else if i == j {
                1.0
            } else {
                0.0
            };
            corr[i][j] = c;
            corr[j][i] = c;
        }
    }
    corr
}

#[allow(clippy::too_many_arguments)]
fn bit_report(
    model: &SeqAutoencoder,
    vocab: &Vocab,
    sentences: &[Vec<u32>],
    prob_rows: &[Vec<f32>],
    codes: &[Vec<f32>],
    flip_n: usize,
    progress: &mut dyn FnMut(f64),
) -> Result<BitReport> {
    let l = model.cfg.latent_dim;
    let subset = &sentences[..flip_n];
    let lengths: Vec<usize> = subset.iter().map(|s| s.len()).collect();
    let batches = length_batches(&lengths, EVAL_BATCH_TOKENS, EVAL_MAX_BATCH);
    let mut base = 0f64;
    let mut flipped = vec![0f64; l];
    let mut words = 0usize;
    for (bi, idx) in batches.iter().enumerate() {
        let rows: Vec<&[u32]> = idx.iter().map(|&i| subset[i].as_slice()).collect();
        let batch = TokenBatch::new(&rows, None, model.device())?;
        words += rows.iter().map(|r| vocab.word_count(r) + 1).sum::<usize>();
        let code_rows: Vec<f32> = idx.iter().flat_map(|&i| codes[i].iter().copied()).collect();
        // The 64 flips share the batch's decoder input projection, and their normalisers come
        // from the 8-bit output layer (within ~1e-3 nats per word of the exact fp32 figure);
        // the base is scored the same way, so the growth ratios compare like with like.
        let projection = model.decoder_projection(&batch.dec_in)?;
        let total = |code_rows: Vec<f32>| -> Result<f64> {
            let z = Tensor::from_vec(code_rows, (idx.len(), l), model.device())?;
            let nll = model.score_nll_quantized(Some(&z), &batch, projection.as_ref())?;
            Ok(nll.iter().map(|&x| x as f64).sum())
        };
        base += total(code_rows.clone())?;
        for (j, slot) in flipped.iter_mut().enumerate() {
            let mut flipped_rows = code_rows.clone();
            for row in flipped_rows.chunks_exact_mut(l) {
                row[j] = 1.0 - row[j];
            }
            *slot += total(flipped_rows)?;
        }
        progress((bi + 1) as f64 / batches.len() as f64);
    }
    let t = words.max(1) as f64;
    let base_ppl = (base / t).exp();
    let flip_ppl: Vec<f64> = flipped.iter().map(|s| (s / t).exp()).collect();
    let flip_growth = flip_ppl.iter().map(|p| p / base_ppl - 1.0).collect();
    Ok(BitReport {
        means: column_means(codes),
        prob_means: column_means(prob_rows),
        base_ppl,
        flip_ppl,
        flip_growth,
        flip_sentences: flip_n,
        correlation: correlation(codes),
    })
}

fn gaussian_report(model: &SeqAutoencoder, sentences: &[Vec<u32>]) -> Result<GaussianReport> {
    let l = model.cfg.latent_dim;
    let mut kl = vec![0f64; l];
    let mut mus: Vec<Vec<f32>> = Vec::with_capacity(sentences.len());
    let lengths: Vec<usize> = sentences.iter().map(|s| s.len()).collect();
    for idx in length_batches(&lengths, EVAL_BATCH_TOKENS, EVAL_MAX_BATCH) {
        let rows: Vec<&[u32]> = idx.iter().map(|&i| sentences[i].as_slice()).collect();
        let batch = TokenBatch::new(&rows, None, model.device())?;
        let params = model.encode_inference(&batch.src)?;
        let per_dim = params
            .kl_per_dim()?
            .sum(0)?
            .to_dtype(DType::F32)?
            .to_vec1::<f32>()?;
        for (k, v) in kl.iter_mut().zip(per_dim) {
            *k += v as f64;
        }
        mus.extend(params.loc.to_vec2::<f32>()?);
    }
    let n = sentences.len().max(1) as f64;
    let means = column_means(&mus);
    let mut var = vec![0f64; l];
    for m in &mus {
        for j in 0..l {
            var[j] += (m[j] as f64 - means[j]).powi(2) / n;
        }
    }
    let threshold = 0.01;
    Ok(GaussianReport {
        kl_per_dim: kl.iter().map(|k| k / n).collect(),
        active_units: var.iter().filter(|&&v| v > threshold).count(),
        mean_variance: var,
        active_threshold: threshold,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_bits_are_those_never_or_always_set() {
        let report = BitReport {
            means: vec![0.0, 0.5, 1.0, 0.001, 0.999],
            prob_means: vec![0.5; 5],
            base_ppl: 1.0,
            flip_ppl: vec![],
            flip_growth: vec![],
            flip_sentences: 0,
            correlation: vec![],
        };
        assert_eq!(report.constant_bits(), vec![0, 2]);
    }

    #[test]
    fn modes_scored_together_equal_modes_scored_apart() -> Result<()> {
        let cfg = crate::model::SeqConfig::tiny(40, LatentKind::Binary);
        let built = crate::model::Built::seq(&cfg, 5, &candle_core::Device::Cpu)?;
        let vocab = Vocab::train(["a b c d e f g h i j k l m n o p"].into_iter(), 40, 1)?;
        let sentences: Vec<Vec<u32>> = (0..9u32)
            .map(|i| (0..3 + i % 4).map(|j| 4 + (i * 5 + j * 3) % 16).collect())
            .collect();
        let together = score_sentences_modes(
            &built.model,
            &vocab,
            &sentences,
            &CodeMode::ALL,
            &mut StdRng::seed_from_u64(9),
        )?;
        let mut rng = StdRng::seed_from_u64(9);
        for (mode, joint) in CodeMode::ALL.iter().zip(&together) {
            let alone = score_sentences(&built.model, &vocab, &sentences, *mode, &mut rng)?;
            assert!((alone.nll_sum - joint.nll_sum).abs() < 1e-3, "{mode:?}");
            assert_eq!((alone.tokens, alone.words), (joint.tokens, joint.words));
            assert!((alone.kl_sum - joint.kl_sum).abs() < 1e-3);
        }
        assert!(together[0].nll_sum != together[2].nll_sum, "modes differ");
        Ok(())
    }

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn reconstruction_scores_match_hand_values() {
        let same = compare_words(&pairs(&[(
            "the cat sat on the mat",
            "the cat sat on the mat",
        )]));
        assert_eq!(
            (same.exact_match, same.word_accuracy, same.bleu4),
            (1.0, 1.0, 1.0)
        );
        // One word wrong of six: 5/6 in place; n-gram precisions 5/6, 3/5, 2/4, 1/3.
        let one = compare_words(&pairs(&[(
            "the cat sat on the mat",
            "the dog sat on the mat",
        )]));
        assert_eq!(one.exact_match, 0.0);
        assert!((one.word_accuracy - 5.0 / 6.0).abs() < 1e-12);
        let expected = ((5.0f64 / 6.0) * (3.0 / 5.0) * (2.0 / 4.0) * (1.0 / 3.0)).powf(0.25);
        assert!(
            (one.bleu4 - expected).abs() < 1e-12,
            "{} vs {expected}",
            one.bleu4
        );
        // A short hypothesis pays the brevity penalty exp(1 − 6/5).
        let short = compare_words(&pairs(&[("the cat sat on the mat", "the cat sat on the")]));
        let bp = (1.0f64 - 6.0 / 5.0).exp();
        assert!((short.bleu4 - bp).abs() < 1e-12, "{} vs {bp}", short.bleu4);
        assert_eq!(compare_words(&pairs(&[("a b c d", "x y")])).bleu4, 0.0);
        assert!(repeats_itself("of the of the of the of the"));
        assert!(
            !repeats_itself("of the of the cat of the dog"),
            "two of each 3-gram"
        );
        assert!(repeats_itself("a b c x a b c y a b c"));
        assert!(!repeats_itself(""));
        assert_eq!(
            compare_words(&pairs(&[("a b", "a b c a b c a b c"), ("a b", "a b")])).repetition_rate,
            0.5
        );
        let two = compare_words(&pairs(&[("a b", "a b"), ("c d", "d c")]));
        assert_eq!(
            (two.sentences, two.exact_match, two.word_accuracy),
            (2, 0.5, 0.5)
        );
    }

    #[test]
    fn correlation_of_known_columns() {
        let rows = vec![
            vec![0.0, 0.0, 1.0, 1.0],
            vec![1.0, 1.0, 0.0, 1.0],
            vec![0.0, 0.0, 1.0, 1.0],
            vec![1.0, 1.0, 0.0, 1.0],
        ];
        let c = correlation(&rows);
        assert!((c[0][1] - 1.0).abs() < 1e-12);
        assert!((c[0][2] + 1.0).abs() < 1e-12);
        assert_eq!(c[0][3], 0.0, "a constant column correlates 0");
        assert_eq!(c[3][3], 1.0);
    }
}
