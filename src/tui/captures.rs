//! The book's screen captures and key tables ([`CHAPTER`], the explorer's chapter of the docs/
//! book), made by driving the real app over the shipped checkpoints with key events and reading
//! a `TestBackend`, so the book shows what the shipped files show now.
//! `cargo run --release --example screens` rewrites the chapter from [`readme_captures`] and
//! [`readme_keys`]; a test fails when the chapter differs from them.
//!
//! In the chapter each capture sits between `<!-- screen: NAME -->` and `<!-- /screen -->`, the
//! key tables between `<!-- keys -->` and `<!-- /keys -->`.
//! Paths are relative to the crate root (they appear on screen, e.g. in the Sample tab's
//! command line), so the caller runs from there.

use std::path::Path;

use anyhow::{bail, Context, Result};
use candle_core::Device;
use crossterm::event::{KeyCode, KeyEvent};

use super::app::{AppOptions, TabId};
use super::event::Msg;
use super::harness::Harness;
use super::widgets::Theme;
use crate::engine::Engine;

/// Size of every capture: wide enough for a 64-bit code in one row.
pub const WIDTH: u16 = 100;
pub const HEIGHT: u16 = 40;

/// The file (relative to the crate root) that holds the captures and the key tables.
pub const CHAPTER: &str = "docs/explorer.md";

pub const BINARY: &str = "checkpoints/binary.safetensors";
pub const VAE: &str = "checkpoints/vae.safetensors";

/// The sentence typed in the captures: one unknown word, so the notice shows.
const SENTENCE: &str = "a small dog that barks at strangers";
const OTHER: &str = "a large cat that sleeps all day";
/// The Clusters captures cluster this many train entries (a seeded subset).
pub const CLUSTERED_ENTRIES: usize = 10_000;

/// One named screen as text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Capture {
    pub name: &'static str,
    pub text: String,
}

fn harness(checkpoint: &str, color: bool) -> Result<Harness> {
    harness_with(checkpoint, color, false)
}

/// [`harness`], opening on a test sentence (`first_sentence`) as `latent-tui MODEL` does.
fn harness_with(checkpoint: &str, color: bool, first_sentence: bool) -> Result<Harness> {
    let engine = Engine::load(Path::new(checkpoint), &Device::Cpu)
        .with_context(|| format!("run from the crate root, where {checkpoint} is"))?;
    let mut h = Harness::new(
        engine,
        AppOptions {
            theme: Theme { color },
            first_sentence,
            ..AppOptions::default()
        },
    );
    h.width = WIDTH;
    h.height = HEIGHT;
    Ok(h)
}

fn digit(tab: TabId) -> KeyCode {
    KeyCode::Char(char::from(b'1' + tab.index() as u8))
}

fn repeat(h: &mut Harness, code: KeyCode, times: usize) {
    for _ in 0..times {
        h.key(code);
    }
}

/// Encodes `text` in Explore the way a user does: `/`, type, Enter.
fn encode(h: &mut Harness, text: &str) {
    h.key(KeyCode::Char('/'))
        .type_text(text)
        .key(KeyCode::Enter);
}

