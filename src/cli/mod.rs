//! The `latent-tui` command line: every subcommand, parsed by clap and run over the library.

pub mod bits;
pub mod bow;
pub mod cluster;
pub mod map;

use std::io::{BufRead, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use anyhow::{bail, Context, Result};
use candle_core::Device;
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde_json::json;

use self::bow::TrainKind;
use crate::checkpoint::Checkpoint;
use crate::coder::Coder;
use crate::corpus::{Corpus, LoadOptions, Split};
use crate::data::encode_examples;
use crate::engine::Engine;
use crate::eval::{evaluate, EvalOptions, EvalReport};
use crate::explore::{self, Prior};
use crate::model::decode::Strategy;
use crate::model::{Binarize, Summary};
use crate::printable::{shown, Shown};
use crate::train::{KlAnneal, TimeClock, TrainConfig, TrainControl, TrainEvent};
pub use crate::train_job::Interrupted;
use crate::train_job::TrainJob;

pub const DEFAULT_CHECKPOINT: &str = "checkpoints/binary.safetensors";

#[derive(Parser, Debug)]
#[command(
    name = "latent-tui",
    version,
    about = "Train, measure and explore the latent spaces of text autoencoders.",
    subcommand_precedence_over_arg = true
)]
pub struct Cli {
    /// Checkpoint to open in the explorer (default: checkpoints/binary.safetensors).
    pub checkpoint: Option<PathBuf>,
    /// Worker threads for the tensor kernels, 1 to 1024 (default: all cores).
    #[arg(long, global = true, value_parser = flags::threads)]
    pub threads: Option<usize>,
    /// Directory for the caches a checkpoint gets (corpus index, map, bit meanings) instead of
    /// beside the checkpoint; created if missing. Fresh caches beside the checkpoint (shipped
    /// ones) are still read when DIR has none, never written. Also the LATENT_TUI_CACHE
    /// environment variable. By default they go beside the checkpoint, or when its directory
    /// is not writable into $XDG_CACHE_HOME/latent-tui (~/.cache/latent-tui).
    #[arg(long, global = true, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Print a checkpoint's summary: model, vocabulary, training provenance.
    Info {
        /// The checkpoint (default: checkpoints/binary.safetensors).
        checkpoint: Option<PathBuf>,
        /// Print the config, provenance and tensor shapes as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Build a corpus: WordNet glosses and examples, or a synthetic one with known factors.
    Corpus {
        #[command(subcommand)]
        source: CorpusSource,
    },
    /// Train a model; every hyper-parameter is a flag (or comes from --config).
    Train(Box<TrainArgs>),
    /// Perplexity, NLL and KL on a split; bit and dimension statistics.
    Eval(EvalArgs),
    /// Sentences on stdin (one per line) → codes: JSON lines, bit strings, or a packed .npy.
    Encode {
        /// The checkpoint (default: checkpoints/binary.safetensors).
        checkpoint: Option<PathBuf>,
        /// How to read the code: rounded (bits / μ), mean (p / μ) or sample.
        #[arg(long, default_value = "rounded", value_parser = parse_code_mode)]
        mode: crate::model::CodeMode,
        /// Output, one answer per input line: `json` (one object per line: line, text, ids,
        /// code, p or std, kl; `error` instead of a code for a line without one), `bits` (one
        /// 0/1 string per line, empty for a line without a code, binary codes) or `packed` (a
        /// NumPy .npy file of uint8 rows, 8 bits per byte, least significant bit first: ready
        /// for faiss.IndexBinaryFlat; needs --out; a line without a code is a row of zeros,
        /// named on stderr).
        #[arg(long, value_enum, default_value_t = EncodeFormat::Json)]
        format: EncodeFormat,
        /// Write to this file instead of standard output (required by --format packed; `-`
        /// is standard output). An existing file is replaced only if it holds encode output.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Seed of the Bernoulli / Gaussian draws of `--mode sample`.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Replace a file at --out that does not hold encode output.
        #[arg(long)]
        force: bool,
        /// Add to each JSON line the sentence's exact negative log-likelihood under the code
        /// written (`nll`, nats, its tokens and <eos>; a bag-of-words model: the document's)
        /// and, for sequence models, its perplexity per word (`ppl`).
        #[arg(long)]
        nll: bool,
    },
    /// Codes on stdin (0/1 strings, JSON arrays, or `encode`'s JSON lines) → sentences.
    Decode {
        /// The checkpoint (default: checkpoints/binary.safetensors).
        checkpoint: Option<PathBuf>,
        #[command(flatten)]
        strategy: StrategyArgs,
        /// Keep greedy and beam decodings to words of the training corpus, as the explorer does
        /// by default (subword models; needs the corpus; sampling stays raw).
        #[arg(long)]
        real_words: bool,
        /// Print JSON lines instead of plain text.
        #[arg(long)]
        json: bool,
    },
    /// Rewrite a checkpoint, e.g. in half precision for shipping (`--half`).
    Convert {
        /// The checkpoint to read.
        input: PathBuf,
        /// Where to write the rewritten checkpoint.
        output: PathBuf,
        /// Store weights as f16 (half the size; a tensor with a weight beyond f16's ±65504 is
        /// kept in f32, and named).
        #[arg(long)]
        half: bool,
        /// Replace an existing OUTPUT that is not a checkpoint of the same training run.
        #[arg(long)]
        force: bool,
    },
    /// Measure training, encoding and scoring throughput on the reference configuration.
    Bench {
        /// Timed steps per measurement (with --interactive: five timed flips per step).
        #[arg(long, default_value_t = 20, value_parser = flags::count)]
        steps: usize,
        /// Untimed steps before measuring.
        #[arg(long, default_value_t = 3, value_parser = flags::count_or_zero)]
        warmup: usize,
        /// Time the explorer's reaction to a key press on the code instead: a bit flip (binary)
        /// or a dimension nudged up ½σ (continuous), then the greedy decoding and the bars (the
        /// perplexity under each bit flipped or each dimension moved up one σ).
        #[arg(long)]
        interactive: bool,
        /// Precision of the timed training steps: fp32, or bf16 products in the output layer and
        /// the GRUs (encoding and scoring are fp32 either way; not with --interactive).
        #[arg(long, default_value = "fp32", conflicts_with = "interactive")]
        precision: crate::model::Precision,
        /// Checkpoint for --interactive (default: checkpoints/binary.safetensors).
        #[arg(long)]
        checkpoint: Option<PathBuf>,
        /// Sentence for --interactive.
        #[arg(
            long,
            default_value = "a large dog ran across the wet field to catch the red ball"
        )]
        sentence: String,
    },
    /// Walk a random Hamming path (binary codes) or an interpolation (continuous codes) between
    /// two sentences.
    #[command(override_usage = "latent-tui path [OPTIONS] [CHECKPOINT] <A> <B>")]
    Path {
        /// [CHECKPOINT] A B: the checkpoint is optional (default:
        /// checkpoints/binary.safetensors); then sentence A, the start.
        #[arg(value_name = "CHECKPOINT|A")]
        first: String,
        /// Sentence B, the end (sentence A when a checkpoint is given).
        #[arg(value_name = "A|B")]
        second: String,
        /// Sentence B, when a checkpoint is given.
        #[arg(value_name = "B")]
        third: Option<String>,
        /// Seed of the random Hamming path (binary codes; default 0).
        #[arg(long)]
        seed: Option<u64>,
        /// Interpolation steps for continuous codes (1 to 1000; default 8).
        #[arg(long)]
        steps: Option<usize>,
        /// Spherical instead of linear interpolation (continuous codes).
        #[arg(long)]
        slerp: bool,
        /// Keep each point's decoding to words of the training corpus, as the explorer does by
        /// default (subword models; needs the corpus).
        #[arg(long)]
        real_words: bool,
        /// Print JSON instead of plain text.
        #[arg(long)]
        json: bool,
    },
    /// Decode samples from the prior.
    Sample {
        /// The checkpoint (default: checkpoints/binary.safetensors).
        checkpoint: Option<PathBuf>,
        /// Samples to draw; they are printed as they are decoded.
        #[arg(short = 'n', long, default_value_t = 10, value_parser = flags::count)]
        count: usize,
        /// Seed of the prior draws (same seed, same samples as the Sample tab).
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Temperature: σ of the gaussian prior N(0, t²I), or of word sampling for `lm`
        /// (binary priors have none) [default: 1]
        #[arg(long, value_parser = parse_temperature)]
        temperature: Option<f32>,
        /// Binary prior: `uniform` bits, or each bit drawn with its corpus `means`
        /// [default: uniform]
        #[arg(long, value_enum)]
        prior: Option<crate::coder::PriorChoice>,
        /// Keep each sample's decoding to words of the training corpus, as the explorer does by
        /// default (subword models; needs the corpus; an `lm`'s word sampling stays raw).
        #[arg(long)]
        real_words: bool,
        /// Print JSON instead of plain text.
        #[arg(long)]
        json: bool,
    },
    /// Flip bits of a sentence's code: decodings and per-bit perplexities.
    #[command(override_usage = "latent-tui flip [OPTIONS] [CHECKPOINT] <SENTENCE>")]
    Flip {
        /// [CHECKPOINT] SENTENCE: the checkpoint is optional (default:
        /// checkpoints/binary.safetensors).
        #[arg(value_name = "CHECKPOINT|SENTENCE")]
        first: String,
        /// The sentence, when a checkpoint is given.
        #[arg(value_name = "SENTENCE")]
        second: Option<String>,
        /// Comma-separated bit indices to flip one at a time (default: none, just the bars).
        #[arg(long, value_delimiter = ',')]
        bits: Vec<usize>,
        /// Keep the decodings to words of the training corpus, as the explorer does by default
        /// (subword models; needs the corpus).
        #[arg(long)]
        real_words: bool,
        /// Print JSON instead of plain text.
        #[arg(long)]
        json: bool,
    },
    /// What each bit (dimension) means: the words and labels of entries with it on vs off, and
    /// what flipping it does to greedy decodings; cached beside the checkpoint (or in
    /// --cache-dir).
    Bits(self::bits::BitsArgs),
    /// The corpus map: a neighbour-preserving 2-D layout of the indexed train split (cached
    /// beside the checkpoint, or in --cache-dir), as TSV (--out), PNG (--png) and scores
    /// (--score).
    #[command(
        override_usage = "latent-tui map [OPTIONS] [CHECKPOINT] [--out map.tsv] [--png map.png] [--score]"
    )]
    Map(self::map::MapArgs),
    #[command(flatten)]
    Bow(self::bow::BowCommand),
    #[command(flatten)]
    Structure(self::cluster::StructureCommand),
}

#[derive(Subcommand, Debug)]
pub enum CorpusSource {
    /// Convert WordNet's data files (Debian package wordnet-base) into train/valid/test TSV.
    Wordnet {
        /// Directory holding data.noun, data.verb, data.adj, data.adv.
        #[arg(default_value = "/usr/share/wordnet")]
        dir: PathBuf,
        /// Directory to write train/valid/test.tsv.gz and LICENSE to (replaced only once the
        /// new files are complete).
        #[arg(long, default_value = "assets/wordnet")]
        out: PathBuf,
    },
    /// Write a synthetic corpus with six independent, known factors (subject, verb, adjective,
    /// object, place, time): train/valid/test.tsv, each line `factor values<TAB>sentence`.
    Factors {
        /// Directory to write train.tsv, valid.tsv and test.tsv to.
        #[arg(long)]
        out: PathBuf,
        /// Seed of the draw (the same seed and sizes give the same files).
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Training sentences.
        #[arg(long, default_value_t = 20_000, value_parser = flags::count)]
        train: usize,
        /// Validation sentences.
        #[arg(long, default_value_t = 1_000, value_parser = flags::count)]
        valid: usize,
        /// Test sentences.
        #[arg(long, default_value_t = 1_000, value_parser = flags::count)]
        test: usize,
    },
}

#[derive(Args, Debug, Clone)]
pub struct StrategyArgs {
    /// Beam search with this width, 1 to 256 (default: greedy).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=MAX_BEAM as u64), conflicts_with = "sample")]
    pub beam: Option<u64>,
    /// The beam's length-penalty exponent α: hypotheses rank by summed log-probability over
    /// ((5 + length) / 6)^α (GNMT); 0 ranks by the plain sum, which favours short decodings
    /// (with --beam).
    #[arg(long, default_value_t = crate::model::decode::DEFAULT_LENGTH_PENALTY, value_parser = parse_length_penalty, requires = "beam")]
    pub length_penalty: f64,
    /// Sample words instead of taking the most likely.
    #[arg(long)]
    pub sample: bool,
    /// Temperature of word sampling (with --sample).
    #[arg(long, default_value_t = 1.0, value_parser = parse_word_temperature, requires = "sample")]
    pub temperature: f64,
    /// Seed of word sampling (with --sample).
    #[arg(long, default_value_t = 0, requires = "sample")]
    pub seed: u64,
}

/// Widest beam `decode --beam` accepts: each step scores every word for every beam.
pub const MAX_BEAM: usize = 256;
/// Most interpolation steps `path --steps` accepts.
pub const MAX_PATH_STEPS: usize = 1000;

/// Every numeric flag goes through one of these parsers (or a range): a clear one-line error
/// for 0 where 0 means nothing, for negative, NaN, infinite and absurdly large values, before
/// any work starts (issue 23, item 10; `tests/hardening.rs` walks every flag).
pub mod flags {
    /// Largest count any flag accepts (sentences, entries, iterations…).
    pub const MAX_COUNT: usize = u32::MAX as usize;
    /// Most worker threads `--threads` accepts.
    pub const MAX_THREADS: usize = 1024;
    /// Most posterior samples per sentence `search --samples` draws (samples² pairs each).
    pub const MAX_SAMPLES: usize = 1000;
    /// Most passes `--epochs` asks for.
    pub const MAX_EPOCHS: f64 = 100_000.0;
    /// Largest weight (KL, MI, decorrelation, supervision) or clipping norm.
    pub const MAX_WEIGHT: f64 = 1e6;

    fn number<T: std::str::FromStr>(s: &str) -> Result<T, String> {
        s.trim()
            .parse()
            .map_err(|_| format!("`{s}` is not a number of the right kind"))
    }

    fn whole(s: &str, min: usize, max: usize) -> Result<usize, String> {
        let n: usize = number(s)?;
        if n < min || n > max {
            return Err(format!("{n} is outside {min}..={max}"));
        }
        Ok(n)
    }

