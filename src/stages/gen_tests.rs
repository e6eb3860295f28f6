//! `unitcoder gen-tests`: an LLM writes a `unittest` `TestCases` class for each extracted
//! function (UnitCoder §3.1.2).
//!
//! For each record, streamed in input order:
//!   1. import its program once in the sandbox: a program that cannot import becomes
//!      `missing_package` / `import_error` without a model call (`--no-import-check` skips);
//!   2. render the `gen_tests` prompt with the function's runnable module and ask the model
//!      for `--samples` completions (cached answers are not paid twice);
//!   3. take from each the fenced Python block with a `unittest.TestCase` subclass (any
//!      name; renamed to `TestCases`) with ≥ 1 `test*` method — from a reply cut by the
//!      token limit only a block whose closing fence arrived — and drop imports of the
//!      function under test;
//!   4. reject modules that do not test the function (`python::test_module`: they define
//!      or mock it, never call it, or assert nothing about its results), then run each
//!      remaining one once in the sandbox and reject it when no test made the function run
//!      or the module itself does not import (`--no-call-check` skips);
//!   5. when every sample was unusable, ask again (`[gen-tests] retries`) with the reasons
//!      in the prompt and a new sampling seed, so the retry is a new request;
//!   6. write the record with `tests` (the first usable sample; all usable ones in
//!      `tests_samples` when more were asked for), the held-out split of its test methods
//!      (`held_out_tests`, `[fix] held_out`) and `generation` metadata — or with an
//!      `error` {stage, kind, message}. Never dropped.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Result;
use clap::Args;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::context::Context;
use crate::executor::{run_stage, BoxFuture, Counts, Record, Resources, Step};
use crate::llm::reply::{clean_tests, code_blocks, complete_blocks, defines_test_cases, pick_from};
use crate::llm::{Agent, Generation, LlmArgs, LlmSettings};
use crate::python::test_module::{self, choose_held_out};
use crate::record::{counter, field, ErrorInfo, RecordExt, Status, TestGeneration, Usage};
use crate::sandbox::calls::CallOptions;
use crate::sandbox::testcount::{count_tests, test_plan};
use crate::sandbox::{Sandbox, SandboxArgs};
use crate::stages::common::{ask_seeded, distinct, llm_settings, retry_seed};
use crate::stages::fix::{missing_module, FixSettings};

const STAGE: &str = "gen-tests";

/// `[gen-tests]` settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GenTestsSettings {
    /// Test modules sampled per function.
    pub samples: u32,
    /// Further requests when every sample of a request was unusable.
    pub retries: u32,
    /// Import each program in the sandbox before asking for its tests.
    pub import_check: bool,
    /// Run each generated module once and reject it when no test calls the function.
    pub call_check: bool,
}

impl Default for GenTestsSettings {
    fn default() -> Self {
        Self { samples: 1, retries: 1, import_check: true, call_check: true }
    }
}

#[derive(Debug, Clone, Args, Default)]
#[command(next_help_heading = "Test generation")]
pub struct GenTestsArgs {
    #[command(flatten)]
    pub llm: LlmArgs,
    /// Test modules to sample per function [default: 1].
    #[arg(long)]
    pub samples: Option<u32>,
    /// Do not import programs in the sandbox before asking for their tests.
    #[arg(long)]
    pub no_import_check: bool,
    /// Do not run generated test modules to see that they call the function.
    #[arg(long)]
    pub no_call_check: bool,
    #[command(flatten)]
    pub sandbox: SandboxArgs,
}

impl GenTestsSettings {
    /// `[gen-tests]` with the flags on top.
    pub fn resolve(ctx: &Context, samples: Option<u32>, no_import_check: bool, no_call_check: bool) -> Result<GenTestsSettings> {
        let mut s: GenTestsSettings = ctx.config.section(STAGE)?;
        s.samples = samples.unwrap_or(s.samples).max(1);
        s.import_check &= !no_import_check;
        s.call_check &= !no_call_check;
        Ok(s)
    }
}

/// What the prompt sees of a record.
#[derive(Serialize)]
struct PromptContext<'a> {
    code: &'a str,
    entry_point: &'a str,
    function: &'a str,
    imports: Value,
    packages: Value,
    /// On a retry: the try number (2, 3, ...) and why the previous replies were unusable.
    attempt: u32,
    previous_problems: Vec<String>,
}

/// How the held-out tests are chosen (`[fix] held_out`, `held_out_seed`).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct HeldOut {
    pub fraction: f64,
    pub seed: u64,
}

/// The gen-tests step: one record in, the record with `tests` (or an `error`) out.
pub struct GenTestsStep {
    pub agent: Agent,
    pub settings: GenTestsSettings,
    pub held_out: HeldOut,
    /// For the import and call checks (`None`: both off).
    pub sandbox: Option<Arc<Sandbox>>,
}

/// The samples of all tries of one record.
#[derive(Default)]
struct Samples {
    valid: Vec<String>,
    rejected: Vec<String>,
    removed: Vec<String>,
    renamed: Option<String>,
    truncated_used: Vec<String>,
}

