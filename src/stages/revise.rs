//! Checking a model's rewrite of a function (a fix candidate, a refined version) before it
//! is run: it must define the same function with the same signature and be self-contained.
//! The rewrite goes through the extractor itself, so "self-contained" means exactly what it
//! means for corpus code (every free name resolves to an import, a builtin or a constant),
//! and the runnable module is rebuilt from the function and the imports it needs (stray
//! example calls or `__main__` blocks in the reply are left out).

use ruff_python_ast::{Parameters, Stmt};
use ruff_text_size::Ranged;
use serde_json::{json, Value};

use crate::executor::Record;
use crate::python::parse_module;
use crate::record::FunctionRecord;
use crate::stages::extract::{ExtractSettings, Extractor, PackageAllowList};

/// Why a rewrite was rejected without running it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub reason: &'static str,
    pub detail: String,
}

fn reject(reason: &'static str, detail: impl Into<String>) -> Rejected {
    Rejected { reason, detail: detail.into() }
}

/// The checker, built once per stage from the `[extract]` settings with the shape rules
/// relaxed (a fix may shorten a function; it may not make it depend on something missing).
pub struct Reviser {
    extractor: Extractor,
}

impl Reviser {
    pub fn new(extract: &ExtractSettings) -> anyhow::Result<Reviser> {
        let mut s = extract.clone();
        s.min_lines = 1;
        s.max_lines = usize::MAX;
        s.min_args = 0;
        s.require_return_value = false;
        s.require_package = false;
        s.allow_nested_defs = true;
        s.include_constants = true;
        s.dedup = false;
        let allow = PackageAllowList::load(&s.packages_file)?;
        Ok(Reviser { extractor: Extractor::new(s, allow)? })
    }

    /// Check `block` as a rewrite of `entry_point` whose original source is `original`.
    pub fn check(&self, block: &str, entry_point: &str, original: &str) -> Result<FunctionRecord, Rejected> {
        let candidates =
            self.extractor.extract(block, "candidate", None).map_err(|bad| reject("syntax_error", format!("{}: {}", bad.reason, bad.detail)))?;
        let Some(candidate) = candidates.into_iter().find(|c| c.name == entry_point) else {
            return Err(reject("missing_function", format!("no top-level `def {entry_point}`")));
        };
        let kept = candidate.outcome.map_err(|(reason, detail)| reject("not_self_contained", format!("{}: {detail}", reason.as_str())))?;
        let want = signature(original, entry_point).ok_or_else(|| reject("signature_changed", "the original signature could not be read"))?;
        let got = signature(&kept.record.function, entry_point).ok_or_else(|| reject("signature_changed", "no signature"))?;
        if want != got {
            return Err(reject("signature_changed", format!("expected `{want}`, got `{got}`")));
        }
        Ok(kept.record)
    }
}

/// `[async ]def name(params)` with default values as written (whitespace removed) and
/// annotations left out: what callers depend on.
pub fn signature(source: &str, entry_point: &str) -> Option<String> {
    let parsed = parse_module(source, ruff_python_ast::PythonVersion::PY314);
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
    let parsed = parse_module(source, ruff_python_ast::PythonVersion::PY314);
    parsed.suite().iter().find_map(|stmt| match stmt {
        Stmt::FunctionDef(f) if f.name.as_str() == entry_point => match f.body.first() {
            Some(Stmt::Expr(e)) => e.value.as_string_literal_expr().map(|s| s.value.to_str().to_string()),
            _ => None,
        },
        _ => None,
    })
}

/// Replace a record's program with a checked rewrite; the previous program is kept under
/// `previous_field` the first time.
pub fn apply(record: &mut Record, rewrite: &FunctionRecord, previous_field: &str) {
    if !record.contains_key(previous_field) {
        let before = json!({
            "code": record.get("code").cloned().unwrap_or(Value::Null),
            "function": record.get("function").cloned().unwrap_or(Value::Null),
        });
        record.insert(previous_field.into(), before);
    }
    record.insert("code".into(), json!(rewrite.code));
    record.insert("function".into(), json!(rewrite.function));
    record.insert("imports".into(), json!(rewrite.imports));
    record.insert("packages".into(), json!(rewrite.packages));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reviser() -> Reviser {
        Reviser::new(&ExtractSettings::default()).unwrap()
    }

    const ORIGINAL: &str = "def f(xs, scale=2.0, *, axis=None):\n    return np.mean(xs) * scale\n";

    #[test]
    fn a_good_rewrite_is_rebuilt_without_extra_top_level_code() {
        let block = "import numpy as np\n\ndef f(xs, scale = 2.0, *, axis=None):\n    return float(np.mean(xs)) * scale\n\nprint(f([1, 2]))\nif __name__ == '__main__':\n    f([3])\n";
        let r = reviser().check(block, "f", ORIGINAL).unwrap();
        assert_eq!(r.imports, vec!["import numpy as np"]);
        assert!(!r.code.contains("print(") && !r.code.contains("__main__"), "{}", r.code);
    }

    #[test]
    fn rejections_name_their_reason() {
        let rv = reviser();
        let no_import = "def f(xs, scale=2.0, *, axis=None):\n    return np.mean(xs) * scale\n";
        assert_eq!(rv.check(no_import, "f", ORIGINAL).unwrap_err().reason, "not_self_contained");
        let helper =
            "import numpy as np\n\ndef helper(x):\n    return x\n\ndef f(xs, scale=2.0, *, axis=None):\n    return helper(np.mean(xs)) * scale\n";
        assert_eq!(rv.check(helper, "f", ORIGINAL).unwrap_err().reason, "not_self_contained");
        let renamed = "import numpy as np\n\ndef g(xs, scale=2.0, *, axis=None):\n    return np.mean(xs) * scale\n";
        assert_eq!(rv.check(renamed, "f", ORIGINAL).unwrap_err().reason, "missing_function");
        let new_default = "import numpy as np\n\ndef f(xs, scale=3.0, *, axis=None):\n    return np.mean(xs) * scale\n";
        assert_eq!(rv.check(new_default, "f", ORIGINAL).unwrap_err().reason, "signature_changed");
        let new_param = "import numpy as np\n\ndef f(xs, scale=2.0, *, axis=None, ddof=0):\n    return np.mean(xs) * scale\n";
        assert_eq!(rv.check(new_param, "f", ORIGINAL).unwrap_err().reason, "signature_changed");
        assert_eq!(rv.check("def f(:\n", "f", ORIGINAL).unwrap_err().reason, "syntax_error");
    }

    #[test]
    fn docstrings_are_read() {
        assert_eq!(docstring("def f(x):\n    \"\"\"Hi.\n\n    >>> f(1)\n    1\n    \"\"\"\n    return x\n", "f").unwrap().matches(">>>").count(), 1);
        assert!(docstring(ORIGINAL, "f").is_none());
    }
}
