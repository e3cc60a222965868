"""The motion library: parametric generators of human motion clips with texts, posed through the body model.

Each family (walk, squat, cartwheel, downward dog ...) draws its style from a seeded generator (speed,
amplitude, direction, arm style ...) and writes pose parameters per frame in the body-model convention
(`body/base.py`: world-aligned axis-angle, T-pose at zero). `make_clip` then:

1. clamps the pose into `JOINT_LIMITS` and runs forward kinematics of the subject's skeleton (bone lengths stay
   exactly constant);
2. grounds every frame: the lowest body surface (joint minus its surface clearance `CLEARANCE`) touches the floor
   y = 0, plus any ballistic lift (jumps); no frame penetrates the floor;
3. moves the root horizontally so the supporting contact stays where it was planted (gaits schedule their
   support foot; other families use the lowest foot, hand or knee): walking, crawling and cartwheels travel
   because their contacts push, without foot skating.

Clips are 20 fps joint sequences in the world frame (y up, metres, SMPL22), with 3 different action texts each
(the world stage adds posture sentences of the key frame).
`common` families are what a lab capture would hold (upright everyday motions); the others appear only in
the wild sets, so a pose estimator trained on lab data meets them first there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.spatial.transform import Rotation

from posesyn_core.body import RestSkeleton, clamp_to_limits, skeleton_fk
from posesyn_core.data.motions import FPS
from posesyn_core.skeleton import NUM_JOINTS, SMPL22

J = {name: i for i, name in enumerate(SMPL22)}
# Distance from each joint to the body surface below it when that part rests on the floor (metres); the ankle
# and foot values are ANNY's standing heights, so a flat-footed stance grounds at the sole.
CLEARANCE = np.array([0.10, 0.09, 0.09, 0.10, 0.05, 0.05, 0.10, 0.073, 0.073, 0.10, 0.028, 0.028, 0.06, 0.07,
                      0.07, 0.10, 0.06, 0.06, 0.04, 0.04, 0.03, 0.03])  # fmt: skip
CONTACTS = (J["left_ankle"], J["right_ankle"], J["left_foot"], J["right_foot"], J["left_wrist"], J["right_wrist"],
            J["left_knee"], J["right_knee"])  # fmt: skip
CONTACT_TOL = 0.02  # a contact joint within 2 cm of the floor supports the body


def _side(side: str) -> float:
    return 1.0 if side == "left" else -1.0


class Poser:
    """Builds one clip's pose track: (T, 21, 3) body pose, global yaw/pitch/roll, ballistic lift.

    Angles are arrays over frames (or scalars). Sagittal angles are tracked so `plant_feet` can keep the feet
    flat on the floor whatever the hips, knees and pelvis do."""

    def __init__(self, rng: np.random.Generator, num_frames: int):
        self.rng, self.T = rng, num_frames
        self.t = np.arange(num_frames) / FPS  # seconds
        self.rot = np.zeros((num_frames, NUM_JOINTS, 3))  # index 0 unused (the root is global_orient)
        self.yaw = np.zeros(num_frames)
        self.pitch = np.zeros(num_frames)  # + leans the whole body forward (face down)
        self.roll = np.zeros(num_frames)  # + tips the body towards its right side
        self.lift = np.zeros(num_frames)
        self.stance: np.ndarray | None = None  # (T,) supporting joint per frame, when the family schedules it
        self.hip_flex = {"left": np.zeros(num_frames), "right": np.zeros(num_frames)}
        self.knee_flex = {"left": np.zeros(num_frames), "right": np.zeros(num_frames)}
        self.meta: dict = {}

    # -- timing helpers ------------------------------------------------------------------------------------
    def u(self, lo: float, hi: float) -> float:
        return float(self.rng.uniform(lo, hi))

    def wave(self, freq: float, phase: float = 0.0) -> np.ndarray:
        return np.sin(2 * np.pi * freq * self.t + phase)

    def ease(self, start: float = 0.0, duration: float = 1.0, back: float | None = None) -> np.ndarray:
        """0 -> 1 smoothstep starting at `start` s over `duration` s; back to 0 from `back` s if given."""
        x = np.clip((self.t - start) / max(duration, 1e-3), 0, 1)
        e = x * x * (3 - 2 * x)
        if back is not None:
            y = np.clip((self.t - back) / max(duration, 1e-3), 0, 1)
            e = e * (1 - y * y * (3 - 2 * y))
        return e

    # -- joints --------------------------------------------------------------------------------------------
    def add(self, joint: str, rotvec: np.ndarray) -> None:
        """Compose a rotation (T, 3) or (3,) onto a joint's current rotation (applied in its local frame)."""
        j = J[joint]
        r = np.broadcast_to(np.asarray(rotvec, np.float64), (self.T, 3)).copy()
        self.rot[:, j] = (Rotation.from_rotvec(self.rot[:, j]) * Rotation.from_rotvec(r)).as_rotvec()

    @staticmethod
    def _axis(axis: int, angle) -> np.ndarray:
        angle = np.asarray(angle, np.float64)
        v = np.zeros(angle.shape + (3,))
        v[..., axis] = angle
        return v

    def hip(self, side: str, flex=0.0, abduct=0.0, twist=0.0) -> None:
        """Thigh forward (`flex`), outward (`abduct`), turned outward about its own axis (`twist`), composed in
        that order (flexion outermost) so large combined angles keep their meaning (cross-legged sitting)."""
        s = _side(side)
        self.hip_flex[side] = self.hip_flex[side] + flex
        for axis, angle in ((0, -np.asarray(flex)), (2, s * np.asarray(abduct)), (1, s * np.asarray(twist))):
            if np.any(angle):
                self.add(f"{side}_hip", self._axis(axis, angle))

    def knee(self, side: str, flex) -> None:
        self.knee_flex[side] = self.knee_flex[side] + flex
        self.add(f"{side}_knee", self._axis(0, flex))

    def ankle(self, side: str, plantar) -> None:
        self.add(f"{side}_ankle", self._axis(0, plantar))

    def plant_feet(self, sides: tuple[str, ...] = ("left", "right"), extra=0.0) -> None:
        """Ankles that keep the feet level with the floor given pelvis pitch, hip and knee flexion."""
        for side in sides:
            angle = self.hip_flex[side] - self.pitch - self.knee_flex[side] + extra
            self.ankle(side, np.clip(angle, -0.8, 0.9))

    def spine(self, flex=0.0, twist=0.0, lateral=0.0) -> None:
        """Bend forward (`flex`), turn left (`twist`), bend towards the left (`lateral`), over three joints."""
        for name, w in (("spine1", 0.4), ("spine2", 0.3), ("spine3", 0.3)):
            v = self._axis(0, w * np.asarray(flex)) + self._axis(1, w * np.asarray(twist))
            self.add(name, v + self._axis(2, -w * np.asarray(lateral)))

    def look(self, down=0.0, turn=0.0, tilt=0.0) -> None:
        for name, w in (("neck", 0.5), ("head", 0.5)):
            v = self._axis(0, w * np.asarray(down)) + self._axis(1, w * np.asarray(turn))
            self.add(name, v + self._axis(2, -w * np.asarray(tilt)))

    def arm(self, side: str, swing=0.0, abduct=0.0, twist=0.0, elbow=0.0, shrug=0.0) -> None:
        """Arm direction from hanging down: `swing` forward in the sagittal plane (pi = straight up in front),
        `abduct` out to the side (pi/2 = horizontal); `elbow` flexion; `shrug` raises the collar bone."""
        s = _side(side)
        swing = np.broadcast_to(np.asarray(swing, np.float64), (self.T,)).copy()
        abduct = np.broadcast_to(np.asarray(abduct, np.float64), (self.T,)).copy()
        d = np.stack([s * np.sin(abduct), -np.cos(abduct) * np.cos(swing), np.cos(abduct) * np.sin(swing)], -1)
        rest = np.array([s, 0.0, 0.0])
        axis = np.cross(rest, d)
        sin = np.linalg.norm(axis, axis=-1, keepdims=True)
        angle = np.arctan2(sin[:, 0], d @ rest)
        rotvec = axis / np.maximum(sin, 1e-9) * angle[:, None]
        self.add(f"{side}_shoulder", rotvec)
        if np.any(twist):
            self.add(f"{side}_shoulder", self._axis(0, s * np.asarray(twist)))
        if np.any(elbow):
            self.add(f"{side}_elbow", self._axis(1, -s * np.asarray(elbow)))
        if np.any(shrug):
            self.add(f"{side}_collar", self._axis(2, s * np.asarray(shrug)))

    def wrist(self, side: str, flex) -> None:
        self.add(f"{side}_wrist", self._axis(2, _side(side) * np.asarray(flex)))

    def relaxed_arms(self, amount=1.0) -> None:
        """Arms hanging by the sides (the default of most standing motions)."""
        for side in ("left", "right"):
            self.arm(side, swing=0.05 * amount, abduct=self.u(0.08, 0.2) * amount, elbow=self.u(0.05, 0.3) * amount)

    def global_orient(self) -> np.ndarray:
        """(T, 3) axis-angle: heading (yaw about y), then pitch (about x) and roll (about z) in the body frame."""
        r = Rotation.from_rotvec(self._axis(1, self.yaw)) * Rotation.from_rotvec(self._axis(0, self.pitch))
        return (r * Rotation.from_rotvec(self._axis(2, -self.roll))).as_rotvec()