/// Every capture the book shows, in the chapter's order. Slow (it computes validation statistics
/// and, the first time, the corpus index of the binary checkpoint, which is saved beside it).
pub fn readme_captures() -> Result<Vec<Capture>> {
    let mut out = Vec::new();
    let mut push = |name: &'static str, h: &Harness| {
        out.push(Capture {
            name,
            text: h.screen(),
        })
    };

    let mut h = harness(BINARY, true)?;
    encode(&mut h, SENTENCE);
    repeat(&mut h, KeyCode::Right, 14);
    h.key(KeyCode::Char(' '));
    push("explore-binary", &h);

    let mut v = harness(VAE, true)?;
    encode(&mut v, SENTENCE);
    repeat(&mut v, KeyCode::Right, 3);
    repeat(&mut v, KeyCode::Char('+'), 3);
    push("explore-vae", &v);

    let mut p = harness(BINARY, true)?;
    p.key(digit(TabId::Path)).key(KeyCode::Char('a'));
    p.type_text(SENTENCE).key(KeyCode::Enter);
    p.type_text(OTHER).key(KeyCode::Enter);
    repeat(&mut p, KeyCode::Down, 3);
    push("path", &p);

    let mut s = harness(BINARY, true)?;
    s.key(digit(TabId::Sample));
    repeat(&mut s, KeyCode::Char('s'), 6);
    push("sample", &s);

    // Without colour the heat map is drawn with shading characters, which text can show.
    // A quarter of the default sentences (the keys go in before the first result, so only the
    // last request is computed), to keep the captures test quick.
    let mut st = harness(BINARY, false)?;
    for key in [digit(TabId::Stats), KeyCode::Char('['), KeyCode::Char('[')] {
        st.app.update(Msg::Key(KeyEvent::from(key)));
    }
    st.settle();
    repeat(&mut st, KeyCode::Right, 3);
    push("stats", &st);

    let mut t = harness(BINARY, true)?;
    t.key(digit(TabId::Train));
    push("train", &t);

    // The first opening of the tab builds and saves the index; the capture is of a second
    // session that loads it, so it reads the same whether or not the file was there before.
    let mut first = harness(BINARY, true)?;
    first.key(digit(TabId::Neighbors));
    if let Some(e) = &first.app.tabs.neighbors.error {
        bail!("the corpus index could not be built: {e}");
    }
    let mut n = harness(BINARY, true)?;
    encode(&mut n, "a small dog barks at the cat");
    n.key(KeyCode::Home).key(KeyCode::Char(' '));
    n.key(digit(TabId::Neighbors));
    push("neighbors", &n);
    n.key(KeyCode::Char('m'));
    push("map", &n);

    // Clusters of a seeded subset of the train split, to keep the captures test quick.
    let mut c = harness(BINARY, true)?;
    c.app.tabs.clusters.max_entries = Some(CLUSTERED_ENTRIES);
    encode(&mut c, SENTENCE);
    c.key(digit(TabId::Clusters));
    if let Some(e) = &c.app.tabs.clusters.error {
        bail!("the corpus could not be clustered: {e}");
    }
    push("clusters", &c);
    c.key(KeyCode::Char('v'));
    push("clusters-map", &c);
    // adv.all → verb.body, six bits' worth.
    c.key(KeyCode::Esc).key(KeyCode::Char('a'));
    let labels = c
        .app
        .shared
        .clusters
        .as_ref()
        .map(|v| v.data.label_names.clone())
        .unwrap_or_default();
    let at = |name: &str| labels.iter().position(|l| l == name);
    let (Some(from), Some(to)) = (at("adv.all"), at("verb.body")) else {
        bail!("the shipped corpus lacks the labels adv.all and verb.body");
    };
    repeat(&mut c, KeyCode::Down, from);
    c.key(KeyCode::Char('f'));
    repeat(&mut c, KeyCode::Down, to - from);
    c.key(KeyCode::Char('t'));
    repeat(&mut c, KeyCode::Char('+'), 6);
    push("clusters-attribute", &c);
    c.key(KeyCode::Esc).key(KeyCode::Char('n'));
    for s in ["a large dog", "a small dog", "a large house"] {
        c.type_text(s).key(KeyCode::Enter);
    }
    push("clusters-analogy", &c);
    Ok(out)
}

/// The screens of docs/first-five-minutes.md, in order: the first screen, a sentence typed,
/// the selected bit flipped, the meanings table, a path and the neighbours. Slow the first
/// time (the bit meanings and the corpus index of the binary checkpoint are computed and
/// saved beside it).
pub fn first_five_minutes_captures() -> Result<Vec<Capture>> {
    // The first opening of Neighbors builds and saves the index; a throwaway session does that
    // first, so the capture reads the same whether or not the file was there before.
    let mut first = harness(BINARY, true)?;
    first.key(digit(TabId::Neighbors));
    if let Some(e) = &first.app.tabs.neighbors.error {
        bail!("the corpus index could not be built: {e}");
    }
    let mut out = Vec::new();
    let mut push = |name: &'static str, h: &Harness| {
        out.push(Capture {
            name,
            text: h.screen(),
        })
    };
    let mut h = harness_with(BINARY, false, true)?;
    h.settle();
    push("first-open", &h);
    h.key(KeyCode::Char(' '));
    push("first-flip", &h);
    encode(&mut h, "a tool used for cutting wood");
    push("first-type", &h);
    h.key(digit(TabId::Stats)).key(KeyCode::Char('m'));
    push("first-meanings", &h);
    let mut p = harness(BINARY, false)?;
    p.key(digit(TabId::Path)).key(KeyCode::Char('a'));
    p.type_text("a tool used for cutting wood")
        .key(KeyCode::Enter);
    p.type_text("a young dog").key(KeyCode::Enter);
    push("first-path", &p);
    h.key(digit(TabId::Neighbors));
    if let Some(e) = &h.app.tabs.neighbors.error {
        bail!("the corpus index could not be built: {e}");
    }
    push("first-neighbors", &h);
    Ok(out)
}

