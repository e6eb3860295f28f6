//! Which top-level functions of a Python module are self-contained and use packages, and
//! the runnable module for each: the extraction rules of UnitCoder §3.1.1 as an engine, used
//! by `extract` on corpus code and by the rewrite check on model replies.

use std::collections::{HashMap, HashSet};

use anyhow::{Context as _, Result};
use ruff_python_ast::token::TokenKind;
use ruff_python_ast::{PythonVersion, Stmt};
use ruff_text_size::{Ranged, TextRange};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::hash::content_id;
use crate::python::imports::{collect_literal_constants, collect_module_imports, ImportBinding, ImportKind, ModuleImports};
use crate::python::names::{analyze_function, parameter_count};
use crate::python::{self, LineIndex, BUILTINS};
use crate::shards::reader::BadInput;

/// The built-in package allow-list (`configs/packages.toml`).
pub const DEFAULT_PACKAGES_TOML: &str = include_str!("../../configs/packages.toml");

/// Extraction rules. Every rule is a setting with the documented default.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExtractSettings {
    /// Minimum function length in lines (decorators included).
    pub min_lines: usize,
    pub max_lines: usize,
    /// Minimum number of parameters.
    pub min_args: usize,
    pub require_return_value: bool,
    pub allow_nested_defs: bool,
    pub allow_inner_imports: bool,
    /// Keep only functions that use at least one imported package (the paper's D_pkg).
    pub require_package: bool,
    /// Pull module-level literal constants the function reads into `code`.
    pub include_constants: bool,
    pub dedup: bool,
    /// Syntax newer than this is dropped (`newer_syntax`): `code` must compile on it.
    pub target_python: String,
    /// Package allow-list TOML (`stdlib = [...]`, `third_party = [...]`); empty = built-in.
    pub packages_file: String,
    /// Deepest AST nesting analysed; deeper functions are dropped (`too_deeply_nested`).
    pub max_ast_depth: usize,
    /// Package balancing (0 = off): a function is dropped (`package_quota`) once every
    /// package it uses already has this many kept functions, first ones in input order.
    pub max_per_package: usize,
}

impl Default for ExtractSettings {
    fn default() -> Self {
        Self {
            min_lines: 3,
            max_lines: 200,
            min_args: 1,
            require_return_value: true,
            allow_nested_defs: false,
            allow_inner_imports: false,
            require_package: true,
            include_constants: false,
            dedup: true,
            target_python: "3.11".into(),
            packages_file: String::new(),
            max_ast_depth: 200,
            max_per_package: 0,
        }
    }
}

/// Where a function came from in the input corpus.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceRef {
    /// The input document's id (a JSONL/Parquet id field, or a `.py` file's relative path).
    pub id: String,
    /// The document's path inside its repository, when the input has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// 1-based first line of the function (its first decorator, if any).
    pub start_line: u32,
    /// 1-based last line of the function.
    pub end_line: u32,
    /// The input's `--keep-fields` (licence, repository, stars, …), as they were.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<Map<String, Value>>,
    /// Its place in the corpus: [index of the input file in the whole listing, number of the
    /// candidate within that file]. Ranks' outputs merged in this order come out exactly as
    /// one process writes them (dedup keeps the first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<[u64; 2]>,
}

/// A function kept by `extract`: a runnable module plus provenance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionRecord {
    /// Stable content hash of `code` (hex, 32 chars): the same function text with the same
    /// imports gets the same id in every run.
    pub id: String,
    /// The function's name.
    pub entry_point: String,
    /// The runnable module: `__future__` imports, the other needed imports, optional
    /// constants, then the function's source.
    pub code: String,
    /// The function's verbatim source text, sliced from the file by byte range
    /// (decorators and comments kept).
    pub function: String,
    /// The import lines `code` starts with, in order.
    pub imports: Vec<String>,
    /// Top-level modules the function uses (stdlib and third-party), sorted.
    pub packages: Vec<String>,
    /// Module-level constant assignments pulled into `code` (only with `include_constants`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub constants: Vec<String>,
    /// Whether the function is an `async def`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub is_async: bool,
    pub source: SourceRef,
    /// Hash of the function's normalised tokens (hex): exact duplicates share it, whatever
    /// their formatting, and a record's rank in the LLM stages follows from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dedup_key: Option<String>,
    /// Fields added by other stages or tools; kept as they are.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Which top-level modules a function may use.
