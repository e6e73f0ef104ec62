//! Tab 7, Clusters: the corpus's codes clustered (Hamming k-medoids / k-modes for bits, k-means
//! for μ) with automatic labels and sizes; Enter lists a cluster's members and Enter on a member
//! loads it into Explore. Two more views work on Explore's sentence: an attribute vector between
//! two gold labels applied with a strength stepped by keys, and an analogy of three typed
//! sentences. The clustering runs on the background worker, decodings on the interactive one;
//! the UI thread only picks centres and applies vectors of a few dozen numbers.

use std::sync::Arc;

use anyhow::Result;
use crossterm::event::{KeyCode, KeyEvent};
use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::Widget;

use super::context::{Command, Ctx, Shared, Tab, View};
use super::jobs::{Job, JobKind, ReplyBody};
use super::keys::{self, nav, typing, Binding, Lookup, Mode, Only};
use super::widgets::{self, InputAction, TextInput};
use crate::cluster::ClusterMethod;
use crate::coder::Capabilities;
use crate::explore::bit_string;
use crate::structure::{changed_bits, AttributeVector};

/// The cluster counts `[` and `]` step through; the first clustering has one cluster per gold
/// label (10 for an unlabelled corpus).
pub const K_STEPS: [usize; 10] = [2, 3, 5, 10, 20, 30, 45, 60, 100, 200];

/// The tab's clustering, decodings and analogies, computed in the library.
pub use crate::pipeline::{compute_clusters, ClusterRequest, ClusterView};
pub use crate::pipeline::{compute_structure, StructureJob, StructureResult};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClustersView {
    List,
    Map,
    Members,
    Attribute,
    Analogy,
}

#[derive(Debug)]
pub struct ClustersState {
    pub corpus: Option<String>,
    pub k: usize,
    pub method: Option<ClusterMethod>,
    pub seed: u64,
    /// Cluster a seeded random subset of at most this many entries (None: the whole split).
    pub max_entries: Option<usize>,
    pub view: ClustersView,
    /// The selected cluster (report numbering) and member row.
    pub selected: usize,
    pub member: usize,
    pub error: Option<String>,
    /// Attribute view: the label under the cursor, the chosen labels and the strength.
    pub label_cursor: usize,
    pub from: Option<usize>,
    pub to: Option<usize>,
    pub strength: f32,
    /// The latest decoding for the attribute view.
    pub decoded: Option<Result<(Vec<f32>, String), String>>,
    /// Analogy view: A, B, C, the field being edited, and the result.
    pub inputs: [TextInput; 3],
    pub field: usize,
    pub typing: bool,
    pub analogy: Option<Result<StructureResult, String>>,
}

impl ClustersState {
    pub fn new(corpus: Option<String>) -> Self {
        Self {
            corpus,
            k: 0,
            method: None,
            seed: 0,
            max_entries: None,
            view: ClustersView::List,
            selected: 0,
            member: 0,
            error: None,
            label_cursor: 0,
            from: None,
            to: None,
            strength: 0.0,
            decoded: None,
            inputs: Default::default(),
            field: 0,
            typing: false,
            analogy: None,
        }
    }

    pub fn hints(&self, caps: Capabilities) -> Vec<(&'static str, &'static str)> {
        let mode = if self.typing { Mode::Typing } else { Mode::Nav };
        keys::hints(view_keys(self.view), mode, caps)
    }
}

/// What a key can do on this tab (each view binds its own keys, see [`KEYS`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Down,
    Up,
    PageDown,
    PageUp,
    Top,
    /// List: the selected cluster's members; Members: load the member into Explore.
    Open,
    FewerClusters,
    MoreClusters,
    Method,
    Reseed,
    Recluster,
    Map,
    Attribute,
    Analogy,
    /// Back to the cluster list.
    Back,
    From,
    To,
    Stronger,
    Weaker,
    Edit,
    Fresh,
    /// Analogy fields: Enter moves on, on C computes.
    Submit,
    PreviousField,
    NextField,
    Leave,
}

/// Selection keys, the same in the list, the members and the attribute view's labels.
const SELECT_ACTIONS: [Action; 5] = [
    Action::Down,
    Action::Up,
    Action::PageDown,
    Action::PageUp,
    Action::Top,
];

const BACK: Binding<Action> = nav(
    &[KeyCode::Esc, KeyCode::Backspace],
    "Esc",
    "back to the cluster list",
    Some(("Esc", "clusters")),
    Only::Any,
    Action::Back,
);

