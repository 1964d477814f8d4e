"""`lofi-daemon convert riffusion`: the one-time ONNX export of riffusion's PyTorch weights (the hub publishes no
ONNX export) into lofi's own model folder, where the backend finds it without any setting.

The export itself is scripts/export_riffusion.py (optimum's `text-to-image` exporter, then the UNet's CPU rewrite:
unet_graph.py), run as a child process with this Python: it needs torch, diffusers, transformers and optimum
(`scripts/setup --export`), which the daemon never imports. It writes into a temporary folder beside the
destination and renames it into place once the layout is complete, so a failed or interrupted export leaves no half
model behind.

`--int8` adds the int8 UNet (scripts/quantize_riffusion.py, onnx + onnxruntime only), also as a child process: inside
that temporary folder after the export, or alone into an existing conversion, where the file is written in a
temporary folder beside the UNet and renamed into place, so the int8 variant is never half there.
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
from .pipeline import UNET_FILES, missing_files

EXPORT_MODULES = ("torch", "diffusers", "transformers", "optimum")
REPO = Path(__file__).resolve().parents[4]  # daemon/lofi_daemon/backends/riffusion → the checkout
SCRIPT = REPO / "scripts" / "export_riffusion.py"
QUANTIZER = REPO / "scripts" / "quantize_riffusion.py"


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


def convert(
    src: Path, out: Path, run: Callable[..., subprocess.CompletedProcess] = subprocess.run, int8: bool = False
) -> Path:
    """Export `src` (diffusers layout) to ONNX at `out` (with the int8 UNet when `int8`); returns `out`.
    LofiError on every failure."""
    check_can_export()
    check_source(src)
    if int8:
        check_can_quantize()
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
        if int8:
            add_int8(tmp, run)
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        if out.exists():
            out.rename(old)
        tmp.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def check_can_quantize() -> None:
    if not QUANTIZER.is_file():
        raise LofiError(
            ErrorCode.BACKEND_NOT_INSTALLED,
            f"the quantizer {QUANTIZER} is not here: making the int8 UNet needs lofi's source checkout (scripts/)",
        )


def add_int8(model_dir: Path, run: Callable[..., subprocess.CompletedProcess] = subprocess.run) -> Path:
    """Add the int8 UNet to the complete ONNX export `model_dir`; returns its path. LofiError on every failure,
    and then the folder is as it was (an older int8 UNet there is replaced only by a complete new one)."""
    check_can_quantize()
    absent = missing_files(model_dir)
    if absent:
        raise LofiError(
            ErrorCode.MODEL_NOT_FOUND,
            f"{model_dir} is not a complete Riffusion ONNX export (missing {', '.join(absent)}): convert it "
            "first with `lofi-daemon convert riffusion`",
            dir=str(model_dir),
            missing=absent,
        )
    dst = model_dir / UNET_FILES["int8"]
    # The quantizer names its external data file after its output (model_int8.onnx.data), so it writes under the
    # final name in a temporary folder, and the files are moved out of it.
    tmp = dst.parent / f".int8-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        done = run(
            [sys.executable, str(QUANTIZER), str(model_dir), "--out", str(tmp / dst.name)], check=False
        )
        if done.returncode != 0 or not (tmp / dst.name).is_file():
            raise LofiError(
                ErrorCode.MODEL_LOAD_FAILED,
                f"quantising the Riffusion UNet in {model_dir} to int8 failed (exit {done.returncode}"
                + ("" if done.returncode else f"; no {dst.name} written")
                + "); its output above says why",
            )
        dst.unlink(missing_ok=True)  # the model file goes last: the variant exists once it is there
        for f in sorted(tmp.iterdir(), key=lambda f: f.name == dst.name):
            f.rename(dst.parent / f.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dst
