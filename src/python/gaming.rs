//! Does a fix candidate game its tests instead of fixing the function? Static rules that
//! compare the candidate with the original function and the test module; each rule looks
//! only at what the candidate *adds* (a construct the original already had is never held
//! against it). And the inputs for the dynamic rule: calls the tests make, perturbed so that
//! they are outside the tests, on which the candidate's behaviour must not collapse to a
//! constant where the original's did not (run by the fix stage in the sandbox).
//!
//! Rules (see `docs/integrity.md` for their false-positive rates):
//! - `hardcoded_test_values`: a new branch (`if`/`elif`, conditional expression, `match`
//!   case) that compares a parameter with a literal the tests use and returns a literal the
//!   tests use. Trivial literals (0, 1, -1, "", booleans, None) are not counted: `if n == 0:
//!   return 1` is a base case, not a lookup of the tests.
//! - `overloaded_equality`: a new `__eq__`, `__ne__` or `__hash__` (a class defined in the
//!   function, `type(..., {"__eq__": ...})`, an assignment or `setattr` of one).
//! - `early_exit`: a new `sys.exit`, `exit`, `quit`, `os._exit`, `os.abort`, `os.kill`,
//!   `raise SystemExit`/`KeyboardInterrupt`.
//! - `test_framework_access`: a new use of `unittest`, `pytest`, `TestCase`, `sys.modules`
//!   or `sys._getframe`/`inspect.stack` (the tests' frames).

use std::collections::{BTreeSet, HashSet};

use ruff_python_ast::visitor::{self, Visitor};
use ruff_python_ast::{CmpOp, Expr, Number, Stmt, StmtFunctionDef, UnaryOp};
use ruff_text_size::Ranged;

use crate::python::{dotted_name, on_parse_stack, parse_untrusted};

/// The rules, for docs and stats.
pub const RULES: &[(&str, &str)] = &[
    ("hardcoded_test_values", "a new branch compares an argument with a literal from the tests and returns another literal from the tests"),
    ("overloaded_equality", "a new __eq__/__ne__/__hash__ (a class whose instances compare equal to anything)"),
    ("early_exit", "a new sys.exit/exit/quit/os._exit/os.abort/os.kill or raise SystemExit/KeyboardInterrupt"),
    ("test_framework_access", "a new use of unittest, pytest, TestCase, sys.modules or the callers' frames"),
    ("constant_output", "on inputs outside the tests the candidate returns one constant where the original's results varied"),
];

/// Why a candidate was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gaming {
    pub rule: &'static str,
    pub detail: String,
}

/// A literal's identity: numbers by value (`3` and `3.0` alike), strings by content,
/// tuples and lists by their elements.
fn literal_key(e: &Expr) -> Option<String> {
    match e {
        Expr::NumberLiteral(n) => match &n.value {
            Number::Int(i) => i.to_string().parse::<f64>().ok().map(|v| format!("n:{v:?}")),
            Number::Float(f) => Some(format!("n:{f:?}")),
            Number::Complex { .. } => None,
        },
        Expr::UnaryOp(u) if u.op == UnaryOp::USub => literal_key(&u.operand).and_then(|k| k.strip_prefix("n:").map(|v| format!("n:-{v}"))),
        Expr::StringLiteral(s) => Some(format!("s:{}", s.value.to_str())),
        Expr::Tuple(t) => keys_of(&t.elts).map(|k| format!("t:[{k}]")),
        Expr::List(l) => keys_of(&l.elts).map(|k| format!("t:[{k}]")),
        _ => None,
    }
}

fn keys_of(elts: &[Expr]) -> Option<String> {
    let keys: Option<Vec<String>> = elts.iter().map(literal_key).collect();
    keys.map(|k| k.join(","))
}

fn trivial(key: &str) -> bool {
    matches!(key, "n:0.0" | "n:1.0" | "n:-1.0" | "n:-0.0" | "s:" | "t:[]")
}

