//! The corpus map, one component shown by the Neighbors tab (`m`) and the Clusters tab (`v`):
//! every indexed entry at its place in a neighbour-preserving layout ([`crate::map`]), which
//! the background worker loads from beside the checkpoint or computes (with a gauge).
//!
//! Walk and read it: a cursor jumps to the nearest point in the pressed direction and the side
//! panel shows that entry's text, label and cluster; Enter loads it into Explore. Zoom and pan.
//! Explore's current code is placed by its nearest entries (no layout recomputed) and drawn
//! with the trail of codes its bit flips went through; the Path tab's walk is a line. Points
//! are coloured by gold label, by cluster (names at the centres) or by the value of the bit
//! selected in Explore; `/` highlights the entries whose text contains a string.
//!
//! Frames never pass over every point: the points are binned once into a grid
//! ([`crate::map::grid`]) and the colouring into a pyramid of per-cell majorities, rebuilt in
//! `update` when the colouring changes; a frame reads one cell per screen dot, or, zoomed in
//! past the finest cells, only the points of the cells on screen.

use std::sync::Arc;

use crossterm::event::{KeyCode, KeyEvent};
use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout as Split, Rect};
use ratatui::style::{Color, Style};
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::canvas::{Canvas, Line as Segment, Points};
use ratatui::widgets::Widget;
use rayon::prelude::*;

use super::jobs::{Entries, JobKind, Jobs, ModelInfo};
use super::keys::{self, nav, typing, Binding, Lookup, Mode, Only};
use super::widgets::{self, label_color, InputAction, TextInput, Theme, CURRENT};
use crate::coder::{Capabilities, PathWalk};
use crate::map::grid::{vote, Pyramid, EMPTY};
use crate::map::Method;
use crate::pipeline::ClusterView;

/// Names printed on the map at category centres, largest first.
const LABELS_SHOWN: usize = 12;
/// Points of the trail of flips kept.
const TRAIL: usize = 500;
/// The category of an unlabelled entry (drawn grey).
const UNLABELLED: u32 = u32::MAX - 1;
/// The marker of the cursor.
pub const CURSOR: &str = "◎";

pub use crate::pipeline::{
    compute_map, MapData, MapRequest, MapSoFar, MapStage, SharedIndex, GRID_SIDE,
};

/// How the points are coloured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColorBy {
    Label,
    Cluster,
    /// The value of the bit (dimension) under Explore's cursor.
    Bit,
}

/// Zoom and pan: `zoom` 1 shows everything; the centre is relative to the middle of the
/// full view, in units of the full view's width and height.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Viewport {
    pub zoom: f64,
    pub dx: f64,
    pub dy: f64,
}

impl Default for Viewport {
    fn default() -> Self {
        Self {
            zoom: 1.0,
            dx: 0.0,
            dy: 0.0,
        }
    }
}

impl Viewport {
    /// One pan step: a quarter of what is on screen.
    pub fn pan(&mut self, right: f64, up: f64) {
        self.dx += right * 0.25 / self.zoom;
        self.dy += up * 0.25 / self.zoom;
    }

    pub fn zoom_by(&mut self, factor: f64) {
        self.zoom = (self.zoom * factor).clamp(1.0, 4096.0);
    }

    /// The x and y ranges shown, given the full view's.
    pub fn window(&self, x: (f64, f64), y: (f64, f64)) -> ((f64, f64), (f64, f64)) {
        let span = |(a, b): (f64, f64), shift: f64| {
            let w = (b - a) / self.zoom;
            let mid = (a + b) / 2.0 + shift * (b - a);
            (mid - w / 2.0, mid + w / 2.0)
        };
        (span(x, self.dx), span(y, self.dy))
    }

    /// Pans so that `p` is in the middle.
    fn centre_on(&mut self, p: [f32; 2], x: (f64, f64), y: (f64, f64)) {
        self.dx = (p[0] as f64 - (x.0 + x.1) / 2.0) / (x.1 - x.0).max(1e-12);
        self.dy = (p[1] as f64 - (y.0 + y.1) / 2.0) / (y.1 - y.0).max(1e-12);
    }
}

/// The full view of a map: its bounds with a 5 % margin.
fn full_view(data: &MapData) -> ((f64, f64), (f64, f64)) {
    let (lo, hi) = data.layout.bounds();
    let pad = |a: f32, b: f32| {
        let w = ((b - a) as f64).max(1e-3);
        (a as f64 - 0.05 * w, b as f64 + 0.05 * w)
    };
    (pad(lo[0], hi[0]), pad(lo[1], hi[1]))
}

/// What a colouring was computed for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ShadeKey {
    data: usize,
    color: ColorBy,
    clusters: usize,
    bit: usize,
}

/// A colouring of the points: each point's category, the pyramid of cell majorities, the
/// legend and the names placed at category centres.
#[derive(Debug)]
pub struct Shades {
    key: ShadeKey,
    /// What the colouring shows, for the title ("gold label", "cluster", "bit 3").
    pub what: String,
    pub category: Vec<u32>,
    pub pyramid: Pyramid,
    /// (category, name, entries), largest first.
    pub legend: Vec<(u32, String, usize)>,
    /// (name, centre) of the largest categories.
    pub centres: Vec<(String, [f32; 2])>,
}

#[derive(Debug)]
pub struct MapState {
    pub data: Option<Arc<MapData>>,
    /// While the map is computed: how the map shown so far was made (`data` is provisional).
    pub so_far: Option<MapStage>,
    pub error: Option<String>,
    pub method: Method,
    pub viewport: Viewport,
    /// The entry under the cursor.
    pub cursor: Option<usize>,
    pub color: ColorBy,
    pub shades: Option<Shades>,
    /// `/`: the search field, whether it has the focus, the applied query and its matches.
    pub search: TextInput,
    pub searching: bool,
    pub query: String,
    pub matches: Vec<u32>,
    /// Explore's current code on the map and the trail of codes since its sentence.
    pub current: Option<[f32; 2]>,
    pub trail: Vec<[f32; 2]>,
    trail_origin: Vec<f32>,
    trail_code: Vec<f32>,
    /// The Path tab's walk on the map, and which walk it is.
    pub path_line: Vec<[f32; 2]>,
    path_key: Option<(String, String, u64, usize, bool)>,
    /// Every entry's cluster (when the clustering covers a subset: its nearest centre), and
    /// the clustering it belongs to.
    entry_clusters: Option<(usize, Arc<Vec<u32>>)>,
}

