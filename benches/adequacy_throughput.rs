//! The cost of test adequacy, each figure against a baseline in the same run:
//!
//! - **mutant runs per second** on a trivial function, 2 workers: unitcoder's mutant jobs
//!   (all of a record's mutants in one forked child of a warm worker) against a fresh
//!   `python -m unittest` process per mutant, 2 in parallel (what mutmut-style tools do);
//! - **coverage overhead**: the same passing checks with and without the line tracer,
//!   interleaved (BigCodeBench canonical solutions with their human tests when
//!   `../shared/benchmarks/bigcodebench.jsonl` and `.venv-bcb` exist, else the trivial set).
//!
//! Run: `cargo bench --bench adequacy_throughput` (after scripts/setup-sandbox.sh); updates
//! the `adequacy-throughput` section of bench/RESULTS.md.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use serde_json::Value;
use unitcoder::python::mutants;
use unitcoder::sandbox::{AdequacySettings, Sandbox, SandboxSettings, Status};

const RECORDS: usize = 60;
const BASELINE_MUTANTS: usize = 120;
const LANES: usize = 2;
const COVERAGE_TASKS: usize = 200;
const BCB_MUTATION_TASKS: usize = 20;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

/// Trivial function `i` (constants vary so records differ) and its tests.
fn record(i: usize) -> (String, String) {
    let c = i % 5 + 2;
    let code = format!(
        "def task_func(a, b):\n    if a > b:\n        return a - b + {c}\n    total = 0\n    for x in range(a, b):\n        total += x * {c}\n    return total\n"
    );
    let expect = |a: i64, b: i64| if a > b { a - b + c as i64 } else { (a..b).map(|x| x * c as i64).sum() };
    let tests = format!(
        "import unittest\nclass TestCases(unittest.TestCase):\n    def test_down(self):\n        self.assertEqual(task_func(5, 2), {})\n    def test_up(self):\n        self.assertEqual(task_func(1, 4), {})\n    def test_empty(self):\n        self.assertEqual(task_func(3, 3), {})\n",
        expect(5, 2),
        expect(1, 4),
        expect(3, 3)
    );
    (code, tests)
}

fn parallel<T: Send>(jobs: Vec<T>, lanes: usize, work: impl Fn(T) -> usize + Sync) -> usize {
    let queue = std::sync::Mutex::new(jobs);
    let done = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..lanes {
            s.spawn(|| loop {
                let Some(job) = queue.lock().map(|mut q| q.pop()).ok().flatten() else { return };
                done.fetch_add(work(job), Ordering::Relaxed);
            });
        }
    });
    done.into_inner()
}

/// One mutant as a mutmut-style tool runs it: a fresh interpreter, `python -m unittest -f`,
/// killed after 30 s (a hanging mutant counts as killed). True when killed.
fn baseline_mutant(python: &str, source: &str, tests: &str) -> bool {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("test_task.py"), format!("{source}\n\n{tests}")).expect("write");
    let mut child = std::process::Command::new(python)
        .args(["-m", "unittest", "-f", "test_task"])
        .current_dir(dir.path())
        .env("MPLBACKEND", "Agg")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("python runs");
    let deadline = Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return !status.success();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

