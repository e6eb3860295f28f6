//! `unitcoder stats DIR`: the funnel of a work directory, from the stages' manifests (and,
//! for the package distribution, the export manifest or the last record stage's shards).
//! Ranks (`rank-*` subdirectories) are added up.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use serde::Serialize;
use serde_json::{json, Value};

use crate::context::Context;
use crate::record::counter;
use crate::shards::Manifest;

#[derive(Debug, Clone, Args)]
pub struct StatsArgs {
    /// A work directory (from `unitcoder run`) or any directory of stage outputs.
    pub dir: PathBuf,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Packages listed before the long tail.
    #[arg(long, default_value_t = 15)]
    pub top: usize,
}

#[derive(Debug, Default, Serialize)]
pub struct StageStats {
    pub stage: String,
    pub manifests: usize,
    /// The world size of its rank folders (1: not split).
    pub world_size: usize,
    pub complete: bool,
    pub records: u64,
    pub ok: u64,
    pub errors_by_kind: BTreeMap<String, u64>,
    pub retryable: u64,
    pub outcomes: BTreeMap<String, u64>,
    pub elapsed_seconds: f64,
    pub llm_requests: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cost_usd: f64,
}

#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub stages: Vec<StageStats>,
    /// Share of checked records passing: initially, then after each fix round.
    pub pass_rate_by_round: Vec<(String, f64)>,
    pub refine_success: Option<f64>,
    pub packages: Vec<(String, u64)>,
    pub total_tokens: u64,
    pub total_cost_usd: f64,
    /// Test adequacy of the verified records at the last stage that measured it.
    pub adequacy: Option<AdequacyReport>,
    /// Exported rows by tier.
    pub tiers: BTreeMap<String, u64>,
    /// What makes these numbers doubtful (mixed world sizes).
    pub warnings: Vec<String>,
}

/// Distributions of line coverage and mutation score (verified records per bucket).
#[derive(Debug, Default, Serialize)]
pub struct AdequacyReport {
    pub stage: String,
    pub verified: u64,
    pub coverage: Vec<(String, u64)>,
    pub mutation: Vec<(String, u64)>,
}

impl AdequacyReport {
    fn from_outcomes(stage: &str, outcomes: &BTreeMap<String, u64>) -> Option<AdequacyReport> {
        let mut r = AdequacyReport { stage: stage.to_string(), ..Default::default() };
        for bucket in counter::ADEQUACY_BUCKETS {
            r.coverage.push((bucket.to_string(), outcomes.get(&counter::coverage_key(bucket)).copied().unwrap_or(0)));
            r.mutation.push((bucket.to_string(), outcomes.get(&counter::mutation_key(bucket)).copied().unwrap_or(0)));
        }
        r.verified = r.coverage.iter().map(|(_, n)| n).sum();
        (r.verified > 0).then_some(r)
    }

    /// Verified records at or above the lower bound of bucket `from` (index into the buckets).
    fn at_least(dist: &[(String, u64)], from: usize) -> u64 {
        dist.iter().skip(from).map(|(_, n)| n).sum()
    }
}

/// Every manifest under `dir`, with the world size of the rank folder it is in (if any).
fn manifests_under(dir: &Path) -> Vec<(Option<usize>, Manifest)> {
    let mut out = Vec::new();
    // Hidden directories hold a stage's own intermediate output (problems/.generated).
    let visible = |e: &walkdir::DirEntry| e.depth() == 0 || !e.file_name().to_string_lossy().starts_with('.');
    for entry in walkdir::WalkDir::new(dir).max_depth(3).sort_by_file_name().into_iter().filter_entry(visible).flatten() {
        if entry.file_name() == "manifest.json" {
            let parent = entry.path().parent().unwrap_or(dir);
            if let Ok(Some(m)) = Manifest::read(parent) {
                let world = parent.file_name().and_then(|n| crate::shards::ranks::parse_dir_name(&n.to_string_lossy())).map(|(_, w)| w);
                out.push((world, m));
            }
        }
    }
    out
}

fn add_map(into: &mut BTreeMap<String, u64>, v: Option<&Value>) {
    if let Some(obj) = v.and_then(Value::as_object) {
        for (k, n) in obj {
            if let Some(n) = n.as_u64() {
                *into.entry(k.clone()).or_default() += n;
            }
        }
    }
}

