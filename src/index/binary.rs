//! The binary index: a corpus's bit-packed codes with their texts and labels, built from any
//! binary checkpoint, searched by Hamming distance, saved as one safetensors file.
//!
//! | tensor         | dtype | shape          | content                                   |
//! |----------------|-------|----------------|-------------------------------------------|
//! | `codes`        | U64   | (n, words)     | bit-packed codes ([`crate::hamming`])     |
//!
//! plus the entries every index holds ([`super`]: `labels`, `text_bytes`, `text_offsets`).
//! Metadata: `format` = `latent-tui-index/1`, `bits`, and the shared `label_names` and `index`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use safetensors::{tensor::TensorView, Dtype};
use serde::Serialize;

use super::{
    from_le_u64, le_bytes_u64, CachedIndex, CodeSource, Entries, EntriesRef, IndexFile, IndexMeta,
    SavedIndex, CONTINUOUS_INDEX_FORMAT,
};
use crate::coder::Coder;
use crate::corpus::{Corpus, Split};
use crate::hamming::{pack, Hit, PackedCodes};

pub const INDEX_FORMAT: &str = "latent-tui-index/1";

/// One entry found by a search.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Neighbor<'a> {
    pub index: usize,
    pub distance: u32,
    pub text: &'a str,
    pub label: Option<&'a str>,
}

/// Codes, texts and labels of a corpus, searchable by Hamming distance.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CorpusIndex {
    pub codes: PackedCodes,
    pub texts: Vec<String>,
    /// Per entry, an index into `label_names`.
    pub labels: Vec<Option<u32>>,
    pub label_names: Vec<String>,
    pub meta: IndexMeta,
}

impl CorpusIndex {
    /// An index of `codes` (0.0 / 1.0 each, all `bits` long) with their texts and labels.
    pub fn from_parts(
        bits: usize,
        codes: &[Vec<f32>],
        texts: Vec<String>,
        labels: &[Option<String>],
        meta: IndexMeta,
    ) -> Result<Self> {
        if codes.len() != texts.len() || codes.len() != labels.len() {
            bail!(
                "{} codes, {} texts and {} labels do not line up",
                codes.len(),
                texts.len(),
                labels.len()
            );
        }
        if let Some(bad) = codes.iter().find(|c| c.len() != bits) {
            bail!("a code has {} bits, the index {bits}", bad.len());
        }
        let entries = Entries::new(texts, labels, meta);
        Ok(Self {
            codes: PackedCodes::from_codes(bits, codes.iter().map(Vec::as_slice)),
            texts: entries.texts,
            labels: entries.labels,
            label_names: entries.label_names,
            meta: entries.meta,
        })
    }

    /// Encodes the examples of `splits` of `corpus` with `coder` (a binary model).
    pub fn build(
        coder: &Coder,
        corpus: &Corpus,
        splits: &[Split],
        progress: &mut dyn FnMut(f64),
    ) -> Result<Self> {
        super::build(coder, corpus, splits, progress)
    }

    /// Builds an index of `splits` of `corpus` whose codes (`bits` wide, 0.0 / 1.0) come from
    /// `encode`, computed with the model `source` names ([`CorpusIndex::build`] passes a
    /// [`Coder`]'s codes).
    pub fn build_with(
        source: &CodeSource,
        bits: usize,
        corpus: &Corpus,
        splits: &[Split],
        encode: &mut dyn FnMut(&[&str]) -> Result<Vec<Vec<f32>>>,
    ) -> Result<Self> {
        super::build_with(source, bits, corpus, splits, encode)
    }

    /// The index cached beside `source`'s checkpoint ([`super::default_path`]) if it is fresh
    /// for that model ([`IndexMeta::is_fresh`]); otherwise the train split of `corpus` encoded
    /// with `encode`, saved there for next time (a failed save is reported in the result, not
    /// an error). The explorer's Neighbors and Clusters tabs, `search` and `cluster` share it
    /// ([`super::load_or_build`]).
    pub fn load_or_build(
        source: &CodeSource,
        corpus: &Corpus,
        bits: usize,
        encode: &mut dyn FnMut(&[&str]) -> Result<Vec<Vec<f32>>>,
    ) -> Result<CachedIndex> {
        super::load_or_build(source, corpus, bits, encode)
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

    pub fn bits(&self) -> usize {
        self.codes.bits()
    }

    pub fn label(&self, i: usize) -> Option<&str> {
        self.labels[i].map(|l| self.label_names[l as usize].as_str())
    }

    /// Entry `i`'s code as 0.0 / 1.0.
    pub fn code(&self, i: usize) -> Vec<f32> {
        crate::hamming::unpack(self.codes.code(i), self.bits())
    }

    /// The `k` nearest entries to a code given as 0.0 / 1.0 values (as the explorer holds it).
    pub fn search(&self, code: &[f32], k: usize) -> Result<Vec<Neighbor<'_>>> {
        if code.len() != self.bits() {
            bail!(
                "the query code has {} bits but the index holds {}-bit codes",
                code.len(),
                self.bits()
            );
        }
        Ok(self.neighbors(&self.codes.top_k(&pack(code), k)))
    }

