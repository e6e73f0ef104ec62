//! A corpus's binary codes with their texts and labels: built from any binary checkpoint,
//! searched by Hamming distance, saved as one safetensors file.
//!
//! | tensor         | dtype | shape          | content                                   |
//! |----------------|-------|----------------|-------------------------------------------|
//! | `codes`        | U64   | (n, words)     | bit-packed codes ([`crate::hamming`])     |
//! | `labels`       | U32   | (n,)           | index into `label_names`; u32::MAX = none |
//! | `text_bytes`   | U8    | (total,)       | the entries' texts, UTF-8, concatenated   |
//! | `text_offsets` | U64   | (n + 1,)       | where each text starts (and the end)      |
//!
//! Metadata: `format` = `latent-tui-index/1`, `bits`, `label_names` (JSON), and the provenance
//! [`IndexMeta`] as JSON under `index`, including the SHA-256 of the checkpoint file so a search
//! notices an index built from another version of the model.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use safetensors::{tensor::TensorView, Dtype, SafeTensors};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::checkpoint::write_atomically;
use crate::coder::Coder;
use crate::corpus::{Corpus, Split};
use crate::hamming::{pack, Hit, PackedCodes};

pub const INDEX_FORMAT: &str = "latent-tui-index/1";

/// Where an index came from.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct IndexMeta {
    /// The checkpoint path as given when building.
    pub checkpoint: String,
    pub checkpoint_sha256: String,
    /// The model's one-line description.
    pub model: String,
    pub corpus: String,
    pub corpus_hash: String,
    /// The splits indexed, e.g. `train`.
    pub splits: Vec<String>,
}

/// One entry found by a search.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Neighbor<'a> {
    pub index: usize,
    pub distance: u32,
    pub text: &'a str,
    pub label: Option<&'a str>,
}

/// An index from [`CorpusIndex::load_or_build`] and where it lives.
#[derive(Clone, Debug)]
pub struct CachedIndex<I = CorpusIndex> {
    pub index: I,
    /// Beside the checkpoint: where it was loaded from or saved to.
    pub path: PathBuf,
    /// Loaded from `path` rather than built now.
    pub from_disk: bool,
    /// Why a freshly built index could not be saved, if it could not.
    pub save_error: Option<String>,
}

/// The examples of some splits of a corpus as an index's entries, with the provenance of an
/// index built from them: what the binary and the continuous index both start from.
pub struct IndexEntries {
    pub texts: Vec<String>,
    pub labels: Vec<Option<String>>,
    pub meta: IndexMeta,
}

/// The entries of `splits` of `corpus` for an index of `checkpoint` (described as `model`).
pub fn index_entries(
    checkpoint: &Path,
    model: &str,
    corpus: &Corpus,
    splits: &[Split],
) -> Result<IndexEntries> {
    let examples: Vec<_> = splits.iter().flat_map(|&s| corpus.split(s)).collect();
    if examples.is_empty() {
        bail!("corpus `{}` has no examples in {splits:?}", corpus.name);
    }
    Ok(IndexEntries {
        texts: examples.iter().map(|e| e.text.clone()).collect(),
        labels: examples.iter().map(|e| e.label.clone()).collect(),
        meta: IndexMeta {
            checkpoint: checkpoint.display().to_string(),
            checkpoint_sha256: file_sha256(checkpoint)?,
            model: model.to_string(),
            corpus: corpus.name.clone(),
            corpus_hash: corpus.hash.clone(),
            splits: splits.iter().map(|s| s.to_string()).collect(),
        },
    })
}

/// The index saved beside `checkpoint` if `is_fresh` accepts it, else one built now (with
/// `model` as the model's description, read from the checkpoint when empty) and saved there;
/// a failed save is reported in the result, not an error. Binary and continuous indexes share
/// this policy (and the file name: a checkpoint has one kind of code).
pub fn cached_beside<I>(
    checkpoint: &Path,
    load: impl Fn(&Path) -> Result<I>,
    is_fresh: impl Fn(&I) -> bool,
    build: impl FnOnce(&str) -> Result<I>,
    save: impl Fn(&I, &Path) -> Result<()>,
    model: &str,
) -> Result<CachedIndex<I>> {
    cached_at(
        checkpoint,
        CorpusIndex::default_path(checkpoint),
        load,
        is_fresh,
        build,
        save,
        model,
    )
}

