//! Integration tests: `unitcoder extract` run as a binary on the fixtures.

mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Command, Stdio};

use common::{bin, fixtures, manifest, python, read_records, shard_files};
use serde_json::Value;

fn extract(args: &[&str]) -> (tempfile::TempDir, assert_cmd::assert::Assert) {
    let out = tempfile::tempdir().expect("tempdir");
    let assert = bin().args(args).arg("-o").arg(out.path()).arg("extract").assert();
    (out, assert)
}

fn names(records: &[Value]) -> Vec<String> {
    records.iter().map(|r| r["entry_point"].as_str().unwrap_or("").to_string()).collect()
}

fn ids(records: &[Value]) -> BTreeSet<String> {
    records.iter().map(|r| r["id"].as_str().unwrap_or("").to_string()).collect()
}

#[test]
fn py_tree_keeps_the_expected_functions_with_reasons_counted() {
    let tree = fixtures().join("extract/py");
    let (out, assert) = extract(&["-i", tree.to_str().unwrap()]);
    assert.success();
    let records = read_records(out.path(), "shard");
    assert_eq!(
        names(&records),
        [
            "cached_square",
            "delayed",
            "file_digest",
            "pairs",
            "word_frequencies",
            "strip_punctuation",
            "group_by_initial",
            "build_url",
            "make_session",
            "cache_path"
        ]
    );
    let m = manifest(out.path());
    // count_rows uses pandas only in its annotations: not D_pkg (issue 19).
    assert_eq!(m["counts"]["kept"], 10);
    assert_eq!(m["counts"]["candidates"], 25);
    let dropped = &m["counts"]["dropped"];
    for (reason, n) in [
        ("duplicate", 1),
        ("nested_definition", 1),
        ("newer_syntax", 1),
        ("no_package", 4),
        ("no_return_value", 1),
        ("package_not_allowed", 1),
        ("relative_import", 1),
        ("too_short", 1),
        ("unresolved_name", 4),
    ] {
        assert_eq!(dropped[reason], n, "dropped[{reason}]");
    }
    let bad = &m["counts"]["bad_input"];
    for reason in ["empty_file", "not_utf8", "python2", "syntax_error"] {
        assert_eq!(bad[reason], 1, "bad_input[{reason}]");
    }

    // Provenance and the verbatim function text.
    let digest = records.iter().find(|r| r["entry_point"] == "file_digest").expect("file_digest");
    assert_eq!(digest["source"]["id"], "dupes_a.py");
    assert_eq!(digest["source"]["start_line"], 4);
    assert_eq!(digest["source"]["end_line"], 9);
    let cached = records.iter().find(|r| r["entry_point"] == "cached_square").expect("cached_square");
    assert!(cached["function"].as_str().unwrap().starts_with("@functools.lru_cache(maxsize=128)\ndef cached_square(n):\n    # slow on purpose\n"));
    assert_eq!(cached["code"].as_str().unwrap(), format!("import functools\nimport time\n\n\n{}", cached["function"].as_str().unwrap()));
}

#[test]
fn rejects_dir_has_every_drop_with_file_and_reason() {
    let tree = fixtures().join("extract/py");
    let rejects = tempfile::tempdir().expect("tempdir");
    let (_out, assert) = extract(&["-i", tree.to_str().unwrap(), "--plain"]);
    assert.success();
    let out = tempfile::tempdir().expect("tempdir");
    bin().args(["-i", tree.to_str().unwrap(), "-o", out.path().to_str().unwrap(), "extract", "--rejects"]).arg(rejects.path()).assert().success();
    let rows = read_records(rejects.path(), "rejects");
    assert_eq!(rows.len(), 15 + 4);
    let syntax = rows.iter().find(|r| r["reason"] == "syntax_error").expect("syntax error row");
    assert!(syntax["file"].as_str().unwrap().ends_with("broken.py"));
    assert!(syntax["detail"].as_str().unwrap().starts_with("line 5:"));
    let torch = rows.iter().find(|r| r["reason"] == "package_not_allowed").expect("allow-list row");
    assert_eq!(torch["entry_point"], "to_tensor");
    assert_eq!(torch["detail"], "torch");
    assert!(torch["function"].as_str().unwrap().contains("torch.tensor"));
}

