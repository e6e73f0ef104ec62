//! Tab 4, Stats: the checkpoint measured on the validation split of its corpus, computed in the
//! background with a progress gauge: each bit's mean, how much perplexity grows when each bit is
//! flipped and the bits' correlation matrix as a heat map; per-dimension KL and active units
//! for gaussian models. `m` switches the body to a table of what each bit means
//! ([`crate::meaning`]): its distinctive words on either side and what flipping it does to
//! decodings.

use crossterm::event::{KeyCode, KeyEvent};
use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Gauge, Widget};

use super::context::{Ctx, Tab, View};
use super::jobs::{Job, JobKind, ReplyBody};
use super::keys::{self, nav, Binding, Lookup, Mode, Only};
use super::widgets::{self, grouped_columns, heat_map, text, vertical_bars};
use crate::coder::Capabilities;
use crate::coder::SplitStats;
use crate::model::LatentKind;

/// The bit-flip work of the default request, in sentence-bits: every bit of 150 sentences of a
/// 128-bit code flipped. The sentences flipped scale with the code's width to keep this work
/// ([`flip_sentences`]): a 256-bit code has 75 sentences' bits flipped.
pub const FLIP_WORK: usize = 150 * 128;

/// Fewest sentences whose bits are flipped, and the least flip work `[` goes down to.
const MIN_FLIP_SENTENCES: usize = 5;
const MIN_FLIP_WORK: usize = MIN_FLIP_SENTENCES * 128;
/// Most flip work `]` goes up to (16,000 sentences of a 128-bit code).
const MAX_FLIP_WORK: usize = 16_000 * 128;

/// Sentences whose every bit is flipped when `flip_work` sentence-bits are spent on a code of
/// `latent_dim` bits: `flip_work / latent_dim`, at least 5, at most `max_sentences` (the flips
/// are of the first sentences evaluated).
pub fn flip_sentences(flip_work: usize, latent_dim: usize, max_sentences: usize) -> usize {
    (flip_work / latent_dim.max(1))
        .max(MIN_FLIP_SENTENCES)
        .min(max_sentences.max(1))
}

#[derive(Debug)]
pub struct StatsState {
    pub max_sentences: usize,
    /// Sentence-bits flipped ([`FLIP_WORK`] by default; `[` and `]` halve and double it).
    pub flip_work: usize,
    pub result: Option<SplitStats>,
    pub error: Option<String>,
    pub cursor: usize,
    /// The body shows the bit meanings table instead of the charts.
    pub meanings_view: bool,
}

impl Default for StatsState {
    fn default() -> Self {
        Self {
            max_sentences: 500,
            flip_work: FLIP_WORK,
            result: None,
            error: None,
            cursor: 0,
            meanings_view: false,
        }
    }
}

impl StatsState {
    pub fn hints(&self, kind: Capabilities) -> Vec<(&'static str, &'static str)> {
        keys::hints(KEYS, Mode::Nav, kind)
    }
}

/// What a key can do on this tab.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Left,
    Right,
    First,
    Last,
    Recompute,
    More,
    Fewer,
    Meanings,
    RealWords,
}

/// The tab's keys: dispatch, footer and help all read this table.
pub const KEYS: &[Binding<Action>] = &[
    nav(
        &[
            KeyCode::Left,
            KeyCode::Char('h'),
            KeyCode::Up,
            KeyCode::Char('k'),
        ],
        "← → h l ↑ ↓ k j",
        "select a bit / dimension (details, strongest correlations, its row of the meanings)",
        Some(("←/→", "select")),
        Only::Any,
        Action::Left,
    ),
    nav(
        &[
            KeyCode::Right,
            KeyCode::Char('l'),
            KeyCode::Down,
            KeyCode::Char('j'),
        ],
        "→ l ↓ j",
        "",
        None,
        Only::Any,
        Action::Right,
    ),
    nav(
        &[KeyCode::Home, KeyCode::Char('g')],
        "Home End or g G",
        "first / last bit",
        None,
        Only::Any,
        Action::First,
    ),
    nav(
        &[KeyCode::End, KeyCode::Char('G')],
        "End or G",
        "",
        None,
        Only::Any,
        Action::Last,
    ),
    nav(
        &[KeyCode::Char('r')],
        "r",
        "recompute",
        Some(("r", "recompute")),
        Only::Any,
        Action::Recompute,
    ),
    nav(
        &[KeyCode::Char('[')],
        "[ / ]",
        "halve / double the number of validation sentences used",
        Some(("[/]", "fewer/more sentences")),
        Only::Any,
        Action::Fewer,
    ),
    nav(
        &[KeyCode::Char(']')],
        "]",
        "",
        None,
        Only::Any,
        Action::More,
    ),
    nav(
        &[KeyCode::Char('m')],
        "m",
        "what each bit / dimension means (words on either side, what flipping does) ↔ the charts",
        Some(("m", "meanings")),
        Only::Any,
        Action::Meanings,
    ),
    keys::real_words_quiet(Action::RealWords),
];

