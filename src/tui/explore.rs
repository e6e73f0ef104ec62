//! Tab 1, Explore: type a sentence, see its code, change the code bit by bit (or dimension by
//! dimension) and watch the decoding and the per-bit perplexity bars follow. Beside the bit
//! under the cursor stands what it means ([`crate::meaning`], computed in the background once
//! per model), and after each change the decoding's new words are highlighted. `latent-tui
//! MODEL` opens here on a test sentence of the model's corpus with the bit that changes its
//! decoding most selected; `n` draws another.

use std::sync::Arc;

use crossterm::event::{KeyCode, KeyEvent};
use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Widget, Wrap};

use super::context::{Ctx, MeaningState, Shared, Tab, View};
use super::jobs::{Bars, DecodedText, Job, JobKind, ModelInfo, RealWords, ReplyBody};
use super::keys::{self, nav, typing, Binding, Lookup, Mode, Only};
use super::widgets::{self, grouped_columns, put, text, InputAction, TextInput, EIGHTHS};
use crate::coder::Capabilities;
use crate::coder::EncodedSentence;
use crate::explore;
use crate::index::CachedIndex;
use crate::meaning::{self, CorpusAbout, Meanings, Opening};
use crate::model::decode::Strategy;

/// Where keys go: the sentence field, or the code (navigation, where digits switch tabs; the
/// tab opens here).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Focus {
    Input,
    #[default]
    Code,
}

/// Width of a beam in the beam-search decoding.
const BEAM: usize = 4;

#[derive(Debug)]
pub struct ExploreState {
    pub input: TextInput,
    pub focus: Focus,
    undo: Vec<Vec<f32>>,
    pub cursor: usize,
    pub strategy: Strategy,
    decode_seed: u64,
    /// Whether the latest decode request asked for real words ([`Shared::raw_decoding`] as it
    /// was then; None before the first): entering the tab again after `w` was pressed on
    /// another tab decodes again.
    requested_real_words: Option<bool>,
    /// How the latest decoding was restricted (None before the first).
    pub real_words_status: Option<RealWords>,
    pub bars: Option<Bars>,
    pub error: Option<String>,
    /// The decoding shown before the code last changed, to highlight what the change did.
    pub before: Option<String>,
    /// What the model was trained on, from the first screen's draw (the header's second row).
    pub about: Option<CorpusAbout>,
    /// Sentences drawn from the corpus so far (`n`); the seed of the next draw.
    pub draws: u64,
}

impl Default for ExploreState {
    fn default() -> Self {
        Self {
            input: TextInput::default(),
            focus: Focus::Code,
            undo: Vec::new(),
            cursor: 0,
            strategy: Strategy::Greedy,
            decode_seed: 0,
            requested_real_words: None,
            real_words_status: None,
            bars: None,
            error: None,
            before: None,
            about: None,
            draws: 0,
        }
    }
}

impl ExploreState {
    pub fn typing(&self) -> bool {
        self.focus == Focus::Input
    }

    /// The footer's hints; `no_code`: nothing encoded yet.
    pub fn hints(&self, kind: Capabilities, no_code: bool) -> Vec<(&'static str, &'static str)> {
        match self.focus {
            Focus::Input => keys::hints(KEYS, Mode::Typing, kind),
            Focus::Code if no_code => keys::hints_where(KEYS, Mode::Nav, kind, |a| {
                matches!(
                    a,
                    Action::Edit | Action::Fresh | Action::Decoder | Action::Draw
                )
            }),
            Focus::Code => keys::hints(KEYS, Mode::Nav, kind),
        }
    }
}

/// What a key can do on this tab.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Encode,
    Leave,
    Edit,
    Fresh,
    Left,
    Right,
    GroupLeft,
    GroupRight,
    First,
    Last,
    Largest,
    Flip,
    NudgeUp,
    NudgeDown,
    ResetDim,
    Restore,
    Undo,
    Decoder,
    Draw,
    RealWords,
}

/// The tab's keys: dispatch, footer and help all read this table.
pub const KEYS: &[Binding<Action>] = &[
    typing(
        &[KeyCode::Enter],
        "Enter",
        "encode the sentence; the focus moves to the code",
        Some(("Enter", "encode")),
        Action::Encode,
    ),
    typing(
        &[KeyCode::Esc],
        "Esc",
        "leave the field for the code",
        Some(("Esc", "to the code")),
        Action::Leave,
    ),
    nav(
        &[KeyCode::Left, KeyCode::Char('h')],
        "← → or h l",
        "move the cursor over the bits / dimensions",
        Some(("←/→", "move")),
        Only::Encodes,
        Action::Left,
    ),
    nav(
        &[KeyCode::Right, KeyCode::Char('l')],
        "→ or l",
        "",
        None,
        Only::Encodes,
        Action::Right,
    ),
    nav(
        &[KeyCode::Home, KeyCode::Char('g')],
        "Home End or g G",
        "first / last bit",
        None,
        Only::Encodes,
        Action::First,
    ),
    nav(
        &[KeyCode::End, KeyCode::Char('G')],
        "End or G",
        "",
        None,
        Only::Encodes,
        Action::Last,
    ),
    nav(
        &[KeyCode::Char(' ')],
        "Space",
        "flip the bit under the cursor",
        Some(("Space", "flip")),
        Only::Binary,
        Action::Flip,
    ),
    nav(
        &[KeyCode::Char('+'), KeyCode::Char('=')],
        "+ / -",
        "nudge the dimension under the cursor by ½σ",
        Some(("+/-", "±½σ")),
        Only::Continuous,
        Action::NudgeUp,
    ),
    nav(
        &[KeyCode::Char('-'), KeyCode::Char('_')],
        "-",
        "",
        None,
        Only::Continuous,
        Action::NudgeDown,
    ),
    nav(
        &[KeyCode::Char('0')],
        "0",
        "reset the dimension to its encoded value",
        Some(("0", "reset dim")),
        Only::Continuous,
        Action::ResetDim,
    ),
    nav(
        &[KeyCode::Char('r')],
        "r",
        "restore the encoded code",
        Some(("r", "restore")),
        Only::Encodes,
        Action::Restore,
    ),
    nav(
        &[KeyCode::Char('u')],
        "u",
        "undo the last change",
        Some(("u", "undo")),
        Only::Encodes,
        Action::Undo,
    ),
    nav(
        &[KeyCode::Char('d')],
        "d",
        "decoder: greedy → beam search (width 4) → sampling (t = 1)",
        Some(("d", "decoder")),
        Only::DecodesCodes,
        Action::Decoder,
    ),
    keys::real_words(Action::RealWords),
    nav(
        &[KeyCode::Char('i'), KeyCode::Enter],
        "i or Enter",
        "edit the sentence",
        Some(("i", "edit")),
        Only::Encodes,
        Action::Edit,
    ),
    nav(
        &[KeyCode::Char('/')],
        "/",
        "type a new sentence (an empty field)",
        Some(("/", "new")),
        Only::Encodes,
        Action::Fresh,
    ),
    nav(
        &[KeyCode::Char('n')],
        "n",
        "draw another sentence from the model's test split (the bit that changes its decoding most is selected)",
        Some(("n", "another sentence")),
        Only::Encodes,
        Action::Draw,
    ),
    nav(
        &[KeyCode::PageUp, KeyCode::Char('H')],
        "PgUp PgDn or H L",
        "move the cursor by 8 bits / dimensions (one group of the code panel)",
        None,
        Only::Encodes,
        Action::GroupLeft,
    ),
    nav(
        &[KeyCode::PageDown, KeyCode::Char('L')],
        "PgDn or L",
        "",
        None,
        Only::Encodes,
        Action::GroupRight,
    ),
    nav(
        &[KeyCode::Char('b')],
        "b",
        "to the bit / dimension whose change raises the sentence's perplexity most (the \
         largest bar)",
        None,
        Only::Encodes,
        Action::Largest,
    ),
];

