"""Does error feedback help the 8-bit wire? The error of the server's parameter gradient with and without it.

The client sends dL/dh, the gradient at the cut activations; the server applies J_t^T g_t to its parameters.
8-bit quantisation replaces g_t by Q(g_t); error feedback sends Q(g_t + r_{t-1}) and keeps r_t. For a
parameter gradient (1-bit Adam, PowerSGD) the residuals telescope over steps. Here the entries of h are other
rays every step, so r_{t-1} lands on another ray's entry, through another Jacobian, and need not cancel. This
script measures it on a small split model (fixed weights, random batches; CPU, seconds):

    python scripts/wire_error_feedback.py [--steps 60 --rays 64]
"""

from __future__ import annotations

import argparse

import torch

from nerfstudio.cameras.rays import RayBundle
from nerfstudio.data.scene_box import SceneBox

from s2nerf_ns.integration.model import RAY_INDICES_KEY, SplitNerfModelConfig
from s2nerf_ns.protocol.server import ServerFieldConfig
from s2nerf_ns.transport.wire import decode, encode


def batch(rays: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    bundle = RayBundle(origins=(torch.rand(rays, 3, generator=g) - 0.5) * 0.5,
                       directions=torch.nn.functional.normalize(torch.randn(rays, 3, generator=g), dim=-1),
                       pixel_area=torch.full((rays, 1), 1e-4), camera_indices=torch.zeros(rays, 1, dtype=torch.long),
                       metadata={})
    indices = torch.stack([torch.randint(0, 4, (rays,), generator=g), torch.randint(0, 8, (rays,), generator=g),
                           torch.randint(0, 8, (rays,), generator=g)], dim=-1)
    bundle.metadata[RAY_INDICES_KEY] = indices
    return bundle, {"image": torch.rand(rays, 3, generator=g), "indices": indices}


def q8(grad: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """What the server reads of an 8-bit masked gradient."""
    frame, _ = encode("backward", 0, tensors={"grad_h": grad}, codecs={"grad_h": "masked"}, masks={"grad_h": mask},
                      int8=True)
    return decode(frame, "backward", masks={"grad_h": mask}).tensors["grad_h"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--rays", type=int, default=64)
    args = parser.parse_args()
    torch.manual_seed(0)
    server = ServerFieldConfig(num_levels=4, max_res=64, log2_hashmap_size=12, num_samples=8, hidden_dim=16)
    cfg = SplitNerfModelConfig(server=server, color_hidden_dim=16, run_seed=42, run_steps=100)
    model = cfg.setup(scene_box=SceneBox(aabb=torch.tensor([[-1.0] * 3, [1.0] * 3])), num_train_data=4)
    params = list(model.server.field.parameters())
    held = {}
    send = model.channel.server_sends_embeddings
    model.channel.server_sends_embeddings = lambda h, context: (held.update(h=h), send(h, context))[1]
    model.train()
    sums = {k: [torch.zeros_like(p) for p in params] for k in ("exact", "int8", "int8 + EF")}
    errors = {"int8": [], "int8 + EF": []}
    residual = None
    flat = lambda grads: torch.cat([g.flatten() for g in grads])  # noqa: E731
    for step in range(args.steps):
        model.channel.step = step
        bundle, pixels = batch(args.rays, step)
        out = model(bundle)
        h = held["h"]
        loss = sum(model.get_loss_dict(out, pixels).values())
        grad = torch.autograd.grad(loss, h, retain_graph=True)[0].detach()
        mask = h.detach() != 0
        carried = grad + residual if residual is not None else grad
        sent = {"exact": grad, "int8": q8(grad, mask), "int8 + EF": q8(carried, mask)}
        residual = (carried - sent["int8 + EF"]) * mask
        grads = {k: [g if g is not None else torch.zeros_like(p) for g, p in zip(
            torch.autograd.grad(h, params, grad_outputs=v, retain_graph=True, allow_unused=True), params)]
            for k, v in sent.items()}
        for k in sums:
            for total, g in zip(sums[k], grads[k]):
                total += g
        for k in errors:
            errors[k].append(float((flat(grads[k]) - flat(grads["exact"])).norm() / flat(grads["exact"]).norm()))
    exact = flat(sums["exact"])
    for k in errors:
        print(f"{k}: relative error of the server's parameter gradient: {sum(errors[k]) / len(errors[k]):.2e} per "
              f"step (mean), {float((flat(sums[k]) - exact).norm() / exact.norm()):.2e} summed over {args.steps} steps")


if __name__ == "__main__":
    main()
