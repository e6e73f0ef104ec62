//! Candle models. Nothing here knows about terminals, files or the command line.
//!
//! Every model family has a serde config and `load(vb, cfg)`; [`ModelConfig`] is what a
//! checkpoint stores, tagged by family so new families can join without breaking old files.

pub mod bf16;
pub mod bow;
pub mod bulk;
pub mod decode;
pub mod gru;
pub mod kernels;
pub mod latent;
pub mod ops;
pub mod output_layer;
pub mod packed;
pub mod seq;
pub mod sgemm;
pub mod variants;
pub mod word_trie;

use std::collections::BTreeMap;

use candle_core::{DType, Device, Result, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;
use serde::{Deserialize, Serialize};

pub use bf16::Precision;
pub use bow::{BowModel, LshConfig, NashConfig, NvdmConfig};
pub use latent::{Binarize, CodeMode, LatentKind, LatentParams};
pub use seq::{Dropout, SeqAutoencoder, SeqConfig, Summary, TokenBatch};

/// The model description stored in a checkpoint.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(tag = "family", rename_all = "kebab-case")]
pub enum ModelConfig {
    /// Sentence autoencoders (GRU encoder/decoder) and the `lm` baseline.
    Seq(SeqConfig),
    /// Neural Variational Document Model over bags of words.
    Nvdm(NvdmConfig),
    /// NASH semantic hashing: bags of words → Bernoulli bits.
    Nash(NashConfig),
    /// Random hyperplanes over TF-IDF (no training).
    Lsh(LshConfig),
}

impl ModelConfig {
    pub fn vocab_size(&self) -> usize {
        match self {
            ModelConfig::Seq(c) => c.vocab_size,
            ModelConfig::Nvdm(c) => c.vocab_size,
            ModelConfig::Nash(c) => c.vocab_size,
            ModelConfig::Lsh(c) => c.vocab_size,
        }
    }

    /// The model has a KL to the prior to report ([`LatentKind::has_kl`] for sequence models;
    /// nvdm and nash have a posterior, lsh's hashing none).
    pub fn has_kl(&self) -> bool {
        match self {
            ModelConfig::Seq(c) => c.latent.has_kl(),
            ModelConfig::Nvdm(_) | ModelConfig::Nash(_) => true,
            ModelConfig::Lsh(_) => false,
        }
    }

    /// The family name as stored in the checkpoint: `seq`, `nvdm`, `nash` or `lsh`.
    pub fn family(&self) -> &'static str {
        match self {
            ModelConfig::Seq(_) => "seq",
            ModelConfig::Nvdm(_) => "nvdm",
            ModelConfig::Nash(_) => "nash",
            ModelConfig::Lsh(_) => "lsh",
        }
    }

    /// A one-line human description, e.g. "binary sequence autoencoder, 64 bits".
    pub fn describe(&self) -> String {
        match self {
            ModelConfig::Seq(c) => match c.latent {
                LatentKind::Lm => format!("GRU language model (hidden {})", c.hidden_dim),
                k if k.is_binary() => format!(
                    "{k} sequence autoencoder, {} bits (embedding {}, hidden {}, summary {})",
                    c.latent_dim, c.embed_dim, c.hidden_dim, c.summary
                ),
                k => format!(
                    "{k} sequence autoencoder, {} dimensions (embedding {}, hidden {}, summary {})",
                    c.latent_dim, c.embed_dim, c.hidden_dim, c.summary
                ),
            },
            ModelConfig::Nvdm(c) => format!(
                "NVDM bag-of-words model, {} gaussian dimensions ({} input, hidden {})",
                c.latent_dim, c.input, c.hidden_dim
            ),
            ModelConfig::Nash(c) => format!(
                "NASH semantic hashing, {} bits ({} input, hidden {}, training noise {})",
                c.latent_dim,
                c.input,
                c.hidden_dim,
                match c.noise {
                    bow::NashNoise::Fixed { std } => format!("fixed σ = {std}"),
                    n => n.name().to_string(),
                }
            ),
            ModelConfig::Lsh(c) => format!(
                "LSH baseline, {} random hyperplanes over TF-IDF (seed {})",
                c.bits, c.seed
            ),
        }
    }

    /// Checks every size against sane bounds, so that no config (a corrupt or hostile file)
    /// makes a loader allocate terabytes or overflow: sizes are positive and at most
    /// [`MAX_DIM`] (vocabulary [`MAX_VOCAB`]), sentences 1 to [`MAX_SENTENCE_LEN`] words.
    pub fn validate(&self) -> std::result::Result<(), String> {
        let dim = |name: &str, v: usize, max: usize| {
            if v == 0 || v > max {
                Err(format!("{name} is {v}, outside 1..={max}"))
            } else {
                Ok(())
            }
        };
        dim("vocab_size", self.vocab_size(), MAX_VOCAB)?;
        match self {
            ModelConfig::Seq(c) => {
                dim("embed_dim", c.embed_dim, MAX_DIM)?;
                dim("hidden_dim", c.hidden_dim, MAX_DIM)?;
                if c.latent.has_latent() {
                    dim("latent_dim", c.latent_dim, MAX_DIM)?;
                }
                dim("max_len", c.max_len, MAX_SENTENCE_LEN)?;
                if !(c.gumbel_temperature.is_finite() && c.gumbel_temperature > 0.0) {
                    return Err(format!(
                        "gumbel_temperature is {}, not a positive number",
                        c.gumbel_temperature
                    ));
                }
            }
            ModelConfig::Nvdm(c) => {
                dim("hidden_dim", c.hidden_dim, MAX_DIM)?;
                dim("latent_dim", c.latent_dim, MAX_DIM)?;
            }
            ModelConfig::Nash(c) => {
                dim("hidden_dim", c.hidden_dim, MAX_DIM)?;
                dim("latent_dim", c.latent_dim, MAX_DIM)?;
                if c.labels > MAX_VOCAB {
                    return Err(format!("labels is {}, above {MAX_VOCAB}", c.labels));
                }
                // The supervised head is latent × hidden + hidden × labels weights.
                let max = crate::probe::MAX_CLASSIFIER_WEIGHTS;
                if c.labels > 0 && (c.latent_dim + c.labels).saturating_mul(c.hidden_dim) > max {
                    return Err(format!(
                        "labels is {} with hidden_dim {}: the label classifier would have more \
                         than {max} weights",
                        c.labels, c.hidden_dim
                    ));
                }
            }
            ModelConfig::Lsh(c) => dim("bits", c.bits, MAX_DIM)?,
        }
        Ok(())
    }

    /// The sequence config, or an error naming the family and what works with it instead.
    pub fn expect_seq(&self) -> std::result::Result<&SeqConfig, String> {
        match self {
            ModelConfig::Seq(c) => Ok(c),
            other => Err(format!(
                "this checkpoint holds a `{}` model ({}); this command needs a sequence autoencoder. \
                 Bag-of-words checkpoints work with `index`, `search`, `probe`, `words` (nvdm, nash), `eval` and `info`",
                other.family(),
                other.describe()
            )),
        }
    }
}

