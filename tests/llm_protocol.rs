//! The LLM client against servers that behave like real ones (issue 16): short replies,
//! an `n` limit, llama.cpp's seeded choices, usage that covers one choice, slots, refused
//! keys, unknown models, a dead endpoint, environment settings, vLLM's error bodies, context
//! overflow, and resumed accounting. The mock injects the behaviour; the code under test is
//! the real client and the real binary.

mod common;

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::mock_llm::{Faults, MockServer, Script};
use common::{bin, manifest, read_records};
use serde_json::{json, Value};
use unitcoder::llm::{LlmClient, LlmError, LlmSettings, Message};

fn settings(url: &str) -> LlmSettings {
    LlmSettings {
        base_urls: vec![url.to_string()],
        model: "mock-model".into(),
        max_retries: 2,
        backoff_min_ms: 5,
        backoff_max_ms: 20,
        request_timeout: 5.0,
        ..Default::default()
    }
}

fn prompt(name: &str) -> Vec<Message> {
    vec![Message { role: "user".into(), content: format!("Function name: {name}\nwrite tests") }]
}

fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap().block_on(f)
}

fn texts(g: &unitcoder::llm::Generation) -> Vec<String> {
    g.choices.iter().map(|c| c.text.clone()).collect()
}

fn distinct(v: &[String]) -> usize {
    let mut s = v.to_vec();
    s.sort();
    s.dedup();
    s.len()
}

#[test]
fn a_short_reply_is_topped_up_with_new_seeds_and_never_returned_short() {
    let server = MockServer::start(Faults { max_choices: Some(2), seeded_texts: true, ..Default::default() });
    let client = LlmClient::new(LlmSettings { seed: Some(7), ..settings(&server.base_url) }, None).unwrap();
    let g = block_on(client.generate(&prompt("f"), 5)).unwrap();
    assert_eq!(g.choices.len(), 5);
    assert_eq!(distinct(&texts(&g)), 5, "topped-up samples must not repeat: {:?}", texts(&g));
    assert!(client.stats.short_replies.load(Ordering::Relaxed) >= 2);

    // One choice per answer still completes (each answer brings one).
    let one = MockServer::start(Faults { max_choices: Some(1), ..Default::default() });
    let g = block_on(LlmClient::new(settings(&one.base_url), None).unwrap().generate(&prompt("f"), 6)).unwrap();
    assert_eq!((g.choices.len(), one.requests()), (6, 6));

    // A server that stops answering after 3 of 8: an error a rerun redoes, never a short list.
    let stingy = MockServer::start(Faults { max_choices: Some(3), max_choices_after_first: Some(0), ..Default::default() });
    let client = LlmClient::new(settings(&stingy.base_url), None).unwrap();
    let e = block_on(client.generate(&prompt("f"), 8)).unwrap_err();
    assert!(matches!(e, LlmError::ShortReply { wanted: 8, got: 3, .. }), "{e:?}");
    assert!(e.transient() && !e.fatal());
}

#[test]
fn n_above_the_server_limit_is_split_after_learning_the_limit() {
    let server = MockServer::start(Faults { max_n: Some(4), ..Default::default() });
    let client = LlmClient::new(settings(&server.base_url), None).unwrap();
    let g = block_on(client.generate(&prompt("f"), 10)).unwrap();
    assert_eq!(g.choices.len(), 10);
    assert_eq!(client.max_n(), 4);
    let ns: Vec<u64> = server.seen.bodies.lock().unwrap().iter().map(|b| b["n"].as_u64().unwrap()).collect();
    assert_eq!(ns, [10, 4, 4, 2], "one refused request, then chunks within the limit");
    // Known from then on: no more refused requests.
    block_on(client.generate(&prompt("g"), 6)).unwrap();
    let ns: Vec<u64> = server.seen.bodies.lock().unwrap().iter().map(|b| b["n"].as_u64().unwrap()).collect();
    assert_eq!(&ns[4..], [4, 2]);
}

