//! The LLM engine shared by every generating stage: an OpenAI-compatible chat client with
//! endpoint balancing, retries, a crash-safe response cache, budgets and accounting
//! (`client`, `cache`, `stats`), prompt templates (`prompts`) and reply parsing (`reply`).

pub mod cache;
pub mod client;
pub mod error;
pub mod prompts;
pub mod reply;
pub mod server;
pub mod stats;
pub mod usage;

use serde::{Deserialize, Serialize};

pub use client::{derive_seed, Choice, DryEstimate, Generation, LlmClient, Message};
pub use error::LlmError;

/// Settings of the `[llm]` config section (flags override).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LlmSettings {
    /// One or more OpenAI-compatible base URLs (`.../v1`); requests go to the least busy.
    /// Empty: `$OPENAI_BASE_URL` (comma-separated for several).
    pub base_urls: Vec<String>,
    /// Empty: `$UNITCODER_MODEL`, else `$OPENAI_MODEL`, else `default`.
    pub model: String,
    /// Environment variable holding the API key (never logged or written anywhere).
    pub api_key_env: String,
    pub temperature: f64,
    pub top_p: Option<f64>,
    pub max_tokens: u32,
    pub seed: Option<u64>,
    pub stop: Vec<String>,
    /// Passed through verbatim into the request body (vLLM/SGLang options).
    pub extra_body: toml::Table,
    /// Sequences in flight at once over all endpoints (a request for n samples counts n).
    pub concurrency: usize,
    /// Largest `n` per request (0 = learn it: llama.cpp's slot count, or the limit a 400
    /// states). Larger asks are split.
    pub max_n: u32,
    /// Ask the endpoints about themselves before the first request (reachable, key,
    /// model, context, slots).
    pub preflight: bool,
    /// Seconds with no endpoint answering before the stage stops (resumable).
    pub down_timeout: f64,
    /// Per-request timeout, seconds.
    pub request_timeout: f64,
    /// Retries per request on 429, 5xx, timeouts, connection errors, malformed replies.
    pub max_retries: u32,
    pub backoff_min_ms: u64,
    pub backoff_max_ms: u64,
    /// Consecutive failures that bench an endpoint, and for how long (seconds).
    pub bench_after_failures: u32,
    pub bench_seconds: f64,
    /// Response cache file; empty = `llm-cache.sqlite` in the stage's output directory.
    pub cache: String,
    /// Treat every cache miss as an error instead of sending a request.
    pub offline: bool,
    /// `--dry-run`: count what would be asked, send nothing.
    #[serde(skip)]
    pub dry_run: bool,
    /// Stop sending requests after this many (0 = no limit); the run stays resumable.
    pub max_requests: u64,
    /// Stop after this many prompt+completion tokens (0 = no limit).
    pub max_total_tokens: u64,
    /// Prices per million tokens, for the cost estimate in manifests.
    pub price_prompt_per_million: f64,
    pub price_completion_per_million: f64,
    /// Directory overriding the built-in prompt templates (by file name).
    pub prompts: String,
}

impl Default for LlmSettings {
    fn default() -> Self {
        Self {
            base_urls: Vec::new(),
            model: String::new(),
            api_key_env: "OPENAI_API_KEY".into(),
            temperature: 0.2,
            top_p: None,
            max_tokens: 2048,
            seed: None,
            stop: Vec::new(),
            extra_body: toml::Table::new(),
            concurrency: 64,
            max_n: 0,
            preflight: true,
            down_timeout: 120.0,
            request_timeout: 300.0,
            max_retries: 8,
            backoff_min_ms: 500,
            backoff_max_ms: 60_000,
            bench_after_failures: 5,
            bench_seconds: 30.0,
            cache: String::new(),
            offline: false,
            dry_run: false,
            max_requests: 0,
            max_total_tokens: 0,
            price_prompt_per_million: 0.0,
            price_completion_per_million: 0.0,
            prompts: String::new(),
        }
    }
}

