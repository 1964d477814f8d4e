"""The dataset folder's records (issue 15 item 8): which style each track is, where it came from (provider,
licence, cost, date), what people scored it, how the tracks spread over the categories, and folders by category.

Layout of a dataset folder (DATA_DIR):
    audio/[<category>/]NAME.flac   prepared tracks (`prepare`), with NAME_prompt.txt and NAME_lyrics.txt (`prompts`)
    metadata/tracks.json           one record per track, validated by schemas/tracks.schema.json
    dataset/                       what `dataset` writes for training
A track's NAME (the file stem) is its key everywhere, as in upstream's dataset.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
from collections import Counter
from pathlib import Path
from typing import Any, Literal

from lofi_daemon import presets
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from . import env
from .audio_io import AUDIO_SUFFIXES
from .errors import FAILED_INPUT, USAGE, LoraError

HELP = {"metadata": "style assignment, sources, human scores, distribution and folders by category"}
ACTIONS = ("assign", "source", "score", "stats", "organize", "check")
SCHEMA = Path(__file__).with_name("schemas") / "tracks.schema.json"
SIDECARS = ("_prompt.txt", "_lyrics.txt")  # upstream's text files beside each track


class Source(BaseModel):
    model_config = ConfigDict(extra="forbid")

    provider: str = Field(
        min_length=1, description="who made or sold the track (a person, a library, a model)"
    )
    licence: str = Field(min_length=1, description="an SPDX id or the licence's name")
    cost: float = Field(default=0.0, ge=0, allow_inf_nan=False)
    currency: str = Field(default="USD", pattern=r"^[A-Z]{3}$")
    date: dt.date = Field(description="when it was acquired")
    url: str | None = None


class HumanScore(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rater: str = Field(min_length=1)
    score: int = Field(ge=1, le=5, description="1 (unusable) … 5 (exactly the sound we want)")
    date: dt.date
    note: str = ""


class Track(BaseModel):
    model_config = ConfigDict(extra="forbid")

    preset: str | None = None
    source: Source | None = None
    human_scores: list[HumanScore] = Field(default_factory=list)

    @field_validator("preset")
    @classmethod
    def _known_preset(cls, name: str | None) -> str | None:
        if name is not None:
            try:
                presets.get(name)
            except KeyError as e:
                raise ValueError(e.args[0]) from None
        return name

    @property
    def category(self) -> str | None:
        return presets.get(self.preset).category if self.preset else None


class TracksFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: Literal[1] = 1
    tracks: dict[str, Track] = Field(default_factory=dict)


def schema() -> dict[str, Any]:
    return TracksFile.model_json_schema()


def tracks_path(data_dir: Path) -> Path:
    return data_dir / "metadata" / "tracks.json"


def load(data_dir: Path) -> TracksFile:
    path = tracks_path(data_dir)
    if not path.exists():
        return TracksFile()
    try:
        return TracksFile.model_validate_json(path.read_bytes())
    except ValidationError as e:
        raise LoraError(f"{path} does not match {SCHEMA.name}: {e}", FAILED_INPUT) from None


def save(data_dir: Path, data: TracksFile) -> Path:
    path = tracks_path(data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(data.model_dump_json(indent=2, exclude_defaults=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def audio_dir(data_dir: Path) -> Path:
    return data_dir / "audio"


def find_tracks(root: Path) -> dict[str, Path]:
    """Audio files under `root` by name (stem), in every category folder; two files of one name are an error."""
    found: dict[str, Path] = {}
    if not root.is_dir():
        return found
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES and not p.name.startswith("."):
            if p.stem in found:
                raise LoraError(
                    f"two tracks named {p.stem}: {found[p.stem]} and {p}; rename one", FAILED_INPUT
                )
            found[p.stem] = p
    return found


def distribution(data: TracksFile, names: list[str]) -> dict[str, Any]:
    """Tracks per category and per preset (every category listed, empty ones as 0), licences and total cost."""
    records = [data.tracks.get(n, Track()) for n in names]
    cats = Counter(r.category or "unassigned" for r in records)
    order = [*presets.CATEGORIES, "unassigned"]
    costs: Counter[str] = Counter()
    for r in records:
        if r.source is not None:
            costs[r.source.currency] += r.source.cost
    scored = [s.score for r in records for s in r.human_scores]
    return {
        "tracks": len(records),
        "categories": {c: cats.get(c, 0) for c in order},
        "presets": dict(sorted(Counter(r.preset for r in records if r.preset).items())),
        "licences": dict(sorted(Counter(r.source.licence for r in records if r.source).items())),
        "without_source": sum(r.source is None for r in records),
        "cost": {k: round(v, 2) for k, v in sorted(costs.items())},
        "human_scores": len(scored),
        "mean_human_score": round(sum(scored) / len(scored), 2) if scored else None,
    }


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    parser.add_argument("action", choices=ACTIONS, help="what to do: " + ", ".join(ACTIONS))
    parser.add_argument("names", nargs="*", help="track names (file stems); assign/source/score need them")
    parser.add_argument("--data-dir", type=Path, help=f"dataset folder (default ${env.DATA_DIR_ENV})")
    parser.add_argument("--preset", help="assign: the style preset")
    parser.add_argument("--provider", help="source: who made or sold the tracks")
    parser.add_argument("--licence", "--license", dest="licence", help="source: the licence (SPDX id)")
    parser.add_argument("--cost", type=float, default=0.0, help="source: price paid per track (default 0)")
    parser.add_argument("--currency", default="USD", help="source: ISO 4217 code (default USD)")
    parser.add_argument("--date", help="source/score: YYYY-MM-DD (default today)")
    parser.add_argument("--url", help="source: where it came from")
    parser.add_argument("--rater", help="score: who listened")
    parser.add_argument("--score", type=int, help="score: 1 (unusable) … 5 (exactly the sound we want)")
    parser.add_argument("--note", default="", help="score: a comment")


def _named(args: argparse.Namespace, known: dict[str, Path]) -> list[str]:
    if not args.names:
        raise LoraError(f"`metadata {args.action}` needs track names", USAGE)
    unknown = [n for n in args.names if n not in known]
    if unknown:
        raise LoraError(f"no prepared track named {', '.join(unknown)} in the audio folder", USAGE)
    return list(args.names)


def _need(args: argparse.Namespace, *flags: str) -> None:
    missing = [f"--{f}" for f in flags if getattr(args, f) is None]
    if missing:
        raise LoraError(f"`metadata {args.action}` needs {', '.join(missing)}", USAGE)


def _date(raw: str | None) -> dt.date:
    try:
        return dt.date.fromisoformat(raw) if raw else dt.date.today()
    except ValueError:
        raise LoraError(f"--date {raw}: expected YYYY-MM-DD", USAGE) from None


def organize(data_dir: Path, data: TracksFile, known: dict[str, Path], dry_run: bool) -> list[dict[str, str]]:
    """Move each assigned track (audio and its text files) into audio/<category>/."""
    root = audio_dir(data_dir)
    moves = []
    for name, path in known.items():
        record = data.tracks.get(name)
        if record is None or record.category is None:
            continue
        dest_dir = root / record.category
        if path.parent == dest_dir:
            continue
        for src in [path] + [path.with_name(name + s) for s in SIDECARS]:
            if src.exists():
                moves.append({"from": str(src), "to": str(dest_dir / src.name)})
    if not dry_run:
        for m in moves:
            Path(m["to"]).parent.mkdir(parents=True, exist_ok=True)
            shutil.move(m["from"], m["to"])
    return moves


def run(args: argparse.Namespace) -> dict[str, Any]:
    data_dir = env.data_dir(args.data_dir)
    data = load(data_dir)
    known = find_tracks(audio_dir(data_dir))
    changed = False
    result: dict[str, Any] = {"data_dir": str(data_dir), "action": args.action}
    if args.action == "assign":
        _need(args, "preset")
        try:
            preset = presets.get(args.preset)
        except KeyError as e:
            raise LoraError(e.args[0], USAGE) from None
        for name in _named(args, known):
            data.tracks.setdefault(name, Track()).preset = preset.name
        result.update(assigned=len(args.names), preset=preset.name, category=preset.category)
        changed = True
    elif args.action == "source":
        _need(args, "provider", "licence")
        try:
            source = Source(
                provider=args.provider,
                licence=args.licence,
                cost=args.cost,
                currency=args.currency,
                date=_date(args.date),
                url=args.url,
            )
        except ValidationError as e:
            raise LoraError(f"bad source record: {e}", USAGE) from None
        for name in _named(args, known):
            data.tracks.setdefault(name, Track()).source = source
        result.update(recorded=len(args.names))
        changed = True
    elif args.action == "score":
        _need(args, "rater", "score")
        try:
            score = HumanScore(rater=args.rater, score=args.score, date=_date(args.date), note=args.note)
        except ValidationError as e:
            raise LoraError(f"bad score: {e}", USAGE) from None
        for name in _named(args, known):
            data.tracks.setdefault(name, Track()).human_scores.append(score)
        result.update(scored=len(args.names))
        changed = True
    elif args.action == "organize":
        moves = organize(data_dir, data, known, args.dry_run)
        result.update(moved=len(moves), moves=moves)
    elif args.action == "check":
        orphans = sorted(set(data.tracks) - set(known))
        unrecorded = sorted(set(known) - set(data.tracks))
        result.update(valid=True, orphans=orphans, unrecorded=unrecorded, schema=str(SCHEMA))
    if args.action == "stats" or args.action == "check":
        result["distribution"] = distribution(data, sorted(known))
    if changed and not args.dry_run:
        result["metadata"] = str(save(data_dir, data))
    return result
