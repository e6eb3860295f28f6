//! `unitcoder case2code`: input/output-example tasks from verified functions (Case2Code).
//! The model writes inputs, the sandbox computes outputs, and the examples become a task
//! whose answer is the program.
//!
//! For each record with a runnable `code` + `entry_point` (verified ones by default):
//!   1. the model writes K inputs as Python dict literals of keyword arguments; they are
//!      checked here as literals (never evaluated in this process) against the function's
//!      signature, duplicates removed;
//!   2. the sandbox calls the function on each input in a fresh child with a per-input time
//!      limit, and reports each outcome typed on its private channel;
//!   3. every input runs twice, in two separate children: inputs whose outcomes differ are
//!      dropped (nondeterministic); the function is dropped when fewer than M inputs give
//!      deterministic, non-exception outputs, or when all those outputs are equal;
//!   4. a sample is rendered from one of several templates (phrasing, layout, with or
//!      without the function name), picked by a seeded hash of the record id, so a rerun
//!      with the same seed gives the same samples; the answer is the program (imports
//!      included). The examples are kept as structured data for re-rendering.
//!
//! Every record ends with `case2code.status` `ok` (plus `task`), `dropped` with a reason,
//! or an `error`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context as _, Result};
use clap::Args;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::cli::Context;
use crate::executor::{error_of, error_value, run_stage, BoxFuture, Counts, Record, Step};
use crate::llm::reply::inputs_block;
use crate::llm::{Agent, LlmArgs};
use crate::python::literals::{signature, take_distinct, InputLiteral, Signature};
use crate::sandbox::calls::{CallOptions, CallsResult, Outcome, OutcomeKind};
use crate::sandbox::Sandbox;
use crate::stages::sandbox_run::{blocking, llm_sandbox_window, resolve_settings, sandbox_report, SandboxRunArgs};

/// Built-in sample templates (`prompts/case2code/`), by file name.
const BUILT_IN_TEMPLATES: &[(&str, &str)] = &[
    ("01_calls.j2", include_str!("../../prompts/case2code/01_calls.j2")),
    ("02_io_pairs.j2", include_str!("../../prompts/case2code/02_io_pairs.j2")),
    ("03_table.j2", include_str!("../../prompts/case2code/03_table.j2")),
    ("04_signature.j2", include_str!("../../prompts/case2code/04_signature.j2")),
    ("05_reasoning.j2", include_str!("../../prompts/case2code/05_reasoning.j2")),
];

/// `[case2code]` settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Case2CodeSettings {
    /// Inputs the model is asked for per function (K).
    pub inputs_per_function: u32,
    /// Fewest deterministic, non-exception examples a function needs (M).
    pub min_examples: usize,
    /// Seed of the template choice.
    pub seed: u64,
    /// Directory of sample templates (`*.j2`); empty = the built-in ones.
    pub templates: String,
    /// Chance that a sample names the function.
    pub show_name_probability: f64,
    /// Only records whose verdict is `pass` (records without a verdict are dropped).
    pub require_verified: bool,
    /// Wall-clock limit per input, seconds.
    pub timeout: f64,
    /// Examples whose output `repr` is longer than this are left out of samples.
    pub max_output_chars: usize,
}

impl Default for Case2CodeSettings {
    fn default() -> Self {
        Self {
            inputs_per_function: 10,
            min_examples: 3,
            seed: 0,
            templates: String::new(),
            show_name_probability: 0.5,
            require_verified: true,
            timeout: 5.0,
            max_output_chars: 2000,
        }
    }
}

#[derive(Debug, Clone, Args, Default)]
pub struct Case2CodeArgs {
    /// Inputs the model writes per function [default: 10].
    #[arg(long, value_name = "K")]
    pub inputs_per_function: Option<u32>,
    /// Deterministic non-exception examples a function needs [default: 3].
    #[arg(long, value_name = "M")]
    pub min_examples: Option<usize>,
    /// Directory of sample templates (`*.j2`) [default: built-in prompts/case2code/].
    #[arg(long, value_name = "DIR")]
    pub templates: Option<PathBuf>,
    /// Seed of the template choice [default: 0].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Also take records that were not verified (no `verdict: pass`).
    #[arg(long)]
    pub any_record: bool,
    #[command(flatten)]
    pub llm: LlmArgs,
    #[command(flatten)]
    pub sandbox: SandboxRunArgs,
}

