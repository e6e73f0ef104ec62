//! Tab 6, Neighbors: the corpus entries nearest to the code being explored in tab 1 (by
//! Hamming distance for bits, by exact cosine similarity for continuous codes, μ), and `m`,
//! the corpus map ([`super::map`], the component the Clusters tab shows too).
//!
//! The index (binary codes, or μ for continuous ones) is loaded from beside the checkpoint, or
//! built over the train split of the checkpoint's corpus on the background worker (with a
//! progress gauge) and saved there. Once it is here the search itself is a scan
//! of the codes (well under a millisecond for the bundled corpus), so it runs while drawing
//! and the list follows every bit flipped or dimension nudged in Explore.

use std::sync::Arc;

use crossterm::event::{KeyCode, KeyEvent};
use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::Widget;

use super::context::{Command, Ctx, Shared, Tab, View};
use super::jobs::{Entries, IndexSoFar, Job, JobKind, NeighborIndex, ReplyBody};
use super::keys::{self, nav, typing, Binding, Lookup, Mode, Only};
use super::widgets::{self, label_color, BitsFit, InputAction, ListWindow, TextInput, Theme};
use crate::coder::Capabilities;
use crate::cosine::CosineHit;
use crate::index::Neighbor;

/// The neighbour counts `[` and `]` step through.
pub const K_STEPS: [usize; 7] = [5, 10, 20, 50, 100, 200, 500];

#[derive(Debug)]
pub struct NeighborsState {
    /// The corpus to index instead of the checkpoint's own.
    pub corpus: Option<String>,
    pub k: usize,
    /// The row of the list selected (the list scrolls as little as it must to show it).
    pub selected: usize,
    pub show_map: bool,
    pub error: Option<String>,
    /// A sentence typed here; Enter hands it to Explore, whose code is the query.
    pub input: TextInput,
    pub typing: bool,
    /// While an index is built: the index of the entries encoded so far, searched meanwhile.
    pub so_far: Option<Arc<IndexSoFar>>,
}

impl NeighborsState {
    pub fn new(corpus: Option<String>) -> Self {
        Self {
            corpus,
            k: 20,
            selected: 0,
            show_map: false,
            error: None,
            input: TextInput::default(),
            typing: false,
            so_far: None,
        }
    }

    pub fn hints(&self, kind: Capabilities) -> Vec<(&'static str, &'static str)> {
        let mode = if self.typing { Mode::Typing } else { Mode::Nav };
        keys::hints(KEYS, mode, kind)
    }
}

/// What a key can do on this tab.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Submit,
    Leave,
    Fresh,
    Edit,
    Fewer,
    More,
    Down,
    Up,
    PageDown,
    PageUp,
    Top,
    Explore,
    Map,
    Reload,
    RealWords,
}

const SCROLL: [Binding<Action>; 5] = keys::list_keys(
    "select a row (the list scrolls as little as it must to show it)",
    ("↑/↓", "select"),
    Only::Encodes,
    [
        Action::Down,
        Action::Up,
        Action::PageDown,
        Action::PageUp,
        Action::Top,
    ],
);

