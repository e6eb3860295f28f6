//! The static policy: the first defence layer, applied in Rust to the function *and* the
//! test module before anything runs. It rejects the escape and introspection primitives a
//! legitimate function or unit test does not need — frames, code objects and closure
//! cells, the garbage collector's heap walks, raw memory (`ctypes`, `cffi`), writes into
//! `builtins` or `sys.modules`, unittest's internals and overridden assertions, early
//! process exit, tracing hooks, metaclass attribute hooks — with a named rule and a
//! location. Ordinary test idioms (`mock.patch("builtins.open")`, `patch.dict(os.environ)`,
//! `patch.dict(sys.modules, ...)`, tempfiles, threads, `inspect.signature`) stay legal.
//!
//! Each rule can be switched off (`[sandbox] policy_allow = ["raw_memory"]`). The rules
//! were calibrated on BigCodeBench's 1,140 canonical solutions and human test modules
//! (`bench/policy/`; the rejected ones are listed with the reason in `bench/RESULTS.md`).

use ruff_python_ast::visitor::{self, Visitor};
use ruff_python_ast::{Expr, Stmt};
use ruff_text_size::Ranged;

use crate::python::{on_parse_stack, parse_untrusted, LineIndex};

/// The rules, with what each one covers (for docs and `doctor`).
pub const RULES: &[(&str, &str)] = &[
    ("frame_access", "stack frames: f_back/f_globals/f_locals/tb_frame/gi_frame/cr_frame/ag_frame, sys._getframe, inspect.currentframe/stack/trace"),
    ("code_objects", "function internals: __code__, __closure__, cell_contents, __globals__, __defaults__/__kwdefaults__ writes"),
    ("gc_heap", "the garbage collector's views of the heap: gc.get_objects/get_referrers/get_referents, sys._current_frames"),
    ("raw_memory", "raw memory and native code: ctypes, cffi, _ctypes, mmap of /proc/self/mem"),
    ("builtins_write", "assigning into builtins or __builtins__ (mock.patch is fine)"),
    ("sys_modules_write", "assigning or deleting sys.modules entries (patch.dict(sys.modules) is fine)"),
    (
        "unittest_internals",
        "unittest's private machinery: _ShouldStop, _Outcome, _outcome, testPartExecutor, _callTestMethod, failureException, TestCase.run",
    ),
    ("assertion_override", "a test class redefining TestCase's own assertions, failureException, run, debug, __call__ or _call* methods"),
    ("process_exit", "ending the process from inside: os._exit, os.abort"),
    ("tracing_hooks", "sys.settrace/setprofile/gettrace/getprofile, threading.settrace/setprofile, sys.monitoring, sys.addaudithook"),
    ("metaclass_hooks", "a metaclass defining __getattribute__, __getattr__, __dir__, __instancecheck__ or __subclasscheck__"),
    ("too_deep", "nesting deeper than CPython compiles"),
    ("redefines_program", "a test module defining, assigning or declaring `global` a name the program defines (the function under test replaced)"),
];

/// Why a program or test module was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub rule: &'static str,
    pub detail: String,
    /// `code:LINE` or `tests:LINE`.
    pub place: String,
}

/// The first violation in `source` (`part` is `code` or `tests`), skipping `allowed` rules.
pub fn check(source: &str, part: &str, allowed: &[String]) -> Option<Violation> {
    on_parse_stack(|| check_here(source, part, allowed))
}

const MAX_DEPTH: usize = 3_000;

/// A test module that replaces what the program defines (`def task_func` again,
/// `task_func = lambda ...`, `global task_func` in a test): it would test its own copy.
pub fn check_pair(code: &str, tests: &str, allowed: &[String]) -> Option<Violation> {
    if allowed.iter().any(|a| a == "redefines_program") {
        return None;
    }
    on_parse_stack(|| {
        let code = parse_untrusted(code, ruff_python_ast::PythonVersion::PY314).ok()?;
        let parsed = parse_untrusted(tests, ruff_python_ast::PythonVersion::PY314).ok()?;
        let defined: Vec<String> = code
            .suite()
            .iter()
            .filter_map(|s| match s {
                Stmt::FunctionDef(f) => Some(f.name.to_string()),
                Stmt::ClassDef(c) => Some(c.name.to_string()),
                _ => None,
            })
            .collect();
        let mut finder = Rebinding { defined: &defined, found: None };
        finder.visit_body(parsed.suite());
        let (name, offset) = finder.found?;
        let line = LineIndex::new(tests).line_of(offset.min(tests.len()));
        Some(Violation { rule: "redefines_program", detail: format!("the tests rebind `{name}`"), place: format!("tests:{line}") })
    })
}

