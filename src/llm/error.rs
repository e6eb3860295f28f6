//! Why a generation failed, and how an HTTP error answer is read: every server family
//! words its errors differently (OpenAI `{"error": {...}}`, vLLM's top-level
//! `{"object": "error", "message": ...}`, FastAPI's `{"detail": ...}`, llama.cpp's
//! `exceed_context_size_error`), and the kinds here keep what the server meant.

use serde_json::Value;

/// Why a generation failed; `kind()` is what error records carry.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LlmError {
    #[error("rate limited (HTTP 429) on all {attempts} attempts: {message}")]
    RateLimited { attempts: u32, message: String },
    #[error("server error HTTP {status} after {attempts} attempts: {message}")]
    Server { status: u16, attempts: u32, message: String },
    #[error("request rejected with HTTP {status}: {message}")]
    Rejected { status: u16, message: String },
    /// The prompt (plus `max_tokens`, on servers that count it) does not fit the context.
    #[error("the prompt does not fit the model's context: {message}")]
    ContextOverflow { message: String },
    /// The server refused this many samples in one request even at `n` = 1.
    #[error("the server refused n = {n}: {message}")]
    NTooLarge { n: u32, message: String },
    #[error("the endpoint refused the API key (HTTP {status}): {message}; set the key in ${env} (or [llm] api_key_env)")]
    Auth { status: u16, message: String, env: String },
    #[error("the endpoint does not serve model `{model}`: {message}{}; set --model, [llm] model or OPENAI_MODEL", served_list(.served))]
    UnknownModel { model: String, message: String, served: Vec<String> },
    #[error("{url} answered HTTP 404 ({message}): is the base URL right? It usually ends in /v1")]
    NotFound { url: String, message: String },
    #[error("no LLM endpoint reachable ({message}) after {waited_s:.0}s; start the server or set --base-url, [llm] base_urls or OPENAI_BASE_URL")]
    Unreachable { message: String, waited_s: f64 },
    #[error("no LLM endpoint configured: set --base-url URL, [llm] base_urls or OPENAI_BASE_URL (for example http://127.0.0.1:8000/v1)")]
    NoEndpoint,
    #[error("request timed out on all {attempts} attempts")]
    Timeout { attempts: u32 },
    #[error("connection failed after {attempts} attempts: {message}")]
    Connection { attempts: u32, message: String },
    #[error("malformed response after {attempts} attempts: {message}")]
    Malformed { attempts: u32, message: String },
    #[error("response had no choices after {attempts} attempts")]
    EmptyChoices { attempts: u32 },
    /// Fewer samples than asked, even after topping up with new seeds.
    #[error("the server returned {got} of {wanted} samples after {requests} requests (topped up with new seeds)")]
    ShortReply { wanted: u32, got: u32, requests: u32 },
    #[error("budget reached: {0}")]
    Budget(String),
    #[error("offline: no cached response for this request")]
    OfflineMiss,
    /// `--dry-run`: the request was counted, not sent.
    #[error("dry run: the request was counted, not sent")]
    DryRun,
    #[error("response cache: {0}")]
    Cache(String),
}

fn served_list(served: &[String]) -> String {
    if served.is_empty() {
        String::new()
    } else {
        format!(" (it serves: {})", served.join(", "))
    }
}

impl LlmError {
    pub fn kind(&self) -> &'static str {
        match self {
            LlmError::RateLimited { .. } => "rate_limited",
            LlmError::Server { .. } => "server_error",
            LlmError::Rejected { .. } => "rejected",
            LlmError::ContextOverflow { .. } => "context_overflow",
            LlmError::NTooLarge { .. } => "n_too_large",
            LlmError::Auth { .. } => "auth",
            LlmError::UnknownModel { .. } => "unknown_model",
            LlmError::NotFound { .. } => "endpoint_not_found",
            LlmError::Unreachable { .. } => "endpoint_unreachable",
            LlmError::NoEndpoint => "no_endpoint",
            LlmError::Timeout { .. } => "timeout",
            LlmError::Connection { .. } => "connection",
            LlmError::Malformed { .. } => "malformed_response",
            LlmError::EmptyChoices { .. } => "empty_choices",
            LlmError::ShortReply { .. } => "short_reply",
            LlmError::Budget(_) => "budget_exhausted",
            LlmError::OfflineMiss => "offline_cache_miss",
            LlmError::DryRun => "dry_run",
            LlmError::Cache(_) => "cache",
        }
    }

    /// Worth trying again in a later run. Fatal errors are: once the setting is fixed, the
    /// rerun redoes every record they stopped.
    pub fn transient(&self) -> bool {
        !matches!(self, LlmError::Rejected { .. } | LlmError::ContextOverflow { .. } | LlmError::NTooLarge { .. })
    }

    /// No request to this client can succeed until a setting changes: the stage stops
    /// sending (every later request fails at once with the same error).
    pub fn fatal(&self) -> bool {
        matches!(
            self,
            LlmError::Auth { .. } | LlmError::UnknownModel { .. } | LlmError::NotFound { .. } | LlmError::Unreachable { .. } | LlmError::NoEndpoint
        )
    }
}

