//! How strong are the tests that admitted a pass? Three measurements, made wherever a
//! record's final verdict is made:
//!
//! 1. **Reruns** (flake check): the pass is run again `reruns` times, each in a fresh fork
//!    of *another* worker when there are several — another process, so another string-hash
//!    seed — with fresh `random`/numpy seeds and a later clock. Any rerun that does not
//!    pass makes the status `flaky` (not a pass), with every run's status kept.
//! 2. **Line coverage**: the first rerun records which executable lines of the function
//!    under test ran (the harness's `Coverage`: `sys.monitoring` on 3.12+, a line recorder
//!    compiled into the function on 3.10/3.11); a test that removes or replaces the tracer
//!    or the recorder makes it unknown (`null`), never higher.
//! 3. **Mutation score**: up to `mutants` mutants of the function (`python::mutants`) run
//!    against the tests in one forked child, each stopped at its first failing test; a
//!    mutant is killed when a test fails, errors, times out (`mutant_timeout_factor` × the
//!    original's duration, at least `mutant_timeout_min`) or the process dies.
//!
//! Nothing here turns a failure into a pass: a verdict that is not `pass` is returned as
//! it came, and the measurements only add `adequacy` (or demote a pass to `flaky`).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::verdict::{Status, Verdict};
use super::Sandbox;
use crate::python::mutants;

/// Config section `[adequacy]` (flags override).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdequacySettings {
    /// Assess passing verdicts at all (off: verdicts carry no `adequacy`).
    pub enabled: bool,
    /// Measure line coverage of the function under test (in the first rerun).
    pub coverage: bool,
    /// Mutants per function (0 = no mutation analysis).
    pub mutants: usize,
    /// Reruns of a pass (flake check).
    pub reruns: usize,
    /// A mutant's time limit as a multiple of the original check's duration.
    pub mutant_timeout_factor: f64,
    /// ... and at least this many seconds.
    pub mutant_timeout_min: f64,
    /// Surviving mutants kept in the record.
    pub survivors: usize,
    /// Seed of the mutant sample (with the program's hash).
    pub seed: u64,
}

impl Default for AdequacySettings {
    fn default() -> Self {
        Self { enabled: true, coverage: true, mutants: 20, reruns: 2, mutant_timeout_factor: 5.0, mutant_timeout_min: 0.5, survivors: 5, seed: 0 }
    }
}

/// A mutant the tests did not kill.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Survivor {
    pub operator: String,
    pub line: u32,
    pub diff: String,
    /// Whether the tests ran the mutated line (null without coverage).
    #[serde(default)]
    pub covered: Option<bool>,
}

/// `verdict.adequacy`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Adequacy {
    /// Share of the function's executable lines the tests ran (null: unknown).
    pub line_coverage: Option<f64>,
    pub lines_total: usize,
    pub lines_hit: usize,
    /// Executable lines the tests never ran (first 50).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missed_lines: Vec<u32>,
    /// Why coverage is unknown, or how it was measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coverage_note: Option<String>,
    /// Not measured yet (null).
    #[serde(default)]
    pub branch_coverage: Option<f64>,
    /// Valid mutants run (compiled, distinct, not bytecode-equivalent).
    pub mutants: usize,
    pub killed: usize,
    /// killed / mutants (null without valid mutants).
    pub mutation_score: Option<f64>,
    /// Surviving mutants (first `survivors`).
    #[serde(default)]
    pub survivors: Vec<Survivor>,
    /// Mutants that compiled to the original's bytecode (dropped, not counted).
    pub equivalent_suspected: usize,
    /// Mutants that did not compile (dropped).
    #[serde(default)]
    pub invalid_mutants: usize,
    /// How the killed mutants were killed: fail, error, timeout, crash, tamper, phase_error.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub killed_by: BTreeMap<String, usize>,
    /// Why there is no mutation score, or what was incomplete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mutation_note: Option<String>,
    /// Status of each rerun of the pass.
    #[serde(default)]
    pub reruns: Vec<Status>,
    /// Distinct worker processes the original and its reruns ran in.
    #[serde(default)]
    pub rerun_processes: usize,
}

impl Sandbox {
    /// Check and assess: the verdict of `check`, with `adequacy` when it passed.
    pub fn verify(&self, code: &str, tests: &str, entry: Option<&str>, settings: &AdequacySettings) -> Verdict {
        let first = self.check_calls(code, tests, entry);
        self.assess(code, tests, entry, first, settings)
    }

    /// One check with the coverage tracer on (what the first rerun does): the verdict and
    /// the coverage fields of `Adequacy` (for benchmarks and tools).
    pub fn check_covered(&self, code: &str, tests: &str, entry: Option<&str>) -> (Verdict, Adequacy) {
        let mut adequacy = Adequacy::default();
        let (verdict, raw) = self.run_check(code, tests, self.settings.timeout, json!({"coverage": entry.unwrap_or("")}), None);
        read_coverage(raw.as_ref(), &mut adequacy);
        (verdict, adequacy)
    }

