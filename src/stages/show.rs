//! `unitcoder show FILE[:N] [--id ID]`: one record of a shard, readably — code and tests
//! as code blocks, the error first, the rest as indented JSON. Reads `.jsonl`,
//! `.jsonl.gz` and `.jsonl.zst` shards (or every shard of a directory).

use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::Args;
use serde_json::Value;

use crate::shards::expand_inputs;
use crate::shards::reader::read_records;

#[derive(Debug, Clone, Args)]
pub struct ShowArgs {
    /// A shard or a stage's output directory, optionally with `:N` for its N-th record
    /// (1-based, over the directory's shards in order) [default: :1].
    #[arg(value_name = "FILE[:N]")]
    pub target: String,
    /// The record with this `id` instead of the N-th.
    #[arg(long, value_name = "ID")]
    pub id: Option<String>,
    /// Print the record as JSON (pretty), not as text.
    #[arg(long)]
    pub json: bool,
}

/// Fields shown first, in this order; the rest follow as they are in the record.
const FIRST: &[&str] = &["id", "entry_point", "error", "source", "packages", "imports", "code", "tests"];

pub fn run(args: &ShowArgs) -> Result<ExitCode> {
    let (path, index) = split_target(&args.target);
    let inputs = expand_inputs(std::slice::from_ref(&path))?;
    let mut seen = 0u64;
    let mut found: Option<(String, u64, Value)> = None;
    read_records(&inputs, usize::MAX, |file, line, item| {
        seen += 1;
        let Ok(record) = item else { return true };
        let hit = match &args.id {
            Some(id) => record.get("id").and_then(Value::as_str) == Some(id.as_str()),
            None => seen == index,
        };
        if hit {
            found = Some((file.to_string(), line, Value::Object(record)));
        }
        !hit
    })?;
    let Some((file, line, record)) = found else {
        match &args.id {
            Some(id) => bail!("{path}: no record with id {id} ({seen} records read)"),
            None => bail!("{path}: has {seen} records, not {index}"),
        }
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&record)?);
    } else {
        print!("{}", render(&file, line, &record));
    }
    Ok(ExitCode::SUCCESS)
}

/// `path:N` → (path, N); a path without a number (or a `:` that is part of the path) → N = 1.
fn split_target(target: &str) -> (String, u64) {
    if let Some((path, n)) = target.rsplit_once(':') {
        if let Ok(n) = n.parse::<u64>() {
            if n > 0 && !std::path::Path::new(target).exists() {
                return (path.to_string(), n);
            }
        }
    }
    (target.to_string(), 1)
}

/// The record as text: a header, then each field; multi-line strings as blocks.
pub fn render(file: &str, line: u64, record: &Value) -> String {
    let Some(map) = record.as_object() else { return format!("{record}\n") };
    let mut out = format!("── {file}:{line} ──\n");
    let mut keys: Vec<&String> = FIRST.iter().filter_map(|k| map.get_key_value(*k).map(|(k, _)| k)).collect();
    keys.extend(map.keys().filter(|k| !FIRST.contains(&k.as_str())));
    for key in keys {
        let value = &map[key.as_str()];
        match value {
            Value::String(s) if s.contains('\n') => {
                out.push_str(&format!("{key}:\n"));
                for l in s.trim_end_matches('\n').lines() {
                    out.push_str(&format!("    {l}\n"));
                }
            }
            Value::String(s) => out.push_str(&format!("{key}: {s}\n")),
            Value::Array(items) if items.iter().all(|i| !i.is_object() && !i.is_array()) => {
                let items: Vec<String> = items.iter().map(|i| i.as_str().map(str::to_string).unwrap_or_else(|| i.to_string())).collect();
                out.push_str(&format!("{key}: {}\n", items.join(", ")));
            }
            Value::Object(_) | Value::Array(_) => {
                out.push_str(&format!("{key}:\n"));
                let pretty = serde_json::to_string_pretty(value).unwrap_or_default();
                for l in pretty.lines() {
                    out.push_str(&format!("    {l}\n"));
                }
            }
            other => out.push_str(&format!("{key}: {other}\n")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_and_rendering() {
        assert_eq!(split_target("out/shard-00000.jsonl.zst:3"), ("out/shard-00000.jsonl.zst".into(), 3));
        assert_eq!(split_target("out/shard-00000.jsonl.zst"), ("out/shard-00000.jsonl.zst".into(), 1));
        let record =
            serde_json::json!({"verdict": {"passed": true}, "code": "import os\n\ndef f(a):\n    return a\n", "id": "abc", "packages": ["os"]});
        let text = render("s.jsonl", 2, &record);
        assert!(
            text.starts_with("── s.jsonl:2 ──\nid: abc\npackages: os\ncode:\n    import os\n    \n    def f(a):\n        return a\nverdict:\n"),
            "{text}"
        );
        assert!(text.contains("\"passed\": true"));
    }
}
