"""SERVER SIDE (attacker): the attackers of ``s2nerf-server --attack sma|ssma``, built at a session's Hello. With
``ssma`` the scene-aided surrogate model attack runs in the server process as the in-process ``splitnerf-ssma``
runs it (``integration/scene_aided_pipeline.py``).

The server operator was given a few photos of the scene (``--leaked-views DIR``). The attacker
(:class:`~s2nerf_ns.attacks.scene_aided.SceneAidedAttacker` on the session's surrogate) fits the surrogate to them
through the server's own fields, during training when their poses are known, and after the client's last step
(``run_steps`` from Hello): pose estimation there when asked (the same retrieval or global search and iNeRF
rounds as in-process; the training poses are recovered from the rays the server received), the post-training
leaked-photo steps, then the replay of received gradients. Nothing here reads ground truth: the true poses, when
the folder has them, are told to the attacker only with ``--pose known``; scoring is ``s2nerf-audit --server-run``.

``--leaked-views DIR`` holds the photos and ``DIR/leaked.json``::

    {"frames": [{"file": "leaked_00.png", "fx": 20.8, "fy": 20.8, "cx": 12.0, "cy": 12.0,
                 "c2w": [[r00, r01, r02, tx], [r10, r11, r12, ty], [r20, r21, r22, tz]]}]}

``c2w`` (needed by ``--pose known``, ignored by ``--pose estimate``): camera-to-world, OpenGL convention (x right,
y up, looking along -z), in the coordinates of the rays the server receives (the client's dataparser frame).
Imports of the attacks are deferred to the attack's construction: importing this module (the command line does)
loads nothing of them.
"""

from __future__ import annotations

import json
import math
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, NamedTuple, Optional, Tuple

import numpy as np
import torch
from torch import Tensor, nn

from s2nerf_ns.attacks.scene_aided_settings import SceneAidedSettings
from s2nerf_ns.errors import InputError
from s2nerf_ns.transport.wire import WireError

LEAKED_FILE = "leaked.json"
FLAG = "--leaked-views"


class LeakedViews(NamedTuple):
    """The photos the server operator was given (checked at startup)."""

    files: List[str]
    images: List[Tensor]
    """[H, W, 3] float32 in [0, 1] each."""
    intrinsics: List[Tuple[float, float, float, float]]
    """fx, fy, cx, cy of each photo."""
    c2w: Optional[Tensor]
    """[K, 3, 4] when every frame gives one, else None."""


@dataclass
class SceneAidedOptions(SceneAidedSettings):
    """The scene-aided phase's settings: those shared with the in-process pipeline, plus the pose choices (here as the
    server's command line offers them: no keypoint search, the server has no density read-out) and the replay."""

    pose: str = "known"
    pose_search: str = "retrieval"
    replay_steps: int = 200
    """The surrogate's attacker-only replay steps after the post-training steps (splitnerf-ssma's)."""


def _number(frame: Dict, key: str, where: str) -> float:
    value = frame.get(key)
    positive = key in ("fx", "fy")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or (
            positive and value <= 0):
        raise InputError(f"{where}: give {key} as a finite number{' > 0' if key in ('fx', 'fy') else ''}")
    return float(value)


