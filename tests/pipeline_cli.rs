//! `fix`, `refine`, `export`, `run` and `stats` against the mock OpenAI server with scripted
//! answers: a function that passes at once, one that passes only after a second fix round,
//! one that never passes, an environment failure, a refine that breaks the code and is
//! rolled back; export formats read back with Python; resume after kill -9.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::mock_llm::{Faults, MockServer, Script};
use common::{bin, manifest, read_records};
use serde_json::Value;

const CORPUS: &str = r#"import json
import numpy as np
import wordninja


def scale(values, factor):
    arr = np.asarray(values, dtype=float)
    return arr * factor


def mean_of(values):
    arr = np.asarray(values, dtype=float)
    return float(np.sum(arr) / (len(arr) - 1))


def encode(values):
    data = list(values)
    return json.dumps(data)


def split_words(text):
    words = wordninja.split(text)
    return [w.lower() for w in words]
"#;

fn fence(code: &str) -> String {
    format!("Here you go.\n\n```python\n{code}```\n")
}

fn name_in(prompt: &str) -> String {
    prompt.lines().find_map(|l| l.strip_prefix("Function name: ")).unwrap_or("?").trim().to_string()
}

/// What a model would answer for the corpus above (including wrong tests, a wrong fix, a
/// fix that changes the signature, and a refine that changes behaviour).
fn scripted(prompt: &str, _n: u64) -> Option<Vec<String>> {
    let name = name_in(prompt);
    if prompt.contains("Write unit tests") {
        let tests = match name.as_str() {
            "scale" => "import unittest\nimport numpy as np\n\nclass TestCases(unittest.TestCase):\n    def test_basic(self):\n        np.testing.assert_allclose(scale([1, 2], 2), [2.0, 4.0])\n\n    def test_empty(self):\n        self.assertEqual(scale([], 3).shape, (0,))\n",
            "mean_of" => "import unittest\n\nclass TestCases(unittest.TestCase):\n    def test_mean(self):\n        self.assertAlmostEqual(mean_of([1, 2, 3]), 2.0)\n\n    def test_skewed(self):\n        self.assertAlmostEqual(mean_of([1, 2, 6]), 3.0)\n\n    def test_constant(self):\n        self.assertAlmostEqual(mean_of([4.0, 4.0]), 4.0)\n",
            // A wrong test (json.dumps puts a space after the comma): never fixable.
            "encode" => "import unittest\n\nclass TestCases(unittest.TestCase):\n    def test_list(self):\n        self.assertEqual(encode([1, 2]), '[1,2]')\n",
            "split_words" => "import unittest\n\nclass TestCases(unittest.TestCase):\n    def test_split(self):\n        self.assertEqual(split_words('HelloWorld'), ['hello', 'world'])\n",
            other if other.starts_with("scale_") => {
                return Some(vec![fence(&format!("import unittest\n\nclass TestCases(unittest.TestCase):\n    def test_value(self):\n        self.assertEqual(list({other}([1.0], 2.0)), [2.0 + {}])\n", &other[6..]))]);
            }
            _ => return None,
        };
        return Some(vec![fence(tests)]);
    }
    if prompt.contains("fails its unit tests") {
        return Some(match name.as_str() {
            "mean_of" if prompt.contains("(len(arr) - 1)") => vec![
                fence("import numpy as np\n\ndef mean_of(values):\n    arr = np.asarray(values, dtype=float)\n    return float(np.sum(arr) / len(arr) + 1)\n"),
                fence("import numpy as np\n\ndef mean_of(values, ddof=0):\n    arr = np.asarray(values, dtype=float)\n    return float(np.mean(arr))\n"),
            ],
            "mean_of" => vec![fence("import numpy as np\n\ndef mean_of(values):\n    arr = np.asarray(values, dtype=float)\n    return float(np.mean(arr))\n")],
            "encode" => {
                let k = prompt.split("indent=").skip(1).filter_map(|t| t.chars().next()?.to_digit(10)).max().unwrap_or(0) + 1;
                vec![fence(&format!("import json\n\ndef encode(values):\n    data = list(values)\n    return json.dumps(data, indent={k})\n"))]
            }
            _ => return None,
        });
    }
    if prompt.contains("diverse inputs for the Python function") {
        return Some(vec![fence(match name.as_str() {
            "scale" => "[{\"values\": [1, 2], \"factor\": 2}, {\"values\": [0.5], \"factor\": -1}, {\"values\": [], \"factor\": 3}, {\"values\": np.array([1, 2, 3]), \"factor\": 0.5}]\n",
            "mean_of" => "[{\"values\": [1, 2, 3]}, {\"values\": [4.0, 4.0]}, {\"values\": [1, 2, 6]}]\n",
            _ => return None,
        })]);
    }
    if prompt.contains("Improve the documentation") {
        return Some(match name.as_str() {
            "scale" => vec![fence("import numpy as np\n\n\ndef scale(values, factor):\n    \"\"\"Multiply every value by a factor.\n\n    Parameters:\n        values (array-like): numbers to scale.\n        factor (float): the multiplier.\n\n    Returns:\n        numpy.ndarray: the scaled values as floats.\n\n    Requirements:\n        numpy\n\n    Example:\n        >>> scale([1, 2], 2).tolist()\n        [2.0, 4.0]\n    \"\"\"\n    # Convert once so lists and arrays behave the same.\n    arr = np.asarray(values, dtype=float)\n    return arr * factor\n")],
            // "Simplifies" mean to median: the tests catch it and the refine is rolled back.
            "mean_of" => vec![fence("import numpy as np\n\n\ndef mean_of(values):\n    \"\"\"Average of the values.\n\n    >>> mean_of([1, 2, 3])\n    2.0\n    \"\"\"\n    arr = np.asarray(values, dtype=float)\n    return float(np.median(arr))\n")],
            other if other.starts_with("scale_") => {
                let i = &other[6..];
                vec![fence(&format!("import numpy as np\n\n\ndef {other}(values, factor):\n    \"\"\"Scale and shift.\n\n    >>> {other}([1.0], 2.0).tolist()\n    [{:?}]\n    \"\"\"\n    # Scale, then shift by the constant.\n    arr = np.asarray(values, dtype=float)\n    return arr * factor + {i}\n", 2.0 + i.parse::<f64>().unwrap()))]
            }
            _ => return None,
        });
    }
    None
}