fn next_strategy(s: Strategy) -> Strategy {
    match s {
        Strategy::Greedy => Strategy::Beam {
            width: BEAM,
            length_penalty: crate::model::decode::DEFAULT_LENGTH_PENALTY,
        },
        Strategy::Beam { .. } => Strategy::Sample { temperature: 1.0 },
        Strategy::Sample { .. } => Strategy::Greedy,
    }
}

impl ExploreState {
    fn on_key(&mut self, cx: &mut Ctx, key: KeyEvent) {
        match self.focus {
            Focus::Input => match self.input.on_key(key) {
                InputAction::Submit => self.act(cx, Action::Encode),
                InputAction::Cancel => self.act(cx, Action::Leave),
                _ => {
                    if self.input.overflow {
                        cx.notice(format!(
                            "input is limited to {} characters",
                            TextInput::MAX_CHARS
                        ));
                    }
                }
            },
            Focus::Code => match keys::lookup(KEYS, Mode::Nav, key.code, cx.model.caps) {
                Lookup::Action(a) => self.act(cx, a),
                Lookup::NotForThisModel(why) => cx.notice(why),
                Lookup::Unbound => {}
            },
        }
    }

    /// `/`: an empty sentence field, for a new sentence.
    pub fn fresh_input(&mut self) {
        self.input = TextInput::default();
        self.focus = Focus::Input;
    }

    pub fn submit(&mut self, cx: &mut Ctx) {
        if self.input.is_blank() {
            cx.notice("type a sentence first, then Enter encodes it");
            return;
        }
        let text = self.input.text();
        cx.shared.text = text.clone();
        cx.jobs.submit(Job::Encode { text });
        self.focus = Focus::Code;
    }

    fn act(&mut self, cx: &mut Ctx, action: Action) {
        match action {
            Action::Encode => return self.submit(cx),
            Action::Leave => {
                self.focus = Focus::Code;
                return;
            }
            Action::Edit => {
                self.focus = Focus::Input;
                return;
            }
            Action::Fresh => return self.fresh_input(),
            Action::Draw => {
                if !cx.model.caps.encodes {
                    return cx.notice("an `lm` model has no encoder, so no sentence to open on");
                }
                self.draws += 1;
                cx.jobs.submit(Job::Opening { draw: self.draws });
                return;
            }
            Action::Decoder => {
                self.strategy = next_strategy(self.strategy);
                self.request_decode(cx);
                return;
            }
            Action::RealWords => {
                cx.shared.raw_decoding = !cx.shared.raw_decoding;
                self.request_decode(cx);
                return;
            }
            _ => {}
        }
        let l = cx.shared.code.len();
        if l == 0 {
            cx.notice("no code yet: i to type a sentence, then Enter encodes it");
            return;
        }
        let c = self.cursor;
        match action {
            Action::Left => self.cursor = c.saturating_sub(1),
            Action::Right => self.cursor = (c + 1).min(l - 1),
            Action::GroupLeft => self.cursor = c.saturating_sub(8),
            Action::GroupRight => self.cursor = (c + 8).min(l - 1),
            Action::Largest if !cx.model.caps.scores => {
                cx.notice("this model has no bars: it cannot score a sentence under a code")
            }
            Action::Largest => {
                // The bars of the current code only (a reply for an older code may still show).
                let largest = (self.bars.as_ref())
                    .filter(|b| b.code == cx.shared.code)
                    .and_then(Bars::largest);
                match largest {
                    Some((j, _)) => self.cursor = j,
                    None => cx.notice("no bars yet for this code"),
                }
            }
            Action::First => self.cursor = 0,
            Action::Last => self.cursor = l - 1,
            Action::Flip => {
                let next = explore::flip(&cx.shared.code, c);
                self.set_code(cx, next);
            }
            Action::NudgeUp | Action::NudgeDown => {
                let sign = if action == Action::NudgeUp { 0.5 } else { -0.5 };
                let next = explore::nudge(&cx.shared.code, c, sign * self.std(cx, c));
                self.set_code(cx, next);
            }
            Action::ResetDim => {
                if let Some(s) = &cx.shared.sentence {
                    let mut next = cx.shared.code.clone();
                    next[c] = s.code[c];
                    self.set_code(cx, next);
                }
            }
            Action::Restore => {
                if let Some(s) = &cx.shared.sentence {
                    if s.code != cx.shared.code {
                        let encoded = s.code.clone();
                        self.set_code(cx, encoded);
                    }
                }
            }
            Action::Undo => match self.undo.pop() {
                Some(prev) => {
                    cx.shared.code = prev;
                    self.request_code_work(cx);
                }
                None => cx.notice("nothing to undo"),
            },
            Action::Encode
            | Action::Leave
            | Action::Edit
            | Action::Fresh
            | Action::Decoder
            | Action::Draw
            | Action::RealWords => {
                unreachable!("handled above")
            }
        }
    }

    fn std(&self, cx: &Ctx, dim: usize) -> f32 {
        cx.shared
            .sentence
            .as_ref()
            .and_then(|s| s.encoding.std.as_ref())
            .and_then(|s| s.get(dim).copied())
            .unwrap_or(1.0)
    }

    fn set_code(&mut self, cx: &mut Ctx, code: Vec<f32>) {
        let prev = std::mem::replace(&mut cx.shared.code, code);
        self.undo.push(prev);
        self.request_code_work(cx);
    }

