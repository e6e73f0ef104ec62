//! What each bit (binary codes) or dimension (continuous codes) of a model means, in words,
//! for every model with an encoder; and the explorer's first screen, which opens on a sentence
//! of the model's own corpus with the bit that changes its decoding most selected.
//!
//! Each bit or dimension is read two ways, over a seeded sample of the checkpoint's corpus:
//!
//! * **Words and labels** (every model with an encoder): the corpus entries are split by the
//!   bit (on / off), or for continuous codes by the dimension's μ (the *high* tail above its
//!   corpus mean + σ, the *low* tail below mean − σ). Each side's most distinctive words are the
//!   weighted log-odds with an informative Dirichlet prior that labels clusters
//!   ([`crate::cluster::distinctive_words`]); the gold labels it shifts are those whose share
//!   differs most between the two sides.
//! * **What flipping it does** (models with a decoder): each sampled sentence is decoded
//!   greedily with the bit set to 1 and to 0 (one of the two is its own code), or with the
//!   dimension set to its corpus mean + 2σ and mean − 2σ; the words the *on* (+2σ) decoding has
//!   and the *off* (−2σ) one lacks are the words the bit adds, the reverse the words it removes
//!   (content words, counted once per decoding), and the share of sentences whose two decodings
//!   differ says how often it matters at all.
//!
//! The result is computed once per checkpoint and corpus and cached beside the checkpoint
//! (`NAME.meaning.json`) with the index's freshness rule: it is used only while the checkpoint
//! file's SHA-256, the corpus hash and the sampling options are those it was made with.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::checkpoint::write_atomically;
use crate::cluster::{distinctive_words_of, DistinctiveWord};
use crate::coder::EncodedSentence;
use crate::coder::{Coder, FeatureKind};
use crate::corpus::{Corpus, Example, Split};
use crate::index::CachedIndex;
use crate::structure::subset;

pub const MEANING_FORMAT: &str = "latent-tui-meaning/1";

/// The suffix of a checkpoint's meanings cache: `NAME.meaning.json`.
const MEANING_SUFFIX: &str = "meaning.json";

/// How much of the corpus is read. The defaults keep the first computation for the shipped
/// 64-bit model near 15 s on two threads (see docs/meaning.md).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeaningOptions {
    /// Train entries (a seeded subset) whose codes are split by each bit.
    pub entries: usize,
    /// Greedy decodings in all for the flips; the number of sentences follows from it and the
    /// code width (binary: bits + 1 per sentence, continuous: 2 per dimension).
    pub decodings: usize,
    /// Sentences decoded at most (and at least 8 when the split has them).
    pub max_sentences: usize,
    /// Words kept per side.
    pub words: usize,
    pub seed: u64,
    /// Decodings a word must be added (or removed) in to be listed as what a flip does: a word
    /// one decoding happened to gain is no reading of the bit (over the 11 sentences a 256-bit
    /// code gets, every count was 1 and the lists were the alphabetically first words). Caches
    /// from before it read 0: stale.
    #[serde(default)]
    pub min_flips: usize,
    /// Flip decodings keep to the corpus's words, as the explorer's do by default (subword
    /// models; raw decodings spelled invented words into the lists).
    #[serde(default)]
    pub real_words: bool,
    /// The rule the listed words follow ([`is_listed_word`], rule [`LISTED_WORDS_RULE`]):
    /// meanings computed before it (0) listed single letters and numbers and filled their
    /// lists with them, so they are stale — recomputed rather than read with shorter lists,
    /// which a fresh computation would fill with other words.
    #[serde(default)]
    pub listed_words_rule: u32,
}

/// The version of [`is_listed_word`] that new meanings follow.
pub const LISTED_WORDS_RULE: u32 = 1;

impl Default for MeaningOptions {
    fn default() -> Self {
        Self {
            entries: 4000,
            decodings: 3072,
            max_sentences: 200,
            words: 8,
            seed: 0,
            min_flips: 2,
            real_words: true,
            listed_words_rule: LISTED_WORDS_RULE,
        }
    }
}

impl MeaningOptions {
    /// Sentences decoded for a code `dims` wide.
    pub fn sentences_for(&self, dims: usize, binary: bool) -> usize {
        let per_sentence = if binary { dims + 1 } else { 2 * dims }.max(1);
        (self.decodings / per_sentence).clamp(8.min(self.max_sentences), self.max_sentences)
    }

    /// An error for settings that would read nothing.
    pub fn validate(&self) -> Result<()> {
        if self.entries == 0 {
            bail!("--entries must be at least 1");
        }
        if self.words == 0 {
            bail!("--words must be at least 1");
        }
        Ok(())
    }
}

/// Where a table of meanings came from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MeaningMeta {
    pub checkpoint: String,
    pub checkpoint_sha256: String,
    pub model: String,
    pub corpus: String,
    pub corpus_hash: String,
    pub options: MeaningOptions,
}

