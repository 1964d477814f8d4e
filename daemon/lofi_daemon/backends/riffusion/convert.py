"""`lofi-daemon convert riffusion`: the one-time ONNX export of riffusion's PyTorch weights (the hub publishes no
ONNX export) into lofi's own model folder, where the backend finds it without any setting.

The export itself is scripts/export_riffusion.py (optimum's `text-to-image` exporter, then the UNet's CPU rewrite:
unet_graph.py), run as a child process with this Python: it needs torch, diffusers, transformers and optimum
(`scripts/setup --export`), which the daemon never imports. It writes into a temporary folder beside the
destination and renames it into place once the layout is complete, so a failed or interrupted export leaves no half
model behind.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from ...errors import ErrorCode, LofiError
from .pipeline import missing_files

EXPORT_MODULES = ("torch", "diffusers", "transformers", "optimum")
REPO = Path(__file__).resolve().parents[4]  # daemon/lofi_daemon/backends/riffusion → the checkout
SCRIPT = REPO / "scripts" / "export_riffusion.py"


def missing_export_modules() -> list[str]:
    return [m for m in EXPORT_MODULES if importlib.util.find_spec(m) is None]


def check_can_export() -> None:
    absent = missing_export_modules()
    if absent:
        raise LofiError(
            ErrorCode.BACKEND_NOT_INSTALLED,
            f"converting Riffusion to ONNX needs {', '.join(absent)} (the export tools, never used at run "
            "time): install them once with `scripts/setup --export` in the lofi checkout, then run "
            "`lofi-daemon convert riffusion` again",
            missing=absent,
        )
    if not SCRIPT.is_file():
        raise LofiError(
            ErrorCode.BACKEND_NOT_INSTALLED,
            f"the exporter {SCRIPT} is not here: converting needs lofi's source checkout (scripts/)",
        )


def check_source(src: Path) -> None:
    if not (src / "model_index.json").is_file() or not (src / "unet").is_dir():
        raise LofiError(
            ErrorCode.MODEL_NOT_FOUND,
            f"{src} is not a diffusers-layout Stable Diffusion model (model_index.json, unet/, vae/, "
            "text_encoder/, tokenizer/): give the folder of riffusion/riffusion-model-v1",
            dir=str(src),
        )


def convert(src: Path, out: Path, run: Callable[..., subprocess.CompletedProcess] = subprocess.run) -> Path:
    """Export `src` (diffusers layout) to ONNX at `out`; returns `out`. LofiError on every failure."""
    check_can_export()
    check_source(src)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.converting-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        done = run([sys.executable, str(SCRIPT), "--model", str(src), "--out", str(tmp)], check=False)
        absent = missing_files(tmp)
        if done.returncode != 0 or absent:
            raise LofiError(
                ErrorCode.MODEL_LOAD_FAILED,
                f"the ONNX export of {src} failed (exit {done.returncode}"
                + (f"; missing {', '.join(absent)}" if absent else "")
                + "); its output above says why",
            )
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        if out.exists():
            out.rename(old)
        tmp.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out
