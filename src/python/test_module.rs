//! A generated `unittest` module, read statically: which class holds its tests (renamed to
//! `TestCases` when a model named it otherwise), whether it really tests the function under
//! test, and its visible part when some tests are held out from the fix loop.
//!
//! "Really tests" means all of: it never defines or rebinds the function's name, never
//! mocks or patches it, calls it somewhere, and at least one assertion involves a value
//! derived from such a call (data flow through assignments, loops, `with` targets, helper
//! functions that return one, and `self.attr` set in `setUp`). The sandbox adds the dynamic
//! half: a test module none of whose tests made the function run is rejected there.

use std::collections::{BTreeSet, HashSet};

use ruff_python_ast::visitor::{self, Visitor};
use ruff_python_ast::{Expr, Stmt, StmtClassDef};
use ruff_text_size::Ranged;

use crate::python::{dotted_name, on_parse_stack, parse_untrusted};

/// Why a test module does not test the function (the reason is the record's error kind).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub reason: &'static str,
    pub detail: String,
}

/// The reasons `check` gives, for docs and stats.
pub const REASONS: &[(&str, &str)] = &[
    ("defines_function", "the test module defines, assigns, imports or declares `global` the function's name (it would test its own copy)"),
    ("mocks_function", "the test module patches or mocks the function under test (`mock.patch(\"…f\")`, `patch.object(m, \"f\")`, `m.f = …`)"),
    ("no_call", "no test calls the function (its name is never used)"),
    ("assertions_unrelated", "no assertion involves a value derived from a call of the function"),
];

fn finding(reason: &'static str, detail: impl Into<String>) -> Finding {
    Finding { reason, detail: detail.into() }
}

fn last_name(e: &Expr) -> &str {
    match e {
        Expr::Name(n) => n.id.as_str(),
        Expr::Attribute(a) => a.attr.as_str(),
        _ => "",
    }
}

/// Module-level `unittest.TestCase` subclasses, in source order: a base named `*TestCase`
/// (`unittest.TestCase`, `TestCase`, `IsolatedAsyncioTestCase`) or an earlier test class.
pub fn test_classes(suite: &[Stmt]) -> Vec<&StmtClassDef> {
    let mut names: HashSet<String> = HashSet::new();
    let mut out = Vec::new();
    for stmt in suite {
        let Stmt::ClassDef(c) = stmt else { continue };
        let is_test = c.bases().iter().any(|b| {
            let name = last_name(b);
            name.ends_with("TestCase") || names.contains(name)
        });
        let has_test = c.body.iter().any(|m| matches!(m, Stmt::FunctionDef(f) if f.name.as_str().starts_with("test")));
        if is_test {
            names.insert(c.name.to_string());
            if has_test || c.bases().iter().any(|b| names.contains(last_name(b))) {
                out.push(c);
            }
        }
    }
    out
}

/// Does the module define at least one `TestCase` subclass with a `test*` method?
pub fn defines_test_class(suite: &[Stmt]) -> bool {
    !test_classes(suite).is_empty()
}

/// Models name their class `TestFoo`, `TestSolution`, `MyTests`: when no test class is
/// called `TestCases`, the first one is renamed (its definition and every use of the name),
/// so records and exports keep the BigCodeBench convention. Other test classes stay as they
/// are and run too (the harness runs every `TestCase` subclass of the module). Returns the
/// new source and the old name, or `None` when nothing needs renaming.
pub fn rename_test_class(source: &str) -> Option<(String, String)> {
    on_parse_stack(|| {
        let parsed = parse_untrusted(source, ruff_python_ast::PythonVersion::PY314).ok()?;
        if !parsed.errors().is_empty() {
            return None;
        }
        let classes = test_classes(parsed.suite());
        if classes.iter().any(|c| c.name.as_str() == "TestCases") {
            return None;
        }
        let first = classes.first()?;
        let old = first.name.to_string();
        if parsed.suite().iter().any(|s| matches!(s, Stmt::ClassDef(c) if c.name.as_str() == "TestCases")) {
            return None;
        }
        let mut uses = NameUses { name: &old, ranges: vec![first.name.range()] };
        uses.visit_body(parsed.suite());
        let mut ranges: Vec<(usize, usize)> = uses.ranges.iter().map(|r| (r.start().to_usize(), r.end().to_usize())).collect();
        ranges.sort_unstable();
        ranges.dedup();
        let mut out = String::with_capacity(source.len() + 8);
        let mut pos = 0;
        for (start, end) in ranges {
            out.push_str(&source[pos..start]);
            out.push_str("TestCases");
            pos = end;
        }
        out.push_str(&source[pos..]);
        Some((out, old))
    })
}

