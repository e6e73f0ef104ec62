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

use super::context::{Ctx, Shared, Tab, View};
use super::jobs::{Job, JobKind, ReplyBody};
use super::keys::{self, nav, Binding, Lookup, Mode, Only};
use super::widgets::{self, InputAction, TextInput};
use crate::cluster::ClusterMethod;
use crate::coder::Capabilities;
use crate::pipeline::{CentreDecodings, ClustersSoFar, CLUSTER_ENCODING_SHARE};
use crate::structure::AttributeVector;

/// The cluster counts `[` and `]` step through; the first clustering has one cluster per gold
/// label (10 for an unlabelled corpus).
mod analogy;
mod attribute;
mod list;
mod members;

pub use analogy::ANALOGY_KEYS;
pub use attribute::ATTRIBUTE_KEYS;
pub use list::LIST_KEYS;
pub use members::MEMBERS_KEYS;

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
    /// The sentences of the newest analogy asked for (`w` decodes it again).
    pub analogy_asked: Option<[String; 3]>,
    /// Whether the newest decoding or analogy asked for keeps to the training corpus's words,
    /// and whether the attribute decoding and the analogy on screen do.
    pub asked_real_words: bool,
    pub decoded_real_words: bool,
    pub analogy_real_words: bool,
    /// While the corpus is clustered: (entries encoded, of all) of the provisional clustering
    /// on screen, a clustering of the entries encoded so far.
    pub provisional: Option<(usize, usize)>,
    /// The centres decoded in real words (the clustering decodes them raw): shown in place of
    /// the raw decodings while `w` says real words and they are this clustering's centres.
    pub centres_kept: Option<Arc<CentreDecodings>>,
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
            analogy_asked: None,
            asked_real_words: true,
            decoded_real_words: true,
            analogy_real_words: true,
            provisional: None,
            centres_kept: None,
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
    /// `w`: real words ↔ raw decodings (every tab's setting).
    RealWords,
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
        // `w` pressed on another tab since the analogy was decoded: decode it again.
        if self.analogy_real_words == cx.shared.raw_decoding {
            self.analogy_request(cx);
        }
        self.centres_request(cx);
    }

    /// Asks for the centres in real words where `w` says so, the model decodes text, and the
    /// clustering on screen has no such decodings yet.
    fn centres_request(&mut self, cx: &mut Ctx) {
        // Word-level models decode corpus words already (as `coder::seq::real_words_apply`).
        let applies = cx.model.caps.decodes_text
            && cx.model.kind.has_latent()
            && cx.model.tokenizer != crate::vocab::TokenizerKind::Word;
        if cx.shared.raw_decoding || !applies {
            return;
        }
        let Some(view) = cx.shared.clusters.as_ref() else {
            return;
        };
        if self.kept_centres(view).is_some() || cx.jobs.is_pending(JobKind::Centres) {
            return;
        }
        let centres = view
            .report
            .clusters
            .iter()
            .map(|c| c.center.clone())
            .collect();
        cx.jobs.submit(Job::Centres {
            centres,
            real_words: true,
        });
    }

    /// The real-words decodings of `view`'s centres, if those are what [`Self::centres_kept`]
    /// holds.
    pub fn kept_centres(&self, view: &ClusterView) -> Option<&CentreDecodings> {
        self.centres_kept.as_deref().filter(|k| {
            k.real_words
                && k.texts.len() == view.report.clusters.len()
                && k.centres.len() == view.report.clusters.len()
                // By bits: a NaN centre (a diverged model) still matches its own decodings.
                && k.centres.iter().zip(&view.report.clusters).all(|(a, c)| {
                    a.len() == c.center.len()
                        && a.iter().zip(&c.center).all(|(x, y)| x.to_bits() == y.to_bits())
                })
        })
    }

    /// `w`: the real-words setting every tab shares; the centres, the attribute decoding and
    /// the analogy decode again with it.
    fn real_words(&mut self, cx: &mut Ctx) {
        cx.shared.raw_decoding = !cx.shared.raw_decoding;
        let setting = if cx.shared.raw_decoding {
            "raw decodings"
        } else {
            "real words"
        };
        cx.notice(match self.view {
            ClustersView::Attribute | ClustersView::Analogy => {
                format!("w: {setting} on every tab; this view decodes again")
            }
            _ => format!(
                "w: {setting} on every tab; the centres and the attribute (a) and analogy (n) \
                 views follow it"
            ),
        });
        self.centres_request(cx);
        self.attribute_request(cx);
        if self.analogy.is_some() {
            self.analogy_request(cx);
        }
    }

    /// Decodes the newest analogy asked for again (after `w`).
    fn analogy_request(&mut self, cx: &mut Ctx) {
        if let Some(sentences) = self.analogy_asked.clone() {
            self.submit_structure(
                cx,
                StructureJob::Analogy {
                    sentences,
                    real_words: !cx.shared.raw_decoding,
                },
            );
        }
    }

    /// Sends a decoding or an analogy to the worker, noting which words it keeps to.
    fn submit_structure(&mut self, cx: &mut Ctx, job: StructureJob) {
        self.asked_real_words = job.real_words();
        if let StructureJob::Analogy { sentences, .. } = &job {
            self.analogy_asked = Some(sentences.clone());
        }
        cx.jobs.submit(Job::Structure(job));
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

    /// A clustering of the entries encoded so far: shown (and browsed) until the final one.
    fn so_far(&mut self, cx: &mut Ctx, p: &ClustersSoFar) {
        self.show(cx, p.view.clone());
        self.provisional = Some((p.searched, p.total));
    }

    fn done(&mut self, cx: &mut Ctx, r: Result<Arc<ClusterView>, String>) {
        self.provisional = None;
        match r {
            Ok(v) => self.show(cx, v),
            Err(e) => self.error = Some(e),
        }
    }

    fn show(&mut self, cx: &mut Ctx, v: Arc<ClusterView>) {
        let c = &mut *self;
        c.selected = c.selected.min(v.report.clusters.len().saturating_sub(1));
        c.member = 0;
        c.label_cursor = c
            .label_cursor
            .min(v.data.label_names.len().saturating_sub(1));
        cx.shared.clusters = Some(v);
        c.error = None;
        self.centres_request(cx);
    }

    fn structure_done(&mut self, _cx: &mut Ctx, r: Result<StructureResult, String>) {
        match r {
            Ok(StructureResult::Decoded { code, text }) => {
                self.decoded = Some(Ok((code, text)));
                self.decoded_real_words = self.asked_real_words;
            }
            Ok(a @ StructureResult::Analogy { .. }) => {
                self.analogy = Some(Ok(a));
                self.analogy_real_words = self.asked_real_words;
            }
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
            let real_words = !cx.shared.raw_decoding;
            let current = matches!(&self.decoded, Some(Ok((c, _))) if *c == code)
                && self.decoded_real_words == real_words;
            if !current {
                self.submit_structure(cx, StructureJob::Decode { code, real_words });
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
        if action == Action::RealWords {
            return self.real_words(cx);
        }
        match self.view {
            ClustersView::List => self.list_do(cx, action),
            ClustersView::Members => self.members_do(cx, action),
            ClustersView::Attribute => self.attribute_do(cx, action),
            ClustersView::Map => {}
            ClustersView::Analogy => self.analogy_do(cx, action),
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
            ReplyBody::ClusteredSoFar(p) => self.so_far(cx, &p),
            ReplyBody::Structure(r) => self.structure_done(cx, r),
            ReplyBody::Centres(Ok(d)) => {
                self.centres_kept = Some(d);
                // `w` pressed again, or a new clustering, while these were decoded.
                self.centres_request(cx);
            }
            ReplyBody::Centres(Err(e)) => cx.notice(format!("centres in real words: {e}")),
            other => return Some(other),
        }
        None
    }

    fn model_changed(&mut self, cx: &mut Ctx, shown: bool) {
        let c = &mut *self;
        cx.shared.clusters = None;
        c.provisional = None;
        c.error = None;
        c.decoded = None;
        c.analogy = None;
        c.centres_kept = None;
        c.analogy_asked = None;
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
    let provisional = c.provisional.filter(|_| app.shared.clusters.is_some());
    if app.jobs.is_pending(JobKind::Cluster) && provisional.is_none() {
        let block = t.block(Span::styled(" Clusters ", t.bold()), false);
        let inner = block.inner(area);
        block.render(area, buf);
        let [msg, gauge] =
            Layout::vertical([Constraint::Length(3), Constraint::Length(1)]).areas(inner);
        let (text, progress) = pending_text(app);
        widgets::wrapped(buf, msg, vec![Line::from(text)]);
        widgets::job_gauge(buf, gauge, t, progress);
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
    // In a short terminal the summary keeps its title and first line (the list below matters
    // more than which cluster Explore's code falls in).
    let rows = (4 + u16::from(provisional.is_some())).min(area.height.saturating_sub(10).max(3));
    let [summary, body] =
        Layout::vertical([Constraint::Length(rows), Constraint::Min(0)]).areas(area);
    render_summary(app, view, provisional, summary, buf);
    match c.view {
        ClustersView::List => list::render_list(tab, app, view, body, buf),
        ClustersView::Map => super::map::render(&app.map_env(), body, buf),
        ClustersView::Members => members::render_members(tab, app, view, body, buf),
        ClustersView::Attribute => attribute::render_attribute(tab, app, view, body, buf),
        ClustersView::Analogy => analogy::render_analogy(tab, app, body, buf),
    }
}

/// What the Clusters tab says while its clustering is on its way, and the gauge's fraction.
/// The job's progress is the encoding's ([`CLUSTER_ENCODING_SHARE`] of it; nothing when the
/// index is loaded from its cache), then the clustering's iterations and the decoded centres.
fn pending_text(app: &View) -> (String, Option<f64>) {
    let jobs = app.jobs;
    match jobs.queued_behind(JobKind::Cluster) {
        // Queued behind the Neighbors tab's index (one background job at a time): the
        // clustering loads that index once it is saved instead of encoding the corpus again,
        // so its progress is this tab's.
        Some(JobKind::Index) => (
            "Waiting for the corpus index the Neighbors tab is building: the clusters are made \
             from it once it is saved (not from a second encoding)…"
                .into(),
            jobs.progress(JobKind::Index),
        ),
        Some(other) => (
            format!(
                "{}: the background thread runs one corpus job at a time; the clustering \
                 starts next…",
                capitalized(&jobs.waiting_note(JobKind::Cluster).unwrap_or_default())
            ),
            jobs.progress(other),
        ),
        None => {
            let f = jobs.progress(JobKind::Cluster);
            let text = match f {
                None => "Encoding the train split of the corpus (or loading its saved index), \
                         then clustering the codes…"
                    .to_string(),
                Some(f) if f < CLUSTER_ENCODING_SHARE => format!(
                    "Encoding the train split of the corpus: {:.0}% of it encoded; the codes \
                     are clustered next…",
                    f / CLUSTER_ENCODING_SHARE * 100.0
                ),
                Some(_) => "Clustering the codes (each restart's iterations, then the gold \
                            labels' TF-IDF baseline and the centres' decodings)…"
                    .to_string(),
            };
            (text, f)
        }
    }
}

/// `s` with its first letter upper-case.
fn capitalized(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(first) => first.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

fn render_summary(
    app: &View,
    view: &ClusterView,
    provisional: Option<(usize, usize)>,
    area: Rect,
    buf: &mut Buffer,
) {
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
    if let Some((searched, total)) = provisional {
        // The job's progress is the encoding's share of it until the codes are clustered.
        let done = (app.jobs.progress(JobKind::Cluster).unwrap_or(0.0) / CLUSTER_ENCODING_SHARE)
            .min(1.0)
            * 100.0;
        lines.push(Line::styled(
            format!(
                "provisional: {} of {} entries encoded · the whole corpus's clusters follow \
                 (encoding {done:.0}%)",
                widgets::thousands(searched),
                widgets::thousands(total)
            ),
            t.changed(),
        ));
    }
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
