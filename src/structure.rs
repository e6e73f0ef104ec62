//! The structure of a latent space at the level of sentences: clusters of a corpus's codes with
//! automatic labels, medoids and decoded centres (judged against gold labels beside a TF-IDF
//! k-means baseline), attribute vectors between two labels, and analogies.
//!
//! Works for every model with a code: sequence autoencoders (decodings are greedy sentences),
//! NVDM and NASH (decodings are the decoder's most probable words) and LSH (no decoder). The
//! command line and the explorer both reach the model through a [`Coder`].
//!
//! # Rules
//!
//! * **Attribute vector** from label A to label B: the difference of the two labels' mean codes,
//!   d = mean(B) − mean(A). Continuous codes move by `strength · d`. Binary codes have no
//!   fractional steps: the `strength` bits with the largest |d| are *set to B's side* (1 where
//!   d > 0, else 0), so a bit already on B's side stays and the code changes in at most
//!   `strength` bits.
//! * **Analogy** A : B :: C : ?  is z(C) + z(B) − z(A). For binary codes the sum is taken per
//!   bit and rounded at ½: where A and B agree the bit is C's, where they differ it is B's
//!   (C + 1 ≥ 1 when B = 1, C − 1 ≤ 0 when B = 0). Unlike C xor (A xor B) this never moves a
//!   bit of C away from B's value.

use std::collections::BTreeMap;

use anyhow::{bail, Result};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::Serialize;

use crate::bow::{bag_of_words, document_frequencies, train_vocab};
use crate::cluster::{
    self, agreement, distinctive_words, hamming_medoid, label_of, Agreement, ClusterMethod,
    ClusterOptions, Clustering, DistinctiveWord,
};
use crate::coder::{Coder, FeatureKind};
use crate::corpus::{Corpus, Split};
use crate::hamming::PackedCodes;
use crate::index::{ContinuousIndex, CorpusIndex};

/// Words shown for a bag-of-words model's "decoding".
pub const DECODED_WORDS: usize = 8;

/// Texts of a corpus with their codes and gold labels.
#[derive(Clone, Debug, Default)]
pub struct CodedCorpus {
    pub corpus: String,
    /// The split(s) the texts come from, e.g. `train`.
    pub split: String,
    /// Normalized texts.
    pub texts: Vec<String>,
    /// Per text, an index into `label_names`.
    pub labels: Vec<Option<u32>>,
    pub label_names: Vec<String>,
    /// Bits (0.0 / 1.0) or μ, one per text.
    pub codes: Vec<Vec<f32>>,
    pub binary: bool,
}

/// Indices of a seeded random subset of `n` items of size at most `max`, in increasing order.
pub fn subset(n: usize, max: Option<usize>, seed: u64) -> Vec<usize> {
    let mut all: Vec<usize> = (0..n).collect();
    if let Some(max) = max.filter(|&m| m < n) {
        all.shuffle(&mut StdRng::seed_from_u64(seed));
        all.truncate(max);
        all.sort_unstable();
    }
    all
}

impl CodedCorpus {
    /// Encodes a split of `corpus` (a seeded random subset of at most `max_entries` texts).
    pub fn encode(
        model: &Coder,
        corpus: &Corpus,
        split: Split,
        max_entries: Option<usize>,
        seed: u64,
        progress: &mut dyn FnMut(f64),
    ) -> Result<Self> {
        let examples = corpus.split(split);
        if examples.is_empty() {
            bail!("corpus `{}` has no {split} examples", corpus.name);
        }
        let picked: Vec<_> = subset(examples.len(), max_entries, seed)
            .into_iter()
            .map(|i| &examples[i])
            .collect();
        let label_names = corpus.labels();
        let texts: Vec<String> = picked.iter().map(|e| e.text.clone()).collect();
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let codes = model.features(&refs, FeatureKind::Codes, progress)?;
        Ok(Self {
            corpus: corpus.name.clone(),
            split: split.to_string(),
            labels: picked
                .iter()
                .map(|e| {
                    e.label
                        .as_deref()
                        .and_then(|l| label_names.binary_search_by(|n| n.as_str().cmp(l)).ok())
                        .map(|i| i as u32)
                })
                .collect(),
            label_names,
            texts,
            codes,
            binary: model.is_binary(),
        })
    }