struct NameUses<'n> {
    name: &'n str,
    ranges: Vec<ruff_text_size::TextRange>,
}

impl<'a> Visitor<'a> for NameUses<'_> {
    fn visit_expr(&mut self, expr: &'a Expr) {
        if let Expr::Name(n) = expr {
            if n.id.as_str() == self.name {
                self.ranges.push(n.range());
            }
        }
        visitor::walk_expr(self, expr);
    }
}

/// Check that a test module tests `entry`: the first rule it breaks, in the order of
/// `REASONS`. A module that does not parse is left to the caller.
pub fn check(tests: &str, entry: &str) -> Result<(), Finding> {
    on_parse_stack(|| {
        let Ok(parsed) = parse_untrusted(tests, ruff_python_ast::PythonVersion::PY314) else { return Ok(()) };
        if !parsed.errors().is_empty() {
            return Ok(());
        }
        let suite = parsed.suite();
        let mut uses = Uses { entry, found: None, loads: 0 };
        uses.visit_body(suite);
        if let Some(f) = uses.found {
            return Err(f);
        }
        if uses.loads == 0 {
            return Err(finding("no_call", format!("no test uses `{entry}`")));
        }
        let mut flow = Flow { entry, tainted: HashSet::new(), helpers: HashSet::new() };
        for _ in 0..6 {
            let before = (flow.tainted.len(), flow.helpers.len());
            flow.scan(suite, None);
            if (flow.tainted.len(), flow.helpers.len()) == before {
                break;
            }
        }
        let mut asserts = Assertions { flow: &flow, found: false, any: false, after_call: false, set_up_called: false };
        asserts.visit_body(suite);
        if !asserts.found {
            let why = if asserts.any { "no assertion involves a value computed by" } else { "the module has no assertions about" };
            return Err(finding("assertions_unrelated", format!("{why} `{entry}`")));
        }
        Ok(())
    })
}

/// Rebinding, mocking and plain uses of the entry point's name.
struct Uses<'e> {
    entry: &'e str,
    found: Option<Finding>,
    loads: usize,
}

impl Uses<'_> {
    fn flag(&mut self, reason: &'static str, detail: String) {
        if self.found.is_none() {
            self.found = Some(finding(reason, detail));
        }
    }

    /// `patch("mod.f")`, `patch.object(mod, "f")`, `patch.multiple(mod, f=...)`,
    /// `setattr(mod, "f", ...)`.
    fn check_call(&mut self, call: &ruff_python_ast::ExprCall) {
        let callee = dotted_name(&call.func).unwrap_or_default();
        let last = callee.rsplit('.').next().unwrap_or("");
        let is_patch = callee.split('.').any(|p| p == "patch") || matches!(last, "patch" | "setattr" | "patch_object");
        if !is_patch {
            return;
        }
        let entry = self.entry;
        let names_entry = |e: &Expr| match e {
            Expr::StringLiteral(s) => {
                let s = s.value.to_str();
                s == entry || s.ends_with(&format!(".{entry}"))
            }
            _ => false,
        };
        if call.arguments.args.iter().any(names_entry) || call.arguments.keywords.iter().any(|k| k.arg.as_ref().is_some_and(|a| a.as_str() == entry))
        {
            self.flag("mocks_function", format!("`{callee}(...)` replaces `{entry}`"));
        }
    }
}

