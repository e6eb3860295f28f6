//! Shard planning: for each input file, from what every step's output already holds, decide
//! whether to skip it, resume it after n records, or redo its transient errors; and bring
//! the outputs into the state that decision needs (reopen finals, cut partials back, count
//! what is kept).

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::{Context as _, Result};

use super::{Counts, Record, Step};
use crate::shards::reader::InputFile;
use crate::shards::resume::{ShardState, StageOutput};
use crate::shards::ShardInfo;

/// What is on disk for one input file in one step's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardView {
    pub state: ShardState,
    /// Records in a partial file lying next to a final shard (a retry run in progress).
    pub partial_beside_final: Option<u64>,
}

/// The decision for one input file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Every step is done with it.
    Skip,
    /// Continue after `start` records; `reopen[s]`: step s's final shard goes back to partial.
    Resume { start: u64, reopen: Vec<bool> },
    /// Redo the transient errors, reading every step's previous output alongside the input;
    /// progress of an interrupted retry run is kept (`start`).
    Retry { start: u64 },
}

/// Decide for one input file. `wants_retry` is asked only when every step is done and a
/// retry is on (it reads the outputs looking for records to redo).
pub fn decide(views: &[ShardView], retry: bool, wants_retry: impl FnOnce() -> Result<bool>) -> Result<Decision> {
    let all_done = views.iter().all(|v| matches!(v.state, ShardState::Done(_)));
    if all_done {
        let interrupted_retry = views.iter().any(|v| v.partial_beside_final.is_some());
        if !(retry && (interrupted_retry || wants_retry()?)) {
            return Ok(Decision::Skip);
        }
        let start = views.iter().map(|v| v.partial_beside_final.unwrap_or(0)).min().unwrap_or(0);
        return Ok(Decision::Retry { start });
    }
    // Plain resume: cut every step back to the record all of them have.
    let start = views
        .iter()
        .map(|v| match v.state {
            ShardState::Done(n) | ShardState::Partial(n) => n,
            ShardState::Missing => 0,
        })
        .min()
        .unwrap_or(0);
    let reopen = views.iter().map(|v| matches!(v.state, ShardState::Done(_))).collect();
    Ok(Decision::Resume { start, reopen })
}

/// An input file to stream through the chain.
pub struct ShardPlan {
    pub k: usize,
    pub input: InputFile,
    /// Input records already done in every step (skipped).
    pub start: u64,
    /// Input records to take from this file (`--limit`); the rest are left alone.
    pub take: u64,
    /// Retry mode: read each step's previous output alongside the input.
    pub retry: bool,
}

/// The plans, plus the counts and sealed shards of everything already done.
pub struct Planned {
    pub shards: Vec<ShardPlan>,
    pub counts: Vec<Counts>,
    pub sealed: Vec<BTreeMap<usize, ShardInfo>>,
}

/// How many records to take from each input: all of them, or with `--limit N` the first N
/// in input order. Counts come from the input directory's manifest, else from the file.
pub fn takes(inputs: &[(usize, InputFile)], limit: Option<u64>) -> Result<Vec<u64>> {
    let mut left = limit.unwrap_or(u64::MAX);
    let mut out = Vec::with_capacity(inputs.len());
    let mut manifests: BTreeMap<std::path::PathBuf, Option<crate::shards::Manifest>> = BTreeMap::new();
    for (_, input) in inputs {
        let dir = input.path.parent().map(|p| p.to_path_buf()).unwrap_or_default();
        let manifest = match manifests.get(&dir) {
            Some(m) => m.clone(),
            None => {
                let m = crate::shards::Manifest::read(&dir).ok().flatten();
                manifests.insert(dir.clone(), m.clone());
                m
            }
        };
        let name = input.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let listed = manifest.as_ref().and_then(|m| m.shards.iter().find(|s| s.file == name).map(|s| s.records));
        let records = match listed {
            Some(n) => n,
            None => count_records(input)?,
        };
        let take = records.min(left);
        left -= take;
        out.push(take);
    }
    Ok(out)
}

/// Non-blank lines of a JSONL input.
fn count_records(input: &InputFile) -> Result<u64> {
    use std::io::BufRead;
    let crate::shards::InputFormat::Jsonl(compression) = input.format else { return Ok(0) };
    let reader = crate::shards::reader::open_decompressed(&input.path, compression)?;
    let mut n = 0;
    for line in reader.split(b'\n') {
        let line = line.with_context(|| format!("{}: read error", input.display()))?;
        if !line.iter().all(u8::is_ascii_whitespace) {
            n += 1;
        }
    }
    Ok(n)
}