#[test]
fn every_input_format_gives_the_same_functions() {
    let f = fixtures().join("extract");
    let (tree_out, a) = extract(&["-i", f.join("py").to_str().unwrap()]);
    a.success();
    let expected = ids(&read_records(tree_out.path(), "shard"));
    assert_eq!(expected.len(), 10);
    for file in ["corpus.jsonl", "corpus.jsonl.gz", "corpus.jsonl.zst"] {
        let (out, a) = extract(&["-i", f.join(file).to_str().unwrap()]);
        a.success();
        let records = read_records(out.path(), "shard");
        assert_eq!(ids(&records), expected, "{file}");
        let r = records.iter().find(|r| r["entry_point"] == "build_url").expect("build_url");
        assert_eq!(r["source"]["id"], "web/client.py");
        assert_eq!(r["source"]["path"], "fixture-repo/web/client.py");
    }
    // Parquet in The Stack's layout, with configurable column names.
    let (out, a) = extract(&["-i", f.join("corpus.parquet").to_str().unwrap(), "--id-field", "hexsha", "--path-field", "max_stars_repo_path"]);
    a.success();
    let records = read_records(out.path(), "shard");
    assert_eq!(ids(&records), expected, "parquet");
    let r = records.iter().find(|r| r["entry_point"] == "build_url").expect("build_url");
    assert_eq!(r["source"]["id"], "web/client.py");
    assert_eq!(r["source"]["path"], "fixture-repo/web/client.py");
    // A glob picks up the three JSONL variants: every function of the 2nd and 3rd is a
    // duplicate (10 kept + the in-corpus duplicate each), plus the 1st's own duplicate.
    let (out, a) = extract(&["-i", f.join("corpus.jsonl*").to_str().unwrap()]);
    a.success();
    assert_eq!(ids(&read_records(out.path(), "shard")), expected);
    assert_eq!(manifest(out.path())["counts"]["dropped"]["duplicate"], 1 + 2 * 11);
}

