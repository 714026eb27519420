"""The density MLP of the split NeRF and where it is cut."""

from __future__ import annotations

from typing import List

from torch import nn

from s2nerf_ns.errors import InputError


def linear_stack(dims: List[int], final_activation: bool, bias: bool = False) -> nn.Sequential:
    """Linear layers ``dims[0] -> dims[1] -> ...`` with ReLU between them (and after the last if asked)."""
    layers: List[nn.Module] = []
    for i in range(len(dims) - 1):
        layers.append(nn.Linear(dims[i], dims[i + 1], bias=bias))
        if i < len(dims) - 2 or final_activation:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def check_cut_depth(cut_depth: int, num_density_layers: int) -> None:
    """The server keeps the first ``cut_depth`` layers; the client must keep at least the last one."""
    if num_density_layers < 1:
        raise InputError(f"--pipeline.model.num-density-layers {num_density_layers}: must be >= 1")
    if not 0 <= cut_depth <= num_density_layers - 1:
        raise InputError(
            f"--pipeline.model.cut-depth {cut_depth} is impossible: the density MLP has {num_density_layers} "
            f"layer(s) (--pipeline.model.num-density-layers) and the client must keep at least the last one, so "
            f"0 <= --pipeline.model.cut-depth <= {num_density_layers - 1}"
        )


def density_mlp_dims(in_dim: int, width: int, num_layers: int, out_dim: int) -> List[int]:
    """Layer sizes of the full density MLP: ``in_dim -> width -> ... -> out_dim`` with ``num_layers`` layers."""
    return [in_dim] + [width] * (num_layers - 1) + [out_dim]
