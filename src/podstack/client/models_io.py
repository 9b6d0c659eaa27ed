"""``run.log_model(model, artifact_path)``: write a servable MLflow-style model directory
(``MLmodel`` + model file + signature + input example) and log it as run artifacts.

Supported models:

- scikit-learn estimators: pickled with cloudpickle (flavour ``sklearn``) and, when skl2onnx
  is installed and an ``input_example`` gives the input shape, also converted to ONNX
  (flavour ``onnx``), which deployments prefer because loading it runs no code from the file;
- PyTorch ``nn.Module``: saved as TorchScript (scripted, or traced with ``input_example``);
  flavour ``torchscript``;
- ONNX: an ``onnx.ModelProto``, serialized bytes, or a path to a ``.onnx`` file.

A plain ``state_dict`` is refused: it cannot be served without the code that builds the model.
"""

from __future__ import annotations

import json
import tempfile
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from podstack.errors import ValidationFailed
from podstack.serving import formats as fmt
from podstack.serving.formats import Signature, TensorSpec

if TYPE_CHECKING:
    from podstack.client.artifacts import ArtifactsAPI


@dataclass
class ModelInfo:
    """What ``log_model`` stored."""

    run_id: str
    artifact_path: str
    flavors: list[str]
    signature: dict[str, Any] | None
    files: list[str] = field(default_factory=list)

    @property
    def model_uri(self) -> str:
        return f"runs:/{self.run_id}/{self.artifact_path}"


def _np() -> Any:
    import numpy as np

    return np


def _example_arrays(example: Any) -> dict[str, Any] | None:
    """input_example as {name: ndarray}; a bare array/list gets the name ``input``."""
    if example is None:
        return None
    np = _np()
    if isinstance(example, Mapping):
        return {str(k): np.asarray(v) for k, v in example.items()}
    if hasattr(example, "detach"):  # torch tensor
        example = example.detach().cpu().numpy()
    return {"input": np.asarray(example)}


def _spec_of(name: str, arr: Any, *, batch: bool = True) -> TensorSpec:
    from podstack.serving.runtime import v2_datatype

    shape = list(arr.shape)
    if batch and shape:
        shape[0] = -1
    return TensorSpec(name, v2_datatype(arr.dtype), shape)


def _example_doc(arrays: dict[str, Any]) -> dict[str, Any]:
    from podstack.serving.protocol import encode_tensor

    return {"inputs": [encode_tensor(n, a) for n, a in arrays.items()]}


def _is_sklearn(model: Any) -> bool:
    return type(model).__module__.startswith("sklearn") or (
        hasattr(model, "predict") and hasattr(model, "get_params")
    )


def _is_torch_module(model: Any) -> bool:
    try:
        import torch
    except ImportError:
        return False
    return isinstance(model, torch.nn.Module)


def _is_state_dict(model: Any) -> bool:
    if not isinstance(model, Mapping) or not model:
        return False
    return all(hasattr(v, "shape") and hasattr(v, "dtype") for v in model.values())


def _is_onnx(model: Any) -> bool:
    if isinstance(model, bytes | bytearray):
        return True
    if isinstance(model, str | Path) and str(model).lower().endswith(".onnx"):
        return True
    return type(model).__name__ == "ModelProto"


def save_model(
    model: Any,
    directory: Path,
    *,
    artifact_path: str,
    run_id: str | None = None,
    input_example: Any = None,
    format: str | None = None,
) -> tuple[list[str], Signature | None]:
    """Writes the MLmodel directory into ``directory``; returns (flavours, signature)."""
    directory.mkdir(parents=True, exist_ok=True)
    arrays = _example_arrays(input_example)
    flavours: dict[str, dict[str, Any]] = {}
    signature: Signature | None = None
    if format not in (None, *fmt.FORMATS):
        raise ValidationFailed(
            f"Unknown format {format!r}; use one of {', '.join(fmt.FORMATS)} (or None).",
            {"format": format},
        )
    if _is_state_dict(model):
        raise ValidationFailed(
            "log_model got a state_dict (a mapping of tensors): it has weights but not the "
            "code that runs them, so it cannot be served. Pass the nn.Module itself; it is "
            "saved as TorchScript.",
        )
    if _is_onnx(model) or (format == fmt.ONNX and not _is_sklearn(model)):
        signature = _save_onnx(model, directory, flavours)
    elif _is_torch_module(model):
        signature = _save_torchscript(model, directory, flavours, arrays)
    elif _is_sklearn(model):
        signature = _save_sklearn(model, directory, flavours, arrays, format)
    else:
        raise ValidationFailed(
            f"log_model cannot save a {type(model).__module__}.{type(model).__qualname__}: "
            "supported are scikit-learn estimators, PyTorch nn.Module (saved as TorchScript) "
            "and ONNX models.",
        )
    if arrays is not None:
        (directory / fmt.INPUT_EXAMPLE).write_text(json.dumps(_example_doc(arrays)))
    fmt.write_mlmodel(
        directory,
        flavours,
        signature,
        artifact_path=artifact_path,
        input_example=arrays is not None,
        run_id=run_id,
        model_uuid=uuid.uuid4().hex,
        created=datetime.now(UTC).isoformat(),
    )
    return list(flavours), signature


