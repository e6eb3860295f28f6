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

use crate::context::Context;
use crate::executor::{BoxFuture, Counts, Record, Resources, Step};
use crate::llm::reply::inputs_block;
use crate::llm::{Agent, LlmArgs, LlmSettings};
use crate::python::functions::def_line;
use crate::python::literals::{signature, take_distinct, InputLiteral, Signature};
use crate::record::{
    content_id, counter, field, CallMeta, Case2CodeOutcome, DroppedInput, ErrorInfo, Example, ExampleOutput, RecordExt, RejectedInput, Task,
    TaskStatus, Usage,
};
use crate::sandbox::calls::{CallOptions, CallsResult, Outcome, OutcomeKind};
use crate::sandbox::Sandbox;
use crate::stages::common::{ask, llm_settings, run_with_sandbox, NoTask, SandboxFlags};

const STAGE: &str = "case2code";

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
#[command(next_help_heading = "Case2Code")]
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
    pub sandbox: SandboxFlags,
}

impl Case2CodeSettings {
    /// `[case2code]` as configured (what `run` uses).
    pub fn from_config(ctx: &Context) -> Result<Case2CodeSettings> {
        Self::resolve(ctx, &Case2CodeArgs::default())
    }

    /// `[case2code]` with flags on top.
    pub fn resolve(ctx: &Context, args: &Case2CodeArgs) -> Result<Case2CodeSettings> {
        let mut s: Case2CodeSettings = ctx.config.section(STAGE)?;
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
        Ok(s)
    }
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
        Ok(SampleTemplates { env, names: sources.into_iter().map(|(n, _)| n).collect(), hash: content_id(&all) })
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

/// What the inputs prompt sees.
#[derive(Serialize)]
struct InputsPrompt<'a> {
    code: &'a str,
    entry_point: &'a str,
    signature: &'a str,
    k: u32,
    packages: Value,
}

/// One example as a sample template sees it.
#[derive(Serialize)]
struct ShownExample<'a> {
    call: String,
    args_text: &'a str,
    args: &'a Map<String, Value>,
    output: &'a str,
}

impl Case2CodeStep {
    pub fn new(settings: Case2CodeSettings, llm: LlmSettings, sandbox: Arc<Sandbox>, out_dir: &Path) -> Result<Case2CodeStep> {
        let templates = SampleTemplates::load(&settings.templates)?;
        Ok(Case2CodeStep { agent: Agent::new(llm, out_dir)?, sandbox, templates, settings })
    }

    async fn process_record(self: Arc<Self>, mut record: Record) -> Record {
        let mut outcome = Case2CodeOutcome::default();
        let task = self.make_task(&record, &mut outcome).await;
        match task {
            Ok(task) => {
                record.put(field::CASE2CODE, &outcome);
                record.put(field::TASK, &task);
            }
            Err(NoTask::Dropped(reason)) => {
                outcome.status = Some(TaskStatus::Dropped);
                outcome.reason = Some(reason.into());
                record.put(field::CASE2CODE, &outcome);
            }
            Err(NoTask::Error(e)) => {
                if outcome != Case2CodeOutcome::default() {
                    record.put(field::CASE2CODE, &outcome);
                }
                record.set_error(e);
            }
        }
        record
    }

