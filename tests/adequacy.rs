//! Test adequacy: line coverage, mutation score and flake checks on verified records, on
//! fixtures written for the purpose — strong tests score high, vacuous ones near zero, a
//! skipped branch shows its missed lines, a seed-dependent test is flaky — plus the hostile
//! side: tests that switch the tracer off, mutants that hang or crash, tests that read the
//! program's source to spot a mutant, tests that tamper with the harness between mutants.

mod common;

use std::sync::OnceLock;

use common::python;
use unitcoder::sandbox::{AdequacySettings, Sandbox, SandboxSettings, Status, Verdict};

/// Two workers (flake reruns go to the other one), the static policy off: these tests
/// exercise the harness's own defences.
fn sandbox() -> &'static Sandbox {
    static SB: OnceLock<Sandbox> = OnceLock::new();
    SB.get_or_init(|| {
        let settings =
            SandboxSettings { python: python(), workers: 2, timeout: 10.0, memory_mb: 512, preimport: vec![], policy: false, ..Default::default() };
        Sandbox::start(settings).expect("sandbox starts")
    })
}

fn settings() -> AdequacySettings {
    AdequacySettings { mutants: 40, ..Default::default() }
}

fn verify(code: &str, tests: &str) -> Verdict {
    sandbox().verify(code, tests, Some("task_func"), &settings())
}

const CLAMP: &str = "def task_func(x, lo=0, hi=10):
    \"\"\"Clamp x into [lo, hi] and report which side was hit.\"\"\"
    if x < lo:
        return lo, 'low'
    if x > hi:
        return hi, 'high'
    return x * 1, 'inside'
";

const STRONG: &str = "import unittest
class TestCases(unittest.TestCase):
    def test_low(self):
        self.assertEqual(task_func(-5), (0, 'low'))
        self.assertEqual(task_func(-1, -1, 3), (-1, 'inside'))
    def test_high(self):
        self.assertEqual(task_func(11), (10, 'high'))
        self.assertEqual(task_func(10), (10, 'inside'))
    def test_inside(self):
        self.assertEqual(task_func(3), (3, 'inside'))
        self.assertEqual(task_func(0), (0, 'inside'))
        self.assertEqual(task_func(7, 2, 8), (7, 'inside'))
";

const VACUOUS: &str = "import unittest
class TestCases(unittest.TestCase):
    def test_types(self):
        self.assertTrue(callable(task_func))
        self.assertIsInstance(task_func(3), tuple)
";

const SKIPS_HIGH: &str = "import unittest
class TestCases(unittest.TestCase):
    def test_low(self):
        self.assertEqual(task_func(-5), (0, 'low'))
    def test_inside(self):
        self.assertEqual(task_func(3), (3, 'inside'))
";

#[test]
fn strong_tests_score_high_and_vacuous_tests_near_zero() {
    let strong = verify(CLAMP, STRONG);
    assert_eq!(strong.status, Status::Pass, "{strong:?}");
    let a = strong.adequacy.expect("a pass is assessed");
    assert_eq!(a.line_coverage, Some(1.0), "{a:?}");
    assert!(a.mutants >= 10, "{a:?}");
    let score = a.mutation_score.unwrap();
    assert!(score >= 0.8, "strong tests kill most mutants: {a:#?}");
    assert_eq!(a.reruns, vec![Status::Pass, Status::Pass]);
    assert_eq!(a.rerun_processes, 2, "the reruns ran in the other worker too: {a:?}");

    let vacuous = verify(CLAMP, VACUOUS);
    assert_eq!(vacuous.status, Status::Pass, "vacuous tests still pass: {vacuous:?}");
    let b = vacuous.adequacy.unwrap();
    let weak = b.mutation_score.unwrap();
    assert!(weak <= 0.15, "type-only tests kill almost nothing: {b:#?}");
    assert!(!b.survivors.is_empty() && b.survivors.iter().all(|s| !s.diff.is_empty()), "{b:#?}");
    assert!(score - weak >= 0.6, "the score separates them: {score} vs {weak}");
}

