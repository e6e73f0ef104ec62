//! Tab 3, Sample: codes drawn from the prior and their decodings. The seed is on screen and the
//! draw is the same as `latent-tui sample CKPT -n N --seed S --prior P`, so any screen can be
//! reproduced from the command line.

use crossterm::event::{KeyCode, KeyEvent};
use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Widget, Wrap};

use super::context::{Ctx, Tab, View};
use super::jobs::{Job, JobKind, ReplyBody};
use super::keys::{self, nav, Binding, Lookup, Mode, Only};
use super::widgets::{self, text, BitsFit, ListWindow};
use crate::coder::Capabilities;
use crate::coder::{PriorChoice, Samples};
use crate::explore;

#[derive(Debug)]
pub struct SampleState {
    pub seed: u64,
    pub prior: PriorChoice,
    pub temperature: f32,
    pub count: usize,
    pub samples: Option<Samples>,
    /// The sample selected (`e` opens its decoding in Explore).
    pub selected: usize,
    pub error: Option<String>,
    /// Whether the latest request asked for real words (None before the first): entering the
    /// tab after `w` was pressed elsewhere draws the same samples again, decoded the new way.
    requested_real_words: Option<bool>,
}

impl Default for SampleState {
    fn default() -> Self {
        Self {
            seed: 0,
            prior: PriorChoice::Uniform,
            temperature: 1.0,
            count: 10,
            samples: None,
            selected: 0,
            error: None,
            requested_real_words: None,
        }
    }
}

impl SampleState {
    pub fn hints(&self, kind: Capabilities) -> Vec<(&'static str, &'static str)> {
        keys::hints(KEYS, Mode::Nav, kind)
    }
}

/// What a key can do on this tab.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    NextSeed,
    PreviousSeed,
    Again,
    Prior,
    Hotter,
    Colder,
    More,
    Fewer,
    RealWords,
    Down,
    Up,
    PageDown,
    PageUp,
    Top,
    Explore,
}

const SELECT: [Binding<Action>; 5] = keys::list_keys(
    "select a sample (e opens it in 1 Explore)",
    ("↑/↓", "select"),
    Only::Encodes,
    [
        Action::Down,
        Action::Up,
        Action::PageDown,
        Action::PageUp,
        Action::Top,
    ],
);

