//! Drawing blocks shared by the tabs: the theme (colour or NO_COLOR), a one-line text input,
//! the bit row, vertical bars aligned with it, the correlation heat map, the help overlay.
//!
//! Every function here draws into a `Buffer` and clips to the area it is given, so a small
//! terminal can never make a draw index out of bounds.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Gauge, Paragraph, Widget, Wrap};

use unicode_width::UnicodeWidthChar;

use crate::printable::{is_unsafe, visible_char};

/// Colours when the terminal may have them; reverse, bold and symbols when NO_COLOR is set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Theme {
    pub color: bool,
}

impl Theme {
    /// Honours the NO_COLOR convention: present and not empty disables colour.
    pub fn from_env() -> Self {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Self { color: !no_color }
    }

    pub fn plain(self) -> Style {
        Style::new()
    }
    pub fn dim(self) -> Style {
        if self.color {
            Style::new().fg(Color::DarkGray)
        } else {
            Style::new().add_modifier(Modifier::DIM)
        }
    }
    pub fn bold(self) -> Style {
        Style::new().add_modifier(Modifier::BOLD)
    }
    pub fn accent(self) -> Style {
        if self.color {
            Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD)
        } else {
            Style::new().add_modifier(Modifier::BOLD)
        }
    }
    /// The cursor and the selected row: reverse video reads in colour and without.
    pub fn cursor(self) -> Style {
        if self.color {
            Style::new()
                .fg(Color::Black)
                .bg(Color::Yellow)
                .add_modifier(Modifier::BOLD)
        } else {
            Style::new().add_modifier(Modifier::REVERSED | Modifier::BOLD)
        }
    }
    pub fn error(self) -> Style {
        if self.color {
            Style::new().fg(Color::Red).add_modifier(Modifier::BOLD)
        } else {
            Style::new().add_modifier(Modifier::BOLD)
        }
    }
    pub fn notice(self) -> Style {
        if self.color {
            Style::new().fg(Color::Yellow)
        } else {
            Style::new().add_modifier(Modifier::ITALIC)
        }
    }
    /// A changed value (a flipped bit, a nudged dimension).
    pub fn changed(self) -> Style {
        if self.color {
            Style::new()
                .fg(Color::Magenta)
                .add_modifier(Modifier::BOLD | Modifier::UNDERLINED)
        } else {
            Style::new().add_modifier(Modifier::BOLD | Modifier::UNDERLINED)
        }
    }
    pub fn bar(self) -> Style {
        if self.color {
            Style::new().fg(Color::Blue)
        } else {
            Style::new()
        }
    }
    pub fn focus_border(self, focused: bool) -> Style {
        match (focused, self.color) {
            (true, true) => Style::new().fg(Color::Cyan),
            (true, false) => Style::new().add_modifier(Modifier::BOLD),
            (false, _) => self.dim(),
        }
    }
    /// A bit's digit coloured by its probability p (colour only; the p row carries it without).
    pub fn bit(self, p: f32) -> Style {
        if self.color {
            let v = (p.clamp(0.0, 1.0) * 255.0) as u8;
            Style::new().fg(Color::Rgb(255 - v / 2, 120 + v / 2, 80 + v / 2))
        } else {
            Style::new()
        }
    }
    /// Diverging heat-map colour for a correlation r, full strength at |r| = `max` (the
    /// largest shown): red for positive, blue for negative, dark grey for 0.
    pub fn heat(self, r: f64, max: f64) -> Color {
        let f = if max > 0.0 {
            (r.abs() / max).min(1.0)
        } else {
            0.0
        };
        let lift = |to: f64| (40.0 + (to - 40.0) * f).round() as u8;
        if r >= 0.0 {
            Color::Rgb(lift(255.0), 40, 40)
        } else {
            Color::Rgb(40, lift(110.0), lift(255.0))
        }
    }
    pub fn block(self, title: impl Into<Line<'static>>, focused: bool) -> Block<'static> {
        Block::new()
            .borders(Borders::ALL)
            .border_style(self.focus_border(focused))
            .title(title)
    }
}

pub const SPINNER: [&str; 10] = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"];
/// Eighth blocks from empty to full, for vertical bars.
pub const EIGHTHS: [&str; 9] = [" ", "▁", "▂", "▃", "▄", "▅", "▆", "▇", "█"];
/// Shades from empty to full, for heat maps without colour.
pub const SHADES: [&str; 5] = [" ", "░", "▒", "▓", "█"];

