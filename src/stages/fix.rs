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
//!      self-contained, not gaming the tests: `python::gaming`, the sandbox's static
//!      policy) and then verified in the sandbox against *all* tests, all in parallel;
//!   5. a passing candidate whose results on inputs outside the tests collapse to one
//!      constant where the original's varied is rejected (`constant_output`); up to `keep`
//!      passing candidates are kept and the record is `fixed`; failing ones continue to
//!      the next round; after the last round the record is `unfixed`.
//!
//! The prompt shows only the visible tests and their failures: the held-out ones
//! (`held_out_tests`, chosen by gen-tests or here, `[fix] held_out`) must pass without
//! having been seen, and a candidate that passes the visible tests but not the held-out
//! ones is marked `overfit` in the history. When every candidate of a round was unusable,
//! the next request names the problems and uses a new sampling seed.
//!
//! Every candidate, its round and its verdict (or rejection) go into `fix.history`.

use std::collections::HashSet;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Result;
use clap::Args;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::context::Context;
use crate::executor::{BoxFuture, Counts, Record, Resources, Step};
use crate::llm::reply::{code_blocks, defines_function, pick_block};
use crate::llm::{Agent, LlmArgs, LlmSettings};
use crate::python::functions::signature;
use crate::python::gaming::{self, probe_inputs};
use crate::python::test_module::{choose_held_out, without_tests};
use crate::record::{
    counter, field, AttemptOutcome, ErrorInfo, FixAlternative, FixAttempt, FixOutcome, FixStatus, FunctionRecord, RecordExt, Status, Usage, Verdict,
};
use crate::sandbox::calls::CallOptions;
use crate::sandbox::testcount::test_plan;
use crate::sandbox::Sandbox;
use crate::sandbox::{AdequacyArgs, AdequacySettings};
use crate::stages::common::rewrite::replace_program;
use crate::stages::common::{
    adequacy_settings, ask_seeded, distinct, llm_settings, retry_seed, rewrite_check, run_with_sandbox, tally_adequacy, RecordFields, RewriteCheck,
    SandboxFlags, StepError,
};

const STAGE: &str = "fix";

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
    /// Share of each test module's methods held out of the fix prompt (gen-tests chooses
    /// them; at least one when > 0, at least one stays visible; 0 = show all).
    pub held_out: f64,
    /// Seed of the held-out choice.
    pub held_out_seed: u64,
    /// Inputs outside the tests tried on a passing candidate and the original (0 = no
    /// constant-output check).
    pub probes: usize,
}

impl Default for FixSettings {
    fn default() -> Self {
        Self { max_rounds: 3, samples: 3, keep: 1, report_chars: 3000, traceback_lines: 8, held_out: 1.0 / 3.0, held_out_seed: 0, probes: 8 }
    }
}

#[derive(Debug, Clone, Args, Default)]
#[command(next_help_heading = "Fix")]
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
    pub sandbox: SandboxFlags,
    #[command(flatten)]
    pub adequacy: AdequacyArgs,
}

impl FixSettings {
    /// `[fix]` with flags on top (each `None` keeps the config value).
    pub fn resolve(ctx: &Context, max_rounds: Option<u32>, samples: Option<u32>, keep: Option<u32>) -> Result<FixSettings> {
        let mut s: FixSettings = ctx.config.section(STAGE)?;
        s.max_rounds = max_rounds.unwrap_or(s.max_rounds);
        s.samples = samples.unwrap_or(s.samples).max(1);
        s.keep = keep.unwrap_or(s.keep).max(1);
        Ok(s)
    }
}

pub struct FixStep {
    pub settings: FixSettings,
    pub agent: Agent,
    pub sandbox: Arc<Sandbox>,
    pub fields: RecordFields,
    pub rewrite_check: Arc<RewriteCheck>,
    /// How a passing candidate is assessed before it is kept.
    pub adequacy: AdequacySettings,
}

