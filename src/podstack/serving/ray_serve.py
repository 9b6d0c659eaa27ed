"""Ray Serve entry point of the ``ray`` deployment target: the very app of ``python -m
podstack.serving`` (``serving.app.create_app``, the Open Inference Protocol) as the ingress of
a Ray Serve deployment, one model per replica.

The Podstack server deploys ``podstack.serving.ray_serve:build`` with these ``args``::

    {"name": "<endpoint>", "version": "3", "instance": "<id>", "trusted": false,
     "files": [["model.onnx", "<sha256>"], ...]}

and the version's files as the application's ``working_dir`` (uploaded by the server from its
artifact store). Each replica checks every file against its sha256 before loading: a file
that changed on the way is refused, the replica fails to start and Ray Serve reports the
application unhealthy.

The cluster's Python environment needs ``podstack[serving]`` (and ``ray[serve]``).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from ray import serve
from ray.serve import Application

from podstack.serving import app as serving_app

MANIFEST_CHUNK = 1 << 20


def verify_files(root: Path, files: list[tuple[str, str]]) -> None:
    """Raises ValueError naming the first file that is missing or whose sha256 differs."""
    for rel, sha in files:
        path = (root / rel).resolve()
        if root.resolve() not in path.parents:
            raise ValueError(f"file path {rel!r} leaves the model directory")
        if not path.is_file():
            raise ValueError(f"model file {rel!r} is missing on the replica")
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            while chunk := fh.read(MANIFEST_CHUNK):
                h.update(chunk)
        if h.hexdigest() != sha:
            raise ValueError(
                f"model file {rel!r} does not match its sha256 (expected {sha}, got "
                f"{h.hexdigest()}); refusing to serve it"
            )


@serve.deployment(name="model")
@serve.ingress()
class PodstackModel:
    """One replica: the model loaded from the working directory, served by the same Starlette
    app as the local model server."""

    def __init__(self, args: dict[str, Any]) -> None:
        root = Path.cwd()  # Ray unpacks the application's working_dir here
        verify_files(root, [(str(p), str(s)) for p, s in args["files"]])
        self._app = serving_app.create_app(
            serving_app.load_served(
                root,
                str(args["name"]),
                str(args["version"]),
                str(args["instance"]),
                bool(args.get("trusted", False)),
            )
        )

    def __serve_build_asgi_app__(self) -> Any:
        return self._app


def build(args: dict[str, Any]) -> Application:
    """The application builder named by the deploy config's ``import_path``."""
    return PodstackModel.bind(dict(args))
