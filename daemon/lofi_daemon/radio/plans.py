"""Section plans: the shipped ones, and walking a plan window by window.

A plan is data (rpc/schemas/radio.py `Plan`). The radio asks `PlanWalker.at(t)` for the section that plays at
stream time t (seconds of music since the radio started; a paused radio does not move on), so sections follow
the music, not the wall clock."""

from __future__ import annotations

from ..errors import ErrorCode, LofiError
from ..rpc.schemas.radio import Plan, Section

PLANS: dict[str, Plan] = {
    # steady background for deep work: no breaks to pull attention, a slow swell and back
    "focus": Plan(
        name="focus",
        sections=[
            Section(role="intro", bars=8, energy=0.3, modifiers="soft keys, vinyl crackle"),
            Section(role="groove", bars=48, energy=0.5, modifiers="steady boom bap drums, warm bass"),
            Section(role="build", bars=16, energy=0.6, modifiers="rhodes chords, light percussion"),
            Section(role="groove", bars=48, energy=0.5, modifiers="steady drums, mellow guitar"),
        ],
    ),
    # 25 minutes of work, 5 of rest
    "pomodoro": Plan(
        name="pomodoro",
        sections=[
            Section(role="intro", seconds=60, energy=0.4, modifiers="soft piano, gentle start"),
            Section(role="groove", seconds=1200, energy=0.6, modifiers="steady drums, focused groove"),
            Section(role="peak", seconds=180, energy=0.7, modifiers="brighter drums, driving bass"),
            Section(role="outro", seconds=60, energy=0.4, modifiers="drums fading, last chords"),
            Section(role="rest", seconds=300, energy=0.15, modifiers="ambient pads, no drums, calm"),
        ],
    ),
    # quiet hours: sparse, low, dark
    "late_night": Plan(
        name="late_night",
        bpm=70,
        sections=[
            Section(role="intro", bars=8, energy=0.2, modifiers="rain, distant piano"),
            Section(role="groove", bars=32, energy=0.35, modifiers="brushed drums, upright bass, muted"),
            Section(role="break", bars=8, energy=0.15, modifiers="no drums, tape hiss, soft pads"),
            Section(role="groove", bars=32, energy=0.3, modifiers="slow jazz chords, soft kick"),
        ],
    ),
}


def resolve_plan(plan: str | Plan | None) -> Plan | None:
    """A plan by name (one of PLANS) or as given; None: no plan (the prompt alone)."""
    if plan is None or isinstance(plan, Plan):
        return plan
    key = plan.strip().lower().replace("-", "_").replace(" ", "_")
    if key not in PLANS:
        raise LofiError(
            ErrorCode.INVALID_PARAMS, f"unknown radio plan {plan!r}; available: {', '.join(sorted(PLANS))}"
        )
    return PLANS[key]


class PlanWalker:
    """Stream time → section. `start`: the stream time at which the plan begins (a plan chosen mid-stream)."""

    def __init__(self, plan: Plan, start: float = 0.0) -> None:
        self.plan = plan
        self.start = start
        self.lengths = [plan.section_sec(s) for s in plan.sections]
        self.total = sum(self.lengths)

    def at(self, t: float) -> tuple[int, Section] | None:
        """(index, section) playing at stream time `t` s, or None past the end of a plan that does not loop."""
        t = max(t - self.start, 0.0)
        if t >= self.total and not self.plan.loop:
            return None
        t = t % self.total
        for i, length in enumerate(self.lengths):
            if t < length:
                return i, self.plan.sections[i]
            t -= length
        return len(self.lengths) - 1, self.plan.sections[-1]  # float rounding at the very end
