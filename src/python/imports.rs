//! A module's imports, by the names they bind, and its simple literal constants.
//!
//! `import a.b` binds `a`; `import a.b as c` binds `c`; `from m import n as k` binds `k`.
//! Imports are collected from module level, including inside `if`/`try`/`with`/`for`/
//! `while`/`match` blocks, but not inside functions or classes.

use std::collections::HashMap;

use ruff_python_ast::{self as ast, Expr, Stmt};
use ruff_text_size::Ranged;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportKind {
    /// `import a.b.c` (binds `a`).
    Plain,
    /// `import a.b as c`.
    Alias,
    /// `from m import n [as k]`.
    From,
}

/// One name bound by one import, with the single-name import line that recreates it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportBinding {
    pub name: String,
    pub line: String,
    /// Top-level module (`os` for `from os.path import join`); empty for `from . import x`.
    pub module_root: String,
    pub relative: bool,
    pub kind: ImportKind,
    /// Position in the file (later bindings of the same name win at run time).
    pub order: usize,
}

#[derive(Debug, Default, Clone)]
pub struct ModuleImports {
    pub bindings: Vec<ImportBinding>,
    pub by_name: HashMap<String, Vec<usize>>,
    /// `from __future__ import ...` lines, in file order.
    pub future: Vec<String>,
    pub future_annotations: bool,
    /// Modules imported with `*` (their names cannot be resolved statically).
    pub star_modules: Vec<String>,
}

pub fn collect_module_imports(body: &[Stmt]) -> ModuleImports {
    let mut out = ModuleImports::default();
    visit_block(body, &mut out);
    for (i, b) in out.bindings.iter().enumerate() {
        out.by_name.entry(b.name.clone()).or_default().push(i);
    }
    out
}

fn visit_block(body: &[Stmt], out: &mut ModuleImports) {
    for stmt in body {
        match stmt {
            Stmt::Import(imp) => {
                for alias in &imp.names {
                    let module = alias.name.as_str();
                    let root = module.split('.').next().unwrap_or(module).to_string();
                    let (name, line, kind) = match &alias.asname {
                        Some(asname) => (asname.to_string(), format!("import {module} as {asname}"), ImportKind::Alias),
                        None => (root.clone(), format!("import {module}"), ImportKind::Plain),
                    };
                    push(out, name, line, root, false, kind);
                }
            }
            Stmt::ImportFrom(imp) => {
                let module = imp.module.as_ref().map(|m| m.as_str()).unwrap_or("");
                let dots = ".".repeat(imp.level as usize);
                let relative = imp.level > 0;
                if module == "__future__" {
                    for alias in &imp.names {
                        out.future_annotations |= alias.name.as_str() == "annotations";
                        let line = format!("from __future__ import {}", alias_text(alias));
                        if !out.future.contains(&line) {
                            out.future.push(line);
                        }
                    }
                    continue;
                }
                let root = if relative { String::new() } else { module.split('.').next().unwrap_or("").to_string() };
                for alias in &imp.names {
                    if alias.name.as_str() == "*" {
                        out.star_modules.push(format!("{dots}{module}"));
                        continue;
                    }
                    let name = alias.asname.as_ref().unwrap_or(&alias.name).to_string();
                    let line = format!("from {dots}{module} import {}", alias_text(alias));
                    push(out, name, line, root.clone(), relative, ImportKind::From);
                }
            }
            Stmt::If(s) => {
                // `if TYPE_CHECKING:` imports exist only for type checkers; at run time
                // they are never executed (and often cannot be: pandas' `NumpySorter`).
                if !is_type_checking(&s.test) {
                    visit_block(&s.body, out);
                }
                for clause in &s.elif_else_clauses {
                    visit_block(&clause.body, out);
                }
            }
            Stmt::Try(s) => {
                visit_block(&s.body, out);
                for handler in &s.handlers {
                    let ast::ExceptHandler::ExceptHandler(h) = handler;
                    visit_block(&h.body, out);
                }
                visit_block(&s.orelse, out);
                visit_block(&s.finalbody, out);
            }
            Stmt::With(s) => visit_block(&s.body, out),
            Stmt::For(s) => {
                visit_block(&s.body, out);
                visit_block(&s.orelse, out);
            }
            Stmt::While(s) => {
                visit_block(&s.body, out);
                visit_block(&s.orelse, out);
            }
            Stmt::Match(s) => {
                for case in &s.cases {
                    visit_block(&case.body, out);
                }
            }
            _ => {}
        }
    }
}

/// `TYPE_CHECKING` or `<module>.TYPE_CHECKING` (typing, typing_extensions, an alias).
fn is_type_checking(test: &Expr) -> bool {
    match test {
        Expr::Name(n) => n.id.as_str() == "TYPE_CHECKING",
        Expr::Attribute(a) => a.attr.as_str() == "TYPE_CHECKING",
        _ => false,
    }
}