    fn real(s: &str, min: f64, max: f64, min_open: bool) -> Result<f64, String> {
        let x: f64 = number(s)?;
        let low_ok = if min_open { x > min } else { x >= min };
        if !x.is_finite() || !low_ok || x > max {
            let low = if min_open { "above" } else { "at least" };
            return Err(format!(
                "{s} is not a finite number {low} {min} and at most {max}"
            ));
        }
        Ok(x)
    }

    /// A layer width or a code size (`--hidden-dim`, `--bits`): 1 to the largest a model may
    /// declare ([`crate::model::MAX_DIM`]).
    pub fn dim(s: &str) -> Result<usize, String> {
        whole(s, 1, crate::model::MAX_DIM)
    }

    /// `--batch-tokens`: 1 to [`crate::train::MAX_BATCH_TOKENS`].
    pub fn batch_tokens(s: &str) -> Result<usize, String> {
        whole(s, 1, crate::train::MAX_BATCH_TOKENS)
    }

    /// `--max-batch`: 1 to [`crate::train::MAX_BATCH_SENTENCES`].
    pub fn max_batch(s: &str) -> Result<usize, String> {
        whole(s, 1, crate::train::MAX_BATCH_SENTENCES)
    }

    /// Restarts of a clustering (`cluster --restarts`): 1 to 1,000.
    pub fn restarts(s: &str) -> Result<usize, String> {
        whole(s, 1, 1000)
    }

    /// Neighbours per entry of a map's score (`map --k`): 1 to 1,000.
    pub fn neighbours(s: &str) -> Result<usize, String> {
        whole(s, 1, 1000)
    }

    /// Documents per bag-of-words training batch: 1 to [`crate::bow::train::MAX_BATCH_DOCS`].
    pub fn bow_batch(s: &str) -> Result<usize, String> {
        whole(s, 1, crate::bow::train::MAX_BATCH_DOCS)
    }

    /// A count: 1 to [`MAX_COUNT`].
    pub fn count(s: &str) -> Result<usize, String> {
        whole(s, 1, MAX_COUNT)
    }

    /// A number of training steps (`--steps`): 1 to [`MAX_COUNT`].
    pub fn steps(s: &str) -> Result<u64, String> {
        whole(s, 1, MAX_COUNT).map(|n| n as u64)
    }

    /// A step number or interval where 0 means "none" (`--warmup-steps`, `--valid-every`…):
    /// 0 to [`MAX_COUNT`].
    pub fn steps_or_zero(s: &str) -> Result<u64, String> {
        whole(s, 0, MAX_COUNT).map(|n| n as u64)
    }

    /// A count where 0 means "none" (or "skip"): 0 to [`MAX_COUNT`].
    pub fn count_or_zero(s: &str) -> Result<usize, String> {
        whole(s, 0, MAX_COUNT)
    }

    /// `--threads`: 1 to [`MAX_THREADS`].
    pub fn threads(s: &str) -> Result<usize, String> {
        whole(s, 1, MAX_THREADS)
    }

    /// `search --samples`: 1 to [`MAX_SAMPLES`].
    pub fn samples(s: &str) -> Result<usize, String> {
        whole(s, 1, MAX_SAMPLES)
    }

    /// `--epochs`: above 0, at most [`MAX_EPOCHS`].
    pub fn epochs(s: &str) -> Result<f64, String> {
        real(s, 0.0, MAX_EPOCHS, true)
    }

    /// A learning rate: above 0, at most [`crate::train::MAX_LR`].
    pub fn learning_rate(s: &str) -> Result<f64, String> {
        real(s, 0.0, crate::train::MAX_LR, true)
    }

    /// A weight or norm where 0 turns the term off: 0 to [`MAX_WEIGHT`].
    pub fn weight(s: &str) -> Result<f64, String> {
        real(s, 0.0, MAX_WEIGHT, false)
    }

    /// `--free-bits`: 0 (off) to [`crate::train::MAX_FREE_BITS`] nats.
    pub fn free_bits(s: &str) -> Result<f64, String> {
        real(s, 0.0, crate::train::MAX_FREE_BITS, false)
    }

    /// A weight as f32 (`--radius`).
    pub fn weight_f32(s: &str) -> Result<f32, String> {
        weight(s).map(|x| x as f32)
    }
}

/// Highest temperature accepted: far beyond it every distribution is flat.
pub const MAX_TEMPERATURE: f64 = 1000.0;

/// A prior temperature: finite and not negative (0 gives the prior's mean).
fn parse_temperature(s: &str) -> std::result::Result<f32, String> {
    let t: f32 = s.parse().map_err(|_| format!("`{s}` is not a number"))?;
    if !t.is_finite() || !(0.0..=MAX_TEMPERATURE as f32).contains(&t) {
        return Err(format!(
            "the temperature must be a finite number within 0..={MAX_TEMPERATURE}, got {s}"
        ));
    }
    Ok(t)
}

/// A word-sampling temperature: finite and positive (it divides the logits).
fn parse_word_temperature(s: &str) -> std::result::Result<f64, String> {
    let t: f64 = s.parse().map_err(|_| format!("`{s}` is not a number"))?;
    if !t.is_finite() || t <= 0.0 || t > MAX_TEMPERATURE {
        return Err(format!(
            "the temperature must be a finite number above 0 and at most {MAX_TEMPERATURE}, got {s}"
        ));
    }
    Ok(t)
}

/// A beam length-penalty exponent: finite, within 0..=5.
fn parse_length_penalty(s: &str) -> std::result::Result<f64, String> {
    let a: f64 = s.parse().map_err(|_| format!("`{s}` is not a number"))?;
    if !(0.0..=5.0).contains(&a) {
        return Err(format!(
            "the length penalty must be within 0 and 5, got {s}"
        ));
    }
    Ok(a)
}

impl StrategyArgs {
    fn strategy(&self) -> Strategy {
        match (self.beam, self.sample) {
            (Some(width), _) => Strategy::Beam {
                width: width as usize,
                length_penalty: self.length_penalty,
            },
            (None, true) => Strategy::Sample {
                temperature: self.temperature,
            },
            _ => Strategy::Greedy,
        }
    }
}

/// How `encode` writes codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum EncodeFormat {
    /// One JSON object per line.
    Json,
    /// One 0/1 string per line (binary codes).
    Bits,
    /// A NumPy .npy file of uint8 rows (needs --out).
    Packed,
}

impl std::fmt::Display for EncodeFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            EncodeFormat::Json => "json",
            EncodeFormat::Bits => "bits",
            EncodeFormat::Packed => "packed",
        })
    }
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// The checkpoint (default: checkpoints/binary.safetensors).
    pub checkpoint: Option<PathBuf>,
    /// The split to evaluate: train, valid or test.
    #[arg(long, default_value = "test")]
    pub split: Split,
    /// Corpus to evaluate on (default: the one the checkpoint was trained on, when it is the
    /// bundled one or its file is still where training read it).
    #[arg(long)]
    pub corpus: Option<String>,
    /// Use only the first N sentences of the split.
    #[arg(long, value_parser = flags::count)]
    pub max_sentences: Option<usize>,
    /// Sentences used for the flip-one-bit analysis (0 skips it).
    #[arg(long, default_value_t = 1000, value_parser = flags::count_or_zero)]
    pub flip_sentences: usize,
    /// Sentences decoded greedily from their own code for the reconstruction figures (exact
    /// match, word accuracy, BLEU-4); 0 skips them.
    #[arg(long, default_value_t = 500, value_parser = flags::count_or_zero)]
    pub recon_sentences: usize,
    /// Decode the reconstructions by beam search of this width instead of greedily.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=MAX_BEAM as u64))]
    pub recon_beam: Option<u64>,
    /// The beam's length-penalty exponent α (with --recon-beam; 0: plain summed log-probability).
    #[arg(long, default_value_t = crate::model::decode::DEFAULT_LENGTH_PENALTY, value_parser = parse_length_penalty)]
    pub length_penalty: f64,
    /// Seed of the sampled codes.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Print the full report as JSON (with the bit correlation matrix).
    #[arg(long)]
    pub json: bool,
    /// Restrict the reconstruction's greedy decoding to words of the training corpus (subword
    /// models; a word-level model decodes only corpus words anyway).
    #[arg(long)]
    pub real_words: bool,
    /// Evaluate the lines of this file (one sentence per line) instead of a corpus split.
    #[arg(long, conflicts_with = "corpus")]
    pub sentences: Option<PathBuf>,
    /// On a factors corpus (`latent-tui corpus factors`): sentences whose single-bit flips are
    /// decoded and parsed for the disentanglement figures.
    #[arg(long, default_value_t = 500)]
    pub factor_flip_sentences: usize,
}

/// `train` flags. Each is optional so that `--config` and `--resume` can supply the value;
/// the defaults shown in `--help` come from [`TrainConfig::default`] (and the bag-of-words
/// configs where theirs differ), see [`command`].
#[derive(Args, Debug, Default)]
pub struct TrainArgs {
    /// Latent kind: lm, bottleneck, gaussian, binary, binary-vae, gumbel, gumbel-vae; or a
    /// bag-of-words model: nvdm, nash, lsh.
    #[arg(long)]
    pub kind: Option<TrainKind>,
    /// `wordnet` (bundled) or a path: a text/TSV file, or a directory with train/valid/test.
    #[arg(long)]
    pub corpus: Option<String>,
    /// Where to write the checkpoint (the optimiser state goes beside it).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// A JSON training config; flags given as well override its fields.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Continue the run saved at --out (its config, weights, vocabulary and optimiser state).
    #[arg(long)]
    pub resume: bool,
    /// Start a new run from this checkpoint's weights and vocabulary (fine-tuning, e.g. on
    /// another corpus): its architecture and training settings are the defaults, flags given
    /// as well override them, the step count starts from 0, and the file is only read.
    #[arg(long, conflicts_with = "resume")]
    pub init: Option<PathBuf>,
    /// Total optimiser steps (a resumed run continues up to this many).
    #[arg(long, value_parser = flags::steps)]
    pub steps: Option<u64>,
    /// Train for this many passes over the data instead of --steps.
    #[arg(long, value_parser = flags::epochs)]
    pub epochs: Option<f64>,
    /// Train for this long instead of --steps (e.g. 90s, 20m, 1h30m); with --steps too,
    /// whichever ends first. The last step validates and saves as usual.
    #[arg(long, value_parser = parse_duration_secs)]
    pub time: Option<f64>,
    /// Which clock --time reads: `wall` (elapsed) or `cpu` (this process's CPU time, every
    /// thread: runs given equal CPU budgets on a busy machine get equal work)
    #[arg(long, requires = "time")]
    pub time_clock: Option<TimeClock>,
    /// Largest vocabulary, special tokens included; rarer words become <unk>.
    #[arg(long)]
    pub vocab_size: Option<usize>,
    /// Words seen fewer times in the training split stay out of the vocabulary.
    #[arg(long)]
    pub min_frequency: Option<u64>,
    /// How text is cut into tokens: whole words (unknown words become <unk>) or subword
    /// pieces (bpe, unigram) that spell any word.
    #[arg(long, value_enum)]
    pub tokenizer: Option<crate::vocab::TokenizerKind>,
    /// Word embedding size (shared by encoder and decoder).
    #[arg(long)]
    pub embed_dim: Option<usize>,
    /// GRU hidden size (encoder per direction, and decoder).
    #[arg(long)]
    pub hidden_dim: Option<usize>,
    /// Bits (binary kinds) or dimensions.
    #[arg(long)]
    pub latent_dim: Option<usize>,
    /// Encoder summary: last, mean or attention.
    #[arg(long)]
    pub summary: Option<Summary>,
    /// Also feed z to every decoder step through a highway layer.
    #[arg(long)]
    pub z_every_step: bool,
    /// Temperature of the Gumbel-softmax relaxation (gumbel kinds).
    #[arg(long)]
    pub gumbel_temperature: Option<f64>,
    /// Longest sentence in tokens (1 to 4096); longer corpus lines are truncated to it.
    #[arg(long)]
    pub max_len: Option<usize>,
    /// Target tokens per batch: sentences of one length fill this budget (at most 65,536).
    #[arg(long, value_parser = flags::batch_tokens)]
    pub batch_tokens: Option<usize>,
    /// Most sentences per batch (at most 4,096).
    #[arg(long, value_parser = flags::max_batch)]
    pub max_batch: Option<usize>,
    /// Adam learning rate (above 0, at most 1000).
    #[arg(long, value_parser = flags::learning_rate)]
    pub lr: Option<f64>,
    /// How the learning rate decays after the warm-up: constant, linear or cosine (to
    /// --lr-floor × --lr at the last step).
    #[arg(long, value_enum)]
    pub lr_decay: Option<crate::train::LrDecay>,
    /// Steps over which the learning rate grows linearly from 0 to --lr (at most a tenth of
    /// the run).
    #[arg(long, value_parser = flags::steps_or_zero)]
    pub warmup_steps: Option<u64>,
    /// The learning rate at the last step, as a fraction of --lr (0 to 1).
    #[arg(long)]
    pub lr_floor: Option<f64>,
    /// Decoupled weight decay (AdamW).
    #[arg(long, value_parser = flags::weight)]
    pub weight_decay: Option<f64>,
    /// Clip the global gradient norm (0 disables).
    #[arg(long, value_parser = flags::weight)]
    pub clip_norm: Option<f64>,
    /// Probability that a decoder input word becomes <unk>.
    #[arg(long)]
    pub word_dropout: Option<f64>,
    /// Anneal word dropout linearly to this rate over --word-dropout-steps.
    #[arg(long)]
    pub word_dropout_end: Option<f64>,
    /// Steps over which word dropout moves to --word-dropout-end.
    #[arg(long, value_parser = flags::steps_or_zero)]
    pub word_dropout_steps: Option<u64>,
    /// Dropout on the decoder's non-recurrent connections (its input vectors and the states fed to the output layer), within [0, 1): a regulariser for small corpora and long runs
    #[arg(long)]
    pub dropout: Option<f64>,
    /// KL annealing: none, linear or logistic.
    #[arg(long)]
    pub kl_anneal: Option<KlAnneal>,
    /// Steps over which the KL weight grows to --kl-weight.
    #[arg(long, value_parser = flags::steps_or_zero)]
    pub kl_anneal_steps: Option<u64>,
    /// Weight of the KL term once annealing is done (kinds with a KL term).
    #[arg(long, value_parser = flags::weight)]
    pub kl_weight: Option<f64>,
    /// Free bits: a floor in nats under each latent dimension's KL in the loss, averaged over
    /// the batch (gaussian, binary-vae, gumbel-vae; 0 = off). Dimensions below it are not pulled
    /// towards the prior, so fewer collapse: see docs/recipe.md.
    #[arg(long, value_parser = flags::free_bits)]
    pub free_bits: Option<f64>,
    /// Weight of the mutual-information term (0: off).
    #[arg(long, value_parser = flags::weight)]
    pub mi_weight: Option<f64>,
    /// Weight of a penalty on correlated code dimensions (the batch's mean squared correlation
    /// between different bits or dimensions, added to the per-token loss); 0 = off. A
    /// regulariser against duplicated bits: see README for what it costs in perplexity.
    #[arg(long, value_parser = flags::weight)]
    pub decorrelation: Option<f64>,
    /// Which means and variances standardise the code in the decorrelation penalty: `batch`
    /// (the batch's own) or `running` (running estimates over the run's batches, which also
    /// sees bits that duplicate each other across batches of different sentence lengths).
    #[arg(long)]
    pub decorrelation_moments: Option<crate::train::DecorrelationMoments>,
    /// Leave the decorrelation penalty off for the first N steps, while the code forms (in
    /// the first ~1,000 steps of a binary run from scratch); it then grows over
    /// --decorrelation-warmup.
    #[arg(long, value_parser = flags::steps_or_zero)]
    pub decorrelation_start: Option<u64>,
    /// Steps over which the decorrelation weight then grows linearly to --decorrelation (0:
    /// the full weight at once).
    #[arg(long, value_parser = flags::steps_or_zero)]
    pub decorrelation_warmup: Option<u64>,
    /// Penalise only the pairs of dimensions whose correlation over the run (running
    /// estimate) is above this, each by its excess, instead of every pair's batch correlation
    /// (0 = every pair). Needs --decorrelation-moments running. A light touch for a finished
    /// code's few duplicated bits: see docs/recipe.md.
    #[arg(long)]
    pub decorrelation_above: Option<f64>,
    /// How binary bits are drawn while training (binary, binary-vae): `sample` z ~ Bernoulli(p)
    /// as in the binary autoencoder paper, or `round` p at ½ (deterministic; the decoder learns
    /// from the code a user sees).
    #[arg(long)]
    pub binarize: Option<Binarize>,
    /// How the training step's large matrix products (the output layer's and the GRUs') are
    /// computed: fp32, or bf16 (operands rounded to bfloat16, fp32 sums; weights, gradients and
    /// Adam state stay fp32). Default for a new run: bf16 where the CPU's AMX tiles run (~1.85×
    /// as fast), fp32 elsewhere. A resumed run keeps the precision it was started with unless
    /// this flag is given.
    #[arg(long)]
    pub precision: Option<crate::model::Precision>,
    /// Seed of initialisation, batch order, word dropout, dropout masks and latent noise.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Validate every N steps (and at the end; 0: only at the end).
    #[arg(long, value_parser = flags::steps_or_zero)]
    pub valid_every: Option<u64>,
    /// Validation sentences used during training (the first N of the split).
    #[arg(long)]
    pub valid_sentences: Option<usize>,
    /// Save a checkpoint every N steps (and at the end; 0: only at the end).
    #[arg(long, value_parser = flags::steps_or_zero)]
    pub checkpoint_every: Option<u64>,
    /// Store weights in half precision (half the file size; a tensor with a weight beyond
    /// f16's ±65504 is kept in f32, and named).
    #[arg(long)]
    pub half: bool,
    /// Print a plain progress line every N steps when stderr is not a terminal.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    pub log_every: u64,
    /// Replace an existing file at --out that this run did not write (without --resume, an
    /// existing checkpoint is refused).
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub bow: self::bow::BowTrainArgs,
}

