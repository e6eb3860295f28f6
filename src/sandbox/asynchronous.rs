//! The sandbox from async code (the LLM steps): checks and call jobs on the blocking pool,
//! so that many records can wait on the workers without holding the async threads, plus
//! the facts a step's manifest reports about the sandbox it used.

use std::sync::Arc;

use serde_json::{json, Value};

use super::calls::{CallOptions, CallsResult};
use super::{AdequacySettings, Sandbox, Verdict};

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
        blocking(move || sandbox.check(&code, &tests)).await
    }

    /// One check that also watches whether the tests call `entry` (`Sandbox::check_calls`).
    pub async fn check_calls_async(self: &Arc<Self>, code: String, tests: String, entry: String) -> Verdict {
        let sandbox = self.clone();
        blocking(move || sandbox.check_calls(&code, &tests, Some(&entry))).await
    }

    /// Check and assess (`Sandbox::verify`) off the async threads.
    pub async fn verify_async(self: &Arc<Self>, code: String, tests: String, entry: Option<String>, settings: AdequacySettings) -> Verdict {
        let sandbox = self.clone();
        blocking(move || sandbox.verify(&code, &tests, entry.as_deref(), &settings)).await
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
        blocking(move || sandbox.assess(&code, &tests, entry.as_deref(), first, &settings)).await
    }

    /// One call job (a function on literal inputs) off the async threads.
    pub async fn call_async(self: &Arc<Self>, code: String, entry_point: String, inputs: Vec<String>, opts: CallOptions) -> CallsResult {
        let sandbox = self.clone();
        blocking(move || sandbox.call(&code, &entry_point, &inputs, opts)).await
    }

    /// Records in flight for a step that uses both a model and the sandbox: enough to keep
    /// every request slot and every worker busy.
    pub fn window_with_llm(&self, llm_concurrency: usize) -> usize {
        (llm_concurrency * 2).max(self.settings.workers * 4).max(16)
    }

    /// What the sandbox really used, for manifests.
    pub fn report(&self) -> Value {
        json!({
            "isolation": self.isolation(),
            "python": self.python.version,
            "python_executable": self.python.executable,
            "preimported": self.worker_info.preimported,
            "not_preimported": self.worker_info.missing,
        })
    }
}
