//! Files that appear under their final name only when complete.
//!
//! Data is written to a hidden temporary name in the same directory, flushed, fsynced and renamed into
//! place, and the directory is fsynced so the rename itself survives a crash. A process killed at any
//! instant leaves at most a `.NAME.tmp-*` file behind, never a truncated file at `NAME`;
//! [`remove_stale_temps`] sweeps those on the next run. A write, flush, fsync or rename that fails
//! (a full disk) removes the temporary at once, so a failed stage leaves nothing behind either.
//!
//! [`limit_writes_under`] simulates a full disk for tests: files written through [`AtomicFile`]
//! under a directory share a byte budget, and writes past it fail as `ENOSPC` would.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

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

// ---------------------------------------------------------------------------------------------
// Simulated full disk (tests)

/// Limits registered by [`limit_writes_under`]: (directory, remaining bytes, id).
static LIMITS: Mutex<Vec<(PathBuf, Arc<Budget>, u64)>> = Mutex::new(Vec::new());
/// How many limits are registered (so that creating a file costs nothing when none is).
static LIMITS_ACTIVE: AtomicUsize = AtomicUsize::new(0);
static LIMIT_IDS: AtomicU64 = AtomicU64::new(0);

/// The bytes that files under one directory may still write, and the bytes they wrote.
#[derive(Debug)]
struct Budget {
    remaining: AtomicU64,
    written: AtomicU64,
}

impl Budget {
    /// Take up to `n` bytes of the budget; how many were granted.
    fn take(&self, n: u64) -> u64 {
        let granted = match self
            .remaining
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |r| Some(r - r.min(n)))
        {
            Ok(before) | Err(before) => before.min(n),
        };
        self.written.fetch_add(granted, Ordering::SeqCst);
        granted
    }
}

/// A simulated full disk under one directory; dropping it lifts the limit.
#[derive(Debug)]
pub struct WriteLimit {
    id: u64,
    budget: Arc<Budget>,
}

impl WriteLimit {
    /// Bytes written under the directory so far (through [`AtomicFile`]).
    pub fn written(&self) -> u64 {
        self.budget.written.load(Ordering::SeqCst)
    }
}

impl Drop for WriteLimit {
    fn drop(&mut self) {
        let mut limits = LIMITS.lock().unwrap_or_else(|e| e.into_inner());
        limits.retain(|(_, _, id)| *id != self.id);
        LIMITS_ACTIVE.store(limits.len(), Ordering::SeqCst);
    }
}

/// Test hook: from now until the returned guard is dropped, the files that [`AtomicFile`] creates
/// under `dir` (paths compared as given, e.g. both absolute) may write `bytes` bytes in all; the
/// write that crosses the limit is cut short and every later one fails with `StorageFull` ("No
/// space left on device"), as on a full disk. Other directories are unaffected, so tests running in
/// parallel do not disturb each other.
pub fn limit_writes_under(dir: impl Into<PathBuf>, bytes: u64) -> WriteLimit {
    let budget = Arc::new(Budget {
        remaining: AtomicU64::new(bytes),
        written: AtomicU64::new(0),
    });
    let id = LIMIT_IDS.fetch_add(1, Ordering::SeqCst);
    let mut limits = LIMITS.lock().unwrap_or_else(|e| e.into_inner());
    limits.push((dir.into(), budget.clone(), id));
    LIMITS_ACTIVE.store(limits.len(), Ordering::SeqCst);
    WriteLimit { id, budget }
}

fn budget_for(path: &Path) -> Option<Arc<Budget>> {
    if LIMITS_ACTIVE.load(Ordering::SeqCst) == 0 {
        return None;
    }
    let limits = LIMITS.lock().unwrap_or_else(|e| e.into_inner());
    limits
        .iter()
        .find(|(dir, _, _)| path.starts_with(dir))
        .map(|(_, budget, _)| budget.clone())
}

