"""Which artifacts can be served, and the MLmodel directory that describes them.

A servable model is one of:

- an MLflow-style directory: an ``MLmodel`` YAML file naming one or more *flavours*
  (``onnx``, ``torchscript``, ``sklearn``) with the data file of each, an optional signature
  (inputs and outputs as tensor specs) and an optional input example;
- a bare ONNX file (``*.onnx``);
- a bare TorchScript archive (``torch.jit.save``; a zip with a ``code/`` folder), told
  apart from a ``torch.save`` checkpoint by its contents, never by its name;
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

# The one name of a model's single input when nothing else names it (no signature, no named
# input example): what ``log_model`` calls a bare example array, what the SDK's ``predict``
# sends when given a bare array, and what a TorchScript module without a signature is served
# with. Outputs without names are ``output__<i>`` (the model server's convention).
DEFAULT_INPUT = "input"
DEFAULT_OUTPUT = "output__0"
# Input examples are small; a larger file is not read to guess a signature from.
MAX_EXAMPLE_BYTES = 1024 * 1024

PICKLE_SUFFIXES = (".pkl", ".pickle", ".joblib")
SKOPS_SUFFIX = ".skops"
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
    def from_mlflow(cls, doc: dict[str, Any], index: int, default_name: str = "") -> TensorSpec:
        """One entry of an MLflow signature: a tensor spec, or a column of a column-based
        (DataFrame) signature, which is served as a 1-D input named after the column.
        ``default_name`` names an unnamed entry (else ``input_<index>``)."""
        spec = doc.get("tensor-spec") or {}
        dtype = str(spec.get("dtype") or doc.get("type") or "float32")
        datatype = NUMPY_TO_V2.get(dtype.lower())
        if datatype is None:
            raise NotServable(f"Signature uses unsupported dtype {dtype!r}.")
        shape = [int(d) for d in spec.get("shape") or [-1]]
        name = doc.get("name") or default_name or f"input_{index}"
        return cls(name=str(name), datatype=datatype, shape=shape)


@dataclass
class Signature:
    inputs: list[TensorSpec] = field(default_factory=list)
    outputs: list[TensorSpec] = field(default_factory=list)
    # MLflow column-based (DataFrame) inputs: one 1-D input per column, which a scikit-learn
    # model receives side by side as the columns of one 2-D array, in signature order.
    columns: bool = False

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

        def items_of(raw: Any) -> list[dict[str, Any]]:
            items = json.loads(raw) if isinstance(raw, str) else raw
            return [d for d in items or [] if isinstance(d, dict)]

        def side(items: list[dict[str, Any]], output: bool) -> list[TensorSpec]:
            # MLflow leaves a lone tensor unnamed: it gets the name the SDK sends a bare array
            # under (inputs) or the model server's output__<i> (outputs).
            return [
                TensorSpec.from_mlflow(
                    d,
                    i,
                    f"{DEFAULT_OUTPUT[:-1]}{i}"
                    if output
                    else DEFAULT_INPUT
                    if len(items) == 1
                    else "",
                )
                for i, d in enumerate(items)
            ]

        inputs = items_of(doc.get("inputs"))
        columns = bool(inputs) and all(d.get("type") != "tensor" for d in inputs)
        return cls(
            inputs=side(inputs, False),
            outputs=side(items_of(doc.get("outputs")), True),
            columns=columns,
        )

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
        # A skops file (MLflow 3's default for scikit-learn) is not a pickle: it is loaded with
        # skops' default trusted types only, which cannot run code from the file.
        return self.format in UNSAFE_FORMATS and not self.data_path.lower().endswith(SKOPS_SUFFIX)


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


# What a file's *contents* say it is (``torch_file_kind``); a file name never decides.
TORCH_SCRIPT_ARCHIVE = "torchscript"  # torch.jit.save: zip with <root>/constants.pkl, code/
TORCH_SAVE_CHECKPOINT = "checkpoint"  # torch.save: zip with <root>/data.pkl, or legacy pickle
OTHER_ZIP = "zip"  # a zip archive that is neither
UNRECOGNISED = "unrecognised"
# The legacy (pre-1.6, non-zip) torch.save format starts with a protocol-2 pickle of this
# magic number: PROTO 2, LONG1 of 10 bytes, then the number itself (little-endian).
LEGACY_TORCH_MAGIC = b"\x80\x02\x8a\x0a" + (0x1950A86A20F9469CFC6C).to_bytes(10, "little")


def torch_file_kind(fh: IO[bytes]) -> str:
    """The one rule for telling PyTorch files apart, by content: ``TORCH_SCRIPT_ARCHIVE``,
    ``TORCH_SAVE_CHECKPOINT``, ``OTHER_ZIP`` or ``UNRECOGNISED``. Reads the first bytes and,
    for a zip, its table of contents (``fh`` must be seekable)."""
    head = fh.read(len(LEGACY_TORCH_MAGIC))
    fh.seek(0)
    if head.startswith(LEGACY_TORCH_MAGIC):
        return TORCH_SAVE_CHECKPOINT
    if not head.startswith(b"PK"):
        return UNRECOGNISED
    try:
        with zipfile.ZipFile(fh) as zf:
            names = zf.namelist()
    except zipfile.BadZipFile:
        return UNRECOGNISED
    # Every entry sits under one root folder (the archive's name). torch.jit.save writes
    # <root>/code/... and <root>/constants.pkl (and a data.pkl too, so it is checked first);
    # torch.save writes only <root>/data.pkl and <root>/data/<n> tensors.
    if any("/code/" in n for n in names) or any(n.endswith("/constants.pkl") for n in names):
        return TORCH_SCRIPT_ARCHIVE
    if any(n == "data.pkl" or n.endswith("/data.pkl") for n in names):
        return TORCH_SAVE_CHECKPOINT
    return OTHER_ZIP


def _nested_shape(data: Any) -> list[int] | None:
    """The shape of a rectangular nested list of scalars, or None if it is ragged/empty."""
    shape: list[int] = []
    probe = data
    while isinstance(probe, list):
        if not probe:
            return None
        shape.append(len(probe))
        probe = probe[0]
    return shape


def _scalars(data: Any) -> list[Any]:
    if isinstance(data, list):
        return [v for item in data for v in _scalars(item)]
    return [data]


def _example_spec(name: str, data: Any, datatype: str | None) -> TensorSpec | None:
    """One input's spec from its example values: batched on the first dimension (``-1``).
    A 1-D example is one sample (``[-1, n]``), as a single feature vector usually is."""
    shape = _nested_shape(data)
    if not shape:
        return None
    if datatype is None:
        values = _scalars(data)
        if all(isinstance(v, bool) for v in values):
            datatype = "BOOL"
        elif all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            datatype = "INT64"
        elif all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
            # JSON has no float width; FP32 is what a PyTorch module's weights almost always are.
            datatype = "FP32"
        else:
            return None
    return TensorSpec(name=name, datatype=datatype, shape=_batched(shape))


def _batched(shape: list[int]) -> list[int]:
    return [-1, *shape] if len(shape) == 1 else [-1, *shape[1:]]


def signature_from_example(doc: Any) -> Signature | None:
    """Input specs from a logged input example: an Open Inference Protocol request
    (``{"inputs": [{"name", "shape", "datatype", "data"}]}``, as ``log_model`` writes), a
    ``{"inputs": {name: values}}`` / ``{name: values}`` mapping, or bare nested lists (named
    ``DEFAULT_INPUT``). None if the example does not say enough."""
    if isinstance(doc, dict) and isinstance(doc.get("inputs"), list):
        specs = []
        for t in doc["inputs"]:
            if not isinstance(t, dict) or not isinstance(t.get("name"), str):
                return None
            shape = t.get("shape")
            datatype = t.get("datatype")
            if datatype not in V2_TO_NUMPY:
                return None
            if isinstance(shape, list) and shape and all(isinstance(d, int) for d in shape):
                specs.append(TensorSpec(t["name"], datatype, _batched(shape)))
                continue
            spec = _example_spec(t["name"], t.get("data"), datatype)
            if spec is None:
                return None
            specs.append(spec)
        return Signature(inputs=specs) if specs else None
    if isinstance(doc, dict):
        named = doc.get("inputs") if isinstance(doc.get("inputs"), dict) else doc
        specs = []
        for name, values in named.items():
            spec = _example_spec(str(name), values, None)
            if spec is None:
                return None
            specs.append(spec)
        return Signature(inputs=specs) if specs else None
    if isinstance(doc, list):
        spec = _example_spec(DEFAULT_INPUT, doc, None)
        return Signature(inputs=[spec]) if spec is not None else None
    return None


def mlflow_example_signature(doc: Any) -> Signature | None:
    """Input specs from an input example as MLflow writes it (``input_example.json``): a
    DataFrame in ``split`` orient (``{"columns": [...], "data": [[...], ...]}``, one 1-D input
    per column), a tf-serving ``{"inputs": <array>}``, or anything ``signature_from_example``
    reads. None if it does not say enough."""
    if isinstance(doc, dict) and isinstance(doc.get("columns"), list) and "data" in doc:
        rows = doc.get("data")
        names = [str(c) for c in doc["columns"]]
        if (
            not isinstance(rows, list)
            or not rows
            or not all(isinstance(r, list) and len(r) == len(names) for r in rows)
        ):
            return None
        specs = [_example_spec(n, [r[i] for r in rows], None) for i, n in enumerate(names)]
        if any(s is None for s in specs):
            return None
        # Each column is a batch of scalars: shape [-1].
        return Signature(
            inputs=[TensorSpec(s.name, s.datatype, [-1]) for s in specs if s is not None],
            columns=True,
        )
    inputs = doc.get("inputs") if isinstance(doc, dict) and set(doc) == {"inputs"} else None
    if isinstance(inputs, list) and inputs and not isinstance(inputs[0], dict):
        doc = inputs  # tf-serving's {"inputs": <array>}: the array itself
    return signature_from_example(doc)


def _read_example(path: str, open_file: Opener) -> Any:
    try:
        with open_file(path) as fh:
            raw = fh.read(MAX_EXAMPLE_BYTES + 1)
        if len(raw) > MAX_EXAMPLE_BYTES:
            return None
        return json.loads(raw)
    except (OSError, ValueError, KeyError):
        return None


def torchscript_signature(
    signature: Signature | None, example_path: str | None, open_file: Opener
) -> Signature:
    """What a TorchScript module is served with. A TorchScript archive does not record its
    input shapes, so: the logged signature if it has inputs; else one inferred from the
    logged input example (batched on the first dimension); else a single ``DEFAULT_INPUT``
    of FP32 with shape ``[]``, which the protocol reads as "any shape" (a batch included):
    the module itself then says if the values do not fit."""
    if signature is not None and signature.inputs:
        return signature
    outputs = list(signature.outputs) if signature is not None else []
    if example_path is not None:
        inferred = signature_from_example(_read_example(example_path, open_file))
        if inferred is not None:
            return Signature(inputs=inferred.inputs, outputs=outputs)
    return Signature(inputs=[TensorSpec(DEFAULT_INPUT, "FP32", [])], outputs=outputs)


def _sibling(path: str, name: str) -> str:
    """``name`` in the same folder as ``path``."""
    folder = path.rsplit("/", 1)[0] + "/" if "/" in path else ""
    return folder + name


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
        return _bare_file(only, open_file, set(files))
    if len(torch_files) == 1 and not onnx_files and not pickles:
        # A TorchScript file logged with its input example beside it.
        rest = set(files) - {torch_files[0], _sibling(torch_files[0], INPUT_EXAMPLE)}
        if not rest:
            return _bare_file(torch_files[0], open_file, set(files))
    raise NotServable(
        f"Cannot tell which of the version's {len(files)} files is the model "
        f"({', '.join(repr(p) for p in files[:5])}{', …' if len(files) > 5 else ''}) and there "
        "is no MLmodel file describing it. " + HOW_TO_LOG,
        {"files": files[:20]},
    )


def _bare_file(path: str, open_file: Opener, files: set[str] | None = None) -> Servable:
    low = path.lower()
    if low.endswith(".onnx"):
        return Servable(ONNX, path, mlmodel=False, flavours=(ONNX,))
    if low.endswith(PICKLE_SUFFIXES):
        return Servable(SKLEARN, path, mlmodel=False, flavours=(SKLEARN,))
    with open_file(path) as fh:
        data = fh if fh.seekable() else io.BytesIO(fh.read())
        kind = torch_file_kind(data)
    if kind == TORCH_SCRIPT_ARCHIVE:
        example = _sibling(path, INPUT_EXAMPLE)
        signature = torchscript_signature(
            None, example if example in (files or set()) else None, open_file
        )
        return Servable(
            TORCHSCRIPT, path, mlmodel=False, signature=signature, flavours=(TORCHSCRIPT,)
        )
    if kind == TORCH_SAVE_CHECKPOINT:
        raise NotServable(_state_dict_reason(path), {"path": path, "content": kind})
    # Neither: say what the contents are, whatever the file's name suggests.
    what = "a zip archive, but not" if kind == OTHER_ZIP else "not"
    suffix = next((x for x in TORCH_SUFFIXES if low.endswith(x)), None)
    named = (
        f" Its name ends in {suffix}, but its contents were not written by torch.jit.save or "
        "torch.save."
        if suffix
        else ""
    )
    raise NotServable(
        f"{path!r} is {what} a format that can be served: its contents are not a TorchScript "
        "archive (torch.jit.save), an ONNX model, a scikit-learn pickle/joblib file or an "
        f"MLmodel directory.{named} " + HOW_TO_LOG,
        {"path": path, "content": kind},
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
        info = doc.get("saved_input_example_info")
        name = info.get("artifact_path") if isinstance(info, dict) else None
        example = root + str(name or INPUT_EXAMPLE)
        if fmt == TORCHSCRIPT:
            signature = torchscript_signature(
                signature, example if example in files else None, open_file
            )
        elif (signature is None or not signature.inputs) and example in files:
            # No signature in the MLmodel (MLflow's python_function reads the same one): the
            # logged input example says what the model takes.
            inferred = mlflow_example_signature(_read_example(example, open_file))
            if inferred is not None:
                outputs = list(signature.outputs) if signature is not None else []
                signature = Signature(
                    inputs=inferred.inputs, outputs=outputs, columns=inferred.columns
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