def read_leaked_views(folder: Path, pose: str) -> LeakedViews:
    """``--leaked-views DIR``: the photos and ``leaked.json`` (module doc), each problem one line naming the flag."""
    from PIL import Image, UnidentifiedImageError

    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{FLAG} {folder}: no such folder (the leaked photos and their {LEAKED_FILE})")
    index = folder / LEAKED_FILE
    try:
        frames = json.loads(index.read_text()).get("frames")
    except OSError as err:
        raise InputError(f"{FLAG} {folder}: cannot read {LEAKED_FILE} ({err.strerror}); it lists the photos: "
                         '{"frames": [{"file", "fx", "fy", "cx", "cy", "c2w" (optional)}]}') from None
    except (ValueError, AttributeError) as err:
        raise InputError(f"{FLAG} {folder}: {LEAKED_FILE} is not a JSON object with 'frames' ({err})") from None
    if not isinstance(frames, list) or not frames or not all(isinstance(f, dict) for f in frames):
        raise InputError(f"{FLAG} {folder}: {LEAKED_FILE}: 'frames' must be a non-empty list of objects")
    files, images, intrinsics, poses = [], [], [], []
    for i, frame in enumerate(frames):
        where = f"{FLAG} {folder}: {LEAKED_FILE}: frame {i}"
        name = frame.get("file")
        if not isinstance(name, str) or not (folder / name).is_file():
            raise InputError(f"{where}: 'file' {name!r} is not a file in the folder")
        try:
            with Image.open(folder / name) as im:
                image = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
        except (OSError, UnidentifiedImageError) as err:
            raise InputError(f"{where}: cannot read {name} as an image ({err})") from None
        height, width = image.shape[:2]
        files.append(name)
        images.append(torch.from_numpy(image.copy()))
        intrinsics.append(tuple(_number(frame, k, where) for k in ("fx", "fy", "cx", "cy")))
        c2w = frame.get("c2w")
        if c2w is not None:
            try:
                matrix = torch.tensor(c2w, dtype=torch.float32)
            except (TypeError, ValueError):
                matrix = torch.zeros(0)
            if matrix.shape not in ((3, 4), (4, 4)) or not torch.isfinite(matrix).all():
                raise InputError(f"{where}: 'c2w' must be a finite 3x4 (or 4x4) camera-to-world matrix")
            rotation = matrix[:3, :3]
            if not torch.allclose(rotation @ rotation.T, torch.eye(3), atol=1e-3):
                raise InputError(f"{where}: 'c2w' has no rotation in its first three columns (not orthonormal)")
            poses.append(matrix[:3])
        if not (0 < height <= 16384 and 0 < width <= 16384):
            raise InputError(f"{where}: {name} is {height} x {width} pixels")
    if pose == "known" and len(poses) != len(frames):
        raise InputError(f"{FLAG} {folder}: --pose known needs 'c2w' in every frame of {LEAKED_FILE} (or give "
                         "--pose estimate: the server estimates the poses)")
    return LeakedViews(files, images, intrinsics, torch.stack(poses) if len(poses) == len(frames) else None)


class RayPoses(nn.Module):
    """The training cameras the server was sent, recovered from the rays it received: per image, the centre (the
    rays' common origin) and the rotation and intrinsics of a pinhole camera (OpenGL convention) fitted by direct
    linear transform to (pixel, direction) pairs. Constant memory: per image a 9x9 normal matrix."""

    def __init__(self, num_images: int, height: int, width: int) -> None:
        super().__init__()
        self.height, self.width = height, width
        self.register_buffer("origin_sum", torch.zeros(num_images, 3, dtype=torch.float64))
        self.register_buffer("count", torch.zeros(num_images, dtype=torch.float64))
        self.register_buffer("normal", torch.zeros(num_images, 9, 9, dtype=torch.float64))

    @torch.no_grad()
    def observe(self, indices: Tensor, origins: Tensor, directions: Tensor) -> None:
        keep = (indices >= 0).all(-1) & (indices[:, 0] < len(self.count))
        if not keep.any():
            return
        image, rows, cols = indices[keep].long().unbind(-1)
        d = torch.nn.functional.normalize(directions[keep].double(), dim=-1)
        p = torch.stack([(cols.double() + 0.5) / self.width, (rows.double() + 0.5) / self.height,
                         torch.ones_like(rows, dtype=torch.float64)], -1)
        # rows of cross(d, M p) = 0, linear in M's nine entries (row-major)
        lin = torch.zeros(len(d), 3, 9, dtype=torch.float64)
        lin[:, 0, 6:9], lin[:, 0, 3:6] = d[:, 1:2] * p, -d[:, 2:3] * p
        lin[:, 1, 0:3], lin[:, 1, 6:9] = d[:, 2:3] * p, -d[:, 0:1] * p
        lin[:, 2, 3:6], lin[:, 2, 0:3] = d[:, 0:1] * p, -d[:, 1:2] * p
        self.normal.index_add_(0, image, torch.einsum("rki,rkj->rij", lin, lin))
        self.origin_sum.index_add_(0, image, origins[keep].double())
        self.count.index_add_(0, image, torch.ones_like(image, dtype=torch.float64))

    def poses(self, min_rays: int = 16) -> Tuple[List[int], Tensor, List[Tuple[float, float, float, float]]]:
        """(image indices, c2w [K, 3, 4], intrinsics) of the images with at least ``min_rays`` rays received."""
        seen = [i for i in range(len(self.count)) if self.count[i] >= min_rays]
        scale = torch.diag(torch.tensor([1.0 / self.width, 1.0 / self.height, 1.0], dtype=torch.float64))
        c2ws, intrinsics = [], []
        for i in seen:
            m = torch.linalg.eigh(self.normal[i]).eigenvectors[:, 0].reshape(3, 3) @ scale  # M = R A, up to scale
            q, u = torch.linalg.qr(m)
            flip = torch.diag(torch.sign(torch.diag(u)) * torch.tensor([1.0, -1.0, -1.0], dtype=torch.float64))
            q, u = q @ flip, flip @ u  # A's diagonal is (1/fx, -1/fy, -1)
            if torch.linalg.det(q) < 0:
                q = -q  # the scale's sign: the rotation is the proper one
            a = u / -u[2, 2]
            fx, fy = 1.0 / float(a[0, 0]), -1.0 / float(a[1, 1])
            intrinsics.append((fx, fy, -float(a[0, 2]) * fx, float(a[1, 2]) * fy))
            c2ws.append(torch.cat([q, (self.origin_sum[i] / self.count[i])[:, None]], 1).float())
        return seen, torch.stack(c2ws) if c2ws else torch.zeros(0, 3, 4), intrinsics


