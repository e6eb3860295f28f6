//! `unitcoder export`: verified records become training data (UnitCoder §3.3).
//!
//! For each record, in input order:
//!   1. keep only records without an error whose verdict is `pass`, and sort them into
//!      tiers by their tests' adequacy: `strong` (meets `min_line_coverage` and
//!      `min_mutation_score`), `weak` (verified, below a gate or not assessed), `failed`
//!      (not verified); only the tiers asked for (`tiers`, default `strong`) are written;
//!   2. split the program into prompt (imports + signature + docstring) and completion (the
//!      body) — the paper's prefix/completion pairs; records without a docstring are
//!      dropped unless `require_docstring = false`;
//!   3. decontaminate: drop records whose normalised token n-grams overlap a benchmark
//!      solution (HumanEval, MBPP, BigCodeBench copies shipped in `data/benchmarks/`, or
//!      files from config) at or above the threshold; counted by benchmark;
//!   4. drop exact duplicates (same normalised tokens) and near-duplicates (MinHash/LSH on
//!      token shingles with identifiers abstracted, so renamed copies count), keeping the
//!      first;
//!   5. write `completion`, `chat` or `raw` rows as JSONL shards or Parquet, and a dataset
//!      card `README.md` with the funnel, the package distribution and the settings.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context as _, Result};
use clap::{Args, ValueEnum};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::context::Context;
use crate::dedup::{code_tokens, ContaminationIndex, NearDuplicates};
use crate::python::functions::split_prompt;
use crate::record::{counter, field, FixOutcome, FixStatus, Record, RecordExt, RefineOutcome, Status, Task, Verdict};
use crate::shards::manifest::{fingerprint, now_rfc3339, prepare_output};
use crate::shards::merge::merge_by_position;
use crate::shards::ranks::{OutputState, StageRanks};
use crate::shards::reader::{format_of, open_decompressed, Compression, InputFormat, LineReader, RecordItem};
use crate::shards::{expand_inputs, InputFile, Manifest, ShardInfo, ShardWriter, ShardWriterOptions};

/// Built-in benchmark copies (see data/benchmarks/README.md for origin and licences).
const BUILT_IN_BENCHMARKS: &[(&str, &[u8])] = &[
    ("humaneval", include_bytes!("../../data/benchmarks/humaneval.jsonl.zst")),
    ("mbpp", include_bytes!("../../data/benchmarks/mbpp.jsonl.zst")),
    ("bigcodebench", include_bytes!("../../data/benchmarks/bigcodebench.jsonl.zst")),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// prompt (imports + signature + docstring) → completion (body)
    Completion,
    /// user/assistant messages
    Chat,
    /// every field of the record
    Raw,
    /// function → its `TestCases` module (for training a test generator), adequacy in meta
    Tests,
}

/// How strong the evidence behind a row is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    /// Verified, and its tests meet the adequacy gates.
    Strong,
    /// Verified, but its tests are below a gate (or were not assessed while a gate is set).
    Weak,
    /// Not verified (its tests failed or it never passed).
    Failed,
}

impl Tier {
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Strong => "strong",
            Tier::Weak => "weak",
            Tier::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    Jsonl,
    Parquet,
}

/// `[export]` settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExportSettings {
    pub format: Format,
    pub output_format: OutputFormat,
    /// Drop verified records whose function has no docstring (their prompt would be a bare
    /// signature).
    pub require_docstring: bool,
    pub decontaminate: bool,
    /// Benchmark files (JSONL with `task_id` and `text`); empty = the built-in copies.
    pub benchmarks: Vec<String>,
    /// n of the token n-grams compared with benchmark solutions.
    pub ngram: usize,
    /// Drop when shared n-grams / min(record n-grams, task n-grams) reaches this.
    pub contamination_threshold: f64,
    pub exact_dedup: bool,
    pub near_dedup: bool,
    /// Estimated Jaccard similarity of token shingles that counts as a near-duplicate.
    pub near_dup_threshold: f64,
    /// Tokens per shingle for near-duplicate detection.
    pub shingle: usize,
    /// Gate: a verified row is `strong` only with at least this line coverage (0 = no gate).
    pub min_line_coverage: f64,
    /// Gate: ... and at least this mutation score (0 = no gate).
    pub min_mutation_score: f64,
    /// Tiers written (`strong`, `weak`, `failed`).
    pub tiers: Vec<Tier>,
    /// Gate: fail the export (exit 8) when the share of compared records overlapping one
    /// benchmark reaches this (0 = no gate).
    pub max_contamination: f64,
    /// zstd-compress JSONL data files. Off: plain `.jsonl` loads in pandas and HF
    /// `datasets` without extra packages (intermediate shards stay compressed).
    pub compress: bool,
}

impl Default for ExportSettings {
    fn default() -> Self {
        Self {
            format: Format::Completion,
            output_format: OutputFormat::Jsonl,
            require_docstring: true,
            decontaminate: true,
            benchmarks: Vec::new(),
            ngram: 10,
            contamination_threshold: 0.5,
            exact_dedup: true,
            near_dedup: true,
            near_dup_threshold: 0.8,
            shingle: 5,
            min_line_coverage: 0.0,
            min_mutation_score: 0.0,
            tiers: vec![Tier::Strong],
            max_contamination: 0.0,
            compress: false,
        }
    }
}

