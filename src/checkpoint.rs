//! One self-describing safetensors file per model.
//!
//! Weights are ordinary safetensors tensors (f32, or f16 with `Storage::F16`); the safetensors
//! header's metadata map carries everything else as text:
//!
//! | key          | value                                                          |
//! |--------------|----------------------------------------------------------------|
//! | `format`     | `latent-tui/1`                                                 |
//! | `config`     | the model config as JSON ([`ModelConfig`])                     |
//! | `tokenizer`  | the vocabulary as standard `tokenizer.json` text               |
//! | `provenance` | training provenance as JSON ([`Provenance`])                   |
//!
//! Saving writes a temporary file beside the target, syncs it and renames it over the target,
//! so a crash never leaves a half-written checkpoint; temporaries of saves that were killed are
//! removed by the next save once their process is gone.
//!
//! Reading trusts nothing in the file: it must be a regular file; the config's sizes must be
//! within bounds ([`ModelConfig::validate`]) and match the stored tensors' shapes before any
//! model is allocated from it ([`crate::model::check_shapes`]); weights must be floating point
//! and finite. Non-finite metrics in the provenance are stored as text, since JSON has no
//! infinity or NaN.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use serde::{Deserialize, Serialize};

use crate::corpus::{Corpus, LoadOptions};
use crate::model::{named_vars, ModelConfig};
use crate::printable::Shown;
use crate::vocab::Vocab;

pub const FORMAT: &str = "latent-tui/1";

/// Where a checkpoint came from.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct Provenance {
    /// Optimiser steps taken.
    pub step: u64,
    pub corpus: String,
    /// SHA-256 of the corpus files the model was trained on.
    pub corpus_hash: String,
    pub seed: u64,
    /// Last training and validation figures, e.g. `valid_ppl`. JSON has no infinity or NaN,
    /// so non-finite values are stored as the strings `"inf"`, `"-inf"` and `"NaN"` (and a
    /// `null` written by older versions reads back as NaN): a diverged metric never makes a
    /// checkpoint unreadable.
    #[serde(with = "finite_or_text")]
    pub metrics: BTreeMap<String, f64>,
    /// The full training configuration, so `train --resume` can continue it.
    pub train_config: Option<serde_json::Value>,
    /// The latent-tui version that wrote the file.
    pub written_by: String,
    /// The `--corpus` the model was trained on as given (`wordnet`, or an absolute path), so
    /// `eval`, `index` and `probe` can find a corpus file again without `--corpus`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub corpus_source: Option<String>,
}

/// Whether a provenance metric is a KL figure (`train_kl`, `valid_kl`): recorded only for a
/// model with a KL term ([`ModelConfig::has_kl`]); runs before that recorded 0 for the others.
pub fn is_kl_metric(name: &str) -> bool {
    name == "kl" || name.ends_with("_kl")
}

/// The `--corpus` name of the corpus bundled into the binary.
const BUNDLED_CORPUS: &str = "wordnet";

/// Trees of special and system files a checkpoint's corpus path must never lead into.
const SYSTEM_TREES: [&str; 9] = [
    "/proc", "/sys", "/dev", "/run", "/etc", "/boot", "/var/run", "/var/log", "/var/lib",
];

/// Refuses a corpus path named by a file (`named_by`: "the checkpoint", a training config)
/// that is (or resolves, through links, into) a special or system file, before anything reads
/// it. For a directory, so is every split file in it the corpus loader would open
/// (`train.tsv`, `valid.txt.gz`, …): a link planted there leads as far as the directory's own
/// path. The bundled corpus's name is not a path.
pub fn refuse_system_corpus(spec: &str, named_by: &str) -> Result<()> {
    if spec == BUNDLED_CORPUS {
        return Ok(());
    }
    let spec_shown = Shown(spec);
    let path = Path::new(spec);
    let refused = || {
        anyhow::anyhow!(
            "{named_by} names `{spec_shown}` as its corpus, a special or system file; it is not read. Pass --corpus PATH"
        )
    };
    let system = |p: &Path| SYSTEM_TREES.iter().any(|tree| p.starts_with(tree));
    let real = fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let meta = fs::metadata(&real).with_context(|| format!("cannot read corpus path `{spec}`"))?;
    if system(&real) || system(path) || !(meta.is_file() || meta.is_dir()) {
        return Err(refused());
    }
    if meta.is_dir() {
        for name in crate::corpus::split_file_names() {
            let file = real.join(&name);
            if fs::symlink_metadata(&file).is_err() {
                continue;
            }
            let target = fs::canonicalize(&file).unwrap_or(file);
            let special = fs::metadata(&target).is_ok_and(|m| !m.is_file());
            if system(&target) || special {
                return Err(anyhow::anyhow!(
                    "{named_by} names `{spec_shown}` as its corpus, whose `{name}` leads to a special or system file; it is not read. Pass --corpus PATH"
                ));
            }
        }
    }
    Ok(())
}

/// Serde for metric maps whose values may be infinite or NaN (see [`Provenance::metrics`]).
mod finite_or_text {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    #[serde(untagged)]
    enum Stored {
        Number(f64),
        Text(String),
        Null(()),
    }

