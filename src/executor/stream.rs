//! Streaming planned shards through the chain: a reader thread feeds a bounded channel;
//! records run through the steps concurrently (at most `window` in flight); results are
//! written to every step's output in input order, and each shard is sealed when its input
//! ends.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context as _, Result};
use serde_json::Value;

use super::plan::ShardPlan;
use super::{bad_input_record, Counts, DriveOptions, Record, Step};
use crate::record::RecordExt;
use crate::shards::reader::read_records;
use crate::shards::resume::{PartialShard, StageOutput};
use crate::shards::stream::{run_ordered, Event};
use crate::shards::ShardInfo;

enum Job {
    Record { k: usize, input: Record, prev: Vec<Option<Record>> },
    End(usize),
}

enum Done {
    Record(usize, Vec<Record>),
    End(usize),
}

/// How often a running chain writes its counts for `stats` and `report` to read.
const SNAPSHOT_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// What the progress line counts toward.
pub struct Totals {
    /// Input records to process in all, done ones included.
    pub total: u64,
    /// The output directories.
    pub place: String,
}

/// Called with the counts so far, now and then, while a chain runs.
pub type Snapshot<'a> = &'a mut dyn FnMut(&[Counts], &[BTreeMap<usize, ShardInfo>]);

/// Stream `plans` through `steps`, adding to `counts` and `sealed`.
#[allow(clippy::too_many_arguments)]
pub fn run(
    plans: Vec<ShardPlan>,
    outputs: &[StageOutput],
    steps: &[Arc<dyn Step>],
    opts: &DriveOptions,
    totals: Totals,
    counts: &mut [Counts],
    sealed: &mut [BTreeMap<usize, ShardInfo>],
    snapshot: Snapshot,
) -> Result<()> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Job>(opts.window.max(1));
    let first_stage = steps.first().map(|s| s.name()).unwrap_or("?");
    let reader_outputs = outputs.to_vec();
    let max_line = opts.max_line_bytes;
    let producer = std::thread::Builder::new().name("reader".into()).spawn(move || read_plans(plans, &reader_outputs, first_stage, max_line, tx))?;

    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().context("tokio runtime")?;
    let mut writers: Vec<Option<PartialShard>> = (0..steps.len()).map(|_| None).collect();
    let label = steps.iter().map(|s| s.name()).collect::<Vec<_>>().join("→");
    // Done = what the last step's output holds (resumed records included), so ok ≤ done.
    let last = |counts: &[Counts]| counts.last().map(|c| (c.records, c.ok)).unwrap_or((0, 0));
    let spec = crate::logging::ProgressSpec {
        label: &label,
        unit: "records",
        second: "ok",
        total: Some(totals.total),
        resumed: last(counts).0,
        place: totals.place,
    };
    let mut progress = crate::logging::Progress::new(spec, opts.quiet);
    let work = |job| {
        let steps = steps.to_vec();
        async move {
            match job {
                Job::End(k) => Done::End(k),
                Job::Record { k, input, prev } => Done::Record(k, run_chain(&steps, input, prev).await),
            }
        }
    };
    // Snapshots go by the clock (the first at once): the next record in order may take
    // minutes while the ones behind it finish and the model's tokens add up.
    let result = runtime.block_on(run_ordered(rx, opts.window, Some(SNAPSHOT_EVERY), work, |event| {
        let done = match event {
            Event::Tick => {
                snapshot(counts, sealed);
                return Ok(());
            }
            Event::Done(done) => done,
        };
        match done {
            Done::Record(k, outs) => {
                for (s, out) in outs.iter().enumerate() {
                    if writers[s].is_none() {
                        writers[s] = Some(outputs[s].append(k)?);
                    }
                    if let Some(w) = writers[s].as_mut() {
                        w.write(out)?;
                    }
                    counts[s].add(steps[s].as_ref(), out);
                }
                let (done, ok) = last(counts);
                progress.update(done, ok);
            }
            Done::End(k) => {
                for (s, o) in outputs.iter().enumerate() {
                    match writers[s].take() {
                        Some(w) => w.close()?,
                        None => drop(o.append(k)?.close()), // an input with no (new) records
                    }
                    sealed[s].insert(k, o.seal(k)?);
                }
            }
        }
        Ok(())
    }));
    progress.finish();
    for w in writers.into_iter().flatten() {
        w.close()?;
    }
    let produced = producer.join().map_err(|_| anyhow::anyhow!("reader thread panicked"))?;
    result?;
    produced
}

/// The reader thread: every planned shard's records (after its `start`), with the previous
/// outputs alongside in retry mode, then the shard's end.
fn read_plans(plans: Vec<ShardPlan>, outputs: &[StageOutput], first_stage: &str, max_line: usize, tx: tokio::sync::mpsc::Sender<Job>) -> Result<()> {
    for plan in plans {
        let mut prev_readers: Vec<PrevReader> = Vec::new();
        if plan.retry {
            for o in outputs {
                prev_readers.push(PrevReader::open(o.final_path(plan.k), plan.start)?);
            }
        }
        let mut index = 0u64;
        let mut failed: Option<anyhow::Error> = None;
        let mut open = true;
        read_records(std::slice::from_ref(&plan.input), max_line, |file, line, item| {
            index += 1;
            if index > plan.take {
                return false;
            }
            if index <= plan.start {
                return true;
            }
            let input = item.unwrap_or_else(|bad| bad_input_record(first_stage, file, line, &bad));
            let prev = match prev_readers.iter_mut().map(PrevReader::next).collect::<Result<Vec<_>>>() {
                Ok(p) => p,
                Err(e) => {
                    failed = Some(e);
                    return false;
                }
            };
            open = tx.blocking_send(Job::Record { k: plan.k, input, prev }).is_ok();
            open
        })?;
        if let Some(e) = failed {
            return Err(e);
        }
        if !open || tx.blocking_send(Job::End(plan.k)).is_err() {
            return Ok(());
        }
    }
    Ok(())
}

/// One record through the chain. With previous outputs (retry mode), steps whose previous
/// result is fine keep it; from the first step that needs redoing, everything is redone.
async fn run_chain(steps: &[Arc<dyn Step>], input: Record, prev: Vec<Option<Record>>) -> Vec<Record> {
    let mut outs = Vec::with_capacity(steps.len());
    let mut current = input;
    let mut redoing = prev.is_empty();
    for (s, step) in steps.iter().enumerate() {
        if !redoing {
            if let Some(Some(p)) = prev.get(s) {
                if !step.needs_retry(p) {
                    current = p.clone();
                    outs.push(p.clone());
                    continue;
                }
            }
            redoing = true;
        }
        let out = if current.error().is_some() {
            current.clone()
        } else {
            crate::sandbox::asynchronous::labelled(step.name(), step.clone().process(current.clone())).await
        };
        current = out.clone();
        outs.push(out);
    }
    outs
}

/// Reads a previous final shard record by record (retry mode).
struct PrevReader {
    lines: Box<dyn std::io::BufRead + Send>,
}

impl PrevReader {
    fn open(path: PathBuf, skip: u64) -> Result<PrevReader> {
        let mut r = PrevReader { lines: crate::shards::resume::open_lines(&path)? };
        for _ in 0..skip {
            r.next()?;
        }
        Ok(r)
    }

    fn next(&mut self) -> Result<Option<Record>> {
        let mut line = String::new();
        if self.lines.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        Ok(serde_json::from_str::<Value>(&line).ok().and_then(|v| match v {
            Value::Object(m) => Some(m),
            _ => None,
        }))
    }
}
