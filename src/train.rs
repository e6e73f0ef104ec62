//! Training: a function that takes a config, reports progress through a channel and honours a
//! cancel (and pause) flag, so the command line and the explorer's Train tab share it.
//!
//! [`run_loop`] is the one training loop of every model family: a family supplies an
//! [`Objective`] (its batches, loss and update, validation and checkpoint) and the loop owns
//! the KL schedule, the validation and checkpoint cadence, the NaN guard, pause / cancel and
//! the progress events.
//!
//! Every random choice (initialisation, batch order, word dropout, latent noise) is drawn from
//! generators seeded by `seed` and the step number, so a run and its `--resume` continuation
//! are reproducible.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use candle_core::backprop::GradStore;
use candle_core::{Device, Tensor, Var};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::checkpoint::{self, Checkpoint, Provenance, Storage};
use crate::corpus::{Corpus, LoadOptions, Split};
use crate::data::{encode_examples, encode_examples_counting_cuts, shuffled_epoch};
use crate::eval::score_sentences;
use crate::model::decode::{decode, Strategy};
use crate::model::kernels;
use crate::model::{
    named_vars, parameter_count, Binarize, Built, CodeMode, Dropout, LatentKind, ModelConfig,
    Precision, SeqAutoencoder, SeqConfig, Summary, TokenBatch,
};
use crate::vocab::{TokenizerKind, Vocab, UNK};

/// How the KL weight grows from 0 to `kl_weight`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum KlAnneal {
    /// Full weight from the first step.
    #[default]
    None,
    /// Linearly over `kl_anneal_steps`.
    Linear,
    /// A logistic curve centred on half of `kl_anneal_steps`.
    Logistic,
}

impl std::str::FromStr for KlAnneal {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "none" => Ok(KlAnneal::None),
            "linear" => Ok(KlAnneal::Linear),
            "logistic" => Ok(KlAnneal::Logistic),
            _ => Err(format!(
                "unknown KL annealing `{s}` (expected none, linear or logistic)"
            )),
        }
    }
}

/// How the learning rate moves after the warm-up: kept, or decayed to `lr_floor` × the rate by
/// the last step.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum LrDecay {
    /// The same rate throughout (runs saved before schedules existed).
    #[default]
    Constant,
    /// Straight down to the floor.
    Linear,
    /// Half a cosine down to the floor.
    Cosine,
}

impl std::fmt::Display for LrDecay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LrDecay::Constant => "constant",
            LrDecay::Linear => "linear",
            LrDecay::Cosine => "cosine",
        })
    }
}

/// The learning rate of every step of a run: a linear warm-up over `warmup_steps`, then
/// [`LrDecay`] from `lr` to `floor` × `lr` at the run's last step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LrSchedule {
    pub lr: f64,
    pub decay: LrDecay,
    pub warmup_steps: u64,
    /// The final rate as a fraction of `lr` (0..=1).
    pub floor: f64,
}

impl LrSchedule {
    /// The same rate at every step.
    pub fn constant(lr: f64) -> Self {
        Self {
            lr,
            decay: LrDecay::Constant,
            warmup_steps: 0,
            floor: 1.0,
        }
    }

    /// The rate of step `step` (counting from 0) of a run of `total` steps. The warm-up takes
    /// at most a tenth of the run, so a short run is not all warm-up.
    pub fn at(&self, step: u64, total: u64) -> f64 {
        let warmup = self.warmup_steps.min(total / 10);
        let warm = if step < warmup {
            (step + 1) as f64 / warmup as f64
        } else {
            1.0
        };
        let span = total.saturating_sub(warmup).max(1);
        let progress = (step.saturating_sub(warmup) as f64 / span as f64).clamp(0.0, 1.0);
        let decay = match self.decay {
            LrDecay::Constant => 1.0,
            LrDecay::Linear => 1.0 - progress,
            LrDecay::Cosine => 0.5 * (1.0 + (std::f64::consts::PI * progress).cos()),
        };
        self.lr * warm * (self.floor + (1.0 - self.floor) * decay)
    }
}

fn legacy_lr_decay() -> LrDecay {
    LrDecay::Constant
}

fn default_lr_floor() -> f64 {
    0.1
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(default)]
pub struct TrainConfig {
    pub kind: LatentKind,
    /// `wordnet` (bundled) or a path to a text/TSV file or a directory with train/valid/test.
    pub corpus: String,
    pub out: PathBuf,
    pub vocab_size: usize,
    pub min_frequency: u64,
    /// How text is cut into tokens (older checkpoints: word).
    #[serde(default)]
    pub tokenizer: TokenizerKind,
    pub embed_dim: usize,
    pub hidden_dim: usize,
    pub latent_dim: usize,
    pub summary: Summary,
    pub z_every_step: bool,
    pub gumbel_temperature: f64,
    /// Longest sentence in words; longer corpus lines are skipped.
    pub max_len: usize,
    /// Total optimiser steps.
    pub steps: u64,
    /// Target tokens per batch (sentences of one length fill it).
    pub batch_tokens: usize,
    pub max_batch: usize,
    pub lr: f64,
    /// The learning rate's decay after the warm-up (runs saved before schedules existed kept
    /// it constant).
    #[serde(default = "legacy_lr_decay")]
    pub lr_decay: LrDecay,
    /// Steps over which the learning rate grows linearly from 0 to `lr` (at most a tenth of
    /// the run).
    #[serde(default)]
    pub warmup_steps: u64,
    /// The rate at the last step, as a fraction of `lr` (decaying schedules).
    #[serde(default = "default_lr_floor")]
    pub lr_floor: f64,
    pub weight_decay: f64,
    pub clip_norm: f64,
    /// Probability that a decoder input word becomes <unk>.
    pub word_dropout: f64,
    /// If set, word dropout moves linearly from `word_dropout` to this over `word_dropout_steps`.
    pub word_dropout_end: Option<f64>,
    pub word_dropout_steps: u64,
    /// Dropout on the decoder's non-recurrent connections (its input vectors and the states
    /// fed to the output layer) while training; 0 leaves it out (runs saved before this
    /// existed had none).
    #[serde(default)]
    pub dropout: f64,
    pub kl_anneal: KlAnneal,
    pub kl_anneal_steps: u64,
    /// The KL weight once annealing is done.
    pub kl_weight: f64,
    /// Free bits: a floor (nats) under each latent dimension's KL in the loss, averaged over
    /// the batch (Kingma et al. 2016): a dimension whose batch-mean KL is below it counts as
    /// the floor and is not pulled further towards the prior. 0 leaves it out (runs saved
    /// before this existed had none). See [`free_bits_kl`].
    #[serde(default)]
    pub free_bits: f64,
    /// Weight of the mutual-information term (0 disables the auxiliary network).
    pub mi_weight: f64,
    /// Weight of the decorrelation penalty on the code (mean squared correlation between the
    /// batch's code dimensions, off the diagonal); 0 leaves it out.
    pub decorrelation: f64,
    /// Which means and variances standardise the code for the decorrelation penalty: the
    /// batch's own, or running estimates over the whole run (runs saved before this existed
    /// used the batch's: [`DecorrelationMoments::default`]).
    #[serde(default)]
    pub decorrelation_moments: DecorrelationMoments,
    /// Steps at the start of the run without the decorrelation penalty, so the code can form
    /// first (runs saved before this existed applied it from step 0).
    #[serde(default)]
    pub decorrelation_start: u64,
    /// Steps over which the decorrelation weight then grows linearly from 0 to
    /// `decorrelation` (0: the full weight at once).
    #[serde(default)]
    pub decorrelation_warmup: u64,
    /// With running moments: penalise only the pairs of code dimensions whose running
    /// correlation over the run is above this, each by its excess, instead of the mean squared
    /// correlation of every pair; 0 (the default, and runs saved before this existed) penalises
    /// every pair. See [`decorrelation_penalty_above`].
    #[serde(default)]
    pub decorrelation_above: f64,
    /// How the binary kinds' bits are drawn while training (runs saved before this existed
    /// sampled them: [`Binarize::default`]).
    #[serde(default)]
    pub binarize: Binarize,
    /// How the training step's large matrix products are computed: fp32, or bf16 operands with
    /// fp32 sums (weights, gradients and Adam state stay fp32). Runs saved before this existed
    /// trained in fp32. A new run from the command line or the Train tab that names none gets
    /// [`default_precision`].
    #[serde(default)]
    pub precision: Precision,
    pub seed: u64,
    pub valid_every: u64,
    /// Validation sentences used during training (the first N of the split).
    pub valid_sentences: usize,
    pub checkpoint_every: u64,
    /// Store weights in half precision.
    pub half: bool,
    /// Continue from `out` (its weights, vocabulary and optimiser state) instead of starting fresh.
    pub resume: bool,
    /// Start from this checkpoint's weights and vocabulary (same architecture) instead of a
    /// fresh initialisation; the file itself is only read. A resumed run keeps it as the
    /// record of where the run began and reads its weights from `out`.
    #[serde(default)]
    pub init: Option<PathBuf>,
    /// Stop after this many seconds of training (validating and saving as at the last step),
    /// or at `steps`, whichever comes first.
    pub time_limit_secs: Option<f64>,
    /// The clock `time_limit_secs` is read on (runs saved before this existed: wall).
    #[serde(default)]
    pub time_clock: TimeClock,
}

/// Which clock `--time` reads.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, Hash, clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum TimeClock {
    /// Elapsed wall-clock time.
    #[default]
    Wall,
    /// This process's CPU time (user + system, every thread): equal budgets for runs that
    /// share a busy machine.
    Cpu,
}

impl TimeClock {
    /// Seconds on this clock since some fixed point (differences are what count).
    pub fn now(self, started: Instant) -> f64 {
        match self {
            TimeClock::Wall => started.elapsed().as_secs_f64(),
            TimeClock::Cpu => process_cpu_seconds(),
        }
    }
}

/// CPU seconds this process has used so far (user + system, every thread); NaN where the
/// platform does not say.
pub fn process_cpu_seconds() -> f64 {
    #[cfg(unix)]
    {
        // SAFETY: getrusage writes only into the struct it is given.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } == 0 {
            let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
            return secs(usage.ru_utime) + secs(usage.ru_stime);
        }
    }
    f64::NAN
}

/// Lines with more words than this are skipped when loading a training corpus.
pub const MAX_LINE_WORDS: usize = 4096;

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            kind: LatentKind::Binary,
            corpus: "wordnet".into(),
            out: PathBuf::from("model.safetensors"),
            vocab_size: 8000,
            min_frequency: 2,
            tokenizer: TokenizerKind::Word,
            embed_dim: 128,
            hidden_dim: 256,
            latent_dim: 64,
            summary: Summary::Last,
            z_every_step: false,
            gumbel_temperature: 0.5,
            // The bundled corpus's lines have at most 30 words; 40 tokens leaves room for a
            // subword vocabulary's pieces. Longer lines are truncated, not dropped.
            max_len: 40,
            steps: 5000,
            batch_tokens: 800,
            max_batch: 128,
            // 2e-3 trains better binary codes than 1e-3 in the same steps (lower perplexity and
            // less bit duplication on WordNet and on the Debian corpus; see README).
            lr: 2e-3,
            // Measured on WordNet from scratch (docs/recipe.md): a constant rate reached a
            // far lower validation perplexity in 1,500 steps than a cosine decay (the binary
            // code forms late, while the rate is still falling).
            lr_decay: LrDecay::Constant,
            warmup_steps: 0,
            lr_floor: default_lr_floor(),
            weight_decay: 0.0,
            clip_norm: 5.0,
            word_dropout: 0.0,
            word_dropout_end: None,
            word_dropout_steps: 0,
            dropout: 0.0,
            kl_anneal: KlAnneal::None,
            kl_anneal_steps: 0,
            kl_weight: 1.0,
            free_bits: 0.0,
            mi_weight: 0.0,
            decorrelation: 0.0,
            decorrelation_moments: DecorrelationMoments::default(),
            decorrelation_start: 0,
            decorrelation_warmup: 0,
            decorrelation_above: 0.0,
            binarize: Binarize::default(),
            precision: Precision::Fp32,
            seed: 42,
            valid_every: 500,
            valid_sentences: 2000,
            checkpoint_every: 500,
            half: false,
            resume: false,
            init: None,
            time_limit_secs: None,
            time_clock: TimeClock::Wall,
        }
    }
}

