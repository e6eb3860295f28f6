//! The record schema: one JSON object per line in every shard.
//!
//! Stages add fields to records; fields a stage does not know pass through untouched, so a
//! record can go through any subset of stages in any tool chain. That is why a record is a
//! JSON map (`Record`) and not a struct: each field a stage adds is typed here, and stages
//! read and write those fields through [`RecordExt`] (`typed`, `put`, `text`, ...), never by
//! building JSON by hand. `docs/records.md` lists which stage adds which field.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub use crate::hash::content_id;
/// `extract`'s output: the function record and its `source` (defined with the extractor that makes them).
pub use crate::python::extractor::{FunctionRecord, SourceRef};
pub use crate::sandbox::{Status, Verdict};

/// A record as it travels between stages.
pub type Record = Map<String, Value>;

/// Field names, for the fields more than one stage reads.
pub mod field {
    pub const ID: &str = "id";
    pub const ENTRY_POINT: &str = "entry_point";
    pub const CODE: &str = "code";
    pub const FUNCTION: &str = "function";
    pub const IMPORTS: &str = "imports";
    pub const PACKAGES: &str = "packages";
    pub const SOURCE: &str = "source";
    pub const TESTS: &str = "tests";
    pub const TESTS_SAMPLES: &str = "tests_samples";
    /// Test methods (`Class.method`) kept out of the fix prompt (see `[fix] held_out`).
    pub const HELD_OUT_TESTS: &str = "held_out_tests";
    pub const GENERATION: &str = "generation";
    pub const VERDICT: &str = "verdict";
    pub const ERROR: &str = "error";
    pub const FIX: &str = "fix";
    /// The program before a successful fix (see [`super::PreviousProgram`]).
    pub const BEFORE_FIX: &str = "unfixed";
    pub const REFINE: &str = "refine";
    /// The program before a successful refinement.
    pub const BEFORE_REFINE: &str = "unrefined";
    pub const TASK: &str = "task";
    pub const CASE2CODE: &str = "case2code";
    pub const CONSENSUS: &str = "consensus";
    pub const PROBLEM: &str = "problem";
    pub const SKELETON: &str = "skeleton";
    pub const REFERENCE: &str = "reference";
    pub const DIFFICULTY: &str = "difficulty";
    pub const CATEGORY: &str = "category";
    pub const DUPLICATE_OF: &str = "duplicate_of";
}

/// Typed access to a record's fields; unknown fields are never touched.
pub trait RecordExt {
    /// A string field.
    fn text(&self, key: &str) -> Option<&str>;
    /// A field read as `T`; `None` when absent or not of that shape.
    fn typed<T: DeserializeOwned>(&self, key: &str) -> Option<T>;
    /// Set a field from a typed value.
    fn put<T: Serialize + ?Sized>(&mut self, key: &str, value: &T);
    /// A list-of-strings field (empty when absent).
    fn strings(&self, key: &str) -> Vec<String>;
    /// The record's `error`, if it has one.
    fn error(&self) -> Option<ErrorInfo>;
    fn set_error(&mut self, error: ErrorInfo);
    /// The status of the record's `verdict`, if it has one.
    fn verdict_status(&self) -> Option<Status>;
    /// `verdict.status == pass`.
    fn verified(&self) -> bool {
        self.verdict_status() == Some(Status::Pass)
    }
}

impl RecordExt for Record {
    fn text(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(Value::as_str)
    }

    fn typed<T: DeserializeOwned>(&self, key: &str) -> Option<T> {
        self.get(key).and_then(|v| T::deserialize(v).ok())
    }

    fn put<T: Serialize + ?Sized>(&mut self, key: &str, value: &T) {
        self.insert(key.to_string(), serde_json::to_value(value).unwrap_or(Value::Null));
    }

    fn strings(&self, key: &str) -> Vec<String> {
        self.get(key).and_then(Value::as_array).map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_string)).collect()).unwrap_or_default()
    }

    fn error(&self) -> Option<ErrorInfo> {
        self.typed(field::ERROR)
    }

    fn set_error(&mut self, error: ErrorInfo) {
        self.put(field::ERROR, &error);
    }

    fn verdict_status(&self) -> Option<Status> {
        #[derive(Deserialize)]
        struct StatusOnly {
            status: Status,
        }
        self.typed::<StatusOnly>(field::VERDICT).map(|v| v.status)
    }
}

