//! Reading inputs: expanding `--input` specs into files, decompressing, reading lines with a
//! size cap, and turning JSONL / Parquet / `.py` inputs into a stream of source documents.
//!
//! Everything streams: a corpus file is never loaded whole (a `.py` file is, but it is one
//! document and is capped by `max_doc_bytes`).

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// How a file's bytes are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

/// What kind of input a file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputFormat {
    Jsonl(Compression),
    Parquet,
    /// A single Python source file: one document.
    PySource,
}

/// One input file, resolved from an `--input` spec.
#[derive(Debug, Clone)]
pub struct InputFile {
    pub path: PathBuf,
    pub format: InputFormat,
    /// For `.py` files found under a directory: the path relative to that directory, which
    /// becomes the document id.
    pub relative: Option<String>,
}

impl InputFile {
    pub fn display(&self) -> String {
        self.path.display().to_string()
    }
}

/// Classify a path by its name; `None` for files we do not read.
pub fn format_of(path: &Path) -> Option<InputFormat> {
    let name = path.file_name()?.to_str()?.to_ascii_lowercase();
    let jsonl = |stem: &str| stem.ends_with(".jsonl") || stem.ends_with(".ndjson") || stem.ends_with(".json");
    if name.ends_with(".parquet") {
        Some(InputFormat::Parquet)
    } else if name.ends_with(".py") {
        Some(InputFormat::PySource)
    } else if let Some(stem) = name.strip_suffix(".zst") {
        jsonl(stem).then_some(InputFormat::Jsonl(Compression::Zstd))
    } else if let Some(stem) = name.strip_suffix(".gz") {
        jsonl(stem).then_some(InputFormat::Jsonl(Compression::Gzip))
    } else if name.ends_with(".jsonl") || name.ends_with(".ndjson") {
        Some(InputFormat::Jsonl(Compression::None))
    } else {
        None
    }
}

/// What directories and globs in `--input` contribute (a file named directly is read by
/// its extension whatever this says).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum CorpusFormat {
    /// `.py` files; a directory without any contributes its `.jsonl`/`.parquet` shards.
    #[default]
    Auto,
    /// `.py` files only.
    Py,
    /// JSONL shards only (`.jsonl`, `.ndjson`, `.json`, each optionally `.gz`/`.zst`).
    Jsonl,
    /// Parquet files only.
    Parquet,
}

/// Expand `--input` specs of record shards (the output of a stage): a directory
/// contributes its JSONL shards.
pub fn expand_inputs(specs: &[String]) -> Result<Vec<InputFile>> {
    expand(specs, Want::Records)
}

/// Expand `--input` specs of a corpus for `extract`: a directory contributes what `format`
/// says, so a Python installation yields its sources and not its `.json.gz` data files.
pub fn expand_corpus(specs: &[String], format: CorpusFormat) -> Result<Vec<InputFile>> {
    expand(specs, Want::Corpus(format))
}

#[derive(Clone, Copy)]
enum Want {
    Records,
    Corpus(CorpusFormat),
}

/// Whether a file found under a directory (or by a glob) is taken.
fn wanted(format: InputFormat, name: &str, want: Want, py_only: bool) -> bool {
    let shard_name = !name.contains(".json.") && !name.ends_with(".json");
    match (want, format) {
        (Want::Records, InputFormat::Jsonl(_)) => true,
        (Want::Records, _) => false,
        (Want::Corpus(CorpusFormat::Py), f) => f == InputFormat::PySource,
        (Want::Corpus(CorpusFormat::Jsonl), f) => matches!(f, InputFormat::Jsonl(_)),
        (Want::Corpus(CorpusFormat::Parquet), f) => f == InputFormat::Parquet,
        (Want::Corpus(CorpusFormat::Auto), InputFormat::PySource) => true,
        (Want::Corpus(CorpusFormat::Auto), _) => !py_only && shard_name,
    }
}