    pub fn serialize<S: Serializer>(map: &BTreeMap<String, f64>, s: S) -> Result<S::Ok, S::Error> {
        let stored: BTreeMap<&String, Stored> = map
            .iter()
            .map(|(k, &v)| {
                let value = if v.is_finite() {
                    Stored::Number(v)
                } else if v.is_nan() {
                    Stored::Text("NaN".into())
                } else if v > 0.0 {
                    Stored::Text("inf".into())
                } else {
                    Stored::Text("-inf".into())
                };
                (k, value)
            })
            .collect();
        stored.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, f64>, D::Error> {
        let stored = BTreeMap::<String, Stored>::deserialize(d)?;
        stored
            .into_iter()
            .map(|(k, v)| {
                let value = match v {
                    Stored::Number(x) => x,
                    Stored::Null(()) => f64::NAN,
                    Stored::Text(t) => match t.as_str() {
                        "inf" | "+inf" | "Infinity" => f64::INFINITY,
                        "-inf" | "-Infinity" => f64::NEG_INFINITY,
                        "NaN" | "nan" => f64::NAN,
                        other => other.parse().map_err(|_| {
                            serde::de::Error::custom(format!(
                                "metric `{k}` is `{other}`, not a number"
                            ))
                        })?,
                    },
                };
                Ok((k, value))
            })
            .collect()
    }
}

impl Provenance {
    /// The corpus to read again for this checkpoint without a `--corpus`: the bundled one, or
    /// the file or directory training read if it is still there (the absolute path stored in
    /// [`Provenance::corpus_source`]; older checkpoints only have [`Provenance::corpus`]). None
    /// if it is gone. Nothing here is checked yet: [`Provenance::corpus`] reads it.
    pub fn stored_corpus(&self) -> Option<String> {
        let exists = |p: &str| !p.is_empty() && Path::new(p).exists();
        match &self.corpus_source {
            Some(src) if src == BUNDLED_CORPUS || exists(src) => return Some(src.clone()),
            _ => {}
        }
        if self.corpus.is_empty() || self.corpus == BUNDLED_CORPUS {
            Some(BUNDLED_CORPUS.into())
        } else if exists(&self.corpus) {
            Some(self.corpus.clone())
        } else {
            None
        }
    }

    /// The corpus a command works on, the one lookup every command and the explorer share:
    /// `given` (a `--corpus`, read as the user named it) if any, else the checkpoint's own.
    ///
    /// A checkpoint is untrusted input, so its own corpus path is used only when it is an
    /// ordinary file or directory outside the system's special trees (`/proc`, `/sys`, `/dev`,
    /// `/etc`, …), and only if what it holds now has the SHA-256 the provenance recorded
    /// ([`Provenance::corpus_hash`]); otherwise the error says so and asks for `--corpus`.
    /// Every line is kept (no length filter), as the measuring commands want.
    pub fn corpus(&self, given: Option<&str>) -> Result<Corpus> {
        let all = LoadOptions {
            min_words: 1,
            max_words: usize::MAX,
        };
        if let Some(spec) = given {
            return Corpus::load(spec, &all);
        }
        let Some(spec) = self.stored_corpus() else {
            bail!(
                "the checkpoint was trained on `{}`, which is not here any more; pass --corpus PATH",
                self.corpus_shown()
            );
        };
        if spec == BUNDLED_CORPUS {
            return Corpus::load(&spec, &all);
        }
        refuse_system_corpus(&spec, "the checkpoint")?;
        let corpus = Corpus::load(&spec, &all)?;
        if corpus.hash != self.corpus_hash {
            let short = |h: &str| h.chars().take(12).collect::<String>();
            let recorded = if self.corpus_hash.is_empty() {
                "records no corpus hash".to_string()
            } else {
                format!("records sha256 {}…", short(&self.corpus_hash))
            };
            bail!(
                "`{spec}` is not the corpus the checkpoint was trained on (it has sha256 {}…; the checkpoint {recorded}); pass --corpus PATH to use it or another corpus anyway",
                short(&corpus.hash)
            );
        }
        Ok(corpus)
    }

    /// The checkpoint's own corpus as a `--corpus` spec (the bundled name or the path found by
    /// [`Provenance::stored_corpus`]), checked as [`Provenance::corpus`] checks it: never a
    /// special or system file, and only when it holds the corpus training recorded. What
    /// `train --init CKPT` trains on without a `--corpus`.
    pub fn checked_corpus_spec(&self) -> Result<String> {
        if let Some(spec) = self.stored_corpus().filter(|s| s == BUNDLED_CORPUS) {
            return Ok(spec);
        }
        self.corpus(None)?;
        self.stored_corpus()
            .context("the checkpoint's corpus went away while it was being read")
    }

    /// Where the training corpus was, for messages: the stored path or the corpus name.
    pub fn corpus_shown(&self) -> &str {
        self.corpus_source.as_deref().unwrap_or(&self.corpus)
    }

    /// The provenance as `info --json` writes it: a KL metric ([`is_kl_metric`]) of a model
    /// without a KL term (`has_kl` false: [`ModelConfig::has_kl`]) is `null`, not the 0 an
    /// older run recorded for it.
    pub fn to_json(&self, has_kl: bool) -> Result<serde_json::Value> {
        let mut v = serde_json::to_value(self)?;
        if !has_kl {
            if let Some(metrics) = v.get_mut("metrics").and_then(|m| m.as_object_mut()) {
                for (k, m) in metrics.iter_mut() {
                    if is_kl_metric(k) {
                        *m = serde_json::Value::Null;
                    }
                }
            }
        }
        Ok(v)
    }

    /// Summary lines: steps, corpus, seed and the last metrics (a KL metric of a model without
    /// a KL term, `has_kl` false, as `none`).
    pub fn describe(&self, has_kl: bool) -> String {
        // Every string here comes from the (untrusted) checkpoint: shown, never obeyed.
        let hash: String = self.corpus_hash.chars().take(12).collect();
        let mut s = format!(
            "  trained {} steps on `{}` (seed {}, corpus sha256 {})\n",
            self.step,
            Shown(&self.corpus),
            self.seed,
            Shown(&hash)
        );
        // A run started from another checkpoint (`train --init`) trained only its own steps
        // here: say from which file, or "trained 1500 steps" read as the whole training.
        if let Some(init) = self
            .train_config
            .as_ref()
            .and_then(|c| c.get("init"))
            .and_then(|v| v.as_str())
        {
            // The path as recorded: a file name alone read as "started from itself" when the
            // run was converted back onto the name it started from.
            s += &format!(
                "  started from the weights of `{}` (train --init): the steps above are this run's only\n",
                Shown(init)
            );
        }
        if !self.metrics.is_empty() {
            let m: Vec<String> = self
                .metrics
                .iter()
                .map(|(k, v)| {
                    if !has_kl && is_kl_metric(k) {
                        format!("{} none", Shown(k))
                    } else {
                        format!("{} {v:.3}", Shown(k))
                    }
                })
                .collect();
            s += &format!("  last metrics: {}\n", m.join(", "));
            if self.metrics.keys().any(|k| k.starts_with("train_")) {
                s += "  (train_ figures are per token of the last steps, valid_ per word: the two compare only for a word-level vocabulary)\n";
            }
        }
        s
    }
}

/// How weights are stored on disk; they are always f32 in memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Storage {
    #[default]
    F32,
    /// Half precision: half the size, ~3 significant digits per weight. A tensor with a weight
    /// beyond half precision's ±65,504 is kept in f32 ([`HALF_MAX`]): the file then mixes the
    /// two, which safetensors allows and every reader here reads (each tensor by its own dtype).
    F16,
}