impl Default for MapState {
    fn default() -> Self {
        Self {
            data: None,
            so_far: None,
            error: None,
            method: Method::Umap,
            viewport: Viewport::default(),
            cursor: None,
            color: ColorBy::Label,
            shades: None,
            search: TextInput::default(),
            searching: false,
            query: String::new(),
            matches: Vec::new(),
            current: None,
            trail: Vec::new(),
            trail_origin: Vec::new(),
            trail_code: Vec::new(),
            path_line: Vec::new(),
            path_key: None,
            entry_clusters: None,
        }
    }
}

impl MapState {
    pub fn hints(&self, caps: Capabilities) -> Vec<(&'static str, &'static str)> {
        let mode = if self.searching {
            Mode::Typing
        } else {
            Mode::Nav
        };
        keys::hints(KEYS, mode, caps)
    }
}

/// What a key can do on the map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Left,
    Right,
    Up,
    Down,
    PanLeft,
    PanRight,
    PanUp,
    PanDown,
    ZoomIn,
    ZoomOut,
    Reset,
    Open,
    Color,
    Method,
    Search,
    NextMatch,
    PreviousMatch,
    ToCurrent,
    Back,
    ApplySearch,
    CancelSearch,
}

/// The map's keys, the same on both tabs that show it: dispatch, footer and help read this.
pub const KEYS: &[Binding<Action>] = &[
    typing(
        &[KeyCode::Enter],
        "Enter",
        "map search: highlight the entries whose text contains it",
        Some(("Enter", "highlight")),
        Action::ApplySearch,
    ),
    typing(
        &[KeyCode::Esc],
        "Esc",
        "map search: cancel",
        Some(("Esc", "cancel")),
        Action::CancelSearch,
    ),
    nav(
        &[KeyCode::Left, KeyCode::Char('h')],
        "←↑↓→ or hjkl",
        "map: cursor to the nearest point in that direction",
        Some(("←↑↓→", "walk")),
        Only::Any,
        Action::Left,
    ),
    nav(
        &[KeyCode::Right, KeyCode::Char('l')],
        "→ or l",
        "",
        None,
        Only::Any,
        Action::Right,
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
        &[KeyCode::Down, KeyCode::Char('j')],
        "↓ or j",
        "",
        None,
        Only::Any,
        Action::Down,
    ),
    nav(
        &[KeyCode::Char('H')],
        "HJKL",
        "map: pan",
        Some(("HJKL", "pan")),
        Only::Any,
        Action::PanLeft,
    ),
    nav(
        &[KeyCode::Char('L')],
        "L",
        "",
        None,
        Only::Any,
        Action::PanRight,
    ),
    nav(
        &[KeyCode::Char('K')],
        "K",
        "",
        None,
        Only::Any,
        Action::PanUp,
    ),
    nav(
        &[KeyCode::Char('J')],
        "J",
        "",
        None,
        Only::Any,
        Action::PanDown,
    ),
    nav(
        &[KeyCode::Char('+'), KeyCode::Char('=')],
        "+ / -",
        "map: zoom in / out (keeping the cursor in view)",
        Some(("+/-", "zoom")),
        Only::Any,
        Action::ZoomIn,
    ),
    nav(
        &[KeyCode::Char('-')],
        "-",
        "",
        None,
        Only::Any,
        Action::ZoomOut,
    ),
    nav(
        &[KeyCode::Char('0')],
        "0",
        "map: the whole map again",
        Some(("0", "whole")),
        Only::Any,
        Action::Reset,
    ),
    nav(
        &[KeyCode::Enter, KeyCode::Char('e')],
        "Enter or e",
        "map: load the entry under the cursor into 1 Explore",
        Some(("Enter", "explore it")),
        Only::Any,
        Action::Open,
    ),
    nav(
        &[KeyCode::Char('c')],
        "c",
        "map: colour by gold label → cluster → the bit selected in Explore",
        Some(("c", "colour")),
        Only::Any,
        Action::Color,
    ),
    nav(
        &[KeyCode::Char('p')],
        "p",
        "map: UMAP layout ↔ PCA projection",
        Some(("p", "UMAP/PCA")),
        Only::Any,
        Action::Method,
    ),
    nav(
        &[KeyCode::Char('/')],
        "/",
        "map: search the texts; matches are highlighted",
        Some(("/", "search")),
        Only::Any,
        Action::Search,
    ),
    nav(
        &[KeyCode::Char('n')],
        "n / N",
        "map: cursor to the next / previous match",
        Some(("n/N", "match")),
        Only::Any,
        Action::NextMatch,
    ),
    nav(
        &[KeyCode::Char('N')],
        "N",
        "",
        None,
        Only::Any,
        Action::PreviousMatch,
    ),
    nav(
        &[KeyCode::Char('.')],
        ".",
        "map: cursor to the entry nearest Explore's current code",
        Some((".", "to ◆")),
        Only::Any,
        Action::ToCurrent,
    ),
    nav(
        &[KeyCode::Esc, KeyCode::Char('m'), KeyCode::Char('v')],
        "Esc, m or v",
        "map: clear the search (Esc), else back to the list",
        Some(("Esc", "back")),
        Only::Any,
        Action::Back,
    ),
];

/// What a key on the map asks of the tab that shows it.
#[derive(Clone, Debug, PartialEq)]
pub enum MapKey {
    /// Handled (or ignored) by the map.
    Stay,
    /// The user left the map (the tab goes back to its list).
    Back,
    /// A line for the footer.
    Notice(String),
    /// The layout method changed: the map must be requested again.
    Reload,
    /// Coloured by cluster before the corpus was clustered: the clustering is needed.
    NeedClusters,
    /// Enter on an entry: load its text into Explore.
    Open(String),
}

