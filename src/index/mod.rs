//! A corpus's saved index: its entries' texts and labels with their codes, built from a
//! checkpoint, searched, and saved as one safetensors file beside the checkpoint.
//!
//! This file is the layer both kinds of index stand on: the entries of a corpus
//! ([`index_entries`]), where an index came from ([`IndexMeta`]), the one rule for when a saved
//! index may stand in for encoding the corpus again ([`IndexMeta::is_fresh`]), the cache beside a
//! checkpoint ([`load_or_build`]) and the parts of the file every index has (texts, labels,
//! metadata), written atomically and read through the hardened
//! [`crate::checkpoint::read_regular_file`]. On top of it:
//!
//! * [`binary`]: bit-packed codes searched by Hamming distance (binary sequence kinds, nash, lsh);
//! * [`continuous`]: μ (and σ) searched by cosine similarity or multi-sample matching (gaussian,
//!   bottleneck, nvdm).
//!
//! Both file formats share these tensors and metadata:
//!
//! | tensor         | dtype | shape          | content                                   |
//! |----------------|-------|----------------|-------------------------------------------|
//! | `labels`       | U32   | (n,)           | index into `label_names`; u32::MAX = none |
//! | `text_bytes`   | U8    | (total,)       | the entries' texts, UTF-8, concatenated   |
//! | `text_offsets` | U64   | (n + 1,)       | where each text starts (and the end)      |
//!
//! Metadata: `format` (each kind's own), its width (`bits` or `dim`), `label_names` (JSON), and
//! the provenance [`IndexMeta`] as JSON under `index`, including the SHA-256 of the checkpoint
//! file so a search notices an index built from another version of the model.

pub mod binary;
pub mod continuous;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use safetensors::{tensor::TensorView, Dtype, SafeTensors};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::checkpoint::{read_regular_file, write_atomically};
use crate::coder::Coder;
use crate::corpus::{Corpus, Split};

pub use binary::{CorpusIndex, Neighbor, INDEX_FORMAT};
pub use continuous::{ContinuousIndex, ContinuousNeighbor, CONTINUOUS_INDEX_FORMAT};

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

/// The model an index's codes come from: where its checkpoint is (and so its caches), what it
/// is, and the SHA-256 of the bytes it was loaded from. An index is stamped with that hash,
/// not with the file's as it is when the index is saved: the explorer holds a model while
/// `train` may replace its file, and an index of the old model's codes stamped with the new
/// file's hash was taken as fresh by every later `search`.
#[derive(Clone, Debug, PartialEq)]
pub struct CodeSource {
    pub checkpoint: PathBuf,
    /// The model's one-line description.
    pub model: String,
    pub sha256: String,
}

impl CodeSource {
    /// The model `coder` holds.
    pub fn of(coder: &Coder) -> Self {
        Self {
            checkpoint: coder.path().to_path_buf(),
            model: coder.config().describe(),
            sha256: coder.checkpoint_sha256().to_string(),
        }
    }

    /// The checkpoint file as it is now, for codes computed from it now (its description and
    /// hash are read from the file).
    pub fn of_file(checkpoint: &Path) -> Result<Self> {
        let ckpt = crate::checkpoint::Checkpoint::read(checkpoint, &candle_core::Device::Cpu)?;
        Ok(Self {
            checkpoint: checkpoint.to_path_buf(),
            model: ckpt.config.describe(),
            sha256: ckpt.sha256,
        })
    }
}

/// The splits the index cached beside a checkpoint holds.
pub const CACHED_SPLITS: [Split; 1] = [Split::Train];

impl IndexMeta {
    /// Whether the index was built from the checkpoint file as it is now.
    pub fn is_current_for(&self, checkpoint: &Path) -> Result<bool> {
        Ok(file_sha256(checkpoint)? == self.checkpoint_sha256)
    }

    /// The one freshness rule: an index (of codes `width` wide, as `index_width`) may stand in
    /// for encoding `corpus` with the model whose checkpoint bytes hash to `sha256` when it
    /// holds that corpus's train split ([`CACHED_SPLITS`]), at that width, built from that
    /// model ([`CodeSource::sha256`]). The explorer's Neighbors and Clusters tabs, `search` and
    /// `cluster` all ask this.
    pub fn is_fresh(
        &self,
        index_width: usize,
        sha256: &str,
        corpus: &Corpus,
        width: usize,
    ) -> bool {
        self.corpus_hash == corpus.hash
            && index_width == width
            && self.splits == CACHED_SPLITS.map(|s| s.to_string())
            && self.checkpoint_sha256 == sha256
    }
}

