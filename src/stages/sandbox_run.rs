//! `unitcoder sandbox-run`: execute every record's program against its unittest module in
//! the sandbox and attach a structured `verdict` (UnitCoder's execution step).
//!
//! For each input record, in input order:
//!   1. take the program (`--code-field`) and the test module (`--tests-field`);
//!   2. run them in a fresh fork of a warm, isolated worker (see `sandbox`);
//!   3. assess a pass: rerun it (flake check), measure line coverage, run mutants of the
//!      function against the tests (`sandbox::adequacy`);
//!   4. write the record back unchanged plus `verdict` (with `adequacy`).
//!
//! A record missing a field is written with an `error` instead; nothing is dropped.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Result;
use clap::Args;
use serde_json::{json, Value};

use crate::context::Context;
use crate::executor::{run_stage, BoxFuture, Counts, Record, Resources, Step};
use crate::record::{counter, field, ErrorInfo, RecordExt, Status};
use crate::sandbox::{AdequacyArgs, AdequacySettings, Sandbox};
use crate::stages::common::{adequacy_settings, tally_adequacy, RecordFields, SandboxFlags};

#[derive(Debug, Clone, Args, Default)]
#[command(next_help_heading = "Sandbox run")]
pub struct SandboxRunArgs {
    #[command(flatten)]
    pub flags: SandboxFlags,
    #[command(flatten)]
    pub adequacy: AdequacyArgs,
}

/// The sandbox-run step: the record plus `verdict` (or an `error` when a field is missing).
pub struct SandboxStep {
    pub sandbox: Arc<Sandbox>,
    pub fields: RecordFields,
    pub adequacy: AdequacySettings,
}

impl SandboxStep {
    pub fn verify(&self, mut record: Record) -> Record {
        let fields = &self.fields;
        match (record.text(&fields.code_field), record.text(&fields.tests_field)) {
            (Some(code), Some(tests)) => {
                let entry = record.text(&fields.entry_point_field);
                let verdict = self.sandbox.verify(code, tests, entry, &self.adequacy);
                record.put(field::VERDICT, &verdict);
            }
            (code, tests) => {
                let missing: Vec<&str> = [(&fields.code_field, code.is_none()), (&fields.tests_field, tests.is_none())]
                    .into_iter()
                    .filter(|(_, m)| *m)
                    .map(|(f, _)| f.as_str())
                    .collect();
                let message = format!("no string field {}", missing.join(", "));
                record.set_error(ErrorInfo::new("sandbox-run", "missing_field", message, false));
            }
        }
        record
    }
}

impl Step for SandboxStep {
    fn name(&self) -> &'static str {
        "sandbox-run"
    }

    fn process(self: Arc<Self>, record: Record) -> BoxFuture {
        Box::pin(async move {
            let sandbox = self.sandbox.clone();
            sandbox.metered(move || self.verify(record)).await
        })
    }

    fn settings(&self) -> Value {
        json!({"sandbox": self.sandbox.settings, "fields": self.fields, "adequacy": self.adequacy})
    }

    fn needs_retry(&self, out: &Record) -> bool {
        out.verdict_status() == Some(Status::SandboxError)
    }

    fn tally(&self, out: &Record, counts: &mut Counts) {
        tally_adequacy(out, counts);
        if let Some(status) = out.verdict_status() {
            counts.bump(counter::verdict(status));
            if status == Status::Rejected {
                if let Some(v) = out.typed::<crate::record::Verdict>(field::VERDICT) {
                    counts.bump(counter::rejected(v.reason.as_deref().unwrap_or("?")));
                }
            }
        }
    }

    fn resources(&self) -> Resources<'_> {
        Resources { agents: Vec::new(), sandbox: Some(&self.sandbox) }
    }
}

pub fn run(ctx: &Context, args: &SandboxRunArgs) -> Result<ExitCode> {
    let sandbox = Arc::new(Sandbox::start(args.flags.settings(ctx))?);
    let window = sandbox.settings.workers * 4;
    let adequacy = adequacy_settings(ctx, &args.adequacy);
    run_stage(ctx, Arc::new(SandboxStep { sandbox, fields: args.flags.fields.clone(), adequacy }), window)
}
