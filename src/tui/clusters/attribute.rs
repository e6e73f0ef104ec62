//! The Clusters tab's attribute view: the vector between two gold labels' mean codes, applied
//! to Explore's code with a strength stepped by keys, and the decoding of the result.

use crossterm::event::KeyCode;
use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::Widget;

use super::{window_start, Action, ClusterView, ClustersState, ClustersView, BACK};
use crate::explore::bit_string;
use crate::structure::changed_bits;
use crate::tui::context::{Ctx, View};
use crate::tui::keys::{self, nav, Binding, Only};
use crate::tui::widgets;

/// The attribute view.
pub const ATTRIBUTE_KEYS: &[Binding<Action>] = &[
    nav(
        &[KeyCode::Down, KeyCode::Char('j')],
        "↑↓ or jk",
        "attribute: select a gold label",
        Some(("↑/↓", "label")),
        Only::Encodes,
        Action::Down,
    ),
    nav(
        &[KeyCode::Up, KeyCode::Char('k')],
        "↑ or k",
        "",
        None,
        Only::Encodes,
        Action::Up,
    ),
    nav(
        &[KeyCode::Char('f')],
        "f / t",
        "attribute: the selected label is the vector's from / to",
        Some(("f/t", "from/to")),
        Only::Encodes,
        Action::From,
    ),
    nav(
        &[KeyCode::Char('t')],
        "t",
        "",
        None,
        Only::Encodes,
        Action::To,
    ),
    nav(
        &[KeyCode::Char('+'), KeyCode::Char('=')],
        "+ / -",
        "attribute: one bit more / fewer set the target's way",
        Some(("+/-", "bits")),
        Only::Binary,
        Action::Stronger,
    ),
    nav(
        &[KeyCode::Char('-')],
        "-",
        "",
        None,
        Only::Binary,
        Action::Weaker,
    ),
    nav(
        &[KeyCode::Char('+'), KeyCode::Char('=')],
        "+ / -",
        "attribute: strength up / down by ¼ of the vector",
        Some(("+/-", "strength")),
        Only::NotBinary,
        Action::Stronger,
    ),
    nav(
        &[KeyCode::Char('-')],
        "-",
        "",
        None,
        Only::NotBinary,
        Action::Weaker,
    ),
    BACK,
    keys::real_words(Action::RealWords),
];

/// Strength steps: a bit at a time for binary codes, ¼ of the vector for continuous ones.
fn strength_step(binary: bool) -> f32 {
    if binary {
        1.0
    } else {
        0.25
    }
}

