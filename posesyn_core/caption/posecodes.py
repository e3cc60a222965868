"""Pose-derived captions: posecodes from a 3D pose -> varied template sentences (in the spirit of PoseScript,
Delmas et al., ECCV 2022: measure angles, relations and contacts, quantize them into categories, say them in
words).

Posecodes measured on the 22 SMPL joints in a y-up frame (camera-frame pseudo-labels are turned upright by
`camera_to_upright`; the camera is assumed roughly level, as in most in-the-wild photos):
- joint angles: knees and elbows (straight / slightly bent / bent / fully bent);
- orientation: the torso's angle to the vertical (upright / leaning / horizontal / upside down) and whether a
  horizontal body faces up or down;
- limb relations: wrists vs head and shoulders (raised overhead / at shoulder height / low), feet apart, one
  foot off the ground, one leg in front (lunge), hands together;
- ground contact: which parts are near the lowest point of the body (feet, knees, hands, pelvis, back/head).
A posture (the sentence's verb: standing, kneeling, squatting, lying, handstand, crawling, lunging, ...) is
derived from those, then sentences are assembled from synonyms so several captions of one pose differ in words.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from posesyn_core.geometry import WORLD_TO_CAMERA_AXES

# SMPL22 indices used here.
PELVIS, L_HIP, R_HIP, L_KNEE, R_KNEE, L_ANKLE, R_ANKLE = 0, 1, 2, 4, 5, 7, 8
L_FOOT, R_FOOT, NECK, HEAD, L_SHOULDER, R_SHOULDER = 10, 11, 12, 15, 16, 17
L_ELBOW, R_ELBOW, L_WRIST, R_WRIST = 18, 19, 20, 21
CONTACT_M = 0.12  # a part within this height of the lowest joint touches the ground


def camera_to_upright(joints_cam: np.ndarray) -> np.ndarray:
    """(…, 22, 3) camera frame (y down) -> y-up frame with each pose's lowest joint on the floor (y = 0).

    Per pose, not per batch: the motion representation holds the root's height, so a lying pose put on the floor of
    a standing pose in the same batch would be encoded as floating at standing height."""
    up = np.asarray(joints_cam, np.float64) @ WORLD_TO_CAMERA_AXES.T  # the flip is its own inverse
    up[..., 1] -= up[..., 1].min(-1, keepdims=True)
    return up


def _angle(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> float:
    """Angle at b (degrees) between b->a and b->c."""
    u, v = a - b, c - b
    cos = np.dot(u, v) / max(np.linalg.norm(u) * np.linalg.norm(v), 1e-9)
    return float(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))


def _bend(angle: float) -> str:
    return "straight" if angle > 155 else "slightly bent" if angle > 125 else "bent" if angle > 75 else "fully bent"


def stature(j: np.ndarray) -> float:
    """Standing height estimated from bone lengths (legs, spine, neck), so it does not shrink in a squat."""

    def bone(a: int, b: int) -> float:
        return float(np.linalg.norm(j[a] - j[b]))

    legs = 0.5 * (bone(L_HIP, L_KNEE) + bone(L_KNEE, L_ANKLE) + bone(R_HIP, R_KNEE) + bone(R_KNEE, R_ANKLE))
    return max(legs + 0.5 * (bone(PELVIS, L_HIP) + bone(PELVIS, R_HIP)) + bone(PELVIS, NECK) + bone(NECK, HEAD), 0.5)


@dataclass
class Posecodes:
    knees: tuple[str, str]  # left, right
    elbows: tuple[str, str]
    torso: str  # upright | leaning | horizontal | upside down
    facing: str | None  # for a horizontal body: up | down
    hands: tuple[str, str]  # overhead | high | shoulder | middle | low, per wrist
    contacts: tuple[str, ...]  # body parts on the ground
    feet_apart: bool
    raised_foot: str | None  # left | right: one foot well off the ground while the other stands
    lunge: bool
    hands_together: bool
    pelvis_height: float  # metres above the lowest joint
    posture: str


def posecodes(joints: np.ndarray) -> Posecodes:
    """Measure one (22, 3) y-up pose (metres)."""
    j = joints - np.array([0.0, joints[:, 1].min(), 0.0])
    y = j[:, 1]
    height = stature(j)
    knees = (_bend(_angle(j[L_HIP], j[L_KNEE], j[L_ANKLE])), _bend(_angle(j[R_HIP], j[R_KNEE], j[R_ANKLE])))
    elbows = (_bend(_angle(j[L_SHOULDER], j[L_ELBOW], j[L_WRIST])),
              _bend(_angle(j[R_SHOULDER], j[R_ELBOW], j[R_WRIST])))  # fmt: skip
    spine = j[NECK] - j[PELVIS]
    tilt = float(np.degrees(np.arccos(np.clip(spine[1] / max(np.linalg.norm(spine), 1e-9), -1, 1))))
    torso = "upright" if tilt < 30 else "leaning" if tilt < 60 else "horizontal" if tilt < 125 else "upside down"
    facing = None
    if torso == "horizontal":
        # Body normal: shoulder axis x spine (right-handed, SMPL left is +x of the subject).
        normal = np.cross(j[L_SHOULDER] - j[R_SHOULDER], spine)
        facing = "up" if normal[1] > 0 else "down"

    def hand(w: int, s: int) -> str:
        if y[w] > y[HEAD] + 0.05:
            return "overhead"
        if y[w] > y[s] + 0.1:
            return "high"
        if y[w] > y[s] - 0.15:
            return "shoulder"
        return "middle" if y[w] > y[PELVIS] else "low"

    hands = (hand(L_WRIST, L_SHOULDER), hand(R_WRIST, R_SHOULDER))
    near = y < CONTACT_M
    parts = {"feet": near[[L_ANKLE, R_ANKLE, L_FOOT, R_FOOT]].any(), "knees": near[[L_KNEE, R_KNEE]].any(),
             "hands": near[[L_WRIST, R_WRIST]].any(), "pelvis": near[[PELVIS, L_HIP, R_HIP]].any(),
             "head": near[[HEAD, NECK]].any()}  # fmt: skip
    contacts = tuple(k for k, v in parts.items() if v)
    foot_l, foot_r = min(y[L_ANKLE], y[L_FOOT]), min(y[R_ANKLE], y[R_FOOT])
    raised = None
    if abs(foot_l - foot_r) > 0.2 * height and min(foot_l, foot_r) < CONTACT_M:
        raised = "left" if foot_l > foot_r else "right"
    feet_apart = float(np.linalg.norm((j[L_ANKLE] - j[R_ANKLE])[[0, 2]])) > 0.45 * height
    # Lunge: one knee bent over its foot, the other leg straight behind, feet far apart along the body's depth.
    forward = np.cross(j[L_HIP] - j[R_HIP], np.array([0.0, 1.0, 0.0]))
    depth = float(np.dot(j[L_ANKLE] - j[R_ANKLE], forward / max(np.linalg.norm(forward), 1e-9)))
    lunge = abs(depth) > 0.35 * height and {"bent", "fully bent"} & set(knees) != set() and "straight" in knees
    hands_together = float(np.linalg.norm(j[L_WRIST] - j[R_WRIST])) < 0.12 * height
    pelvis_h = float(y[PELVIS])
    codes = Posecodes(knees, elbows, torso, facing, hands, contacts, feet_apart, raised, bool(lunge), hands_together,
                      pelvis_h, "")  # fmt: skip
    codes.posture = _posture(codes, height)
    return codes


def _posture(c: Posecodes, height: float) -> str:
    contacts = set(c.contacts)
    if c.torso == "upside down":  # head below the pelvis: on the hands, or folded forward over the feet
        if "feet" in contacts:
            return "hands and feet on the floor" if "hands" in contacts else "bending forward"
        return "handstand" if "hands" in contacts else "upside down"
    if c.torso == "horizontal":
        if "pelvis" in contacts or "head" in contacts:
            return "lying on the back" if c.facing == "up" else "lying face down"
        if "hands" in contacts and "knees" in contacts:
            return "on all fours"
        if "hands" in contacts and "feet" in contacts:
            return "plank" if c.facing == "down" and "straight" in c.knees else "hands and feet on the floor"
        return "bending forward"
    if "knees" in contacts:
        return "kneeling"
    if "pelvis" in contacts:
        return "sitting on the ground"
    bent = sum(k in ("bent", "fully bent") for k in c.knees)
    if bent == 2 and c.pelvis_height < 0.4 * height:
        return "squatting"
    if c.lunge:
        return "lunging"
    if c.torso == "leaning":
        return "bending forward" if "straight" in c.knees else "crouching"
    if c.raised_foot:
        return "standing on one leg"
    if bent == 2:
        return "crouching"
    return "standing"


# Synonyms per phrase, so captions of the same pose differ in wording.
_SUBJECT = ("a person", "someone", "a man", "a woman", "the person")
_POSTURE = {
    "handstand": ("is doing a handstand", "balances upside down on the hands", "stands on their hands"),
    "upside down": ("is upside down", "is flipped upside down", "turns upside down in the air"),
    "lying on the back": ("is lying on the back", "lies on the floor facing up", "is lying down on their back"),
    "lying face down": ("is lying face down", "lies on the stomach", "is lying prone on the ground"),
    "on all fours": ("is on all fours", "crawls on hands and knees", "is down on hands and knees"),
    "plank": ("is in a push-up position", "holds a plank on the floor", "does a push-up"),
    "hands and feet on the floor": ("bends forward with the hands on the floor",
                                    "makes an inverted V shape with hands and feet on the floor",
                                    "folds forward at the hips touching the floor"),
    "bending forward": ("bends forward", "is bending over", "leans far forward at the waist"),
    "kneeling": ("is kneeling", "kneels down", "is down on the knees"),
    "sitting on the ground": ("sits on the ground", "is sitting on the floor", "is seated on the ground"),
    "squatting": ("squats down", "is in a deep squat", "crouches low in a squat"),
    "lunging": ("does a lunge", "is lunging forward", "steps into a deep lunge"),
    "crouching": ("crouches", "is crouching with bent knees", "bends the knees and crouches"),
    "standing on one leg": ("stands on one leg", "balances on one foot", "is standing with one foot raised"),
    "standing": ("is standing", "stands", "is standing upright"),
}
_ARMS = {
    ("overhead", "overhead"): ("with both arms raised overhead", "with both hands above the head",
                               "reaching up with both arms"),
    "overhead": ("with the {side} arm raised above the head", "raising the {side} hand overhead"),
    ("high", "high"): ("with both arms raised", "holding both arms up"),
    "high": ("with the {side} arm up", "lifting the {side} arm"),
    ("shoulder", "shoulder"): ("with the arms out at shoulder height", "holding the arms out to the sides"),
}


def _arm_phrase(c: Posecodes, rng: np.random.Generator, plain: bool) -> str | None:
    """The arms' phrase; `plain` takes the first wording of each list instead of a random one."""

    def pick(options: tuple[str, ...]) -> str:
        return options[0] if plain else str(rng.choice(options))

    pair = c.hands
    if pair in _ARMS:
        return pick(_ARMS[pair])
    for level in ("overhead", "high"):
        if level in pair:
            return pick(_ARMS[level]).format(side="left" if pair[0] == level else "right")
    if c.hands_together:
        return pick(("with the hands together", "holding the hands close together"))
    return None


