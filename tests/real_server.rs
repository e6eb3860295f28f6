//! The stages against a real OpenAI-compatible server: llama.cpp's `llama-server` with
//! SmolLM2-135M (fetched by scripts/setup-llm-server.sh into .llm-server/; no network here).
//! The model is tiny, so the quality of its answers is not the point; the protocol is: every
//! record accounted for, `n` above the slot count, a context overflow, a refused key, usage
//! that covers one choice, a `kill -9` of the tool and of the server with resumes that add up.
//!
//! One server per test, tests one at a time (two cores: parallel servers would only slow
//! each other down and make timeouts meaningless).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::{bin, manifest, read_records, sandbox_python};
use serde_json::{json, Value};

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

const MODEL: &str = "smollm2";

struct LlamaServer {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl LlamaServer {
    fn start(dir: &Path, extra: &[&str]) -> LlamaServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        Self::start_on(dir, port, extra)
    }

    fn start_on(dir: &Path, port: u16, extra: &[&str]) -> LlamaServer {
        let root = std::env::var("LLM_SERVER_DIR").map(PathBuf::from).unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join(".llm-server"));
        let run = root.join("run");
        assert!(run.exists(), "{} is missing: run scripts/setup-llm-server.sh (scripts/test.sh does)", run.display());
        let log = dir.join(format!("llama-server-{port}.log"));
        let child = Command::new(&run)
            .args(["-m", root.join("model.gguf").to_str().unwrap(), "-t", "2", "-c", "8192", "-np", "4", "--alias", MODEL])
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let server = LlamaServer { child, port, log };
        let started = Instant::now();
        while get(port, "/health").map(|(status, _)| status) != Some(200) {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "llama-server not ready: {}",
                std::fs::read_to_string(&server.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        server
    }

    fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }

    fn kill9(&mut self) {
        let _ = self.child.kill(); // SIGKILL
        let _ = self.child.wait();
    }
}

impl Drop for LlamaServer {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A plain HTTP GET on loopback: (status, body).
fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, text.split("\r\n\r\n").nth(1).unwrap_or("").to_string()))
}

