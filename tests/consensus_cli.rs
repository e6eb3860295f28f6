//! `unitcoder problems` and `unitcoder consensus` against a scripted mock model and the real
//! sandbox: problem generation, rating and dedup; consensus selection on scripted candidate
//! sets (majority, plurality of correct, exception floods, ties), stable signatures, and
//! export of D_t.

mod common;

use std::path::Path;
use std::sync::Arc;

use common::mock_llm::{Faults, MockServer, Script};
use common::{bin, read_records, sandbox_python};
use serde_json::{json, Value};

fn fence(code: &str) -> String {
    format!("Here is my solution.\n\n```python\n{}\n```\n", code.trim_end())
}

const CORRECT: &[&str] = &[
    "def second_largest(xs):\n    vals = sorted(set(xs))\n    return vals[-2] if len(vals) >= 2 else None\n",
    "def second_largest(xs):\n    uniq = sorted(set(xs), reverse=True)\n    if len(uniq) < 2:\n        return None\n    return uniq[1]\n",
    "def second_largest(xs):\n    first = second = None\n    for x in set(xs):\n        if first is None or x > first:\n            first, second = x, first\n        elif second is None or x > second:\n            second = x\n    return second\n",
];
const NO_DISTINCT: &str = "def second_largest(xs):\n    s = sorted(xs)\n    return s[-2] if len(s) >= 2 else None\n";
const MAXIMUM: &str = "def second_largest(xs):\n    return max(xs) if xs else None\n";
const MINIMUM: &str = "def second_largest(xs):\n    return min(xs) if len(set(xs)) >= 2 else None\n";
const RAISES: &str = "def second_largest(xs):\n    raise NotImplementedError('todo')\n";

const TESTS: &str = r#"[
    {"input": {"xs": [1, 2, 3]}, "output": 2},
    {"input": {"xs": [5, 5, 4]}, "output": 4},
    {"input": {"xs": [7]}, "output": None},
    {"input": {"xs": []}},
    {"input": {"xs": [3, 3, 3]}},
    {"input": {"xs": [-1, -5, 10, 10]}, "output": -1},
    {"xs": [2, 9, 4]},
    {"input": {"ys": [1]}},
    {"input": {"xs": __import__("os").listdir("/")}},
]"#;

fn scenario(prompt: &str) -> String {
    prompt.lines().find_map(|l| l.trim().strip_prefix("Scenario: ")).unwrap_or("").trim().to_string()
}

fn scripted(prompt: &str, _n: u64) -> Option<Vec<String>> {
    if prompt.contains("Write one new Python programming problem") {
        let index: usize =
            prompt.lines().find_map(|l| l.strip_prefix("Problem number: ")).and_then(|l| l.split_whitespace().next()?.parse().ok()).unwrap_or(0);
        let reply = match index {
            // 0 and 1 state the same problem in nearly the same words.
            0 | 1 => format!("Problem: Given a list of integers, return the sum of the squares of the even numbers in the list{}. An empty list gives 0.\n\n```python\ndef sum_even_squares(nums):\n    \"\"\"Sum of squares of the even numbers in nums.\"\"\"\n    ...\n```\n", if index == 1 { " please" } else { "" }),
            2 => "Problem: Given a string, return the length of its longest run of identical consecutive characters; 0 for the empty string.\n\n```python\ndef longest_run(s):\n    \"\"\"Length of the longest run of one repeated character in s.\"\"\"\n    ...\n```\n".to_string(),
            3 => "I'd rather not write a problem today.".to_string(),
            _ => "Problem: Return the number of distinct prime factors of a positive integer n, counting none for n = 1.\n\n```python\nimport math\n\ndef count_prime_factors(n):\n    \"\"\"Number of distinct primes dividing n.\"\"\"\n    ...\n```\n".to_string(),
        };
        return Some(vec![reply]);
    }
    if prompt.contains("Rate the difficulty") {
        let d = if prompt.contains("prime") { "hard" } else { "easy" };
        return Some(vec![format!("{{\"difficulty\": \"{d}\", \"category\": \"math\"}}")]);
    }
    if prompt.contains("test cases for the function") {
        return Some(vec![fence(TESTS)]);
    }
    if prompt.contains("Solve this programming problem") {
        let c = |i: usize| fence(CORRECT[i % CORRECT.len()]);
        let set: Vec<String> = match scenario(prompt).as_str() {
            // 6 of 8 correct (three different codings of one behaviour).
            "majority" => (0..6).map(c).chain([fence(NO_DISTINCT), fence(MAXIMUM)]).collect(),
            // 3 of 10 correct; the 7 wrong ones disagree with each other (2+2+2, one no code).
            "plurality" => vec![
                fence(NO_DISTINCT),
                c(0),
                fence(MAXIMUM),
                fence(MINIMUM),
                fence(NO_DISTINCT),
                c(1),
                fence(MAXIMUM),
                "Use sorting.".into(),
                fence(MINIMUM),
                c(2),
            ],
            // 5 raise on every input, 3 correct.
            "exceptions" => (0..5).map(|_| fence(RAISES)).chain((0..3).map(c)).collect(),
            "all_raise" => (0..4).map(|_| fence(RAISES)).collect(),
            // Two behaviours, two candidates each, in two different orders.
            "tie_a" => vec![fence(MAXIMUM), c(0), fence(MAXIMUM), c(1)],
            "tie_b" => vec![c(1), fence(MAXIMUM), c(0), fence(MAXIMUM)],
            _ => return None,
        };
        return Some(set);
    }
    None
}

