//! Training NVDM and NASH (and writing LSH's hyperplanes) in the shared loop of
//! [`crate::train::run_loop`], with the same progress events, control flags and checkpoint
//! format as the sequence trainer, so the command line and the explorer's Train tab can run
//! either.
//!
//! Batches are documents drawn in a seeded random order per epoch; latent noise comes from a
//! generator seeded by `seed` and the step, so runs are reproducible.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::mpsc::Sender;

use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor, Var};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use super::{bag_of_words, document_frequencies, score_bags, train_vocab, Bag, BowScore};
use crate::checkpoint::{self, Checkpoint, Storage};
use crate::corpus::{Corpus, LoadOptions, Split};
use crate::model::bow::{idf, is_buffer, BagBatch, BowInput, BowModel, NashNoise};
use crate::model::{
    named_vars, parameter_count, Built, LshConfig, ModelConfig, NashConfig, NvdmConfig,
};
use crate::train::{
    run_loop, Adam, KlAnneal, LoopSettings, LrSchedule, Objective, StepTerms, TimeClock,
    TrainControl, TrainEvent, TrainOutcome, ValidStats, Validation,
};
use crate::vocab::Vocab;

/// Which bag-of-words model to train.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum BowFamily {
    Nvdm,
    #[default]
    Nash,
    Lsh,
}

impl BowFamily {
    pub fn name(self) -> &'static str {
        match self {
            BowFamily::Nvdm => "nvdm",
            BowFamily::Nash => "nash",
            BowFamily::Lsh => "lsh",
        }
    }
}

impl std::str::FromStr for BowFamily {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "nvdm" => Ok(BowFamily::Nvdm),
            "nash" => Ok(BowFamily::Nash),
            "lsh" => Ok(BowFamily::Lsh),
            _ => Err(format!(
                "unknown bag-of-words model `{s}` (expected nvdm, nash or lsh)"
            )),
        }
    }
}

impl std::fmt::Display for BowFamily {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(default)]
pub struct BowTrainConfig {
    pub family: BowFamily,
    /// `wordnet` (bundled) or a path to a text/TSV file or a directory with train/valid/test.
    pub corpus: String,
    pub out: PathBuf,
    pub vocab_size: usize,
    pub min_frequency: u64,
    /// Keep English stop words and punctuation in the vocabulary.
    pub keep_stop_words: bool,
    pub hidden_dim: usize,
    /// Gaussian dimensions (nvdm) or bits (nash, lsh).
    pub latent_dim: usize,
    pub input: BowInput,
    pub noise: NashNoise,
    pub steps: u64,
    /// Documents per batch.
    pub batch_size: usize,
    pub lr: f64,
    pub weight_decay: f64,
    pub clip_norm: f64,
    pub kl_anneal: KlAnneal,
    pub kl_anneal_steps: u64,
    pub kl_weight: f64,
    pub seed: u64,
    pub valid_every: u64,
    /// Validation documents used during training (the first N of the split).
    pub valid_documents: usize,
    pub checkpoint_every: u64,
    pub half: bool,
    pub resume: bool,
    /// Stop after this many seconds of training (validating and saving as at the last step),
    /// or at `steps`, whichever comes first; as the sequence trainer's `--time`.
    pub time_limit_secs: Option<f64>,
    /// The clock `time_limit_secs` is read on (runs saved before this existed: wall).
    #[serde(default)]
    pub time_clock: TimeClock,
}

impl Default for BowTrainConfig {
    fn default() -> Self {
        Self::for_family(BowFamily::Nash)
    }
}