/// The largest magnitude half precision holds; a tensor with a weight beyond it is saved in
/// f32 by a [`Storage::F16`] save rather than as an infinity (which every reader refuses) or
/// clamped (which would change the model).
pub const HALF_MAX: f32 = 65504.0;

/// Atomically writes `tensors` with the config, vocabulary and provenance to `path`.
pub fn save(
    path: &Path,
    tensors: &[(String, Tensor)],
    config: &ModelConfig,
    vocab: &Vocab,
    provenance: &Provenance,
    storage: Storage,
) -> Result<()> {
    write_atomically(
        path,
        &checkpoint_bytes(tensors, config, vocab, provenance, storage)?,
    )
}

/// The bytes of a checkpoint file holding `tensors` with the config, vocabulary and provenance.
fn checkpoint_bytes(
    tensors: &[(String, Tensor)],
    config: &ModelConfig,
    vocab: &Vocab,
    provenance: &Provenance,
    storage: Storage,
) -> Result<Vec<u8>> {
    let mut meta = HashMap::new();
    meta.insert("format".to_string(), FORMAT.to_string());
    meta.insert("config".to_string(), serde_json::to_string(config)?);
    meta.insert("tokenizer".to_string(), vocab.to_json()?);
    meta.insert("provenance".to_string(), serde_json::to_string(provenance)?);
    let dtype = match storage {
        Storage::F32 => DType::F32,
        Storage::F16 => DType::F16,
    };
    let mut stored: Vec<(String, Tensor)> = Vec::with_capacity(tensors.len());
    for (name, t) in tensors {
        let mut s = t.to_dtype(dtype)?.contiguous()?;
        // Half precision ends at ±65,504: a larger weight would be stored as infinite, and
        // every reader refuses a file with one. Such a tensor is kept in f32, so the model
        // saved is the model held (the save never fails for it, a training run never stops at
        // it); `full_precision_tensors` names them afterwards. (The source's widest weight is
        // looked up only for a stored tensor that overflowed; a source that is itself not
        // finite is stored as it is, and refused by every reader.)
        let max_abs = |t: &Tensor| -> Result<f32> {
            Ok(t.to_dtype(DType::F32)?
                .abs()?
                .flatten_all()?
                .max(0)?
                .to_scalar::<f32>()?)
        };
        if storage == Storage::F16
            && t.elem_count() > 0
            && !max_abs(&s)?.is_finite()
            && max_abs(t)?.is_finite()
        {
            s = t.to_dtype(DType::F32)?.contiguous()?;
        }
        stored.push((name.clone(), s));
    }
    safetensors::serialize(stored.iter().map(|(n, t)| (n.as_str(), t)), Some(meta))
        .context("serialising checkpoint")
}

/// Saves every parameter of `varmap` under its name.
pub fn save_varmap(
    path: &Path,
    varmap: &VarMap,
    config: &ModelConfig,
    vocab: &Vocab,
    provenance: &Provenance,
    storage: Storage,
) -> Result<()> {
    stage_varmap(path, varmap, config, vocab, provenance, storage)?.commit()
}

/// [`save_varmap`] up to the rename: the checkpoint written and synced to its temporary, put in
/// place by [`Staged::commit`] (a training run renames its optimiser state first, so a failed
/// save leaves both files as they were).
pub fn stage_varmap(
    path: &Path,
    varmap: &VarMap,
    config: &ModelConfig,
    vocab: &Vocab,
    provenance: &Provenance,
    storage: Storage,
) -> Result<Staged> {
    let tensors: Vec<(String, Tensor)> = named_vars(varmap)
        .into_iter()
        .map(|(n, v)| (n, v.as_tensor().clone()))
        .collect();
    stage(
        path,
        &checkpoint_bytes(&tensors, config, vocab, provenance, storage)?,
    )
}

/// Writes `bytes` to a temporary sibling of `path`, syncs, then renames it into place.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    stage(path, bytes)?.commit()
}

/// A file written and synced to its temporary sibling (`.NAME.PID.tmp`), not yet renamed into
/// place: [`Staged::commit`] renames it; dropped uncommitted, the temporary is removed. Files
/// that belong together (a checkpoint and its optimiser state, a corpus's splits) are all
/// staged before any is renamed, so a failed write replaces none of them.
#[derive(Debug)]
pub struct Staged {
    tmp: PathBuf,
    path: PathBuf,
    committed: bool,
}

impl Staged {
    /// The temporary of a file written in pieces (a stream, a gzip encoder), open for writing:
    /// checked and created as [`stage`] does (never over a device, pipe or directory; the
    /// temporaries of killed saves removed; a replaced file's permissions kept), in a directory
    /// that exists. The caller writes and syncs the file, then [`Staged::commit`]s; dropped
    /// uncommitted, the temporary is removed.
    pub fn create(path: &Path) -> Result<(Staged, fs::File)> {
        if let Ok(meta) = fs::metadata(path) {
            // Renaming over a device, pipe or directory would replace the node itself (as root,
            // `/dev/null` became a regular file).
            if !meta.is_file() {
                bail!(
                    "`{}` is not a regular file; refusing to replace it",
                    path.display()
                );
            }
        }
        let (tmp, file) = temporary_for(path)?;
        Ok((
            Staged {
                tmp,
                path: path.to_path_buf(),
                committed: false,
            },
            file,
        ))
    }

    /// Renames the temporary over the file it stands for.
    pub fn commit(mut self) -> Result<()> {
        fs::rename(&self.tmp, &self.path).with_context(|| {
            format!("renaming {} to {}", self.tmp.display(), self.path.display())
        })?;
        self.committed = true;
        Ok(())
    }

