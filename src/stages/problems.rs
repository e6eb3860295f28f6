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
use serde_json::{json, Value};

use crate::context::Context;
use crate::dedup::{text_tokens, NearDuplicates};
use crate::executor::{run_stage, BoxFuture, Counts, Record, Resources, Step};
use crate::llm::reply::code_blocks;
use crate::llm::{Agent, LlmArgs};
use crate::python::functions::{docstring, split_prompt};
use crate::python::{on_parse_stack, parse_untrusted};
use crate::record::{content_id, counter, field, DuplicateOf, ErrorInfo, Problem, ProblemSource, RecordExt};
use crate::shards::manifest::{fingerprint, now_rfc3339, prepare_output};
use crate::shards::reader::{read_record_items, RecordItem};
use crate::shards::{expand_inputs, Manifest, ShardWriter, ShardWriterOptions};
use crate::stages::common::{ask, llm_settings};

const STAGE: &str = "problems";

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
#[command(next_help_heading = "Problems")]
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

impl ProblemsSettings {
    /// `[problems]` with flags on top.
    pub fn resolve(ctx: &Context, args: &ProblemsArgs) -> Result<ProblemsSettings> {
        let mut s: ProblemsSettings = ctx.config.section(STAGE)?;
        if let Some(v) = args.count {
            s.count = v;
        }
        if let Some(v) = args.seed {
            s.seed = v;
        }
        if args.no_rate {
            s.rate = false;
        }
        Ok(s)
    }
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
    on_parse_stack(|| read_skeleton_here(block))
}

fn read_skeleton_here(block: &str) -> std::result::Result<(String, String), String> {
    let parsed = parse_untrusted(block, ruff_python_ast::PythonVersion::PY314)?;
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
        let problem = match (record.text(field::CODE), record.text(field::ENTRY_POINT)) {
            (Some(code), Some(entry_point)) => from_record(&record, code, entry_point),
            _ => self.generate(&record).await,
        };
        match problem {
            Ok(problem) => {
                let mut out = Record::new();
                if let Value::Object(m) = serde_json::to_value(&problem).unwrap_or_default() {
                    out = m;
                }
                self.rate(out).await
            }
            Err(e) => {
                record.set_error(e);
                record
            }
        }
    }

    /// A generated problem: the model writes a statement and a skeleton for a seed record.
    async fn generate(&self, seed: &Record) -> Result<Problem, ErrorInfo> {
        let (Some(topic), Some(skill)) = (seed.text("topic"), seed.text("skill")) else {
            return Err(ErrorInfo::new(STAGE, "missing_field", "a record needs `code` + `entry_point`, or `topic` + `skill`", false));
        };
        let index = seed.get("index").cloned().unwrap_or(json!(0));
        let generation =
            ask(&self.agent, "problems_generate", json!({"topic": topic, "skill": skill, "index": index}), 1).await.map_err(|e| e.to_error(STAGE))?;
        let reply = generation.choices.first().map(|c| c.text.clone()).unwrap_or_default();
        let statement = reply.split("```").next().unwrap_or("").trim();
        let statement = statement.strip_prefix("Problem:").or_else(|| statement.strip_prefix("**Problem:**")).unwrap_or(statement).trim().to_string();
        let skeleton =
            code_blocks(&reply).iter().map(|b| read_skeleton(b)).find(|r| r.is_ok()).unwrap_or_else(|| Err("no code block holds a skeleton".into()));
        let malformed = |why: String| ErrorInfo::new(STAGE, "malformed_reply", why, false);
        let (entry_point, skeleton) = skeleton.map_err(malformed)?;
        if statement.is_empty() {
            return Err(malformed("no problem statement before the skeleton".into()));
        }
        let source = ProblemSource::Generated { topic: topic.into(), skill: skill.into(), index, model: self.agent.client.settings.model.clone() };
        Ok(Problem {
            id: seed.get(field::ID).cloned().unwrap_or(Value::Null),
            problem: statement,
            skeleton,
            entry_point,
            reference: None,
            problem_source: source,
            packages: None,
        })
    }

    /// Step 1: difficulty and category, judged by the model.
    async fn rate(&self, mut out: Record) -> Record {
        if !self.settings.rate {
            return out;
        }
        let ctx = json!({"problem": out[field::PROBLEM], "skeleton": out[field::SKELETON], "categories": self.settings.categories});
        match ask(&self.agent, "problems_rate", &ctx, 1).await {
            Ok(g) => match read_rating(g.choices.first().map(|c| c.text.as_str()).unwrap_or(""), &self.settings.categories) {
                Some((difficulty, category)) => {
                    out.put(field::DIFFICULTY, &difficulty);
                    out.put(field::CATEGORY, &category);
                }
                None => {
                    let message = "the rating reply holds no JSON object with difficulty easy|medium|hard";
                    out.set_error(ErrorInfo::new(STAGE, "malformed_rating", message, false));
                }
            },
            Err(e) => out.set_error(e.to_error(STAGE)),
        }
        out
    }
}

/// A problem from an existing record: the docstring is the statement, the export prompt
/// the skeleton, the code the reference.
fn from_record(record: &Record, code: &str, entry_point: &str) -> Result<Problem, ErrorInfo> {
    let (Some((skeleton, _, true)), Some(doc)) = (split_prompt(code, entry_point), docstring(code, entry_point)) else {
        return Err(ErrorInfo::new(STAGE, "no_docstring", "the function has no docstring to state the problem", false));
    };
    Ok(Problem {
        id: record.get(field::ID).cloned().unwrap_or_else(|| json!(content_id(code))),
        problem: dedent(&doc),
        skeleton,
        entry_point: entry_point.into(),
        reference: Some(code.into()),
        problem_source: ProblemSource::Record { source: record.get(field::SOURCE).cloned().unwrap_or(Value::Null) },
        packages: record.get(field::PACKAGES).cloned(),
    })
}