def _save_onnx(model: Any, directory: Path, flavours: dict[str, Any]) -> Signature:
    import onnx

    if isinstance(model, str | Path):
        proto = onnx.load(str(model))
    elif isinstance(model, bytes | bytearray):
        proto = onnx.load_from_string(bytes(model))
    else:
        proto = model
    onnx.save(proto, str(directory / "model.onnx"))
    flavours[fmt.ONNX] = {"onnx_version": str(onnx.__version__), "data": "model.onnx"}
    return _onnx_signature(directory / "model.onnx")


def _onnx_signature(path: Path) -> Signature:
    import onnxruntime as ort

    from podstack.serving.runtime import _ORT_TYPES, _dims

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    ins = [TensorSpec(a.name, _ORT_TYPES[a.type], _dims(a.shape)) for a in sess.get_inputs()]
    outs = [
        TensorSpec(a.name, _ORT_TYPES[a.type], _dims(a.shape))
        for a in sess.get_outputs()
        if a.type in _ORT_TYPES
    ]
    return Signature(ins, outs)


def _save_torchscript(
    model: Any, directory: Path, flavours: dict[str, Any], arrays: dict[str, Any] | None
) -> Signature | None:
    import torch

    model.eval()
    if isinstance(model, torch.jit.ScriptModule):
        scripted = model
    else:
        try:
            scripted = torch.jit.script(model)
        except Exception as script_error:
            if arrays is None:
                raise ValidationFailed(
                    f"Could not script the module ({script_error}); pass input_example= so it "
                    "can be traced instead."
                ) from None
            example = tuple(torch.from_numpy(a) for a in arrays.values())
            scripted = torch.jit.trace(model, example)
    torch.jit.save(scripted, str(directory / "model.pt"))
    flavours[fmt.TORCHSCRIPT] = {"pytorch_version": str(torch.__version__), "data": "model.pt"}
    if arrays is None:
        return None
    with torch.no_grad():
        result = scripted(*(torch.from_numpy(a) for a in arrays.values()))
    seq = list(result) if isinstance(result, tuple | list) else [result]
    inputs = [_spec_of(n, a) for n, a in arrays.items()]
    outputs = [_spec_of(f"output__{i}", t.detach().numpy()) for i, t in enumerate(seq)]
    return Signature(inputs, outputs)


def _save_sklearn(
    model: Any,
    directory: Path,
    flavours: dict[str, Any],
    arrays: dict[str, Any] | None,
    format: str | None,
) -> Signature | None:
    signature: Signature | None = None
    if format in (None, fmt.ONNX) and arrays is not None:
        try:
            signature = _sklearn_to_onnx(model, directory, flavours, arrays)
        except ImportError:
            if format == fmt.ONNX:
                raise ValidationFailed(
                    "Converting scikit-learn to ONNX needs skl2onnx: pip install skl2onnx."
                ) from None
        except Exception as exc:
            if format == fmt.ONNX:
                raise ValidationFailed(f"skl2onnx could not convert the model: {exc}") from None
    elif format == fmt.ONNX:
        raise ValidationFailed(
            "Converting scikit-learn to ONNX needs input_example= (it gives the input shape)."
        )
    if format in (None, fmt.SKLEARN):
        import cloudpickle
        import sklearn

        with open(directory / "model.pkl", "wb") as fh:
            cloudpickle.dump(model, fh)
        flavours[fmt.SKLEARN] = {
            "pickled_model": "model.pkl",
            "serialization_format": "cloudpickle",
            "sklearn_version": str(sklearn.__version__),
        }
        if signature is None and arrays is not None:
            first_name, first = next(iter(arrays.items()))
            pred = _np().asarray(model.predict(first))
            signature = Signature([_spec_of(first_name, first)], [_spec_of("predict", pred)])
    return signature


def _sklearn_to_onnx(
    model: Any, directory: Path, flavours: dict[str, Any], arrays: dict[str, Any]
) -> Signature:
    from skl2onnx import to_onnx

    first = next(iter(arrays.values()))
    np = _np()
    sample = first.astype(np.float32) if first.dtype.kind == "f" else first
    # zipmap=False keeps classifier probabilities a plain tensor (servable over V2).
    options = {id(model): {"zipmap": False}} if hasattr(model, "predict_proba") else None
    proto = to_onnx(model, sample, options=options, target_opset=None)
    import onnx
    import skl2onnx

    onnx.save(proto, str(directory / "model.onnx"))
    flavours[fmt.ONNX] = {
        "onnx_version": str(onnx.__version__),
        "data": "model.onnx",
        "converted_by": f"skl2onnx {skl2onnx.__version__}",
    }
    sig = _onnx_signature(directory / "model.onnx")
    if len(sig.inputs) == 1:
        # The input example must be a valid request for the served (ONNX) model: same input
        # name and datatype.
        arrays.clear()
        arrays[sig.inputs[0].name] = sample
    return sig


def log_model(
    client: ArtifactsAPI,
    run_id: str,
    model: Any,
    artifact_path: str,
    *,
    input_example: Any = None,
    format: str | None = None,
) -> ModelInfo:
    with tempfile.TemporaryDirectory(prefix="podstack-model-") as tmp:
        root = Path(tmp) / "model"
        flavours, signature = save_model(
            model,
            root,
            artifact_path=artifact_path,
            run_id=run_id,
            input_example=input_example,
            format=format,
        )
        stored = client.log_artifacts(run_id, root, artifact_path)
    return ModelInfo(
        run_id=run_id,
        artifact_path=artifact_path,
        flavors=flavours,
        signature=signature.to_json() if signature else None,
        files=[f.path for f in stored],
    )
