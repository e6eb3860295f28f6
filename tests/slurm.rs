//! On a real single-node Slurm (scripts/setup-slurm.sh installs and starts one where it can:
//! root and apt-get): `unitcoder slurm` runs the demo pipeline and an extract of a real corpus
//! as arrays; one rank of each is killed mid-run; `status` names it, `status --resubmit`
//! submits just that rank again; the merged result equals one process's exactly.
//! Where Slurm cannot be had the tests say so on stderr and pass without checking.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{bin, demo_corpus_with_a_copy, manifest, read_records};
use serde_json::Value;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Start Slurm (once per test process); its config path, or `None` with the reason printed.
fn slurm() -> Option<String> {
    static UP: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    UP.get_or_init(|| {
        let out = Command::new("bash").arg(repo().join("scripts/setup-slurm.sh")).arg("start").output().expect("bash");
        let err = String::from_utf8_lossy(&out.stderr);
        match out.status.code() {
            Some(0) => Some(std::env::var("UNITCODER_SLURM_DIR").unwrap_or_else(|_| "/tmp/unitcoder-slurm".into()) + "/slurm.conf"),
            Some(3) => {
                eprintln!("SKIPPED: no Slurm here: {}", err.trim());
                None
            }
            _ => panic!("scripts/setup-slurm.sh failed: {err}"),
        }
    })
    .clone()
}

