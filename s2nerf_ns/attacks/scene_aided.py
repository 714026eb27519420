"""SERVER SIDE (attacker): the scene-aided part of the surrogate model attack.

The server obtained a few photos of the scene ("leaked"). It fits its surrogate so that, rendered from the
server's own embeddings at the photo's pose, it reproduces the photo; without the pose it first estimates it
(retrieval over the training poses it was sent, then iNeRF refinement). Inputs are only what the server has:
its fields (through an ``embed`` function), its surrogate, the leaked pixels and intrinsics, the training poses,
and (with ``--pose known``) the leaked poses. Scoring against ground truth happens elsewhere.
"""

from __future__ import annotations

from typing import Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn

from s2nerf_ns.attacks.pose.camera import pixel_rays
from s2nerf_ns.attacks.pose.colour_search import search_pose
from s2nerf_ns.attacks.pose.config import PoseSearchConfig
from s2nerf_ns.attacks.pose.keypoint_search import KeypointSearchConfig, describe, keypoint_pose_search
from s2nerf_ns.attacks.pose.retrieval import refine_pose, retrieve_pose
from s2nerf_ns.attacks.surrogate import SurrogateAttacker

EmbedFn = Callable[[Tensor, Tensor], Tuple[Tensor, Tensor]]
"""The server's fields on arbitrary rays: (origins [R,3], directions [R,3]) -> (h [R,S,D], bins [R,S+1])."""
GeometryFn = Callable[[Tensor, Tensor, Tensor, Tensor], Tensor]
"""The server's geometry on its own embeddings: (h, origins, directions, bins) -> depth along each ray [R,1] (e.g. the
density read-out's)."""
Intrinsics = Tuple[float, float, float, float]
"""fx, fy, cx, cy."""


class LeakBatch(NamedTuple):
    """Random pixels of the leaked photos: which photo, where, and their colours (no poses)."""

    image_index: Int[Tensor, "N"]
    rows: Int[Tensor, "N"]
    cols: Int[Tensor, "N"]
    pixels: Float[Tensor, "N 3"]