#[derive(Debug, Clone, Args, Default)]
#[command(next_help_heading = "Export")]
pub struct ExportArgs {
    /// Row format [default: completion].
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// File format [default: jsonl].
    #[arg(long, value_enum)]
    pub output_format: Option<OutputFormat>,
    /// A benchmark file to decontaminate against (JSONL with task_id and text); repeatable
    /// [default: the built-in HumanEval, MBPP and BigCodeBench copies].
    #[arg(long, value_name = "FILE")]
    pub benchmark: Vec<String>,
    /// Skip decontamination.
    #[arg(long)]
    pub no_decontaminate: bool,
    /// Keep near-duplicates (exact duplicates are still removed).
    #[arg(long)]
    pub no_near_dedup: bool,
    /// Gate: line coverage a verified row needs to be `strong`, 0–1 [default: 0, no gate].
    #[arg(long, value_name = "X")]
    pub min_line_coverage: Option<f64>,
    /// Gate: mutation score a verified row needs to be `strong`, 0–1 [default: 0, no gate].
    #[arg(long, value_name = "X")]
    pub min_mutation_score: Option<f64>,
    /// Tiers to write, comma-separated: strong, weak, failed [default: strong].
    #[arg(long, value_enum, value_delimiter = ',')]
    pub tiers: Option<Vec<Tier>>,
    /// Write `.jsonl.zst` data files instead of plain `.jsonl` [default: plain].
    #[arg(long)]
    pub compress: bool,
    /// Gate: fail (exit 8, naming the benchmark) when this share of the records compared
    /// overlaps one benchmark, 0–1 [default: 0, no gate].
    #[arg(long, value_name = "RATE")]
    pub max_contamination: Option<f64>,
    /// Export even when ranks are missing, unfinished or of different world sizes (only
    /// their finished shards are read) [default: refuse].
    #[arg(long)]
    pub allow_partial: bool,
}

impl ExportSettings {
    /// `[export]` with flags on top.
    pub fn resolve(ctx: &Context, args: &ExportArgs) -> Result<ExportSettings> {
        let mut s: ExportSettings = ctx.config.section("export")?;
        if let Some(f) = args.format {
            s.format = f;
        }
        if let Some(f) = args.output_format {
            s.output_format = f;
        }
        if !args.benchmark.is_empty() {
            s.benchmarks = args.benchmark.clone();
        }
        if args.no_decontaminate {
            s.decontaminate = false;
        }
        if args.no_near_dedup {
            s.near_dedup = false;
        }
        if let Some(x) = args.min_line_coverage {
            s.min_line_coverage = x;
        }
        if let Some(x) = args.min_mutation_score {
            s.min_mutation_score = x;
        }
        if let Some(x) = args.max_contamination {
            s.max_contamination = x;
        }
        if let Some(t) = &args.tiers {
            s.tiers = t.clone();
        }
        s.compress |= args.compress;
        for (name, x) in
            [("min_line_coverage", s.min_line_coverage), ("min_mutation_score", s.min_mutation_score), ("max_contamination", s.max_contamination)]
        {
            anyhow::ensure!((0.0..=1.0).contains(&x), "{name} must be between 0 and 1, not {x}");
        }
        anyhow::ensure!(!s.tiers.is_empty(), "tiers: name at least one of strong, weak, failed");
        Ok(s)
    }
}

/// Load the benchmark solutions into an n-gram index.
pub fn load_benchmarks(s: &ExportSettings) -> Result<ContaminationIndex> {
    let mut index = ContaminationIndex::new(s.ngram);
    let mut add_lines = |name: &str, reader: Box<dyn std::io::BufRead + Send>, file: &str| -> Result<()> {
        let mut lines = LineReader::new(reader, 64 << 20);
        while let Some(line) = lines.next_line().with_context(|| format!("{file}: read error"))? {
            let Ok(Value::Object(row)) = serde_json::from_slice::<Value>(&line.bytes) else {
                tracing::warn!("{file}:{}: not a JSON object; skipped", line.number);
                continue;
            };
            let id = row
                .get("task_id")
                .map(|v| v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string()))
                .unwrap_or_else(|| format!("{name}/{}", line.number));
            let text = ["text", "canonical_solution", "code", "solution"].iter().find_map(|k| row.get(*k).and_then(Value::as_str));
            match text {
                Some(t) => index.add(name, &id, t),
                None => tracing::warn!("{file}:{}: no text/canonical_solution/code field; skipped", line.number),
            }
        }
        Ok(())
    };
    if s.benchmarks.is_empty() {
        for (name, bytes) in BUILT_IN_BENCHMARKS {
            let decoder = zstd::stream::read::Decoder::new(*bytes).context("built-in benchmark copy")?;
            add_lines(name, Box::new(std::io::BufReader::new(decoder)), name)?;
        }
    } else {
        for file in &s.benchmarks {
            let path = Path::new(file);
            let name = path.file_name().map(|n| n.to_string_lossy().split('.').next().unwrap_or("benchmark").to_string()).unwrap_or_default();
            let compression = match format_of(path) {
                Some(InputFormat::Jsonl(c)) => c,
                _ => Compression::None,
            };
            add_lines(&name, open_decompressed(path, compression).with_context(|| format!("benchmark file {file}"))?, file)?;
        }
    }
    Ok(index)
}

/// `meta` of a row: a task's kind and metadata, or how a function was verified and how
/// strong its tests are.
fn row_meta(record: &Record, tier: Tier) -> Value {
    if let Some(task) = record.typed::<Task>(field::TASK) {
        let mut m = task.meta;
        m.insert("task".into(), json!(task.kind));
        m.insert("tier".into(), json!(tier));
        return Value::Object(m);
    }
    let fix = record.typed::<FixOutcome>(field::FIX);
    let refine = record.typed::<RefineOutcome>(field::REFINE);
    let verdict = record.typed::<Verdict>(field::VERDICT);
    json!({
        "fixed_in_round": fix.and_then(|f| f.round),
        "refined": refine.is_some_and(|r| r.refined),
        "tests_passed": verdict.as_ref().map(|v| v.tests_passed),
        "tier": tier,
        "adequacy": verdict.and_then(|v| v.adequacy).map(|a| json!({
            "line_coverage": a.line_coverage,
            "lines_total": a.lines_total,
            "lines_hit": a.lines_hit,
            "mutation_score": a.mutation_score,
            "mutants": a.mutants,
            "killed": a.killed,
            "equivalent_suspected": a.equivalent_suspected,
            "reruns": a.reruns.len(),
        })),
    })
}

