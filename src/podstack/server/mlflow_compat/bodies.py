"""What the MLflow tracking handlers (experiments.py, tracking.py, logged_models.py) share
about request bodies: their base model (unknown fields ignored), MLflow's key-value pairs,
the building of Podstack schemas with MLflow's error for invalid values, and MLflow's
``ViewType`` field.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic import ValidationError as PydanticValidationError

from podstack.server.mlflow_compat.errors import invalid


class _Body(BaseModel):
    # MLflow clients of other versions send fields we do not know: ignore them, as MLflow's
    # own server does (proto parsing with ignore_unknown_fields).
    model_config = ConfigDict(extra="ignore")


class KeyValue(_Body):
    key: str
    value: str | None = None


def _pydantic(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Builds a Podstack schema from MLflow's input, its validation error as MLflow's."""
    try:
        return fn(*args, **kwargs)
    except PydanticValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise invalid(f"Invalid value for {where or 'request'}: {first.get('msg')}") from exc


_VIEW_TYPES = {"ACTIVE_ONLY": False, "DELETED_ONLY": True, "ALL": None, 1: False, 2: True, 3: None}


def _view(value: str | int | None) -> bool | None:
    """MLflow's ``ViewType`` (by name or number) as an ``archived`` filter: False for active
    only (the default), True for deleted only, None for all."""
    if value is None:
        return False
    key: str | int = value.upper() if isinstance(value, str) else value
    if key not in _VIEW_TYPES:
        raise invalid(f"Invalid view_type {value!r}; valid: ACTIVE_ONLY, DELETED_ONLY, ALL.")
    return _VIEW_TYPES[key]