/// The tab's keys: dispatch, footer and help all read this table.
pub const KEYS: &[Binding<Action>] = &[
    typing(
        &[KeyCode::Enter],
        "Enter",
        "encode the sentence (it becomes Explore's sentence too)",
        Some(("Enter", "encode")),
        Action::Submit,
    ),
    typing(
        &[KeyCode::Esc],
        "Esc",
        "cancel",
        Some(("Esc", "cancel")),
        Action::Leave,
    ),
    nav(
        &[KeyCode::Char('/')],
        "/",
        "type a new sentence here (Enter encodes it in Explore too)",
        Some(("/", "new sentence")),
        Only::Encodes,
        Action::Fresh,
    ),
    nav(
        &[KeyCode::Char('i')],
        "i",
        "edit Explore's sentence here",
        Some(("i", "edit it")),
        Only::Encodes,
        Action::Edit,
    ),
    nav(
        &[KeyCode::Char('[')],
        "[ / ]",
        "fewer / more neighbours (k: 5, 10, 20, 50, 100, 200, 500)",
        Some(("[/]", "fewer/more")),
        Only::Encodes,
        Action::Fewer,
    ),
    nav(
        &[KeyCode::Char(']')],
        "]",
        "",
        None,
        Only::Encodes,
        Action::More,
    ),
    SCROLL[0],
    SCROLL[1],
    SCROLL[2],
    SCROLL[3],
    SCROLL[4],
    keys::to_explore(
        "open the selected row in 1 Explore (its sentence, encoded: flip its bits there)",
        Action::Explore,
    ),
    nav(
        &[KeyCode::Char('m')],
        "m",
        "map: the corpus laid out by neighbourhood (UMAP) ↔ list",
        Some(("m", "map/list")),
        Only::Encodes,
        Action::Map,
    ),
    nav(
        &[KeyCode::Char('r')],
        "r",
        "load the index again (after an error)",
        Some(("r", "reload index")),
        Only::Encodes,
        Action::Reload,
    ),
    keys::real_words_quiet(Action::RealWords),
];

impl NeighborsState {
    fn on_enter(&mut self, cx: &mut Ctx) {
        if cx.model.caps.encodes
            && cx.shared.index.is_none()
            && self.error.is_none()
            && !cx.jobs.is_pending(JobKind::Index)
        {
            self.request(cx);
        }
    }

    fn request(&mut self, cx: &mut Ctx) {
        if !cx.model.caps.encodes {
            return;
        }
        self.error = None;
        self.so_far = None;
        cx.jobs.submit(Job::Index {
            corpus: self.corpus.clone(),
        });
    }

    fn on_key(&mut self, cx: &mut Ctx, key: KeyEvent) {
        let kind = cx.model.caps;
        if self.show_map && !self.typing {
            if cx.map_key(key) {
                self.show_map = false;
            }
            return;
        }
        let action = if self.typing {
            match self.input.on_key(key) {
                InputAction::Submit => Action::Submit,
                InputAction::Cancel => Action::Leave,
                _ => return,
            }
        } else {
            match keys::lookup(KEYS, Mode::Nav, key.code, kind) {
                Lookup::Action(a) => a,
                Lookup::NotForThisModel(why) => return cx.notice(why),
                Lookup::Unbound => return,
            }
        };
        match action {
            Action::Submit => {
                if self.input.is_blank() {
                    cx.notice("type a sentence first, then Enter encodes it");
                    return;
                }
                // The sentence becomes Explore's, so its code is the query here and there.
                let text = self.input.text();
                self.typing = false;
                cx.command(Command::Encode(text));
                return;
            }
            Action::Fresh => return self.fresh_input(),
            Action::Edit => {
                let text = cx.shared.text.clone();
                self.input.set(&text);
                self.typing = true;
                return;
            }
            Action::Reload => {
                if cx.jobs.is_pending(JobKind::Index) {
                    cx.notice("the index is being loaded or built already");
                } else {
                    self.request(cx);
                }
                return;
            }
            Action::RealWords => return cx.real_words_elsewhere(),
            Action::Explore => {
                return match self.selected_text(cx.shared) {
                    Some(text) => cx.open_in_explore(&text),
                    None => cx.notice("no row to open: encode a sentence in 1 Explore first"),
                }
            }
            _ => {}
        }
        let n = &mut *self;
        match action {
            Action::Leave => n.typing = false,
            Action::Fewer => {
                n.k = K_STEPS
                    .iter()
                    .rev()
                    .find(|&&s| s < n.k)
                    .copied()
                    .unwrap_or(K_STEPS[0]);
            }
            Action::More => {
                n.k = K_STEPS
                    .iter()
                    .find(|&&s| s > n.k)
                    .copied()
                    .unwrap_or(K_STEPS[K_STEPS.len() - 1]);
            }
            Action::Down => n.selected = n.selected.saturating_add(1),
            Action::Up => n.selected = n.selected.saturating_sub(1),
            Action::PageDown => n.selected = n.selected.saturating_add(10),
            Action::PageUp => n.selected = n.selected.saturating_sub(10),
            Action::Top => n.selected = 0,
            Action::Map => {
                n.show_map = true;
                cx.map_open(None);
                return;
            }
            Action::Submit
            | Action::Fresh
            | Action::Edit
            | Action::Reload
            | Action::RealWords
            | Action::Explore => {
                unreachable!("handled above")
            }
        }
        // The list has k rows, fewer where the index has fewer entries.
        let rows = self
            .searched(cx.shared)
            .map_or(self.k, |ix| ix.index.len().min(self.k));
        self.selected = self.selected.min(rows.saturating_sub(1));
    }

