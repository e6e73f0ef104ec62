//! The Clusters tab's Map view: every corpus code projected on its first two principal
//! components, drawn as a density plot coloured by cluster with the clusters' labels at their
//! centres, the current code of Explore and its nearest corpus entries marked; keys zoom and pan.
//!
//! The projection of all entries is computed once on the background worker ([`ClusterMap`]).
//! Drawing bins the visible points into the canvas's Braille dots and keeps, per dot, the
//! cluster with a majority there (Boyer–Moore vote), so the canvas draws at most one point per
//! dot whatever the corpus size; the grid is cached until the clustering, zoom, pan or terminal
//! size changes, so only those frames pay the pass over the points.

use std::sync::Arc;

use rand::rngs::StdRng;
use rand::seq::index::sample;
use rand::SeedableRng;
use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Color;
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::canvas::{Canvas, Points};
use ratatui::widgets::Widget;

use super::app::App;
use super::clusters::ClusterView;
use super::neighbors::{label_color, CURRENT};
use super::widgets;
use crate::projection::Pca;
use crate::structure::CodedCorpus;

/// PCA is fitted on at most this many codes (a seeded sample); every entry is then projected.
const FIT_POINTS: usize = 5000;
/// Corpus entries nearest the current code that are marked.
pub const NEAREST: usize = 10;
/// Cluster labels printed on the map, largest clusters first.
const LABELS_SHOWN: usize = 12;
/// The marker of a nearest entry.
pub const NEAR: &str = "○";

/// All entries' map positions and the clusters' centres.
#[derive(Debug)]
pub struct ClusterMap {
    pub pca: Pca,
    pub points: Vec<[f32; 2]>,
    /// Each cluster's centre on the map: the mean of its members' positions.
    pub centers: Vec<[f32; 2]>,
    pub bounds: ([f32; 2], [f32; 2]),
}

impl ClusterMap {
    pub fn build(data: &CodedCorpus, assignment: &[usize], k: usize) -> Result<Self, String> {
        let n = data.codes.len();
        let fit: Vec<Vec<f32>> = if n > FIT_POINTS {
            let mut idx = sample(&mut StdRng::seed_from_u64(0), n, FIT_POINTS).into_vec();
            idx.sort_unstable();
            idx.into_iter().map(|i| data.codes[i].clone()).collect()
        } else {
            data.codes.clone()
        };
        let pca = Pca::fit(&fit, 2)?;
        let points: Vec<[f32; 2]> = data.codes.iter().map(|c| xy(&pca, c)).collect();
        let mut sums = vec![[0f64; 2]; k];
        let mut counts = vec![0usize; k];
        let mut lo = [f32::INFINITY; 2];
        let mut hi = [f32::NEG_INFINITY; 2];
        for (p, &c) in points.iter().zip(assignment) {
            for a in 0..2 {
                sums[c][a] += p[a] as f64;
                lo[a] = lo[a].min(p[a]);
                hi[a] = hi[a].max(p[a]);
            }
            counts[c] += 1;
        }
        let centers = sums
            .iter()
            .zip(&counts)
            .map(|(s, &n)| {
                let n = n.max(1) as f64;
                [(s[0] / n) as f32, (s[1] / n) as f32]
            })
            .collect();
        Ok(Self {
            pca,
            points,
            centers,
            bounds: (lo, hi),
        })
    }

    pub fn place(&self, code: &[f32]) -> [f32; 2] {
        xy(&self.pca, code)
    }
}

fn xy(pca: &Pca, code: &[f32]) -> [f32; 2] {
    let p = pca.project(code);
    [
        p.first().copied().unwrap_or(0.0),
        p.get(1).copied().unwrap_or(0.0),
    ]
}

/// Zoom and pan of the map: `zoom` 1 shows everything; the centre is in map coordinates
/// relative to the middle of the full view, in units of the full view's width and height.
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
        self.zoom = (self.zoom * factor).clamp(1.0, 256.0);
    }

    /// The x and y ranges shown, given the full view's.
    fn window(&self, x: (f64, f64), y: (f64, f64)) -> ((f64, f64), (f64, f64)) {
        let span = |(a, b): (f64, f64), shift: f64| {
            let w = (b - a) / self.zoom;
            let mid = (a + b) / 2.0 + shift * (b - a);
            (mid - w / 2.0, mid + w / 2.0)
        };
        (span(x, self.dx), span(y, self.dy))
    }
}

