//! A synchronous driver for the real app, for tests: keys go through `App::update`, model work
//! runs inline on the calling thread (with the same newest-per-kind rule as the worker
//! threads), training runs on its real thread, and the screen is read from a `TestBackend`.
//! Nothing here depends on wall-clock time except the generous timeout that turns a hung
//! training thread into a test failure instead of a hang.

use std::sync::mpsc::{self, Receiver, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::backend::TestBackend;
use ratatui::Terminal;

use super::app::{App, AppOptions, Effect};
use super::event::Msg;
use super::jobs::{newest_per_kind, ModelInfo, Reply, Request};
use super::worker::Worker;
use crate::coder::Coder;
use crate::engine::Engine;

pub struct Harness {
    pub app: App,
    worker: Worker,
    tx: Sender<Msg>,
    rx: Receiver<Msg>,
    trainings: Vec<JoinHandle<()>>,
    pub width: u16,
    pub height: u16,
}

impl Harness {
    pub fn new(engine: Engine, options: AppOptions) -> Self {
        Self::with_coder(Coder::from_engine(engine), options)
    }

    /// The app on a checkpoint of any family (bag-of-words models included).
    pub fn with_coder(coder: Coder, options: AppOptions) -> Self {
        let (tx, rx) = mpsc::channel();
        Self {
            app: App::new(ModelInfo::of(&coder), options),
            worker: Worker::of_coder(coder),
            tx,
            rx,
            trainings: Vec::new(),
            width: 120,
            height: 40,
        }
    }

    /// Sends one message and runs the work it causes.
    pub fn send(&mut self, msg: Msg) -> &mut Self {
        self.app.update(msg);
        self.settle();
        self
    }

    pub fn key(&mut self, code: KeyCode) -> &mut Self {
        self.send(Msg::Key(KeyEvent::new(code, KeyModifiers::NONE)))
    }

    pub fn ctrl(&mut self, c: char) -> &mut Self {
        self.send(Msg::Key(KeyEvent::new(
            KeyCode::Char(c),
            KeyModifiers::CONTROL,
        )))
    }

    pub fn shift_tab(&mut self) -> &mut Self {
        self.send(Msg::Key(KeyEvent::new(
            KeyCode::BackTab,
            KeyModifiers::SHIFT,
        )))
    }

    /// Types each character as a key press.
    pub fn type_text(&mut self, s: &str) -> &mut Self {
        for c in s.chars() {
            self.app.update(Msg::Key(KeyEvent::new(
                KeyCode::Char(c),
                KeyModifiers::NONE,
            )));
        }
        self.settle();
        self
    }

    /// Pastes `s` the way a terminal with bracketed paste delivers it: one message.
    pub fn paste(&mut self, s: &str) -> &mut Self {
        self.send(Msg::Paste(s.to_string()))
    }

    /// Requests the app has made but that have not been computed, without computing them.
    pub fn queued(&mut self) -> Vec<Request> {
        let mut out = Vec::new();
        for e in self.app.take_effects() {
            match e {
                Effect::Work(r) => out.push(r),
                other => self.start(other),
            }
        }
        out
    }

    /// Computes requests inline and feeds the replies to the app.
    pub fn compute(&mut self, requests: Vec<Request>) {
        for r in self.replies(requests) {
            self.app.update(Msg::Reply(r));
        }
    }

    /// Computes requests inline (the newest of each kind, as the worker threads do) and returns
    /// their replies, partial ones included, without giving them to the app: a test can then
    /// [`Self::deliver`] them one at a time.
    pub fn replies(&mut self, requests: Vec<Request>) -> Vec<Reply> {
        for r in &requests {
            self.worker.announce(r);
        }
        let mut replies: Vec<Reply> = Vec::new();
        for req in newest_per_kind(requests) {
            self.worker.handle(req, &mut |r| replies.push(r));
        }
        replies
    }

    /// Gives one reply to the app, without running the work it causes.
    pub fn deliver(&mut self, reply: Reply) -> &mut Self {
        self.app.update(Msg::Reply(reply));
        self
    }

    /// Runs model work until the app asks for no more.
    pub fn settle(&mut self) {
        loop {
            let reqs = self.queued();
            if reqs.is_empty() {
                return;
            }
            self.compute(reqs);
        }
    }

    fn start(&mut self, effect: Effect) {
        if let Effect::StartTraining { run, cfg, control } = effect {
            self.trainings.push(super::train::spawn_training(
                run,
                *cfg,
                control,
                self.tx.clone(),
            ));
        }
    }

    /// Feeds training messages to the app until `done` holds. The timeout only turns a hang
    /// into a failure; no assertion depends on how long anything took.
    pub fn wait_for(&mut self, timeout: Duration, done: impl Fn(&App) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        while !done(&self.app) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            match self.rx.recv_timeout(left) {
                Ok(msg) => {
                    self.app.update(msg);
                    self.settle();
                }
                Err(_) => return false,
            }
        }
        true
    }

    /// Waits for every training thread this harness started to end.
    pub fn join_training(&mut self) {
        for t in self.trainings.drain(..) {
            let _ = t.join();
        }
        while let Ok(msg) = self.rx.try_recv() {
            self.app.update(msg);
        }
        self.settle();
    }

    /// The screen as text, one line per row (trailing spaces trimmed).
    pub fn screen(&self) -> String {
        render_to_string(&self.app, self.width, self.height)
    }
}

/// Renders the app into a `width` × `height` test terminal and returns its text.
pub fn render_to_string(app: &App, width: u16, height: u16) -> String {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).expect("test terminal");
    terminal
        .draw(|f| f.render_widget(app, f.area()))
        .expect("drawing");
    let buf = terminal.backend().buffer();
    let mut out = String::new();
    for y in 0..buf.area.height {
        let mut line = String::new();
        let mut skip = 0;
        for x in 0..buf.area.width {
            if skip > 0 {
                skip -= 1;
                continue;
            }
            let sym = buf[(x, y)].symbol();
            line.push_str(sym);
            // A wide character covers the next cell(s), which hold a blank placeholder.
            let w = unicode_width(sym);
            if w > 1 {
                skip = w - 1;
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn unicode_width(s: &str) -> usize {
    // The app draws no wide characters except possibly in user text; treat CJK-range
    // characters as double width, everything else as single.
    s.chars()
        .map(|c| {
            if ('\u{1100}'..='\u{115F}').contains(&c)
                || ('\u{2E80}'..='\u{A4CF}').contains(&c)
                || ('\u{AC00}'..='\u{D7A3}').contains(&c)
                || ('\u{F900}'..='\u{FAFF}').contains(&c)
                || ('\u{FF00}'..='\u{FF60}').contains(&c)
            {
                2
            } else {
                1
            }
        })
        .sum::<usize>()
        .max(1)
}
