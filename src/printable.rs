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
//! U+0080–U+009F) is written as an escape, `\t`, `\n` and `\r` for those three and `\u{XX}`
//! (hexadecimal, lower case, as Rust writes it) for the others: `"\x1b[31mred"` is shown as
//! `\u{1b}[31mred`, `"\u{9b}"` as `\u{9b}`. A tab or newline inside one field is shown, not
//! obeyed, so it cannot break a row or forge a line. Everything else (words, accents, CJK,
//! emoji, a backslash) is unchanged. The explorer needs none of this (ratatui drops control
//! characters) and `--json` output escapes them in its strings.

use std::borrow::Cow;
use std::fmt;

/// Whether `c` is shown escaped: C0, DEL or C1 (Unicode's general category Cc).
pub fn is_unsafe(c: char) -> bool {
    c.is_control()
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
        // U+00A0 and above are not controls.
        assert_eq!(shown("\u{a0}x\u{200b}"), "\u{a0}x\u{200b}");
        let escaped = shown("é\x1bé");
        assert_eq!(escaped, "é\\u{1b}é");
        assert!(!escaped.chars().any(char::is_control));
        assert_eq!(shown_join(&["a\x1b", "b"], ", "), "a\\u{1b}, b");
    }
}
