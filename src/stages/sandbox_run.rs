//! `unitcoder sandbox-run`: execute every record's program against its unittest module in
//! the sandbox and attach a structured `verdict` (UnitCoder's execution step).
//!
//! For each input record, in input order:
//!   1. take the program (`--code-field`) and the test module (`--tests-field`);
//!   2. run them in a fresh fork of a warm, isolated worker (see `sandbox`);
//!   3. write the record back unchanged plus `verdict`.
//!
//! A record missing a field is written with an `error` instead; nothing is dropped.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context as _, Result};
use clap::Args;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::cli::Context;
use crate::python::PARSE_STACK_BYTES;
use crate::sandbox::{IsolationChoice, Sandbox, SandboxSettings, Status};
use crate::shards::manifest::{fingerprint, now_rfc3339, prepare_output};
use crate::shards::ordered::ordered_map;
use crate::shards::reader::{read_record_items, RecordItem};
use crate::shards::{expand_inputs, Manifest, ShardWriter, ShardWriterOptions};

#[derive(Debug, Clone, Args, Default)]
pub struct SandboxRunArgs {
    /// Parallel sandbox workers [default: number of cores].
    #[arg(long)]
    pub workers: Option<usize>,
    /// Wall-clock limit per check, seconds [default: 10].
    #[arg(long)]
    pub timeout: Option<f64>,
    /// Python interpreter for checks [default: $UNITCODER_PYTHON, .venv-sandbox/bin/python, python3].
    #[arg(long, value_name = "PATH")]
    pub python: Option<PathBuf>,
    /// Isolation mechanism [default: auto = strongest available].
    #[arg(long, value_enum)]
    pub isolation: Option<IsolationChoice>,
    /// Memory a check may allocate, MiB [default: 1024].
    #[arg(long)]
    pub memory_mb: Option<u64>,
    /// Modules to pre-import in each worker, comma-separated [default: numpy,pandas,matplotlib,scipy,sklearn].
    #[arg(long, value_delimiter = ',')]
    pub preimport: Option<Vec<String>>,
    #[command(flatten)]
    pub fields: RecordFields,
}

/// Which record fields hold the program and its tests.
#[derive(Debug, Clone, Args, Serialize, Deserialize)]
pub struct RecordFields {
    /// Field with the program (a full module).
    #[arg(long, default_value = "code")]
    pub code_field: String,
    /// Field with the unittest module (it refers to the program's names directly).
    #[arg(long, default_value = "tests")]
    pub tests_field: String,
    /// Field with the function name (reported with errors; optional in records).
    #[arg(long, default_value = "entry_point")]
    pub entry_point_field: String,
}

impl Default for RecordFields {
    fn default() -> Self {
        Self { code_field: "code".into(), tests_field: "tests".into(), entry_point_field: "entry_point".into() }
    }
}

/// Config section `[sandbox]` with flags on top.
pub fn resolve_settings(ctx: &Context, args: &SandboxRunArgs) -> SandboxSettings {
    let mut s = ctx.config.sandbox.clone();
    if let Some(v) = args.workers {
        s.workers = v;
    }
    if s.workers == 0 {
        s.workers = ctx.jobs;
    }
    if let Some(v) = args.timeout {
        s.timeout = v;
    }
    if let Some(v) = &args.python {
        s.python = v.display().to_string();
    }
    if let Some(v) = args.isolation {
        s.isolation = v;
    }
    if let Some(v) = args.memory_mb {
        s.memory_mb = v;
    }
    if let Some(v) = &args.preimport {
        s.preimport = v.iter().filter(|m| !m.is_empty()).cloned().collect();
    }
    s
}


#[derive(Debug, Default, Serialize)]
struct Counts {
    records: u64,
    by_status: BTreeMap<String, u64>,
    record_errors: BTreeMap<String, u64>,
    bad_lines: BTreeMap<String, u64>,
    check_ms_total: u64,
}