    /// Encodes up to `max_per_label` examples (seeded random) of each of `labels` from a split.
    pub fn encode_labels(
        model: &Coder,
        corpus: &Corpus,
        split: Split,
        labels: &[&str],
        max_per_label: usize,
        seed: u64,
        progress: &mut dyn FnMut(f64),
    ) -> Result<Self> {
        let names = corpus.labels();
        if names.is_empty() {
            bail!(
                "corpus `{}` has no labels; attribute vectors need label<TAB>text lines",
                corpus.name
            );
        }
        for l in labels {
            if names.binary_search_by(|n| n.as_str().cmp(l)).is_err() {
                bail!(
                    "label `{l}` is not in corpus `{}`; its labels are: {}",
                    corpus.name,
                    names.join(", ")
                );
            }
        }
        let examples = corpus.split(split);
        let mut texts = Vec::new();
        let mut label_ids = Vec::new();
        for (i, l) in labels.iter().enumerate() {
            let of_label: Vec<&str> = examples
                .iter()
                .filter(|e| e.label.as_deref() == Some(*l))
                .map(|e| e.text.as_str())
                .collect();
            if of_label.is_empty() {
                bail!(
                    "corpus `{}` has no {split} examples labelled `{l}`",
                    corpus.name
                );
            }
            for j in subset(of_label.len(), Some(max_per_label), seed + i as u64) {
                texts.push(of_label[j].to_string());
                label_ids.push(Some(i as u32));
            }
        }
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let codes = model.features(&refs, FeatureKind::Codes, progress)?;
        Ok(Self {
            corpus: corpus.name.clone(),
            split: split.to_string(),
            texts,
            labels: label_ids,
            label_names: labels.iter().map(|s| s.to_string()).collect(),
            codes,
            binary: model.is_binary(),
        })
    }

    /// The entries of a Hamming index (binary codes) as a coded corpus.
    pub fn from_index(index: &CorpusIndex) -> Self {
        Self {
            corpus: index.meta.corpus.clone(),
            split: index.meta.splits.join("+"),
            texts: index.texts.clone(),
            labels: index.labels.clone(),
            label_names: index.label_names.clone(),
            codes: (0..index.len()).map(|i| index.code(i)).collect(),
            binary: true,
        }
    }

    /// The entries of a continuous index (μ, as the encoder gives it) as a coded corpus.
    pub fn from_continuous_index(index: &ContinuousIndex) -> Self {
        Self {
            corpus: index.meta.corpus.clone(),
            split: index.meta.splits.join("+"),
            texts: index.texts.clone(),
            labels: index.labels.clone(),
            label_names: index.label_names.clone(),
            codes: (0..index.len()).map(|i| index.mean(i).to_vec()).collect(),
            binary: false,
        }
    }

    /// A seeded random subset of at most `max` entries (all of them for `None`), the same
    /// entries [`CodedCorpus::encode`] picks from the same split with the same seed.
    pub fn subset(self, max: Option<usize>, seed: u64) -> Self {
        if max.is_none_or(|m| m >= self.len()) {
            return self;
        }
        let keep = subset(self.len(), max, seed);
        let pick = |v: &[Option<u32>]| keep.iter().map(|&i| v[i]).collect();
        Self {
            labels: pick(&self.labels),
            texts: keep.iter().map(|&i| self.texts[i].clone()).collect(),
            codes: keep.iter().map(|&i| self.codes[i].clone()).collect(),
            ..self
        }
    }

    pub fn len(&self) -> usize {
        self.texts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.texts.is_empty()
    }

    /// Whether any entry has a gold label.
    pub fn is_labelled(&self) -> bool {
        self.labels.iter().any(Option::is_some)
    }

    fn label_id(&self, name: &str) -> Result<u32> {
        match self.label_names.iter().position(|n| n == name) {
            Some(i) if self.labels.contains(&Some(i as u32)) => Ok(i as u32),
            _ if self.label_names.is_empty() => bail!(
                "corpus `{}` has no labels; attribute vectors need label<TAB>text lines",
                self.corpus
            ),
            _ => bail!(
                "label `{name}` has no entries in corpus `{}`; its labels are: {}",
                self.corpus,
                self.label_names.join(", ")
            ),
        }
    }

