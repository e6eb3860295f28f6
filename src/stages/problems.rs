//! `unitcoder problems`: programming problems with complete specifications, for `consensus`
//! (UCoder/IPC stages 1–3).
//!
//! Problems come from one of two places:
//!   - **generated** (no `--input`): `count` seed records, each a topic and a skill drawn
//!     from the config lists by a seeded hash; the model writes the problem statement and a
//!     solution skeleton (imports + signature + docstring, no body) — problem-space probing;
//!   - **existing records** (`--input`): records with `code` + `entry_point` and a docstring
//!     (e.g. UnitCoder's verified functions) become problems whose statement is the
//!     docstring and whose skeleton is the export prompt; the code is kept as `reference`,
//!     so `consensus` can re-check it.
//!
//! Then:
//!   1. the model rates each problem: `difficulty` (easy | medium | hard) and `category`
//!      (from the configured list), stored with the problem;
//!   2. near-identical problems (MinHash on statement words) are marked `duplicate_of` the
//!      first one, in input order, and skipped by `consensus`.
//!
//! Output records: `problem`, `skeleton`, `entry_point`, `difficulty`, `category`,
//! `problem_source`, optionally `reference`, `duplicate_of`. Step 1 runs on the executor
//! (resumable, under `DIR/.generated/`); step 2 is a quick ordered pass into `DIR/`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context as _, Result};
use clap::Args;
use ruff_python_ast::Stmt;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::cli::Context;
use crate::dedup::{text_tokens, NearDuplicates};
use crate::executor::{error_of, error_value, run_stage, BoxFuture, Counts, Record, Step};
use crate::llm::reply::code_blocks;
use crate::llm::{Agent, LlmArgs};
use crate::python::parse_module;
use crate::shards::manifest::{fingerprint, now_rfc3339, prepare_output};
use crate::shards::reader::{read_record_items, RecordItem};
use crate::shards::{expand_inputs, Manifest, ShardWriter, ShardWriterOptions};
use crate::stages::export::split_prompt;

/// `[problems]` settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProblemsSettings {
    /// Problems to generate when there is no `--input`.
    pub count: usize,
    /// Seed of the topic/skill draw.
    pub seed: u64,
    pub topics: Vec<String>,
    pub skills: Vec<String>,
    /// Categories the rating chooses from (anything else becomes `other`).
    pub categories: Vec<String>,
    /// Ask the model for difficulty and category.
    pub rate: bool,
    /// Estimated Jaccard similarity of statement word shingles that marks a duplicate.
    pub near_dup_threshold: f64,
    /// Words per shingle.
    pub shingle: usize,
}

impl Default for ProblemsSettings {
    fn default() -> Self {
        let v = |xs: &[&str]| xs.iter().map(|s| s.to_string()).collect();
        Self {
            count: 100,
            seed: 0,
            topics: v(&[
                "string manipulation",
                "lists and sorting",
                "dictionaries and counting",
                "number theory",
                "dates and times",
                "numpy arrays",
                "pandas data frames",
                "regular expressions",
                "recursion",
                "dynamic programming",
                "graphs",
                "geometry",
                "parsing text formats",
                "statistics",
                "bit manipulation",
                "simulation",
                "intervals",
                "matrices",
            ]),
            skills: v(&[
                "edge-case handling",
                "input validation",
                "careful iteration",
                "string formatting",
                "searching",
                "aggregation",
                "greedy choices",
                "two pointers",
                "hash maps",
                "sorting with keys",
                "stacks and queues",
                "prefix sums",
            ]),
            categories: v(&["algorithms", "data structures", "string processing", "math", "data analysis", "parsing", "simulation", "other"]),
            rate: true,
            near_dup_threshold: 0.7,
            shingle: 3,
        }
    }
}

#[derive(Debug, Clone, Args, Default)]
pub struct ProblemsArgs {
    /// Problems to generate when there is no --input [default: 100].
    #[arg(long)]
    pub count: Option<usize>,
    /// Seed of the topic/skill draw [default: 0].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Do not ask the model for difficulty and category.
    #[arg(long)]
    pub no_rate: bool,
    #[command(flatten)]
    pub llm: LlmArgs,
}

