//! Integrity of generated tests and of fixes, against the mock OpenAI server and the real
//! sandbox: each rule firing (a hardcoding fix, an overfit fix caught by held-out tests, a
//! constant fix, vacuous and self-mocking test modules, a function the tests never run), what
//! small models write being used (`class TestFoo`, a reply cut after its code block), an
//! unimportable function never sent to the model, and retries that are new requests.

mod common;

use std::path::Path;
use std::sync::Arc;

use common::mock_llm::{Faults, MockServer, Script, LENGTH_MARK};
use common::{bin, manifest, read_records, sandbox_python};
use serde_json::{json, Value};

fn py(code: &str) -> String {
    format!("```python\n{}\n```", code.trim_matches('\n'))
}

fn write_jsonl(path: &Path, rows: &[Value]) -> String {
    let text: Vec<String> = rows.iter().map(|r| r.to_string()).collect();
    std::fs::write(path, text.join("\n") + "\n").unwrap();
    path.display().to_string()
}

fn function(id: &str, name: &str, code: &str) -> Value {
    json!({"id": id, "entry_point": name, "code": code, "function": code, "packages": [], "imports": []})
}

/// The bodies of the requests whose prompt names `name`.
fn prompts_for(server: &MockServer, name: &str) -> Vec<Value> {
    let needle = format!("Function name: {name}\\n");
    server.seen.bodies.lock().unwrap().iter().filter(|b| b.to_string().contains(&needle)).cloned().collect()
}

fn gen_tests(input: &str, out: &Path, server: &MockServer, extra: &[&str]) {
    bin()
        .args(["-i", input, "-o", out.to_str().unwrap(), "gen-tests", "--base-url", &server.base_url, "--model", "m"])
        .args(["--max-retries", "0", "--python", &sandbox_python(), "--workers", "2"])
        .args(extra)
        .assert()
        .success();
}

const HONEST: &str = "
import unittest

class TestCases(unittest.TestCase):
    def test_a(self):
        self.assertEqual(NAME(2), 4)

    def test_b(self):
        self.assertEqual(NAME(5), 10)

    def test_c(self):
        self.assertEqual(NAME(0), 0)
";

