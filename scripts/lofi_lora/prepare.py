"""`prepare`: raw audio → training-ready 48 kHz stereo files with a quality report; `validate`: one file's report."""

from __future__ import annotations

import argparse
import json
import logging
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any

from tqdm import tqdm

from . import env
from .audio_io import AUDIO_SUFFIXES, OUTPUT_FORMATS, is_audio, read_audio, to_stereo_48k, write_audio
from .errors import FAILED_INPUT, USAGE, LoraError
from .quality import head_seconds, process

HELP = {
    "prepare": "resample audio to 48 kHz stereo, trim, normalise, score it and write training files",
    "validate": "report one audio file's quality and verdict without writing anything",
}
REPORT_NAME = "prepare_report.json"
log = logging.getLogger("lofi_lora")


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    if command == "validate":
        parser.add_argument(
            "file", type=Path, help="an audio file (" + ", ".join(sorted(AUDIO_SUFFIXES)) + ")"
        )
        return
    parser.add_argument("input", type=Path, help="an audio file or a folder of them (searched recursively)")
    parser.add_argument("--data-dir", type=Path, help=f"dataset folder (default ${env.DATA_DIR_ENV})")
    parser.add_argument("--out", type=Path, help="where the prepared tracks go (default DATA_DIR/audio)")
    parser.add_argument("--format", choices=sorted(OUTPUT_FORMATS), default="flac", help="default flac")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument(
        "--keep-flagged", action="store_true", help="also write tracks flagged for clipping or silence"
    )


def analyse(path: Path) -> tuple[Any, dict[str, Any]]:
    """Decode and judge one file: (training audio or None, report dict)."""
    try:
        raw, sr = read_audio(path)
    except LoraError as e:
        return None, {"verdict": "unreadable", "usable": False, "notes": [e.message], "exit_code": e.code}
    head = raw[: int(head_seconds() * sr)]  # a long track is cut before 240 s: resample only what can be kept
    audio, report = process(to_stereo_48k(head, sr), clipped_source=raw, duration=len(raw) / sr)
    return audio, {"source_sample_rate": sr, "source_channels": int(raw.shape[1]), **asdict(report)}


def _prepare_one(job: tuple[Path, Path, str, bool, bool]) -> dict[str, Any]:
    src, dest, fmt, keep_flagged, dry_run = job
    audio, report = analyse(src)
    written = audio is not None and len(audio) > 0 and (report["usable"] or keep_flagged)
    if written and not dry_run:
        write_audio(dest, audio, fmt)
    return {"source": str(src), "output": str(dest) if written else None, **report}


def _inputs(root: Path) -> list[Path]:
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise LoraError(f"{root} does not exist", USAGE)
    return sorted(p for p in root.rglob("*") if is_audio(p) and not p.name.startswith("."))


def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.command == "validate":
        if not args.file.is_file():
            raise LoraError(f"{args.file} is not a file", USAGE)
        _, report = analyse(args.file)
        if report["verdict"] == "unreadable":
            raise LoraError(report["notes"][0], report["exit_code"])
        return {"file": str(args.file), **report}

    if args.workers < 1:
        raise LoraError("--workers must be at least 1", USAGE)
    out = args.out if args.out is not None else env.data_dir(args.data_dir) / "audio"
    sources = _inputs(args.input)
    if not sources:
        raise LoraError(f"no audio files ({', '.join(sorted(AUDIO_SUFFIXES))}) in {args.input}", FAILED_INPUT)
    suffix = OUTPUT_FORMATS[args.format]
    by_name: dict[str, Path] = {}
    for src in sources:
        if (other := by_name.setdefault(src.stem, src)) is not src:
            raise LoraError(f"{other} and {src} would both become {src.stem}{suffix}: rename one", USAGE)
    jobs = [(s, out / f"{s.stem}{suffix}", args.format, args.keep_flagged, args.dry_run) for s in sources]
    if same := [str(src) for src, dest, *_ in jobs if dest.resolve() == src.resolve()]:
        raise LoraError(
            f"the output would replace its source ({', '.join(same)}): choose another --out", USAGE
        )
    bar = tqdm(total=len(jobs), desc="prepare", unit="track", disable=args.quiet)
    tracks: list[dict[str, Any]] = []
    if args.workers == 1:
        for job in jobs:
            tracks.append(_prepare_one(job))
            bar.update()
    else:
        with ProcessPoolExecutor(max_workers=min(args.workers, len(jobs))) as pool:
            for track in pool.map(_prepare_one, jobs):
                tracks.append(track)
                bar.update()
    bar.close()
    counts: dict[str, int] = {}
    for t in tracks:
        counts[t["verdict"]] = counts.get(t["verdict"], 0) + 1
        if not t["usable"]:
            log.info("%s: %s (%s)", Path(t["source"]).name, t["verdict"], "; ".join(t["notes"]))
    result = {
        "out": str(out),
        "format": args.format,
        "tracks": len(tracks),
        "written": sum(t["output"] is not None for t in tracks),
        "verdicts": counts,
        "report": str(out / REPORT_NAME),
        "files": tracks,
    }
    if not args.dry_run:
        out.mkdir(parents=True, exist_ok=True)
        tmp = out / f".{REPORT_NAME}.tmp"
        tmp.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
        os.replace(tmp, out / REPORT_NAME)
    if result["written"] == 0 and not args.dry_run:
        raise LoraError(
            f"no usable track among {len(tracks)} (see {out / REPORT_NAME}): {counts}", FAILED_INPUT
        )
    return result