/// The command line as clap sees it, with the `train` defaults shown in `--help`: they are
/// read from the configs themselves ([`TrainConfig::default`], and each bag-of-words kind's
/// where it differs), so help and behaviour cannot drift apart. The flags stay unset unless
/// given, so `--config` and `--resume` can still supply their values.
pub fn command() -> clap::Command {
    use crate::bow::train::{BowFamily, BowTrainConfig};
    use clap::CommandFactory;
    let seq = serde_json::to_value(TrainConfig::default()).expect("config serialises");
    let bow: Vec<(BowFamily, serde_json::Value)> = [BowFamily::Nvdm, BowFamily::Nash]
        .into_iter()
        .map(|f| {
            (
                f,
                serde_json::to_value(BowTrainConfig::for_family(f)).expect("config serialises"),
            )
        })
        .collect();
    let shown = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Null | serde_json::Value::Bool(_) => None,
        other => Some(other.to_string()),
    };
    Cli::command().mut_subcommand("train", |train| {
        let ids: Vec<String> = train
            .get_arguments()
            .map(|a| a.get_id().to_string())
            .collect();
        let mut train = train;
        for id in ids {
            // Its default depends on the kind: `train::default_free_bits`'s, per kind.
            if id == "free_bits" {
                use crate::model::LatentKind::{BinaryVae, Gaussian, GumbelVae};
                let d = crate::train::default_free_bits;
                let text = format!(
                    "[default for a run from scratch: {} for gaussian, {} for binary-vae, {} for gumbel-vae; a resumed or --init run keeps its own]",
                    d(Gaussian),
                    d(BinaryVae),
                    d(GumbelVae)
                );
                train = train.mut_arg("free_bits", |a| {
                    let help = a.get_help().map(|h| h.to_string()).unwrap_or_default();
                    a.help(format!("{help} {text}"))
                });
                continue;
            }
            let Some(default) = seq.get(&id).and_then(shown) else {
                continue;
            };
            let mut text = format!("[default: {default}");
            for (family, cfg) in &bow {
                if let Some(other) = cfg.get(&id).and_then(shown) {
                    if other != default {
                        text += &format!("; {family}: {other}");
                    }
                }
            }
            text += "]";
            train = train.mut_arg(id.as_str(), |a| {
                let help = a.get_help().map(|h| h.to_string()).unwrap_or_default();
                a.help(format!("{help} {text}"))
            });
        }
        train
    })
}