    /// Steps 1–4; what was learnt on the way goes into `outcome`.
    async fn make_task(&self, record: &Record, outcome: &mut Case2CodeOutcome) -> Result<Task, NoTask> {
        let s = &self.settings;
        let (Some(code), Some(entry_point)) = (record.text(field::CODE), record.text(field::ENTRY_POINT)) else {
            let message = "the record needs string fields `code` and `entry_point`";
            return Err(NoTask::Error(ErrorInfo::new(STAGE, "missing_field", message, false)));
        };
        let (code, entry_point) = (code.to_string(), entry_point.to_string());
        let id = record.text(field::ID).map(str::to_string).unwrap_or_else(|| content_id(&code));
        if s.require_verified && !record.verified() {
            return Err(NoTask::Dropped("not_verified"));
        }
        let sig = signature(&code, &entry_point).ok_or(NoTask::Dropped("no_function"))?;
        if sig.required.iter().any(|r| r == "<positional-only>") {
            return Err(NoTask::Dropped("positional_only_parameters"));
        }

        // Step 1: the model writes inputs.
        let signature_line = def_line(&code, &entry_point);
        let packages = record.get(field::PACKAGES).cloned().unwrap_or(json!([]));
        let context = InputsPrompt { code: &code, entry_point: &entry_point, signature: &signature_line, k: s.inputs_per_function, packages };
        let generation = ask(&self.agent, "case2code_inputs", &context, 1).await.map_err(|e| NoTask::Error(e.to_error(STAGE)))?;
        let reply = generation.choices.first().map(|c| c.text.clone()).unwrap_or_default();
        outcome.generation = Some(CallMeta {
            model: self.agent.client.settings.model.clone(),
            usage: Usage {
                prompt_tokens: generation.prompt_tokens,
                completion_tokens: generation.completion_tokens,
                estimated: generation.tokens_estimated,
            },
            cache_hit: generation.cache_hits > 0,
            attempts: generation.attempts,
        });
        let (inputs, rejected) = read_inputs(&reply, &sig, s.inputs_per_function as usize)
            .map_err(|why| NoTask::Error(ErrorInfo::new(STAGE, "malformed_reply", why, false)))?;
        outcome.inputs_requested = Some(s.inputs_per_function);
        outcome.rejected_inputs = Some(rejected);
        if inputs.is_empty() {
            return Err(NoTask::Dropped("no_valid_inputs"));
        }

        // Steps 2–3: run every input twice, each in a fresh child.
        let sources: Vec<String> = inputs.iter().map(|i| i.source.clone()).collect();
        let opts = CallOptions { timeout: s.timeout, fresh_child_per_input: true };
        let run = || self.sandbox.call_async(code.clone(), entry_point.clone(), sources.clone(), opts);
        let (first, second) = tokio::join!(run(), run());
        if let Some(e) = first.sandbox_error.as_ref().or(second.sandbox_error.as_ref()) {
            return Err(NoTask::Error(ErrorInfo::new(STAGE, "sandbox_error", e.clone(), true)));
        }
        if let Some(e) = first.import_error.as_ref() {
            outcome.message = Some(e.clone());
            return Err(NoTask::Dropped("import_error"));
        }
        if let Some(t) = first.tampered.as_ref().or(second.tampered.as_ref()) {
            outcome.message = Some(t.clone());
            return Err(NoTask::Dropped("tampered"));
        }
        let (examples, dropped_inputs) = compare_runs(&inputs, &entry_point, &first, &second, s.max_output_chars);
        let values: Vec<&Example> = examples.iter().filter(|e| e.is_value()).collect();
        let distinct: HashSet<&str> = values.iter().map(|e| e.token.as_str()).collect();
        let (n_values, n_distinct) = (values.len(), distinct.len());
        outcome.examples = Some(examples.clone());
        outcome.dropped_inputs = Some(dropped_inputs);
        if n_values < s.min_examples {
            return Err(NoTask::Dropped("too_few_examples"));
        }
        if n_distinct <= 1 {
            return Err(NoTask::Dropped("constant_output"));
        }

        // Step 4: one sample from a seeded template choice.
        let (template, show_name) = self.templates.choose(s.seed, &id, s.show_name_probability);
        // Without the name, calls read `f(...)`.
        let callee = if show_name { entry_point.as_str() } else { "f" };
        let shown: Vec<ShownExample> = examples
            .iter()
            .filter(|e| e.is_value())
            .map(|e| ShownExample {
                call: format!("{callee}({})", e.args_text),
                args_text: &e.args_text,
                args: &e.args,
                output: e.output.as_ref().map(|o| o.repr.as_str()).unwrap_or_default(),
            })
            .collect();
        let ctx = json!({"show_name": show_name, "name": entry_point, "signature": signature_line, "examples": shown});
        let prompt = self.templates.render(template, &ctx).map_err(|e| NoTask::Error(ErrorInfo::new(STAGE, "template", format!("{e:#}"), false)))?;
        let template_name = self.templates.names[template].clone();
        outcome.status = Some(TaskStatus::Ok);
        outcome.template = Some(template_name.clone());
        outcome.show_name = Some(show_name);
        let mut meta = Map::new();
        meta.insert("template".into(), json!(template_name));
        meta.insert("examples".into(), json!(n_values));
        Ok(Task { kind: STAGE.into(), prompt, completion: code, meta })
    }
}