    /// Hits resolved to their texts and labels.
    pub fn neighbors(&self, hits: &[Hit]) -> Vec<Neighbor<'_>> {
        hits.iter()
            .map(|h| Neighbor {
                index: h.index,
                distance: h.distance,
                text: &self.texts[h.index],
                label: self.label(h.index),
            })
            .collect()
    }

    /// The default index path of a checkpoint: `name.safetensors` → `name.index.safetensors`
    /// ([`super::default_path`]).
    pub fn default_path(checkpoint: &Path) -> PathBuf {
        super::default_path(checkpoint)
    }

    /// Atomically writes the index to `path`.
    pub fn save(&self, path: &Path) -> Result<()> {
        let codes = le_bytes_u64(self.codes.as_words());
        let shape = vec![self.len(), self.codes.words_per_code()];
        self.entries().save(
            path,
            INDEX_FORMAT,
            ("bits", self.bits()),
            vec![("codes", TensorView::new(Dtype::U64, shape, &codes)?)],
        )
    }

    /// Reads an index written by [`CorpusIndex::save`].
    pub fn load(path: &Path) -> Result<Self> {
        let file = IndexFile::read(
            path,
            INDEX_FORMAT,
            &[(
                CONTINUOUS_INDEX_FORMAT,
                "is a continuous-code (cosine) index, not a binary one; load it with the continuous index",
            )],
            &format!("is not a latent-tui index (format `{INDEX_FORMAT}`)"),
        )?;
        let shown = &file.shown;
        let bits = file.width("bits")?;
        let entries = file.entries()?;
        let st = file.tensors();
        let codes = from_le_u64(file.tensor(&st, "codes", Dtype::U64)?.data());
        let codes =
            PackedCodes::from_words(bits, codes).map_err(|e| anyhow::anyhow!("`{shown}`: {e}"))?;
        if codes.len() != entries.texts.len() {
            bail!("`{shown}`: codes, labels and texts have different lengths");
        }
        Ok(Self {
            codes,
            texts: entries.texts,
            labels: entries.labels,
            label_names: entries.label_names,
            meta: entries.meta,
        })
    }

    /// The entries (texts, labels, provenance) as the saved-index layer writes them.
    fn entries(&self) -> EntriesRef<'_> {
        EntriesRef {
            texts: &self.texts,
            labels: &self.labels,
            label_names: &self.label_names,
            meta: &self.meta,
        }
    }
}

impl SavedIndex for CorpusIndex {
    type Code = Vec<f32>;
    fn from_parts(
        bits: usize,
        codes: &[Vec<f32>],
        texts: Vec<String>,
        labels: &[Option<String>],
        meta: IndexMeta,
    ) -> Result<Self> {
        CorpusIndex::from_parts(bits, codes, texts, labels, meta)
    }
    fn encode(
        coder: &Coder,
        texts: &[&str],
        progress: &mut dyn FnMut(f64),
    ) -> Result<Vec<Vec<f32>>> {
        coder.codes(texts, progress)
    }
    fn load(path: &Path) -> Result<Self> {
        CorpusIndex::load(path)
    }
    fn save(&self, path: &Path) -> Result<()> {
        CorpusIndex::save(self, path)
    }
    fn meta(&self) -> &IndexMeta {
        &self.meta
    }
    fn width(&self) -> usize {
        self.bits()
    }
    fn texts(&self) -> &[String] {
        &self.texts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saves_loads_and_searches() -> Result<()> {
        let codes = vec![
            vec![0f32, 0.0, 0.0, 0.0],
            vec![1.0, 0.0, 0.0, 0.0],
            vec![1.0, 1.0, 1.0, 1.0],
        ];
        let texts = vec!["zero".to_string(), "one ünïcode".into(), "all".into()];
        let labels = vec![Some("b".to_string()), None, Some("a".to_string())];
        let index = CorpusIndex::from_parts(4, &codes, texts, &labels, IndexMeta::default())?;
        assert_eq!(index.label_names, vec!["a", "b"]);
        let hits = index.search(&[1.0, 0.0, 0.0, 1.0], 2)?;
        assert_eq!(
            hits.iter()
                .map(|h| (h.index, h.distance))
                .collect::<Vec<_>>(),
            vec![(1, 1), (0, 2)]
        );
        assert_eq!(hits[1].label, Some("b"));
        assert!(index.search(&[1.0], 2).is_err(), "wrong width is an error");

        let dir = tempfile::tempdir()?;
        let path = dir.path().join("x.index.safetensors");
        index.save(&path)?;
        let back = CorpusIndex::load(&path)?;
        assert_eq!(back, index);
        assert_eq!(
            CorpusIndex::default_path(Path::new("runs/nash.safetensors")),
            PathBuf::from("runs/nash.index.safetensors")
        );
        Ok(())
    }
}
