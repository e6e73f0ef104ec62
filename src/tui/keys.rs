//! Key bindings as data. Each tab has one table of [`Binding`]s; the same table decides what a
//! key does (dispatch), what the footer hints and what the `?` overlay lists, so the three
//! cannot disagree, and a new tab is a new table plus the function that performs its actions.
//!
//! A binding can be limited to some kinds of model ([`Only`]). A key bound only for other
//! kinds is not silently ignored: [`lookup`] returns why it does nothing, for the footer.

use crossterm::event::KeyCode;

use crate::coder::Capabilities;
#[cfg(test)]
use crate::model::LatentKind;

/// The kinds of model a binding applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Only {
    Any,
    /// Binary codes (bits).
    Binary,
    /// Continuous codes (gaussian, bottleneck).
    Continuous,
    /// Anything but binary codes: continuous codes and `lm` models.
    NotBinary,
    /// Models whose codes decode to sentences (the sequence models).
    Text,
    /// Models with an encoder: typed sentences get a code (every kind but `lm`).
    Encodes,
    /// Models that decode codes to sentences (the sequence autoencoders; not `lm`, whose
    /// samples are never restricted).
    DecodesCodes,
}

impl Only {
    pub fn holds(self, caps: Capabilities) -> bool {
        let kind = caps.kind;
        match self {
            Only::Text => caps.decodes_text,
            Only::Encodes => caps.encodes,
            Only::DecodesCodes => caps.decodes_text && kind.has_latent(),
            Only::Any => true,
            Only::Binary => kind.is_binary(),
            Only::Continuous => kind.has_latent() && !kind.is_binary(),
            Only::NotBinary => !kind.is_binary(),
        }
    }

    /// What the help overlay adds after the description.
    fn note(self) -> &'static str {
        match self {
            Only::Any => "",
            Only::Binary => " (binary codes)",
            Only::Continuous => " (continuous codes)",
            Only::NotBinary => " (gaussian, lm)",
            Only::Text => " (sequence models)",
            Only::Encodes => " (models with an encoder)",
            Only::DecodesCodes => " (autoencoders that decode sentences)",
        }
    }

    fn who(self) -> &'static str {
        match self {
            Only::Any => "every model",
            Only::Binary => "binary codes",
            Only::Continuous => "continuous codes",
            Only::NotBinary => "gaussian and lm models",
            Only::Text => "models that decode codes to sentences",
            Only::Encodes => "models with an encoder (a typed sentence gets a code)",
            Only::DecodesCodes => {
                "autoencoders that decode codes to sentences (an lm's samples are never restricted)"
            }
        }
    }
}

/// Whether a binding is for navigation (keys are commands) or describes a key while a text
/// field has the focus (the field sees keys first; these are what it hands on).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Nav,
    Typing,
    /// With the Control key held (the global keys only).
    Ctrl,
}

#[derive(Clone, Copy, Debug)]
pub struct Binding<A: Copy + 'static> {
    pub keys: &'static [KeyCode],
    pub mode: Mode,
    /// The keys as the help shows them.
    pub label: &'static str,
    /// The help's description; empty when the row above already describes this binding (as
    /// `→` under `←`).
    pub help: &'static str,
    /// The footer's (keys, words), if the footer shows it.
    pub hint: Option<(&'static str, &'static str)>,
    pub only: Only,
    pub action: A,
}

/// A navigation binding.
pub const fn nav<A: Copy>(
    keys: &'static [KeyCode],
    label: &'static str,
    help: &'static str,
    hint: Option<(&'static str, &'static str)>,
    only: Only,
    action: A,
) -> Binding<A> {
    Binding {
        keys,
        mode: Mode::Nav,
        label,
        help,
        hint,
        only,
        action,
    }
}

/// The five rows of a selectable list (↓/j, ↑/k, PgDn, PgUp, Home/g), bound to a tab's own
/// `[down, up, page down, page up, top]` actions; `help` and `hint` describe them in the help
/// overlay and the footer, `only` says for which models (a list of codes: [`Only::Encodes`]).
pub const fn list_keys<A: Copy>(
    help: &'static str,
    hint: (&'static str, &'static str),
    only: Only,
    [down, up, page_down, page_up, top]: [A; 5],
) -> [Binding<A>; 5] {
    [
        nav(
            &[KeyCode::Down, KeyCode::Char('j')],
            "↑↓ jk PgUp/Dn Home",
            help,
            Some(hint),
            only,
            down,
        ),
        nav(
            &[KeyCode::Up, KeyCode::Char('k')],
            "↑ or k",
            "",
            None,
            only,
            up,
        ),
        nav(&[KeyCode::PageDown], "PgDn", "", None, only, page_down),
        nav(&[KeyCode::PageUp], "PgUp", "", None, only, page_up),
        nav(
            &[KeyCode::Home, KeyCode::Char('g')],
            "Home or g",
            "",
            None,
            only,
            top,
        ),
    ]
}