/// The explorer's keys as Markdown tables, from the same tables as the `?` overlay: the keys
/// that work everywhere, those of text fields, then each tab's.
pub fn readme_keys() -> String {
    let text_fields = super::TEXT_FIELD_KEYS
        .iter()
        .map(|(k, what)| (k.to_string(), what.to_string()))
        .collect();
    let mut sections: Vec<(String, Vec<(String, String)>)> = vec![
        ("Everywhere".to_string(), super::global_keys()),
        ("Text fields".to_string(), text_fields),
    ];
    for &tab in TabId::ALL {
        sections.push((
            format!("{} {}", tab.index() + 1, tab.title()),
            tab.help_rows(),
        ));
    }
    let mut out = String::new();
    for (title, rows) in sections {
        out.push_str(&format!("\n**{title}**\n\n| Key | Action |\n|---|---|\n"));
        for (keys, what) in rows {
            let keys = match keys.strip_suffix(" (typing)") {
                Some(k) => format!("`{k}` (typing)"),
                None => format!("`{keys}`"),
            };
            out.push_str(&format!("| {keys} | {} |\n", what.replace('|', "\\|")));
        }
    }
    out
}

/// The chapter with the block between `<!-- keys -->` and `<!-- /keys -->` replaced by
/// [`readme_keys`].
pub fn replace_keys(readme: &str) -> Result<String> {
    const OPEN: &str = "<!-- keys -->";
    const CLOSE: &str = "<!-- /keys -->";
    let start = readme
        .find(OPEN)
        .context("the chapter has no `<!-- keys -->` block")?
        + OPEN.len();
    let end = start
        + readme[start..]
            .find(CLOSE)
            .context("the chapter's `<!-- keys -->` block has no `<!-- /keys -->`")?;
    Ok(format!(
        "{}{}\n{}",
        &readme[..start],
        readme_keys(),
        &readme[end..]
    ))
}

/// The chapter with every capture block replaced by the capture of the same name. Fails when a
/// marker names no capture or a capture has no marker, so the two lists cannot drift apart.
pub fn replace_captures(readme: &str, captures: &[Capture]) -> Result<String> {
    const OPEN: &str = "<!-- screen: ";
    const CLOSE: &str = "<!-- /screen -->";
    let mut out = String::with_capacity(readme.len());
    let mut rest = readme;
    let mut seen = Vec::new();
    while let Some(start) = rest.find(OPEN) {
        let after_open = &rest[start + OPEN.len()..];
        let name_end = after_open
            .find(" -->")
            .context("a `<!-- screen: NAME -->` marker is not closed with ` -->`")?;
        let name = after_open[..name_end].trim();
        let body_start = start + OPEN.len() + name_end + " -->".len();
        let Some(close) = rest[body_start..].find(CLOSE) else {
            bail!("the chapter's capture `{name}` has no `{CLOSE}`");
        };
        let Some(capture) = captures.iter().find(|c| c.name == name) else {
            bail!("the chapter has a capture `{name}` that the code does not make");
        };
        out.push_str(&rest[..body_start]);
        out.push_str("\n```\n");
        out.push_str(&capture.text);
        out.push_str("```\n");
        out.push_str(CLOSE);
        rest = &rest[body_start + close + CLOSE.len()..];
        seen.push(name.to_string());
    }
    out.push_str(rest);
    if let Some(missing) = captures.iter().find(|c| !seen.iter().any(|s| s == c.name)) {
        bail!(
            "the chapter has no `<!-- screen: {} -->` block for that capture",
            missing.name
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_each_named_block_and_rejects_unknown_names() {
        let caps = vec![
            Capture {
                name: "a",
                text: "new a\n".into(),
            },
            Capture {
                name: "b",
                text: "new b\n".into(),
            },
        ];
        let readme = "intro\n<!-- screen: a -->\n```\nold\n```\n<!-- /screen -->\nmid\n\
                      <!-- screen: b -->\n<!-- /screen -->\nend\n";
        let got = replace_captures(readme, &caps).unwrap();
        assert_eq!(
            got,
            "intro\n<!-- screen: a -->\n```\nnew a\n```\n<!-- /screen -->\nmid\n\
             <!-- screen: b -->\n```\nnew b\n```\n<!-- /screen -->\nend\n"
        );
        // Idempotent: a second pass changes nothing.
        assert_eq!(replace_captures(&got, &caps).unwrap(), got);
        let err = replace_captures("<!-- screen: c -->\n<!-- /screen -->", &caps).unwrap_err();
        assert!(err.to_string().contains("`c`"), "{err}");
        let err = replace_captures("<!-- screen: a -->\n<!-- /screen -->", &caps).unwrap_err();
        assert!(err.to_string().contains("screen: b"), "{err}");
    }
}
