//! From what a worker observed to a verdict. `pass` requires every one of: the report came
//! on the private channel with the job's nonce; no forged or duplicate report lines; the
//! harness ran exactly as many tests as the Rust-side parse counted, and at least one; every
//! test passed (no failure, error, skip, expected failure, unexpected success); the unittest
//! framework was not modified; the child finished its run, exited 0, and left no process.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Pass,
    Fail,
    /// The program or the tests do not compile or import.
    Error,
    Timeout,
    Oom,
    /// Died by a signal or exited before finishing the tests.
    Killed,
    NoTests,
    /// Our fault (worker would not start, protocol failure), never the code's.
    SandboxError,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Fail => "fail",
            Status::Error => "error",
            Status::Timeout => "timeout",
            Status::Oom => "oom",
            Status::Killed => "killed",
            Status::NoTests => "no_tests",
            Status::SandboxError => "sandbox_error",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Failure {
    /// `Class.method`, or the phase (`code`, `tests`) for import failures.
    pub test: String,
    /// fail | error | skip | expected_failure | unexpected_success | tamper | forged_report |
    /// lingering_process | count_mismatch
    pub kind: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub traceback: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    pub status: Status,
    /// `test*` methods counted by parsing the test module.
    pub tests_found: usize,
    pub tests_run: usize,
    pub tests_passed: usize,
    pub failures: Vec<Failure>,
    pub duration_ms: u64,
    /// The isolation actually in effect for this check.
    pub isolation: String,
    /// Why the status is what it is, in one line (empty for pass).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// Captured stdout+stderr (head and tail kept).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub output: String,
}

impl Verdict {
    pub fn new(status: Status, tests_found: usize, isolation: &str, message: impl Into<String>) -> Self {
        Verdict {
            status,
            tests_found,
            tests_run: 0,
            tests_passed: 0,
            failures: Vec::new(),
            duration_ms: 0,
            isolation: isolation.to_string(),
            message: message.into(),
            output: String::new(),
        }
    }
}

const SIGKILL: i64 = 9;
const SIGXCPU: i64 = 24;

fn text(v: &Value, key: &str) -> String {
    v.get(key).and_then(Value::as_str).unwrap_or("").to_string()
}