/// `w`, real words ↔ raw decoding, on every tab that decodes sentences (Explore, Path,
/// Sample): one setting ([`super::context::Shared::raw_decoding`]), one binding.
pub const fn real_words<A: Copy>(action: A) -> Binding<A> {
    nav(
        &[KeyCode::Char('w')],
        "w",
        "real words only (greedy and beam decoding keep to the training corpus's words; \
         subword models) ↔ the raw decoding, on every tab",
        Some(("w", "real words/raw")),
        Only::DecodesCodes,
        action,
    )
}

/// [`real_words`] on a tab that decodes nothing it shows (Stats, Train, Neighbors, the cluster
/// list): the same setting and help row, switched from here too (the footer then says where
/// it shows), without a footer hint.
pub const fn real_words_quiet<A: Copy>(action: A) -> Binding<A> {
    let mut b = real_words(action);
    b.hint = None;
    b
}

/// `e`, the same key wherever a tab lists sentences (a Neighbors row, a Sample decoding, the
/// Clusters analogy's result; the map's entry, as Enter there): the sentence becomes 1
/// Explore's, typed into its field and encoded, and Explore is shown, to flip its bits.
/// `help` names what is opened.
pub const fn to_explore<A: Copy>(help: &'static str, action: A) -> Binding<A> {
    nav(
        &[KeyCode::Char('e')],
        "e",
        help,
        Some(("e", "to Explore")),
        Only::Encodes,
        action,
    )
}

/// A binding while a text field has the focus.
pub const fn typing<A: Copy>(
    keys: &'static [KeyCode],
    label: &'static str,
    help: &'static str,
    hint: Option<(&'static str, &'static str)>,
    action: A,
) -> Binding<A> {
    Binding {
        keys,
        mode: Mode::Typing,
        label,
        help,
        hint,
        only: Only::Any,
        action,
    }
}

/// What a key does before any tab sees it ([`GLOBAL`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Global {
    /// A digit: the tab of that number in the registry (`app::TabId::ALL`).
    GoTo,
    NextTab,
    PreviousTab,
    Help,
    Quit,
    /// Ctrl-C: quit whatever has the focus.
    ForceQuit,
}

/// Placeholder in [`GLOBAL`]'s labels and hints for the number of tabs, which comes from the
/// tab registry (see [`numbered`]).
pub const TABS: &str = "{tabs}";

/// The keys the app handles before any tab: `Typing` bindings work also while a text field
/// has the focus, `Nav` ones only when it has not, `Ctrl` ones with the Control key held.
/// The digit row's label, help and hint name the tabs through [`TABS`], filled in from the
/// registry.
pub const GLOBAL: &[Binding<Global>] = &[
    nav(
        &[
            KeyCode::Char('1'),
            KeyCode::Char('2'),
            KeyCode::Char('3'),
            KeyCode::Char('4'),
            KeyCode::Char('5'),
            KeyCode::Char('6'),
            KeyCode::Char('7'),
            KeyCode::Char('8'),
            KeyCode::Char('9'),
        ],
        "1 … {tabs}",
        "switch tab: {tabs}",
        Some(("1-{tabs}/Tab", "tabs")),
        Only::Any,
        Global::GoTo,
    ),
    typing(
        &[KeyCode::Tab],
        "Tab / Shift-Tab",
        "next / previous tab (also while typing)",
        Some(("Tab", "next tab")),
        Global::NextTab,
    ),
    typing(
        &[KeyCode::BackTab],
        "Shift-Tab",
        "",
        None,
        Global::PreviousTab,
    ),
    nav(
        &[KeyCode::Char('?')],
        "? or F1",
        "this help (F1 also while typing; ↑/↓ scroll, Esc closes)",
        Some(("?", "keys")),
        Only::Any,
        Global::Help,
    ),
    typing(
        &[KeyCode::F(1)],
        "F1",
        "",
        Some(("F1", "keys")),
        Global::Help,
    ),
    nav(
        &[KeyCode::Char('q')],
        "q",
        "quit (not while typing; asks first while training)",
        Some(("q", "quit")),
        Only::Any,
        Global::Quit,
    ),
    Binding {
        keys: &[KeyCode::Char('c')],
        mode: Mode::Ctrl,
        label: "Ctrl-C",
        help: "quit, also while typing (asks first while training)",
        hint: Some(("Ctrl-C", "quit")),
        only: Only::Any,
        action: Global::ForceQuit,
    },
];