#[test]
fn a_test_that_skips_a_branch_shows_the_missed_lines() {
    let v = verify(CLAMP, SKIPS_HIGH);
    assert_eq!(v.status, Status::Pass, "{v:?}");
    let a = v.adequacy.unwrap();
    // Lines 5 and 6 (`if x > hi:` runs; `return hi, 'high'` never does).
    assert_eq!(a.missed_lines, vec![6], "{a:?}");
    assert_eq!(a.lines_total, 5, "{a:?}");
    assert_eq!(a.lines_hit, 4);
    assert_eq!(a.line_coverage, Some(0.8));
    // The survivors on the missed line are marked as never run.
    assert!(a.survivors.iter().any(|s| s.line == 6 && s.covered == Some(false)), "{a:#?}");
}

#[test]
fn a_seed_dependent_test_is_flaky_not_a_pass() {
    let code = "import random\ndef task_func():\n    return random.random()\n";
    // Passes about half the time: when the first run passes, both reruns pass 1 time in 4.
    let tests = "import unittest\nclass TestCases(unittest.TestCase):\n    def test_big(self):\n        self.assertGreater(task_func(), 0.5)\n";
    let mut flaky = 0;
    for _ in 0..30 {
        let v = verify(code, tests);
        match v.status {
            Status::Flaky => {
                flaky += 1;
                let a = v.adequacy.unwrap();
                assert!(a.reruns.contains(&Status::Fail), "{a:?}");
                assert!(!v.failures.is_empty(), "the failing rerun's trace is kept for fix");
                assert!(!v.status.eq(&Status::Pass));
            }
            Status::Pass => assert_eq!(v.adequacy.unwrap().reruns, vec![Status::Pass, Status::Pass]),
            Status::Fail => {}
            other => panic!("unexpected {other:?}: {v:?}"),
        }
    }
    assert!(flaky >= 2, "a coin-flip test is caught as flaky: {flaky} of 30");
}

/// Tests that try to raise coverage without running the code: switch tracing off, call
/// the harness's line recorder themselves, replace it, delete it. Only the low branch runs
/// (lines 3 and 4 of 5): coverage may be 0.4 or unknown, never higher, and never a pass
/// bought by breaking the function.
#[test]
fn tests_cannot_raise_coverage_by_tracing_tricks_or_by_calling_the_recorder() {
    let run_low = "        self.assertEqual(task_func(-5), (0, 'low'))\n";
    let head = "import sys, unittest\nclass TestCases(unittest.TestCase):\n    def test_low(self):\n";
    let find = "        names = [n for n in list(globals()) if n.startswith('_unitcoder_line_')]\n";
    let cases = [
        ("tracing off", format!("{head}        sys.settrace(None)\n{run_low}")),
        ("own tracer", format!("{head}        sys.settrace(lambda *a: None)\n{run_low}")),
        (
            "calls the recorder",
            format!("{head}{find}        for n in names:\n            for line in range(1, 10):\n                globals()[n](line)\n{run_low}"),
        ),
        ("replaces the recorder", format!("{head}{find}        for n in names:\n            globals()[n] = lambda line: None\n{run_low}")),
        ("deletes the recorder", format!("{head}{find}        for n in names:\n            del globals()[n]\n{run_low}")),
    ];
    for (what, tests) in cases {
        let v = verify(CLAMP, &tests);
        if v.status != Status::Pass {
            assert_eq!(v.status, Status::Flaky, "{what}: breaking the coverage run is not a pass: {v:?}");
            continue;
        }
        let a = v.adequacy.unwrap();
        assert!(a.line_coverage.is_none_or(|c| c <= 0.4), "{what}: coverage went up: {a:?}");
        if a.line_coverage.is_none() {
            assert!(a.coverage_note.as_deref().unwrap_or("").contains("unknown"), "{what}: {a:?}");
        }
    }
    // The honest version measures exactly the two lines.
    let honest = verify(CLAMP, &format!("{head}{run_low}")).adequacy.unwrap();
    assert_eq!(honest.line_coverage, Some(0.4), "{honest:?}");
}

/// The line recorder is compiled into every statement of the function, class bodies and
/// methods included: its name must survive name mangling (`__x` in a class body), or the
/// coverage run breaks and a good pass looks flaky (found on BigCodeBench/81).
#[test]
fn coverage_of_a_function_with_classes_generators_and_async_inside_keeps_it_working() {
    let code = "import asyncio
def task_func(x):
    class Box:
        def __init__(self, v):
            self.__v = v
        def get(self):
            return self.__v
    def gen(n):
        for i in range(n):
            yield i
    async def twice(v):
        return 2 * v
    return Box(x).get() + sum(gen(x)) + asyncio.run(twice(x))
";
    let tests =
        "import unittest\nclass TestCases(unittest.TestCase):\n    def test_three(self):\n        self.assertEqual(task_func(3), 3 + 3 + 6)\n";
    let v = verify(code, tests);
    assert_eq!(v.status, Status::Pass, "{v:?}");
    let a = v.adequacy.unwrap();
    assert_eq!(a.reruns, vec![Status::Pass, Status::Pass], "{a:?}");
    assert_eq!(a.line_coverage, Some(1.0), "{a:?}");
    assert!(a.lines_total >= 9, "{a:?}");
}