/// Judge one worker result (the harness server's JSON answer).
pub fn judge(result: &Value, tests_found: usize, isolation: &str, output_cap: usize) -> Verdict {
    let mut v = Verdict::new(Status::Pass, tests_found, isolation, "");
    if let Some(err) = result.get("sandbox_error").and_then(Value::as_str) {
        v.status = Status::SandboxError;
        v.message = format!("sandbox failure: {err}");
        return v;
    }
    v.duration_ms = result.get("duration_ms").and_then(Value::as_u64).unwrap_or(0);
    v.output = clip(&text(result, "output"), output_cap);

    let mut setup_error: Option<String> = None;
    let mut phase_error: Option<&Value> = None;
    let mut tamper: Option<&Value> = None;
    let mut harness_found: Option<usize> = None;
    let mut done = false;
    let mut memory_error = false;
    let mut seen = BTreeSet::new();
    let mut duplicates = 0usize;
    let mut class_errors = Vec::new();
    for line in result.get("reports").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]) {
        let (Some(kind), Some(payload)) = (line.get(0).and_then(Value::as_str), line.get(1)) else { continue };
        match kind {
            "setup_error" => setup_error = Some(text(payload, "message")),
            "phase_error" => phase_error = phase_error.or(Some(payload)),
            "tamper" => tamper = tamper.or(Some(payload)),
            "found" => harness_found = payload.get("tests").and_then(Value::as_array).map(Vec::len),
            "done" => done = true,
            "class_error" => class_errors.push(text(payload, "message")),
            "test" => {
                let name = text(payload, "test");
                if !seen.insert(name.clone()) {
                    duplicates += 1;
                    continue;
                }
                v.tests_run += 1;
                memory_error |= payload.get("memory_error").and_then(Value::as_bool).unwrap_or(false);
                let kind = text(payload, "kind");
                if kind == "pass" {
                    v.tests_passed += 1;
                } else {
                    v.failures.push(Failure { test: name, kind, message: text(payload, "message"), traceback: text(payload, "traceback") });
                }
            }
            _ => {}
        }
    }
    let forged = result.get("forged_lines").and_then(Value::as_u64).unwrap_or(0) as usize + duplicates;
    let exit = result.get("exit").cloned().unwrap_or(Value::Null);
    let signal = exit.get("signal").and_then(Value::as_i64);
    let code = exit.get("code").and_then(Value::as_i64);
    let lingering = result.get("lingering").and_then(Value::as_u64).unwrap_or(0);
    let timed_out = result.get("timed_out").and_then(Value::as_bool).unwrap_or(false);

    let (status, message) = if let Some(e) = setup_error {
        (Status::SandboxError, format!("could not set up the check: {e}"))
    } else if memory_error && !timed_out {
        // A check that ran out of memory often dies right after; the cause is what matters.
        (Status::Oom, "MemoryError during a test".to_string())
    } else if timed_out || signal == Some(SIGXCPU) {
        (Status::Timeout, format!("exceeded the time limit after {} ms", v.duration_ms))
    } else if let Some(pe) = phase_error {
        let phase = text(pe, "phase");
        v.failures.push(Failure { test: phase.clone(), kind: "error".into(), message: text(pe, "message"), traceback: text(pe, "traceback") });
        if pe.get("memory_error").and_then(Value::as_bool).unwrap_or(false) {
            (Status::Oom, format!("MemoryError while importing the {phase}"))
        } else {
            (Status::Error, format!("the {phase} failed to import: {}", text(pe, "message")))
        }
    } else if let Some(t) = tamper {
        let changed = t.get("changed").map(|c| c.to_string()).unwrap_or_default();
        v.failures.push(Failure { test: "import".into(), kind: "tamper".into(), message: format!("modified {changed}"), traceback: String::new() });
        (Status::Fail, format!("importing the code modified the unittest framework ({changed})"))
    } else if let Some(sig) = signal {
        let what = if sig == SIGKILL { "SIGKILL".to_string() } else { format!("signal {sig}") };
        (Status::Killed, format!("the test process died by {what}"))
    } else if !done {
        (Status::Killed, format!("the test process exited (code {}) before finishing the tests", code.unwrap_or(-1)))
    } else if code != Some(0) {
        (Status::Killed, format!("the test process exited with code {}", code.unwrap_or(-1)))
    } else if memory_error {
        (Status::Oom, "MemoryError during a test".to_string())
    } else if tests_found == 0 || harness_found == Some(0) {
        (Status::NoTests, "the test module defines no test methods".to_string())
    } else if forged > 0 {
        v.failures.push(Failure {
            test: "report".into(),
            kind: "forged_report".into(),
            message: format!("{forged} report lines without the nonce or repeated"),
            traceback: String::new(),
        });
        (Status::Fail, "report lines were forged".to_string())
    } else if v.tests_run != tests_found {
        v.failures.push(Failure {
            test: "count".into(),
            kind: "count_mismatch".into(),
            message: format!("ran {} tests; the test module defines {tests_found}", v.tests_run),
            traceback: String::new(),
        });
        (Status::Error, format!("ran {} tests but the test module defines {tests_found}", v.tests_run))
    } else if lingering > 0 {
        v.failures.push(Failure {
            test: "processes".into(),
            kind: "lingering_process".into(),
            message: format!("{lingering} processes left running (killed)"),
            traceback: String::new(),
        });
        (Status::Fail, format!("{lingering} processes were left running after the tests"))
    } else if !v.failures.is_empty() {
        let first = &v.failures[0];
        (
            Status::Fail,
            format!("{} of {} tests did not pass; first: {} ({}): {}", v.failures.len(), v.tests_run, first.test, first.kind, first.message),
        )
    } else if !class_errors.is_empty() {
        (Status::Fail, class_errors.join("; "))
    } else {
        (Status::Pass, String::new())
    };
    v.status = status;
    v.message = message;
    v
}

/// Keep head and tail of long text.
pub fn clip(text: &str, cap: usize) -> String {
    if text.len() <= cap {
        return text.to_string();
    }
    let half = cap / 2;
    let mut head_end = half;
    while !text.is_char_boundary(head_end) {
        head_end -= 1;
    }
    let mut tail_start = text.len() - half;
    while !text.is_char_boundary(tail_start) {
        tail_start += 1;
    }
    format!("{}\n... [{} bytes cut] ...\n{}", &text[..head_end], tail_start - head_end, &text[tail_start..])
}
