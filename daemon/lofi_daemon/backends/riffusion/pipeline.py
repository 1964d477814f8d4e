"""Riffusion text → spectrogram image on ONNX Runtime, driven by numpy: CLIP text encoder, UNet with
classifier-free guidance under a numpy scheduler, VAE decoder, then riffusion's image → audio (spectrogram.py).

The model directory is optimum's `text-to-image` export (scripts/export_riffusion.py): text_encoder/, unet/,
vae_decoder/ (model.onnx + config.json each), tokenizer/ (vocab.json, merges.txt), scheduler/scheduler_config.json.
The loop is diffusers' StableDiffusionPipeline's: noise × init sigma 1; per step the UNet sees the batch
[uncond, cond] (cond only when guidance ≤ 1) and ε = ε_u + g (ε_c − ε_u); the image is VAE(latents / scaling) mapped
from [-1, 1] to uint8 as diffusers' `numpy_to_pil` rounds it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from ...errors import ErrorCode, LofiError
from .schedulers import make_scheduler
from .text import ClipTokenizer

SessionFactory = Callable[..., Any]  # (path, initializers, optimization=None) → session: ace_step/sessions.py
GRAPHS = ("text_encoder", "unet", "vae_decoder")
REQUIRED = tuple(f"{g}/model.onnx" for g in GRAPHS) + (
    "tokenizer/vocab.json",
    "tokenizer/merges.txt",
    "scheduler/scheduler_config.json",
)


def img2img_start(steps: int, strength: float) -> int:
    """First schedule index img2img runs (diffusers' get_timesteps: int(steps · strength) steps are run)."""
    run = min(int(steps * strength), steps)
    if run < 1:
        raise ValueError(f"denoising strength {strength} runs no step out of {steps}")
    return steps - run


def missing_files(folder: Path) -> list[str]:
    return [rel for rel in REQUIRED if not (folder / rel).is_file()]


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}


@dataclass(frozen=True)
class Sampling:
    steps: int = 30
    guidance_scale: float = 7.0
    scheduler: str = "dpmsolver++"


UNET_FILES = {
    "fp32": "unet/model.onnx",
    "int8": "unet/model_int8.onnx",
}  # int8: scripts/quantize_riffusion.py


