"""Pictures of predictions as RGB arrays (for TensorBoard) and PNG files.

- Sudoku: the grid with its digits; givens on grey, right predictions on white,
  wrong cells on red (with the predicted digit), box borders drawn thicker.
- Maze: walls black, start green, goal red, predicted path blue; label path cells
  the prediction missed in light orange.
- ARC: input | prediction | target in the ARC palette, separated by white bars.

Pillow (already installed with tensorboard) draws the digits and writes PNGs.
"""

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
_WHITE, _GREY, _RED = (255, 255, 255), (215, 215, 215), (255, 150, 150)


def _upscale(grid_rgb: np.ndarray, cell: int) -> np.ndarray:
    return np.repeat(np.repeat(grid_rgb, cell, axis=0), cell, axis=1)


def sudoku_image(inputs: np.ndarray, labels: np.ndarray, preds: np.ndarray, cell: int = 22) -> np.ndarray:
    """Token rows (blank = 1, digit d = d + 1) of an n x n Sudoku."""
    from PIL import Image, ImageDraw

    n = int(round(len(inputs) ** 0.5))
    from hrm.data.sudoku_grid import box_shape

    br, bc = box_shape(n)
    img = Image.new("RGB", (n * cell + 1, n * cell + 1), _WHITE)
    draw = ImageDraw.Draw(img)
    for i in range(n * n):
        r, c = divmod(i, n)
        given = inputs[i] >= 2
        right = preds[i] == labels[i]
        fill = _GREY if given else (_WHITE if right else _RED)
        x0, y0 = c * cell, r * cell
        draw.rectangle([x0, y0, x0 + cell, y0 + cell], fill=fill, outline=(160, 160, 160))
        digit = int(preds[i]) - 1 if not given else int(inputs[i]) - 1
        if 1 <= digit <= 9:
            draw.text((x0 + cell // 3, y0 + cell // 5), str(digit), fill=(0, 0, 0))
    for k in range(0, n + 1):
        if k % br == 0:
            draw.line([0, k * cell, n * cell, k * cell], fill=(0, 0, 0), width=2)
        if k % bc == 0:
            draw.line([k * cell, 0, k * cell, n * cell], fill=(0, 0, 0), width=2)
    return np.asarray(img)


def maze_image(inputs: np.ndarray, labels: np.ndarray, preds: np.ndarray, cell: int = 6) -> np.ndarray:
    from hrm.data import maze_grid as maze

    n = int(round(len(inputs) ** 0.5))
    rgb = np.full((n * n, 3), 255, dtype=np.uint8)
    rgb[inputs == maze.WALL] = (0, 0, 0)
    rgb[(labels == maze.PATH) & (preds != maze.PATH)] = (255, 200, 120)
    rgb[(preds == maze.PATH) & (inputs == maze.OPEN)] = (40, 90, 230)
    rgb[inputs == maze.START] = (20, 180, 60)
    rgb[inputs == maze.GOAL] = (220, 30, 30)
    return _upscale(rgb.reshape(n, n, 3), cell)


def arc_image(inputs: np.ndarray, labels: np.ndarray, preds: np.ndarray, cell: int = 8) -> np.ndarray:
    from hrm.data import arc

    panels = []
    for tokens in (inputs, preds, labels):
        grid = arc.decode(np.asarray(tokens, dtype=np.uint8))
        if grid.size == 0:
            grid = np.zeros((1, 1), dtype=np.int8)
        panels.append(_upscale(ARC_PALETTE[grid.astype(np.int64)], cell))
    h = max(p.shape[0] for p in panels)
    bar = np.full((h, cell, 3), 255, dtype=np.uint8)
    padded = [np.pad(p, ((0, h - p.shape[0]), (0, 0), (0, 0)), constant_values=255) for p in panels]
    return np.concatenate([padded[0], bar, padded[1], bar, padded[2]], axis=1)


def save_png(image: np.ndarray, path: str | Path) -> None:
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)
