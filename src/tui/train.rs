//! Tab 5, Train: a small form for the main hyper-parameters, a training run on its own thread
//! with live curves, pause / stop, and loading the new checkpoint into the other tabs. The form
//! starts from the opened model's kind, code size and tokenizer, and can start a run from the
//! opened checkpoint's weights and vocabulary (`train --init`; the file is only read).

use std::path::PathBuf;
use std::sync::mpsc::{self, Sender};
use std::thread::JoinHandle;

use crossterm::event::{KeyCode, KeyEvent};
use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Modifier;
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Axis, Chart, Dataset, Gauge, GraphType, Widget};

use super::context::{Command, Ctx, Tab, View};
use super::event::Msg;
use super::jobs::{Effect, ModelInfo, ReplyBody};
use super::keys::{self, nav, typing, Binding, Lookup, Mode, Only};
use super::widgets::{self, fmt_secs, InputAction, TextInput};
use crate::bow::train::{BowFamily, BowTrainConfig};
use crate::coder::Capabilities;
use crate::model::bow::NashNoise;
use crate::model::{LatentKind, ModelConfig, SeqConfig};
use crate::train::{StepStats, TrainConfig, TrainControl, TrainEvent, TrainOutcome};
use crate::train_job::{TrainJob, TrainKind};
use crate::vocab::TokenizerKind;

/// Settings that train a small model on the bundled corpus in about a minute on a laptop, so
/// curves move within seconds of pressing `s`.
pub fn quick_defaults(kind: LatentKind) -> TrainConfig {
    TrainConfig {
        kind,
        corpus: "wordnet".into(),
        out: default_out(TrainKind::Seq(kind)),
        vocab_size: 2000,
        embed_dim: 32,
        hidden_dim: 64,
        latent_dim: 16,
        steps: 400,
        batch_tokens: 800,
        valid_every: 50,
        valid_sentences: 200,
        checkpoint_every: 100,
        free_bits: crate::train::default_free_bits(kind),
        precision: crate::train::default_precision(),
        ..TrainConfig::default()
    }
}

/// Bag-of-words settings of the same size and cadence as `like` (the sequence settings the tab
/// starts from), with `family`'s own input, KL weight and learning rate.
pub fn quick_bow_defaults(family: BowFamily, like: &TrainConfig) -> BowTrainConfig {
    BowTrainConfig {
        corpus: like.corpus.clone(),
        out: like.out.clone(),
        vocab_size: like.vocab_size,
        hidden_dim: like.hidden_dim,
        latent_dim: like.latent_dim,
        steps: like.steps,
        valid_every: like.valid_every,
        valid_documents: like.valid_sentences,
        checkpoint_every: like.checkpoint_every,
        seed: like.seed,
        ..BowTrainConfig::for_family(family)
    }
}

fn default_out(kind: TrainKind) -> PathBuf {
    PathBuf::from(format!("runs/tui-{kind}.safetensors"))
}

/// The checkpoint a run started from the opened checkpoint writes until the user names one.
fn default_init_out(kind: LatentKind) -> PathBuf {
    PathBuf::from(format!("runs/tui-{kind}-finetuned.safetensors"))
}

/// The tokenizers the form cycles through.
const TOKENIZERS: [TokenizerKind; 3] = [
    TokenizerKind::Word,
    TokenizerKind::Bpe,
    TokenizerKind::Unigram,
];

/// σ of NASH-N's fixed noise until the user sets one (the command line's default).
const DEFAULT_NOISE_STD: f64 = 0.5;

/// Runs the job's trainer on a thread of its own, forwarding its events as messages tagged
/// with `run`.
pub fn spawn_training(
    run: u64,
    job: impl Into<TrainJob>,
    control: TrainControl,
    out: Sender<Msg>,
) -> JoinHandle<()> {
    let job = job.into();
    std::thread::Builder::new()
        .name("latent-tui training".into())
        .spawn(move || {
            let (tx, rx) = mpsc::channel::<TrainEvent>();
            let fwd_out = out.clone();
            let forward = std::thread::spawn(move || {
                for event in rx {
                    if fwd_out.send(Msg::Train { run, event }).is_err() {
                        break;
                    }
                }
            });
            let result =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job.run(tx, &control)));
            // `tx` moved into the trainer and is dropped by now, so the forwarder drains and ends.
            let _ = forward.join();
            let error = match result {
                Ok(Ok(_)) => None,
                Ok(Err(e)) => Some(format!("{e:#}")),
                Err(p) => Some(format!(
                    "the training thread panicked: {}",
                    super::event::panic_text(&p)
                )),
            };
            let _ = out.send(Msg::TrainEnded { run, error });
        })
        .expect("spawning the training thread")
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    Kind,
    /// Start from scratch or from the opened checkpoint (`train --init`).
    Init,
    Corpus,
    Out,
    LatentDim,
    EmbedDim,
    HiddenDim,
    VocabSize,
    Tokenizer,
    Noise,
    NoiseStd,
    Steps,
    BatchTokens,
    BatchDocs,
    Lr,
    WordDropout,
    KlWeight,
    FreeBits,
    ValidEvery,
    Seed,
}

impl Field {
    pub const ALL: [Field; 20] = [
        Field::Kind,
        Field::Init,
        Field::Corpus,
        Field::Out,
        Field::LatentDim,
        Field::EmbedDim,
        Field::HiddenDim,
        Field::VocabSize,
        Field::Tokenizer,
        Field::Noise,
        Field::NoiseStd,
        Field::Steps,
        Field::BatchTokens,
        Field::BatchDocs,
        Field::Lr,
        Field::WordDropout,
        Field::KlWeight,
        Field::FreeBits,
        Field::ValidEvery,
        Field::Seed,
    ];

    /// Whether the field means anything for `kind` (with NASH's `noise`); the form hides the
    /// others.
    pub fn applies(self, kind: TrainKind, noise: NashNoise) -> bool {
        use Field::*;
        match kind {
            // Free bits floor a KL term: only the kinds whose loss has one.
            TrainKind::Seq(k) => match self {
                Noise | NoiseStd | BatchDocs => false,
                // Only gaussian, binary-vae and gumbel-vae put a KL term in the loss (and
                // free bits floor it).
                KlWeight | FreeBits => k.kl_in_loss(),
                // An `lm` has no code.
                LatentDim => k.has_latent(),
                _ => true,
            },
            // LSH draws random hyperplanes over tf-idf: nothing is trained.
            TrainKind::Bow(BowFamily::Lsh) => {
                matches!(self, Kind | Corpus | Out | LatentDim | VocabSize | Seed)
            }
            TrainKind::Bow(family) => match self {
                // Only sequence models start from a checkpoint; bags of words have their own
                // vocabulary of words.
                EmbedDim | BatchTokens | WordDropout | FreeBits | Init | Tokenizer => false,
                Noise => family == BowFamily::Nash,
                NoiseStd => family == BowFamily::Nash && matches!(noise, NashNoise::Fixed { .. }),
                _ => true,
            },
        }
    }