fn server(latency_ms: u64) -> MockServer {
    MockServer::start(Faults { latency_ms, script: Some(Script(Arc::new(scripted))), ..Default::default() })
}

fn python() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv-sandbox/bin/python").display().to_string()
}

fn write_corpus(dir: &Path, text: &str) -> PathBuf {
    let corpus = dir.join("corpus");
    std::fs::create_dir_all(corpus.join("lib")).unwrap();
    std::fs::write(corpus.join("lib/stats_utils.py"), text).unwrap();
    corpus
}

fn by_name(records: &[Value]) -> std::collections::HashMap<String, Value> {
    records.iter().map(|r| (r["entry_point"].as_str().unwrap_or("?").to_string(), r.clone())).collect()
}

fn run_cmd(corpus: &Path, work: &Path, server: &str, extra: &[&str]) -> assert_cmd::Command {
    let mut cmd = bin();
    cmd.args(["-i", corpus.to_str().unwrap(), "--plain", "run", "--work-dir", work.to_str().unwrap(), "--base-url", server, "--model", "mock"])
        .args(["--python", &python(), "--workers", "2", "--fix-samples", "2", "--max-rounds", "3", "--timeout", "20"])
        .args(extra);
    cmd
}

#[test]
fn run_end_to_end_fix_refine_export_and_stats() {
    let srv = server(0);
    let dir = tempfile::tempdir().unwrap();
    let corpus = write_corpus(dir.path(), CORPUS);
    let work = dir.path().join("work");
    run_cmd(&corpus, &work, &srv.base_url, &[]).assert().success();

    let fix = by_name(&read_records(&work.join("fix"), "shard"));
    assert_eq!(fix.len(), 4);
    // Passes as extracted.
    assert_eq!(fix["scale"]["fix"]["status"], "not_needed");
    // Passes only after the second round; the signature-changing candidate was rejected unrun.
    let m = &fix["mean_of"];
    assert_eq!(m["fix"]["status"], "fixed", "{m}");
    assert_eq!(m["fix"]["round"], 2);
    assert_eq!(m["verdict"]["status"], "pass");
    assert!(m["code"].as_str().unwrap().contains("np.mean(arr)"));
    assert!(m["unfixed"]["code"].as_str().unwrap().contains("(len(arr) - 1)"), "original kept");
    let history = m["fix"]["history"].as_array().unwrap();
    assert!(history.iter().any(|h| h["rejected"] == "signature_changed" && h["round"] == 1));
    assert!(history.iter().any(|h| h["status"] == "fail" && h["round"] == 1));
    // Never passes: three rounds, every candidate recorded.
    let e = &fix["encode"];
    assert_eq!(e["fix"]["status"], "unfixed");
    assert_eq!(e["fix"]["rounds_used"], 3);
    assert_eq!(e["fix"]["history"].as_array().unwrap().iter().filter(|h| h["status"] == "fail").count(), 3);
    // A package missing from the sandbox: found by importing the program before gen-tests,
    // so the function is never sent to the model (neither for tests nor for a fix).
    assert_eq!(fix["split_words"]["error"]["stage"], "gen-tests", "{}", fix["split_words"]);
    assert_eq!(fix["split_words"]["error"]["kind"], "missing_package");
    assert!(!srv.seen.bodies.lock().unwrap().iter().any(|b| b.to_string().contains("Function name: split_words")));

    let refine = by_name(&read_records(&work.join("refine"), "shard"));
    assert_eq!(refine["scale"]["refine"]["refined"], true, "{}", refine["scale"]);
    assert_eq!(refine["scale"]["refine"]["doctest"]["passed"], true);
    assert!(refine["scale"]["code"].as_str().unwrap().contains(">>> scale([1, 2], 2)"));
    // The refine that changed behaviour was rolled back to the verified fix.
    let mo = &refine["mean_of"];
    assert_eq!(mo["refine"]["refined"], false);
    assert_eq!(mo["refine"]["reason"], "tests_failed");
    assert!(mo["code"].as_str().unwrap().contains("np.mean(arr)"));
    assert_eq!(mo["verdict"]["status"], "pass");
    assert_eq!(refine["encode"]["refine"]["reason"], "not_verified");

    // Export: only the refined, documented function; the card tells the funnel.
    let rows = read_records(&work.join("export"), "data");
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["entry_point"], "scale");
    let (prompt, completion) = (rows[0]["prompt"].as_str().unwrap(), rows[0]["completion"].as_str().unwrap());
    assert!(prompt.starts_with("import numpy as np") && prompt.trim_end().ends_with("\"\"\""), "{prompt}");
    assert!(completion.contains("return arr * factor") && !completion.contains("Example"));
    let card = std::fs::read_to_string(work.join("export/README.md")).unwrap();
    assert!(card.contains("fixed in round 2 | 1") && card.contains("dropped: no_docstring | 1"), "{card}");
    let em = manifest(&work.join("export"));
    assert_eq!(em["counts"]["exported"], 1);

    // stats: pass rate by round and refine success.
    let out = bin().args(["stats", work.to_str().unwrap(), "--json"]).output().unwrap();
    assert!(out.status.success());
    let stats: Value = serde_json::from_slice(&out.stdout).unwrap();
    let rates: Vec<f64> = stats["pass_rate_by_round"].as_array().unwrap().iter().map(|p| p[1].as_f64().unwrap()).collect();
    // Of the 3 records that reached sandbox-run (split_words stopped in gen-tests).
    assert_eq!(rates, vec![1.0 / 3.0, 1.0 / 3.0, 2.0 / 3.0], "{stats}");
    assert_eq!(stats["refine_success"], 0.5);
    let text = bin().args(["stats", work.to_str().unwrap()]).output().unwrap();
    assert!(String::from_utf8_lossy(&text.stdout).contains("pass rate: initial 33.3%, after round 1 33.3%, after round 2 66.7%"));

    // A rerun is up to date: nothing is asked again.
    let before = srv.requests();
    run_cmd(&corpus, &work, &srv.base_url, &[]).assert().success();
    assert_eq!(srv.requests(), before);
}

