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

use super::app::{App, Tab};
use super::keys::{self, nav, typing, Binding, Lookup, Mode, Only};
use super::widgets::{self, InputAction, TextInput};
use super::worker::{job_corpus, Job, JobKind};
use crate::cluster::{ClusterMethod, ClusterOptions};
use crate::coder::{Capabilities, Coder};
use crate::corpus::Split;
use crate::explore::bit_string;
use crate::hamming::PackedCodes;
use crate::pipeline::{self, IndexCache};
use crate::structure::{changed_bits, AttributeVector, ClusterReport, CodedCorpus};

/// The cluster counts `[` and `]` step through; the first clustering has one cluster per gold
/// label (10 for an unlabelled corpus).
pub const K_STEPS: [usize; 10] = [2, 3, 5, 10, 20, 30, 45, 60, 100, 200];

/// What the background worker is asked for.
#[derive(Clone, Debug, PartialEq)]
pub struct ClusterRequest {
    pub corpus: Option<String>,
    /// 0: the number of gold labels (10 for an unlabelled corpus).
    pub k: usize,
    /// None: k-medoids for binary codes, k-means for continuous ones.
    pub method: Option<ClusterMethod>,
    pub seed: u64,
    /// Cluster a seeded random subset of at most this many entries (None: the whole split).
    pub max_entries: Option<usize>,
}

/// A clustering with the codes it was made of and each gold label's mean code.
#[derive(Debug)]
pub struct ClusterView {
    pub data: CodedCorpus,
    pub report: ClusterReport,
    /// Per gold label (as `data.label_names`): its mean code and entry count.
    pub label_means: Vec<Option<(Vec<f32>, usize)>>,
    /// Binary codes packed, for the nearest entries of a code.
    pub packed: Option<PackedCodes>,
}

impl ClusterView {
    /// The cluster whose centre is nearest `code` (Hamming for bits, Euclidean otherwise).
    pub fn nearest_cluster(&self, code: &[f32]) -> Option<usize> {
        let clusters = &self.report.clusters;
        if code.is_empty() || clusters.first()?.center.len() != code.len() {
            return None;
        }
        clusters
            .iter()
            .map(|c| {
                let d: f32 = c
                    .center
                    .iter()
                    .zip(code)
                    .map(|(a, b)| {
                        if self.data.binary {
                            (a - b).abs()
                        } else {
                            (a - b).powi(2)
                        }
                    })
                    .sum();
                (d, c.cluster)
            })
            .min_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)))
            .map(|(_, c)| c)
    }

    /// The members of cluster `c`, nearest its centre first (ties in corpus order).
    pub fn members_by_distance(&self, c: usize) -> Vec<usize> {
        let Some(center) = self.report.clusters.get(c).map(|s| &s.center) else {
            return Vec::new();
        };
        let mut scored: Vec<(f32, usize)> = self
            .report
            .members(c)
            .into_iter()
            .map(|i| {
                let d = self.data.codes[i]
                    .iter()
                    .zip(center)
                    .map(|(a, b)| (a - b).powi(2))
                    .sum::<f32>();
                (d, i)
            })
            .collect();
        scored.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        scored.into_iter().map(|(_, i)| i).collect()
    }

    /// The attribute vector between two gold labels (by index).
    pub fn attribute(&self, from: usize, to: usize) -> Option<AttributeVector> {
        let (a, na) = self.label_means.get(from)?.as_ref()?;
        let (b, nb) = self.label_means.get(to)?.as_ref()?;
        Some(AttributeVector {
            from: self.data.label_names[from].clone(),
            to: self.data.label_names[to].clone(),
            from_count: *na,
            to_count: *nb,
            binary: self.data.binary,
            difference: b.iter().zip(a).map(|(x, y)| x - y).collect(),
        })
    }
}

