#!/usr/bin/env python3
"""Calibrate the sandbox's static policy on BigCodeBench: every canonical solution with its
human-written test module goes through `unitcoder sandbox-run`, and every `rejected` verdict
is listed with its rule and place. Honest code should be rejected only where the listed
reason holds (it loads native code, say). Needs the BigCodeBench copy from the steering
repository's shared/ (not shipped with the project):

    python3 bench/policy/calibrate.py [--bcb ../shared/benchmarks/bigcodebench.jsonl]

The checks that are not rejected also run (the sandbox's Python decides how many pass);
only the rejections matter here, so a short timeout is used."""
import argparse, collections, json, os, subprocess, sys, tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bcb", default=os.path.join(ROOT, "..", "shared", "benchmarks", "bigcodebench.jsonl"))
    ap.add_argument("--bin", default=os.path.join(ROOT, "target", "release", "unitcoder"))
    ap.add_argument("--python", default=os.path.join(ROOT, ".venv-sandbox", "bin", "python"))
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="policy")
    src = os.path.join(work, "bcb.jsonl")
    n = 0
    with open(src, "w") as out:
        for line in open(args.bcb):
            t = json.loads(line)
            out.write(json.dumps({"id": t["task_id"], "code": t["canonical_solution"], "tests": t["test"]}) + "\n")
            n += 1
    subprocess.run([args.bin, "-q", "--plain", "-i", src, "-o", os.path.join(work, "out"), "sandbox-run", "--python", args.python,
                    "--timeout", "1", "--preimport", ""], check=True)
    rejected = []
    for line in open(os.path.join(work, "out", "shard-00000.jsonl")):
        r = json.loads(line)
        v = r.get("verdict", {})
        if v.get("status") == "rejected":
            rejected.append((r["id"], v.get("reason"), v.get("where"), v.get("message", "")))
    by_rule = collections.Counter(r[1] for r in rejected)
    print(f"{n} tasks, {len(rejected)} rejected: {dict(by_rule)}")
    for r in rejected:
        print(f"  {r[0]}: {r[1]} at {r[2]} — {r[3]}")


if __name__ == "__main__":
    sys.exit(main())