class RiffusionPipeline:
    def __init__(self, folder: Path, make_session: SessionFactory, precision: str = "fp32") -> None:
        absent = missing_files(folder)
        if absent:
            raise LofiError(
                ErrorCode.MODEL_NOT_FOUND, f"riffusion model directory {folder} lacks {', '.join(absent)}"
            )
        self.folder = folder
        self.tokenizer = ClipTokenizer(folder / "tokenizer")
        files = {g: f"{g}/model.onnx" for g in GRAPHS if g != "unet"}
        self.sessions = {g: make_session(str(folder / rel), None) for g, rel in files.items()}
        # ORT's full optimisation for the UNet alone: on x86 its convolutions run in the blocked NCHWc layout
        # (≈ 11 % less CPU per SD-1.5 step; docs/benchmarks.md), which pays back its extra seconds of load time
        # within the first clip; the small graphs keep the daemon's cheap default.
        self.sessions["unet"] = make_session(
            str(folder / UNET_FILES[precision]), None, optimization=ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        )
        encoder = folder / "vae_encoder" / "model.onnx"  # img2img only; optional
        if encoder.is_file():
            self.sessions["vae_encoder"] = make_session(str(encoder), None)
        self.scheduler_config = read_json(folder / "scheduler" / "scheduler_config.json")
        vae = read_json(folder / "vae_decoder" / "config.json")
        self.scaling_factor = float(vae.get("scaling_factor", 0.18215))
        self.vae_scale = 2 ** (len(vae.get("block_out_channels", [0] * 4)) - 1)
        unet = read_json(folder / "unet" / "config.json")
        self.latent_channels = int(unet.get("in_channels", 4))
        size = unet.get("sample_size", 64)
        h, w = (size, size) if isinstance(size, int) else size
        self.image_size = (int(h) * self.vae_scale, int(w) * self.vae_scale)  # SD-1.5: 64 latents → 512 px

    # ---- graphs ---------------------------------------------------------------------------------------------
    def encode_text(self, prompts: list[str]) -> np.ndarray:
        ids = self.tokenizer(prompts)
        return self.sessions["text_encoder"].run(["last_hidden_state"], {"input_ids": ids})[0]

    def unet(self, latents: np.ndarray, t: float, context: np.ndarray) -> np.ndarray:
        feed = {
            "sample": latents.astype(np.float32),
            "timestep": np.asarray(t, dtype=np.float32),
            "encoder_hidden_states": context.astype(np.float32),
        }
        return self.sessions["unet"].run(["out_sample"], feed)[0]

    def decode(self, latents: np.ndarray) -> np.ndarray:
        """Latents → image in [-1, 1], [batch, 3, H, W]."""
        feed = {"latent_sample": (latents / np.float32(self.scaling_factor)).astype(np.float32)}
        return self.sessions["vae_decoder"].run(["sample"], feed)[0]

    # ---- sampling -------------------------------------------------------------------------------------------
    def latent_shape(self, height: int, width: int) -> tuple[int, int, int, int]:
        return (1, self.latent_channels, height // self.vae_scale, width // self.vae_scale)

    def embeddings(self, prompt: str, negative_prompt: str, guidance_scale: float) -> np.ndarray:
        """[2, 77, D] (uncond, cond) with guidance, else [1, 77, D]."""
        if guidance_scale > 1.0:
            return self.encode_text([negative_prompt, prompt])
        return self.encode_text([prompt])

    def sample(
        self,
        context: np.ndarray,
        noise: np.ndarray,
        p: Sampling,
        check: Callable[[], None] | None = None,
        on_step: Callable[[int, int], None] | None = None,
        init: np.ndarray | None = None,
        strength: float = 1.0,
    ) -> np.ndarray:
        """The denoising loop. text2img starts from `noise`; img2img (`init` latents, already scaled) starts
        `strength` of the way into the schedule from `init` noised to that step, as diffusers' img2img pipeline
        does. `check` runs before every UNet call so a cancel lands within one step."""
        sched = make_scheduler(p.scheduler, self.scheduler_config, p.steps)
        start = 0
        x = noise.astype(np.float32)
        if init is not None:
            start = img2img_start(p.steps, strength)
            x = sched.add_noise(init.astype(np.float32), x, start)
        cfg = context.shape[0] == 2
        total = len(sched.timesteps) - start
        for i in range(start, len(sched.timesteps)):
            if check is not None:
                check()
            inp = np.concatenate([x, x]) if cfg else x
            eps = self.unet(inp, float(sched.timesteps[i]), context)
            if cfg:
                eps = eps[0:1] + np.float32(p.guidance_scale) * (eps[1:2] - eps[0:1])
            x = sched.step(eps, i, x)
            if on_step is not None:
                on_step(i + 1 - start, total)
        return x

    def encode_image(self, image: np.ndarray, noise: np.ndarray | None = None) -> np.ndarray:
        """uint8 image [H, W, 3] → scaled latents [1, C, H/8, W/8]: the VAE posterior's mean, or a sample from it
        with `noise` (mean + exp(logvar / 2) · noise, logvar clamped to [-30, 20] as diffusers does)."""
        x = (image.astype(np.float32) / np.float32(255.0) * 2 - 1).transpose(2, 0, 1)[None]
        moments = self.sessions["vae_encoder"].run(
            ["latent_parameters"], {"sample": np.ascontiguousarray(x)}
        )[0]
        mean, logvar = np.split(moments, 2, axis=1)
        z = mean if noise is None else mean + np.exp(0.5 * np.clip(logvar, -30.0, 20.0)) * noise
        return (z * np.float32(self.scaling_factor)).astype(np.float32)

    def image(self, latents: np.ndarray) -> np.ndarray:
        """Latents → uint8 image [H, W, 3] as diffusers' postprocess makes it."""
        img = np.clip(self.decode(latents)[0] / 2 + 0.5, 0.0, 1.0).transpose(1, 2, 0)
        return (img * 255).round().astype(np.uint8)