fn problem_record(id: &str, scenario: &str) -> Value {
    json!({
        "id": id,
        "problem": format!("Scenario: {scenario}\nReturn the second largest distinct value in the list xs, or None when there are fewer than two distinct values."),
        "skeleton": "def second_largest(xs):\n    \"\"\"Second largest distinct value of xs, or None.\"\"\"\n",
        "entry_point": "second_largest",
    })
}

fn run_consensus(input: &Path, out: &Path, url: &str, samples: &str) -> Vec<Value> {
    bin()
        .args(["-i", input.to_str().unwrap(), "-o", out.to_str().unwrap(), "--plain", "--force", "consensus"])
        .args(["--base-url", url, "--model", "mock", "--python", &sandbox_python(), "--workers", "2", "--samples", samples, "--tests", "20"])
        .assert()
        .success();
    read_records(out, "shard")
}

fn by_id(records: &[Value]) -> std::collections::HashMap<String, Value> {
    records.iter().map(|r| (r["id"].as_str().unwrap().to_string(), r.clone())).collect()
}

/// The behaviour of a selected solution: its outputs on the test inputs.
fn behaves_correctly(code: &str) -> bool {
    CORRECT.contains(&code)
}

#[test]
fn consensus_selects_correct_solutions_and_says_why_not() {
    let srv = MockServer::start(Faults { script: Some(Script(Arc::new(scripted))), ..Default::default() });
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("problems.jsonl");
    let ids = [("m", "majority"), ("p", "plurality"), ("e", "exceptions"), ("x", "all_raise"), ("ta", "tie_a"), ("tb", "tie_b")];
    let mut text: String = ids.iter().map(|(id, s)| format!("{}\n", problem_record(id, s))).collect();
    text.push_str(&format!(
        "{}\n",
        json!({"id": "dup", "problem": "x", "skeleton": "def f(x):\n    \"\"\"d\"\"\"\n", "entry_point": "f", "duplicate_of": {"id": "m"}})
    ));
    text.push_str(&format!("{}\n", json!({"id": "missing", "problem": "no skeleton"})));
    // Problems made from existing records carry the original code as `reference`.
    let mut good_ref = problem_record("ref_ok", "majority");
    good_ref["reference"] = json!(CORRECT[2]);
    let mut bad_ref = problem_record("ref_bad", "majority");
    bad_ref["reference"] = json!(NO_DISTINCT);
    text.push_str(&format!("{good_ref}\n{bad_ref}\n"));
    std::fs::write(&input, text).unwrap();
    let out = dir.path().join("consensus");
    // N = 10 for every problem; the mock cycles shorter candidate lists.
    let records = run_consensus(&input, &out, &srv.base_url, "10");
    assert_eq!(records.len(), 10, "one output per problem");
    let r = by_id(&records);
    let c = |id: &str| r[id]["consensus"].clone();

    // Tests: 7 valid inputs (unknown parameter and forbidden call rejected), 4 with expected outputs.
    assert_eq!(c("m")["tests"]["valid"], 7, "{}", r["m"]);
    assert_eq!(c("m")["tests"]["with_expected"], 4);
    for id in ["m", "p", "e"] {
        assert_eq!(c(id)["status"], "ok", "{id}: {}", c(id));
        assert!(behaves_correctly(r[id]["task"]["completion"].as_str().unwrap()), "{id} picked a wrong solution");
        assert_eq!(c(id)["expected_pass_rate"], 1.0, "{id}");
    }
    // Majority: N = 10 cycles the 8 answers, so 8 correct of 10; the shortest coding is chosen.
    assert_eq!(c("m")["cluster_size"], 8);
    assert_eq!(c("m")["strength"], 0.8);
    assert_eq!(r["m"]["task"]["completion"], CORRECT[0]);
    // Plurality: the correct cluster has 3 while the wrong ones have 2 each.
    assert_eq!(c("p")["cluster_sizes"], json!([3, 2, 2, 2]));
    assert_eq!(c("p")["strength"], 0.3);
    let invalid =
        c("p")["candidates"].as_array().unwrap().iter().filter(|x| x["excluded"] == "no_code_block" || x["excluded"] == "syntax_error").count();
    assert_eq!(invalid, 1, "{}", c("p")["candidates"]);
    // Exception flood: the raisers are excluded (e = 0) and never form the chosen cluster.
    let excluded = c("e")["candidates"].as_array().unwrap().iter().filter(|x| x["excluded"] == "low_execution_success").count();
    assert!(excluded >= 5, "{}", c("e"));
    assert_eq!(c("x")["status"], "dropped");
    assert_eq!(c("x")["reason"], "all_unreliable");
    // Tie: the same behaviour wins whatever the sampling order.
    assert_eq!(c("ta")["status"], "ok");
    assert_eq!(c("ta")["signature"], c("tb")["signature"], "tie broken by the signature, not the order");
    // A reference that behaves like the consensus agrees; a wrong one does not.
    assert_eq!(c("ref_ok")["reference_agrees"], true);
    assert_eq!(c("ref_bad")["reference_agrees"], false);
    assert!(c("m").get("reference_agrees").is_none());
    // Duplicates and bad records.
    assert_eq!(c("dup")["reason"], "duplicate_problem");
    assert_eq!(r["missing"]["error"]["kind"], "missing_field");

    // Signatures are stable: a second run (fresh children, other workers) gives the same ones.
    let again = by_id(&run_consensus(&input, &dir.path().join("again"), &srv.base_url, "10"));
    for id in ["m", "p", "e", "ta", "tb"] {
        let sigs = |x: &Value| x["consensus"]["candidates"].as_array().unwrap().iter().map(|c| c["signature"].clone()).collect::<Vec<_>>();
        assert_eq!(sigs(&r[id]), sigs(&again[id]), "{id}");
        assert_eq!(r[id]["task"]["completion"], again[id]["task"]["completion"]);
    }

    // D_t through export: problem + skeleton → r*, with the consensus strength.
    let exported = dir.path().join("export");
    bin()
        .args(["-i", out.to_str().unwrap(), "-o", exported.to_str().unwrap(), "--plain", "export", "--no-decontaminate", "--no-near-dedup"])
        .assert()
        .success();
    let rows = read_records(&exported, "data");
    // Identical answers (the tie pair, the same correct coding) are exact duplicates.
    assert!(!rows.is_empty());
    for row in &rows {
        assert_eq!(row["meta"]["task"], "consensus");
        assert!(row["meta"]["strength"].as_f64().unwrap() >= 0.3);
        assert!(row["prompt"].as_str().unwrap().contains("def second_largest(xs):"));
    }

    // The report of the consensus output: problems, selections and their strengths, as
    // `stats --json` counts them.
    let stats = bin().args(["stats", out.to_str().unwrap(), "--json"]).assert().success();
    let stats: Value = serde_json::from_slice(&stats.get_output().stdout).unwrap();
    let page = dir.path().join("report.html");
    bin().args(["report", out.to_str().unwrap(), "-o", page.to_str().unwrap()]).assert().success();
    let html = std::fs::read_to_string(&page).unwrap();
    let section = html.split("<section id=\"consensus\">").nth(1).expect("a consensus section").split("</section>").next().unwrap();
    let c = &stats["consensus"];
    assert!(c["selected"].as_u64().unwrap() >= 5, "{c}");
    assert!(section.contains(&format!("{} problems → {} with a selected solution", c["problems"], c["selected"])), "{section}");
    let strengths: u64 = c["strength"].as_array().unwrap().iter().map(|p| p[1].as_u64().unwrap()).sum();
    assert_eq!(strengths, c["selected"].as_u64().unwrap(), "every selection has a strength bucket");
    for pair in c["strength"].as_array().unwrap() {
        assert!(section.contains(&format!("<td>{}</td><td>{}</td>", pair[0].as_str().unwrap(), pair[1])), "{pair} in {section}");
    }
    assert!(section.contains("data-chart=\"consensus\""));
}