/// Flags shared by every LLM stage.
impl LlmSettings {
    /// The settings that change answers (for fingerprints): not endpoints, keys, limits,
    /// budgets or the cache location.
    pub fn answer_settings(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        if let Some(o) = v.as_object_mut() {
            for k in [
                "base_urls",
                "api_key_env",
                "concurrency",
                "max_n",
                "preflight",
                "down_timeout",
                "request_timeout",
                "max_retries",
                "backoff_min_ms",
                "backoff_max_ms",
                "bench_after_failures",
                "bench_seconds",
                "cache",
                "offline",
                "max_requests",
                "max_total_tokens",
                "price_prompt_per_million",
                "price_completion_per_million",
                "prompts",
            ] {
                o.remove(k);
            }
        }
        v
    }
}

#[derive(Debug, Clone, clap::Args, Default)]
#[command(next_help_heading = "LLM")]
pub struct LlmArgs {
    /// Model name sent to the endpoint [default: $UNITCODER_MODEL, $OPENAI_MODEL, "default"].
    #[arg(long)]
    pub model: Option<String>,
    /// OpenAI-compatible base URL (e.g. http://host:8000/v1); repeatable [default: $OPENAI_BASE_URL].
    #[arg(long = "base-url", value_name = "URL")]
    pub base_urls: Vec<String>,
    /// Environment variable with the API key [default: OPENAI_API_KEY].
    #[arg(long, value_name = "NAME")]
    pub api_key_env: Option<String>,
    /// Sampling temperature [default: 0.2].
    #[arg(long)]
    pub temperature: Option<f64>,
    /// Longest reply per sample, tokens; prompt + this must fit the server's context [default: 2048].
    #[arg(long)]
    pub max_tokens: Option<u32>,
    /// Sequences in flight at once; a request for n samples counts n [default: 64].
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// Largest n per request; larger asks are split [default: learned from the server].
    #[arg(long)]
    pub max_n: Option<u32>,
    /// Per-request timeout in seconds [default: 300].
    #[arg(long)]
    pub request_timeout: Option<f64>,
    /// Retries per request [default: 8].
    #[arg(long)]
    pub max_retries: Option<u32>,
    /// Response cache file [default: <output>/llm-cache.sqlite].
    #[arg(long, value_name = "FILE")]
    pub cache: Option<String>,
    /// Never send a request: cache misses become error records.
    #[arg(long)]
    pub offline: bool,
    /// Stop after this many requests (the output stays resumable) [default: 0 = no limit].
    #[arg(long)]
    pub max_requests: Option<u64>,
    /// Stop after this many prompt+completion tokens [default: 0 = no limit].
    #[arg(long = "max-total-tokens")]
    pub max_total_tokens: Option<u64>,
    /// Directory with prompt templates overriding the built-in ones [default: built-in].
    #[arg(long, value_name = "DIR")]
    pub prompts: Option<String>,
}

impl LlmSettings {
    pub fn apply(&mut self, a: &LlmArgs) {
        if let Some(v) = &a.model {
            self.model = v.clone();
        }
        if !a.base_urls.is_empty() {
            self.base_urls = a.base_urls.clone();
        }
        if let Some(v) = &a.api_key_env {
            self.api_key_env = v.clone();
        }
        if let Some(v) = a.temperature {
            self.temperature = v;
        }
        if let Some(v) = a.max_tokens {
            self.max_tokens = v;
        }
        if let Some(v) = a.concurrency {
            self.concurrency = v.max(1);
        }
        if let Some(v) = a.max_n {
            self.max_n = v;
        }
        if let Some(v) = a.request_timeout {
            self.request_timeout = v;
        }
        if let Some(v) = a.max_retries {
            self.max_retries = v;
        }
        if let Some(v) = &a.cache {
            self.cache = v.clone();
        }
        self.offline |= a.offline;
        if let Some(v) = a.max_requests {
            self.max_requests = v;
        }
        if let Some(v) = a.max_total_tokens {
            self.max_total_tokens = v;
        }
        if let Some(v) = &a.prompts {
            self.prompts = v.clone();
        }
    }
}