struct Rebinding<'d> {
    defined: &'d [String],
    found: Option<(String, usize)>,
}

impl Rebinding<'_> {
    fn visit_body(&mut self, body: &[Stmt]) {
        for s in body {
            self.visit(s, true);
        }
    }

    fn hit(&mut self, name: &str, at: usize) {
        if self.found.is_none() && self.defined.iter().any(|d| d == name) {
            self.found = Some((name.to_string(), at));
        }
    }

    fn visit(&mut self, stmt: &Stmt, top: bool) {
        let at = stmt.range().start().to_usize();
        match stmt {
            Stmt::FunctionDef(f) if top => self.hit(f.name.as_str(), at),
            Stmt::ClassDef(c) if top => {
                self.hit(c.name.as_str(), at);
                for s in &c.body {
                    self.visit(s, false);
                }
            }
            Stmt::FunctionDef(f) => {
                for s in &f.body {
                    self.visit(s, false);
                }
            }
            Stmt::Assign(a) if top => {
                for t in &a.targets {
                    if let Expr::Name(n) = t {
                        self.hit(n.id.as_str(), at);
                    }
                }
            }
            Stmt::Global(g) => {
                for n in &g.names {
                    self.hit(n.as_str(), at);
                }
            }
            Stmt::If(i) if top => {
                for s in &i.body {
                    self.visit(s, true);
                }
            }
            _ => {}
        }
    }
}

fn check_here(source: &str, part: &str, allowed: &[String]) -> Option<Violation> {
    // What does not parse is the sandbox's business (an import error), not the policy's.
    let parsed = parse_untrusted(source, ruff_python_ast::PythonVersion::PY314).ok()?;
    if !parsed.errors().is_empty() {
        return None;
    }
    let mut walker = Walker { allowed, found: None, offset: 0, depth: 0, metaclasses: Vec::new() };
    walker.metaclasses = hooking_metaclasses(parsed.suite());
    walker.visit_body(parsed.suite());
    let (rule, detail, offset) = walker.found?;
    let line = LineIndex::new(source).line_of(offset.min(source.len()));
    Some(Violation { rule, detail, place: format!("{part}:{line}") })
}

struct Walker<'s> {
    allowed: &'s [String],
    found: Option<(&'static str, String, usize)>,
    offset: usize,
    depth: usize,
    /// Classes of this module that define attribute hooks (usable as metaclasses).
    metaclasses: Vec<String>,
}

const FRAME_ATTRS: &[&str] = &["f_back", "f_globals", "f_locals", "f_builtins", "f_code", "f_trace", "tb_frame", "gi_frame", "cr_frame", "ag_frame"];
const CODE_ATTRS: &[&str] = &["__code__", "__closure__", "cell_contents", "__globals__"];
const UNITTEST_NAMES: &[&str] = &[
    "_ShouldStop",
    "_Outcome",
    "_outcome",
    "testPartExecutor",
    "_callTestMethod",
    "_callSetUp",
    "_callTearDown",
    "_callCleanup",
    "_type_equality_funcs",
    "_AssertRaisesContext",
    "_AssertWarnsContext",
    "_AssertLogsContext",
    "_classSetupFailed",
    "_addSkip",
];
/// What a test class may not redefine: `unittest.TestCase`'s own assertions (Python 3.11)
/// and the methods that run a test. Helpers with new names (`assertDataInPlot`) are fine.
const TESTCASE_METHODS: &[&str] = &[
    "assertAlmostEqual",
    "assertAlmostEquals",
    "assertCountEqual",
    "assertDictContainsSubset",
    "assertDictEqual",
    "assertEqual",
    "assertEquals",
    "assertFalse",
    "assertGreater",
    "assertGreaterEqual",
    "assertIn",
    "assertIs",
    "assertIsInstance",
    "assertIsNone",
    "assertIsNot",
    "assertIsNotNone",
    "assertLess",
    "assertLessEqual",
    "assertListEqual",
    "assertLogs",
    "assertMultiLineEqual",
    "assertNoLogs",
    "assertNotAlmostEqual",
    "assertNotAlmostEquals",
    "assertNotEqual",
    "assertNotEquals",
    "assertNotIn",
    "assertNotIsInstance",
    "assertNotRegex",
    "assertNotRegexpMatches",
    "assertRaises",
    "assertRaisesRegex",
    "assertRaisesRegexp",
    "assertRegex",
    "assertRegexpMatches",
    "assertSequenceEqual",
    "assertSetEqual",
    "assertTrue",
    "assertTupleEqual",
    "assertWarns",
    "assertWarnsRegex",
    "assert_",
    "fail",
    "failIf",
    "failIfAlmostEqual",
    "failIfEqual",
    "failUnless",
    "failUnlessAlmostEqual",
    "failUnlessEqual",
    "failUnlessRaises",
    "failureException",
    "run",
    "debug",
    "__call__",
    "addTypeEqualityFunc",
    "_getAssertEqualityFunc",
    "_baseAssertEqual",
    "_formatMessage",
];
const HOOKS: &[&str] = &["__getattribute__", "__getattr__", "__dir__", "__instancecheck__", "__subclasscheck__"];

