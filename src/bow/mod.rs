//! Bag-of-words models end to end: turning corpus text into bags, training NVDM and NASH,
//! building LSH, scoring documents and loading any bag-of-words checkpoint.
//!
//! A bag's vocabulary is trained without English stop words and pure punctuation (unless
//! asked to keep them), so those words become `<unk>` and never enter a bag: the choice is
//! recorded by the checkpoint's own `tokenizer.json` and needs no extra config.

pub mod train;
pub mod words;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};
use candle_nn::VarMap;
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::Serialize;

use crate::checkpoint::{Checkpoint, Provenance};
use crate::model::bow::{BagBatch, BowModel};
use crate::model::{Built, CodeMode, ModelConfig};
use crate::vocab::Vocab;

/// A document as (word id, count) pairs, ids ascending and unique.
pub type Bag = Vec<(u32, f32)>;

/// Words left out of bag-of-words vocabularies by default: they carry little topic and would
/// dominate every document's bag.
pub const STOP_WORDS: &[&str] = &[
    "a",
    "about",
    "above",
    "after",
    "again",
    "against",
    "all",
    "also",
    "am",
    "an",
    "and",
    "any",
    "are",
    "as",
    "at",
    "be",
    "been",
    "before",
    "being",
    "below",
    "between",
    "both",
    "but",
    "by",
    "can",
    "could",
    "did",
    "do",
    "does",
    "doing",
    "down",
    "during",
    "each",
    "either",
    "etc",
    "few",
    "for",
    "from",
    "further",
    "had",
    "has",
    "have",
    "having",
    "he",
    "her",
    "here",
    "hers",
    "herself",
    "him",
    "himself",
    "his",
    "how",
    "i",
    "if",
    "in",
    "into",
    "is",
    "it",
    "its",
    "itself",
    "just",
    "may",
    "me",
    "might",
    "more",
    "most",
    "must",
    "my",
    "myself",
    "no",
    "nor",
    "not",
    "now",
    "of",
    "off",
    "on",
    "once",
    "one",
    "only",
    "or",
    "other",
    "our",
    "ours",
    "out",
    "over",
    "own",
    "same",
    "she",
    "should",
    "so",
    "some",
    "such",
    "than",
    "that",
    "the",
    "their",
    "theirs",
    "them",
    "themselves",
    "then",
    "there",
    "these",
    "they",
    "this",
    "those",
    "through",
    "to",
    "too",
    "under",
    "until",
    "up",
    "us",
    "very",
    "was",
    "we",
    "were",
    "what",
    "when",
    "where",
    "which",
    "while",
    "who",
    "whom",
    "why",
    "will",
    "with",
    "would",
    "you",
    "your",
    "yours",
    "yourself",
    "s",
    "t",
];

/// Whether a token may enter a bag-of-words vocabulary.
pub fn is_content_word(token: &str, keep_stop_words: bool) -> bool {
    token.chars().any(char::is_alphanumeric) && (keep_stop_words || !STOP_WORDS.contains(&token))
}