impl<'a> Visitor<'a> for Uses<'_> {
    fn visit_stmt(&mut self, stmt: &'a Stmt) {
        let entry = self.entry;
        match stmt {
            Stmt::FunctionDef(f) if f.name.as_str() == entry => self.flag("defines_function", format!("`def {entry}` in the tests")),
            Stmt::ClassDef(c) if c.name.as_str() == entry => self.flag("defines_function", format!("`class {entry}` in the tests")),
            Stmt::Global(g) if g.names.iter().any(|n| n.as_str() == entry) => self.flag("defines_function", format!("`global {entry}`")),
            Stmt::Nonlocal(g) if g.names.iter().any(|n| n.as_str() == entry) => self.flag("defines_function", format!("`nonlocal {entry}`")),
            Stmt::Import(i) if i.names.iter().any(|a| a.asname.as_ref().unwrap_or(&a.name).as_str() == entry) => {
                self.flag("defines_function", format!("an import binds `{entry}`"))
            }
            Stmt::ImportFrom(i) if i.names.iter().any(|a| a.asname.as_ref().unwrap_or(&a.name).as_str() == entry) => {
                self.flag("defines_function", format!("an import binds `{entry}`"))
            }
            _ => {}
        }
        visitor::walk_stmt(self, stmt);
    }

    fn visit_expr(&mut self, expr: &'a Expr) {
        match expr {
            Expr::Name(n) if n.id.as_str() == self.entry => {
                if matches!(n.ctx, ruff_python_ast::ExprContext::Load) {
                    self.loads += 1;
                } else {
                    self.flag("defines_function", format!("the tests assign `{}`", self.entry));
                }
            }
            Expr::Attribute(a) if a.attr.as_str() == self.entry && !matches!(a.ctx, ruff_python_ast::ExprContext::Load) => {
                self.flag("mocks_function", format!("the tests assign `{}`", dotted_name(expr).unwrap_or_else(|| a.attr.to_string())))
            }
            Expr::Call(c) => self.check_call(c),
            _ => {}
        }
        visitor::walk_expr(self, expr);
    }
}

/// Calls that only look at a function (`callable(f)`, `f.__name__`): not a use of its value.
const INTROSPECTION: &[&str] =
    &["callable", "isinstance", "hasattr", "getattr", "type", "id", "repr", "str", "print", "signature", "getsource", "getdoc"];

/// Which names hold values derived from a call of the entry point.
struct Flow<'e> {
    entry: &'e str,
    /// Names and dotted paths (`result`, `self.df`) bound to derived values.
    tainted: HashSet<String>,
    /// Functions and methods that return a derived value (`helper`, `self._run`).
    helpers: HashSet<String>,
}

impl Flow<'_> {
    fn derived(&self, e: &Expr) -> bool {
        let mut m = Mentions { flow: self, found: false, introspected: false };
        m.visit_expr(e);
        m.found
    }

    fn targets(&mut self, target: &Expr) {
        match target {
            Expr::Tuple(t) => t.elts.iter().for_each(|e| self.targets(e)),
            Expr::List(l) => l.elts.iter().for_each(|e| self.targets(e)),
            Expr::Starred(s) => self.targets(&s.value),
            Expr::Subscript(s) => self.targets(&s.value),
            other => {
                if let Some(d) = dotted_name(other) {
                    self.tainted.insert(d);
                }
            }
        }
    }

    /// One pass over a body, recording what becomes derived.
    fn scan(&mut self, body: &[Stmt], function: Option<&str>) {
        for stmt in body {
            match stmt {
                Stmt::FunctionDef(f) => {
                    let name = f.name.to_string();
                    self.scan(&f.body, Some(&name));
                }
                Stmt::ClassDef(c) => self.scan(&c.body, None),
                Stmt::Assign(a) if self.derived(&a.value) => a.targets.iter().for_each(|t| self.targets(t)),
                Stmt::AugAssign(a) if self.derived(&a.value) => self.targets(&a.target),
                Stmt::AnnAssign(a) if a.value.as_deref().is_some_and(|v| self.derived(v)) => self.targets(&a.target),
                Stmt::Return(r) => {
                    if let (Some(v), Some(f)) = (&r.value, function) {
                        if self.derived(v) {
                            self.helpers.insert(f.to_string());
                        }
                    }
                }
                // `results.append(f(x))`: the container holds derived values.
                Stmt::Expr(e) => {
                    if let Expr::Call(c) = e.value.as_ref() {
                        if let Expr::Attribute(a) = c.func.as_ref() {
                            if c.arguments.args.iter().any(|x| self.derived(x)) {
                                self.targets(&a.value);
                            }
                        }
                    }
                }
                _ => {}
            }
            match stmt {
                Stmt::For(f) => {
                    if self.derived(&f.iter) {
                        self.targets(&f.target);
                    }
                    self.scan(&f.body, function);
                    self.scan(&f.orelse, function);
                }
                Stmt::While(w) => {
                    self.scan(&w.body, function);
                    self.scan(&w.orelse, function);
                }
                Stmt::If(i) => {
                    self.scan(&i.body, function);
                    for c in &i.elif_else_clauses {
                        self.scan(&c.body, function);
                    }
                }
                Stmt::With(w) => {
                    for item in &w.items {
                        if let Some(vars) = &item.optional_vars {
                            if self.derived(&item.context_expr) {
                                self.targets(vars);
                            }
                        }
                    }
                    self.scan(&w.body, function);
                }
                Stmt::Try(t) => {
                    self.scan(&t.body, function);
                    for h in &t.handlers {
                        let ruff_python_ast::ExceptHandler::ExceptHandler(h) = h;
                        self.scan(&h.body, function);
                    }
                    self.scan(&t.orelse, function);
                    self.scan(&t.finalbody, function);
                }
                _ => {}
            }
        }
    }
}

