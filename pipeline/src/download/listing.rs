//! What to download: PubMed file names from an HTML directory index or a list file, the `--files`
//! selection syntax, and `.md5` sidecars.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::{Context, Result, bail};

/// A PubMed file name `pubmedYYnNNNN.xml.gz`, with its number `NNNN`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct PubmedName {
    pub name: String,
    pub number: u32,
}

/// Parse `pubmedYYnNNNN.xml.gz` (exactly; `.md5` sidecars and other names give `None`).
pub fn parse_pubmed_name(name: &str) -> Option<PubmedName> {
    let rest = name.strip_prefix("pubmed")?;
    let rest = rest.strip_suffix(".xml.gz")?;
    let (year, number) = rest.split_once('n')?;
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if year.len() != 2 || !all_digits(year) || number.len() < 4 || !all_digits(number) {
        return None;
    }
    Some(PubmedName {
        name: name.to_string(),
        number: number.parse().ok()?,
    })
}

/// The last path segment of a link or path, without query or fragment.
fn basename(link: &str) -> &str {
    let link = link.split(['?', '#']).next().unwrap_or(link);
    link.rsplit('/').next().unwrap_or(link)
}

/// PubMed file names linked from an HTML directory index (Apache/nginx style `href="..."`), sorted,
/// without duplicates.
pub fn names_from_html(html: &str) -> Vec<PubmedName> {
    let mut names = BTreeSet::new();
    let lower = html.to_ascii_lowercase();
    let mut from = 0;
    while let Some(pos) = lower[from..].find("href=") {
        let start = from + pos + "href=".len();
        let rest = &html[start..];
        let (value, consumed) = match rest.chars().next() {
            Some(q @ ('"' | '\'')) => {
                let inner = &rest[1..];
                match inner.find(q) {
                    Some(end) => (&inner[..end], end + 2),
                    None => (inner, inner.len() + 1),
                }
            }
            _ => {
                let end = rest
                    .find(|c: char| c.is_ascii_whitespace() || c == '>')
                    .unwrap_or(rest.len());
                (&rest[..end], end)
            }
        };
        if let Some(name) = parse_pubmed_name(basename(value)) {
            names.insert(name);
        }
        from = start + consumed.max(1);
    }
    names.into_iter().collect()
}

/// Which remote directory a file lives in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RemoteDir {
    Baseline,
    Updatefiles,
}

impl RemoteDir {
    pub fn as_str(self) -> &'static str {
        match self {
            RemoteDir::Baseline => "baseline",
            RemoteDir::Updatefiles => "updatefiles",
        }
    }
}

/// Read a local list of files: an HTML index (anything containing `href=`, read as such) or one entry
/// per line — a name, a path or a URL; `#` starts a comment. An entry whose path has an `updatefiles/`
/// segment is an update file, anything else a baseline file.
pub fn names_from_list_file(path: &Path) -> Result<Vec<(RemoteDir, PubmedName)>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading file list {}", path.display()))?;
    if text.to_ascii_lowercase().contains("href=") {
        return Ok(names_from_html(&text)
            .into_iter()
            .map(|n| (RemoteDir::Baseline, n))
            .collect());
    }
    let mut out = BTreeSet::new();
    for (i, line) in text.lines().enumerate() {
        let entry = line.split('#').next().unwrap_or("").trim();
        if entry.is_empty() {
            continue;
        }
        let name = parse_pubmed_name(basename(entry)).with_context(|| {
            format!(
                "{}:{}: {entry:?} is not a PubMed file name (expected pubmedYYnNNNN.xml.gz)",
                path.display(),
                i + 1
            )
        })?;
        let dir = if entry.contains("updatefiles/") {
            RemoteDir::Updatefiles
        } else {
            RemoteDir::Baseline
        };
        out.insert((dir, name));
    }
    Ok(out.into_iter().collect())
}

/// A selection of file numbers: `all`, `none`, or a comma list of numbers and inclusive ranges
/// (`1-5`, `3,7-9`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selection {
    All,
    Ranges(Vec<(u32, u32)>),
}

impl Selection {
    pub fn parse(spec: &str) -> Result<Self> {
        let spec = spec.trim();
        match spec.to_ascii_lowercase().as_str() {
            "all" | "*" => return Ok(Selection::All),
            "none" | "" => return Ok(Selection::Ranges(Vec::new())),
            _ => {}
        }
        let number = |s: &str| -> Result<u32> {
            s.trim().parse().with_context(|| {
                format!("file selection {spec:?}: {s:?} is not a file number (expected e.g. 1-5,7)")
            })
        };
        let mut ranges = Vec::new();
        for part in spec.split(',') {
            let (lo, hi) = match part.split_once('-') {
                Some((a, b)) => (number(a)?, number(b)?),
                None => {
                    let n = number(part)?;
                    (n, n)
                }
            };
            if lo > hi {
                bail!("file selection {spec:?}: range {part:?} runs backwards");
            }
            ranges.push((lo, hi));
        }
        Ok(Selection::Ranges(ranges))
    }

    pub fn is_empty(&self) -> bool {
        matches!(self, Selection::Ranges(r) if r.is_empty())
    }

    pub fn contains(&self, n: u32) -> bool {
        match self {
            Selection::All => true,
            Selection::Ranges(r) => r.iter().any(|&(lo, hi)| (lo..=hi).contains(&n)),
        }
    }

