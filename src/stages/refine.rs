//! `unitcoder refine`: the refine agent (UnitCoder §3.2.3, Table 16) documents verified
//! functions, and nothing it does is trusted without re-verification.
//!
//! For each record, in input order:
//!   1. records without a `pass` verdict go through unchanged (`refine.refined = false`,
//!      reason `not_verified`);
//!   2. the model rewrites the function with a docstring (description, parameters, returns,
//!      raises, requirements, an example), brief comments and consistent style;
//!   3. the rewrite must define the same function with the same signature, be
//!      self-contained, keep exactly the same imports and have a docstring;
//!   4. it must pass the same tests in the sandbox;
//!   5. the `>>>` examples in its docstring run as doctests in the sandbox;
//!   6. all good: the refined code replaces the original (kept in `unrefined`); otherwise
//!      the verified original stays and `refine` says why (`refined: false`, reason).

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Result;
use clap::Args;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::cli::Context;
use crate::executor::{error_of, run_stage, BoxFuture, Counts, Record, Step};
use crate::llm::reply::{defines_function, pick_block};
use crate::llm::{Agent, LlmArgs};
use crate::sandbox::Sandbox;
use crate::stages::revise::{apply, docstring, signature, Reviser};
use crate::stages::sandbox_run::{check_json, llm_sandbox_window, resolve_settings, sandbox_report, verdict_status, RecordFields, SandboxRunArgs};

/// `[refine]` settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RefineSettings {
    /// Reject a rewrite without a docstring.
    pub require_docstring: bool,
    /// Run the docstring's `>>>` examples as doctests (a failing example rejects the rewrite).
    pub doctests: bool,
}

impl Default for RefineSettings {
    fn default() -> Self {
        Self { require_docstring: true, doctests: true }
    }
}

#[derive(Debug, Clone, Args, Default)]
pub struct RefineArgs {
    /// Accept rewrites whose docstring examples fail (they are still reported).
    #[arg(long)]
    pub no_doctests: bool,
    #[command(flatten)]
    pub llm: LlmArgs,
    #[command(flatten)]
    pub sandbox: SandboxRunArgs,
}

pub struct RefineStep {
    pub settings: RefineSettings,
    pub agent: Agent,
    pub sandbox: Arc<Sandbox>,
    pub fields: RecordFields,
    pub reviser: Arc<Reviser>,
}

/// A test module that runs the docstring examples of `entry_point` as doctests.
pub fn doctest_module(entry_point: &str) -> String {
    format!(
        r#"import doctest
import unittest


class TestCases(unittest.TestCase):
    def test_docstring_examples(self):
        finder = doctest.DocTestFinder(recurse=False)
        runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
        report = []
        examples = 0
        for test in finder.find({entry_point}, "{entry_point}", globs=dict(globals())):
            examples += len(test.examples)
            runner.run(test, out=report.append)
        self.assertGreater(examples, 0, "no examples found")
        self.assertEqual(runner.failures, 0, "".join(report)[-2000:])
"#
    )
}

fn not_refined(record: &mut Record, reason: &str, detail: impl Into<String>) {
    record.insert("refine".into(), json!({"refined": false, "reason": reason, "detail": detail.into()}));
}

impl RefineStep {
    pub fn new(ctx: &Context, args: &RefineArgs, sandbox: Arc<Sandbox>, out_dir: &std::path::Path) -> Result<RefineStep> {
        let mut settings = ctx.config.refine.clone();
        if args.no_doctests {
            settings.doctests = false;
        }
        let agent = Agent::new(ctx.llm_settings(&args.llm), out_dir)?;
        Ok(RefineStep { settings, agent, sandbox, fields: args.sandbox.fields.clone(), reviser: Arc::new(Reviser::new(&ctx.config.extract)?) })
    }

