//! `unitcoder gen-tests` against the mock OpenAI server: nothing lost under faults,
//! retries and Retry-After, cache and offline reruns, the API key kept secret, n > 1,
//! budgets that stop cleanly and resume.

mod common;

use std::path::Path;

use common::mock_llm::{Faults, MockServer};
use common::{bin, manifest, read_records};
use serde_json::{json, Value};

fn write_functions(dir: &Path, n: usize) -> String {
    let path = dir.join("functions.jsonl");
    let lines: Vec<String> = (0..n)
        .map(|i| {
            json!({"id": format!("r{i}"), "entry_point": format!("f{i}"), "code": format!("import os\n\n\ndef f{i}(a):\n    return os.sep + a\n"),
                   "packages": ["os"], "imports": ["import os"], "extra": {"keep": i}})
            .to_string()
        })
        .collect();
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path.display().to_string()
}

fn gen(input: &str, out: &Path, server: &str, extra: &[&str]) -> assert_cmd::assert::Assert {
    bin()
        .env("OPENAI_API_KEY", "sk-unitcoder-secret-123")
        .args(["-i", input, "-o", out.to_str().unwrap(), "gen-tests", "--base-url", server, "--model", "mock-model"])
        .args(["--request-timeout", "0.5", "--max-retries", "12"])
        .args(extra)
        .assert()
}

#[test]
fn every_record_ends_in_exactly_one_output_under_all_faults() {
    let server = MockServer::start(Faults {
        latency_ms: 5,
        rate_429: 0.08,
        retry_after_s: 0.05,
        rate_500: 0.06,
        rate_503: 0.05,
        rate_drop: 0.05,
        rate_timeout: 0.03,
        timeout_sleep_ms: 1500,
        rate_malformed: 0.05,
        rate_empty: 0.05,
        rate_truncated: 0.05,
        reject_containing: Some("Function name: f13\\n".into()),
        ..Default::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let input = write_functions(dir.path(), 80);
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, "[llm]\nbackoff_min_ms = 5\nbackoff_max_ms = 50\n").unwrap();
    let out = dir.path().join("out");
    bin()
        .env("OPENAI_API_KEY", "sk-unitcoder-secret-123")
        .args(["--config", cfg.to_str().unwrap(), "-i", &input, "-o", out.to_str().unwrap(), "gen-tests", "--base-url", &server.base_url])
        .args(["--request-timeout", "0.5", "--max-retries", "12", "--concurrency", "16"])
        .assert()
        .success();
    let records = read_records(&out, "shard");
    let ids: Vec<String> = records.iter().map(|r| r["id"].as_str().unwrap().to_string()).collect();
    assert_eq!(ids, (0..80).map(|i| format!("r{i}")).collect::<Vec<_>>(), "every input exactly once, in order");
    for r in &records {
        assert!(r.get("tests").is_some() != r.get("error").is_some(), "exactly one of tests/error: {r}");
        assert_eq!(r["extra"]["keep"], r["id"].as_str().unwrap()[1..].parse::<u64>().unwrap(), "fields pass through");
        if let Some(t) = r.get("tests") {
            assert!(t.as_str().unwrap().contains(&format!("callable({})", r["entry_point"].as_str().unwrap())));
        }
    }
    let r13 = &records[13];
    assert_eq!(r13["error"]["kind"], "rejected");
    assert!(r13["error"]["message"].as_str().unwrap().contains("prompt rejected by policy"));
    let m = manifest(&out);
    let llm = &m["timings"]["llm"];
    assert!(llm["retries"].as_u64().unwrap() > 10, "{llm}");
    for kind in ["rate_limited", "server_error", "connection", "timeout", "malformed_response", "empty_choices"] {
        assert!(llm["errors_by_kind"][kind].as_u64().unwrap_or(0) > 0, "no {kind} seen: {llm}");
    }
    // Truncated answers are reported distinctly, with the cause (a cut reply is asked again
    // once, so only a record cut twice ends here; the mock cuts short of max_tokens).
    let truncated = records.iter().filter(|r| r["error"]["kind"] == "truncated_context").count();
    let ok = records.iter().filter(|r| r.get("tests").is_some()).count();
    assert!(ok >= 60, "only {ok} ok");
    assert_eq!(m["counts"]["ok"].as_u64().unwrap() as usize, ok);
    assert!(truncated + ok + 1 == 80, "unexpected error kinds: {:?}", records.iter().filter_map(|r| r.get("error")).collect::<Vec<_>>());
}

#[test]
fn retry_after_is_honoured() {
    let server = MockServer::start(Faults { first_429: 2, retry_after_s: 0.4, ..Default::default() });
    let dir = tempfile::tempdir().unwrap();
    let input = write_functions(dir.path(), 1);
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, "[llm]\nbackoff_min_ms = 1\nbackoff_max_ms = 5\n").unwrap();
    let out = dir.path().join("out");
    bin()
        .args(["--config", cfg.to_str().unwrap(), "-i", &input, "-o", out.to_str().unwrap(), "gen-tests", "--base-url", &server.base_url])
        .assert()
        .success();
    let arrivals = server.seen.arrivals_ms.lock().unwrap().clone();
    assert_eq!(arrivals.len(), 3);
    assert!(arrivals[1].1 - arrivals[0].1 >= 390, "{arrivals:?}");
    assert!(arrivals[2].1 - arrivals[1].1 >= 390, "{arrivals:?}");
    assert!(read_records(&out, "shard")[0].get("tests").is_some());
}

