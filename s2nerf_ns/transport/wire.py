"""The wire format between the client and the server process: a small, explicit, pickle-free schema.

One message is one gRPC payload (bytes)::

    b"S2NW" | version: u8 | header length: u32 LE | header: UTF-8 JSON | tensor buffers, back to back

The JSON header is ``{"kind": str, "step": int, "meta": {...}, "tensors": [entry, ...]}``. Each entry is
``{"name", "dtype", "shape", "codec", "nbytes"}`` (plus ``"scale"`` for scaled half precision) and describes
one buffer, in order:

* ``raw``: the tensor's values, C order, little endian, ``dtype`` as stored (``nbytes = numel * itemsize``);
* ``f16``: float32 values sent as float16 after dividing by ``scale`` (the tensor's max |value|, so that small
  gradients do not underflow); decoded back to float32;
* ``sparse``: ReLU zeros left out: a bitmask of the non-zeros (``np.packbits``, ceil(numel / 8) bytes) followed
  by the non-zero values (float32, or float16 with ``scale``);
* ``masked``: like ``sparse`` without the bitmask: the mask is that of a tensor both sides already hold (the
  gradient of ``h`` is sent only where ``h`` was non-zero; the server backprops through a ReLU, so the entries
  left out would be multiplied by zero anyway).

``sparse`` and ``masked`` values are float32, float16 (``"half": true`` with ``scale``) or 8-bit (``"bits": 8``):
per row of the tensor's first dimension (per ray) its largest |value| kept as float32, then the row's values
rounded to ``round(v / row max * L)``, as uint8 with L = 255 when every value is >= 0 (``"unsigned": true``, h
after its ReLU) and int8 with L = 127 otherwise; decoded as ``q * row max / L``.

Every message is validated before anything is built from it: magic and version, header size, message kind,
the tensor names and dtypes that kind may carry (:data:`SCHEMA`), shapes, sizes and the total length. A bad
message raises :class:`WireError`, which the server answers with ``INVALID_ARGUMENT``.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from typing import Dict, List, Literal, Optional, Tuple, get_args, get_origin, get_type_hints

import numpy as np
import torch
from torch import Tensor

from s2nerf_ns.protocol.server import ServerFieldConfig, arch_fields

MAGIC = b"S2NW"
VERSION = 1
MAX_HEADER_BYTES = 1 << 16
PREFIX = struct.Struct("<4sBI")

DTYPES: Dict[str, Tuple[np.dtype, torch.dtype]] = {
    "float32": (np.dtype("<f4"), torch.float32),
    "float16": (np.dtype("<f2"), torch.float16),
    "int64": (np.dtype("<i8"), torch.int64),
    "float64": (np.dtype("<f8"), torch.float64),  # encodable; no message kind accepts it
}

SCHEMA: Dict[str, Dict[str, Tuple[str, ...]]] = {
    # kind -> tensor name -> allowed dtypes. Anything else is refused.
    "hello": {},
    "hello_reply": {},
    "forward": {"ray_origins": ("float32",), "ray_directions": ("float32",), "ray_indices": ("int64",)},
    "forward_reply": {"h": ("float32",), "sample_bins": ("float32",)},
    "backward": {"grad_h": ("float32",)},
    "backward_reply": {},
    "render": {"ray_origins": ("float32",), "ray_directions": ("float32",)},
    "render_reply": {"h": ("float32",), "sample_bins": ("float32",)},
}
CODECS = ("raw", "f16", "sparse", "masked")


class WireError(ValueError):
    """A message that does not follow the schema."""


@dataclass
class Message:
    kind: str
    step: int = -1
    meta: Dict[str, object] = field(default_factory=dict)
    tensors: Dict[str, Tensor] = field(default_factory=dict)
    payload_bytes: Dict[str, int] = field(default_factory=dict)
    """Bytes of each tensor's buffers on the wire (what the transcript counts, for the raw codec)."""
    total_bytes: int = 0
    """The whole message, framing included."""
    masks: Dict[str, Tensor] = field(default_factory=dict)
    """Non-zero masks of ``sparse`` tensors, as sent (the receiver uses them for ``masked`` replies)."""