impl TrainConfig {
    pub fn model_config(&self, vocab_size: usize) -> SeqConfig {
        SeqConfig {
            vocab_size,
            embed_dim: self.embed_dim,
            hidden_dim: self.hidden_dim,
            latent_dim: self.latent_dim,
            latent: self.kind,
            summary: self.summary,
            z_every_step: self.z_every_step,
            gumbel_temperature: self.gumbel_temperature,
            mi_head: self.mi_weight > 0.0 && self.kind.has_latent(),
            max_len: self.max_len,
        }
    }

    /// The learning-rate schedule of this run.
    pub fn lr_schedule(&self) -> LrSchedule {
        LrSchedule {
            lr: self.lr,
            decay: self.lr_decay,
            warmup_steps: self.warmup_steps,
            floor: self.lr_floor,
        }
    }

    /// The terms the training loss adds to the NLL per token, as the log names them ("" when
    /// it is the NLL alone): the weighted KL of the kinds that have one in their objective,
    /// the mutual-information term, the decorrelation penalty.
    pub fn objective_terms(&self) -> String {
        let mut terms = Vec::new();
        if self.kind.kl_in_loss() && self.kl_weight > 0.0 {
            terms.push(if self.free_bits > 0.0 {
                "KL (free bits)"
            } else {
                "KL"
            });
        }
        if self.mi_weight > 0.0 && self.kind.has_latent() {
            terms.push("mutual information");
        }
        if self.decorrelation > 0.0 && self.kind.has_latent() {
            terms.push("decorrelation");
        }
        terms.join(" + ")
    }

    /// The regularisers of this run, for the note `train --init` prints: the settings it
    /// takes from the starting checkpoint's run unless flags say otherwise.
    pub fn regularisers(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.dropout > 0.0 {
            out.push(format!("dropout {}", self.dropout));
        }
        if self.word_dropout > 0.0 {
            out.push(format!("word dropout {}", self.word_dropout));
        }
        if self.kind.kl_in_loss() && self.kl_weight > 0.0 {
            out.push(format!("KL weight {}", self.kl_weight));
            if self.free_bits > 0.0 {
                out.push(format!("free bits {}", self.free_bits));
            }
        }
        if self.mi_weight > 0.0 {
            out.push(format!("MI weight {}", self.mi_weight));
        }
        if self.decorrelation > 0.0 {
            let mut d = format!("decorrelation {}", self.decorrelation);
            if self.decorrelation_above > 0.0 {
                d += &format!(" on pairs above {}", self.decorrelation_above);
            }
            out.push(d);
        }
        if self.weight_decay > 0.0 {
            out.push(format!("weight decay {}", self.weight_decay));
        }
        out
    }

    /// KL weight at `step`.
    pub fn kl_weight_at(&self, step: u64) -> f64 {
        kl_weight_at(self.kl_weight, self.kl_anneal, self.kl_anneal_steps, step)
    }

    /// Decorrelation weight at `step` (counting from 0): 0 for the first `decorrelation_start`
    /// steps, then growing linearly over `decorrelation_warmup` steps (W/N, 2W/N, …) to
    /// `decorrelation`.
    pub fn decorrelation_at(&self, step: u64) -> f64 {
        if step < self.decorrelation_start {
            return 0.0;
        }
        if self.decorrelation_warmup == 0 {
            return self.decorrelation;
        }
        let f = (step - self.decorrelation_start + 1) as f64 / self.decorrelation_warmup as f64;
        self.decorrelation * f.min(1.0)
    }

    /// Word dropout rate at `step`.
    pub fn word_dropout_at(&self, step: u64) -> f64 {
        match self.word_dropout_end {
            Some(end) if self.word_dropout_steps > 0 => {
                let f = (step as f64 / self.word_dropout_steps as f64).min(1.0);
                self.word_dropout + (end - self.word_dropout) * f
            }
            _ => self.word_dropout,
        }
    }

    fn validate(&self) -> Result<()> {
        if self.steps == 0 {
            bail!("--steps must be at least 1");
        }
        if let Some(t) = self.time_limit_secs {
            if !(t > 0.0 && t.is_finite()) {
                bail!("--time must be a positive duration, got {t} s");
            }
        }
        if self.kind.has_latent() && self.latent_dim == 0 {
            bail!(
                "--latent-dim must be at least 1 for a `{}` model",
                self.kind
            );
        }
        if self.embed_dim == 0 || self.hidden_dim == 0 {
            bail!("--embed-dim and --hidden-dim must be positive");
        }
        for (name, p) in [
            ("--word-dropout", self.word_dropout),
            ("--word-dropout-end", self.word_dropout_end.unwrap_or(0.0)),
        ] {
            if !(0.0..=1.0).contains(&p) {
                bail!("{name} must be within [0, 1], got {p}");
            }
        }
        if !(0.0..1.0).contains(&self.dropout) {
            bail!("--dropout must be within [0, 1), got {}", self.dropout);
        }
        if !(self.decorrelation >= 0.0 && self.decorrelation.is_finite()) {
            bail!(
                "--decorrelation must be a non-negative number, got {}",
                self.decorrelation
            );
        }
        if !(self.free_bits >= 0.0 && self.free_bits <= MAX_FREE_BITS) {
            bail!(
                "--free-bits must be within [0, {MAX_FREE_BITS}] nats per dimension, got {}",
                self.free_bits
            );
        }
        if self.free_bits > 0.0 && !self.kind.kl_in_loss() {
            bail!(
                "--free-bits sets a floor under the KL term, which a `{}` model does not have \
                 (gaussian, binary-vae and gumbel-vae do)",
                self.kind
            );
        }
        if !(0.0..1.0).contains(&self.decorrelation_above) {
            bail!(
                "--decorrelation-above must be within [0, 1), got {}",
                self.decorrelation_above
            );
        }
        if self.decorrelation_above > 0.0
            && self.decorrelation_moments != DecorrelationMoments::Running
        {
            bail!(
                "--decorrelation-above picks pairs by their correlation over the run: it needs \
                 --decorrelation-moments running"
            );
        }
        if self.binarize != Binarize::default()
            && !matches!(self.kind, LatentKind::Binary | LatentKind::BinaryVae)
        {
            bail!(
                "--binarize {} applies to the straight-through bits of binary and binary-vae, \
                 not to a `{}` model",
                self.binarize,
                self.kind
            );
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            bail!(
                "the learning rate must be a positive number, got {}",
                self.lr
            );
        }
        check_numbers(&[
            ("--lr", self.lr, MAX_LR),
            ("--weight-decay", self.weight_decay, MAX_WEIGHT),
            ("--clip-norm", self.clip_norm, MAX_WEIGHT),
            ("--kl-weight", self.kl_weight, MAX_WEIGHT),
            ("--mi-weight", self.mi_weight, MAX_WEIGHT),
            ("--gumbel-temperature", self.gumbel_temperature, MAX_WEIGHT),
            ("--decorrelation", self.decorrelation, MAX_WEIGHT),
        ])?;
        if self.batch_tokens == 0 || self.max_batch == 0 {
            bail!("--batch-tokens and --max-batch must be at least 1");
        }
        if self.batch_tokens > MAX_BATCH_TOKENS || self.max_batch > MAX_BATCH_SENTENCES {
            bail!(
                "--batch-tokens is {} and --max-batch {}: at most {MAX_BATCH_TOKENS} tokens and {MAX_BATCH_SENTENCES} sentences per batch",
                self.batch_tokens,
                self.max_batch
            );
        }
        if !(0.0..=1.0).contains(&self.lr_floor) {
            bail!("--lr-floor must be within [0, 1], got {}", self.lr_floor);
        }
        // A resumed run keeps the `init` it was started from as a record only (its weights
        // come from `out`); the command line refuses --init and --resume together.
        if let Some(init) = self.init.as_ref().filter(|_| !self.resume) {
            if self.out.as_os_str().is_empty() {
                bail!(
                    "--init needs --out: the new run's checkpoint (the --init file is only read)"
                );
            }
            let same = match (
                std::fs::canonicalize(init),
                std::fs::canonicalize(&self.out),
            ) {
                (Ok(a), Ok(b)) => a == b,
                _ => init == &self.out,
            };
            if same {
                bail!(
                    "--out {} is the --init checkpoint: give the new run its own --out (the --init file is only read)",
                    self.out.display()
                );
            }
        }
        if self.vocab_size < 5 {
            bail!("--vocab-size must be at least 5 (4 special tokens and a word)");
        }
        if self.max_len == 0 || self.max_len > crate::model::MAX_SENTENCE_LEN {
            bail!(
                "--max-len must be within 1..={}, got {}",
                crate::model::MAX_SENTENCE_LEN,
                self.max_len
            );
        }
        ModelConfig::Seq(self.model_config(self.vocab_size))
            .validate()
            .map_err(anyhow::Error::msg)?;
        Ok(())
    }
}

/// Largest learning rate a training config takes (far beyond any that trains; the divergence
/// tests use 100).
pub const MAX_LR: f64 = 1000.0;

/// Largest weight (KL, MI, decay), clipping norm or temperature a training config takes.
pub const MAX_WEIGHT: f64 = 1e6;

/// Steps over which a `train --init` run's decorrelation weight grows to its full value
/// (unless `--decorrelation-warmup` says otherwise): the running correlations the penalty
/// weighs pairs by start from the run's first batch, which is mostly noise, and take about
/// 1 / [`RunningMoments::RATE`] = 50 batches to settle.
pub const INIT_DECORRELATION_WARMUP: u64 = 200;

