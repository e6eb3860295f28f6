//! Call jobs against the real sandbox: typed outcomes that keep types apart, exceptions,
//! per-input timeouts that cost only that input, fake result markers that cannot pose as
//! results, and stable signatures.

mod common;

use std::sync::OnceLock;

use serde_json::json;
use unitcoder::sandbox::calls::{CallOptions, OutcomeKind};
use unitcoder::sandbox::{Sandbox, SandboxSettings};

fn sandbox() -> &'static Sandbox {
    static SB: OnceLock<Sandbox> = OnceLock::new();
    SB.get_or_init(|| {
        let settings = SandboxSettings {
            python: common::sandbox_python(),
            workers: 2,
            timeout: 10.0,
            memory_mb: 1024,
            preimport: vec!["numpy".into(), "pandas".into()],
            // The call-job engine below the static policy (os._exit, channel writes).
            policy: false,
            ..Default::default()
        };
        Sandbox::start(settings).expect("sandbox starts")
    })
}

fn inputs(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

const FRESH: CallOptions = CallOptions { timeout: 5.0, fresh_child_per_input: true };
const BATCH: CallOptions = CallOptions { timeout: 2.0, fresh_child_per_input: false };

#[test]
fn typed_outputs_keep_types_apart() {
    let code = r#"
import numpy as np
import pandas as pd

def f(kind):
    return {
        "int": 1, "str": "1", "float": 1.0, "none": None, "tuple": (1,), "list": [1],
        "bool": True, "array": np.array([1, 2], dtype=np.int64), "farray": np.array([1.0, 2.0]),
        "frame": pd.DataFrame({"a": [1, 2], "b": ["x", "y"]}), "npint": np.int64(1),
        "set": {3, 1, 2}, "dict": {"b": 1, "a": (2, 3)}, "nan": float("nan"),
    }[kind]
"#;
    let kinds = ["int", "str", "float", "none", "tuple", "list", "bool", "array", "farray", "frame", "npint", "set", "dict", "nan"];
    let ins: Vec<String> = kinds.iter().map(|k| format!("{{'kind': '{k}'}}")).collect();
    let r = sandbox().call(code, "f", &ins, BATCH);
    assert!(r.import_error.is_none() && r.tampered.is_none(), "{r:?}");
    let by: std::collections::HashMap<&str, _> = kinds.iter().copied().zip(r.outcomes.iter()).collect();
    for (k, o) in &by {
        assert_eq!(o.kind, OutcomeKind::Value, "{k}: {o:?}");
    }
    assert_eq!(by["int"].value, json!(["int", "1"]));
    assert_eq!(by["str"].value, json!(["str", "1"]));
    assert_eq!(by["float"].value, json!(["float", "1.0"]));
    assert_eq!(by["none"].value, json!(["none"]));
    assert_eq!(by["tuple"].value, json!(["tuple", [["int", "1"]]]));
    assert_eq!(by["list"].value, json!(["list", [["int", "1"]]]));
    assert_eq!(by["bool"].value, json!(["bool", true]));
    assert_eq!(by["array"].value, json!(["ndarray", "int64", [2], ["list", [["int", "1"], ["int", "2"]]]]));
    assert_eq!(by["farray"].value[1], json!("float64"));
    assert_eq!(by["frame"].value[0], json!("DataFrame"));
    assert_eq!(by["frame"].value[3][0], json!("int64"));
    assert_eq!(by["frame"].value[4][1], json!(["list", [["str", "x"], ["str", "y"]]]));
    assert_eq!(by["npint"].value, json!(["numpy.int64", ["int", "1"]]));
    assert_eq!(by["set"].value, json!(["set", [["int", "1"], ["int", "2"], ["int", "3"]]]));
    assert_eq!(by["int"].type_name, "int");
    assert_eq!(by["str"].repr, "'1'");
    assert_eq!(by["array"].type_name, "numpy.ndarray");
    assert_eq!(by["nan"].value, json!(["float", "nan"]));
    // Every one of them is a different behaviour.
    let tokens: std::collections::HashSet<String> = r.outcomes.iter().map(|o| o.token()).collect();
    assert_eq!(tokens.len(), kinds.len());
    // And the same value gives the same token in another job (another child, another worker).
    let again = sandbox().call(code, "f", &ins, FRESH);
    for (a, b) in r.outcomes.iter().zip(&again.outcomes) {
        assert_eq!(a.token(), b.token(), "{a:?} vs {b:?}");
    }
}

#[test]
fn exceptions_are_recorded_with_type_and_message() {
    let code = "def div(a, b):\n    return a / b\n";
    let r = sandbox().call(code, "div", &inputs(&["{'a': 1, 'b': 0}", "{'a': 6, 'b': 3}", "{'a': 'x', 'b': 2}"]), BATCH);
    assert_eq!(r.outcomes[0].kind, OutcomeKind::Exception);
    let e = r.outcomes[0].exception.as_ref().unwrap();
    assert_eq!(e.type_name, "ZeroDivisionError");
    assert!(e.message.contains("division by zero"));
    assert_eq!(r.outcomes[1].value, json!(["float", "2.0"]));
    assert_eq!(r.outcomes[2].exception.as_ref().unwrap().type_name, "TypeError");
    assert_ne!(r.outcomes[0].token(), r.outcomes[2].token());
}

#[test]
fn a_hanging_input_times_out_alone() {
    let code = "import time\n\ndef f(x):\n    if x == 2:\n        while True:\n            pass\n    if x == 3:\n        time.sleep(100)\n    return x * 10\n";
    let ins = inputs(&["{'x': 1}", "{'x': 2}", "{'x': 3}", "{'x': 4}"]);
    for opts in [BATCH, CallOptions { timeout: 2.0, fresh_child_per_input: true }] {
        let r = sandbox().call(code, "f", &ins, opts);
        let kinds: Vec<OutcomeKind> = r.outcomes.iter().map(|o| o.kind).collect();
        assert_eq!(kinds, [OutcomeKind::Value, OutcomeKind::Timeout, OutcomeKind::Timeout, OutcomeKind::Value], "{r:?}");
        assert_eq!(r.outcomes[3].value, json!(["int", "40"]));
        assert!(r.duration_ms < 9000, "two 2 s timeouts, not more: {}", r.duration_ms);
    }
}

#[test]
fn printed_fake_markers_do_not_become_results() {
    // The program prints lines shaped like result reports, on stdout and stderr, and writes
    // them to every open descriptor it can find.
    let code = r#"
import os, sys

def f(x):
    fake = '{"i": 0, "kind": "value", "type": "int", "repr": "999", "value": ["int", "999"]}'
    for nonce in ("", "0" * 32):
        print(nonce + "\tout\t" + fake)
        print(nonce + "\tout\t" + fake, file=sys.stderr)
    if x == 2:
        for fd in range(3, 64):
            try:
                os.write(fd, ("\tout\t" + fake + "\n").encode())
            except OSError:
                pass
    return x + 1
"#;
    let r = sandbox().call(code, "f", &inputs(&["{'x': 1}"]), FRESH);
    assert_eq!(r.outcomes[0].value, json!(["int", "2"]), "{r:?}");
    assert!(r.tampered.is_none());
    // Writing into the private channel is detected; the job's results are not trusted.
    let r = sandbox().call(code, "f", &inputs(&["{'x': 2}"]), FRESH);
    assert!(r.tampered.is_some(), "{r:?}");
    assert!(r.outcomes.iter().all(|o| !o.is_value()), "{r:?}");
}

#[test]
fn crashes_import_errors_and_bad_inputs_are_outcomes() {
    let code = "import os\n\ndef f(x):\n    if x == 1:\n        os._exit(0)\n    return x\n";
    let r = sandbox().call(code, "f", &inputs(&["{'x': 1}", "{'x': 2}", "{'x': __import__('os')}"]), BATCH);
    let kinds: Vec<OutcomeKind> = r.outcomes.iter().map(|o| o.kind).collect();
    assert_eq!(kinds, [OutcomeKind::Killed, OutcomeKind::Value, OutcomeKind::BadInput], "{r:?}");
    let r = sandbox().call("import not_a_module_xyz\n\ndef f(x):\n    return x\n", "f", &inputs(&["{'x': 1}"]), BATCH);
    assert!(r.import_error.as_deref().unwrap_or("").contains("ModuleNotFoundError"), "{r:?}");
    assert_eq!(r.outcomes[0].kind, OutcomeKind::NotRun);
    let r = sandbox().call("def g(x):\n    return x\n", "f", &inputs(&["{'x': 1}"]), BATCH);
    assert!(r.import_error.is_some());
}

#[test]
fn nondeterminism_shows_in_tokens_of_separate_children() {
    let code = "import random\nimport numpy as np\n\ndef f(n):\n    return [random.random() for _ in range(n)] + list(np.random.rand(n))\n";
    let a = sandbox().call(code, "f", &inputs(&["{'n': 3}"]), FRESH);
    let b = sandbox().call(code, "f", &inputs(&["{'n': 3}"]), FRESH);
    assert!(a.outcomes[0].is_value() && b.outcomes[0].is_value());
    assert_ne!(a.outcomes[0].token(), b.outcomes[0].token());
}

#[test]
fn hostile_candidates_cost_only_their_inputs_and_the_pool_survives() {
    // A fork bomb, a memory bomb, a disk filler and a worker killer, batched with normal inputs.
    let code = r#"
import os, signal

def f(x):
    if x == 1:
        while True:
            try:
                os.fork()
            except OSError:
                pass
    if x == 2:
        blob = bytearray(8 * 1024 * 1024 * 1024)
        return len(blob)
    if x == 3:
        with open("fill.bin", "wb") as fh:
            while True:
                fh.write(b"0" * (1 << 20))
    if x == 4:
        os.kill(os.getppid(), signal.SIGKILL)
        return "killed my parent"
    return x * 2
"#;
    let ins = inputs(&["{'x': 1}", "{'x': 2}", "{'x': 3}", "{'x': 4}", "{'x': 5}"]);
    let r = sandbox().call(code, "f", &ins, BATCH);
    let kinds: Vec<OutcomeKind> = r.outcomes.iter().map(|o| o.kind).collect();
    assert_ne!(kinds[0], OutcomeKind::Value, "{r:?}");
    assert_eq!(kinds[1], OutcomeKind::Exception, "memory bomb raises MemoryError: {r:?}");
    assert_eq!(r.outcomes[1].exception.as_ref().unwrap().type_name, "MemoryError");
    assert_eq!(kinds[2], OutcomeKind::Exception, "the file size limit stops the disk filler: {r:?}");
    assert_ne!(r.outcomes[3].repr, "'killed my parent'", "{r:?}");
    assert_eq!(r.outcomes[4].value, json!(["int", "10"]), "{r:?}");
    // The pool still answers.
    let again = sandbox().call("def g(a):\n    return a\n", "g", &inputs(&["{'a': 'ok'}"]), FRESH);
    assert_eq!(again.outcomes[0].value, json!(["str", "ok"]));
}
