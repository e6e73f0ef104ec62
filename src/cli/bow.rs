//! Command-line pieces for bag-of-words models, semantic hashing and probing: the extra
//! `train` flags, the `--kind` parser that routes to either trainer, and the subcommands
//! `index`, `search`, `eval-retrieval`, `probe` and `words`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::Device;
use clap::Args;

use crate::bow::train::{BowFamily, BowTrainConfig};
use crate::cli::TrainArgs;
use crate::coder::{read_features, Coder, FeatureKind};
use crate::corpus::{Corpus, LoadOptions, Split};
use crate::index::{CachedIndex, CorpusIndex};
use crate::model::bow::{BowInput, NashNoise};
use crate::printable::{self, shown_join, Shown};
use crate::train_job::TrainJob;

/// What `train --kind` names (defined beside the runner that trains any kind).
pub use crate::train_job::TrainKind;

/// `train` flags that only bag-of-words models (`--kind nvdm|nash|lsh`) read.
#[derive(Args, Debug, Default, Clone)]
pub struct BowTrainArgs {
    /// Bag-of-words input: counts (nvdm default) or tfidf (nash default).
    #[arg(long)]
    pub input: Option<BowInput>,
    /// NASH training noise on the bits: none, fixed (σ = --noise-std) or learned (σ(x)).
    #[arg(long, value_enum)]
    pub noise: Option<NoiseKind>,
    /// σ of the fixed training noise.
    #[arg(long, value_parser = crate::cli::flags::weight)]
    pub noise_std: Option<f64>,
    /// Keep English stop words and punctuation in a bag-of-words vocabulary.
    #[arg(long)]
    pub keep_stop_words: bool,
    /// Documents per batch for bag-of-words models (default 64, at most 1024).
    #[arg(long, value_parser = crate::cli::flags::bow_batch)]
    pub batch_size: Option<usize>,
}

/// NASH's training noise as named by `--noise`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum NoiseKind {
    /// No noise (NASH).
    None,
    /// Fixed σ = --noise-std (NASH-N).
    Fixed,
    /// σ(x) learned from the document (NASH-DN).
    Learned,
}

/// `--noise` and `--noise-std` as a noise setting.
pub fn parse_noise(kind: Option<NoiseKind>, std: Option<f64>) -> Result<Option<NashNoise>> {
    Ok(match (kind, std) {
        (None, None) => None,
        (None | Some(NoiseKind::Fixed), Some(std)) => Some(NashNoise::Fixed { std }),
        (Some(NoiseKind::Fixed), None) => Some(NashNoise::Fixed { std: 0.5 }),
        (Some(NoiseKind::None), _) => Some(NashNoise::None),
        (Some(NoiseKind::Learned), _) => Some(NashNoise::Learned),
    })
}

/// The bag-of-words training config `args` ask for, or None when they ask for a sequence
/// model. `--resume` of a bag-of-words checkpoint continues its stored config.
pub fn train_config(args: &TrainArgs) -> Result<Option<BowTrainConfig>> {
    if let Some(TrainKind::Seq(_)) = args.kind {
        return Ok(None);
    }
    // A resumed bag-of-words run continues its stored config, as sequence runs do.
    let stored: Option<BowTrainConfig> = match (&args.out, args.resume) {
        (Some(out), true) if out.exists() => match TrainJob::stored_with_provenance(out)? {
            (Some(TrainJob::Bow(mut cfg)), provenance) => {
                if args.corpus.is_none() {
                    cfg.corpus = crate::train_job::resume_corpus(out, &provenance)?;
                }
                // The run keeps its vocabulary (as sequence runs do): refused, not ignored.
                super::refuse_another_vocabulary(
                    args,
                    out,
                    cfg.vocab_size,
                    cfg.min_frequency,
                    None,
                )?;
                Some(cfg)
            }
            _ => None,
        },
        _ => None,
    };
    let mut cfg = match (stored, &args.kind, &args.config) {
        (Some(cfg), _, _) => cfg,
        (None, Some(TrainKind::Bow(f)), None) => BowTrainConfig::for_family(*f),
        (None, kind, Some(path)) => {
            let bytes = crate::checkpoint::read_regular_file(
                path,
                "training config",
                crate::checkpoint::max_bytes::TRAINING_CONFIG,
            )?;
            let text = String::from_utf8(bytes)
                .with_context(|| format!("training config {} is not UTF-8", path.display()))?;
            let value: serde_json::Value = serde_json::from_str(&text)
                .with_context(|| format!("{} is not valid JSON", path.display()))?;
            if value.get("family").is_none() {
                if let Some(TrainKind::Bow(_)) = kind {
                    anyhow::bail!(
                        "{} is a sequence training config; a bag-of-words config has a `family` field",
                        path.display()
                    );
                }
                return Ok(None);
            }
            let cfg: BowTrainConfig = serde_json::from_value(value)
                .with_context(|| format!("{} is not a valid training config", path.display()))?;
            super::check_config_file(path, &cfg.corpus, false, args.corpus.is_some())?;
            cfg
        }
        (None, _, None) => return Ok(None),
    };
    if let Some(TrainKind::Bow(f)) = args.kind {
        cfg.family = f;
    }
    // Sequence-model flags a bag-of-words trainer has no use for are refused, not ignored: a
    // "fine-tune" with --init would otherwise start from random weights without a word.
    let seq_only = [
        ("--init", args.init.is_some()),
        ("--precision", args.precision.is_some()),
        ("--decorrelation", args.decorrelation.is_some()),
        (
            "--decorrelation-moments",
            args.decorrelation_moments.is_some(),
        ),
        ("--decorrelation-start", args.decorrelation_start.is_some()),
        (
            "--decorrelation-warmup",
            args.decorrelation_warmup.is_some(),
        ),
        ("--decorrelation-above", args.decorrelation_above.is_some()),
        // A bag-of-words trainer has no tokenizer, word embedding, summary, GRU, word dropout,
        // token batches or learning-rate schedule: these were silently ignored.
        ("--tokenizer", args.tokenizer.is_some()),
        ("--embed-dim", args.embed_dim.is_some()),
        ("--summary", args.summary.is_some()),
        ("--z-every-step", args.z_every_step),
        ("--gumbel-temperature", args.gumbel_temperature.is_some()),
        ("--max-len", args.max_len.is_some()),
        ("--batch-tokens", args.batch_tokens.is_some()),
        ("--lr-decay", args.lr_decay.is_some()),
        ("--warmup-steps", args.warmup_steps.is_some()),
        ("--lr-floor", args.lr_floor.is_some()),
        ("--word-dropout", args.word_dropout.is_some()),
        ("--word-dropout-end", args.word_dropout_end.is_some()),
        ("--word-dropout-steps", args.word_dropout_steps.is_some()),
        ("--dropout", args.dropout.is_some()),
        ("--free-bits", args.free_bits.is_some()),
        ("--mi-weight", args.mi_weight.is_some()),
        ("--binarize", args.binarize.is_some()),
    ];
    if let Some((flag, _)) = seq_only.iter().find(|(_, given)| *given) {
        anyhow::bail!(
            "{flag} applies to sequence models, not to a `{}` model (it would be ignored; drop it)",
            cfg.family
        );
    }
    if args.resume && args.out.is_none() {
        anyhow::bail!("--resume needs --out (the checkpoint to continue)");
    }
    cfg.resume = args.resume;
    macro_rules! set {
        ($($field:ident),*) => { $( if let Some(v) = args.$field.clone() { cfg.$field = v; } )* };
    }
    set!(
        corpus,
        out,
        steps,
        vocab_size,
        min_frequency,
        hidden_dim,
        latent_dim,
        lr,
        weight_decay,
        clip_norm,
        kl_anneal,
        kl_anneal_steps,
        kl_weight,
        seed,
        valid_every,
        checkpoint_every
    );
    if let Some(v) = args.valid_sentences {
        cfg.valid_documents = v;
    }
    let bow = &args.bow;
    if let Some(input) = bow.input {
        cfg.input = input;
    }
    if let Some(noise) = parse_noise(bow.noise, bow.noise_std)? {
        cfg.noise = noise;
    }
    if bow.keep_stop_words {
        cfg.keep_stop_words = true;
    }
    if let Some(b) = bow.batch_size.or(args.max_batch) {
        cfg.batch_size = b;
    }
    if args.half {
        cfg.half = true;
    }
    if cfg.noise != NashNoise::None && cfg.family != BowFamily::Nash {
        anyhow::bail!("--noise applies to nash models only");
    }
    if let Some(t) = args.time {
        if cfg.family == BowFamily::Lsh {
            anyhow::bail!(
                "--time does not apply to lsh: its hyperplanes are drawn at once, not trained"
            );
        }
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
                max_words: usize::MAX,
            },
        )?;
        let per_epoch = corpus.train.len().div_ceil(cfg.batch_size.max(1));
        cfg.steps = ((epochs * per_epoch as f64).ceil() as u64).max(1);
    }
    Ok(Some(cfg))
}

