//! Count the tests a unittest module defines, by parsing it (not by running it): the
//! harness's own count must match this one, so a module that hides or skips tests at run
//! time cannot pass.

use std::collections::{BTreeSet, HashMap};

use ruff_python_ast::{Expr, Stmt};

use crate::python::{max_bracket_depth, parse_module, MAX_BRACKET_DEPTH};

/// Number of `test*` methods over all `TestCase` subclasses defined at module level
/// (inherited methods counted per subclass, as unittest's loader does).
pub fn count_tests(source: &str) -> Result<usize, String> {
    if max_bracket_depth(source) > MAX_BRACKET_DEPTH {
        return Err("too many nested brackets".into());
    }
    let parsed = parse_module(source, ruff_python_ast::PythonVersion::PY314);
    if let Some(err) = parsed.errors().first() {
        return Err(format!("test module does not parse: {}", err.error));
    }
    struct Class {
        bases: Vec<String>,
        is_test_base: bool,
        methods: BTreeSet<String>,
    }
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
            is_test_base |= name.ends_with("TestCase");
            bases.push(name);
        }
        let methods = class
            .body
            .iter()
            .filter_map(|s| match s {
                Stmt::FunctionDef(f) if f.name.as_str().starts_with("test") => Some(f.name.to_string()),
                _ => None,
            })
            .collect();
        let name = class.name.to_string();
        order.push(name.clone());
        classes.insert(name, Class { bases, is_test_base, methods });
    }
    // Resolve inheritance within the module (a later definition of a name replaces an
    // earlier one, as at run time).
    fn resolve(name: &str, classes: &HashMap<String, Class>, depth: usize) -> (bool, BTreeSet<String>) {
        let Some(c) = classes.get(name) else { return (false, BTreeSet::new()) };
        let mut is_test = c.is_test_base;
        let mut methods = c.methods.clone();
        if depth < 50 {
            for base in &c.bases {
                if base != name {
                    let (t, m) = resolve(base, classes, depth + 1);
                    is_test |= t;
                    methods.extend(m);
                }
            }
        }
        (is_test, methods)
    }
    order.sort();
    order.dedup();
    Ok(order.iter().map(|name| resolve(name, &classes, 0)).filter(|(is_test, _)| *is_test).map(|(_, methods)| methods.len()).sum())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_methods_of_testcase_subclasses() {
        let src = "import unittest\nclass TestCases(unittest.TestCase):\n    def setUp(self): pass\n    def test_a(self): pass\n    def test_b(self): pass\n    def helper(self): pass\n";
        assert_eq!(count_tests(src), Ok(2));
    }

    #[test]
    fn inheritance_and_mixins() {
        let src = "from unittest import TestCase\nclass Mixin:\n    def test_m(self): pass\nclass Base(TestCase):\n    def test_a(self): pass\nclass Child(Mixin, Base):\n    def test_c(self): pass\nclass NotATest:\n    def test_x(self): pass\n";
        // Base: test_a; Child: test_a, test_c, test_m.
        assert_eq!(count_tests(src), Ok(4));
    }

    #[test]
    fn zero_and_errors() {
        assert_eq!(count_tests("import unittest\nclass T(unittest.TestCase):\n    pass\n"), Ok(0));
        assert!(count_tests("class T(:\n").is_err());
        assert!(count_tests(&format!("x = {}1{}", "[".repeat(300), "]".repeat(300))).is_err());
    }
}
