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

/// ASCII whitespace to collapse: space, `\t \n \x0b \x0c \r` and U+001C–U+001F.
#[inline]
fn is_ascii_collapsible(b: u8) -> bool {
    b == b' ' || (0x09..=0x0d).contains(&b) || (0x1c..=0x1f).contains(&b)
}

/// A printable ASCII byte other than space.
#[inline]
fn is_plain_ascii(b: u8) -> bool {
    b.wrapping_sub(0x21) < 0x5f
}

/// Whether the first 16 of these 17 bytes are printable ASCII or single spaces each followed by
/// printable ASCII. Branch-free over a fixed width, so the compiler vectorizes it.
#[inline]
fn simple16(w: &[u8]) -> bool {
    let w: &[u8; 17] = w.try_into().expect("17 bytes");
    let mut ok = true;
    for k in 0..16 {
        ok &= is_plain_ascii(w[k]) | ((w[k] == b' ') & is_plain_ascii(w[k + 1]));
    }
    ok
}

/// Length of the UTF-8 sequence that starts with byte `b` (of valid UTF-8).
#[inline]
fn utf8_len(b: u8) -> usize {
    match b {
        0x00..=0x7f => 1,
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        _ => 4,
    }
}

/// Byte length of the collapsible whitespace character at byte `i` of `s`, 0 when there is none.
#[inline]
fn whitespace_len(s: &str, i: usize) -> usize {
    let b = s.as_bytes()[i];
    if b < 0x80 {
        return usize::from(is_ascii_collapsible(b));
    }
    match s[i..].chars().next() {
        Some(c) if is_collapsible_space(c) => c.len_utf8(),
        _ => 0,
    }
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
        let bytes = s.as_bytes();
        let n = bytes.len();
        let mut i = 0;
        while i < n {
            // A whitespace run becomes one pending space.
            let ws = whitespace_len(s, i);
            if ws > 0 {
                self.pending_space = true;
                i += ws;
                continue;
            }
            // A run that needs no change, copied at once: non-space characters and single ASCII
            // spaces each followed by a printable ASCII character (the bulk of abstract text).
            let start = i;
            while i < n {
                // 16 bytes at a time while they need no change (compiles to vector compares).
                while i + 17 <= n && simple16(&bytes[i..i + 17]) {
                    i += 16;
                }
                if i >= n {
                    break;
                }
                let b = bytes[i];
                if is_plain_ascii(b) {
                    i += 1;
                } else if b == b' ' && i + 1 < n && is_plain_ascii(bytes[i + 1]) {
                    i += 2;
                } else if b >= 0x80 {
                    if whitespace_len(s, i) > 0 {
                        break;
                    }
                    i += utf8_len(b);
                } else if is_ascii_collapsible(b) {
                    break;
                } else {
                    i += 1; // another control character: text, not space
                }
            }
            self.push_word(&s[start..i]);
        }
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

    /// Take the text (allocated to its length), leaving this empty with its buffer kept.
    pub fn take(&mut self) -> String {
        let text = String::from(self.out.as_str());
        self.clear();
        text
    }
}

/// Collapse whitespace runs of `s` to one space and trim.
pub fn collapse(s: &str) -> String {
    let mut t = CollapsedText::new();
    t.push_str(s);
    t.take()
}

/// One section as it appears in a joined abstract: `Label: text` when labelled, `Label:` when the
/// labelled section has no text, `text` when unlabelled, and None for an unlabelled section without
/// text (it adds nothing, so it is left out of the join rather than leaving an empty line).
/// `label` and `text` already follow the text contract (collapsed, trimmed; an empty label is None).
pub fn section_line(label: Option<&str>, text: &str) -> Option<String> {
    match (label, text.is_empty()) {
        (Some(label), true) => Some(format!("{label}:")),
        (Some(label), false) => Some(format!("{label}: {text}")),
        (None, true) => None,
        (None, false) => Some(text.to_string()),
    }
}

/// Sections joined as in the `abstract` column: each [`section_line`], joined with `\n`.
pub fn join_sections<'a>(sections: impl IntoIterator<Item = (Option<&'a str>, &'a str)>) -> String {
    let lines: Vec<String> = sections
        .into_iter()
        .filter_map(|(label, text)| section_line(label, text))
        .collect();
    lines.join("\n")
}

/// The non-empty `parts` joined with `sep` (no separator meets an empty part).
pub fn join_non_empty<S: AsRef<str>>(parts: &[S], sep: &str) -> String {
    let kept: Vec<&str> = parts
        .iter()
        .map(AsRef::as_ref)
        .filter(|p| !p.is_empty())
        .collect();
    kept.join(sep)
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
    fn collapse_matches_split_and_join_on_random_pieces() {
        // The reference: Python's `" ".join(s.split())` over the concatenated pieces.
        let alphabet = [
            "a", "Z", "0", "<", "~", " ", "  ", "word", " the", " p=0.05", "(n = 12)", " x", " y",
            "\t", "\n", "\r", "\u{b}", "\u{c}", "\u{1c}", "\u{1f}", "\u{1}", "\u{7f}", "\u{85}",
            "\u{a0}", "\u{2009}", "\u{3000}", "\u{feff}", "é", "α", "😀",
        ];
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        };
        for _ in 0..2000 {
            let mut t = CollapsedText::new();
            let mut all = String::new();
            for _ in 0..next(6) {
                let piece: String = (0..next(40))
                    .map(|_| alphabet[next(alphabet.len())])
                    .collect();
                t.push_str(&piece);
                all.push_str(&piece);
            }
            let expected = all
                .split(is_collapsible_space)
                .filter(|w| !w.is_empty())
                .collect::<Vec<_>>()
                .join(" ");
            assert_eq!(t.take(), expected, "{all:?}");
            assert_eq!(t.as_str(), "");
        }
    }

    #[test]
    fn joins_never_meet_an_empty_part() {
        assert_eq!(
            section_line(Some("CLINICALTRIALS"), ""),
            Some("CLINICALTRIALS:".into())
        );
        assert_eq!(section_line(Some("A"), "b c"), Some("A: b c".into()));
        assert_eq!(section_line(None, ""), None);
        assert_eq!(
            join_sections([
                (Some("CLINICALTRIALS"), ""),
                (Some("GOV ID"), "NCT01234567"),
                (None, ""),
                (None, "Plain."),
            ]),
            "CLINICALTRIALS:\nGOV ID: NCT01234567\nPlain."
        );
        assert_eq!(join_sections([(None, ""), (None, "")]), "");
        assert_eq!(join_non_empty(&["2020", "", "Spring"], " "), "2020 Spring");
        assert_eq!(join_non_empty::<&str>(&[], " "), "");
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