    /// Fields cycled by Enter rather than typed.
    pub fn cycles(self) -> bool {
        matches!(
            self,
            Field::Kind | Field::Noise | Field::Init | Field::Tokenizer
        )
    }

    /// Settings a run started from a checkpoint takes from it (its architecture and
    /// vocabulary): fixed while the form starts from the opened checkpoint.
    pub fn from_checkpoint(self) -> bool {
        matches!(
            self,
            Field::Kind
                | Field::LatentDim
                | Field::EmbedDim
                | Field::HiddenDim
                | Field::VocabSize
                | Field::Tokenizer
        )
    }

    pub fn label(self, kind: TrainKind) -> &'static str {
        match self {
            Field::Kind => "model kind",
            Field::Init => "start from",
            Field::Corpus => "corpus",
            Field::Out => "checkpoint",
            Field::LatentDim => match kind {
                TrainKind::Bow(BowFamily::Nash | BowFamily::Lsh) => "latent bits",
                _ => "latent dim",
            },
            Field::EmbedDim => "embedding",
            Field::HiddenDim => "hidden",
            Field::VocabSize => "vocabulary",
            Field::Tokenizer => "tokenizer",
            Field::Noise => "noise",
            Field::NoiseStd => "noise σ",
            Field::Steps => "steps",
            Field::BatchTokens => "batch tokens",
            Field::BatchDocs => "batch docs",
            Field::Lr => "learning rate",
            Field::WordDropout => "word dropout",
            Field::KlWeight => "KL weight",
            Field::FreeBits => "free bits (nats)",
            Field::ValidEvery => "validate every",
            Field::Seed => "seed",
        }
    }
}

/// The name of a NASH noise setting with the variant it trains.
fn noise_text(noise: NashNoise) -> &'static str {
    match noise {
        NashNoise::None => "none: NASH",
        NashNoise::Fixed { .. } => "fixed: NASH-N",
        NashNoise::Learned => "learned: NASH-DN",
    }
}

/// A setting both families share, scaled from the selected family's value.
fn both(scale: impl Fn(usize) -> usize, seq: usize, bag: usize, bow: bool) -> (usize, usize) {
    let v = scale(if bow { bag } else { seq });
    (v, v)
}

fn parse_number<T: std::str::FromStr>(s: &str, what: &str) -> Result<T, String> {
    s.parse().map_err(|_| format!("`{s}` is not {what}"))
}