/// The output row for a kept record.
fn row(format: Format, record: &Record, prompt: &str, completion: &str, tier: Tier) -> Record {
    let get = |k: &str| record.get(k).cloned().unwrap_or(Value::Null);
    let mut out = Record::new();
    let is_task = record.contains_key(field::TASK);
    match format {
        Format::Completion | Format::Tests => {
            out.insert("id".into(), get(field::ID));
            out.insert("entry_point".into(), get(field::ENTRY_POINT));
            out.put("prompt", prompt);
            out.put("completion", completion);
        }
        Format::Chat => {
            let entry = record.text(field::ENTRY_POINT).unwrap_or("the function");
            let (user, assistant) = if is_task {
                (prompt.to_string(), format!("```python\n{completion}```"))
            } else {
                (
                    format!("Complete the Python function `{entry}` below. Keep its signature and imports, and reply with the whole function.\n\n```python\n{prompt}```"),
                    format!("```python\n{prompt}{completion}```"),
                )
            };
            out.insert("id".into(), get(field::ID));
            out.insert("entry_point".into(), get(field::ENTRY_POINT));
            out.insert("messages".into(), json!([{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]));
        }
        Format::Raw => return record.clone(),
    }
    out.insert("packages".into(), get(field::PACKAGES));
    out.insert("source".into(), get(field::SOURCE));
    out.insert("tier".into(), json!(tier));
    out.insert("meta".into(), row_meta(record, tier));
    out
}

/// Where records went, for the manifest and the dataset card.
#[derive(Debug, Default, Serialize)]
struct Funnel {
    records: u64,
    errors_by_stage: BTreeMap<String, u64>,
    not_verified: BTreeMap<String, u64>,
    verified: u64,
    verified_first_try: u64,
    fixed_by_round: BTreeMap<String, u64>,
    refined: u64,
    not_refined: BTreeMap<String, u64>,
    dropped: BTreeMap<String, u64>,
    contaminated_by_benchmark: BTreeMap<String, u64>,
    /// Records compared with the benchmarks (the denominator of the contamination rates).
    decontamination_checked: u64,
    /// Per benchmark: overlapping records / records compared.
    contamination_rate: BTreeMap<String, f64>,
    /// Benchmarks whose rate reached `max_contamination` (the export failed).
    contamination_gate_failed: Vec<String>,
    exported: u64,
    /// Rows written, by tier.
    tiers: BTreeMap<String, u64>,
    /// Verified records by adequacy bucket (`coverage_…`, `mutation_…`), for `stats`.
    adequacy: BTreeMap<String, u64>,
    packages: BTreeMap<String, u64>,
    bad_lines: u64,
    /// Rows made from task stages (case2code, consensus), by kind.
    tasks: BTreeMap<String, u64>,
    /// `source.meta` (`--keep-fields`) of exported rows: per field, rows by value (strings
    /// and lists of strings; other values counted as `(other)`).
    source_meta: BTreeMap<String, BTreeMap<String, u64>>,
}

/// Steps 2–4 for one verified record: its prompt and completion, unless decontamination
/// or dedup drops it (counted in the funnel).
struct Filters<'a> {
    settings: &'a ExportSettings,
    index: Option<ContaminationIndex>,
    near: Option<NearDuplicates>,
    exact: HashSet<[u8; 16]>,
}

impl Filters<'_> {
    fn pass(&mut self, record: &Record, funnel: &mut Funnel) -> Result<(String, String), &'static str> {
        let s = self.settings;
        let (prompt, completion, code) = if let Some(task) = record.typed::<Task>(field::TASK) {
            // Tasks made by case2code / consensus carry their own prompt and answer.
            if task.prompt.trim().is_empty() || task.completion.trim().is_empty() {
                return Err("empty_task");
            }
            *funnel.tasks.entry(task.kind).or_default() += 1;
            let code = task.completion.clone();
            (task.prompt, task.completion, code)
        } else if s.format == Format::Tests {
            // Function → its test module: the pairs a test generator learns from.
            let (code, tests) = (record.text(field::CODE).unwrap_or(""), record.text(field::TESTS).unwrap_or(""));
            if code.trim().is_empty() || tests.trim().is_empty() {
                return Err("no_tests");
            }
            (code.to_string(), tests.to_string(), code.to_string())
        } else {
            let (code, entry_point) = (record.text(field::CODE).unwrap_or(""), record.text(field::ENTRY_POINT).unwrap_or(""));
            let (prompt, completion, has_doc) = split_prompt(code, entry_point).ok_or("unsplittable")?;
            if s.require_docstring && !has_doc {
                return Err("no_docstring");
            }
            (prompt, completion, code.to_string())
        };
        if self.index.is_some() {
            funnel.decontamination_checked += 1;
        }
        if let Some(hit) = self.index.as_ref().and_then(|i| i.check(&code, s.contamination_threshold)) {
            *funnel.contaminated_by_benchmark.entry(hit.benchmark.clone()).or_default() += 1;
            tracing::debug!("{}: overlaps {} ({:.2})", record.text(field::ID).unwrap_or(""), hit.task_id, hit.containment);
            return Err("contaminated");
        }
        if s.exact_dedup {
            let key: [u8; 16] = blake3::hash(code_tokens(&code, false).join(" ").as_bytes()).as_bytes()[..16].try_into().unwrap_or([0; 16]);
            if !self.exact.insert(key) {
                return Err("exact_duplicate");
            }
        }
        if let Some(nd) = self.near.as_mut() {
            if nd.check_and_insert(&code).is_some() {
                return Err("near_duplicate");
            }
        }
        Ok((prompt, completion))
    }
}

/// Data files and the card of an earlier export into `dir`.
fn remove_old_output(dir: &Path) -> Result<()> {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if (name.starts_with("data-") && (name.ends_with(".parquet") || name.contains(".jsonl"))) || name == "README.md" || name == ".rows.tmp.jsonl"
        {
            std::fs::remove_file(entry.path()).with_context(|| format!("cannot remove old output {}", entry.path().display()))?;
        }
    }
    Ok(())
}