/// What the map derives from the rest of the app (see [`MapState::sync`]).
pub struct MapSources<'a> {
    /// Explore's current code and the code of its sentence as encoded.
    pub code: &'a [f32],
    pub origin: Option<&'a [f32]>,
    /// The dimension selected in Explore (the colour by bit).
    pub dim: usize,
    /// The Path tab's walk.
    pub walk: Option<&'a PathWalk>,
    /// The corpus clustering, if any.
    pub clusters: Option<&'a Arc<ClusterView>>,
    pub binary: bool,
}

/// What drawing the map reads besides its own state.
pub struct MapEnv<'a> {
    pub map: &'a MapState,
    pub theme: Theme,
    pub model: &'a ModelInfo,
    pub jobs: &'a Jobs,
    pub clusters: Option<&'a Arc<ClusterView>>,
}

impl MapState {
    /// The map's state for a newly loaded model: empty, with the same method and colouring.
    pub fn for_new_model(&self) -> Self {
        MapState {
            method: self.method,
            color: self.color,
            ..MapState::default()
        }
    }

    /// A loaded (or failed) map.
    pub fn done(&mut self, r: Result<Arc<MapData>, String>) -> Option<String> {
        let refines = self.so_far.take().is_some();
        match r {
            Ok(data) => {
                let failed = data
                    .save_error
                    .as_ref()
                    .map(|e| format!("the map could not be saved: {e}"));
                self.show(data, refines);
                failed
            }
            Err(e) => {
                self.error = Some(e);
                None
            }
        }
    }

    /// The map on its way ([`MapSoFar`]): shown (and walked) until the next one or the final.
    pub fn partial(&mut self, p: &MapSoFar) {
        let refines = self.so_far.is_some();
        self.so_far = Some(p.stage);
        self.show(p.data.clone(), refines);
    }

    /// Shows `data`; where it `refines` the map on screen (a later layout of the same
    /// entries) the cursor and the zoom stay.
    fn show(&mut self, data: Arc<MapData>, refines: bool) {
        let m = self;
        let same_entries = m.data.as_ref().is_some_and(|d| d.len() == data.len());
        if !same_entries {
            m.cursor = None;
        }
        if !(refines && same_entries) {
            m.viewport = Viewport::default();
        }
        m.data = Some(data);
        m.error = None;
        m.shades = None;
        m.trail_code.clear();
        m.trail_origin.clear();
        m.path_key = None;
        m.search_apply();
    }

    /// What the map on screen is while it is computed, for its title (None once final).
    pub fn provisional(&self) -> Option<String> {
        Some(match self.so_far? {
            MapStage::Entries { searched, total } => format!(
                "provisional: {} of {} entries",
                widgets::thousands(searched),
                widgets::thousands(total)
            ),
            MapStage::Epoch { epoch: 0, .. } => "provisional: PCA plane, laying out".to_string(),
            MapStage::Epoch { epoch, epochs } => {
                format!("provisional: epoch {epoch} of {epochs}")
            }
        })
    }

    /// A key on the map, and what it asks of the tab that shows it.
    pub fn key(&mut self, key: KeyEvent, caps: Capabilities) -> MapKey {
        let action = if self.searching {
            match self.search.on_key(key) {
                InputAction::Submit => Action::ApplySearch,
                InputAction::Cancel => Action::CancelSearch,
                _ => return MapKey::Stay,
            }
        } else {
            match keys::lookup(KEYS, Mode::Nav, key.code, caps) {
                Lookup::Action(a) => a,
                Lookup::NotForThisModel(why) => return MapKey::Notice(why),
                Lookup::Unbound => return MapKey::Stay,
            }
        };
        match action {
            Action::Back => {
                if !self.query.is_empty() && key.code == KeyCode::Esc {
                    self.query.clear();
                    self.matches.clear();
                    return MapKey::Stay;
                }
                return MapKey::Back;
            }
            Action::Method => {
                self.method = match self.method {
                    Method::Umap => Method::Pca,
                    Method::Pca => Method::Umap,
                };
                return MapKey::Reload;
            }
            Action::Search => {
                let q = self.query.clone();
                self.search.set(&q);
                self.searching = true;
                return MapKey::Stay;
            }
            Action::ApplySearch => {
                self.searching = false;
                self.query = self.search.text().trim().to_string();
                self.search_apply();
                let n = self.matches.len();
                if !self.query.is_empty() {
                    return MapKey::Notice(format!(
                        "{n} entr{} contain{} “{}”{}",
                        if n == 1 { "y" } else { "ies" },
                        if n == 1 { "s" } else { "" },
                        self.query,
                        if n > 0 { ": n / N walk them" } else { "" }
                    ));
                }
                return MapKey::Stay;
            }
            Action::CancelSearch => {
                self.searching = false;
                return MapKey::Stay;
            }
            Action::Color => {
                self.color = match self.color {
                    ColorBy::Label => ColorBy::Cluster,
                    ColorBy::Cluster => ColorBy::Bit,
                    ColorBy::Bit => ColorBy::Label,
                };
                if self.color == ColorBy::Cluster {
                    return MapKey::NeedClusters;
                }
                return MapKey::Stay;
            }
            Action::Open => {
                let Some((data, i)) = self.data.clone().zip(self.cursor) else {
                    return MapKey::Notice(
                        "move the cursor onto a point first (arrow keys)".into(),
                    );
                };
                return MapKey::Open(data.index.index.texts()[i].clone());
            }
            _ => {}
        }
        let Some(data) = self.data.clone() else {
            return MapKey::Stay;
        };
        let (fx, fy) = full_view(&data);
        let m = &mut *self;
        match action {
            Action::Left => m.step(&data, (-1.0, 0.0)),
            Action::Right => m.step(&data, (1.0, 0.0)),
            Action::Up => m.step(&data, (0.0, 1.0)),
            Action::Down => m.step(&data, (0.0, -1.0)),
            Action::PanLeft => m.viewport.pan(-1.0, 0.0),
            Action::PanRight => m.viewport.pan(1.0, 0.0),
            Action::PanUp => m.viewport.pan(0.0, 1.0),
            Action::PanDown => m.viewport.pan(0.0, -1.0),
            Action::ZoomIn => m.viewport.zoom_by(2.0),
            Action::ZoomOut => m.viewport.zoom_by(0.5),
            Action::Reset => m.viewport = Viewport::default(),
            Action::NextMatch | Action::PreviousMatch => {
                if m.matches.is_empty() {
                    return MapKey::Notice("no matches: / searches the texts".into());
                }
                let n = m.matches.len();
                let at = m
                    .cursor
                    .and_then(|c| m.matches.iter().position(|&x| x as usize == c));
                let next = match (at, action == Action::NextMatch) {
                    (None, _) => 0,
                    (Some(a), true) => (a + 1) % n,
                    (Some(a), false) => (a + n - 1) % n,
                };
                m.cursor = Some(m.matches[next] as usize);
            }
            Action::ToCurrent => match m.current {
                Some(p) => {
                    m.cursor = data
                        .grid
                        .nearest(&data.layout.points, p, 1, None)
                        .first()
                        .map(|x| x.0)
                }
                None => {
                    return MapKey::Notice("encode a sentence in 1 Explore first".into());
                }
            },
            _ => {}
        }
        // Keep the cursor on screen: pan to it when a move or zoom left it outside.
        let m = &mut *self;
        if let Some(c) = m.cursor {
            let p = data.layout.points[c];
            let ((x0, x1), (y0, y1)) = m.viewport.window(fx, fy);
            let inside = (x0..=x1).contains(&(p[0] as f64)) && (y0..=y1).contains(&(p[1] as f64));
            let moved = matches!(
                action,
                Action::Left
                    | Action::Right
                    | Action::Up
                    | Action::Down
                    | Action::ZoomIn
                    | Action::ZoomOut
                    | Action::NextMatch
                    | Action::PreviousMatch
                    | Action::ToCurrent
            );
            if moved && !inside {
                m.viewport.centre_on(p, fx, fy);
            }
        }
        MapKey::Stay
    }