/// A label whose share differs between the two sides.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LabelShift {
    pub label: String,
    /// Share of the on (high) side's entries with this label.
    pub on: f64,
    /// Share of the off (low) side's entries with this label.
    pub off: f64,
}

/// A word a flip adds or removes, with the number of decodings it did so in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WordCount {
    pub word: String,
    pub count: usize,
}

/// What setting the bit on rather than off does to greedy decodings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FlipEffect {
    pub sentences: usize,
    /// Share of the sentences whose on and off decodings differ.
    pub changed: f64,
    /// Content words of the on decodings missing from the off ones, most frequent first.
    pub added: Vec<WordCount>,
    /// Content words of the off decodings missing from the on ones.
    pub removed: Vec<WordCount>,
}

/// One bit or dimension in words.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DimMeaning {
    pub dim: usize,
    /// Binary: the share of entries with the bit set. Continuous: the share in the high tail.
    pub on_share: f64,
    /// Binary: the share with the bit clear. Continuous: the share in the low tail.
    pub off_share: f64,
    /// Continuous: the corpus mean and σ of μ in this dimension (binary: the bit's mean, 0).
    pub mean: f32,
    pub std: f32,
    pub on_words: Vec<DistinctiveWord>,
    pub off_words: Vec<DistinctiveWord>,
    /// Labels more common on the on (high) side, largest shift first.
    pub on_labels: Vec<LabelShift>,
    /// Labels more common on the off (low) side.
    pub off_labels: Vec<LabelShift>,
    /// None for a model without a decoder (lsh).
    pub flips: Option<FlipEffect>,
}

/// Every bit or dimension of a model in words.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Meanings {
    pub format: String,
    pub meta: MeaningMeta,
    pub binary: bool,
    /// What a decoding is ("greedy decoding", "most probable words"); None without a decoder.
    pub decoding: Option<String>,
    /// Entries split by each bit, and the split they come from.
    pub entries: usize,
    pub entries_split: String,
    /// Sentences decoded per bit, and the split they come from.
    pub sentences: usize,
    pub sentences_split: String,
    pub dims: Vec<DimMeaning>,
}

/// Labels shown per side.
const LABELS_PER_SIDE: usize = 3;
/// Words shown per side in one-line summaries.
const SHOWN: usize = 3;
/// Decodings per call to the decoder.
const DECODE_BATCH: usize = 256;

/// The first non-empty split of `order`.
fn first_split<'a>(corpus: &'a Corpus, order: &[Split]) -> Option<(Split, &'a [Example])> {
    order
        .iter()
        .map(|&s| (s, corpus.split(s)))
        .find(|(_, e)| !e.is_empty())
}

/// Which side of bit / dimension `j` each code is on: 1 on (high), 0 off (low), 2 neither
/// (continuous codes within one σ of the mean).
fn sides(codes: &[Vec<f32>], j: usize, binary: bool, mean: f32, std: f32) -> Vec<usize> {
    codes
        .iter()
        .map(|c| {
            let v = c[j];
            if binary {
                crate::explore::is_set(v) as usize
            } else if std > 0.0 && v > mean + std {
                1
            } else if std > 0.0 && v < mean - std {
                0
            } else {
                2
            }
        })
        .collect()
}

/// Mean and σ of each dimension over `codes`.
fn moments(codes: &[Vec<f32>], dims: usize) -> (Vec<f32>, Vec<f32>) {
    let n = codes.len().max(1) as f64;
    let mut mean = vec![0f64; dims];
    for c in codes {
        for (m, &v) in mean.iter_mut().zip(c) {
            *m += v as f64 / n;
        }
    }
    let mut var = vec![0f64; dims];
    for c in codes {
        for ((s, &v), &m) in var.iter_mut().zip(c).zip(&mean) {
            *s += (v as f64 - m).powi(2) / n;
        }
    }
    (
        mean.iter().map(|&m| m as f32).collect(),
        var.iter().map(|&v| v.sqrt() as f32).collect(),
    )
}

/// The labels whose share differs most between the on (1) and off (0) sides.
fn label_shifts(labels: &[Option<&str>], side: &[usize]) -> (Vec<LabelShift>, Vec<LabelShift>) {
    let mut counts: BTreeMap<&str, [f64; 2]> = BTreeMap::new();
    let mut totals = [0f64; 2];
    for (l, &s) in labels.iter().zip(side) {
        if s > 1 {
            continue;
        }
        totals[s] += 1.0;
        if let Some(l) = l {
            counts.entry(l).or_default()[s] += 1.0;
        }
    }
    if totals[0] == 0.0 || totals[1] == 0.0 {
        return (Vec::new(), Vec::new());
    }
    let mut shifts: Vec<LabelShift> = counts
        .into_iter()
        .map(|(label, [off, on])| LabelShift {
            label: label.to_string(),
            on: on / totals[1],
            off: off / totals[0],
        })
        .collect();
    shifts.sort_by(|a, b| {
        (b.on - b.off)
            .total_cmp(&(a.on - a.off))
            .then_with(|| a.label.cmp(&b.label))
    });
    let on: Vec<LabelShift> = shifts
        .iter()
        .filter(|s| s.on > s.off)
        .take(LABELS_PER_SIDE)
        .cloned()
        .collect();
    let off: Vec<LabelShift> = shifts
        .iter()
        .rev()
        .filter(|s| s.off > s.on)
        .take(LABELS_PER_SIDE)
        .cloned()
        .collect();
    (on, off)
}

