"""`prompts`: upstream's `{name}_prompt.txt` (tags joined by ", ") and `{name}_lyrics.txt` (`[instrumental]` or
structured lyrics) beside each prepared track, from a style preset — for every track (batch) or, asking on the
terminal, for one (interactive).

The preset of a track is `--preset`, else the one `metadata assign` recorded; the preset used is recorded in
metadata/tracks.json. Lyrics come from `--lyrics-dir/NAME.txt`, else the preset's own, else `[instrumental]` for
an instrumental preset; a vocal preset without lyrics is reported and nothing is written for that track.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

from lofi_daemon import presets
from tqdm import tqdm

from . import env, metadata
from .errors import FAILED_INPUT, USAGE, LoraError

HELP = {
    "prompts": "write upstream's NAME_prompt.txt and NAME_lyrics.txt beside each track from a style preset"
}
SECTION = re.compile(r"^\[[^\]\n]+\]")  # a structure tag such as [verse] or [chorus]


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    parser.add_argument("names", nargs="*", help="track names (file stems); default every prepared track")
    parser.add_argument("--data-dir", type=Path, help=f"dataset folder (default ${env.DATA_DIR_ENV})")
    parser.add_argument("--preset", help="the style preset (default: the one `metadata assign` recorded)")
    parser.add_argument("--tags", default="", help='extra tags after the preset\'s, e.g. "vinyl, 70 bpm"')
    parser.add_argument("--lyrics-dir", type=Path, help="lyrics as NAME.txt files (for vocal presets)")
    parser.add_argument("--force", action="store_true", help="replace existing prompt and lyrics files")
    parser.add_argument("--interactive", "-i", action="store_true", help="ask on the terminal, for one track")
    parser.add_argument("--list", action="store_true", help="list the presets and their prompts")


def split_tags(text: str) -> list[str]:
    return [t.strip() for t in text.replace("\n", ",").split(",") if t.strip()]


def prompt_text(preset: presets.Preset, extra: list[str]) -> str:
    tags = preset.tag_list
    return ", ".join(tags + [t for t in extra if t not in tags])


def structured(lyrics: str) -> str:
    """Lyrics as upstream trains on them: starting with a structure tag (plain text becomes one [verse])."""
    text = lyrics.strip().replace("\r\n", "\n")
    return text if SECTION.match(text) else f"[verse]\n{text}"


def lyrics_for(name: str, preset: presets.Preset, lyrics_dir: Path | None) -> str:
    own = lyrics_dir / f"{name}.txt" if lyrics_dir is not None else None
    if own is not None and own.is_file() and own.read_text(encoding="utf-8").strip():
        return structured(own.read_text(encoding="utf-8"))
    if preset.lyrics is not None:
        return preset.lyrics
    if preset.needs_lyrics:
        where = f"{lyrics_dir}/{name}.txt" if lyrics_dir is not None else f"--lyrics-dir with {name}.txt"
        raise LoraError(f"{name}: preset {preset.name} is sung and needs lyrics ({where})", FAILED_INPUT)
    return presets.INSTRUMENTAL_LYRICS


def _preset(name: str | None) -> presets.Preset:
    try:
        return presets.get(name or "")
    except KeyError as e:
        raise LoraError(e.args[0], USAGE) from None


def write_pair(track: Path, prompt: str, lyrics: str, force: bool, dry_run: bool) -> str:
    """Write NAME_prompt.txt and NAME_lyrics.txt beside the track: "written", "kept" (exists) or "would write"."""
    files = [track.with_name(track.stem + s) for s in metadata.SIDECARS]
    if not force and any(f.exists() for f in files):
        return "kept"
    if dry_run:
        return "would write"
    for f, text in zip(files, (prompt, lyrics), strict=True):
        tmp = f.with_name(f".{f.name}.tmp")
        tmp.write_text(text + "\n", encoding="utf-8")
        tmp.replace(f)
    return "written"


def _ask(question: str) -> str:
    print(question, end="", file=sys.stderr, flush=True)
    line = sys.stdin.readline()
    if not line:
        raise LoraError("interactive input ended before the answers were complete", USAGE)
    return line.rstrip("\n")


def _interactive(name: str, current: str | None) -> tuple[presets.Preset, list[str], str | None]:
    """Ask for the preset (number or name), extra tags and, for a sung preset, the lyrics (on stderr/stdin)."""
    listing = sorted(presets.presets().values(), key=lambda p: (presets.CATEGORIES.index(p.category), p.name))
    for i, p in enumerate(listing, 1):
        print(f"{i:3d}  {p.category:<12} {p.name:<20} {p.description}", file=sys.stderr)
    default = f" [{current}]" if current else ""
    while True:
        answer = _ask(f"{name}: preset (number or name){default}: ").strip() or (current or "")
        if answer.isdigit() and 1 <= int(answer) <= len(listing):
            preset = listing[int(answer) - 1]
            break
        try:
            preset = presets.get(answer)
            break
        except KeyError as e:
            print(e.args[0], file=sys.stderr)
    print(f"prompt: {preset.prompt}", file=sys.stderr)
    extra = split_tags(_ask("extra tags, comma-separated (empty for none): "))
    lyrics = None
    if preset.needs_lyrics:
        print(
            "lyrics, one line each, [verse]/[chorus] tags allowed; end with an empty line:", file=sys.stderr
        )
        lines = []
        while line := _ask(""):
            lines.append(line)
        if not lines:
            raise LoraError(f"{name}: preset {preset.name} is sung and needs lyrics", USAGE)
        lyrics = structured("\n".join(lines))
    return preset, extra, lyrics


def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.list:
        return {
            "presets": {
                p.name: {"category": p.category, "extends": p.chain[1:2] or None, "prompt": p.prompt}
                for p in presets.presets().values()
            }
        }
    data_dir = env.data_dir(args.data_dir)
    known = metadata.find_tracks(metadata.audio_dir(data_dir))
    names = args.names or sorted(known)
    if unknown := [n for n in names if n not in known]:
        raise LoraError(
            f"no prepared track named {', '.join(unknown)} in {metadata.audio_dir(data_dir)}", USAGE
        )
    if not names:
        raise LoraError(
            f"no prepared tracks in {metadata.audio_dir(data_dir)}: run `lofi-lora prepare`", USAGE
        )
    data = metadata.load(data_dir)
    extra = split_tags(args.tags)
    if args.interactive:
        if len(names) != 1:
            raise LoraError("--interactive works on one track: name it", USAGE)
        record = data.tracks.get(names[0])
        preset, asked, lyrics = _interactive(names[0], args.preset or (record.preset if record else None))
        prompt = prompt_text(preset, extra + asked)
        lyrics = lyrics or lyrics_for(names[0], preset, args.lyrics_dir)
        status = write_pair(known[names[0]], prompt, lyrics, force=True, dry_run=args.dry_run)
        data.tracks.setdefault(names[0], metadata.Track()).preset = preset.name
        if not args.dry_run:
            metadata.save(data_dir, data)
        return {"tracks": {names[0]: {"preset": preset.name, "status": status, "prompt": prompt}}}
    fixed = _preset(args.preset) if args.preset else None
    results: dict[str, dict[str, Any]] = {}
    for name in tqdm(names, desc="prompts", unit="track", disable=args.quiet):
        record = data.tracks.get(name)
        preset = fixed or (presets.get(record.preset) if record and record.preset else None)
        if preset is None:
            results[name] = {"status": "skipped", "reason": "no preset: pass --preset or `metadata assign`"}
            continue
        try:
            lyrics = lyrics_for(name, preset, args.lyrics_dir)
        except LoraError as e:
            results[name] = {"preset": preset.name, "status": "skipped", "reason": e.message}
            continue
        prompt = prompt_text(preset, extra)
        status = write_pair(known[name], prompt, lyrics, args.force, args.dry_run)
        if status == "written":  # a kept pair keeps the assignment it was written with
            data.tracks.setdefault(name, metadata.Track()).preset = preset.name
        results[name] = {"preset": preset.name, "status": status, "prompt": prompt}
    if not args.dry_run:
        metadata.save(data_dir, data)
    counts: dict[str, int] = {}
    for r in results.values():
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    return {"counts": counts, "tracks": results}