/// The bag-of-words, hashing and probing subcommands, flattened into the main command list.
#[derive(clap::Subcommand, Debug)]
pub enum BowCommand {
    /// Encode a corpus with a binary checkpoint (binary sequence kinds, nash, lsh) and save its
    /// Hamming index: the checkpoint's cache (beside it, or in --cache-dir), or --out.
    Index(IndexArgs),
    /// The nearest corpus entries of a sentence (or a code): by Hamming distance for binary
    /// codes, by cosine for continuous ones.
    Search(SearchArgs),
    /// precision@k (same label = relevant) of lsh, each nash variant and binary sequence
    /// autoencoders at 8–128 bits, test split querying the training split.
    EvalRetrieval(EvalRetrievalArgs),
    /// Held-out accuracy of a small MLP classifier on a checkpoint's codes, bit
    /// probabilities or logits.
    Probe(ProbeArgs),
    /// A bag-of-words model's decoder: top words of each latent dimension, or the nearest
    /// words of a word by cosine of the decoder's word vectors.
    Words(WordsArgs),
}

#[derive(Args, Debug)]
pub struct EvalRetrievalArgs {
    /// `wordnet` (bundled) or a labelled TSV file or directory.
    #[arg(long, default_value = "wordnet")]
    pub corpus: String,
    /// Code widths (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "8,16,32,64,128", value_parser = crate::cli::flags::dim)]
    pub bits: Vec<usize>,
    /// Results per query: how many nearest database entries each query retrieves, the k of
    /// precision@k (the share of them with the query's label). `-k` counts results here, as
    /// in `search`; in `cluster` it counts clusters, in `map` neighbours.
    #[arg(short = 'k', long = "top", alias = "k", default_value_t = 100, value_parser = crate::cli::flags::count)]
    pub k: usize,
    /// Training steps of each nash model.
    #[arg(long, default_value_t = 2000, value_parser = crate::cli::flags::steps)]
    pub steps: u64,
    /// Documents per nash training batch (at most 1024).
    #[arg(long, default_value_t = 64, value_parser = crate::cli::flags::bow_batch)]
    pub batch_size: usize,
    /// Hidden size of each nash encoder.
    #[arg(long, default_value_t = 256, value_parser = crate::cli::flags::dim)]
    pub hidden_dim: usize,
    /// Adam learning rate of nash training.
    #[arg(long, default_value_t = 1e-3, value_parser = crate::cli::flags::learning_rate)]
    pub lr: f64,
    /// Weight of the KL term (to Bernoulli(½)) in nash training; at 1 the prior pulls every
    /// bit toward ½ and the codes carry little (P@100 below LSH's on the bundled corpus).
    #[arg(long, default_value_t = 0.01, value_parser = crate::cli::flags::weight)]
    pub kl_weight: f64,
    /// KL annealing in nash training: none, linear or logistic.
    #[arg(long, default_value = "none")]
    pub kl_anneal: crate::train::KlAnneal,
    /// Steps over which nash's KL weight grows to --kl-weight.
    #[arg(long, default_value_t = 0, value_parser = crate::cli::flags::steps_or_zero)]
    pub kl_anneal_steps: u64,
    /// σ of the fixed-noise nash variant.
    #[arg(long, default_value_t = 0.5, value_parser = crate::cli::flags::weight)]
    pub noise_std: f64,
    /// nash variants to train (comma-separated from none, fixed, learned; a `-s` suffix, as in
    /// `learned-s`, trains the supervised variant; "" for none at all).
    #[arg(long, value_delimiter = ',', default_value = "none,fixed,learned")]
    pub variants: Vec<String>,
    /// Weight α of the supervised variants' label classifier (cross-entropy per document).
    #[arg(long, default_value_t = 1.0, value_parser = crate::cli::flags::weight)]
    pub supervised_weight: f64,
    /// Largest bag-of-words vocabulary.
    #[arg(long, default_value_t = 10000)]
    pub vocab_size: usize,
    /// Keep English stop words and punctuation in the bag-of-words vocabulary.
    #[arg(long)]
    pub keep_stop_words: bool,
    /// Seed of the subsets, random codes, LSH hyperplanes and nash training.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Use a seeded random subset of this many training entries as the database.
    #[arg(long, value_parser = crate::cli::flags::count)]
    pub max_database: Option<usize>,
    /// Use a seeded random subset of this many test queries.
    #[arg(long, value_parser = crate::cli::flags::count)]
    pub max_queries: Option<usize>,
    /// Binary checkpoints to add as rows, each at its own width: binary sequence
    /// autoencoders, or saved nash/lsh models; repeatable.
    #[arg(long = "checkpoint", visible_alias = "seq-checkpoint")]
    pub checkpoints: Vec<PathBuf>,
    /// Print the table as JSON.
    #[arg(long)]
    pub json: bool,
}