impl StatsState {
    pub(super) fn on_enter(&mut self, cx: &mut Ctx) {
        if self.result.is_none() && self.error.is_none() && !cx.jobs.is_pending(JobKind::Stats) {
            self.request(cx);
        }
    }

    /// Sentences whose bits the next request flips, for a code of `latent_dim` bits.
    pub fn flip_sentences(&self, latent_dim: usize) -> usize {
        flip_sentences(self.flip_work, latent_dim, self.max_sentences)
    }

    fn request(&mut self, cx: &mut Ctx) {
        self.error = None;
        cx.jobs.submit(Job::Stats {
            max_sentences: self.max_sentences,
            flip_sentences: self.flip_sentences(cx.model.latent_dim),
        });
    }

    fn on_key(&mut self, cx: &mut Ctx, key: KeyEvent) {
        let action = match keys::lookup(KEYS, Mode::Nav, key.code, cx.model.caps) {
            Lookup::Action(a) => a,
            Lookup::NotForThisModel(why) => return cx.notice(why),
            Lookup::Unbound => return,
        };
        let l = cx.model.latent_dim;
        let c = self.cursor;
        match action {
            Action::Left => self.cursor = c.saturating_sub(1),
            Action::Right => self.cursor = (c + 1).min(l.saturating_sub(1)),
            Action::First => self.cursor = 0,
            Action::Last => self.cursor = l.saturating_sub(1),
            Action::Recompute => self.request(cx),
            Action::Meanings => self.meanings_view = !self.meanings_view,
            Action::RealWords => cx.real_words_elsewhere(),
            Action::More => {
                self.max_sentences = (self.max_sentences * 2).min(64_000);
                self.flip_work = (self.flip_work * 2).min(MAX_FLIP_WORK);
                self.request(cx);
            }
            Action::Fewer => {
                self.max_sentences = (self.max_sentences / 2).max(10);
                self.flip_work = (self.flip_work / 2).max(MIN_FLIP_WORK);
                self.request(cx);
            }
        }
    }

    fn done(&mut self, _cx: &mut Ctx, r: Result<SplitStats, String>) {
        match r {
            Ok(s) => {
                self.result = Some(s);
                self.error = None;
            }
            Err(e) => self.error = Some(e),
        }
    }
}

impl Tab for StatsState {
    fn help_rows() -> Vec<(String, String)> {
        keys::help_rows(KEYS)
    }

    fn key(&mut self, cx: &mut Ctx, key: KeyEvent) {
        self.on_key(cx, key)
    }

    fn reply(&mut self, cx: &mut Ctx, body: ReplyBody) -> Option<ReplyBody> {
        match body {
            ReplyBody::Stats(r) => self.done(cx, r),
            other => return Some(other),
        }
        None
    }

    fn model_changed(&mut self, cx: &mut Ctx, shown: bool) {
        self.result = None;
        self.error = None;
        self.cursor = 0;
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
        StatsState::hints(self, view.model.caps)
    }
}

const LABEL: u16 = 6;