    /// The mean code of the entries labelled `name`, and how many there are.
    pub fn label_mean(&self, name: &str) -> Result<(Vec<f32>, usize)> {
        let id = self.label_id(name)?;
        let dim = self.codes.first().map_or(0, Vec::len);
        let mut mean = vec![0f64; dim];
        let mut count = 0usize;
        for (code, _) in self
            .codes
            .iter()
            .zip(&self.labels)
            .filter(|(_, l)| **l == Some(id))
        {
            count += 1;
            for (m, &v) in mean.iter_mut().zip(code) {
                *m += v as f64;
            }
        }
        Ok((
            mean.iter().map(|&m| (m / count as f64) as f32).collect(),
            count,
        ))
    }
}

/// A cluster's most frequent gold label and its share of the cluster's labelled entries.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GoldShare {
    pub label: String,
    pub share: f64,
}

/// One cluster of a report.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ClusterSummary {
    /// 0-based, clusters numbered by decreasing size.
    pub cluster: usize,
    pub size: usize,
    /// The first distinctive words joined: the automatic label.
    pub label: String,
    pub words: Vec<DistinctiveWord>,
    /// The member nearest all others (summed Hamming distance, or nearest the mean).
    pub medoid: usize,
    pub medoid_text: String,
    /// Binary: the per-bit majority of the members; continuous: their mean.
    pub center: Vec<f32>,
    /// The decoding of `center` (filled by [`ClusterReport::decode_centers`]).
    pub center_decoding: Option<String>,
    pub gold: Option<GoldShare>,
}

/// The agreement of the clusters with the gold labels, beside the TF-IDF baseline's.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GoldComparison {
    pub labels: usize,
    /// Entries with a gold label (the ones scored).
    pub labelled: usize,
    pub codes: Agreement,
    /// k-means with the same k and seed on L2-normalised TF-IDF vectors of the same texts.
    pub tfidf_kmeans: Agreement,
    /// Always answering one cluster: the purity floor.
    pub majority_purity: f64,
}

/// A clustering of a coded corpus, ready to print.
#[derive(Clone, Debug, Serialize)]
pub struct ClusterReport {
    pub corpus: String,
    pub split: String,
    pub entries: usize,
    pub binary: bool,
    pub method: ClusterMethod,
    pub options: ClusterOptions,
    pub iterations: usize,
    /// Summed distance of entries to their cluster's centre (Hamming, or squared Euclidean).
    pub cost: f64,
    pub clusters: Vec<ClusterSummary>,
    pub gold: Option<GoldComparison>,
    /// Each entry's cluster (numbered as `clusters`).
    #[serde(skip)]
    pub assignment: Vec<usize>,
}

/// Distinctive words listed per cluster.
const WORDS_PER_CLUSTER: usize = 8;

/// Clusters the codes of `data` with `method`, labels the clusters and, for a labelled corpus,
/// scores them and the TF-IDF baseline against the gold labels.
pub fn cluster_corpus(
    data: &CodedCorpus,
    method: ClusterMethod,
    opts: &ClusterOptions,
) -> Result<ClusterReport> {
    cluster_corpus_with_progress(data, method, opts, &mut |_| {})
}

/// Share of [`cluster_corpus_with_progress`]'s progress that the clustering itself takes on a
/// labelled corpus; the TF-IDF k-means baseline the gold scores compare with takes the rest
/// (about as long on WordNet's 124k definitions: 6 s and 5 s on two busy cores).
pub const CLUSTERING_SHARE: f64 = 0.55;

