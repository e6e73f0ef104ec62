//! The explorer's state and its one entry point for change, [`App::update`].
//!
//! `update` never runs the model: work for the model becomes an [`Effect`] that the event loop
//! (or the test harness) hands to the worker, and results come back as messages. Rendering is
//! a pure function of the state (`impl Widget for &App`), so a test can drive the real app
//! with key events and read the screen from a `TestBackend`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Modifier;
use ratatui::text::{Line, Span};
use ratatui::widgets::Widget;

use super::clusters::{ClustersState, ClustersView};
use super::event::Msg;
use super::explore::ExploreState;
use super::keys::{self, Global};
use super::map::MapState;
use super::neighbors::NeighborsState;
use super::path::PathState;
use super::sample::SampleState;
use super::stats::StatsState;
use super::train::TrainState;
use super::widgets::{self, TextInput, Theme, SPINNER};
use super::worker::{Job, JobKind, ModelInfo, Reply, ReplyBody, Request};
use crate::train::{TrainConfig, TrainControl};
use crate::train_job::TrainJob;

/// Smallest terminal the layout is designed for; below it the app says so instead of drawing.
pub const MIN_WIDTH: u16 = 60;
pub const MIN_HEIGHT: u16 = 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tab {
    Explore,
    Path,
    Sample,
    Stats,
    Train,
    Neighbors,
    Clusters,
}

impl Tab {
    pub const ALL: [Tab; 7] = [
        Tab::Explore,
        Tab::Path,
        Tab::Sample,
        Tab::Stats,
        Tab::Train,
        Tab::Neighbors,
        Tab::Clusters,
    ];

    pub fn title(self) -> &'static str {
        match self {
            Tab::Explore => "Explore",
            Tab::Path => "Path",
            Tab::Sample => "Sample",
            Tab::Stats => "Stats",
            Tab::Train => "Train",
            Tab::Neighbors => "Neighbors",
            Tab::Clusters => "Clusters",
        }
    }

    pub fn index(self) -> usize {
        Tab::ALL.iter().position(|&t| t == self).expect("listed")
    }

    /// The help's (keys, description) rows, from the tab's key table.
    pub fn help_rows(self) -> Vec<(String, String)> {
        match self {
            Tab::Explore => keys::help_rows(super::explore::KEYS),
            Tab::Path => keys::help_rows(super::path::KEYS),
            Tab::Sample => keys::help_rows(super::sample::KEYS),
            Tab::Stats => keys::help_rows(super::stats::KEYS),
            Tab::Train => keys::help_rows(super::train::KEYS),
            Tab::Neighbors => {
                let mut rows = keys::help_rows(super::neighbors::KEYS);
                rows.extend(keys::help_rows(super::map::KEYS));
                rows
            }
            Tab::Clusters => super::clusters::help_rows(),
        }
    }
}

/// Work the event loop must start on the app's behalf.
#[derive(Debug)]
pub enum Effect {
    Work(Request),
    StartTraining {
        run: u64,
        cfg: Box<TrainJob>,
        control: TrainControl,
    },
}

/// Request ids and which request of each kind is the newest (the only one whose reply counts).
#[derive(Debug, Default)]
pub struct Jobs {
    next_id: u64,
    pending: BTreeMap<JobKind, u64>,
    /// The latest progress report (0 to 1) of each pending kind that sent one.
    progress: BTreeMap<JobKind, f64>,
    effects: Vec<Effect>,
}

impl Jobs {
    pub(super) fn submit(&mut self, job: Job) -> u64 {
        self.next_id += 1;
        let id = self.next_id;
        self.pending.insert(job.kind(), id);
        self.progress.remove(&job.kind());
        self.effects.push(Effect::Work(Request { id, job }));
        id
    }

    /// Whether `id` is the newest request of `kind`; if so it is no longer pending.
    pub(super) fn accept(&mut self, kind: JobKind, id: u64) -> bool {
        if self.pending.get(&kind) == Some(&id) {
            self.pending.remove(&kind);
            self.progress.remove(&kind);
            true
        } else {
            false
        }
    }

    pub fn is_current(&self, kind: JobKind, id: u64) -> bool {
        self.pending.get(&kind) == Some(&id)
    }

    pub fn is_pending(&self, kind: JobKind) -> bool {
        self.pending.contains_key(&kind)
    }