    /// The entries whose text contains the query (case-insensitive).
    fn search_apply(&mut self) {
        let m = self;
        m.matches.clear();
        let (Some(data), false) = (&m.data, m.query.is_empty()) else {
            return;
        };
        let q = m.query.to_lowercase();
        m.matches = data
            .index
            .index
            .texts()
            .par_iter()
            .enumerate()
            .filter(|(_, t)| t.to_lowercase().contains(&q))
            .map(|(i, _)| i as u32)
            .collect();
    }

    /// Brings what the map derives from the rest of the app up to date: the colouring (when
    /// the colour mode, the clustering or Explore's selected bit changed), Explore's code and
    /// its trail, and the Path tab's walk. Called at the end of every update; cheap when
    /// nothing changed.
    pub fn sync(&mut self, src: &MapSources) {
        let Some(data) = self.data.clone() else {
            return;
        };
        let dim = data.index.index.dim();
        // Explore's code and the trail of flips since its sentence was encoded.
        let code = src.code;
        if code.len() != dim {
            self.current = None;
            self.trail.clear();
            self.trail_code.clear();
            self.trail_origin.clear();
        } else if *code != self.trail_code[..] {
            let origin = src.origin.map(<[f32]>::to_vec).unwrap_or_default();
            let m = &mut *self;
            if origin != m.trail_origin {
                m.trail_origin = origin.clone();
                m.trail = data.place(&origin).into_iter().collect();
            }
            m.trail_code = code.to_vec();
            m.current = data.place(code);
            if let Some(p) = m.current {
                if m.trail.last() != Some(&p) {
                    m.trail.push(p);
                }
                if m.trail.len() > TRAIL {
                    let cut = m.trail.len() - TRAIL;
                    m.trail.drain(..cut);
                }
            }
        }
        // The Path tab's walk.
        let key = src.walk.map(|w| {
            (
                w.a.shown.clone(),
                w.b.shown.clone(),
                w.seed,
                w.points.len(),
                w.slerp,
            )
        });
        if key != self.path_key {
            self.path_line = src
                .walk
                .map(|w| {
                    w.points
                        .iter()
                        .filter_map(|p| data.place(&p.code))
                        .collect()
                })
                .unwrap_or_default();
            self.path_key = key;
        }
        // The colouring.
        let clusters = match src.clusters {
            Some(v) if self.color == ColorBy::Cluster => Arc::as_ptr(v) as usize,
            _ => 0,
        };
        let bit = if self.color == ColorBy::Bit {
            src.dim.min(dim.saturating_sub(1))
        } else {
            0
        };
        let key = ShadeKey {
            data: Arc::as_ptr(&data) as usize,
            color: self.color,
            clusters,
            bit,
        };
        if self.shades.as_ref().is_some_and(|s| s.key == key) {
            return;
        }
        let shades = self.shades_of(&data, key, src);
        self.shades = Some(shades);
    }