/// Whether a token may be listed as a word a bit or dimension goes with or changes (the
/// `bits` table, the explorer's meaning row): a content word
/// ([`crate::bow::is_content_word`]) with at least two letters, made of letters and digits
/// (with inner hyphens or apostrophes). A single letter (the "e" and "g" of a corpus's
/// "e . g ."), a number and a piece of punctuation are not words a bit is read by.
pub fn is_listed_word(token: &str) -> bool {
    let letters = token.chars().filter(|c| c.is_alphabetic()).count();
    let inner = token.trim_matches(|c: char| !c.is_alphanumeric());
    letters >= 2
        && inner.len() == token.len()
        && token
            .chars()
            .all(|c| c.is_alphanumeric() || c == '-' || c == '\'')
        && crate::bow::is_content_word(token, false)
}

/// Words of `a` not matched by a word of `b` (a multiset difference), listed words only
/// ([`is_listed_word`]).
fn words_missing(a: &str, b: &str) -> Vec<String> {
    let mut left: HashMap<&str, usize> = HashMap::new();
    for w in b.split_whitespace() {
        *left.entry(w).or_default() += 1;
    }
    let mut out = Vec::new();
    for w in a.split_whitespace() {
        match left.get_mut(w) {
            Some(n) if *n > 0 => *n -= 1,
            _ => {
                if is_listed_word(w) {
                    out.push(w.to_string());
                }
            }
        }
    }
    out
}

/// For each word of `after`, whether it is new: not matched by a word of `before` (a
/// multiset match, so a word said twice where `before` said it once counts once as new). The
/// explorer highlights these after a flip.
pub fn new_words(before: &str, after: &str) -> Vec<bool> {
    let mut left: HashMap<&str, usize> = HashMap::new();
    for w in before.split_whitespace() {
        *left.entry(w).or_default() += 1;
    }
    after
        .split_whitespace()
        .map(|w| match left.get_mut(w) {
            Some(n) if *n > 0 => {
                *n -= 1;
                false
            }
            _ => true,
        })
        .collect()
}

/// Words that differ between two decodings: added (in `after` only) plus removed.
pub fn changed_word_count(before: &str, after: &str) -> usize {
    let added = new_words(before, after).iter().filter(|&&n| n).count();
    let removed = new_words(after, before).iter().filter(|&&n| n).count();
    added + removed
}

/// Counts of words over decodings of at least `min` (and 1), most frequent first (ties
/// alphabetical), at most `top`.
fn ranked(counts: HashMap<String, usize>, min: usize, top: usize) -> Vec<WordCount> {
    let mut v: Vec<WordCount> = counts
        .into_iter()
        .filter(|&(_, count)| count >= min.max(1))
        .map(|(word, count)| WordCount { word, count })
        .collect();
    v.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.word.cmp(&b.word)));
    v.truncate(top);
    v
}

/// Decodes `codes` in batches, reporting each batch through `done(decoded so far)`.
fn decode_all(
    coder: &Coder,
    codes: &[Vec<f32>],
    real_words: Option<&crate::model::word_trie::WordTrie>,
    done: &mut dyn FnMut(usize),
) -> Result<Vec<String>> {
    let mut out = Vec::with_capacity(codes.len());
    for part in codes.chunks(DECODE_BATCH) {
        let decoded = coder
            .decode_codes_restricted(part, crate::coder::DECODED_WORDS, real_words)?
            .context("the model has no decoder")?;
        out.extend(decoded);
        done(out.len());
    }
    Ok(out)
}

