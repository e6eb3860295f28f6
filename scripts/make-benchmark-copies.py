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
