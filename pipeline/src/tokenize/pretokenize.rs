//! The GPT-2 / GPT-NeoX byte-level pre-tokenizer with a faster, pure-Rust split.
//!
//! The `tokenizers` crate's `ByteLevel` pre-tokenizer splits with the GPT-2 regex
//! `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`. Its look-ahead
//! needs a backtracking engine: `fancy-regex` (pure Rust, our default build) runs the whole
//! pattern in its backtracking VM, Oniguruma (C, Python's wheel) is faster. [`FastByteLevel`]
//! splits with the `regex` crate (finite automata, no backtracking) on the pattern without the
//! look-ahead alternative and gives the look-ahead's effect back by hand: a whitespace run that the
//! `\s+` alternative matched and that is followed by a non-space gives back its last character
//! (which then starts the next piece, e.g. `" word"`). Both engines share `regex-syntax`'s Unicode
//! classes, and leftmost-first alternation with greedy repeats picks the same match as a
//! backtracking engine, so the pieces are the same; the byte-level mapping after the split is the
//! crate's own. [`FastTokenizer`] is a `tokenizers` tokenizer with this pre-tokenizer in place of
//! `ByteLevel`: same model, normalizer, added tokens; it loads from any `tokenizer.json` whose
//! pre-tokenizer is `ByteLevel` (GPT-NeoX's and ours), and the ids equal the crate's on every
//! expect file and on random text (`tests.rs`).

use std::sync::LazyLock;

use regex::Regex;
use serde::{Deserialize, Deserializer};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::tokenizer::pattern::Pattern;
use tokenizers::{
    DecoderWrapper, ModelWrapper, NormalizerWrapper, Offsets, PostProcessorWrapper,
    PreTokenizedString, PreTokenizer, SplitDelimiterBehavior, TokenizerImpl,
};

/// The GPT-2 pattern without `\s+(?!\S)` (see the module docs).
static SPLIT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+")
        .expect("the GPT-2 pattern compiles")
});

/// GPT-2's byte → printable character map (as `ByteLevel` uses it).
static BYTE_CHARS: LazyLock<[char; 256]> = LazyLock::new(|| {
    let mut printable: Vec<u8> = (b'!'..=b'~').collect();
    printable.extend(0xA1u8..=0xAC);
    printable.extend(0xAEu8..=0xFF);
    let mut map = ['\0'; 256];
    for &b in &printable {
        map[b as usize] = char::from(b);
    }
    let mut n = 0u32;
    for b in 0..=255u8 {
        if !printable.contains(&b) {
            map[b as usize] = char::from_u32(256 + n).expect("below U+0200");
            n += 1;
        }
    }
    map
});

/// The GPT-2 split as a `tokenizers` pattern: every piece a match (`Isolated`), the same pieces as
/// the crate's regex gives.
#[derive(Clone, Copy, Debug, Default)]
pub struct Gpt2Split;

impl Gpt2Split {
    /// The pieces of `text` as byte ranges, in order, covering it.
    pub fn pieces(text: &str) -> Vec<(usize, usize)> {
        let mut out = Vec::with_capacity(text.len() / 4 + 1);
        let mut at = 0;
        while let Some(m) = SPLIT.find_at(text, at) {
            let (start, mut end) = (m.start(), m.end());
            // Only the `\s+` alternative ends with whitespace. Followed by a non-space, the
            // original pattern's `\s+(?!\S)` matches the run minus its last character instead
            // (when one is left).
            if end < text.len()
                && let Some(last) = text[start..end].chars().next_back()
                && last.is_whitespace()
                && end - last.len_utf8() > start
            {
                end -= last.len_utf8();
            }
            out.push((start, end));
            at = end;
        }
        out
    }
}

impl Pattern for Gpt2Split {
    fn find_matches(&self, inside: &str) -> tokenizers::Result<Vec<(Offsets, bool)>> {
        if inside.is_empty() {
            return Ok(vec![((0, 0), false)]);
        }
        let mut prev = 0;
        let mut splits = Vec::new();
        for (start, end) in Self::pieces(inside) {
            if prev != start {
                splits.push(((prev, start), false));
            }
            splits.push(((start, end), true));
            prev = end;
        }
        if prev != inside.len() {
            splits.push(((prev, inside.len()), false));
        }
        Ok(splits)
    }
}

/// `ByteLevel` (its settings, as `tokenizer.json` holds them) splitting with [`Gpt2Split`].
#[derive(Clone, Debug)]
pub struct FastByteLevel(pub ByteLevel);

impl<'de> Deserialize<'de> for FastByteLevel {
    /// Reads exactly what `ByteLevel` reads (`{"type": "ByteLevel", …}`); anything else fails, so
    /// a tokenizer with another pre-tokenizer does not load as a [`FastTokenizer`].
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        ByteLevel::deserialize(d).map(Self)
    }
}

impl PreTokenizer for FastByteLevel {
    fn pre_tokenize(&self, pretokenized: &mut PreTokenizedString) -> tokenizers::Result<()> {
        let settings = &self.0;
        pretokenized.split(|_, mut normalized| {
            if settings.add_prefix_space && !normalized.get().starts_with(' ') {
                normalized.prepend(" ");
            }
            if settings.use_regex {
                normalized.split(Gpt2Split, SplitDelimiterBehavior::Isolated)
            } else {
                Ok(vec![normalized])
            }
        })?;
        let chars: &[char; 256] = &BYTE_CHARS;
        pretokenized.normalize(|normalized| {
            let s = normalized.get();
            let mut transformations: Vec<(char, isize)> = Vec::with_capacity(s.len());
            for c in s.chars() {
                let mut buf = [0u8; 4];
                let bytes = c.encode_utf8(&mut buf).as_bytes();
                transformations.extend(
                    bytes
                        .iter()
                        .enumerate()
                        .map(|(i, &b)| (chars[b as usize], isize::from(i > 0))),
                );
            }
            normalized.transform(transformations, 0);
            Ok(())
        })
    }
}

/// A `tokenizers` tokenizer whose pre-tokenizer is [`FastByteLevel`].
pub type FastTokenizer = TokenizerImpl<
    ModelWrapper,
    NormalizerWrapper,
    FastByteLevel,
    PostProcessorWrapper,
    DecoderWrapper,
>;

/// `tokenizer.json` as a [`FastTokenizer`]; None when its pre-tokenizer is not `ByteLevel` (or it
/// does not load at all: the caller's regular load reports that).
pub fn load_fast(json: &str) -> Option<FastTokenizer> {
    json.parse::<FastTokenizer>().ok()
}
