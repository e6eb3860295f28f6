//! One module per pipeline stage, each reading like the corresponding step of the method,
//! plus `common` (the step kit they share) and the stage registry below.
//!
//! To add a stage: write `stages/<name>.rs` (its flags, its settings type for `[<name>]`,
//! its `Step`, its `run`), list it in `REGISTRY`, and add its subcommand to `cli.rs`.
//! `ARCHITECTURE.md` has the longer version.

pub mod case2code;
pub mod common;
pub mod consensus;
pub mod doctor;
pub mod eval_tests;
pub mod export;
pub mod extract;
pub mod fix;
pub mod gen_tests;
pub mod problems;
pub mod refine;
pub mod report;
pub mod run;
pub mod sandbox_run;
pub mod share;
pub mod show;
pub mod slurm;
pub mod stats;
pub mod status;

use anyhow::Result;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::config::Config;

/// What the rest of the tool needs to know about a stage.
pub struct StageInfo {
    pub name: &'static str,
    /// Its config section, read through its settings type: the section as TOML with every
    /// default filled in, or the error for an unknown key or a bad value.
    pub section: Option<fn(&Config) -> Result<String>>,
    /// Writes a work directory that `stats` shows (in registry order).
    pub in_funnel: bool,
}

fn section<T: Serialize + DeserializeOwned + Default>(config: &Config, name: &str) -> Result<String> {
    Ok(toml::to_string(&config.section::<T>(name)?)?)
}

macro_rules! stage {
    ($name:literal, $settings:ty, $funnel:expr) => {{
        fn read(config: &Config) -> Result<String> {
            section::<$settings>(config, $name)
        }
        StageInfo { name: $name, section: Some(read), in_funnel: $funnel }
    }};
    ($name:literal, $funnel:expr) => {
        StageInfo { name: $name, section: None, in_funnel: $funnel }
    };
}

/// Every stage, in funnel order.
pub const REGISTRY: &[StageInfo] = &[
    stage!("extract", crate::python::extractor::ExtractSettings, true),
    stage!("share", true),
    stage!("gen-tests", gen_tests::GenTestsSettings, true),
    stage!("sandbox-run", true),
    stage!("fix", fix::FixSettings, true),
    stage!("refine", refine::RefineSettings, true),
    stage!("case2code", case2code::Case2CodeSettings, true),
    stage!("problems", problems::ProblemsSettings, true),
    stage!("consensus", consensus::ConsensusSettings, true),
    stage!("export", export::ExportSettings, true),
    stage!("run", run::RunSettings, false),
    stage!("stats", false),
    stage!("report", false),
    stage!("status", false),
    stage!("slurm", crate::slurm::SlurmSettings, false),
    stage!("doctor", false),
    stage!("eval-tests", false),
];

/// Check every stage section of a loaded config (unknown keys, bad values), so a mistake
/// in any section fails every command, as it would with one typed config struct.
pub fn validate_config(config: &Config) -> Result<()> {
    for stage in REGISTRY {
        if let Some(check) = stage.section {
            check(config)?;
        }
    }
    for name in config.sections.keys() {
        if !REGISTRY.iter().any(|s| s.section.is_some() && s.name == name) {
            tracing::debug!("config: section [{name}] is not used by any stage");
        }
    }
    Ok(())
}

/// A stage's place in the funnel (unknown stages last).
pub fn funnel_position(stage: &str) -> usize {
    REGISTRY.iter().filter(|s| s.in_funnel).position(|s| s.name == stage).unwrap_or(REGISTRY.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// configs/default.toml documents every key with its default: keep it true.
    #[test]
    fn shipped_default_config_matches_built_in_defaults() {
        let shipped: Config = toml::from_str(include_str!("../../configs/default.toml")).expect("parses");
        let built_in = Config::default();
        for stage in REGISTRY {
            if let Some(section) = stage.section {
                assert!(shipped.sections.contains_key(stage.name), "configs/default.toml has no [{}]", stage.name);
                assert_eq!(section(&shipped).unwrap(), section(&built_in).unwrap(), "[{}]", stage.name);
            }
        }
        assert_eq!(toml::to_string(&shipped.input).unwrap(), toml::to_string(&built_in.input).unwrap());
        assert_eq!(toml::to_string(&shipped.output).unwrap(), toml::to_string(&built_in.output).unwrap());
        assert_eq!(toml::to_string(&shipped.sandbox).unwrap(), toml::to_string(&built_in.sandbox).unwrap());
        assert_eq!(shipped.adequacy, built_in.adequacy);
        assert_eq!(toml::to_string(&shipped.llm).unwrap(), toml::to_string(&built_in.llm).unwrap());
    }

    #[test]
    fn unknown_keys_in_any_stage_section_are_errors() {
        let bad: Config = toml::from_str("[fix]\nmax_roundz = 2\n").unwrap();
        let err = validate_config(&bad).unwrap_err();
        assert!(format!("{err:#}").contains("max_roundz"), "{err:#}");
        let unknown_section: Config = toml::from_str("[future_stage]\nx = 1\n").unwrap();
        validate_config(&unknown_section).unwrap();
    }

    #[test]
    fn funnel_order_follows_the_registry() {
        assert!(funnel_position("extract") < funnel_position("fix"));
        assert!(funnel_position("consensus") < funnel_position("export"));
        assert_eq!(funnel_position("nonsense"), REGISTRY.len());
    }
}
