//! `unitcoder report`: the page's numbers are `stats --json`'s (the demo, a split run and its
//! rank grid, a stage still running or killed), every chart has marks, the page needs
//! nothing from the network, it renders in a real browser (headless Chromium, when
//! installed), and `export --max-contamination` fails the export while the card and the
//! report state the rates.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::mock_llm::{Faults, MockServer};
use common::{bin, copy_dir, manifest, read_records};
use serde_json::{json, Value};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn stdout(a: &assert_cmd::assert::Assert) -> String {
    String::from_utf8_lossy(&a.get_output().stdout).into_owned()
}

fn stderr(a: &assert_cmd::assert::Assert) -> String {
    String::from_utf8_lossy(&a.get_output().stderr).into_owned()
}

fn stats_json(dir: &Path) -> Value {
    let a = bin().args(["stats", dir.to_str().unwrap(), "--json"]).assert().success();
    serde_json::from_str(&stdout(&a)).unwrap()
}

/// `unitcoder report DIR -o FILE`; the page.
fn report(dir: &Path, out: &Path) -> String {
    let a = bin().args(["report", dir.to_str().unwrap(), "-o", out.to_str().unwrap()]).assert().success();
    assert_eq!(stdout(&a).trim(), out.display().to_string(), "report prints the path it wrote");
    std::fs::read_to_string(out).unwrap()
}

// ---- reading the page back -------------------------------------------------------------

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&#39;", "'").replace("&amp;", "&")
}

/// The markup of section `id`.
fn section<'a>(html: &'a str, id: &str) -> &'a str {
    let start = html.find(&format!("<section id=\"{id}\">")).unwrap_or_else(|| panic!("no section {id}"));
    let end = html[start..].find("</section>").unwrap() + start;
    &html[start..end]
}

/// Every table in `html`: its body rows as cell texts.
fn tables(html: &str) -> Vec<Vec<Vec<String>>> {
    html.split("<table>")
        .skip(1)
        .map(|t| {
            let body = t.split("</table>").next().unwrap().split("<tbody>").nth(1).unwrap_or("");
            body.split("<tr>").skip(1).map(|row| row.split("<td>").skip(1).map(|c| unescape(c.split("</td>").next().unwrap())).collect()).collect()
        })
        .collect()
}

/// The charts in `html`: name and markup.
fn charts(html: &str) -> Vec<(String, String)> {
    html.split("<svg class=\"chart\" data-chart=\"")
        .skip(1)
        .map(|s| {
            let name = s.split('"').next().unwrap().to_string();
            (name, s.split("</svg>").next().unwrap().to_string())
        })
        .collect()
}

fn attr(element: &str, name: &str) -> f64 {
    element.split(&format!(" {name}=\"")).nth(1).and_then(|v| v.split('"').next()).and_then(|v| v.parse().ok()).unwrap_or(0.0)
}

/// Marks with a size: bars and cells wider and taller than nothing, and points.
fn visible_marks(svg: &str) -> usize {
    let rects = svg
        .split("<rect ")
        .skip(1)
        .map(|r| r.split('>').next().unwrap())
        .filter(|r| (r.contains("class=\"bar") || r.contains("class=\"cell")) && attr(r, "width") > 0.0 && attr(r, "height") > 0.0)
        .count();
    rects + svg.matches("<circle class=\"point\"").count()
}