/// Sets one cell if it lies inside `clip`.
pub fn put(buf: &mut Buffer, clip: Rect, x: u16, y: u16, symbol: &str, style: Style) {
    if x >= clip.x && x < clip.right() && y >= clip.y && y < clip.bottom() {
        if let Some(cell) = buf.cell_mut((x, y)) {
            cell.set_symbol(symbol).set_style(style);
        }
    }
}

/// Takes out of every cell of `area` what a terminal would obey rather than show: control
/// characters and bidirectional formatting characters ([`is_unsafe`]). ratatui drops control
/// characters from the strings it lays out, but keeps a zero-width character with the cell
/// before it (a block's title, a list item) and draws whatever a cell is given; a cell left
/// empty shows U+FFFD. Run over the finished frame, so no widget can send one to the terminal.
pub fn scrub_unsafe(buf: &mut Buffer, area: Rect) {
    let area = area.intersection(buf.area);
    for y in area.top()..area.bottom() {
        for x in area.left()..area.right() {
            let Some(cell) = buf.cell_mut((x, y)) else {
                continue;
            };
            if !cell.symbol().chars().any(is_unsafe) {
                continue;
            }
            let kept: String = cell.symbol().chars().filter(|&c| !is_unsafe(c)).collect();
            cell.set_symbol(if kept.is_empty() { "\u{fffd}" } else { &kept });
        }
    }
}

/// Writes a string clipped to the row of `clip` it lands on.
pub fn text(buf: &mut Buffer, clip: Rect, x: u16, y: u16, s: &str, style: Style) {
    if y < clip.y || y >= clip.bottom() || x >= clip.right() {
        return;
    }
    buf.set_stringn(x, y, s, (clip.right() - x) as usize, style);
}

/// Renders lines in an area (no wrapping, clipped).
pub fn lines(buf: &mut Buffer, area: Rect, content: Vec<Line<'_>>) {
    Paragraph::new(content).render(area, buf);
}

/// A background job's progress bar with its percentage (0 until the first report).
pub fn job_gauge(buf: &mut Buffer, area: Rect, theme: Theme, progress: Option<f64>) {
    job_gauge_waiting(buf, area, theme, progress, None)
}

/// [`job_gauge`] for a job that may be queued behind another corpus job (one runs at a time):
/// `waiting` (`Jobs::waiting_note`: "waiting for the clustering to finish (42%)") is its label
/// instead of a silent 0 %.
pub fn job_gauge_waiting(
    buf: &mut Buffer,
    area: Rect,
    theme: Theme,
    progress: Option<f64>,
    waiting: Option<String>,
) {
    let ratio = progress.unwrap_or(0.0).clamp(0.0, 1.0);
    Gauge::default()
        .gauge_style(theme.bar())
        .ratio(ratio)
        .label(waiting.unwrap_or_else(|| format!("{:.0}%", ratio * 100.0)))
        .render(area, buf);
}

/// A bordered panel titled `title` with `content` wrapped to its width: how tabs say that
/// something is missing, pending or failed.
pub fn message_panel(
    buf: &mut Buffer,
    area: Rect,
    theme: Theme,
    title: &'static str,
    content: Vec<Line<'_>>,
) {
    let block = theme.block(Span::styled(title, theme.bold()), false);
    let inner = block.inner(area);
    block.render(area, buf);
    wrapped(buf, inner, content);
}

/// "   showing bits 8–71 of 128" when a row of columns shows only part of a code.
pub fn window_notice(unit: &str, first: usize, shown: usize, total: usize) -> Option<String> {
    (first > 0 || first + shown < total)
        .then(|| format!("   showing {unit} {first}–{} of {total}", first + shown - 1))
}

/// Which items of a list of `len` a panel of `rows` lines shows so that `selected` is in view
/// with as little scroll as possible; where items are hidden a line says how many ("↑ N more"
/// above, "↓ N more" below; no such lines in fewer than 3 rows).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListWindow {
    /// The first item shown and how many are.
    pub start: usize,
    pub count: usize,
    /// Items hidden above and below.
    pub above: usize,
    pub below: usize,
    /// Whether a line above (below) the items says how many are hidden there.
    pub marks: bool,
}

