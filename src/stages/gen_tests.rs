//! `unitcoder gen-tests`: an LLM writes a `unittest` `TestCases` class for each extracted
//! function (UnitCoder §3.1.2).
//!
//! For each record, streamed in input order:
//!   1. render the `gen_tests` prompt with the function's runnable module;
//!   2. ask the model for `--samples` completions (cached answers are not paid twice);
//!   3. take from each the fenced Python block that defines `TestCases` with ≥ 1 `test*`
//!      method, removing any copy or import of the function under test;
//!   4. write the record with `tests` (the first valid sample; all valid ones in
//!      `tests_samples` when more than one was asked for) and `generation` metadata — or
//!      with an `error` {stage, kind, message}. Never dropped.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context as _, Result};
use clap::Args;
use serde_json::{json, Map, Value};

use crate::cli::Context;
use crate::llm::pipeline::run_ordered;
use crate::llm::prompts::Prompts;
use crate::llm::reply::{clean_tests, defines_test_cases, pick_block};
use crate::llm::{LlmArgs, LlmClient, LlmSettings};
use crate::sandbox::testcount::count_tests;
use crate::shards::manifest::{fingerprint, now_rfc3339, prepare_output};
use crate::shards::reader::{read_record_items, RecordItem};
use crate::shards::{expand_inputs, Manifest, ShardWriter, ShardWriterOptions};

/// Exit status when a budget stopped the run (rerun with a larger budget to continue).
pub const EXIT_BUDGET: u8 = 3;

#[derive(Debug, Clone, Args, Default)]
pub struct GenTestsArgs {
    #[command(flatten)]
    pub llm: LlmArgs,
    /// Test modules to sample per function [default: 1].
    #[arg(long)]
    pub samples: Option<u32>,
}


/// The stage's LLM settings: config `[llm]`, flags on top.
pub fn llm_settings(ctx: &Context, args: &LlmArgs) -> LlmSettings {
    let mut s = ctx.config.llm.clone();
    s.apply(args);
    s
}

/// Where the response cache lives: `[llm] cache`, else inside the output directory.
pub fn cache_path(settings: &LlmSettings, out_dir: &std::path::Path) -> PathBuf {
    if settings.cache.is_empty() {
        out_dir.join("llm-cache.sqlite")
    } else {
        PathBuf::from(&settings.cache)
    }
}

fn error_field(kind: &str, message: impl Into<String>) -> Value {
    json!({"stage": "gen-tests", "kind": kind, "message": message.into()})
}

/// Steps 1–4 for one record.
async fn generate_tests(client: Arc<LlmClient>, prompts: Arc<Prompts>, samples: u32, mut record: Map<String, Value>) -> Map<String, Value> {
    let text = |k: &str| record.get(k).and_then(Value::as_str).map(str::to_string);
    let (Some(code), Some(entry_point)) = (text("code"), text("entry_point")) else {
        record.insert("error".into(), error_field("missing_field", "the record needs string fields `code` and `entry_point`"));
        return record;
    };
    let context = json!({
        "code": code, "entry_point": entry_point, "function": text("function").unwrap_or_default(),
        "imports": record.get("imports").cloned().unwrap_or(json!([])),
        "packages": record.get("packages").cloned().unwrap_or(json!([])),
    });
    let messages = match prompts.render("gen_tests", &context) {
        Ok(m) => m,
        Err(e) => {
            record.insert("error".into(), error_field("prompt", format!("{e:#}")));
            return record;
        }
    };
    let generation = match client.generate(&messages, samples).await {
        Ok(g) => g,
        Err(e) => {
            record.insert("error".into(), error_field(e.kind(), e.to_string()));
            return record;
        }
    };
    let mut valid: Vec<String> = Vec::new();
    let mut rejected: Vec<String> = Vec::new();
    let mut removed: Vec<String> = Vec::new();
    for choice in &generation.choices {
        if choice.finish_reason.as_deref() == Some("length") {
            rejected.push("truncated".into());
            continue;
        }
        match pick_block(&choice.text, "class TestCases with a test method", defines_test_cases) {
            Err(e) => rejected.push(e.kind().into()),
            Ok(block) => {
                let (clean, what) = clean_tests(&block, &entry_point);
                match count_tests(&clean) {
                    Ok(n) if n > 0 => {
                        removed.extend(what);
                        valid.push(clean);
                    }
                    _ => rejected.push("no_test_methods".into()),
                }
            }
        }
    }
    let meta = json!({
        "model": client.settings.model,
        "usage": {"prompt_tokens": generation.prompt_tokens, "completion_tokens": generation.completion_tokens},
        "latency_ms": generation.latency_ms,
        "cache_hit": generation.cache_hits as usize == generation.choices.len(),
        "attempts": generation.attempts,
        "samples": samples,
        "samples_valid": valid.len(),
        "rejected": rejected,
        "removed_from_tests": removed,
    });
    record.insert("generation".into(), meta);
    if valid.is_empty() {
        let kind = rejected.first().cloned().unwrap_or_else(|| "no_choices".into());
        record.insert("error".into(), error_field(&kind, format!("no usable test module in {} sample(s): {}", generation.choices.len(), rejected.join(", "))));
        return record;
    }
    record.insert("tests".into(), json!(valid[0]));
    if samples > 1 {
        record.insert("tests_samples".into(), json!(valid));
    }
    record
}