/// What every saved index is: a file of entries with their provenance and a code width, whose
/// codes come from a [`Coder`].
pub trait SavedIndex: Sized {
    /// One entry's code as the model gives it (bits as 0.0 / 1.0, or a posterior).
    type Code;
    /// An index of `codes` (all `width` wide) with their texts and labels.
    fn from_parts(
        width: usize,
        codes: &[Self::Code],
        texts: Vec<String>,
        labels: &[Option<String>],
        meta: IndexMeta,
    ) -> Result<Self>;
    /// The codes of `texts` under `coder` (an error for a model with the other kind of code).
    fn encode(
        coder: &Coder,
        texts: &[&str],
        progress: &mut dyn FnMut(f64),
    ) -> Result<Vec<Self::Code>>;
    /// Reads an index written by [`SavedIndex::save`].
    fn load(path: &Path) -> Result<Self>;
    /// Atomically writes the index to `path`.
    fn save(&self, path: &Path) -> Result<()>;
    fn meta(&self) -> &IndexMeta;
    /// Bits (binary) or dimensions (continuous) per code.
    fn width(&self) -> usize;
    /// The entries' texts, in order.
    fn texts(&self) -> &[String];

    /// [`IndexMeta::is_fresh`] for this index, and its entries are the texts of the corpus's
    /// cached splits, in order: a cache cut short or holding other texts under a valid header
    /// (a truncated or forged file) is rebuilt, not searched.
    fn is_fresh(&self, sha256: &str, corpus: &Corpus, width: usize) -> bool {
        let expected = CACHED_SPLITS.iter().flat_map(|&s| corpus.split(s));
        self.texts().iter().eq(expected.map(|e| &e.text))
            && self.meta().is_fresh(self.width(), sha256, corpus, width)
    }
}

/// An index of `splits` of `corpus` whose codes (`width` wide) come from `encode`, which
/// computes them with the model `source` names.
pub fn build_with<I: SavedIndex>(
    source: &CodeSource,
    width: usize,
    corpus: &Corpus,
    splits: &[Split],
    encode: &mut dyn FnMut(&[&str]) -> Result<Vec<I::Code>>,
) -> Result<I> {
    let entries = index_entries(source, corpus, splits)?;
    let codes = encode(&entries.texts.iter().map(String::as_str).collect::<Vec<_>>())?;
    I::from_parts(width, &codes, entries.texts, &entries.labels, entries.meta)
}

/// [`build_with`] encoding with `coder`.
pub fn build<I: SavedIndex>(
    coder: &Coder,
    corpus: &Corpus,
    splits: &[Split],
    progress: &mut dyn FnMut(f64),
) -> Result<I> {
    build_with(
        &CodeSource::of(coder),
        coder.latent_dim(),
        corpus,
        splits,
        &mut |texts| I::encode(coder, texts, progress),
    )
}

/// The index saved for `source`'s checkpoint when it is fresh for that model
/// ([`IndexMeta::is_fresh`]): the one at [`default_path`], else one beside the checkpoint
/// ([`cache_paths`]: a shipped cache read through `--cache-dir`); None when there is none, it
/// cannot be read or it is stale.
pub fn load_fresh<I: SavedIndex>(source: &CodeSource, corpus: &Corpus, width: usize) -> Option<I> {
    load_fresh_at(source, corpus, width).map(|(index, _)| index)
}

/// [`load_fresh`] with the path the index was read from.
fn load_fresh_at<I: SavedIndex>(
    source: &CodeSource,
    corpus: &Corpus,
    width: usize,
) -> Option<(I, PathBuf)> {
    first_fresh(&source.checkpoint, INDEX_SUFFIX, |path| {
        I::load(path)
            .ok()
            .filter(|ix| ix.is_fresh(&source.sha256, corpus, width))
    })
}