/// Does an expression involve a derived value: a call of the entry point or of a helper
/// returning one, the entry point passed on as a value (`assertRaises(E, f, x)`,
/// `map(f, xs)`), or a tainted name?
struct Mentions<'f, 'e> {
    flow: &'f Flow<'e>,
    found: bool,
    /// Visiting the direct arguments of an introspection call.
    introspected: bool,
}

impl<'a> Visitor<'a> for Mentions<'_, '_> {
    fn visit_expr(&mut self, expr: &'a Expr) {
        if self.found {
            return;
        }
        let flow = self.flow;
        match expr {
            Expr::Call(c) => {
                let callee = dotted_name(&c.func).unwrap_or_default();
                let helper = callee.strip_prefix("self.").or_else(|| callee.strip_prefix("cls.")).unwrap_or(&callee);
                if callee == flow.entry || flow.helpers.contains(helper) {
                    self.found = true;
                    return;
                }
                let introspection = INTROSPECTION.contains(&last_name(&c.func)) || callee.starts_with("inspect.");
                self.visit_expr(&c.func);
                for arg in c.arguments.args.iter().chain(c.arguments.keywords.iter().map(|k| &k.value)) {
                    self.introspected = introspection;
                    self.visit_expr(arg);
                    self.introspected = false;
                }
                return;
            }
            Expr::Name(n) => {
                let id = n.id.as_str();
                if (id == flow.entry && !self.introspected) || flow.tainted.contains(id) {
                    self.found = true;
                }
                return;
            }
            Expr::Attribute(a) => {
                if matches!(a.value.as_ref(), Expr::Name(n) if n.id.as_str() == flow.entry) {
                    return; // f.__name__, f.__doc__
                }
                if dotted_name(expr).is_some_and(|d| flow.tainted.contains(&d)) {
                    self.found = true;
                    return;
                }
            }
            _ => {}
        }
        self.introspected = false;
        visitor::walk_expr(self, expr);
    }
}

/// Is there an assertion about a derived value: `assert …`, an `assert*` call (unittest's,
/// numpy's, pandas' testing helpers, a mock's `assert_called_with`) with a derived argument,
/// a derived call inside `with self.assertRaises(...)`, or — for functions that work by
/// side effects (files written, plots drawn, mocks called) — an assertion with a
/// non-constant operand that comes after a call of the function in the same function body
/// (the state it looks at is the call's result)?
struct Assertions<'f, 'e> {
    flow: &'f Flow<'e>,
    found: bool,
    /// Any assertion at all.
    any: bool,
    /// The function body being visited has called the function already.
    after_call: bool,
    /// The class being visited calls the function in `setUp`/`setUpClass`.
    set_up_called: bool,
}

/// Does an assertion look at anything but constants (a name, an attribute, a call — or, for
/// `mock.assert_called_once()`, its receiver)?
fn looks_at_state(c: &ruff_python_ast::ExprCall) -> bool {
    let receiver = match c.func.as_ref() {
        Expr::Attribute(a) => !matches!(a.value.as_ref(), Expr::Name(n) if n.id.as_str() == "self"),
        _ => false,
    };
    receiver || c.arguments.args.iter().chain(c.arguments.keywords.iter().map(|k| &k.value)).any(|a| !is_constant(a))
}

fn is_constant(e: &Expr) -> bool {
    match e {
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::BytesLiteral(_) | Expr::BooleanLiteral(_) | Expr::NoneLiteral(_) => true,
        Expr::Tuple(t) => t.elts.iter().all(is_constant),
        Expr::List(l) => l.elts.iter().all(is_constant),
        Expr::UnaryOp(u) => is_constant(&u.operand),
        _ => false,
    }
}

