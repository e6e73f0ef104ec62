//! The continuous index: a corpus's μ (and σ) with their texts and labels, built from a
//! gaussian, bottleneck or nvdm checkpoint, searched by exact cosine top-k or multi-sample
//! matching ([`crate::cosine`]), saved as one safetensors file.
//!
//! # File format
//!
//! | tensor         | dtype | shape          | content                                        |
//! |----------------|-------|----------------|------------------------------------------------|
//! | `means`        | F32   | (n, dim)       | μ per entry, as the encoder gave it            |
//! | `stds`         | F32   | (n, dim)       | σ per entry; absent when the model has none    |
//!
//! plus the entries every index holds ([`super`]: `labels`, `text_bytes`, `text_offsets`).
//! Metadata: `format` = `latent-tui-continuous-index/1`, `dim`, and the shared `label_names`
//! and `index`. The unit rows are recomputed on load rather than stored, so the file holds what
//! the encoder said.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use rayon::prelude::*;
use safetensors::{tensor::TensorView, Dtype};
use serde::Serialize;

use super::{
    CachedIndex, CodeSource, Entries, EntriesRef, IndexFile, IndexMeta, SavedIndex, INDEX_FORMAT,
};
use crate::coder::{Coder, Posterior};
use crate::corpus::{Corpus, Split};
use crate::cosine::{
    check_vector, count_close_pairs, draw_codes, entry_rng, CosineHit, MatchRule, UnitVectors,
    QUERY_STREAM,
};

pub const CONTINUOUS_INDEX_FORMAT: &str = "latent-tui-continuous-index/1";

/// One entry found by a search.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ContinuousNeighbor<'a> {
    pub index: usize,
    /// Cosine similarity of the query's μ and the entry's μ.
    pub similarity: f32,
    /// Multi-sample search only: close pairs out of n² (a match when ≥ m).
    pub close_pairs: Option<u32>,
    pub text: &'a str,
    pub label: Option<&'a str>,
}

/// μ (and σ), texts and labels of a corpus, searchable by cosine similarity and by
/// multi-sample matching.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ContinuousIndex {
    /// (n, dim) μ as the encoder gave it.
    means: Vec<f32>,
    /// (n, dim) σ, when the model has one.
    stds: Option<Vec<f32>>,
    units: UnitVectors,
    pub texts: Vec<String>,
    /// Per entry, an index into `label_names`.
    pub labels: Vec<Option<u32>>,
    pub label_names: Vec<String>,
    pub meta: IndexMeta,
}

impl ContinuousIndex {
    /// An index of `posteriors` (all `dim` wide; σ for all or none) with their texts and labels.
    pub fn from_parts(
        dim: usize,
        posteriors: &[Posterior],
        texts: Vec<String>,
        labels: &[Option<String>],
        meta: IndexMeta,
    ) -> Result<Self> {
        if posteriors.len() != texts.len() || posteriors.len() != labels.len() {
            bail!(
                "{} codes, {} texts and {} labels do not line up",
                posteriors.len(),
                texts.len(),
                labels.len()
            );
        }
        let with_std = posteriors.first().is_some_and(|p| p.std.is_some());
        if posteriors.iter().any(|p| p.std.is_some() != with_std) {
            bail!("some codes come with σ and some without");
        }
        let means: Vec<f32> = posteriors.iter().flat_map(|p| p.mean.clone()).collect();
        let stds = with_std.then(|| {
            posteriors
                .iter()
                .flat_map(|p| p.std.clone().unwrap_or_default())
                .collect()
        });
        let entries = Entries::new(texts, labels, meta);
        Self::assemble(
            dim,
            means,
            stds,
            entries.texts,
            entries.labels,
            entries.label_names,
            entries.meta,
        )
    }

    /// Checks the parts and normalises the rows.
    fn assemble(
        dim: usize,
        means: Vec<f32>,
        stds: Option<Vec<f32>>,
        texts: Vec<String>,
        labels: Vec<Option<u32>>,
        label_names: Vec<String>,
        meta: IndexMeta,
    ) -> Result<Self> {
        if dim == 0 {
            bail!("codes must have at least one dimension");
        }
        let n = texts.len();
        if means.len() != n * dim {
            bail!(
                "{} μ values do not make {n} codes of {dim} dimensions",
                means.len()
            );
        }
        for (i, row) in means.chunks_exact(dim).enumerate() {
            check_vector(row, dim, &format!("the μ of entry {i}"))?;
        }
        if let Some(stds) = &stds {
            if stds.len() != n * dim {
                bail!(
                    "{} σ values do not make {n} codes of {dim} dimensions",
                    stds.len()
                );
            }
            if let Some(i) = stds.iter().position(|s| !(s.is_finite() && *s >= 0.0)) {
                bail!(
                    "the σ of entry {} is {} in dimension {}; σ must be finite and ≥ 0",
                    i / dim,
                    stds[i],
                    i % dim
                );
            }
        }
        if labels.len() != n {
            bail!("{} labels for {n} texts", labels.len());
        }
        if labels
            .iter()
            .flatten()
            .any(|&l| l as usize >= label_names.len())
        {
            bail!("a label is outside the label names");
        }
        Ok(Self {
            units: UnitVectors::new(dim, means.chunks_exact(dim))?,
            means,
            stds,
            texts,
            labels,
            label_names,
            meta,
        })
    }

