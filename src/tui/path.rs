//! Tab 2, Path: from code(A) to code(B) one bit at a time along a random Hamming path
//! (binary models), or by linear / spherical interpolation (continuous codes), decoding each
//! point on the way.

use crossterm::event::{KeyCode, KeyEvent};
use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::Widget;

use super::context::{Ctx, Tab, View};
use super::jobs::{Job, JobKind, ReplyBody};
use super::keys::{self, nav, typing, Binding, Lookup, Mode, Only};
use super::widgets::{self, put, text, BitsFit, InputAction, TextInput};
use crate::coder::Capabilities;
use crate::coder::PathWalk;
use crate::explore;

/// Where keys go: one of the two sentence fields, or the list of steps (navigation, where
/// digits switch tabs; the tab opens here).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum PathFocus {
    A,
    B,
    #[default]
    Steps,
}

#[derive(Debug)]
pub struct PathState {
    pub a: TextInput,
    pub b: TextInput,
    pub focus: PathFocus,
    pub seed: u64,
    /// Interpolation steps (continuous codes).
    pub steps: usize,
    pub slerp: bool,
    pub walk: Option<PathWalk>,
    pub error: Option<String>,
    pub selected: usize,
    /// The sentences of the latest walk asked for and whether it asked for real words (None
    /// before the first): `w`, here or on another tab, walks the same pair again (even while
    /// that walk is on its way, and whatever the fields hold now), decoded the new way.
    requested: Option<(String, String, bool)>,
}

impl Default for PathState {
    fn default() -> Self {
        Self {
            a: TextInput::default(),
            b: TextInput::default(),
            focus: PathFocus::Steps,
            seed: 0,
            steps: 8,
            slerp: false,
            walk: None,
            error: None,
            selected: 0,
            requested: None,
        }
    }
}

impl PathState {
    pub fn typing(&self) -> bool {
        self.focus != PathFocus::Steps
    }

    /// The field being typed in (A when none is).
    pub fn focused_input(&mut self) -> &mut TextInput {
        match self.focus {
            PathFocus::B => &mut self.b,
            PathFocus::A | PathFocus::Steps => &mut self.a,
        }
    }

    pub fn hints(&self, kind: Capabilities) -> Vec<(&'static str, &'static str)> {
        match self.focus {
            PathFocus::A | PathFocus::B => keys::hints(KEYS, Mode::Typing, kind),
            PathFocus::Steps if self.walk.is_none() => {
                keys::hints_where(KEYS, Mode::Nav, kind, |a| {
                    matches!(a, Action::EditA | Action::Fresh)
                })
            }
            PathFocus::Steps => keys::hints(KEYS, Mode::Nav, kind),
        }
    }
}

/// What a key can do on this tab.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Submit,
    SwitchField,
    Leave,
    Up,
    Down,
    PageUp,
    PageDown,
    First,
    Last,
    NextSeed,
    PreviousSeed,
    Interpolation,
    MoreSteps,
    FewerSteps,
    EditA,
    EditB,
    Fresh,
    Walk,
    RealWords,
}

