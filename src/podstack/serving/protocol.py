"""Open Inference Protocol (KServe V2) request decoding and response encoding.

Every malformed request raises ``ProtocolError`` whose message becomes the protocol's error
body ``{"error": "<message>"}`` with status 400.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from podstack.serving.formats import TensorSpec
from podstack.serving.runtime import numpy_dtype, v2_datatype


class ProtocolError(Exception):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def _flatten(data: Any) -> list[Any]:
    if not isinstance(data, list):
        return [data]
    if data and isinstance(data[0], list):
        out: list[Any] = []
        for item in data:
            out.extend(_flatten(item))
        return out
    return data


def _shape_ok(shape: list[int], expected: list[int]) -> bool:
    if not expected:
        return True
    if len(shape) != len(expected):
        return False
    return all(e < 0 or e == s for s, e in zip(shape, expected, strict=True))


def decode_inputs(body: Any, specs: list[TensorSpec], binary: bytes = b"") -> dict[str, np.ndarray]:
    """``binary``: tensor bytes after the JSON header (the binary tensor data extension that
    tritonclient uses by default), consumed in input order by ``parameters.binary_data_size``."""
    if not isinstance(body, dict):
        raise ProtocolError("Inference request must be a JSON object with an 'inputs' list.")
    raw = body.get("inputs")
    if not isinstance(raw, list) or not raw:
        raise ProtocolError("Inference request needs a non-empty 'inputs' list.")
    by_name = {s.name: s for s in specs}
    offset = 0
    expected_names = [s.name for s in specs]
    out: dict[str, np.ndarray] = {}
    for i, t in enumerate(raw):
        if not isinstance(t, dict):
            raise ProtocolError(f"inputs[{i}] must be an object with name, shape, datatype, data.")
        name, shape, datatype = t.get("name"), t.get("shape"), t.get("datatype")
        if not isinstance(name, str) or not name:
            raise ProtocolError(f"inputs[{i}] needs a 'name'.")
        if name not in by_name:
            raise ProtocolError(
                f"Unexpected input {name!r}; the model expects {', '.join(expected_names)}."
            )
        spec = by_name[name]
        if (
            not isinstance(shape, list)
            or not shape
            or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
        ):
            raise ProtocolError(
                f"Input {name!r} needs 'shape' as a list of non-negative integers, e.g. "
                f"{[1 if d < 0 else d for d in spec.shape] or [1]}."
            )
        if datatype != spec.datatype:
            raise ProtocolError(
                f"Input {name!r} has datatype {datatype!r} but the model expects {spec.datatype!r}."
            )
        if not _shape_ok(shape, spec.shape):
            raise ProtocolError(
                f"Input {name!r} has shape {shape} but the model expects {spec.shape} "
                "(-1 = any size)."
            )
        size = (t.get("parameters") or {}).get("binary_data_size")
        if size is not None:
            out[name] = _from_binary(name, binary, offset, size, datatype, shape)
            offset += size
            continue
        if "data" not in t:
            raise ProtocolError(f"Input {name!r} has no 'data'.")
        flat = _flatten(t["data"])
        if len(flat) != math.prod(shape):
            raise ProtocolError(
                f"Input {name!r} has {len(flat)} values but shape {shape} needs {math.prod(shape)}."
            )
        try:
            if datatype == "BYTES":
                arr = np.array(flat, dtype=object).reshape(shape)
            else:
                if datatype == "BOOL" and not all(isinstance(v, bool) for v in flat):
                    raise ValueError("BOOL data must be true/false")
                if datatype.startswith(("INT", "UINT")) and not all(
                    isinstance(v, int) and not isinstance(v, bool) for v in flat
                ):
                    raise ValueError(f"{datatype} data must be integers")
                if datatype.startswith("FP") and not all(
                    isinstance(v, int | float) and not isinstance(v, bool) for v in flat
                ):
                    raise ValueError(f"{datatype} data must be numbers")
                arr = np.array(flat, dtype=numpy_dtype(datatype)).reshape(shape)
        except (ValueError, TypeError, OverflowError) as exc:
            raise ProtocolError(f"Input {name!r}: {exc}.") from None
        out[name] = arr
    missing = [n for n in expected_names if n not in out]
    if missing:
        raise ProtocolError(f"Missing input(s) {', '.join(missing)}.")
    return out


def _from_binary(
    name: str, binary: bytes, offset: int, size: Any, datatype: str, shape: list[int]
) -> np.ndarray:
    if not isinstance(size, int) or size < 0 or offset + size > len(binary):
        raise ProtocolError(f"Input {name!r}: binary_data_size does not match the body.")
    if datatype == "BYTES":
        raise ProtocolError(f"Input {name!r}: send BYTES tensors as JSON data.")
    dtype = numpy_dtype(datatype)
    if size != math.prod(shape) * dtype.itemsize:
        raise ProtocolError(
            f"Input {name!r} has {size} bytes but shape {shape} of {datatype} needs "
            f"{math.prod(shape) * dtype.itemsize}."
        )
    return np.frombuffer(binary[offset : offset + size], dtype=dtype).reshape(shape)


def binary_outputs(body: dict[str, Any]) -> set[str] | bool:
    """Outputs the client wants as binary (True: all of them)."""
    if (body.get("parameters") or {}).get("binary_data_output"):
        return True
    return {
        o["name"]
        for o in body.get("outputs") or []
        if isinstance(o, dict) and (o.get("parameters") or {}).get("binary_data")
    }


def requested_outputs(body: dict[str, Any], available: list[str]) -> list[str]:
    wanted = body.get("outputs")
    if not wanted:
        return available
    if not isinstance(wanted, list):
        raise ProtocolError("'outputs' must be a list of {\"name\": ...} objects.")
    names = []
    for o in wanted:
        name = o.get("name") if isinstance(o, dict) else None
        if name not in available:
            raise ProtocolError(
                f"Unknown output {name!r}; the model produces {', '.join(available)}."
            )
        names.append(name)
    return names


def encode_tensor(name: str, arr: np.ndarray) -> dict[str, Any]:
    arr = np.asarray(arr)
    datatype = v2_datatype(arr.dtype)
    flat = arr.reshape(-1)
    if datatype == "BYTES":
        data = [v.decode() if isinstance(v, bytes) else str(v) for v in flat.tolist()]
    else:
        data = flat.tolist()
    return {"name": name, "datatype": datatype, "shape": list(arr.shape), "data": data}