impl Meanings {
    /// Reads the bits or dimensions of `coder` off `corpus` (see the module docs).
    pub fn compute(
        coder: &Coder,
        corpus: &Corpus,
        opts: &MeaningOptions,
        progress: &mut dyn FnMut(f64),
    ) -> Result<Self> {
        opts.validate()?;
        let caps = coder.capabilities();
        if !caps.encodes {
            bail!(
                "an `{}` model has no encoder, so its sentences have no code to read",
                caps.name
            );
        }
        let binary = coder.is_binary();
        let dims = coder.latent_dim();
        let model = coder.config().describe();
        // The model held, not the file as it is now (it may have been replaced since the load).
        let checkpoint_sha256 = coder.checkpoint_sha256().to_string();

        // (a) words and labels.
        let Some((entries_split, examples)) =
            first_split(corpus, &[Split::Train, Split::Valid, Split::Test])
        else {
            bail!("corpus `{}` has no examples", corpus.name);
        };
        let picked: Vec<&Example> = subset(examples.len(), Some(opts.entries), opts.seed)
            .into_iter()
            .map(|i| &examples[i])
            .collect();
        let texts: Vec<&str> = picked.iter().map(|e| e.text.as_str()).collect();
        let labels: Vec<Option<&str>> = picked.iter().map(|e| e.label.as_deref()).collect();
        let decodes = coder.decoding_kind().is_some();
        // Share of the work: encoding the entries, the words, the decodings.
        let (enc_w, words_w) = if decodes { (0.1, 0.1) } else { (0.5, 0.5) };
        let codes = coder.features(&texts, FeatureKind::Codes, &mut |f| progress(f * enc_w))?;
        let (mean, std) = moments(&codes, dims);
        let mut out: Vec<DimMeaning> = Vec::with_capacity(dims);
        for j in 0..dims {
            let (m, s) = if binary {
                (mean[j], 0.0)
            } else {
                (mean[j], std[j])
            };
            let side = sides(&codes, j, binary, m, s);
            let count = |k: usize| side.iter().filter(|&&x| x == k).count() as f64;
            let n = side.len().max(1) as f64;
            let mut words = distinctive_words_of(&texts, &side, 3, opts.words, &is_listed_word);
            let (on_labels, off_labels) = label_shifts(&labels, &side);
            let off_words = std::mem::take(&mut words[0]);
            let on_words = std::mem::take(&mut words[1]);
            out.push(DimMeaning {
                dim: j,
                on_share: count(1) / n,
                off_share: count(0) / n,
                mean: m,
                std: s,
                on_words: if count(1) > 0.0 { on_words } else { Vec::new() },
                off_words: if count(0) > 0.0 {
                    off_words
                } else {
                    Vec::new()
                },
                on_labels,
                off_labels,
                flips: None,
            });
            progress(enc_w + words_w * (j + 1) as f64 / dims.max(1) as f64);
        }

        // (b) what flipping does to decodings.
        let mut sentences = 0;
        let mut sentences_split = String::new();
        if decodes && dims > 0 {
            let (split, examples) = first_split(corpus, &[Split::Valid, Split::Test, Split::Train])
                .expect("the corpus has examples");
            sentences_split = split.to_string();
            let n = opts.sentences_for(dims, binary);
            let texts: Vec<&str> = subset(examples.len(), Some(n), opts.seed.wrapping_add(1))
                .into_iter()
                .map(|i| examples[i].text.as_str())
                .collect();
            sentences = texts.len();
            let base = coder.features(&texts, FeatureKind::Codes, &mut |_| {})?;
            // Every code to decode, in order: binary: the sentences' own codes, then per bit
            // each code with that bit flipped; continuous: per dimension the codes at −2σ, then
            // at +2σ.
            let mut all: Vec<Vec<f32>> = Vec::new();
            if binary {
                all.extend(base.iter().cloned());
            }
            for j in 0..dims {
                if binary {
                    all.extend(base.iter().map(|c| crate::explore::flip(c, j)));
                } else {
                    for sign in [-2.0f32, 2.0] {
                        all.extend(base.iter().map(|c| {
                            let mut c = c.clone();
                            c[j] = mean[j] + sign * std[j];
                            c
                        }));
                    }
                }
            }
            let total = all.len().max(1) as f64;
            let start = enc_w + words_w;
            let words = match coder.sequence_model("decode") {
                Ok(engine) if opts.real_words && crate::coder::seq::real_words_apply(engine) => {
                    crate::coder::seq::corpus_words_of(corpus, &engine.vocab).trie
                }
                _ => None,
            };
            let decoded = decode_all(coder, &all, words.as_deref(), &mut |d| {
                progress(start + (1.0 - start) * d as f64 / total)
            })?;
            let t = texts.len();
            for (j, meaning) in out.iter_mut().enumerate() {
                let (mut added, mut removed): (HashMap<String, usize>, HashMap<String, usize>) =
                    Default::default();
                let mut changed = 0usize;
                for i in 0..t {
                    let (on, off) = if binary {
                        let own = &decoded[i];
                        let flipped = &decoded[t + j * t + i];
                        if crate::explore::is_set(base[i][j]) {
                            (own, flipped)
                        } else {
                            (flipped, own)
                        }
                    } else {
                        (&decoded[(2 * j + 1) * t + i], &decoded[2 * j * t + i])
                    };
                    if on != off {
                        changed += 1;
                    }
                    let once = |map: &mut HashMap<String, usize>, words: Vec<String>| {
                        let mut words = words;
                        words.sort();
                        words.dedup();
                        for w in words {
                            *map.entry(w).or_default() += 1;
                        }
                    };
                    once(&mut added, words_missing(on, off));
                    once(&mut removed, words_missing(off, on));
                }
                meaning.flips = Some(FlipEffect {
                    sentences: t,
                    changed: changed as f64 / t.max(1) as f64,
                    added: ranked(added, opts.min_flips, opts.words),
                    removed: ranked(removed, opts.min_flips, opts.words),
                });
            }
        }
        progress(1.0);
        Ok(Self {
            format: MEANING_FORMAT.to_string(),
            meta: MeaningMeta {
                checkpoint: coder.path().display().to_string(),
                checkpoint_sha256,
                model,
                corpus: corpus.name.clone(),
                corpus_hash: corpus.hash.clone(),
                options: opts.clone(),
            },
            binary,
            decoding: coder.decoding_kind().map(str::to_string),
            entries: picked.len(),
            entries_split: entries_split.to_string(),
            sentences,
            sentences_split,
            dims: out,
        })
    }