    /// Encodes the examples of `splits` of `corpus` with `coder` (a continuous model).
    pub fn build(
        coder: &Coder,
        corpus: &Corpus,
        splits: &[Split],
        progress: &mut dyn FnMut(f64),
    ) -> Result<Self> {
        super::build(coder, corpus, splits, progress)
    }

    /// Builds an index of `splits` of `corpus` whose posteriors (`dim` wide) come from
    /// `encode`, computed with the model `source` names ([`ContinuousIndex::build`] passes a
    /// [`Coder`]'s posteriors).
    pub fn build_with(
        source: &CodeSource,
        dim: usize,
        corpus: &Corpus,
        splits: &[Split],
        encode: &mut dyn FnMut(&[&str]) -> Result<Vec<Posterior>>,
    ) -> Result<Self> {
        super::build_with(source, dim, corpus, splits, encode)
    }

    /// The index cached beside `source`'s checkpoint if it is fresh for that model
    /// ([`IndexMeta::is_fresh`]); otherwise the train split of `corpus` encoded with `encode`,
    /// saved there for next time (the same policy as [`super::CorpusIndex::load_or_build`]:
    /// [`super::load_or_build`]).
    pub fn load_or_build(
        source: &CodeSource,
        corpus: &Corpus,
        dim: usize,
        encode: &mut dyn FnMut(&[&str]) -> Result<Vec<Posterior>>,
    ) -> Result<CachedIndex<Self>> {
        super::load_or_build(source, corpus, dim, encode)
    }

    /// Whether the index was built from the checkpoint file as it is now.
    pub fn is_current_for(&self, checkpoint: &Path) -> Result<bool> {
        self.meta.is_current_for(checkpoint)
    }

    pub fn len(&self) -> usize {
        self.texts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.texts.is_empty()
    }

    pub fn dim(&self) -> usize {
        self.units.dim()
    }

    /// Whether entries carry σ (needed for multi-sample matching).
    pub fn has_std(&self) -> bool {
        self.stds.is_some()
    }

    pub fn label(&self, i: usize) -> Option<&str> {
        self.labels[i].map(|l| self.label_names[l as usize].as_str())
    }

    /// Entry `i`'s μ.
    pub fn mean(&self, i: usize) -> &[f32] {
        &self.means[i * self.dim()..(i + 1) * self.dim()]
    }

    /// Entry `i`'s μ and σ.
    pub fn posterior(&self, i: usize) -> Posterior {
        let dim = self.dim();
        Posterior {
            mean: self.mean(i).to_vec(),
            std: self
                .stds
                .as_ref()
                .map(|s| s[i * dim..(i + 1) * dim].to_vec()),
        }
    }

    /// The unit rows the search runs over.
    pub fn unit_vectors(&self) -> &UnitVectors {
        &self.units
    }