pub fn run(ctx: &Context, args: &ExportArgs) -> Result<ExitCode> {
    let started = Instant::now();
    let started_at = now_rfc3339();
    crate::stages::common::refuse_split_from_env("export")?;
    let settings = ExportSettings::resolve(ctx, args)?;
    let out_dir = ctx.output_dir()?;
    let streams = input_streams(ctx, args.allow_partial)?;
    let inputs: Vec<_> = ctx.input_files()?.into_iter().map(|(_, f)| f).collect();
    let output_cfg = &ctx.output_format;
    let settings_json = json!({"export": settings, "output": output_cfg});
    let fp = fingerprint(&inputs.iter().map(|i| i.path.clone()).collect::<Vec<_>>(), &settings_json);
    if prepare_output(&out_dir, "export", &fp, ctx.force)? {
        return Ok(ExitCode::SUCCESS);
    }
    remove_old_output(&out_dir)?;
    if settings.max_contamination > 0.0 && !settings.decontaminate {
        tracing::warn!("export: --max-contamination has nothing to measure with decontamination off");
    }
    let index = if settings.decontaminate { Some(load_benchmarks(&settings)?) } else { None };
    if let Some(i) = &index {
        let (n, ngram, threshold) = (i.len(), settings.ngram, settings.contamination_threshold);
        tracing::info!("export: decontaminating against {n} benchmark tasks ({ngram}-grams, threshold {threshold})");
    }
    let near = settings.near_dedup.then(|| NearDuplicates::new(settings.near_dup_threshold, settings.shingle));
    let mut filters = Filters { settings: &settings, index, near, exact: HashSet::new() };
    let mut funnel = Funnel::default();
    let mut rows: Vec<Record> = Vec::new();
    let mut sink = RowSink::new(&out_dir, settings.output_format, settings.format, output_cfg.records_per_shard, settings.compress)?;

    // Ranks merged in corpus order: the rows (and which of two near-duplicates stays) come
    // out as one process would write them.
    merge_by_position(streams, ctx.record_line_limit(), |item| {
        let record = match item {
            RecordItem::Bad { file, line, bad } => {
                tracing::warn!("{file}:{line}: skipped line: {} ({})", bad.reason, bad.detail);
                funnel.bad_lines += 1;
                return true;
            }
            RecordItem::Record(r) => r,
        };
        funnel.records += 1;
        let mut tier = Tier::Strong;
        let passed = match classify(&record, &settings, &mut funnel) {
            Err(reason) => Err(reason),
            Ok(t) if !settings.tiers.contains(&t) => Err(match t {
                Tier::Failed => "not_verified".to_string(),
                _ => "below_adequacy_gate".to_string(),
            }),
            Ok(t) => {
                tier = t;
                filters.pass(&record, &mut funnel).map_err(str::to_string)
            }
        };
        let (prompt, completion) = match passed {
            Ok(pair) => pair,
            Err(reason) => {
                *funnel.dropped.entry(reason).or_default() += 1;
                return true;
            }
        };
        funnel.exported += 1;
        *funnel.tiers.entry(tier.as_str().into()).or_default() += 1;
        for p in record.strings(field::PACKAGES) {
            *funnel.packages.entry(p).or_default() += 1;
        }
        if let Some(Value::Object(meta)) = record.get(field::SOURCE).and_then(|s| s.get("meta")) {
            for (k, v) in meta {
                let values: Vec<String> = match v {
                    Value::String(s) => vec![s.clone()],
                    Value::Array(items) if items.iter().all(Value::is_string) => {
                        items.iter().filter_map(|i| i.as_str().map(str::to_string)).collect()
                    }
                    _ => vec!["(other)".into()],
                };
                for value in values {
                    *funnel.source_meta.entry(k.clone()).or_default().entry(value).or_default() += 1;
                }
            }
        }
        rows.push(row(settings.format, &record, &prompt, &completion, tier));
        if rows.len() >= 1024 {
            if let Err(e) = sink.write(std::mem::take(&mut rows)) {
                tracing::error!("{e:#}");
                return false;
            }
        }
        true
    })?;
    sink.write(std::mem::take(&mut rows))?;
    let shards = sink.finish()?;
    anyhow::ensure!(shards.iter().map(|s| s.records).sum::<u64>() == funnel.exported, "internal error: rows written differ from rows exported");
    if funnel.decontamination_checked > 0 {
        let checked = funnel.decontamination_checked as f64;
        if let Some(index) = &filters.index {
            for b in index.benchmarks() {
                funnel.contamination_rate.insert(b, 0.0);
            }
        }
        for (b, n) in &funnel.contaminated_by_benchmark {
            funnel.contamination_rate.insert(b.clone(), *n as f64 / checked);
        }
    }
    // The gate. The card and the manifest state the rates either way; a failed gate leaves
    // the manifest incomplete, so the export is not "done" (make or a rerun does it again)
    // while `stats` and `report` still show why.
    if settings.max_contamination > 0.0 {
        funnel.contamination_gate_failed =
            funnel.contamination_rate.iter().filter(|(_, rate)| **rate >= settings.max_contamination).map(|(b, _)| b.clone()).collect();
    }
    write_card(&out_dir, &funnel, &settings, &inputs.iter().map(|i| i.display()).collect::<Vec<_>>(), &shards)?;
    let counts = serde_json::to_value(&funnel)?;
    let mut manifest = Manifest::finished("export", &inputs, fp, settings_json, counts, shards, started_at, started, Value::Null);
    if !funnel.contamination_gate_failed.is_empty() {
        manifest.complete = false;
        manifest.write(&out_dir)?;
        let over: Vec<String> = funnel
            .contamination_gate_failed
            .iter()
            .map(|b| {
                let (n, rate) =
                    (funnel.contaminated_by_benchmark.get(b).copied().unwrap_or(0), funnel.contamination_rate.get(b).copied().unwrap_or(0.0));
                format!("{b} {:.1}% ({n} of {} records)", rate * 100.0, funnel.decontamination_checked)
            })
            .collect();
        tracing::error!(
            "export: records overlapping a benchmark reached --max-contamination {:.1}%: {}; the overlapping records were dropped, but this many says the corpus contains the benchmark (rates in {})",
            settings.max_contamination * 100.0,
            over.join(", "),
            out_dir.join("README.md").display()
        );
        return Ok(crate::exit::code(crate::exit::CONTAMINATED));
    }
    manifest.write(&out_dir)?;
    tracing::info!("export: {} of {} records exported; dropped {:?}", funnel.exported, funnel.records, funnel.dropped);
    Ok(ExitCode::SUCCESS)
}

