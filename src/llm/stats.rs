//! Accounting for LLM use: requests, retries, cache hits, tokens (and how many were
//! estimated), latency percentiles, errors by kind, and an estimated cost.
//!
//! Two views. `summary()` is this process's. The journal is every process's: the executor
//! attaches one file per stage directory, and each HTTP attempt and cache lookup appends
//! one line of counter deltas to it (flushed as it happens), so a run killed with `kill -9`
//! still counts, and a resumed stage's manifest adds up every run that built it
//! (`read_journal`).

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use serde_json::{json, Map, Value};

#[derive(Debug, Default)]
pub struct LlmStats {
    pub requests: AtomicU64,
    pub retries: AtomicU64,
    /// Samples served from the cache.
    pub cache_hits: AtomicU64,
    pub prompt_tokens: AtomicU64,
    pub completion_tokens: AtomicU64,
    /// Answers whose token counts were estimated from the text (usage absent or covering
    /// only some choices).
    pub estimated_answers: AtomicU64,
    /// Answers with fewer choices than asked (topped up with new seeds).
    pub short_replies: AtomicU64,
    pub budget_stopped: AtomicBool,
    latencies_ms: Mutex<Vec<u32>>,
    queue_ms: AtomicU64,
    errors: Mutex<BTreeMap<String, u64>>,
    journal: Mutex<Option<Journal>>,
    /// What the endpoints said about themselves (preflight), for the manifest.
    pub servers: Mutex<Value>,
}

#[derive(Debug)]
struct Journal {
    file: File,
    run: String,
    agent: String,
}

/// Counter deltas of one event, as journal lines hold them.
#[derive(Debug, Default)]
pub struct Delta {
    pub requests: u64,
    pub retries: u64,
    pub cache_hits: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub estimated_answers: u64,
    pub short_replies: u64,
    pub error: Option<&'static str>,
}

impl LlmStats {
    /// Append this client's events to `path` from now on, as `agent` in `run`.
    pub fn attach_journal(&self, path: &Path, agent: &str, run: &str) -> anyhow::Result<()> {
        use anyhow::Context as _;
        let file = OpenOptions::new().create(true).append(true).open(path).with_context(|| format!("cannot open {}", path.display()))?;
        if let Ok(mut j) = self.journal.lock() {
            *j = Some(Journal { file, run: run.to_string(), agent: agent.to_string() });
        }
        Ok(())
    }

    /// Count an event here and in the journal.
    pub fn add(&self, d: Delta) {
        self.requests.fetch_add(d.requests, Ordering::Relaxed);
        self.retries.fetch_add(d.retries, Ordering::Relaxed);
        self.cache_hits.fetch_add(d.cache_hits, Ordering::Relaxed);
        self.prompt_tokens.fetch_add(d.prompt_tokens, Ordering::Relaxed);
        self.completion_tokens.fetch_add(d.completion_tokens, Ordering::Relaxed);
        self.estimated_answers.fetch_add(d.estimated_answers, Ordering::Relaxed);
        self.short_replies.fetch_add(d.short_replies, Ordering::Relaxed);
        if let Some(kind) = d.error {
            if let Ok(mut e) = self.errors.lock() {
                *e.entry(kind.to_string()).or_default() += 1;
            }
        }
        let Ok(mut guard) = self.journal.lock() else { return };
        let Some(j) = guard.as_mut() else { return };
        let mut line = Map::new();
        line.insert("run".into(), json!(j.run));
        line.insert("agent".into(), json!(j.agent));
        for (k, v) in [
            ("requests", d.requests),
            ("retries", d.retries),
            ("cache_hits", d.cache_hits),
            ("prompt_tokens", d.prompt_tokens),
            ("completion_tokens", d.completion_tokens),
            ("estimated_answers", d.estimated_answers),
            ("short_replies", d.short_replies),
        ] {
            if v > 0 {
                line.insert(k.into(), json!(v));
            }
        }
        if let Some(kind) = d.error {
            line.insert("error".into(), json!(kind));
        }
        if line.len() > 2 {
            // A failed write loses one event of accounting, never a record.
            let _ = writeln!(j.file, "{}", Value::Object(line));
        }
    }

    pub fn record_latency(&self, d: Duration) {
        if let Ok(mut l) = self.latencies_ms.lock() {
            l.push(d.as_millis().min(u128::from(u32::MAX)) as u32);
        }
    }