/// What a non-2xx answer means, before retry policy.
#[derive(Debug, Clone, PartialEq)]
pub enum HttpFailure {
    RateLimited(String),
    /// 408, 409, 5xx: the server may do better next time.
    Server(String),
    Auth(String),
    UnknownModel(String),
    NotFound(String),
    ContextOverflow(String),
    /// `n` above the server's limit, with the limit when the message states it.
    NTooLarge {
        limit: Option<u32>,
        message: String,
    },
    Rejected(String),
}

/// Read an error answer. `requested_n` helps read the n limit out of the message.
pub fn classify(status: u16, body: &str, requested_n: u32) -> HttpFailure {
    let err = ServerError::parse(body);
    let message = err.display();
    let lower = format!("{} {} {}", err.message, err.kind, err.code).to_lowercase();
    match status {
        429 => HttpFailure::RateLimited(message),
        408 | 409 | 500..=599 => HttpFailure::Server(message),
        401 | 403 => HttpFailure::Auth(message),
        404 if lower.contains("model") => HttpFailure::UnknownModel(message),
        404 => HttpFailure::NotFound(message),
        _ if is_context_overflow(&lower) => HttpFailure::ContextOverflow(message),
        _ if err.param == "n" || mentions_n(&err.message) => HttpFailure::NTooLarge { limit: limit_below(&err.message, requested_n), message },
        400 | 422 if lower.contains("model") && (lower.contains("not found") || lower.contains("does not exist")) => {
            HttpFailure::UnknownModel(message)
        }
        _ => HttpFailure::Rejected(message),
    }
}

fn is_context_overflow(lower: &str) -> bool {
    [
        "context size",
        "context length",
        "context_length",
        "exceed_context",
        "maximum context",
        "context window",
        "too many tokens",
        "prompt is too long",
    ]
    .iter()
    .any(|p| lower.contains(p))
}

/// The message is about the `n` parameter (llama.cpp: "Field 'n': Value must be between
/// 1 <= value <= 4"; OpenAI-style: "`n` must be at most 8", "n: ... less than or equal to").
fn mentions_n(message: &str) -> bool {
    let m = message.trim_start();
    ["'n'", "`n`", "\"n\"", "field n ", "parameter n "].iter().any(|p| m.to_lowercase().contains(p))
        || m.starts_with("n ")
        || m.starts_with("n:")
        || m.starts_with("n must")
}

/// The largest number in `message` below `requested` (the limit, not the value asked).
pub(crate) fn limit_below(message: &str, requested: u32) -> Option<u32> {
    message.split(|c: char| !c.is_ascii_digit()).filter_map(|d| d.parse::<u32>().ok()).filter(|&v| v >= 1 && v < requested).max()
}

/// An error body as servers send it, whichever shape.
#[derive(Debug, Default)]
struct ServerError {
    message: String,
    kind: String,
    code: String,
    param: String,
}

impl ServerError {
    fn parse(body: &str) -> ServerError {
        let Ok(v) = serde_json::from_str::<Value>(body) else {
            return ServerError { message: body.trim().chars().take(500).collect(), ..Default::default() };
        };
        let text = |v: Option<&Value>| match v {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            Some(Value::Null) | None => String::new(),
            Some(other) => other.to_string(),
        };
        // OpenAI and llama.cpp nest it under `error`; vLLM puts it at the top; FastAPI says `detail`.
        let e = match v.get("error") {
            Some(Value::String(s)) => return ServerError { message: s.clone(), ..Default::default() },
            Some(e @ Value::Object(_)) => e,
            _ => &v,
        };
        let message = match (e.get("message"), v.get("detail")) {
            (Some(m), _) => text(Some(m)),
            (None, Some(d)) => text(Some(d)),
            (None, None) => body.trim().to_string(),
        };
        ServerError {
            message: message.chars().take(500).collect(),
            kind: text(e.get("type")),
            code: text(e.get("code")),
            param: text(e.get("param")),
        }
    }