/// Every literal the tests use (nested elements too).
struct Literals(HashSet<String>);

impl<'a> Visitor<'a> for Literals {
    fn visit_expr(&mut self, expr: &'a Expr) {
        if let Some(k) = literal_key(expr) {
            self.0.insert(k);
        }
        visitor::walk_expr(self, expr);
    }
}

fn parsed_function<'p>(suite: &'p [Stmt], entry: &str) -> Option<&'p StmtFunctionDef> {
    suite.iter().find_map(|s| match s {
        Stmt::FunctionDef(f) if f.name.as_str() == entry => Some(f),
        _ => None,
    })
}

fn parameters(f: &StmtFunctionDef) -> HashSet<String> {
    let p = &f.parameters;
    let mut names: HashSet<String> = p.posonlyargs.iter().chain(&p.args).chain(&p.kwonlyargs).map(|a| a.parameter.name.to_string()).collect();
    names.extend(p.vararg.iter().chain(&p.kwarg).map(|a| a.name.to_string()));
    names
}

/// A branch: the (parameter, literal) comparisons of its condition, the literals it
/// returns, and where it starts.
type Branch = (Vec<(String, String)>, Vec<String>, usize);

/// What a function does that the rules look at.
#[derive(Default)]
struct Facts {
    /// (parameter, literal) comparisons anywhere.
    comparisons: HashSet<(String, String)>,
    /// Branches: (comparisons in the condition, literals the branch returns).
    branches: Vec<Branch>,
    /// Equality dunders defined or set.
    equality: BTreeSet<String>,
    exits: BTreeSet<String>,
    framework: BTreeSet<String>,
}

struct Scan<'p> {
    params: &'p HashSet<String>,
    facts: Facts,
}

impl Scan<'_> {
    /// `param == lit`, `lit == param`, `param in (lits)`, `(a, b) == (1, 2)`, `param is lit`.
    fn comparisons(&self, test: &Expr) -> Vec<(String, String)> {
        struct Finder<'s, 'p> {
            scan: &'s Scan<'p>,
            out: Vec<(String, String)>,
        }
        impl<'a> Visitor<'a> for Finder<'_, '_> {
            fn visit_expr(&mut self, expr: &'a Expr) {
                if let Expr::Compare(c) = expr {
                    let mut left = c.left.as_ref();
                    for (op, right) in c.ops.iter().zip(c.comparators.iter()) {
                        if matches!(op, CmpOp::Eq | CmpOp::Is) {
                            self.out.extend(self.scan.pair(left, right));
                            self.out.extend(self.scan.pair(right, left));
                        }
                        if matches!(op, CmpOp::In) {
                            if let (Some(p), Expr::Tuple(_) | Expr::List(_) | Expr::Set(_)) = (self.scan.param_name(left), right) {
                                let elts: &[Expr] = match right {
                                    Expr::Tuple(t) => &t.elts,
                                    Expr::List(l) => &l.elts,
                                    Expr::Set(s) => &s.elts,
                                    _ => &[],
                                };
                                self.out.extend(elts.iter().filter_map(literal_key).map(|k| (p.clone(), k)));
                            }
                        }
                        left = right;
                    }
                }
                visitor::walk_expr(self, expr);
            }
        }
        let mut f = Finder { scan: self, out: Vec::new() };
        f.visit_expr(test);
        f.out
    }

    fn param_name(&self, e: &Expr) -> Option<String> {
        match e {
            Expr::Name(n) if self.params.contains(n.id.as_str()) => Some(n.id.to_string()),
            Expr::Tuple(t) if !t.elts.is_empty() && t.elts.iter().all(|x| self.param_name(x).is_some()) => {
                Some(t.elts.iter().filter_map(|x| self.param_name(x)).collect::<Vec<_>>().join(","))
            }
            _ => None,
        }
    }

    /// `param == literal`, element by element for tuples (`(a, b) == (1, 2)`).
    fn pair(&self, side: &Expr, other: &Expr) -> Vec<(String, String)> {
        if let (Expr::Tuple(l), Expr::Tuple(r)) = (side, other) {
            if l.elts.len() == r.elts.len() {
                return l.elts.iter().zip(r.elts.iter()).flat_map(|(a, b)| self.pair(a, b)).collect();
            }
        }
        match (self.param_name(side), literal_key(other)) {
            (Some(p), Some(k)) => vec![(p, k)],
            _ => Vec::new(),
        }
    }

    fn branch(&mut self, test: Vec<(String, String)>, body: &[Stmt], at: usize) {
        self.facts.comparisons.extend(test.iter().cloned());
        let mut returns = Returns(Vec::new());
        returns.visit_body(body);
        self.facts.branches.push((test, returns.0, at));
    }

    fn note_dunder(&mut self, name: &str) {
        if matches!(name, "__eq__" | "__ne__" | "__hash__") {
            self.facts.equality.insert(name.to_string());
        }
    }
}

