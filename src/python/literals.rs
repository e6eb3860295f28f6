//! Function inputs written by a model: Python dict literals of keyword arguments, checked
//! here (never evaluated in the supervisor) before the sandbox evaluates them with the same
//! rules. Allowed: constants, containers, signed numbers, complex sums, and calls of a fixed
//! list of constructors (`np.array`, `pd.DataFrame`, `datetime.date`, ...) whose arguments
//! are themselves literals.

use ruff_python_ast::{Expr, Operator, Stmt, UnaryOp};
use ruff_text_size::Ranged;

use super::{dotted_name, on_parse_stack, parse_untrusted};

/// Constructors an input may call (the sandbox harness gets this list too).
pub const SAFE_CALLS: &[&str] = &[
    "set",
    "frozenset",
    "tuple",
    "list",
    "dict",
    "float",
    "complex",
    "bytes",
    "bytearray",
    "np.array",
    "numpy.array",
    "np.int64",
    "numpy.int64",
    "np.float64",
    "numpy.float64",
    "np.int32",
    "numpy.int32",
    "np.float32",
    "numpy.float32",
    "np.bool_",
    "numpy.bool_",
    "pd.DataFrame",
    "pandas.DataFrame",
    "pd.Series",
    "pandas.Series",
    "pd.Timestamp",
    "pandas.Timestamp",
    "pd.Index",
    "pandas.Index",
    "datetime.date",
    "datetime.datetime",
    "datetime.time",
    "datetime.timedelta",
    "date",
    "datetime",
    "timedelta",
    "decimal.Decimal",
    "Decimal",
    "fractions.Fraction",
    "Fraction",
    "collections.OrderedDict",
    "OrderedDict",
    "collections.Counter",
    "Counter",
    "collections.deque",
    "deque",
];
/// Names an input may use as values (likewise).
pub const SAFE_NAMES: &[&str] = &["np.nan", "numpy.nan", "np.inf", "numpy.inf", "math.inf", "math.nan", "math.pi", "math.e"];

/// Longest accepted input, bytes of source.
pub const MAX_INPUT_BYTES: usize = 16 * 1024;

/// One input as the model wrote it.
#[derive(Debug, Clone, PartialEq)]
pub struct InputLiteral {
    /// The dict literal's source text (what the sandbox evaluates).
    pub source: String,
    /// Argument names and each value's source text, in order (for rendering calls).
    pub args: Vec<(String, String)>,
}

/// The function's parameters, for checking that an input can be passed as keywords.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Signature {
    /// Names that may be passed by keyword.
    pub keyword_names: Vec<String>,
    /// Those without a default.
    pub required: Vec<String>,
    /// `**kwargs` accepts any name.
    pub var_keyword: bool,
}

/// The signature of top-level function `entry_point` in `code`.
pub fn signature(code: &str, entry_point: &str) -> Option<Signature> {
    on_parse_stack(|| signature_here(code, entry_point))
}

fn signature_here(code: &str, entry_point: &str) -> Option<Signature> {
    let parsed = parse_untrusted(code, ruff_python_ast::PythonVersion::PY314).ok()?;
    let func = parsed.suite().iter().find_map(|s| match s {
        Stmt::FunctionDef(f) if f.name.as_str() == entry_point => Some(f),
        _ => None,
    })?;
    let p = &func.parameters;
    let mut sig = Signature { var_keyword: p.kwarg.is_some(), ..Default::default() };
    for param in p.args.iter().chain(&p.kwonlyargs) {
        let name = param.parameter.name.to_string();
        if param.default.is_none() {
            sig.required.push(name.clone());
        }
        sig.keyword_names.push(name);
    }
    // Positional-only parameters cannot be passed as keywords: such a function cannot take
    // keyword-dict inputs unless they all have defaults.
    if p.posonlyargs.iter().any(|a| a.default.is_none()) {
        sig.required.push("<positional-only>".into());
    }
    Some(sig)
}

