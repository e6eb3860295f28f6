//! `unitcoder report DIR [-o report.html]`: the work directory as one page to look at — the
//! funnel, pass rates over fix rounds, the packages covered, test strength, errors, LLM and
//! sandbox use, decontamination, the task stages and the ranks.
//!
//! Every number comes from `stats::collect` (the source of `stats --json`), which reads the
//! manifests and, for stages still being written, their progress snapshots and shards: the
//! page can be regenerated while a run goes on. The markup is `html`'s (inline SVG, no
//! JavaScript, nothing from the network).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use clap::Args;

use super::stats::{self, AdequacyReport, Report, StageStats};
use crate::context::Context;
use crate::html::{self, Bar, Cell, Page};
use crate::shards::ranks::OutputState;

#[derive(Debug, Clone, Args)]
pub struct ReportArgs {
    /// A work directory (from `unitcoder run`, ranks included) or any directory of stage outputs.
    pub dir: PathBuf,
    /// Where to write the page [default: DIR/report.html].
    #[arg(short = 'o', long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Packages listed before the long tail.
    #[arg(long, default_value_t = 15)]
    pub top: usize,
}

pub fn run(_ctx: &Context, args: &ReportArgs) -> Result<ExitCode> {
    crate::stages::common::refuse_split_from_env("report")?;
    let path = write(&args.dir, args.output.as_deref(), args.top)?;
    println!("{}", path.display());
    Ok(ExitCode::SUCCESS)
}

/// Write the report of `dir` (to `output`, else `DIR/report.html`); its path.
pub fn write(dir: &Path, output: Option<&Path>, top: usize) -> Result<PathBuf> {
    write_collected(dir, &stats::collect(dir)?, output, top)
}

/// Write the report of `dir` from its numbers, already collected.
pub fn write_collected(dir: &Path, report: &Report, output: Option<&Path>, top: usize) -> Result<PathBuf> {
    let path = output.map(Path::to_path_buf).unwrap_or_else(|| dir.join("report.html"));
    let page = render(dir, report, top);
    crate::shards::writer::write_atomic(&path, page.as_bytes()).with_context(|| format!("cannot write the report {}", path.display()))?;
    Ok(path)
}

