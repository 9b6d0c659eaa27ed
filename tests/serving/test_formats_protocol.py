"""Servable-format detection and Open Inference Protocol decoding, without processes."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from podstack.serving import formats as fmt
from podstack.serving.formats import NotServable, TensorSpec
from podstack.serving.protocol import ProtocolError, decode_inputs, encode_tensor


def _opener(files: dict[str, bytes]) -> Any:
    return lambda p: io.BytesIO(files[p])


def _zip(names: list[str]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for n in names:
            zf.writestr(n, b"x")
    return buf.getvalue()


def test_detects_mlmodel_and_prefers_onnx() -> None:
    mlmodel = (
        b"flavors:\n  sklearn: {pickled_model: model.pkl}\n  onnx: {data: model.onnx}\n"
        b'signature:\n  inputs: \'[{"type": "tensor", "tensor-spec": '
        b'{"dtype": "float32", "shape": [-1, 2]}, "name": "X"}]\'\n'
    )
    files = {"MLmodel": mlmodel, "model.onnx": b"", "model.pkl": b""}
    s = fmt.detect(list(files), _opener(files))
    assert (s.format, s.data_path, s.unsafe) == ("onnx", "model.onnx", False)
    assert s.signature is not None and s.signature.inputs == [TensorSpec("X", "FP32", [-1, 2])]


def test_detects_bare_files() -> None:
    ts = {"m.pt": _zip(["m/code/__torch__.py", "m/constants.pkl", "m/data.pkl"])}
    assert fmt.detect(list(ts), _opener(ts)).format == "torchscript"
    assert fmt.detect(["a.onnx"], _opener({"a.onnx": b""})).format == "onnx"
    pkl = fmt.detect(["model.joblib"], _opener({"model.joblib": b""}))
    assert pkl.format == "sklearn" and pkl.unsafe


@pytest.mark.parametrize(
    ("files", "words"),
    [
        ({"model.pt": _zip(["model/data.pkl", "model/data/0"])}, ["state_dict", "TorchScript"]),
        ({"model.pth": b"\x80\x02legacy pickle"}, ["state_dict"]),
        ({"notes.txt": b"hi"}, ["not a format that can be served"]),
        ({"MLmodel": b"flavors:\n  keras: {}\n"}, ["no servable flavour", "keras"]),
        ({"MLmodel": b"flavors:\n  onnx: {data: gone.onnx}\n"}, ["gone.onnx"]),
        ({"MLmodel": b": : not yaml ["}, ["YAML"]),
        ({}, ["no files"]),
    ],
)
def test_not_servable_reasons(files: dict[str, bytes], words: list[str]) -> None:
    with pytest.raises(NotServable) as exc:
        fmt.detect(list(files), _opener(files))
    for w in words:
        assert w in exc.value.reason


SPECS = [TensorSpec("X", "FP32", [-1, 2])]


def test_decode_valid_nested_and_flat() -> None:
    nested = {
        "inputs": [{"name": "X", "datatype": "FP32", "shape": [2, 2], "data": [[1, 2], [3, 4]]}]
    }
    flat = {"inputs": [{"name": "X", "datatype": "FP32", "shape": [2, 2], "data": [1, 2, 3, 4]}]}
    for body in (nested, flat):
        arr = decode_inputs(body, SPECS)["X"]
        assert arr.dtype == np.float32 and arr.tolist() == [[1, 2], [3, 4]]


@pytest.mark.parametrize(
    ("tensor", "words"),
    [
        ({"datatype": "INT64", "data": [1, 2]}, ["INT64", "FP32"]),
        ({"shape": [2]}, ["shape [2]", "[-1, 2]"]),
        ({"shape": [1, 3], "data": [1, 2, 3]}, ["shape [1, 3]"]),
        ({"data": [1, 2, 3]}, ["3 values", "needs 2"]),
        ({"data": ["a", "b"]}, ["numbers"]),
        ({"name": "Y"}, ["Unexpected input 'Y'", "X"]),
        ({"shape": "1x2"}, ["non-negative integers"]),
    ],
)
def test_decode_errors(tensor: dict[str, Any], words: list[str]) -> None:
    base = {"name": "X", "datatype": "FP32", "shape": [1, 2], "data": [1.0, 2.0]}
    with pytest.raises(ProtocolError) as exc:
        decode_inputs({"inputs": [{**base, **tensor}]}, SPECS)
    assert exc.value.status == 400
    for w in words:
        assert w in exc.value.message


def test_decode_requires_inputs() -> None:
    for body in ({}, {"inputs": []}, [], {"inputs": [1]}):
        with pytest.raises(ProtocolError):
            decode_inputs(body, SPECS)


def test_encode_tensor() -> None:
    t = encode_tensor("y", np.array([[1, 2]], dtype=np.int64))
    assert t == {"name": "y", "datatype": "INT64", "shape": [1, 2], "data": [1, 2]}


def test_log_model_directory_is_detected_as_servable(tmp_path: Path) -> None:
    from sklearn.linear_model import LinearRegression

    from podstack.client.models_io import save_model

    X = np.arange(8, dtype=np.float64).reshape(4, 2)
    flavours, _sig = save_model(
        LinearRegression().fit(X, X.sum(1)), tmp_path, artifact_path="model", input_example=X
    )
    assert flavours == ["onnx", "sklearn"]
    files = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    s = fmt.detect(list(files), _opener(files))
    assert s.format == "onnx" and s.signature is not None
    assert (tmp_path / "input_example.json").exists()