/// The settings of a run that starts from checkpoint `init` (`train --init`; the explorer's
/// Train tab "start from the opened checkpoint"): the settings of the run that made it
/// (`stored`, its provenance's training config) or else `base`, with `model`'s architecture
/// (its kind, sizes and vocabulary size), today's learning-rate schedule, the decorrelation
/// penalty from step 0 growing in over [`INIT_DECORRELATION_WARMUP`] steps, steps counted from
/// 0 (the default number), not resumed, no time limit. `out` is left empty: the new run needs
/// its own file (the `init` file is only read), which the caller names, as it decides the
/// corpus (the stored one is untrusted: [`Provenance::checked_corpus_spec`]).
pub fn init_settings(
    init: &Path,
    model: &SeqConfig,
    stored: Option<TrainConfig>,
    base: TrainConfig,
) -> TrainConfig {
    let mut cfg = stored.unwrap_or(base);
    cfg.kind = model.latent;
    cfg.embed_dim = model.embed_dim;
    cfg.hidden_dim = model.hidden_dim;
    cfg.latent_dim = model.latent_dim;
    cfg.summary = model.summary;
    cfg.z_every_step = model.z_every_step;
    cfg.gumbel_temperature = model.gumbel_temperature;
    cfg.max_len = model.max_len;
    cfg.vocab_size = model.vocab_size;
    // A new run: today's learning-rate schedule, whatever the old run used.
    let fresh = TrainConfig::default();
    cfg.lr_decay = fresh.lr_decay;
    cfg.warmup_steps = fresh.warmup_steps;
    cfg.lr_floor = fresh.lr_floor;
    // ... today's precision on this CPU (a flag or a config file still chooses, after this) ...
    cfg.precision = default_precision();
    // ... and the decorrelation penalty from step 0: the checkpoint's code has already formed.
    // Its weight grows over the first steps all the same: the running correlations it weighs
    // pairs by start from one batch, in which thousands of a 256-bit code's pairs pass 0.2 by
    // chance (at full weight the first step's loss was 95 for an nll of 1.1 per token).
    cfg.decorrelation_start = fresh.decorrelation_start;
    cfg.decorrelation_warmup = INIT_DECORRELATION_WARMUP;
    cfg.init = Some(init.to_path_buf());
    cfg.resume = false;
    cfg.time_limit_secs = None;
    cfg.time_clock = TimeClock::Wall;
    cfg.steps = fresh.steps;
    // The stored run's `out` is the init file itself: a new run needs its own.
    cfg.out = PathBuf::new();
    cfg
}

/// Each `(flag, value, max)` must be a finite number within `0..=max`: a clear error naming
/// the flag instead of a run that silently does something else (issue 23, item 10).
pub fn check_numbers(values: &[(&str, f64, f64)]) -> Result<()> {
    for &(flag, v, max) in values {
        if !(v.is_finite() && (0.0..=max).contains(&v)) {
            bail!("{flag} must be a finite number within 0..={max}, got {v}");
        }
    }
    Ok(())
}

/// What an optimiser-state file belongs to: a run (its model config, vocabulary, seed and
/// corpus, hashed) and the step of the checkpoint saved with it. `--resume` checks both, so
/// another run's state, or a state left a step behind by a save interrupted between its two
/// files, is never taken silently.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateTag {
    pub run: String,
    pub step: u64,
}

impl StateTag {
    pub fn new(
        config: &ModelConfig,
        vocab: &Vocab,
        seed: u64,
        corpus_hash: &str,
        step: u64,
    ) -> Result<Self> {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(serde_json::to_string(config)?.as_bytes());
        h.update([0]);
        h.update(vocab.to_json()?.as_bytes());
        h.update([0]);
        h.update(seed.to_le_bytes());
        h.update(corpus_hash.as_bytes());
        let run = format!("{:x}", h.finalize());
        Ok(Self {
            run: run[..16].to_string(),
            step,
        })
    }

    /// The tag of the run a checkpoint read for `--resume` belongs to.
    pub fn of_checkpoint(ckpt: &Checkpoint) -> Result<Self> {
        Self::new(
            &ckpt.config,
            &ckpt.vocab,
            ckpt.provenance.seed,
            &ckpt.provenance.corpus_hash,
            ckpt.provenance.step,
        )
    }
}

/// Restores the optimiser state saved beside a checkpoint being resumed, if it belongs to it:
/// a state of another run is an error; a missing one, or one from another step, restarts
/// Adam's moments with a note saying so. Returns the trainer's extra state saved with them
/// (empty where they were not restored).
pub fn resume_optimiser(
    adam: &mut Adam,
    state_file: &Path,
    expected: &StateTag,
    notes: &mut Vec<String>,
) -> Result<ExtraState> {
    if !state_file.exists() {
        notes.push(format!(
            "no optimiser state at {}; Adam restarts its moments",
            state_file.display()
        ));
        return Ok(ExtraState::new());
    }
    match read_state_tag(state_file)? {
        Some(tag) if tag.run != expected.run => bail!(
            "the optimiser state {} belongs to another run (run {}, the checkpoint's is {}); \
             delete it to resume with fresh Adam moments",
            state_file.display(),
            tag.run,
            expected.run
        ),
        Some(tag) if tag.step != expected.step => {
            notes.push(format!(
                "the optimiser state {} is from step {} but the checkpoint from step {} (a save \
                 was interrupted); Adam restarts its moments",
                state_file.display(),
                tag.step,
                expected.step
            ));
            Ok(ExtraState::new())
        }
        Some(_) => adam.load(state_file, &Device::Cpu),
        None => {
            notes.push(format!(
                "the optimiser state {} predates run tags; it is used as it is",
                state_file.display()
            ));
            adam.load(state_file, &Device::Cpu)
        }
    }
}

/// The run tag of an optimiser-state file (None for files written before tags existed).
pub fn read_state_tag(path: &Path) -> Result<Option<StateTag>> {
    let bytes = checkpoint::read_regular_file(
        path,
        "optimiser state",
        checkpoint::max_bytes::OPTIMISER_STATE,
    )?;
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes)
        .map_err(|e| anyhow::anyhow!("optimiser state {} is corrupt: {e}", path.display()))?;
    let meta = header.metadata().clone().unwrap_or_default();
    Ok(match (meta.get("run"), meta.get("step")) {
        (Some(run), Some(step)) => Some(StateTag {
            run: run.clone(),
            step: step
                .parse()
                .with_context(|| format!("optimiser state {}: bad step", path.display()))?,
        }),
        _ => None,
    })
}

/// The fields of the model config `wanted` (from the flags) that differ from the checkpoint's
/// `stored` one, as `name: stored → wanted`; a resumed run cannot change its architecture.
pub fn config_changes(stored: &ModelConfig, wanted: &ModelConfig) -> Result<Vec<String>> {
    let (a, b) = (serde_json::to_value(stored)?, serde_json::to_value(wanted)?);
    let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else {
        return Ok(Vec::new());
    };
    Ok(a.iter()
        .filter(|(k, _)| k.as_str() != "vocab_size")
        .filter_map(|(k, v)| {
            let w = b.get(k).cloned().unwrap_or(serde_json::Value::Null);
            (v != &w).then(|| format!("{k}: {v} → {w}"))
        })
        .collect())
}

/// Stops a run whose `what` (a loss or perplexity) is no longer a finite number: training has
/// diverged, and saving would only store it.
pub fn check_finite(what: &str, value: f64, step: u64, out: &Path) -> Result<()> {
    if value.is_finite() {
        return Ok(());
    }
    let kept = if out.exists() {
        format!("the last good checkpoint is kept at {}", out.display())
    } else {
        "no checkpoint had been written yet".to_string()
    };
    bail!(
        "training stopped, the run diverged: the {what} became {value} at step {step}; {kept}. Try a lower --lr or --clip-norm."
    )
}

/// The optimiser-state file kept beside a checkpoint for `--resume`.
pub fn state_path(out: &Path) -> PathBuf {
    let stem = out
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into());
    out.with_file_name(format!("{stem}.train-state.safetensors"))
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StepStats {
    pub step: u64,
    pub total_steps: u64,
    pub epoch: u64,
    /// Training objective per target token.
    pub loss: f64,
    pub nll_per_token: f64,
    /// KL per sentence (nats).
    pub kl: f64,
    pub ppl: f64,
    pub kl_weight: f64,
    pub word_dropout: f64,
    pub grad_norm: f64,
    pub tokens_per_sec: f64,
    pub elapsed_secs: f64,
    pub eta_secs: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ValidStats {
    pub step: u64,
    /// NLL per word (Σ NLL over a sentence's tokens and `<eos>` / Σ (words + 1)) with the
    /// rounded code (μ for continuous codes), as `eval` reports it.
    pub nll_per_word: f64,
    /// exp of [`Self::nll_per_word`]: comparable across tokenizers, unlike the training steps'
    /// per-token figure.
    pub ppl: f64,
    pub kl: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TrainOutcome {
    /// The step the model is at (counted from the start of training, across resumes).
    pub steps_done: u64,
    /// The step this run started from (0, or the step of the checkpoint it resumed): a run
    /// stopped with `steps_done == start_step` finished no step and saved nothing.
    pub start_step: u64,
    pub path: PathBuf,
    pub cancelled: bool,
    pub last_valid: Option<ValidStats>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum TrainEvent {
    Started {
        start_step: u64,
        total_steps: u64,
        train_sentences: usize,
        valid_sentences: usize,
        batches_per_epoch: usize,
        parameters: usize,
        /// e.g. how many corpus lines were skipped and why.
        notes: Vec<String>,
    },
    Step(StepStats),
    Valid(ValidStats),
    /// (input, greedy decoding of its code) for a few validation sentences.
    Reconstructions {
        step: u64,
        pairs: Vec<(String, String)>,
    },
    Checkpoint {
        step: u64,
        path: PathBuf,
    },
    Paused(bool),
    Finished(TrainOutcome),
}

/// Flags the caller flips to steer a running training.
#[derive(Clone, Default, Debug)]
pub struct TrainControl {
    pub cancel: Arc<AtomicBool>,
    pub pause: Arc<AtomicBool>,
}

impl TrainControl {
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::SeqCst);
    }
    pub fn is_cancelled(&self) -> bool {
        self.cancel.load(Ordering::SeqCst)
    }
    /// Blocks while paused (sending `Paused(true)` once, then `Paused(false)` on resuming);
    /// returns whether training was cancelled. Trainers call it between steps, never inside one.
    pub fn wait_while_paused(&self, send: &dyn Fn(TrainEvent)) -> bool {
        if self.pause.load(Ordering::SeqCst) && !self.is_cancelled() {
            send(TrainEvent::Paused(true));
            while self.pause.load(Ordering::SeqCst) && !self.is_cancelled() {
                std::thread::sleep(Duration::from_millis(30));
            }
            send(TrainEvent::Paused(false));
        }
        self.is_cancelled()
    }

    pub fn toggle_pause(&self) -> bool {
        !self.pause.fetch_xor(true, Ordering::SeqCst)
    }
}

/// Adam with decoupled weight decay (AdamW). Moments live in plain vectors and each update is
/// one fused pass per parameter (candle's composed version costs a dozen full-size temporaries
/// per parameter); they can be saved for `--resume`, which candle's own optimiser does not expose.
pub struct Adam {
    vars: Vec<(String, Var)>,
    m: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
    t: u64,
    lr: f64,
    weight_decay: f64,
}

/// Most tokens in one training batch (`--batch-tokens`; the shipped runs use 800 and 1,600):
/// a batch's logits take tokens × vocabulary values.
pub const MAX_BATCH_TOKENS: usize = 1 << 16;
/// Most sentences in one training batch (`--max-batch`; default 128).
pub const MAX_BATCH_SENTENCES: usize = 4096;

/// Elements per task of the AdamW update (the output layer alone has 2M).
const ADAM_CHUNK: usize = 1 << 16;

/// Calls `f` with a CPU f32 tensor's values, read in place (no copy).
fn with_values<T>(t: &Tensor, f: impl FnOnce(&[f32]) -> T) -> Result<T> {
    let guard = t.storage_and_layout().0;
    let candle_core::Storage::Cpu(s) = &*guard else {
        bail!("the optimiser runs on the CPU only");
    };
    Ok(f(crate::model::sgemm::contiguous_f32(
        s,
        t.layout(),
        "a gradient",
    )?))
}

/// One parameter's AdamW update, applied to the variable's own storage (candle's in-place op)
/// with its gradient read in place: no copy of the parameter or its gradient per step.
struct AdamUpdate<'a> {
    m: Mutex<&'a mut [f32]>,
    v: Mutex<&'a mut [f32]>,
    constants: kernels::AdamStep,
}

