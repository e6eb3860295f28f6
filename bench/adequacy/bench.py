"""Test-adequacy benchmark: BigCodeBench's canonical solutions with their human-written tests
through `unitcoder eval-tests --human-tests`, once with adequacy off (the plain check) and once
with the defaults (2 reruns, line coverage, 20 mutants), in the same run.

usage: python3 bench/adequacy/bench.py [--limit N] [--python .venv-bcb/bin/python]
Writes the `adequacy-bcb` section of bench/RESULTS.md (the mutant-throughput and coverage-cost
figures come from `cargo bench --bench adequacy_throughput`, section `adequacy-throughput`).
"""
import argparse
import io
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from results import update_section  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
WORK = os.path.join(ROOT, "bench", "work", "adequacy")
BIN = os.path.join(ROOT, "target", "release", "unitcoder")
PREIMPORT = ("numpy,pandas,matplotlib,scipy,scipy.stats,sklearn,sklearn.model_selection,sklearn.linear_model,"
             "sklearn.preprocessing,sklearn.cluster,sklearn.decomposition,sklearn.metrics,seaborn,requests,bs4,"
             "dateutil,pytz,PIL,statsmodels.api,nltk,unittest.mock,tempfile,csv,json,random,datetime")
BUCKETS = ["unknown", "0-20%", "20-40%", "40-60%", "60-80%", "80-99%", "100%"]


def bucket(x):
    if x is None:
        return "unknown"
    if x >= 1.0:
        return "100%"
    return BUCKETS[1 + min(int(max(x, 0.0) * 5), 4)]


def eval_tests(name, python, limit, extra):
    work = os.path.join(WORK, name)
    cmd = [BIN, "-q", "--force", "eval-tests", "--benchmark", "bigcodebench", "--human-tests", "--work-dir", work,
           "--python", python, "--timeout", "30", "--workers", "2", "--preimport", PREIMPORT, "--json", *extra]
    if limit:
        cmd += ["--limit", str(limit)]
    t = time.perf_counter()
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return time.perf_counter() - t, json.loads(out), work


def read_shards(work):
    out = []
    d = os.path.join(work, "sandbox-run")
    for name in sorted(os.listdir(d)):
        if name.startswith("shard-") and name.endswith(".jsonl.zst"):
            text = subprocess.run(["zstd", "-dc", os.path.join(d, name)], check=True, capture_output=True, text=True).stdout
            out.extend(json.loads(l) for l in io.StringIO(text) if l.strip())
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--python", default=os.path.join(ROOT, ".venv-bcb", "bin", "python"))
    args = ap.parse_args()
    os.makedirs(WORK, exist_ok=True)
    pyver = subprocess.run([args.python, "-c", "import sys; print(sys.version.split()[0])"], capture_output=True, text=True).stdout.strip()

    off_wall, off, _ = eval_tests("off", args.python, args.limit, ["--no-adequacy"])
    on_wall, on, work = eval_tests("on", args.python, args.limit, [])
    recs = read_shards(work)
    cov, mut = {b: 0 for b in BUCKETS}, {b: 0 for b in BUCKETS}
    flaky, by_op_survived, notes = 0, {}, {}
    killed_by = {}
    mutants_total = 0
    for r in recs:
        v = r.get("verdict") or {}
        if v.get("status") == "flaky":
            flaky += 1
        a = v.get("adequacy")
        if v.get("status") != "pass" or not a:
            continue
        cov[bucket(a.get("line_coverage"))] += 1
        mut[bucket(a.get("mutation_score"))] += 1
        mutants_total += a.get("mutants", 0)
        for s in a.get("survivors", []):
            by_op_survived[s["operator"]] = by_op_survived.get(s["operator"], 0) + 1
        for k, n in (a.get("killed_by") or {}).items():
            killed_by[k] = killed_by.get(k, 0) + n
        if a.get("mutation_note"):
            key = a["mutation_note"].split(":")[0][:60]
            notes[key] = notes.get(key, 0) + 1
    n = on["tasks"]
    pct = lambda x: "–" if x is None else "%.1f%%" % (100 * x)  # noqa: E731
    lines = [
        "<!-- adequacy-bcb:begin -->",
        "## adequacy on BigCodeBench (human tests)",
        "",
        f"Machine: 2 cores; Python {pyver} (`.venv-bcb`, BigCodeBench's pinned libraries); 2 sandbox workers, 30 s per check; "
        f"`python3 bench/adequacy/bench.py{' --limit %d' % args.limit if args.limit else ''}` "
        f"({n} canonical solutions with their human-written test modules, `unitcoder eval-tests --human-tests`).",
        "",
        "| | wall s | s/task | passing |",
        "|---|---:|---:|---:|",
        f"| check only (`--no-adequacy`) | {off_wall:.0f} | {off_wall / n:.2f} | {off['passing']} |",
        f"| check + 2 reruns + coverage + 20 mutants (defaults) | {on_wall:.0f} | {on_wall / n:.2f} | {on['passing']} |",
        "",
        f"Adequacy costs **{on_wall / off_wall:.1f}×** the plain check on this set (both reruns and the mutants included); "
        f"{mutants_total} valid mutants ran; {flaky} passes turned out flaky.",
        "",
        f"Mean line coverage of the passing tests: **{pct(on['line_coverage'])}** ({on['coverage_measured']} measured); "
        f"mean mutation score: **{pct(on['mutation_score'])}** ({on['mutation_measured']} with mutants); "
        f"pooled false-pass rate (surviving / valid mutants): **{pct(on['false_pass_rate'])}**.",
        "",
        "| bucket | line coverage | mutation score |",
        "|---|---:|---:|",
    ]
    lines += [f"| {b} | {cov[b]} | {mut[b]} |" for b in BUCKETS]
    lines += [
        "",
        "Killed mutants by how: " + ", ".join(f"{k} {v}" for k, v in sorted(killed_by.items())) + ".",
        "Surviving mutants kept in records, by operator: " + ", ".join(f"{k} {v}" for k, v in sorted(by_op_survived.items(), key=lambda kv: -kv[1])) + ".",
        "Records without a mutation score, by note: " + (", ".join(f"{k} ({v})" for k, v in sorted(notes.items())) or "none") + ".",
        "Statuses with adequacy: " + ", ".join(f"{k} {v}" for k, v in sorted(on["statuses"].items())) + "; without: "
        + ", ".join(f"{k} {v}" for k, v in sorted(off["statuses"].items())) + ".",
        "<!-- adequacy-bcb:end -->",
        "",
    ]
    section = "\n".join(lines)
    print(section)
    update_section("adequacy-bcb", section)


if __name__ == "__main__":
    main()
