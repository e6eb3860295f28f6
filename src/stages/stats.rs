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
    /// A run is writing this stage now (its counts are a progress snapshot or, before the
    /// first snapshot, the records in its shards).
    pub running: bool,
    /// When these counts were written (the manifest's or the snapshot's `finished_at`).
    pub updated_at: String,
    /// Each model's use, under the name the stage reports it with (`llm`, `llm_tests`, …).
    pub llm: BTreeMap<String, AgentUsage>,
    /// Sandbox jobs of this stage and the seconds they took, queue included.
    pub sandbox_jobs: u64,
    pub sandbox_seconds: f64,
}

/// One model's use in one stage (ranks added up).
#[derive(Debug, Default, Clone, Serialize)]
pub struct AgentUsage {
    pub requests: u64,
    pub retries: u64,
    pub cache_hits: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Answers whose token counts were estimated (the server sent no usage).
    pub estimated_answers: u64,
    pub cost_usd: f64,
    /// Latency percentiles (ms) of the last process that ran the stage; with ranks, the
    /// largest of theirs (percentiles do not add up).
    pub latency_ms: BTreeMap<String, u64>,
}

/// One step of the funnel: records left after it, and why the others were lost there.
#[derive(Debug, Default, Clone, Serialize)]
pub struct FunnelStep {
    pub step: String,
    pub records: u64,
    pub dropped: Vec<(String, u64)>,
}

/// What the fix loop did with the records that failed their tests.
#[derive(Debug, Default, Serialize)]
pub struct FixReport {
    pub failing: u64,
    pub fixed: u64,
    pub fixed_by_round: Vec<(String, u64)>,
    pub unfixed: u64,
    /// Records the loop did not try, by reason.
    pub not_attempted: Vec<(String, u64)>,
    /// Candidates that passed the visible tests and failed the held-out ones.
    pub overfit_candidates: u64,
    /// Candidates refused before or after running, by reason.
    pub rejected_candidates: Vec<(String, u64)>,
}

/// Packages of the exported rows grouped by how many rows use them (the UnitCoder
/// paper's Figure 3: a few packages carry most rows, most packages are rare).
#[derive(Debug, Default, Serialize)]
pub struct PackageGroup {
    /// Rows per package in this group, e.g. `2-9`.
    pub usage: String,
    pub packages: u64,
    pub rows: u64,
    /// This group's share of all packages.
    pub share_of_packages: f64,
}

/// The export's benchmark overlap and duplicate removal.
#[derive(Debug, Default, Serialize)]
pub struct Decontamination {
    /// Records compared with the benchmarks.
    pub checked: u64,
    /// Per benchmark: records overlapping it and their share of `checked`.
    pub benchmarks: Vec<BenchmarkOverlap>,
    /// The export's gate (0: none).
    pub max_contamination: f64,
    /// Benchmarks whose rate reached the gate: the export failed (exit 8) and is incomplete.
    pub gate_failed: Vec<String>,
    pub exact_duplicates: u64,
    pub near_duplicates: u64,
}

#[derive(Debug, Default, Serialize)]
pub struct BenchmarkOverlap {
    pub benchmark: String,
    pub records: u64,
    pub rate: f64,
}

/// Case2Code: functions turned into IO-example tasks.
#[derive(Debug, Default, Serialize)]
pub struct Case2CodeReport {
    pub functions: u64,
    pub tasks: u64,
    /// Task rows written by `run`'s second export (`export-case2code`), when it ran.
    pub exported: Option<u64>,
    pub examples: u64,
    pub examples_per_function: Vec<(String, u64)>,
    pub dropped: Vec<(String, u64)>,
}

/// Consensus (UCoder/IPC): problems with a selected solution, by cluster strength.
#[derive(Debug, Default, Serialize)]
pub struct ConsensusReport {
    pub problems: u64,
    pub selected: u64,
    /// Selected solutions by the share of samples in the winning cluster.
    pub strength: Vec<(String, u64)>,
    pub dropped: Vec<(String, u64)>,
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
    /// Documents → exported, with drop reasons per step.
    pub funnel: Vec<FunnelStep>,
    pub fix: Option<FixReport>,
    pub package_groups: Vec<PackageGroup>,
    pub decontamination: Option<Decontamination>,
    pub case2code: Option<Case2CodeReport>,
    pub consensus: Option<ConsensusReport>,
    /// The ranks of a split run (done / partial / missing per stage).
    pub ranks: Option<crate::stages::status::Status>,
    /// A stage is being written now: the numbers will change.
    pub running: bool,
}