/// Parses the process arguments with [`command`].
pub fn parse() -> Cli {
    use clap::FromArgMatches;
    let matches = command().get_matches();
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

fn parse_code_mode(s: &str) -> std::result::Result<crate::model::CodeMode, String> {
    crate::model::CodeMode::ALL
        .into_iter()
        .find(|m| m.name() == s)
        .ok_or_else(|| format!("unknown code mode `{s}` (expected mean, rounded or sample)"))
}

/// The shipped checkpoint: relative to the working directory, else to the source tree.
pub fn default_checkpoint() -> PathBuf {
    shipped_checkpoint(DEFAULT_CHECKPOINT)
}

/// A shipped checkpoint (`checkpoints/NAME.safetensors`, given as that relative path), found
/// relative to the working directory, else to the source tree.
pub fn shipped_checkpoint(relative: &str) -> PathBuf {
    let here = PathBuf::from(relative);
    if here.exists() {
        return here;
    }
    let built = Path::new(env!("CARGO_MANIFEST_DIR")).join(relative);
    if built.exists() {
        built
    } else {
        here
    }
}

fn resolve(ckpt: &Option<PathBuf>) -> PathBuf {
    ckpt.clone().unwrap_or_else(default_checkpoint)
}

/// Sets the kernel thread count before any pool starts.
pub fn set_threads(n: usize) {
    std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build_global();
}

/// Makes `dir` (created if missing) the directory of every checkpoint cache
/// ([`crate::index::cache_path`]), before any is read or written.
pub fn set_cache_dir(dir: &Path) -> Result<()> {
    if dir.as_os_str().is_empty() {
        bail!("--cache-dir needs a directory");
    }
    if dir.exists() && !dir.is_dir() {
        bail!("--cache-dir {}: not a directory", dir.display());
    }
    std::fs::create_dir_all(dir)
        .with_context(|| format!("--cache-dir {}: cannot create it", dir.display()))?;
    std::env::set_var(crate::index::CACHE_ENV, dir);
    Ok(())
}

/// Keeps candle's own pool of element-wise workers out of the way, unless the user sized it
/// (`CANDLE_NUM_THREADS`): every heavy kernel here runs on rayon's pool, and candle's workers
/// spin between its (small) element-wise jobs on the same cores — on 2 cores that spinning
/// cost ~7% of a training step. Called first thing, before any thread starts.
pub fn keep_candle_pool_idle() {
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
}

pub fn run(cli: Cli) -> Result<()> {
    keep_candle_pool_idle();
    if let Some(n) = cli.threads {
        set_threads(n.max(1));
    }
    if let Some(dir) = &cli.cache_dir {
        set_cache_dir(dir)?;
    }
    match cli.command {
        None => {
            if let Some(p) = &cli.checkpoint {
                refuse_mistyped_command(p)?;
            }
            crate::tui::run(&resolve(&cli.checkpoint))
        }
        Some(Command::Info { checkpoint, json }) => info(&checkpoint, json),
        Some(Command::Bits(args)) => self::bits::run(args),
        Some(Command::Corpus {
            source: CorpusSource::Wordnet { dir, out },
        }) => {
            let report = crate::corpus::convert_wordnet(&dir, &out)?;
            println!(
                "wrote {} (train {}, valid {}, test {}; {} labels; {} duplicates and {} pieces outside 5–30 words dropped)",
                out.display(),
                report.per_split[0],
                report.per_split[1],
                report.per_split[2],
                report.labels,
                report.duplicates,
                report.out_of_range
            );
            Ok(())
        }
        Some(Command::Corpus {
            source:
                CorpusSource::Factors {
                    out,
                    seed,
                    train,
                    valid,
                    test,
                },
        }) => {
            let spec = crate::factors::CorpusSpec {
                train,
                valid,
                test,
                seed,
            };
            crate::factors::write_corpus(&out, &spec)?;
            println!(
                "wrote {} (train {train}, valid {valid}, test {test}; seed {seed}; {} factors, {} possible sentences)",
                out.display(),
                crate::factors::GRAMMAR.len(),
                crate::factors::GRAMMAR.sentences()
            );
            Ok(())
        }
        Some(Command::Train(args)) => train(*args),
        Some(Command::Eval(args)) => eval(args),
        Some(Command::Encode {
            checkpoint,
            mode,
            format,
            out,
            seed,
            force,
            nll,
        }) => encode(
            &checkpoint,
            EncodeOptions {
                mode,
                format,
                out: out.as_deref(),
                seed,
                force,
                nll,
            },
        ),
        Some(Command::Decode {
            checkpoint,
            strategy,
            real_words,
            json,
        }) => decode(&checkpoint, &strategy, real_words, json),
        Some(Command::Convert {
            input,
            output,
            half,
            force,
        }) => {
            // Converting a file onto itself replaces what it converts from (half precision
            // keeps ~3 digits per weight): only with --force.
            let same = |a: &Path, b: &Path| matches!((std::fs::canonicalize(a), std::fs::canonicalize(b)), (Ok(a), Ok(b)) if a == b);
            if same(&input, &output) && !force {
                bail!(
                    "`{}` is the checkpoint being converted: write to another file, or pass --force to replace it",
                    Shown(&output.display().to_string())
                );
            }
            // The output must be new, or a checkpoint of the same run (e.g. converted before).
            crate::checkpoint::check_output_target(
                &output,
                "a latent-tui checkpoint",
                &|_| false,
                true,
            )?;
            let c = Checkpoint::read(&input, &Device::Cpu)?;
            crate::checkpoint::check_output_target(
                &output,
                "a checkpoint of the same training run",
                &|p| crate::checkpoint::is_checkpoint_of_run(p, &c.provenance),
                force,
            )?;
            let tensors: Vec<(String, candle_core::Tensor)> = c.tensors.into_iter().collect();
            let storage = if half {
                crate::checkpoint::Storage::F16
            } else {
                crate::checkpoint::Storage::F32
            };
            crate::checkpoint::save(
                &output,
                &tensors,
                &c.config,
                &c.vocab,
                &c.provenance,
                storage,
            )?;
            let size = std::fs::metadata(&output)?.len();
            if half {
                if let Some(note) = crate::checkpoint::half_precision_note(&output) {
                    eprintln!("{note}");
                }
            }
            println!(
                "wrote {} ({:.1} MB, {:?})",
                output.display(),
                size as f64 / 1e6,
                storage
            );
            Ok(())
        }
        Some(Command::Bench {
            steps,
            warmup,
            interactive: true,
            checkpoint,
            sentence,
            ..
        }) => {
            let path = checkpoint.unwrap_or_else(default_checkpoint);
            let engine = Engine::load(&path, &candle_core::Device::Cpu)?;
            let report = crate::bench::interactive(
                &engine,
                &path.display().to_string(),
                &sentence,
                warmup,
                steps.max(1) * 5,
            )?;
            println!("{}", crate::printable::to_json_line(&report)?);
            Ok(())
        }
        Some(Command::Bench {
            steps,
            warmup,
            precision,
            ..
        }) => {
            let opts = crate::bench::BenchOptions {
                steps,
                warmup,
                precision,
                ..Default::default()
            };
            let report = crate::bench::run(&opts, &mut |m| eprintln!("{m}"))?;
            println!("{}", crate::printable::to_json_line(&report)?);
            Ok(())
        }
        Some(Command::Path {
            first,
            second,
            third,
            seed,
            steps,
            slerp,
            real_words,
            json,
        }) => {
            let (checkpoint, a, b) = match third {
                Some(b) => (Some(PathBuf::from(first)), second, b),
                None => {
                    not_a_checkpoint(&first, "path CKPT \"a sentence\" \"another\"")?;
                    (None, first, second)
                }
            };
            path(&checkpoint, &a, &b, seed, steps, slerp, real_words, json)
        }
        Some(Command::Sample {
            checkpoint,
            count,
            seed,
            temperature,
            prior,
            real_words,
            json,
        }) => sample(
            &checkpoint,
            count,
            seed,
            temperature,
            prior,
            real_words,
            json,
        ),
        Some(Command::Flip {
            first,
            second,
            bits,
            real_words,
            json,
        }) => {
            let (checkpoint, sentence) = match second {
                Some(sentence) => (Some(PathBuf::from(first)), sentence),
                None => {
                    not_a_checkpoint(&first, "flip CKPT \"a sentence\"")?;
                    (None, first)
                }
            };
            flip(&checkpoint, &sentence, &bits, real_words, json)
        }
        Some(Command::Map(args)) => self::map::run(args),
        Some(Command::Bow(command)) => self::bow::run(command),
        Some(Command::Structure(command)) => self::cluster::run(command),
    }
}

fn info(ckpt: &Option<PathBuf>, json: bool) -> Result<()> {
    let path = resolve(ckpt);
    if json {
        let c = Checkpoint::read(&path, &Device::Cpu)?;
        let shapes: serde_json::Map<String, serde_json::Value> = c
            .tensors
            .iter()
            .map(|(k, t)| (k.clone(), json!(t.dims())))
            .collect();
        println!(
            "{}",
            crate::printable::to_json_pretty(&json!({
                "path": path, "config": c.config, "provenance": c.provenance.to_json(c.config.has_kl())?,
                "vocab_size": c.vocab.len(), "stored_dtype": c.stored_dtype, "bytes": c.file_bytes, "tensors": shapes,
            }))?
        );
    } else {
        print!("{}", Coder::load(&path, &Device::Cpu)?.summary());
    }
    Ok(())
}

/// A resumed run keeps its vocabulary (`vocab_size`, `min_frequency` and, for sequence runs,
/// `tokenizer`): flags that would build another are refused, not ignored (and recorded in its
/// config as if they had been honoured).
pub(crate) fn refuse_another_vocabulary(
    args: &TrainArgs,
    out: &Path,
    vocab_size: usize,
    min_frequency: u64,
    tokenizer: Option<crate::vocab::TokenizerKind>,
) -> Result<()> {
    let other: Vec<String> = [
        args.vocab_size
            .filter(|&v| v != vocab_size)
            .map(|v| format!("--vocab-size {v}")),
        tokenizer.and_then(|own| {
            args.tokenizer
                .filter(|&t| t != own)
                .map(|t| format!("--tokenizer {}", t.name()))
        }),
        args.min_frequency
            .filter(|&m| m != min_frequency)
            .map(|m| format!("--min-frequency {m}")),
    ]
    .into_iter()
    .flatten()
    .collect();
    if other.is_empty() {
        return Ok(());
    }
    let tokenizer = tokenizer
        .map(|t| format!(", --tokenizer {}", t.name()))
        .unwrap_or_default();
    bail!(
        "cannot resume `{}`: the run keeps its vocabulary (--vocab-size {vocab_size}{tokenizer}, --min-frequency {min_frequency}); {} would build another: leave it out, or train a new run",
        out.display(),
        other.join(" ")
    )
}

/// A `--config` file's paths are untrusted like a checkpoint's: its corpus is checked as a
/// checkpoint's is (never a special or system file) unless `--corpus` replaces it, and it
/// cannot start from a checkpoint (`init`), which is the `--init` flag's to ask.
pub(crate) fn check_config_file(
    path: &Path,
    corpus: &str,
    sets_init: bool,
    corpus_given: bool,
) -> Result<()> {
    let named_by = format!(
        "the training config `{}`",
        shown(&path.display().to_string())
    );
    if sets_init {
        bail!("{named_by} sets `init`; pass --init CKPT on the command line instead");
    }
    if !corpus_given {
        crate::checkpoint::refuse_system_corpus(corpus, &named_by)?;
    }
    Ok(())
}

fn train_config(args: &TrainArgs) -> Result<TrainConfig> {
    // Whether the config file names a free-bits floor (its default depends on the kind).
    let mut config_sets_free_bits = false;
    // Whether it names a precision (a new run's default depends on the CPU).
    let mut config_sets_precision = false;
    let mut cfg = match &args.config {
        Some(p) => {
            let bytes = crate::checkpoint::read_regular_file(
                p,
                "training config",
                crate::checkpoint::max_bytes::TRAINING_CONFIG,
            )?;
            let text = String::from_utf8(bytes)
                .with_context(|| format!("training config {} is not UTF-8", p.display()))?;
            let value: serde_json::Value = serde_json::from_str(&text)
                .with_context(|| format!("{} is not a valid training config", p.display()))?;
            config_sets_free_bits = value.get("free_bits").is_some();
            config_sets_precision = value.get("precision").is_some();
            let mut cfg: TrainConfig = serde_json::from_value(value)
                .with_context(|| format!("{} is not a valid training config", p.display()))?;
            check_config_file(p, &cfg.corpus, cfg.init.is_some(), args.corpus.is_some())?;
            // Resuming is the --resume flag's to ask: a config copied from a resumed run's
            // `info --json` says `"resume": true` and would continue (and overwrite) its `out`.
            cfg.resume = false;
            cfg
        }
        None => TrainConfig::default(),
    };
    if args.resume {
        let out = args
            .out
            .clone()
            .or_else(|| args.config.as_ref().map(|_| cfg.out.clone()));
        let out = out.context("--resume needs --out (the checkpoint to continue)")?;
        if out.exists() {
            let (stored, provenance) = TrainJob::stored_with_provenance(&out)?;
            cfg = match stored {
                Some(TrainJob::Seq(stored)) => stored,
                Some(TrainJob::Bow(stored)) => bail!(
                    "`{}` is a `{}` run; resume it with --kind {} (or without --kind)",
                    out.display(),
                    stored.family,
                    stored.family
                ),
                None => bail!("the checkpoint has no training config to resume"),
            };
            if args.corpus.is_none() {
                cfg.corpus = crate::train_job::resume_corpus(&out, &provenance)?;
            }
            refuse_another_vocabulary(
                args,
                &out,
                cfg.vocab_size,
                cfg.min_frequency,
                Some(cfg.tokenizer),
            )?;
        }
        cfg.out = out;
        cfg.resume = true;
    }
    if let Some(init) = &args.init {
        cfg = init_config(init, cfg, args)?;
    }
    macro_rules! set {
        ($($field:ident),*) => { $( if let Some(v) = args.$field.clone() { cfg.$field = v; } )* };
    }
    if let Some(TrainKind::Seq(kind)) = args.kind {
        cfg.kind = kind;
    }
    set!(
        corpus,
        out,
        steps,
        vocab_size,
        min_frequency,
        tokenizer,
        embed_dim,
        hidden_dim,
        latent_dim,
        summary,
        gumbel_temperature,
        max_len,
        batch_tokens,
        max_batch,
        lr,
        lr_decay,
        warmup_steps,
        lr_floor,
        weight_decay,
        clip_norm,
        word_dropout,
        word_dropout_steps,
        dropout,
        kl_anneal,
        kl_anneal_steps,
        kl_weight,
        free_bits,
        mi_weight,
        decorrelation,
        decorrelation_moments,
        decorrelation_start,
        decorrelation_warmup,
        decorrelation_above,
        binarize,
        precision,
        seed,
        valid_every,
        valid_sentences,
        checkpoint_every
    );
    if args.free_bits.is_none() && !config_sets_free_bits && !cfg.resume && args.init.is_none() {
        cfg.free_bits = crate::train::default_free_bits(cfg.kind);
    }
    // A new run (or a --resume that finds nothing to resume and starts one) gets today's
    // default; a resumed run keeps its own.
    if args.precision.is_none() && !config_sets_precision && !(cfg.resume && cfg.out.exists()) {
        cfg.precision = crate::train::default_precision();
    }
    if args.word_dropout_end.is_some() {
        cfg.word_dropout_end = args.word_dropout_end;
    }
    if args.z_every_step {
        cfg.z_every_step = true;
    }
    if args.half {
        cfg.half = true;
    }
    if let Some(t) = args.time {
        cfg.time_limit_secs = Some(t);
        cfg.time_clock = args.time_clock.unwrap_or_default();
        if args.steps.is_none() && args.epochs.is_none() {
            // The clock decides; the step count only bounds it.
            cfg.steps = u64::MAX / 2;
        }
    }
    if let Some(epochs) = args.epochs {
        let corpus = Corpus::load(
            &cfg.corpus,
            &LoadOptions {
                min_words: 1,
                max_words: crate::train::MAX_LINE_WORDS,
            },
        )?;
        let lengths: Vec<usize> = corpus
            .train
            .iter()
            .map(|e| e.text.split(' ').count())
            .collect();
        let per_epoch =
            crate::data::length_batches(&lengths, cfg.batch_tokens, cfg.max_batch).len();
        cfg.steps = ((epochs * per_epoch as f64).ceil() as u64).max(1);
    }
    Ok(cfg)
}

/// The starting config of `train --init CKPT`: the run that made CKPT (its architecture,
/// tokenizer and training settings), or `base` with CKPT's architecture where it records no
/// run; steps count from 0 and the output is never CKPT itself.
fn init_config(init: &Path, base: TrainConfig, args: &TrainArgs) -> Result<TrainConfig> {
    let ckpt = crate::checkpoint::Checkpoint::read(init, &Device::Cpu)
        .with_context(|| format!("--init {}", init.display()))?;
    // The run keeps CKPT's vocabulary: flags that would build another are refused, not
    // ignored (and recorded in the new run's config as if they had been honoured).
    let (size, kind) = (ckpt.vocab.len(), ckpt.vocab.kind());
    let other: Vec<String> = [
        args.vocab_size
            .filter(|&v| v != size)
            .map(|v| format!("--vocab-size {v}")),
        args.tokenizer
            .filter(|&t| t != kind)
            .map(|t| format!("--tokenizer {}", t.name())),
        args.min_frequency.map(|m| format!("--min-frequency {m}")),
    ]
    .into_iter()
    .flatten()
    .collect();
    if !other.is_empty() {
        bail!(
            "--init {} keeps its vocabulary ({size} entries, {} tokenizer); {} would build another: leave it out, or train a new run without --init",
            init.display(),
            kind.name(),
            other.join(" ")
        );
    }
    let corpus_given = args.corpus.is_some();
    let model = ckpt.config.expect_seq().map_err(|e| {
        anyhow::anyhow!(
            "--init {}: {e}; only sequence models can be fine-tuned",
            init.display()
        )
    })?;
    let stored = ckpt
        .provenance
        .train_config
        .as_ref()
        .and_then(|v| serde_json::from_value::<TrainConfig>(v.clone()).ok());
    let mut cfg = crate::train::init_settings(init, model, stored, base);
    // Without --corpus the run goes on with CKPT's corpus. CKPT is untrusted input: the path
    // it names is read only through the checked lookup (not a system file, the corpus it
    // recorded), never as its stored config spells it.
    if !corpus_given {
        cfg.corpus = ckpt
            .provenance
            .checked_corpus_spec()
            .with_context(|| format!("--init {}", init.display()))?;
    }
    Ok(cfg)
}

/// "90s", "20m", "1h30m", "2h", or plain seconds → seconds.
pub fn parse_duration_secs(text: &str) -> std::result::Result<f64, String> {
    const YEAR: f64 = 365.0 * 24.0 * 3600.0;
    let t = text.trim();
    if let Ok(secs) = t.parse::<f64>() {
        return (secs > 0.0 && secs <= YEAR)
            .then_some(secs)
            .ok_or_else(|| format!("{text:?} is not a positive duration of at most a year"));
    }
    let mut total = 0.0;
    let mut number = String::new();
    for c in t.chars() {
        if c.is_ascii_digit() || c == '.' {
            number.push(c);
            continue;
        }
        let unit = match c {
            'h' => 3600.0,
            'm' => 60.0,
            's' => 1.0,
            _ => {
                return Err(format!(
                    "{text:?}: unknown unit {c:?} (use h, m, s: e.g. 20m, 1h30m)"
                ))
            }
        };
        let n: f64 = number
            .parse()
            .map_err(|_| format!("{text:?}: expected a number before {c:?}"))?;
        total += n * unit;
        number.clear();
    }
    if !number.is_empty() || total <= 0.0 || !total.is_finite() {
        return Err(format!("{text:?} is not a duration like 90s, 20m or 1h30m"));
    }
    if total > YEAR {
        return Err(format!("{text:?} is longer than a year"));
    }
    Ok(total)
}

fn fmt_secs(s: f64) -> String {
    let s = s.max(0.0) as u64;
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else {
        format!("{}m{:02}s", s / 60, s % 60)
    }
}

fn train(args: TrainArgs) -> Result<()> {
    let job = match self::bow::train_config(&args)? {
        Some(cfg) => TrainJob::Bow(cfg),
        None => TrainJob::Seq(train_config(&args)?),
    };
    let (kind, corpus, out) = (
        job.kind(),
        job.corpus().to_string(),
        job.out().to_path_buf(),
    );
    // The output is checked before any work: never a directory or device, never a file this
    // run did not write (a corpus, another run's checkpoint) unless --force; --resume
    // continues the checkpoint there. One run at a time writes it (the job takes its lock).
    let resume = job.resume();
    let objective_terms = match &job {
        TrainJob::Seq(c) => c.objective_terms(),
        TrainJob::Bow(_) => String::new(),
    };
    // An `lm` or a bottleneck has no KL: its progress lines leave the 0 out.
    let (has_kl, half) = (job.has_kl(), job.half());
    // The note on tensors a half-precision save kept in f32, once per set of them.
    let mut half_noted: Option<String> = None;
    crate::checkpoint::check_output_target(
        &out,
        if resume {
            "a latent-tui checkpoint to resume"
        } else {
            "a checkpoint of this run (pass --resume to continue it)"
        },
        &|p| resume && crate::checkpoint::is_checkpoint_file(p),
        args.force,
    )?;
    // The optimiser state written beside it (NAME.train-state.safetensors) is checked alike:
    // never a directory, never a file another program made; its longer name bounds --out's.
    let name_len = |p: &Path| p.file_name().map_or(0, |n| n.as_encoded_bytes().len());
    let state = crate::train::state_path(&out);
    let most = crate::checkpoint::max_output_name_len()
        .saturating_sub(name_len(&state) - name_len(&out).min(name_len(&state)));
    if name_len(&out) > most {
        bail!(
            "the --out file name is {} bytes; with the optimiser state `train` writes beside it ({}) it may be at most {most}",
            name_len(&out),
            Shown(&state.file_name().unwrap_or_default().to_string_lossy())
        );
    }
    crate::checkpoint::check_output_target(
        &state,
        "an optimiser state (what `train` keeps beside its checkpoint for --resume)",
        &crate::checkpoint::is_optimiser_state_file,
        args.force,
    )?;
    // The output is locked by the job itself (`TrainJob::run`), as it is for the Train tab.
    let steps = job.steps();
    // With --time and no --steps the step count is a formality: show steps done, not a total.
    let open_ended = job.time_limit_secs().is_some() && steps >= u64::MAX / 4;
    let total_label = |total: u64| {
        if open_ended {
            "the time limit".to_string()
        } else {
            total.to_string()
        }
    };
    let control = TrainControl::default();
    // Ctrl-C, SIGTERM (`kill`, a scheduler's stop) and SIGHUP stop after the current step and
    // save a checkpoint; a second one kills. The run then exits 128 + the signal's number.
    let stopped_by = stop_on_signals(&control);
    let (tx, rx) = mpsc::channel();
    let interactive = std::io::stderr().is_terminal();
    let bar = ProgressBar::new(steps);
    if interactive {
        bar.set_style(
            ProgressStyle::with_template(if open_ended {
                "{elapsed:>6} step {pos} {msg}"
            } else {
                "{bar:30} {pos}/{len} {msg}"
            })
            .expect("valid template"),
        );
    } else {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let say = |line: String| {
        if interactive {
            bar.println(line);
        } else {
            eprintln!("{line}");
        }
    };
    eprintln!(
        "training a `{kind}` model on `{}` → {}",
        Shown(&corpus),
        out.display()
    );
    let worker = {
        let control = control.clone();
        std::thread::spawn(move || job.run(tx, &control))
    };
    for event in rx {
        match event {
            TrainEvent::Started {
                start_step,
                total_steps,
                train_sentences,
                valid_sentences,
                batches_per_epoch,
                parameters,
                notes,
            } => {
                for n in notes {
                    say(shown(&n).into_owned());
                }
                say(format!(
                    "{parameters} parameters; {train_sentences} training / {valid_sentences} validation sentences; {batches_per_epoch} batches per epoch; steps {start_step}→{}",
                    total_label(total_steps)
                ));
                bar.set_position(start_step);
            }
            TrainEvent::Step(s) => {
                bar.set_position(s.step);
                // The loss is the NLL plus the run's regularisers: say how much of it they are,
                // or a penalty's share reads as a diverging run.
                let loss = if objective_terms.is_empty() {
                    format!("loss {:.3}", s.loss)
                } else {
                    format!(
                        "loss {:.3} (+{:.3} {objective_terms})",
                        s.loss,
                        s.loss - s.nll_per_token
                    )
                };
                let kl = if has_kl {
                    format!(" kl {:.2}", s.kl)
                } else {
                    String::new()
                };
                let msg = format!(
                    "{loss} nll/token {:.3}{kl} ppl/token {:.1} | {:.0} tok/s | ETA {}",
                    s.nll_per_token,
                    s.ppl,
                    s.tokens_per_sec,
                    fmt_secs(s.eta_secs)
                );
                if !interactive && (s.step % args.log_every.max(1) == 0 || s.step == 1) {
                    eprintln!(
                        "step {}/{} epoch {} {msg}",
                        s.step,
                        total_label(s.total_steps),
                        s.epoch
                    );
                }
                bar.set_message(msg);
            }
            TrainEvent::Valid(v) => say(if has_kl {
                format!(
                    "step {}: validation ppl {:.2} per word, rounded code (nll/word {:.3}, kl {:.2})",
                    v.step, v.ppl, v.nll_per_word, v.kl
                )
            } else {
                format!(
                    "step {}: validation ppl {:.2} per word (nll/word {:.3})",
                    v.step, v.ppl, v.nll_per_word
                )
            }),
            TrainEvent::Reconstructions { pairs, .. } => {
                for (a, b) in pairs {
                    say(format!("    {}\n  → {}", Shown(&a), Shown(&b)));
                }
            }
            TrainEvent::Checkpoint { step, path } => {
                say(format!("step {step}: saved {}", path.display()));
                if half {
                    let note = crate::checkpoint::half_precision_note(&path);
                    if note.is_some() && note != half_noted {
                        say(note.clone().unwrap_or_default());
                        half_noted = note;
                    }
                }
            }
            TrainEvent::Paused(p) => say(if p { "paused".into() } else { "resumed".into() }),
            TrainEvent::Finished(o) => {
                bar.finish_and_clear();
                if o.saved_nothing() && o.start_step > 0 {
                    eprintln!(
                        "stopped before a step finished; nothing saved ({} stays at step {})",
                        o.path.display(),
                        o.start_step
                    );
                } else if o.saved_nothing() {
                    eprintln!("stopped before a step finished; nothing saved");
                } else {
                    eprintln!(
                        "{} after {} steps; checkpoint {}",
                        if o.cancelled { "stopped" } else { "finished" },
                        o.steps_done,
                        o.path.display()
                    );
                }
            }
        }
    }
    bar.finish_and_clear();
    let outcome = worker
        .join()
        .map_err(|_| anyhow::anyhow!("the training thread panicked"))??;
    // A run a signal stopped is not a finished one: `train && eval` must not go on.
    match stopped_by.load(std::sync::atomic::Ordering::SeqCst) {
        sig if outcome.cancelled && sig > 0 => Err(Interrupted(128 + sig).into()),
        _ => Ok(()),
    }
}

/// Stops `control` on SIGINT, SIGTERM and SIGHUP (a second one exits at once, without saving),
/// from a thread of its own; returns where the first signal's number is recorded (0: none).
/// A signal the process inherited as ignored (`nohup` ignores SIGHUP; a shell's background job
/// SIGINT) stays ignored: the parent asked that it not stop the run.
fn stop_on_signals(control: &TrainControl) -> std::sync::Arc<std::sync::atomic::AtomicI32> {
    use std::sync::atomic::{AtomicI32, Ordering};
    let stopped_by = std::sync::Arc::new(AtomicI32::new(0));
    #[cfg(unix)]
    {
        let wanted: Vec<i32> = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP]
            .into_iter()
            .filter(|&sig| !inherited_as_ignored(sig))
            .collect();
        if let Ok(mut signals) = signal_hook::iterator::Signals::new(&wanted) {
            let control = control.clone();
            let stopped_by = stopped_by.clone();
            std::thread::spawn(move || {
                for sig in signals.forever() {
                    if control.is_cancelled() {
                        std::process::exit(128 + sig);
                    }
                    stopped_by.store(sig, Ordering::SeqCst);
                    eprintln!(
                        "\nstopping after this step and saving (Ctrl-C or the signal again aborts without saving)…"
                    );
                    control.cancel();
                }
            });
        }
    }
    stopped_by
}

/// Whether `sig`'s disposition, as this process inherited it, is to ignore it.
#[cfg(unix)]
fn inherited_as_ignored(sig: i32) -> bool {
    // SAFETY: sigaction with a null new action only reads the current one into `old`.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        libc::sigaction(sig, std::ptr::null(), &mut old) == 0 && old.sa_sigaction == libc::SIG_IGN
    }
}

