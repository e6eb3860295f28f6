//! The bundled offline demo (`unitcoder run --config configs/demo.toml --offline`) shows the
//! funnel it is documented to show, entirely from the shipped response cache; the example
//! Makefile chains the single stages to the same result and is a no-op when rerun.

mod common;

use std::path::Path;

use common::{bin, manifest, read_records};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn exported_ids(dir: &Path) -> Vec<String> {
    let mut ids: Vec<String> = read_records(dir, "data").iter().map(|r| r["id"].as_str().unwrap().to_string()).collect();
    ids.sort();
    ids
}

#[test]
fn offline_demo_runs_every_stage_with_a_real_funnel() {
    let work = tempfile::tempdir().unwrap();
    bin()
        .current_dir(repo())
        .args(["run", "--config", "configs/demo.toml", "--offline", "--work-dir", work.path().to_str().unwrap()])
        .assert()
        .success();
    let w = work.path();
    assert_eq!(manifest(&w.join("extract"))["counts"]["kept"], 18);
    let sr = manifest(&w.join("sandbox-run"));
    assert_eq!(sr["counts"]["outcomes"]["verdict_pass"], 12, "{sr}");
    let fix = manifest(&w.join("fix"));
    assert_eq!(fix["counts"]["outcomes"]["fixed_in_round_1"], 2);
    assert_eq!(fix["counts"]["outcomes"]["fixed_in_round_2"], 1);
    assert_eq!(fix["counts"]["outcomes"]["fix_unfixed"], 1);
    // The two scipy functions cannot import in the sandbox: stopped before gen-tests asks.
    let gt = manifest(&w.join("gen-tests"));
    assert_eq!(gt["counts"]["errors_by_kind"]["missing_package"], 2, "{gt}");
    // The one fix that special-cases the tests' input is rejected; nothing else fires on
    // the demo's honest answers.
    assert_eq!(fix["counts"]["outcomes"]["fix_rejected_hardcoded_test_values"], 1, "{fix}");
    for key in fix["counts"]["outcomes"].as_object().unwrap().keys().chain(gt["counts"]["outcomes"].as_object().unwrap().keys()) {
        assert!(!key.starts_with("tests_rejected_") && !key.starts_with("fix_overfit"), "{key} fired on the demo");
    }
    for rule in ["overloaded_equality", "constant_output", "early_exit", "test_framework_access", "policy_rejected"] {
        assert!(fix["counts"]["outcomes"].get(format!("fix_rejected_{rule}")).is_none(), "{rule} fired on the demo");
    }
    assert_eq!(fix["counts"]["errors_by_kind"].as_object().unwrap().len(), 0, "no cache misses: {fix}");
    let refine = manifest(&w.join("refine"));
    assert_eq!(refine["counts"]["outcomes"]["refined"], 13);
    assert_eq!(refine["counts"]["outcomes"]["not_refined_tests_failed"], 1);
    assert_eq!(refine["counts"]["outcomes"]["not_refined_doctest_failed"], 1);
    assert_eq!(manifest(&w.join("export"))["counts"]["exported"], 13);
    // Nothing was asked of a model: every answer came from the shipped cache.
    for stage in ["gen-tests", "fix", "refine"] {
        assert_eq!(manifest(&w.join(stage))["timings"]["llm"]["requests"], 0, "{stage}");
    }
    export_loads_as_users_load_it(w);
}

/// The export is plain JSONL whose card header tells Hugging Face which files are data
/// (not manifest.json); pandas reads it as is with `source`/`meta` as objects; Parquet
/// has struct columns, as the JSONL has objects.
fn export_loads_as_users_load_it(w: &Path) {
    let export = w.join("export");
    assert!(export.join("data-00000.jsonl").exists(), "plain JSONL by default");
    let card = std::fs::read_to_string(export.join("README.md")).unwrap();
    assert!(card.starts_with("---\nconfigs:\n- config_name: default\n  data_files:\n  - split: train\n    path: \"data-*.jsonl\"\n"), "{card}");
    assert!(card.contains("size_categories:\n- n<1K\n") && card.contains("\n---\n\n# unitcoder dataset"), "{card}");
    let script = "import glob, sys, pandas as pd\nfiles = sorted(glob.glob(sys.argv[1] + '/data-*.jsonl'))\n\
                  df = pd.concat([pd.read_json(f, lines=True) for f in files])\nprint(len(df), type(df['source'].iloc[0]).__name__, type(df['meta'].iloc[0]).__name__)\n";
    let out = std::process::Command::new(common::sandbox_python()).args(["-c", script, export.to_str().unwrap()]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "13 dict dict", "{}", String::from_utf8_lossy(&out.stderr));

    let pq = w.join("export-parquet");
    bin().args(["export", "-i", w.join("refine").to_str().unwrap(), "-o", pq.to_str().unwrap(), "--output-format", "parquet"]).assert().success();
    let file = std::fs::File::open(pq.join("data-00000.parquet")).unwrap();
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
    let schema = reader.schema().clone();
    for column in ["source", "meta"] {
        let field = schema.field_with_name(column).unwrap();
        assert!(matches!(field.data_type(), arrow_schema::DataType::Struct(_)), "{column}: {:?}", field.data_type());
    }
    let rows: usize = reader.build().unwrap().map(|b| b.unwrap().num_rows()).sum();
    assert_eq!(rows, 13);
    assert!(std::fs::read_to_string(pq.join("README.md")).unwrap().contains("path: \"data-*.parquet\""));
}

#[test]
fn example_makefile_chains_the_stages() {
    let has_make = std::process::Command::new("make").arg("--version").output().map(|o| o.status.success()).unwrap_or(false);
    if !has_make {
        eprintln!("note: `make` is not installed; the Makefile test cannot run here");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("work");
    let unitcoder = assert_cmd::cargo::cargo_bin("unitcoder");
    let make = |target: &str| {
        std::process::Command::new("make")
            .current_dir(repo())
            .args(["-f", "examples/Makefile", target])
            .arg(format!("UNITCODER={}", unitcoder.display()))
            .arg(format!("WORK={}", work.display()))
            .output()
            .unwrap()
    };
    let first = make("all");
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    assert_eq!(manifest(&work.join("export"))["counts"]["exported"], 13);
    // Same data as `unitcoder run` on the same corpus and config.
    let run_dir = dir.path().join("run");
    bin().current_dir(repo()).args(["run", "--config", "configs/demo.toml", "--offline", "--work-dir", run_dir.to_str().unwrap()]).assert().success();
    assert_eq!(exported_ids(&work.join("export")), exported_ids(&run_dir.join("export")));
    // Up to date: make has nothing to do.
    let second = make("all");
    assert!(second.status.success());
    assert!(String::from_utf8_lossy(&second.stdout).contains("Nothing to be done"), "{}", String::from_utf8_lossy(&second.stdout));
    // `make retry` finds nothing to redo and leaves the data alone.
    let retry = make("retry");
    assert!(retry.status.success(), "{}", String::from_utf8_lossy(&retry.stderr));
    assert_eq!(exported_ids(&work.join("export")), exported_ids(&run_dir.join("export")));
}