#[test]
fn mutants_that_hang_or_crash_are_killed_and_the_rest_still_run() {
    // `i += 1` → `i -= 1` hangs; `n - 1` style changes end quickly.
    let code = "import os\ndef task_func(n):\n    i = 0\n    while i < n:\n        i += 1\n    if i == 99:\n        os.abort()\n    return i\n";
    let tests = "import unittest\nclass TestCases(unittest.TestCase):\n    def test_n(self):\n        self.assertEqual(task_func(5), 5)\n        self.assertEqual(task_func(0), 0)\n";
    let v = verify(code, tests);
    assert_eq!(v.status, Status::Pass, "{v:?}");
    let a = v.adequacy.unwrap();
    assert!(a.killed_by.get("timeout").copied().unwrap_or(0) >= 1, "a hanging mutant is killed by its time limit: {a:#?}");
    assert!(a.mutants >= 8 && a.killed >= 6, "{a:#?}");
    assert!(a.mutation_note.is_none(), "every mutant ran: {a:#?}");
    // The pool is still honest afterwards.
    let again = verify(CLAMP, STRONG);
    assert_eq!(again.status, Status::Pass);
}

#[test]
fn a_mutant_that_forks_does_not_duplicate_or_confuse_the_outcomes() {
    let code = "import os\ndef task_func(n):\n    if n > 100:\n        os.fork()\n    return n * 2\n";
    let tests = "import unittest\nclass TestCases(unittest.TestCase):\n    def test_n(self):\n        self.assertEqual(task_func(5), 10)\n        self.assertEqual(task_func(0), 0)\n";
    let mut seen = Vec::new();
    for _ in 0..3 {
        let v = verify(code, tests);
        assert_eq!(v.status, Status::Pass, "{v:?}");
        let a = v.adequacy.unwrap();
        assert!(a.mutants >= 4, "{a:#?}");
        assert!(a.mutation_note.is_none(), "every mutant ran once: {a:#?}");
        seen.push((a.mutants, a.killed));
    }
    // The same sample gives the same outcome every time (the forked copies never report).
    assert!(seen.windows(2).all(|w| w[0] == w[1]), "{seen:?}");
    assert_eq!(verify(CLAMP, STRONG).status, Status::Pass);
}

#[test]
fn tests_that_read_the_source_cannot_tell_a_mutant_from_the_original() {
    // A change detector: fails when solution.py differs from what it saw at import. The
    // mutant's file holds the original source, so it kills nothing it would not kill anyway.
    let tests = "import hashlib, inspect, os, unittest
SEEN = hashlib.sha256(open(os.path.join(os.getcwd(), 'solution.py'), 'rb').read()).hexdigest()
class TestCases(unittest.TestCase):
    def test_unchanged(self):
        now = hashlib.sha256(open(os.path.join(os.getcwd(), 'solution.py'), 'rb').read()).hexdigest()
        self.assertEqual(now, SEEN)
        self.assertIn('def task_func', inspect.getsource(task_func))
        self.assertIsInstance(task_func(3), tuple)
";
    let v = verify(CLAMP, tests);
    assert_eq!(v.status, Status::Pass, "{v:?}");
    let a = v.adequacy.unwrap();
    assert!(a.mutation_score.unwrap() <= 0.15, "reading the source is no way to kill mutants: {a:#?}");
}