    /// Add the adequacy measurements to a passing verdict (`first`, the check of `code`
    /// with `tests`); a pass that does not hold up on rerun becomes `flaky`.
    pub fn assess(&self, code: &str, tests: &str, entry: Option<&str>, first: Verdict, settings: &AdequacySettings) -> Verdict {
        if !settings.enabled || first.status != Status::Pass {
            return first;
        }
        let mut verdict = first;
        let mut adequacy = Adequacy::default();
        let base = verdict.worker.unwrap_or(0);
        let mut processes = BTreeSet::from([base]);
        let mut failed: Option<Verdict> = None;
        let mut hit_lines = None;
        let runs = settings.reruns.max(usize::from(settings.coverage));
        if !settings.coverage {
            adequacy.coverage_note = Some("coverage not measured ([adequacy] coverage = false)".into());
        }
        for i in 0..runs {
            let measure = i == 0 && settings.coverage;
            let extra = if measure { json!({"coverage": entry.unwrap_or("")}) } else { json!({}) };
            let worker = (self.settings.workers > 1).then_some(base + 1 + i);
            let (rerun, raw) = self.run_check(code, tests, self.settings.timeout, extra, worker);
            if measure {
                hit_lines = read_coverage(raw.as_ref(), &mut adequacy);
            }
            processes.extend(rerun.worker);
            // The coverage run executes an instrumented program (slower on 3.10/3.11): its
            // timeout says nothing about flakiness, only that coverage is unknown.
            let instrumented_timeout = measure && rerun.status == Status::Timeout;
            if instrumented_timeout {
                hit_lines = None;
                (adequacy.line_coverage, adequacy.lines_hit) = (None, 0);
                adequacy.missed_lines.clear();
                adequacy.coverage_note = Some("unknown: the coverage run exceeded the time limit".into());
            }
            if failed.is_none() && !instrumented_timeout && !matches!(rerun.status, Status::Pass | Status::SandboxError) {
                failed = Some(rerun.clone());
            }
            adequacy.reruns.push(rerun.status);
        }
        adequacy.rerun_processes = processes.len();
        if let Some(rerun) = failed {
            let statuses: Vec<&str> = adequacy.reruns.iter().map(|s| s.as_str()).collect();
            verdict.status = Status::Flaky;
            verdict.message = format!("passed, then not on rerun (reruns: {}): {}", statuses.join(", "), rerun.message);
            verdict.failures = rerun.failures;
            adequacy.mutation_note = Some("not run: the pass is flaky".into());
            verdict.adequacy = Some(adequacy);
            return verdict;
        }
        let subject = Subject { code, tests, entry };
        self.mutation_analysis(&subject, verdict.duration_ms, settings, hit_lines.as_ref(), &mut adequacy);
        verdict.adequacy = Some(adequacy);
        verdict
    }

    /// Run the mutants of `subject` against its tests (`original_ms`: the original check's
    /// duration, for the mutants' time limit).
    fn mutation_analysis(
        &self,
        subject: &Subject,
        original_ms: u64,
        settings: &AdequacySettings,
        hit_lines: Option<&BTreeSet<u32>>,
        adequacy: &mut Adequacy,
    ) {
        let Subject { code, tests, entry } = *subject;
        if settings.mutants == 0 {
            adequacy.mutation_note = Some("mutation analysis off ([adequacy] mutants = 0)".into());
            return;
        }
        let generated = mutants::generate(code, entry, settings.mutants, settings.seed);
        if generated.mutants.is_empty() {
            adequacy.mutation_note = generated.reason.or(Some("no mutants".into()));
            return;
        }
        let per_mutant = (settings.mutant_timeout_factor * original_ms as f64 / 1000.0).max(settings.mutant_timeout_min).min(self.settings.timeout);
        let n = generated.mutants.len();
        let total = per_mutant * (n as f64 + 1.0) * 2.0;
        let sources: Vec<&str> = generated.mutants.iter().map(|m| m.source.as_str()).collect();
        let fields = json!({
            "kind": "mutants", "code": code, "tests": tests, "mutants": sources,
            "timeout": per_mutant, "total_timeout": total, "cpu_limit": total.ceil(),
        });
        let result = match self.submit(fields, Duration::from_secs_f64(total + 15.0)) {
            Ok(r) => r,
            Err(e) => {
                adequacy.mutation_note = Some(format!("sandbox failure: {e}"));
                return;
            }
        };
        if let Some(e) = result.get("sandbox_error").or(result.get("setup_error")).and_then(Value::as_str) {
            adequacy.mutation_note = Some(format!("sandbox failure: {e}"));
            return;
        }
        let outcomes = result.get("outcomes").and_then(Value::as_array).cloned().unwrap_or_default();
        let mut not_run = 0;
        for (i, mutant) in generated.mutants.iter().enumerate() {
            let outcome = outcomes.get(i).unwrap_or(&Value::Null);
            match outcome.get("kind").and_then(Value::as_str).unwrap_or("lost") {
                "killed" => {
                    adequacy.mutants += 1;
                    adequacy.killed += 1;
                    let how = outcome.get("how").and_then(Value::as_str).unwrap_or("fail");
                    *adequacy.killed_by.entry(how.to_string()).or_default() += 1;
                }
                "survived" => {
                    adequacy.mutants += 1;
                    if adequacy.survivors.len() < settings.survivors {
                        adequacy.survivors.push(Survivor {
                            operator: mutant.operator.clone(),
                            line: mutant.line,
                            diff: mutant.diff.clone(),
                            covered: hit_lines.map(|h| h.contains(&mutant.line)),
                        });
                    }
                }
                "equivalent" => adequacy.equivalent_suspected += 1,
                "invalid" => adequacy.invalid_mutants += 1,
                _ => not_run += 1,
            }
        }
        if adequacy.mutants > 0 {
            adequacy.mutation_score = Some(round(adequacy.killed as f64 / adequacy.mutants as f64));
        }
        if not_run > 0 {
            adequacy.mutation_note = Some(format!("{not_run} of {n} mutants did not run (time budget)"));
        } else if adequacy.mutants == 0 {
            adequacy.mutation_note = Some("every mutant was invalid or equivalent".into());
        }
    }
}

