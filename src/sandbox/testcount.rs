//! Which tests a unittest module defines, read by parsing it (not by running it): the tests
//! the harness reports must be exactly these, so a module that hides, adds or renames tests
//! at run time cannot pass.
//!
//! A method defined unconditionally in a test class is *required* (it must run); one
//! defined under `if`/`try` in the class body (`if sys.version_info >= (3, 11): def
//! test_x`) or bound by assignment (`test_b = test_a`) is *optional*: it may run, and a
//! name outside both sets may not.

use std::collections::{BTreeSet, HashMap, HashSet};

use ruff_python_ast::{Expr, Stmt};

use crate::python::{on_parse_stack, parse_untrusted};

/// The tests of a module, as `Class.method` names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TestPlan {
    pub required: BTreeSet<String>,
    pub optional: BTreeSet<String>,
}

impl TestPlan {
    /// A plan with exactly these tests (all required).
    pub fn exactly(names: impl IntoIterator<Item = String>) -> TestPlan {
        TestPlan { required: names.into_iter().collect(), optional: BTreeSet::new() }
    }

    /// Tests that can run at most.
    pub fn possible(&self) -> usize {
        self.required.len() + self.optional.len()
    }

    /// Check the tests that ran against the plan: every required one, and nothing
    /// undeclared. `Ok(n)`: the number of declared tests that ran.
    pub fn accepts<'a>(&self, ran: impl IntoIterator<Item = &'a str>) -> Result<usize, String> {
        let ran: BTreeSet<&str> = ran.into_iter().collect();
        let missing: Vec<&str> = self.required.iter().map(String::as_str).filter(|t| !ran.contains(t)).collect();
        let unknown: Vec<&str> = ran.iter().copied().filter(|t| !self.required.contains(*t) && !self.optional.contains(*t)).collect();
        if missing.is_empty() && unknown.is_empty() {
            return Ok(ran.len());
        }
        let list = |v: &[&str]| v.iter().take(5).copied().collect::<Vec<_>>().join(", ");
        let mut parts = Vec::new();
        if !missing.is_empty() {
            parts.push(format!("{} defined test(s) did not run ({})", missing.len(), list(&missing)));
        }
        if !unknown.is_empty() {
            parts.push(format!("{} test(s) ran that the module does not define ({})", unknown.len(), list(&unknown)));
        }
        Err(parts.join("; "))
    }
}

/// Number of tests the module can run (required and optional), for "does it have tests?".
pub fn count_tests(source: &str) -> Result<usize, String> {
    test_plan(source).map(|p| p.possible())
}

/// The module's tests: `test*` methods over all `TestCase` subclasses defined at module
/// level (inherited methods counted per subclass, as unittest's loader does).
pub fn test_plan(source: &str) -> Result<TestPlan, String> {
    on_parse_stack(|| plan_here(source))
}

struct Class {
    bases: Vec<String>,
    is_test_base: bool,
    required: BTreeSet<String>,
    optional: BTreeSet<String>,
}

fn plan_here(source: &str) -> Result<TestPlan, String> {
    let parsed = parse_untrusted(source, ruff_python_ast::PythonVersion::PY314).map_err(|why| format!("test module not parsed: {why}"))?;
    if let Some(err) = parsed.errors().first() {
        return Err(format!("test module does not parse: {}", err.error));
    }
    let aliases = test_case_aliases(parsed.suite());
    let mut classes: HashMap<String, Class> = HashMap::new();
    let mut order = Vec::new();
    for stmt in parsed.suite() {
        let Stmt::ClassDef(class) = stmt else { continue };
        let mut bases = Vec::new();
        let mut is_test_base = false;
        for base in class.bases() {
            let name = match base {
                Expr::Name(n) => n.id.to_string(),
                Expr::Attribute(a) => a.attr.to_string(),
                _ => continue,
            };
            is_test_base |= name.ends_with("TestCase") || aliases.contains(&name);
            bases.push(name);
        }
        let (mut required, mut optional) = (BTreeSet::new(), BTreeSet::new());
        collect_methods(&class.body, true, &mut required, &mut optional);
        let name = class.name.to_string();
        order.push(name.clone());
        classes.insert(name, Class { bases, is_test_base, required, optional });
    }
    order.sort();
    order.dedup();
    let mut plan = TestPlan::default();
    for name in &order {
        let (is_test, required, optional) = resolve(name, &classes, 0);
        if is_test {
            plan.required.extend(required.iter().map(|m| format!("{name}.{m}")));
            plan.optional.extend(optional.difference(&required).map(|m| format!("{name}.{m}")));
        }
    }
    Ok(plan)
}

/// `test*` methods of a class body: unconditional `def`s are required; those under
/// `if`/`else`/`try` (any branch) and `test* = ...` bindings are optional.
fn collect_methods(body: &[Stmt], unconditional: bool, required: &mut BTreeSet<String>, optional: &mut BTreeSet<String>) {
    fn add(name: &str, sure: bool, required: &mut BTreeSet<String>, optional: &mut BTreeSet<String>) {
        if name.starts_with("test") {
            if sure {
                required.insert(name.to_string())
            } else {
                optional.insert(name.to_string())
            };
        }
    }
    for stmt in body {
        match stmt {
            Stmt::FunctionDef(f) => add(f.name.as_str(), unconditional, required, optional),
            Stmt::Assign(a) => {
                for t in &a.targets {
                    if let Expr::Name(n) = t {
                        add(n.id.as_str(), false, required, optional);
                    }
                }
            }
            Stmt::If(i) => {
                collect_methods(&i.body, false, required, optional);
                for clause in &i.elif_else_clauses {
                    collect_methods(&clause.body, false, required, optional);
                }
            }
            Stmt::Try(t) => {
                collect_methods(&t.body, false, required, optional);
                for h in &t.handlers {
                    let ruff_python_ast::ExceptHandler::ExceptHandler(h) = h;
                    collect_methods(&h.body, false, required, optional);
                }
                collect_methods(&t.orelse, false, required, optional);
                collect_methods(&t.finalbody, false, required, optional);
            }
            _ => {}
        }
    }
}