impl ListWindow {
    pub fn new(selected: usize, len: usize, rows: usize) -> Self {
        let sel = selected.min(len.saturating_sub(1));
        let window = |start: usize, count: usize| ListWindow {
            start,
            count,
            above: start,
            below: len - start - count,
            marks: rows >= 3,
        };
        if len <= rows {
            return window(0, len);
        }
        if rows < 3 {
            let start = (sel + 1).saturating_sub(rows.max(1));
            return window(start, rows.min(len - start));
        }
        if sel < rows - 1 {
            // The top of the list, and a line for the rest below.
            return window(0, rows - 1);
        }
        if sel >= len - (rows - 1) {
            // The end of the list, and a line for the rest above.
            return window(len - (rows - 1), rows - 1);
        }
        // Lines for both; the selection on the last row.
        let count = rows - 2;
        window(sel + 1 - count, count)
    }

    /// The line above the items: "↑ N more", indented by `indent` columns, if any.
    pub fn above_line(&self, indent: usize) -> Option<String> {
        (self.marks && self.above > 0).then(|| format!("{:indent$}↑ {} more", "", self.above))
    }

    /// The line below the items: "↓ N more", if any.
    pub fn below_line(&self, indent: usize) -> Option<String> {
        (self.marks && self.below > 0).then(|| format!("{:indent$}↓ {} more", "", self.below))
    }
}

/// How many bits of a code of `len` a row of `width` columns shows, and the marks of those cut:
/// the first bits and `…+N bits` where only the end is cut; where `focus` (a bit to keep in
/// view) lies beyond, a window around it between `…` and `… bits S–E of L`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BitsFit {
    pub start: usize,
    pub count: usize,
    pub prefix: &'static str,
    pub suffix: String,
}

impl BitsFit {
    pub fn new(len: usize, width: usize, focus: Option<usize>) -> Self {
        let whole = BitsFit {
            start: 0,
            count: len,
            prefix: "",
            suffix: String::new(),
        };
        if len <= width {
            return whole;
        }
        let digits = len.to_string().len();
        // "…+N bits"
        let count = width.saturating_sub(7 + digits);
        if count == 0 {
            return BitsFit {
                count: width,
                ..whole
            };
        }
        if focus.is_none_or(|f| f < count) {
            return BitsFit {
                start: 0,
                count,
                prefix: "",
                suffix: format!("…+{} bits", len - count),
            };
        }
        // "…" + bits + "… bits S–E of L"
        let count = width.saturating_sub(1 + 12 + 3 * digits).max(1);
        let focus = focus.unwrap_or(0).min(len - 1);
        let start = focus.saturating_sub(count / 2).min(len - count);
        let end = start + count;
        BitsFit {
            start,
            count,
            prefix: if start > 0 { "…" } else { "" },
            suffix: if end < len {
                format!("… bits {start}–{} of {len}", end - 1)
            } else {
                format!(" (bits {start}–{} of {len})", end - 1)
            },
        }
    }

    /// The code's bits as they fit, marks included.
    pub fn text(code: &[f32], width: usize) -> String {
        let fit = BitsFit::new(code.len(), width, None);
        let bits = crate::explore::bit_string(&code[fit.start..fit.start + fit.count]);
        format!("{}{bits}{}", fit.prefix, fit.suffix)
    }
}

/// Renders lines with word wrap.
pub fn wrapped(buf: &mut Buffer, area: Rect, content: Vec<Line<'_>>) {
    Paragraph::new(content)
        .wrap(Wrap { trim: false })
        .render(area, buf);
}

/// The outcome of a key on a [`TextInput`].
#[derive(Debug, PartialEq, Eq)]
pub enum InputAction {
    Submit,
    Cancel,
    Edited,
    /// Moved the cursor or did nothing visible.
    Moved,
    /// Not a text-editing key; the caller may use it.
    Ignored,
}

/// A one-line text field. Input beyond `MAX_CHARS` is refused so a pasted book cannot make
/// every frame slow; the model truncates much earlier anyway.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TextInput {
    chars: Vec<char>,
    cursor: usize,
    /// Set when input was refused for length.
    pub overflow: bool,
}

impl TextInput {
    pub const MAX_CHARS: usize = 2000;

    pub fn with_text(s: &str) -> Self {
        let chars: Vec<char> = s.chars().take(Self::MAX_CHARS).collect();
        Self {
            cursor: chars.len(),
            chars,
            overflow: false,
        }
    }

    pub fn text(&self) -> String {
        self.chars.iter().collect()
    }

    pub fn is_blank(&self) -> bool {
        self.chars.iter().all(|c| c.is_whitespace())
    }

    pub fn set(&mut self, s: &str) {
        *self = Self::with_text(s);
    }