/// The inputs as streams to merge: one per rank of a rank layout, the other inputs as one.
/// A rank layout that is not complete (ranks missing, unfinished, or of two world sizes) is
/// refused unless `allow_partial`, as is a stage directory with unfinished shards.
fn input_streams(ctx: &Context, allow_partial: bool) -> Result<Vec<Vec<InputFile>>> {
    let mut streams = Vec::new();
    let mut plain = Vec::new();
    let mut problems = Vec::new();
    for spec in &ctx.inputs {
        let dir = std::path::Path::new(spec);
        let layout = StageRanks::read(dir);
        if dir.is_dir() && layout.is_rank_layout() {
            problems.extend(layout.incomplete());
            for (_, _, rank_dir) in crate::shards::ranks::rank_dirs(dir) {
                let files = expand_inputs(&[rank_dir.display().to_string()]).unwrap_or_default();
                streams.push(files);
            }
            continue;
        }
        if dir.is_dir() {
            match crate::shards::ranks::output_state(dir) {
                OutputState::Partial { records } if Manifest::read(dir)?.is_none() && !crate::shards::ranks::partial_files(dir).is_empty() => {
                    problems.push(format!("{spec}: the stage has not finished ({records} records so far)"))
                }
                OutputState::Stopped { reason, .. } => problems.push(format!("{spec}: {reason}")),
                _ => {}
            }
        }
        plain.extend(expand_inputs(std::slice::from_ref(spec))?);
    }
    if !problems.is_empty() {
        let message = format!("export: the input is not complete: {}", problems.join("; "));
        if !allow_partial {
            return Err(crate::exit::Incomplete::new(format!(
                "{message}. Finish or resubmit those ranks (`unitcoder status WORK`), or export what is there with --allow-partial"
            ))
            .into());
        }
        tracing::warn!("{message}; exporting the finished shards only (--allow-partial)");
    }
    if !plain.is_empty() {
        streams.insert(0, plain);
    }
    Ok(streams)
}

/// Step 1 and the funnel bookkeeping: the record's tier, or the reason it cannot be
/// exported at all.
fn classify(record: &Record, s: &ExportSettings, f: &mut Funnel) -> Result<Tier, String> {
    if let Some(e) = record.error() {
        *f.errors_by_stage.entry(e.stage.clone()).or_default() += 1;
        return Err(format!("error_in_{}", e.stage));
    }
    // Output of a task stage: exportable when the stage made a task, else dropped by it.
    let has_task = record.contains_key(field::TASK);
    for stage in [field::CASE2CODE, field::CONSENSUS] {
        if let Some(s) = record.get(stage).filter(|_| !has_task) {
            return Err(format!("{stage}_{}", s.get("reason").and_then(Value::as_str).unwrap_or("no_task")));
        }
    }
    if has_task && !record.contains_key(field::VERDICT) {
        return Ok(Tier::Strong);
    }
    let fix = record.typed::<FixOutcome>(field::FIX);
    if !record.verified() {
        let status = record.verdict_status().map(Status::as_str).unwrap_or("no_verdict");
        let why = match &fix {
            Some(x) if x.status == FixStatus::NotAttempted => format!("fix_not_attempted_{}", x.reason.as_deref().unwrap_or("?")),
            Some(x) => format!("fix_{}", x.status.as_str()),
            None => format!("verdict_{status}"),
        };
        *f.not_verified.entry(why).or_default() += 1;
        return Ok(Tier::Failed);
    }
    f.verified += 1;
    let adequacy = record.typed::<Verdict>(field::VERDICT).and_then(|v| v.adequacy);
    let (coverage, score) = (adequacy.as_ref().and_then(|a| a.line_coverage), adequacy.as_ref().and_then(|a| a.mutation_score));
    *f.adequacy.entry(counter::coverage(coverage)).or_default() += 1;
    *f.adequacy.entry(counter::mutation(score)).or_default() += 1;
    // A gate of 0 is no gate; an unknown value never meets a gate.
    let meets = |min: f64, value: Option<f64>| min <= 0.0 || value.is_some_and(|v| v >= min);
    let tier = if meets(s.min_line_coverage, coverage) && meets(s.min_mutation_score, score) { Tier::Strong } else { Tier::Weak };
    match fix {
        Some(x) if x.status == FixStatus::Fixed => *f.fixed_by_round.entry(format!("round_{}", x.round.unwrap_or(0))).or_default() += 1,
        _ => f.verified_first_try += 1,
    }
    match record.typed::<RefineOutcome>(field::REFINE) {
        Some(r) if r.refined => f.refined += 1,
        Some(r) => *f.not_refined.entry(r.reason.unwrap_or_else(|| "?".into())).or_default() += 1,
        None => *f.not_refined.entry("not_run".into()).or_default() += 1,
    }
    Ok(tier)
}

/// Writes rows as JSONL shards or Parquet files.
enum RowSink {
    Jsonl(ShardWriter),
    /// Rows go to a temporary JSONL file first: the Parquet schema (nested objects as
    /// struct columns, like the JSONL has them) is inferred from every row, then written.
    Parquet {
        dir: PathBuf,
        format: Format,
        per_file: usize,
        staged: std::io::BufWriter<std::fs::File>,
        staged_path: PathBuf,
    },
}

impl RowSink {
    fn new(dir: &Path, output: OutputFormat, format: Format, per_file: usize, compress: bool) -> Result<RowSink> {
        Ok(match output {
            OutputFormat::Jsonl => RowSink::Jsonl(ShardWriter::new(
                dir,
                ShardWriterOptions { prefix: "data".into(), records_per_shard: per_file, compress, ..Default::default() },
            )?),
            OutputFormat::Parquet => {
                let staged_path = dir.join(".rows.tmp.jsonl");
                let file = std::fs::File::create(&staged_path).with_context(|| format!("cannot create {}", staged_path.display()))?;
                RowSink::Parquet { dir: dir.to_path_buf(), format, per_file, staged: std::io::BufWriter::new(file), staged_path }
            }
        })
    }

