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

use std::io::{self, IsTerminal, Stdout, Write};
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
/// The longest the event loop sleeps without a message (see [`event_loop`]).
const WAKE: Duration = Duration::from_millis(250);
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

    // stderr may be a terminal that hung up (SIGHUP): a failed note must not panic before the
    // run has saved.
    let mut stderr = io::stderr();
    if let Ok(Some(sig)) = &result {
        let _ = writeln!(
            stderr,
            "{}: stopping the training run after its step and saving its checkpoint (the signal again ends it at once)…",
            signal_name(*sig)
        );
    } else if trainings.iter().any(|t| !t.is_finished()) {
        let _ = writeln!(
            stderr,
            "waiting for the training run to stop and save its checkpoint…"
        );
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
    // A stop signal that came while the run was saving (a hang-up after the failed draw that
    // ended the loop) was held until now; the handlers go back to what they were.
    #[cfg(unix)]
    let late = fatal_signals::take_stop_request();
    #[cfg(not(unix))]
    let late = None;
    #[cfg(unix)]
    fatal_signals::disarm();
    let signalled = match &result {
        Ok(Some(sig)) => Some(*sig),
        _ => None,
    }
    .or(late);
    match signalled {
        // Stopped by a signal with the run saved: die of it, as `train` does (`main`).
        Some(sig) => Err(crate::train_job::Interrupted(128 + sig).into()),
        None => result.map(|_| ()),
    }
}

/// A stop signal's name as a shell user knows it.
fn signal_name(sig: i32) -> String {
    #[cfg(unix)]
    match sig {
        libc::SIGTERM => return "SIGTERM".into(),
        libc::SIGHUP => return "SIGHUP".into(),
        libc::SIGINT => return "SIGINT".into(),
        _ => {}
    }
    format!("signal {sig}")
}