pub fn resolve(ctx: &Context, args: &ProblemsArgs) -> ProblemsSettings {
    let mut s = ctx.config.problems.clone();
    if let Some(v) = args.count {
        s.count = v;
    }
    if let Some(v) = args.seed {
        s.seed = v;
    }
    if args.no_rate {
        s.rate = false;
    }
    s
}

fn pick<'a>(list: &'a [String], seed: u64, index: usize, salt: &str) -> &'a str {
    if list.is_empty() {
        return "";
    }
    let h = blake3::hash(format!("{seed}\u{0}{index}\u{0}{salt}").as_bytes());
    let n = u64::from_le_bytes(h.as_bytes()[..8].try_into().unwrap_or([0; 8]));
    &list[(n % list.len() as u64) as usize]
}

/// The generation seeds: one record per problem to write.
pub fn seed_records(s: &ProblemsSettings, rank: usize, world: usize) -> Vec<Value> {
    (0..s.count)
        .filter(|i| i % world.max(1) == rank)
        .map(|i| json!({"id": format!("problem-{}-{i:06}", s.seed), "topic": pick(&s.topics, s.seed, i, "topic"), "skill": pick(&s.skills, s.seed, i, "skill"), "index": i}))
        .collect()
}

/// A skeleton as the model wrote it → (entry point, skeleton through the docstring).
pub fn read_skeleton(block: &str) -> std::result::Result<(String, String), String> {
    let parsed = parse_module(block, ruff_python_ast::PythonVersion::PY314);
    if let Some(e) = parsed.errors().first() {
        return Err(format!("the skeleton does not parse: {}", e.error));
    }
    let funcs: Vec<String> =
        parsed.suite().iter().filter_map(|s| if let Stmt::FunctionDef(f) = s { Some(f.name.to_string()) } else { None }).collect();
    let [name] = funcs.as_slice() else { return Err(format!("the skeleton defines {} functions, not one", funcs.len())) };
    match split_prompt(block, name) {
        Some((prompt, _, true)) => Ok((name.clone(), prompt)),
        Some((_, _, false)) => Err("the skeleton has no docstring".into()),
        None => Err("the skeleton has no body".into()),
    }
}

/// The docstring of top-level function `name`.
fn docstring(code: &str, name: &str) -> Option<String> {
    let parsed = parse_module(code, ruff_python_ast::PythonVersion::PY314);
    parsed.suite().iter().find_map(|s| match s {
        Stmt::FunctionDef(f) if f.name.as_str() == name => match f.body.first() {
            Some(Stmt::Expr(e)) => e.value.as_string_literal_expr().map(|s| s.value.to_str().to_string()),
            _ => None,
        },
        _ => None,
    })
}

fn dedent(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let indent = lines.iter().skip(1).filter(|l| !l.trim().is_empty()).map(|l| l.len() - l.trim_start().len()).min().unwrap_or(0);
    let mut out: Vec<String> = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        out.push(if i == 0 { l.trim().to_string() } else { l.get(indent..).unwrap_or(l.trim_start()).trim_end().to_string() });
    }
    out.join("\n").trim().to_string()
}

/// The rating in a reply: the first JSON object with a known difficulty.
fn read_rating(reply: &str, categories: &[String]) -> Option<(String, String)> {
    let mut start = 0;
    while let Some(open) = reply[start..].find('{').map(|i| i + start) {
        let close = reply[open..].find('}').map(|i| i + open)?;
        if let Ok(Value::Object(o)) = serde_json::from_str::<Value>(&reply[open..=close]) {
            let difficulty = o.get("difficulty").and_then(Value::as_str).map(|d| d.trim().to_lowercase());
            if let Some(d) = difficulty.filter(|d| ["easy", "medium", "hard"].contains(&d.as_str())) {
                let c = o.get("category").and_then(Value::as_str).map(|c| c.trim().to_lowercase()).unwrap_or_default();
                let category = categories.iter().find(|k| k.to_lowercase() == c).cloned().unwrap_or_else(|| "other".into());
                return Some((d, category));
            }
        }
        start = open + 1;
    }
    None
}

pub struct ProblemsStep {
    pub settings: ProblemsSettings,
    pub agent: Agent,
}

