"""``python -m podstack.serving``: serve one model directory over the Open Inference Protocol.

The model is loaded (and checked) before the port is bound, so a listening server is a ready
one, and a model that cannot load ends the process at once with ``error: <reason>`` as the
last line on stderr, which the local deployment target reports as the failure reason.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from pathlib import Path

from podstack.serving import app as serving_app
from podstack.serving.formats import NotServable
from podstack.serving.runtime import LoadError

EXIT_LOAD = 3
EXIT_PORT = 4


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m podstack.serving", description=__doc__)
    p.add_argument("--model-dir", required=True, type=Path)
    p.add_argument("--name", required=True, help="model name in /v2/models/<name>")
    p.add_argument("--version", default="1")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--workers", type=int, default=1, help="worker processes (replicas)")
    p.add_argument("--instance", default="", help="id reported in GET /v2 (re-attach check)")
    p.add_argument(
        "--trusted", action="store_true", help="allow pickle formats (they run code on load)"
    )
    args = p.parse_args(argv)

    try:
        served = serving_app.load_served(
            args.model_dir, args.name, args.version, args.instance, args.trusted
        )
    except (NotServable, LoadError) as exc:
        msg = getattr(exc, "reason", None) or str(exc)
        print(f"error: model failed to load: {msg}", file=sys.stderr, flush=True)
        return EXIT_LOAD

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((args.host, args.port))
    except OSError as exc:
        print(f"error: cannot listen on port {args.port}: {exc.strerror}", file=sys.stderr)
        return EXIT_PORT
    sock.listen(2048)
    sock.set_inheritable(True)

    import uvicorn

    if args.workers <= 1:
        config = uvicorn.Config(
            serving_app.create_app(served), log_level="warning", access_log=False
        )
        uvicorn.Server(config).run(sockets=[sock])
        return 0
    # Several worker processes share the one listening socket; each loads the model itself.
    os.environ.update(
        {
            serving_app.ENV_MODEL_DIR: str(args.model_dir),
            serving_app.ENV_NAME: args.name,
            serving_app.ENV_VERSION: args.version,
            serving_app.ENV_INSTANCE: args.instance,
            serving_app.ENV_TRUSTED: "1" if args.trusted else "0",
        }
    )
    from uvicorn.supervisors import Multiprocess

    config = uvicorn.Config(
        "podstack.serving.app:app_from_env",
        factory=True,
        workers=args.workers,
        log_level="warning",
        access_log=False,
    )
    Multiprocess(config, sockets=[sock]).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
