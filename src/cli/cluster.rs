//! The `cluster`, `attribute` and `analogy` subcommands: the command-line twins of the
//! explorer's Clusters tab, over [`crate::structure`].

use std::path::PathBuf;

use anyhow::{bail, Result};
use candle_core::Device;
use clap::{Args, Subcommand};
use serde_json::json;

use crate::cluster::{ClusterMethod, ClusterOptions};
use crate::coder::{Coder, FeatureKind};
use crate::corpus::{Corpus, Split};
use crate::explore::bit_string;
use crate::pipeline::{self, IndexCache};
use crate::printable::{shown_join, Shown};
use crate::structure::{analogy, changed_bits, AttributeVector, CodedCorpus, DECODED_WORDS};

#[derive(Subcommand, Debug)]
pub enum StructureCommand {
    /// Cluster a corpus's codes; label each cluster by its distinctive words; score against
    /// gold labels beside a TF-IDF k-means baseline.
    Cluster(ClusterArgs),
    /// Move a sentence's code from one label toward another and decode it.
    #[command(
        override_usage = "latent-tui attribute [CHECKPOINT] SENTENCE --from LABEL --to LABEL [--strength S] [--json]"
    )]
    Attribute(AttributeArgs),
    /// Decode z(C) + z(B) − z(A): "A is to B as C is to ?".
    #[command(override_usage = "latent-tui analogy [CHECKPOINT] A B C [--json]")]
    Analogy(AnalogyArgs),
}