#[test]
fn rerun_hits_the_cache_and_offline_needs_no_server() {
    let server = MockServer::start(Faults::default());
    let dir = tempfile::tempdir().unwrap();
    let input = write_functions(dir.path(), 12);
    let out = dir.path().join("out");
    let cache = dir.path().join("cache.sqlite");
    gen(&input, &out, &server.base_url, &["--cache", cache.to_str().unwrap()]).success();
    assert_eq!(server.requests(), 12);
    let first = read_records(&out, "shard");
    gen(&input, &out, &server.base_url, &["--cache", cache.to_str().unwrap(), "--force"]).success();
    assert_eq!(server.requests(), 12, "a rerun made requests it had already paid for");
    assert_eq!(manifest(&out)["timings"]["llm"]["cache_hits"], 12);
    let second = read_records(&out, "shard");
    let strip = |rs: &Vec<Value>| rs.iter().map(|r| (r["id"].clone(), r["tests"].clone())).collect::<Vec<_>>();
    assert_eq!(strip(&first), strip(&second));
    assert!(second.iter().all(|r| r["generation"]["cache_hit"] == true));
    // Offline against an address where nothing listens: all from the cache ...
    let out2 = dir.path().join("out2");
    gen(&input, &out2, "http://127.0.0.1:9/v1", &["--cache", cache.to_str().unwrap(), "--offline"]).success();
    assert!(read_records(&out2, "shard").iter().all(|r| r.get("tests").is_some()));
    // ... and a function not in the cache becomes an error record, not a request.
    let more = write_functions(&dir.path().join("more").tap_mkdir(), 14);
    let out3 = dir.path().join("out3");
    // Exit 4: finished, but transient errors remain.
    gen(&more, &out3, "http://127.0.0.1:9/v1", &["--cache", cache.to_str().unwrap(), "--offline"]).code(4);
    let recs = read_records(&out3, "shard");
    assert_eq!(recs.len(), 14);
    assert_eq!(recs.iter().filter(|r| r.get("tests").is_some()).count(), 12);
    assert!(recs[12..].iter().all(|r| r["error"]["kind"] == "offline_cache_miss" && r["error"]["transient"] == true));
    // --retry-errors with the server up redoes exactly those two and keeps the rest.
    let before = server.requests();
    gen(&more, &out3, &server.base_url, &["--cache", cache.to_str().unwrap(), "--retry-errors"]).success();
    assert_eq!(server.requests() - before, 2, "only the two failed records were redone");
    let after = read_records(&out3, "shard");
    assert_eq!(after.len(), 14);
    assert!(after.iter().all(|r| r.get("tests").is_some() && r.get("error").is_none()));
    assert_eq!(after[..12].iter().map(|r| r["tests"].clone()).collect::<Vec<_>>(), recs[..12].iter().map(|r| r["tests"].clone()).collect::<Vec<_>>());
    assert_eq!(manifest(&out3)["counts"]["retryable"], 0);
    // Nothing left to retry: a second --retry-errors run changes nothing and makes no request.
    gen(&more, &out3, &server.base_url, &["--cache", cache.to_str().unwrap(), "--retry-errors"]).success();
    assert_eq!(server.requests() - before, 2);
}

