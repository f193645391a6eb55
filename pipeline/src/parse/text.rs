//! The text contract: an element's text is all its descendant text in document order, runs of Unicode
//! whitespace collapsed to one space, trimmed.
//!
//! Text arrives in pieces (text nodes, entity references, text inside `<i>` …), so collapsing happens
//! while appending: a whitespace run only becomes a space when more text follows it, which trims the
//! end for free, and nothing is inserted where markup merely splits a word (`p<sub>trend</sub>`).

/// Whitespace as Python's `str.split()` sees it (the reference extraction uses it): Unicode
/// `White_Space` plus the ASCII information separators U+001C–U+001F.
#[inline]
pub fn is_collapsible_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Accumulates text with whitespace runs collapsed and both ends trimmed.
#[derive(Debug, Default, Clone)]
pub struct CollapsedText {
    out: String,
    pending_space: bool,
}

impl CollapsedText {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn clear(&mut self) {
        self.out.clear();
        self.pending_space = false;
    }

    /// Append a piece of text.
    pub fn push_str(&mut self, s: &str) {
        // Fast path: plain ASCII without whitespace is the bulk of abstract text between spaces.
        let bytes = s.as_bytes();
        let mut start = 0;
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            if b < 0x80 {
                if b == b' ' || (0x09..=0x0d).contains(&b) || (0x1c..=0x1f).contains(&b) {
                    self.push_word(&s[start..i]);
                    self.pending_space = true;
                    i += 1;
                    start = i;
                } else {
                    i += 1;
                }
            } else {
                // Non-ASCII: decode one char (s is valid UTF-8, so i is a char boundary).
                let c = s[i..].chars().next().unwrap_or('\u{fffd}');
                let len = c.len_utf8();
                if is_collapsible_space(c) {
                    self.push_word(&s[start..i]);
                    self.pending_space = true;
                    start = i + len;
                }
                i += len;
            }
        }
        self.push_word(&s[start..]);
    }

    pub fn push_char(&mut self, c: char) {
        let mut buf = [0u8; 4];
        self.push_str(c.encode_utf8(&mut buf));
    }

    #[inline]
    fn push_word(&mut self, word: &str) {
        if word.is_empty() {
            return;
        }
        if self.pending_space && !self.out.is_empty() {
            self.out.push(' ');
        }
        self.pending_space = false;
        self.out.push_str(word);
    }

    pub fn as_str(&self) -> &str {
        &self.out
    }

    /// Take the text, leaving this empty.
    pub fn take(&mut self) -> String {
        self.pending_space = false;
        std::mem::take(&mut self.out)
    }
}

/// Collapse whitespace runs of `s` to one space and trim.
pub fn collapse(s: &str) -> String {
    let mut t = CollapsedText::new();
    t.push_str(s);
    t.take()
}

/// The first run of four ASCII digits, as a year (`2019 Nov-Dec` → 2019).
pub fn first_year(s: &str) -> Option<i32> {
    let b = s.as_bytes();
    let mut run = 0;
    for (i, c) in b.iter().enumerate() {
        if c.is_ascii_digit() {
            run += 1;
            if run == 4 {
                return s[i + 1 - 4..=i].parse().ok();
            }
        } else {
            run = 0;
        }
    }
    None
}

/// Decode a general reference's name (`amp`, `#x3b1`, `#946`) to its character. XML has five
/// predefined entities; PubMed declares no others, so any other name is an error.
pub fn resolve_reference(name: &str) -> Result<char, String> {
    let c = match name {
        "amp" => '&',
        "lt" => '<',
        "gt" => '>',
        "quot" => '"',
        "apos" => '\'',
        _ => {
            let code = if let Some(hex) = name.strip_prefix("#x").or(name.strip_prefix("#X")) {
                u32::from_str_radix(hex, 16).ok()
            } else if let Some(dec) = name.strip_prefix('#') {
                dec.parse::<u32>().ok()
            } else {
                return Err(format!(
                    "unknown entity &{name}; (only XML's five predefined entities and character references are allowed)"
                ));
            };
            return match code.and_then(char::from_u32) {
                Some(c) if c != '\0' => Ok(c),
                _ => Err(format!("invalid character reference &{name};")),
            };
        }
    };
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collapses_and_trims_across_pieces() {
        let mut t = CollapsedText::new();
        for piece in [
            "  p",
            "trend",
            " <0.01\n\t",
            "",
            "and\u{a0}\u{2009} x",
            "=2  ",
        ] {
            t.push_str(piece);
        }
        assert_eq!(t.take(), "ptrend <0.01 and x=2");
        assert_eq!(collapse("\n  \u{a0} "), "");
        assert_eq!(collapse("a\u{1f}b\u{3000}c"), "a b c");
        assert_eq!(collapse("α β"), "α β");
    }

    #[test]
    fn years_and_references() {
        assert_eq!(first_year("2019 Nov-Dec"), Some(2019));
        assert_eq!(first_year("Fall 98-2001"), Some(2001));
        assert_eq!(first_year("n.d."), None);
        assert_eq!(resolve_reference("amp"), Ok('&'));
        assert_eq!(resolve_reference("#x3b1"), Ok('α'));
        assert_eq!(resolve_reference("#946"), Ok('β'));
        assert!(resolve_reference("nbsp").is_err());
        assert!(resolve_reference("#0").is_err());
        assert!(resolve_reference("#xD800").is_err());
    }
}
