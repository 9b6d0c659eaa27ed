"""MLflow's search grammar (``search_runs`` / ``search_experiments`` filters and order_by),
parsed into plain conditions; ``tracking.mlflow_search`` compiles them to SQL.

    metrics.acc > 0.9 and params.lr = '0.01' and tags.team = 'nlp'
    attributes.status IN ('FINISHED', 'FAILED') and tags.`my key` ILIKE '%nl_'
    attributes.run_name LIKE 'bert%' and params.opt IS NOT NULL

Conditions are joined with AND (MLflow has no OR). Comparators: ``= != < <= > >=`` (numbers
for metrics and times), ``LIKE``/``ILIKE`` (SQL patterns: ``%`` any run of characters, ``_``
one), ``IN``/``NOT IN`` (a parenthesised list of strings), ``IS NULL``/``IS NOT NULL``.
Identifiers: ``metrics.<k>``, ``params.<k>``, ``tags.<k>``, ``attributes.<a>`` (also
``attribute.``, ``attr.``, ``run.``, or a bare attribute name), ``datasets.<name|digest|
context>``; keys may be quoted with backticks or double quotes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from podstack.server.mlflow_compat.errors import MlflowError, invalid

_KINDS = {
    "metrics": "metric",
    "metric": "metric",
    "params": "param",
    "param": "param",
    "parameters": "param",
    "tags": "tag",
    "tag": "tag",
    "attributes": "attribute",
    "attribute": "attribute",
    "attr": "attribute",
    "run": "attribute",
    "datasets": "dataset",
    "dataset": "dataset",
}
RUN_STRING_ATTRS = ("run_id", "run_name", "status", "user_id", "artifact_uri", "lifecycle_stage")
RUN_NUMERIC_ATTRS = ("start_time", "end_time", "created")
DATASET_ATTRS = ("name", "digest", "context")
EXPERIMENT_STRING_ATTRS = ("name", "experiment_id", "lifecycle_stage")
EXPERIMENT_NUMERIC_ATTRS = ("creation_time", "last_update_time")
MODEL_STRING_ATTRS = ("name", "model_id", "source_run_id", "status", "model_type")
MODEL_NUMERIC_ATTRS = ("creation_timestamp", "last_updated_timestamp")
NUMERIC_ATTRS = RUN_NUMERIC_ATTRS + EXPERIMENT_NUMERIC_ATTRS + MODEL_NUMERIC_ATTRS

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<ident>(?:[A-Za-z_]+\.)?(?:`[^`]+`|"[^"]+"|[A-Za-z0-9_\-./:]+))
      | (?P<op>!=|>=|<=|==|=|>|<|<>)
      | '(?P<sq>(?:[^'\\]|\\.)*)'
      | (?P<lp>\()|(?P<rp>\))|(?P<comma>,)
    )""",
    re.VERBOSE,
)
_NUMBER = re.compile(r"^[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?$")
_WORDS = {"and", "like", "ilike", "in", "not", "is", "null"}


@dataclass(frozen=True)
class Cond:
    kind: str  # metric | param | tag | attribute | dataset
    key: str
    op: str  # = != < <= > >= LIKE ILIKE IN NOT IN IS NULL IS NOT NULL
    value: Any  # float, str, tuple[str, ...] or None


@dataclass(frozen=True)
class Order:
    kind: str  # metric | param | tag | attribute
    key: str
    desc: bool


def _bad(message: str, text: str) -> MlflowError:
    return invalid(f"Invalid filter {text[:300]!r}: {message}")


def _unquote(key: str) -> str:
    if len(key) >= 2 and key[0] == key[-1] and key[0] in '`"':
        return key[1:-1]
    return key


def _identifier(raw: str, text: str, *, experiments: bool, models: bool = False) -> tuple[str, str]:
    if "." in raw and not raw.startswith(("`", '"')):
        prefix, key = raw.split(".", 1)
        kind = _KINDS.get(prefix.lower())
        if kind is None:
            raise _bad(
                f"unknown identifier prefix {prefix!r}; use metrics., params., tags. or "
                "attributes.",
                text,
            )
    else:
        kind, key = "attribute", raw
    key = _unquote(key)
    if models:
        valid = MODEL_STRING_ATTRS + MODEL_NUMERIC_ATTRS
        if kind == "attribute" and key not in valid:
            raise _bad(f"unknown logged model attribute {key!r}; valid: {', '.join(valid)}", text)
        if kind not in ("attribute", "tag", "param"):
            raise _bad("logged models are searched by attributes, params and tags", text)
    elif experiments:
        if kind == "attribute" and key not in (EXPERIMENT_STRING_ATTRS + EXPERIMENT_NUMERIC_ATTRS):
            raise _bad(
                f"unknown experiment attribute {key!r}; valid: "
                + ", ".join(EXPERIMENT_STRING_ATTRS + EXPERIMENT_NUMERIC_ATTRS),
                text,
            )
        if kind not in ("attribute", "tag"):
            raise _bad("experiments are searched by attributes and tags only", text)
    elif kind == "attribute" and key not in RUN_STRING_ATTRS + RUN_NUMERIC_ATTRS:
        raise _bad(
            f"unknown run attribute {key!r}; valid: "
            + ", ".join(RUN_STRING_ATTRS + RUN_NUMERIC_ATTRS),
            text,
        )
    elif kind == "dataset" and key not in DATASET_ATTRS:
        raise _bad(f"unknown dataset attribute {key!r}; valid: name, digest, context", text)
    return kind, key


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        if not text[pos:].strip():
            break
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise _bad(f"unexpected text at position {pos}: {text[pos : pos + 20]!r}", text)
        pos = m.end()
        if m.group("ident") is not None:
            word = m.group("ident")
            low = word.lower()
            if low in _WORDS:
                out.append(("word", low))
            elif _NUMBER.match(word) or low in ("nan", "inf", "-inf", "+inf"):
                out.append(("number", word))
            else:
                out.append(("ident", word))
        elif m.group("op") is not None:
            op = m.group("op")
            out.append(("op", {"==": "=", "<>": "!="}.get(op, op)))
        elif m.group("sq") is not None:
            out.append(("string", re.sub(r"\\(.)", r"\1", m.group("sq"))))
        elif m.group("lp"):
            out.append(("(", "("))
        elif m.group("rp"):
            out.append((")", ")"))
        else:
            out.append((",", ","))
    return out


