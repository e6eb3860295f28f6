//! Logging (tracing to stderr, text or JSON) and progress reporting: a progress bar on a
//! TTY, plain periodic log lines otherwise (Slurm logs, CI, pipes).

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::ValueEnum;
use indicatif::{ProgressBar, ProgressStyle};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

static JSON: AtomicBool = AtomicBool::new(false);

/// Logs are JSON lines: summaries carry their counts as fields (in text they are in the
/// message already, so they are left out there).
pub fn json_logs() -> bool {
    JSON.load(Ordering::Relaxed)
}

/// Install the global tracing subscriber. `RUST_LOG` overrides the level.
pub fn init(quiet: bool, format: LogFormat) {
    JSON.store(format == LogFormat::Json, Ordering::Relaxed);
    let default = if quiet { "warn" } else { "info" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false);
    let _ = match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// What the process is waiting on right now, for progress lines: engines hold a gauge
/// while a sequence waits for or is in an LLM request, or a sandbox check is pending.
pub mod gauges {
    use std::sync::atomic::{AtomicI64, Ordering};

    /// LLM sequences waiting for a concurrency permit.
    pub static LLM_WAITING: AtomicI64 = AtomicI64::new(0);
    /// LLM sequences in an HTTP request.
    pub static LLM_SENDING: AtomicI64 = AtomicI64::new(0);
    /// Sandbox checks submitted and not yet answered (queued or running).
    pub static SANDBOX_PENDING: AtomicI64 = AtomicI64::new(0);

    /// Counts `n` on a gauge until dropped.
    pub struct Held(&'static AtomicI64, i64);

    pub fn hold(gauge: &'static AtomicI64, n: i64) -> Held {
        gauge.fetch_add(n, Ordering::Relaxed);
        Held(gauge, n)
    }

    impl Drop for Held {
        fn drop(&mut self) {
            self.0.fetch_sub(self.1, Ordering::Relaxed);
        }
    }

    /// "LLM: 8 sequences in requests, 4 waiting; sandbox: 2 checks", or "" when idle.
    pub fn waiting_on() -> String {
        let (waiting, sending, sandbox) =
            (LLM_WAITING.load(Ordering::Relaxed), LLM_SENDING.load(Ordering::Relaxed), SANDBOX_PENDING.load(Ordering::Relaxed));
        let mut parts = Vec::new();
        if waiting > 0 || sending > 0 {
            parts.push(format!("LLM: {sending} sequences in requests, {waiting} waiting for a slot"));
        }
        if sandbox > 0 {
            parts.push(format!("sandbox: {sandbox} checks"));
        }
        parts.join("; ")
    }
}

/// The progress of whatever runs now, shared with the ticker thread and the interrupt
/// handler.
#[derive(Debug)]
pub struct ProgressState {
    pub label: String,
    /// What `done` counts ("documents", "records").
    pub unit: &'static str,
    /// What the second count counts ("kept", "ok").
    pub second: &'static str,
    pub total: Option<u64>,
    /// Done before this process started (a resumed output): not part of the rate.
    pub resumed: u64,
    /// Where the results go (for "the same command resumes" messages).
    pub place: String,
    pub done: AtomicU64,
    pub ok: AtomicU64,
    pub started: Instant,
}

impl ProgressState {
    /// "40/120 records (33%), 38 ok, 2.1/min, ETA 38 min" (no total: "40 records, …").
    pub fn line(&self) -> String {
        let done = self.done.load(Ordering::Relaxed);
        let ok = self.ok.load(Ordering::Relaxed);
        let fresh = done.saturating_sub(self.resumed);
        let elapsed = self.started.elapsed().as_secs_f64();
        let mut out = match self.total {
            Some(total) if total > 0 => format!("{done}/{total} {} ({:.0}%)", self.unit, 100.0 * done as f64 / total as f64),
            _ => format!("{done} {}", self.unit),
        };
        out.push_str(&format!(", {ok} {}, {}", self.second, rate(fresh, elapsed)));
        if let Some(eta) = self.eta_seconds() {
            out.push_str(&format!(", ETA {}", human_duration(eta)));
        }
        out
    }

    pub fn eta_seconds(&self) -> Option<f64> {
        let done = self.done.load(Ordering::Relaxed);
        let fresh = done.saturating_sub(self.resumed);
        let total = self.total?;
        (fresh > 0 && total > done).then(|| (total - done) as f64 * self.started.elapsed().as_secs_f64() / fresh as f64)
    }
}

static CURRENT: Mutex<Option<Arc<ProgressState>>> = Mutex::new(None);

/// The progress of the stage running now, if any.
pub fn current() -> Option<Arc<ProgressState>> {
    CURRENT.lock().ok().and_then(|c| c.clone())
}

/// Seconds between progress lines in a non-interactive log ([default: 30];
/// `UNITCODER_PROGRESS_SECS` sets it, e.g. for a Slurm log).
fn heartbeat_every() -> Duration {
    let secs = std::env::var("UNITCODER_PROGRESS_SECS").ok().and_then(|v| v.parse::<f64>().ok()).filter(|s| *s > 0.0).unwrap_or(30.0);
    Duration::from_secs_f64(secs)
}

/// Progress of a stage: n of total, %, rate, ETA and what it waits on; a bar on a TTY, a
/// heartbeat line in logs (also while nothing finishes).
pub struct Progress {
    state: Arc<ProgressState>,
    bar: Option<ProgressBar>,
    stop: Arc<AtomicBool>,
    ticker: Option<std::thread::JoinHandle<()>>,
}

/// What a `Progress` counts.
pub struct ProgressSpec<'a> {
    pub label: &'a str,
    pub unit: &'static str,
    pub second: &'static str,
    pub total: Option<u64>,
    pub resumed: u64,
    pub place: String,
}

impl Progress {
    pub fn new(spec: ProgressSpec, quiet: bool) -> Self {
        let state = Arc::new(ProgressState {
            label: spec.label.to_string(),
            unit: spec.unit,
            second: spec.second,
            total: spec.total,
            resumed: spec.resumed,
            place: spec.place,
            done: AtomicU64::new(spec.resumed),
            ok: AtomicU64::new(0),
            started: Instant::now(),
        });
        if let Ok(mut c) = CURRENT.lock() {
            *c = Some(state.clone());
        }
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let bar = match spec.total {
                Some(total) => ProgressBar::new(total),
                None => ProgressBar::new_spinner(),
            };
            let template = match spec.total {
                Some(_) => "{prefix} [{elapsed_precise}] {wide_bar} {pos}/{len} ({percent}%) ETA {eta} {msg}",
                None => "{spinner} {prefix} [{elapsed_precise}] {pos} {msg}",
            };
            bar.set_style(ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_spinner()));
            bar.set_prefix(spec.label.to_string());
            bar.set_position(spec.resumed);
            bar
        });
        let stop = Arc::new(AtomicBool::new(false));
        let ticker = (!quiet).then(|| {
            let (state, stop, bar) = (state.clone(), stop.clone(), bar.clone());
            std::thread::Builder::new().name("progress".into()).spawn(move || tick(&state, &stop, bar.as_ref())).ok()
        });
        Self { state, bar, stop, ticker: ticker.flatten() }
    }

    /// Report `done` items so far (resumed ones included) and the second count.
    pub fn update(&mut self, done: u64, ok: u64) {
        self.state.done.store(done, Ordering::Relaxed);
        self.state.ok.store(ok, Ordering::Relaxed);
        if let Some(bar) = &self.bar {
            bar.set_position(done);
        }
    }

    pub fn finish(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.ticker.take() {
            let _ = t.join();
        }
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        if let Ok(mut c) = CURRENT.lock() {
            if c.as_ref().is_some_and(|s| Arc::ptr_eq(s, &self.state)) {
                *c = None;
            }
        }
    }
}

