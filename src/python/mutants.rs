//! Mutants of a function, from the ruff AST: the classic operators of mutation testing,
//! each a small text edit of the program at an exact byte range, so that the mutant keeps
//! the original's lines (tracebacks and coverage line up). A test module that kills few
//! mutants admits wrong functions as readily as right ones; `sandbox::adequacy` runs them.
//!
//! Operators (the names records carry): `arithmetic` (`+`↔`-`, `*`↔`/`, `//`→`/`, `%`→`//`,
//! `**`→`*`, shifts and bit operators swapped, in expressions and augmented assignments),
//! `comparison` (`<`↔`<=`, `>`↔`>=`, `==`↔`!=`, `in`↔`not in`, `is`↔`is not`),
//! `boolean` (`and`↔`or`), `unary` (`not x`, `-x`, `~x` → `x`), `constant` (0↔1, n→n+1,
//! x.y→x.y+1, `""`→`"x"`, `"s"`→`""`, `True`↔`False`), `negate_condition` (`if c` →
//! `if not c`, also `elif`, `while` and conditional expressions), `return_none`
//! (`return x` → `return None`), `delete_statement` (a call statement, an augmented
//! assignment or a write to an attribute or item → `pass`), `swap_arguments` (the first
//! two positional arguments of a call) and `slice_bound` (a slice's start or stop + 1).
//!
//! Replacements are parenthesised, so a swapped operator never re-associates with its
//! neighbours (`c - a * b` → `c - ((a) + (b))`). Annotations, docstrings and f-strings are
//! left alone. Mutants that normalise to the same text (whitespace removed) as the
//! original or as another mutant are dropped here; those that compile to the same bytecode
//! are dropped in the sandbox (trivial compiler equivalence).

use std::collections::HashSet;
use std::ops::Range;

use ruff_python_ast::visitor::{self, Visitor};
use ruff_python_ast::{BoolOp, CmpOp, Expr, Number, Operator, Stmt, UnaryOp};
use ruff_text_size::Ranged;
use serde::{Deserialize, Serialize};

use super::{on_parse_stack, parse_untrusted, LineIndex};

/// One mutant: the whole program with one site changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mutant {
    pub operator: String,
    /// 1-based line of the change.
    pub line: u32,
    /// The mutated program.
    pub source: String,
    /// `-original line` / `+mutated line`.
    pub diff: String,
}

/// What `generate` found: the chosen mutants and how many distinct sites there were.
#[derive(Debug, Default)]
pub struct Mutants {
    pub mutants: Vec<Mutant>,
    /// Mutation sites in the function before sampling.
    pub sites: usize,
    /// Why there are none, when there are none.
    pub reason: Option<String>,
}

struct Site {
    operator: &'static str,
    edits: Vec<(Range<usize>, String)>,
}

/// Up to `limit` mutants of the top-level function `entry` (all top-level functions when
/// `None`), chosen by a seeded shuffle when there are more sites (the same program and
/// seed always give the same mutants).
pub fn generate(code: &str, entry: Option<&str>, limit: usize, seed: u64) -> Mutants {
    on_parse_stack(|| {
        let parsed = match parse_untrusted(code, ruff_python_ast::PythonVersion::PY314) {
            Ok(p) if p.errors().is_empty() => p,
            Ok(_) => return Mutants { reason: Some("the program does not parse".into()), ..Mutants::default() },
            Err(e) => return Mutants { reason: Some(e), ..Mutants::default() },
        };
        let mut finder = Sites { code, sites: Vec::new() };
        let mut found = false;
        for stmt in parsed.suite() {
            if let Stmt::FunctionDef(f) = stmt {
                if entry.is_none_or(|e| f.name.as_str() == e) {
                    found = true;
                    // Defaults are part of the function's behaviour (calls that rely on them).
                    for default in f.parameters.iter_non_variadic_params().filter_map(|p| p.default()) {
                        finder.visit_expr(default);
                    }
                    finder.visit_body(&f.body);
                }
            }
        }
        if !found {
            let reason = match entry {
                Some(e) => format!("no top-level function `{e}` in the program"),
                None => "no top-level function in the program".to_string(),
            };
            return Mutants { reason: Some(reason), ..Mutants::default() };
        }
        let mut sites = finder.sites;
        let total = sites.len();
        if total == 0 {
            return Mutants { reason: Some("nothing to mutate (no operators, constants, conditions or calls)".into()), ..Mutants::default() };
        }
        shuffle(&mut sites, seed ^ program_seed(code));
        let original = normalised(code);
        let mut seen = HashSet::new();
        let mut lines = LineIndex::new(code);
        let mut mutants = Vec::new();
        for site in sites {
            if mutants.len() >= limit {
                break;
            }
            let source = apply(code, &site.edits);
            let key = normalised(&source);
            if key == original || !seen.insert(key) {
                continue;
            }
            let start = site.edits.iter().map(|(r, _)| r.start).min().unwrap_or(0);
            let line = lines.line_of(start);
            let diff = format!("-{}\n+{}", line_text(code, line), line_text(&source, line));
            mutants.push(Mutant { operator: site.operator.to_string(), line, source, diff });
        }
        Mutants { mutants, sites: total, reason: None }
    })
}