    /// The path the file will have once committed.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where the file is written until it is committed.
    pub fn temporary(&self) -> &Path {
        &self.tmp
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

/// Renames each of `staged` into place, in order: the first rename is where a failure can still
/// leave every file as it was.
pub fn commit_all(staged: Vec<Staged>) -> Result<()> {
    for s in staged {
        s.commit()?;
    }
    Ok(())
}

/// The directory `path` is in (`.` for a bare file name).
fn parent_dir(path: &Path) -> &Path {
    path.parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// The file name of an output path, or the error that it names none.
fn file_name(path: &Path) -> Result<std::borrow::Cow<'_, str>> {
    Ok(path
        .file_name()
        .with_context(|| format!("`{}` is not a file path", path.display()))?
        .to_string_lossy())
}

/// [`write_atomically`] up to the rename: `bytes` written and synced to the temporary sibling of
/// `path`, which [`Staged::commit`] renames into place.
pub fn stage(path: &Path, bytes: &[u8]) -> Result<Staged> {
    let dir = parent_dir(path);
    fs::create_dir_all(dir).with_context(|| format!("creating directory {}", dir.display()))?;
    let (staged, mut f) = Staged::create(path)?;
    let tmp = &staged.tmp;
    f.write_all(bytes)
        .with_context(|| format!("writing {}", tmp.display()))?;
    f.sync_all()
        .with_context(|| format!("syncing {}", tmp.display()))?;
    Ok(staged)
}

/// Where a save of `path` by this process writes before renaming: `.NAME.PID.tmp` beside it
/// (the name [`remove_stale_temporaries`] recognises once the process is gone).
pub fn temporary_path(path: &Path) -> Result<PathBuf> {
    let name = file_name(path)?;
    Ok(parent_dir(path).join(format!(".{name}.{}.tmp", std::process::id())))
}

/// The temporary a save of `path` writes before renaming it into place (`.NAME.PID.tmp` beside
/// it), created afresh ([`create_temporary`]) after removing the temporaries of saves of `path`
/// that were killed mid-write. When `path` exists, the temporary gets its permissions, so that a
/// replaced file keeps them (a private 0600 checkpoint or index stays private).
pub fn temporary_for(path: &Path) -> Result<(PathBuf, fs::File)> {
    let (dir, name) = (parent_dir(path), file_name(path)?);
    remove_stale_temporaries(dir, &name);
    let tmp = temporary_path(path)?;
    let file = create_temporary(&tmp)?;
    if let Some(meta) = fs::metadata(path).ok().filter(|m| m.is_file()) {
        if let Err(e) = file.set_permissions(meta.permissions()) {
            drop(file);
            let _ = fs::remove_file(&tmp);
            return Err(e).with_context(|| {
                format!(
                    "giving {} the permissions of {}",
                    tmp.display(),
                    path.display()
                )
            });
        }
    }
    Ok((tmp, file))
}

/// Creates the temporary file `tmp` afresh (O_EXCL) after removing whatever has that name,
/// never opening it through a link planted there (in a shared directory), which would be
/// followed and its target overwritten.
pub fn create_temporary(tmp: &Path) -> Result<fs::File> {
    let _ = fs::remove_file(tmp);
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(tmp)
        .with_context(|| format!("creating {}", tmp.display()))
}

/// Checks a path a command is about to write, before the work starts: a missing file is
/// fine; a directory, device, pipe or socket is refused; an existing regular file is replaced
/// only when `ours` says it is what the command itself writes (its own earlier output) or with
/// `force`. `what` names what is written, e.g. "a latent-tui checkpoint".
pub fn check_output_target(
    path: &Path,
    what: &str,
    ours: &dyn Fn(&Path) -> bool,
    force: bool,
) -> Result<()> {
    check_output_target_or(
        path,
        what,
        ours,
        force,
        "choose another path, or pass --force to replace it",
    )
}

/// The longest file name most file systems take (ext4, xfs, btrfs, tmpfs: 255 bytes).
const NAME_MAX: usize = 255;
/// What a save's temporary adds to the name: `.` before, `.PID.tmp` after (a PID of up to ten
/// digits).
const TEMPORARY_EXTRA: usize = 1 + 1 + 10 + 4;

/// The longest file name an output may have: a save writes `.NAME.PID.tmp` beside it.
pub fn max_output_name_len() -> usize {
    NAME_MAX - TEMPORARY_EXTRA
}

/// Whether `path` as spelled can only name a directory: it ends with `/` or `/.` (a path
/// library would read `newdir/` as the file `newdir`, and the save fail only at its rename).
fn names_a_directory(path: &Path) -> bool {
    let bytes = path.as_os_str().as_encoded_bytes();
    bytes.ends_with(b"/")
        || bytes.ends_with(b"/.")
        || bytes == b"."
        || (cfg!(windows) && (bytes.ends_with(b"\\") || bytes.ends_with(b"\\.")))
}

/// [`check_output_target`] where `remedy` says what to do about an existing file that is not
/// `what` (the command line's "pass --force"; the explorer's Train tab has no such flag).
pub fn check_output_target_or(
    path: &Path,
    what: &str,
    ours: &dyn Fn(&Path) -> bool,
    force: bool,
    remedy: &str,
) -> Result<()> {
    let shown = path.display();
    if path.file_name().is_none() || names_a_directory(path) {
        bail!("`{shown}` is not a file path; {what} is written to a file");
    }
    // The save writes `.NAME.PID.tmp` beside it first (and `train` a `.NAME.lock`): a name
    // too long for those fails only at the end, the work lost.
    let name_len = path.file_name().map_or(0, |n| n.as_encoded_bytes().len());
    if name_len + TEMPORARY_EXTRA > NAME_MAX {
        bail!(
            "the file name of `{shown}` is {name_len} bytes, too long for the temporary a save writes beside it (at most {} bytes)",
            NAME_MAX - TEMPORARY_EXTRA
        );
    }
    match fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                if let Ok(meta) = fs::metadata(parent) {
                    if !meta.is_dir() {
                        bail!("`{}` is not a directory, so `{shown}` cannot be written", parent.display());
                    }
                }
            }
            Ok(())
        }
        Err(e) => Err(e).with_context(|| format!("cannot check the output path `{shown}`")),
        Ok(meta) if meta.is_dir() => {
            bail!("`{shown}` is a directory; {what} is written to a file: name one inside it")
        }
        Ok(meta) if !meta.is_file() => bail!(
            "`{shown}` is not a regular file (a device, pipe or socket); {what} is written only to a new or regular file"
        ),
        Ok(_) if force || ours(path) => Ok(()),
        Ok(_) => bail!(
            "`{shown}` exists and is not {what}; refusing to overwrite it ({remedy})"
        ),
    }
}

