"""Shared by the bench scripts: replace one `<!-- NAME:begin -->...<!-- NAME:end -->`
section of bench/RESULTS.md (or append it), keeping everything else as it is."""
import os
import re

PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "RESULTS.md")
HEADER = "# Benchmark results\n\nMeasured by the scripts in `bench/`; each compares against a baseline in the same run.\n\n"


def update_section(name, section):
    text = open(PATH).read() if os.path.exists(PATH) else HEADER
    pattern = r"<!-- %s:begin -->.*?<!-- %s:end -->\n" % (name, name)
    if re.search(pattern, text, flags=re.S):
        text = re.sub(pattern, lambda _: section, text, flags=re.S)
    else:
        text += "\n" + section
    with open(PATH, "w") as fh:
        fh.write(text)