    pub fn record_queue(&self, d: Duration) {
        self.queue_ms.fetch_add(d.as_millis() as u64, Ordering::Relaxed);
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
        let mut out = json!({
            "requests": self.requests.load(Ordering::Relaxed),
            "retries": self.retries.load(Ordering::Relaxed),
            "cache_hits": self.cache_hits.load(Ordering::Relaxed),
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "estimated_answers": self.estimated_answers.load(Ordering::Relaxed),
            "short_replies": self.short_replies.load(Ordering::Relaxed),
            "latency_ms": {"p50": pct(0.5), "p90": pct(0.9), "p99": pct(0.99), "max": lat.last()},
            "queue_ms_total": self.queue_ms.load(Ordering::Relaxed),
            "errors_by_kind": self.errors.lock().map(|e| e.clone()).unwrap_or_default(),
            "estimated_cost_usd": cost(prompt, completion, price_prompt_per_million, price_completion_per_million),
            "price_per_million": {"prompt": price_prompt_per_million, "completion": price_completion_per_million},
            "budget_stopped": self.budget_stopped.load(Ordering::Relaxed),
        });
        if let (Some(o), Ok(servers)) = (out.as_object_mut(), self.servers.lock()) {
            if !servers.is_null() {
                o.insert("servers".into(), servers.clone());
            }
        }
        out
    }
}

pub fn cost(prompt: u64, completion: u64, price_prompt_per_million: f64, price_completion_per_million: f64) -> f64 {
    (prompt as f64 * price_prompt_per_million + completion as f64 * price_completion_per_million) / 1e6
}

/// Every run's counters in a journal: per agent the totals, and per (run, agent) one entry
/// in first-seen order. A torn last line (a killed process) is skipped.
pub fn read_journal(path: &Path) -> (BTreeMap<String, Map<String, Value>>, Vec<Value>) {
    let mut totals: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
    let mut runs: Vec<((String, String), Map<String, Value>)> = Vec::new();
    let Ok(file) = File::open(path) else { return (totals, Vec::new()) };
    for line in BufReader::new(file).lines().map_while(Result::ok) {
        let Ok(Value::Object(event)) = serde_json::from_str::<Value>(&line) else { continue };
        let text = |k: &str| event.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let (run, agent) = (text("run"), text("agent"));
        let key = (run.clone(), agent.clone());
        let entry = match runs.iter().position(|(k, _)| *k == key) {
            Some(i) => &mut runs[i].1,
            None => {
                let mut m = Map::new();
                m.insert("run".into(), json!(run));
                m.insert("agent".into(), json!(agent));
                runs.push((key, m));
                &mut runs.last_mut().expect("just pushed").1
            }
        };
        let total = totals.entry(agent).or_default();
        for (k, v) in &event {
            if let Some(n) = v.as_u64() {
                for m in [&mut *entry, &mut *total] {
                    let sum = m.get(k).and_then(Value::as_u64).unwrap_or(0) + n;
                    m.insert(k.clone(), json!(sum));
                }
            }
        }
        if let Some(kind) = event.get("error").and_then(Value::as_str) {
            for m in [&mut *entry, &mut *total] {
                let errors = m.entry("errors_by_kind").or_insert_with(|| json!({}));
                if let Some(e) = errors.as_object_mut() {
                    let sum = e.get(kind).and_then(Value::as_u64).unwrap_or(0) + 1;
                    e.insert(kind.to_string(), json!(sum));
                }
            }
        }
    }
    (totals, runs.into_iter().map(|(_, m)| Value::Object(m)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_adds_up_runs_and_skips_a_torn_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("usage.jsonl");
        for run in ["r1", "r2"] {
            let stats = LlmStats::default();
            stats.attach_journal(&path, "llm", run).unwrap();
            stats.add(Delta { requests: 1, prompt_tokens: 10, completion_tokens: 5, ..Default::default() });
            stats.add(Delta { requests: 1, error: Some("timeout"), ..Default::default() });
        }
        std::fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(b"{\"run\":\"r3\",\"agent\":\"llm\",\"requ").unwrap();
        let (totals, runs) = read_journal(&path);
        let llm = &totals["llm"];
        assert_eq!((llm["requests"].as_u64(), llm["prompt_tokens"].as_u64()), (Some(4), Some(20)));
        assert_eq!(llm["errors_by_kind"]["timeout"], 2);
        assert_eq!(runs.len(), 2);
        assert_eq!(runs[1]["run"], "r2");
        assert_eq!(runs[1]["completion_tokens"], 5);
    }
}