/// Clusters the train split of the model's corpus through the library's pipeline (binary
/// codes from the Neighbors tab's index, loaded from beside the checkpoint or built and saved
/// there; continuous codes encoded now), and draws its map.
pub fn compute_clusters(
    coder: &Coder,
    req: &ClusterRequest,
    progress: &mut dyn FnMut(f64),
) -> Result<ClusterView> {
    let caps = coder.capabilities();
    if !caps.encodes {
        anyhow::bail!(
            "an `{}` model has no encoder, so sentences have no codes to index",
            caps.name
        );
    }
    let corpus = job_corpus(coder, req.corpus.as_deref(), "clusters")?;
    let data = pipeline::corpus_codes(
        coder,
        &corpus,
        Split::Train,
        req.max_entries,
        req.seed,
        IndexCache::LoadOrBuild,
        progress,
    )?;
    let k = match req.k {
        0 => pipeline::default_k(&data),
        k => k,
    };
    let opts = ClusterOptions {
        k: k.min(data.len()),
        seed: req.seed,
        ..ClusterOptions::default()
    };
    let report = pipeline::cluster_codes(coder, &data, req.method, &opts)?;
    let label_means = data
        .label_names
        .iter()
        .map(|n| data.label_mean(n).ok())
        .collect();
    let packed = coder
        .is_binary()
        .then(|| PackedCodes::from_codes(coder.latent_dim(), data.codes.iter().map(Vec::as_slice)));
    Ok(ClusterView {
        data,
        report,
        label_means,
        packed,
    })
}

/// The tab's decodings and analogies, computed in the library.
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
    pub result: Option<Arc<ClusterView>>,
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
            result: None,
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

impl App {
    pub(super) fn clusters_on_enter(&mut self) {
        if self.clusters.result.is_none()
            && self.clusters.error.is_none()
            && !self.jobs.is_pending(JobKind::Cluster)
        {
            self.clusters_request();
        }
        if self.clusters.view == ClustersView::Attribute {
            self.clusters_attribute_request();
        }
    }

    /// Clusters the corpus unless it is clustered or being clustered (the map's colours).
    pub(super) fn clusters_ensure(&mut self) {
        if self.clusters.result.is_none() && !self.jobs.is_pending(JobKind::Cluster) {
            self.clusters_request();
        }
    }

    fn clusters_request(&mut self) {
        if !self.model.kind.has_latent() {
            return;
        }
        let c = &mut self.clusters;
        c.error = None;
        let req = ClusterRequest {
            corpus: c.corpus.clone(),
            k: c.k,
            method: c.method,
            seed: c.seed,
            max_entries: c.max_entries,
        };
        self.jobs.submit(Job::Cluster(req));
    }

    pub(super) fn clusters_done(&mut self, r: Result<Arc<ClusterView>, String>) {
        let c = &mut self.clusters;
        match r {
            Ok(v) => {
                c.selected = c.selected.min(v.report.clusters.len().saturating_sub(1));
                c.member = 0;
                c.label_cursor = c
                    .label_cursor
                    .min(v.data.label_names.len().saturating_sub(1));
                c.result = Some(v);
                c.error = None;
            }
            Err(e) => c.error = Some(e),
        }
    }

    pub(super) fn clusters_structure_done(&mut self, r: Result<StructureResult, String>) {
        match r {
            Ok(StructureResult::Decoded { code, text }) => {
                self.clusters.decoded = Some(Ok((code, text)))
            }
            Ok(a @ StructureResult::Analogy { .. }) => self.clusters.analogy = Some(Ok(a)),
            Err(e) => match self.clusters.view {
                ClustersView::Analogy => self.clusters.analogy = Some(Err(e)),
                _ => self.clusters.decoded = Some(Err(e)),
            },
        }
    }

    pub(super) fn clusters_model_changed(&mut self) {
        let c = &mut self.clusters;
        c.result = None;
        c.error = None;
        c.decoded = None;
        c.analogy = None;
        c.from = None;
        c.to = None;
        c.strength = 0.0;
        c.selected = 0;
        if self.tab == Tab::Clusters {
            self.clusters_request();
        }
    }