@dataclass(frozen=True)
class Family:
    name: str
    common: bool  # in lab captures; otherwise wild only
    make: Callable[[Poser], dict]  # fills the poser, returns text slots
    texts: tuple[str, ...]  # templates with {slots}
    duration: tuple[float, float] = (2.5, 5.0)  # seconds


FAMILIES: dict[str, Family] = {}


def family(name: str, common: bool, texts: tuple[str, ...], duration: tuple[float, float] = (2.5, 5.0)):
    def register(make: Callable[[Poser], dict]) -> Callable[[Poser], dict]:
        FAMILIES[name] = Family(name, common, make, texts, duration)
        return make

    return register


def _speed_word(x: float, lo: float, hi: float) -> str:
    return "slowly" if x < lo + (hi - lo) / 3 else "quickly" if x > hi - (hi - lo) / 3 else "steadily"


def _turn(p: Poser) -> tuple[float, str]:
    """A heading rate (rad/s) and its words: straight most of the time, sometimes curving."""
    k = p.rng.random()
    if k < 0.6:
        return 0.0, "forward"
    rate = p.u(0.3, 0.8)
    return (rate, "in a curve to the left") if k < 0.8 else (-rate, "in a curve to the right")


def _gait(p: Poser, freq: float, hip_amp: float, knee_amp: float, arm_amp: float, elbow: float, lean: float) -> None:
    """A walking/running cycle: legs in antiphase, knees flex in swing, arms swing opposite to the legs. A foot
    is the support while its hip extends (cos(phase) < 0): the schedule drives the horizontal travel."""
    left_phase = 2 * np.pi * freq * p.t
    p.stance = np.where(np.cos(left_phase) < 0, J["left_ankle"], J["right_ankle"])
    for side, ph in (("left", 0.0), ("right", np.pi)):
        phase = 2 * np.pi * freq * p.t + ph
        p.hip(side, flex=hip_amp * np.sin(phase) + 0.1 * knee_amp)
        p.knee(side, 0.1 + knee_amp * np.maximum(0, np.cos(phase)))
        p.arm(side, swing=-arm_amp * np.sin(phase), abduct=0.12, elbow=elbow)
    p.pitch += lean
    p.plant_feet(extra=0.0)
    p.spine(twist=0.08 * np.sin(2 * np.pi * freq * p.t))