pub fn collect(dir: &Path) -> Result<Report> {
    let manifests = manifests_under(dir);
    anyhow::ensure!(!manifests.is_empty(), "{}: no manifest.json found (is it a unitcoder work directory?)", dir.display());
    let mut by_stage: BTreeMap<String, StageStats> = BTreeMap::new();
    let mut packages: BTreeMap<String, u64> = BTreeMap::new();
    let mut tiers: BTreeMap<String, u64> = BTreeMap::new();
    // Rank folders of two world sizes are two splits of the same inputs: adding them up
    // would count every record twice, so such a stage gets one row per world size.
    let mut worlds: BTreeMap<&str, std::collections::BTreeSet<Option<usize>>> = BTreeMap::new();
    for (w, m) in &manifests {
        worlds.entry(m.stage.as_str()).or_default().insert(*w);
    }
    let mut warnings = Vec::new();
    for (stage, ws) in &worlds {
        if ws.len() > 1 {
            let sizes: Vec<String> = ws.iter().map(|w| w.map_or("1 (no ranks)".into(), |w| w.to_string())).collect();
            warnings.push(format!(
                "{stage}: outputs of different world sizes ({}) are mixed: they are splits of the same inputs, shown as separate rows; remove the stale ones",
                sizes.join(", ")
            ));
        }
    }
    for (world, m) in &manifests {
        let key = if worlds.get(m.stage.as_str()).is_some_and(|ws| ws.len() > 1) {
            format!("{} (world size {})", m.stage, world.unwrap_or(1))
        } else {
            m.stage.clone()
        };
        let s = by_stage.entry(key.clone()).or_insert_with(|| StageStats { stage: key.clone(), complete: true, ..Default::default() });
        s.manifests += 1;
        s.world_size = world.unwrap_or(1);
        s.complete &= m.complete;
        s.elapsed_seconds = s.elapsed_seconds.max(m.elapsed_seconds);
        let c = &m.counts;
        let num = |k: &str| c.get(k).and_then(Value::as_u64).unwrap_or(0);
        match m.stage.as_str() {
            "extract" => {
                s.records += num("candidates");
                s.ok += num("kept");
                add_map(&mut s.outcomes, c.get("dropped"));
                *s.outcomes.entry(counter::DOCUMENTS.into()).or_default() += num("documents");
            }
            "share" => {
                s.records += num("records") + num("cross_rank_duplicates");
                s.ok += num("records");
                *s.outcomes.entry("cross_rank_duplicates".into()).or_default() += num("cross_rank_duplicates");
            }
            "export" => {
                s.records += num("records");
                s.ok += num("exported");
                add_map(&mut s.outcomes, c.get("dropped"));
                add_map(&mut s.outcomes, c.get("adequacy"));
                add_map(&mut tiers, c.get("tiers"));
                add_map(&mut packages, c.get("packages"));
            }
            _ => {
                s.records += num("records");
                s.ok += num("ok");
                s.retryable += num("retryable");
                add_map(&mut s.errors_by_kind, c.get("errors_by_kind"));
                add_map(&mut s.outcomes, c.get("outcomes"));
                let up = num("upstream_errors");
                if up > 0 {
                    *s.outcomes.entry(counter::UPSTREAM_ERRORS.into()).or_default() += up;
                }
            }
        }
        if let Some(llm) = m.timings.get("llm") {
            let n = |k: &str| llm.get(k).and_then(Value::as_u64).unwrap_or(0);
            s.llm_requests += n("requests");
            s.prompt_tokens += n("prompt_tokens");
            s.completion_tokens += n("completion_tokens");
            s.cost_usd += llm.get("estimated_cost_usd").and_then(Value::as_f64).unwrap_or(0.0);
        }
    }
    let mut report = Report::default();
    let get = |stage: &str, key: &str| by_stage.get(stage).and_then(|s| s.outcomes.get(key)).copied().unwrap_or(0);
    if let Some(sr) = by_stage.get("sandbox-run") {
        let checked: u64 = sr.outcomes.iter().filter(|(k, _)| counter::is_verdict(k)).map(|(_, n)| n).sum();
        if checked > 0 {
            let mut passing = get("sandbox-run", &counter::verdict(crate::record::Status::Pass));
            report.pass_rate_by_round.push(("initial".into(), passing as f64 / checked as f64));
            let rounds =
                by_stage.get("fix").map(|f| f.outcomes.keys().filter_map(|k| counter::parse_fixed_in_round(k)).max().unwrap_or(0)).unwrap_or(0);
            for r in 1..=rounds {
                passing += get("fix", &counter::fixed_in_round(r.into()));
                report.pass_rate_by_round.push((format!("after round {r}"), passing as f64 / checked as f64));
            }
        }
    }
    if let Some(rf) = by_stage.get("refine") {
        let attempted: u64 = rf.outcomes.iter().filter(|(k, _)| counter::is_refine_attempt(k)).map(|(_, n)| n).sum();
        if attempted > 0 {
            report.refine_success = Some(get("refine", counter::REFINED) as f64 / attempted as f64);
        }
    }
    let mut packages: Vec<(String, u64)> = packages.into_iter().collect();
    packages.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    report.packages = packages;
    let mut stages: Vec<StageStats> = by_stage.into_values().collect();
    stages.sort_by_key(|s| (super::funnel_position(s.stage.split(" (").next().unwrap_or_default()), s.stage.clone()));
    report.total_tokens = stages.iter().map(|s| s.prompt_tokens + s.completion_tokens).sum();
    report.total_cost_usd = stages.iter().map(|s| s.cost_usd).sum();
    report.adequacy = stages.iter().rev().find_map(|s| AdequacyReport::from_outcomes(&s.stage, &s.outcomes));
    report.tiers = tiers;
    report.stages = stages;
    report.warnings = warnings;
    Ok(report)
}