def parse_filter(
    text: str | None, *, experiments: bool = False, models: bool = False
) -> list[Cond]:
    """The conditions of a filter string; ``MlflowError`` (INVALID_PARAMETER_VALUE) naming
    what is wrong otherwise."""
    if not text or not text.strip():
        return []
    # A double-quoted value is a string in MLflow, but a double-quoted key is a key: keys come
    # right after a prefix and a dot, so turn every other "..." into a '...' literal first.
    normalized = re.sub(
        r'(?<![.\w`])"((?:[^"\\]|\\.)*)"',
        lambda m: "'" + m.group(1).replace("'", "\\'") + "'",
        text,
    )
    toks = _tokens(normalized)
    conds: list[Cond] = []
    i = 0

    def take() -> tuple[str, str]:
        nonlocal i
        if i >= len(toks):
            raise _bad("the condition is incomplete", text)
        tok = toks[i]
        i += 1
        return tok

    while True:
        kind_tok, raw = take()
        if kind_tok != "ident":
            raise _bad(f"expected an identifier such as metrics.acc, got {raw!r}", text)
        kind, key = _identifier(raw, text, experiments=experiments, models=models)
        t, v = take()
        if t == "op":
            vt, value = take()
            if vt not in ("string", "number"):
                raise _bad(f"expected a value after {v!r}", text)
            conds.append(_cond(kind, key, v, value, vt, text))
        elif t == "word" and v in ("like", "ilike"):
            vt, value = take()
            if vt != "string":
                raise _bad(f"{v.upper()} needs a quoted pattern", text)
            if kind == "metric" or (kind == "attribute" and key in NUMERIC_ATTRS):
                raise _bad(f"{v.upper()} compares strings; {raw} is a number", text)
            conds.append(Cond(kind, key, v.upper(), value))
        elif t == "word" and v in ("in", "not"):
            op = "IN"
            if v == "not":
                if take() != ("word", "in"):
                    raise _bad("expected IN after NOT", text)
                op = "NOT IN"
            if take()[0] != "(":
                raise _bad(f"{op} needs a parenthesised list: ('a', 'b')", text)
            values: list[str] = []
            while True:
                vt, value = take()
                if vt not in ("string", "number"):
                    raise _bad(f"{op} lists quoted strings", text)
                values.append(value)
                sep, _ = take()
                if sep == ")":
                    break
                if sep != ",":
                    raise _bad(f"separate the values of {op} with commas", text)
            if kind == "metric":
                raise _bad(f"{op} is for strings; compare metrics with = < > etc.", text)
            conds.append(Cond(kind, key, op, tuple(values)))
        elif t == "word" and v == "is":
            nxt = take()
            op = "IS NULL"
            if nxt == ("word", "not"):
                nxt = take()
                op = "IS NOT NULL"
            if nxt != ("word", "null"):
                raise _bad("expected IS NULL or IS NOT NULL", text)
            conds.append(Cond(kind, key, op, None))
        else:
            raise _bad(
                f"expected a comparator (= != < <= > >= LIKE ILIKE IN NOT IN IS) after {raw}",
                text,
            )
        if i >= len(toks):
            return conds
        if take() != ("word", "and"):
            raise _bad("join conditions with AND (OR is not supported by MLflow)", text)


def _cond(kind: str, key: str, op: str, value: str, vt: str, text: str) -> Cond:
    numeric = kind == "metric" or (kind == "attribute" and key in NUMERIC_ATTRS)
    if numeric:
        try:
            number = float(value)
        except ValueError:
            raise _bad(f"{kind}s.{key} must be compared with a number, got {value!r}", text)
        return Cond(kind, key, op, number)
    if op not in ("=", "!="):
        raise _bad(f"{kind} {key!r} is a string: use =, !=, LIKE, ILIKE, IN or NOT IN", text)
    if vt == "number" and kind in ("param", "tag"):
        raise _bad(f"quote the value compared with {kind}s.{key}: '{value}'", text)
    return Cond(kind, key, op, value)


def parse_order_by(items: list[str] | None, *, experiments: bool = False) -> list[Order]:
    out: list[Order] = []
    for item in items or []:
        text = item.strip()
        m = re.match(r"^(?P<ident>.+?)(?:\s+(?P<dir>asc|desc))?$", text, re.IGNORECASE)
        if not m or not m.group("ident").strip():
            raise invalid(f"Invalid order_by {item!r}: expected '<identifier> [ASC|DESC]'.")
        ident = m.group("ident").strip()
        try:
            kind, key = _identifier(ident, item, experiments=experiments)
        except MlflowError as exc:
            raise invalid(f"Invalid order_by {item!r}: {exc.message.split(': ', 1)[-1]}")
        if kind == "dataset":
            raise invalid(f"Invalid order_by {item!r}: cannot order by datasets.")
        out.append(Order(kind, key, (m.group("dir") or "asc").lower() == "desc"))
    return out