    /// Inserts pasted text at the cursor in one edit. Line breaks and tabs become spaces (the
    /// field is one line, and a pasted newline must not submit half a paste); text beyond
    /// `MAX_CHARS` is dropped and `overflow` says so.
    pub fn insert_str(&mut self, s: &str) {
        let room = Self::MAX_CHARS.saturating_sub(self.chars.len());
        let mut pasted = s
            .chars()
            .filter(|&c| c != '\r' || !s.contains("\r\n"))
            .map(|c| if c.is_control() { ' ' } else { c });
        let taken: Vec<char> = pasted.by_ref().take(room).collect();
        self.overflow = pasted.next().is_some();
        let n = taken.len();
        self.chars.splice(self.cursor..self.cursor, taken);
        self.cursor += n;
    }

    pub fn on_key(&mut self, key: KeyEvent) -> InputAction {
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        // Alt-letter is a command by terminal convention (and what Esc+key looks like), not text.
        let alt = key.modifiers.contains(KeyModifiers::ALT);
        match key.code {
            KeyCode::Enter => InputAction::Submit,
            KeyCode::Esc => InputAction::Cancel,
            KeyCode::Char('u') if ctrl => {
                self.chars.drain(..self.cursor);
                self.cursor = 0;
                InputAction::Edited
            }
            KeyCode::Char('w') if ctrl => {
                let mut start = self.cursor;
                while start > 0 && self.chars[start - 1] == ' ' {
                    start -= 1;
                }
                while start > 0 && self.chars[start - 1] != ' ' {
                    start -= 1;
                }
                self.chars.drain(start..self.cursor);
                self.cursor = start;
                InputAction::Edited
            }
            KeyCode::Char('a') if ctrl => {
                self.cursor = 0;
                InputAction::Moved
            }
            KeyCode::Char('e') if ctrl => {
                self.cursor = self.chars.len();
                InputAction::Moved
            }
            KeyCode::Char(c) if !ctrl && !alt => {
                if self.chars.len() >= Self::MAX_CHARS {
                    self.overflow = true;
                    return InputAction::Moved;
                }
                self.chars.insert(self.cursor, c);
                self.cursor += 1;
                InputAction::Edited
            }
            KeyCode::Backspace => {
                if self.cursor > 0 {
                    self.cursor -= 1;
                    self.chars.remove(self.cursor);
                    self.overflow = false;
                }
                InputAction::Edited
            }
            KeyCode::Delete => {
                if self.cursor < self.chars.len() {
                    self.chars.remove(self.cursor);
                    self.overflow = false;
                }
                InputAction::Edited
            }
            KeyCode::Left => {
                self.cursor = self.cursor.saturating_sub(1);
                InputAction::Moved
            }
            KeyCode::Right => {
                self.cursor = (self.cursor + 1).min(self.chars.len());
                InputAction::Moved
            }
            KeyCode::Home => {
                self.cursor = 0;
                InputAction::Moved
            }
            KeyCode::End => {
                self.cursor = self.chars.len();
                InputAction::Moved
            }
            _ => InputAction::Ignored,
        }
    }

    /// Draws `prompt` then the text, scrolled so the cursor stays visible; the cursor is a
    /// reversed cell when `focused`. Laid out by display width: a wide character (CJK) takes
    /// two cells, a zero-width one (a combining accent) joins the cell before it.
    pub fn render(&self, buf: &mut Buffer, area: Rect, prompt: &str, focused: bool, theme: Theme) {
        if area.width == 0 || area.height == 0 {
            return;
        }
        let y = area.y;
        let pw = prompt.chars().count() as u16;
        text(buf, area, area.x, y, prompt, theme.accent());
        let avail = area.width.saturating_sub(pw + 1) as usize;
        if avail == 0 {
            return;
        }
        // A text loaded from a corpus may hold control or bidirectional formatting
        // characters: each is drawn as a visible stand-in ([`visible_char`]).
        let shown: Vec<char> = self.chars.iter().map(|&c| visible_char(c)).collect();
        let width = |c: char| UnicodeWidthChar::width(c).unwrap_or(0);
        // The first character drawn: as far back as the cursor's cell (one column past the
        // end) still fits.
        let mut start = self.cursor;
        let mut used = shown.get(self.cursor).map_or(1, |&c| width(c).max(1));
        while start > 0 && used + width(shown[start - 1]) <= avail {
            start -= 1;
            used += width(shown[start]);
        }
        // A zero-width character joins the cell before it, which must be drawn too.
        while start > 0 && width(shown[start]) == 0 {
            start -= 1;
        }
        let x0 = area.x + pw;
        let right = x0 + avail as u16;
        let mut x = x0;
        let mut last: Option<u16> = None;
        let mut cursor_x = None;
        for (i, &c) in shown.iter().enumerate().skip(start) {
            let w = width(c) as u16;
            if w == 0 {
                if let Some(lx) = last {
                    let mut symbol = buf[(lx, y)].symbol().to_string();
                    symbol.push(c);
                    buf[(lx, y)].set_symbol(&symbol);
                }
                if i == self.cursor {
                    cursor_x = last.or(Some(x));
                }
                continue;
            }
            if x + w > right {
                break;
            }
            let mut s = [0u8; 4];
            put(buf, area, x, y, c.encode_utf8(&mut s), theme.plain());
            for hidden in x + 1..x + w {
                // Covered by the wide character (ratatui's convention for such cells).
                if let Some(cell) = buf.cell_mut((hidden, y)) {
                    cell.reset();
                }
            }
            if i == self.cursor {
                cursor_x = Some(x);
            }
            last = Some(x);
            x += w;
        }
        if focused {
            let cx = cursor_x.unwrap_or(x);
            if self.cursor >= shown.len() {
                put(buf, area, cx, y, " ", Style::new());
            }
            if let Some(cell) = buf.cell_mut((cx, y)) {
                if cx < area.right() {
                    cell.set_style(Style::new().add_modifier(Modifier::REVERSED));
                }
            }
        }
    }
}