/// A failing record the loop works on.
struct Job {
    tests: String,
    /// The tests without the held-out methods: what the prompt shows.
    visible_tests: String,
    held_out: Vec<String>,
    entry_point: String,
    /// The original program and function's source (its signature must be kept).
    code: String,
    function: String,
    signature: String,
    /// Inputs outside the tests, and the original's behaviour on them (computed once).
    probes: Vec<String>,
    original_behaviour: tokio::sync::OnceCell<Vec<String>>,
}

/// One program under repair: its code (module) and its newest verdict.
#[derive(Clone)]
struct Attempt {
    code: String,
    rewrite: Option<FunctionRecord>,
    verdict: Verdict,
}

/// What the fix prompt sees.
#[derive(Serialize)]
struct FixPrompt<'a> {
    code: &'a str,
    tests: &'a str,
    entry_point: &'a str,
    signature: &'a str,
    round: u32,
    report: String,
    held_out: usize,
    previous_problems: &'a [String],
}

/// The state of the rounds: Algorithm 1's frontier, what was kept, and the history.
struct Repair {
    frontier: Vec<Attempt>,
    kept: Vec<(u32, Attempt)>,
    history: Vec<FixAttempt>,
    seen_code: HashSet<String>,
    sandbox_errors: u32,
    usage: Usage,
    rounds_used: u32,
    /// Set when every candidate of the last round was unusable: why, for the next prompt.
    retry_problems: Vec<String>,
    /// Where this round's entries start in `history`.
    round_start: usize,
}

/// What became of one admitted candidate in the sandbox.
enum Checked {
    /// Its verdict (assessed when it passed and was wanted).
    Ran(Box<Verdict>),
    /// It passed, then a post-run rule rejected it (`constant_output`).
    Rejected { reason: &'static str, detail: String },
}

/// After a round: go on with the frontier, or stop.
enum Next {
    Continue,
    Stop,
}

impl FixStep {
    pub fn new(
        settings: FixSettings,
        llm: LlmSettings,
        sandbox: Arc<Sandbox>,
        fields: RecordFields,
        rewrite_check: Arc<RewriteCheck>,
        adequacy: AdequacySettings,
        out_dir: &std::path::Path,
    ) -> Result<FixStep> {
        Ok(FixStep { settings, agent: Agent::new(llm, out_dir)?, sandbox, fields, rewrite_check, adequacy })
    }

    /// Algorithm 1 for one record: triage, then rounds of propose → admit → verify →
    /// keep / next frontier / stop.
    async fn fix(self: Arc<Self>, mut record: Record) -> Record {
        let Some((job, start)) = self.triage(&mut record).await else { return record };
        let mut repair = Repair::new(start);
        for round in 1..=self.settings.max_rounds {
            repair.rounds_used = round;
            let proposals = match self.propose(&job, &repair.frontier, round, &repair.retry_problems.clone(), &mut repair.usage).await {
                Ok(p) => p,
                Err(e) => return repair.stopped(record, e, round),
            };
            repair.round_start = repair.history.len();
            let screen = |r: &FunctionRecord| self.screen(r, &job);
            let admitted = repair.admit(round, proposals, &self.rewrite_check, &job, &screen);
            let wanted = (self.settings.keep as usize).saturating_sub(repair.kept.len());
            let verdicts = self.verify(&admitted, &job, wanted).await;
            if let Next::Stop = repair.keep(round, admitted, verdicts, &self.settings, &job.held_out) {
                break;
            }
        }
        repair.finish(record)
    }

