//! Text from a file, made safe to print on a terminal.
//!
//! A checkpoint, an index and a corpus are untrusted input, and the plain (non-JSON) output of
//! the command line prints their texts: corpus lines, index entries, a vocabulary's words in
//! decodings, the corpus name and metric names a checkpoint's provenance records. Printed raw,
//! a forged entry holding `ESC [ 31 m` recolours the terminal, `ESC ] 52 ; c ; … BEL` writes
//! the clipboard, `\r` overwrites what was printed before. Every such text goes through
//! [`shown`] (or [`Shown`] in a format string) first.
//!
//! The visible form: every control character (C0 U+0000–U+001F, DEL U+007F, C1
//! U+0080–U+009F) and every bidirectional formatting character (U+202E RIGHT-TO-LEFT OVERRIDE
//! and its kin, see [`is_unsafe`]) is written as an escape, `\t`, `\n` and `\r` for those three and `\u{XX}`
//! (hexadecimal, lower case, as Rust writes it) for the others: `"\x1b[31mred"` is shown as
//! `\u{1b}[31mred`, `"\u{9b}"` as `\u{9b}`. A tab or newline inside one field is shown, not
//! obeyed, so it cannot break a row or forge a line. Everything else (words, accents, CJK,
//! emoji, a backslash) is unchanged. The explorer needs none of this (ratatui drops control
//! characters) and `--json` output escapes them in its strings.

use std::borrow::Cow;
use std::fmt;

/// Whether `c` is shown escaped: C0, DEL or C1 (Unicode's general category Cc), or a
/// bidirectional formatting character (U+061C, U+200E/F, U+202A–U+202E, U+2066–U+2069), which
/// makes a terminal that reorders right-to-left text show a line in another order than it is
/// written ("Trojan Source", CVE-2021-42574).
pub fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{61c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        )
}

/// `text` with every control character replaced by its visible escape (see the module); the
/// text itself (no copy) when it has none.
pub fn shown(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_unsafe) {
        return Cow::Borrowed(text);
    }
    Cow::Owned(Shown(text).to_string())
}

/// Writes its text as [`shown`] does, for `format!("{}", Shown(text))` without a copy.
#[derive(Clone, Copy, Debug)]
pub struct Shown<'a>(pub &'a str);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        while let Some(at) = rest.find(is_unsafe) {
            f.write_str(&rest[..at])?;
            let c = rest[at..]
                .chars()
                .next()
                .expect("a char at a char boundary");
            match c {
                '\t' => f.write_str("\\t")?,
                '\n' => f.write_str("\\n")?,
                '\r' => f.write_str("\\r")?,
                c => write!(f, "\\u{{{:x}}}", c as u32)?,
            }
            rest = &rest[at + c.len_utf8()..];
        }
        f.write_str(rest)
    }
}

/// Whether `c` is one of the unsafe characters JSON leaves unescaped: DEL, C1 and the
/// bidirectional formatting characters (`serde_json` escapes C0 itself).
fn json_leaves(c: char) -> bool {
    is_unsafe(c) && c > '\u{1f}'
}