fn eval(args: EvalArgs) -> Result<()> {
    let coder = Coder::load(&resolve(&args.checkpoint), &Device::Cpu)?;
    if coder.can_decode_words() {
        return self::bow::eval_words(&coder, &args);
    }
    if !coder.can_decode_text() {
        return Err(coder
            .cannot("be scored: it has no decoder; measure it with `latent-tui eval-retrieval`"));
    }
    let engine = coder.sequence_model("evaluate sentences")?;
    if !engine.kind().has_latent() && (args.real_words || args.recon_beam.is_some()) {
        bail!("--real-words and --recon-beam shape the reconstructions of codes; an `lm` has no code, so `eval` reconstructs nothing");
    }
    let split = args.split;
    let corpus = match &args.sentences {
        Some(path) => sentences_corpus(path)?,
        None => coder.corpus(args.corpus.as_deref())?,
    };
    let mut ids = encode_examples(&engine.vocab, corpus.split(split), engine.max_len());
    let mut factor_values = crate::tasks::factor_values_of(corpus.split(split), ids.len());
    if let Some(n) = args.max_sentences {
        ids.truncate(n);
    }
    if ids.is_empty() {
        bail!("the {split} split of `{}` has no sentences", corpus.name);
    }
    if let Some(v) = &mut factor_values {
        v.truncate(ids.len());
    }
    // The training corpus's words: invented words are counted against them, and --real-words
    // decodes with them. Without the corpus, say so (the figures still come, uncounted).
    let words = match crate::tasks::corpus_words(engine) {
        Ok(words) => Some(words),
        Err(e) if args.real_words => {
            return Err(e.context("--real-words needs the training corpus's words"))
        }
        Err(e) => {
            let why = format!("{e:#}");
            eprintln!("note: invented words are not counted: {}", shown(&why));
            None
        }
    };
    let opts = EvalOptions {
        flip_sentences: args.flip_sentences,
        recon_sentences: args.recon_sentences,
        recon_strategy: match args.recon_beam {
            Some(width) => Strategy::Beam {
                width: width as usize,
                length_penalty: args.length_penalty,
            },
            None => Strategy::Greedy,
        },
        seed: args.seed,
        recon: crate::eval::ReconOptions {
            real_words: words
                .as_ref()
                .filter(|_| args.real_words)
                .and_then(|w| w.trie.clone()),
            corpus_words: words.as_ref().map(|w| w.words.clone()),
        },
        factor_values,
        factor_flip_sentences: args.factor_flip_sentences,
    };
    let bar = ProgressBar::new(1000);
    let interactive = std::io::stderr().is_terminal();
    if interactive {
        bar.set_style(
            ProgressStyle::with_template("evaluating {bar:30} {percent}%").expect("valid template"),
        );
    } else {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
        eprintln!(
            "evaluating {} sentences of {}",
            ids.len(),
            match &args.sentences {
                Some(_) => format!("`{}`", Shown(&corpus.name)),
                None => format!("`{}` / {split}", Shown(&corpus.name)),
            }
        );
    }
    // Without a terminal (a log, a pipe), a plain line every tenth of the way.
    let mut tenths_said = 0;
    let report = evaluate(&engine.model, &engine.vocab, &ids, &opts, &mut |f| {
        bar.set_position((f * 1000.0) as u64);
        let tenths = (f * 10.0).floor() as i32;
        if !interactive && tenths > tenths_said && tenths < 10 {
            tenths_said = tenths;
            eprintln!("evaluating: {}%", tenths * 10);
        }
    })?;
    bar.finish_and_clear();
    if args.json {
        println!(
            "{}",
            crate::printable::to_json_pretty(
                &json!({"checkpoint": engine.path, "corpus": corpus.name, "split": split.to_string(), "report": report})
            )?
        );
    } else {
        // Lines of a file (--sentences) have no split: name the file alone.
        let source = match &args.sentences {
            Some(path) => format!("{}", Shown(&path.display().to_string())),
            None => format!("{} / {split}", Shown(&corpus.name)),
        };
        print_report(engine, &source, &report);
    }
    Ok(())
}

/// The disentanglement block of `eval` on a factors corpus.
fn print_factors(f: &crate::factors::FactorReport) {
    let t = &f.table;
    println!(
        "  factors ({} sentences, bits = {}): MIG mean {:.3}",
        t.sentences, f.bits_from, t.mig_mean
    );
    for (i, name) in t.factors.iter().enumerate() {
        println!(
            "    {name:<10} H {:.2} bits  MIG {:.3}  best bit {:3}: I/H(bit) {:.3}",
            t.factor_entropy[i], t.mig[i], t.best_bit[i], t.best_determined[i]
        );
    }
    println!(
        "  single-bit flips ({} sentences): {} of {} change the decoding; of those {:.1}% change exactly one factor ({} several, {} unparsable); exact reconstruction {:.1}%",
        f.flip_sentences,
        f.flips.changed,
        f.flips.flips,
        f.one_factor_share * 100.0,
        f.flips.several_factors,
        f.flips.unparsed,
        f.exact_reconstruction * 100.0
    );
}

/// `eval`'s text report; `source` names what was scored (`corpus / split`, or a file).
fn print_report(engine: &Engine, source: &str, r: &EvalReport) {
    println!("{}", engine.path.display());
    println!("  {}", engine.config.describe());
    println!(
        "  {source}: {} sentences, {} target tokens (tokens + <eos>), {} words (+ <eos>); perplexity is per word",
        r.sentences, r.tokens, r.words
    );
    for (mode, ppl) in &r.ppl {
        let label = if r.kind.has_latent() {
            format!("({mode:>7} code)")
        } else {
            "(no latent)".to_string()
        };
        println!(
            "  perplexity {label}: {ppl:9.3}   NLL/sentence {:.3} nats",
            r.nll_per_sentence[mode]
        );
    }
    match r.kl_per_sentence.nats() {
        Some(kl) => println!("  KL to the prior: {kl:.3} nats/sentence"),
        // Said, not printed as 0: a 0 reads as a posterior equal to its prior.
        None => println!(
            "  KL to the prior: none ({})",
            if r.kind.has_latent() {
                "a bottleneck's code is deterministic, with no prior"
            } else {
                "an `lm` has no code"
            }
        ),
    }
    if let Some(b) = &r.bits {
        let (lo, hi) = b
            .means
            .iter()
            .fold((f64::MAX, f64::MIN), |(l, h), &m| (l.min(m), h.max(m)));
        println!("  bit means (rounded code): min {lo:.3}, max {hi:.3}");
        // A bar or a meaning of a bit that never changes describes the decoder, not the code.
        let constant: Vec<String> = b.constant_bits().iter().map(usize::to_string).collect();
        if !constant.is_empty() {
            println!(
                "  constant bits (the same in every code of the split): {} of {}: {}",
                constant.len(),
                b.means.len(),
                constant.join(" ")
            );
        }
        if b.flip_sentences == 0 {
            println!("  flip one bit: skipped (--flip-sentences 0); bit means:");
            for (j, m) in b.means.iter().enumerate() {
                println!("    bit {j:3}: mean {m:.3}");
            }
        } else {
            println!(
                "  flip one bit ({} sentences, base ppl {:.3}):",
                b.flip_sentences, b.base_ppl
            );
            for (j, (p, g)) in b.flip_ppl.iter().zip(&b.flip_growth).enumerate() {
                println!(
                    "    bit {j:3}: mean {:.3}  ppl {p:9.3}  growth {:+7.2}%",
                    b.means[j],
                    g * 100.0
                );
            }
            // The summary the docs quote, without a script over the table above.
            let by_growth = |pick: fn(f64, f64) -> bool| {
                (b.flip_growth.iter().enumerate()).fold(
                    None,
                    |best: Option<(usize, f64)>, (j, &g)| match best {
                        Some((_, x)) if !pick(g, x) => best,
                        _ => Some((j, g)),
                    },
                )
            };
            if let (Some((lo_bit, lo)), Some((hi_bit, hi))) =
                (by_growth(|g, x| g < x), by_growth(|g, x| g > x))
            {
                let raising = b.flip_growth.iter().filter(|&&g| g > 0.0).count();
                println!(
                    "  flip growth: smallest {:+.1}% (bit {lo_bit}), largest {:+.1}% (bit {hi_bit}); {raising} of {} flips raise perplexity",
                    lo * 100.0,
                    hi * 100.0,
                    b.flip_growth.len()
                );
            }
        }
        let l = b.correlation.len();
        // The most correlated pair, if any pair co-varies at all (constant bits give 0 or NaN).
        let (mut pair, mut above) = (None::<(f64, usize, usize)>, 0);
        for i in 0..l {
            for j in i + 1..l {
                let c = b.correlation[i][j].abs();
                if c > pair.map_or(0.0, |p| p.0) {
                    pair = Some((c, i, j));
                }
                above += usize::from(c > 0.3);
            }
        }
        if l >= 2 {
            println!(
                "  code correlation: largest |off-diagonal| {}; {above} of {} pairs above 0.3 (full matrix with --json)",
                match pair {
                    Some((c, i, j)) => format!("{c:.3} (bits {i} and {j})"),
                    None => "0 (no two bits vary together)".to_string(),
                },
                l * (l - 1) / 2
            );
        }
    }
    if let Some(rc) = &r.reconstruction {
        println!(
            "  reconstruction ({} sentences, {}{} from the deterministic code): exact {:.1}%, words in place {:.1}%, BLEU-4 {:.3}, length {:.2}× the reference; input words unknown {:.2}%{}",
            rc.sentences,
            rc.decoding,
            if rc.real_words { ", real words only," } else { "" },
            rc.exact_match * 100.0,
            rc.word_accuracy * 100.0,
            rc.bleu4,
            rc.length_ratio,
            rc.input_unk_rate * 100.0,
            rc.invented_word_rate
                .map(|x| format!("; decoded words not in the training corpus {:.2}%", x * 100.0))
                .unwrap_or_default()
        );
        println!(
            "  repetition (a 3-gram three times or more): {:.1}% of reconstructions, {:.1}% of {} decodings along paths between their codes",
            rc.repetition_rate * 100.0,
            rc.path_repetition_rate * 100.0,
            rc.path_decodings
        );
    }
    if let Some(f) = &r.factors {
        print_factors(f);
    }
    if let Some(g) = &r.gaussian {
        println!(
            "  active units: {} of {} (Var[μ] > {})",
            g.active_units,
            g.kl_per_dim.len(),
            g.active_threshold
        );
        let kl: Vec<String> = g.kl_per_dim.iter().map(|k| format!("{k:.2}")).collect();
        println!("  KL per dimension: {}", kl.join(" "));
    }
}

