//! Execution throughput of sandbox call jobs, the engine under `case2code` and `consensus`,
//! against a fresh `python` process per execution (what a plain harness does) in the same
//! run, both with 2 parallel lanes on the same venv interpreter.
//!
//! - case2code shape: F functions × K inputs × 2 runs, a fresh forked child per input;
//! - consensus shape: P problems × N candidates × T inputs, all inputs of a candidate in one
//!   child (per-input time limits).
//!
//! The functions mix pure Python, numpy and pandas (as extracted UnitCoder functions do).
//! Run: `cargo bench --bench calls_throughput` (after scripts/setup-sandbox.sh); updates
//! the `calls` section of bench/RESULTS.md.

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use unitcoder::sandbox::calls::{CallOptions, OutcomeKind};
use unitcoder::sandbox::{Sandbox, SandboxSettings};

const FUNCTIONS: usize = 60;
const INPUTS: usize = 10;
const PROBLEMS: usize = 12;
const CANDIDATES: usize = 16;
const TESTS: usize = 50;
const BASELINE_RUNS: usize = 120;
const LANES: usize = 2;

/// Program number `i`: one of four kinds, with a varying constant so programs differ.
fn program(i: usize) -> String {
    let c = i % 7 + 1;
    match i % 4 {
        0 => format!("def f(xs, k):\n    return sorted((x * k + {c}) % 97 for x in xs)\n"),
        1 => format!("import numpy as np\n\ndef f(xs, k):\n    a = np.array(xs, dtype=float) * k\n    return np.cumsum(a + {c})\n"),
        2 => format!("import pandas as pd\n\ndef f(xs, k):\n    df = pd.DataFrame({{'a': xs}})\n    return (df['a'] * k + {c}).rolling(2).sum().fillna(0).tolist()\n"),
        _ => format!("import re\n\ndef f(xs, k):\n    text = ' '.join(str(x) for x in xs) * (k % 3 + 1)\n    return [m for m in re.findall(r'\\d+', text) if int(m) > {c}]\n"),
    }
}

fn input(j: usize) -> String {
    let xs: Vec<String> = (0..(j % 8 + 2)).map(|x| ((x * 37 + j * 11) % 50).to_string()).collect();
    format!("{{'xs': [{}], 'k': {}}}", xs.join(", "), j % 5 + 1)
}

/// The baseline: one fresh interpreter per execution, importing the program and calling it.
const BASELINE: &str = "import ast, sys\nns = {}\nexec(compile(sys.argv[1], 'solution.py', 'exec'), ns)\nkw = ast.literal_eval(sys.argv[2])\nprint(repr(ns['f'](**kw)))\n";

fn python() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv-sandbox/bin/python").display().to_string()
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

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("calls_throughput: run with `cargo bench --bench calls_throughput`");
        return;
    }
    let py = python();
    let settings =
        SandboxSettings { python: py.clone(), workers: LANES, timeout: 10.0, preimport: vec!["numpy".into(), "pandas".into()], ..Default::default() };
    let sandbox = Arc::new(Sandbox::start(settings).expect("sandbox starts"));

    // case2code shape: each function's K inputs, twice, fresh child per input.
    let jobs: Vec<usize> = (0..FUNCTIONS * 2).collect();
    let opts = CallOptions { timeout: 5.0, fresh_child_per_input: true };
    let t = Instant::now();
    let values = parallel(jobs, LANES, |j| {
        let inputs: Vec<String> = (0..INPUTS).map(|k| input(j / 2 * 3 + k)).collect();
        let r = sandbox.call(&program(j / 2), "f", &inputs, opts);
        r.outcomes.iter().filter(|o| o.kind == OutcomeKind::Value).count()
    });
    let c2c_secs = t.elapsed().as_secs_f64();
    let c2c_runs = FUNCTIONS * INPUTS * 2;
    assert_eq!(values, c2c_runs, "every execution returns a value");

    // consensus shape: N candidates per problem, T inputs each, batched per candidate.
    let jobs: Vec<(usize, usize)> = (0..PROBLEMS).flat_map(|p| (0..CANDIDATES).map(move |c| (p, c))).collect();
    let opts = CallOptions { timeout: 5.0, fresh_child_per_input: false };
    let t = Instant::now();
    let values = parallel(jobs, LANES, |(p, c)| {
        let inputs: Vec<String> = (0..TESTS).map(|k| input(p * 100 + k)).collect();
        let r = sandbox.call(&program(p + 4 * (c % 3)), "f", &inputs, opts);
        r.outcomes.iter().filter(|o| o.kind == OutcomeKind::Value).count()
    });
    let cons_secs = t.elapsed().as_secs_f64();
    let cons_runs = PROBLEMS * CANDIDATES * TESTS;
    assert_eq!(values, cons_runs);

    // Baseline: fresh process per execution, same programs and inputs, same lanes.
    let jobs: Vec<usize> = (0..BASELINE_RUNS).collect();
    let t = Instant::now();
    let ok = parallel(jobs, LANES, |j| {
        let out = std::process::Command::new(&py)
            .args(["-I", "-c", BASELINE, &program(j), &input(j)])
            .env("OMP_NUM_THREADS", "1")
            .output()
            .expect("python runs");
        usize::from(out.status.success())
    });
    let base_secs = t.elapsed().as_secs_f64();
    assert_eq!(ok, BASELINE_RUNS, "baseline runs succeed");

    let rate = |n: usize, s: f64| n as f64 / s;
    let (c2c, cons, base) = (rate(c2c_runs, c2c_secs), rate(cons_runs, cons_secs), rate(BASELINE_RUNS, base_secs));
    let section = format!(
        "<!-- calls:begin -->\n## case2code / consensus executions\n\n\
Machine: 2 cores; {LANES} sandbox workers (isolation: {iso}) vs {LANES} parallel fresh processes; \
Python at `.venv-sandbox` (numpy, pandas); programs mix pure Python, numpy, pandas and re (a quarter each). \
`cargo bench --bench calls_throughput`.\n\n\
| | executions | wall s | executions/s | vs baseline |\n|---|---:|---:|---:|---:|\n\
| case2code shape: {FUNCTIONS} functions × {INPUTS} inputs × 2 runs, fresh child per input | {c2c_runs} | {c2c_secs:.2} | {c2c:.0} | {r1:.1}× |\n\
| consensus shape: {PROBLEMS} problems × {CANDIDATES} candidates × {TESTS} inputs, one child per candidate | {cons_runs} | {cons_secs:.2} | {cons:.0} | {r2:.1}× |\n\
| baseline: fresh `python -I -c` per execution | {BASELINE_RUNS} | {base_secs:.2} | {base:.1} | 1.0× |\n\n\
case2code examples (two runs each) per second: **{ex:.0}**. Consensus candidate×input executions per second: **{cons:.0}** \
(**{r2:.0}×** the fresh-process baseline; target ≥ 10×).\n<!-- calls:end -->\n",
        iso = sandbox.isolation(),
        r1 = c2c / base,
        r2 = cons / base,
        ex = c2c / 2.0,
    );
    common::write_results_section("calls", &section);
    print!("{section}");
}
