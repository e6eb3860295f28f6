//! unitcoder: turn raw code corpora into verified, documented code-training data.
//!
//! Layers, top to bottom (each imports only from below; `ARCHITECTURE.md` has the diagram):
//! `cli` (clap and dispatch) → `stages` (one module per stage, `stages::common` the step
//! kit) → `executor` (streams records through steps, resume, manifests), `context`,
//! `config`, `record` (the record schema), `exit` → the engines: `shards`, `llm`,
//! `sandbox`, `python`, `dedup`, `slurm`, `logging`, `hash`.

pub mod cli;
pub mod config;
pub mod context;
pub mod dedup;
pub mod executor;
pub mod exit;
pub mod hash;
pub mod html;
pub mod interrupt;
pub mod llm;
pub mod logging;
pub mod python;
pub mod record;
pub mod sandbox;
pub mod shards;
pub mod slurm;
pub mod stages;
