"""MLflow's registry search grammar (``search_registered_models``, ``search_model_versions``):
``<field> <op> <value>`` clauses joined by ``AND`` and ``<field> [ASC|DESC]`` orderings,
parsed into ``registry.filtered_search`` conditions, which compile them to SQL.

Fields: ``name``, ``tags.<key>`` (also ``tag.``; the key bare, backquoted or quoted), and for
versions ``run_id`` and ``version_number``. MLflow's client adds
``tags.`mlflow.prompt.is_prompt` != 'true'`` to every search; see ``PROMPT_TAG``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from podstack.errors import BadRequest
from podstack.server.registry import filtered_search
from podstack.server.registry.filtered_search import Condition, Order

MODEL_FILTER = {"name": "name"}
MODEL_ORDER = {
    "name": "name",
    "timestamp": "updated",
    "last_updated_timestamp": "updated",
    "creation_timestamp": "created",
}
VERSION_FILTER = {"name": "name", "version_number": "version", "run_id": "run_id"}
VERSION_ORDER = {
    "name": "name",
    "version_number": "version",
    "creation_timestamp": "created",
    "last_updated_timestamp": "updated",
    "timestamp": "updated",
}


_TOKEN = re.compile(
    r"""\s*(?:
        (?P<str>'(?:[^']|'')*'|"(?:[^"]|"")*")
      | (?P<bq>`[^`]*`)
      | (?P<op>!=|<>|<=|>=|=|<|>)
      | (?P<punct>[(),])
      | (?P<num>-?\d+(?:\.\d+)?)
      | (?P<word>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*\.?)
    )""",
    re.VERBOSE,
)


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        hit = _TOKEN.match(text, pos)
        if hit is None or hit.end() == pos:
            raise _bad_filter(text, f"unexpected text at {text[pos : pos + 20]!r}")
        kind = hit.lastgroup or ""
        out.append((kind, hit.group(kind)))
        pos = hit.end()
        while pos < len(text) and text[pos].isspace():
            pos += 1
    return out


def _bad_filter(text: str, problem: str, valid: str = "") -> BadRequest:
    return BadRequest(
        f"Invalid filter {text[:300]!r}: {problem}. "
        + (valid or "Example: name LIKE 'fraud%' AND tags.team = 'risk'."),
        {"filter": text[:300]},
    )


def _unquote(tok: str) -> str:
    q = tok[0]
    return tok[1:-1].replace(q + q, q)


def parse_filter(
    text: str | None, fields: dict[str, str], numeric: frozenset[str]
) -> list[Condition]:
    """MLflow's registry filter grammar: ``<field> <op> <value>`` clauses joined by ``AND``.
    ``fields`` maps the accepted MLflow field names to ours; ``tags.<key>`` (key bare,
    backquoted or quoted) is always accepted."""
    if not text or not text.strip():
        return []
    valid = "Fields: " + ", ".join([*fields, "tags.<key>"]) + "; clauses joined by AND."
    toks = _tokens(text)
    conds: list[Condition] = []
    i = 0

    def take() -> tuple[str, str]:
        nonlocal i
        if i >= len(toks):
            raise _bad_filter(text, "it ends in the middle of a clause", valid)
        i += 1
        return toks[i - 1]

    while True:
        kind, tok = take()
        if kind == "word" and tok.lower().startswith(("tags.", "tag.")):
            key = tok.partition(".")[2]
            if not key:
                k2, t2 = take()
                if k2 not in ("bq", "str"):
                    raise _bad_filter(text, "tags. must be followed by a tag key", valid)
                key = _unquote(t2)
            field = f"tag:{key}"
        elif kind == "word" and tok.lower().removeprefix("attributes.") in fields:
            field = fields[tok.lower().removeprefix("attributes.")]
        else:
            raise _bad_filter(text, f"{tok!r} is not a field that can be searched", valid)
        kind, op = take()
        op_u = op.upper()
        if kind == "word" and op_u == "NOT":
            _, nxt = take()
            op_u = "NOT " + nxt.upper()
        op_u = "!=" if op_u == "<>" else op_u
        is_num = field in numeric
        allowed = filtered_search.NUMBER_OPS if is_num else filtered_search.STRING_OPS
        if field.startswith("tag:"):
            allowed = ("=", "!=", "LIKE", "ILIKE")
        if op_u not in allowed:
            raise _bad_filter(
                text, f"operator {op!r} cannot be used with {tok!r} (valid: {', '.join(allowed)})"
            )
        if op_u in ("IN", "NOT IN"):
            k, t = take()
            if t != "(":
                raise _bad_filter(text, f"{op_u} needs a parenthesised list, e.g. ('a', 'b')")
            values: list[Any] = []
            while True:
                k, t = take()
                values.append(_value(text, k, t, is_num))
                k, t = take()
                if t == ")":
                    break
                if t != ",":
                    raise _bad_filter(text, "values in a list are separated by commas")
            conds.append(Condition(field, op_u, tuple(values)))
        else:
            k, t = take()
            conds.append(_prompt_rule(Condition(field, op_u, _value(text, k, t, is_num))))
        if i >= len(toks):
            return conds
        k, t = take()
        if k != "word" or t.upper() != "AND":
            raise _bad_filter(
                text, f"expected AND between clauses, found {t!r} (OR is not supported)"
            )


# MLflow marks prompts (which Podstack does not have) with this tag, and its client adds
# "tags.`mlflow.prompt.is_prompt` != 'true'" to every registry search: a model without the
# tag is not a prompt, so that clause must match it (a plain tag clause would not).
PROMPT_TAG = "mlflow.prompt.is_prompt"


def _prompt_rule(c: Condition) -> Condition:
    if c.field != f"tag:{PROMPT_TAG}" or not isinstance(c.value, str):
        return c
    value = c.value.lower()
    if (c.op, value) in (("!=", "true"), ("=", "false")):
        return Condition(f"no_tag:{PROMPT_TAG}", "ILIKE", "true")
    return c


def _value(text: str, kind: str, tok: str, numeric: bool) -> Any:
    if numeric:
        raw = _unquote(tok) if kind == "str" else tok
        try:
            return int(raw)
        except ValueError:
            raise _bad_filter(text, f"{tok} is not a whole number") from None
    if kind != "str":
        raise _bad_filter(text, f"the value {tok} must be a quoted string, e.g. 'value'")
    return _unquote(tok)


def parse_order(items: Sequence[Any], fields: dict[str, str]) -> list[Order]:
    out = []
    for item in items:
        if not isinstance(item, str) or not item.strip():
            raise BadRequest(f"Invalid order_by {item!r}.", {"order_by": str(item)[:100]})
        parts = item.strip().split()
        key = parts[0].lower().removeprefix("attributes.")
        direction = parts[1].upper() if len(parts) == 2 else "ASC"
        if key not in fields or len(parts) > 2 or direction not in ("ASC", "DESC"):
            raise BadRequest(
                f"Invalid order_by {item!r}: use '<field> [ASC|DESC]' with one of the fields "
                + ", ".join(fields)
                + ".",
                {"order_by": item[:100], "valid": list(fields)},
            )
        out.append(Order(fields[key], direction == "ASC"))
    return out