#[derive(Debug, Clone, Default)]
pub struct PackageAllowList {
    pub stdlib: HashSet<String>,
    pub third_party: HashSet<String>,
}

impl PackageAllowList {
    pub fn parse(text: &str) -> Result<Self> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct File {
            #[serde(default)]
            stdlib: Vec<String>,
            #[serde(default)]
            third_party: Vec<String>,
        }
        let f: File = toml::from_str(text).context("invalid package allow-list")?;
        Ok(Self { stdlib: f.stdlib.into_iter().collect(), third_party: f.third_party.into_iter().collect() })
    }

    pub fn load(path: &str) -> Result<Self> {
        if path.is_empty() {
            return Self::parse(DEFAULT_PACKAGES_TOML);
        }
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read package allow-list {path}"))?;
        Self::parse(&text).with_context(|| format!("package allow-list {path}"))
    }

    pub fn allows(&self, module_root: &str) -> bool {
        self.stdlib.contains(module_root) || self.third_party.contains(module_root)
    }
}

/// Why a candidate function was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DropReason {
    NoArguments,
    TooShort,
    TooLong,
    NewerSyntax,
    TooDeeplyNested,
    NoReturnValue,
    NestedDefinition,
    InnerImport,
    RelativeImport,
    StarImport,
    UnresolvedName,
    PackageNotAllowed,
    NoPackage,
    Duplicate,
    PackageQuota,
}

impl DropReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::NoArguments => "no_arguments",
            DropReason::TooShort => "too_short",
            DropReason::TooLong => "too_long",
            DropReason::NewerSyntax => "newer_syntax",
            DropReason::TooDeeplyNested => "too_deeply_nested",
            DropReason::NoReturnValue => "no_return_value",
            DropReason::NestedDefinition => "nested_definition",
            DropReason::InnerImport => "inner_import",
            DropReason::RelativeImport => "relative_import",
            DropReason::StarImport => "star_import",
            DropReason::UnresolvedName => "unresolved_name",
            DropReason::PackageNotAllowed => "package_not_allowed",
            DropReason::NoPackage => "no_package",
            DropReason::Duplicate => "duplicate",
            DropReason::PackageQuota => "package_quota",
        }
    }
}

/// One top-level function and what became of it.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub name: String,
    pub source: SourceRef,
    pub function: String,
    pub outcome: Result<Kept, (DropReason, String)>,
}

#[derive(Debug, Clone)]
pub struct Kept {
    pub record: FunctionRecord,
    /// Hash of the function's normalised token text, for dedup.
    pub norm_hash: [u8; 16],
}

/// Settings in the form the per-file work needs.
pub struct Extractor {
    pub settings: ExtractSettings,
    pub allow: PackageAllowList,
    pub target: PythonVersion,
}

impl Extractor {
    pub fn new(settings: ExtractSettings, allow: PackageAllowList) -> Result<Self> {
        let target =
            python::parse_version(&settings.target_python).with_context(|| format!("target_python {:?}: expected X.Y", settings.target_python))?;
        Ok(Self { settings, allow, target })
    }