/// `a.b.c` → ["a", "b", "c"] for a chain of names.
fn dotted(e: &Expr) -> Option<Vec<&str>> {
    match e {
        Expr::Name(n) => Some(vec![n.id.as_str()]),
        Expr::Attribute(a) => {
            let mut v = dotted(&a.value)?;
            v.push(a.attr.as_str());
            Some(v)
        }
        _ => None,
    }
}

/// Module classes that define attribute hooks and derive from `type`.
fn hooking_metaclasses(suite: &[Stmt]) -> Vec<String> {
    suite
        .iter()
        .filter_map(|s| match s {
            Stmt::ClassDef(c)
                if c.bases().iter().any(|b| dotted(b).is_some_and(|d| d.last() == Some(&"type") || d.last() == Some(&"ABCMeta")))
                    && c.body.iter().any(|m| matches!(m, Stmt::FunctionDef(f) if HOOKS.contains(&f.name.as_str()))) =>
            {
                Some(c.name.to_string())
            }
            _ => None,
        })
        .collect()
}

impl Walker<'_> {
    fn flag(&mut self, rule: &'static str, detail: impl Into<String>, at: usize) {
        if self.found.is_none() && !self.allowed.iter().any(|a| a == rule) {
            self.found = Some((rule, detail.into(), at));
        }
    }

    fn visit_body(&mut self, body: &[Stmt]) {
        for s in body {
            if self.found.is_some() {
                return;
            }
            self.visit_stmt(s);
        }
    }

    /// A dotted name used anywhere (read, called, assigned).
    fn check_dotted(&mut self, d: &[&str], at: usize) {
        let joined = d.join(".");
        let last = d.last().copied().unwrap_or("");
        match d {
            [.., "sys", "_getframe"] | [.., "inspect", "currentframe" | "stack" | "trace" | "getouterframes" | "getinnerframes"] => {
                self.flag("frame_access", joined.clone(), at)
            }
            [.., "sys", "_current_frames"] | [.., "gc", "get_objects" | "get_referrers" | "get_referents"] => {
                self.flag("gc_heap", joined.clone(), at)
            }
            [.., "os", "_exit" | "abort"] => self.flag("process_exit", joined.clone(), at),
            [.., "sys", "settrace" | "setprofile" | "gettrace" | "getprofile" | "monitoring" | "addaudithook"]
            | [.., "threading", "settrace" | "setprofile" | "settrace_all_threads" | "setprofile_all_threads"] => {
                self.flag("tracing_hooks", joined.clone(), at)
            }
            [first, ..] if matches!(*first, "ctypes" | "cffi" | "_ctypes") => self.flag("raw_memory", joined.clone(), at),
            _ => {}
        }
        if d.len() > 1 && FRAME_ATTRS.contains(&last) {
            self.flag("frame_access", joined.clone(), at);
        }
        if d.len() > 1 && CODE_ATTRS.contains(&last) {
            self.flag("code_objects", joined.clone(), at);
        }
        if UNITTEST_NAMES.contains(&last) {
            self.flag("unittest_internals", joined, at);
        }
    }

    /// Assignment targets: writes into builtins, sys.modules, function defaults, unittest.
    fn check_target(&mut self, t: &Expr, at: usize) {
        match t {
            Expr::Attribute(a) => {
                if let Some(d) = dotted(&a.value) {
                    if matches!(d.last(), Some(&"builtins") | Some(&"__builtins__")) {
                        self.flag("builtins_write", format!("{}.{}", d.join("."), a.attr), at);
                    }
                }
                let attr = a.attr.as_str();
                if attr.starts_with("assert") && !matches!(dotted(&a.value).as_deref(), Some(["self"])) {
                    // `np.testing.assert_array_equal = ...`, `unittest.TestCase.assertEqual = ...`:
                    // tests that neuter the assertions they use.
                    self.flag("assertion_override", format!("assignment to {attr}"), at);
                }
                match attr {
                    "__defaults__" | "__kwdefaults__" | "__code__" => self.flag("code_objects", format!("assignment to {}", a.attr), at),
                    "failureException" => self.flag("unittest_internals", "assignment to failureException", at),
                    "run" if dotted(&a.value).is_some_and(|d| d.last().is_some_and(|l| l.ends_with("TestCase") || *l == "TestResult")) => {
                        self.flag("unittest_internals", "assignment to TestCase.run", at)
                    }
                    "__class__" => self.flag("metaclass_hooks", "assignment to __class__", at),
                    _ => {}
                }
            }
            Expr::Subscript(s) => {
                if let Some(d) = dotted(&s.value) {
                    if d.ends_with(&["sys", "modules"]) {
                        self.flag("sys_modules_write", "sys.modules[...] assignment", at);
                    }
                    if d.last() == Some(&"__builtins__") {
                        self.flag("builtins_write", "__builtins__[...] assignment", at);
                    }
                }
            }
            Expr::Tuple(t) => t.elts.iter().for_each(|e| self.check_target(e, at)),
            Expr::List(l) => l.elts.iter().for_each(|e| self.check_target(e, at)),
            _ => {}
        }
    }
}

