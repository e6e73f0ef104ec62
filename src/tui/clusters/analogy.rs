//! The Clusters tab's analogy view: A is to B as C is to ?, from three typed sentences.

use crossterm::event::KeyCode;
use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::Widget;

use super::{Action, ClustersState, ClustersView, StructureJob, StructureResult, BACK};
use crate::explore::bit_string;
use crate::structure::changed_bits;
use crate::tui::context::{Ctx, View};
use crate::tui::keys::{self, nav, typing, Binding, Only};
use crate::tui::widgets::{self, TextInput};

/// The analogy view: three text fields and the result.
pub const ANALOGY_KEYS: &[Binding<Action>] = &[
    typing(
        &[KeyCode::Enter],
        "Enter",
        "analogy: next field; on C, compute",
        Some(("Enter", "next / compute")),
        Action::Submit,
    ),
    typing(
        &[KeyCode::Up],
        "↑ / ↓",
        "analogy: previous / next field",
        Some(("↑/↓", "field")),
        Action::PreviousField,
    ),
    typing(&[KeyCode::Down], "↓", "", None, Action::NextField),
    typing(
        &[KeyCode::Esc],
        "Esc",
        "analogy: leave the fields",
        Some(("Esc", "stop typing")),
        Action::Leave,
    ),
    nav(
        &[KeyCode::Char('i'), KeyCode::Enter],
        "i or Enter",
        "analogy: edit A, B and C",
        Some(("i", "edit A/B/C")),
        Only::Encodes,
        Action::Edit,
    ),
    nav(
        &[KeyCode::Char('/')],
        "/",
        "analogy: a new one, all three fields empty",
        Some(("/", "new analogy")),
        Only::Encodes,
        Action::Fresh,
    ),
    BACK,
    keys::real_words(Action::RealWords),
    keys::to_explore(
        "analogy: open the result's decoding in 1 Explore (typed in, encoded: flip its bits there)",
        Action::Open,
    ),
];

pub(super) fn render_analogy(tab: &ClustersState, app: &View, area: Rect, buf: &mut Buffer) {
    let t = app.theme;
    let c = tab;
    let [fields, result] =
        Layout::vertical([Constraint::Length(5), Constraint::Min(0)]).areas(area);
    let block = t.block(
        Span::styled(" Analogy · A is to B as C is to ? ", t.bold()),
        c.typing,
    );
    let inner = block.inner(fields);
    block.render(fields, buf);
    let rows = Layout::vertical([Constraint::Length(1); 3]).split(inner);
    for (i, name) in ["A › ", "B › ", "C › "].iter().enumerate() {
        c.inputs[i].render(buf, rows[i], name, c.typing && c.field == i, t);
    }
    let block = t.block(Span::styled(" z(C) + z(B) − z(A) ", t.bold()), false);
    let inner = block.inner(result);
    block.render(result, buf);
    let rule = if app.model.binary() {
        "per bit, rounded at ½: B's bit where A and B differ, else C's"
    } else {
        "μ(C) + μ(B) − μ(A)"
    };
    let mut lines = vec![Line::styled(format!("rule: {rule}"), t.dim())];
    match &c.analogy {
        None => lines.push(Line::styled(
            "type A, B and C (Enter moves on; Enter on C computes)",
            t.dim(),
        )),
        Some(Err(e)) => lines.push(Line::styled(e.clone(), t.error())),
        Some(Ok(StructureResult::Analogy {
            shown,
            codes,
            decodings,
            result,
            result_decoding,
        })) => {
            for (i, name) in ["A", "B", "C"].iter().enumerate() {
                lines.push(Line::from(vec![
                    Span::styled(format!("{name} "), t.accent()),
                    Span::raw(shown[i].clone()),
                    Span::styled("  decodes  ", t.dim()),
                    Span::raw(decodings.get(i).cloned().unwrap_or_default()),
                ]));
            }
            if app.model.binary() {
                lines.push(Line::from(vec![
                    Span::styled("code  ", t.dim()),
                    Span::raw(bit_string(result)),
                    Span::styled(
                        format!(
                            "  (differs from C in {} bits)",
                            changed_bits(&codes[2], result).len()
                        ),
                        t.dim(),
                    ),
                ]));
            }
            lines.push(Line::from(vec![
                Span::styled("C + B − A  decodes  ", t.accent()),
                Span::styled(result_decoding.clone(), t.bold()),
                Span::styled("   (e: open it in 1 Explore)", t.dim()),
            ]));
        }
        Some(Ok(_)) => {}
    }
    widgets::wrapped(buf, inner, lines);
}

impl ClustersState {
    pub(super) fn analogy_do(&mut self, cx: &mut Ctx, action: Action) {
        let c = &mut *self;
        match action {
            Action::Edit => c.typing = true,
            Action::Fresh => self.fresh_input(),
            Action::Back => c.view = ClustersView::List,
            Action::PreviousField => c.field = (c.field + 2) % 3,
            Action::NextField => c.field = (c.field + 1) % 3,
            Action::Leave => c.typing = false,
            Action::Open => match &c.analogy {
                Some(Ok(StructureResult::Analogy {
                    result_decoding, ..
                })) => cx.open_decoding_in_explore(result_decoding),
                _ => cx.notice("no analogy yet: type A, B and C (Enter on C computes)"),
            },
            Action::Submit => {
                if c.field < 2 {
                    c.field += 1;
                    return;
                }
                if let Some(blank) = c.inputs.iter().position(TextInput::is_blank) {
                    c.field = blank;
                    cx.notice("type all three sentences: A is to B as C is to ?");
                    return;
                }
                c.typing = false;
                let sentences = [c.inputs[0].text(), c.inputs[1].text(), c.inputs[2].text()];
                let real_words = !cx.shared.raw_decoding;
                self.submit_structure(
                    cx,
                    StructureJob::Analogy {
                        sentences,
                        real_words,
                    },
                );
            }
            _ => {}
        }
    }
}
