//! The record schema: one JSON object per line in every shard.
//!
//! Stages add fields to records; fields a stage does not know pass through untouched
//! (`extra`), so a record can go through any subset of stages in any tool chain.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Where a function came from in the input corpus.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceRef {
    /// The input document's id (a JSONL/Parquet id field, or a `.py` file's relative path).
    pub id: String,
    /// The document's path inside its repository, when the input has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// 1-based first line of the function (its first decorator, if any).
    pub start_line: u32,
    /// 1-based last line of the function.
    pub end_line: u32,
}

/// A function kept by `extract`: a runnable module plus provenance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionRecord {
    /// Stable content hash of `code` (hex, 32 chars): the same function text with the same
    /// imports gets the same id in every run.
    pub id: String,
    /// The function's name.
    pub entry_point: String,
    /// The runnable module: `__future__` imports, the other needed imports, optional
    /// constants, then the function's source.
    pub code: String,
    /// The function's verbatim source text, sliced from the file by byte range
    /// (decorators and comments kept).
    pub function: String,
    /// The import lines `code` starts with, in order.
    pub imports: Vec<String>,
    /// Top-level modules the function uses (stdlib and third-party), sorted.
    pub packages: Vec<String>,
    /// Module-level constant assignments pulled into `code` (only with `include_constants`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub constants: Vec<String>,
    /// Whether the function is an `async def`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub is_async: bool,
    pub source: SourceRef,
    /// Fields added by other stages or tools; kept as they are.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A candidate or input that a stage dropped, written with `--rejects DIR`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RejectRecord {
    /// Machine-readable reason, e.g. `unresolved_name`, `syntax_error`, `bad_json`.
    pub reason: String,
    /// Human-readable detail (which name, which package, the parser's message, ...).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
    /// The input file (shard or `.py`) this came from.
    pub file: String,
    /// 1-based line in the input file (JSONL line), when the input is line-oriented.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    /// The document id, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub doc_id: Option<String>,
    /// The function's name, for function-level drops.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entry_point: Option<String>,
    /// Function location, for function-level drops.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<SourceRef>,
    /// The function's source, for function-level drops.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<String>,
}

/// Hex content hash used for record ids: blake3, first 16 bytes.
pub fn content_id(text: &str) -> String {
    let hash = blake3::hash(text.as_bytes());
    hash.to_hex()[..32].to_string()
}