fn apply(code: &str, edits: &[(Range<usize>, String)]) -> String {
    let mut edits: Vec<&(Range<usize>, String)> = edits.iter().collect();
    edits.sort_by_key(|(r, _)| std::cmp::Reverse(r.start));
    let mut out = code.to_string();
    for (range, text) in edits {
        out.replace_range(range.clone(), text);
    }
    out
}

fn normalised(source: &str) -> String {
    source.chars().filter(|c| !c.is_whitespace()).collect()
}

fn line_text(source: &str, line: u32) -> String {
    let text = source.lines().nth(line.saturating_sub(1) as usize).unwrap_or("").trim();
    text.chars().take(200).collect()
}

fn program_seed(code: &str) -> u64 {
    let hash = blake3::hash(code.as_bytes());
    u64::from_le_bytes(hash.as_bytes()[..8].try_into().unwrap_or([0; 8]))
}

/// Fisher–Yates with splitmix64: reproducible without a dependency.
fn shuffle<T>(items: &mut [T], mut state: u64) {
    let mut next = || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    for i in (1..items.len()).rev() {
        let j = (next() % (i as u64 + 1)) as usize;
        items.swap(i, j);
    }
}

struct Sites<'s> {
    code: &'s str,
    sites: Vec<Site>,
}

fn operator_text(op: Operator) -> &'static str {
    op.as_str()
}

fn swapped_operator(op: Operator) -> Option<Operator> {
    Some(match op {
        Operator::Add => Operator::Sub,
        Operator::Sub => Operator::Add,
        Operator::Mult => Operator::Div,
        Operator::Div => Operator::Mult,
        Operator::FloorDiv => Operator::Div,
        Operator::Mod => Operator::FloorDiv,
        Operator::Pow => Operator::Mult,
        Operator::LShift => Operator::RShift,
        Operator::RShift => Operator::LShift,
        Operator::BitAnd => Operator::BitOr,
        Operator::BitOr => Operator::BitAnd,
        Operator::BitXor => Operator::BitAnd,
        Operator::MatMult => return None,
    })
}

fn swapped_comparison(op: CmpOp) -> &'static str {
    match op {
        CmpOp::Lt => "<=",
        CmpOp::LtE => "<",
        CmpOp::Gt => ">=",
        CmpOp::GtE => ">",
        CmpOp::Eq => "!=",
        CmpOp::NotEq => "==",
        CmpOp::In => "not in",
        CmpOp::NotIn => "in",
        CmpOp::Is => "is not",
        CmpOp::IsNot => "is",
    }
}

impl<'s> Sites<'s> {
    fn text(&self, node: &impl Ranged) -> &'s str {
        let r = node.range();
        self.code.get(usize::from(r.start())..usize::from(r.end())).unwrap_or("")
    }

    fn span(node: &impl Ranged) -> Range<usize> {
        let r = node.range();
        usize::from(r.start())..usize::from(r.end())
    }

    fn add(&mut self, operator: &'static str, edits: Vec<(Range<usize>, String)>) {
        self.sites.push(Site { operator, edits });
    }

    fn replace(&mut self, operator: &'static str, node: &impl Ranged, text: String) {
        self.add(operator, vec![(Self::span(node), text)]);
    }

    fn negate(&mut self, test: &Expr) {
        let text = format!("(not ({}))", self.text(test));
        self.replace("negate_condition", test, text);
    }

    fn constant(&mut self, expr: &Expr) {
        let text = self.text(expr);
        let replacement = match expr {
            Expr::NumberLiteral(n) => match &n.value {
                Number::Int(_) if text.bytes().all(|b| b.is_ascii_digit()) => match text.parse::<u128>() {
                    Ok(0) => Some("1".to_string()),
                    Ok(1) => Some("0".to_string()),
                    Ok(v) => Some((v + 1).to_string()),
                    Err(_) => None,
                },
                Number::Float(v) if v.is_finite() => Some(format!("{:?}", v + 1.0)),
                _ => None,
            },
            Expr::StringLiteral(s) if !s.value.is_implicit_concatenated() => {
                Some(if s.value.to_str().is_empty() { "\"x\"".to_string() } else { "\"\"".to_string() })
            }
            Expr::BooleanLiteral(b) => Some(if b.value { "False".to_string() } else { "True".to_string() }),
            _ => None,
        };
        if let Some(r) = replacement {
            self.replace("constant", expr, r);
        }
    }
}