/// Trains a vocabulary for bag-of-words models from normalized texts.
pub fn train_vocab<'a>(
    texts: impl Iterator<Item = &'a str>,
    size: usize,
    min_frequency: u64,
    keep_stop_words: bool,
) -> Result<Vocab> {
    let filtered: Vec<String> = texts
        .map(|t| {
            t.split(' ')
                .filter(|w| is_content_word(w, keep_stop_words))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    Vocab::train(filtered.iter().map(String::as_str), size, min_frequency)
}

/// The bag of a normalized text: known words only (special tokens and `<unk>` are dropped).
pub fn bag_of_words(vocab: &Vocab, normalized: &str) -> Bag {
    let mut ids: Vec<u32> = vocab
        .encode_normalized(normalized)
        .into_iter()
        .filter(|&id| id > crate::vocab::EOS)
        .collect();
    ids.sort_unstable();
    let mut bag: Bag = Vec::new();
    for id in ids {
        match bag.last_mut() {
            Some((last, c)) if *last == id => *c += 1.0,
            _ => bag.push((id, 1.0)),
        }
    }
    bag
}

/// In how many bags each word occurs.
pub fn document_frequencies(bags: &[Bag], vocab_size: usize) -> Vec<u32> {
    let mut df = vec![0u32; vocab_size];
    for bag in bags {
        for &(id, _) in bag {
            df[id as usize] += 1;
        }
    }
    df
}

/// A loaded bag-of-words checkpoint.
pub struct BowCheckpoint {
    pub model: BowModel,
    pub varmap: VarMap,
    pub vocab: Vocab,
    pub config: ModelConfig,
    pub provenance: Provenance,
    pub path: PathBuf,
    /// SHA-256 of the checkpoint's bytes as loaded ([`Checkpoint::sha256`]).
    pub sha256: String,
}

impl BowCheckpoint {
    /// Reads a checkpoint and builds the bag-of-words model it describes.
    pub fn from_checkpoint(ckpt: Checkpoint, dev: &Device) -> Result<Self> {
        if let ModelConfig::Seq(_) = ckpt.config {
            bail!(
                "`{}` holds a sequence autoencoder, not a bag-of-words model",
                ckpt.path.display()
            );
        }
        let built = Built::bow(&ckpt.config, 0, dev).with_context(|| {
            format!(
                "`{}`: cannot build the model its config describes",
                ckpt.path.display()
            )
        })?;
        ckpt.assign_to(&built.varmap)?;
        Ok(Self {
            model: built.model,
            varmap: built.varmap,
            vocab: ckpt.vocab,
            config: ckpt.config,
            provenance: ckpt.provenance,
            path: ckpt.path,
            sha256: ckpt.sha256,
        })
    }

    pub fn load(path: &Path, dev: &Device) -> Result<Self> {
        Self::from_checkpoint(Checkpoint::read(path, dev)?, dev)
    }

    /// The bag of a raw (not yet normalized) text.
    pub fn bag(&self, text: &str) -> Bag {
        bag_of_words(&self.vocab, &crate::corpus::normalize(text))
    }

    /// A summary for `latent-tui info`.
    pub fn summary(&self) -> String {
        let stored = crate::model::parameter_count(&self.varmap);
        let mut s = format!(
            "{}\n  {}\n  vocabulary {} words, {stored} {}\n",
            crate::printable::Shown(&self.path.display().to_string()),
            self.config.describe(),
            self.vocab.len(),
            if self.model.word_vectors().is_none() {
                "stored values (hyperplanes and idf)"
            } else {
                "parameters"
            }
        );
        s += &self.provenance.describe(self.config.has_kl());
        s
    }
}

/// Documents per batch when encoding or scoring (no gradients, so larger than in training).
pub const EVAL_BATCH: usize = 512;
/// Most (document, word) pairs of an encoding or scoring batch ([`BagBatch`]): 2^20, 12 MB of
/// ids, counts and input values. Long documents make batches of fewer documents.
pub const EVAL_BATCH_PAIRS: usize = 1 << 20;

/// Consecutive ranges of documents of `lengths` (word, count) pairs each, to encode or score
/// together: at most [`EVAL_BATCH`] documents and [`EVAL_BATCH_PAIRS`] pairs each (a single
/// document larger than that goes alone).
pub fn eval_batches(lengths: impl IntoIterator<Item = usize>) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let (mut start, mut pairs, mut i) = (0usize, 0usize, 0usize);
    for len in lengths {
        let len = len.max(1);
        let docs = i - start + 1;
        if i > start && (docs > EVAL_BATCH || pairs.saturating_add(len) > EVAL_BATCH_PAIRS) {
            out.push(start..i);
            start = i;
            pairs = 0;
        }
        pairs += len;
        i += 1;
    }
    if i > start {
        out.push(start..i);
    }
    out
}

/// Latent parameters' `loc` (μ, bit logits or projections) for every bag, in order.
pub fn encode_bags(model: &BowModel, bags: &[Bag]) -> Result<Vec<Vec<f32>>> {
    let mut out = Vec::with_capacity(bags.len());
    for range in eval_batches(bags.iter().map(Vec::len)) {
        let refs: Vec<&[(u32, f32)]> = bags[range].iter().map(Vec::as_slice).collect();
        let batch = BagBatch::new(&refs, model.device())?;
        out.extend(model.encode(&batch)?.loc.to_vec2::<f32>()?);
    }
    Ok(out)
}

/// Reconstruction and KL of a set of documents.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct BowScore {
    pub documents: usize,
    pub words: f64,
    /// −log p(d | z) summed, z the deterministic code (μ, or rounded bits).
    pub nll_sum: f64,
    /// −log p(d | z) summed with z sampled from q(z | d).
    pub sampled_nll_sum: f64,
    pub kl_sum: f64,
    /// Σ_d (NLL_d(sampled z) + KL_d) / N_d: the per-document bound NVDM papers average.
    pub bound_per_word_sum: f64,
}

impl BowScore {
    /// exp(Σ NLL / Σ words) with the deterministic code.
    pub fn ppl(&self) -> f64 {
        (self.nll_sum / self.words.max(1.0)).exp()
    }
    pub fn nll_per_word(&self) -> f64 {
        self.nll_sum / self.words.max(1.0)
    }
    /// Document perplexity as in Miao et al.: exp(mean_d (NLL_d + KL_d) / N_d), an upper bound.
    pub fn ppl_bound(&self) -> f64 {
        (self.bound_per_word_sum / self.documents.max(1) as f64).exp()
    }
    pub fn kl_per_document(&self) -> f64 {
        self.kl_sum / self.documents.max(1) as f64
    }
}

