//! Retrieval evaluation of binary codes: precision@k where an entry is relevant to a query
//! when they share a label, and the `eval-retrieval` experiment that compares LSH, each NASH
//! variant and binary sequence autoencoders (or any saved binary checkpoint) at several widths.
//!
//! The protocol is the semantic-hashing literature's: the test split queries the training
//! split, both encoded by the same model; the top k by Hamming distance are retrieved (ties by
//! database order, see [`crate::hamming`]) and precision is averaged over queries.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, Result};
use candle_core::Device;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rayon::prelude::*;
use serde::Serialize;

use crate::bow::train::{fit_labelled, FitOptions};
use crate::bow::{bag_of_words, document_frequencies, encode_bags, train_vocab, Bag};
use crate::coder::Coder;
use crate::corpus::{Corpus, Example, LoadOptions, Split};
use crate::hamming::{pack, PackedCodes};
use crate::model::bow::{idf, BowInput, NashNoise};
use crate::model::{LshConfig, ModelConfig, NashConfig};
use crate::train::KlAnneal;

/// Mean over queries of |top-k ∩ same label| / |top-k|.
pub fn precision_at_k(
    database: &PackedCodes,
    database_labels: &[u32],
    queries: &[Vec<u64>],
    query_labels: &[u32],
    k: usize,
) -> f64 {
    assert_eq!(database.len(), database_labels.len());
    assert_eq!(queries.len(), query_labels.len());
    if queries.is_empty() || database.is_empty() || k == 0 {
        return 0.0;
    }
    let per_query: Vec<f64> = queries
        .par_iter()
        .zip(query_labels)
        .map(|(q, &label)| {
            let hits = database.top_k(q, k);
            let relevant = hits
                .iter()
                .filter(|h| database_labels[h.index] == label)
                .count();
            relevant as f64 / hits.len() as f64
        })
        .collect();
    per_query.iter().sum::<f64>() / per_query.len() as f64
}

/// Precision@k of float codes (0.0 / 1.0) with string labels.
pub fn precision_of_codes(
    database: &[Vec<f32>],
    database_labels: &[u32],
    queries: &[Vec<f32>],
    query_labels: &[u32],
    k: usize,
) -> f64 {
    let bits = database.first().map_or(0, Vec::len);
    let db = PackedCodes::from_codes(bits, database.iter().map(Vec::as_slice));
    let q: Vec<Vec<u64>> = queries.iter().map(|c| pack(c)).collect();
    precision_at_k(&db, database_labels, &q, query_labels, k)
}

/// The precision of a ranking that ignores the codes: Σ over queries of the share of the
/// database with the query's label (what random codes score on average).
pub fn chance_precision(database_labels: &[u32], query_labels: &[u32]) -> f64 {
    let mut counts: BTreeMap<u32, usize> = BTreeMap::new();
    for &l in database_labels {
        *counts.entry(l).or_default() += 1;
    }
    let n = database_labels.len().max(1) as f64;
    query_labels
        .iter()
        .map(|l| *counts.get(l).unwrap_or(&0) as f64 / n)
        .sum::<f64>()
        / query_labels.len().max(1) as f64
}

