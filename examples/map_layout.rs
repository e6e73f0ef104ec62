//! Times the corpus map of a checkpoint's saved index (build it first with `latent-tui map`
//! or the explorer): the k-nearest-neighbour graph, the descent, loading the saved layout,
//! placing new codes; then scores the layout beside PCA.
//!
//!     cargo run --release --example map_layout -- CKPT [EPOCHS] [NEIGHBORS] [NEGATIVES] [ENTRIES]
//!
//! ENTRIES lays out only ENTRIES evenly spaced entries (quicker experiments; the index is in
//! corpus order, so the first entries would be a few labels only). With MAP_STATS=1 it first
//! prints quantiles of each entry's 10th-nearest code distance and of how many entries lie
//! within it (ties), brute force on about 500 entries.
//!
//! With MAP_RECALL=1 (continuous codes) it first times the exact and the approximate
//! k-nearest-neighbour graphs and prints the approximate one's recall; MAP_TREES, MAP_LEAF,
//! MAP_ITERS and MAP_CANDIDATES set the approximate graph's `DescentOptions` there.
//!
//! Run with RAYON_NUM_THREADS=2 for the figures in docs/map.md. Times are wall clock and the
//! process's CPU time (what to trust on a busy machine).

use std::time::Instant;

use latent_tui::index::ContinuousIndex;
use latent_tui::index::CorpusIndex;
use latent_tui::map::layout::{approximate_knn_graph, exact_knn_graph, knn_recall};
use latent_tui::map::nndescent::DescentOptions;
use latent_tui::map::{score, Codes, Layout, LayoutOptions, Method};
use latent_tui::train::process_cpu_seconds;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let ckpt = std::path::PathBuf::from(
        args.get(1)
            .cloned()
            .unwrap_or_else(|| "checkpoints/binary.safetensors".into()),
    );
    let arg = |i: usize| args.get(i).and_then(|s| s.parse::<usize>().ok());
    let opts = LayoutOptions {
        epochs: arg(2),
        neighbors: arg(3).unwrap_or(15),
        negatives: arg(4),
        ..LayoutOptions::default()
    };
    let path = CorpusIndex::default_path(&ckpt);
    let binary = CorpusIndex::load(&path).ok();
    let continuous = if binary.is_none() {
        Some(ContinuousIndex::load(&path)?)
    } else {
        None
    };
    let keep = arg(5).unwrap_or(usize::MAX);
    let sub_bits;
    let sub_units;
    let sub_labels;
    let (codes, labels, meta) = match (&binary, &continuous) {
        (Some(b), _) => {
            let n = keep.min(b.len());
            let step = b.len() / n;
            let pick: Vec<usize> = (0..n).map(|i| i * step).collect();
            let words: Vec<u64> = pick
                .iter()
                .flat_map(|&i| b.codes.code(i).to_vec())
                .collect();
            sub_bits = latent_tui::hamming::PackedCodes::from_words(b.bits(), words)
                .map_err(anyhow::Error::msg)?;
            sub_labels = pick.iter().map(|&i| b.labels[i]).collect::<Vec<_>>();
            (Codes::Bits(&sub_bits), &sub_labels[..], &b.meta)
        }
        (_, Some(c)) => {
            let n = keep.min(c.len());
            let step = c.len() / n;
            let pick: Vec<usize> = (0..n).map(|i| i * step).collect();
            let u = c.unit_vectors();
            sub_units =
                latent_tui::cosine::UnitVectors::new(u.dim(), pick.iter().map(|&i| u.row(i)))?;
            sub_labels = pick.iter().map(|&i| c.labels[i]).collect::<Vec<_>>();
            (Codes::Unit(&sub_units), &sub_labels[..], &c.meta)
        }
        _ => unreachable!(),
    };
    println!(
        "{} entries, {} threads, {opts:?}",
        codes.len(),
        rayon::current_num_threads()
    );
    if std::env::var("MAP_STATS").is_ok() {
        let n = codes.len();
        let q: Vec<usize> = (0..n).step_by((n / 500).max(1)).collect();
        let mut radii = Vec::new();
        let mut sizes = Vec::new();
        for &i in &q {
            let mut d: Vec<f32> = (0..n)
                .filter(|&j| j != i)
                .map(|j| codes.distance(i, j))
                .collect();
            d.sort_by(|a, b| a.total_cmp(b));
            let r = d[9];
            radii.push(r);
            sizes.push(d.iter().filter(|&&x| x <= r).count());
        }
        radii.sort_by(|a, b| a.total_cmp(b));
        sizes.sort();
        let qs = |v: &[f32]| [0.1, 0.25, 0.5, 0.75, 0.9].map(|f| v[(f * v.len() as f64) as usize]);
        println!("r10 quantiles {:?}", qs(&radii));
        let sz: Vec<f32> = sizes.iter().map(|&x| x as f32).collect();
        println!(
            "|S| quantiles {:?} mean {}",
            qs(&sz),
            sz.iter().sum::<f32>() / sz.len() as f32
        );
    }
    if let (Ok(_), Codes::Unit(units)) = (std::env::var("MAP_RECALL"), codes) {
        recall(units, opts.neighbors, opts.seed);
    }
    let started = Instant::now();
    let cpu = process_cpu_seconds();
    let mut graph_done = None;
    let layout = Layout::compute(codes, meta, &opts, &mut |f| {
        if f >= 0.5 && graph_done.is_none() {
            graph_done = Some((started.elapsed().as_secs_f64(), process_cpu_seconds() - cpu));
        }
    })?;
    let total = started.elapsed().as_secs_f64();
    let total_cpu = process_cpu_seconds() - cpu;
    let (graph, graph_cpu) = graph_done.unwrap_or((0.0, 0.0));
    println!(
        "layout: {total:.1} s (kNN graph {graph:.1} s, descent {:.1} s); CPU {total_cpu:.1} s \
         (kNN graph {graph_cpu:.1} s, descent {:.1} s)",
        total - graph,
        total_cpu - graph_cpu
    );
    let dir = tempfile_dir();
    let saved = dir.join("map.safetensors");
    layout.save(&saved)?;
    let t = Instant::now();
    let back = Layout::load(&saved)?;
    println!("load: {:.3} s", t.elapsed().as_secs_f64());
    assert_eq!(back, layout);
    std::fs::remove_file(&saved)?;
    let mut times = Vec::new();
    for i in (0..codes.len()).step_by((codes.len() / 50).max(1)).take(50) {
        let mut code = codes.code(i);
        code[0] = 1.0 - code[0];
        let t = Instant::now();
        layout.place(codes, &code)?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(|a, b| a.total_cmp(b));
    println!(
        "place a new code: median {:.2} ms, worst {:.2} ms ({} codes)",
        times[times.len() / 2],
        times[times.len() - 1],
        times.len()
    );
    let s = score(codes, &layout.points, labels, 10, 5000, 0);
    // The PCA plane alone (the start of every UMAP layout): the fit on up to 5,000 codes and
    // the projection of every entry.
    let (t, c) = (Instant::now(), process_cpu_seconds());
    let pca = Layout::compute(
        codes,
        meta,
        &LayoutOptions {
            method: Method::Pca,
            ..opts
        },
        &mut |_| {},
    )?;
    println!(
        "PCA plane: {:.3} s, CPU {:.3} s",
        t.elapsed().as_secs_f64(),
        process_cpu_seconds() - c
    );
    let p = score(codes, &pca.points, labels, 10, 5000, 0);
    println!("UMAP {s:?}\nPCA  {p:?}");
    Ok(())
}

