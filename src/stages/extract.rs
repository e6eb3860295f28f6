//! `unitcoder extract`: package-based function extraction (UnitCoder §3.1.1).
//!
//! For every Python document in the inputs:
//!   1. parse it (ruff, on a big-stack thread) and collect the module's imports;
//!   2. take each top-level `def` / `async def` as a candidate;
//!   3. keep it when it has arguments, returns a value, has a sensible length, has no nested
//!      definitions or inner imports, and every free name it reads is a builtin or a
//!      module-level import (optionally a literal constant);
//!   4. keep it only if every package it uses is on the allow-list — dropping that function,
//!      never the whole file;
//!   5. attach exactly the imports it uses, `__future__` first, to make `code` runnable;
//!   6. drop exact duplicates (normalised token text), first occurrence in input order wins.
//!
//! Every dropped candidate and every unusable document is counted by reason (and written
//! with `--rejects DIR`). Output order is the input order, whatever the thread count.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context as _, Result};
use clap::Args;
use serde::Serialize;
use serde_json::json;

use crate::context::Context;
use crate::python::extractor::{Candidate, DropReason, ExtractSettings, Extractor, PackageAllowList};
use crate::python::{self};
use crate::record::RejectRecord;
use crate::shards::manifest::{fingerprint, now_rfc3339, prepare_output};
use crate::shards::ordered::ordered_map;
use crate::shards::reader::{read_source_docs, BadInput, SourceDoc, SourceFields};
use crate::shards::writer::clear_previous_output;
use crate::shards::{Manifest, ShardWriter, ShardWriterOptions};

#[derive(Debug, Clone, Args, Default)]
#[command(next_help_heading = "Extraction rules")]
pub struct ExtractArgs {
    /// Minimum function length in lines [default: 3].
    #[arg(long)]
    pub min_lines: Option<usize>,
    /// Maximum function length in lines [default: 200].
    #[arg(long)]
    pub max_lines: Option<usize>,
    /// Minimum number of parameters [default: 1].
    #[arg(long)]
    pub min_args: Option<usize>,
    /// Keep functions without `return <value>`.
    #[arg(long)]
    pub allow_no_return: bool,
    /// Keep functions with nested `def`/`class`.
    #[arg(long)]
    pub allow_nested_defs: bool,
    /// Keep functions with `import` statements inside them.
    #[arg(long)]
    pub allow_inner_imports: bool,
    /// Keep functions that use no imported package.
    #[arg(long)]
    pub allow_no_package: bool,
    /// Pull module-level literal constants the function reads into `code`.
    #[arg(long)]
    pub include_constants: bool,
    /// Keep exact duplicates.
    #[arg(long)]
    pub no_dedup: bool,
    /// Balance packages: drop a function once every package it uses has N kept
    /// functions (first in input order; `package_quota`) [default: 0 = off].
    #[arg(long, value_name = "N")]
    pub max_per_package: Option<usize>,
    /// Python version whose syntax `code` must compile on [default: 3.11].
    #[arg(long, value_name = "X.Y")]
    pub target_python: Option<String>,
    /// Package allow-list TOML [default: built-in configs/packages.toml].
    #[arg(long, value_name = "FILE")]
    pub packages: Option<PathBuf>,
    /// Also write every dropped candidate and unusable document, with its reason, here.
    #[arg(long, value_name = "DIR")]
    pub rejects: Option<PathBuf>,
}

impl ExtractArgs {
    /// `[extract]`, then flags on top.
    pub fn resolve(&self, ctx: &Context) -> Result<ExtractSettings> {
        let args = self;
        let mut s: ExtractSettings = ctx.config.section("extract")?;
        if let Some(v) = args.min_lines {
            s.min_lines = v;
        }
        if let Some(v) = args.max_lines {
            s.max_lines = v;
        }
        if let Some(v) = args.min_args {
            s.min_args = v;
        }
        s.require_return_value &= !args.allow_no_return;
        s.allow_nested_defs |= args.allow_nested_defs;
        s.allow_inner_imports |= args.allow_inner_imports;
        s.require_package &= !args.allow_no_package;
        s.include_constants |= args.include_constants;
        s.dedup &= !args.no_dedup;
        if let Some(v) = args.max_per_package {
            s.max_per_package = v;
        }
        if let Some(v) = &args.target_python {
            s.target_python = v.clone();
        }
        s.packages_file = match &args.packages {
            Some(p) => p.display().to_string(),
            // Relative paths in a config file are relative to the config file.
            None => ctx.config_path(&s.packages_file),
        };
        Ok(s)
    }
}