#[test]
fn asking_for_the_missing_samples_does_not_repeat_the_cached_ones() {
    // llama.cpp: the choices of (seed, n = k) are the first k of (seed, n = N).
    let server = MockServer::start(Faults { seeded_texts: true, ..Default::default() });
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache.sqlite");
    let s = LlmSettings { seed: Some(11), ..settings(&server.base_url) };
    let first = block_on(LlmClient::new(s.clone(), Some(&cache)).unwrap().generate(&prompt("f"), 2)).unwrap();
    let more = block_on(LlmClient::new(s, Some(&cache)).unwrap().generate(&prompt("f"), 4)).unwrap();
    assert_eq!(texts(&more)[..2], texts(&first)[..], "the cached samples come first");
    assert_eq!(more.cache_hits, 2);
    assert_eq!(distinct(&texts(&more)), 4, "{:?}", texts(&more));
    let seeds: Vec<Value> = server.seen.bodies.lock().unwrap().iter().map(|b| b["seed"].clone()).collect();
    assert_eq!(seeds[0], 11);
    assert_ne!(seeds[1], 11);
}

#[test]
fn concurrency_counts_sequences_and_latency_excludes_the_wait_for_a_permit() {
    let server = MockServer::start(Faults { latency_ms: 300, ..Default::default() });
    let client = LlmClient::new(LlmSettings { concurrency: 4, ..settings(&server.base_url) }, None).unwrap();
    let generations = block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..6 {
            let client = client.clone();
            tasks.spawn(async move { client.generate(&prompt(&format!("f{i}")), 2).await });
        }
        let mut out = Vec::new();
        while let Some(r) = tasks.join_next().await {
            out.push(r.unwrap().unwrap());
        }
        out
    });
    assert_eq!(server.seen.sequences_peak.load(Ordering::SeqCst), 4, "6 requests of n = 2 on 4 sequences");
    // Three waves of 300 ms: the last ones waited ~600 ms for a permit, which is not latency.
    assert!(generations.iter().all(|g| g.latency_ms < 600), "{:?}", generations.iter().map(|g| g.latency_ms).collect::<Vec<_>>());
    assert!(generations.iter().any(|g| g.queue_ms >= 250), "{:?}", generations.iter().map(|g| g.queue_ms).collect::<Vec<_>>());
}

#[test]
fn usage_that_covers_one_choice_is_replaced_by_an_estimate_and_flagged() {
    let server = MockServer::start(Faults { usage_first_choice_only: true, ..Default::default() });
    let client = LlmClient::new(settings(&server.base_url), None).unwrap();
    let g = block_on(client.generate(&prompt("f"), 4)).unwrap();
    let chars: usize = g.choices.iter().map(|c| c.text.chars().count()).sum();
    assert!(g.tokens_estimated);
    assert!(g.completion_tokens as usize >= chars / 4, "{} tokens for {chars} chars", g.completion_tokens);
    assert_eq!(client.stats.estimated_answers.load(Ordering::Relaxed), 1);
    // One choice: the server's count stands.
    let g = block_on(client.generate(&prompt("g"), 1)).unwrap();
    assert!(!g.tokens_estimated);
}

// ---- the binary: fatal settings, dead endpoints, environment, error kinds, accounting ----

fn write_functions(dir: &Path, n: usize) -> String {
    let path = dir.join("functions.jsonl");
    let lines: Vec<String> = (0..n)
        .map(|i| {
            json!({"id": format!("r{i}"), "entry_point": format!("f{i}"), "code": format!("import os\n\n\ndef f{i}(a):\n    return os.sep + a\n"),
                   "packages": ["os"], "imports": ["import os"]})
            .to_string()
        })
        .collect();
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path.display().to_string()
}

/// gen-tests without the sandbox checks (the protocol is under test here).
fn gen_tests(input: &str, out: &Path, extra: &[&str]) -> assert_cmd::Command {
    let mut cmd = bin();
    cmd.env_remove("OPENAI_BASE_URL").env_remove("OPENAI_MODEL").env_remove("UNITCODER_MODEL").env("OPENAI_API_KEY", "sk-test");
    cmd.args(["-i", input, "-o", out.to_str().unwrap(), "gen-tests", "--no-import-check", "--no-call-check", "--max-retries", "2"]);
    cmd.args(extra);
    cmd
}