/// Why an expression is not an allowed literal.
pub fn check_literal(expr: &Expr, depth: usize) -> Result<(), String> {
    if depth > 60 {
        return Err("nested too deeply".into());
    }
    let recurse = |e: &Expr| check_literal(e, depth + 1);
    match expr {
        Expr::NumberLiteral(_)
        | Expr::StringLiteral(_)
        | Expr::BytesLiteral(_)
        | Expr::BooleanLiteral(_)
        | Expr::NoneLiteral(_)
        | Expr::EllipsisLiteral(_) => Ok(()),
        Expr::List(l) => l.elts.iter().try_for_each(recurse),
        Expr::Tuple(t) => t.elts.iter().try_for_each(recurse),
        Expr::Set(s) => s.elts.iter().try_for_each(recurse),
        Expr::Dict(d) => d.items.iter().try_for_each(|item| match &item.key {
            None => Err("`**` in a dict literal".into()),
            Some(k) => recurse(k).and_then(|_| recurse(&item.value)),
        }),
        Expr::UnaryOp(u) if matches!(u.op, UnaryOp::USub | UnaryOp::UAdd) => match u.operand.as_ref() {
            Expr::NumberLiteral(_) => Ok(()),
            _ => Err("a sign on something other than a number".into()),
        },
        Expr::BinOp(b) if matches!(b.op, Operator::Add | Operator::Sub) => {
            let real = |e: &Expr| {
                matches!(e, Expr::NumberLiteral(_)) || matches!(e, Expr::UnaryOp(u) if matches!(u.operand.as_ref(), Expr::NumberLiteral(_)))
            };
            let imaginary = matches!(b.right.as_ref(), Expr::NumberLiteral(n) if matches!(n.value, ruff_python_ast::Number::Complex { .. }));
            if real(&b.left) && imaginary {
                Ok(())
            } else {
                Err("arithmetic is not a literal".into())
            }
        }
        Expr::Call(c) => {
            let name = callee_text(&c.func);
            if !SAFE_CALLS.contains(&name.as_str()) {
                return Err(format!("call of {name} is not allowed in an input"));
            }
            c.arguments.args.iter().try_for_each(recurse)?;
            c.arguments.keywords.iter().try_for_each(|k| if k.arg.is_none() { Err("`**` in a call".into()) } else { recurse(&k.value) })
        }
        Expr::Attribute(_) | Expr::Name(_) => {
            let name = dotted_name(expr).unwrap_or_default();
            if SAFE_NAMES.contains(&name.as_str()) {
                Ok(())
            } else {
                Err(format!("name {name} is not a literal"))
            }
        }
        other => Err(format!("{} is not a literal", kind_name(other))),
    }
}

fn kind_name(e: &Expr) -> &'static str {
    match e {
        Expr::BinOp(_) => "arithmetic",
        Expr::Lambda(_) => "a lambda",
        Expr::ListComp(_) | Expr::SetComp(_) | Expr::DictComp(_) | Expr::Generator(_) => "a comprehension",
        Expr::FString(_) => "an f-string",
        Expr::Subscript(_) => "a subscript",
        _ => "this expression",
    }
}

/// How a callee reads, for messages (`__import__(...).system`).
fn callee_text(e: &Expr) -> String {
    match e {
        Expr::Name(n) => n.id.to_string(),
        Expr::Attribute(a) => format!("{}.{}", callee_text(&a.value), a.attr.as_str()),
        Expr::Call(c) => format!("{}(...)", callee_text(&c.func)),
        _ => "an expression".into(),
    }
}

/// Check one dict-literal expression as a keyword-argument input.
fn input_of(expr: &Expr, source: &str, sig: Option<&Signature>) -> Result<InputLiteral, String> {
    let text = &source[expr.range().start().to_usize()..expr.range().end().to_usize()];
    if text.len() > MAX_INPUT_BYTES {
        return Err(format!("longer than {MAX_INPUT_BYTES} bytes"));
    }
    let Expr::Dict(d) = expr else { return Err("not a dict of keyword arguments".into()) };
    check_literal(expr, 0)?;
    let mut args = Vec::new();
    for item in &d.items {
        let Some(Expr::StringLiteral(k)) = &item.key else { return Err("a key is not a string".into()) };
        let name = k.value.to_str().to_string();
        if !is_identifier(&name) {
            return Err(format!("argument name {name:?} is not an identifier"));
        }
        if args.iter().any(|(n, _)| n == &name) {
            return Err(format!("argument {name} given twice"));
        }
        let r = item.value.range();
        args.push((name, source[r.start().to_usize()..r.end().to_usize()].to_string()));
    }
    if let Some(sig) = sig {
        if let Some((unknown, _)) = args.iter().find(|(n, _)| !sig.var_keyword && !sig.keyword_names.contains(n)) {
            return Err(format!("the function has no parameter {unknown}"));
        }
        if let Some(missing) = sig.required.iter().find(|r| !args.iter().any(|(n, _)| n == *r)) {
            return Err(format!("required parameter {missing} is missing"));
        }
    }
    Ok(InputLiteral { source: text.to_string(), args })
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_alphabetic()) && chars.all(|c| c == '_' || c.is_alphanumeric())
}

/// The inputs in a model's code block: a list (or tuple) of dicts, an assignment of one,
/// or one dict per statement. Each element is accepted or rejected on its own.
pub fn parse_inputs(block: &str, sig: Option<&Signature>) -> Result<Vec<Result<InputLiteral, String>>, String> {
    on_parse_stack(|| parse_inputs_here(block, sig))
}

