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

use crate::model::{named_vars, ModelConfig};
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
    /// the file or directory training read if it is still there. None if it is gone.
    pub fn stored_corpus(&self) -> Option<String> {
        let exists = |p: &str| !p.is_empty() && Path::new(p).exists();
        match &self.corpus_source {
            Some(src) if src == "wordnet" || exists(src) => return Some(src.clone()),
            _ => {}
        }
        if self.corpus.is_empty() || self.corpus == "wordnet" {
            Some("wordnet".into())
        } else if exists(&self.corpus) {
            Some(self.corpus.clone())
        } else {
            None
        }
    }

    /// Where the training corpus was, for messages: the stored path or the corpus name.
    pub fn corpus_shown(&self) -> &str {
        self.corpus_source.as_deref().unwrap_or(&self.corpus)
    }

    /// Summary lines: steps, corpus, seed and the last metrics.
    pub fn describe(&self) -> String {
        let hash = &self.corpus_hash[..self.corpus_hash.len().min(12)];
        let mut s = format!(
            "  trained {} steps on `{}` (seed {}, corpus sha256 {hash})\n",
            self.step, self.corpus, self.seed
        );
        if !self.metrics.is_empty() {
            let m: Vec<String> = self
                .metrics
                .iter()
                .map(|(k, v)| format!("{k} {v:.3}"))
                .collect();
            s += &format!("  last metrics: {}\n", m.join(", "));
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
    /// Half precision: half the size, ~3 significant digits per weight.
    F16,
}

/// Atomically writes `tensors` with the config, vocabulary and provenance to `path`.
pub fn save(
    path: &Path,
    tensors: &[(String, Tensor)],
    config: &ModelConfig,
    vocab: &Vocab,
    provenance: &Provenance,
    storage: Storage,
) -> Result<()> {
    let mut meta = HashMap::new();
    meta.insert("format".to_string(), FORMAT.to_string());
    meta.insert("config".to_string(), serde_json::to_string(config)?);
    meta.insert("tokenizer".to_string(), vocab.to_json()?);
    meta.insert("provenance".to_string(), serde_json::to_string(provenance)?);
    let dtype = match storage {
        Storage::F32 => DType::F32,
        Storage::F16 => DType::F16,
    };
    let stored: Vec<(String, Tensor)> = tensors
        .iter()
        .map(|(n, t)| Ok((n.clone(), t.to_dtype(dtype)?.contiguous()?)))
        .collect::<candle_core::Result<_>>()?;
    let bytes = safetensors::serialize(stored.iter().map(|(n, t)| (n.as_str(), t)), Some(meta))
        .context("serialising checkpoint")?;
    write_atomically(path, &bytes)
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
    let tensors: Vec<(String, Tensor)> = named_vars(varmap)
        .into_iter()
        .map(|(n, v)| (n, v.as_tensor().clone()))
        .collect();
    save(path, &tensors, config, vocab, provenance, storage)
}

/// Writes `bytes` to a temporary sibling of `path`, syncs, then renames it into place.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(dir).with_context(|| format!("creating directory {}", dir.display()))?;
    let name = path
        .file_name()
        .with_context(|| format!("`{}` is not a file path", path.display()))?;
    let name = name.to_string_lossy();
    remove_stale_temporaries(dir, &name);
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| -> Result<()> {
        let mut f =
            fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        f.write_all(bytes)
            .with_context(|| format!("writing {}", tmp.display()))?;
        f.sync_all()
            .with_context(|| format!("syncing {}", tmp.display()))?;
        fs::rename(&tmp, path)
            .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Removes `.NAME.PID.tmp` files that saves of `name` killed mid-write left in `dir`, where
/// the process PID no longer runs (a live one may be saving right now).
fn remove_stale_temporaries(dir: &Path, name: &str) {
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
pub fn read_regular_file(path: &Path, what: &str) -> Result<Vec<u8>> {
    let shown = path.display();
    let meta = fs::metadata(path).with_context(|| format!("cannot read {what} `{shown}`"))?;
    if !meta.is_file() {
        bail!("{what} `{shown}` is not a regular file");
    }
    fs::read(path).with_context(|| format!("cannot read {what} `{shown}`"))
}

/// A checkpoint read from disk: weights as f32 plus everything needed to use them.
pub struct Checkpoint {
    pub path: PathBuf,
    pub config: ModelConfig,
    pub vocab: Vocab,
    pub provenance: Provenance,
    pub tensors: BTreeMap<String, Tensor>,
    /// The dtype the weights were stored in ("F32", "F16", …).
    pub stored_dtype: String,
    pub file_bytes: u64,
}

impl Checkpoint {
    /// Reads and validates a checkpoint; every failure names the file and the problem.
    pub fn read(path: &Path, dev: &Device) -> Result<Self> {
        let shown = path.display();
        let bytes = read_regular_file(path, "checkpoint")?;
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
        let vocab = Vocab::from_json(field("tokenizer")?).with_context(|| {
            format!("`{shown}`: the `tokenizer` metadata is not a valid tokenizer")
        })?;
        let provenance: Provenance = match meta.get("provenance") {
            Some(p) => serde_json::from_str(p).with_context(|| {
                format!("`{shown}`: the `provenance` metadata is not valid JSON")
            })?,
            None => Provenance::default(),
        };
        config
            .validate()
            .map_err(|e| anyhow::anyhow!("`{shown}`: invalid model config: {e}"))?;
        if vocab.len() != config.vocab_size() {
            bail!(
                "`{shown}`: the tokenizer has {} entries but the model config expects {}",
                vocab.len(),
                config.vocab_size()
            );
        }
        let loaded = candle_core::safetensors::load_buffer(&bytes, dev).map_err(|e| {
            anyhow::anyhow!("`{shown}`: cannot read the tensors (truncated or corrupt?): {e}")
        })?;
        let stored_dtype = loaded
            .values()
            .next()
            .map(|t| format!("{:?}", t.dtype()))
            .unwrap_or_else(|| "none".into());
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
            let values = t.flatten_all()?.to_vec1::<f32>()?;
            if let Some(bad) = values.iter().find(|v| !v.is_finite()) {
                bail!("`{shown}`: tensor `{name}` contains {bad} (NaN or infinite weights)");
            }
            tensors.insert(name, t);
        }
        // Every shape the config implies must match the stored tensors before anything is
        // allocated from the config: a corrupt `hidden_dim` would otherwise be trusted.
        if let Err(e) = crate::model::check_shapes(&config, &tensors, dev) {
            match e {
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
            }
        }
        Ok(Self {
            path: path.to_path_buf(),
            config,
            vocab,
            provenance,
            tensors,
            stored_dtype,
            file_bytes: bytes.len() as u64,
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