    fn shades_of(&mut self, data: &Arc<MapData>, key: ShadeKey, src: &MapSources) -> Shades {
        let n = data.len();
        let entries = &data.index.index;
        let (what, category, names): (String, Vec<u32>, Vec<String>) = match key.color {
            ColorBy::Cluster if key.clusters != 0 => {
                let view = src.clusters.expect("keyed on it").clone();
                let assignment = self.entry_clusters_of(data, &view);
                let names = view
                    .report
                    .clusters
                    .iter()
                    .map(|c| {
                        format!(
                            "{} {}",
                            c.cluster + 1,
                            c.label.split(" · ").next().unwrap_or("")
                        )
                    })
                    .collect();
                ("cluster".into(), assignment.to_vec(), names)
            }
            ColorBy::Bit => {
                let b = key.bit;
                let (what, category) = match entries {
                    Entries::Hamming(ix) => (
                        format!("bit {b}"),
                        (0..n)
                            .map(|i| ((ix.codes.code(i)[b / 64] >> (b % 64)) & 1) as u32)
                            .collect(),
                    ),
                    Entries::Cosine(ix) => {
                        let mean = (0..n).map(|i| ix.mean(i)[b] as f64).sum::<f64>() / n as f64;
                        (
                            format!("dimension {b}"),
                            (0..n)
                                .map(|i| u32::from(ix.mean(i)[b] as f64 > mean))
                                .collect(),
                        )
                    }
                };
                let names = if src.binary {
                    vec![format!("bit {b} = 0"), format!("bit {b} = 1")]
                } else {
                    vec![format!("dim {b} below mean"), format!("dim {b} above mean")]
                };
                (what, category, names)
            }
            _ => (
                "gold label".into(),
                entries
                    .labels()
                    .iter()
                    .map(|l| l.unwrap_or(UNLABELLED))
                    .collect(),
                entries.label_names().to_vec(),
            ),
        };
        let pyramid = Pyramid::build(&data.grid, &category);
        let mut sums: std::collections::BTreeMap<u32, ([f64; 2], usize)> = Default::default();
        for (p, &c) in data.layout.points.iter().zip(&category) {
            let e = sums.entry(c).or_insert(([0.0; 2], 0));
            e.0[0] += p[0] as f64;
            e.0[1] += p[1] as f64;
            e.1 += 1;
        }
        let name_of = |c: u32| {
            if c == UNLABELLED {
                "(no label)".to_string()
            } else {
                names
                    .get(c as usize)
                    .cloned()
                    .unwrap_or_else(|| c.to_string())
            }
        };
        let mut legend: Vec<(u32, String, usize)> = sums
            .iter()
            .map(|(&c, &(_, count))| (c, name_of(c), count))
            .collect();
        legend.sort_by(|a, b| b.2.cmp(&a.2).then(a.0.cmp(&b.0)));
        let centres = if key.color == ColorBy::Bit {
            Vec::new()
        } else {
            legend
                .iter()
                .filter(|l| l.0 != UNLABELLED)
                .take(LABELS_SHOWN)
                .map(|&(c, ref name, count)| {
                    let s = sums[&c].0;
                    (
                        name.clone(),
                        [(s[0] / count as f64) as f32, (s[1] / count as f64) as f32],
                    )
                })
                .collect()
        };
        Shades {
            key,
            what,
            category,
            pyramid,
            legend,
            centres,
        }
    }

    /// Every map entry's cluster: the clustering's own assignment when it covers the whole
    /// index in order, else the nearest cluster centre of each entry's code.
    fn entry_clusters_of(&mut self, data: &MapData, view: &Arc<ClusterView>) -> Arc<Vec<u32>> {
        let id = Arc::as_ptr(view) as usize ^ Arc::as_ptr(&data.index) as usize;
        if let Some((k, a)) = &self.entry_clusters {
            if *k == id {
                return a.clone();
            }
        }
        let texts = data.index.index.texts();
        let same = view.data.len() == texts.len()
            && view.data.texts.first() == texts.first()
            && view.data.texts.last() == texts.last();
        let assignment: Vec<u32> = if same {
            view.report.assignment.iter().map(|&c| c as u32).collect()
        } else {
            (0..data.len())
                .into_par_iter()
                .map(|i| {
                    view.nearest_cluster(&data.entry_code(i))
                        .map_or(EMPTY, |c| c as u32)
                })
                .collect()
        };
        let a = Arc::new(assignment);
        self.entry_clusters = Some((id, a.clone()));
        a
    }

    /// Whether the map's search field has the focus.
    pub fn typing(&self) -> bool {
        self.searching
    }
}

impl MapState {
    /// Moves the cursor to the nearest point in direction `dir` (screen units of the current
    /// window), within 60° of it; from nothing, to the point nearest the window's centre.
    fn step(&mut self, data: &MapData, dir: (f64, f64)) {
        let (fx, fy) = full_view(data);
        let ((x0, x1), (y0, y1)) = self.viewport.window(fx, fy);
        let points = &data.layout.points;
        let Some(from) = self.cursor else {
            let mid = [((x0 + x1) / 2.0) as f32, ((y0 + y1) / 2.0) as f32];
            self.cursor = data.grid.nearest(points, mid, 1, None).first().map(|x| x.0);
            return;
        };
        let (w, h) = ((x1 - x0).max(1e-12), (y1 - y0).max(1e-12));
        let p = points[from];
        let best = points
            .par_iter()
            .enumerate()
            .filter_map(|(i, q)| {
                let dx = (q[0] - p[0]) as f64 / w;
                let dy = (q[1] - p[1]) as f64 / h;
                let along = dx * dir.0 + dy * dir.1;
                let across = (dx * dir.1 - dy * dir.0).abs();
                (i != from && along > 0.0 && across <= 1.75 * along)
                    .then_some((along * along + 4.0 * across * across, i))
            })
            .min_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        if let Some((_, i)) = best {
            self.cursor = Some(i);
        }
    }
}

pub fn render(app: &MapEnv, area: Rect, buf: &mut Buffer) {
    let t = app.theme;
    let m = app.map;
    if !app.model.caps.encodes {
        widgets::message_panel(
            buf,
            area,
            t,
            " Map ",
            vec![Line::from(format!(
                "This model is `{}`: it has no encoder, so there is no map of codes.",
                app.model.caps.name
            ))],
        );
        return;
    }
    let provisional = m.so_far.is_some() && m.data.is_some();
    if app.jobs.is_pending(JobKind::Map) && !provisional {
        let block = t.block(Span::styled(" Map ", t.bold()), false);
        let inner = block.inner(area);
        block.render(area, buf);
        let [msg, gauge] =
            Split::vertical([Constraint::Length(3), Constraint::Length(1)]).areas(inner);
        widgets::wrapped(
            buf,
            msg,
            vec![Line::from(widgets::cache_message(
                "map",
                app.model.map_found.as_deref(),
                &app.model.map_path,
                &format!("laying the corpus index out ({})", m.method.name()),
            ))],
        );
        widgets::job_gauge_waiting(
            buf,
            gauge,
            t,
            app.jobs.progress(JobKind::Map),
            app.jobs.waiting_note(JobKind::Map),
        );
        return;
    }
    if let Some(e) = &m.error {
        widgets::message_panel(
            buf,
            area,
            t,
            " Map ",
            vec![
                Line::styled(format!("No map: {e}"), t.error()),
                Line::styled("p to try again", t.dim()),
            ],
        );
        return;
    }
    let (Some(data), Some(shades)) = (&m.data, &m.shades) else {
        widgets::message_panel(
            buf,
            area,
            t,
            " Map ",
            vec![Line::styled("p to load the map", t.dim())],
        );
        return;
    };
    // The plot comes first: in a narrow terminal (80, 70 columns) the side panel narrows.
    let side_width = if area.width >= 100 {
        34
    } else {
        (area.width / 3).clamp(24, 34)
    };
    let split =
        |r: Rect| Split::horizontal([Constraint::Min(20), Constraint::Length(side_width)]).areas(r);
    let [plot, side] = if m.searching {
        let [top, rest] = Split::vertical([Constraint::Length(1), Constraint::Min(0)]).areas(area);
        m.search.render(buf, top, "search › ", true, t);
        split(rest)
    } else {
        split(area)
    };
    render_plot(app, data, shades, plot, buf);
    render_side(app, data, shades, side, buf);
}

