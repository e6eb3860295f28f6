//! The TOML config file (`--config FILE`). Flags override config values; config values
//! override built-in defaults. Each stage has its own section (`[extract]`, ...); `[input]`
//! and `[output]` hold the shard engine's settings.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::stages::extract::ExtractSettings;

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct Config {
    pub jobs: Option<usize>,
    pub input: InputConfig,
    pub output: OutputConfig,
    pub extract: ExtractSettings,
    pub sandbox: crate::sandbox::SandboxSettings,
    pub llm: crate::llm::LlmSettings,
    pub fix: crate::stages::fix::FixSettings,
    pub refine: crate::stages::refine::RefineSettings,
    pub export: crate::stages::export::ExportSettings,
    pub case2code: crate::stages::case2code::Case2CodeSettings,
    pub problems: crate::stages::problems::ProblemsSettings,
    pub consensus: crate::stages::consensus::ConsensusSettings,
    pub run: crate::stages::run::RunSettings,
    /// Sections for stages this version does not know yet are kept, not rejected.
    #[serde(flatten)]
    pub other: toml::Table,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct InputConfig {
    pub content_field: String,
    pub id_field: String,
    pub path_field: String,
    /// Documents larger than this are skipped with reason `too_large`.
    pub max_doc_bytes: usize,
}

impl Default for InputConfig {
    fn default() -> Self {
        Self { content_field: "content".into(), id_field: "id".into(), path_field: "path".into(), max_doc_bytes: 2 << 20 }
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
    pub fn load(path: Option<&Path>) -> Result<(Config, Option<PathBuf>)> {
        let Some(path) = path else { return Ok((Config::default(), None)) };
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read config {}", path.display()))?;
        let config: Config = toml::from_str(&text).with_context(|| format!("config {}: invalid", path.display()))?;
        for key in config.other.keys() {
            tracing::debug!("config {}: section [{key}] is not used by this stage", path.display());
        }
        Ok((config, path.parent().map(Path::to_path_buf)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// configs/default.toml documents every key with its default: keep it true.
    #[test]
    fn shipped_default_config_matches_built_in_defaults() {
        let shipped: Config = toml::from_str(include_str!("../configs/default.toml")).expect("parses");
        let built_in = Config::default();
        assert_eq!(toml::to_string(&shipped.extract).unwrap(), toml::to_string(&built_in.extract).unwrap());
        assert_eq!(toml::to_string(&shipped.input).unwrap(), toml::to_string(&built_in.input).unwrap());
        assert_eq!(toml::to_string(&shipped.output).unwrap(), toml::to_string(&built_in.output).unwrap());
        assert_eq!(toml::to_string(&shipped.sandbox).unwrap(), toml::to_string(&built_in.sandbox).unwrap());
        assert_eq!(toml::to_string(&shipped.llm).unwrap(), toml::to_string(&built_in.llm).unwrap());
        assert_eq!(toml::to_string(&shipped.fix).unwrap(), toml::to_string(&built_in.fix).unwrap());
        assert_eq!(toml::to_string(&shipped.refine).unwrap(), toml::to_string(&built_in.refine).unwrap());
        assert_eq!(toml::to_string(&shipped.export).unwrap(), toml::to_string(&built_in.export).unwrap());
        assert_eq!(toml::to_string(&shipped.run).unwrap(), toml::to_string(&built_in.run).unwrap());
        assert_eq!(toml::to_string(&shipped.case2code).unwrap(), toml::to_string(&built_in.case2code).unwrap());
        assert_eq!(toml::to_string(&shipped.problems).unwrap(), toml::to_string(&built_in.problems).unwrap());
        assert_eq!(toml::to_string(&shipped.consensus).unwrap(), toml::to_string(&built_in.consensus).unwrap());
    }
}