impl BowTrainConfig {
    /// Defaults per family: NVDM reads counts, NASH and LSH read TF-IDF.
    pub fn for_family(family: BowFamily) -> Self {
        Self {
            family,
            corpus: "wordnet".into(),
            out: PathBuf::from(format!("{}.safetensors", family.name())),
            vocab_size: 10000,
            min_frequency: 2,
            keep_stop_words: false,
            hidden_dim: 256,
            latent_dim: 64,
            input: match family {
                BowFamily::Nvdm => BowInput::Counts,
                _ => BowInput::Tfidf,
            },
            noise: NashNoise::None,
            steps: 3000,
            batch_size: 64,
            lr: 1e-3,
            weight_decay: 0.0,
            clip_norm: 5.0,
            kl_anneal: KlAnneal::None,
            kl_anneal_steps: 0,
            // NASH's KL to Bernoulli(½) at full weight pulls every bit toward ½ and ruins
            // retrieval (P@100 at 64 bits on the Debian corpus after 2000 steps: 0.28 at weight 1,
            // 0.34 at 0.01);
            // NVDM is a VAE whose bound needs the whole KL.
            kl_weight: match family {
                BowFamily::Nash => 0.01,
                _ => 1.0,
            },
            seed: 42,
            valid_every: 500,
            valid_documents: 2000,
            checkpoint_every: 500,
            half: false,
            resume: false,
            time_limit_secs: None,
            time_clock: TimeClock::Wall,
        }
    }

    pub fn model_config(&self, vocab_size: usize) -> ModelConfig {
        match self.family {
            BowFamily::Nvdm => ModelConfig::Nvdm(NvdmConfig {
                vocab_size,
                hidden_dim: self.hidden_dim,
                latent_dim: self.latent_dim,
                input: self.input,
            }),
            BowFamily::Nash => ModelConfig::Nash(NashConfig {
                vocab_size,
                hidden_dim: self.hidden_dim,
                latent_dim: self.latent_dim,
                input: self.input,
                noise: self.noise,
                labels: 0,
            }),
            BowFamily::Lsh => ModelConfig::Lsh(LshConfig {
                vocab_size,
                bits: self.latent_dim,
                seed: self.seed,
            }),
        }
    }

    /// KL weight at `step` (the same schedules as the sequence trainer).
    pub fn kl_weight_at(&self, step: u64) -> f64 {
        kl_weight_at(self.kl_weight, self.kl_anneal, self.kl_anneal_steps, step)
    }

    pub fn validate(&self) -> Result<()> {
        if self.latent_dim == 0 {
            bail!("--latent-dim must be at least 1");
        }
        if self.family != BowFamily::Lsh {
            if self.steps == 0 {
                bail!("--steps must be at least 1");
            }
            if let Some(t) = self.time_limit_secs {
                if !(t > 0.0 && t.is_finite()) {
                    bail!("--time must be a positive duration, got {t} s");
                }
            }
            if self.hidden_dim == 0 || self.batch_size == 0 {
                bail!("--hidden-dim and the batch size must be positive");
            }
            if self.batch_size > MAX_BATCH_DOCS {
                bail!(
                    "--batch-size is {}, above {MAX_BATCH_DOCS} documents",
                    self.batch_size
                );
            }
            if !(self.lr > 0.0 && self.lr.is_finite()) {
                bail!(
                    "the learning rate must be a positive number, got {}",
                    self.lr
                );
            }
        }
        crate::train::check_numbers(&[
            ("--lr", self.lr, crate::train::MAX_LR),
            (
                "--weight-decay",
                self.weight_decay,
                crate::train::MAX_WEIGHT,
            ),
            ("--clip-norm", self.clip_norm, crate::train::MAX_WEIGHT),
            ("--kl-weight", self.kl_weight, crate::train::MAX_WEIGHT),
        ])?;
        if let NashNoise::Fixed { std } = self.noise {
            if !(std >= 0.0 && std.is_finite()) {
                bail!("the noise σ must be a non-negative number, got {std}");
            }
        }
        if self.vocab_size < 5 {
            bail!("--vocab-size must be at least 5 (4 special tokens and a word)");
        }
        self.model_config(self.vocab_size)
            .validate()
            .map_err(anyhow::Error::msg)?;
        Ok(())
    }
}

/// The KL weight schedule every trainer uses.
pub use crate::train::kl_weight_at;

/// Bags of a corpus split, with their labels; documents without known words are kept (they
/// still get a code) unless `drop_empty`.
pub fn split_bags(vocab: &Vocab, corpus: &Corpus, split: Split, drop_empty: bool) -> Vec<Bag> {
    corpus
        .split(split)
        .iter()
        .map(|e| bag_of_words(vocab, &e.text))
        .filter(|b| !drop_empty || !b.is_empty())
        .collect()
}

