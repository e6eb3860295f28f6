//! Splitting a run over ranks (`--rank/--world-size`) without a cluster: the ranks' union is
//! exactly one process's result (cross-rank duplicates dropped before the LLM stages, rows
//! merged in corpus order), merges refuse incomplete or mixed rank layouts, `status` says
//! what is missing, rejects are per rank, and `unitcoder slurm` writes pinned scripts.
//! `tests/slurm.rs` does the same on a real Slurm.

mod common;

use std::path::Path;

use common::{bin, copy_dir, demo_corpus_with_a_copy, manifest, read_records};
use serde_json::Value;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn demo_run<S: AsRef<std::ffi::OsStr>>(corpus: &Path, work: &Path, extra: &[S]) -> assert_cmd::assert::Assert {
    let mut cmd = bin();
    cmd.current_dir(repo()).env_remove("UNITCODER_RANK").env_remove("UNITCODER_WORLD_SIZE");
    cmd.args(["run", "--config", "configs/demo.toml", "--offline", "-i", corpus.to_str().unwrap(), "--work-dir", work.to_str().unwrap()]);
    cmd.args(extra).assert()
}

fn rank_args(rank: usize, world: usize) -> Vec<String> {
    vec!["--rank".into(), rank.to_string(), "--world-size".into(), world.to_string()]
}

/// Rows with the paths of the two work directories taken out.
fn rows(dir: &Path) -> Vec<Value> {
    read_records(dir, "data")
}

fn stderr(a: &assert_cmd::assert::Assert) -> String {
    String::from_utf8_lossy(&a.get_output().stderr).into_owned()
}

fn stdout(a: &assert_cmd::assert::Assert) -> String {
    String::from_utf8_lossy(&a.get_output().stdout).into_owned()
}