fn pct(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

pub fn render(r: &Report) -> String {
    render_top(r, 15)
}

pub fn render_top(r: &Report, top: usize) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "{:<12} {:>9} {:>9} {:>8} {:>9} {:>9} {:>11}  errors / outcomes\n",
        "stage", "records", "ok", "errors", "retryable", "seconds", "tokens"
    ));
    for s in &r.stages {
        let errors: u64 = s.errors_by_kind.values().sum();
        out.push_str(&format!(
            "{:<12} {:>9} {:>9} {:>8} {:>9} {:>9.1} {:>11}  {}{}\n",
            format!("{}{}", s.stage, if s.complete { "" } else { "*" }),
            s.records,
            s.ok,
            errors,
            s.retryable,
            s.elapsed_seconds,
            s.prompt_tokens + s.completion_tokens,
            s.errors_by_kind.iter().map(|(k, n)| format!("{k}={n}")).collect::<Vec<_>>().join(" "),
            {
                let shown: Vec<String> =
                    s.outcomes.iter().filter(|(k, _)| counter::parse_adequacy(k).is_none()).map(|(k, n)| format!("{k}={n}")).collect();
                if shown.is_empty() {
                    String::new()
                } else {
                    format!(" | {}", shown.join(" "))
                }
            }
        ));
    }
    if r.stages.iter().any(|s| !s.complete) {
        out.push_str("(* stopped early: rerun the same command to continue)\n");
    }
    for w in &r.warnings {
        out.push_str(&format!("warning: {w}\n"));
    }
    if !r.pass_rate_by_round.is_empty() {
        out.push_str(&format!(
            "pass rate: {}\n",
            r.pass_rate_by_round.iter().map(|(k, v)| format!("{k} {}", pct(*v))).collect::<Vec<_>>().join(", ")
        ));
    }
    if let Some(x) = r.refine_success {
        out.push_str(&format!("refine success: {}\n", pct(x)));
    }
    if let Some(a) = &r.adequacy {
        let line = |dist: &[(String, u64)]| dist.iter().filter(|(_, n)| *n > 0).map(|(b, n)| format!("{b} {n}")).collect::<Vec<_>>().join(", ");
        out.push_str(&format!("test adequacy of {} verified records ({}):\n", a.verified, a.stage));
        out.push_str(&format!("  line coverage:  {}\n", line(&a.coverage)));
        out.push_str(&format!("  mutation score: {}\n", line(&a.mutation)));
        let share = |n: u64| format!("{n} ({})", pct(n as f64 / a.verified as f64));
        out.push_str(&format!(
            "  meeting a gate: coverage >= 0.8 {}, = 1.0 {}; mutation score >= 0.6 {}, >= 0.8 {}\n",
            share(AdequacyReport::at_least(&a.coverage, 5)),
            share(AdequacyReport::at_least(&a.coverage, 6)),
            share(AdequacyReport::at_least(&a.mutation, 4)),
            share(AdequacyReport::at_least(&a.mutation, 5)),
        ));
    }
    if !r.tiers.is_empty() {
        out.push_str(&format!("exported by tier: {}\n", r.tiers.iter().map(|(t, n)| format!("{t} {n}")).collect::<Vec<_>>().join(", ")));
    }
    out.push_str(&format!("LLM tokens: {} (estimated cost ${:.4})\n", r.total_tokens, r.total_cost_usd));
    if !r.packages.is_empty() {
        let head: Vec<String> = r.packages.iter().take(top).map(|(p, n)| format!("{p} {n}")).collect();
        out.push_str(&format!("packages (exported rows): {}", head.join(", ")));
        if r.packages.len() > top {
            let tail: u64 = r.packages[top..].iter().map(|(_, n)| n).sum();
            out.push_str(&format!("; long tail: {} packages, {tail} rows", r.packages.len() - top));
        }
        out.push('\n');
    }
    out
}

/// The funnel of `dir` on stderr (the end of `unitcoder run`); nothing when there is none.
pub fn print_funnel(dir: &Path) {
    if let Ok(report) = collect(dir) {
        eprintln!("{}", render(&report));
    }
}

pub fn run(_ctx: &Context, args: &StatsArgs) -> Result<ExitCode> {
    crate::stages::common::refuse_split_from_env("stats")?;
    let report = collect(&args.dir)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&json!(report))?);
    } else {
        print!("{}", render_top(&report, args.top));
    }
    Ok(ExitCode::SUCCESS)
}
