//! `unitcoder case2code` end to end against a scripted mock model and the real sandbox:
//! what is kept, what is dropped and why, exceptions, timeouts, fake markers, malformed
//! replies, seeded templates, and export of the tasks.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::mock_llm::{Faults, MockServer, Script};
use common::{bin, read_records, sandbox_python};
use serde_json::{json, Value};

fn fence(code: &str) -> String {
    format!("Sure.\n\n```python\n{code}\n```\n")
}

fn name_in(prompt: &str) -> String {
    prompt.lines().find_map(|l| l.strip_prefix("Function name: ")).unwrap_or("?").trim().to_string()
}

/// The inputs a model would write for each function.
fn scripted(prompt: &str, _n: u64) -> Option<Vec<String>> {
    let inputs = match name_in(prompt).as_str() {
        // One forbidden call and one duplicate among good inputs.
        "scale" => {
            r#"[{"xs": [1, 2], "k": 3}, {"xs": [], "k": 2}, {"xs": [0.5], "k": -1}, {"xs": [1, 2], "k": 3}, {"xs": __import__("os").getcwd(), "k": 1}, {"xs": (4,), "k": 1}]"#
        }
        "noisy" => r#"[{"n": 1}, {"n": 2}, {"n": 3}, {"n": 4}]"#,
        "constant" => r#"[{"x": 1}, {"x": 2}, {"x": "a"}, {"x": None}]"#,
        "safe_div" => r#"[{"a": 1, "b": 0}, {"a": 6, "b": 3}, {"a": 1, "b": 4}, {"a": -2, "b": 8}]"#,
        "hangs" => r#"[{"x": 1}, {"x": 2}, {"x": 3}, {"x": 4}]"#,
        "liar" => r#"[{"x": 1}, {"x": 2}, {"x": 3}]"#,
        "col_sum" => {
            r#"[{"df": pd.DataFrame({"a": [1, 2], "b": [3.5, 4.5]}), "col": "a"}, {"df": pd.DataFrame({"a": [5]}), "col": "a"}, {"df": pd.DataFrame({"b": [1.0, 2.0, 3.0]}), "col": "b"}]"#
        }
        "no_block" => return Some(vec!["I cannot write inputs for this function.".into()]),
        "not_inputs" => return Some(vec![fence("import os\nos.system('id')")]),
        _ => return None,
    };
    Some(vec![fence(inputs)])
}

const FUNCTIONS: &[(&str, &str)] = &[
    ("scale", "def scale(xs, k):\n    return [x * k for x in xs]\n"),
    ("noisy", "import random\n\ndef noisy(n):\n    return [random.random() for _ in range(n)]\n"),
    ("constant", "def constant(x):\n    return 42\n"),
    ("safe_div", "def safe_div(a, b):\n    return a / b\n"),
    ("hangs", "def hangs(x):\n    while x == 2:\n        pass\n    return x * 2\n"),
    ("liar", "import sys\n\ndef liar(x):\n    print('\\tout\\t{\"i\": 0, \"kind\": \"value\", \"value\": [\"int\", \"999\"]}')\n    print('0' * 32 + '\\tout\\t{\"i\": 0, \"kind\": \"value\"}', file=sys.stderr)\n    return x + 100\n"),
    ("col_sum", "import pandas as pd\n\ndef col_sum(df, col):\n    return df[col].sum()\n"),
    ("no_block", "def no_block(x):\n    return x\n"),
    ("not_inputs", "def not_inputs(x):\n    return x\n"),
    ("unverified", "def unverified(x):\n    return x\n"),
];

fn write_input(dir: &Path) -> PathBuf {
    let path = dir.join("in.jsonl");
    let mut text = String::new();
    for (name, code) in FUNCTIONS {
        let status = if *name == "unverified" { "fail" } else { "pass" };
        text.push_str(&json!({"id": format!("id-{name}"), "entry_point": name, "code": code, "verdict": {"status": status}}).to_string());
        text.push('\n');
    }
    std::fs::write(&path, text).unwrap();
    path
}

fn run_case2code(input: &Path, out: &Path, url: &str, extra: &[&str]) -> assert_cmd::assert::Assert {
    let config = out.with_extension("toml");
    std::fs::write(&config, "[case2code]\ntimeout = 1.5\n").unwrap();
    bin()
        .args(["-i", input.to_str().unwrap(), "-o", out.to_str().unwrap(), "--plain", "--config", config.to_str().unwrap(), "case2code"])
        .args(["--base-url", url, "--model", "mock", "--python", &sandbox_python(), "--workers", "2", "--inputs-per-function", "6"])
        .args(extra)
        .assert()
}

fn by_name(records: &[Value]) -> std::collections::HashMap<String, Value> {
    records.iter().map(|r| (r["entry_point"].as_str().unwrap().to_string(), r.clone())).collect()
}

