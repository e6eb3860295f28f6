//! From what a worker observed to a verdict. `pass` requires every one of: the report came
//! on the private channel with the job's nonce; no forged or duplicate report lines; the
//! harness ran exactly as many tests as the Rust-side parse counted, and at least one; every
//! test passed (no failure, error, skip, expected failure, unexpected success); the unittest
//! framework was not modified; the child finished its run, exited 0, and left no process.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::testcount::TestPlan;

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
    /// Passed once, then not in a rerun (see `adequacy`): not a pass.
    Flaky,
    /// Refused before running by the static policy (`reason` names the rule, `where` the line).
    Rejected,
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
            Status::Flaky => "flaky",
            Status::Rejected => "rejected",
            Status::SandboxError => "sandbox_error",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Failure {
    /// `Class.method`, or the phase (`code`, `tests`) for import failures.
    #[serde(default)]
    pub test: String,
    /// fail | error | skip | expected_failure | unexpected_success | tamper | forged_report |
    /// lingering_process | count_mismatch
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub message: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub traceback: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    pub status: Status,
    /// `test*` methods counted by parsing the test module.
    #[serde(default)]
    pub tests_found: usize,
    #[serde(default)]
    pub tests_run: usize,
    #[serde(default)]
    pub tests_passed: usize,
    #[serde(default)]
    pub failures: Vec<Failure>,
    #[serde(default)]
    pub duration_ms: u64,
    /// The isolation actually in effect for this check.
    #[serde(default)]
    pub isolation: String,
    /// Why the status is what it is, in one line (empty for pass).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// Captured stdout+stderr (head and tail kept).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub output: String,
    /// For `rejected`: the policy rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// For `rejected`: `code:LINE` or `tests:LINE`.
    #[serde(default, rename = "where", skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// How strong the tests that admitted a pass are (coverage, mutation score, reruns);
    /// present on verdicts that were assessed (see `sandbox::adequacy`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adequacy: Option<super::adequacy::Adequacy>,
    /// Tests during which the function under test never ran (when calls were watched).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub uncalled_tests: Vec<String>,
    /// The worker that ran the check (flake reruns go to others).
    #[serde(skip)]
    pub worker: Option<usize>,
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
            reason: None,
            location: None,
            adequacy: None,
            uncalled_tests: Vec::new(),
            worker: None,
        }
    }
}

const SIGKILL: i64 = 9;
const SIGXCPU: i64 = 24;

fn text(v: &Value, key: &str) -> String {
    v.get(key).and_then(Value::as_str).unwrap_or("").to_string()
}

/// What the report lines of one check said (the harness's private channel).
#[derive(Default)]
struct Reports<'a> {
    setup_error: Option<String>,
    phase_error: Option<&'a Value>,
    tamper: Option<&'a Value>,
    /// Tests the harness collected.
    harness_found: Option<usize>,
    done: bool,
    memory_error: bool,
    /// Report lines naming a test already reported.
    duplicates: usize,
    class_errors: Vec<String>,
    /// The tests reported, by name, once each.
    ran: Vec<String>,
    /// Calls of the function under test were watched (`Some(false)`: asked for, but the
    /// harness could not watch them).
    calls_watched: Option<bool>,
    /// Tests that ran without the function under test running.
    uncalled: Vec<String>,
}