    /// Steps 1–2: the job, or `None` when the record is finished (passing, not fixable
    /// here, or in error) with its outcome written.
    async fn triage(&self, record: &mut Record) -> Option<(Job, Attempt)> {
        let fields = &self.fields;
        let texts = (record.text(&fields.code_field), record.text(&fields.tests_field), record.text(&fields.entry_point_field));
        let (Some(code), Some(tests), Some(entry_point)) = texts else {
            record.set_error(ErrorInfo::new(STAGE, "missing_field", "the record needs code, tests and entry_point", false));
            return None;
        };
        let (code, tests, entry_point) = (code.to_string(), tests.to_string(), entry_point.to_string());
        let Some(mut verdict) = record.typed::<Verdict>(field::VERDICT) else {
            record.set_error(ErrorInfo::new(STAGE, "missing_field", "no verdict: run sandbox-run first", false));
            return None;
        };
        if verdict.status == Status::SandboxError {
            let entry = Some(entry_point.clone());
            verdict = self.sandbox.verify_async(code.clone(), tests.clone(), entry, self.adequacy.clone()).await;
            record.put(field::VERDICT, &verdict);
        }
        match verdict.status {
            Status::Pass => {
                record.put(field::FIX, &FixOutcome::status(FixStatus::NotNeeded));
                return None;
            }
            Status::SandboxError => {
                record.set_error(ErrorInfo::new(STAGE, "sandbox_error", "the sandbox failed twice on this record", true));
                return None;
            }
            _ => {}
        }
        if let Some((kind, detail)) = environment_failure(&verdict, &record.strings(field::PACKAGES)) {
            record.put(field::FIX, &FixOutcome::not_attempted(&kind, detail));
            return None;
        }
        let function = record.text(field::FUNCTION).unwrap_or(&code).to_string();
        let Some(signature) = signature(&function, &entry_point) else {
            let detail = format!("no top-level def {entry_point} in the record");
            record.put(field::FIX, &FixOutcome::not_attempted("no_function", detail));
            return None;
        };
        let held_out = match record.get(field::HELD_OUT_TESTS) {
            Some(_) => record.strings(field::HELD_OUT_TESTS),
            None => {
                // Tests from elsewhere: choose the split here, the way gen-tests does.
                let names = test_plan(&tests).map(|p| p.required).unwrap_or_default();
                let key = record.text(field::ID).map(str::to_string).unwrap_or_else(|| crate::hash::content_id(&code));
                let held = choose_held_out(&names, self.settings.held_out, &key, self.settings.held_out_seed);
                record.put(field::HELD_OUT_TESTS, &held);
                held
            }
        };
        let probes = match (self.settings.probes, crate::python::literals::signature(&function, &entry_point)) {
            (0, _) | (_, None) => Vec::new(),
            (n, Some(sig)) => probe_inputs(&tests, &entry_point, &sig.keyword_names, n),
        };
        let job = Job {
            visible_tests: without_tests(&tests, &held_out),
            tests,
            held_out,
            entry_point,
            code: code.clone(),
            function,
            signature,
            probes,
            original_behaviour: tokio::sync::OnceCell::new(),
        };
        Some((job, Attempt { code, rewrite: None, verdict }))
    }

    /// Step 4, the gaming rules: why an admitted rewrite must not be run, if it must not.
    fn screen(&self, rewrite: &FunctionRecord, job: &Job) -> Option<(String, String)> {
        if let Some(g) = gaming::check(&job.function, &rewrite.function, &job.tests, &job.entry_point) {
            return Some((g.rule.to_string(), g.detail));
        }
        let v = self.sandbox.policy_violation(&rewrite.code, "code")?;
        Some(("policy_rejected".into(), format!("the static policy refuses it: {} ({}) at {}", v.rule, v.detail, v.place)))
    }