#[test]
fn tests_that_tamper_with_the_harness_between_mutants_do_not_inflate_the_score() {
    // After the first mutant, every later one would be "killed" by a patched harness; each
    // mutant after a tampering run starts in a fresh fork instead.
    let tests = "import sys, unittest
class TestCases(unittest.TestCase):
    def test_types(self):
        main = sys.modules['__main__']
        def killer(job, send, *a, **k):
            send('test', {'kind': 'fail', 'test': 'x', 'message': 'forged'})
        try:
            main.run_tests = killer
        except Exception:
            pass
        self.assertIsInstance(task_func(3), tuple)
";
    let v = verify(CLAMP, tests);
    assert_eq!(v.status, Status::Pass, "{v:?}");
    let a = v.adequacy.unwrap();
    assert!(a.mutation_score.unwrap() <= 0.15, "the tampering did not kill mutants: {a:#?}");
}

#[test]
fn nothing_to_mutate_and_failures_give_clear_values() {
    let code = "def task_func(x):\n    pass\n";
    let tests = "import unittest\nclass TestCases(unittest.TestCase):\n    def test_none(self):\n        self.assertIsNone(task_func(1))\n";
    let v = verify(code, tests);
    assert_eq!(v.status, Status::Pass);
    let a = v.adequacy.unwrap();
    assert_eq!((a.mutants, a.mutation_score), (0, None), "{a:?}");
    assert!(a.mutation_note.unwrap().contains("nothing to mutate"));
    // A failing check is returned as it came: no adequacy, never a pass.
    let v = verify("def task_func(x):\n    return 1\n", tests);
    assert_eq!(v.status, Status::Fail);
    assert!(v.adequacy.is_none());
    // Off means off.
    let off = AdequacySettings { enabled: false, ..Default::default() };
    assert!(sandbox().verify(CLAMP, STRONG, Some("task_func"), &off).adequacy.is_none());
}

#[test]
fn the_mutant_sample_is_reproducible() {
    let a = verify(CLAMP, STRONG).adequacy.unwrap();
    let b = verify(CLAMP, STRONG).adequacy.unwrap();
    assert_eq!((a.mutants, a.killed, a.equivalent_suspected), (b.mutants, b.killed, b.equivalent_suspected));
}

// ---------------------------------------------------------------- stages: sandbox-run, stats, export, eval-tests

use common::{bin, manifest, read_records};
use serde_json::{json, Value};

/// A record as sandbox-run would have written it: verified, with the given adequacy.
fn verified(id: &str, coverage: Option<f64>, score: Option<f64>) -> Value {
    let body = format!("    return x + {}\n", id.len());
    json!({
        "id": id, "entry_point": format!("f_{id}"), "packages": ["numpy"],
        "code": format!("import numpy as np\n\ndef f_{id}(x):\n    \"\"\"Add {id}.\"\"\"\n{body}"),
        "tests": format!("import unittest\nclass TestCases(unittest.TestCase):\n    def test_{id}(self):\n        self.assertEqual(f_{id}(1), {})\n", 1 + id.len()),
        "verdict": {"status": "pass", "tests_found": 1, "tests_run": 1, "tests_passed": 1,
                    "adequacy": {"line_coverage": coverage, "lines_total": 1, "lines_hit": 1, "mutants": 4, "killed": 2,
                                 "mutation_score": score, "equivalent_suspected": 0, "reruns": ["pass", "pass"]}}
    })
}

fn write_jsonl(path: &std::path::Path, rows: &[Value]) {
    std::fs::write(path, rows.iter().map(|r| r.to_string() + "\n").collect::<String>()).unwrap();
}