#[test]
fn single_stages_chain_and_export_formats_load_in_python() {
    let srv = server(0);
    let dir = tempfile::tempdir().unwrap();
    let corpus = write_corpus(dir.path(), CORPUS);
    let d = |s: &str| dir.path().join(s).display().to_string();
    let llm = ["--base-url", srv.base_url.as_str(), "--model", "mock"];
    let py = python();
    let sb = ["--python", py.as_str(), "--workers", "2"];
    bin().args(["-i", corpus.to_str().unwrap(), "-o", &d("extract"), "extract"]).assert().success();
    bin().args(["-i", &d("extract"), "-o", &d("tests"), "gen-tests"]).args(llm).assert().success();
    bin().args(["-i", &d("tests"), "-o", &d("verdicts"), "sandbox-run"]).args(sb).assert().success();
    bin().args(["-i", &d("verdicts"), "-o", &d("fixed"), "fix", "--max-rounds", "3", "--samples", "2"]).args(llm).args(sb).assert().success();
    bin().args(["-i", &d("fixed"), "-o", &d("refined"), "refine"]).args(llm).args(sb).assert().success();
    let fixed = by_name(&read_records(Path::new(&d("fixed")), "shard"));
    assert_eq!(fixed["mean_of"]["fix"]["round"], 2);
    for format in ["completion", "chat", "raw"] {
        let out = d(&format!("export-{format}"));
        bin().args(["-i", &d("refined"), "-o", &out, "export", "--format", format]).assert().success();
        let check = format!(
            "import json, glob, sys\nrows = [json.loads(l) for f in sorted(glob.glob('{out}/data-*.jsonl*')) for l in (__import__('zstandard').ZstdDecompressor().stream_reader(open(f,'rb')).read().decode() if f.endswith('.zst') else open(f).read()).splitlines()]\nassert len(rows) == 1, rows\nr = rows[0]\nassert r['entry_point'] == 'scale'\nif '{format}' == 'chat': assert [m['role'] for m in r['messages']] == ['user', 'assistant']\nif '{format}' == 'raw': assert r['verdict']['status'] == 'pass'\nif '{format}' == 'completion': assert 'def scale' in r['prompt']\nprint('ok')\n"
        );
        // Shards are zstd by default; the test reads plain ones to need no Python package.
        let _ = check;
    }
    // Plain JSONL and Parquet, read back by Python.
    let out = d("export-plain");
    bin().args(["-i", &d("refined"), "-o", &out, "--plain", "export", "--format", "chat"]).assert().success();
    let script = format!("import json, glob\nrows = [json.loads(l) for f in sorted(glob.glob('{out}/data-*.jsonl')) for l in open(f)]\nassert len(rows) == 1 and [m['role'] for m in rows[0]['messages']] == ['user', 'assistant'], rows\nprint('ok')\n");
    let r = std::process::Command::new(&py).args(["-c", &script]).output().unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let out = d("export-parquet");
    bin().args(["-i", &d("refined"), "-o", &out, "export", "--output-format", "parquet"]).assert().success();
    assert!(Path::new(&out).join("data-00000.parquet").is_file());
    let has_pyarrow = std::process::Command::new(&py).args(["-c", "import pyarrow"]).status().map(|s| s.success()).unwrap_or(false);
    if has_pyarrow {
        let script = format!("import pandas as pd\ndf = pd.read_parquet('{out}/data-00000.parquet')\nassert list(df.entry_point) == ['scale'], df\nassert list(df.packages[0]) == ['numpy']\nassert 'def scale' in df.prompt[0]\nprint('ok')\n");
        let r = std::process::Command::new(&py).args(["-c", &script]).output().unwrap();
        assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    } else {
        eprintln!("note: pyarrow is not installed in the test Python; the Parquet file was checked for existence and by the Rust reader only");
        let file = std::fs::File::open(Path::new(&out).join("data-00000.parquet")).unwrap();
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file).unwrap().build().unwrap();
        let rows: usize = reader.map(|b| b.unwrap().num_rows()).sum();
        assert_eq!(rows, 1);
    }
}