/// [`cluster_corpus`], telling `progress` the fraction done (0 to 1, never decreasing) after
/// each iteration of the clustering and, on a labelled corpus, of the TF-IDF baseline
/// ([`CLUSTERING_SHARE`] of it the clustering's).
pub fn cluster_corpus_with_progress(
    data: &CodedCorpus,
    method: ClusterMethod,
    opts: &ClusterOptions,
    progress: &mut dyn FnMut(f64),
) -> Result<ClusterReport> {
    if data.is_empty() {
        bail!("there is nothing to cluster");
    }
    if method.is_hamming() && !data.binary {
        bail!(
            "{} needs binary codes; this model's codes are continuous, use --method kmeans",
            method.name()
        );
    }
    let share = if data.is_labelled() {
        CLUSTERING_SHARE
    } else {
        1.0
    };
    let raw =
        run_method(data, method, opts, &mut |f| progress(f * share)).map_err(anyhow::Error::msg)?;
    // Number clusters by decreasing size (ties by first member) so cluster 1 is the largest.
    let sizes = raw.sizes();
    let mut order: Vec<usize> = (0..raw.k()).collect();
    let first = |c: usize| {
        raw.assignment
            .iter()
            .position(|&a| a == c)
            .unwrap_or(usize::MAX)
    };
    order.sort_by_key(|&c| (std::cmp::Reverse(sizes[c]), first(c)));
    let mut rank = vec![0; raw.k()];
    for (r, &c) in order.iter().enumerate() {
        rank[c] = r;
    }
    let assignment: Vec<usize> = raw.assignment.iter().map(|&c| rank[c]).collect();
    let k = raw.k();

    let texts: Vec<&str> = data.texts.iter().map(String::as_str).collect();
    let words = distinctive_words(&texts, &assignment, k, WORDS_PER_CLUSTER);
    let packed = data.binary.then(|| {
        PackedCodes::from_codes(data.codes[0].len(), data.codes.iter().map(Vec::as_slice))
    });
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); k];
    for (i, &c) in assignment.iter().enumerate() {
        members[c].push(i);
    }
    let clusters = (0..k)
        .map(|c| {
            let m = &members[c];
            let center = mean_code(data, m, data.binary);
            let medoid = match &packed {
                Some(p) => hamming_medoid(p, m).unwrap_or(0),
                None => nearest_to(data, m, &center),
            };
            ClusterSummary {
                cluster: c,
                size: m.len(),
                label: label_of(&words[c]),
                words: words[c].clone(),
                medoid,
                medoid_text: data.texts.get(medoid).cloned().unwrap_or_default(),
                center,
                center_decoding: None,
                gold: gold_share(data, m),
            }
        })
        .collect();
    progress(share);
    let gold = if data.is_labelled() {
        Some(compare_with_gold(data, &assignment, opts, &mut |f| {
            progress(share + (1.0 - share) * f)
        })?)
    } else {
        None
    };
    progress(1.0);
    Ok(ClusterReport {
        corpus: data.corpus.clone(),
        split: data.split.clone(),
        entries: data.len(),
        binary: data.binary,
        method,
        options: opts.clone(),
        iterations: raw.iterations,
        cost: raw.cost,
        clusters,
        gold,
        assignment,
    })
}

fn run_method(
    data: &CodedCorpus,
    method: ClusterMethod,
    opts: &ClusterOptions,
    progress: &mut dyn FnMut(f64),
) -> std::result::Result<Clustering, String> {
    match method {
        ClusterMethod::KMeans => cluster::kmeans_with_progress(&data.codes, opts, progress),
        _ => {
            let packed =
                PackedCodes::from_codes(data.codes[0].len(), data.codes.iter().map(Vec::as_slice));
            if method == ClusterMethod::KMedoids {
                cluster::kmedoids_with_progress(&packed, opts, progress)
            } else {
                cluster::kmodes_with_progress(&packed, opts, progress)
            }
        }
    }
}

/// The mean of the members' codes; for binary codes rounded to the per-bit majority.
fn mean_code(data: &CodedCorpus, members: &[usize], binary: bool) -> Vec<f32> {
    let dim = data.codes[0].len();
    let mut mean = vec![0f64; dim];
    for &i in members {
        for (m, &v) in mean.iter_mut().zip(&data.codes[i]) {
            *m += v as f64;
        }
    }
    let n = members.len().max(1) as f64;
    mean.iter()
        .map(|&s| {
            let v = s / n;
            if binary {
                (v > 0.5) as u8 as f32
            } else {
                v as f32
            }
        })
        .collect()
}

fn nearest_to(data: &CodedCorpus, members: &[usize], center: &[f32]) -> usize {
    members
        .iter()
        .map(|&i| {
            let d: f64 = data.codes[i]
                .iter()
                .zip(center)
                .map(|(a, b)| ((a - b) as f64).powi(2))
                .sum();
            (d, i)
        })
        .min_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)))
        .map_or(0, |(_, i)| i)
}

fn gold_share(data: &CodedCorpus, members: &[usize]) -> Option<GoldShare> {
    let mut counts: BTreeMap<u32, usize> = BTreeMap::new();
    for &i in members {
        if let Some(l) = data.labels[i] {
            *counts.entry(l).or_default() += 1;
        }
    }
    let labelled: usize = counts.values().sum();
    let (&label, &count) = counts
        .iter()
        .max_by_key(|&(&l, &c)| (c, std::cmp::Reverse(l)))?;
    Some(GoldShare {
        label: data.label_names[label as usize].clone(),
        share: count as f64 / labelled as f64,
    })
}