fn eval_retrieval(args: EvalRetrievalArgs) -> Result<()> {
    let variants = args
        .variants
        .iter()
        .filter(|v| !v.is_empty())
        .map(|v| v.parse().map_err(anyhow::Error::msg))
        .collect::<Result<Vec<crate::retrieval::NashVariant>>>()?;
    let opts = crate::retrieval::RetrievalOptions {
        corpus: args.corpus,
        bits: args.bits,
        k: args.k,
        steps: args.steps,
        batch_size: args.batch_size,
        hidden_dim: args.hidden_dim,
        lr: args.lr,
        kl_weight: args.kl_weight,
        kl_anneal: args.kl_anneal,
        kl_anneal_steps: args.kl_anneal_steps,
        noise_std: args.noise_std,
        vocab_size: args.vocab_size,
        min_frequency: 2,
        keep_stop_words: args.keep_stop_words,
        seed: args.seed,
        max_database: args.max_database,
        max_queries: args.max_queries,
        variants,
        supervised_weight: args.supervised_weight,
        checkpoints: args.checkpoints,
    };
    let started = std::time::Instant::now();
    let table = crate::retrieval::run(&opts, &mut |line| eprintln!("{line}"))?;
    if args.json {
        println!("{}", crate::printable::to_json_pretty(&table)?);
    } else {
        print!("{}", table.render());
        println!("({:.0} s)", started.elapsed().as_secs_f64());
    }
    Ok(())
}

/// Runs one of the subcommands of [`BowCommand`].
pub fn run(command: BowCommand) -> Result<()> {
    match command {
        BowCommand::Index(a) => index(a),
        BowCommand::Search(a) => search(a),
        BowCommand::EvalRetrieval(a) => eval_retrieval(a),
        BowCommand::Probe(a) => probe(a),
        BowCommand::Words(a) => words(a),
    }
}

/// How a query's words outside the model are named: a sequence model reads them as `<unk>`,
/// a bag-of-words model leaves them (and every stop word) out of the bag.
pub fn left_out_label(coder: &Coder) -> &'static str {
    if matches!(coder.config(), crate::model::ModelConfig::Seq(_)) {
        "unknown words (read as <unk>)"
    } else {
        "left out of the bag (stop words, or not in the vocabulary)"
    }
}

#[derive(Args, Debug)]
pub struct IndexArgs {
    /// A binary checkpoint: a binary sequence kind, nash or lsh (default:
    /// checkpoints/binary.safetensors).
    pub checkpoint: Option<PathBuf>,
    /// Corpus to index (default: the checkpoint's own, if it is the bundled `wordnet`).
    #[arg(long)]
    pub corpus: Option<String>,
    /// Splits to index: train, valid, test or all (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "train")]
    pub split: Vec<String>,
    /// Where to write the index (default: beside the checkpoint, `NAME.index.safetensors`, the
    /// cache `search` and the explorer use; an index of other splits or of another corpus
    /// needs --out, since they would rebuild that file from the train split).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Replace a file at --out that is not an index.
    #[arg(long)]
    pub force: bool,
}

fn parse_splits(names: &[String]) -> Result<Vec<Split>> {
    let mut splits = Vec::new();
    for n in names {
        if n == "all" {
            splits.extend(Split::ALL);
        } else {
            splits.push(n.parse::<Split>().map_err(anyhow::Error::msg)?);
        }
    }
    splits.dedup();
    Ok(splits)
}

/// The checkpoint argument, or the shipped binary autoencoder.
fn binary_default(given: &Option<PathBuf>) -> PathBuf {
    given.clone().unwrap_or_else(crate::cli::default_checkpoint)
}

fn index(args: IndexArgs) -> Result<()> {
    let checkpoint = binary_default(&args.checkpoint);
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| CorpusIndex::default_path(&checkpoint));
    crate::checkpoint::check_output_target(
        &out,
        "an index",
        &crate::index::is_index_file,
        args.force,
    )?;
    let coder = Coder::load(&checkpoint, &Device::Cpu)?;
    let corpus = coder.corpus(args.corpus.as_deref())?;
    let splits = parse_splits(&args.split)?;
    if args.out.is_none() {
        // The default path is the cache: only the index `search` and the explorer would build
        // there may go to it, or they replace it at their next use.
        let cached_splits = splits == crate::index::CACHED_SPLITS;
        let own_corpus =
            args.corpus.is_none() || coder.corpus(None).is_ok_and(|own| own.hash == corpus.hash);
        if !cached_splits || !own_corpus {
            bail!(
                "the default path {} is the cache of the checkpoint's own corpus, train split, that `search` and the explorer rebuild; give --out PATH for an index of {}",
                Shown(&out.display().to_string()),
                if cached_splits { "another corpus" } else { "other splits" }
            );
        }
    }
    let started = std::time::Instant::now();
    let bar = super::progress_bar("encoding");
    let index = CorpusIndex::build(&coder, &corpus, &splits, &mut |f| {
        bar.set_position((f * 1000.0) as u64)
    })?;
    bar.finish_and_clear();
    index.save(&out)?;
    println!(
        "indexed {} entries of `{}` ({}) as {}-bit codes in {:.1} s → {}",
        index.len(),
        Shown(&corpus.name),
        shown_join(&index.meta.splits, ", "),
        index.bits(),
        started.elapsed().as_secs_f64(),
        out.display()
    );
    Ok(())
}