/// What a density grid was computed for: the clustering (by address), the map window and the
/// grid size.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DensityKey {
    view: usize,
    window: [f64; 4],
    cols: usize,
    rows: usize,
}

/// Per cluster, the Braille dots where it has the majority; and how many entries are in view.
#[derive(Debug)]
pub struct Density {
    key: DensityKey,
    by_cluster: Vec<Vec<(f64, f64)>>,
    visible: usize,
}

fn density(map: &ClusterMap, assignment: &[usize], k: usize, key: DensityKey) -> Density {
    let [x0, x1, y0, y1] = key.window;
    let (cols, rows) = (key.cols, key.rows);
    let (sx, sy) = (cols as f64 / (x1 - x0), rows as f64 / (y1 - y0));
    // A Boyer–Moore majority vote per dot: (candidate cluster, its margin).
    let mut votes: Vec<(u32, u32)> = vec![(u32::MAX, 0); cols * rows];
    let mut visible = 0usize;
    for (p, &c) in map.points.iter().zip(assignment) {
        let fx = (p[0] as f64 - x0) * sx;
        let fy = (p[1] as f64 - y0) * sy;
        if !(0.0..=cols as f64).contains(&fx) || !(0.0..=rows as f64).contains(&fy) {
            continue;
        }
        visible += 1;
        let cell = &mut votes[(fy as usize).min(rows - 1) * cols + (fx as usize).min(cols - 1)];
        if cell.1 == 0 {
            *cell = (c as u32, 1);
        } else if cell.0 == c as u32 {
            cell.1 += 1;
        } else {
            cell.1 -= 1;
        }
    }
    let mut by_cluster: Vec<Vec<(f64, f64)>> = vec![Vec::new(); k];
    for (i, &(c, _)) in votes.iter().enumerate() {
        if c != u32::MAX {
            let (cx, cy) = (i % cols, i / cols);
            by_cluster[c as usize].push((x0 + (cx as f64 + 0.5) / sx, y0 + (cy as f64 + 0.5) / sy));
        }
    }
    Density {
        key,
        by_cluster,
        visible,
    }
}

