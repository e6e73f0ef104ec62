//! The terminal explorer: `latent-tui model.safetensors`.
//!
//! Threads: the UI thread (this module's event loop: wait for a message, update, draw), an
//! input thread (terminal events and ticks), the model worker ([`worker`], two threads) and,
//! while one runs, a training thread. They all talk to the UI thread through one channel of
//! [`event::Msg`]. Only this module tree knows about ratatui and crossterm.

pub mod app;
pub mod captures;

pub mod clusters;
pub mod context;
pub mod event;
pub mod explore;
pub mod harness;
pub mod jobs;
pub mod keys;
pub mod map;
pub mod neighbors;
pub mod path;
pub mod sample;
pub mod stats;
pub mod train;
pub mod widgets;
pub mod worker;

use std::io::{self, IsTerminal, Stdout};
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use candle_core::Device;
use crossterm::event::{DisableBracketedPaste, EnableBracketedPaste};
use crossterm::execute;
use crossterm::terminal::{
    disable_raw_mode, enable_raw_mode, EnterAlternateScreen, LeaveAlternateScreen,
};
use ratatui::backend::CrosstermBackend;
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::Terminal;

use crate::coder::Coder;
use app::{App, AppOptions, Effect};
pub use event::panic_text;
use event::{InputThread, Msg};
use widgets::Theme;
use worker::{ModelInfo, Worker, WorkerHandle};

/// How often the input thread sends a tick when nothing happens (spinner speed).
const TICK: Duration = Duration::from_millis(100);
/// At most this many queued messages are folded into one frame, so a flood of training events
/// cannot starve drawing.
const MAX_MSGS_PER_FRAME: usize = 512;

/// Opens the explorer on a checkpoint. A checkpoint that cannot be loaded is an error returned
/// before the terminal is touched.
pub fn run(checkpoint: &Path) -> Result<()> {
    let coder = Coder::load(checkpoint, &Device::Cpu)?;
    if !io::stdout().is_terminal() || !io::stdin().is_terminal() {
        bail!(
            "the explorer needs an interactive terminal; for scripts use the `path`, `sample`, `flip`, `encode` and `decode` subcommands (see --help)"
        );
    }
    let app = App::new(
        ModelInfo::of(&coder),
        AppOptions {
            first_sentence: true,
            ..AppOptions::default()
        },
    );
    let (tx, rx) = mpsc::channel();
    let worker = WorkerHandle::spawn(Worker::of_coder(coder), tx.clone());

    install_panic_hook();
    let mut terminal = TerminalGuard::enter().context("setting up the terminal")?;
    let mut input = InputThread::spawn(tx.clone(), TICK);
    let mut trainings = Vec::new();
    let result = event_loop(
        &mut terminal.terminal,
        app,
        &rx,
        &tx,
        &worker,
        &mut trainings,
    );
    input.stop();
    drop(terminal);

    if !trainings.is_empty() {
        eprintln!("waiting for the training run to stop and save its checkpoint…");
    }
    // Drain messages so the training thread's sends never block on a full channel (they are
    // unbounded, but the forwarder ends sooner when someone is listening).
    for t in trainings {
        while !t.is_finished() {
            while rx.try_recv().is_ok() {}
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = t.join();
    }
    // A statistics job may still be running; it is not worth waiting for.
    worker.shutdown(false);
    result
}

fn event_loop(
    terminal: &mut Terminal<CrosstermBackend<Stdout>>,
    mut app: App,
    rx: &mpsc::Receiver<Msg>,
    tx: &mpsc::Sender<Msg>,
    worker: &WorkerHandle,
    trainings: &mut Vec<std::thread::JoinHandle<()>>,
) -> Result<()> {
    loop {
        terminal.draw(|f| f.render_widget(&app, f.area()))?;
        let first = rx.recv().context("the event channel closed")?;
        app.update(first);
        for msg in rx.try_iter().take(MAX_MSGS_PER_FRAME) {
            app.update(msg);
        }
        for effect in app.take_effects() {
            match effect {
                Effect::Work(req) => worker.send(req),
                Effect::StartTraining { run, cfg, control } => {
                    trainings.retain(|t| !t.is_finished());
                    trainings.push(train::spawn_training(run, *cfg, control, tx.clone()));
                }
            }
        }
        if app.should_quit {
            return match app.fatal {
                Some(e) => Err(anyhow::anyhow!(e)),
                None => Ok(()),
            };
        }
    }
}

/// Raw mode and the alternate screen for as long as it lives; dropping it restores the
/// terminal, also when the event loop returns an error.
struct TerminalGuard {
    terminal: Terminal<CrosstermBackend<Stdout>>,
}

impl TerminalGuard {
    fn enter() -> Result<Self> {
        enable_raw_mode()?;
        if let Err(e) = execute!(io::stdout(), EnterAlternateScreen, EnableBracketedPaste) {
            restore_terminal();
            return Err(e.into());
        }
        match Terminal::new(CrosstermBackend::new(io::stdout())) {
            Ok(mut terminal) => {
                let _ = terminal.hide_cursor();
                Ok(Self { terminal })
            }
            Err(e) => {
                restore_terminal();
                Err(e.into())
            }
        }
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        let _ = self.terminal.show_cursor();
        restore_terminal();
    }
}

fn restore_terminal() {
    let _ = disable_raw_mode();
    let _ = execute!(
        io::stdout(),
        DisableBracketedPaste,
        LeaveAlternateScreen,
        crossterm::cursor::Show
    );
}

/// On the UI thread a panic restores the terminal and then reports as usual; on background
/// threads (which catch their panics and report them as errors) it only records the message.
fn install_panic_hook() {
    let ui = std::thread::current().id();
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if std::thread::current().id() == ui {
            restore_terminal();
            previous(info);
        } else if let Ok(mut slot) = event::BACKGROUND_PANIC.lock() {
            *slot = Some(info.to_string());
        }
    }));
}