/// The lines of a file as a corpus whose every split holds all of them (`eval --sentences`).
fn sentences_corpus(path: &Path) -> Result<Corpus> {
    // Bounded before reading, like any corpus: the file is read whole.
    let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    if size > crate::corpus::MAX_CORPUS_BYTES {
        bail!(
            "sentence file `{}` is larger than {} MB; take a sample",
            path.display(),
            crate::corpus::MAX_CORPUS_BYTES >> 20
        );
    }
    let bytes = crate::checkpoint::read_regular_file(
        path,
        "sentence file",
        crate::corpus::MAX_CORPUS_BYTES,
    )?;
    let name = path.display().to_string();
    let opts = LoadOptions {
        min_words: 1,
        max_words: usize::MAX,
    };
    Corpus::from_split_bytes(&name, [&bytes, &bytes, &bytes], &opts)
}

/// Standard input's lines as they arrive, each with its 1-based line number: the text, or
/// why there is none (a line that is not UTF-8), so that a command can answer every line.
/// A line is read up to [`MAX_STDIN_LINE`] bytes; a longer one is an error naming it.
pub(crate) fn stdin_lines_checked(
) -> impl Iterator<Item = Result<(usize, std::result::Result<String, String>)>> {
    let mut input = std::io::stdin().lock();
    let mut line_no = 0usize;
    let mut done = false;
    std::iter::from_fn(move || {
        if done {
            return None;
        }
        line_no += 1;
        let mut raw = Vec::new();
        let read = (&mut input)
            .take(MAX_STDIN_LINE as u64 + 1)
            .read_until(b'\n', &mut raw);
        match read {
            Err(e) => {
                done = true;
                Some(Err(anyhow::Error::new(e)
                    .context(format!("reading standard input, line {line_no}"))))
            }
            Ok(0) => None,
            Ok(_) => {
                if raw.last() == Some(&b'\n') {
                    raw.pop();
                } else if raw.len() > MAX_STDIN_LINE {
                    done = true;
                    return Some(Err(anyhow::anyhow!(
                        "line {line_no} of standard input is longer than {MAX_STDIN_LINE} bytes"
                    )));
                }
                Some(Ok((
                    line_no,
                    String::from_utf8(raw)
                        .map(|s| s.trim_end_matches('\r').to_string())
                        .map_err(|_| "not UTF-8".to_string()),
                )))
            }
        }
    })
}

/// Longest line read from standard input (`encode`, `decode`, `search -`): far beyond any
/// sentence a model reads (it keeps at most 4,096 tokens), so memory stays bounded.
pub const MAX_STDIN_LINE: usize = 1 << 20;

/// Sentences `encode` gives the model at once (grouped by length inside).
const ENCODE_CHUNK: usize = 1024;

/// A `--out` file written through a temporary sibling and renamed into place when complete,
/// or standard output (no `--out`, or `--out -`). A failed write names the file, and the
/// temporary is removed whatever stops the command (a full disk, an error, a panic).
enum Output {
    Stdout(std::io::StdoutLock<'static>),
    /// Standard output for a .npy, whose header is rewritten at the end: spooled to an unlinked
    /// temporary file (memory stays bounded however long the input), copied out at the end.
    Buffer(std::io::BufWriter<std::fs::File>),
    File {
        file: Option<std::io::BufWriter<NamedFile>>,
        tmp: PathBuf,
        path: PathBuf,
    },
}

/// A fresh temporary file for [`Output::Buffer`], already unlinked: it goes away with the
/// process, whatever ends it.
fn spool_file() -> Result<std::fs::File> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let path = std::env::temp_dir().join(format!(
        "latent-tui-encode-{}-{nanos}.npy.tmp",
        std::process::id()
    ));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .with_context(|| format!("creating the spool file {}", path.display()))?;
    std::fs::remove_file(&path)
        .with_context(|| format!("unlinking the spool file {}", path.display()))?;
    Ok(file)
}

/// A file whose write errors name it (a full disk otherwise says only "No space left").
struct NamedFile {
    file: std::fs::File,
    path: PathBuf,
}

impl NamedFile {
    fn named(&self, e: std::io::Error) -> std::io::Error {
        std::io::Error::new(e.kind(), format!("writing {}: {e}", self.path.display()))
    }
}

impl Write for NamedFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.file.write(buf).map_err(|e| self.named(e))
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush().map_err(|e| self.named(e))
    }
}

impl std::io::Seek for NamedFile {
    fn seek(&mut self, pos: std::io::SeekFrom) -> std::io::Result<u64> {
        self.file.seek(pos).map_err(|e| self.named(e))
    }
}

/// Whether `path` holds what `encode --format FORMAT` writes for codes `width` wide, so that it
/// may be replaced: a `.npy` of bytes `⌈width / 8⌉` to a row, lines of exactly `width` 0/1
/// digits, or JSON lines whose first names its input line and holds a code `width` wide (or an
/// error). Any other NumPy file, a JSON-lines dataset with a `code` field, a file holding `1`
/// is someone else's.
fn is_encode_output(path: &Path, format: EncodeFormat, width: usize) -> bool {
    use std::io::Read;
    // A JSON line of a wide code with its probabilities runs to tens of KB.
    let limit: u64 = if format == EncodeFormat::Json {
        1 << 20
    } else {
        4096
    };
    let mut head = Vec::new();
    if std::fs::File::open(path)
        .and_then(|f| f.take(limit).read_to_end(&mut head))
        .is_err()
    {
        return false;
    }
    if head.is_empty() {
        return true;
    }
    let whole = (head.len() as u64) < limit;
    match format {
        EncodeFormat::Packed => {
            let Some(text) = head
                .get(10..)
                .filter(|_| head.starts_with(b"\x93NUMPY\x01\x00"))
                .and_then(|rest| {
                    let len = u16::from_le_bytes([head[8], head[9]]) as usize;
                    std::str::from_utf8(rest.get(..len)?).ok()
                })
            else {
                return false;
            };
            text.contains("'descr': '|u1'") && text.contains(&format!(", {})", width.div_ceil(8)))
        }
        EncodeFormat::Bits => {
            let lines: Vec<&[u8]> = head.split(|&b| b == b'\n').collect();
            // The last piece is empty after a final newline, or cut by the 4 KB read.
            let (last, complete) = lines.split_last().expect("split gives one piece");
            !complete.is_empty()
                && complete
                    .iter()
                    .all(|l| l.len() == width && l.iter().all(|b| matches!(b, b'0' | b'1')))
                && (last.is_empty() || !whole && last.iter().all(|b| matches!(b, b'0' | b'1')))
        }
        EncodeFormat::Json => {
            let Some(end) = head.iter().position(|&b| b == b'\n') else {
                return false;
            };
            serde_json::from_slice::<serde_json::Value>(&head[..end]).is_ok_and(|v| {
                let code_width = match v.get("code") {
                    Some(serde_json::Value::String(s)) => Some(s.len()),
                    Some(serde_json::Value::Array(a)) => Some(a.len()),
                    _ => None,
                };
                v.get("line").is_some_and(|l| l.is_u64())
                    && (code_width == Some(width) || v.get("error").is_some())
            })
        }
    }
}

impl Output {
    fn open(out: Option<&Path>, format: EncodeFormat, width: usize, force: bool) -> Result<Self> {
        let path = match out {
            Some(p) if p != Path::new("-") => p,
            _ if format == EncodeFormat::Packed => {
                return Ok(Output::Buffer(std::io::BufWriter::new(spool_file()?)))
            }
            _ => return Ok(Output::Stdout(std::io::stdout().lock())),
        };
        crate::checkpoint::check_output_target(
            path,
            &format!("`encode --format {format}` output"),
            &|p| is_encode_output(p, format, width),
            force,
        )?;
        // Created as every save's temporary is: an interrupted run's left-over removed, the
        // replaced file's permissions kept.
        let (tmp, file) = crate::checkpoint::temporary_for(path)?;
        Ok(Output::File {
            file: Some(std::io::BufWriter::new(NamedFile {
                file,
                path: path.to_path_buf(),
            })),
            tmp,
            path: path.to_path_buf(),
        })
    }

    fn writer(&mut self) -> &mut dyn Write {
        match self {
            Output::Stdout(s) => s,
            Output::Buffer(b) => b,
            Output::File { file, .. } => file.as_mut().expect("open until finished"),
        }
    }

    /// Writes `bytes` at the start (the .npy header, once the row count is known).
    fn rewrite_start(&mut self, bytes: &[u8]) -> Result<()> {
        use std::io::Seek;
        let w: &mut dyn Write = match self {
            Output::Stdout(_) => bail!("standard output cannot be rewritten"),
            Output::Buffer(b) => {
                b.seek(std::io::SeekFrom::Start(0))?;
                b
            }
            Output::File { file, .. } => {
                let f = file.as_mut().expect("open until finished");
                f.seek(std::io::SeekFrom::Start(0))?;
                f
            }
        };
        w.write_all(bytes)?;
        Ok(())
    }

    fn finish(mut self) -> Result<()> {
        match &mut self {
            Output::Stdout(s) => Ok(s.flush()?),
            Output::Buffer(b) => {
                use std::io::Seek;
                b.flush()?;
                let spool = b.get_mut();
                spool.seek(std::io::SeekFrom::Start(0))?;
                let mut out = std::io::stdout().lock();
                std::io::copy(spool, &mut out)?;
                Ok(out.flush()?)
            }
            Output::File { file, tmp, path } => {
                let named = file
                    .take()
                    .expect("open until finished")
                    .into_inner()
                    .map_err(|e| e.into_error())?;
                named
                    .file
                    .sync_all()
                    .with_context(|| format!("writing {}", path.display()))?;
                std::fs::rename(&*tmp, &*path)
                    .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
                // Renamed: nothing left for Drop to remove.
                *tmp = PathBuf::new();
                Ok(())
            }
        }
    }
}

impl Drop for Output {
    fn drop(&mut self) {
        if let Output::File { file, tmp, .. } = self {
            // Unflushed bytes of a failed run are not worth another error.
            if let Some(f) = file.take() {
                let _ = f.into_parts();
            }
            if !tmp.as_os_str().is_empty() {
                let _ = std::fs::remove_file(&*tmp);
            }
        }
    }
}

/// The header of a NumPy .npy (format 1.0) file holding `rows` × `cols` uint8 values, always
/// 128 bytes, so it can be rewritten in place once the row count is known.
pub fn npy_u8_header(rows: usize, cols: usize) -> Vec<u8> {
    const TOTAL: usize = 128;
    let mut dict =
        format!("{{'descr': '|u1', 'fortran_order': False, 'shape': ({rows}, {cols}), }}");
    while dict.len() < TOTAL - 10 - 1 {
        dict.push(' ');
    }
    dict.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(dict.len() as u16).to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    debug_assert_eq!(out.len(), TOTAL);
    out
}

/// A code's bits packed 8 per byte, bit j in byte j / 8 at position j % 8 (least significant
/// first, NumPy's `unpackbits(bitorder="little")`), the last byte padded with zeros: the
/// layout faiss's binary indexes take.
pub fn pack_bytes(code: &[f32]) -> Vec<u8> {
    let mut out = vec![0u8; code.len().div_ceil(8)];
    for (j, &v) in code.iter().enumerate() {
        if v >= 0.5 {
            out[j / 8] |= 1 << (j % 8);
        }
    }
    out
}

/// `encode`'s flags.
struct EncodeOptions<'a> {
    mode: crate::model::CodeMode,
    format: EncodeFormat,
    out: Option<&'a Path>,
    seed: u64,
    force: bool,
    nll: bool,
}

/// The exact negative log-likelihood (nats) of the encoded text `ids` under `code`, and for a
/// sequence model its perplexity per word: the full-precision decoder, not the 8-bit output
/// layer behind the explorer's bars.
fn exact_nll(coder: &Coder, ids: &[u32], code: &[f32]) -> Result<(f64, Option<f64>)> {
    if let Ok(engine) = coder.sequence_model("score a sentence") {
        let nll = engine.score(&[code.to_vec()], ids)?[0] as f64;
        let words = (engine.vocab.word_count(ids) + 1) as f64;
        return Ok((nll, Some((nll / words).exp())));
    }
    // Bag-of-words models: the document's NLL, computed exactly.
    Ok((coder.code_effects(ids, code, &[])?.base, None))
}