/// [`cached_beside`] for a cache file at `path` (the per-bit meanings keep theirs beside the
/// index): loaded if `is_fresh` accepts it, else built now and saved there.
pub fn cached_at<I>(
    checkpoint: &Path,
    path: PathBuf,
    load: impl Fn(&Path) -> Result<I>,
    is_fresh: impl Fn(&I) -> bool,
    build: impl FnOnce(&str) -> Result<I>,
    save: impl Fn(&I, &Path) -> Result<()>,
    model: &str,
) -> Result<CachedIndex<I>> {
    if let Some(index) = load(&path).ok().filter(|ix| is_fresh(ix)) {
        return Ok(CachedIndex {
            index,
            path,
            from_disk: true,
            save_error: None,
        });
    }
    let model = if model.is_empty() {
        crate::checkpoint::Checkpoint::read(checkpoint, &candle_core::Device::Cpu)?
            .config
            .describe()
    } else {
        model.to_string()
    };
    let index = build(&model)?;
    let save_error = save(&index, &path).err().map(|e| format!("{e:#}"));
    Ok(CachedIndex {
        index,
        path,
        from_disk: false,
        save_error,
    })
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
        let names: BTreeMap<&str, u32> = labels
            .iter()
            .flatten()
            .map(String::as_str)
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .enumerate()
            .map(|(i, n)| (n, i as u32))
            .collect();
        Ok(Self {
            codes: PackedCodes::from_codes(bits, codes.iter().map(Vec::as_slice)),
            texts,
            labels: labels
                .iter()
                .map(|l| l.as_deref().map(|n| names[n]))
                .collect(),
            label_names: names.keys().map(|s| s.to_string()).collect(),
            meta,
        })
    }

    /// Encodes the examples of `splits` of `corpus` with `coder` (a binary model).
    pub fn build(
        coder: &Coder,
        corpus: &Corpus,
        splits: &[Split],
        progress: &mut dyn FnMut(f64),
    ) -> Result<Self> {
        Self::build_with(
            coder.path(),
            &coder.config().describe(),
            coder.latent_dim(),
            corpus,
            splits,
            &mut |texts| coder.codes(texts, progress),
        )
    }

    /// Builds an index of `splits` of `corpus` whose codes (`bits` wide, 0.0 / 1.0) come from
    /// `encode`, for the checkpoint at `checkpoint` described as `model` ([`CorpusIndex::build`]
    /// passes a [`Coder`]'s codes).
    pub fn build_with(
        checkpoint: &Path,
        model: &str,
        bits: usize,
        corpus: &Corpus,
        splits: &[Split],
        encode: &mut dyn FnMut(&[&str]) -> Result<Vec<Vec<f32>>>,
    ) -> Result<Self> {
        let entries = crate::search::index_entries(checkpoint, model, corpus, splits)?;
        let codes = encode(&entries.texts.iter().map(String::as_str).collect::<Vec<_>>())?;
        Self::from_parts(bits, &codes, entries.texts, &entries.labels, entries.meta)
    }

    /// The index cached beside `checkpoint` ([`CorpusIndex::default_path`]) if it was built
    /// from this checkpoint file, this corpus and this code width; otherwise the train split
    /// of `corpus` encoded with `encode`, saved there for next time (a failed save is reported
    /// in the result, not an error). The explorer's Neighbors tab and `search` share it.
    pub fn load_or_build(
        checkpoint: &Path,
        corpus: &Corpus,
        bits: usize,
        encode: &mut dyn FnMut(&[&str]) -> Result<Vec<Vec<f32>>>,
    ) -> Result<CachedIndex> {
        Self::load_or_build_described(checkpoint, "", corpus, bits, encode)
    }

    /// [`CorpusIndex::load_or_build`] recording `model` as the model's description (the
    /// checkpoint's config is read for it when empty).
    pub fn load_or_build_described(
        checkpoint: &Path,
        model: &str,
        corpus: &Corpus,
        bits: usize,
        encode: &mut dyn FnMut(&[&str]) -> Result<Vec<Vec<f32>>>,
    ) -> Result<CachedIndex> {
        cached_beside(
            checkpoint,
            Self::load,
            |ix: &Self| {
                ix.meta.corpus_hash == corpus.hash
                    && ix.bits() == bits
                    && ix.is_current_for(checkpoint).unwrap_or(false)
            },
            |model: &str| {
                Self::build_with(checkpoint, model, bits, corpus, &[Split::Train], encode)
            },
            Self::save,
            model,
        )
    }

    /// Whether the index was built from the checkpoint file as it is now.
    pub fn is_current_for(&self, checkpoint: &Path) -> Result<bool> {
        Ok(file_sha256(checkpoint)? == self.meta.checkpoint_sha256)
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

    /// The default index path of a checkpoint: `name.safetensors` → `name.index.safetensors`.
    pub fn default_path(checkpoint: &Path) -> PathBuf {
        let stem = checkpoint
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "model".into());
        checkpoint.with_file_name(format!("{stem}.index.safetensors"))
    }

    /// Atomically writes the index to `path`.
    pub fn save(&self, path: &Path) -> Result<()> {
        let n = self.len();
        let codes = le_bytes_u64(self.codes.as_words());
        let labels: Vec<u8> = self
            .labels
            .iter()
            .flat_map(|l| l.unwrap_or(u32::MAX).to_le_bytes())
            .collect();
        let mut text_bytes = Vec::new();
        let mut offsets = vec![0u64];
        for t in &self.texts {
            text_bytes.extend_from_slice(t.as_bytes());
            offsets.push(text_bytes.len() as u64);
        }
        let offsets = le_bytes_u64(&offsets);
        let words = self.codes.words_per_code();
        let views = vec![
            (
                "codes",
                TensorView::new(Dtype::U64, vec![n, words], &codes)?,
            ),
            ("labels", TensorView::new(Dtype::U32, vec![n], &labels)?),
            (
                "text_bytes",
                TensorView::new(Dtype::U8, vec![text_bytes.len()], &text_bytes)?,
            ),
            (
                "text_offsets",
                TensorView::new(Dtype::U64, vec![n + 1], &offsets)?,
            ),
        ];
        let mut meta = HashMap::new();
        meta.insert("format".to_string(), INDEX_FORMAT.to_string());
        meta.insert("bits".to_string(), self.bits().to_string());
        meta.insert(
            "label_names".to_string(),
            serde_json::to_string(&self.label_names)?,
        );
        meta.insert("index".to_string(), serde_json::to_string(&self.meta)?);
        let bytes = safetensors::serialize(views, Some(meta)).context("serialising the index")?;
        write_atomically(path, &bytes)
    }

    /// Reads an index written by [`CorpusIndex::save`].
    pub fn load(path: &Path) -> Result<Self> {
        let shown = path.display();
        let bytes = crate::checkpoint::read_regular_file(path, "index")?;
        let st = SafeTensors::deserialize(&bytes)
            .map_err(|e| anyhow::anyhow!("`{shown}` is not a valid index file: {e}"))?;
        let (_, header) = SafeTensors::read_metadata(&bytes)
            .map_err(|e| anyhow::anyhow!("`{shown}` is not a valid index file: {e}"))?;
        let meta = header.metadata().clone().unwrap_or_default();
        if meta.get("format").map(String::as_str) != Some(INDEX_FORMAT) {
            bail!("`{shown}` is not a latent-tui index (format `{INDEX_FORMAT}`)");
        }
        let field = |k: &str| {
            meta.get(k)
                .with_context(|| format!("`{shown}` lacks the `{k}` metadata entry"))
        };
        let bits: usize = field("bits")?.parse().context("bad `bits`")?;
        let label_names: Vec<String> = serde_json::from_str(field("label_names")?)?;
        let info: IndexMeta = serde_json::from_str(field("index")?)?;
        let tensor = |name: &str, dtype: Dtype| -> Result<TensorView<'_>> {
            let t = st
                .tensor(name)
                .map_err(|e| anyhow::anyhow!("`{shown}`: tensor `{name}`: {e}"))?;
            if t.dtype() != dtype {
                bail!(
                    "`{shown}`: tensor `{name}` is {:?}, expected {dtype:?}",
                    t.dtype()
                );
            }
            Ok(t)
        };
        let codes = from_le_u64(tensor("codes", Dtype::U64)?.data());
        let codes =
            PackedCodes::from_words(bits, codes).map_err(|e| anyhow::anyhow!("`{shown}`: {e}"))?;
        let labels: Vec<Option<u32>> = tensor("labels", Dtype::U32)?
            .data()
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
            .map(|l| (l != u32::MAX).then_some(l))
            .collect();
        let text_bytes = tensor("text_bytes", Dtype::U8)?.data();
        let offsets = from_le_u64(tensor("text_offsets", Dtype::U64)?.data());
        let n = codes.len();
        if labels.len() != n || offsets.len() != n + 1 {
            bail!("`{shown}`: codes, labels and texts have different lengths");
        }
        if labels
            .iter()
            .flatten()
            .any(|&l| l as usize >= label_names.len())
        {
            bail!("`{shown}`: a label is outside the label names");
        }
        let mut texts = Vec::with_capacity(n);
        for w in offsets.windows(2) {
            let (a, b) = (w[0] as usize, w[1] as usize);
            if a > b || b > text_bytes.len() {
                bail!("`{shown}`: corrupt text offsets");
            }
            texts.push(
                std::str::from_utf8(&text_bytes[a..b])
                    .with_context(|| format!("`{shown}`: a text is not UTF-8"))?
                    .to_string(),
            );
        }
        Ok(Self {
            codes,
            texts,
            labels,
            label_names,
            meta: info,
        })
    }
}

fn le_bytes_u64(words: &[u64]) -> Vec<u8> {
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}

fn from_le_u64(bytes: &[u8]) -> Vec<u64> {
    bytes
        .chunks_exact(8)
        .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
        .collect()
}

/// SHA-256 (hex) of a file's bytes.
pub fn file_sha256(path: &Path) -> Result<String> {
    let mut f =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(format!("{:x}", hasher.finalize()))
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