def _details(c: Posecodes) -> list[str]:
    out = []
    for side, k in zip(("left", "right"), c.knees, strict=True):
        if k in ("bent", "fully bent") and c.posture not in ("kneeling", "squatting", "crouching"):
            out.append(f"the {side} knee is {k}")
    for side, e in zip(("left", "right"), c.elbows, strict=True):
        if e == "fully bent":
            out.append(f"the {side} elbow is fully bent")
    if c.raised_foot and c.posture != "standing on one leg":
        out.append(f"the {c.raised_foot} foot is off the ground")
    if c.feet_apart and c.posture in ("standing", "crouching", "squatting"):
        out.append("the feet are wide apart")
    if c.torso == "leaning" and c.posture not in ("bending forward", "crouching"):
        out.append("the upper body leans")
    if "hands" in c.contacts and c.posture not in ("handstand", "on all fours", "plank", "hands and feet on the floor"):
        out.append("a hand touches the ground")
    return out


def describe(codes: Posecodes, rng: np.random.Generator, n: int = 3) -> list[str]:
    """n different sentences for one pose; the first is the plainest (subject, posture, arms)."""
    captions: list[str] = []
    details = _details(codes)
    for k in range(n * 4):
        if len(captions) == n:
            break
        subject = _SUBJECT[0] if k == 0 else str(rng.choice(_SUBJECT))
        verb = _POSTURE[codes.posture][0] if k == 0 else str(rng.choice(_POSTURE[codes.posture]))
        arms = _arm_phrase(codes, rng, plain=k == 0)
        text = f"{subject} {verb}" + (f" {arms}" if arms else "")
        if details and k > 0:
            picked = rng.choice(len(details), size=min(len(details), 1 + k % 2), replace=False)
            text += ", " + " and ".join(details[i] for i in sorted(picked))
        text = text[0].upper() + text[1:] + "."
        if text not in captions:
            captions.append(text)
    return captions


def caption_pose(joints_cam: np.ndarray, rng: np.random.Generator, n: int = 3) -> tuple[list[str], Posecodes]:
    """Captions for a camera-frame (22, 3) pseudo-label."""
    codes = posecodes(camera_to_upright(joints_cam))
    return describe(codes, rng, n), codes


def describe_key_frame(joints: np.ndarray, rng: np.random.Generator, n: int = 2) -> list[str]:
    """Posture sentences for a motion clip (T, 22, 3) y-up: its key frame is the one furthest from the first
    (most clips start from a neutral stance and move into their characteristic pose)."""
    rel = joints - joints[:, :1]
    key = int(np.linalg.norm(rel - rel[:1], axis=-1).mean(-1).argmax())
    return describe(posecodes(joints[key]), rng, n)
