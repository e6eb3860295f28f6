//! OpenAI-compatible chat-completions client (`POST {base_url}/chat/completions`).
//!
//! `generate(messages, n)` returns exactly `n` samples or an error, never fewer:
//!
//! 1. Samples the response cache has come from it.
//! 2. Before the first request the endpoints are asked about themselves (the preflight:
//!    reachable? key accepted? model served? context? `n` limit?), so a wrong setting
//!    fails in seconds with the cause and what to set.
//! 3. The missing samples are requested in chunks of at most the server's `n` limit
//!    (`[llm] max_n`, else learned from the preflight or from the 400 that states it).
//!    A chunk starting at sample `i` > 0 gets its own seed: llama.cpp's `(seed, n = k)`
//!    choices are the first `k` of `(seed, n = N)`, so asking for "the rest" with the same
//!    seed would repeat samples already cached.
//! 4. A reply with fewer choices than asked is topped up with new seeds; when the top-up
//!    gets nothing (empty answers after every retry) the error is a transient `short_reply`.
//!
//! Each HTTP attempt takes one concurrency permit per sequence it asks for, goes to the
//! least busy healthy endpoint and is retried on 429, 5xx, timeouts, connection errors and
//! malformed answers, with exponential backoff and jitter, never sooner than `Retry-After`.
//! A refused key, an unknown model or a wrong URL is fatal for the client: every later
//! request fails at once with the same error. When no endpoint has answered for
//! `[llm] down_timeout` seconds the client stops the same way (the circuit breaker).

use crate::logging::gauges;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use backon::BackoffBuilder;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::cache::{CachedChoice, ResponseCache};
use super::error::{classify, transport_message, HttpFailure, LlmError};
use super::server::{probe, ProbeError, ServerInfo};
use super::stats::{Delta, LlmStats};
use super::usage::{self, ChoiceText};
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
    /// Some token counts are estimates from the reply text (see `usage`).
    pub tokens_estimated: bool,
    /// Time in HTTP requests (not waiting for a permit, not backing off).
    pub latency_ms: u64,
    /// Time waiting for concurrency permits.
    pub queue_ms: u64,
    /// HTTP attempts made (0 when everything came from the cache).
    pub attempts: u32,
    pub cache_hits: u32,
}

/// What one HTTP attempt ended in.
enum Attempt {
    Done { choices: Vec<(Option<u64>, Choice)>, prompt_tokens: Option<u64>, completion_tokens: Option<u64> },
    Retry { error: LlmError, retry_after: Option<Duration>, unreachable: bool },
    Fail(LlmError),
}

/// One request's answer.
struct Answer {
    choices: Vec<Choice>,
    tokens: usage::Tokens,
    attempts: u32,
    http: Duration,
    queued: Duration,
}

struct Endpoint {
    base: String,
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
    /// One permit per sequence in flight.
    permits: tokio::sync::Semaphore,
    permits_total: AtomicUsize,
    pub stats: LlmStats,
    requests_sent: AtomicU64,
    tokens_used: AtomicU64,
    /// Largest `n` per request (0 = no limit known).
    max_n: AtomicU32,
    preflight: tokio::sync::OnceCell<Result<(), LlmError>>,
    /// The first fatal error: no request can succeed until a setting changes.
    fatal: Mutex<Option<LlmError>>,
    /// Consecutive attempts that reached no server, and since when none has answered.
    unreachable_in_a_row: AtomicU32,
    down_since: Mutex<Option<Instant>>,
    warned_context: AtomicBool,
    last_retry_warning: Mutex<Option<Instant>>,
    dry: DryTally,
}

#[derive(Default)]
struct DryTally {
    requests: AtomicU64,
    sequences: AtomicU64,
    prompt_tokens: AtomicU64,
    completion_tokens_max: AtomicU64,
    cached: AtomicU64,
}

/// Requests a `--dry-run` counted: prompt tokens estimated at 4 characters per token (the
/// prompt is sent once per request), completion tokens at most `max_tokens` per sequence.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct DryEstimate {
    pub requests: u64,
    pub sequences: u64,
    pub prompt_tokens: u64,
    pub completion_tokens_max: u64,
    /// Sequences the response cache already holds (free).
    pub cached_sequences: u64,
}

