//! The `bits` subcommand: what each bit (dimension) of a model means, over [`crate::meaning`].

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use crate::meaning::{MeaningOptions, Meanings};

#[derive(Args, Debug)]
pub struct BitsArgs {
    /// Checkpoint (default: checkpoints/binary.safetensors).
    pub checkpoint: Option<PathBuf>,
    /// Corpus to read the bits off (default: the checkpoint's own).
    #[arg(long)]
    pub corpus: Option<String>,
    /// Train entries (a seeded subset) split by each bit for its distinctive words and labels.
    #[arg(long, default_value_t = MeaningOptions::default().entries, value_parser = crate::cli::flags::count)]
    pub entries: usize,
    /// Greedy decodings in all for the flips (the sentences follow from it and the code width).
    #[arg(long, default_value_t = MeaningOptions::default().decodings, value_parser = crate::cli::flags::count_or_zero)]
    pub decodings: usize,
    /// Words kept per side.
    #[arg(long, default_value_t = MeaningOptions::default().words, value_parser = crate::cli::flags::count)]
    pub words: usize,
    /// Seed of the entries and sentences sampled.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Print the table as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: BitsArgs) -> Result<()> {
    let (_, coder) = super::cluster::load(&args.checkpoint)?;
    let corpus = coder.corpus(args.corpus.as_deref())?;
    let opts = MeaningOptions {
        entries: args.entries,
        decodings: args.decodings,
        words: args.words,
        seed: args.seed,
        ..MeaningOptions::default()
    };
    let bar = super::progress_bar("reading the bits");
    let cached = Meanings::load_or_compute(&coder, &corpus, &opts, &mut |f| {
        bar.set_position((f * 1000.0) as u64)
    })?;
    bar.finish_and_clear();
    if let Some(e) = &cached.save_error {
        eprintln!("note: the meanings could not be saved: {e}");
    } else if !cached.from_disk {
        eprintln!("saved {}", cached.path.display());
    }
    if args.json {
        println!("{}", crate::printable::to_json_pretty(&cached.index)?);
    } else {
        print!("{}", cached.index.render());
    }
    Ok(())
}
