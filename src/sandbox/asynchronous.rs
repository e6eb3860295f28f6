//! The sandbox from async code (the LLM steps): checks and call jobs on the blocking pool,
//! so that many records can wait on the workers without holding the async threads, plus
//! the facts a step's manifest reports about the sandbox it used.

use std::sync::Arc;

use serde_json::{json, Value};

use super::calls::{CallOptions, CallsResult};
use super::{AdequacySettings, Sandbox, Verdict};

tokio::task_local! {
    /// Who is asking (a stage's name): the sandbox time a manifest reports is its own, though
    /// the steps of a chain share one sandbox.
    static CALLER: &'static str;
}

/// Run `work` with its sandbox jobs counted under `label`.
pub async fn labelled<F: std::future::Future>(label: &'static str, work: F) -> F::Output {
    CALLER.scope(label, work).await
}

/// The label of the running task (for work spawned off it).
pub fn current_label() -> &'static str {
    CALLER.try_with(|l| *l).unwrap_or("other")
}

/// Run blocking sandbox work off the async threads.
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(f).await {
        Ok(v) => v,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

impl Sandbox {
    /// One check (program + unittest module) off the async threads.
    pub async fn check_async(self: &Arc<Self>, code: String, tests: String) -> Verdict {
        let sandbox = self.clone();
        self.metered(move || sandbox.check(&code, &tests)).await
    }

    /// One check that also watches whether the tests call `entry` (`Sandbox::check_calls`).
    pub async fn check_calls_async(self: &Arc<Self>, code: String, tests: String, entry: String) -> Verdict {
        let sandbox = self.clone();
        self.metered(move || sandbox.check_calls(&code, &tests, Some(&entry))).await
    }

    /// Check and assess (`Sandbox::verify`) off the async threads.
    pub async fn verify_async(self: &Arc<Self>, code: String, tests: String, entry: Option<String>, settings: AdequacySettings) -> Verdict {
        let sandbox = self.clone();
        self.metered(move || sandbox.verify(&code, &tests, entry.as_deref(), &settings)).await
    }

    /// Assess a verdict made elsewhere (`Sandbox::assess`) off the async threads.
    pub async fn assess_async(
        self: &Arc<Self>,
        code: String,
        tests: String,
        entry: Option<String>,
        first: Verdict,
        settings: AdequacySettings,
    ) -> Verdict {
        let sandbox = self.clone();
        self.metered(move || sandbox.assess(&code, &tests, entry.as_deref(), first, &settings)).await
    }

    /// One call job (a function on literal inputs) off the async threads.
    pub async fn call_async(self: &Arc<Self>, code: String, entry_point: String, inputs: Vec<String>, opts: CallOptions) -> CallsResult {
        let sandbox = self.clone();
        self.metered(move || sandbox.call(&code, &entry_point, &inputs, opts)).await
    }

    /// Blocking sandbox work off the async threads, its time counted under the caller's label.
    pub async fn metered<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let started = std::time::Instant::now();
        let out = blocking(f).await;
        if let Ok(mut usage) = self.usage.lock() {
            let entry = usage.entry(current_label()).or_default();
            entry.0 += 1;
            entry.1 += started.elapsed().as_secs_f64();
        }
        out
    }

    /// Records in flight for a step that uses both a model and the sandbox: enough to keep
    /// every request slot and every worker busy.
    pub fn window_with_llm(&self, llm_concurrency: usize) -> usize {
        (llm_concurrency * 2).max(self.settings.workers * 4).max(16)
    }

    /// What the sandbox really used, for the manifest of stage `caller`.
    pub fn report(&self, caller: &str) -> Value {
        let (jobs, seconds) = self.usage.lock().ok().and_then(|u| u.get(caller).copied()).unwrap_or_default();
        json!({
            "isolation": self.isolation(),
            "python": self.python.version,
            "python_executable": self.python.executable,
            "preimported": self.worker_info.preimported,
            "not_preimported": self.worker_info.missing,
            // This stage's jobs in this process (resumed runs' jobs are not added).
            "jobs": jobs,
            "job_seconds": seconds,
        })
    }
}