pub fn resolve(ctx: &Context, args: &Case2CodeArgs) -> Case2CodeSettings {
    let mut s = ctx.config.case2code.clone();
    if let Some(v) = args.inputs_per_function {
        s.inputs_per_function = v;
    }
    if let Some(v) = args.min_examples {
        s.min_examples = v;
    }
    if let Some(v) = &args.templates {
        s.templates = v.display().to_string();
    }
    if let Some(v) = args.seed {
        s.seed = v;
    }
    if args.any_record {
        s.require_verified = false;
    }
    s.inputs_per_function = s.inputs_per_function.max(1);
    s
}

/// The sample templates, in file-name order.
pub struct SampleTemplates {
    env: minijinja::Environment<'static>,
    pub names: Vec<String>,
    /// Hash of all template texts (part of the fingerprint).
    pub hash: String,
}

impl SampleTemplates {
    pub fn load(dir: &str) -> Result<SampleTemplates> {
        let mut sources: Vec<(String, String)> = Vec::new();
        if dir.is_empty() {
            sources = BUILT_IN_TEMPLATES.iter().map(|(n, t)| (n.to_string(), t.to_string())).collect();
        } else {
            for entry in std::fs::read_dir(dir).with_context(|| format!("cannot read template directory {dir}"))? {
                let path = entry?.path();
                if path.extension().is_some_and(|e| e == "j2") {
                    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                    sources.push((name, std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?));
                }
            }
            sources.sort();
            anyhow::ensure!(!sources.is_empty(), "no *.j2 templates in {dir}");
        }
        let mut env = minijinja::Environment::new();
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        let mut all = String::new();
        for (name, text) in &sources {
            all.push_str(name);
            all.push_str(text);
            env.add_template_owned(name.clone(), text.clone()).with_context(|| format!("sample template {name} does not parse"))?;
        }
        Ok(SampleTemplates { env, names: sources.into_iter().map(|(n, _)| n).collect(), hash: crate::record::content_id(&all) })
    }

    /// The template and name visibility for a record: a hash of seed and record id, so the
    /// same seed always picks the same way.
    pub fn choose(&self, seed: u64, record_id: &str, show_name_probability: f64) -> (usize, bool) {
        let h = blake3::hash(format!("{seed}\u{0}{record_id}").as_bytes());
        let b = h.as_bytes();
        let pick = u64::from_le_bytes(b[..8].try_into().unwrap_or([0; 8]));
        let coin = u64::from_le_bytes(b[8..16].try_into().unwrap_or([0; 8])) as f64 / u64::MAX as f64;
        ((pick % self.names.len().max(1) as u64) as usize, coin < show_name_probability)
    }

    pub fn render(&self, index: usize, context: &Value) -> Result<String> {
        let name = self.names.get(index).context("no such template")?;
        let text = self.env.get_template(name)?.render(context).with_context(|| format!("sample template {name} failed to render"))?;
        Ok(text.trim().to_string() + "\n")
    }
}

/// The case2code step.
pub struct Case2CodeStep {
    pub settings: Case2CodeSettings,
    pub agent: Agent,
    pub sandbox: Arc<Sandbox>,
    pub templates: SampleTemplates,
}

impl Case2CodeStep {
    pub fn new(ctx: &Context, args: &Case2CodeArgs, sandbox: Arc<Sandbox>, out_dir: &Path) -> Result<Case2CodeStep> {
        let settings = resolve(ctx, args);
        let templates = SampleTemplates::load(&settings.templates)?;
        Ok(Case2CodeStep { agent: Agent::new(ctx.llm_settings(&args.llm), out_dir)?, sandbox, templates, settings })
    }

    fn dropped(mut record: Record, reason: &str, mut detail: Map<String, Value>) -> Record {
        detail.insert("status".into(), json!("dropped"));
        detail.insert("reason".into(), json!(reason));
        record.insert("case2code".into(), Value::Object(detail));
        record
    }