impl ProblemsStep {
    async fn process_record(self: Arc<Self>, mut record: Record) -> Record {
        let text = |r: &Record, k: &str| r.get(k).and_then(Value::as_str).map(str::to_string);
        if let (Some(code), Some(entry_point)) = (text(&record, "code"), text(&record, "entry_point")) {
            // From an existing record: the docstring is the statement.
            let (Some((skeleton, _, true)), Some(doc)) = (split_prompt(&code, &entry_point), docstring(&code, &entry_point)) else {
                record.insert("error".into(), error_value("problems", "no_docstring", "the function has no docstring to state the problem", false));
                return record;
            };
            let mut out = Map::new();
            out.insert("id".into(), record.get("id").cloned().unwrap_or_else(|| json!(crate::record::content_id(&code))));
            out.insert("problem".into(), json!(dedent(&doc)));
            out.insert("skeleton".into(), json!(skeleton));
            out.insert("entry_point".into(), json!(entry_point));
            out.insert("reference".into(), json!(code));
            out.insert("problem_source".into(), json!({"kind": "record", "source": record.get("source").cloned().unwrap_or(Value::Null)}));
            if let Some(p) = record.get("packages") {
                out.insert("packages".into(), p.clone());
            }
            return self.rate(out).await;
        }
        let (Some(topic), Some(skill)) = (text(&record, "topic"), text(&record, "skill")) else {
            record.insert(
                "error".into(),
                error_value("problems", "missing_field", "a record needs `code` + `entry_point`, or `topic` + `skill`", false),
            );
            return record;
        };
        let index = record.get("index").cloned().unwrap_or(json!(0));
        let messages = match self.agent.prompts.render("problems_generate", json!({"topic": topic, "skill": skill, "index": index})) {
            Ok(m) => m,
            Err(e) => {
                record.insert("error".into(), error_value("problems", "prompt", format!("{e:#}"), false));
                return record;
            }
        };
        let generation = match self.agent.client.generate(&messages, 1).await {
            Ok(g) => g,
            Err(e) => {
                record.insert("error".into(), error_value("problems", e.kind(), e.to_string(), e.transient()));
                return record;
            }
        };
        let reply = generation.choices.first().map(|c| c.text.clone()).unwrap_or_default();
        let statement = reply.split("```").next().unwrap_or("").trim();
        let statement = statement.strip_prefix("Problem:").or_else(|| statement.strip_prefix("**Problem:**")).unwrap_or(statement).trim().to_string();
        let skeleton =
            code_blocks(&reply).iter().map(|b| read_skeleton(b)).find(|r| r.is_ok()).unwrap_or_else(|| Err("no code block holds a skeleton".into()));
        let (entry_point, skeleton) = match skeleton {
            Ok(v) if !statement.is_empty() => v,
            Ok(_) => {
                record.insert("error".into(), error_value("problems", "malformed_reply", "no problem statement before the skeleton", false));
                return record;
            }
            Err(why) => {
                record.insert("error".into(), error_value("problems", "malformed_reply", why, false));
                return record;
            }
        };
        let mut out = Map::new();
        out.insert("id".into(), record.get("id").cloned().unwrap_or(Value::Null));
        out.insert("problem".into(), json!(statement));
        out.insert("skeleton".into(), json!(skeleton));
        out.insert("entry_point".into(), json!(entry_point));
        out.insert(
            "problem_source".into(),
            json!({"kind": "generated", "topic": topic, "skill": skill, "index": index, "model": self.agent.client.settings.model}),
        );
        self.rate(out).await
    }