trait TapMkdir {
    fn tap_mkdir(self) -> Self;
}
impl TapMkdir for std::path::PathBuf {
    fn tap_mkdir(self) -> Self {
        std::fs::create_dir_all(&self).unwrap();
        self
    }
}

#[test]
fn api_key_is_sent_but_never_written_or_logged() {
    let server = MockServer::start(Faults { rate_500: 0.3, ..Default::default() });
    let dir = tempfile::tempdir().unwrap();
    let input = write_functions(dir.path(), 6);
    let out = dir.path().join("out");
    let assert = bin()
        .env("OPENAI_API_KEY", "sk-unitcoder-secret-123")
        .env("RUST_LOG", "debug")
        .args(["-i", &input, "-o", out.to_str().unwrap(), "gen-tests", "--base-url", &server.base_url, "--max-retries", "12"])
        .assert()
        .success();
    let seen = server.seen.authorization.lock().unwrap().clone();
    assert!(seen.iter().all(|a| a == "Bearer sk-unitcoder-secret-123"), "{seen:?}");
    let logs = String::from_utf8_lossy(&assert.get_output().stderr).into_owned();
    assert!(logs.contains("retrying"), "debug logs expected");
    assert!(!logs.contains("sk-unitcoder-secret-123"));
    for entry in walkdir::WalkDir::new(&out).into_iter().flatten().filter(|e| e.file_type().is_file()) {
        let bytes = std::fs::read(entry.path()).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains("sk-unitcoder-secret-123"), "key found in {}", entry.path().display());
    }
    // Shards are compressed: check the decoded records too.
    assert!(!serde_json::to_string(&read_records(&out, "shard")).unwrap().contains("sk-unitcoder-secret-123"));
}

#[test]
fn several_samples_per_function() {
    let server = MockServer::start(Faults::default());
    let dir = tempfile::tempdir().unwrap();
    let input = write_functions(dir.path(), 4);
    let out = dir.path().join("out");
    gen(&input, &out, &server.base_url, &["--samples", "3"]).success();
    assert_eq!(server.requests(), 4, "one request with n=3 per function");
    assert!(server.seen.bodies.lock().unwrap().iter().all(|b| b["n"] == 3));
    for r in read_records(&out, "shard") {
        assert_eq!(r["tests_samples"].as_array().unwrap().len(), 3);
        assert_eq!(r["generation"]["samples_valid"], 3);
    }
}

#[test]
fn budget_stops_cleanly_and_a_rerun_continues() {
    let server = MockServer::start(Faults::default());
    let dir = tempfile::tempdir().unwrap();
    let input = write_functions(dir.path(), 20);
    let out = dir.path().join("out");
    gen(&input, &out, &server.base_url, &["--max-requests", "5", "--concurrency", "2"]).code(3);
    let first = read_records(&out, "shard");
    assert_eq!(first.len(), 20, "nothing lost when the budget stops the run");
    let ok = first.iter().filter(|r| r.get("tests").is_some()).count();
    assert_eq!(ok, 5);
    assert!(first.iter().filter(|r| r.get("error").is_some()).all(|r| r["error"]["kind"] == "budget_exhausted"));
    assert_eq!(manifest(&out)["complete"], false);
    assert_eq!(server.requests(), 5);
    // Same command with a larger budget: not "up to date", finishes, repeats no request.
    gen(&input, &out, &server.base_url, &["--max-requests", "100"]).success();
    let second = read_records(&out, "shard");
    assert!(second.iter().all(|r| r.get("tests").is_some()));
    assert_eq!(server.requests(), 20, "requests already paid for were repeated");
    assert_eq!(manifest(&out)["complete"], true);
}