pub fn run(ctx: &Context, args: &GenTestsArgs) -> Result<ExitCode> {
    let started = Instant::now();
    let started_at = now_rfc3339();
    let settings = llm_settings(ctx, &args.llm);
    let samples = args.samples.unwrap_or(1).max(1);
    let out_dir = ctx.output_dir()?;
    anyhow::ensure!(!ctx.global.input.is_empty(), "--input is required");
    let inputs = expand_inputs(&ctx.global.input)?;
    let output_cfg = ctx.output_config();
    let prompts = Arc::new(Prompts::load(&settings.prompts)?);
    // The fingerprint covers everything that changes answers (not endpoints or the key).
    let mut fp_settings = serde_json::to_value(&settings)?;
    if let Some(o) = fp_settings.as_object_mut() {
        for k in ["base_urls", "concurrency", "request_timeout", "max_retries", "backoff_min_ms", "backoff_max_ms", "bench_after_failures", "bench_seconds", "cache", "offline", "max_requests", "max_total_tokens"] {
            o.remove(k);
        }
    }
    let settings_json = json!({ "llm": fp_settings, "samples": samples, "output": output_cfg });
    let fp = fingerprint(&inputs.iter().map(|i| i.path.clone()).collect::<Vec<_>>(), &settings_json);
    if prepare_output(&out_dir, "gen-tests", &fp, ctx.global.force)? {
        return Ok(ExitCode::SUCCESS);
    }
    let client = LlmClient::new(settings.clone(), Some(&cache_path(&settings, &out_dir)))?;
    let mut writer = ShardWriter::new(
        &out_dir,
        ShardWriterOptions { records_per_shard: output_cfg.records_per_shard, compress: output_cfg.compress, ..Default::default() },
    )?;
    tracing::info!("gen-tests: {} input files → {} (model {}, {} endpoint(s), concurrency {})", inputs.len(), out_dir.display(), settings.model, settings.base_urls.len(), settings.concurrency);

    let window = (settings.concurrency * 8).max(256);
    let (tx, rx) = tokio::sync::mpsc::channel::<RecordItem>(window);
    let max_line = ctx.record_line_limit();
    let reader_inputs = inputs.clone();
    let reader = std::thread::spawn(move || {
        read_record_items(&reader_inputs, max_line, |item| tx.blocking_send(item).is_ok())
    });
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().context("tokio runtime")?;
    let (mut records, mut ok, mut bad_lines) = (0u64, 0u64, 0u64);
    let mut errors: std::collections::BTreeMap<String, u64> = Default::default();
    let mut progress = crate::logging::Progress::new("gen-tests", ctx.global.quiet);
    runtime.block_on(run_ordered(
        rx,
        window,
        |item| {
            let (client, prompts) = (client.clone(), prompts.clone());
            async move {
                match item {
                    RecordItem::Record(r) => RecordItem::Record(generate_tests(client, prompts, samples, r).await),
                    bad => bad,
                }
            }
        },
        |item| {
            match item {
                RecordItem::Bad { file, line, bad } => {
                    bad_lines += 1;
                    tracing::warn!("{file}:{line}: skipped line: {} ({})", bad.reason, bad.detail);
                }
                RecordItem::Record(r) => {
                    records += 1;
                    match r.get("error").and_then(|e| e.get("kind")).and_then(Value::as_str) {
                        Some(kind) => *errors.entry(kind.to_string()).or_default() += 1,
                        None => ok += 1,
                    }
                    writer.write(&r)?;
                }
            }
            progress.update(records, || format!("{ok} ok"));
            Ok(())
        },
    ))?;
    progress.finish();
    reader.join().map_err(|_| anyhow::anyhow!("reader thread panicked"))??;
    let shards = writer.finish()?;
    let budget_stopped = client.stats.budget_stopped.load(std::sync::atomic::Ordering::Relaxed);
    let llm = client.stats.summary(settings.price_prompt_per_million, settings.price_completion_per_million);
    let counts = json!({"records": records, "ok": ok, "errors_by_kind": errors, "bad_lines": bad_lines, "llm": llm});
    let elapsed = started.elapsed().as_secs_f64();
    let mut manifest = Manifest::finished("gen-tests", &inputs, fp, settings_json, counts, shards, started_at, started, json!({"records_per_second": records as f64 / elapsed.max(1e-9)}));
    manifest.complete = !budget_stopped;
    manifest.write(&out_dir)?;
    tracing::info!("gen-tests: {records} records, {ok} with tests, errors {errors:?}; LLM {llm}");
    if budget_stopped {
        tracing::warn!("gen-tests: stopped by the budget; rerun with a larger budget to continue (answers already paid for come from the cache)");
        return Ok(ExitCode::from(EXIT_BUDGET));
    }
    Ok(ExitCode::SUCCESS)
}