#[derive(Args, Debug)]
pub struct ClusterArgs {
    /// Checkpoint (default: checkpoints/binary.safetensors).
    pub checkpoint: Option<PathBuf>,
    /// Corpus to cluster (default: the checkpoint's own).
    #[arg(long)]
    pub corpus: Option<String>,
    /// Number of clusters to make (default: the corpus's number of gold labels when 2 to 100,
    /// at least five entries each on average, else 10). `-k` counts clusters here; in `search`
    /// and `eval-retrieval` it counts results, in `map` neighbours.
    #[arg(short = 'k', long, value_parser = crate::cli::flags::count)]
    pub k: Option<usize>,
    /// kmedoids or kmodes (binary codes, Hamming distance) or kmeans (default: kmedoids for
    /// binary codes, kmeans for continuous ones).
    #[arg(long)]
    pub method: Option<ClusterMethod>,
    /// The split whose entries are clustered (train, valid or test).
    #[arg(long, default_value = "train")]
    pub split: Split,
    /// Cluster a seeded random subset of at most this many entries.
    #[arg(long, value_parser = crate::cli::flags::count)]
    pub max_entries: Option<usize>,
    /// Seed of the subset and of the k-means++ starts: the same seed, the same clusters.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Independent k-means++ starts; the cheapest clustering is kept.
    #[arg(long, default_value_t = 3, value_parser = crate::cli::flags::restarts)]
    pub restarts: usize,
    /// Iterations per start at most (stops earlier once no entry changes cluster).
    #[arg(long, default_value_t = 50, value_parser = crate::cli::flags::count)]
    pub max_iterations: usize,
    /// k-means: run the starts on a seeded sample of at most this many entries, then refine
    /// over all of them (0: every entry throughout).
    #[arg(long, default_value_t = crate::cluster::DEFAULT_SAMPLE, value_parser = crate::cli::flags::count_or_zero)]
    pub sample: usize,
    /// Also list every member's cluster (JSON only).
    #[arg(long)]
    pub assignments: bool,
    /// Keep the centres' decodings to words of the training corpus, as `analogy` and
    /// `attribute` do with it (subword models; needs the corpus).
    #[arg(long)]
    pub real_words: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct AttributeArgs {
    /// [CHECKPOINT] SENTENCE: the checkpoint may be left out (default:
    /// checkpoints/binary.safetensors).
    #[arg(num_args = 1..=2, required = true, value_name = "ARG")]
    pub args: Vec<String>,
    /// The label the vector starts from.
    #[arg(long)]
    pub from: String,
    /// The label the vector points to.
    #[arg(long)]
    pub to: String,
    /// Binary codes: how many of the most different bits to set (default 8); continuous: the
    /// multiple of mean(to) − mean(from) to add (default 1).
    #[arg(long, value_parser = crate::cli::flags::weight_f32)]
    pub strength: Option<f32>,
    /// Labelled corpus (default: the checkpoint's own).
    #[arg(long)]
    pub corpus: Option<String>,
    /// Examples per label averaged (seeded random subset of the train split).
    #[arg(long, default_value_t = 2000, value_parser = crate::cli::flags::count)]
    pub max_per_label: usize,
    /// Seed of the examples averaged per label.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Keep the decodings to words of the training corpus, as the explorer does by default
    /// (subword models; needs the corpus).
    #[arg(long)]
    pub real_words: bool,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct AnalogyArgs {
    /// [CHECKPOINT] A B C: the checkpoint may be left out (default:
    /// checkpoints/binary.safetensors).
    #[arg(num_args = 3..=4, required = true, value_name = "ARG")]
    pub args: Vec<String>,
    /// Keep the decodings to words of the training corpus, as the explorer does by default
    /// (subword models; needs the corpus).
    #[arg(long)]
    pub real_words: bool,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Splits positional values into an optional leading checkpoint and the `n` texts after it
/// (clap cannot leave out an optional positional that precedes required ones).
fn checkpoint_and_texts(
    mut values: Vec<String>,
    n: usize,
) -> Result<(Option<PathBuf>, Vec<String>)> {
    match values.len() {
        len if len == n => {
            super::not_a_checkpoint(&values[0], "the checkpoint first, then the sentences")?;
            Ok((None, values))
        }
        len if len == n + 1 => {
            let ckpt = values.remove(0);
            Ok((Some(PathBuf::from(ckpt)), values))
        }
        len => bail!("expected {n} sentences, optionally after a checkpoint; got {len} values"),
    }
}

pub fn run(command: StructureCommand) -> Result<()> {
    match command {
        StructureCommand::Cluster(a) => cluster(a),
        StructureCommand::Attribute(a) => attribute(a),
        StructureCommand::Analogy(a) => analogy_command(a),
    }
}

pub(super) fn load(checkpoint: &Option<PathBuf>) -> Result<(PathBuf, Coder)> {
    let path = checkpoint
        .clone()
        .unwrap_or_else(crate::cli::default_checkpoint);
    let coder = Coder::load(&path, &Device::Cpu)?;
    if !coder.capabilities().encodes {
        bail!(
            "`{}` holds an `lm` model, which has no encoder and so no codes",
            path.display()
        );
    }
    Ok((path, coder))
}

/// The codes to cluster ([`crate::pipeline::corpus_codes`]): the index saved beside a binary
/// checkpoint when it is fresh, else the split encoded now; `cluster` never writes the index.
fn coded_corpus(coder: &Coder, corpus: &Corpus, args: &ClusterArgs) -> Result<CodedCorpus> {
    let bar = super::progress_bar("encoding");
    let data = pipeline::corpus_codes(
        coder,
        corpus,
        args.split,
        args.max_entries,
        args.seed,
        IndexCache::LoadOnly,
        &mut |f| bar.set_position((f * 1000.0) as u64),
    )?;
    bar.finish_and_clear();
    Ok(data)
}

fn cluster(args: ClusterArgs) -> Result<()> {
    let (path, coder) = load(&args.checkpoint)?;
    let corpus = coder.corpus(args.corpus.as_deref())?;
    let method = args
        .method
        .unwrap_or(pipeline::default_method(coder.is_binary()));
    if method.is_hamming() && !coder.is_binary() {
        bail!(
            "`{}` has continuous codes; {} needs binary codes, use --method kmeans",
            path.display(),
            method.name()
        );
    }
    // Refused (or noted) before any work, as `analogy` and `attribute` do.
    let words = super::real_words_of(&coder, args.real_words)?;
    let data = coded_corpus(&coder, &corpus, &args)?;
    let opts = ClusterOptions {
        k: args.k.unwrap_or(pipeline::default_k(&data)),
        seed: args.seed,
        max_iterations: args.max_iterations.max(1),
        restarts: args.restarts.max(1),
        sample: args.sample,
    };
    let report = pipeline::cluster_codes(&coder, &data, Some(method), &opts, words.as_deref())?;
    if args.json {
        let mut value = serde_json::to_value(&report)?;
        value["checkpoint"] = json!(path);
        value["model"] = json!(coder.config().describe());
        value["real_words"] = json!(words.is_some());
        // Centres as every command writes a code (`encode`'s form): a binary centre of bits as
        // a `0101…` string, a mean (k-means) as numbers.
        let binary = coder.is_binary();
        for (c, v) in report
            .clusters
            .iter()
            .zip(value["clusters"].as_array_mut().into_iter().flatten())
        {
            v["center"] = crate::explore::code_json(&c.center, binary);
        }
        if args.assignments {
            value["assignment"] = json!(report.assignment);
        }
        println!("{}", crate::printable::to_json_pretty(&value)?);
    } else {
        print!(
            "{}",
            report.render(&format!(
                "{} · {}",
                path.display(),
                coder.config().describe()
            ))
        );
    }
    Ok(())
}

/// A one-line notice of the words a model does not know in `text`, if any.
fn unknown_notice(coder: &Coder, text: &str) -> Option<String> {
    let unknown = coder.unknown_words(text);
    (!unknown.is_empty()).then(|| {
        format!(
            "{}: {}",
            crate::cli::bow::left_out_label(coder),
            shown_join(&unknown, ", ")
        )
    })
}

fn encode_one(coder: &Coder, text: &str) -> Result<Vec<f32>> {
    if crate::corpus::normalize(text).trim().is_empty() {
        bail!("the sentence `{text}` has no words to encode");
    }
    coder.require_words(text)?;
    Ok(coder
        .features(&[text], FeatureKind::Codes, &mut |_| {})?
        .remove(0))
}

fn code_text(code: &[f32], binary: bool) -> String {
    if binary {
        bit_string(code)
    } else {
        code.iter()
            .map(|v| format!("{v:+.2}"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

fn attribute(args: AttributeArgs) -> Result<()> {
    let (checkpoint, mut texts) = checkpoint_and_texts(args.args.clone(), 1)?;
    let sentence = texts.remove(0);
    let (path, coder) = load(&checkpoint)?;
    let corpus = coder.corpus(args.corpus.as_deref())?;
    let model = &coder;
    let bar = super::progress_bar("encoding the two labels");
    let data = CodedCorpus::encode_labels(
        model,
        &corpus,
        Split::Train,
        &[&args.from, &args.to],
        args.max_per_label.max(1),
        args.seed,
        &mut |f| bar.set_position((f * 1000.0) as u64),
    )?;
    bar.finish_and_clear();
    let vector = AttributeVector::between(&data, &args.from, &args.to)?;
    let binary = coder.is_binary();
    let strength = args.strength.unwrap_or(if binary { 8.0 } else { 1.0 });
    if strength < 0.0 || !strength.is_finite() {
        bail!("--strength must be a non-negative number, not {strength}");
    }
    let code = encode_one(&coder, &sentence)?;
    let edited = vector.apply(&code, strength);
    let words = super::real_words_of(&coder, args.real_words)?;
    let decoded = model.decode_codes_restricted(
        &[code.clone(), edited.clone()],
        DECODED_WORDS,
        words.as_deref(),
    )?;
    let changed = binary.then(|| changed_bits(&code, &edited));
    if args.json {
        println!(
            "{}",
            crate::printable::to_json_pretty(&json!({
                "checkpoint": path, "model": coder.config().describe(), "corpus": corpus.name,
                "sentence": sentence, "unknown_words": coder.unknown_words(&sentence),
                "vector": vector, "ranked": vector.ranked(), "strength": strength,
                "code": crate::explore::code_json(&code, binary), "edited": crate::explore::code_json(&edited, binary),
                "changed_bits": changed, "real_words": words.is_some(),
                "decoding": decoded.as_ref().map(|d| &d[0]),
                "edited_decoding": decoded.as_ref().map(|d| &d[1]),
            }))?
        );
        return Ok(());
    }
    println!("{} · {}", path.display(), coder.config().describe());
    println!(
        "attribute {} ({} sentences) → {} ({} sentences) of `{}`",
        Shown(&vector.from),
        vector.from_count,
        Shown(&vector.to),
        vector.to_count,
        Shown(&corpus.name)
    );
    match &changed {
        Some(bits) => println!(
            "strength {} bits of {} that differ: changed {} ({})",
            strength.round(),
            vector.max_bits(),
            bits.len(),
            bits.iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        None => println!(
            "strength {strength} × (mean({}) − mean({}))",
            Shown(&vector.to),
            Shown(&vector.from)
        ),
    }
    println!("sentence  {}", Shown(&sentence));
    if let Some(n) = unknown_notice(&coder, &sentence) {
        println!("          {n}");
    }
    println!("code      {}", code_text(&code, binary));
    println!("edited    {}", code_text(&edited, binary));
    match decoded {
        Some(d) => {
            println!("decodes   {}", Shown(&d[0]));
            println!("edited →  {}", Shown(&d[1]));
        }
        None => println!("(this model has no decoder)"),
    }
    Ok(())
}

fn analogy_command(args: AnalogyArgs) -> Result<()> {
    let (checkpoint, sentences) = checkpoint_and_texts(args.args.clone(), 3)?;
    let (path, coder) = load(&checkpoint)?;
    let model = &coder;
    let binary = coder.is_binary();
    let texts = [&sentences[0], &sentences[1], &sentences[2]];
    let codes: Vec<Vec<f32>> = texts
        .iter()
        .map(|t| encode_one(&coder, t))
        .collect::<Result<_>>()?;
    let result = analogy(&codes[0], &codes[1], &codes[2], binary);
    let mut all = codes.clone();
    all.push(result.clone());
    let words = super::real_words_of(&coder, args.real_words)?;
    let decoded = model.decode_codes_restricted(&all, DECODED_WORDS, words.as_deref())?;
    let rule = if binary {
        "per bit, C + B − A rounded at ½: B's bit where A and B differ, else C's"
    } else {
        "z(C) + z(B) − z(A)"
    };
    if args.json {
        println!(
            "{}",
            crate::printable::to_json_pretty(&json!({
                "checkpoint": path, "model": coder.config().describe(), "rule": rule,
                "a": sentences[0], "b": sentences[1], "c": sentences[2],
                "codes": codes.iter().map(|c| crate::explore::code_json(c, binary)).collect::<Vec<_>>(),
                "result": crate::explore::code_json(&result, binary), "decodings": decoded,
                "real_words": words.is_some(),
                "changed_bits": binary.then(|| changed_bits(&codes[2], &result)),
            }))?
        );
        return Ok(());
    }
    println!("{} · {}", path.display(), coder.config().describe());
    println!("rule: {rule}");
    for (name, (text, code)) in ["A", "B", "C"].iter().zip(texts.iter().zip(&codes)) {
        println!("{name}  {}", Shown(text));
        if let Some(n) = unknown_notice(&coder, text) {
            println!("   {n}");
        }
        println!("   code     {}", code_text(code, binary));
        if let Some(d) = &decoded {
            let i = ["A", "B", "C"].iter().position(|n| n == name).unwrap_or(0);
            println!("   decodes  {}", Shown(&d[i]));
        }
    }
    println!("C + B − A");
    println!("   code     {}", code_text(&result, binary));
    if binary {
        println!(
            "   differs from C in {} bits",
            changed_bits(&codes[2], &result).len()
        );
    }
    match &decoded {
        Some(d) => println!("   decodes  {}", Shown(&d[3])),
        None => println!("   (this model has no decoder)"),
    }
    Ok(())
}
