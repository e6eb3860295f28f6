//! `unitcoder doctor`: what the sandbox would use here, and what is missing — the
//! interpreter, the pre-import list, the allow-listed packages that import, and the
//! isolation mechanisms available.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use clap::Args;

use crate::context::Context;
use crate::python::extractor::PackageAllowList;

#[derive(Debug, Clone, Args, Default)]
pub struct DoctorArgs {
    /// Interpreter to inspect [default: as sandbox-run would pick].
    #[arg(long, value_name = "PATH")]
    pub python: Option<PathBuf>,
}

const FIND_SPECS: &str = "import importlib.util, json, sys\nout = {}\nfor n in json.loads(sys.argv[1]):\n    try:\n        out[n] = importlib.util.find_spec(n) is not None\n    except Exception:\n        out[n] = False\nprint(json.dumps(out))\n";

pub fn run(ctx: &Context, args: &DoctorArgs) -> Result<ExitCode> {
    let mut settings = ctx.config.sandbox.clone();
    if let Some(p) = &args.python {
        settings.python = p.display().to_string();
    }
    let requested = settings.resolve_python();
    println!("unitcoder {}", env!("CARGO_PKG_VERSION"));
    let info = match crate::sandbox::isolation::probe_python(&requested) {
        Ok(info) => info,
        Err(e) => {
            println!("python: {} — NOT USABLE: {e:#}", requested.display());
            println!("  hint: create the sandbox environment with scripts/setup-sandbox.sh, or pass --python PATH");
            return Ok(crate::exit::code(crate::exit::FATAL));
        }
    };
    println!("python: {} (Python {}, prefix {})", info.executable.display(), info.version, info.prefix.display());

    // Packages: the pre-import list first, then the allow-list's third-party packages.
    let allow = PackageAllowList::load("")?;
    let mut names: Vec<String> = settings.preimport.iter().map(|m| m.split('.').next().unwrap_or(m).to_string()).collect();
    let mut third: Vec<String> = allow.third_party.into_iter().collect();
    third.sort();
    names.extend(third);
    names.dedup();
    let probe = std::process::Command::new(&info.executable)
        .args(["-I", "-c", FIND_SPECS, &serde_json::to_string(&names)?])
        .output()
        .context("cannot run the interpreter")?;
    let found: BTreeMap<String, bool> = serde_json::from_slice(&probe.stdout).unwrap_or_default();
    let (have, missing): (Vec<_>, Vec<_>) = found.iter().partition(|(_, ok)| **ok);
    let preimport: Vec<String> = settings
        .preimport
        .iter()
        .map(|m| {
            let root = m.split('.').next().unwrap_or(m);
            format!("{m} [{}]", if found.get(root).copied().unwrap_or(false) { "ok" } else { "missing" })
        })
        .collect();
    println!("pre-import list: {}", preimport.join(", "));
    println!("importable allow-listed packages: {} of {}", have.len(), found.len());
    println!("  installed: {}", have.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(" "));
    println!("  missing:   {}", missing.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(" "));
    if !missing.is_empty() {
        println!("  hint: scripts/setup-sandbox.sh --full installs the BigCodeBench library set");
    }

    // Defence layers besides the isolation mechanism.
    let allowed = if settings.policy_allow.is_empty() { String::new() } else { format!("; allowed: {}", settings.policy_allow.join(", ")) };
    if settings.policy {
        println!("static policy: on, {} rules{allowed} (docs/sandbox.md)", crate::sandbox::policy::RULES.len());
    } else {
        println!("static policy: OFF ([sandbox] policy = false)");
    }
    match (settings.memory_cgroup, crate::sandbox::cgroup::Hierarchy::find()) {
        (true, Some(h)) => println!("memory limit: {} per worker, memfd/shm/children counted", h.describe()),
        (true, None) => println!("memory limit: per-process rlimit only (no writable memory cgroup here)"),
        (false, _) => println!("memory limit: per-process rlimit only ([sandbox] memory_cgroup = false)"),
    }

    // Isolation.
    let a = &ctx.config.adequacy;
    if a.enabled {
        let mut parts = info.version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
        let monitoring = (parts.next().unwrap_or(0), parts.next().unwrap_or(0)) >= (3, 12);
        let how = if monitoring { "sys.monitoring" } else { "a line recorder compiled into the function (Python < 3.12)" };
        let coverage = if a.coverage { format!("line coverage by {how}") } else { "no coverage".to_string() };
        println!("test adequacy: {} reruns, {coverage}, {} mutants per function (docs/adequacy.md)", a.reruns, a.mutants);
    } else {
        println!("test adequacy: OFF ([adequacy] enabled = false)");
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