@dataclass
class WireOptions:
    """How ``h`` and its gradient travel (rays and indices are always raw)."""

    half: bool = False
    """float16 (scaled) instead of float32 for h and the gradient."""
    sparse: bool = False
    """Leave out the ReLU zeros of h (bitmask + values) and send the gradient only where h is non-zero."""
    int8: bool = False
    """8-bit values with a per-ray scale for h and the gradient (on top of ``sparse``, which it needs)."""
    relu_h: bool = True
    """h is a ReLU output (cut_depth >= 1): the gradient at its zeros does not reach the server's parameters,
    so ``sparse`` leaves it out too. Without the ReLU (cut_depth 0) the gradient is sent densely."""

    def codec(self, name: str) -> str:
        if name == "h":
            return "sparse" if self.sparse else ("f16" if self.half else "raw")
        if name == "grad_h":
            return "masked" if self.sparse and self.relu_h else ("f16" if self.half else "raw")
        return "raw"


def _value_bytes(values: Tensor, half: bool) -> Tuple[bytes, Optional[float]]:
    values = values.detach().cpu().contiguous()
    if not half:
        return values.float().numpy().astype("<f4", copy=False).tobytes(), None
    scale = float(values.abs().max()) if values.numel() else 1.0
    scale = scale if scale > 0 and np.isfinite(scale) else 1.0
    return (values.float() / scale).numpy().astype("<f2").tobytes(), scale


def _q8_bytes(tensor: Tensor, mask: Tensor) -> Tuple[bytes, bool]:
    """8-bit values of ``tensor[mask]`` with a float32 scale per row (first dimension); see the module's doc."""
    rows = tensor.shape[0] if tensor.dim() else 1
    flat, keep = tensor.float().reshape(rows, -1), mask.reshape(rows, -1)
    scale = (flat.abs() * keep).amax(dim=1) if flat.numel() else torch.zeros(rows)
    values, row_of = flat[keep], keep.nonzero()[:, 0]
    unsigned = bool((values >= 0).all())
    levels, low = (255.0, 0.0) if unsigned else (127.0, -127.0)
    per_value = scale[row_of]
    q = torch.where(per_value > 0, torch.round(values / per_value.clamp_min(1e-38) * levels), torch.zeros(()))
    q = q.clamp(low, levels).to(torch.uint8 if unsigned else torch.int8)
    return scale.numpy().astype("<f4").tobytes() + q.numpy().tobytes(), unsigned


def _q8_values(name: str, raw: bytes, count: int, shape: List[int], mask: Tensor, unsigned: bool) -> Tensor:
    rows = shape[0] if shape else 1
    if len(raw) != 4 * rows + count:
        raise WireError(f"{name!r}: {len(raw)} bytes for {rows} row scales and {count} 8-bit values")
    scale = torch.from_numpy(np.frombuffer(raw[:4 * rows], dtype="<f4").astype(np.float32))
    if not (torch.isfinite(scale).all() and (scale >= 0).all()):
        raise WireError(f"{name!r}: bad row scales")
    q = np.frombuffer(raw[4 * rows:], dtype=np.uint8 if unsigned else np.int8).astype(np.float32)
    row_of = mask.reshape(rows, -1).nonzero()[:, 0]
    return torch.from_numpy(q) * (scale[row_of] / (255.0 if unsigned else 127.0))