impl Step for ProblemsStep {
    fn name(&self) -> &'static str {
        STAGE
    }

    fn process(self: Arc<Self>, record: Record) -> BoxFuture {
        Box::pin(self.process_record(record))
    }

    fn settings(&self) -> Value {
        json!({"problems": self.settings, "generate": self.agent.answer_settings("problems_generate"), "rate": self.agent.prompts.source("problems_rate")})
    }

    fn tally(&self, out: &Record, counts: &mut Counts) {
        if let Some(d) = out.text(field::DIFFICULTY) {
            counts.bump(counter::difficulty(d));
        }
    }

    fn resources(&self) -> Resources<'_> {
        Resources { agents: vec![("llm", &self.agent)], sandbox: None }
    }
}

/// Step 2: mark near-duplicates (in input order) and write the final shards.
fn dedup_pass(ctx: &Context, generated: &Path, out_dir: &Path, s: &ProblemsSettings) -> Result<()> {
    let started = Instant::now();
    let started_at = now_rfc3339();
    let inputs = expand_inputs(&[generated.display().to_string()])?;
    let output_cfg = &ctx.output_format;
    let settings_json = json!({"near_dup_threshold": s.near_dup_threshold, "shingle": s.shingle, "output": output_cfg});
    let fp = fingerprint(&inputs.iter().map(|i| i.path.clone()).collect::<Vec<_>>(), &settings_json);
    if prepare_output(out_dir, STAGE, &fp, ctx.force)? {
        return Ok(());
    }
    let options = ShardWriterOptions {
        prefix: "shard".into(),
        records_per_shard: output_cfg.records_per_shard,
        compress: output_cfg.compress,
        ..Default::default()
    };
    let mut writer = ShardWriter::new(out_dir, options)?;
    let mut near = NearDuplicates::new(s.near_dup_threshold, s.shingle);
    let mut kept_ids: Vec<Value> = Vec::new();
    let mut counts = Counts::default();
    let mut failure: Option<anyhow::Error> = None;
    read_record_items(&inputs, ctx.record_line_limit(), |item| {
        let mut record = match item {
            RecordItem::Record(r) => r,
            RecordItem::Bad { file, line, bad } => {
                let message = format!("{file}:{line}: {} ({})", bad.reason, bad.detail);
                ErrorInfo::new(STAGE, "bad_input", message, false).into_record()
            }
        };
        counts.records += 1;
        match record.error() {
            None => {
                let statement = record.text(field::PROBLEM).unwrap_or("");
                match near.check_and_insert_tokens(&text_tokens(statement)) {
                    Some((first, similarity)) => {
                        let original = DuplicateOf { id: kept_ids.get(first).cloned().unwrap_or(Value::Null), similarity };
                        record.put(field::DUPLICATE_OF, &original);
                        counts.bump(counter::NEAR_DUPLICATE);
                    }
                    None => {
                        kept_ids.push(record.get(field::ID).cloned().unwrap_or(Value::Null));
                        counts.ok += 1;
                    }
                }
            }
            Some(e) if e.stage == STAGE => {
                *counts.errors_by_kind.entry(e.kind).or_default() += 1;
                if e.transient {
                    counts.retryable += 1;
                }
            }
            Some(_) => counts.upstream_errors += 1,
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
    let counts_json = serde_json::to_value(&counts)?;
    Manifest::finished(STAGE, &inputs, fp, settings_json, counts_json, shards, started_at, started, Value::Null).write(out_dir)?;
    tracing::info!(
        "problems: {} problems, {} kept, {} near-duplicates, errors {:?}",
        counts.records,
        counts.ok,
        counts.outcomes.get(counter::NEAR_DUPLICATE).copied().unwrap_or(0),
        counts.errors_by_kind
    );
    Ok(())
}

/// Generation seeds (no `--input`), rewritten only when they change: their mtime is part
/// of the fingerprint that makes a rerun up to date.
fn seed_file(ctx: &Context, settings: &ProblemsSettings, out_dir: &Path) -> Result<String> {
    let seeds_dir = out_dir.join(".seeds");
    std::fs::create_dir_all(&seeds_dir).with_context(|| format!("cannot create {}", seeds_dir.display()))?;
    let path: PathBuf = seeds_dir.join("seeds.jsonl");
    let text: String = seed_records(settings, ctx.rank, ctx.world_size).iter().map(|r| format!("{r}\n")).collect();
    if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
        crate::shards::writer::write_atomic(&path, text.as_bytes())?;
    }
    Ok(path.display().to_string())
}

pub fn run(ctx: &Context, args: &ProblemsArgs) -> Result<ExitCode> {
    let settings = ProblemsSettings::resolve(ctx, args)?;
    let out_dir = ctx.output_dir()?;
    let generated = out_dir.join(".generated");
    let inputs: Vec<String> = if ctx.inputs.is_empty() {
        vec![seed_file(ctx, &settings, &out_dir)?]
    } else {
        ctx.input_files()?.into_iter().map(|(_, f)| f.path.display().to_string()).collect()
    };
    let sub = ctx.with_io(inputs, generated.clone(), false);
    let llm = llm_settings(ctx, &args.llm);
    let window = (llm.concurrency * 2).max(16);
    let step = Arc::new(ProblemsStep { settings: settings.clone(), agent: Agent::new(llm, &out_dir)? });
    let code = run_stage(&sub, step, window)?;
    if code != ExitCode::SUCCESS && code != crate::exit::code(crate::exit::RETRYABLE) {
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