impl<'a> Visitor<'a> for Sites<'_> {
    fn visit_stmt(&mut self, stmt: &'a Stmt) {
        match stmt {
            // A bare string is a docstring or does nothing: nothing to learn from mutating it.
            Stmt::Expr(e) if matches!(*e.value, Expr::StringLiteral(_)) => return,
            Stmt::Expr(e) if matches!(*e.value, Expr::Call(_) | Expr::Await(_)) => self.replace("delete_statement", stmt, "pass".into()),
            Stmt::AugAssign(a) => {
                self.replace("delete_statement", stmt, "pass".into());
                if let Some(op) = swapped_operator(a.op) {
                    // The operator token sits between the target and the value.
                    let gap = usize::from(a.target.range().end())..usize::from(a.value.range().start());
                    let token = format!("{}=", operator_text(a.op));
                    if let Some(at) = self.code.get(gap.clone()).and_then(|g| g.find(&token)) {
                        let start = gap.start + at;
                        self.add("arithmetic", vec![(start..start + token.len(), format!("{}=", operator_text(op)))]);
                    }
                }
            }
            Stmt::Assign(a) if a.targets.iter().all(|t| matches!(t, Expr::Attribute(_) | Expr::Subscript(_))) => {
                self.replace("delete_statement", stmt, "pass".into())
            }
            Stmt::Return(r) => {
                if let Some(value) = &r.value {
                    if !matches!(**value, Expr::NoneLiteral(_)) {
                        self.replace("return_none", &**value, "None".into());
                    }
                }
            }
            Stmt::If(i) => {
                self.negate(&i.test);
                for clause in &i.elif_else_clauses {
                    if let Some(test) = &clause.test {
                        self.negate(test);
                    }
                }
            }
            Stmt::While(w) => self.negate(&w.test),
            _ => {}
        }
        visitor::walk_stmt(self, stmt);
    }

    fn visit_annotation(&mut self, _expr: &'a Expr) {}

    fn visit_decorator(&mut self, _decorator: &'a ruff_python_ast::Decorator) {}

    fn visit_expr(&mut self, expr: &'a Expr) {
        match expr {
            Expr::FString(_) | Expr::TString(_) => return,
            Expr::BinOp(b) => {
                if let Some(op) = swapped_operator(b.op) {
                    let text = format!("(({}) {} ({}))", self.text(&*b.left), operator_text(op), self.text(&*b.right));
                    self.replace("arithmetic", expr, text);
                }
            }
            Expr::Compare(c) if c.ops.len() == 1 => {
                let text = format!("(({}) {} ({}))", self.text(&*c.left), swapped_comparison(c.ops[0]), self.text(&c.comparators[0]));
                self.replace("comparison", expr, text);
            }
            Expr::BoolOp(b) => {
                let joiner = match b.op {
                    BoolOp::And => " or ",
                    BoolOp::Or => " and ",
                };
                let parts: Vec<String> = b.values.iter().map(|v| format!("({})", self.text(v))).collect();
                self.replace("boolean", expr, format!("({})", parts.join(joiner)));
            }
            Expr::UnaryOp(u) if u.op != UnaryOp::UAdd => {
                let text = format!("({})", self.text(&*u.operand));
                self.replace("unary", expr, text);
            }
            Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::BooleanLiteral(_) => self.constant(expr),
            Expr::If(i) => self.negate(&i.test),
            Expr::Call(c) => {
                let args = &c.arguments.args;
                if args.len() >= 2 && !args.iter().any(Expr::is_starred_expr) {
                    let (a, b) = (self.text(&args[0]), self.text(&args[1]));
                    if a != b {
                        self.add("swap_arguments", vec![(Self::span(&args[0]), b.to_string()), (Self::span(&args[1]), a.to_string())]);
                    }
                }
            }
            Expr::Slice(s) => {
                for bound in [&s.lower, &s.upper].into_iter().flatten() {
                    let text = format!("(({}) + 1)", self.text(&**bound));
                    self.replace("slice_bound", &**bound, text);
                }
            }
            _ => {}
        }
        visitor::walk_expr(self, expr);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROGRAM: &str = "import math\n\ndef task_func(xs, k=2):\n    \"\"\"Sum of the first k items.\"\"\"\n    total = 0\n    for x in xs[:k]:\n        if x > 0 and x != 3:\n            total += x * 2\n    return total\n";

    fn all(code: &str) -> Vec<Mutant> {
        generate(code, Some("task_func"), 1000, 1).mutants
    }

    #[test]
    fn classic_operators_at_their_sites() {
        let mutants = all(PROGRAM);
        let ops: HashSet<&str> = mutants.iter().map(|m| m.operator.as_str()).collect();
        for op in ["arithmetic", "comparison", "boolean", "constant", "negate_condition", "return_none", "delete_statement", "slice_bound"] {
            assert!(ops.contains(op), "{op} missing from {ops:?}");
        }
        let src = |needle: &str| mutants.iter().find(|m| m.source.contains(needle)).map(|m| m.operator.clone());
        assert_eq!(src("((x) / (2))").as_deref(), Some("arithmetic"));
        assert_eq!(src("total -= x").as_deref(), Some("arithmetic"));
        assert_eq!(src("((x) >= (0))").as_deref(), Some("comparison"));
        assert_eq!(src("((x > 0) or (x != 3))").as_deref(), Some("boolean"));
        assert_eq!(src("return None").as_deref(), Some("return_none"));
        assert_eq!(src("xs[:((k) + 1)]").as_deref(), Some("slice_bound"));
        assert_eq!(src("k=3").as_deref(), Some("constant"));
        // Docstring untouched; every mutant keeps the line count and differs from the original.
        for m in &mutants {
            assert!(m.source.contains("\"\"\"Sum of the first k items.\"\"\""), "{}", m.source);
            assert_eq!(m.source.lines().count(), PROGRAM.lines().count(), "{}", m.source);
            assert_ne!(normalised(&m.source), normalised(PROGRAM));
            assert!(m.diff.starts_with('-') && m.diff.contains("\n+"), "{}", m.diff);
        }
    }

    #[test]
    fn replacements_keep_precedence() {
        let code = "def task_func(a, b, c):\n    return c - a * b\n";
        let m = all(code);
        assert!(m.iter().any(|m| m.source.contains("c - ((a) / (b))")), "{m:#?}");
        assert!(m.iter().any(|m| m.source.contains("((c) + (a * b))")), "{m:#?}");
    }

    #[test]
    fn seeded_sample_is_stable_and_bounded() {
        let a = generate(PROGRAM, Some("task_func"), 5, 7);
        let b = generate(PROGRAM, Some("task_func"), 5, 7);
        assert_eq!(a.mutants, b.mutants);
        assert_eq!(a.mutants.len(), 5);
        assert!(a.sites > 5);
        let c = generate(PROGRAM, Some("task_func"), 5, 8);
        assert_ne!(a.mutants, c.mutants);
    }

    #[test]
    fn nothing_to_mutate_says_why() {
        let none = generate("def task_func(x):\n    pass\n", Some("task_func"), 20, 0);
        assert!(none.mutants.is_empty());
        assert!(none.reason.unwrap().contains("nothing to mutate"));
        let missing = generate("def other():\n    return 1\n", Some("task_func"), 20, 0);
        assert!(missing.reason.unwrap().contains("no top-level function `task_func`"));
        let broken = generate("def task_func(:\n", Some("task_func"), 20, 0);
        assert!(broken.reason.is_some());
    }

    #[test]
    fn swaps_call_arguments_and_deletes_side_effects() {
        let code = "def task_func(d, a, b):\n    d.update(a)\n    d['k'] = pow(a, b)\n    return d\n";
        let m = all(code);
        assert!(m.iter().any(|m| m.operator == "swap_arguments" && m.source.contains("pow(b, a)")), "{m:#?}");
        assert!(m.iter().filter(|m| m.operator == "delete_statement").count() >= 2, "{m:#?}");
    }

    #[test]
    fn f_strings_and_annotations_are_left_alone() {
        let code = "def task_func(x: int | None = None) -> list[int]:\n    return f\"{x + 1}\"\n";
        let m = all(code);
        assert!(m.iter().all(|m| m.source.contains("int | None") && m.source.contains("list[int]")), "{m:#?}");
        assert!(m.iter().all(|m| m.operator == "return_none" || m.source.contains("{x + 1}")), "{m:#?}");
        assert_eq!(m.len(), 1, "only the return value; the None default and the f-string interior are not mutated: {m:#?}");
    }
}