/// The program and tests under assessment.
struct Subject<'a> {
    code: &'a str,
    tests: &'a str,
    entry: Option<&'a str>,
}

fn round(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

/// Fill the coverage fields from a check's raw answer; the lines hit when known.
fn read_coverage(raw: Option<&Value>, adequacy: &mut Adequacy) -> Option<BTreeSet<u32>> {
    let report = raw
        .and_then(|r| r.get("reports"))
        .and_then(Value::as_array)
        .and_then(|lines| lines.iter().rev().find(|l| l.get(0).and_then(Value::as_str) == Some("coverage")))
        .and_then(|l| l.get(1));
    let Some(report) = report else {
        adequacy.coverage_note = Some("no coverage report from the check".into());
        return None;
    };
    if let Some(e) = report.get("error").and_then(Value::as_str) {
        adequacy.coverage_note = Some(format!("coverage could not be set up: {e}"));
        return None;
    }
    let numbers = |key: &str| -> BTreeSet<u32> {
        report.get(key).and_then(Value::as_array).map(|a| a.iter().filter_map(Value::as_u64).map(|n| n as u32).collect()).unwrap_or_default()
    };
    let (lines, hit) = (numbers("lines"), numbers("hit"));
    let hit: BTreeSet<u32> = hit.intersection(&lines).copied().collect();
    adequacy.lines_total = lines.len();
    if report.get("intact").and_then(Value::as_bool) != Some(true) {
        adequacy.coverage_note = Some("unknown: the tests removed or replaced the coverage tracer or line recorder".into());
        return None;
    }
    if lines.is_empty() {
        adequacy.coverage_note = Some("no executable lines found for the function".into());
        return None;
    }
    adequacy.lines_hit = hit.len();
    adequacy.line_coverage = Some(round(hit.len() as f64 / lines.len() as f64));
    adequacy.missed_lines = lines.difference(&hit).take(50).copied().collect();
    adequacy.coverage_note = report.get("method").and_then(Value::as_str).map(|m| format!("measured with {m}"));
    Some(hit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coverage_report_is_read_and_a_broken_tracer_is_unknown() {
        let raw = json!({"reports": [["coverage", {"method": "instrumentation", "intact": true, "lines": [3, 4, 5, 6], "hit": [3, 4, 9]}]]});
        let mut a = Adequacy::default();
        let hit = read_coverage(Some(&raw), &mut a).unwrap();
        assert_eq!((a.lines_total, a.lines_hit, a.line_coverage), (4, 2, Some(0.5)));
        assert_eq!(a.missed_lines, vec![5, 6]);
        assert!(!hit.contains(&9), "a hit outside the function's lines is ignored");
        let tampered = json!({"reports": [["coverage", {"method": "instrumentation", "intact": false, "lines": [3, 4], "hit": [3, 4]}]]});
        let mut b = Adequacy::default();
        assert!(read_coverage(Some(&tampered), &mut b).is_none());
        assert_eq!(b.line_coverage, None);
        assert!(b.coverage_note.unwrap().contains("unknown"));
        let mut c = Adequacy::default();
        assert!(read_coverage(None, &mut c).is_none());
        assert_eq!(c.line_coverage, None);
    }
}