#[test]
fn problems_are_generated_rated_deduplicated_and_taken_from_records() {
    let srv = MockServer::start(Faults { script: Some(Script(Arc::new(scripted))), ..Default::default() });
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("problems");
    let cmd = || {
        let mut c = bin();
        c.args(["-o", out.to_str().unwrap(), "--plain", "problems", "--count", "5", "--base-url", &srv.base_url, "--model", "mock"]);
        c
    };
    cmd().assert().code(0);
    let records = read_records(&out, "shard");
    assert_eq!(records.len(), 5);
    let kept: Vec<&Value> = records.iter().filter(|r| r.get("error").is_none() && r.get("duplicate_of").is_none()).collect();
    assert_eq!(kept.len(), 3, "{records:#?}");
    let dup = records.iter().find(|r| r.get("duplicate_of").is_some()).expect("one near-duplicate");
    assert_eq!(dup["entry_point"], "sum_even_squares");
    assert_eq!(dup["duplicate_of"]["id"], records[0]["id"]);
    assert_eq!(records[3]["error"]["kind"], "malformed_reply");
    let primes = records.iter().find(|r| r["entry_point"] == "count_prime_factors").unwrap();
    assert_eq!(primes["difficulty"], "hard");
    assert_eq!(primes["category"], "math");
    assert!(primes["skeleton"].as_str().unwrap().starts_with("import math\n\ndef count_prime_factors(n):"));
    assert!(primes["problem"].as_str().unwrap().starts_with("Return the number of distinct prime factors"));
    assert_eq!(primes["problem_source"]["kind"], "generated");
    // stats counts each problem once (the intermediate output is not a second stage).
    let stats = bin().args(["stats", out.to_str().unwrap(), "--json"]).output().unwrap();
    let stats: Value = serde_json::from_slice(&stats.stdout).unwrap();
    let p = stats["stages"].as_array().unwrap().iter().find(|s| s["stage"] == "problems").cloned().unwrap();
    assert_eq!((p["records"].clone(), p["ok"].clone()), (json!(5), json!(3)), "{p}");
    assert_eq!(p["errors_by_kind"]["malformed_reply"], 1);
    // A rerun is up to date: nothing asked again.
    let before = srv.requests();
    cmd().assert().code(0);
    assert_eq!(srv.requests(), before);

    // From existing records: the docstring is the statement, the code the reference.
    let input = dir.path().join("verified.jsonl");
    let code = "def longest_run(s):\n    \"\"\"Length of the longest run of one repeated character in s.\n\n    Empty strings give 0.\n    \"\"\"\n    best = run = 0\n    prev = None\n    for ch in s:\n        run = run + 1 if ch == prev else 1\n        prev = ch\n        best = max(best, run)\n    return best\n";
    std::fs::write(
        &input,
        format!(
            "{}\n{}\n",
            json!({"id": "v1", "code": code, "entry_point": "longest_run"}),
            json!({"id": "v2", "code": "def g(x):\n    return x\n", "entry_point": "g"})
        ),
    )
    .unwrap();
    let from = dir.path().join("from-records");
    bin()
        .args(["-i", input.to_str().unwrap(), "-o", from.to_str().unwrap(), "--plain", "problems", "--base-url", &srv.base_url, "--model", "mock"])
        .assert()
        .code(0);
    let recs = read_records(&from, "shard");
    assert_eq!(recs[0]["problem"], "Length of the longest run of one repeated character in s.\n\nEmpty strings give 0.");
    assert_eq!(recs[0]["reference"], code);
    assert!(recs[0]["skeleton"].as_str().unwrap().ends_with("    \"\"\"\n"));
    assert_eq!(recs[0]["difficulty"], "easy");
    assert_eq!(recs[1]["error"]["kind"], "no_docstring");
}