/// What one document turned into.
enum DocOutcome {
    Bad { doc: SourceDoc, bad: BadInput },
    Parsed { doc: SourceDoc, candidates: Vec<Candidate> },
}

/// Counters for the manifest.
#[derive(Debug, Default, Serialize)]
pub struct ExtractCounts {
    pub documents: u64,
    pub documents_parsed: u64,
    pub bytes: u64,
    pub candidates: u64,
    pub kept: u64,
    pub dropped: BTreeMap<String, u64>,
    pub bad_input: BTreeMap<String, u64>,
    pub packages: BTreeMap<String, u64>,
    pub unreadable_files: u64,
    /// The first few unusable documents (place: reason), for the log.
    #[serde(skip)]
    pub bad_examples: Vec<String>,
}

/// `unitcoder extract`.
pub fn run(ctx: &Context, args: &ExtractArgs) -> Result<ExitCode> {
    run_until(ctx, args, None)
}

/// `extract`, stopping once `max_kept` functions are kept (`run --limit N`: the first N
/// functions in input order).
pub fn run_until(ctx: &Context, args: &ExtractArgs, max_kept: Option<u64>) -> Result<ExitCode> {
    let started = Instant::now();
    let started_at = now_rfc3339();
    let settings = args.resolve(ctx)?;
    let allow = PackageAllowList::load(&settings.packages_file)?;
    let extractor = Extractor::new(settings.clone(), allow)?;
    let input_cfg = &ctx.input;
    let output_cfg = &ctx.output_format;
    let out_dir = ctx.output_dir()?;
    // With ranks, each rank writes its own rejects (two ranks in one directory clobber each other).
    let rejects_dir = args.rejects.clone().map(|dir| ctx.rank_dir(dir));
    let (globals, inputs): (Vec<usize>, Vec<_>) = ctx.corpus_files()?.into_iter().unzip();

    let settings_json = json!({ "extract": settings, "input": input_cfg, "output": output_cfg, "limit": ctx.limit, "max_kept": max_kept });
    let input_paths: Vec<PathBuf> = inputs.iter().map(|i| i.path.clone()).collect();
    let fp = fingerprint(&input_paths, &settings_json);
    let rejects_current = rejects_dir.as_deref().is_none_or(|dir| rejects_up_to_date(dir, &fp));
    if !ctx.force && rejects_current && prepare_output(&out_dir, "extract", &fp, false)? {
        // The same status as the run that wrote it: a rerun must not turn an error into success.
        let unreadable = Manifest::read(&out_dir)?.and_then(|m| m.counts.get("unreadable_files").and_then(|v| v.as_u64())).unwrap_or(0);
        if unreadable > 0 {
            tracing::error!("extract: {unreadable} input file(s) could not be read (see the first run's log; --force redoes it)");
        }
        return Ok(exit_status(unreadable));
    }
    prepare_output(&out_dir, "extract", &fp, true)?;
    let shard_options = ShardWriterOptions { records_per_shard: output_cfg.records_per_shard, compress: output_cfg.compress, ..Default::default() };
    let mut writer = ShardWriter::new(&out_dir, shard_options.clone())?;
    let mut rejects = rejects_dir.as_deref().map(|dir| open_rejects(dir, &shard_options)).transpose()?;

    tracing::info!("extract: {} input files → {} ({} workers)", inputs.len(), out_dir.display(), ctx.jobs);
    let fields = SourceFields {
        content: input_cfg.content_field.clone(),
        id: input_cfg.id_field.clone(),
        path: input_cfg.path_field.clone(),
        keep: input_cfg.keep_fields.clone(),
    };
    let mut counts = ExtractCounts::default();
    let mut seen: HashSet<[u8; 16]> = HashSet::new();
    let mut positions = Positions { globals, file: usize::MAX, next: 0 };
    // `.py` inputs are one document each: then the total is known.
    let all_py = inputs.iter().all(|i| i.format == crate::shards::InputFormat::PySource);
    let total = all_py.then(|| ctx.limit.map_or(inputs.len() as u64, |l| l.min(inputs.len() as u64)));
    let spec = crate::logging::ProgressSpec {
        label: "extract",
        unit: "documents",
        second: "functions kept",
        total,
        resumed: 0,
        place: out_dir.display().to_string(),
    };
    let mut progress = crate::logging::Progress::new(spec, ctx.quiet);
    let mut read_summary = Default::default();
    let enough = std::sync::atomic::AtomicBool::new(false);
    let doc_limit = ctx.limit.unwrap_or(u64::MAX);

    // Reader → parse workers (big stacks) → dedup and write in input order.
    ordered_map(
        ctx.jobs,
        ctx.jobs * 16,
        python::PARSE_STACK_BYTES,
        |emit| {
            let mut sent = 0u64;
            read_summary = read_source_docs(&inputs, &fields, input_cfg.max_doc_bytes, |doc| {
                sent += 1;
                sent <= doc_limit && !enough.load(std::sync::atomic::Ordering::Relaxed) && emit(doc)
            });
            Ok(())
        },
        |mut doc: SourceDoc| match std::mem::replace(&mut doc.content, Ok(String::new())) {
            Err(bad) => DocOutcome::Bad { doc, bad },
            Ok(text) => match extractor.extract(&text, &doc.id, doc.path.as_deref()) {
                Ok(candidates) => DocOutcome::Parsed { doc, candidates },
                Err(bad) => DocOutcome::Bad { doc, bad },
            },
        },
        |outcome| {
            if max_kept.is_some_and(|m| counts.kept >= m) {
                return Ok(()); // read before the reader heard it was enough: not part of this run
            }
            emit(outcome, &mut counts, &mut seen, &mut positions, &settings, max_kept, &mut writer, rejects.as_mut())?;
            if max_kept.is_some_and(|m| counts.kept >= m) {
                enough.store(true, std::sync::atomic::Ordering::Relaxed);
            }
            progress.update(counts.documents, counts.kept);
            Ok(())
        },
    )?;
    progress.finish();
    let read_summary: crate::shards::reader::ReadSummary = read_summary;
    counts.unreadable_files = read_summary.unreadable_files;

    let shards = writer.finish()?;
    if let (Some(r), Some(dir)) = (rejects, &rejects_dir) {
        let counts_json = json!({ "dropped": counts.dropped, "bad_input": counts.bad_input });
        Manifest::finished(
            "extract-rejects",
            &inputs,
            fp.clone(),
            settings_json.clone(),
            counts_json,
            r.finish()?,
            started_at.clone(),
            started,
            json!({}),
        )
        .write(dir)?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let timings = json!({
        "documents_per_second": counts.documents as f64 / elapsed.max(1e-9),
        "megabytes_per_second": counts.bytes as f64 / 1e6 / elapsed.max(1e-9),
    });
    Manifest::finished("extract", &inputs, fp, settings_json, serde_json::to_value(&counts)?, shards, started_at, started, timings)
        .write(&out_dir)?;
    log_summary(&counts, elapsed, args.rejects.is_some());
    Ok(exit_status(counts.unreadable_files))
}

/// Unreadable input files make extract fail (the output lacks their documents).
fn exit_status(unreadable_files: u64) -> ExitCode {
    if unreadable_files > 0 {
        crate::exit::code(crate::exit::FATAL)
    } else {
        ExitCode::SUCCESS
    }
}

/// `--rejects DIR` already holds the rejects of this very extraction.
fn rejects_up_to_date(dir: &std::path::Path, fingerprint: &str) -> bool {
    matches!(Manifest::read(dir), Ok(Some(m)) if m.stage == "extract-rejects" && m.complete && m.fingerprint == fingerprint && m.shards_present(dir))
}

/// Each kept function's place in the corpus (`source.position`): the input file's index in
/// the whole listing (not this rank's share) and the candidate's number within the file.
struct Positions {
    /// Global index of each of this rank's input files.
    globals: Vec<usize>,
    file: usize,
    next: u64,
}

impl Positions {
    fn next(&mut self, file_index: usize) -> [u64; 2] {
        if file_index != self.file {
            (self.file, self.next) = (file_index, 0);
        }
        self.next += 1;
        [self.globals.get(file_index).copied().unwrap_or(file_index) as u64, self.next - 1]
    }
}

/// The rejects shards of `--rejects DIR` (earlier ones removed).
fn open_rejects(dir: &std::path::Path, options: &ShardWriterOptions) -> Result<ShardWriter> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create rejects directory {}", dir.display()))?;
    clear_previous_output(dir, "rejects")?;
    ShardWriter::new(dir, ShardWriterOptions { prefix: "rejects".into(), ..options.clone() })
}

