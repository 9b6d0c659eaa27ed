"""The one rule for artifact paths, shared by uploads, listings, downloads, the registry and
the SDK (which imports this pure module to check paths before sending and to place downloads).
It is part of the wire contract, so it lives beside the schemas: the SDK needs nothing from
``podstack.server`` to apply it.

An artifact path is a relative POSIX path such as ``checkpoints/best_model.pt``. Anything that
could escape a destination directory when the tree is downloaded, or that different operating
systems would read differently, is refused up front rather than "normalised": silently turning
``a/../b`` into ``b`` would make two different requests name the same file.
"""

from __future__ import annotations

import re
from pathlib import Path

from podstack.errors import ValidationFailed

MAX_PATH_LENGTH = 1024
EXAMPLE = "checkpoints/best_model.pt"
# C0 controls, DEL and C1 controls: invisible in UIs and logs, and NUL truncates C strings.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# "C:" as a first segment is a drive on Windows, i.e. not relative there.
_DRIVE = re.compile(r"^[A-Za-z]:")


def _fail(path: str, problem: str, reason: str) -> ValidationFailed:
    shown = path if len(path) <= 200 else path[:200] + "…"
    return ValidationFailed(
        f"Invalid artifact path {shown!r}: {problem}. Artifact paths are relative POSIX paths "
        f"of at most {MAX_PATH_LENGTH} characters, like {EXAMPLE!r}.",
        {"path": shown, "reason": reason},
    )


def validate_artifact_path(path: str, *, directory: bool = False) -> str:
    """Returns ``path`` unchanged if valid, else raises a 422 ``ValidationFailed`` naming the
    problem.

    ``directory=True`` is for prefixes (listings, registry artifact paths): the empty string
    means the run's root and a single trailing ``/`` is tolerated and dropped.
    """
    if not isinstance(path, str):
        raise ValidationFailed("Artifact path must be a string.", {"reason": "type"})
    if directory:
        if path in ("", "/"):
            # "/" alone reads as "the root" to a person; anything longer starting with "/" is
            # still refused below as absolute.
            return ""
        if path.endswith("/") and not path.endswith("//"):
            path = path[:-1]
    if not path:
        raise _fail(path, "it is empty", "empty")
    if len(path) > MAX_PATH_LENGTH:
        raise _fail(
            path,
            f"it is {len(path)} characters long (the maximum is {MAX_PATH_LENGTH})",
            "too_long",
        )
    if "\x00" in path:
        raise _fail(path, "it contains a NUL character", "nul")
    if (m := _CONTROL.search(path)) is not None:
        raise _fail(
            path, f"it contains the control character U+{ord(m.group()):04X}", "control_character"
        )
    if "\\" in path:
        raise _fail(path, "it contains a backslash; use '/' to separate directories", "backslash")
    if path.startswith("/"):
        raise _fail(path, "it is absolute (starts with '/')", "absolute")
    if _DRIVE.match(path):
        raise _fail(path, "it starts with a drive letter", "absolute")
    for segment in path.split("/"):
        if segment == "":
            raise _fail(
                path, "it contains an empty segment ('//' or a trailing '/')", "empty_segment"
            )
        if segment == "..":
            raise _fail(path, "it contains a '..' segment", "parent_segment")
        if segment == ".":
            raise _fail(path, "it contains a '.' segment", "dot_segment")
    return path


def parent_dirs(path: str) -> list[str]:
    """``a/b/c.txt`` -> ``["a", "a/b"]``: the directories a file path implies."""
    parts = path.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


def join(directory: str, name: str) -> str:
    """Joins two artifact path pieces (either may be the root, "")."""
    return f"{directory}/{name}" if directory and name else directory or name


def safe_join(dest_dir: str | Path, rel: str) -> Path:
    """Where artifact ``rel`` goes under ``dest_dir`` on this machine, refusing any path that
    would land outside it (after resolving symlinks already present under ``dest_dir``).

    Downloads trust nothing the server says: a hostile or buggy server listing ``../x`` or an
    absolute path gets a ``ValidationFailed`` here, not a file written elsewhere.
    """
    rel = validate_artifact_path(rel, directory=True)
    base = Path(dest_dir).resolve()
    target = (base / rel).resolve() if rel else base
    if target != base and base not in target.parents:
        raise ValidationFailed(
            f"Artifact path {rel!r} would be written outside {str(base)!r} (through a symbolic "
            "link); refusing to download it there.",
            {"path": rel, "destination": str(base), "reason": "escapes_destination"},
        )
    return target
