"""The rules a training track must meet, and a 0–100 quality score whose every component is shown.

Rules (issue 15): shorter than 30 s is skipped; longer than 240 s is trimmed at a quiet point with a fade; the peak
is normalised to −1 dBFS; more than 0.1 % of samples at full scale is clipping; more than half the track below the
silence threshold is silence. Clipping and silence reject a track unless the user keeps flagged ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .audio_io import SAMPLE_RATE

MIN_SECONDS = 30.0
MAX_SECONDS = 240.0
TRIM_SEARCH_SECONDS = 30.0  # the quiet point is looked for in the last 30 s before the limit
FADE_SECONDS = 2.0
PEAK_DBFS = -1.0
FULL_SCALE = 0.999  # a sample this close to ±1 counts as clipped (decoders rarely give exactly 1.0)
CLIP_LIMIT = 0.001  # 0.1 % of samples
SILENCE_DBFS = -50.0  # a 50 ms frame quieter than this (RMS, after normalisation) is silent
SILENCE_LIMIT = 0.5
FRAME_SECONDS = 0.05

# score points per component (sum 100)
CLIPPING_POINTS = 40.0
SILENCE_POINTS = 40.0
LEVEL_POINTS = 20.0
LEVEL_FULL_DBFS = -20.0  # an input peak at or above this needs little gain: full level points
LEVEL_ZERO_DBFS = -60.0  # needing 59 dB of gain lifts the noise floor with the music: no level points


@dataclass
class Report:
    verdict: str  # ok | trimmed | too_short | clipping | silence
    usable: bool
    duration_sec: float
    output_sec: float
    clipped_fraction: float
    silent_fraction: float
    input_peak_dbfs: float
    score: float
    components: dict[str, float]
    flags: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    trimmed_at_sec: float | None = None


def _dbfs(x: float) -> float:
    return float(20 * np.log10(x)) if x > 0 else float("-inf")


def frame_rms(audio: np.ndarray) -> np.ndarray:
    """RMS of consecutive 50 ms frames over both channels (a last partial frame is dropped)."""
    n = int(FRAME_SECONDS * SAMPLE_RATE)
    frames = len(audio) // n
    if frames == 0:
        return np.sqrt(np.mean(np.square(audio, dtype=np.float64))).reshape(1)
    blocks = audio[: frames * n].reshape(frames, n * audio.shape[1]).astype(np.float64)
    return np.sqrt(np.mean(blocks * blocks, axis=1))


def head_seconds() -> float:
    """How much of a long source the rules can use: the cut is never after MAX_SECONDS, so resampling more than
    this (plus a second for the filter's edge) would be wasted work and memory."""
    return MAX_SECONDS + 1.0


def quiet_cut(audio: np.ndarray) -> int:
    """The sample where to cut a too-long track: the quietest 50 ms frame in the last stretch before the limit."""
    n = int(FRAME_SECONDS * SAMPLE_RATE)
    start = int((MAX_SECONDS - TRIM_SEARCH_SECONDS) * SAMPLE_RATE)
    window = audio[start : int(MAX_SECONDS * SAMPLE_RATE)]
    rms = frame_rms(window)
    return start + int(np.argmin(rms)) * n + n  # cut at the end of the quietest frame


def fade_out(audio: np.ndarray) -> np.ndarray:
    n = min(len(audio), int(FADE_SECONDS * SAMPLE_RATE))
    out = audio.copy()
    out[len(out) - n :] *= np.linspace(1.0, 0.0, n, dtype=np.float32)[:, None]
    return out


def normalise_peak(audio: np.ndarray) -> np.ndarray:
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    if peak == 0.0:
        return audio
    return (audio * (10 ** (PEAK_DBFS / 20) / peak)).astype(np.float32)


def score(clipped: float, silent: float, peak_dbfs: float) -> dict[str, float]:
    """Each component falls linearly: clipping to 0 at ten times the flag limit, silence with the silent share,
    level between LEVEL_FULL_DBFS and LEVEL_ZERO_DBFS of input peak."""
    level = (
        (peak_dbfs - LEVEL_ZERO_DBFS) / (LEVEL_FULL_DBFS - LEVEL_ZERO_DBFS) if peak_dbfs > -np.inf else 0.0
    )
    return {
        "clipping": round(CLIPPING_POINTS * (1 - min(1.0, clipped / (10 * CLIP_LIMIT))), 1),
        "silence": round(SILENCE_POINTS * (1 - min(1.0, silent)), 1),
        "level": round(LEVEL_POINTS * min(1.0, max(0.0, level)), 1),
    }


def process(
    audio: np.ndarray, clipped_source: np.ndarray | None = None, duration: float | None = None
) -> tuple[np.ndarray, Report]:
    """Apply the rules to 48 kHz stereo audio: the training-ready audio (empty when skipped) and its report.

    Clipping is counted on `clipped_source` (the decoded file before resampling, whose filter overshoots would
    hide or invent full-scale samples); it defaults to `audio`. `duration` is the source's length when `audio` is
    only its head (see `head_seconds`); it defaults to the length of `audio`.
    """
    src = audio if clipped_source is None else clipped_source
    duration = len(audio) / SAMPLE_RATE if duration is None else duration
    clipped = float(np.mean(np.abs(src) >= FULL_SCALE)) if src.size else 0.0
    peak_dbfs = _dbfs(float(np.max(np.abs(src))) if src.size else 0.0)
    flags: list[str] = []
    notes: list[str] = []
    trimmed_at = None
    out = audio
    if duration > MAX_SECONDS:
        cut = quiet_cut(audio)
        out = fade_out(audio[:cut])
        trimmed_at = round(cut / SAMPLE_RATE, 3)
        notes.append(f"trimmed from {duration:.1f} s at a quiet point ({trimmed_at:.1f} s) with a fade")
    out = normalise_peak(out)
    rms = frame_rms(out)
    silent = float(np.mean(rms < 10 ** (SILENCE_DBFS / 20))) if out.size else 1.0
    if clipped > CLIP_LIMIT:
        flags.append("clipping")
        notes.append(f"{clipped:.2%} of samples at full scale (limit {CLIP_LIMIT:.1%})")
    if silent > SILENCE_LIMIT:
        flags.append("silence")
        notes.append(f"{silent:.0%} of the track below {SILENCE_DBFS:g} dBFS (limit {SILENCE_LIMIT:.0%})")
    components = score(clipped, silent, peak_dbfs)
    if duration < MIN_SECONDS:
        verdict = "too_short"
        notes.insert(0, f"{duration:.1f} s is shorter than {MIN_SECONDS:g} s: skipped")
        out = out[:0]
    elif flags:
        verdict = flags[0]
    else:
        verdict = "trimmed" if trimmed_at is not None else "ok"
    report = Report(
        verdict=verdict,
        usable=verdict in ("ok", "trimmed"),
        duration_sec=round(duration, 3),
        output_sec=round(len(out) / SAMPLE_RATE, 3),
        clipped_fraction=round(clipped, 6),
        silent_fraction=round(silent, 4),
        input_peak_dbfs=round(peak_dbfs, 2) if peak_dbfs > -np.inf else -999.0,
        score=round(sum(components.values()), 1),
        components=components,
        flags=flags,
        notes=notes,
        trimmed_at_sec=trimmed_at,
    )
    return out, report