fn log_summary(counts: &ExtractCounts, elapsed: f64, with_rejects: bool) {
    let dropped: u64 = counts.dropped.values().sum();
    let bad: u64 = counts.bad_input.values().sum();
    if bad > 0 {
        let rejects = if with_rejects { "" } else { "; --rejects DIR writes every one with its reason" };
        tracing::info!("extract: unusable documents, first ones: {}{rejects}", counts.bad_examples.join("; "));
    }
    let message = format!(
        "extract: {} documents ({:.1} MB) in {:.2}s, {} candidates → {} kept, {} dropped {:?}, {} unusable documents {:?}",
        counts.documents,
        counts.bytes as f64 / 1e6,
        elapsed,
        counts.candidates,
        counts.kept,
        dropped,
        counts.dropped,
        bad,
        counts.bad_input
    );
    if crate::logging::json_logs() {
        tracing::info!(
            stage = "extract",
            documents = counts.documents,
            bytes = counts.bytes,
            seconds = elapsed,
            candidates = counts.candidates,
            kept = counts.kept,
            dropped,
            unusable = bad,
            dropped_by_reason = %json!(counts.dropped),
            unusable_by_reason = %json!(counts.bad_input),
            "{message}"
        );
    } else {
        tracing::info!("{message}");
    }
}

