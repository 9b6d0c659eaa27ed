"""Podstack vs MLflow on the same machine in the same run (issue 8). Entry: ``main(args)``.

``main`` lives here, in the package, because ``benchmarks/run.py`` discovers benchmarks by
module name and a ``benchmarks/mlflow_compare.py`` file beside this package could never be
imported (a package shadows a module of the same name).
"""

from __future__ import annotations

from typing import Any


def main(args: Any = None) -> dict[str, Any]:
    from benchmarks.mlflow_compare.runner import main as run

    return run(args)