pub fn plan_inputs(inputs: &[(usize, InputFile)], takes: &[u64], outputs: &[StageOutput], steps: &[Arc<dyn Step>], retry: bool) -> Result<Planned> {
    let mut counts = vec![Counts::default(); steps.len()];
    let mut sealed: Vec<BTreeMap<usize, ShardInfo>> = vec![BTreeMap::new(); steps.len()];
    let mut shards = Vec::new();
    for ((k, input), &take) in inputs.iter().zip(takes) {
        let k = *k;
        let views = outputs.iter().map(|o| view(o, k)).collect::<Result<Vec<_>>>()?;
        let decision = decide(&views, retry, || any_needs_retry(outputs, steps, k))?;
        match decision {
            Decision::Skip => {
                for (s, o) in outputs.iter().enumerate() {
                    let _ = std::fs::remove_file(o.partial_path(k)); // stale copy from a seal cut short
                    let n = o.read(k, tallier(&mut counts[s], steps[s].as_ref()))?;
                    sealed[s].insert(k, o.info(k, n));
                }
                continue;
            }
            Decision::Retry { start } => {
                cut_back(outputs, steps, &mut counts, k, start)?;
                shards.push(ShardPlan { k, input: input.clone(), start, take, retry: true });
            }
            Decision::Resume { start, reopen } => {
                for (o, _) in outputs.iter().zip(&reopen).filter(|(_, r)| **r) {
                    o.reopen(k)?;
                }
                cut_back(outputs, steps, &mut counts, k, start)?;
                if start > 0 {
                    tracing::info!("{}: resuming after {start} records", input.display());
                }
                shards.push(ShardPlan { k, input: input.clone(), start, take, retry: false });
            }
        }
    }
    Ok(Planned { shards, counts, sealed })
}

fn view(o: &StageOutput, k: usize) -> Result<ShardView> {
    let state = o.state(k)?;
    let partial_beside_final = match state {
        ShardState::Done(_) if o.partial_path(k).is_file() => Some(o.partial_records(k)?),
        _ => None,
    };
    Ok(ShardView { state, partial_beside_final })
}

/// Does any step's output for input `k` hold a record that step would redo?
fn any_needs_retry(outputs: &[StageOutput], steps: &[Arc<dyn Step>], k: usize) -> Result<bool> {
    for (o, step) in outputs.iter().zip(steps) {
        let mut any = false;
        o.read(k, |r| {
            any |= step.needs_retry(&r);
            !any
        })?;
        if any {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Counts every record it is given (for outputs an earlier run already wrote).
fn tallier<'a>(counts: &'a mut Counts, step: &'a dyn Step) -> impl FnMut(Record) -> bool + 'a {
    move |r| {
        counts.add(step, &r);
        true
    }
}

/// Cut every step's partial shard `k` back to its first `start` records and count those.
fn cut_back(outputs: &[StageOutput], steps: &[Arc<dyn Step>], counts: &mut [Counts], k: usize, start: u64) -> Result<()> {
    for (s, o) in outputs.iter().enumerate() {
        if o.partial_path(k).is_file() {
            o.truncate_partial(k, start)?;
            o.read_partial(k, tallier(&mut counts[s], steps[s].as_ref()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ShardState::{Done, Missing, Partial};

    fn v(state: ShardState, beside: Option<u64>) -> ShardView {
        ShardView { state, partial_beside_final: beside }
    }

    #[test]
    fn shard_plan_table() {
        let no = || Ok(false);
        let yes = || Ok(true);
        let resume = |start, reopen: &[bool]| Decision::Resume { start, reopen: reopen.to_vec() };
        let cases: Vec<(&str, Vec<ShardView>, bool, bool, Decision)> = vec![
            ("done everywhere", vec![v(Done(5), None), v(Done(5), None)], false, false, Decision::Skip),
            ("done, retry on, nothing to redo", vec![v(Done(5), None), v(Done(5), None)], true, false, Decision::Skip),
            ("done, retry on, errors to redo", vec![v(Done(5), None), v(Done(5), None)], true, true, Decision::Retry { start: 0 }),
            (
                "interrupted retry resumes at the shortest partial",
                vec![v(Done(5), Some(3)), v(Done(5), Some(2))],
                true,
                false,
                Decision::Retry { start: 2 },
            ),
            ("interrupted retry, one step without progress", vec![v(Done(5), Some(3)), v(Done(5), None)], true, false, Decision::Retry { start: 0 }),
            ("interrupted retry, every step has progress", vec![v(Done(5), Some(3)), v(Done(5), Some(4))], true, false, Decision::Retry { start: 3 }),
            ("interrupted retry without retry flag is done", vec![v(Done(5), Some(3))], false, true, Decision::Skip),
            ("nothing yet", vec![v(Missing, None), v(Missing, None)], false, false, resume(0, &[false, false])),
            ("resume at n", vec![v(Partial(4), None), v(Partial(7), None)], false, false, resume(4, &[false, false])),
            ("first done, second behind", vec![v(Done(9), None), v(Partial(2), None)], false, false, resume(2, &[true, false])),
            ("first done, second missing", vec![v(Done(9), None), v(Missing, None)], true, true, resume(0, &[true, false])),
            ("stopped early: one step partial", vec![v(Partial(0), None)], true, true, resume(0, &[false])),
        ];
        for (name, views, retry, wants, expected) in cases {
            let got = decide(&views, retry, if wants { Box::new(yes) as Box<dyn FnOnce() -> Result<bool>> } else { Box::new(no) }).unwrap();
            assert_eq!(got, expected, "{name}");
        }
    }

    #[test]
    fn the_retry_probe_is_asked_only_when_it_matters() {
        let views = vec![v(Partial(1), None)];
        decide(&views, true, || panic!("not needed for a resume")).unwrap();
        decide(&[v(Done(1), None)], false, || panic!("not needed without retry")).unwrap();
    }
}