def encode(kind: str, step: int = -1, meta: Optional[Dict[str, object]] = None,
           tensors: Optional[Dict[str, Tensor]] = None, codecs: Optional[Dict[str, str]] = None,
           half: bool = False, masks: Optional[Dict[str, Tensor]] = None,
           int8: bool = False) -> Tuple[bytes, Dict[str, int]]:
    """Serialise a message; returns the bytes and the payload bytes of each tensor. ``half`` / ``int8``: the
    values of ``sparse`` and ``masked`` tensors in float16 / 8 bits (``int8`` wins)."""
    entries, buffers, sizes = [], [], {}
    for name, tensor in (tensors or {}).items():
        codec = (codecs or {}).get(name, "raw")
        tensor = tensor.detach().cpu()
        dtype = str(tensor.dtype).replace("torch.", "")
        entry: Dict[str, object] = {"name": name, "dtype": dtype, "shape": list(tensor.shape), "codec": codec}
        if codec == "raw":
            data = tensor.contiguous().numpy().astype(DTYPES[dtype][0], copy=False).tobytes()
        elif codec == "f16":
            data, entry["scale"] = _value_bytes(tensor, True)
        elif codec in ("sparse", "masked"):
            mask = (tensor != 0) if codec == "sparse" else (masks or {})[name].detach().cpu().bool()
            if int8:
                values, entry["unsigned"] = _q8_bytes(tensor, mask)
                entry["bits"] = 8
            else:
                values, scale = _value_bytes(tensor[mask], half)
                entry["half"] = half
                if scale is not None:
                    entry["scale"] = scale
            data = (np.packbits(mask.reshape(-1).numpy()).tobytes() if codec == "sparse" else b"") + values
            entry["count"] = int(mask.sum())
        else:
            raise WireError(f"unknown codec {codec!r}")
        entry["nbytes"] = len(data)
        entries.append(entry)
        buffers.append(data)
        sizes[name] = len(data)
    header = json.dumps({"kind": kind, "step": int(step), "meta": meta or {}, "tensors": entries}).encode()
    return PREFIX.pack(MAGIC, VERSION, len(header)) + header + b"".join(buffers), sizes


def _check_entry(kind: str, entry: object, max_elements: int) -> Tuple[str, str, List[int], str]:
    if not isinstance(entry, dict):
        raise WireError("tensor entry is not an object")
    name, dtype, shape, codec = entry.get("name"), entry.get("dtype"), entry.get("shape"), entry.get("codec")
    allowed = SCHEMA[kind]
    if name not in allowed:
        raise WireError(f"a {kind!r} message may not carry {name!r} (allowed: {sorted(allowed)})")
    if dtype not in allowed[name]:
        raise WireError(f"{name!r} must be {allowed[name]}, got {dtype!r}")
    if codec not in CODECS:
        raise WireError(f"unknown codec {codec!r}")
    if (not isinstance(shape, list) or len(shape) > 4
            or not all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d for d in shape)):
        raise WireError(f"bad shape for {name!r}: {shape!r}")
    if int(np.prod(shape, dtype=np.float64)) > max_elements:
        raise WireError(f"{name!r} has {int(np.prod(shape))} elements, over the limit of {max_elements}")
    if not isinstance(entry.get("nbytes"), int) or entry["nbytes"] < 0:
        raise WireError(f"bad nbytes for {name!r}")
    return name, dtype, shape, codec


