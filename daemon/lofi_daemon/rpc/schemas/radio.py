"""Params of radio_start / radio_steer / radio_stop / radio_status, and the section plan (a plan is data: in the
plugin's config, per request, or one of the shipped plans by name)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field, model_validator

from .base import Strict
from .generation import MAX_SEED

Role = Literal["intro", "groove", "build", "break", "peak", "rest", "outro"]


class Section(Strict):
    """One section of a plan: its role, its length (seconds, or bars at the plan's bpm), its energy 0–1 and words
    added to the prompt while it plays (instrumentation, mood)."""

    role: Role
    seconds: float | None = Field(default=None, gt=0, le=3600)
    bars: int | None = Field(default=None, ge=1, le=1000)
    energy: float = Field(default=0.5, ge=0, le=1)
    modifiers: str = Field(default="", max_length=200)

    @model_validator(mode="after")
    def _one_length(self) -> Section:
        if (self.seconds is None) == (self.bars is None):
            raise ValueError("a section has either seconds or bars")
        return self


class Plan(Strict):
    name: str = Field(default="custom", min_length=1, max_length=40)
    bpm: float = Field(default=80, ge=40, le=200)  # turns bars into seconds (4 beats a bar)
    loop: bool = True  # after the last section, start again (false: the radio ends with the last section)
    sections: list[Section] = Field(min_length=1, max_length=64)

    def section_sec(self, section: Section) -> float:
        return section.seconds if section.seconds is not None else section.bars * 4 * 60.0 / self.bpm  # type: ignore[operator]


class RadioStartParams(Strict):
    """Any field not listed is a backend parameter (guidance_scale, top_k, …), checked by the backend."""

    model_config = ConfigDict(extra="allow", strict=True, allow_inf_nan=False)

    prompt: str
    plan: str | Plan | None = None  # a shipped plan's name, a plan, or none (the prompt alone)
    adaptive: bool = False  # the plugin sends radio_steer {energy} from the editor's activity
    save: bool = False  # keep every window as a track in the cache (off: played audio is dropped)
    backend: str | None = Field(default=None, min_length=1)
    seed: int | None = Field(default=None, ge=0, le=MAX_SEED)

    @property
    def backend_params(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class RadioSteerParams(Strict):
    """What changes at the next window: the prompt, the plan (from its first section) and the editor's energy."""

    prompt: str | None = None
    plan: str | Plan | None = None
    energy: float | None = Field(default=None, ge=0, le=1)
