//! `unitcoder consensus`: self-bootstrapped solutions chosen by execution-signature
//! consensus (UCoder/IPC stages 4–6). Without reference solutions, the largest cluster of
//! candidates that behave identically on many inputs is dominated by correct ones.
//!
//! For each problem record (`problem`, `skeleton`, `entry_point`; from `unitcoder problems`):
//!   1. **tests**: the model writes up to T inputs (keyword-argument dict literals) and,
//!      where it can, expected outputs; those that parse as literals and fit the signature
//!      are kept;
//!   2. **dense sampling**: N candidate solutions in one n=N request, at the consensus
//!      temperature; replies without a function of the right name are invalid;
//!   3. **execution**: every candidate runs on every input in the sandbox, all inputs of a
//!      candidate in one child with per-input time limits;
//!   4. **signature** σ(r): per input, the typed output's hash or the exception type (or
//!      timeout/killed); candidates with identical signatures form a cluster. Where an
//!      expected output exists, pass/fail against it is recorded too (numbers compared
//!      with a tolerance, lists and tuples alike);
//!   5. **selection**: drop candidates whose execution success e(r) (share of inputs that
//!      returned a value) is below the threshold; take the largest non-trivial cluster C*
//!      (trivial: no input returned a value); ties go to the cluster with more expected
//!      outputs matched, then higher mean e, then the smaller signature hash — never to
//!      sampling order; require s = |C*| / N ≥ F; in C*, r* has the highest e(r), then the
//!      fewest code tokens (the fluency proxy f(r): comments, docstrings and strings not
//!      counted; shorter code of identical behaviour is preferred), then the smallest text;
//!   6. **D_t**: the record gets `consensus` (strength s, cluster sizes, e(r*), the
//!      signature, every candidate's e and cluster) and `task` {prompt: problem +
//!      skeleton, completion: r*}, which `export` writes in its formats.
//!
//! Every problem ends with a selection, a `dropped` reason (duplicate_problem,
//! no_valid_tests, no_valid_candidates, all_unreliable, all_exceptions,
//! no_cluster_above_threshold) or an `error`. A record with a `reference` solution (from
//! existing data) also gets `reference_agrees`: does the reference behave like C*?

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Result;
use clap::Args;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::context::Context;
use crate::dedup::code_tokens;
use crate::executor::{BoxFuture, Counts, Record, Resources, Step};
use crate::llm::reply::{defines_function, inputs_block, pick_block};
use crate::llm::{Agent, LlmArgs, LlmSettings};
use crate::python::literals::{check_literal, parse_inputs, signature, take_distinct, InputLiteral, Signature};
use crate::python::{on_parse_stack, parse_untrusted};
use crate::record::{counter, field, ConsensusOutcome, ConsensusTests, ErrorInfo, RecordExt, Task, TaskStatus};
use crate::sandbox::asynchronous::{current_label, labelled};
use crate::sandbox::calls::{CallOptions, CallsResult, OutcomeKind};
use crate::sandbox::Sandbox;
use crate::stages::common::{ask, llm_settings, run_with_sandbox, NoTask, SandboxFlags, StepError};

const STAGE: &str = "consensus";

/// `[consensus]` settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsensusSettings {
    /// Candidate solutions sampled per problem (N).
    pub samples: u32,
    /// Test inputs asked for per problem (T, at most).
    pub tests: u32,
    /// Fewest valid test inputs a problem needs.
    pub min_tests: usize,
    /// Required consensus strength |C*| / N (F).
    pub min_cluster_frac: f64,
    /// Candidates with a smaller execution success e(r) are dropped before clustering.
    pub min_execution_success: f64,
    /// Sampling temperature for the candidates (tests use `[llm] temperature`).
    pub temperature: f64,
    /// Wall-clock limit per candidate × input, seconds.
    pub timeout: f64,
}

