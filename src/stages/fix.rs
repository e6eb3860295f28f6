//! `unitcoder fix`: iterative repair of functions that fail their tests (UnitCoder
//! Algorithm 1, phase 2, with the bug-fix agent of Table 15).
//!
//! For each record, in input order:
//!   1. a `pass` verdict goes straight through (`fix.status = not_needed`);
//!   2. a failure the code cannot be blamed for is classified and not sent to the model:
//!      a package missing from the sandbox, unusable tests, a `sandbox_error` that does not
//!      go away when checked again;
//!   3. otherwise, round r = 1..max_rounds: the model gets the current code, the tests and a
//!      failure report (formatted, deduplicated, truncated) and returns candidates
//!      (`samples` in round 1; later rounds split `samples` over the best failing
//!      candidates of the previous round, each with its own newest failure);
//!   4. each candidate is checked without running it (same name and signature,
//!      self-contained) and then verified in the sandbox, all in parallel;
//!   5. up to `keep` passing candidates are kept and the record is `fixed`; failing ones
//!      continue to the next round; after the last round the record is `unfixed`.
//!
//! Every candidate, its round and its verdict (or rejection) go into `fix.history`.

use std::collections::HashSet;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Result;
use clap::Args;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::cli::Context;
use crate::executor::{error_of, error_value, run_stage, BoxFuture, Counts, Record, Step};
use crate::llm::reply::{defines_function, pick_block};
use crate::llm::{Agent, LlmArgs};
use crate::sandbox::{Sandbox, Status};
use crate::stages::revise::{apply, signature, Reviser};
use crate::stages::sandbox_run::{check_json, llm_sandbox_window, resolve_settings, sandbox_report, verdict_status, RecordFields, SandboxRunArgs};

/// `[fix]` settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FixSettings {
    /// Repair rounds at most.
    pub max_rounds: u32,
    /// Candidates the model proposes per round.
    pub samples: u32,
    /// Passing candidates kept per record (the first becomes the record's code).
    pub keep: u32,
    /// Longest failure report sent to the model, in characters.
    pub report_chars: usize,
    /// Last traceback lines kept per distinct failure.
    pub traceback_lines: usize,
}

impl Default for FixSettings {
    fn default() -> Self {
        Self { max_rounds: 3, samples: 3, keep: 1, report_chars: 3000, traceback_lines: 8 }
    }
}

#[derive(Debug, Clone, Args, Default)]
pub struct FixArgs {
    /// Repair rounds at most [default: 3].
    #[arg(long)]
    pub max_rounds: Option<u32>,
    /// Candidates per round [default: 3].
    #[arg(long)]
    pub samples: Option<u32>,
    /// Passing candidates to keep [default: 1].
    #[arg(long)]
    pub keep: Option<u32>,
    #[command(flatten)]
    pub llm: LlmArgs,
    #[command(flatten)]
    pub sandbox: SandboxRunArgs,
}

pub fn resolve(ctx: &Context, args: &FixArgs) -> FixSettings {
    let mut s = ctx.config.fix.clone();
    if let Some(v) = args.max_rounds {
        s.max_rounds = v;
    }
    if let Some(v) = args.samples {
        s.samples = v;
    }
    if let Some(v) = args.keep {
        s.keep = v;
    }
    s.samples = s.samples.max(1);
    s.keep = s.keep.max(1);
    s
}

pub struct FixStep {
    pub settings: FixSettings,
    pub agent: Agent,
    pub sandbox: Arc<Sandbox>,
    pub fields: RecordFields,
    pub reviser: Arc<Reviser>,
}

/// One program under repair: its code (module) and its newest verdict.
#[derive(Clone)]
struct Attempt {
    code: String,
    rewrite: Option<crate::record::FunctionRecord>,
    verdict: Value,
}

fn tests_passed(v: &Value) -> u64 {
    v.get("tests_passed").and_then(Value::as_u64).unwrap_or(0)
}

impl FixStep {
    pub fn new(ctx: &Context, args: &FixArgs, sandbox: Arc<Sandbox>, out_dir: &std::path::Path) -> Result<FixStep> {
        let settings = resolve(ctx, args);
        let agent = Agent::new(ctx.llm_settings(&args.llm), out_dir)?;
        Ok(FixStep { settings, agent, sandbox, fields: args.sandbox.fields.clone(), reviser: Arc::new(Reviser::new(&ctx.config.extract)?) })
    }