fn is_assertion(func: &Expr) -> bool {
    let name = last_name(func);
    name.starts_with("assert") || name.starts_with("assert_") || name == "fail" || name == "raises"
}

impl<'a> Visitor<'a> for Assertions<'_, '_> {
    fn visit_stmt(&mut self, stmt: &'a Stmt) {
        if self.found {
            return;
        }
        if let Stmt::FunctionDef(f) = stmt {
            let outer = std::mem::replace(&mut self.after_call, self.set_up_called);
            self.visit_body(&f.body);
            self.after_call = outer;
            return;
        }
        if let Stmt::ClassDef(c) = stmt {
            // A function started in setUp (a server thread, a file written) is called before
            // every test of the class.
            let set_up = c.body.iter().any(|m| match m {
                Stmt::FunctionDef(f) if matches!(f.name.as_str(), "setUp" | "setUpClass" | "asyncSetUp") => {
                    let mut inner = BodyMentions { flow: self.flow, found: false };
                    inner.visit_body(&f.body);
                    inner.found
                }
                _ => false,
            });
            let outer = std::mem::replace(&mut self.set_up_called, set_up);
            self.visit_body(&c.body);
            self.set_up_called = outer;
            return;
        }
        match stmt {
            Stmt::Assert(a) => {
                self.any = true;
                self.found |= self.flow.derived(&a.test) || (self.after_call && !is_constant(&a.test));
            }
            Stmt::With(w) if w.items.iter().any(|i| matches!(&i.context_expr, Expr::Call(c) if is_assertion(&c.func))) => {
                self.any = true;
                let mut inner = BodyMentions { flow: self.flow, found: false };
                inner.visit_body(&w.body);
                self.found |= inner.found;
            }
            _ => {}
        }
        visitor::walk_stmt(self, stmt);
        // A simple statement that calls the function: what follows may check its effects.
        let compound = matches!(stmt, Stmt::With(_) | Stmt::For(_) | Stmt::While(_) | Stmt::If(_) | Stmt::Try(_) | Stmt::ClassDef(_));
        if !compound && !self.after_call {
            let mut inner = BodyMentions { flow: self.flow, found: false };
            inner.visit_stmt(stmt);
            self.after_call = inner.found;
        }
    }

    fn visit_expr(&mut self, expr: &'a Expr) {
        if self.found {
            return;
        }
        if let Expr::Call(c) = expr {
            if is_assertion(&c.func) {
                self.any = true;
                let args = c.arguments.args.iter().chain(c.arguments.keywords.iter().map(|k| &k.value));
                let mut found = false;
                for a in args {
                    found |= self.flow.derived(a);
                }
                self.found |= found || (self.after_call && looks_at_state(c));
            }
        }
        visitor::walk_expr(self, expr);
    }
}

/// Any derived expression anywhere in a body.
struct BodyMentions<'f, 'e> {
    flow: &'f Flow<'e>,
    found: bool,
}

impl<'a> Visitor<'a> for BodyMentions<'_, '_> {
    fn visit_expr(&mut self, expr: &'a Expr) {
        self.found = self.found || self.flow.derived(expr);
    }
}

/// The held-out share of a module's tests: `fraction` of `tests` (`Class.method` names),
/// at least one when `fraction > 0` and at least one stays visible; chosen by a seeded hash
/// of (`key`, name), so a record always gets the same split.
pub fn choose_held_out(tests: &BTreeSet<String>, fraction: f64, key: &str, seed: u64) -> Vec<String> {
    let n = tests.len();
    if n < 2 || fraction <= 0.0 {
        return Vec::new();
    }
    let k = ((n as f64 * fraction).round() as usize).clamp(1, n - 1);
    let mut scored: Vec<(String, &String)> =
        tests.iter().map(|t| (blake3::hash(format!("{seed}\u{0}{key}\u{0}{t}").as_bytes()).to_hex().to_string(), t)).collect();
    scored.sort();
    let mut held: Vec<String> = scored.into_iter().take(k).map(|(_, t)| t.clone()).collect();
    held.sort();
    held
}