    /// How far the pending request of `kind` is (0 to 1), once it has said; the one place the
    /// explorer keeps job progress.
    pub fn progress(&self, kind: JobKind) -> Option<f64> {
        self.progress.get(&kind).copied()
    }

    /// Records a progress report of request `id`, if it is still the newest of its kind.
    fn report(&mut self, kind: JobKind, id: u64, f: f64) {
        if self.is_current(kind, id) {
            self.progress.insert(kind, f);
        }
    }

    pub fn any_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Forgets every outstanding request, so their replies will be dropped.
    pub(super) fn forget_all(&mut self) {
        self.pending.clear();
        self.progress.clear();
    }

    pub(super) fn push(&mut self, e: Effect) {
        self.effects.push(e);
    }

    pub(super) fn take_effects(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.effects)
    }

    fn pending_kinds(&self) -> impl Iterator<Item = JobKind> + '_ {
        self.pending.keys().copied()
    }
}

/// A one-line message in the footer until the next key.
#[derive(Clone, Debug, PartialEq)]
pub struct Status {
    pub text: String,
    pub error: bool,
}

#[derive(Clone, Debug)]
pub struct AppOptions {
    pub theme: Theme,
    /// The Train tab's initial settings (small and quick by default).
    pub train_defaults: TrainConfig,
    /// The corpus the Neighbors tab indexes (a path or `wordnet`); by default the one the
    /// checkpoint was trained on.
    pub index_corpus: Option<String>,
    /// Open Explore on a test sentence of the model's corpus, with the bit that changes its
    /// decoding most selected (what `latent-tui MODEL` does); off, Explore opens empty.
    pub first_sentence: bool,
}

impl Default for AppOptions {
    fn default() -> Self {
        Self {
            theme: Theme::from_env(),
            train_defaults: super::train::quick_defaults(crate::model::LatentKind::Binary),
            index_corpus: None,
            first_sentence: false,
        }
    }
}

pub struct App {
    pub model: ModelInfo,
    pub tab: Tab,
    /// Scroll offset of the help overlay, when it is shown.
    pub help: Option<u16>,
    pub should_quit: bool,
    /// Why the app had to end, if it did not end by the user's choice.
    pub fatal: Option<String>,
    pub theme: Theme,
    pub jobs: Jobs,
    pub ticks: u64,
    pub status: Option<Status>,
    /// The checkpoint being loaded, if any.
    pub loading: Option<PathBuf>,
    pub explore: ExploreState,
    pub path: PathState,
    pub sample: SampleState,
    pub stats: StatsState,
    pub train: TrainState,
    pub neighbors: NeighborsState,
    pub clusters: ClustersState,
    /// The corpus map, shown by the Neighbors and Clusters tabs.
    pub map: MapState,
}

impl App {
    pub fn new(model: ModelInfo, options: AppOptions) -> Self {
        let mut app = Self {
            model,
            tab: Tab::Explore,
            help: None,
            should_quit: false,
            fatal: None,
            theme: options.theme,
            jobs: Jobs::default(),
            ticks: 0,
            status: None,
            loading: None,
            explore: ExploreState::default(),
            path: PathState::default(),
            sample: SampleState::default(),
            stats: StatsState::default(),
            train: TrainState::new(options.train_defaults),
            clusters: ClustersState::new(options.index_corpus.clone()),
            neighbors: NeighborsState::new(options.index_corpus),
            map: MapState::default(),
        };
        app.explore_start(options.first_sentence);
        app
    }

    /// Work the event loop should start now.
    pub fn take_effects(&mut self) -> Vec<Effect> {
        self.jobs.take_effects()
    }

    pub fn busy(&self) -> bool {
        self.jobs.any_pending()
    }

    pub(super) fn notice(&mut self, text: impl Into<String>) {
        self.status = Some(Status {
            text: text.into(),
            error: false,
        });
    }

    pub(super) fn error(&mut self, text: impl Into<String>) {
        self.status = Some(Status {
            text: text.into(),
            error: true,
        });
    }

    /// The only place state changes.
    pub fn update(&mut self, msg: Msg) {
        match msg {
            Msg::Key(key) => self.on_key(key),
            Msg::Paste(text) => self.on_paste(&text),
            Msg::Resize(..) => {}
            Msg::Tick => self.ticks = self.ticks.wrapping_add(1),
            Msg::Reply(reply) => self.on_reply(reply),
            Msg::Train { run, event } => self.on_train_event(run, event),
            Msg::TrainEnded { run, error } => self.on_train_ended(run, error),
            Msg::InputFailed(e) => {
                self.fatal = Some(format!("cannot read the terminal: {e}"));
                self.quit();
            }
        }
        self.map_sync();
    }