    /// "cluster N: label" of Explore's current code, once the Clusters tab has clustered.
    pub fn clusters_current_name(&self) -> Option<String> {
        let view = self.clusters.result.as_ref()?;
        let k = view.nearest_cluster(&self.explore.code)?;
        Some(format!(
            "cluster {}: {}",
            k + 1,
            view.report.clusters[k].label
        ))
    }

    /// The attribute vector chosen in the view, applied to Explore's current code.
    pub fn clusters_edited_code(&self) -> Option<(AttributeVector, Vec<f32>)> {
        let c = &self.clusters;
        let view = c.result.as_ref()?;
        let vector = view.attribute(c.from?, c.to?)?;
        let code = &self.explore.code;
        if code.len() != vector.difference.len() {
            return None;
        }
        let edited = vector.apply(code, c.strength);
        Some((vector, edited))
    }

    fn clusters_attribute_request(&mut self) {
        if let Some((_, code)) = self.clusters_edited_code() {
            let current = matches!(&self.clusters.decoded, Some(Ok((c, _))) if *c == code);
            if !current {
                self.jobs
                    .submit(Job::Structure(StructureJob::Decode { code }));
            }
        }
    }

    pub(super) fn clusters_key(&mut self, key: KeyEvent) {
        let caps = self.model.caps;
        if self.clusters.view == ClustersView::Map {
            if self.map_key(key) {
                self.clusters.view = ClustersView::List;
            }
            return;
        }
        let table = view_keys(self.clusters.view);
        let action = if self.clusters.typing {
            let c = &mut self.clusters;
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
                Lookup::NotForThisModel(why) => return self.notice(why),
                Lookup::Unbound => return,
            }
        };
        if !caps.encodes && !matches!(action, Action::Back | Action::Leave) {
            return self.notice("an `lm` model has no encoder, so there are no codes to cluster");
        }
        match self.clusters.view {
            ClustersView::List => self.clusters_list_do(action),
            ClustersView::Members => self.clusters_members_do(action),
            ClustersView::Attribute => self.clusters_attribute_do(action),
            ClustersView::Map => {}
            ClustersView::Analogy => self.clusters_analogy_do(action),
        }
    }

    fn clusters_list_do(&mut self, action: Action) {
        let n = self
            .clusters
            .result
            .as_ref()
            .map_or(0, |v| v.report.clusters.len());
        let c = &mut self.clusters;
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
                    self.clusters_request();
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
                self.clusters_request();
            }
            Action::Reseed => {
                c.seed += 1;
                self.clusters_request();
            }
            Action::Recluster => {
                if self.jobs.is_pending(JobKind::Cluster) {
                    self.notice("the corpus is being clustered already");
                } else {
                    self.clusters_request();
                }
            }
            Action::Map if n > 0 => {
                c.view = ClustersView::Map;
                self.map_open(Some(super::map::ColorBy::Cluster));
            }
            Action::Attribute => {
                c.view = ClustersView::Attribute;
                if c.result.as_ref().is_some_and(|v| !v.data.is_labelled()) {
                    self.notice(
                        "this corpus has no gold labels, so there are no attribute vectors",
                    );
                }
                self.clusters_attribute_request();
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

    fn clusters_members_do(&mut self, action: Action) {
        let members = match &self.clusters.result {
            Some(v) => v.members_by_distance(self.clusters.selected),
            None => Vec::new(),
        };
        let c = &mut self.clusters;
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
                let text = self
                    .clusters
                    .result
                    .as_ref()
                    .map(|v| v.data.texts[i].clone())
                    .unwrap_or_default();
                self.explore.input.set(&text);
                self.explore_submit();
                self.tab = Tab::Explore;
            }
            _ => {}
        }
    }

    fn clusters_attribute_do(&mut self, action: Action) {
        let labels = self
            .clusters
            .result
            .as_ref()
            .map_or(0, |v| v.data.label_names.len());
        let binary = self.model.binary();
        let c = &mut self.clusters;
        match action {
            Action::Down => c.label_cursor = (c.label_cursor + 1).min(labels.saturating_sub(1)),
            Action::Up => c.label_cursor = c.label_cursor.saturating_sub(1),
            Action::From if labels > 0 => c.from = Some(c.label_cursor),
            Action::To if labels > 0 => c.to = Some(c.label_cursor),
            Action::Stronger => {
                let max = self.clusters_edited_code().map(|(v, _)| v.max_bits());
                let c = &mut self.clusters;
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
        if self.clusters.from.is_some() && self.clusters.from == self.clusters.to {
            self.notice("from and to are the same label: choose another with ↑/↓ and f or t");
        }
        if self.explore.code.is_empty() {
            self.notice("encode a sentence in 1 Explore first: the vector moves its code");
        }
        self.clusters_attribute_request();
    }

    fn clusters_analogy_do(&mut self, action: Action) {
        let c = &mut self.clusters;
        match action {
            Action::Edit => c.typing = true,
            Action::Fresh => self.clusters_fresh_input(),
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
                    self.notice("type all three sentences: A is to B as C is to ?");
                    return;
                }
                c.typing = false;
                let sentences = [c.inputs[0].text(), c.inputs[1].text(), c.inputs[2].text()];
                self.jobs
                    .submit(Job::Structure(StructureJob::Analogy { sentences }));
            }
            _ => {}
        }
    }

    /// `/` in the analogy view (and a paste there): a new analogy, typing A.
    pub(super) fn clusters_fresh_input(&mut self) {
        let c = &mut self.clusters;
        c.inputs = Default::default();
        c.field = 0;
        c.typing = true;
    }

    /// The analogy field keys go into, while typing.
    pub(super) fn clusters_focused_input(&mut self) -> Option<&mut TextInput> {
        let c = &mut self.clusters;
        c.typing.then(|| &mut c.inputs[c.field])
    }
}