/// Columns of a row of `n` cells grouped by 8 (a space between groups), windowed around
/// `cursor` when they do not all fit in `width`. Returns (first index, count, x offsets).
pub fn grouped_columns(n: usize, cursor: usize, width: u16) -> (usize, Vec<u16>) {
    let width = width as usize;
    let groups_fit = (width + 1) / 9;
    let total_groups = n.div_ceil(8);
    let (first_group, groups) = if total_groups <= groups_fit || groups_fit == 0 {
        (0, total_groups)
    } else {
        let cg = cursor.min(n.saturating_sub(1)) / 8;
        let start = cg
            .saturating_sub(groups_fit / 2)
            .min(total_groups - groups_fit);
        (start, groups_fit)
    };
    let first = first_group * 8;
    let last = ((first_group + groups) * 8).min(n);
    let xs: Vec<u16> = (first..last)
        .map(|j| (j - first + (j - first) / 8) as u16)
        .filter(|&x| (x as usize) < width)
        .collect();
    (first, xs)
}

/// Vertical bars at the given columns: `values[k]` drawn at `xs[k]`, scaled from `lo` (empty)
/// to `hi` (full height). `reference`, if any, is drawn as a dotted line where bars do not
/// reach it; `highlight` is the index (into `values`) drawn in the cursor style.
#[allow(clippy::too_many_arguments)]
pub fn vertical_bars(
    buf: &mut Buffer,
    area: Rect,
    xs: &[u16],
    values: &[f64],
    lo: f64,
    hi: f64,
    reference: Option<f64>,
    highlight: Option<usize>,
    theme: Theme,
) {
    let h = area.height as usize;
    if h == 0 {
        return;
    }
    let span = (hi - lo).max(1e-12);
    let eighths_of = |v: f64| -> usize {
        let f = ((v - lo) / span).clamp(0.0, 1.0);
        (f * (h * 8) as f64).round() as usize
    };
    let ref_row = reference.map(|r| {
        let e = eighths_of(r);
        // The row (counted from the bottom) whose top edge sits at the reference.
        (e.div_ceil(8)).clamp(1, h) - 1
    });
    for (k, (&x, &v)) in xs.iter().zip(values).enumerate() {
        let e = if v.is_finite() { eighths_of(v) } else { 0 };
        let style = if Some(k) == highlight {
            theme.accent()
        } else {
            theme.bar()
        };
        for row in 0..h {
            let y = area.bottom() - 1 - row as u16;
            let filled = e.saturating_sub(row * 8).min(8);
            let sym = EIGHTHS[filled];
            if filled == 0 && Some(row) == ref_row {
                put(buf, area, area.x + x, y, "┄", theme.dim());
            } else if filled > 0 {
                let st = if Some(k) == highlight && !theme.color {
                    style.add_modifier(Modifier::REVERSED)
                } else {
                    style
                };
                put(buf, area, area.x + x, y, sym, st);
            }
        }
        if Some(k) == highlight && e == 0 {
            put(
                buf,
                area,
                area.x + x,
                area.bottom() - 1,
                "▁",
                theme.accent(),
            );
        }
    }
}