/// The `format` a safetensors file's metadata declares, reading only its (bounded) header;
/// None for anything else. What output checks use to recognise their own files.
pub fn safetensors_format(path: &Path) -> Option<String> {
    safetensors_metadata(path)?
        .get("format")?
        .as_str()
        .map(str::to_owned)
}

/// Whether `path` holds a latent-tui checkpoint of the same training run as `provenance`
/// (same corpus, seed and training config; any step): what `convert` may replace.
pub fn is_checkpoint_of_run(path: &Path, provenance: &Provenance) -> bool {
    let Some(meta) = safetensors_metadata(path) else {
        return false;
    };
    if meta.get("format").and_then(|f| f.as_str()) != Some(FORMAT) {
        return false;
    }
    let Some(theirs) = meta
        .get("provenance")
        .and_then(|p| p.as_str())
        .and_then(|p| serde_json::from_str::<Provenance>(p).ok())
    else {
        return false;
    };
    theirs.corpus_hash == provenance.corpus_hash
        && theirs.seed == provenance.seed
        && theirs.train_config == provenance.train_config
}

/// The header of a safetensors file (tensor entries and `__metadata__`), reading only it,
/// bounded by [`MAX_HEADER_BYTES`].
fn safetensors_header(path: &Path) -> Option<serde_json::Map<String, serde_json::Value>> {
    use std::io::Read;
    let mut f = fs::File::open(path).ok()?;
    let mut len = [0u8; 8];
    f.read_exact(&mut len).ok()?;
    let n = u64::from_le_bytes(len);
    if n > MAX_HEADER_BYTES {
        return None;
    }
    let mut header = vec![0u8; n as usize];
    f.read_exact(&mut header).ok()?;
    match serde_json::from_slice(&header).ok()? {
        serde_json::Value::Object(m) => Some(m),
        _ => None,
    }
}

/// The `__metadata__` map of a safetensors file, reading only its bounded header.
fn safetensors_metadata(path: &Path) -> Option<serde_json::Map<String, serde_json::Value>> {
    match safetensors_header(path)?.remove("__metadata__")? {
        serde_json::Value::Object(m) => Some(m),
        _ => None,
    }
}

/// The tensors a half-precision save kept in f32 (a weight beyond ±[`HALF_MAX`]): those
/// stored as F32 in a file that stores others as F16, by name, reading only the header. Empty
/// for a file in one precision, or one that cannot be read.
pub fn full_precision_tensors(path: &Path) -> Vec<String> {
    let Some(header) = safetensors_header(path) else {
        return Vec::new();
    };
    let dtype_of =
        |v: &serde_json::Value| v.get("dtype").and_then(|d| d.as_str()).map(str::to_owned);
    let tensors: Vec<(&String, String)> = header
        .iter()
        .filter(|(k, _)| *k != "__metadata__")
        .filter_map(|(k, v)| Some((k, dtype_of(v)?)))
        .collect();
    if !tensors.iter().any(|(_, d)| d == "F16") {
        return Vec::new();
    }
    tensors
        .into_iter()
        .filter(|(_, d)| d == "F32")
        .map(|(k, _)| k.clone())
        .collect()
}

/// A one-line note naming the tensors a half-precision save of `path` kept in f32, if any
/// ([`full_precision_tensors`]): what `convert --half` and `train --half` print.
pub fn half_precision_note(path: &Path) -> Option<String> {
    let kept = full_precision_tensors(path);
    if kept.is_empty() {
        return None;
    }
    let names: Vec<String> = kept.iter().map(|n| format!("`{}`", Shown(n))).collect();
    Some(format!(
        "note: {} {} a weight beyond half precision's ±65504 and {} kept in f32 (the rest in f16), so no weight changes: {}",
        kept.len(),
        if kept.len() == 1 { "tensor holds" } else { "tensors hold" },
        if kept.len() == 1 { "is" } else { "are" },
        names.join(", ")
    ))
}

/// Whether `path` holds a latent-tui checkpoint (by its header).
pub fn is_checkpoint_file(path: &Path) -> bool {
    safetensors_format(path).as_deref() == Some(FORMAT)
}

/// Whether `a` and `b` name one existing file (the same device and inode: also through links).
pub fn same_path(a: &Path, b: &Path) -> bool {
    match (fs::metadata(a), fs::metadata(b)) {
        #[cfg(unix)]
        (Ok(x), Ok(y)) => {
            use std::os::unix::fs::MetadataExt;
            x.dev() == y.dev() && x.ino() == y.ino()
        }
        #[cfg(not(unix))]
        (Ok(_), Ok(_)) => fs::canonicalize(a).ok() == fs::canonicalize(b).ok(),
        _ => false,
    }
}

/// Whether `path` holds an optimiser state `train` keeps beside its checkpoint for `--resume`
/// (by its header's `adam_t` entry): what a run may replace at `NAME.train-state.safetensors`.
pub fn is_optimiser_state_file(path: &Path) -> bool {
    safetensors_metadata(path).is_some_and(|m| m.contains_key("adam_t"))
}

/// An advisory lock on an output for as long as a run writes it: a second run on the same
/// output fails at once instead of both reporting success while the last writer wins. The
/// lock is `flock` on a hidden `.NAME.lock` file beside the output, removed when released;
/// a process that dies loses its lock with it.
#[derive(Debug)]
pub struct OutputLock {
    lock: PathBuf,
    _file: fs::File,
}

