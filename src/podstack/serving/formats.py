"""Which artifacts can be served, and the MLmodel directory that describes them.

A servable model is one of:

- an MLflow-style directory: an ``MLmodel`` YAML file naming one or more *flavours*
  (``onnx``, ``torchscript``, ``sklearn``) with the data file of each, an optional signature
  (inputs and outputs as tensor specs) and an optional input example;
- a bare ONNX file (``*.onnx``);
- a bare TorchScript archive (``torch.jit.save``; a zip with a ``code/`` folder);
- a bare scikit-learn pickle or joblib file (``*.pkl``, ``*.pickle``, ``*.joblib``).

Pickles execute code when loaded, so they are served only where an admin enabled *trusted
formats* on the target. A ``torch.save`` checkpoint (a ``state_dict`` or a pickled module) holds
weights without the code that runs them and is never servable.

Detection reads at most the ``MLmodel`` text and a zip's table of contents, through an
``open_file`` callback, so the server can decide without loading any ML library.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

import yaml

MLMODEL = "MLmodel"
INPUT_EXAMPLE = "input_example.json"

ONNX = "onnx"
TORCHSCRIPT = "torchscript"
SKLEARN = "sklearn"
FORMATS = (ONNX, TORCHSCRIPT, SKLEARN)
# Formats whose loading executes code from the file (pickle).
UNSAFE_FORMATS = frozenset({SKLEARN})
# Preference when a directory carries several flavours: safe and fast first.
_PREFERENCE = (ONNX, TORCHSCRIPT, SKLEARN)

PICKLE_SUFFIXES = (".pkl", ".pickle", ".joblib")
TORCH_SUFFIXES = (".pt", ".pth", ".torchscript", ".ts")

# Numpy dtype names (as in MLflow signatures) <-> Open Inference Protocol datatypes.
NUMPY_TO_V2 = {
    "bool": "BOOL",
    "uint8": "UINT8",
    "uint16": "UINT16",
    "uint32": "UINT32",
    "uint64": "UINT64",
    "int8": "INT8",
    "int16": "INT16",
    "int32": "INT32",
    "int64": "INT64",
    "float16": "FP16",
    "float32": "FP32",
    "float64": "FP64",
    "double": "FP64",
    "float": "FP32",
    "str": "BYTES",
    "string": "BYTES",
    "object": "BYTES",
    "bytes": "BYTES",
}
V2_TO_NUMPY = {
    "BOOL": "bool",
    "UINT8": "uint8",
    "UINT16": "uint16",
    "UINT32": "uint32",
    "UINT64": "uint64",
    "INT8": "int8",
    "INT16": "int16",
    "INT32": "int32",
    "INT64": "int64",
    "FP16": "float16",
    "FP32": "float32",
    "FP64": "float64",
    "BYTES": "object",
}

HOW_TO_LOG = (
    "Log a servable model with the SDK, e.g. `run.log_model(model, 'model')` for a "
    "scikit-learn estimator, a PyTorch module (saved as TorchScript) or an ONNX model, then "
    "register that artifact path (create_model_version(..., artifact_path='model'))."
)


class NotServable(Exception):
    """The artifact cannot be served; ``reason`` says why and how to fix it."""

    def __init__(self, reason: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.details = details or {}


@dataclass(frozen=True)
class TensorSpec:
    name: str
    datatype: str  # Open Inference Protocol datatype (FP32, INT64, BYTES, ...)
    shape: list[int]  # -1 for a variable dimension

    def to_v2(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}

    def to_mlflow(self) -> dict[str, Any]:
        return {
            "type": "tensor",
            "tensor-spec": {"dtype": V2_TO_NUMPY[self.datatype], "shape": list(self.shape)},
            "name": self.name,
        }

    @classmethod
    def from_mlflow(cls, doc: dict[str, Any], index: int) -> TensorSpec:
        spec = doc.get("tensor-spec") or {}
        dtype = str(spec.get("dtype") or doc.get("type") or "float32")
        datatype = NUMPY_TO_V2.get(dtype.lower())
        if datatype is None:
            raise NotServable(f"Signature uses unsupported dtype {dtype!r}.")
        shape = [int(d) for d in spec.get("shape") or [-1]]
        return cls(name=str(doc.get("name") or f"input_{index}"), datatype=datatype, shape=shape)


@dataclass
class Signature:
    inputs: list[TensorSpec] = field(default_factory=list)
    outputs: list[TensorSpec] = field(default_factory=list)

    def to_mlmodel(self) -> dict[str, str]:
        # MLflow stores each side as a JSON string inside the YAML.
        return {
            "inputs": json.dumps([t.to_mlflow() for t in self.inputs]),
            "outputs": json.dumps([t.to_mlflow() for t in self.outputs]),
        }

    @classmethod
    def from_mlmodel(cls, doc: dict[str, Any] | None) -> Signature | None:
        if not doc:
            return None

        def side(raw: Any) -> list[TensorSpec]:
            if raw is None:
                return []
            items = json.loads(raw) if isinstance(raw, str) else raw
            return [TensorSpec.from_mlflow(d, i) for i, d in enumerate(items or [])]

        return cls(inputs=side(doc.get("inputs")), outputs=side(doc.get("outputs")))

    def to_json(self) -> dict[str, Any]:
        return {
            "inputs": [t.to_v2() for t in self.inputs],
            "outputs": [t.to_v2() for t in self.outputs],
        }


@dataclass(frozen=True)
class Servable:
    """What a deployment of these files would run."""

    format: str
    data_path: str  # the model file, relative to the version's root
    mlmodel: bool  # described by an MLmodel file
    signature: Signature | None = None
    flavours: tuple[str, ...] = ()

    @property
    def unsafe(self) -> bool:
        return self.format in UNSAFE_FORMATS


Opener = Callable[[str], IO[bytes]]


def read_mlmodel(text: str | bytes) -> dict[str, Any]:
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise NotServable(f"MLmodel is not valid YAML: {exc}") from None
    if not isinstance(doc, dict):
        raise NotServable("MLmodel must be a YAML mapping with a 'flavors' section.")
    return doc


def _flavour_file(fmt: str, conf: dict[str, Any]) -> str | None:
    if fmt == SKLEARN:
        return conf.get("pickled_model") or conf.get("data")
    return conf.get("data") or conf.get("model_data")


def _is_torchscript_zip(fh: IO[bytes]) -> bool | None:
    """True for a TorchScript archive, False for a plain torch.save zip, None if not a zip."""
    try:
        with zipfile.ZipFile(fh) as zf:
            names = zf.namelist()
    except zipfile.BadZipFile:
        return None
    # torch.jit.save writes <root>/code/... and <root>/constants.pkl; torch.save writes only
    # <root>/data.pkl and <root>/data/<n> tensors.
    return any("/code/" in n for n in names) or any(n.endswith("/constants.pkl") for n in names)


def _state_dict_reason(path: str) -> str:
    return (
        f"{path!r} is a PyTorch checkpoint written by torch.save (for example a state_dict): it "
        "holds weights but not the code that runs them, so it cannot be served. Save the model "
        "as TorchScript (`run.log_model(model, 'model')` does this, or "
        "`torch.jit.save(torch.jit.script(model), 'model.pt')`) or export it to ONNX. " + HOW_TO_LOG
    )


def detect(paths: Sequence[str], open_file: Opener) -> Servable:
    """Decides how ``paths`` (a version's files, relative to its root) would be served.

    Raises ``NotServable`` with the reason and how to log a servable model instead.
    """
    files = sorted(paths)
    if not files:
        raise NotServable("The version has no files. " + HOW_TO_LOG)
    mlmodels = [p for p in files if p == MLMODEL or p.endswith("/" + MLMODEL)]
    if mlmodels:
        root_file = min(mlmodels, key=lambda p: p.count("/"))
        return _from_mlmodel(root_file, set(files), open_file)
    onnx_files = [p for p in files if p.lower().endswith(".onnx")]
    if len(onnx_files) == 1:
        return Servable(ONNX, onnx_files[0], mlmodel=False, flavours=(ONNX,))
    torch_files = [p for p in files if p.lower().endswith(TORCH_SUFFIXES)]
    pickles = [p for p in files if p.lower().endswith(PICKLE_SUFFIXES)]
    if len(files) == 1 or len(onnx_files) + len(torch_files) + len(pickles) == 1:
        only = (onnx_files + torch_files + pickles + files)[0]
        return _bare_file(only, open_file)
    raise NotServable(
        f"Cannot tell which of the version's {len(files)} files is the model "
        f"({', '.join(repr(p) for p in files[:5])}{', …' if len(files) > 5 else ''}) and there "
        "is no MLmodel file describing it. " + HOW_TO_LOG,
        {"files": files[:20]},
    )


def _bare_file(path: str, open_file: Opener) -> Servable:
    low = path.lower()
    if low.endswith(".onnx"):
        return Servable(ONNX, path, mlmodel=False, flavours=(ONNX,))
    if low.endswith(PICKLE_SUFFIXES):
        return Servable(SKLEARN, path, mlmodel=False, flavours=(SKLEARN,))
    with open_file(path) as fh:
        head = fh.read(4)
        fh.seek(0) if fh.seekable() else None
        data = fh if fh.seekable() else io.BytesIO(head + fh.read())
        if head.startswith(b"PK"):
            kind = _is_torchscript_zip(data)
            if kind:
                return Servable(TORCHSCRIPT, path, mlmodel=False, flavours=(TORCHSCRIPT,))
            raise NotServable(_state_dict_reason(path), {"path": path})
    if low.endswith(TORCH_SUFFIXES):
        # Legacy (non-zip) torch.save format: a pickle of tensors.
        raise NotServable(_state_dict_reason(path), {"path": path})
    raise NotServable(
        f"{path!r} is not a format that can be served (ONNX, TorchScript, scikit-learn "
        "pickle/joblib, or an MLmodel directory). " + HOW_TO_LOG,
        {"path": path},
    )


def _from_mlmodel(mlmodel_path: str, files: set[str], open_file: Opener) -> Servable:
    root = mlmodel_path[: -len(MLMODEL)]
    with open_file(mlmodel_path) as fh:
        doc = read_mlmodel(fh.read())
    flavours = doc.get("flavors") or {}
    if not isinstance(flavours, dict):
        raise NotServable("MLmodel 'flavors' must be a mapping.")
    offered = [f for f in _PREFERENCE if f in flavours]
    if not offered:
        names = ", ".join(sorted(map(str, flavours))) or "none"
        raise NotServable(
            f"MLmodel has no servable flavour (has: {names}; servable: onnx, torchscript, "
            "sklearn). " + HOW_TO_LOG,
            {"flavors": sorted(map(str, flavours))},
        )
    signature = Signature.from_mlmodel(doc.get("signature"))
    for fmt in offered:
        data = _flavour_file(fmt, flavours[fmt] or {})
        if not data:
            continue
        data_path = root + str(data)
        if data_path not in files:
            raise NotServable(
                f"MLmodel's {fmt} flavour names {data!r}, which is not among the version's files.",
                {"missing": data_path},
            )
        return Servable(fmt, data_path, mlmodel=True, signature=signature, flavours=tuple(offered))
    raise NotServable(f"MLmodel's {offered[0]} flavour does not name its data file.")


def write_mlmodel(
    directory: Any,
    flavours: dict[str, dict[str, Any]],
    signature: Signature | None,
    *,
    artifact_path: str,
    input_example: bool,
    run_id: str | None,
    model_uuid: str,
    created: str,
) -> None:
    from pathlib import Path

    doc: dict[str, Any] = {
        "artifact_path": artifact_path,
        "flavors": flavours,
        "model_uuid": model_uuid,
        "utc_time_created": created,
    }
    if run_id:
        doc["run_id"] = run_id
    if signature is not None:
        doc["signature"] = signature.to_mlmodel()
    if input_example:
        doc["saved_input_example_info"] = {
            "artifact_path": INPUT_EXAMPLE,
            "type": "ndarray",
            "format": "tf-serving",
        }
    Path(directory, MLMODEL).write_text(yaml.safe_dump(doc, sort_keys=False))
