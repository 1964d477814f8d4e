"""The MusicGen backend: validation, model files (local directory or hub variant), lazy loading, generation.

Construct with `MusicGenBackend(settings, notify)`. Model source, in order:
1. `settings.models["musicgen"].dir` (or LOFI_MUSICGEN_DIR): a local directory, never any network;
2. the hub variant `settings.models["musicgen"].variant` (registry name, or a dtype such as "int8"), default
   the 8-bit decoder on CPU and fp16 on CUDA/CoreML, from the huggingface_hub cache.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field

from ...cancel import CancelToken
from ...config import Settings
from ...errors import Cancelled, ErrorCode, LofiError
from ...models import download as hub
from ...models.local import files_fingerprint, resolve_local
from ...models.registry import MUSICGEN_VARIANTS
from ..base import AudioChunkFn, GeneratedAudio, GenerationRequest, ProgressFn
from ..model_backend import ModelBackend, NotifyFn
from ..params import BackendParams, NegativePrompt, clean_text, parse_params
from . import static_kv
from .continuation import MusicGenContinuation
from .files import DTYPE_ALIASES, decoder_dtype, local_layouts, pick_decoder
from .pipeline import MusicGenPipeline, SamplingParams

log = logging.getLogger(__name__)

# dtype shortcuts accepted as a hub variant name
DTYPE_TO_VARIANT = {"int8": "small-int8", "fp32": "small-fp32", "fp16": "small-fp16", "q4": "xenova-small-q4"}


class MusicGenParams(BackendParams):
    guidance_scale: float = Field(default=3.0, ge=1, le=10)
    top_k: int = Field(default=250, ge=1, le=2048)
    top_p: float = Field(default=0.0, ge=0, le=1)
    temperature: float = Field(default=1.0, ge=0.1, le=2)
    negative_prompt: NegativePrompt = ""


class MusicGenBackend(ModelBackend[MusicGenPipeline]):
    name = "musicgen"
    variants = MUSICGEN_VARIANTS
    display_name = "MusicGen (small)"
    sample_rate = 32000
    channels = 1
    min_duration_sec = 5.0
    max_duration_sec = 120.0
    default_duration_sec = 30.0
    streams_audio = True  # generate() can hand out final audio chunks while it runs (play while generating)

    def __init__(
        self,
        settings: Settings,
        notify: NotifyFn | None = None,
        *,
        window_sec: float = 30.0,
        stride_sec: float = 18.0,
    ) -> None:
        super().__init__(settings, notify)
        # The model's context is 30 s; tests shrink it to exercise continuation on the tiny model quickly.
        self.window_sec = window_sec
        self.stride_sec = stride_sec

    # ---- parameters ---------------------------------------------------------------------------------------
    def validate(self, raw: Mapping[str, Any]) -> dict[str, Any]:
        codes = {"guidance_scale": ErrorCode.INVALID_GUIDANCE_SCALE}
        out = parse_params(MusicGenParams, raw, self.name, codes).model_dump()
        out["negative_prompt"] = clean_text(out["negative_prompt"])
        if not out["negative_prompt"]:
            del out["negative_prompt"]  # none: the track id of a request without one, as before it existed
        return out

    # ---- model files ----------------------------------------------------------------------------------------
    def variant_alias(self, name: str) -> str | None:
        alias = DTYPE_ALIASES.get(name.lower())
        return DTYPE_TO_VARIANT[alias] if alias else None

    def local_files(self) -> dict[str, Path]:
        """role → path in the local directory (raises MODEL_NOT_FOUND naming the missing file)."""
        assert self.local_dir is not None
        _, found = resolve_local(
            self.local_dir, local_layouts(self.requested_variant, self.provider), "musicgen"
        )
        return pick_decoder(found)

    def model_files(self) -> dict[str, Path]:
        """The files to load; raises BACKEND_NOT_INSTALLED when hub files are missing (never downloads)."""
        if self.local_dir is not None:
            return self.local_files()
        variant = self.variant()
        files = hub.cached_files(variant)
        if files is None:
            missing = [f.path for f in hub.missing_files(variant)]
            raise LofiError(
                ErrorCode.BACKEND_NOT_INSTALLED,
                f"musicgen model '{variant.name}' is not downloaded (~{variant.approx_total / 1e6:.0f} MB from "
                f'{variant.repo_id}); consent with `download_backend {{backend: "musicgen"}}` (:Lofi download '
                "musicgen) or generate with allow_download: true, or set models.musicgen.dir / LOFI_MUSICGEN_DIR "
                "to a local copy",
                backend="musicgen",
                variant=variant.name,
                missing=missing,
            )
        return files

    def check_model(self) -> None:
        self.model_files()

    def model_version(self) -> str:
        """The weights' identity, plus on the CPU the in-place KV decoder's version and what it runs here (KV
        precision, int8 kernel path: static_kv.cpu_path). Each rounds differently, so its tracks get their own
        ids: e.g. `musicgen-small-int8-main+kv6-kvf32-nbits8`."""
        if self.provider != "cpu":
            return super().model_version()
        tag = static_kv.cpu_path(self._decoder_dtype())["tag"]
        return super().model_version() + f"+kv{static_kv.CONVERT_VERSION}-{tag}"

    def _decoder_dtype(self) -> str:
        if self.local_dir is None:
            return self.variant().dtype
        try:
            files = self.local_files()
        except LofiError:
            return "fp32"
        return decoder_dtype(str(files.get("decoder_merged") or files.get("decoder")))

    def local_model_version(self, local_dir: Path) -> str:
        try:
            files = self.local_files()
        except LofiError:
            return f"musicgen-local-missing-{local_dir.name}"
        dtype = decoder_dtype(str(files.get("decoder_merged") or files.get("decoder")))
        return f"musicgen-local-{dtype}-{files_fingerprint(files)}"

    def status(self) -> dict[str, Any]:
        out = super().status()
        if self._pipeline:
            out["provider"] = self._pipeline.provider
        # in-place KV decoder (static_kv.py) or the export's Concat cache; known for sure once loaded
        out["kv_cache"] = (
            self._pipeline.kv_cache if self._pipeline else ("static" if self.provider == "cpu" else "concat")
        )
        if out["kv_cache"] == "static":  # what this CPU runs (`:checkhealth lofi`, `lofi-daemon health`)
            try:
                path = static_kv.cpu_path(self._decoder_dtype())
            except LofiError:  # an unknown variant: reported by the rest of the status
                path = None
            if path:
                out["kv_precision"], out["decoder_products"] = path["kv_cache"], path["products"]
        if self.local_dir is not None:
            try:
                files = self.local_files()
                out["variant"] = "local-" + decoder_dtype(
                    str(files.get("decoder_merged") or files.get("decoder"))
                )
                out["files"] = [
                    {"role": r, "path": str(p), "size": p.stat().st_size} for r, p in files.items()
                ]
            except LofiError as exc:
                out["variant"] = "local"
                out["error"] = exc.message
        else:
            out["dtype"] = self.variant().dtype
        return out

    # ---- lifecycle ----------------------------------------------------------------------------------------
    def load(self) -> None:
        if self._pipeline is not None:
            return
        files = self.model_files()
        log.info("loading musicgen from %s", {k: str(v) for k, v in files.items()})
        self._pipeline = MusicGenPipeline(
            files, self.settings, warn=self._warn, window_sec=self.window_sec, stride_sec=self.stride_sec
        )
        log.info("musicgen loaded in %.1fs on %s", self._pipeline.load_sec, self._pipeline.provider)

    # ---- the radio: one stream, window after window -------------------------------------------------------
    def continuation_windows(self) -> tuple[float, float]:
        return self.window_sec, self.stride_sec

    def start_continuation(self, params: Mapping[str, Any], seed: int) -> MusicGenContinuation:
        return MusicGenContinuation(SamplingParams(**params), np.random.default_rng(seed))

    def continue_window(
        self, state: Any, prompt: str, cancel: CancelToken, on_audio: AudioChunkFn
    ) -> dict[str, Any]:
        try:
            return state.next_window(self.pipeline, prompt, cancel, on_audio)
        except (LofiError, Cancelled):
            raise
        except Exception as exc:
            log.exception("musicgen continuation failed")
            raise LofiError(ErrorCode.MODEL_INFERENCE_FAILED, f"musicgen inference failed: {exc}") from exc

    # ---- generation ---------------------------------------------------------------------------------------
    def generate(
        self,
        request: GenerationRequest,
        progress: ProgressFn,
        cancel: CancelToken,
        on_audio: AudioChunkFn | None = None,
    ) -> GeneratedAudio:
        params = self.validate(request.params)
        pipe = self.pipeline
        sampling = SamplingParams(**params)
        try:
            if on_audio is not None:
                from .streaming import generate_streaming

                result = generate_streaming(
                    pipe,
                    request.prompt,
                    request.duration_sec,
                    request.seed,
                    sampling,
                    progress,
                    cancel,
                    on_audio,
                )
            else:
                result = pipe.generate(
                    request.prompt,
                    request.duration_sec,
                    request.seed,
                    sampling,
                    progress=progress,
                    cancel=cancel,
                )
        except (LofiError, Cancelled):
            raise
        except Exception as exc:
            log.exception("musicgen inference failed")
            raise LofiError(ErrorCode.MODEL_INFERENCE_FAILED, f"musicgen inference failed: {exc}") from exc
        assert result.audio is not None
        samples = np.ascontiguousarray(result.audio.reshape(-1, 1), dtype=np.float32)
        info = {
            "tokens_generated": int(len(result.frames)),
            "windows": len(result.windows),
            "provider": pipe.provider,
            "timings": {k: round(v, 4) for k, v in result.timings.items()},
        }
        return GeneratedAudio(samples=samples, sample_rate=pipe.config.sample_rate, info=info)