const LIST_SELECT: [Binding<Action>; 5] =
    keys::list_keys("select a cluster", ("↑/↓", "select"), SELECT_ACTIONS);
const MEMBERS_SELECT: [Binding<Action>; 5] = keys::list_keys(
    "members: select one (nearest the centre first)",
    ("↑/↓", "select"),
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
        Only::Any,
        Action::Open,
    ),
    nav(
        &[KeyCode::Char('[')],
        "[ / ]",
        "fewer / more clusters (k: 2, 3, 5, 10, 20, 30, 45, 60, 100, 200)",
        Some(("[/]", "k")),
        Only::Any,
        Action::FewerClusters,
    ),
    nav(
        &[KeyCode::Char(']')],
        "]",
        "",
        None,
        Only::Any,
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
        Only::Any,
        Action::Reseed,
    ),
    nav(
        &[KeyCode::Char('v')],
        "v",
        "map: the corpus map coloured by cluster, names at the centres",
        Some(("v", "map")),
        Only::Any,
        Action::Map,
    ),
    nav(
        &[KeyCode::Char('a')],
        "a",
        "attribute vector between two gold labels, applied to Explore's code",
        Some(("a", "attribute")),
        Only::Any,
        Action::Attribute,
    ),
    nav(
        &[KeyCode::Char('n')],
        "n",
        "analogy of three sentences: A is to B as C is to ?",
        Some(("n", "analogy")),
        Only::Any,
        Action::Analogy,
    ),
    nav(
        &[KeyCode::Char('r')],
        "r",
        "cluster again (after an error)",
        None,
        Only::Any,
        Action::Recluster,
    ),
];

/// A cluster's members.
pub const MEMBERS_KEYS: &[Binding<Action>] = &[
    MEMBERS_SELECT[0],
    MEMBERS_SELECT[1],
    MEMBERS_SELECT[2],
    MEMBERS_SELECT[3],
    MEMBERS_SELECT[4],
    nav(
        &[KeyCode::Enter],
        "Enter",
        "members: load the member into 1 Explore",
        Some(("Enter", "load into Explore")),
        Only::Any,
        Action::Open,
    ),
    BACK,
];

/// The attribute view.
pub const ATTRIBUTE_KEYS: &[Binding<Action>] = &[
    nav(
        &[KeyCode::Down, KeyCode::Char('j')],
        "↑↓ or jk",
        "attribute: select a gold label",
        Some(("↑/↓", "label")),
        Only::Any,
        Action::Down,
    ),
    nav(
        &[KeyCode::Up, KeyCode::Char('k')],
        "↑ or k",
        "",
        None,
        Only::Any,
        Action::Up,
    ),
    nav(
        &[KeyCode::Char('f')],
        "f / t",
        "attribute: the selected label is the vector's from / to",
        Some(("f/t", "from/to")),
        Only::Any,
        Action::From,
    ),
    nav(&[KeyCode::Char('t')], "t", "", None, Only::Any, Action::To),
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
];

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
        Only::Any,
        Action::Edit,
    ),
    nav(
        &[KeyCode::Char('/')],
        "/",
        "analogy: a new one, all three fields empty",
        Some(("/", "new analogy")),
        Only::Any,
        Action::Fresh,
    ),
    BACK,
];

/// Every view's keys, in the order the help lists them: dispatch, footer and help read these.
pub const KEYS: &[(ClustersView, &[Binding<Action>])] = &[
    (ClustersView::List, LIST_KEYS),
    (ClustersView::Map, &[]),
    (ClustersView::Members, MEMBERS_KEYS),
    (ClustersView::Attribute, ATTRIBUTE_KEYS),
    (ClustersView::Analogy, ANALOGY_KEYS),
];

/// The key table of one view.
pub fn view_keys(view: ClustersView) -> &'static [Binding<Action>] {
    KEYS.iter()
        .find(|(v, _)| *v == view)
        .map(|(_, t)| *t)
        .expect("every view has a key table")
}

/// The help's rows: each view's keys (the Map view's are the shared map's, see
/// [`super::map::KEYS`]); a key bound the same way in several views (Esc) once.
pub fn help_rows() -> Vec<(String, String)> {
    let mut rows: Vec<(String, String)> = Vec::new();
    for (view, table) in KEYS {
        let view_rows = if *view == ClustersView::Map {
            keys::help_rows(super::map::KEYS)
        } else {
            keys::help_rows(table)
        };
        for row in view_rows {
            if !rows.contains(&row) {
                rows.push(row);
            }
        }
    }
    rows
}

