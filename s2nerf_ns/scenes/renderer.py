"""The Mitsuba 3 renderer of a room: colour (path tracing), z-depth (AOV pass) and private-item masks.

Depth maps are **z-depth** (distance along the optical axis) in metres, float32 ``(H, W)``, averaged
over the pixel (box filter, ``DEPTH_SPP`` samples).  Mitsuba's ``depth`` AOV is *not* z-depth: it is the
ray parameter ``t`` measured from the ray origin, which the perspective sensor places on the near
clipping plane (``o = c + d * near/d_z`` with unit ``d``), i.e. ``z = t * d_z + near_clip``
(:func:`aov_to_zdepth`).  Because ``d_z`` varies within a jittered pixel, the depth pass instead renders
the ``position`` AOV and computes the exact ``z = (p - c) . forward`` per pixel
(:func:`position_to_zdepth`); the ``depth`` AOV is only used as the hit mask.

Private-item masks come from a third, cheap pass over a copy of the scene in which the shapes flagged
private by the builder (:attr:`RoomBuilder.private_shapes`) are white area emitters and nothing else
emits; a path tracer with ``max_depth = 1`` then sees only directly visible emission, i.e. the coverage
of the private items in each pixel (``MASK_SPP`` samples, box filter), thresholded at
``MASK_THRESHOLD``.  Occlusion is exactly that of the colour pass (same shapes).
"""

from __future__ import annotations

from typing import Any, Dict, Tuple

import numpy as np

from s2nerf_ns.scenes.builder import RoomBuilder
from s2nerf_ns.scenes.geometry import FLIP_YZ, mi_tf
from s2nerf_ns.scenes.trajectory import FOV_DEG, intrinsics

NEAR_CLIP = 0.01
FAR_CLIP = 100.0
MAX_DEPTH = 5
"""Path-tracer maximum path depth (global illumination with a few bounces)."""
RR_DEPTH = 3
"""Russian roulette starts at this path depth (unbiased; ~20% faster than without it)."""
DEPTH_SPP = 4
"""Samples per pixel for the depth (AOV) pass; box filter, so depth is averaged within the pixel."""
DEPTH_AOVS = "dd.y:depth,pp:position"
"""AOVs of the depth pass: "depth" is the ray distance from the near plane (NOT z-depth); "position" is the
hit point in world space."""
MASK_SPP = 4
"""Samples per pixel of the private-mask pass."""
MASK_THRESHOLD = 0.5
"""A pixel is private when at least this fraction of its mask samples hit a private item."""


def linear_to_srgb8(img: np.ndarray) -> np.ndarray:
    x = np.clip(np.asarray(img, np.float64), 0.0, 1.0)
    s = np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(x, 1 / 2.4) - 0.055)
    return (np.clip(s, 0, 1) * 255.0 + 0.5).astype(np.uint8)


def aov_to_zdepth(t: np.ndarray, resolution: int, near_clip: float = NEAR_CLIP) -> np.ndarray:
    """Approximate z-depth from Mitsuba's ``depth`` AOV alone (kept for reference / tests).

    The perspective sensor shoots unit-length rays ``d`` from ``o = c + d * near / d_z``, so a hit at
    ray parameter ``t`` has z-depth ``(t + near / d_z) * d_z = t * d_z + near``.  ``d_z`` is taken at
    the pixel centre, which is only approximate when the pixel's samples are jittered (box filter).
    """
    k = intrinsics(resolution)
    u = (np.arange(resolution) + 0.5 - k["cx"]) / k["fl_x"]
    v = (np.arange(resolution) + 0.5 - k["cy"]) / k["fl_y"]
    dz = 1.0 / np.sqrt(1.0 + u[None, :] ** 2 + v[:, None] ** 2)
    z = t * dz + near_clip
    return np.where(t > 0, z, 0.0).astype(np.float32)


def position_to_zdepth(pos: np.ndarray, t: np.ndarray, c2w: np.ndarray) -> np.ndarray:
    """Exact z-depth from the ``position`` AOV: ``z = (p - c) . forward`` (forward = -z axis of the
    nerfstudio camera).  z is affine in p, so the box-filtered average over a pixel's samples is the
    pixel-average z-depth (no pixel-centre approximation as in :func:`aov_to_zdepth`).  Pixels whose
    rays hit nothing (``t == 0``; cannot happen in the closed rooms) are set to 0."""
    fwd = -np.asarray(c2w, np.float64)[:3, 2]
    z = (pos.astype(np.float64) - np.asarray(c2w, np.float64)[:3, 3]) @ fwd
    return np.where(t > 0, z, 0.0).astype(np.float32)