    /// The meanings cached beside `coder`'s checkpoint when they were made from the model it
    /// holds (the hash of the checkpoint bytes it was loaded from), this corpus and these options; otherwise computed now and saved there
    /// (a failed save is reported in the result, not an error).
    pub fn load_or_compute(
        coder: &Coder,
        corpus: &Corpus,
        opts: &MeaningOptions,
        progress: &mut dyn FnMut(f64),
    ) -> Result<CachedIndex<Meanings>> {
        let checkpoint = coder.path();
        let path = Self::default_path(checkpoint);
        let fresh = |m: &Self| {
            m.meta.corpus_hash == corpus.hash
                && m.meta.options == *opts
                && m.dims.len() == coder.latent_dim()
                && m.binary == coder.is_binary()
                && m.meta.checkpoint_sha256 == coder.checkpoint_sha256()
        };
        // The cache path, else fresh meanings beside the checkpoint (read only).
        let found = crate::index::first_fresh(checkpoint, MEANING_SUFFIX, |p| {
            Self::load(p).ok().filter(fresh)
        });
        if let Some((index, path)) = found {
            return Ok(CachedIndex {
                index,
                path,
                from_disk: true,
                save_error: None,
            });
        }
        let index = Self::compute(coder, corpus, opts, progress)?;
        let save_error = index.save(&path).err().map(|e| format!("{e:#}"));
        Ok(CachedIndex {
            index,
            path,
            from_disk: false,
            save_error,
        })
    }

    /// `name.safetensors` → `name.meaning.json`, beside it or in the cache directory
    /// ([`crate::index::cache_path`]).
    pub fn default_path(checkpoint: &Path) -> PathBuf {
        crate::index::cache_path(checkpoint, MEANING_SUFFIX)
    }