fn slurm_cmd(conf: &str, program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).env("SLURM_CONF", conf).output().unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(out.status.success(), "{program} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Job ids in `unitcoder slurm`'s output ("submitted … job 12 …"), in order.
fn job_ids(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .filter(|l| l.starts_with("submitted "))
        .filter_map(|l| l.split_whitespace().skip_while(|w| *w != "job").nth(1).map(str::to_string))
        .collect()
}

/// Wait until none of `jobs` is queued or running.
fn wait_for(conf: &str, jobs: &[String], limit: Duration) {
    let started = Instant::now();
    loop {
        let queued = slurm_cmd(conf, "squeue", &["-h", "-o", "%i %T", "-j", &jobs.join(",")]);
        if queued.trim().is_empty() {
            return;
        }
        assert!(started.elapsed() < limit, "jobs {jobs:?} still queued after {limit:?}:\n{queued}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Wait until rank `rank`'s marker says it is running `command`; the marker.
fn wait_running(dir: &Path, rank: usize, world: usize, command: &str) -> Value {
    let marker = dir.join(format!(".ranks/rank-{rank:05}-of-{world:05}.json"));
    let started = Instant::now();
    loop {
        let m: Option<Value> = std::fs::read(&marker).ok().and_then(|b| serde_json::from_slice(&b).ok());
        if let Some(m) = m.as_ref().filter(|m| m["state"] == "running" && m["command"] == command) {
            return m.clone();
        }
        assert!(started.elapsed() < Duration::from_secs(120), "rank {rank} never started `{command}`: {m:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn status(conf: &str, dir: &Path, extra: &[&str]) -> (i32, String) {
    let out = Command::new(assert_cmd::cargo::cargo_bin("unitcoder"))
        .arg("status")
        .arg(dir)
        .args(extra)
        .env("SLURM_CONF", conf)
        .env_remove("UNITCODER_WORLD_SIZE")
        .output()
        .unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
}

#[test]
fn the_demo_pipeline_as_slurm_arrays_survives_a_killed_rank_and_equals_one_process() {
    let Some(conf) = slurm() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let corpus = demo_corpus_with_a_copy(tmp.path());
    let config = repo().join("configs/demo.toml");
    let run_args = |work: &PathBuf| -> Vec<String> {
        ["run", "--config", config.to_str().unwrap(), "--offline", "-i", corpus.to_str().unwrap(), "--work-dir", work.to_str().unwrap()]
            .iter()
            .map(|s| s.to_string())
            .collect()
    };
    let single = tmp.path().join("single");
    bin().args(run_args(&single)).assert().success();

    let work = tmp.path().join("split");
    let submitted = bin().env("SLURM_CONF", &conf).args(["slurm", "--world-size", "3", "--"]).args(run_args(&work)).assert().success();
    let ids = job_ids(&String::from_utf8_lossy(&submitted.get_output().stdout));
    assert_eq!(ids.len(), 3, "extract array, LLM array, merge: {ids:?}");
    // Rank 1 of the LLM array is stopped as it runs (Slurm's SIGTERM, as at a time limit).
    wait_running(&work, 1, 3, "run");
    slurm_cmd(&conf, "scancel", &["--signal", "TERM", "--full", &format!("{}_1", ids[1])]);
    wait_for(&conf, &ids, Duration::from_secs(300));

    let (code, text) = status(&conf, &work, &[]);
    assert_eq!(code, 7, "{text}");
    assert!(text.contains("2 of 3 ranks done") && text.contains("incomplete: ranks 1"), "{text}");
    let rank1 = text.lines().find(|l| l.starts_with("1 ")).unwrap_or_default();
    assert!(rank1.contains("failed") && rank1.contains("interrupted by SIGTERM"), "{text}");
    // The merge job ran (afterany) and refused the incomplete layout.
    let merge_log = std::fs::read_to_string(work.join("slurm/logs/merge.log")).unwrap();
    assert!(merge_log.contains("incomplete: ranks 1"), "{merge_log}");
    assert!(!work.join("export/manifest.json").exists());

    let (code, text) = status(&conf, &work, &["--resubmit"]);
    assert_eq!(code, 7, "still incomplete when resubmitting: {text}");
    let again = job_ids(&text);
    assert_eq!(again.len(), 2, "the LLM array for rank 1 and a merge: {text}");
    assert!(text.contains("ranks 1 of 3"), "{text}");
    wait_for(&conf, &again, Duration::from_secs(300));
    let (code, text) = status(&conf, &work, &[]);
    assert_eq!(code, 0, "{text}");
    assert_eq!(read_records(&work.join("export"), "data"), read_records(&single.join("export"), "data"));
    assert_eq!(manifest(&work.join("export"))["counts"]["exported"], manifest(&single.join("export"))["counts"]["exported"]);
    // One log per rank and phase, the killed rank's holding both attempts.
    let log1 = std::fs::read_to_string(work.join("slurm/logs/chain-rank-1.log")).unwrap();
    assert_eq!(log1.matches("== ").count(), 2, "{log1}");
}

#[test]
fn an_extract_of_a_real_corpus_as_an_array_survives_a_killed_rank_and_equals_one_process() {
    let Some(conf) = slurm() else { return };
    // A real corpus: the Python packages the sandbox runs (numpy, pandas, pip, setuptools, …).
    let corpus = repo().join(".venv-sandbox/lib/python3.11/site-packages");
    assert!(corpus.is_dir(), "run scripts/setup-sandbox.sh first");
    let tmp = tempfile::tempdir().unwrap();
    let single = tmp.path().join("single");
    bin().args(["extract", "-i", corpus.to_str().unwrap(), "-o", single.to_str().unwrap(), "-j", "1", "-q"]).assert().success();

    let out = tmp.path().join("split");
    let submitted = bin()
        .env("SLURM_CONF", &conf)
        .args(["slurm", "--world-size", "4", "--"])
        .args(["extract", "-i", corpus.to_str().unwrap(), "-o", out.to_str().unwrap(), "-j", "1", "--records-per-shard", "100"])
        .assert()
        .success();
    let ids = job_ids(&String::from_utf8_lossy(&submitted.get_output().stdout));
    assert_eq!(ids.len(), 2, "the array and the merge: {ids:?}");
    // SIGKILL (as the OOM killer does): no handler runs, the marker stays "running", and
    // Slurm knows the rest.
    let marker = wait_running(&out, 2, 4, "extract");
    let pid = marker["pid"].as_u64().unwrap().to_string();
    assert!(Command::new("kill").args(["-KILL", &pid]).status().unwrap().success());
    wait_for(&conf, &ids, Duration::from_secs(300));
    let (code, text) = status(&conf, &out, &[]);
    assert_eq!(code, 7, "{text}");
    let rank2 = text.lines().find(|l| l.starts_with("2 ")).unwrap_or_default();
    assert!(rank2.contains("failed: slurm job") && rank2.contains("ended FAILED"), "{text}");

    let (_, text) = status(&conf, &out, &["--resubmit"]);
    let again = job_ids(&text);
    assert_eq!(again.len(), 2, "{text}");
    wait_for(&conf, &again, Duration::from_secs(300));
    let (code, text) = status(&conf, &out, &[]);
    assert_eq!(code, 0, "{text}");

    // The ranks' records, in corpus order with cross-rank duplicates dropped (what `run`'s
    // share step does), are exactly one process's.
    let mut merged: Vec<Value> = (0..4).flat_map(|r| read_records(&out.join(format!("rank-{r:05}-of-00004")), "shard")).collect();
    merged.sort_by_key(|r| (r["source"]["position"][0].as_u64().unwrap(), r["source"]["position"][1].as_u64().unwrap()));
    let mut seen = std::collections::HashSet::new();
    let before = merged.len();
    merged.retain(|r| seen.insert(r["dedup_key"].as_str().unwrap().to_string()));
    let expected = read_records(&single, "shard");
    assert!(before > merged.len(), "a real corpus has duplicates across ranks");
    assert!(expected.len() > 500, "{}", expected.len());
    assert_eq!(merged.len(), expected.len());
    assert!(merged == expected, "the split extract differs from one process's");
}