    /// A new code needs a new decoding and new bars (for models that can give them).
    fn request_code_work(&mut self, cx: &mut Ctx) {
        self.request_decode(cx);
        if !cx.model.caps.scores {
            return;
        }
        if let Some(s) = &cx.shared.sentence {
            let job = Job::Bars {
                ids: s.ids.clone(),
                code: cx.shared.code.clone(),
                std: s.encoding.std.clone(),
                focus: self.cursor,
            };
            cx.jobs.submit(job);
        }
    }

    fn request_decode(&mut self, cx: &mut Ctx) {
        if cx.shared.code.is_empty() || !cx.model.caps.decodes() {
            return;
        }
        if matches!(self.strategy, Strategy::Sample { .. }) {
            self.decode_seed += 1;
        }
        let real_words = !cx.shared.raw_decoding;
        self.requested_real_words = Some(real_words);
        cx.jobs.submit(Job::Decode {
            code: cx.shared.code.clone(),
            strategy: self.strategy,
            seed: self.decode_seed,
            real_words,
        });
    }

    fn encoded(&mut self, cx: &mut Ctx, r: Result<EncodedSentence, String>) {
        match r {
            Ok(s) => {
                cx.shared.code = s.code.clone();
                self.cursor = self.cursor.min(s.code.len().saturating_sub(1));
                self.undo.clear();
                self.error = None;
                cx.shared.decoding = None;
                self.before = None;
                self.bars = None;
                cx.shared.sentence = Some(s);
                self.request_code_work(cx);
            }
            Err(e) => {
                cx.shared.sentence = None;
                cx.shared.code.clear();
                cx.shared.decoding = None;
                self.bars = None;
                self.error = Some(e);
                self.focus = Focus::Input;
            }
        }
    }

    fn decoded(&mut self, cx: &mut Ctx, r: Result<DecodedText, String>) {
        // The reply is for the newest decode request, which was made for the current code
        // unless an undo/flip is still on its way (then a newer request is pending anyway).
        // The previous decoding, if it was of another code, is what the change is compared with.
        let r = r.map(|d| {
            self.real_words_status = Some(d.real_words);
            d.text
        });
        let previous = cx.shared.decoding.take();
        self.before = match previous {
            Some((code, Ok(text))) if code != cx.shared.code => Some(text),
            _ => None,
        };
        cx.shared.decoding = Some((cx.shared.code.clone(), r));
    }

    /// Asks for the bit meanings and, when `first_sentence`, the first screen's sentence.
    pub fn start(&mut self, cx: &mut Ctx, first_sentence: bool) {
        if !cx.model.caps.encodes {
            return;
        }
        cx.shared.meaning = MeaningState::default();
        cx.jobs.submit(Job::Meaning);
        if first_sentence {
            cx.jobs.submit(Job::Opening { draw: self.draws });
        }
    }

    fn meanings(&mut self, cx: &mut Ctx, r: Result<Arc<CachedIndex<Meanings>>, String>) {
        match r {
            Ok(m) => {
                cx.shared.meaning.result = Some(m);
                cx.shared.meaning.error = None;
            }
            Err(e) => cx.shared.meaning.error = Some(e),
        }
    }

    fn opened(&mut self, cx: &mut Ctx, r: Result<Box<Opening>, String>) {
        let o = match r {
            Ok(o) => *o,
            Err(e) => {
                if self.draws > 0 {
                    cx.error(format!("could not draw a sentence: {e}"));
                }
                return;
            }
        };
        self.about = Some(o.about);
        // The first draw arrives on its own: it never replaces what the user began meanwhile.
        let user_began =
            cx.shared.sentence.is_some() || self.typing() || cx.jobs.is_pending(JobKind::Encode);
        if self.draws == 0 && user_began {
            return;
        }
        self.input = TextInput::with_text(&o.text);
        cx.shared.text = o.text.clone();
        self.focus = Focus::Code;
        self.encoded(cx, Ok(o.sentence));
        self.cursor = o.dim.min(cx.shared.code.len().saturating_sub(1));
        let unit = if cx.model.binary() { "bit" } else { "dim" };
        let how = if cx.model.binary() {
            "Space flips it"
        } else {
            "+/- move it"
        };
        if cx.model.caps.decodes() {
            cx.notice(format!(
                "a {} sentence of the model's corpus · {unit} {} changes the most words of its decoding: {how} · n draws another",
                o.split, o.dim
            ));
        } else {
            cx.notice(format!(
                "a {} sentence of the model's corpus · n draws another",
                o.split
            ));
        }
    }

    /// The header's words on real-word decoding: what the latest decoding was kept to, or
    /// that it is raw (None where it does not apply: word-level and bag-of-words models).
    pub fn real_words_label(&self, model: &ModelInfo, shared: &Shared) -> Option<String> {
        // Where `w` does not apply (an lm samples word by word, never restricted), no label.
        if !Only::DecodesCodes.holds(model.caps) {
            return None;
        }
        match (&self.real_words_status, !shared.raw_decoding) {
            (Some(RealWords::WordLevel), _) => None,
            (_, false) => Some("raw decoding (w: real words)".into()),
            (Some(RealWords::Unavailable(_)), true) => {
                Some("raw decoding: training corpus not here".into())
            }
            (_, true) => Some("real words (w: raw)".into()),
        }
    }

    /// The Decoding panel's words on what the latest decoding was kept to.
    fn real_words_detail(&self, shared: &Shared) -> Option<String> {
        let real_words = !shared.raw_decoding;
        // Sampling is never restricted (see docs/real-words.md): its words may be invented.
        let sampled = matches!(self.strategy, Strategy::Sample { .. });
        match &self.real_words_status {
            Some(RealWords::On { .. }) if real_words && sampled => {
                Some("· sampled: not kept to real words ".into())
            }
            Some(RealWords::On { words, corpus }) if real_words => {
                Some(format!("· real words: {words} of {corpus} "))
            }
            Some(RealWords::Unavailable(why)) if real_words => Some(format!("· raw: {why} ")),
            _ => None,
        }
    }

    fn bars(&mut self, cx: &mut Ctx, r: Result<Bars, String>) {
        match r {
            Ok(b) => self.bars = Some(b),
            Err(e) => cx.error(format!("per-bit perplexities: {e}")),
        }
    }
}

impl Tab for ExploreState {
    fn help_rows() -> Vec<(String, String)> {
        keys::help_rows(KEYS)
    }

    fn key(&mut self, cx: &mut Ctx, key: KeyEvent) {
        self.on_key(cx, key)
    }