    /// Reads meanings written by [`Meanings::save`].
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = crate::checkpoint::read_regular_file(
            path,
            "meanings",
            crate::checkpoint::max_bytes::MEANINGS,
        )?;
        let mut m: Self = serde_json::from_slice(&bytes)
            .with_context(|| format!("`{}` is not a meanings file", path.display()))?;
        if m.format != MEANING_FORMAT {
            bail!(
                "`{}` is not a latent-tui meanings file (format `{MEANING_FORMAT}`)",
                path.display()
            );
        }
        if m.dims.iter().enumerate().any(|(j, d)| d.dim != j) {
            bail!("`{}`: the dimensions are out of order", path.display());
        }
        m.keep_listed_words();
        Ok(m)
    }

    /// Drops every listed word that is not one by [`is_listed_word`]: meanings computed before
    /// the rule (a cache beside a checkpoint, stale by `listed_words_rule` but still readable)
    /// listed single letters and numbers.
    fn keep_listed_words(&mut self) {
        for d in &mut self.dims {
            d.on_words.retain(|w| is_listed_word(&w.word));
            d.off_words.retain(|w| is_listed_word(&w.word));
            if let Some(f) = &mut d.flips {
                f.added.retain(|w| is_listed_word(&w.word));
                f.removed.retain(|w| is_listed_word(&w.word));
            }
        }
    }

    /// Atomically writes the meanings to `path`; a file there that is not a meanings file is
    /// left alone (an error), since this command did not make it.
    pub fn save(&self, path: &Path) -> Result<()> {
        if path.exists() && Self::load(path).is_err() {
            bail!(
                "`{}` exists and is not a meanings file; not overwriting it",
                path.display()
            );
        }
        let json = serde_json::to_vec_pretty(self).context("serialising the meanings")?;
        write_atomically(path, &json)
    }

    /// "bit" or "dim".
    pub fn unit(&self) -> &'static str {
        if self.binary {
            "bit"
        } else {
            "dim"
        }
    }

    /// The words of the on and off (high and low) sides, as the side names say them.
    pub fn side_names(&self) -> (&'static str, &'static str) {
        if self.binary {
            ("on", "off")
        } else {
            ("high", "low")
        }
    }

    /// The one-line reading of bit / dimension `j`, e.g. "on: flower, genus, plant · off:
    /// person, someone · flipping changes 10 of 11 sentences".
    pub fn summary(&self, j: usize) -> String {
        self.summary_within(j, usize::MAX)
    }

    /// [`Meanings::summary`] in at most `width` characters: the word lists are shortened first
    /// (the longer one a word at a time, down to one word each, `…` marking what is left
    /// out), then the count is said more briefly ("changes 47 of 48", then "47/48 change",
    /// each with as many words as then fit), then the lists go; the count is never cut
    /// mid-word. Where even that does not fit, the line is cut at a word with `…`.
    pub fn summary_within(&self, j: usize, width: usize) -> String {
        let Some(d) = self.dims.get(j) else {
            return String::new();
        };
        let (on, off) = self.side_names();
        let words = |w: &[DistinctiveWord], n: usize| {
            let all: Vec<&str> = w.iter().take(SHOWN).map(|w| w.word.as_str()).collect();
            if all.is_empty() {
                "—".to_string()
            } else if n >= all.len() {
                all.join(", ")
            } else if n == 0 {
                "…".to_string()
            } else {
                format!("{}, …", all[..n].join(", "))
            }
        };
        let counts = d.flips.as_ref().map(|f| {
            // A count of the few sentences decoded, not a share that reads as a rate.
            let changed = (f.changed * f.sentences as f64).round() as usize;
            let what = if self.binary {
                "flipping changes"
            } else {
                "−2σ ↔ +2σ changes"
            };
            [
                format!("{what} {changed} of {} sentences", f.sentences),
                format!("changes {changed} of {}", f.sentences),
                format!("{changed}/{} change", f.sentences),
            ]
        });
        let line = |n_on: usize, n_off: usize, count: usize| {
            let mut s = format!(
                "{on}: {} · {off}: {}",
                words(&d.on_words, n_on),
                words(&d.off_words, n_off)
            );
            if let Some(c) = &counts {
                s.push_str(" · ");
                s.push_str(&c[count]);
            }
            s
        };
        let fits = |s: &str| s.chars().count() <= width;
        // The word counts to try, fewer each time, the longer list first, down to one a side.
        let (mut n_on, mut n_off) = (d.on_words.len().min(SHOWN), d.off_words.len().min(SHOWN));
        let mut counts_tried = vec![(n_on, n_off)];
        while n_on > 1 || n_off > 1 {
            if n_on >= n_off {
                n_on -= 1;
            } else {
                n_off -= 1;
            }
            counts_tried.push((n_on, n_off));
        }
        let forms = counts.as_ref().map_or(1, |c| c.len());
        for count in 0..forms {
            for &(a, b) in &counts_tried {
                let s = line(a, b, count);
                if fits(&s) {
                    return s;
                }
            }
        }
        let s = line(0, 0, forms - 1);
        if fits(&s) {
            return s;
        }
        // Narrower than any form: cut at a word.
        let mut out = String::new();
        for w in line(n_on, n_off, 0).split(' ') {
            let next = if out.is_empty() {
                w.to_string()
            } else {
                format!("{out} {w}")
            };
            if next.chars().count() + 2 > width {
                break;
            }
            out = next;
        }
        if out.is_empty() {
            "…".to_string()
        } else {
            format!("{out} …")
        }
    }

    /// The words a flip adds and removes, e.g. "+ plant, genus − person".
    pub fn flip_words(&self, j: usize) -> Option<String> {
        let f = self.dims.get(j)?.flips.as_ref()?;
        let list = |w: &[WordCount]| {
            w.iter()
                .take(SHOWN)
                .map(|w| w.word.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        if f.added.is_empty() && f.removed.is_empty() {
            return Some(format!(
                "no word added or removed in {} or more of its {} sentences' decodings",
                self.meta.options.min_flips.max(1),
                f.sentences
            ));
        }
        Some(format!(
            "adds {} · removes {}",
            if f.added.is_empty() {
                "—".into()
            } else {
                list(&f.added)
            },
            if f.removed.is_empty() {
                "—".into()
            } else {
                list(&f.removed)
            }
        ))
    }

    /// The labels bit / dimension `j` shifts, e.g. "on: noun.plant +12 pts · off: noun.person".
    pub fn label_line(&self, j: usize) -> Option<String> {
        let d = self.dims.get(j)?;
        if d.on_labels.is_empty() && d.off_labels.is_empty() {
            return None;
        }
        let (on, off) = self.side_names();
        let list = |v: &[LabelShift], sign: f64| {
            v.iter()
                .map(|l| format!("{} +{:.0} pts", l.label, sign * (l.on - l.off) * 100.0))
                .collect::<Vec<_>>()
                .join(", ")
        };
        Some(format!(
            "{on}: {} · {off}: {}",
            list(&d.on_labels, 1.0),
            list(&d.off_labels, -1.0)
        ))
    }

    /// The bits ordered by how often flipping them changes a decoding, most first.
    pub fn by_effect(&self) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.dims.len()).collect();
        let key = |j: usize| self.dims[j].flips.as_ref().map_or(0.0, |f| f.changed);
        order.sort_by(|&a, &b| key(b).total_cmp(&key(a)).then(a.cmp(&b)));
        order
    }

    /// The table `latent-tui bits` prints; every text from the corpus or the model's
    /// vocabulary is [`shown`](crate::printable::shown), never obeyed.
    pub fn render(&self) -> String {
        use crate::printable::Shown;
        let unit = self.unit();
        let mut s = format!(
            "{} · corpus {} · words from {} {} entries{}\n",
            Shown(&self.meta.model),
            Shown(&self.meta.corpus),
            self.entries,
            Shown(&self.entries_split),
            match &self.decoding {
                Some(d) => format!(
                    ", flips over {} {} sentences ({})",
                    self.sentences,
                    Shown(&self.sentences_split),
                    Shown(d)
                ),
                None => ", no decoder (no flips)".into(),
            }
        );
        if !self.binary {
            s.push_str("continuous codes: high / low = μ above mean + σ / below mean − σ; decodings at mean ± 2σ\n");
        }
        for d in &self.dims {
            s.push_str(&format!(
                "{unit} {:>3}  {}\n",
                d.dim,
                Shown(&self.summary(d.dim))
            ));
            if let Some(w) = self.flip_words(d.dim) {
                s.push_str(&format!("         {}\n", Shown(&w)));
            }
            if let Some(l) = self.label_line(d.dim) {
                s.push_str(&format!("         labels {}\n", Shown(&l)));
            }
        }
        s
    }
}

