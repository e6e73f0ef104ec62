//! `latent-tui map`: the corpus map of the explorer (Neighbors `m`, Clusters `v`) from the
//! command line: its layout as TSV for plotting elsewhere, as a PNG, and its scores.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Result};
use candle_core::Device;
use clap::Args;

use crate::checkpoint::write_atomically;
use crate::cluster::{ClusterMethod, ClusterOptions};
use crate::coder::Coder;
use crate::map::{Layout, LayoutOptions, Method};
use crate::structure::{cluster_corpus, CodedCorpus};
use crate::tui::worker::{neighbor_index, Entries};

#[derive(Args, Debug)]
pub struct MapArgs {
    /// Checkpoint (default: checkpoints/binary.safetensors).
    pub checkpoint: Option<PathBuf>,
    /// Corpus to map (default: the checkpoint's own); its train split is indexed.
    #[arg(long)]
    pub corpus: Option<String>,
    /// umap (neighbour-preserving, cached beside the checkpoint) or pca.
    #[arg(long, value_enum, default_value_t = Method::Umap)]
    pub method: Method,
    /// Seed of the layout (the same seed, the same map).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Write x, y, label, cluster, text per entry as TSV (with a header line).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Draw the map as a PNG, points coloured by gold label.
    #[arg(long)]
    pub png: Option<PathBuf>,
    /// Width and height of the PNG in pixels (64 to 8192).
    #[arg(long, default_value_t = 800, value_parser = clap::value_parser!(u32).range(64..=8192))]
    pub png_size: u32,
    /// Cluster the codes into K clusters (k-medoids for bits, k-means for μ) for the TSV's
    /// cluster column (default: the column is empty).
    #[arg(long, value_parser = crate::cli::flags::count)]
    pub clusters: Option<usize>,
    /// Score the map beside the PCA projection: neighbourhood preservation and gold-label
    /// kNN accuracy on the map and in code space.
    #[arg(long)]
    pub score: bool,
    /// Entries scored (a seeded sample).
    #[arg(long, default_value_t = 5000, value_parser = crate::cli::flags::count)]
    pub queries: usize,
    /// How many nearest neighbours per entry --score compares, on the map and in code space
    /// (neighbourhood preservation and kNN accuracy; at most 1,000); the layout's own
    /// neighbour graph does not change with it. `--k` counts neighbours here; in `search` and
    /// `eval-retrieval` it counts results, in `cluster` clusters (`--clusters` here).
    #[arg(long, default_value_t = 10, value_parser = crate::cli::flags::neighbours)]
    pub k: usize,
    /// Print JSON instead of plain text.
    #[arg(long)]
    pub json: bool,
    /// Replace an existing --out or --png file that is not a map this command wrote.
    #[arg(long)]
    pub force: bool,
}