pub fn run(ctx: &Context, args: &SandboxRunArgs) -> Result<ExitCode> {
    let started = Instant::now();
    let started_at = now_rfc3339();
    let settings = resolve_settings(ctx, args);
    let fields = args.fields.clone();
    let out_dir = ctx.output_dir()?;
    anyhow::ensure!(!ctx.global.input.is_empty(), "--input is required");
    let inputs = expand_inputs(&ctx.global.input)?;
    let output_cfg = ctx.output_config();
    let settings_json = json!({ "sandbox": settings, "fields": fields, "output": output_cfg });
    let fp = fingerprint(&inputs.iter().map(|i| i.path.clone()).collect::<Vec<_>>(), &settings_json);
    if prepare_output(&out_dir, "sandbox-run", &fp, ctx.global.force)? {
        return Ok(ExitCode::SUCCESS);
    }
    let sandbox = Sandbox::start(settings.clone())?;
    let mut writer = ShardWriter::new(
        &out_dir,
        ShardWriterOptions { records_per_shard: output_cfg.records_per_shard, compress: output_cfg.compress, ..Default::default() },
    )?;
    let mut counts = Counts::default();
    let mut progress = crate::logging::Progress::new("sandbox-run", ctx.global.quiet);
    let max_line = ctx.record_line_limit();

    ordered_map(
        sandbox.settings.workers,
        sandbox.settings.workers * 4,
        PARSE_STACK_BYTES,
        |emit| {
            read_record_items(&inputs, max_line, emit)
        },
        |item| match item {
            RecordItem::Bad { .. } => item,
            RecordItem::Record(mut record) => {
                let code = record.get(&fields.code_field).and_then(Value::as_str);
                let tests = record.get(&fields.tests_field).and_then(Value::as_str);
                match (code, tests) {
                    (Some(code), Some(tests)) => {
                        let verdict = sandbox.check(code, tests);
                        record.insert("verdict".into(), serde_json::to_value(&verdict).unwrap_or(Value::Null));
                    }
                    _ => {
                        let missing: Vec<&str> = [(&fields.code_field, code.is_none()), (&fields.tests_field, tests.is_none())]
                            .into_iter()
                            .filter(|(_, m)| *m)
                            .map(|(f, _)| f.as_str())
                            .collect();
                        record.insert(
                            "error".into(),
                            json!({"stage": "sandbox-run", "kind": "missing_field", "message": format!("no string field {}", missing.join(", "))}),
                        );
                    }
                }
                RecordItem::Record(record)
            }
        },
        |item| {
            match item {
                RecordItem::Bad { file, line, bad } => {
                    tracing::warn!("{file}:{line}: skipped line: {} ({})", bad.reason, bad.detail);
                    *counts.bad_lines.entry(bad.reason.to_string()).or_default() += 1;
                }
                RecordItem::Record(record) => {
                    counts.records += 1;
                    if let Some(v) = record.get("verdict") {
                        let status = v.get("status").and_then(Value::as_str).unwrap_or("?").to_string();
                        counts.check_ms_total += v.get("duration_ms").and_then(Value::as_u64).unwrap_or(0);
                        *counts.by_status.entry(status).or_default() += 1;
                    } else if let Some(e) = record.get("error") {
                        let kind = e.get("kind").and_then(Value::as_str).unwrap_or("?").to_string();
                        *counts.record_errors.entry(kind).or_default() += 1;
                    }
                    writer.write(&record)?;
                }
            }
            progress.update(counts.records, || format!("{:?}", counts.by_status));
            Ok(())
        },
    )?;
    progress.finish();
    let shards = writer.finish()?;
    let elapsed = started.elapsed().as_secs_f64();
    let timings = json!({
        "checks_per_second": counts.records as f64 / elapsed.max(1e-9),
        "isolation": sandbox.isolation(),
        "python": sandbox.python.version,
        "python_executable": sandbox.python.executable,
        "preimported": sandbox.worker_info.preimported,
        "not_preimported": sandbox.worker_info.missing,
    });
    let manifest = Manifest::finished("sandbox-run", &inputs, fp, settings_json, serde_json::to_value(&counts)?, shards, started_at, started, timings);
    manifest.write(&out_dir)?;
    tracing::info!(
        "sandbox-run: {} records in {:.1}s ({:.1}/s): {:?}{}",
        counts.records,
        elapsed,
        counts.records as f64 / elapsed.max(1e-9),
        counts.by_status,
        if counts.record_errors.is_empty() { String::new() } else { format!(", record errors {:?}", counts.record_errors) }
    );
    let sandbox_errors = counts.by_status.get(Status::SandboxError.as_str()).copied().unwrap_or(0);
    if sandbox_errors > 0 {
        tracing::warn!("{sandbox_errors} checks ended in sandbox_error (our failure, not the code's): rerun them");
    }
    drop(sandbox);
    Ok(ExitCode::SUCCESS)
}

