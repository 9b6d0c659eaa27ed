"""The run search language, parsed once for REST, SDK and UI.

    metrics.accuracy >= 0.9 and params.lr = '0.001' and tags.team != "vision"
    attributes.status = 'FINISHED' and metrics.`val loss` < 0.3

Conditions are joined with ``and``; values are numbers or quoted strings. Order-by strings:
``metrics.accuracy DESC``, ``params.lr``, ``start_time ASC``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from podstack.errors import ValidationFailed

KINDS = {
    "metrics": "metric",
    "metric": "metric",
    "params": "param",
    "param": "param",
    "tags": "tag",
    "tag": "tag",
    "attributes": "attribute",
    "attribute": "attribute",
    "attr": "attribute",
    "run": "attribute",
}
ATTRIBUTES = ("status", "name", "run_name", "start_time", "end_time", "user", "id")
OPS = ("!=", ">=", "<=", "=", ">", "<", "contains", "like")

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<ident>[A-Za-z_]+)\.(?:`(?P<bq>[^`]+)`|"(?P<dq_key>[^"]+)"|(?P<key>[A-Za-z0-9_\-./:]+))
      | (?P<op>!=|>=|<=|==|=|>|<|\bcontains\b|\blike\b)
      | '(?P<sq>(?:[^'\\]|\\.)*)'
      | "(?P<dq>(?:[^"\\]|\\.)*)"
      | (?P<num>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?inf(?:inity)?|nan)
      | (?P<and>\band\b)
    )""",
    re.VERBOSE | re.IGNORECASE,
)


@dataclass(frozen=True)
class Cond:
    kind: str
    key: str
    op: str
    value: str | float


def _bad(message: str, text: str) -> ValidationFailed:
    return ValidationFailed(f"Invalid filter: {message}", {"filter": text[:500]})


def parse_filter(text: str | None) -> list[Cond]:
    if not text or not text.strip():
        return []
    pos = 0
    tokens: list[tuple[str, object]] = []
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise _bad(f"unexpected text at position {pos}: {text[pos : pos + 20]!r}", text)
        pos = m.end()
        if m.group("ident"):
            kind = KINDS.get(m.group("ident").lower())
            if kind is None:
                raise _bad(
                    f"unknown prefix {m.group('ident')!r}; use metrics., params., "
                    "tags. or attributes.",
                    text,
                )
            key = m.group("bq") or m.group("dq_key") or m.group("key")
            tokens.append(("ident", (kind, key)))
        elif m.group("op"):
            op = m.group("op").lower()
            tokens.append(("op", "=" if op == "==" else op))
        elif m.group("sq") is not None or m.group("dq") is not None:
            raw = m.group("sq") if m.group("sq") is not None else m.group("dq")
            tokens.append(("value", re.sub(r"\\(.)", r"\1", raw)))
        elif m.group("num") is not None:
            tokens.append(("value", float(m.group("num"))))
        elif m.group("and"):
            tokens.append(("and", None))
    conds: list[Cond] = []
    i = 0
    while i < len(tokens):
        if len(tokens) - i < 3:
            raise _bad("a condition is incomplete; expected <prefix>.<key> <op> <value>", text)
        (t1, v1), (t2, v2), (t3, v3) = tokens[i], tokens[i + 1], tokens[i + 2]
        if t1 != "ident" or t2 != "op" or t3 != "value":
            raise _bad("expected <prefix>.<key> <op> <value>", text)
        kind, key = v1  # type: ignore[misc]
        conds.append(make_cond(kind, key, str(v2), v3, text))  # type: ignore[arg-type]
        i += 3
        if i < len(tokens):
            if tokens[i][0] != "and":
                raise _bad("join conditions with 'and'", text)
            i += 1
            if i >= len(tokens):
                raise _bad("dangling 'and'", text)
    return conds


def make_cond(kind: str, key: str, op: str, value: str | float, text: str = "") -> Cond:
    if op == "like":
        op = "contains"
    if kind == "metric":
        if op == "contains":
            raise _bad("metrics compare with =, !=, <, <=, >, >=", text or key)
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise _bad(f"metric {key!r} must be compared with a number", text or key)
    elif kind in ("param", "tag"):
        if op not in ("=", "!=", "contains"):
            raise _bad(f"{kind}s are strings: use =, != or contains", text or key)
        value = _as_text(value)
    else:
        if key not in ATTRIBUTES:
            raise _bad(f"unknown attribute {key!r}; valid: {', '.join(ATTRIBUTES)}", text or key)
        value = _as_text(value)
    return Cond(kind, key, op, value)


def _as_text(value: str | float) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def parse_order(text: str) -> tuple[str, str, bool]:
    """'metrics.accuracy DESC' -> ('metric', 'accuracy', True)."""
    parts = text.strip().split()
    if not parts or len(parts) > 2:
        raise ValidationFailed(f"Invalid order_by {text!r}.", {"order_by": text})
    desc = len(parts) == 2 and parts[1].lower() == "desc"
    if len(parts) == 2 and parts[1].lower() not in ("asc", "desc"):
        raise ValidationFailed(
            f"Invalid order_by direction in {text!r}; use ASC or DESC.", {"order_by": text}
        )
    if "." in parts[0]:
        prefix, key = parts[0].split(".", 1)
        kind = KINDS.get(prefix.lower())
        if kind is None or kind == "tag":
            raise ValidationFailed(
                f"Cannot order by {parts[0]!r}; use metrics.<key>, params.<key> or an attribute.",
                {"order_by": text},
            )
    else:
        kind, key = "attribute", parts[0]
    if kind == "attribute" and key not in ATTRIBUTES:
        raise ValidationFailed(
            f"Unknown attribute {key!r} in order_by; valid: {', '.join(ATTRIBUTES)}.",
            {"order_by": text},
        )
    return kind, key.strip("`"), desc
