"""The registry's naming and reference rules, in one place: model names, alias names
(and the reserved ``latest`` / ``v<N>``), stages, version numbers and ``models:/`` URIs.

Pure functions without database access, so the SDK and CLI could check input locally too;
each raises ``ValidationFailed`` (422) with a message saying what is valid.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from pydantic import TypeAdapter
from pydantic import ValidationError as PydanticValidationError

from podstack.errors import ValidationFailed
from podstack.schemas.common import Label

MODEL_NAME_RE = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
ALIAS_RE = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
RESERVED_VERSION_RE = re.compile(r"^[vV]([0-9]+)$")
LATEST = "latest"
# ASCII digits only (str.isdigit also accepts "²" and other scripts' digits).
_DIGITS = re.compile(r"[0-9]+")
# Version numbers are stored as 32-bit integers.
MAX_VERSION = 2**31 - 1

STAGES = ("None", "Staging", "Production", "Archived")
STAGE_BY_LOWER = {s.lower(): s for s in STAGES}
# Best stage first: how "sort by stage" ranks models and how the UI lists the stage filters.
STAGE_ORDER = ("Production", "Staging", "None", "Archived")
# archive_existing archives the other versions already in the target stage.
EXCLUSIVE_STAGES = ("Staging", "Production")

ORDER_BY = ("name", "updated", "stage")
URI_FORMS = (
    "models:/<name>/<version>",
    "models:/<name>/<stage>",
    "models:/<name>/latest",
    "models:/<name>@<alias>",
)


def is_model_name(name: Any) -> bool:
    """The model-name rule itself, for callers that word their own message (webhook filters
    name models too): 1-128 of letters, digits, '.', '_', '-', and not just '.' or '..'."""
    return isinstance(name, str) and bool(MODEL_NAME_RE.fullmatch(name)) and name not in (".", "..")


def validate_model_name(name: Any) -> str:
    if not is_model_name(name):
        shown = name if not isinstance(name, str) or len(name) <= 200 else name[:200] + "…"
        raise ValidationFailed(
            f"Invalid model name {shown!r}: use 1–128 characters from letters, digits, '.', '_' "
            "and '-' (and not just '.' or '..'), e.g. 'sentiment-classifier'.",
            {"name": shown, "pattern": MODEL_NAME_RE.pattern},
        )
    return name


_LABELS = TypeAdapter(list[Label])
MAX_LABELS = 100


def validate_labels(labels: Any) -> list[str]:
    """Model labels: the wire schema's ``Label`` pattern, at most 100, duplicates dropped.
    Enforced here so callers that bypass the REST schema (web forms, CLI) meet the same rule."""
    try:
        checked = _LABELS.validate_python(list(labels or ()))
    except PydanticValidationError as exc:
        bad = exc.errors()[0]
        raise ValidationFailed(
            f"Invalid label: {bad.get('msg', 'invalid')}. Labels are 1-64 characters of "
            "letters, digits, space and _ - . : /",
            {"field": "tags", "value": str(bad.get("input"))[:100]},
        ) from None
    unique = list(dict.fromkeys(checked))
    if len(unique) > MAX_LABELS:
        raise ValidationFailed(f"At most {MAX_LABELS} labels per model.", {"field": "tags"})
    return unique


def is_reserved_alias(alias: str) -> bool:
    return alias.lower() == LATEST or RESERVED_VERSION_RE.fullmatch(alias) is not None


def validate_alias(alias: Any) -> str:
    """For aliases being set: the syntax, and not one of the reserved names."""
    if not isinstance(alias, str) or not ALIAS_RE.fullmatch(alias):
        shown = alias if not isinstance(alias, str) or len(alias) <= 200 else alias[:200] + "…"
        raise ValidationFailed(
            f"Invalid alias {shown!r}: use 1–128 characters from letters, digits, '_' and '-', "
            "e.g. 'latest-prod'.",
            {"alias": shown, "pattern": ALIAS_RE.pattern},
        )
    if is_reserved_alias(alias):
        raise ValidationFailed(
            f"Alias {alias!r} is reserved: 'latest' always means the highest version and "
            "'v<N>' means version N. They can be read but not set; pick another name.",
            {"alias": alias, "reserved": [LATEST, "v<N>"]},
        )
    return alias


def normalize_stage(stage: Any) -> str:
    """Case-insensitive on input, canonical on output; ``None`` (Python) means "None"."""
    if stage is None:
        return "None"
    canonical = STAGE_BY_LOWER.get(str(stage).strip().lower()) if isinstance(stage, str) else None
    if canonical is None:
        raise ValidationFailed(
            f"Unknown stage {str(stage)[:100]!r}. Valid stages: {', '.join(STAGES)} "
            "(case-insensitive).",
            {"stage": str(stage)[:100], "valid": list(STAGES)},
        )
    return canonical


def parse_version(value: Any) -> int:
    """A version number is a positive integer (``3`` or ``"3"``), at most ``MAX_VERSION``."""
    if isinstance(value, bool):
        value = None  # True is an int in Python, never a version
    if isinstance(value, str) and _DIGITS.fullmatch(value) and len(value) <= 10:
        value = int(value)
    if isinstance(value, int) and 0 < value <= MAX_VERSION:
        return value
    raise ValidationFailed(
        f"Invalid version {str(value)[:100]!r}: a version number is a positive integer "
        "(1, 2, 3…). To refer to a version by stage or alias use a models:/ URI "
        "(models:/<name>/Production, models:/<name>@<alias>).",
        {"version": str(value)[:100]},
    )


@dataclass(frozen=True)
class ModelRef:
    """A parsed ``models:/`` URI: ``kind`` is version | stage | latest | alias."""

    name: str
    kind: str
    value: str


def parse_model_uri(uri: Any) -> ModelRef:
    def bad(problem: str) -> ValidationFailed:
        return ValidationFailed(
            f"Invalid model URI {str(uri)[:300]!r}: {problem}. Use one of: "
            + ", ".join(URI_FORMS)
            + ".",
            {"uri": str(uri)[:300], "forms": list(URI_FORMS)},
        )

    if not isinstance(uri, str) or not uri.startswith("models:/"):
        raise bad("it must start with 'models:/'")
    rest = uri[len("models:/") :]
    if "/" in rest:
        name, _, tail = rest.partition("/")
        if not tail or "/" in tail:
            raise bad("expected exactly one '/<version|stage|latest>' after the name")
        validate_model_name(name)
        if _DIGITS.fullmatch(tail):
            return ModelRef(name, "version", str(parse_version(tail)))
        if tail.lower() == LATEST:
            return ModelRef(name, "latest", LATEST)
        if tail.lower() in STAGE_BY_LOWER:
            return ModelRef(name, "stage", normalize_stage(tail))
        raise bad(
            f"{tail!r} is neither a version number, a stage ({', '.join(STAGES)}) nor 'latest'"
        )
    if "@" in rest:
        name, _, alias = rest.partition("@")
        validate_model_name(name)
        if not ALIAS_RE.fullmatch(alias):
            raise bad(f"{alias!r} is not a valid alias name")
        return ModelRef(name, "alias", alias)
    raise bad("it names no version: add '/<version>', '/<stage>' or '@<alias>'")