impl<'a> Visitor<'a> for Walker<'_> {
    fn visit_stmt(&mut self, stmt: &'a Stmt) {
        if self.found.is_some() {
            return;
        }
        let at = stmt.range().start().to_usize();
        self.offset = at;
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            self.flag("too_deep", format!("nesting deeper than {MAX_DEPTH}"), at);
            self.depth -= 1;
            return;
        }
        match stmt {
            Stmt::Import(i) => {
                for alias in &i.names {
                    let root = alias.name.as_str().split('.').next().unwrap_or("");
                    if matches!(root, "ctypes" | "cffi" | "_ctypes") {
                        self.flag("raw_memory", format!("import {}", alias.name), at);
                    }
                }
            }
            Stmt::ImportFrom(i) => {
                let module = i.module.as_ref().map(|m| m.as_str()).unwrap_or("");
                let root = module.split('.').next().unwrap_or("");
                if matches!(root, "ctypes" | "cffi" | "_ctypes") {
                    self.flag("raw_memory", format!("from {module} import ..."), at);
                }
                for alias in &i.names {
                    let full: Vec<&str> = module.split('.').chain(std::iter::once(alias.name.as_str())).collect();
                    self.check_dotted(&full, at);
                }
            }
            Stmt::Assign(a) => a.targets.iter().for_each(|t| self.check_target(t, at)),
            Stmt::AugAssign(a) => self.check_target(&a.target, at),
            Stmt::AnnAssign(a) => self.check_target(&a.target, at),
            Stmt::Delete(d) => d.targets.iter().for_each(|t| self.check_target(t, at)),
            Stmt::ClassDef(c) => {
                let is_test = c.bases().iter().any(|b| dotted(b).is_some_and(|d| d.last().is_some_and(|l| l.ends_with("TestCase"))));
                if is_test {
                    for m in &c.body {
                        if let Stmt::FunctionDef(f) = m {
                            let n = f.name.as_str();
                            if TESTCASE_METHODS.contains(&n) || n.starts_with("_call") {
                                self.flag("assertion_override", format!("{}.{n} redefined", c.name), f.range().start().to_usize());
                            }
                        }
                        if let Stmt::Assign(a) = m {
                            for t in &a.targets {
                                if let Expr::Name(n) = t {
                                    if TESTCASE_METHODS.contains(&n.id.as_str()) {
                                        self.flag("assertion_override", format!("{}.{} rebound", c.name, n.id), at);
                                    }
                                }
                            }
                        }
                    }
                }
                if let Some(args) = &c.arguments {
                    for kw in &args.keywords {
                        if kw.arg.as_ref().is_some_and(|a| a.as_str() == "metaclass") {
                            if let Some(d) = dotted(&kw.value) {
                                if d.last().is_some_and(|m| self.metaclasses.iter().any(|h| h == m)) {
                                    self.flag("metaclass_hooks", format!("class {} uses metaclass {}", c.name, d.join(".")), at);
                                }
                            }
                        }
                    }
                }
            }
            _ => {}
        }
        visitor::walk_stmt(self, stmt);
        self.depth -= 1;
    }

    fn visit_expr(&mut self, expr: &'a Expr) {
        if self.found.is_some() {
            return;
        }
        self.depth += 1;
        let at = expr.range().start().to_usize();
        if self.depth > MAX_DEPTH {
            self.flag("too_deep", format!("nesting deeper than {MAX_DEPTH}"), at);
            self.depth -= 1;
            return;
        }
        match expr {
            Expr::Attribute(_) => {
                if let Some(d) = dotted(expr) {
                    self.check_dotted(&d, at);
                } else if let Expr::Attribute(a) = expr {
                    // `x().f_back`, `tb.tb_frame` on any expression.
                    let attr = a.attr.as_str();
                    if FRAME_ATTRS.contains(&attr) {
                        self.flag("frame_access", attr.to_string(), at);
                    } else if CODE_ATTRS.contains(&attr) {
                        self.flag("code_objects", attr.to_string(), at);
                    } else if UNITTEST_NAMES.contains(&attr) {
                        self.flag("unittest_internals", attr.to_string(), at);
                    }
                }
            }
            Expr::Name(n) => {
                let id = n.id.as_str();
                if UNITTEST_NAMES.contains(&id) {
                    self.flag("unittest_internals", id.to_string(), at);
                }
            }
            Expr::Call(c) => {
                // getattr(x, "f_back"), setattr(builtins, ...), vars(builtins)[...]
                if let Some(d) = dotted(&c.func) {
                    let f = d.last().copied().unwrap_or("");
                    if matches!(f, "getattr" | "setattr" | "delattr" | "hasattr") {
                        if let Some(Expr::StringLiteral(s)) = c.arguments.args.get(1) {
                            let name = s.value.to_str();
                            if FRAME_ATTRS.contains(&name) {
                                self.flag("frame_access", format!("{f}(..., {name:?})"), at);
                            } else if CODE_ATTRS.contains(&name) || matches!(name, "__defaults__" | "__kwdefaults__") {
                                self.flag("code_objects", format!("{f}(..., {name:?})"), at);
                            } else if UNITTEST_NAMES.contains(&name) || name == "failureException" {
                                self.flag("unittest_internals", format!("{f}(..., {name:?})"), at);
                            }
                        }
                        if let (true, Some(Expr::StringLiteral(s))) = (f == "setattr", c.arguments.args.get(1)) {
                            if s.value.to_str().starts_with("assert") {
                                self.flag("assertion_override", format!("setattr(..., {:?})", s.value.to_str()), at);
                            }
                        }
                        if f == "setattr" || f == "delattr" {
                            if let Some(target) = c.arguments.args.first().and_then(dotted) {
                                if matches!(target.last(), Some(&"builtins") | Some(&"__builtins__")) {
                                    self.flag("builtins_write", format!("{f}({}, ...)", target.join(".")), at);
                                }
                            }
                        }
                    }
                    if d.ends_with(&["sys", "modules", "__setitem__"])
                        || d.ends_with(&["sys", "modules", "update"])
                        || d.ends_with(&["sys", "modules", "pop"])
                    {
                        self.flag("sys_modules_write", d.join("."), at);
                    }
                }
            }
            _ => {}
        }
        visitor::walk_expr(self, expr);
        self.depth -= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(src: &str) -> Option<&'static str> {
        check(src, "tests", &[]).map(|v| v.rule)
    }

    #[test]
    fn each_rule_fires_on_its_primitive() {
        let cases: &[(&str, &str)] = &[
            ("import sys\nf = sys._getframe(1)\n", "frame_access"),
            ("def f():\n    try:\n        1/0\n    except Exception as e:\n        return e.__traceback__.tb_frame.f_back\n", "frame_access"),
            ("import inspect\nx = inspect.currentframe()\n", "frame_access"),
            ("def f(): pass\nc = f.__closure__\n", "code_objects"),
            ("def f(a=1): pass\nf.__defaults__ = (2,)\n", "code_objects"),
            ("x = getattr(g, '__code__')\n", "code_objects"),
            ("import gc\nobjs = gc.get_objects()\n", "gc_heap"),
            ("import ctypes\n", "raw_memory"),
            ("from ctypes import CDLL\n", "raw_memory"),
            ("import builtins\nbuiltins.len = lambda x: 0\n", "builtins_write"),
            ("__builtins__['round'] = None\n", "builtins_write"),
            ("import sys\nsys.modules['unittest'] = object()\n", "sys_modules_write"),
            ("import unittest\nraise unittest.case._ShouldStop()\n", "unittest_internals"),
            ("import unittest\nclass T(unittest.TestCase):\n    def assertEqual(self, a, b): pass\n", "assertion_override"),
            ("import unittest\nclass T(unittest.TestCase):\n    failureException = KeyError\n", "assertion_override"),
            ("import unittest\nclass T(unittest.TestCase):\n    assertTrue = lambda self, x: None\n", "assertion_override"),
            ("import numpy as np\nnp.testing.assert_array_equal = lambda *a, **k: None\n", "assertion_override"),
            ("import pandas as pd\nsetattr(pd.testing, 'assert_frame_equal', print)\n", "assertion_override"),
            ("import unittest\nunittest.TestCase.run = lambda *a: None\n", "unittest_internals"),
            ("import os\nos._exit(0)\n", "process_exit"),
            ("import sys\nsys.settrace(None)\n", "tracing_hooks"),
            ("class M(type):\n    def __getattribute__(c, n): return 1\nclass T(metaclass=M): pass\n", "metaclass_hooks"),
        ];
        for (src, want) in cases {
            assert_eq!(rule(src), Some(*want), "{src}");
        }
    }

    #[test]
    fn ordinary_idioms_are_legal() {
        let legal = [
            "import unittest\nfrom unittest import mock\nclass T(unittest.TestCase):\n    @mock.patch('builtins.open')\n    def test_a(self, m):\n        pass\n",
            "import os, sys, unittest\nfrom unittest.mock import patch\nclass T(unittest.TestCase):\n    @patch.dict(os.environ, {'A': '1'})\n    def test_a(self):\n        with patch.dict(sys.modules, {'x': None}):\n            pass\n",
            "import inspect\ndef f(a, b=1):\n    return a\nsig = inspect.signature(f)\n",
            "import gc\ngc.collect()\n",
            "import tempfile, threading\nwith tempfile.TemporaryDirectory() as d:\n    t = threading.Thread(target=print)\n",
            "import unittest\nunittest.TestCase.maxDiff = None\nclass T(unittest.TestCase):\n    def setUp(self): pass\n    def test_a(self):\n        self.assertEqual(1, 1)\n",
            "import sys\nsys.exit(0)\n",
            "import unittest\nclass T(unittest.TestCase):\n    def assertDataInPlot(self, ax):\n        self.assertTrue(ax)\n",
            "x = [1, 2]\nx.__len__()\n",
        ];
        for src in legal {
            assert_eq!(check(src, "tests", &[]), None, "{src}");
        }
    }

    #[test]
    fn rules_can_be_allowed_and_places_are_lines() {
        let src = "x = 1\nimport ctypes\n";
        let v = check(src, "code", &[]).unwrap();
        assert_eq!((v.rule, v.place.as_str()), ("raw_memory", "code:2"));
        assert_eq!(check(src, "code", &["raw_memory".to_string()]), None);
    }

    #[test]
    fn tests_that_replace_the_program_are_refused() {
        let code = "def add(a, b):\n    return a - b\n";
        for tests in [
            "import unittest\ndef add(a, b):\n    return a + b\nclass T(unittest.TestCase):\n    def test_a(self): pass\n",
            "add = lambda a, b: a + b\n",
            "import unittest\nclass T(unittest.TestCase):\n    def setUp(self):\n        global add\n        add = max\n",
        ] {
            assert_eq!(check_pair(code, tests, &[]).map(|v| v.rule), Some("redefines_program"), "{tests}");
        }
        let honest = "import unittest\ndef helper(x):\n    return add(x, 1)\nclass T(unittest.TestCase):\n    def test_a(self):\n        self.assertEqual(helper(1), 0)\n";
        assert_eq!(check_pair(code, honest, &[]), None);
        assert_eq!(check_pair(code, "def add(a, b): pass\n", &["redefines_program".to_string()]), None);
    }

    #[test]
    fn deep_nesting_is_a_rule_not_a_crash() {
        let src = format!("x = {}1\n", "-".repeat(100_000));
        assert_eq!(rule(&src), Some("too_deep"));
    }
}