impl GenTestsStep {
    pub fn new(
        llm: LlmSettings,
        settings: GenTestsSettings,
        held_out: HeldOut,
        sandbox: Option<Arc<Sandbox>>,
        out_dir: &Path,
    ) -> Result<GenTestsStep> {
        let sandbox = sandbox.filter(|_| settings.import_check || settings.call_check);
        Ok(GenTestsStep { agent: Agent::new(llm, out_dir)?, settings, held_out, sandbox })
    }

    /// Steps 1–6 for one record.
    async fn generate_tests(&self, mut record: Record) -> Record {
        let (Some(code), Some(entry_point)) = (record.text(field::CODE), record.text(field::ENTRY_POINT)) else {
            let message = "the record needs string fields `code` and `entry_point`";
            record.set_error(ErrorInfo::new(STAGE, "missing_field", message, false));
            return record;
        };
        let (code, entry_point) = (code.to_string(), entry_point.to_string());
        if let Some(error) = self.import_failure(&code, &entry_point, &record.strings(field::PACKAGES)).await {
            record.set_error(error);
            return record;
        }
        let mut samples = Samples::default();
        let mut usage = Usage::default();
        let (mut latency_ms, mut attempts, mut hits, mut asked, mut tries) = (0, 0, 0, 0, 0);
        for attempt in 0..=self.settings.retries {
            let context = PromptContext {
                code: &code,
                entry_point: &entry_point,
                function: record.text(field::FUNCTION).unwrap_or_default(),
                imports: record.get(field::IMPORTS).cloned().unwrap_or(json!([])),
                packages: record.get(field::PACKAGES).cloned().unwrap_or(json!([])),
                attempt: attempt + 1,
                previous_problems: distinct(samples.rejected.iter().cloned()),
            };
            let seed = retry_seed(self.agent.client.settings.seed, attempt);
            let generation = match ask_seeded(&self.agent, "gen_tests", &context, self.settings.samples, seed).await {
                Ok(g) => g,
                Err(e) => {
                    record.set_error(e.to_error(STAGE));
                    return record;
                }
            };
            tries += 1;
            usage.add(generation.prompt_tokens, generation.completion_tokens, generation.tokens_estimated);
            latency_ms += generation.latency_ms;
            attempts += generation.attempts;
            hits += generation.cache_hits as usize;
            asked += generation.choices.len();
            self.read_samples(&generation, &code, &entry_point, &mut samples).await;
            if !samples.valid.is_empty() {
                break;
            }
        }
        let meta = TestGeneration {
            model: self.agent.client.settings.model.clone(),
            usage,
            latency_ms,
            cache_hit: hits == asked,
            attempts,
            samples: self.settings.samples,
            samples_valid: samples.valid.len(),
            rejected: samples.rejected.clone(),
            removed_from_tests: samples.removed,
            renamed_class: samples.renamed,
            truncated_used: samples.truncated_used,
            tries,
        };
        record.put(field::GENERATION, &meta);
        let Some(first) = samples.valid.first() else {
            let kind = samples.rejected.first().cloned().unwrap_or_else(|| "no_choices".into());
            let message = format!("no usable test module in {asked} sample(s) over {tries} request(s): {}", samples.rejected.join(", "));
            record.set_error(ErrorInfo::new(STAGE, &kind, message, false));
            return record;
        };
        record.put(field::TESTS, first);
        let key = record.text(field::ID).map(str::to_string).unwrap_or_else(|| crate::hash::content_id(&code));
        let names = test_plan(first).map(|p| p.required).unwrap_or_default();
        record.put(field::HELD_OUT_TESTS, &choose_held_out(&names, self.held_out.fraction, &key, self.held_out.seed));
        if self.settings.samples > 1 {
            record.put(field::TESTS_SAMPLES, &samples.valid);
        }
        record
    }

    /// Step 1: why the program cannot even be imported in the sandbox, as the record's
    /// error (`None`: it imports, or the check is off or could not run).
    async fn import_failure(&self, code: &str, entry_point: &str, packages: &[String]) -> Option<ErrorInfo> {
        let sandbox = self.sandbox.as_ref().filter(|_| self.settings.import_check)?;
        let opts = CallOptions { timeout: sandbox.settings.timeout, fresh_child_per_input: false };
        let result = sandbox.call_async(code.to_string(), entry_point.to_string(), Vec::new(), opts).await;
        if let Some(why) = result.tampered {
            return Some(ErrorInfo::new(STAGE, "policy_rejected", format!("the program cannot run in the sandbox: {why}"), false));
        }
        let message = result.import_error?;
        let kind = match missing_module(&message) {
            Some(m) if packages.iter().any(|p| p == &m) || !message.contains("ImportError: cannot import") => "missing_package",
            _ => "import_error",
        };
        Some(ErrorInfo::new(STAGE, kind, format!("the program does not import in the sandbox (no model call made): {message}"), false))
    }

