"""Shared tiny configurations (CPU, seconds)."""

from __future__ import annotations

import os

# Tiny rooms rendered by the tests are cached here (never in the user's home cache).
os.environ.setdefault("S2NERF_CACHE", os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".pytest_cache", "rooms")))

import pytest
import torch

from nerfstudio.cameras.rays import RayBundle
from nerfstudio.data.scene_box import SceneBox

from s2nerf_ns.integration.model import RAY_INDICES_KEY, SplitNerfModelConfig, replace_model

TINY = dict(num_levels=4, max_res=64, log2_hashmap_size=12, num_samples=8, hidden_dim=16, color_hidden_dim=16,
            run_seed=42, run_steps=100)


def tiny_model(**overrides):
    torch.manual_seed(0)
    cfg = replace_model(SplitNerfModelConfig(), **{**TINY, **overrides})  # server fields go to cfg.server
    box = SceneBox(aabb=torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]]))
    return cfg.setup(scene_box=box, num_train_data=4)


def random_batch(num_rays: int = 32, seed: int = 0):
    """Rays from inside the unit box, with random pixels and pixel indices."""
    g = torch.Generator().manual_seed(seed)
    origins = (torch.rand(num_rays, 3, generator=g) - 0.5) * 0.5
    directions = torch.nn.functional.normalize(torch.randn(num_rays, 3, generator=g), dim=-1)
    bundle = RayBundle(
        origins=origins,
        directions=directions,
        pixel_area=torch.full((num_rays, 1), 1e-4),
        camera_indices=torch.zeros(num_rays, 1, dtype=torch.long),
        metadata={},
    )
    indices = torch.stack([torch.randint(0, 4, (num_rays,), generator=g), torch.randint(0, 8, (num_rays,), generator=g),
                           torch.randint(0, 8, (num_rays,), generator=g)], dim=-1)
    bundle.metadata[RAY_INDICES_KEY] = indices
    batch = {"image": torch.rand(num_rays, 3, generator=g), "indices": indices}
    return bundle, batch


@pytest.fixture(scope="session", autouse=True)
def error_printers():
    """Every command installs the one-line error printers before it parses its command line (each console script's
    main, and the plugin module nerfstudio's ns-* commands load); in-process tests that parse a command line call
    tyro directly, so the suite installs them the same way, once."""
    from s2nerf_ns.errors import install

    install()


@pytest.fixture
def tiny_model_factory():
    return tiny_model


@pytest.fixture(scope="module")
def one_thread():
    """On a shared CPU, intra-op threads only add contention to tiny runs: one thread per module, restored after."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