@family("walk", True, ("a person walks {dir} {speed}", "someone is walking {dir}", "a person takes a walk {dir}",
                       "a man strolls {dir} at a {pace} pace"))
def _walk(p: Poser) -> dict:
    freq = p.u(0.75, 1.05)
    rate, direction = _turn(p)
    p.yaw += rate * p.t
    _gait(p, freq, p.u(0.45, 0.65), p.u(0.5, 0.75), p.u(0.2, 0.45), p.u(0.1, 0.4), p.u(0.0, 0.08))
    return {"dir": direction, "speed": _speed_word(freq, 0.75, 1.05), "pace": "slow" if freq < 0.9 else "brisk"}


@family("jog", True, ("a person jogs {dir}", "someone is running {dir} {speed}", "a jogger runs {dir}",
                      "a person runs at an easy pace"))
def _jog(p: Poser) -> dict:
    freq = p.u(1.2, 1.6)
    rate, direction = _turn(p)
    p.yaw += rate * p.t
    _gait(p, freq, p.u(0.45, 0.7), p.u(1.0, 1.5), p.u(0.5, 0.8), p.u(1.2, 1.6), p.u(0.1, 0.2))
    p.lift += 0.04 * np.maximum(0, np.sin(4 * np.pi * freq * p.t))
    return {"dir": direction, "speed": _speed_word(freq, 1.2, 1.6)}


@family("stand", True, ("a person stands still", "someone stands and shifts their weight",
                        "a person is standing in place", "a man waits, standing idle"))
def _stand(p: Poser) -> dict:
    sway = p.u(0.02, 0.08)
    p.relaxed_arms()
    p.spine(lateral=sway * p.wave(p.u(0.2, 0.4)), twist=0.05 * p.wave(0.15))
    p.hip("left", abduct=0.05 + sway * p.wave(0.3))
    p.hip("right", abduct=0.05 - sway * p.wave(0.3))
    p.look(turn=0.3 * p.wave(p.u(0.1, 0.25), p.u(0, 6)))
    return {}


@family("wave", True, ("a person waves with the {side} hand", "someone waves hello",
                       "a person raises the {side} arm and waves", "a man greets someone by waving his {side} hand"))
def _wave(p: Poser) -> dict:
    side = "left" if p.rng.random() < 0.5 else "right"
    other = "right" if side == "left" else "left"
    up = p.ease(0.2, 0.6)
    p.arm(side, swing=0.6 * up, abduct=0.2 + 1.6 * up, elbow=(0.8 + 0.4 * p.wave(p.u(1.5, 3.0))) * up, shrug=0.2 * up)
    p.arm(other, swing=0.05, abduct=0.15, elbow=0.2)
    p.look(turn=_side(side) * 0.2)
    return {"side": side}


@family("raise_arms", True, ("a person raises both arms {how}", "someone lifts their arms up and lowers them",
                             "a person puts both hands up in the air", "a man raises his arms above his head"))
def _raise_arms(p: Poser) -> dict:
    front = p.rng.random() < 0.5
    n = p.u(0.6, 1.0) * np.pi
    cycle = 0.5 - 0.5 * np.cos(2 * np.pi * p.u(0.25, 0.5) * p.t)
    for side in ("left", "right"):
        if front:
            p.arm(side, swing=n * cycle, abduct=0.15, elbow=0.1, shrug=0.3 * cycle)
        else:
            p.arm(side, abduct=0.15 + n * cycle, elbow=0.1, shrug=0.3 * cycle)
    p.look(down=-0.2 * cycle)
    return {"how": "in front of the body" if front else "out to the sides"}