#[test]
fn export_gates_and_tiers_select_exactly_the_right_rows() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    let mut failed = verified("bad", Some(1.0), Some(1.0));
    failed["verdict"]["status"] = json!("fail");
    let mut unassessed = verified("plain", None, None);
    unassessed["verdict"].as_object_mut().unwrap().remove("adequacy");
    write_jsonl(
        &input,
        &[
            verified("strong", Some(1.0), Some(0.75)),
            verified("lowcov", Some(0.5), Some(0.9)),
            verified("lowmut", Some(0.9), Some(0.25)),
            verified("unknown", None, Some(0.9)),
            unassessed,
            failed,
        ],
    );
    let export = |name: &str, extra: &[&str]| -> Vec<Value> {
        let out = dir.path().join(name);
        let mut args = vec!["-i", input.to_str().unwrap(), "-o", out.to_str().unwrap(), "--plain", "export", "--no-decontaminate", "--no-near-dedup"];
        args.extend_from_slice(extra);
        bin().args(&args).assert().success();
        read_records(&out, "data")
    };
    let ids =
        |rows: &[Value]| rows.iter().map(|r| (r["id"].as_str().unwrap().to_string(), r["tier"].as_str().unwrap().to_string())).collect::<Vec<_>>();
    let pair = |i: &str, t: &str| (i.to_string(), t.to_string());

    // No gates: every verified row is strong; the failed one is not written.
    let rows = export("nogate", &[]);
    assert_eq!(
        ids(&rows),
        vec![pair("strong", "strong"), pair("lowcov", "strong"), pair("lowmut", "strong"), pair("unknown", "strong"), pair("plain", "strong")]
    );
    assert_eq!(rows[0]["meta"]["adequacy"]["mutation_score"], 0.75);
    assert_eq!(rows[0]["meta"]["tier"], "strong");

    // Gates: only rows meeting both are strong; unknown values never meet a gate.
    let gates = ["--min-line-coverage", "0.8", "--min-mutation-score", "0.5"];
    let rows = export("gated", &gates);
    assert_eq!(ids(&rows), vec![pair("strong", "strong")]);
    let m = manifest(&dir.path().join("gated"));
    assert_eq!(m["counts"]["dropped"]["below_adequacy_gate"], 4, "{m}");
    assert_eq!(m["counts"]["tiers"]["strong"], 1);

    let mut all = gates.to_vec();
    all.extend_from_slice(&["--tiers", "strong,weak,failed"]);
    let rows = export("tiers", &all);
    assert_eq!(
        ids(&rows),
        vec![
            pair("strong", "strong"),
            pair("lowcov", "weak"),
            pair("lowmut", "weak"),
            pair("unknown", "weak"),
            pair("plain", "weak"),
            pair("bad", "failed")
        ]
    );
    let mut weak_only = gates.to_vec();
    weak_only.extend_from_slice(&["--tiers", "weak"]);
    assert_eq!(export("weak", &weak_only).len(), 4);
    let card = std::fs::read_to_string(dir.path().join("tiers/README.md")).unwrap();
    assert!(card.contains("## Test adequacy") && card.contains("Rows by tier: failed 1, strong 1, weak 4"), "{card}");

    // `--format tests`: function → test module pairs, adequacy in meta.
    let rows = export("tests", &["--format", "tests"]);
    assert_eq!(rows.len(), 5);
    assert!(rows[0]["prompt"].as_str().unwrap().contains("def f_strong"));
    assert!(rows[0]["completion"].as_str().unwrap().contains("class TestCases"));
    assert_eq!(rows[0]["meta"]["adequacy"]["line_coverage"], 1.0);

    // A gate outside 0–1 is a usage error, not a silent no-op.
    let out = dir.path().join("badgate");
    bin().args(["-i", input.to_str().unwrap(), "-o", out.to_str().unwrap(), "export", "--min-mutation-score", "80"]).assert().failure();

    // stats reads the export's distribution and tiers.
    let text =
        String::from_utf8(bin().args(["stats", dir.path().join("tiers").to_str().unwrap()]).assert().success().get_output().stdout.clone()).unwrap();
    assert!(text.contains("test adequacy of 5 verified records (export)"), "{text}");
    assert!(text.contains("mutation score: unknown 1, 20-40% 1, 60-80% 1, 80-99% 2"), "{text}");
    assert!(text.contains("exported by tier: failed 1, strong 1, weak 4"), "{text}");
}

#[test]
fn sandbox_run_assesses_every_pass_and_stats_shows_the_distribution() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    let rec = |id: &str, code: &str, tests: &str| json!({"id": id, "entry_point": "task_func", "code": code, "tests": tests});
    write_jsonl(&input, &[rec("strong", CLAMP, STRONG), rec("vacuous", CLAMP, VACUOUS), rec("wrong", "def task_func(x):\n    return 0\n", STRONG)]);
    let out = dir.path().join("sandbox-run");
    bin()
        .args(["-i", input.to_str().unwrap(), "-o", out.to_str().unwrap(), "sandbox-run", "--python", &python(), "--workers", "2", "--preimport", ""])
        .assert()
        .success();
    let records = read_records(&out, "shard");
    let a = |i: usize| records[i]["verdict"]["adequacy"].clone();
    assert!(a(0)["mutation_score"].as_f64().unwrap() >= 0.8, "{}", a(0));
    assert!(a(1)["mutation_score"].as_f64().unwrap() <= 0.15, "{}", a(1));
    assert_eq!(a(0)["line_coverage"], 1.0);
    assert!(a(2).is_null(), "a failure is not assessed");
    let text = String::from_utf8(bin().args(["stats", out.to_str().unwrap()]).assert().success().get_output().stdout.clone()).unwrap();
    assert!(text.contains("test adequacy of 2 verified records (sandbox-run)"), "{text}");
    assert!(!text.contains("coverage_100%="), "adequacy buckets are not repeated in the outcome column: {text}");
    // --no-adequacy switches it off.
    let off = dir.path().join("off");
    bin()
        .args(["-i", input.to_str().unwrap(), "-o", off.to_str().unwrap(), "sandbox-run", "--python", &python(), "--preimport", "", "--no-adequacy"])
        .assert()
        .success();
    assert!(read_records(&off, "shard")[0]["verdict"].get("adequacy").is_none());
}

