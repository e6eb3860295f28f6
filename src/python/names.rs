//! Which free names a top-level function reads, following Python's scoping rules.
//!
//! A name is *free* when the function reads it but no enclosing scope inside the function
//! binds it: it must then come from the module (an import, a constant) or from builtins.
//! Scopes are modelled as Python does: function and lambda bodies, comprehensions (whose
//! first iterable is evaluated outside; walrus targets bind in the enclosing function), and
//! class bodies (whose bindings nested functions do not see). Decorators, default values and
//! signature annotations are evaluated at definition time in module scope.
//!
//! Annotations that are never evaluated (local variable annotations, or every annotation
//! under `from __future__ import annotations`) are "soft": a name used only there may stay
//! unresolved without breaking the function at run time.

use std::collections::{BTreeMap, HashSet};

use ruff_python_ast::visitor::{self, Visitor};
use ruff_python_ast::{self as ast, Expr, ExprContext, Parameters, Pattern, Stmt};

/// An import statement inside the function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InnerImport {
    pub module_root: String,
    pub relative: bool,
}

/// What the analysis found out about one function.
#[derive(Debug, Default, Clone)]
pub struct FunctionFacts {
    /// Free names → `true` when some use is evaluated at run time ("hard").
    pub free: BTreeMap<String, bool>,
    /// The function itself (not a nested scope) has `return <value>`.
    pub has_return_value: bool,
    pub has_nested_def: bool,
    pub has_nested_class: bool,
    pub inner_imports: Vec<InnerImport>,
    /// The AST nests deeper than the limit; the analysis stopped descending there.
    pub too_deep: bool,
    /// Names read somewhere outside an annotation: a package used only in annotations
    /// (`typing` most often) is imported but not *used* in the paper's sense.
    pub runtime: HashSet<String>,
}

/// Analyse a top-level function.
pub fn analyze_function(func: &ast::StmtFunctionDef, future_annotations: bool, max_depth: usize) -> FunctionFacts {
    let mut shared = Shared { max_depth, ..Shared::default() };
    let mut free: BTreeMap<String, bool> = BTreeMap::new();
    let mut add = |names: Vec<(String, bool)>| {
        for (name, hard) in names {
            *free.entry(name).or_insert(false) |= hard;
        }
    };

    // Evaluated when the `def` runs, in module scope.
    let mut at_definition = Walker::new(ScopeKind::Module, false, future_annotations, 0, &mut shared);
    for decorator in &func.decorator_list {
        at_definition.visit_expr(&decorator.expression);
    }
    at_definition.visit_signature(&func.parameters, func.returns.as_deref());
    add(at_definition.finish().0);

    // The body, with the parameters bound.
    let mut body = Walker::new(ScopeKind::Function, true, future_annotations, 0, &mut shared);
    body.bound.extend(parameter_names(&func.parameters));
    body.visit_body(&func.body);
    add(body.finish().0);

    FunctionFacts {
        free,
        has_return_value: shared.has_return_value,
        has_nested_def: shared.has_nested_def,
        has_nested_class: shared.has_nested_class,
        inner_imports: shared.inner_imports,
        too_deep: shared.too_deep,
        runtime: shared.runtime,
    }
}

/// Number of parameters of any kind (positional-only, normal, `*args`, keyword-only, `**kw`).
pub fn parameter_count(params: &Parameters) -> usize {
    params.posonlyargs.len()
        + params.args.len()
        + params.kwonlyargs.len()
        + usize::from(params.vararg.is_some())
        + usize::from(params.kwarg.is_some())
}

fn parameter_names(params: &Parameters) -> Vec<String> {
    let mut names: Vec<String> =
        params.posonlyargs.iter().chain(&params.args).chain(&params.kwonlyargs).map(|p| p.parameter.name.to_string()).collect();
    names.extend(params.vararg.iter().map(|p| p.name.to_string()));
    names.extend(params.kwarg.iter().map(|p| p.name.to_string()));
    names
}