@family("clap", True, ("a person claps {speed}", "someone applauds", "a person claps their hands in front of them",
                       "a man is clapping"))
def _clap(p: Poser) -> dict:
    f = p.u(1.5, 3.0)
    c = 0.5 + 0.5 * p.wave(f)
    for side in ("left", "right"):
        p.arm(side, swing=1.0, abduct=0.35 + 0.35 * c, elbow=1.2)
    return {"speed": _speed_word(f, 1.5, 3.0)}


@family("reach", True, ("a person reaches forward with the {side} hand", "someone reaches out to grab something",
                        "a person stretches the {side} arm forward", "a man reaches for an object in front of him"))
def _reach(p: Poser) -> dict:
    side = "left" if p.rng.random() < 0.5 else "right"
    e = p.ease(0.3, 0.8, back=p.u(1.5, 2.5))
    height = p.u(0.8, 1.9)
    p.arm(side, swing=height * e, abduct=0.15, elbow=0.6 * (1 - e) + 0.1)
    p.arm("right" if side == "left" else "left", abduct=0.15, elbow=0.2)
    p.spine(flex=0.2 * e, twist=-_side(side) * 0.2 * e)
    return {"side": side}


@family("look_around", True, ("a person looks around", "someone turns their head left and right",
                              "a person looks over their shoulder", "a man glances around while standing"))
def _look_around(p: Poser) -> dict:
    p.relaxed_arms()
    f = p.u(0.15, 0.4)
    p.look(turn=p.u(0.8, 1.4) * p.wave(f), down=0.2 * p.wave(2 * f))
    p.spine(twist=0.4 * p.wave(f))
    return {}


@family("arm_circles", True, ("a person circles both arms", "someone does arm circles",
                              "a person rotates their outstretched arms", "a man warms up by circling his arms"))
def _arm_circles(p: Poser) -> dict:
    f = p.u(0.5, 1.2)
    for side in ("left", "right"):
        p.arm(side, swing=0.35 * p.wave(f), abduct=1.45 + 0.35 * p.wave(f, np.pi / 2), elbow=0.05)
    return {}


@family("side_step", True, ("a person steps to the {dir}", "someone side-steps to the {dir}",
                            "a person shuffles sideways to the {dir}", "a man moves sideways with small steps"))
def _side_step(p: Poser) -> dict:
    f = p.u(0.6, 1.0)
    direction = "left" if p.rng.random() < 0.5 else "right"
    s = _side(direction)
    for side, ph in (("left", 0.0), ("right", np.pi)):
        lead = _side(side) == s
        ab = np.maximum(0, np.sin(2 * np.pi * f * p.t + ph)) * (0.35 if lead else 0.2)
        p.hip(side, abduct=ab, flex=0.1)
        p.knee(side, 0.1 + 0.5 * ab)
    p.plant_feet()
    p.relaxed_arms()
    return {"dir": direction}


@family("march", True, ("a person marches in place", "someone marches on the spot lifting the knees",
                        "a person steps in place", "a man marches without moving forward"))
def _march(p: Poser) -> dict:
    f, amp = p.u(0.7, 1.1), p.u(0.5, 1.1)
    for side, ph in (("left", 0.0), ("right", np.pi)):
        lift = np.maximum(0, np.sin(2 * np.pi * f * p.t + ph))
        p.hip(side, flex=amp * lift)
        p.knee(side, 1.5 * amp * lift + 0.05)
        p.arm(side, swing=-0.5 * np.sin(2 * np.pi * f * p.t + ph), abduct=0.15, elbow=0.8)
    p.plant_feet()
    return {}


@family("throw", True, ("a person throws a ball with the {side} hand", "someone throws something overhand",
                        "a person winds up and throws", "a man pitches a ball forward"))
def _throw(p: Poser) -> dict:
    side = "left" if p.rng.random() < 0.5 else "right"
    s = _side(side)
    wind = p.ease(0.3, 0.6)
    release = p.ease(1.0, 0.3)
    p.arm(side, swing=2.2 * wind - 1.2 * release + 0.4 * release, abduct=0.9 * wind - 0.6 * release,
          elbow=1.5 * wind - 1.3 * release, shrug=0.2 * wind)  # fmt: skip
    p.arm("right" if side == "left" else "left", swing=1.0 * wind - 0.6 * release, abduct=0.3, elbow=0.5)
    p.spine(twist=s * (0.5 * wind - 0.9 * release), flex=0.3 * release)
    p.hip("left" if side == "right" else "right", flex=0.3 * release)
    p.plant_feet()
    return {"side": side}


@family("punch", True, ("a person punches forward {speed}", "someone throws punches like a boxer",
                        "a person shadow boxes", "a man jabs with both fists"))
