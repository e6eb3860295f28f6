//! OpenAI-compatible chat-completions client (`POST {base_url}/chat/completions`).
//!
//! One request asks for the `n` samples the cache does not have yet. Each HTTP attempt
//! takes a slot of the global concurrency limit, goes to the least busy healthy endpoint
//! and is retried on 429, 5xx, timeouts, connection errors and malformed or empty answers,
//! with exponential backoff and jitter (backon), never sooner than the server's
//! `Retry-After`. Other 4xx fail at once with the server's message.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use backon::BackoffBuilder;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::cache::{CachedChoice, ResponseCache};
use super::stats::LlmStats;
use super::LlmSettings;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub role: String,
    pub content: String,
}

/// One sample of a generation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Choice {
    pub text: String,
    /// `stop`, `length` (truncated), ... as the server said.
    pub finish_reason: Option<String>,
    /// Came from the response cache.
    pub cached: bool,
}

/// The samples for one prompt plus what obtaining them cost.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Generation {
    pub choices: Vec<Choice>,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub latency_ms: u64,
    /// HTTP attempts made (0 when everything came from the cache).
    pub attempts: u32,
    pub cache_hits: u32,
}

/// Why a generation failed; `kind()` is what error records carry.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LlmError {
    #[error("rate limited (HTTP 429) on all {attempts} attempts: {message}")]
    RateLimited { attempts: u32, message: String },
    #[error("server error HTTP {status} after {attempts} attempts: {message}")]
    Server { status: u16, attempts: u32, message: String },
    #[error("request rejected with HTTP {status}: {message}")]
    Rejected { status: u16, message: String },
    #[error("request timed out on all {attempts} attempts")]
    Timeout { attempts: u32 },
    #[error("connection failed after {attempts} attempts: {message}")]
    Connection { attempts: u32, message: String },
    #[error("malformed response after {attempts} attempts: {message}")]
    Malformed { attempts: u32, message: String },
    #[error("response had no choices after {attempts} attempts")]
    EmptyChoices { attempts: u32 },
    #[error("budget reached: {0}")]
    Budget(String),
    #[error("offline: no cached response for this request")]
    OfflineMiss,
    #[error("response cache: {0}")]
    Cache(String),
}

impl LlmError {
    pub fn kind(&self) -> &'static str {
        match self {
            LlmError::RateLimited { .. } => "rate_limited",
            LlmError::Server { .. } => "server_error",
            LlmError::Rejected { .. } => "rejected",
            LlmError::Timeout { .. } => "timeout",
            LlmError::Connection { .. } => "connection",
            LlmError::Malformed { .. } => "malformed_response",
            LlmError::EmptyChoices { .. } => "empty_choices",
            LlmError::Budget(_) => "budget_exhausted",
            LlmError::OfflineMiss => "offline_cache_miss",
            LlmError::Cache(_) => "cache",
        }
    }

    /// Worth trying again in a later run (endpoint down, budget, offline miss).
    pub fn transient(&self) -> bool {
        !matches!(self, LlmError::Rejected { .. })
    }
}

/// What one HTTP attempt ended in.
enum Attempt {
    Done { choices: Vec<(Option<u64>, Choice)>, prompt_tokens: u64, completion_tokens: u64 },
    Retry { error: LlmError, retry_after: Option<Duration> },
    Fail(LlmError),
}

struct Endpoint {
    url: String,
    outstanding: AtomicUsize,
    consecutive_failures: AtomicU32,
    benched_until: Mutex<Option<Instant>>,
}

/// The API key, kept out of `Debug` output.
struct ApiKey(String);

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

pub struct LlmClient {
    http: reqwest::Client,
    endpoints: Vec<Endpoint>,
    next_endpoint: AtomicUsize,
    pub settings: LlmSettings,
    api_key: Option<ApiKey>,
    cache: Option<ResponseCache>,
    permits: tokio::sync::Semaphore,
    pub stats: LlmStats,
    requests_sent: AtomicU64,
    tokens_used: AtomicU64,
}

