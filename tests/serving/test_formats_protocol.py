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
        ({"model.pth": fmt.LEGACY_TORCH_MAGIC + b"legacy pickle"}, ["state_dict"]),
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


# ---------------------------------------------------------------- TorchScript signatures

_TS = ["model/code/__torch__.py", "model/constants.pkl", "model/data.pkl"]


def test_bare_torchscript_gets_the_default_input_accepting_a_batch() -> None:
    """No signature and no example: one input named like everywhere else, any shape."""
    files = {"model.pt": _zip(_TS)}
    s = fmt.detect(list(files), _opener(files))
    assert s.format == "torchscript" and s.signature is not None
    assert s.signature.inputs == [TensorSpec(fmt.DEFAULT_INPUT, "FP32", [])]
    assert fmt.DEFAULT_INPUT == "input"
    batch = [[0.1, 0.2, 0.3, 0.4], [0.5, 0.6, 0.7, 0.8]]
    got = decode_inputs(
        {"inputs": [{"name": "input", "shape": [2, 4], "datatype": "FP32", "data": batch}]},
        s.signature.inputs,
    )
    assert got["input"].shape == (2, 4) and got["input"].dtype == np.float32


@pytest.mark.parametrize(
    ("example", "expected"),
    [
        pytest.param(
            {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [0] * 4}]},
            [TensorSpec("x", "FP32", [-1, 4])],
            id="v2-request",
        ),
        pytest.param([[0.1, 0.2, 0.3, 0.4]], [TensorSpec("input", "FP32", [-1, 4])], id="list"),
        pytest.param([0.1, 0.2, 0.3, 0.4], [TensorSpec("input", "FP32", [-1, 4])], id="1-D"),
        pytest.param(
            {"inputs": {"ids": [[1, 2, 3]]}}, [TensorSpec("ids", "INT64", [-1, 3])], id="tf"
        ),
        pytest.param([[[0.0] * 5] * 3] * 2, [TensorSpec("input", "FP32", [-1, 3, 5])], id="rank-3"),
    ],
)
def test_torchscript_signature_is_inferred_from_the_logged_input_example(
    example: Any, expected: list[TensorSpec]
) -> None:
    import json

    # Beside a bare archive…
    files = {"model.pt": _zip(_TS), "input_example.json": json.dumps(example).encode()}
    s = fmt.detect(list(files), _opener(files))
    assert s.format == "torchscript" and s.data_path == "model.pt"
    assert s.signature is not None and s.signature.inputs == expected
    # …or in an MLmodel directory whose MLmodel has no signature.
    mlmodel = (
        b"flavors:\n  torchscript: {data: model.pt}\n"
        b"saved_input_example_info: {artifact_path: input_example.json}\n"
    )
    files = {
        "m/MLmodel": mlmodel,
        "m/model.pt": _zip(_TS),
        "m/input_example.json": json.dumps(example).encode(),
    }
    s = fmt.detect(list(files), _opener(files))
    assert s.signature is not None and s.signature.inputs == expected
    # A batch of the example's rows decodes against it.
    spec = expected[0]
    row = [1 if d < 0 else d for d in spec.shape]
    row[0] = 3
    n = int(np.prod(row))
    data = list(range(n)) if spec.datatype == "INT64" else [0.5] * n
    tensor = {"name": spec.name, "shape": row, "datatype": spec.datatype, "data": data}
    assert decode_inputs({"inputs": [tensor]}, expected)[spec.name].shape == tuple(row)


def test_an_unusable_example_falls_back_to_the_default_input() -> None:
    for raw in (b"not json", b"[]", b'{"inputs": [{"name": "x"}]}', b'[["a", 1]]'):
        files = {"model.pt": _zip(_TS), "input_example.json": raw}
        s = fmt.detect(list(files), _opener(files))
        assert s.signature is not None
        assert s.signature.inputs == [TensorSpec("input", "FP32", [])], raw
