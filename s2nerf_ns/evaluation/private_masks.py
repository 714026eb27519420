"""EVALUATOR: the private-item masks of a dataset (ground truth: which pixels show a private item), as the
``private_*`` scores read them."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import numpy as np
import torch
from PIL import Image


def load_masks(dataset) -> Optional[List[Path]]:
    """The private-item mask files of a nerfstudio dataset, or None when its dataparser has none."""
    outputs = getattr(dataset, "_dataparser_outputs", None)
    files = (getattr(outputs, "metadata", None) or {}).get("private_mask_filenames")
    return list(files) if files else None


def read_mask(path: Path, height: int, width: int) -> torch.Tensor:
    """A boolean H x W private-item mask (255 = private), resized (nearest) to the image when needed."""
    with Image.open(path) as im:
        im = im.convert("L")
        if im.size != (width, height):
            im = im.resize((width, height), Image.NEAREST)
        return torch.from_numpy(np.asarray(im) > 127)