impl OutputLock {
    /// Takes the lock on `out`, or fails naming the output when another process holds it.
    pub fn acquire(out: &Path) -> Result<Self> {
        let (dir, name) = (parent_dir(out), file_name(out)?.into_owned());
        fs::create_dir_all(dir).with_context(|| format!("creating directory {}", dir.display()))?;
        let lock = dir.join(format!(".{name}.lock"));
        loop {
            // A plain file of the run's own, never a link followed (the pid written below would
            // replace whatever it points to).
            if fs::symlink_metadata(&lock).is_ok_and(|m| m.file_type().is_symlink()) {
                bail!(
                    "the lock file {} is a symbolic link; latent-tui keeps a plain file there (remove the link)",
                    lock.display()
                );
            }
            // Nor a directory, pipe or device (opening a pipe would block).
            if fs::symlink_metadata(&lock).is_ok_and(|m| !m.is_file()) {
                bail!(
                    "the lock file {} is not a regular file; latent-tui keeps a plain file there (move it away)",
                    lock.display()
                );
            }
            let mut options = fs::OpenOptions::new();
            options.create(true).truncate(false).read(true).write(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                options.custom_flags(libc::O_NOFOLLOW);
            }
            let file = options
                .open(&lock)
                .with_context(|| format!("creating the lock file {}", lock.display()))?;
            if !try_lock(&file)? {
                bail!(
                    "another run is writing `{}` (it holds {}); wait for it to finish or choose another output path",
                    out.display(),
                    lock.display()
                );
            }
            // A run that just finished may have removed the file this one locked: lock the
            // file that is there now.
            if same_file(&file, &lock) {
                // A file of someone else's at that name is neither emptied nor removed: only an
                // empty one or one a run wrote (its process id) is taken.
                if !is_our_lock(&file) {
                    bail!(
                        "{} exists and is not a latent-tui lock file (it holds something else); move it away or choose another output path",
                        lock.display()
                    );
                }
                // Through the file held, not the path.
                let _ = file.set_len(0);
                let _ = std::io::Seek::seek(&mut &file, std::io::SeekFrom::Start(0));
                let _ = (&file).write_all(format!("{}\n", std::process::id()).as_bytes());
                return Ok(Self { lock, _file: file });
            }
        }
    }
}

/// Whether the lock file held open as `file` is empty or holds what [`OutputLock::acquire`]
/// writes: a process id and a newline.
fn is_our_lock(file: &fs::File) -> bool {
    use std::io::Read;
    let mut head = Vec::new();
    if file.take(32).read_to_end(&mut head).is_err() {
        return false;
    }
    let digits = head.strip_suffix(b"\n").unwrap_or(&head);
    head.is_empty()
        || (!digits.is_empty() && digits.len() <= 20 && digits.iter().all(u8::is_ascii_digit))
}

impl Drop for OutputLock {
    fn drop(&mut self) {
        // Removed while still held, so a waiting run re-checks and locks a fresh file.
        let _ = fs::remove_file(&self.lock);
    }
}

#[cfg(unix)]
fn try_lock(file: &fs::File) -> Result<bool> {
    use std::os::unix::io::AsRawFd;
    // SAFETY: flock on a file descriptor this function borrows for the call.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(true);
    }
    let e = std::io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(false)
    } else {
        Err(e).context("locking the output")
    }
}

#[cfg(not(unix))]
fn try_lock(_file: &fs::File) -> Result<bool> {
    Ok(true)
}

#[cfg(unix)]
fn same_file(file: &fs::File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
        _ => false,
    }
}

#[cfg(not(unix))]
fn same_file(_file: &fs::File, path: &Path) -> bool {
    path.exists()
}

/// Removes `.NAME.PID.tmp` files that saves of `name` killed mid-write left in `dir`, where
/// the process PID no longer runs (a live one may be saving right now).
pub fn remove_stale_temporaries(dir: &Path, name: &str) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let prefix = format!(".{name}.");
    for entry in entries.flatten() {
        let file = entry.file_name();
        let Some(pid) = file
            .to_str()
            .and_then(|f| f.strip_prefix(&prefix))
            .and_then(|rest| rest.strip_suffix(".tmp"))
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !process_is_running(pid) {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// Whether a process with this id exists. Where that cannot be known (no `/proc`), assume it
/// does, so nothing another process may still be writing is removed.
fn process_is_running(pid: u32) -> bool {
    let proc_root = Path::new("/proc");
    !proc_root.join("self").exists() || proc_root.join(pid.to_string()).exists()
}

/// Reads a whole file that must be a regular file (not a device, pipe or directory, which
/// could be endless), naming `what` it was meant to be in errors.
pub fn read_regular_file(path: &Path, what: &str, max_bytes: u64) -> Result<Vec<u8>> {
    use std::io::Read;
    let shown = path.display();
    let meta = fs::metadata(path).with_context(|| format!("cannot read {what} `{shown}`"))?;
    if !meta.is_file() {
        bail!("{what} `{shown}` is not a regular file");
    }
    let too_large = || {
        anyhow::anyhow!(
            "{what} `{shown}` is larger than the {} MB this build reads (corrupt or hostile file?)",
            max_bytes >> 20
        )
    };
    if meta.len() > max_bytes {
        return Err(too_large());
    }
    // Read through a limit too: the file may grow between the check and the read.
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    fs::File::open(path)
        .and_then(|f| f.take(max_bytes + 1).read_to_end(&mut bytes))
        .with_context(|| format!("cannot read {what} `{shown}`"))?;
    if bytes.len() as u64 > max_bytes {
        return Err(too_large());
    }
    Ok(bytes)
}

/// Largest file [`read_regular_file`] reads for each kind: far above any file this tool writes
/// for a model it accepts, so only a corrupt or hostile file (or the wrong path) meets them.
pub mod max_bytes {
    /// A checkpoint: 4 GiB (the shipped ones are 7–9 MB).
    pub const CHECKPOINT: u64 = 4 << 30;
    /// Adam's saved moments: two fp32 copies of the largest checkpoint and some.
    pub const OPTIMISER_STATE: u64 = 12 << 30;
    /// An index: the texts of the largest corpus (2 GiB) and their codes.
    pub const INDEX: u64 = 8 << 30;
    /// A map: two coordinates and a few numbers per entry.
    pub const MAP: u64 = 1 << 30;
    /// The bit meanings: words, labels and decodings per dimension.
    pub const MEANINGS: u64 = 256 << 20;
    /// A `--config` file.
    pub const TRAINING_CONFIG: u64 = 16 << 20;
}

/// Largest safetensors header (the JSON table of tensors and the metadata) a checkpoint may
/// declare; the shipped ones have headers of 0.17 to 0.30 MB.
pub const MAX_HEADER_BYTES: u64 = 64 << 20;

/// Bytes a `tokenizer.json` of `entries` tokens may take: generous for BPE merges and long
/// pieces, small enough that a hostile header is refused before it is parsed.
pub fn max_tokenizer_bytes(entries: usize) -> usize {
    (1 << 16) + entries.saturating_mul(512)
}

/// Refuses a safetensors file whose declared header is longer than `max` bytes (or than the
/// file), before anything parses it. `shown` names the file in the message.
pub fn check_header_size(bytes: &[u8], max: u64, shown: &str) -> Result<()> {
    let Some(prefix) = bytes.get(..8) else {
        bail!("{shown} is not a valid safetensors file (shorter than its 8-byte header size)");
    };
    let n = u64::from_le_bytes(prefix.try_into().expect("8 bytes"));
    if n > max {
        bail!("{shown} is not a safetensors file (or a corrupt one): its first 8 bytes declare a {n}-byte header, more than the {max} this build reads");
    }
    if n > bytes.len() as u64 - 8 {
        bail!(
            "{shown} declares a {n}-byte header but is only {} bytes long (truncated?)",
            bytes.len()
        );
    }
    Ok(())
}

/// The dtype a checkpoint's weights are stored in, `F32` or `F16`; a half-precision file that
/// kept tensors in f32 ([`HALF_MAX`]) names them: `F16 (F32: out.bias)` (the first three,
/// then how many more).
fn describe_dtypes<'a>(tensors: impl Iterator<Item = (&'a str, DType)>) -> String {
    let mut by_dtype: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for (name, dtype) in tensors {
        by_dtype.entry(format!("{dtype:?}")).or_default().push(name);
    }
    let Some(main) = by_dtype
        .iter()
        .max_by_key(|(d, names)| (names.len(), d.as_str() == "F16"))
        .map(|(d, _)| d.clone())
    else {
        return "none".into();
    };
    let others: Vec<String> = by_dtype
        .iter()
        .filter(|(d, _)| **d != main)
        .map(|(d, names)| {
            let mut names: Vec<&str> = names.clone();
            names.sort_unstable();
            let more = names.len().saturating_sub(3);
            let shown: Vec<String> = names.iter().take(3).map(|n| Shown(n).to_string()).collect();
            let more = if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            };
            format!("{d}: {}{more}", shown.join(", "))
        })
        .collect();
    if others.is_empty() {
        main
    } else {
        format!("{main} ({})", others.join("; "))
    }
}