pub fn run(args: MapArgs) -> Result<()> {
    let checkpoint = args
        .checkpoint
        .clone()
        .unwrap_or_else(crate::cli::default_checkpoint);
    if args.k == 0 || args.queries == 0 {
        bail!("--k and --queries must be at least 1");
    }
    if args.clusters == Some(0) {
        bail!("--clusters must be at least 1");
    }
    // Never write over the checkpoint, its index or its map (in the cache directory or beside
    // it), nor both outputs to one file.
    let own: Vec<PathBuf> = std::iter::once(checkpoint.clone())
        .chain(crate::index::cache_paths(&checkpoint, "index.safetensors"))
        .chain(crate::index::cache_paths(&checkpoint, "map.safetensors"))
        .collect();
    let outputs: Vec<&PathBuf> = args.out.iter().chain(&args.png).collect();
    for o in &outputs {
        if own.iter().any(|p| same_file(p, o)) {
            bail!(
                "`{}` is the checkpoint or one of its caches: choose another output file",
                o.display()
            );
        }
    }
    if let [a, b] = outputs.as_slice() {
        if same_file(a, b) {
            bail!("--out and --png name the same file");
        }
    }
    // Checked before any work: never a directory or device, never a file this command did
    // not write (a corpus, a picture) unless --force.
    if let Some(out) = &args.out {
        crate::checkpoint::check_output_target(
            out,
            "a map TSV",
            &crate::map::is_map_tsv,
            args.force,
        )?;
    }
    if let Some(png) = &args.png {
        crate::checkpoint::check_output_target(
            png,
            "a map PNG",
            &crate::map::plot::is_map_png,
            args.force,
        )?;
    }
    let coder = Coder::load(&checkpoint, &Device::Cpu)?;
    let bar = super::progress_bar("indexing");
    let started = Instant::now();
    let index = neighbor_index(&coder, args.corpus.as_deref(), &mut |f| {
        bar.set_position((f * 1000.0) as u64)
    })?;
    bar.finish_and_clear();
    let indexed = started.elapsed().as_secs_f64();
    let entries = &index.index;
    let codes = entries.codes();
    let opts = LayoutOptions {
        method: args.method,
        seed: args.seed,
        ..LayoutOptions::default()
    };
    let bar = super::progress_bar("laying out");
    let started = Instant::now();
    let cached = Layout::load_or_compute(&checkpoint, entries.meta(), codes, &opts, &mut |f| {
        bar.set_position((f * 1000.0) as u64)
    })?;
    bar.finish_and_clear();
    let laid_out = started.elapsed().as_secs_f64();
    if let Some(e) = &cached.save_error {
        eprintln!(
            "note: the map could not be saved to {} ({e}); it is computed again next time",
            cached.path.display()
        );
    }
    let layout = &cached.layout;
    let how = if cached.from_disk {
        format!("loaded from {}", cached.path.display())
    } else if args.method == Method::Umap {
        format!("computed and saved to {}", cached.path.display())
    } else {
        "computed".to_string()
    };
    let clusters = match args.clusters {
        Some(k) => Some(cluster(&coder, entries, k, args.seed)?),
        None => None,
    };
    if let Some(out) = &args.out {
        let mut text = format!("{}\n", crate::map::TSV_HEADER);
        for (i, p) in layout.points.iter().enumerate() {
            let label = entries
                .label(i)
                .map(|l| entries.label_names()[l as usize].as_str());
            let cluster = clusters.as_ref().map(|c| c[i]);
            text.push_str(&crate::map::tsv_row(
                *p,
                label,
                cluster,
                &entries.texts()[i],
            ));
            text.push('\n');
        }
        write_atomically(out, text.as_bytes())?;
    }
    if let Some(png) = &args.png {
        let bytes = crate::map::plot::png(&layout.points, entries.labels(), args.png_size)?;
        write_atomically(png, &bytes)?;
    }
    let scores = if args.score {
        let bar = super::progress_bar("scoring");
        bar.set_position(0);
        let labels = entries.labels();
        let this = crate::map::score(
            codes,
            &layout.points,
            labels,
            args.k,
            args.queries,
            args.seed,
        );
        let pca = if args.method == Method::Pca {
            None
        } else {
            let pca = Layout::compute(
                codes,
                entries.meta(),
                &LayoutOptions {
                    method: Method::Pca,
                    ..opts
                },
                &mut |_| {},
            )?;
            Some(crate::map::score(
                codes,
                &pca.points,
                labels,
                args.k,
                args.queries,
                args.seed,
            ))
        };
        bar.finish_and_clear();
        Some((this, pca))
    } else {
        None
    };
    if args.json {
        println!(
            "{}",
            crate::printable::to_json_pretty(&serde_json::json!({
                "checkpoint": checkpoint,
                "entries": layout.len(),
                "method": args.method,
                "seed": args.seed,
                // Only a UMAP layout is cached: a PCA one has no file.
                "layout": (cached.from_disk || args.method == Method::Umap).then_some(&cached.path),
                "from_disk": cached.from_disk,
                "index_seconds": indexed,
                "layout_seconds": laid_out,
                "out": args.out,
                "png": args.png,
                "score": scores.as_ref().map(|s| &s.0),
                "pca_score": scores.as_ref().and_then(|s| s.1.as_ref()),
            }))?
        );
        return Ok(());
    }
    println!(
        "{} map of {} entries ({} codes, {}) in {:.1} s; {how}",
        args.method.name(),
        layout.len(),
        match entries {
            Entries::Hamming(_) => "binary, Hamming",
            Entries::Cosine(_) => "continuous, cosine",
        },
        crate::printable::Shown(&entries.meta().corpus),
        laid_out
    );
    if let Some(out) = &args.out {
        println!("wrote {}", out.display());
    }
    if let Some(png) = &args.png {
        println!("wrote {}", png.display());
    }
    if let Some((this, pca)) = &scores {
        let pct = |v: Option<f64>| v.map_or("–".to_string(), |v| format!("{:.3}", v));
        println!(
            "scored on {} entries, k = {}:\n{:<6} {:>12} {:>14} {:>15}",
            this.queries, this.k, "map", "preservation", "map kNN acc", "code kNN acc"
        );
        let row = |name: &str, s: &crate::map::MapScore| {
            println!(
                "{:<6} {:>12.3} {:>14} {:>15}",
                name,
                s.preservation,
                pct(s.map_label_accuracy),
                pct(s.code_label_accuracy)
            )
        };
        row(args.method.name(), this);
        if let Some(p) = pca {
            row("PCA", p);
        }
    }
    Ok(())
}

/// Each entry's cluster (0-based), from clustering all of the index's codes.
fn cluster(coder: &Coder, entries: &Entries, k: usize, seed: u64) -> Result<Vec<usize>> {
    let data = match entries {
        Entries::Hamming(ix) => CodedCorpus::from_index(ix),
        Entries::Cosine(ix) => CodedCorpus {
            corpus: ix.meta.corpus.clone(),
            split: ix.meta.splits.join("+"),
            texts: ix.texts.clone(),
            labels: ix.labels.clone(),
            label_names: ix.label_names.clone(),
            codes: (0..ix.len()).map(|i| ix.mean(i).to_vec()).collect(),
            binary: false,
        },
    };
    let method = if coder.is_binary() {
        ClusterMethod::KMedoids
    } else {
        ClusterMethod::KMeans
    };
    let opts = ClusterOptions {
        k: k.min(data.len()),
        seed,
        ..ClusterOptions::default()
    };
    Ok(cluster_corpus(&data, method, &opts)?.assignment)
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}