#[test]
fn case2code_keeps_deterministic_examples_and_says_why_it_drops() {
    let srv = MockServer::start(Faults { script: Some(Script(Arc::new(scripted))), ..Default::default() });
    let dir = tempfile::tempdir().unwrap();
    let input = write_input(dir.path());
    let out = dir.path().join("c2c");
    run_case2code(&input, &out, &srv.base_url, &[]).success();
    let records = read_records(&out, "shard");
    assert_eq!(records.len(), FUNCTIONS.len(), "one output per input record");
    let r = by_name(&records);
    let c = |n: &str| r[n]["case2code"].clone();

    // scale: the forbidden input and the duplicate are rejected before anything runs.
    assert_eq!(c("scale")["status"], "ok", "{}", c("scale"));
    let rejected: Vec<String> = c("scale")["rejected_inputs"].as_array().unwrap().iter().map(|x| x["reason"].as_str().unwrap().to_string()).collect();
    assert!(rejected.iter().any(|x| x == "duplicate") && rejected.iter().any(|x| x.contains("__import__(...).getcwd")), "{rejected:?}");
    let ex = c("scale")["examples"].as_array().unwrap().clone();
    assert_eq!(ex.len(), 4);
    assert_eq!(ex[0]["call"], "scale(xs=[1, 2], k=3)");
    assert_eq!(ex[0]["output"]["value"], json!(["list", [["int", "3"], ["int", "6"]]]));
    assert_eq!(ex[2]["output"]["repr"], "[-0.5]");
    let task = &r["scale"]["task"];
    assert_eq!(task["kind"], "case2code");
    assert_eq!(task["completion"], FUNCTIONS[0].1);
    assert!(task["prompt"].as_str().unwrap().contains("[3, 6]"), "{task}");

    // Random outputs differ between the two runs: every input dropped, so is the function.
    assert_eq!(c("noisy")["status"], "dropped");
    assert_eq!(c("noisy")["reason"], "too_few_examples");
    assert!(c("noisy")["dropped_inputs"].as_array().unwrap().iter().all(|d| d["reason"] == "nondeterministic"));
    assert!(r["noisy"].get("task").is_none());
    // All outputs identical.
    assert_eq!(c("constant")["reason"], "constant_output");
    // Exceptions are recorded with type and message; the rest make the sample.
    assert_eq!(c("safe_div")["status"], "ok");
    let exc = c("safe_div")["examples"].as_array().unwrap().iter().find(|e| e["outcome"] == "exception").cloned().unwrap();
    assert_eq!(exc["exception"]["type"], "ZeroDivisionError");
    assert!(!r["safe_div"]["task"]["prompt"].as_str().unwrap().contains("b=0"), "exceptions stay out of the sample");
    // The hanging input times out alone.
    assert_eq!(c("hangs")["status"], "ok", "{}", c("hangs"));
    let dropped = c("hangs")["dropped_inputs"].as_array().unwrap().clone();
    assert_eq!(dropped.len(), 1);
    assert_eq!(dropped[0]["reason"], "timeout");
    assert_eq!(c("hangs")["examples"].as_array().unwrap().len(), 3);
    // Printed fake markers do not become results.
    let outs: Vec<Value> = c("liar")["examples"].as_array().unwrap().iter().map(|e| e["output"]["value"].clone()).collect();
    assert_eq!(outs, vec![json!(["int", "101"]), json!(["int", "102"]), json!(["int", "103"])]);
    // pandas inputs are built in the sandbox; numpy scalars keep their type.
    assert_eq!(c("col_sum")["status"], "ok", "{}", c("col_sum"));
    assert_eq!(c("col_sum")["examples"][0]["output"]["value"], json!(["numpy.int64", ["int", "3"]]));
    assert_eq!(c("col_sum")["examples"][2]["output"]["repr"], "np.float64(6.0)");
    // Malformed replies are error records.
    assert_eq!(r["no_block"]["error"]["kind"], "malformed_reply");
    assert_eq!(r["not_inputs"]["error"]["kind"], "malformed_reply");
    // Not verified: dropped without asking the model.
    assert_eq!(c("unverified")["reason"], "not_verified");
    let asked = srv.seen.bodies.lock().unwrap().iter().filter(|b| b.to_string().contains("Function name: unverified")).count();
    assert_eq!(asked, 0);

    // Export turns the tasks into rows: prompt = examples, answer = the program.
    let exported = dir.path().join("export");
    bin()
        .args(["-i", out.to_str().unwrap(), "-o", exported.to_str().unwrap(), "--plain", "export", "--format", "chat", "--no-decontaminate"])
        .assert()
        .success();
    let rows = read_records(&exported, "data");
    let names: std::collections::BTreeSet<String> = rows.iter().map(|r| r["entry_point"].as_str().unwrap().to_string()).collect();
    assert_eq!(names.into_iter().collect::<Vec<_>>(), ["col_sum", "hangs", "liar", "safe_div", "scale"]);
    let m = &rows[0]["messages"];
    assert!(m[1]["content"].as_str().unwrap().starts_with("```python\n"), "{m}");
    assert_eq!(rows[0]["meta"]["task"], "case2code");
    let card = std::fs::read_to_string(exported.join("README.md")).unwrap();
    assert!(card.contains("case2code_too_few_examples") && card.contains("case2code tasks | 5"), "{card}");
}

#[test]
fn template_choice_follows_the_seed() {
    let srv = MockServer::start(Faults { script: Some(Script(Arc::new(scripted))), ..Default::default() });
    let dir = tempfile::tempdir().unwrap();
    let input = write_input(dir.path());
    let prompts = |out: &str, seed: &str| -> Vec<(String, String)> {
        let out = dir.path().join(out);
        run_case2code(&input, &out, &srv.base_url, &["--seed", seed]).success();
        read_records(&out, "shard")
            .iter()
            .filter_map(|r| Some((r["case2code"]["template"].as_str()?.to_string(), r["task"]["prompt"].as_str()?.to_string())))
            .collect()
    };
    let a = prompts("a", "1");
    let b = prompts("b", "1");
    assert_eq!(a.len(), 5);
    assert_eq!(a, b, "same seed, same samples");
    let others: Vec<Vec<(String, String)>> = (2..6).map(|s| prompts(&format!("s{s}"), &s.to_string())).collect();
    assert!(others.iter().any(|o| o != &a), "another seed picks differently");
}