    fn reply(&mut self, cx: &mut Ctx, body: ReplyBody) -> Option<ReplyBody> {
        match body {
            ReplyBody::Encoded(r) => self.encoded(cx, r),
            ReplyBody::Decoded(r) => self.decoded(cx, r),
            ReplyBody::Bars(r) => self.bars(cx, r),
            ReplyBody::BarsSoFar(b) => self.bars = Some(b),
            ReplyBody::Meanings(r) => self.meanings(cx, r),
            ReplyBody::Opened(r) => self.opened(cx, r),
            other => return Some(other),
        }
        None
    }

    fn entered(&mut self, cx: &mut Ctx) {
        // `w` pressed on another tab since the latest decoding: decode again.
        if self
            .requested_real_words
            .is_some_and(|r| r == cx.shared.raw_decoding)
        {
            self.request_decode(cx);
        }
    }

    fn model_changed(&mut self, cx: &mut Ctx, shown: bool) {
        let _ = shown;
        let had = cx.shared.sentence.is_some();
        cx.shared.sentence = None;
        cx.shared.code.clear();
        self.undo.clear();
        cx.shared.decoding = None;
        self.before = None;
        self.bars = None;
        self.error = None;
        self.cursor = 0;
        // What the old model's decodings were kept to says nothing of the new one's.
        self.real_words_status = None;
        self.requested_real_words = None;
        cx.shared.meaning = MeaningState::default();
        self.start(cx, false);
        if had && !self.input.is_blank() {
            let text = self.input.text();
            cx.shared.text = text.clone();
            cx.jobs.submit(Job::Encode { text });
        }
    }

    fn render(&self, view: &View, area: Rect, buf: &mut Buffer) {
        render(self, view, area, buf)
    }

    fn hints(&self, view: &View) -> Vec<(&'static str, &'static str)> {
        ExploreState::hints(self, view.model.caps, view.shared.code.is_empty())
    }

    fn typing(&self, _view: &View) -> bool {
        ExploreState::typing(self)
    }

    fn paste_field(&mut self, _cx: &mut Ctx) -> Option<&mut TextInput> {
        if !ExploreState::typing(self) {
            self.fresh_input();
        }
        Some(&mut self.input)
    }
}

/// Left label column of the code and bar rows.
const LABEL: u16 = 6;

pub fn render(tab: &ExploreState, app: &View, area: Rect, buf: &mut Buffer) {
    let binary = app.model.binary();
    if !app.model.kind.has_latent() {
        let b = app.theme.block(" Explore ", false);
        let inner = b.inner(area);
        b.render(area, buf);
        widgets::wrapped(
            buf,
            inner,
            vec![Line::from(
                "This is an `lm` model: it has no encoder and no latent space to explore. The Sample tab generates sentences from it; the Train tab trains an autoencoder.",
            )],
        );
        return;
    }
    // What the input and the decoding would show, for the layout of a short terminal.
    let input_rows = if tab.error.is_none()
        && app
            .shared
            .sentence
            .as_ref()
            .is_some_and(|s| !s.notices().is_empty())
    {
        3
    } else {
        2
    };
    let decoding_rows = Paragraph::new(decoding_lines(tab, app))
        .wrap(Wrap { trim: false })
        .line_count(area.width.saturating_sub(2)) as u16;
    let want = Wanted {
        input_rows,
        decoding_rows: decoding_rows.max(1),
    };
    let [input_a, code_a, dec_a, bars_a] = panel_heights(area.height, binary, want).areas(area);
    render_input(tab, app, input_a, buf);
    render_code(tab, app, code_a, buf);
    render_decoding(tab, app, dec_a, buf);
    // Fewer rows than a caption needs (a short terminal gave them away) stay blank.
    if bars_a.height >= MIN_BARS - 1 {
        render_bars(tab, app, bars_a, buf);
    }
}

/// The rows the input and the decoding panels' content takes (inside their borders).
#[derive(Clone, Copy, Debug)]
struct Wanted {
    /// The field, the "model sees" line, and the notices line when there are notices.
    input_rows: u16,
    /// The decoding (and the words the last change removed), wrapped.
    decoding_rows: u16,
}

/// Heights of the four panels for a body `height` rows tall. When the preferred sizes fit they
/// are used (the perplexity bars take the rest). In a shorter body (80×24, 70×22) rows are
/// handed out most important first, so that the sentence, its decoding and the code are kept
/// and the bars give way: the input's field, the code with its p row, the cursor and the detail
/// line of the bit under it, one line of decoding; then the "model sees" line, the decoding's
/// second line, the meaning row (gaussian: the dimension index row), the input's notices, the
/// bars' caption, the bit index row (gaussian: the meaning row), a row of bars, gaussian axis
/// rows and a third line of decoding. The bars take what is left.
fn panel_heights(height: u16, binary: bool, want: Wanted) -> Layout {
    let layout = |sizes: [u16; 3], bars: Constraint| {
        Layout::vertical([
            Constraint::Length(sizes[0]),
            Constraint::Length(sizes[1]),
            Constraint::Length(sizes[2]),
            bars,
        ])
    };
    // (input, code, decoding); the code panel's rows are its border plus the rows of
    // `render_bits` / `render_dims`.
    let preferred: [u16; 3] = [5, if binary { 8 } else { 13 }, 4];
    if preferred.iter().sum::<u16>() + MIN_BARS <= height {
        return layout(preferred, Constraint::Min(0));
    }
    const INPUT: usize = 0;
    const CODE: usize = 1;
    const DECODING: usize = 2;
    const BARS: usize = 3;
    // Borders and the rows nothing else may take.
    let mut sizes: [u16; 4] = [3, if binary { 6 } else { 7 }, 3, 0];
    let mut steps: Vec<(usize, u16)> = Vec::new();
    if want.input_rows >= 2 {
        steps.push((INPUT, 1));
    }
    if want.decoding_rows >= 2 {
        steps.push((DECODING, 1));
    }
    steps.push((CODE, 1));
    if want.input_rows >= 3 {
        steps.push((INPUT, 1));
    }
    steps.extend([(BARS, MIN_BARS - 1), (CODE, 1), (BARS, 1)]);
    if !binary {
        steps.extend([(CODE, 1); 4]);
    }
    if want.decoding_rows >= 3 {
        steps.push((DECODING, 1));
    }
    for (panel, rows) in steps {
        // A row of bars only under their caption.
        if panel == BARS && rows == 1 && sizes[BARS] == 0 {
            continue;
        }
        if sizes.iter().sum::<u16>() + rows <= height {
            sizes[panel] += rows;
        }
    }
    let bars = if sizes[BARS] > 0 {
        Constraint::Min(0)
    } else {
        Constraint::Length(0)
    };
    layout([sizes[INPUT], sizes[CODE], sizes[DECODING]], bars)
}

