//! Ctrl-C and SIGTERM (what Slurm sends at the time limit): say what was done and that the
//! same command resumes, then exit 130 / 143 as a shell expects. Outputs need no cleanup:
//! every shard is crash-safe (a `kill -9` resumes too), so the handler does not wait for
//! records in flight.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use signal_hook::consts::{SIGINT, SIGTERM};

type Hook = Box<dyn Fn(&str, u8) + Send>;

/// Called with the signal's name and the exit status before the process exits on a signal
/// (a rank's marker records how it ended).
static HOOKS: Mutex<Vec<Hook>> = Mutex::new(Vec::new());

pub fn on_signal(hook: impl Fn(&str, u8) + Send + 'static) {
    if let Ok(mut hooks) = HOOKS.lock() {
        hooks.push(Box::new(hook));
    }
}

/// The signal received, set in the signal handler itself: a failure that follows it (a child
/// process the same signal killed first) is reported as the interruption it is.
static RECEIVED: OnceLock<Arc<AtomicUsize>> = OnceLock::new();

/// The signal this process received, if any: its name and the exit status it means.
pub fn received() -> Option<(&'static str, u8)> {
    let signal = RECEIVED.get()?.load(Ordering::SeqCst) as i32;
    match signal {
        SIGINT => Some(("Ctrl-C (SIGINT)", (128 + SIGINT) as u8)),
        SIGTERM => Some(("SIGTERM", (128 + SIGTERM) as u8)),
        _ => None,
    }
}

/// Start the handler thread (once, before any work).
pub fn install() {
    let flag = RECEIVED.get_or_init(|| Arc::new(AtomicUsize::new(0)));
    for signal in [SIGINT, SIGTERM] {
        let _ = signal_hook::flag::register_usize(signal, flag.clone(), signal as usize);
    }
    let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM]) else {
        tracing::debug!("cannot install signal handlers; Ctrl-C exits without a summary");
        return;
    };
    let spawned = std::thread::Builder::new().name("signals".into()).spawn(move || {
        if let Some(signal) = signals.forever().next() {
            let name = if signal == SIGINT { "Ctrl-C (SIGINT)" } else { "SIGTERM" };
            tracing::warn!("{}", message(name, crate::logging::current().as_deref()));
            let status = (128 + signal) as u8;
            if let Ok(hooks) = HOOKS.lock() {
                hooks.iter().for_each(|hook| hook(name, status));
            }
            std::process::exit(i32::from(status));
        }
    });
    if spawned.is_err() {
        tracing::debug!("cannot start the signal thread");
    }
}

/// What the user reads after an interruption.
pub fn message(signal: &str, progress: Option<&crate::logging::ProgressState>) -> String {
    match progress {
        Some(p) => {
            let place = if p.place.is_empty() { String::new() } else { format!(" in {}", p.place) };
            format!("interrupted by {signal} during {}: {} so far, kept{place}; run the same command again to resume from there", p.label, p.line())
        }
        None => format!("interrupted by {signal}; run the same command again to resume (finished outputs are kept)"),
    }
}