    /// The selected subset of `names`. Explicitly requested numbers absent from `names` are an error
    /// (a typo should not silently download nothing).
    pub fn apply(&self, names: &[PubmedName], what: &str) -> Result<Vec<PubmedName>> {
        let chosen: Vec<PubmedName> = names
            .iter()
            .filter(|n| self.contains(n.number))
            .cloned()
            .collect();
        if let Selection::Ranges(ranges) = self {
            let present: BTreeSet<u32> = names.iter().map(|n| n.number).collect();
            let missing: Vec<String> = ranges
                .iter()
                .filter(|&&(lo, hi)| present.range(lo..=hi).next().is_none())
                .map(|&(lo, hi)| {
                    if lo == hi {
                        lo.to_string()
                    } else {
                        format!("{lo}-{hi}")
                    }
                })
                .collect();
            if !missing.is_empty() {
                let (first, last) = match (names.first(), names.last()) {
                    (Some(f), Some(l)) => (f.number.to_string(), l.number.to_string()),
                    _ => ("-".into(), "-".into()),
                };
                bail!(
                    "{what}: no file numbered {} in the listing ({} files, numbers {first}..{last})",
                    missing.join(", "),
                    names.len()
                );
            }
        }
        Ok(chosen)
    }
}

/// Parse an `.md5` sidecar for `name`: OpenSSL form `MD5(name)= hex`, coreutils form `hex  name`
/// (or `hex *name`), or a bare `hex`. Returns the lowercase hex digest.
pub fn parse_md5_sidecar(text: &str, name: &str) -> Result<String> {
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .with_context(|| format!("md5 sidecar of {name} is empty"))?;
    let is_hex = |s: &str| s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit());
    let (digest, named) = if let Some(rest) = line.strip_prefix("MD5(") {
        let (named, digest) = rest.split_once(")=").with_context(|| {
            format!("md5 sidecar of {name}: {line:?} is not of the form MD5(name)= hex")
        })?;
        (digest.trim(), Some(named.trim()))
    } else {
        let mut parts = line.split_whitespace();
        let digest = parts.next().unwrap_or("");
        let named = parts.next().map(|n| n.trim_start_matches('*'));
        (digest, named)
    };
    if !is_hex(digest) {
        bail!("md5 sidecar of {name}: {line:?} holds no 32-digit hex MD5");
    }
    if let Some(named) = named
        && basename(named) != name
    {
        bail!("md5 sidecar of {name} names another file: {line:?}");
    }
    Ok(digest.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pubmed_names() {
        let n = parse_pubmed_name("pubmed26n1334.xml.gz").unwrap();
        assert_eq!(n.number, 1334);
        assert!(parse_pubmed_name("pubmed26n1334.xml.gz.md5").is_none());
        assert!(parse_pubmed_name("pubmed26n13.xml.gz").is_none());
        assert!(parse_pubmed_name("pubmedxxn1334.xml.gz").is_none());
        assert!(parse_pubmed_name("README.txt").is_none());
    }

    #[test]
    fn html_index() {
        let html = r#"<html><body><pre><a href="../">../</a>
<a href="pubmed26n0002.xml.gz">pubmed26n0002.xml.gz</a>   10-Dec-2025 14:00  18M
<a href="pubmed26n0002.xml.gz.md5">pubmed26n0002.xml.gz.md5</a>
<A HREF='/pubmed/baseline/pubmed26n0001.xml.gz'>x</A>
<a href=pubmed26n0003.xml.gz>y</a><a href="pubmed26n0001.xml.gz">dup</a><a href="README.txt">r</a>
</pre></body></html>"#;
        let names: Vec<u32> = names_from_html(html).iter().map(|n| n.number).collect();
        assert_eq!(names, vec![1, 2, 3]);
    }

    #[test]
    fn selections() {
        let names: Vec<PubmedName> = (1..=10)
            .map(|i| parse_pubmed_name(&format!("pubmed26n{i:04}.xml.gz")).unwrap())
            .collect();
        let pick = |s: &str| -> Vec<u32> {
            Selection::parse(s)
                .unwrap()
                .apply(&names, "--files")
                .unwrap()
                .iter()
                .map(|n| n.number)
                .collect()
        };
        assert_eq!(pick("1-5"), vec![1, 2, 3, 4, 5]);
        assert_eq!(pick("3,7-9"), vec![3, 7, 8, 9]);
        assert_eq!(pick("all").len(), 10);
        assert!(pick("none").is_empty());
        // A range reaching past the listing is fine as long as it selects something.
        assert_eq!(pick("9-20"), vec![9, 10]);
        let err = Selection::parse("3,40")
            .unwrap()
            .apply(&names, "--files")
            .unwrap_err();
        assert!(err.to_string().contains("40"), "{err}");
        assert!(Selection::parse("5-1").is_err());
        assert!(Selection::parse("x").is_err());
    }

    #[test]
    fn md5_sidecars() {
        let d = "3cf53ba34ff73126e42d1d8391330e73";
        let name = "pubmed26n1334.xml.gz";
        assert_eq!(
            parse_md5_sidecar(&format!("MD5({name})= {d}\n"), name).unwrap(),
            d
        );
        assert_eq!(
            parse_md5_sidecar(&format!("{d}  {name}\n"), name).unwrap(),
            d
        );
        assert_eq!(parse_md5_sidecar(&format!("{d} *{name}"), name).unwrap(), d);
        assert_eq!(parse_md5_sidecar(&d.to_uppercase(), name).unwrap(), d);
        assert!(parse_md5_sidecar(&format!("MD5(other.xml.gz)= {d}"), name).is_err());
        assert!(parse_md5_sidecar("<html>not found</html>", name).is_err());
        assert!(parse_md5_sidecar("", name).is_err());
    }
}