/// `[llm]` for the tiny model plus `extra` keys of it, then `tail` (other sections).
fn config(dir: &Path, extra: &str, tail: &str) -> String {
    let path = dir.join("llm.toml");
    let max_tokens = if extra.contains("max_tokens") { "" } else { "max_tokens = 160\n" };
    let text = format!("[llm]\nmodel = \"{MODEL}\"\n{max_tokens}temperature = 0.7\nseed = 3\nrequest_timeout = 120.0\nmax_retries = 2\nbackoff_min_ms = 100\nbackoff_max_ms = 500\n{extra}\n[sandbox]\npython = \"{}\"\n{tail}\n", sandbox_python());
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

fn stage(cfg: &str, input: &Path, out: &Path, args: &[&str]) -> std::process::Output {
    let mut cmd = bin();
    cmd.env_remove("OPENAI_BASE_URL").env_remove("OPENAI_API_KEY");
    cmd.args(["--config", cfg, "-i", input.to_str().unwrap(), "-o", out.to_str().unwrap()]).args(args);
    cmd.output().unwrap()
}

/// The stage ran to its end: 0, 4 (some transient errors) or 6 (every record failed alike,
/// which the tiny model can make happen: its replies often loop until max_tokens).
fn finished(run: &std::process::Output) -> bool {
    matches!(run.status.code(), Some(0 | 4 | 6))
}

fn write_jsonl(path: &Path, records: &[Value]) {
    let text: String = records.iter().map(|r| format!("{r}\n")).collect();
    std::fs::write(path, text).unwrap();
}

fn function(i: usize) -> Value {
    json!({"id": format!("fn{i}"), "entry_point": format!("scale{i}"), "packages": ["math"], "imports": ["import math"],
           "code": format!("import math\n\n\ndef scale{i}(x, factor={i}):\n    \"\"\"Scale x by factor and round up.\"\"\"\n    return math.ceil(x * factor)\n")})
}

fn kinds(out: &Path) -> Vec<String> {
    read_records(out, "shard").iter().map(|r| r["error"]["kind"].as_str().unwrap_or("ok").to_string()).collect()
}

/// Error kinds that mean the protocol went wrong (not the tiny model's answers).
const PROTOCOL_ERRORS: &[&str] = &[
    "rejected",
    "n_too_large",
    "short_reply",
    "missing_sample",
    "auth",
    "unknown_model",
    "endpoint_unreachable",
    "connection",
    "timeout",
    "malformed_response",
];

fn assert_no_protocol_errors(out: &Path) {
    for kind in kinds(out) {
        assert!(!PROTOCOL_ERRORS.contains(&kind.as_str()), "{}: {kind}", out.display());
    }
}

fn llm_usage(out: &Path) -> Value {
    manifest(out)["timings"]["llm"].clone()
}

#[test]
fn gen_tests_fix_refine_and_consensus_on_a_real_server() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let server = LlamaServer::start(dir.path(), &[]);
    let url = server.base_url();

    // gen-tests: two functions, and one whose prompt cannot fit a 2,048-token slot.
    let mut records = vec![function(1), function(2)];
    let filler: String = (0..900).map(|i| format!("    # step {i}: keep the value\n")).collect();
    records.push(json!({"id": "huge", "entry_point": "huge", "packages": [], "imports": [],
                        "code": format!("def huge(x):\n{filler}    return x\n")}));
    let input = dir.path().join("functions.jsonl");
    write_jsonl(&input, &records);
    let cfg = config(dir.path(), "", "");
    let out = dir.path().join("gen-tests");
    let run = stage(&cfg, &input, &out, &["gen-tests", "--base-url", &url]);
    let stderr = String::from_utf8_lossy(&run.stderr).to_string();
    assert!(finished(&run), "{stderr}");
    assert!(stderr.contains("llama.cpp") && stderr.contains("slots 4"), "the preflight reports the server: {stderr}");
    assert!(stderr.contains("exceeds the server's context of 2048 tokens"), "the oversized prompt is warned about: {stderr}");
    let k = kinds(&out);
    assert_eq!(k.len(), 3, "records in = records out");
    assert_eq!(k[2], "context_overflow", "{k:?}");
    assert_no_protocol_errors(&out);
    assert!(llm_usage(&out)["requests"].as_u64().unwrap() >= 3);

    // sandbox-run → fix (n = 2) → refine on a wrong and a right function.
    let tests = "import unittest\n\nclass TestCases(unittest.TestCase):\n    def test_small(self):\n        self.assertEqual(add(1, 2), 3)\n\n    def test_negative(self):\n        self.assertEqual(add(-4, 1), -3)\n\n    def test_zero(self):\n        self.assertEqual(add(0, 0), 0)\n";
    let pair = [
        json!({"id": "wrong", "entry_point": "add", "code": "def add(a, b):\n    return a - b\n", "tests": tests}),
        json!({"id": "right", "entry_point": "add", "code": "def add(a, b):\n    return a + b\n", "tests": tests}),
    ];
    let input = dir.path().join("pair.jsonl");
    write_jsonl(&input, &pair);
    let checked = dir.path().join("sandbox-run");
    assert!(stage(&cfg, &input, &checked, &["sandbox-run"]).status.success());
    let fixed = dir.path().join("fix");
    let run = stage(&cfg, &checked, &fixed, &["fix", "--base-url", &url, "--max-rounds", "1", "--samples", "2"]);
    assert!(finished(&run), "{}", String::from_utf8_lossy(&run.stderr));
    assert_eq!(kinds(&fixed).len(), 2);
    assert_no_protocol_errors(&fixed);
    assert!(llm_usage(&fixed)["requests"].as_u64().unwrap() >= 1, "the wrong one was sent to the model");
    let refined = dir.path().join("refine");
    let run = stage(&cfg, &fixed, &refined, &["refine", "--base-url", &url]);
    assert!(finished(&run), "{}", String::from_utf8_lossy(&run.stderr));
    assert_eq!(kinds(&refined).len(), 2);
    assert_no_protocol_errors(&refined);
    assert!(llm_usage(&refined)["requests"].as_u64().unwrap() >= 1, "the right one was sent to the model");

    // consensus: a problem, with more samples than the server has slots.
    let problem = json!({"id": "p", "problem": "Return the sum of the squares of xs.", "skeleton": "def sum_squares(xs):\n    ...\n", "entry_point": "sum_squares"});
    let input = dir.path().join("problems.jsonl");
    write_jsonl(&input, &[problem]);
    let out = dir.path().join("consensus");
    let run = stage(&cfg, &input, &out, &["consensus", "--base-url", &url, "--samples", "6", "--tests", "5"]);
    assert!(finished(&run), "{}", String::from_utf8_lossy(&run.stderr));
    assert_eq!(kinds(&out).len(), 1);
    assert_no_protocol_errors(&out);
}