#[derive(Args, Debug)]
#[command(
    override_usage = "latent-tui search [OPTIONS] [CHECKPOINT] <QUERY>\n       latent-tui search [OPTIONS] [CHECKPOINT] - < queries.txt\n       latent-tui search [OPTIONS] [CHECKPOINT] --code BITS"
)]
pub struct SearchArgs {
    /// [CHECKPOINT] QUERY: the checkpoint is optional (default: checkpoints/binary.safetensors);
    /// with --code, a single argument is the checkpoint. QUERY `-` reads queries from stdin.
    #[arg(value_name = "CHECKPOINT|QUERY")]
    pub first: Option<String>,
    /// The sentence to search for, when a checkpoint is given; `-` reads one query per line
    /// from standard input (one result block, or with --json one JSON line, per line).
    #[arg(value_name = "QUERY")]
    pub second: Option<String>,
    /// Search for this code (a 0/1 string) instead of a sentence's.
    #[arg(long)]
    pub code: Option<String>,
    /// Results per query: how many nearest index entries to print, nearest first. `-k` counts
    /// results here, as in `eval-retrieval`; in `cluster` it counts clusters, in `map`
    /// neighbours.
    #[arg(short = 'k', long = "top", alias = "k", default_value_t = 10, value_parser = crate::cli::flags::count)]
    pub k: usize,
    /// The index to search (default: the cache `latent-tui index` writes — beside the
    /// checkpoint, or in --cache-dir — built and saved there first if it is missing or stale;
    /// a fresh one beside the checkpoint is read when --cache-dir has none).
    #[arg(long)]
    pub index: Option<PathBuf>,
    /// Continuous codes (gaussian, bottleneck, nvdm): rank the cosine neighbours by
    /// multi-sample matching instead — draw --samples codes per sentence from its posterior;
    /// two sentences match when at least --min-pairs of the samples² pairs lie within
    /// --radius (Euclidean) of each other.
    #[arg(long = "match")]
    pub multi_sample: bool,
    /// With --match: codes drawn per sentence (n).
    #[arg(long, default_value_t = 10, value_parser = crate::cli::flags::samples)]
    pub samples: usize,
    /// With --match: close pairs (of n²) that make a match (m).
    #[arg(long, default_value_t = 10, value_parser = crate::cli::flags::count)]
    pub min_pairs: usize,
    /// With --match: the largest distance of a close pair (t).
    #[arg(long, default_value_t = 1.0, value_parser = crate::cli::flags::weight_f32)]
    pub radius: f32,
    /// With --match: cosine neighbours re-ranked.
    #[arg(long, default_value_t = 100, value_parser = crate::cli::flags::count)]
    pub candidates: usize,
    /// With --match: seed of the drawn codes.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

impl SearchArgs {
    /// (checkpoint, query) from the positional arguments: two are both; one is the query, or
    /// the checkpoint when the query is a `--code`.
    fn checkpoint_and_query(&self) -> (PathBuf, Option<String>) {
        match (&self.first, &self.second, &self.code) {
            (Some(c), Some(q), _) => (PathBuf::from(c), Some(q.clone())),
            (Some(c), None, Some(_)) => (PathBuf::from(c), None),
            (Some(q), None, None) => (crate::cli::default_checkpoint(), Some(q.clone())),
            (None, _, _) => (crate::cli::default_checkpoint(), None),
        }
    }
}

/// The index of the model's own corpus cached beside its checkpoint, built (and saved) now when
/// there is no fresh one ([`crate::pipeline::neighbor_index`], as the explorer's Neighbors tab
/// does), with a note on stderr when it was built or could not be saved.
fn cached_index(coder: &Coder) -> Result<CachedIndex<crate::pipeline::CodeIndex>> {
    let corpus = coder.corpus(None).map_err(|e| {
        if coder.provenance().stored_corpus().is_some() {
            return e;
        }
        if !coder.is_binary() {
            // `index` builds Hamming indexes only: there is no index to point to.
            return anyhow::anyhow!(
                "search needs the corpus the checkpoint was trained on, `{}`, which is not here: continuous codes are searched in the model's own corpus only",
                Shown(coder.provenance().corpus_shown())
            );
        }
        // `search` has no --corpus: the way to another corpus is an index of it.
        let ckpt = Shown(&coder.path().display().to_string()).to_string();
        anyhow::anyhow!(
            "search needs an index of the corpus the checkpoint was trained on, `{}`, which is not here: build one of a corpus you have with `latent-tui index {ckpt} --corpus PATH --out FILE` and search it with `--index FILE`",
            Shown(coder.provenance().corpus_shown())
        )
    })?;
    let bar = super::progress_bar("indexing the corpus (once; then cached)");
    let cached = crate::pipeline::neighbor_index(coder, &corpus, &mut |f| {
        bar.set_position((f * 1000.0) as u64)
    })?;
    bar.finish_and_clear();
    if let Some(e) = &cached.save_error {
        eprintln!(
            "note: the index could not be saved to {} ({e}); it is rebuilt next time",
            cached.path.display()
        );
    } else if !cached.from_disk {
        eprintln!(
            "indexed {} entries of `{}` → {}",
            cached.index.len(),
            Shown(&corpus.name),
            cached.path.display()
        );
    }
    Ok(cached)
}

/// The queries of one `search` run: the one on the command line, or (query `-`) every line of
/// standard input, each with its line number.
enum Queries {
    One(Option<String>),
    Stdin,
}

impl Queries {
    /// Calls `answer(line number, query)` for each query, in order; a line of standard input
    /// that holds none (empty, not UTF-8, or refused by `coder`'s [`Coder::require_words`])
    /// gets `bad(line number, why)` instead, so the output keeps one answer per input line.
    fn each(
        &self,
        coder: Option<&Coder>,
        answer: &mut dyn FnMut(Option<usize>, Option<&str>) -> Result<()>,
        bad: &mut dyn FnMut(usize, &str) -> Result<()>,
    ) -> Result<()> {
        match self {
            Queries::One(q) => answer(None, q.as_deref()),
            Queries::Stdin => {
                for next in crate::cli::stdin_lines_checked() {
                    let (line_no, line) = next?;
                    let refused = |q: &str| coder.and_then(|c| c.require_words(q).err());
                    match line {
                        Ok(q) if !q.trim().is_empty() => match refused(&q) {
                            Some(why) => bad(line_no, &why.to_string())?,
                            None => answer(Some(line_no), Some(&q))?,
                        },
                        Ok(_) => bad(line_no, "an empty line")?,
                        Err(why) => bad(line_no, &why)?,
                    }
                }
                Ok(())
            }
        }
    }
}

/// One answer of `search`: pretty JSON for a single query, one JSON line per query from
/// standard input (with its line number), or a text block (blocks separated by a blank line).
fn print_json(line: Option<usize>, mut value: serde_json::Value) -> Result<()> {
    match line {
        None => println!("{}", crate::printable::to_json_pretty(&value)?),
        Some(n) => {
            value["line"] = serde_json::json!(n);
            println!("{}", crate::printable::to_json_line(&value)?);
        }
    }
    Ok(())
}

/// The answer for a line of standard input that holds no query.
fn print_bad_query(json: bool, line: usize, why: &str) -> Result<()> {
    if json {
        println!(
            "{}",
            crate::printable::to_json_line(
                &serde_json::json!({"line": line, "error": format!("no query: {why}")})
            )?
        );
    } else {
        println!("line {line}: no query ({})\n", Shown(why));
    }
    Ok(())
}

fn search(args: SearchArgs) -> Result<()> {
    let (checkpoint, query) = args.checkpoint_and_query();
    if args.k == 0 {
        anyhow::bail!("--top must be at least 1");
    }
    if query.is_none() && args.code.is_none() {
        anyhow::bail!("give a sentence to search for (or - to read one per line from standard input), or --code");
    }
    if let (Some(q), None, None) = (&args.first, &args.second, &args.code) {
        // `search runs/m.safetensors` with the query forgotten would search the file name.
        if q.ends_with(".safetensors") || std::path::Path::new(q).is_file() {
            anyhow::bail!(
                "`{q}` looks like a checkpoint, not a query: give the sentence after it (search {q} \"a sentence\", or - to read queries from standard input)"
            );
        }
    }
    let queries = match query {
        Some(q) if q == "-" => Queries::Stdin,
        q => Queries::One(q),
    };
    if matches!(queries, Queries::Stdin) && args.code.is_some() {
        anyhow::bail!("--code searches one code; `-` reads sentences from standard input: give one or the other");
    }
    let mut coder = None;
    if args.index.is_none() {
        let loaded = Coder::load(&checkpoint, &Device::Cpu)?;
        if !loaded.is_binary() {
            return search_continuous(&args, &checkpoint, &queries, loaded);
        }
        coder = Some(loaded);
    } else if args.multi_sample {
        anyhow::bail!("--match is for continuous codes, searched without --index");
    }
    let (index, index_path) = match &args.index {
        Some(path) => {
            let index = CorpusIndex::load(path)?;
            // The index must hold the codes of the model that encodes the queries: the one
            // loaded now (its bytes' hash), or for a --code search the file as it is.
            let current = match &args.code {
                None => {
                    let loaded = Coder::load(&checkpoint, &Device::Cpu)?;
                    let same = index.meta.checkpoint_sha256 == loaded.checkpoint_sha256();
                    coder = Some(loaded);
                    same
                }
                Some(_) => index.is_current_for(&checkpoint)?,
            };
            if !current {
                // Another version of this file, or another model altogether: say which.
                let resolved = |p: &Path| std::fs::canonicalize(p).ok();
                let same_name = resolved(Path::new(&index.meta.checkpoint))
                    .is_some_and(|p| Some(p) == resolved(&checkpoint));
                // Rebuilding replaces an index of another version; an index of another model
                // is left alone (it is someone's).
                let (whence, out) = if same_name {
                    (
                        format!("another version of {}", checkpoint.display()),
                        path.display().to_string(),
                    )
                } else {
                    (
                        format!(
                            "`{}` ({}), not {}",
                            Shown(&index.meta.checkpoint),
                            Shown(&index.meta.model),
                            checkpoint.display()
                        ),
                        "FILE".to_string(),
                    )
                };
                anyhow::bail!(
                    "{} was built from {whence}; build an index of this model with `latent-tui index {} --out {out}` (add --corpus PATH for another corpus) and pass it to --index",
                    path.display(),
                    checkpoint.display(),
                );
            }
            (index, path.clone())
        }
        None => {
            let loaded = coder.take().expect("loaded above");
            if args.multi_sample {
                anyhow::bail!("--match is for continuous codes; {} has binary codes, searched by Hamming distance", checkpoint.display());
            }
            let cached = cached_index(&loaded)?;
            let crate::pipeline::CodeIndex::Hamming(index) = cached.index else {
                unreachable!("a binary model's index holds bits")
            };
            coder = Some(loaded);
            (index, cached.path)
        }
    };
    // The model is loaded once for every query (none is needed for a --code search).
    let coder = match (&coder, &args.code) {
        (Some(_), _) | (None, Some(_)) => coder,
        (None, None) => Some(Coder::load(&checkpoint, &Device::Cpu)?),
    };
    queries.each(
        coder.as_ref(),
        &mut |line, query| {
            search_binary_one(&args, coder.as_ref(), &index, &index_path, line, query)
        },
        &mut |line, why| print_bad_query(args.json, line, why),
    )
}

/// One query of a binary `search`: its code's nearest entries in `index`.
fn search_binary_one(
    args: &SearchArgs,
    coder: Option<&Coder>,
    index: &CorpusIndex,
    index_path: &std::path::Path,
    line: Option<usize>,
    query: Option<&str>,
) -> Result<()> {
    let (shown, code, unknown, left_out) = match (query, &args.code, coder) {
        (_, Some(bits), _) => (
            bits.clone(),
            crate::explore::parse_bits(bits).map_err(anyhow::Error::msg)?,
            Vec::new(),
            "",
        ),
        (Some(q), None, Some(coder)) => {
            coder.require_words(q)?;
            let code = coder.codes(&[q], &mut |_| {})?.remove(0);
            (
                crate::corpus::normalize(q),
                code,
                coder.unknown_words(q),
                left_out_label(coder),
            )
        }
        _ => anyhow::bail!("give a sentence to search for, or --code"),
    };
    let started = std::time::Instant::now();
    let hits = index.search(&code, args.k)?;
    let elapsed = started.elapsed();
    if args.json {
        return print_json(
            line,
            serde_json::json!({
                "query": shown, "code": crate::explore::bit_string(&code), "unknown": unknown,
                "index": index_path, "entries": index.len(), "neighbors": hits,
            }),
        );
    }
    println!("query  {}", Shown(&shown));
    println!("code   {}", crate::explore::bit_string(&code));
    if !unknown.is_empty() {
        println!("{left_out}: {}", shown_join(&unknown, ", "));
    }
    let width = label_width(hits.iter().map(|h| h.label));
    println!("{:>4} {:>4}  {:<width$}  text", "rank", "dist", "label");
    for (rank, h) in hits.iter().enumerate() {
        println!(
            "{:>4} {:>4}  {:<width$}  {}",
            rank + 1,
            h.distance,
            printable::shown(h.label.unwrap_or("–")),
            Shown(h.text)
        );
    }
    println!(
        "({} of {} entries, {:.2} ms)",
        hits.len(),
        index.len(),
        elapsed.as_secs_f64() * 1e3
    );
    if line.is_some() {
        println!();
    }
    Ok(())
}

/// The width of the label column: its longest label as shown, at least 5.
fn label_width<'a>(labels: impl Iterator<Item = Option<&'a str>>) -> usize {
    labels
        .flatten()
        .map(|l| printable::shown(l).chars().count())
        .max()
        .unwrap_or(5)
        .max(5)
}