fn pct(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

fn pairs(v: &Value) -> Vec<(String, u64)> {
    v.as_array().into_iter().flatten().map(|p| (p[0].as_str().unwrap().to_string(), p[1].as_u64().unwrap())).collect()
}

fn reasons(v: &Value) -> String {
    pairs(v).iter().map(|(k, n)| format!("{k} {n}")).collect::<Vec<_>>().join(", ")
}

/// Every chart has marks; the page loads nothing and runs nothing.
fn check_structure(html: &str) {
    assert!(html.starts_with("<!DOCTYPE html>"));
    for bad in ["<script", "<link", "<img", "<iframe", "@import", "url(", "src=", "http://", "https://"] {
        assert!(!html.contains(bad), "the page must be self-contained: {bad}");
    }
    let charts = charts(html);
    assert!(!charts.is_empty());
    for (name, svg) in &charts {
        assert!(visible_marks(svg) > 0, "chart {name} has no visible mark: {svg}");
        // Every mark's numbers on hover.
        assert_eq!(svg.matches("<g><title>").count(), svg.matches("</g>").count(), "{name}");
    }
}

/// The page's tables say what `stats --json` says.
fn check_against_stats(html: &str, stats: &Value, top: usize) {
    // 1. Funnel.
    let rows = &tables(section(html, "funnel"))[0];
    let steps = stats["funnel"].as_array().unwrap();
    assert_eq!(rows.len(), steps.len());
    for (row, step) in rows.iter().zip(steps) {
        assert_eq!(row[0], step["step"].as_str().unwrap());
        assert_eq!(row[1], step["records"].to_string());
        assert_eq!(row[3], reasons(&step["dropped"]), "{}", row[0]);
    }
    // 2. Pass rate by round and fix outcomes.
    if let Some(rounds) = stats["pass_rate_by_round"].as_array().filter(|r| !r.is_empty()) {
        let t = tables(section(html, "fix"));
        let shown: Vec<(String, String)> = t[0].iter().map(|r| (r[0].clone(), r[1].clone())).collect();
        let expected: Vec<(String, String)> = rounds.iter().map(|p| (p[0].as_str().unwrap().to_string(), pct(p[1].as_f64().unwrap()))).collect();
        assert_eq!(shown, expected);
        if let Some(fix) = stats["fix"].as_object() {
            let outcomes: std::collections::BTreeMap<String, String> = t[1].iter().map(|r| (r[0].clone(), r[1].clone())).collect();
            for (round, n) in pairs(&fix["fixed_by_round"]) {
                assert_eq!(outcomes[&format!("fixed in {round}")], n.to_string());
            }
            assert_eq!(outcomes["unfixed"], fix["unfixed"].to_string());
            assert_eq!(outcomes["overfit candidates"], fix["overfit_candidates"].to_string());
            for (why, n) in pairs(&fix["rejected_candidates"]) {
                assert_eq!(outcomes[&format!("candidate rejected: {why}")], n.to_string());
            }
        }
    }
    // 3. Packages: usage groups and the top list (when rows were exported).
    let packages = pairs(&stats["packages"]);
    if packages.is_empty() {
        assert!(!html.contains("<section id=\"packages\">"));
    } else {
        check_packages(html, stats, &packages, top);
    }
    check_rest(html, stats);
}

fn check_packages(html: &str, stats: &Value, packages: &[(String, u64)], top: usize) {
    let t = tables(section(html, "packages"));
    for (row, g) in t[0].iter().zip(stats["package_groups"].as_array().unwrap()) {
        assert_eq!(row[0], g["usage"].as_str().unwrap());
        assert_eq!(row[1], g["packages"].to_string());
        assert_eq!(row[2], pct(g["share_of_packages"].as_f64().unwrap()));
        assert_eq!(row[3], g["rows"].to_string());
    }
    let shown: Vec<(String, String)> = t[1].iter().take(top).map(|r| (r[0].clone(), r[1].clone())).collect();
    let expected: Vec<(String, String)> = packages.iter().take(top).map(|(p, n)| (p.clone(), n.to_string())).collect();
    assert_eq!(shown, expected);
}

fn check_rest(html: &str, stats: &Value) {
    // 4. Test strength.
    if let Some(a) = stats["adequacy"].as_object() {
        let t = tables(section(html, "adequacy"));
        for (table, key) in t.iter().zip(["coverage", "mutation"]) {
            let shown: Vec<(String, String)> = table.iter().map(|r| (r[0].clone(), r[1].clone())).collect();
            let expected: Vec<(String, String)> = pairs(&a[key]).into_iter().map(|(b, n)| (b, n.to_string())).collect();
            assert_eq!(shown, expected, "{key}");
        }
    }
    // 5. Errors by stage and kind.
    let stages = stats["stages"].as_array().unwrap();
    let expected: Vec<Vec<String>> = stages
        .iter()
        .flat_map(|s| {
            s["errors_by_kind"]
                .as_object()
                .unwrap()
                .iter()
                .map(move |(k, n)| vec![s["stage"].as_str().unwrap().to_string(), k.clone(), n.to_string()])
        })
        .collect();
    let errors = section(html, "errors");
    assert_eq!(tables(errors).first().cloned().unwrap_or_default(), expected);
    let retryable: u64 = stages.iter().map(|s| s["retryable"].as_u64().unwrap()).sum();
    assert!(errors.contains(&format!("would redo the {retryable} transient ones")), "{errors}");
    // 6. LLM and sandbox use.
    let cost = tables(section(html, "cost"));
    let llm: Vec<Vec<String>> = stages
        .iter()
        .flat_map(|s| {
            s["llm"].as_object().unwrap().iter().map(move |(agent, a)| {
                vec![
                    s["stage"].as_str().unwrap().to_string(),
                    agent.clone(),
                    a["requests"].to_string(),
                    a["cache_hits"].to_string(),
                    a["retries"].to_string(),
                    a["prompt_tokens"].to_string(),
                    a["completion_tokens"].to_string(),
                ]
            })
        })
        .collect();
    let sandbox: Vec<Vec<String>> = stages
        .iter()
        .filter(|s| s["sandbox_jobs"].as_u64().unwrap() > 0)
        .map(|s| vec![s["stage"].as_str().unwrap().to_string(), s["sandbox_jobs"].to_string()])
        .collect();
    let mut cost = cost.into_iter();
    if !llm.is_empty() {
        let shown: Vec<Vec<String>> = cost.next().unwrap().into_iter().map(|r| r[..7].to_vec()).collect();
        assert_eq!(shown, llm);
    }
    if !sandbox.is_empty() {
        let shown: Vec<Vec<String>> = cost.next().unwrap().into_iter().map(|r| r[..2].to_vec()).collect();
        assert_eq!(shown, sandbox);
    }
    // 7. Decontamination.
    if let Some(d) = stats["decontamination"].as_object() {
        let t = tables(section(html, "decontamination"));
        let benchmarks = d["benchmarks"].as_array().unwrap();
        if !benchmarks.is_empty() {
            let expected: Vec<Vec<String>> = benchmarks
                .iter()
                .map(|b| vec![b["benchmark"].as_str().unwrap().to_string(), b["records"].to_string(), pct(b["rate"].as_f64().unwrap())])
                .collect();
            assert_eq!(t[0], expected);
        }
        let duplicates = t.last().unwrap();
        assert_eq!(duplicates[0][1], d["exact_duplicates"].to_string());
        assert_eq!(duplicates[1][1], d["near_duplicates"].to_string());
    }
    // 9. Ranks.
    if let Some(status) = stats["ranks"].as_object() {
        let rows = &tables(section(html, "ranks"))[0];
        let ranks = status["ranks"].as_array().unwrap();
        assert_eq!(rows.len(), ranks.len());
        for (row, rank) in rows.iter().zip(ranks) {
            assert_eq!(row[0], rank["rank"].to_string());
            assert!(row.last().unwrap().starts_with(rank["state"].as_str().unwrap()), "{row:?} vs {rank}");
        }
    }
}

// ---- the demo ---------------------------------------------------------------------------

#[test]
fn the_demo_report_says_what_stats_says_and_renders_in_a_browser() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let run =
        bin().current_dir(repo()).args(["run", "--config", "configs/demo.toml", "--offline", "--work-dir", w.to_str().unwrap()]).assert().success();
    // The run ends by writing its report and saying where.
    let written = w.join("report.html");
    assert!(stdout(&run).contains(&format!("report: {}", written.display())), "{}", stdout(&run));
    let html = std::fs::read_to_string(&written).unwrap();
    let stats = stats_json(w);
    check_structure(&html);
    check_against_stats(&html, &stats, 15);
    // The same page from the command (only the time it was made differs).
    let again = report(w, &w.join("again.html"));
    let without_time = |h: &str| h.split("generated ").map(|p| p.split_once(' ').map(|x| x.1).unwrap_or(p).to_string()).collect::<String>();
    assert_eq!(without_time(&again), without_time(&html));

    // What the demo is documented to show, read off the page (not only equal to stats).
    let funnel = &tables(section(&html, "funnel"))[0];
    let step = |name: &str| funnel.iter().find(|r| r[0] == name).map(|r| r[1].clone()).unwrap_or_else(|| panic!("no step {name}"));
    for (name, n) in [("documents", "6"), ("candidates", "29"), ("extracted", "18"), ("with tests", "16"), ("pass as extracted", "12")] {
        assert_eq!(step(name), n, "{name}");
    }
    for (name, n) in [("pass after fix round 1", "14"), ("pass after fix round 2", "15"), ("refined", "13"), ("exported", "13")] {
        assert_eq!(step(name), n, "{name}");
    }
    let fix = section(&html, "fix");
    for rate in ["75.0%", "87.5%", "93.8%"] {
        assert!(fix.contains(rate), "{rate}");
    }
    assert!(tables(fix)[1].contains(&vec!["candidate rejected: hardcoded_test_values".to_string(), "1".into()]));
    assert!(tables(section(&html, "errors"))[0].contains(&vec!["gen-tests".to_string(), "missing_package".into(), "2".into()]));
    let top = &tables(section(&html, "packages"))[1];
    assert_eq!(top[0][..2], ["numpy".to_string(), "4".into()]);
    let decontamination = section(&html, "decontamination");
    assert!(decontamination.contains("No record overlaps a benchmark (13 compared; no gate"), "{decontamination}");
    let cost = section(&html, "cost");
    assert!(cost.contains("data-chart=\"sandbox\"") && cost.contains("sandbox-run"), "every sandbox stage's time: {cost}");
    // Sections for stages that did not run are absent; the adequacy section is there.
    for absent in ["case2code", "consensus", "ranks"] {
        assert!(!html.contains(&format!("<section id=\"{absent}\">")), "{absent}");
    }
    assert!(charts(&html).iter().any(|(n, _)| n == "mutation"));
    in_a_browser(&written);
}