    fn write(&mut self, rows: Vec<Map<String, Value>>) -> Result<()> {
        match self {
            RowSink::Jsonl(w) => {
                for r in &rows {
                    w.write(r)?;
                }
            }
            RowSink::Parquet { staged, .. } => {
                use std::io::Write;
                for r in &rows {
                    serde_json::to_writer(&mut *staged, r)?;
                    staged.write_all(b"\n")?;
                }
            }
        }
        Ok(())
    }

    fn finish(self) -> Result<Vec<ShardInfo>> {
        match self {
            RowSink::Jsonl(w) => w.finish(),
            RowSink::Parquet { dir, format, per_file, staged, staged_path } => {
                let file = staged.into_inner().map_err(|e| e.into_error())?;
                drop(file);
                let written = match write_parquet_nested(&dir, &staged_path, per_file) {
                    Ok(done) => done,
                    Err(e) => {
                        // Rows whose fields change type (raw records of mixed origin) cannot
                        // share one struct schema: nested values become JSON text then.
                        tracing::warn!("export: nested Parquet columns not possible ({e:#}); writing nested values as JSON text");
                        remove_parquet_files(&dir)?;
                        write_parquet_flat(&dir, &staged_path, format, per_file)?
                    }
                };
                let _ = std::fs::remove_file(&staged_path);
                Ok(written)
            }
        }
    }
}

fn remove_parquet_files(dir: &Path) -> Result<()> {
    for entry in std::fs::read_dir(dir)?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("data-") && name.ends_with(".parquet") || name.starts_with(".data-") {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

/// Parquet files of `per_file` rows each, written through a temporary name.
struct ParquetFiles {
    dir: PathBuf,
    schema: Arc<arrow_schema::Schema>,
    per_file: usize,
    current: Option<(parquet::arrow::ArrowWriter<std::fs::File>, PathBuf, PathBuf, u64)>,
    done: Vec<ShardInfo>,
}

impl ParquetFiles {
    fn write(&mut self, batch: &arrow_array::RecordBatch) -> Result<()> {
        if self.current.is_none() {
            let name = format!("data-{:05}.parquet", self.done.len());
            let tmp = self.dir.join(format!(".{name}.tmp"));
            let file = std::fs::File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
            let props =
                parquet::file::properties::WriterProperties::builder().set_compression(parquet::basic::Compression::ZSTD(Default::default())).build();
            self.current = Some((parquet::arrow::ArrowWriter::try_new(file, self.schema.clone(), Some(props))?, tmp, self.dir.join(name), 0));
        }
        if let Some((w, _, _, n)) = self.current.as_mut() {
            w.write(batch)?;
            *n += batch.num_rows() as u64;
            if *n as usize >= self.per_file {
                self.seal()?;
            }
        }
        Ok(())
    }

    fn seal(&mut self) -> Result<()> {
        if let Some((w, tmp, path, n)) = self.current.take() {
            let file = w.into_inner()?;
            file.sync_all()?;
            std::fs::rename(&tmp, &path).with_context(|| format!("cannot rename into {}", path.display()))?;
            let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            self.done.push(ShardInfo { file: path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default(), records: n, bytes });
        }
        Ok(())
    }

    fn finish(mut self) -> Result<Vec<ShardInfo>> {
        self.seal()?;
        Ok(self.done)
    }
}

/// Struct and list columns inferred from every staged row (all-null fields become strings).
fn write_parquet_nested(dir: &Path, staged: &Path, per_file: usize) -> Result<Vec<ShardInfo>> {
    let open = || -> Result<std::io::BufReader<std::fs::File>> { Ok(std::io::BufReader::new(std::fs::File::open(staged)?)) };
    let (schema, _) = arrow_json::reader::infer_json_schema_from_seekable(open()?, None)?;
    let schema = Arc::new(arrow_schema::Schema::new(schema.fields().iter().map(|f| without_null_types(f)).collect::<Vec<_>>()));
    let reader = arrow_json::ReaderBuilder::new(schema.clone()).with_batch_size(per_file.clamp(1, 1024)).build(open()?)?;
    let mut files = ParquetFiles { dir: dir.to_path_buf(), schema, per_file, current: None, done: Vec::new() };
    for batch in reader {
        files.write(&batch?)?;
    }
    files.finish()
}

/// A field with every `Null` type in it (a field no row ever filled) made `Utf8`.
fn without_null_types(field: &arrow_schema::Field) -> arrow_schema::Field {
    use arrow_schema::{DataType, Field, Fields};
    let data_type = match field.data_type() {
        DataType::Null => DataType::Utf8,
        DataType::List(inner) => DataType::List(Arc::new(without_null_types(inner))),
        DataType::Struct(fields) => DataType::Struct(Fields::from(fields.iter().map(|f| without_null_types(f)).collect::<Vec<Field>>())),
        other => other.clone(),
    };
    Field::new(field.name(), data_type, true)
}

/// The fallback layout: lists of strings stay lists; nested values are JSON text.
fn write_parquet_flat(dir: &Path, staged: &Path, format: Format, per_file: usize) -> Result<Vec<ShardInfo>> {
    let schema = parquet_schema(format);
    let mut files = ParquetFiles { dir: dir.to_path_buf(), schema: schema.clone(), per_file, current: None, done: Vec::new() };
    let mut lines = LineReader::new(open_decompressed(staged, Compression::None)?, usize::MAX);
    let mut chunk: Vec<Map<String, Value>> = Vec::new();
    while let Some(line) = lines.next_line()? {
        if let Ok(Value::Object(m)) = serde_json::from_slice::<Value>(&line.bytes) {
            chunk.push(m);
        }
        if chunk.len() >= per_file.clamp(1, 1024) {
            files.write(&to_batch(&schema, &std::mem::take(&mut chunk))?)?;
        }
    }
    if !chunk.is_empty() {
        files.write(&to_batch(&schema, &chunk)?)?;
    }
    files.finish()
}

/// Column layout of the fallback: lists of strings stay lists; nested values are JSON text.
fn parquet_schema(format: Format) -> Arc<arrow_schema::Schema> {
    use arrow_schema::{DataType, Field, Schema};
    let s = |n: &str| Field::new(n, DataType::Utf8, true);
    let list = |n: &str| Field::new(n, DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))), true);
    let fields = match format {
        Format::Completion | Format::Tests => {
            vec![s("id"), s("entry_point"), s("prompt"), s("completion"), list("packages"), s("source"), s("tier"), s("meta")]
        }
        Format::Chat => vec![s("id"), s("entry_point"), s("messages"), list("packages"), s("source"), s("tier"), s("meta")],
        Format::Raw => vec![s("id"), s("entry_point"), s("code"), s("tests"), list("packages"), s("record")],
    };
    Arc::new(Schema::new(fields))
}

