//! `unitcoder doctor`: what the sandbox would use here, and what is missing — the
//! interpreter, the pre-import list, the allow-listed packages that import, and the
//! isolation mechanisms available — and whether the configured LLM endpoints answer:
//! reachable, key accepted, model served, context size, `n` limit.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use clap::Args;

use crate::context::Context;
use crate::python::extractor::PackageAllowList;

#[derive(Debug, Clone, Args, Default)]
#[command(next_help_heading = "Doctor")]
pub struct DoctorArgs {
    /// Interpreter to inspect [default: as sandbox-run would pick].
    #[arg(long, value_name = "PATH")]
    pub python: Option<PathBuf>,
    /// Skip the LLM endpoint checks.
    #[arg(long)]
    pub no_llm: bool,
    #[command(flatten)]
    pub llm: crate::llm::LlmArgs,
}

const FIND_SPECS: &str = "import importlib.util, json, sys\nout = {}\nfor n in json.loads(sys.argv[1]):\n    try:\n        out[n] = importlib.util.find_spec(n) is not None\n    except Exception:\n        out[n] = False\nprint(json.dumps(out))\n";

pub fn run(ctx: &Context, args: &DoctorArgs) -> Result<ExitCode> {
    let mut settings = ctx.config.sandbox.clone();
    if let Some(p) = &args.python {
        settings.python = p.display().to_string();
    }
    let (requested, found_via) = settings.find_python();
    println!("unitcoder {}", env!("CARGO_PKG_VERSION"));
    let info = match crate::sandbox::isolation::probe_python(&requested) {
        Ok(info) => info,
        Err(e) => {
            println!("python: {} — NOT USABLE: {e:#}", requested.display());
            println!("  hint: create the sandbox environment with scripts/setup-sandbox.sh, or pass --python PATH");
            return Ok(crate::exit::code(crate::exit::FATAL));
        }
    };
    println!("python: {} (Python {}, prefix {}; found via {found_via})", info.executable.display(), info.version, info.prefix.display());

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
    // None of them importable: this is not a sandbox environment (a bare system python3).
    let unusable =
        !settings.preimport.is_empty() && !settings.preimport.iter().any(|m| found.get(m.split('.').next().unwrap_or(m)).copied().unwrap_or(false));
    if unusable {
        println!("  ERROR: this interpreter imports none of the pre-import list: every function using them would end as missing_package.");
        println!("  hint: scripts/setup-sandbox.sh creates .venv-sandbox/ (found from any directory), or set --python / [sandbox] python / $UNITCODER_PYTHON");
    }
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
    let sandbox_status = if unusable { crate::exit::FATAL } else { crate::exit::SUCCESS };
    if args.no_llm {
        return Ok(crate::exit::code(sandbox_status));
    }
    let llm_status = check_llm(crate::stages::common::llm_settings(ctx, &args.llm))?;
    Ok(crate::exit::code(if llm_status != crate::exit::SUCCESS { llm_status } else { sandbox_status }))
}

/// The LLM section: each endpoint's answer to `GET /models`, then one 1-token request
/// (llama.cpp lists models without checking the key; vLLM checks the model only there).
fn check_llm(settings: crate::llm::LlmSettings) -> Result<u8> {
    use crate::llm::server::ProbeError;
    let key = if std::env::var(&settings.api_key_env).is_ok_and(|k| !k.is_empty()) { "set" } else { "not set" };
    println!(
        "LLM: model `{}`, max_tokens {}, concurrency {} sequences, API key ${} {key}",
        settings.model, settings.max_tokens, settings.concurrency, settings.api_key_env
    );
    if settings.base_urls.is_empty() {
        println!("  endpoints: none configured — set --base-url URL, [llm] base_urls or OPENAI_BASE_URL (cached answers still work)");
        return Ok(crate::exit::SUCCESS);
    }
    let check = crate::llm::LlmSettings { max_tokens: 1, max_retries: 0, preflight: false, offline: false, cache: String::new(), ..settings.clone() };
    let client = crate::llm::LlmClient::new(check, None)?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let mut usable = 0;
    for (url, probe) in runtime.block_on(client.probe_endpoints()) {
        match probe {
            Err(ProbeError::Unreachable(why)) => println!("  [ ] {url}: NOT REACHABLE ({why})"),
            Err(ProbeError::Auth(status, why)) => println!("  [ ] {url}: API KEY REFUSED (HTTP {status}: {why}); set ${}", settings.api_key_env),
            Ok(info) => {
                let family = if info.family.is_empty() { "OpenAI-compatible".to_string() } else { info.family.clone() };
                let served = match info.serves(&settings.model) {
                    Some(true) => "model served".to_string(),
                    Some(false) => format!("model NOT LISTED (it lists: {})", info.models.join(", ")),
                    None => "lists no models".to_string(),
                };
                let context = info.context.map_or("context unknown".into(), |c| format!("context {c} tokens"));
                let n = match (settings.max_n, info.slots) {
                    (0, Some(s)) => format!("n ≤ {s} (its slots)"),
                    (0, None) => "n limit unknown (learned from the first 400 that states it)".into(),
                    (m, _) => format!("n ≤ {m} ([llm] max_n)"),
                };
                println!("  [x] {url}: {family}, {served}, {context}, {n}");
                if let Some(c) = info.context.filter(|c| u64::from(settings.max_tokens) >= *c) {
                    println!("      max_tokens {} leaves no room for a prompt in {c} tokens of context", settings.max_tokens);
                }
                let messages = [crate::llm::Message { role: "user".into(), content: "Say OK.".into() }];
                let single = crate::llm::LlmClient::new(crate::llm::LlmSettings { base_urls: vec![url.clone()], ..client.settings.clone() }, None)?;
                match runtime.block_on(single.generate(&messages, 1)) {
                    Ok(_) => {
                        usable += 1;
                        println!("      a 1-token request: ok");
                    }
                    Err(e) => println!("      a 1-token request: FAILED ({}: {e})", e.kind()),
                }
            }
        }
    }
    Ok(if usable == 0 { crate::exit::LLM_UNUSABLE } else { crate::exit::SUCCESS })
}