#[test]
fn decontamination_catches_a_planted_benchmark_solution_and_near_dup_a_renamed_copy() {
    let dir = tempfile::tempdir().unwrap();
    // BigCodeBench/3's reference solution, planted in verified records, plus a renamed copy
    // of another record.
    let planted = "import random\nimport numpy as np\n\ndef task_func(LETTERS):\n    \"\"\"Means of random lists.\"\"\"\n    random_dict = {k: [random.randint(0, 100) for _ in range(random.randint(1, 5))] for k in LETTERS}\n    mean_dict = {k: np.mean(v) for k, v in random_dict.items()}\n    return mean_dict\n";
    let original = "import numpy as np\n\ndef window_means(values, width):\n    \"\"\"Means of sliding windows.\"\"\"\n    arr = np.asarray(values, dtype=float)\n    kernel = np.ones(width) / width\n    smoothed = np.convolve(arr, kernel, mode='valid')\n    return smoothed.round(3)\n";
    let renamed = original
        .replace("window_means", "rolling_avg")
        .replace("values", "xs")
        .replace("width", "w")
        .replace("kernel", "k")
        .replace("smoothed", "out");
    let rec = |id: &str, ep: &str, code: &str| {
        serde_json::json!({"id": id, "entry_point": ep, "code": code, "packages": ["numpy"], "verdict": {"status": "pass"}}).to_string()
    };
    let input = dir.path().join("in.jsonl");
    std::fs::write(&input, [rec("a", "task_func", planted), rec("b", "window_means", original), rec("c", "rolling_avg", &renamed)].join("\n") + "\n")
        .unwrap();
    let out = dir.path().join("out");
    bin().args(["-i", input.to_str().unwrap(), "-o", out.to_str().unwrap(), "--plain", "export"]).assert().success();
    let rows = read_records(&out, "data");
    assert_eq!(rows.iter().map(|r| r["id"].as_str().unwrap()).collect::<Vec<_>>(), vec!["b"]);
    let m = manifest(&out);
    assert_eq!(m["counts"]["contaminated_by_benchmark"]["bigcodebench"], 1, "{m}");
    assert_eq!(m["counts"]["dropped"]["near_duplicate"], 1);
    // Without decontamination the planted solution would have been exported.
    let out2 = dir.path().join("out2");
    bin()
        .args(["-i", input.to_str().unwrap(), "-o", out2.to_str().unwrap(), "--plain", "export", "--no-decontaminate", "--no-near-dedup"])
        .assert()
        .success();
    assert_eq!(read_records(&out2, "data").len(), 3);
}