    /// `/`: an empty field for a new query sentence.
    fn fresh_input(&mut self) {
        self.input = TextInput::default();
        self.typing = true;
    }

    fn indexed(&mut self, cx: &mut Ctx, r: Result<Arc<NeighborIndex>, String>) {
        self.so_far = None;
        match r {
            Ok(ix) => {
                if let Some(e) = &ix.save_error {
                    cx.error(format!("the index could not be saved: {e}"));
                }
                cx.shared.index = Some(ix);
                self.error = None;
            }
            Err(e) => self.error = Some(e),
        }
    }

    /// The index searched: the whole one, or while it is built the entries encoded so far.
    pub fn searched<'s>(&'s self, shared: &'s Shared) -> Option<&'s NeighborIndex> {
        shared
            .index
            .as_deref()
            .or(self.so_far.as_ref().map(|p| &*p.index))
    }

    /// How much of the corpus the index searched holds while it is built (entries encoded,
    /// of all), `None` once the whole index is here.
    pub fn searched_part(&self, shared: &Shared) -> Option<(usize, usize)> {
        match (&shared.index, &self.so_far) {
            (None, Some(p)) => Some((p.searched, p.total)),
            _ => None,
        }
    }

    /// The text of the row selected in the list (Hamming or cosine), if there is a list.
    pub fn selected_text(&self, shared: &Shared) -> Option<String> {
        if let Some(Ok(found)) = self.of_code(shared) {
            let n = found.get(self.selected.min(found.len().saturating_sub(1)))?;
            return Some(n.text.to_string());
        }
        let Some(Ok(hits)) = self.cosine_of_code(shared) else {
            return None;
        };
        let h = hits.get(self.selected.min(hits.len().saturating_sub(1)))?;
        match &self.searched(shared)?.index {
            Entries::Cosine(index) => index.texts.get(h.index).cloned(),
            Entries::Hamming(_) => None,
        }
    }

    /// The query (Explore's current code) and its nearest entries by Hamming distance, when
    /// both exist and the codes are bits.
    pub fn of_code<'s>(&'s self, shared: &'s Shared) -> Option<Result<Vec<Neighbor<'s>>, String>> {
        let ix = self.searched(shared)?;
        let Entries::Hamming(index) = &ix.index else {
            return None;
        };
        if shared.code.is_empty() {
            return None;
        }
        Some(
            index
                .search(&shared.code, self.k)
                .map_err(|e| format!("{e:#}")),
        )
    }

    /// [`NeighborsState::of_code`] for continuous codes: the entries of highest cosine
    /// similarity to Explore's current code.
    pub fn cosine_of_code(&self, shared: &Shared) -> Option<Result<Vec<CosineHit>, String>> {
        let ix = self.searched(shared)?;
        let Entries::Cosine(index) = &ix.index else {
            return None;
        };
        if shared.code.is_empty() {
            return None;
        }
        Some(
            index
                .unit_vectors()
                .top_k(&shared.code, self.k)
                .map_err(|e| format!("{e:#}")),
        )
    }
}

