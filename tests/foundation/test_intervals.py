"""Paired-bootstrap intervals of a relative gain: what the results tables over samples and over seeds report."""

from __future__ import annotations

import numpy as np
import pytest

from posesyn_core.metrics import improvement_interval


def test_improvement_interval_brackets_the_gain_and_reflects_spread() -> None:
    rng = np.random.default_rng(0)
    baseline = rng.uniform(15, 220, 300)  # hard poses of very unequal difficulty, like the demo's
    assert improvement_interval(0.8 * baseline, baseline) == pytest.approx((0.2, 0.2))  # same ratio in every draw
    noisy = baseline * rng.uniform(0.6, 1.2, 300)
    lo, hi = improvement_interval(noisy, baseline)
    assert lo < 1 - noisy.mean() / baseline.mean() < hi and hi - lo > 0.02
    few_lo, few_hi = improvement_interval(noisy[:30], baseline[:30])
    assert few_hi - few_lo > hi - lo  # fewer samples, wider interval
    assert improvement_interval(noisy, baseline) == (lo, hi)  # seeded
    with pytest.raises(ValueError, match="equal-length"):
        improvement_interval(noisy[:10], baseline)


def test_grouped_draws_keep_every_group_whole() -> None:
    # Two seeds whose samples are alike within a seed: redrawn within their seed, every draw has the same mix,
    # so the interval is a point; pooled freely, the mix (and the gain) varies from draw to draw.
    candidate = np.r_[np.full(100, 1.0), np.full(50, 3.0)]
    baseline = np.r_[np.full(100, 2.0), np.full(50, 3.0)]
    seeds = np.r_[np.zeros(100, int), np.ones(50, int)]
    gain = 1 - candidate.mean() / baseline.mean()
    assert improvement_interval(candidate, baseline, groups=seeds) == pytest.approx((gain, gain))
    lo, hi = improvement_interval(candidate, baseline)
    assert lo < gain < hi and hi - lo > 0.05
    with pytest.raises(ValueError, match="groups"):
        improvement_interval(candidate, baseline, groups=seeds[:10])