impl<'a> Reports<'a> {
    /// Read the report lines, counting tests into `v`.
    fn read(result: &'a Value, v: &mut Verdict) -> Reports<'a> {
        let mut r = Reports::default();
        let mut seen = BTreeSet::new();
        for line in result.get("reports").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]) {
            let (Some(kind), Some(payload)) = (line.get(0).and_then(Value::as_str), line.get(1)) else { continue };
            match kind {
                "setup_error" => r.setup_error = Some(text(payload, "message")),
                "phase_error" => r.phase_error = r.phase_error.or(Some(payload)),
                "tamper" => r.tamper = r.tamper.or(Some(payload)),
                "found" => r.harness_found = payload.get("tests").and_then(Value::as_array).map(Vec::len),
                "done" => r.done = true,
                "class_error" => r.class_errors.push(text(payload, "message")),
                "calls" => r.calls_watched = Some(payload.get("watched").and_then(Value::as_bool).unwrap_or(false)),
                "test" => {
                    let name = text(payload, "test");
                    if !seen.insert(name.clone()) {
                        r.duplicates += 1;
                        continue;
                    }
                    r.ran.push(name.clone());
                    if payload.get("called").and_then(Value::as_bool) != Some(true) {
                        r.uncalled.push(name.clone());
                    }
                    v.tests_run += 1;
                    r.memory_error |= payload.get("memory_error").and_then(Value::as_bool).unwrap_or(false);
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
        r
    }
}

/// How the child ended, as the supervisor saw it.
struct Ending {
    signal: Option<i64>,
    code: Option<i64>,
    lingering: u64,
    timed_out: bool,
    forged_lines: usize,
    /// The worker's memory cgroup killed something during the check.
    cgroup_oom: bool,
}

impl Ending {
    fn read(result: &Value) -> Ending {
        let exit = result.get("exit").cloned().unwrap_or(Value::Null);
        Ending {
            signal: exit.get("signal").and_then(Value::as_i64),
            code: exit.get("code").and_then(Value::as_i64),
            lingering: result.get("lingering").and_then(Value::as_u64).unwrap_or(0),
            timed_out: result.get("timed_out").and_then(Value::as_bool).unwrap_or(false),
            forged_lines: result.get("forged_lines").and_then(Value::as_u64).unwrap_or(0) as usize,
            cgroup_oom: result.get("cgroup_oom").and_then(Value::as_bool).unwrap_or(false),
        }
    }
}

/// Judge one worker result (the harness server's JSON answer).
pub fn judge(result: &Value, plan: &TestPlan, isolation: &str, output_cap: usize) -> Verdict {
    let mut v = Verdict::new(Status::Pass, plan.required.len(), isolation, "");
    if let Some(err) = result.get("sandbox_error").and_then(Value::as_str) {
        v.status = Status::SandboxError;
        v.message = format!("sandbox failure: {err}");
        return v;
    }
    v.duration_ms = result.get("duration_ms").and_then(Value::as_u64).unwrap_or(0);
    v.output = clip(&text(result, "output"), output_cap);
    let reports = Reports::read(result, &mut v);
    let ending = Ending::read(result);
    let (status, message) = decide(&mut v, plan, reports, &ending);
    v.status = status;
    v.message = message;
    v
}

/// The status, in order of precedence: a failure to set up, running out of memory or
/// time, a load error, tampering, a death, a missing end, then the tests themselves.
/// Only a run that passes every earlier gate and every test is a pass.
fn decide(v: &mut Verdict, plan: &TestPlan, r: Reports, e: &Ending) -> (Status, String) {
    let forged = e.forged_lines + r.duplicates;
    let fail = |v: &mut Verdict, test: &str, kind: &str, message: String| {
        v.failures.push(Failure { test: test.into(), kind: kind.into(), message, traceback: String::new() });
    };
    if let Some(err) = r.setup_error {
        return (Status::SandboxError, format!("could not set up the check: {err}"));
    }
    if r.memory_error && !e.timed_out {
        // A check that ran out of memory often dies right after; the cause is what matters.
        return (Status::Oom, "MemoryError during a test".to_string());
    }
    if e.cgroup_oom {
        return (Status::Oom, "the check went over its memory limit (memory cgroup)".to_string());
    }
    if e.timed_out || e.signal == Some(SIGXCPU) {
        return (Status::Timeout, format!("exceeded the time limit after {} ms", v.duration_ms));
    }
    if let Some(pe) = r.phase_error {
        let phase = text(pe, "phase");
        v.failures.push(Failure { test: phase.clone(), kind: "error".into(), message: text(pe, "message"), traceback: text(pe, "traceback") });
        if pe.get("memory_error").and_then(Value::as_bool).unwrap_or(false) {
            return (Status::Oom, format!("MemoryError while importing the {phase}"));
        }
        return (Status::Error, format!("the {phase} failed to import: {}", text(pe, "message")));
    }
    if let Some(t) = r.tamper {
        let changed = t.get("changed").map(|c| c.to_string()).unwrap_or_default();
        fail(v, "import", "tamper", format!("modified {changed}"));
        return (Status::Fail, format!("importing the code modified the unittest framework ({changed})"));
    }
    if let Some(sig) = e.signal {
        let what = if sig == SIGKILL { "SIGKILL".to_string() } else { format!("signal {sig}") };
        return (Status::Killed, format!("the test process died by {what}"));
    }
    if !r.done {
        return (Status::Killed, format!("the test process exited (code {}) before finishing the tests", e.code.unwrap_or(-1)));
    }
    if e.code != Some(0) {
        return (Status::Killed, format!("the test process exited with code {}", e.code.unwrap_or(-1)));
    }
    if r.memory_error {
        return (Status::Oom, "MemoryError during a test".to_string());
    }
    if plan.possible() == 0 || r.harness_found == Some(0) {
        return (Status::NoTests, "the test module defines no test methods".to_string());
    }
    if forged > 0 {
        fail(v, "report", "forged_report", format!("{forged} report lines without the nonce or repeated"));
        return (Status::Fail, "report lines were forged".to_string());
    }
    let run = v.tests_run;
    match plan.accepts(r.ran.iter().map(String::as_str)) {
        Ok(n) => v.tests_found = n,
        Err(why) => {
            fail(v, "count", "count_mismatch", format!("ran {run} tests; {why}"));
            return (Status::Error, format!("ran {run} tests, not the ones the test module defines: {why}"));
        }
    }
    if r.calls_watched == Some(true) {
        if run > 0 && r.uncalled.len() == run {
            v.reason = Some("function_not_called".into());
            v.location = Some("tests".into());
            return (Status::Rejected, format!("no test made the function under test run ({run} tests ran)"));
        }
        v.uncalled_tests = r.uncalled;
    }
    if e.lingering > 0 {
        fail(v, "processes", "lingering_process", format!("{} processes left running (killed)", e.lingering));
        return (Status::Fail, format!("{} processes were left running after the tests", e.lingering));
    }
    if let Some(first) = v.failures.first() {
        let message = format!("{} of {} tests did not pass; first: {} ({}): {}", v.failures.len(), run, first.test, first.kind, first.message);
        return (Status::Fail, message);
    }
    if !r.class_errors.is_empty() {
        return (Status::Fail, r.class_errors.join("; "));
    }
    (Status::Pass, String::new())
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn test_line(name: &str, kind: &str) -> Value {
        json!(["test", {"test": name, "kind": kind, "message": if kind == "pass" { "" } else { "boom" }}])
    }

    /// A clean run of `n` passing tests, to be spoilt one way per case.
    fn clean(n: usize) -> Value {
        let mut reports = vec![json!(["found", {"tests": (0..n).map(|i| format!("T.test_{i}")).collect::<Vec<_>>()}])];
        reports.extend((0..n).map(|i| test_line(&format!("T.test_{i}"), "pass")));
        reports.push(json!(["done", {}]));
        json!({"reports": reports, "exit": {"code": 0}, "duration_ms": 5, "output": ""})
    }

    fn plan(n: usize) -> TestPlan {
        TestPlan::exactly((0..n).map(|i| format!("T.test_{i}")))
    }

    fn with(mut base: Value, f: impl FnOnce(&mut Value)) -> Value {
        f(&mut base);
        base
    }

    fn push_report(v: &mut Value, line: Value) {
        v["reports"].as_array_mut().unwrap().insert(1, line);
    }

    #[test]
    fn judge_table() {
        let cases: Vec<(&str, Value, usize, Status, &str)> = vec![
            ("clean pass", clean(2), 2, Status::Pass, ""),
            ("sandbox failure", json!({"sandbox_error": "worker gone"}), 2, Status::SandboxError, "sandbox failure"),
            ("setup error", with(clean(2), |v| push_report(v, json!(["setup_error", {"message": "no tmp"}]))), 2, Status::SandboxError, "set up"),
            ("timeout", with(clean(2), |v| v["timed_out"] = json!(true)), 2, Status::Timeout, "time limit"),
            ("cpu limit", with(clean(2), |v| v["exit"] = json!({"signal": 24})), 2, Status::Timeout, "time limit"),
            (
                "memory error in a test",
                with(clean(1), |v| {
                    v["reports"][1] = json!(["test", {"test": "T.test_0", "kind": "error", "message": "MemoryError", "memory_error": true}])
                }),
                1,
                Status::Oom,
                "MemoryError",
            ),
            (
                "import error",
                with(clean(1), |v| push_report(v, json!(["phase_error", {"phase": "code", "message": "ImportError: x"}]))),
                1,
                Status::Error,
                "the code failed to import",
            ),
            (
                "tampering",
                with(clean(1), |v| push_report(v, json!(["tamper", {"changed": ["TestCase.run"]}]))),
                1,
                Status::Fail,
                "modified the unittest",
            ),
            ("killed", with(clean(2), |v| v["exit"] = json!({"signal": 9})), 2, Status::Killed, "SIGKILL"),
            (
                "memory cgroup OOM kill",
                with(clean(2), |v| {
                    v["exit"] = json!({"signal": 9});
                    v["cgroup_oom"] = json!(true);
                }),
                2,
                Status::Oom,
                "memory limit",
            ),
            (
                "exited before the end",
                with(clean(2), |v| {
                    v["reports"].as_array_mut().unwrap().pop();
                }),
                2,
                Status::Killed,
                "before finishing",
            ),
            ("nonzero exit after done", with(clean(2), |v| v["exit"] = json!({"code": 3})), 2, Status::Killed, "code 3"),
            ("no tests counted", clean(0), 0, Status::NoTests, "no test methods"),
            ("forged lines", with(clean(2), |v| v["forged_lines"] = json!(1)), 2, Status::Fail, "forged"),
            ("a test reported twice", with(clean(2), |v| push_report(v, test_line("T.test_0", "pass"))), 2, Status::Fail, "forged"),
            ("fewer tests ran than counted", clean(2), 3, Status::Error, "did not run (T.test_2)"),
            ("more tests ran than counted", clean(3), 2, Status::Error, "does not define (T.test_2)"),
            (
                "a renamed test, same count",
                with(clean(2), |v| v["reports"][2] = test_line("T.test_renamed", "pass")),
                2,
                Status::Error,
                "does not define (T.test_renamed)",
            ),
            ("lingering process", with(clean(2), |v| v["lingering"] = json!(1)), 2, Status::Fail, "left running"),
            ("a failing test", with(clean(2), |v| v["reports"][2] = test_line("T.test_1", "fail")), 2, Status::Fail, "1 of 2 tests"),
            ("a skipped test is no pass", with(clean(2), |v| v["reports"][2] = test_line("T.test_1", "skip")), 2, Status::Fail, "(skip)"),
            (
                "class error",
                with(clean(1), |v| push_report(v, json!(["class_error", {"message": "setUpClass failed"}]))),
                1,
                Status::Fail,
                "setUpClass",
            ),
            // Precedence: the earlier gate decides.
            (
                "timeout beats a failing test",
                with(clean(2), |v| {
                    v["timed_out"] = json!(true);
                    v["reports"][2] = test_line("T.test_1", "fail");
                }),
                2,
                Status::Timeout,
                "time limit",
            ),
            (
                "watched calls, none made",
                with(clean(2), |v| push_report(v, json!(["calls", {"watched": true}]))),
                2,
                Status::Rejected,
                "no test made the function under test run",
            ),
            (
                "watched calls, one test called",
                with(clean(2), |v| {
                    push_report(v, json!(["calls", {"watched": true}]));
                    v["reports"][2][1]["called"] = json!(true);
                }),
                2,
                Status::Pass,
                "",
            ),
            ("tampering beats passing tests", with(clean(2), |v| push_report(v, json!(["tamper", {"changed": ["x"]}]))), 2, Status::Fail, "modified"),
        ];
        for (name, result, found, status, needle) in cases {
            let v = judge(&result, &plan(found), "none", 1000);
            assert_eq!(v.status, status, "{name}: {}", v.message);
            assert!(v.message.contains(needle), "{name}: {:?} lacks {needle:?}", v.message);
            assert_eq!(v.status == Status::Pass, v.message.is_empty(), "{name}");
        }
    }

    #[test]
    fn counts_come_from_the_report_lines() {
        let v = judge(&with(clean(3), |v| v["reports"][2] = test_line("T.test_1", "fail")), &plan(3), "bwrap", 1000);
        assert_eq!((v.tests_found, v.tests_run, v.tests_passed, v.failures.len()), (3, 3, 2, 1));
        assert_eq!(v.failures[0].test, "T.test_1");
        assert_eq!(v.isolation, "bwrap");
    }
}
