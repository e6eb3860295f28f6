//! Merging several record streams (the ranks of a stage) into one, ordered by a key every
//! stream is already sorted by (`source.position`): the merge of N ranks' outputs then comes
//! out in the order one process would have written them. One reader thread per stream, each
//! a bounded channel ahead, so memory stays at a few records per stream.

use std::sync::mpsc::{sync_channel, Receiver};

use anyhow::Result;
use serde_json::Value;

use super::reader::{read_record_items, InputFile, RecordItem};

/// A record's place in the corpus (`source.position`), when it has one.
pub fn position(item: &RecordItem) -> Option<(u64, u64)> {
    let RecordItem::Record(r) = item else { return None };
    let p = r.get("source")?.get("position")?.as_array()?;
    Some((p.first().and_then(Value::as_u64)?, p.get(1).and_then(Value::as_u64)?))
}

/// Every item of `streams` (each a list of files read in order), merged by `position`: at each
/// step the stream whose next item has the smallest position goes first; items without one
/// (bad lines, records from elsewhere) go as soon as they are at a stream's head. Stops when
/// `sink` returns false.
pub fn merge_by_position(streams: Vec<Vec<InputFile>>, max_line_bytes: usize, mut sink: impl FnMut(RecordItem) -> bool) -> Result<()> {
    let mut readers = Vec::new();
    let mut heads: Vec<Option<RecordItem>> = Vec::new();
    let mut channels: Vec<Receiver<RecordItem>> = Vec::new();
    for files in streams {
        let (tx, rx) = sync_channel::<RecordItem>(64);
        readers.push(std::thread::spawn(move || read_record_items(&files, max_line_bytes, |item| tx.send(item).is_ok())));
        channels.push(rx);
        heads.push(None);
    }
    for (head, rx) in heads.iter_mut().zip(&channels) {
        *head = rx.recv().ok();
    }
    loop {
        let next = heads
            .iter()
            .enumerate()
            .filter_map(|(i, h)| h.as_ref().map(|item| (i, position(item))))
            // None sorts first: such items are not held back behind positioned ones.
            .min_by_key(|(i, p)| (*p, *i));
        let Some((i, _)) = next else { break };
        let item = heads[i].take();
        heads[i] = channels[i].recv().ok();
        if let Some(item) = item {
            if !sink(item) {
                break;
            }
        }
    }
    drop(channels); // readers blocked on a full channel see it closed and stop
    for reader in readers {
        match reader.join() {
            Ok(result) => result?,
            Err(_) => anyhow::bail!("a shard reader thread panicked"),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_merge_in_position_order_with_unpositioned_items_in_stream_order() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, rows: &[&str]| {
            let path = dir.path().join(name);
            std::fs::write(&path, rows.iter().map(|r| format!("{r}\n")).collect::<String>()).unwrap();
            super::super::expand_inputs(&[path.display().to_string()]).unwrap()
        };
        let rec = |id: &str, f: u64, n: u64| format!(r#"{{"id":"{id}","source":{{"position":[{f},{n}]}}}}"#);
        let a = write("a.jsonl", &[&rec("a0", 0, 0), &rec("a1", 2, 5), &rec("a2", 4, 0)]);
        let b = write("b.jsonl", &[&rec("b0", 1, 0), &rec("b1", 1, 3), r#"{"id":"loose"}"#, &rec("b2", 3, 1)]);
        let mut ids = Vec::new();
        merge_by_position(vec![a, b], 1 << 20, |item| {
            if let RecordItem::Record(r) = item {
                ids.push(r["id"].as_str().unwrap().to_string());
            }
            true
        })
        .unwrap();
        assert_eq!(ids, ["a0", "b0", "b1", "loose", "a1", "b2", "a2"]);
        let mut first = Vec::new();
        merge_by_position(vec![write("c.jsonl", &[&rec("c", 0, 0), &rec("d", 0, 1)])], 1 << 20, |_| {
            first.push(());
            false
        })
        .unwrap();
        assert_eq!(first.len(), 1, "stops when the sink says so");
    }
}
