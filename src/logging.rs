//! Logging (tracing to stderr, text or JSON) and progress reporting: a progress bar on a
//! TTY, plain periodic log lines otherwise (Slurm logs, CI, pipes).

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use clap::ValueEnum;
use indicatif::{ProgressBar, ProgressStyle};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Install the global tracing subscriber. `RUST_LOG` overrides the level.
pub fn init(quiet: bool, format: LogFormat) {
    let default = if quiet { "warn" } else { "info" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false);
    let _ = match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// Progress of a stage: items done plus a free-form message.
pub struct Progress {
    bar: Option<ProgressBar>,
    label: String,
    started: Instant,
    last_log: Instant,
    every: Duration,
}

impl Progress {
    pub fn new(label: &str, quiet: bool) -> Self {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::new_spinner();
            bar.set_style(
                ProgressStyle::with_template("{spinner} {prefix} [{elapsed_precise}] {pos} done {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.set_prefix(label.to_string());
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        let now = Instant::now();
        Self { bar, label: label.to_string(), started: now, last_log: now, every: Duration::from_secs(10) }
    }

    /// Report `done` items so far; `message` is built only when it will be shown.
    pub fn update(&mut self, done: u64, message: impl FnOnce() -> String) {
        let rate = || rate(done, self.started.elapsed().as_secs_f64());
        if let Some(bar) = &self.bar {
            bar.set_position(done);
            if done.is_multiple_of(64) || done < 64 {
                bar.set_message(format!("({}) {}", rate(), message()));
            }
        } else if self.last_log.elapsed() >= self.every {
            self.last_log = Instant::now();
            tracing::info!("{}: {done} done ({}) {}", self.label, rate(), message());
        }
    }

    pub fn finish(self) {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
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
}
