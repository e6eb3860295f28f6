//! What a new user trips over in the first hour (issue 19): inputs read as a user means
//! them, argument errors, `--help`, `--limit`, `show`, completions and man pages, Ctrl-C and
//! SIGTERM, progress in a log, finding the sandbox environment from anywhere, JSON logs,
//! `--dry-run`, package balancing.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::mock_llm::{Faults, MockServer};
use common::{bin, fixtures, manifest, read_records, sandbox_python};
use serde_json::{json, Value};

fn write(path: &Path, bytes: impl AsRef<[u8]>) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

const FUNCTION: &str = "import os\n\n\ndef join_all(parts):\n    sep = os.sep\n    return sep.join(parts)\n";

fn stderr_of(a: &assert_cmd::assert::Assert) -> String {
    String::from_utf8_lossy(&a.get_output().stderr).to_string()
}

fn stdout_of(a: &assert_cmd::assert::Assert) -> String {
    String::from_utf8_lossy(&a.get_output().stdout).to_string()
}

#[test]
fn a_python_installation_yields_its_sources_and_a_rerun_keeps_the_exit_status() {
    let dir = tempfile::tempdir().unwrap();
    let lib = dir.path().join("lib");
    write(&lib.join("pkg/mod.py"), FUNCTION);
    // Data files a Python installation holds: not JSONL corpora.
    write(&lib.join("pkg/data/schema.json.gz"), b"\x1f\x8b not really");
    write(&lib.join("pkg/tests/fixture.parquet"), b"PAR1 broken");
    write(&lib.join("pkg/tests/cases.jsonl"), "{\"content\": 1}\n");
    let out = dir.path().join("out");
    let run = bin().args(["extract", "-i", lib.to_str().unwrap(), "-o", out.to_str().unwrap()]).assert().success();
    assert!(stderr_of(&run).contains("3 data file(s) of another kind left alone"), "{}", stderr_of(&run));
    let counts = &manifest(&out)["counts"];
    assert_eq!(counts["documents"], 1, "{counts}");
    assert_eq!(counts["kept"], 1);
    assert!(counts["bad_input"].as_object().unwrap().is_empty(), "{counts}");

    // Asked for: the shards are read (and the broken Parquet file makes the run fail) ...
    let shards = dir.path().join("shards");
    let run = bin().args(["extract", "-i", lib.to_str().unwrap(), "--input-format", "parquet", "-o", shards.to_str().unwrap()]).assert().code(1);
    let err = stderr_of(&run);
    assert!(err.contains("not a readable Parquet file"), "{err}");
    // The summary names the first unusable documents and says where all of them go.
    assert!(
        err.contains("unusable documents, first ones: ") && err.contains("fixture.parquet: unreadable") && err.contains("--rejects DIR"),
        "{err}"
    );
    // ... and the identical rerun says so again instead of "up to date" and 0.
    let rerun = bin().args(["extract", "-i", lib.to_str().unwrap(), "--input-format", "parquet", "-o", shards.to_str().unwrap()]).assert().code(1);
    assert!(stderr_of(&rerun).contains("could not be read"), "{}", stderr_of(&rerun));
    // A directory of shards only (no .py) is read as shards without being asked.
    let stack = dir.path().join("stack");
    std::fs::create_dir_all(&stack).unwrap();
    std::fs::copy(fixtures().join("extract/corpus.jsonl"), stack.join("part-0.jsonl")).unwrap();
    let from_stack = dir.path().join("from-stack");
    bin().args(["extract", "-i", stack.to_str().unwrap(), "-o", from_stack.to_str().unwrap()]).assert().success();
    assert!(manifest(&from_stack)["counts"]["kept"].as_u64().unwrap() > 0);
}

#[test]
fn a_pep_263_coding_declaration_is_honoured() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = b"# -*- coding: latin-1 -*-\nimport os\n\n\ndef greet(name):\n    sep = os.sep\n    return '\xe9t\xe9' + sep + name\n".to_vec();
    write(&dir.path().join("src/old.py"), &bytes);
    bytes.truncate(0);
    let out = dir.path().join("out");
    bin().args(["extract", "-i", dir.path().join("src").to_str().unwrap(), "-o", out.to_str().unwrap()]).assert().success();
    let records = read_records(&out, "shard");
    assert_eq!(records.len(), 1, "{:?}", manifest(&out)["counts"]);
    assert!(records[0]["code"].as_str().unwrap().contains("'été'"), "{}", records[0]["code"]);
}