impl Tab for NeighborsState {
    fn help_rows() -> Vec<(String, String)> {
        let mut rows = keys::help_rows(KEYS);
        rows.extend(keys::help_rows(super::map::KEYS));
        rows
    }

    fn key(&mut self, cx: &mut Ctx, key: KeyEvent) {
        self.on_key(cx, key)
    }

    fn reply(&mut self, cx: &mut Ctx, body: ReplyBody) -> Option<ReplyBody> {
        match body {
            ReplyBody::Indexed(r) => self.indexed(cx, r),
            ReplyBody::IndexSoFar(p) => self.so_far = Some(p),
            other => return Some(other),
        }
        None
    }

    fn model_changed(&mut self, cx: &mut Ctx, shown: bool) {
        cx.shared.index = None;
        self.so_far = None;
        self.error = None;
        self.selected = 0;
        if shown {
            self.request(cx);
        }
    }

    fn entered(&mut self, cx: &mut Ctx) {
        self.on_enter(cx)
    }

    fn render(&self, view: &View, area: Rect, buf: &mut Buffer) {
        render(self, view, area, buf)
    }

    fn hints(&self, view: &View) -> Vec<(&'static str, &'static str)> {
        NeighborsState::hints(self, view.model.caps)
    }

    fn typing(&self, view: &View) -> bool {
        self.typing || (self.shows_map() && view.map.searching)
    }

    fn paste_field(&mut self, _cx: &mut Ctx) -> Option<&mut TextInput> {
        if !self.typing {
            self.fresh_input();
        }
        Some(&mut self.input)
    }

    fn shows_map(&self) -> bool {
        self.show_map && !self.typing
    }
}

/// Below this many rows (80×24, 70×22 terminals) the list or the map comes first: the query
/// panel shows only what it must (no code row; on the map only the sentence) and the list
/// drops the index's file name.
const SHORT: u16 = 30;

