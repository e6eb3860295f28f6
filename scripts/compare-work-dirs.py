#!/usr/bin/env python3
"""Compare two unitcoder work directories record by record (key order, timings and the
directory paths themselves ignored). Used to check that a refactor changes no result:

    scripts/compare-work-dirs.py WORK_A WORK_B [--ignore FIELD ...]

(`--ignore isolation` when the sandbox's description changed on purpose.)

Exit 0 when every shard holds the same records and every manifest the same counts."""
import gzip, json, os, re, sys

VOLATILE = {"duration_ms", "latency_ms", "elapsed_seconds", "started_at", "finished_at", "timings", "documents_per_second", "megabytes_per_second"}


def norm(v, root):
    if isinstance(v, dict):
        return {k: norm(x, root) for k, x in sorted(v.items()) if k not in VOLATILE}
    if isinstance(v, list):
        return [norm(x, root) for x in v]
    if isinstance(v, str):
        return re.sub(r"/tmp/check_[A-Za-z0-9_]+", "/tmp/check", v.replace(root, "<WORK>"))
    return v


def lines(path):
    if path.endswith(".zst"):
        import subprocess
        data = subprocess.run(["zstd", "-dc", path], capture_output=True, check=True).stdout.decode()
    elif path.endswith(".gz"):
        data = gzip.open(path, "rt").read()
    else:
        data = open(path).read()
    return [json.loads(l) for l in data.splitlines() if l.strip()]


def files(root):
    out = {}
    for d, _, fs in os.walk(root):
        for f in fs:
            rel = os.path.relpath(os.path.join(d, f), root)
            if f.endswith((".jsonl", ".jsonl.zst", ".jsonl.gz")) or f == "manifest.json":
                out[rel] = os.path.join(d, f)
    return out


def main(a, b):
    fa, fb = files(a), files(b)
    bad = 0
    for rel in sorted(set(fa) | set(fb)):
        if rel not in fa or rel not in fb:
            print(f"only in one: {rel}")
            bad += 1
            continue
        if rel.endswith("manifest.json"):
            x = {k: v for k, v in json.load(open(fa[rel])).items() if k in ("stage", "counts", "shards", "complete")}
            y = {k: v for k, v in json.load(open(fb[rel])).items() if k in ("stage", "counts", "shards", "complete")}
            for m in (x, y):
                for s in m.get("shards", []):
                    s.pop("bytes", None)
            x, y = [x], [y]
        else:
            x, y = lines(fa[rel]), lines(fb[rel])
        nx, ny = norm(x, a), norm(y, b)
        if nx != ny:
            bad += 1
            print(f"differs: {rel}")
            for i, (p, q) in enumerate(zip(nx, ny)):
                if p != q:
                    keys = sorted(set(p) | set(q)) if isinstance(p, dict) and isinstance(q, dict) else []
                    diff = [k for k in keys if p.get(k) != q.get(k)]
                    print(f"  record {i}: fields {diff}")
                    for k in diff[:3]:
                        print(f"    a: {json.dumps(p.get(k))[:300]}\n    b: {json.dumps(q.get(k))[:300]}")
                    break
    print(f"{len(set(fa) | set(fb))} files compared, {bad} differ")
    return 1 if bad else 0


if __name__ == "__main__":
    args = sys.argv[1:]
    while "--ignore" in args:
        i = args.index("--ignore")
        VOLATILE.add(args[i + 1])
        del args[i:i + 2]
    sys.exit(main(os.path.abspath(args[0]), os.path.abspath(args[1])))