/// Precision@k of exact cosine similarity between TF-IDF vectors (idf from `idf`, raw
/// counts as term frequencies): the real-valued ranking that bag-of-words hash codes
/// approximate, printed as a reference line of the table (not a bound: learned codes can rank
/// better). Ties (notably all the entries that share
/// no word with the query) are broken by database position, as for codes.
pub fn tfidf_cosine_precision(
    database: &[Bag],
    database_labels: &[u32],
    queries: &[Bag],
    query_labels: &[u32],
    idf: &[f32],
    k: usize,
) -> f64 {
    assert_eq!(database.len(), database_labels.len());
    assert_eq!(queries.len(), query_labels.len());
    if queries.is_empty() || database.is_empty() || k == 0 {
        return 0.0;
    }
    let weigh = |bag: &Bag| -> Vec<(u32, f32)> {
        let mut v: Vec<(u32, f32)> = bag
            .iter()
            .map(|&(w, c)| (w, c * idf.get(w as usize).copied().unwrap_or(0.0)))
            .collect();
        let norm = v.iter().map(|&(_, x)| x * x).sum::<f32>().sqrt();
        if norm > 0.0 {
            v.iter_mut().for_each(|(_, x)| *x /= norm);
        }
        v
    };
    // Inverted index: for each word, the database entries containing it and their weight.
    let mut postings: Vec<Vec<(u32, f32)>> = vec![Vec::new(); idf.len()];
    for (d, bag) in database.iter().enumerate() {
        for (w, x) in weigh(bag) {
            if let Some(list) = postings.get_mut(w as usize) {
                list.push((d as u32, x));
            }
        }
    }
    let k = k.min(database.len());
    let per_query: Vec<f64> = queries
        .par_iter()
        .zip(query_labels)
        .map(|(bag, &label)| {
            let mut score = vec![0f32; database.len()];
            for (w, x) in weigh(bag) {
                for &(d, y) in postings.get(w as usize).map_or(&[][..], Vec::as_slice) {
                    score[d as usize] += x * y;
                }
            }
            let mut order: Vec<u32> = (0..database.len() as u32).collect();
            let by_score = |a: &u32, b: &u32| {
                score[*b as usize]
                    .total_cmp(&score[*a as usize])
                    .then(a.cmp(b))
            };
            order.select_nth_unstable_by(k - 1, by_score);
            let relevant = order[..k]
                .iter()
                .filter(|&&d| database_labels[d as usize] == label)
                .count();
            relevant as f64 / k as f64
        })
        .collect();
    per_query.iter().sum::<f64>() / per_query.len() as f64
}

/// A NASH variant of the experiment: its training noise, and whether it is the supervised
/// variant (a classifier from the code to the labels joins the loss with weight α).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct NashVariant {
    pub noise: NashNoise,
    pub supervised: bool,
}

impl std::str::FromStr for NashVariant {
    type Err = String;
    /// `none`, `fixed` or `learned`, optionally suffixed `-s` for the supervised variant.
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let (name, supervised) = match s.strip_suffix("-s") {
            Some(n) => (n, true),
            None => (s, false),
        };
        let noise = match name {
            "none" => NashNoise::None,
            "fixed" => NashNoise::Fixed { std: 0.0 },
            "learned" => NashNoise::Learned,
            _ => {
                return Err(format!(
                    "unknown nash variant `{s}` (expected none, fixed or learned, optionally \
                     with -s for the supervised variant)"
                ))
            }
        };
        Ok(Self { noise, supervised })
    }
}

/// Labelled texts of one side of the evaluation.
#[derive(Clone, Debug, Default)]
pub struct LabelledSet {
    pub texts: Vec<String>,
    pub labels: Vec<u32>,
}

/// The query (test) and database (train) sets of a labelled corpus, label names shared.
#[derive(Clone, Debug, Default)]
pub struct RetrievalData {
    pub database: LabelledSet,
    pub queries: LabelledSet,
    pub label_names: Vec<String>,
    pub corpus: String,
}

impl RetrievalData {
    /// Labelled examples of the train and test splits in a seeded random order; unlabelled
    /// ones are left out. Either side may be cut to its first `max` (a random subset).
    pub fn from_corpus(
        corpus: &Corpus,
        max_database: Option<usize>,
        max_queries: Option<usize>,
        seed: u64,
    ) -> Result<Self> {
        let names: Vec<String> = corpus.labels();
        if names.is_empty() {
            bail!(
                "corpus `{}` has no labels; retrieval needs label<TAB>text lines",
                corpus.name
            );
        }
        let id = |l: &str| {
            names
                .binary_search_by(|n| n.as_str().cmp(l))
                .expect("known") as u32
        };
        let mut rng = StdRng::seed_from_u64(seed);
        let mut take = |examples: &[Example], max: Option<usize>| -> LabelledSet {
            let mut picked: Vec<&Example> = examples.iter().filter(|e| e.label.is_some()).collect();
            // Always shuffled: search breaks distance ties by position, and corpora are often
            // sorted by label, which would make ties favour some labels over others.
            picked.shuffle(&mut rng);
            if let Some(max) = max {
                picked.truncate(max);
            }
            LabelledSet {
                texts: picked.iter().map(|e| e.text.clone()).collect(),
                labels: picked
                    .iter()
                    .map(|e| id(e.label.as_deref().expect("filtered")))
                    .collect(),
            }
        };
        let database = take(corpus.split(Split::Train), max_database);
        let queries = take(corpus.split(Split::Test), max_queries);
        if database.texts.is_empty() || queries.texts.is_empty() {
            bail!(
                "corpus `{}` needs labelled train and test examples",
                corpus.name
            );
        }
        Ok(Self {
            database,
            queries,
            label_names: names,
            corpus: corpus.name.clone(),
        })
    }
}