/// What the corpus is, in plain words, and what kind of sentence to type.
#[derive(Clone, Debug, PartialEq)]
pub struct CorpusAbout {
    /// E.g. "dictionary definitions from WordNet".
    pub trained_on: String,
    /// A sentence of the kind that decodes well.
    pub example: String,
}

/// The explorer's first screen: a test sentence of the model's own corpus, encoded, and the
/// bit (dimension) whose flip (+2σ) changes its greedy decoding most.
#[derive(Clone, Debug, PartialEq)]
pub struct Opening {
    /// The sentence as drawn (normalized).
    pub text: String,
    pub sentence: EncodedSentence,
    /// The bit or dimension to select.
    pub dim: usize,
    /// Words its flip changes in the decoding (added plus removed); 0 without a decoder.
    pub changed_words: usize,
    pub about: CorpusAbout,
    /// The split the sentence comes from.
    pub split: String,
}

/// Candidate sentences an opening encodes and decodes; the best reconstruction is shown.
const OPENING_CANDIDATES: usize = 24;
/// Candidates are this short when the split has enough such sentences: short sentences
/// decode best.
const OPENING_MAX_WORDS: usize = 10;

/// The corpus in plain words: the bundled WordNet corpus by name, another by its file name and
/// size; the example is the one a user reads in the header.
pub fn about_corpus(corpus: &Corpus, example: &str) -> CorpusAbout {
    let trained_on = if corpus.name == "wordnet" {
        "dictionary definitions from WordNet".to_string()
    } else {
        format!(
            "{} sentences from {}",
            group_thousands(corpus.train.len()),
            corpus.name
        )
    };
    CorpusAbout {
        trained_on,
        example: example.to_string(),
    }
}

/// [`about_corpus`] from a checkpoint's provenance alone (before its corpus is read): the
/// bundled corpus by name, another by its file name, with no example.
pub fn about_provenance(corpus: &str) -> CorpusAbout {
    if corpus.is_empty() || corpus == "wordnet" {
        return CorpusAbout {
            trained_on: "dictionary definitions from WordNet".into(),
            example: "a tool used for cutting wood".into(),
        };
    }
    let name = Path::new(corpus)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| corpus.to_string());
    CorpusAbout {
        trained_on: format!("sentences from {name}"),
        example: String::new(),
    }
}

impl CorpusAbout {
    /// The header's words: "trained on dictionary definitions from WordNet: try 'a small furry
    /// animal that climbs trees'".
    pub fn line(&self) -> String {
        if self.example.is_empty() {
            format!("trained on {}: type sentences like those", self.trained_on)
        } else {
            format!("trained on {}: try '{}'", self.trained_on, self.example)
        }
    }
}

