//! The Clusters tab's members view: a cluster's entries nearest its centre first; Enter loads
//! one into Explore.

use crossterm::event::KeyCode;
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Widget;

use super::{window_start, Action, ClusterView, ClustersState, ClustersView, BACK, SELECT_ACTIONS};
use crate::tui::context::{Command, Ctx, View};
use crate::tui::keys::{self, nav, Binding, Only};
use crate::tui::widgets;

const MEMBERS_SELECT: [Binding<Action>; 5] = keys::list_keys(
    "members: select one (nearest the centre first)",
    ("↑/↓", "select"),
    Only::Encodes,
    SELECT_ACTIONS,
);

/// A cluster's members.
pub const MEMBERS_KEYS: &[Binding<Action>] = &[
    MEMBERS_SELECT[0],
    MEMBERS_SELECT[1],
    MEMBERS_SELECT[2],
    MEMBERS_SELECT[3],
    MEMBERS_SELECT[4],
    nav(
        &[KeyCode::Enter, KeyCode::Char('e')],
        "Enter or e",
        "members: load the member into 1 Explore",
        Some(("Enter", "load into Explore")),
        Only::Encodes,
        Action::Open,
    ),
    keys::real_words_quiet(Action::RealWords),
    BACK,
];

pub(super) fn render_members(
    tab: &ClustersState,
    app: &View,
    view: &ClusterView,
    area: Rect,
    buf: &mut Buffer,
) {
    let t = app.theme;
    let c = tab;
    let Some(s) = view.report.clusters.get(c.selected) else {
        return;
    };
    let members = view.members_by_distance(c.selected);
    let block = t.block(
        Line::from(vec![
            Span::styled(
                format!(" Cluster {} · {} ", s.cluster + 1, s.label),
                t.bold(),
            ),
            Span::styled(
                format!(
                    "· {} members, nearest the centre first · Enter or e loads one into 1 Explore ",
                    members.len()
                ),
                t.dim(),
            ),
        ]),
        true,
    );
    let inner = block.inner(area);
    block.render(area, buf);
    let rows = inner.height as usize;
    let start = window_start(c.member, rows);
    let lw = view
        .data
        .label_names
        .iter()
        .map(|l| l.chars().count())
        .max()
        .unwrap_or(0)
        .min(20);
    let lines = members
        .iter()
        .enumerate()
        .skip(start)
        .take(rows)
        .map(|(row, &i)| {
            let label: String = view.data.labels[i]
                .map(|l| view.data.label_names[l as usize].clone())
                .unwrap_or_else(|| "–".into())
                .chars()
                .take(lw)
                .collect();
            let text = format!("{:>5}  {label:<lw$}  {}", row + 1, view.data.texts[i]);
            if row == c.member {
                Line::styled(text, t.cursor())
            } else {
                Line::raw(text)
            }
        })
        .collect();
    widgets::lines(buf, inner, lines);
}

impl ClustersState {
    pub(super) fn members_do(&mut self, cx: &mut Ctx, action: Action) {
        let members = match &cx.shared.clusters {
            Some(v) => v.members_by_distance(self.selected),
            None => Vec::new(),
        };
        let c = &mut *self;
        let last = members.len().saturating_sub(1);
        match action {
            Action::Down => c.member = (c.member + 1).min(last),
            Action::Up => c.member = c.member.saturating_sub(1),
            Action::PageDown => c.member = (c.member + 10).min(last),
            Action::PageUp => c.member = c.member.saturating_sub(10),
            Action::Top => c.member = 0,
            Action::Back => c.view = ClustersView::List,
            Action::Open => {
                let Some(&i) = members.get(c.member) else {
                    return;
                };
                let text = cx
                    .shared
                    .clusters
                    .as_ref()
                    .map(|v| v.data.texts[i].clone())
                    .unwrap_or_default();
                cx.command(Command::Explore(text));
            }
            _ => {}
        }
    }
}
