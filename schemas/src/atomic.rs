//! Files that appear under their final name only when complete.
//!
//! Data is written to a hidden temporary name in the same directory, flushed, fsynced and renamed into
//! place, and the directory is fsynced so the rename itself survives a crash. A process killed at any
//! instant leaves at most a `.NAME.tmp-*` file behind, never a truncated file at `NAME`;
//! [`remove_stale_temps`] sweeps those on the next run.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result};

/// Marker in every temporary name, so stale temporaries are recognisable.
pub const TEMP_MARKER: &str = ".tmp-";

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// The temporary path used while `path` is being written.
pub fn temp_path_for(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let unique = format!(
        "{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    path.with_file_name(format!(".{name}{TEMP_MARKER}{unique}"))
}

/// A file being written; becomes visible at its final path only through [`AtomicFile::commit`].
/// Dropping it uncommitted removes the temporary.
pub struct AtomicFile {
    final_path: PathBuf,
    temp_path: PathBuf,
    writer: Option<BufWriter<File>>,
}

impl AtomicFile {
    pub fn create(final_path: impl AsRef<Path>) -> Result<Self> {
        let final_path = final_path.as_ref().to_path_buf();
        if let Some(dir) = final_path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir)
                .with_context(|| format!("creating directory {}", dir.display()))?;
        }
        let temp_path = temp_path_for(&final_path);
        let file = File::create(&temp_path)
            .with_context(|| format!("creating temporary file {}", temp_path.display()))?;
        Ok(Self {
            final_path,
            temp_path,
            writer: Some(BufWriter::with_capacity(1 << 20, file)),
        })
    }

    pub fn final_path(&self) -> &Path {
        &self.final_path
    }

    /// Flush, fsync, rename into place, fsync the directory.
    pub fn commit(mut self) -> Result<PathBuf> {
        let writer = self.writer.take().expect("writer present until commit");
        let file = writer
            .into_inner()
            .map_err(|e| e.into_error())
            .with_context(|| format!("flushing {}", self.temp_path.display()))?;
        file.sync_all()
            .with_context(|| format!("fsync {}", self.temp_path.display()))?;
        drop(file);
        fs::rename(&self.temp_path, &self.final_path).with_context(|| {
            format!(
                "renaming {} to {}",
                self.temp_path.display(),
                self.final_path.display()
            )
        })?;
        sync_dir(&self.final_path)?;
        Ok(self.final_path.clone())
    }
}

impl AtomicFile {
    /// Like [`AtomicFile::commit`], but when the final path already holds exactly these bytes the
    /// temporary is discarded and the existing file (and its mtime) kept. Returns whether it replaced.
    pub fn commit_unless_identical(mut self) -> Result<bool> {
        if self.final_path.exists() {
            self.writer
                .as_mut()
                .expect("writer present until commit")
                .flush()
                .with_context(|| format!("flushing {}", self.temp_path.display()))?;
            if same_contents(&self.temp_path, &self.final_path)? {
                return Ok(false); // Drop removes the temporary.
            }
        }
        self.commit()?;
        Ok(true)
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.writer
            .as_mut()
            .expect("writer present until commit")
            .write(buf)
    }
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.writer
            .as_mut()
            .expect("writer present until commit")
            .write_all(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.writer
            .as_mut()
            .expect("writer present until commit")
            .flush()
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.writer.take().is_some() {
            let _ = fs::remove_file(&self.temp_path);
        }
    }
}

/// Whether two files hold the same bytes (compared block by block, so a large file is never held
/// in memory whole).
fn same_contents(a: &Path, b: &Path) -> Result<bool> {
    use std::io::Read;
    let open = |p: &Path| File::open(p).with_context(|| format!("opening {}", p.display()));
    let (fa, fb) = (open(a)?, open(b)?);
    let len = |f: &File, p: &Path| {
        f.metadata()
            .map(|m| m.len())
            .with_context(|| format!("reading metadata of {}", p.display()))
    };
    if len(&fa, a)? != len(&fb, b)? {
        return Ok(false);
    }
    let (mut ra, mut rb) = (io::BufReader::new(fa), io::BufReader::new(fb));
    let (mut ba, mut bb) = (vec![0u8; 1 << 16], vec![0u8; 1 << 16]);
    loop {
        let n = ra
            .read(&mut ba)
            .with_context(|| format!("reading {}", a.display()))?;
        if n == 0 {
            return Ok(true);
        }
        rb.read_exact(&mut bb[..n])
            .with_context(|| format!("reading {}", b.display()))?;
        if ba[..n] != bb[..n] {
            return Ok(false);
        }
    }
}

/// Write `bytes` to `path` atomically.
pub fn write_atomic(path: impl AsRef<Path>, bytes: &[u8]) -> Result<()> {
    let mut file = AtomicFile::create(path)?;
    file.write_all(bytes)
        .with_context(|| format!("writing {}", file.final_path().display()))?;
    file.commit()?;
    Ok(())
}

/// fsync the directory holding `path`, so a rename into it is durable.
pub fn sync_dir(path: &Path) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("fsync directory {}", dir.display()))
}

/// Atomically replace directory `final_dir` with the fully written `temp_dir` (same parent).
/// An existing `final_dir` is moved aside first and removed after the swap.
pub fn commit_dir(temp_dir: &Path, final_dir: &Path) -> Result<()> {
    for entry in
        fs::read_dir(temp_dir).with_context(|| format!("reading {}", temp_dir.display()))?
    {
        let path = entry?.path();
        if path.is_file() {
            File::open(&path)
                .and_then(|f| f.sync_all())
                .with_context(|| format!("fsync {}", path.display()))?;
        }
    }
    File::open(temp_dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("fsync {}", temp_dir.display()))?;
    let old = if final_dir.exists() {
        let old = temp_path_for(final_dir);
        fs::rename(final_dir, &old)
            .with_context(|| format!("moving aside {}", final_dir.display()))?;
        Some(old)
    } else {
        None
    };
    fs::rename(temp_dir, final_dir)
        .with_context(|| format!("renaming {} to {}", temp_dir.display(), final_dir.display()))?;
    sync_dir(final_dir)?;
    if let Some(old) = old {
        fs::remove_dir_all(&old).with_context(|| format!("removing {}", old.display()))?;
    }
    Ok(())
}

/// Remove temporaries left in `dir` by killed runs. Returns how many were removed.
pub fn remove_stale_temps(dir: &Path) -> Result<usize> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Ok(0);
    };
    let mut removed = 0;
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') && name.contains(TEMP_MARKER) {
            let path = entry.path();
            if path.is_dir() {
                fs::remove_dir_all(&path)
            } else {
                fs::remove_file(&path)
            }
            .with_context(|| format!("removing stale temporary {}", path.display()))?;
            removed += 1;
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uncommitted_file_never_appears() {
        let dir = std::env::temp_dir().join(format!("atomic-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("out.bin");
        {
            let mut f = AtomicFile::create(&path).unwrap();
            f.write_all(b"partial").unwrap();
            assert!(!path.exists());
        }
        assert!(!path.exists());
        assert_eq!(
            fs::read_dir(&dir).unwrap().count(),
            0,
            "temporary removed on drop"
        );
        let mut f = AtomicFile::create(&path).unwrap();
        f.write_all(b"whole").unwrap();
        f.commit().unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"whole");
        fs::remove_dir_all(&dir).unwrap();
    }
}
