"""Extract benchmark: unitcoder vs a CPython ast/symtable extractor, same corpus, same run.

usage: python3 bench/extract/bench.py [--repeat N]   (run.sh does the set-up)
Writes the `extract` section of bench/RESULTS.md.
"""
import argparse
import json
import os
import platform
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from results import update_section  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
WORK = os.path.join(ROOT, "bench", "work", "extract")
CORPUS = os.path.join(WORK, "corpus.jsonl")
BIN = os.path.join(ROOT, "target", "release", "unitcoder")

# Runs a command in a fresh process so RUSAGE_CHILDREN covers exactly that command.
MEASURE = r"""
import json, resource, subprocess, sys, time
t = time.perf_counter()
p = subprocess.run(sys.argv[1:], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
wall = time.perf_counter() - t
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"wall": wall, "cpu": ru.ru_utime + ru.ru_stime, "maxrss_mb": ru.ru_maxrss / 1024,
                  "rc": p.returncode, "stdout": p.stdout[-4000:], "stderr": p.stderr[-4000:]}))
"""


def measure(cmd):
    out = subprocess.run([sys.executable, "-c", MEASURE, *cmd], stdout=subprocess.PIPE, text=True, check=True)
    r = json.loads(out.stdout)
    if r["rc"] != 0:
        sys.exit(f"command failed ({r['rc']}): {' '.join(cmd)}\n{r['stderr']}")
    return r


def median(xs):
    xs = sorted(xs)
    mid = len(xs) // 2
    return xs[mid] if len(xs) % 2 else (xs[mid - 1] + xs[mid]) / 2


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args()
    stats = json.load(open(os.path.join(WORK, "corpus.stats.json")))
    mb = stats["bytes"] / 1e6
    files = stats["files"]

    uc_runs = []
    for _ in range(args.repeat):
        uc_runs.append(measure([BIN, "-q", "-j", str(args.jobs), "-i", CORPUS, "-o", os.path.join(WORK, "out-unitcoder"), "--force", "extract"]))
    manifest = json.load(open(os.path.join(WORK, "out-unitcoder", "manifest.json")))
    ref_runs = []
    for _ in range(max(1, args.repeat // 2)):
        ref_runs.append(measure([sys.executable, os.path.join(ROOT, "bench", "extract", "reference_extractor.py"), CORPUS,
                                 os.path.join(WORK, "out-reference.jsonl"), str(args.jobs)]))
    ref = json.loads(ref_runs[-1]["stdout"].strip().splitlines()[-1])

    uc_wall, ref_wall = median([r["wall"] for r in uc_runs]), median([r["wall"] for r in ref_runs])
    uc_rss = max(r["maxrss_mb"] for r in uc_runs)
    c = manifest["counts"]
    ratio = ref_wall / uc_wall
    sdists = sorted(f for f in os.listdir(os.path.join(WORK, "sdists")) if not f.startswith("."))
    lines = [
        "<!-- extract:begin -->",
        "## extract",
        "",
        f"Machine: {os.cpu_count()} cores, {platform.platform()}, Python {platform.python_version()}; "
        f"`-j {args.jobs}` for both; median of {len(uc_runs)} unitcoder runs and {len(ref_runs)} baseline run(s).",
        "",
        f"Corpus: every UTF-8 `.py` file of {len(sdists)} sdists from PyPI ({files} files, {mb:.1f} MB; "
        f"{stats['skipped_non_utf8']} non-UTF-8 files left out of the JSONL), built by `bench/extract/run.sh`.",
        "",
        "| | wall s | files/s | MB/s | CPU s | peak RSS MB | kept |",
        "|---|---:|---:|---:|---:|---:|---:|",
        f"| unitcoder extract | {uc_wall:.2f} | {files / uc_wall:,.0f} | {mb / uc_wall:.1f} | {median([r['cpu'] for r in uc_runs]):.2f} | {uc_rss:.0f} | {c['kept']} |",
        f"| CPython ast+symtable baseline | {ref_wall:.2f} | {files / ref_wall:,.0f} | {mb / ref_wall:.1f} | {median([r['cpu'] for r in ref_runs]):.2f} | {max(r['maxrss_mb'] for r in ref_runs):.0f} (largest process) | {ref['kept']} |",
        "",
        f"**Throughput ratio: {ratio:.1f}×** the baseline (target ≥ 20×); **{mb / uc_wall:.1f} MB/s** wall "
        f"(target ≥ 40); peak RSS **{uc_rss:.0f} MB** (target < 300).",
        "",
        f"unitcoder funnel: {c['documents']} documents, {c['candidates']} candidates, {c['kept']} kept.",
        "",
        "| drop reason | unitcoder | baseline |",
        "|---|---:|---:|",
    ]
    reasons = sorted(set(c["dropped"]) | set(ref["dropped"]))
    for k in reasons:
        lines.append(f"| {k} | {c['dropped'].get(k, 0)} | {ref['dropped'].get(k, 0)} |")
    for k, v in sorted(c["bad_input"].items()):
        lines.append(f"| document: {k} | {v} | |")
    top = sorted(c["packages"].items(), key=lambda kv: -kv[1])[:15]
    lines += ["", "Top packages in kept functions: " + ", ".join(f"{k} {v}" for k, v in top) + ".", "",
              "Counts differ a little between the two because the baseline uses CPython's symtable (which "
              "resolves a few scoping corner cases differently, e.g. class bodies, and parses 3.12+ syntax "
              "that unitcoder drops as `newer_syntax` for a 3.11 target) and dedups on `ast.dump`.", "",
              "sdists: " + ", ".join(sdists) + ".", "<!-- extract:end -->"]
    section = "\n".join(lines) + "\n"

    update_section("extract", section)
    print(section)


if __name__ == "__main__":
    main()