impl Default for ConsensusSettings {
    fn default() -> Self {
        Self { samples: 16, tests: 100, min_tests: 3, min_cluster_frac: 0.3, min_execution_success: 0.5, temperature: 0.8, timeout: 2.0 }
    }
}

#[derive(Debug, Clone, Args, Default)]
#[command(next_help_heading = "Consensus")]
pub struct ConsensusArgs {
    /// Candidate solutions per problem [default: 16].
    #[arg(long, value_name = "N")]
    pub samples: Option<u32>,
    /// Test inputs per problem, at most [default: 100].
    #[arg(long, value_name = "T")]
    pub tests: Option<u32>,
    /// Required consensus strength |C*|/N [default: 0.3].
    #[arg(long, value_name = "F")]
    pub min_cluster_frac: Option<f64>,
    #[command(flatten)]
    pub llm: LlmArgs,
    #[command(flatten)]
    pub sandbox: SandboxFlags,
}

impl ConsensusSettings {
    /// `[consensus]` with flags on top.
    pub fn resolve(ctx: &Context, args: &ConsensusArgs) -> Result<ConsensusSettings> {
        let mut s: ConsensusSettings = ctx.config.section(STAGE)?;
        if let Some(v) = args.samples {
            s.samples = v;
        }
        if let Some(v) = args.tests {
            s.tests = v;
        }
        if let Some(v) = args.min_cluster_frac {
            s.min_cluster_frac = v;
        }
        s.samples = s.samples.max(1);
        s.tests = s.tests.max(1);
        Ok(s)
    }
}

/// Tokens one written test case takes, about (an input dict and an output).
const TOKENS_PER_CASE: u32 = 32;

/// Test cases to ask for: `[consensus] tests`, or fewer when a reply holding that many
/// could not fit in `max_tokens` (100 cases need ~2,600 tokens).
fn tests_that_fit(wanted: u32, max_tokens: u32) -> u32 {
    wanted.min((max_tokens / TOKENS_PER_CASE).max(1))
}

/// One test: an input and, where the model gave one, the expected output's source.
#[derive(Debug, Clone)]
pub struct TestCase {
    pub input: InputLiteral,
    pub expected: Option<String>,
}

/// The test cases in a reply: `{"input": {...}, "output": ...}` items or bare input dicts.
pub fn read_tests(reply: &str, sig: &Signature, limit: usize) -> std::result::Result<(Vec<TestCase>, Vec<String>), String> {
    let items = inputs_block(reply, None)?.into_iter().map(|item| item.and_then(|lit| split_case(&lit, sig))).collect();
    let (tests, rejected) = take_distinct(items, |t: &TestCase| t.input.source.as_str(), limit);
    Ok((tests, rejected.into_iter().map(|r| r.reason).collect()))
}

/// `{"input": {...}, "output": X}` → input + expected; a plain kwargs dict → input only.
fn split_case(lit: &InputLiteral, sig: &Signature) -> std::result::Result<TestCase, String> {
    let is_case = lit.args.iter().any(|(k, _)| k == "input") && lit.args.iter().all(|(k, _)| k == "input" || k == "output");
    let (input_src, expected) = if is_case {
        let get = |name: &str| lit.args.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        (get("input").unwrap_or_default(), get("output"))
    } else {
        (lit.source.clone(), None)
    };
    let parsed = parse_inputs(&input_src, Some(sig))?;
    let input = parsed.into_iter().next().ok_or("empty input")??;
    // Both parts were checked as literals already (the outer dict was); keep it explicit.
    if let Some(e) = &expected {
        on_parse_stack(|| {
            let module = parse_untrusted(e, ruff_python_ast::PythonVersion::PY314)?;
            match module.suite().first() {
                Some(ruff_python_ast::Stmt::Expr(x)) => check_literal(&x.value, 0),
                _ => Ok(()),
            }
        })?;
    }
    Ok(TestCase { input, expected })
}