def sensor(c2w_ns: np.ndarray, resolution: int, spp: int):
    """Mitsuba perspective sensor for a nerfstudio camera-to-world pose (square image, box filter)."""
    import mitsuba as mi

    return mi.load_dict({
        "type": "perspective",
        "fov": FOV_DEG,
        "fov_axis": "x",
        "near_clip": NEAR_CLIP,
        "far_clip": FAR_CLIP,
        "to_world": mi_tf(c2w_ns @ FLIP_YZ),
        "sampler": {"type": "independent", "sample_count": int(spp)},
        "film": {"type": "hdrfilm", "width": int(resolution), "height": int(resolution),
                 "rfilter": {"type": "box"}, "pixel_format": "rgb", "component_format": "float32"},
    })


def mask_scene_dict(room: RoomBuilder) -> Dict[str, Any]:
    """The room's shapes with the private ones as white area emitters and no other emitter or material
    (only geometry matters: the mask pass sees direct emission only)."""
    private = set(room.private_shapes)
    missing = private - set(room.shapes)
    if missing:
        raise ValueError(f"private items refer to unknown shapes: {sorted(missing)}")
    scene: Dict[str, Any] = {"type": "scene", "integrator": {"type": "path", "max_depth": 1}}
    for key, shape in room.shapes.items():
        s = {k: v for k, v in shape.items() if k not in ("bsdf", "emitter")}
        if key in private:
            s["emitter"] = {"type": "area", "radiance": {"type": "rgb", "value": [1.0, 1.0, 1.0]}}
        scene[key] = s
    return scene


class Renderer:
    """Renders views of one room: :meth:`render` (sRGB uint8 image, z-depth) and :meth:`render_mask`."""

    def __init__(self, room: RoomBuilder, resolution: int, spp: int):
        import mitsuba as mi

        self.mi = mi
        self.resolution, self.spp = resolution, spp
        scene_dict = {"type": "scene", "integrator": {"type": "path", "max_depth": MAX_DEPTH, "rr_depth": RR_DEPTH}}
        scene_dict.update(room.shapes)
        # parallel=False, optimize=False: otherwise the shape / emitter order (and thus the random streams)
        # varies between loads of the same scene and renders are not reproducible
        self.scene = mi.load_dict(scene_dict, parallel=False, optimize=False)
        self.aov = mi.load_dict({"type": "aov", "aovs": DEPTH_AOVS})
        # a separate scene, so the colour and depth passes are exactly those of a renderer without masks
        self.mask_scene = (mi.load_dict(mask_scene_dict(room), parallel=False, optimize=False)
                           if room.private_shapes else None)

    def render(self, c2w: np.ndarray, seed: int) -> Tuple[np.ndarray, np.ndarray]:
        """(sRGB uint8 ``(H, W, 3)`` image, float32 ``(H, W)`` z-depth in metres) of the view ``c2w``."""
        mi = self.mi
        cam = sensor(c2w, self.resolution, self.spp)
        rgb = np.array(mi.render(self.scene, sensor=cam, spp=self.spp, seed=seed), dtype=np.float32)[..., :3]
        aov = np.array(mi.render(self.scene, sensor=cam, integrator=self.aov, spp=DEPTH_SPP, seed=seed),
                       dtype=np.float32)
        t, pos = aov[..., 0], aov[..., 1:4]
        return linear_to_srgb8(rgb), position_to_zdepth(pos, t, c2w)

    def private_coverage(self, c2w: np.ndarray, seed: int) -> np.ndarray:
        """Fraction of each pixel covered by visible private items, float32 ``(H, W)`` in [0, 1]."""
        if self.mask_scene is None:
            return np.zeros((self.resolution, self.resolution), np.float32)
        cam = sensor(c2w, self.resolution, MASK_SPP)
        img = np.array(self.mi.render(self.mask_scene, sensor=cam, spp=MASK_SPP, seed=seed), dtype=np.float32)
        return np.clip(img[..., :3].mean(-1), 0.0, 1.0)

    def render_mask(self, c2w: np.ndarray, seed: int) -> np.ndarray:
        """Private-item mask of the view ``c2w``: uint8 ``(H, W)``, 255 where a private item is visible."""
        return np.where(self.private_coverage(c2w, seed) >= MASK_THRESHOLD, 255, 0).astype(np.uint8)