/// An index from [`load_or_build`] and where it lives.
#[derive(Clone, Debug)]
pub struct CachedIndex<I = CorpusIndex> {
    pub index: I,
    /// Where it was loaded from (its cache path, or beside the checkpoint) or saved to.
    pub path: PathBuf,
    /// Loaded from `path` rather than built now.
    pub from_disk: bool,
    /// Why a freshly built index could not be saved, if it could not.
    pub save_error: Option<String>,
}

impl<I> CachedIndex<I> {
    /// The same cached index with its index wrapped or converted by `f`.
    pub fn map<J>(self, f: impl FnOnce(I) -> J) -> CachedIndex<J> {
        CachedIndex {
            index: f(self.index),
            path: self.path,
            from_disk: self.from_disk,
            save_error: self.save_error,
        }
    }
}

/// The index saved beside `source`'s checkpoint if it is fresh for that model
/// ([`load_fresh`]), else the train split of `corpus` encoded by `encode` (with that model)
/// now and saved there for next time; a failed save is reported in the result, not an error.
/// Binary and continuous indexes share this policy (and the file name: a checkpoint has one
/// kind of code), and the command line and the explorer share it.
pub fn load_or_build<I: SavedIndex>(
    source: &CodeSource,
    corpus: &Corpus,
    width: usize,
    encode: &mut dyn FnMut(&[&str]) -> Result<Vec<I::Code>>,
) -> Result<CachedIndex<I>> {
    if let Some((index, path)) = load_fresh_at(source, corpus, width) {
        return Ok(CachedIndex {
            index,
            path,
            from_disk: true,
            save_error: None,
        });
    }
    let path = default_path(&source.checkpoint);
    let index = build_with::<I>(source, width, corpus, &CACHED_SPLITS, encode)?;
    // The cache path is this command's own file only if it is missing or an index already.
    let save_error =
        crate::checkpoint::check_output_target(&path, "an index", &is_index_file, false)
            .and_then(|()| index.save(&path))
            .err()
            .map(|e| format!("{e:#}"));
    Ok(CachedIndex {
        index,
        path,
        from_disk: false,
        save_error,
    })
}

/// The default index path of a checkpoint: `name.safetensors` → `name.index.safetensors`. A
/// checkpoint has one kind of code, so binary and continuous indexes share it.
pub fn default_path(checkpoint: &Path) -> PathBuf {
    cache_path(checkpoint, INDEX_SUFFIX)
}

/// The first of the index caches [`default_path`] and the shipped one beside the checkpoint
/// ([`cache_paths`]) that is a file: what the explorer says it loads (whether it is fresh is
/// the loader's to find).
pub fn existing_path(checkpoint: &Path) -> Option<PathBuf> {
    existing_cache(checkpoint, INDEX_SUFFIX)
}

/// The first of `checkpoint`'s caches with `suffix` ([`cache_paths`]) that is a file.
pub fn existing_cache(checkpoint: &Path, suffix: &str) -> Option<PathBuf> {
    cache_paths(checkpoint, suffix)
        .into_iter()
        .find(|p| p.is_file())
}

/// The suffix of a checkpoint's index cache: `NAME.index.safetensors`.
const INDEX_SUFFIX: &str = "index.safetensors";

/// The environment variable naming the directory for every cache a checkpoint gets (index,
/// map, meanings); `--cache-dir` sets it.
pub const CACHE_ENV: &str = "LATENT_TUI_CACHE";