#[test]
fn keep_fields_carry_the_stack_columns_into_source_meta() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("stack.jsonl");
    let line = json!({"content": FUNCTION, "hexsha": "abc", "max_stars_repo_path": "a/b.py", "max_stars_repo_licenses": ["MIT"], "max_stars_count": 42, "other": "x"});
    write(&input, format!("{line}\n"));
    let out = dir.path().join("out");
    bin()
        .args(["extract", "-i", input.to_str().unwrap(), "-o", out.to_str().unwrap(), "--id-field", "hexsha", "--path-field", "max_stars_repo_path"])
        .args(["--keep-fields", "max_stars_repo_licenses,max_stars_count,missing"])
        .assert()
        .success();
    let r = &read_records(&out, "shard")[0];
    assert_eq!(r["source"]["meta"], json!({"max_stars_repo_licenses": ["MIT"], "max_stars_count": 42}), "{r}");
    assert_eq!(r["source"]["id"], "abc");
    // The same from Parquet (any column type, through arrow-json).
    let pq = dir.path().join("pq");
    bin()
        .args([
            "extract",
            "-i",
            fixtures().join("extract/corpus.parquet").to_str().unwrap(),
            "-o",
            pq.to_str().unwrap(),
            "--keep-fields",
            "max_stars_repo_path,hexsha",
        ])
        .assert()
        .success();
    let first = &read_records(&pq, "shard")[0];
    assert!(first["source"]["meta"]["max_stars_repo_path"].is_string() && first["source"]["meta"]["hexsha"].is_string(), "{first}");
}

#[test]
fn missing_arguments_exit_2_with_one_message() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("a.py"), FUNCTION);
    let run = bin().args(["extract", "-i", dir.path().to_str().unwrap()]).assert().code(2);
    assert_eq!(stderr_of(&run).matches("--output DIR is required").count(), 1, "{}", stderr_of(&run));
    bin().args(["gen-tests", "-o", dir.path().join("o").to_str().unwrap()]).assert().code(2);
    let run = bin().args(["run", "-i", dir.path().to_str().unwrap()]).assert().code(2);
    assert!(stderr_of(&run).contains("--work-dir DIR is required"));
}

#[test]
fn help_lists_only_the_flags_that_apply_grouped() {
    let help = |args: &[&str]| stdout_of(&bin().args(args).arg("--help").assert().success());
    let stats = help(&["stats"]);
    for absent in ["--retry-errors", "--world-size", "--input", "--records-per-shard", "--force", "--jobs"] {
        assert!(!stats.contains(absent), "stats --help lists {absent}:\n{stats}");
    }
    let extract = help(&["extract"]);
    assert!(extract.contains("Input:") && extract.contains("Output:") && extract.contains("Extraction rules:"), "{extract}");
    assert!(!extract.contains("--retry-errors") && !extract.contains("--temperature"), "{extract}");
    let run = help(&["run"]);
    for flag in
        ["--min-lines", "--rejects", "--format", "--output-format", "--no-doctests", "--fix-samples", "--test-samples", "--keep-fields", "--dry-run"]
    {
        assert!(run.contains(flag), "run --help lacks {flag}");
    }
    assert!(help(&["gen-tests"]).contains("Sampling temperature [default: 0.2]"));
    // `run --samples` no longer silently means fix candidates.
    let err = stderr_of(&bin().args(["run", "--samples", "2", "--work-dir", "w"]).assert().code(2));
    assert!(err.contains("--samples") && err.contains("-samples"), "{err}");
    // Other stages' flags are accepted by run (parsed, not run: no input given).
    bin().args(["run", "--work-dir", "w", "--min-lines", "2", "--format", "chat", "--no-doctests", "--plain"]).assert().code(2);
}

#[test]
fn limit_show_completions_and_man_pages() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let py = fixtures().join("extract/py");
    bin().args(["extract", "-i", py.to_str().unwrap(), "-o", out.to_str().unwrap(), "--limit", "3"]).assert().success();
    assert_eq!(manifest(&out)["counts"]["documents"], 3);
    let records = read_records(&out, "shard");
    assert!(!records.is_empty());
    let shard = common::shard_files(&out, "shard")[0].display().to_string();
    let shown = stdout_of(&bin().args(["show", &format!("{shard}:1")]).assert().success());
    assert!(shown.contains(&format!("entry_point: {}", records[0]["entry_point"].as_str().unwrap())) && shown.contains("code:\n    "), "{shown}");
    let id = records.last().unwrap()["id"].as_str().unwrap();
    let by_id = stdout_of(&bin().args(["show", out.to_str().unwrap(), "--id", id, "--json"]).assert().success());
    assert_eq!(serde_json::from_str::<Value>(&by_id).unwrap()["id"], id);
    bin().args(["show", &format!("{shard}:999")]).assert().code(1);

    // A record stage's --limit: the first N records, and a later run without it redoes the rest.
    let sr = dir.path().join("sr");
    let stage = |extra: &[&str]| {
        bin()
            .args(["sandbox-run", "-i", out.to_str().unwrap(), "-o", sr.to_str().unwrap(), "--python", &sandbox_python(), "--workers", "1"])
            .args(extra)
            .assert()
    };
    stage(&["--limit", "1"]);
    assert_eq!(read_records(&sr, "shard").len(), 1);
    stage(&[]);
    assert_eq!(read_records(&sr, "shard").len(), records.len());

    let bash = stdout_of(&bin().args(["completions", "bash"]).assert().success());
    assert!(bash.contains("_unitcoder") && bash.contains("gen-tests"));
    let man = dir.path().join("man");
    bin().args(["man", man.to_str().unwrap()]).assert().success();
    let page = std::fs::read_to_string(man.join("unitcoder-extract.1")).unwrap();
    assert!(page.contains("max\\-per\\-package") || page.contains("max-per-package"), "{page}");
    assert!(man.join("unitcoder.1").exists());
}