def _punch(p: Poser) -> dict:
    f = p.u(0.8, 1.6)
    for side, ph in (("left", 0.0), ("right", np.pi)):
        out = np.maximum(0, np.sin(2 * np.pi * f * p.t + ph)) ** 2
        p.arm(side, swing=1.1 + 0.4 * out, abduct=0.25 - 0.15 * out, elbow=2.0 - 1.8 * out)
    p.hip("left", flex=0.3)
    p.hip("right", flex=-0.15)
    p.knee("left", 0.35)
    p.knee("right", 0.25)
    p.spine(flex=0.1, twist=0.25 * p.wave(f))
    p.plant_feet()
    return {"speed": _speed_word(f, 0.8, 1.6)}


@family("jumping_jacks", True, ("a person does jumping jacks", "someone jumps spreading arms and legs",
                                "a person performs star jumps", "a man does jumping jacks {speed}"))
def _jumping_jacks(p: Poser) -> dict:
    f = p.u(0.7, 1.2)
    c = 0.5 - 0.5 * np.cos(2 * np.pi * f * p.t)
    for side in ("left", "right"):
        p.arm(side, abduct=0.15 + 2.6 * c, elbow=0.1, shrug=0.3 * c)
        p.hip(side, abduct=0.35 * c)
        p.knee(side, 0.1)
    p.plant_feet()
    p.lift += 0.12 * np.abs(np.sin(2 * np.pi * f * p.t))
    return {"speed": _speed_word(f, 0.7, 1.2)}


# ----------------------------------------------------------------------------------------------- unusual


@family("squat", False, ("a person squats down and stands up", "someone does squats",
                         "a person bends the knees into a deep squat", "a man squats {times} times"))
def _squat(p: Poser) -> dict:
    f = p.u(0.25, 0.5)
    c = 0.5 - 0.5 * np.cos(2 * np.pi * f * p.t)
    depth = p.u(0.7, 1.0)
    p.pitch += 0.35 * depth * c
    for side in ("left", "right"):
        p.hip(side, flex=1.75 * depth * c, abduct=0.15)
        p.knee(side, 2.1 * depth * c)
        p.arm(side, swing=1.5 * c, abduct=0.2, elbow=0.2)
    p.plant_feet()
    return {"times": ["two", "a few", "several"][int(p.rng.integers(3))]}


@family("lunge", False, ("a person lunges forward with the {side} leg", "someone does lunges",
                         "a person steps into a deep lunge", "a man lunges and comes back up"))
def _lunge(p: Poser) -> dict:
    side = "left" if p.rng.random() < 0.5 else "right"
    other = "right" if side == "left" else "left"
    e = p.ease(0.3, 0.8, back=p.u(2.0, 3.0))
    p.hip(side, flex=1.4 * e)
    p.knee(side, 1.5 * e)
    p.hip(other, flex=-0.45 * e)
    p.knee(other, 1.5 * e)
    p.plant_feet((side,))
    p.ankle(other, -0.3 * e)
    for s in ("left", "right"):
        p.arm(s, abduct=0.2, swing=0.3 * e, elbow=0.3)
    return {"side": side}


@family("kick", False, ("a person kicks with the {side} leg", "someone kicks high in front of them",
                        "a person does a front kick", "a man kicks a ball hard with his {side} foot"))
def _kick(p: Poser) -> dict:
    side = "left" if p.rng.random() < 0.5 else "right"
    k0 = p.u(0.6, 1.2)
    chamber = p.ease(k0, 0.3, back=k0 + 0.6)
    extend = p.ease(k0 + 0.25, 0.2, back=k0 + 0.55)
    height = p.u(1.2, 1.9)
    p.hip(side, flex=height * chamber)
    p.knee(side, 1.8 * chamber - 1.6 * extend)
    p.ankle(side, 0.5 * extend)
    p.pitch -= 0.25 * chamber
    p.plant_feet(("right",) if side == "left" else ("left",))
    for s in ("left", "right"):
        p.arm(s, abduct=0.5 + 0.4 * chamber, swing=0.5, elbow=0.9)
    return {"side": side}


@family("touch_toes", False, ("a person bends down to touch their toes", "someone bends forward and touches the floor",
                              "a person stretches the hamstrings by reaching for the toes",
                              "a man folds forward at the hips"))
def _touch_toes(p: Poser) -> dict:
    e = p.ease(0.3, 1.0, back=p.u(2.2, 3.2))
    p.pitch += 1.3 * e
    for side in ("left", "right"):
        p.hip(side, flex=1.3 * e)
        p.knee(side, p.u(0.0, 0.3) * e)
        p.arm(side, swing=1.45 * e, abduct=0.1, elbow=0.05)
    p.spine(flex=0.6 * e)
    p.look(down=0.3 * e)
    p.plant_feet()
    return {}


@family("sit_floor", False, ("a person sits down on the floor", "someone sits cross-legged on the ground",
                             "a person sits on the floor with legs {legs}", "a man lowers himself to sit"))
def _sit_floor(p: Poser) -> dict:
    cross = p.rng.random() < 0.5
    e = p.ease(0.2, 1.2)
    for side in ("left", "right"):
        if cross:
            p.hip(side, flex=1.4 * e, abduct=0.7 * e, twist=1.25 * e)  # knee axis turns vertical: shins cross
            p.knee(side, 2.4 * e)
        else:
            p.hip(side, flex=1.5 * e, abduct=0.15)
            p.knee(side, 0.2 * e)
        p.arm(side, swing=0.5 * e, abduct=0.3, elbow=0.8 * e)
    p.spine(flex=0.25 * e)
    p.pitch -= 0.2 * e
    return {"legs": "crossed" if cross else "stretched out"}