    async fn process_record(self: Arc<Self>, mut record: Record) -> Record {
        let s = &self.settings;
        let text = |k: &str| record.get(k).and_then(Value::as_str).map(str::to_string);
        let (Some(code), Some(entry_point)) = (text("code"), text("entry_point")) else {
            record
                .insert("error".into(), error_value("case2code", "missing_field", "the record needs string fields `code` and `entry_point`", false));
            return record;
        };
        let id = text("id").unwrap_or_else(|| crate::record::content_id(&code));
        if s.require_verified && record.get("verdict").and_then(|v| v.get("status")).and_then(Value::as_str) != Some("pass") {
            return Self::dropped(record, "not_verified", Map::new());
        }
        let Some(sig) = signature(&code, &entry_point) else {
            return Self::dropped(record, "no_function", Map::new());
        };
        if sig.required.iter().any(|r| r == "<positional-only>") {
            return Self::dropped(record, "positional_only_parameters", Map::new());
        }

        // Step 1: the model writes inputs.
        let signature_line = def_line(&code, &entry_point);
        let context = json!({"code": code, "entry_point": entry_point, "signature": signature_line, "k": s.inputs_per_function,
                             "packages": record.get("packages").cloned().unwrap_or(json!([]))});
        let messages = match self.agent.prompts.render("case2code_inputs", &context) {
            Ok(m) => m,
            Err(e) => {
                record.insert("error".into(), error_value("case2code", "prompt", format!("{e:#}"), false));
                return record;
            }
        };
        let generation = match self.agent.client.generate(&messages, 1).await {
            Ok(g) => g,
            Err(e) => {
                record.insert("error".into(), error_value("case2code", e.kind(), e.to_string(), e.transient()));
                return record;
            }
        };
        let reply = generation.choices.first().map(|c| c.text.clone()).unwrap_or_default();
        let meta = json!({"model": self.agent.client.settings.model, "usage": {"prompt_tokens": generation.prompt_tokens, "completion_tokens": generation.completion_tokens},
                          "cache_hit": generation.cache_hits > 0, "attempts": generation.attempts});
        let (inputs, rejected) = match read_inputs(&reply, &sig, s.inputs_per_function as usize) {
            Ok(v) => v,
            Err(why) => {
                record.insert("case2code".into(), json!({"generation": meta}));
                record.insert("error".into(), error_value("case2code", "malformed_reply", why, false));
                return record;
            }
        };
        let mut detail = Map::new();
        detail.insert("generation".into(), meta);
        detail.insert("inputs_requested".into(), json!(s.inputs_per_function));
        detail.insert("rejected_inputs".into(), json!(rejected));
        if inputs.is_empty() {
            return Self::dropped(record, "no_valid_inputs", detail);
        }

        // Steps 2–3: run every input twice, each in a fresh child.
        let sources: Vec<String> = inputs.iter().map(|i| i.source.clone()).collect();
        let opts = CallOptions { timeout: s.timeout, fresh_child_per_input: true };
        let run = |sb: Arc<Sandbox>, code: String, ep: String, src: Vec<String>| blocking(move || sb.call(&code, &ep, &src, opts));
        let (first, second) = tokio::join!(
            run(self.sandbox.clone(), code.clone(), entry_point.clone(), sources.clone()),
            run(self.sandbox.clone(), code.clone(), entry_point.clone(), sources.clone())
        );
        if let Some(e) = first.sandbox_error.as_ref().or(second.sandbox_error.as_ref()) {
            record.insert("case2code".into(), Value::Object(detail));
            record.insert("error".into(), error_value("case2code", "sandbox_error", e.clone(), true));
            return record;
        }
        if let Some(e) = first.import_error.as_ref() {
            detail.insert("message".into(), json!(e));
            return Self::dropped(record, "import_error", detail);
        }
        if let Some(t) = first.tampered.as_ref().or(second.tampered.as_ref()) {
            detail.insert("message".into(), json!(t));
            return Self::dropped(record, "tampered", detail);
        }
        let (examples, dropped_inputs) = compare_runs(&inputs, &entry_point, &first, &second, s.max_output_chars);
        let values: Vec<&Value> = examples.iter().filter(|e| e["outcome"] == "value").collect();
        let distinct: HashSet<&str> = values.iter().filter_map(|e| e["token"].as_str()).collect();
        detail.insert("examples".into(), json!(examples));
        detail.insert("dropped_inputs".into(), json!(dropped_inputs));
        if values.len() < s.min_examples {
            return Self::dropped(record, "too_few_examples", detail);
        }
        if distinct.len() <= 1 {
            return Self::dropped(record, "constant_output", detail);
        }

        // Step 4: one sample from a seeded template choice.
        let (template, show_name) = self.templates.choose(s.seed, &id, s.show_name_probability);
        // Without the name, calls read `f(...)`.
        let callee = if show_name { entry_point.as_str() } else { "f" };
        let shown: Vec<Value> = values
            .iter()
            .map(|e| json!({"call": format!("{callee}({})", e["args_text"].as_str().unwrap_or("")), "args_text": e["args_text"], "args": e["args"], "output": e["output"]["repr"]}))
            .collect();
        let ctx = json!({"show_name": show_name, "name": entry_point, "signature": signature_line, "examples": shown});
        let prompt = match self.templates.render(template, &ctx) {
            Ok(p) => p,
            Err(e) => {
                record.insert("error".into(), error_value("case2code", "template", format!("{e:#}"), false));
                return record;
            }
        };
        let template_name = self.templates.names[template].clone();
        detail.insert("status".into(), json!("ok"));
        detail.insert("template".into(), json!(template_name));
        detail.insert("show_name".into(), json!(show_name));
        record.insert("case2code".into(), Value::Object(detail));
        record.insert(
            "task".into(),
            json!({"kind": "case2code", "prompt": prompt, "completion": code, "template": template_name, "examples": values.len()}),
        );
        record
    }
}