/// Per category, the Braille dots of the window where it has the majority, and how many
/// entries are in the window.
pub fn dots(
    data: &MapData,
    shades: &Shades,
    window: ((f64, f64), (f64, f64)),
    cols: usize,
    rows: usize,
) -> (Vec<(u32, Vec<(f64, f64)>)>, usize) {
    let ((x0, x1), (y0, y1)) = window;
    let (cols, rows) = (cols.max(1), rows.max(1));
    let (sx, sy) = (cols as f64 / (x1 - x0), rows as f64 / (y1 - y0));
    let mut votes: Vec<(u32, u32)> = vec![(EMPTY, 0); cols * rows];
    let mut visible = 0usize;
    let put = |x: f64, y: f64, c: u32, n: u32, votes: &mut Vec<(u32, u32)>| {
        let fx = (x - x0) * sx;
        let fy = (y - y0) * sy;
        if !(0.0..cols as f64).contains(&fx) || !(0.0..rows as f64).contains(&fy) {
            return false;
        }
        vote(&mut votes[fy as usize * cols + fx as usize], c, n);
        true
    };
    let grid = &data.grid;
    let (gw, gh) = (grid.hi[0] - grid.lo[0], grid.hi[1] - grid.lo[1]);
    let (dw, dh) = ((x1 - x0) / cols as f64, (y1 - y0) / rows as f64);
    // The coarsest level whose cells are no larger than a dot.
    let level = (0..=shades.pyramid.finest())
        .find(|&l| gw / (1u64 << l) as f64 <= dw && gh / (1u64 << l) as f64 <= dh);
    match level {
        Some(l) => {
            let side = 1usize << l;
            let (cw, ch) = (gw / side as f64, gh / side as f64);
            let range = |a: f64, b: f64, lo: f64, c: f64| {
                let s = ((a - lo) / c).floor().max(0.0) as usize;
                let e = (((b - lo) / c).ceil().max(0.0) as usize).min(side);
                s.min(side)..e
            };
            let cells = &shades.pyramid.levels[l];
            for cy in range(y0, y1, grid.lo[1], ch) {
                for cx in range(x0, x1, grid.lo[0], cw) {
                    let (c, n) = cells[cy * side + cx];
                    if n == 0 || c == EMPTY {
                        continue;
                    }
                    let x = grid.lo[0] + (cx as f64 + 0.5) * cw;
                    let y = grid.lo[1] + (cy as f64 + 0.5) * ch;
                    if put(x, y, c, n, &mut votes) {
                        visible += n as usize;
                    }
                }
            }
        }
        None => {
            // Zoomed in past the finest cells: only the points of the cells on screen.
            if let Some(((cx0, cx1), (cy0, cy1))) = grid.cells_in((x0, x1), (y0, y1)) {
                for cy in cy0..=cy1 {
                    for cx in cx0..=cx1 {
                        for &i in grid.cell(cx, cy) {
                            let p = data.layout.points[i as usize];
                            let c = shades.category[i as usize];
                            if c != EMPTY && put(p[0] as f64, p[1] as f64, c, 1, &mut votes) {
                                visible += 1;
                            }
                        }
                    }
                }
            }
        }
    }
    let mut by: std::collections::BTreeMap<u32, Vec<(f64, f64)>> = Default::default();
    for (i, &(c, _)) in votes.iter().enumerate() {
        if c != EMPTY {
            let (dx, dy) = (i % cols, i / cols);
            by.entry(c)
                .or_default()
                .push((x0 + (dx as f64 + 0.5) / sx, y0 + (dy as f64 + 0.5) / sy));
        }
    }
    (by.into_iter().collect(), visible)
}

fn category_color(c: u32, color: bool) -> Color {
    if !color {
        Color::Reset
    } else if c == UNLABELLED {
        Color::Gray
    } else {
        label_color(Some(c))
    }
}

