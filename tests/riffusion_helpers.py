"""Shared pieces of the Riffusion tests: the tiny fixture, its ONNX pipeline, and (torch tests) diffusers."""

from __future__ import annotations

from pathlib import Path

import numpy as np

FIXTURE = Path(__file__).parent / "fixtures" / "riffusion-tiny"


def tiny_pipeline():
    from lofi_daemon.backends.ace_step.sessions import session_factory
    from lofi_daemon.backends.riffusion.pipeline import RiffusionPipeline

    return RiffusionPipeline(FIXTURE, session_factory(threads=1))


def rel_err(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def diffusers_pipeline(scheduler: str = "dpmsolver++", spacing: str | None = None):
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        DPMSolverMultistepScheduler,
        PNDMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextModel, CLIPTokenizer

    t = FIXTURE / "torch"
    base = PNDMScheduler.from_pretrained(str(FIXTURE / "scheduler"))
    cls = {"dpmsolver++": DPMSolverMultistepScheduler, "ddim": DDIMScheduler}[scheduler]
    config = {**base.config, "timestep_spacing": spacing} if spacing else base.config
    return StableDiffusionPipeline(
        vae=AutoencoderKL.from_pretrained(str(t / "vae")).eval(),
        text_encoder=CLIPTextModel.from_pretrained(str(t / "text_encoder")).eval(),
        tokenizer=CLIPTokenizer.from_pretrained(str(FIXTURE / "tokenizer")),
        unet=UNet2DConditionModel.from_pretrained(str(t / "unet")).eval(),
        scheduler=cls.from_config(config),  # what riffusion's app does with the checkpoint's config
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
