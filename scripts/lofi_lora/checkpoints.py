"""Training checkpoints: `checkpoints/step-NNNNNNNN/` folders and one `checkpoints/manifest.json` naming each
complete checkpoint with the SHA-256 of every file in it.

A checkpoint is written into a hidden temporary folder, renamed into place, and only then entered in the manifest
(itself replaced atomically). So a crash at any moment leaves either no entry or a complete one; a checkpoint whose
folder is missing, unlisted, or whose files no longer hash to the manifest (a disk that lost a write, a copy cut
short) is *torn*: resume skips it and says so.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lofi_daemon.models.download import sha256_file as sha256

from .errors import FAILED_INPUT, LoraError

MANIFEST = "manifest.json"
PREFIX = "step-"


@dataclass(frozen=True)
class Checkpoint:
    path: Path
    step: int


def read_manifest(root: Path) -> dict:
    f = Path(root) / MANIFEST
    if not f.is_file():
        return {"checkpoints": {}}
    try:
        data = json.loads(f.read_text())
    except (OSError, ValueError) as e:
        raise LoraError(f"{f} is unreadable ({e}); move it aside to start over", FAILED_INPUT) from e
    data.setdefault("checkpoints", {})
    return data


def _write_json_atomic(path: Path, data: dict) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=1, sort_keys=True)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def save(root: Path, step: int, write: Callable[[Path], None]) -> Checkpoint:
    """`write(folder)` fills a fresh folder; it becomes `root/step-N` and enters the manifest with its hashes."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    name = f"{PREFIX}{step:08d}"
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{name}."))
    try:
        write(tmp)
        for f in tmp.iterdir():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        hashes = {f.name: sha256(f) for f in sorted(tmp.iterdir())}
        dst = root / name
        if dst.exists():
            shutil.rmtree(dst)
        os.replace(tmp, dst)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    manifest = read_manifest(root)
    manifest["checkpoints"][name] = {"step": step, "files": hashes}
    _write_json_atomic(root / MANIFEST, manifest)
    return Checkpoint(dst, step)


def problems(path: Path) -> list[str]:
    """Why the checkpoint folder `path` is not intact (empty when it is), judged against its root's manifest."""
    path = Path(path)
    entry = read_manifest(path.parent)["checkpoints"].get(path.name)
    if entry is None:
        return [f"{path.name} is not in {path.parent / MANIFEST} (an unfinished write)"]
    out = []
    for fname, digest in entry["files"].items():
        f = path / fname
        if not f.is_file():
            out.append(f"{fname} is missing")
        elif sha256(f) != digest:
            out.append(f"{fname} does not match its hash in the manifest")
    return out


def latest_valid(root: Path) -> tuple[Checkpoint | None, list[dict]]:
    """The newest intact checkpoint, and the newer ones skipped as torn (name and reasons)."""
    root = Path(root)
    if not root.is_dir():
        return None, []
    manifest = read_manifest(root)["checkpoints"]
    names = set(manifest) | {p.name for p in root.iterdir() if p.is_dir() and p.name.startswith(PREFIX)}
    skipped = []
    for name in sorted(names, reverse=True):
        why = problems(root / name)
        if not why:
            return Checkpoint(root / name, int(manifest[name]["step"])), skipped
        skipped.append({"checkpoint": name, "problems": why})
    return None, skipped


def resolve(path: Path) -> Checkpoint:
    """A checkpoint the user named (`--ckpt-path`): it must be intact."""
    path = Path(path).expanduser()
    if not path.is_dir():
        raise LoraError(f"{path} is not a checkpoint folder", FAILED_INPUT)
    why = problems(path)
    if why:
        raise LoraError(f"checkpoint {path} is torn: {'; '.join(why)}", FAILED_INPUT)
    return Checkpoint(path, int(read_manifest(path.parent)["checkpoints"][path.name]["step"]))


def all_valid(root: Path) -> list[Checkpoint]:
    root = Path(root)
    manifest = read_manifest(root)["checkpoints"]
    return [
        Checkpoint(root / n, int(e["step"])) for n, e in sorted(manifest.items()) if not problems(root / n)
    ]