    /// Step 1: difficulty and category, judged by the model.
    async fn rate(&self, mut out: Record) -> Record {
        if !self.settings.rate {
            return out;
        }
        let ctx = json!({"problem": out["problem"], "skeleton": out["skeleton"], "categories": self.settings.categories});
        let messages = match self.agent.prompts.render("problems_rate", &ctx) {
            Ok(m) => m,
            Err(e) => {
                out.insert("error".into(), error_value("problems", "prompt", format!("{e:#}"), false));
                return out;
            }
        };
        match self.agent.client.generate(&messages, 1).await {
            Ok(g) => match read_rating(g.choices.first().map(|c| c.text.as_str()).unwrap_or(""), &self.settings.categories) {
                Some((difficulty, category)) => {
                    out.insert("difficulty".into(), json!(difficulty));
                    out.insert("category".into(), json!(category));
                }
                None => {
                    out.insert(
                        "error".into(),
                        error_value("problems", "malformed_rating", "the rating reply holds no JSON object with difficulty easy|medium|hard", false),
                    );
                }
            },
            Err(e) => {
                out.insert("error".into(), error_value("problems", e.kind(), e.to_string(), e.transient()));
            }
        }
        out
    }
}

impl Step for ProblemsStep {
    fn name(&self) -> &'static str {
        "problems"
    }

    fn process(self: Arc<Self>, record: Record) -> BoxFuture {
        Box::pin(self.process_record(record))
    }

    fn settings(&self) -> Value {
        json!({"problems": self.settings, "generate": self.agent.answer_settings("problems_generate"), "rate": self.agent.prompts.source("problems_rate")})
    }

    fn tally(&self, out: &Record, counts: &mut Counts) {
        if let Some(d) = out.get("difficulty").and_then(Value::as_str) {
            counts.bump(format!("difficulty_{d}"));
        }
    }

    fn report(&self) -> Value {
        json!({"llm": self.agent.usage()})
    }

    fn budget_stopped(&self) -> bool {
        self.agent.budget_stopped()
    }
}

/// Step 2: mark near-duplicates (in input order) and write the final shards.
fn dedup_pass(ctx: &Context, generated: &Path, out_dir: &Path, s: &ProblemsSettings) -> Result<()> {
    let started = Instant::now();
    let started_at = now_rfc3339();
    let inputs = expand_inputs(&[generated.display().to_string()])?;
    let output_cfg = ctx.output_config();
    let settings_json = json!({"near_dup_threshold": s.near_dup_threshold, "shingle": s.shingle, "output": output_cfg});
    let fp = fingerprint(&inputs.iter().map(|i| i.path.clone()).collect::<Vec<_>>(), &settings_json);
    if prepare_output(out_dir, "problems", &fp, ctx.global.force)? {
        return Ok(());
    }
    let mut writer = ShardWriter::new(
        out_dir,
        ShardWriterOptions {
            prefix: "shard".into(),
            records_per_shard: output_cfg.records_per_shard,
            compress: output_cfg.compress,
            ..Default::default()
        },
    )?;
    let mut near = NearDuplicates::new(s.near_dup_threshold, s.shingle);
    let mut kept_ids: Vec<Value> = Vec::new();
    let mut counts = Counts::default();
    let mut failure: Option<anyhow::Error> = None;
    read_record_items(&inputs, ctx.record_line_limit(), |item| {
        let mut record = match item {
            RecordItem::Record(r) => r,
            RecordItem::Bad { file, line, bad } => {
                let mut r = Map::new();
                r.insert("error".into(), error_value("problems", "bad_input", format!("{file}:{line}: {} ({})", bad.reason, bad.detail), false));
                r
            }
        };
        counts.records += 1;
        if error_of(&record).is_none() {
            let statement = record.get("problem").and_then(Value::as_str).unwrap_or("");
            match near.check_and_insert_tokens(&text_tokens(statement)) {
                Some((first, similarity)) => {
                    record
                        .insert("duplicate_of".into(), json!({"id": kept_ids.get(first).cloned().unwrap_or(Value::Null), "similarity": similarity}));
                    counts.bump("near_duplicate");
                }
                None => {
                    kept_ids.push(record.get("id").cloned().unwrap_or(Value::Null));
                    counts.ok += 1;
                }
            }
        } else if let Some(e) = error_of(&record).filter(|e| e.get("stage").and_then(Value::as_str) == Some("problems")) {
            *counts.errors_by_kind.entry(e.get("kind").and_then(Value::as_str).unwrap_or("unknown").to_string()).or_default() += 1;
            if e.get("transient").and_then(Value::as_bool) == Some(true) {
                counts.retryable += 1;
            }
        } else {
            counts.upstream_errors += 1;
        }
        if let Err(e) = writer.write(&record) {
            failure = Some(e);
            return false;
        }
        true
    })?;
    if let Some(e) = failure {
        return Err(e);
    }
    let shards = writer.finish()?;
    let manifest =
        Manifest::finished("problems", &inputs, fp, settings_json, serde_json::to_value(&counts)?, shards, started_at, started, Value::Null);
    manifest.write(out_dir)?;
    tracing::info!(
        "problems: {} problems, {} kept, {} near-duplicates, errors {:?}",
        counts.records,
        counts.ok,
        counts.outcomes.get("near_duplicate").copied().unwrap_or(0),
        counts.errors_by_kind
    );
    Ok(())
}

