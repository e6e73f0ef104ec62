//! A corpus with known factors, and how well a code separates them.
//!
//! [`GRAMMAR`] builds every sentence from one template,
//!
//! ```text
//! <subject> <verb> a <adjective> <object> <place> <time> .
//! ```
//!
//! with six independent factors of 4 to 16 values each ("my sister found a heavy guitar in the
//! garden last night ."). [`write_corpus`] (the command `latent-tui corpus factors`) draws distinct
//! factor tuples uniformly with a seed and writes them as a directory corpus in the format
//! [`crate::corpus`] reads: `train.tsv`, `valid.tsv` and `test.tsv`, one `label<TAB>text` line
//! per sentence, where the label stores the sentence's factor values (see [`label_of`]:
//! `subject=0,verb=3,...`, value indices into the grammar). [`parse`] reads a sentence (a
//! decoding, say) back into its factor values with the grammar.
//!
//! The measures: [`mutual_information`] between every bit and every factor, and from it
//! [`Disentanglement`] — the mutual information gap (MIG) per factor and I(bit; factor) /
//! H(bit) — plus [`FlipTally`], the share of single-bit flips whose decoding changes exactly one
//! factor's value.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::corpus::{Corpus, Example, Split};

/// One factor: a name and its values (each a phrase of one or more words).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Factor {
    pub name: &'static str,
    pub values: &'static [&'static str],
}

/// One slot of the template: a factor's value or a fixed word.
#[derive(Debug, Clone, Copy)]
enum Slot {
    Factor(usize),
    Word(&'static str),
}

/// The grammar: its factors and the template that orders them.
#[derive(Debug)]
pub struct Grammar {
    pub factors: [Factor; 6],
    template: [Slot; 8],
}

/// The one grammar of `latent-tui corpus factors`. Adjectives start with a consonant (the
/// article is always `a`) and no value is a prefix of another value of its factor, so a
/// sentence has at most one parse. Every value of a factor has the same number of words, so
/// every sentence has 12 tokens: training batches hold sentences of one length, and with
/// lengths that varied by value, the factors would not be independent within a batch.
/// 8 · 8 · 8 · 16 · 8 · 4 = 262,144 sentences (18 bits).
pub const GRAMMAR: Grammar = Grammar {
    factors: [
        Factor {
            name: "subject",
            values: &[
                "my sister",
                "our neighbour",
                "the teacher",
                "a farmer",
                "his uncle",
                "the doctor",
                "her friend",
                "the baker",
            ],
        },
        Factor {
            name: "verb",
            values: &[
                "found", "bought", "painted", "carried", "sold", "fixed", "dropped", "hid",
            ],
        },
        Factor {
            name: "adjective",
            values: &[
                "heavy", "broken", "small", "red", "wooden", "shiny", "dusty", "golden",
            ],
        },
        Factor {
            name: "object",
            values: &[
                "guitar", "kettle", "lamp", "box", "bicycle", "chair", "clock", "basket", "mirror",
                "drum", "ladder", "teapot", "violin", "suitcase", "hammer", "candle",
            ],
        },
        Factor {
            name: "place",
            values: &[
                "at the market",
                "in the garden",
                "near the river",
                "under the bridge",
                "at the school",
                "on the bus",
                "behind the house",
                "by the lake",
            ],
        },
        Factor {
            name: "time",
            values: &["last night", "last week", "this morning", "on sunday"],
        },
    ],
    template: [
        Slot::Factor(0),
        Slot::Factor(1),
        Slot::Word("a"),
        Slot::Factor(2),
        Slot::Factor(3),
        Slot::Factor(4),
        Slot::Factor(5),
        Slot::Word("."),
    ],
};

/// Factor values of one sentence: an index into each factor's values, in [`Grammar::factors`]
/// order.
pub type Values = [usize; 6];

impl Grammar {
    /// Number of factors.
    pub fn len(&self) -> usize {
        self.factors.len()
    }

    /// Always false: the grammar has factors.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Number of distinct sentences.
    pub fn sentences(&self) -> u64 {
        self.factors.iter().map(|f| f.values.len() as u64).product()
    }