/// The module without the test methods named in `hidden` (`Class.method`): what the fix
/// prompt shows. A class left without statements gets `pass`.
pub fn without_tests(source: &str, hidden: &[String]) -> String {
    if hidden.is_empty() {
        return source.to_string();
    }
    on_parse_stack(|| {
        let Ok(parsed) = parse_untrusted(source, ruff_python_ast::PythonVersion::PY314) else { return source.to_string() };
        if !parsed.errors().is_empty() {
            return source.to_string();
        }
        let mut cuts: Vec<(usize, usize, Option<String>)> = Vec::new();
        for stmt in parsed.suite() {
            let Stmt::ClassDef(c) = stmt else { continue };
            let removed: Vec<&Stmt> =
                c.body.iter().filter(|m| matches!(m, Stmt::FunctionDef(f) if hidden.contains(&format!("{}.{}", c.name, f.name)))).collect();
            let emptied = removed.len() == c.body.len();
            for (i, m) in removed.iter().enumerate() {
                let start = line_start(source, m.range().start().to_usize());
                let end = line_end(source, m.range().end().to_usize());
                let indent = source[start..m.range().start().to_usize()].chars().take_while(|ch| ch.is_whitespace()).collect::<String>();
                let keep = (emptied && i == 0).then(|| format!("{indent}pass\n"));
                cuts.push((start, end, keep));
            }
        }
        cuts.sort_by_key(|c| c.0);
        let mut out = String::with_capacity(source.len());
        let mut pos = 0;
        for (start, end, keep) in cuts {
            if start < pos {
                continue;
            }
            out.push_str(&source[pos..start]);
            if let Some(k) = keep {
                out.push_str(&k);
            }
            pos = end;
        }
        out.push_str(&source[pos..]);
        out
    })
}

fn line_start(s: &str, at: usize) -> usize {
    s[..at].rfind('\n').map(|i| i + 1).unwrap_or(0)
}