impl candle_core::InplaceOp2 for AdamUpdate<'_> {
    fn name(&self) -> &'static str {
        "adam-update"
    }

    fn cpu_fwd(
        &self,
        dst: &mut candle_core::CpuStorage,
        dst_l: &candle_core::Layout,
        grad: &candle_core::CpuStorage,
        grad_l: &candle_core::Layout,
    ) -> candle_core::Result<()> {
        let g = crate::model::sgemm::contiguous_f32(grad, grad_l, "a gradient")?;
        let param = match (dst, dst_l.contiguous_offsets()) {
            (candle_core::CpuStorage::F32(p), Some((a, b))) => &mut p[a..b],
            _ => candle_core::bail!("adam: a parameter must be a contiguous f32 tensor"),
        };
        let mut m = self.m.lock().unwrap_or_else(|e| e.into_inner());
        let mut v = self.v.lock().unwrap_or_else(|e| e.into_inner());
        if param.len() != g.len() || m.len() != g.len() || v.len() != g.len() {
            candle_core::bail!("adam: a gradient's size differs from its parameter's");
        }
        // Element-wise, so chunks on every thread give the same values as one pass.
        use rayon::prelude::*;
        let constants = self.constants;
        param
            .par_chunks_mut(ADAM_CHUNK)
            .zip(g.par_chunks(ADAM_CHUNK))
            .zip(m.par_chunks_mut(ADAM_CHUNK))
            .zip(v.par_chunks_mut(ADAM_CHUNK))
            .for_each(|(((p, g), m), v)| kernels::adam_update(p, g, m, v, constants));
        Ok(())
    }
}

impl Adam {
    const B1: f64 = 0.9;
    const B2: f64 = 0.999;
    const EPS: f64 = 1e-8;

    pub fn new(vars: Vec<(String, Var)>, lr: f64, weight_decay: f64) -> Result<Self> {
        let m: Vec<Vec<f32>> = vars
            .iter()
            .map(|(_, v)| vec![0f32; v.elem_count()])
            .collect();
        let v = m.clone();
        Ok(Self {
            vars,
            m,
            v,
            t: 0,
            lr,
            weight_decay,
        })
    }

    /// Sets the learning rate of the next steps.
    pub fn set_lr(&mut self, lr: f64) {
        self.lr = lr;
    }

    /// Clips the global gradient norm to `clip` (if positive), then updates; returns the norm.
    pub fn step(&mut self, grads: &GradStore, clip: f64) -> Result<f64> {
        // Backward leaves contiguous gradients; `contiguous` is then a cheap handle.
        let grads: Vec<Option<Tensor>> = self
            .vars
            .iter()
            .map(|(_, var)| grads.get(var).map(|g| g.contiguous()).transpose())
            .collect::<candle_core::Result<_>>()?;
        let mut sq = 0f64;
        for g in grads.iter().flatten() {
            sq += with_values(g, |g| kernels::sum_squares(g) as f64)?;
        }
        let norm = sq.sqrt();
        if !norm.is_finite() {
            bail!("the gradient norm is {norm}");
        }
        let scale = if clip > 0.0 && norm > clip {
            clip / norm
        } else {
            1.0
        };
        self.t += 1;
        let constants = kernels::AdamStep {
            lr: self.lr as f32,
            beta1: Self::B1 as f32,
            beta2: Self::B2 as f32,
            eps: Self::EPS as f32,
            weight_decay: self.weight_decay as f32,
            bias_correction1: (1.0 - Self::B1.powi(self.t as i32)) as f32,
            bias_correction2: (1.0 - Self::B2.powi(self.t as i32)) as f32,
            grad_scale: scale as f32,
        };
        for (((_, var), g), (m, v)) in self
            .vars
            .iter()
            .zip(&grads)
            .zip(self.m.iter_mut().zip(self.v.iter_mut()))
        {
            let Some(g) = g else { continue };
            let update = AdamUpdate {
                m: Mutex::new(m),
                v: Mutex::new(v),
                constants,
            };
            var.as_tensor().inplace_op2(g, &update)?;
        }
        Ok(norm)
    }

    /// Saves the moments and step count for `--resume`, tagged with the run and checkpoint
    /// step they belong to, with the trainer's `extra` state (named vectors, such as the
    /// code's [`RunningMoments`]) beside them.
    pub fn save(&self, path: &Path, tag: &StateTag, extra: &[(&str, &[f32])]) -> Result<()> {
        self.stage(path, tag, extra)?.commit()
    }

    /// [`Adam::save`] up to the rename (see [`checkpoint::Staged`]).
    pub fn stage(
        &self,
        path: &Path,
        tag: &StateTag,
        extra: &[(&str, &[f32])],
    ) -> Result<checkpoint::Staged> {
        let mut tensors: Vec<(String, Tensor)> = Vec::new();
        for (name, values) in extra {
            tensors.push((
                format!("{EXTRA_PREFIX}{name}"),
                Tensor::from_slice(values, values.len(), &Device::Cpu)?,
            ));
        }
        for (i, (name, var)) in self.vars.iter().enumerate() {
            tensors.push((
                format!("m.{name}"),
                Tensor::from_slice(&self.m[i], var.shape(), &Device::Cpu)?,
            ));
            tensors.push((
                format!("v.{name}"),
                Tensor::from_slice(&self.v[i], var.shape(), &Device::Cpu)?,
            ));
        }
        let mut meta = std::collections::HashMap::new();
        meta.insert("adam_t".to_string(), self.t.to_string());
        meta.insert("run".to_string(), tag.run.clone());
        meta.insert("step".to_string(), tag.step.to_string());
        let bytes =
            safetensors::serialize(tensors.iter().map(|(n, t)| (n.as_str(), t)), Some(meta))?;
        drop(tensors);
        checkpoint::stage(path, &bytes)
    }

    /// Restores what [`Adam::save`] wrote; returns its `extra` state by name.
    pub fn load(&mut self, path: &Path, dev: &Device) -> Result<ExtraState> {
        let bytes = checkpoint::read_regular_file(
            path,
            "optimiser state",
            checkpoint::max_bytes::OPTIMISER_STATE,
        )?;
        let (_, header) = safetensors::SafeTensors::read_metadata(&bytes)
            .map_err(|e| anyhow::anyhow!("optimiser state {} is corrupt: {e}", path.display()))?;
        let shown = path.display();
        let t: u64 = header
            .metadata()
            .as_ref()
            .and_then(|m| m.get("adam_t"))
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("optimiser state {shown} has no step count"))?;
        // Adam's bias corrections raise β to the step count (as an i32): a count beyond that
        // is no run's, and would turn every update into NaN.
        if t > MAX_ADAM_STEPS {
            bail!("optimiser state {shown} is corrupt: its step count {t} is beyond {MAX_ADAM_STEPS}; delete it to resume with fresh Adam moments");
        }
        let tensors = candle_core::safetensors::load_buffer(&bytes, dev)
            .map_err(|e| anyhow::anyhow!("optimiser state {shown} is corrupt: {e}"))?;
        // Every tensor is checked before anything is restored: fp32, finite, v ≥ 0 (a NaN or
        // negative second moment makes the first step's update NaN, and the run would stop as
        // "diverged" with advice about the learning rate).
        let values = |key: &str, t: &Tensor| -> Result<Vec<f32>> {
            if t.dtype() != candle_core::DType::F32 {
                bail!(
                    "optimiser state {shown}: `{key}` is {:?}, expected F32 (corrupt file?)",
                    t.dtype()
                );
            }
            let v = t.flatten_all()?.to_vec1::<f32>()?;
            let bad = |x: f32| !x.is_finite() || (key.starts_with("v.") && x < 0.0);
            if let Some(x) = v.iter().copied().find(|&x| bad(x)) {
                bail!(
                    "optimiser state {shown} is corrupt: `{key}` holds {x}; delete it to resume with fresh Adam moments"
                );
            }
            Ok(v)
        };
        let mut moments = Vec::with_capacity(self.vars.len());
        for (name, var) in &self.vars {
            let mut pair = Vec::with_capacity(2);
            for prefix in ["m", "v"] {
                let key = format!("{prefix}.{name}");
                let t = tensors
                    .get(&key)
                    .with_context(|| format!("optimiser state {shown} lacks `{key}`"))?;
                if t.dims() != var.dims() {
                    bail!(
                        "optimiser state `{key}` has shape {:?}, expected {:?}",
                        t.dims(),
                        var.dims()
                    );
                }
                pair.push(values(&key, t)?);
            }
            moments.push(pair);
        }
        let mut extra = ExtraState::new();
        for (key, t) in &tensors {
            if let Some(name) = key.strip_prefix(EXTRA_PREFIX) {
                extra.insert(name.to_string(), values(key, t)?);
            }
        }
        for (i, mut pair) in moments.into_iter().enumerate() {
            self.v[i] = pair.pop().expect("v");
            self.m[i] = pair.pop().expect("m");
        }
        self.t = t;
        Ok(extra)
    }
}

/// The largest Adam step count an optimiser-state file may hold (the bias corrections take
/// it as an i32 power).
pub const MAX_ADAM_STEPS: u64 = i32::MAX as u64;

/// A trainer's own state saved beside Adam's for `--resume` (see [`Adam::save`]).
pub type ExtraState = BTreeMap<String, Vec<f32>>;

/// How [`Adam::save`] names the tensors of the trainer's extra state.
const EXTRA_PREFIX: &str = "extra.";

/// An Adam(lr 1e-3) step function over every parameter, for benchmarks.
pub fn bench_optimizer(varmap: &candle_nn::VarMap) -> Result<impl FnMut(&GradStore) -> Result<()>> {
    let mut adam = Adam::new(named_vars(varmap), 1e-3, 0.0)?;
    Ok(move |grads: &GradStore| adam.step(grads, 0.0).map(|_| ()))
}

/// Replaces each decoder input word by <unk> with probability `rate`.
fn drop_words(sentences: &[&[u32]], rate: f64, rng: &mut StdRng) -> Vec<Vec<u32>> {
    sentences
        .iter()
        .map(|s| {
            s.iter()
                .map(|&w| if rng.random::<f64>() < rate { UNK } else { w })
                .collect()
        })
        .collect()
}

/// The KL weight at `step` under a schedule: full `weight` from the start, or grown to it
/// linearly or logistically over `anneal_steps`. Every family's trainer uses this one.
pub fn kl_weight_at(weight: f64, anneal: KlAnneal, anneal_steps: u64, step: u64) -> f64 {
    let n = anneal_steps.max(1) as f64;
    let s = step as f64;
    weight
        * match anneal {
            KlAnneal::None => 1.0,
            KlAnneal::Linear => (s / n).min(1.0),
            KlAnneal::Logistic => 1.0 / (1.0 + (-10.0 / n * (s - n / 2.0)).exp()),
        }
}

