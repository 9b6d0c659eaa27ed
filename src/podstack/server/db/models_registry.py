"""Imports every capability's ORM models so Base.metadata knows all tables."""

from __future__ import annotations

import importlib
import pkgutil

import podstack.server as server_pkg
from podstack.server.db.base import Base

# Every capability package with a models.py is loaded; new capabilities need no edit here.
for mod in pkgutil.iter_modules(server_pkg.__path__):
    if mod.ispkg:
        try:
            importlib.import_module(f"podstack.server.{mod.name}.models")
        except ModuleNotFoundError as exc:
            if exc.name != f"podstack.server.{mod.name}.models":
                raise

metadata = Base.metadata