#[test]
fn eval_tests_human_tests_runs_on_the_shipped_bigcodebench_copy() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("eval");
    let eval = || -> Value {
        let out = bin()
            .args(["-q", "eval-tests", "--benchmark", "bigcodebench", "--human-tests", "--limit", "12", "--work-dir", work.to_str().unwrap()])
            .args(["--python", &python(), "--workers", "2", "--preimport", "", "--json", "--mutants", "8"])
            .assert()
            .success();
        serde_json::from_slice(&out.get_output().stdout).unwrap()
    };
    let summary = eval();
    assert_eq!(summary["tasks"], 12, "{summary}");
    assert_eq!(summary["with_tests"], 12, "{summary}");
    assert_eq!(summary["tests"], "human");
    let passing = summary["passing"].as_u64().unwrap();
    // The minimal sandbox venv lacks some of BigCodeBench's libraries: those tasks fail to
    // import; the stdlib ones pass.
    assert!(passing >= 3, "{summary}");
    assert!(summary["mutation_measured"].as_u64().unwrap() >= 3, "{summary}");
    let score = summary["mutation_score"].as_f64().unwrap();
    assert!(score > 0.3 && score <= 1.0, "{summary}");
    assert!(summary["line_coverage"].as_f64().unwrap() > 0.5, "{summary}");
    let fpr = summary["false_pass_rate"].as_f64().unwrap();
    assert!((0.0..1.0).contains(&fpr), "{summary}");
    assert!(work.join("eval-tests.json").exists());
    // The same command again resumes: nothing is rerun.
    let second = eval();
    assert_eq!(second["passing"], summary["passing"]);
}

#[test]
fn eval_tests_measures_a_generator_against_the_human_tests_and_replays_offline() {
    use common::mock_llm::{Faults, MockServer};
    let server = MockServer::start(Faults::default());
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("gen");
    let run = |work: &std::path::Path, extra: &[&str]| -> Value {
        let out = bin()
            .args(["-q", "eval-tests", "--benchmark", "humaneval", "--limit", "6", "--work-dir", work.to_str().unwrap()])
            .args(["--python", &python(), "--workers", "2", "--preimport", "", "--json"])
            .args(extra)
            .assert()
            .success();
        serde_json::from_slice(&out.get_output().stdout).unwrap()
    };
    // The mock's test modules only assert `callable(f)`: they pass every correct solution
    // (accuracy 100%) and kill no mutant — the false-pass rate says so.
    let generated = run(&work, &["--base-url", &server.base_url, "--model", "mock-model"]);
    assert_eq!(generated["tests"], "generated");
    assert_eq!(generated["accuracy"], 1.0, "{generated}");
    assert!(generated["mutation_score"].as_f64().unwrap() <= 0.05, "{generated}");
    assert!(generated["false_pass_rate"].as_f64().unwrap() >= 0.95, "{generated}");
    // The benchmark's own tests on the same solutions: the reference point.
    let human = run(&dir.path().join("human"), &["--human-tests"]);
    assert_eq!(human["accuracy"], 1.0, "{human}");
    assert!(human["mutation_score"].as_f64().unwrap() >= 0.5, "{human}");
    // Offline, forced: the answers come from the cache and the numbers are the same.
    let requests = server.requests();
    drop(server);
    let replay = run(&work, &["--force", "--offline", "--base-url", "http://127.0.0.1:9/v1", "--model", "mock-model"]);
    assert_eq!(replay["accuracy"], generated["accuracy"]);
    assert_eq!(replay["mutants"], generated["mutants"]);
    assert!(requests >= 6);
}