/// A checkpoint read from disk: weights as f32 plus everything needed to use them.
pub struct Checkpoint {
    pub path: PathBuf,
    pub config: ModelConfig,
    pub vocab: Vocab,
    pub provenance: Provenance,
    pub tensors: BTreeMap<String, Tensor>,
    /// The dtype the weights were stored in ("F32", "F16", …; a half-precision file with
    /// tensors kept in f32 names them, "F16 (F32: out.bias)").
    pub stored_dtype: String,
    pub file_bytes: u64,
    /// SHA-256 (hex) of the file's bytes as they were read: the model these weights are,
    /// whatever the file holds later.
    pub sha256: String,
}

impl Checkpoint {
    /// Reads and validates a checkpoint; every failure names the file and the problem.
    pub fn read(path: &Path, dev: &Device) -> Result<Self> {
        let shown = path.display();
        let bytes = read_regular_file(path, "checkpoint", max_bytes::CHECKPOINT)?;
        check_header_size(&bytes, MAX_HEADER_BYTES, &format!("`{shown}`"))?;
        let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| {
            anyhow::anyhow!(
                "`{shown}` is not a valid safetensors file (truncated or corrupt?): {e}"
            )
        })?;
        let meta = header.metadata().clone().unwrap_or_default();
        match meta.get("format") {
            Some(f) if f == FORMAT => {}
            Some(f) => bail!("`{shown}` has checkpoint format `{f}`, but this build reads `{FORMAT}`"),
            None => bail!("`{shown}` is a safetensors file without latent-tui metadata (no `format` key); was it written by latent-tui?"),
        }
        let field = |key: &str| {
            meta.get(key)
                .with_context(|| format!("`{shown}` is missing the `{key}` metadata entry"))
        };
        let config: ModelConfig = serde_json::from_str(field("config")?).with_context(|| {
            format!("`{shown}`: the `config` metadata is not a valid model config")
        })?;
        // The config is small: validate it first, so that the tokenizer (the one large entry)
        // is bounded by the vocabulary the config declares before it is parsed.
        config
            .validate()
            .map_err(|e| anyhow::anyhow!("`{shown}`: invalid model config: {e}"))?;
        let tokenizer = field("tokenizer")?;
        let most = max_tokenizer_bytes(config.vocab_size());
        if tokenizer.len() > most {
            bail!(
                "`{shown}`: the `tokenizer` metadata is {} bytes, more than the {most} a {}-entry vocabulary may take",
                tokenizer.len(),
                config.vocab_size()
            );
        }
        let loaded = candle_core::safetensors::load_buffer(&bytes, dev).map_err(|e| {
            anyhow::anyhow!("`{shown}`: cannot read the tensors (truncated or corrupt?): {e}")
        })?;
        // The tensors are copies: the file's bytes are not needed any more. Their hash stays:
        // what every cache of this model is stamped with (the file may change after the load).
        let file_bytes = bytes.len() as u64;
        let sha256 = format!("{:x}", <sha2::Sha256 as sha2::Digest>::digest(&bytes));
        drop(bytes);
        let stored_dtype = describe_dtypes(loaded.iter().map(|(n, t)| (n.as_str(), t.dtype())));
        let mut tensors = BTreeMap::new();
        for (name, t) in loaded {
            if !matches!(
                t.dtype(),
                DType::F32 | DType::F16 | DType::BF16 | DType::F64
            ) {
                bail!(
                    "`{shown}`: tensor `{name}` is stored as {:?}; model weights must be floating point (F32, F16, BF16 or F64)",
                    t.dtype()
                );
            }
            let t = t.to_dtype(DType::F32)?;
            // Checked in place: a copy of every tensor would double what a load holds.
            let (storage, layout) = t.storage_and_layout();
            let values = match &*storage {
                candle_core::Storage::Cpu(cpu) => match layout.contiguous_offsets() {
                    Some((a, b)) => &cpu.as_slice::<f32>()?[a..b],
                    None => bail!("`{shown}`: tensor `{name}` is not contiguous"),
                },
                _ => bail!("`{shown}`: tensors are read on the CPU"),
            };
            if let Some(bad) = values.iter().find(|v| !v.is_finite()) {
                bail!("`{shown}`: tensor `{name}` contains {bad} (NaN or infinite weights)");
            }
            drop(storage);
            tensors.insert(name, t);
        }
        // Every shape the config implies must match the stored tensors before anything is
        // allocated from the config: a corrupt `hidden_dim` would otherwise be trusted.
        match crate::model::check_shapes(&config, &tensors, dev) {
            Ok(unused) => {
                if let Some(extra) = unused.first() {
                    bail!("`{shown}` has tensor `{extra}`, which the model config does not use (mismatched config?)");
                }
            }
            Err(e) => match e {
                candle_core::Error::CannotFindTensor { path } => bail!(
                    "`{shown}` is missing tensor `{path}`, which its model config needs (mismatched config?)"
                ),
                candle_core::Error::UnexpectedShape { msg, expected, got } => bail!(
                    "`{shown}`: tensor `{}` has shape {:?}, but the model config expects {:?} (the config does not match the tensors)",
                    msg.trim_start_matches("shape mismatch for "),
                    got.dims(),
                    expected.dims()
                ),
                other => bail!("`{shown}`: the config does not match the tensors: {other}"),
            },
        }
        // The tokenizer (the one large metadata entry) is parsed once the tensors are known to
        // be this config's: a file whose tensors do not fit it is refused without parsing it.
        let vocab = Vocab::from_json(tokenizer).with_context(|| {
            format!("`{shown}`: the `tokenizer` metadata is not a valid tokenizer")
        })?;
        let provenance: Provenance = match meta.get("provenance") {
            Some(p) => serde_json::from_str(p).with_context(|| {
                format!("`{shown}`: the `provenance` metadata is not valid JSON")
            })?,
            None => Provenance::default(),
        };
        if vocab.len() != config.vocab_size() {
            bail!(
                "`{shown}`: the tokenizer has {} entries but the model config expects {}",
                vocab.len(),
                config.vocab_size()
            );
        }
        Ok(Self {
            path: path.to_path_buf(),
            config,
            vocab,
            provenance,
            tensors,
            stored_dtype,
            file_bytes,
            sha256,
        })
    }

    /// Copies the stored weights into a freshly built model's parameters, checking that every
    /// parameter is present with the shape the config implies and that nothing is left over.
    pub fn assign_to(&self, varmap: &VarMap) -> Result<()> {
        let shown = self.path.display();
        let vars = named_vars(varmap);
        for (name, var) in &vars {
            let t = self.tensors.get(name).with_context(|| {
                format!(
                    "`{shown}` is missing tensor `{name}` (expected shape {:?})",
                    var.dims()
                )
            })?;
            if t.dims() != var.dims() {
                bail!(
                    "`{shown}`: tensor `{name}` has shape {:?}, but the model config expects {:?}",
                    t.dims(),
                    var.dims()
                );
            }
            var.set(t)?;
        }
        let expected: std::collections::BTreeSet<&str> =
            vars.iter().map(|(n, _)| n.as_str()).collect();
        if let Some(extra) = self.tensors.keys().find(|k| !expected.contains(k.as_str())) {
            bail!("`{shown}` has tensor `{extra}`, which the model config does not use (mismatched config?)");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_read_only_up_to_their_kinds_bound() {
        let dir = tempfile::tempdir().unwrap();
        // A sparse terabyte: reading it would take hours or fail to allocate; it is refused
        // from its size.
        let huge = dir.path().join("m.meaning.json");
        fs::File::create(&huge).unwrap().set_len(1 << 40).unwrap();
        let err = read_regular_file(&huge, "meanings", max_bytes::MEANINGS)
            .unwrap_err()
            .to_string();
        assert!(err.contains("larger than the 256 MB"), "{err}");
        let exact = dir.path().join("exact");
        fs::write(&exact, [7u8; 1 << 20]).unwrap();
        assert_eq!(
            read_regular_file(&exact, "x", 1 << 20).unwrap().len(),
            1 << 20
        );
        let err = read_regular_file(&exact, "x", (1 << 20) - 1)
            .unwrap_err()
            .to_string();
        assert!(err.contains("larger than"), "{err}");
        assert!(
            read_regular_file(dir.path(), "x", 1 << 20).is_err(),
            "a directory"
        );
    }

    #[test]
    fn non_finite_metrics_round_trip_through_json_and_old_nulls_load() {
        let mut p = Provenance::default();
        p.metrics.insert("valid_ppl".into(), f64::INFINITY);
        p.metrics.insert("low".into(), f64::NEG_INFINITY);
        p.metrics.insert("nan".into(), f64::NAN);
        p.metrics.insert("loss".into(), 2.5);
        let text = serde_json::to_string(&p).unwrap();
        assert!(text.contains(r#""valid_ppl":"inf""#), "{text}");
        let back: Provenance = serde_json::from_str(&text).unwrap();
        assert_eq!(back.metrics["valid_ppl"], f64::INFINITY);
        assert_eq!(back.metrics["low"], f64::NEG_INFINITY);
        assert!(back.metrics["nan"].is_nan());
        assert_eq!(back.metrics["loss"], 2.5);
        let old = r#"{"step":3,"corpus":"c","corpus_hash":"h","seed":1,"metrics":{"valid_ppl":null,"kl":1.5},"train_config":null,"written_by":"x"}"#;
        let old: Provenance = serde_json::from_str(old).unwrap();
        assert!(old.metrics["valid_ppl"].is_nan());
        assert_eq!(old.metrics["kl"], 1.5);
        assert!(serde_json::from_str::<Provenance>(
            r#"{"step":3,"corpus":"c","corpus_hash":"h","seed":1,"metrics":{"x":"lots"},"train_config":null,"written_by":"x"}"#
        )
        .is_err());
    }
}