@family("kneel", False, ("a person kneels down", "someone goes down on {knees}",
                         "a person kneels on the floor", "a man drops to his knees"))
def _kneel(p: Poser) -> dict:
    both = p.rng.random() < 0.6
    e = p.ease(0.2, 1.0)
    if both:
        for side in ("left", "right"):
            p.hip(side, flex=0.15 * e)
            p.knee(side, 1.7 * e)
            p.ankle(side, 0.6 * e)
    else:
        side = "left" if p.rng.random() < 0.5 else "right"
        other = "right" if side == "left" else "left"
        p.hip(side, flex=1.5 * e)
        p.knee(side, 1.55 * e)
        p.plant_feet((side,))
        p.hip(other, flex=0.05 * e)
        p.knee(other, 1.6 * e)
        p.ankle(other, 0.5 * e)
    p.relaxed_arms()
    p.spine(flex=0.1 * e)
    return {"knees": "both knees" if both else "one knee"}


@family("kneel_chop", False, ("a person kneeling down and chopping with an axe", "someone kneels and chops wood",
                              "a kneeling person swings an axe down", "a man on his knees hacks at something"))
def _kneel_chop(p: Poser) -> dict:
    f = p.u(0.5, 0.9)
    for side in ("left", "right"):
        p.hip(side, flex=0.1)
        p.knee(side, 1.7)
        p.ankle(side, 0.6)
    c = 0.5 + 0.5 * p.wave(f)
    for side in ("left", "right"):
        p.arm(side, swing=0.8 + 2.0 * c, abduct=0.15, elbow=0.4 + 0.5 * c, shrug=0.2 * c)
    p.spine(flex=0.5 * (1 - c) - 0.1)
    return {}


@family("crawl", False, ("a person crawls on hands and knees", "someone crawls {dir}",
                         "a person moves forward on all fours", "a man crawls along the floor"))
def _crawl(p: Poser) -> dict:
    f = p.u(0.5, 0.8)
    p.pitch += np.pi / 2 - 0.1
    for side, ph in (("left", 0.0), ("right", np.pi)):
        phase = 2 * np.pi * f * p.t + ph
        p.hip(side, flex=1.45 + 0.25 * np.sin(phase))
        p.knee(side, 1.5 + 0.15 * np.maximum(0, np.cos(phase)))
        p.ankle(side, 0.6)
        p.arm(side, swing=1.5 + 0.3 * np.sin(phase + np.pi), abduct=0.1, elbow=0.15 * np.maximum(0, np.cos(phase)))
    p.look(down=-0.6)
    return {"dir": "forward"}


@family("cartwheel", False, ("a person does a cartwheel", "someone cartwheels to the {dir}",
                             "a person turns a cartwheel", "a gymnast performs a cartwheel"), duration=(2.5, 3.5))
def _cartwheel(p: Poser) -> dict:
    direction = "left" if p.rng.random() < 0.5 else "right"
    s = _side(direction)
    dur = p.u(1.2, 1.8)
    x = np.clip((p.t - 0.5) / dur, 0, 1)
    turn = 2 * np.pi * x * x * (3 - 2 * x)  # one full turn sideways
    p.roll += -s * turn  # tip towards the travel side
    up = p.ease(0.2, 0.4, back=0.5 + dur)
    for side in ("left", "right"):
        p.arm(side, abduct=0.2 + 2.7 * up, elbow=0.05)
        p.hip(side, abduct=0.9 * np.sin(turn / 2) ** 2)
    return {"dir": direction}


@family("tree_pose", False, ("a person balances in tree pose", "someone stands on one leg in a yoga tree pose",
                             "a person does the tree pose with hands {hands}", "a yogi balances on the {side} leg"))
def _tree(p: Poser) -> dict:
    side = "left" if p.rng.random() < 0.5 else "right"
    lifted = "right" if side == "left" else "left"
    e = p.ease(0.3, 1.0)
    p.hip(lifted, flex=0.6 * e, abduct=1.0 * e, twist=0.5 * e)
    p.knee(lifted, 2.2 * e)
    overhead = p.rng.random() < 0.5
    for s in ("left", "right"):
        if overhead:
            p.arm(s, abduct=0.15 + 2.75 * e, elbow=0.15, shrug=0.3 * e)
        else:
            p.arm(s, swing=0.9 * e, abduct=0.4, elbow=2.0 * e)
    p.plant_feet((side,))
    return {"side": side, "hands": "overhead" if overhead else "pressed together at the chest"}


@family("warrior", False, ("a person holds a warrior pose", "someone steps wide into warrior two",
                           "a person lunges sideways with arms stretched out", "a yogi stands in warrior pose"))