#[derive(Default)]
struct Shared {
    max_depth: usize,
    has_return_value: bool,
    has_nested_def: bool,
    has_nested_class: bool,
    inner_imports: Vec<InnerImport>,
    too_deep: bool,
    runtime: HashSet<String>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum ScopeKind {
    /// Definition-time context of the analysed function: every load is free.
    Module,
    Function,
    Lambda,
    Comprehension,
    Class,
}

struct Walker<'s> {
    kind: ScopeKind,
    /// The analysed function's own body (where `return <value>` counts).
    top: bool,
    future_annotations: bool,
    bound: HashSet<String>,
    nonlocal: HashSet<String>,
    /// Names declared `global`: assigning them binds the module's name, not a local.
    global: HashSet<String>,
    loads: Vec<(String, bool)>,
    /// Free names of functions nested in a class body: they skip the class's bindings.
    bypass: Vec<(String, bool)>,
    /// Walrus targets in a comprehension, which bind in the enclosing function.
    escaping: Vec<String>,
    soft: bool,
    /// Inside an annotation (evaluated or not).
    annotation: bool,
    depth: usize,
    shared: &'s mut Shared,
}

impl<'s> Walker<'s> {
    fn new(kind: ScopeKind, top: bool, future_annotations: bool, depth: usize, shared: &'s mut Shared) -> Self {
        Walker {
            kind,
            top,
            future_annotations,
            bound: HashSet::new(),
            nonlocal: HashSet::new(),
            global: HashSet::new(),
            loads: Vec::new(),
            bypass: Vec::new(),
            escaping: Vec::new(),
            soft: false,
            annotation: false,
            depth,
            shared,
        }
    }

    /// Free names of this scope, and walrus targets that bind in the enclosing scope.
    fn finish(self) -> (Vec<(String, bool)>, Vec<String>) {
        let mut free: Vec<(String, bool)> = match self.kind {
            ScopeKind::Module => self.loads,
            _ => self.loads.into_iter().filter(|(n, _)| !self.bound.contains(n) || self.nonlocal.contains(n) || self.global.contains(n)).collect(),
        };
        free.extend(self.bypass);
        (free, self.escaping)
    }

    fn child(&mut self, kind: ScopeKind) -> Walker<'_> {
        Walker::new(kind, false, self.future_annotations, self.depth, self.shared)
    }

    /// Merge a nested scope's free names into this one.
    fn absorb(&mut self, free: Vec<(String, bool)>, escaping: Vec<String>) {
        if self.kind == ScopeKind::Class {
            self.bypass.extend(free);
        } else {
            self.loads.extend(free);
        }
        if self.kind == ScopeKind::Comprehension {
            self.escaping.extend(escaping);
        } else {
            self.bound.extend(escaping);
        }
    }

    fn load(&mut self, name: &str) {
        self.loads.push((name.to_string(), !self.soft));
        if !self.annotation {
            self.shared.runtime.insert(name.to_string());
        }
    }

    fn visit_annotation_with(&mut self, expr: &Expr, soft: bool) {
        let saved = (self.soft, self.annotation);
        self.soft |= soft;
        self.annotation = true;
        self.visit_expr(expr);
        (self.soft, self.annotation) = saved;
    }

    /// Defaults and annotations of a signature, evaluated in the current scope.
    fn visit_signature(&mut self, params: &Parameters, returns: Option<&Expr>) {
        let soft = self.future_annotations;
        for p in params.posonlyargs.iter().chain(&params.args).chain(&params.kwonlyargs) {
            if let Some(default) = &p.default {
                self.visit_expr(default);
            }
            if let Some(annotation) = &p.parameter.annotation {
                self.visit_annotation_with(annotation, soft);
            }
        }
        for p in params.vararg.iter().chain(params.kwarg.iter()) {
            if let Some(annotation) = &p.annotation {
                self.visit_annotation_with(annotation, soft);
            }
        }
        if let Some(returns) = returns {
            self.visit_annotation_with(returns, soft);
        }
    }

    fn visit_comprehension_scope(&mut self, generators: &[ast::Comprehension], elements: &[&Expr]) {
        let Some(first) = generators.first() else { return };
        self.visit_expr(&first.iter);
        let mut child = self.child(ScopeKind::Comprehension);
        for (i, generator) in generators.iter().enumerate() {
            if i > 0 {
                child.visit_expr(&generator.iter);
            }
            child.visit_expr(&generator.target);
            for condition in &generator.ifs {
                child.visit_expr(condition);
            }
        }
        for element in elements {
            child.visit_expr(element);
        }
        let (free, escaping) = child.finish();
        self.absorb(free, escaping);
    }

    fn enter(&mut self) -> bool {
        if self.depth >= self.shared.max_depth {
            self.shared.too_deep = true;
            return false;
        }
        self.depth += 1;
        true
    }
}