/// The tab's keys: dispatch, footer and help all read this table. Binary codes are drawn bit
/// by bit from a chosen prior (no temperature); gaussian codes and `lm` words are drawn with a
/// temperature (no choice of prior).
pub const KEYS: &[Binding<Action>] = &[
    nav(
        &[KeyCode::Char('s'), KeyCode::Char('n')],
        "s / S",
        "resample with the next / previous seed",
        Some(("s", "resample")),
        Only::Any,
        Action::NextSeed,
    ),
    nav(
        &[KeyCode::Char('S'), KeyCode::Char('N')],
        "S",
        "",
        Some(("S", "previous seed")),
        Only::Any,
        Action::PreviousSeed,
    ),
    nav(
        &[KeyCode::Enter],
        "Enter",
        "draw again with the same seed",
        None,
        Only::Any,
        Action::Again,
    ),
    nav(
        &[KeyCode::Char('p')],
        "p",
        "prior: uniform bits ↔ each bit drawn with its corpus mean",
        Some(("p", "prior")),
        Only::Binary,
        Action::Prior,
    ),
    nav(
        &[KeyCode::Char('+'), KeyCode::Char('=')],
        "+ / -",
        "temperature of N(0, t²I) or of word sampling",
        Some(("+/-", "temperature")),
        Only::NotBinary,
        Action::Hotter,
    ),
    nav(
        &[KeyCode::Char('-'), KeyCode::Char('_')],
        "-",
        "",
        None,
        Only::NotBinary,
        Action::Colder,
    ),
    nav(
        &[KeyCode::Char('[')],
        "[ / ]",
        "fewer / more samples",
        Some(("[/]", "fewer/more")),
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
    keys::real_words(Action::RealWords),
    SELECT[0],
    SELECT[1],
    SELECT[2],
    SELECT[3],
    SELECT[4],
    keys::to_explore(
        "open the selected sample's decoding in 1 Explore (typed in, encoded: flip its bits there)",
        Action::Explore,
    ),
];

impl SampleState {
    pub(super) fn on_enter(&mut self, cx: &mut Ctx) {
        let stale = (self.requested_real_words).is_some_and(|r| r == cx.shared.raw_decoding);
        if stale
            || self.samples.is_none()
                && self.error.is_none()
                && !cx.jobs.is_pending(JobKind::Sample)
        {
            self.request(cx);
        }
    }

    fn request(&mut self, cx: &mut Ctx) {
        let real_words = !cx.shared.raw_decoding;
        self.requested_real_words = Some(real_words);
        let st = &*self;
        let job = Job::Sample {
            n: st.count,
            seed: st.seed,
            temperature: st.temperature,
            prior: st.prior,
            real_words,
        };
        cx.jobs.submit(job);
    }

    fn on_key(&mut self, cx: &mut Ctx, key: KeyEvent) {
        let action = match keys::lookup(KEYS, Mode::Nav, key.code, cx.model.caps) {
            Lookup::Action(a) => a,
            Lookup::NotForThisModel(why) => return cx.notice(why),
            Lookup::Unbound => return,
        };
        let last = self
            .samples
            .as_ref()
            .map_or(0, |s| s.texts.len().saturating_sub(1));
        let st = &mut *self;
        // Selecting and opening draw nothing new.
        match action {
            Action::Down => return st.selected = (st.selected + 1).min(last),
            Action::Up => return st.selected = st.selected.saturating_sub(1),
            Action::PageDown => return st.selected = (st.selected + 10).min(last),
            Action::PageUp => return st.selected = st.selected.saturating_sub(10),
            Action::Top => return st.selected = 0,
            Action::Explore => {
                return match st.samples.as_ref().and_then(|s| s.texts.get(st.selected)) {
                    Some(text) => cx.open_decoding_in_explore(text),
                    None => cx.notice("no sample yet"),
                };
            }
            _ => {}
        }
        match action {
            Action::NextSeed => st.seed = st.seed.wrapping_add(1),
            Action::PreviousSeed => st.seed = st.seed.saturating_sub(1),
            Action::Again => {}
            Action::Prior => {
                st.prior = match st.prior {
                    PriorChoice::Uniform => PriorChoice::Means,
                    PriorChoice::Means => PriorChoice::Uniform,
                }
            }
            Action::Hotter => {
                st.temperature = ((st.temperature * 10.0).round() + 1.0).min(30.0) / 10.0
            }
            Action::Colder => {
                st.temperature = ((st.temperature * 10.0).round() - 1.0).max(1.0) / 10.0
            }
            Action::More => st.count = (st.count + 1).min(50),
            Action::Fewer => st.count = st.count.saturating_sub(1).max(1),
            Action::RealWords => cx.shared.raw_decoding = !cx.shared.raw_decoding,
            Action::Down
            | Action::Up
            | Action::PageDown
            | Action::PageUp
            | Action::Top
            | Action::Explore => unreachable!("handled above"),
        }
        self.selected = self.selected.min(self.count.saturating_sub(1));
        self.request(cx);
    }

    fn done(&mut self, _cx: &mut Ctx, r: Result<Samples, String>) {
        match r {
            Ok(s) => {
                self.samples = Some(s);
                self.error = None;
            }
            Err(e) => self.error = Some(e),
        }
    }
}

impl Tab for SampleState {
    fn help_rows() -> Vec<(String, String)> {
        keys::help_rows(KEYS)
    }

    fn key(&mut self, cx: &mut Ctx, key: KeyEvent) {
        self.on_key(cx, key)
    }

    fn reply(&mut self, cx: &mut Ctx, body: ReplyBody) -> Option<ReplyBody> {
        match body {
            ReplyBody::Sampled(r) => self.done(cx, r),
            other => return Some(other),
        }
        None
    }

    fn model_changed(&mut self, cx: &mut Ctx, shown: bool) {
        self.samples = None;
        self.error = None;
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
        SampleState::hints(self, view.model.caps)
    }
}

pub fn render(tab: &SampleState, app: &View, area: Rect, buf: &mut Buffer) {
    let t = app.theme;
    let st = tab;
    let kind = app.model.kind;
    let prior = if !kind.has_latent() {
        format!(
            "words sampled from the language model, temperature {:.1}",
            st.temperature
        )
    } else if kind.is_binary() {
        match st.prior {
            PriorChoice::Uniform => "uniform random bits (each 1 with probability ½)".into(),
            PriorChoice::Means => {
                "each bit drawn with its mean over the validation sentences".into()
            }
        }
    } else {
        format!("N(0, t² I) with temperature t = {:.1}", st.temperature)
    };
    let mut cmd = format!(
        "latent-tui sample {} -n {} --seed {}",
        app.model.path.display(),
        st.count,
        st.seed
    );
    if kind.is_binary() {
        cmd += &format!(" --prior {}", st.prior.name());
    } else if (st.temperature - 1.0).abs() > 1e-6 {
        cmd += &format!(" --temperature {:.1}", st.temperature);
    }
    // An `lm`'s word sampling is never restricted: no flag to reproduce it.
    if !app.shared.raw_decoding && kind.has_latent() {
        cmd += " --real-words";
    }
    let header = Paragraph::new(vec![
            Line::from(vec![
                Span::styled("prior ", t.dim()),
                Span::raw(prior),
                Span::styled("   seed ", t.dim()),
                Span::styled(st.seed.to_string(), t.accent()),
                Span::styled("   samples ", t.dim()),
                Span::raw(st.count.to_string()),
            ]),
            if app.model.caps.decodes_text {
                Line::from(vec![Span::styled("reproduce: ", t.dim()), Span::raw(cmd)])
            } else {
                Line::styled(
                    "each sample is shown as the decoder's most probable words (as `latent-tui sample` prints them)",
                    t.dim(),
                )
            },
    ])
    .wrap(Wrap { trim: false });
    // The command wraps rather than being cut off: a long checkpoint path must still show
    // every flag (the panel grows, up to half the tab).
    let wanted = header.line_count(area.width.saturating_sub(2)) as u16 + 2;
    let [info, list] = Layout::vertical([
        Constraint::Length(wanted.clamp(4, (area.height / 2).max(4))),
        Constraint::Min(3),
    ])
    .areas(area);
    let block = t.block(Line::from(Span::styled(" Prior samples ", t.bold())), false);
    let inner = block.inner(info);
    block.render(info, buf);
    header.render(inner, buf);
    let pending = app.jobs.is_pending(JobKind::Sample);
    let shown_seed = st.samples.as_ref().map(|s| s.seed);
    let what = if app.model.caps.decodes_text {
        " Decodings "
    } else {
        " Top words "
    };
    let mut title = vec![Span::styled(what, t.bold())];
    if let Some(s) = shown_seed {
        title.push(Span::styled(format!("· seed {s} "), t.dim()));
    }
    if pending {
        title.push(Span::styled("· sampling… ", t.notice()));
    }
    let block = t.block(Line::from(title), false);
    let inner = block.inner(list);
    block.render(list, buf);
    if let Some(e) = &st.error {
        widgets::wrapped(
            buf,
            inner,
            vec![Line::from(Span::styled(e.clone(), t.error()))],
        );
        return;
    }
    let Some(s) = &st.samples else {
        return;
    };
    // Bits beside the text when both fit comfortably, else the bits on a line of their own
    // under the text, where every sample fits that way; in a short terminal the decodings come
    // first and the bits under them go (70×22 showed 4 of 10 samples).
    let l = s.codes.first().map_or(0, |c| c.len());
    let bits = kind.is_binary() && l > 0;
    let beside = bits && inner.width as usize >= 4 + l + 2 + 50;
    let (total, rows) = (s.texts.len(), inner.height as usize);
    let under = bits && !beside && total * 2 <= rows;
    let rows_per = if under { 2 } else { 1 };
    // The selected sample in view; the samples that do not fit are counted above and below
    // (half of them went missing without a word, the header still saying how many there are).
    let selectable = app.model.caps.encodes;
    let selected = st.selected.min(total.saturating_sub(1));
    let w = ListWindow::new(selected, total, rows / rows_per);
    let mut y = inner.y;
    if w.above_line(0).is_some() {
        let above = format!("… {} above (↑ shows them)", w.above);
        text(buf, inner, inner.x, y, &above, t.dim());
        y += 1;
    }
    for (i, (code, txt)) in s
        .codes
        .iter()
        .zip(&s.texts)
        .enumerate()
        .skip(w.start)
        .take(w.count)
    {
        let chosen = selectable && i == selected;
        let number_style = if chosen { t.cursor() } else { t.dim() };
        text(
            buf,
            inner,
            inner.x,
            y,
            &format!("{:>3} ", i + 1),
            number_style,
        );
        let mut x = inner.x + 4;
        if beside {
            text(buf, inner, x, y, &explore::bit_string(code), t.dim());
            x += l as u16 + 2;
        } else if under {
            let width = inner.right().saturating_sub(x) as usize;
            text(buf, inner, x, y + 1, &BitsFit::text(code, width), t.dim());
        } else if kind.has_latent() && !bits {
            let norm = code.iter().map(|v| v * v).sum::<f32>().sqrt();
            text(buf, inner, x, y, &format!("‖z‖ {norm:5.2}"), t.dim());
            x += 12;
        }
        text(
            buf,
            inner,
            x,
            y,
            txt,
            if chosen { t.bold() } else { t.plain() },
        );
        y += rows_per as u16;
    }
    if w.below_line(0).is_some() {
        let more = format!(
            "… {} more: a taller terminal shows them (the command above prints every one)",
            w.below
        );
        text(buf, inner, inner.x, y, &more, t.dim());
    }
}
