"""Baseline for the extract benchmark: the same extraction rules, written with CPython's
`ast` and `symtable` modules, parallelised with multiprocessing (one process per core).

usage: reference_extractor.py CORPUS.jsonl OUT.jsonl JOBS

Rules (unitcoder's defaults): top-level (async) def; >= 1 parameter; `return <value>` at its
own level; no nested def/class; no import inside; 3..200 lines; every free name a builtin,
the function itself or a module-level import; no relative import; every package on the
allow-list; >= 1 package; exact dedup on normalised text (ast.dump).
"""
import ast
import builtins
import hashlib
import json
import multiprocessing as mp
import os
import symtable
import sys
import tomllib

HERE = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(HERE, "..", "..", "configs", "packages.toml"), "rb") as fh:
    _pk = tomllib.load(fh)
ALLOWED = set(_pk["stdlib"]) | set(_pk["third_party"])
BUILTINS = set(dir(builtins))


def module_imports(tree):
    """name -> list of (line, root, relative, kind); future lines."""
    binds, future = {}, []

    def visit(body):
        for st in body:
            if isinstance(st, ast.Import):
                for a in st.names:
                    root = a.name.split(".")[0]
                    if a.asname:
                        binds.setdefault(a.asname, []).append((f"import {a.name} as {a.asname}", root, False, "alias"))
                    else:
                        binds.setdefault(root, []).append((f"import {a.name}", root, False, "plain"))
            elif isinstance(st, ast.ImportFrom):
                mod = st.module or ""
                if mod == "__future__":
                    future.extend(f"from __future__ import {a.name}" for a in st.names)
                    continue
                dots = "." * st.level
                root = "" if st.level else mod.split(".")[0]
                for a in st.names:
                    if a.name == "*":
                        continue
                    text = f"{a.name} as {a.asname}" if a.asname else a.name
                    binds.setdefault(a.asname or a.name, []).append(
                        (f"from {dots}{mod} import {text}", root, st.level > 0, "from"))
            elif isinstance(st, (ast.If, ast.Try, ast.With, ast.For, ast.While)):
                for field in ("body", "orelse", "finalbody"):
                    visit(getattr(st, field, []) or [])
                for h in getattr(st, "handlers", []) or []:
                    visit(h.body)
    visit(tree.body)
    return binds, future


def free_names(table):
    """Names a function scope (and its nested scopes) read from module scope."""
    out = set()
    for sym in table.get_symbols():
        if sym.is_referenced() and (sym.is_global() or (sym.is_free() and table.get_type() == "module")):
            out.add(sym.get_name())
    for child in table.get_children():
        out |= free_names(child)
    return out


class Shape(ast.NodeVisitor):
    def __init__(self):
        self.ret = self.nested = self.inner_import = False
        self.depth = 0

    def visit_FunctionDef(self, node):
        if self.depth:
            self.nested = True
            return
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_ClassDef(self, node):
        self.nested = True

    def visit_Lambda(self, node):
        pass

    def visit_Return(self, node):
        if node.value is not None:
            self.ret = True

    def visit_Import(self, node):
        self.inner_import = True

    visit_ImportFrom = visit_Import


def extract(line):
    doc = json.loads(line)
    src = doc["content"]
    try:
        tree = ast.parse(src)
        table = symtable.symtable(src, "<doc>", "exec")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return [], {"bad": 1}
    binds, future = module_imports(tree)
    lines = src.splitlines(keepends=True)
    children = {c.get_name(): c for c in table.get_children() if c.get_type() == "function"}
    kept, drops = [], {}

    def drop(reason):
        drops[reason] = drops.get(reason, 0) + 1

    for node in tree.body:
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        a = node.args
        if len(a.posonlyargs) + len(a.args) + len(a.kwonlyargs) + (a.vararg is not None) + (a.kwarg is not None) < 1:
            drop("no_arguments"); continue
        start = (node.decorator_list[0].lineno if node.decorator_list else node.lineno)
        n = node.end_lineno - start + 1
        if n < 3:
            drop("too_short"); continue
        if n > 200:
            drop("too_long"); continue
        shape = Shape()
        shape.visit(node)
        if not shape.ret:
            drop("no_return_value"); continue
        if shape.nested:
            drop("nested_definition"); continue
        if shape.inner_import:
            drop("inner_import"); continue
        tab = children.get(node.name)
        used = free_names(tab) if tab is not None else set()
        # Decorators, defaults and signature annotations run in module scope.
        outer = list(node.decorator_list) + a.defaults + [d for d in a.kw_defaults if d is not None]
        outer += [p.annotation for p in a.posonlyargs + a.args + a.kwonlyargs + [a.vararg, a.kwarg] if p is not None and p.annotation is not None]
        if node.returns is not None:
            outer.append(node.returns)
        for d in outer:
            used |= {x.id for x in ast.walk(d) if isinstance(x, ast.Name)}
        attached, unresolved = [], []
        for name in sorted(used):
            if name == node.name or name in BUILTINS:
                continue
            if name in binds:
                cands = binds[name]
                if all(k == "plain" for _, _, _, k in cands):
                    attached.extend(cands)
                else:
                    ok = [c for c in cands if not c[2] and c[1] in ALLOWED]
                    attached.append(ok[-1] if ok else cands[-1])
            else:
                unresolved.append(name)
        if unresolved:
            drop("unresolved_name"); continue
        if any(rel for _, _, rel, _ in attached):
            drop("relative_import"); continue
        pkgs = sorted({root for _, root, _, _ in attached})
        if any(p not in ALLOWED for p in pkgs):
            drop("package_not_allowed"); continue
        if not pkgs:
            drop("no_package"); continue
        function = "".join(lines[start - 1:node.end_lineno])
        norm = hashlib.blake2b(ast.dump(node).encode(), digest_size=16).hexdigest()
        imports = future + sorted({t for t, _, _, k in attached if k != "from"}) + sorted({t for t, _, _, k in attached if k == "from"})
        code = "\n".join(imports) + "\n\n\n" + function
        kept.append({"entry_point": node.name, "code": code, "function": function, "imports": imports,
                     "packages": pkgs, "norm": norm, "source": {"id": doc.get("id"), "start_line": start, "end_line": node.end_lineno}})
    return kept, drops


def main():
    corpus, out, jobs = sys.argv[1], sys.argv[2], int(sys.argv[3])
    seen, totals, n_kept = set(), {}, 0
    with open(corpus) as fin, open(out, "w") as fout, mp.Pool(jobs) as pool:
        for kept, drops in pool.imap(extract, fin, chunksize=8):
            for k, v in drops.items():
                totals[k] = totals.get(k, 0) + v
            for rec in kept:
                if rec["norm"] in seen:
                    totals["duplicate"] = totals.get("duplicate", 0) + 1
                    continue
                seen.add(rec["norm"])
                del rec["norm"]
                fout.write(json.dumps(rec) + "\n")
                n_kept += 1
    print(json.dumps({"kept": n_kept, "dropped": totals}))


if __name__ == "__main__":
    sys.setrecursionlimit(10000)
    main()