/// The tab's keys: dispatch, footer and help all read this table.
pub const KEYS: &[Binding<Action>] = &[
    typing(
        &[KeyCode::Enter],
        "Enter",
        "in A: go to B; in B: walk from code(A) to code(B)",
        Some(("Enter", "next / walk")),
        Action::Submit,
    ),
    typing(
        &[KeyCode::Up, KeyCode::Down],
        "↑ / ↓",
        "switch between A and B",
        Some(("↑/↓", "A ↔ B")),
        Action::SwitchField,
    ),
    typing(
        &[KeyCode::Esc],
        "Esc",
        "leave the fields for the steps",
        Some(("Esc", "to the steps")),
        Action::Leave,
    ),
    nav(
        &[KeyCode::Up, KeyCode::Char('k')],
        "↑↓ jk PgUp/Dn Home/End",
        "select a step (its code is shown below when it does not fit)",
        Some(("↑/↓", "select")),
        Only::Any,
        Action::Up,
    ),
    nav(
        &[KeyCode::Down, KeyCode::Char('j')],
        "↓ or j",
        "",
        None,
        Only::Any,
        Action::Down,
    ),
    nav(
        &[KeyCode::PageUp],
        "PgUp",
        "",
        None,
        Only::Any,
        Action::PageUp,
    ),
    nav(
        &[KeyCode::PageDown],
        "PgDn",
        "",
        None,
        Only::Any,
        Action::PageDown,
    ),
    nav(
        &[KeyCode::Home, KeyCode::Char('g')],
        "Home or g",
        "",
        None,
        Only::Any,
        Action::First,
    ),
    nav(
        &[KeyCode::End, KeyCode::Char('G')],
        "End or G",
        "",
        None,
        Only::Any,
        Action::Last,
    ),
    nav(
        &[KeyCode::Char('n')],
        "n / N",
        "another random Hamming path: next / previous seed",
        Some(("n", "new random path")),
        Only::Binary,
        Action::NextSeed,
    ),
    nav(
        &[KeyCode::Char('N')],
        "N",
        "",
        Some(("N", "previous seed")),
        Only::Binary,
        Action::PreviousSeed,
    ),
    nav(
        &[KeyCode::Char('m')],
        "m",
        "linear ↔ spherical interpolation",
        Some(("m", "linear/spherical")),
        Only::Continuous,
        Action::Interpolation,
    ),
    nav(
        &[KeyCode::Char('+'), KeyCode::Char('=')],
        "+ / -",
        "more / fewer interpolation steps",
        Some(("+/-", "steps")),
        Only::Continuous,
        Action::MoreSteps,
    ),
    nav(
        &[KeyCode::Char('-'), KeyCode::Char('_')],
        "-",
        "",
        None,
        Only::Continuous,
        Action::FewerSteps,
    ),
    nav(
        &[KeyCode::Char('a'), KeyCode::Char('i')],
        "a (or i) / b",
        "edit A / B",
        Some(("a/b", "edit A/B")),
        Only::Encodes,
        Action::EditA,
    ),
    nav(
        &[KeyCode::Char('b')],
        "b",
        "",
        None,
        Only::Encodes,
        Action::EditB,
    ),
    nav(
        &[KeyCode::Char('/')],
        "/",
        "a new pair: empty A and B, typing A",
        Some(("/", "new pair")),
        Only::Encodes,
        Action::Fresh,
    ),
    nav(
        &[KeyCode::Enter],
        "Enter",
        "walk again",
        None,
        Only::Any,
        Action::Walk,
    ),
    keys::real_words(Action::RealWords),
];

impl PathState {
    fn on_key(&mut self, cx: &mut Ctx, key: KeyEvent) {
        let focus = self.focus;
        let kind = cx.model.caps;
        if focus != PathFocus::Steps {
            let action = match self.focused_input().on_key(key) {
                InputAction::Submit => Action::Submit,
                InputAction::Cancel => Action::Leave,
                InputAction::Ignored => match keys::lookup(KEYS, Mode::Typing, key.code, kind) {
                    Lookup::Action(a) => a,
                    _ => return,
                },
                _ => return,
            };
            return self.act(cx, action);
        }
        match keys::lookup(KEYS, Mode::Nav, key.code, kind) {
            Lookup::Action(a) => self.act(cx, a),
            Lookup::NotForThisModel(why) => cx.notice(why),
            Lookup::Unbound => {}
        }
    }

    fn act(&mut self, cx: &mut Ctx, action: Action) {
        let n = self.walk.as_ref().map_or(0, |w| w.points.len());
        let last = n.saturating_sub(1);
        let sel = self.selected;
        let p = &mut *self;
        match action {
            Action::Submit => {
                if p.focus == PathFocus::A && p.b.is_blank() {
                    p.focus = PathFocus::B;
                } else {
                    self.walk(cx);
                }
            }
            Action::SwitchField => {
                p.focus = if p.focus == PathFocus::A {
                    PathFocus::B
                } else {
                    PathFocus::A
                };
            }
            Action::Leave => {
                p.focus = PathFocus::Steps;
                // `/` then Esc: the new pair is cancelled, and the fields show the pair of the
                // path on screen again (they stayed empty above the old path).
                if let (true, true, Some((a, b, _))) =
                    (p.a.is_blank(), p.b.is_blank(), p.requested.as_ref())
                {
                    p.a = TextInput::with_text(a);
                    p.b = TextInput::with_text(b);
                }
            }
            Action::Up => p.selected = sel.saturating_sub(1),
            Action::Down => p.selected = (sel + 1).min(last),
            Action::PageUp => p.selected = sel.saturating_sub(10),
            Action::PageDown => p.selected = (sel + 10).min(last),
            Action::First => p.selected = 0,
            Action::Last => p.selected = last,
            Action::NextSeed => {
                p.seed = p.seed.wrapping_add(1);
                self.walk(cx);
            }
            Action::PreviousSeed => {
                p.seed = p.seed.saturating_sub(1);
                self.walk(cx);
            }
            Action::Interpolation => {
                p.slerp = !p.slerp;
                self.walk(cx);
            }
            Action::MoreSteps => {
                p.steps = (p.steps + 1).min(64);
                self.walk(cx);
            }
            Action::FewerSteps => {
                p.steps = p.steps.saturating_sub(1).max(1);
                self.walk(cx);
            }
            Action::EditA => p.focus = PathFocus::A,
            Action::EditB => p.focus = PathFocus::B,
            Action::Fresh => self.fresh_input(),
            Action::Walk => self.walk(cx),
            Action::RealWords => {
                cx.shared.raw_decoding = !cx.shared.raw_decoding;
                self.walk_again_if_stale(cx);
            }
        }
    }

