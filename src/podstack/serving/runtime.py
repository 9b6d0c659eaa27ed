"""Loading a servable model and running it: one ``LoadedModel`` interface for ONNX
(onnxruntime), TorchScript (torch) and scikit-learn (pickle/joblib, trusted targets only).

torch and scikit-learn are optional extras: a server without them refuses those formats with a
message naming the extra to install.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from podstack.serving import formats as fmt
from podstack.serving.formats import NotServable, Servable, Signature, TensorSpec

_ORT_TYPES = {
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
    "tensor(float16)": "FP16",
    "tensor(int8)": "INT8",
    "tensor(int16)": "INT16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(uint8)": "UINT8",
    "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
    "tensor(bool)": "BOOL",
    "tensor(string)": "BYTES",
}


class LoadError(Exception):
    """The model files exist but could not be loaded; the message is the reason."""


@dataclass
class LoadedModel:
    platform: str
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    run: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.run(inputs)


def numpy_dtype(datatype: str) -> np.dtype[Any]:
    return np.dtype(fmt.V2_TO_NUMPY[datatype])


def v2_datatype(dtype: np.dtype[Any]) -> str:
    if dtype.kind in ("U", "S", "O"):
        return "BYTES"
    try:
        return fmt.NUMPY_TO_V2[dtype.name]
    except KeyError:
        raise LoadError(f"Model produces unsupported dtype {dtype.name}.") from None


def _dims(shape: Any) -> list[int]:
    return [d if isinstance(d, int) and d >= 0 else -1 for d in (shape or [])]


def load_model_dir(model_dir: Path, servable: Servable, *, trusted: bool) -> LoadedModel:
    path = model_dir / servable.data_path
    try:
        if servable.format == fmt.ONNX:
            return _load_onnx(path, servable.signature)
        if servable.format == fmt.TORCHSCRIPT:
            return _load_torchscript(path, servable.signature)
        if servable.format == fmt.SKLEARN:
            if servable.unsafe and not trusted:  # a pickle (a skops file is not one)
                raise NotServable(
                    f"{servable.data_path!r} is a pickle, and loading a pickle executes code "
                    "from the file; this target does not serve pickles (trusted formats are "
                    "off)."
                )
            return _load_sklearn(path, servable.signature)
    except (NotServable, LoadError):
        raise
    except ImportError as exc:
        extra = {"torchscript": "torch", "sklearn": "sklearn", "onnx": "serving"}[servable.format]
        raise LoadError(
            f"Serving {servable.format} models needs {exc.name or 'a missing package'}: install "
            f"podstack[{extra}] on the serving machine."
        ) from None
    except Exception as exc:
        raise LoadError(f"Could not load {servable.data_path!r}: {exc}") from None
    raise LoadError(f"Unknown format {servable.format!r}.")


def load(model_dir: Path, *, trusted: bool) -> tuple[LoadedModel, Servable]:
    """Detects and loads the model in ``model_dir`` (the version's files)."""
    paths = [p.relative_to(model_dir).as_posix() for p in model_dir.rglob("*") if p.is_file()]
    servable = fmt.detect(paths, lambda rel: open(model_dir / rel, "rb"))  # noqa: SIM115
    return load_model_dir(model_dir, servable, trusted=trusted), servable


# ------------------------------------------------------------------ ONNX


def _load_onnx(path: Path, signature: Signature | None) -> LoadedModel:
    import onnxruntime as ort

    providers = [p for p in ("CUDAExecutionProvider",) if p in ort.get_available_providers()]
    opts = ort.SessionOptions()
    # Replicas are processes; one thread pool each keeps a small machine responsive.
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(
        str(path), sess_options=opts, providers=[*providers, "CPUExecutionProvider"]
    )

    def spec(arg: Any) -> TensorSpec:
        datatype = _ORT_TYPES.get(arg.type)
        if datatype is None:
            # e.g. skl2onnx's seq(map(int64, float)) probability output: not a tensor.
            return TensorSpec(arg.name, "", [])
        return TensorSpec(arg.name, datatype, _dims(arg.shape))

    inputs = [spec(a) for a in sess.get_inputs()]
    all_outputs = [spec(a) for a in sess.get_outputs()]
    outputs = [o for o in all_outputs if o.datatype]
    out_names = [o.name for o in outputs]

    def run(feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        results = sess.run(out_names, feed)
        return dict(zip(out_names, (np.asarray(r) for r in results), strict=True))

    return LoadedModel("onnxruntime_onnx", inputs, outputs, run)


# ------------------------------------------------------------------ TorchScript


def _load_torchscript(path: Path, signature: Signature | None) -> LoadedModel:
    import torch

    torch.set_num_threads(1)
    module = torch.jit.load(str(path), map_location="cpu")
    module.eval()
    inputs = list(signature.inputs) if signature and signature.inputs else []
    if not inputs:
        # The same default name and "any shape" that formats.torchscript_signature gives, so
        # the SDK's default input name always matches.
        inputs = [TensorSpec(fmt.DEFAULT_INPUT, "FP32", [])]
    outputs = list(signature.outputs) if signature and signature.outputs else []
    names = [t.name for t in inputs]

    def run(feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        args = [torch.from_numpy(np.ascontiguousarray(feed[n])) for n in names]
        with torch.no_grad():
            result = module(*args)
        if isinstance(result, dict):
            return {str(k): v.detach().cpu().numpy() for k, v in result.items()}
        seq = list(result) if isinstance(result, tuple | list) else [result]
        out_names = [o.name for o in outputs] if len(outputs) == len(seq) else None
        return {
            (out_names[i] if out_names else f"output__{i}"): t.detach().cpu().numpy()
            for i, t in enumerate(seq)
        }

    if not outputs:
        outputs = [TensorSpec("output__0", "FP32", [-1])]
    return LoadedModel("pytorch_torchscript", inputs, outputs, run)


# ------------------------------------------------------------------ scikit-learn


def _load_skops(path: Path) -> Any:
    """A skops file (MLflow 3's default scikit-learn format), with skops' default trusted
    types only: types an MLmodel asks to trust are ignored, the file must not widen what may
    be loaded from it."""
    import skops.io as sio

    untrusted = sio.get_untrusted_types(file=path)
    if untrusted:
        raise LoadError(
            f"{path.name} holds types skops does not trust by default ({', '.join(untrusted)}); "
            "log the model with serialization_format='cloudpickle' and deploy it to a target "
            "with trusted formats, or use types skops trusts."
        )
    return sio.load(path)


def _load_sklearn(path: Path, signature: Signature | None) -> LoadedModel:
    if path.suffix.lower() == fmt.SKOPS_SUFFIX:
        model = _load_skops(path)
    elif path.suffix.lower() == ".joblib":
        import joblib

        model = joblib.load(path)
    else:
        try:
            import cloudpickle as picklemod  # MLflow's default serialisation
        except ImportError:  # pragma: no cover - cloudpickle comes with scikit-learn
            picklemod = pickle
        with open(path, "rb") as fh:
            model = picklemod.load(fh)
    if not hasattr(model, "predict"):
        raise LoadError(f"{path.name} does not hold an estimator with a predict() method.")
    inputs = list(signature.inputs) if signature and signature.inputs else []
    if not inputs:
        n = getattr(model, "n_features_in_", None)
        inputs = [TensorSpec("input", "FP64", [-1, int(n) if n else -1])]
    outputs = list(signature.outputs) if signature and signature.outputs else []
    out_name = outputs[0].name if outputs else "predict"
    if not outputs:
        outputs = [TensorSpec(out_name, "FP64", [-1])]
    first = inputs[0].name
    columns = [t.name for t in inputs] if signature is not None and signature.columns else []

    def run(feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if columns:
            # An MLflow DataFrame signature: each column arrives as its own 1-D input.
            x = np.column_stack([np.asarray(feed[c]).reshape(-1) for c in columns])
            return {out_name: np.asarray(model.predict(x))}
        return {out_name: np.asarray(model.predict(feed[first]))}

    return LoadedModel("sklearn", inputs, outputs, run)


def input_example(model_dir: Path) -> dict[str, Any] | None:
    p = model_dir / fmt.INPUT_EXAMPLE
    if not p.is_file():
        return None
    try:
        return json.loads(p.read_text())
    except ValueError:
        return None
