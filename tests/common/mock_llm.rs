//! A mock OpenAI-compatible server for tests: plain HTTP/1.1 on loopback, answering
//! `POST /v1/chat/completions` with a `TestCases` module for the function named in the
//! prompt, and injecting faults at chosen rates (deterministic per request number):
//! latency, 429 with Retry-After, 500/503, dropped connections, timeouts, malformed JSON,
//! empty choices, truncation.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Scripted answers: given the prompt's message texts (joined) and n, the replies to send
/// (cycled if fewer than n); `None` falls back to the default TestCases answer.
pub type ScriptFn = dyn Fn(&str, u64) -> Option<Vec<String>> + Send + Sync;

#[derive(Clone)]
pub struct Script(pub Arc<ScriptFn>);

impl std::fmt::Debug for Script {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Script")
    }
}

#[derive(Debug, Clone, Default)]
pub struct Faults {
    pub script: Option<Script>,
    pub latency_ms: u64,
    pub rate_429: f64,
    pub retry_after_s: f64,
    pub rate_500: f64,
    pub rate_503: f64,
    pub rate_drop: f64,
    /// Sleep this long before answering (longer than the client's timeout).
    pub rate_timeout: f64,
    pub timeout_sleep_ms: u64,
    pub rate_malformed: f64,
    pub rate_empty: f64,
    pub rate_truncated: f64,
    /// Answer 400 to prompts containing this text.
    pub reject_containing: Option<String>,
    /// The first N requests get 429 with Retry-After.
    pub first_429: u64,
    /// Record nothing per request (for the throughput benchmark: the mock must be cheap).
    pub quiet: bool,
    /// What `GET /v1/models` lists (as vLLM does: ids, `owned_by`, `max_model_len`).
    pub models: Vec<String>,
    pub context: Option<u64>,
    /// Every chat request answers this status and body (401, 404, ...).
    pub fail_all: Option<(u16, String)>,
    /// `n` above this gets llama.cpp's 400 ("Field 'n': Value must be between 1 <= value <= N").
    pub max_n: Option<u64>,
    /// At most this many choices per answer (a server that answers short).
    pub max_choices: Option<u64>,
    /// Requests after the first get at most this many choices (`Some(0)`: empty answers).
    pub max_choices_after_first: Option<u64>,
    /// Like llama.cpp: the choices of (seed, n = k) are the first k of (seed, n = N); the
    /// default answer's variant is `seed * 1000 + index`.
    pub seeded_texts: bool,
    /// Like llama.cpp for n > 1: `usage` counts the first choice only.
    pub usage_first_choice_only: bool,
}

#[derive(Default)]
pub struct Seen {
    pub requests: AtomicU64,
    /// Request bodies whose answer was sent completely (for "no completed request repeated").
    pub completed: Mutex<Vec<String>>,
    /// When each completed answer was sent (the client stores it moments later).
    pub completed_at: Mutex<Vec<std::time::Instant>>,
    /// Requests received and not yet answered.
    pub inflight: AtomicU64,
    pub authorization: Mutex<Vec<String>>,
    pub bodies: Mutex<Vec<Value>>,
    pub arrivals_ms: Mutex<Vec<(u64, u64)>>,
    /// `GET` requests (the preflight's `/models`), not counted in `requests`.
    pub gets: AtomicU64,
    /// Sequences (sum of `n`) being answered right now, and the most seen at once.
    pub sequences_inflight: AtomicU64,
    pub sequences_peak: AtomicU64,
}

pub struct MockServer {
    pub base_url: String,
    pub seen: Arc<Seen>,
    _runtime: tokio::runtime::Runtime,
}

fn unit(n: u64, salt: u64) -> f64 {
    let h = blake3::hash(&[n.to_le_bytes(), salt.to_le_bytes()].concat());
    u64::from_le_bytes(h.as_bytes()[..8].try_into().unwrap()) as f64 / u64::MAX as f64
}

