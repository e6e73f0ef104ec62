//! Tab 2, Path: from code(A) to code(B) one bit at a time along a random Hamming path
//! (binary models), or by linear / spherical interpolation (continuous codes), decoding each
//! point on the way.

use crossterm::event::{KeyCode, KeyEvent};
use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::Widget;

use super::app::App;
use super::widgets::{self, put, text, InputAction, TextInput};
use super::worker::{Job, JobKind};
use crate::explore;
use crate::tasks::PathWalk;

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

    pub fn hints(&self, binary: bool) -> Vec<(&'static str, &'static str)> {
        if self.focus == PathFocus::Steps && self.walk.is_none() {
            return vec![("a/b", "edit A/B"), ("/", "new pair")];
        }
        match self.focus {
            PathFocus::A | PathFocus::B => vec![
                ("Enter", "next / walk"),
                ("↑/↓", "A ↔ B"),
                ("Esc", "to the steps"),
            ],
            PathFocus::Steps if binary => vec![
                ("↑/↓", "select"),
                ("n", "new random path"),
                ("N", "previous seed"),
                ("a/b", "edit A/B"),
                ("/", "new pair"),
            ],
            PathFocus::Steps => vec![
                ("↑/↓", "select"),
                ("m", "linear/spherical"),
                ("+/-", "steps"),
                ("a/b", "edit A/B"),
                ("/", "new pair"),
            ],
        }
    }
}

impl App {
    pub(super) fn path_key(&mut self, key: KeyEvent) {
        let focus = self.path.focus;
        if focus != PathFocus::Steps {
            let input = if focus == PathFocus::A {
                &mut self.path.a
            } else {
                &mut self.path.b
            };
            match input.on_key(key) {
                InputAction::Submit => {
                    if focus == PathFocus::A && self.path.b.is_blank() {
                        self.path.focus = PathFocus::B;
                    } else {
                        self.path_walk();
                    }
                }
                InputAction::Cancel => self.path.focus = PathFocus::Steps,
                InputAction::Ignored => match key.code {
                    KeyCode::Up | KeyCode::Down => {
                        self.path.focus = if focus == PathFocus::A {
                            PathFocus::B
                        } else {
                            PathFocus::A
                        };
                    }
                    _ => {}
                },
                _ => {}
            }
            return;
        }
        let binary = self.model.binary();
        let n = self.path.walk.as_ref().map_or(0, |w| w.points.len());
        let sel = self.path.selected;
        match key.code {
            KeyCode::Char('a') | KeyCode::Char('i') => self.path.focus = PathFocus::A,
            KeyCode::Char('/') => self.path_fresh_input(),
            KeyCode::Char('b') => self.path.focus = PathFocus::B,
            KeyCode::Up | KeyCode::Char('k') => self.path.selected = sel.saturating_sub(1),
            KeyCode::Down | KeyCode::Char('j') => {
                self.path.selected = (sel + 1).min(n.saturating_sub(1))
            }
            KeyCode::PageUp => self.path.selected = sel.saturating_sub(10),
            KeyCode::PageDown => self.path.selected = (sel + 10).min(n.saturating_sub(1)),
            KeyCode::Home | KeyCode::Char('g') => self.path.selected = 0,
            KeyCode::End | KeyCode::Char('G') => self.path.selected = n.saturating_sub(1),
            KeyCode::Char('n' | 'N') if !binary => self.notice(
                "n and N draw another random Hamming path (binary codes); an interpolation has no randomness",
            ),
            KeyCode::Char('n') => {
                self.path.seed = self.path.seed.wrapping_add(1);
                self.path_walk();
            }
            KeyCode::Char('N') => {
                self.path.seed = self.path.seed.saturating_sub(1);
                self.path_walk();
            }
            KeyCode::Char('w') | KeyCode::Enter => self.path_walk(),
            KeyCode::Char('m') if !binary => {
                self.path.slerp = !self.path.slerp;
                self.path_walk();
            }
            KeyCode::Char('+') | KeyCode::Char('=') if !binary => {
                self.path.steps = (self.path.steps + 1).min(64);
                self.path_walk();
            }
            KeyCode::Char('-') | KeyCode::Char('_') if !binary => {
                self.path.steps = self.path.steps.saturating_sub(1).max(1);
                self.path_walk();
            }
            KeyCode::Char('m' | '+' | '=' | '-' | '_') => self.notice(
                "m and +/- set the interpolation of continuous codes; a binary path flips one bit per step (n draws another)",
            ),
            _ => {}
        }
    }

    /// `/`: a new pair of sentences, starting with an empty A.
    pub(super) fn path_fresh_input(&mut self) {
        self.path.a = TextInput::default();
        self.path.b = TextInput::default();
        self.path.focus = PathFocus::A;
    }

    fn path_walk(&mut self) {
        if self.path.a.is_blank() || self.path.b.is_blank() {
            self.path.focus = if self.path.a.is_blank() {
                PathFocus::A
            } else {
                PathFocus::B
            };
            self.notice("type both sentences A and B first");
            return;
        }
        self.jobs.submit(Job::Path {
            a: self.path.a.text(),
            b: self.path.b.text(),
            seed: self.path.seed,
            steps: self.path.steps,
            slerp: self.path.slerp,
        });
        self.path.focus = PathFocus::Steps;
    }

    pub(super) fn path_walked(&mut self, r: Result<PathWalk, String>) {
        match r {
            Ok(w) => {
                self.path.selected = self.path.selected.min(w.points.len().saturating_sub(1));
                self.path.walk = Some(w);
                self.path.error = None;
            }
            Err(e) => {
                self.path.walk = None;
                self.path.error = Some(e);
            }
        }
    }

    pub(super) fn path_model_changed(&mut self) {
        let had = self.path.walk.is_some();
        self.path.walk = None;
        self.path.error = None;
        self.path.selected = 0;
        if had {
            self.path_walk();
        }
    }
}

pub fn render(app: &App, area: Rect, buf: &mut Buffer) {
    let t = app.theme;
    let st = &app.path;
    let binary = app.model.binary();
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
    let [inputs, info, table] = Layout::vertical([
        Constraint::Length(4),
        Constraint::Length(2),
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

    let mut info_lines = Vec::new();
    if let Some(e) = &st.error {
        info_lines.push(Line::from(Span::styled(e.clone(), t.error())));
    } else if let Some(w) = &st.walk {
        let head = if let Some(d) = w.distance {
            vec![
                Span::styled(format!(" Hamming distance {d}"), t.accent()),
                Span::raw(format!(
                    " · random path with seed {} (n: another path, N: previous)",
                    w.seed
                )),
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
        render_points(app, w, inner, buf);
    }
}

fn render_points(app: &App, w: &PathWalk, area: Rect, buf: &mut Buffer) {
    let t = app.theme;
    let st = &app.path;
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
            for (j, &v) in p.code.iter().enumerate() {
                let sym = if explore::is_set(v) { "1" } else { "0" };
                let style = if Some(j) == p.flipped {
                    t.changed()
                } else {
                    t.plain()
                };
                put(buf, area, x_step + 9 + j as u16, y, sym, style);
            }
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