impl LlmClient {
    pub fn new(settings: LlmSettings, cache_path: Option<&std::path::Path>) -> anyhow::Result<Arc<LlmClient>> {
        anyhow::ensure!(!settings.base_urls.is_empty(), "no LLM base URL configured (--base-url or [llm] base_urls)");
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs_f64(settings.request_timeout.max(0.001)))
            .pool_max_idle_per_host(settings.concurrency.max(1))
            .build()?;
        let endpoints = settings
            .base_urls
            .iter()
            .map(|u| Endpoint {
                url: format!("{}/chat/completions", u.trim_end_matches('/')),
                outstanding: AtomicUsize::new(0),
                consecutive_failures: AtomicU32::new(0),
                benched_until: Mutex::new(None),
            })
            .collect();
        let api_key = std::env::var(&settings.api_key_env).ok().filter(|k| !k.is_empty()).map(ApiKey);
        let cache = match cache_path {
            Some(p) => Some(ResponseCache::open(p)?),
            None => None,
        };
        Ok(Arc::new(LlmClient {
            http,
            endpoints,
            next_endpoint: AtomicUsize::new(0),
            permits: tokio::sync::Semaphore::new(settings.concurrency.max(1)),
            settings,
            api_key,
            cache,
            stats: LlmStats::default(),
            requests_sent: AtomicU64::new(0),
            tokens_used: AtomicU64::new(0),
        }))
    }

    /// Cache key of sample `index` of a prompt: everything that determines the answer.
    fn cache_key(&self, messages: &[Message], index: u32, seed: Option<u64>) -> String {
        let s = &self.settings;
        let canonical = json!({
            "model": s.model, "messages": messages, "temperature": s.temperature, "top_p": s.top_p,
            "max_tokens": s.max_tokens, "seed": seed, "stop": s.stop, "extra_body": s.extra_body, "sample": index,
        });
        blake3::hash(canonical.to_string().as_bytes()).to_hex().to_string()
    }

    /// `n` samples for `messages`: cached ones from the cache, the rest in one request.
    pub async fn generate(&self, messages: &[Message], n: u32) -> Result<Generation, LlmError> {
        self.generate_seeded(messages, n, self.settings.seed).await
    }

    /// `generate` with this request's sampling seed instead of `[llm] seed` (a retry that
    /// must not be answered like the try before it).
    pub async fn generate_seeded(&self, messages: &[Message], n: u32, seed: Option<u64>) -> Result<Generation, LlmError> {
        let n = n.max(1);
        let keys: Vec<String> = if self.cache.is_some() { (0..n).map(|i| self.cache_key(messages, i, seed)).collect() } else { Vec::new() };
        let mut slots: Vec<Option<Choice>> = vec![None; n as usize];
        if let Some(cache) = &self.cache {
            for (i, key) in keys.iter().enumerate() {
                if let Some(hit) = cache.get(key).map_err(|e| LlmError::Cache(format!("{e:#}")))? {
                    slots[i] = Some(Choice { text: hit.text, finish_reason: hit.finish_reason, cached: true });
                }
            }
        }
        let missing: Vec<usize> = slots.iter().enumerate().filter(|(_, c)| c.is_none()).map(|(i, _)| i).collect();
        let cache_hits = n - missing.len() as u32;
        self.stats.cache_hits.fetch_add(u64::from(cache_hits), Ordering::Relaxed);
        let mut generation = Generation { cache_hits, ..Default::default() };
        if !missing.is_empty() {
            if self.settings.offline {
                return Err(LlmError::OfflineMiss);
            }
            let started = Instant::now();
            let (choices, prompt_tokens, completion_tokens, attempts) = self.request(messages, missing.len() as u32, seed).await?;
            generation.latency_ms = started.elapsed().as_millis() as u64;
            generation.prompt_tokens = prompt_tokens;
            generation.completion_tokens = completion_tokens;
            generation.attempts = attempts;
            for (slot, choice) in missing.iter().zip(choices) {
                if let Some(cache) = &self.cache {
                    let entry = CachedChoice { text: choice.text.clone(), finish_reason: choice.finish_reason.clone() };
                    cache.put(&keys[*slot], &self.settings.model, &entry).map_err(|e| LlmError::Cache(format!("{e:#}")))?;
                }
                slots[*slot] = Some(choice);
            }
        }
        generation.choices = slots.into_iter().flatten().collect();
        Ok(generation)
    }

    /// Take one request from the budget (atomically: concurrent tasks cannot overshoot).
    fn take_budget(&self) -> Result<(), LlmError> {
        let s = &self.settings;
        let sent = self.requests_sent.fetch_add(1, Ordering::Relaxed);
        if s.max_requests > 0 && sent >= s.max_requests {
            self.requests_sent.fetch_sub(1, Ordering::Relaxed);
            self.stats.budget_stopped.store(true, Ordering::Relaxed);
            return Err(LlmError::Budget(format!("{sent} requests of --max-requests {}", s.max_requests)));
        }
        let used = self.tokens_used.load(Ordering::Relaxed);
        if s.max_total_tokens > 0 && used >= s.max_total_tokens {
            self.requests_sent.fetch_sub(1, Ordering::Relaxed);
            self.stats.budget_stopped.store(true, Ordering::Relaxed);
            return Err(LlmError::Budget(format!("{used} tokens of --max-total-tokens {}", s.max_total_tokens)));
        }
        Ok(())
    }

    /// The least busy endpoint that is not benched (or, if all are, the one back soonest).
    fn pick_endpoint(&self) -> &Endpoint {
        let now = Instant::now();
        let start = self.next_endpoint.fetch_add(1, Ordering::Relaxed);
        let count = self.endpoints.len();
        let healthy = (0..count)
            .map(|k| &self.endpoints[(start + k) % count])
            .filter(|e| e.benched_until.lock().map(|b| b.is_none_or(|t| t <= now)).unwrap_or(true))
            .min_by_key(|e| e.outstanding.load(Ordering::Relaxed));
        healthy.unwrap_or_else(|| {
            self.endpoints.iter().min_by_key(|e| e.benched_until.lock().ok().and_then(|b| *b).unwrap_or(now)).unwrap_or(&self.endpoints[0])
        })
    }

    fn record_health(&self, endpoint: &Endpoint, ok: bool) {
        if ok {
            endpoint.consecutive_failures.store(0, Ordering::Relaxed);
            return;
        }
        let failures = endpoint.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
        if failures >= self.settings.bench_after_failures && self.endpoints.len() > 1 {
            if let Ok(mut b) = endpoint.benched_until.lock() {
                *b = Some(Instant::now() + Duration::from_secs_f64(self.settings.bench_seconds));
            }
            endpoint.consecutive_failures.store(0, Ordering::Relaxed);
            tracing::warn!("endpoint {} benched for {:.0}s after {failures} consecutive failures", endpoint.url, self.settings.bench_seconds);
        }
    }

    fn body(&self, messages: &[Message], n: u32, seed: Option<u64>) -> Value {
        let s = &self.settings;
        let mut body = serde_json::Map::new();
        if let Ok(Value::Object(extra)) = serde_json::to_value(&s.extra_body) {
            body.extend(extra);
        }
        body.insert("model".into(), json!(s.model));
        body.insert("messages".into(), json!(messages));
        body.insert("temperature".into(), json!(s.temperature));
        body.insert("max_tokens".into(), json!(s.max_tokens));
        body.insert("n".into(), json!(n));
        if let Some(p) = s.top_p {
            body.insert("top_p".into(), json!(p));
        }
        if let Some(seed) = seed {
            body.insert("seed".into(), json!(seed));
        }
        if !s.stop.is_empty() {
            body.insert("stop".into(), json!(s.stop));
        }
        Value::Object(body)
    }

    /// Send one request (with retries); choices in server order of `index`.
    async fn request(&self, messages: &[Message], n: u32, seed: Option<u64>) -> Result<(Vec<Choice>, u64, u64, u32), LlmError> {
        let body = self.body(messages, n, seed);
        let mut delays = backon::ExponentialBuilder::default()
            .with_jitter()
            .with_min_delay(Duration::from_millis(self.settings.backoff_min_ms))
            .with_max_delay(Duration::from_millis(self.settings.backoff_max_ms))
            .with_max_times(self.settings.max_retries as usize)
            .build();
        let mut attempts = 0u32;
        loop {
            self.take_budget()?;
            attempts += 1;
            self.stats.requests.fetch_add(1, Ordering::Relaxed);
            let outcome = {
                let _permit = self.permits.acquire().await.map_err(|_| LlmError::Connection { attempts, message: "client closed".into() })?;
                let endpoint = self.pick_endpoint();
                endpoint.outstanding.fetch_add(1, Ordering::Relaxed);
                let started = Instant::now();
                let outcome = self.attempt(endpoint, &body, attempts).await;
                endpoint.outstanding.fetch_sub(1, Ordering::Relaxed);
                self.record_health(endpoint, !matches!(outcome, Attempt::Retry { .. }));
                self.stats.record_latency(started.elapsed());
                outcome
            };
            match outcome {
                Attempt::Done { mut choices, prompt_tokens, completion_tokens } => {
                    choices.sort_by_key(|(index, _)| *index);
                    self.tokens_used.fetch_add(prompt_tokens + completion_tokens, Ordering::Relaxed);
                    self.stats.prompt_tokens.fetch_add(prompt_tokens, Ordering::Relaxed);
                    self.stats.completion_tokens.fetch_add(completion_tokens, Ordering::Relaxed);
                    return Ok((choices.into_iter().map(|(_, c)| c).collect(), prompt_tokens, completion_tokens, attempts));
                }
                Attempt::Fail(e) => {
                    self.stats.count_error(e.kind());
                    return Err(e);
                }
                Attempt::Retry { error, retry_after } => {
                    self.stats.count_error(error.kind());
                    let Some(backoff) = delays.next() else { return Err(error) };
                    self.stats.retries.fetch_add(1, Ordering::Relaxed);
                    let delay = retry_after.map_or(backoff, |ra| ra.max(backoff));
                    tracing::debug!("retrying in {:.2}s after: {error}", delay.as_secs_f64());
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    async fn attempt(&self, endpoint: &Endpoint, body: &Value, attempts: u32) -> Attempt {
        let mut request = self.http.post(&endpoint.url).json(body);
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(&key.0);
        }
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) if e.is_timeout() => return Attempt::Retry { error: LlmError::Timeout { attempts }, retry_after: None },
            Err(e) => return Attempt::Retry { error: LlmError::Connection { attempts, message: without_url(&e) }, retry_after: None },
        };
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(|s| Duration::from_secs_f64(s.min(3600.0)));
        let text = match response.text().await {
            Ok(t) => t,
            Err(e) if e.is_timeout() => return Attempt::Retry { error: LlmError::Timeout { attempts }, retry_after: None },
            Err(e) => return Attempt::Retry { error: LlmError::Connection { attempts, message: without_url(&e) }, retry_after: None },
        };
        let message = || server_message(&text);
        match status {
            200..=299 => {}
            429 => return Attempt::Retry { error: LlmError::RateLimited { attempts, message: message() }, retry_after },
            408 | 409 | 500..=599 => return Attempt::Retry { error: LlmError::Server { status, attempts, message: message() }, retry_after },
            _ => return Attempt::Fail(LlmError::Rejected { status, message: message() }),
        }
        let parsed: Value = match serde_json::from_str(&text) {
            Ok(v) => v,
            Err(e) => return Attempt::Retry { error: LlmError::Malformed { attempts, message: format!("not JSON: {e}") }, retry_after: None },
        };
        let Some(raw_choices) = parsed.get("choices").and_then(Value::as_array) else {
            return Attempt::Retry { error: LlmError::Malformed { attempts, message: "no `choices` array".into() }, retry_after: None };
        };
        if raw_choices.is_empty() {
            return Attempt::Retry { error: LlmError::EmptyChoices { attempts }, retry_after: None };
        }
        let mut choices = Vec::new();
        for c in raw_choices {
            let Some(msg) = c.get("message") else {
                return Attempt::Retry { error: LlmError::Malformed { attempts, message: "a choice has no `message`".into() }, retry_after: None };
            };
            let text = msg.get("content").and_then(Value::as_str).unwrap_or("").to_string();
            let finish_reason = c.get("finish_reason").and_then(Value::as_str).map(str::to_string);
            choices.push((c.get("index").and_then(Value::as_u64), Choice { text, finish_reason, cached: false }));
        }
        let usage = parsed.get("usage");
        let tokens = |k: &str| usage.and_then(|u| u.get(k)).and_then(Value::as_u64).unwrap_or(0);
        Attempt::Done { choices, prompt_tokens: tokens("prompt_tokens"), completion_tokens: tokens("completion_tokens") }
    }
}

/// The server's error message (OpenAI's `{"error": {"message": ...}}` or the raw text).
fn server_message(text: &str) -> String {
    let from_json = serde_json::from_str::<Value>(text).ok().and_then(|v| {
        v.get("error").and_then(|e| e.get("message").and_then(Value::as_str).map(str::to_string).or_else(|| e.as_str().map(str::to_string)))
    });
    let msg = from_json.unwrap_or_else(|| text.trim().to_string());
    msg.chars().take(500).collect()
}

/// reqwest errors name the URL; keep the message but not query strings or credentials.
fn without_url(e: &reqwest::Error) -> String {
    let mut e_str = e.to_string();
    if let Some(url) = e.url() {
        let mut clean = url.clone();
        clean.set_query(None);
        let _ = clean.set_password(None);
        let _ = clean.set_username("");
        e_str = e_str.replace(url.as_str(), clean.as_str());
    }
    e_str
}