impl MockServer {
    pub fn start(faults: Faults) -> MockServer {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let seen = Arc::new(Seen::default());
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let port = listener.local_addr().unwrap().port();
        let (faults, seen2) = (Arc::new(faults), seen.clone());
        let started = std::time::Instant::now();
        runtime.spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else { continue };
                let (faults, seen) = (faults.clone(), seen2.clone());
                tokio::spawn(async move {
                    loop {
                        // Read one request (headers, then Content-Length bytes).
                        let mut buf = Vec::new();
                        let header_end = loop {
                            let mut chunk = [0u8; 8192];
                            let n = match sock.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => n,
                            };
                            buf.extend_from_slice(&chunk[..n]);
                            if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                                break p + 4;
                            }
                        };
                        let head = String::from_utf8_lossy(&buf[..header_end]).to_string();
                        let length: usize = head
                            .lines()
                            .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0)))
                            .unwrap_or(0);
                        while buf.len() < header_end + length {
                            let mut chunk = [0u8; 65536];
                            match sock.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        }
                        let body: Value = serde_json::from_slice(&buf[header_end..header_end + length]).unwrap_or(Value::Null);
                        if head.starts_with("GET ") {
                            seen.gets.fetch_add(1, Ordering::Relaxed);
                            let (status, payload) = if head.starts_with("GET /v1/models") {
                                let data: Vec<Value> = faults
                                    .models
                                    .iter()
                                    .map(|m| json!({"id": m, "object": "model", "owned_by": "vllm", "max_model_len": faults.context}))
                                    .collect();
                                ("200 OK", json!({"object": "list", "data": data}).to_string())
                            } else {
                                ("404 Not Found", json!({"detail": "Not Found"}).to_string())
                            };
                            let response =
                                format!("HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{payload}", payload.len());
                            if sock.write_all(response.as_bytes()).await.is_err() {
                                return;
                            }
                            continue;
                        }
                        let n = seen.requests.fetch_add(1, Ordering::Relaxed);
                        if faults.quiet {
                            if faults.latency_ms > 0 {
                                tokio::time::sleep(Duration::from_millis(faults.latency_ms)).await;
                            }
                            let payload = quick_answer(n);
                            let response =
                                format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{payload}", payload.len());
                            if sock.write_all(response.as_bytes()).await.is_err() {
                                return;
                            }
                            continue;
                        }
                        let auth = head
                            .lines()
                            .find_map(|l| l.strip_prefix("authorization: ").or_else(|| l.strip_prefix("Authorization: ")).map(str::to_string))
                            .unwrap_or_default();
                        seen.authorization.lock().unwrap().push(auth);
                        seen.bodies.lock().unwrap().push(body.clone());
                        seen.arrivals_ms.lock().unwrap().push((n, started.elapsed().as_millis() as u64));
                        seen.inflight.fetch_add(1, Ordering::SeqCst);
                        let sequences = body.get("n").and_then(Value::as_u64).unwrap_or(1);
                        let now = seen.sequences_inflight.fetch_add(sequences, Ordering::SeqCst) + sequences;
                        seen.sequences_peak.fetch_max(now, Ordering::SeqCst);
                        if faults.latency_ms > 0 {
                            tokio::time::sleep(Duration::from_millis(faults.latency_ms)).await;
                        }
                        let (status, extra_header, payload) = respond(&faults, n, &body);
                        seen.sequences_inflight.fetch_sub(sequences, Ordering::SeqCst);
                        if status == 0 {
                            seen.inflight.fetch_sub(1, Ordering::SeqCst);
                            return; // dropped connection
                        }
                        if status == 1 {
                            tokio::time::sleep(Duration::from_millis(faults.timeout_sleep_ms.max(1))).await;
                            seen.inflight.fetch_sub(1, Ordering::SeqCst);
                            return;
                        }
                        let reason = match status {
                            200 => "OK",
                            400 => "Bad Request",
                            401 => "Unauthorized",
                            403 => "Forbidden",
                            404 => "Not Found",
                            429 => "Too Many Requests",
                            503 => "Service Unavailable",
                            _ => "Internal Server Error",
                        };
                        let response = format!(
                            "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{extra_header}\r\n{payload}",
                            payload.len()
                        );
                        let written = sock.write_all(response.as_bytes()).await;
                        seen.inflight.fetch_sub(1, Ordering::SeqCst);
                        if written.is_err() {
                            return;
                        }
                        if status == 200 {
                            let key = json!({"messages": body["messages"], "n": body["n"]}).to_string();
                            seen.completed.lock().unwrap().push(key);
                            seen.completed_at.lock().unwrap().push(std::time::Instant::now());
                        }
                    }
                });
            }
        });
        MockServer { base_url: format!("http://127.0.0.1:{port}/v1"), seen, _runtime: runtime }
    }

    pub fn requests(&self) -> u64 {
        self.seen.requests.load(Ordering::Relaxed)
    }
}

/// A scripted reply starting with this is sent with `finish_reason: "length"`.
pub const LENGTH_MARK: &str = "<<finish_reason=length>>";

/// A fixed answer without parsing the request (throughput benchmark).
fn quick_answer(n: u64) -> String {
    let text = answer_for("f", 0).replace('\n', "\\n").replace('"', "\\\"");
    format!("{{\"id\":\"cmpl-{n}\",\"object\":\"chat.completion\",\"choices\":[{{\"index\":0,\"message\":{{\"role\":\"assistant\",\"content\":\"{text}\"}},\"finish_reason\":\"stop\"}}],\"usage\":{{\"prompt_tokens\":20,\"completion_tokens\":60}}}}")
}