/// Serialised JSON with DEL and C1 characters written as `\u00XX` escapes, so `--json` output
/// on a terminal carries no control character either; it parses to the same value. (Outside
/// strings JSON holds only ASCII punctuation, digits, letters and whitespace, so every such
/// character is inside a string.)
pub fn json_escaped(json: String) -> String {
    if !json.chars().any(json_leaves) {
        return json;
    }
    let mut out = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        if json_leaves(c) {
            out.push_str(&format!("\\u{:04x}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

/// `serde_json::to_string_pretty`, [`json_escaped`]: what `--json` prints.
pub fn to_json_pretty<T: serde::Serialize + ?Sized>(value: &T) -> serde_json::Result<String> {
    serde_json::to_string_pretty(value).map(json_escaped)
}

/// `serde_json::to_string` (one line), [`json_escaped`]: what JSON-lines output prints.
pub fn to_json_line<T: serde::Serialize + ?Sized>(value: &T) -> serde_json::Result<String> {
    serde_json::to_string(value).map(json_escaped)
}

/// The one-cell visible form of `c` where a text is drawn character by character (the
/// explorer's text fields): `c` itself when it is safe, else its Unicode control picture for
/// C0 (`\x1b` as `␛`) and DEL (`␡`), and U+FFFD `�` for C1 and the bidirectional formatting
/// characters. Cell for cell, so the field's cursor stays on the character it edits.
pub fn visible_char(c: char) -> char {
    if !is_unsafe(c) {
        return c;
    }
    match c as u32 {
        n @ 0..=0x1f => char::from_u32(0x2400 + n).expect("control pictures are chars"),
        0x7f => '\u{2421}',
        _ => '\u{fffd}',
    }
}

/// A list of texts, each [`shown`], joined with `sep`.
pub fn shown_join<S: AsRef<str>>(texts: &[S], sep: &str) -> String {
    texts
        .iter()
        .map(|t| shown(t.as_ref()))
        .collect::<Vec<_>>()
        .join(sep)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_nothing_else() {
        assert_eq!(shown("\x1b[31mred\x1b[0m"), "\\u{1b}[31mred\\u{1b}[0m");
        assert_eq!(
            shown("\x1b]52;c;aGk=\x07after"),
            "\\u{1b}]52;c;aGk=\\u{7}after"
        );
        assert_eq!(shown("a\tb\nc\rd"), "a\\tb\\nc\\rd");
        assert_eq!(
            shown("\u{9b}31m \u{7f} \u{80} \u{9f} \0"),
            "\\u{9b}31m \\u{7f} \\u{80} \\u{9f} \\u{0}"
        );
        for plain in [
            "the red cat",
            "café naïve Ünïcödé",
            "猫が好き",
            "a\\b",
            "→ ▁ 🐈",
            "",
        ] {
            assert!(matches!(shown(plain), Cow::Borrowed(_)), "{plain}");
            assert_eq!(shown(plain), plain);
        }
        // U+00A0 and above are not controls; a zero-width space or joiner (emoji sequences)
        // stays.
        assert_eq!(shown("\u{a0}x\u{200b}"), "\u{a0}x\u{200b}");
        assert_eq!(shown("👩\u{200d}💻"), "👩\u{200d}💻");
        // Bidirectional overrides and isolates would reorder the line on some terminals.
        assert_eq!(
            shown("a cat\u{202e}tac a\u{202c} \u{2066}x\u{2069} \u{200f}\u{61c}"),
            "a cat\\u{202e}tac a\\u{202c} \\u{2066}x\\u{2069} \\u{200f}\\u{61c}"
        );
        let escaped = shown("é\x1bé");
        assert_eq!(escaped, "é\\u{1b}é");
        assert!(!escaped.chars().any(char::is_control));
        assert_eq!(shown_join(&["a\x1b", "b"], ", "), "a\\u{1b}, b");
    }

    #[test]
    fn json_escapes_del_and_c1_too_and_keeps_the_value() {
        let value =
            serde_json::json!({"text": "a\x1b[31m\u{9b}2J\u{7f}é\u{85}\r猫\u{202e}", "n": [1.5]});
        for json in [
            to_json_line(&value).unwrap(),
            to_json_pretty(&value).unwrap(),
        ] {
            assert!(
                !json.chars().any(|c| c.is_control() && c != '\n'),
                "{json:?}"
            );
            assert!(json.contains("\\u009b") && json.contains("\\u007f") && json.contains('é'));
            assert!(
                json.contains("\\u202e") && !json.contains('\u{202e}'),
                "{json:?}"
            );
            let back: serde_json::Value = serde_json::from_str(&json).unwrap();
            assert_eq!(back, value);
        }
    }
}
