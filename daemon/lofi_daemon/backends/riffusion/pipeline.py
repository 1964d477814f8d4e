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

from ...errors import ErrorCode, LofiError
from .schedulers import make_scheduler
from .text import ClipTokenizer

SessionFactory = Callable[[str, Any], Any]
GRAPHS = ("text_encoder", "unet", "vae_decoder")
REQUIRED = tuple(f"{g}/model.onnx" for g in GRAPHS) + (
    "tokenizer/vocab.json", "tokenizer/merges.txt", "scheduler/scheduler_config.json",
)  # fmt: skip


def missing_files(folder: Path) -> list[str]:
    return [rel for rel in REQUIRED if not (folder / rel).is_file()]


def _json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}


@dataclass(frozen=True)
class Sampling:
    steps: int = 30
    guidance_scale: float = 7.0
    scheduler: str = "dpmsolver++"


class RiffusionPipeline:
    def __init__(self, folder: Path, make_session: SessionFactory) -> None:
        absent = missing_files(folder)
        if absent:
            raise LofiError(ErrorCode.MODEL_NOT_FOUND, f"riffusion model directory {folder} lacks {', '.join(absent)}")  # fmt: skip
        self.folder = folder
        self.tokenizer = ClipTokenizer(folder / "tokenizer")
        self.sessions = {g: make_session(str(folder / g / "model.onnx"), None) for g in GRAPHS}
        self.scheduler_config = _json(folder / "scheduler" / "scheduler_config.json")
        vae = _json(folder / "vae_decoder" / "config.json")
        self.scaling_factor = float(vae.get("scaling_factor", 0.18215))
        self.vae_scale = 2 ** (len(vae.get("block_out_channels", [0] * 4)) - 1)
        unet = _json(folder / "unet" / "config.json")
        self.latent_channels = int(unet.get("in_channels", 4))
        size = unet.get("sample_size", 64)
        h, w = (size, size) if isinstance(size, int) else size
        self.image_size = (int(h) * self.vae_scale, int(w) * self.vae_scale)  # SD-1.5: 64 latents → 512 px

    # ---- graphs ---------------------------------------------------------------------------------------------
    def encode_text(self, prompts: list[str]) -> np.ndarray:
        ids = self.tokenizer(prompts)
        return self.sessions["text_encoder"].run(["last_hidden_state"], {"input_ids": ids})[0]

    def unet(self, latents: np.ndarray, t: float, context: np.ndarray) -> np.ndarray:
        feed = {"sample": latents.astype(np.float32), "timestep": np.asarray(t, dtype=np.float32),
                "encoder_hidden_states": context.astype(np.float32)}  # fmt: skip
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

    def sample(self, context: np.ndarray, noise: np.ndarray, p: Sampling,
               check: Callable[[], None] | None = None,
               on_step: Callable[[int, int], None] | None = None) -> np.ndarray:  # fmt: skip
        """The denoising loop from `noise` (the initial latents); `check` runs before every UNet call so a
        cancel lands within one step."""
        sched = make_scheduler(p.scheduler, self.scheduler_config, p.steps)
        x = noise.astype(np.float32)
        cfg = context.shape[0] == 2
        for i, t in enumerate(sched.timesteps):
            if check is not None:
                check()
            inp = np.concatenate([x, x]) if cfg else x
            eps = self.unet(inp, float(t), context)
            if cfg:
                eps = eps[0:1] + np.float32(p.guidance_scale) * (eps[1:2] - eps[0:1])
            x = sched.step(eps, i, x)
            if on_step is not None:
                on_step(i + 1, len(sched.timesteps))
        return x

    def image(self, latents: np.ndarray) -> np.ndarray:
        """Latents → uint8 image [H, W, 3] as diffusers' postprocess makes it."""
        img = np.clip(self.decode(latents)[0] / 2 + 0.5, 0.0, 1.0).transpose(1, 2, 0)
        return (img * 255).round().astype(np.uint8)