/// The `error` field: the record could not be processed by `stage`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorInfo {
    pub stage: String,
    /// Machine-readable kind (`missing_field`, `offline_cache_miss`, `sandbox_error`, ...).
    pub kind: String,
    pub message: String,
    /// Worth redoing in a later run (`--retry-errors`): endpoint down, budget, offline miss.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub transient: bool,
    /// For unreadable input lines: where the line was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
}

impl ErrorInfo {
    pub fn new(stage: &str, kind: &str, message: impl Into<String>, transient: bool) -> ErrorInfo {
        ErrorInfo { stage: stage.into(), kind: kind.into(), message: message.into(), transient, file: None, line: None }
    }

    /// A record made from an input line that was not a record.
    pub fn bad_input(stage: &str, file: &str, line: u64, message: String) -> ErrorInfo {
        ErrorInfo { file: Some(file.into()), line: Some(line), ..ErrorInfo::new(stage, "bad_input", message, false) }
    }

    /// A record holding only this error.
    pub fn into_record(self) -> Record {
        let mut r = Record::new();
        r.set_error(self);
        r
    }
}

/// A candidate or input that a stage dropped, written with `--rejects DIR`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RejectRecord {
    /// Machine-readable reason, e.g. `unresolved_name`, `syntax_error`, `bad_json`.
    pub reason: String,
    /// Human-readable detail (which name, which package, the parser's message, ...).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
    /// The input file (shard or `.py`) this came from.
    pub file: String,
    /// 1-based line in the input file (JSONL line), when the input is line-oriented.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    /// The document id, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub doc_id: Option<String>,
    /// The function's name, for function-level drops.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entry_point: Option<String>,
    /// Function location, for function-level drops.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<SourceRef>,
    /// The function's source, for function-level drops.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<String>,
}

/// Prompt and completion tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Some counts are estimates from the reply text: the server's `usage` was absent or
    /// covered only some choices (llama.cpp with n > 1).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub estimated: bool,
}

impl Usage {
    /// Add one generation's tokens.
    pub fn add(&mut self, prompt_tokens: u64, completion_tokens: u64, estimated: bool) {
        self.prompt_tokens += prompt_tokens;
        self.completion_tokens += completion_tokens;
        self.estimated |= estimated;
    }
}

/// `generation` (gen-tests): how the test module was obtained.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TestGeneration {
    pub model: String,
    pub usage: Usage,
    pub latency_ms: u64,
    /// Every sample came from the response cache.
    pub cache_hit: bool,
    pub attempts: u32,
    pub samples: u32,
    pub samples_valid: usize,
    /// Why each unusable sample was rejected.
    pub rejected: Vec<String>,
    /// Copies or imports of the function under test removed from the test modules.
    pub removed_from_tests: Vec<String>,
    /// The test class a model named otherwise, renamed to `TestCases`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renamed_class: Option<String>,
    /// Replies cut by the token limit whose complete code block was used, by cause
    /// (`max_tokens`: the reply reached it; `context`: the server stopped short of it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub truncated_used: Vec<String>,
    /// Requests made: 1, plus one per retry after a round of unusable replies.
    #[serde(default = "one")]
    pub tries: u32,
}

fn one() -> u32 {
    1
}

/// A program as a record held it before a rewrite replaced it. Stored under
/// `unfixed` (before a successful fix: the name says the code was not yet fixed, while
/// `fix.status = "unfixed"` means no fix was found) and `unrefined` (before refinement).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreviousProgram {
    pub code: Option<String>,
    pub function: Option<String>,
}

/// `fix.status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FixStatus {
    /// The record already passed.
    NotNeeded,
    /// A failure changing the function cannot fix (`reason`: missing_package, tests_unusable, no_function).
    NotAttempted,
    Fixed,
    /// Every round ran and no candidate passed.
    Unfixed,
    /// The loop stopped on an LLM or sandbox error (the record also has an `error`).
    Error,
}

impl FixStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            FixStatus::NotNeeded => "not_needed",
            FixStatus::NotAttempted => "not_attempted",
            FixStatus::Fixed => "fixed",
            FixStatus::Unfixed => "unfixed",
            FixStatus::Error => "error",
        }
    }
}

/// The `fix` field: what the repair loop did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FixOutcome {
    pub status: FixStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rounds_used: Option<u32>,
    /// Candidates proposed over all rounds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidates: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// The round whose candidate was kept (`fixed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub round: Option<u32>,
    /// Further passing candidates (`keep > 1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alternatives: Option<Vec<FixAlternative>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history: Option<Vec<FixAttempt>>,
}