EmbedFn = Callable[[Tensor, Tensor], Tuple[Tensor, Tensor]]


def build_attacker(opt, hello_meta: Dict[str, object], image_size: Tuple[int, int], server, aabb) -> nn.Module:
    """The session's attacker from its ``ServerOptions`` and Hello: a ``SurrogateAttacker`` (sma), wrapped by
    :class:`ServerSceneAided` (ssma) with the replay settings of the in-process ``splitnerf-ssma``."""
    from s2nerf_ns.attacks.surrogate import SurrogateAttackConfig  # the head's architecture only

    head = hello_meta.get("head")
    if not isinstance(head, dict) or not all(isinstance(v, (int, float)) for v in head.values()):
        raise WireError(f"hello: 'head' (the client head's architecture) is needed by --attack {opt.attack}")
    config = SurrogateAttackConfig(replay_steps=opt.scene_aided[1].replay_steps, replay_buffer_rays=1 << 18) \
        if opt.attack == "ssma" else SurrogateAttackConfig()
    num_images, run_steps = int(hello_meta.get("num_images", 1)), int(hello_meta.get("run_steps") or 1)
    surrogate = config.setup(num_images=num_images, image_height=image_size[0], image_width=image_size[1],
                             head_kwargs=head, background_color=str(hello_meta.get("background_color", "last_sample")),
                             max_steps=run_steps)
    if opt.attack != "ssma":
        return surrogate
    views, options = opt.scene_aided
    return ServerSceneAided(surrogate, views, options, num_images, image_size, unjittered(server), opt.seed,
                            run_steps, torch.tensor(aabb, dtype=torch.float32))


def unjittered(server) -> EmbedFn:
    """The attacker's queries of the session's fields on any rays, without the sampler's jitter (so no draw from
    torch's global generator, which other sessions seed; called under the session's lock)."""
    def embed(origins: Tensor, directions: Tensor) -> Tuple[Tensor, Tensor]:
        server.eval()
        try:
            return server.embed(origins, directions)
        finally:
            server.train()

    return embed