/// `search` for continuous codes: exact cosine neighbours of the query's μ, or (with --match)
/// those neighbours re-ranked by multi-sample matching.
fn search_continuous(
    args: &SearchArgs,
    checkpoint: &std::path::Path,
    queries: &Queries,
    coder: Coder,
) -> Result<()> {
    if args.code.is_some() || matches!(queries, Queries::One(None)) {
        anyhow::bail!(
            "--code takes bits; {} has continuous codes: search by sentence",
            checkpoint.display()
        );
    }
    let cached = cached_index(&coder)?;
    let crate::pipeline::CodeIndex::Cosine(index) = &cached.index else {
        unreachable!("a continuous model's index holds μ")
    };
    queries.each(
        Some(&coder),
        &mut |line, query| {
            let query = query.expect("a sentence query (checked above)");
            search_continuous_one(args, &coder, index, &cached.path, line, query)
        },
        &mut |line, why| print_bad_query(args.json, line, why),
    )
}

/// One query of a continuous `search`.
fn search_continuous_one(
    args: &SearchArgs,
    coder: &Coder,
    index: &crate::index::continuous::ContinuousIndex,
    index_path: &std::path::Path,
    line: Option<usize>,
    query: &str,
) -> Result<()> {
    use crate::cosine::MatchRule;
    coder.require_words(query)?;
    let posterior = coder.posteriors(&[query], &mut |_| {})?.remove(0);
    let rule = MatchRule {
        samples: args.samples,
        min_close_pairs: args.min_pairs,
        radius: args.radius,
        candidates: args.candidates.max(args.k),
        seed: args.seed,
    };
    let started = std::time::Instant::now();
    let hits = if args.multi_sample {
        rule.validate()?;
        index.search_matching(&posterior, args.k, &rule)?
    } else {
        index.search(&posterior.mean, args.k)?
    };
    let elapsed = started.elapsed();
    let shown = crate::corpus::normalize(query);
    let unknown = coder.unknown_words(query);
    if args.json {
        return print_json(
            line,
            serde_json::json!({
                "query": shown, "mean": posterior.mean, "unknown": unknown,
                "index": index_path, "entries": index.len(),
                "match": args.multi_sample.then_some(serde_json::json!({
                    "samples": rule.samples, "min_pairs": rule.min_close_pairs,
                    "radius": rule.radius, "candidates": rule.candidates, "seed": rule.seed,
                })),
                "neighbors": hits,
            }),
        );
    }
    println!("query  {}", Shown(&shown));
    if !unknown.is_empty() {
        println!("{}: {}", left_out_label(coder), shown_join(&unknown, ", "));
    }
    let width = label_width(hits.iter().map(|h| h.label));
    if args.multi_sample {
        println!(
            "{:>4} {:>6} {:>7}  {:<width$}  text",
            "rank", "cosine", "pairs", "label"
        );
    } else {
        println!("{:>4} {:>6}  {:<width$}  text", "rank", "cosine", "label");
    }
    for (rank, h) in hits.iter().enumerate() {
        let pairs = match h.close_pairs {
            Some(c) if rule.is_match(c) => format!("{c:>7}"),
            Some(c) => format!("{:>7}", format!("({c})")),
            None => String::new(),
        };
        let pairs = if args.multi_sample {
            format!(" {pairs}")
        } else {
            pairs
        };
        println!(
            "{:>4} {:>6.3}{pairs}  {:<width$}  {}",
            rank + 1,
            h.similarity,
            printable::shown(h.label.unwrap_or("–")),
            Shown(h.text)
        );
    }
    let how = if args.multi_sample {
        format!(
            "; a match needs {} of {} sample pairs within {} (unmatched in parentheses)",
            rule.min_close_pairs,
            rule.samples * rule.samples,
            rule.radius
        )
    } else {
        String::new()
    };
    println!(
        "({} of {} entries, {:.2} ms{how})",
        hits.len(),
        index.len(),
        elapsed.as_secs_f64() * 1e3
    );
    if line.is_some() {
        println!();
    }
    Ok(())
}