impl FixOutcome {
    pub fn status(status: FixStatus) -> FixOutcome {
        FixOutcome {
            status,
            reason: None,
            detail: None,
            rounds_used: None,
            candidates: None,
            usage: None,
            round: None,
            alternatives: None,
            history: None,
        }
    }

    pub fn not_attempted(reason: &str, detail: impl Into<String>) -> FixOutcome {
        FixOutcome { reason: Some(reason.into()), detail: Some(detail.into()), ..FixOutcome::status(FixStatus::NotAttempted) }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FixAlternative {
    pub round: u32,
    pub code: String,
}

/// One candidate in `fix.history`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FixAttempt {
    pub round: u32,
    /// Index of the frontier program it was proposed for.
    pub parent: usize,
    pub candidate: String,
    #[serde(flatten)]
    pub outcome: AttemptOutcome,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum AttemptOutcome {
    /// Not run: the rewrite check (or reply parsing) rejected it.
    Rejected { rejected: String, detail: String },
    /// Run in the sandbox.
    Verified {
        status: Status,
        tests_passed: usize,
        tests_run: usize,
        message: Option<String>,
        /// Passed every test the fix prompt showed, failed held-out ones.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        overfit: bool,
    },
}

/// The `refine` field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RefineOutcome {
    pub refined: bool,
    /// Why the rewrite was not taken (`not_verified`, `tests_failed`, `doctest_failed`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The LLM error kind, for `reason = llm_error`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transient: Option<bool>,
    /// A rewrite that failed the tests or its doctests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejected_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub doctest: Option<DoctestOutcome>,
}

impl RefineOutcome {
    pub fn not_refined(reason: &str, detail: impl Into<String>) -> RefineOutcome {
        RefineOutcome {
            refined: false,
            reason: Some(reason.into()),
            detail: Some(detail.into()),
            kind: None,
            transient: None,
            rejected_code: None,
            doctest: None,
        }
    }

    pub fn refined(doctest: DoctestOutcome) -> RefineOutcome {
        RefineOutcome { refined: true, reason: None, detail: None, doctest: Some(doctest), ..RefineOutcome::not_refined("", "") }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DoctestOutcome {
    /// `>>>` lines in the docstring.
    pub examples: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passed: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// The `task` field: a training example made by a task stage (case2code, consensus), which
/// `export` writes as prompt → completion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    /// `case2code` | `consensus`.
    pub kind: String,
    pub prompt: String,
    pub completion: String,
    /// Stage-specific facts (template, strength, difficulty, ...), exported in `meta`.
    #[serde(flatten)]
    pub meta: Map<String, Value>,
}

/// `case2code.status` and `consensus.status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    Ok,
    Dropped,
}

/// LLM call facts kept by task stages.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CallMeta {
    pub model: String,
    pub usage: Usage,
    pub cache_hit: bool,
    pub attempts: u32,
}

/// The `case2code` field.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Case2CodeOutcome {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<CallMeta>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inputs_requested: Option<u32>,
    /// Inputs the model wrote that were not used: `{input?, reason}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejected_inputs: Option<Vec<RejectedInput>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Deterministic outcomes (values and exceptions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub examples: Option<Vec<Example>>,
    /// Inputs whose two runs disagreed, timed out, ...: `{input, reason, message}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dropped_inputs: Option<Vec<DroppedInput>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<TaskStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub show_name: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectedInput {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<String>,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DroppedInput {
    pub input: String,
    pub reason: String,
    pub message: String,
}

/// One input/output example of case2code.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Example {
    /// The input as the model wrote it (a dict literal).
    pub input: String,
    /// Argument name → value source.
    pub args: Map<String, Value>,
    pub args_text: String,
    pub call: String,
    /// `value` | `exception`.
    pub outcome: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<ExampleOutput>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exception: Option<Value>,
    /// The typed outcome token both runs agreed on.
    pub token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
}

