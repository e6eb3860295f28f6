//! False-positive rates of the integrity rules (issue: integrity of generated tests and of
//! fixes), on code and tests that are honest by construction:
//!
//! - **test-module rules** (`python::test_module::check`, and the harness's "did any test
//!   make the function run") on BigCodeBench's human test modules with their canonical
//!   solutions: every rejection is a false positive;
//! - **fix-gaming rules** (`python::gaming::check`) with the canonical solution as the
//!   "candidate": against no original at all (every branch counts as new: an upper bound)
//!   and against mutants of it (a bug the candidate honestly fixes: the realistic case);
//! - **constant output**: the canonical solution against its first mutant on inputs outside
//!   the tests, where the rule can apply (≥ 3 probe inputs);
//! - the bundled demo's honest answers, from a demo run (`UNITCODER_DEMO_WORK`).
//!
//! Run: `bash bench/integrity/run.sh` (needs `../shared/benchmarks/bigcodebench.jsonl` and
//! `.venv-bcb`); updates the `integrity` section of bench/RESULTS.md.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde_json::Value;
use unitcoder::python::{gaming, literals, mutants, test_module};
use unitcoder::sandbox::calls::CallOptions;
use unitcoder::sandbox::{Sandbox, SandboxSettings, Status};

const MUTANTS_PER_TASK: usize = 3;
const PROBES: usize = 8;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

fn tally(map: &Mutex<BTreeMap<String, usize>>, key: &str) {
    if let Ok(mut m) = map.lock() {
        *m.entry(key.to_string()).or_default() += 1;
    }
}

fn shown(map: &BTreeMap<String, usize>) -> String {
    if map.is_empty() {
        return "none".into();
    }
    map.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ")
}

