//! Progress for long work: an indicatif bar (rate, ETA) on a terminal, otherwise periodic plain lines
//! logged through `tracing` like every other log line.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{
    HumanBytes, HumanDuration, MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle,
};

/// What a bar counts.
#[derive(Clone, Copy, Debug)]
pub enum Unit {
    Bytes,
    /// A count of things, e.g. `Count("records")`.
    Count(&'static str),
}

/// Whether bars are drawn (stderr is a terminal and `CI` is unset) or replaced by plain lines.
pub fn interactive() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("CI").is_none()
}

fn plain_interval() -> Duration {
    let secs = std::env::var("BIOMAMBA_PROGRESS_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10.0);
    Duration::from_secs_f64(secs)
}

struct Plain {
    last: Instant,
    interval: Duration,
}

/// A progress reporter; cheap to clone-by-reference and safe to share between threads.
pub struct Progress {
    bar: ProgressBar,
    label: String,
    unit: Unit,
    plain: Option<Mutex<Plain>>,
}

impl Progress {
    /// A standalone bar. `len` may be 0 when unknown.
    pub fn new(label: &str, len: u64, unit: Unit) -> Self {
        Self::build(None, label, len, unit)
    }

    /// A bar inside a group of bars drawn together (e.g. one per active download plus a total).
    pub fn in_group(group: &MultiProgress, label: &str, len: u64, unit: Unit) -> Self {
        Self::build(Some(group), label, len, unit)
    }

    /// A group for [`Progress::in_group`]; hidden when not interactive.
    pub fn group() -> MultiProgress {
        if interactive() {
            MultiProgress::new()
        } else {
            MultiProgress::with_draw_target(ProgressDrawTarget::hidden())
        }
    }

    fn build(group: Option<&MultiProgress>, label: &str, len: u64, unit: Unit) -> Self {
        let interactive = interactive();
        let bar = if interactive {
            ProgressBar::new(len)
        } else {
            ProgressBar::hidden()
        };
        bar.set_length(len);
        let bar = match group {
            Some(g) => g.add(bar),
            None => bar,
        };
        if interactive {
            let template = match unit {
                Unit::Bytes => {
                    "{prefix:>12} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta} {msg}"
                }
                Unit::Count(_) => {
                    "{prefix:>12} [{bar:30}] {human_pos}/{human_len} {per_sec} ETA {eta} {msg}"
                }
            };
            bar.set_style(
                ProgressStyle::with_template(template)
                    .expect("valid template")
                    .progress_chars("=> "),
            );
            bar.enable_steady_tick(Duration::from_millis(200));
        }
        bar.set_prefix(label.to_string());
        let plain = (!interactive).then(|| {
            Mutex::new(Plain {
                last: Instant::now(),
                interval: plain_interval(),
            })
        });
        Self {
            bar,
            label: label.to_string(),
            unit,
            plain,
        }
    }

    pub fn set_length(&self, len: u64) {
        self.bar.set_length(len);
    }
    pub fn set_position(&self, pos: u64) {
        self.bar.set_position(pos);
        self.maybe_line();
    }
    pub fn inc(&self, n: u64) {
        self.bar.inc(n);
        self.maybe_line();
    }
    pub fn set_message(&self, msg: impl Into<String>) {
        self.bar.set_message(msg.into());
    }
    pub fn position(&self) -> u64 {
        self.bar.position()
    }

    fn fmt_amount(&self, n: u64) -> String {
        match self.unit {
            Unit::Bytes => HumanBytes(n).to_string(),
            Unit::Count(_) => n.to_string(),
        }
    }

    fn line(&self) -> String {
        let pos = self.bar.position();
        let len = self.bar.length().unwrap_or(0);
        let rate = self.bar.per_sec();
        let rate = match self.unit {
            Unit::Bytes => format!("{}/s", HumanBytes(rate as u64)),
            Unit::Count(what) => format!("{rate:.1} {what}/s"),
        };
        let total = if len > 0 {
            format!("/{}", self.fmt_amount(len))
        } else {
            String::new()
        };
        let eta = if len > pos && pos > 0 {
            format!(", ETA {}", HumanDuration(self.bar.eta()))
        } else {
            String::new()
        };
        let msg = self.bar.message();
        let msg = if msg.is_empty() {
            msg
        } else {
            format!(" {msg}")
        };
        format!(
            "{}: {}{} ({rate}{eta}){msg}",
            self.label,
            self.fmt_amount(pos),
            total
        )
    }

    fn maybe_line(&self) {
        if let Some(plain) = &self.plain {
            let mut p = plain.lock().expect("progress lock");
            if p.last.elapsed() >= p.interval {
                p.last = Instant::now();
                tracing::info!("{}", self.line());
            }
        }
    }

    /// Finish the bar; in plain mode print a final line.
    pub fn finish(&self) {
        if self.plain.is_some() {
            tracing::info!(
                "{} done in {}",
                self.line(),
                HumanDuration(self.bar.elapsed())
            );
        }
        self.bar.finish_and_clear();
    }
}