pub(super) fn render_attribute(
    tab: &ClustersState,
    app: &View,
    view: &ClusterView,
    area: Rect,
    buf: &mut Buffer,
) {
    let t = app.theme;
    let c = tab;
    let [labels, right] =
        Layout::horizontal([Constraint::Length(32), Constraint::Min(20)]).areas(area);
    let block = t.block(Span::styled(" Gold labels (f from, t to) ", t.bold()), true);
    let inner = block.inner(labels);
    block.render(labels, buf);
    let names = &view.data.label_names;
    let rows = inner.height as usize;
    let start = window_start(c.label_cursor, rows);
    let lines: Vec<Line> = names
        .iter()
        .enumerate()
        .skip(start)
        .take(rows)
        .map(|(i, n)| {
            let role = if c.from == Some(i) {
                "from "
            } else if c.to == Some(i) {
                "to   "
            } else {
                "     "
            };
            let text = format!("{role}{n}");
            if i == c.label_cursor {
                Line::styled(text, t.cursor())
            } else if c.from == Some(i) || c.to == Some(i) {
                Line::styled(text, t.accent())
            } else {
                Line::raw(text)
            }
        })
        .collect();
    if names.is_empty() {
        widgets::lines(
            buf,
            inner,
            vec![Line::styled("this corpus has no gold labels", t.dim())],
        );
    } else {
        widgets::lines(buf, inner, lines);
    }

    let block = t.block(Span::styled(" Attribute vector ", t.bold()), false);
    let inner = block.inner(right);
    block.render(right, buf);
    let mut lines = Vec::new();
    let name = |i: Option<usize>| {
        i.and_then(|i| names.get(i))
            .cloned()
            .unwrap_or_else(|| "(choose)".into())
    };
    lines.push(Line::from(vec![
        Span::styled("from ", t.dim()),
        Span::styled(name(c.from), t.bold()),
        Span::styled("  to ", t.dim()),
        Span::styled(name(c.to), t.bold()),
    ]));
    match &app.shared.sentence {
        Some(s) => lines.push(Line::from(vec![
            Span::styled("sentence  ", t.dim()),
            Span::raw(s.shown.clone()),
        ])),
        None => lines.push(Line::styled(
            "encode a sentence in 1 Explore: the vector moves its current code",
            t.dim(),
        )),
    }
    if let Some((vector, edited)) = tab.edited_code(app.shared) {
        if view.data.binary {
            let changed = changed_bits(&app.shared.code, &edited);
            lines.push(Line::from(vec![
                Span::styled("strength  ", t.dim()),
                Span::styled(format!("{:.0} bits", c.strength), t.accent()),
                Span::styled(
                    format!(
                        " of {} whose means differ · {} changed",
                        vector.max_bits(),
                        changed.len()
                    ),
                    t.dim(),
                ),
            ]));
            // The whole code when it fits on a line, else just the bits that changed.
            if inner.width as usize >= 10 + edited.len() {
                lines.push(Line::from(vec![
                    Span::styled("code      ", t.dim()),
                    Span::raw(bit_string(&edited)),
                ]));
            }
            let list: Vec<String> = changed.iter().map(usize::to_string).collect();
            lines.push(Line::from(vec![
                Span::styled("changed   ", t.dim()),
                Span::raw(if list.is_empty() {
                    "no bit".to_string()
                } else {
                    format!(
                        "bit{} {}",
                        if list.len() == 1 { "" } else { "s" },
                        list.join(", ")
                    )
                }),
            ]));
        } else {
            lines.push(Line::from(vec![
                Span::styled("strength  ", t.dim()),
                Span::styled(format!("{:.2}", c.strength), t.accent()),
                Span::styled(
                    format!(" × (mean({}) − mean({}))", vector.to, vector.from),
                    t.dim(),
                ),
            ]));
        }
        let decoded = match &c.decoded {
            Some(Ok((code, text))) if *code == edited => Span::raw(if text.is_empty() {
                "(nothing)".into()
            } else {
                text.clone()
            }),
            Some(Err(e)) => Span::styled(e.clone(), t.error()),
            _ => Span::styled("decoding…", t.dim()),
        };
        lines.push(Line::from(vec![
            Span::styled("decodes   ", t.dim()),
            decoded,
        ]));
    } else if c.from.is_none() || c.to.is_none() {
        lines.push(Line::styled(
            "choose two labels: ↑/↓ then f (from) and t (to); + and - step the strength",
            t.dim(),
        ));
    }
    widgets::wrapped(buf, inner, lines);
}

impl ClustersState {
    pub(super) fn attribute_do(&mut self, cx: &mut Ctx, action: Action) {
        let labels = cx
            .shared
            .clusters
            .as_ref()
            .map_or(0, |v| v.data.label_names.len());
        let binary = cx.model.binary();
        let c = &mut *self;
        match action {
            Action::Down => c.label_cursor = (c.label_cursor + 1).min(labels.saturating_sub(1)),
            Action::Up => c.label_cursor = c.label_cursor.saturating_sub(1),
            Action::From if labels > 0 => c.from = Some(c.label_cursor),
            Action::To if labels > 0 => c.to = Some(c.label_cursor),
            Action::Stronger => {
                let max = self.edited_code(cx.shared).map(|(v, _)| v.max_bits());
                let c = &mut *self;
                c.strength += strength_step(binary);
                if let (true, Some(max)) = (binary, max) {
                    c.strength = c.strength.min(max as f32);
                }
            }
            Action::Weaker => {
                c.strength = (c.strength - strength_step(binary)).max(0.0);
            }
            Action::Back => {
                c.view = ClustersView::List;
                return;
            }
            _ => return,
        }
        if self.from.is_some() && self.from == self.to {
            cx.notice("from and to are the same label: choose another with ↑/↓ and f or t");
        }
        if cx.shared.code.is_empty() {
            cx.notice("encode a sentence in 1 Explore first: the vector moves its code");
        }
        self.attribute_request(cx);
    }
}