    async fn fix(self: Arc<Self>, mut record: Record) -> Record {
        let text = |r: &Record, k: &str| r.get(k).and_then(Value::as_str).map(str::to_string);
        let (Some(code), Some(tests), Some(entry_point)) =
            (text(&record, &self.fields.code_field), text(&record, &self.fields.tests_field), text(&record, &self.fields.entry_point_field))
        else {
            record.insert("error".into(), error_value("fix", "missing_field", "the record needs code, tests and entry_point", false));
            return record;
        };
        let Some(mut verdict) = record.get("verdict").cloned() else {
            record.insert("error".into(), error_value("fix", "missing_field", "no verdict: run sandbox-run first", false));
            return record;
        };
        // Step 1–2: pass, or a failure the code cannot be blamed for.
        if verdict.get("status").and_then(Value::as_str) == Some(Status::SandboxError.as_str()) {
            verdict = check_json(self.sandbox.clone(), code.clone(), tests.clone()).await;
            record.insert("verdict".into(), verdict.clone());
        }
        let status = verdict.get("status").and_then(Value::as_str).unwrap_or("").to_string();
        if status == "pass" {
            record.insert("fix".into(), json!({"status": "not_needed"}));
            return record;
        }
        if status == Status::SandboxError.as_str() {
            record.insert("error".into(), error_value("fix", "sandbox_error", "the sandbox failed twice on this record", true));
            return record;
        }
        let packages: Vec<String> = record
            .get("packages")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|p| p.as_str().map(str::to_string)).collect())
            .unwrap_or_default();
        if let Some((kind, detail)) = environment_failure(&verdict, &packages) {
            record.insert("fix".into(), json!({"status": "not_attempted", "reason": kind, "detail": detail}));
            return record;
        }
        let function = text(&record, "function").unwrap_or_else(|| code.clone());
        let Some(sig) = signature(&function, &entry_point) else {
            record.insert(
                "fix".into(),
                json!({"status": "not_attempted", "reason": "no_function", "detail": format!("no top-level def {entry_point} in the record")}),
            );
            return record;
        };

        // Step 3–5: rounds.
        let s = &self.settings;
        let mut frontier = vec![Attempt { code: code.clone(), rewrite: None, verdict: verdict.clone() }];
        let mut history: Vec<Value> = Vec::new();
        let mut kept: Vec<(u32, Attempt)> = Vec::new();
        let mut seen_code: HashSet<String> = HashSet::from([code.clone()]);
        let mut sandbox_errors = 0u32;
        let mut usage = (0u64, 0u64);
        let mut rounds_used = 0;
        for round in 1..=s.max_rounds {
            rounds_used = round;
            let per_parent = (s.samples as usize).div_ceil(frontier.len()).max(1) as u32;
            let mut proposals: Vec<(usize, String)> = Vec::new();
            for (p, parent) in frontier.iter().enumerate() {
                let context = json!({
                    "code": parent.code, "tests": tests, "entry_point": entry_point, "signature": sig, "round": round,
                    "report": failure_report(&parent.verdict, s.report_chars, s.traceback_lines),
                });
                let messages = match self.agent.prompts.render("fix", &context) {
                    Ok(m) => m,
                    Err(e) => {
                        record.insert("error".into(), error_value("fix", "prompt", format!("{e:#}"), false));
                        return record;
                    }
                };
                match self.agent.client.generate(&messages, per_parent).await {
                    Ok(g) => {
                        usage.0 += g.prompt_tokens;
                        usage.1 += g.completion_tokens;
                        for c in g.choices {
                            proposals.push((p, c.text));
                        }
                    }
                    Err(e) => {
                        record.insert("fix".into(), json!({"status": "error", "rounds_used": round, "history": history}));
                        record.insert("error".into(), error_value("fix", e.kind(), e.to_string(), e.transient()));
                        return record;
                    }
                }
            }
            // Step 4: check each candidate; verify the valid ones in parallel.
            let mut to_verify = Vec::new();
            for (parent, reply) in proposals {
                let checked = pick_block(&reply, &format!("def {entry_point}"), |suite| defines_function(suite, &entry_point))
                    .map_err(|e| crate::stages::revise::Rejected { reason: e.kind(), detail: e.to_string() })
                    .and_then(|block| self.reviser.check(&block, &entry_point, &function));
                match checked {
                    Err(r) => history.push(json!({"round": round, "parent": parent, "candidate": reply_code(&reply), "rejected": r.reason, "detail": r.detail})),
                    Ok(rewrite) if !seen_code.insert(rewrite.code.clone()) => {
                        history.push(json!({"round": round, "parent": parent, "candidate": rewrite.code, "rejected": "duplicate", "detail": "same code as an earlier candidate"}))
                    }
                    Ok(rewrite) => to_verify.push((parent, rewrite)),
                }
            }
            // Started together: the sandbox pool runs them on all its workers at once.
            let handles: Vec<_> =
                to_verify.iter().map(|(_, r)| tokio::spawn(check_json(self.sandbox.clone(), r.code.clone(), tests.clone()))).collect();
            let mut verdicts = Vec::with_capacity(handles.len());
            for h in handles {
                verdicts.push(h.await.unwrap_or_else(|e| json!({"status": "sandbox_error", "message": format!("check task failed: {e}")})));
            }
            let mut failing = Vec::new();
            for ((parent, rewrite), v) in to_verify.into_iter().zip(verdicts) {
                let status = v.get("status").and_then(Value::as_str).unwrap_or("").to_string();
                history.push(json!({
                    "round": round, "parent": parent, "candidate": rewrite.code, "status": status,
                    "tests_passed": v.get("tests_passed"), "tests_run": v.get("tests_run"), "message": v.get("message"),
                }));
                let attempt = Attempt { code: rewrite.code.clone(), rewrite: Some(rewrite), verdict: v };
                match status.as_str() {
                    "pass" if kept.len() < s.keep as usize => kept.push((round, attempt)),
                    "pass" => {}
                    "sandbox_error" => sandbox_errors += 1,
                    _ => failing.push(attempt),
                }
            }
            if kept.len() >= s.keep as usize || (!kept.is_empty() && round == s.max_rounds) {
                break;
            }
            // The best failing candidates (most tests passed) carry on with their newest failure.
            failing.sort_by_key(|a| std::cmp::Reverse(tests_passed(&a.verdict)));
            failing.truncate(s.samples as usize);
            if failing.is_empty() {
                if kept.is_empty() && history.iter().all(|h| h.get("rejected").is_some()) && round < s.max_rounds {
                    // Every candidate was unusable: ask again from the same parents.
                    continue;
                }
                break;
            }
            frontier = failing;
        }

        let summary = |extra: Value| {
            let mut f =
                json!({"rounds_used": rounds_used, "candidates": history.len(), "usage": {"prompt_tokens": usage.0, "completion_tokens": usage.1}});
            if let (Some(f), Some(extra)) = (f.as_object_mut(), extra.as_object()) {
                f.extend(extra.clone());
            }
            f["history"] = json!(history);
            f
        };
        if let Some((round, best)) = kept.first().cloned() {
            if let Some(rewrite) = &best.rewrite {
                apply(&mut record, rewrite, "unfixed");
            }
            record.insert("verdict".into(), best.verdict.clone());
            let alternatives: Vec<Value> = kept.iter().skip(1).map(|(r, a)| json!({"round": r, "code": a.code})).collect();
            record.insert("fix".into(), summary(json!({"status": "fixed", "round": round, "alternatives": alternatives})));
        } else if sandbox_errors > 0 {
            record.insert("fix".into(), summary(json!({"status": "error"})));
            record.insert(
                "error".into(),
                error_value("fix", "sandbox_error", format!("{sandbox_errors} candidate checks ended in sandbox_error"), true),
            );
        } else {
            record.insert("fix".into(), summary(json!({"status": "unfixed"})));
        }
        record
    }
}