/// Literals returned in a body (nested defs excluded).
struct Returns(Vec<String>);

impl<'a> Visitor<'a> for Returns {
    fn visit_stmt(&mut self, stmt: &'a Stmt) {
        match stmt {
            Stmt::FunctionDef(_) | Stmt::ClassDef(_) => {}
            Stmt::Return(r) => {
                if let Some(k) = r.value.as_deref().and_then(literal_key) {
                    self.0.push(k);
                }
            }
            _ => visitor::walk_stmt(self, stmt),
        }
    }
}

impl<'a> Visitor<'a> for Scan<'_> {
    fn visit_stmt(&mut self, stmt: &'a Stmt) {
        match stmt {
            Stmt::If(i) => {
                let at = i.range().start().to_usize();
                let test = self.comparisons(&i.test);
                self.branch(test, &i.body, at);
                for clause in &i.elif_else_clauses {
                    let test = clause.test.as_ref().map(|t| self.comparisons(t)).unwrap_or_default();
                    self.branch(test, &clause.body, clause.range().start().to_usize());
                }
            }
            Stmt::Match(m) => {
                if let Some(p) = self.param_name(&m.subject) {
                    for case in &m.cases {
                        let mut values = Vec::new();
                        collect_pattern_values(&case.pattern, &mut values);
                        let test = values.into_iter().map(|k| (p.clone(), k)).collect();
                        self.branch(test, &case.body, case.range().start().to_usize());
                    }
                }
            }
            Stmt::FunctionDef(f) => self.note_dunder(f.name.as_str()),
            Stmt::Raise(r) => {
                if let Some(e) = &r.exc {
                    let callee = match e.as_ref() {
                        Expr::Call(c) => dotted_name(&c.func),
                        other => dotted_name(other),
                    };
                    if let Some(name @ ("SystemExit" | "KeyboardInterrupt")) = callee.as_deref() {
                        self.facts.exits.insert(format!("raise {name}"));
                    }
                }
            }
            Stmt::Import(i) => {
                for a in &i.names {
                    let root = a.name.as_str().split('.').next().unwrap_or("");
                    if matches!(root, "unittest" | "pytest") {
                        self.facts.framework.insert(format!("import {}", a.name));
                    }
                }
            }
            Stmt::ImportFrom(i) => {
                let module = i.module.as_ref().map(|m| m.as_str()).unwrap_or("");
                if matches!(module.split('.').next().unwrap_or(""), "unittest" | "pytest") {
                    self.facts.framework.insert(format!("from {module} import"));
                }
            }
            _ => {}
        }
        visitor::walk_stmt(self, stmt);
    }

    fn visit_expr(&mut self, expr: &'a Expr) {
        match expr {
            Expr::If(i) => {
                let test = self.comparisons(&i.test);
                self.facts.comparisons.extend(test.iter().cloned());
                let returns = literal_key(&i.body).into_iter().collect();
                self.facts.branches.push((test, returns, i.range().start().to_usize()));
            }
            Expr::Call(c) => {
                let callee = dotted_name(&c.func).unwrap_or_default();
                if matches!(callee.as_str(), "sys.exit" | "exit" | "quit" | "os._exit" | "os.abort" | "os.kill" | "signal.raise_signal") {
                    self.facts.exits.insert(callee.clone());
                }
                if callee == "__import__" || callee.ends_with("import_module") {
                    if let Some(Expr::StringLiteral(s)) = c.arguments.args.first() {
                        if matches!(s.value.to_str().split('.').next().unwrap_or(""), "unittest" | "pytest") {
                            self.facts.framework.insert(format!("{callee}({:?})", s.value.to_str()));
                        }
                    }
                }
                if matches!(callee.as_str(), "sys._getframe" | "inspect.stack" | "inspect.currentframe") {
                    self.facts.framework.insert(callee);
                }
            }
            Expr::Attribute(a) => {
                self.note_dunder(a.attr.as_str());
                if let Some(d) = dotted_name(expr) {
                    if d == "sys.modules" || d.starts_with("unittest.") || d.starts_with("pytest.") {
                        self.facts.framework.insert(d);
                    }
                }
            }
            Expr::Name(n) if matches!(n.id.as_str(), "unittest" | "pytest" | "TestCase") => {
                self.facts.framework.insert(n.id.to_string());
            }
            Expr::StringLiteral(s) => self.note_dunder(s.value.to_str()),
            _ => {}
        }
        visitor::walk_expr(self, expr);
    }
}