pub fn render(tab: &StatsState, app: &View, area: Rect, buf: &mut Buffer) {
    let t = app.theme;
    let st = tab;
    let computing = app.jobs.is_pending(JobKind::Stats);
    let sizes = if app.model.binary() && app.model.caps.scores {
        format!(
            "· {} sentences, every bit flipped in {} ",
            st.max_sentences,
            st.flip_sentences(app.model.latent_dim)
        )
    } else {
        format!("· {} sentences ", st.max_sentences)
    };
    let block = t.block(
        Line::from(vec![
            Span::styled(" Validation statistics ", t.bold()),
            Span::styled(sizes, t.dim()),
        ]),
        false,
    );
    let mut lines = Vec::new();
    if let Some(e) = &st.error {
        lines.push(Line::from(Span::styled(e.clone(), t.error())));
    }
    if let Some(r) = &st.result {
        let rep = &r.report;
        lines.push(Line::from(vec![
            Span::styled(format!("{} / {}", r.corpus, r.split), t.accent()),
            Span::raw(format!(
                " · {} sentences, {} target tokens",
                rep.sentences, rep.tokens
            )),
        ]));
        let mut ppl = vec![Span::styled("perplexity ", t.dim())];
        for (mode, p) in &rep.ppl {
            // An lm's one figure has no code mode ("none" was shown as if it were one).
            let Some(mode) = mode_label(rep.kind, mode) else {
                continue;
            };
            ppl.push(Span::raw(format!("{mode} {p:.2}   ")));
        }
        if !app.model.caps.scores && app.model.caps.encodes {
            ppl = vec![Span::styled(
                format!(
                    "an `{}` model has no decoder, so there is no perplexity or KL; its codes' statistics are below",
                    app.model.caps.name
                ),
                t.dim(),
            )];
        } else if let Some(kl) = rep.kl_per_sentence.nats() {
            ppl.push(Span::styled(format!("KL {kl:.2} nats/sentence"), t.dim()));
        } else if rep.kind.has_latent() {
            ppl.push(Span::styled(
                format!("no KL term (a {} code)", rep.kind),
                t.dim(),
            ));
        }
        lines.push(Line::from(ppl));
    } else if !computing && st.error.is_none() {
        lines.push(Line::from(Span::styled(
            "r computes the statistics",
            t.dim(),
        )));
    }
    // As tall as its lines and the gauge while computing (rows are precious in a short terminal).
    let head_rows = (lines.len() as u16 + u16::from(computing) + 2).clamp(3, 5);
    let [head, body] =
        Layout::vertical([Constraint::Length(head_rows), Constraint::Min(0)]).areas(area);
    let inner = block.inner(head);
    block.render(head, buf);
    widgets::lines(buf, inner, lines);
    if computing && inner.height >= 1 {
        let f = app
            .jobs
            .progress(JobKind::Stats)
            .unwrap_or(0.0)
            .clamp(0.0, 1.0);
        // Queued behind another corpus job (one runs at a time): say which, not a silent 0 %.
        let label = match app.jobs.waiting_note(JobKind::Stats) {
            Some(note) => note,
            None => format!("computing {:.0}%", f * 100.0),
        };
        let g = Gauge::default()
            .ratio(f)
            .label(label)
            .gauge_style(t.accent())
            .use_unicode(true);
        g.render(
            Rect {
                y: inner.bottom() - 1,
                height: 1,
                ..inner
            },
            buf,
        );
    }
    if st.meanings_view {
        return render_meanings(tab, app, body, buf);
    }
    let Some(r) = &st.result else {
        return;
    };
    // A factors corpus (`latent-tui corpus factors`): the bit ↔ factor table above the rest.
    let body = match &r.report.factors {
        Some(f) if body.height > 12 => {
            let [table, rest] = Layout::vertical([
                Constraint::Length(f.table.factors.len() as u16 + 3),
                Constraint::Min(0),
            ])
            .areas(body);
            render_factors(tab, app, f, table, buf);
            rest
        }
        _ => body,
    };
    if let Some(b) = &r.report.bits {
        render_bits(tab, app, b, body, buf);
    } else if let Some(g) = &r.report.gaussian {
        render_gaussian(tab, app, g, body, buf);
    }
}

