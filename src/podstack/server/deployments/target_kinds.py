"""Which Target class serves each target kind, and building one from its stored config.

``targets.py`` holds what every target shares (Target, RunSpec, Probe); each kind's module
(local.py, kubernetes.py) imports it, and this module imports the kinds: no module imports
back, so there is no circle. A new kind is one import and one entry in ``CLASSES``.
"""

from __future__ import annotations

from typing import Any

from podstack.errors import ValidationFailed
from podstack.server.artifacts.store import BlobStore
from podstack.server.config import Settings
from podstack.server.deployments.kubernetes import KubernetesTarget
from podstack.server.deployments.local import LocalTarget
from podstack.server.deployments.ray_serve import RayServeTarget
from podstack.server.deployments.targets import KINDS, KUBERNETES, LOCAL, RAY, Target

CLASSES: dict[str, type[Target]] = {
    LOCAL: LocalTarget,
    KUBERNETES: KubernetesTarget,
    RAY: RayServeTarget,
}


def build(
    name: str, kind: str, config: dict[str, Any], settings: Settings, store: BlobStore
) -> Target:
    cls = CLASSES.get(kind)
    if cls is None:
        raise ValidationFailed(
            f"Unknown target kind {kind!r}; use one of {', '.join(KINDS)}.", {"kind": kind}
        )
    return cls(name, config, settings, store)