/// The corpus entries nearest the current code (Hamming for bits, Euclidean otherwise).
pub fn nearest_entries(view: &ClusterView, code: &[f32], k: usize) -> Vec<usize> {
    let data = &view.data;
    if code.is_empty() || data.codes.first().is_none_or(|c| c.len() != code.len()) {
        return Vec::new();
    }
    if let Some(packed) = &view.packed {
        return packed
            .top_k(&crate::hamming::pack(code), k)
            .into_iter()
            .map(|h| h.index)
            .collect();
    }
    let mut scored: Vec<(f32, usize)> = data
        .codes
        .iter()
        .enumerate()
        .map(|(i, c)| (c.iter().zip(code).map(|(a, b)| (a - b).powi(2)).sum(), i))
        .collect();
    let k = k.min(scored.len());
    if k == 0 {
        return Vec::new();
    }
    scored.select_nth_unstable_by(k - 1, |a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    scored.truncate(k);
    scored.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    scored.into_iter().map(|(_, i)| i).collect()
}

pub fn render(app: &App, view: &ClusterView, area: Rect, buf: &mut Buffer) {
    let t = app.theme;
    let map = match &view.map {
        Ok(m) => m,
        Err(e) => {
            widgets::message_panel(
                buf,
                area,
                t,
                " Map ",
                vec![Line::styled(format!("No map: {e}"), t.error())],
            );
            return;
        }
    };
    let [plot, legend] =
        Layout::horizontal([Constraint::Min(20), Constraint::Length(34)]).areas(area);
    let report = &view.report;
    let vp = app.clusters.viewport;
    let (lo, hi) = map.bounds;
    let pad = |a: f32, b: f32| {
        let w = ((b - a) as f64).max(1e-3);
        (a as f64 - 0.05 * w, b as f64 + 0.05 * w)
    };
    let ((x0, x1), (y0, y1)) = vp.window(pad(lo[0], hi[0]), pad(lo[1], hi[1]));

    // Density: one vote per Braille dot of the plot's inside, cached until the view changes.
    let cols = (plot.width.saturating_sub(2) as usize * 2).max(1);
    let rows = (plot.height.saturating_sub(2) as usize * 4).max(1);
    let key = DensityKey {
        view: Arc::as_ptr(app.clusters.result.as_ref().expect("shown")) as usize,
        window: [x0, x1, y0, y1],
        cols,
        rows,
    };
    let mut cache = app
        .clusters
        .density
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if cache.as_ref().is_none_or(|c| c.key != key) {
        *cache = Some(density(map, &report.assignment, report.clusters.len(), key));
    }
    let Density {
        by_cluster,
        visible,
        ..
    } = cache.as_ref().expect("just filled");
    let visible = *visible;
    let current = (!app.explore.code.is_empty()
        && view.data.codes.first().map(Vec::len) == Some(app.explore.code.len()))
    .then(|| map.place(&app.explore.code));
    let nearest = nearest_entries(view, &app.explore.code, NEAREST);
    let color = t.color;
    let mark = t.cursor();
    let near_style = t.accent();
    let block = t.block(
        Line::from(vec![
            Span::styled(" Map ", t.bold()),
            Span::styled(
                format!(
                    "· PCA of {} codes · {} shown · zoom {}× ",
                    map.points.len(),
                    visible,
                    vp.zoom
                ),
                t.dim(),
            ),
        ]),
        true,
    );
    let mut labelled: Vec<usize> = (0..report.clusters.len()).collect();
    labelled.sort_by_key(|&c| std::cmp::Reverse(report.clusters[c].size));
    labelled.truncate(LABELS_SHOWN);
    Canvas::default()
        .block(block)
        .x_bounds([x0, x1])
        .y_bounds([y0, y1])
        .marker(Marker::Braille)
        .paint(|ctx| {
            for (c, pts) in by_cluster.iter().enumerate() {
                if pts.is_empty() {
                    continue;
                }
                ctx.draw(&Points {
                    coords: pts,
                    color: if color {
                        label_color(Some(c as u32))
                    } else {
                        Color::Reset
                    },
                });
            }
            ctx.layer();
            for &c in &labelled {
                let [x, y] = map.centers[c];
                let name = report.clusters[c]
                    .label
                    .split(" · ")
                    .next()
                    .unwrap_or("")
                    .to_string();
                ctx.print(
                    x as f64,
                    y as f64,
                    Span::styled(format!("{} {name}", c + 1), t.bold()),
                );
            }
            for &i in &nearest {
                let [x, y] = map.points[i];
                ctx.print(x as f64, y as f64, Span::styled(NEAR, near_style));
            }
            if let Some([x, y]) = current {
                ctx.print(x as f64, y as f64, Span::styled(CURRENT, mark));
            }
        })
        .render(plot, buf);

    let block = t.block(Span::styled(" Clusters ", t.bold()), false);
    let inner = block.inner(legend);
    block.render(legend, buf);
    let mut lines = vec![
        Line::from(vec![
            Span::styled(CURRENT, mark),
            Span::raw(" current code"),
        ]),
        Line::from(vec![
            Span::styled(NEAR, near_style),
            Span::raw(format!(
                " its {} nearest entries",
                nearest.len().max(NEAREST)
            )),
        ]),
    ];
    if current.is_none() {
        lines.push(Line::styled("  (encode one in 1 Explore)", t.dim()));
    }
    lines.push(Line::from(""));
    let room = (inner.height as usize).saturating_sub(lines.len());
    let here = view.nearest_cluster(&app.explore.code);
    for s in report.clusters.iter().take(room) {
        let name: String = s
            .label
            .chars()
            .take(inner.width.saturating_sub(12) as usize)
            .collect();
        let swatch = if color {
            Span::styled(
                "■",
                ratatui::style::Style::new().fg(label_color(Some(s.cluster as u32))),
            )
        } else {
            Span::raw(" ")
        };
        let text = format!(" {:>2} {name} ", s.cluster + 1);
        lines.push(Line::from(vec![
            swatch,
            if Some(s.cluster) == here {
                Span::styled(text, t.accent())
            } else {
                Span::raw(text)
            },
            Span::styled(format!("{}", s.size), t.dim()),
        ]));
    }
    widgets::lines(buf, inner, lines);
}