#[test]
fn max_per_package_keeps_the_first_n_per_package() {
    let dir = tempfile::tempdir().unwrap();
    let f = |name: &str, module: &str, call: &str| format!("import {module}\n\n\ndef {name}(a):\n    b = {call}\n    return b\n");
    write(&dir.path().join("src/a.py"), f("a1", "os", "os.sep + a"));
    write(&dir.path().join("src/b.py"), f("b1", "os", "os.path.join(a, 'x')"));
    write(&dir.path().join("src/c.py"), f("c1", "json", "json.dumps(a)"));
    write(&dir.path().join("src/d.py"), f("d1", "os", "os.path.basename(a)"));
    let out = dir.path().join("out");
    bin().args(["extract", "-i", dir.path().join("src").to_str().unwrap(), "-o", out.to_str().unwrap(), "--max-per-package", "1"]).assert().success();
    let names: Vec<String> = read_records(&out, "shard").iter().map(|r| r["entry_point"].as_str().unwrap().to_string()).collect();
    assert_eq!(names, ["a1", "c1"]);
    assert_eq!(manifest(&out)["counts"]["dropped"]["package_quota"], 2);
}

fn functions(dir: &Path, n: usize) -> String {
    let path = dir.join("functions.jsonl");
    let mut f = std::fs::File::create(&path).unwrap();
    for i in 0..n {
        let code = format!("import os\n\n\ndef f{i}(a):\n    return os.sep + a\n");
        writeln!(f, "{}", json!({"id": format!("r{i}"), "entry_point": format!("f{i}"), "code": code, "packages": ["os"]})).unwrap();
    }
    path.display().to_string()
}

/// gen-tests against a slow server, interrupted by `signal` after a while.
fn interrupted_gen_tests(signal: i32) -> (Option<i32>, String) {
    let server = MockServer::start(Faults { latency_ms: 1500, ..Default::default() });
    let dir = tempfile::tempdir().unwrap();
    let input = functions(dir.path(), 6);
    let out = dir.path().join("out");
    let child = std::process::Command::new(assert_cmd::cargo::cargo_bin("unitcoder"))
        .args(["gen-tests", "-i", &input, "-o", out.to_str().unwrap(), "--no-import-check", "--no-call-check", "--concurrency", "1"])
        .args(["--base-url", &server.base_url, "--model", "mock-model"])
        .env("UNITCODER_PROGRESS_SECS", "0.4")
        .env_remove("RUST_LOG")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while server.requests() < 2 && started.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(900));
    unsafe { libc::kill(child.id() as i32, signal) };
    let output = child.wait_with_output().unwrap();
    (output.status.code(), String::from_utf8_lossy(&output.stderr).to_string())
}

#[test]
fn ctrl_c_and_sigterm_say_what_was_done_and_that_the_same_command_resumes() {
    let (code, stderr) = interrupted_gen_tests(libc::SIGINT);
    assert_eq!(code, Some(130), "{stderr}");
    assert!(
        stderr.contains("interrupted by Ctrl-C (SIGINT) during gen-tests") && stderr.contains("run the same command again to resume"),
        "{stderr}"
    );
    // The heartbeat spoke while nothing finished: n of total, %, and what it waits on.
    assert!(stderr.contains("/6 records (") && stderr.contains("waiting on LLM: 1 sequences in requests"), "{stderr}");
    let (code, stderr) = interrupted_gen_tests(libc::SIGTERM);
    assert_eq!(code, Some(143), "{stderr}");
    assert!(stderr.contains("interrupted by SIGTERM"), "{stderr}");
}