/// The demo with export gates: the histograms mark them.
#[test]
fn adequacy_gates_are_marked_on_the_histograms() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    bin()
        .current_dir(repo())
        .args([
            "run",
            "--config",
            "configs/demo.toml",
            "--offline",
            "--work-dir",
            w.to_str().unwrap(),
            "--min-mutation-score",
            "0.6",
            "--min-line-coverage",
            "0.8",
        ])
        .assert()
        .success();
    let html = std::fs::read_to_string(w.join("report.html")).unwrap();
    check_against_stats(&html, &stats_json(w), 15);
    let (_, mutation) = charts(&html).into_iter().find(|(n, _)| n == "mutation").unwrap();
    assert!(mutation.contains("class=\"marker\"") && mutation.contains("export gate 60.0%"), "{mutation}");
    let (_, coverage) = charts(&html).into_iter().find(|(n, _)| n == "coverage").unwrap();
    assert!(coverage.contains("export gate 80.0%"), "{coverage}");
}

// ---- a split run --------------------------------------------------------------------------

#[test]
fn a_split_run_reports_the_merged_funnel_and_each_rank() {
    let tmp = tempfile::tempdir().unwrap();
    let corpus = repo().join("fixtures/demo/corpus");
    let split = tmp.path().join("split");
    let run = |extra: &[&str]| {
        let mut cmd = bin();
        cmd.current_dir(repo()).env_remove("UNITCODER_RANK").env_remove("UNITCODER_WORLD_SIZE");
        cmd.args(["run", "--config", "configs/demo.toml", "--offline", "-i", corpus.to_str().unwrap(), "--work-dir", split.to_str().unwrap()]);
        cmd.args(extra).assert().success()
    };
    for r in ["0", "1"] {
        run(&["--rank", r, "--world-size", "2", "--stop-after", "extract"]);
    }
    for r in ["0", "1"] {
        let a = run(&["--rank", r, "--world-size", "2"]);
        assert!(!stdout(&a).contains("report:"), "a rank writes no report of its own");
    }
    // The merge writes the report of the whole directory.
    let a = run(&["--only-export"]);
    assert!(stdout(&a).contains("report: "), "{}", stdout(&a));
    let html = std::fs::read_to_string(split.join("report.html")).unwrap();
    let stats = stats_json(&split);
    check_structure(&html);
    check_against_stats(&html, &stats, 15);
    // Ranks added up: the same funnel end as one process on the same corpus.
    let funnel = &tables(section(&html, "funnel"))[0];
    let step = |name: &str| funnel.iter().find(|r| r[0] == name).map(|r| r[1].clone()).unwrap();
    assert_eq!(step("extracted"), "18");
    assert_eq!(step("after global dedup"), "18");
    assert_eq!(step("exported"), "13");
    assert_eq!(read_records(&split.join("export"), "data").len(), 13);
    let ranks = section(&html, "ranks");
    assert!(ranks.contains("World size 2: 2 of 2 ranks done"), "{ranks}");
    let grid = charts(ranks).into_iter().next().unwrap().1;
    assert!(grid.matches("class=\"cell ok\"").count() >= 2 * 5, "every stage of both ranks done: {grid}");

    // A rank whose refine output is gone: missing in the grid, as `status` says.
    let broken = tmp.path().join("broken");
    copy_dir(&split, &broken);
    std::fs::remove_dir_all(broken.join("refine/rank-00001-of-00002")).unwrap();
    let html = report(&broken, &tmp.path().join("broken.html"));
    check_against_stats(&html, &stats_json(&broken), 15);
    let status: Value = serde_json::from_str(&stdout(&bin().args(["status", broken.to_str().unwrap(), "--json"]).assert().code(7))).unwrap();
    let rows = &tables(section(&html, "ranks"))[0];
    let refine_column = status["stages"].as_array().unwrap().iter().position(|s| s == "refine").unwrap() + 1;
    assert_eq!(rows[1][refine_column], "missing", "{rows:?}");
    assert_eq!(rows[0][refine_column].split(' ').next(), Some("done"));
    assert!(section(&html, "ranks").contains("1 of 2 ranks done"));
}

