//! Call jobs: run a program, then call its function on inputs (Python literal keyword-argument
//! dicts) in the sandbox, and get each outcome back typed — the return value encoded so that
//! `1`, `'1'`, `1.0`, `(1,)` and `np.array([1])` stay different, or the exception's type and
//! message. Used by `case2code` (one fresh child per input, each input run twice) and
//! `consensus` (all inputs of one candidate in one child, per-input time limits).
//!
//! Outcomes arrive only on the nonce-tagged private channel; anything the program prints
//! goes to its captured output and cannot pose as a result. A child that writes foreign
//! lines into the channel marks the whole job `tampered`.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::pool::Sandbox;

/// What happened to one input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum OutcomeKind {
    /// The function returned; `value` holds the typed encoding.
    Value,
    /// The function raised; `exception` holds type and message.
    Exception,
    /// Exceeded the per-input time limit (killed; later inputs run in a new child).
    Timeout,
    /// The process ended during this input (os._exit, a signal, the memory limit).
    Killed,
    /// The input is not an allowed literal (rejected inside the sandbox).
    BadInput,
    /// The return value is too large to encode.
    TooLarge,
    /// No intact report arrived (the channel was written to by someone else).
    Lost,
    /// Not run: the program failed to import, or the job's time budget ran out.
    NotRun,
    /// The sandbox failed (never the code's fault).
    SandboxError,
}

impl OutcomeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OutcomeKind::Value => "value",
            OutcomeKind::Exception => "exception",
            OutcomeKind::Timeout => "timeout",
            OutcomeKind::Killed => "killed",
            OutcomeKind::BadInput => "bad_input",
            OutcomeKind::TooLarge => "too_large",
            OutcomeKind::Lost => "lost",
            OutcomeKind::NotRun => "not_run",
            OutcomeKind::SandboxError => "sandbox_error",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExceptionInfo {
    #[serde(rename = "type")]
    pub type_name: String,
    pub message: String,
}

/// One input's outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    pub kind: OutcomeKind,
    /// Qualified type name of the return value (`int`, `numpy.ndarray`, ...).
    #[serde(default, rename = "type", skip_serializing_if = "String::is_empty")]
    pub type_name: String,
    /// `repr` of the return value (clipped), for rendering.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub repr: String,
    /// Typed encoding of the return value: `["int", "3"]`, `["str", "3"]`,
    /// `["tuple", [...]]`, `["ndarray", dtype, shape, values]`, `["DataFrame", ...]`, ...
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub value: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exception: Option<ExceptionInfo>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    #[serde(default)]
    pub duration_ms: u64,
}

impl Outcome {
    fn failed(kind: OutcomeKind, message: impl Into<String>) -> Outcome {
        Outcome { kind, type_name: String::new(), repr: String::new(), value: Value::Null, exception: None, message: message.into(), duration_ms: 0 }
    }

    /// A stable token for comparing behaviour: the typed value's hash, the exception
    /// type, or the failure kind. Equal tokens mean equal behaviour on this input.
    pub fn token(&self) -> String {
        match self.kind {
            OutcomeKind::Value => format!("v:{}", &blake3::hash(self.value.to_string().as_bytes()).to_hex()[..32]),
            OutcomeKind::Exception => format!("e:{}", self.exception.as_ref().map(|e| e.type_name.as_str()).unwrap_or("?")),
            other => format!("x:{}", other.as_str()),
        }
    }

    pub fn is_value(&self) -> bool {
        self.kind == OutcomeKind::Value
    }
}

/// Everything one call job produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallsResult {
    /// One per input, in input order.
    pub outcomes: Vec<Outcome>,
    /// The program itself failed to import (or hung, or died while importing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub import_error: Option<String>,
    /// Foreign lines appeared on the private channel: no outcome of this job is trusted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tampered: Option<String>,
    /// The sandbox failed (retryable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox_error: Option<String>,
    pub duration_ms: u64,
    /// Python children forked for the job.
    pub children: u64,
}

/// How to run the inputs.
#[derive(Debug, Clone, Copy)]
pub struct CallOptions {
    /// Wall-clock limit per input (and for importing the program), seconds.
    pub timeout: f64,
    /// A fresh child per input (true) or one child for all inputs (false).
    pub fresh_child_per_input: bool,
}