pub fn run(ctx: &Context, args: &ProblemsArgs) -> Result<ExitCode> {
    let settings = resolve(ctx, args);
    let out_dir = ctx.output_dir()?;
    let generated = out_dir.join(".generated");
    let inputs: Vec<String> = if ctx.global.input.is_empty() {
        // Generation seeds: rewritten only when they change (their mtime is part of the
        // fingerprint that makes a rerun up to date).
        let seeds_dir = out_dir.join(".seeds");
        std::fs::create_dir_all(&seeds_dir).with_context(|| format!("cannot create {}", seeds_dir.display()))?;
        let path: PathBuf = seeds_dir.join("seeds.jsonl");
        let text: String = seed_records(&settings, ctx.global.rank, ctx.global.world_size).iter().map(|r| format!("{r}\n")).collect();
        if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
            crate::shards::writer::write_atomic(&path, text.as_bytes())?;
        }
        vec![path.display().to_string()]
    } else {
        ctx.inputs()?.into_iter().map(|(_, f)| f.path.display().to_string()).collect()
    };
    let sub = crate::stages::run::stage_ctx(ctx, inputs, generated.clone(), false);
    let step = Arc::new(ProblemsStep { settings: settings.clone(), agent: Agent::new(sub.llm_settings(&args.llm), &out_dir)? });
    let window = (step.agent.client.settings.concurrency * 2).max(16);
    let code = run_stage(&sub, step, window)?;
    if code != ExitCode::SUCCESS && code != ExitCode::from(crate::executor::EXIT_RETRYABLE) {
        return Ok(code);
    }
    dedup_pass(ctx, &generated, &out_dir, &settings)?;
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skeleton_must_be_one_documented_function() {
        let (name, sk) = read_skeleton("import math\n\ndef area(r):\n    \"\"\"Area of a circle of radius r.\"\"\"\n    ...\n").unwrap();
        assert_eq!(name, "area");
        assert_eq!(sk, "import math\n\ndef area(r):\n    \"\"\"Area of a circle of radius r.\"\"\"\n");
        assert!(read_skeleton("def a(x):\n    ...\n").unwrap_err().contains("docstring"));
        assert!(read_skeleton("def a(x):\n    \"\"\"d\"\"\"\n\ndef b(y):\n    \"\"\"d\"\"\"\n").unwrap_err().contains("2 functions"));
    }

    #[test]
    fn rating_is_read_leniently_but_checked() {
        let cats = vec!["math".to_string(), "parsing".to_string()];
        assert_eq!(read_rating("Sure: {\"difficulty\": \"Medium\", \"category\": \"Math\"}", &cats), Some(("medium".into(), "math".into())));
        assert_eq!(read_rating("{\"difficulty\": \"hard\", \"category\": \"poetry\"}", &cats), Some(("hard".into(), "other".into())));
        assert_eq!(read_rating("{\"difficulty\": \"impossible\"}", &cats), None);
        assert_eq!(read_rating("no json", &cats), None);
    }

    #[test]
    fn seeds_are_reproducible_and_split_by_rank() {
        let s = ProblemsSettings { count: 10, ..Default::default() };
        assert_eq!(seed_records(&s, 0, 1), seed_records(&s, 0, 1));
        let a = seed_records(&s, 0, 2);
        let b = seed_records(&s, 1, 2);
        assert_eq!(a.len() + b.len(), 10);
        assert_ne!(seed_records(&ProblemsSettings { seed: 1, ..s.clone() }, 0, 1), seed_records(&s, 0, 1));
    }
}