fn render_plot(app: &MapEnv, data: &MapData, shades: &Shades, area: Rect, buf: &mut Buffer) {
    let t = app.theme;
    let m = app.map;
    let (fx, fy) = full_view(data);
    let window = m.viewport.window(fx, fy);
    let ((x0, x1), (y0, y1)) = window;
    let cols = area.width.saturating_sub(2) as usize * 2;
    let rows = area.height.saturating_sub(2) as usize * 4;
    let (by_category, visible) = dots(data, shades, window, cols, rows);
    // Matches on screen, as Braille dots of their own.
    let (sx, sy) = (
        cols.max(1) as f64 / (x1 - x0),
        rows.max(1) as f64 / (y1 - y0),
    );
    let mut lit = vec![false; cols.max(1) * rows.max(1)];
    let mut highlighted: Vec<(f64, f64)> = Vec::new();
    for &i in &m.matches {
        let p = data.layout.points[i as usize];
        let fx = (p[0] as f64 - x0) * sx;
        let fy = (p[1] as f64 - y0) * sy;
        if (0.0..cols as f64).contains(&fx) && (0.0..rows as f64).contains(&fy) {
            let cell = fy as usize * cols + fx as usize;
            if !lit[cell] {
                lit[cell] = true;
                highlighted.push((x0 + (fx.floor() + 0.5) / sx, y0 + (fy.floor() + 0.5) / sy));
            }
        }
    }
    let mut title = vec![Span::styled(" Map ", t.bold())];
    if let Some(p) = m.provisional() {
        title.push(Span::styled(format!("· {p} "), t.changed()));
    }
    title.push(Span::styled(
        format!(
            "· {} of {} codes · {} shown · zoom {}× · colour: {} ",
            data.layout.meta.method.name(),
            data.len(),
            visible,
            m.viewport.zoom,
            shades.what
        ),
        t.dim(),
    ));
    let title = Line::from(title);
    let color = t.color;
    let cursor = m.cursor.map(|c| data.layout.points[c]);
    // The markers keep their cells: no name is printed over them (`noun.artif◆ct`).
    let mut markers: Vec<[f32; 2]> = Vec::new();
    if let (Some(a), Some(b)) = (m.path_line.first(), m.path_line.last()) {
        markers.extend([*a, *b]);
    }
    markers.extend(m.current);
    markers.extend(cursor);
    let names = placed_names(&shades.centres, window, area, &markers);
    Canvas::default()
        .block(t.block(title, true))
        .x_bounds([x0, x1])
        .y_bounds([y0, y1])
        .marker(Marker::Braille)
        .paint(|ctx| {
            for (c, pts) in &by_category {
                ctx.draw(&Points {
                    coords: pts,
                    color: category_color(*c, color),
                });
            }
            if !highlighted.is_empty() {
                ctx.layer();
                ctx.draw(&Points {
                    coords: &highlighted,
                    color: if color { Color::White } else { Color::Reset },
                });
            }
            ctx.layer();
            let segments = |ctx: &mut ratatui::widgets::canvas::Context, line: &[[f32; 2]], c| {
                for w in line.windows(2) {
                    ctx.draw(&Segment {
                        x1: w[0][0] as f64,
                        y1: w[0][1] as f64,
                        x2: w[1][0] as f64,
                        y2: w[1][1] as f64,
                        color: if color { c } else { Color::Reset },
                    });
                }
            };
            segments(ctx, &m.path_line, Color::LightRed);
            segments(ctx, &m.trail, Color::Yellow);
            ctx.layer();
            for (name, x, y) in &names {
                ctx.print(*x, *y, Span::styled(name.clone(), t.bold()));
            }
            if let (Some(a), Some(b)) = (m.path_line.first(), m.path_line.last()) {
                ctx.print(a[0] as f64, a[1] as f64, Span::styled("A", t.accent()));
                ctx.print(b[0] as f64, b[1] as f64, Span::styled("B", t.accent()));
            }
            if let Some([x, y]) = m.current {
                ctx.print(x as f64, y as f64, Span::styled(CURRENT, t.cursor()));
            }
            if let Some([x, y]) = cursor {
                ctx.print(x as f64, y as f64, Span::styled(CURSOR, t.accent()));
            }
        })
        .render(area, buf);
}

/// The category names to print at their centres (largest category first), each on the cell
/// row of its centre or the row above or below, and left out where it would overlap a name
/// already placed (overlapping names read as `adj.pertun.cognition`) or come next to a marker
/// (A and B of the Path walk, Explore's `◆`, the cursor), whose cells stay theirs. A name that
/// would run past the right edge is moved left to end there. Canvas coordinates.
fn placed_names(
    centres: &[(String, [f32; 2])],
    ((x0, x1), (y0, y1)): ((f64, f64), (f64, f64)),
    area: Rect,
    markers: &[[f32; 2]],
) -> Vec<(String, f64, f64)> {
    let (w, h) = (area.width.saturating_sub(2), area.height.saturating_sub(2));
    if w < 2 || h < 2 || x1 <= x0 || y1 <= y0 {
        return Vec::new();
    }
    // The canvas's own mapping of a label to a cell (ratatui's `Canvas` rendering of
    // `Context::print`: truncated, over width − 1 and height − 1).
    let col = |x: f64| ((x - x0) * (w - 1) as f64 / (x1 - x0)).floor() as i64;
    let row = |y: f64| ((y1 - y) * (h - 1) as f64 / (y1 - y0)).floor() as i64;
    let (col_width, row_height) = ((x1 - x0) / (w - 1) as f64, (y1 - y0) / (h - 1) as f64);
    let inside = |x: f64, y: f64| (x0..=x1).contains(&x) && (y0..=y1).contains(&y);
    // (row, first column, last column) of what is on the plot already.
    let mut taken: Vec<(i64, i64, i64)> = markers
        .iter()
        .map(|p| (p[0] as f64, p[1] as f64))
        .filter(|&(x, y)| inside(x, y))
        .map(|(x, y)| (row(y), col(x), col(x)))
        .collect();
    let mut out = Vec::new();
    for (name, [x, y]) in centres {
        let (x, y) = (*x as f64, *y as f64);
        if !inside(x, y) {
            continue;
        }
        let len = name.chars().count() as i64;
        if len > w as i64 {
            continue;
        }
        let (c, r0) = (col(x).min(w as i64 - len), row(y));
        // (The last row holds only the bottom edge's coordinate: a label there is not drawn.)
        let free = |r: i64| {
            (0..h as i64 - 1).contains(&r)
                && taken
                    .iter()
                    .all(|&(tr, a, b)| tr != r || c + len < a || c > b + 1)
        };
        if let Some(r) = [r0, r0 - 1, r0 + 1].into_iter().find(|&r| free(r)) {
            taken.push((r, c, c + len - 1));
            // In the middle of the cell, so that it truncates to that row and column.
            out.push((
                name.clone(),
                x0 + (c as f64 + 0.5) * col_width,
                y1 - (r as f64 + 0.5) * row_height,
            ));
        }
    }
    out
}

