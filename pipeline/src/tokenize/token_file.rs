//! Token files `tokens/<input>/<part>.bin`: the cache between tokenizing and packing.
//!
//! Little-endian binary, written atomically:
//! - header (16 bytes): magic `BMTOKS01`, vocab size u32, EOS id u32;
//! - one record per document in canonical order: PMID u64, token count n u32, then n token ids, each
//!   u16 when the vocabulary has at most 65,536 entries else u32 (the EOS that ends the document is
//!   included);
//! - trailer (24 bytes): document count u64, token count u64, magic `BMTOKEND`.
//!
//! The reader streams records and checks every length against the file size and the trailer.

use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use schemas::AtomicFile;

/// Schema version recorded by the tokenize stage.
pub const FORMAT_VERSION: u32 = 1;
const MAGIC: &[u8; 8] = b"BMTOKS01";
const END_MAGIC: &[u8; 8] = b"BMTOKEND";
const HEADER: u64 = 16;
const TRAILER: u64 = 24;

fn narrow(vocab_size: usize) -> bool {
    vocab_size <= u16::MAX as usize + 1
}

pub struct TokenFileWriter {
    file: AtomicFile,
    wide: bool,
    vocab_size: usize,
    docs: u64,
    tokens: u64,
    buf: Vec<u8>,
}

impl TokenFileWriter {
    pub fn create(path: &Path, vocab_size: usize, eos_id: u32) -> Result<Self> {
        let mut file = AtomicFile::create(path)?;
        file.write_all(MAGIC)?;
        file.write_all(&(vocab_size as u32).to_le_bytes())?;
        file.write_all(&eos_id.to_le_bytes())?;
        Ok(Self {
            file,
            wide: !narrow(vocab_size),
            vocab_size,
            docs: 0,
            tokens: 0,
            buf: Vec::new(),
        })
    }

    pub fn push(&mut self, pmid: u64, ids: &[u32]) -> Result<()> {
        self.buf.clear();
        self.buf.extend_from_slice(&pmid.to_le_bytes());
        let n = u32::try_from(ids.len()).context("document longer than 2^32 tokens")?;
        self.buf.extend_from_slice(&n.to_le_bytes());
        for &id in ids {
            ensure!(
                (id as usize) < self.vocab_size,
                "PMID {pmid}: token id {id} outside the vocabulary of {}",
                self.vocab_size
            );
            if self.wide {
                self.buf.extend_from_slice(&id.to_le_bytes());
            } else {
                self.buf.extend_from_slice(&(id as u16).to_le_bytes());
            }
        }
        self.file
            .write_all(&self.buf)
            .with_context(|| format!("writing {}", self.file.final_path().display()))?;
        self.docs += 1;
        self.tokens += ids.len() as u64;
        Ok(())
    }

    /// Write the trailer and commit; an identical existing file is kept. Returns whether it changed.
    pub fn finish(mut self) -> Result<bool> {
        self.file.write_all(&self.docs.to_le_bytes())?;
        self.file.write_all(&self.tokens.to_le_bytes())?;
        self.file.write_all(END_MAGIC)?;
        self.file.commit_unless_identical()
    }
}

/// Streams the documents of a token file.
pub struct TokenFileReader {
    path: PathBuf,
    reader: BufReader<File>,
    pub vocab_size: usize,
    pub eos_id: u32,
    wide: bool,
    /// Byte offset of the next record.
    offset: u64,
    /// Byte offset where the trailer starts.
    end: u64,
    pub docs: u64,
    pub tokens: u64,
    seen_docs: u64,
    seen_tokens: u64,
    raw: Vec<u8>,
}