    /// The sentence with these factor values (normalized: lowercase, single spaces).
    pub fn sentence(&self, values: &Values) -> String {
        let mut words: Vec<&str> = Vec::with_capacity(13);
        for slot in &self.template {
            match *slot {
                Slot::Word(w) => words.push(w),
                Slot::Factor(f) => words.push(self.factors[f].values[values[f]]),
            }
        }
        words.join(" ")
    }
}

/// Parses a sentence into its factor values, or `None` when the grammar does not produce it.
/// The text is compared word by word after [`crate::corpus::normalize`], so case and spacing
/// do not matter.
pub fn parse(text: &str) -> Option<Values> {
    let normalized = crate::corpus::normalize(text);
    let words: Vec<&str> = normalized.split(' ').filter(|w| !w.is_empty()).collect();
    let mut values = [usize::MAX; 6];
    parse_from(&words, 0, &mut values).then_some(values)
}

/// Matches the template from slot `slot` on against `words`, backtracking over values that
/// are prefixes of one another (none in [`GRAMMAR`], but the parser does not rely on it).
fn parse_from(words: &[&str], slot: usize, values: &mut Values) -> bool {
    let Some(s) = GRAMMAR.template.get(slot) else {
        return words.is_empty();
    };
    match *s {
        Slot::Word(w) => words.first() == Some(&w) && parse_from(&words[1..], slot + 1, values),
        Slot::Factor(f) => {
            for (v, phrase) in GRAMMAR.factors[f].values.iter().enumerate() {
                let n = phrase.split(' ').count();
                if words.len() >= n
                    && phrase.split(' ').zip(words).all(|(a, b)| a == *b)
                    && parse_from(&words[n..], slot + 1, values)
                {
                    values[f] = v;
                    return true;
                }
            }
            false
        }
    }
}

/// The label that stores a sentence's factor values in the corpus:
/// `subject=0,verb=3,adjective=1,object=12,place=5,time=2`.
pub fn label_of(values: &Values) -> String {
    let mut out = String::new();
    for (i, f) in GRAMMAR.factors.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{}={}", f.name, values[i]);
    }
    out
}

/// Reads a label written by [`label_of`]; `None` for any other label.
pub fn parse_label(label: &str) -> Option<Values> {
    let mut values = [0usize; 6];
    let mut parts = label.split(',');
    for (i, f) in GRAMMAR.factors.iter().enumerate() {
        let (name, value) = parts.next()?.split_once('=')?;
        let v: usize = value.parse().ok()?;
        if name != f.name || v >= f.values.len() {
            return None;
        }
        values[i] = v;
    }
    parts.next().is_none().then_some(values)
}

/// The factor values of each label name, when every one is a factor tuple ([`label_of`]'s
/// form); `None` when any is not (a corpus of plain labels).
pub fn label_values(label_names: &[String]) -> Option<Vec<Values>> {
    if label_names.is_empty() {
        return None;
    }
    label_names.iter().map(|n| parse_label(n)).collect()
}

/// The factor values of every example of a split, when the corpus is a factors corpus: every
/// example carries a factor label that agrees with its text's parse. `None` otherwise (another
/// corpus, an empty split, or a line edited by hand).
pub fn split_values(examples: &[Example]) -> Option<Vec<Values>> {
    if examples.is_empty() {
        return None;
    }
    examples
        .iter()
        .map(|e| {
            let stored = parse_label(e.label.as_deref()?)?;
            (parse(&e.text)? == stored).then_some(stored)
        })
        .collect()
}

/// Whether a loaded corpus is a factors corpus (its test split, or failing that its training
/// split, is all factor-labelled sentences).
pub fn is_factors_corpus(corpus: &Corpus) -> bool {
    let split = if corpus.test.is_empty() {
        Split::Train
    } else {
        Split::Test
    };
    split_values(corpus.split(split)).is_some()
}

/// Sizes and seed of a generated corpus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CorpusSpec {
    pub train: usize,
    pub valid: usize,
    pub test: usize,
    pub seed: u64,
}

impl Default for CorpusSpec {
    fn default() -> Self {
        CorpusSpec {
            train: 20_000,
            valid: 1_000,
            test: 1_000,
            seed: 1,
        }
    }
}

