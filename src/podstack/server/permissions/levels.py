"""Permission levels and the rule that bounds them by role: pure, no database.

Kept apart from ``service`` so the settings and the wire schemas can name the levels without
importing the ORM.
"""

from __future__ import annotations

NONE = "NONE"
READ = "READ"
EDIT = "EDIT"
MANAGE = "MANAGE"
LEVELS = (NONE, READ, EDIT, MANAGE)
GRANTABLE = (READ, EDIT, MANAGE)
RANK = {level: i for i, level in enumerate(LEVELS)}

MODEL = "model"
EXPERIMENT = "experiment"
RESOURCE_TYPES = (MODEL, EXPERIMENT)
USER = "user"
GROUP = "group"
GRANTEE_TYPES = (USER, GROUP)

# What a global role allows at most, whatever the grants say: a viewer stays read-only even
# when granted EDIT (the role is the ceiling, grants only open resources up to it).
ROLE_CAP = {"viewer": READ, "editor": MANAGE, "admin": MANAGE}
# Today's behaviour: any editor may change and delete any model or experiment (and a viewer
# may read them all), so a server that does not set PODSTACK_DEFAULT_PERMISSION keeps it.
DEFAULT_PERMISSION = MANAGE


def at_least(level: str, needed: str) -> bool:
    return RANK[level] >= RANK[needed]


def highest(levels: list[str]) -> str:
    return max(levels, key=RANK.__getitem__, default=NONE)


def lowest(a: str, b: str) -> str:
    return a if RANK[a] <= RANK[b] else b