impl LlmClient {
    pub fn new(settings: LlmSettings, cache_path: Option<&std::path::Path>) -> anyhow::Result<Arc<LlmClient>> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs_f64(settings.request_timeout.max(0.001)))
            .pool_max_idle_per_host(settings.concurrency.max(1))
            .build()?;
        let endpoints = settings
            .base_urls
            .iter()
            .map(|u| {
                let base = u.trim_end_matches('/').to_string();
                Endpoint {
                    url: format!("{base}/chat/completions"),
                    base,
                    outstanding: AtomicUsize::new(0),
                    consecutive_failures: AtomicU32::new(0),
                    benched_until: Mutex::new(None),
                }
            })
            .collect();
        let api_key = std::env::var(&settings.api_key_env).ok().filter(|k| !k.is_empty()).map(ApiKey);
        let cache = match cache_path {
            // A dry run reads an existing cache (hits cost nothing) and creates none.
            Some(p) if settings.dry_run && !p.exists() => None,
            Some(p) => Some(ResponseCache::open(p)?),
            None => None,
        };
        let concurrency = settings.concurrency.max(1);
        Ok(Arc::new(LlmClient {
            http,
            endpoints,
            next_endpoint: AtomicUsize::new(0),
            permits: tokio::sync::Semaphore::new(concurrency),
            permits_total: AtomicUsize::new(concurrency),
            max_n: AtomicU32::new(settings.max_n),
            settings,
            api_key,
            cache,
            stats: LlmStats::default(),
            requests_sent: AtomicU64::new(0),
            tokens_used: AtomicU64::new(0),
            preflight: tokio::sync::OnceCell::new(),
            fatal: Mutex::new(None),
            unreachable_in_a_row: AtomicU32::new(0),
            down_since: Mutex::new(None),
            warned_context: AtomicBool::new(false),
            last_retry_warning: Mutex::new(None),
            dry: DryTally::default(),
        }))
    }

    /// What a dry run would have asked for.
    pub fn dry_tally(&self) -> DryEstimate {
        let d = &self.dry;
        DryEstimate {
            requests: d.requests.load(Ordering::Relaxed),
            sequences: d.sequences.load(Ordering::Relaxed),
            prompt_tokens: d.prompt_tokens.load(Ordering::Relaxed),
            completion_tokens_max: d.completion_tokens_max.load(Ordering::Relaxed),
            cached_sequences: d.cached.load(Ordering::Relaxed),
        }
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

    /// The fatal error that stopped this client, if any.
    pub fn fatal_error(&self) -> Option<LlmError> {
        self.fatal.lock().ok().and_then(|f| f.clone())
    }

    fn set_fatal(&self, error: &LlmError) {
        if let Ok(mut f) = self.fatal.lock() {
            if f.is_none() {
                tracing::error!("LLM: {error}; no more requests will be sent by this stage");
                *f = Some(error.clone());
            }
        }
    }

    fn check_fatal(&self) -> Result<(), LlmError> {
        self.fatal_error().map_or(Ok(()), Err)
    }

    /// Largest `n` per request now (0 = none known).
    pub fn max_n(&self) -> u32 {
        self.max_n.load(Ordering::Relaxed)
    }

    /// `n` samples for `messages`: cached ones from the cache, the rest requested.
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
        let cache_hits = slots.iter().filter(|s| s.is_some()).count() as u32;
        self.stats.add(Delta { cache_hits: u64::from(cache_hits), ..Default::default() });
        let mut generation = Generation { cache_hits, ..Default::default() };
        if self.settings.dry_run && cache_hits < n {
            let missing = u64::from(n - cache_hits);
            let per_request = match self.max_n() {
                0 => u64::from(n),
                l => u64::from(l),
            };
            let requests = missing.div_ceil(per_request.max(1));
            let prompt_chars: u64 = messages.iter().map(|m| m.content.chars().count() as u64).sum();
            let d = &self.dry;
            d.requests.fetch_add(requests, Ordering::Relaxed);
            d.sequences.fetch_add(missing, Ordering::Relaxed);
            d.prompt_tokens.fetch_add(requests * prompt_chars.div_ceil(4), Ordering::Relaxed);
            d.completion_tokens_max.fetch_add(missing * u64::from(self.settings.max_tokens), Ordering::Relaxed);
            d.cached.fetch_add(u64::from(cache_hits), Ordering::Relaxed);
            return Err(LlmError::DryRun);
        }
        if cache_hits < n {
            if self.settings.offline {
                return Err(LlmError::OfflineMiss);
            }
            self.ready().await?;
            let prompt_chars: usize = messages.iter().map(|m| m.content.chars().count()).sum();
            self.warn_if_beyond_context(prompt_chars);
            let mut short_rounds = 0u32;
            while let Some(first) = slots.iter().position(Option::is_none) {
                let limit = match self.max_n() {
                    0 => u32::MAX,
                    l => l,
                };
                let chunk: Vec<usize> = (first..slots.len()).take_while(|&i| slots[i].is_none()).take(limit as usize).collect();
                let asked = chunk.len() as u32;
                let answer = match self.request(messages, asked, chunk_seed(seed, first, short_rounds), prompt_chars).await {
                    Ok(a) => a,
                    Err(LlmError::NTooLarge { n: refused, message }) if refused > 1 => {
                        self.learn_n_limit(super::error::limit_below(&message, refused).unwrap_or(refused / 2), &message);
                        continue;
                    }
                    // Some samples came, the rest cannot be had: say so (a rerun asks again
                    // for the missing ones only; the others are cached).
                    Err(LlmError::EmptyChoices { attempts }) if first > 0 || short_rounds > 0 => {
                        let got = slots.iter().filter(|s| s.is_some()).count() as u32;
                        return Err(LlmError::ShortReply { wanted: n, got, requests: generation.attempts + attempts });
                    }
                    Err(e) => return Err(e),
                };
                generation.prompt_tokens += answer.tokens.prompt;
                generation.completion_tokens += answer.tokens.completion;
                generation.tokens_estimated |= answer.tokens.estimated;
                generation.latency_ms += answer.http.as_millis() as u64;
                generation.queue_ms += answer.queued.as_millis() as u64;
                generation.attempts += answer.attempts;
                let got = answer.choices.len() as u32;
                for (slot, choice) in chunk.iter().zip(answer.choices) {
                    if let Some(cache) = &self.cache {
                        let entry = CachedChoice { text: choice.text.clone(), finish_reason: choice.finish_reason.clone() };
                        cache.put(&keys[*slot], &self.settings.model, &entry).map_err(|e| LlmError::Cache(format!("{e:#}")))?;
                    }
                    slots[*slot] = Some(choice);
                }
                // Every answer brings at least one sample (an empty one is retried, then an
                // error), so topping up ends within n requests.
                if got < asked {
                    self.stats.add(Delta { short_replies: 1, ..Default::default() });
                    short_rounds += 1;
                    tracing::debug!("short reply: {got} of {asked} samples; topping up with a new seed");
                }
            }
        }
        generation.choices = slots.into_iter().flatten().collect();
        Ok(generation)
    }

    fn learn_n_limit(&self, limit: u32, message: &str) {
        let limit = limit.max(1);
        let previous = self.max_n.load(Ordering::Relaxed);
        if previous == 0 || limit < previous {
            self.max_n.store(limit, Ordering::Relaxed);
            tracing::warn!(
                "the LLM server allows n ≤ {limit} per request ({message}); splitting requests (set [llm] max_n = {limit} to skip learning it)"
            );
        }
    }

    /// Warn once when a prompt plus `max_tokens` cannot fit the server's context.
    fn warn_if_beyond_context(&self, prompt_chars: usize) {
        let Some(context) = self.server_context() else { return };
        let prompt = usage::estimate(prompt_chars);
        let want = prompt + u64::from(self.settings.max_tokens);
        if want > context && !self.warned_context.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "a prompt of ~{prompt} tokens plus max_tokens {} exceeds the server's context of {context} tokens: replies will be cut or rejected (context_overflow); lower [llm] max_tokens or give the server more context (llama.cpp: -c, which -np divides among slots; vLLM: --max-model-len)",
                self.settings.max_tokens
            );
        }
    }

    /// The smallest context any endpoint reported.
    pub fn server_context(&self) -> Option<u64> {
        let servers = self.stats.servers.lock().ok()?;
        servers.as_array()?.iter().filter_map(|s| s.get("context").and_then(Value::as_u64)).min()
    }

    /// Ask every endpoint about itself (`doctor`, and once before the first request).
    pub async fn probe_endpoints(&self) -> Vec<(String, Result<ServerInfo, ProbeError>)> {
        let timeout = Duration::from_secs_f64(self.settings.request_timeout.clamp(0.1, 10.0));
        let mut out = Vec::new();
        for e in &self.endpoints {
            out.push((e.base.clone(), probe(&self.http, &e.base, self.api_key.as_ref().map(|k| k.0.as_str()), timeout, 3).await));
        }
        out
    }

    /// The preflight, once: fails fast when nothing answers, the key is refused or there is
    /// no endpoint at all; learns context, slots and the `n` limit; warns about a model the
    /// server does not list.
    async fn ready(&self) -> Result<(), LlmError> {
        self.check_fatal()?;
        self.preflight.get_or_init(|| self.run_preflight()).await.clone()
    }

    async fn run_preflight(&self) -> Result<(), LlmError> {
        if self.endpoints.is_empty() {
            let e = LlmError::NoEndpoint;
            self.set_fatal(&e);
            return Err(e);
        }
        if !self.settings.preflight {
            return Ok(());
        }
        let started = Instant::now();
        let mut infos = Vec::new();
        let mut down = Vec::new();
        for (url, result) in self.probe_endpoints().await {
            match result {
                Ok(info) => infos.push(info),
                Err(ProbeError::Unreachable(m)) => down.push(format!("{url}: {m}")),
                Err(ProbeError::Auth(status, message)) => {
                    let e = LlmError::Auth { status, message: format!("{url}: {message}"), env: self.settings.api_key_env.clone() };
                    self.set_fatal(&e);
                    return Err(e);
                }
            }
        }
        if infos.is_empty() {
            let e = LlmError::Unreachable { message: down.join("; "), waited_s: started.elapsed().as_secs_f64() };
            self.set_fatal(&e);
            return Err(e);
        }
        for d in &down {
            tracing::warn!("LLM endpoint not reachable, benched: {d}");
            if let Some(e) = self.endpoints.iter().find(|e| d.starts_with(&e.base)) {
                if let Ok(mut b) = e.benched_until.lock() {
                    *b = Some(Instant::now() + Duration::from_secs_f64(self.settings.bench_seconds));
                }
            }
        }
        let model = &self.settings.model;
        for info in &infos {
            let context = info.context.map_or("unknown".to_string(), |c| c.to_string());
            let slots = info.slots.map_or("unknown".to_string(), |s| s.to_string());
            tracing::info!("LLM endpoint {} ({}): serves {:?}, context {context}, slots {slots}", info.url, info.family_or_unknown(), info.models);
            if info.serves(model) == Some(false) {
                tracing::warn!(
                    "model `{model}` is not among the models {} lists ({}); servers that check names (vLLM, SGLang, OpenAI) will refuse every request: set --model, [llm] model or OPENAI_MODEL",
                    info.url,
                    info.models.join(", ")
                );
            }
            if let Some(c) = info.context.filter(|c| u64::from(self.settings.max_tokens) >= *c) {
                tracing::warn!("[llm] max_tokens {} leaves no room for a prompt in {}'s context of {c} tokens", self.settings.max_tokens, info.url);
            }
        }
        // llama.cpp: n ≤ slots, and sequences beyond the slots only wait in its queue while
        // the request timeout runs.
        let all_slots: Option<Vec<u32>> = infos.iter().map(|i| i.slots).collect();
        if let Some(all_slots) = all_slots.filter(|s| !s.is_empty() && infos.len() == self.endpoints.len()) {
            if self.settings.max_n == 0 {
                if let Some(&min) = all_slots.iter().min() {
                    self.max_n.store(min, Ordering::Relaxed);
                }
            }
            let total: usize = all_slots.iter().map(|&s| s as usize).sum();
            let have = self.permits_total.load(Ordering::Relaxed);
            if total > 0 && total < have {
                let forgotten = self.permits.forget_permits(have - total);
                self.permits_total.fetch_sub(forgotten, Ordering::Relaxed);
                tracing::info!("the servers run {total} sequences at once: at most {total} in flight (of [llm] concurrency {have})");
            }
        }
        if let Ok(mut s) = self.stats.servers.lock() {
            *s = serde_json::to_value(&infos).unwrap_or_default();
        }
        Ok(())
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

    /// The circuit breaker: after `bench_after_failures` attempts in a row that reached no
    /// server, warn; once none has answered for `down_timeout` seconds, stop the client.
    fn note_unreachable(&self, error: &LlmError) -> Option<LlmError> {
        let in_a_row = self.unreachable_in_a_row.fetch_add(1, Ordering::Relaxed) + 1;
        if in_a_row < self.settings.bench_after_failures.max(1) {
            return None;
        }
        let mut since = self.down_since.lock().ok()?;
        let started = *since.get_or_insert_with(|| {
            tracing::warn!(
                "no LLM endpoint answers ({error}); waiting up to {:.0}s ([llm] down_timeout) for one to come back",
                self.settings.down_timeout
            );
            Instant::now()
        });
        let waited = started.elapsed().as_secs_f64();
        (waited >= self.settings.down_timeout).then(|| {
            let fatal = LlmError::Unreachable { message: error.to_string(), waited_s: waited };
            self.set_fatal(&fatal);
            fatal
        })
    }

    fn circuit_open(&self) -> bool {
        self.down_since.lock().map(|s| s.is_some()).unwrap_or(false)
    }

    fn note_reachable(&self) {
        self.unreachable_in_a_row.store(0, Ordering::Relaxed);
        if let Ok(mut since) = self.down_since.lock() {
            if let Some(t) = since.take() {
                tracing::info!("an LLM endpoint answers again after {:.0}s", t.elapsed().as_secs_f64());
            }
        }
    }

    /// Retries are logged at WARN at most every 30 s (with the cause), else at debug.
    fn log_retry(&self, delay: Duration, error: &LlmError) {
        let loud = self.last_retry_warning.lock().map(|mut last| {
            let due = last.is_none_or(|t| t.elapsed() >= Duration::from_secs(30));
            if due {
                *last = Some(Instant::now());
            }
            due
        });
        if loud.unwrap_or(false) {
            tracing::warn!("LLM request failed, retrying in {:.1}s: {error}", delay.as_secs_f64());
        } else {
            tracing::debug!("retrying in {:.2}s after: {error}", delay.as_secs_f64());
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

    /// Send one request for `n` samples (with retries); choices in server order of `index`.
    async fn request(&self, messages: &[Message], n: u32, seed: Option<u64>, prompt_chars: usize) -> Result<Answer, LlmError> {
        let body = self.body(messages, n, seed);
        let mut delays = backon::ExponentialBuilder::default()
            .with_jitter()
            .with_min_delay(Duration::from_millis(self.settings.backoff_min_ms))
            .with_max_delay(Duration::from_millis(self.settings.backoff_max_ms))
            .with_max_times(self.settings.max_retries as usize)
            .build();
        let (mut attempts, mut http, mut queued) = (0u32, Duration::ZERO, Duration::ZERO);
        loop {
            self.check_fatal()?;
            self.take_budget()?;
            attempts += 1;
            let outcome = {
                let waiting = Instant::now();
                let want = (n as usize).min(self.permits_total.load(Ordering::Relaxed).max(1)) as u32;
                let waiting_gauge = gauges::hold(&gauges::LLM_WAITING, i64::from(n));
                let _permit =
                    self.permits.acquire_many(want).await.map_err(|_| LlmError::Connection { attempts, message: "client closed".into() })?;
                drop(waiting_gauge);
                let wait = waiting.elapsed();
                queued += wait;
                self.stats.record_queue(wait);
                // Requests that waited for a permit while another one hit a fatal error.
                if let Err(fatal) = self.check_fatal() {
                    self.requests_sent.fetch_sub(1, Ordering::Relaxed);
                    return Err(fatal);
                }
                let endpoint = self.pick_endpoint();
                endpoint.outstanding.fetch_add(1, Ordering::Relaxed);
                let started = Instant::now();
                let sending_gauge = gauges::hold(&gauges::LLM_SENDING, i64::from(n));
                let outcome = self.attempt(endpoint, &body, attempts, n).await;
                drop(sending_gauge);
                endpoint.outstanding.fetch_sub(1, Ordering::Relaxed);
                self.record_health(endpoint, !matches!(outcome, Attempt::Retry { .. }));
                http += started.elapsed();
                self.stats.record_latency(started.elapsed());
                outcome
            };
            match outcome {
                Attempt::Done { mut choices, prompt_tokens, completion_tokens } => {
                    self.note_reachable();
                    choices.sort_by_key(|(index, _)| *index);
                    let choices: Vec<Choice> = choices.into_iter().map(|(_, c)| c).collect();
                    let texts: Vec<ChoiceText> =
                        choices.iter().map(|c| ChoiceText { text: &c.text, hit_max_tokens: c.finish_reason.as_deref() == Some("length") }).collect();
                    let tokens = usage::account(prompt_tokens, completion_tokens, prompt_chars, &texts, self.settings.max_tokens);
                    self.tokens_used.fetch_add(tokens.prompt + tokens.completion, Ordering::Relaxed);
                    self.stats.add(Delta {
                        requests: 1,
                        prompt_tokens: tokens.prompt,
                        completion_tokens: tokens.completion,
                        estimated_answers: u64::from(tokens.estimated),
                        ..Default::default()
                    });
                    return Ok(Answer { choices, tokens, attempts, http, queued });
                }
                Attempt::Fail(e) => {
                    self.note_reachable();
                    self.stats.add(Delta { requests: 1, error: Some(e.kind()), ..Default::default() });
                    if e.fatal() {
                        self.set_fatal(&e);
                    }
                    return Err(e);
                }
                Attempt::Retry { error, retry_after, unreachable } => {
                    if unreachable {
                        if let Some(fatal) = self.note_unreachable(&error) {
                            self.stats.add(Delta { requests: 1, error: Some(error.kind()), ..Default::default() });
                            return Err(fatal);
                        }
                        // While no endpoint answers, waiting is not a failed try: the request
                        // waits for one to come back (or for the breaker to stop the stage)
                        // instead of spending its retries in a few seconds.
                        if self.circuit_open() {
                            self.stats.add(Delta { requests: 1, retries: 1, error: Some(error.kind()), ..Default::default() });
                            tokio::time::sleep(Duration::from_millis(self.settings.backoff_max_ms.clamp(50, 1000))).await;
                            continue;
                        }
                    } else {
                        self.note_reachable();
                    }
                    let Some(backoff) = delays.next() else {
                        self.stats.add(Delta { requests: 1, error: Some(error.kind()), ..Default::default() });
                        return Err(error);
                    };
                    self.stats.add(Delta { requests: 1, retries: 1, error: Some(error.kind()), ..Default::default() });
                    let delay = retry_after.map_or(backoff, |ra| ra.max(backoff));
                    self.log_retry(delay, &error);
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    async fn attempt(&self, endpoint: &Endpoint, body: &Value, attempts: u32, n: u32) -> Attempt {
        let mut request = self.http.post(&endpoint.url).json(body);
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(&key.0);
        }
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) if e.is_timeout() => return Attempt::Retry { error: LlmError::Timeout { attempts }, retry_after: None, unreachable: false },
            Err(e) => {
                let unreachable = e.is_connect();
                return Attempt::Retry { error: LlmError::Connection { attempts, message: transport_message(&e) }, retry_after: None, unreachable };
            }
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
            Err(e) if e.is_timeout() => return Attempt::Retry { error: LlmError::Timeout { attempts }, retry_after: None, unreachable: false },
            Err(e) => {
                return Attempt::Retry {
                    error: LlmError::Connection { attempts, message: transport_message(&e) },
                    retry_after: None,
                    unreachable: false,
                }
            }
        };
        if !(200..=299).contains(&status) {
            let model = self.settings.model.clone();
            return match classify(status, &text, n) {
                HttpFailure::RateLimited(message) => {
                    Attempt::Retry { error: LlmError::RateLimited { attempts, message }, retry_after, unreachable: false }
                }
                HttpFailure::Server(message) => {
                    Attempt::Retry { error: LlmError::Server { status, attempts, message }, retry_after, unreachable: false }
                }
                HttpFailure::Auth(message) => Attempt::Fail(LlmError::Auth { status, message, env: self.settings.api_key_env.clone() }),
                HttpFailure::UnknownModel(message) => Attempt::Fail(LlmError::UnknownModel { model, message, served: self.served_models() }),
                HttpFailure::NotFound(message) => Attempt::Fail(LlmError::NotFound { url: endpoint.url.clone(), message }),
                HttpFailure::ContextOverflow(message) => Attempt::Fail(LlmError::ContextOverflow { message }),
                HttpFailure::NTooLarge { message, .. } => Attempt::Fail(LlmError::NTooLarge { n, message }),
                HttpFailure::Rejected(message) => Attempt::Fail(LlmError::Rejected { status, message }),
            };
        }
        let malformed = |message: &str| Attempt::Retry {
            error: LlmError::Malformed { attempts, message: message.into() },
            retry_after: None,
            unreachable: false,
        };
        let parsed: Value = match serde_json::from_str(&text) {
            Ok(v) => v,
            Err(e) => return malformed(&format!("not JSON: {e}")),
        };
        let Some(raw_choices) = parsed.get("choices").and_then(Value::as_array) else {
            return malformed("no `choices` array");
        };
        if raw_choices.is_empty() {
            return Attempt::Retry { error: LlmError::EmptyChoices { attempts }, retry_after: None, unreachable: false };
        }
        let mut choices = Vec::new();
        for c in raw_choices {
            let Some(msg) = c.get("message") else {
                return malformed("a choice has no `message`");
            };
            let text = msg.get("content").and_then(Value::as_str).unwrap_or("").to_string();
            let finish_reason = c.get("finish_reason").and_then(Value::as_str).map(str::to_string);
            choices.push((c.get("index").and_then(Value::as_u64), Choice { text, finish_reason, cached: false }));
        }
        // More choices than asked (a server ignoring `n`'s meaning) are not samples we paid for.
        choices.truncate(n as usize);
        let usage = parsed.get("usage");
        let tokens = |k: &str| usage.and_then(|u| u.get(k)).and_then(Value::as_u64);
        Attempt::Done { choices, prompt_tokens: tokens("prompt_tokens"), completion_tokens: tokens("completion_tokens") }
    }

    fn served_models(&self) -> Vec<String> {
        let servers = self.stats.servers.lock().map(|s| s.clone()).unwrap_or_default();
        let mut out: Vec<String> = Vec::new();
        for s in servers.as_array().into_iter().flatten() {
            for m in s.get("models").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str) {
                if !out.iter().any(|x| x == m) {
                    out.push(m.to_string());
                }
            }
        }
        out
    }
}

/// The seed of the request for the samples starting at `first` in top-up round `round`:
/// the configured one for the first chunk, a new one for every other (None stays None:
/// the server then draws its own).
fn chunk_seed(seed: Option<u64>, first: usize, round: u32) -> Option<u64> {
    if first == 0 && round == 0 {
        return seed;
    }
    seed.map(|s| derive_seed(s, ((first as u64) << 16) | u64::from(round) | (1 << 63)))
}

/// A seed derived from `seed` and `salt` (splitmix64), kept to 31 bits: servers take the
/// seed as a 32-bit or signed 64-bit integer.
pub fn derive_seed(seed: u64, salt: u64) -> u64 {
    let mut z = seed ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)) & 0x7FFF_FFFF
}

impl ServerInfo {
    fn family_or_unknown(&self) -> &str {
        if self.family.is_empty() {
            "server type unknown"
        } else {
            &self.family
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_after_the_first_get_their_own_seeds() {
        assert_eq!(chunk_seed(Some(7), 0, 0), Some(7));
        assert_eq!(chunk_seed(None, 4, 0), None);
        let seeds = [chunk_seed(Some(7), 4, 0), chunk_seed(Some(7), 8, 0), chunk_seed(Some(7), 4, 1), chunk_seed(Some(7), 0, 1)];
        for (i, a) in seeds.iter().enumerate() {
            assert!(a.is_some_and(|s| s != 7 && s <= 0x7FFF_FFFF));
            for b in &seeds[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }
}