fn encode(ckpt: &Option<PathBuf>, o: EncodeOptions<'_>) -> Result<()> {
    use crate::model::CodeMode;
    let EncodeOptions {
        mode,
        format,
        out: out_path,
        seed,
        force,
        nll,
    } = o;
    // Any model with an encoder: sentences, or bags of words (nash, nvdm, lsh).
    let coder = Coder::load(&resolve(ckpt), &Device::Cpu)?;
    if !coder.capabilities().encodes {
        bail!("an `lm` model has no encoder, so sentences have no code");
    }
    let binary = coder.is_binary();
    if format != EncodeFormat::Json {
        if !binary {
            bail!(
                "--format {format} writes bits; a `{}` model has continuous codes (use --format json)",
                coder.kind_name()
            );
        }
        if mode == CodeMode::Mean {
            bail!("--format {format} writes bits; --mode mean gives probabilities (use rounded or sample)");
        }
        if nll {
            bail!(
                "--nll adds a field to JSON lines; --format {format} has none (use --format json)"
            );
        }
    }
    if nll && !coder.can_score() {
        return Err(coder.cannot("score sentences (--nll): it has no decoder"));
    }
    if format == EncodeFormat::Packed && out_path.is_none() {
        bail!("--format packed writes a binary .npy file: name it with --out FILE (or --out - for standard output)");
    }
    let mut out = Output::open(out_path, format, coder.latent_dim(), force)?;
    let bytes_per_code = coder.latent_dim().div_ceil(8);
    if format == EncodeFormat::Packed {
        out.writer().write_all(&npy_u8_header(0, bytes_per_code))?;
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let mut rows = 0usize;
    let mut zero_rows = Vec::new();
    let no_words = if coder.can_decode_text() {
        "no words"
    } else {
        "no words the model knows (stop words and punctuation are left out of bags)"
    };
    // Input is read and encoded a chunk at a time, so memory stays bounded and output
    // follows input through a pipe. Every input line gets one answer, in order: a code, or
    // for a line without one (empty, not UTF-8, no words) an `error` field / an empty line.
    let mut lines = stdin_lines_checked().peekable();
    while lines.peek().is_some() {
        let mut numbered = Vec::with_capacity(ENCODE_CHUNK);
        for next in lines.by_ref().take(ENCODE_CHUNK) {
            numbered.push(next?);
        }
        let texts: Vec<&str> = numbered
            .iter()
            .filter_map(|(_, line)| line.as_deref().ok())
            .collect();
        let mut encoded = coder.encode_texts(&texts)?.into_iter();
        // Draws for --mode sample are taken in input order, as one sentence at a time would.
        for (line_no, line) in &numbered {
            let (text, sentence) = match line {
                Ok(text) => (Some(text), encoded.next().expect("one per UTF-8 line")),
                Err(_) => (None, None),
            };
            let Some(sentence) = sentence else {
                let why = match (line, text) {
                    (Err(why), _) => why.clone(),
                    (Ok(t), _) if t.trim().is_empty() => "an empty line".to_string(),
                    _ => no_words.to_string(),
                };
                let w = out.writer();
                match format {
                    EncodeFormat::Bits => writeln!(w)?,
                    EncodeFormat::Packed => {
                        w.write_all(&vec![0u8; bytes_per_code])?;
                        zero_rows.push(*line_no);
                        eprintln!("line {line_no}: {why}; its row is all zeros");
                    }
                    EncodeFormat::Json => {
                        let mut obj = json!({"line": line_no, "error": format!("no code: {why}")});
                        if let Some(t) = text {
                            obj["text"] = json!(t);
                        }
                        writeln!(w, "{}", crate::printable::to_json_line(&obj)?)?;
                    }
                }
                rows += 1;
                continue;
            };
            let enc = &sentence.encoding;
            let code: Vec<f32> = match mode {
                CodeMode::Rounded => enc.deterministic_code(binary),
                CodeMode::Mean => enc.mean.clone(),
                CodeMode::Sample if binary => explore::prior_samples(
                    &Prior::BitMeans(enc.mean.clone()),
                    enc.mean.len(),
                    1,
                    &mut rng,
                )
                .remove(0),
                CodeMode::Sample => match &enc.std {
                    Some(std) => {
                        let eps = explore::prior_samples(
                            &Prior::Gaussian { temperature: 1.0 },
                            enc.mean.len(),
                            1,
                            &mut rng,
                        )
                        .remove(0);
                        enc.mean
                            .iter()
                            .zip(std)
                            .zip(eps)
                            .map(|((m, s), e)| m + s * e)
                            .collect()
                    }
                    None => enc.mean.clone(),
                },
            };
            let scored = if nll {
                Some(exact_nll(&coder, &sentence.ids, &code)?)
            } else {
                None
            };
            let w = out.writer();
            match format {
                EncodeFormat::Bits => writeln!(w, "{}", explore::bit_string(&code))?,
                EncodeFormat::Packed => w.write_all(&pack_bytes(&code))?,
                EncodeFormat::Json => {
                    // No KL where the model has none (lsh's hashing, a bottleneck): null, not 0.
                    let kl = coder.config().has_kl().then_some(enc.kl);
                    let mut obj = json!({"line": line_no, "text": sentence.shown, "ids": sentence.ids, "kl": kl});
                    // Bits as a string; the mean mode's probabilities as numbers.
                    obj["code"] = explore::code_json(&code, binary && mode != CodeMode::Mean);
                    if binary {
                        obj["p"] = json!(enc.mean);
                    } else if let Some(s) = &enc.std {
                        obj["std"] = json!(s);
                    }
                    if !sentence.unknown.is_empty() {
                        obj["unknown"] = json!(sentence.unknown);
                    }
                    if sentence.truncated > 0 {
                        obj["truncated_words"] = json!(sentence.truncated);
                    }
                    if let Some((nll, ppl)) = scored {
                        obj["nll"] = json!(nll);
                        if let Some(ppl) = ppl {
                            obj["ppl"] = json!(ppl);
                        }
                    }
                    writeln!(w, "{}", crate::printable::to_json_line(&obj)?)?;
                }
            }
            rows += 1;
        }
    }
    if format == EncodeFormat::Packed {
        out.rewrite_start(&npy_u8_header(rows, bytes_per_code))?;
        eprintln!(
            "wrote {rows} codes of {} bits as {rows} × {bytes_per_code} uint8 → {}{}",
            coder.latent_dim(),
            out_path.expect("checked").display(),
            if zero_rows.is_empty() {
                String::new()
            } else {
                format!(
                    " ({} rows of zeros for lines without a code)",
                    zero_rows.len()
                )
            }
        );
    }
    out.finish()
}

/// Parses a code line: "0101…", a JSON array of numbers, or a JSON object with a `code` field.
fn parse_code_line(line: &str) -> Result<Vec<f32>> {
    let t = line.trim();
    if t.starts_with('{') || t.starts_with('[') {
        let v: serde_json::Value = serde_json::from_str(t).context("invalid JSON")?;
        let code = if v.is_object() {
            v.get("code")
                .cloned()
                .context("JSON object without a `code` field")?
        } else {
            v
        };
        return match code {
            serde_json::Value::String(s) => explore::parse_bits(&s).map_err(anyhow::Error::msg),
            serde_json::Value::Array(a) => a
                .iter()
                .map(|x| {
                    x.as_f64()
                        .map(|f| f as f32)
                        .context("code entries must be numbers")
                })
                .collect(),
            _ => bail!("`code` must be a bit string or an array of numbers"),
        };
    }
    explore::parse_bits(t).map_err(anyhow::Error::msg)
}

/// Largest |value| accepted in a continuous code: the prior is N(0, I), and far beyond a few
/// hundred σ the decoder's activations saturate into nothing meaningful.
pub const MAX_CODE_MAGNITUDE: f32 = 1000.0;

/// Rejects code values a decoder cannot make sense of: non-finite ones (1e308 read as f32 is
/// infinite), bits outside [0, 1], and continuous values beyond ±[`MAX_CODE_MAGNITUDE`].
fn check_code_values(code: &[f32], binary: bool) -> Result<()> {
    for (j, &v) in code.iter().enumerate() {
        if !v.is_finite() {
            bail!("code entry {j} is {v}: codes must be finite numbers");
        }
        if binary && !(0.0..=1.0).contains(&v) {
            bail!("code entry {j} is {v}: a binary code's entries are bits or probabilities in [0, 1]");
        }
        if !binary && v.abs() > MAX_CODE_MAGNITUDE {
            bail!(
                "code entry {j} is {v}: continuous codes must lie within ±{MAX_CODE_MAGNITUDE} (the prior is N(0, I))"
            );
        }
    }
    Ok(())
}

fn decode(
    ckpt: &Option<PathBuf>,
    strategy: &StrategyArgs,
    real_words: bool,
    json_out: bool,
) -> Result<()> {
    // Any model that decodes: sentences, or for nash and nvdm the decoder's top words.
    let coder = Coder::load(&resolve(ckpt), &Device::Cpu)?;
    if !coder.capabilities().decodes() {
        return Err(coder.cannot("decode codes: it has no decoder"));
    }
    if coder.latent_dim() == 0 {
        bail!(
            "the `{}` model has no codes to decode: `latent-tui sample` draws sentences from it",
            coder.kind_name()
        );
    }
    let words = real_words_of(&coder, real_words)?;
    let mut rng = StdRng::seed_from_u64(strategy.seed);
    let out = std::io::stdout();
    let mut out = out.lock();
    // Every input line gets its output line: a line without a valid code is answered in place
    // (JSON: its error; plain: an empty line, the reason on standard error), and the run fails
    // at the end when a line held a code that could not be read.
    let mut malformed = 0usize;
    for next in stdin_lines_checked() {
        let (line_no, line) = next?;
        // (the code read, its decoding) or (why there is none, whether the line was bad)
        let answer: std::result::Result<(Vec<f32>, String), (String, bool)> = match line {
            Err(_) => {
                if !json_out {
                    eprintln!("line {line_no}: not UTF-8");
                }
                Err(("not UTF-8".to_string(), false))
            }
            Ok(line) => {
                let given = line.trim().to_string();
                // Empty, or `encode`'s answer for a line it could not encode.
                let no_code = given.is_empty()
                    || serde_json::from_str::<serde_json::Value>(&given)
                        .is_ok_and(|v| v.get("code").is_none() && v.get("error").is_some());
                // (A line without a code is not parsed as one.)
                let code = (!no_code).then(|| {
                    parse_code_line(&line).and_then(|code| {
                        check_code_values(&code, coder.is_binary())?;
                        if code.len() != coder.latent_dim() {
                            bail!(
                                "the code has {} dimensions, the model expects {}",
                                code.len(),
                                coder.latent_dim()
                            );
                        }
                        Ok(code)
                    })
                });
                match code {
                    None => Err(("no code".to_string(), false)),
                    Some(Err(e)) => Err((format!("{e:#}"), true)),
                    Some(Ok(code)) => {
                        let text = coder
                            .decode_lines(
                                std::slice::from_ref(&code),
                                strategy.strategy(),
                                words.as_deref(),
                                &mut rng,
                            )?
                            .remove(0);
                        Ok((code, text))
                    }
                }
            }
        };
        match answer {
            Ok((code, text)) if json_out => {
                // The code as read: bits as a 0/1 string, as `encode` writes them;
                // probabilities and continuous codes as numbers.
                let code = explore::code_json(&code, coder.is_binary());
                let obj = json!({"line": line_no, "code": code, "text": text});
                writeln!(out, "{}", crate::printable::to_json_line(&obj)?)?;
            }
            Ok((_, text)) => writeln!(out, "{}", Shown(&text))?,
            Err((why, bad)) => {
                malformed += usize::from(bad);
                if json_out {
                    let obj = json!({"line": line_no, "error": why});
                    writeln!(out, "{}", crate::printable::to_json_line(&obj)?)?;
                } else {
                    writeln!(out)?;
                    if bad {
                        eprintln!("line {line_no}: {}", Shown(&why));
                    }
                }
            }
        }
    }
    if malformed > 0 {
        bail!("{malformed} input line(s) held no valid code (answered in place)");
    }
    Ok(())
}

/// The training corpus's words when `--real-words` asks for them (None where they do not
/// apply, [`crate::coder::seq::real_words_apply`]: a bag-of-words or word-level model decodes
/// only its vocabulary's words anyway, an `lm` samples unrestricted).
pub(super) fn real_words_of(
    coder: &Coder,
    asked: bool,
) -> Result<Option<std::sync::Arc<crate::model::word_trie::WordTrie>>> {
    if !asked {
        return Ok(None);
    }
    // Asked where it changes nothing: refused (no sentence decoder) or noted (whole words).
    if !coder.capabilities().decodes() {
        bail!(
            "--real-words keeps decodings to the training corpus's words; a `{}` model has no decoder",
            coder.kind_name()
        );
    }
    let Ok(engine) = coder.sequence_model("decode in real words") else {
        bail!(
            "--real-words keeps sentence decodings to the training corpus's words; a `{}` model decodes to its top words, all of them its vocabulary's already",
            coder.kind_name()
        );
    };
    if !engine.kind().has_latent() {
        bail!(
            "--real-words keeps decodings of codes to the training corpus's words; an `lm` has no code (its samples are drawn word by word)"
        );
    }
    if !crate::coder::seq::real_words_apply(engine) {
        eprintln!("note: --real-words changes nothing here: the model's vocabulary is whole words");
        return Ok(None);
    }
    let words = crate::coder::seq::corpus_words(engine)
        .context("--real-words needs the training corpus's words")?;
    Ok(words.trie)
}

#[allow(clippy::too_many_arguments)]
fn path(
    ckpt: &Option<PathBuf>,
    a: &str,
    b: &str,
    seed: Option<u64>,
    steps: Option<usize>,
    slerp: bool,
    real_words: bool,
    json_out: bool,
) -> Result<()> {
    if let Some(steps) = steps.filter(|s| !(1..=MAX_PATH_STEPS).contains(s)) {
        bail!("--steps must be within 1..={MAX_PATH_STEPS}, got {steps}");
    }
    // Any model that decodes: sentences per step, or a bag-of-words decoder's top words.
    let coder = Coder::load(&resolve(ckpt), &Device::Cpu)?;
    // A flag that would change nothing is refused, not ignored.
    if coder.is_binary() && (steps.is_some() || slerp) {
        bail!(
            "--steps and --slerp shape an interpolation between continuous codes; a `{}` model's path flips one bit a step (as many steps as the two codes differ in bits), in the order --seed draws",
            coder.kind_name()
        );
    }
    if !coder.is_binary() && seed.is_some() {
        bail!(
            "--seed orders the flips of a binary path; an interpolation between a `{}` model's continuous codes draws nothing (--steps sets its length)",
            coder.kind_name()
        );
    }
    let (seed, steps) = (seed.unwrap_or(0), steps.unwrap_or(8));
    let words = real_words_of(&coder, real_words)?;
    let walk = coder.walk_path(a, b, seed, steps, slerp, words.as_deref())?;
    let binary = walk.binary;
    let points = &walk.points;
    if json_out {
        let steps: Vec<_> = points
            .iter()
            .map(|p| json!({"flipped": p.flipped, "code": explore::code_json(&p.code, binary), "text": p.text}))
            .collect();
        let mut obj = json!({"a": a, "b": b, "seed": seed, "steps": steps});
        if let Some(d) = walk.distance {
            obj["distance"] = json!(d);
        }
        println!("{}", crate::printable::to_json_pretty(&obj)?);
    } else {
        if let Some(d) = walk.distance {
            println!("Hamming distance {d} (seed {seed})");
        }
        for (i, p) in points.iter().enumerate() {
            let what = match p.flipped {
                Some(bit) => format!("flip {bit:3}"),
                None if i == 0 => "start   ".into(),
                None => format!("t={:.2}  ", p.t),
            };
            if binary {
                println!(
                    "{i:3} {what} {} {}",
                    explore::bit_string(&p.code),
                    Shown(&p.text)
                );
            } else {
                println!("{i:3} {what} {}", Shown(&p.text));
            }
        }
    }
    Ok(())
}

fn sample(
    ckpt: &Option<PathBuf>,
    n: usize,
    seed: u64,
    temperature: Option<f32>,
    prior: Option<crate::coder::PriorChoice>,
    real_words: bool,
    json_out: bool,
) -> Result<()> {
    // Any model that decodes: sentences, or for nash and nvdm the decoder's top words.
    let coder = Coder::load(&resolve(ckpt), &Device::Cpu)?;
    let words = real_words_of(&coder, real_words)?;
    let kind = coder.kind_name();
    let binary = coder.is_binary();
    if binary && temperature.is_some() {
        bail!(
            "--temperature sets σ of a gaussian prior (or word sampling for `lm`); a `{kind}` model's prior is bits, drawn uniformly or with --prior means"
        );
    }
    if !coder.capabilities().encodes && prior.is_some() {
        bail!(
            "--prior chooses how codes are drawn; an `{kind}` model has no code: it samples words (their temperature is --temperature)"
        );
    }
    let prior = prior.unwrap_or(crate::coder::PriorChoice::Uniform);
    if !binary && prior == crate::coder::PriorChoice::Means {
        bail!(
            "--prior means draws each bit with its corpus mean; a `{kind}` model has no bits (its prior is N(0, t²I): set t with --temperature)"
        );
    }
    let temperature = temperature.unwrap_or(1.0);
    let means = if binary && prior == crate::coder::PriorChoice::Means {
        Some(coder.corpus_bit_means()?)
    } else {
        None
    };
    let out = std::io::stdout();
    let mut out = out.lock();
    // Each sample is written as soon as its batch is decoded: any -n runs in bounded memory.
    if json_out {
        writeln!(out, "{{\n  \"seed\": {seed},\n  \"samples\": [")?;
    } else {
        eprintln!("seed {seed}");
    }
    let mut first = true;
    coder.sample_prior_each(
        n,
        seed,
        temperature,
        prior,
        means.as_deref(),
        words.as_deref(),
        &mut |code, text| {
            if json_out {
                let row = json!({"code": explore::code_json(&code, binary), "text": text});
                let sep = if first { "" } else { ",\n" };
                write!(out, "{sep}    {}", crate::printable::to_json_line(&row)?)?;
            } else if binary {
                writeln!(out, "{} {}", explore::bit_string(&code), Shown(&text))?;
            } else {
                writeln!(out, "{}", Shown(&text))?;
            }
            first = false;
            Ok(())
        },
    )?;
    if json_out {
        writeln!(out, "{}  ]\n}}", if first { "" } else { "\n" })?;
    }
    Ok(())
}

fn flip(
    ckpt: &Option<PathBuf>,
    sentence: &str,
    bits: &[usize],
    real_words: bool,
    json_out: bool,
) -> Result<()> {
    let coder = Coder::load(&resolve(ckpt), &Device::Cpu)?;
    if !coder.is_binary() {
        bail!(
            "flip works on binary codes; this is a `{}` model",
            coder.kind_name()
        );
    }
    let words = real_words_of(&coder, real_words)?;
    let e = coder.encode_text(sentence)?;
    // What the model did not read (unknown words, a bag's stop words, a cut): said, not hidden
    // behind the shown sentence.
    let notices = e.notices();
    if !json_out {
        for n in &notices {
            eprintln!("note: {}", Shown(n));
        }
    }
    let (ids, code) = (e.ids, e.code);
    let l = code.len();
    if let Some(&bad) = bits.iter().find(|&&b| b >= l) {
        bail!(
            "bit {bad} is out of range: the code has {l} bits (0–{})",
            l - 1
        );
    }
    // Sequence models: the sentence's perplexity per word; nash: the document's NLL in nats.
    let effects = coder.code_effects(
        &ids,
        &code,
        &crate::coder::seq::one_change_variants(&code, true, None),
    )?;
    let (measure, heading) = if effects.nll {
        ("nll", "NLL (nats)")
    } else {
        ("ppl", "perplexity")
    };
    // The bars' own base: the current code scored by the same output layer as they are.
    let bars_base = effects.base;
    let mut ppl = vec![effects.base];
    ppl.extend(effects.variants);
    // The bars are scored around the current code's states (`model::variants`: within ~1e-3
    // of the exact perplexity); the headline figure and the flips asked for with --bits are
    // scored exactly (full precision).
    let approximate = !effects.nll;
    let mut flipped: Vec<f64> = bits.iter().map(|&b| ppl[b + 1]).collect();
    if approximate {
        ppl[0] = exact_nll(&coder, &ids, &code)?.1.unwrap_or(ppl[0]);
        for (&b, p) in bits.iter().zip(&mut flipped) {
            *p = exact_nll(&coder, &ids, &explore::flip(&code, b))?
                .1
                .unwrap_or(*p);
        }
    }
    let mut decode_codes = vec![code.clone()];
    decode_codes.extend(bits.iter().map(|&b| explore::flip(&code, b)));
    let texts = coder
        .decode_codes_restricted(
            &decode_codes,
            crate::structure::DECODED_WORDS,
            words.as_deref(),
        )?
        .ok_or_else(|| coder.cannot("decode a code"))?;
    if json_out {
        let flips: Vec<_> = bits
            .iter()
            .zip(&texts[1..])
            .zip(&flipped)
            .map(|((&b, t), p)| json!({"bit": b, "code": explore::bit_string(&explore::flip(&code, b)), "text": t, measure: p}))
            .collect();
        println!(
            "{}",
            crate::printable::to_json_pretty(&json!({
                "input": sentence, "sentence": e.shown, "notices": notices,
                "code": explore::bit_string(&code), "decoding": texts[0],
                measure: ppl[0], "flips": flips, format!("per_bit_{measure}"): &ppl[1..],
                "per_bit_exact": !approximate,
            }))?
        );
    } else {
        println!("sentence  {}", Shown(&e.shown));
        println!("code      {}", explore::bit_string(&code));
        println!("decoding  {}", Shown(&texts[0]));
        println!("{heading} {:.3}", ppl[0]);
        for ((&b, t), p) in bits.iter().zip(&texts[1..]).zip(&flipped) {
            println!("flip {b:3}  {measure} {p:9.3}  → {}", Shown(t));
        }
        println!(
            "per-bit {heading} ({} under the code with that bit flipped{}):",
            if effects.nll { "document" } else { "sentence" },
            if approximate {
                "; scored as the explorer's bars, within ~0.1% of the exact figure"
            } else {
                ""
            }
        );
        // The bars are each flip's rise over the current code (what the flip costs the
        // sentence), scaled to the largest rise: drawn from zero, bars of perplexities that
        // differ by a few percent would all look the same length.
        let rise = |p: f64| {
            if effects.nll {
                p - bars_base
            } else {
                p / bars_base - 1.0
            }
        };
        let largest = ppl[1..].iter().map(|&p| rise(p)).fold(0.0, f64::max);
        // The bars' base is the current code scored as they are (exactly from 128 bits on, by
        // the 8-bit layer below): it can differ from the exact headline in the last digits, so
        // it says so.
        println!(
            "  bit {:>9} {:>9} (bars: the rise over the current code's {:.3}{}, longest {})",
            measure,
            "rise",
            bars_base,
            if approximate {
                " as the bars score it"
            } else {
                ""
            },
            rise_text(largest, effects.nll)
        );
        for j in 0..l {
            let r = rise(ppl[j + 1]);
            println!(
                "  {j:3} {:9.3} {:>9} {}",
                ppl[j + 1],
                rise_text(r, effects.nll),
                rise_bar(r, largest, 40)
            );
        }
    }
    Ok(())
}

/// `latent-tui infos` opened the explorer on a checkpoint named `infos` ("cannot read"): a
/// missing file without a directory or an extension that is close to a command's name is
/// answered with that command.
fn refuse_mistyped_command(path: &Path) -> Result<()> {
    use clap::CommandFactory;
    let name = path.to_string_lossy();
    if path.exists() || name.contains(['/', '.', '\\']) {
        return Ok(());
    }
    // A shipped model named without its directory and suffix (`latent-tui vae`).
    let shipped = shipped_checkpoint(&format!("checkpoints/{name}.safetensors"));
    if shipped.is_file() {
        bail!(
            "no checkpoint `{}` here: did you mean `latent-tui {}`?",
            Shown(&name),
            Shown(&shipped.display().to_string())
        );
    }
    let closest = Cli::command()
        .get_subcommands()
        .map(|c| c.get_name().to_string())
        .map(|c| (strsim::damerau_levenshtein(&name, &c), c))
        .min();
    // Two edits apart only for longer names: `nash` is two edits from `path`.
    match closest {
        Some((d, command)) if 3 * d <= name.chars().count() => bail!(
            "`{}` is neither a command nor a checkpoint: did you mean `latent-tui {command}`? (`latent-tui --help` lists the commands)",
            Shown(&name)
        ),
        _ => Ok(()),
    }
}

/// Refuses a sentence that names a checkpoint: with the sentence forgotten (`flip
/// runs/m.safetensors`), the file name was encoded by the default model as if it were one.
pub(crate) fn not_a_checkpoint(text: &str, usage: &str) -> Result<()> {
    // Another file named like the sentence (`flip dog` beside a file `dog`) is no checkpoint:
    // only a name that ends like one, or a file that starts like one, is refused.
    let looks_like_one = |p: &Path| {
        let mut head = [0u8; 9];
        std::fs::File::open(p)
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head))
            .is_ok_and(|_| {
                let n = u64::from_le_bytes(head[..8].try_into().expect("8 bytes"));
                n <= crate::checkpoint::MAX_HEADER_BYTES && head[8] == b'{'
            })
    };
    if text.ends_with(".safetensors")
        || (Path::new(text).is_file() && looks_like_one(Path::new(text)))
    {
        bail!(
            "`{}` looks like a checkpoint, not a sentence: give the sentence after it ({usage})",
            Shown(text)
        );
    }
    Ok(())
}