/// Purity, NMI and ARI of the clusters and of TF-IDF k-means over the labelled entries.
fn compare_with_gold(
    data: &CodedCorpus,
    assignment: &[usize],
    opts: &ClusterOptions,
    progress: &mut dyn FnMut(f64),
) -> Result<GoldComparison> {
    let labelled: Vec<usize> = (0..data.len())
        .filter(|&i| data.labels[i].is_some())
        .collect();
    let gold: Vec<u32> = labelled
        .iter()
        .map(|&i| data.labels[i].expect("labelled"))
        .collect();
    let pick = |a: &[usize]| -> Vec<usize> { labelled.iter().map(|&i| a[i]).collect() };
    let baseline = tfidf_kmeans_with_progress(&data.texts, opts, progress)?;
    let mut counts: BTreeMap<u32, usize> = BTreeMap::new();
    for &g in &gold {
        *counts.entry(g).or_default() += 1;
    }
    Ok(GoldComparison {
        labels: counts.len(),
        labelled: labelled.len(),
        codes: agreement(&gold, &pick(assignment)),
        tfidf_kmeans: agreement(&gold, &pick(&baseline.assignment)),
        majority_purity: counts.values().max().copied().unwrap_or(0) as f64
            / gold.len().max(1) as f64,
    })
}

/// Vocabulary size and minimum frequency of the TF-IDF baseline (as the NASH experiments').
const TFIDF_VOCAB: usize = 10_000;
const TFIDF_MIN_FREQUENCY: u64 = 2;

/// k-means with `opts` on the L2-normalised TF-IDF vectors of normalized `texts` (content words
/// of a vocabulary trained on the texts themselves).
pub fn tfidf_kmeans(texts: &[String], opts: &ClusterOptions) -> Result<Clustering> {
    tfidf_kmeans_with_progress(texts, opts, &mut |_| {})
}

/// [`tfidf_kmeans`], telling `progress` the fraction done: the vocabulary (a third), the
/// vectors (to half), then the k-means's iterations.
pub fn tfidf_kmeans_with_progress(
    texts: &[String],
    opts: &ClusterOptions,
    progress: &mut dyn FnMut(f64),
) -> Result<Clustering> {
    let vocab = train_vocab(
        texts.iter().map(String::as_str),
        TFIDF_VOCAB,
        TFIDF_MIN_FREQUENCY,
        false,
    )?;
    progress(0.3);
    let bags: Vec<_> = texts.iter().map(|t| bag_of_words(&vocab, t)).collect();
    let idf = crate::model::bow::idf(&document_frequencies(&bags, vocab.len()), bags.len());
    let vectors: Vec<cluster::SparseVector> = bags
        .iter()
        .map(|bag| {
            let mut v: Vec<(u32, f32)> =
                bag.iter().map(|&(w, c)| (w, c * idf[w as usize])).collect();
            let norm = v.iter().map(|&(_, x)| x * x).sum::<f32>().sqrt();
            if norm > 0.0 {
                v.iter_mut().for_each(|(_, x)| *x /= norm);
            }
            v
        })
        .collect();
    progress(0.5);
    cluster::kmeans_sparse_with_progress(&vectors, vocab.len(), opts, &mut |f| {
        progress(0.5 + 0.5 * f)
    })
    .map_err(anyhow::Error::msg)
}

impl ClusterReport {
    /// Decodes every cluster's centre with `model` (no-op for a model without a decoder).
    pub fn decode_centers(&mut self, model: &Coder) -> Result<()> {
        self.decode_centers_restricted(model, None)
    }

    /// [`ClusterReport::decode_centers`] with a sequence model's greedy decodings kept to the
    /// words of `real_words` when given (`cluster --real-words`).
    pub fn decode_centers_restricted(
        &mut self,
        model: &Coder,
        real_words: Option<&crate::model::word_trie::WordTrie>,
    ) -> Result<()> {
        let centers: Vec<Vec<f32>> = self.clusters.iter().map(|c| c.center.clone()).collect();
        if let Some(texts) = model.decode_codes_restricted(&centers, DECODED_WORDS, real_words)? {
            for (c, t) in self.clusters.iter_mut().zip(texts) {
                c.center_decoding = Some(t);
            }
        }
        Ok(())
    }

