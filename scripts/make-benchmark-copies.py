#!/usr/bin/env python3
"""Make the benchmark copies `unitcoder export` decontaminates against (data/benchmarks/).

Each output line is {"task_id", "text"}: the benchmark's reference solution as code
(HumanEval: prompt + canonical solution; MBPP: code; BigCodeBench: canonical solution).
Run from the repository root with the path of a directory holding humaneval.jsonl,
mbpp.jsonl and bigcodebench.jsonl (as distributed by their authors, converted to JSONL).
"""
import json
import sys
from pathlib import Path

import subprocess

src = Path(sys.argv[1])
out = Path("data/benchmarks")
out.mkdir(parents=True, exist_ok=True)


def write(name, rows):
    path = out / f"{name}.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    subprocess.run(["zstd", "-19", "-q", "-f", "--rm", str(path)], check=True)
    print(name, len(rows))


rows = [json.loads(l) for l in open(src / "humaneval.jsonl")]
write("humaneval", [{"task_id": r["task_id"], "text": r["prompt"] + r["canonical_solution"]} for r in rows])
rows = [json.loads(l) for l in open(src / "mbpp.jsonl")]
write("mbpp", [{"task_id": f"MBPP/{r['task_id']}", "text": r["code"]} for r in rows])
rows = [json.loads(l) for l in open(src / "bigcodebench.jsonl")]
write("bigcodebench", [{"task_id": r["task_id"], "text": r["canonical_solution"]} for r in rows])


# Evaluation copies (`unitcoder eval-tests`): each line is {"task_id", "entry_point",
# "code", "tests"}: the runnable reference solution and the benchmark's own tests as a
# unittest module (BigCodeBench's TestCases as released; HumanEval's `check(candidate)`
# and MBPP's assert list wrapped, unchanged, in one TestCase method each).
def eval_write(name, rows):
    write("eval-" + name, rows)


rows = [json.loads(l) for l in open(src / "humaneval.jsonl")]
eval_write("humaneval", [{
    "task_id": r["task_id"], "entry_point": r["entry_point"], "code": r["prompt"] + r["canonical_solution"],
    "tests": "import unittest\n\n" + r["test"] + "\n\nclass TestCases(unittest.TestCase):\n    def test_check(self):\n        check("
             + r["entry_point"] + ")\n",
} for r in rows])


def mbpp_entry(r):
    import re
    m = re.search(r"assert\s*\(?\s*(?:not\s+)?\(?\s*(?:math\.isclose\()?\s*(?:set\()?\s*([A-Za-z_]\w*)\s*\(", r["test_list"][0])
    if m and f"def {m.group(1)}" in r["code"]:
        return m.group(1)
    return re.search(r"^def\s+([A-Za-z_]\w*)", r["code"], re.M).group(1)


rows = [json.loads(l) for l in open(src / "mbpp.jsonl")]
eval_write("mbpp", [{
    "task_id": f"MBPP/{r['task_id']}", "entry_point": mbpp_entry(r), "code": r["code"].replace("\r\n", "\n"),
    "tests": "import unittest\n" + (r.get("test_setup_code") or "") + "\n\nclass TestCases(unittest.TestCase):\n    def test_asserts(self):\n"
             + "".join("        " + t.strip() + "\n" for t in r["test_list"]),
} for r in rows])
rows = [json.loads(l) for l in open(src / "bigcodebench.jsonl")]
eval_write("bigcodebench", [{"task_id": r["task_id"], "entry_point": r["entry_point"], "code": r["canonical_solution"],
                             "tests": r["test"]} for r in rows])
