"""Grid augmentations shared by the 2-D tasks (Maze, ARC): the 8 dihedral maps.

Transform k in 0..7: k = 0..3 rotate by k*90 degrees counter-clockwise
(np.rot90), 4 = transpose, 5 = flip left-right, 6 = flip up-down,
7 = anti-transpose. DIHEDRAL_INVERSE[k] undoes k (rotations by 90 and 270
degrees undo each other; the four reflections are their own inverse).
"""

from __future__ import annotations

import numpy as np

DIHEDRAL_INVERSE = (0, 3, 2, 1, 4, 5, 6, 7)


def dihedral(grid: np.ndarray, k: int) -> np.ndarray:
    """Apply dihedral transform `k` to the last two axes of `grid`."""
    if k == 0:
        return grid
    if k in (1, 2, 3):
        return np.rot90(grid, k, axes=(-2, -1))
    if k == 4:
        return np.swapaxes(grid, -2, -1)
    if k == 5:
        return np.flip(grid, -1)
    if k == 6:
        return np.flip(grid, -2)
    if k == 7:
        return np.flip(np.swapaxes(grid, -2, -1), axis=(-2, -1))
    raise ValueError(f"dihedral transform must be in 0..7, got {k}")


def inverse_dihedral(grid: np.ndarray, k: int) -> np.ndarray:
    return dihedral(grid, DIHEDRAL_INVERSE[k])
