"""The motion-train stage on a small synthetic motion set, and the MotionSynthesizer built from its outputs."""

from __future__ import annotations

import hashlib
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from motion_synthetic import synthetic_motion

from posesyn_core.data.motions import MotionClip, write_motions
from posesyn_core.motion.synthesizer import load_motion_model
from posesyn_core.pipeline import RunConfig
from posesyn_core.stages import execute_stage
from posesyn_core.storage import open_store

TINY = {"architecture": "mini", "vq_iterations": 6, "vq_batch_size": 4, "gpt_iterations": 6, "gpt_batch_size": 4,
        "window": 32, "mrinit_frames": 16, "max_motion_tokens": 12, "checkpoint_every": 3, "log_every": 2,
        "mrinit_poses_per_clip": 2}  # fmt: skip


def make_run(root, **section):
    return RunConfig.model_validate({"name": "motion", "root": root.as_uri(), "stages": ["motion-train"],
                                     "device": "cpu", "max_bad_fraction": 0.2,
                                     "motion-train": {**TINY, **section}})  # fmt: skip


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("run")
    store = open_store(root.as_uri())
    words = ["walks forward", "turns around", "waves"]
    clips = [MotionClip(f"c{i:02d}", "synthetic", synthetic_motion(40 + 7 * i, seed=i).astype(np.float32),
                        [f"a person {words[i % 3]}", f"someone {words[i % 3]}"]) for i in range(10)]  # fmt: skip
    clips.append(MotionClip("short", "synthetic", synthetic_motion(5, seed=99).astype(np.float32), ["too short"]))
    write_motions(store, "world/motions", "synthetic", clips)
    result = execute_stage(make_run(root), "motion-train")
    return root, store, result


def test_stage_outputs(trained):
    root, store, result = trained
    assert result.status == "done"
    for key in ("vqvae.pt", "t2m_gpt.pt", "normalization.npz", "losses.jsonl", "metrics.json", "sample.npz"):
        assert store.exists(f"motion-train/{key}"), key
    assert not store.exists("motion-train/ckpt/vqvae.pt") and not store.exists("motion-train/ckpt/gpt.pt")
    m = result.manifest
    assert m["counts"]["clips"] == 10 and m["rejected"] == 1  # the 5-frame clip is quarantined
    assert m["extra"]["vq_recon_mpjpe_mm"] > 0
    phases = [r["phase"] for r in store.read_jsonl("motion-train/losses.jsonl")]
    assert phases == ["vqvae"] * 3 + ["gpt"] * 3
    assert execute_stage(make_run(root), "motion-train").status == "skipped"


@pytest.mark.slow
def test_killed_run_resumes_to_identical_weights(trained, tmp_path):
    """SIGKILL a run after its first transformer checkpoint; the resumed run equals an uninterrupted one."""
    _, store, _ = trained
    roots = [tmp_path / "killed", tmp_path / "straight"]
    for root in roots:
        dst = open_store(root.as_uri())
        for key in store.list("world"):
            dst.write_bytes(key, store.read_bytes(key))
    # Every run in a fresh process: results must not depend on torch state (thread count) left by other tests.
    code = ("import sys; from posesyn_core.stages import execute_stage; sys.path.insert(0, sys.argv[2]); "
            "from test_motion_stage import make_run; from pathlib import Path; "
            "execute_stage(make_run(Path(sys.argv[1]), gpt_iterations=30), 'motion-train')")

    def start(root: Path) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-c", code, str(root), str(Path(__file__).parent)])

    proc = start(roots[0])
    ckpt = roots[0] / "motion-train" / "ckpt" / "gpt.pt"
    deadline = time.monotonic() + 600
    while not ckpt.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert ckpt.exists(), "the run ended before its first transformer checkpoint"
    for root in roots:  # resume the killed run; run the other one straight through
        assert start(root).wait(timeout=600) == 0
    a, b = (open_store(r.as_uri()) for r in roots)
    for key in ("vqvae.pt", "t2m_gpt.pt", "losses.jsonl"):
        digests = [hashlib.sha256(s.read_bytes(f"motion-train/{key}")).hexdigest() for s in (a, b)]
        assert digests[0] == digests[1], f"{key} differs between the resumed and the uninterrupted run"


def test_synthesizer_modes(trained):
    _, store, _ = trained
    synth = load_motion_model(store, "motion-train", "cpu")
    poses = np.stack([synthetic_motion(20, seed=s)[10] for s in range(2)])
    mrinit = synth.encode_poses(poses)
    assert mrinit.shape == (2, 4) and mrinit.dtype == np.int64
    both = synth.sample(["a person waves", "someone walks forward"], mrinit, seed=1, num_samples=2, top_k=20)
    assert len(both) == 4
    assert both == synth.sample(["a person waves", "someone walks forward"], mrinit, seed=1, num_samples=2, top_k=20)
    text_only = synth.sample(["a person waves"], None, seed=2, max_tokens=5, stop_on_end=False)
    mrinit_only = synth.sample(None, mrinit[:1], seed=3, max_tokens=5, stop_on_end=False)
    assert [len(t) for t in text_only + mrinit_only] == [5, 5]
    joints = synth.decode(text_only + mrinit_only + [[]])
    assert [j.shape for j in joints] == [(20, 22, 3), (20, 22, 3), (0, 22, 3)]
    assert all(np.isfinite(j).all() for j in joints)
    with pytest.raises(ValueError, match="texts, mrinit or both"):
        synth.sample(None, None)