/// The `def` line of the function (its signature as written).
fn def_line(code: &str, entry_point: &str) -> String {
    let needle = format!("def {entry_point}(");
    code.lines()
        .find(|l| l.trim_start().starts_with(&needle) || l.trim_start().starts_with(&format!("async {needle}")))
        .unwrap_or("")
        .trim_end()
        .to_string()
}

/// The accepted inputs of a reply (first K distinct) and the rejected ones with reasons.
fn read_inputs(reply: &str, sig: &Signature, k: usize) -> std::result::Result<(Vec<InputLiteral>, Vec<Value>), String> {
    let (accepted, rejected) = take_distinct(inputs_block(reply, Some(sig))?, |i| i.source.as_str(), k);
    let rejected = rejected
        .into_iter()
        .map(|r| match r.input {
            Some(input) => json!({"input": input, "reason": r.reason}),
            None => json!({"reason": r.reason}),
        })
        .collect();
    Ok((accepted, rejected))
}

/// Pair the two runs' outcomes per input: examples (deterministic values and exceptions)
/// and dropped inputs with reasons.
fn compare_runs(inputs: &[InputLiteral], entry_point: &str, a: &CallsResult, b: &CallsResult, max_output_chars: usize) -> (Vec<Value>, Vec<Value>) {
    let (mut examples, mut dropped) = (Vec::new(), Vec::new());
    for (i, input) in inputs.iter().enumerate() {
        let (Some(x), Some(y)) = (a.outcomes.get(i), b.outcomes.get(i)) else { continue };
        let args_text = input.args.iter().map(|(n, v)| format!("{n}={v}")).collect::<Vec<_>>().join(", ");
        let args: Map<String, Value> = input.args.iter().map(|(n, v)| (n.clone(), json!(v))).collect();
        let base = json!({"input": input.source, "args": args, "args_text": args_text, "call": format!("{entry_point}({args_text})")});
        let drop = |reason: &str, o: &Outcome| json!({"input": input.source, "reason": reason, "message": o.message});
        match (x.kind, y.kind) {
            (OutcomeKind::Value, OutcomeKind::Value) if x.token() == y.token() => {
                if x.repr.chars().count() > max_output_chars {
                    dropped.push(drop("output_too_long", x));
                    continue;
                }
                let mut e = base;
                e["outcome"] = json!("value");
                e["output"] = json!({"type": x.type_name, "repr": x.repr, "value": x.value});
                e["token"] = json!(x.token());
                e["duration_ms"] = json!(x.duration_ms.max(y.duration_ms));
                examples.push(e);
            }
            (OutcomeKind::Exception, OutcomeKind::Exception) if x.token() == y.token() => {
                let mut e = base;
                e["outcome"] = json!("exception");
                e["exception"] = serde_json::to_value(&x.exception).unwrap_or(Value::Null);
                e["token"] = json!(x.token());
                examples.push(e);
            }
            (OutcomeKind::Value | OutcomeKind::Exception, OutcomeKind::Value | OutcomeKind::Exception) => dropped.push(drop("nondeterministic", x)),
            (OutcomeKind::Value | OutcomeKind::Exception, _) => dropped.push(drop(kind_name(y.kind), y)),
            _ => dropped.push(drop(kind_name(x.kind), x)),
        }
    }
    (examples, dropped)
}

/// Why an input was dropped, from its outcome kind.
fn kind_name(k: OutcomeKind) -> &'static str {
    match k {
        OutcomeKind::TooLarge => "output_too_large",
        other => other.as_str(),
    }
}