/// The file under a temporary name, with the simulated disk's budget when one applies.
struct Sink {
    file: File,
    budget: Option<Arc<Budget>>,
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let Some(budget) = &self.budget else {
            return self.file.write(buf);
        };
        if buf.is_empty() {
            return Ok(0);
        }
        let granted = budget.take(buf.len() as u64) as usize;
        if granted == 0 {
            return Err(io::Error::new(
                io::ErrorKind::StorageFull,
                "No space left on device (simulated full disk)",
            ));
        }
        self.file.write_all(&buf[..granted])?;
        Ok(granted)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

// ---------------------------------------------------------------------------------------------

/// A file being written; becomes visible at its final path only through [`AtomicFile::commit`].
/// Dropping it uncommitted removes the temporary, and so does a commit that fails.
pub struct AtomicFile {
    final_path: PathBuf,
    temp_path: PathBuf,
    writer: Option<BufWriter<Sink>>,
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
        let sink = Sink {
            file,
            budget: budget_for(&final_path),
        };
        Ok(Self {
            final_path,
            temp_path,
            writer: Some(BufWriter::with_capacity(1 << 20, sink)),
        })
    }

    pub fn final_path(&self) -> &Path {
        &self.final_path
    }

    /// Flush, fsync, rename into place, fsync the directory. When any step fails (e.g. the flush
    /// on a full disk) the temporary is removed before the error is returned.
    pub fn commit(mut self) -> Result<PathBuf> {
        let writer = self.writer.take().expect("writer present until commit");
        let result = self.flush_and_rename(writer);
        if result.is_err() {
            let _ = fs::remove_file(&self.temp_path);
        }
        result
    }

    fn flush_and_rename(&self, writer: BufWriter<Sink>) -> Result<PathBuf> {
        let sink = writer
            .into_inner()
            .map_err(|e| e.into_error())
            .with_context(|| format!("flushing {}", self.temp_path.display()))?;
        sink.file
            .sync_all()
            .with_context(|| format!("fsync {}", self.temp_path.display()))?;
        drop(sink);
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
        if let Some(writer) = self.writer.take() {
            // Discard the buffer unwritten (a BufWriter dropped whole would try to flush it).
            let _ = writer.into_parts();
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
/// An existing `final_dir` is moved aside first and removed after the swap. When the swap fails,
/// `temp_dir` is removed (and a moved-aside `final_dir` put back).
pub fn commit_dir(temp_dir: &Path, final_dir: &Path) -> Result<()> {
    let result = swap_dir(temp_dir, final_dir);
    if result.is_err() {
        let _ = fs::remove_dir_all(temp_dir);
    }
    result
}

fn swap_dir(temp_dir: &Path, final_dir: &Path) -> Result<()> {
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
    if let Err(e) = fs::rename(temp_dir, final_dir) {
        if let Some(old) = &old {
            let _ = fs::rename(old, final_dir);
        }
        return Err(e).with_context(|| {
            format!("renaming {} to {}", temp_dir.display(), final_dir.display())
        });
    }
    sync_dir(final_dir)?;
    if let Some(old) = old {
        fs::remove_dir_all(&old).with_context(|| format!("removing {}", old.display()))?;
    }
    Ok(())
}

/// Remove temporaries left in `dir` by killed runs. Returns how many were removed. Only for a
/// folder this run owns: a run writing beside others (one task of a job array) sweeps with
/// [`remove_stale_temps_of`].
pub fn remove_stale_temps(dir: &Path) -> Result<usize> {
    remove_temps_where(dir, |name| {
        name.starts_with('.') && name.contains(TEMP_MARKER)
    })
}

/// Remove the temporaries of the files `finals` (`.NAME.tmp-*` beside each) left by killed runs,
/// and nothing else: runs that write other files of the same folders at the same time (other
/// tasks of a job array) keep theirs. Each folder is listed once. Returns how many were removed.
pub fn remove_stale_temps_of<'a>(finals: impl IntoIterator<Item = &'a Path>) -> Result<usize> {
    let mut by_dir: std::collections::BTreeMap<&Path, Vec<String>> = Default::default();
    for f in finals {
        if let (Some(dir), Some(name)) = (f.parent(), f.file_name()) {
            let prefix = format!(".{}{TEMP_MARKER}", name.to_string_lossy());
            by_dir.entry(dir).or_default().push(prefix);
        }
    }
    let mut removed = 0;
    for (dir, prefixes) in by_dir {
        removed += remove_temps_where(dir, |name| prefixes.iter().any(|p| name.starts_with(p)))?;
    }
    Ok(removed)
}

fn remove_temps_where(dir: &Path, is_stale: impl Fn(&str) -> bool) -> Result<usize> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Ok(0);
    };
    let mut removed = 0;
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if is_stale(&name) {
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
    fn sweeping_own_temporaries_leaves_other_runs_alone() {
        let dir = tempfile_dir("own-temps");
        let mine = dir.join("a.bin");
        let theirs = dir.join("b.bin");
        for p in [&mine, &theirs] {
            fs::write(temp_path_for(p), b"partial").unwrap();
        }
        fs::write(dir.join(".a.binary.tmp-1"), b"x").unwrap(); // another file's name prefix
        assert_eq!(remove_stale_temps_of([mine.as_path()]).unwrap(), 1);
        let mut left: Vec<String> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left.len(), 2, "{left:?}");
        assert!(
            left.iter().any(|n| n.starts_with(".b.bin.tmp-")),
            "{left:?}"
        );
        assert!(left.contains(&".a.binary.tmp-1".to_string()), "{left:?}");
        assert_eq!(remove_stale_temps(&dir).unwrap(), 2);
        fs::remove_dir_all(&dir).unwrap();
    }

