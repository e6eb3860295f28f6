//! Manifests of a chain: whether a previous run already made the same output ("up to
//! date"), and one manifest per step when the run ends.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::Result;
use serde_json::{Map, Value};

use super::{Counts, StageDir};
use crate::shards::manifest::now_rfc3339;
use crate::shards::reader::InputFile;
use crate::shards::{Manifest, ShardInfo};

pub fn read_all(stages: &[StageDir]) -> Result<Vec<Option<Manifest>>> {
    stages.iter().map(|s| Manifest::read(&s.dir)).collect()
}

/// Every step's manifest complete, with the same fingerprint and its shards present: their
/// counts.
pub fn up_to_date(stages: &[StageDir], fingerprints: &[String], previous: &[Option<Manifest>]) -> Option<Vec<Counts>> {
    stages
        .iter()
        .zip(fingerprints)
        .zip(previous)
        .map(|((s, fp), m)| match m {
            Some(m) if m.complete && &m.fingerprint == fp && m.shards_present(&s.dir) => {
                Some(serde_json::from_value::<Counts>(m.counts.clone()).unwrap_or_default())
            }
            _ => None,
        })
        .collect()
}

/// What a run was, for its manifests.
pub struct Run<'a> {
    pub inputs: &'a [(usize, InputFile)],
    /// The inputs as named in the first step's manifest.
    pub label: &'a str,
    pub fingerprints: &'a [String],
    pub started_at: String,
    pub started: Instant,
    pub complete: bool,
}

/// One manifest per step; each later step names the previous step's directory as input.
/// The progress snapshots of the run are removed: the manifests supersede them.
pub fn write_all(stages: &[StageDir], run: &Run, counts: &[Counts], sealed: &[BTreeMap<usize, ShardInfo>]) -> Result<()> {
    for (stage, manifest) in stages.iter().zip(build(stages, run, counts, sealed)?) {
        manifest.write(&stage.dir)?;
        let _ = std::fs::remove_file(Manifest::snapshot_path(&stage.dir));
    }
    Ok(())
}

/// The manifests as they would be now, as each stage's progress snapshot (`complete` false).
pub fn write_snapshots(stages: &[StageDir], run: &Run, counts: &[Counts], sealed: &[BTreeMap<usize, ShardInfo>]) -> Result<()> {
    for (stage, manifest) in stages.iter().zip(build(stages, run, counts, sealed)?) {
        manifest.write_snapshot(&stage.dir)?;
    }
    Ok(())
}

fn build(stages: &[StageDir], run: &Run, counts: &[Counts], sealed: &[BTreeMap<usize, ShardInfo>]) -> Result<Vec<Manifest>> {
    let mut inputs_desc: Vec<String> = vec![run.label.to_string()];
    let mut out = Vec::with_capacity(stages.len());
    for (s, stage) in stages.iter().enumerate() {
        let (totals, history) = crate::llm::stats::read_journal(&stage.dir.join(super::USAGE_JOURNAL));
        out.push(Manifest {
            stage: stage.step.name().to_string(),
            unitcoder_version: env!("CARGO_PKG_VERSION").into(),
            inputs: if s == 0 { run.inputs.iter().map(|(_, i)| i.display()).collect() } else { inputs_desc.clone() },
            fingerprint: run.fingerprints[s].clone(),
            settings: stage.step.settings(),
            counts: serde_json::to_value(&counts[s])?,
            shards: sealed[s].values().cloned().collect(),
            started_at: run.started_at.clone(),
            finished_at: now_rfc3339(),
            elapsed_seconds: run.started.elapsed().as_secs_f64(),
            timings: with_journal_totals(stage.step.report(), &totals),
            complete: run.complete,
            history,
        });
        inputs_desc = vec![stage.dir.display().to_string()];
    }
    Ok(out)
}

/// Counters a step reports for this process, replaced by the journal's totals over every
/// run that built the output (latencies stay this run's: percentiles do not add up).
fn with_journal_totals(mut report: Value, totals: &BTreeMap<String, Map<String, Value>>) -> Value {
    const SUMMED: [&str; 7] = ["requests", "retries", "cache_hits", "prompt_tokens", "completion_tokens", "estimated_answers", "short_replies"];
    let Some(agents) = report.as_object_mut() else { return report };
    for (agent, total) in totals {
        let Some(usage) = agents.get_mut(agent).and_then(Value::as_object_mut) else { continue };
        for key in SUMMED {
            usage.insert(key.into(), total.get(key).cloned().unwrap_or(Value::from(0)));
        }
        usage.insert("errors_by_kind".into(), total.get("errors_by_kind").cloned().unwrap_or_else(|| Value::Object(Map::new())));
        let prices = usage.get("price_per_million").cloned().unwrap_or(Value::Null);
        let price = |k: &str| prices.get(k).and_then(Value::as_f64).unwrap_or(0.0);
        let tokens = |k: &str| total.get(k).and_then(Value::as_u64).unwrap_or(0);
        let cost = crate::llm::stats::cost(tokens("prompt_tokens"), tokens("completion_tokens"), price("prompt"), price("completion"));
        usage.insert("estimated_cost_usd".into(), Value::from(cost));
    }
    report
}
