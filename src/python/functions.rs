//! Facts about one top-level function of a module, read with ruff: its signature as
//! callers see it, its docstring, its `def` line, and the prompt/completion split that
//! export and problems use.

use ruff_python_ast::{Parameters, Stmt};
use ruff_text_size::Ranged;

use crate::python::{on_parse_stack, parse_untrusted};

/// `[async ]def name(params)` with default values as written (whitespace removed) and
/// annotations left out: what callers depend on.
pub fn signature(source: &str, entry_point: &str) -> Option<String> {
    on_parse_stack(|| signature_here(source, entry_point))
}

fn signature_here(source: &str, entry_point: &str) -> Option<String> {
    let parsed = parse_untrusted(source, ruff_python_ast::PythonVersion::PY314).ok()?;
    parsed.suite().iter().find_map(|stmt| match stmt {
        Stmt::FunctionDef(f) if f.name.as_str() == entry_point => {
            Some(format!("{}def {}({})", if f.is_async { "async " } else { "" }, entry_point, parameters(source, &f.parameters)))
        }
        _ => None,
    })
}

fn parameters(source: &str, p: &Parameters) -> String {
    let text = |e: &ruff_python_ast::Expr| source[e.range().start().to_usize()..e.range().end().to_usize()].split_whitespace().collect::<String>();
    let mut parts: Vec<String> = Vec::new();
    let with_default = |pd: &ruff_python_ast::ParameterWithDefault| match &pd.default {
        Some(d) => format!("{}={}", pd.parameter.name, text(d)),
        None => pd.parameter.name.to_string(),
    };
    for pd in &p.posonlyargs {
        parts.push(with_default(pd));
    }
    if !p.posonlyargs.is_empty() {
        parts.push("/".into());
    }
    for pd in &p.args {
        parts.push(with_default(pd));
    }
    match &p.vararg {
        Some(v) => parts.push(format!("*{}", v.name)),
        None if !p.kwonlyargs.is_empty() => parts.push("*".into()),
        None => {}
    }
    for pd in &p.kwonlyargs {
        parts.push(with_default(pd));
    }
    if let Some(k) = &p.kwarg {
        parts.push(format!("**{}", k.name));
    }
    parts.join(", ")
}

/// The function's docstring, if it has one.
pub fn docstring(source: &str, entry_point: &str) -> Option<String> {
    on_parse_stack(|| docstring_here(source, entry_point))
}

fn docstring_here(source: &str, entry_point: &str) -> Option<String> {
    let parsed = parse_untrusted(source, ruff_python_ast::PythonVersion::PY314).ok()?;
    parsed.suite().iter().find_map(|stmt| match stmt {
        Stmt::FunctionDef(f) if f.name.as_str() == entry_point => match f.body.first() {
            Some(Stmt::Expr(e)) => e.value.as_string_literal_expr().map(|s| s.value.to_str().to_string()),
            _ => None,
        },
        _ => None,
    })
}

/// Prompt (everything through the docstring, or through the `def` line) and completion.
pub fn split_prompt(code: &str, entry_point: &str) -> Option<(String, String, bool)> {
    on_parse_stack(|| split_prompt_here(code, entry_point))
}

fn split_prompt_here(code: &str, entry_point: &str) -> Option<(String, String, bool)> {
    let parsed = parse_untrusted(code, ruff_python_ast::PythonVersion::PY314).ok()?;
    if !parsed.errors().is_empty() {
        return None;
    }
    let func = parsed.suite().iter().find_map(|s| match s {
        Stmt::FunctionDef(f) if f.name.as_str() == entry_point => Some(f),
        _ => None,
    })?;
    let first = func.body.first()?;
    let has_doc = matches!(first, Stmt::Expr(e) if e.value.is_string_literal_expr());
    let split = if has_doc {
        let end = first.range().end().to_usize();
        code[end..].find('\n').map(|i| end + i + 1).unwrap_or(code.len())
    } else {
        let start = first.range().start().to_usize();
        code[..start].rfind('\n').map(|i| i + 1).unwrap_or(0)
    };
    let completion = code[split..].to_string();
    if completion.trim().is_empty() {
        return None;
    }
    Some((code[..split].to_string(), completion, has_doc))
}

/// The `def` line of the function (its signature as written).
pub fn def_line(code: &str, entry_point: &str) -> String {
    let needle = format!("def {entry_point}(");
    code.lines()
        .find(|l| l.trim_start().starts_with(&needle) || l.trim_start().starts_with(&format!("async {needle}")))
        .unwrap_or("")
        .trim_end()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompt_is_imports_signature_and_docstring() {
        let code =
            "import numpy as np\n\n\ndef f(x):\n    \"\"\"Double.\n\n    >>> f(1)\n    2\n    \"\"\"\n    # twice\n    return np.multiply(x, 2)\n";
        let (p, c, doc) = split_prompt(code, "f").unwrap();
        assert!(doc);
        assert!(p.starts_with("import numpy as np\n") && p.ends_with("\"\"\"\n"), "{p}");
        assert_eq!(c, "    # twice\n    return np.multiply(x, 2)\n");
        assert_eq!(format!("{p}{c}"), code);
        let (p, c, doc) = split_prompt("def g(a):\n    return a\n", "g").unwrap();
        assert!(!doc);
        assert_eq!((p.as_str(), c.as_str()), ("def g(a):\n", "    return a\n"));
    }

    #[test]
    fn docstrings_are_read() {
        assert_eq!(docstring("def f(x):\n    \"\"\"Hi.\n\n    >>> f(1)\n    1\n    \"\"\"\n    return x\n", "f").unwrap().matches(">>>").count(), 1);
        assert!(docstring("def f(xs, scale=2.0, *, axis=None):\n    return xs\n", "f").is_none());
    }
}