/// The generator a step draws its noise and dropout from: a function of the seed and the step
/// alone, so a resumed run draws what the uninterrupted one would have.
pub fn step_rng(seed: u64, step: u64) -> StdRng {
    StdRng::seed_from_u64(seed ^ step.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

/// The generator an epoch's batch order is drawn from.
pub fn epoch_rng(seed: u64, epoch: u64) -> StdRng {
    StdRng::seed_from_u64(seed.wrapping_add(epoch.wrapping_mul(1_000_003)))
}

/// The schedule and cadence of a run, whatever the model family.
#[derive(Clone, Debug, PartialEq)]
pub struct LoopSettings {
    pub seed: u64,
    /// Steps already done (a resumed run starts here).
    pub start_step: u64,
    pub steps: u64,
    /// Validate every this many steps (0: only at the end).
    pub valid_every: u64,
    /// Save every this many steps (0: only at the end).
    pub checkpoint_every: u64,
    pub time_limit_secs: Option<f64>,
    /// The clock `time_limit_secs` is read on.
    pub time_clock: TimeClock,
    pub kl_weight: f64,
    pub kl_anneal: KlAnneal,
    pub kl_anneal_steps: u64,
    /// The learning rate of each step.
    pub lr: LrSchedule,
    /// The checkpoint, named when the run diverges.
    pub out: PathBuf,
}

/// What one optimiser step did.
#[derive(Clone, Debug, PartialEq)]
pub struct StepTerms {
    /// The objective that was minimised.
    pub loss: f64,
    /// Summed reconstruction NLL over `units`.
    pub nll_sum: f64,
    /// Summed KL over `examples`.
    pub kl_sum: f64,
    /// Target tokens (sequence models) or words (bags of words) in the batch.
    pub units: f64,
    /// Sentences or documents in the batch.
    pub examples: usize,
    pub grad_norm: f64,
    pub word_dropout: f64,
}

/// One validation pass: its statistics, a few reconstructions and any further metrics the
/// checkpoint should record.
#[derive(Clone, Debug, PartialEq)]
pub struct Validation {
    pub stats: ValidStats,
    pub pairs: Vec<(String, String)>,
    pub metrics: Vec<(String, f64)>,
}

/// What a model family brings to [`run_loop`]: its batches, its loss and update, its
/// validation and its checkpoint. The loop owns the schedule, the cadence, the NaN guard,
/// pause / cancel and the progress events.
pub trait Objective {
    /// Batches in one epoch (at least 1).
    fn batches_per_epoch(&self) -> usize;
    /// One epoch's batches, as indices into the training set, in an order drawn from `rng`.
    fn plan_epoch(&self, rng: &mut StdRng) -> Vec<Vec<usize>>;
    /// Mean tokens (words) per step, for the ETA.
    fn mean_units_per_step(&self) -> f64;
    /// One optimiser step on `batch` (`step` counts from 0) with the KL weighted by `kl_weight`.
    fn step(
        &mut self,
        batch: &[usize],
        step: u64,
        kl_weight: f64,
        rng: &mut StdRng,
    ) -> Result<StepTerms>;
    /// Sets the optimiser's learning rate for the next step.
    fn set_lr(&mut self, lr: f64);
    /// A validation pass after `step` steps, or None when there is no validation data.
    fn validate(&mut self, step: u64) -> Result<Option<Validation>>;
    /// Writes the checkpoint after `step` steps (and sends its `Checkpoint` event).
    fn save(&mut self, step: u64, metrics: &BTreeMap<String, f64>) -> Result<()>;
    /// The model has a KL to the prior ([`crate::model::ModelConfig::has_kl`]): its
    /// checkpoints record `train_kl` and `valid_kl`; an `lm`'s or a bottleneck's record none
    /// (a 0 there read as a posterior equal to its prior).
    fn has_kl(&self) -> bool {
        true
    }
}

/// The training loop every family shares: steps `settings.start_step..settings.steps` through
/// `objective`, reporting each step, validating and saving at the settings' cadence (and at
/// the end), stopping with an error when the perplexity stops being finite, waiting while
/// paused and saving when cancelled.
pub fn run_loop(
    objective: &mut dyn Objective,
    settings: &LoopSettings,
    send: &dyn Fn(TrainEvent),
    control: &TrainControl,
) -> Result<TrainOutcome> {
    let s = settings;
    // A resumed run past its --steps would report "finished" without a step; a start beyond
    // any step count a flag accepts is a corrupt or forged checkpoint.
    if s.start_step > u32::MAX as u64 {
        bail!(
            "the checkpoint says it is at step {}, beyond any run (corrupt or forged?)",
            s.start_step
        );
    }
    if s.start_step > s.steps {
        bail!(
            "the run is already at step {} and --steps is {}: nothing to train (pass --steps above {} to go on)",
            s.start_step,
            s.steps,
            s.start_step
        );
    }
    let per_epoch = objective.batches_per_epoch().max(1) as u64;
    let mean_units_per_step = objective.mean_units_per_step();
    let mut metrics = BTreeMap::new();
    let mut last_valid = None;
    let mut plan: Option<(u64, Vec<Vec<usize>>)> = None;
    let started = Instant::now();
    let clock_start = s.time_clock.now(started);
    let spent = || s.time_clock.now(started) - clock_start;
    let mut ema_units_per_sec: Option<f64> = None;
    let mut step = s.start_step;
    let mut cancelled = false;
    while step < s.steps {
        if control.wait_while_paused(send) {
            cancelled = true;
            break;
        }
        let epoch = step / per_epoch;
        if plan.as_ref().map(|p| p.0) != Some(epoch) {
            plan = Some((epoch, objective.plan_epoch(&mut epoch_rng(s.seed, epoch))));
        }
        let batch = &plan.as_ref().expect("planned").1[(step % per_epoch) as usize];
        let t0 = Instant::now();
        let kl_w = kl_weight_at(s.kl_weight, s.kl_anneal, s.kl_anneal_steps, step);
        let mut rng = step_rng(s.seed, step);
        objective.set_lr(s.lr.at(step, s.steps));
        let r = objective.step(batch, step, kl_w, &mut rng)?;
        step += 1;

        let nll_unit = r.nll_sum / r.units;
        check_finite("training perplexity", nll_unit.exp(), step, &s.out)?;
        let kl = r.kl_sum / r.examples as f64;
        let ups = r.units / t0.elapsed().as_secs_f64().max(1e-9);
        let ema = ema_units_per_sec.map_or(ups, |e| 0.9 * e + 0.1 * ups);
        ema_units_per_sec = Some(ema);
        metrics.insert("train_loss".into(), r.loss);
        metrics.insert("train_ppl".into(), nll_unit.exp());
        if objective.has_kl() {
            metrics.insert("train_kl".into(), kl);
        }
        send(TrainEvent::Step(StepStats {
            step,
            total_steps: s.steps,
            epoch,
            loss: r.loss,
            nll_per_token: nll_unit,
            kl,
            ppl: nll_unit.exp(),
            kl_weight: kl_w,
            word_dropout: r.word_dropout,
            grad_norm: r.grad_norm,
            tokens_per_sec: ema,
            elapsed_secs: started.elapsed().as_secs_f64(),
            eta_secs: {
                let by_steps = (s.steps - step) as f64 * mean_units_per_step / ema.max(1e-9);
                match s.time_limit_secs {
                    Some(t) => by_steps.min(t - spent()).max(0.0),
                    None => by_steps,
                }
            },
        }));

        let out_of_time = s.time_limit_secs.is_some_and(|t| spent() >= t);
        let finishing = step == s.steps || out_of_time;
        if (s.valid_every > 0 && step.is_multiple_of(s.valid_every)) || finishing {
            if let Some(v) = objective.validate(step)? {
                check_finite("validation perplexity", v.stats.ppl, step, &s.out)?;
                metrics.insert("valid_ppl".into(), v.stats.ppl);
                if objective.has_kl() {
                    metrics.insert("valid_kl".into(), v.stats.kl);
                }
                for (name, value) in v.metrics {
                    metrics.insert(name, value);
                }
                send(TrainEvent::Valid(v.stats.clone()));
                send(TrainEvent::Reconstructions {
                    step,
                    pairs: v.pairs,
                });
                last_valid = Some(v.stats);
            }
        }
        if (s.checkpoint_every > 0 && step.is_multiple_of(s.checkpoint_every)) || finishing {
            objective.save(step, &metrics)?;
        }
        if out_of_time {
            break;
        }
    }
    if cancelled && step > s.start_step {
        objective.save(step, &metrics)?;
    }
    let outcome = TrainOutcome {
        steps_done: step,
        start_step: s.start_step,
        path: s.out.clone(),
        cancelled,
        last_valid,
    };
    send(TrainEvent::Finished(outcome.clone()));
    Ok(outcome)
}

impl TrainOutcome {
    /// Whether the run was stopped before it finished a step, so that it saved nothing (a
    /// resumed run's checkpoint stays at `start_step`).
    pub fn saved_nothing(&self) -> bool {
        self.cancelled && self.steps_done == self.start_step
    }
}

/// Losses of one batch: (objective to minimise, summed NLL, summed KL).
pub fn batch_loss(
    model: &SeqAutoencoder,
    batch: &TokenBatch,
    kl_weight: f64,
    mi_weight: f64,
    rng: &mut StdRng,
) -> Result<(Tensor, Tensor, Tensor)> {
    batch_loss_with(
        model,
        batch,
        kl_weight,
        mi_weight,
        0.0,
        Binarize::Sample,
        rng,
    )
}

/// `--free-bits` of a run from scratch that does not set it: 0.25 nats for the gaussian kind,
/// 0.4 per bit for binary-vae and gumbel-vae, none for the kinds without a KL term. Measured
/// (docs/recipe.md, "Free bits"), WordNet, 2,000 steps at equal CPU time: a 32-dimension
/// gaussian's perplexity with μ 213.9 → 155.0 with a logistic KL annealing and 386.6 → 191.7
/// without one (KL 0.49 → 7.95 nats: no collapse). With annealing, a 64-bit binary-vae's
/// rounded-code perplexity falls with the floor, 281.0 (none) → 250.2 (0.05) → 218.8 (0.1) →
/// 176.3 (0.2) → 153.2 (0.4), and no further without any KL pull (151.3 at 0.8 ≥ ln 2); a
/// gumbel-vae's 251.3 → 217.3 (0.1) → 178.7 (0.2) → 155.2 (0.4). On a corpus nobody tuned on
/// (manual-page sentences) 0.4 beat 0.1 too (binary-vae 94.1 → 81.5). A bit's KL from
/// Bernoulli(½) is at most ln 2 ≈ 0.69, so 0.4 still pulls a bit whose posteriors are on
/// average surer than about 92 %.
pub fn default_free_bits(kind: LatentKind) -> f64 {
    match kind {
        LatentKind::Gaussian => 0.25,
        LatentKind::BinaryVae | LatentKind::GumbelVae => 0.4,
        _ => 0.0,
    }
}

/// The precision of a new run that names none: bf16 where AMX tiles run at the active kernel
/// level — there it trains ~1.85× as fast as fp32 to a validation perplexity within 2 % of
/// fp32's (docs/benchmarks.md) — fp32 elsewhere (`vdpbf16ps` alone gave 1.5× on Zen 4 and
/// less than fp32 on Sapphire Rapids; the portable kernel is slower than fp32).
pub fn default_precision() -> Precision {
    if crate::model::kernels::active_level().amx() {
        Precision::Bf16
    } else {
        Precision::Fp32
    }
}

/// The largest `--free-bits` accepted: a Bernoulli bit's KL from the uniform prior is at most
/// ln 2 ≈ 0.69 nats, and a Gaussian dimension carrying more than this is no longer near
/// collapse.
pub const MAX_FREE_BITS: f64 = 10.0;

/// The KL term with free bits (Kingma et al. 2016, "Improved variational inference with
/// inverse autoregressive flow", §C.8): from the KL of each sentence and dimension `per_dim`
/// (B, L), Σ_j max(`floor`, mean_b KL_bj) · B — the summed KL when every dimension's batch
/// mean is above the floor, the floor's constant where it is below (no gradient towards the
/// prior for that dimension). A scalar, summed over sentences like the plain KL term.
pub fn free_bits_kl(per_dim: &Tensor, floor: f64) -> Result<Tensor> {
    let (b, _) = per_dim.dims2()?;
    let mean = per_dim.mean(0)?; // (L,)
    Ok((mean.maximum(floor)?.sum_all()? * b as f64)?)
}

/// Which means and variances standardise the code in the decorrelation penalty.
///
/// A batch holds sentences of one length (see `shuffled_epoch`), so bits that encode the
/// length are nearly constant within every batch: the batch's own correlation cannot see that
/// they duplicate each other across the corpus. Standardising with running estimates of each
/// dimension's mean and variance over the run's batches (of every length) shows it: within a
/// batch, such bits are shifted away from their corpus means together.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum DecorrelationMoments {
    /// The batch's own means and variances (the penalty as first shipped).
    #[default]
    Batch,
    /// Running means and variances over the run's batches.
    Running,
}

impl DecorrelationMoments {
    pub const ALL: [DecorrelationMoments; 2] =
        [DecorrelationMoments::Batch, DecorrelationMoments::Running];
    pub fn name(self) -> &'static str {
        match self {
            DecorrelationMoments::Batch => "batch",
            DecorrelationMoments::Running => "running",
        }
    }
}