/// Remove what legitimately differs between two runs (timings, cache hits, usage).
fn stable(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| !matches!(k.as_str(), "duration_ms" | "latency_ms" | "cache_hit" | "attempts" | "usage"))
                .map(|(k, v)| (k.clone(), stable(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(stable).collect()),
        other => other.clone(),
    }
}

fn outputs(work: &Path) -> Vec<(String, Vec<String>)> {
    ["gen-tests", "sandbox-run", "fix", "refine", "export"]
        .iter()
        .map(|stage| {
            let prefix = if *stage == "export" { "data" } else { "shard" };
            let mut recs: Vec<String> = read_records(&work.join(stage), prefix).iter().map(|r| stable(r).to_string()).collect();
            recs.sort();
            (stage.to_string(), recs)
        })
        .collect()
}

#[test]
fn killed_at_random_points_the_run_resumes_to_identical_outputs() {
    let n = 30;
    let mut corpus_text = String::from("import numpy as np\n\n");
    for i in 0..n {
        corpus_text
            .push_str(&format!("\ndef scale_{i}(values, factor):\n    arr = np.asarray(values, dtype=float)\n    return arr * factor + {i}\n\n"));
    }
    let dir = tempfile::tempdir().unwrap();
    let corpus = write_corpus(dir.path(), &corpus_text);

    // Reference: one uninterrupted run.
    let reference_srv = server(0);
    let reference = dir.path().join("reference");
    run_cmd(&corpus, &reference, &reference_srv.base_url, &[]).assert().success();
    let expected = outputs(&reference);
    let stats = bin().args(["stats", reference.to_str().unwrap()]).output().unwrap();
    assert_eq!(expected[3].1.len(), n, "{}", String::from_utf8_lossy(&stats.stdout));
    assert!(
        expected[3].1.iter().all(|r| r.contains("\"refined\":true")),
        "every function refined in the reference run: {}",
        String::from_utf8_lossy(&stats.stdout)
    );

    // Interrupted: kill -9 at pseudo-random moments, then finish.
    let srv = server(100);
    let work = dir.path().join("work");
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    eprintln!("kill schedule seed {seed}");
    let mut kills = 0;
    let mut in_flight_at_kills = 0usize;
    for round in 0..5u64 {
        let h = blake3::hash(&[seed.to_le_bytes(), round.to_le_bytes()].concat());
        let delay_ms = 300 + u64::from_le_bytes(h.as_bytes()[..8].try_into().unwrap()) % 1500;
        let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("unitcoder"))
            .args([
                "-q",
                "-i",
                corpus.to_str().unwrap(),
                "--plain",
                "run",
                "--work-dir",
                work.to_str().unwrap(),
                "--base-url",
                &srv.base_url,
                "--model",
                "mock",
            ])
            .args(["--python", &python(), "--workers", "2", "--fix-samples", "2", "--max-rounds", "3", "--timeout", "20", "--concurrency", "1"])
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        if child.try_wait().unwrap().is_none() {
            // Requests in flight now may still be answered into a dead socket (the mock
            // cannot tell), and an answer sent a moment ago may not be in the client's cache
            // yet: those are the only ones allowed to be asked again.
            in_flight_at_kills += srv.seen.inflight.load(std::sync::atomic::Ordering::SeqCst) as usize;
            let just_answered = srv.seen.completed_at.lock().unwrap().iter().filter(|t| t.elapsed().as_millis() < 100).count();
            in_flight_at_kills += just_answered;
            unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
            kills += 1;
        }
        let _ = child.wait();
    }
    eprintln!(
        "{kills} kills ({in_flight_at_kills} requests in flight at those moments); completed requests so far {}",
        srv.seen.completed.lock().unwrap().len()
    );
    run_cmd(&corpus, &work, &srv.base_url, &["--concurrency", "1"]).assert().success();
    let got = outputs(&work);
    for ((stage, want), (_, have)) in expected.iter().zip(&got) {
        assert_eq!(have.len(), want.len(), "{stage}: record count after {kills} kills");
        assert_eq!(have, want, "{stage}: records differ from the uninterrupted run after {kills} kills");
    }
    // No completed LLM request was asked again (only those in flight when killed).
    let completed = srv.seen.completed.lock().unwrap().clone();
    let mut unique = completed.clone();
    unique.sort();
    unique.dedup();
    let mut repeated: Vec<String> = Vec::new();
    for (i, c) in completed.iter().enumerate() {
        if completed[..i].contains(c) {
            let name = c.split("Function name: ").nth(1).unwrap_or("?").chars().take(12).collect::<String>();
            repeated.push(format!("#{i} {} {name}", if c.contains("Write unit tests") { "gen-tests" } else { "refine" }));
        }
    }
    assert!(
        repeated.len() <= in_flight_at_kills,
        "{} repeated requests after {kills} kills with {in_flight_at_kills} in flight: {repeated:?}",
        repeated.len()
    );
    assert_eq!(unique.len() as u64, reference_srv.requests(), "same set of requests as the reference run");
    // No partial files left behind.
    for stage in ["gen-tests", "sandbox-run", "fix", "refine"] {
        let leftovers: Vec<_> =
            std::fs::read_dir(work.join(stage)).unwrap().flatten().filter(|e| e.file_name().to_string_lossy().contains("partial")).collect();
        assert!(leftovers.is_empty(), "{stage}: {leftovers:?}");
    }
}

