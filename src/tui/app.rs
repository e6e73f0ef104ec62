//! The explorer's state and its one entry point for change, [`App::update`].
//!
//! `update` never runs the model: work for the model becomes an [`Effect`] that the event loop
//! (or the test harness) hands to the worker, and results come back as messages. Rendering is
//! a pure function of the state (`impl Widget for &App`), so a test can drive the real app
//! with key events and read the screen from a `TestBackend`.

use std::path::PathBuf;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Modifier;
use ratatui::text::{Line, Span};
use ratatui::widgets::Widget;

use super::clusters::ClustersState;
use super::context::{Command, Ctx, Shared, Tab, View};
use super::event::Msg;
use super::explore::ExploreState;
pub use super::jobs::{Effect, Jobs};
use super::jobs::{Job, ModelInfo, Reply, ReplyBody};
use super::keys::{self, Global};
use super::map::{MapSources, MapState};
use super::neighbors::NeighborsState;
use super::path::PathState;
use super::sample::SampleState;
use super::stats::StatsState;
use super::train::TrainState;
pub use super::widgets::Status;
use super::widgets::{self, TextInput, Theme, SPINNER};
use crate::train::TrainConfig;

/// Smallest terminal the layout is designed for; below it the app says so instead of drawing.
/// At this size and above the footer always shows how to quit and how to open the help.
pub const MIN_WIDTH: u16 = 60;
pub const MIN_HEIGHT: u16 = 18;

/// Declares the tab registry: per tab, its name (the tab bar's label), its field in [`Tabs`],
/// its type (a [`Tab`]) and how it is made from the [`AppOptions`]. It defines [`TabId`] (one
/// per tab, in order: the tab bar, the number keys and the help follow it) and [`Tabs`].
macro_rules! tabs {
    ($options:ident; $($id:ident, $field:ident: $ty:ty = $init:expr;)*) => {
        /// A tab of the registry; `ALL` is their order.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum TabId {
            $($id),*
        }

        impl TabId {
            pub const ALL: &'static [TabId] = &[$(TabId::$id),*];

            /// The tab's label (the tab bar, the help's section, the docs' key tables).
            pub fn title(self) -> &'static str {
                match self {
                    $(TabId::$id => stringify!($id)),*
                }
            }

            /// The tab's place in the registry; its number key is one more.
            pub fn index(self) -> usize {
                self as usize
            }

            /// The help's (keys, description) rows, from the tab's key tables.
            pub fn help_rows(self) -> Vec<(String, String)> {
                match self {
                    $(TabId::$id => <$ty as Tab>::help_rows()),*
                }
            }
        }

        /// One of each registered tab.
        pub struct Tabs {
            $(pub $field: $ty),*
        }

        impl Tabs {
            fn new($options: &AppOptions) -> Self {
                Self {
                    $($field: $init),*
                }
            }

            pub fn get(&self, id: TabId) -> &dyn Tab {
                match id {
                    $(TabId::$id => &self.$field),*
                }
            }

            pub fn get_mut(&mut self, id: TabId) -> &mut dyn Tab {
                match id {
                    $(TabId::$id => &mut self.$field),*
                }
            }
        }
    };
}

// The registry: a new tab is its file and one line here.
tabs! {
    options;
    Explore, explore: ExploreState = ExploreState::default();
    Path, path: PathState = PathState::default();
    Sample, sample: SampleState = SampleState::default();
    Stats, stats: StatsState = StatsState::default();
    Train, train: TrainState = TrainState::new(options.train_defaults.clone());
    Neighbors, neighbors: NeighborsState = NeighborsState::new(options.index_corpus.clone());
    Clusters, clusters: ClustersState = ClustersState::new(options.index_corpus.clone());
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
    pub tab: TabId,
    /// Scroll offset of the help overlay (in lines of `help_lines`), when it is shown; `?`
    /// opens it at the shown tab's section.
    pub help: Option<u16>,
    /// A quit key was pressed while something would be stopped by quitting (a training run,
    /// which this says): the next key answers ([`keys::CONFIRM_QUIT`]).
    pub asking_to_quit: Option<String>,
    pub should_quit: bool,
    /// The signal that ended the app ([`Msg::Signalled`]), if one did: the process dies of it
    /// once a training run has saved.
    pub signalled: Option<i32>,
    /// Why the app had to end, if it did not end by the user's choice.
    pub fatal: Option<String>,
    pub theme: Theme,
    pub jobs: Jobs,
    pub ticks: u64,
    pub status: Option<Status>,
    /// The checkpoint being loaded, if any.
    pub loading: Option<PathBuf>,
    /// What more than one tab reads (Explore's sentence and code, the corpus index and
    /// clustering, the bit meanings).
    pub shared: Shared,
    pub tabs: Tabs,
    /// The corpus map, shown by the Neighbors and Clusters tabs.
    pub map: MapState,
    /// What tabs asked of the app, carried out after their handler returns.
    commands: Vec<Command>,
}