#[test]
fn a_failing_endpoint_is_benched_and_the_healthy_one_serves() {
    let broken = MockServer::start(Faults { rate_500: 1.0, ..Default::default() });
    let healthy = MockServer::start(Faults { latency_ms: 5, ..Default::default() });
    let dir = tempfile::tempdir().unwrap();
    let input = write_functions(dir.path(), 40);
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, "[llm]\nbackoff_min_ms = 1\nbackoff_max_ms = 5\nbench_after_failures = 3\nbench_seconds = 60.0\n").unwrap();
    let out = dir.path().join("out");
    bin()
        .args(["--config", cfg.to_str().unwrap(), "-i", &input, "-o", out.to_str().unwrap(), "gen-tests"])
        .args(["--base-url", &broken.base_url, "--base-url", &healthy.base_url, "--concurrency", "4", "--max-retries", "6"])
        .assert()
        .success();
    let records = read_records(&out, "shard");
    assert!(records.iter().all(|r| r.get("tests").is_some()), "every record served by the healthy endpoint");
    // Benched after a few consecutive failures: the broken endpoint saw only a handful.
    assert!(broken.requests() <= 8, "broken endpoint got {} requests", broken.requests());
    assert!(healthy.requests() >= 40);
}

#[test]
fn ranks_split_input_files_without_coordination() {
    let server = MockServer::start(Faults::default());
    let dir = tempfile::tempdir().unwrap();
    let inputs = dir.path().join("in");
    std::fs::create_dir_all(&inputs).unwrap();
    for k in 0..5 {
        let lines: Vec<String> = (0..3)
            .map(|i| json!({"id": format!("r{k}-{i}"), "entry_point": format!("g{k}_{i}"), "code": format!("import os\n\n\ndef g{k}_{i}(a):\n    return os.sep + a\n")}).to_string())
            .collect();
        std::fs::write(inputs.join(format!("part-{k}.jsonl")), lines.join("\n") + "\n").unwrap();
    }
    let out = dir.path().join("out");
    for rank in 0..2 {
        bin()
            .args(["-i", inputs.to_str().unwrap(), "-o", out.to_str().unwrap(), "--rank", &rank.to_string(), "--world-size", "2"])
            .args(["gen-tests", "--base-url", &server.base_url])
            .assert()
            .success();
    }
    let r0 = out.join("rank-00000-of-00002");
    let r1 = out.join("rank-00001-of-00002");
    // Rank 0 took input files 0, 2, 4; rank 1 took 1 and 3; shard names keep the global index.
    let names = |d: &Path| common::shard_files(d, "shard").iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect::<Vec<_>>();
    assert_eq!(names(&r0), ["shard-00000.jsonl.zst", "shard-00002.jsonl.zst", "shard-00004.jsonl.zst"]);
    assert_eq!(names(&r1), ["shard-00001.jsonl.zst", "shard-00003.jsonl.zst"]);
    assert_eq!(read_records(&r0, "shard").len() + read_records(&r1, "shard").len(), 15);
    assert_eq!(server.requests(), 15, "each record handled by exactly one rank");
    // A later stage reading the parent directory sees every rank's shards.
    let all = dir.path().join("all");
    bin()
        .args([
            "-i",
            out.to_str().unwrap(),
            "-o",
            all.to_str().unwrap(),
            "gen-tests",
            "--base-url",
            &server.base_url,
            "--cache",
            out.join("none.sqlite").to_str().unwrap(),
        ])
        .assert()
        .success();
    assert_eq!(read_records(&all, "shard").len(), 15);
}
