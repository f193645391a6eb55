//! The UTF-8 bytes each token id stands for, read from a byte-level BPE vocabulary
//! (GPT-2/GPT-NeoX `bytes_to_unicode` mapping). Used to count the bytes of evaluated text
//! (bits per byte) and to find every token that contains a newline (a stop token for
//! one-line answers). Special/added tokens (e.g. `<|endoftext|>`) and ids beyond the
//! vocabulary (the model's padded embedding rows) stand for no text: zero bytes.

use std::collections::HashMap;

use anyhow::{Result, bail};
use tokenizers::Tokenizer;

/// GPT-2's reversible byte → char table, inverted: char → byte.
fn unicode_to_byte() -> HashMap<char, u8> {
    let mut printable: Vec<u32> = (b'!' as u32..=b'~' as u32).collect();
    printable.extend(0xA1..=0xAC);
    printable.extend(0xAE..=0xFF);
    let mut map = HashMap::with_capacity(256);
    let mut n = 0u32;
    for b in 0u32..256 {
        let c = if printable.contains(&b) {
            b
        } else {
            n += 1;
            255 + n
        };
        map.insert(char::from_u32(c).expect("valid char"), b as u8);
    }
    map
}

/// Bytes of every token id.
pub struct TokenBytes {
    bytes: Vec<Vec<u8>>,
}

impl TokenBytes {
    /// Build from a byte-level BPE tokenizer; errors on a vocabulary entry that is not
    /// byte-level (then bytes per token cannot be known exactly).
    pub fn from_tokenizer(tok: &Tokenizer) -> Result<Self> {
        let inv = unicode_to_byte();
        let added = tok.get_added_tokens_decoder();
        let n = tok.get_vocab_size(true);
        let mut bytes = vec![Vec::new(); n];
        for (token, id) in tok.get_vocab(false) {
            if added.contains_key(&id) {
                continue;
            }
            let mut b = Vec::with_capacity(token.len());
            for c in token.chars() {
                match inv.get(&c) {
                    Some(&x) => b.push(x),
                    None => bail!(
                        "token {id} {token:?} is not byte-level BPE (char {c:?}); \
                         bits per byte need a byte-level tokenizer"
                    ),
                }
            }
            if id as usize >= bytes.len() {
                bytes.resize(id as usize + 1, Vec::new());
            }
            bytes[id as usize] = b;
        }
        Ok(TokenBytes { bytes })
    }

    /// The bytes of `id` (empty for special tokens and unknown ids).
    pub fn get(&self, id: u32) -> &[u8] {
        self.bytes.get(id as usize).map_or(&[], |b| b.as_slice())
    }

    /// Number of UTF-8 bytes of the text `ids` stand for.
    pub fn count(&self, ids: impl IntoIterator<Item = u32>) -> u64 {
        ids.into_iter().map(|i| self.get(i).len() as u64).sum()
    }

    /// Every token id whose bytes contain a newline.
    pub fn newline_tokens(&self) -> Vec<u32> {
        (0..self.bytes.len() as u32)
            .filter(|&i| self.get(i).contains(&b'\n'))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_a_bijection_over_256_bytes() {
        let m = unicode_to_byte();
        assert_eq!(m.len(), 256);
        let mut seen: Vec<u8> = m.values().copied().collect();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 256);
        assert_eq!(m[&'Ġ'], b' ');
        assert_eq!(m[&'Ċ'], b'\n');
        assert_eq!(m[&'a'], b'a');
    }
}