/// Columns `s` takes on screen.
fn str_width(s: &str) -> usize {
    s.chars()
        .map(|c| unicode_width::UnicodeWidthChar::width(c).unwrap_or(0))
        .sum()
}

/// `s` if it fits in `width` columns, else its end after `…` (from a word's start where one
/// begins near the cut).
fn tail_fit(s: &str, width: usize) -> String {
    if str_width(s) <= width {
        return s.to_string();
    }
    if width == 0 {
        return String::new();
    }
    let chars: Vec<char> = s.chars().collect();
    let mut start = chars.len();
    let mut used = 0;
    while start > 0 {
        let w = unicode_width::UnicodeWidthChar::width(chars[start - 1]).unwrap_or(0);
        if used + w + 1 > width {
            break;
        }
        used += w;
        start -= 1;
    }
    // Start at a word if one starts within the first third of what fits.
    let tail = &chars[start..];
    let mid_word = start > 0 && chars[start - 1] != ' ';
    if let Some(space) = tail.iter().position(|&c| c == ' ') {
        if mid_word && space * 3 < tail.len() {
            start += space + 1;
        }
    }
    let rest: String = chars[start..].iter().collect();
    format!("…{}", rest.trim_start())
}

/// Rows the perplexity bars need to say anything: borders, one bar row and the caption.
const MIN_BARS: u16 = 4;

fn render_input(tab: &ExploreState, app: &View, area: Rect, buf: &mut Buffer) {
    let t = app.theme;
    let focused = tab.focus == Focus::Input;
    let title = if focused {
        Line::from(vec![
            Span::styled(" Sentence ", t.accent()),
            Span::styled("(Enter encodes · Esc goes to the code) ", t.dim()),
        ])
    } else {
        Line::from(vec![
            Span::styled(" Sentence ", t.bold()),
            Span::styled("(i edits · / new sentence) ", t.dim()),
        ])
    };
    let block = t.block(title, focused);
    let inner = block.inner(area);
    block.render(area, buf);
    if inner.height == 0 {
        return;
    }
    tab.input
        .render(buf, Rect { height: 1, ..inner }, "› ", focused, t);
    let mut rest: Vec<Line> = Vec::new();
    if let Some(e) = &tab.error {
        rest.push(Line::from(Span::styled(e.clone(), t.error())));
    } else if let Some(s) = &app.shared.sentence {
        // The field holds other text than the sentence encoded (being typed, or left
        // unencoded): what the model saw is the previous sentence's until Enter.
        let (label, short) = if tab.input.text() == app.shared.text {
            ("model sees: ", "model sees: ")
        } else {
            (
                "model saw (the previous sentence; Enter encodes this one): ",
                "model saw (previous): ",
            )
        };
        // A sentence longer than the row shows its end (where the model stopped reading, or
        // cut it), the start elided with `…`.
        let width = inner.width as usize;
        let label = if label.chars().count() + str_width(&s.shown) <= width {
            label
        } else {
            short
        };
        rest.push(Line::from(vec![
            Span::styled(label, t.dim()),
            Span::raw(tail_fit(
                &s.shown,
                width.saturating_sub(label.chars().count()),
            )),
        ]));
        let notes = s.notices();
        if !notes.is_empty() {
            rest.push(Line::from(Span::styled(notes.join(" · "), t.notice())));
        }
    } else if app.jobs.is_pending(JobKind::Encode) {
        rest.push(Line::from(Span::styled("encoding…", t.dim())));
    } else {
        rest.push(Line::from(Span::styled(
            "press i to type a sentence, then Enter to see its code",
            t.dim(),
        )));
    }
    // The error, or what the model sees, outranks the notices when only one line fits.
    rest.truncate(inner.height.saturating_sub(1) as usize);
    widgets::lines(
        buf,
        Rect {
            y: inner.y + 1,
            height: inner.height - 1,
            ..inner
        },
        rest,
    );
}

fn render_code(tab: &ExploreState, app: &View, area: Rect, buf: &mut Buffer) {
    let t = app.theme;
    let binary = app.model.binary();
    let l = app.model.latent_dim;
    let unit = if binary { "bits" } else { "dimensions" };
    let mut title = vec![Span::styled(
        format!(" Code · {l} {unit} "),
        if tab.focus == Focus::Code {
            t.accent()
        } else {
            t.bold()
        },
    )];
    if let (Some(d), true) = (app.shared.distance(), binary) {
        title.push(Span::styled(
            format!("· Hamming distance {d} from the encoding "),
            if d > 0 { t.notice() } else { t.dim() },
        ));
    }
    if let Some(s) = &app.shared.sentence {
        title.push(Span::styled(
            format!("· KL {:.2} nats ", s.encoding.kl),
            t.dim(),
        ));
    }
    if let Some(cluster) = app.shared.cluster_name() {
        title.push(Span::styled(format!("· {cluster} "), t.dim()));
    }
    let block = t.block(Line::from(title), tab.focus == Focus::Code);
    let inner = block.inner(area);
    block.render(area, buf);
    let Some(s) = &app.shared.sentence else {
        widgets::lines(
            buf,
            inner,
            vec![Line::from(Span::styled(
                "(no sentence encoded yet)",
                t.dim(),
            ))],
        );
        return;
    };
    if app.shared.code.len() != s.code.len() || app.shared.code.is_empty() {
        return;
    }
    let cols = Rect {
        x: inner.x + LABEL,
        width: inner.width.saturating_sub(LABEL),
        ..inner
    };
    let (first, xs) = grouped_columns(app.shared.code.len(), tab.cursor, cols.width);
    if binary {
        render_bits(tab, app, s, inner, cols, first, &xs, buf);
    } else {
        render_dims(tab, app, s, inner, cols, first, &xs, buf);
    }
}