#[test]
fn gen_tests_rejects_modules_that_do_not_test_the_function_and_uses_what_small_models_write() {
    let script = |prompt: &str, _n: u64| -> Option<Vec<String>> {
        let name = prompt.lines().find_map(|l| l.strip_prefix("Function name: "))?.trim().to_string();
        let module = match name.as_str() {
            "renamed" => py(&HONEST.replace("TestCases", "TestDouble").replace("NAME", "renamed")),
            "vacuous" => py("import unittest\n\nclass TestCases(unittest.TestCase):\n    def test_a(self):\n        self.assertTrue(True)\n"),
            "self_mocking" => py("import unittest\nfrom unittest import mock\n\nclass TestCases(unittest.TestCase):\n    @mock.patch('__test__.self_mocking', return_value=4)\n    def test_a(self, m):\n        self.assertEqual(self_mocking(2), 4)\n"),
            "copied" => py(&format!("import unittest\n\ndef copied(x):\n    return 2 * x\n{}", HONEST.replace("NAME", "copied"))),
            "unasserted" => py("import unittest\n\nclass TestCases(unittest.TestCase):\n    def test_a(self):\n        unasserted(2)\n        self.assertEqual(1, 1)\n"),
            // Statically fine; at run time the call never happens.
            "never_run" => py("import unittest\n\nclass TestCases(unittest.TestCase):\n    def test_a(self):\n        if False:\n            self.assertEqual(never_run(2), 4)\n        self.assertTrue(True)\n"),
            "hallucinated" => py(&format!("import testing_helpers_that_do_not_exist\n{}", HONEST.replace("NAME", "hallucinated"))),
            "cut" => format!("{LENGTH_MARK}Tests:\n\n{}\n\nAnd some more explanation that was cut off mid-sen", py(&HONEST.replace("NAME", "cut"))),
            "cut_inside" => format!("{LENGTH_MARK}```python\nimport unittest\n\nclass TestCases(unittest.TestCase):\n    def test_a(self):\n        self.assertEqual(cut_inside(2), 4)\n"),
            _ => return None,
        };
        Some(vec![module])
    };
    let server = MockServer::start(Faults { script: Some(Script(Arc::new(script))), ..Default::default() });
    let dir = tempfile::tempdir().unwrap();
    let names = ["renamed", "vacuous", "self_mocking", "copied", "unasserted", "never_run", "hallucinated", "cut", "cut_inside"];
    let rows: Vec<Value> =
        names.iter().enumerate().map(|(i, n)| function(&format!("r{i}"), n, &format!("def {n}(x):\n    return 2 * x\n"))).collect();
    let input = write_jsonl(&dir.path().join("in.jsonl"), &rows);
    let out = dir.path().join("tests");
    gen_tests(&input, &out, &server, &["--max-tokens", "50"]);
    let records = read_records(&out, "shard");
    let by_name = |n: &str| records.iter().find(|r| r["entry_point"] == n).unwrap().clone();

    let renamed = by_name("renamed");
    assert!(renamed["tests"].as_str().unwrap().contains("class TestCases(unittest.TestCase)"), "{renamed}");
    assert_eq!(renamed["generation"]["renamed_class"], "TestDouble");
    assert_eq!(renamed["held_out_tests"].as_array().unwrap().len(), 1, "a third of 3 tests held out: {renamed}");

    for (name, reason) in [
        ("vacuous", "no_call"),
        ("self_mocking", "mocks_function"),
        ("copied", "defines_function"),
        ("unasserted", "assertions_unrelated"),
        ("never_run", "function_not_called"),
        ("hallucinated", "tests_do_not_load"),
        ("cut_inside", "truncated_max_tokens"),
    ] {
        let r = by_name(name);
        assert_eq!(r["error"]["kind"], reason, "{name}: {r}");
        assert!(r.get("tests").is_none(), "{name}");
        // Each got one retry, which was a new request (attempt 2, a new seed).
        let asked = prompts_for(&server, name);
        assert_eq!(asked.len(), 2, "{name}: one request and one retry");
        assert_ne!(asked[0], asked[1], "{name}: the retry is not the same request");
        assert!(asked[1].to_string().contains("This is attempt 2"), "{name}");
        assert!(asked[1].to_string().contains(reason), "{name}: the retry names the problem");
        assert!(asked[1].get("seed").is_some() && asked[0].get("seed").is_none(), "{name}: a new seed on the retry");
        assert_eq!(r["generation"]["tries"], 2);
    }
    let cut = by_name("cut");
    assert!(cut.get("tests").is_some(), "a cut reply with a complete block is used: {cut}");
    assert_eq!(cut["generation"]["truncated_used"], json!(["max_tokens"]));

    let outcomes = &manifest(&out)["counts"]["outcomes"];
    for reason in
        ["no_call", "mocks_function", "defines_function", "assertions_unrelated", "function_not_called", "tests_do_not_load", "truncated_max_tokens"]
    {
        assert_eq!(outcomes[format!("tests_rejected_{reason}")], 2, "{reason} counted per sample: {outcomes}");
    }
    assert_eq!(outcomes["tests_class_renamed"], 1);
    assert_eq!(outcomes["tests_truncated_used"], 1);
}

#[test]
fn a_function_that_cannot_import_is_never_sent_to_the_model() {
    let server = MockServer::start(Faults::default());
    let dir = tempfile::tempdir().unwrap();
    let rows = vec![
        function("a", "uses_missing", "import not_installed_pkg_xyz\n\ndef uses_missing(x):\n    return not_installed_pkg_xyz.f(x)\n"),
        function("b", "broken_import", "from os import no_such_name_here\n\ndef broken_import(x):\n    return x\n"),
        function("c", "fine", "import os\n\ndef fine(x):\n    return os.sep + x\n"),
    ];
    let input = write_jsonl(&dir.path().join("in.jsonl"), &rows);
    let out = dir.path().join("tests");
    gen_tests(&input, &out, &server, &[]);
    let records = read_records(&out, "shard");
    assert_eq!(records[0]["error"]["kind"], "missing_package", "{}", records[0]);
    assert!(records[0]["error"]["message"].as_str().unwrap().contains("not_installed_pkg_xyz"));
    assert_eq!(records[1]["error"]["kind"], "import_error", "{}", records[1]);
    assert!(records[2].get("tests").is_some(), "{}", records[2]);
    assert!(prompts_for(&server, "uses_missing").is_empty() && prompts_for(&server, "broken_import").is_empty());
    assert_eq!(server.requests(), 1, "only the importable function cost a request");

    // Turned off, the model is asked for every function.
    let out2 = dir.path().join("tests2");
    gen_tests(&input, &out2, &server, &["--no-import-check"]);
    assert_eq!(server.requests(), 4);
}

