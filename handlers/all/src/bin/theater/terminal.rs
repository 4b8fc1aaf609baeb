//! Text the `theater` command prints but did not write, made safe for a terminal.
//!
//! A chain file can come from anywhere, and a guest chooses much of what its events hold (their data, and in a
//! forged file their event types and notes). Printed raw, `ESC ] 52 ; c ; <base64> BEL` in an event type sets the
//! operator's clipboard, and other sequences rewrite the screen, the window title or what a later command seems to
//! print. So everything printed from a chain (`run`'s summary, `chain show`, `chain verify`'s errors, `replay`'s
//! divergences, `events`), from an actor (`request`'s answer) or from an error goes through [`line()`] or [`text()`]:
//! every control character (C0, DEL, C1) and every Unicode bidirectional control or line separator is written as
//! [`char::escape_debug`] writes it (`\u{1b}`, `\u{7}`, `\t`, `\r`, `\u{202e}`); [`text`] keeps `\n`. Nothing else
//! is changed (a backslash stays one), so JSON data reads as before.

use std::fmt::{self, Display, Write as _};

/// `value` as one line: `\n` escaped too.
pub fn line<T: Display>(value: T) -> Printable<T> {
    Printable {
        value,
        newlines: false,
    }
}

/// `value` with its newlines kept (multi-line messages).
pub fn text<T: Display>(value: T) -> Printable<T> {
    Printable {
        value,
        newlines: true,
    }
}

/// A value that displays escaped ([`line()`], [`text()`]): escaped as it is formatted, without a copy.
pub struct Printable<T> {
    value: T,
    newlines: bool,
}

impl<T: Display> Display for Printable<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            Escaper {
                out: f,
                newlines: self.newlines,
            },
            "{}",
            self.value
        )
    }
}

/// Writes what it is given to `out`, escaped.
struct Escaper<'a, 'b> {
    out: &'a mut fmt::Formatter<'b>,
    newlines: bool,
}

impl fmt::Write for Escaper<'_, '_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut rest = s;
        while let Some((at, c)) = rest
            .char_indices()
            .find(|&(_, c)| escaped(c) && !(self.newlines && c == '\n'))
        {
            self.out.write_str(&rest[..at])?;
            write!(self.out, "{}", c.escape_debug())?;
            rest = &rest[at + c.len_utf8()..];
        }
        self.out.write_str(rest)
    }
}

/// Whether `c` is written escaped: a control character, or one that reorders or breaks the text around it.
fn escaped(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_the_rest_kept() {
        let hostile = "a\u{1b}]52;c;aGk=\u{7}b\u{9b}c\r\u{202e}d\te\\f\"g\"\nh";
        assert_eq!(
            line(hostile).to_string(),
            "a\\u{1b}]52;c;aGk=\\u{7}b\\u{9b}c\\r\\u{202e}d\\te\\f\"g\"\\nh"
        );
        assert_eq!(
            text(hostile).to_string(),
            "a\\u{1b}]52;c;aGk=\\u{7}b\\u{9b}c\\r\\u{202e}d\\te\\f\"g\"\nh"
        );
        assert_eq!(
            line("{\"msg\":\"héllo ✓\"}").to_string(),
            "{\"msg\":\"héllo ✓\"}"
        );
    }
}