    /// Extract candidates from one document. `Err` means the document itself is unusable.
    pub fn extract(&self, source: &str, doc_id: &str, doc_path: Option<&str>) -> Result<Vec<Candidate>, BadInput> {
        let source = source.strip_prefix('\u{feff}').unwrap_or(source);
        if source.trim().is_empty() {
            return Err(BadInput::new("empty_file", "no code"));
        }
        // Step 1: parse (pathologically nested files are rejected first: CPython refuses more
        // than 200 nested brackets, so they can never run anyway).
        if let Some(depth) = python::too_deep_to_parse(source) {
            return Err(BadInput::new("too_deeply_nested", format!("{depth} nested brackets")));
        }
        let parsed = python::parse_module(source, self.target);
        let mut lines = LineIndex::new(source);
        if let Some(err) = parsed.errors().first() {
            let line = lines.line_of(err.location.start().to_usize());
            let reason = if python::py2::looks_like_python2(source) { "python2" } else { "syntax_error" };
            return Err(BadInput::new(reason, format!("line {line}: {}", err.error)));
        }
        let module = parsed.suite();
        let imports = collect_module_imports(module);
        let constants = if self.settings.include_constants { collect_literal_constants(module, source) } else { HashMap::new() };

        // Step 2: every top-level def is a candidate.
        let mut candidates = Vec::new();
        for stmt in module {
            let Stmt::FunctionDef(func) = stmt else { continue };
            let range = func.range();
            let (start, end) = (range.start().to_usize(), range.end().to_usize());
            let mut function = source[start..end].to_string();
            function.push('\n');
            let source_ref = SourceRef {
                id: doc_id.to_string(),
                path: doc_path.map(str::to_string),
                start_line: lines.line_of(start),
                end_line: lines.line_of(end.saturating_sub(1).max(start)),
                meta: None,
                position: None,
            };
            let newer_syntax = parsed.unsupported_syntax_errors().iter().find(|e| range.contains_range(e.range));
            let outcome = self.judge(func, &function, &source_ref, &imports, &constants, newer_syntax.map(|e| e.to_string()));
            let outcome = outcome.map(|record| Kept { norm_hash: normalized_hash(source, parsed.tokens().in_range(range)), record });
            candidates.push(Candidate { name: func.name.to_string(), source: source_ref, function, outcome });
        }
        Ok(candidates)
    }

