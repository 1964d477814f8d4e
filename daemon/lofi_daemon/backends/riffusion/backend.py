"""The Riffusion backend: text → 5.12 s spectrogram images (Stable Diffusion 1.5 fine-tune on ONNX Runtime) →
audio with riffusion v1's converter, clips chained with equal-power crossfades into 5–240 s, 48 kHz mono (stereo
when the model draws riffusion's stereo layout: spectrogram.channel_images).

Construct with `RiffusionBackend(settings, notify)`. Model source:
1. `settings.models["riffusion"].dir` (LOFI_RIFFUSION_DIR): an ONNX export in optimum's text-to-image layout
   (scripts/export_riffusion.py); never any network;
2. else `<cache_dir>/models/riffusion-onnx`, once `lofi-daemon convert riffusion` (convert.py) has exported the
   hub repo riffusion/riffusion-model-v1 there: its PyTorch weights (the only form published), downloaded with
   consent (models/registry.py).

Each clip has its own noise and Griffin–Lim phase, both drawn from (seed, clip index), so a track is reproducible
and no two clips of it, or of neighbouring seeds, share noise. With `denoising` < 1 every clip after the first is
img2img from the previous clip's latents at that strength (riffusion's way of keeping clips related); at 1 (the
default) clips are independent. With `interpolate_to` (a second prompt) the clips walk from the prompt to it:
clip i of n uses the text embeddings lerped at i / (n − 1) and the slerp of a start and an end noise, as riffusion's
interpolation does. Riffusion normalises every clip to a fixed peak;
so does this backend (−1 dBFS, leaving room for the 44.1 → 48 kHz resampler's overshoot) before the crossfades.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field

from ...audio.resample import resample
from ...cancel import CancelToken
from ...errors import Cancelled, ErrorCode, LofiError
from ...models import download as hub
from ...models.local import files_fingerprint
from ...models.registry import RIFFUSION_VARIANTS, ModelVariant, default_variant
from ..ace_step.sessions import session_factory
from ..base import AudioChunkFn, GeneratedAudio, GenerationRequest, ProgressFn
from ..model_backend import ModelBackend
from ..params import (
    MAX_NEGATIVE_PROMPT_CHARS,
    BackendParams,
    NegativePrompt,
    clean_text,
    one_of,
    parse_params,
)
from . import init_audio, spectrogram, unet_graph
from .pipeline import (
    REQUIRED,
    UNET_FILES,
    RiffusionPipeline,
    Sampling,
    img2img_start,
    missing_files,
    read_json,
)
from .schedulers import SCHEDULERS

log = logging.getLogger(__name__)

MAX_PATH_CHARS = 4096


class RiffusionParams(BackendParams):
    negative_prompt: NegativePrompt = ""
    cfg_scale: float = Field(default=7.0, ge=1, le=20)
    steps: int = Field(default=30, ge=1, le=100)
    scheduler: str = (
        "dpmsolver++"  # case-insensitive, with SCHEDULER_ALIASES: one_of(…, SCHEDULERS) in validate
    )
    denoising: float = Field(default=1.0, ge=0, le=1)
    interpolate_to: str = Field(default="", max_length=MAX_NEGATIVE_PROMPT_CHARS)
    init: str = Field(default="", max_length=MAX_PATH_CHARS)  # a cached track id or an audio file's path
    init_strength: float = Field(default=0.5, gt=0, le=1)


DEFAULTS: dict[str, Any] = RiffusionParams().model_dump()
DERIVED = "init_sha256"  # added by validate (the init audio's fingerprint), never given by a client
# the other backends' names for the same knobs (what `:Lofi generate steps=… guidance=…` sends); the canonical
# name is what enters the track identity
PARAM_ALIASES = {"inference_steps": "steps", "guidance_scale": "cfg_scale"}
SCHEDULER_ALIASES = {"dpm++": "dpmsolver++", "dpmpp": "dpmsolver++", "dpm++2m": "dpmsolver++"}
MODEL_RATE = spectrogram.RIFFUSION_V1.sample_rate
OUTPUT_RATE = 48000
CROSSFADE_SEC = 0.5
CLIP_PEAK = 10 ** (-1 / 20)
GB = 1e9


def slerp(t: float, v0: np.ndarray, v1: np.ndarray, dot_threshold: float = 0.9995) -> np.ndarray:
    """Spherical interpolation of two noise tensors (keeps a Gaussian's norm where a lerp would shrink it); a
    plain lerp when they are nearly parallel."""
    a, b = v0.astype(np.float64), v1.astype(np.float64)
    dot = float(np.sum(a * b) / (np.linalg.norm(a) * np.linalg.norm(b)))
    if abs(dot) > dot_threshold:
        out = (1 - t) * a + t * b
    else:
        theta = math.acos(dot)
        out = (math.sin(theta * (1 - t)) * a + math.sin(theta * t) * b) / math.sin(theta)
    return out.astype(np.float32)


def cancel_pending(futures: list[Future]) -> None:
    """Drop queued conversions; one already running ends at its next cancel check or runs out."""
    for f in futures:
        f.cancel()


def clip_plan(duration_sec: float, clip_samples: int, crossfade: int) -> int:
    """How many clips of `clip_samples` overlapping by `crossfade` cover the duration."""
    need = math.ceil(duration_sec * MODEL_RATE)
    if need <= clip_samples:
        return 1
    return math.ceil((need - crossfade) / (clip_samples - crossfade))


def chain(clips: list[np.ndarray], crossfade: int) -> np.ndarray:
    """Concatenate clips along their first axis (samples, then any channels), each seam an equal-power crossfade
    (cos/sin: constant power for uncorrelated clips) of `crossfade` samples."""
    out = clips[0]
    t = (np.arange(crossfade) + 0.5) / crossfade
    t = t.reshape((-1,) + (1,) * (out.ndim - 1))
    fade_out, fade_in = np.cos(0.5 * np.pi * t), np.sin(0.5 * np.pi * t)
    for clip in clips[1:]:
        seam = out[-crossfade:] * fade_out + clip[:crossfade] * fade_in
        out = np.concatenate([out[:-crossfade], seam, clip[crossfade:]])
    return out


class RiffusionBackend(ModelBackend[RiffusionPipeline]):
    name = "riffusion"
    variants = RIFFUSION_VARIANTS
    display_name = "Riffusion v1 (spectrogram diffusion)"
    sample_rate = OUTPUT_RATE
    channels = 1
    min_duration_sec = 5.0
    max_duration_sec = 240.0
    default_duration_sec = 30.0
    streams_audio = False

    # ---- parameters -------------------------------------------------------------------------------------
    def validate(self, raw: Mapping[str, Any]) -> dict[str, Any]:
        raw = dict(raw)
        for alias, key in PARAM_ALIASES.items():
            if alias in raw:
                if key in raw:
                    raise LofiError(ErrorCode.INVALID_PARAMS, f"give {key} or {alias}, not both", param=alias)
                raw[key] = raw.pop(alias)
        codes = {
            "scheduler": ErrorCode.INVALID_SCHEDULER,
            "steps": ErrorCode.INVALID_INFERENCE_STEPS,
            "cfg_scale": ErrorCode.INVALID_GUIDANCE_SCALE,
        }
        p = parse_params(RiffusionParams, raw, self.name, codes)
        for key in ("denoising", "init_strength") if p.init.strip() else ("denoising",):
            strength = getattr(p, key)
            if int(p.steps * strength) < 1:
                raise LofiError(
                    ErrorCode.INVALID_PARAMS,
                    f"{key} {strength:g} runs no step out of {p.steps}: it must be at least 1/steps",
                    param=key,
                )
        out = p.model_dump()
        out[DERIVED] = ""
        if p.init.strip():
            if p.denoising < 1:
                raise LofiError(
                    ErrorCode.INVALID_PARAMS,
                    "init and denoising < 1 both choose where each clip starts: give one of them",
                    param="init",
                )
            source = init_audio.resolve(p.init, self.settings.tracks_dir)
            out.update(init=source.canonical, **{DERIVED: source.sha256})
        else:
            out["init"] = ""
        out["scheduler"] = one_of(
            p.scheduler, SCHEDULERS, "scheduler", self.name, ErrorCode.INVALID_SCHEDULER, SCHEDULER_ALIASES
        )
        for key in ("negative_prompt", "interpolate_to"):
            out[key] = clean_text(out[key])
        return out

    # ---- model files ----------------------------------------------------------------------------------------
    def converted_dir(self) -> Path:
        """Where `lofi-daemon convert riffusion` puts its ONNX export, used without any setting."""
        return self.settings.cache_dir / "models" / "riffusion-onnx"

    def downloaded_dir(self) -> Path | None:
        """The downloaded hub weights (diffusers layout), when every file is here."""
        files = hub.cached_files(self.variant())
        return None if files is None else files["model_index"].parent

    @property
    def local_dir(self) -> Path | None:
        """models.riffusion.dir / LOFI_RIFFUSION_DIR, else the converted export once it is complete."""
        chosen = super().local_dir
        if chosen is not None:
            return chosen
        converted = self.converted_dir()
        return converted if not missing_files(converted) else None

    def model_dir(self) -> Path:
        """The ONNX export in use; raises MODEL_NOT_FOUND / BACKEND_NOT_INSTALLED (never downloads)."""
        if self.local_dir is not None:
            d = self.local_dir
            absent = missing_files(d)
            unet = UNET_FILES[self.unet_precision()]
            if not absent and not (d / unet).is_file():
                raise LofiError(
                    ErrorCode.MODEL_NOT_FOUND,
                    f"the int8 UNet ({unet}) is not in {d}: make it once with "
                    f"`lofi-daemon convert riffusion --int8{'' if d == self.converted_dir() else f' --out {d}'}`, "
                    "or choose the fp32 variant",
                    dir=str(d),
                    missing=[unet],
                )
            if not absent:
                self._check_conversion(d)
                return d
            if (d / "unet").is_dir() and any((d / "unet").glob("diffusion_pytorch_model.*")):
                raise LofiError(
                    ErrorCode.MODEL_NOT_FOUND,
                    f"riffusion model directory {d} holds PyTorch weights; export it to ONNX once with "
                    f"`lofi-daemon convert riffusion --model {d}` (needs `scripts/setup --export`) and unset "
                    "models.riffusion.dir / LOFI_RIFFUSION_DIR (the export is found in lofi's model folder)",
                    dir=str(d),
                )
            raise LofiError(
                ErrorCode.MODEL_NOT_FOUND,
                f"riffusion model directory {d} is not an ONNX export (missing {', '.join(absent)})",
                dir=str(d),
                missing=absent,
            )
        v = self.variant()
        src = self.downloaded_dir()
        if src is not None:
            raise LofiError(
                ErrorCode.BACKEND_NOT_INSTALLED,
                f"the Riffusion weights are downloaded ({src}) but only as PyTorch files; export them "
                "to ONNX once: `lofi-daemon convert riffusion` (needs `scripts/setup --export`)",
                backend=self.name,
                variant=v.name,
            )
        raise LofiError(
            ErrorCode.BACKEND_NOT_INSTALLED,
            f"the Riffusion model is not installed: about {v.approx_total / GB:.1f} GB of PyTorch weights from "
            f'{v.repo_id}, then a one-time ONNX export. Consent with `download_backend {{backend: "riffusion"}}` '
            "(:Lofi download riffusion), then `lofi-daemon convert riffusion` (needs `scripts/setup --export`); "
            "or point "
            "models.riffusion.dir / LOFI_RIFFUSION_DIR at an existing export",
            backend=self.name,
            variant=v.name,
            download_size_bytes=v.approx_total,
            missing=[f.path for f in hub.missing_files(v)],
        )

    def conversion_outdated(self, d: Path) -> bool:
        """Is `d` lofi's own conversion made with another UNet rewrite (unet_graph.py) than this version's?
        Other exports (models.riffusion.dir) run as they are, so they are never outdated."""
        found = read_json(d / "model_index.json").get(unet_graph.VERSION_KEY, 0)
        return d == self.converted_dir() and found != unet_graph.UNET_GRAPH_VERSION

    def _check_conversion(self, d: Path) -> None:
        """An outdated conversion of lofi's own is refused with the command that redoes it."""
        if self.conversion_outdated(d):
            found = read_json(d / "model_index.json").get(unet_graph.VERSION_KEY, 0)
            raise LofiError(
                ErrorCode.BACKEND_NOT_INSTALLED,
                f"the Riffusion conversion in {d} was made by another lofi version (UNet graph {found}, this "
                f"one needs {unet_graph.UNET_GRAPH_VERSION}: attention rewritten for the CPU); redo it once "
                "with `lofi-daemon convert riffusion` (needs `scripts/setup --export`)",
                backend=self.name,
                dir=str(d),
            )

    def check_model(self) -> None:
        self.model_dir()

    def unet_precision(self) -> str:
        """ "int8" when models.riffusion.variant asks for it (scripts/quantize_riffusion.py's UNet), else "fp32"."""
        name = (self.requested_variant or "").strip().lower()
        return "int8" if name == "int8" else "fp32"

    def variant(self) -> ModelVariant:
        if (
            self.requested_variant or ""
        ).strip().lower() in UNET_FILES:  # a UNet precision, not a hub variant
            return default_variant(self.name, self.provider)
        return super().variant()

    def local_model_version(self, local_dir: Path) -> str:
        files = [*REQUIRED, UNET_FILES[self.unet_precision()]]
        if missing_files(local_dir) or not (local_dir / files[-1]).is_file():
            return f"riffusion-local-missing-{local_dir.name}"
        tag = "" if self.unet_precision() == "fp32" else "-int8"
        return f"riffusion-onnx{tag}-{files_fingerprint({rel: local_dir / rel for rel in files})}"

    def status(self) -> dict[str, Any]:
        out = super().status()
        out.update(defaults=dict(DEFAULTS), schedulers=list(SCHEDULERS), unet=self.unet_precision())
        if self.local_dir is not None:
            out.update(variant="local-onnx", missing_files=missing_files(self.local_dir))
        else:
            out["needs_export"] = True
        return out

    def download(self, progress: Callable[[dict[str, Any]], None] | None, cancel: CancelToken) -> None:
        """Fetch the hub's PyTorch weights (the caller has the user's consent); an ONNX export follows by hand."""
        if self.local_dir is None:
            v = self.variant()
            self._warn(
                f"downloading Riffusion ({v.approx_total / GB:.1f} GB from {v.repo_id}); it then needs a "
                "one-time ONNX export with scripts/export_riffusion.py"
            )
        super().download(progress, cancel)

    # ---- lifecycle --------------------------------------------------------------------------------------------
    def load(self) -> None:
        if self._pipeline is not None:
            return
        folder = self.model_dir()
        try:
            pipe = RiffusionPipeline(
                folder, session_factory(self.settings, self._warn), self.unet_precision()
            )
        except LofiError:
            raise
        except Exception as exc:
            raise LofiError(
                ErrorCode.MODEL_LOAD_FAILED, f"could not load Riffusion from {folder}: {exc}"
            ) from exc
        if pipe.image_size[0] != spectrogram.RIFFUSION_V1.n_mels:
            raise LofiError(
                ErrorCode.MODEL_LOAD_FAILED,
                f"Riffusion images must be {spectrogram.RIFFUSION_V1.n_mels} px high (one row per mel "
                f"band); {folder} makes {pipe.image_size[0]}",
            )
        spectrogram.converter()  # the inverse-mel factorisation, once per process
        self._pipeline = pipe

    # ---- generation -------------------------------------------------------------------------------------------
    @staticmethod
    def _clip_audio(
        image: np.ndarray, seed: list[int], cancel: CancelToken, timings: dict[str, float]
    ) -> np.ndarray:
        """One clip's audio [samples, channels] at a fixed peak (riffusion normalises every clip): one channel, or
        two when the image holds stereo (spectrogram.channel_images), each with its own Griffin–Lim phase."""
        t0 = time.monotonic()
        pictures = spectrogram.channel_images(image)
        seeds = [seed] if len(pictures) == 1 else [[*seed, c] for c in range(len(pictures))]
        audio = np.stack(
            [
                spectrogram.audio_from_image(pic, seed=s, check=cancel.check)
                for pic, s in zip(pictures, seeds, strict=True)
            ],
            axis=1,
        )
        timings["griffin_lim"] += time.monotonic() - t0
        peak = float(np.max(np.abs(audio)))
        return audio * (CLIP_PEAK / peak) if peak > 0 else audio

    def _init_images(
        self, params: dict[str, Any], clips: int, width: int, step: int
    ) -> list[np.ndarray] | None:
        """The init audio's spectrogram image for each clip, or None without init."""
        if not params["init"]:
            return None
        if "vae_encoder" not in self.pipeline.sessions:
            raise LofiError(
                ErrorCode.MODEL_NOT_FOUND,
                f"init audio needs the VAE encoder, and {self.pipeline.folder} has no vae_encoder/model.onnx; "
                "export the model again with scripts/export_riffusion.py",
            )
        source = init_audio.reopen(params["init"], params[DERIVED], self.settings.tracks_dir)
        return init_audio.clip_images(init_audio.load(source), clips, width, step)

    def generate(
        self,
        request: GenerationRequest,
        progress: ProgressFn,
        cancel: CancelToken,
        on_audio: AudioChunkFn | None = None,
    ) -> GeneratedAudio:
        params = self.validate({k: v for k, v in request.params.items() if k != DERIVED})
        if params[DERIVED] != request.params.get(DERIVED, params[DERIVED]):
            raise LofiError(
                ErrorCode.INVALID_PARAMS,
                f"init: {params['init']} changed since the request was made; generate again",
                param="init",
            )
        pipe = self.pipeline
        p = Sampling(steps=params["steps"], guidance_scale=params["cfg_scale"], scheduler=params["scheduler"])
        height, width = pipe.image_size
        clip_samples = spectrogram.RIFFUSION_V1.samples_for_width(width)
        crossfade = int(CROSSFADE_SEC * MODEL_RATE)
        n = clip_plan(request.duration_sec, clip_samples, crossfade)
        strength = params["denoising"]
        init_images = self._init_images(params, n, width, clip_samples - crossfade)
        if init_images is not None:  # every clip is img2img from the init audio at its place
            runs = [p.steps - img2img_start(p.steps, params["init_strength"])] * n
        else:
            # clip 0 runs every step; with denoising < 1 each later clip is img2img from the previous clip's
            later = p.steps - img2img_start(p.steps, strength) if strength < 1 else p.steps
            runs = [p.steps] + [later] * (n - 1)
        total = sum(runs)
        timings = {"diffusion": 0.0, "decode": 0.0, "griffin_lim": 0.0}
        try:
            context = pipe.embeddings(request.prompt, params["negative_prompt"], p.guidance_scale)
            target = params["interpolate_to"]
            shape = pipe.latent_shape(height, width)
            if target:  # riffusion's interpolation: text embeddings lerped, start and end noise slerped
                context_end = pipe.embeddings(target, params["negative_prompt"], p.guidance_scale)
                noise_start = np.random.default_rng([request.seed, 0, 0]).standard_normal(
                    shape, dtype=np.float32
                )
                noise_end = np.random.default_rng([request.seed, 0, 2]).standard_normal(
                    shape, dtype=np.float32
                )
            latents = None
            # Griffin–Lim of clip i runs in a worker while the UNet draws clip i + 1: on machines with spare cores
            # its cost leaves the wall time (the result is the same; it only depends on the image and the seed)
            with ThreadPoolExecutor(max_workers=1, thread_name_prefix="riffusion-gl") as pool:
                pending = []
                try:
                    for i in range(n):
                        cancel.check()
                        ctx = context
                        if target:
                            alpha = i / (n - 1) if n > 1 else 0.0
                            ctx = (context + np.float32(alpha) * (context_end - context)).astype(np.float32)
                            noise = slerp(alpha, noise_start, noise_end)
                        else:
                            noise = np.random.default_rng([request.seed, i, 0]).standard_normal(
                                shape, dtype=np.float32
                            )

                        def on_step(step: int, _run: int, offset: int = sum(runs[:i]), clip: int = i) -> None:
                            done = offset + step
                            progress(
                                done, total, current_step=done, total_steps=total, clip=clip + 1, clips=n
                            )

                        init: np.ndarray | None = latents if (i > 0 and strength < 1) else None
                        clip_strength = strength
                        t0 = time.monotonic()
                        if init_images is not None:
                            posterior = np.random.default_rng([request.seed, i, 3]).standard_normal(
                                shape, dtype=np.float32
                            )
                            init = pipe.encode_image(init_images[i], noise=posterior)
                            clip_strength = params["init_strength"]
                        latents = pipe.sample(
                            ctx,
                            noise,
                            p,
                            check=cancel.check,
                            on_step=on_step,
                            init=init,
                            strength=clip_strength,
                        )
                        t1 = time.monotonic()
                        image = pipe.image(latents)
                        timings["diffusion"] += t1 - t0
                        timings["decode"] += time.monotonic() - t1
                        pending.append(
                            pool.submit(self._clip_audio, image, [request.seed, i, 1], cancel, timings)
                        )
                    clips = [f.result() for f in pending]
                except BaseException:
                    cancel_pending(pending)
                    raise
            channels = max(c.shape[1] for c in clips)  # a stereo clip makes the track stereo
            clips = [np.repeat(c, channels // c.shape[1], axis=1) for c in clips]
            track = chain(clips, crossfade)[: math.ceil(request.duration_sec * MODEL_RATE)]
            out = resample(track.astype(np.float32), MODEL_RATE, OUTPUT_RATE)
            out = np.ascontiguousarray(out[: round(request.duration_sec * OUTPUT_RATE)], dtype=np.float32)
        except (LofiError, Cancelled):
            raise
        except Exception as exc:
            log.exception("riffusion inference failed")
            raise LofiError(ErrorCode.MODEL_INFERENCE_FAILED, f"riffusion inference failed: {exc}") from exc
        info = {
            "clips": n,
            "steps": p.steps,
            "scheduler": p.scheduler,
            "cfg_scale": p.guidance_scale,
            "denoising": strength,
            "interpolated": bool(params["interpolate_to"]),
            "init": params["init"],
            "image_size": [height, width],
            "timings": {k: round(v, 3) for k, v in timings.items()},
        }
        return GeneratedAudio(samples=out, sample_rate=OUTPUT_RATE, info=info)