impl std::fmt::Display for DecorrelationMoments {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for DecorrelationMoments {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        DecorrelationMoments::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| {
                format!("unknown decorrelation moments `{s}` (expected batch or running)")
            })
    }
}

/// Exponential moving averages of each code dimension's mean and variance over the batches
/// seen so far: the constants [`decorrelation_penalty_running`] standardises with. They are
/// saved with the optimiser state, so a resumed run goes on from them (a run resumed without
/// that state estimates them again from its first batch).
#[derive(Clone, Debug, Default)]
pub struct RunningMoments {
    mean: Vec<f32>,
    var: Vec<f32>,
    /// Running average of the batches' standardised correlation matrices (L × L, row-major),
    /// kept only by [`decorrelation_penalty_above`].
    corr: Vec<f32>,
}

impl RunningMoments {
    /// Weight of the newest batch in the averages.
    pub const RATE: f32 = 0.02;

    /// The least variance a dimension is standardised with. The moments are those of the
    /// bits' probabilities, whose variance falls towards 0 as a bit saturates on one side:
    /// divided by that, the smallest movement of a nearly constant bit weighed hundreds of
    /// times a lively bit's, and the cheapest way to lower the penalty became to silence the
    /// bit altogether (from scratch, 6 of 128 bits were constant over the validation split
    /// after 3,750 steps without this floor, 0 without the penalty). Below the floor a pair is
    /// penalised by its covariance over the floor instead of by its correlation.
    pub const VAR_FLOOR: f32 = 0.05;

    /// Folds the batch `codes` (B, L) into the averages (the first batch sets them).
    pub fn update(&mut self, codes: &Tensor) -> Result<()> {
        let codes = codes.detach();
        let mean: Vec<f32> = codes.mean(0)?.to_vec1()?;
        let var: Vec<f32> = codes
            .broadcast_sub(&codes.mean_keepdim(0)?)?
            .sqr()?
            .mean(0)?
            .to_vec1()?;
        if self.mean.len() != mean.len() {
            self.mean = mean;
            self.var = var;
            return Ok(());
        }
        let r = Self::RATE;
        for j in 0..mean.len() {
            // The variance about the running mean: the batch's own plus its mean's offset.
            let offset = mean[j] - self.mean[j];
            self.var[j] = (1.0 - r) * self.var[j] + r * (var[j] + offset * offset);
            self.mean[j] = (1.0 - r) * self.mean[j] + r * mean[j];
        }
        Ok(())
    }

    pub fn mean(&self) -> &[f32] {
        &self.mean
    }

    pub fn var(&self) -> &[f32] {
        &self.var
    }

    /// The running correlation matrix (L × L, row-major) of [`decorrelation_penalty_above`];
    /// empty before its first batch.
    pub fn corr(&self) -> &[f32] {
        &self.corr
    }

    /// The averages as named vectors, saved beside the optimiser state so that a resumed run
    /// goes on from them (see [`Adam::save`]).
    pub fn state(&self) -> Vec<(&'static str, &[f32])> {
        [
            ("moments.mean", &self.mean[..]),
            ("moments.var", &self.var[..]),
            ("moments.corr", &self.corr[..]),
        ]
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .collect()
    }

    /// The averages [`RunningMoments::state`] saved, for codes of `dim` dimensions; none (a
    /// fresh start from the next batch) where they are missing, of other sizes or not finite.
    pub fn from_state(extra: &ExtraState, dim: usize) -> Self {
        let get = |k: &str| extra.get(k).cloned().unwrap_or_default();
        let (mean, var, corr) = (get("moments.mean"), get("moments.var"), get("moments.corr"));
        let fits = mean.len() == dim
            && var.len() == dim
            && (corr.is_empty() || corr.len() == dim * dim)
            && mean.iter().chain(&var).chain(&corr).all(|v| v.is_finite())
            && var.iter().all(|&v| v >= 0.0);
        if fits {
            Self { mean, var, corr }
        } else {
            Self::default()
        }
    }

    /// Folds a batch's correlation matrix into the running one (the first sets it).
    fn update_corr(&mut self, corr: Vec<f32>) {
        if self.corr.len() != corr.len() {
            self.corr = corr;
            return;
        }
        let r = Self::RATE;
        for (c, x) in self.corr.iter_mut().zip(corr) {
            *c = (1.0 - r) * *c + r * x;
        }
    }
}

/// Mean squared correlation between different columns of `codes` (B, L), each standardised
/// with the given (constant) means and variances (at least [`RunningMoments::VAR_FLOOR`])
/// rather than the batch's own: bits that move
/// together away from their corpus means within a batch count as correlated even when the batch
/// holds them nearly constant. 0 when no two dimensions co-vary about those means.
pub fn decorrelation_penalty_running(codes: &Tensor, mean: &[f32], var: &[f32]) -> Result<Tensor> {
    match standardise_running(codes, mean, var)? {
        Some(standard) => mean_squared_off_diagonal(&standard),
        None => Ok(Tensor::zeros((), codes.dtype(), codes.device())?),
    }
}

/// The decorrelation penalty on the pairs that are correlated over the run, not on every pair.
///
/// The mean squared correlation of a batch of ~60 codes is mostly sampling noise: with L = 128
/// every one of the 8,128 pairs shows |r| ≈ 0.13 by chance, and the penalty pushes on all of
/// them alike, while the few pairs that duplicate each other over the corpus weigh 1/8,128 of
/// it. Here r_ij is the batch's correlation of bits i and j about their running means (the
/// mean over the batch of their deviations from them, over the root mean square of each
/// bit's deviations: unchanged when one bit's deviations shrink), and each pair is weighed
/// by its running correlation C_ij, the average of r_ij over the run's batches at
/// [`RunningMoments::RATE`]: g_ij = sign(C_ij) · max(|C_ij| − `above`, 0), held constant, and
/// the penalty is Σ_{i<j} g_ij · r_ij. Its gradient pushes each pair above
/// the threshold towards it, in proportion to the excess, and leaves every other pair alone.
/// The batch's correlations are folded into `moments`' running matrix afterwards (the first
/// batch sets it); the caller updates the means and variances as for the running penalty.
pub fn decorrelation_penalty_above(
    codes: &Tensor,
    moments: &mut RunningMoments,
    above: f32,
) -> Result<Tensor> {
    let zero = || Tensor::zeros((), codes.dtype(), codes.device());
    let (b, l) = codes.dims2()?;
    let mean = moments.mean();
    // One code has no correlations to speak of (each r_ij would be ±1): no penalty, and the
    // running matrix is left as it is.
    if b < 2 || l < 2 || mean.len() != l {
        return Ok(zero()?);
    }
    // Deviations from the running means, each column scaled by its own (differentiable) root
    // mean square over the batch: r_ij is the cosine between two bits' deviations, which a bit
    // cannot lower by moving less. Divided by the running deviations instead (constants),
    // shrinking a bit's movement shrank every product it is in, and the cheapest way down the
    // penalty was to silence a bit: at 256 bits, the pair (8, 206) at 0.77 became a bit 206
    // set in 2 % of the sentences instead of two bits apart.
    let mean = Tensor::from_slice(mean, (1, l), codes.device())?.to_dtype(codes.dtype())?;
    let deviation = codes.broadcast_sub(&mean)?; // (B, L)
    let inv_rms = (deviation.sqr()?.mean_keepdim(0)? + 1e-6)?
        .sqrt()?
        .recip()?; // (1, L)
    let standard = deviation.broadcast_mul(&inv_rms)?; // (B, L)
    let corr = (standard.t()?.matmul(&standard)? / b as f64)?; // (L, L)
    let batch: Vec<f32> = corr.detach().flatten_all()?.to_vec1()?;
    // The running matrix before this batch; the first batch stands in for it.
    let running = if moments.corr.len() == batch.len() {
        &moments.corr
    } else {
        &batch
    };
    let weights: Vec<f32> = (running.iter().enumerate())
        .map(|(k, &c)| {
            if k / l == k % l {
                0.0
            } else {
                c.signum() * (c.abs() - above).max(0.0)
            }
        })
        .collect();
    moments.update_corr(batch);
    if weights.iter().all(|&w| w == 0.0) {
        // Nothing above the threshold: no penalty and no gradient (the code still enters the
        // graph, so the step is the same either way).
        return Ok((corr.sum_all()? * 0.0)?);
    }
    let weights = Tensor::from_vec(weights, (l, l), codes.device())?.to_dtype(codes.dtype())?;
    // Both triangles hold each pair: half the sum counts it once.
    Ok(((corr * weights)?.sum_all()? * 0.5)?)
}

/// `codes` (B, L) standardised with the given running means and variances (each at least
/// [`RunningMoments::VAR_FLOOR`]); `None` where there is nothing to correlate.
fn standardise_running(codes: &Tensor, mean: &[f32], var: &[f32]) -> Result<Option<Tensor>> {
    let (b, l) = codes.dims2()?;
    if b < 1 || l < 2 || mean.len() != l || var.len() != l {
        return Ok(None);
    }
    let dev = codes.device();
    let mean = Tensor::from_slice(mean, (1, l), dev)?.to_dtype(codes.dtype())?;
    let inv_std: Vec<f32> = (var.iter())
        .map(|v| 1.0 / v.max(RunningMoments::VAR_FLOOR).sqrt())
        .collect();
    let inv_std = Tensor::from_vec(inv_std, (1, l), dev)?.to_dtype(codes.dtype())?;
    let standard = codes.broadcast_sub(&mean)?.broadcast_mul(&inv_std)?; // (B, L)
    Ok(Some(standard))
}