/// Draws `train + valid + test` distinct factor tuples uniformly (seeded), in split order:
/// no sentence appears in two splits or twice in one.
pub fn draw(spec: &CorpusSpec) -> Result<[Vec<Values>; 3]> {
    let space = GRAMMAR.sentences();
    // Rejection sampling stays fast while at most half the space is drawn. The sum is checked:
    // sizes from a caller may add up past `usize::MAX`.
    let total = spec
        .train
        .checked_add(spec.valid)
        .and_then(|n| n.checked_add(spec.test))
        .filter(|&n| n as u64 <= space / 2);
    let Some(total) = total else {
        bail!(
            "asked for {} + {} + {} sentences; the grammar has {space}, at most {} can be drawn",
            spec.train,
            spec.valid,
            spec.test,
            space / 2
        );
    };
    let mut rng = StdRng::seed_from_u64(spec.seed);
    let mut seen = HashSet::with_capacity(total);
    let mut all = Vec::with_capacity(total);
    while all.len() < total {
        let mut values = [0usize; 6];
        for (v, f) in values.iter_mut().zip(&GRAMMAR.factors) {
            *v = rng.random_range(0..f.values.len());
        }
        if seen.insert(values) {
            all.push(values);
        }
    }
    let test = all.split_off(spec.train + spec.valid);
    let valid = all.split_off(spec.train);
    Ok([all, valid, test])
}

/// The first line a file written by [`write_corpus`] starts with: anything else at an output
/// path is not ours to replace.
fn is_our_file(path: &Path) -> Result<bool> {
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        Ok(meta) if !meta.is_file() => bail!(
            "{} exists and is not a regular file; not replacing it",
            path.display()
        ),
        Ok(_) => {}
    }
    // The first line is all that decides; a huge file is never read whole.
    let head = crate::corpus::read_head(path, false)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let first = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let ours = std::str::from_utf8(first)
        .ok()
        .and_then(|line| line.split_once('\t'))
        .is_some_and(|(label, text)| parse_label(label).is_some() && parse(text).is_some());
    if !ours {
        bail!(
            "{} exists and is not a factors corpus file; not replacing it (choose another --out)",
            path.display()
        );
    }
    Ok(true)
}

/// Writes a factors corpus to `out` (created if needed): `train.tsv`, `valid.tsv` and
/// `test.tsv`, each line `label<TAB>sentence` (see [`label_of`]). The three are written to
/// temporaries, then renamed together; existing files are replaced only when they are factors
/// corpus files themselves.
/// Returns the paths written.
pub fn write_corpus(out: &Path, spec: &CorpusSpec) -> Result<Vec<PathBuf>> {
    ensure!(
        spec.train > 0 && spec.valid > 0 && spec.test > 0,
        "every split needs at least one sentence"
    );
    let splits = draw(spec)?;
    let paths: Vec<PathBuf> = Split::ALL
        .iter()
        .map(|s| out.join(format!("{s}.tsv")))
        .collect();
    // Check every target before writing any, so a refusal leaves the directory as it was.
    for path in &paths {
        is_our_file(path)?;
    }
    // All three are written to their temporaries before any replaces its file: a failed or
    // interrupted run leaves the splits of the last run, never a mix of two draws (another
    // seed's test sentences among the training ones).
    let mut staged = Vec::with_capacity(paths.len());
    for (path, bytes) in paths.iter().zip(split_bytes(&splits)) {
        staged.push(crate::checkpoint::stage(path, &bytes)?);
    }
    crate::checkpoint::commit_all(staged)?;
    Ok(paths)
}

/// The files' bytes: one `label<TAB>sentence` line per tuple.
fn split_bytes(splits: &[Vec<Values>; 3]) -> [Vec<u8>; 3] {
    splits.clone().map(|values| {
        let mut text = String::with_capacity(values.len() * 96);
        for v in &values {
            let _ = writeln!(text, "{}\t{}", label_of(v), GRAMMAR.sentence(v));
        }
        text.into_bytes()
    })
}

/// The corpus [`write_corpus`] writes for `spec`, built in memory (named `factors`): loading
/// the written directory gives the same examples and the same hash.
pub fn corpus(spec: &CorpusSpec) -> Result<Corpus> {
    let bytes = split_bytes(&draw(spec)?);
    Corpus::from_split_bytes(
        "factors",
        [&bytes[0], &bytes[1], &bytes[2]],
        &crate::corpus::LoadOptions {
            min_words: 1,
            max_words: usize::MAX,
        },
    )
}