fn group_thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Share of positions where two decodings have the same word (of the longer one's length).
fn words_in_place(a: &str, b: &str) -> f64 {
    let (a, b): (Vec<&str>, Vec<&str>) = (
        a.split_whitespace().collect(),
        b.split_whitespace().collect(),
    );
    let n = a.len().max(b.len());
    if n == 0 {
        return 1.0;
    }
    a.iter().zip(&b).filter(|(x, y)| x == y).count() as f64 / n as f64
}

/// Draw `draw` of the first screen (draw 0 is what the explorer opens on; a key asks for the
/// next): a seeded sample of short test sentences of `corpus`, each encoded and decoded; the
/// one reconstructed best (most words in place) is shown, with the bit whose flip changes its
/// greedy decoding most (continuous: the dimension whose +2σ move does).
pub fn opening(coder: &Coder, corpus: &Corpus, seed: u64, draw: u64) -> Result<Opening> {
    let caps = coder.capabilities();
    if !caps.encodes {
        bail!("an `{}` model has no encoder", caps.name);
    }
    let Some((split, examples)) = first_split(corpus, &[Split::Test, Split::Valid, Split::Train])
    else {
        bail!("corpus `{}` has no examples", corpus.name);
    };
    let short: Vec<&Example> = examples
        .iter()
        .filter(|e| {
            let n = e.text.split(' ').count();
            (3..=OPENING_MAX_WORDS).contains(&n)
        })
        .collect();
    let pool: Vec<&Example> = if short.len() >= OPENING_CANDIDATES {
        short
    } else {
        examples.iter().collect()
    };
    let mix = seed ^ draw.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let candidates: Vec<&str> = subset(pool.len(), Some(OPENING_CANDIDATES), mix)
        .into_iter()
        .map(|i| pool[i].text.as_str())
        .collect();
    let encoded: Vec<(usize, EncodedSentence)> = coder
        .encode_texts(&candidates)?
        .into_iter()
        .enumerate()
        .filter_map(|(i, e)| e.map(|e| (i, e)))
        .collect();
    if encoded.is_empty() {
        bail!(
            "no {split} sentence of `{}` has a word the model knows",
            corpus.name
        );
    }
    let codes: Vec<Vec<f32>> = encoded.iter().map(|(_, e)| e.code.clone()).collect();
    let best = match coder.decode_codes(&codes, crate::coder::DECODED_WORDS)? {
        Some(decoded) => {
            let mut best = 0;
            let mut best_score = f64::MIN;
            for (k, ((i, _), d)) in encoded.iter().zip(&decoded).enumerate() {
                let score = words_in_place(candidates[*i], d);
                if score > best_score {
                    best = k;
                    best_score = score;
                }
            }
            best
        }
        None => 0,
    };
    let (_, sentence) = encoded[best].clone();
    let example_about = encoded
        .iter()
        .map(|(i, _)| candidates[*i])
        .find(|&t| t != candidates[encoded[best].0])
        .unwrap_or(candidates[encoded[best].0]);
    let example = if corpus.name == "wordnet" {
        "a tool used for cutting wood"
    } else {
        example_about
    };
    let about = about_corpus(corpus, example);
    let (dim, changed_words) = most_changing_dim(coder, &sentence)?;
    Ok(Opening {
        text: candidates[encoded[best].0].to_string(),
        sentence,
        dim,
        changed_words,
        about,
        split: split.to_string(),
    })
}

/// The bit (dimension, moved by +2σ of its posterior) whose change alters the greedy decoding
/// of `sentence` in the most words; the first such on ties, 0 without a decoder.
pub fn most_changing_dim(coder: &Coder, sentence: &EncodedSentence) -> Result<(usize, usize)> {
    let code = &sentence.code;
    let binary = coder.is_binary();
    let mut all = vec![code.clone()];
    for j in 0..code.len() {
        if binary {
            all.push(crate::explore::flip(code, j));
        } else {
            let s = sentence
                .encoding
                .std
                .as_ref()
                .and_then(|s| s.get(j).copied())
                .unwrap_or(1.0);
            all.push(crate::explore::nudge(code, j, 2.0 * s));
        }
    }
    let Some(decoded) = coder.decode_codes(&all, crate::coder::DECODED_WORDS)? else {
        return Ok((0, 0));
    };
    let mut best = (0, 0);
    for (j, d) in decoded[1..].iter().enumerate() {
        let n = changed_word_count(&decoded[0], d);
        if n > best.1 {
            best = (j, n);
        }
    }
    Ok(best)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listed_words_are_words_of_two_letters_or_more() {
        for w in ["bird", "go", "ii", "well-known", "o'clock", "mp3"] {
            assert!(is_listed_word(w), "{w}");
        }
        for w in [
            "e", "g", "x", "1910", "-", "(", "'s", ".", "<unk>", "the", "a", "--", "e.",
        ] {
            assert!(!is_listed_word(w), "{w}");
        }
    }

    #[test]
    fn new_words_match_as_a_multiset() {
        assert_eq!(
            new_words("a dog and a cat", "a cat and a cat"),
            vec![false, false, false, false, true]
        );
        assert_eq!(changed_word_count("a dog", "a cat"), 2);
        assert_eq!(changed_word_count("a dog", "a dog"), 0);
        assert_eq!(
            words_missing("the red flower", "the dog"),
            vec!["red", "flower"]
        );
    }

    #[test]
    fn label_shifts_name_the_labels_each_side_has_more_of() {
        let labels = [
            Some("plant"),
            Some("plant"),
            Some("person"),
            Some("person"),
            None,
        ];
        let side = [1, 1, 0, 0, 2];
        let (on, off) = label_shifts(&labels, &side);
        assert_eq!(on[0].label, "plant");
        assert_eq!(off[0].label, "person");
        assert_eq!(on[0].on, 1.0);
        assert_eq!(on[0].off, 0.0);
    }

    #[test]
    fn sentences_follow_the_decoding_budget() {
        let o = MeaningOptions::default();
        assert_eq!(o.sentences_for(64, true), 3072 / 65);
        assert_eq!(o.sentences_for(32, false), 3072 / 64);
        assert_eq!(o.sentences_for(1, true), 200);
        assert_eq!(o.sentences_for(4000, true), 8);
        assert_eq!(group_thousands(123773), "123,773");
    }
}