/// A rise as `flip` prints it: nats for an NLL, percent for a perplexity.
fn rise_text(rise: f64, nats: bool) -> String {
    if nats {
        format!("{rise:+.3}")
    } else {
        format!("{:+.1}%", rise * 100.0)
    }
}

/// A horizontal bar of `rise / largest` of `width` cells, in eighths of a cell; empty for a
/// fall (or when nothing rises).
fn rise_bar(rise: f64, largest: f64, width: usize) -> String {
    const EIGHTHS: [char; 8] = ['▏', '▎', '▍', '▌', '▋', '▊', '▉', '█'];
    if !(rise > 0.0 && largest > 0.0) {
        return String::new();
    }
    let eighths = ((rise / largest).min(1.0) * (width * 8) as f64).round() as usize;
    let mut bar = "█".repeat(eighths / 8);
    if !eighths.is_multiple_of(8) {
        bar.push(EIGHTHS[eighths % 8 - 1]);
    }
    bar
}

/// A progress bar from 0 to 1000 labelled `what`, drawn on a terminal, hidden otherwise (logs
/// and pipes get the commands' own lines).
fn progress_bar(what: &str) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    let bar = indicatif::ProgressBar::new(1000);
    if std::io::stderr().is_terminal() {
        bar.set_style(
            indicatif::ProgressStyle::with_template(&format!("{what} {{bar:30}} {{percent}}%"))
                .expect("valid template"),
        );
    } else {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every argument of every subcommand, at any depth, with its command's name.
    fn all_args(cmd: &clap::Command, path: String, out: &mut Vec<(String, clap::Arg)>) {
        for arg in cmd.get_arguments() {
            out.push((path.clone(), arg.clone()));
        }
        for sub in cmd.get_subcommands() {
            all_args(sub, format!("{path} {}", sub.get_name()), out);
        }
    }

    #[test]
    fn every_argument_of_every_command_has_help_text() {
        let mut args = Vec::new();
        all_args(&command(), "latent-tui".into(), &mut args);
        assert!(args.len() > 100, "{} arguments", args.len());
        let missing: Vec<String> = args
            .iter()
            .filter(|(_, a)| !matches!(a.get_id().as_str(), "help" | "version"))
            .filter(|(_, a)| {
                a.get_help()
                    .map(|h| h.to_string().trim().is_empty())
                    .unwrap_or(true)
            })
            .map(|(cmd, a)| format!("{cmd} {}", a.get_id()))
            .collect();
        assert!(missing.is_empty(), "arguments without help: {missing:?}");
    }

    #[test]
    fn train_help_shows_the_defaults_of_the_configs() {
        let mut cmd = command();
        let help = cmd
            .find_subcommand_mut("train")
            .expect("train")
            .render_help()
            .to_string();
        let d = TrainConfig::default();
        let j = |v: f64| serde_json::json!(v).to_string();
        for shown in [
            format!("[default: {}; nvdm: 3000; nash: 3000]", d.steps),
            format!("[default: {}; nvdm: 10000; nash: 10000]", d.vocab_size),
            format!("[default: {}]", d.max_len),
            format!("[default: {}]", d.batch_tokens),
            format!("[default: {}]", j(d.word_dropout)),
            format!("[default: {}]", d.seed),
            // The bag-of-words kinds may differ: only the sequence default is fixed here.
            format!("[default: {}", j(d.lr)),
            format!("[default: {}; nash: 0.01]", j(d.kl_weight)),
        ] {
            assert!(help.contains(&shown), "{shown} missing from:\n{help}");
        }
    }

    #[test]
    fn a_code_must_be_finite_and_in_range() {
        assert!(check_code_values(&[0.0, 1.0, 0.5], true).is_ok());
        assert!(check_code_values(&[0.0, f32::INFINITY], true).is_err());
        assert!(check_code_values(&[1.5], true).is_err());
        assert!(check_code_values(&[-999.0, 3.0], false).is_ok());
        assert!(check_code_values(&[f32::NAN], false).is_err());
        assert!(check_code_values(&[1e6], false).is_err());
    }
}