fn positive(v: usize, name: &str) -> Result<usize, String> {
    if v == 0 {
        Err(format!("{name} must be at least 1"))
    } else {
        Ok(v)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Phase {
    /// Loading the corpus and building the vocabulary.
    Preparing,
    Running,
    Paused,
    /// Cancel requested; the run saves after its current step.
    Stopping,
    Finished(TrainOutcome),
    Failed(String),
}

#[derive(Clone, Debug)]
pub struct Started {
    pub total_steps: u64,
    pub train_sentences: usize,
    pub valid_sentences: usize,
    pub parameters: usize,
    pub notes: Vec<String>,
}

/// One training run as the tab sees it.
#[derive(Debug)]
pub struct Run {
    pub id: u64,
    pub job: TrainJob,
    pub control: TrainControl,
    pub phase: Phase,
    pub started: Option<Started>,
    /// (step, loss, reconstruction NLL per token, KL per sentence)
    pub curve: Vec<[f64; 4]>,
    pub last: Option<StepStats>,
    /// (step, validation perplexity)
    pub valid: Vec<(f64, f64)>,
    pub reconstructions: Vec<(String, String)>,
    pub checkpoint: Option<(u64, PathBuf)>,
}

impl Run {
    pub fn active(&self) -> bool {
        matches!(
            self.phase,
            Phase::Preparing | Phase::Running | Phase::Paused | Phase::Stopping
        )
    }
}

#[derive(Debug)]
pub struct TrainState {
    /// The sequence models' settings (kind included).
    pub cfg: TrainConfig,
    /// The bag-of-words models' settings (family included).
    pub bow: BowTrainConfig,
    /// Whether the selected kind is a bag-of-words model (`bow`) rather than `cfg`'s kind.
    pub bag_of_words: bool,
    /// Index into the fields shown for the selected kind.
    pub selected: usize,
    pub editing: Option<TextInput>,
    /// The checkpoint path follows the kind until the user types one.
    out_auto: bool,
    /// NASH-N's σ, remembered while another noise setting is selected.
    noise_std: f64,
    pub run: Option<Run>,
    next_run: u64,
    /// The opened checkpoint, when it is a sequence model a run can start from.
    pub opened: Option<Opened>,
    /// The form starts the run from the opened checkpoint's weights and vocabulary
    /// (`train --init`): `cfg` holds its architecture and its run's settings.
    pub from_opened: bool,
    /// The form's sequence settings before "start from: checkpoint" replaced them, put
    /// back by "start from: scratch".
    scratch: Option<TrainConfig>,
    /// The user changed a setting: opening another model no longer resets the kind and sizes.
    touched: bool,
    /// A model opened while a run was going: the form follows it once the run ends.
    adopt_later: Option<ModelInfo>,
}

/// A sequence checkpoint the Train tab can start a run from.
#[derive(Clone, Debug, PartialEq)]
pub struct Opened {
    pub path: PathBuf,
    pub config: SeqConfig,
    pub tokenizer: TokenizerKind,
    /// The settings of the run that made it, where it records them.
    pub trained_with: Option<TrainConfig>,
    /// Its corpus as a `--corpus` spec, where the checked lookup finds it.
    pub corpus: Option<String>,
}

impl TrainState {
    pub fn new(cfg: TrainConfig) -> Self {
        let out_auto = cfg.out == default_out(TrainKind::Seq(cfg.kind));
        let bow = quick_bow_defaults(BowFamily::Nash, &cfg);
        Self {
            cfg,
            bow,
            bag_of_words: false,
            selected: 0,
            editing: None,
            out_auto,
            noise_std: DEFAULT_NOISE_STD,
            run: None,
            next_run: 0,
            opened: None,
            from_opened: false,
            scratch: None,
            touched: false,
            adopt_later: None,
        }
    }

    /// The opened model becomes the form's default: its kind (a bag-of-words family where the
    /// tab trains it), code size and tokenizer, unless the user has changed the settings; a
    /// sequence model is offered as the run's start ("start from"). While a run is going the
    /// form is left as it is.
    pub fn adopt(&mut self, model: &ModelInfo) {
        if self.running() {
            self.adopt_later = Some(model.clone());
            return;
        }
        self.opened = match &model.config {
            ModelConfig::Seq(config) => Some(Opened {
                path: model.path.clone(),
                config: config.clone(),
                tokenizer: model.tokenizer,
                trained_with: match &model.trained_with {
                    Some(TrainJob::Seq(c)) => Some(c.clone()),
                    _ => None,
                },
                corpus: model.corpus_spec.clone(),
            }),
            _ => None,
        };
        // A run from the previous model's checkpoint makes no sense for this one (turning it
        // off cannot fail).
        let _ = self.set_from_opened(false);
        if self.touched {
            return;
        }
        let kind = match &model.config {
            ModelConfig::Seq(c) => TrainKind::Seq(c.latent),
            _ => match model.caps.name.parse::<BowFamily>() {
                Ok(family) => TrainKind::Bow(family),
                Err(_) => return,
            },
        };
        self.set_kind(kind);
        if model.kind.has_latent() && model.latent_dim > 0 {
            let d = model.latent_dim;
            (self.cfg.latent_dim, self.bow.latent_dim) = (d, d);
            // A code wider than the quick run's hidden size would feed a narrower decoder.
            self.cfg.hidden_dim = self.cfg.hidden_dim.max(d);
            self.bow.hidden_dim = self.bow.hidden_dim.max(d);
        }
        if matches!(kind, TrainKind::Seq(_)) {
            self.cfg.tokenizer = model.tokenizer;
        }
    }

    /// Starts the run from the opened checkpoint (`on`: its architecture, vocabulary, corpus
    /// where it is found and its run's settings, as `train --init` does without `--corpus`;
    /// the form keeps its checkpoint, steps, cadence and seed, and its corpus where the
    /// checkpoint's is not found) or from scratch (the form's settings from before).
    pub fn set_from_opened(&mut self, on: bool) -> Result<(), String> {
        if on == self.from_opened {
            return Ok(());
        }
        if !on {
            if let Some(scratch) = self.scratch.take() {
                self.cfg = scratch;
            }
            self.cfg.init = None;
            self.from_opened = false;
            self.selected = self.selected.min(self.fields().len() - 1);
            return Ok(());
        }
        let Some(o) = &self.opened else {
            return Err(
                "only a sequence model's checkpoint can be the start of a run; this one is a \
                 bag of words"
                    .into(),
            );
        };
        let form = self.cfg.clone();
        let mut cfg =
            crate::train::init_settings(&o.path, &o.config, o.trained_with.clone(), form.clone());
        cfg.tokenizer = o.tokenizer;
        // The vocabulary is the checkpoint's: another corpus would be mostly unknown words.
        cfg.corpus = o.corpus.clone().unwrap_or_else(|| form.corpus.clone());
        cfg.steps = form.steps;
        cfg.valid_every = form.valid_every;
        cfg.valid_sentences = form.valid_sentences;
        cfg.checkpoint_every = form.checkpoint_every;
        cfg.seed = form.seed;
        cfg.out = if self.out_auto {
            default_init_out(cfg.kind)
        } else {
            form.out.clone()
        };
        self.scratch = Some(form);
        self.cfg = cfg;
        self.bag_of_words = false;
        self.from_opened = true;
        self.selected = self.selected.min(self.fields().len() - 1);
        Ok(())
    }

    /// The kind the form trains.
    pub fn kind(&self) -> TrainKind {
        if self.bag_of_words {
            TrainKind::Bow(self.bow.family)
        } else {
            TrainKind::Seq(self.cfg.kind)
        }
    }

    /// What `s` would start.
    pub fn job(&self) -> TrainJob {
        if self.bag_of_words {
            let mut bow = self.bow.clone();
            if bow.family != BowFamily::Nash {
                bow.noise = NashNoise::None;
            }
            TrainJob::Bow(bow)
        } else {
            TrainJob::Seq(self.cfg.clone())
        }
    }

    /// The form's rows for the selected kind ("start from" where the opened checkpoint can
    /// be a run's start).
    pub fn fields(&self) -> Vec<Field> {
        let kind = self.kind();
        Field::ALL
            .into_iter()
            .filter(|f| f.applies(kind, self.bow.noise))
            .filter(|&f| f != Field::Init || self.opened.is_some())
            .collect()
    }

    pub fn selected_field(&self) -> Field {
        let fields = self.fields();
        fields[self.selected.min(fields.len() - 1)]
    }

    /// Selects `kind`; a new bag-of-words family takes its own input and KL weight.
    pub fn set_kind(&mut self, kind: TrainKind) {
        match kind {
            TrainKind::Seq(k) => {
                if self.cfg.kind != k {
                    self.cfg.free_bits = crate::train::default_free_bits(k);
                }
                self.cfg.kind = k;
                self.bag_of_words = false;
            }
            TrainKind::Bow(family) => {
                if self.bow.family != family {
                    let own = BowTrainConfig::for_family(family);
                    self.bow.family = family;
                    self.bow.input = own.input;
                    self.bow.kl_weight = own.kl_weight;
                }
                self.bag_of_words = true;
            }
        }
        if self.out_auto {
            self.cfg.out = default_out(kind);
            self.bow.out = self.cfg.out.clone();
        }
        self.selected = self.selected.min(self.fields().len() - 1);
    }

    /// Why `field` cannot change now: it is the opened checkpoint's while the run starts from
    /// it.
    pub fn fixed(&self, field: Field) -> Option<String> {
        (self.from_opened && field.from_checkpoint()).then(|| {
            format!(
                "{} is the opened checkpoint's while the run starts from it (start from: scratch frees it)",
                field.label(self.kind())
            )
        })
    }

    pub fn value(&self, field: Field) -> String {
        let (c, b, bow) = (&self.cfg, &self.bow, self.bag_of_words);
        let pick = |seq: String, bag: String| if bow { bag } else { seq };
        match field {
            Field::Kind => self.kind().to_string(),
            Field::Init => if self.from_opened {
                "checkpoint"
            } else {
                "scratch"
            }
            .to_string(),
            Field::Corpus => pick(c.corpus.clone(), b.corpus.clone()),
            Field::Out => pick(c.out.display().to_string(), b.out.display().to_string()),
            Field::LatentDim => pick(c.latent_dim.to_string(), b.latent_dim.to_string()),
            Field::EmbedDim => c.embed_dim.to_string(),
            Field::HiddenDim => pick(c.hidden_dim.to_string(), b.hidden_dim.to_string()),
            Field::VocabSize => pick(c.vocab_size.to_string(), b.vocab_size.to_string()),
            Field::Tokenizer => c.tokenizer.name().to_string(),
            Field::Noise => noise_text(b.noise).to_string(),
            Field::NoiseStd => match b.noise {
                NashNoise::Fixed { std } => format!("{std}"),
                _ => format!("{}", self.noise_std),
            },
            Field::Steps => pick(c.steps.to_string(), b.steps.to_string()),
            Field::BatchTokens => c.batch_tokens.to_string(),
            Field::BatchDocs => b.batch_size.to_string(),
            Field::Lr => pick(format!("{}", c.lr), format!("{}", b.lr)),
            Field::WordDropout => format!("{}", c.word_dropout),
            Field::KlWeight => pick(format!("{}", c.kl_weight), format!("{}", b.kl_weight)),
            Field::FreeBits => format!("{}", c.free_bits),
            Field::ValidEvery => pick(c.valid_every.to_string(), b.valid_every.to_string()),
            Field::Seed => pick(c.seed.to_string(), b.seed.to_string()),
        }
    }

    /// Parses `s` into the field; the message says what was expected. Settings both families
    /// share (corpus, checkpoint, sizes, steps, cadence, seed) are set for both, so switching
    /// between a sequence and a bag-of-words kind keeps them; rates stay per family.
    pub fn set(&mut self, field: Field, s: &str) -> Result<(), String> {
        let s = s.trim();
        if let Some(why) = self.fixed(field) {
            return Err(why);
        }
        if field == Field::Init {
            return match s {
                "scratch" => self.set_from_opened(false),
                "checkpoint" => self.set_from_opened(true),
                _ => Err(format!("`{s}` is not scratch or checkpoint")),
            };
        }
        let whole = |s: &str| parse_number::<usize>(s, "a whole number");
        let bow = self.bag_of_words;
        let kind = self.kind();
        let (c, b) = (&mut self.cfg, &mut self.bow);
        match field {
            Field::Kind => self.set_kind(s.parse()?),
            Field::Corpus => {
                if s.is_empty() {
                    return Err("the corpus is `wordnet` or a path".into());
                }
                c.corpus = s.to_string();
                b.corpus = s.to_string();
            }
            Field::Out => {
                if s.is_empty() {
                    return Err("the checkpoint needs a file path".into());
                }
                c.out = PathBuf::from(s);
                b.out = PathBuf::from(s);
                self.out_auto = false;
            }
            Field::LatentDim => {
                let v = positive(whole(s)?, field.label(kind))?;
                (c.latent_dim, b.latent_dim) = (v, v);
            }
            Field::EmbedDim => c.embed_dim = positive(whole(s)?, "embedding")?,
            Field::HiddenDim => {
                let v = positive(whole(s)?, "hidden")?;
                (c.hidden_dim, b.hidden_dim) = (v, v);
            }
            Field::VocabSize => {
                let v = whole(s)?;
                if v < 5 {
                    return Err("the vocabulary needs at least 5 entries".into());
                }
                (c.vocab_size, b.vocab_size) = (v, v);
            }
            Field::Init => {}
            Field::Tokenizer => {
                c.tokenizer = TOKENIZERS
                    .into_iter()
                    .find(|t| t.name() == s)
                    .ok_or_else(|| format!("`{s}` is not word, bpe or unigram"))?;
            }
            Field::Noise => {
                b.noise = match s {
                    "none" => NashNoise::None,
                    "fixed" => NashNoise::Fixed {
                        std: self.noise_std,
                    },
                    "learned" => NashNoise::Learned,
                    _ => return Err(format!("`{s}` is not none, fixed or learned")),
                }
            }
            Field::NoiseStd => {
                let v: f64 = parse_number(s, "a number")?;
                if !(v >= 0.0 && v.is_finite()) {
                    return Err("σ must be ≥ 0".into());
                }
                self.noise_std = v;
                b.noise = NashNoise::Fixed { std: v };
            }
            Field::Steps => {
                let v: u64 = parse_number(s, "a whole number")?;
                if v == 0 {
                    return Err("steps must be at least 1".into());
                }
                (c.steps, b.steps) = (v, v);
            }
            Field::BatchTokens => c.batch_tokens = positive(whole(s)?, "batch tokens")?,
            Field::BatchDocs => b.batch_size = positive(whole(s)?, "batch docs")?,
            Field::Lr => {
                let v: f64 = parse_number(s, "a number")?;
                if !(v > 0.0 && v.is_finite()) {
                    return Err("the learning rate must be positive".into());
                }
                if bow {
                    b.lr = v
                } else {
                    c.lr = v
                }
            }
            Field::WordDropout => {
                let v: f64 = parse_number(s, "a number")?;
                if !(0.0..=1.0).contains(&v) {
                    return Err("word dropout is a probability in [0, 1]".into());
                }
                c.word_dropout = v
            }
            Field::KlWeight => {
                let v: f64 = parse_number(s, "a number")?;
                if !(v >= 0.0 && v.is_finite()) {
                    return Err("the KL weight must be ≥ 0".into());
                }
                if bow {
                    b.kl_weight = v
                } else {
                    c.kl_weight = v
                }
            }
            Field::FreeBits => {
                let v: f64 = parse_number(s, "a number")?;
                if !(0.0..=crate::train::MAX_FREE_BITS).contains(&v) {
                    return Err(format!(
                        "free bits are 0 to {} nats per dimension",
                        crate::train::MAX_FREE_BITS
                    ));
                }
                c.free_bits = v
            }
            Field::ValidEvery => {
                let v: u64 = parse_number(s, "a whole number")?;
                (c.valid_every, b.valid_every) = (v, v);
            }
            Field::Seed => {
                let v: u64 = parse_number(s, "a whole number")?;
                (c.seed, b.seed) = (v, v);
            }
        }
        Ok(())
    }

    /// ←/→ on a field: the kind and the noise cycle; sizes halve or double; rates move in
    /// small steps.
    pub fn adjust(&mut self, field: Field, up: bool) {
        let scale = |v: usize| {
            if up {
                v.saturating_mul(2)
            } else {
                (v / 2).max(1)
            }
        };
        fn cycle<T: PartialEq + Copy>(all: &[T], now: T, up: bool) -> T {
            let i = all.iter().position(|&k| k == now).unwrap_or(0);
            let n = all.len();
            all[if up { (i + 1) % n } else { (i + n - 1) % n }]
        }
        if self.fixed(field).is_some() {
            return;
        }
        if field == Field::Init {
            // Turning it on fails only where the "start from" row is not offered.
            let _ = self.set_from_opened(!self.from_opened);
            return;
        }
        let bow = self.bag_of_words;
        let noise_std = self.noise_std;
        let (c, b) = (&mut self.cfg, &mut self.bow);
        match field {
            Field::Kind => {
                let next = cycle(&TrainKind::all(), self.kind(), up);
                self.set_kind(next);
            }
            Field::Tokenizer => c.tokenizer = cycle(&TOKENIZERS, c.tokenizer, up),
            Field::LatentDim => {
                (c.latent_dim, b.latent_dim) = both(scale, c.latent_dim, b.latent_dim, bow)
            }
            Field::EmbedDim => c.embed_dim = scale(c.embed_dim),
            Field::HiddenDim => {
                (c.hidden_dim, b.hidden_dim) = both(scale, c.hidden_dim, b.hidden_dim, bow)
            }
            Field::VocabSize => {
                let (x, y) = both(scale, c.vocab_size, b.vocab_size, bow);
                (c.vocab_size, b.vocab_size) = (x.max(5), y.max(5));
            }
            Field::Noise => {
                let all = [
                    NashNoise::None,
                    NashNoise::Fixed { std: noise_std },
                    NashNoise::Learned,
                ];
                let i = all
                    .iter()
                    .position(|n| n.name() == b.noise.name())
                    .unwrap_or(0);
                b.noise = all[if up { (i + 1) % 3 } else { (i + 2) % 3 }];
            }
            Field::NoiseStd => {
                let std =
                    ((noise_std * 10.0).round() + if up { 1.0 } else { -1.0 }).max(0.0) / 10.0;
                self.noise_std = std;
                b.noise = NashNoise::Fixed { std };
            }
            Field::Steps => {
                let (x, y) = both(scale, c.steps as usize, b.steps as usize, bow);
                (c.steps, b.steps) = (x as u64, y as u64);
            }
            Field::BatchTokens => c.batch_tokens = scale(c.batch_tokens),
            Field::BatchDocs => b.batch_size = scale(b.batch_size),
            Field::Lr => {
                let lr = if bow { &mut b.lr } else { &mut c.lr };
                *lr = if up { *lr * 2.0 } else { *lr / 2.0 }
            }
            Field::WordDropout => {
                c.word_dropout = ((c.word_dropout * 20.0).round() + if up { 1.0 } else { -1.0 })
                    .clamp(0.0, 20.0)
                    / 20.0
            }
            Field::KlWeight => {
                let w = if bow {
                    &mut b.kl_weight
                } else {
                    &mut c.kl_weight
                };
                // NASH's default weight is 0.01: tenths would jump straight to zero.
                let unit = if *w > 0.0 && *w < 0.1 { 100.0 } else { 10.0 };
                *w = ((*w * unit).round() + if up { 1.0 } else { -1.0 }).max(0.0) / unit
            }
            Field::FreeBits => {
                c.free_bits = ((c.free_bits * 20.0).round() + if up { 1.0 } else { -1.0 })
                    .clamp(0.0, crate::train::MAX_FREE_BITS * 20.0)
                    / 20.0
            }
            Field::ValidEvery => {
                let (x, y) = both(scale, c.valid_every as usize, b.valid_every as usize, bow);
                (c.valid_every, b.valid_every) = (x as u64, y as u64);
            }
            Field::Seed => {
                let s = if bow { b.seed } else { c.seed };
                let s = if up { s + 1 } else { s.saturating_sub(1) };
                (c.seed, b.seed) = (s, s);
            }
            Field::Corpus | Field::Out | Field::Init => {}
        }
        self.selected = self.selected.min(self.fields().len() - 1);
    }

    pub fn typing(&self) -> bool {
        self.editing.is_some()
    }

    pub fn running(&self) -> bool {
        self.run.as_ref().is_some_and(Run::active)
    }

    pub fn hints(&self, kind: Capabilities) -> Vec<(&'static str, &'static str)> {
        if self.editing.is_some() {
            return keys::hints(KEYS, Mode::Typing, kind);
        }
        let running = self.running();
        keys::hints_where(KEYS, Mode::Nav, kind, |a| match a {
            Action::Pause | Action::Stop => running,
            Action::Load => true,
            _ => !running,
        })
    }

    pub fn activity(&self) -> Option<String> {
        let run = self.run.as_ref()?;
        match &run.phase {
            Phase::Preparing => Some("training: preparing".into()),
            Phase::Running => Some(format!(
                "training {}/{}",
                run.last.as_ref().map_or(0, |s| s.step),
                run.job.steps()
            )),
            Phase::Paused => Some("training paused".into()),
            Phase::Stopping => Some("training: stopping".into()),
            _ => None,
        }
    }

    /// What quitting now would stop: a run that is going (the app asks before it quits).
    pub fn quit_question(&self) -> Option<String> {
        let run = self.run.as_ref()?;
        let step = run.last.as_ref().map_or(0, |s| s.step);
        match run.phase {
            Phase::Preparing | Phase::Running | Phase::Paused => Some(format!(
                "training is running: step {step} of {}",
                run.job.steps()
            )),
            _ => None,
        }
    }

    /// On quit: ask a running training to stop (it saves a checkpoint on the way out).
    pub(super) fn stop_for_quit(&mut self) {
        if let Some(run) = &mut self.run {
            if run.active() {
                run.control.cancel();
                run.phase = Phase::Stopping;
            }
        }
    }
}

/// What a key can do on this tab.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Set,
    Cancel,
    Up,
    Down,
    Edit,
    Lower,
    Raise,
    Start,
    Pause,
    Stop,
    Load,
    RealWords,
}

/// The tab's keys: dispatch, footer and help all read this table.
pub const KEYS: &[Binding<Action>] = &[
    typing(
        &[KeyCode::Enter],
        "Enter",
        "set the setting being edited",
        Some(("Enter", "set")),
        Action::Set,
    ),
    typing(
        &[KeyCode::Esc],
        "Esc",
        "cancel the edit",
        Some(("Esc", "cancel")),
        Action::Cancel,
    ),
    nav(
        &[KeyCode::Up, KeyCode::Char('k')],
        "↑ ↓ or j k",
        "select a setting",
        Some(("↑/↓", "field")),
        Only::Any,
        Action::Up,
    ),
    nav(
        &[KeyCode::Down, KeyCode::Char('j')],
        "↓ or j",
        "",
        None,
        Only::Any,
        Action::Down,
    ),
    nav(
        &[KeyCode::Enter, KeyCode::Char('e')],
        "Enter or e",
        "edit it (Enter sets, Esc cancels; Enter on the kind, start from, tokenizer or noise cycles it)",
        Some(("Enter", "edit")),
        Only::Any,
        Action::Edit,
    ),
    nav(
        &[KeyCode::Left, KeyCode::Char('h')],
        "← → or h l",
        "cycle the kind, start from (scratch, or the opened checkpoint: train --init), tokenizer or noise; halve / double sizes and steps; nudge rates",
        Some(("←/→", "adjust")),
        Only::Any,
        Action::Lower,
    ),
    nav(
        &[KeyCode::Right, KeyCode::Char('l')],
        "→ or l",
        "",
        None,
        Only::Any,
        Action::Raise,
    ),
    nav(
        &[KeyCode::Char('s')],
        "s",
        "start training",
        Some(("s", "start")),
        Only::Any,
        Action::Start,
    ),
    nav(
        &[KeyCode::Char('p')],
        "p",
        "pause / resume",
        Some(("p", "pause/resume")),
        Only::Any,
        Action::Pause,
    ),
    nav(
        &[KeyCode::Char('x')],
        "x",
        "stop (saves a checkpoint)",
        Some(("x", "stop & save")),
        Only::Any,
        Action::Stop,
    ),
    nav(
        &[KeyCode::Char('L')],
        "L",
        "load the run's newest checkpoint into the other tabs",
        Some(("L", "load checkpoint")),
        Only::Any,
        Action::Load,
    ),
    keys::real_words_quiet(Action::RealWords),
];

impl TrainState {
    fn on_key(&mut self, cx: &mut Ctx, key: KeyEvent) {
        let action = if let Some(input) = &mut self.editing {
            match input.on_key(key) {
                InputAction::Submit => Action::Set,
                InputAction::Cancel => Action::Cancel,
                _ => return,
            }
        } else {
            match keys::lookup(KEYS, Mode::Nav, key.code, cx.model.caps) {
                Lookup::Action(a) => a,
                Lookup::NotForThisModel(why) => return cx.notice(why),
                Lookup::Unbound => return,
            }
        };
        let n = self.fields().len();
        match action {
            Action::Set => {
                let Some(input) = self.editing.take() else {
                    return;
                };
                let field = self.selected_field();
                match self.set(field, &input.text()) {
                    Ok(()) => self.touched = true,
                    Err(e) => cx.error(format!("{}: {e}", field.label(self.kind()))),
                }
            }
            Action::Cancel => self.editing = None,
            Action::Pause => self.pause(cx),
            Action::Stop => self.stop(cx),
            Action::Load => self.load(cx),
            Action::RealWords => cx.real_words_elsewhere(),
            Action::Start => self.start(cx),
            Action::Up => self.selected = (self.selected.min(n - 1) + n - 1) % n,
            Action::Down => self.selected = (self.selected + 1) % n,
            Action::Lower | Action::Raise => {
                if self.running() {
                    cx.notice("settings are fixed while a run is going; x stops it");
                    return;
                }
                let field = self.selected_field();
                if let Some(why) = self.fixed(field) {
                    return cx.notice(why);
                }
                self.adjust(field, action == Action::Raise);
                self.touched = true;
            }
            Action::Edit => {
                if self.running() {
                    cx.notice("settings are fixed while a run is going; x stops it");
                    return;
                }
                let field = self.selected_field();
                if let Some(why) = self.fixed(field) {
                    return cx.notice(why);
                }
                if field.cycles() {
                    self.adjust(field, true);
                    self.touched = true;
                } else {
                    self.editing = Some(TextInput::with_text(&self.value(field)));
                }
            }
        }
    }

    fn start(&mut self, cx: &mut Ctx) {
        if self.running() {
            cx.notice("a run is already going (x stops it)");
            return;
        }
        self.next_run += 1;
        let id = self.next_run;
        let control = TrainControl::default();
        let job = self.job();
        // The paths the run writes are checked before it starts, as `train` checks them:
        // never a file another program made, nor the checkpoint the explorer has open.
        let refused = job.check_outputs(&cx.model.path).err();
        self.run = Some(Run {
            id,
            job: job.clone(),
            control: control.clone(),
            phase: match &refused {
                Some(e) => Phase::Failed(format!("{e:#}")),
                None => Phase::Preparing,
            },
            started: None,
            curve: Vec::new(),
            last: None,
            valid: Vec::new(),
            reconstructions: Vec::new(),
            checkpoint: None,
        });
        if refused.is_some() {
            return;
        }
        cx.jobs.push(Effect::StartTraining {
            run: id,
            cfg: Box::new(job),
            control,
        });
    }

    fn pause(&mut self, cx: &mut Ctx) {
        let Some(run) = &mut self.run else {
            cx.notice("no training run (s starts one)");
            return;
        };
        match run.phase {
            Phase::Preparing | Phase::Running | Phase::Paused => {
                let paused = run.control.toggle_pause();
                // The thread confirms with a `Paused` event between steps; show intent now.
                run.phase = if paused {
                    Phase::Paused
                } else {
                    Phase::Running
                };
            }
            _ => cx.notice("the run is not going"),
        }
    }

    fn stop(&mut self, cx: &mut Ctx) {
        let Some(run) = &mut self.run else {
            cx.notice("no training run (s starts one)");
            return;
        };
        if run.active() {
            run.control.cancel();
            run.phase = Phase::Stopping;
        } else {
            cx.notice("the run is not going");
        }
    }

    fn load(&mut self, cx: &mut Ctx) {
        let path = self.run.as_ref().and_then(|r| match &r.phase {
            Phase::Finished(o) if o.path.exists() => Some(o.path.clone()),
            _ => r.checkpoint.as_ref().map(|c| c.1.clone()),
        });
        match path {
            Some(p) => {
                cx.notice(format!("loading {}", p.display()));
                cx.command(Command::Load(p));
            }
            None => cx.notice("no checkpoint written yet by this run"),
        }
    }

    pub fn on_train_event(&mut self, run_id: u64, event: TrainEvent) {
        let Some(run) = self.run.as_mut().filter(|r| r.id == run_id) else {
            return;
        };
        match event {
            TrainEvent::Started {
                total_steps,
                train_sentences,
                valid_sentences,
                parameters,
                notes,
                ..
            } => {
                run.started = Some(Started {
                    total_steps,
                    train_sentences,
                    valid_sentences,
                    parameters,
                    notes,
                });
                if run.phase == Phase::Preparing {
                    run.phase = Phase::Running;
                }
            }
            TrainEvent::Step(s) => {
                run.curve
                    .push([s.step as f64, s.loss, s.nll_per_token, s.kl]);
                run.last = Some(s);
            }
            TrainEvent::Valid(v) => run.valid.push((v.step as f64, v.ppl)),
            TrainEvent::Reconstructions { pairs, .. } => run.reconstructions = pairs,
            TrainEvent::Checkpoint { step, path } => run.checkpoint = Some((step, path)),
            TrainEvent::Paused(p) => {
                if run.phase != Phase::Stopping {
                    run.phase = if p { Phase::Paused } else { Phase::Running };
                }
            }
            TrainEvent::Finished(o) => run.phase = Phase::Finished(o),
        }
    }

    pub fn on_train_ended(&mut self, run_id: u64, error: Option<String>) {
        let Some(run) = self.run.as_mut().filter(|r| r.id == run_id) else {
            return;
        };
        if let Some(e) = error {
            run.phase = Phase::Failed(e);
        } else if run.active() {
            // Finished without a `Finished` event (cannot happen today); do not spin forever.
            run.phase = Phase::Failed("the training thread ended without a result".into());
        }
        if let Some(model) = self.adopt_later.take() {
            self.adopt(&model);
        }
    }
}

impl Tab for TrainState {
    fn help_rows() -> Vec<(String, String)> {
        keys::help_rows(KEYS)
    }

    fn key(&mut self, cx: &mut Ctx, key: KeyEvent) {
        self.on_key(cx, key)
    }

    fn reply(&mut self, cx: &mut Ctx, body: ReplyBody) -> Option<ReplyBody> {
        let _ = cx;
        Some(body)
    }

    fn render(&self, view: &View, area: Rect, buf: &mut Buffer) {
        render(self, view, area, buf)
    }

    fn hints(&self, view: &View) -> Vec<(&'static str, &'static str)> {
        TrainState::hints(self, view.model.caps)
    }

    fn typing(&self, _view: &View) -> bool {
        TrainState::typing(self)
    }

    fn paste_field(&mut self, cx: &mut Ctx) -> Option<&mut TextInput> {
        if self.editing.is_none() {
            cx.notice("to paste a setting, select it and press Enter to edit it first");
        }
        self.editing.as_mut()
    }

    fn activity(&self) -> Option<String> {
        TrainState::activity(self)
    }

    fn model_changed(&mut self, cx: &mut Ctx, _shown: bool) {
        self.adopt(cx.model);
    }

    fn quit_question(&self) -> Option<String> {
        TrainState::quit_question(self)
    }

    fn quitting(&mut self) {
        self.stop_for_quit()
    }
}

pub fn render(tab: &TrainState, app: &View, area: Rect, buf: &mut Buffer) {
    let form_w = 37.min(area.width / 2);
    let [form, right] =
        Layout::horizontal([Constraint::Length(form_w), Constraint::Min(0)]).areas(area);
    render_form(tab, app, form, buf);
    render_run(tab, app, right, buf);
}

fn render_form(tab: &TrainState, app: &View, area: Rect, buf: &mut Buffer) {
    let t = app.theme;
    let st = tab;
    let locked = st.running();
    let block = t.block(
        Line::from(vec![
            Span::styled(" Settings ", t.bold()),
            Span::styled(
                if locked {
                    "(locked while training) "
                } else {
                    ""
                },
                t.dim(),
            ),
        ]),
        !locked,
    );
    let inner = block.inner(area);
    block.render(area, buf);
    let kind = st.kind();
    let fields = st.fields();
    // The longest label shown and a space before its value.
    let label_w = fields
        .iter()
        .map(|f| f.label(kind).chars().count() as u16 + 1)
        .max()
        .unwrap_or(0)
        .max(15);
    // A short terminal shows the rows around the selected one, and says how many are hidden.
    let window = widgets::ListWindow::new(st.selected, fields.len(), inner.height as usize);
    let mut y = inner.y;
    if let Some(above) = window.above_line(0) {
        widgets::text(buf, inner, inner.x, y, &above, t.dim());
        y += 1;
    }
    for (i, field) in fields
        .iter()
        .enumerate()
        .skip(window.start)
        .take(window.count)
    {
        let selected = i == st.selected;
        let lstyle = if selected && !locked {
            t.cursor()
        } else {
            t.dim()
        };
        widgets::text(
            buf,
            inner,
            inner.x,
            y,
            &format!("{:<w$}", field.label(kind), w = label_w as usize - 1),
            lstyle,
        );
        let vx = inner.x + label_w;
        let vrect = Rect {
            x: vx,
            y,
            width: inner.width.saturating_sub(label_w),
            height: 1,
        };
        match (&st.editing, selected) {
            (Some(input), true) => input.render(buf, vrect, "", true, t),
            _ => {
                let v = st.value(*field);
                let fixed = st.fixed(*field).is_some();
                let v = if field.cycles() && !fixed {
                    format!("‹ {v} ›")
                } else {
                    tail(&v, vrect.width as usize)
                };
                // The opened checkpoint's settings, fixed while the run starts from it.
                let style = if fixed {
                    t.dim()
                } else if selected {
                    t.bold()
                } else {
                    t.plain()
                };
                widgets::text(buf, vrect, vx, y, &v, style);
            }
        }
        y += 1;
    }
    if let Some(below) = window.below_line(0) {
        widgets::text(buf, inner, inner.x, y, &below, t.dim());
        y += 1;
    }
    let y = y + 1;
    let help = if locked {
        vec![
            Line::from(Span::styled("p pause / resume", t.dim())),
            Line::from(Span::styled("x stop (saves a checkpoint)", t.dim())),
            Line::from(Span::styled("L load the checkpoint", t.dim())),
        ]
    } else {
        vec![
            Line::from(vec![
                Span::styled("s", t.accent()),
                Span::styled(" start training", t.bold()),
            ]),
            Line::from(Span::styled("Enter edit · ←/→ adjust · ↑/↓ field", t.dim())),
            Line::from(Span::styled("corpus: wordnet (bundled) or a path", t.dim())),
        ]
    };
    let mut help = help;
    if kind == TrainKind::Bow(BowFamily::Lsh) {
        help.push(Line::from(""));
        help.push(Line::from(Span::styled(
            "LSH draws random hyperplanes:",
            t.dim(),
        )));
        help.push(Line::from(Span::styled(
            "it has no training steps",
            t.dim(),
        )));
    }
    if y < inner.bottom() {
        widgets::lines(
            buf,
            Rect {
                y,
                height: inner.bottom() - y,
                ..inner
            },
            help,
        );
    }
}

/// The end of `s` if it is wider than `width` (paths are told apart by their file names).
fn tail(s: &str, width: usize) -> String {
    let n = s.chars().count();
    if n <= width || width < 2 {
        return s.to_string();
    }
    let rest: String = s.chars().skip(n - (width - 1)).collect();
    format!("…{rest}")
}

fn phase_text(run: &Run) -> (String, bool) {
    match &run.phase {
        Phase::Preparing => ("preparing the corpus and vocabulary…".into(), false),
        Phase::Running => ("running".into(), false),
        Phase::Paused => ("paused (p resumes)".into(), false),
        Phase::Stopping => ("stopping after this step, then saving…".into(), false),
        Phase::Finished(o) if o.saved_nothing() => (
            "stopped before a step finished · nothing saved".to_string(),
            false,
        ),
        Phase::Finished(o) if o.cancelled => (
            format!(
                "stopped after {} steps · checkpoint {}",
                o.steps_done,
                o.path.display()
            ),
            false,
        ),
        Phase::Finished(o) if run.job.steps() == 0 => (
            format!("hyperplanes drawn · checkpoint {}", o.path.display()),
            false,
        ),
        Phase::Finished(o) => (
            format!(
                "finished {} steps · checkpoint {}",
                o.steps_done,
                o.path.display()
            ),
            false,
        ),
        Phase::Failed(e) => (format!("failed: {e}"), true),
    }
}

fn render_run(tab: &TrainState, app: &View, area: Rect, buf: &mut Buffer) {
    let t = app.theme;
    let Some(run) = &tab.run else {
        let block = t.block(Line::from(Span::styled(" Training ", t.bold())), false);
        let inner = block.inner(area);
        block.render(area, buf);
        let mut lines = vec![
            Line::from("No run yet. Pick the settings on the left and press s."),
            Line::from(""),
            Line::from(Span::styled(
                format!(
                    "The run writes {} and keeps going while you explore the other tabs; L loads its checkpoint into them.",
                    tab.job().out().display()
                ),
                t.dim(),
            )),
        ];
        match &tab.opened {
            Some(o) if tab.from_opened => {
                lines.push(Line::from(""));
                lines.push(Line::from(Span::styled(
                    format!(
                        "It starts from the weights and vocabulary of {} (train --init), which it only reads; its kind and sizes are that checkpoint's.",
                        o.path.display()
                    ),
                    t.dim(),
                )));
            }
            Some(_) if !tab.bag_of_words => {
                lines.push(Line::from(""));
                lines.push(Line::from(Span::styled(
                    "start from: checkpoint fine-tunes the model opened here instead (train --init).",
                    t.dim(),
                )));
            }
            _ => {}
        }
        widgets::wrapped(buf, inner, lines);
        return;
    };
    let [status_a, charts_a, recon_a] = Layout::vertical([
        Constraint::Length(6),
        Constraint::Min(8),
        Constraint::Length(5),
    ])
    .areas(area);

    let (phase, failed) = phase_text(run);
    let block = t.block(
        Line::from(vec![
            Span::styled(format!(" Run {} ", run.id), t.bold()),
            Span::styled(
                format!("· {} → {} ", run.job.kind(), run.job.out().display()),
                t.dim(),
            ),
        ]),
        false,
    );
    let inner = block.inner(status_a);
    block.render(status_a, buf);
    let mut lines = vec![Line::from(Span::styled(
        phase,
        if failed { t.error() } else { t.accent() },
    ))];
    if let Some(s) = &run.last {
        let eta = if run.active() {
            format!(" · ETA {}", fmt_secs(s.eta_secs))
        } else {
            String::new()
        };
        lines.push(Line::from(vec![
            Span::raw(format!("step {}/{}{eta} · ", s.step, s.total_steps)),
            Span::styled(
                format!(
                    "{:.0} {}/s",
                    s.tokens_per_sec,
                    if run.job.is_bag_of_words() {
                        "words"
                    } else {
                        "tokens"
                    }
                ),
                t.bold(),
            ),
            Span::raw(format!(
                " · epoch {} · elapsed {}",
                s.epoch,
                fmt_secs(s.elapsed_secs)
            )),
        ]));
    } else if let Some(st) = &run.started {
        lines.push(Line::from(format!(
            "{} parameters · {} training / {} validation sentences",
            st.parameters, st.train_sentences, st.valid_sentences
        )));
    }
    if let Some((step, path)) = &run.checkpoint {
        lines.push(Line::from(Span::styled(
            format!("checkpoint at step {step}: {} (L loads it)", path.display()),
            t.dim(),
        )));
    }
    widgets::lines(buf, inner, lines);
    if inner.height >= 1 {
        let done = run.last.as_ref().map_or(0, |s| s.step) as f64;
        let total = run.job.steps().max(1) as f64;
        let ratio = match &run.phase {
            // LSH finishes without a step.
            Phase::Finished(o) if !o.cancelled => 1.0,
            _ => (done / total).clamp(0.0, 1.0),
        };
        Gauge::default()
            .ratio(ratio)
            .label(format!("{:.0}%", ratio * 100.0))
            .gauge_style(t.accent())
            .use_unicode(true)
            .render(
                Rect {
                    y: inner.bottom() - 1,
                    height: 1,
                    ..inner
                },
                buf,
            );
    }

    let [top, bottom] =
        Layout::vertical([Constraint::Fill(1), Constraint::Fill(1)]).areas(charts_a);
    let [c1, c2] = Layout::horizontal([Constraint::Fill(1), Constraint::Fill(1)]).areas(top);
    let [c3, c4] = Layout::horizontal([Constraint::Fill(1), Constraint::Fill(1)]).areas(bottom);
    let series = |k: usize| -> Vec<(f64, f64)> { run.curve.iter().map(|p| (p[0], p[k])).collect() };
    let bags = run.job.is_bag_of_words();
    let (nll_title, kl_title) = if bags {
        ("reconstruction NLL / word", "KL (nats / document)")
    } else {
        ("reconstruction NLL / token", "KL (nats / sentence)")
    };
    let waiting = if run.job.kind() == TrainKind::Bow(BowFamily::Lsh) {
        "LSH has no training steps"
    } else {
        "waiting…"
    };
    chart(app, c1, buf, "loss", &series(1), waiting);
    chart(app, c2, buf, nll_title, &series(2), waiting);
    // A kind without a KL term (lm, bottleneck) would chart a flat 0.
    if run.job.has_kl() {
        chart(app, c3, buf, kl_title, &series(3), waiting);
    } else {
        let none = format!("no KL term ({})", run.job.kind());
        chart(app, c3, buf, kl_title, &[], &none);
    }
    chart(
        app,
        c4,
        buf,
        "validation perplexity / word",
        &run.valid,
        waiting,
    );

    let block = t.block(
        Line::from(Span::styled(
            if bags {
                " Top words of validation documents "
            } else {
                " Reconstructions (validation, greedy) "
            },
            t.bold(),
        )),
        false,
    );
    let inner = block.inner(recon_a);
    block.render(recon_a, buf);
    let mut lines = Vec::new();
    let half = (inner.width as usize / 2).saturating_sub(3).max(8);
    for (src, out) in run.reconstructions.iter().take(inner.height as usize) {
        let src = if src.chars().count() > half {
            let cut: String = src.chars().take(half - 1).collect();
            format!("{cut}…")
        } else {
            src.clone()
        };
        lines.push(Line::from(vec![
            Span::raw(src),
            Span::styled("  →  ", t.dim()),
            Span::styled(out.clone(), t.bold()),
        ]));
    }
    if lines.is_empty() {
        lines.push(Line::from(Span::styled(
            format!(
                "(after the first validation, every {} steps)",
                run.job.valid_every()
            ),
            t.dim(),
        )));
    }
    widgets::lines(buf, inner, lines);
}

/// Averages `points` into at most `n` buckets so long runs draw as fast as short ones.
fn decimate(points: &[(f64, f64)], n: usize) -> Vec<(f64, f64)> {
    if points.len() <= n || n == 0 {
        return points.to_vec();
    }
    let per = points.len().div_ceil(n);
    points
        .chunks(per)
        .map(|c| {
            let k = c.len() as f64;
            (
                c.iter().map(|p| p.0).sum::<f64>() / k,
                c.iter().map(|p| p.1).sum::<f64>() / k,
            )
        })
        .collect()
}

fn chart(
    app: &View,
    area: Rect,
    buf: &mut Buffer,
    title: &str,
    points: &[(f64, f64)],
    waiting: &str,
) {
    let t = app.theme;
    let last = points.last().map(|p| p.1);
    let title = Line::from(vec![
        Span::styled(format!(" {title} "), t.bold()),
        Span::styled(
            last.map_or(String::new(), |v| format!("{v:.3} ")),
            t.accent(),
        ),
    ]);
    let block = t.block(title, false);
    if points.is_empty() {
        let inner = block.inner(area);
        block.render(area, buf);
        widgets::lines(
            buf,
            inner,
            vec![Line::from(Span::styled(waiting.to_string(), t.dim()))],
        );
        return;
    }
    let data = decimate(points, (area.width as usize * 2).max(2));
    let finite = data.iter().filter(|p| p.1.is_finite());
    let (x0, x1) = (
        data.first().map_or(0.0, |p| p.0),
        data.last().map_or(1.0, |p| p.0),
    );
    let (mut y0, mut y1) = finite.fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.1), b.max(p.1)));
    if y0 > y1 {
        (y0, y1) = (0.0, 1.0);
    }
    if (y1 - y0).abs() < 1e-9 {
        y0 -= 0.5;
        y1 += 0.5;
    }
    let x1 = if x1 <= x0 { x0 + 1.0 } else { x1 };
    let ds = Dataset::default()
        .marker(Marker::Braille)
        .graph_type(GraphType::Line)
        .style(if t.color {
            t.bar().add_modifier(Modifier::BOLD)
        } else {
            t.plain()
        })
        .data(&data);
    Chart::new(vec![ds])
        .block(block)
        .x_axis(
            Axis::default()
                .bounds([x0, x1])
                .labels([format!("{x0:.0}"), format!("{x1:.0}")])
                .style(t.dim()),
        )
        .y_axis(
            Axis::default()
                .bounds([y0, y1])
                .labels([format!("{y0:.2}"), format!("{y1:.2}")])
                .style(t.dim()),
        )
        .render(area, buf);
}