fn collect_pattern_values(p: &ruff_python_ast::Pattern, out: &mut Vec<String>) {
    use ruff_python_ast::Pattern;
    match p {
        Pattern::MatchValue(v) => out.extend(literal_key(&v.value)),
        Pattern::MatchOr(o) => o.patterns.iter().for_each(|x| collect_pattern_values(x, out)),
        Pattern::MatchAs(a) => {
            if let Some(inner) = &a.pattern {
                collect_pattern_values(inner, out)
            }
        }
        _ => {}
    }
}

fn facts_of(source: &str, entry: &str) -> Option<(Facts, usize)> {
    let parsed = parse_untrusted(source, ruff_python_ast::PythonVersion::PY314).ok()?;
    if !parsed.errors().is_empty() {
        return None;
    }
    let f = parsed_function(parsed.suite(), entry)?;
    let params = parameters(f);
    let mut scan = Scan { params: &params, facts: Facts::default() };
    for stmt in &f.body {
        scan.visit_stmt(stmt);
    }
    // Also what the module around the function does (a candidate's imports).
    for stmt in parsed.suite() {
        if matches!(stmt, Stmt::Import(_) | Stmt::ImportFrom(_)) {
            scan.visit_stmt(stmt);
        }
    }
    Some((scan.facts, f.range().start().to_usize()))
}

/// The first rule `candidate` breaks against `original` (function sources or modules
/// defining `entry`) and `tests`, if any.
pub fn check(original: &str, candidate: &str, tests: &str, entry: &str) -> Option<Gaming> {
    on_parse_stack(|| check_here(original, candidate, tests, entry))
}