    /// Step 5's check: `Some(detail)` when a passing candidate returns one constant on
    /// every probe input while the original returned different values.
    async fn collapses(&self, candidate: &str, job: &Job) -> Option<String> {
        if job.probes.len() < 3 {
            return None;
        }
        let behaviour = |code: String| {
            let sandbox = self.sandbox.clone();
            let (entry, probes) = (job.entry_point.clone(), job.probes.clone());
            async move {
                let opts = CallOptions { timeout: sandbox.settings.timeout.min(5.0), fresh_child_per_input: false };
                let r = sandbox.call_async(code, entry, probes, opts).await;
                r.outcomes.iter().map(|o| o.token()).collect::<Vec<String>>()
            }
        };
        let original = job.original_behaviour.get_or_init(|| behaviour(job.code.clone())).await;
        // The original's *values* must vary: raising on some inputs and returning one value
        // on the others is no variety, nor is returning opaque objects (plots) alike.
        let distinct_original: HashSet<&String> = original.iter().filter(|t| t.starts_with("v:")).collect();
        if distinct_original.len() < 2 {
            return None;
        }
        let mine = behaviour(candidate.to_string()).await;
        let values: Vec<&String> = mine.iter().filter(|t| t.starts_with("v:")).collect();
        let distinct_mine: HashSet<&&String> = values.iter().collect();
        (values.len() == mine.len() && distinct_mine.len() == 1).then(|| {
            format!(
                "returns the same value on all {} inputs outside the tests, where the original returned {} different values",
                mine.len(),
                distinct_original.len()
            )
        })
    }

    /// Step 3: candidates from the model, `samples` split over the frontier (parent index,
    /// reply text).
    async fn propose(
        &self,
        job: &Job,
        frontier: &[Attempt],
        round: u32,
        retry_problems: &[String],
        usage: &mut Usage,
    ) -> Result<Vec<(usize, String)>, StepError> {
        let s = &self.settings;
        let per_parent = (s.samples as usize).div_ceil(frontier.len()).max(1) as u32;
        let mut proposals = Vec::new();
        for (p, parent) in frontier.iter().enumerate() {
            let report = visible_report(&parent.verdict, &job.held_out, s.report_chars, s.traceback_lines);
            let context = FixPrompt {
                code: &parent.code,
                tests: &job.visible_tests,
                entry_point: &job.entry_point,
                signature: &job.signature,
                round,
                report,
                held_out: job.held_out.len(),
                previous_problems: retry_problems,
            };
            // A retry after a round of unusable replies gets a new seed: a new request.
            let seed = if retry_problems.is_empty() { self.agent.client.settings.seed } else { retry_seed(self.agent.client.settings.seed, round) };
            let g = ask_seeded(&self.agent, "fix", &context, per_parent, seed).await?;
            usage.add(g.prompt_tokens, g.completion_tokens, g.tokens_estimated);
            proposals.extend(g.choices.into_iter().map(|c| (p, c.text)));
        }
        Ok(proposals)
    }

    /// Step 4b: verify the admitted candidates, all at once (the pool runs them on every
    /// worker); then assess passing ones in order (reruns, coverage, mutants) until
    /// `wanted` hold up — a `flaky` one is not a pass. Passes beyond those are not kept, so
    /// they are not assessed.
    async fn verify(&self, admitted: &[(usize, FunctionRecord)], job: &Job, wanted: usize) -> Vec<Checked> {
        let handles: Vec<_> = admitted
            .iter()
            .map(|(_, r)| {
                let sandbox = self.sandbox.clone();
                let (code, tests, entry) = (r.code.clone(), job.tests.clone(), job.entry_point.clone());
                let label = crate::sandbox::asynchronous::current_label();
                tokio::spawn(crate::sandbox::asynchronous::labelled(label, async move { sandbox.check_calls_async(code, tests, entry).await }))
            })
            .collect();
        let mut verdicts = Vec::with_capacity(handles.len());
        for h in handles {
            let failed = |e: tokio::task::JoinError| Verdict::new(Status::SandboxError, 0, "", format!("check task failed: {e}"));
            verdicts.push(h.await.unwrap_or_else(failed));
        }
        let mut held = 0;
        let mut checked = Vec::with_capacity(verdicts.len());
        for (verdict, (_, r)) in verdicts.into_iter().zip(admitted) {
            if held >= wanted || verdict.status != Status::Pass {
                checked.push(Checked::Ran(Box::new(verdict)));
                continue;
            }
            if let Some(detail) = self.collapses(&r.code, job).await {
                checked.push(Checked::Rejected { reason: "constant_output", detail });
                continue;
            }
            let entry = Some(job.entry_point.clone());
            let assessed = self.sandbox.assess_async(r.code.clone(), job.tests.clone(), entry, verdict, self.adequacy.clone()).await;
            held += usize::from(assessed.status == Status::Pass);
            checked.push(Checked::Ran(Box::new(assessed)));
        }
        checked
    }
}

impl Repair {
    fn new(start: Attempt) -> Repair {
        Repair {
            seen_code: HashSet::from([start.code.clone()]),
            frontier: vec![start],
            kept: Vec::new(),
            history: Vec::new(),
            sandbox_errors: 0,
            usage: Usage::default(),
            rounds_used: 0,
            retry_problems: Vec::new(),
            round_start: 0,
        }
    }