/// Where the cache `NAME.SUFFIX` of the checkpoint `NAME.safetensors` lives, for reading and
/// writing alike:
/// - in the directory named by [`CACHE_ENV`] (`--cache-dir`) when it is set, as
///   `NAME-HASH.SUFFIX` (HASH: of the checkpoint's absolute path, so two `binary.safetensors`
///   in different directories never share a cache);
/// - else beside the checkpoint, `NAME.SUFFIX`, when that file exists or the checkpoint's
///   directory is writable (or not there at all): the default, unchanged;
/// - else (an installed, read-only checkpoint directory) in the user's cache directory,
///   `$XDG_CACHE_HOME/latent-tui` or `~/.cache/latent-tui`, as `NAME-HASH.SUFFIX`.
pub fn cache_path(checkpoint: &Path, suffix: &str) -> PathBuf {
    let stem = cache_stem(checkpoint);
    let keyed = |dir: PathBuf| {
        let absolute = std::fs::canonicalize(checkpoint)
            .or_else(|_| std::path::absolute(checkpoint))
            .unwrap_or_else(|_| checkpoint.to_path_buf());
        let hash = Sha256::digest(absolute.to_string_lossy().as_bytes());
        let short: String = hash[..6].iter().map(|b| format!("{b:02x}")).collect();
        // Created on first use; a failure surfaces as the save's error (a note, not fatal).
        let _ = std::fs::create_dir_all(&dir);
        dir.join(format!("{stem}-{short}.{suffix}"))
    };
    if let Some(dir) = std::env::var_os(CACHE_ENV).filter(|d| !d.is_empty()) {
        return keyed(PathBuf::from(dir));
    }
    let beside = beside_path(checkpoint, suffix);
    let dir = match checkpoint.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    // Only a directory that is there and read-only sends the caches elsewhere.
    if beside.exists() || !dir.is_dir() || is_writable_dir(&dir) {
        return beside;
    }
    match user_cache_dir() {
        Some(cache) => keyed(cache),
        None => beside,
    }
}

/// The checkpoint's file name without `.safetensors`: the start of its caches' names.
fn cache_stem(checkpoint: &Path) -> String {
    checkpoint
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into())
}

/// The cache `NAME.SUFFIX` beside the checkpoint `NAME.safetensors`.
fn beside_path(checkpoint: &Path, suffix: &str) -> PathBuf {
    checkpoint.with_file_name(format!("{}.{suffix}", cache_stem(checkpoint)))
}

/// Where a cache of `checkpoint` may be read, in order: its [`cache_path`] (where a new one is
/// saved), then, when that is elsewhere (`--cache-dir`, `LATENT_TUI_CACHE`, the user's cache
/// directory), the one beside the checkpoint: caches shipped with a checkpoint are used from
/// any cache directory, read only, while they are fresh by the cache's own rule
/// ([`IndexMeta::is_fresh`], the map's and the meanings' equivalents). The index, the map and
/// the bit meanings are all looked up through this.
pub fn cache_paths(checkpoint: &Path, suffix: &str) -> Vec<PathBuf> {
    let main = cache_path(checkpoint, suffix);
    let beside = beside_path(checkpoint, suffix);
    if main == beside {
        vec![main]
    } else {
        vec![main, beside]
    }
}

/// The first cache of `checkpoint`'s with `suffix` ([`cache_paths`]: the cache path, then
/// beside the checkpoint) that `load` reads and finds fresh, with where it was: how the index,
/// the map and the bit meanings look their caches up.
pub fn first_fresh<T>(
    checkpoint: &Path,
    suffix: &str,
    load: impl Fn(&Path) -> Option<T>,
) -> Option<(T, PathBuf)> {
    cache_paths(checkpoint, suffix)
        .into_iter()
        .find_map(|path| load(&path).map(|t| (t, path)))
}

/// `$XDG_CACHE_HOME/latent-tui`, else `$HOME/.cache/latent-tui`.
pub fn user_cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|d| !d.is_empty())
                .map(|h| PathBuf::from(h).join(".cache"))
        })?;
    Some(base.join("latent-tui"))
}

/// Whether this process may create files in the directory `dir`.
fn is_writable_dir(dir: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
            return false;
        };
        // SAFETY: `c` is a valid NUL-terminated path for the duration of the call.
        unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) == 0 }
    }
    #[cfg(not(unix))]
    {
        std::fs::metadata(dir).is_ok_and(|m| !m.permissions().readonly())
    }
}

/// The examples of some splits of a corpus as an index's entries, with the provenance of an
/// index built from them: what the binary and the continuous index both start from.
pub struct IndexEntries {
    pub texts: Vec<String>,
    pub labels: Vec<Option<String>>,
    pub meta: IndexMeta,
}

/// The entries of `splits` of `corpus` for an index of the model `source` names.
pub fn index_entries(
    source: &CodeSource,
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
            checkpoint: source.checkpoint.display().to_string(),
            checkpoint_sha256: source.sha256.clone(),
            model: source.model.clone(),
            corpus: corpus.name.clone(),
            corpus_hash: corpus.hash.clone(),
            splits: splits.iter().map(|s| s.to_string()).collect(),
        },
    })
}