/// Records with a buggy `double` and its tests, through sandbox-run, then fix with `script`.
fn fix_run(dir: &Path, name: &str, code: &str, tests: &str, held_out: &[&str], script: Arc<common::mock_llm::ScriptFn>) -> (Value, MockServer) {
    let server = MockServer::start(Faults { script: Some(Script(script)), ..Default::default() });
    let mut row = function("r0", name, code);
    row["tests"] = json!(tests);
    row["held_out_tests"] = json!(held_out);
    let input = write_jsonl(&dir.join(format!("{name}.jsonl")), &[row]);
    let checked = dir.join(format!("{name}-checked"));
    bin().args(["-i", &input, "-o", checked.to_str().unwrap(), "sandbox-run", "--python", &sandbox_python(), "--no-adequacy"]).assert().success();
    let fixed = dir.join(format!("{name}-fixed"));
    bin()
        .args(["-i", checked.to_str().unwrap(), "-o", fixed.to_str().unwrap(), "fix", "--base-url", &server.base_url, "--model", "m"])
        .args(["--max-retries", "0", "--python", &sandbox_python(), "--samples", "2", "--max-rounds", "3", "--no-adequacy"])
        .assert()
        .success();
    let record = read_records(&fixed, "shard").remove(0);
    (record, server)
}

fn history(r: &Value) -> Vec<Value> {
    r["fix"]["history"].as_array().cloned().unwrap_or_default()
}

#[test]
fn fixes_that_game_the_tests_are_rejected_and_held_out_tests_catch_overfitting() {
    let dir = tempfile::tempdir().unwrap();
    let tests = HONEST.replace("NAME", "double");
    let script = |prompt: &str, _n: u64| -> Option<Vec<String>> {
        if prompt.contains("return 2 * x if x else 1") {
            // Round 2, from the overfit parent: an honest fix.
            return Some(vec![py("def double(x):\n    return 2 * x\n")]);
        }
        Some(vec![
            py("def double(x):\n    if x == 5:\n        return 10\n    if x == 2:\n        return 4\n    return x\n"),
            py("def double(x):\n    return 2 * x if x else 1\n"),
        ])
    };
    let (r, server) = fix_run(dir.path(), "double", "def double(x):\n    return x + x + 1\n", &tests, &["TestCases.test_c"], Arc::new(script));
    let h = history(&r);
    assert_eq!(h[0]["rejected"], "hardcoded_test_values", "{h:?}");
    assert!(h[0]["detail"].as_str().unwrap().contains("taken from the tests"));
    assert_eq!(h[1]["status"], "fail");
    assert_eq!(h[1]["overfit"], true, "passed the visible tests, failed the held-out one: {h:?}");
    assert_eq!(r["fix"]["status"], "fixed", "{r}");
    assert!(r["code"].as_str().unwrap().contains("return 2 * x\n"));
    // The prompts never showed the held-out test, and round 2 said that hidden tests fail.
    let bodies = server.seen.bodies.lock().unwrap().clone();
    assert!(bodies.iter().all(|b| !b.to_string().contains("test_c") && !b.to_string().contains("NAME(0)")), "held-out test shown");
    assert!(bodies.iter().all(|b| !b.to_string().contains("double(0)")), "held-out test shown");
    assert!(bodies[1].to_string().contains("not shown also fail"), "{}", bodies[1]);
    let outcomes = &manifest(&dir.path().join("double-fixed"))["counts"]["outcomes"];
    assert_eq!(outcomes["fix_rejected_hardcoded_test_values"], 1, "{outcomes}");
    assert_eq!(outcomes["fix_overfit_candidates"], 1, "{outcomes}");
}

#[test]
fn a_fix_that_returns_a_constant_and_equality_tricks_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let tests = "import unittest\n\nclass TestCases(unittest.TestCase):\n    def test_a(self):\n        self.assertEqual(cap(20), 10)\n\n    def test_b(self):\n        self.assertEqual(cap(15), 10)\n";
    let script = |prompt: &str, _n: u64| -> Option<Vec<String>> {
        if prompt.contains("This is round 2") {
            return Some(vec![py("def cap(x):\n    return min(x, 10)\n")]);
        }
        Some(vec![
            py("def cap(x):\n    return 10\n"),
            py("def cap(x):\n    class Same:\n        def __eq__(self, other):\n            return True\n    return Same()\n"),
        ])
    };
    let (r, server) = fix_run(dir.path(), "cap", "def cap(x):\n    return x - 10\n", tests, &[], Arc::new(script));
    let h = history(&r);
    assert_eq!(h[0]["rejected"], "overloaded_equality", "{h:?}");
    assert_eq!(h[1]["rejected"], "constant_output", "{h:?}");
    // Every candidate of round 1 was unusable: round 2 is a new request that says so.
    let bodies = server.seen.bodies.lock().unwrap().clone();
    assert_eq!(bodies.len(), 2);
    assert!(bodies[1].to_string().contains("This is round 2") && bodies[1].to_string().contains("constant_output"), "{}", bodies[1]);
    assert!(bodies[1].get("seed").is_some());
    assert_eq!(r["fix"]["status"], "fixed", "the honest saturating fix is not taken for a constant: {r}");
}

