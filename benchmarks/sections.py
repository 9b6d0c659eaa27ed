"""Each benchmark's own section of ``benchmarks/RESULTS.md``.

The MLflow comparison (``mlflow_compare/report.py``) rewrites the top of RESULTS.md on every
run; the other benchmarks (MLflow's client against each server, UI pages, stores 100x larger,
...) keep their latest figures in a section of their own between two markers, which that
rewrite carries over. No ``main``: ``benchmarks/run.py`` does not take this for a benchmark.
"""

from __future__ import annotations

import re
from pathlib import Path

RESULTS_MD = Path(__file__).resolve().parent / "RESULTS.md"
_BLOCK = re.compile(r"<!-- section:(?P<name>[\w-]+) -->.*?<!-- /section:(?P=name) -->", re.S)


def _markers(name: str) -> tuple[str, str]:
    return f"<!-- section:{name} -->", f"<!-- /section:{name} -->"


def blocks(text: str) -> list[str]:
    """Every benchmark section in ``text``, in order (what a rewrite of the file keeps)."""
    return [m.group(0) for m in _BLOCK.finditer(text)]


def record(name: str, title: str, lines: list[str], md: Path = RESULTS_MD) -> Path:
    """Replaces (or appends) the section ``name`` of RESULTS.md with ``title`` and ``lines``."""
    start, end = _markers(name)
    block = "\n".join([start, "", f"## {title}", "", *lines, "", end])
    text = md.read_text() if md.exists() else ""
    if start in text and end in text:
        head, _, rest = text.partition(start)
        _, _, tail = rest.partition(end)
        text = head + block + tail
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    md.write_text(text)
    return md