// ---- a stage being written ----------------------------------------------------------------

fn functions(dir: &Path, n: usize) -> PathBuf {
    let path = dir.join("functions.jsonl");
    let lines: Vec<String> = (0..n)
        .map(|i| json!({"id": format!("r{i}"), "entry_point": format!("f{i}"), "code": format!("import os\n\n\ndef f{i}(a):\n    return os.sep + a\n"), "packages": ["os"]}).to_string())
        .collect();
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

/// gen-tests on `n` functions against a server that takes 1.2 s an answer.
fn slow_gen_tests(server: &MockServer, input: &Path, out: &Path) -> std::process::Child {
    std::process::Command::new(assert_cmd::cargo::cargo_bin("unitcoder"))
        .args(["gen-tests", "-i", input.to_str().unwrap(), "-o", out.to_str().unwrap(), "--no-import-check", "--no-call-check", "--concurrency", "1"])
        .args(["--base-url", &server.base_url, "--model", "mock-model"])
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// The gen-tests row of `stats --json` once `ready` says so.
fn wait_for(out: &Path, ready: impl Fn(&Value) -> bool) -> Value {
    let started = Instant::now();
    loop {
        // Nothing to read until the stage has made its directory.
        let a = bin().args(["stats", out.to_str().unwrap(), "--json"]).assert();
        let stats: Value = serde_json::from_str(&stdout(&a)).unwrap_or(Value::Null);
        if let Some(s) = stats["stages"].as_array().and_then(|s| s.iter().find(|s| s["stage"] == "gen-tests")) {
            if ready(s) {
                return s.clone();
            }
        }
        assert!(started.elapsed() < Duration::from_secs(30), "no progress: {stats}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_report_made_while_a_stage_runs_shows_the_counts_so_far_and_a_killed_run_reads_as_stopped() {
    let server = MockServer::start(Faults { latency_ms: 1200, ..Default::default() });
    let dir = tempfile::tempdir().unwrap();
    let input = functions(dir.path(), 8);

    // While it runs.
    let out = dir.path().join("tests");
    let mut child = slow_gen_tests(&server, &input, &out);
    // Records are written in input order, so the count of records may wait on the first
    // one; the model's answers so far show at once.
    let row = wait_for(&out, |s| s["llm_requests"].as_u64().unwrap_or(0) >= 2 && s["records"].as_u64().unwrap_or(0) < 8);
    assert_eq!(row["running"], true, "{row}");
    assert!(!row["complete"].as_bool().unwrap());
    let text = bin().args(["stats", out.to_str().unwrap()]).assert().success();
    assert!(stdout(&text).contains("gen-tests~") && stdout(&text).contains("(~ running: the counts so far)"), "{}", stdout(&text));
    let html = report(&out, &dir.path().join("running.html"));
    check_structure(&html);
    assert!(html.contains("In progress: gen-tests (as of "), "{html}");
    assert!(!html.contains("Stopped before the end"));
    let so_far = &tables(section(&html, "funnel"))[0];
    let with_tests: u64 = so_far.iter().find(|r| r[0] == "with tests").unwrap()[1].parse().unwrap();
    assert!(with_tests < 8, "{so_far:?}");
    let llm = &tables(section(&html, "cost"))[0][0];
    let requests: u64 = llm[2].parse().unwrap();
    assert!((2..8).contains(&requests), "the requests so far: {llm:?}");
    assert!(child.wait().unwrap().success());
    // Finished: the manifest's numbers, nothing in progress.
    let stats = stats_json(&out);
    let row = &stats["stages"][0];
    assert_eq!((row["running"].as_bool(), row["complete"].as_bool(), row["records"].as_u64()), (Some(false), Some(true), Some(8)), "{row}");
    let html = report(&out, &dir.path().join("done.html"));
    check_against_stats(&html, &stats, 15);
    assert!(!html.contains("In progress") && !html.contains("Stopped before the end"));
    assert!(!out.join(".snapshot.json").exists(), "the manifest replaces the snapshot");

    // Killed with SIGKILL: the snapshot stays, but its writer is gone.
    let killed = dir.path().join("killed");
    let mut child = slow_gen_tests(&server, &input, &killed);
    wait_for(&killed, |s| s["llm_requests"].as_u64().unwrap_or(0) >= 2);
    child.kill().unwrap();
    child.wait().unwrap();
    let stats = stats_json(&killed);
    let row = &stats["stages"][0];
    assert_eq!((row["running"].as_bool(), row["complete"].as_bool()), (Some(false), Some(false)), "{row}");
    let html = report(&killed, &dir.path().join("killed.html"));
    assert!(html.contains("Stopped before the end: gen-tests") && !html.contains("In progress"), "{html}");
}

// ---- the contamination gate ---------------------------------------------------------------

#[test]
fn max_contamination_fails_the_export_and_the_card_and_report_state_the_rates() {
    let dir = tempfile::tempdir().unwrap();
    // BigCodeBench/3's reference solution among three verified records: 1 of 3 overlaps.
    let planted = "import random\nimport numpy as np\n\ndef task_func(LETTERS):\n    \"\"\"Means of random lists.\"\"\"\n    random_dict = {k: [random.randint(0, 100) for _ in range(random.randint(1, 5))] for k in LETTERS}\n    mean_dict = {k: np.mean(v) for k, v in random_dict.items()}\n    return mean_dict\n";
    let own = |name: &str, body: &str| {
        format!("import numpy as np\n\ndef {name}(values):\n    \"\"\"{name}.\"\"\"\n    arr = np.asarray(values, dtype=float)\n    {body}\n")
    };
    let rec = |id: &str, ep: &str, code: &str| {
        json!({"id": id, "entry_point": ep, "code": code, "packages": ["numpy"], "verdict": {"status": "pass"}}).to_string()
    };
    let input = dir.path().join("in.jsonl");
    let records = [
        rec("a", "task_func", planted),
        rec("b", "spread", &own("spread", "return float(arr.max() - arr.min())")),
        rec("c", "middle", &own("middle", "return float(np.median(arr))")),
    ];
    std::fs::write(&input, records.join("\n") + "\n").unwrap();
    let export = |out: &Path, extra: &[&str]| {
        bin().args(["-i", input.to_str().unwrap(), "-o", out.to_str().unwrap(), "--plain", "export"]).args(extra).assert()
    };

    // At 30% the gate fails: exit 8, the benchmark and its rate named.
    let out = dir.path().join("gated");
    let a = export(&out, &["--max-contamination", "0.3"]).code(8);
    assert!(stderr(&a).contains("bigcodebench 33.3% (1 of 3 records)") && stderr(&a).contains("--max-contamination 30.0%"), "{}", stderr(&a));
    let card = std::fs::read_to_string(out.join("README.md")).unwrap();
    assert!(card.contains("| bigcodebench | 1 | 33.33% |") && card.contains("**FAILED** for bigcodebench"), "{card}");
    assert!(card.contains("| humaneval | 0 | 0.00% |"), "every benchmark compared is listed: {card}");
    let m = manifest(&out);
    assert_eq!(m["complete"], false, "a failed gate is not a finished export");
    assert_eq!(m["counts"]["contamination_gate_failed"], json!(["bigcodebench"]));
    // Not "up to date" on a rerun: it fails again.
    export(&out, &["--max-contamination", "0.3"]).code(8);
    let stats = stats_json(&out);
    assert_eq!(stats["decontamination"]["gate_failed"], json!(["bigcodebench"]));
    assert_eq!(stats["decontamination"]["checked"], 3);
    let html = report(&out, &dir.path().join("gated.html"));
    check_structure(&html);
    check_against_stats(&html, &stats, 15);
    assert!(html.contains("The export failed its contamination gate (bigcodebench)"), "{html}");
    assert!(section(&html, "decontamination").contains("FAILED for bigcodebench"));
    assert!(!html.contains("Stopped before the end"), "a failed gate is said as such");

    // A rate outside 0–1 is refused before anything is written.
    let a = export(&dir.path().join("bad-rate"), &["--max-contamination", "30"]).failure();
    assert!(stderr(&a).contains("max_contamination must be between 0 and 1, not 30"), "{}", stderr(&a));
    // The same gate from the config file.
    let cfg = dir.path().join("gate.toml");
    std::fs::write(&cfg, "[export]\nmax_contamination = 0.3\n").unwrap();
    export(&dir.path().join("from-config"), &["--config", cfg.to_str().unwrap()]).code(8);

    // At 50% it passes; the card states the rate all the same.
    let out = dir.path().join("passed");
    export(&out, &["--max-contamination", "0.5"]).success();
    let card = std::fs::read_to_string(out.join("README.md")).unwrap();
    assert!(card.contains("| bigcodebench | 1 | 33.33% |") && card.contains(": passed."), "{card}");
    assert_eq!(manifest(&out)["complete"], true);
    assert_eq!(read_records(&out, "data").len(), 2);
    // No gate: rates stated, nothing fails.
    let out = dir.path().join("no-gate");
    export(&out, &[]).success();
    assert!(std::fs::read_to_string(out.join("README.md")).unwrap().contains("No gate was set"));
}

// ---- a real browser -----------------------------------------------------------------------

/// Headless Chromium, if installed (`UNITCODER_CHROMIUM` names another binary). The test
/// command installs it as root and sets `UNITCODER_REQUIRE_BROWSER`, so there this check
/// cannot be skipped.
fn chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("UNITCODER_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .flat_map(|name| std::env::split_paths(&path).map(move |d| d.join(name)))
        .find(|p| p.is_file())
}

/// What the browser sees, measured by a script added to a copy of the page (the page
/// itself has none): each chart's size, its marks with a size, text outside its box, the
/// resources the page loaded and whether it is wider than the window.
const PROBE: &str = r#"<script>
(function () {
  const out = {title: document.title, sections: [], charts: [], resources: performance.getEntriesByType('resource').map(e => e.name),
               too_wide: document.documentElement.scrollWidth > window.innerWidth};
  for (const s of document.querySelectorAll('section')) out.sections.push(s.id);
  for (const svg of document.querySelectorAll('svg.chart')) {
    const box = svg.getBoundingClientRect(), vb = svg.viewBox.baseVal;
    let marks = 0; const outside = [];
    for (const m of svg.querySelectorAll('rect.bar, rect.cell, circle.point')) {
      const b = m.getBoundingClientRect();
      if (b.width > 0.5 && b.height > 0.5) marks++;
    }
    for (const t of svg.querySelectorAll('text')) {
      const b = t.getBBox();
      if (b.x < -1 || b.y < -1 || b.x + b.width > vb.width + 1 || b.y + b.height > vb.height + 1) outside.push(t.textContent);
    }
    out.charts.push({name: svg.dataset.chart, width: box.width, height: box.height, marks: marks, outside: outside});
  }
  const pre = document.createElement('pre'); pre.id = 'probe'; pre.textContent = JSON.stringify(out); document.body.appendChild(pre);
})();
</script>"#;

fn in_a_browser(page: &Path) {
    let Some(chromium) = chromium() else {
        assert!(std::env::var_os("UNITCODER_REQUIRE_BROWSER").is_none(), "UNITCODER_REQUIRE_BROWSER is set but no Chromium was found");
        eprintln!("SKIPPED: the browser check (no chromium installed; the structural checks ran)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let html = std::fs::read_to_string(page).unwrap();
    let probe = dir.path().join("probe.html");
    std::fs::write(&probe, html.replace("</body>", &format!("{PROBE}</body>"))).unwrap();
    let browser = |extra: &[String], target: &Path| {
        let out = std::process::Command::new(&chromium)
            .args(["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run", "--window-size=1000,1400"])
            .arg(format!("--user-data-dir={}", dir.path().join("profile").display()))
            .args(extra)
            .arg(format!("file://{}", target.display()))
            .output()
            .unwrap();
        assert!(out.status.success(), "chromium failed: {}", String::from_utf8_lossy(&out.stderr));
        out
    };
    let dom = String::from_utf8(browser(&["--dump-dom".into()], &probe).stdout).unwrap();
    let measured =
        dom.split("<pre id=\"probe\">").nth(1).and_then(|s| s.split("</pre>").next()).unwrap_or_else(|| panic!("the probe did not run: {dom}"));
    let measured: Value = serde_json::from_str(&unescape(measured)).unwrap();
    assert!(measured["title"].as_str().unwrap().starts_with("unitcoder report"), "{measured}");
    assert_eq!(measured["resources"], json!([]), "the page loads nothing");
    assert_eq!(measured["too_wide"], false, "the page fits a 1000 px window: {measured}");
    let expected_charts = charts(&html).len();
    let seen = measured["charts"].as_array().unwrap();
    assert_eq!(seen.len(), expected_charts, "the browser sees every chart");
    for c in seen {
        assert!(c["width"].as_f64().unwrap() > 100.0 && c["height"].as_f64().unwrap() > 20.0, "{c}");
        assert!(c["marks"].as_u64().unwrap() > 0, "a chart without visible marks: {c}");
        assert_eq!(c["outside"], json!([]), "text outside its chart: {c}");
    }
    assert!(measured["sections"].as_array().unwrap().len() >= 7, "{measured}");
    // And as a picture: a PNG of the window's size.
    let shot = dir.path().join("shot.png");
    browser(&[format!("--screenshot={}", shot.display())], page);
    let png = std::fs::read(&shot).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let (width, height) = (u32::from_be_bytes(png[16..20].try_into().unwrap()), u32::from_be_bytes(png[20..24].try_into().unwrap()));
    assert_eq!((width, height), (1000, 1400));
    assert!(png.len() > 30_000, "a blank page compresses to almost nothing: {} bytes", png.len());
}