/// What a key does while the app asks whether to quit (a quit key pressed while a training
/// run is going, see [`CONFIRM_QUIT`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Confirm {
    /// Stop the run (it saves a checkpoint) and quit.
    Quit,
}

/// The keys that answer "quit?" while a training run is going: these quit (the run stops and
/// saves first), any other key stays. The footer's question and the help read this table.
pub const CONFIRM_QUIT: &[Binding<Confirm>] = &[
    nav(
        &[KeyCode::Char('y'), KeyCode::Char('q')],
        "y or q (asked to quit)",
        "stop the training run, save it and quit (any other key stays)",
        Some(("y/q", "stop, save and quit")),
        Only::Any,
        Confirm::Quit,
    ),
    Binding {
        keys: &[KeyCode::Char('c')],
        mode: Mode::Ctrl,
        label: "Ctrl-C (asked to quit)",
        help: "the same as y",
        hint: None,
        only: Only::Any,
        action: Confirm::Quit,
    },
];

/// The answer of a key to "quit?" ([`CONFIRM_QUIT`]): None stays.
pub fn confirm_quit(code: KeyCode, ctrl: bool) -> Option<Confirm> {
    CONFIRM_QUIT
        .iter()
        .find(|b| {
            b.keys.contains(&code)
                && match b.mode {
                    Mode::Ctrl => ctrl,
                    _ => !ctrl,
                }
        })
        .map(|b| b.action)
}

/// The footer's hints of [`CONFIRM_QUIT`].
pub fn confirm_quit_hints() -> Vec<(&'static str, &'static str)> {
    CONFIRM_QUIT.iter().filter_map(|b| b.hint).collect()
}

/// `s` with [`TABS`] replaced by `with` (the number of tabs in a label or hint, `1 … 7`;
/// their names in a description).
fn numbered(s: &str, with: &str) -> String {
    s.replace(TABS, with)
}

/// The help rows of [`GLOBAL`], with the tabs' number and names filled in, then those of
/// [`CONFIRM_QUIT`].
pub fn global_help_rows(titles: &[&str]) -> Vec<(String, String)> {
    GLOBAL
        .iter()
        .filter(|b| !b.help.is_empty())
        .map(|b| {
            (
                numbered(b.label, &titles.len().to_string()),
                numbered(b.help, &titles.join(", ")),
            )
        })
        .chain(help_rows(CONFIRM_QUIT))
        .collect()
}

/// The footer's hints of the global keys: those that work while typing, or the navigation
/// ones, with the number of tabs filled in. `essential`: only (or, false, all but) the keys
/// for the help and for quitting, which the footer always shows.
pub fn global_hints(typing: bool, tabs: usize, essential: bool) -> Vec<(String, &'static str)> {
    GLOBAL
        .iter()
        .filter(|b| match b.mode {
            Mode::Typing | Mode::Ctrl => typing,
            Mode::Nav => !typing,
        })
        .filter(|b| {
            matches!(b.action, Global::Help | Global::Quit | Global::ForceQuit) == essential
        })
        .filter_map(|b| b.hint)
        .map(|(k, what)| (numbered(k, &tabs.to_string()), what))
        .collect()
}

/// The global binding of a key: Control-held keys, then those that work while typing, then
/// (unless a text field has the focus) the navigation ones.
pub fn global(code: KeyCode, ctrl: bool, typing: bool) -> Option<Global> {
    let wanted = |b: &&Binding<Global>| {
        b.keys.contains(&code)
            && match b.mode {
                Mode::Ctrl => ctrl,
                Mode::Typing => true,
                Mode::Nav => !ctrl && !typing,
            }
    };
    GLOBAL.iter().find(wanted).map(|b| b.action)
}

/// What a key means on a tab.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lookup<A> {
    Action(A),
    /// Bound, but only for other kinds of model; the text says so.
    NotForThisModel(String),
    Unbound,
}