    /// `/`: a new pair of sentences, starting with an empty A.
    fn fresh_input(&mut self) {
        self.a = TextInput::default();
        self.b = TextInput::default();
        self.focus = PathFocus::A;
    }

    fn walk(&mut self, cx: &mut Ctx) {
        if self.a.is_blank() || self.b.is_blank() {
            self.focus = if self.a.is_blank() {
                PathFocus::A
            } else {
                PathFocus::B
            };
            cx.notice("type both sentences A and B first");
            return;
        }
        self.submit(cx, self.a.text(), self.b.text());
        self.focus = PathFocus::Steps;
    }

    fn submit(&mut self, cx: &mut Ctx, a: String, b: String) {
        let real_words = !cx.shared.raw_decoding;
        self.requested = Some((a.clone(), b.clone(), real_words));
        cx.jobs.submit(Job::Path {
            a,
            b,
            seed: self.seed,
            steps: self.steps,
            slerp: self.slerp,
            real_words,
        });
    }

    /// The latest walk again when it asked for the other decoding than the one set now.
    fn walk_again_if_stale(&mut self, cx: &mut Ctx) {
        if let Some((a, b, real_words)) = self.requested.clone() {
            if real_words == cx.shared.raw_decoding {
                self.submit(cx, a, b);
            }
        }
    }

    fn walked(&mut self, _cx: &mut Ctx, r: Result<PathWalk, String>) {
        match r {
            Ok(w) => {
                self.selected = self.selected.min(w.points.len().saturating_sub(1));
                self.walk = Some(w);
                self.error = None;
            }
            Err(e) => {
                self.walk = None;
                self.error = Some(e);
            }
        }
    }
}

impl Tab for PathState {
    fn help_rows() -> Vec<(String, String)> {
        keys::help_rows(KEYS)
    }

    fn key(&mut self, cx: &mut Ctx, key: KeyEvent) {
        self.on_key(cx, key)
    }

    fn reply(&mut self, cx: &mut Ctx, body: ReplyBody) -> Option<ReplyBody> {
        match body {
            ReplyBody::Path(r) => self.walked(cx, r),
            other => return Some(other),
        }
        None
    }

    fn entered(&mut self, cx: &mut Ctx) {
        // An empty start takes Explore's sentence (what the user typed is kept).
        if self.a.is_blank() && cx.shared.sentence.is_some() && !cx.shared.text.trim().is_empty() {
            self.a = TextInput::with_text(&cx.shared.text);
        }
        // `w` pressed on another tab since the latest walk: the same walk, decoded anew.
        self.walk_again_if_stale(cx);
    }

    fn model_changed(&mut self, cx: &mut Ctx, _shown: bool) {
        let had = self.walk.is_some();
        self.walk = None;
        self.error = None;
        self.selected = 0;
        if had {
            self.walk(cx);
        }
    }

    fn render(&self, view: &View, area: Rect, buf: &mut Buffer) {
        render(self, view, area, buf)
    }

    fn hints(&self, view: &View) -> Vec<(&'static str, &'static str)> {
        PathState::hints(self, view.model.caps)
    }

    fn typing(&self, _view: &View) -> bool {
        PathState::typing(self)
    }

    fn paste_field(&mut self, _cx: &mut Ctx) -> Option<&mut TextInput> {
        if !PathState::typing(self) {
            self.fresh_input();
        }
        Some(self.focused_input())
    }
}