/// The mean over the L·(L − 1) off-diagonal entries of (standardᵀ · standard / B)², for a
/// standardised code `standard` (B, L): both decorrelation penalties end here.
fn mean_squared_off_diagonal(standard: &Tensor) -> Result<Tensor> {
    let (b, l) = standard.dims2()?;
    let corr = (standard.t()?.matmul(standard)? / b as f64)?; // (L, L)
    let diagonal = standard.sqr()?.mean_keepdim(0)?; // (1, L): corr_ii
    let off_diagonal = (corr.sqr()?.sum_all()? - diagonal.sqr()?.sum_all()?)?;
    Ok((off_diagonal / (l * (l - 1)) as f64)?)
}

/// Mean squared Pearson correlation between different columns of `codes` (B, L) over the
/// batch: 0 when every pair of code dimensions is uncorrelated, 1 when all duplicate each other.
pub fn decorrelation_penalty(codes: &Tensor) -> Result<Tensor> {
    let (b, l) = codes.dims2()?;
    if b < 2 || l < 2 {
        return Ok(Tensor::zeros((), codes.dtype(), codes.device())?);
    }
    let centred = codes.broadcast_sub(&codes.mean_keepdim(0)?)?; // (B, L)
    let inv_std = (centred.sqr()?.mean_keepdim(0)? + 1e-6)?.sqrt()?.recip()?; // (1, L)
    let standard = centred.broadcast_mul(&inv_std)?; // (B, L), unit variance per column
    mean_squared_off_diagonal(&standard)
}

/// [`batch_loss`] with the decorrelation penalty (see [`TrainConfig::decorrelation`]) added to
/// the per-token objective.
pub fn batch_loss_with(
    model: &SeqAutoencoder,
    batch: &TokenBatch,
    kl_weight: f64,
    mi_weight: f64,
    decorrelation: f64,
    binarize: Binarize,
    rng: &mut StdRng,
) -> Result<(Tensor, Tensor, Tensor)> {
    batch_loss_with_moments(
        model,
        batch,
        kl_weight,
        mi_weight,
        decorrelation,
        None,
        0.0,
        binarize,
        0.0,
        0.0,
        rng,
    )
}

/// [`batch_loss_with`], the decorrelation penalty standardised with `running` moments
/// ([`DecorrelationMoments::Running`]) when given: they are updated with this batch's code
/// after the penalty is computed; `dropout` on the decoder; the KL term floored per dimension
/// by `free_bits` ([`free_bits_kl`]) when positive. The summed KL returned is the plain one.
#[allow(clippy::too_many_arguments)]
pub fn batch_loss_with_moments(
    model: &SeqAutoencoder,
    batch: &TokenBatch,
    kl_weight: f64,
    mi_weight: f64,
    decorrelation: f64,
    running: Option<&mut RunningMoments>,
    decorrelation_above: f64,
    binarize: Binarize,
    dropout: f64,
    free_bits: f64,
    rng: &mut StdRng,
) -> Result<(Tensor, Tensor, Tensor)> {
    let kind = model.kind();
    let mut penalty = None;
    let mut kl_term = None;
    let (z, kl) = if kind.has_latent() {
        let params = model.encode(&batch.src)?; // (B, L)
        if decorrelation > 0.0 {
            let mean = params.mean()?;
            let p = match running {
                Some(moments) => {
                    if moments.mean().is_empty() {
                        moments.update(&mean)?;
                    }
                    let p = if decorrelation_above > 0.0 {
                        decorrelation_penalty_above(&mean, moments, decorrelation_above as f32)?
                    } else {
                        decorrelation_penalty_running(&mean, moments.mean(), moments.var())?
                    };
                    moments.update(&mean)?;
                    p
                }
                None => decorrelation_penalty(&mean)?,
            };
            penalty = Some((p * decorrelation)?);
        }
        let z = params.training_sample_with(rng, model.cfg.gumbel_temperature, binarize)?; // (B, L)
        if free_bits > 0.0 {
            kl_term = Some(free_bits_kl(&params.kl_per_dim()?, free_bits)?);
        }
        (Some(z), params.kl()?.sum_all()?)
    } else {
        (
            None,
            Tensor::zeros((), candle_core::DType::F32, model.device())?,
        )
    };
    // Drawn after the latent noise, so a run without dropout draws what it always drew.
    let masks = if dropout > 0.0 {
        Some(Dropout::draw(model, batch, dropout, rng)?)
    } else {
        None
    };
    let (nll, states) = model.sentence_nll_dropout(z.as_ref(), batch, masks.as_ref())?; // (B,), (T+1, B, H)
    let nll_sum = nll.sum_all()?;
    let mut objective = nll_sum.clone();
    if kind.kl_in_loss() && kl_weight > 0.0 {
        objective = (objective + (kl_term.as_ref().unwrap_or(&kl) * kl_weight)?)?;
    }
    if let (Some(z), true) = (&z, mi_weight > 0.0) {
        if let Some(mi) = model.mi_loss(&states, z)? {
            objective = (objective + (mi.sum_all()? * mi_weight)?)?;
        }
    }
    let mut objective = (objective / batch.target_tokens() as f64)?;
    if let Some(p) = penalty {
        objective = (objective + p)?;
    }
    Ok((objective, nll_sum, kl))
}

/// Trains a model as `cfg` says, reporting through `progress` and stopping early (with a saved
/// checkpoint) when `control` is cancelled. Returns an error, keeping the last good checkpoint,
/// if the loss stops being finite.
pub fn train(
    cfg: &TrainConfig,
    progress: Sender<TrainEvent>,
    control: &TrainControl,
) -> Result<TrainOutcome> {
    cfg.validate()?;
    let send = |e: TrainEvent| {
        let _ = progress.send(e);
    };
    let dev = Device::Cpu;
    let corpus = Corpus::load(
        &cfg.corpus,
        &LoadOptions {
            min_words: 1,
            // Longer lines are truncated to --max-len tokens below, not dropped; only absurd
            // lines (a whole file on one line) are left out.
            max_words: MAX_LINE_WORDS,
        },
    )?;
    let mut notes = Vec::new();
    if let Some(msg) = corpus.skipped.message() {
        notes.push(format!("corpus `{}`: {msg}", corpus.name));
    }

    let resuming = cfg.resume && cfg.out.exists();
    let mut resumed_tag = None;
    let (vocab, mut built, start_step) = if resuming {
        let ckpt = Checkpoint::read(&cfg.out, &dev)?;
        let mcfg = ckpt
            .config
            .expect_seq()
            .map_err(|e| anyhow::anyhow!("cannot resume `{}`: {e}", cfg.out.display()))?;
        if mcfg.latent != cfg.kind {
            bail!(
                "cannot resume: `{}` holds a `{}` model, not `{}`",
                cfg.out.display(),
                mcfg.latent,
                cfg.kind
            );
        }
        let changes = config_changes(
            &ckpt.config,
            &ModelConfig::Seq(cfg.model_config(mcfg.vocab_size)),
        )?;
        if !changes.is_empty() {
            bail!(
                "cannot resume `{}` with a different model ({}); train a new run with another --out",
                cfg.out.display(),
                changes.join(", ")
            );
        }
        if !ckpt.provenance.corpus_hash.is_empty() && ckpt.provenance.corpus_hash != corpus.hash {
            bail!(
                "cannot resume `{}`: it was trained on corpus `{}`, and `{}` is a different corpus \
                 (its vocabulary would not fit); to fine-tune on it, start a new run with \
                 --init {} --out NEW.safetensors",
                cfg.out.display(),
                ckpt.provenance.corpus,
                corpus.name,
                cfg.out.display()
            );
        }
        let built = Built::seq(mcfg, cfg.seed, &dev)?;
        ckpt.assign_to(&built.varmap)?;
        notes.push(format!("resuming from step {}", ckpt.provenance.step));
        resumed_tag = Some(StateTag::of_checkpoint(&ckpt)?);
        (ckpt.vocab, built, ckpt.provenance.step)
    } else if let Some(init) = &cfg.init {
        let ckpt =
            Checkpoint::read(init, &dev).with_context(|| format!("--init {}", init.display()))?;
        let mcfg = ckpt
            .config
            .expect_seq()
            .map_err(|e| anyhow::anyhow!("--init {}: {e}", init.display()))?;
        let changes = config_changes(
            &ckpt.config,
            &ModelConfig::Seq(cfg.model_config(mcfg.vocab_size)),
        )?;
        if !changes.is_empty() {
            bail!(
                "--init {} holds another architecture than this run asks for ({}); leave those flags out to keep the checkpoint's",
                init.display(),
                changes.join(", ")
            );
        }
        let built = Built::seq(mcfg, cfg.seed, &dev)?;
        ckpt.assign_to(&built.varmap)?;
        notes.push(format!(
            "starting from the weights and vocabulary of {} (step {} on corpus `{}`)",
            init.display(),
            ckpt.provenance.step,
            ckpt.provenance.corpus
        ));
        // The old run's settings carry over unless a flag changes them: say which.
        let regularisers = cfg.regularisers();
        notes.push(format!(
            "with its run's settings where no flag changes them: lr {}, {} tokens a batch, {}",
            cfg.lr,
            cfg.batch_tokens,
            if regularisers.is_empty() {
                "no regulariser".to_string()
            } else {
                regularisers.join(", ")
            }
        ));
        (ckpt.vocab, built, 0)
    } else {
        if cfg.resume {
            notes.push(format!(
                "nothing to resume at {}; starting fresh",
                cfg.out.display()
            ));
        }
        let vocab = Vocab::train_kind(
            cfg.tokenizer,
            corpus.train.iter().map(|e| e.text.as_str()),
            cfg.vocab_size,
            cfg.min_frequency,
        )?;
        let mcfg = cfg.model_config(vocab.len());
        let built = Built::seq(&mcfg, cfg.seed, &dev)?;
        (vocab, built, 0)
    };
    built.model.set_precision(cfg.precision);
    if cfg.precision == Precision::Bf16 {
        notes.push(format!(
            "bf16 products in the output layer and the GRUs ({} kernel; fp32 weights and optimiser state; \
             --precision fp32 for fp32 products)",
            crate::model::bf16::kernel_name()
        ));
        if !crate::model::kernels::active_level().amx() {
            // A run started (or resumed) in bf16 where no AMX tiles run.
            notes.push(match crate::model::bf16::kernel_name() {
                "avx512-bf16" => "no AMX tiles at this kernel level: vdpbf16ps alone trained \
                     1.5× as fast as fp32 on Zen 4 but slower than fp32 on Sapphire Rapids \
                     (docs/benchmarks.md); --precision fp32 may be faster here"
                    .into(),
                _ => "no AMX tiles at this kernel level: the portable bf16 kernel is slower \
                      than fp32 (--precision fp32 for fp32)"
                    .into(),
            });
        }
    }
    if cfg.kind.kl_in_loss()
        && cfg.kl_weight > 0.0
        && cfg.kl_anneal == KlAnneal::None
        && cfg.free_bits == 0.0
        && !cfg.resume
        && cfg.init.is_none()
    {
        // Measured: a 32-dimension gaussian on WordNet, 2,000 steps this way, ended with KL
        // 0.49 nats per sentence (docs/recipe.md, "Free bits").
        notes.push(format!(
            "a `{}` run from scratch with the full KL term from step 0 (no --kl-anneal, no \
             --free-bits) tends to collapse: the code carries almost nothing; see \
             docs/recipe.md, \"Free bits\"",
            cfg.kind
        ));
    }
    let (start, warmup) = (cfg.decorrelation_start, cfg.decorrelation_warmup);
    if start > 0 || warmup > 0 {
        // The step (counting from 1, as the log does) from which the full weight applies.
        let full = start.saturating_add(warmup.max(1));
        notes.push(if cfg.decorrelation == 0.0 {
            // A resumed run may turn the penalty off with --decorrelation 0 alone.
            "the decorrelation penalty is off (--decorrelation 0): its start and warm-up do nothing".into()
        } else if full > cfg.steps {
            // A run trained in parts (--resume with more --steps) may schedule the penalty
            // past its current end on purpose: said, not refused.
            format!(
                "the decorrelation weight reaches {} only at step {full}, after this run's last step ({})",
                cfg.decorrelation, cfg.steps
            )
        } else {
            format!(
                "the decorrelation penalty is off for the first {start} steps, then grows linearly to {} over {warmup} (full from step {full})",
                cfg.decorrelation
            )
        });
    }
    if cfg.decorrelation_above > 0.0 && cfg.decorrelation == 0.0 {
        // Said, not refused: a resumed run may turn the penalty off with --decorrelation 0.
        notes.push(format!(
            "the decorrelation penalty is off (--decorrelation 0): --decorrelation-above {} picks pairs for nothing; give --decorrelation a weight",
            cfg.decorrelation_above
        ));
    }
    if cfg.decorrelation > 0.0 && !cfg.kind.has_latent() {
        notes.push(format!(
            "a `{}` model has no code: --decorrelation {} does nothing",
            cfg.kind, cfg.decorrelation
        ));
    }
    let model = &built.model;
    let mcfg = ModelConfig::Seq(model.cfg.clone());

    let (train_ids, cut) =
        encode_examples_counting_cuts(&vocab, corpus.split(Split::Train), cfg.max_len);
    if cut > 0 {
        notes.push(format!(
            "{cut} of {} training lines are longer than --max-len {} tokens and were truncated",
            train_ids.len(),
            cfg.max_len
        ));
    }
    let mut valid_ids = encode_examples(&vocab, corpus.split(Split::Valid), cfg.max_len);
    valid_ids.truncate(cfg.valid_sentences.max(1));
    if valid_ids.is_empty() {
        notes.push(format!(
            "corpus `{}` has no validation sentences: no validation perplexity is measured",
            corpus.name
        ));
    }
    if train_ids.is_empty() {
        bail!(
            "corpus `{}` has no training sentences after tokenisation",
            corpus.name
        );
    }
    let lengths: Vec<usize> = train_ids.iter().map(|s| s.len()).collect();
    let batches_per_epoch =
        crate::data::length_batches(&lengths, cfg.batch_tokens, cfg.max_batch).len();

    let mut adam = Adam::new(named_vars(&built.varmap), cfg.lr, cfg.weight_decay)?;
    let state_file = state_path(&cfg.out);
    let moments = match &resumed_tag {
        Some(tag) => {
            let extra = resume_optimiser(&mut adam, &state_file, tag, &mut notes)?;
            RunningMoments::from_state(&extra, model.cfg.latent_dim)
        }
        None => RunningMoments::default(),
    };

    send(TrainEvent::Started {
        start_step,
        total_steps: cfg.steps,
        train_sentences: train_ids.len(),
        valid_sentences: valid_ids.len(),
        batches_per_epoch,
        parameters: parameter_count(&built.varmap),
        notes,
    });

    let train_config_json = serde_json::to_value(cfg)?;
    let save = |step: u64,
                metrics: &BTreeMap<String, f64>,
                adam: &Adam,
                moments: &RunningMoments|
     -> Result<()> {
        let provenance = run_provenance(
            step,
            metrics,
            &corpus,
            cfg.seed,
            &train_config_json,
            &cfg.corpus,
        );
        let storage = if cfg.half { Storage::F16 } else { Storage::F32 };
        // Both files are written in full before either replaces its last version, the state
        // first: a failed save (disk full, a file-size limit) leaves the pair as it was, never
        // a checkpoint ahead of its optimiser state.
        let checkpoint =
            checkpoint::stage_varmap(&cfg.out, &built.varmap, &mcfg, &vocab, &provenance, storage)?;
        let state = adam.stage(
            &state_file,
            &StateTag::new(&mcfg, &vocab, cfg.seed, &corpus.hash, step)?,
            &moments.state(),
        )?;
        checkpoint::commit_all(vec![state, checkpoint])?;
        send(TrainEvent::Checkpoint {
            step,
            path: cfg.out.clone(),
        });
        Ok(())
    };

    let mean_tokens_per_step =
        lengths.iter().map(|l| (l + 1) as f64).sum::<f64>() / batches_per_epoch as f64;
    let mut objective = SeqObjective {
        cfg,
        model,
        device: &dev,
        train_ids: &train_ids,
        lengths: &lengths,
        batches_per_epoch,
        valid_ids: &valid_ids,
        vocab: &vocab,
        adam,
        mean_tokens_per_step,
        moments,
        save,
    };
    let settings = LoopSettings {
        seed: cfg.seed,
        start_step,
        steps: cfg.steps,
        valid_every: cfg.valid_every,
        checkpoint_every: cfg.checkpoint_every,
        time_limit_secs: cfg.time_limit_secs,
        time_clock: cfg.time_clock,
        kl_weight: cfg.kl_weight,
        kl_anneal: cfg.kl_anneal,
        kl_anneal_steps: cfg.kl_anneal_steps,
        lr: cfg.lr_schedule(),
        out: cfg.out.clone(),
    };
    run_loop(&mut objective, &settings, &send, control)
}