fn to_batch(schema: &Arc<arrow_schema::Schema>, rows: &[Map<String, Value>]) -> Result<arrow_array::RecordBatch> {
    use arrow_array::builder::{ListBuilder, StringBuilder};
    use arrow_array::ArrayRef;
    use arrow_schema::DataType;
    let mut columns: Vec<ArrayRef> = Vec::new();
    for field in schema.fields() {
        let name = field.name().as_str();
        let value_of = |r: &Map<String, Value>| -> Value {
            if name == "record" {
                Value::Object(r.clone())
            } else {
                r.get(name).cloned().unwrap_or(Value::Null)
            }
        };
        match field.data_type() {
            DataType::List(_) => {
                let mut b = ListBuilder::new(StringBuilder::new());
                for r in rows {
                    match value_of(r) {
                        Value::Array(items) => {
                            for it in items {
                                b.values().append_value(it.as_str().map(str::to_string).unwrap_or_else(|| it.to_string()));
                            }
                            b.append(true);
                        }
                        _ => b.append(false),
                    }
                }
                columns.push(Arc::new(b.finish()));
            }
            _ => {
                let mut b = StringBuilder::new();
                for r in rows {
                    match value_of(r) {
                        Value::Null => b.append_null(),
                        Value::String(s) => b.append_value(s),
                        other => b.append_value(other.to_string()),
                    }
                }
                columns.push(Arc::new(b.finish()));
            }
        }
    }
    Ok(arrow_array::RecordBatch::try_new(schema.clone(), columns)?)
}

/// The dataset card: what is in the data and how it was made.
/// The card's YAML header: Hugging Face reads it, so `load_dataset("<export dir>")` loads
/// the data files (and not `manifest.json`) as the train split.
fn card_header(f: &Funnel, s: &ExportSettings) -> String {
    let pattern = match (s.output_format, s.compress) {
        (OutputFormat::Parquet, _) => "data-*.parquet",
        (OutputFormat::Jsonl, true) => "data-*.jsonl.zst",
        (OutputFormat::Jsonl, false) => "data-*.jsonl",
    };
    let size = match f.exported {
        n if n < 1_000 => "n<1K",
        n if n < 10_000 => "1K<n<10K",
        n if n < 100_000 => "10K<n<100K",
        n if n < 1_000_000 => "100K<n<1M",
        n if n < 10_000_000 => "1M<n<10M",
        _ => "10M<n<100M",
    };
    let mut y = String::from("---\n");
    y.push_str("configs:\n- config_name: default\n  data_files:\n  - split: train\n");
    y.push_str(&format!("    path: \"{pattern}\"\n"));
    y.push_str("license: other\n");
    y.push_str("license_name: source-file-licences\n");
    y.push_str("language:\n- en\n- code\n");
    y.push_str("task_categories:\n- text-generation\n");
    y.push_str("tags:\n- code\n- python\n- unit-tests\n- synthetic\n- unitcoder\n");
    y.push_str(&format!("size_categories:\n- {size}\n"));
    y.push_str("pretty_name: unitcoder dataset\n---\n\n");
    y
}