/// Sets the model's idf vector (if it has one) from the training bags.
pub fn set_idf(varmap: &candle_nn::VarMap, bags: &[Bag], vocab_size: usize) -> Result<()> {
    let df = document_frequencies(bags, vocab_size);
    let values = idf(&df, bags.len());
    for (name, var) in named_vars(varmap) {
        if name == "idf" {
            var.set(&Tensor::from_vec(values.clone(), vocab_size, var.device())?)?;
        }
    }
    Ok(())
}

/// What one optimiser step did.
#[derive(Clone, Debug, PartialEq)]
pub struct StepResult {
    /// The objective per word.
    pub loss: f64,
    pub nll_sum: f64,
    pub kl_sum: f64,
    pub words: f64,
    pub documents: usize,
    pub grad_norm: f64,
}

/// AdamW over a bag-of-words model's trainable parameters (data statistics such as the idf
/// vector are left out), with global gradient-norm clipping.
///
/// The update runs over plain slices in one pass per parameter: candle's tensor-op AdamW
/// allocates a dozen temporaries per parameter per step, which made it 60% of a step here.
/// Its moments are saved beside the checkpoint so `--resume` continues exactly.
pub struct BowOptimizer {
    adam: Adam,
    clip_norm: f64,
}

impl BowOptimizer {
    pub fn new(
        varmap: &candle_nn::VarMap,
        lr: f64,
        weight_decay: f64,
        clip_norm: f64,
    ) -> Result<Self> {
        let vars: Vec<(String, Var)> = named_vars(varmap)
            .into_iter()
            .filter(|(n, _)| !is_buffer(n))
            .collect();
        Ok(Self {
            adam: Adam::new(vars, lr, weight_decay)?,
            clip_norm,
        })
    }

    /// Sets the learning rate of the next steps.
    pub fn set_lr(&mut self, lr: f64) {
        self.adam.set_lr(lr);
    }

    /// One step on `bags` (non-empty documents) with the KL weighted by `kl_weight`.
    pub fn step(
        &mut self,
        model: &BowModel,
        bags: &[&[(u32, f32)]],
        kl_weight: f64,
        rng: &mut StdRng,
    ) -> Result<StepResult> {
        self.step_supervised(model, bags, None, kl_weight, rng)
    }

    /// As [`BowOptimizer::step`], plus the supervised NASH variant's label term: `labels`
    /// carries each document's label id and the weight α of the classifier's cross-entropy.
    pub fn step_supervised(
        &mut self,
        model: &BowModel,
        bags: &[&[(u32, f32)]],
        labels: Option<(&[u32], f64)>,
        kl_weight: f64,
        rng: &mut StdRng,
    ) -> Result<StepResult> {
        let mut batch = BagBatch::new(bags, model.device())?;
        if let Some((ids, _)) = labels {
            batch = batch.with_labels(ids)?;
        }
        let words = batch.words().max(1.0);
        let terms = model.loss(&batch, rng)?;
        let nll_sum = terms.nll.sum_all()?;
        let kl_sum = terms.kl.sum_all()?;
        let mut total = (&nll_sum + (&kl_sum * kl_weight)?)?;
        if let (Some(ce), Some((_, alpha))) = (&terms.supervised, labels) {
            // Per document, like the NLL: α weighs one label against one document's words.
            total = (total + (ce.sum_all()? * alpha)?)?;
        }
        let objective = (total / words)?;
        let loss = objective.to_scalar::<f32>()? as f64;
        if !loss.is_finite() {
            bail!("the loss became {loss}");
        }
        let grads = objective.backward()?;
        let grad_norm = self.adam.step(&grads, self.clip_norm)?;
        Ok(StepResult {
            loss,
            nll_sum: nll_sum.to_scalar::<f32>()? as f64,
            kl_sum: kl_sum.to_scalar::<f32>()? as f64,
            words,
            documents: bags.len(),
            grad_norm,
        })
    }

    /// Saves the moments and step count (the sequence trainer's state-file format).
    pub fn save(&self, path: &std::path::Path, tag: &crate::train::StateTag) -> Result<()> {
        self.adam.save(path, tag, &[])
    }