    /// Whether the corpus map is what the current tab shows.
    pub fn map_shown(&self) -> bool {
        match self.tab {
            Tab::Neighbors => self.neighbors.show_map && !self.neighbors.typing,
            Tab::Clusters => self.clusters.view == ClustersView::Map,
            _ => false,
        }
    }

    /// Whether keys are going into a text field (so letters and digits are text, not commands).
    pub fn typing(&self) -> bool {
        match self.tab {
            Tab::Explore => self.explore.typing(),
            Tab::Path => self.path.typing(),
            Tab::Train => self.train.typing(),
            Tab::Neighbors => self.neighbors.typing || (self.map_shown() && self.map.searching),
            Tab::Clusters => self.clusters.typing || (self.map_shown() && self.map.searching),
            Tab::Sample | Tab::Stats => false,
        }
    }

    fn on_key(&mut self, key: KeyEvent) {
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        let global = keys::global(key.code, ctrl, self.typing());
        if global == Some(Global::ForceQuit) {
            self.quit();
            return;
        }
        if let Some(scroll) = self.help {
            self.help = match key.code {
                KeyCode::Esc | KeyCode::Char('?') | KeyCode::Char('q') | KeyCode::F(1) => None,
                KeyCode::Down | KeyCode::Char('j') => Some(scroll.saturating_add(1)),
                KeyCode::Up | KeyCode::Char('k') => Some(scroll.saturating_sub(1)),
                KeyCode::PageDown | KeyCode::Char(' ') => Some(scroll.saturating_add(10)),
                KeyCode::PageUp => Some(scroll.saturating_sub(10)),
                KeyCode::Home => Some(0),
                _ => Some(scroll),
            };
            return;
        }
        self.status = None;
        let n = Tab::ALL.len();
        match global {
            Some(Global::Help) => return self.help = Some(0),
            Some(Global::Quit) => return self.quit(),
            Some(Global::NextTab) => return self.set_tab(Tab::ALL[(self.tab.index() + 1) % n]),
            Some(Global::PreviousTab) => {
                return self.set_tab(Tab::ALL[(self.tab.index() + n - 1) % n])
            }
            Some(Global::GoTo) => {
                // A digit past the last tab is the tab's own key, if it has one.
                let number = match key.code {
                    KeyCode::Char(c) => c.to_digit(10).unwrap_or(0) as usize,
                    _ => 0,
                };
                if let Some(&tab) = number.checked_sub(1).and_then(|i| Tab::ALL.get(i)) {
                    return self.set_tab(tab);
                }
            }
            Some(Global::ForceQuit) | None => {}
        }
        match self.tab {
            Tab::Explore => self.explore_key(key),
            Tab::Path => self.path_key(key),
            Tab::Sample => self.sample_key(key),
            Tab::Stats => self.stats_key(key),
            Tab::Train => self.train_key(key),
            Tab::Neighbors => self.neighbors_key(key),
            Tab::Clusters => self.clusters_key(key),
        }
    }

    /// A paste goes into the text field that has the focus; on a tab whose text field is not
    /// open, it opens the field the way `/` does (a fresh sentence) and fills it.
    fn on_paste(&mut self, text: &str) {
        if self.help.is_some() {
            return;
        }
        self.status = None;
        if self.map_shown() {
            if !self.map.searching {
                self.map.search = TextInput::default();
                self.map.searching = true;
            }
            self.map.search.insert_str(text);
            return;
        }
        if !self.typing() {
            match self.tab {
                Tab::Explore => self.explore_fresh_input(),
                Tab::Path => self.path_fresh_input(),
                Tab::Neighbors => self.neighbors_fresh_input(),
                Tab::Clusters if self.clusters.view == ClustersView::Analogy => {
                    self.clusters_fresh_input()
                }
                Tab::Clusters => {
                    self.notice("the Clusters tab's text fields are its analogy's: n opens them");
                    return;
                }
                Tab::Train => {
                    self.notice("to paste a setting, select it and press Enter to edit it first");
                    return;
                }
                Tab::Sample | Tab::Stats => {
                    self.notice(format!(
                        "the {} tab has no text field to paste into",
                        self.tab.title()
                    ));
                    return;
                }
            }
        }
        let input = match self.tab {
            Tab::Explore => &mut self.explore.input,
            Tab::Path => self.path.focused_input(),
            Tab::Neighbors => &mut self.neighbors.input,
            Tab::Clusters => match self.clusters_focused_input() {
                Some(input) => input,
                None => return,
            },
            Tab::Train => match &mut self.train.editing {
                Some(input) => input,
                None => return,
            },
            Tab::Sample | Tab::Stats => return,
        };
        input.insert_str(text);
        if input.overflow {
            self.notice(format!(
                "pasted text cut at {} characters (the model reads only its first words anyway)",
                TextInput::MAX_CHARS
            ));
        }
    }