fn parse_inputs_here(block: &str, sig: Option<&Signature>) -> Result<Vec<Result<InputLiteral, String>>, String> {
    let parsed = parse_untrusted(block, ruff_python_ast::PythonVersion::PY314).map_err(|why| format!("the inputs were not parsed: {why}"))?;
    if let Some(e) = parsed.errors().first() {
        return Err(format!("the inputs do not parse: {}", e.error));
    }
    let mut exprs: Vec<&Expr> = Vec::new();
    for stmt in parsed.suite() {
        let value = match stmt {
            Stmt::Expr(e) => e.value.as_ref(),
            Stmt::Assign(a) => a.value.as_ref(),
            Stmt::AnnAssign(a) => match &a.value {
                Some(v) => v.as_ref(),
                None => continue,
            },
            _ => return Err("the block holds statements other than the inputs".into()),
        };
        match value {
            Expr::List(l) => exprs.extend(l.elts.iter()),
            Expr::Tuple(t) => exprs.extend(t.elts.iter()),
            other => exprs.push(other),
        }
    }
    if exprs.is_empty() {
        return Err("no inputs in the block".into());
    }
    Ok(exprs.into_iter().map(|e| input_of(e, block, sig)).collect())
}

/// An input left out, with why (and its source, when it was a valid literal).
#[derive(Debug, Clone, PartialEq)]
pub struct Rejected {
    pub input: Option<String>,
    pub reason: String,
}

/// The first `limit` distinct items (same source up to whitespace = duplicate), in order;
/// invalid, duplicate and surplus items are rejected with a reason.
pub fn take_distinct<T>(items: Vec<Result<T, String>>, source: impl Fn(&T) -> &str, limit: usize) -> (Vec<T>, Vec<Rejected>) {
    let mut seen = std::collections::HashSet::new();
    let (mut accepted, mut rejected) = (Vec::new(), Vec::new());
    for item in items {
        match item {
            Ok(x) if accepted.len() >= limit => rejected.push(Rejected { input: Some(source(&x).to_string()), reason: "more than requested".into() }),
            Ok(x) => {
                if seen.insert(source(&x).split_whitespace().collect::<String>()) {
                    accepted.push(x);
                } else {
                    rejected.push(Rejected { input: Some(source(&x).to_string()), reason: "duplicate".into() });
                }
            }
            Err(reason) => rejected.push(Rejected { input: None, reason }),
        }
    }
    (accepted, rejected)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_literals_and_safe_constructors_rejects_code() {
        let block = r#"[
    {"x": 1, "y": [1, 2.5, -3], "z": (1,), "s": {"a", "b"}},
    {"x": np.array([1, 2]), "y": pd.DataFrame({"a": [1, 2]}), "z": 1+2j, "s": None},
    {"x": __import__("os").system("id"), "y": 1, "z": 1, "s": 1},
    {"x": [i for i in range(3)], "y": 1, "z": 1, "s": 1},
    {"x": 2 ** 100000, "y": 1, "z": 1, "s": 1},
    {"x": 1, "y": 1, "z": 1, "s": 1, "t": 1},
    {"y": 1, "z": 1, "s": 1},
    {**{"x": 1}},
    [1, 2],
]"#;
        let sig = Signature { keyword_names: vec!["x".into(), "y".into(), "z".into(), "s".into()], required: vec!["x".into()], var_keyword: false };
        let got = parse_inputs(block, Some(&sig)).unwrap();
        assert_eq!(got.len(), 9);
        assert!(got[0].is_ok() && got[1].is_ok(), "{got:?}");
        assert_eq!(got[0].as_ref().unwrap().args[1], ("y".to_string(), "[1, 2.5, -3]".to_string()));
        let errors: Vec<String> = got[2..].iter().map(|r| r.clone().unwrap_err()).collect();
        assert!(errors[0].contains("__import__"), "{errors:?}");
        assert!(errors[1].contains("comprehension"));
        assert!(errors[2].contains("arithmetic"));
        assert!(errors[3].contains("no parameter t"));
        assert!(errors[4].contains("required parameter x"));
        assert!(errors[5].contains("**"));
        assert!(errors[6].contains("not a dict"));
        assert!(parse_inputs("import os\n", None).is_err());
        assert!(parse_inputs("{'a': 1\n", None).is_err());
    }

    #[test]
    fn signature_reads_defaults_and_kwargs() {
        let sig = signature("def f(a, b=2, *args, c, d=1, **kw):\n    pass\n", "f").unwrap();
        assert_eq!(sig.keyword_names, ["a", "b", "c", "d"]);
        assert_eq!(sig.required, ["a", "c"]);
        assert!(sig.var_keyword);
    }
}