/// Every key, by tab, for the `?` overlay (and the book's key tables, docs/explorer.md): the keys that work everywhere and
/// in text fields, then each tab's key table.
pub fn help_lines(theme: Theme) -> Vec<Line<'static>> {
    let mut sections: Vec<(String, Vec<(String, String)>)> =
        vec![("Everywhere".to_string(), global_keys())];
    sections.push((
        "Text fields".to_string(),
        TEXT_FIELD_KEYS
            .iter()
            .map(|(k, what)| (k.to_string(), what.to_string()))
            .collect(),
    ));
    for &tab in app::TabId::ALL {
        sections.push((
            format!("{} {}", tab.index() + 1, tab.title()),
            tab.help_rows(),
        ));
    }
    // One key column for all sections, as wide as the widest key label.
    let width = sections
        .iter()
        .flat_map(|(_, keys)| keys.iter().map(|(k, _)| k.chars().count()))
        .max()
        .unwrap_or(0)
        + 2;
    let mut out = Vec::new();
    for (title, keys) in sections {
        out.push(Line::from(Span::styled(title, theme.accent())));
        for (k, what) in keys {
            out.push(Line::from(vec![
                Span::styled(format!("  {k:<width$}"), theme.bold()),
                Span::styled(what, Style::new()),
            ]));
        }
        out.push(Line::from(""));
    }
    out
}

/// The help rows of the keys the app handles before any tab ([`keys::GLOBAL`], see
/// `App::on_key`), with the tabs' number and names from the registry.
pub fn global_keys() -> Vec<(String, String)> {
    let titles: Vec<&str> = app::TabId::ALL.iter().map(|t| t.title()).collect();
    keys::global_help_rows(&titles)
}

/// Keys of every text field (see `widgets::TextInput`).
pub const TEXT_FIELD_KEYS: &[(&str, &str)] = &[
    ("typing", "letters, digits, q, ? … go into the field"),
    (
        "paste",
        "one edit, line breaks as spaces; opens a fresh field if none is open",
    ),
    ("←/→ Home/End Ctrl-A/E", "move in the text"),
    ("Backspace/Delete", "delete"),
    ("Ctrl-U / Ctrl-W", "delete to the start / the previous word"),
    ("Esc", "leave the field"),
];
