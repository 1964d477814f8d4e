"""Is an installed model intact? And if not, fetch the bad files again.

Two depths, because hashing gigabytes takes seconds:
* cheap (health, every download's already-present files): each file is there, has its known size, and every
  `.onnx` is structurally an ONNX model — its top-level protobuf fields are walked end to end (tags and lengths
  only, a few reads), so a truncated, empty or foreign file (an HTML error page, random bytes) is caught without
  parsing the graph. A bit flip inside the graph is not.
* deep (`lofi-daemon verify`, `download_backend {repair: true}`): also the content hash — the registry's sha256
  when known, and always the hash the hub announced and the file is stored under (blobs/<sha256> for LFS files,
  blobs/<git blob id> for small ones).
Loading with onnxruntime is the only complete test but costs seconds and the model's RAM (GBs for ACE-Step), so
it stays with the first generation; its MODEL_LOAD_FAILED names this repair.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import ErrorCode, LofiError
from . import download as hub
from .registry import ModelVariant

log = logging.getLogger(__name__)

# ModelProto: 1 ir_version (varint), 7 graph (message); both required for a model onnxruntime can load
_IR_VERSION, _GRAPH = 1, 7
_MAX_IR_VERSION = 64  # ONNX is at 11 (2025); far above that means garbage that happens to parse


def _varint(data: bytes) -> tuple[int, int]:
    """(value, bytes used) of the protobuf varint at the start of `data`; ValueError if it does not end."""
    value = 0
    for i, byte in enumerate(data[:10]):
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            return value, i + 1
    raise ValueError("bad varint")


def onnx_problem(path: Path) -> str | None:
    """Why `path` is not an ONNX model at the top level, or None. Reads only field tags and lengths."""
    try:
        size = path.stat().st_size
        seen: dict[int, int] = {}
        with open(path, "rb") as fh:
            pos = 0
            while pos < size:
                fh.seek(pos)
                head = fh.read(20)
                key, n = _varint(head)
                field, wire = key >> 3, key & 7
                if field == 0:
                    return "not an ONNX model (bad protobuf field)"
                if wire == 0:
                    value, m = _varint(head[n:])
                    pos += n + m
                elif wire == 2:
                    value, m = _varint(head[n:])
                    pos += n + m + value
                elif wire in (1, 5):
                    value = 0
                    pos += n + (8 if wire == 1 else 4)
                else:
                    return "not an ONNX model (bad protobuf wire type)"
                if pos > size:
                    return f"truncated: a field runs {pos - size} bytes past the end of the file"
                seen.setdefault(field, value if wire == 0 else -wire)
    except ValueError:
        return "not an ONNX model (bad protobuf)"
    except OSError as exc:
        return f"cannot read: {exc.strerror or exc}"
    ir = seen.get(_IR_VERSION)
    if ir is None or not 1 <= ir <= _MAX_IR_VERSION:
        return "not an ONNX model (no ir_version)"
    if seen.get(_GRAPH) != -2:
        return "not an ONNX model (no graph)"
    return None


def check_onnx(path: Path, name: str) -> None:
    """MODEL_DOWNLOAD_FAILED naming `name` if an `.onnx` file is not an ONNX model."""
    if path.suffix != ".onnx" and not name.endswith(".onnx"):
        return
    problem = onnx_problem(path)
    if problem:
        raise LofiError(
            ErrorCode.MODEL_DOWNLOAD_FAILED, f"{name}: {problem}; the file is corrupted", file=name
        )


def verify_variant(variant: ModelVariant, deep: bool = True) -> list[dict[str, Any]]:
    """One row per file of a hub variant: {file, ok, path?, problem?}. No network."""
    rows: list[dict[str, Any]] = []
    for f in variant.files:
        path = hub.cached_file(variant, f)
        if path is None:
            rows.append({"file": f.path, "ok": False, "problem": "missing"})
            continue
        try:
            hub.verify_file(path, f, deep=deep)
            check_onnx(path, f.path)
        except LofiError as exc:
            rows.append({"file": f.path, "ok": False, "path": str(path), "problem": exc.message})
        else:
            rows.append({"file": f.path, "ok": True, "path": str(path)})
    return rows


def verify_local(directory: Path) -> list[dict[str, Any]]:
    """A user's model folder: every `.onnx` in it must be an ONNX model (no hashes are known for it)."""
    rows = []
    for path in sorted(Path(directory).expanduser().rglob("*.onnx")):
        problem = onnx_problem(path)
        row: dict[str, Any] = {"file": str(path), "ok": problem is None, "path": str(path)}
        if problem:
            row["problem"] = problem
        rows.append(row)
    return rows


def verify_backend(backend: Any, deep: bool = True) -> dict[str, Any]:
    """{backend, source, ok, files} for a backend with model files (`local_dir` / `variant()`); {} for others."""
    if not hasattr(backend, "variant") or not hasattr(backend, "local_dir"):
        return {}
    if backend.local_dir is not None:
        rows, source = verify_local(backend.local_dir), "local"
    else:
        rows, source = verify_variant(backend.variant(), deep), "hub"
    return {
        "backend": backend.name,
        "source": source,
        "deep": deep and source == "hub",
        "ok": bool(rows) and all(r["ok"] for r in rows),
        "files": rows,
    }


def repair_variant(
    variant: ModelVariant,
    progress: Callable[[dict[str, Any]], None] | None,
    cancel: Any,
) -> list[str]:
    """Discard the files that fail deep verification — all of them when every file verifies (the model then
    fails to load for a reason no hash shows, and a fresh copy is the only remedy) — and download again.
    Returns the repo paths fetched again."""
    rows = verify_variant(variant, deep=True)
    bad = [r for r in rows if not r["ok"]] or rows
    for r in bad:
        if "path" in r:
            log.warning("repair: discarding %s (%s)", r["file"], r.get("problem", "re-fetching everything"))
            hub.discard(Path(r["path"]))
    hub.download_variant(variant, progress, cancel)
    return [r["file"] for r in bad]


def repair_hint(backend: str) -> str:
    return (
        f"check the model files with `lofi-daemon verify {backend}` and fetch bad ones again with "
        f'`lofi-daemon download {backend} --repair` (RPC: download_backend {{"backend": "{backend}", '
        '"repair": true})'
    )