    /// Steps 3–5 for one function: keep (with its runnable record) or drop with a reason.
    fn judge(
        &self,
        func: &ruff_python_ast::StmtFunctionDef,
        function: &str,
        source_ref: &SourceRef,
        imports: &ModuleImports,
        constants: &HashMap<String, String>,
        newer_syntax: Option<String>,
    ) -> Result<FunctionRecord, (DropReason, String)> {
        let s = &self.settings;
        let drop = |reason: DropReason, detail: String| Err((reason, detail));
        let name = func.name.as_str();

        // Step 3: shape rules.
        let n_params = parameter_count(&func.parameters);
        if n_params < s.min_args {
            return drop(DropReason::NoArguments, format!("{n_params} parameters < {}", s.min_args));
        }
        let n_lines = (source_ref.end_line - source_ref.start_line + 1) as usize;
        if n_lines < s.min_lines {
            return drop(DropReason::TooShort, format!("{n_lines} lines < {}", s.min_lines));
        }
        if n_lines > s.max_lines {
            return drop(DropReason::TooLong, format!("{n_lines} lines > {}", s.max_lines));
        }
        if let Some(detail) = newer_syntax {
            return drop(DropReason::NewerSyntax, detail);
        }
        let facts = analyze_function(func, imports.future_annotations, s.max_ast_depth);
        if facts.too_deep {
            return drop(DropReason::TooDeeplyNested, format!("AST deeper than {}", s.max_ast_depth));
        }
        if s.require_return_value && !facts.has_return_value {
            return drop(DropReason::NoReturnValue, String::new());
        }
        if !s.allow_nested_defs && (facts.has_nested_def || facts.has_nested_class) {
            return drop(DropReason::NestedDefinition, String::new());
        }
        if !facts.inner_imports.is_empty() {
            if !s.allow_inner_imports {
                return drop(DropReason::InnerImport, String::new());
            }
            if facts.inner_imports.iter().any(|i| i.relative) {
                return drop(DropReason::RelativeImport, "relative import inside the function".into());
            }
        }

        // Step 3 (cont.): every free name must resolve.
        let mut attached: Vec<&ImportBinding> = Vec::new();
        // Packages the function uses outside annotations: those make it D_pkg.
        let mut used: Vec<String> = facts.inner_imports.iter().map(|i| i.module_root.clone()).collect();
        let mut used_constants: Vec<&str> = Vec::new();
        let mut unresolved: Vec<&str> = Vec::new();
        for (free, &hard) in &facts.free {
            let free = free.as_str();
            if free == name || BUILTINS.contains(free) {
                continue;
            }
            if let Some(indices) = imports.by_name.get(free) {
                let chosen = self.choose_imports(imports, indices);
                if facts.runtime.contains(free) {
                    used.extend(chosen.iter().map(|b| b.module_root.clone()));
                }
                attached.extend(chosen);
            } else if let Some(text) = constants.get(free) {
                used_constants.push(text);
            } else if hard {
                unresolved.push(free);
            }
        }
        if !unresolved.is_empty() {
            let reason = if imports.star_modules.is_empty() { DropReason::UnresolvedName } else { DropReason::StarImport };
            return drop(reason, unresolved.join(", "));
        }
        if let Some(rel) = attached.iter().find(|b| b.relative) {
            return drop(DropReason::RelativeImport, rel.line.clone());
        }

        // Step 4: every package it imports on the allow-list; at least one used outside
        // annotations (`def f(x: List[int])` does not use `typing` in the paper's sense).
        let mut imported: Vec<String> = attached.iter().map(|b| b.module_root.clone()).collect();
        imported.extend(used.iter().cloned());
        imported.sort();
        imported.dedup();
        let refused: Vec<&str> = imported.iter().filter(|p| !self.allow.allows(p)).map(String::as_str).collect();
        if !refused.is_empty() {
            return drop(DropReason::PackageNotAllowed, refused.join(", "));
        }
        let mut packages = used;
        packages.sort();
        packages.dedup();
        if s.require_package && packages.is_empty() {
            let detail = if imported.is_empty() { String::new() } else { format!("{} only in annotations", imported.join(", ")) };
            return drop(DropReason::NoPackage, detail);
        }

        // Step 5: the runnable module.
        used_constants.sort_unstable();
        used_constants.dedup();
        let (code, import_lines) = runnable_module(&imports.future, &attached, &used_constants, function);
        Ok(FunctionRecord {
            id: content_id(&code),
            entry_point: name.to_string(),
            code,
            function: function.to_string(),
            imports: import_lines,
            packages,
            constants: used_constants.into_iter().map(str::to_string).collect(),
            is_async: func.is_async,
            source: source_ref.clone(),
            dedup_key: None,
            extra: Default::default(),
        })
    }

    /// The import(s) to attach for a name. `import a.b` and `import a.c` both bind `a` and
    /// are all needed; other repeated bindings are alternatives (`try: import simplejson as
    /// json / except: import json`): take the last allowed one, as the module would at run
    /// time when the preferred one is missing.
    fn choose_imports<'m>(&self, imports: &'m ModuleImports, indices: &[usize]) -> Vec<&'m ImportBinding> {
        let bindings: Vec<&ImportBinding> = indices.iter().map(|&i| &imports.bindings[i]).collect();
        if bindings.iter().all(|b| b.kind == ImportKind::Plain) {
            return bindings;
        }
        let usable = bindings.iter().rev().find(|b| !b.relative && self.allow.allows(&b.module_root));
        vec![usable.copied().unwrap_or(bindings[bindings.len() - 1])]
    }
}