fn pct(n: usize, of: usize) -> String {
    format!("{:.2}%", 100.0 * n as f64 / of.max(1) as f64)
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("integrity_rules: run with `cargo bench --bench integrity_rules`");
        return;
    }
    let python = root().join(".venv-bcb/bin/python");
    let file = root().join("../shared/benchmarks/bigcodebench.jsonl");
    if !python.exists() || !file.exists() {
        println!("integrity_rules: needs {} and {}", file.display(), python.display());
        return;
    }
    let text = std::fs::read_to_string(&file).expect("read BigCodeBench");
    let tasks: Vec<(String, String, String)> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| {
            Some((v.get("task_id")?.as_str()?.to_string(), v.get("canonical_solution")?.as_str()?.to_string(), v.get("test")?.as_str()?.to_string()))
        })
        .collect();
    let n = tasks.len();
    let entry = "task_func";

    // 1. Static test-module rules.
    let static_tests = Mutex::new(BTreeMap::new());
    let static_examples = Mutex::new(Vec::new());
    for (id, _, tests) in &tasks {
        if let Err(f) = test_module::check(tests, entry) {
            tally(&static_tests, f.reason);
            static_examples.lock().unwrap().push(format!("{id} ({}: {})", f.reason, f.detail));
        }
    }

    // 3./4. Static gaming rules.
    let (no_original, vs_mutants) = (Mutex::new(BTreeMap::new()), Mutex::new(BTreeMap::new()));
    let gaming_examples = Mutex::new(Vec::new());
    let mut mutant_pairs = 0;
    let mut first_mutants: Vec<Option<String>> = Vec::new();
    for (id, code, tests) in &tasks {
        if let Some(g) = gaming::check("", code, tests, entry) {
            tally(&no_original, g.rule);
            gaming_examples.lock().unwrap().push(format!("{id} ({}: {})", g.rule, g.detail));
        }
        let ms = mutants::generate(code, Some(entry), MUTANTS_PER_TASK, 0).mutants;
        for m in &ms {
            mutant_pairs += 1;
            if let Some(g) = gaming::check(&m.source, code, tests, entry) {
                tally(&vs_mutants, g.rule);
            }
        }
        first_mutants.push(ms.first().map(|m| m.source.clone()));
    }
    let count = |m: &Mutex<BTreeMap<String, usize>>| m.lock().map(|m| m.values().sum::<usize>()).unwrap_or(0);

    // 2. and 5.: in the sandbox (BigCodeBench's Python 3.10 environment).
    let settings = SandboxSettings {
        python: python.display().to_string(),
        workers: 2,
        timeout: 60.0,
        preimport: vec!["numpy".into(), "pandas".into(), "matplotlib".into()],
        ..Default::default()
    };
    let sandbox = Sandbox::start(settings).expect("sandbox");
    let started = std::time::Instant::now();
    let dynamic = Mutex::new(BTreeMap::new());
    let uncalled_tests = Mutex::new((0usize, 0usize)); // (tests that did not call, tests run) in passing checks
    let constant = Mutex::new((0usize, 0usize)); // (fired, applicable)
    let constant_examples = Mutex::new(Vec::new());
    let queue = Mutex::new(tasks.iter().zip(first_mutants).collect::<Vec<_>>());
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| loop {
                let Some(((id, code, tests), mutant)) = queue.lock().ok().and_then(|mut q| q.pop()) else { return };
                let v = sandbox.check_calls(code, tests, Some(entry));
                match (v.status, v.reason.as_deref()) {
                    (Status::Rejected, Some(r)) => tally(&dynamic, &format!("rejected_{r}")),
                    (status, _) => tally(&dynamic, status.as_str()),
                }
                if v.status == Status::Pass {
                    let mut u = uncalled_tests.lock().unwrap();
                    u.0 += v.uncalled_tests.len();
                    u.1 += v.tests_run;
                }
                let (Some(mutant), Some(sig)) = (mutant, literals::signature(code, entry)) else { continue };
                let probes = gaming::probe_inputs(tests, entry, &sig.keyword_names, PROBES);
                if probes.len() < 3 {
                    continue;
                }
                let opts = CallOptions { timeout: 5.0, fresh_child_per_input: false };
                let tokens = |c: &str| sandbox.call(c, entry, &probes, opts).outcomes.iter().map(|o| o.token()).collect::<Vec<_>>();
                let (original, candidate) = (tokens(&mutant), tokens(code));
                let varied = original.iter().filter(|t| t.starts_with("v:")).collect::<std::collections::HashSet<_>>().len() >= 2;
                let values = candidate.iter().filter(|t| t.starts_with("v:")).count();
                let constant_now = values == candidate.len() && candidate.iter().collect::<std::collections::HashSet<_>>().len() == 1;
                let mut c = constant.lock().unwrap();
                c.1 += 1;
                if varied && constant_now {
                    c.0 += 1;
                    constant_examples.lock().unwrap().push(id.clone());
                }
            });
        }
    });
    let sandbox_seconds = started.elapsed().as_secs_f64();
    let dynamic = dynamic.into_inner().unwrap();
    let not_called = dynamic.get("rejected_function_not_called").copied().unwrap_or(0);
    let (uncalled, tests_run) = uncalled_tests.into_inner().unwrap();
    let (fired, applicable) = constant.into_inner().unwrap();

    // Demo (a demo run's manifests).
    let demo = std::env::var("UNITCODER_DEMO_WORK").ok().map(PathBuf::from).and_then(|w| {
        let read = |stage: &str| -> Option<Value> { serde_json::from_str(&std::fs::read_to_string(w.join(stage).join("manifest.json")).ok()?).ok() };
        let (gt, fix, sr) = (read("gen-tests")?, read("fix")?, read("sandbox-run")?);
        let outcomes = |m: &Value| m["counts"]["outcomes"].as_object().cloned().unwrap_or_default();
        let rejected_tests: u64 = outcomes(&gt).iter().filter(|(k, _)| k.starts_with("tests_rejected_")).filter_map(|(_, v)| v.as_u64()).sum();
        let fix_o = outcomes(&fix);
        let gaming: Vec<String> = fix_o
            .iter()
            .filter(|(k, _)| k.starts_with("fix_rejected_") && !k.ends_with("duplicate") && !k.ends_with("signature_changed"))
            .map(|(k, v)| format!("{} {v}", k.trim_start_matches("fix_rejected_")))
            .collect();
        let modules = outcomes(&gt).get("valid_test_modules").and_then(Value::as_u64).unwrap_or(0);
        let not_called = outcomes(&sr).get("rejected_function_not_called").and_then(Value::as_u64).unwrap_or(0);
        Some(format!(
            "Demo (`configs/demo.toml`, offline): {modules} test modules accepted, {rejected_tests} rejected by the test-module rules, \
{not_called} rejected as never calling the function; fix candidates rejected by a gaming rule: {} (the one planted special-casing fix, `percentile_rank`); no overfit candidate.",
            if gaming.is_empty() { "none".to_string() } else { gaming.join(", ") }
        ))
    });

    let static_total = count(&static_tests);
    let section = format!(
        "<!-- integrity:begin -->\n## integrity rules: false positives on honest code and tests\n\n\
`bash bench/integrity/run.sh` (`cargo bench --bench integrity_rules`): BigCodeBench's {n} canonical solutions and human test modules \
(honest by construction: every rejection below is a false positive), Python 3.10 with the pinned libraries; {sandbox_seconds:.0} s in the sandbox on 2 workers.\n\n\
| rule set | cases | rejected | false-positive rate | by rule |\n|---|---:|---:|---:|---|\n\
| test modules, static (`python::test_module`) | {n} | {static_total} | {} | {} |\n\
| test modules, dynamic (no test made `task_func` run) | {n} | {not_called} | {} | verdicts: {} |\n\
| fix gaming, static, vs. no original (upper bound) | {n} | {} | {} | {} |\n\
| fix gaming, static, canonical as the fix of its mutants | {mutant_pairs} | {} | {} | {} |\n\
| constant output, canonical vs. its first mutant (≥ 3 probes) | {applicable} | {fired} | {} | {} |\n\n\
In passing checks, {uncalled} of {tests_run} human tests ({}) did not make `task_func` run themselves (allowed: the module is rejected only when no test does).\n\n\
Static test-module rejections: {}.\n\nGaming rejections with no original: {}.\n\n{}\n<!-- integrity:end -->\n",
        pct(static_total, n),
        shown(&static_tests.lock().unwrap()),
        pct(not_called, n),
        shown(&dynamic),
        count(&no_original),
        pct(count(&no_original), n),
        shown(&no_original.lock().unwrap()),
        count(&vs_mutants),
        pct(count(&vs_mutants), mutant_pairs),
        shown(&vs_mutants.lock().unwrap()),
        pct(fired, applicable),
        if fired > 0 { constant_examples.lock().unwrap().join(", ") } else { String::new() },
        pct(uncalled, tests_run),
        { let v = static_examples.lock().unwrap(); if v.is_empty() { "none".to_string() } else { v.join("; ") } },
        { let v = gaming_examples.lock().unwrap(); if v.is_empty() { "none".to_string() } else { v.join("; ") } },
        demo.unwrap_or_else(|| "Demo: not measured (set UNITCODER_DEMO_WORK to a demo work directory).".into()),
    );
    println!("{section}");
    common::write_results_section("integrity", &section);
}