fn error_kinds(out: &Path) -> Vec<String> {
    read_records(out, "shard").iter().map(|r| r["error"]["kind"].as_str().unwrap_or("ok").to_string()).collect()
}

#[test]
fn a_refused_key_stops_the_stage_after_one_request_and_the_fixed_rerun_redoes_it() {
    let body = json!({"error": {"message": "Invalid API Key", "type": "authentication_error", "code": 401}}).to_string();
    let server = MockServer::start(Faults { fail_all: Some((401, body)), ..Default::default() });
    let dir = tempfile::tempdir().unwrap();
    let input = write_functions(dir.path(), 12);
    let out = dir.path().join("out");
    let run = gen_tests(&input, &out, &["--base-url", &server.base_url, "--concurrency", "1"]).assert().code(5);
    let stderr = String::from_utf8_lossy(&run.get_output().stderr).to_string();
    assert!(stderr.contains("refused the API key") && stderr.contains("OPENAI_API_KEY"), "{stderr}");
    assert_eq!(server.requests(), 1, "no request after the first refusal");
    let kinds = error_kinds(&out);
    assert_eq!(kinds.len(), 12, "every record has its output");
    assert!(kinds.iter().all(|k| k == "auth"), "{kinds:?}");
    assert!(!manifest(&out)["complete"].as_bool().unwrap());

    // The key fixed (a working server): a plain rerun redoes them, no --retry-errors needed.
    let good = MockServer::start(Faults::default());
    gen_tests(&input, &out, &["--base-url", &good.base_url]).assert().success();
    assert!(error_kinds(&out).iter().all(|k| k == "ok"), "{:?}", error_kinds(&out));
}

#[test]
fn an_unknown_model_is_fatal_and_names_the_served_models() {
    let body = json!({"object": "error", "message": "The model `mock-model` does not exist.", "type": "NotFoundError", "param": null, "code": 404})
        .to_string();
    let server = MockServer::start(Faults { fail_all: Some((404, body)), models: vec!["Qwen/Qwen2.5-Coder-7B".into()], ..Default::default() });
    let dir = tempfile::tempdir().unwrap();
    let input = write_functions(dir.path(), 5);
    let out = dir.path().join("out");
    let run = gen_tests(&input, &out, &["--base-url", &server.base_url, "--model", "mock-model"]).assert().code(5);
    let stderr = String::from_utf8_lossy(&run.get_output().stderr).to_string();
    assert!(stderr.contains("not among the models"), "the preflight warns: {stderr}");
    let records = read_records(&out, "shard");
    assert!(records.iter().all(|r| r["error"]["kind"] == "unknown_model" && r["error"]["transient"] == true), "{records:?}");
    let message = records[0]["error"]["message"].as_str().unwrap();
    assert!(message.contains("Qwen/Qwen2.5-Coder-7B") && !message.contains("\"object\""), "vLLM's body is read, not dumped: {message}");
}

#[test]
fn a_dead_endpoint_fails_in_seconds_with_the_cause() {
    let dir = tempfile::tempdir().unwrap();
    let input = write_functions(dir.path(), 50);
    let out = dir.path().join("out");
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let started = Instant::now();
    let run = gen_tests(&input, &out, &["--base-url", &format!("http://127.0.0.1:{port}/v1")]).assert().code(5);
    assert!(started.elapsed() < Duration::from_secs(20), "took {:?}", started.elapsed());
    let stderr = String::from_utf8_lossy(&run.get_output().stderr).to_lowercase();
    assert!(stderr.contains("connection refused") && stderr.contains("openai_base_url"), "{stderr}");
    let kinds = error_kinds(&out);
    assert_eq!(kinds.len(), 50);
    assert!(kinds.iter().all(|k| k == "endpoint_unreachable"), "{kinds:?}");

    // No endpoint configured at all is said as such (not a silent 127.0.0.1:8000).
    let out2 = dir.path().join("out2");
    let run = gen_tests(&input, &out2, &[]).assert().code(5);
    assert!(String::from_utf8_lossy(&run.get_output().stderr).contains("no LLM endpoint configured"));
}

