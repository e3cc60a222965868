"""Failpoints: named places where a fault-injection test can make this process die on purpose.

The fault-injection suite needs a SIGKILL at an exact, reproducible point inside a stage (after the 7th object a
stage committed, or with the 3rd one written but not yet committed), which a signal sent from outside cannot hit.
So the storage layer calls `hit("store.after_commit")` and `hit("store.before_commit")`, which cost one dict
lookup and do nothing unless `POSESYN_FAILPOINTS` names that point, in the spirit of FreeBSD's fail(9) and
TiKV's fail-rs:

    POSESYN_FAILPOINTS="store.after_commit@eem=kill:7"     SIGKILL at the 7th commit while stage eem runs
    POSESYN_FAILPOINTS="store.before_commit=kill:3"         ... at the 3rd pending write, in any stage

Several specs are separated by `;`. Hits are counted per process, per point and per stage, so a resumed run that
skips finished stages reaches a stage's point exactly as an uninterrupted run would.
"""

from __future__ import annotations

import functools
import os
import re
import signal
from collections import Counter

from posesyn_core.errors import ConfigError

ENV = "POSESYN_FAILPOINTS"
_SPEC = re.compile(r"^(?P<point>[a-z_.]+)(?:@(?P<stage>[a-z0-9-]+))?=kill:(?P<n>[1-9][0-9]*)$")

_stage: str | None = None  # the stage this process is running (set by execute_stage)
_hits: Counter = Counter()


@functools.cache
def parse(text: str) -> dict[tuple[str, str | None], int]:
    """`point[@stage]=kill:N;...` -> {(point, stage): N}."""
    specs = {}
    for part in filter(None, (p.strip() for p in text.split(";"))):
        match = _SPEC.match(part)
        if not match:
            raise ConfigError(f"{ENV}: {part!r} is not `point[@stage]=kill:N` (e.g. store.after_commit@eem=kill:7)")
        specs[(match["point"], match["stage"])] = int(match["n"])
    return specs


def enter_stage(name: str) -> None:
    """Scope the following hits to stage `name`."""
    global _stage
    _stage = name


def hit(point: str) -> None:
    """Count one pass through `point`; SIGKILL this process if a spec says this is the pass to die at."""
    text = os.environ.get(ENV)
    if not text:
        return
    specs = parse(text)
    for key in {(point, _stage), (point, None)}:
        if key in specs:
            _hits[key] += 1
            if _hits[key] == specs[key]:
                os.kill(os.getpid(), signal.SIGKILL)