impl<'a> Visitor<'a> for Walker<'_> {
    fn visit_stmt(&mut self, stmt: &'a Stmt) {
        if !self.enter() {
            return;
        }
        match stmt {
            Stmt::FunctionDef(f) => {
                self.shared.has_nested_def = true;
                self.bound.insert(f.name.to_string());
                for decorator in &f.decorator_list {
                    self.visit_expr(&decorator.expression);
                }
                self.visit_signature(&f.parameters, f.returns.as_deref());
                let mut child = self.child(ScopeKind::Function);
                child.bound.extend(parameter_names(&f.parameters));
                child.visit_body(&f.body);
                let (free, _) = child.finish();
                self.absorb(free, Vec::new());
            }
            Stmt::ClassDef(c) => {
                self.shared.has_nested_class = true;
                self.bound.insert(c.name.to_string());
                for decorator in &c.decorator_list {
                    self.visit_expr(&decorator.expression);
                }
                if let Some(arguments) = &c.arguments {
                    self.visit_arguments(arguments);
                }
                let mut child = self.child(ScopeKind::Class);
                child.visit_body(&c.body);
                let (free, _) = child.finish();
                self.absorb(free, Vec::new());
            }
            Stmt::Import(imp) => {
                for alias in &imp.names {
                    let module = alias.name.as_str();
                    let root = module.split('.').next().unwrap_or(module).to_string();
                    let bound = alias.asname.as_ref().map(|a| a.to_string()).unwrap_or_else(|| root.clone());
                    self.bound.insert(bound);
                    self.shared.inner_imports.push(InnerImport { module_root: root, relative: false });
                }
            }
            Stmt::ImportFrom(imp) => {
                let module = imp.module.as_ref().map(|m| m.as_str()).unwrap_or("");
                let root = module.split('.').next().unwrap_or("").to_string();
                for alias in &imp.names {
                    self.bound.insert(alias.asname.as_ref().unwrap_or(&alias.name).to_string());
                }
                self.shared.inner_imports.push(InnerImport { module_root: root, relative: imp.level > 0 });
            }
            // `global X` then `X = ...` writes the module's X, which must exist there (a
            // kept function without it raises NameError): X is a free, hard name.
            Stmt::Global(g) => {
                self.global.extend(g.names.iter().map(|i| i.to_string()));
                for name in &g.names {
                    self.load(name.as_str());
                }
            }
            Stmt::Nonlocal(n) => {
                self.nonlocal.extend(n.names.iter().map(|i| i.to_string()));
                for name in &n.names {
                    self.load(name.as_str());
                }
            }
            Stmt::Return(r) => {
                if self.top && r.value.is_some() {
                    self.shared.has_return_value = true;
                }
                visitor::walk_stmt(self, stmt);
            }
            Stmt::AnnAssign(a) => {
                // Local variable annotations are never evaluated; class-level ones are
                // (unless `from __future__ import annotations`).
                let soft = self.kind != ScopeKind::Class || self.future_annotations;
                self.visit_annotation_with(&a.annotation, soft);
                if let Some(value) = &a.value {
                    self.visit_expr(value);
                }
                self.visit_expr(&a.target);
            }
            _ => visitor::walk_stmt(self, stmt),
        }
        self.depth -= 1;
    }

    fn visit_expr(&mut self, expr: &'a Expr) {
        if !self.enter() {
            return;
        }
        match expr {
            Expr::Name(name) => match name.ctx {
                ExprContext::Load => self.load(name.id.as_str()),
                ExprContext::Store | ExprContext::Del => {
                    self.bound.insert(name.id.to_string());
                }
                ExprContext::Invalid => {}
            },
            Expr::Named(named) => {
                self.visit_expr(&named.value);
                if let Expr::Name(target) = named.target.as_ref() {
                    if self.kind == ScopeKind::Comprehension {
                        self.escaping.push(target.id.to_string());
                    } else {
                        self.bound.insert(target.id.to_string());
                    }
                }
            }
            Expr::Lambda(lambda) => {
                let mut child = self.child(ScopeKind::Lambda);
                if let Some(params) = &lambda.parameters {
                    child.bound.extend(parameter_names(params));
                }
                child.visit_expr(&lambda.body);
                let (free, _) = child.finish();
                if let Some(params) = &lambda.parameters {
                    self.visit_signature(params, None);
                }
                self.absorb(free, Vec::new());
            }
            Expr::ListComp(c) => self.visit_comprehension_scope(&c.generators, &[&c.elt]),
            Expr::SetComp(c) => self.visit_comprehension_scope(&c.generators, &[&c.elt]),
            Expr::Generator(c) => self.visit_comprehension_scope(&c.generators, &[&c.elt]),
            Expr::DictComp(c) => match &c.key {
                Some(key) => self.visit_comprehension_scope(&c.generators, &[key, &c.value]),
                None => self.visit_comprehension_scope(&c.generators, &[&c.value]),
            },
            _ => visitor::walk_expr(self, expr),
        }
        self.depth -= 1;
    }

    fn visit_annotation(&mut self, expr: &'a Expr) {
        let soft = self.kind == ScopeKind::Function || self.future_annotations;
        self.visit_annotation_with(expr, soft);
    }

    fn visit_except_handler(&mut self, handler: &'a ast::ExceptHandler) {
        let ast::ExceptHandler::ExceptHandler(h) = handler;
        if let Some(name) = &h.name {
            self.bound.insert(name.to_string());
        }
        visitor::walk_except_handler(self, handler);
    }

    fn visit_pattern(&mut self, pattern: &'a Pattern) {
        match pattern {
            Pattern::MatchAs(p) => {
                if let Some(name) = &p.name {
                    self.bound.insert(name.to_string());
                }
            }
            Pattern::MatchStar(p) => {
                if let Some(name) = &p.name {
                    self.bound.insert(name.to_string());
                }
            }
            Pattern::MatchMapping(p) => {
                if let Some(rest) = &p.rest {
                    self.bound.insert(rest.to_string());
                }
            }
            _ => {}
        }
        visitor::walk_pattern(self, pattern);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::python::parse_module;
    use ruff_python_ast::PythonVersion;

    fn facts(src: &str) -> FunctionFacts {
        let parsed = parse_module(src, PythonVersion::PY311);
        assert!(parsed.errors().is_empty(), "{:?}", parsed.errors());
        let func = parsed.suite().iter().find_map(|s| if let Stmt::FunctionDef(f) = s { Some(f) } else { None }).expect("a function");
        analyze_function(func, false, 500)
    }

    fn free(src: &str) -> Vec<String> {
        facts(src).free.into_iter().filter(|(_, hard)| *hard).map(|(n, _)| n).collect()
    }

    #[test]
    fn params_locals_and_globals() {
        assert_eq!(free("def f(a, *b, c=1, **d):\n    x = a + len(b)\n    return np.sum(x, c, d, y)\n"), ["len", "np", "y"]);
    }

    #[test]
    fn comprehension_scopes() {
        // `i` is the comprehension's own; `data` is free; the walrus binds `last` in f.
        assert_eq!(free("def f(n):\n    r = [last := i * k for i in data]\n    return last, r\n"), ["data", "k"]);
        // The first iterable is evaluated outside the comprehension.
        assert_eq!(free("def f(n):\n    return [x for x in x]\n"), ["x"]);
    }

    #[test]
    fn lambdas_and_nested_functions() {
        let f = facts("def f(a):\n    g = lambda y, z=w: y + a + q\n    def h(t):\n        return t + a + os.sep\n    return g, h\n");
        let hard: Vec<_> = f.free.keys().cloned().collect();
        assert_eq!(hard, ["os", "q", "w"]);
        assert!(f.has_nested_def);
    }

    #[test]
    fn class_bindings_invisible_to_methods() {
        let f = facts("def f(a):\n    class C:\n        k = 1\n        def m(self):\n            return k\n    return C\n");
        assert!(f.free.contains_key("k"));
        assert!(f.has_nested_class);
    }

    #[test]
    fn annotations_soft_and_hard() {
        let f = facts("def f(a: pd.DataFrame) -> Result:\n    x: Local = 1\n    return a\n");
        assert_eq!(f.free.get("pd"), Some(&true));
        assert_eq!(f.free.get("Result"), Some(&true));
        assert_eq!(f.free.get("Local"), Some(&false));
    }

    #[test]
    fn return_value_only_at_own_level() {
        assert!(!facts("def f(a):\n    def g():\n        return 1\n    return\n").has_return_value);
        assert!(facts("def f(a):\n    if a:\n        return a\n").has_return_value);
    }

    #[test]
    fn except_match_with_del_global() {
        let src = "def f(a):\n    global G\n    try:\n        pass\n    except E as e:\n        print(e)\n    match a:\n        case [x, *rest]:\n            return x, rest\n        case {'k': v, **others}:\n            return v, others\n    with open(a) as fh:\n        pass\n    return G, fh\n";
        assert_eq!(free(src), ["E", "G", "open", "print"]);
    }

    #[test]
    fn a_global_that_is_assigned_is_still_free() {
        // urllib.parse._splittype: `global _typeprog` then `_typeprog = re.compile(...)`.
        let src =
            "def f(url):\n    global _typeprog\n    if _typeprog is None:\n        _typeprog = re.compile('x')\n    return _typeprog.match(url)\n";
        assert_eq!(free(src), ["_typeprog", "re"]);
    }

    #[test]
    fn names_used_only_in_annotations_are_not_runtime_uses() {
        let f = facts("def f(a: List[int], b: np.ndarray) -> Optional[int]:\n    x: Dict = {}\n    return np.sum(a) + cast(int, b)\n");
        let mut runtime: Vec<_> = f.runtime.iter().map(String::as_str).collect();
        runtime.sort_unstable();
        assert_eq!(runtime, ["a", "b", "cast", "int", "np"]);
        assert_eq!(f.free.get("List"), Some(&true), "an evaluated annotation still needs its import");
    }

    #[test]
    fn decorators_and_defaults_are_module_scope() {
        assert_eq!(free("@functools.lru_cache(maxsize=N)\ndef f(a, b=DEFAULT):\n    return a\n"), ["DEFAULT", "N", "functools"]);
    }

    #[test]
    fn depth_limit() {
        let deep = format!("def f(a):\n    return {}a{}\n", "-".repeat(50), "");
        assert!(!facts(&deep).too_deep);
        let parsed = parse_module(&deep, PythonVersion::PY311);
        let Stmt::FunctionDef(func) = &parsed.suite()[0] else { panic!() };
        assert!(analyze_function(func, false, 20).too_deep);
    }
}