fn render_bits(
    tab: &ExploreState,
    app: &View,
    s: &EncodedSentence,
    inner: Rect,
    cols: Rect,
    first: usize,
    xs: &[u16],
    buf: &mut Buffer,
) {
    let t = app.theme;
    // Rows: the bit index (dropped first when the panel is short), the code, p, the cursor, the
    // detail line and the meaning (dropped next). Everything is clipped to `inner`, so nothing
    // lands on the panel below.
    let index_row = inner.height >= 6;
    let y = if index_row { inner.y + 1 } else { inner.y };
    if index_row {
        text(buf, inner, inner.x, inner.y, "bit", t.dim());
    }
    text(buf, inner, inner.x, y, "code", t.dim());
    text(buf, inner, inner.x, y + 1, "p", t.dim());
    let cols = Rect {
        height: inner.bottom().saturating_sub(cols.y),
        ..cols
    };
    for (k, &x) in xs.iter().enumerate() {
        let j = first + k;
        if j.is_multiple_of(8) && index_row {
            text(buf, cols, cols.x + x, inner.y, &j.to_string(), t.dim());
        }
        let set = explore::is_set(app.shared.code[j]);
        let p = s.encoding.mean[j];
        let changed = set != explore::is_set(s.code[j]);
        let style = if j == tab.cursor {
            t.cursor()
        } else if changed {
            t.changed()
        } else {
            t.bit(p)
        };
        put(buf, cols, cols.x + x, y, if set { "1" } else { "0" }, style);
        let e = ((p.clamp(0.0, 1.0) * 8.0).round() as usize).min(8);
        put(buf, cols, cols.x + x, y + 1, EIGHTHS[e], t.bit(p));
        if j == tab.cursor {
            put(buf, cols, cols.x + x, y + 2, "▲", t.accent());
        }
    }
    let j = tab.cursor;
    let now = explore::is_set(app.shared.code[j]) as u8;
    let was = explore::is_set(s.code[j]) as u8;
    let mut info = vec![
        Span::styled(format!("bit {j}"), t.accent()),
        Span::raw(format!("  p = {:.3}  ", s.encoding.mean[j])),
    ];
    if now != was {
        info.push(Span::styled(
            format!("flipped: encoded {was}, now {now}"),
            t.changed(),
        ));
    } else {
        info.push(Span::styled(format!("as encoded ({now})"), t.dim()));
    }
    if let Some(notice) = widgets::window_notice("bits", first, xs.len(), app.shared.code.len()) {
        info.push(Span::styled(notice, t.dim()));
    }
    detail_line(buf, inner, y + 3, info);
    detail_line(buf, inner, y + 4, meaning_spans(app, j, inner.width));
}

/// What bit / dimension `j` means, for the row under the detail line, `width` columns wide
/// (the word lists shortened to fit, never the count: "…changes 47 of 48 sentenc" was cut).
fn meaning_spans(app: &View, j: usize, width: u16) -> Vec<Span<'static>> {
    let t = app.theme;
    let m = &app.shared.meaning;
    const LABEL: &str = "means ";
    let label = Span::styled(LABEL, t.dim());
    let rest = if let Some(meanings) = m.meanings() {
        Span::raw(meanings.summary_within(j, (width as usize).saturating_sub(LABEL.len())))
    } else if let Some(f) = app
        .jobs
        .is_pending(JobKind::Meaning)
        .then(|| app.jobs.progress(JobKind::Meaning).unwrap_or(0.0))
    {
        Span::styled(
            format!(
                "reading what each {} does off the corpus… {:.0}%",
                if app.model.binary() {
                    "bit"
                } else {
                    "dimension"
                },
                f * 100.0
            ),
            t.dim(),
        )
    } else if let Some(e) = &m.error {
        Span::styled(format!("(unavailable: {e})"), t.dim())
    } else {
        Span::styled("—", t.dim())
    };
    vec![label, rest]
}

/// The header's second row: what the model was trained on and what to type.
pub fn about_line(tab: &ExploreState, app: &View) -> Line<'static> {
    let about = tab
        .about
        .clone()
        .unwrap_or_else(|| meaning::about_provenance(&app.model.corpus));
    Line::from(Span::styled(format!(" {}", about.line()), app.theme.dim()))
}

/// The detail line of the bit or dimension under the cursor, at row `y` if that row is inside
/// the panel.
fn detail_line(buf: &mut Buffer, inner: Rect, y: u16, info: Vec<Span<'static>>) {
    if y < inner.bottom() {
        widgets::lines(
            buf,
            Rect {
                y,
                height: 1,
                ..inner
            },
            vec![Line::from(info)],
        );
    }
}

/// Each dimension is a column: the axis runs from +3 (top) to −3 (bottom); `│` marks μ ± σ,
/// `●` the current value (`↑` / `↓` at the axis's end for one beyond it), `○` the encoded μ once
/// the value has moved away, and `·` zero.
fn render_dims(
    tab: &ExploreState,
    app: &View,
    s: &EncodedSentence,
    inner: Rect,
    cols: Rect,
    first: usize,
    xs: &[u16],
    buf: &mut Buffer,
) {
    let t = app.theme;
    // Rows: the axis (7 rows, fewer in a short panel, at least 3), the dimension index (dropped
    // when the panel is short), the cursor, the detail line and the meaning (dropped first).
    let meaning_row = inner.height >= 7;
    let index_row = inner.height >= 6;
    let rows: u16 = inner
        .height
        .saturating_sub(2 + index_row as u16 + meaning_row as u16)
        .clamp(3, 7);
    let cols = Rect {
        height: inner.bottom().saturating_sub(cols.y),
        ..cols
    };
    let (top, bottom) = (3.0f32, -3.0f32);
    let step = (top - bottom) / rows as f32;
    let y0 = inner.y;
    text(buf, inner, inner.x, y0, "+3", t.dim());
    text(buf, inner, inner.x, y0 + rows / 2, " 0", t.dim());
    text(buf, inner, inner.x, y0 + rows - 1, "-3", t.dim());
    let std = s.encoding.std.as_ref();
    for (k, &x) in xs.iter().enumerate() {
        let j = first + k;
        let mu = s.code[j];
        let sd = std.map_or(0.0, |v| v[j]);
        let z = app.shared.code[j];
        let zrow = (((top - z) / step).floor().clamp(0.0, rows as f32 - 1.0)) as u16;
        for r in 0..rows {
            let hi = top - r as f32 * step;
            let lo = hi - step;
            let (sym, style) = if r == zrow {
                let st_ = if j == tab.cursor {
                    t.cursor()
                } else if (z - mu).abs() > 1e-6 {
                    t.changed()
                } else {
                    t.accent()
                };
                // A value past the axis is drawn at its end as an arrow, not as a dot that
                // would read as ±3 (z − μ = −7σ looked like −3).
                let sym = if z > top {
                    "↑"
                } else if z < bottom {
                    "↓"
                } else {
                    "●"
                };
                (sym, st_)
            } else if mu < hi && mu >= lo && (z - mu).abs() > 1e-6 {
                ("○", t.accent())
            } else if mu + sd >= lo && mu - sd <= hi {
                ("│", t.bar())
            } else if r == rows / 2 {
                ("·", t.dim())
            } else {
                (" ", t.plain())
            };
            put(buf, cols, cols.x + x, y0 + r, sym, style);
        }
        if j.is_multiple_of(8) && index_row {
            text(buf, cols, cols.x + x, y0 + rows, &j.to_string(), t.dim());
        }
        if j == tab.cursor {
            put(
                buf,
                cols,
                cols.x + x,
                y0 + rows + index_row as u16,
                "▲",
                t.accent(),
            );
        }
    }
    if index_row {
        text(buf, inner, inner.x, y0 + rows, "dim", t.dim());
    }
    let j = tab.cursor;
    let sd = std.map_or(f32::NAN, |v| v[j]);
    let z = app.shared.code[j];
    let mu = s.code[j];
    let mut info = vec![
        Span::styled(format!("dim {j}"), t.accent()),
        Span::raw(format!("  μ {mu:+.3}  σ {sd:.3}  z {z:+.3}")),
    ];
    if (z - mu).abs() > 1e-6 {
        let rel = if sd.is_finite() && sd > 0.0 {
            format!("  (z − μ = {:+.1}σ)", (z - mu) / sd)
        } else {
            format!("  (z − μ = {:+.3})", z - mu)
        };
        info.push(Span::styled(rel, t.changed()));
    }
    if let Some(notice) =
        widgets::window_notice("dimensions", first, xs.len(), app.shared.code.len())
    {
        info.push(Span::styled(notice, t.dim()));
    }
    detail_line(buf, inner, y0 + rows + 1 + index_row as u16, info);
    if meaning_row {
        detail_line(
            buf,
            inner,
            y0 + rows + 2 + index_row as u16,
            meaning_spans(app, j, inner.width),
        );
    }
}