/// Every package of a function already has `max` kept functions (`max` 0: no quota).
fn over_quota(packages: &[String], kept: &BTreeMap<String, u64>, max: usize) -> bool {
    max > 0 && !packages.is_empty() && packages.iter().all(|p| kept.get(p).copied().unwrap_or(0) >= max as u64)
}

/// Count, dedup and write one document's outcome (called in input order).
#[allow(clippy::too_many_arguments)]
fn emit(
    outcome: DocOutcome,
    counts: &mut ExtractCounts,
    seen: &mut HashSet<[u8; 16]>,
    positions: &mut Positions,
    settings: &ExtractSettings,
    max_kept: Option<u64>,
    writer: &mut ShardWriter,
    mut rejects: Option<&mut ShardWriter>,
) -> Result<()> {
    counts.documents += 1;
    match outcome {
        DocOutcome::Bad { doc, bad } => {
            counts.bytes += doc.bytes;
            *counts.bad_input.entry(bad.reason.to_string()).or_default() += 1;
            let place = doc.line.map(|l| format!("{}:{l}", doc.file)).unwrap_or_else(|| doc.file.to_string());
            tracing::debug!("{place}: skipped document {}: {} ({})", doc.id, bad.reason, bad.detail);
            if counts.bad_examples.len() < 3 {
                counts.bad_examples.push(format!("{place}: {} ({})", bad.reason, bad.detail));
            }
            if let Some(r) = rejects.as_deref_mut() {
                r.write(&RejectRecord {
                    reason: bad.reason.to_string(),
                    detail: bad.detail,
                    file: doc.file.to_string(),
                    line: doc.line,
                    doc_id: Some(doc.id),
                    entry_point: None,
                    source: None,
                    function: None,
                })?;
            }
        }
        DocOutcome::Parsed { doc, candidates } => {
            counts.bytes += doc.bytes;
            counts.documents_parsed += 1;
            for candidate in candidates {
                if max_kept.is_some_and(|m| counts.kept >= m) {
                    break;
                }
                counts.candidates += 1;
                let position = positions.next(doc.file_index);
                let outcome = match candidate.outcome {
                    Ok(kept) if settings.dedup && !seen.insert(kept.norm_hash) => Err((DropReason::Duplicate, String::new())),
                    Ok(kept) if over_quota(&kept.record.packages, &counts.packages, settings.max_per_package) => {
                        Err((DropReason::PackageQuota, format!("{} each have {} kept", kept.record.packages.join(", "), settings.max_per_package)))
                    }
                    other => other,
                };
                match outcome {
                    Ok(mut kept) => {
                        counts.kept += 1;
                        kept.record.source.position = Some(position);
                        kept.record.dedup_key = Some(crate::hash::hex(&kept.norm_hash));
                        if !doc.meta.is_empty() {
                            kept.record.source.meta = Some(doc.meta.clone());
                        }
                        for p in &kept.record.packages {
                            *counts.packages.entry(p.clone()).or_default() += 1;
                        }
                        writer.write(&kept.record)?;
                    }
                    Err((reason, detail)) => {
                        *counts.dropped.entry(reason.as_str().to_string()).or_default() += 1;
                        if let Some(r) = rejects.as_deref_mut() {
                            r.write(&RejectRecord {
                                reason: reason.as_str().to_string(),
                                detail,
                                file: doc.file.to_string(),
                                line: doc.line,
                                doc_id: Some(doc.id.clone()),
                                entry_point: Some(candidate.name),
                                source: Some(candidate.source),
                                function: Some(candidate.function),
                            })?;
                        }
                    }
                }
            }
        }
    }
    Ok(())
}
