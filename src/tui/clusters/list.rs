//! The Clusters tab's cluster list, the view it opens in: select a cluster, change k, the
//! method or the seed, and open the members, the map, the attribute or the analogy view.

use crossterm::event::KeyCode;
use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::Widget;

use super::{
    window_start, Action, ClusterView, ClustersState, ClustersView, K_STEPS, SELECT_ACTIONS,
};
use crate::cluster::ClusterMethod;
use crate::tui::context::{Ctx, View};
use crate::tui::jobs::JobKind;
use crate::tui::keys::{self, nav, Binding, Only};
use crate::tui::widgets::{self, BitsFit, TextInput};

const LIST_SELECT: [Binding<Action>; 5] = keys::list_keys(
    "select a cluster",
    ("↑/↓", "select"),
    Only::Encodes,
    SELECT_ACTIONS,
);

/// The cluster list, the view the tab opens in.
pub const LIST_KEYS: &[Binding<Action>] = &[
    LIST_SELECT[0],
    LIST_SELECT[1],
    LIST_SELECT[2],
    LIST_SELECT[3],
    LIST_SELECT[4],
    nav(
        &[KeyCode::Enter],
        "Enter",
        "list the selected cluster's members, nearest its centre first",
        Some(("Enter", "members")),
        Only::Encodes,
        Action::Open,
    ),
    nav(
        &[KeyCode::Char('[')],
        "[ / ]",
        "fewer / more clusters (k: 2, 3, 5, 10, 20, 30, 45, 60, 100, 200)",
        Some(("[/]", "k")),
        Only::Encodes,
        Action::FewerClusters,
    ),
    nav(
        &[KeyCode::Char(']')],
        "]",
        "",
        None,
        Only::Encodes,
        Action::MoreClusters,
    ),
    nav(
        &[KeyCode::Char('m')],
        "m",
        "method: k-medoids → k-modes → k-means; continuous codes use k-means",
        Some(("m", "method")),
        Only::Binary,
        Action::Method,
    ),
    nav(
        &[KeyCode::Char('s')],
        "s",
        "cluster again with the next seed",
        Some(("s", "reseed")),
        Only::Encodes,
        Action::Reseed,
    ),
    nav(
        &[KeyCode::Char('v')],
        "v",
        "map: the corpus map coloured by cluster, names at the centres",
        Some(("v", "map")),
        Only::Encodes,
        Action::Map,
    ),
    nav(
        &[KeyCode::Char('a')],
        "a",
        "attribute vector between two gold labels, applied to Explore's code",
        Some(("a", "attribute")),
        Only::Encodes,
        Action::Attribute,
    ),
    nav(
        &[KeyCode::Char('n')],
        "n",
        "analogy of three sentences: A is to B as C is to ?",
        Some(("n", "analogy")),
        Only::Encodes,
        Action::Analogy,
    ),
    nav(
        &[KeyCode::Char('r')],
        "r",
        "cluster again (after an error)",
        None,
        Only::Encodes,
        Action::Recluster,
    ),
    keys::real_words_quiet(Action::RealWords),
];