/// A typed value normalised for comparing with an expected output: numbers by value,
/// sequences alike whatever their container, arrays by their elements.
#[derive(Debug, Clone)]
enum Loose {
    Num(f64),
    Bool(bool),
    Str(String),
    None,
    Seq(Vec<Loose>),
    Map(Vec<(Loose, Loose)>),
    Exact(String),
}

fn loose(v: &Value) -> Loose {
    let tag = v.get(0).and_then(Value::as_str).unwrap_or("");
    let arg = |i: usize| v.get(i).cloned().unwrap_or(Value::Null);
    let seq = |x: &Value| Loose::Seq(x.as_array().map(|a| a.iter().map(loose).collect()).unwrap_or_default());
    match tag {
        "int" | "float" => {
            let s = arg(1).as_str().unwrap_or("").to_string();
            let n = if let Some(h) = s.strip_prefix("0x") {
                i128::from_str_radix(h, 16).map(|x| x as f64).unwrap_or(f64::NAN)
            } else {
                s.parse::<f64>().unwrap_or(f64::NAN)
            };
            Loose::Num(n)
        }
        "bool" => Loose::Bool(arg(1).as_bool().unwrap_or(false)),
        "str" => Loose::Str(arg(1).as_str().unwrap_or("").to_string()),
        "none" => Loose::None,
        "list" | "tuple" | "set" | "frozenset" => seq(&arg(1)),
        "dict" => Loose::Map(arg(1).as_array().map(|a| a.iter().map(|p| (loose(&p[0]), loose(&p[1]))).collect()).unwrap_or_default()),
        "ndarray" => loose(&arg(3)),
        "Series" => loose(&arg(4)),
        t if t.starts_with("numpy.") && v.as_array().map(Vec::len) == Some(2) => loose(&arg(1)),
        _ => Loose::Exact(v.to_string()),
    }
}

fn loosely_equal(a: &Loose, b: &Loose) -> bool {
    match (a, b) {
        (Loose::Num(x), Loose::Num(y)) => (x.is_nan() && y.is_nan()) || (x - y).abs() <= 1e-9_f64.max(1e-6 * x.abs().max(y.abs())),
        (Loose::Bool(x), Loose::Bool(y)) => x == y,
        (Loose::Str(x), Loose::Str(y)) => x == y,
        (Loose::None, Loose::None) => true,
        (Loose::Seq(x), Loose::Seq(y)) => x.len() == y.len() && x.iter().zip(y).all(|(p, q)| loosely_equal(p, q)),
        (Loose::Map(x), Loose::Map(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|((k1, v1), (k2, v2))| loosely_equal(k1, k2) && loosely_equal(v1, v2))
        }
        (Loose::Exact(x), Loose::Exact(y)) => x == y,
        _ => false,
    }
}

/// One sampled candidate after execution.
#[derive(Debug, Clone, Serialize)]
pub struct Candidate {
    pub index: usize,
    #[serde(skip)]
    pub code: Option<String>,
    /// Why it is not clustered (invalid reply, import error, low e, tampering).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub excluded: Option<String>,
    /// Execution success e(r): share of inputs that returned a value.
    pub execution_success: f64,
    /// Inputs whose output matched the expected one (of those with one).
    pub expected_passed: usize,
    /// Fluency proxy f(r): code tokens without comments, docstrings and strings.
    pub code_tokens: usize,
    /// Hash of the execution signature (empty when excluded before execution).
    pub signature: String,
    #[serde(skip)]
    pub tokens: Vec<String>,
}

/// A consensus cluster: candidates with one signature.
#[derive(Debug, Clone, Serialize)]
pub struct Cluster {
    pub signature: String,
    pub members: Vec<usize>,
    /// Some input returned a value (an all-exception cluster never wins).
    pub nontrivial: bool,
    pub mean_execution_success: f64,
    pub expected_passed: usize,
}

