"""Mitsuba BSDF / emitter dictionaries used by the room builders."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Sequence


def rgb(c: Sequence[float]) -> Dict[str, Any]:
    return {"type": "rgb", "value": [float(v) for v in c]}


def diffuse(c: Sequence[float]) -> Dict[str, Any]:
    return {"type": "diffuse", "reflectance": rgb(c)}


def plastic(c: Sequence[float]) -> Dict[str, Any]:
    return {"type": "plastic", "diffuse_reflectance": rgb(c), "int_ior": 1.5}


def roughplastic(c: Sequence[float], alpha: float = 0.25) -> Dict[str, Any]:
    return {"type": "roughplastic", "diffuse_reflectance": rgb(c), "alpha": float(alpha), "distribution": "ggx"}


def textured(path: Path, kind: str = "diffuse", alpha: float = 0.3) -> Dict[str, Any]:
    """A material whose albedo is an (upright, sRGB) image file.

    Mitsuba's bitmap puts uv=(0,0) at the *top-left* pixel while the rectangle's v grows with its local
    +y, so v is flipped with ``to_uv`` to show the image upright (checked visually: text is readable).
    """
    import mitsuba as mi

    tex = {
        "type": "bitmap",
        "filename": str(path),
        "to_uv": mi.ScalarTransform3f([[1, 0, 0], [0, -1, 1], [0, 0, 1]]),
    }
    if kind == "roughplastic":
        return {"type": "roughplastic", "diffuse_reflectance": tex, "alpha": float(alpha), "distribution": "ggx"}
    return {"type": "diffuse", "reflectance": tex}


def roughplastic_tex(path: Path, alpha: float) -> Dict[str, Any]:
    return textured(path, "roughplastic", alpha)


def twosided(bsdf: Dict[str, Any]) -> Dict[str, Any]:
    return {"type": "twosided", "material": bsdf}