/// Expand specs (files, directories, globs) into a deterministic list of files.
///
/// Directory walks are sorted and skip hidden entries and `manifest.json`. A spec that
/// matches nothing is an error: a typo must not turn into an empty, "successful" run.
fn expand(specs: &[String], want: Want) -> Result<Vec<InputFile>> {
    let mut files = Vec::new();
    for spec in specs {
        let path = Path::new(spec);
        if path.is_file() {
            let format = format_of(path)
                .with_context(|| format!("input {spec}: unsupported file type (expected .jsonl, .jsonl.gz, .jsonl.zst, .parquet or .py)"))?;
            files.push(InputFile { path: path.to_path_buf(), format, relative: None });
        } else if path.is_dir() {
            let walker = walkdir::WalkDir::new(path)
                .sort_by_file_name()
                .into_iter()
                .filter_entry(|e| e.depth() == 0 || !e.file_name().to_string_lossy().starts_with('.'));
            let mut found: Vec<(PathBuf, InputFormat)> = Vec::new();
            for entry in walker {
                let entry = entry.with_context(|| format!("input {spec}: cannot list directory"))?;
                if entry.file_type().is_file() {
                    if let Some(format) = format_of(entry.path()) {
                        found.push((entry.path().to_path_buf(), format));
                    }
                }
            }
            let py_only = found.iter().any(|(_, f)| *f == InputFormat::PySource);
            let before = files.len();
            let mut skipped = 0usize;
            for (p, format) in found {
                let name = p.file_name().map(|n| n.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
                if !wanted(format, &name, want, py_only) {
                    skipped += 1;
                    continue;
                }
                let relative =
                    p.strip_prefix(path).ok().map(|r| r.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/"));
                files.push(InputFile { path: p, format, relative });
            }
            if skipped > 0 {
                let hint = match want {
                    Want::Corpus(CorpusFormat::Auto) => "; --input-format jsonl|parquet reads shards instead",
                    _ => "",
                };
                tracing::info!("input {spec}: {} file(s) taken, {skipped} data file(s) of another kind left alone{hint}", files.len() - before);
            }
            if files.len() == before {
                tracing::warn!("input {spec}: directory holds no readable input files");
            }
        } else if spec.contains(['*', '?', '[']) {
            let mut matched: Vec<(PathBuf, InputFormat)> = glob::glob(spec)
                .with_context(|| format!("input {spec}: bad glob pattern"))?
                .filter_map(|p| p.ok())
                .filter(|p| p.is_file())
                .filter_map(|p| format_of(&p).map(|f| (p, f)))
                .filter(|(p, f)| {
                    let name = p.file_name().map(|n| n.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
                    // A glob names the files it wants: only the record/corpus kind filter applies.
                    matches!(want, Want::Corpus(CorpusFormat::Auto)) || wanted(*f, &name, want, false)
                })
                .collect();
            matched.sort_by(|a, b| a.0.cmp(&b.0));
            if matched.is_empty() {
                bail!("input {spec}: glob matches no readable input files");
            }
            for (p, format) in matched {
                files.push(InputFile { path: p, format, relative: None });
            }
        } else {
            bail!("input {spec}: no such file or directory");
        }
    }
    Ok(files)
}

/// Open a file as a buffered byte stream, decompressing as needed.
pub fn open_decompressed(path: &Path, compression: Compression) -> Result<Box<dyn BufRead + Send>> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let buffered = BufReader::with_capacity(256 * 1024, file);
    Ok(match compression {
        Compression::None => Box::new(buffered),
        Compression::Gzip => Box::new(BufReader::with_capacity(256 * 1024, flate2::bufread::MultiGzDecoder::new(buffered))),
        Compression::Zstd => Box::new(BufReader::with_capacity(
            256 * 1024,
            zstd::stream::read::Decoder::with_buffer(buffered).with_context(|| format!("cannot read zstd stream {}", path.display()))?,
        )),
    })
}

/// One line of a line-oriented file.
pub struct Line {
    /// 1-based line number.
    pub number: u64,
    /// The line's bytes without the trailing newline (empty if `too_long`).
    pub bytes: Vec<u8>,
    /// The line was longer than the cap; its bytes were skipped, not kept.
    pub too_long: bool,
}

/// Reads lines with a per-line byte cap, so one enormous line cannot exhaust memory.
pub struct LineReader<R: BufRead> {
    inner: R,
    number: u64,
    max_line_bytes: usize,
}

impl<R: BufRead> LineReader<R> {
    pub fn new(inner: R, max_line_bytes: usize) -> Self {
        Self { inner, number: 0, max_line_bytes }
    }

    pub fn next_line(&mut self) -> io::Result<Option<Line>> {
        let mut bytes = Vec::new();
        let mut too_long = false;
        let mut saw_any = false;
        loop {
            let buf = self.inner.fill_buf()?;
            if buf.is_empty() {
                break;
            }
            saw_any = true;
            let (chunk, done) = match memchr(b'\n', buf) {
                Some(i) => (&buf[..i], Some(i + 1)),
                None => (buf, None),
            };
            if !too_long {
                if bytes.len() + chunk.len() > self.max_line_bytes {
                    too_long = true;
                    bytes = Vec::new();
                } else {
                    bytes.extend_from_slice(chunk);
                }
            }
            let consumed = done.unwrap_or(buf.len());
            self.inner.consume(consumed);
            if done.is_some() {
                break;
            }
        }
        if !saw_any {
            return Ok(None);
        }
        self.number += 1;
        if bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
        Ok(Some(Line { number: self.number, bytes, too_long }))
    }
}

fn memchr(needle: u8, haystack: &[u8]) -> Option<usize> {
    haystack.iter().position(|&b| b == needle)
}

/// Which fields of a JSONL/Parquet record hold the source text, the id and the path.
#[derive(Debug, Clone)]
pub struct SourceFields {
    pub content: String,
    pub id: String,
    pub path: String,
    /// Other fields carried into `source.meta` (`--keep-fields`).
    pub keep: Vec<String>,
}

impl Default for SourceFields {
    fn default() -> Self {
        Self { content: "content".into(), id: "id".into(), path: "path".into(), keep: Vec::new() }
    }
}

/// Why an input document could not be used (counted per reason; the run goes on).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadInput {
    pub reason: &'static str,
    pub detail: String,
}

impl BadInput {
    pub fn new(reason: &'static str, detail: impl Into<String>) -> Self {
        Self { reason, detail: detail.into() }
    }
}

/// One source document from the inputs, in input order.
#[derive(Debug, Clone)]
pub struct SourceDoc {
    /// The input file's display path.
    pub file: std::sync::Arc<str>,
    /// 1-based line (JSONL) or row (Parquet) within the file, when there is one.
    pub line: Option<u64>,
    pub id: String,
    pub path: Option<String>,
    pub content: Result<String, BadInput>,
    /// Size of the document in bytes (for throughput accounting).
    pub bytes: u64,
    /// The `--keep-fields` of its JSONL line or Parquet row that it has.
    pub meta: serde_json::Map<String, Value>,
    /// Index of its file in the `inputs` given to `read_source_docs`.
    pub file_index: usize,
}

/// What happened while reading the inputs as a whole.
#[derive(Debug, Default, Clone)]
pub struct ReadSummary {
    pub files: u64,
    /// Files that could not be opened or read to the end (each also reported as a document
    /// with reason `unreadable`).
    pub unreadable_files: u64,
}

/// Stream every source document of `inputs` into `sink`, in order. `sink` returns `false`
/// to stop early (e.g. the consumer went away).
pub fn read_source_docs(inputs: &[InputFile], fields: &SourceFields, max_doc_bytes: usize, mut sink: impl FnMut(SourceDoc) -> bool) -> ReadSummary {
    let mut summary = ReadSummary::default();
    for (file_index, input) in inputs.iter().enumerate() {
        summary.files += 1;
        let file: std::sync::Arc<str> = input.display().into();
        let mut sink = |mut doc: SourceDoc| {
            doc.file_index = file_index;
            sink(doc)
        };
        let result = match input.format {
            InputFormat::PySource => read_py_file(input, &file, max_doc_bytes, &mut sink),
            InputFormat::Jsonl(compression) => read_jsonl(input, compression, &file, fields, max_doc_bytes, &mut sink),
            InputFormat::Parquet => read_parquet(input, &file, fields, max_doc_bytes, &mut sink),
        };
        match result {
            Ok(true) => {}
            Ok(false) => return summary,
            Err(err) => {
                summary.unreadable_files += 1;
                tracing::error!("{file}: unreadable input: {err:#}");
                let doc = SourceDoc {
                    file: file.clone(),
                    line: None,
                    id: file.to_string(),
                    path: None,
                    content: Err(BadInput::new("unreadable", format!("{err:#}"))),
                    bytes: 0,
                    meta: Default::default(),
                    file_index,
                };
                if !sink(doc) {
                    return summary;
                }
            }
        }
    }
    summary
}

fn decode_utf8(bytes: Vec<u8>) -> Result<String, BadInput> {
    String::from_utf8(bytes).map_err(|e| BadInput::new("not_utf8", format!("invalid UTF-8 at byte {}", e.utf8_error().valid_up_to())))
}

/// Decode a Python source file as CPython does (PEP 263): a UTF-8 BOM, else a `coding:`
/// declaration on line 1 or 2 (line 2 only after a comment or blank line 1), else UTF-8.
pub fn decode_python_source(bytes: Vec<u8>) -> Result<String, BadInput> {
    if bytes.starts_with(b"\xef\xbb\xbf") {
        return decode_utf8(bytes);
    }
    let Some(label) = coding_declaration(&bytes) else { return decode_utf8(bytes) };
    let name = label.to_ascii_lowercase().replace('_', "-");
    match name.as_str() {
        "utf-8" | "utf8" | "utf-8-sig" => decode_utf8(bytes),
        // Python's latin-1 maps every byte to the same code point; WHATWG's label of that
        // name is windows-1252, which differs in 0x80–0x9F.
        "latin-1" | "latin1" | "iso-8859-1" | "iso8859-1" | "l1" | "iso-latin-1" => Ok(bytes.iter().map(|&b| char::from(b)).collect()),
        "ascii" | "us-ascii" => match bytes.iter().position(|b| !b.is_ascii()) {
            Some(at) => Err(BadInput::new("not_decodable", format!("byte {at} is not ASCII (declared coding: {label})"))),
            None => decode_utf8(bytes),
        },
        _ => {
            let python_alias = name.strip_prefix("cp").map(|n| format!("windows-{n}"));
            let encoding = encoding_rs::Encoding::for_label(name.as_bytes())
                .or_else(|| python_alias.and_then(|a| encoding_rs::Encoding::for_label(a.as_bytes())));
            let Some(encoding) = encoding else {
                return Err(BadInput::new("unknown_encoding", format!("declared coding {label:?} is not one this tool decodes")));
            };
            match encoding.decode_without_bom_handling_and_without_replacement(&bytes) {
                Some(text) => Ok(text.into_owned()),
                None => Err(BadInput::new("not_decodable", format!("invalid {} (declared coding: {label})", encoding.name()))),
            }
        }
    }
}

/// The encoding named by a PEP 263 comment (`# -*- coding: latin-1 -*-`, `# vim: set fileencoding=cp1252`).
fn coding_declaration(bytes: &[u8]) -> Option<String> {
    let mut lines = bytes.split(|&b| b == b'\n');
    let first = lines.next()?;
    if let Some(label) = coding_in_line(first) {
        return Some(label);
    }
    let first_trimmed = first.iter().skip_while(|b| b" \t\x0c\r".contains(b)).collect::<Vec<_>>();
    if !(first_trimmed.is_empty() || first_trimmed[0] == &b'#') {
        return None;
    }
    coding_in_line(lines.next()?)
}

/// `^[ \t\f]*#.*?coding[:=][ \t]*([-\w.]+)` on one line.
fn coding_in_line(line: &[u8]) -> Option<String> {
    let start = line.iter().position(|b| !b" \t\x0c".contains(b))?;
    if line[start] != b'#' {
        return None;
    }
    let rest = &line[start..];
    let at = rest.windows(6).position(|w| w == b"coding")?;
    let after = &rest[at + 6..];
    if !matches!(after.first(), Some(b':' | b'=')) {
        return None;
    }
    let value: Vec<u8> =
        after[1..].iter().skip_while(|b| b" \t".contains(b)).take_while(|b| b.is_ascii_alphanumeric() || b"-_.".contains(b)).copied().collect();
    (!value.is_empty()).then(|| String::from_utf8_lossy(&value).into_owned())
}

fn read_py_file(input: &InputFile, file: &std::sync::Arc<str>, max_doc_bytes: usize, sink: &mut impl FnMut(SourceDoc) -> bool) -> Result<bool> {
    let id = input.relative.clone().unwrap_or_else(|| file.to_string());
    let meta = std::fs::metadata(&input.path).with_context(|| format!("cannot stat {file}"))?;
    let (content, bytes) = if meta.len() as usize > max_doc_bytes {
        (Err(BadInput::new("too_large", format!("{} bytes > limit {max_doc_bytes}", meta.len()))), meta.len())
    } else {
        let mut buf = Vec::with_capacity(meta.len() as usize);
        File::open(&input.path).and_then(|mut f| f.read_to_end(&mut buf)).with_context(|| format!("cannot read {file}"))?;
        let n = buf.len() as u64;
        (decode_python_source(buf), n)
    };
    Ok(sink(SourceDoc { file: file.clone(), line: None, id: id.clone(), path: Some(id), content, bytes, meta: Default::default(), file_index: 0 }))
}

fn read_jsonl(
    input: &InputFile,
    compression: Compression,
    file: &std::sync::Arc<str>,
    fields: &SourceFields,
    max_doc_bytes: usize,
    sink: &mut impl FnMut(SourceDoc) -> bool,
) -> Result<bool> {
    let reader = open_decompressed(&input.path, compression)?;
    // JSON escaping can double a document's size; leave room for the other fields too.
    let mut lines = LineReader::new(reader, max_doc_bytes.saturating_mul(2).saturating_add(1 << 20));
    while let Some(line) = lines.next_line().with_context(|| format!("{file}: read error"))? {
        let fallback_id = format!("{file}:{}", line.number);
        let make = |id: String, path: Option<String>, content: Result<String, BadInput>, bytes: u64| SourceDoc {
            file: file.clone(),
            line: Some(line.number),
            id,
            path,
            content,
            bytes,
            meta: Default::default(),
            file_index: 0,
        };
        let doc = if line.too_long {
            make(fallback_id, None, Err(BadInput::new("too_large", "line longer than the document size limit")), 0)
        } else if line.bytes.iter().all(u8::is_ascii_whitespace) {
            continue;
        } else {
            let n = line.bytes.len() as u64;
            match serde_json::from_slice::<Value>(&line.bytes) {
                Err(e) => make(fallback_id, None, Err(BadInput::new("bad_json", e.to_string())), n),
                Ok(Value::Object(mut obj)) => {
                    let id = match obj.get(&fields.id) {
                        Some(Value::String(s)) => s.clone(),
                        Some(Value::Number(n)) => n.to_string(),
                        _ => fallback_id,
                    };
                    let path = match obj.get(&fields.path) {
                        Some(Value::String(s)) => Some(s.clone()),
                        _ => None,
                    };
                    let content = match obj.remove(&fields.content) {
                        Some(Value::String(s)) if s.len() > max_doc_bytes => {
                            Err(BadInput::new("too_large", format!("{} bytes > limit {max_doc_bytes}", s.len())))
                        }
                        Some(Value::String(s)) => Ok(s),
                        Some(other) => {
                            Err(BadInput::new("missing_field", format!("field `{}` is {}, not a string", fields.content, json_type(&other))))
                        }
                        None => Err(BadInput::new("missing_field", format!("no field `{}`", fields.content))),
                    };
                    let mut doc = make(id, path, content, n);
                    for name in &fields.keep {
                        if let Some(v) = obj.remove(name) {
                            doc.meta.insert(name.clone(), v);
                        }
                    }
                    doc
                }
                Ok(other) => {
                    make(fallback_id, None, Err(BadInput::new("bad_json", format!("line is a JSON {}, not an object", json_type(&other)))), n)
                }
            }
        };
        if !sink(doc) {
            return Ok(false);
        }
    }
    Ok(true)
}

pub fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn read_parquet(
    input: &InputFile,
    file: &std::sync::Arc<str>,
    fields: &SourceFields,
    max_doc_bytes: usize,
    sink: &mut impl FnMut(SourceDoc) -> bool,
) -> Result<bool> {
    use arrow_array::Array;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use parquet::arrow::ProjectionMask;

    let handle = File::open(&input.path).with_context(|| format!("cannot open {file}"))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(handle).with_context(|| format!("{file}: not a readable Parquet file"))?;
    let arrow_schema = builder.schema().clone();
    let column = |name: &str| arrow_schema.index_of(name).ok();
    let content_idx =
        column(&fields.content).with_context(|| format!("{file}: Parquet file has no column `{}` (set --content-field)", fields.content))?;
    let (id_idx, path_idx) = (column(&fields.id), column(&fields.path));
    let keep: Vec<&String> = fields.keep.iter().filter(|k| column(k).is_some()).collect();
    let mut wanted: Vec<usize> = [Some(content_idx), id_idx, path_idx].into_iter().flatten().chain(keep.iter().filter_map(|k| column(k))).collect();
    wanted.sort_unstable();
    wanted.dedup();
    let mask = ProjectionMask::roots(builder.parquet_schema(), wanted.iter().copied());
    let reader = builder.with_projection(mask).with_batch_size(256).build().with_context(|| format!("{file}: cannot read Parquet"))?;
    let mut row: u64 = 0;
    for batch in reader {
        let batch = batch.with_context(|| format!("{file}: Parquet decode error after row {row}"))?;
        let col = |name: &str| batch.column_by_name(name).cloned();
        let content_col = col(&fields.content).context("projected column missing")?;
        let id_col = id_idx.and_then(|_| col(&fields.id));
        let path_col = path_idx.and_then(|_| col(&fields.path));
        let mut metas = keep_columns_as_json(&batch, &keep).with_context(|| format!("{file}: cannot read the --keep-fields columns"))?.into_iter();
        for i in 0..batch.num_rows() {
            row += 1;
            let id = id_col.as_ref().and_then(|c| cell_text(c.as_ref(), i)).unwrap_or_else(|| format!("{file}:{row}"));
            let path = path_col.as_ref().and_then(|c| cell_text(c.as_ref(), i));
            let (content, bytes) = if content_col.is_null(i) {
                (Err(BadInput::new("missing_field", format!("column `{}` is null", fields.content))), 0)
            } else {
                match cell_bytes(content_col.as_ref(), i) {
                    None => (Err(BadInput::new("missing_field", format!("column `{}` is not a string column", fields.content))), 0),
                    Some(b) if b.len() > max_doc_bytes => {
                        (Err(BadInput::new("too_large", format!("{} bytes > limit {max_doc_bytes}", b.len()))), b.len() as u64)
                    }
                    Some(b) => {
                        let n = b.len() as u64;
                        (decode_python_source(b.to_vec()), n)
                    }
                }
            };
            let meta = metas.next().unwrap_or_default();
            if !sink(SourceDoc { file: file.clone(), line: Some(row), id, path, content, bytes, meta, file_index: 0 }) {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

/// The `keep` columns of each row as a JSON object (any Arrow type: The Stack's licence
/// lists, star counts, dates), through arrow-json's writer.
fn keep_columns_as_json(batch: &arrow_array::RecordBatch, keep: &[&String]) -> Result<Vec<serde_json::Map<String, Value>>> {
    if keep.is_empty() {
        return Ok(Vec::new());
    }
    let indices: Vec<usize> = keep.iter().filter_map(|k| batch.schema().index_of(k).ok()).collect();
    let projected = batch.project(&indices)?;
    let mut writer = arrow_json::LineDelimitedWriter::new(Vec::new());
    writer.write(&projected)?;
    writer.finish()?;
    let bytes = writer.into_inner();
    bytes
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| match serde_json::from_slice::<Value>(l)? {
            Value::Object(m) => Ok(m),
            other => bail!("a row became JSON {}", json_type(&other)),
        })
        .collect()
}

/// The bytes of a string/binary cell.
fn cell_bytes(array: &dyn arrow_array::Array, i: usize) -> Option<&[u8]> {
    use arrow_array::cast::AsArray;
    use arrow_schema::DataType;
    match array.data_type() {
        DataType::Utf8 => Some(array.as_string::<i32>().value(i).as_bytes()),
        DataType::LargeUtf8 => Some(array.as_string::<i64>().value(i).as_bytes()),
        DataType::Utf8View => Some(array.as_string_view().value(i).as_bytes()),
        DataType::Binary => Some(array.as_binary::<i32>().value(i)),
        DataType::LargeBinary => Some(array.as_binary::<i64>().value(i)),
        _ => None,
    }
}

/// A cell as text for ids and paths: strings as they are, integers formatted.
fn cell_text(array: &dyn arrow_array::Array, i: usize) -> Option<String> {
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Int32Type, Int64Type, UInt64Type};
    use arrow_schema::DataType;
    if array.is_null(i) {
        return None;
    }
    match array.data_type() {
        DataType::Int64 => Some(array.as_primitive::<Int64Type>().value(i).to_string()),
        DataType::Int32 => Some(array.as_primitive::<Int32Type>().value(i).to_string()),
        DataType::UInt64 => Some(array.as_primitive::<UInt64Type>().value(i).to_string()),
        _ => cell_bytes(array, i).map(|b| String::from_utf8_lossy(b).into_owned()),
    }
}

/// A record read by a stage after `extract`, or a line that is not one (with its place).
pub enum RecordItem {
    Record(serde_json::Map<String, Value>),
    Bad { file: String, line: u64, bad: BadInput },
}

/// `read_records`, as `RecordItem`s.
pub fn read_record_items(inputs: &[InputFile], max_line_bytes: usize, mut sink: impl FnMut(RecordItem) -> bool) -> Result<()> {
    read_records(inputs, max_line_bytes, |file, line, item| {
        sink(match item {
            Ok(record) => RecordItem::Record(record),
            Err(bad) => RecordItem::Bad { file: file.to_string(), line, bad },
        })
    })
}

/// Read JSON records (for stages after `extract`): each item is a parsed object or a bad
/// line with its reason, with file and line for messages.
pub fn read_records(
    inputs: &[InputFile],
    max_line_bytes: usize,
    mut sink: impl FnMut(&str, u64, Result<serde_json::Map<String, Value>, BadInput>) -> bool,
) -> Result<()> {
    for input in inputs {
        let file = input.display();
        let InputFormat::Jsonl(compression) = input.format else {
            bail!("{file}: records must be JSONL shards (.jsonl, .jsonl.gz, .jsonl.zst)");
        };
        let mut lines = LineReader::new(open_decompressed(&input.path, compression)?, max_line_bytes);
        while let Some(line) = lines.next_line().with_context(|| format!("{file}: read error"))? {
            let item = if line.too_long {
                Err(BadInput::new("too_large", "line longer than the limit"))
            } else if line.bytes.iter().all(u8::is_ascii_whitespace) {
                continue;
            } else {
                match serde_json::from_slice::<Value>(&line.bytes) {
                    Ok(Value::Object(obj)) => Ok(obj),
                    Ok(other) => Err(BadInput::new("bad_json", format!("line is a JSON {}, not an object", json_type(&other)))),
                    Err(e) => Err(BadInput::new("bad_json", e.to_string())),
                }
            };
            if !sink(&file, line.number, item) {
                return Ok(());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coding_declarations_decode_as_cpython_does() {
        let latin1 = b"# -*- coding: latin-1 -*-\nname = '\xe9t\xe9'\n".to_vec();
        assert_eq!(decode_python_source(latin1).unwrap(), "# -*- coding: latin-1 -*-\nname = '\u{e9}t\u{e9}'\n");
        // Line 2 after a shebang; Python's cp1252 alias; 0x80 is the euro sign there.
        let cp = b"#!/usr/bin/env python\n# vim: set fileencoding=cp1252 :\ns = '\x80'\n".to_vec();
        assert!(decode_python_source(cp).unwrap().contains("s = '\u{20ac}'"));
        // Python's latin-1 keeps 0x80 as U+0080 (WHATWG's "latin1" label would not).
        assert_eq!(decode_python_source(b"# coding=iso-8859-1\nx='\x80'".to_vec()).unwrap(), "# coding=iso-8859-1\nx='\u{80}'");
        assert_eq!(decode_python_source("# coding: euc_jp\n".as_bytes().to_vec()).unwrap(), "# coding: euc_jp\n");
    }

    #[test]
    fn without_a_declaration_the_source_must_be_utf8() {
        assert_eq!(decode_python_source(b"x = '\xe9'\n".to_vec()).unwrap_err().reason, "not_utf8");
        // A declaration on line 2 after code does not count.
        assert_eq!(decode_python_source(b"x = 1\n# coding: latin-1\ny = '\xe9'\n".to_vec()).unwrap_err().reason, "not_utf8");
        assert_eq!(decode_python_source(b"# coding: klingon\n".to_vec()).unwrap_err().reason, "unknown_encoding");
        assert_eq!(decode_python_source(b"# coding: ascii\nx='\xe9'".to_vec()).unwrap_err().reason, "not_decodable");
        assert!(decode_python_source(b"\xef\xbb\xbfx = 1\n".to_vec()).is_ok());
    }
}