/// The ticker: the bar's message every second; a log line every `heartbeat_every()`.
fn tick(state: &ProgressState, stop: &AtomicBool, bar: Option<&ProgressBar>) {
    let every = heartbeat_every();
    let mut last = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(200).min(every));
        if let Some(bar) = bar {
            let ok = state.ok.load(Ordering::Relaxed);
            let waiting = gauges::waiting_on();
            let fresh = state.done.load(Ordering::Relaxed).saturating_sub(state.resumed);
            let rate = rate(fresh, state.started.elapsed().as_secs_f64());
            bar.set_message(if waiting.is_empty() {
                format!("{ok} {} ({rate})", state.second)
            } else {
                format!("{ok} {} ({rate}) {waiting}", state.second)
            });
        } else if last.elapsed() >= every {
            last = Instant::now();
            let waiting = gauges::waiting_on();
            let waiting = if waiting.is_empty() { String::new() } else { format!("; waiting on {waiting}") };
            let line = state.line();
            if json_logs() {
                tracing::info!(
                    stage = state.label.as_str(),
                    done = state.done.load(Ordering::Relaxed),
                    total = state.total,
                    ok = state.ok.load(Ordering::Relaxed),
                    eta_seconds = state.eta_seconds().map(|s| s.round() as u64),
                    "{}: {line}{waiting}",
                    state.label
                );
            } else {
                tracing::info!("{}: {line}{waiting}", state.label);
            }
        }
    }
}