def decode(data: bytes, expect: Optional[str] = None, masks: Optional[Dict[str, Tensor]] = None,
           max_elements: int = 1 << 28) -> Message:
    """Parse and validate a message. ``masks`` supplies the masks of ``masked`` tensors (receiver's own)."""
    if len(data) < PREFIX.size:
        raise WireError("message too short")
    magic, version, header_len = PREFIX.unpack_from(data)
    if magic != MAGIC or version != VERSION:
        raise WireError("not an s2nerf wire message (bad magic or version)")
    if header_len > MAX_HEADER_BYTES or PREFIX.size + header_len > len(data):
        raise WireError(f"bad header length {header_len}")
    try:
        header = json.loads(data[PREFIX.size:PREFIX.size + header_len].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise WireError(f"header is not JSON: {err}") from None
    if not isinstance(header, dict) or header.get("kind") not in SCHEMA:
        raise WireError(f"unknown message kind {header.get('kind') if isinstance(header, dict) else None!r}")
    kind = header["kind"]
    if expect is not None and kind != expect:
        raise WireError(f"expected a {expect!r} message, got {kind!r}")
    step, meta, entries = header.get("step", -1), header.get("meta", {}), header.get("tensors", [])
    if not isinstance(step, int) or not isinstance(meta, dict) or not isinstance(entries, list):
        raise WireError("bad header fields")
    offset = PREFIX.size + header_len
    if offset + sum(e.get("nbytes", 0) if isinstance(e, dict) and isinstance(e.get("nbytes", 0), int) else 0
                    for e in entries) != len(data):
        raise WireError("message length does not match the sizes its header declares")
    msg = Message(kind=kind, step=step, meta=meta, total_bytes=len(data))
    for entry in entries:
        name, dtype, shape, codec = _check_entry(kind, entry, max_elements)
        if name in msg.tensors:
            raise WireError(f"{name!r} sent twice")
        nbytes = entry["nbytes"]
        buf = data[offset:offset + nbytes]
        offset += nbytes
        msg.tensors[name] = _decode_tensor(name, dtype, shape, codec, entry, buf, masks, msg.masks)
        msg.payload_bytes[name] = nbytes
    return msg


def _decode_tensor(name: str, dtype: str, shape: List[int], codec: str, entry: Dict, buf: bytes,
                   masks: Optional[Dict[str, Tensor]], sent_masks: Dict[str, Tensor]) -> Tensor:
    np_dtype, torch_dtype = DTYPES[dtype]
    numel = int(np.prod(shape, dtype=np.int64))
    if codec == "raw":
        if len(buf) != numel * np_dtype.itemsize:
            raise WireError(f"{name!r}: {len(buf)} bytes for shape {shape} {dtype}")
        return torch.from_numpy(np.frombuffer(buf, dtype=np_dtype).copy()).reshape(shape)
    if dtype != "float32":
        raise WireError(f"codec {codec!r} is for float32 tensors only")
    scale = entry.get("scale", 1.0)
    if not isinstance(scale, (int, float)) or not np.isfinite(scale):
        raise WireError(f"{name!r}: bad scale")

    def values(raw: bytes, count: int, half: bool) -> Tensor:
        vt = np.dtype("<f2") if half else np.dtype("<f4")
        if len(raw) != count * vt.itemsize:
            raise WireError(f"{name!r}: {len(raw)} value bytes for {count} values")
        return torch.from_numpy(np.frombuffer(raw, dtype=vt).astype(np.float32)) * float(scale)

    if codec == "f16":
        return values(buf, numel, True).reshape(shape)
    count, half = entry.get("count"), bool(entry.get("half", False))
    if not isinstance(count, int) or not 0 <= count <= numel:
        raise WireError(f"{name!r}: bad count")
    if codec == "sparse":
        mask_len = (numel + 7) // 8
        if len(buf) < mask_len:
            raise WireError(f"{name!r}: truncated mask")
        mask = torch.from_numpy(np.unpackbits(np.frombuffer(buf[:mask_len], np.uint8), count=numel).astype(bool))
        buf = buf[mask_len:]
        sent_masks[name] = mask.reshape(shape)
    else:
        if masks is None or name not in masks or masks[name].numel() != numel:
            raise WireError(f"{name!r}: no mask of the right size to place its values")
        mask = masks[name].reshape(-1).cpu().bool()
    if int(mask.sum()) != count:
        raise WireError(f"{name!r}: mask and count disagree")
    out = torch.zeros(numel)
    bits = entry.get("bits", 32)
    if bits not in (8, 32) or not isinstance(entry.get("unsigned", False), bool):
        raise WireError(f"{name!r}: bad bits/unsigned")
    out[mask] = (_q8_values(name, buf, count, shape, mask, entry.get("unsigned", False)) if bits == 8
                 else values(buf, count, half))
    return out.reshape(shape)


# ---------------------------------------------------------------------------- what Hello may carry
ARCH_INT_LIMITS = {"num_levels": 32, "features_per_level": 8, "min_res": 1 << 14, "max_res": 1 << 16,
                   "log2_hashmap_size": 24, "hidden_dim": 1024, "num_density_layers": 16, "geo_feat_dim": 256,
                   "cut_depth": 15, "num_samples": 4096, "num_proposal_samples": 4096,
                   "proposal_update_every": 1 << 20, "proposal_warmup": 1 << 31}
"""Bounds of every int of :class:`ServerFieldConfig` (each entry of a tuple of ints), so a hello cannot exhaust
memory. The field names and types themselves come from the dataclass."""
SCHEDULE_DEFAULTS: Dict[str, object] = {
    "lr": 1e-2, "eps": 1e-15, "beta1": 0.9, "beta2": 0.99, "weight_decay": 0.0, "lr_final": 1e-3, "max_steps": 5000,
    "warmup_steps": 0, "lr_pre_warmup": 1e-8, "ramp": "cosine"}
"""The methods' optimizer of the server fields (Adam + nerfstudio's exponential decay), used by a server whose
client sends no schedule. A client sends its own (``schedule`` in Hello, the same keys)."""


def check_arch(arch: object) -> Dict[str, object]:
    """Validate the server-side architecture a client asks for: every field of :class:`ServerFieldConfig`, by its
    type (ints bounded by :data:`ARCH_INT_LIMITS`), and the scene box ``aabb``. The server computes its grid with
    torch whatever the client's ``implementation``, and runs the uniform sampler only."""
    if not isinstance(arch, dict):
        raise WireError("hello: 'arch' must be an object")
    out: Dict[str, object] = {}
    hints = get_type_hints(ServerFieldConfig)
    for key in arch_fields():
        kind, value = hints[key], arch.get(key)
        if kind is int or get_origin(kind) is tuple:
            items = value if get_origin(kind) is tuple and isinstance(value, list) and 1 <= len(value) <= 8 else [value]
            limit = ARCH_INT_LIMITS[key]
            if not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= limit for v in items):
                raise WireError(f"hello: arch.{key} must be {'a list of ' if kind is not int else 'an '}int"
                                f"{'s' if kind is not int else ''} in [0, {limit}], got {value!r}")
            out[key] = value if kind is int else list(items)  # JSON values: compared with a checkpoint's
        elif kind is float:
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not np.isfinite(value):
                raise WireError(f"hello: arch.{key} must be a number")
            out[key] = float(value)
        elif kind is bool:
            if not isinstance(value, bool):
                raise WireError(f"hello: arch.{key} must be true or false")
            out[key] = value
        elif get_origin(kind) is Literal:
            if value not in get_args(kind):
                raise WireError(f"hello: arch.{key} must be one of {', '.join(get_args(kind))}, got {value!r}")
            out[key] = value
        else:  # a new kind of field in ServerFieldConfig: say how it is checked here
            raise TypeError(f"check_arch: no check for ServerFieldConfig.{key} ({kind})")
    if out["sampler"] != "uniform":
        raise WireError("hello: the two-process protocol supports the uniform sampler only")
    out["implementation"] = "torch"
    aabb = arch.get("aabb")
    if (not isinstance(aabb, list) or len(aabb) != 2 or not all(isinstance(r, list) and len(r) == 3 for r in aabb)
            or not all(isinstance(v, (int, float)) for r in aabb for v in r)):
        raise WireError("hello: arch.aabb must be [[x, y, z], [x, y, z]]")
    out["aabb"] = [[float(v) for v in r] for r in aabb]
    return out