class SceneAidedAttacker(nn.Module):
    """Leaked-photo fitting and pose estimation on top of a :class:`SurrogateAttacker`."""

    def __init__(self, surrogate: SurrogateAttacker, intrinsics: Sequence[Intrinsics],
                 known_c2w: Optional[Float[Tensor, "K 3 4"]], leak_weight: float = 1.0, leak_lr: float = 1e-2) -> None:
        super().__init__()
        self.surrogate = surrogate
        self.intrinsics = [tuple(float(v) for v in k) for k in intrinsics]
        self.leak_weight, self.leak_lr = leak_weight, leak_lr
        k = len(self.intrinsics)
        known = known_c2w is not None
        self.register_buffer("leak_c2w", known_c2w.detach().clone().float() if known else torch.zeros(k, 3, 4))
        self.register_buffer("pose_ready", torch.tensor(known))

    # ------------------------------------------------------------------ rendering through the server's fields
    def render(self, embed: EmbedFn, origins: Tensor, directions: Tensor) -> Tensor:
        """The surrogate's render of any rays through the server's fields (differentiable w.r.t. the rays)."""
        h, bins = embed(origins, directions)
        return self.surrogate.render_rays(h, origins, directions, bins)

    @torch.no_grad()
    def features(self, embed: EmbedFn, origins: Tensor, directions: Tensor) -> Tensor:
        """Per-ray features of the surrogate through the server's fields (``SurrogateAttacker.render_features``):
        what the pose search's "feature-cv" objective regresses onto the photo."""
        h, bins = embed(origins, directions)
        return self.surrogate.render_features(h, origins, directions, bins)

    def rays(self, batch: LeakBatch) -> Tuple[Tensor, Tensor, Tensor]:
        """Rays of the batch's pixels from the attacker's current pose of each photo, with their colours."""
        device = self.leak_c2w.device
        cam, rows, cols = (t.to(device) for t in (batch.image_index, batch.rows, batch.cols))
        origins, directions, order = [], [], []
        for i in range(len(self.intrinsics)):  # per leaked image, its own camera
            sel = torch.nonzero(cam == i)[:, 0]
            o, d = pixel_rays(self.leak_c2w[i], *self.intrinsics[i], rows[sel], cols[sel])
            origins.append(o)
            directions.append(d)
            order.append(sel)
        pixels = batch.pixels.to(device)[torch.cat(order), :3]
        return torch.cat(origins), torch.cat(directions), pixels

    def leak_step(self, embed: EmbedFn, batch: LeakBatch) -> float:
        """One surrogate update on leaked pixels at the current poses (the server's fields are not trained)."""
        origins, directions, pixels = self.rays(batch)
        with torch.no_grad():
            h, bins = embed(origins, directions)
        return self.surrogate.fit_leaked(h, origins, directions, bins, pixels, self.leak_weight, self.leak_lr)

    # ------------------------------------------------------------------ pose estimation (pixels only)
    def estimate_poses(self, embed: EmbedFn, images: List[Float[Tensor, "H W 3"]],
                       candidates: Float[Tensor, "N 3 4"], next_batch: Callable[[int], LeakBatch],
                       rounds: int, refine_steps: int, fit_steps: int, search: str = "retrieval",
                       search_config: Optional[PoseSearchConfig] = None,
                       scene_box: Optional[Float[Tensor, "2 3"]] = None, geometry: Optional[GeometryFn] = None,
                       keypoint_config: Optional[KeypointSearchConfig] = None) -> List[Dict[str, object]]:
        """A first estimate (``retrieval`` over the training poses, or the ``global`` search over positions and
        orientations of :func:`~s2nerf_ns.attacks.pose.colour_search.search_pose`, within the training cameras'
        box or the ``scene_box`` [2,3] the server's fields are built on, as the search config's ``region`` says, or
        ``keypoints``: :func:`~s2nerf_ns.attacks.pose.keypoint_search.keypoint_pose_search`, keypoints of the photo
        matched to the surrogate's renders at the training poses, lifted by the server's ``geometry``), then
        rounds of (iNeRF refinement, surrogate fitting). After a global search with the "feature-cv" objective each
        round fits first, then refines: that search's pose does not come from the surrogate's colours, which off the
        training trajectory are too poor to refine against before they have seen the photo."""
        render = lambda o, d: self.render(embed, o, d)  # noqa: E731
        search_config = search_config or PoseSearchConfig()
        search_render = (lambda o, d: self.features(embed, o, d)) if search_config.objective == "feature-cv" \
            else render
        fit_first = search == "global" and search_config.objective == "feature-cv"
        report = []
        if search == "keypoints" and geometry is None:
            raise ValueError("the keypoint pose search needs the server's geometry (depth) on its embeddings")

        def colour_and_depth(origins: Tensor, directions: Tensor) -> Tensor:
            h, bins = embed(origins, directions)
            return torch.cat([self.surrogate.render_rays(h, origins, directions, bins),
                              geometry(h, origins, directions, bins)], dim=-1)

        for i, image in enumerate(images):
            if search == "keypoints":
                found = keypoint_pose_search(colour_and_depth, image, self.intrinsics[i], candidates, keypoint_config)
                self.leak_c2w[i] = found.c2w.to(self.leak_c2w.device)
                report.append({"leaked": i, **describe(found), "after_retrieval_c2w": found.c2w.tolist()})
                continue
            if search == "global":
                result = search_pose(search_render, image, self.intrinsics[i], candidates, search_config, seed=i,
                                     region=scene_box)
                self.leak_c2w[i] = result.c2w.to(self.leak_c2w.device)
                report.append({"leaked": i, "search": "global", "search_loss": float(result.loss),
                               "after_retrieval_c2w": result.c2w.tolist()})
                continue
            best, _ = retrieve_pose(render, image, candidates, self.intrinsics[i])
            self.leak_c2w[i] = candidates[best]
            report.append({"leaked": i, "search": "retrieval", "retrieved_training_view": best,
                           "after_retrieval_c2w": candidates[best].tolist()})
        self.pose_ready.fill_(True)

        def fit() -> None:
            for s in range(fit_steps):
                self.leak_step(embed, next_batch(s))

        for round_index in range(rounds):
            if fit_first:
                fit()
            for i, image in enumerate(images):
                self.leak_c2w[i] = refine_pose(render, image, self.leak_c2w[i], self.intrinsics[i],
                                               steps=refine_steps, seed=round_index)
            if not fit_first:
                fit()
        return report
