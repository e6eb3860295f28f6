//! A rank's marker (`DIR/.ranks/rank-…json`) around a command: "running" on which host,
//! pid and Slurm job while it runs, then "done" or "failed" with the exit status and the
//! reason (the error, or the signal that stopped it). `unitcoder status` reads them.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;

use crate::context::Context;
use crate::shards::ranks::RankMarker;

/// Run `body`, recording how this rank's process went; without ranks just `body`.
pub fn with_rank_marker(ctx: &Context, dir: Option<&Path>, command: &str, body: impl FnOnce() -> Result<ExitCode>) -> Result<ExitCode> {
    let Some(dir) = dir.filter(|_| ctx.world_size > 1 && !ctx.dry_run) else { return body() };
    let marker = RankMarker::start(ctx.rank, ctx.world_size, command);
    if let Err(e) = marker.write(dir) {
        tracing::warn!("cannot write the rank marker: {e:#}");
    }
    let (on_signal, place) = (marker.clone(), dir.to_path_buf());
    crate::interrupt::on_signal(move |signal, status| {
        let _ = on_signal.ended(status, Some(format!("interrupted by {signal}"))).write(&place);
    });
    let result = body();
    let ended = match &result {
        _ if crate::interrupt::received().is_some() => {
            let (signal, status) = crate::interrupt::received().unwrap_or(("a signal", 143));
            marker.ended(status, Some(format!("interrupted by {signal}")))
        }
        Ok(code) => {
            let status = crate::exit::status_of(*code);
            marker.ended(status, (status != 0).then(|| format!("exit status {status} (see this rank's log)")))
        }
        Err(e) => marker.ended(status_for(e), Some(format!("{e:#}"))),
    };
    if let Err(e) = ended.write(dir) {
        tracing::warn!("cannot write the rank marker: {e:#}");
    }
    result
}

/// The exit status `cli::main` gives an error.
fn status_for(e: &anyhow::Error) -> u8 {
    if e.is::<crate::exit::UsageError>() {
        crate::exit::USAGE
    } else if e.is::<crate::exit::Incomplete>() {
        crate::exit::INCOMPLETE
    } else {
        crate::exit::FATAL
    }
}
