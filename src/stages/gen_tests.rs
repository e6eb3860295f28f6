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

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Result;
use clap::Args;
use serde::Serialize;
use serde_json::{json, Value};

use crate::context::Context;
use crate::executor::{BoxFuture, Counts, Record, Resources, Step};
use crate::llm::reply::{clean_tests, defines_test_cases, pick_block};
use crate::llm::{Agent, Generation, LlmArgs, LlmSettings};
use crate::record::{counter, field, ErrorInfo, RecordExt, TestGeneration, Usage};
use crate::sandbox::testcount::count_tests;
use crate::stages::common::{ask, llm_settings, run_with_model};

const STAGE: &str = "gen-tests";

#[derive(Debug, Clone, Args, Default)]
pub struct GenTestsArgs {
    #[command(flatten)]
    pub llm: LlmArgs,
    /// Test modules to sample per function [default: 1].
    #[arg(long)]
    pub samples: Option<u32>,
}

/// What the prompt sees of a record.
#[derive(Serialize)]
struct PromptContext<'a> {
    code: &'a str,
    entry_point: &'a str,
    function: &'a str,
    imports: Value,
    packages: Value,
}

/// The gen-tests step: one record in, the record with `tests` (or an `error`) out.
pub struct GenTestsStep {
    pub agent: Agent,
    /// Test modules sampled per function.
    pub samples: u32,
}

impl GenTestsStep {
    pub fn new(llm: LlmSettings, samples: u32, out_dir: &Path) -> Result<GenTestsStep> {
        Ok(GenTestsStep { agent: Agent::new(llm, out_dir)?, samples: samples.max(1) })
    }

    /// Steps 1–4 for one record.
    async fn generate_tests(&self, mut record: Record) -> Record {
        let (Some(code), Some(entry_point)) = (record.text(field::CODE), record.text(field::ENTRY_POINT)) else {
            let message = "the record needs string fields `code` and `entry_point`";
            record.set_error(ErrorInfo::new(STAGE, "missing_field", message, false));
            return record;
        };
        let (code, entry_point) = (code.to_string(), entry_point.to_string());
        let context = PromptContext {
            code: &code,
            entry_point: &entry_point,
            function: record.text(field::FUNCTION).unwrap_or_default(),
            imports: record.get(field::IMPORTS).cloned().unwrap_or(json!([])),
            packages: record.get(field::PACKAGES).cloned().unwrap_or(json!([])),
        };
        let generation = match ask(&self.agent, "gen_tests", &context, self.samples).await {
            Ok(g) => g,
            Err(e) => {
                record.set_error(e.to_error(STAGE));
                return record;
            }
        };
        let (valid, meta) = self.read_samples(&generation, &entry_point);
        let rejected = meta.rejected.join(", ");
        let first_rejection = meta.rejected.first().cloned();
        record.put(field::GENERATION, &meta);
        let Some(first) = valid.first() else {
            let kind = first_rejection.unwrap_or_else(|| "no_choices".into());
            let message = format!("no usable test module in {} sample(s): {rejected}", generation.choices.len());
            record.set_error(ErrorInfo::new(STAGE, &kind, message, false));
            return record;
        };
        record.put(field::TESTS, first);
        if self.samples > 1 {
            record.put(field::TESTS_SAMPLES, &valid);
        }
        record
    }

    /// Step 3: the usable test modules of a generation, and its metadata.
    fn read_samples(&self, generation: &Generation, entry_point: &str) -> (Vec<String>, TestGeneration) {
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
                    let (clean, what) = clean_tests(&block, entry_point);
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
        let meta = TestGeneration {
            model: self.agent.client.settings.model.clone(),
            usage: Usage { prompt_tokens: generation.prompt_tokens, completion_tokens: generation.completion_tokens },
            latency_ms: generation.latency_ms,
            cache_hit: generation.cache_hits as usize == generation.choices.len(),
            attempts: generation.attempts,
            samples: self.samples,
            samples_valid: valid.len(),
            rejected,
            removed_from_tests: removed,
        };
        (valid, meta)
    }
}

impl Step for GenTestsStep {
    fn name(&self) -> &'static str {
        STAGE
    }

    fn process(self: Arc<Self>, record: Record) -> BoxFuture {
        Box::pin(async move { self.generate_tests(record).await })
    }

    fn settings(&self) -> Value {
        json!({"agent": self.agent.answer_settings("gen_tests"), "samples": self.samples})
    }

    fn tally(&self, out: &Record, counts: &mut Counts) {
        if let Some(g) = out.typed::<TestGeneration>(field::GENERATION) {
            counts.add_to(counter::VALID_TEST_MODULES, g.samples_valid as u64);
        }
    }

    fn resources(&self) -> Resources<'_> {
        Resources { agents: vec![("llm", &self.agent)], sandbox: None }
    }
}

pub fn run(ctx: &Context, args: &GenTestsArgs) -> Result<ExitCode> {
    let llm = llm_settings(ctx, &args.llm);
    let window = (llm.concurrency * 4).max(64);
    run_with_model(ctx, window, |out_dir| GenTestsStep::new(llm, args.samples.unwrap_or(1), out_dir))
}