/// Why a model without a decoder shows no decoding and no bars.
fn no_decoder_text(app: &View) -> String {
    format!(
        "an `{}` model has no decoder: its bits are signs of random projections of the document's TF-IDF vector, so a code has no words and no likelihood. Neighbors (tab 6) finds the documents whose codes are nearest.",
        app.model.caps.name
    )
}

fn render_decoding(tab: &ExploreState, app: &View, area: Rect, buf: &mut Buffer) {
    let t = app.theme;
    if !app.model.caps.decodes_text {
        let title = if app.model.caps.decodes_words {
            " Decoding · the decoder's most probable words, p(w | code) "
        } else {
            " Decoding "
        };
        let block = t.block(Line::from(Span::styled(title, t.bold())), false);
        let inner = block.inner(area);
        block.render(area, buf);
        widgets::wrapped(buf, inner, decoding_lines(tab, app));
        return;
    }
    let label = match tab.strategy {
        Strategy::Sample { temperature } => {
            format!("sample t={temperature} (seed {})", tab.decode_seed)
        }
        s => s.label(),
    };
    let block = t.block(
        Line::from(vec![
            Span::styled(" Decoding ", t.bold()),
            Span::styled(format!("· {label} "), t.accent()),
            Span::styled(
                tab.real_words_detail(app.shared).unwrap_or_default(),
                t.accent(),
            ),
            Span::styled("(d: greedy / beam / sample) ", t.dim()),
        ]),
        false,
    );
    let inner = block.inner(area);
    block.render(area, buf);
    widgets::wrapped(buf, inner, decoding_lines(tab, app));
}

/// What the Decoding panel holds: the decoding and the words the last change removed, the
/// top words of a bag-of-words decoder, or why there is no decoding.
fn decoding_lines(tab: &ExploreState, app: &View) -> Vec<Line<'static>> {
    let caps = app.model.caps;
    if !caps.decodes_text && !caps.decodes_words {
        return vec![Line::from(Span::styled(
            no_decoder_text(app),
            app.theme.dim(),
        ))];
    }
    let mut lines = vec![decoding_line(tab, app)];
    if caps.decodes_text {
        lines.extend(removed_line(tab, app));
    }
    lines
}

/// The current decoding and the one before the last change, when both are up to date.
fn compared<'a>(tab: &'a ExploreState, app: &'a View) -> Option<(&'a str, &'a str)> {
    match (&app.shared.decoding, &tab.before) {
        (Some((code, Ok(now))), Some(before))
            if !app.jobs.is_pending(JobKind::Decode) && *code == app.shared.code =>
        {
            Some((before.as_str(), now.as_str()))
        }
        _ => None,
    }
}

/// The words the last change took out of the decoding.
fn removed_line(tab: &ExploreState, app: &View) -> Option<Line<'static>> {
    let (before, now) = compared(tab, app)?;
    let gone: Vec<&str> = before
        .split_whitespace()
        .zip(meaning::new_words(now, before))
        .filter(|(_, new)| *new)
        .map(|(w, _)| w)
        .collect();
    if gone.is_empty() && before == now {
        return Some(Line::from(Span::styled(
            "(the last change left the decoding as it was)",
            app.theme.dim(),
        )));
    }
    if gone.is_empty() {
        return None;
    }
    Some(Line::from(vec![
        Span::styled("removed by the last change: ", app.theme.dim()),
        Span::styled(gone.join(" "), app.theme.dim()),
    ]))
}

/// The latest decoding, dimmed while it is out of date.
fn decoding_line(tab: &ExploreState, app: &View) -> Line<'static> {
    let t = app.theme;
    let pending = app.jobs.is_pending(JobKind::Decode);
    if let Some((before, now)) = compared(tab, app) {
        // The words the last change brought in stand out.
        let mut spans = Vec::new();
        for (k, (w, new)) in now
            .split_whitespace()
            .zip(meaning::new_words(before, now))
            .enumerate()
        {
            if k > 0 {
                spans.push(Span::styled(" ", t.bold()));
            }
            spans.push(Span::styled(
                w.to_string(),
                if new { t.changed() } else { t.bold() },
            ));
        }
        return Line::from(spans);
    }
    match &app.shared.decoding {
        Some((code, Ok(s))) => {
            let stale = pending || *code != app.shared.code;
            Line::from(Span::styled(
                s.clone(),
                if stale { t.dim() } else { t.bold() },
            ))
        }
        Some((_, Err(e))) => Line::from(Span::styled(e.clone(), t.error())),
        None if pending => Line::from(Span::styled("decoding…", t.dim())),
        None => Line::from(Span::styled("—", t.dim())),
    }
}