#[test]
fn every_kept_record_compiles_with_cpython() {
    let f = fixtures().join("extract");
    let out = tempfile::tempdir().expect("tempdir");
    // Lenient settings to get as many shapes as possible through.
    bin()
        .args(["-i", f.join("py").to_str().unwrap(), "-i", f.join("bad.jsonl").to_str().unwrap()])
        .args(["-o", out.path().to_str().unwrap(), "extract", "--include-constants", "--allow-nested-defs"])
        .args(["--allow-inner-imports", "--allow-no-package", "--min-lines", "1", "--no-dedup"])
        .assert()
        .success();
    let records = read_records(out.path(), "shard");
    assert!(records.len() >= 20, "only {} records", records.len());
    let codes: Vec<&str> = records.iter().map(|r| r["code"].as_str().unwrap()).collect();
    let script = "import sys, json\nbad = 0\nfor i, code in enumerate(json.load(sys.stdin)):\n    try:\n        compile(code, f'<record {i}>', 'exec')\n    except SyntaxError as e:\n        bad += 1\n        print(i, e)\nprint('compiled', bad)\n";
    let mut child = Command::new(python())
        .args(["-I", "-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 must be installed for this test");
    child.stdin.take().unwrap().write_all(serde_json::to_string(&codes).unwrap().as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert_eq!(stdout.trim(), "compiled 0", "records that do not compile:\n{stdout}");
    // The constants option pulled the module constant in.
    let summarize = records.iter().find(|r| r["entry_point"] == "summarize").expect("summarize");
    assert_eq!(summarize["constants"][0], "DEFAULT_QUANTILES = (0.25, 0.5, 0.75)");
}

#[test]
fn bad_jsonl_lines_are_counted_and_the_run_goes_on() {
    let f = fixtures().join("extract/bad.jsonl");
    let rejects = tempfile::tempdir().expect("tempdir");
    let out = tempfile::tempdir().expect("tempdir");
    bin().args(["-i", f.to_str().unwrap(), "-o", out.path().to_str().unwrap(), "extract", "--rejects"]).arg(rejects.path()).assert().success();
    assert_eq!(names(&read_records(out.path(), "shard")), ["join_all", "words"]);
    let m = manifest(out.path());
    let bad = &m["counts"]["bad_input"];
    assert_eq!(bad["bad_json"], 2);
    assert_eq!(bad["missing_field"], 2);
    assert_eq!(bad["python2"], 1);
    assert_eq!(bad["empty_file"], 1);
    let rows = read_records(rejects.path(), "rejects");
    let lines: Vec<(String, u64)> = rows.iter().map(|r| (r["reason"].as_str().unwrap().to_string(), r["line"].as_u64().unwrap_or(0))).collect();
    assert_eq!(
        lines,
        [
            ("bad_json".to_string(), 2),
            ("missing_field".into(), 3),
            ("missing_field".into(), 4),
            ("bad_json".into(), 5),
            ("python2".into(), 7),
            ("empty_file".into(), 8)
        ]
    );
    // A record without an id gets one from its place in the input.
    let words = read_records(out.path(), "shard").into_iter().find(|r| r["entry_point"] == "words").unwrap();
    assert!(words["source"]["id"].as_str().unwrap().ends_with("bad.jsonl:9"));
}

#[test]
fn oversized_and_pathological_documents_do_not_stop_the_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    std::fs::write(d.join("a_big.py"), format!("import os\n\n\ndef f(a):\n    x = os.sep\n    return a\n{}", "# pad\n".repeat(200_000))).unwrap();
    std::fs::write(d.join("b_brackets.py"), format!("x = {}1{}\n", "(".repeat(100_000), ")".repeat(100_000))).unwrap();
    // A flat 100k-term sum parses to a 100k-deep AST: analysed and dropped without a crash.
    std::fs::write(d.join("c_chain.py"), format!("import os\n\n\ndef g(a):\n    x = os.sep\n    return {}\n", vec!["a"; 100_000].join(" + ")))
        .unwrap();
    std::fs::write(d.join("d_ok.py"), "import os\n\n\ndef ok(a):\n    x = os.sep\n    return a + x\n").unwrap();
    let jsonl = d.join("e_lines.jsonl");
    let huge = serde_json::json!({"id": "huge", "content": "x = 1\n".repeat(200_000)});
    let fine = serde_json::json!({"id": "fine", "content": "import re\n\n\ndef h(t):\n    y = re.escape(t)\n    return y\n"});
    std::fs::write(&jsonl, format!("{huge}\n{fine}\n")).unwrap();
    let out = tempfile::tempdir().expect("tempdir");
    // A directory with .py files yields those; the JSONL shard is named to be read.
    bin()
        .args(["-i", d.to_str().unwrap(), "-i", jsonl.to_str().unwrap(), "-o", out.path().to_str().unwrap(), "--max-doc-bytes", "1000000", "extract"])
        .assert()
        .success();
    assert_eq!(names(&read_records(out.path(), "shard")), ["ok", "h"]);
    let m = manifest(out.path());
    assert_eq!(m["counts"]["bad_input"]["too_large"], 2);
    assert_eq!(m["counts"]["bad_input"]["too_deeply_nested"], 1);
    assert_eq!(m["counts"]["dropped"]["too_deeply_nested"], 1);
}

#[test]
fn output_is_deterministic_across_runs_and_thread_counts() {
    let f = fixtures().join("extract");
    let run = |jobs: &str| {
        let out = tempfile::tempdir().expect("tempdir");
        bin()
            .args(["-i", f.join("py").to_str().unwrap(), "-i", f.join("corpus.parquet").to_str().unwrap()])
            .args(["-i", f.join("bad.jsonl").to_str().unwrap(), "-j", jobs, "--records-per-shard", "3"])
            .args(["-o", out.path().to_str().unwrap(), "extract", "--no-dedup"])
            .assert()
            .success();
        let files = shard_files(out.path(), "shard");
        let contents: Vec<(String, Vec<u8>)> =
            files.iter().map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(p).unwrap())).collect();
        (out, contents)
    };
    let (_a, first) = run("1");
    let (_b, second) = run("4");
    let (_c, third) = run("4");
    assert!(first.len() >= 8, "expected several 3-record shards, got {}", first.len());
    assert_eq!(first[0].0, "shard-00000.jsonl.zst");
    assert_eq!(first, second);
    assert_eq!(second, third);
}

#[test]
fn up_to_date_output_is_skipped_unless_forced() {
    let tree = fixtures().join("extract/py");
    let out = tempfile::tempdir().expect("tempdir");
    let args = ["-i", tree.to_str().unwrap(), "-o", out.path().to_str().unwrap(), "extract"];
    bin().args(args).assert().success();
    let before = std::fs::metadata(out.path().join("manifest.json")).unwrap().modified().unwrap();
    let assert = bin().args(args).assert().success();
    assert!(String::from_utf8_lossy(&assert.get_output().stderr).contains("up to date"));
    assert_eq!(std::fs::metadata(out.path().join("manifest.json")).unwrap().modified().unwrap(), before);
    // Different settings → recomputed, old shards replaced.
    bin().args(args).arg("--min-lines").arg("1").assert().success();
    assert_eq!(manifest(out.path())["settings"]["extract"]["min_lines"], 1);
    let forced = bin().args(["--force"]).args(args).arg("--min-lines").arg("1").assert().success();
    assert!(!String::from_utf8_lossy(&forced.get_output().stderr).contains("up to date"));
}

