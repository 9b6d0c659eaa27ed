"""SDK methods for run artifacts: log files or whole directories, list, download."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import quote

from podstack.client.base import BaseClient
from podstack.client.transfer import PROGRESS_THRESHOLD, TransferProgress, download_to, upload_file
from podstack.errors import ValidationFailed
from podstack.schemas.artifacts import ArtifactEntry, ArtifactFile
from podstack.server.artifacts.paths import join, safe_join, validate_artifact_path


def artifact_api_path(run_id: str, path: str) -> str:
    """``/runs/<id>/artifacts/<path>`` with each segment percent-encoded.

    ``.`` and ``..`` segments are encoded too: httpx would otherwise resolve them away before
    sending, and the server (which refuses them) would never see what the caller asked for.
    """
    segments = []
    for seg in path.split("/"):
        if seg in (".", ".."):
            segments.append(seg.replace(".", "%2E"))
        else:
            segments.append(quote(seg, safe=""))
    return f"/runs/{quote(run_id, safe='')}/artifacts/" + "/".join(segments)


def _local_files(root: Path) -> list[tuple[Path, str]]:
    """Every file under ``root`` with its POSIX path relative to it, in a stable order."""
    out: list[tuple[Path, str]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        base = Path(dirpath)
        for name in sorted(filenames):
            file = base / name
            if file.is_file():  # skips sockets, FIFOs and dangling symlinks
                out.append((file, file.relative_to(root).as_posix()))
    return out


class ArtifactsAPI(BaseClient):
    def log_artifact(
        self, run_id: str, local_path: str | os.PathLike[str], artifact_path: str | None = None
    ) -> list[ArtifactFile]:
        """Uploads a file, or every file under a directory, to the run.

        ``artifact_path`` is the destination *directory* in the run (root if None), as in
        MLflow: file ``model.pt`` goes to ``model.pt``, or ``checkpoints/model.pt`` with
        ``artifact_path="checkpoints"``; a directory's contents go under ``artifact_path``
        keeping their relative paths. Each file is streamed (constant memory) and verified by
        sha256 on the server. Returns what was stored.
        """
        local = Path(local_path)
        dest_dir = validate_artifact_path(artifact_path or "", directory=True)
        if local.is_file():
            files = [(local, join(dest_dir, local.name))]
        elif local.is_dir():
            files = [(f, join(dest_dir, rel)) for f, rel in _local_files(local)]
        else:
            raise FileNotFoundError(f"No such file or directory: {str(local)!r}")
        # Check every name first, so a directory with one unusable name uploads nothing.
        for f, target in files:
            try:
                validate_artifact_path(target)
            except ValidationFailed as exc:
                raise ValidationFailed(
                    f"{exc.message} (local file {str(f)!r})", exc.details
                ) from None
        stored: list[ArtifactFile] = []
        total = sum(f.stat().st_size for f, _ in files)
        with TransferProgress() as bars:
            overall = bars.task(f"Uploading {len(files)} files", total) if len(files) > 1 else None
            for f, target in files:
                doc = upload_file(self, artifact_api_path(run_id, target), f, progress=bars)
                stored.append(ArtifactFile.model_validate(doc))
                if overall is not None:
                    overall(f.stat().st_size)
        return stored

    def log_artifacts(
        self, run_id: str, local_dir: str | os.PathLike[str], artifact_path: str | None = None
    ) -> list[ArtifactFile]:
        """MLflow's name for logging a directory's contents; same as ``log_artifact``."""
        return self.log_artifact(run_id, local_dir, artifact_path)

    def list_artifacts(
        self, run_id: str, path: str | None = None, *, recursive: bool = False
    ) -> list[ArtifactEntry]:
        """Entries under directory ``path`` (root if None). Sub-directories appear once with
        ``is_dir=True`` unless ``recursive``, which lists every file below instead."""
        params = {"path": path or "", "recursive": str(recursive).lower(), "limit": 1000}
        return [
            ArtifactEntry.model_validate(item)
            for item in self._paginate(f"/runs/{quote(run_id, safe='')}/artifacts", "items", params)
        ]

    def download_artifacts(
        self, run_id: str, path: str = "", destination: str | os.PathLike[str] = "."
    ) -> str:
        """Downloads a file or a directory (``""`` = everything) of the run's artifacts.

        Files keep their run-relative paths under ``destination`` (as in MLflow, ``a/b.txt``
        lands at ``destination/a/b.txt``); the return value is the local path of ``path``.
        Every file is verified against its sha256; files already present with the right
        content are skipped.
        """
        prefix = validate_artifact_path(path or "", directory=True)
        files = self.list_artifacts(run_id, prefix, recursive=True)
        dest_root = Path(destination)
        # Resolve every target before downloading anything, so a bad listing writes nothing.
        targets = [(f, safe_join(dest_root, f.path)) for f in files]
        total = sum(f.size or 0 for f in files)
        with TransferProgress() as bars:
            overall = (
                bars.task(f"Downloading {len(files)} files", total)
                if len(files) > 1 and total >= PROGRESS_THRESHOLD
                else None
            )
            for entry, target in targets:
                download_to(
                    self,
                    artifact_api_path(run_id, entry.path),
                    target,
                    expected_sha256=entry.sha256,
                    size=entry.size,
                    progress=bars,
                )
                if overall is not None:
                    overall(entry.size or 0)
        return str(safe_join(dest_root, prefix))