    /// [`BowOptimizer::save`] up to the rename (see [`checkpoint::Staged`]).
    pub fn stage(
        &self,
        path: &std::path::Path,
        tag: &crate::train::StateTag,
    ) -> Result<checkpoint::Staged> {
        self.adam.stage(path, tag, &[])
    }

    /// Restores moments saved by [`BowOptimizer::save`] if they belong to the run `expected`
    /// (see [`crate::train::resume_optimiser`]).
    pub fn resume(
        &mut self,
        path: &std::path::Path,
        expected: &crate::train::StateTag,
        notes: &mut Vec<String>,
    ) -> Result<()> {
        crate::train::resume_optimiser(&mut self.adam, path, expected, notes).map(|_| ())
    }
}

/// A seeded order of the bags for one epoch, cut into batches.
pub fn epoch_batches(n: usize, batch_size: usize, seed: u64, epoch: u64) -> Vec<Vec<usize>> {
    shuffled_batches(n, batch_size, &mut crate::train::epoch_rng(seed, epoch))
}

/// `0..n` in an order drawn from `rng`, cut into batches.
fn shuffled_batches(n: usize, batch_size: usize, rng: &mut StdRng) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(rng);
    order
        .chunks(batch_size.max(1))
        .map(<[usize]>::to_vec)
        .collect()
}

/// Most documents in one bag-of-words training batch: the decoder's logits and their gradient
/// are documents × vocabulary (1,024 × 10,000 words: 80 MB), and the papers' batches are 64.
pub const MAX_BATCH_DOCS: usize = 1024;

/// Options for [`fit`], the in-memory trainer used by experiments and tests.
#[derive(Clone, Debug)]
pub struct FitOptions {
    pub steps: u64,
    pub batch_size: usize,
    pub lr: f64,
    pub clip_norm: f64,
    pub kl_weight: f64,
    pub kl_anneal: KlAnneal,
    pub kl_anneal_steps: u64,
    pub seed: u64,
    /// Weight α of the supervised NASH variant's label term (used when labels are given).
    pub supervised_weight: f64,
}

/// Builds `config`'s model, sets its idf from `bags` and trains it for `opts.steps` steps on
/// the non-empty `bags`, without files or events. LSH is returned as built.
pub fn fit(
    config: &ModelConfig,
    bags: &[Bag],
    opts: &FitOptions,
    dev: &Device,
) -> Result<Built<BowModel>> {
    fit_labelled(config, bags, None, opts, dev)
}

/// As [`fit`], with each bag's label id for a supervised NASH (a config with `labels` > 0).
pub fn fit_labelled(
    config: &ModelConfig,
    bags: &[Bag],
    labels: Option<&[u32]>,
    opts: &FitOptions,
    dev: &Device,
) -> Result<Built<BowModel>> {
    if let Some(labels) = labels {
        if labels.len() != bags.len() {
            bail!("{} labels for {} documents", labels.len(), bags.len());
        }
    }
    config.validate().map_err(anyhow::Error::msg)?;
    if opts.batch_size == 0 || opts.batch_size > MAX_BATCH_DOCS {
        bail!(
            "the batch size is {}, outside 1..={MAX_BATCH_DOCS} documents",
            opts.batch_size
        );
    }
    let built = Built::bow(config, opts.seed, dev)?;
    set_idf(&built.varmap, bags, config.vocab_size())?;
    if let ModelConfig::Lsh(_) = config {
        return Ok(built);
    }
    let keep: Vec<usize> = (0..bags.len()).filter(|&i| !bags[i].is_empty()).collect();
    let train: Vec<&Bag> = keep.iter().map(|&i| &bags[i]).collect();
    if train.is_empty() {
        bail!("no training document has a word in the vocabulary");
    }
    let opt = BowOptimizer::new(&built.varmap, opts.lr, 0.0, opts.clip_norm)?;
    let labels: Option<Vec<u32>> = labels.map(|l| keep.iter().map(|&i| l[i]).collect());
    let mut objective = FitObjective {
        model: &built.model,
        opt,
        train: &train,
        labels: labels.as_deref(),
        batch_size: opts.batch_size,
        supervised_weight: opts.supervised_weight,
    };
    let settings = LoopSettings {
        seed: opts.seed,
        start_step: 0,
        steps: opts.steps,
        valid_every: 0,
        checkpoint_every: 0,
        time_limit_secs: None,
        time_clock: TimeClock::Wall,
        kl_weight: opts.kl_weight,
        kl_anneal: opts.kl_anneal,
        kl_anneal_steps: opts.kl_anneal_steps,
        lr: LrSchedule::constant(opts.lr),
        out: PathBuf::new(),
    };
    // Nobody follows an in-memory fit: its events go nowhere.
    run_loop(&mut objective, &settings, &|_| {}, &TrainControl::default())?;
    Ok(built)
}