    async fn refine(self: Arc<Self>, mut record: Record) -> Record {
        // Step 1.
        if verdict_status(&record) != Some("pass") {
            not_refined(&mut record, "not_verified", "the record does not pass its tests");
            return record;
        }
        let text = |k: &str| record.get(k).and_then(Value::as_str).map(str::to_string);
        let (Some(code), Some(tests), Some(entry_point)) =
            (text(&self.fields.code_field), text(&self.fields.tests_field), text(&self.fields.entry_point_field))
        else {
            not_refined(&mut record, "missing_field", "the record needs code, tests and entry_point");
            return record;
        };
        let function = text("function").unwrap_or_else(|| code.clone());
        let Some(sig) = signature(&function, &entry_point) else {
            not_refined(&mut record, "no_function", format!("no top-level def {entry_point}"));
            return record;
        };
        // Step 2.
        let context = json!({"code": code, "tests": tests, "entry_point": entry_point, "signature": sig});
        let messages = match self.agent.prompts.render("refine", &context) {
            Ok(m) => m,
            Err(e) => {
                not_refined(&mut record, "prompt", format!("{e:#}"));
                return record;
            }
        };
        let reply = match self.agent.client.generate(&messages, 1).await {
            Ok(g) => match g.choices.into_iter().next() {
                Some(c) if c.finish_reason.as_deref() == Some("length") => {
                    not_refined(&mut record, "truncated", "the reply hit max_tokens");
                    return record;
                }
                Some(c) => c.text,
                None => {
                    not_refined(&mut record, "no_choices", "the model returned nothing");
                    return record;
                }
            },
            Err(e) => {
                record.insert(
                    "refine".into(),
                    json!({"refined": false, "reason": "llm_error", "detail": e.to_string(), "kind": e.kind(), "transient": e.transient()}),
                );
                return record;
            }
        };
        // Step 3.
        let checked = pick_block(&reply, &format!("def {entry_point}"), |suite| defines_function(suite, &entry_point))
            .map_err(|e| (e.kind(), e.to_string()))
            .and_then(|block| self.reviser.check(&block, &entry_point, &function).map_err(|r| (r.reason, r.detail)));
        let rewrite = match checked {
            Ok(r) => r,
            Err((reason, detail)) => {
                not_refined(&mut record, reason, detail);
                return record;
            }
        };
        let old_imports: Vec<Value> = record.get("imports").and_then(Value::as_array).cloned().unwrap_or_default();
        let mut before: Vec<&str> = old_imports.iter().filter_map(Value::as_str).collect();
        let mut after: Vec<&str> = rewrite.imports.iter().map(String::as_str).collect();
        before.sort_unstable();
        after.sort_unstable();
        if before != after {
            not_refined(&mut record, "imports_changed", format!("imports were {before:?}, now {after:?}"));
            return record;
        }
        let doc = docstring(&rewrite.function, &entry_point);
        if self.settings.require_docstring && doc.is_none() {
            not_refined(&mut record, "no_docstring", "the rewrite has no docstring");
            return record;
        }
        // Step 4.
        let verdict = check_json(self.sandbox.clone(), rewrite.code.clone(), tests.clone()).await;
        if verdict.get("status").and_then(Value::as_str) != Some("pass") {
            let msg = verdict.get("message").and_then(Value::as_str).unwrap_or("").to_string();
            record.insert("refine".into(), json!({"refined": false, "reason": "tests_failed", "detail": msg, "rejected_code": rewrite.code}));
            return record;
        }
        // Step 5.
        let examples = doc.as_deref().map(|d| d.lines().filter(|l| l.trim_start().starts_with(">>>")).count()).unwrap_or(0);
        let mut doctest = json!({"examples": examples});
        if examples > 0 {
            let v = check_json(self.sandbox.clone(), rewrite.code.clone(), doctest_module(&entry_point)).await;
            let passed = v.get("status").and_then(Value::as_str) == Some("pass");
            doctest["passed"] = json!(passed);
            if !passed {
                let detail =
                    v.get("failures").and_then(|f| f.get(0)).and_then(|f| f.get("message")).and_then(Value::as_str).unwrap_or("").to_string();
                if self.settings.doctests {
                    record.insert(
                        "refine".into(),
                        json!({"refined": false, "reason": "doctest_failed", "detail": detail, "rejected_code": rewrite.code}),
                    );
                    return record;
                }
                doctest["detail"] = json!(detail);
            }
        }
        // Step 6.
        apply(&mut record, &rewrite, "unrefined");
        record.insert("verdict".into(), verdict);
        record.insert("refine".into(), json!({"refined": true, "doctest": doctest}));
        record
    }
}

impl Step for RefineStep {
    fn name(&self) -> &'static str {
        "refine"
    }

    fn process(self: Arc<Self>, record: Record) -> BoxFuture {
        Box::pin(self.refine(record))
    }

    fn settings(&self) -> Value {
        json!({"refine": self.settings, "agent": self.agent.answer_settings("refine"), "sandbox": self.sandbox.settings, "fields": self.fields})
    }

    fn needs_retry(&self, out: &Record) -> bool {
        out.get("refine").and_then(|r| r.get("transient")).and_then(Value::as_bool) == Some(true)
    }

    fn tally(&self, out: &Record, counts: &mut Counts) {
        if error_of(out).is_some() {
            return;
        }
        let r = out.get("refine");
        if r.and_then(|r| r.get("refined")).and_then(Value::as_bool) == Some(true) {
            counts.bump("refined");
            if let Some(n) = r.and_then(|r| r.get("doctest")).and_then(|d| d.get("examples")).and_then(Value::as_u64) {
                *counts.outcomes.entry("doctest_examples".into()).or_default() += n;
            }
        } else {
            let reason = r.and_then(|r| r.get("reason")).and_then(Value::as_str).unwrap_or("unknown");
            counts.bump(format!("not_refined_{reason}"));
        }
        if verdict_status(out) == Some("pass") {
            counts.bump("verified");
        }
    }

    fn report(&self) -> Value {
        json!({"llm": self.agent.usage(), "sandbox": sandbox_report(&self.sandbox)})
    }

    fn budget_stopped(&self) -> bool {
        self.agent.budget_stopped()
    }
}

pub fn run(ctx: &Context, args: &RefineArgs) -> Result<ExitCode> {
    let out_dir = ctx.output_dir()?;
    let sandbox = Arc::new(Sandbox::start(resolve_settings(ctx, &args.sandbox))?);
    let step = Arc::new(RefineStep::new(ctx, args, sandbox, &out_dir)?);
    let window = llm_sandbox_window(step.agent.client.settings.concurrency, &step.sandbox);
    run_stage(ctx, step, window)
}
