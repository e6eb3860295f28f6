//! Admitting or rejecting a model's rewrite of a function (a fix candidate, a refined
//! version) before it is run: it must define the same function with the same signature and
//! be self-contained. The rewrite goes through the extractor itself, so "self-contained"
//! means exactly what it means for corpus code (every free name resolves to an import, a
//! builtin or a constant), and the runnable module is rebuilt from the function and the
//! imports it needs (stray example calls or `__main__` blocks in the reply are left out).

use crate::python::extractor::{ExtractSettings, Extractor, PackageAllowList};
use crate::python::functions::signature;
use crate::python::on_parse_stack;
use crate::record::{field, FunctionRecord, PreviousProgram, Record, RecordExt};

/// Why a rewrite was rejected without running it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub reason: &'static str,
    pub detail: String,
}

fn reject(reason: &'static str, detail: impl Into<String>) -> Rejected {
    Rejected { reason, detail: detail.into() }
}

/// The check, built once per stage from the `[extract]` settings with the shape rules
/// relaxed (a fix may shorten a function; it may not make it depend on something missing).
pub struct RewriteCheck {
    extractor: Extractor,
}

impl RewriteCheck {
    pub fn new(extract: &ExtractSettings) -> anyhow::Result<RewriteCheck> {
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
        Ok(RewriteCheck { extractor: Extractor::new(s, allow)? })
    }

    /// Admit `block` as a rewrite of `entry_point` whose original source is `original`.
    pub fn admit(&self, block: &str, entry_point: &str, original: &str) -> Result<FunctionRecord, Rejected> {
        let extracted = on_parse_stack(|| self.extractor.extract(block, "candidate", None));
        let candidates = extracted.map_err(|bad| reject("syntax_error", format!("{}: {}", bad.reason, bad.detail)))?;
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

/// Replace a record's program with an admitted rewrite; the previous program is kept under
/// `previous_field` the first time.
pub fn replace_program(record: &mut Record, rewrite: &FunctionRecord, previous_field: &str) {
    if !record.contains_key(previous_field) {
        let before =
            PreviousProgram { code: record.text(field::CODE).map(str::to_string), function: record.text(field::FUNCTION).map(str::to_string) };
        record.put(previous_field, &before);
    }
    record.put(field::CODE, &rewrite.code);
    record.put(field::FUNCTION, &rewrite.function);
    record.put(field::IMPORTS, &rewrite.imports);
    record.put(field::PACKAGES, &rewrite.packages);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check() -> RewriteCheck {
        RewriteCheck::new(&ExtractSettings::default()).unwrap()
    }

    const ORIGINAL: &str = "def f(xs, scale=2.0, *, axis=None):\n    return np.mean(xs) * scale\n";

    #[test]
    fn a_good_rewrite_is_rebuilt_without_extra_top_level_code() {
        let block = "import numpy as np\n\ndef f(xs, scale = 2.0, *, axis=None):\n    return float(np.mean(xs)) * scale\n\nprint(f([1, 2]))\nif __name__ == '__main__':\n    f([3])\n";
        let r = check().admit(block, "f", ORIGINAL).unwrap();
        assert_eq!(r.imports, vec!["import numpy as np"]);
        assert!(!r.code.contains("print(") && !r.code.contains("__main__"), "{}", r.code);
    }

    #[test]
    fn rejections_name_their_reason() {
        let rv = check();
        let no_import = "def f(xs, scale=2.0, *, axis=None):\n    return np.mean(xs) * scale\n";
        assert_eq!(rv.admit(no_import, "f", ORIGINAL).unwrap_err().reason, "not_self_contained");
        let helper =
            "import numpy as np\n\ndef helper(x):\n    return x\n\ndef f(xs, scale=2.0, *, axis=None):\n    return helper(np.mean(xs)) * scale\n";
        assert_eq!(rv.admit(helper, "f", ORIGINAL).unwrap_err().reason, "not_self_contained");
        let renamed = "import numpy as np\n\ndef g(xs, scale=2.0, *, axis=None):\n    return np.mean(xs) * scale\n";
        assert_eq!(rv.admit(renamed, "f", ORIGINAL).unwrap_err().reason, "missing_function");
        let new_default = "import numpy as np\n\ndef f(xs, scale=3.0, *, axis=None):\n    return np.mean(xs) * scale\n";
        assert_eq!(rv.admit(new_default, "f", ORIGINAL).unwrap_err().reason, "signature_changed");
        let new_param = "import numpy as np\n\ndef f(xs, scale=2.0, *, axis=None, ddof=0):\n    return np.mean(xs) * scale\n";
        assert_eq!(rv.admit(new_param, "f", ORIGINAL).unwrap_err().reason, "signature_changed");
        assert_eq!(rv.admit("def f(:\n", "f", ORIGINAL).unwrap_err().reason, "syntax_error");
    }

    #[test]
    fn the_previous_program_is_kept_once() {
        let mut r: Record = serde_json::from_str(r#"{"code": "old", "function": "old_f"}"#).unwrap();
        let rewrite = check().admit("import numpy as np\n\ndef f(xs, scale=2.0, *, axis=None):\n    return np.mean(xs)\n", "f", ORIGINAL).unwrap();
        replace_program(&mut r, &rewrite, field::BEFORE_FIX);
        replace_program(&mut r, &rewrite, field::BEFORE_FIX);
        assert_eq!(r["unfixed"]["code"], "old");
        assert_eq!(r.text(field::CODE), Some(rewrite.code.as_str()));
    }
}
