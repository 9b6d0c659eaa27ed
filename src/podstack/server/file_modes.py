"""Owner-only files under ``$PODSTACK_HOME``.

The home holds the SQLite database (password hashes, token hashes, webhook secrets), its
``-wal``/``-shm`` files, the session and secret keys, every artifact and the logs of model
servers and jobs. None of it is for other local users: directories are created 0700 and
files 0600, whatever the process umask (an embedded client runs in the user's own process,
whose umask is theirs to keep), and ``podstack server`` also sets the umask to 0o077 so that
files written by libraries (SQLite, Alembic, uvicorn) follow the same rule.

Existing files are never chmod-ed behind the operator's back: ``mode_warnings`` names each
one that is wider than owner-only, with the command that fixes it. It looks only at the
home, its top-level entries, the database files and a few known directories -- never walks
the artifact tree, which may hold millions of blobs.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    from podstack.server.config import Settings

PRIVATE_UMASK = 0o077
DIR_MODE = 0o700
FILE_MODE = 0o600
_SQLITE_SUFFIXES = ("", "-wal", "-shm", "-journal")
log = logging.getLogger("podstack.server.files")


def restrict_umask() -> int:
    """Sets the process umask to 0o077 (new files 0600, new directories 0700); returns the
    previous one. For processes Podstack owns (``podstack server``), not a user's process."""
    return os.umask(PRIVATE_UMASK)


def private_dirs(path: Path) -> Path:
    """``mkdir -p`` where every directory this creates is 0700 (``Path.mkdir(parents=True,
    mode=...)`` applies the mode to the last component only). Existing ones are left as is."""
    path = Path(path).expanduser()
    missing: list[Path] = []
    p = path
    while not p.exists():
        missing.append(p)
        if p.parent == p:
            break
        p = p.parent
    for d in reversed(missing):
        try:
            d.mkdir(mode=DIR_MODE)
        except FileExistsError:
            continue  # created concurrently (another worker or replica)
        d.chmod(DIR_MODE)  # the umask can only narrow mkdir's mode; this makes it exact
    return path


def open_private(path: Path, *, append: bool = False) -> IO[bytes]:
    """Opens ``path`` for writing (binary), creating it 0600: the mode is given to open(2)
    itself, so the file is never readable by others, not even for a moment."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC)
    fd = os.open(path, flags | getattr(os, "O_CLOEXEC", 0), FILE_MODE)
    return os.fdopen(fd, "ab" if append else "wb")


def ensure_private_file(path: Path) -> bool:
    """Creates an empty 0600 file if ``path`` does not exist (parents 0700); True if created.
    Used for the SQLite database: SQLite gives its -wal/-shm/-journal files the database
    file's own mode, so creating the database 0600 up front keeps all of them private."""
    path = Path(path).expanduser()
    private_dirs(path.parent)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        return False
    os.close(fd)
    return True


def sqlite_path(database_url: str) -> Path | None:
    """The database file of a ``sqlite:///...`` URL; None for other databases and memory."""
    if not database_url.startswith("sqlite") or "///" not in database_url:
        return None
    path = database_url.split("///", 1)[1].split("?", 1)[0]
    if not path or path == ":memory:":
        return None
    return Path(path).expanduser()


def prepare_home(settings: Settings) -> None:
    """Creates ``$PODSTACK_HOME`` 0700 if it does not exist yet."""
    private_dirs(Path(settings.home))


# ---------------------------------------------------------------- checking existing files


def _local_artifacts(settings: Settings) -> Path | None:
    uri = settings.artifacts_uri
    if "://" in uri and not uri.startswith("file://"):
        return None  # object storage: nothing on this disk
    return settings.artifacts_path


def _checked_paths(settings: Settings) -> list[Path]:
    home = Path(settings.home)
    paths: list[Path] = [home]
    try:
        paths += sorted(home.iterdir())  # one level: secrets, podstack.db, top-level dirs
    except OSError:
        pass
    db = sqlite_path(settings.database_url)
    if db is not None:
        paths += [db.with_name(db.name + s) for s in _SQLITE_SUFFIXES]
    artifacts = _local_artifacts(settings)
    if artifacts is not None:
        paths += [artifacts, artifacts / "blobs", artifacts / "blobs" / "sha256", artifacts / "tmp"]
    deployments = home / "deployments"
    paths += [deployments / "logs", deployments / "models", home / "executions"]
    seen: set[Path] = set()
    unique = []
    for p in paths:
        if p not in seen:
            seen.add(p)
            unique.append(p)
    return unique


def _fix_command(path: Path, home: Path, is_dir: bool) -> str:
    if path == home or home in path.parents:
        return f"chmod -R go-rwx {home}"
    return f"chmod {'-R ' if is_dir else ''}go-rwx {path}"


def mode_warnings(settings: Settings) -> list[str]:
    """One message per checked path that other local users can access (any group or other
    permission bit), naming the path, its mode and the fix. Does not change anything."""
    home = Path(settings.home)
    out = []
    for path in _checked_paths(settings):
        try:
            st = path.stat()
        except OSError:
            continue  # absent (not created yet), or not ours to look at
        mode = stat.S_IMODE(st.st_mode)
        if not mode & 0o077:
            continue
        is_dir = stat.S_ISDIR(st.st_mode)
        kind = "directory" if is_dir else "file"
        out.append(
            f"{path} is a {kind} other local users can access (mode {mode:04o}; Podstack keeps "
            f"secrets, password and token hashes and artifacts under {home}). "
            f"Fix: {_fix_command(path, home, is_dir)}"
        )
    return out


def warn_wide_modes(settings: Settings) -> list[str]:
    """Logs ``mode_warnings`` (one warning line per path) and returns them."""
    found = mode_warnings(settings)
    for message in found:
        log.warning("%s", message)
    return found
