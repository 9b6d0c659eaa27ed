"""MLflow model directories as the model server reads them: the ``MLmodel`` files below are
what ``mlflow.sklearn.save_model`` 3.17 writes (copied from its output: skops file, tensor or
DataFrame signature, ndarray or split-orient input example), the model files real skops files.
The MLflow client path end to end (log, register, deploy) is in test_registry_client.py; this
pins each reading rule quickly, without the MLflow venv."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import skops.io as sio
import yaml
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from podstack.serving import formats, runtime

pytestmark = pytest.mark.one_db

X, Y = load_iris(return_X_y=True)


def _double(x: np.ndarray) -> np.ndarray:
    return x * 2


TENSOR_SIGNATURE = {
    "inputs": '[{"type": "tensor", "tensor-spec": {"dtype": "float64", "shape": [-1, 4]}}]',
    "outputs": '[{"type": "tensor", "tensor-spec": {"dtype": "int64", "shape": [-1]}}]',
    "params": None,
}
COLUMN_SIGNATURE = {
    "inputs": json.dumps([{"type": "double", "name": c, "required": True} for c in "abcd"]),
    "outputs": '[{"type": "tensor", "tensor-spec": {"dtype": "int64", "shape": [-1]}}]',
    "params": None,
}


def mlflow_dir(
    root: Path,
    signature: dict[str, object] | None,
    example: object,
    example_type: str = "ndarray",
    trusted_types: list[str] | None = None,
) -> Path:
    root.mkdir()
    model = LogisticRegression(max_iter=500).fit(X, Y)
    sio.dump(model, root / "model.skops")
    doc: dict[str, object] = {
        "flavors": {
            "python_function": {
                "loader_module": "mlflow.sklearn",
                "model_path": "model.skops",
                "predict_fn": "predict",
                "python_version": "3.11.7",
            },
            "sklearn": {
                "code": None,
                "pickled_model": "model.skops",
                "serialization_format": "skops",
                "sklearn_version": "1.9.1",
                "skops_trusted_types": trusted_types,
            },
        },
        "mlflow_version": "3.17.2",
        "model_uuid": "2cdf84db8e714f1f81adb21138f24b36",
        "saved_input_example_info": {
            "artifact_path": "input_example.json",
            "serving_input_path": "serving_input_example.json",
            "type": example_type,
        },
    }
    if signature is not None:
        doc["signature"] = signature
    (root / "MLmodel").write_text(yaml.safe_dump(doc))
    (root / "input_example.json").write_text(json.dumps(example))
    return root


def test_tensor_signature_skops_model_serves_on_any_target(tmp_path: Path) -> None:
    d = mlflow_dir(tmp_path / "m", TENSOR_SIGNATURE, X[:3].tolist())
    model, servable = runtime.load(d, trusted=False)
    # A skops file is not a pickle: no trusted target needed.
    assert servable.format == formats.SKLEARN and servable.data_path == "model.skops"
    assert not servable.unsafe
    assert [t.to_v2() for t in model.inputs] == [
        {"name": "input", "datatype": "FP64", "shape": [-1, 4]}
    ]
    assert [t.name for t in model.outputs] == ["output__0"]
    expected = LogisticRegression(max_iter=500).fit(X, Y).predict(X[:10])
    assert model.predict({"input": X[:10]})["output__0"].tolist() == expected.tolist()


def test_dataframe_signature_is_one_input_per_column(tmp_path: Path) -> None:
    example = {"columns": list("abcd"), "data": X[:3].tolist()}
    d = mlflow_dir(tmp_path / "m", COLUMN_SIGNATURE, example, "dataframe")
    model, servable = runtime.load(d, trusted=False)
    assert servable.signature is not None and servable.signature.columns
    assert [(t.name, t.datatype, t.shape) for t in model.inputs] == [
        (c, "FP64", [-1]) for c in "abcd"
    ]
    feed = {c: X[:10, i] for i, c in enumerate("abcd")}
    expected = LogisticRegression(max_iter=500).fit(X, Y).predict(X[:10])
    assert model.predict(feed)["output__0"].tolist() == expected.tolist()


@pytest.mark.parametrize(
    ("example", "kind", "names", "shape"),
    [
        (X[:3].tolist(), "ndarray", ["input"], [-1, 4]),
        ({"inputs": X[:3].tolist()}, "ndarray", ["input"], [-1, 4]),
        ({"columns": list("abcd"), "data": X[:3].tolist()}, "dataframe", list("abcd"), [-1]),
    ],
)
def test_without_a_signature_the_input_example_gives_the_inputs(
    tmp_path: Path, example: object, kind: str, names: list[str], shape: list[int]
) -> None:
    d = mlflow_dir(tmp_path / "m", None, example, kind)
    model, servable = runtime.load(d, trusted=False)
    assert [t.name for t in model.inputs] == names
    assert all(t.shape == shape for t in model.inputs)
    if servable.signature is not None and servable.signature.columns:
        feed = {c: np.asarray(X[:5, i]) for i, c in enumerate(names)}
    else:
        feed = {"input": X[:5]}
    expected = LogisticRegression(max_iter=500).fit(X, Y).predict(X[:5])
    assert next(iter(model.predict(feed).values())).tolist() == expected.tolist()


def test_types_an_mlmodel_asks_to_trust_are_not_trusted(tmp_path: Path) -> None:
    """An estimator holding a type skops does not trust by default is refused, whatever the
    MLmodel's skops_trusted_types says (the file must not widen what it may load)."""
    root = tmp_path / "m"
    d = mlflow_dir(root, TENSOR_SIGNATURE, X[:3].tolist(), trusted_types=["builtins.eval"])
    # A FunctionTransformer holding a function from outside skops' trusted set.
    pipe = make_pipeline(FunctionTransformer(_double), LogisticRegression(max_iter=500))
    sio.dump(pipe.fit(X, Y), d / "model.skops")
    servable = formats.detect(
        [p.name for p in d.iterdir()],
        lambda rel: open(d / rel, "rb"),  # noqa: SIM115
    )
    with pytest.raises(runtime.LoadError, match="does not trust by default"):
        runtime.load_model_dir(d, servable, trusted=False)