def check_schedule(schedule: object) -> Dict[str, object]:
    """Validate the optimizer schedule a client sends in Hello (known keys, finite numbers, bounded steps)."""
    if not isinstance(schedule, dict) or set(schedule) - set(SCHEDULE_DEFAULTS):
        raise WireError(f"hello: 'schedule' must be an object with keys among {sorted(SCHEDULE_DEFAULTS)}")
    out: Dict[str, object] = {}
    for key, value in schedule.items():
        if key == "ramp":
            if value not in ("cosine", "linear"):
                raise WireError("hello: schedule.ramp must be 'cosine' or 'linear'")
        elif key in ("max_steps", "warmup_steps"):
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 1 << 31:
                raise WireError(f"hello: schedule.{key} must be an int in [0, 2^31]")
        elif (not isinstance(value, (int, float)) or isinstance(value, bool) or not np.isfinite(value) or value < 0
              or (key in ("beta1", "beta2") and value >= 1)):
            raise WireError(f"hello: schedule.{key} must be a finite number >= 0 (betas < 1), got {value!r}")
        out[key] = value if key in ("ramp", "max_steps", "warmup_steps") else float(value)
    if out.get("max_steps", 1) < 1:
        raise WireError("hello: schedule.max_steps must be >= 1")
    return out
