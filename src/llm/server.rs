//! What an endpoint says about itself, asked once before the first request (the
//! preflight) and by `doctor`: `GET {base}/models` (served models and, on vLLM and
//! llama.cpp, the context size) and, on llama.cpp, `GET /props` (its slot count, which is
//! also its `n` limit).

use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use super::error::{server_message, transport_message};

/// What an endpoint answered; `None` fields are unknown (the server does not say).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct ServerInfo {
    pub url: String,
    /// Model ids (and aliases) the server lists.
    pub models: Vec<String>,
    /// Tokens of context per sequence (llama.cpp: per slot).
    pub context: Option<u64>,
    /// Sequences the server runs at once (llama.cpp slots), which llama.cpp also makes its
    /// largest `n`.
    pub slots: Option<u32>,
    /// `llama.cpp`, `vllm`, `sglang`, or empty.
    pub family: String,
}

/// How asking failed.
#[derive(Debug, Clone, PartialEq)]
pub enum ProbeError {
    /// Nothing answered (connection refused, DNS, timeout).
    Unreachable(String),
    /// The key was refused.
    Auth(u16, String),
}

impl ServerInfo {
    /// Does the server list `model` (when it lists anything)?
    pub fn serves(&self, model: &str) -> Option<bool> {
        (!self.models.is_empty()).then(|| self.models.iter().any(|m| m == model))
    }
}

/// Ask `base_url` (…/v1) about itself, trying `tries` times a short while apart.
pub async fn probe(http: &reqwest::Client, base_url: &str, api_key: Option<&str>, timeout: Duration, tries: u32) -> Result<ServerInfo, ProbeError> {
    let base = base_url.trim_end_matches('/');
    let mut last = String::new();
    for attempt in 0..tries.max(1) {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(400 * u64::from(attempt))).await;
        }
        let mut request = http.get(format!("{base}/models")).timeout(timeout);
        if let Some(key) = api_key {
            request = request.bearer_auth(key);
        }
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) => {
                last = transport_message(&e);
                continue;
            }
        };
        let status = response.status().as_u16();
        let body = response.text().await.unwrap_or_default();
        if status == 401 || status == 403 {
            return Err(ProbeError::Auth(status, server_message(&body)));
        }
        let mut info = ServerInfo { url: base.to_string(), ..Default::default() };
        if (200..300).contains(&status) {
            if let Ok(v) = serde_json::from_str::<Value>(&body) {
                read_models(&v, &mut info);
            }
        }
        if info.family == "llama.cpp" {
            read_props(http, base, api_key, timeout, &mut info).await;
        }
        return Ok(info);
    }
    Err(ProbeError::Unreachable(last))
}

/// `{"data": [{"id": ..., "max_model_len": ..., "owned_by": ..., "meta": {"n_ctx": ...}}]}`.
fn read_models(v: &Value, info: &mut ServerInfo) {
    let Some(data) = v.get("data").and_then(Value::as_array) else { return };
    for m in data {
        if let Some(id) = m.get("id").and_then(Value::as_str) {
            info.models.push(id.to_string());
        }
        for alias in m.get("aliases").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str) {
            if !info.models.iter().any(|x| x == alias) {
                info.models.push(alias.to_string());
            }
        }
        let context = m
            .get("max_model_len")
            .or_else(|| m.get("meta").and_then(|meta| meta.get("n_ctx")))
            .or_else(|| m.get("context_length"))
            .and_then(Value::as_u64);
        info.context = info.context.or(context);
        info.family = match m.get("owned_by").and_then(Value::as_str) {
            Some("llamacpp") => "llama.cpp".into(),
            Some("vllm") => "vllm".into(),
            Some("sglang") => "sglang".into(),
            _ => std::mem::take(&mut info.family),
        };
    }
}

/// llama.cpp's `/props` (beside `/v1`): `total_slots` and the per-slot context.
async fn read_props(http: &reqwest::Client, base: &str, api_key: Option<&str>, timeout: Duration, info: &mut ServerInfo) {
    let root = base.strip_suffix("/v1").unwrap_or(base);
    let mut request = http.get(format!("{root}/props")).timeout(timeout);
    if let Some(key) = api_key {
        request = request.bearer_auth(key);
    }
    let Ok(response) = request.send().await else { return };
    let Ok(v) = response.json::<Value>().await else { return };
    info.slots = v.get("total_slots").and_then(Value::as_u64).map(|s| s.min(u64::from(u32::MAX)) as u32);
    if let Some(ctx) = v.get("default_generation_settings").and_then(|g| g.get("n_ctx")).and_then(Value::as_u64) {
        info.context = Some(ctx);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_llama_cpp_and_vllm_model_lists() {
        let llama = serde_json::json!({"object":"list","data":[{"id":"smollm2","aliases":["smollm2","small"],"owned_by":"llamacpp","meta":{"n_ctx":2048,"n_ctx_train":8192}}]});
        let mut info = ServerInfo::default();
        read_models(&llama, &mut info);
        assert_eq!(
            (info.models.clone(), info.context, info.family.as_str()),
            (vec!["smollm2".to_string(), "small".to_string()], Some(2048), "llama.cpp")
        );
        assert_eq!(info.serves("small"), Some(true));
        let vllm = serde_json::json!({"object":"list","data":[{"id":"Qwen/Qwen2.5-7B","owned_by":"vllm","max_model_len":32768}]});
        let mut info = ServerInfo::default();
        read_models(&vllm, &mut info);
        assert_eq!((info.context, info.family.as_str(), info.serves("default")), (Some(32768), "vllm", Some(false)));
        assert_eq!(ServerInfo::default().serves("x"), None);
    }
}