#[test]
fn unusable_arguments_inputs_and_outputs_fail_with_a_message() {
    let out = tempfile::tempdir().expect("tempdir");
    let o = out.path().to_str().unwrap();
    let missing = bin().args(["-i", "/nonexistent/corpus.jsonl", "-o", o, "extract"]).assert().code(1);
    assert!(String::from_utf8_lossy(&missing.get_output().stderr).contains("/nonexistent/corpus.jsonl"));
    bin().args(["-i", "/nonexistent/*.jsonl", "-o", o, "extract"]).assert().code(1);
    let tree = fixtures().join("extract/py");
    // No output directory is an argument error (exit 2, like clap's own).
    bin().args(["-i", tree.to_str().unwrap(), "extract"]).assert().code(2);
    bin().args(["-i", tree.to_str().unwrap(), "-o", o, "extract", "--no-such-flag"]).assert().code(2);
    bin().args(["-i", tree.to_str().unwrap(), "-o", o, "extract", "--target-python", "three"]).assert().code(1);
    // Output path that is a file.
    let file = out.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    bin().args(["-i", tree.to_str().unwrap(), "-o", file.to_str().unwrap(), "extract"]).assert().code(1);
    // Unsupported input type.
    let txt = out.path().join("notes.txt");
    std::fs::write(&txt, "x").unwrap();
    bin().args(["-i", txt.to_str().unwrap(), "-o", o, "extract"]).assert().code(1);
}

#[test]
fn config_file_is_read_and_flags_override_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, "[extract]\nmin_lines = 1\nrequire_package = false\n\n[output]\ncompress = false\nrecords_per_shard = 5\n").unwrap();
    let tree = fixtures().join("extract/py");
    let out = dir.path().join("out");
    bin()
        .args(["--config", cfg.to_str().unwrap(), "-i", tree.to_str().unwrap(), "-o", out.to_str().unwrap(), "extract"])
        .args(["--min-lines", "2"])
        .assert()
        .success();
    let m = manifest(&out);
    assert_eq!(m["settings"]["extract"]["min_lines"], 2);
    assert_eq!(m["settings"]["extract"]["require_package"], false);
    assert!(shard_files(&out, "shard").iter().all(|p| p.extension().unwrap() == "jsonl"));
    assert!(m["shards"].as_array().unwrap().iter().all(|s| s["records"].as_u64().unwrap() <= 5));
    // A typo in a known section is an error, not silently ignored.
    std::fs::write(&cfg, "[extract]\nmin_line = 1\n").unwrap();
    bin().args(["--config", cfg.to_str().unwrap(), "-i", tree.to_str().unwrap(), "-o", out.to_str().unwrap(), "extract"]).assert().code(1);
}

#[test]
fn json_logs_are_json_lines() {
    let tree = fixtures().join("extract/py");
    let out = tempfile::tempdir().expect("tempdir");
    let assert = bin().args(["--log-format", "json", "-i", tree.to_str().unwrap(), "-o", out.path().to_str().unwrap(), "extract"]).assert().success();
    let stderr = String::from_utf8_lossy(&assert.get_output().stderr).into_owned();
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty());
    for line in lines {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON: {line}: {e}"));
        assert!(v.get("level").is_some());
    }
}

#[test]
fn truncated_compressed_input_is_reported_and_exit_status_says_so() {
    let dir = tempfile::tempdir().expect("tempdir");
    let full = std::fs::read(fixtures().join("extract/corpus.jsonl.zst")).unwrap();
    let cut = dir.path().join("cut.jsonl.zst");
    std::fs::write(&cut, &full[..full.len() * 2 / 3]).unwrap();
    let out = dir.path().join("out");
    let tree = fixtures().join("extract/py/dupes_a.py");
    let assert = bin().args(["-i", cut.to_str().unwrap(), "-i", tree.to_str().unwrap(), "-o", out.to_str().unwrap(), "extract"]).assert().code(1);
    assert!(String::from_utf8_lossy(&assert.get_output().stderr).contains("cut.jsonl.zst"));
    let m = manifest(&out);
    assert_eq!(m["counts"]["unreadable_files"], 1);
    assert_eq!(m["counts"]["bad_input"]["unreadable"], 1);
    // The run went on to the next input.
    assert!(names(&read_records(&out, "shard")).contains(&"file_digest".to_string()));
}
