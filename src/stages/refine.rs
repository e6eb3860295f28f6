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

use crate::context::Context;
use crate::executor::{BoxFuture, Counts, Record, Resources, Step};
use crate::llm::reply::{defines_function, pick_block};
use crate::llm::{Agent, LlmArgs, LlmSettings};
use crate::python::functions::{docstring, signature};
use crate::record::{counter, field, DoctestOutcome, FunctionRecord, RecordExt, RefineOutcome, Status};
use crate::sandbox::Sandbox;
use crate::sandbox::{AdequacyArgs, AdequacySettings};
use crate::stages::common::rewrite::replace_program;
use crate::stages::common::{
    adequacy_settings, ask, llm_settings, rewrite_check, run_with_sandbox, tally_adequacy, RecordFields, RewriteCheck, SandboxFlags, StepError,
};

const STAGE: &str = "refine";

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

impl RefineSettings {
    /// `[refine]` with flags on top.
    pub fn resolve(ctx: &Context, no_doctests: bool) -> Result<RefineSettings> {
        let mut s: RefineSettings = ctx.config.section(STAGE)?;
        s.doctests &= !no_doctests;
        Ok(s)
    }
}

#[derive(Debug, Clone, Args, Default)]
#[command(next_help_heading = "Refine")]
pub struct RefineArgs {
    /// Accept rewrites whose docstring examples fail (they are still reported).
    #[arg(long)]
    pub no_doctests: bool,
    #[command(flatten)]
    pub llm: LlmArgs,
    #[command(flatten)]
    pub sandbox: SandboxFlags,
    #[command(flatten)]
    pub adequacy: AdequacyArgs,
}

pub struct RefineStep {
    pub settings: RefineSettings,
    pub agent: Agent,
    pub sandbox: Arc<Sandbox>,
    pub fields: RecordFields,
    pub rewrite_check: Arc<RewriteCheck>,
    /// How the rewrite's pass is assessed (it is the record's final verdict).
    pub adequacy: AdequacySettings,
}

/// What the refine prompt sees.
#[derive(Serialize)]
struct RefinePrompt<'a> {
    code: &'a str,
    tests: &'a str,
    entry_point: &'a str,
    signature: &'a str,
}

