"""SDK methods for run artifacts: log files or whole directories, list, download."""

from __future__ import annotations

import os
from pathlib import Path

from podstack.client.base import BaseClient, seg
from podstack.client.transfer import (
    PROGRESS_THRESHOLD,
    TransferProgress,
    download_to,
    upload_artifact,
)
from podstack.errors import ValidationFailed
from podstack.schemas.artifact_paths import join, safe_join, validate_artifact_path
from podstack.schemas.artifacts import ArtifactEntry, ArtifactFile


def artifact_api_path(run_id: str, path: str) -> str:
    """``/runs/<id>/artifacts/<path>`` with each segment percent-encoded (``.`` and ``..``
    too, so the server sees, and refuses, what the caller asked for)."""
    return f"/runs/{seg(run_id)}/artifacts/" + "/".join(seg(s) for s in path.split("/"))


def _grant_api_path(run_id: str, path: str) -> str:
    """``/runs/<id>/downloads/<path>``: how to fetch the file (presigned URL or proxy)."""
    return f"/runs/{seg(run_id)}/downloads/" + "/".join(seg(s) for s in path.split("/"))


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
        """Uploads a file, or a directory with everything under it, to the run.

        ``artifact_path`` is the destination *directory* in the run (root if None), as in
        MLflow: file ``model.pt`` goes to ``model.pt``, or ``checkpoints/model.pt`` with
        ``artifact_path="checkpoints"``. A directory keeps its own name, as in MLflow:
        ``log_artifact("checkpoints")`` stores ``checkpoints/best_model.pt``, and with
        ``artifact_path="runs"`` it stores ``runs/checkpoints/best_model.pt``. To upload a
        directory's *contents* without its name, use ``log_artifacts``. Each file is streamed
        (constant memory) and verified by sha256 on the server. Returns what was stored.
        """
        local = Path(local_path)
        dest_dir = validate_artifact_path(artifact_path or "", directory=True)
        if local.is_dir():
            # ``Path("export/").name`` is "export", but ``Path(".").name`` is empty: resolve first.
            dest_dir = join(dest_dir, local.resolve().name)
        return self._upload(run_id, local, dest_dir)

    def log_artifacts(
        self, run_id: str, local_dir: str | os.PathLike[str], artifact_path: str | None = None
    ) -> list[ArtifactFile]:
        """Uploads the *contents* of a directory under ``artifact_path`` (root if None),
        keeping their relative paths, as MLflow's ``log_artifacts`` does:
        ``log_artifacts("export")`` stores ``export/a.bin`` as ``a.bin``."""
        dest_dir = validate_artifact_path(artifact_path or "", directory=True)
        return self._upload(run_id, Path(local_dir), dest_dir)

    def _upload(self, run_id: str, local: Path, dest_dir: str) -> list[ArtifactFile]:
        """Uploads file ``local`` into ``dest_dir``, or directory ``local``'s files under it."""
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
                # Direct to the object store when the server grants it, else streamed.
                proxied = artifact_api_path(run_id, target)
                doc = upload_artifact(self, run_id, target, f, proxied, progress=bars)
                stored.append(ArtifactFile.model_validate(doc))
                if overall is not None:
                    overall(f.stat().st_size)
        return stored

    def list_artifacts(
        self, run_id: str, path: str | None = None, *, recursive: bool = False
    ) -> list[ArtifactEntry]:
        """Entries under directory ``path`` (root if None). Sub-directories appear once with
        ``is_dir=True`` unless ``recursive``, which lists every file below instead."""
        params = {"path": path or "", "recursive": str(recursive).lower(), "limit": 1000}
        return [
            ArtifactEntry.model_validate(item)
            for item in self._paginate(f"/runs/{seg(run_id)}/artifacts", "items", params)
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
                    grant_path=_grant_api_path(run_id, entry.path),
                )
                if overall is not None:
                    overall(entry.size or 0)
        return str(safe_join(dest_root, prefix))
