"""Cron expressions: validation that names the wrong field, fire times in an IANA timezone
(correct across DST through cronsim + zoneinfo), and the expression in words.

cronsim follows Debian cron on DST changes: a daily job whose local time is skipped by
spring-forward runs once at the first valid time after it; one whose local time repeats on
fall-back runs once (at the first occurrence). croniter fires twice on fall-back days.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cron_descriptor import FormatException, Options, get_description
from cronsim import CronSim, CronSimError

from podstack.errors import ValidationFailed

SHORTCUTS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
FIELDS = ("minute", "hour", "day-of-month", "month", "day-of-week")
_VALID = {
    "minute": "0-59",
    "hour": "0-23",
    "day-of-month": "1-31 or L",
    "month": "1-12 or JAN-DEC",
    "day-of-week": "0-7 or SUN-SAT (0 and 7 are Sunday)",
}
_CRONSIM_FIELD = {
    "Bad minute": "minute",
    "Bad hour": "hour",
    "Bad day-of-month": "day-of-month",
    "Bad month": "month",
    "Bad day-of-week": "day-of-week",
}
# Far enough to find the next Feb 29 or a rare day-of-month/day-of-week combination.
_SEARCH_HORIZON = timedelta(days=366 * 8)
_MAX_COUNT = 100_000


def expand(expr: str) -> str:
    """The 5-field form of ``expr`` (shortcuts expanded, whitespace normalised)."""
    text = " ".join(expr.split())
    return SHORTCUTS.get(text.lower(), text)


def validate(expr: str) -> str:
    """Returns the normalised expression or raises ``ValidationFailed`` naming the field."""
    text = " ".join((expr or "").split())
    if text.lower() in SHORTCUTS:
        return text.lower()
    if text.startswith("@"):
        raise ValidationFailed(
            f"Unknown cron shortcut {text!r}; use one of {', '.join(sorted(SHORTCUTS))} "
            "or 5 fields.",
            {"field": "cron", "value": text, "shortcuts": sorted(SHORTCUTS)},
        )
    parts = text.split(" ") if text else []
    if len(parts) != 5:
        raise ValidationFailed(
            f"Cron expression {text!r} has {len(parts)} field(s); it needs exactly 5: "
            "minute hour day-of-month month day-of-week (e.g. '0 2 * * *' for 02:00 daily).",
            {"field": "cron", "value": text, "fields": list(FIELDS)},
        )
    # Check fields one at a time so the message names the first wrong one, even when
    # cronsim would report a different field first.
    for i, name in enumerate(FIELDS):
        probe = ["*"] * 5
        probe[i] = parts[i]
        _check(" ".join(probe), text, name, parts[i])
    _check(text, text, None, None)
    return text


def _check(probe: str, text: str, name: str | None, value: str | None) -> None:
    try:
        CronSim(probe, datetime(2000, 1, 1, tzinfo=UTC))
    except CronSimError as exc:
        field = name or _CRONSIM_FIELD.get(str(exc), "day-of-month")
        idx = FIELDS.index(field)
        if name is None:
            # Each field is fine alone: the combination never happens (e.g. 31 February).
            parts = text.split(" ")
            raise ValidationFailed(
                f"Cron expression {text!r} never fires: day-of-month {parts[2]!r} does not "
                f"occur in month {parts[3]!r}.",
                {"field": "cron", "cron_field": "day-of-month", "position": 3, "value": parts[2]},
            ) from None
        value = value if value is not None else text.split(" ")[idx]
        raise ValidationFailed(
            f"Invalid cron expression {text!r}: the {field} field (field {idx + 1}) "
            f"{value!r} is not valid; {field} takes {_VALID[field]}, with '*', ',', '-' "
            "and '/' (e.g. '*/15').",
            {"field": "cron", "cron_field": field, "position": idx + 1, "value": value},
        ) from None


def zone(name: str) -> ZoneInfo:
    """The IANA timezone ``name`` or ``ValidationFailed``."""
    try:
        if not name or name != name.strip() or name.startswith(("/", ".")):
            raise ValueError(name)
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValidationFailed(
            f"Unknown timezone {name!r}; use an IANA name such as 'UTC', 'Europe/Berlin' or "
            "'America/New_York'.",
            {"field": "timezone", "value": name},
        ) from None


def _iter_after(expr: str, tz: ZoneInfo, after: datetime) -> Iterator[datetime]:
    """Fire times strictly after ``after`` (aware), in UTC, increasing."""
    after = after.astimezone(UTC)
    local = after.astimezone(tz)
    it = CronSim(expand(expr), local)
    horizon = after + _SEARCH_HORIZON
    for t in it:
        u = t.astimezone(UTC)
        if u > horizon:
            return
        # Started inside a repeated (fall-back) hour, cronsim may yield the first
        # occurrence of a local time that is already past in real time: skip it.
        if u <= after:
            continue
        yield u


def next_after(expr: str, tz: str, after: datetime) -> datetime | None:
    return next(_iter_after(expr, zone(tz), after), None)


def next_n(expr: str, tz: str, after: datetime, n: int) -> list[datetime]:
    return list(itertools.islice(_iter_after(expr, zone(tz), after), n))


def due(expr: str, tz: str, first: datetime, now: datetime) -> tuple[datetime | None, int]:
    """The latest fire time in [first, now] and how many there are; ``first`` is itself a
    fire time (the stored next fire). Counting stops at ``_MAX_COUNT`` (a per-minute job after
    months of downtime), then the latest is found from shortly before ``now``."""
    if first > now:
        return None, 0
    zi = zone(tz)
    latest, count = first, 1
    for t in _iter_after(expr, zi, first):
        if t > now:
            return latest, count
        latest, count = t, count + 1
        if count >= _MAX_COUNT:
            break
    else:
        return latest, count
    for t in _iter_after(expr, zi, max(latest, now - timedelta(days=2))):
        if t > now:
            break
        latest = t
    return latest, count


def describe(expr: str) -> str:
    """The expression in words, 24-hour clock: ``0 2 * * *`` -> "At 02:00 every day"."""
    five = expand(expr)
    opts = Options()
    opts.use_24hour_time_format = True
    try:
        words = get_description(five, opts)
    except (FormatException, ValueError, KeyError, IndexError):
        return five
    minute, hour, dom, month, dow = five.split(" ")
    fixed_times = not any(c in minute + hour for c in "*/-")
    if fixed_times and dom == month == dow == "*":
        words += " every day"
    return words