/// The outcome of a record that keeps its verified original.
fn no(reason: &str, detail: impl Into<String>) -> RefineOutcome {
    RefineOutcome::not_refined(reason, detail)
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

impl RefineStep {
    pub fn new(
        settings: RefineSettings,
        llm: LlmSettings,
        sandbox: Arc<Sandbox>,
        fields: RecordFields,
        rewrite_check: Arc<RewriteCheck>,
        adequacy: AdequacySettings,
        out_dir: &std::path::Path,
    ) -> Result<RefineStep> {
        Ok(RefineStep { settings, agent: Agent::new(llm, out_dir)?, sandbox, fields, rewrite_check, adequacy })
    }

    async fn refine(self: Arc<Self>, mut record: Record) -> Record {
        let outcome = self.try_refine(&mut record).await.unwrap_or_else(|o| o);
        record.put(field::REFINE, &outcome);
        record
    }

    /// Steps 1–6; `Err` is the outcome of a record that keeps its verified original.
    // The Err is the record's outcome itself, built once per record: boxing it buys nothing.
    #[allow(clippy::result_large_err)]
    async fn try_refine(&self, record: &mut Record) -> Result<RefineOutcome, RefineOutcome> {
        // Step 1.
        if !record.verified() {
            return Err(no("not_verified", "the record does not pass its tests"));
        }
        let fields = &self.fields;
        let texts = (record.text(&fields.code_field), record.text(&fields.tests_field), record.text(&fields.entry_point_field));
        let (Some(code), Some(tests), Some(entry_point)) = texts else {
            return Err(no("missing_field", "the record needs code, tests and entry_point"));
        };
        let (code, tests, entry_point) = (code.to_string(), tests.to_string(), entry_point.to_string());
        let function = record.text(field::FUNCTION).unwrap_or(&code).to_string();
        let sig = signature(&function, &entry_point).ok_or_else(|| no("no_function", format!("no top-level def {entry_point}")))?;
        // Step 2.
        let reply = self.ask_rewrite(&RefinePrompt { code: &code, tests: &tests, entry_point: &entry_point, signature: &sig }).await?;
        // Step 3.
        let rewrite = pick_block(&reply, &format!("def {entry_point}"), |suite| defines_function(suite, &entry_point))
            .map_err(StepError::from)
            .and_then(|block| self.rewrite_check.admit(&block, &entry_point, &function).map_err(StepError::from))
            .map_err(|e| no(e.kind(), e.to_string()))?;
        let mut before = record.strings(field::IMPORTS);
        let mut after = rewrite.imports.clone();
        before.sort_unstable();
        after.sort_unstable();
        if before != after {
            return Err(no("imports_changed", format!("imports were {before:?}, now {after:?}")));
        }
        let doc = docstring(&rewrite.function, &entry_point);
        if self.settings.require_docstring && doc.is_none() {
            return Err(no("no_docstring", "the rewrite has no docstring"));
        }
        // Step 4.
        let verdict = self.sandbox.verify_async(rewrite.code.clone(), tests, Some(entry_point.clone()), self.adequacy.clone()).await;
        if verdict.status != Status::Pass {
            return Err(RefineOutcome { rejected_code: Some(rewrite.code), ..no("tests_failed", verdict.message) });
        }
        // Step 5.
        let doctest = self.run_doctests(doc.as_deref(), &rewrite, &entry_point).await?;
        // Step 6.
        replace_program(record, &rewrite, field::BEFORE_REFINE);
        record.put(field::VERDICT, &verdict);
        Ok(RefineOutcome::refined(doctest))
    }

    /// Step 2: the model's rewrite (one sample).
    #[allow(clippy::result_large_err)]
    async fn ask_rewrite(&self, context: &RefinePrompt<'_>) -> Result<String, RefineOutcome> {
        let generation = ask(&self.agent, "refine", context, 1).await.map_err(|e| match e {
            StepError::Llm(e) => RefineOutcome { kind: Some(e.kind().into()), transient: Some(e.transient()), ..no("llm_error", e.to_string()) },
            other => no("prompt", other.to_string()),
        })?;
        match generation.choices.into_iter().next() {
            Some(c) if c.finish_reason.as_deref() == Some("length") => Err(no("truncated", "the reply hit max_tokens")),
            Some(c) => Ok(c.text),
            None => Err(no("no_choices", "the model returned nothing")),
        }
    }

    #[allow(clippy::result_large_err)]
    /// Step 5: the docstring's examples as doctests (a failure rejects the rewrite unless
    /// doctests are only reported).
    async fn run_doctests(&self, doc: Option<&str>, rewrite: &FunctionRecord, entry_point: &str) -> Result<DoctestOutcome, RefineOutcome> {
        let examples = doc.map(|d| d.lines().filter(|l| l.trim_start().starts_with(">>>")).count()).unwrap_or(0);
        let mut outcome = DoctestOutcome { examples, passed: None, detail: None };
        if examples == 0 {
            return Ok(outcome);
        }
        let v = self.sandbox.check_async(rewrite.code.clone(), doctest_module(entry_point)).await;
        let passed = v.status == Status::Pass;
        outcome.passed = Some(passed);
        if !passed {
            let detail = v.failures.first().map(|f| f.message.clone()).unwrap_or_default();
            if self.settings.doctests {
                return Err(RefineOutcome { rejected_code: Some(rewrite.code.clone()), ..RefineOutcome::not_refined("doctest_failed", detail) });
            }
            outcome.detail = Some(detail);
        }
        Ok(outcome)
    }
}

impl Step for RefineStep {
    fn name(&self) -> &'static str {
        STAGE
    }

    fn process(self: Arc<Self>, record: Record) -> BoxFuture {
        Box::pin(self.refine(record))
    }

    fn settings(&self) -> Value {
        json!({"refine": self.settings, "agent": self.agent.answer_settings("refine"), "sandbox": self.sandbox.settings, "fields": self.fields})
    }

    fn needs_retry(&self, out: &Record) -> bool {
        out.typed::<RefineOutcome>(field::REFINE).and_then(|r| r.transient) == Some(true)
    }

    fn tally(&self, out: &Record, counts: &mut Counts) {
        if out.error().is_some() {
            return;
        }
        match out.typed::<RefineOutcome>(field::REFINE) {
            Some(r) if r.refined => {
                counts.bump(counter::REFINED);
                if let Some(d) = r.doctest {
                    counts.add_to(counter::DOCTEST_EXAMPLES, d.examples as u64);
                }
            }
            r => counts.bump(counter::not_refined(r.as_ref().and_then(|r| r.reason.as_deref()).unwrap_or("unknown"))),
        }
        tally_adequacy(out, counts);
        if out.verified() {
            counts.bump(counter::VERIFIED);
        }
    }

    fn resources(&self) -> Resources<'_> {
        Resources { agents: vec![("llm", &self.agent)], sandbox: Some(&self.sandbox) }
    }
}

pub fn run(ctx: &Context, args: &RefineArgs) -> Result<ExitCode> {
    let settings = RefineSettings::resolve(ctx, args.no_doctests)?;
    let llm = llm_settings(ctx, &args.llm);
    let check = rewrite_check(ctx)?;
    let fields = args.sandbox.fields.clone();
    let adequacy = adequacy_settings(ctx, &args.adequacy);
    run_with_sandbox(ctx, llm.concurrency, args.sandbox.settings(ctx), |sandbox, out_dir| {
        RefineStep::new(settings, llm, sandbox, fields, check, adequacy, out_dir)
    })
}