#[derive(Args, Debug)]
pub struct ProbeArgs {
    /// The checkpoint whose codes are probed (default: checkpoints/binary.safetensors).
    pub checkpoint: Option<PathBuf>,
    /// Labelled corpus (default: the checkpoint's own, if it is the bundled `wordnet`).
    #[arg(long)]
    pub corpus: Option<String>,
    /// Feature sets to probe (comma-separated from codes, probs, logits; default: all the
    /// model has).
    #[arg(long, value_delimiter = ',')]
    pub features: Vec<FeatureKind>,
    /// Train on a seeded random subset of this many training examples.
    #[arg(long, default_value_t = 20000, value_parser = crate::cli::flags::count)]
    pub max_train: usize,
    /// Score on at most this many test examples (seeded random subset).
    #[arg(long, value_parser = crate::cli::flags::count)]
    pub max_test: Option<usize>,
    /// Training epochs of the probe.
    #[arg(long, default_value_t = 10, value_parser = crate::cli::flags::count)]
    pub epochs: usize,
    /// Hidden size of the probe's MLP.
    #[arg(long, default_value_t = 256, value_parser = crate::cli::flags::dim)]
    pub hidden_dim: usize,
    /// Adam learning rate of the probe.
    #[arg(long, default_value_t = 1e-3, value_parser = crate::cli::flags::learning_rate)]
    pub lr: f64,
    /// Seed of the subsets and the probe's initialisation and batches.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

fn probe(args: ProbeArgs) -> Result<()> {
    let checkpoint = binary_default(&args.checkpoint);
    let coder = Coder::load(&checkpoint, &Device::Cpu)?;
    let corpus = coder.corpus(args.corpus.as_deref())?;
    let mut data = crate::retrieval::RetrievalData::from_corpus(
        &corpus,
        Some(args.max_train),
        args.max_test,
        args.seed,
    )?;
    // The classes are the labels of the examples used, and their classifier must fit before
    // anything is encoded.
    data.keep_used_labels();
    // A factors corpus labels each sentence with its tuple of factor values: each factor is
    // probed on its own (a tuple as one class gave thousands of classes of a few examples).
    let factors = crate::factors::label_values(&data.label_names).is_some();
    let classes = if factors {
        crate::factors::GRAMMAR
            .factors
            .iter()
            .map(|f| f.values.len())
            .max()
            .unwrap_or(1)
    } else {
        data.label_names.len()
    };
    crate::probe::check_classifier_size(coder.latent_dim(), args.hidden_dim, classes)?;
    let kinds: Vec<FeatureKind> = if args.features.is_empty() {
        FeatureKind::ALL
            .into_iter()
            .filter(|&k| coder.supports(k).is_ok())
            .filter(|&k| k != FeatureKind::Logits || coder.is_binary())
            .collect()
    } else {
        args.features.clone()
    };
    let opts = crate::probe::ProbeOptions {
        hidden_dim: args.hidden_dim,
        epochs: args.epochs,
        lr: args.lr,
        seed: args.seed,
        ..Default::default()
    };
    let (train_texts, test_texts) = (&data.database.texts, &data.queries.texts);
    fn as_str(v: &[String]) -> Vec<&str> {
        v.iter().map(String::as_str).collect()
    }
    for &kind in &kinds {
        coder.supports(kind)?;
    }
    let bar = super::progress_bar("encoding");
    let loc_train = coder.latent_loc(&as_str(train_texts), &mut |f| {
        bar.set_position((f * 800.0) as u64)
    })?;
    let loc_test = coder.latent_loc(&as_str(test_texts), &mut |f| {
        bar.set_position(800 + (f * 200.0) as u64)
    })?;
    bar.finish_and_clear();
    let mut results = Vec::new();
    let mut by_factor = Vec::new();
    for kind in kinds {
        let read = |loc: &[Vec<f32>]| read_features(loc.to_vec(), kind, coder.is_binary());
        let (train_x, test_x) = (read(&loc_train), read(&loc_test));
        let (train_y, test_y) = (&data.database.labels, &data.queries.labels);
        if factors {
            let probes = crate::probe::factor_probes(
                &train_x,
                train_y,
                &test_x,
                test_y,
                &data.label_names,
                &opts,
            )?
            .context("factor labels")?;
            by_factor.push((kind, probes));
            continue;
        }
        let r = crate::probe::train_and_score(
            &train_x,
            train_y,
            &test_x,
            test_y,
            data.label_names.len(),
            &opts,
        )?;
        results.push((kind, r));
    }
    if factors {
        return print_factor_probes(&checkpoint, &coder, &corpus, &opts, &by_factor, args.json);
    }
    if args.json {
        let rows: Vec<_> = results
            .iter()
            .map(|(k, r)| serde_json::json!({"features": k, "result": r}))
            .collect();
        println!(
            "{}",
            crate::printable::to_json_pretty(&serde_json::json!({
                "checkpoint": checkpoint, "model": coder.config().describe(),
                "corpus": corpus.name, "classes": data.label_names.len(), "options": opts, "probes": rows,
            }))?
        );
        return Ok(());
    }
    println!("{}", checkpoint.display());
    println!("  {}", coder.config().describe());
    if let Some((_, r)) = results.first() {
        println!(
            "  `{}` labels ({} classes): MLP probe (hidden {}, {} epochs) on {} training examples, scored on {} test examples",
            Shown(&corpus.name),
            data.label_names.len(),
            opts.hidden_dim,
            opts.epochs,
            r.train_examples,
            r.test_examples
        );
        println!("  majority class: {:.2}%", r.majority_accuracy * 100.0);
    }
    println!("  {:<8} {:>10} {:>10}", "features", "train acc", "test acc");
    for (k, r) in &results {
        println!(
            "  {:<8} {:>9.2}% {:>9.2}%",
            k.name(),
            r.train_accuracy * 100.0,
            r.test_accuracy * 100.0
        );
    }
    Ok(())
}

#[derive(Args, Debug)]
#[command(override_usage = "latent-tui words [OPTIONS] [CHECKPOINT] [WORD]")]
pub struct WordsArgs {
    /// [CHECKPOINT] [WORD]: an nvdm or nash checkpoint (default:
    /// checkpoints/nvdm.safetensors); a single argument is the checkpoint if it names an
    /// existing file or ends in `.safetensors`, else the word.
    #[arg(value_name = "CHECKPOINT|WORD")]
    pub first: Option<String>,
    /// Show the nearest words of this word (cosine of decoder word vectors) instead of each
    /// dimension's top words.
    #[arg(value_name = "WORD")]
    pub second: Option<String>,
    /// Words per list.
    #[arg(long, default_value_t = 10, value_parser = crate::cli::flags::count)]
    pub top: usize,
    /// Only these latent dimensions (comma-separated; default: all).
    #[arg(long, value_delimiter = ',')]
    pub dims: Vec<usize>,
    /// Print JSON instead of plain text.
    #[arg(long)]
    pub json: bool,
}

/// The shipped model `words` reads by default: NVDM's decoder rows are its topics.
pub const DEFAULT_WORDS_CHECKPOINT: &str = "checkpoints/nvdm.safetensors";

impl WordsArgs {
    /// (checkpoint, word) from the positional arguments.
    fn checkpoint_and_word(&self) -> (PathBuf, Option<String>) {
        let default = || crate::cli::shipped_checkpoint(DEFAULT_WORDS_CHECKPOINT);
        match (&self.first, &self.second) {
            (Some(c), Some(w)) => (PathBuf::from(c), Some(w.clone())),
            (Some(one), None) => {
                let path = std::path::Path::new(one);
                if path.is_file() || one.ends_with(".safetensors") {
                    (path.to_path_buf(), None)
                } else {
                    (default(), Some(one.clone()))
                }
            }
            (None, _) => (default(), None),
        }
    }
}

fn words(args: WordsArgs) -> Result<()> {
    let (checkpoint, word) = args.checkpoint_and_word();
    let coder = Coder::load(&checkpoint, &Device::Cpu)?;
    let what = "show words: only the bag-of-words decoders of nvdm and nash have word vectors";
    let ckpt = coder.bag_of_words_model(what)?;
    let vectors = ckpt
        .model
        .word_vectors()
        .ok_or_else(|| coder.cannot(what))?;
    let vectors = crate::bow::rows(vectors)?;
    match &word {
        Some(word) => {
            let word = crate::corpus::normalize(word);
            let near = crate::bow::words::nearest_words(&ckpt.vocab, &vectors, &word, args.top)?;
            if args.json {
                println!(
                    "{}",
                    crate::printable::to_json_pretty(
                        &serde_json::json!({"word": word, "nearest": near})
                    )?
                );
            } else {
                println!(
                    "nearest words to `{}` (cosine of decoder word vectors):",
                    Shown(&word)
                );
                for (w, c) in near {
                    println!("  {c:6.3}  {}", Shown(&w));
                }
            }
        }
        None => {
            let dims: Vec<usize> = if args.dims.is_empty() {
                (0..ckpt.model.latent_dim()).collect()
            } else {
                args.dims.clone()
            };
            let topics =
                crate::bow::words::dimension_words(&ckpt.vocab, &vectors, &dims, args.top)?;
            if args.json {
                println!("{}", crate::printable::to_json_pretty(&topics)?);
            } else {
                println!(
                    "words whose probability rises most with each latent dimension (decoder weights):"
                );
                for t in &topics {
                    println!("  {:3} + {}", t.dim, shown_join(&t.positive, " "));
                    println!("      − {}", shown_join(&t.negative, " "));
                }
            }
        }
    }
    Ok(())
}

/// `probe`'s report on a factors corpus: per feature set, one probe per factor beside that
/// factor's majority baseline.
fn print_factor_probes(
    checkpoint: &Path,
    coder: &Coder,
    corpus: &Corpus,
    opts: &crate::probe::ProbeOptions,
    by_factor: &[(FeatureKind, Vec<crate::probe::FactorProbe>)],
    json: bool,
) -> Result<()> {
    if json {
        let rows: Vec<_> = by_factor
            .iter()
            .map(|(k, p)| serde_json::json!({"features": k, "factors": p}))
            .collect();
        let factors: Vec<_> = crate::factors::GRAMMAR
            .factors
            .iter()
            .map(|f| serde_json::json!({"factor": f.name, "classes": f.values.len()}))
            .collect();
        println!(
            "{}",
            crate::printable::to_json_pretty(&serde_json::json!({
                "checkpoint": checkpoint, "model": coder.config().describe(),
                "corpus": corpus.name, "labels": "factors", "factors": factors,
                "options": opts, "probes": rows,
            }))?
        );
        return Ok(());
    }
    println!("{}", checkpoint.display());
    println!("  {}", coder.config().describe());
    if let Some(r) = by_factor.first().and_then(|(_, p)| p.first()) {
        println!(
            "  `{}` is a factors corpus: an MLP probe per factor (hidden {}, {} epochs) on {} training examples, scored on {} test examples",
            Shown(&corpus.name),
            opts.hidden_dim,
            opts.epochs,
            r.result.train_examples,
            r.result.test_examples
        );
    }
    println!(
        "  {:<8} {:<10} {:>7} {:>9} {:>10} {:>10}",
        "features", "factor", "classes", "majority", "train acc", "test acc"
    );
    for (k, probes) in by_factor {
        for p in probes {
            println!(
                "  {:<8} {:<10} {:>7} {:>8.2}% {:>9.2}% {:>9.2}%",
                k.name(),
                p.factor,
                p.classes,
                p.result.majority_accuracy * 100.0,
                p.result.train_accuracy * 100.0,
                p.result.test_accuracy * 100.0
            );
        }
    }
    Ok(())
}

/// `latent-tui eval` for models whose codes decode to words (nvdm, nash): reconstruction of
/// the split's documents.
pub fn eval_words(coder: &Coder, args: &crate::cli::EvalArgs) -> Result<()> {
    let path = coder.path().to_path_buf();
    let bow = coder.bag_of_words_model("score bags of words")?;
    if args.real_words || args.recon_beam.is_some() {
        anyhow::bail!(
            "--real-words and --recon-beam shape sentence reconstructions; a `{}` model is scored on bags of words, without decoding sentences",
            coder.kind_name()
        );
    }
    let split = args.split;
    let corpus = coder.corpus(args.corpus.as_deref())?;
    // The first --max-sentences documents of the split, less those without a known word (the
    // count skipped is of these, not of the whole split).
    let docs = corpus.split(split);
    let docs = &docs[..args.max_sentences.map_or(docs.len(), |n| n.min(docs.len()))];
    let bags: Vec<_> = (docs.iter())
        .map(|e| crate::bow::bag_of_words(&bow.vocab, &e.text))
        .filter(|b| !b.is_empty())
        .collect();
    let skipped = docs.len() - bags.len();
    if bags.is_empty() {
        anyhow::bail!(
            "the {split} split of `{}` has no document with a known word",
            corpus.name
        );
    }
    let score = crate::bow::score_bags(&bow.model, &bags, args.seed)?;
    if args.json {
        println!(
            "{}",
            crate::printable::to_json_pretty(&serde_json::json!({
                "checkpoint": path, "corpus": corpus.name, "split": split.to_string(),
                "skipped_empty": skipped, "score": score, "ppl": score.ppl(),
                "ppl_bound": score.ppl_bound(), "kl_per_document": score.kl_per_document(),
            }))?
        );
        return Ok(());
    }
    println!("{}", path.display());
    println!("  {}", bow.config.describe());
    println!(
        "  {} / {split}: {} documents, {} words ({skipped} documents without known words skipped)",
        Shown(&corpus.name),
        score.documents,
        score.words
    );
    println!(
        "  perplexity, deterministic code: {:9.2}   (exp Σ NLL / Σ words)",
        score.ppl()
    );
    println!(
        "  document perplexity bound:      {:9.2}   (exp mean_d (NLL_d + KL_d) / N_d, z sampled; as in the NVDM paper)",
        score.ppl_bound()
    );
    println!(
        "  KL to the prior: {:.3} nats/document",
        score.kl_per_document()
    );
    Ok(())
}