/// The action of the first binding of `mode` for `code` that applies to `kind`.
pub fn lookup<A: Copy>(
    table: &[Binding<A>],
    mode: Mode,
    code: KeyCode,
    caps: Capabilities,
) -> Lookup<A> {
    let mut elsewhere: Option<&Binding<A>> = None;
    for b in table
        .iter()
        .filter(|b| b.mode == mode && b.keys.contains(&code))
    {
        if b.only.holds(caps) {
            return Lookup::Action(b.action);
        }
        elsewhere.get_or_insert(b);
    }
    match elsewhere {
        Some(b) => {
            let row = help_row_of(table, b);
            Lookup::NotForThisModel(format!(
                "{}: only for {}, this model is `{}` — {}",
                row.label,
                b.only.who(),
                caps.name,
                row.help
            ))
        }
        None => Lookup::Unbound,
    }
}

/// The help row that describes `b`: itself, or the row it continues.
fn help_row_of<'t, A: Copy>(table: &'t [Binding<A>], b: &'t Binding<A>) -> &'t Binding<A> {
    if !b.help.is_empty() {
        return b;
    }
    let at = table.iter().position(|x| std::ptr::eq(x, b)).unwrap_or(0);
    table[..at]
        .iter()
        .rev()
        .find(|x| !x.help.is_empty())
        .unwrap_or(b)
}

/// The footer hints of the bindings of `mode` that apply to `kind`.
pub fn hints<A: Copy>(
    table: &[Binding<A>],
    mode: Mode,
    caps: Capabilities,
) -> Vec<(&'static str, &'static str)> {
    table
        .iter()
        .filter(|b| b.mode == mode && b.only.holds(caps))
        .filter_map(|b| b.hint)
        .collect()
}

/// [`hints`] of the bindings whose action `show` accepts (for footers that change with the
/// tab's state, such as Train's while a run is going).
pub fn hints_where<A: Copy>(
    table: &[Binding<A>],
    mode: Mode,
    caps: Capabilities,
    show: impl Fn(A) -> bool,
) -> Vec<(&'static str, &'static str)> {
    table
        .iter()
        .filter(|b| b.mode == mode && b.only.holds(caps) && show(b.action))
        .filter_map(|b| b.hint)
        .collect()
}

/// The help rows (keys, description) of a table, typing keys marked as such.
pub fn help_rows<A: Copy>(table: &[Binding<A>]) -> Vec<(String, String)> {
    table
        .iter()
        .filter(|b| !b.help.is_empty())
        .map(|b| {
            let label = match b.mode {
                Mode::Nav | Mode::Ctrl => b.label.to_string(),
                Mode::Typing => format!("{} (typing)", b.label),
            };
            (label, format!("{}{}", b.help, b.only.note()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum A {
        Flip,
        Up,
        Down,
    }

    const T: &[Binding<A>] = &[
        nav(
            &[KeyCode::Char(' ')],
            "Space",
            "flip",
            Some(("Space", "flip")),
            Only::Binary,
            A::Flip,
        ),
        nav(
            &[KeyCode::Char('+')],
            "+ / -",
            "nudge",
            Some(("+/-", "nudge")),
            Only::Continuous,
            A::Up,
        ),
        nav(
            &[KeyCode::Char('-')],
            "-",
            "",
            None,
            Only::Continuous,
            A::Down,
        ),
    ];

    #[test]
    fn lookup_applies_kinds_and_says_why_a_key_does_nothing() {
        let b = Capabilities::of_seq(LatentKind::Binary);
        let g = Capabilities::of_seq(LatentKind::Gaussian);
        let space = KeyCode::Char(' ');
        assert_eq!(lookup(T, Mode::Nav, space, b), Lookup::Action(A::Flip));
        assert_eq!(
            lookup(T, Mode::Nav, KeyCode::Char('-'), g),
            Lookup::Action(A::Down)
        );
        match lookup(T, Mode::Nav, KeyCode::Char('-'), b) {
            Lookup::NotForThisModel(why) => {
                assert!(
                    why.starts_with(
                        "+ / -: only for continuous codes, this model is `binary` — nudge"
                    ),
                    "{why}"
                )
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(lookup(T, Mode::Typing, space, b), Lookup::Unbound);
        assert_eq!(lookup(T, Mode::Nav, KeyCode::Char('x'), b), Lookup::Unbound);
        assert_eq!(hints(T, Mode::Nav, g), vec![("+/-", "nudge")]);
        assert_eq!(
            help_rows(T),
            vec![
                ("Space".to_string(), "flip (binary codes)".to_string()),
                ("+ / -".to_string(), "nudge (continuous codes)".to_string()),
            ]
        );
    }
}