impl Sandbox {
    /// Call `entry_point` of `code` on each input (a Python dict literal of keyword
    /// arguments). Never panics; always one outcome per input.
    pub fn call(&self, code: &str, entry_point: &str, inputs: &[String], opts: CallOptions) -> CallsResult {
        let n = inputs.len();
        if let Some(v) = self.policy_violation(code, "code") {
            let why = format!("rejected by the static policy ({} at {}: {})", v.rule, v.place, v.detail);
            let mut r = all_failed(n, OutcomeKind::NotRun, &why, None);
            r.tampered = Some(why);
            return r;
        }
        let budget = opts.timeout * (n as f64 + 1.0) * 2.0;
        let fields = json!({
            "kind": "call", "code": code, "entry_point": entry_point, "inputs": inputs,
            "timeout": opts.timeout, "fresh": opts.fresh_child_per_input, "total_timeout": budget,
            "cpu_limit": if opts.fresh_child_per_input { opts.timeout } else { budget },
        });
        match self.submit(fields, Duration::from_secs_f64(budget + 15.0 + n as f64 * 0.5)) {
            Ok(result) => interpret(&result, n),
            Err(message) => all_failed(n, OutcomeKind::SandboxError, &message, Some(message.clone())),
        }
    }
}

fn all_failed(n: usize, kind: OutcomeKind, message: &str, sandbox_error: Option<String>) -> CallsResult {
    CallsResult {
        outcomes: (0..n).map(|_| Outcome::failed(kind, message)).collect(),
        import_error: None,
        tampered: None,
        sandbox_error,
        duration_ms: 0,
        children: 0,
    }
}

fn text(v: &Value, key: &str) -> String {
    v.get(key).and_then(Value::as_str).unwrap_or("").to_string()
}

/// The harness's answer to a call job, as outcomes.
pub fn interpret(result: &Value, n: usize) -> CallsResult {
    if let Some(e) = result.get("sandbox_error").and_then(Value::as_str) {
        return all_failed(n, OutcomeKind::SandboxError, e, Some(format!("sandbox failure: {e}")));
    }
    if result.get("worker_died").and_then(Value::as_bool) == Some(true) {
        return all_failed(n, OutcomeKind::Killed, "the sandbox worker was killed during the job", None);
    }
    if let Some(e) = result.get("setup_error").and_then(Value::as_str) {
        return all_failed(n, OutcomeKind::SandboxError, e, Some(format!("could not set up the child: {e}")));
    }
    let raw = result.get("outcomes").and_then(Value::as_array).cloned().unwrap_or_default();
    let mut outcomes: Vec<Outcome> = Vec::with_capacity(n);
    for i in 0..n {
        let o = raw.get(i).cloned().unwrap_or(Value::Null);
        let kind: OutcomeKind = o.get("kind").cloned().and_then(|k| serde_json::from_value(k).ok()).unwrap_or(OutcomeKind::Lost);
        let exception = o.get("exception").map(|e| ExceptionInfo { type_name: text(e, "type"), message: text(e, "message") });
        outcomes.push(Outcome {
            kind,
            type_name: text(&o, "type"),
            repr: text(&o, "repr"),
            value: if kind == OutcomeKind::Value { o.get("value").cloned().unwrap_or(Value::Null) } else { Value::Null },
            exception,
            message: text(&o, "message"),
            duration_ms: o.get("ms").and_then(Value::as_u64).unwrap_or(0),
        });
    }
    let import_error = result.get("import_error").filter(|v| !v.is_null()).map(|e| {
        let (kind, message) = (text(e, "type"), text(e, "message"));
        if message.starts_with(&kind) {
            message
        } else {
            format!("{kind}: {message}")
        }
    });
    let forged = result.get("forged_lines").and_then(Value::as_u64).unwrap_or(0);
    let tampered = (forged > 0).then(|| format!("{forged} foreign or mangled lines on the private result channel"));
    if tampered.is_some() {
        for o in &mut outcomes {
            *o = Outcome::failed(OutcomeKind::Lost, "not trusted: the result channel was tampered with");
        }
    }
    CallsResult {
        outcomes,
        import_error,
        tampered,
        sandbox_error: None,
        duration_ms: result.get("duration_ms").and_then(Value::as_u64).unwrap_or(0),
        children: result.get("children").and_then(Value::as_u64).unwrap_or(0),
    }
}