fn event_loop(
    terminal: &mut Terminal<CrosstermBackend<Stdout>>,
    mut app: App,
    rx: &mpsc::Receiver<Msg>,
    tx: &mpsc::Sender<Msg>,
    worker: &WorkerHandle,
    trainings: &mut Vec<std::thread::JoinHandle<()>>,
) -> Result<Option<i32>> {
    loop {
        if let Err(e) = terminal.draw(|f| f.render_widget(&app, f.area())) {
            // The terminal hung up: quit as `q` would (a training run stops and saves).
            app.update(Msg::OutputFailed(e.to_string()));
        } else {
            // The input thread ticks while the terminal is quiet; the timeout still wakes the
            // loop for a stop signal when it cannot (a terminal that hung up stalls it).
            match rx.recv_timeout(WAKE) {
                Ok(first) => {
                    app.update(first);
                    for msg in rx.try_iter().take(MAX_MSGS_PER_FRAME) {
                        app.update(msg);
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => bail!("the event channel closed"),
            }
        }
        #[cfg(unix)]
        if let Some(sig) = fatal_signals::take_stop_request() {
            app.update(Msg::Signalled(sig));
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
        // A signal that comes while a run is going stops and saves it; with none going it
        // ends the process at once (restoring the terminal).
        #[cfg(unix)]
        fatal_signals::saving_on_stop(trainings.iter().any(|t| !t.is_finished()));
        if app.should_quit {
            // A stop signal that came as the user quit is still the way the process ends.
            #[cfg(unix)]
            if let Some(sig) = fatal_signals::take_stop_request() {
                app.signalled.get_or_insert(sig);
            }
            // A hang-up both signals and fails the next draw: the signal is what ended it.
            return match (app.signalled, app.fatal) {
                (Some(sig), _) => Ok(Some(sig)),
                (None, Some(e)) => Err(anyhow::anyhow!(e)),
                (None, None) => Ok(None),
            };
        }
    }
}

/// Raw mode and the alternate screen for as long as it lives; dropping it restores the
/// terminal, also when the event loop returns an error.
struct TerminalGuard {
    /// Dropped only once the cursor is shown: ratatui's own drop retries a failed
    /// `show_cursor` and reports it with `eprintln!`, which panics on a terminal that hung up.
    terminal: std::mem::ManuallyDrop<Terminal<CrosstermBackend<Stdout>>>,
}

impl TerminalGuard {
    fn enter() -> Result<Self> {
        // An abort (a failed allocation, `abort()`), a crash or a kill signal restores the
        // terminal before the process dies; SIGKILL (the OOM killer) cannot be caught.
        #[cfg(unix)]
        fatal_signals::arm();
        let failed = |e: io::Error| {
            restore_terminal();
            #[cfg(unix)]
            fatal_signals::disarm();
            e
        };
        enable_raw_mode().map_err(failed)?;
        execute!(io::stdout(), EnterAlternateScreen, EnableBracketedPaste).map_err(failed)?;
        let mut terminal = Terminal::new(CrosstermBackend::new(io::stdout())).map_err(failed)?;
        let _ = terminal.hide_cursor();
        Ok(Self {
            terminal: std::mem::ManuallyDrop::new(terminal),
        })
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        if self.terminal.show_cursor().is_ok() {
            // SAFETY: dropped once, here, and never used again.
            unsafe { std::mem::ManuallyDrop::drop(&mut self.terminal) };
        }
        restore_terminal();
        // The handlers stay until a training run has saved (`run` disarms them): a stop signal
        // meanwhile is held, a second one ends the process, neither writes to the terminal.
        #[cfg(unix)]
        fatal_signals::terminal_restored();
    }
}

/// Restores the terminal when the process dies of a signal while the explorer holds it: an
/// abort (SIGABRT: a failed allocation, a panic under `panic = "abort"`), a crash (SIGSEGV,
/// SIGBUS, SIGILL, SIGFPE) or a kill (SIGTERM, SIGHUP, SIGQUIT, SIGINT: in raw mode Ctrl-C is a
/// key, so SIGINT comes only from `kill -INT`). A signal whose inherited disposition is "ignore"
/// is left ignored. The handler does only what is
/// safe inside a signal handler — put back the terminal settings saved before raw mode
/// (`tcsetattr`) and write the escape sequences that leave the alternate screen, end
/// bracketed paste and show the cursor (`write`) — then lets the signal take its usual course.
///
/// While a Train-tab run is going ([`fatal_signals::saving_on_stop`]), the first SIGTERM,
/// SIGHUP or SIGINT instead asks the event loop to quit as `q` would
/// ([`fatal_signals::take_stop_request`]): the run stops after its step and saves, the terminal
/// is restored, and the process then dies of that signal (`main`, as for `train`). A second
/// one ends the process at once, as above.
#[cfg(unix)]
mod fatal_signals {
    use std::cell::UnsafeCell;
    use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

    const SIGNALS: [libc::c_int; 9] = [
        libc::SIGABRT,
        libc::SIGSEGV,
        libc::SIGBUS,
        libc::SIGILL,
        libc::SIGFPE,
        libc::SIGTERM,
        libc::SIGHUP,
        libc::SIGQUIT,
        // In raw mode Ctrl-C is a key, not a signal: this is `kill -INT` from elsewhere.
        libc::SIGINT,
    ];
    /// Bracketed paste off, leave the alternate screen, show the cursor.
    const RESTORE: &[u8] = b"\x1b[?2004l\x1b[?1049l\x1b[?25h";

    /// Written once by [`arm`] before the handlers are installed, then only read.
    struct Saved {
        termios: UnsafeCell<Option<libc::termios>>,
        previous: UnsafeCell<[Option<libc::sigaction>; SIGNALS.len()]>,
    }
    // SAFETY: written only by `arm`/`disarm` on the UI thread while ARMED says the handler
    // may not read it concurrently in a way that matters (the handler only reads `termios`,
    // written before ARMED is set).
    unsafe impl Sync for Saved {}
    static SAVED: Saved = Saved {
        termios: UnsafeCell::new(None),
        previous: UnsafeCell::new([None; SIGNALS.len()]),
    };
    static ARMED: AtomicBool = AtomicBool::new(false);
    /// A training run is going: a stop signal is handed to the event loop.
    static SAVING: AtomicBool = AtomicBool::new(false);
    /// The stop signal the event loop has yet to act on (0: none); once taken it stays
    /// negative, so a second signal ends the process.
    static STOP: AtomicI32 = AtomicI32::new(0);

    /// The signals a user sends to end a program (as opposed to a crash).
    fn is_stop_signal(sig: libc::c_int) -> bool {
        sig == libc::SIGTERM || sig == libc::SIGHUP || sig == libc::SIGINT
    }

    /// Whether a stop signal should stop and save a training run (one is going) rather than
    /// end the process at once.
    pub fn saving_on_stop(yes: bool) {
        SAVING.store(yes, Ordering::SeqCst);
    }

    /// The stop signal that came while a run was going, once.
    pub fn take_stop_request() -> Option<libc::c_int> {
        let sig = STOP.load(Ordering::SeqCst);
        (sig > 0
            && STOP
                .compare_exchange(sig, -sig, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok())
        .then_some(sig)
    }

    extern "C" fn on_fatal(sig: libc::c_int) {
        if is_stop_signal(sig)
            && SAVING.load(Ordering::SeqCst)
            && STOP
                .compare_exchange(0, sig, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
        {
            // The event loop stops the run, saves and restores the terminal.
            return;
        }
        if ARMED.swap(false, Ordering::SeqCst) {
            // SAFETY: tcsetattr and write are async-signal-safe; `termios` was written before
            // ARMED was set and is not written again while it is.
            unsafe {
                if let Some(t) = &*SAVED.termios.get() {
                    libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, t);
                }
                libc::write(libc::STDOUT_FILENO, RESTORE.as_ptr().cast(), RESTORE.len());
            }
        }
        // With the default action back, the signal raised again does what it would have done
        // (a core dump, the exit status of a killed process) once this handler returns.
        // SAFETY: sigaction and raise are async-signal-safe; `dfl` is a local.
        unsafe {
            let mut dfl: libc::sigaction = std::mem::zeroed();
            dfl.sa_sigaction = libc::SIG_DFL;
            libc::sigemptyset(&mut dfl.sa_mask);
            libc::sigaction(sig, &dfl, std::ptr::null_mut());
            libc::raise(sig);
        }
    }

    pub fn arm() {
        // SAFETY: plain libc calls on valid, owned memory; only this (UI) thread arms.
        unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            *SAVED.termios.get() = (libc::tcgetattr(libc::STDIN_FILENO, &mut t) == 0).then_some(t);
            ARMED.store(true, Ordering::SeqCst);
            let previous = &mut *SAVED.previous.get();
            for (sig, slot) in SIGNALS.iter().zip(previous.iter_mut()) {
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = on_fatal as extern "C" fn(libc::c_int) as libc::sighandler_t;
                // No SA_RESETHAND: a stop signal handed to the event loop keeps the handler
                // for the next one (the handler puts the default back before raising).
                action.sa_flags = libc::SA_RESTART;
                libc::sigemptyset(&mut action.sa_mask);
                let mut old: libc::sigaction = std::mem::zeroed();
                *slot = (libc::sigaction(*sig, &action, &mut old) == 0).then_some(old);
                // A signal the parent ignored (`nohup`, a background job's SIGINT) stays
                // ignored: it would not have ended the process.
                if slot.is_some_and(|old| old.sa_sigaction == libc::SIG_IGN) {
                    libc::sigaction(*sig, &old, std::ptr::null_mut());
                    *slot = None;
                }
            }
        }
    }

    /// The terminal is restored: a signal from now on has nothing to put back.
    pub fn terminal_restored() {
        ARMED.store(false, Ordering::SeqCst);
    }

    /// Puts back the handlers that were there before [`arm`].
    pub fn disarm() {
        ARMED.store(false, Ordering::SeqCst);
        // SAFETY: as in `arm`.
        unsafe {
            let previous = &mut *SAVED.previous.get();
            for (sig, slot) in SIGNALS.iter().zip(previous.iter_mut()) {
                if let Some(old) = slot.take() {
                    libc::sigaction(*sig, &old, std::ptr::null_mut());
                }
            }
        }
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
    let sections = help_sections();
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

/// The help's sections (title, rows): the keys that work everywhere, those of text fields,
/// then each tab's, in registry order.
fn help_sections() -> Vec<(String, Vec<(String, String)>)> {
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
    sections
}

/// The line of [`help_lines`] where `tab`'s section starts: `?` opens the help there (↑ and
/// Home reach the keys that work everywhere).
pub fn help_start(tab: app::TabId) -> u16 {
    let title = format!("{} {}", tab.index() + 1, tab.title());
    let mut line = 0;
    for (name, rows) in help_sections() {
        if name == title {
            break;
        }
        // The title, its rows and a blank line.
        line += rows.len() + 2;
    }
    line as u16
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