    /// The message, with the server's error type when it adds something.
    fn display(&self) -> String {
        if self.kind.is_empty() || self.message.contains(&self.kind) {
            self.message.clone()
        } else {
            format!("{} ({})", self.message, self.kind)
        }
    }
}

/// An error answer's message alone (for logs of non-chat requests).
pub fn server_message(body: &str) -> String {
    ServerError::parse(body).display()
}

/// A transport error with its causes ("connection refused" lives in the source chain,
/// not in reqwest's top-level message), without query strings or credentials.
pub fn transport_message(e: &reqwest::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    let mut message = parts.join(": ");
    if let Some(url) = e.url() {
        let mut clean = url.clone();
        clean.set_query(None);
        let _ = clean.set_password(None);
        let _ = clean.set_username("");
        message = message.replace(url.as_str(), clean.as_str());
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn llama_cpp_errors() {
        let n = r#"{"error":{"code":400,"message":"Field 'n': Value must be between 1 <= value <= 4, but got 5","type":"invalid_request_error"}}"#;
        assert_eq!(
            classify(400, n, 5),
            HttpFailure::NTooLarge {
                limit: Some(4),
                message: "Field 'n': Value must be between 1 <= value <= 4, but got 5 (invalid_request_error)".into()
            }
        );
        let ctx = r#"{"error":{"code":400,"message":"request (3031 tokens) exceeds the available context size (2048 tokens), try increasing it","type":"exceed_context_size_error","n_prompt_tokens":3031,"n_ctx":2048}}"#;
        assert!(matches!(classify(400, ctx, 1), HttpFailure::ContextOverflow(m) if m.contains("3031 tokens")));
        let auth = r#"{"error":{"message":"Invalid API Key","type":"authentication_error","code":401}}"#;
        assert_eq!(classify(401, auth, 1), HttpFailure::Auth("Invalid API Key (authentication_error)".into()));
    }

    #[test]
    fn vllm_and_openai_errors() {
        let vllm_model = r#"{"object":"error","message":"The model `gpt-x` does not exist.","type":"NotFoundError","param":null,"code":404}"#;
        assert!(matches!(classify(404, vllm_model, 1), HttpFailure::UnknownModel(m) if m == "The model `gpt-x` does not exist. (NotFoundError)"));
        let vllm_ctx = r#"{"object":"error","message":"This model's maximum context length is 4096 tokens. However, you requested 5000 tokens (3000 in the messages, 2000 in the completion).","type":"BadRequestError","param":null,"code":400}"#;
        assert!(matches!(classify(400, vllm_ctx, 1), HttpFailure::ContextOverflow(_)));
        let openai_model = r#"{"error":{"message":"The model `x` does not exist or you do not have access to it.","type":"invalid_request_error","param":null,"code":"model_not_found"}}"#;
        assert!(matches!(classify(404, openai_model, 1), HttpFailure::UnknownModel(_)));
        assert!(matches!(classify(404, r#"{"detail":"Not Found"}"#, 1), HttpFailure::NotFound(m) if m == "Not Found"));
        let openai_n =
            r#"{"error":{"message":"2000 is greater than the maximum of 128 - 'n'","type":"invalid_request_error","param":"n","code":null}}"#;
        assert_eq!(
            classify(400, openai_n, 2000),
            HttpFailure::NTooLarge { limit: Some(128), message: "2000 is greater than the maximum of 128 - 'n' (invalid_request_error)".into() }
        );
        assert!(
            matches!(classify(400, r#"{"error":{"message":"prompt rejected by policy"}}"#, 1), HttpFailure::Rejected(m) if m == "prompt rejected by policy")
        );
        assert!(matches!(classify(503, "upstream unavailable", 1), HttpFailure::Server(m) if m == "upstream unavailable"));
    }

    #[test]
    fn fatal_errors_are_redone_after_the_fix() {
        let auth = LlmError::Auth { status: 401, message: "bad".into(), env: "OPENAI_API_KEY".into() };
        assert!(auth.fatal() && auth.transient());
        let overflow = LlmError::ContextOverflow { message: "m".into() };
        assert!(!overflow.fatal() && !overflow.transient());
        let model = LlmError::UnknownModel { model: "m".into(), message: "no".into(), served: vec!["a".into(), "b".into()] };
        assert!(model.to_string().contains("it serves: a, b"), "{model}");
    }
}