/// Largest layer width or latent size a checkpoint may declare.
pub const MAX_DIM: usize = 1 << 16;
/// Largest vocabulary a checkpoint may declare.
pub const MAX_VOCAB: usize = 1 << 22;
/// Longest sentence (in words) a model may be configured for; also what bounds a decoding
/// that never emits `<eos>`.
pub const MAX_SENTENCE_LEN: usize = 4096;

/// Builds the model `cfg` describes over the stored `tensors` themselves (nothing is allocated
/// from the config), so every parameter's presence and shape is checked against the file.
/// Returns the stored tensors the model never asked for (a file with them is not this config's).
pub fn check_shapes(
    cfg: &ModelConfig,
    tensors: &BTreeMap<String, Tensor>,
    dev: &Device,
) -> Result<Vec<String>> {
    let backend = Recording {
        tensors,
        used: std::sync::Mutex::new(std::collections::BTreeSet::new()),
    };
    let vb = VarBuilder::from_backend(Box::new(&backend), DType::F32, dev.clone());
    let built = match cfg {
        ModelConfig::Seq(c) => SeqAutoencoder::load(vb, c).map(|_| ()),
        ModelConfig::Nvdm(c) => bow::Nvdm::load(vb, c).map(|_| ()),
        ModelConfig::Nash(c) => bow::Nash::load(vb, c).map(|_| ()),
        ModelConfig::Lsh(c) => bow::Lsh::load(vb, c).map(|_| ()),
    };
    // The message is for a user: the loader's backtrace is noise there.
    built.map_err(|e| match e {
        candle_core::Error::WithBacktrace { inner, .. } => *inner,
        other => other,
    })?;
    let used = backend.used.into_inner().unwrap_or_else(|e| e.into_inner());
    Ok(tensors
        .keys()
        .filter(|k| !used.contains(k.as_str()))
        .cloned()
        .collect())
}

/// The stored tensors as a model's parameters, remembering which ones it asked for.
struct Recording<'a> {
    tensors: &'a BTreeMap<String, Tensor>,
    used: std::sync::Mutex<std::collections::BTreeSet<String>>,
}