/// The training corpus of a checkpoint trained on the default factors corpus
/// (`latent-tui corpus factors` without size or seed flags), rebuilt in memory when its files
/// are gone: `Some` only when the rebuilt corpus has the hash the checkpoint recorded.
pub fn regenerate_for(provenance: &crate::checkpoint::Provenance) -> Option<Corpus> {
    if provenance.corpus_hash.is_empty() {
        return None;
    }
    let corpus = corpus(&CorpusSpec::default()).ok()?;
    (corpus.hash == provenance.corpus_hash).then_some(corpus)
}

// ---------------------------------------------------------------------------
// Measures
// ---------------------------------------------------------------------------

/// Entropy in bits of a distribution given by counts.
fn entropy(counts: &[usize]) -> f64 {
    let n: usize = counts.iter().sum();
    if n == 0 {
        return 0.0;
    }
    let n = n as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / n;
            -p * p.log2()
        })
        .sum()
}

/// Empirical mutual information in bits between a binary variable and a discrete one with
/// `k` values, from paired samples.
pub fn mutual_information_pair(bits: &[bool], values: &[usize], k: usize) -> f64 {
    assert_eq!(bits.len(), values.len());
    let mut joint = vec![0usize; 2 * k];
    for (&b, &v) in bits.iter().zip(values) {
        joint[usize::from(b) * k + v] += 1;
    }
    let mut bit = [0usize; 2];
    let mut val = vec![0usize; k];
    for b in 0..2 {
        for v in 0..k {
            bit[b] += joint[b * k + v];
            val[v] += joint[b * k + v];
        }
    }
    (entropy(&bit) + entropy(&val) - entropy(&joint)).max(0.0)
}

/// The bit ↔ factor table of a set of binary codes and their sentences' factor values.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Disentanglement {
    /// Factor names, in [`GRAMMAR`] order.
    pub factors: Vec<String>,
    /// Sentences measured.
    pub sentences: usize,
    /// H(factor) in bits, per factor (empirical).
    pub factor_entropy: Vec<f64>,
    /// H(bit) in bits, per bit (empirical).
    pub bit_entropy: Vec<f64>,
    /// I(bit; factor) in bits: `mi[bit][factor]`.
    pub mi: Vec<Vec<f64>>,
    /// I(bit; factor) / H(bit): the share of the bit's information that is about the factor
    /// (0 for a constant bit). `determined[bit][factor]`.
    pub determined: Vec<Vec<f64>>,
    /// Mutual information gap per factor: (the largest I(bit; factor) − the second largest)
    /// / H(factor).
    pub mig: Vec<f64>,
    /// Mean of [`Self::mig`].
    pub mig_mean: f64,
    /// Per factor, the bit with the largest I(bit; factor) / H(bit).
    pub best_bit: Vec<usize>,
    /// Per factor, that largest I(bit; factor) / H(bit).
    pub best_determined: Vec<f64>,
    /// Per bit, the factor it carries most information about (`None` for a constant bit).
    pub bit_factor: Vec<Option<usize>>,
}