fn write_card(dir: &Path, f: &Funnel, s: &ExportSettings, inputs: &[String], shards: &[ShardInfo]) -> Result<()> {
    let mut md = card_header(f, s);
    md.push_str("# unitcoder dataset\n\n");
    md.push_str(&format!(
        "{} training rows ({:?} format, {:?} files) made by unitcoder {} from {} input file(s).\n\n",
        f.exported,
        s.format,
        s.output_format,
        env!("CARGO_PKG_VERSION"),
        inputs.len()
    ));
    md.push_str("Licence: each row is derived from one source file of the input corpus and carries that file's licence ");
    md.push_str("(`source.meta` holds it when the export was made with `--keep-fields`).\n\n");
    md.push_str("Each row is a function that passed unit tests written for it, executed in an isolated sandbox; ");
    md.push_str("`completion` rows pair the imports + signature + docstring (prompt) with the body (completion), as in UnitCoder (§3.3).\n\n");
    md.push_str("## Funnel\n\n| step | records |\n|---|---:|\n");
    md.push_str(&format!("| records read | {} |\n", f.records));
    for (stage, n) in &f.errors_by_stage {
        md.push_str(&format!("| − error in {stage} | {n} |\n"));
    }
    for (why, n) in &f.not_verified {
        md.push_str(&format!("| − not verified: {why} | {n} |\n"));
    }
    md.push_str(&format!("| verified (pass) | {} |\n", f.verified));
    md.push_str(&format!("| · passed as extracted | {} |\n", f.verified_first_try));
    for (round, n) in &f.fixed_by_round {
        md.push_str(&format!("| · fixed in {} | {n} |\n", round.replace('_', " ")));
    }
    md.push_str(&format!("| · refined (docstring re-verified) | {} |\n", f.refined));
    for (why, n) in &f.not_refined {
        md.push_str(&format!("| · kept unrefined: {why} | {n} |\n"));
    }
    for (why, n) in &f.dropped {
        if why != "not_verified" && !why.starts_with("error_in_") {
            md.push_str(&format!("| − dropped: {why} | {n} |\n"));
        }
    }
    for (b, n) in &f.contaminated_by_benchmark {
        md.push_str(&format!("| · overlapping {b} | {n} |\n"));
    }
    for (kind, n) in &f.tasks {
        md.push_str(&format!("| · {kind} tasks | {n} |\n"));
    }
    md.push_str(&format!("| **exported** | **{}** |\n\n", f.exported));
    if !f.contamination_rate.is_empty() {
        md.push_str("## Decontamination\n\n");
        md.push_str(&format!(
            "{} records were compared with the benchmarks' solutions ({}-token n-grams; a record sharing at least {:.0}% of its n-grams with a task is dropped).\n\n",
            f.decontamination_checked,
            s.ngram,
            s.contamination_threshold * 100.0
        ));
        md.push_str("| benchmark | records overlapping (dropped) | rate |\n|---|---:|---:|\n");
        for (b, rate) in &f.contamination_rate {
            md.push_str(&format!("| {b} | {} | {:.2}% |\n", f.contaminated_by_benchmark.get(b).copied().unwrap_or(0), rate * 100.0));
        }
        if s.max_contamination > 0.0 {
            md.push_str(&format!("\nGate: the export fails when a benchmark's rate reaches {:.2}%", s.max_contamination * 100.0));
            if f.contamination_gate_failed.is_empty() {
                md.push_str(": passed.\n\n");
            } else {
                md.push_str(&format!(
                    ": **FAILED** for {}. The corpus likely contains the benchmark; this export is not complete.\n\n",
                    f.contamination_gate_failed.join(", ")
                ));
            }
        } else {
            md.push_str("\nNo gate was set (`export --max-contamination RATE`).\n\n");
        }
    }
    if !f.adequacy.is_empty() {
        md.push_str("## Test adequacy\n\n");
        md.push_str("How strong the tests that verified each record are: line coverage of the function under test and the share of ");
        md.push_str("its mutants the tests kill (mutation score); see unitcoder's docs/adequacy.md.\n\n");
        md.push_str("| bucket | line coverage | mutation score |\n|---|---:|---:|\n");
        for b in counter::ADEQUACY_BUCKETS {
            let n = |kind: &str| f.adequacy.get(&format!("{kind}_{b}")).copied().unwrap_or(0);
            md.push_str(&format!("| {b} | {} | {} |\n", n("coverage"), n("mutation")));
        }
        md.push_str(&format!(
            "\nGates: line coverage ≥ {}, mutation score ≥ {} (0 = no gate). Tiers written: {}. Rows by tier: {}.\n\n",
            s.min_line_coverage,
            s.min_mutation_score,
            s.tiers.iter().map(|t| t.as_str()).collect::<Vec<_>>().join(", "),
            f.tiers.iter().map(|(t, n)| format!("{t} {n}")).collect::<Vec<_>>().join(", ")
        ));
    }
    md.push_str("## Packages\n\n");
    let mut packages: Vec<(&String, &u64)> = f.packages.iter().collect();
    packages.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    md.push_str("| package | rows |\n|---|---:|\n");
    for (p, n) in packages.iter().take(20) {
        md.push_str(&format!("| {p} | {n} |\n"));
    }
    if packages.len() > 20 {
        let tail: u64 = packages[20..].iter().map(|(_, n)| **n).sum();
        md.push_str(&format!("| long tail: {} more packages | {tail} |\n", packages.len() - 20));
    }
    if !f.source_meta.is_empty() {
        md.push_str("\n## Source metadata\n\nFields kept from the input (`--keep-fields`, under `source.meta`), with the most common values:\n\n");
        md.push_str("| field | rows by value |\n|---|---|\n");
        for (field, values) in &f.source_meta {
            let mut v: Vec<(&String, &u64)> = values.iter().collect();
            v.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
            let mut shown: Vec<String> = v.iter().take(8).map(|(k, n)| format!("{k} {n}")).collect();
            if v.len() > 8 {
                shown.push(format!("… {} more values", v.len() - 8));
            }
            md.push_str(&format!("| {field} | {} |\n", shown.join(", ")));
        }
    }
    md.push_str("\n## Files\n\n");
    for sh in shards {
        md.push_str(&format!("- `{}`: {} rows, {} bytes\n", sh.file, sh.records, sh.bytes));
    }
    md.push_str("\n## Settings\n\n```toml\n[export]\n");
    md.push_str(&toml::to_string(s).unwrap_or_default());
    md.push_str("```\n\nDecontamination: token n-grams (comments and strings removed) against the reference solutions of ");
    md.push_str(if s.benchmarks.is_empty() {
        "HumanEval (MIT), MBPP (CC-BY-4.0) and BigCodeBench (Apache-2.0)"
    } else {
        "the configured benchmark files"
    });
    md.push_str("; a record is dropped when shared n-grams / min(record, task) reaches the threshold.\n");
    crate::shards::writer::write_atomic(&dir.join("README.md"), md.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_card_has_a_datasets_header_and_the_kept_source_fields() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = Funnel { exported: 1500, ..Default::default() };
        f.source_meta.entry("max_stars_repo_licenses".into()).or_default().insert("MIT".into(), 1200);
        f.source_meta.entry("max_stars_repo_licenses".into()).or_default().insert("Apache-2.0".into(), 300);
        let s = ExportSettings { compress: true, ..Default::default() };
        write_card(dir.path(), &f, &s, &[], &[]).unwrap();
        let card = std::fs::read_to_string(dir.path().join("README.md")).unwrap();
        assert!(card.starts_with("---\nconfigs:\n"), "{card}");
        assert!(card.contains("    path: \"data-*.jsonl.zst\"\n") && card.contains("- 1K<n<10K\n"), "{card}");
        assert!(card.contains("| max_stars_repo_licenses | MIT 1200, Apache-2.0 300 |"), "{card}");
    }

    #[test]
    fn built_in_benchmarks_load() {
        let index = load_benchmarks(&ExportSettings::default()).unwrap();
        assert!(index.len() > 2000, "{}", index.len());
    }
}
