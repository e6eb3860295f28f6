"""Turn downloaded sdists into a JSONL corpus: one line per .py file {id, path, content}.

usage: build_corpus.py SDIST_DIR OUT.jsonl
"""
import json
import os
import sys
import tarfile
import zipfile


def members(path):
    if path.endswith((".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")):
        with tarfile.open(path) as tf:
            for m in tf:
                if m.isfile() and m.name.endswith(".py"):
                    f = tf.extractfile(m)
                    if f is not None:
                        yield m.name, f.read()
    elif path.endswith(".zip"):
        with zipfile.ZipFile(path) as zf:
            for name in zf.namelist():
                if name.endswith(".py"):
                    yield name, zf.read(name)


def main():
    src, out = sys.argv[1], sys.argv[2]
    files = skipped = size = 0
    with open(out, "w") as fh:
        for sdist in sorted(os.listdir(src)):
            for name, raw in members(os.path.join(src, sdist)):
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError:
                    skipped += 1  # JSON cannot carry it; unitcoder's .py-tree input counts these
                    continue
                fh.write(json.dumps({"id": f"{sdist}/{name}", "path": name, "content": text}) + "\n")
                files += 1
                size += len(raw)
    print(json.dumps({"files": files, "bytes": size, "skipped_non_utf8": skipped}))


if __name__ == "__main__":
    main()