pub fn render(tab: &NeighborsState, app: &View, area: Rect, buf: &mut Buffer) {
    let t = app.theme;
    let short = area.height < SHORT;
    let (query_lines, query_rows) = query_lines(tab, app, area.width.saturating_sub(2), short);
    let [query, body] =
        Layout::vertical([Constraint::Length(query_rows), Constraint::Min(0)]).areas(area);
    render_query(tab, app, query_lines, query, buf);

    if !app.model.caps.encodes {
        widgets::message_panel(
            buf,
            body,
            t,
            " Neighbors ",
            vec![
                Line::from(format!(
                    "This model is `{}`: it has no encoder, so sentences have no codes, and \
                     there are no neighbours and no corpus map.",
                    app.model.caps.name
                )),
                Line::from(""),
                Line::styled(
                    "Load an autoencoder (or train one in tab 5) to use this tab.",
                    t.dim(),
                ),
            ],
        );
        return;
    }
    let nb = tab;
    let so_far = nb.so_far.as_ref().filter(|_| app.shared.index.is_none());
    if let (true, Some(p)) = (app.jobs.is_pending(JobKind::Index), so_far) {
        // The best matches among the entries encoded so far, while the rest are.
        if nb.show_map {
            // The map lays the whole index out (its job is queued behind the index's): say
            // what it waits for and how far that is.
            let block = t.block(Span::styled(" Map ", t.bold()), false);
            let inner = block.inner(body);
            block.render(body, buf);
            let [msg, gauge] =
                Layout::vertical([Constraint::Length(3), Constraint::Length(1)]).areas(inner);
            widgets::wrapped(
                buf,
                msg,
                vec![
                    // The gauge follows the encoding; the count is what the list searches,
                    // which grows a group of entries at a time (they disagreed side by side).
                    Line::from("The map is laid out once the index is built (below)."),
                    Line::styled(
                        format!(
                            "m for the list meanwhile: the best matches among the {} of {} \
                             entries ready to search",
                            widgets::thousands(p.searched),
                            widgets::thousands(p.total)
                        ),
                        t.dim(),
                    ),
                ],
            );
            widgets::job_gauge_waiting(
                buf,
                gauge,
                t,
                app.jobs.progress(JobKind::Index),
                app.jobs.waiting_note(JobKind::Index),
            );
        } else {
            render_list(tab, app, &p.index, short, body, buf);
        }
        return;
    }
    if app.jobs.is_pending(JobKind::Index) {
        let block = t.block(Span::styled(" Corpus index ", t.bold()), false);
        let inner = block.inner(body);
        block.render(body, buf);
        let corpus = nb
            .corpus
            .clone()
            .unwrap_or_else(|| app.model.corpus.clone());
        let [msg, gauge] =
            Layout::vertical([Constraint::Length(3), Constraint::Length(1)]).areas(inner);
        widgets::wrapped(
            buf,
            msg,
            vec![Line::from(widgets::cache_message(
                "index",
                app.model.index_found.as_deref(),
                &app.model.index_path,
                &format!(
                    "encoding the train split of `{}`",
                    if corpus.is_empty() {
                        "wordnet"
                    } else {
                        &corpus
                    }
                ),
            ))],
        );
        widgets::job_gauge_waiting(
            buf,
            gauge,
            t,
            app.jobs.progress(JobKind::Index),
            app.jobs.waiting_note(JobKind::Index),
        );
        return;
    }
    if let Some(e) = &nb.error {
        widgets::message_panel(
            buf,
            body,
            t,
            " Corpus index ",
            vec![
                Line::styled(format!("No index: {e}"), t.error()),
                Line::styled("r to try again", t.dim()),
            ],
        );
        return;
    }
    let Some(ix) = &app.shared.index else {
        let block = t.block(Span::styled(" Corpus index ", t.bold()), false);
        let inner = block.inner(body);
        block.render(body, buf);
        widgets::lines(
            buf,
            inner,
            vec![Line::styled("r to load the index", t.dim())],
        );
        return;
    };
    if nb.show_map {
        super::map::render(&app.map_env(), body, buf);
    } else {
        render_list(tab, app, ix, short, body, buf);
    }
}

fn render_query(
    tab: &NeighborsState,
    app: &View,
    lines: Vec<Line<'static>>,
    area: Rect,
    buf: &mut Buffer,
) {
    let t = app.theme;
    let block = t.block(
        Line::from(vec![
            Span::styled(" Query ", t.bold()),
            Span::styled("· the current code of 1 Explore ", t.dim()),
        ]),
        false,
    );
    let inner = block.inner(area);
    block.render(area, buf);
    if tab.typing {
        let [field, help] =
            Layout::vertical([Constraint::Length(1), Constraint::Min(0)]).areas(inner);
        tab.input.render(buf, field, "sentence › ", true, t);
        widgets::lines(buf, help, lines);
        return;
    }
    widgets::lines(buf, inner, lines);
}