/// Every function of every rank's share, in corpus order.
fn share_ids(work: &Path, world: usize) -> Vec<(Vec<u64>, String)> {
    let mut out = Vec::new();
    for r in 0..world {
        for rec in read_records(&work.join(format!("share/rank-{r:05}-of-{world:05}")), "shard") {
            let pos: Vec<u64> = rec["source"]["position"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
            out.push((pos, rec["id"].as_str().unwrap().to_string()));
        }
    }
    out.sort();
    out
}

#[test]
fn a_split_run_equals_one_process_and_merges_refuse_what_is_incomplete() {
    let tmp = tempfile::tempdir().unwrap();
    let corpus = demo_corpus_with_a_copy(tmp.path());
    let single = tmp.path().join("single");
    demo_run::<&str>(&corpus, &single, &[]).success();

    // Three ranks by hand: extract first, then the LLM stages; then the merge.
    let split = tmp.path().join("split");
    for r in 0..3 {
        demo_run(&corpus, &split, &[&rank_args(r, 3)[..], &["--stop-after".into(), "extract".into()]].concat()).success();
    }
    // The union of the extracts holds the cross-rank duplicates one process drops.
    let kept: u64 = (0..3).map(|r| manifest(&split.join(format!("extract/rank-{r:05}-of-00003")))["counts"]["kept"].as_u64().unwrap()).sum();
    let single_kept = manifest(&single.join("extract"))["counts"]["kept"].as_u64().unwrap();
    assert!(kept > single_kept, "the copy's functions are kept by another rank too: {kept} vs {single_kept}");
    for r in 0..3 {
        let a = demo_run(&corpus, &split, &rank_args(r, 3));
        a.success();
    }
    // Going into gen-tests: exactly one process's functions, in its order.
    let single_ids: Vec<String> = read_records(&single.join("extract"), "shard").iter().map(|r| r["id"].as_str().unwrap().to_string()).collect();
    let shared: Vec<String> = share_ids(&split, 3).into_iter().map(|(_, id)| id).collect();
    assert_eq!(shared, single_ids);
    let dups: u64 =
        (0..3).map(|r| manifest(&split.join(format!("share/rank-{r:05}-of-00003")))["counts"]["cross_rank_duplicates"].as_u64().unwrap()).sum();
    assert_eq!(dups, kept - single_kept, "every cross-rank duplicate is dropped once");
    let gen_tests: u64 =
        (0..3).map(|r| manifest(&split.join(format!("gen-tests/rank-{r:05}-of-00003")))["counts"]["records"].as_u64().unwrap()).sum();
    assert_eq!(gen_tests, single_kept, "no LLM stage sees a duplicate");

    // `status` says every rank is done; the merge exports exactly the single run's rows.
    let status = bin().args(["status", split.to_str().unwrap()]).assert().success();
    assert!(stdout(&status).contains("3 of 3 ranks done"), "{}", stdout(&status));
    demo_run(&corpus, &split, &["--only-export"]).success();
    assert_eq!(rows(&split.join("export")), rows(&single.join("export")));
    assert!(!rows(&single.join("export")).is_empty());
    let stats = bin().args(["stats", split.to_str().unwrap(), "--json"]).assert().success();
    let stats: Value = serde_json::from_str(&stdout(&stats)).unwrap();
    let share = stats["stages"].as_array().unwrap().iter().find(|s| s["stage"] == "share").expect("a share row");
    assert_eq!(share["outcomes"]["cross_rank_duplicates"], dups);
    assert_eq!(share["world_size"], 3);

    // Merges refuse a rank layout that is not complete.
    let export = |input: &Path, extra: &[&str]| {
        let out = tmp.path().join(format!("export-{}", rand_suffix()));
        let mut cmd = bin();
        cmd.args(["export", "-i", input.to_str().unwrap(), "-o", out.to_str().unwrap(), "--no-decontaminate"]).args(extra);
        (cmd.assert(), out)
    };
    let broken = tmp.path().join("broken");
    copy_dir(&split.join("refine"), &broken);
    std::fs::remove_dir_all(broken.join("rank-00002-of-00003")).unwrap();
    let (a, _) = export(&broken, &[]);
    let a = a.code(7);
    assert!(stderr(&a).contains("rank 2 missing") && stderr(&a).contains("--allow-partial"), "{}", stderr(&a));
    let (a, out) = export(&broken, &["--allow-partial"]);
    a.success();
    let partial_rows = rows(&out).len();
    assert!(partial_rows < rows(&single.join("export")).len() && partial_rows > 0);

    // A rank whose last shard is still partial (killed mid-run).
    let unfinished = tmp.path().join("unfinished");
    copy_dir(&split.join("refine"), &unfinished);
    let rank1 = unfinished.join("rank-00001-of-00003");
    std::fs::remove_file(rank1.join("manifest.json")).unwrap();
    let shard = common::shard_files(&rank1, "shard").pop().unwrap();
    let name = shard.file_name().unwrap().to_string_lossy().replace(".jsonl", "");
    std::fs::rename(&shard, rank1.join(format!(".{name}.partial.jsonl"))).unwrap();
    let (a, _) = export(&unfinished, &[]);
    let a = a.code(7);
    assert!(stderr(&a).contains("rank 1 partial"), "{}", stderr(&a));
    let status = bin().args(["status", unfinished.to_str().unwrap()]).assert().code(7);
    assert!(stdout(&status).contains("partial") && stdout(&status).contains("incomplete: ranks 1"), "{}", stdout(&status));

    // Rank folders of another world size mixed in (a stale split).
    let mixed = tmp.path().join("mixed");
    copy_dir(&split.join("refine"), &mixed);
    copy_dir(&mixed.join("rank-00000-of-00003"), &mixed.join("rank-00000-of-00002"));
    let (a, _) = export(&mixed, &[]);
    let a = a.code(7);
    assert!(stderr(&a).contains("different world sizes (2 and 3)"), "{}", stderr(&a));

    // `stats` shows mixed world sizes apart and warns, instead of adding them up.
    let mixed_work = tmp.path().join("mixed-work");
    copy_dir(&split.join("extract"), &mixed_work.join("extract"));
    copy_dir(&single.join("extract"), &mixed_work.join("extract/rank-00000-of-00001"));
    let a = bin().args(["stats", mixed_work.to_str().unwrap()]).assert().success();
    let text = stdout(&a);
    assert!(text.contains("warning: extract: outputs of different world sizes (1, 3)") && text.contains("extract (world size 3)"), "{text}");

    // Commands that read every rank refuse a world size from the environment.
    for args in [vec!["stats", split.to_str().unwrap()], vec!["export", "-i", "x", "-o", "y"], vec!["status", split.to_str().unwrap()]] {
        let a = bin().env("UNITCODER_WORLD_SIZE", "4").args(&args).assert().code(2);
        assert!(stderr(&a).contains("UNITCODER_WORLD_SIZE=4"), "{args:?}: {}", stderr(&a));
    }
}

fn rand_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed).to_string()
}