/// The function name the prompt asks about (`Function name: X`).
fn entry_point(body: &Value) -> String {
    let messages = body.get("messages").and_then(Value::as_array).cloned().unwrap_or_default();
    for m in messages {
        let text = m.get("content").and_then(Value::as_str).unwrap_or("");
        if let Some(line) = text.lines().find_map(|l| l.strip_prefix("Function name: ")) {
            return line.trim().to_string();
        }
    }
    "f".into()
}

/// A plausible answer: prose, then a fenced module with a TestCases class. It is a plumbing
/// answer (it asserts almost nothing), but it calls the function and asserts on what the
/// call gave, so it passes gen-tests' integrity checks whatever the function does.
pub fn answer_for(name: &str, variant: u64) -> String {
    format!(
        "Here are the tests.\n\n```python\nimport unittest\n\nclass TestCases(unittest.TestCase):\n    def test_callable(self):\n        self.assertTrue(callable({name}))\n\n    def test_variant_{variant}(self):\n        try:\n            result = {name}(\"x\")\n        except Exception as error:\n            result = error\n        self.assertIsInstance(result, object)\n```\n"
    )
}

/// (status, extra header line, body); status 0 = drop the connection, 1 = hang.
fn respond(f: &Faults, n: u64, body: &Value) -> (u16, String, String) {
    let prompt = body.to_string();
    if let Some(bad) = &f.reject_containing {
        if prompt.contains(bad.as_str()) {
            return (400, String::new(), json!({"error": {"message": "prompt rejected by policy"}}).to_string());
        }
    }
    if n < f.first_429 {
        return (429, format!("retry-after: {}\r\n", f.retry_after_s), json!({"error": {"message": "slow down"}}).to_string());
    }
    let r = unit(n, 1);
    let mut acc = 0.0;
    let mut hit = |rate: f64| {
        acc += rate;
        r < acc
    };
    if hit(f.rate_429) {
        return (429, format!("retry-after: {}\r\n", f.retry_after_s), json!({"error": {"message": "slow down"}}).to_string());
    }
    if hit(f.rate_500) {
        return (500, String::new(), json!({"error": {"message": "boom"}}).to_string());
    }
    if hit(f.rate_503) {
        return (503, String::new(), "upstream unavailable".into());
    }
    if hit(f.rate_drop) {
        return (0, String::new(), String::new());
    }
    if hit(f.rate_timeout) {
        return (1, String::new(), String::new());
    }
    if hit(f.rate_malformed) {
        return (200, String::new(), "{\"choices\": [{\"message\": ".into());
    }
    if hit(f.rate_empty) {
        return (200, String::new(), json!({"choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 0}}).to_string());
    }
    if let Some((status, payload)) = &f.fail_all {
        return (*status, String::new(), payload.clone());
    }
    let name = entry_point(body);
    let asked = body.get("n").and_then(Value::as_u64).unwrap_or(1);
    if let Some(max) = f.max_n.filter(|m| asked > *m) {
        let message = format!("Field 'n': Value must be between 1 <= value <= {max}, but got {asked}");
        return (400, String::new(), json!({"error": {"code": 400, "message": message, "type": "invalid_request_error"}}).to_string());
    }
    let mut k = f.max_choices.map_or(asked, |m| asked.min(m));
    if n > 0 {
        k = f.max_choices_after_first.map_or(k, |m| k.min(m));
    }
    if k == 0 {
        return (200, String::new(), json!({"choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 0}}).to_string());
    }
    let seed = body.get("seed").and_then(Value::as_u64).unwrap_or(0);
    let truncated = hit(f.rate_truncated);
    let scripted = f.script.as_ref().and_then(|s| {
        let text: Vec<&str> = body["messages"].as_array().map(|ms| ms.iter().filter_map(|m| m["content"].as_str()).collect()).unwrap_or_default();
        (s.0)(&text.join("\n"), k)
    });
    let choices: Vec<Value> = (0..k)
        .map(|i| {
            let mut text = match &scripted {
                Some(answers) if !answers.is_empty() => answers[i as usize % answers.len()].clone(),
                _ if f.seeded_texts => answer_for(&name, seed * 1000 + i),
                _ => answer_for(&name, i),
            };
            if truncated {
                text.truncate(text.len() / 2);
            }
            // A scripted reply marked as cut by the token limit.
            let cut = match text.strip_prefix(LENGTH_MARK) {
                Some(rest) => {
                    text = rest.to_string();
                    true
                }
                None => truncated,
            };
            json!({"index": i, "message": {"role": "assistant", "content": text}, "finish_reason": if cut { "length" } else { "stop" }})
        })
        .collect();
    let first_len = choices.first().and_then(|c| c["message"]["content"].as_str()).map_or(0, str::len) as u64;
    let completion = if f.usage_first_choice_only { first_len / 4 } else { 60 * k };
    let usage = json!({"prompt_tokens": prompt.len() / 4, "completion_tokens": completion});
    (200, String::new(), json!({"id": format!("cmpl-{n}"), "object": "chat.completion", "choices": choices, "usage": usage}).to_string())
}