    /// Steps 3–4: the usable test modules of one generation, added to `out`.
    async fn read_samples(&self, generation: &Generation, code: &str, entry_point: &str, out: &mut Samples) {
        let max_tokens = u64::from(self.agent.client.settings.max_tokens);
        let per_choice = generation.completion_tokens / generation.choices.len().max(1) as u64;
        for choice in &generation.choices {
            let truncated = choice.finish_reason.as_deref() == Some("length");
            // Without per-choice usage (cached replies) a cut reply is taken as the model's.
            let cause = if per_choice > 0 && per_choice + 16 < max_tokens { "context" } else { "max_tokens" };
            let blocks = if truncated { complete_blocks(&choice.text) } else { code_blocks(&choice.text) };
            if truncated && blocks.is_empty() {
                out.rejected.push(format!("truncated_{cause}"));
                continue;
            }
            let block = match pick_from(blocks, "a unittest.TestCase class with a test method", defines_test_cases) {
                Ok(b) => b,
                Err(e) => {
                    out.rejected.push(if truncated { format!("truncated_{cause}") } else { e.kind().into() });
                    continue;
                }
            };
            let (block, renamed) = match test_module::rename_test_class(&block) {
                Some((renamed, old)) => (renamed, Some(old)),
                None => (block, None),
            };
            let (clean, removed) = clean_tests(&block, entry_point);
            if !matches!(count_tests(&clean), Ok(n) if n > 0) {
                out.rejected.push("no_test_methods".into());
                continue;
            }
            if let Err(f) = test_module::check(&clean, entry_point) {
                out.rejected.push(f.reason.into());
                continue;
            }
            if let Some(reason) = self.call_check(code, &clean, entry_point).await {
                out.rejected.push(reason);
                continue;
            }
            out.removed.extend(removed);
            out.renamed = out.renamed.take().or(renamed);
            if truncated {
                out.truncated_used.push(cause.into());
            }
            out.valid.push(clean);
        }
    }

    /// Step 4, dynamic half: `Some(reason)` when the module, run once, never made the
    /// function run (or the static policy refuses it).
    async fn call_check(&self, code: &str, tests: &str, entry_point: &str) -> Option<String> {
        let sandbox = self.sandbox.as_ref().filter(|_| self.settings.call_check)?;
        let v = sandbox.check_calls_async(code.to_string(), tests.to_string(), entry_point.to_string()).await;
        match (v.status, v.reason.as_deref(), v.location.as_deref()) {
            (Status::Rejected, Some("function_not_called"), _) => Some("function_not_called".into()),
            (Status::Rejected, Some(rule), Some(place)) if place.starts_with("tests") => Some(format!("policy_{rule}")),
            // The module itself does not import (a hallucinated module, a syntax the
            // sandbox's Python lacks): no fix of the function can help.
            (Status::Error, _, _) if v.failures.iter().any(|f| f.test == "tests") => Some("tests_do_not_load".into()),
            _ => None,
        }
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
        json!({"agent": self.agent.answer_settings("gen_tests"), "gen_tests": self.settings, "held_out": self.held_out})
    }

    fn tally(&self, out: &Record, counts: &mut Counts) {
        if let Some(g) = out.typed::<TestGeneration>(field::GENERATION) {
            counts.add_to(counter::VALID_TEST_MODULES, g.samples_valid as u64);
            for reason in &g.rejected {
                counts.bump(counter::test_module_rejected(reason));
            }
            if g.renamed_class.is_some() {
                counts.bump("tests_class_renamed");
            }
            if !g.truncated_used.is_empty() {
                counts.bump("tests_truncated_used");
            }
            if g.tries > 1 {
                counts.bump("tests_retried");
            }
        }
        if !out.strings(field::HELD_OUT_TESTS).is_empty() {
            counts.bump("tests_with_held_out");
        }
    }

    fn resources(&self) -> Resources<'_> {
        Resources { agents: vec![("llm", &self.agent)], sandbox: self.sandbox.as_deref() }
    }
}

/// `[fix] held_out` and `held_out_seed`, which gen-tests applies.
pub fn held_out(ctx: &Context) -> Result<HeldOut> {
    let fix = FixSettings::resolve(ctx, None, None, None)?;
    Ok(HeldOut { fraction: fix.held_out, seed: fix.held_out_seed })
}

pub fn run(ctx: &Context, args: &GenTestsArgs) -> Result<ExitCode> {
    let llm = llm_settings(ctx, &args.llm);
    let settings = GenTestsSettings::resolve(ctx, args.samples, args.no_import_check, args.no_call_check)?;
    let window = (llm.concurrency * 4).max(64);
    let out_dir = ctx.output_dir()?;
    let sandbox = if settings.import_check || settings.call_check {
        Some(Arc::new(Sandbox::start(args.sandbox.resolve(&ctx.config.sandbox, ctx.jobs))?))
    } else {
        None
    };
    let step = GenTestsStep::new(llm, settings, held_out(ctx)?, sandbox, &out_dir)?;
    run_stage(ctx, Arc::new(step), window)
}