/// The query panel's lines (below the field while typing) and the panel's height: 5 rows, or
/// in a `short` body only as many as the lines kept (the code row goes; on the map, all but
/// the sentence).
fn query_lines(
    tab: &NeighborsState,
    app: &View,
    width: u16,
    short: bool,
) -> (Vec<Line<'static>>, u16) {
    let t = app.theme;
    let ex = app.shared;
    let mut lines = Vec::new();
    if tab.typing {
        lines.push(Line::styled(
            "Enter encodes it (it becomes 1 Explore's sentence too) · Esc cancels",
            t.dim(),
        ));
        return (lines, if short { 4 } else { 5 });
    }
    match &ex.sentence {
        None if !app.model.caps.encodes => lines.push(Line::from(format!(
            "No sentence: a `{}` model has no encoder, so a sentence gets no code to search with.",
            app.model.caps.name
        ))),
        None => {
            lines.push(Line::from("No sentence yet: press / to type one here."));
            lines.push(Line::styled(
                "Sentences are entered in 1 Explore (i, type, Enter); flip bits there with Space \
                 and this tab follows.",
                t.dim(),
            ));
        }
        Some(s) => {
            let mut first = vec![
                Span::styled("sentence ", t.dim()),
                Span::styled(s.shown.clone(), t.bold()),
            ];
            let edited = ex.code != s.code;
            if !app.model.binary() && edited {
                first.push(Span::styled("  (code edited)", t.changed()));
            }
            if let Some(d) = ex.distance().filter(|&d| d > 0 && app.model.binary()) {
                first.push(Span::styled(
                    format!(
                        "  (code edited: {d} bit{} flipped)",
                        if d == 1 { "" } else { "s" }
                    ),
                    t.changed(),
                ));
            }
            lines.push(Line::from(first));
            if app.model.binary() && !short {
                lines.push(Line::from(vec![
                    Span::styled("code     ", t.dim()),
                    Span::raw(BitsFit::text(&ex.code, (width as usize).saturating_sub(9))),
                ]));
            }
            if let Some((code, Ok(text))) = &ex.decoding {
                if *code == ex.code {
                    lines.push(Line::from(vec![
                        Span::styled("decodes  ", t.dim()),
                        if text.is_empty() {
                            Span::styled("(nothing)", t.dim())
                        } else {
                            Span::raw(text.clone())
                        },
                    ]));
                }
            }
        }
    }
    if !short {
        return (lines, 5);
    }
    if tab.show_map {
        lines.truncate(1);
    }
    let rows = lines.len().clamp(1, 3) as u16 + 2;
    (lines, rows)
}

fn source_line(ix: &NeighborIndex, t: Theme) -> Line<'static> {
    let what = match &ix.index {
        Entries::Cosine(_) => "index of μ (exact cosine)",
        Entries::Hamming(_) => "index",
    };
    let how = if ix.from_disk {
        "loaded from"
    } else if ix.save_error.is_some() {
        "built, not saved to"
    } else {
        "built and saved to"
    };
    Line::styled(format!("{what} {how} {}", ix.path.display()), t.dim())
}

/// The list of nearest entries; `short`: the index's file name gives its row to an entry.
fn render_list(
    tab: &NeighborsState,
    app: &View,
    ix: &NeighborIndex,
    short: bool,
    area: Rect,
    buf: &mut Buffer,
) {
    let t = app.theme;
    let nb = tab;
    let block = t.block(
        Line::from(vec![
            Span::styled(format!(" {} nearest ", nb.k), t.bold()),
            Span::styled(
                format!(
                    "of {} {} sentences · {} ",
                    ix.index.len(),
                    ix.index.splits(),
                    match ix.index {
                        Entries::Hamming(_) => "Hamming distance",
                        Entries::Cosine(_) => "cosine similarity of μ",
                    }
                ),
                t.dim(),
            ),
        ]),
        false,
    );
    let inner = block.inner(area);
    block.render(area, buf);
    let mut lines = match nb.searched_part(app.shared) {
        Some((searched, total)) => vec![Line::styled(
            format!(
                "building the index: searched {} % of {} so far (the best matches among the \
                 entries encoded)",
                searched * 100 / total.max(1),
                widgets::thousands(total)
            ),
            t.changed(),
        )],
        None if short => Vec::new(),
        None => vec![source_line(ix, t)],
    };
    if let Entries::Cosine(index) = &ix.index {
        cosine_rows(tab, app, index, inner, &mut lines);
        widgets::lines(buf, inner, lines);
        return;
    }
    match tab.of_code(app.shared) {
        None => lines.push(Line::from(
            "Encode a sentence in 1 Explore to see its nearest corpus entries here.",
        )),
        Some(Err(e)) => lines.push(Line::styled(e, t.error())),
        Some(Ok(found)) => {
            let lw = found
                .iter()
                .filter_map(|n| n.label)
                .map(|l| l.chars().count())
                .max()
                .unwrap_or(1)
                .clamp(1, 20);
            lines.push(Line::styled(
                format!("{:>4}  {:>4}  {:<lw$}  text", "#", "dist", "label"),
                t.dim(),
            ));
            // The rows below the lines above (the source line, the column names).
            let rows = (inner.height as usize).saturating_sub(lines.len());
            let w = ListWindow::new(nb.selected, found.len(), rows);
            lines.extend(w.above_line(6).map(|m| Line::styled(m, t.dim())));
            for (i, n) in found.iter().enumerate().skip(w.start).take(w.count) {
                let label: String = n.label.unwrap_or("–").chars().take(lw).collect();
                let color = if t.color {
                    Style::new().fg(label_color(ix.index.label(n.index)))
                } else {
                    Style::new()
                };
                lines.push(selectable(
                    vec![
                        Span::styled(format!("{:>4}  ", i + 1), t.dim()),
                        Span::styled(format!("{:>4}  ", n.distance), t.bold()),
                        Span::styled(format!("{label:<lw$}  "), color),
                        Span::raw(n.text.to_string()),
                    ],
                    i == nb.selected.min(found.len().saturating_sub(1)),
                    t,
                ));
            }
            lines.extend(w.below_line(6).map(|m| Line::styled(m, t.dim())));
        }
    }
    widgets::lines(buf, inner, lines);
}