fn pct(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

fn share(n: u64, of: u64) -> String {
    if of == 0 {
        "–".into()
    } else {
        pct(n as f64 / of as f64)
    }
}

/// A chart is drawn only when some bar has a length; otherwise its table says it all.
fn has_content(bars: &[Bar]) -> bool {
    bars.iter().any(|b| b.value > 0.0)
}

fn reasons(dropped: &[(String, u64)]) -> String {
    dropped.iter().map(|(k, n)| format!("{k} {n}")).collect::<Vec<_>>().join(", ")
}

/// The page: one section per chart of the issue, in the order a reader asks.
pub fn render(dir: &Path, r: &Report, top: usize) -> String {
    let mut page = Page::new(format!("unitcoder report: {}", dir.display()));
    page.subtitle.push(format!(
        "generated {} by unitcoder {}; {} stage outputs",
        crate::shards::manifest::now_rfc3339(),
        env!("CARGO_PKG_VERSION"),
        r.stages.iter().map(|s| s.manifests).sum::<usize>()
    ));
    if r.running {
        let running: Vec<String> = r.stages.iter().filter(|s| s.running).map(|s| format!("{} (as of {})", s.stage, s.updated_at)).collect();
        page.banners.push(format!("In progress: {} — numbers are the counts so far; regenerate the report to update.", running.join(", ")));
    }
    let gate_failed = r.decontamination.as_ref().map(|d| d.gate_failed.clone()).unwrap_or_default();
    if !gate_failed.is_empty() {
        page.banners.push(format!("The export failed its contamination gate ({}): see 7. Decontamination.", gate_failed.join(", ")));
    }
    let stopped: Vec<&str> =
        r.stages.iter().filter(|s| !s.complete && !s.running && (s.stage != "export" || gate_failed.is_empty())).map(|s| s.stage.as_str()).collect();
    if !stopped.is_empty() {
        page.banners.push(format!(
            "Stopped before the end: {} (a budget, an unusable model, an interruption or a killed process); the same command continues.",
            stopped.join(", ")
        ));
    }
    page.banners.extend(r.warnings.iter().cloned());
    funnel(&mut page, r);
    fix_rounds(&mut page, r);
    packages(&mut page, r, top);
    adequacy(&mut page, r.adequacy.as_ref());
    errors(&mut page, r);
    llm_and_sandbox(&mut page, r);
    decontamination(&mut page, r);
    tasks(&mut page, r);
    ranks(&mut page, r);
    page.render()
}

fn funnel(page: &mut Page, r: &Report) {
    if r.funnel.is_empty() {
        return;
    }
    // Documents are files, the other steps functions: a share of candidates only below.
    let first = r.funnel.iter().find(|s| s.step == "candidates").or(r.funnel.first()).map(|s| s.records).unwrap_or(0);
    let is_documents = |step: &str| step == "documents";
    let bars: Vec<Bar> = r
        .funnel
        .iter()
        .map(|s| {
            let class = match s.step.as_str() {
                "exported" => "ok",
                step if is_documents(step) => "muted",
                _ => "",
            };
            Bar::new(&s.step, s.records as f64, s.records.to_string()).class(class)
        })
        .collect();
    let rows: Vec<Vec<String>> = r
        .funnel
        .iter()
        .map(|s| {
            vec![s.step.clone(), s.records.to_string(), if is_documents(&s.step) { "–".into() } else { share(s.records, first) }, reasons(&s.dropped)]
        })
        .collect();
    let table = html::table(&["step", "records", "of candidates", "lost here (reason records)"], &rows);
    let body = if has_content(&bars) {
        html::figure("records per step", html::bar_chart("funnel", &bars), table)
    } else {
        format!("<p>No records yet.</p>{table}")
    };
    page.section(
        "funnel",
        "1. Funnel",
        "Records left after each step, from the documents read to the rows exported, and why the others were lost at that step.",
        body,
    );
}

fn fix_rounds(page: &mut Page, r: &Report) {
    if r.pass_rate_by_round.is_empty() && r.fix.is_none() {
        return;
    }
    let mut body = String::new();
    if !r.pass_rate_by_round.is_empty() {
        let rows: Vec<Vec<String>> = r.pass_rate_by_round.iter().map(|(k, v)| vec![k.clone(), pct(*v)]).collect();
        body.push_str(&html::figure(
            "share of checked records passing their tests",
            html::line_chart("pass-rate", &r.pass_rate_by_round),
            html::table(&["after", "pass rate"], &rows),
        ));
    }
    if let Some(f) = &r.fix {
        let mut bars: Vec<Bar> =
            f.fixed_by_round.iter().map(|(k, n)| Bar::new(format!("fixed in {k}"), *n as f64, n.to_string()).class("ok")).collect();
        bars.push(Bar::new("unfixed", f.unfixed as f64, f.unfixed.to_string()).class("bad"));
        bars.extend(f.not_attempted.iter().map(|(k, n)| Bar::new(format!("not attempted: {k}"), *n as f64, n.to_string()).class("muted")));
        bars.push(Bar::new("overfit candidates", f.overfit_candidates as f64, f.overfit_candidates.to_string()).class("warn"));
        bars.extend(f.rejected_candidates.iter().map(|(k, n)| Bar::new(format!("candidate rejected: {k}"), *n as f64, n.to_string()).class("warn")));
        let rows: Vec<Vec<String>> = bars.iter().map(|b| vec![b.label.clone(), b.text.clone()]).collect();
        if has_content(&bars) {
            body.push_str(&html::figure(
                &format!(
                    "fix outcomes: {} failing records, {} fixed ({}); candidates refused for gaming or duplication are counted per candidate",
                    f.failing,
                    f.fixed,
                    share(f.fixed, f.failing)
                ),
                html::bar_chart("fix-outcomes", &bars),
                html::table(&["outcome", "count"], &rows),
            ));
        } else {
            body.push_str("<p>No record failed its tests: the fix loop had nothing to do.</p>");
        }
    }
    page.section(
        "fix",
        "2. Pass rate by fix round",
        "Records passing as extracted, then after each repair round; overfit candidates passed the visible tests and failed held-out ones.",
        body,
    );
}

fn packages(page: &mut Page, r: &Report, top: usize) {
    if r.packages.is_empty() {
        return;
    }
    let groups: Vec<Bar> = r
        .package_groups
        .iter()
        .map(|g| {
            Bar::new(
                format!("{} row{}", g.usage, if g.usage == "1" { "" } else { "s" }),
                g.share_of_packages,
                format!("{} ({})", pct(g.share_of_packages), g.packages),
            )
        })
        .collect();
    let group_rows: Vec<Vec<String>> =
        r.package_groups.iter().map(|g| vec![g.usage.clone(), g.packages.to_string(), pct(g.share_of_packages), g.rows.to_string()]).collect();
    let mut body = html::figure(
        "packages grouped by usage (exported rows per package): share of all packages in each group",
        html::column_chart("package-groups", &groups, None),
        html::table(&["rows per package", "packages", "share of packages", "rows"], &group_rows),
    );
    let total: u64 = r.packages.iter().map(|(_, n)| n).sum();
    let mut bars: Vec<Bar> = r.packages.iter().take(top).map(|(p, n)| Bar::new(p, *n as f64, n.to_string())).collect();
    if r.packages.len() > top {
        let tail: u64 = r.packages[top..].iter().map(|(_, n)| n).sum();
        bars.push(Bar::new(format!("long tail ({} packages)", r.packages.len() - top), tail as f64, tail.to_string()).class("muted"));
    }
    let rows: Vec<Vec<String>> = bars.iter().map(|b| vec![b.label.clone(), b.text.clone(), share(b.value as u64, total)]).collect();
    body.push_str(&html::figure(
        &format!("top {} packages of {} ({} rows; a row counts each package it imports)", top.min(r.packages.len()), r.packages.len(), total),
        html::bar_chart("packages-top", &bars),
        html::table(&["package", "rows", "share"], &rows),
    ));
    page.section(
        "packages",
        "3. Packages",
        "Which packages the exported rows use: a few carry most rows, most are rare (the UnitCoder paper's Figure 3).",
        body,
    );
}

/// The gate's position on the bucket axis (buckets: unknown, 0-20 … 80-99, 100%).
fn gate_position(gate: f64) -> f64 {
    match gate {
        g if g >= 1.0 => 6.0,
        g if g >= 0.8 => 5.0 + (g - 0.8) / 0.2,
        g => 1.0 + g / 0.2,
    }
}

fn adequacy(page: &mut Page, a: Option<&AdequacyReport>) {
    let Some(a) = a else {
        page.section(
            "adequacy",
            "4. Test strength",
            "No adequacy data: the sandbox stages ran without coverage and mutation measurement.",
            String::new(),
        );
        return;
    };
    let mut body = String::new();
    for (name, title, dist, gate) in [
        ("coverage", "line coverage of the function by its tests", &a.coverage, a.min_line_coverage),
        ("mutation", "mutation score (share of mutants the tests kill)", &a.mutation, a.min_mutation_score),
    ] {
        let bars: Vec<Bar> =
            dist.iter().map(|(b, n)| Bar::new(b, *n as f64, n.to_string()).class(if b == "unknown" { "muted" } else { "" })).collect();
        let label = format!("export gate {}", pct(gate));
        let marker = (gate > 0.0).then(|| (gate_position(gate), label.as_str()));
        let rows: Vec<Vec<String>> = dist.iter().map(|(b, n)| vec![b.clone(), n.to_string(), share(*n, a.verified)]).collect();
        let caption = format!("{title}; {}", if gate > 0.0 { format!("export gate at {}", pct(gate)) } else { "no export gate".into() });
        body.push_str(&html::figure(&caption, html::column_chart(name, &bars, marker), html::table(&["bucket", "verified records", "share"], &rows)));
    }
    page.section("adequacy", "4. Test strength", &format!("{} verified records, as measured at {}.", a.verified, a.stage), body);
}

fn errors(page: &mut Page, r: &Report) {
    let mut rows = Vec::new();
    let mut bars = Vec::new();
    for s in &r.stages {
        let total: u64 = s.errors_by_kind.values().sum();
        if total == 0 {
            continue;
        }
        let (transient, lasting) = (s.retryable.min(total), total - s.retryable.min(total));
        if transient > 0 {
            bars.push(Bar::new(format!("{} (transient)", s.stage), transient as f64, transient.to_string()).class("warn"));
        }
        if lasting > 0 {
            bars.push(Bar::new(format!("{} (lasting)", s.stage), lasting as f64, lasting.to_string()).class("bad"));
        }
        for (kind, n) in &s.errors_by_kind {
            rows.push(vec![s.stage.clone(), kind.clone(), n.to_string()]);
        }
    }
    let retry: u64 = r.stages.iter().map(|s| s.retryable).sum();
    let note = format!("Errors set by each stage, by kind. A run with --retry-errors would redo the {retry} transient ones (timeouts, overloaded servers); lasting ones need a change of input or settings.");
    let body = if rows.is_empty() {
        "<p>No errors.</p>".to_string()
    } else {
        html::figure("errors per stage, transient vs lasting", html::bar_chart("errors", &bars), html::table(&["stage", "kind", "records"], &rows))
    };
    page.section("errors", "5. Errors", &note, body);
}

fn latency(s: &stats::AgentUsage, p: &str) -> String {
    s.latency_ms.get(p).map(|v| format!("{v} ms")).unwrap_or_else(|| "–".into())
}

fn llm_and_sandbox(page: &mut Page, r: &Report) {
    let users: Vec<&StageStats> = r.stages.iter().filter(|s| !s.llm.is_empty()).collect();
    let mut body = String::new();
    if !users.is_empty() {
        let mut rows = Vec::new();
        let (mut answers, mut tokens) = (Vec::new(), Vec::new());
        for s in &users {
            for (agent, a) in &s.llm {
                rows.push(vec![
                    s.stage.clone(),
                    agent.clone(),
                    a.requests.to_string(),
                    a.cache_hits.to_string(),
                    a.retries.to_string(),
                    a.prompt_tokens.to_string(),
                    a.completion_tokens.to_string(),
                    if a.estimated_answers > 0 { format!("yes ({} answers)", a.estimated_answers) } else { "no".into() },
                    format!("${:.4}", a.cost_usd),
                    latency(a, "p50"),
                    latency(a, "p90"),
                    latency(a, "p99"),
                ]);
                let label = if s.llm.len() > 1 { format!("{} {agent}", s.stage) } else { s.stage.clone() };
                answers.push(Bar::new(format!("{label}: requests"), a.requests as f64, a.requests.to_string()));
                answers.push(Bar::new(format!("{label}: from cache"), a.cache_hits as f64, a.cache_hits.to_string()).class("muted"));
                let estimated = if a.estimated_answers > 0 { " (estimated)" } else { "" };
                tokens.push(Bar::new(format!("{label}: prompt"), a.prompt_tokens as f64, format!("{}{estimated}", a.prompt_tokens)));
                tokens.push(
                    Bar::new(format!("{label}: completion"), a.completion_tokens as f64, format!("{}{estimated}", a.completion_tokens)).class("ok"),
                );
            }
        }
        let headers =
            ["stage", "model", "requests", "cache hits", "retries", "prompt tok.", "completion tok.", "estimated tok.", "cost", "p50", "p90", "p99"];
        let caption = format!("model use per stage: {} tokens in all, estimated cost ${:.4}", r.total_tokens, r.total_cost_usd);
        if has_content(&answers) {
            body.push_str(&html::figure(
                &format!("{caption}; answers sent by the server (requests) or taken from the response cache"),
                html::bar_chart("llm", &answers),
                String::new(),
            ));
        }
        if has_content(&tokens) {
            body.push_str(&html::figure(
                "tokens per stage (estimated at 4 characters a token where the server sent no usage)",
                html::bar_chart("tokens", &tokens),
                String::new(),
            ));
        }
        body.push_str(&html::table(&headers, &rows));
    }
    let sandboxed: Vec<&StageStats> = r.stages.iter().filter(|s| s.sandbox_jobs > 0).collect();
    if !sandboxed.is_empty() {
        let bars: Vec<Bar> =
            sandboxed.iter().map(|s| Bar::new(&s.stage, s.sandbox_seconds, format!("{:.1} s, {} jobs", s.sandbox_seconds, s.sandbox_jobs))).collect();
        let rows: Vec<Vec<String>> = sandboxed
            .iter()
            .map(|s| {
                vec![
                    s.stage.clone(),
                    s.sandbox_jobs.to_string(),
                    format!("{:.1}", s.sandbox_seconds),
                    format!("{:.0}", 1000.0 * s.sandbox_seconds / s.sandbox_jobs as f64),
                ]
            })
            .collect();
        body.push_str(&html::figure(
            "sandbox time per stage: the jobs' durations added up, each with its wait for a worker (jobs of the last process that ran the stage)",
            html::bar_chart("sandbox", &bars),
            html::table(&["stage", "jobs", "seconds", "ms per job"], &rows),
        ));
    }
    if body.is_empty() {
        body = "<p>No model or sandbox use recorded.</p>".into();
    }
    page.section(
        "cost",
        "6. LLM and sandbox use",
        "Requests, tokens (estimated where the server sent no usage), estimated cost and latency per stage; sandbox time per stage.",
        body,
    );
}

fn decontamination(page: &mut Page, r: &Report) {
    let Some(d) = &r.decontamination else { return };
    let mut body = String::new();
    if d.benchmarks.is_empty() {
        body.push_str("<p>Decontamination was off (no benchmark compared).</p>");
    } else {
        let bars: Vec<Bar> = d
            .benchmarks
            .iter()
            .map(|o| {
                let over = d.max_contamination > 0.0 && o.rate >= d.max_contamination;
                Bar::new(&o.benchmark, o.rate, format!("{} ({} records)", pct(o.rate), o.records)).class(if over {
                    "bad"
                } else if o.records > 0 {
                    "warn"
                } else {
                    "ok"
                })
            })
            .collect();
        let rows: Vec<Vec<String>> = d.benchmarks.iter().map(|o| vec![o.benchmark.clone(), o.records.to_string(), pct(o.rate)]).collect();
        let gate = match (d.max_contamination > 0.0, d.gate_failed.is_empty()) {
            (false, _) => "no gate: export --max-contamination sets one".to_string(),
            (true, true) => format!("gate at {}: passed", pct(d.max_contamination)),
            (true, false) => {
                format!("gate at {}: FAILED for {} (the export exited 8 and is incomplete)", pct(d.max_contamination), d.gate_failed.join(", "))
            }
        };
        let caption = format!("records overlapping each benchmark, of {} compared; {gate}", d.checked);
        let table = html::table(&["benchmark", "records dropped", "rate"], &rows);
        if has_content(&bars) {
            body.push_str(&html::figure(&caption, html::bar_chart("decontamination", &bars), table));
        } else {
            body.push_str(&format!("<p>No record overlaps a benchmark ({} compared; {gate}).</p>{table}", d.checked));
        }
    }
    body.push_str(&html::table(
        &["duplicates removed", "records"],
        &[
            vec!["exact duplicates".into(), d.exact_duplicates.to_string()],
            vec!["near duplicates (MinHash clusters)".into(), d.near_duplicates.to_string()],
        ],
    ));
    page.section("decontamination", "7. Decontamination", "Overlap with benchmark solutions (token n-grams) and duplicates dropped at export.", body);
}

fn tasks(page: &mut Page, r: &Report) {
    if let Some(c) = &r.case2code {
        let bars: Vec<Bar> = c.examples_per_function.iter().map(|(b, n)| Bar::new(b, *n as f64, n.to_string())).collect();
        let exported = c.exported.map(|n| format!(" ({n} exported to export-case2code)")).unwrap_or_default();
        let lost = if c.dropped.is_empty() { "none".to_string() } else { reasons(&c.dropped) };
        let mut body = format!(
            "<p>{} functions → {} tasks{} with {} IO examples; lost: {}.</p>",
            c.functions,
            c.tasks,
            html::escape(&exported),
            c.examples,
            html::escape(&lost)
        );
        if has_content(&bars) {
            let rows: Vec<Vec<String>> = bars.iter().map(|b| vec![b.label.clone(), b.text.clone()]).collect();
            body.push_str(&html::figure(
                "functions by the number of IO examples they got",
                html::column_chart("case2code", &bars, None),
                html::table(&["examples", "functions"], &rows),
            ));
        }
        page.section(
            "case2code",
            "8a. Case2Code",
            "The model writes inputs, the sandbox computes outputs; functions with enough examples become tasks.",
            body,
        );
    }
    if let Some(c) = &r.consensus {
        let bars: Vec<Bar> = c.strength.iter().map(|(b, n)| Bar::new(b, *n as f64, n.to_string())).collect();
        let lost = if c.dropped.is_empty() { "none".to_string() } else { reasons(&c.dropped) };
        let mut body = format!("<p>{} problems → {} with a selected solution; lost: {}.</p>", c.problems, c.selected, html::escape(&lost));
        if has_content(&bars) {
            let rows: Vec<Vec<String>> = bars.iter().map(|b| vec![b.label.clone(), b.text.clone()]).collect();
            body.push_str(&html::figure(
                "selected solutions by cluster strength (share of samples agreeing with the winner)",
                html::column_chart("consensus", &bars, None),
                html::table(&["strength", "problems"], &rows),
            ));
        }
        page.section("consensus", "8b. Consensus", "Many samples per problem, clustered by execution signature; the largest cluster wins.", body);
    }
}

fn ranks(page: &mut Page, r: &Report) {
    let Some(status) = &r.ranks else { return };
    let rows: Vec<(String, Vec<Cell>)> = status
        .ranks
        .iter()
        .map(|rank| {
            let cells = rank
                .stages
                .iter()
                .map(|c| {
                    let class = match c.state {
                        OutputState::Done { .. } => "ok",
                        OutputState::Partial { .. } => "warn",
                        OutputState::Stopped { .. } => "bad",
                        OutputState::Missing => "",
                    };
                    let text = super::status::cell_text(c);
                    Cell { title: format!("rank {} {}: {text}", rank.rank, c.stage), text, class }
                })
                .collect();
            (format!("rank {}", rank.rank), cells)
        })
        .collect();
    let table_rows: Vec<Vec<String>> = status
        .ranks
        .iter()
        .map(|rank| {
            let mut row = vec![rank.rank.to_string()];
            row.extend(rank.stages.iter().map(super::status::cell_text));
            row.push(match &rank.reason {
                Some(why) => format!("{}: {why}", rank.state),
                None => rank.state.clone(),
            });
            row
        })
        .collect();
    let mut headers: Vec<&str> = vec!["rank"];
    headers.extend(status.stages.iter().map(String::as_str));
    headers.push("state");
    let done = status.ranks.iter().filter(|r| r.state == "done").count();
    page.section(
        "ranks",
        "9. Ranks",
        &format!(
            "World size {}: {done} of {} ranks done. 'unitcoder status DIR --resubmit' reruns the others.",
            status.world_size,
            status.ranks.len()
        ),
        html::figure(
            "per-rank progress (done / partial / stopped / missing)",
            html::grid_chart("ranks", &status.stages, &rows),
            html::table(&headers, &table_rows),
        ),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::counter;

    #[test]
    fn gate_positions_fall_in_their_buckets() {
        assert_eq!(counter::ADEQUACY_BUCKETS.len(), 7);
        assert!((gate_position(0.6) - 4.0).abs() < 1e-9, "0.6 is the left edge of 60-80%");
        assert!((gate_position(0.9) - 5.5).abs() < 1e-9);
        assert!((gate_position(1.0) - 6.0).abs() < 1e-9, "1.0: the 100% bucket");
    }
}
