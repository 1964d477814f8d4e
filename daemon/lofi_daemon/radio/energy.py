"""From energy (0–1: the section's, moved by the editor's when adaptive) to the words a window's prompt gets.

MusicGen follows plain descriptions; tempo words and a bpm are what it follows best. The editor's energy moves
the section's by at most ±EDITOR_SWAY, so a plan's shape (a rest stays calmer than a peak) survives typing."""

from __future__ import annotations

from ..rpc.schemas.radio import Section

EDITOR_SWAY = 0.3
# the words of energy 0, 0.25, 0.5, 0.75 and 1; an energy gets those of the nearest level
LEVELS: list[str] = [
    "very calm, sparse, ambient",
    "relaxed, laid-back, soft drums",
    "steady groove, mid-tempo",
    "upbeat, lively drums",
    "energetic, driving beat",
]
BPM_LOW, BPM_HIGH = 60, 100


def effective_energy(section_energy: float, editor_energy: float | None) -> float:
    if editor_energy is None:
        return section_energy
    return min(1.0, max(0.0, section_energy + EDITOR_SWAY * (2.0 * editor_energy - 1.0)))


def energy_words(energy: float) -> str:
    words = LEVELS[min(max(round(energy * (len(LEVELS) - 1)), 0), len(LEVELS) - 1)]
    bpm = int(round((BPM_LOW + (BPM_HIGH - BPM_LOW) * energy) / 5.0) * 5)
    return f"{words}, {bpm} bpm"


def window_prompt(
    prompt: str, section: Section | None, editor_energy: float | None
) -> tuple[str, float | None]:
    """The prompt of the next window and the energy it was made for (None: no plan and no editor energy, the
    prompt alone)."""
    if section is None and editor_energy is None:
        return prompt, None
    base = section.energy if section is not None else 0.5
    energy = effective_energy(base, editor_energy)
    parts = [prompt]
    if section is not None and section.modifiers:
        parts.append(section.modifiers)
    parts.append(energy_words(energy))
    return ", ".join(parts), round(energy, 3)