/// How a heat map was scaled: each cell shows `block`×`block` entries, or each entry spans
/// `scale` rows and 2·`scale` columns.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HeatScale {
    pub block: usize,
    pub scale: usize,
    /// The largest |r| off the diagonal: the colours' (shades') full strength.
    pub max: f64,
}

/// A heat map of a square matrix in [-1, 1]. Small matrices are enlarged (an entry is two
/// columns by one row per step, which looks square); large ones are downsampled, each cell
/// showing the value of largest magnitude in its block, ignoring the diagonal (always 1, and
/// uninformative). With colour, downsampled maps put two matrix rows in one terminal row
/// (upper half block); without colour, |r| is drawn with shade characters.
pub fn heat_map(buf: &mut Buffer, area: Rect, m: &[Vec<f64>], theme: Theme) -> HeatScale {
    let n = m.len();
    // Correlations of a code's bits are mostly small: the colours span the largest shown.
    let max = m
        .iter()
        .enumerate()
        .flat_map(|(i, row)| row.iter().enumerate().filter(move |(j, _)| *j != i))
        .map(|(_, v)| v.abs())
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max);
    let none = HeatScale {
        block: 1,
        scale: 1,
        max,
    };
    if n == 0 || area.width == 0 || area.height == 0 {
        return none;
    }
    let (w, h) = (area.width as usize, area.height as usize);
    let shade = |v: f64| {
        let f = if max > 0.0 { v.abs() / max } else { 0.0 };
        SHADES[((f * 4.0).round() as usize).min(4)]
    };
    let heat = |v: f64| theme.heat(v, max);
    if 2 * n <= w && n <= h {
        let scale = (w / (2 * n)).min(h / n).max(1);
        for (i, row) in m.iter().enumerate() {
            for (j, &v) in row.iter().enumerate() {
                let (sym, style) = match (i == j, theme.color) {
                    (true, _) => ("╲", theme.dim()),
                    (false, true) => ("█", Style::new().fg(heat(v))),
                    (false, false) => (shade(v), theme.plain()),
                };
                for dy in 0..scale {
                    for dx in 0..2 * scale {
                        let x = area.x + (2 * scale * j + dx) as u16;
                        let y = area.y + (scale * i + dy) as u16;
                        put(buf, area, x, y, sym, style);
                    }
                }
            }
        }
        return HeatScale {
            block: 1,
            scale,
            max,
        };
    }
    let rows_per_line = if theme.color { 2 } else { 1 };
    let block = n.div_ceil(w.min(h * rows_per_line).max(1)).max(1);
    let cells = n.div_ceil(block);
    let value = |bi: usize, bj: usize| -> Option<f64> {
        let mut best: Option<f64> = None;
        for (i, row) in m.iter().enumerate().skip(bi * block).take(block) {
            for (j, &v) in row.iter().enumerate().skip(bj * block).take(block) {
                if i == j {
                    continue;
                }
                if best.is_none_or(|b| v.abs() > b.abs()) {
                    best = Some(v);
                }
            }
        }
        best
    };
    for cj in 0..cells {
        if theme.color {
            let x = area.x + cj as u16;
            for line in 0..cells.div_ceil(2) {
                let y = area.y + line as u16;
                let top = value(2 * line, cj);
                let bottom = if 2 * line + 1 < cells {
                    value(2 * line + 1, cj)
                } else {
                    None
                };
                let fg = top.map_or(Color::Gray, heat);
                let bg = match (2 * line + 1 < cells, bottom) {
                    (false, _) => Color::Reset,
                    (true, Some(v)) => heat(v),
                    (true, None) => Color::Gray,
                };
                put(buf, area, x, y, "▀", Style::new().fg(fg).bg(bg));
            }
        } else {
            // Two columns per cell when they fit, so that cells look square.
            let cw: u16 = if 2 * cells <= w { 2 } else { 1 };
            for ci in 0..cells {
                let y = area.y + ci as u16;
                let sym = value(ci, cj).map_or("╲", shade);
                for dx in 0..cw {
                    put(
                        buf,
                        area,
                        area.x + cj as u16 * cw + dx,
                        y,
                        sym,
                        theme.plain(),
                    );
                }
            }
        }
    }
    HeatScale {
        block,
        scale: 1,
        max,
    }
}