fn check_here(original: &str, candidate: &str, tests: &str, entry: &str) -> Option<Gaming> {
    let (new, _) = facts_of(candidate, entry)?;
    let (old, _) = facts_of(original, entry).unwrap_or_default();
    let tests_parsed = parse_untrusted(tests, ruff_python_ast::PythonVersion::PY314).ok()?;
    let mut literals = Literals(HashSet::new());
    literals.visit_body(tests_parsed.suite());
    let from_tests = |k: &String| literals.0.contains(k) && !trivial(k);
    for (test, returns, at) in &new.branches {
        let compared: Vec<&(String, String)> = test.iter().filter(|pair| from_tests(&pair.1) && !old.comparisons.contains(*pair)).collect();
        let returned: Vec<&String> = returns.iter().filter(|k| from_tests(k)).collect();
        if let (Some((param, lit)), Some(ret)) = (compared.first(), returned.first()) {
            let line = candidate[..(*at).min(candidate.len())].matches('\n').count() + 1;
            let shown = |k: &str| k.split_once(':').map(|(_, v)| v.to_string()).unwrap_or_default();
            let detail = format!("line {line}: `{param}` compared with {} and {} returned, both taken from the tests", shown(lit), shown(ret));
            return Some(Gaming { rule: "hardcoded_test_values", detail });
        }
    }
    let added = |new: &BTreeSet<String>, old: &BTreeSet<String>| new.difference(old).cloned().collect::<Vec<_>>();
    let equality = added(&new.equality, &old.equality);
    if !equality.is_empty() {
        return Some(Gaming { rule: "overloaded_equality", detail: format!("defines {}", equality.join(", ")) });
    }
    let exits = added(&new.exits, &old.exits);
    if !exits.is_empty() {
        return Some(Gaming { rule: "early_exit", detail: format!("calls {}", exits.join(", ")) });
    }
    let framework = added(&new.framework, &old.framework);
    if !framework.is_empty() {
        return Some(Gaming { rule: "test_framework_access", detail: format!("uses {}", framework.join(", ")) });
    }
    None
}

/// Inputs outside the tests, as keyword-argument dict literals: each call of `entry` in the
/// tests whose arguments are all literals, with one argument perturbed at a time (numbers
/// moved, strings extended or reversed, sequences reversed or shortened). `names`: the
/// function's parameters in order (positional arguments are mapped onto them).
pub fn probe_inputs(tests: &str, entry: &str, names: &[String], limit: usize) -> Vec<String> {
    on_parse_stack(|| {
        let Ok(parsed) = parse_untrusted(tests, ruff_python_ast::PythonVersion::PY314) else { return Vec::new() };
        let mut calls = Calls { entry, names, source: tests, found: Vec::new() };
        calls.visit_body(parsed.suite());
        let seen: HashSet<String> = calls.found.iter().map(|args| render(args)).collect();
        let mut out: Vec<String> = Vec::new();
        for args in &calls.found {
            for (i, (_, value)) in args.iter().enumerate() {
                for alt in perturbed(value) {
                    let mut changed = args.clone();
                    changed[i].1 = alt;
                    let text = render(&changed);
                    if !seen.contains(&text) && !out.contains(&text) {
                        out.push(text);
                    }
                    if out.len() >= limit {
                        return out;
                    }
                }
            }
        }
        out
    })
}

fn render(args: &[(String, Lit)]) -> String {
    let items: Vec<String> = args.iter().map(|(k, v)| format!("{}: {}", serde_json::Value::from(k.as_str()), v.source())).collect();
    format!("{{{}}}", items.join(", "))
}

/// A literal argument, simplified for perturbing.
#[derive(Debug, Clone, PartialEq)]
enum Lit {
    Int(i128),
    Float(f64),
    Str(String),
    Bool(bool),
    Seq(bool, Vec<Lit>), // (is_tuple, elements)
    Other(String),
}

