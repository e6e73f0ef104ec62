//! The bag-of-words family's half of [`super::Coder`] (nvdm, nash, lsh): a text's code and
//! posterior, what the decoder makes of any code (its most probable words), how a document's
//! NLL changes with the code, walks between two texts, prior samples and code statistics.
//!
//! These return the same types ([`super::types`]) as the sequence models' half
//! ([`super::seq`]), so the explorer's tabs draw either; where a model has no decoder (lsh) the
//! error says so.

use anyhow::{bail, Result};
use candle_core::Tensor;
use rand::rngs::StdRng;
use rand::SeedableRng;

use super::types::{
    read_features, walk_between, Capabilities, EncodedSentence, FeatureKind, PathWalk, Posterior,
    PriorChoice, SplitStats, SAMPLE_CHUNK,
};
use crate::bow::{bag_of_words, encode_bags, top_indices, Bag, BowCheckpoint, EVAL_BATCH};
use crate::corpus::{normalize, Split};
use crate::engine::Encoding;
use crate::eval::{correlation, BitReport, EvalReport, GaussianReport};
use crate::explore::{self, Prior};
use crate::model::bow::BagBatch;
use crate::vocab::EOS;

/// Words shown per decoding in walks and samples (Explore shows more).
pub const WORDS_PER_LINE: usize = 6;

/// Why a model without a decoder cannot do `what`.
fn no_decoder(ck: &BowCheckpoint, what: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "an `{}` model has no decoder, so {what}: its bits are signs of random projections of the TF-IDF vector (Neighbors finds documents with similar codes)",
        ck.config.family()
    )
}

/// The bag and code of one text. The bag's words become `shown` (with counts), words the
/// vocabulary lacks (stop words included) are listed as `unknown`.
pub fn encode_text(ck: &BowCheckpoint, text: &str) -> Result<EncodedSentence> {
    match encode_texts(ck, &[text])?.remove(0) {
        Some(e) => Ok(e),
        None => Err(no_known_words(ck)),
    }
}

/// Refuses a text whose bag is empty: its code would be the biases' alone, the same for every
/// such text (a search for it found "matches" at distance 0).
pub fn require_words(ck: &BowCheckpoint, text: &str) -> Result<()> {
    if bag_of_words(&ck.vocab, &normalize(text)).is_empty() {
        return Err(no_known_words(ck));
    }
    Ok(())
}

fn no_known_words(ck: &BowCheckpoint) -> anyhow::Error {
    anyhow::anyhow!(
        "none of the words are in the model's vocabulary of {} words (stop words and punctuation are left out of bags)",
        ck.vocab.len()
    )
}

/// [`encode_text`] for many texts, encoded in batches; None for a text none of whose words
/// the vocabulary knows (its bag is empty).
pub fn encode_texts(ck: &BowCheckpoint, texts: &[&str]) -> Result<Vec<Option<EncodedSentence>>> {
    let caps = Capabilities::of_bow(&ck.model);
    let binary = caps.is_binary();
    let mut out: Vec<Option<EncodedSentence>> = Vec::with_capacity(texts.len());
    let mut pending: Vec<(usize, Bag, Vec<String>)> = Vec::new();
    for (slot, text) in texts.iter().enumerate() {
        let normalized = normalize(text);
        let bag = bag_of_words(&ck.vocab, &normalized);
        out.push(None);
        if bag.is_empty() {
            continue;
        }
        let unknown: Vec<String> = normalized
            .split(' ')
            .filter(|w| !w.is_empty() && ck.vocab.id(w).is_none())
            .map(str::to_string)
            .collect();
        pending.push((slot, bag, unknown));
    }
    for range in crate::bow::eval_batches(pending.iter().map(|(_, b, _)| b.len())) {
        let chunk = &pending[range];
        let refs: Vec<&[(u32, f32)]> = chunk.iter().map(|(_, b, _)| b.as_slice()).collect();
        let batch = BagBatch::new(&refs, ck.model.device())?;
        let params = ck.model.encode(&batch)?;
        let loc = params.loc.to_vec2::<f32>()?;
        // A continuous posterior (nvdm) has σ; hashing (lsh) has no posterior, so no KL.
        let std = match (&params.logvar, binary) {
            (Some(logvar), false) => Some((logvar * 0.5)?.exp()?.to_vec2::<f32>()?),
            _ => None,
        };
        let kl = if caps.scores {
            Some(params.kl()?.to_vec1::<f32>()?)
        } else {
            None
        };
        for (row, ((slot, bag, unknown), loc)) in chunk.iter().zip(loc).enumerate() {
            let mean = if !binary {
                loc
            } else if caps.scores {
                // Bits of a model with a decoder (nash): Bernoulli probabilities σ(logits).
                loc.iter().map(|&x| 1.0 / (1.0 + (-x).exp())).collect()
            } else {
                // Hashing (lsh) has no probabilities: the bits are certain.
                loc.iter()
                    .map(|&x| if x >= 0.0 { 1.0 } else { 0.0 })
                    .collect()
            };
            let encoding = Encoding {
                mean,
                std: std.as_ref().map(|s| s[row].clone()),
                kl: kl.as_ref().map_or(0.0, |k| k[row]),
            };
            let code = encoding.deterministic_code(binary);
            out[*slot] = Some(EncodedSentence {
                shown: bag_text(ck, bag),
                ids: bag
                    .iter()
                    .flat_map(|&(id, c)| std::iter::repeat_n(id, c as usize))
                    .collect(),
                unknown: unknown.clone(),
                truncated: 0,
                max_len: 0,
                encoding,
                code,
                bag: true,
            });
        }
    }
    Ok(out)
}