/// Distributions of line coverage and mutation score (verified records per bucket).
#[derive(Debug, Default, Serialize)]
pub struct AdequacyReport {
    pub stage: String,
    pub verified: u64,
    /// The export's gates (0: none).
    pub min_line_coverage: f64,
    pub min_mutation_score: f64,
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

/// One output directory's numbers: its manifest, or the progress snapshot of the run
/// writing it, or (a stage that writes no snapshot) the records its shards hold so far.
struct Found {
    world: Option<usize>,
    manifest: Manifest,
    running: bool,
    /// Its row: the stage, except for a second export beside `export` (`export-case2code`,
    /// `export-parquet`), which gets its own row instead of adding to the main export's.
    row: String,
}

/// Every stage output under `dir` (the stage folders of a work directory and their ranks).
fn manifests_under(dir: &Path) -> Vec<Found> {
    let mut out = Vec::new();
    // Hidden directories hold a stage's own intermediate output (problems/.generated).
    let visible = |e: &walkdir::DirEntry| e.depth() == 0 || !e.file_name().to_string_lossy().starts_with('.');
    for entry in walkdir::WalkDir::new(dir).max_depth(2).sort_by_file_name().into_iter().filter_entry(visible).flatten() {
        if !entry.file_type().is_dir() {
            continue;
        }
        let path = entry.path();
        let world = path.file_name().and_then(|n| crate::shards::ranks::parse_dir_name(&n.to_string_lossy())).map(|(_, w)| w);
        // A snapshot whose writer is gone (killed) is where that run stopped: incomplete,
        // not running.
        let found = if let Some(snapshot) = Manifest::read_snapshot(path) {
            let alive = snapshot.writer_alive();
            Some((snapshot.manifest, alive))
        } else if let Ok(Some(m)) = Manifest::read(path) {
            Some((m, false))
        } else {
            records_so_far(path, world.is_some()).map(|m| (m, false))
        };
        if let Some((manifest, running)) = found {
            let folder = if world.is_some() { path.parent() } else { Some(path) };
            let folder =
                folder.filter(|_| entry.depth() > usize::from(world.is_some())).and_then(Path::file_name).map(|n| n.to_string_lossy().into_owned());
            let row = match folder {
                Some(name) if manifest.stage == "export" && name.starts_with("export-") => name,
                _ => manifest.stage.clone(),
            };
            out.push(Found { world, manifest, running, row });
        }
    }
    out
}

/// A stage directory without a manifest or snapshot yet, as a manifest of the records its
/// shards hold (all its counts can say).
fn records_so_far(path: &Path, is_rank: bool) -> Option<Manifest> {
    use crate::shards::ranks::{output_state, OutputState};
    let OutputState::Partial { records } = output_state(path) else { return None };
    let named = if is_rank { path.parent()? } else { path };
    let stage = named.file_name()?.to_string_lossy().into_owned();
    let counts = match stage.as_str() {
        "extract" => json!({"kept": records}),
        "export" => json!({"exported": records}),
        _ => json!({"records": records}),
    };
    let mut m =
        Manifest::finished(&stage, &[], String::new(), Value::Null, counts, Vec::new(), String::new(), std::time::Instant::now(), Value::Null);
    m.complete = false;
    Some(m)
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
    for f in &manifests {
        worlds.entry(f.row.as_str()).or_default().insert(f.world);
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
    let mut gates = (0.0, 0.0);
    let mut decontamination: Option<Decontamination> = None;
    for Found { world, manifest: m, running, row } in &manifests {
        let key =
            if worlds.get(row.as_str()).is_some_and(|ws| ws.len() > 1) { format!("{row} (world size {})", world.unwrap_or(1)) } else { row.clone() };
        let s = by_stage.entry(key.clone()).or_insert_with(|| StageStats { stage: key.clone(), complete: true, ..Default::default() });
        s.manifests += 1;
        s.world_size = world.unwrap_or(1);
        s.complete &= m.complete && !running;
        s.running |= *running;
        s.elapsed_seconds = s.elapsed_seconds.max(m.elapsed_seconds);
        s.updated_at = s.updated_at.clone().max(m.finished_at.clone());
        let c = &m.counts;
        let num = |k: &str| c.get(k).and_then(Value::as_u64).unwrap_or(0);
        match m.stage.as_str() {
            "export" if row != "export" => {
                // A second export: its own rows; the packages, tiers and decontamination
                // are the main export's.
                s.records += num("records");
                s.ok += num("exported");
                add_map(&mut s.outcomes, c.get("dropped"));
            }
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
                let setting = |k: &str| m.settings.get("export").and_then(|e| e.get(k)).and_then(Value::as_f64).unwrap_or(0.0);
                gates = (setting("min_line_coverage"), setting("min_mutation_score"));
                if c.get("contamination_rate").is_some() || c.get("dropped").is_some() {
                    let d = decontamination.get_or_insert_with(Default::default);
                    d.max_contamination = setting("max_contamination");
                    d.checked += num("decontamination_checked");
                    let dropped = |k: &str| c.get("dropped").and_then(|x| x.get(k)).and_then(Value::as_u64).unwrap_or(0);
                    d.exact_duplicates += dropped("exact_duplicate");
                    d.near_duplicates += dropped("near_duplicate");
                    for b in c.get("contamination_gate_failed").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str) {
                        if !d.gate_failed.iter().any(|x| x == b) {
                            d.gate_failed.push(b.to_string());
                        }
                    }
                    let mut overlaps: BTreeMap<String, u64> = BTreeMap::new();
                    if let Some(rates) = c.get("contamination_rate").and_then(Value::as_object) {
                        overlaps.extend(rates.keys().map(|b| (b.clone(), 0)));
                    }
                    add_map(&mut overlaps, c.get("contaminated_by_benchmark"));
                    for (benchmark, records) in overlaps {
                        match d.benchmarks.iter_mut().find(|o| o.benchmark == benchmark) {
                            Some(o) => o.records += records,
                            None => d.benchmarks.push(BenchmarkOverlap { benchmark, records, rate: 0.0 }),
                        }
                    }
                }
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
        for (name, usage) in m.timings.as_object().into_iter().flatten() {
            let n = |k: &str| usage.get(k).and_then(Value::as_u64).unwrap_or(0);
            if name == "sandbox" {
                s.sandbox_jobs += n("jobs");
                s.sandbox_seconds += usage.get("job_seconds").and_then(Value::as_f64).unwrap_or(0.0);
                continue;
            }
            if usage.get("requests").is_none() {
                continue; // not a model's usage
            }
            let a = s.llm.entry(name.clone()).or_default();
            a.requests += n("requests");
            a.retries += n("retries");
            a.cache_hits += n("cache_hits");
            a.prompt_tokens += n("prompt_tokens");
            a.completion_tokens += n("completion_tokens");
            a.estimated_answers += n("estimated_answers");
            a.cost_usd += usage.get("estimated_cost_usd").and_then(Value::as_f64).unwrap_or(0.0);
            for (p, v) in usage.get("latency_ms").and_then(Value::as_object).into_iter().flatten() {
                if let Some(v) = v.as_u64() {
                    let slot = a.latency_ms.entry(p.clone()).or_default();
                    *slot = (*slot).max(v);
                }
            }
            s.llm_requests += n("requests");
            s.prompt_tokens += n("prompt_tokens");
            s.completion_tokens += n("completion_tokens");
            s.cost_usd += usage.get("estimated_cost_usd").and_then(Value::as_f64).unwrap_or(0.0);
        }
    }
    if let Some(d) = decontamination.as_mut() {
        for o in &mut d.benchmarks {
            o.rate = if d.checked > 0 { o.records as f64 / d.checked as f64 } else { 0.0 };
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
    report.package_groups = package_groups(&packages);
    report.packages = packages;
    report.funnel = funnel(&by_stage);
    report.fix = by_stage.get("fix").map(fix_report);
    report.case2code = by_stage.get("case2code").map(|s| Case2CodeReport {
        functions: s.records,
        tasks: s.outcomes.get(counter::SAMPLES).copied().unwrap_or(0),
        exported: by_stage.get("export-case2code").map(|e| e.ok),
        examples: s.outcomes.get(counter::EXAMPLES).copied().unwrap_or(0),
        examples_per_function: prefixed(&s.outcomes, "examples_per_function_"),
        dropped: dropped_with_errors(s),
    });
    report.consensus = by_stage.get("consensus").map(|s| ConsensusReport {
        problems: s.records,
        selected: s.outcomes.get(counter::SELECTED).copied().unwrap_or(0),
        strength: prefixed(&s.outcomes, "strength_"),
        dropped: dropped_with_errors(s),
    });
    report.decontamination = decontamination;
    report.running = by_stage.values().any(|s| s.running);
    let mut stages: Vec<StageStats> = by_stage.into_values().collect();
    stages.sort_by_key(|s| (super::funnel_position(s.stage.split(" (").next().unwrap_or_default()), s.stage.clone()));
    report.total_tokens = stages.iter().map(|s| s.prompt_tokens + s.completion_tokens).sum();
    report.total_cost_usd = stages.iter().map(|s| s.cost_usd).sum();
    report.adequacy = stages.iter().rev().find_map(|s| AdequacyReport::from_outcomes(&s.stage, &s.outcomes));
    if let Some(a) = report.adequacy.as_mut() {
        (a.min_line_coverage, a.min_mutation_score) = gates;
    }
    if !crate::shards::ranks::rank_dirs(dir).is_empty()
        || std::fs::read_dir(dir).into_iter().flatten().flatten().any(|e| !crate::shards::ranks::rank_dirs(&e.path()).is_empty())
    {
        report.ranks = crate::stages::status::collect(dir).ok();
    }
    report.tiers = tiers;
    report.stages = stages;
    report.warnings = warnings;
    Ok(report)
}

/// Outcome keys starting with `prefix`, the prefix cut, in bucket order where numeric.
fn prefixed(outcomes: &BTreeMap<String, u64>, prefix: &str) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = outcomes.iter().filter_map(|(k, n)| k.strip_prefix(prefix).map(|b| (b.to_string(), *n))).collect();
    let order = |b: &str| b.split(['-', '+']).next().and_then(|x| x.parse::<f64>().ok()).unwrap_or(f64::MAX);
    v.sort_by(|a, b| order(&a.0).total_cmp(&order(&b.0)).then(a.0.cmp(&b.0)));
    v
}

/// A task stage's losses: its `dropped_…` outcomes and its errors.
fn dropped_with_errors(s: &StageStats) -> Vec<(String, u64)> {
    let mut v = prefixed(&s.outcomes, "dropped_");
    v.extend(s.errors_by_kind.iter().map(|(k, n)| (format!("error: {k}"), *n)));
    v
}

/// Usage groups of Figure 3: rows per package, in decades.
pub const PACKAGE_USAGE_GROUPS: [(&str, u64, u64); 5] =
    [("1", 1, 1), ("2-9", 2, 9), ("10-99", 10, 99), ("100-999", 100, 999), ("1000+", 1000, u64::MAX)];

fn package_groups(packages: &[(String, u64)]) -> Vec<PackageGroup> {
    let total = packages.len() as f64;
    PACKAGE_USAGE_GROUPS
        .iter()
        .map(|(usage, lo, hi)| {
            let members: Vec<u64> = packages.iter().map(|(_, n)| *n).filter(|n| n >= lo && n <= hi).collect();
            PackageGroup {
                usage: usage.to_string(),
                packages: members.len() as u64,
                rows: members.iter().sum(),
                share_of_packages: if total > 0.0 { members.len() as f64 / total } else { 0.0 },
            }
        })
        .collect()
}

/// Documents → exported. Each step's `dropped` are the records lost on the way to it.
fn funnel(by_stage: &BTreeMap<String, StageStats>) -> Vec<FunnelStep> {
    let mut steps = Vec::new();
    let mut push = |step: &str, records: u64, dropped: Vec<(String, u64)>| {
        steps.push(FunnelStep { step: step.into(), records, dropped: dropped.into_iter().filter(|(_, n)| *n > 0).collect() })
    };
    let errors = |s: &StageStats| s.errors_by_kind.iter().map(|(k, n)| (format!("error: {k}"), *n)).collect::<Vec<_>>();
    if let Some(x) = by_stage.get("extract") {
        push("documents", x.outcomes.get(counter::DOCUMENTS).copied().unwrap_or(0), Vec::new());
        push("candidates", x.records, Vec::new());
        let dropped = x.outcomes.iter().filter(|(k, _)| k.as_str() != counter::DOCUMENTS).map(|(k, n)| (k.clone(), *n)).collect();
        push("extracted", x.ok, dropped);
    }
    if let Some(x) = by_stage.get("share") {
        push("after global dedup", x.ok, vec![("cross_rank_duplicates".into(), x.records - x.ok)]);
    }
    if let Some(x) = by_stage.get("gen-tests") {
        push("with tests", x.ok, errors(x));
    }
    let mut passing = 0;
    if let Some(x) = by_stage.get("sandbox-run") {
        passing = x.outcomes.get(&counter::verdict(crate::record::Status::Pass)).copied().unwrap_or(0);
        let mut dropped: Vec<(String, u64)> = x
            .outcomes
            .iter()
            .filter(|(k, _)| counter::is_verdict(k) && **k != counter::verdict(crate::record::Status::Pass))
            .map(|(k, n)| (k.clone(), *n))
            .collect();
        dropped.extend(errors(x));
        push("pass as extracted", passing, dropped);
    }
    if let Some(x) = by_stage.get("fix") {
        // At least one step, so that the loop's losses show when it fixed nothing.
        let rounds = x.outcomes.keys().filter_map(|k| counter::parse_fixed_in_round(k)).max().unwrap_or(0).max(1);
        for r in 1..=rounds {
            passing += x.outcomes.get(&counter::fixed_in_round(r.into())).copied().unwrap_or(0);
            let mut dropped = Vec::new();
            if r == rounds {
                let not_fixed = ["fix_unfixed", "fix_error"];
                dropped.extend(
                    x.outcomes
                        .iter()
                        .filter(|(k, _)| not_fixed.contains(&k.as_str()) || k.starts_with("not_attempted_"))
                        .map(|(k, n)| (k.clone(), *n)),
                );
                dropped.extend(errors(x));
            }
            push(&format!("pass after fix round {r}"), passing, dropped);
        }
    }
    if let Some(x) = by_stage.get("refine") {
        let not_refined = x
            .outcomes
            .iter()
            .filter(|(k, _)| counter::is_refine_attempt(k) && k.as_str() != counter::REFINED)
            .map(|(k, n)| (k.clone(), *n))
            .collect();
        push("refined", x.outcomes.get(counter::REFINED).copied().unwrap_or(0), not_refined);
    }
    if let Some(x) = by_stage.get("export") {
        let dropped = x.outcomes.iter().filter(|(k, _)| counter::parse_adequacy(k).is_none()).map(|(k, n)| (k.clone(), *n)).collect();
        push("exported", x.ok, dropped);
    }
    steps
}

fn fix_report(s: &StageStats) -> FixReport {
    let get = |k: &str| s.outcomes.get(k).copied().unwrap_or(0);
    let fixed_by_round: Vec<(String, u64)> = prefixed(&s.outcomes, "fixed_in_round_").into_iter().map(|(r, n)| (format!("round {r}"), n)).collect();
    FixReport {
        failing: s
            .outcomes
            .iter()
            .filter(|(k, _)| {
                k.starts_with("fix_")
                    && !k.starts_with("fix_rejected_")
                    && k.as_str() != counter::FIX_OVERFIT
                    && k.as_str() != "fix_not_needed"
                    && k.as_str() != "fix_none"
            })
            .map(|(_, n)| n)
            .sum(),
        fixed: get("fix_fixed"),
        fixed_by_round,
        unfixed: get("fix_unfixed"),
        not_attempted: prefixed(&s.outcomes, "not_attempted_"),
        overfit_candidates: get(counter::FIX_OVERFIT),
        rejected_candidates: prefixed(&s.outcomes, "fix_rejected_"),
    }
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
            format!(
                "{}{}",
                s.stage,
                if s.running {
                    "~"
                } else if s.complete {
                    ""
                } else {
                    "*"
                }
            ),
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
    if r.stages.iter().any(|s| s.running) {
        out.push_str("(~ running: the counts so far)\n");
    }
    if r.stages.iter().any(|s| !s.complete && !s.running) {
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