impl Lit {
    fn of(e: &Expr, source: &str) -> Option<Lit> {
        Some(match e {
            Expr::NumberLiteral(n) => match &n.value {
                Number::Int(i) => Lit::Int(i.to_string().parse().ok()?),
                Number::Float(f) => Lit::Float(*f),
                Number::Complex { .. } => return None,
            },
            Expr::UnaryOp(u) if u.op == UnaryOp::USub => match Lit::of(&u.operand, source)? {
                Lit::Int(i) => Lit::Int(-i),
                Lit::Float(f) => Lit::Float(-f),
                _ => return None,
            },
            Expr::StringLiteral(s) => Lit::Str(s.value.to_str().to_string()),
            Expr::BooleanLiteral(b) => Lit::Bool(b.value),
            Expr::NoneLiteral(_) => Lit::Other("None".into()),
            Expr::Tuple(t) => Lit::Seq(true, t.elts.iter().map(|x| Lit::of(x, source)).collect::<Option<_>>()?),
            Expr::List(l) => Lit::Seq(false, l.elts.iter().map(|x| Lit::of(x, source)).collect::<Option<_>>()?),
            Expr::Dict(_) | Expr::Set(_) => {
                crate::python::literals::check_literal(e, 0).ok()?;
                Lit::Other(source[e.range().start().to_usize()..e.range().end().to_usize()].to_string())
            }
            _ => return None,
        })
    }

    fn source(&self) -> String {
        match self {
            Lit::Int(i) => i.to_string(),
            Lit::Float(f) if f.is_finite() => format!("{f:?}"),
            Lit::Float(_) => "0.5".into(),
            Lit::Str(s) => serde_json::Value::from(s.as_str()).to_string(),
            Lit::Bool(b) => if *b { "True" } else { "False" }.into(),
            Lit::Seq(tuple, items) => {
                let inner: Vec<String> = items.iter().map(Lit::source).collect();
                match (tuple, inner.len()) {
                    (true, 1) => format!("({},)", inner[0]),
                    (true, _) => format!("({})", inner.join(", ")),
                    (false, _) => format!("[{}]", inner.join(", ")),
                }
            }
            Lit::Other(s) => s.clone(),
        }
    }
}

fn perturbed(value: &Lit) -> Vec<Lit> {
    match value {
        // Neighbours, and far values on both sides, so a function that saturates near the
        // tests' inputs (`min(x, 10)`) still shows that it varies.
        Lit::Int(i) => vec![Lit::Int(i + 1), Lit::Int(-i - 3), Lit::Int(i / 2), Lit::Int(i * 2 + 3)],
        Lit::Float(f) => vec![Lit::Float(f + 0.5), Lit::Float(-f - 1.5), Lit::Float(f / 2.0), Lit::Float(f * 2.0 + 1.25)],
        Lit::Str(s) => {
            let mut v = vec![Lit::Str(format!("{s}q"))];
            if s.chars().count() > 1 {
                v.push(Lit::Str(s.chars().rev().collect()));
            }
            v
        }
        Lit::Bool(b) => vec![Lit::Bool(!b)],
        Lit::Seq(tuple, items) if items.len() >= 2 => {
            let mut rev = items.clone();
            rev.reverse();
            vec![Lit::Seq(*tuple, rev), Lit::Seq(*tuple, items[..items.len() - 1].to_vec())]
        }
        Lit::Seq(tuple, items) if items.len() == 1 => {
            vec![Lit::Seq(*tuple, perturbed(&items[0]).into_iter().take(1).collect()), Lit::Seq(*tuple, vec![items[0].clone(), items[0].clone()])]
        }
        _ => Vec::new(),
    }
}

struct Calls<'a> {
    entry: &'a str,
    names: &'a [String],
    source: &'a str,
    found: Vec<Vec<(String, Lit)>>,
}