    fn tempfile_dir(tag: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("atomic-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

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

    /// A full disk: a write cut short, a flush that fails inside `commit` (the whole file still
    /// in the buffer, as with any small file), a failing `commit_unless_identical`, `write_atomic`:
    /// each error leaves no temporary behind.
    #[test]
    fn failures_remove_the_temporary() {
        let dir = std::env::temp_dir().join(format!("atomic-full-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let listing = || {
            let mut names: Vec<String> = fs::read_dir(&dir)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            names
        };
        let limit = limit_writes_under(&dir, 10);
        // The buffer holds everything: the failure comes at commit's flush.
        let mut f = AtomicFile::create(dir.join("small.bin")).unwrap();
        f.write_all(b"more than ten bytes").unwrap();
        let err = format!("{:#}", f.commit().unwrap_err());
        assert!(err.contains("No space left on device"), "{err}");
        assert_eq!(limit.written(), 10);
        assert!(listing().is_empty(), "{:?}", listing());

        // A write larger than the buffer fails part way.
        let mut f = AtomicFile::create(dir.join("big.bin")).unwrap();
        let e = f.write_all(&vec![7u8; 3 << 20]).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::StorageFull);
        drop(f);
        assert!(listing().is_empty(), "{:?}", listing());

        assert!(write_atomic(dir.join("x.json"), b"{}").is_err());
        assert!(listing().is_empty(), "{:?}", listing());
        drop(limit);

        // An existing file and a failing commit_unless_identical keep the old file only.
        write_atomic(dir.join("keep.bin"), b"old").unwrap();
        let limit = limit_writes_under(&dir, 2);
        let mut f = AtomicFile::create(dir.join("keep.bin")).unwrap();
        f.write_all(b"new bytes").unwrap();
        assert!(f.commit_unless_identical().is_err());
        assert_eq!(listing(), ["keep.bin"]);
        assert_eq!(fs::read(dir.join("keep.bin")).unwrap(), b"old");
        drop(limit);
        // Without the limit, writing works again; other directories never had one.
        write_atomic(dir.join("after.bin"), b"fine").unwrap();
        assert_eq!(listing(), ["after.bin", "keep.bin"]);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_failed_directory_swap_removes_the_new_directory() {
        let base = std::env::temp_dir().join(format!("atomic-dir-{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        let temp = base.join(".out.tmp-1");
        fs::create_dir_all(&temp).unwrap();
        fs::write(temp.join("a"), b"a").unwrap();
        // The final path's parent is a file: the rename fails.
        fs::write(base.join("file"), b"").unwrap();
        assert!(commit_dir(&temp, &base.join("file/out")).is_err());
        assert!(!temp.exists());
        fs::remove_dir_all(&base).unwrap();
    }
}
