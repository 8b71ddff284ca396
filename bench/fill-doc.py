#!/usr/bin/env python3
"""Puts the tables of a summary.md (bench/summarize.py) into a document at its `@@SECTION@@`
placeholders (THROUGHPUT, OVERLOAD, CAPS, LAYOUT, MEMORY, STARTUP, MACHINE), printing the result.

    bench/fill-doc.py bench/results/2026-12-03 draft.md > section.md
"""

import json
import re
import sys
from pathlib import Path


def main() -> int:
    results, template = Path(sys.argv[1]), Path(sys.argv[2])
    sections: dict[str, list[str]] = {}
    current = None
    for line in (results / "summary.md").read_text().splitlines():
        m = re.match(r"<!-- section: (\w+) -->", line)
        if m:
            current = m.group(1).upper()
            sections[current] = []
        elif current:
            sections[current].append(line)
    rep = sorted(results.glob("rep-*/throughput.json")) or sorted(results.glob("rep-*/*.json"))
    machine = json.loads(rep[0].read_text())["machine"] if rep else {}
    rows = ["| | |", "|---|---|"] + [f"| {k} | {', '.join(v) if isinstance(v, list) else v} |"
                                      for k, v in machine.items() if k != "loadavg_at_start"]
    sections["MACHINE"] = rows
    text = template.read_text()
    for name, lines in sections.items():
        text = text.replace(f"@@{name}@@", "\n".join(lines).strip())
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