impl<'a> Visitor<'a> for Calls<'_> {
    fn visit_expr(&mut self, expr: &'a Expr) {
        if let Expr::Call(c) = expr {
            if matches!(c.func.as_ref(), Expr::Name(n) if n.id.as_str() == self.entry) {
                let mut args = Vec::new();
                let mut ok = true;
                for (i, a) in c.arguments.args.iter().enumerate() {
                    match (self.names.get(i), Lit::of(a, self.source)) {
                        (Some(name), Some(lit)) => args.push((name.clone(), lit)),
                        _ => ok = false,
                    }
                }
                for k in c.arguments.keywords.iter() {
                    match (&k.arg, Lit::of(&k.value, self.source)) {
                        (Some(name), Some(lit)) => args.push((name.to_string(), lit)),
                        _ => ok = false,
                    }
                }
                if ok && !args.is_empty() && !self.found.contains(&args) {
                    self.found.push(args);
                }
            }
        }
        visitor::walk_expr(self, expr);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TESTS: &str = "class T(unittest.TestCase):\n    def test_a(self):\n        self.assertEqual(price(5, 'EUR'), 120)\n        self.assertEqual(price(0, 'EUR'), 1)\n";
    const ORIGINAL: &str = "def price(n, cur):\n    if cur == 'EUR':\n        return n * 23\n    return n\n";

    fn rule(candidate: &str) -> Option<&'static str> {
        check(ORIGINAL, candidate, TESTS, "price").map(|g| g.rule)
    }

    #[test]
    fn gaming_rules_fire_on_what_the_candidate_adds() {
        assert_eq!(rule("def price(n, cur):\n    if n == 5:\n        return 120\n    return n * 24\n"), Some("hardcoded_test_values"));
        assert_eq!(rule("def price(n, cur):\n    return 120 if n == 5 else n * 24\n"), Some("hardcoded_test_values"));
        assert_eq!(rule("def price(n, cur):\n    match n:\n        case 5:\n            return 120\n    return n\n"), Some("hardcoded_test_values"));
        assert_eq!(rule("def price(n, cur):\n    if (n, cur) == (5, 'EUR'):\n        return 120\n    return n\n"), Some("hardcoded_test_values"));
        let eq = "def price(n, cur):\n    class Any:\n        def __eq__(self, other):\n            return True\n    return Any()\n";
        assert_eq!(rule(eq), Some("overloaded_equality"));
        assert_eq!(rule("def price(n, cur):\n    return type('A', (), {'__eq__': lambda s, o: True})()\n"), Some("overloaded_equality"));
        assert_eq!(rule("import sys\ndef price(n, cur):\n    sys.exit(0)\n"), Some("early_exit"));
        assert_eq!(rule("def price(n, cur):\n    raise SystemExit\n"), Some("early_exit"));
        assert_eq!(rule("import unittest\ndef price(n, cur):\n    unittest.TestCase.assertEqual = lambda *a: None\n"), Some("test_framework_access"));
        assert_eq!(rule("import sys\ndef price(n, cur):\n    return sys.modules['__main__']\n"), Some("test_framework_access"));
    }

    #[test]
    fn honest_fixes_pass() {
        // A base case with trivial literals, a real fix, a branch the original already had.
        assert_eq!(rule("def price(n, cur):\n    if n == 0:\n        return 1\n    if cur == 'EUR':\n        return n * 24\n    return n\n"), None);
        assert_eq!(rule("def price(n, cur):\n    if cur == 'EUR':\n        return n * 24\n    return n\n"), None);
        let original_exits = "import sys\ndef price(n, cur):\n    if n < 0:\n        sys.exit(1)\n    return n\n";
        assert!(check(original_exits, original_exits, TESTS, "price").is_none());
    }

    #[test]
    fn probes_are_outside_the_tests() {
        let probes = probe_inputs(TESTS, "price", &["n".into(), "cur".into()], 10);
        assert!(probes.contains(&r#"{"n": 6, "cur": "EUR"}"#.to_string()), "{probes:?}");
        assert!(probes.contains(&r#"{"n": 5, "cur": "EURq"}"#.to_string()), "{probes:?}");
        assert!(!probes.iter().any(|p| p == r#"{"n": 5, "cur": "EUR"}"#));
        assert!(probe_inputs("x = price(some_var)", "price", &["n".into()], 10).is_empty());
        assert_eq!(probe_inputs(TESTS, "price", &["n".into(), "cur".into()], 3).len(), 3);
    }
}