/// The bit ↔ factor table: per factor its MIG, the bit it most determines and every bit it
/// mostly determines (I(bit; factor) / H(bit) ≥ ½), and the selected bit's share for it.
fn render_factors(
    tab: &StatsState,
    app: &View,
    f: &crate::factors::FactorReport,
    area: Rect,
    buf: &mut Buffer,
) {
    let t = app.theme;
    let cursor = tab.cursor;
    let tab = &f.table;
    let cursor = cursor.min(tab.bit_entropy.len().saturating_sub(1));
    let block = t.block(
        Line::from(vec![
            Span::styled(" Bits ↔ factors ", t.bold()),
            Span::styled(
                format!(
                    "· MIG mean {:.3} · {:.0}% of decoding-changing flips change one factor ({} sentences) ",
                    tab.mig_mean,
                    f.one_factor_share * 100.0,
                    f.flip_sentences
                ),
                t.dim(),
            ),
        ]),
        false,
    );
    let inner = block.inner(area);
    block.render(area, buf);
    let mut lines = vec![Line::from(Span::styled(
        format!(
            " {:<10} {:>5}  {:>13}  {:<28} bit {cursor}: I/H",
            "factor", "MIG", "best bit, I/H", "bits mostly about it (≥ ½)"
        ),
        t.dim(),
    ))];
    for (i, name) in tab.factors.iter().enumerate() {
        let mostly: Vec<String> = (0..tab.determined.len())
            .filter(|&b| tab.determined[b][i] >= 0.5)
            .map(|b| b.to_string())
            .collect();
        let here = tab.determined.get(cursor).map_or(0.0, |d| d[i]);
        lines.push(Line::from(vec![
            Span::styled(format!(" {name:<10}"), t.accent()),
            Span::raw(format!(
                " {:>5.3}  {:>5} {:>7.2}  {:<28} ",
                tab.mig[i],
                tab.best_bit[i],
                tab.best_determined[i],
                if mostly.is_empty() {
                    "—".to_string()
                } else {
                    mostly.join(" ")
                }
            )),
            Span::styled(
                format!("{here:.2}"),
                if here >= 0.5 { t.bold() } else { t.dim() },
            ),
        ]));
    }
    widgets::lines(buf, inner, lines);
}