/// [`fit`]'s part of [`run_loop`]: document batches, optionally labelled; nothing to validate
/// or save.
struct FitObjective<'a> {
    model: &'a BowModel,
    opt: BowOptimizer,
    train: &'a [&'a Bag],
    /// Each training bag's label, aligned with `train`.
    labels: Option<&'a [u32]>,
    batch_size: usize,
    supervised_weight: f64,
}

impl Objective for FitObjective<'_> {
    fn batches_per_epoch(&self) -> usize {
        self.train.len().div_ceil(self.batch_size.max(1))
    }

    fn plan_epoch(&self, rng: &mut StdRng) -> Vec<Vec<usize>> {
        shuffled_batches(self.train.len(), self.batch_size, rng)
    }

    fn mean_units_per_step(&self) -> f64 {
        0.0
    }

    fn step(
        &mut self,
        batch: &[usize],
        step: u64,
        kl_weight: f64,
        rng: &mut StdRng,
    ) -> Result<StepTerms> {
        let rows: Vec<&[(u32, f32)]> = batch.iter().map(|&i| self.train[i].as_slice()).collect();
        let row_labels: Option<Vec<u32>> =
            self.labels.map(|l| batch.iter().map(|&i| l[i]).collect());
        let supervision = row_labels.as_deref().map(|l| (l, self.supervised_weight));
        let r = self
            .opt
            .step_supervised(self.model, &rows, supervision, kl_weight, rng)
            .with_context(|| format!("training stopped at step {}", step + 1))?;
        Ok(r.terms())
    }

    fn validate(&mut self, _step: u64) -> Result<Option<Validation>> {
        Ok(None)
    }

    fn set_lr(&mut self, lr: f64) {
        self.opt.set_lr(lr);
    }

    fn save(&mut self, _step: u64, _metrics: &BTreeMap<String, f64>) -> Result<()> {
        Ok(())
    }
}

impl StepResult {
    /// The step as the shared loop reports it.
    fn terms(&self) -> StepTerms {
        StepTerms {
            loss: self.loss,
            nll_sum: self.nll_sum,
            kl_sum: self.kl_sum,
            units: self.words,
            examples: self.documents,
            grad_norm: self.grad_norm,
            word_dropout: 0.0,
        }
    }
}