class ServerSceneAided(nn.Module):
    """The session's attacker under ``--attack ssma``: its surrogate observes every applied step as under ``--attack
    sma``; the leaked photos are fitted at the points in training where ``splitnerf-ssma`` fits them."""

    def __init__(self, surrogate, views: LeakedViews, options: SceneAidedOptions, num_images: int,
                 image_size: Tuple[int, int], embed: EmbedFn, seed: int, run_steps: int,
                 scene_box: Optional[Tensor] = None) -> None:
        from s2nerf_ns.attacks.scene_aided import SceneAidedAttacker

        super().__init__()
        self.opt, self.views, self.embed, self.seed, self.run_steps = options, views, embed, seed, run_steps
        self.scene_box = scene_box  # [2, 3]: the box the fields are built on (Hello's arch), the global search's region
        known = views.c2w if options.pose == "known" else None
        self.scene = SceneAidedAttacker(surrogate, views.intrinsics, known, options.leak_weight, options.leak_lr)
        self.training_poses = RayPoses(num_images, *image_size)
        self.register_buffer("finished", torch.tensor(False))
        self.report: Dict[str, object] = {}
        self._pixels = torch.cat([im.reshape(-1, 3) for im in views.images])  # every photo's pixels, in order
        self._sizes = torch.tensor([im.shape[0] * im.shape[1] for im in views.images])
        self._widths = torch.tensor([im.shape[1] for im in views.images])

    @property
    def surrogate(self):
        return self.scene.surrogate

    @property
    def optimizer(self):  # the session checkpoints the surrogate's optimizer and dummies, whichever the attack
        return self.surrogate.optimizer

    @property
    def dummy(self) -> Tensor:
        return self.surrogate.dummy

    def _opt(self):
        return self.surrogate._opt()

    def leak_batch(self, step: int, phase: int = 0):
        """Random pixels of the leaked photos (uniform over all their pixels), seeded by (seed, phase, step)."""
        from s2nerf_ns.attacks.scene_aided import LeakBatch

        gen = torch.Generator().manual_seed((self.seed * 1_000_003 + step) * 4 + phase)
        flat = torch.randint(len(self._pixels), (self.opt.leak_rays_per_step,), generator=gen)
        ends = self._sizes.cumsum(0)
        image = torch.searchsorted(ends, flat, right=True)
        offset, widths = flat - (ends - self._sizes)[image], self._widths[image]
        return LeakBatch(image, offset // widths, offset % widths, self._pixels[flat])

    def observe(self, view) -> None:
        """One applied step: the surrogate model attack, the training poses, and (pose known) a leaked-photo step."""
        self.surrogate.observe(view)
        self.training_poses.observe(view.ray_indices, view.origins, view.directions)
        if self.opt.leak_during_training and bool(self.scene.pose_ready):
            self.scene.leak_step(self.embed, self.leak_batch(view.step))

    def due(self, next_step: int) -> bool:
        return not bool(self.finished) and next_step >= self.run_steps

    @staticmethod
    def start_finish(lock: threading.Lock, work: Callable[[], None]) -> threading.Thread:
        """Run ``work`` (the session's :meth:`finish` and checkpoint) in a thread that takes the session's lock once
        the RPC that holds it has answered."""
        def run() -> None:
            with lock:
                try:
                    work()
                except Exception as err:  # noqa: BLE001 - the server keeps serving; the attack's end is reported
                    print(f"s2nerf-server: the scene-aided attack's after-training phase failed: {err}", flush=True)

        thread = threading.Thread(target=run, name="s2nerf-ssma-finish", daemon=True)
        thread.start()
        return thread

    def finish(self, label: str = "s2nerf-server") -> Dict[str, object]:
        """After the client's last step, as ``SceneAidedAttackPipeline.finish_attack``: pose estimation (with
        ``--pose estimate``), the post-training leaked-photo steps, the replay of received gradients."""
        from s2nerf_ns.attacks.pose.config import attack_search_config

        start, opt, report = time.perf_counter(), self.opt, {"pose": self.opt.pose, "files": self.views.files}
        if opt.pose == "estimate" and not bool(self.scene.pose_ready):
            seen, candidates, _ = self.training_poses.poses()
            if not len(candidates):
                raise RuntimeError("no training rays with pixel indices received: no training pose to search from")
            views = self.scene.estimate_poses(self.embed, self.views.images, candidates,
                                              lambda s: self.leak_batch(s, phase=1), opt.pose_rounds,
                                              opt.pose_refine_steps, opt.pose_fit_steps, search=opt.pose_search,
                                              search_config=attack_search_config(), scene_box=self.scene_box)
            for entry in views:
                if "retrieved_training_view" in entry:
                    entry["retrieved_training_view"] = seen[entry["retrieved_training_view"]]
            report.update(views=views, training_poses_recovered=len(seen))
        surrogate = self.surrogate
        for s in range(opt.post_training_steps):
            self.scene.leak_step(self.embed, self.leak_batch(s, phase=2))
            every = opt.post_training_replay_every
            if every > 0 and s % every == every - 1 and surrogate.replay:
                surrogate.attack_step(surrogate.sample_replay(opt.leak_rays_per_step))
        surrogate.run_replay()
        self.finished.fill_(True)
        self.report = report
        print(f"{label}: scene-aided attack finished ({time.perf_counter() - start:.1f} s: {opt.post_training_steps} "
              f"leaked-photo steps, {surrogate.config.replay_steps} replay steps)", flush=True)
        return report

    def write_report(self, folder: Path) -> None:
        """``attack/leaked_poses.json``: the attacker's poses of the leaked photos (no truth: the evaluator
        scores)."""
        report = {**(self.report or {"pose": self.opt.pose, "files": self.views.files}),
                  "attacker_c2w": self.scene.leak_c2w.tolist(), "finished": bool(self.finished)}
        (Path(folder) / "leaked_poses.json").write_text(json.dumps(report, indent=2, default=str))