/// Computes [`Disentanglement`] from binary codes (`codes[i][bit]`, true = set) and the factor
/// values of the same sentences.
pub fn mutual_information(codes: &[Vec<bool>], values: &[Values]) -> Disentanglement {
    assert_eq!(codes.len(), values.len());
    let dim = codes.first().map_or(0, Vec::len);
    let n = codes.len();
    let nf = GRAMMAR.len();
    let factor_entropy: Vec<f64> = (0..nf)
        .map(|f| {
            let mut counts = vec![0usize; GRAMMAR.factors[f].values.len()];
            for v in values {
                counts[v[f]] += 1;
            }
            entropy(&counts)
        })
        .collect();
    let columns: Vec<Vec<usize>> = (0..nf)
        .map(|f| values.iter().map(|v| v[f]).collect())
        .collect();
    let mut mi = vec![vec![0.0; nf]; dim];
    let mut bit_entropy = vec![0.0; dim];
    let mut determined = vec![vec![0.0; nf]; dim];
    let mut bit_factor = vec![None; dim];
    for b in 0..dim {
        let bits: Vec<bool> = codes.iter().map(|c| c[b]).collect();
        let ones = bits.iter().filter(|&&x| x).count();
        bit_entropy[b] = entropy(&[ones, n - ones]);
        for f in 0..nf {
            mi[b][f] = mutual_information_pair(&bits, &columns[f], GRAMMAR.factors[f].values.len());
            if bit_entropy[b] > 1e-9 {
                determined[b][f] = (mi[b][f] / bit_entropy[b]).min(1.0);
            }
        }
        if bit_entropy[b] > 1e-9 {
            bit_factor[b] = (0..nf).max_by(|&x, &y| mi[b][x].total_cmp(&mi[b][y]));
        }
    }
    let mut mig = vec![0.0; nf];
    let mut best_bit = vec![0; nf];
    let mut best_determined = vec![0.0; nf];
    for f in 0..nf {
        let mut column: Vec<f64> = (0..dim).map(|b| mi[b][f]).collect();
        column.sort_by(|a, b| b.total_cmp(a));
        let first = column.first().copied().unwrap_or(0.0);
        let second = column.get(1).copied().unwrap_or(0.0);
        if factor_entropy[f] > 1e-9 {
            mig[f] = (first - second) / factor_entropy[f];
        }
        if let Some(b) = (0..dim).max_by(|&x, &y| determined[x][f].total_cmp(&determined[y][f])) {
            best_bit[f] = b;
            best_determined[f] = determined[b][f];
        }
    }
    let mig_mean = if nf == 0 {
        0.0
    } else {
        mig.iter().sum::<f64>() / nf as f64
    };
    Disentanglement {
        factors: GRAMMAR.factors.iter().map(|f| f.name.to_owned()).collect(),
        sentences: n,
        factor_entropy,
        bit_entropy,
        mi,
        determined,
        mig,
        mig_mean,
        best_bit,
        best_determined,
        bit_factor,
    }
}

/// What single-bit flips do to decodings, parsed with the grammar.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct FlipTally {
    /// Flips tried (sentences × bits).
    pub flips: usize,
    /// Flips whose decoding differs from the unflipped code's decoding.
    pub changed: usize,
    /// Of those, flips whose decoding parses and differs from the unflipped decoding's parse in
    /// exactly one factor.
    pub one_factor: usize,
    /// Of those, flips whose decoding parses and differs in two or more factors.
    pub several_factors: usize,
    /// Of those, flips whose decoding (or the unflipped decoding) does not parse.
    pub unparsed: usize,
    /// Per bit: flips that changed the decoding, and how many of those changed exactly one
    /// factor, per factor (`per_bit[bit][factor]`).
    pub per_bit_changed: Vec<usize>,
    pub per_bit_factor: Vec<Vec<usize>>,
}

impl FlipTally {
    /// An empty tally for codes of `dim` bits.
    pub fn new(dim: usize) -> Self {
        FlipTally {
            per_bit_changed: vec![0; dim],
            per_bit_factor: vec![vec![0; GRAMMAR.len()]; dim],
            ..FlipTally::default()
        }
    }

    /// Records bit `bit`'s flip: the decoding before and after.
    pub fn record(&mut self, bit: usize, base: &str, flipped: &str) {
        self.flips += 1;
        if base == flipped {
            return;
        }
        self.changed += 1;
        self.per_bit_changed[bit] += 1;
        match (parse(base), parse(flipped)) {
            (Some(a), Some(b)) => {
                let differing: Vec<usize> = (0..a.len()).filter(|&f| a[f] != b[f]).collect();
                match differing.as_slice() {
                    // Same parse from different text cannot happen with this grammar (one text
                    // per tuple); count it as unparsed rather than as a change.
                    [] => self.unparsed += 1,
                    [f] => {
                        self.one_factor += 1;
                        self.per_bit_factor[bit][*f] += 1;
                    }
                    _ => self.several_factors += 1,
                }
            }
            _ => self.unparsed += 1,
        }
    }

    /// The share of decoding-changing flips that change exactly one factor (0 when none
    /// changed the decoding).
    pub fn one_factor_share(&self) -> f64 {
        if self.changed == 0 {
            0.0
        } else {
            self.one_factor as f64 / self.changed as f64
        }
    }
}