fn bcb_tasks() -> Option<(String, Vec<(String, String)>)> {
    let python = root().join(".venv-bcb/bin/python");
    let file = root().join("../shared/benchmarks/bigcodebench.jsonl");
    if !python.exists() || !file.exists() {
        return None;
    }
    let text = std::fs::read_to_string(file).ok()?;
    let tasks = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| Some((v.get("canonical_solution")?.as_str()?.to_string(), v.get("test")?.as_str()?.to_string())))
        .take(COVERAGE_TASKS)
        .collect();
    Some((python.display().to_string(), tasks))
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this binary without it.
    if !std::env::args().any(|a| a == "--bench") {
        println!("adequacy_throughput: run with `cargo bench --bench adequacy_throughput`");
        return;
    }
    let python = root().join(".venv-sandbox/bin/python").display().to_string();
    let settings = SandboxSettings { python: python.clone(), workers: LANES, preimport: vec![], ..Default::default() };
    let sandbox = Sandbox::start(settings).expect("sandbox");
    let only_mutants = AdequacySettings { reruns: 0, coverage: false, mutants: 40, ..Default::default() };

    // 1. Mutant runs per second.
    let records: Vec<(String, String)> = (0..RECORDS).map(record).collect();
    for (code, tests) in records.iter().take(4) {
        let _ = sandbox.verify(code, tests, Some("task_func"), &only_mutants); // warm both workers
    }
    let started = Instant::now();
    let counted = AtomicUsize::new(0);
    let killed = parallel(records.clone(), LANES, |(code, tests)| {
        let v = sandbox.verify(&code, &tests, Some("task_func"), &only_mutants);
        assert_eq!(v.status, Status::Pass, "{v:?}");
        let a = v.adequacy.expect("assessed");
        counted.fetch_add(a.mutants + a.equivalent_suspected + a.invalid_mutants, Ordering::Relaxed);
        a.killed
    });
    let ours_wall = started.elapsed().as_secs_f64();
    let ours_runs = counted.into_inner();
    let ours_rate = ours_runs as f64 / ours_wall;

    let mut baseline_jobs = Vec::new();
    for (code, tests) in &records {
        for m in mutants::generate(code, Some("task_func"), 40, 0).mutants {
            baseline_jobs.push((m.source, tests.clone()));
        }
    }
    baseline_jobs.truncate(BASELINE_MUTANTS);
    let started = Instant::now();
    let baseline_runs = baseline_jobs.len();
    let baseline_killed = parallel(baseline_jobs, LANES, |(source, tests)| usize::from(baseline_mutant(&python, &source, &tests)));
    let base_wall = started.elapsed().as_secs_f64();
    let base_rate = baseline_runs as f64 / base_wall;

    // 2. Coverage overhead: the same checks, with and without the tracer, interleaved.
    let (cov_python, tasks, label) = match bcb_tasks() {
        Some((p, t)) => (p, t, format!("the first {COVERAGE_TASKS} BigCodeBench canonical solutions with their human tests (`.venv-bcb`)")),
        None => (python.clone(), records.clone(), "the trivial functions above (no BigCodeBench environment here)".to_string()),
    };
    drop(sandbox);
    let preimport = ["numpy", "pandas", "matplotlib", "scipy", "sklearn"].map(String::from).to_vec();
    let cov_sandbox = Sandbox::start(SandboxSettings { python: cov_python, workers: LANES, preimport, ..Default::default() }).expect("sandbox");
    let (plain_ms, traced_ms, compared) = {
        let totals = std::sync::Mutex::new((0u64, 0u64, 0usize));
        parallel(tasks, LANES, |(code, tests)| {
            let plain = cov_sandbox.check(&code, &tests);
            let (traced, _) = cov_sandbox.check_covered(&code, &tests, Some("task_func"));
            let plain2 = cov_sandbox.check(&code, &tests);
            if plain.status == Status::Pass && traced.status == Status::Pass && plain2.status == Status::Pass {
                let mut t = totals.lock().expect("lock");
                t.0 += (plain.duration_ms + plain2.duration_ms) / 2;
                t.1 += traced.duration_ms;
                t.2 += 1;
            }
            0
        });
        totals.into_inner().expect("lock")
    };
    let overhead = traced_ms as f64 / plain_ms.max(1) as f64 - 1.0;

    // 3. Mutation analysis on real tasks: the first BigCodeBench tasks that pass, their
    //    mutants through unitcoder and through a fresh process each.
    let bcb_line = match bcb_tasks() {
        Some((bcb_python, tasks)) => {
            let passing: Vec<(String, String)> =
                tasks.into_iter().filter(|(c, t)| cov_sandbox.check(c, t).status == Status::Pass).take(BCB_MUTATION_TASKS).collect();
            let mutants_only = AdequacySettings { reruns: 0, coverage: false, ..Default::default() };
            let started = Instant::now();
            let ran = parallel(passing.clone(), LANES, |(code, tests)| {
                let a = cov_sandbox.verify(&code, &tests, Some("task_func"), &mutants_only).adequacy.unwrap_or_default();
                a.mutants + a.equivalent_suspected + a.invalid_mutants
            });
            let ours = started.elapsed().as_secs_f64();
            let jobs: Vec<(String, String)> = passing
                .iter()
                .flat_map(|(code, tests)| {
                    mutants::generate(code, Some("task_func"), 20, 0).mutants.into_iter().map(move |m| (m.source, tests.clone()))
                })
                .collect();
            let fresh_runs = jobs.len();
            let started = Instant::now();
            parallel(jobs, LANES, |(source, tests)| usize::from(baseline_mutant(&bcb_python, &source, &tests)));
            let fresh = started.elapsed().as_secs_f64();
            format!(
                "\n\nMutation analysis of the first {} passing BigCodeBench tasks (20 mutants each, `.venv-bcb`): unitcoder {ran} mutant runs in {ours:.1} s \
({:.1}/s); fresh `python -m unittest -f` per mutant {fresh_runs} runs in {fresh:.1} s ({:.1}/s): **{:.1}×** (target ≥ 10×).",
                passing.len(),
                ran as f64 / ours,
                fresh_runs as f64 / fresh,
                (ran as f64 / ours) / (fresh_runs as f64 / fresh),
            )
        }
        None => String::new(),
    };

    let section = format!(
        "<!-- adequacy-throughput:begin -->\n## adequacy: mutant runs and coverage cost\n\n\
Machine: 2 cores; {LANES} sandbox workers vs {LANES} parallel fresh processes; `.venv-sandbox` Python; `cargo bench --bench adequacy_throughput`.\n\n\
| | mutant runs | wall s | runs/s | killed |\n|---|---:|---:|---:|---:|\n\
| unitcoder mutant jobs ({RECORDS} trivial functions, up to 40 mutants each) | {ours_runs} | {ours_wall:.2} | {ours_rate:.0} | {killed} |\n\
| fresh `python -m unittest -f` per mutant | {baseline_runs} | {base_wall:.2} | {base_rate:.1} | {baseline_killed} |\n\n\
**{ours_rate:.0} mutant runs/s** on 2 workers (target ≥ 150/s); **{:.0}×** the fresh-process baseline (target ≥ 10×).\n\n\
Coverage cost, on {label}: {compared} checks passing with and without the tracer; summed check time \
{plain_ms} ms without, {traced_ms} ms with: **{:+.1}%** (target ≤ 10%).{bcb_line}\n<!-- adequacy-throughput:end -->\n",
        ours_rate / base_rate,
        overhead * 100.0,
    );
    println!("{section}");
    common::write_results_section("adequacy-throughput", &section);
}
