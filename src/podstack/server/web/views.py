"""Small adapters from service results to what templates and charts need (no rules here)."""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable
from typing import Any

from podstack.errors import PodstackError
from podstack.server.web.core import form_errors


def metric_series(rows: Iterable[Any]) -> list[list[float | None]]:
    """History rows -> ``[[step, value], …]`` for Chart.js; NaN/inf become gaps."""
    out: list[list[float | None]] = []
    for m in rows:
        v = m.value
        out.append([m.step, v if v is not None and math.isfinite(v) else None])
    return out


# Which form field a registry/artifact error is about, from the keys its details carry.
_FIELD_BY_DETAIL = (
    ("pattern", "model_name"),
    ("model_name", "model_name"),
    ("path", "artifact_path"),
    ("reason", "artifact_path"),
    ("alias", "alias"),
    ("stage", "stage"),
    ("version", "version"),
)


def register_errors(
    exc: PodstackError, fields: Collection[str] = (), default: str = "_form"
) -> dict[str, str]:
    """The service error under the form field it is about (one of ``fields``), else at the
    top of the form."""
    return form_errors(exc, default, by_detail=_FIELD_BY_DETAIL, fields=fields)


LINEAGE_KINDS = {
    "experiment": "Experiment",
    "run": "Run",
    "params": "Parameters",
    "dataset": "Dataset",
    "model_version": "Model version",
    "deployment": "Deployment",
}


def _node_href(node: Any) -> str:
    from urllib.parse import quote

    data = node.data or {}
    if node.type == "experiment" and data.get("experiment_id"):
        return "/experiments/" + quote(str(data["experiment_id"]), safe="")
    if node.type == "run" and data.get("run_id"):
        return "/runs/" + quote(str(data["run_id"]), safe="")
    if node.type == "model_version" and data.get("model_name"):
        name = quote(str(data["model_name"]), safe="")
        return f"/models/{name}/versions/{data.get('version')}?tab=lineage"
    return str(data.get("href") or data.get("url") or "") if node.type == "deployment" else ""


def _node_detail(node: Any) -> str:
    data = node.data or {}
    if node.type == "params":
        params = data.get("params") or {}
        return ", ".join(f"{k}={v}" for k, v in sorted(params.items()))
    if node.type == "dataset":
        bits = [data.get("context"), data.get("source_uri")]
        if data.get("digest"):
            bits.append("digest " + str(data["digest"])[:12])
        return " · ".join(str(b) for b in bits if b)
    if node.type == "model_version":
        return str(data.get("stage") or "")
    if node.type == "run":
        return str(data.get("status") or "")
    return ""


def lineage_data(graph: Any) -> dict[str, Any]:
    """A registry lineage graph as the page's graph script and list need it."""
    nodes = [
        {
            "id": n.id,
            "label": n.label,
            "kind": n.type,
            "kind_label": LINEAGE_KINDS.get(n.type, n.type.replace("_", " ").capitalize()),
            "href": _node_href(n),
            "detail": _node_detail(n),
            "focus": n.id == graph.root,
        }
        for n in graph.nodes
    ]
    edges = [
        {"source": e.source, "target": e.target, "label": e.relation.replace("_", " ")}
        for e in graph.edges
    ]
    return {"nodes": nodes, "edges": edges}