/// "2 h 05 min", "7 min", "40 s".
pub fn human_duration(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    if s >= 3600 {
        format!("{} h {:02} min", s / 3600, (s % 3600) / 60)
    } else if s >= 60 {
        format!("{} min", s.div_ceil(60))
    } else {
        format!("{s} s")
    }
}

/// A rate people can read at any speed: LLM stages do a record every few seconds, extract
/// thousands a second ("0/s" said nothing).
pub fn rate(done: u64, seconds: f64) -> String {
    let per_second = done as f64 / seconds.max(1e-9);
    if done == 0 {
        "0/s".into()
    } else if per_second >= 10.0 {
        format!("{per_second:.0}/s")
    } else if per_second >= 1.0 {
        format!("{per_second:.1}/s")
    } else if per_second * 60.0 >= 1.0 {
        format!("{:.1}/min", per_second * 60.0)
    } else {
        format!("{:.0} s each", 1.0 / per_second)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn slow_rates_are_not_zero() {
        assert_eq!(super::rate(3, 10.0), "18.0/min");
        assert_eq!(super::rate(1, 200.0), "200 s each");
        assert_eq!(super::rate(25, 10.0), "2.5/s");
        assert_eq!(super::rate(5000, 2.0), "2500/s");
        assert_eq!(super::rate(0, 2.0), "0/s");
    }

    #[test]
    fn progress_lines_say_n_of_total_and_eta() {
        use std::sync::atomic::AtomicU64;
        let state = super::ProgressState {
            label: "gen-tests".into(),
            unit: "records",
            second: "ok",
            total: Some(120),
            resumed: 20,
            place: String::new(),
            done: AtomicU64::new(40),
            ok: AtomicU64::new(38),
            started: std::time::Instant::now() - std::time::Duration::from_secs(60),
        };
        let line = state.line();
        assert!(line.starts_with("40/120 records (33%), 38 ok, 20.0/min, ETA"), "{line}");
        // 20 fresh records in 60 s; 80 to go: 240 s.
        let eta = state.eta_seconds().unwrap();
        assert!((235.0..245.0).contains(&eta), "{eta}");
        assert_eq!(super::human_duration(240.0), "4 min");
        assert_eq!(super::human_duration(7500.0), "2 h 05 min");
    }
}
