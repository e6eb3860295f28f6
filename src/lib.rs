//! unitcoder: turn raw code corpora into verified, documented code-training data.
//!
//! Layout: `cli` (clap definitions and dispatch), `stages` (one module per pipeline stage),
//! and the engines: `shards` (reading/writing shards and manifests), `python` (parsing and
//! static analysis of Python source). The record schema lives in `record`.

pub mod cli;
pub mod config;
pub mod dedup;
pub mod executor;
pub mod llm;
pub mod logging;
pub mod python;
pub mod record;
pub mod sandbox;
pub mod shards;
pub mod stages;