fn line_end(s: &str, at: usize) -> usize {
    s[at..].find('\n').map(|i| at + i + 1).unwrap_or(s.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "import unittest\n\nclass TestCases(unittest.TestCase):\n    def test_a(self):\n        self.assertEqual(add(1, 2), 3)\n";

    fn reason(tests: &str) -> Option<&'static str> {
        check(tests, "add").err().map(|f| f.reason)
    }

    #[test]
    fn honest_modules_pass() {
        assert_eq!(reason(GOOD), None);
        let flows = [
            // through a variable, a loop, a container and setUp
            "class T(unittest.TestCase):\n    def test_a(self):\n        r = add(1, 2)\n        x = r * 2\n        self.assertEqual(x, 6)\n",
            "class T(unittest.TestCase):\n    def test_a(self):\n        out = []\n        for a in range(3):\n            out.append(add(a, 1))\n        self.assertEqual(out, [1, 2, 3])\n",
            "class T(unittest.TestCase):\n    def setUp(self):\n        self.result = add(1, 2)\n    def test_a(self):\n        self.assertEqual(self.result, 3)\n",
            "class T(unittest.TestCase):\n    def test_a(self):\n        with self.assertRaises(TypeError):\n            add(None, 1)\n",
            "class T(unittest.TestCase):\n    def test_a(self):\n        self.assertRaises(TypeError, add, None, 1)\n",
            "class T(unittest.TestCase):\n    def _run(self, a):\n        return add(a, a)\n    def test_a(self):\n        v = self._run(2)\n        assert v == 4\n",
            "class T(unittest.TestCase):\n    def test_a(self):\n        for a, b, want in [(1, 2, 3)]:\n            with self.subTest(a=a):\n                np.testing.assert_allclose(add(a, b), want)\n",
            // Side effects: a file written, a mock called, no exception.
            "class T(unittest.TestCase):\n    def test_a(self):\n        add(self.path, 2)\n        self.assertTrue(os.path.exists(self.path))\n",
            "class T(unittest.TestCase):\n    @patch('matplotlib.pyplot.show')\n    def test_a(self, show):\n        add(1, 2)\n        show.assert_called_once()\n",
            "class T(unittest.TestCase):\n    def test_a(self):\n        try:\n            add(1, 2)\n        except Exception as e:\n            self.fail(f'raised {e}')\n",
            "class T(unittest.TestCase):\n    def setUp(self):\n        self.t = threading.Thread(target=add, args=(1, 2))\n        self.t.start()\n    def test_a(self):\n        response = client.recv()\n        self.assertIn('x', response)\n",
        ];
        for t in flows {
            assert_eq!(reason(t), None, "{t}");
        }
    }

    #[test]
    fn each_rule_fires() {
        let cases = [
            ("class T(unittest.TestCase):\n    def test_a(self):\n        self.assertEqual(1 + 2, 3)\n", "no_call"),
            ("def add(a, b):\n    return a + b\nclass T(unittest.TestCase):\n    def test_a(self):\n        self.assertEqual(add(1, 2), 3)\n", "defines_function"),
            ("add = lambda a, b: 3\nclass T(unittest.TestCase):\n    def test_a(self):\n        self.assertEqual(add(1, 2), 3)\n", "defines_function"),
            ("class T(unittest.TestCase):\n    def test_a(self):\n        global add\n        add = max\n        self.assertEqual(add(1, 2), 2)\n", "defines_function"),
            ("class T(unittest.TestCase):\n    @mock.patch('__main__.add', return_value=3)\n    def test_a(self, m):\n        self.assertEqual(add(1, 2), 3)\n", "mocks_function"),
            ("class T(unittest.TestCase):\n    def test_a(self):\n        with mock.patch.object(sys.modules[__name__], 'add'):\n            self.assertIsNotNone(add(1, 2))\n", "mocks_function"),
            ("class T(unittest.TestCase):\n    def test_a(self):\n        add(1, 2)\n        self.assertTrue(True)\n", "assertions_unrelated"),
            ("class T(unittest.TestCase):\n    def test_a(self):\n        add(1, 2)\n", "assertions_unrelated"),
            ("class T(unittest.TestCase):\n    def test_a(self):\n        self.assertTrue(callable(add))\n", "assertions_unrelated"),
        ];
        for (tests, want) in cases {
            assert_eq!(reason(tests), Some(want), "{tests}");
        }
    }

    #[test]
    fn any_test_class_name_is_renamed() {
        let src = "import unittest\n\nclass TestAdd(unittest.TestCase):\n    def test_a(self):\n        super(TestAdd, self).setUp()\n        self.assertEqual(add(1, 2), 3)\n\nif __name__ == '__main__':\n    unittest.main()\n";
        let parsed = crate::python::parse_module(src, ruff_python_ast::PythonVersion::PY311);
        assert!(defines_test_class(parsed.suite()));
        let (renamed, old) = rename_test_class(src).unwrap();
        assert_eq!(old, "TestAdd");
        assert!(renamed.contains("class TestCases(unittest.TestCase)") && renamed.contains("super(TestCases, self)"), "{renamed}");
        assert_eq!(rename_test_class(GOOD), None);
        assert_eq!(rename_test_class("class Helper:\n    def test_x(self):\n        pass\n"), None);
    }

    #[test]
    fn held_out_split_is_seeded_and_leaves_visible_tests() {
        let names: BTreeSet<String> = (0..6).map(|i| format!("TestCases.test_{i}")).collect();
        let a = choose_held_out(&names, 1.0 / 3.0, "rec-1", 0);
        assert_eq!(a.len(), 2);
        assert_eq!(a, choose_held_out(&names, 1.0 / 3.0, "rec-1", 0));
        assert_eq!(choose_held_out(&names, 0.01, "rec-1", 0).len(), 1, "at least one");
        assert_eq!(choose_held_out(&names, 1.0, "rec-1", 0).len(), 5, "at least one stays visible");
        let one: BTreeSet<String> = ["TestCases.test_a".to_string()].into();
        assert!(choose_held_out(&one, 0.5, "k", 0).is_empty());
        let src = "import unittest\n\nclass TestCases(unittest.TestCase):\n    def test_a(self):\n        self.assertEqual(add(1, 2), 3)\n\n    @unittest.skipIf(False, 'x')\n    def test_b(self):\n        self.assertEqual(add(2, 2), 4)\n";
        let visible = without_tests(src, &["TestCases.test_b".into()]);
        assert!(visible.contains("test_a") && !visible.contains("test_b") && !visible.contains("skipIf"), "{visible}");
        let none = without_tests(src, &["TestCases.test_a".into(), "TestCases.test_b".into()]);
        assert!(crate::python::parse_module(&none, ruff_python_ast::PythonVersion::PY311).errors().is_empty(), "{none}");
    }
}