/// The sequence autoencoders' part of [`run_loop`]: length-grouped token batches with word
/// dropout, the ELBO (plus the mutual-information term), greedy reconstructions.
struct SeqObjective<'a, S> {
    cfg: &'a TrainConfig,
    model: &'a SeqAutoencoder,
    device: &'a Device,
    train_ids: &'a [Vec<u32>],
    lengths: &'a [usize],
    batches_per_epoch: usize,
    valid_ids: &'a [Vec<u32>],
    vocab: &'a Vocab,
    adam: Adam,
    mean_tokens_per_step: f64,
    /// The code's running moments for [`DecorrelationMoments::Running`].
    moments: RunningMoments,
    save: S,
}

impl<S> Objective for SeqObjective<'_, S>
where
    S: Fn(u64, &BTreeMap<String, f64>, &Adam, &RunningMoments) -> Result<()>,
{
    fn batches_per_epoch(&self) -> usize {
        self.batches_per_epoch
    }

    fn plan_epoch(&self, rng: &mut StdRng) -> Vec<Vec<usize>> {
        shuffled_epoch(self.lengths, self.cfg.batch_tokens, self.cfg.max_batch, rng)
    }

    fn mean_units_per_step(&self) -> f64 {
        self.mean_tokens_per_step
    }

    fn has_kl(&self) -> bool {
        self.model.kind().has_kl()
    }

    fn step(
        &mut self,
        batch: &[usize],
        step: u64,
        kl_weight: f64,
        rng: &mut StdRng,
    ) -> Result<StepTerms> {
        let cfg = self.cfg;
        let rows: Vec<&[u32]> = batch
            .iter()
            .map(|&i| self.train_ids[i].as_slice())
            .collect();
        let wd = cfg.word_dropout_at(step);
        let dropped = (wd > 0.0).then(|| drop_words(&rows, wd, rng));
        let batch = TokenBatch::new(&rows, dropped.as_deref(), self.device)?;
        let running = (cfg.decorrelation_moments == DecorrelationMoments::Running)
            .then_some(&mut self.moments);
        let (objective, nll_sum, kl_sum) = batch_loss_with_moments(
            self.model,
            &batch,
            kl_weight,
            cfg.mi_weight,
            cfg.decorrelation_at(step),
            running,
            cfg.decorrelation_above,
            cfg.binarize,
            cfg.dropout,
            cfg.free_bits,
            rng,
        )?;
        let loss = objective.to_scalar::<f32>()? as f64;
        check_finite("loss", loss, step + 1, &cfg.out)?;
        let grads = objective.backward()?;
        let grad_norm = self
            .adam
            .step(&grads, cfg.clip_norm)
            .with_context(|| format!("training stopped at step {}", step + 1))?;
        Ok(StepTerms {
            loss,
            nll_sum: nll_sum.to_scalar::<f32>()? as f64,
            kl_sum: kl_sum.to_scalar::<f32>()? as f64,
            units: batch.target_tokens() as f64,
            examples: batch.batch_size,
            grad_norm,
            word_dropout: wd,
        })
    }

    fn validate(&mut self, step: u64) -> Result<Option<Validation>> {
        if self.valid_ids.is_empty() {
            return Ok(None);
        }
        let (stats, pairs) = validate(self.model, self.valid_ids, self.vocab, step, self.cfg.seed)?;
        Ok(Some(Validation {
            stats,
            pairs,
            metrics: Vec::new(),
        }))
    }

    fn set_lr(&mut self, lr: f64) {
        self.adam.set_lr(lr);
    }

    fn save(&mut self, step: u64, metrics: &BTreeMap<String, f64>) -> Result<()> {
        (self.save)(step, metrics, &self.adam, &self.moments)
    }
}

/// What a training run's checkpoint at `step` records of where it came from, whatever the
/// model family: the corpus (`spec` as given to `--corpus`), the seed, the metrics so far and
/// the run's settings (`train_config`, serialised once per run).
pub fn run_provenance(
    step: u64,
    metrics: &BTreeMap<String, f64>,
    corpus: &Corpus,
    seed: u64,
    train_config: &serde_json::Value,
    spec: &str,
) -> Provenance {
    Provenance {
        step,
        corpus: corpus.name.clone(),
        corpus_hash: corpus.hash.clone(),
        seed,
        metrics: metrics.clone(),
        train_config: Some(train_config.clone()),
        written_by: format!("latent-tui {}", env!("CARGO_PKG_VERSION")),
        corpus_source: corpus_source(spec),
    }
}

/// How provenance records a `--corpus`: `wordnet` as is, a path made absolute, so that the
/// corpus is found again from another working directory.
pub fn corpus_source(spec: &str) -> Option<String> {
    if spec == "wordnet" {
        return Some(spec.to_string());
    }
    std::fs::canonicalize(spec)
        .ok()
        .map(|p| p.display().to_string())
}

/// Validation perplexity with the deterministic code, plus a few greedy reconstructions.
fn validate(
    model: &SeqAutoencoder,
    valid: &[Vec<u32>],
    vocab: &Vocab,
    step: u64,
    seed: u64,
) -> Result<(ValidStats, Vec<(String, String)>)> {
    let mut rng = StdRng::seed_from_u64(seed);
    let score = score_sentences(model, vocab, valid, CodeMode::Rounded, &mut rng)?;
    let stats = ValidStats {
        step,
        nll_per_word: score.nll_per_word(),
        ppl: score.ppl(),
        kl: score.kl_per_sentence(),
    };
    let shown: Vec<&Vec<u32>> = valid.iter().take(3).collect();
    let mut pairs = Vec::new();
    for s in shown {
        let batch = TokenBatch::new(&[s.as_slice()], None, model.device())?;
        let z = if model.kind().has_latent() {
            Some(
                model
                    .encode(&batch.src)?
                    .code(CodeMode::Rounded, &mut rng)?,
            )
        } else {
            None
        };
        let out = decode(
            model,
            z.as_ref(),
            1,
            Strategy::Greedy,
            model.cfg.max_len,
            &mut rng,
        )?;
        pairs.push((vocab.decode(s), vocab.decode(&out[0])));
    }
    Ok((stats, pairs))
}