#[test]
fn n_above_the_slots_is_learned_from_the_400_and_usage_is_estimated() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let server = LlamaServer::start(dir.path(), &[]);
    // No preflight: the limit comes from the server's own 400.
    let cfg = config(dir.path(), "preflight = false\n", "");
    let input = dir.path().join("functions.jsonl");
    write_jsonl(&input, &[function(3)]);
    let out = dir.path().join("out");
    let run = stage(&cfg, &input, &out, &["gen-tests", "--base-url", &server.base_url(), "--samples", "6", "--no-call-check"]);
    let stderr = String::from_utf8_lossy(&run.stderr).to_string();
    assert!(stderr.contains("allows n ≤ 4"), "{stderr}");
    let records = read_records(&out, "shard");
    assert_eq!(records.len(), 1);
    assert_no_protocol_errors(&out);
    let generation = &records[0]["generation"];
    assert_eq!(generation["samples"], 6, "{generation}");
    assert_eq!(generation["usage"]["estimated"], true, "llama.cpp's usage covers one of the n choices: {generation}");
    let usage = llm_usage(&out);
    assert_eq!(usage["errors_by_kind"]["n_too_large"], 1, "{usage}");
    assert!(usage["estimated_answers"].as_u64().unwrap() >= 1, "{usage}");
}

#[test]
fn a_refused_key_stops_after_one_request() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let server = LlamaServer::start(dir.path(), &["--api-key", "the-right-key"]);
    let cfg = config(dir.path(), "", "");
    let input = dir.path().join("functions.jsonl");
    write_jsonl(&input, &(0..6).map(function).collect::<Vec<_>>());
    let out = dir.path().join("out");
    let run = stage(&cfg, &input, &out, &["gen-tests", "--base-url", &server.base_url()]);
    assert_eq!(run.status.code(), Some(5), "{}", String::from_utf8_lossy(&run.stderr));
    assert!(kinds(&out).iter().all(|k| k == "auth"), "{:?}", kinds(&out));
    // Only the requests already in flight when the first refusal came back were sent.
    let sent = llm_usage(&out)["requests"].as_u64().unwrap();
    assert!((1..6).contains(&sent), "{sent} requests for 6 records");
    // With the key: the plain rerun redoes them all.
    let mut cmd = bin();
    cmd.env("OPENAI_API_KEY", "the-right-key").env_remove("OPENAI_BASE_URL");
    cmd.args(["--config", &cfg, "-i", input.to_str().unwrap(), "-o", out.to_str().unwrap(), "gen-tests", "--base-url", &server.base_url()]);
    let run = cmd.output().unwrap();
    assert!(finished(&run), "{}", String::from_utf8_lossy(&run.stderr));
    assert_eq!(kinds(&out).len(), 6);
    assert!(kinds(&out).iter().all(|k| k != "auth"));
    assert_no_protocol_errors(&out);
}

/// Lines in a file (0 when it does not exist).
fn lines(path: &Path) -> usize {
    std::fs::read_to_string(path).map(|t| t.lines().count()).unwrap_or(0)
}