fn render_bits(
    tab: &StatsState,
    app: &View,
    b: &crate::eval::BitReport,
    area: Rect,
    buf: &mut Buffer,
) {
    let t = app.theme;
    let l = b.means.len();
    if l == 0 {
        return;
    }
    let cursor = tab.cursor.min(l - 1);
    // Wide enough for the titles even when there are few bits.
    let bars_w = (LABEL + (l + (l - 1) / 8) as u16 + 2).max(62.min(area.width / 2));
    let side_by_side = area.width >= bars_w + 24;
    // Side by side: bars and the cursor's details on the left, the heat map on the right.
    // Stacked: bars on top, details and heat map side by side below.
    let (means_a, growth_a, info_a, right) = if side_by_side {
        let [left, right] =
            Layout::horizontal([Constraint::Length(bars_w), Constraint::Min(0)]).areas(area);
        // The two lines of details below the bars keep their rows in a short terminal.
        let spare = left.height.saturating_sub(2);
        let means_rows = (spare / 2).clamp(4, 7);
        let growth_rows = spare.saturating_sub(means_rows).clamp(4, 8);
        let [m, g, i] = Layout::vertical([
            Constraint::Length(means_rows),
            Constraint::Length(growth_rows),
            Constraint::Min(2),
        ])
        .areas(left);
        (m, g, i, right)
    } else {
        // In a short terminal the bars give up rows (down to two of bars each) before the
        // details and the correlation heat map below them do (at least 6 rows).
        let spare = area.height.saturating_sub(6);
        let means_rows = (spare / 2).clamp(4, 6);
        let growth_rows = spare.saturating_sub(means_rows).clamp(4, 7);
        let [m, g, rest] = Layout::vertical([
            Constraint::Length(means_rows),
            Constraint::Length(growth_rows),
            Constraint::Min(0),
        ])
        .areas(area);
        let [i, right] =
            Layout::horizontal([Constraint::Length(34), Constraint::Min(0)]).areas(rest);
        (m, g, i, right)
    };

    let bars = |area: Rect,
                title: String,
                values: &[f64],
                lo: f64,
                hi: f64,
                reference: Option<f64>,
                labels: (String, String),
                buf: &mut Buffer| {
        let inner = t.block(Line::default(), false).inner(area);
        let cols = Rect {
            x: inner.x + LABEL,
            width: inner.width.saturating_sub(LABEL),
            ..inner
        };
        let (first, xs) = grouped_columns(l, cursor, cols.width);
        // A code wider than the chart shows a window around the cursor: say which bits.
        let title = match xs.len() {
            n if n > 0 && n < l => format!("{title}· bits {first}–{} of {l} ", first + n - 1),
            _ => title,
        };
        t.block(Line::from(Span::styled(title, t.bold())), false)
            .render(area, buf);
        text(buf, inner, inner.x, inner.y, &labels.1, t.dim());
        text(
            buf,
            inner,
            inner.x,
            inner.bottom().saturating_sub(1),
            &labels.0,
            t.dim(),
        );
        vertical_bars(
            buf,
            cols,
            &xs,
            &values[first..first + xs.len()],
            lo,
            hi,
            reference,
            cursor.checked_sub(first),
            t,
        );
    };
    bars(
        means_a,
        " Bit means (rounded code) ┄ ½ ".into(),
        &b.means,
        0.0,
        1.0,
        Some(0.5),
        ("0".into(), "1".into()),
        buf,
    );
    if b.flip_ppl.len() != l {
        let block = t.block(
            Line::from(Span::styled(
                " Perplexity growth when a bit is flipped ",
                t.bold(),
            )),
            false,
        );
        let inner = block.inner(growth_a);
        block.render(growth_a, buf);
        widgets::wrapped(
            buf,
            inner,
            vec![Line::from(Span::styled(
                format!(
                    "an `{}` model has no decoder, so flipped bits have no perplexity",
                    app.model.caps.name
                ),
                t.dim(),
            ))],
        );
    } else {
        // Scaled to the largest growth among the bits on screen: one bit far above the rest
        // (bit 101 of the shipped model, +124 %) flattened every other page to `▁`.
        let cols = t.block(Line::default(), false).inner(growth_a).width;
        let (first, xs) = grouped_columns(l, cursor, cols.saturating_sub(LABEL));
        let gmax = b.flip_growth[first..first + xs.len()]
            .iter()
            .copied()
            .fold(0.0f64, f64::max)
            .max(1e-6);
        let growth_pct: Vec<f64> = b.flip_growth.iter().map(|g| g.max(0.0) * 100.0).collect();
        bars(
            growth_a,
            format!(
                " Perplexity growth when a bit is flipped ({} sentences, base {:.2}) ",
                b.flip_sentences, b.base_ppl
            ),
            &growth_pct,
            0.0,
            gmax * 100.0,
            None,
            ("0%".into(), format!("{:.0}%", gmax * 100.0)),
            buf,
        );
    }

    // The cursor's bit in words, with its strongest correlations.
    let mut partners: Vec<(usize, f64)> = (0..l)
        .filter(|&j| j != cursor)
        .map(|j| (j, b.correlation[cursor][j]))
        .collect();
    partners.sort_by(|x, y| y.1.abs().total_cmp(&x.1.abs()));
    let corr: Vec<String> = partners
        .iter()
        .take(3)
        .map(|(j, r)| format!("bit {j} {r:+.2}"))
        .collect();
    let info = vec![
        Line::from(vec![
            Span::styled(format!(" bit {cursor}"), t.accent()),
            Span::raw(format!(
                "  mean {:.3} (p {:.3})",
                b.means[cursor], b.prob_means[cursor],
            )),
        ]),
        Line::from(match (b.flip_ppl.get(cursor), b.flip_growth.get(cursor)) {
            (Some(p), Some(g)) => format!(" flipped: ppl {p:.2} ({:+.1}%)", g * 100.0),
            _ => " flipped: (no decoder)".to_string(),
        }),
        Line::from(Span::styled(" most correlated:", t.dim())),
    ];
    let info: Vec<Line> = info
        .into_iter()
        .chain(corr.into_iter().map(|c| Line::from(format!("   {c}"))))
        .collect();
    widgets::lines(buf, info_a, info);

    let block = t.block(
        Line::from(Span::styled(" Correlation of the bits ", t.bold())),
        false,
    );
    let inner = block.inner(right);
    block.render(right, buf);
    if inner.height < 2 || inner.width < 4 {
        return;
    }
    let map_area = Rect {
        height: inner.height - 1,
        ..inner
    };
    let scale = heat_map(buf, map_area, &b.correlation, t);
    let k = scale.block;
    // The colours (shades) reach full strength at the largest |r| shown, which says it.
    let legend = if t.color {
        format!("red +  blue −  brightest |r| {:.2}", scale.max)
    } else {
        format!("|r| ░▒▓█ up to {:.2}", scale.max)
    };
    let note = if k > 1 {
        format!("{legend} · cell = {k}×{k} bits, strongest")
    } else {
        legend
    };
    text(buf, inner, inner.x, inner.bottom() - 1, &note, t.dim());
}

