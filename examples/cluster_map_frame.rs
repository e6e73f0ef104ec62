//! Measures the UI thread's cost of drawing the Clusters tab's Map view (density binning of
//! every entry, nearest entries, canvas) for a large synthetic corpus of binary codes: the
//! clustering and projection are computed first (the background worker's share), then frames
//! are drawn into an off-screen 120×40 terminal and timed.
//!
//!     cargo run --release --example cluster_map_frame -- [ENTRIES] [CKPT]

use std::sync::Arc;
use std::time::Instant;

use candle_core::Device;
use latent_tui::cluster::{ClusterMethod, ClusterOptions};
use latent_tui::coder::Coder;
use latent_tui::hamming::PackedCodes;
use latent_tui::structure::{cluster_corpus, CodedCorpus};
use latent_tui::tui::app::{App, AppOptions, Tab};
use latent_tui::tui::cluster_map::ClusterMap;
use latent_tui::tui::clusters::{ClusterView, ClustersView};
use latent_tui::tui::widgets::Theme;
use latent_tui::tui::worker::ModelInfo;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use ratatui::backend::TestBackend;
use ratatui::Terminal;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args
        .get(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let ckpt = args
        .get(2)
        .cloned()
        .unwrap_or_else(|| "checkpoints/binary.safetensors".into());
    let coder = Coder::load(ckpt.as_ref(), &Device::Cpu)?;
    let bits = coder.latent_dim();
    // Codes around 45 random prototypes, each bit flipped with probability 0.2.
    let mut rng = StdRng::seed_from_u64(1);
    let protos: Vec<Vec<bool>> = (0..45)
        .map(|_| (0..bits).map(|_| rng.random_bool(0.5)).collect())
        .collect();
    let words = ["alpha", "beta", "gamma", "delta", "omega", "sigma"];
    let mut data = CodedCorpus {
        corpus: "synthetic".into(),
        split: "train".into(),
        binary: true,
        ..Default::default()
    };
    for i in 0..n {
        let p = &protos[i % protos.len()];
        data.codes.push(
            p.iter()
                .map(|&b| (b ^ rng.random_bool(0.2)) as u8 as f32)
                .collect(),
        );
        data.texts
            .push(format!("{} {}", words[i % 6], words[(i / 6) % 6]));
        data.labels.push(None);
    }
    let started = Instant::now();
    let opts = ClusterOptions {
        k: 45,
        restarts: 1,
        ..Default::default()
    };
    let report = cluster_corpus(&data, ClusterMethod::KModes, &opts)?;
    let map = ClusterMap::build(&data, &report.assignment, report.clusters.len());
    let packed = Some(PackedCodes::from_codes(
        bits,
        data.codes.iter().map(Vec::as_slice),
    ));
    eprintln!(
        "{n} entries: clustering and projection (worker side) {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let view = ClusterView {
        data,
        report,
        label_means: Vec::new(),
        packed,
        map,
    };
    let mut app = App::new(
        ModelInfo::of(&coder),
        AppOptions {
            theme: Theme { color: true },
            ..AppOptions::default()
        },
    );
    app.explore.code = view.data.codes[12345 % n].clone();
    app.clusters.result = Some(Arc::new(view));
    app.clusters.view = ClustersView::Map;
    app.tab = Tab::Clusters;
    let mut terminal = Terminal::new(TestBackend::new(120, 40))?;
    let mut times = Vec::new();
    for i in 0..30 {
        if i % 10 == 5 {
            app.clusters.viewport.zoom_by(2.0);
        }
        let t = Instant::now();
        terminal.draw(|f| f.render_widget(&app, f.area()))?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(|a, b| a.total_cmp(b));
    println!(
        "{n} entries, 120×40 map frame: median {:.1} ms, worst {:.1} ms (30 frames)",
        times[times.len() / 2],
        times[times.len() - 1]
    );
    Ok(())
}