impl App {
    pub fn new(model: ModelInfo, options: AppOptions) -> Self {
        let mut app = Self {
            model,
            tab: TabId::Explore,
            help: None,
            asking_to_quit: None,
            should_quit: false,
            signalled: None,
            fatal: None,
            theme: options.theme,
            jobs: Jobs::default(),
            ticks: 0,
            status: None,
            loading: None,
            shared: Shared {
                corpus: options.index_corpus.clone(),
                ..Shared::default()
            },
            tabs: Tabs::new(&options),
            map: MapState::default(),
            commands: Vec::new(),
        };
        // The Train tab's form starts from the opened model's kind and sizes.
        app.tabs.train.adopt(&app.model);
        let (tabs, mut cx) = app.split();
        tabs.explore.start(&mut cx, options.first_sentence);
        app
    }

    /// The tabs and the context their handlers get (disjoint parts of the app).
    fn split(&mut self) -> (&mut Tabs, Ctx<'_>) {
        let cx = Ctx {
            model: &self.model,
            theme: self.theme,
            jobs: &mut self.jobs,
            status: &mut self.status,
            shared: &mut self.shared,
            map: &mut self.map,
            commands: &mut self.commands,
        };
        (&mut self.tabs, cx)
    }

    /// Runs `f` on tab `id` with its context, then carries out what it asked of the app.
    fn with_tab<R>(&mut self, id: TabId, f: impl FnOnce(&mut dyn Tab, &mut Ctx) -> R) -> R {
        let (tabs, mut cx) = self.split();
        let r = f(tabs.get_mut(id), &mut cx);
        self.run_commands();
        r
    }

    fn run_commands(&mut self) {
        while !self.commands.is_empty() {
            for c in std::mem::take(&mut self.commands) {
                match c {
                    Command::Encode(text) => self.encode(&text),
                    Command::Explore(text) => {
                        self.encode(&text);
                        self.tab = TabId::Explore;
                    }
                    Command::Load(path) => self.load_checkpoint(path),
                    Command::Cluster => {
                        let (tabs, mut cx) = self.split();
                        tabs.clusters.ensure(&mut cx);
                    }
                }
            }
        }
    }

    /// Makes `text` Explore's sentence: the code every tab works on.
    fn encode(&mut self, text: &str) {
        let (tabs, mut cx) = self.split();
        tabs.explore.input.set(text);
        tabs.explore.submit(&mut cx);
    }