/// Disentanglement of a model's codes on a factors corpus: the `factors` block of
/// `eval --json` and the bit ↔ factor table of the Stats tab.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FactorReport {
    /// How a code becomes bits: `"rounded bits"` (binary kinds) or `"μ above its median"`
    /// (gaussian; flips move μ by 2 standard deviations of μ over the split, across the
    /// median).
    pub bits_from: String,
    pub table: Disentanglement,
    /// Sentences whose single-bit flips were decoded.
    pub flip_sentences: usize,
    pub flips: FlipTally,
    /// [`FlipTally::one_factor_share`].
    pub one_factor_share: f64,
    /// Share of those sentences whose own code decodes to the sentence exactly.
    pub exact_reconstruction: f64,
}

/// Measures [`FactorReport`] for `sentences` (token ids) with factor values `values` (one per
/// sentence): the table over all of them, the flips over the first `flip_sentences`.
pub fn measure(
    model: &crate::model::SeqAutoencoder,
    vocab: &crate::vocab::Vocab,
    sentences: &[Vec<u32>],
    values: &[Values],
    flip_sentences: usize,
) -> Result<FactorReport> {
    ensure!(
        sentences.len() == values.len(),
        "{} sentences but {} factor labels",
        sentences.len(),
        values.len()
    );
    let binary = model.kind().is_binary();
    let (_, codes) = crate::model::bulk::all_codes(model, sentences)?;
    let dim = codes.first().map_or(0, Vec::len);
    // Gaussian codes: threshold every dimension at its median over the split.
    let (thresholds, spread) = if binary {
        (vec![0.5; dim], vec![0.0; dim])
    } else {
        let mut medians = Vec::with_capacity(dim);
        let mut spreads = Vec::with_capacity(dim);
        for d in 0..dim {
            let mut column: Vec<f32> = codes.iter().map(|c| c[d]).collect();
            column.sort_by(f32::total_cmp);
            medians.push(column[column.len() / 2]);
            let mean = column.iter().map(|&x| x as f64).sum::<f64>() / column.len() as f64;
            let var = column
                .iter()
                .map(|&x| (x as f64 - mean).powi(2))
                .sum::<f64>()
                / column.len() as f64;
            spreads.push(2.0 * var.sqrt() as f32);
        }
        (medians, spreads)
    };
    let bits: Vec<Vec<bool>> = codes
        .iter()
        .map(|c| c.iter().zip(&thresholds).map(|(&x, &t)| x >= t).collect())
        .collect();
    let table = mutual_information(&bits, values);

    let n = flip_sentences.min(sentences.len());
    let base = crate::model::bulk::greedy_texts(model, vocab, &codes[..n], None)?;
    let exact = (0..n)
        .filter(|&i| base[i] == vocab.decode(&sentences[i]))
        .count();
    let mut flips = FlipTally::new(dim);
    for bit in 0..dim {
        let flipped: Vec<Vec<f32>> = codes[..n]
            .iter()
            .map(|c| {
                let mut c = c.clone();
                c[bit] = if binary {
                    1.0 - c[bit]
                } else if c[bit] >= thresholds[bit] {
                    c[bit] - spread[bit]
                } else {
                    c[bit] + spread[bit]
                };
                c
            })
            .collect();
        let decoded = crate::model::bulk::greedy_texts(model, vocab, &flipped, None)?;
        for (b, d) in base.iter().zip(&decoded) {
            flips.record(bit, b, d);
        }
    }
    Ok(FactorReport {
        bits_from: if binary {
            "rounded bits".into()
        } else {
            "μ above its median".into()
        },
        table,
        flip_sentences: n,
        one_factor_share: flips.one_factor_share(),
        flips,
        exact_reconstruction: exact as f64 / n.max(1) as f64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sentence_parses_back() {
        let spec = CorpusSpec {
            train: 500,
            valid: 10,
            test: 10,
            seed: 3,
        };
        for split in draw(&spec).unwrap() {
            for v in split {
                assert_eq!(parse(&GRAMMAR.sentence(&v)), Some(v));
                assert_eq!(parse_label(&label_of(&v)), Some(v));
            }
        }
    }
}