impl Step for Case2CodeStep {
    fn name(&self) -> &'static str {
        "case2code"
    }

    fn process(self: Arc<Self>, record: Record) -> BoxFuture {
        Box::pin(self.process_record(record))
    }

    fn settings(&self) -> Value {
        json!({"case2code": self.settings, "agent": self.agent.answer_settings("case2code_inputs"), "templates": self.templates.hash})
    }

    fn tally(&self, out: &Record, counts: &mut Counts) {
        if error_of(out).is_some() {
            return;
        }
        let c = out.get("case2code");
        match c.and_then(|c| c.get("status")).and_then(Value::as_str) {
            Some("ok") => {
                counts.bump("samples");
                let n = c
                    .and_then(|c| c.get("examples"))
                    .and_then(Value::as_array)
                    .map(|e| e.iter().filter(|x| x["outcome"] == "value").count())
                    .unwrap_or(0);
                *counts.outcomes.entry("examples".into()).or_default() += n as u64;
            }
            Some(_) => counts.bump(format!("dropped_{}", c.and_then(|c| c.get("reason")).and_then(Value::as_str).unwrap_or("?"))),
            None => {}
        }
    }

    fn report(&self) -> Value {
        json!({"llm": self.agent.usage(), "sandbox": sandbox_report(&self.sandbox)})
    }

    fn budget_stopped(&self) -> bool {
        self.agent.budget_stopped()
    }
}

pub fn run(ctx: &Context, args: &Case2CodeArgs) -> Result<ExitCode> {
    let out_dir = ctx.output_dir()?;
    let sandbox = Arc::new(Sandbox::start(resolve_settings(ctx, &args.sandbox))?);
    let step = Arc::new(Case2CodeStep::new(ctx, args, sandbox.clone(), &out_dir)?);
    let window = llm_sandbox_window(step.agent.client.settings.concurrency, &sandbox);
    run_stage(ctx, step, window)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_choice_is_seeded_and_varied() {
        let t = SampleTemplates::load("").unwrap();
        assert_eq!(t.names.len(), 5);
        let picks = |seed| (0..200).map(|i| t.choose(seed, &format!("rec{i}"), 0.5)).collect::<Vec<_>>();
        assert_eq!(picks(7), picks(7));
        assert_ne!(picks(7), picks(8));
        let used: HashSet<usize> = picks(7).iter().map(|p| p.0).collect();
        assert_eq!(used.len(), 5, "every template is used");
        let named = picks(7).iter().filter(|p| p.1).count();
        assert!((60..140).contains(&named), "{named}");
    }

    #[test]
    fn every_template_renders_examples_with_and_without_the_name() {
        let t = SampleTemplates::load("").unwrap();
        let ctx = |show: bool| {
            json!({"show_name": show, "name": "scale", "signature": "def scale(xs, k=2):",
            "examples": [{"call": if show { "scale(xs=[1, 2], k=3)" } else { "f(xs=[1, 2], k=3)" }, "args_text": "xs=[1, 2], k=3", "args": {"xs": "[1, 2]", "k": "3"}, "output": "[3, 6]"}]})
        };
        for i in 0..t.names.len() {
            let with = t.render(i, &ctx(true)).unwrap();
            let without = t.render(i, &ctx(false)).unwrap();
            assert!(with.contains("[3, 6]") && without.contains("[3, 6]"), "{}: {with}", t.names[i]);
            assert!(with.contains("scale"), "{}: {with}", t.names[i]);
            assert!(!without.contains("scale"), "{} leaks the name: {without}", t.names[i]);
        }
    }

    #[test]
    fn a_template_directory_replaces_the_built_in_ones() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("b.j2"), "B {% for e in examples %}{{ e.call }} -> {{ e.output }}; {% endfor %}").unwrap();
        std::fs::write(dir.path().join("a.j2"), "A {{ name if show_name else 'f' }}").unwrap();
        std::fs::write(dir.path().join("notes.txt"), "ignored").unwrap();
        let t = SampleTemplates::load(dir.path().to_str().unwrap()).unwrap();
        assert_eq!(t.names, ["a.j2", "b.j2"]);
        let ctx = json!({"show_name": true, "name": "g", "signature": "def g(x):", "examples": [{"call": "g(x=1)", "args_text": "x=1", "args": {}, "output": "2"}]});
        assert_eq!(t.render(1, &ctx).unwrap(), "B g(x=1) -> 2;\n");
        assert_ne!(t.hash, SampleTemplates::load("").unwrap().hash);
        assert!(SampleTemplates::load(tempfile::tempdir().unwrap().path().to_str().unwrap()).is_err(), "an empty directory is an error");
    }
}