/// The accepted inputs of a reply (first K distinct) and the rejected ones with reasons.
fn read_inputs(reply: &str, sig: &Signature, k: usize) -> std::result::Result<(Vec<InputLiteral>, Vec<RejectedInput>), String> {
    let (accepted, rejected) = take_distinct(inputs_block(reply, Some(sig))?, |i| i.source.as_str(), k);
    let rejected = rejected.into_iter().map(|r| RejectedInput { input: r.input, reason: r.reason }).collect();
    Ok((accepted, rejected))
}

/// Pair the two runs' outcomes per input: examples (deterministic values and exceptions)
/// and dropped inputs with reasons.
fn compare_runs(
    inputs: &[InputLiteral],
    entry_point: &str,
    a: &CallsResult,
    b: &CallsResult,
    max_output_chars: usize,
) -> (Vec<Example>, Vec<DroppedInput>) {
    let (mut examples, mut dropped) = (Vec::new(), Vec::new());
    for (i, input) in inputs.iter().enumerate() {
        let (Some(x), Some(y)) = (a.outcomes.get(i), b.outcomes.get(i)) else { continue };
        let args_text = input.args.iter().map(|(n, v)| format!("{n}={v}")).collect::<Vec<_>>().join(", ");
        let args: Map<String, Value> = input.args.iter().map(|(n, v)| (n.clone(), json!(v))).collect();
        let example = |outcome: &str, o: &Outcome| Example {
            input: input.source.clone(),
            args: args.clone(),
            args_text: args_text.clone(),
            call: format!("{entry_point}({args_text})"),
            outcome: outcome.into(),
            output: None,
            exception: None,
            token: o.token(),
            duration_ms: None,
        };
        let drop = |reason: &str, o: &Outcome| DroppedInput { input: input.source.clone(), reason: reason.into(), message: o.message.clone() };
        match (x.kind, y.kind) {
            (OutcomeKind::Value, OutcomeKind::Value) if x.token() == y.token() => {
                if x.repr.chars().count() > max_output_chars {
                    dropped.push(drop("output_too_long", x));
                    continue;
                }
                let output = ExampleOutput { type_name: x.type_name.clone(), repr: x.repr.clone(), value: x.value.clone() };
                examples.push(Example { output: Some(output), duration_ms: Some(x.duration_ms.max(y.duration_ms)), ..example("value", x) });
            }
            (OutcomeKind::Exception, OutcomeKind::Exception) if x.token() == y.token() => {
                let exception = serde_json::to_value(&x.exception).unwrap_or(Value::Null);
                examples.push(Example { exception: Some(exception), ..example("exception", x) });
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
        STAGE
    }

    fn process(self: Arc<Self>, record: Record) -> BoxFuture {
        Box::pin(self.process_record(record))
    }

    fn settings(&self) -> Value {
        json!({"case2code": self.settings, "agent": self.agent.answer_settings("case2code_inputs"), "templates": self.templates.hash})
    }

    fn tally(&self, out: &Record, counts: &mut Counts) {
        if out.error().is_some() {
            return;
        }
        let Some(c) = out.typed::<Case2CodeOutcome>(field::CASE2CODE) else { return };
        match c.status {
            Some(TaskStatus::Ok) => {
                counts.bump(counter::SAMPLES);
                let n = c.examples.iter().flatten().filter(|e| e.is_value()).count();
                counts.add_to(counter::EXAMPLES, n as u64);
                counts.bump(counter::examples_per_function(n));
            }
            Some(_) => counts.bump(counter::dropped(c.reason.as_deref().unwrap_or("?"))),
            None => {}
        }
    }

    fn resources(&self) -> Resources<'_> {
        Resources { agents: vec![("llm", &self.agent)], sandbox: Some(&self.sandbox) }
    }
}

pub fn run(ctx: &Context, args: &Case2CodeArgs) -> Result<ExitCode> {
    let settings = Case2CodeSettings::resolve(ctx, args)?;
    let llm = llm_settings(ctx, &args.llm);
    run_with_sandbox(ctx, llm.concurrency, args.sandbox.settings(ctx), |sandbox, out_dir| Case2CodeStep::new(settings, llm, sandbox, out_dir))
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