def _warrior(p: Poser) -> dict:
    side = "left" if p.rng.random() < 0.5 else "right"
    other = "right" if side == "left" else "left"
    e = p.ease(0.3, 1.0)
    p.hip(side, abduct=0.7 * e, flex=0.6 * e, twist=0.5 * e)
    p.knee(side, 1.2 * e)
    p.hip(other, abduct=0.6 * e)
    for s in ("left", "right"):
        p.arm(s, abduct=0.15 + 1.4 * e, elbow=0.05)
    p.look(turn=_side(side) * 1.0 * e)
    p.plant_feet()
    return {}


@family("downward_dog", False, ("a person does downward dog", "someone holds a downward facing dog yoga pose",
                                "a person makes an inverted V shape with the body",
                                "a yogi pushes the hips up with hands and feet on the floor"))
def _downward_dog(p: Poser) -> dict:
    e = p.ease(0.3, 1.2)
    p.pitch += 2.0 * e
    for side in ("left", "right"):
        p.hip(side, flex=1.9 * e)
        p.knee(side, 0.1 * e)
        p.arm(side, swing=2.9 * e, abduct=0.15, elbow=0.05)
    p.plant_feet()
    p.look(down=-0.2 * e)
    return {}


@family("handstand", False, ("a person does a handstand", "someone balances upside down on their hands",
                             "a person kicks up into a handstand", "a gymnast holds a handstand"), duration=(2.5, 4.0))
def _handstand(p: Poser) -> dict:
    e = p.ease(0.4, 1.0)
    p.pitch += np.pi * e
    split = p.u(0.0, 0.6)
    for side, sign in (("left", 1.0), ("right", -1.0)):
        p.arm(side, swing=np.pi * e, abduct=0.15 * (1 - e) + 0.1, elbow=0.05)
        p.hip(side, flex=sign * split * e * np.sin(np.pi * e) + 0.2 * e * (1 - e))
        p.ankle(side, 0.5 * e)
    p.look(down=-0.5 * e)
    return {}


@family("lie_down", False, ("a person lies down on the back", "someone lies on the floor and rests",
                            "a person lies flat on the ground", "a man lies down with arms {arms}"))
def _lie_down(p: Poser) -> dict:
    e = p.ease(0.2, 1.2)
    prone = p.rng.random() < 0.3
    p.pitch += (np.pi / 2 if prone else -np.pi / 2) * e
    wide = p.rng.random() < 0.5
    for side in ("left", "right"):
        p.arm(side, abduct=(1.3 if wide else 0.15) * e + 0.1, elbow=0.2 * e)
        p.hip(side, abduct=0.1 * e)
        p.knee(side, p.u(0.0, 0.6) * e)
    p.look(turn=p.u(-0.5, 0.5) * e)
    return {"arms": "spread out" if wide else "by the sides"}


@family("push_up", False, ("a person does push-ups", "someone lowers and raises the body doing push-ups",
                           "a person exercises with push-ups on the floor", "a man does {times} push-ups"))
def _push_up(p: Poser) -> dict:
    f = p.u(0.4, 0.8)
    c = 0.5 - 0.5 * np.cos(2 * np.pi * f * p.t)
    p.pitch += np.pi / 2 - 0.25 + 0.15 * c
    for side in ("left", "right"):
        p.arm(side, swing=1.5 - 0.5 * c, abduct=0.25, elbow=1.4 * c)
        p.ankle(side, 0.8)
    p.look(down=-0.4)
    return {"times": ["a few", "some", "several"][int(p.rng.integers(3))]}


@family("jump", False, ("a person jumps up", "someone jumps {how}", "a person leaps into the air",
                        "a man jumps as high as he can"), duration=(2.0, 3.0))
def _jump(p: Poser) -> dict:
    tuck = p.rng.random() < 0.5
    t0 = p.u(0.5, 0.9)
    crouch = p.ease(t0 - 0.4, 0.3, back=t0)
    air_t = np.clip(p.t - t0, 0, None)
    v0 = p.u(2.2, 3.2)
    height = np.maximum(0, v0 * air_t - 4.9 * air_t**2) * (p.t > t0)
    flying = height > 0
    for side in ("left", "right"):
        p.hip(side, flex=1.0 * crouch + (1.4 if tuck else 0.2) * flying)
        p.knee(side, 1.4 * crouch + (2.0 if tuck else 0.3) * flying)
        p.arm(side, swing=-0.6 * crouch + 2.6 * flying, abduct=0.15, elbow=0.2)
    p.pitch += 0.3 * crouch
    p.plant_feet()
    p.lift += height
    return {"how": "tucking the knees" if tuck else "straight up"}


@family("spin", False, ("a person spins around", "someone twirls {dir} with arms out",
                        "a person turns in place like a dancer", "a dancer pirouettes"), duration=(2.0, 4.0))
def _spin(p: Poser) -> dict:
    s = 1.0 if p.rng.random() < 0.5 else -1.0
    p.yaw += s * p.u(2.5, 6.0) * p.ease(0.2, 1.0) * p.t
    for side in ("left", "right"):
        p.arm(side, abduct=p.u(0.9, 1.6), swing=0.3, elbow=0.3)
    p.hip("left", flex=0.8, abduct=0.3)
    p.knee("left", 1.6)
    p.plant_feet(("right",))
    return {"dir": "to the left" if s > 0 else "to the right"}