    /// The `k` entries whose μ is most similar (cosine) to `query` (a μ, as the explorer holds
    /// it), ordered by (similarity descending, index ascending).
    pub fn search(&self, query: &[f32], k: usize) -> Result<Vec<ContinuousNeighbor<'_>>> {
        check_vector(query, self.dim(), "the query code")?;
        Ok(self.neighbors(&self.units.top_k(query, k)?))
    }

    /// [`ContinuousIndex::search`] for many queries at once, in parallel.
    pub fn search_many(
        &self,
        queries: &[Vec<f32>],
        k: usize,
    ) -> Result<Vec<Vec<ContinuousNeighbor<'_>>>> {
        Ok(self
            .units
            .top_k_many(queries, k)?
            .iter()
            .map(|hits| self.neighbors(hits))
            .collect())
    }

    /// Multi-sample search: the exact cosine top `rule.candidates` (at least `k`) of the
    /// query's μ, re-ranked by close pairs with the query (most first, then similarity, then
    /// index); the best `k` come back with their counts, matches (count ≥ m) and non-matches
    /// alike, so a caller can show both or keep only `rule.is_match`. The query draws from [`QUERY_STREAM`], entry `i`
    /// from stream `i`, all under `rule.seed`.
    pub fn search_matching(
        &self,
        query: &Posterior,
        k: usize,
        rule: &MatchRule,
    ) -> Result<Vec<ContinuousNeighbor<'_>>> {
        rule.validate()?;
        check_vector(&query.mean, self.dim(), "the query code")?;
        if self.stds.is_none() {
            bail!(
                "this index holds no σ (its model gives point codes), so it cannot match by sampling; \
                 use plain cosine search"
            );
        }
        let dim = self.dim();
        let query_codes = draw_codes(query, rule.samples, &mut entry_rng(rule.seed, QUERY_STREAM))?;
        let candidates = self.units.top_k(&query.mean, rule.candidates.max(k))?;
        let mut counted: Vec<(u32, CosineHit)> = candidates
            .par_iter()
            .map(|hit| {
                let codes = draw_codes(
                    &self.posterior(hit.index),
                    rule.samples,
                    &mut entry_rng(rule.seed, hit.index as u64),
                )?;
                Ok((
                    count_close_pairs(&query_codes, &codes, dim, rule.radius),
                    *hit,
                ))
            })
            .collect::<Result<_>>()?;
        counted.sort_by(|(ca, ha), (cb, hb)| cb.cmp(ca).then(ha.rank_cmp(hb)));
        counted.truncate(k);
        Ok(counted
            .into_iter()
            .map(|(count, h)| ContinuousNeighbor {
                close_pairs: Some(count),
                ..self.neighbor(&h)
            })
            .collect())
    }

    fn neighbor(&self, h: &CosineHit) -> ContinuousNeighbor<'_> {
        ContinuousNeighbor {
            index: h.index,
            similarity: h.similarity,
            close_pairs: None,
            text: &self.texts[h.index],
            label: self.label(h.index),
        }
    }

    /// Hits resolved to their texts and labels.
    pub fn neighbors(&self, hits: &[CosineHit]) -> Vec<ContinuousNeighbor<'_>> {
        hits.iter().map(|h| self.neighbor(h)).collect()
    }

    /// The default index path of a checkpoint, the same as a binary one's
    /// ([`super::default_path`]): a checkpoint has one kind of code.
    pub fn default_path(checkpoint: &Path) -> PathBuf {
        super::default_path(checkpoint)
    }

    /// Atomically writes the index to `path`.
    pub fn save(&self, path: &Path) -> Result<()> {
        let (n, dim) = (self.len(), self.dim());
        let means = le_bytes_f32(&self.means);
        let stds = self.stds.as_deref().map(le_bytes_f32);
        let mut tensors = vec![("means", TensorView::new(Dtype::F32, vec![n, dim], &means)?)];
        if let Some(stds) = &stds {
            tensors.push(("stds", TensorView::new(Dtype::F32, vec![n, dim], stds)?));
        }
        EntriesRef {
            texts: &self.texts,
            labels: &self.labels,
            label_names: &self.label_names,
            meta: &self.meta,
        }
        .save(path, CONTINUOUS_INDEX_FORMAT, ("dim", dim), tensors)
    }

    /// Reads an index written by [`ContinuousIndex::save`].
    pub fn load(path: &Path) -> Result<Self> {
        let file = IndexFile::read(
            path,
            CONTINUOUS_INDEX_FORMAT,
            &[(
                INDEX_FORMAT,
                "is a binary-code (Hamming) index, not a continuous one; load it with the binary index",
            )],
            &format!("is not a latent-tui continuous index (format `{CONTINUOUS_INDEX_FORMAT}`)"),
        )?;
        let shown = &file.shown;
        let dim = file.width("dim")?;
        let entries = file.entries()?;
        let st = file.tensors();
        let matrix = |name: &str| -> Result<Vec<f32>> {
            let t = file.tensor(&st, name, Dtype::F32)?;
            if t.shape().len() != 2 || t.shape()[1] != dim {
                bail!(
                    "`{shown}`: tensor `{name}` has shape {:?}, expected (n, {dim})",
                    t.shape()
                );
            }
            Ok(from_le_f32(t.data()))
        };
        let means = matrix("means")?;
        let stds = if st.names().contains(&"stds") {
            Some(matrix("stds")?)
        } else {
            None
        };
        Self::assemble(
            dim,
            means,
            stds,
            entries.texts,
            entries.labels,
            entries.label_names,
            entries.meta,
        )
        .map_err(|e| anyhow::anyhow!("`{shown}`: {e}"))
    }
}

impl SavedIndex for ContinuousIndex {
    type Code = Posterior;
    fn from_parts(
        dim: usize,
        posteriors: &[Posterior],
        texts: Vec<String>,
        labels: &[Option<String>],
        meta: IndexMeta,
    ) -> Result<Self> {
        ContinuousIndex::from_parts(dim, posteriors, texts, labels, meta)
    }
    fn encode(
        coder: &Coder,
        texts: &[&str],
        progress: &mut dyn FnMut(f64),
    ) -> Result<Vec<Posterior>> {
        coder.posteriors(texts, progress)
    }
    fn load(path: &Path) -> Result<Self> {
        ContinuousIndex::load(path)
    }
    fn save(&self, path: &Path) -> Result<()> {
        ContinuousIndex::save(self, path)
    }
    fn meta(&self) -> &IndexMeta {
        &self.meta
    }
    fn width(&self) -> usize {
        self.dim()
    }
    fn texts(&self) -> &[String] {
        &self.texts
    }
}

fn le_bytes_f32(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn from_le_f32(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
        .collect()
}