/// A row of the list, in the cursor's style when it is the selected one.
fn selectable(spans: Vec<Span<'static>>, selected: bool, t: Theme) -> Line<'static> {
    if selected {
        Line::from(
            spans
                .into_iter()
                .map(|s| Span::styled(s.content, t.cursor()))
                .collect::<Vec<_>>(),
        )
    } else {
        Line::from(spans)
    }
}

/// The list's rows for continuous codes: rank, cosine similarity, label and text.
fn cosine_rows(
    tab: &NeighborsState,
    app: &View,
    index: &crate::index::ContinuousIndex,
    inner: Rect,
    lines: &mut Vec<Line<'static>>,
) {
    let t = app.theme;
    match tab.cosine_of_code(app.shared) {
        None => lines.push(Line::from(
            "Encode a sentence in 1 Explore to see its nearest corpus entries here.",
        )),
        Some(Err(e)) => lines.push(Line::styled(e, t.error())),
        Some(Ok(found)) => {
            let label_of = |h: &CosineHit| {
                index.labels[h.index].map(|l| index.label_names[l as usize].as_str())
            };
            let lw = found
                .iter()
                .filter_map(label_of)
                .map(|l| l.chars().count())
                .max()
                .unwrap_or(1)
                .clamp(1, 20);
            lines.push(Line::styled(
                format!("{:>4}  {:>6}  {:<lw$}  text", "#", "cos", "label"),
                t.dim(),
            ));
            // The rows below the lines above (the source line, the column names).
            let rows = (inner.height as usize).saturating_sub(lines.len());
            let nb = tab;
            let w = ListWindow::new(nb.selected, found.len(), rows);
            lines.extend(w.above_line(6).map(|m| Line::styled(m, t.dim())));
            for (i, h) in found.iter().enumerate().skip(w.start).take(w.count) {
                let label: String = label_of(h).unwrap_or("–").chars().take(lw).collect();
                let color = if t.color {
                    Style::new().fg(label_color(index.labels[h.index]))
                } else {
                    Style::new()
                };
                lines.push(selectable(
                    vec![
                        Span::styled(format!("{:>4}  ", i + 1), t.dim()),
                        Span::styled(format!("{:>6.3}  ", h.similarity), t.bold()),
                        Span::styled(format!("{label:<lw$}  "), color),
                        Span::raw(index.texts[h.index].clone()),
                    ],
                    i == nb.selected.min(found.len().saturating_sub(1)),
                    t,
                ));
            }
            lines.extend(w.below_line(6).map(|m| Line::styled(m, t.dim())));
        }
    }
}
