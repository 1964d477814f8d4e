"""`dataset`: prepared tracks with their prompt and lyrics files → the Hugging Face `datasets` folders upstream's
`convert2hf_dataset.py` writes (`Dataset.save_to_disk`) and its trainer reads (`load_from_disk`), with a seeded
validation split, a repeat count, a content hash and JSON counts; `--features` also precomputes what training
reuses every epoch (features.py, written with the trainer).

Rows: keys (the track's name), filename (absolute path), tags (the prompt split on ", "), speaker_emb_path (""),
norm_lyrics, recaption ({}), as upstream. The `datasets` package cannot be installed beside this project's pins
(every release that fits huggingface_hub < 1 pins an older fsspec), so the folder is written with pyarrow in the
layout `datasets` writes — tests/fixtures/hf_dataset_upstream was written by datasets 3.4.1 (upstream's pin) and
the test compares the files.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any

from lofi_daemon.models.download import sha256_file
from tqdm import tqdm

from . import env, metadata
from .errors import ENVIRONMENT, FAILED_INPUT, USAGE, LoraError

HELP = {"dataset": "convert prepared tracks to upstream's Hugging Face dataset format (train/validation)"}
DATA_FILE = "data-00000-of-00001.arrow"
_STRING = {"dtype": "string", "_type": "Value"}
# the `datasets` features upstream's rows infer, in the spelling datasets 3.x writes (4.x reads it as well)
FEATURES: dict[str, Any] = {
    "keys": _STRING,
    "filename": _STRING,
    "tags": {"feature": _STRING, "_type": "Sequence"},
    "speaker_emb_path": _STRING,
    "norm_lyrics": _STRING,
    "recaption": {},
}


def arrow_schema() -> Any:
    """The Arrow schema `datasets` writes for upstream's rows, its features in the schema metadata."""
    import pyarrow as pa  # only when writing: `--help` and the other subcommands never pay for it

    return pa.schema(
        [
            ("keys", pa.string()),
            ("filename", pa.string()),
            ("tags", pa.list_(pa.string())),
            ("speaker_emb_path", pa.string()),
            ("norm_lyrics", pa.string()),
            ("recaption", pa.struct([])),
        ],
        metadata={"huggingface": json.dumps({"info": {"features": FEATURES}})},
    )


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    parser.add_argument("--data-dir", type=Path, help=f"dataset folder (default ${env.DATA_DIR_ENV})")
    parser.add_argument("--out", type=Path, help="output folder (default DATA_DIR/dataset)")
    parser.add_argument(
        "--repeat", type=int, default=1, help="training rows per track (upstream: repeat_count)"
    )
    parser.add_argument(
        "--val-fraction", type=float, default=0.1, help="share of tracks held out (default 0.1)"
    )
    parser.add_argument("--seed", type=int, default=42, help="seed of the validation split (default 42)")
    parser.add_argument(
        "--features", action="store_true", help="also precompute DCAE latents and text states"
    )
    parser.add_argument(
        "--base", type=Path, help=f"ACE-Step model folder for --features (${env.ACE_STEP_DIR_ENV})"
    )


def read_track(name: str, audio: Path) -> dict[str, Any]:
    """Upstream's row for one track (its prompt and lyrics files must exist)."""
    prompt, lyrics = (audio.with_name(name + s) for s in metadata.SIDECARS)
    missing = [p.name for p in (prompt, lyrics) if not p.is_file()]
    if missing:
        raise LoraError(f"{name}: no {' or '.join(missing)} (run `lofi-lora prompts`)", FAILED_INPUT)
    tags = prompt.read_text(encoding="utf-8").strip().split(", ")
    return {
        "keys": name,
        "filename": str(audio.resolve()),
        "tags": tags,
        "speaker_emb_path": "",
        "norm_lyrics": lyrics.read_text(encoding="utf-8").strip(),
        "recaption": {},
    }