fn tempfile_dir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("map-layout-{}", std::process::id()));
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// Times the exact and the approximate graphs of `units` and prints the recall.
fn recall(units: &latent_tui::cosine::UnitVectors, k: usize, seed: u64) {
    let env = |name: &str| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
    };
    let d = DescentOptions::default();
    let opts = DescentOptions {
        trees: env("MAP_TREES").unwrap_or(d.trees),
        leaf_size: env("MAP_LEAF").unwrap_or(d.leaf_size),
        max_iterations: env("MAP_ITERS").unwrap_or(d.max_iterations),
        candidates: env("MAP_CANDIDATES").or(d.candidates),
        ..d
    };
    let timed = |f: &mut dyn FnMut() -> latent_tui::map::layout::Knn| {
        let (t, c) = (Instant::now(), process_cpu_seconds());
        let knn = f();
        (knn, t.elapsed().as_secs_f64(), process_cpu_seconds() - c)
    };
    let (approx, at, ac) = timed(&mut || approximate_knn_graph(units, k, seed, &opts, &mut |_| {}));
    println!("approximate kNN graph ({opts:?}): {at:.1} s, CPU {ac:.1} s");
    let (exact, et, ec) = timed(&mut || exact_knn_graph(Codes::Unit(units), k, seed, &mut |_| {}));
    println!("exact kNN graph: {et:.1} s, CPU {ec:.1} s");
    println!(
        "recall of the approximate graph: {:.4}",
        knn_recall(&approx, &exact)
    );
}