/// `cat dog×2`: a bag as the model sees it.
fn bag_text(ck: &BowCheckpoint, bag: &Bag) -> String {
    bag.iter()
        .map(|&(id, c)| {
            let w = ck.vocab.token(id);
            if c > 1.0 {
                format!("{w}×{c}")
            } else {
                w.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The `k` most probable words of p(w | z) for each code, with their probabilities.
pub fn top_words(
    ck: &BowCheckpoint,
    codes: &[Vec<f32>],
    k: usize,
) -> Result<Vec<Vec<(String, f32)>>> {
    if codes.is_empty() {
        return Ok(Vec::new());
    }
    let z = codes_tensor(ck, codes)?;
    let Some(logp) = ck.model.word_log_probs(&z)? else {
        return Err(no_decoder(ck, "codes have no words to show"));
    };
    Ok(logp
        .to_vec2::<f32>()?
        .iter()
        .map(|row| {
            top_indices(row, k, |id| id > EOS as usize)
                .into_iter()
                .map(|id| (ck.vocab.token(id as u32).to_string(), row[id].exp()))
                .collect()
        })
        .collect())
}

/// `cat .21 · dog .13`: top words on one line.
pub fn words_line(words: &[(String, f32)]) -> String {
    words
        .iter()
        .map(|(w, p)| format!("{w} {p:.3}"))
        .collect::<Vec<_>>()
        .join(" · ")
}

fn codes_tensor(ck: &BowCheckpoint, codes: &[Vec<f32>]) -> Result<Tensor> {
    let l = ck.model.latent_dim();
    if let Some(bad) = codes.iter().find(|c| c.len() != l) {
        bail!("a code of {} dimensions for a model of {l}", bad.len());
    }
    let flat: Vec<f32> = codes.iter().flatten().copied().collect();
    Ok(Tensor::from_vec(flat, (codes.len(), l), ck.model.device())?)
}

/// −log p(document | z) of the document with word ids `ids` (repeated as often as they occur)
/// under each code, in nats.
pub fn document_nll(ck: &BowCheckpoint, ids: &[u32], codes: &[Vec<f32>]) -> Result<Vec<f64>> {
    let z = codes_tensor(ck, codes)?;
    let Some(logp) = ck.model.word_log_probs(&z)? else {
        return Err(no_decoder(ck, "documents cannot be scored"));
    };
    let rows = logp.to_vec2::<f32>()?;
    Ok(rows
        .iter()
        .map(|row| ids.iter().map(|&id| -(row[id as usize] as f64)).sum())
        .collect())
}

/// A Hamming path (nash, lsh) or an interpolation (nvdm) from text A's code to text B's, each
/// point shown as its top words.
pub fn walk_path(
    ck: &BowCheckpoint,
    a: &str,
    b: &str,
    seed: u64,
    steps: usize,
    slerp: bool,
) -> Result<PathWalk> {
    if ck.model.word_vectors().is_none() {
        return Err(no_decoder(ck, "the points of a walk have no words to show"));
    }
    let ea = encode_text(ck, a).map_err(|e| e.context("sentence A"))?;
    let eb = encode_text(ck, b).map_err(|e| e.context("sentence B"))?;
    walk_between(
        ea,
        eb,
        ck.model.is_binary(),
        seed,
        steps,
        slerp,
        &mut |codes, _| {
            Ok(top_words(ck, codes, WORDS_PER_LINE)?
                .iter()
                .map(|w| words_line(w))
                .collect())
        },
    )
}

/// `n` codes from the prior (bits uniform or at their corpus means; N(0, t²I) for nvdm), each
/// shown as its top words, handed to `each` as soon as its batch of
/// [`SAMPLE_CHUNK`] is decoded, so any number of samples runs in bounded memory. Codes
/// come from one generator in order, so the samples do not depend on the batching.
pub fn sample_prior_each(
    ck: &BowCheckpoint,
    n: usize,
    seed: u64,
    temperature: f32,
    prior: PriorChoice,
    bit_means: Option<&[f32]>,
    each: &mut dyn FnMut(Vec<f32>, String) -> Result<()>,
) -> Result<()> {
    if ck.model.word_vectors().is_none() {
        return Err(no_decoder(ck, "prior samples have no words to show"));
    }
    if !temperature.is_finite() || temperature < 0.0 {
        bail!("the temperature must be a finite number ≥ 0, got {temperature}");
    }
    let draw = if ck.model.is_binary() {
        match prior {
            PriorChoice::Uniform => Prior::UniformBits,
            PriorChoice::Means => match bit_means {
                Some(m) => Prior::BitMeans(m.to_vec()),
                None => bail!("the `means` prior needs the corpus bit means"),
            },
        }
    } else {
        Prior::Gaussian { temperature }
    };
    let mut rng = StdRng::seed_from_u64(seed);
    let mut done = 0;
    while done < n {
        let m = SAMPLE_CHUNK.min(n - done);
        let codes = explore::prior_samples(&draw, ck.model.latent_dim(), m, &mut rng);
        let words = top_words(ck, &codes, WORDS_PER_LINE)?;
        for (code, w) in codes.into_iter().zip(words) {
            each(code, words_line(&w))?;
        }
        done += m;
    }
    Ok(())
}

/// The codes (bits or μ) of up to `max` validation documents of the checkpoint's corpus.
pub fn validation_codes(ck: &BowCheckpoint, max: usize, purpose: &str) -> Result<Vec<Vec<f32>>> {
    let corpus = super::seq::own_corpus_of(&ck.provenance, purpose)?;
    let bags: Vec<Bag> = corpus
        .split(Split::Valid)
        .iter()
        .map(|e| bag_of_words(&ck.vocab, &e.text))
        .filter(|b| !b.is_empty())
        .take(max)
        .collect();
    if bags.is_empty() {
        bail!(
            "the validation split of `{}` has no documents with known words",
            corpus.name
        );
    }
    let loc = encode_bags(&ck.model, &bags)?;
    Ok(read_features(loc, FeatureKind::Codes, ck.model.is_binary()))
}

/// Each bit's mean over (up to 2000) validation documents, for the `means` prior.
pub fn corpus_bit_means(ck: &BowCheckpoint) -> Result<Vec<f32>> {
    let codes = validation_codes(ck, 2000, "corpus bit means")?;
    let mut means = vec![0f32; ck.model.latent_dim()];
    for c in &codes {
        for (m, b) in means.iter_mut().zip(c) {
            *m += b / codes.len() as f32;
        }
    }
    Ok(means)
}

/// Code statistics of a bag-of-words model over (up to `max_docs`) validation documents of its
/// corpus, as the report the Stats tab draws for every model: bit means, correlations and the
/// perplexity growth of each flipped bit (on the first `flip_docs`) for nash; bit means and
/// correlations for lsh (no decoder, so no perplexities); per-dimension KL, the variance of μ
/// and active units for nvdm.
pub fn code_stats(
    ck: &BowCheckpoint,
    max_docs: usize,
    flip_docs: usize,
    progress: &mut dyn FnMut(f64),
) -> Result<SplitStats> {
    let corpus = super::seq::own_corpus_of(&ck.provenance, "validation statistics")?;
    let split = Split::Valid;
    let bags: Vec<Bag> = corpus
        .split(split)
        .iter()
        .map(|e| bag_of_words(&ck.vocab, &e.text))
        .filter(|b| !b.is_empty())
        .take(max_docs.max(1))
        .collect();
    if bags.is_empty() {
        bail!(
            "the {split} split of `{}` has no documents with words the model knows",
            corpus.name
        );
    }
    let model = &ck.model;
    let l = model.latent_dim();
    let has_decoder = model.word_vectors().is_some();
    // Without a decoder (lsh) codes are hashes: no posterior, so no KL and no probabilities.
    let is_hash = !has_decoder;
    let mut loc: Vec<Vec<f32>> = Vec::with_capacity(bags.len());
    let mut kl_per_dim = vec![0f64; l];
    let mut nll = 0f64;
    let mut words = 0f64;
    let chunks: Vec<&[Bag]> = crate::bow::eval_batches(bags.iter().map(Vec::len))
        .into_iter()
        .map(|r| &bags[r])
        .collect();
    for (ci, chunk) in chunks.iter().enumerate() {
        let refs: Vec<&[(u32, f32)]> = chunk.iter().map(Vec::as_slice).collect();
        let batch = BagBatch::new(&refs, model.device())?;
        let params = model.encode(&batch)?;
        if !is_hash {
            let per_dim = params.kl_per_dim()?.sum(0)?.to_vec1::<f32>()?;
            for (k, v) in kl_per_dim.iter_mut().zip(per_dim) {
                *k += v as f64;
            }
        }
        let chunk_loc = params.loc.to_vec2::<f32>()?;
        if has_decoder {
            let codes = deterministic(&chunk_loc, model.is_binary());
            nll += bags_nll(ck, chunk, &codes)?.iter().sum::<f64>();
            words += chunk.iter().flatten().map(|&(_, c)| c as f64).sum::<f64>();
        }
        loc.extend(chunk_loc);
        progress(0.5 * (ci + 1) as f64 / chunks.len() as f64);
    }
    let n = bags.len() as f64;
    let codes = deterministic(&loc, model.is_binary());
    let mode = if model.is_binary() { "rounded" } else { "mean" };
    let mut ppl = std::collections::BTreeMap::new();
    let mut nll_per_sentence = std::collections::BTreeMap::new();
    if has_decoder {
        ppl.insert(mode.to_string(), (nll / words.max(1.0)).exp());
        nll_per_sentence.insert(mode.to_string(), nll / n);
    }
    let column_means = |rows: &[Vec<f32>]| -> Vec<f64> {
        (0..l)
            .map(|j| rows.iter().map(|r| r[j] as f64).sum::<f64>() / rows.len() as f64)
            .collect()
    };
    let (bits, gaussian) = if model.is_binary() {
        let probs: Vec<Vec<f32>> = loc
            .iter()
            .map(|r| r.iter().map(|&x| 1.0 / (1.0 + (-x).exp())).collect())
            .collect();
        let flip_n = if has_decoder {
            flip_docs.min(bags.len())
        } else {
            0
        };
        let (mut base_ppl, mut flip_ppl, mut flip_growth) = (f64::NAN, Vec::new(), Vec::new());
        if flip_n > 0 {
            let subset = &bags[..flip_n];
            let subset_codes = &codes[..flip_n];
            let subset_words: f64 = subset.iter().flatten().map(|&(_, c)| c as f64).sum();
            let base: f64 = bags_nll(ck, subset, subset_codes)?.iter().sum();
            base_ppl = (base / subset_words.max(1.0)).exp();
            for j in 0..l {
                let flipped: Vec<Vec<f32>> =
                    subset_codes.iter().map(|c| explore::flip(c, j)).collect();
                let s: f64 = bags_nll(ck, subset, &flipped)?.iter().sum();
                flip_ppl.push((s / subset_words.max(1.0)).exp());
                progress(0.5 + 0.5 * (j + 1) as f64 / l as f64);
            }
            flip_growth = flip_ppl.iter().map(|p| p / base_ppl - 1.0).collect();
        }
        (
            Some(BitReport {
                means: column_means(&codes),
                prob_means: if is_hash {
                    column_means(&codes)
                } else {
                    column_means(&probs)
                },
                base_ppl,
                flip_ppl,
                flip_growth,
                flip_sentences: flip_n,
                correlation: correlation(&codes),
            }),
            None,
        )
    } else {
        let means = column_means(&loc);
        let var: Vec<f64> = (0..l)
            .map(|j| {
                loc.iter()
                    .map(|r| (r[j] as f64 - means[j]).powi(2))
                    .sum::<f64>()
                    / n
            })
            .collect();
        let threshold = 0.01;
        (
            None,
            Some(GaussianReport {
                kl_per_dim: kl_per_dim.iter().map(|k| k / n).collect(),
                active_units: var.iter().filter(|&&v| v > threshold).count(),
                mean_variance: var,
                active_threshold: threshold,
            }),
        )
    };
    progress(1.0);
    Ok(SplitStats {
        corpus: corpus.name,
        split,
        report: EvalReport {
            kind: Capabilities::of_bow(model).kind,
            sentences: bags.len(),
            tokens: bags.iter().flatten().map(|&(_, c)| c as usize).sum(),
            // A bag's perplexity is per word of the bag (no <eos>): the same count.
            words: bags.iter().flatten().map(|&(_, c)| c as usize).sum(),
            ppl,
            nll_per_sentence,
            kl_per_sentence: crate::eval::Kl(
                ck.config
                    .has_kl()
                    .then(|| kl_per_dim.iter().sum::<f64>() / n),
            ),
            bits,
            gaussian,
            reconstruction: None,
            factors: None,
        },
    })
}

/// Rounded bits or μ from the latent head's output.
fn deterministic(loc: &[Vec<f32>], binary: bool) -> Vec<Vec<f32>> {
    read_features(loc.to_vec(), FeatureKind::Codes, binary)
}

/// −log p(bag_i | code_i) of each bag under its own code.
fn bags_nll(ck: &BowCheckpoint, bags: &[Bag], codes: &[Vec<f32>]) -> Result<Vec<f64>> {
    let z = codes_tensor(ck, codes)?;
    let Some(logp) = ck.model.word_log_probs(&z)? else {
        return Err(no_decoder(ck, "documents cannot be scored"));
    };
    Ok(logp
        .to_vec2::<f32>()?
        .iter()
        .zip(bags)
        .map(|(row, bag)| {
            bag.iter()
                .map(|&(id, c)| -(row[id as usize] as f64) * c as f64)
                .sum()
        })
        .collect())
}

/// μ and σ of each text under a bag-of-words model (nvdm: σ; lsh and nash give their `loc`).
pub fn posteriors(
    b: &BowCheckpoint,
    texts: &[&str],
    progress: &mut dyn FnMut(f64),
) -> Result<Vec<Posterior>> {
    let bags: Vec<_> = texts
        .iter()
        .map(|t| bag_of_words(&b.vocab, &normalize(t)))
        .collect();
    let mut out = Vec::with_capacity(bags.len());
    for range in crate::bow::eval_batches(bags.iter().map(Vec::len)) {
        let refs: Vec<&[(u32, f32)]> = bags[range].iter().map(Vec::as_slice).collect();
        let batch = BagBatch::new(&refs, b.model.device())?;
        let params = b.model.encode(&batch)?;
        let means = params.loc.to_vec2::<f32>()?;
        let stds = match &params.logvar {
            Some(lv) => Some((lv * 0.5)?.exp()?.to_vec2::<f32>()?),
            None => None,
        };
        for (i, mean) in means.into_iter().enumerate() {
            out.push(Posterior {
                mean,
                std: stds.as_ref().map(|s| s[i].clone()),
            });
        }
        progress(out.len() as f64 / bags.len().max(1) as f64);
    }
    Ok(out)
}

/// The latent head's raw output (logits, projections or μ) of each text's bag, from which
/// [`read_features`] derives every feature kind.
pub fn latent_loc(
    b: &BowCheckpoint,
    texts: &[&str],
    progress: &mut dyn FnMut(f64),
) -> Result<Vec<Vec<f32>>> {
    let bags: Vec<_> = texts
        .iter()
        .map(|t| bag_of_words(&b.vocab, &normalize(t)))
        .collect();
    let chunk = 16 * EVAL_BATCH;
    let mut out = Vec::with_capacity(bags.len());
    for part in bags.chunks(chunk) {
        out.extend(encode_bags(&b.model, part)?);
        progress(out.len() as f64 / bags.len().max(1) as f64);
    }
    Ok(out)
}