/// Names bound at module level to a `TestCase` class: `from unittest import TestCase as
/// TC`, `TC = unittest.TestCase`.
fn test_case_aliases(suite: &[Stmt]) -> HashSet<String> {
    let mut aliases = HashSet::new();
    for stmt in suite {
        match stmt {
            Stmt::ImportFrom(i) if i.module.as_ref().is_some_and(|m| m.as_str() == "unittest" || m.as_str().starts_with("unittest.")) => {
                for alias in &i.names {
                    if alias.name.as_str().ends_with("TestCase") {
                        aliases.insert(alias.asname.as_ref().unwrap_or(&alias.name).to_string());
                    }
                }
            }
            Stmt::Assign(a) => {
                let is_test_case = match a.value.as_ref() {
                    Expr::Attribute(x) => x.attr.as_str().ends_with("TestCase"),
                    Expr::Name(n) => n.id.as_str().ends_with("TestCase"),
                    _ => false,
                };
                if is_test_case {
                    aliases.extend(a.targets.iter().filter_map(|t| t.as_name_expr()).map(|n| n.id.to_string()));
                }
            }
            _ => {}
        }
    }
    aliases
}

/// A class's test status and methods, inherited ones included (a later definition of a
/// name replaces an earlier one, as at run time).
fn resolve(name: &str, classes: &HashMap<String, Class>, depth: usize) -> (bool, BTreeSet<String>, BTreeSet<String>) {
    let Some(c) = classes.get(name) else { return (false, BTreeSet::new(), BTreeSet::new()) };
    let (mut is_test, mut required, mut optional) = (c.is_test_base, c.required.clone(), c.optional.clone());
    if depth < 50 {
        for base in c.bases.iter().filter(|b| *b != name) {
            let (t, r, o) = resolve(base, classes, depth + 1);
            is_test |= t;
            required.extend(r);
            optional.extend(o);
        }
    }
    (is_test, required, optional)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_methods_of_testcase_subclasses() {
        let src = "import unittest\nclass TestCases(unittest.TestCase):\n    def setUp(self): pass\n    def test_a(self): pass\n    def test_b(self): pass\n    def helper(self): pass\n";
        assert_eq!(count_tests(src), Ok(2));
        assert_eq!(test_plan(src).unwrap(), TestPlan::exactly(["TestCases.test_a".to_string(), "TestCases.test_b".to_string()]));
    }

    #[test]
    fn inheritance_and_mixins() {
        let src = "from unittest import TestCase\nclass Mixin:\n    def test_m(self): pass\nclass Base(TestCase):\n    def test_a(self): pass\nclass Child(Mixin, Base):\n    def test_c(self): pass\nclass NotATest:\n    def test_x(self): pass\n";
        // Base: test_a; Child: test_a, test_c, test_m.
        assert_eq!(count_tests(src), Ok(4));
    }

    #[test]
    fn aliases_of_test_case_are_test_bases() {
        let src = "from unittest import TestCase as TC\nimport unittest as ut\nBase = ut.TestCase\nclass A(TC):\n    def test_a(self): pass\nclass B(Base):\n    def test_b(self): pass\nclass C(ut.TestCase):\n    def test_c(self): pass\n";
        assert_eq!(count_tests(src), Ok(3));
    }

    #[test]
    fn conditional_methods_are_optional() {
        let src = "import sys, unittest\nclass T(unittest.TestCase):\n    def test_a(self): pass\n    if sys.version_info >= (3, 11):\n        def test_new(self): pass\n    else:\n        def test_old(self): pass\n    test_alias = test_a\n";
        let plan = test_plan(src).unwrap();
        assert_eq!(plan.required.len(), 1);
        assert_eq!(plan.optional.len(), 3);
        assert_eq!(plan.accepts(["T.test_a", "T.test_new", "T.test_alias"]), Ok(3));
        assert!(plan.accepts(["T.test_new"]).unwrap_err().contains("did not run (T.test_a)"));
        assert!(plan.accepts(["T.test_a", "T.test_sneaky"]).unwrap_err().contains("does not define (T.test_sneaky)"));
    }

    #[test]
    fn zero_and_errors() {
        assert_eq!(count_tests("import unittest\nclass T(unittest.TestCase):\n    pass\n"), Ok(0));
        assert!(count_tests("class T(:\n").is_err());
        assert!(count_tests(&format!("x = {}1{}", "[".repeat(300), "]".repeat(300))).is_err());
    }

    /// A module built to overflow a parser's stack is a typed error or a count, never an
    /// abort — also when counted from a thread with a small stack.
    #[test]
    fn pathological_modules_never_abort() {
        let sum = format!("import unittest\nx = {}1\nclass T(unittest.TestCase):\n    def test_a(self): pass\n", "1+".repeat(60_000));
        let power = format!("y = {}2\n", "2**".repeat(100_000));
        let attrs = format!("z = a{}\n", ".b".repeat(100_000));
        let huge = "x = 1\n".repeat(1_000_000);
        let results = std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(move || (count_tests(&sum), count_tests(&power), count_tests(&attrs), count_tests(&huge)))
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(results.0, Ok(1));
        assert_eq!(results.1, Ok(0));
        assert_eq!(results.2, Ok(0));
        assert!(results.3.unwrap_err().contains("bytes of source"));
    }
}
