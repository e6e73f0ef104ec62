//! The one message type of the explorer and the input thread that feeds terminal events into
//! the same channel as the model worker and the training thread.
//!
//! Everything that can change the app's state arrives as a [`Msg`] on one `mpsc` channel, so
//! the UI thread has a single place to wait and `App::update` a single place to react.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crossterm::event::{self, Event, KeyEvent, KeyEventKind};

use super::jobs::Reply;
use crate::train::TrainEvent;

// Messages are moved through the channel once and never stored, so the size of the largest
// variant costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Msg {
    Key(KeyEvent),
    /// Text pasted into the terminal, in one piece (bracketed paste), so a long paste is one
    /// edit rather than thousands of key presses.
    Paste(String),
    Resize(u16, u16),
    /// Advances spinners; sent when the terminal has been quiet for a tick.
    Tick,
    /// A result (or progress) from the model worker.
    Reply(Reply),
    /// Progress of training run `run`.
    Train {
        run: u64,
        event: TrainEvent,
    },
    /// Training run `run` ended; `error` says why if it failed.
    TrainEnded {
        run: u64,
        error: Option<String>,
    },
    /// The terminal can no longer be read; without keys the app cannot be driven, so it ends.
    InputFailed(String),
    /// The terminal can no longer be drawn on (it hung up); the app ends, stopping and saving a
    /// training run on the way.
    OutputFailed(String),
    /// A signal asked the process to end (SIGTERM, SIGHUP or SIGINT) while a training run was
    /// going: the app quits as `q` would, the run stopping after its step and saving.
    Signalled(i32),
}

/// How long [`InputThread::stop`] waits for the thread (its poll returns within a tick).
const STOP_WAIT: Duration = Duration::from_secs(1);

/// Reads terminal events on its own thread until [`InputThread::stop`] is called.
pub struct InputThread {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl InputThread {
    pub fn spawn(tx: Sender<Msg>, tick: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::Builder::new()
            .name("latent-tui input".into())
            .spawn(move || {
                while !flag.load(Ordering::SeqCst) {
                    // Polling with a timeout (instead of a blocking read) lets the thread notice
                    // `stop` and doubles as the tick source.
                    let msg = match event::poll(tick) {
                        Ok(true) => match event::read() {
                            // Windows reports key releases too; acting on them would double
                            // every keystroke.
                            Ok(Event::Key(k)) if k.kind != KeyEventKind::Release => Msg::Key(k),
                            Ok(Event::Paste(text)) => Msg::Paste(text),
                            Ok(Event::Resize(w, h)) => Msg::Resize(w, h),
                            Ok(_) => continue,
                            Err(e) => Msg::InputFailed(e.to_string()),
                        },
                        Ok(false) => Msg::Tick,
                        Err(e) => Msg::InputFailed(e.to_string()),
                    };
                    let failed = matches!(msg, Msg::InputFailed(_));
                    if tx.send(msg).is_err() || failed {
                        break;
                    }
                }
            })
            .expect("spawning the input thread");
        Self {
            stop,
            handle: Some(handle),
        }
    }

    /// Asks the thread to stop and waits for it a little: it notices within a tick, except on
    /// a terminal that hung up, where crossterm's poll keeps reading end-of-file and never
    /// returns — that thread is left behind (it ends with the process) rather than waited for
    /// forever.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let deadline = std::time::Instant::now() + STOP_WAIT;
            while !h.is_finished() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            if h.is_finished() {
                let _ = h.join();
            }
        }
    }
}

impl Drop for InputThread {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The message of the last panic on a background thread (shown instead of printed, which
/// would scribble over the screen).
pub static BACKGROUND_PANIC: Mutex<Option<String>> = Mutex::new(None);

/// Text of a caught panic payload.
pub fn panic_text(p: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        BACKGROUND_PANIC
            .lock()
            .ok()
            .and_then(|s| s.clone())
            .unwrap_or_else(|| "unknown panic".into())
    }
}