/// Hostile test modules against the harness's call watch (policy off: the harness must hold
/// on its own), on the sandbox's Python and, when installed, on 3.12 (the sys.monitoring
/// path instead of the compiled-in recorder).
#[test]
fn test_modules_cannot_forge_that_they_called_the_function() {
    use unitcoder::sandbox::{Sandbox, SandboxSettings, Status};
    let mut pythons = vec![common::python()];
    let py312 = std::path::PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".pyenv/versions/3.12.1/bin/python");
    if py312.exists() {
        pythons.push(py312.display().to_string());
    } else {
        eprintln!("no Python 3.12 here: the sys.monitoring path is not exercised");
    }
    let code = "def add(a, b):\n    return a + b\n";
    let class = |body: &str| format!("import unittest, sys, threading\nfrom unittest import mock\n\nclass TestCases(unittest.TestCase):\n{body}");
    let forged = [
        // Call whatever the harness put in the namespace, never `add` itself.
        class("    def test_a(self):\n        for k, v in list(globals().items()):\n            if k.startswith('_unitcoder') and callable(v):\n                v()\n        self.assertTrue(True)\n"),
        // Replace `add` for the test, then call the replacement.
        class("    def test_a(self):\n        with mock.patch.dict(globals(), {'add': lambda a, b: 3}):\n            self.assertEqual(add(1, 2), 3)\n"),
        // A copy of the function compiled from its source.
        class("    def test_a(self):\n        import inspect\n        ns = {}\n        exec(inspect.getsource(add), ns)\n        self.assertEqual(ns['add'](1, 2), 3)\n"),
        // 3.12+: take the monitoring callback and call it with the function's code object.
        class("    def test_a(self):\n        mon = getattr(sys, 'monitoring', None)\n        if mon is not None:\n            for tool in range(6):\n                cb = mon.register_callback(tool, mon.events.PY_START, None)\n                if cb is not None:\n                    cb(add.__code__, 0)\n        self.assertTrue(True)\n"),
    ];
    let honest = [
        class("    @classmethod\n    def setUpClass(cls):\n        cls.result = add(1, 2)\n\n    def test_a(self):\n        self.assertEqual(self.result, 3)\n"),
        format!("EXPECTED = add(2, 2)\n{}", class("    def test_a(self):\n        self.assertEqual(EXPECTED, 4)\n")),
        class("    def test_a(self):\n        out = []\n        t = threading.Thread(target=lambda: out.append(add(1, 1)))\n        t.start()\n        t.join()\n        self.assertEqual(out, [2])\n\n    def test_b(self):\n        self.assertTrue(True)\n"),
    ];
    for python in pythons {
        let settings = SandboxSettings { python: python.clone(), workers: 1, timeout: 10.0, preimport: vec![], policy: false, ..Default::default() };
        let sandbox = Sandbox::start(settings).expect("sandbox");
        for tests in &forged {
            let v = sandbox.check_calls(code, tests, Some("add"));
            assert_eq!((v.status, v.reason.as_deref()), (Status::Rejected, Some("function_not_called")), "{python}: {tests}\n{}", v.message);
            // Without the entry point nothing is watched: the same module passes.
            assert_eq!(sandbox.check(code, tests).status, Status::Pass, "{python}: {tests}");
        }
        for (i, tests) in honest.iter().enumerate() {
            let v = sandbox.check_calls(code, tests, Some("add"));
            assert_eq!(v.status, Status::Pass, "{python}: {tests}\n{}", v.message);
            let uncalled: Vec<&str> = v.uncalled_tests.iter().map(String::as_str).collect();
            assert_eq!(uncalled, if i == 2 { vec!["TestCases.test_b"] } else { vec![] }, "{python}");
        }
        // A function that starts with a docstring and `global` is watched too.
        let with_global = "COUNT = 0\n\ndef add(a, b):\n    \"\"\"Add.\"\"\"\n    global COUNT\n    COUNT += 1\n    return a + b\n";
        let v = sandbox.check_calls(with_global, &honest[0], Some("add"));
        assert_eq!(v.status, Status::Pass, "{python}: {}", v.message);
        let v = sandbox.check_calls(with_global, &forged[0], Some("add"));
        assert_eq!(v.reason.as_deref(), Some("function_not_called"), "{python}: {}", v.message);
    }
}