#[test]
fn the_llm_stages_of_a_rank_wait_for_every_extract_or_say_which_are_missing() {
    let tmp = tempfile::tempdir().unwrap();
    let corpus = demo_corpus_with_a_copy(tmp.path());
    let work = tmp.path().join("w");
    demo_run(&corpus, &work, &[&rank_args(0, 3)[..], &["--stop-after".into(), "extract".into()]].concat()).success();
    let a = demo_run(&corpus, &work, &[&rank_args(0, 3)[..], &["--wait-for-ranks".into(), "0".into()]].concat()).code(7);
    assert!(stderr(&a).contains("the extracts of ranks 1 (not started), 2 (not started) are not done"), "{}", stderr(&a));
    // The rank's marker says how it ended, and `status` shows it.
    let status = bin().args(["status", work.to_str().unwrap()]).assert().code(7);
    let text = stdout(&status);
    assert!(text.contains("failed: rank 0: the extracts of ranks 1"), "{text}");
    assert!(text.contains("(exit 7)"), "{text}");
}

#[test]
fn extract_rejects_are_split_by_rank_and_reruns_are_up_to_date() {
    let tmp = tempfile::tempdir().unwrap();
    let corpus = demo_corpus_with_a_copy(tmp.path());
    let (out, rejects) = (tmp.path().join("out"), tmp.path().join("rejects"));
    let spawn = |rank: usize| {
        std::process::Command::new(assert_cmd::cargo::cargo_bin("unitcoder"))
            .args(["extract", "-i", corpus.to_str().unwrap(), "-o", out.to_str().unwrap(), "--rejects", rejects.to_str().unwrap()])
            .args(rank_args(rank, 2))
            .output()
            .unwrap()
    };
    // Two ranks at once into the same --rejects directory.
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| spawn(0));
        let b = s.spawn(|| spawn(1));
        (a.join().unwrap(), b.join().unwrap())
    });
    assert!(a.status.success() && b.status.success(), "{}\n{}", String::from_utf8_lossy(&a.stderr), String::from_utf8_lossy(&b.stderr));
    for r in 0..2 {
        let dir = rejects.join(format!("rank-{r:05}-of-00002"));
        let m = manifest(&dir);
        assert_eq!(m["stage"], "extract-rejects");
        let sum = |k: &str| m["counts"][k].as_object().unwrap().values().map(|v| v.as_u64().unwrap()).sum::<u64>();
        assert!(sum("dropped") > 0, "{m}");
        assert_eq!(read_records(&dir, "rejects").len() as u64, sum("dropped") + sum("bad_input"));
    }
    // A rerun with the same rejects directory is up to date: nothing rewritten.
    let shard = common::shard_files(&out.join("rank-00000-of-00002"), "shard").remove(0);
    let before = std::fs::metadata(&shard).unwrap().modified().unwrap();
    let again = spawn(0);
    assert!(again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("up to date"), "{}", String::from_utf8_lossy(&again.stderr));
    assert_eq!(std::fs::metadata(&shard).unwrap().modified().unwrap(), before);
}

#[test]
fn slurm_scripts_pin_the_world_size_and_take_the_rank_from_the_array_index() {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("w");
    let a = bin()
        .current_dir(repo())
        .args(["slurm", "--world-size", "4", "--partition", "cpu", "--time", "2:00:00", "--mem", "4G", "--no-submit", "--"])
        .args(["run", "--config", "configs/demo.toml", "--offline", "--work-dir", work.to_str().unwrap()])
        .assert()
        .success();
    let out = stdout(&a);
    assert!(out.contains("--array=0-3") && out.contains("extract.sbatch") && out.contains("chain.sbatch") && out.contains("merge.sbatch"), "{out}");
    let extract = std::fs::read_to_string(work.join("slurm/extract.sbatch")).unwrap();
    let chain = std::fs::read_to_string(work.join("slurm/chain.sbatch")).unwrap();
    let merge = std::fs::read_to_string(work.join("slurm/merge.sbatch")).unwrap();
    for script in [&extract, &chain] {
        assert!(script.contains("--rank \"$SLURM_ARRAY_TASK_ID\" --world-size 4"), "{script}");
        assert!(!script.contains("SLURM_ARRAY_TASK_COUNT"), "{script}");
        assert!(script.contains("unset UNITCODER_RANK UNITCODER_WORLD_SIZE"), "{script}");
        assert!(script.contains("#SBATCH --partition=cpu") && script.contains("#SBATCH --time=2:00:00") && script.contains("#SBATCH --mem=4G"));
    }
    assert!(extract.contains("--stop-after extract") && extract.contains("slurm/logs/extract-rank-%a.log"), "{extract}");
    assert!(chain.contains("--wait-for-ranks 0"), "{chain}");
    assert!(merge.contains(" status ") && merge.contains("--only-export") && !merge.contains("--world-size"), "{merge}");
    let submission: Value = serde_json::from_slice(&std::fs::read(work.join("slurm/submission.json")).unwrap()).unwrap();
    assert_eq!(submission["world_size"], 4);
    assert_eq!(submission["stages"], serde_json::json!(["extract", "share", "gen-tests", "sandbox-run", "fix", "refine"]));

    // The rank is the tool's to set.
    let a = bin().args(["slurm", "--world-size", "2", "--no-submit", "--", "extract", "-i", "x", "-o", "y", "--rank", "1"]).assert().code(2);
    assert!(stderr(&a).contains("must not set --rank"), "{}", stderr(&a));
    let a = bin().args(["slurm", "--world-size", "2", "--no-submit", "--", "stats", "x"]).assert().code(2);
    assert!(stderr(&a).contains("not `stats`"), "{}", stderr(&a));
}

