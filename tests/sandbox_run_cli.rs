//! Integration tests: `unitcoder sandbox-run` and `doctor` as a binary.

mod common;

use common::{bin, fixtures, manifest, python, read_records};
use serde_json::Value;

fn pandas_available() -> bool {
    std::process::Command::new(python()).args(["-c", "import pandas"]).status().map(|s| s.success()).unwrap_or(false)
}

#[test]
fn every_record_gets_a_verdict_or_an_error_in_input_order() {
    let out = tempfile::tempdir().unwrap();
    bin()
        .args(["-i", fixtures().join("sandbox/records.jsonl").to_str().unwrap(), "-o", out.path().to_str().unwrap()])
        .args(["sandbox-run", "--timeout", "2", "--workers", "2", "--preimport", "pandas", "--python", &python()])
        .assert()
        .success();
    let all = read_records(out.path(), "shard");
    // The line that is not JSON becomes an error record in its place (file, line, reason).
    let bad: Vec<&Value> = all.iter().filter(|r| r["error"]["kind"] == "bad_input").collect();
    assert_eq!(bad.len(), 1);
    assert!(bad[0]["error"]["message"].as_str().unwrap().starts_with("bad_json"));
    assert!(bad[0]["error"]["file"].as_str().unwrap().ends_with("records.jsonl") && bad[0]["error"]["line"].as_u64().is_some());
    let records: Vec<Value> = all.iter().filter(|r| r["error"]["kind"] != "bad_input").cloned().collect();
    let ids: Vec<&str> = records.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["pass", "fail", "import-error", "missing-tests", "pandas", "no-tests", "timeout"]);
    let status = |i: usize| records[i]["verdict"]["status"].as_str().unwrap_or("<none>").to_string();
    assert_eq!(status(0), "pass");
    assert_eq!(records[0]["verdict"]["tests_run"], 2);
    assert_eq!(records[0]["keep"]["nested"][1], 2, "unknown fields pass through");
    assert_eq!(status(1), "fail");
    assert!(records[1]["verdict"]["failures"][0]["message"].as_str().unwrap().contains("6 != 5"));
    assert_eq!(status(2), "error");
    assert!(records[3].get("verdict").is_none());
    assert_eq!(records[3]["error"]["kind"], "missing_field");
    if pandas_available() {
        assert_eq!(status(4), "pass", "{}", records[4]["verdict"]);
    } else {
        assert_eq!(status(4), "error");
        assert!(records[4]["verdict"]["message"].as_str().unwrap().contains("No module named 'pandas'"));
    }
    assert_eq!(status(5), "no_tests");
    assert_eq!(status(6), "timeout");
    for r in records.iter().filter(|r| r.get("verdict").is_some()) {
        assert!(!r["verdict"]["isolation"].as_str().unwrap().is_empty());
    }
    let m = manifest(out.path());
    assert_eq!(m["counts"]["records"], 8);
    assert_eq!(m["counts"]["errors_by_kind"]["bad_input"], 1);
    assert_eq!(m["counts"]["errors_by_kind"]["missing_field"], 1);
    assert!(m["counts"]["outcomes"]["verdict_pass"].as_u64().unwrap() >= 1);
    assert!(m["timings"]["sandbox"]["isolation"].as_str().unwrap().len() > 4);
}

#[test]
fn field_flags_run_bigcodebench_shaped_records() {
    let out = tempfile::tempdir().unwrap();
    bin()
        .args(["-i", fixtures().join("sandbox/bcb_shape.jsonl").to_str().unwrap(), "-o", out.path().to_str().unwrap()])
        .args(["sandbox-run", "--code-field", "canonical_solution", "--tests-field", "test", "--preimport", "", "--python", &python()])
        .assert()
        .success();
    let records = read_records(out.path(), "shard");
    assert_eq!(records[0]["verdict"]["status"], "pass", "{}", records[0]["verdict"]);
    assert_eq!(records[0]["verdict"]["tests_found"], 2);
}

#[test]
fn doctor_reports_python_and_isolation() {
    let assert = bin().args(["doctor", "--python", &python()]).assert().success();
    let text = String::from_utf8_lossy(&assert.get_output().stdout).into_owned();
    assert!(text.contains("python: "), "{text}");
    assert!(text.contains("isolation mechanisms:"));
    assert!(text.contains("bubblewrap"));
    assert!(text.contains("would use: "));
    // Every defence layer is reported, in effect or not.
    assert!(text.contains(&format!("static policy: on, {} rules", unitcoder::sandbox::policy::RULES.len())), "{text}");
    assert!(text.contains("memory limit: "), "{text}");
    assert!(text.contains("seccomp filter"), "{text}");
    assert!(text.contains("] none: "), "{text}");
    let bad = bin().args(["doctor", "--python", "/nonexistent/python"]).assert().code(1);
    assert!(String::from_utf8_lossy(&bad.get_output().stdout).contains("NOT USABLE"));
    let _ = Value::Null;
}

#[test]
fn each_check_gets_fresh_randomness_like_a_fresh_process() {
    // Two identical checks print numpy's and random's first draws; forks of one warm
    // worker must not share them.
    let dir = tempfile::tempdir().unwrap();
    let rec = |id: &str| {
        serde_json::json!({"id": id, "code": "import random\ntry:\n    import numpy\nexcept ImportError:\n    numpy = None\ndef draw():\n    return float(numpy.random.rand()) if numpy else random.random()\n",
        "tests": "import unittest\nclass TestCases(unittest.TestCase):\n    def test_draw(self):\n        print('DRAW', draw())\n"}).to_string()
    };
    let input = dir.path().join("r.jsonl");
    std::fs::write(&input, format!("{}\n{}\n{}\n", rec("a"), rec("b"), rec("c"))).unwrap();
    let out = dir.path().join("out");
    bin()
        .args([
            "-i",
            input.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "sandbox-run",
            "--workers",
            "1",
            "--preimport",
            "numpy,numpy.random",
            "--python",
            &python(),
        ])
        .assert()
        .success();
    let draws: Vec<String> = read_records(&out, "shard").iter().map(|r| r["verdict"]["output"].as_str().unwrap().to_string()).collect();
    assert!(draws.iter().all(|d| d.contains("DRAW")), "{draws:?}");
    assert_ne!(draws[0], draws[1]);
    assert_ne!(draws[1], draws[2]);
}
