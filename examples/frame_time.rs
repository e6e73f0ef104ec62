//! Measures how long the explorer's UI thread spends per frame (update + draw) while a
//! training run goes on and keys keep the model worker busy: the same loop as
//! `latent-tui CKPT`, drawing into an off-screen 120×40 terminal.
//!
//!     cargo run --release --example frame_time -- CKPT [SECONDS]

use std::sync::mpsc;
use std::time::{Duration, Instant};

use candle_core::Device;
use crossterm::event::{KeyCode, KeyEvent};
use latent_tui::coder::Coder;
use latent_tui::tui::app::{App, AppOptions, Effect};
use latent_tui::tui::event::Msg;
use latent_tui::tui::widgets::Theme;
use latent_tui::tui::worker::{ModelInfo, Worker, WorkerHandle};
use ratatui::backend::TestBackend;
use ratatui::Terminal;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let ckpt = args
        .get(1)
        .map(String::as_str)
        .unwrap_or("/tmp/t1.safetensors");
    let seconds: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(20);
    let coder = Coder::load(ckpt.as_ref(), &Device::Cpu)?;
    let mut options = AppOptions {
        theme: Theme { color: true },
        ..AppOptions::default()
    };
    options.train_defaults.out = std::env::temp_dir().join("frame-time.safetensors");
    let mut app = App::new(ModelInfo::of(&coder), options);
    let (tx, rx) = mpsc::channel();
    let worker = WorkerHandle::spawn(Worker::of_coder(coder), tx.clone());
    let mut terminal = Terminal::new(TestBackend::new(120, 40))?;
    let mut trainings = Vec::new();

    let press = |app: &mut App, code: KeyCode| app.update(Msg::Key(KeyEvent::from(code)));
    // Start training, then type a sentence in Explore and keep flipping bits.
    press(&mut app, KeyCode::BackTab);
    press(&mut app, KeyCode::Char('s'));
    press(&mut app, KeyCode::Tab);
    press(&mut app, KeyCode::Char('/'));
    for c in "a small dog that barks at night".chars() {
        press(&mut app, KeyCode::Char(c));
    }
    press(&mut app, KeyCode::Enter);

    let start = Instant::now();
    let mut work = Vec::new();
    let mut next_key = Instant::now();
    let mut keys = 0u64;
    let mut tab_epoch = 0;
    while start.elapsed() < Duration::from_secs(seconds) {
        let msg = rx.recv_timeout(Duration::from_millis(100)).ok();
        let t0 = Instant::now();
        if let Some(m) = msg {
            app.update(m);
        }
        for m in rx.try_iter().take(512) {
            app.update(m);
        }
        if Instant::now() >= next_key {
            keys += 1;
            let code = if keys.is_multiple_of(3) {
                KeyCode::Right
            } else {
                KeyCode::Char(' ')
            };
            press(&mut app, code);
            next_key = Instant::now() + Duration::from_millis(40);
        }
        for e in app.take_effects() {
            match e {
                Effect::Work(r) => worker.send(r),
                Effect::StartTraining { run, cfg, control } => trainings.push(
                    latent_tui::tui::train::spawn_training(run, *cfg, control, tx.clone()),
                ),
            }
        }
        // Visit every tab (statistics included) so that every renderer is measured; flips on
        // other tabs are other keys, which is fine for a load test.
        if start.elapsed().as_secs() / 3 != tab_epoch {
            tab_epoch = start.elapsed().as_secs() / 3;
            press(&mut app, KeyCode::Tab);
        }
        terminal.draw(|f| f.render_widget(&app, f.area()))?;
        work.push(t0.elapsed());
    }
    app.update(Msg::Key(KeyEvent::new(
        KeyCode::Char('c'),
        crossterm::event::KeyModifiers::CONTROL,
    )));
    let steps = app
        .tabs
        .train
        .run
        .as_ref()
        .and_then(|r| r.last.as_ref())
        .map_or(0, |s| s.step);
    for t in trainings {
        while !t.is_finished() {
            while rx.try_recv().is_ok() {}
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    worker.shutdown(false);
    let pct = |v: &mut Vec<Duration>, p: f64| {
        v.sort();
        v[((v.len() - 1) as f64 * p) as usize]
    };
    println!(
        "{} frames in {seconds} s, {keys} keys, {steps} training steps",
        work.len()
    );
    println!(
        "UI work per frame (update + draw): p50 {:?}  p99 {:?}  max {:?}",
        pct(&mut work, 0.5),
        pct(&mut work, 0.99),
        pct(&mut work, 1.0)
    );
    Ok(())
}
