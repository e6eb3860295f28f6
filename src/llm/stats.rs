//! Accounting for LLM use: requests, retries, cache hits, tokens, latency percentiles,
//! errors by kind, and an estimated cost. Written into each stage's manifest.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use serde_json::{json, Value};

#[derive(Debug, Default)]
pub struct LlmStats {
    pub requests: AtomicU64,
    pub retries: AtomicU64,
    /// Samples served from the cache.
    pub cache_hits: AtomicU64,
    pub prompt_tokens: AtomicU64,
    pub completion_tokens: AtomicU64,
    pub budget_stopped: AtomicBool,
    latencies_ms: Mutex<Vec<u32>>,
    errors: Mutex<BTreeMap<String, u64>>,
}

impl LlmStats {
    pub fn record_latency(&self, d: Duration) {
        if let Ok(mut l) = self.latencies_ms.lock() {
            l.push(d.as_millis().min(u128::from(u32::MAX)) as u32);
        }
    }

    pub fn count_error(&self, kind: &str) {
        if let Ok(mut e) = self.errors.lock() {
            *e.entry(kind.to_string()).or_default() += 1;
        }
    }

    pub fn summary(&self, price_prompt_per_million: f64, price_completion_per_million: f64) -> Value {
        let mut lat = self.latencies_ms.lock().map(|l| l.clone()).unwrap_or_default();
        lat.sort_unstable();
        let pct = |p: f64| -> Value {
            if lat.is_empty() {
                Value::Null
            } else {
                json!(lat[((lat.len() - 1) as f64 * p).round() as usize])
            }
        };
        let prompt = self.prompt_tokens.load(Ordering::Relaxed);
        let completion = self.completion_tokens.load(Ordering::Relaxed);
        json!({
            "requests": self.requests.load(Ordering::Relaxed),
            "retries": self.retries.load(Ordering::Relaxed),
            "cache_hits": self.cache_hits.load(Ordering::Relaxed),
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "latency_ms": {"p50": pct(0.5), "p90": pct(0.9), "p99": pct(0.99), "max": lat.last()},
            "errors_by_kind": self.errors.lock().map(|e| e.clone()).unwrap_or_default(),
            "estimated_cost_usd": (prompt as f64 * price_prompt_per_million + completion as f64 * price_completion_per_million) / 1e6,
            "budget_stopped": self.budget_stopped.load(Ordering::Relaxed),
        })
    }
}
