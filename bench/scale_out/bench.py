"""Time extract per rank, the share step per rank, and one process's extract; check the
union of the shares equals one process's functions. See run.sh."""
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from results import update_section  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
# `run.sh` builds the release binary; UNITCODER_BIN measures another (the section says which).
BIN = os.environ.get("UNITCODER_BIN", os.path.join(ROOT, "target", "release", "unitcoder"))
BUILD = "release" if os.sep + "release" + os.sep in BIN else "debug" if os.sep + "debug" + os.sep in BIN else BIN
WORLD = 4
REPEATS = 3


def corpus_dirs():
    if len(sys.argv) > 1:
        return [os.path.abspath(a) for a in sys.argv[1:]]
    return [os.path.join(ROOT, ".venv-sandbox", "lib", "python3.11", "site-packages")]


def timed(args):
    start = time.perf_counter()
    subprocess.run([BIN, *args], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "RUST_LOG": "warn"})
    return time.perf_counter() - start


def records(path):
    out = []
    for name in sorted(os.listdir(path)):
        if name.startswith("shard-") and name.endswith(".jsonl"):
            with open(os.path.join(path, name)) as fh:
                out.extend(json.loads(line) for line in fh if line.strip())
    return out


def main():
    corpus = corpus_dirs()
    inputs = [a for c in corpus for a in ("-i", c)]
    files = sum(1 for c in corpus for _, _, fs in os.walk(c) for f in fs if f.endswith(".py"))
    single_s, rank_extract_s, rank_share_s, whole_share_s = [], [], [], []
    for _ in range(REPEATS):
        with tempfile.TemporaryDirectory() as tmp:
            single = os.path.join(tmp, "single")
            single_s.append(timed(["extract", *inputs, "-o", single, "--plain", "-j", "1"]))
            work = os.path.join(tmp, "split")
            base = ["run", *inputs, "--work-dir", work, "--plain", "-j", "1", "--world-size", str(WORLD)]
            rank_extract_s.append(max(timed([*base, "--rank", str(r), "--stop-after", "extract"]) for r in range(WORLD)))
            # `--stop-after share` finds extract up to date: the time is the share step's.
            rank_share_s.append(max(timed([*base, "--rank", str(r), "--stop-after", "share"]) for r in range(WORLD)))
            expected = [r["id"] for r in records(single)]
            shared = []
            dups = 0
            for r in range(WORLD):
                d = os.path.join(work, "share", f"rank-{r:05d}-of-{WORLD:05d}")
                shared.extend((tuple(x["source"]["position"]), x["id"]) for x in records(d))
                dups += json.load(open(os.path.join(d, "manifest.json")))["counts"]["cross_rank_duplicates"]
            union = [i for _, i in sorted(shared)]
            assert union == expected, "the shares differ from one process's functions"
            kept_by_ranks = sum(json.load(open(os.path.join(work, "extract", f"rank-{r:05d}-of-{WORLD:05d}", "manifest.json")))["counts"]["kept"] for r in range(WORLD))
            # The alternative: every rank extracts everything (one process's extract each).
            whole_share_s.append(single_s[-1])
    med = statistics.median
    ex, sh, one = med(rank_extract_s), med(rank_share_s), med(single_s)
    section = f"""<!-- scale-out:begin -->
## scale-out: global dedup before the LLM stages

Machine: {os.cpu_count()} cores; `-j 1` per process (ranks run one after another here; on a
cluster they run at once, so a rank's time is what counts); {BUILD} build; median of
{REPEATS} runs. Corpus: {files} `.py` files ({', '.join(os.path.relpath(c, ROOT) for c in corpus)}).

| | seconds (slowest of {WORLD} ranks) |
|---|---:|
| extract, one rank's files | {ex:.2f} |
| share: read all {WORLD} ranks' functions, keep this rank's, drop cross-rank duplicates | {sh:.2f} |
| alternative: every rank extracts the whole corpus and keeps its hash share | {one:.2f} |

The share step costs **{sh / ex:.2f}×** a rank's extract; a rank's extract + share is
**{(ex + sh) / one:.2f}×** the whole-corpus extract the alternative needs per rank.
{WORLD} ranks kept {kept_by_ranks} functions; {dups} of them were cross-rank duplicates (each
an LLM request saved per paid stage); the shares' union equals one process's
{len(expected)} functions in the same order (checked).
<!-- scale-out:end -->
"""
    update_section("scale-out", section)
    print(section)


if __name__ == "__main__":
    main()