/// The code of a reply for the history (its first code block, else the reply).
fn reply_code(reply: &str) -> String {
    crate::llm::reply::code_blocks(reply).into_iter().next().unwrap_or_else(|| reply.to_string())
}

/// `No module named 'x.y'` → `x`.
fn missing_module(text: &str) -> Option<String> {
    let rest = text.split("No module named '").nth(1)?;
    let name = rest.split('\'').next()?;
    Some(name.split('.').next().unwrap_or(name).to_string())
}

/// Failures that changing the function cannot fix: (kind, detail).
pub fn environment_failure(verdict: &Value, packages: &[String]) -> Option<(String, String)> {
    let status = verdict.get("status").and_then(Value::as_str).unwrap_or("");
    let failures = verdict.get("failures").and_then(Value::as_array).cloned().unwrap_or_default();
    for f in &failures {
        let message =
            format!("{} {}", f.get("message").and_then(Value::as_str).unwrap_or(""), f.get("traceback").and_then(Value::as_str).unwrap_or(""));
        if let Some(module) = missing_module(&message) {
            let phase = f.get("test").and_then(Value::as_str).unwrap_or("");
            if packages.iter().any(|p| p == &module) || phase == "code" {
                return Some(("missing_package".into(), format!("`{module}` is not installed in the sandbox")));
            }
            return Some(("tests_unusable".into(), format!("the tests import `{module}`, which does not exist here")));
        }
    }
    if status == Status::NoTests.as_str() {
        return Some(("tests_unusable".into(), "the test module has no test methods".into()));
    }
    if let Some(f) =
        failures.iter().find(|f| f.get("test").and_then(Value::as_str) == Some("tests") && f.get("kind").and_then(Value::as_str) == Some("error"))
    {
        return Some(("tests_unusable".into(), format!("the test module does not load: {}", f.get("message").and_then(Value::as_str).unwrap_or(""))));
    }
    if failures.iter().any(|f| matches!(f.get("kind").and_then(Value::as_str), Some("tamper" | "forged_report"))) {
        return Some(("tampering".into(), "the code interfered with the test harness".into()));
    }
    None
}