    /// Step 4a: admit each reply as a rewrite (or record why not); repeats are rejected.
    fn admit(
        &mut self,
        round: u32,
        proposals: Vec<(usize, String)>,
        check: &RewriteCheck,
        job: &Job,
        screen: &dyn Fn(&FunctionRecord) -> Option<(String, String)>,
    ) -> Vec<(usize, FunctionRecord)> {
        let mut admitted = Vec::new();
        for (parent, reply) in proposals {
            let checked = pick_block(&reply, &format!("def {}", job.entry_point), |suite| defines_function(suite, &job.entry_point))
                .map_err(StepError::from)
                .and_then(|block| check.admit(&block, &job.entry_point, &job.function).map_err(StepError::from));
            let rejected = |candidate: String, reason: &str, detail: String| FixAttempt {
                round,
                parent,
                candidate,
                outcome: AttemptOutcome::Rejected { rejected: reason.into(), detail },
            };
            match checked {
                Err(e) => self.history.push(rejected(reply_code(&reply), e.kind(), e.to_string())),
                Ok(rewrite) if !self.seen_code.insert(rewrite.code.clone()) => {
                    self.history.push(rejected(rewrite.code, "duplicate", "same code as an earlier candidate".into()))
                }
                Ok(rewrite) => match screen(&rewrite) {
                    Some((reason, detail)) => self.history.push(rejected(rewrite.code, &reason, detail)),
                    None => admitted.push((parent, rewrite)),
                },
            }
        }
        admitted
    }

    /// Step 5: keep passing candidates, carry the best failing ones on, or stop.
    fn keep(&mut self, round: u32, admitted: Vec<(usize, FunctionRecord)>, checked: Vec<Checked>, s: &FixSettings, held_out: &[String]) -> Next {
        let mut failing = Vec::new();
        for ((parent, rewrite), c) in admitted.into_iter().zip(checked) {
            let v = match c {
                Checked::Ran(v) => *v,
                Checked::Rejected { reason, detail } => {
                    let outcome = AttemptOutcome::Rejected { rejected: reason.into(), detail };
                    self.history.push(FixAttempt { round, parent, candidate: rewrite.code, outcome });
                    continue;
                }
            };
            let message = Some(v.message.clone()).filter(|m| !m.is_empty());
            let overfit = v.status != Status::Pass && !v.failures.is_empty() && v.failures.iter().all(|f| held_out.contains(&f.test));
            let outcome = AttemptOutcome::Verified { status: v.status, tests_passed: v.tests_passed, tests_run: v.tests_run, message, overfit };
            self.history.push(FixAttempt { round, parent, candidate: rewrite.code.clone(), outcome });
            let status = v.status;
            let attempt = Attempt { code: rewrite.code.clone(), rewrite: Some(rewrite), verdict: v };
            match status {
                Status::Pass if self.kept.len() < s.keep as usize => self.kept.push((round, attempt)),
                Status::Pass => {}
                Status::SandboxError => self.sandbox_errors += 1,
                _ => failing.push(attempt),
            }
        }
        if self.kept.len() >= s.keep as usize || (!self.kept.is_empty() && round == s.max_rounds) {
            return Next::Stop;
        }
        // The best failing candidates (most tests passed) carry on with their newest failure.
        failing.sort_by_key(|a| std::cmp::Reverse(a.verdict.tests_passed));
        failing.truncate(s.samples as usize);
        self.retry_problems.clear();
        if failing.is_empty() {
            let this_round = &self.history[self.round_start.min(self.history.len())..];
            let all_unusable = self.history.iter().all(|h| matches!(h.outcome, AttemptOutcome::Rejected { .. }));
            if self.kept.is_empty() && all_unusable && round < s.max_rounds {
                // Every candidate was unusable: ask again from the same parents, saying why.
                let reasons = this_round.iter().filter_map(|h| match &h.outcome {
                    AttemptOutcome::Rejected { rejected, .. } => Some(rejected.clone()),
                    _ => None,
                });
                self.retry_problems = distinct(reasons);
                return Next::Continue;
            }
            return Next::Stop;
        }
        self.frontier = failing;
        Next::Continue
    }