fn alias_text(alias: &ast::Alias) -> String {
    match &alias.asname {
        Some(asname) => format!("{} as {asname}", alias.name),
        None => alias.name.to_string(),
    }
}

fn push(out: &mut ModuleImports, name: String, line: String, module_root: String, relative: bool, kind: ImportKind) {
    let order = out.bindings.len();
    out.bindings.push(ImportBinding { name, line, module_root, relative, kind, order });
}

/// Module-level `NAME = <literal>` assignments whose name is bound exactly once at module
/// level: name → the statement's source text.
pub fn collect_literal_constants(body: &[Stmt], source: &str) -> HashMap<String, String> {
    let mut bound_count: HashMap<String, usize> = HashMap::new();
    let mut candidates: HashMap<String, String> = HashMap::new();
    for stmt in body {
        for name in top_level_bound_names(stmt) {
            *bound_count.entry(name).or_default() += 1;
        }
        if let Stmt::Assign(assign) = stmt {
            if let [Expr::Name(target)] = assign.targets.as_slice() {
                if is_simple_literal(&assign.value, 0) {
                    let text = &source[assign.range().start().to_usize()..assign.range().end().to_usize()];
                    candidates.insert(target.id.to_string(), text.to_string());
                }
            }
        }
    }
    candidates.retain(|name, _| bound_count.get(name) == Some(&1));
    candidates
}

fn top_level_bound_names(stmt: &Stmt) -> Vec<String> {
    fn targets(expr: &Expr, out: &mut Vec<String>) {
        match expr {
            Expr::Name(n) => out.push(n.id.to_string()),
            Expr::Tuple(t) => t.elts.iter().for_each(|e| targets(e, out)),
            Expr::List(l) => l.elts.iter().for_each(|e| targets(e, out)),
            Expr::Starred(s) => targets(&s.value, out),
            _ => {}
        }
    }
    let mut out = Vec::new();
    match stmt {
        Stmt::Assign(s) => s.targets.iter().for_each(|t| targets(t, &mut out)),
        Stmt::AugAssign(s) => targets(&s.target, &mut out),
        Stmt::AnnAssign(s) => targets(&s.target, &mut out),
        Stmt::For(s) => targets(&s.target, &mut out),
        Stmt::FunctionDef(f) => out.push(f.name.to_string()),
        Stmt::ClassDef(c) => out.push(c.name.to_string()),
        Stmt::Import(i) => out.extend(
            i.names
                .iter()
                .map(|a| a.asname.as_ref().map(|n| n.to_string()).unwrap_or_else(|| a.name.as_str().split('.').next().unwrap_or("").to_string())),
        ),
        Stmt::ImportFrom(i) => out.extend(i.names.iter().map(|a| a.asname.as_ref().unwrap_or(&a.name).to_string())),
        // Names bound inside compound statements make a constant ambiguous; count them too.
        Stmt::If(s) => {
            for st in s.body.iter().chain(s.elif_else_clauses.iter().flat_map(|c| c.body.iter())) {
                out.extend(top_level_bound_names(st));
            }
        }
        Stmt::Try(s) => {
            for st in s.body.iter().chain(s.orelse.iter()).chain(s.finalbody.iter()) {
                out.extend(top_level_bound_names(st));
            }
            for h in &s.handlers {
                let ast::ExceptHandler::ExceptHandler(h) = h;
                for st in &h.body {
                    out.extend(top_level_bound_names(st));
                }
            }
        }
        _ => {}
    }
    out
}

fn is_simple_literal(expr: &Expr, depth: usize) -> bool {
    if depth > 8 {
        return false;
    }
    match expr {
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::BytesLiteral(_) | Expr::BooleanLiteral(_) | Expr::NoneLiteral(_) => true,
        Expr::UnaryOp(u) => matches!(u.operand.as_ref(), Expr::NumberLiteral(_)),
        Expr::Tuple(t) => t.elts.len() <= 1000 && t.elts.iter().all(|e| is_simple_literal(e, depth + 1)),
        Expr::List(l) => l.elts.len() <= 1000 && l.elts.iter().all(|e| is_simple_literal(e, depth + 1)),
        Expr::Set(s) => s.elts.len() <= 1000 && s.elts.iter().all(|e| is_simple_literal(e, depth + 1)),
        Expr::Dict(d) => {
            d.items.len() <= 1000
                && d.items
                    .iter()
                    .all(|item| item.key.as_ref().is_some_and(|k| is_simple_literal(k, depth + 1)) && is_simple_literal(&item.value, depth + 1))
        }
        _ => false,
    }
}