pub fn render(tab: &PathState, app: &View, area: Rect, buf: &mut Buffer) {
    let t = app.theme;
    let st = tab;
    if !app.model.kind.has_latent() {
        let b = t.block(" Path ", false);
        let inner = b.inner(area);
        b.render(area, buf);
        widgets::wrapped(
            buf,
            inner,
            vec![Line::from("An `lm` model has no latent space to walk.")],
        );
        return;
    }
    let info_lines = info_lines(tab, app, area.width);
    // A short body (80×24, 70×22) gives the steps the info's blank second row.
    let info_rows = if area.height < SHORT {
        info_lines.len().clamp(1, 2) as u16
    } else {
        2
    };
    let [inputs, info, table] = Layout::vertical([
        Constraint::Length(4),
        Constraint::Length(info_rows),
        Constraint::Min(3),
    ])
    .areas(area);

    let typing = st.focus != PathFocus::Steps;
    let title = Line::from(vec![
        Span::styled(
            " Sentences A and B ",
            if typing { t.accent() } else { t.bold() },
        ),
        Span::styled(
            if typing {
                "(Enter: next field, then walk · ↑/↓ switch · Esc to the steps) "
            } else {
                "(a or b edits · / new pair) "
            },
            t.dim(),
        ),
    ]);
    let block = t.block(title, typing);
    let inner = block.inner(inputs);
    block.render(inputs, buf);
    st.a.render(
        buf,
        Rect { height: 1, ..inner },
        "A › ",
        st.focus == PathFocus::A,
        t,
    );
    if inner.height > 1 {
        st.b.render(
            buf,
            Rect {
                y: inner.y + 1,
                height: 1,
                ..inner
            },
            "B › ",
            st.focus == PathFocus::B,
            t,
        );
    }

    widgets::lines(buf, info, info_lines);

    let count = st.walk.as_ref().map_or(0, |w| w.points.len());
    let block = t.block(
        Line::from(vec![Span::styled(
            format!(" Path · {count} points "),
            if typing { t.bold() } else { t.accent() },
        )]),
        !typing,
    );
    let inner = block.inner(table);
    block.render(table, buf);
    if let Some(w) = &st.walk {
        render_points(tab, app, w, inner, buf);
    }
}

/// Below this many rows the steps come first (see [`render`]).
const SHORT: u16 = 30;

/// The line under the sentences: the walk's distance or interpolation and its keys (the keys
/// left out where the line would be cut), notices about A and B, or what to do.
fn info_lines(tab: &PathState, app: &View, width: u16) -> Vec<Line<'static>> {
    let t = app.theme;
    let st = tab;
    let binary = app.model.binary();
    let mut info_lines = Vec::new();
    if let Some(e) = &st.error {
        info_lines.push(Line::from(Span::styled(e.clone(), t.error())));
    } else if let Some(w) = &st.walk {
        let mut head = if let Some(d) = w.distance {
            vec![
                Span::styled(format!(" Hamming distance {d}"), t.accent()),
                Span::raw(format!(" · random path with seed {}", w.seed)),
                Span::raw(" (n: another path, N: previous)"),
            ]
        } else {
            vec![
                Span::styled(
                    format!(
                        " {} interpolation, {} steps",
                        if w.slerp { "spherical" } else { "linear" },
                        w.points.len().saturating_sub(1)
                    ),
                    t.accent(),
                ),
                Span::raw(" (m: linear / spherical · +/-: steps)"),
            ]
        };
        let len: usize = head.iter().map(|s| s.content.chars().count()).sum();
        if len > width as usize && head.len() > 1 {
            head.pop();
        }
        info_lines.push(Line::from(head));
        let notes: Vec<String> =
            w.a.notices()
                .into_iter()
                .map(|n| format!("A: {n}"))
                .chain(w.b.notices().into_iter().map(|n| format!("B: {n}")))
                .collect();
        if !notes.is_empty() {
            info_lines.push(Line::from(Span::styled(
                format!(" {}", notes.join(" · ")),
                t.notice(),
            )));
        }
    } else if app.jobs.is_pending(JobKind::Path) {
        info_lines.push(Line::from(Span::styled(" walking…", t.dim())));
    } else if !st.a.is_blank() && st.b.is_blank() {
        let whose = if st.a.text() == app.shared.text {
            " A is 1 Explore's sentence ·"
        } else {
            ""
        };
        info_lines.push(Line::from(Span::styled(
            format!("{whose} b: type B, then Enter walks from code(A) to code(B)"),
            t.dim(),
        )));
    } else {
        info_lines.push(Line::from(Span::styled(
            if binary {
                " a: type A, Enter, type B, Enter: walk a random shortest path between their codes, one bit per step"
            } else {
                " a: type A, Enter, type B, Enter: interpolate between their codes"
            },
            t.dim(),
        )));
    }
    info_lines
}