    /// The members of cluster `c` (report numbering), in corpus order.
    pub fn members(&self, c: usize) -> Vec<usize> {
        (0..self.assignment.len())
            .filter(|&i| self.assignment[i] == c)
            .collect()
    }

    /// A plain-text rendering for the terminal: every text from the corpus or the model
    /// (names, labels, words, decodings) is [`shown`](crate::printable::shown), never obeyed.
    pub fn render(&self, model_line: &str) -> String {
        use crate::printable::{shown_join, Shown};
        use std::fmt::Write;
        let mut s = String::new();
        let _ = writeln!(s, "{}", Shown(model_line));
        let _ = writeln!(
            s,
            "{} / {} · {} entries · {} · k = {} · seed {} · {} iterations · cost {:.1}",
            Shown(&self.corpus),
            Shown(&self.split),
            self.entries,
            self.method.describe(),
            self.clusters.len(),
            self.options.seed,
            self.iterations,
            self.cost
        );
        for c in &self.clusters {
            let _ = writeln!(s);
            let gold = c
                .gold
                .as_ref()
                .map(|g| format!("   gold: {} {:.0}%", Shown(&g.label), g.share * 100.0))
                .unwrap_or_default();
            let _ = writeln!(
                s,
                "{:>3}  {:>6} entries  {}{gold}",
                c.cluster + 1,
                c.size,
                Shown(&c.label)
            );
            let words: Vec<&str> = c.words.iter().map(|w| w.word.as_str()).collect();
            let _ = writeln!(s, "     words    {}", shown_join(&words, ", "));
            let _ = writeln!(s, "     medoid   {}", Shown(&c.medoid_text));
            if let Some(d) = &c.center_decoding {
                let _ = writeln!(
                    s,
                    "     centre → {}",
                    Shown(if d.is_empty() { "(nothing)" } else { d })
                );
            }
        }
        if let Some(g) = &self.gold {
            let _ = writeln!(s);
            let _ = writeln!(
                s,
                "against the {} gold labels ({} labelled entries; one cluster's purity {:.3}):",
                g.labels, g.labelled, g.majority_purity
            );
            let _ = writeln!(s, "  {:<34} {:>7} {:>7} {:>7}", "", "purity", "NMI", "ARI");
            let row = |name: &str, a: &Agreement| {
                format!(
                    "  {:<34} {:>7.3} {:>7.3} {:>7.3}\n",
                    name, a.purity, a.nmi, a.ari
                )
            };
            s += &row(&format!("{} on the codes", self.method.name()), &g.codes);
            s += &row("k-means on TF-IDF (baseline)", &g.tfidf_kmeans);
        }
        s
    }
}

/// The difference of two labels' mean codes, and how to apply it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AttributeVector {
    pub from: String,
    pub to: String,
    pub from_count: usize,
    pub to_count: usize,
    pub binary: bool,
    /// mean(to) − mean(from), per bit or dimension.
    pub difference: Vec<f32>,
}

impl AttributeVector {
    /// The vector from label `from` to label `to` over the entries of `data`.
    pub fn between(data: &CodedCorpus, from: &str, to: &str) -> Result<Self> {
        if from == to {
            bail!("--from and --to name the same label `{from}`");
        }
        let (mean_from, from_count) = data.label_mean(from)?;
        let (mean_to, to_count) = data.label_mean(to)?;
        Ok(Self {
            from: from.to_string(),
            to: to.to_string(),
            from_count,
            to_count,
            binary: data.binary,
            difference: mean_to.iter().zip(&mean_from).map(|(b, a)| b - a).collect(),
        })
    }

    /// Bits (or dimensions) by decreasing |difference|, ties to the lower index; bits whose
    /// means are equal are left out.
    pub fn ranked(&self) -> Vec<usize> {
        let mut idx: Vec<usize> = (0..self.difference.len())
            .filter(|&i| self.difference[i] != 0.0)
            .collect();
        idx.sort_by(|&a, &b| {
            self.difference[b]
                .abs()
                .total_cmp(&self.difference[a].abs())
                .then(a.cmp(&b))
        });
        idx
    }

    /// The largest useful strength: binary, the bits whose means differ; continuous, none.
    pub fn max_bits(&self) -> usize {
        self.ranked().len()
    }