/// Trains (or, for LSH, draws) a bag-of-words model as `cfg` says, reporting through
/// `progress` and saving to `cfg.out` in the checkpoint format of [`crate::checkpoint`].
pub fn train_bow(
    cfg: &BowTrainConfig,
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
            max_words: usize::MAX,
        },
    )?;
    let mut notes = Vec::new();
    if let Some(msg) = corpus.skipped.message() {
        notes.push(format!("corpus `{}`: {msg}", corpus.name));
    }

    let resuming = cfg.resume && cfg.out.exists() && cfg.family != BowFamily::Lsh;
    let mut resumed_tag = None;
    let (vocab, built, start_step) = if resuming {
        let ckpt = Checkpoint::read(&cfg.out, &dev)?;
        if ckpt.config.family() != cfg.family.name() {
            bail!(
                "cannot resume: `{}` holds a `{}` model, not `{}`",
                cfg.out.display(),
                ckpt.config.family(),
                cfg.family
            );
        }
        let mut wanted = cfg.model_config(ckpt.vocab.len());
        if let (ModelConfig::Nash(w), ModelConfig::Nash(stored)) = (&mut wanted, &ckpt.config) {
            // The supervised head's width comes from the corpus labels, not from a flag.
            w.labels = stored.labels;
        }
        let changes = crate::train::config_changes(&ckpt.config, &wanted)?;
        if !changes.is_empty() {
            bail!(
                "cannot resume `{}` with a different model ({}); train a new run with another --out",
                cfg.out.display(),
                changes.join(", ")
            );
        }
        let built = Built::bow(&ckpt.config, cfg.seed, &dev)?;
        ckpt.assign_to(&built.varmap)?;
        notes.push(format!("resuming from step {}", ckpt.provenance.step));
        resumed_tag = Some(crate::train::StateTag::of_checkpoint(&ckpt)?);
        (ckpt.vocab, built, ckpt.provenance.step)
    } else {
        let vocab = train_vocab(
            corpus.train.iter().map(|e| e.text.as_str()),
            cfg.vocab_size,
            cfg.min_frequency,
            cfg.keep_stop_words,
        )?;
        let built = Built::bow(&cfg.model_config(vocab.len()), cfg.seed, &dev)?;
        (vocab, built, 0)
    };
    let model = &built.model;
    let mcfg = match model {
        BowModel::Nvdm(m) => ModelConfig::Nvdm(m.cfg.clone()),
        BowModel::Nash(m) => ModelConfig::Nash(m.cfg.clone()),
        BowModel::Lsh(m) => ModelConfig::Lsh(m.cfg.clone()),
    };

    let all_train = split_bags(&vocab, &corpus, Split::Train, false);
    if !resuming {
        set_idf(&built.varmap, &all_train, vocab.len())?;
    }
    let train: Vec<Bag> = all_train.into_iter().filter(|b| !b.is_empty()).collect();
    let mut valid = split_bags(&vocab, &corpus, Split::Valid, true);
    valid.truncate(cfg.valid_documents.max(1));
    if valid.is_empty() && cfg.family != BowFamily::Lsh {
        notes.push(format!(
            "corpus `{}` has no validation document with a known word: no validation perplexity is measured",
            corpus.name
        ));
    }
    if train.is_empty() {
        bail!(
            "corpus `{}` has no training document with a word in the vocabulary",
            corpus.name
        );
    }
    let batches_per_epoch = train.len().div_ceil(cfg.batch_size.max(1));
    let mut opt = BowOptimizer::new(&built.varmap, cfg.lr, cfg.weight_decay, cfg.clip_norm)?;
    let state_file = crate::train::state_path(&cfg.out);
    if let Some(tag) = &resumed_tag {
        opt.resume(&state_file, tag, &mut notes)?;
    }
    let total_steps = if cfg.family == BowFamily::Lsh {
        0
    } else {
        cfg.steps
    };
    send(TrainEvent::Started {
        start_step,
        total_steps,
        train_sentences: train.len(),
        valid_sentences: valid.len(),
        batches_per_epoch,
        parameters: parameter_count(&built.varmap),
        notes,
    });

    let train_config_json = serde_json::to_value(cfg)?;
    let save = |step: u64, metrics: &BTreeMap<String, f64>, opt: &BowOptimizer| -> Result<()> {
        let provenance = crate::train::run_provenance(
            step,
            metrics,
            &corpus,
            cfg.seed,
            &train_config_json,
            &cfg.corpus,
        );
        let storage = if cfg.half { Storage::F16 } else { Storage::F32 };
        // Both files are written in full before either is renamed, the state first (as the
        // sequence trainer does): a failed save leaves the pair as it was.
        let checkpoint =
            checkpoint::stage_varmap(&cfg.out, &built.varmap, &mcfg, &vocab, &provenance, storage)?;
        let mut staged = Vec::new();
        if cfg.family != BowFamily::Lsh {
            let tag = crate::train::StateTag::new(&mcfg, &vocab, cfg.seed, &corpus.hash, step)?;
            staged.push(opt.stage(&state_file, &tag)?);
        }
        staged.push(checkpoint);
        checkpoint::commit_all(staged)?;
        send(TrainEvent::Checkpoint {
            step,
            path: cfg.out.clone(),
        });
        Ok(())
    };

    let metrics = BTreeMap::new();
    if cfg.family == BowFamily::Lsh {
        save(0, &metrics, &opt)?;
        let outcome = TrainOutcome {
            steps_done: 0,
            start_step: 0,
            path: cfg.out.clone(),
            cancelled: false,
            last_valid: None,
        };
        send(TrainEvent::Finished(outcome.clone()));
        return Ok(outcome);
    }

    let mean_words_per_step =
        train.iter().flatten().map(|p| p.1 as f64).sum::<f64>() / batches_per_epoch as f64;
    let mut objective = BowObjective {
        cfg,
        model,
        vocab: &vocab,
        train: &train,
        valid: &valid,
        opt,
        mean_words_per_step,
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
        lr: LrSchedule::constant(cfg.lr),
        out: cfg.out.clone(),
    };
    run_loop(&mut objective, &settings, &send, control)
}