@family("sit_up", False, ("a person does sit-ups", "someone lies on the back and curls up",
                          "a person does crunches on the floor", "a man does abdominal exercises lying down"))
def _sit_up(p: Poser) -> dict:
    f = p.u(0.3, 0.6)
    c = 0.5 - 0.5 * np.cos(2 * np.pi * f * p.t)
    p.pitch += -np.pi / 2 + 1.1 * c
    for side in ("left", "right"):
        p.hip(side, flex=1.0 + 1.1 * c)
        p.knee(side, 1.6)
        p.arm(side, swing=2.2, abduct=0.7, elbow=2.3)
    p.spine(flex=0.5 * c)
    return {}


@family("bow", False, ("a person bows deeply", "someone bows forward politely", "a person takes a bow",
                       "a man bends at the waist to bow"))
def _bow(p: Poser) -> dict:
    e = p.ease(0.3, 0.8, back=p.u(1.6, 2.6))
    p.pitch += 0.9 * e
    for side in ("left", "right"):
        p.hip(side, flex=0.9 * e)
        p.arm(side, swing=0.5 * e, abduct=0.1, elbow=0.1)
    p.spine(flex=0.3 * e)
    p.plant_feet()
    return {}


# ---------------------------------------------------------------------------------------------- assembly


@dataclass
class PoseTrack:
    """A clip's pose parameters: what `make_clip` poses (and the world stage renders)."""

    body_pose: np.ndarray  # (T, 21, 3)
    global_orient: np.ndarray  # (T, 3)
    lift: np.ndarray  # (T,)
    stance: np.ndarray | None  # (T,) scheduled supporting joint, or None: the lowest contact supports
    texts: list[str]
    meta: dict = field(default_factory=dict)


def sample_track(rng: np.random.Generator, name: str) -> PoseTrack:
    """One random clip's pose track of family `name`, with 3 texts."""
    fam = FAMILIES[name]
    num_frames = int(round(rng.uniform(*fam.duration) * FPS))
    p = Poser(rng, num_frames)
    slots = fam.make(p)
    p.yaw += rng.uniform(-np.pi, np.pi)  # heading in the world
    picks = rng.choice(len(fam.texts), size=min(3, len(fam.texts)), replace=False)
    texts = [fam.texts[k].format(**slots).replace("  ", " ").strip() for k in sorted(picks)]
    pose = clamp_to_limits(p.rot[:, 1:])
    return PoseTrack(pose, p.global_orient(), p.lift, p.stance, texts, {"family": name, **slots})


def ground(joints: np.ndarray, lift: np.ndarray, stance: np.ndarray | None = None) -> np.ndarray:
    """Translation (T, 3) placing (T, 22, 3) pelvis-centred joints on the floor: vertical grounding per frame
    plus lift, then horizontal travel from planted contacts (see module docstring): the scheduled `stance`
    joint when given (gaits, where both feet are near the floor for long stretches), else the lowest contact."""
    out = joints.copy()
    height = (out[..., 1] - CLEARANCE).min(1)  # lowest surface per frame
    out[..., 1] += (lift - height)[:, None]
    surface = out[..., 1] - CLEARANCE  # (T, 22) height of each joint's surface above the floor
    root = np.zeros((len(out), 2))
    velocity = np.zeros(2)
    for t in range(1, len(out)):
        c = CONTACTS[int(np.argmin(surface[t, list(CONTACTS)]))] if stance is None else int(stance[t])
        if stance is not None and lift[t] < CONTACT_TOL:
            velocity = out[t - 1, c, [0, 2]] - out[t, c, [0, 2]]
        elif surface[t, c] < CONTACT_TOL and surface[t - 1, c] < CONTACT_TOL:
            velocity = out[t - 1, c, [0, 2]] - out[t, c, [0, 2]]  # keep the supporting contact in place
        elif surface[t].min() < CONTACT_TOL:
            velocity = np.zeros(2)  # a new contact lands: no sliding
        root[t] = root[t - 1] + velocity  # in flight: keep going
    return np.stack([root[:, 0], lift - height, root[:, 1]], 1)


def make_clip(skeleton: RestSkeleton, track: PoseTrack) -> tuple[np.ndarray, np.ndarray]:
    """World joints (T, 22, 3) of `track` on the subject `skeleton`, and the pelvis translation (T, 3) that
    places them (pass it as `transl` to pose the mesh the same way)."""
    with torch.no_grad():
        joints = skeleton_fk(skeleton, torch.as_tensor(track.body_pose, dtype=torch.float32),
                             torch.as_tensor(track.global_orient, dtype=torch.float32))  # fmt: skip
    joints = joints.numpy().astype(np.float64)
    transl = ground(joints, track.lift, track.stance)
    return joints + transl[:, None], transl


def common_families() -> list[str]:
    return [n for n, f in FAMILIES.items() if f.common]


def all_families() -> list[str]:
    return list(FAMILIES)