/// Steps 4–5 on executed candidates: clusters in selection order, and the selection
/// (cluster index, candidate index), or the reason there is none.
pub fn select(candidates: &[Candidate], n: usize, s: &ConsensusSettings) -> (Vec<Cluster>, std::result::Result<(usize, usize), &'static str>) {
    let mut groups: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for c in candidates.iter().filter(|c| c.excluded.is_none()) {
        groups.entry(c.signature.clone()).or_default().push(c.index);
    }
    let mut clusters: Vec<Cluster> = groups
        .into_iter()
        .map(|(signature, members)| {
            let of = |i: &usize| &candidates[*i];
            let nontrivial = members.first().map(|i| of(i).tokens.iter().any(|t| t.starts_with("v:"))).unwrap_or(false);
            let mean = members.iter().map(|i| of(i).execution_success).sum::<f64>() / members.len().max(1) as f64;
            let expected_passed = members.first().map(|i| of(i).expected_passed).unwrap_or(0);
            Cluster { signature, members, nontrivial, mean_execution_success: mean, expected_passed }
        })
        .collect();
    clusters.sort_by(|a, b| {
        b.members
            .len()
            .cmp(&a.members.len())
            .then(b.expected_passed.cmp(&a.expected_passed))
            .then(b.mean_execution_success.total_cmp(&a.mean_execution_success))
            .then(a.signature.cmp(&b.signature))
    });
    if candidates.iter().all(|c| c.code.is_none()) {
        return (clusters, Err("no_valid_candidates"));
    }
    if clusters.is_empty() {
        return (clusters, Err("all_unreliable"));
    }
    let Some(best) = clusters.iter().position(|c| c.nontrivial) else { return (clusters, Err("all_exceptions")) };
    if (clusters[best].members.len() as f64) < s.min_cluster_frac * n as f64 {
        return (clusters, Err("no_cluster_above_threshold"));
    }
    let pick = clusters[best]
        .members
        .iter()
        .copied()
        .min_by(|a, b| {
            let (x, y) = (&candidates[*a], &candidates[*b]);
            y.execution_success.total_cmp(&x.execution_success).then(x.code_tokens.cmp(&y.code_tokens)).then(x.code.cmp(&y.code))
        })
        .unwrap_or(clusters[best].members[0]);
    (clusters, Ok((best, pick)))
}

/// Signature hash of a token vector.
fn signature_hash(tokens: &[String]) -> String {
    blake3::hash(tokens.join("\u{1}").as_bytes()).to_hex()[..16].to_string()
}

pub struct ConsensusStep {
    pub settings: ConsensusSettings,
    /// Writes tests (at `[llm] temperature`).
    pub tester: Agent,
    /// Samples candidates (at `[consensus] temperature`).
    pub sampler: Agent,
    pub sandbox: Arc<Sandbox>,
}

/// What the tests and solve prompts see.
#[derive(Serialize)]
struct ProblemPrompt<'a> {
    problem: &'a str,
    skeleton: &'a str,
    entry_point: &'a str,
    t: u32,
}

impl From<StepError> for NoTask {
    fn from(e: StepError) -> Self {
        NoTask::Error(e.to_error(STAGE))
    }
}

impl ConsensusStep {
    pub fn new(settings: ConsensusSettings, llm: LlmSettings, sandbox: Arc<Sandbox>, out_dir: &Path) -> Result<ConsensusStep> {
        let mut sampling = llm.clone();
        sampling.temperature = settings.temperature;
        Ok(ConsensusStep { tester: Agent::new(llm, out_dir)?, sampler: Agent::new(sampling, out_dir)?, sandbox, settings })
    }