/// The runnable module of a kept function: `__future__` imports, then plain imports, then
/// `from` imports (each group sorted, no repeats), the constants it reads, the function.
/// Returns the module and its import lines.
fn runnable_module(future: &[String], attached: &[&ImportBinding], constants: &[&str], function: &str) -> (String, Vec<String>) {
    let mut plain: Vec<&str> = attached.iter().filter(|b| b.kind != ImportKind::From).map(|b| b.line.as_str()).collect();
    let mut from: Vec<&str> = attached.iter().filter(|b| b.kind == ImportKind::From).map(|b| b.line.as_str()).collect();
    plain.sort_unstable();
    plain.dedup();
    from.sort_unstable();
    from.dedup();
    let import_lines: Vec<String> = future.iter().map(String::as_str).chain(plain).chain(from).map(str::to_string).collect();
    let mut code = String::with_capacity(function.len() + 256);
    for line in &import_lines {
        code.push_str(line);
        code.push('\n');
    }
    if !constants.is_empty() {
        code.push('\n');
        for c in constants {
            code.push_str(c);
            code.push('\n');
        }
    }
    if !code.is_empty() {
        code.push_str("\n\n");
    }
    code.push_str(function);
    (code, import_lines)
}

/// Hash of the function's tokens without comments and formatting: two copies that differ
/// only in comments, blank lines or spacing hash alike.
fn normalized_hash(source: &str, tokens: &[ruff_python_ast::token::Token]) -> [u8; 16] {
    let mut h = blake3::Hasher::new();
    for token in tokens {
        match token.kind() {
            TokenKind::Comment | TokenKind::NonLogicalNewline => continue,
            TokenKind::Newline => h.update(b"\n"),
            TokenKind::Indent => h.update(b"\x01"),
            TokenKind::Dedent => h.update(b"\x02"),
            _ => {
                let r: TextRange = token.range();
                h.update(&source.as_bytes()[r.start().to_usize()..r.end().to_usize()]);
                h.update(b" ")
            }
        };
    }
    let mut out = [0u8; 16];
    out.copy_from_slice(&h.finalize().as_bytes()[..16]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn extractor_with(f: impl FnOnce(&mut ExtractSettings)) -> Extractor {
        let mut s = ExtractSettings::default();
        f(&mut s);
        Extractor::new(s, PackageAllowList::parse(DEFAULT_PACKAGES_TOML).expect("built-in list")).expect("extractor")
    }

    fn run(src: &str) -> Vec<Candidate> {
        extractor_with(|_| {}).extract(src, "doc", Some("pkg/mod.py")).expect("parses")
    }

    fn kept(src: &str, name: &str) -> FunctionRecord {
        let c = run(src).into_iter().find(|c| c.name == name).expect("candidate");
        match c.outcome {
            Ok(k) => k.record,
            Err(e) => panic!("{name} dropped: {e:?}"),
        }
    }

    fn dropped(src: &str, name: &str) -> (DropReason, String) {
        let c = run(src).into_iter().find(|c| c.name == name).expect("candidate");
        match c.outcome {
            Ok(_) => panic!("{name} kept"),
            Err(e) => e,
        }
    }

    #[test]
    fn import_forms_bind_the_right_names() {
        let src = "import os.path\nimport numpy as np\nfrom collections import OrderedDict as OD, Counter\nimport json, re\n\n\
                   def f(a):\n    x = os.path.join(a, 'b')\n    y = np.array([1])\n    return OD(), x, y\n";
        let r = kept(src, "f");
        assert_eq!(r.imports, ["import numpy as np", "import os.path", "from collections import OrderedDict as OD"]);
        assert_eq!(r.packages, ["collections", "numpy", "os"]);
        assert!(r.code.starts_with("import numpy as np\nimport os.path\nfrom collections import OrderedDict as OD\n\n\ndef f(a):"));
    }

    #[test]
    fn imports_inside_try_and_if_blocks() {
        let src = "try:\n    import simplejson as json\nexcept ImportError:\n    import json\nif True:\n    from math import sqrt\n\n\
                   def f(a):\n    b = sqrt(a)\n    return json.dumps(b)\n";
        let r = kept(src, "f");
        // simplejson is not on the allow-list: the stdlib fallback is attached.
        assert_eq!(r.imports, ["import json", "from math import sqrt"]);
    }

    #[test]
    fn plain_submodule_imports_are_all_attached() {
        let src = "import xml.dom\nimport xml.etree.ElementTree\n\ndef f(a):\n    t = xml.etree.ElementTree.fromstring(a)\n    return xml.dom, t\n";
        assert_eq!(kept(src, "f").imports, ["import xml.dom", "import xml.etree.ElementTree"]);
    }

    #[test]
    fn future_imports_come_first() {
        let src = "import re\nfrom __future__ import annotations\n\ndef f(a: Unknown) -> re.Pattern:\n    p = re.compile(a)\n    return p\n";
        let r = kept(src, "f");
        assert_eq!(r.imports, ["from __future__ import annotations", "import re"]);
        assert!(r.code.starts_with("from __future__ import annotations\nimport re\n"));
    }

    #[test]
    fn type_checking_imports_are_not_attached() {
        // pandas' searchsorted: `NumpySorter` exists only for type checkers.
        let src = "from __future__ import annotations\nfrom typing import TYPE_CHECKING\nimport numpy as np\n\
                   if TYPE_CHECKING:\n    from pandas._typing import NumpySorter\n\n\
                   def searchsorted(arr, value, sorter: NumpySorter = None):\n    idx = np.searchsorted(arr, value, sorter=sorter)\n    return idx\n";
        let r = kept(src, "searchsorted");
        assert_eq!(r.imports, ["from __future__ import annotations", "import numpy as np"]);
        // Without postponed annotations the signature needs the name at run time: dropped.
        let eager = src.replacen("from __future__ import annotations\n", "", 1);
        assert_eq!(dropped(&eager, "searchsorted"), (DropReason::UnresolvedName, "NumpySorter".into()));
        // The same with `typing.TYPE_CHECKING`, and a runtime use of such a name drops it.
        let src = "import typing\nimport os\nif typing.TYPE_CHECKING:\n    from os import PathLike\n\ndef f(a):\n    b = os.sep\n    return PathLike, a, b\n";
        assert_eq!(dropped(src, "f"), (DropReason::UnresolvedName, "PathLike".into()));
    }

    #[test]
    fn a_function_that_sets_a_module_global_needs_it() {
        let src = "import re\n_typeprog = None\n\ndef _splittype(url):\n    global _typeprog\n    if _typeprog is None:\n        _typeprog = re.compile('([^/:]+):(.*)', re.DOTALL)\n    match = _typeprog.match(url)\n    return match\n";
        assert_eq!(dropped(src, "_splittype"), (DropReason::UnresolvedName, "_typeprog".into()));
        let with_constants = extractor_with(|s| s.include_constants = true);
        let c = with_constants.extract(src, "doc", None).unwrap().into_iter().next().unwrap();
        assert!(c.outcome.unwrap().record.code.contains("_typeprog = None\n"));
    }

    #[test]
    fn typing_in_annotations_only_is_not_package_use() {
        let src = "from typing import List, Optional\nimport typing\nimport os\n\n\
                   def only_hints(a: List[int]) -> Optional[int]:\n    b = a[0]\n    return b\n\n\
                   def with_os(a: List[str]) -> str:\n    b = os.sep\n    return b.join(a)\n\n\
                   def casts(a):\n    b = typing.cast(int, a)\n    return b\n";
        assert_eq!(dropped(src, "only_hints"), (DropReason::NoPackage, "typing only in annotations".into()));
        let r = kept(src, "with_os");
        assert_eq!(r.packages, ["os"], "typing is imported for the signature but not counted");
        assert!(r.imports.contains(&"from typing import List".to_string()));
        assert_eq!(kept(src, "casts").packages, ["typing"], "a runtime call of a typing API counts");
    }

    #[test]
    fn async_def_and_decorators_kept_verbatim() {
        let src = "import asyncio\nimport functools\n\n@functools.lru_cache(maxsize=None)  # cache it\n\
                   async def fetch(url):\n    # wait a little\n    await asyncio.sleep(0)   # yield\n    return url\n\nx = 1\n";
        let r = kept(src, "fetch");
        assert!(r.is_async);
        assert_eq!(
            r.function,
            "@functools.lru_cache(maxsize=None)  # cache it\nasync def fetch(url):\n    # wait a little\n    await asyncio.sleep(0)   # yield\n    return url\n"
        );
        assert_eq!((r.source.start_line, r.source.end_line), (4, 8));
        assert_eq!(r.source.path.as_deref(), Some("pkg/mod.py"));
    }

    #[test]
    fn unresolved_names_drop_only_that_function() {
        let src = "import os\nHELPER = 3\n\ndef uses_helper(a):\n    b = os.sep\n    return helper(a) + b\n\n\
                   def fine(a):\n    b = os.sep\n    return a + b\n";
        assert_eq!(dropped(src, "uses_helper"), (DropReason::UnresolvedName, "helper".into()));
        kept(src, "fine");
    }

    #[test]
    fn allow_list_is_per_function() {
        let src = "import os\nimport torch\n\ndef a(x):\n    y = torch.tensor(x)\n    return y\n\ndef b(x):\n    y = os.sep\n    return x + y\n";
        assert_eq!(dropped(src, "a"), (DropReason::PackageNotAllowed, "torch".into()));
        assert_eq!(kept(src, "b").packages, ["os"]);
    }

    #[test]
    fn relative_and_star_imports() {
        let src = "from .utils import helper\nfrom numpy import *\nimport os\n\ndef a(x):\n    y = helper(x)\n    return y\n\n\
                   def b(x):\n    y = array(x)\n    return y\n";
        assert_eq!(dropped(src, "a").0, DropReason::RelativeImport);
        assert_eq!(dropped(src, "b"), (DropReason::StarImport, "array".into()));
    }

    #[test]
    fn shape_rules() {
        let src = "import os\n\ndef no_args():\n    x = os.sep\n    return x\n\ndef short(a):\n    return os.sep\n\n\
                   def no_return(a):\n    x = os.sep\n    print(x)\n\ndef nested(a):\n    def g():\n        return os.sep\n    return g\n\n\
                   def inner(a):\n    import json\n    return json.dumps(a)\n\ndef no_pkg(a):\n    b = a * 2\n    return b\n";
        assert_eq!(dropped(src, "no_args").0, DropReason::NoArguments);
        assert_eq!(dropped(src, "short").0, DropReason::TooShort);
        assert_eq!(dropped(src, "no_return").0, DropReason::NoReturnValue);
        assert_eq!(dropped(src, "nested").0, DropReason::NestedDefinition);
        assert_eq!(dropped(src, "inner").0, DropReason::InnerImport);
        assert_eq!(dropped(src, "no_pkg").0, DropReason::NoPackage);

        let lenient = extractor_with(|s| {
            s.allow_nested_defs = true;
            s.allow_inner_imports = true;
            s.require_package = false;
            s.min_lines = 1;
        });
        let all = lenient.extract(src, "doc", None).expect("parses");
        let kept: Vec<&str> = all.iter().filter(|c| c.outcome.is_ok()).map(|c| c.name.as_str()).collect();
        assert_eq!(kept, ["short", "nested", "inner", "no_pkg"]);
        let inner = all.iter().find(|c| c.name == "inner").and_then(|c| c.outcome.as_ref().ok()).expect("inner kept");
        assert_eq!(inner.record.packages, ["json"]);
    }

    #[test]
    fn max_lines() {
        let body: String = (0..10).map(|i| format!("    x{i} = os.sep\n")).collect();
        let src = format!("import os\n\ndef long(a):\n{body}    return a\n");
        let strict = extractor_with(|s| s.max_lines = 5);
        let c = &strict.extract(&src, "d", None).expect("parses")[0];
        assert_eq!(c.outcome.as_ref().err().map(|e| e.0), Some(DropReason::TooLong));
    }

    #[test]
    fn constants_only_when_enabled() {
        let src = "import os\nSEP = '/'\nLIMITS = (1, 2)\nDYN = os.getcwd()\n\ndef f(a):\n    b = os.path.join(a, SEP)\n    return b, LIMITS\n\n\
                   def g(a):\n    b = os.sep\n    return DYN + b\n";
        assert_eq!(dropped(src, "f").0, DropReason::UnresolvedName);
        let with = extractor_with(|s| s.include_constants = true);
        let all = with.extract(src, "d", None).expect("parses");
        let f = all[0].outcome.as_ref().expect("f kept");
        assert_eq!(f.record.constants, ["LIMITS = (1, 2)", "SEP = '/'"]);
        assert!(f.record.code.contains("LIMITS = (1, 2)\nSEP = '/'\n\n\ndef f(a):"));
        // A non-literal module value is never pulled in.
        assert_eq!(all[1].outcome.as_ref().err().map(|e| e.0), Some(DropReason::UnresolvedName));
    }

    #[test]
    fn newer_syntax_is_dropped_for_target() {
        let src = "import os\n\ndef f[T](a: T) -> T:\n    b = os.sep\n    return a\n\ndef g(a):\n    b = os.sep\n    return f\"{a[\"k\"]}\" + b\n";
        assert_eq!(dropped(src, "f").0, DropReason::NewerSyntax);
        assert_eq!(dropped(src, "g").0, DropReason::NewerSyntax);
        let new = extractor_with(|s| s.target_python = "3.12".into());
        let all = new.extract(src, "d", None).expect("parses");
        assert!(all[1].outcome.is_ok());
    }

    #[test]
    fn builtins_recursion_and_self_reference_resolve() {
        let src = "import math\n\ndef fact(n):\n    if n <= 1:\n        return 1\n    return n * fact(n - 1) + math.floor(len(str(n)) * 0)\n";
        kept(src, "fact");
    }

    #[test]
    fn bad_documents() {
        let ex = extractor_with(|_| {});
        assert_eq!(ex.extract("  \n\n", "d", None).err().map(|e| e.reason), Some("empty_file"));
        assert_eq!(ex.extract("def f(:\n  pass\n", "d", None).err().map(|e| e.reason), Some("syntax_error"));
        assert_eq!(ex.extract("import os\nprint 'hi'\n", "d", None).err().map(|e| e.reason), Some("python2"));
        let deep = format!("x = {}1{}\n", "(".repeat(100_000), ")".repeat(100_000));
        assert_eq!(ex.extract(&deep, "d", None).err().map(|e| e.reason), Some("too_deeply_nested"));
        let err = ex.extract("import os\n\n\nx = (\n", "d", None).expect_err("error");
        assert!(err.detail.starts_with("line "), "{}", err.detail);
    }

    #[test]
    fn normalized_hash_ignores_comments_and_spacing() {
        let a = "import os\n\ndef f(a):\n    b = os.sep  # sep\n\n    return a+b\n";
        let b = "import os\n\ndef f(a):\n    # different comment\n    b = os.sep\n    return a + b\n";
        let c = "import os\n\ndef f(a):\n    b = os.sep\n    return a - b\n";
        let h = |s: &str| run(s)[0].outcome.as_ref().expect("kept").norm_hash;
        assert_eq!(h(a), h(b));
        assert_ne!(h(a), h(c));
    }

    #[test]
    fn ids_are_content_hashes() {
        let src = "import os\n\ndef f(a):\n    b = os.sep\n    return a + b\n";
        let r1 = kept(src, "f");
        let r2 = extractor_with(|_| {}).extract(src, "other-doc", None).expect("parses")[0].outcome.clone().expect("kept").record;
        assert_eq!(r1.id, r2.id);
        assert_eq!(r1.id, content_id(&r1.code));
        assert_eq!(r1.id.len(), 32);
    }
}