    fn quit(&mut self) {
        // A running training stops after its current step and saves; the event loop waits.
        self.train.stop_for_quit();
        self.should_quit = true;
    }

    fn set_tab(&mut self, tab: Tab) {
        self.tab = tab;
        match tab {
            Tab::Sample => self.sample_on_enter(),
            Tab::Stats => self.stats_on_enter(),
            Tab::Neighbors => self.neighbors_on_enter(),
            Tab::Clusters => self.clusters_on_enter(),
            _ => {}
        }
    }

    fn on_reply(&mut self, reply: Reply) {
        let Reply { id, kind, body } = reply;
        if let ReplyBody::Progress(f) = body {
            self.jobs.report(kind, id, f);
            return;
        }
        if !self.jobs.accept(kind, id) {
            return; // superseded by a newer request of the same kind
        }
        match body {
            ReplyBody::Encoded(r) => self.explore_encoded(r),
            ReplyBody::Decoded(r) => self.explore_decoded(r),
            ReplyBody::Bars(r) => self.explore_bars(r),
            ReplyBody::Path(r) => self.path_walked(r),
            ReplyBody::Sampled(r) => self.sample_done(r),
            ReplyBody::Stats(r) => self.stats_done(r),
            ReplyBody::Loaded(r) => self.loaded(r),
            ReplyBody::Indexed(r) => self.neighbors_indexed(r),
            ReplyBody::Mapped(r) => self.map_done(r),
            ReplyBody::Clustered(r) => self.clusters_done(r),
            ReplyBody::Structure(r) => self.clusters_structure_done(r),
            ReplyBody::Meanings(r) => self.explore_meanings(r),
            ReplyBody::Opened(r) => self.explore_opened(r),
            ReplyBody::Progress(_) => unreachable!("handled above"),
        }
    }

    /// Asks the worker to replace the model; replies computed for the old one are dropped.
    pub(super) fn load_checkpoint(&mut self, path: PathBuf) {
        self.jobs.forget_all();
        self.loading = Some(path.clone());
        self.jobs.submit(Job::Load { path });
    }

    fn loaded(&mut self, r: Result<ModelInfo, String>) {
        self.loading = None;
        match r {
            Ok(info) => {
                self.notice(format!(
                    "loaded {} ({})",
                    info.path.display(),
                    info.describe
                ));
                self.model = info;
                self.explore_model_changed();
                self.path_model_changed();
                self.sample_model_changed();
                self.stats_model_changed();
                self.map_model_changed();
                self.neighbors_model_changed();
                self.clusters_model_changed();
            }
            Err(e) => self.error(format!("could not load the checkpoint: {e}")),
        }
    }

    fn activity(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .jobs
            .pending_kinds()
            .map(|k| {
                if k.is_background() {
                    let done = self.jobs.progress(k).unwrap_or(0.0) * 100.0;
                    format!("{} {done:.0}%", k.activity())
                } else {
                    k.activity().to_string()
                }
            })
            .collect();
        if let Some(t) = self.train.activity() {
            out.push(t);
        }
        out
    }