/// NVDM's and NASH's part of [`run_loop`]: document batches, the bag-of-words ELBO, and
/// validation documents' most probable words as "reconstructions".
struct BowObjective<'a, S> {
    cfg: &'a BowTrainConfig,
    model: &'a BowModel,
    vocab: &'a Vocab,
    train: &'a [Bag],
    valid: &'a [Bag],
    opt: BowOptimizer,
    mean_words_per_step: f64,
    save: S,
}

impl<S> Objective for BowObjective<'_, S>
where
    S: Fn(u64, &BTreeMap<String, f64>, &BowOptimizer) -> Result<()>,
{
    fn batches_per_epoch(&self) -> usize {
        self.train.len().div_ceil(self.cfg.batch_size.max(1))
    }

    fn plan_epoch(&self, rng: &mut StdRng) -> Vec<Vec<usize>> {
        shuffled_batches(self.train.len(), self.cfg.batch_size, rng)
    }

    fn mean_units_per_step(&self) -> f64 {
        self.mean_words_per_step
    }

    fn step(
        &mut self,
        batch: &[usize],
        step: u64,
        kl_weight: f64,
        rng: &mut StdRng,
    ) -> Result<StepTerms> {
        let out = &self.cfg.out;
        let rows: Vec<&[(u32, f32)]> = batch.iter().map(|&i| self.train[i].as_slice()).collect();
        let r = self
            .opt
            .step(self.model, &rows, kl_weight, rng)
            .map_err(|e| {
                let kept = if out.exists() {
                    format!("the last good checkpoint is kept at {}", out.display())
                } else {
                    "no checkpoint had been written yet".to_string()
                };
                anyhow::anyhow!(
                    "training stopped at step {}: {e}; {kept}. Try a lower --lr or --clip-norm.",
                    step + 1
                )
            })?;
        Ok(r.terms())
    }

    fn validate(&mut self, step: u64) -> Result<Option<Validation>> {
        if self.valid.is_empty() {
            return Ok(None);
        }
        let score = score_bags(self.model, self.valid, self.cfg.seed)?;
        let stats = valid_stats(step, &score);
        let shown: Vec<Bag> = self.valid.iter().take(3).cloned().collect();
        let words = super::reconstruct_words(self.model, self.vocab, &shown, 8)?;
        let pairs = shown
            .iter()
            .zip(words)
            .map(|(bag, top)| (bag_text(self.vocab, bag), top.join(" ")))
            .collect();
        Ok(Some(Validation {
            stats,
            pairs,
            metrics: vec![("valid_ppl_bound".into(), score.ppl_bound())],
        }))
    }

    fn set_lr(&mut self, lr: f64) {
        self.opt.set_lr(lr);
    }

    fn save(&mut self, step: u64, metrics: &BTreeMap<String, f64>) -> Result<()> {
        (self.save)(step, metrics, &self.opt)
    }
}

fn valid_stats(step: u64, score: &BowScore) -> ValidStats {
    ValidStats {
        step,
        nll_per_word: score.nll_per_word(),
        ppl: score.ppl(),
        kl: score.kl_per_document(),
    }
}

/// A bag shown as its words (repeated words as `word×n`).
pub fn bag_text(vocab: &Vocab, bag: &[(u32, f32)]) -> String {
    bag.iter()
        .map(|&(id, c)| {
            if c > 1.0 {
                format!("{}×{c}", vocab.token(id))
            } else {
                vocab.token(id).to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}