/// `unitcoder doctor`: what the sandbox would use here, and what is missing.
pub fn doctor(ctx: &Context, python: Option<PathBuf>) -> Result<ExitCode> {
    let mut settings = ctx.config.sandbox.clone();
    if let Some(p) = python {
        settings.python = p.display().to_string();
    }
    let requested = settings.resolve_python();
    println!("unitcoder {}", env!("CARGO_PKG_VERSION"));
    let info = match crate::sandbox::isolation::probe_python(&requested) {
        Ok(info) => info,
        Err(e) => {
            println!("python: {} — NOT USABLE: {e:#}", requested.display());
            println!("  hint: create the sandbox environment with scripts/setup-sandbox.sh, or pass --python PATH");
            return Ok(ExitCode::from(1));
        }
    };
    println!("python: {} (Python {}, prefix {})", info.executable.display(), info.version, info.prefix.display());
    let allow = crate::stages::extract::PackageAllowList::load("")?;
    let mut names: Vec<String> = settings.preimport.iter().map(|m| m.split('.').next().unwrap_or(m).to_string()).collect();
    let mut third: Vec<String> = allow.third_party.into_iter().collect();
    third.sort();
    names.extend(third);
    names.dedup();
    let script = "import importlib.util, json, sys\nout = {}\nfor n in json.loads(sys.argv[1]):\n    try:\n        out[n] = importlib.util.find_spec(n) is not None\n    except Exception:\n        out[n] = False\nprint(json.dumps(out))\n";
    let probe = std::process::Command::new(&info.executable)
        .args(["-I", "-c", script, &serde_json::to_string(&names)?])
        .output()
        .context("cannot run the interpreter")?;
    let found: BTreeMap<String, bool> = serde_json::from_slice(&probe.stdout).unwrap_or_default();
    let (have, missing): (Vec<_>, Vec<_>) = found.iter().partition(|(_, ok)| **ok);
    println!("pre-import list: {}", settings.preimport.iter().map(|m| {
        let root = m.split('.').next().unwrap_or(m);
        format!("{m} [{}]", if found.get(root).copied().unwrap_or(false) { "ok" } else { "missing" })
    }).collect::<Vec<_>>().join(", "));
    println!("importable allow-listed packages: {} of {}", have.len(), found.len());
    println!("  installed: {}", have.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(" "));
    println!("  missing:   {}", missing.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(" "));
    if !missing.is_empty() {
        println!("  hint: scripts/setup-sandbox.sh --full installs the BigCodeBench library set");
    }
    println!("isolation mechanisms:");
    for (name, ok, detail) in crate::sandbox::isolation::report(&info) {
        println!("  [{}] {name}: {detail}", if ok { "x" } else { " " });
    }
    match crate::sandbox::isolation::plan(settings.isolation, &info, settings.tmpfs_mb) {
        Ok(l) => println!("--isolation {:?} would use: {}", settings.isolation, l.description),
        Err(e) => println!("--isolation {:?}: {e:#}", settings.isolation),
    }
    Ok(ExitCode::SUCCESS)
}
