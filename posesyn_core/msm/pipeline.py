"""Motions around hard poses: pseudo-label -> MR_init -> N sampled token sequences -> joints -> closest frame.

The motion model is passed in (`posesyn_core.motion.synthesizer.MotionSynthesizer` or anything with its
interface):
    encode_poses(joints (B, 22, 3) world frame) -> (B, T // 4) VQ indices of each pose held still for T frames
        (T = the model's `mrinit_frames`, the length of the transformer's MR_init prefix)
    sample(texts, mrinit (B, M) | None, max_tokens, temperature, top_k, top_p, seed, stop_on_end) -> B token lists
    decode(tokens) -> B joint arrays (4 * tokens, 22, 3), HumanML3D's canonical world frame
    token_log_likelihood(texts, mrinit, tokens) -> (B,) mean log-likelihood per token (for the consistency check)
so the same pipeline runs a trained mini-world model or the public T2M-GPT weights. Motions have a fixed length
(the end token is never drawn), which batches them and lets every motion be compared frame by frame.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from posesyn_core.caption.posecodes import camera_to_upright
from posesyn_core.eem.pseudo_label import FitTo2d, fit_to_2d
from posesyn_core.metrics import pa_mpjpe
from posesyn_core.msm.config import Conditioning
from posesyn_core.msm.mrinit import choose_depth_signs, mrinit_roundtrip


@dataclass
class MsmOutput:
    motions: np.ndarray  # (B, N, L, 22, 3) world frame, metres
    best_frame: np.ndarray  # (B, N) index of the frame closest to the hard pose
    best_pa_mpjpe: np.ndarray  # (B, N) PA-MPJPE (mm) of that frame vs the pseudo-label
    texts: list[list[str]]  # (B, N) the text each motion was conditioned on ("" when text is off)
    mrinit_codes: np.ndarray | None = None  # (B, T/4) MR_init VQ indices (None without MR_init)
    mrinit_roundtrip: np.ndarray | None = None  # (B,) PA-MPJPE (mm) of those codes decoded vs the pose
    caption_scores: np.ndarray | None = None  # (B, N) `caption_scores` (None: not asked for)


def pseudo_labels(rows: Sequence[dict], fit: FitTo2d = "lift") -> np.ndarray:
    """(B, 22, 3) camera-frame pseudo-labels of challenging rows, made to agree with their GT 2D keypoints as
    `fit` says (`eem.pseudo_label.fit_to_2d`)."""
    poses = [fit_to_2d(np.asarray(r["joints3d"], np.float64), r.get("joints2d"), r.get("joint_set", "smpl22"), fit)
             for r in rows]  # fmt: skip
    return np.stack(poses) if poses else np.zeros((0, 22, 3))


def caption_scores(synthesizer, texts: list[list[str]], mrinit: np.ndarray | None,  # noqa: ANN001
                   tokens: Sequence[Sequence[int]], distractors: int) -> np.ndarray:  # fmt: skip
    """(B, N) how much better each motion's own text explains it than other poses' texts do, in the motion model's
    own text space: mean log-likelihood per token under its text minus the mean over `distractors` texts of the
    next poses in the batch (same motion index k, same MR_init). Above 0: the text moved the motion towards it;
    at or below 0 the motion has drifted from its caption. NaN where there is no text or no other pose."""
    b, n = len(texts), len(texts[0]) if texts else 0
    scores = np.full((b, n), np.nan)
    d = min(distractors, b - 1)
    if d < 1 or not all(t for row in texts for t in row):
        return scores
    prefix = None if mrinit is None else np.repeat(mrinit, n, 0)
    own = synthesizer.token_log_likelihood([t for row in texts for t in row], prefix, tokens).reshape(b, n)
    others = [synthesizer.token_log_likelihood([texts[(i + j) % b][k] for i in range(b) for k in range(n)], prefix,
                                               tokens).reshape(b, n) for j in range(1, d + 1)]  # fmt: skip
    return own - np.mean(others, 0)


def closest_frames(motions: np.ndarray, pose: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """motions (..., L, 22, 3), pose (..., 22, 3) -> (index (...), PA-MPJPE mm (...)) of the closest frame."""
    err = pa_mpjpe(motions, pose[..., None, :, :])  # (..., L)
    best = err.argmin(-1)
    return best, np.take_along_axis(err, best[..., None], -1)[..., 0]


class MotionSynthesisPipeline:
    """Components in the constructor, work in `__call__` (numbered steps), inputs checked first."""

    def __init__(self, synthesizer, conditioning: Conditioning = "text+mrinit", num_motions: int = 4,  # noqa: ANN001
                 num_frames: int = 64, temperature: float = 1.0, top_k: int | None = None,
                 top_p: float | None = None, search_depth_signs: bool = False,
                 caption_distractors: int = 0):  # fmt: skip
        self.synthesizer = synthesizer
        self.conditioning, self.num_motions, self.num_frames = conditioning, num_motions, num_frames
        self.temperature, self.top_k, self.top_p = temperature, top_k, top_p
        self.search_depth_signs = search_depth_signs  # msm.mrinit.choose_depth_signs before MR_init
        self.caption_distractors = caption_distractors  # > 0: score motions against their captions

    def check_inputs(self, poses_cam: np.ndarray, captions: Sequence[Sequence[str]]) -> None:
        if poses_cam.ndim != 3 or poses_cam.shape[1:] != (22, 3):
            raise ValueError(f"poses_cam: expected (B, 22, 3), got {poses_cam.shape}")
        if not np.isfinite(poses_cam).all():
            raise ValueError("poses_cam: non-finite joint positions")
        if len(captions) != len(poses_cam):
            raise ValueError(f"captions: {len(captions)} lists for {len(poses_cam)} poses")
        if "text" in self.conditioning and any(not c for c in captions):
            raise ValueError(f"captions: every pose needs at least one caption for conditioning {self.conditioning!r}")

    def texts_for(self, captions: Sequence[Sequence[str]], cycle: bool = True) -> list[list[str]]:
        """(B, N) texts: caption k mod count for motion k (or always the first), '' when text is off."""
        if "text" not in self.conditioning:
            return [[""] * self.num_motions for _ in captions]
        return [[c[k % len(c)] if cycle else c[0] for k in range(self.num_motions)] for c in captions]

    def __call__(self, poses_cam: np.ndarray, captions: Sequence[Sequence[str]], seed: int,
                 cycle_captions: bool = True) -> MsmOutput:  # fmt: skip
        # 1. Check inputs
        poses_cam = np.asarray(poses_cam, np.float64)
        self.check_inputs(poses_cam, captions)
        b, n = len(poses_cam), self.num_motions

        # 2. Pseudo-labels (root-relative camera frame): depth signs the motion model reproduces best, if asked;
        #    -> world frame: y up, lowest joint on the floor
        if self.search_depth_signs:
            poses_cam = choose_depth_signs(self.synthesizer, poses_cam)
        poses = camera_to_upright(poses_cam)  # (B, 22, 3); root-relative input keeps the root at x = z = 0

        # 3. MR_init: the pose repeated over T frames, encoded to T/4 VQ indices (and how well they decode back)
        mrinit = roundtrip = None
        if "mrinit" in self.conditioning:
            mrinit = np.asarray(self.synthesizer.encode_poses(poses))  # (B, T/4)
            roundtrip = mrinit_roundtrip(self.synthesizer, mrinit, poses)

        # 4. Sample N token sequences per pose: texts repeat prompt-major, like the sampler's rows
        texts = self.texts_for(captions, cycle_captions)
        tokens = self.synthesizer.sample([t for row in texts for t in row],
                                         None if mrinit is None else np.repeat(mrinit, n, 0),
                                         max_tokens=self.num_frames // 4, temperature=self.temperature,
                                         top_k=self.top_k, top_p=self.top_p, seed=seed, stop_on_end=False)  # fmt: skip

        # 5. Decode to joints (B * N, L, 22, 3) -> (B, N, L, 22, 3)
        joints = np.stack(self.synthesizer.decode(tokens)).astype(np.float64)
        motions = joints.reshape(b, n, *joints.shape[1:])

        # 6. The frame of each motion closest to its hard pose (shape only: PA-MPJPE)
        best, err = closest_frames(motions, poses[:, None])

        # 7. If asked, how well each motion's caption explains it compared with other poses' captions
        scores = None
        if self.caption_distractors:
            scores = caption_scores(self.synthesizer, texts, mrinit, tokens, self.caption_distractors)
        return MsmOutput(motions.astype(np.float32), best, err, texts, mrinit, roundtrip, scores)