    /// The LLM (or prompt) failed in `round`: the record keeps its history and the error.
    fn stopped(self, mut record: Record, e: StepError, round: u32) -> Record {
        if let StepError::Llm(_) = e {
            let outcome = FixOutcome { rounds_used: Some(round), history: Some(self.history), ..FixOutcome::status(FixStatus::Error) };
            record.put(field::FIX, &outcome);
        }
        record.set_error(e.to_error(STAGE));
        record
    }

    /// The record after the last round: fixed (the kept candidate becomes its program),
    /// in error (sandbox failures), or unfixed.
    fn finish(self, mut record: Record) -> Record {
        let summary = |status| FixOutcome {
            rounds_used: Some(self.rounds_used),
            candidates: Some(self.history.len()),
            usage: Some(self.usage),
            history: Some(self.history.clone()),
            ..FixOutcome::status(status)
        };
        if let Some((round, best)) = self.kept.first() {
            if let Some(rewrite) = &best.rewrite {
                replace_program(&mut record, rewrite, field::BEFORE_FIX);
            }
            record.put(field::VERDICT, &best.verdict);
            let alternatives = self.kept.iter().skip(1).map(|(r, a)| FixAlternative { round: *r, code: a.code.clone() }).collect();
            let outcome = FixOutcome { round: Some(*round), alternatives: Some(alternatives), ..summary(FixStatus::Fixed) };
            record.put(field::FIX, &outcome);
        } else if self.sandbox_errors > 0 {
            record.put(field::FIX, &summary(FixStatus::Error));
            let message = format!("{} candidate checks ended in sandbox_error", self.sandbox_errors);
            record.set_error(ErrorInfo::new(STAGE, "sandbox_error", message, true));
        } else {
            record.put(field::FIX, &summary(FixStatus::Unfixed));
        }
        record
    }
}

fn fix_history(out: &Record) -> Vec<FixAttempt> {
    out.typed::<FixOutcome>(field::FIX).and_then(|f| f.history).unwrap_or_default()
}

/// The code of a reply for the history (its first code block, else the reply).
fn reply_code(reply: &str) -> String {
    code_blocks(reply).into_iter().next().unwrap_or_else(|| reply.to_string())
}

/// `No module named 'x.y'` → `x`.
pub fn missing_module(text: &str) -> Option<String> {
    let rest = text.split("No module named '").nth(1)?;
    let name = rest.split('\'').next()?;
    Some(name.split('.').next().unwrap_or(name).to_string())
}

/// Failures that changing the function cannot fix: (kind, detail).
pub fn environment_failure(verdict: &Verdict, packages: &[String]) -> Option<(String, String)> {
    for f in &verdict.failures {
        if let Some(module) = missing_module(&format!("{} {}", f.message, f.traceback)) {
            if packages.iter().any(|p| p == &module) || f.test == "code" {
                return Some(("missing_package".into(), format!("`{module}` is not installed in the sandbox")));
            }
            return Some(("tests_unusable".into(), format!("the tests import `{module}`, which does not exist here")));
        }
    }
    if verdict.status == Status::Rejected && verdict.reason.as_deref() == Some("function_not_called") {
        return Some(("tests_unusable".into(), "no test made the function under test run".into()));
    }
    if verdict.status == Status::Rejected {
        // Not the model's to repair: the static policy refused the program or its tests.
        let rule = verdict.reason.clone().unwrap_or_default();
        let place = verdict.location.clone().unwrap_or_default();
        let kind = if place.starts_with("tests") { "tests_unusable" } else { "policy_rejected" };
        return Some((kind.into(), format!("rejected by the static policy: {rule} at {place}")));
    }
    if verdict.status == Status::NoTests {
        return Some(("tests_unusable".into(), "the test module has no test methods".into()));
    }
    if let Some(f) = verdict.failures.iter().find(|f| f.test == "tests" && f.kind == "error") {
        return Some(("tests_unusable".into(), format!("the test module does not load: {}", f.message)));
    }
    if verdict.failures.iter().any(|f| matches!(f.kind.as_str(), "tamper" | "forged_report")) {
        return Some(("tampering".into(), "the code interfered with the test harness".into()));
    }
    None
}

/// The failure report of the visible tests: failures of held-out tests are left out (and
/// counted), and the counts are those of the visible tests.
pub fn visible_report(verdict: &Verdict, held_out: &[String], max_chars: usize, traceback_lines: usize) -> String {
    if held_out.is_empty() {
        return failure_report(verdict, max_chars, traceback_lines);
    }
    let mut visible = verdict.clone();
    visible.failures.retain(|f| !held_out.contains(&f.test));
    let hidden = verdict.failures.len() - visible.failures.len();
    visible.tests_found = verdict.tests_found.saturating_sub(held_out.len());
    let hidden_passed = held_out.len().saturating_sub(hidden);
    visible.tests_passed = verdict.tests_passed.saturating_sub(hidden_passed).min(visible.tests_found);
    if hidden > 0 && visible.failures.is_empty() {
        visible.message = String::new();
    }
    let mut report = failure_report(&visible, max_chars, traceback_lines);
    if hidden > 0 {
        report.push_str(&format!("\n{hidden} test(s) not shown also fail: fix the function for all inputs, not only the ones shown.\n"));
    }
    report
}

/// A failure report for the model: status line, failures grouped by identical message,
/// traceback tails, addresses and temp paths normalised (so the same failure always gives
/// the same prompt, which keeps the response cache effective), truncated to `max_chars`.
pub fn failure_report(verdict: &Verdict, max_chars: usize, traceback_lines: usize) -> String {
    let mut out = format!("Status: {} ({} of {} tests passed)\n", verdict.status.as_str(), verdict.tests_passed, verdict.tests_found);
    if !verdict.message.is_empty() {
        out.push_str(&format!("Summary: {}\n", normalize(&verdict.message)));
    }
    let mut groups: Vec<(String, String, Vec<String>, String)> = Vec::new(); // kind, message, tests, traceback
    for f in &verdict.failures {
        let message = normalize(&f.message);
        match groups.iter_mut().find(|g| g.0 == f.kind && g.1 == message) {
            Some(g) => g.2.push(f.test.clone()),
            None => {
                let tb = normalize(&f.traceback);
                let lines: Vec<&str> = tb.lines().collect();
                let tail = lines[lines.len().saturating_sub(traceback_lines)..].join("\n");
                groups.push((f.kind.clone(), message, vec![f.test.clone()], tail));
            }
        }
    }
    for (kind, message, tests, traceback) in &groups {
        out.push_str(&format!("\n{} in {}:\n  {}\n", kind.to_uppercase(), tests.join(", "), message));
        if !traceback.is_empty() {
            let indented: Vec<String> = traceback.lines().map(|l| format!("    {l}")).collect();
            out.push_str(&format!("  Traceback (last lines):\n{}\n", indented.join("\n")));
        }
    }
    if groups.is_empty() && !verdict.output.is_empty() {
        out.push_str(&format!("\nOutput:\n{}\n", normalize(&verdict.output)));
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
        STAGE
    }

    fn process(self: Arc<Self>, record: Record) -> BoxFuture {
        Box::pin(self.fix(record))
    }

    fn settings(&self) -> Value {
        json!({"fix": self.settings, "agent": self.agent.answer_settings("fix"), "sandbox": self.sandbox.settings, "fields": self.fields})
    }

    fn tally(&self, out: &Record, counts: &mut Counts) {
        if out.error().is_some() {
            return;
        }
        match out.typed::<FixOutcome>(field::FIX) {
            Some(fix) => {
                counts.bump(counter::fix(fix.status));
                match (fix.status, fix.round, fix.reason.as_deref()) {
                    (FixStatus::Fixed, Some(r), _) => counts.bump(counter::fixed_in_round(r.into())),
                    (FixStatus::NotAttempted, _, Some(reason)) => counts.bump(counter::not_attempted(reason)),
                    _ => {}
                }
            }
            None => counts.bump("fix_none"),
        }
        for attempt in fix_history(out) {
            match &attempt.outcome {
                AttemptOutcome::Rejected { rejected, .. } => counts.bump(counter::fix_rejected(rejected)),
                AttemptOutcome::Verified { overfit: true, .. } => counts.bump(counter::FIX_OVERFIT),
                _ => {}
            }
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

pub fn run(ctx: &Context, args: &FixArgs) -> Result<ExitCode> {
    let settings = FixSettings::resolve(ctx, args.max_rounds, args.samples, args.keep)?;
    let llm = llm_settings(ctx, &args.llm);
    let check = rewrite_check(ctx)?;
    let fields = args.sandbox.fields.clone();
    let adequacy = adequacy_settings(ctx, &args.adequacy);
    run_with_sandbox(ctx, llm.concurrency, args.sandbox.settings(ctx), |sandbox, out_dir| {
        FixStep::new(settings, llm, sandbox, fields, check, adequacy, out_dir)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(v: Value) -> Verdict {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn report_groups_normalises_and_truncates() {
        let v = verdict(json!({"status": "fail", "tests_found": 3, "tests_passed": 1, "message": "2 of 3 tests did not pass",
            "failures": [
                {"test": "TestCases.test_a", "kind": "fail", "message": "AssertionError: <obj at 0x7f3a2b1c9d10> != 1", "traceback": "Traceback (most recent call last):\n  File \"/tmp/check_ab12cd/test_solution.py\", line 4, in test_a\nAssertionError"},
                {"test": "TestCases.test_b", "kind": "fail", "message": "AssertionError: <obj at 0x7f00000c9d10> != 1", "traceback": "x"}]}));
        let r = failure_report(&v, 10_000, 8);
        assert!(r.contains("FAIL in TestCases.test_a, TestCases.test_b"), "{r}");
        assert!(!r.contains("0x7f") && r.contains("/tmp/check/test_solution.py"), "{r}");
        assert!(failure_report(&v, 60, 8).ends_with("(report truncated)"));
    }

    #[test]
    fn environment_failures_are_classified() {
        let missing = verdict(
            json!({"status": "error", "failures": [{"test": "code", "kind": "error", "message": "ModuleNotFoundError: No module named 'torch.nn'"}]}),
        );
        assert_eq!(environment_failure(&missing, &["torch".into()]).unwrap().0, "missing_package");
        let hallucinated = verdict(
            json!({"status": "error", "failures": [{"test": "tests", "kind": "error", "message": "ModuleNotFoundError: No module named 'solution'"}]}),
        );
        assert_eq!(environment_failure(&hallucinated, &[]).unwrap().0, "tests_unusable");
        let real =
            verdict(json!({"status": "fail", "failures": [{"test": "TestCases.test_a", "kind": "fail", "message": "AssertionError: 1 != 2"}]}));
        assert!(environment_failure(&real, &[]).is_none());
        assert_eq!(environment_failure(&verdict(json!({"status": "no_tests", "failures": []})), &[]).unwrap().0, "tests_unusable");
    }
}