impl Example {
    pub fn is_value(&self) -> bool {
        self.outcome == "value"
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExampleOutput {
    #[serde(rename = "type")]
    pub type_name: String,
    pub repr: String,
    pub value: Value,
}

/// The `consensus` field.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConsensusOutcome {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tests: Option<ConsensusTests>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub samples: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_sizes: Option<Vec<usize>>,
    /// Clusters in selection order (see `stages/consensus.rs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clusters: Option<Value>,
    /// Every candidate's e(r), code tokens, signature hash or exclusion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidates: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<TaskStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// |C*| / N.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strength: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_size: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selected: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_success: Option<f64>,
    /// r*'s per-input outcome tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_pass_rate: Option<f64>,
    /// A `reference` solution behaves like C*.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference_agrees: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsensusTests {
    pub requested: u32,
    /// The reply was cut by `max_tokens`: only its complete cases were kept.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
    pub valid: usize,
    pub rejected: usize,
    pub rejected_reasons: Vec<String>,
    pub with_expected: usize,
}

/// A problem record's `problem_source`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ProblemSource {
    /// Made from an existing record's docstring.
    Record { source: Value },
    /// Written by the model from a seeded topic and skill.
    Generated { topic: String, skill: String, index: Value, model: String },
}

/// A record written by `problems` (before rating and dedup add `difficulty`, `category`,
/// `duplicate_of`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Problem {
    pub id: Value,
    pub problem: String,
    pub skeleton: String,
    pub entry_point: String,
    /// A known solution (problems made from records), checked by `consensus`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    pub problem_source: ProblemSource,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub packages: Option<Value>,
}

/// `duplicate_of` of a near-duplicate problem.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DuplicateOf {
    pub id: Value,
    pub similarity: f64,
}

/// The outcome counters stages put in their manifests and `stats` reads back: one
/// definition of every key, so writer and reader cannot drift apart.
pub mod counter {
    use super::{FixStatus, Status};

    pub const VERIFIED: &str = "verified";
    pub const REFINED: &str = "refined";
    pub const DOCTEST_EXAMPLES: &str = "doctest_examples";
    pub const VALID_TEST_MODULES: &str = "valid_test_modules";
    pub const SAMPLES: &str = "samples";
    pub const EXAMPLES: &str = "examples";
    pub const SELECTED: &str = "selected";
    pub const NEAR_DUPLICATE: &str = "near_duplicate";
    pub const UPSTREAM_ERRORS: &str = "upstream_errors";
    pub const DOCUMENTS: &str = "documents";

    const VERDICT: &str = "verdict_";
    const FIXED_IN_ROUND: &str = "fixed_in_round_";
    const NOT_REFINED: &str = "not_refined_";

    pub fn verdict(status: Status) -> String {
        format!("{VERDICT}{}", status.as_str())
    }

    pub fn is_verdict(key: &str) -> bool {
        key.starts_with(VERDICT)
    }

    pub fn fix(status: FixStatus) -> String {
        format!("fix_{}", status.as_str())
    }

    pub fn fixed_in_round(round: u64) -> String {
        format!("{FIXED_IN_ROUND}{round}")
    }

    pub fn parse_fixed_in_round(key: &str) -> Option<u32> {
        key.strip_prefix(FIXED_IN_ROUND)?.parse().ok()
    }

    pub fn not_attempted(reason: &str) -> String {
        format!("not_attempted_{reason}")
    }

    pub fn not_refined(reason: &str) -> String {
        format!("{NOT_REFINED}{reason}")
    }

    /// A refine outcome that counts as an attempt (everything but records that were not
    /// verified in the first place).
    pub fn is_refine_attempt(key: &str) -> bool {
        key == REFINED || (key.starts_with(NOT_REFINED) && key != not_refined("not_verified"))
    }

    /// A generated test module rejected by gen-tests, by reason.
    pub fn test_module_rejected(reason: &str) -> String {
        format!("tests_rejected_{reason}")
    }

    /// A fix candidate rejected before or after running it, by reason.
    pub fn fix_rejected(reason: &str) -> String {
        format!("fix_rejected_{reason}")
    }

    /// Fix candidates that passed the visible tests and failed held-out ones.
    pub const FIX_OVERFIT: &str = "fix_overfit_candidates";

    /// A check the static policy refused, by rule.
    pub fn rejected(rule: &str) -> String {
        format!("rejected_{rule}")
    }

    pub fn dropped(reason: &str) -> String {
        format!("dropped_{reason}")
    }

    pub fn difficulty(d: &str) -> String {
        format!("difficulty_{d}")
    }

    const COVERAGE: &str = "coverage_";
    const MUTATION: &str = "mutation_";

