//! Streaming records through async work (LLM calls) with results in input order: a record
//! starts as soon as there is room, so one slow request holds only its own slot; at most
//! `window` records are between "read" and "written" at any time.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use anyhow::Result;
use tokio::task::JoinSet;

/// What the consumer of `run_ordered` hears: the next result in input order, or a tick.
pub enum Event<O> {
    Done(O),
    /// `every` has passed: a chance to report progress even while the next result in order
    /// is still being worked on (the results behind it may all be finished).
    Tick,
}

/// Run `work` on every input, at most `window` at a time, and give the results to
/// `consume` in input order; with `every`, also a `Tick` at that interval (the first at once).
pub async fn run_ordered<I, O, F, Fut, C>(
    mut input: tokio::sync::mpsc::Receiver<I>,
    window: usize,
    every: Option<Duration>,
    work: F,
    mut consume: C,
) -> Result<()>
where
    I: Send + 'static,
    O: Send + 'static,
    F: Fn(I) -> Fut,
    Fut: Future<Output = O> + Send + 'static,
    C: FnMut(Event<O>) -> Result<()>,
{
    let window = window.max(1) as u64;
    let mut tasks: JoinSet<(u64, O)> = JoinSet::new();
    let mut pending: BTreeMap<u64, O> = BTreeMap::new();
    let (mut next_in, mut next_out) = (0u64, 0u64);
    let mut input_done = false;
    let mut ticks = tokio::time::interval(every.unwrap_or(Duration::from_secs(3600)));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let room = next_in - next_out < window;
        if input_done && tasks.is_empty() {
            break;
        }
        tokio::select! {
            item = input.recv(), if room && !input_done => match item {
                Some(item) => {
                    let seq = next_in;
                    next_in += 1;
                    let fut = work(item);
                    tasks.spawn(async move { (seq, fut.await) });
                }
                None => input_done = true,
            },
            joined = tasks.join_next(), if !tasks.is_empty() => {
                let (seq, out) = joined.ok_or_else(|| anyhow::anyhow!("task set empty"))??;
                pending.insert(seq, out);
                while let Some(out) = pending.remove(&next_out) {
                    next_out += 1;
                    consume(Event::Done(out))?;
                }
            }
            _ = ticks.tick(), if every.is_some() => consume(Event::Tick)?,
        }
    }
    anyhow::ensure!(pending.is_empty(), "internal error: {} results never written", pending.len());
    Ok(())
}