/// The entries of a saved index, as both kinds hold them: texts, labels as indexes into the
/// sorted label names, and provenance.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Entries {
    pub texts: Vec<String>,
    /// Per entry, an index into `label_names`.
    pub labels: Vec<Option<u32>>,
    pub label_names: Vec<String>,
    pub meta: IndexMeta,
}

impl Entries {
    /// Texts with their labels as names; the names are sorted and numbered.
    pub fn new(texts: Vec<String>, labels: &[Option<String>], meta: IndexMeta) -> Self {
        let names: BTreeMap<&str, u32> = labels
            .iter()
            .flatten()
            .map(String::as_str)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .enumerate()
            .map(|(i, n)| (n, i as u32))
            .collect();
        Self {
            texts,
            labels: labels
                .iter()
                .map(|l| l.as_deref().map(|n| names[n]))
                .collect(),
            label_names: names.keys().map(|s| s.to_string()).collect(),
            meta,
        }
    }

    /// Entry `i`'s label name.
    pub fn label(&self, i: usize) -> Option<&str> {
        self.labels[i].map(|l| self.label_names[l as usize].as_str())
    }
}

/// The entries of an index as it holds them, borrowed for writing.
pub(crate) struct EntriesRef<'a> {
    pub texts: &'a [String],
    pub labels: &'a [Option<u32>],
    pub label_names: &'a [String],
    pub meta: &'a IndexMeta,
}