    fn hints(&self) -> Vec<(String, &'static str)> {
        let h = match self.tab {
            _ if self.map_shown() => self.map.hints(self.model.caps),
            Tab::Explore => self.explore.hints(self.model.caps),
            Tab::Path => self.path.hints(self.model.caps),
            Tab::Sample => self.sample.hints(self.model.caps),
            Tab::Stats => self.stats.hints(self.model.caps),
            Tab::Train => self.train.hints(self.model.caps),
            Tab::Neighbors => self.neighbors.hints(self.model.caps),
            Tab::Clusters => self.clusters.hints(self.model.caps),
        };
        let mut h: Vec<(String, &'static str)> =
            h.into_iter().map(|(k, what)| (k.to_string(), what)).collect();
        h.extend(keys::global_hints(self.typing(), Tab::ALL.len()));
        h
    }

    fn render_header(&self, area: Rect, buf: &mut Buffer) {
        let t = self.theme;
        let name = self
            .model
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| self.model.path.display().to_string());
        let mut left = vec![
            Span::styled(" latent-tui ", t.accent()),
            Span::styled("│ ", t.dim()),
            Span::styled(name, t.bold()),
            Span::styled(" │ ", t.dim()),
        ];
        // Before the description, which a narrow terminal cuts off.
        if let Some(words) = self.real_words_label() {
            left.push(Span::styled(words, t.accent()));
            left.push(Span::styled(" │ ", t.dim()));
        }
        left.push(Span::raw(self.model.describe.clone()));
        if let Some(p) = &self.loading {
            left.push(Span::styled(
                format!(" │ loading {}", p.display()),
                t.notice(),
            ));
        }
        widgets::lines(
            buf,
            area,
            vec![Line::from(left), super::explore::about_line(self)],
        );
        let act = self.activity();
        if !act.is_empty() {
            let spin = SPINNER[(self.ticks as usize) % SPINNER.len()];
            let s = format!(" {spin} {} ", act.join(" · "));
            let w = s.chars().count() as u16;
            if w < area.width {
                buf.set_string(area.right() - w, area.y, &s, t.notice());
            }
        }
    }

    fn render_tabs(&self, area: Rect, buf: &mut Buffer) {
        let t = self.theme;
        let mut spans = vec![Span::raw(" ")];
        for tab in Tab::ALL {
            let label = format!(" {} {} ", tab.index() + 1, tab.title());
            if tab == self.tab {
                spans.push(Span::styled(label, t.cursor().add_modifier(Modifier::BOLD)));
            } else {
                spans.push(Span::styled(label, t.plain()));
            }
            spans.push(Span::styled("│", t.dim()));
        }
        widgets::lines(buf, area, vec![Line::from(spans)]);
    }

    fn render_footer(&self, area: Rect, buf: &mut Buffer) {
        let t = self.theme;
        let line = match &self.status {
            Some(s) => Line::from(Span::styled(
                format!(" {}", s.text),
                if s.error { t.error() } else { t.notice() },
            )),
            None => {
                let mut spans = vec![Span::raw(" ")];
                for (k, what) in self.hints() {
                    spans.push(Span::styled(k, t.accent()));
                    spans.push(Span::styled(format!(" {what}  "), t.dim()));
                }
                Line::from(spans)
            }
        };
        widgets::lines(buf, area, vec![line]);
    }
}

impl Widget for &App {
    fn render(self, area: Rect, buf: &mut Buffer) {
        if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
            let msg = [
                "Terminal too small".to_string(),
                format!(
                    "{}×{}, need at least {MIN_WIDTH}×{MIN_HEIGHT}",
                    area.width, area.height
                ),
                "enlarge the window, or q to quit".to_string(),
            ];
            for (i, m) in msg.iter().enumerate() {
                let y = area.y + (area.height / 2).saturating_sub(1) + i as u16;
                let w = (m.chars().count() as u16).min(area.width);
                let x = area.x + (area.width - w) / 2;
                widgets::text(buf, area, x, y, m, self.theme.bold());
            }
            return;
        }
        // The header's second row (what the model was trained on) goes first when rows are short.
        let header_rows = if area.height >= MIN_HEIGHT + 4 { 2 } else { 1 };
        let [header, tabs, body, footer] = Layout::vertical([
            Constraint::Length(header_rows),
            Constraint::Length(1),
            Constraint::Min(0),
            Constraint::Length(1),
        ])
        .areas(area);
        self.render_header(header, buf);
        self.render_tabs(tabs, buf);
        match self.tab {
            Tab::Explore => super::explore::render(self, body, buf),
            Tab::Path => super::path::render(self, body, buf),
            Tab::Sample => super::sample::render(self, body, buf),
            Tab::Stats => super::stats::render(self, body, buf),
            Tab::Train => super::train::render(self, body, buf),
            Tab::Neighbors => super::neighbors::render(self, body, buf),
            Tab::Clusters => super::clusters::render(self, body, buf),
        }
        self.render_footer(footer, buf);
        if let Some(scroll) = self.help {
            widgets::help_overlay(buf, area, super::help_lines(self.theme), scroll, self.theme);
        }
    }
}