    fn run_calls(&self, code: String, entry_point: String, inputs: Vec<String>) -> impl std::future::Future<Output = CallsResult> + 'static {
        let sandbox = self.sandbox.clone();
        let opts = CallOptions { timeout: self.settings.timeout, fresh_child_per_input: false };
        async move { sandbox.call_async(code, entry_point, inputs, opts).await }
    }

    async fn process_record(self: Arc<Self>, mut record: Record) -> Record {
        let mut outcome = ConsensusOutcome::default();
        match self.select_solution(&record, &mut outcome).await {
            Ok(task) => {
                record.put(field::TASK, &task);
                record.put(field::CONSENSUS, &outcome);
            }
            Err(NoTask::Dropped(reason)) => {
                outcome.status = Some(TaskStatus::Dropped);
                outcome.reason = Some(reason.into());
                record.put(field::CONSENSUS, &outcome);
            }
            Err(NoTask::Error(e)) => record.set_error(e),
        }
        record
    }

    /// Steps 1–6 for one problem; what was learnt on the way goes into `outcome`.
    async fn select_solution(&self, record: &Record, outcome: &mut ConsensusOutcome) -> Result<Task, NoTask> {
        let s = &self.settings;
        if record.get(field::DUPLICATE_OF).is_some_and(|d| !d.is_null()) {
            return Err(NoTask::Dropped("duplicate_problem"));
        }
        let texts = (record.text(field::PROBLEM), record.text(field::SKELETON), record.text(field::ENTRY_POINT));
        let (Some(problem), Some(skeleton), Some(entry_point)) = texts else {
            let message = "the record needs `problem`, `skeleton` and `entry_point` (see `unitcoder problems`)";
            return Err(NoTask::Error(ErrorInfo::new(STAGE, "missing_field", message, false)));
        };
        let Some(sig) = signature(skeleton, entry_point) else {
            let message = format!("the skeleton defines no function {entry_point}");
            return Err(NoTask::Error(ErrorInfo::new(STAGE, "bad_skeleton", message, false)));
        };
        let asked = tests_that_fit(s.tests, self.tester.client.settings.max_tokens);
        let context = ProblemPrompt { problem, skeleton, entry_point, t: asked };

        // Step 1: tests (a reply cut by max_tokens keeps its complete cases).
        let generation = ask(&self.tester, "consensus_tests", &context, 1).await?;
        let choice = generation.choices.first();
        let truncated = choice.is_some_and(|c| c.finish_reason.as_deref() == Some("length"));
        let mut reply = choice.map(|c| c.text.clone()).unwrap_or_default();
        if truncated {
            reply = crate::llm::reply::complete_list_items(&reply).map(|items| format!("```python\n{items}\n```")).unwrap_or_default();
        }
        let (tests, rejected) = read_tests(&reply, &sig, asked as usize).map_err(|why| {
            outcome.message = Some(if truncated { format!("the reply was truncated at max_tokens with no complete test case ({why})") } else { why });
            NoTask::Dropped("no_valid_tests")
        })?;
        let with_expected = tests.iter().filter(|t| t.expected.is_some()).count();
        outcome.tests = Some(ConsensusTests {
            requested: asked,
            truncated,
            valid: tests.len(),
            rejected: rejected.len(),
            rejected_reasons: rejected.iter().take(20).cloned().collect(),
            with_expected,
        });
        if tests.len() < s.min_tests.max(1) {
            return Err(NoTask::Dropped("no_valid_tests"));
        }
        let inputs: Vec<String> = tests.iter().map(|t| t.input.source.clone()).collect();
        let expected_values = self.expected_values(&tests, with_expected).await;

        // Step 2: dense sampling.
        let generation = ask(&self.sampler, "consensus_solve", &context, s.samples).await?;
        let n = s.samples as usize;
        let codes: Vec<std::result::Result<String, String>> = (0..n)
            .map(|i| match generation.choices.get(i) {
                None => Err("missing_sample".into()),
                Some(c) if c.finish_reason.as_deref() == Some("length") => Err("truncated".into()),
                Some(c) => pick_block(&c.text, "the function", |suite| defines_function(suite, entry_point)).map_err(|e| e.kind().to_string()),
            })
            .collect();

        // Step 3: every candidate on every input, one child per candidate.
        let reference_run = record
            .text(field::REFERENCE)
            .map(|code| tokio::spawn(labelled(current_label(), self.run_calls(code.to_string(), entry_point.to_string(), inputs.clone()))));
        let candidates = self.execute(codes, entry_point, &inputs, &expected_values).await;
        if let Some(e) = candidates.iter().find_map(|c| c.excluded.as_ref().filter(|x| x.starts_with("sandbox_error"))) {
            return Err(NoTask::Error(ErrorInfo::new(STAGE, "sandbox_error", e.clone(), true)));
        }

        // Steps 4–5: signatures, clusters, selection.
        let (clusters, selection) = select(&candidates, n, s);
        outcome.samples = Some(n);
        outcome.cluster_sizes = Some(clusters.iter().map(|c| c.members.len()).collect());
        outcome.clusters = Some(json!(clusters));
        outcome.candidates = Some(json!(candidates));
        let (best, pick) = selection.map_err(NoTask::Dropped)?;
        let chosen = &candidates[pick];
        let cluster_size = clusters[best].members.len();
        let strength = cluster_size as f64 / n as f64;
        outcome.status = Some(TaskStatus::Ok);
        outcome.strength = Some(strength);
        outcome.cluster_size = Some(cluster_size);
        outcome.selected = Some(pick);
        outcome.execution_success = Some(chosen.execution_success);
        outcome.signature = Some(chosen.tokens.clone());
        if with_expected > 0 {
            let with_value = expected_values.iter().filter(|e| e.is_some()).count().max(1);
            outcome.expected_pass_rate = Some(chosen.expected_passed as f64 / with_value as f64);
        }
        if let Some(handle) = reference_run {
            if let Ok(r) = handle.await {
                let tokens: Vec<String> = r.outcomes.iter().map(|o| o.token()).collect();
                outcome.reference_agrees = Some(r.import_error.is_none() && tokens == chosen.tokens);
            }
        }

        // Step 6: D_t.
        let mut meta = Map::new();
        meta.insert("strength".into(), json!(strength));
        meta.insert("cluster_size".into(), json!(cluster_size));
        meta.insert("execution_success".into(), json!(chosen.execution_success));
        meta.insert("difficulty".into(), record.get(field::DIFFICULTY).cloned().unwrap_or(Value::Null));
        meta.insert("category".into(), record.get(field::CATEGORY).cloned().unwrap_or(Value::Null));
        let prompt = format!("{}\n\n```python\n{}```\n", problem.trim(), skeleton);
        Ok(Task { kind: STAGE.into(), prompt, completion: chosen.code.clone().unwrap_or_default(), meta })
    }

    /// Expected outputs, encoded by the same typed encoder (evaluated in the sandbox).
    async fn expected_values(&self, tests: &[TestCase], with_expected: usize) -> Vec<Option<Loose>> {
        if with_expected == 0 {
            return vec![None; tests.len()];
        }
        let probes: Vec<String> = tests.iter().map(|t| format!("{{'v': {}}}", t.expected.as_deref().unwrap_or("None"))).collect();
        let r = self.run_calls("def expected_value(v):\n    return v\n".into(), "expected_value".into(), probes).await;
        tests.iter().zip(&r.outcomes).map(|(t, o)| (t.expected.is_some() && o.kind == OutcomeKind::Value).then(|| loose(&o.value))).collect()
    }

    /// Step 3: run every valid candidate on every input (all at once) and score it.
    async fn execute(
        &self,
        codes: Vec<std::result::Result<String, String>>,
        entry_point: &str,
        inputs: &[String],
        expected: &[Option<Loose>],
    ) -> Vec<Candidate> {
        let runs: Vec<_> = codes
            .iter()
            .map(|c| {
                c.as_ref()
                    .ok()
                    .map(|code| tokio::spawn(labelled(current_label(), self.run_calls(code.clone(), entry_point.to_string(), inputs.to_vec()))))
            })
            .collect();
        let mut candidates: Vec<Candidate> = Vec::with_capacity(codes.len());
        for (index, (code, run)) in codes.into_iter().zip(runs).enumerate() {
            let mut cand = Candidate {
                index,
                code: None,
                excluded: None,
                execution_success: 0.0,
                expected_passed: 0,
                code_tokens: 0,
                signature: String::new(),
                tokens: Vec::new(),
            };
            match (code, run) {
                (Ok(code), Some(handle)) => {
                    cand.code_tokens = code_tokens(&code, false).len();
                    cand.code = Some(code);
                    match handle.await {
                        Ok(result) => self.score(&mut cand, &result, expected),
                        Err(e) => cand.excluded = Some(format!("sandbox task failed: {e}")),
                    }
                }
                (Err(why), _) => cand.excluded = Some(why),
                (Ok(_), None) => cand.excluded = Some("invalid".into()),
            }
            candidates.push(cand);
        }
        candidates
    }

    /// Signature, e(r) and expected-output matches of one executed candidate.
    fn score(&self, cand: &mut Candidate, result: &CallsResult, expected: &[Option<Loose>]) {
        if let Some(e) = &result.sandbox_error {
            cand.excluded = Some(format!("sandbox_error: {e}"));
            return;
        }
        if let Some(e) = &result.import_error {
            cand.excluded = Some(format!("import_error: {e}"));
            return;
        }
        if let Some(t) = &result.tampered {
            cand.excluded = Some(format!("tampered: {t}"));
            return;
        }
        cand.tokens = result.outcomes.iter().map(|o| o.token()).collect();
        cand.signature = signature_hash(&cand.tokens);
        let values = result.outcomes.iter().filter(|o| o.is_value()).count();
        cand.execution_success = values as f64 / result.outcomes.len().max(1) as f64;
        cand.expected_passed =
            result.outcomes.iter().zip(expected).filter(|(o, e)| matches!(e, Some(e) if o.is_value() && loosely_equal(&loose(&o.value), e))).count();
        if cand.execution_success < self.settings.min_execution_success {
            cand.excluded = Some("low_execution_success".into());
        }
    }
}

