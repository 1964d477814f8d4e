"""A one-shot report of what this installation can do, for `:checkhealth lofi` (no daemon needed)."""

from __future__ import annotations

import importlib.metadata
import platform
import sys
from typing import Any

from . import __version__
from .config import Settings

PACKAGES = [
    "onnxruntime",
    "numpy",
    "scipy",
    "tokenizers",
    "soundfile",
    "sounddevice",
    "huggingface_hub",
    "platformdirs",
    "pydantic",
]


def _version(pkg: str) -> str | None:
    try:
        return importlib.metadata.version(pkg)
    except importlib.metadata.PackageNotFoundError:
        return None


def report(settings: Settings) -> dict[str, Any]:
    out: dict[str, Any] = {
        "version": __version__,
        "python": platform.python_version(),
        "executable": sys.executable,
        "packages": {p: _version(p) for p in PACKAGES},
        "log_file": str(settings.log_dir / "daemon.log"),
    }
    try:
        import onnxruntime as ort

        out["providers"] = ort.get_available_providers()
    except Exception as exc:
        out["providers"] = []
        out["providers_error"] = str(exc)
    out["backends"] = _backends(settings)
    out["lyrics"] = _lyrics()
    out["audio"] = _audio()
    out["cache"] = _cache(settings)
    return out


def _backends(settings: Settings) -> list[dict[str, Any]]:
    from .backends import create_backends

    rows = []
    try:
        backends = create_backends(settings, lambda *_: None)
    except Exception as exc:
        return [{"name": "?", "installed": False, "error": str(exc)}]
    for b in backends.values():
        row: dict[str, Any] = {"name": b.name, "display_name": b.display_name}
        try:
            row.update(b.status())  # backends report their local model `dir` themselves
            row["installed"] = b.is_installed()
            if row["installed"]:
                row["verify"] = _verify_cheap(b)
        except Exception as exc:
            row.update(installed=False, error=str(exc))
        rows.append(row)
    return rows


def _lyrics() -> dict[str, Any]:
    """ACE-Step lyric languages: which this install cleans as upstream does, and what the others need."""
    from .backends.ace_step import lyric_lang

    return {"languages": lyric_lang.languages(), "setup": lyric_lang.SETUP_HINT}


def _verify_cheap(backend: Any) -> dict[str, Any]:
    """Sizes and ONNX structure, no hashing (`lofi-daemon verify` hashes too): {ok, problems}."""
    from .models.verify import repair_hint, verify_backend

    report = verify_backend(backend, deep=False)
    if not report:
        return {"ok": True, "problems": []}
    problems = [f"{f['file']}: {f['problem']}" for f in report["files"] if not f["ok"]]
    out: dict[str, Any] = {"ok": report["ok"], "problems": problems}
    if not report["ok"]:
        out["hint"] = repair_hint(backend.name)
    return out


def _audio() -> dict[str, Any]:
    try:
        import sounddevice as sd

        devices = [
            {
                "index": i,
                "name": d["name"],
                "channels": d["max_output_channels"],
                "sample_rate": d["default_samplerate"],
            }
            for i, d in enumerate(sd.query_devices())
            if d["max_output_channels"] > 0
        ]
        default = int(sd.default.device[1])  # sounddevice's (input, output) pair
        return {
            "ok": bool(devices),
            "devices": devices,
            "default": default,
            **({} if devices else {"error": "no audio output device found"}),
        }
    except Exception as exc:  # OSError when PortAudio itself is missing
        return {"ok": False, "devices": [], "error": str(exc)}


def _cache(settings: Settings) -> dict[str, Any]:
    root = settings.tracks_dir
    files = [p for p in root.glob("*") if p.is_file()] if root.is_dir() else []
    size = sum(p.stat().st_size for p in files)
    out: dict[str, Any] = {"dir": str(root), "size_mb": round(size / 1e6, 2), "files": len(files)}
    from .cache.store import unsafe_cache_reason

    reason = unsafe_cache_reason(root)
    if reason:
        out["error"] = reason  # the same refusal the daemon's store would give
    return out