impl EntriesRef<'_> {
    /// Writes an index file: these entries plus the kind's own `tensors`, `format` and width
    /// (`width_key` = `bits` or `dim`), atomically to `path`.
    pub(crate) fn save(
        &self,
        path: &Path,
        format: &str,
        (width_key, width): (&str, usize),
        tensors: Vec<(&str, TensorView<'_>)>,
    ) -> Result<()> {
        let n = self.texts.len();
        let labels: Vec<u8> = self
            .labels
            .iter()
            .flat_map(|l| l.unwrap_or(u32::MAX).to_le_bytes())
            .collect();
        let mut text_bytes = Vec::new();
        let mut offsets = vec![0u64];
        for t in self.texts {
            text_bytes.extend_from_slice(t.as_bytes());
            offsets.push(text_bytes.len() as u64);
        }
        let offsets = le_bytes_u64(&offsets);
        let mut tensors: Vec<(&str, TensorView<'_>)> = tensors;
        tensors.extend([
            ("labels", TensorView::new(Dtype::U32, vec![n], &labels)?),
            (
                "text_bytes",
                TensorView::new(Dtype::U8, vec![text_bytes.len()], &text_bytes)?,
            ),
            (
                "text_offsets",
                TensorView::new(Dtype::U64, vec![n + 1], &offsets)?,
            ),
        ]);
        let mut meta = HashMap::new();
        meta.insert("format".to_string(), format.to_string());
        meta.insert(width_key.to_string(), width.to_string());
        meta.insert(
            "label_names".to_string(),
            serde_json::to_string(&self.label_names)?,
        );
        meta.insert("index".to_string(), serde_json::to_string(&self.meta)?);
        let bytes = safetensors::serialize(tensors, Some(meta)).context("serialising the index")?;
        write_atomically(path, &bytes)
    }
}

/// An index file read and checked up to its kind's own tensors: the bytes, the metadata, and
/// the entries every index has.
pub(crate) struct IndexFile {
    pub shown: String,
    bytes: Vec<u8>,
    metadata: HashMap<String, String>,
}

impl IndexFile {
    /// Reads `path` (a regular file) and checks that its `format` is `format`; `other` names
    /// formats worth a clearer error (`(format, message)`), `not_ours` is the error otherwise.
    pub fn read(path: &Path, format: &str, other: &[(&str, &str)], not_ours: &str) -> Result<Self> {
        let shown = path.display().to_string();
        let bytes = read_regular_file(path, "index", crate::checkpoint::max_bytes::INDEX)?;
        crate::checkpoint::check_header_size(
            &bytes,
            MAX_INDEX_HEADER_BYTES,
            &format!("index `{shown}`"),
        )?;
        let (_, header) = SafeTensors::read_metadata(&bytes)
            .map_err(|e| anyhow::anyhow!("`{shown}` is not a valid index file: {e}"))?;
        SafeTensors::deserialize(&bytes)
            .map_err(|e| anyhow::anyhow!("`{shown}` is not a valid index file: {e}"))?;
        let metadata = header.metadata().clone().unwrap_or_default();
        match metadata.get("format").map(String::as_str) {
            Some(f) if f == format => {}
            found => {
                if let Some((_, msg)) = other.iter().find(|(o, _)| Some(*o) == found) {
                    bail!("`{shown}` {msg}");
                }
                bail!("`{shown}` {not_ours}");
            }
        }
        Ok(Self {
            shown,
            bytes,
            metadata,
        })
    }

    /// A metadata entry.
    pub fn field(&self, k: &str) -> Result<&str> {
        self.metadata
            .get(k)
            .map(String::as_str)
            .with_context(|| format!("`{}` lacks the `{k}` metadata entry", self.shown))
    }

    /// The code width under `key` (`bits` or `dim`).
    pub fn width(&self, key: &str) -> Result<usize> {
        self.field(key)?
            .parse()
            .with_context(|| format!("`{}`: `{key}` is not a number", self.shown))
    }

    /// The tensors (checked readable by [`IndexFile::read`]).
    pub fn tensors(&self) -> SafeTensors<'_> {
        SafeTensors::deserialize(&self.bytes).expect("checked when read")
    }

    /// Tensor `name`, which must have `dtype`.
    pub fn tensor<'a>(
        &self,
        st: &SafeTensors<'a>,
        name: &str,
        dtype: Dtype,
    ) -> Result<TensorView<'a>> {
        let t = st
            .tensor(name)
            .map_err(|e| anyhow::anyhow!("`{}`: tensor `{name}`: {e}", self.shown))?;
        if t.dtype() != dtype {
            bail!(
                "`{}`: tensor `{name}` is {:?}, expected {dtype:?}",
                self.shown,
                t.dtype()
            );
        }
        Ok(t)
    }

    /// The texts, labels, label names and provenance, checked against each other.
    pub fn entries(&self) -> Result<Entries> {
        let shown = &self.shown;
        let label_names: Vec<String> = serde_json::from_str(self.field("label_names")?)
            .with_context(|| format!("`{shown}`: bad `label_names`"))?;
        let meta: IndexMeta = serde_json::from_str(self.field("index")?)
            .with_context(|| format!("`{shown}`: bad `index` metadata"))?;
        let st = self.tensors();
        let labels_view = self.tensor(&st, "labels", Dtype::U32)?;
        if labels_view.shape().len() != 1 {
            bail!(
                "`{shown}`: tensor `labels` has shape {:?}, expected one dimension",
                labels_view.shape()
            );
        }
        let labels: Vec<Option<u32>> = labels_view
            .data()
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
            .map(|l| (l != u32::MAX).then_some(l))
            .collect();
        let n = labels.len();
        let texts = index_texts(
            &format!("`{shown}`"),
            &self.tensor(&st, "text_bytes", Dtype::U8)?,
            &self.tensor(&st, "text_offsets", Dtype::U64)?,
            n,
        )?;
        if labels
            .iter()
            .flatten()
            .any(|&l| l as usize >= label_names.len())
        {
            bail!("`{shown}`: a label is outside the label names");
        }
        Ok(Entries {
            texts,
            labels,
            label_names,
            meta,
        })
    }
}

/// Whether `path` holds a latent-tui index (binary or continuous), by its header.
pub fn is_index_file(path: &Path) -> bool {
    matches!(
        crate::checkpoint::safetensors_format(path).as_deref(),
        Some(binary::INDEX_FORMAT | continuous::CONTINUOUS_INDEX_FORMAT)
    )
}

/// Largest safetensors header an index may declare: its metadata is a few label names and
/// hashes, so anything near this is corrupt or hostile.
pub const MAX_INDEX_HEADER_BYTES: u64 = 16 << 20;