impl RetrievalData {
    /// Keeps only the labels that occur in the database or the queries (renumbered in the
    /// same order): a classifier over them needs no class for the corpus's other labels.
    /// Nothing changes when every label occurs.
    pub fn keep_used_labels(&mut self) {
        let mut used = vec![false; self.label_names.len()];
        for &l in self.database.labels.iter().chain(&self.queries.labels) {
            used[l as usize] = true;
        }
        if used.iter().all(|&u| u) {
            return;
        }
        let mut new_id = vec![u32::MAX; used.len()];
        let mut names = Vec::new();
        for (i, name) in std::mem::take(&mut self.label_names)
            .into_iter()
            .enumerate()
        {
            if used[i] {
                new_id[i] = names.len() as u32;
                names.push(name);
            }
        }
        self.label_names = names;
        for l in self
            .database
            .labels
            .iter_mut()
            .chain(self.queries.labels.iter_mut())
        {
            *l = new_id[*l as usize];
        }
    }
}

/// Settings of the `eval-retrieval` experiment.
#[derive(Clone, Debug, Serialize)]
pub struct RetrievalOptions {
    pub corpus: String,
    pub bits: Vec<usize>,
    pub k: usize,
    /// NASH training: steps, batch, width, learning rate, KL weight per model.
    pub steps: u64,
    pub batch_size: usize,
    pub hidden_dim: usize,
    pub lr: f64,
    pub kl_weight: f64,
    pub kl_anneal: KlAnneal,
    pub kl_anneal_steps: u64,
    /// σ of the fixed-noise variant.
    pub noise_std: f64,
    pub vocab_size: usize,
    pub min_frequency: u64,
    /// Keep stop words and punctuation in the bag-of-words vocabulary.
    pub keep_stop_words: bool,
    pub seed: u64,
    pub max_database: Option<usize>,
    pub max_queries: Option<usize>,
    /// NASH variants to train (default: none, fixed, learned).
    pub variants: Vec<NashVariant>,
    /// Weight α of the supervised variants' label term.
    pub supervised_weight: f64,
    /// Binary checkpoints (sequence autoencoders, saved nash or lsh models) to add as rows,
    /// each at its own width.
    pub checkpoints: Vec<PathBuf>,
}

impl Default for RetrievalOptions {
    fn default() -> Self {
        Self {
            corpus: "wordnet".into(),
            bits: vec![8, 16, 32, 64, 128],
            k: 100,
            steps: 2000,
            batch_size: 64,
            hidden_dim: 256,
            lr: 1e-3,
            kl_weight: 0.01,
            kl_anneal: KlAnneal::None,
            kl_anneal_steps: 0,
            noise_std: 0.5,
            vocab_size: 10000,
            min_frequency: 2,
            keep_stop_words: false,
            seed: 42,
            max_database: None,
            max_queries: None,
            variants: ["none", "fixed", "learned"]
                .iter()
                .map(|v| v.parse().expect("known variant"))
                .collect(),
            supervised_weight: 1.0,
            checkpoints: Vec::new(),
        }
    }
}

