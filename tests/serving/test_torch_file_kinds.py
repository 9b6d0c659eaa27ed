"""PyTorch files are told apart by their contents, never by their name (issue 14: the Deploy
dialog called any ``.pt`` file "a PyTorch checkpoint written by torch.save")."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

import pytest

from podstack.serving import formats as fmt
from podstack.serving.formats import NotServable


def _opener(files: dict[str, bytes]) -> Any:
    return lambda p: io.BytesIO(files[p])


def _zip(names: list[str]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for n in names:
            zf.writestr(n, b"x")
    return buf.getvalue()


def _reason(files: dict[str, bytes]) -> str:
    with pytest.raises(NotServable) as exc:
        fmt.detect(list(files), _opener(files))
    return exc.value.reason


@pytest.fixture(scope="module")
def real_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """Files written by PyTorch itself (installed for the test suite)."""
    import torch  # a dev extra (CPU build): a missing torch fails, never skips

    d: Path = tmp_path_factory.mktemp("torch")
    net = torch.nn.Linear(4, 2)
    torch.jit.save(torch.jit.script(net), str(d / "script.pt"))
    torch.save(net.state_dict(), d / "zip_ckpt.pt")
    torch.save(net.state_dict(), d / "legacy.pt", _use_new_zipfile_serialization=False)
    return {p.name: p.read_bytes() for p in d.iterdir()}


def test_real_pytorch_files_are_classified_by_content(real_files: dict[str, bytes]) -> None:
    kind = fmt.torch_file_kind
    assert kind(io.BytesIO(real_files["script.pt"])) == fmt.TORCH_SCRIPT_ARCHIVE
    assert kind(io.BytesIO(real_files["zip_ckpt.pt"])) == fmt.TORCH_SAVE_CHECKPOINT
    assert kind(io.BytesIO(real_files["legacy.pt"])) == fmt.TORCH_SAVE_CHECKPOINT
    # The same bytes under any name are the same thing.
    for name in ("weights.bin", "model", "model.pt"):
        files = {name: real_files["script.pt"]}
        assert fmt.detect(list(files), _opener(files)).format == "torchscript"
        assert "torch.save" in _reason({name: real_files["legacy.pt"]})
        assert "torch.save" in _reason({name: real_files["zip_ckpt.pt"]})


@pytest.mark.parametrize(
    ("content", "kind", "zip_words"),
    [
        (b"weights", fmt.UNRECOGNISED, "is not a format that can be served"),
        (b"\x80\x04\x95plain pickle", fmt.UNRECOGNISED, "is not a format that can be served"),
        (_zip(["notes/readme.txt"]), fmt.OTHER_ZIP, "is a zip archive, but not a format"),
        (b"PK\x03\x04 truncated", fmt.UNRECOGNISED, "is not a format that can be served"),
    ],
    # Fixed ids: the zip's bytes hold its write time, and pytest-xdist refuses workers whose
    # collected test ids differ.
    ids=["plain-bytes", "plain-pickle", "other-zip", "truncated-zip"],
)
def test_a_pt_name_alone_is_not_called_a_torch_save_checkpoint(
    content: bytes, kind: str, zip_words: str
) -> None:
    assert fmt.torch_file_kind(io.BytesIO(content)) == kind
    reason = _reason({"model.pt": content})
    assert "written by torch.save (for example a state_dict)" not in reason
    assert zip_words in reason
    assert "Its name ends in .pt, but its contents were not written by torch.jit.save" in reason
    # Without a PyTorch name the name is not mentioned.
    assert "Its name ends in" not in _reason({"model.bin": content})


def test_checkpoint_message_is_kept_for_real_checkpoints() -> None:
    reason = _reason({"model.pt": _zip(["archive/data.pkl", "archive/data/0"])})
    assert "is a PyTorch checkpoint written by torch.save" in reason
    reason = _reason({"model.pth": fmt.LEGACY_TORCH_MAGIC + b"rest"})
    assert "is a PyTorch checkpoint written by torch.save" in reason
