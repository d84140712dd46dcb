"""What the tasks' pictures of predictions share (each task draws its own: `hrm.tasks.<name>.picture`):
colours, scaling a grid of RGB cells up, and writing a PNG (Pillow, installed with tensorboard)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

# The usual ARC colours 0..9 (black, blue, red, green, yellow, grey, magenta, orange, azure, maroon).
ARC_PALETTE = np.array(
    [
        [0, 0, 0], [0, 116, 217], [255, 65, 54], [46, 204, 64], [255, 220, 0],
        [170, 170, 170], [240, 18, 190], [255, 133, 27], [127, 219, 255], [135, 12, 37],
    ],
    dtype=np.uint8,
)
WHITE, GREY, RED = (255, 255, 255), (215, 215, 215), (255, 150, 150)


def upscale(grid_rgb: np.ndarray, cell: int) -> np.ndarray:
    return np.repeat(np.repeat(grid_rgb, cell, axis=0), cell, axis=1)


def save_png(image: np.ndarray, path: str | Path) -> None:
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)