/// One method's precision at each width it was measured at.
#[derive(Clone, Debug, Serialize)]
pub struct RetrievalRow {
    pub method: String,
    pub precision: BTreeMap<usize, f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct RetrievalTable {
    pub corpus: String,
    pub k: usize,
    pub bits: Vec<usize>,
    pub database: usize,
    pub queries: usize,
    /// What a ranking ignoring the codes scores.
    pub chance: f64,
    /// Exact TF-IDF cosine ranking (real-valued, no codes): the reference hashing bags of words
    /// approximates (not a bound).
    pub tfidf_cosine: f64,
    pub rows: Vec<RetrievalRow>,
    pub options: RetrievalOptions,
}

impl RetrievalTable {
    /// The table as aligned text; widths a method was not measured at show "–".
    /// The corpus name and row names (a checkpoint's file name) are
    /// [`shown`](crate::printable::shown), never obeyed.
    pub fn render(&self) -> String {
        use crate::printable::{shown, Shown};
        let width = self
            .rows
            .iter()
            .map(|r| shown(&r.method).chars().count())
            .max()
            .unwrap_or(6)
            .max(6);
        let mut s = format!(
            "precision@{} on `{}`: {} test queries against {} training entries (relevant = same label)\n",
            self.k,
            Shown(&self.corpus),
            self.queries,
            self.database
        );
        s += &format!("{:<width$}", "method");
        for b in &self.bits {
            s += &format!(" {:>7}", format!("{b} bits"));
        }
        s.push('\n');
        for row in &self.rows {
            s += &format!("{:<width$}", shown(&row.method));
            for b in &self.bits {
                match row.precision.get(b) {
                    Some(p) => s += &format!(" {:>7.4}", p),
                    None => s += &format!(" {:>7}", "–"),
                }
            }
            s.push('\n');
        }
        s += &format!(
            "{:<width$} {:>7.4} (exact cosine of real-valued TF-IDF vectors: a reference, not a bound)\n",
            "tf-idf cosine", self.tfidf_cosine
        );
        s += &format!(
            "{:<width$} {:>7.4} (label frequencies alone)\n",
            "chance", self.chance
        );
        if let Some(lsh) = self.rows.iter().find(|r| r.method == "lsh") {
            for row in self.rows.iter().filter(|r| r.method.starts_with("nash")) {
                let ratios: Vec<String> = self
                    .bits
                    .iter()
                    .filter_map(|b| {
                        let (p, l) = (row.precision.get(b)?, lsh.precision.get(b)?);
                        (*l > 0.0).then(|| format!("{:.2}× at {b}", p / l))
                    })
                    .collect();
                if !ratios.is_empty() {
                    s += &format!("{} vs lsh: {}\n", Shown(&row.method), ratios.join(", "));
                }
            }
        }
        s
    }
}

/// A NASH variant's row name.
pub fn variant_name(variant: &NashVariant) -> String {
    let base = match variant.noise {
        NashNoise::None => "nash".to_string(),
        NashNoise::Fixed { std } => format!("nash + noise σ={std}"),
        NashNoise::Learned => "nash + learned noise σ(x)".into(),
    };
    if variant.supervised {
        format!("{base}, supervised")
    } else {
        base
    }
}

/// `0.0555 at 64 bits, 0.0561 at 128 bits`: a row's precisions for a progress line.
pub fn precision_list(precision: &BTreeMap<usize, f64>) -> String {
    precision
        .iter()
        .map(|(b, p)| format!("{p:.4} at {b} bits"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Runs the experiment: random codes, LSH and every NASH variant at every width (trained
/// in-process), plus one row per given checkpoint. `progress` receives one line per result.
pub fn run(opts: &RetrievalOptions, progress: &mut dyn FnMut(&str)) -> Result<RetrievalTable> {
    if opts.bits.is_empty() || opts.bits.contains(&0) {
        bail!("--bits needs positive widths");
    }
    let dev = Device::Cpu;
    let corpus = Corpus::load(
        &opts.corpus,
        &LoadOptions {
            min_words: 1,
            max_words: usize::MAX,
        },
    )?;
    let data = RetrievalData::from_corpus(&corpus, opts.max_database, opts.max_queries, opts.seed)?;
    if opts.variants.iter().any(|v| v.supervised) {
        // A supervised variant's head is hidden × labels: refused now, not after the rows
        // before it (or as an abort when it is allocated).
        let widest = opts.bits.iter().copied().max().unwrap_or(0);
        crate::probe::check_classifier_size(widest, opts.hidden_dim, data.label_names.len())?;
    }
    let (db_labels, q_labels) = (&data.database.labels, &data.queries.labels);
    let chance = chance_precision(db_labels, q_labels);
    progress(&format!(
        "{} database entries, {} queries, {} labels; chance precision {chance:.4}",
        db_labels.len(),
        q_labels.len(),
        data.label_names.len()
    ));
    let mut rows = Vec::new();
    let measure = |db: &[Vec<f32>], q: &[Vec<f32>]| -> f64 {
        precision_of_codes(db, db_labels, q, q_labels, opts.k)
    };

    let mut random = RetrievalRow {
        method: "random codes".into(),
        precision: BTreeMap::new(),
    };
    let mut rng = StdRng::seed_from_u64(opts.seed);
    for &bits in &opts.bits {
        let mut draw = |n: usize| -> Vec<Vec<f32>> {
            (0..n)
                .map(|_| (0..bits).map(|_| rng.random_range(0..2) as f32).collect())
                .collect()
        };
        let (db, q) = (draw(db_labels.len()), draw(q_labels.len()));
        random.precision.insert(bits, measure(&db, &q));
    }
    progress(&format!(
        "random codes: {}",
        precision_list(&random.precision)
    ));
    rows.push(random);

    // One vocabulary and set of bags for every bag-of-words model, from the training split
    // (all of it, even when the database is subsampled).
    let vocab = train_vocab(
        corpus.train.iter().map(|e| e.text.as_str()),
        opts.vocab_size,
        opts.min_frequency,
        opts.keep_stop_words,
    )?;
    let train_bags: Vec<Bag> = corpus
        .train
        .iter()
        .map(|e| bag_of_words(&vocab, &e.text))
        .collect();
    let db_bags: Vec<Bag> = data
        .database
        .texts
        .iter()
        .map(|t| bag_of_words(&vocab, t))
        .collect();
    let q_bags: Vec<Bag> = data
        .queries
        .texts
        .iter()
        .map(|t| bag_of_words(&vocab, t))
        .collect();
    let df = document_frequencies(&train_bags, vocab.len());
    let tfidf_cosine = tfidf_cosine_precision(
        &db_bags,
        db_labels,
        &q_bags,
        q_labels,
        &idf(&df, train_bags.len()),
        opts.k,
    );
    progress(&format!("tf-idf cosine (exact): {tfidf_cosine:.4}"));
    // Label ids of the labelled training documents, for the supervised variants.
    let label_id = |l: &str| {
        data.label_names
            .binary_search_by(|n| n.as_str().cmp(l))
            .ok()
    };
    let (labelled_bags, train_labels): (Vec<Bag>, Vec<u32>) = corpus
        .train
        .iter()
        .zip(&train_bags)
        .filter_map(|(e, bag)| Some((bag.clone(), label_id(e.label.as_deref()?)? as u32)))
        .unzip();
    let fit_opts = FitOptions {
        steps: opts.steps,
        batch_size: opts.batch_size,
        lr: opts.lr,
        clip_norm: 5.0,
        kl_weight: opts.kl_weight,
        kl_anneal: opts.kl_anneal,
        kl_anneal_steps: opts.kl_anneal_steps,
        seed: opts.seed,
        supervised_weight: opts.supervised_weight,
    };
    let mut bow_row = |method: String,
                       supervised: bool,
                       config: &dyn Fn(usize) -> ModelConfig|
     -> Result<RetrievalRow> {
        let mut row = RetrievalRow {
            method,
            precision: BTreeMap::new(),
        };
        for &bits in &opts.bits {
            let started = std::time::Instant::now();
            let built = if supervised {
                fit_labelled(
                    &config(bits),
                    &labelled_bags,
                    Some(&train_labels),
                    &fit_opts,
                    &dev,
                )?
            } else {
                fit_labelled(&config(bits), &train_bags, None, &fit_opts, &dev)?
            };
            let to_bits = |loc: Vec<Vec<f32>>| -> Vec<Vec<f32>> {
                loc.into_iter()
                    .map(|l| {
                        l.iter()
                            .map(|&x| if x >= 0.0 { 1.0 } else { 0.0 })
                            .collect()
                    })
                    .collect()
            };
            let db = to_bits(encode_bags(&built.model, &db_bags)?);
            let q = to_bits(encode_bags(&built.model, &q_bags)?);
            let p = measure(&db, &q);
            progress(&format!(
                "{} {bits} bits: {p:.4} ({:.0} s)",
                row.method,
                started.elapsed().as_secs_f64()
            ));
            row.precision.insert(bits, p);
        }
        Ok(row)
    };
    let v = vocab.len();
    rows.push(bow_row("lsh".into(), false, &|bits| {
        ModelConfig::Lsh(LshConfig {
            vocab_size: v,
            bits,
            seed: opts.seed,
        })
    })?);
    let labels = data.label_names.len();
    for variant in &opts.variants {
        let noise = match variant.noise {
            NashNoise::Fixed { .. } => NashNoise::Fixed {
                std: opts.noise_std,
            },
            n => n,
        };
        let name = variant_name(&NashVariant { noise, ..*variant });
        rows.push(bow_row(name, variant.supervised, &|bits| {
            ModelConfig::Nash(NashConfig {
                vocab_size: v,
                hidden_dim: opts.hidden_dim,
                latent_dim: bits,
                input: BowInput::Tfidf,
                noise,
                labels: if variant.supervised { labels } else { 0 },
            })
        })?);
    }

    for path in &opts.checkpoints {
        let coder = Coder::load(path, &dev)?;
        if !coder.is_binary() {
            bail!(
                "`{}` is not a binary model ({})",
                path.display(),
                coder.config().describe()
            );
        }
        let started = std::time::Instant::now();
        fn texts(s: &LabelledSet) -> Vec<&str> {
            s.texts.iter().map(String::as_str).collect()
        }
        let db = coder.codes(&texts(&data.database), &mut |_| {})?;
        let q = coder.codes(&texts(&data.queries), &mut |_| {})?;
        let bits = coder.latent_dim();
        let p = measure(&db, &q);
        let kind = coder.kind_name();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let method = format!("{kind} ({name})");
        progress(&format!(
            "{method} {bits} bits: {p:.4} ({:.0} s)",
            started.elapsed().as_secs_f64()
        ));
        match rows.iter_mut().find(|r| r.method == method) {
            Some(row) => {
                row.precision.insert(bits, p);
            }
            None => rows.push(RetrievalRow {
                method,
                precision: BTreeMap::from([(bits, p)]),
            }),
        }
    }
    let mut bits = opts.bits.clone();
    for r in &rows {
        bits.extend(r.precision.keys());
    }
    bits.sort_unstable();
    bits.dedup();
    Ok(RetrievalTable {
        corpus: data.corpus.clone(),
        k: opts.k,
        bits,
        database: db_labels.len(),
        queries: q_labels.len(),
        chance,
        tfidf_cosine,
        rows,
        options: opts.clone(),
    })
}

#[cfg(test)]
mod tests {

    #[test]
    fn precisions_print_as_a_plain_list() {
        let p: BTreeMap<usize, f64> = [(64, 0.05551), (8, 0.0412)].into_iter().collect();
        assert_eq!(precision_list(&p), "0.0412 at 8 bits, 0.0555 at 64 bits");
    }
    use super::*;

    #[test]
    fn precision_at_k_on_a_hand_built_example() {
        // Database: four 4-bit codes, labels 0 0 1 1.
        let db = vec![
            vec![0f32, 0.0, 0.0, 0.0],
            vec![0.0, 0.0, 0.0, 1.0],
            vec![1.0, 1.0, 1.0, 1.0],
            vec![1.0, 1.0, 1.0, 0.0],
        ];
        let db_labels = [0, 0, 1, 1];
        // Query A (label 0) = 0000: ranks 0 (d0), 1 (d1), 3 (d3), 2 (d4).
        // Query B (label 1) = 0011: ranks 1 (d1), then 0 and 2 (d2; 0 first), 3 (d3).
        let queries = vec![vec![0f32, 0.0, 0.0, 0.0], vec![0.0, 0.0, 1.0, 1.0]];
        let q_labels = [0, 1];
        // k = 1: A hits 0 (relevant), B hits 1 (not): (1 + 0) / 2.
        assert_eq!(
            precision_of_codes(&db, &db_labels, &queries, &q_labels, 1),
            0.5
        );
        // k = 2: A {0, 1} → 1; B {1, 0} → 0: 0.5.
        assert_eq!(
            precision_of_codes(&db, &db_labels, &queries, &q_labels, 2),
            0.5
        );
        // k = 3: A {0, 1, 3} → 2/3; B {1, 0, 2} → 1/3: 0.5.
        let p3 = precision_of_codes(&db, &db_labels, &queries, &q_labels, 3);
        assert!((p3 - 0.5).abs() < 1e-12);
        // k beyond the database: every entry, 2 of 4 relevant for both.
        assert_eq!(
            precision_of_codes(&db, &db_labels, &queries, &q_labels, 10),
            0.5
        );
        // One query only, label 1, code 1111: {2, 3} → 1.
        let p = precision_of_codes(&db, &db_labels, &[vec![1.0; 4]], &[1], 2);
        assert_eq!(p, 1.0);
        assert_eq!(chance_precision(&db_labels, &q_labels), 0.5);
    }

    #[test]
    fn tfidf_cosine_ranks_by_shared_weighted_words() {
        // Words 0..4, idf all 1 except word 3 (rare, idf 3). Labels 0 0 1 1.
        let idf = [1.0f32, 1.0, 1.0, 3.0];
        let db: Vec<Bag> = vec![
            vec![(0, 1.0), (1, 1.0)],
            vec![(0, 1.0), (3, 1.0)],
            vec![(2, 1.0)],
            vec![(2, 1.0), (3, 1.0)],
        ];
        let db_labels = [0, 0, 1, 1];
        // Query (label 1) = {2, 3}: cosine 1 with d3, then d1 (shares the heavy word 3:
        // 9/√10/√10 = 0.9) before d2 (1/√10 ≈ 0.32) and d0 (0).
        let q: Vec<Bag> = vec![vec![(2, 1.0), (3, 1.0)]];
        assert_eq!(
            tfidf_cosine_precision(&db, &db_labels, &q, &[1], &idf, 1),
            1.0
        );
        assert_eq!(
            tfidf_cosine_precision(&db, &db_labels, &q, &[1], &idf, 2),
            0.5
        );
        let p3 = tfidf_cosine_precision(&db, &db_labels, &q, &[1], &idf, 3);
        assert!((p3 - 2.0 / 3.0).abs() < 1e-12, "{p3}");
        // A query sharing no word ties everything at 0: database order decides.
        let none: Vec<Bag> = vec![vec![]];
        assert_eq!(
            tfidf_cosine_precision(&db, &db_labels, &none, &[0], &idf, 2),
            1.0
        );
        assert_eq!(
            tfidf_cosine_precision(&db, &db_labels, &none, &[1], &idf, 2),
            0.0
        );
    }

    #[test]
    fn nash_variants_parse_with_the_supervised_suffix() {
        let v: NashVariant = "learned-s".parse().unwrap();
        assert_eq!(v.noise, NashNoise::Learned);
        assert!(v.supervised);
        let v: NashVariant = "none".parse().unwrap();
        assert_eq!((v.noise, v.supervised), (NashNoise::None, false));
        assert!(matches!(
            "fixed".parse::<NashVariant>().unwrap().noise,
            NashNoise::Fixed { .. }
        ));
        let err = "loud".parse::<NashVariant>().unwrap_err();
        assert!(err.contains("loud"), "{err}");
        assert_eq!(variant_name(&"none-s".parse().unwrap()), "nash, supervised");
    }
}