impl LlmSettings {
    /// Fill what the config and flags left empty from the environment, as the OpenAI
    /// client and vLLM's tools do: `OPENAI_BASE_URL`, `UNITCODER_MODEL` / `OPENAI_MODEL`.
    pub fn resolve_env(&mut self) {
        self.resolve_with(|k| std::env::var(k).ok());
    }

    fn resolve_with(&mut self, env: impl Fn(&str) -> Option<String>) {
        if self.base_urls.is_empty() {
            if let Some(urls) = env("OPENAI_BASE_URL") {
                self.base_urls = urls.split([',', ' ']).map(str::trim).filter(|u| !u.is_empty()).map(str::to_string).collect();
            }
        }
        if self.model.is_empty() {
            self.model = env("UNITCODER_MODEL").or_else(|| env("OPENAI_MODEL")).filter(|m| !m.is_empty()).unwrap_or_else(|| "default".into());
        }
    }
}

/// A model as one LLM step holds it: the client (with its cache) and the prompt templates.
pub struct Agent {
    pub client: std::sync::Arc<LlmClient>,
    pub prompts: std::sync::Arc<prompts::Prompts>,
}

impl Agent {
    /// The response cache is `[llm] cache`, else `llm-cache.sqlite` in `out_dir`.
    pub fn new(settings: LlmSettings, out_dir: &std::path::Path) -> anyhow::Result<Agent> {
        let prompts = std::sync::Arc::new(prompts::Prompts::load(&settings.prompts)?);
        let cache = if settings.cache.is_empty() { out_dir.join("llm-cache.sqlite") } else { std::path::PathBuf::from(&settings.cache) };
        let client = LlmClient::new(settings, Some(&cache))?;
        Ok(Agent { client, prompts })
    }

    /// What changes this agent's answers with `template` (for a step's fingerprint).
    pub fn answer_settings(&self, template: &str) -> serde_json::Value {
        serde_json::json!({"llm": self.client.settings.answer_settings(), "prompt": self.prompts.source(template)})
    }

    /// LLM usage for the manifest.
    pub fn usage(&self) -> serde_json::Value {
        let s = &self.client.settings;
        self.client.stats.summary(s.price_prompt_per_million, s.price_completion_per_million)
    }

    pub fn budget_stopped(&self) -> bool {
        self.client.stats.budget_stopped.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The fatal error (refused key, unknown model, endpoint down) that stopped this model.
    pub fn fatal_error(&self) -> Option<LlmError> {
        self.client.fatal_error()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_fills_only_what_is_unset() {
        let env = |k: &str| match k {
            "OPENAI_BASE_URL" => Some("http://a:1/v1, http://b:2/v1".to_string()),
            "OPENAI_MODEL" => Some("m-openai".to_string()),
            _ => None,
        };
        let mut s = LlmSettings::default();
        s.resolve_with(env);
        assert_eq!(s.base_urls, ["http://a:1/v1", "http://b:2/v1"]);
        assert_eq!(s.model, "m-openai");
        let mut s = LlmSettings { base_urls: vec!["http://c/v1".into()], model: "mine".into(), ..Default::default() };
        s.resolve_with(env);
        assert_eq!((s.base_urls.as_slice(), s.model.as_str()), (["http://c/v1".to_string()].as_slice(), "mine"));
        let mut s = LlmSettings::default();
        s.resolve_with(|k| (k == "UNITCODER_MODEL").then(|| "m-ours".to_string()));
        assert_eq!((s.base_urls.len(), s.model.as_str()), (0, "m-ours"));
        let mut s = LlmSettings::default();
        s.resolve_with(|_| None);
        assert_eq!(s.model, "default");
    }
}
