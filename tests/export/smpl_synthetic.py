"""A synthetic SMPL model file in SMPL's own pickle layout (random shape space, one vertex per joint, the rest
scattered around the joints), so code paths that need SMPL run without the licensed model files. Not a human body:
only the layout. It has SMPL's 6890 vertices because smplx reads extra landmarks (nose, toes ...) at fixed vertex
ids."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

SMPL_PARENTS = (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21)
# Rest joints (metres, y up): a standing body; the two hand joints continue the forearms.
_REST = np.array([[0, 0.95, 0], [0.09, 0.9, 0], [-0.09, 0.9, 0], [0, 1.05, 0], [0.1, 0.5, 0], [-0.1, 0.5, 0],
                  [0, 1.2, 0], [0.1, 0.08, 0], [-0.1, 0.08, 0], [0, 1.3, 0], [0.1, 0.02, 0.1], [-0.1, 0.02, 0.1],
                  [0, 1.5, 0], [0.07, 1.42, 0], [-0.07, 1.42, 0], [0, 1.62, 0.02], [0.18, 1.42, 0],
                  [-0.18, 1.42, 0], [0.45, 1.42, 0], [-0.45, 1.42, 0], [0.7, 1.42, 0], [-0.7, 1.42, 0],
                  [0.78, 1.42, 0], [-0.78, 1.42, 0]])  # fmt: skip


def write_synthetic_smpl(path: Path, num_vertices: int = 6890, seed: int = 0) -> Path:
    extra_vertices = num_vertices - 24
    rng = np.random.default_rng(seed)
    extra = _REST[rng.integers(0, 24, extra_vertices)] + rng.normal(0, 0.03, (extra_vertices, 3))
    v_template = np.concatenate([_REST, extra])
    n = len(v_template)
    weights = np.zeros((n, 24))
    weights[np.arange(24), np.arange(24)] = 1
    weights[np.arange(24, n), np.linalg.norm(extra[:, None] - _REST[None], axis=-1).argmin(1)] = 1
    regressor = np.zeros((24, n))
    regressor[np.arange(24), np.arange(24)] = 1  # each joint is its own vertex
    model = {"v_template": v_template, "shapedirs": rng.normal(0, 0.01, (n, 3, 10)),
             "posedirs": np.zeros((n, 3, 207), np.float32), "J_regressor": regressor, "weights": weights,
             "kintree_table": np.array([[2**32 - 1, *SMPL_PARENTS[1:]], list(range(24))]),
             "f": np.array([[i, i + 1, i + 2] for i in range(n - 2)], np.int64)}  # fmt: skip
    path.write_bytes(pickle.dumps(model))
    return path
