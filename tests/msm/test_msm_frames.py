"""MSM building blocks that need no motion model: closest-frame search, ablation metric, config checks."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pydantic import ValidationError

from posesyn_core.msm.ablation import format_table, frame_errors
from posesyn_core.msm.config import MsmSection
from posesyn_core.msm.pipeline import closest_frames


def _pose(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 0.3, (22, 3))


def test_closest_frame_is_found_up_to_similarity() -> None:
    target = _pose(0)
    rng = np.random.default_rng(1)
    motion = np.stack([_pose(10 + t) for t in range(8)])  # (L, 22, 3)
    a = np.radians(40)
    rot = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    motion[5] = 1.3 * target @ rot.T + rng.normal(0, 1e-4, (22, 3)) + [0.5, 0, 2]  # rotated, scaled, moved
    best, err = closest_frames(motion[None], target[None])
    assert best.tolist() == [5] and err[0] < 1.0  # mm
    errors = frame_errors(motion[None, None], target[None])
    assert errors.shape == (1, 1, 8) and errors[0, 0].argmin() == 5


def test_config_checks() -> None:
    assert MsmSection().conditioning == "text+mrinit"
    with pytest.raises(ValidationError, match="multiple of 4"):
        MsmSection(num_frames=30)
    with pytest.raises(ValidationError):
        MsmSection(conditioning="image")


def test_format_table() -> None:
    result = {"pseudo_label_mm": 100.0, "num_samples": 3, "min_improvement": 0.2, "mean_improvement": 0.1,
              "variants": {"text+mrinit": {"mean_mm": 90.0, "min_mm": 40.0},
                           "text": {"mean_mm": 100.0, "min_mm": 50.0}},
              "true_pose_mrinit": {"mean_mm": 80.0, "min_mm": 30.0}, "min_improvement_95ci": [0.05, 0.31]}
    table = format_table(result)
    assert "95% interval +5.0% to +31.0%" in table
    assert "| text+mrinit | 90.0 | 40.0 |" in table and "min +20.0%" in table
    assert "| text+mrinit, MR_init from the true pose (bound) | 80.0 | 30.0 |" in table and "min +40.0%" in table
    assert "decoded back" not in table  # no round trip measured: no line
    # a fresh result and the same read back from the report's JSON cache (keys sorted) give the same table
    read_back = json.loads(json.dumps(result, sort_keys=True))
    assert format_table(read_back) == table
    assert table.index("| text |") < table.index("| text+mrinit |")
    result["variants"]["text+mrinit"]["mrinit_roundtrip_mm"] = 108.24
    result["true_pose_mrinit"]["mrinit_roundtrip_mm"] = 96.0
    assert "PA-MPJPE: pseudo-labels 108.2 mm, true poses 96.0 mm;" in format_table(result)