/// How the perplexity line names a code mode for `kind`: bits read as their mean p, rounded
/// or sampled; a continuous code as μ (a bottleneck's code) or a sample, its "rounded" code
/// being μ again (None: not shown); an lm has one figure and no code.
fn mode_label(kind: LatentKind, mode: &str) -> Option<&str> {
    if !kind.has_latent() {
        return Some("(no latent)");
    }
    if kind.is_binary() {
        return Some(mode);
    }
    let deterministic = kind == LatentKind::Bottleneck;
    match mode {
        "mean" if deterministic => Some("code"),
        "mean" => Some("μ"),
        "rounded" => None,
        "sample" if deterministic => None,
        "sample" => Some("sampled z"),
        other => Some(other),
    }
}

fn render_gaussian(
    tab: &StatsState,
    app: &View,
    g: &crate::eval::GaussianReport,
    area: Rect,
    buf: &mut Buffer,
) {
    let t = app.theme;
    let l = g.kl_per_dim.len();
    if l == 0 {
        return;
    }
    let cursor = tab.cursor.min(l - 1);
    let [kl_a, var_a, info_a] = Layout::vertical([
        Constraint::Fill(1),
        Constraint::Fill(1),
        Constraint::Length(2),
    ])
    .areas(area);
    let draw =
        |area: Rect, title: String, values: &[f64], reference: Option<f64>, buf: &mut Buffer| {
            let hi = values.iter().copied().fold(0.0f64, f64::max).max(1e-6);
            let block = t.block(Line::from(Span::styled(title, t.bold())), false);
            let inner = block.inner(area);
            block.render(area, buf);
            let cols = Rect {
                x: inner.x + LABEL,
                width: inner.width.saturating_sub(LABEL),
                ..inner
            };
            let (first, xs) = grouped_columns(l, cursor, cols.width);
            text(buf, inner, inner.x, inner.y, &format!("{hi:.2}"), t.dim());
            text(
                buf,
                inner,
                inner.x,
                inner.bottom().saturating_sub(1),
                "0",
                t.dim(),
            );
            vertical_bars(
                buf,
                cols,
                &xs,
                &values[first..first + xs.len()],
                0.0,
                hi,
                reference,
                cursor.checked_sub(first),
                t,
            );
        };
    draw(
        kl_a,
        " KL per dimension (nats) ".into(),
        &g.kl_per_dim,
        None,
        buf,
    );
    draw(
        var_a,
        format!(
            " Variance of μ over the split ┄ active threshold {} ",
            g.active_threshold
        ),
        &g.mean_variance,
        Some(g.active_threshold),
        buf,
    );
    widgets::lines(
        buf,
        info_a,
        vec![
            Line::from(vec![
                Span::styled(" active units ", t.dim()),
                Span::styled(format!("{} of {l}", g.active_units), t.accent()),
            ]),
            Line::from(vec![
                Span::styled(format!(" dim {cursor}"), t.accent()),
                Span::raw(format!(
                    "  KL {:.3}  Var[μ] {:.4}  {}",
                    g.kl_per_dim[cursor],
                    g.mean_variance[cursor],
                    if g.mean_variance[cursor] > g.active_threshold {
                        "active"
                    } else {
                        "inactive"
                    }
                )),
            ]),
        ],
    );
}

