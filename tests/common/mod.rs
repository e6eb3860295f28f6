//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod mock_llm;

use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::Value;

pub fn bin() -> assert_cmd::Command {
    let mut cmd = assert_cmd::Command::cargo_bin("unitcoder").expect("binary built");
    cmd.env_remove("RUST_LOG");
    cmd
}

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// Shard files of a stage output directory, sorted.
pub fn shard_files(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("output dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name.starts_with(&format!("{prefix}-")) && (name.ends_with(".jsonl") || name.ends_with(".jsonl.zst"))
        })
        .collect();
    files.sort();
    files
}

/// All records of a stage output directory, in shard order.
pub fn read_records(dir: &Path, prefix: &str) -> Vec<Value> {
    let mut out = Vec::new();
    for file in shard_files(dir, prefix) {
        let raw = std::fs::read(&file).expect("read shard");
        let text = if file.extension().is_some_and(|e| e == "zst") {
            let mut s = String::new();
            zstd::stream::read::Decoder::new(&raw[..]).expect("zstd").read_to_string(&mut s).expect("decode");
            s
        } else {
            String::from_utf8(raw).expect("utf8")
        };
        for line in text.lines() {
            out.push(serde_json::from_str(line).expect("json line"));
        }
    }
    out
}

pub fn manifest(dir: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).expect("manifest")).expect("manifest json")
}

/// The Python interpreter tests use to check generated code.
pub fn python() -> String {
    std::env::var("UNITCODER_TEST_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// The sandbox venv made by scripts/setup-sandbox.sh (numpy, pandas).
pub fn sandbox_python() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv-sandbox/bin/python").display().to_string()
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// The demo corpus plus a copy of one of its files that sorts first: with 3 ranks, the copy
/// (rank 0) and the original (rank 1) are duplicates no single rank sees both of.
pub fn demo_corpus_with_a_copy(dir: &Path) -> PathBuf {
    let corpus = dir.join("corpus");
    copy_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/demo/corpus"), &corpus);
    std::fs::create_dir_all(corpus.join("aa_copy")).unwrap();
    std::fs::copy(corpus.join("tables/frames.py"), corpus.join("aa_copy/frames.py")).unwrap();
    corpus
}