    /// What rendering reads.
    pub fn view(&self) -> View<'_> {
        View {
            model: &self.model,
            theme: self.theme,
            jobs: &self.jobs,
            shared: &self.shared,
            map: &self.map,
            ticks: self.ticks,
        }
    }

    /// Work the event loop should start now.
    pub fn take_effects(&mut self) -> Vec<Effect> {
        self.jobs.take_effects()
    }

    pub fn busy(&self) -> bool {
        self.jobs.any_pending()
    }

    fn notice(&mut self, text: impl Into<String>) {
        self.status = Some(Status {
            text: text.into(),
            error: false,
        });
    }

    fn error(&mut self, text: impl Into<String>) {
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
            Msg::Train { run, event } => self.tabs.train.on_train_event(run, event),
            Msg::TrainEnded { run, error } => self.tabs.train.on_train_ended(run, error),
            Msg::InputFailed(e) => {
                self.fatal = Some(format!("cannot read the terminal: {e}"));
                self.quit();
            }
            Msg::OutputFailed(e) => {
                self.fatal = Some(format!("cannot draw on the terminal: {e}"));
                self.quit();
            }
            Msg::Signalled(sig) => {
                self.signalled = Some(sig);
                self.quit();
            }
        }
        self.map_sync();
    }

    /// Brings what the map derives from the tabs up to date (cheap when nothing changed).
    fn map_sync(&mut self) {
        let src = MapSources {
            code: &self.shared.code,
            origin: self.shared.sentence.as_ref().map(|s| s.code.as_slice()),
            dim: self.tabs.explore.cursor,
            walk: self.tabs.path.walk.as_ref(),
            clusters: self.shared.clusters.as_ref(),
            binary: self.model.binary(),
        };
        self.map.sync(&src);
    }

    /// The query (Explore's current code) and its nearest entries by Hamming distance, when
    /// both exist and the codes are bits.
    pub fn neighbors_of_current(&self) -> Option<Result<Vec<crate::index::Neighbor<'_>>, String>> {
        self.tabs.neighbors.of_code(&self.shared)
    }

    /// [`App::neighbors_of_current`] for continuous codes (cosine similarity).
    pub fn cosine_neighbors_of_current(
        &self,
    ) -> Option<Result<Vec<crate::cosine::CosineHit>, String>> {
        self.tabs.neighbors.cosine_of_code(&self.shared)
    }

    /// The Clusters tab's attribute vector applied to Explore's current code.
    pub fn clusters_edited_code(&self) -> Option<(crate::structure::AttributeVector, Vec<f32>)> {
        self.tabs.clusters.edited_code(&self.shared)
    }

    /// Whether the corpus map is what the current tab shows.
    pub fn map_shown(&self) -> bool {
        self.tabs.get(self.tab).shows_map()
    }

    /// Whether keys are going into a text field (so letters and digits are text, not commands).
    pub fn typing(&self) -> bool {
        self.tabs.get(self.tab).typing(&self.view())
    }

    fn on_key(&mut self, key: KeyEvent) {
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        // The answer to "quit?": the confirming keys quit, any other key stays.
        if let Some(why) = self.asking_to_quit.take() {
            match keys::confirm_quit(key.code, ctrl) {
                Some(keys::Confirm::Quit) => self.quit(),
                None => self.notice(format!("not quitting: {why}")),
            }
            return;
        }
        let global = keys::global(key.code, ctrl, self.typing());
        if global == Some(Global::ForceQuit) {
            return self.quit_or_ask();
        }
        if let Some(scroll) = self.help {
            let last = super::help_lines(self.theme).len().saturating_sub(1) as u16;
            self.help = match key.code {
                KeyCode::Esc | KeyCode::Char('?') | KeyCode::Char('q') | KeyCode::F(1) => None,
                KeyCode::Down | KeyCode::Char('j') => Some(scroll.saturating_add(1).min(last)),
                KeyCode::Up | KeyCode::Char('k') => Some(scroll.saturating_sub(1)),
                KeyCode::PageDown | KeyCode::Char(' ') => Some(scroll.saturating_add(10).min(last)),
                KeyCode::PageUp => Some(scroll.saturating_sub(10)),
                KeyCode::Home => Some(0),
                KeyCode::End => Some(last),
                _ => Some(scroll),
            };
            return;
        }
        self.status = None;
        let n = TabId::ALL.len();
        match global {
            Some(Global::Help) => return self.help = Some(super::help_start(self.tab)),
            Some(Global::Quit) => return self.quit_or_ask(),
            Some(Global::NextTab) => return self.set_tab(TabId::ALL[(self.tab.index() + 1) % n]),
            Some(Global::PreviousTab) => {
                return self.set_tab(TabId::ALL[(self.tab.index() + n - 1) % n])
            }
            Some(Global::GoTo) => {
                // A digit past the last tab is the tab's own key, if it has one.
                let number = match key.code {
                    KeyCode::Char(c) => c.to_digit(10).unwrap_or(0) as usize,
                    _ => 0,
                };
                if let Some(&tab) = number.checked_sub(1).and_then(|i| TabId::ALL.get(i)) {
                    return self.set_tab(tab);
                }
            }
            Some(Global::ForceQuit) | None => {}
        }
        let tab = self.tab;
        self.with_tab(tab, |t, cx| t.key(cx, key));
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
        let tab = self.tab;
        let overflow = self.with_tab(tab, |t, cx| {
            let input = t.paste_field(cx)?;
            input.insert_str(text);
            Some(input.overflow)
        });
        match overflow {
            Some(true) => self.notice(format!(
                "pasted text cut at {} characters (the model reads only its first words anyway)",
                TextInput::MAX_CHARS
            )),
            Some(false) => {}
            None if self.status.is_none() => self.notice(format!(
                "the {} tab has no text field to paste into",
                tab.title()
            )),
            None => {}
        }
    }

    /// A quit key: quits, or first asks (the footer) when quitting would stop something a tab
    /// says is going on (a training run).
    fn quit_or_ask(&mut self) {
        let busy = TabId::ALL
            .iter()
            .find_map(|&id| self.tabs.get(id).quit_question());
        match busy {
            Some(why) => {
                self.status = None;
                self.asking_to_quit = Some(why);
            }
            None => self.quit(),
        }
    }

    fn quit(&mut self) {
        // A running training stops after its current step and saves; the event loop waits.
        for &id in TabId::ALL {
            self.tabs.get_mut(id).quitting();
        }
        self.should_quit = true;
    }

    fn set_tab(&mut self, tab: TabId) {
        self.tab = tab;
        self.with_tab(tab, |t, cx| t.entered(cx));
    }

    fn on_reply(&mut self, reply: Reply) {
        let Reply { id, kind, body } = reply;
        if let ReplyBody::Progress(f) = body {
            self.jobs.report(kind, id, f);
            return;
        }
        // A partial reply (the bars so far) is shown while its request is the newest, which
        // stays pending until the final reply.
        let current = if body.is_partial() {
            self.jobs.is_current(kind, id)
        } else {
            self.jobs.accept(kind, id)
        };
        if !current {
            return; // superseded by a newer request of the same kind
        }
        match body {
            ReplyBody::Loaded(r) => self.loaded(r),
            ReplyBody::Mapped(r) => {
                if let Some(e) = self.map.done(r) {
                    self.error(e);
                }
            }
            ReplyBody::MappedSoFar(p) => self.map.partial(&p),
            body => {
                // Each tab takes the replies to its own jobs.
                let mut body = Some(body);
                for &id in TabId::ALL {
                    let Some(b) = body.take() else { break };
                    body = self.with_tab(id, |t, cx| t.reply(cx, b));
                }
            }
        }
    }

    /// Asks the worker to replace the model; replies computed for the old one are dropped.
    fn load_checkpoint(&mut self, path: PathBuf) {
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
                self.map = self.map.for_new_model();
                let shown = self.tab;
                for &id in TabId::ALL {
                    self.with_tab(id, |t, cx| t.model_changed(cx, id == shown));
                }
            }
            Err(e) => self.error(format!("could not load the checkpoint: {e}")),
        }
    }

    fn activity(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .jobs
            .pending_kinds()
            .map(|k| {
                if self.jobs.queued_behind(k).is_some() {
                    format!("{} queued", k.activity())
                } else if k.is_background() {
                    let done = self.jobs.progress(k).unwrap_or(0.0) * 100.0;
                    format!("{} {done:.0}%", k.activity())
                } else {
                    k.activity().to_string()
                }
            })
            .collect();
        out.extend(
            TabId::ALL
                .iter()
                .filter_map(|&id| self.tabs.get(id).activity()),
        );
        out
    }

    /// The footer's hints, most important first (the tab's own, then switching tabs), without
    /// the help and quit keys, which [`App::essential_hints`] gives.
    fn hints(&self) -> Vec<(String, &'static str)> {
        let h = if self.map_shown() {
            self.map.hints(self.model.caps)
        } else {
            self.tabs.get(self.tab).hints(&self.view())
        };
        let mut h: Vec<(String, &'static str)> = h
            .into_iter()
            .map(|(k, what)| (k.to_string(), what))
            .collect();
        h.extend(keys::global_hints(self.typing(), TabId::ALL.len(), false));
        h
    }

    /// How to open the help and how to quit: the footer shows them at any width.
    fn essential_hints(&self) -> Vec<(String, &'static str)> {
        keys::global_hints(self.typing(), TabId::ALL.len(), true)
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
        if let Some(words) = self
            .tabs
            .explore
            .real_words_label(&self.model, &self.shared)
        {
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
            vec![
                Line::from(left),
                super::explore::about_line(&self.tabs.explore, &self.view()),
            ],
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

    /// The tab bar's labels at `width`: every tab named in full when they fit; else without
    /// padding; else the other tabs' names cut to four letters; else only their numbers. The
    /// tab shown keeps its full, padded name.
    fn tab_labels(&self, width: u16) -> Vec<String> {
        let label = |tab: TabId, level: usize| {
            let (n, title) = (tab.index() + 1, tab.title());
            if tab == self.tab || level == 0 {
                return format!(" {n} {title} ");
            }
            match level {
                1 => format!("{n} {title}"),
                2 => format!("{n} {}", title.chars().take(4).collect::<String>()),
                _ => format!("{n}"),
            }
        };
        let mut labels = Vec::new();
        for level in 0..4 {
            labels = TabId::ALL.iter().map(|&tab| label(tab, level)).collect();
            // A leading space and a separator after each label.
            let w: usize = 1 + labels.iter().map(|l| l.chars().count() + 1).sum::<usize>();
            if w <= width as usize {
                break;
            }
        }
        labels
    }

    fn render_tabs(&self, area: Rect, buf: &mut Buffer) {
        let t = self.theme;
        let mut spans = vec![Span::raw(" ")];
        for (&tab, label) in TabId::ALL.iter().zip(self.tab_labels(area.width)) {
            if tab == self.tab {
                spans.push(Span::styled(label, t.cursor().add_modifier(Modifier::BOLD)));
            } else {
                spans.push(Span::styled(label, t.plain()));
            }
            spans.push(Span::styled("│", t.dim()));
        }
        widgets::lines(buf, area, vec![Line::from(spans)]);
    }

    /// The footer's rows at `width`: one, or two when a notice is too long to share its row
    /// with how to open the help and quit (the notice then has the last row to itself).
    fn footer_rows(&self, width: u16) -> u16 {
        match &self.status {
            Some(s) if self.asking_to_quit.is_none() => {
                let reserved: usize = (self.essential_hints().iter())
                    .map(|(k, w)| hint_width(k, w))
                    .sum();
                let room = (width as usize).saturating_sub(1 + reserved);
                if s.text.chars().count() + 2 > room {
                    2
                } else {
                    1
                }
            }
            _ => 1,
        }
    }

    /// The footer: the question while asking to quit; else the status line or the hints that
    /// fit (cut from the least important end), and always how to open the help and quit. A
    /// notice too long for a row it shares goes on a row of its own, the last.
    fn render_footer(&self, area: Rect, buf: &mut Buffer) {
        let t = self.theme;
        let hint_w = hint_width;
        let mut spans = vec![Span::raw(" ")];
        let push = |spans: &mut Vec<Span<'static>>, k: String, what: &str| {
            spans.push(Span::styled(k, t.accent()));
            spans.push(Span::styled(format!(" {what}  "), t.dim()));
        };
        if let Some(why) = &self.asking_to_quit {
            // The answers first: a narrow terminal cuts the reason, not them.
            spans.push(Span::styled("Quit? ", t.error()));
            for (k, what) in keys::confirm_quit_hints() {
                push(&mut spans, k.to_string(), what);
            }
            spans.push(Span::styled("any other key stays  ", t.dim()));
            spans.push(Span::styled(format!("({why})"), t.error()));
            widgets::lines(buf, area, vec![Line::from(spans)]);
            return;
        }
        let essential = self.essential_hints();
        let reserved: usize = essential.iter().map(|(k, w)| hint_w(k, w)).sum();
        let room = (area.width as usize).saturating_sub(1 + reserved);
        let status = self.status.as_ref().map(|s| {
            let style = if s.error { t.error() } else { t.notice() };
            (s.text.as_str(), style)
        });
        match status {
            Some((text, style)) if area.height < 2 => {
                let text = fit(text, room.saturating_sub(2));
                spans.push(Span::styled(format!("{text}  "), style));
            }
            _ => {
                let mut used = 0;
                for (k, what) in self.hints() {
                    used += hint_w(&k, what);
                    if used > room {
                        break;
                    }
                    push(&mut spans, k, what);
                }
            }
        }
        for (k, what) in essential {
            push(&mut spans, k, what);
        }
        let mut rows = vec![Line::from(spans)];
        if let Some((text, style)) = status.filter(|_| area.height >= 2) {
            let text = fit(text, (area.width as usize).saturating_sub(1));
            rows.push(Line::from(Span::styled(format!(" {text}"), style)));
        }
        widgets::lines(buf, area, rows);
    }
}

/// A footer hint's width: its keys, a space, its words and two spaces.
fn hint_width(k: &str, what: &str) -> usize {
    k.chars().count() + what.chars().count() + 3
}

/// `s` cut to `width` characters, the cut marked with `…`.
fn fit(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        return s.to_string();
    }
    let mut out: String = s.chars().take(width.saturating_sub(1)).collect();
    out.push('…');
    out
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
        let header_rows = if area.height >= 24 { 2 } else { 1 };
        let [header, tabs, body, footer] = Layout::vertical([
            Constraint::Length(header_rows),
            Constraint::Length(1),
            Constraint::Min(0),
            Constraint::Length(self.footer_rows(area.width)),
        ])
        .areas(area);
        self.render_header(header, buf);
        self.render_tabs(tabs, buf);
        self.tabs.get(self.tab).render(&self.view(), body, buf);
        self.render_footer(footer, buf);
        if let Some(scroll) = self.help {
            let lines = super::help_lines(self.theme);
            let scroll = scroll.min(lines.len().saturating_sub(1) as u16);
            widgets::help_overlay(buf, area, lines, scroll, self.theme);
        }
        // Texts from a corpus, an index or a checkpoint reach many widgets: none of their
        // control or bidirectional formatting characters goes to the terminal.
        widgets::scrub_unsafe(buf, area);
    }
}