    /// `code` moved toward `to`: binary, the `strength` (rounded) most different bits set to
    /// the target's side; continuous, code + strength · difference.
    pub fn apply(&self, code: &[f32], strength: f32) -> Vec<f32> {
        assert_eq!(code.len(), self.difference.len(), "code width");
        if self.binary {
            let mut out = code.to_vec();
            let n = strength.max(0.0).round() as usize;
            for b in self.ranked().into_iter().take(n) {
                out[b] = if self.difference[b] > 0.0 { 1.0 } else { 0.0 };
            }
            out
        } else {
            code.iter()
                .zip(&self.difference)
                .map(|(z, d)| z + strength * d)
                .collect()
        }
    }
}

/// z(C) + z(B) − z(A); for binary codes rounded per bit at ½ (see the module docs).
pub fn analogy(a: &[f32], b: &[f32], c: &[f32], binary: bool) -> Vec<f32> {
    assert!(a.len() == b.len() && b.len() == c.len(), "code widths");
    a.iter()
        .zip(b)
        .zip(c)
        .map(|((&a, &b), &c)| {
            let v = c + b - a;
            if binary {
                (v >= 0.5) as u8 as f32
            } else {
                v
            }
        })
        .collect()
}

/// Indices where two codes differ (binary) — the bits an edit changed.
pub fn changed_bits(before: &[f32], after: &[f32]) -> Vec<usize> {
    (0..before.len())
        .filter(|&i| crate::explore::is_set(before[i]) != crate::explore::is_set(after[i]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_analogy_takes_b_where_a_and_b_differ() {
        let a = [0.0, 0.0, 1.0, 1.0, 0.0, 1.0];
        let b = [0.0, 1.0, 0.0, 1.0, 1.0, 0.0];
        let c = [1.0, 0.0, 1.0, 0.0, 1.0, 0.0];
        assert_eq!(
            analogy(&a, &b, &c, true),
            vec![1.0, 1.0, 0.0, 0.0, 1.0, 0.0]
        );
        assert_eq!(analogy(&[1.0], &[3.0], &[0.5], false), vec![2.5]);
    }

    #[test]
    fn binary_attribute_sets_the_most_different_bits_to_the_target_side() {
        let v = AttributeVector {
            from: "a".into(),
            to: "b".into(),
            from_count: 1,
            to_count: 1,
            binary: true,
            difference: vec![0.1, -0.9, 0.0, 0.5, -0.2],
        };
        assert_eq!(v.ranked(), vec![1, 3, 4, 0]);
        let code = [0.0, 1.0, 1.0, 1.0, 1.0];
        assert_eq!(v.apply(&code, 0.0), code.to_vec());
        assert_eq!(v.apply(&code, 1.0), vec![0.0, 0.0, 1.0, 1.0, 1.0]);
        // Bit 3 already sits on the target's side: strength 3 changes two bits.
        let three = v.apply(&code, 3.0);
        assert_eq!(three, vec![0.0, 0.0, 1.0, 1.0, 0.0]);
        assert_eq!(changed_bits(&code, &three), vec![1, 4]);
        assert_eq!(v.apply(&code, 50.0), vec![1.0, 0.0, 1.0, 1.0, 0.0]);
    }

    #[test]
    fn a_subset_keeps_texts_labels_and_codes_together_and_follows_the_seed() {
        let n = 50;
        let data = CodedCorpus {
            corpus: "toy".into(),
            split: "train".into(),
            texts: (0..n).map(|i| format!("text {i}")).collect(),
            labels: (0..n).map(|i| Some(i as u32 % 3)).collect(),
            label_names: vec!["a".into(), "b".into(), "c".into()],
            codes: (0..n).map(|i| vec![i as f32]).collect(),
            binary: true,
        };
        assert_eq!(data.clone().subset(None, 0).len(), n);
        assert_eq!(data.clone().subset(Some(n + 5), 0).len(), n);
        let small = data.clone().subset(Some(10), 7);
        assert_eq!(small.len(), 10);
        assert_eq!(small.label_names, data.label_names);
        let picked: Vec<usize> = small.codes.iter().map(|c| c[0] as usize).collect();
        assert_eq!(picked, subset(n, Some(10), 7), "the entries encode() picks");
        for (j, &i) in picked.iter().enumerate() {
            assert_eq!(small.texts[j], format!("text {i}"));
            assert_eq!(small.labels[j], Some(i as u32 % 3));
        }
        let other = data.subset(Some(10), 8);
        assert_ne!(other.texts, small.texts, "another seed, another subset");
    }
}