impl Step for ConsensusStep {
    fn name(&self) -> &'static str {
        STAGE
    }

    fn process(self: Arc<Self>, record: Record) -> BoxFuture {
        Box::pin(self.process_record(record))
    }

    fn settings(&self) -> Value {
        json!({"consensus": self.settings, "tests": self.tester.answer_settings("consensus_tests"), "solve": self.sampler.answer_settings("consensus_solve")})
    }

    fn tally(&self, out: &Record, counts: &mut Counts) {
        if out.error().is_some() {
            return;
        }
        let Some(c) = out.typed::<ConsensusOutcome>(field::CONSENSUS) else { return };
        match c.status {
            Some(TaskStatus::Ok) => {
                counts.bump(counter::SELECTED);
                counts.bump(counter::strength(c.strength.unwrap_or(0.0)));
            }
            Some(_) => counts.bump(counter::dropped(c.reason.as_deref().unwrap_or("?"))),
            None => {}
        }
    }

    fn resources(&self) -> Resources<'_> {
        Resources { agents: vec![("llm_tests", &self.tester), ("llm_samples", &self.sampler)], sandbox: Some(&self.sandbox) }
    }
}

pub fn run(ctx: &Context, args: &ConsensusArgs) -> Result<ExitCode> {
    let settings = ConsensusSettings::resolve(ctx, args)?;
    let llm = llm_settings(ctx, &args.llm);
    run_with_sandbox(ctx, llm.concurrency, args.sandbox.settings(ctx), |sandbox, out_dir| ConsensusStep::new(settings, llm, sandbox, out_dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(index: usize, tokens: &[&str], code: &str) -> Candidate {
        let tokens: Vec<String> = tokens.iter().map(|t| t.to_string()).collect();
        let values = tokens.iter().filter(|t| t.starts_with("v:")).count();
        Candidate {
            index,
            code: Some(code.to_string()),
            excluded: None,
            execution_success: values as f64 / tokens.len() as f64,
            expected_passed: 0,
            code_tokens: code_tokens(code, false).len(),
            signature: signature_hash(&tokens),
            tokens,
        }
    }

    #[test]
    fn asks_for_no_more_cases_than_max_tokens_can_hold() {
        assert_eq!(tests_that_fit(100, 2048), 64);
        assert_eq!(tests_that_fit(20, 2048), 20);
        assert_eq!(tests_that_fit(100, 16), 1);
    }

    #[test]
    fn largest_nontrivial_cluster_wins_and_ties_do_not_depend_on_order() {
        let s = ConsensusSettings { min_execution_success: 0.0, min_cluster_frac: 0.1, ..Default::default() };
        // Four raise everywhere (largest, trivial); three agree; two others agree.
        let mut cs = vec![];
        for i in 0..4 {
            cs.push(cand(i, &["e:ValueError", "e:ValueError"], "def f(x):\n    raise ValueError\n"));
        }
        for i in 4..7 {
            cs.push(cand(i, &["v:a", "v:b"], if i == 5 { "def f(x):\n    return x\n" } else { "def f(x):\n    y = x\n    return y\n" }));
        }
        for i in 7..9 {
            cs.push(cand(i, &["v:a", "v:c"], "def f(x):\n    return x + 0\n"));
        }
        let (clusters, sel) = select(&cs, 9, &s);
        let (best, pick) = sel.unwrap();
        assert!(!clusters[0].nontrivial && clusters[best].members == vec![4, 5, 6]);
        assert_eq!(pick, 5, "fewest tokens within the cluster");
        // A tie between two clusters of two: the choice is the same in any order.
        let tie = vec![
            cand(0, &["v:x"], "def f(x):\n    return 1\n"),
            cand(1, &["v:y"], "def f(x):\n    return 2\n"),
            cand(2, &["v:x"], "def f(x):\n    return 1\n"),
            cand(3, &["v:y"], "def f(x):\n    return 2\n"),
        ];
        let (c1, s1) = select(&tie, 4, &s);
        let mut rev: Vec<Candidate> = tie.iter().rev().cloned().collect();
        for (i, c) in rev.iter_mut().enumerate() {
            c.index = i;
        }
        let (c2, s2) = select(&rev, 4, &s);
        assert_eq!(c1[s1.unwrap().0].signature, c2[s2.unwrap().0].signature);
        // Below the required strength: no selection.
        let strict = ConsensusSettings { min_cluster_frac: 0.5, ..s.clone() };
        assert_eq!(select(&cs, 9, &strict).1, Err("no_cluster_above_threshold"));
        // Nothing but exceptions: never selected.
        assert_eq!(select(&cs[..4], 4, &s).1, Err("all_exceptions"));
    }

    #[test]
    fn expected_outputs_compare_loosely_by_value() {
        let a = loose(&json!(["list", [["int", "1"], ["float", "2.0"]]]));
        let b = loose(&json!(["tuple", [["float", "1.0"], ["int", "2"]]]));
        assert!(loosely_equal(&a, &b));
        let arr = loose(&json!(["ndarray", "float64", [2], ["list", [["float", "1.0"], ["float", "2.0000000001"]]]]));
        assert!(loosely_equal(&arr, &b));
        assert!(!loosely_equal(&loose(&json!(["str", "1"])), &loose(&json!(["int", "1"]))));
        assert!(!loosely_equal(&loose(&json!(["bool", true])), &loose(&json!(["int", "1"]))));
    }
}
