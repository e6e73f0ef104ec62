//! Measures the UI thread's cost of the corpus map (the component the Neighbors and Clusters
//! tabs share) for a large synthetic map: every frame is timed, including the first after each
//! zoom, pan and resize, and so are the updates that rebin (a colour change) or search the
//! points (a cursor step, a placed code).
//!
//!     cargo run --release --example cluster_map_frame -- [ENTRIES] [CKPT]

use std::sync::Arc;
use std::time::Instant;

use candle_core::Device;
use crossterm::event::{KeyCode, KeyEvent};
use latent_tui::coder::Coder;
use latent_tui::hamming::PackedCodes;
use latent_tui::index::{CorpusIndex, IndexMeta};
use latent_tui::map::{CachedLayout, Layout, LayoutMeta, Method};
use latent_tui::tui::app::{App, AppOptions, TabId};
use latent_tui::tui::event::Msg;
use latent_tui::tui::map::MapData;
use latent_tui::tui::widgets::Theme;
use latent_tui::tui::worker::{Entries, ModelInfo, NeighborIndex};
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
    // 45 blobs of codes (a prototype with bits flipped) at 45 places of the plane.
    let mut rng = StdRng::seed_from_u64(1);
    let protos: Vec<u64> = (0..45).map(|_| rng.random()).collect();
    let centres: Vec<[f32; 2]> = (0..45)
        .map(|_| [rng.random_range(-50.0..50.0), rng.random_range(-50.0..50.0)])
        .collect();
    let mut words = Vec::with_capacity(n);
    let mut points = Vec::with_capacity(n);
    let mut labels = Vec::with_capacity(n);
    let mut texts = Vec::with_capacity(n);
    let mask = if bits >= 64 { !0 } else { (1u64 << bits) - 1 };
    for i in 0..n {
        let c = i % 45;
        let mut w = protos[c];
        for _ in 0..6 {
            w ^= 1 << rng.random_range(0..bits.min(64));
        }
        words.push(w & mask);
        let r: f32 = rng.random_range(0.0..6.0);
        let a: f32 = rng.random_range(0.0..std::f32::consts::TAU);
        points.push([centres[c][0] + r * a.cos(), centres[c][1] + r * a.sin()]);
        labels.push(Some(c as u32));
        texts.push(format!("entry {i} of blob {c}"));
    }
    anyhow::ensure!(bits <= 64, "the synthetic map uses one-word codes");
    let index = CorpusIndex {
        codes: PackedCodes::from_words(bits, words).map_err(anyhow::Error::msg)?,
        texts,
        labels,
        label_names: (0..45).map(|c| format!("blob{c}")).collect(),
        meta: IndexMeta::default(),
    };
    let layout = Layout {
        points,
        meta: LayoutMeta {
            version: latent_tui::map::layout::LAYOUT_VERSION,
            method: Method::Umap,
            checkpoint_sha256: String::new(),
            corpus_hash: String::new(),
            splits: vec!["train".into()],
            entries: n,
            dim: bits,
            seed: 0,
            neighbors: 15,
            epochs: 0,
            negatives: 5,
        },
    };
    let started = Instant::now();
    let data = Arc::new(MapData::new(
        Arc::new(NeighborIndex {
            index: Entries::Hamming(index),
            path: "synthetic".into(),
            from_disk: true,
            save_error: None,
        }),
        CachedLayout {
            layout,
            path: "synthetic".into(),
            from_disk: true,
            save_error: None,
        },
    ));
    eprintln!(
        "{n} entries: binning into the grid (worker side) {:.2} s",
        started.elapsed().as_secs_f64()
    );
    let mut app = App::new(
        ModelInfo::of(&coder),
        AppOptions {
            theme: Theme { color: true },
            ..AppOptions::default()
        },
    );
    let mut code = coder.encode_text("a small dog barks at the cat")?.code;
    app.shared.code = code.clone();
    app.shared.index = Some(data.index.clone());
    app.map.data = Some(data);
    app.tabs.neighbors.show_map = true;
    app.tab = TabId::Neighbors;
    let timed = |app: &mut App, msg: Msg| {
        let t = Instant::now();
        app.update(msg);
        t.elapsed().as_secs_f64() * 1e3
    };
    let key = |c: KeyCode| Msg::Key(KeyEvent::from(c));
    let first_sync = timed(&mut app, Msg::Tick);
    let mut terminal = Terminal::new(TestBackend::new(120, 40))?;
    let mut frames = Vec::new();
    let mut updates: Vec<(String, f64)> =
        vec![("binning the colours + placing ◆".into(), first_sync)];
    let steps: [(&str, Option<KeyCode>); 12] = [
        ("first frame", None),
        ("zoom in", Some(KeyCode::Char('+'))),
        ("zoom in", Some(KeyCode::Char('+'))),
        ("pan", Some(KeyCode::Char('L'))),
        ("zoom in", Some(KeyCode::Char('+'))),
        ("zoom in", Some(KeyCode::Char('+'))),
        ("zoom in", Some(KeyCode::Char('+'))),
        ("pan", Some(KeyCode::Char('K'))),
        ("cursor step", Some(KeyCode::Right)),
        ("cursor step", Some(KeyCode::Up)),
        ("whole map", Some(KeyCode::Char('0'))),
        ("colour by bit", Some(KeyCode::Char('c'))),
    ];
    for (what, k) in steps {
        if let Some(k) = k {
            updates.push((what.to_string(), timed(&mut app, key(k))));
        }
        let t = Instant::now();
        terminal.draw(|f| f.render_widget(&app, f.area()))?;
        frames.push((what.to_string(), t.elapsed().as_secs_f64() * 1e3));
    }
    for (w, h) in [(200u16, 60u16), (80, 24), (120, 40)] {
        terminal.backend_mut().resize(w, h);
        let t = Instant::now();
        terminal.draw(|f| f.render_widget(&app, f.area()))?;
        frames.push((format!("resize {w}×{h}"), t.elapsed().as_secs_f64() * 1e3));
    }
    // A flip in Explore places the new code (and extends the trail).
    code[3] = 1.0 - code[3];
    app.shared.code = code;
    updates.push(("a flipped code placed".into(), timed(&mut app, Msg::Tick)));
    for (what, ms) in &frames {
        println!("frame  {what:<24} {ms:6.2} ms");
    }
    for (what, ms) in &updates {
        println!("update {what:<32} {ms:6.2} ms");
    }
    let worst = frames.iter().map(|f| f.1).fold(0f64, f64::max);
    println!("{n} entries, 120×40: worst frame {worst:.2} ms");
    Ok(())
}