fn render_side(app: &MapEnv, data: &MapData, shades: &Shades, area: Rect, buf: &mut Buffer) {
    let t = app.theme;
    let m = app.map;
    let entries = &data.index.index;
    let [info, legend] = Split::vertical([Constraint::Length(9), Constraint::Min(0)]).areas(area);
    let block = t.block(Span::styled(" Under the cursor ", t.bold()), false);
    let inner = block.inner(info);
    block.render(info, buf);
    let mut lines = Vec::new();
    match m.cursor {
        None => lines.push(Line::styled(
            "←↑↓→ walk the map; Enter loads the entry into 1 Explore",
            t.dim(),
        )),
        Some(i) => {
            let label = entries
                .label(i)
                .map(|l| entries.label_names()[l as usize].clone())
                .unwrap_or_else(|| "–".into());
            lines.push(Line::from(vec![
                Span::styled(format!("{CURSOR} #{i} "), t.accent()),
                Span::styled(label, t.bold()),
            ]));
            let cluster = app.clusters.and_then(|v| {
                let c = match &m.entry_clusters {
                    Some((_, a)) if a.len() == data.len() => Some(a[i] as usize),
                    _ => v.nearest_cluster(&data.entry_code(i)),
                }?;
                v.report
                    .clusters
                    .get(c)
                    .map(|s| format!("cluster {}: {}", c + 1, s.label))
            });
            if let Some(c) = cluster {
                lines.push(Line::styled(c, t.dim()));
            }
            lines.push(Line::from(entries.texts()[i].clone()));
        }
    }
    widgets::wrapped(buf, inner, lines);

    let block = t.block(Span::styled(" Legend ", t.bold()), false);
    let inner = block.inner(legend);
    block.render(legend, buf);
    let mut lines = vec![Line::from(vec![
        Span::styled(CURRENT, t.cursor()),
        Span::raw(" current sentence"),
    ])];
    if m.current.is_none() {
        lines.push(Line::styled("  (encode one in 1 Explore)", t.dim()));
    } else if m.trail.len() > 1 {
        lines.push(Line::styled(
            format!("  and its trail of {} codes", m.trail.len()),
            t.dim(),
        ));
    }
    if !m.path_line.is_empty() {
        lines.push(Line::styled(
            format!("A─B the Path walk ({} points)", m.path_line.len()),
            if t.color {
                Style::new().fg(Color::LightRed)
            } else {
                t.plain()
            },
        ));
    }
    if !m.query.is_empty() {
        lines.push(Line::styled(
            format!("“{}”: {} matches", m.query, m.matches.len()),
            t.accent(),
        ));
    }
    let room = (inner.height as usize).saturating_sub(lines.len() + 1);
    for &(c, ref name, n) in shades.legend.iter().take(room) {
        let name: String = name
            .chars()
            .take(inner.width.saturating_sub(10) as usize)
            .collect();
        let swatch = if t.color {
            Span::styled("■", Style::new().fg(category_color(c, true)))
        } else {
            Span::raw("·")
        };
        lines.push(Line::from(vec![
            swatch,
            Span::raw(format!(" {name} ")),
            Span::styled(format!("{n}"), t.dim()),
        ]));
    }
    if shades.legend.len() > room {
        lines.push(Line::styled(
            format!("… {} more", shades.legend.len() - room),
            t.dim(),
        ));
    }
    widgets::lines(buf, inner, lines);
}

/// The source line of the map: where the layout came from.
pub fn source(data: &MapData) -> String {
    let how = if data.from_disk {
        "loaded from"
    } else if data.save_error.is_some() {
        "computed, not saved to"
    } else if data.layout.meta.method == Method::Pca {
        return "PCA projection computed now (not saved)".into();
    } else {
        "computed and saved to"
    };
    format!("{how} {}", data.path.display())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_leave_the_markers_cells_alone_and_end_at_the_right_edge() {
        let area = Rect::new(0, 0, 62, 22); // 60 × 20 cells inside the border
        let window = ((0.0, 1.0), (0.0, 1.0));
        let cell = |x: f64, y: f64| ((x * 59.0).floor() as i64, ((1.0 - y) * 19.0).floor() as i64);
        let name = vec![("noun.artifact".to_string(), [0.5f32, 0.5])];
        // A marker inside the name's cells: the name goes to another row.
        let marker = [0.52f32, 0.5];
        let placed = placed_names(&name, window, area, &[marker]);
        assert_eq!(placed.len(), 1);
        let (c, r) = cell(placed[0].1, placed[0].2);
        let (mc, mr) = cell(marker[0] as f64, marker[1] as f64);
        assert!(r != mr || mc < c - 1 || mc > c + 13, "{placed:?}");
        // Markers on the three rows it may take: it is left out.
        let step = 1.0 / 19.0;
        let all = [marker, [0.52, 0.5 + step], [0.52, 0.5 - step]];
        assert!(placed_names(&name, window, area, &all).is_empty());
        // At the right edge it is moved left to end there (it ran off the plot).
        let edge = vec![("noun.artifact".to_string(), [0.99f32, 0.5])];
        let placed = placed_names(&edge, window, area, &[]);
        let (c, _) = cell(placed[0].1, placed[0].2);
        assert!(c + 13 <= 60, "{placed:?}");
    }

    #[test]
    fn category_names_never_overlap_on_the_map() {
        let area = Rect::new(0, 0, 62, 22); // 60 × 20 cells inside the border
        let window = ((0.0, 1.0), (0.0, 1.0));
        let at = |name: &str, x: f32, y: f32| (name.to_string(), [x, y]);
        // Four names at one spot: three rows take three of them, the fourth is left out.
        let crowded = vec![
            at("noun.communication", 0.5, 0.5),
            at("adj.pert", 0.5, 0.5),
            at("noun.cognition", 0.52, 0.5),
            at("verb.motion", 0.5, 0.5),
            at("far away", 0.05, 0.05),
        ];
        let placed = placed_names(&crowded, window, area, &[]);
        let names: Vec<&str> = placed.iter().map(|p| p.0.as_str()).collect();
        assert_eq!(
            names,
            [
                "noun.communication",
                "adj.pert",
                "noun.cognition",
                "far away"
            ],
            "largest first, the fourth at the spot left out"
        );
        // No two placed names share a cell row and overlapping columns.
        let cell = |x: f64, y: f64| ((x * 59.0).floor() as i64, ((1.0 - y) * 19.0).floor() as i64);
        for (i, a) in placed.iter().enumerate() {
            for b in &placed[..i] {
                let ((ca, ra), (cb, rb)) = (cell(a.1, a.2), cell(b.1, b.2));
                let (la, lb) = (a.0.chars().count() as i64, b.0.chars().count() as i64);
                assert!(
                    ra != rb || ca + la < cb || cb + lb < ca,
                    "{:?} overlaps {:?}",
                    a.0,
                    b.0
                );
            }
        }
    }
}