/// A failure report for the model: status line, failures grouped by identical message,
/// traceback tails, addresses and temp paths normalised (so the same failure always gives
/// the same prompt, which keeps the response cache effective), truncated to `max_chars`.
pub fn failure_report(verdict: &Value, max_chars: usize, traceback_lines: usize) -> String {
    let get = |k: &str| verdict.get(k).and_then(Value::as_u64).unwrap_or(0);
    let status = verdict.get("status").and_then(Value::as_str).unwrap_or("unknown");
    let mut out = format!("Status: {status} ({} of {} tests passed)\n", get("tests_passed"), get("tests_found"));
    if let Some(m) = verdict.get("message").and_then(Value::as_str).filter(|m| !m.is_empty()) {
        out.push_str(&format!("Summary: {}\n", normalize(m)));
    }
    let failures = verdict.get("failures").and_then(Value::as_array).cloned().unwrap_or_default();
    let mut groups: Vec<(String, String, Vec<String>, String)> = Vec::new(); // kind, message, tests, traceback
    for f in &failures {
        let field = |k: &str| f.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let (kind, message, test) = (field("kind"), normalize(&field("message")), field("test"));
        match groups.iter_mut().find(|g| g.0 == kind && g.1 == message) {
            Some(g) => g.2.push(test),
            None => {
                let tb = normalize(&field("traceback"));
                let lines: Vec<&str> = tb.lines().collect();
                let tail = lines[lines.len().saturating_sub(traceback_lines)..].join("\n");
                groups.push((kind, message, vec![test], tail));
            }
        }
    }
    for (kind, message, tests, traceback) in &groups {
        out.push_str(&format!("\n{} in {}:\n  {}\n", kind.to_uppercase(), tests.join(", "), message));
        if !traceback.is_empty() {
            out.push_str(&format!("  Traceback (last lines):\n{}\n", traceback.lines().map(|l| format!("    {l}")).collect::<Vec<_>>().join("\n")));
        }
    }
    if groups.is_empty() {
        if let Some(o) = verdict.get("output").and_then(Value::as_str).filter(|o| !o.is_empty()) {
            out.push_str(&format!("\nOutput:\n{}\n", normalize(o)));
        }
    }
    if out.len() > max_chars {
        let mut cut = max_chars;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
        out.push_str("\n… (report truncated)");
    }
    out
}