/// A rank killed mid-run (SIGKILL: nothing runs at exit) and run again keeps what it did and
/// what it spent: its manifest's LLM totals are both runs' (the journal), and the rerun does
/// not redo the finished records, even with `--rejects` (which used to make extract rewrite
/// its shards on every run, so the rank started over).
#[test]
fn a_rank_killed_and_resumed_keeps_its_work_and_the_tokens_of_both_runs() {
    use common::mock_llm::{Faults, MockServer};
    let server = MockServer::start(Faults { latency_ms: 400, ..Default::default() });
    let tmp = tempfile::tempdir().unwrap();
    let corpus = demo_corpus_with_a_copy(tmp.path());
    let work = tmp.path().join("w");
    let cache = tmp.path().join("cache.sqlite");
    let rejects = tmp.path().join("rejects");
    let args = |rank: usize, stop: &str| -> Vec<String> {
        let mut v: Vec<String> = ["run", "--config", "configs/demo.toml", "-i", corpus.to_str().unwrap(), "--work-dir", work.to_str().unwrap()]
            .iter()
            .map(|s| s.to_string())
            .collect();
        v.extend(["--base-url", &server.base_url, "--model", "mock", "--concurrency", "1"].iter().map(|s| s.to_string()));
        v.extend(["--cache".to_string(), cache.display().to_string(), "--rejects".into(), rejects.display().to_string()]);
        v.extend(["--stop-after".to_string(), stop.to_string()]);
        v.extend(rank_args(rank, 2));
        v
    };
    bin().current_dir(repo()).args(args(1, "extract")).assert().success();
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("unitcoder"))
        .current_dir(repo())
        .args(args(0, "gen-tests"))
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while server.seen.completed.lock().unwrap().len() < 2 {
        assert!(started.elapsed() < std::time::Duration::from_secs(120), "no answers");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // Let the client store the second answer (the third is 400 ms away), then kill it.
    std::thread::sleep(std::time::Duration::from_millis(150));
    let killed_at = std::time::Instant::now();
    child.kill().unwrap();
    child.wait().unwrap();
    // The request in flight at the kill may still be answered into the closed connection:
    // the mock counts it, the killed client never saw it.
    std::thread::sleep(std::time::Duration::from_millis(600));
    let before_kill: Vec<String> = {
        let bodies = server.seen.completed.lock().unwrap();
        let at = server.seen.completed_at.lock().unwrap();
        bodies.iter().zip(at.iter()).filter(|(_, t)| **t < killed_at).map(|(b, _)| b.clone()).collect()
    };
    let ghosts = server.seen.completed.lock().unwrap().len() - before_kill.len();
    assert!(before_kill.len() >= 2 && before_kill.len() < 6, "killed mid-run: {} answers", before_kill.len());
    bin().current_dir(repo()).args(args(0, "gen-tests")).assert().success();
    let total = server.seen.completed.lock().unwrap().len() as u64;
    let m = manifest(&work.join("gen-tests/rank-00000-of-00002"));
    let llm = &m["timings"]["llm"];
    assert_eq!(llm["requests"], total - ghosts as u64, "both runs' requests: {llm}");
    assert_eq!(llm["cache_hits"], before_kill.len() as u64, "answers of the killed run come from the cache: {llm}");
    assert_eq!(m["history"].as_array().unwrap().len(), 2, "{m}");
    // Nothing answered before the kill was asked again.
    let bodies = server.seen.completed.lock().unwrap().clone();
    for body in &before_kill {
        assert_eq!(bodies.iter().filter(|b| *b == body).count(), 1, "a request answered before the kill was sent again");
    }
}
