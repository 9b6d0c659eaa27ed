"""Gate expressions: metric conditions a version must meet before a gated transition.

Grammar (one condition per gate)::

    <metric> <op> <number>        accuracy >= 0.9
    <metric> <op> production      f1 > production     (beat the current Production version)
    signed_by <key>               signed_by server    (a valid signature by that key)

``<key>`` is ``server`` (any key the server signed with) or a key id ``sha256:<64 hex>``
(``podstack signing-keys`` lists them; a policy may only name keys the server knows).

``op`` is one of ``>= > <= < == !=``. A metric name is letters, digits and ``_ - . / :``, or
any text in backticks (`` `val loss` <= 0.3``). A version's metrics are its validation
metrics (``log_model_version_metrics``) over its source run's final metrics, validation
winning when both have a key, counting only metrics the requester cannot have written
(see ``versions.py``: an ended run's metrics, others' validation metrics).

"Beat production" passes when the model has no other version in Production, or that version
lacks the metric (nothing to beat); the result says so.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass

from podstack.errors import ValidationFailed

OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    ">": operator.gt,
    "<=": operator.le,
    "<": operator.lt,
    "==": operator.eq,
    "!=": operator.ne,
}
PRODUCTION = "production"
SIGNED_BY = "signed_by"
_SIGNED_RE = re.compile(r"^\s*signed_by\s+(?P<key>\S+)\s*$")
_KEY_RE = re.compile(r"^(server|sha256:[0-9a-f]{64})$")
MAX_GATES = 50
_METRIC = r"`(?P<quoted>[^`]{1,250})`|(?P<bare>[A-Za-z0-9_\-./:]{1,250})"
_GATE_RE = re.compile(rf"^\s*(?:{_METRIC})\s*(?P<op>>=|<=|==|!=|>|<)\s*(?P<rhs>[^<>=!\s].*?)\s*$")
_LEFT_RE = re.compile(rf"^\s*(?:{_METRIC})\s*(>=|<=|==|!=|>|<)")
_USAGE = (
    "Write '<metric> <op> <number>' (e.g. 'accuracy >= 0.9') or '<metric> <op> production' "
    "(e.g. 'f1 > production', to beat the current Production version), with <op> one of "
    ">=, >, <=, <, ==, !=."
)


@dataclass(frozen=True)
class Gate:
    metric: str
    op: str
    # None: compare with the current Production version's value of the same metric.
    threshold: float | None
    # A signature gate: the key that must have signed (``server`` or ``sha256:…``).
    signer: str | None = None

    @property
    def against_production(self) -> bool:
        return self.threshold is None and self.signer is None

    @property
    def expression(self) -> str:
        if self.signer is not None:
            return f"{SIGNED_BY} {self.signer}"
        name = (
            self.metric if re.fullmatch(r"[A-Za-z0-9_\-./:]+", self.metric) else f"`{self.metric}`"
        )
        rhs = PRODUCTION if self.threshold is None else _fmt(self.threshold)
        return f"{name} {self.op} {rhs}"


@dataclass(frozen=True)
class GateResult:
    expression: str
    metric: str
    passed: bool
    value: float | None
    compared_to: float | None
    message: str
    production_version: int | None = None

    def as_dict(self) -> dict[str, object]:
        return {
            "expression": self.expression,
            "metric": self.metric,
            "passed": self.passed,
            "value": _json(self.value),
            "compared_to": _json(self.compared_to),
            "production_version": self.production_version,
            "message": self.message,
        }


def _fmt(v: float) -> str:
    return repr(int(v)) if v.is_integer() and abs(v) < 1e15 else repr(v)


def _json(v: float | None) -> float | str | None:
    if v is None or math.isfinite(v):
        return v
    return str(v)


def _invalid(expr: str, problem: str, index: int | None) -> ValidationFailed:
    where = f"Gate {index + 1}" if index is not None else "Gate"
    return ValidationFailed(
        f"{where} {expr[:200]!r} is invalid: {problem}. {_USAGE}",
        {"field": "gates", "gate": expr[:200], "index": index, "problem": problem},
    )


def parse(expr: str, index: int | None = None) -> Gate:
    if not isinstance(expr, str) or not expr.strip():
        raise _invalid(str(expr), "it is empty", index)
    signed = _SIGNED_RE.match(expr)
    if signed is not None:
        key = signed.group("key")
        if not _KEY_RE.match(key):
            raise _invalid(expr, "the key is neither 'server' nor a key id sha256:<64 hex>", index)
        return Gate(SIGNED_BY, SIGNED_BY, None, key)
    m = _GATE_RE.match(expr)
    if m is None:
        if not re.search(r"(>=|<=|==|!=|>|<)", expr):
            problem = "it has no comparison operator"
        elif re.match(r"^\s*(>=|<=|==|!=|>|<)", expr):
            problem = "it has no metric name before the operator"
        elif re.search(r"(>=|<=|==|!=|>|<)\s*$", expr):
            problem = "nothing follows the operator"
        elif re.search(r"[<>=!]{3,}|=>|=<|(?<![<>=!])=(?!=)", expr):
            problem = "the operator is not one of >=, >, <=, <, ==, !="
        elif _LEFT_RE.match(expr):
            problem = "what follows the operator is neither a number nor 'production'"
        else:
            problem = "the metric name has characters other than letters, digits, _ - . / :"
        raise _invalid(expr, problem, index)
    metric = m.group("quoted") if m.group("quoted") is not None else m.group("bare")
    metric = metric.strip()
    if not metric:
        raise _invalid(expr, "the metric name is empty", index)
    rhs = m.group("rhs")
    if rhs.lower() == PRODUCTION:
        if m.group("op") in ("==", "!="):
            raise _invalid(expr, "compare with production using >, >=, < or <= (to beat it)", index)
        return Gate(metric, m.group("op"), None)
    try:
        threshold = float(rhs)
    except ValueError:
        if re.search(r"(>=|<=|==|!=|>|<)|\b(and|or)\b|&&|\|\|", rhs, re.IGNORECASE):
            raise _invalid(
                expr, "a gate holds one condition; list several gates instead of combining", index
            )
        raise _invalid(expr, f"{rhs[:50]!r} is neither a number nor 'production'", index)
    if not math.isfinite(threshold):
        raise _invalid(expr, "the threshold must be a finite number", index)
    return Gate(metric, m.group("op"), threshold)


def parse_all(exprs: Sequence[str]) -> list[Gate]:
    if len(exprs) > MAX_GATES:
        raise ValidationFailed(
            f"At most {MAX_GATES} gates per policy ({len(exprs)} given).", {"field": "gates"}
        )
    gates = [parse(e, i) for i, e in enumerate(exprs)]
    out: list[Gate] = []
    for g in gates:
        if g not in out:
            out.append(g)
    return out


def evaluate(
    gate: Gate,
    metrics: Mapping[str, float],
    production: tuple[int, Mapping[str, float]] | None,
    signed: AbstractSet[str] = frozenset(),
) -> GateResult:
    """``metrics``: the candidate's; ``production``: (version, metrics) of the current
    Production version other than the candidate, or None; ``signed``: the keys with a valid
    signature on the candidate (``server`` among them for a server signature)."""
    expr = gate.expression
    if gate.signer is not None:
        ok = gate.signer in signed
        who = "the server" if gate.signer == "server" else f"key {gate.signer}"
        return GateResult(
            expr,
            SIGNED_BY,
            ok,
            None,
            None,
            f"The version has a valid signature by {who}."
            if ok
            else f"The version has no valid signature by {who}; sign it with "
            "`podstack models sign` (or client.sign_model_version) using that key.",
        )
    value = metrics.get(gate.metric)
    if value is None:
        return GateResult(
            expr,
            gate.metric,
            False,
            None,
            None,
            f"The version has no usable metric {gate.metric!r}. Gates read the source run's "
            "metrics once the run has ended, and validation metrics logged by someone other "
            "than the requester; have a reviewer or an evaluation job log it, or end the run.",
        )
    if gate.against_production:
        if production is None:
            return GateResult(
                expr,
                gate.metric,
                True,
                value,
                None,
                "No other version is in Production, so there is nothing to beat.",
            )
        prod_version, prod_metrics = production
        other = prod_metrics.get(gate.metric)
        if other is None:
            return GateResult(
                expr,
                gate.metric,
                True,
                value,
                None,
                f"Production version {prod_version} has no {gate.metric!r}; nothing to beat.",
                prod_version,
            )
        ok = _compare(gate.op, value, other)
        verdict = "beats" if ok else "does not beat"
        return GateResult(
            expr,
            gate.metric,
            ok,
            value,
            other,
            f"{gate.metric} {_show(value)} {verdict} Production version {prod_version} "
            f"({_show(other)}) under {gate.op}.",
            prod_version,
        )
    assert gate.threshold is not None
    ok = _compare(gate.op, value, gate.threshold)
    return GateResult(
        expr,
        gate.metric,
        ok,
        value,
        gate.threshold,
        f"{gate.metric} is {_show(value)}: {'meets' if ok else 'fails'} {expr}.",
    )


def _compare(op: str, a: float, b: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return op == "!=" and not (math.isnan(a) and math.isnan(b))
    return OPS[op](a, b)


def _show(v: float) -> str:
    return f"{v:.6g}"


def failure_summary(results: Sequence[GateResult]) -> str:
    """The failing gates' messages as one text. Each message is a full sentence (or several)
    ending in a period; joined by spaces, not "; ", so the text never reads ".;"."""
    parts = [r.message.strip() for r in results if not r.passed]
    return " ".join(p if p.endswith((".", "!", "?")) else p + "." for p in parts)


def evaluate_all(
    exprs: Sequence[str],
    metrics: Mapping[str, float],
    production: tuple[int, Mapping[str, float]] | None,
    signed: AbstractSet[str] = frozenset(),
) -> list[GateResult]:
    return [evaluate(parse(e, i), metrics, production, signed) for i, e in enumerate(exprs)]