/// The texts of an index of `n` entries from its `text_bytes` (shape `(bytes,)`) and
/// `text_offsets` (shape `(n + 1,)`: 0, then where each text ends, rising, the last one the end
/// of the bytes), every text UTF-8. Anything else is a corrupt index.
fn index_texts(
    shown: &str,
    bytes: &TensorView<'_>,
    offsets: &TensorView<'_>,
    n: usize,
) -> Result<Vec<String>> {
    if bytes.shape().len() != 1 {
        bail!(
            "{shown}: tensor `text_bytes` has shape {:?}, expected one dimension",
            bytes.shape()
        );
    }
    if offsets.shape() != [n + 1] {
        bail!(
            "{shown}: tensor `text_offsets` has shape {:?}, expected ({},) for {n} entries",
            offsets.shape(),
            n + 1
        );
    }
    let text_bytes = bytes.data();
    let offsets = from_le_u64(offsets.data());
    if offsets.first() != Some(&0) {
        bail!("{shown}: corrupt text offsets (the first is not 0)");
    }
    if offsets.last() != Some(&(text_bytes.len() as u64)) {
        bail!(
            "{shown}: corrupt text offsets (the last is not the end of the {} text bytes)",
            text_bytes.len()
        );
    }
    let mut texts = Vec::with_capacity(n);
    for (i, w) in offsets.windows(2).enumerate() {
        if w[0] > w[1] {
            bail!("{shown}: corrupt text offsets (entry {i} ends before it starts)");
        }
        let (a, b) = (w[0] as usize, w[1] as usize);
        texts.push(
            std::str::from_utf8(&text_bytes[a..b])
                .with_context(|| format!("{shown}: text {i} is not UTF-8"))?
                .to_string(),
        );
    }
    Ok(texts)
}

pub(crate) fn le_bytes_u64(words: &[u64]) -> Vec<u8> {
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}

pub(crate) fn from_le_u64(bytes: &[u8]) -> Vec<u64> {
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

    fn corpus(hash: &str) -> Corpus {
        Corpus {
            name: "c".into(),
            hash: hash.into(),
            train: Vec::new(),
            valid: Vec::new(),
            test: Vec::new(),
            skipped: Default::default(),
        }
    }

    #[test]
    fn one_freshness_rule_for_every_cached_index() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let checkpoint = dir.path().join("m.safetensors");
        std::fs::write(&checkpoint, b"weights")?;
        let held = file_sha256(&checkpoint)?;
        let meta = IndexMeta {
            checkpoint_sha256: held.clone(),
            corpus_hash: "h".into(),
            splits: vec!["train".into()],
            ..IndexMeta::default()
        };
        assert!(meta.is_fresh(8, &held, &corpus("h"), 8));
        assert!(!meta.is_fresh(8, &held, &corpus("other"), 8), "corpus");
        assert!(!meta.is_fresh(8, &held, &corpus("h"), 16), "width");
        let all = IndexMeta {
            splits: vec!["train".into(), "valid".into()],
            ..meta.clone()
        };
        assert!(!all.is_fresh(8, &held, &corpus("h"), 8), "splits");
        // Another model (the file retrained and loaded again) is another hash.
        std::fs::write(&checkpoint, b"retrained weights")?;
        assert!(
            !meta.is_fresh(8, &file_sha256(&checkpoint)?, &corpus("h"), 8),
            "checkpoint"
        );
        Ok(())
    }

    #[test]
    fn both_kinds_read_through_the_regular_file_check() {
        for err in [
            CorpusIndex::load(Path::new("/dev/zero")).unwrap_err(),
            ContinuousIndex::load(Path::new("/dev/zero")).unwrap_err(),
        ] {
            assert!(err.to_string().contains("not a regular file"), "{err}");
        }
    }

    #[test]
    fn each_kind_names_the_other_kinds_file() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("x.index.safetensors");
        let posterior = crate::coder::Posterior {
            mean: vec![1.0, 0.0],
            std: None,
        };
        ContinuousIndex::from_parts(
            2,
            &[posterior],
            vec!["x".into()],
            &[None],
            IndexMeta::default(),
        )?
        .save(&path)?;
        let err = CorpusIndex::load(&path).unwrap_err().to_string();
        assert!(err.contains("continuous-code (cosine) index"), "{err}");
        Ok(())
    }
}