/// Strength steps: a bit at a time for binary codes, ¼ of the vector for continuous ones.
fn strength_step(binary: bool) -> f32 {
    if binary {
        1.0
    } else {
        0.25
    }
}

impl ClustersState {
    fn on_enter(&mut self, cx: &mut Ctx) {
        if cx.shared.clusters.is_none()
            && self.error.is_none()
            && !cx.jobs.is_pending(JobKind::Cluster)
        {
            self.request(cx);
        }
        if self.view == ClustersView::Attribute {
            self.attribute_request(cx);
        }
    }

    /// Clusters the corpus unless it is clustered or being clustered (the map's colours).
    pub fn ensure(&mut self, cx: &mut Ctx) {
        if cx.shared.clusters.is_none() && !cx.jobs.is_pending(JobKind::Cluster) {
            self.request(cx);
        }
    }

    fn request(&mut self, cx: &mut Ctx) {
        if !cx.model.kind.has_latent() {
            return;
        }
        let c = &mut *self;
        c.error = None;
        let req = ClusterRequest {
            corpus: c.corpus.clone(),
            k: c.k,
            method: c.method,
            seed: c.seed,
            max_entries: c.max_entries,
        };
        cx.jobs.submit(Job::Cluster(req));
    }

    fn done(&mut self, cx: &mut Ctx, r: Result<Arc<ClusterView>, String>) {
        let c = &mut *self;
        match r {
            Ok(v) => {
                c.selected = c.selected.min(v.report.clusters.len().saturating_sub(1));
                c.member = 0;
                c.label_cursor = c
                    .label_cursor
                    .min(v.data.label_names.len().saturating_sub(1));
                cx.shared.clusters = Some(v);
                c.error = None;
            }
            Err(e) => c.error = Some(e),
        }
    }

    fn structure_done(&mut self, _cx: &mut Ctx, r: Result<StructureResult, String>) {
        match r {
            Ok(StructureResult::Decoded { code, text }) => self.decoded = Some(Ok((code, text))),
            Ok(a @ StructureResult::Analogy { .. }) => self.analogy = Some(Ok(a)),
            Err(e) => match self.view {
                ClustersView::Analogy => self.analogy = Some(Err(e)),
                _ => self.decoded = Some(Err(e)),
            },
        }
    }

    /// The attribute vector chosen in the view, applied to Explore's current code.
    pub fn edited_code(&self, shared: &Shared) -> Option<(AttributeVector, Vec<f32>)> {
        let c = self;
        let view = shared.clusters.as_ref()?;
        let vector = view.attribute(c.from?, c.to?)?;
        let code = &shared.code;
        if code.len() != vector.difference.len() {
            return None;
        }
        let edited = vector.apply(code, c.strength);
        Some((vector, edited))
    }

    fn attribute_request(&mut self, cx: &mut Ctx) {
        if let Some((_, code)) = self.edited_code(cx.shared) {
            let current = matches!(&self.decoded, Some(Ok((c, _))) if *c == code);
            if !current {
                cx.jobs
                    .submit(Job::Structure(StructureJob::Decode { code }));
            }
        }
    }

    fn on_key(&mut self, cx: &mut Ctx, key: KeyEvent) {
        let caps = cx.model.caps;
        if self.view == ClustersView::Map {
            if cx.map_key(key) {
                self.view = ClustersView::List;
            }
            return;
        }
        let table = view_keys(self.view);
        let action = if self.typing {
            let c = &mut *self;
            match c.inputs[c.field].on_key(key) {
                InputAction::Submit => Action::Submit,
                InputAction::Cancel => Action::Leave,
                InputAction::Ignored => match keys::lookup(table, Mode::Typing, key.code, caps) {
                    Lookup::Action(a) => a,
                    _ => return,
                },
                _ => return,
            }
        } else {
            match keys::lookup(table, Mode::Nav, key.code, caps) {
                Lookup::Action(a) => a,
                Lookup::NotForThisModel(why) => return cx.notice(why),
                Lookup::Unbound => return,
            }
        };
        if !caps.encodes && !matches!(action, Action::Back | Action::Leave) {
            return cx.notice("an `lm` model has no encoder, so there are no codes to cluster");
        }
        match self.view {
            ClustersView::List => self.list_do(cx, action),
            ClustersView::Members => self.members_do(cx, action),
            ClustersView::Attribute => self.attribute_do(cx, action),
            ClustersView::Map => {}
            ClustersView::Analogy => self.analogy_do(cx, action),
        }
    }