pub fn render(app: &App, area: Rect, buf: &mut Buffer) {
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
    let c = &app.clusters;
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
    let Some(view) = &c.result else {
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
        ClustersView::List => render_list(app, view, body, buf),
        ClustersView::Map => super::map::render(app, body, buf),
        ClustersView::Members => render_members(app, view, body, buf),
        ClustersView::Attribute => render_attribute(app, view, body, buf),
        ClustersView::Analogy => render_analogy(app, body, buf),
    }
}

fn render_summary(app: &App, view: &ClusterView, area: Rect, buf: &mut Buffer) {
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
    match view.nearest_cluster(&app.explore.code) {
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

fn render_list(app: &App, view: &ClusterView, area: Rect, buf: &mut Buffer) {
    let t = app.theme;
    let c = &app.clusters;
    let r = &view.report;
    let [list, detail] = Layout::vertical([Constraint::Min(5), Constraint::Length(6)]).areas(area);
    let block = t.block(Span::styled(" Clusters by size ", t.bold()), true);
    let inner = block.inner(list);
    block.render(list, buf);
    let current = view.nearest_cluster(&app.explore.code);
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

fn render_members(app: &App, view: &ClusterView, area: Rect, buf: &mut Buffer) {
    let t = app.theme;
    let c = &app.clusters;
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

fn render_attribute(app: &App, view: &ClusterView, area: Rect, buf: &mut Buffer) {
    let t = app.theme;
    let c = &app.clusters;
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
    match &app.explore.sentence {
        Some(s) => lines.push(Line::from(vec![
            Span::styled("sentence  ", t.dim()),
            Span::raw(s.shown.clone()),
        ])),
        None => lines.push(Line::styled(
            "encode a sentence in 1 Explore: the vector moves its current code",
            t.dim(),
        )),
    }
    if let Some((vector, edited)) = app.clusters_edited_code() {
        if view.data.binary {
            let changed = changed_bits(&app.explore.code, &edited);
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

fn render_analogy(app: &App, area: Rect, buf: &mut Buffer) {
    let t = app.theme;
    let c = &app.clusters;
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