fn render_points(tab: &PathState, app: &View, w: &PathWalk, area: Rect, buf: &mut Buffer) {
    let t = app.theme;
    let st = tab;
    if area.height < 2 {
        return;
    }
    let l = w.points.first().map_or(0, |p| p.code.len());
    // index (4) + step label (9) + code + gap + at least 20 columns of text
    let show_code = w.binary && (area.width as usize) >= 4 + 9 + l + 2 + 20;
    let code_w = if show_code { l as u16 + 2 } else { 0 };
    let x_step = area.x + 5;
    let x_code = x_step + 9;
    let x_text = x_code + code_w;
    let y0 = area.y;
    text(buf, area, area.x, y0, "   #", t.dim());
    text(
        buf,
        area,
        x_step,
        y0,
        if w.binary { "step" } else { "t" },
        t.dim(),
    );
    if show_code {
        text(buf, area, x_code, y0, "code", t.dim());
    }
    text(buf, area, x_text, y0, "decoding", t.dim());
    // Without a code column, the selected step's code gets a line of its own at the bottom.
    let detail = w.binary && !show_code && area.height >= 4;
    let visible = (area.height - 1 - detail as u16) as usize;
    if detail {
        if let Some(p) = w.points.get(st.selected) {
            let y = area.bottom() - 1;
            text(
                buf,
                area,
                area.x,
                y,
                &format!("{:>4}", st.selected),
                t.dim(),
            );
            text(buf, area, x_step, y, "code", t.dim());
            // A code wider than the row: the part around the flipped bit, the cut marked.
            let x0 = x_step + 9;
            let fit = BitsFit::new(
                p.code.len(),
                area.right().saturating_sub(x0) as usize,
                p.flipped,
            );
            text(buf, area, x0, y, fit.prefix, t.dim());
            let x_bits = x0 + fit.prefix.chars().count() as u16;
            for (j, &v) in p.code.iter().enumerate().skip(fit.start).take(fit.count) {
                let sym = if explore::is_set(v) { "1" } else { "0" };
                let style = if Some(j) == p.flipped {
                    t.changed()
                } else {
                    t.plain()
                };
                put(buf, area, x_bits + (j - fit.start) as u16, y, sym, style);
            }
            let x_end = x_bits + fit.count as u16;
            text(buf, area, x_end, y, &fit.suffix, t.dim());
        }
    }
    let first = st
        .selected
        .saturating_sub(visible.saturating_sub(1))
        .min(w.points.len().saturating_sub(visible));
    for (row, (i, p)) in w
        .points
        .iter()
        .enumerate()
        .skip(first)
        .take(visible)
        .enumerate()
    {
        let y = y0 + 1 + row as u16;
        let selected = i == st.selected && st.focus == PathFocus::Steps;
        let idx_style = if selected { t.cursor() } else { t.dim() };
        text(buf, area, area.x, y, &format!("{i:>4}"), idx_style);
        let label = match (p.flipped, w.binary) {
            (Some(b), _) => format!("flip {b:<3}"),
            (None, true) if i == 0 => "A".to_string(),
            (None, _) => format!("{:.2}", p.t),
        };
        text(buf, area, x_step, y, &label, t.accent());
        if show_code {
            for (j, &v) in p.code.iter().enumerate() {
                let sym = if explore::is_set(v) { "1" } else { "0" };
                let style = if Some(j) == p.flipped {
                    t.changed()
                } else {
                    t.plain()
                };
                put(buf, area, x_code + j as u16, y, sym, style);
            }
        }
        let same_as_prev = i > 0 && w.points[i - 1].text == p.text;
        let style = if selected {
            t.bold()
        } else if same_as_prev {
            t.dim()
        } else {
            t.plain()
        };
        let mut s = p.text.clone();
        if i + 1 == w.points.len() && w.binary {
            s.push_str("  (B)");
        }
        text(buf, area, x_text, y, &s, style);
    }
}