#[test]
fn an_endpoint_that_dies_mid_run_stops_the_stage_after_down_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let input = write_functions(dir.path(), 30);
    let out = dir.path().join("out");
    let server = MockServer::start(Faults { latency_ms: 100, ..Default::default() });
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, "[llm]\ndown_timeout = 1.0\nbench_after_failures = 2\nbackoff_min_ms = 50\nbackoff_max_ms = 200\n").unwrap();
    let url = server.base_url.clone();
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("unitcoder"))
        .env("OPENAI_API_KEY", "k")
        .args(["--config", cfg.to_str().unwrap(), "-i", &input, "-o", out.to_str().unwrap(), "gen-tests", "--no-import-check", "--no-call-check"])
        .args(["--base-url", &url, "--concurrency", "2", "--max-retries", "20"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    while server.requests() < 5 {
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(server); // the endpoint goes away
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(5), "{stderr}");
    assert!(stderr.contains("no LLM endpoint answers"), "a warning while waiting: {stderr}");
    let kinds = error_kinds(&out);
    assert_eq!(kinds.len(), 30);
    assert!(kinds.iter().filter(|k| *k == "ok").count() >= 3, "{kinds:?}");
    assert!(kinds.iter().all(|k| k == "ok" || k == "endpoint_unreachable" || k == "connection"), "{kinds:?}");

    // Back up: the rerun completes the rest and the manifest adds up both runs.
    let again = MockServer::start(Faults::default());
    gen_tests(&input, &out, &["--base-url", &again.base_url]).assert().success();
    assert!(error_kinds(&out).iter().all(|k| k == "ok"));
    let m = manifest(&out);
    assert_eq!(m["history"].as_array().unwrap().len(), 2, "{}", m["history"]);
    let total = m["timings"]["llm"]["requests"].as_u64().unwrap();
    let runs: u64 = m["history"].as_array().unwrap().iter().map(|h| h["requests"].as_u64().unwrap_or(0)).sum();
    assert_eq!(total, runs);
    assert!(total >= 30, "{total}");
}

#[test]
fn base_url_and_model_come_from_the_environment() {
    let server = MockServer::start(Faults::default());
    let dir = tempfile::tempdir().unwrap();
    let input = write_functions(dir.path(), 2);
    let out = dir.path().join("out");
    gen_tests(&input, &out, &[]).env("OPENAI_BASE_URL", &server.base_url).env("OPENAI_MODEL", "env-model").assert().success();
    let bodies = server.seen.bodies.lock().unwrap();
    assert_eq!(bodies.len(), 2);
    assert!(bodies.iter().all(|b| b["model"] == "env-model"));
}

#[test]
fn every_prompt_overflowing_the_context_is_a_non_transient_failure_that_exits_non_zero() {
    let body = json!({"error": {"code": 400, "message": "request (3031 tokens) exceeds the available context size (2048 tokens), try increasing it", "type": "exceed_context_size_error", "n_prompt_tokens": 3031, "n_ctx": 2048}}).to_string();
    let server = MockServer::start(Faults { fail_all: Some((400, body)), ..Default::default() });
    let dir = tempfile::tempdir().unwrap();
    let input = write_functions(dir.path(), 4);
    let out = dir.path().join("out");
    let run = gen_tests(&input, &out, &["--base-url", &server.base_url]).assert().code(6);
    let stderr = String::from_utf8_lossy(&run.get_output().stderr).to_string();
    assert!(stderr.contains("every record failed with `context_overflow`"), "{stderr}");
    let records = read_records(&out, "shard");
    assert!(records.iter().all(|r| r["error"]["kind"] == "context_overflow" && r["error"].get("transient") != Some(&json!(true))), "{records:?}");
    assert_eq!(server.requests(), 4, "each record asked once: no retries of a prompt that cannot fit");
}

#[test]
fn a_budget_stopped_run_and_its_resume_add_up_in_the_manifest() {
    let server = MockServer::start(Faults::default());
    let dir = tempfile::tempdir().unwrap();
    let input = write_functions(dir.path(), 10);
    let out = dir.path().join("out");
    gen_tests(&input, &out, &["--base-url", &server.base_url, "--max-requests", "4", "--concurrency", "1"]).assert().code(3);
    gen_tests(&input, &out, &["--base-url", &server.base_url]).assert().success();
    let m = manifest(&out);
    let llm = &m["timings"]["llm"];
    assert_eq!(llm["requests"].as_u64(), Some(server.requests()), "{llm}");
    assert_eq!(server.requests(), 10);
    assert_eq!(m["history"].as_array().unwrap().len(), 2);
    assert!(llm["completion_tokens"].as_u64().unwrap() >= 10 * 60);
    // `stats` reads the same totals.
    let stats = bin().args(["stats", out.to_str().unwrap(), "--json"]).assert().success();
    let report: Value = serde_json::from_slice(&stats.get_output().stdout).unwrap();
    assert_eq!(report["total_tokens"].as_u64(), Some(llm["prompt_tokens"].as_u64().unwrap() + llm["completion_tokens"].as_u64().unwrap()));
}

#[test]
fn consensus_against_a_four_slot_server_with_the_default_sixteen_samples() {
    let script = Script(Arc::new(|prompt: &str, _n: u64| {
        if prompt.contains("test cases for the function") {
            return Some(vec![
                "```python\n[{\"input\": {\"x\": 1}, \"output\": 2}, {\"input\": {\"x\": 5}}, {\"input\": {\"x\": -3}}]\n```".to_string()
            ]);
        }
        prompt.contains("Solve this").then(|| vec!["```python\ndef inc(x):\n    return x + 1\n```".to_string()])
    }));
    let server = MockServer::start(Faults { max_n: Some(4), max_choices: Some(3), script: Some(script), ..Default::default() });
    let dir = tempfile::tempdir().unwrap();
    let problems = dir.path().join("problems.jsonl");
    let rec = json!({"id": "p0", "problem": "Return x + 1.", "skeleton": "def inc(x):\n    ...\n", "entry_point": "inc"});
    std::fs::write(&problems, format!("{rec}\n")).unwrap();
    let out = dir.path().join("out");
    bin()
        .env_remove("OPENAI_BASE_URL")
        .args(["-i", problems.to_str().unwrap(), "-o", out.to_str().unwrap(), "consensus", "--base-url", &server.base_url, "--max-retries", "1"])
        .args(["--python", &common::sandbox_python()])
        .assert()
        .success();
    let bodies = server.seen.bodies.lock().unwrap();
    let solve: Vec<u64> = bodies.iter().filter(|b| b.to_string().contains("Solve this")).map(|b| b["n"].as_u64().unwrap()).collect();
    assert_eq!(solve[0], 16);
    assert!(solve[1..].iter().all(|&n| n <= 4), "{solve:?}");
    let got: u64 = solve[1..].iter().map(|&n| n.min(3)).sum();
    assert_eq!(got, 16, "16 samples, from short answers topped up: {solve:?}");
    let records = read_records(&out, "shard");
    assert_eq!(records.len(), 1);
    assert!(!records[0].to_string().contains("missing_sample"), "{}", records[0]);
    assert_eq!(records[0]["consensus"]["cluster_size"], 16, "{}", records[0]);
}

#[test]
fn doctor_checks_the_endpoints() {
    let server = MockServer::start(Faults { models: vec!["mock-model".into()], context: Some(4096), ..Default::default() });
    let run = bin().env_remove("OPENAI_BASE_URL").args(["doctor", "--base-url", &server.base_url, "--model", "mock-model"]).assert().success();
    let stdout = String::from_utf8_lossy(&run.get_output().stdout).to_string();
    assert!(stdout.contains("model served") && stdout.contains("context 4096 tokens") && stdout.contains("a 1-token request: ok"), "{stdout}");
    assert_eq!(server.seen.bodies.lock().unwrap()[0]["max_tokens"], 1);

    let run = bin().env_remove("OPENAI_BASE_URL").args(["doctor", "--base-url", &server.base_url, "--model", "other"]).assert().success();
    assert!(String::from_utf8_lossy(&run.get_output().stdout).contains("model NOT LISTED (it lists: mock-model)"));

    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let run = bin().env_remove("OPENAI_BASE_URL").args(["doctor", "--base-url", &format!("http://127.0.0.1:{port}/v1")]).assert().code(5);
    assert!(String::from_utf8_lossy(&run.get_output().stdout).contains("NOT REACHABLE"));
}
