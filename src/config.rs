//! The TOML config file (`--config FILE`). Flags override config values; config values
//! override built-in defaults.
//!
//! This module types the engine sections every stage shares (`[input]`, `[output]`,
//! `[sandbox]`, `[adequacy]`, `[llm]`). Every other section belongs to one stage, which owns its
//! settings type and reads its section with [`Config::section`]; the stage registry
//! (`stages::REGISTRY`) checks all of them when the file is loaded, so an unknown key in
//! any section is still an error.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::llm::LlmSettings;
use crate::sandbox::{AdequacySettings, SandboxSettings};

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Config {
    pub jobs: Option<usize>,
    pub input: InputConfig,
    pub output: OutputConfig,
    pub sandbox: SandboxSettings,
    pub adequacy: AdequacySettings,
    pub llm: LlmSettings,
    /// The stage sections (`[extract]`, `[fix]`, ...), read by their stages. Sections no
    /// stage knows are kept, not rejected.
    #[serde(flatten)]
    pub sections: toml::Table,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct InputConfig {
    pub content_field: String,
    pub id_field: String,
    pub path_field: String,
    /// Documents larger than this are skipped with reason `too_large`.
    pub max_doc_bytes: usize,
    /// What an input directory contributes to `extract` (see `CorpusFormat`).
    pub format: crate::shards::CorpusFormat,
    /// JSONL/Parquet fields carried into each record's `source.meta` (The Stack's licence,
    /// repository, stars).
    pub keep_fields: Vec<String>,
}

impl Default for InputConfig {
    fn default() -> Self {
        Self {
            content_field: "content".into(),
            id_field: "id".into(),
            path_field: "path".into(),
            max_doc_bytes: 2 << 20,
            format: Default::default(),
            keep_fields: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutputConfig {
    pub records_per_shard: usize,
    /// Write `.jsonl.zst` shards (true) or plain `.jsonl` (false).
    pub compress: bool,
}

impl Default for OutputConfig {
    fn default() -> Self {
        Self { records_per_shard: 10_000, compress: true }
    }
}

impl Config {
    /// The config file and its directory (for resolving relative paths in it).
    pub fn load(path: Option<&Path>) -> Result<(Config, Option<PathBuf>)> {
        let Some(path) = path else { return Ok((Config::default(), None)) };
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read config {}", path.display()))?;
        let config: Config = toml::from_str(&text).with_context(|| format!("config {}: invalid", path.display()))?;
        Ok((config, path.parent().map(Path::to_path_buf)))
    }

    /// A stage's section, defaults for missing keys; unknown keys are an error.
    pub fn section<T: DeserializeOwned + Default>(&self, name: &str) -> Result<T> {
        match self.sections.get(name) {
            None => Ok(T::default()),
            Some(value) => value.clone().try_into().with_context(|| format!("config section [{name}] is invalid")),
        }
    }
}