fn render_bars(tab: &ExploreState, app: &View, area: Rect, buf: &mut Buffer) {
    let t = app.theme;
    let binary = app.model.binary();
    let what = if binary {
        "if each bit were flipped"
    } else {
        "if each dimension moved up one σ"
    };
    let measure = if app.model.caps.decodes_text {
        "Perplexity of the sentence"
    } else {
        "NLL of the document (nats)"
    };
    let current = tab
        .bars
        .as_ref()
        .map(|b| format!("· current code {:.2} ┄ ", b.base_ppl));
    // A narrow panel keeps the current code's figure, which the long title pushed off its end
    // (70 columns cut it to "· current code ┐").
    let long = format!(" {measure} {what} ");
    let width = |s: &str| s.chars().count();
    let fits = width(&long) + current.as_deref().map_or(0, width) + 2 <= area.width as usize;
    let heading = if fits {
        long
    } else if binary {
        " Each bit flipped ".to_string()
    } else {
        " Each dimension +σ ".to_string()
    };
    let mut title = vec![Span::styled(heading, t.bold())];
    if let Some(current) = current {
        title.push(Span::styled(current, t.dim()));
    }
    let block = t.block(Line::from(title), false);
    let inner = block.inner(area);
    block.render(area, buf);
    if !app.model.caps.scores {
        widgets::wrapped(
            buf,
            inner,
            vec![Line::from(Span::styled(no_decoder_text(app), t.dim()))],
        );
        return;
    }
    let (Some(b), Some(_)) = (&tab.bars, &app.shared.sentence) else {
        let msg = if app.jobs.is_pending(JobKind::Bars) {
            "scoring…"
        } else {
            "(encode a sentence to see how much each bit matters to it)"
        };
        widgets::lines(buf, inner, vec![Line::from(Span::styled(msg, t.dim()))]);
        return;
    };
    if b.ppl.len() != app.shared.code.len() || inner.height == 0 {
        return;
    }
    let stale = app.jobs.is_pending(JobKind::Bars) || b.code != app.shared.code;
    // In a short terminal only the caption (the bit under the cursor and the highest bar).
    if inner.height >= 2 {
        render_bar_chart(tab, app, b, inner, buf);
    }
    bars_caption(tab, app, b, stale, inner, buf);
}

/// The bars themselves, above the caption row of `inner`.
fn render_bar_chart(tab: &ExploreState, app: &View, b: &Bars, inner: Rect, buf: &mut Buffer) {
    let t = app.theme;
    let chart = Rect {
        height: inner.height - 1,
        ..inner
    };
    let cols = Rect {
        x: chart.x + LABEL,
        width: chart.width.saturating_sub(LABEL),
        ..chart
    };
    let (first, xs) = grouped_columns(app.shared.code.len(), tab.cursor, cols.width);
    // Bars not filled in yet (a partial reply) are NaN here: drawn as pending below.
    let values: Vec<f64> = b.ppl[first..first + xs.len()]
        .iter()
        .map(|p| p.unwrap_or(f64::NAN))
        .collect();
    let filled = || b.ppl.iter().flatten().copied();
    let all = filled().chain(std::iter::once(b.base_ppl));
    let (mut lo, mut hi) = all.fold((f64::MAX, f64::MIN), |(l, h), v| (l.min(v), h.max(v)));
    // Bars start a little below the smallest value so that small differences stay visible;
    // the axis labels say where the scale starts.
    let pad = ((hi - lo) * 0.1).max(hi * 0.01);
    lo = (lo - pad).max(0.0);
    hi += pad * 0.2;
    text(buf, chart, chart.x, chart.y, &fmt_ppl(hi), t.dim());
    text(
        buf,
        chart,
        chart.x,
        chart.bottom() - 1,
        &fmt_ppl(lo),
        t.dim(),
    );
    let cursor = tab.cursor.checked_sub(first);
    widgets::vertical_bars(buf, cols, &xs, &values, lo, hi, Some(b.base_ppl), cursor, t);
    for (k, (&x, v)) in xs.iter().zip(&values).enumerate() {
        if v.is_nan() {
            let style = if Some(k) == cursor {
                t.accent()
            } else {
                t.dim()
            };
            put(buf, cols, cols.x + x, cols.bottom() - 1, PENDING, style);
        }
    }
}

/// The bars' caption, on the last row of `inner`.
fn bars_caption(
    tab: &ExploreState,
    app: &View,
    b: &Bars,
    stale: bool,
    inner: Rect,
    buf: &mut Buffer,
) {
    let t = app.theme;
    let binary = app.model.binary();
    let j = tab.cursor;
    let change = |p: f64| {
        if b.nll {
            format!("nll {p:.2} ({:+.2} nats)", p - b.base_ppl)
        } else {
            format!("ppl {p:.2} ({:+.1}%)", (p / b.base_ppl - 1.0) * 100.0)
        }
    };
    let complete = b.complete();
    let unit = if binary { "bit" } else { "dim" };
    let verb = if binary { "flipped" } else { "+σ" };
    let mut caption = vec![
        Span::styled(format!("{unit} {j} {verb}: "), t.accent()),
        match b.ppl[j] {
            Some(p) => Span::raw(change(p)),
            None => Span::styled("scoring…", t.dim()),
        },
    ];
    if let Some((jmax, pmax)) = b.largest() {
        let so_far = if complete { "" } else { " so far" };
        caption.push(Span::styled(
            format!("   highest ppl{so_far}: {unit} {jmax} {} (b)", change(pmax)),
            t.dim(),
        ));
    }
    if !complete {
        caption.push(Span::styled(
            format!("   scoring {} of {}…", b.filled(), b.ppl.len()),
            t.notice(),
        ));
    } else if stale {
        caption.push(Span::styled("   updating…", t.notice()));
    }
    widgets::lines(
        buf,
        Rect {
            y: inner.bottom() - 1,
            height: 1,
            ..inner
        },
        vec![Line::from(caption)],
    );
}

/// How a bar not filled in yet is drawn (the bars come in chunks, nearest the cursor first).
const PENDING: &str = "·";

/// An axis label of the bars: at most [`LABEL`] − 1 characters, so that it never runs into the
/// bars (a perplexity of 3,300,014 did), large values as `134k`, `3.3M`.
fn fmt_ppl(v: f64) -> String {
    // (Each bound is where the rounded form would gain a character.)
    match v {
        v if v < 99.95 => format!("{v:.1}"),
        v if v < 99_999.5 => format!("{v:.0}"),
        v if v < 999_500.0 => format!("{:.0}k", v / 1e3),
        v if v < 9.95e6 => format!("{:.1}M", v / 1e6),
        v if v < 999.5e6 => format!("{:.0}M", v / 1e6),
        v if v.is_finite() => format!("{v:.0e}"),
        _ => "∞".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_labels_fit_their_column_at_any_perplexity() {
        // 3,300,014 ran into the bars beside it.
        let mut v = 1.0f64;
        while v < 1e300 {
            for x in [v, v * 0.9995, v * 1.0004] {
                let label = fmt_ppl(x);
                assert!(label.chars().count() < LABEL as usize, "{x} → {label}");
            }
            v *= 1.37;
        }
        assert_eq!(fmt_ppl(3_300_014.0), "3.3M");
        assert_eq!(fmt_ppl(134_345.0), "134k");
        assert_eq!(fmt_ppl(8.885), "8.9");
        assert_eq!(fmt_ppl(f64::INFINITY), "∞");
    }
}
