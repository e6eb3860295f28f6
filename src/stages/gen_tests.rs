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

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Result;
use clap::Args;
use serde_json::{json, Map, Value};

use crate::cli::Context;
use crate::executor::{error_value, run_stage, BoxFuture, Counts, Record, Step};
use crate::llm::prompts::Prompts;
use crate::llm::reply::{clean_tests, defines_test_cases, pick_block};
use crate::llm::{Agent, LlmArgs, LlmClient};
use crate::sandbox::testcount::count_tests;

pub use crate::executor::EXIT_BUDGET;

#[derive(Debug, Clone, Args, Default)]
pub struct GenTestsArgs {
    #[command(flatten)]
    pub llm: LlmArgs,
    /// Test modules to sample per function [default: 1].
    #[arg(long)]
    pub samples: Option<u32>,
}

fn error_field(kind: &str, message: impl Into<String>) -> Value {
    error_value("gen-tests", kind, message, false)
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
            record.insert("error".into(), error_value("gen-tests", e.kind(), e.to_string(), e.transient()));
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
        record.insert(
            "error".into(),
            error_field(&kind, format!("no usable test module in {} sample(s): {}", generation.choices.len(), rejected.join(", "))),
        );
        return record;
    }
    record.insert("tests".into(), json!(valid[0]));
    if samples > 1 {
        record.insert("tests_samples".into(), json!(valid));
    }
    record
}

/// The gen-tests step: one record in, the record with `tests` (or an `error`) out.
pub struct GenTestsStep {
    pub agent: Agent,
    pub samples: u32,
}

impl GenTestsStep {
    pub fn new(ctx: &Context, llm: &LlmArgs, samples: Option<u32>, out_dir: &std::path::Path) -> Result<GenTestsStep> {
        Ok(GenTestsStep { agent: Agent::new(ctx.llm_settings(llm), out_dir)?, samples: samples.unwrap_or(1).max(1) })
    }
}

impl Step for GenTestsStep {
    fn name(&self) -> &'static str {
        "gen-tests"
    }

    fn process(self: Arc<Self>, record: Record) -> BoxFuture {
        Box::pin(async move { generate_tests(self.agent.client.clone(), self.agent.prompts.clone(), self.samples, record).await })
    }

    fn settings(&self) -> Value {
        json!({"agent": self.agent.answer_settings("gen_tests"), "samples": self.samples})
    }

    fn tally(&self, out: &Record, counts: &mut Counts) {
        if let Some(n) = out.get("generation").and_then(|g| g.get("samples_valid")).and_then(Value::as_u64) {
            *counts.outcomes.entry("valid_test_modules".into()).or_default() += n;
        }
    }

    fn report(&self) -> Value {
        json!({"llm": self.agent.usage()})
    }

    fn budget_stopped(&self) -> bool {
        self.agent.budget_stopped()
    }
}

pub fn run(ctx: &Context, args: &GenTestsArgs) -> Result<ExitCode> {
    let out_dir = ctx.output_dir()?;
    let step = Arc::new(GenTestsStep::new(ctx, &args.llm, args.samples, &out_dir)?);
    let window = (step.agent.client.settings.concurrency * 4).max(64);
    run_stage(ctx, step, window)
}