impl TokenFileReader {
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let len = file.metadata()?.len();
        ensure!(
            len >= HEADER + TRAILER,
            "{}: {len} bytes is too short for a token file",
            path.display()
        );
        let mut trailer = [0u8; TRAILER as usize];
        {
            use std::os::unix::fs::FileExt;
            file.read_exact_at(&mut trailer, len - TRAILER)
                .with_context(|| format!("reading trailer of {}", path.display()))?;
        }
        ensure!(
            &trailer[16..] == END_MAGIC,
            "{}: no BMTOKEND trailer at byte {} (truncated or not a token file)",
            path.display(),
            len - 8
        );
        let mut reader = BufReader::with_capacity(1 << 20, file);
        let mut header = [0u8; HEADER as usize];
        reader.read_exact(&mut header)?;
        ensure!(
            &header[..8] == MAGIC,
            "{}: bytes 0..8 are {:?}, expected magic BMTOKS01",
            path.display(),
            &header[..8]
        );
        let vocab_size = u32::from_le_bytes(header[8..12].try_into().expect("4 bytes")) as usize;
        let eos_id = u32::from_le_bytes(header[12..16].try_into().expect("4 bytes"));
        Ok(Self {
            path: path.to_path_buf(),
            reader,
            vocab_size,
            eos_id,
            wide: !narrow(vocab_size),
            offset: HEADER,
            end: len - TRAILER,
            docs: u64::from_le_bytes(trailer[..8].try_into().expect("8 bytes")),
            tokens: u64::from_le_bytes(trailer[8..16].try_into().expect("8 bytes")),
            seen_docs: 0,
            seen_tokens: 0,
            raw: Vec::new(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Read the next document's ids into `ids`; returns its PMID, or None after the last one.
    pub fn next_doc(&mut self, ids: &mut Vec<u32>) -> Result<Option<u64>> {
        if self.offset == self.end {
            ensure!(
                self.seen_docs == self.docs && self.seen_tokens == self.tokens,
                "{}: read {} documents / {} tokens, the trailer says {} / {}",
                self.path.display(),
                self.seen_docs,
                self.seen_tokens,
                self.docs,
                self.tokens
            );
            return Ok(None);
        }
        let mut head = [0u8; 12];
        if self.offset + 12 > self.end {
            bail!(
                "{}: record header at byte {} runs into the trailer",
                self.path.display(),
                self.offset
            );
        }
        self.reader.read_exact(&mut head)?;
        let pmid = u64::from_le_bytes(head[..8].try_into().expect("8 bytes"));
        let n = u32::from_le_bytes(head[8..].try_into().expect("4 bytes")) as u64;
        let width = if self.wide { 4 } else { 2 };
        let body = n * width;
        ensure!(
            self.offset + 12 + body <= self.end,
            "{}: record of PMID {pmid} at byte {} claims {n} tokens, past the end of the data",
            self.path.display(),
            self.offset
        );
        self.raw.resize(body as usize, 0);
        self.reader
            .read_exact(&mut self.raw)
            .with_context(|| format!("reading {} at byte {}", self.path.display(), self.offset))?;
        ids.clear();
        if self.wide {
            ids.extend(
                self.raw
                    .chunks_exact(4)
                    .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])),
            );
        } else {
            ids.extend(
                self.raw
                    .chunks_exact(2)
                    .map(|c| u16::from_le_bytes([c[0], c[1]]) as u32),
            );
        }
        self.offset += 12 + body;
        self.seen_docs += 1;
        self.seen_tokens += n;
        Ok(Some(pmid))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_truncation() {
        let dir = tempfile::tempdir().unwrap();
        for vocab in [50_280usize, 100_000] {
            let path = dir.path().join(format!("t{vocab}.bin"));
            let mut w = TokenFileWriter::create(&path, vocab, 0).unwrap();
            w.push(7, &[5, 6, 0]).unwrap();
            w.push(9, &[(vocab - 1) as u32, 0]).unwrap();
            assert!(w.push(10, &[vocab as u32]).is_err());
            w.finish().unwrap();
            let mut r = TokenFileReader::open(&path).unwrap();
            assert_eq!((r.docs, r.tokens, r.vocab_size, r.eos_id), (2, 5, vocab, 0));
            let mut ids = Vec::new();
            assert_eq!(r.next_doc(&mut ids).unwrap(), Some(7));
            assert_eq!(ids, [5, 6, 0]);
            assert_eq!(r.next_doc(&mut ids).unwrap(), Some(9));
            assert_eq!(ids, [(vocab - 1) as u32, 0]);
            assert_eq!(r.next_doc(&mut ids).unwrap(), None);

            let bytes = std::fs::read(&path).unwrap();
            let cut = dir.path().join("cut.bin");
            std::fs::write(&cut, &bytes[..bytes.len() - 3]).unwrap();
            let err = format!("{:#}", TokenFileReader::open(&cut).err().unwrap());
            assert!(err.contains("cut.bin") && err.contains("trailer"), "{err}");
        }
    }
}