pub(super) fn render_list(
    tab: &ClustersState,
    app: &View,
    view: &ClusterView,
    area: Rect,
    buf: &mut Buffer,
) {
    let t = app.theme;
    let c = tab;
    let r = &view.report;
    // The list comes first: in a short terminal the selected cluster's details give up rows
    // (down to its words and medoid) before it does.
    let detail_rows = area.height.saturating_sub(9).clamp(4, 6);
    let [list, detail] =
        Layout::vertical([Constraint::Min(5), Constraint::Length(detail_rows)]).areas(area);
    let block = t.block(Span::styled(" Clusters by size ", t.bold()), true);
    let inner = block.inner(list);
    block.render(list, buf);
    let current = view.nearest_cluster(&app.shared.code);
    // The label column gives up width (to 16) before the gold majority is cut.
    let label_w = (inner.width as usize)
        .saturating_sub(4 + 2 + 7 + 2 + 2 + 21)
        .clamp(16, 40);
    let mut lines = vec![Line::styled(
        format!(
            "{:>4}  {:>7}  {:<label_w$}  gold majority",
            "#", "size", "label"
        ),
        t.dim(),
    )];
    let rows = inner.height.saturating_sub(1) as usize;
    let start = window_start(c.selected, rows);
    for s in r.clusters.iter().skip(start).take(rows) {
        let mark = if Some(s.cluster) == current {
            "◆"
        } else {
            " "
        };
        let gold = s
            .gold
            .as_ref()
            .map(|g| format!("{} {:.0}%", g.label, g.share * 100.0))
            .unwrap_or_default();
        let label: String = s.label.chars().take(label_w).collect();
        let text = format!(
            "{mark}{:>3}  {:>7}  {label:<label_w$}  {gold}",
            s.cluster + 1,
            s.size
        );
        lines.push(if s.cluster == c.selected {
            Line::styled(text, t.cursor())
        } else {
            Line::raw(text)
        });
    }
    widgets::lines(buf, inner, lines);

    let Some(s) = r.clusters.get(c.selected) else {
        return;
    };
    let block = t.block(
        Span::styled(format!(" Cluster {} ", s.cluster + 1), t.bold()),
        false,
    );
    let inner = block.inner(detail);
    block.render(detail, buf);
    let words: Vec<&str> = s.words.iter().map(|w| w.word.as_str()).collect();
    let mut lines = vec![
        Line::from(vec![
            Span::styled("words   ", t.dim()),
            Span::raw(words.join(", ")),
        ]),
        Line::from(vec![
            Span::styled("medoid  ", t.dim()),
            Span::raw(s.medoid_text.clone()),
        ]),
    ];
    // In real words once they are decoded (`w`); the clustering's own decodings are raw.
    let kept = (!app.shared.raw_decoding)
        .then(|| tab.kept_centres(view))
        .flatten()
        .and_then(|k| k.texts.get(c.selected));
    if let Some(d) = kept.or(s.center_decoding.as_ref()) {
        lines.push(Line::from(vec![
            Span::styled("centre  ", t.dim()),
            Span::raw(if d.is_empty() {
                "(nothing)".into()
            } else {
                d.clone()
            }),
        ]));
    }
    if view.data.binary {
        lines.push(Line::from(vec![
            Span::styled("code    ", t.dim()),
            Span::raw(BitsFit::text(
                &s.center,
                (inner.width as usize).saturating_sub(8),
            )),
        ]));
    }
    widgets::lines(buf, inner, lines);
}

impl ClustersState {
    pub(super) fn list_do(&mut self, cx: &mut Ctx, action: Action) {
        let n = cx
            .shared
            .clusters
            .as_ref()
            .map_or(0, |v| v.report.clusters.len());
        let c = &mut *self;
        match action {
            Action::Down => c.selected = (c.selected + 1).min(n.saturating_sub(1)),
            Action::Up => c.selected = c.selected.saturating_sub(1),
            Action::PageDown => c.selected = (c.selected + 10).min(n.saturating_sub(1)),
            Action::PageUp => c.selected = c.selected.saturating_sub(10),
            Action::Top => c.selected = 0,
            Action::Open if n > 0 => {
                c.view = ClustersView::Members;
                c.member = 0;
            }
            Action::FewerClusters | Action::MoreClusters => {
                // From the k of the clusters on screen (the gold labels' count by default).
                let current = if n > 0 { n } else { c.k };
                let next = if action == Action::MoreClusters {
                    K_STEPS.iter().find(|&&s| s > current).copied()
                } else {
                    K_STEPS.iter().rev().find(|&&s| s < current).copied()
                };
                if let Some(k) = next {
                    c.k = k;
                    self.request(cx);
                }
            }
            Action::Method => {
                // Only binary codes get here (see the key table): continuous ones use k-means.
                let methods = [
                    None,
                    Some(ClusterMethod::KModes),
                    Some(ClusterMethod::KMeans),
                ];
                let at = methods.iter().position(|m| *m == c.method).unwrap_or(0);
                c.method = methods[(at + 1) % methods.len()];
                self.request(cx);
            }
            Action::Reseed => {
                c.seed += 1;
                self.request(cx);
            }
            Action::Recluster => {
                if cx.jobs.is_pending(JobKind::Cluster) {
                    cx.notice("the corpus is being clustered already");
                } else {
                    self.request(cx);
                }
            }
            Action::Map if n > 0 => {
                c.view = ClustersView::Map;
                cx.map_open(Some(crate::tui::map::ColorBy::Cluster));
            }
            Action::Attribute => {
                c.view = ClustersView::Attribute;
                if cx
                    .shared
                    .clusters
                    .as_ref()
                    .is_some_and(|v| !v.data.is_labelled())
                {
                    cx.notice("this corpus has no gold labels, so there are no attribute vectors");
                }
                self.attribute_request(cx);
            }
            Action::Analogy => {
                c.view = ClustersView::Analogy;
                // Nothing to look at yet: straight into the first field, as `/` would.
                if c.inputs.iter().all(TextInput::is_blank) {
                    c.typing = true;
                    c.field = 0;
                }
            }
            _ => {}
        }
    }
}