/// Scores non-empty bags (empty ones are skipped: they have no words to predict).
pub fn score_bags(model: &BowModel, bags: &[Bag], seed: u64) -> Result<BowScore> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut score = BowScore::default();
    let bags: Vec<&Bag> = bags.iter().filter(|b| !b.is_empty()).collect();
    for range in eval_batches(bags.iter().map(|b| b.len())) {
        let chunk = &bags[range];
        let refs: Vec<&[(u32, f32)]> = chunk.iter().map(|b| b.as_slice()).collect();
        let batch = BagBatch::new(&refs, model.device())?;
        let Some(nll) = model.nll(&batch, CodeMode::Rounded, &mut rng)? else {
            bail!("an lsh model has no decoder to score documents with");
        };
        let sampled = model
            .nll(&batch, CodeMode::Sample, &mut rng)?
            .expect("has a decoder");
        let kl = model.encode(&batch)?.kl()?;
        let (nll, sampled, kl) = (
            nll.to_vec1::<f32>()?,
            sampled.to_vec1::<f32>()?,
            kl.to_vec1::<f32>()?,
        );
        for i in 0..chunk.len() {
            let n = batch.lengths[i] as f64;
            score.nll_sum += nll[i] as f64;
            score.sampled_nll_sum += sampled[i] as f64;
            score.kl_sum += kl[i] as f64;
            score.bound_per_word_sum += (sampled[i] as f64 + kl[i] as f64) / n;
            score.words += n;
        }
        score.documents += chunk.len();
    }
    Ok(score)
}

/// The `k` most probable words of each bag's reconstruction (deterministic code).
pub fn reconstruct_words(
    model: &BowModel,
    vocab: &Vocab,
    bags: &[Bag],
    k: usize,
) -> Result<Vec<Vec<String>>> {
    let refs: Vec<&[(u32, f32)]> = bags.iter().map(Vec::as_slice).collect();
    if refs.is_empty() {
        return Ok(Vec::new());
    }
    let batch = BagBatch::new(&refs, model.device())?;
    let mut rng = StdRng::seed_from_u64(0);
    let z = model.encode(&batch)?.code(CodeMode::Rounded, &mut rng)?;
    let Some(logp) = model.word_log_probs(&z)? else {
        return Ok(vec![Vec::new(); bags.len()]);
    };
    Ok(logp
        .to_vec2::<f32>()?
        .iter()
        .map(|row| {
            top_indices(row, k, |id| id > crate::vocab::EOS as usize)
                .into_iter()
                .map(|id| vocab.token(id as u32).to_string())
                .collect()
        })
        .collect())
}

/// Indices of the `k` largest values among those `keep` accepts, largest first.
pub fn top_indices(values: &[f32], k: usize, keep: impl Fn(usize) -> bool) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..values.len()).filter(|&i| keep(i)).collect();
    idx.sort_by(|&a, &b| values[b].total_cmp(&values[a]).then(a.cmp(&b)));
    idx.truncate(k);
    idx
}

/// A tensor's rows as vectors (for the word-vector tools).
pub fn rows(t: &Tensor) -> Result<Vec<Vec<f32>>> {
    Ok(t.to_vec2::<f32>()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evaluation_batches_bound_documents_and_pairs() {
        // Short documents: EVAL_BATCH at a time.
        let short = eval_batches(vec![3; 1200]);
        assert_eq!(short, vec![0..512, 512..1024, 1024..1200]);
        // Long documents: fewer per batch, so the pairs stay within the bound.
        let long = vec![5000; 1000];
        let batches = eval_batches(long.iter().copied());
        for r in &batches {
            let pairs: usize = long[r.clone()].iter().sum();
            assert!(pairs <= EVAL_BATCH_PAIRS, "{r:?}");
        }
        assert_eq!(batches.len(), 1000usize.div_ceil(209), "{batches:?}");
        // Every document once, in order; one too large for the bound goes alone; empty ones count
        // as one pair.
        let mixed = eval_batches([0, 2, EVAL_BATCH_PAIRS + 1, 1]);
        assert_eq!(mixed, vec![0..2, 2..3, 3..4]);
        assert!(eval_batches(std::iter::empty()).is_empty());
    }

    #[test]
    fn bags_count_known_content_words() -> Result<()> {
        let texts = ["the cat sat on the mat , the cat", "a dog sat"];
        let vocab = train_vocab(texts.iter().copied(), 100, 1, false)?;
        assert!(vocab.id("the").is_none(), "stop words stay out");
        assert!(vocab.id(",").is_none(), "punctuation stays out");
        let bag = bag_of_words(&vocab, "the cat sat on the cat ; zebra");
        let cat = vocab.id("cat").expect("cat");
        let sat = vocab.id("sat").expect("sat");
        let mut want = vec![(cat, 2.0), (sat, 1.0)];
        want.sort_by_key(|p| p.0);
        assert_eq!(bag, want);
        let df = document_frequencies(&[bag.clone(), bag_of_words(&vocab, "sat sat")], vocab.len());
        assert_eq!(df[sat as usize], 2);
        assert_eq!(df[cat as usize], 1);
        Ok(())
    }

    #[test]
    fn top_indices_breaks_ties_by_index() {
        let v = [0.5, 2.0, 2.0, -1.0, 3.0];
        assert_eq!(top_indices(&v, 3, |_| true), vec![4, 1, 2]);
        assert_eq!(top_indices(&v, 2, |i| i != 4), vec![1, 2]);
    }
}