/// Remove run-specific noise: object addresses and per-check temp directories.
fn normalize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < text.len() {
        if text[i..].starts_with("0x") {
            let hex = bytes[i + 2..].iter().take_while(|b| b.is_ascii_hexdigit()).count();
            if hex >= 6 {
                out.push_str("0x…");
                i += 2 + hex;
                continue;
            }
        }
        if text[i..].starts_with("/tmp/check_") {
            let name = bytes[i + 11..].iter().take_while(|b| b.is_ascii_alphanumeric() || **b == b'_').count();
            out.push_str("/tmp/check");
            i += 11 + name;
            continue;
        }
        let ch = text[i..].chars().next().unwrap_or(' ');
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

impl Step for FixStep {
    fn name(&self) -> &'static str {
        "fix"
    }

    fn process(self: Arc<Self>, record: Record) -> BoxFuture {
        Box::pin(self.fix(record))
    }

    fn settings(&self) -> Value {
        json!({"fix": self.settings, "agent": self.agent.answer_settings("fix"), "sandbox": self.sandbox.settings, "fields": self.fields})
    }

    fn tally(&self, out: &Record, counts: &mut Counts) {
        if error_of(out).is_some() {
            return;
        }
        let fix = out.get("fix");
        let status = fix.and_then(|f| f.get("status")).and_then(Value::as_str).unwrap_or("none");
        counts.bump(format!("fix_{status}"));
        if status == "fixed" {
            if let Some(r) = fix.and_then(|f| f.get("round")).and_then(Value::as_u64) {
                counts.bump(format!("fixed_in_round_{r}"));
            }
        }
        if status == "not_attempted" {
            if let Some(r) = fix.and_then(|f| f.get("reason")).and_then(Value::as_str) {
                counts.bump(format!("not_attempted_{r}"));
            }
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

pub fn run(ctx: &Context, args: &FixArgs) -> Result<ExitCode> {
    let out_dir = ctx.output_dir()?;
    let sandbox = Arc::new(Sandbox::start(resolve_settings(ctx, &args.sandbox))?);
    let step = Arc::new(FixStep::new(ctx, args, sandbox, &out_dir)?);
    let window = llm_sandbox_window(step.agent.client.settings.concurrency, &step.sandbox);
    run_stage(ctx, step, window)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_groups_normalises_and_truncates() {
        let v = json!({"status": "fail", "tests_found": 3, "tests_passed": 1, "message": "2 of 3 tests did not pass",
            "failures": [
                {"test": "TestCases.test_a", "kind": "fail", "message": "AssertionError: <obj at 0x7f3a2b1c9d10> != 1", "traceback": "Traceback (most recent call last):\n  File \"/tmp/check_ab12cd/test_solution.py\", line 4, in test_a\nAssertionError"},
                {"test": "TestCases.test_b", "kind": "fail", "message": "AssertionError: <obj at 0x7f00000c9d10> != 1", "traceback": "x"}]});
        let r = failure_report(&v, 10_000, 8);
        assert!(r.contains("FAIL in TestCases.test_a, TestCases.test_b"), "{r}");
        assert!(!r.contains("0x7f") && r.contains("/tmp/check/test_solution.py"), "{r}");
        assert!(failure_report(&v, 60, 8).ends_with("(report truncated)"));
    }

    #[test]
    fn environment_failures_are_classified() {
        let missing =
            json!({"status": "error", "failures": [{"test": "code", "kind": "error", "message": "ModuleNotFoundError: No module named 'torch.nn'"}]});
        assert_eq!(environment_failure(&missing, &["torch".into()]).unwrap().0, "missing_package");
        let hallucinated = json!({"status": "error", "failures": [{"test": "tests", "kind": "error", "message": "ModuleNotFoundError: No module named 'solution'"}]});
        assert_eq!(environment_failure(&hallucinated, &[]).unwrap().0, "tests_unusable");
        let real = json!({"status": "fail", "failures": [{"test": "TestCases.test_a", "kind": "fail", "message": "AssertionError: 1 != 2"}]});
        assert!(environment_failure(&real, &[]).is_none());
        assert_eq!(environment_failure(&json!({"status": "no_tests", "failures": []}), &[]).unwrap().0, "tests_unusable");
    }
}