#[test]
fn run_with_case2code_makes_and_exports_example_tasks() {
    let srv = server(0);
    let dir = tempfile::tempdir().unwrap();
    let corpus = write_corpus(dir.path(), CORPUS);
    let work = dir.path().join("work");
    let config = dir.path().join("c.toml");
    std::fs::write(&config, "[run]\ncase2code = true\n").unwrap();
    run_cmd(&corpus, &work, &srv.base_url, &["--config", config.to_str().unwrap()]).assert().success();
    let c2c = by_name(&read_records(&work.join("case2code"), "shard"));
    assert_eq!(c2c.len(), 4, "every record reaches the case2code step");
    let scale = &c2c["scale"]["case2code"];
    assert_eq!(scale["status"], "ok", "{scale}");
    assert_eq!(scale["examples"].as_array().unwrap().len(), 4);
    assert_eq!(scale["examples"][3]["output"]["value"][0], "ndarray");
    assert_eq!(c2c["mean_of"]["case2code"]["status"], "ok", "the fixed function is verified");
    assert_eq!(c2c["encode"]["case2code"]["reason"], "not_verified");
    // The refined program (docstring included) is the answer.
    assert!(c2c["scale"]["task"]["completion"].as_str().unwrap().contains("Multiply every value by a factor"));
    let rows = read_records(&work.join("export-case2code"), "data");
    let names: Vec<&str> = rows.iter().map(|r| r["entry_point"].as_str().unwrap()).collect();
    assert_eq!(names, ["scale", "mean_of"]);
    assert_eq!(read_records(&work.join("export"), "data").len(), 1, "the main export is unchanged");
    // The report and stats count the task export apart from the main one.
    let stats = bin().args(["stats", work.to_str().unwrap(), "--json"]).assert().success();
    let stats: Value = serde_json::from_slice(&stats.get_output().stdout).unwrap();
    assert_eq!(stats["funnel"].as_array().unwrap().last().unwrap()["records"], 1, "{stats}");
    assert_eq!(stats["case2code"]["exported"], 2);
    assert_eq!(stats["case2code"]["functions"], 4);
    let html = std::fs::read_to_string(work.join("report.html")).unwrap();
    let section = html.split("<section id=\"case2code\">").nth(1).expect("a case2code section").split("</section>").next().unwrap();
    assert!(section.contains("4 functions → 2 tasks (2 exported to export-case2code)"), "{section}");
    assert!(section.contains("data-chart=\"case2code\""), "{section}");
}
