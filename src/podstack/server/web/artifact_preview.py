"""Artifact previews on the run page: images, text and logs, JSON (pretty-printed), CSV as a
table, and ``MLmodel`` summaries (flavors, signature).

Only the first ``PREVIEW_BYTES`` of a file are ever read, through the artifact store's public
``iter_blob`` (the local store and the S3 store alike): a 10 GB log costs 1 MiB. Images are
not read here at all; the page points an ``<img>`` at ``/runs/<id>/image/<path>``, which
streams them with a content type fixed by the extension and, for SVG, a sandboxing CSP so a
script inside the file can never run (not in the ``<img>``, not when opened directly).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import yaml

PREVIEW_BYTES = 1024 * 1024
CSV_ROWS = 100
CSV_COLUMNS = 50
MAX_IMAGE_BYTES = 50 * 1024 * 1024
IMAGE_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".svg": "image/svg+xml",
}
# Served with every image: nothing in the file may load or run anything. ``sandbox`` also
# covers an SVG opened as a document (its scripts are blocked, its origin is opaque).
IMAGE_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; sandbox"
TEXT_SUFFIXES = (
    ".txt", ".log", ".md", ".rst", ".py", ".yaml", ".yml", ".toml", ".cfg", ".ini", ".sh",
    ".out", ".err", ".html", ".xml", ".jsonl", ".ndjson", ".sql", ".r", ".ipynb",
)  # fmt: skip


def _suffix(path: str) -> str:
    name = path.rsplit("/", 1)[-1].lower()
    return "." + name.rsplit(".", 1)[-1] if "." in name else ""


def image_type(path: str) -> str | None:
    """The content type an artifact is served with as an image, or None if it is not one."""
    return IMAGE_TYPES.get(_suffix(path))


def kind_of(path: str) -> str:
    name = path.rsplit("/", 1)[-1]
    suffix = _suffix(path)
    if name == "MLmodel":
        return "mlmodel"
    if suffix in IMAGE_TYPES:
        return "image"
    if suffix == ".json":
        return "json"
    if suffix in (".csv", ".tsv"):
        return "csv"
    if suffix == ".parquet":
        return "parquet"
    if suffix in TEXT_SUFFIXES:
        return "text"
    return "unknown"  # decided from the first bytes: text if it decodes, else binary


def read_head(chunks: Iterator[bytes], limit: int = PREVIEW_BYTES) -> tuple[bytes, bool]:
    """At most ``limit`` bytes from a blob's chunks, and whether there was more. The stream
    is closed as soon as enough is read (the rest of the file is never fetched)."""
    buf = bytearray()
    more = False
    try:
        for chunk in chunks:
            room = limit - len(buf)
            if len(chunk) > room:
                buf += chunk[:room]
                more = True
                break
            buf += chunk
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
    return bytes(buf), more


def _text(data: bytes, truncated: bool) -> str:
    # A cut may split a multi-byte character: drop the partial tail, replace other bad bytes.
    text = data.decode("utf-8", errors="replace")
    if truncated and text.endswith("\ufffd"):
        text = text.rstrip("\ufffd")
    return text


def _looks_binary(data: bytes) -> bool:
    sample = data[:8192]
    if b"\x00" in sample:
        return True
    try:
        sample.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start < len(sample) - 4  # a cut multi-byte character at the end is fine
    return False


@dataclass
class Preview:
    kind: str  # image | text | json | csv | mlmodel | binary | parquet
    path: str
    size: int
    truncated: bool = False
    text: str = ""
    rows: list[list[str]] = field(default_factory=list)
    header: list[str] = field(default_factory=list)
    more_rows: bool = False
    summary: dict[str, Any] = field(default_factory=dict)
    note: str = ""


def build(path: str, size: int, chunks: Iterator[bytes] | None) -> Preview:
    """The preview of one file. ``chunks`` is the blob's stream (None for images, which
    the browser loads from the image route)."""
    kind = kind_of(path)
    if kind == "image" or chunks is None:
        if chunks is not None:
            chunks.close()  # type: ignore[attr-defined]
        return Preview("image", path, size)
    if kind == "parquet":
        # Parquet keeps its schema at the end of the file: a preview needs random access
        # (and pyarrow, which Podstack does not depend on). Say so instead of reading it all.
        chunks.close()  # type: ignore[attr-defined]
        return Preview("parquet", path, size, note="Parquet files are not previewed; download it.")
    data, more = read_head(chunks)
    if kind == "unknown":
        kind = "binary" if _looks_binary(data) else "text"
    if kind == "binary":
        return Preview("binary", path, size)
    text = _text(data, more)
    if kind == "json" and not more:
        try:
            return Preview("json", path, size, text=json.dumps(json.loads(text), indent=2))
        except ValueError as exc:
            return Preview("text", path, size, text=text, note=f"Not valid JSON ({exc}).")
    if kind == "csv":
        return _csv(path, size, text, more)
    if kind == "mlmodel":
        return _mlmodel(path, size, text, more)
    return Preview("text", path, size, truncated=more, text=text)


def _csv(path: str, size: int, text: str, more: bool) -> Preview:
    delimiter = "\t" if path.lower().endswith(".tsv") else ","
    lines = text.splitlines()
    if more and lines:
        lines = lines[:-1]  # the last line may be cut in the middle
    reader = csv.reader(io.StringIO("\n".join(lines)), delimiter=delimiter)
    rows: list[list[str]] = []
    header: list[str] = []
    with contextlib.suppress(csv.Error):
        for i, row in enumerate(reader):
            if i == 0:
                header = row[:CSV_COLUMNS]
                continue
            if len(rows) >= CSV_ROWS:
                more = True
                break
            rows.append(row[:CSV_COLUMNS])
    return Preview("csv", path, size, truncated=more, header=header, rows=rows, more_rows=more)


def _signature(raw: Any) -> list[dict[str, str]]:
    """MLflow keeps a signature's inputs/outputs as a JSON string of column specs."""
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            return []
    if not isinstance(raw, list):
        return []
    out = []
    for col in raw:
        if isinstance(col, dict):
            shape = col.get("tensor-spec", {}).get("shape") if "tensor-spec" in col else None
            kind = col.get("type") or (col.get("tensor-spec") or {}).get("dtype") or ""
            out.append(
                {
                    "name": str(col.get("name", "—")),
                    "type": str(kind) + (f" {shape}" if shape else ""),
                }
            )
    return out


def _mlmodel(path: str, size: int, text: str, more: bool) -> Preview:
    try:
        doc = yaml.safe_load(text) if not more else None
    except yaml.YAMLError:
        doc = None
    if not isinstance(doc, dict):
        return Preview("text", path, size, truncated=more, text=text)
    flavors = doc.get("flavors") if isinstance(doc.get("flavors"), dict) else {}
    signature = doc.get("signature") if isinstance(doc.get("signature"), dict) else {}
    summary = {
        "flavors": [
            {
                "name": name,
                "detail": ", ".join(
                    f"{k}={v}"
                    for k, v in (spec or {}).items()
                    if isinstance(v, (str, int, float)) and k != "data"
                )
                if isinstance(spec, dict)
                else "",
            }
            for name, spec in flavors.items()
        ],
        "inputs": _signature(signature.get("inputs")),
        "outputs": _signature(signature.get("outputs")),
        "facts": {
            k: str(doc[k])
            for k in ("run_id", "model_uuid", "utc_time_created", "mlflow_version")
            if k in doc
        },
    }
    return Preview("mlmodel", path, size, text=text, summary=summary)