    /// The buckets of the adequacy distributions, lowest first.
    pub const ADEQUACY_BUCKETS: [&str; 7] = ["unknown", "0-20%", "20-40%", "40-60%", "60-80%", "80-99%", "100%"];

    fn bucket(x: Option<f64>) -> &'static str {
        match x {
            None => ADEQUACY_BUCKETS[0],
            Some(v) if v >= 1.0 => ADEQUACY_BUCKETS[6],
            Some(v) => ADEQUACY_BUCKETS[1 + ((v.max(0.0) * 5.0) as usize).min(4)],
        }
    }

    /// A verified record's line-coverage bucket (`coverage_80-99%`).
    pub fn coverage(x: Option<f64>) -> String {
        format!("{COVERAGE}{}", bucket(x))
    }

    /// A verified record's mutation-score bucket (`mutation_60-80%`).
    pub fn mutation(x: Option<f64>) -> String {
        format!("{MUTATION}{}", bucket(x))
    }

    pub fn coverage_key(bucket: &str) -> String {
        format!("{COVERAGE}{bucket}")
    }

    pub fn mutation_key(bucket: &str) -> String {
        format!("{MUTATION}{bucket}")
    }

    /// (`coverage` | `mutation`, bucket) of an adequacy key.
    pub fn parse_adequacy(key: &str) -> Option<(&'static str, &str)> {
        key.strip_prefix(COVERAGE).map(|b| ("coverage", b)).or_else(|| key.strip_prefix(MUTATION).map(|b| ("mutation", b)))
    }

    /// Consensus strength bucket, one decimal (`strength_0.6`).
    /// Case2Code: functions by the number of IO examples they got.
    pub fn examples_per_function(n: usize) -> String {
        let bucket = match n {
            0..=4 => n.to_string(),
            5..=9 => "5-9".into(),
            _ => "10+".into(),
        };
        format!("examples_per_function_{bucket}")
    }

    pub fn strength(s: f64) -> String {
        format!("strength_{:.1}", (s * 10.0).floor() / 10.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn typed_fields_round_trip_and_unknown_fields_pass_through() {
        let mut r: Record = serde_json::from_value(json!({"id": "x", "keep": {"nested": [1, 2]}, "verdict": {"status": "pass"}})).unwrap();
        assert!(r.verified());
        r.put(field::FIX, &FixOutcome::status(FixStatus::NotNeeded));
        assert_eq!(r["fix"], json!({"status": "not_needed"}));
        assert_eq!(r.typed::<FixOutcome>(field::FIX).unwrap().status, FixStatus::NotNeeded);
        assert_eq!(r["keep"]["nested"][1], 2);
        assert!(r.error().is_none());
        r.set_error(ErrorInfo::new("fix", "prompt", "bad", true));
        assert_eq!(r["error"], json!({"stage": "fix", "kind": "prompt", "message": "bad", "transient": true}));
        assert_eq!(r.error().unwrap().kind, "prompt");
    }

    #[test]
    fn fix_history_entries_keep_their_two_shapes() {
        let rejected = FixAttempt {
            round: 1,
            parent: 0,
            candidate: "c".into(),
            outcome: AttemptOutcome::Rejected { rejected: "duplicate".into(), detail: "d".into() },
        };
        let v = serde_json::to_value(&rejected).unwrap();
        assert_eq!(v, json!({"round": 1, "parent": 0, "candidate": "c", "rejected": "duplicate", "detail": "d"}));
        assert_eq!(serde_json::from_value::<FixAttempt>(v).unwrap(), rejected);
        let verified = json!({"round": 2, "parent": 1, "candidate": "c", "status": "fail", "tests_passed": 1, "tests_run": 3, "message": null});
        let a: FixAttempt = serde_json::from_value(verified.clone()).unwrap();
        assert!(matches!(a.outcome, AttemptOutcome::Verified { status: Status::Fail, tests_passed: 1, .. }));
        assert_eq!(serde_json::to_value(&a).unwrap(), verified);
    }

    #[test]
    fn counters_parse_what_they_build() {
        assert_eq!(counter::parse_fixed_in_round(&counter::fixed_in_round(3)), Some(3));
        assert!(counter::is_verdict(&counter::verdict(Status::Pass)));
        assert!(counter::is_refine_attempt(&counter::not_refined("tests_failed")));
        assert!(!counter::is_refine_attempt(&counter::not_refined("not_verified")));
        assert_eq!(counter::strength(0.66), "strength_0.6");
    }
}