    fn list_do(&mut self, cx: &mut Ctx, action: Action) {
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
                cx.map_open(Some(super::map::ColorBy::Cluster));
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

    fn members_do(&mut self, cx: &mut Ctx, action: Action) {
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

    fn attribute_do(&mut self, cx: &mut Ctx, action: Action) {
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

    fn analogy_do(&mut self, cx: &mut Ctx, action: Action) {
        let c = &mut *self;
        match action {
            Action::Edit => c.typing = true,
            Action::Fresh => self.fresh_input(),
            Action::Back => c.view = ClustersView::List,
            Action::PreviousField => c.field = (c.field + 2) % 3,
            Action::NextField => c.field = (c.field + 1) % 3,
            Action::Leave => c.typing = false,
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
                cx.jobs
                    .submit(Job::Structure(StructureJob::Analogy { sentences }));
            }
            _ => {}
        }
    }

    /// `/` in the analogy view (and a paste there): a new analogy, typing A.
    fn fresh_input(&mut self) {
        let c = &mut *self;
        c.inputs = Default::default();
        c.field = 0;
        c.typing = true;
    }

    /// The analogy field keys go into, while typing.
    fn focused_input(&mut self) -> Option<&mut TextInput> {
        let c = &mut *self;
        c.typing.then(|| &mut c.inputs[c.field])
    }
}

impl Tab for ClustersState {
    fn help_rows() -> Vec<(String, String)> {
        help_rows()
    }

    fn key(&mut self, cx: &mut Ctx, key: KeyEvent) {
        self.on_key(cx, key)
    }

    fn reply(&mut self, cx: &mut Ctx, body: ReplyBody) -> Option<ReplyBody> {
        match body {
            ReplyBody::Clustered(r) => self.done(cx, r),
            ReplyBody::Structure(r) => self.structure_done(cx, r),
            other => return Some(other),
        }
        None
    }

    fn model_changed(&mut self, cx: &mut Ctx, shown: bool) {
        let c = &mut *self;
        cx.shared.clusters = None;
        c.error = None;
        c.decoded = None;
        c.analogy = None;
        c.from = None;
        c.to = None;
        c.strength = 0.0;
        c.selected = 0;
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
        ClustersState::hints(self, view.model.caps)
    }

    fn typing(&self, view: &View) -> bool {
        self.typing || (self.shows_map() && view.map.searching)
    }

    fn paste_field(&mut self, cx: &mut Ctx) -> Option<&mut TextInput> {
        if self.view == ClustersView::Analogy && !self.typing {
            self.fresh_input();
        }
        if !self.typing {
            cx.notice("the Clusters tab's text fields are its analogy's: n opens them");
        }
        self.focused_input()
    }

    fn shows_map(&self) -> bool {
        self.view == ClustersView::Map
    }
}

pub fn render(tab: &ClustersState, app: &View, area: Rect, buf: &mut Buffer) {
    let t = app.theme;
    if !app.model.kind.has_latent() {
        widgets::message_panel(
            buf,
            area,
            t,
            " Clusters ",
            vec![Line::from(
                "An `lm` model has no encoder, so sentences have no codes to cluster.",
            )],
        );
        return;
    }
    let c = tab;
    if app.jobs.is_pending(JobKind::Cluster) {
        let block = t.block(Span::styled(" Clusters ", t.bold()), false);
        let inner = block.inner(area);
        block.render(area, buf);
        let [msg, gauge] =
            Layout::vertical([Constraint::Length(3), Constraint::Length(1)]).areas(inner);
        widgets::wrapped(
            buf,
            msg,
            vec![Line::from(
                "Encoding the train split of the corpus (or loading its saved index), then \
                 clustering the codes…",
            )],
        );
        widgets::job_gauge(buf, gauge, t, app.jobs.progress(JobKind::Cluster));
        return;
    }
    if let Some(e) = &c.error {
        widgets::message_panel(
            buf,
            area,
            t,
            " Clusters ",
            vec![
                Line::styled(format!("No clusters: {e}"), t.error()),
                Line::styled("r to try again", t.dim()),
            ],
        );
        return;
    }
    let Some(view) = &app.shared.clusters else {
        widgets::message_panel(
            buf,
            area,
            t,
            " Clusters ",
            vec![Line::styled("r to cluster the corpus", t.dim())],
        );
        return;
    };
    let [summary, body] = Layout::vertical([Constraint::Length(4), Constraint::Min(0)]).areas(area);
    render_summary(app, view, summary, buf);
    match c.view {
        ClustersView::List => render_list(tab, app, view, body, buf),
        ClustersView::Map => super::map::render(&app.map_env(), body, buf),
        ClustersView::Members => render_members(tab, app, view, body, buf),
        ClustersView::Attribute => render_attribute(tab, app, view, body, buf),
        ClustersView::Analogy => render_analogy(tab, app, body, buf),
    }
}

fn render_summary(app: &View, view: &ClusterView, area: Rect, buf: &mut Buffer) {
    let t = app.theme;
    let r = &view.report;
    let block = t.block(
        Line::from(vec![
            Span::styled(" Clusters ", t.bold()),
            Span::styled(
                format!(
                    "· {} · k = {} · seed {} · {} {} entries of {} ",
                    r.method.describe(),
                    r.clusters.len(),
                    r.options.seed,
                    r.entries,
                    r.split,
                    r.corpus
                ),
                t.dim(),
            ),
        ]),
        false,
    );
    let inner = block.inner(area);
    block.render(area, buf);
    let mut lines = Vec::new();
    match &r.gold {
        Some(g) => lines.push(Line::from(vec![
            Span::styled(format!("vs {} gold labels  ", g.labels), t.dim()),
            Span::raw(format!(
                "codes purity {:.3} NMI {:.3} ARI {:.3}",
                g.codes.purity, g.codes.nmi, g.codes.ari
            )),
            Span::styled(
                format!(
                    "   TF-IDF k-means purity {:.3} NMI {:.3} ARI {:.3}",
                    g.tfidf_kmeans.purity, g.tfidf_kmeans.nmi, g.tfidf_kmeans.ari
                ),
                t.dim(),
            ),
        ])),
        None => lines.push(Line::styled("unlabelled corpus: no gold scores", t.dim())),
    }
    match view.nearest_cluster(&app.shared.code) {
        Some(k) => lines.push(Line::from(vec![
            Span::styled("1 Explore's code is nearest ", t.dim()),
            Span::styled(
                format!("cluster {} · {}", k + 1, r.clusters[k].label),
                t.accent(),
            ),
        ])),
        None => lines.push(Line::styled(
            "encode a sentence in 1 Explore to see which cluster its code falls in",
            t.dim(),
        )),
    }
    widgets::lines(buf, inner, lines);
}

/// The first row to show so that `selected` stays in a window of `rows`.
fn window_start(selected: usize, rows: usize) -> usize {
    (selected + 1).saturating_sub(rows.max(1))
}

fn render_list(tab: &ClustersState, app: &View, view: &ClusterView, area: Rect, buf: &mut Buffer) {
    let t = app.theme;
    let c = tab;
    let r = &view.report;
    let [list, detail] = Layout::vertical([Constraint::Min(5), Constraint::Length(6)]).areas(area);
    let block = t.block(Span::styled(" Clusters by size ", t.bold()), true);
    let inner = block.inner(list);
    block.render(list, buf);
    let current = view.nearest_cluster(&app.shared.code);
    let mut lines = vec![Line::styled(
        format!("{:>4}  {:>7}  {:<40}  gold majority", "#", "size", "label"),
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
        let label: String = s.label.chars().take(40).collect();
        let text = format!(
            "{mark}{:>3}  {:>7}  {label:<40}  {gold}",
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
    if let Some(d) = &s.center_decoding {
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
            Span::raw(bit_string(&s.center)),
        ]));
    }
    widgets::lines(buf, inner, lines);
}

fn render_members(
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
                    "· {} members, nearest the centre first · Enter loads one into 1 Explore ",
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

fn render_attribute(
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

fn render_analogy(tab: &ClustersState, app: &View, area: Rect, buf: &mut Buffer) {
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
                        format!("  ({} bits from C)", changed_bits(&codes[2], result).len()),
                        t.dim(),
                    ),
                ]));
            }
            lines.push(Line::from(vec![
                Span::styled("C + B − A  decodes  ", t.accent()),
                Span::styled(result_decoding.clone(), t.bold()),
            ]));
        }
        Some(Ok(_)) => {}
    }
    widgets::wrapped(buf, inner, lines);
}