/// A centred box with the help text; `scroll` skips lines of `content` from the top (lines,
/// not wrapped rows, so that a section starts at the line that names it).
pub fn help_overlay(
    buf: &mut Buffer,
    area: Rect,
    content: Vec<Line<'static>>,
    scroll: u16,
    theme: Theme,
) {
    let w = area.width.saturating_sub(4).min(92);
    let h = area.height.saturating_sub(2);
    let r = Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    };
    Clear.render(r, buf);
    let block = theme.block(
        Line::from(vec![
            Span::styled(" Keys ", theme.accent()),
            Span::styled(
                "(↑/↓ PgUp/PgDn scroll · Home: from the top · Esc or ? closes) ",
                theme.dim(),
            ),
        ]),
        true,
    );
    let content: Vec<Line<'static>> = content.into_iter().skip(scroll as usize).collect();
    Paragraph::new(content)
        .block(block)
        .wrap(Wrap { trim: false })
        .render(r, buf);
}

/// Formats seconds as 1m05s or 2h03m.
pub fn fmt_secs(s: f64) -> String {
    let s = if s.is_finite() { s.max(0.0) as u64 } else { 0 };
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else {
        format!("{}m{:02}s", s / 60, s % 60)
    }
}

/// What the Neighbors and Map tabs say while their cache loads or is built: the cache found
/// when the model was opened (a shipped one beside the checkpoint when `--cache-dir` has none),
/// else only the build, and where a build is saved.
pub fn cache_message(
    what: &str,
    found: Option<&std::path::Path>,
    save: &std::path::Path,
    build: &str,
) -> String {
    match found {
        Some(found) => format!(
            "Loading the {what} saved as {}, or, if it is out of date, {build} to make a new one \
             (saved to {}, so next time it just loads)…",
            found.display(),
            save.display()
        ),
        None => {
            let mut build = build.to_string();
            if let Some(first) = build.get(..1) {
                let upper = first.to_uppercase();
                build.replace_range(..1, &upper);
            }
            format!(
                "{build} to make the {what} (saved to {}, so next time it just loads)…",
                save.display()
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrubbing_a_frame_removes_what_a_terminal_would_obey() {
        let area = Rect::new(0, 0, 12, 3);
        let mut buf = Buffer::empty(area);
        // ratatui keeps a zero-width character with the cell before it in a block's title.
        Block::new()
            .borders(Borders::ALL)
            .title("a\u{202e}bc")
            .render(area, &mut buf);
        put(&mut buf, area, 2, 1, "\x1b", Style::new());
        put(&mut buf, area, 3, 1, "e\u{2066}", Style::new());
        assert_eq!(buf[(1, 0)].symbol(), "a\u{202e}", "ratatui keeps the mark");
        scrub_unsafe(&mut buf, area);
        assert_eq!(buf[(1, 0)].symbol(), "a");
        assert_eq!(buf[(2, 0)].symbol(), "b");
        assert_eq!(buf[(2, 1)].symbol(), "\u{fffd}");
        assert_eq!(buf[(3, 1)].symbol(), "e");
        assert_eq!(buf[(0, 0)].symbol(), "┌", "the rest is untouched");
    }

    #[test]
    fn a_text_field_draws_control_and_bidi_characters_as_visible_stand_ins() {
        let area = Rect::new(0, 0, 12, 1);
        let mut buf = Buffer::empty(area);
        let field = TextInput::with_text("a\x1b[\u{202e}\u{9b}\u{7f}é");
        field.render(&mut buf, area, "› ", false, Theme { color: false });
        let row: String = (0..10).map(|x| buf[(x, 0)].symbol().to_string()).collect();
        assert_eq!(row, "› a␛[\u{fffd}\u{fffd}␡é ");
        assert_eq!(
            field.text(),
            "a\x1b[\u{202e}\u{9b}\u{7f}é",
            "the text itself is kept"
        );
    }

    #[test]
    fn a_text_field_lays_out_wide_and_zero_width_characters_by_display_width() {
        let cells = |buf: &Buffer, n: u16| -> Vec<String> {
            (0..n).map(|x| buf[(x, 0)].symbol().to_string()).collect()
        };
        let field = TextInput::with_text("日本語 e\u{301}x");
        let area = Rect::new(0, 0, 14, 1);
        let mut buf = Buffer::empty(area);
        field.render(&mut buf, area, "› ", true, Theme { color: false });
        // Each CJK character takes two cells (the second blank, hidden by it); the accent
        // joins its letter; the cursor is the reversed cell past the end.
        assert_eq!(
            cells(&buf, 12),
            ["›", " ", "日", " ", "本", " ", "語", " ", " ", "e\u{301}", "x", " "]
        );
        assert!(buf[(11, 0)].modifier.contains(Modifier::REVERSED));
        assert!(!buf[(10, 0)].modifier.contains(Modifier::REVERSED));
        // Narrow: scrolled by width so the cursor's cell stays visible, never half a character.
        let area = Rect::new(0, 0, 8, 1);
        let mut buf = Buffer::empty(area);
        field.render(&mut buf, area, "› ", true, Theme { color: false });
        assert_eq!(
            cells(&buf, 8),
            ["›", " ", " ", "e\u{301}", "x", " ", " ", " "]
        );
        assert!(buf[(5, 0)].modifier.contains(Modifier::REVERSED));
        // The cursor on a wide character reverses its cell.
        let mut home = field.clone();
        home.on_key(KeyEvent::new(KeyCode::Home, KeyModifiers::NONE));
        home.on_key(KeyEvent::new(KeyCode::Right, KeyModifiers::NONE));
        let mut buf = Buffer::empty(area);
        home.render(&mut buf, area, "› ", true, Theme { color: false });
        assert_eq!(cells(&buf, 6), ["›", " ", "日", " ", "本", " "]);
        assert!(buf[(4, 0)].modifier.contains(Modifier::REVERSED));
        assert!(!buf[(2, 0)].modifier.contains(Modifier::REVERSED));
    }

    #[test]
    fn grouped_columns_fit_or_window_around_the_cursor() {
        let (first, xs) = grouped_columns(16, 0, 40);
        assert_eq!(first, 0);
        assert_eq!(xs.len(), 16);
        assert_eq!(xs[8], 9, "a space between groups");
        let (first, xs) = grouped_columns(64, 63, 20);
        assert_eq!(xs.len(), 16);
        assert_eq!(first, 48);
    }

    #[test]
    fn heat_map_enlarges_small_and_shrinks_large_matrices() {
        let mono = Theme { color: false };
        let m = vec![
            vec![1.0, 0.9, -0.1],
            vec![0.9, 1.0, 0.0],
            vec![-0.1, 0.0, 1.0],
        ];
        let area = Rect::new(0, 0, 12, 6);
        let mut buf = Buffer::empty(area);
        let s = heat_map(&mut buf, area, &m, mono);
        assert_eq!(
            s,
            HeatScale {
                block: 1,
                scale: 2,
                max: 0.9
            }
        );
        assert_eq!(buf[(0, 0)].symbol(), "╲");
        assert_eq!(
            buf[(4, 0)].symbol(),
            "█",
            "|0.9|, the largest, is the darkest shade"
        );
        assert_eq!(buf[(8, 0)].symbol(), " ", "|−0.1| rounds to no shade");
        let big: Vec<Vec<f64>> = (0..64)
            .map(|i| (0..64).map(|j| if i == j { 1.0 } else { 0.5 }).collect())
            .collect();
        let area = Rect::new(0, 0, 40, 8);
        let mut buf = Buffer::empty(area);
        assert_eq!(heat_map(&mut buf, area, &big, mono).block, 8);
        assert_eq!(buf[(0, 0)].symbol(), "█", "0.5 is the largest |r| here");
    }

    #[test]
    fn text_input_edits_and_refuses_overflow() {
        let mut t = TextInput::with_text("a dog");
        t.on_key(KeyEvent::from(KeyCode::Backspace));
        assert_eq!(t.text(), "a do");
        t.on_key(KeyEvent::new(KeyCode::Char('w'), KeyModifiers::CONTROL));
        assert_eq!(t.text(), "a ");
        let mut long = TextInput::with_text(&"x".repeat(TextInput::MAX_CHARS));
        long.on_key(KeyEvent::from(KeyCode::Char('y')));
        assert!(long.overflow);
        assert_eq!(long.text().len(), TextInput::MAX_CHARS);
    }
}

/// A one-line message in the footer until the next key.
#[derive(Clone, Debug, PartialEq)]
pub struct Status {
    pub text: String,
    pub error: bool,
}

/// A colour per label index.
pub fn label_color(label: Option<u32>) -> Color {
    const PALETTE: [Color; 12] = [
        Color::Cyan,
        Color::Magenta,
        Color::Yellow,
        Color::Green,
        Color::Red,
        Color::Blue,
        Color::LightCyan,
        Color::LightMagenta,
        Color::LightYellow,
        Color::LightGreen,
        Color::LightRed,
        Color::LightBlue,
    ];
    match label {
        Some(l) => PALETTE[l as usize % PALETTE.len()],
        None => Color::Gray,
    }
}

/// The symbol marking the current sentence on the map.
pub const CURRENT: &str = "◆";

/// `n` with a comma between each group of three digits (123,773).
pub fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}