def split(names: list[str], fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """(train, validation) names: a seeded shuffle; at least one validation track once there are two tracks."""
    if not names or fraction == 0:
        return sorted(names), []
    order = sorted(names)
    random.Random(seed).shuffle(order)
    n_val = min(len(order) - 1, max(1, round(fraction * len(order))))
    return sorted(order[n_val:]), sorted(order[:n_val])


def content_hash(rows: list[dict[str, Any]], params: dict[str, Any]) -> str:
    """sha256 over the audio bytes, tags and lyrics of every track, and the split parameters: equal hashes mean
    the same training data (paths are left out, so a moved folder keeps its hash)."""
    items = [
        {
            "keys": r["keys"],
            "audio": sha256_file(Path(r["filename"])),
            "tags": r["tags"],
            "lyrics": r["norm_lyrics"],
        }
        for r in sorted(rows, key=lambda r: r["keys"])
    ]
    canon = json.dumps({"tracks": items, **params}, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canon.encode()).hexdigest()


def write_hf_dataset(out: Path, rows: list[dict[str, Any]], fingerprint: str) -> None:
    """One `Dataset.save_to_disk` folder (a single shard), built beside `out` and renamed into place."""
    import pyarrow as pa

    schema = arrow_schema()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        table = pa.Table.from_pylist(rows, schema=schema)
        with pa.OSFile(str(tmp / DATA_FILE), "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:
            writer.write_table(table)
        info = {"citation": "", "description": "", "features": FEATURES, "homepage": "", "license": ""}
        (tmp / "dataset_info.json").write_text(json.dumps(info, indent=2))
        state = {
            "_data_files": [{"filename": DATA_FILE}],
            "_fingerprint": fingerprint,
            "_format_columns": None,
            "_format_kwargs": {},
            "_format_type": None,
            "_output_all_columns": False,
            "_split": None,
        }
        (tmp / "state.json").write_text(json.dumps(state, indent=2))
        if out.exists():
            old = out.with_name(f".{out.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _precompute(rows: list[dict[str, Any]], data_dir: Path, base: Path, out: Path, quiet: bool) -> int:
    """The hook to the trainer's feature precompute (scripts/lofi_lora/features.py: DCAE latents, text states),
    for the training tracks only (validation stays unseen), into `out` (where `train` looks by default)."""
    try:
        from . import features
    except ModuleNotFoundError as e:
        if e.name != f"{__package__}.features":
            raise LoraError(f"--features needs {e.name}: run scripts/setup --train", ENVIRONMENT) from e
        raise LoraError(
            "--features needs scripts/lofi_lora/features.py, which this install lacks", ENVIRONMENT
        ) from e
    written = features.build(
        rows, data_dir, base, out, progress=lambda it: tqdm(it, desc="features", disable=quiet)
    )
    return len(written)


def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.repeat < 1:
        raise LoraError("--repeat must be at least 1", USAGE)
    if not 0 <= args.val_fraction < 1:
        raise LoraError("--val-fraction must be in [0, 1)", USAGE)
    data_dir = env.data_dir(args.data_dir)
    base = env.ace_step_dir(args.base) if args.features else None  # checked before any work
    out = args.out if args.out is not None else data_dir / "dataset"
    known = metadata.find_tracks(metadata.audio_dir(data_dir))
    rows: list[dict[str, Any]] = []
    skipped: dict[str, str] = {}
    for name, audio in known.items():
        try:
            rows.append(read_track(name, audio))
        except LoraError as e:
            skipped[name] = e.message
    if not rows:
        why = f" ({len(skipped)} without prompt/lyrics files)" if skipped else ""
        raise LoraError(f"no tracks to convert in {metadata.audio_dir(data_dir)}{why}", FAILED_INPUT)
    train_names, val_names = split([r["keys"] for r in rows], args.val_fraction, args.seed)
    by_name = {r["keys"]: r for r in rows}
    params = {"seed": args.seed, "val_fraction": args.val_fraction, "repeat": args.repeat}
    digest = content_hash(rows, params)
    train_rows = [by_name[n] for n in train_names] * args.repeat  # upstream: all_examples * repeat_count
    val_rows = [by_name[n] for n in val_names]
    result: dict[str, Any] = {
        "out": str(out),
        "content_hash": digest,
        "counts": {
            "tracks": len(rows),
            "train_tracks": len(train_names),
            "validation_tracks": len(val_names),
            "train_rows": len(train_rows),
            "validation_rows": len(val_rows),
            "skipped": len(skipped),
        },
        **params,
        "validation_keys": val_names,
        "skipped": skipped,
    }
    if args.dry_run:
        return result
    write_hf_dataset(out / "train", train_rows, digest[:16])
    if val_rows:
        write_hf_dataset(out / "validation", val_rows, digest[16:32])
    else:
        shutil.rmtree(out / "validation", ignore_errors=True)
    if base is not None:
        features_dir = data_dir / "features"
        train_unique = [by_name[n] for n in train_names]
        result["features"] = _precompute(train_unique, data_dir, base, features_dir, args.quiet)
        result["features_dir"] = str(features_dir)
    manifest = out / "manifest.json"
    tmp = out / ".manifest.json.tmp"
    tmp.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    os.replace(tmp, manifest)
    result["manifest"] = str(manifest)
    return result
