//! Parallel map with results delivered in input order and a bounded number of items in
//! flight (queued, being worked on, or waiting to be emitted), so memory stays bounded
//! however slow one item is and output order never depends on thread timing.

use std::collections::BTreeMap;

use anyhow::{Context, Result};

/// Run `work` over the items `produce` emits, on `workers` threads with `stack_bytes` of
/// stack each, and pass the results to `consume` in the order the items were produced.
/// `produce` gets a callback returning `false` when the pipeline is shutting down.
pub fn ordered_map<I, O, P, W, C>(workers: usize, window: usize, stack_bytes: usize, produce: P, work: W, mut consume: C) -> Result<()>
where
    I: Send,
    O: Send,
    P: FnOnce(&mut dyn FnMut(I) -> bool) -> Result<()> + Send,
    W: Fn(I) -> O + Sync,
    C: FnMut(O) -> Result<()>,
{
    let workers = workers.max(1);
    let window = window.max(workers);
    let (item_tx, item_rx) = crossbeam_channel::bounded::<(u64, I)>(window);
    let (out_tx, out_rx) = crossbeam_channel::bounded::<(u64, O)>(window);
    let (token_tx, token_rx) = crossbeam_channel::bounded::<()>(window);
    for _ in 0..window {
        token_tx.send(()).context("token channel")?;
    }
    std::thread::scope(|scope| -> Result<()> {
        let producer = std::thread::Builder::new().name("producer".into()).spawn_scoped(scope, move || {
            let mut seq = 0u64;
            let mut emit = |item: I| {
                if token_rx.recv().is_err() {
                    return false;
                }
                let ok = item_tx.send((seq, item)).is_ok();
                seq += 1;
                ok
            };
            produce(&mut emit)
        })?;
        for w in 0..workers {
            let (rx, tx, work) = (item_rx.clone(), out_tx.clone(), &work);
            std::thread::Builder::new().name(format!("worker-{w}")).stack_size(stack_bytes).spawn_scoped(scope, move || {
                for (seq, item) in rx {
                    if tx.send((seq, work(item))).is_err() {
                        return;
                    }
                }
            })?;
        }
        drop(out_tx);
        drop(item_rx);
        let mut pending: BTreeMap<u64, O> = BTreeMap::new();
        let mut next = 0u64;
        let mut failure = None;
        for (seq, out) in out_rx.iter() {
            pending.insert(seq, out);
            while let Some(out) = pending.remove(&next) {
                next += 1;
                let _ = token_tx.send(());
                if let Err(e) = consume(out) {
                    failure = Some(e);
                    break;
                }
            }
            if failure.is_some() {
                break;
            }
        }
        drop(token_tx);
        drop(out_rx);
        let produced = producer.join().map_err(|_| anyhow::anyhow!("producer thread panicked"))?;
        if let Some(e) = failure {
            return Err(e);
        }
        produced?;
        anyhow::ensure!(pending.is_empty(), "internal error: {} results never emitted", pending.len());
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_is_kept_whatever_the_timing() {
        let mut seen = Vec::new();
        ordered_map(
            4,
            8,
            1 << 20,
            |emit| {
                for i in 0..200u64 {
                    if !emit(i) {
                        break;
                    }
                }
                Ok(())
            },
            |i| {
                std::thread::sleep(std::time::Duration::from_micros((i * 7919) % 500));
                i * 2
            },
            |o| {
                seen.push(o);
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(seen, (0..200).map(|i| i * 2).collect::<Vec<_>>());
    }

    #[test]
    fn consumer_error_stops_the_pipeline() {
        let r = ordered_map(
            2,
            4,
            1 << 20,
            |emit| {
                for i in 0..1_000_000u64 {
                    if !emit(i) {
                        break;
                    }
                }
                Ok(())
            },
            |i| i,
            |o| if o == 10 { anyhow::bail!("stop") } else { Ok(()) },
        );
        assert!(r.is_err());
    }
}
