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
//! so a crash never leaves a half-written checkpoint.

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
    /// Last training and validation figures, e.g. `valid_ppl`.
    pub metrics: BTreeMap<String, f64>,
    /// The full training configuration, so `train --resume` can continue it.
    pub train_config: Option<serde_json::Value>,
    /// The latent-tui version that wrote the file.
    pub written_by: String,
}

impl Provenance {
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
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
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
        let bytes = fs::read(path).with_context(|| format!("cannot read checkpoint `{shown}`"))?;
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
            let t = t.to_dtype(DType::F32)?;
            tensors.insert(name, t);
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
            let finite = t
                .flatten_all()?
                .abs()?
                .max(0)?
                .to_scalar::<f32>()?
                .is_finite();
            if !finite {
                bail!("`{shown}`: tensor `{name}` contains NaN or infinite values");
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
