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
use std::sync::Arc;

use anyhow::{Context as _, Result};
use clap::Args;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::cli::Context;
use crate::executor::{error_value, run_stage, BoxFuture, Counts, Record, Step};
use crate::sandbox::{IsolationChoice, Sandbox, SandboxSettings, Status};

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

/// The sandbox-run step: the record plus `verdict` (or an `error` when a field is missing).
pub struct SandboxStep {
    pub sandbox: Arc<Sandbox>,
    pub fields: RecordFields,
}

impl SandboxStep {
    pub fn verify(&self, mut record: Record) -> Record {
        let fields = &self.fields;
        let code = record.get(&fields.code_field).and_then(Value::as_str);
        let tests = record.get(&fields.tests_field).and_then(Value::as_str);
        match (code, tests) {
            (Some(code), Some(tests)) => {
                let verdict = self.sandbox.check(code, tests);
                record.insert("verdict".into(), serde_json::to_value(&verdict).unwrap_or(Value::Null));
            }
            _ => {
                let missing: Vec<&str> = [(&fields.code_field, code.is_none()), (&fields.tests_field, tests.is_none())]
                    .into_iter()
                    .filter(|(_, m)| *m)
                    .map(|(f, _)| f.as_str())
                    .collect();
                record.insert("error".into(), error_value("sandbox-run", "missing_field", format!("no string field {}", missing.join(", ")), false));
            }
        }
        record
    }
}

/// Run blocking sandbox work off the async threads.
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(f).await {
        Ok(v) => v,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// One check off the async threads, its verdict as JSON.
pub async fn check_json(sandbox: Arc<Sandbox>, code: String, tests: String) -> Value {
    blocking(move || serde_json::to_value(sandbox.check(&code, &tests)).unwrap_or(Value::Null)).await
}

/// Records in flight for a step that uses both a model and the sandbox.
pub fn llm_sandbox_window(llm_concurrency: usize, sandbox: &Sandbox) -> usize {
    (llm_concurrency * 2).max(sandbox.settings.workers * 4).max(16)
}

pub fn verdict_status(record: &Record) -> Option<&str> {
    record.get("verdict").and_then(|v| v.get("status")).and_then(Value::as_str)
}

impl Step for SandboxStep {
    fn name(&self) -> &'static str {
        "sandbox-run"
    }

    fn process(self: Arc<Self>, record: Record) -> BoxFuture {
        Box::pin(blocking(move || self.verify(record)))
    }

    fn settings(&self) -> Value {
        json!({"sandbox": self.sandbox.settings, "fields": self.fields})
    }

    fn needs_retry(&self, out: &Record) -> bool {
        verdict_status(out) == Some(Status::SandboxError.as_str())
    }

    fn tally(&self, out: &Record, counts: &mut Counts) {
        if let Some(status) = verdict_status(out) {
            counts.bump(format!("verdict_{status}"));
        }
    }

    fn report(&self) -> Value {
        sandbox_report(&self.sandbox)
    }
}

/// What the sandbox really used, for manifests.
pub fn sandbox_report(sandbox: &Sandbox) -> Value {
    json!({
        "isolation": sandbox.isolation(),
        "python": sandbox.python.version,
        "python_executable": sandbox.python.executable,
        "preimported": sandbox.worker_info.preimported,
        "not_preimported": sandbox.worker_info.missing,
    })
}

pub fn run(ctx: &Context, args: &SandboxRunArgs) -> Result<ExitCode> {
    let settings = resolve_settings(ctx, args);
    let sandbox = Arc::new(Sandbox::start(settings)?);
    let workers = sandbox.settings.workers;
    run_stage(ctx, Arc::new(SandboxStep { sandbox, fields: args.fields.clone() }), workers * 4)
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
    println!(
        "pre-import list: {}",
        settings
            .preimport
            .iter()
            .map(|m| {
                let root = m.split('.').next().unwrap_or(m);
                format!("{m} [{}]", if found.get(root).copied().unwrap_or(false) { "ok" } else { "missing" })
            })
            .collect::<Vec<_>>()
            .join(", ")
    );
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