/// Cuts `s` to `w` characters, marking the cut with `…`.
fn fit(s: &str, w: usize) -> String {
    if s.chars().count() <= w {
        return s.to_string();
    }
    let mut out: String = s.chars().take(w.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// The table of what each bit (dimension) means, the cursor's row highlighted.
fn render_meanings(tab: &StatsState, app: &View, area: Rect, buf: &mut Buffer) {
    let t = app.theme;
    let state = &app.shared.meaning;
    let Some(m) = state.meanings() else {
        let block = t.block(
            Line::from(Span::styled(" What each bit means ", t.bold())),
            false,
        );
        let inner = block.inner(area);
        block.render(area, buf);
        let msg = if let Some(e) = &state.error {
            Span::styled(e.clone(), t.error())
        } else if let Some(f) = app
            .jobs
            .is_pending(JobKind::Meaning)
            .then(|| app.jobs.progress(JobKind::Meaning).unwrap_or(0.0))
        {
            Span::styled(
                format!("reading the bits off the corpus… {:.0}%", f * 100.0),
                t.dim(),
            )
        } else {
            Span::styled("an `lm` model has no code, so nothing to read", t.dim())
        };
        widgets::wrapped(buf, inner, vec![Line::from(msg)]);
        return;
    };
    let (on, off) = m.side_names();
    let unit = m.unit();
    let mut title = vec![Span::styled(
        format!(
            " What each {} means ",
            if m.binary { "bit" } else { "dimension" }
        ),
        t.bold(),
    )];
    title.push(Span::styled(
        format!(
            "· words of {} {} entries with it {on} vs {off}{} ",
            m.entries,
            m.entries_split,
            match &m.decoding {
                Some(_) => format!(
                    "; flips of {} {} sentences' greedy decodings",
                    m.sentences, m.sentences_split
                ),
                None => String::new(),
            }
        ),
        t.dim(),
    ));
    let block = t.block(Line::from(title), false);
    let inner = block.inner(area);
    block.render(area, buf);
    if inner.height < 2 || m.dims.is_empty() {
        return;
    }
    let words = |w: &[crate::cluster::DistinctiveWord]| {
        w.iter()
            .take(4)
            .map(|w| w.word.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    };
    // A flip's words are listed only when they changed in several decodings (the options'
    // `min_flips`): "—" says none did.
    let counts = |w: &[crate::meaning::WordCount]| {
        if w.is_empty() {
            return "—".to_string();
        }
        w.iter()
            .take(4)
            .map(|w| w.word.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    };
    let min = m.meta.options.min_flips.max(1);
    let fixed = 5 + 8;
    let rest = (inner.width as usize).saturating_sub(fixed);
    let col = (rest / 4).max(4);
    let flips = if m.binary { "flip" } else { "±2σ" };
    let header = format!(
        "{:<5}{:<8}{:<col$}{:<col$}{:<col$}{:<col$}",
        unit,
        "changes",
        fit(&format!("{on}: words"), col - 1),
        fit(&format!("{off}: words"), col - 1),
        fit(&format!("{flips} adds (in {min}+)"), col - 1),
        fit(&format!("{flips} removes (in {min}+)"), col - 1),
    );
    text(buf, inner, inner.x, inner.y, &header, t.accent());
    let rows = (inner.height - 1) as usize;
    let cursor = tab.cursor.min(m.dims.len() - 1);
    let first = cursor
        .saturating_sub(rows.saturating_sub(1) / 2)
        .min(m.dims.len().saturating_sub(rows));
    for (k, d) in m.dims.iter().skip(first).take(rows).enumerate() {
        let changed = d
            .flips
            .as_ref()
            .map_or("—".to_string(), |f| format!("{:.0}%", f.changed * 100.0));
        let (adds, removes) = d
            .flips
            .as_ref()
            .map_or((String::new(), String::new()), |f| {
                (counts(&f.added), counts(&f.removed))
            });
        let row = format!(
            "{:<5}{:<8}{:<col$}{:<col$}{:<col$}{:<col$}",
            d.dim,
            changed,
            fit(&words(&d.on_words), col - 1),
            fit(&words(&d.off_words), col - 1),
            fit(&adds, col - 1),
            fit(&removes, col - 1),
        );
        let style = if d.dim == cursor {
            t.cursor()
        } else {
            t.plain()
        };
        text(buf, inner, inner.x, inner.y + 1 + k as u16, &row, style);
    }
}