#[test]
fn the_sandbox_environment_is_found_from_any_directory_and_a_bare_python_fails_doctor() {
    // A system python3 without the packages: loud, and doctor fails.
    let run = bin().env_remove("UNITCODER_PYTHON").args(["doctor", "--no-llm", "--python", "/usr/bin/python3"]).assert().code(1);
    assert!(stdout_of(&run).contains("ERROR: this interpreter imports none of the pre-import list"), "{}", stdout_of(&run));

    let dir = tempfile::tempdir().unwrap();
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    // Next to the config file.
    let cfg = dir.path().join("project/unitcoder.toml");
    write(&cfg, "");
    std::fs::create_dir_all(dir.path().join("project/.venv-sandbox/bin")).unwrap();
    std::os::unix::fs::symlink("/usr/bin/python3", dir.path().join("project/.venv-sandbox/bin/python")).unwrap();
    let run = bin().current_dir(&elsewhere).env_remove("UNITCODER_PYTHON").args(["doctor", "--no-llm", "--config", cfg.to_str().unwrap()]).assert();
    assert!(stdout_of(&run).contains("found via the config file's directory"), "{}", stdout_of(&run));
    // The per-user pointer scripts/setup-sandbox.sh writes.
    let xdg = dir.path().join("xdg");
    write(&xdg.join("unitcoder/sandbox-python"), format!("{}\n", sandbox_python()));
    let run = bin().current_dir(&elsewhere).env_remove("UNITCODER_PYTHON").env("XDG_DATA_HOME", &xdg).args(["doctor", "--no-llm"]).assert().success();
    let out = stdout_of(&run);
    assert!(out.contains("found via the per-user pointer") && out.contains("numpy [ok]"), "{out}");
}

#[test]
fn json_logs_carry_the_counts_as_fields() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let run = bin()
        .args(["--log-format", "json", "extract", "-i", fixtures().join("extract/py").to_str().unwrap(), "-o", out.to_str().unwrap()])
        .assert()
        .success();
    let summary = stderr_of(&run)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["stage"] == "extract" && v.get("kept").is_some())
        .expect("a summary line with fields");
    assert_eq!(summary["kept"], manifest(&out)["counts"]["kept"]);
    assert!(summary["documents"].is_u64() && summary["dropped"].is_u64(), "{summary}");
}

#[test]
fn dry_run_counts_requests_tokens_and_cost_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let input = functions(dir.path(), 3);
    let out = dir.path().join("out");
    let cfg = dir.path().join("prices.toml");
    write(&cfg, "[llm]\nprice_prompt_per_million = 1.0\nprice_completion_per_million = 2.0\n");
    let run = bin()
        .env_remove("OPENAI_BASE_URL")
        .args([
            "gen-tests",
            "--config",
            cfg.to_str().unwrap(),
            "-i",
            &input,
            "-o",
            out.to_str().unwrap(),
            "--no-import-check",
            "--no-call-check",
            "--dry-run",
        ])
        .assert()
        .success();
    let text = stdout_of(&run);
    assert!(text.contains("dry run: nothing was sent") && text.contains("gen-tests (llm): 3 requests, 3 sequences"), "{text}");
    assert!(text.contains("≤ 6144 completion tokens") && text.contains("cost ≤ $0.01"), "{text}");
    assert!(!out.exists(), "a dry run wrote {}", out.display());
}

#[test]
fn a_sandbox_environment_under_tmp_keeps_its_warm_workers() {
    // A fresh clone in /tmp has its .venv-sandbox there, under the sandbox's private /tmp:
    // the read-only bind of the interpreter is not a check's leftover (every check used to
    // replace its worker, re-importing numpy and pandas: a 5 s demo took 55 s).
    let dir = tempfile::Builder::new().prefix("venv-under-tmp").tempdir_in("/tmp").unwrap();
    let venv = dir.path().join("venv");
    let made = std::process::Command::new(common::python()).args(["-m", "venv", "--without-pip"]).arg(&venv).status().unwrap();
    assert!(made.success());
    let input = dir.path().join("checks.jsonl");
    let mut f = std::fs::File::create(&input).unwrap();
    for i in 0..4 {
        let code = format!("def f{i}(a):\n    return a + {i}\n");
        let tests =
            format!("import unittest\nclass TestCases(unittest.TestCase):\n    def test_a(self):\n        self.assertEqual(f{i}(1), {})\n", 1 + i);
        writeln!(f, "{}", json!({"id": format!("r{i}"), "entry_point": format!("f{i}"), "code": code, "tests": tests})).unwrap();
    }
    let out = dir.path().join("out");
    let run = bin()
        .env("RUST_LOG", "unitcoder=debug")
        .args(["sandbox-run", "-i", input.to_str().unwrap(), "-o", out.to_str().unwrap(), "--workers", "1", "--no-adequacy", "--preimport", ""])
        .arg("--python")
        .arg(venv.join("bin/python"))
        .assert()
        .success();
    let stderr = stderr_of(&run);
    assert_eq!(manifest(&out)["counts"]["outcomes"]["verdict_pass"], 4, "{stderr}");
    assert!(!stderr.contains("cleanup incomplete"), "{stderr}");
}