impl Recording<'_> {
    fn find(&self, name: &str) -> Result<Tensor> {
        let t = self
            .tensors
            .get(name)
            .ok_or_else(|| candle_core::Error::CannotFindTensor {
                path: name.to_string(),
            })?;
        self.used
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_string());
        Ok(t.clone())
    }
}

impl candle_nn::var_builder::SimpleBackend for &Recording<'_> {
    fn get(
        &self,
        s: candle_core::Shape,
        name: &str,
        _: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> Result<Tensor> {
        let t = self.find(name)?;
        if t.shape() != &s {
            return Err(candle_core::Error::UnexpectedShape {
                msg: format!("shape mismatch for {name}"),
                expected: s,
                got: t.shape().clone(),
            });
        }
        t.to_device(dev)?.to_dtype(dtype)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> Result<Tensor> {
        self.find(name)?.to_device(dev)?.to_dtype(dtype)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }
}

/// A model with its parameters, which live in `varmap` (trainable, and what gets saved).
pub struct Built<M> {
    pub model: M,
    pub varmap: VarMap,
}

impl Built<SeqAutoencoder> {
    /// Creates a sequence model with parameters initialised from `seed`.
    pub fn seq(cfg: &SeqConfig, seed: u64, dev: &Device) -> Result<Self> {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, dev);
        let model = SeqAutoencoder::load(vb, cfg)?;
        seeded_init(&varmap, seed)?;
        Ok(Self { model, varmap })
    }
}

impl Built<BowModel> {
    /// Creates a bag-of-words model: NVDM and NASH initialised from `seed` (the idf vector, if
    /// any, is left for the caller to set), LSH's hyperplanes drawn N(0, 1) from `seed`.
    pub fn bow(cfg: &ModelConfig, seed: u64, dev: &Device) -> Result<Self> {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, dev);
        let model = match cfg {
            ModelConfig::Nvdm(c) => BowModel::Nvdm(bow::Nvdm::load(vb, c)?),
            ModelConfig::Nash(c) => BowModel::Nash(bow::Nash::load(vb, c)?),
            ModelConfig::Lsh(c) => BowModel::Lsh(bow::Lsh::load(vb, c)?),
            ModelConfig::Seq(_) => {
                candle_core::bail!("a sequence config is not a bag-of-words model")
            }
        };
        if let ModelConfig::Lsh(_) = cfg {
            let mut rng = StdRng::seed_from_u64(seed);
            for (name, var) in named_vars(&varmap) {
                if name == "hyperplanes" {
                    let values: Vec<f32> = (0..var.elem_count())
                        .map(|_| rng.sample::<f32, _>(StandardNormal))
                        .collect();
                    var.set(&Tensor::from_vec(values, var.shape(), dev)?)?;
                }
            }
        } else {
            seeded_init(&varmap, seed)?;
        }
        Ok(Self { model, varmap })
    }
}

/// Parameters by name, sorted: the order used for initialisation, saving and optimiser state.
pub fn named_vars(varmap: &VarMap) -> Vec<(String, Var)> {
    let data = varmap.data().lock().expect("varmap lock");
    let sorted: BTreeMap<_, _> = data.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    sorted.into_iter().collect()
}

pub fn parameter_count(varmap: &VarMap) -> usize {
    named_vars(varmap).iter().map(|(_, v)| v.elem_count()).sum()
}

/// Re-initialises every parameter from a seeded generator, PyTorch-style: embeddings N(0, 1),
/// GRU weights and biases U(±1/√H), other weights and their biases U(±1/√fan_in).
pub fn seeded_init(varmap: &VarMap, seed: u64) -> Result<()> {
    let mut rng = StdRng::seed_from_u64(seed);
    let vars = named_vars(varmap);
    let fan_in: BTreeMap<String, usize> = vars
        .iter()
        .filter(|(n, v)| n.ends_with(".weight") && v.rank() == 2)
        .map(|(n, v)| (n.trim_end_matches(".weight").to_string(), v.dims()[1]))
        .collect();
    for (name, var) in &vars {
        let shape = var.shape().clone();
        let n = shape.elem_count();
        let values: Vec<f32> = if name.starts_with("embedding") {
            (0..n)
                .map(|_| rng.sample::<f32, _>(StandardNormal))
                .collect()
        } else {
            let bound = if name.contains("_l0") {
                1.0 / ((var.dims()[0] / 3) as f32).sqrt()
            } else {
                let stem = name.trim_end_matches(".weight").trim_end_matches(".bias");
                1.0 / (*fan_in.get(stem).unwrap_or(&1) as f32).sqrt()
            };
            (0..n).map(|_| rng.random_range(-bound..bound)).collect()
        };
        var.set(&Tensor::from_vec(values, shape, var.device())?)?;
    }
    Ok(())
}