fn wait_until(ready: impl Fn() -> bool, what: &str, child: &mut Child) {
    let started = Instant::now();
    while !ready() {
        if let Some(status) = child.try_wait().unwrap() {
            let mut stderr = String::new();
            child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
            panic!("the stage ended ({status}) before {what}: {stderr}");
        }
        assert!(started.elapsed() < Duration::from_secs(120), "no progress");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn kill_9_of_the_tool_and_of_the_server_then_resume_with_accounting_that_adds_up() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let mut server = LlamaServer::start(dir.path(), &[]);
    let port = server.port;
    // Short single requests, so that records finish steadily.
    let cfg = config(dir.path(), "down_timeout = 2.0\nbench_after_failures = 2\nconcurrency = 2\nmax_tokens = 64\n", "[gen-tests]\nretries = 0\n");
    let total = 16;
    let input = dir.path().join("functions.jsonl");
    write_jsonl(&input, &(0..total).map(function).collect::<Vec<_>>());
    let out = dir.path().join("out");
    let spawn = |url: &str| {
        Command::new(assert_cmd::cargo::cargo_bin("unitcoder"))
            .env_remove("OPENAI_BASE_URL")
            .env_remove("RUST_LOG")
            .args(["--config", &cfg, "-i", input.to_str().unwrap(), "-o", out.to_str().unwrap(), "gen-tests", "--base-url", url, "--no-call-check"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };

    // Run 1: the tool is killed with SIGKILL after two answers. (Answers, not records:
    // records are written in input order, and the first may be the last to finish, with
    // the whole stage done by then.)
    let journal = out.join(".llm-usage.jsonl");
    let mut tool = spawn(&server.base_url());
    wait_until(|| lines(&journal) >= 2, "two answers", &mut tool);
    tool.kill().unwrap();
    tool.wait().unwrap();

    // Run 2: resumes; the server is killed with SIGKILL once this run has had an answer.
    let answered_before = lines(&journal);
    let mut tool = spawn(&server.base_url());
    wait_until(|| lines(&journal) > answered_before, "an answer in run 2", &mut tool);
    server.kill9();
    let status = tool.wait().unwrap();
    let mut stderr = String::new();
    tool.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert_eq!(status.code(), Some(5), "the stage stops when the server is gone: {stderr}");
    assert!(stderr.contains("no LLM endpoint"), "{stderr}");
    assert!(!manifest(&out)["complete"].as_bool().unwrap());

    // Run 3: the server is back on its port; a plain rerun finishes the job.
    let server = LlamaServer::start_on(dir.path(), port, &[]);
    let run = stage(&cfg, &input, &out, &["gen-tests", "--base-url", &server.base_url(), "--no-call-check"]);
    assert!(finished(&run), "{}", String::from_utf8_lossy(&run.stderr));
    let k = kinds(&out);
    assert_eq!(k.len(), total, "records in = records out: {k:?}");
    assert_no_protocol_errors(&out);
    let ids: Vec<String> = read_records(&out, "shard").iter().map(|r| r["id"].as_str().unwrap().to_string()).collect();
    assert_eq!(ids, (0..total).map(|i| format!("fn{i}")).collect::<Vec<_>>(), "input order, each once");

    // Accounting: three runs, including the one killed with SIGKILL, and totals that add up.
    let m = manifest(&out);
    let history = m["history"].as_array().unwrap();
    assert_eq!(history.len(), 3, "{history:?}");
    let sum = |k: &str| history.iter().map(|h| h[k].as_u64().unwrap_or(0)).sum::<u64>();
    let llm = &m["timings"]["llm"];
    assert_eq!(llm["requests"].as_u64(), Some(sum("requests")));
    assert_eq!(llm["completion_tokens"].as_u64(), Some(sum("completion_tokens")));
    assert!(history[0]["requests"].as_u64().unwrap() >= 2, "the killed run counts: {history:?}");
    assert!(sum("requests") >= total as u64);
}
