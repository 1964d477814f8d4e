"""The ACE-Step backend: validation, model files (local directory or hub variant), memory check, lazy loading,
LoRA styles, generation (48 kHz stereo).

Construct with `AceStepBackend(settings, notify)`. Model source, in order:
1. `settings.models["ace_step"].dir` (LOFI_ACE_STEP_DIR): a local directory in either layout (layout.py) — the
   faithful "lofi" layout comes from scripts/export_ace_step.py; never any network;
2. the hub variant (models/registry.py `ACE_STEP_VARIANTS`), from the huggingface_hub cache, downloaded only with
   consent (≈ 12.3 GB).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field

from ...cancel import CancelToken
from ...config import Settings
from ...errors import Cancelled, ErrorCode, LofiError
from ...models import download as hub
from ...models.local import files_fingerprint
from ...models.registry import ACE_STEP_VARIANTS, ModelVariant, default_variant
from ..base import AudioChunkFn, GeneratedAudio, GenerationRequest, ProgressFn
from ..model_backend import ModelBackend, NotifyFn
from ..params import BackendParams, one_of, parse_params
from . import lora as lora_mod
from . import memory
from .decode import OUTPUT_RATE, Windowing
from .guidance import CFG_TYPES
from .layout import DECODER_FILES, DTYPE_ALIASES, ModelLayout, choose_decoder, detect, missing_files
from .pipeline import STAGES, AceStepPipeline, SamplingParams, frame_count, planned_evaluations
from .schedulers import SCHEDULERS
from .sessions import session_factory
from .text import LyricTokenizer, lyric_tokenizer_for

log = logging.getLogger(__name__)

ENV_LORA_DIR = "LOFI_LORA_DIR"
DEFAULTS: dict[str, Any] = {
    "inference_steps": 60,
    "guidance_scale": 15.0,
    "scheduler": "euler",
    "cfg_type": "apg",
    "omega": 10.0,
    "guidance_interval": 0.5,
}
# The CPU preset: fewer Euler steps, so a 30 s track takes ≤ 2.5 min on a 2-core CPU with the int8 decoder
# (docs/benchmarks.md "CPU preset" gives its time and its drift against the 60-step default). An explicit
# inference_steps always wins.
CPU_DEFAULTS: dict[str, Any] = {**DEFAULTS, "inference_steps": 30}
# A bound on the work one request can ask of the lyric cleaner; the real limit is in tokens (the lyric encoder's
# position table, text.LYRIC_MAX_TOKENS), checked once the lyrics are tokenised.
MAX_LYRICS_CHARS = 20_000
GB = 1e9
# DCAE + vocoder time in transformer evaluations (both scale with the frames, so the ratio is per model and
# machine, not per duration); the ETA starts from these (full size, docs/benchmarks.md) and then uses what the
# last generation measured.
DECODE_EVALS_PRIOR = {"fp32": 8.0, "int8": 23.0, "fp16": 8.0}
available_memory_bytes = memory.available_memory_bytes  # tests replace it here


class AceStepParams(BackendParams):
    inference_steps: int = Field(default=DEFAULTS["inference_steps"], ge=1, le=200)
    guidance_scale: float = Field(default=DEFAULTS["guidance_scale"], ge=1, le=30)
    omega: float = Field(default=DEFAULTS["omega"], ge=0, le=100)
    guidance_interval: float = Field(default=DEFAULTS["guidance_interval"], ge=0, le=1)
    scheduler: str = DEFAULTS["scheduler"]  # case-insensitive: one_of(…, SCHEDULERS) in validate
    cfg_type: str = DEFAULTS["cfg_type"]
    lyrics: str | None = Field(default=None, max_length=MAX_LYRICS_CHARS)
    lora: str | None = None  # a style name or a path: every value gets one answer from _canonical_lora
    lora_weight: float | None = Field(default=None, ge=0, le=2)


PARAM_CODES = {
    "inference_steps": ErrorCode.INVALID_INFERENCE_STEPS,
    "guidance_scale": ErrorCode.INVALID_GUIDANCE_SCALE,
    "scheduler": ErrorCode.INVALID_SCHEDULER,
}


class AceStepBackend(ModelBackend[AceStepPipeline]):
    name = "ace_step"
    variants = ACE_STEP_VARIANTS
    display_name = "ACE-Step v1 (3.5B)"
    sample_rate = OUTPUT_RATE
    channels = 2
    min_duration_sec = 5.0
    max_duration_sec = 240.0
    default_duration_sec = 60.0
    streams_audio = False  # audio comes out of the DCAE decoder only once diffusion has finished

    def __init__(
        self, settings: Settings, notify: NotifyFn | None = None, *, windowing: Windowing | None = None
    ) -> None:
        super().__init__(settings, notify)
        self.windowing = windowing
        self._lora_key: tuple[str, float] | None = None
        self._plan: memory.MemoryPlan | None = None
        self._decode_evals: float | None = None  # measured DCAE + vocoder cost in evaluations
        self._lyric_tokenizer: tuple[Path, LyricTokenizer] | None = (
            None  # for validate before the model loads
        )

    # ---- parameters -------------------------------------------------------------------------------------
    def defaults(self) -> dict[str, Any]:
        """Sampling defaults for the active provider (the CPU preset on the CPU)."""
        return dict(CPU_DEFAULTS if self.provider == "cpu" else DEFAULTS)

    def validate(self, raw: Mapping[str, Any]) -> dict[str, Any]:
        raw = {
            **self.defaults(),
            **raw,
        }  # the provider's defaults (the CPU preset) where the client sent none
        p = parse_params(AceStepParams, raw, self.name, PARAM_CODES)
        params: dict[str, Any] = p.model_dump(
            include={"inference_steps", "guidance_scale", "omega", "guidance_interval"}
        )
        params["scheduler"] = one_of(
            p.scheduler, SCHEDULERS, "scheduler", self.name, ErrorCode.INVALID_SCHEDULER
        )
        params["cfg_type"] = one_of(p.cfg_type, CFG_TYPES, "cfg_type", self.name)
        if p.lyrics and p.lyrics.strip():
            params["lyrics"] = p.lyrics  # whole: upstream keeps leading and trailing blank lines
            self._check_lyrics(p.lyrics)
        if p.lora is not None:
            params["lora"] = self._canonical_lora(p.lora)
            params["lora_weight"] = 1.0 if p.lora_weight is None else p.lora_weight
        elif p.lora_weight is not None:
            raise LofiError(ErrorCode.INVALID_PARAMS, "lora_weight needs a lora", param="lora_weight")
        return params

    def _check_lyrics(self, lyrics: str) -> None:
        """Refuse lyrics longer than the lyric encoder takes and say what the missing `lyrics` extra changes, before
        the job is queued (with no model yet, `generate` tokenises with the same checks)."""
        if self._pipeline is not None:
            tokenizer = self._pipeline.lyric_tokenizer
        else:
            try:
                layout = self.layout()
            except LofiError:
                return
            if self._lyric_tokenizer is None or self._lyric_tokenizer[0] != layout.dir:
                self._lyric_tokenizer = (layout.dir, lyric_tokenizer_for(layout))
            tokenizer = self._lyric_tokenizer[1]
        if tokenizer.available:
            for note in tokenizer.tokens(lyrics).notes:
                self._warn(note)

    # ---- LoRA styles --------------------------------------------------------------------------------------
    def lora_dir(self) -> Path:
        env = os.environ.get(ENV_LORA_DIR)
        return Path(env).expanduser() if env else Path(self.settings.cache_dir) / "lora"

    def lora_styles(self) -> list[str]:
        d = self.lora_dir()
        if not d.is_dir():
            return []
        return sorted(p.name for p in d.iterdir() if (p / lora_mod.WEIGHTS_NAME).is_file())

    def _canonical_lora(self, value: Any) -> str:
        """A style name (no path separators) must be a style in the LoRA folder and stays a name; anything else
        must be an absolute path (or ~/…) of a LoRA .safetensors file, checked by its header, and becomes its
        absolute path. Every failure gets the same message, so `lora` cannot probe which files exist."""
        if not isinstance(value, str) or not value.strip():
            raise LofiError(ErrorCode.INVALID_PARAMS, "lora must be a style name or a path", param="lora")
        value = value.strip()
        is_path = value.startswith("~") or "/" in value or os.sep in value or (os.altsep or "/") in value
        if not is_path and value in self.lora_styles():
            return value
        path = Path(value).expanduser()
        if is_path and path.is_absolute() and lora_mod.is_lora_file(path):
            return str(path.resolve())
        styles = ", ".join(self.lora_styles()) or "none"
        raise LofiError(
            ErrorCode.INVALID_PARAMS,
            f"lora must be a style in {self.lora_dir()} ({styles}) or the absolute path of a LoRA "
            f".safetensors file (e.g. …/{lora_mod.WEIGHTS_NAME}) with lora_A/lora_B tensors",
            param="lora",
        )

    def _lora_file(self, canonical: str) -> Path:
        if canonical in self.lora_styles():
            return self.lora_dir() / canonical / lora_mod.WEIGHTS_NAME
        return lora_mod.resolve_file(Path(canonical))

    # ---- model files ----------------------------------------------------------------------------------------
    def requested_dtype(self) -> str | None:
        """The decoder precision asked for: a dtype name ("int8", "fp32", "fp16"), or a hub variant's dtype."""
        name = self.requested_variant
        if not name:
            return None
        if name in ACE_STEP_VARIANTS:
            return ACE_STEP_VARIANTS[name].dtype
        return DTYPE_ALIASES.get(name.strip().lower())

    def variant(self) -> ModelVariant:
        name = self.requested_variant
        if name and name.strip().lower() in DTYPE_ALIASES:  # a precision, not a hub variant
            return default_variant(self.name, self.provider)
        if name and name not in self.variants:
            known = ", ".join([*sorted(self.variants), *DECODER_FILES])
            raise LofiError(
                ErrorCode.MODEL_NOT_FOUND, f"unknown ace_step variant '{name}' (known: {known})", variant=name
            )
        return super().variant()

    def layout(self) -> ModelLayout:
        """The model directory in use; raises MODEL_NOT_FOUND / BACKEND_NOT_INSTALLED (never downloads)."""
        if self.local_dir is not None:
            found = detect(self.local_dir)
            if found is None:
                if not self.local_dir.is_dir():
                    raise LofiError(
                        ErrorCode.MODEL_NOT_FOUND,
                        f"ace_step model directory {self.local_dir} does not exist",
                        dir=str(self.local_dir),
                    )
                missing = missing_files(self.local_dir)
                raise LofiError(
                    ErrorCode.MODEL_NOT_FOUND,
                    f"ace_step model directory {self.local_dir} is incomplete: missing {', '.join(missing)} "
                    "(the lofi layout comes from scripts/export_ace_step.py; the lofi.nvim reference "
                    "layout is also accepted)",
                    dir=str(self.local_dir),
                    missing=missing,
                )
            return found
        v = self.variant()
        files = hub.cached_files(v)
        if files is None:
            raise LofiError(
                ErrorCode.BACKEND_NOT_INSTALLED,
                f"the ACE-Step model '{v.name}' is not downloaded: about {v.approx_total / GB:.1f} GB from "
                f"{v.repo_id}, and it needs about 12 GB of free RAM to run on the CPU. Consent with "
                '`download_backend {backend: "ace_step"}` (:Lofi download ace_step) or generate with '
                "allow_download: true; or set models.ace_step.dir / LOFI_ACE_STEP_DIR to a local export",
                backend=self.name,
                variant=v.name,
                download_size_bytes=v.approx_total,
                missing=[f.path for f in hub.missing_files(v)],
            )
        found = detect(files["text_encoder"].parent)
        if found is None:
            raise LofiError(
                ErrorCode.MODEL_NOT_FOUND,
                f"downloaded ace_step files in {files['text_encoder'].parent} are incomplete",
            )
        return found

    def check_model(self) -> None:
        self.layout()

    def decoder_dtype(self, layout: ModelLayout) -> str:
        """The transformer decoder precision this layout runs with (raises when the requested one is missing)."""
        requested = self.requested_dtype()
        dtype = choose_decoder(layout, requested, self.provider)
        if dtype is None:
            assert requested is not None
            raise LofiError(
                ErrorCode.MODEL_NOT_FOUND,
                f"the ace_step {requested} decoder ({DECODER_FILES[requested]}) is not in {layout.dir}: "
                f"make it with `python scripts/quantize_ace_step.py {layout.dir} --{requested}` (needs "
                f"the export extra), or choose one of: {', '.join(layout.decoder_dtypes())}",
                variant=requested,
                dir=str(layout.dir),
            )
        return dtype

    def local_model_version(self, local_dir: Path) -> str:
        found = detect(local_dir)
        if found is None:
            return f"ace-step-local-missing-{local_dir.name}"
        try:
            dtype = self.decoder_dtype(found)
        except LofiError:
            return f"ace-step-{found.kind}-missing-{self.requested_dtype()}"
        files = {p.name: p for p in found.files}
        if dtype == "fp32":  # unchanged identity for tracks made before precisions were selectable
            return f"ace-step-{found.kind}-{files_fingerprint(files)}"
        files.update((p.name, p) for p in memory.stage_files(found.path(DECODER_FILES[dtype])))
        return f"ace-step-{found.kind}-{dtype}-{files_fingerprint(files)}"

    def status(self) -> dict[str, Any]:
        out = super().status()
        out.update(lora_styles=self.lora_styles(), defaults=self.defaults(), memory=memory.requested_mode())
        if self.local_dir is not None:
            found = detect(self.local_dir)
            out["variant"] = f"local-{found.kind}" if found else "local"
            if found:
                out["layout"] = found.kind
                out["size_bytes"] = found.size_bytes
                out["decoder_variants"] = found.decoder_dtypes()
                try:
                    out["decoder_variant"] = self.decoder_dtype(found)
                except LofiError as exc:
                    out["error"] = exc.message
        else:
            out["layout"] = "reference"
        return out

    def download(self, progress: Callable[[dict[str, Any]], None] | None, cancel: CancelToken) -> None:
        """As ModelBackend.download, after checking that the ≈ 12 GB fit on the disk."""
        if self.local_dir is None:
            self._check_space_and_announce()
        super().download(progress, cancel)

    def _check_space_and_announce(self) -> None:
        """MODEL_DOWNLOAD_FAILED when the files would not fit; else tell the user how much is coming."""
        v = self.variant()
        missing = hub.missing_files(v)
        need = sum(f.approx_size or f.size or 0 for f in missing)
        cache = hub.hub_cache_dir()
        probe = cache if cache.exists() else next((p for p in cache.parents if p.exists()), Path("/"))
        free = shutil.disk_usage(probe).free
        if need and free < need * 1.05:
            raise LofiError(
                ErrorCode.MODEL_DOWNLOAD_FAILED,
                f"not enough disk space for the ACE-Step model: {need / GB:.1f} GB needed in {cache}, "
                f"{free / GB:.1f} GB free",
                needed_bytes=need,
                free_bytes=free,
            )
        self._warn(
            f"downloading the ACE-Step model ({need / GB:.1f} GB from {v.repo_id}); this takes a while"
        )

    # ---- lifecycle --------------------------------------------------------------------------------------------
    def stage_graphs(self, layout: ModelLayout) -> dict[str, Path]:
        """The graph file of each stage, with the chosen decoder precision."""
        graphs = {stage: layout.path(f"{stage}.onnx") for stage in STAGES}
        graphs["transformer_decoder"] = layout.path(DECODER_FILES[self.decoder_dtype(layout)])
        return graphs

    def memory_plan(self, layout: ModelLayout) -> memory.MemoryPlan:
        sizes = memory.stage_bytes(self.stage_graphs(layout))
        if self.provider != "cpu":  # weights live in GPU memory; keep everything resident as before
            return memory.MemoryPlan(True, sum(sizes.values()), max(sizes, key=lambda k: sizes[k]), "high")
        return memory.plan(memory.requested_mode(), sizes, available_memory_bytes())

    def check_memory(self, layout: ModelLayout) -> memory.MemoryPlan:
        """On the CPU all weights live in RAM: refuse, before anything is loaded, when free memory is below what
        the memory plan needs (memory.py: the largest stage alone in "low", all five in "high")."""
        plan = self.memory_plan(layout)
        if self.provider != "cpu":
            return plan
        free = available_memory_bytes()
        if free is not None and free < plan.need_bytes:
            dtype = self.decoder_dtype(layout)
            hint = (
                "; the int8 decoder needs about a quarter of that (scripts/quantize_ace_step.py)"
                if dtype == "fp32"
                else ""
            )
            raise LofiError(
                ErrorCode.MODEL_LOAD_FAILED,
                f"not enough free memory to run ACE-Step on the CPU: {plan.need_bytes / GB:.1f} GB "
                f"needed ({plan.describe()}; largest: the {dtype} {plan.largest_stage.replace('_', ' ')}"
                f"), {free / GB:.1f} GB available; close other programs{hint}",
                needed_bytes=plan.need_bytes,
                available_bytes=free,
                memory=plan.mode,
                largest_stage=plan.largest_stage,
            )
        return plan

    def load(self) -> None:
        if self._pipeline is not None:
            return
        layout = self.layout()
        plan = self.check_memory(layout)
        graphs = self.stage_graphs(layout)
        started = time.monotonic()
        try:
            pipe = AceStepPipeline(
                layout,
                session_factory(self.settings, self._warn),
                self.windowing,
                files=graphs,
                resident=plan.resident,
            )
            if plan.resident:  # open all five now, so a broken file fails the load and not a generation
                for stage in STAGES:
                    pipe.graphs.session(stage)
        except LofiError:
            raise
        except Exception as exc:
            raise LofiError(
                ErrorCode.MODEL_LOAD_FAILED, f"could not load ACE-Step from {layout.dir}: {exc}"
            ) from exc
        self._pipeline = pipe
        self._plan = plan
        self._lora_key = None
        if layout.kind == "reference":
            self._warn(
                "ACE-Step runs the lofi.nvim reference export: no ERG, fixed 128-frame DCAE windows, "
                "no lyrics tokenizer, no LoRA (export the faithful layout with scripts/export_ace_step.py)"
            )
        log.info(
            "ace_step (%s layout, %s decoder, memory %s: %s) ready in %.1fs",
            layout.kind,
            graphs["transformer_decoder"].name,
            plan.mode,
            plan.describe(),
            time.monotonic() - started,
        )

    def unload(self) -> None:
        if self._pipeline is not None:
            self._pipeline.graphs.close()
        super().unload()
        self._plan = None
        self._lora_key = None

    def _apply_lora(self, style: str | None, weight: float) -> dict[str, Any]:
        """Make the transformer sessions carry `style` merged at `weight` (or the base weights)."""
        pipe = self.pipeline
        key = (style, weight) if style else None
        if key == self._lora_key:
            return {}
        if key is None:
            pipe.graphs.load_transformer(None, None)
            self._lora_key = None
            return {}
        if pipe.layout.kind != "lofi":
            raise LofiError(
                ErrorCode.INVALID_PARAMS,
                "LoRA styles need the lofi ONNX layout (scripts/export_ace_step.py)",
                param="lora",
            )
        started = time.monotonic()
        pairs, cfg = lora_mod.read_lora(self._lora_file(key[0]))
        names = json.loads(pipe.layout.path("lora_name_map.json").read_text())
        enc, used_e = lora_mod.merged_initializers(
            pairs, cfg, weight, names["transformer_encoder.onnx"], pipe.layout.dir
        )
        dec, used_d = lora_mod.merged_initializers(
            pairs, cfg, weight, names["transformer_decoder.onnx"], pipe.layout.dir
        )
        unused = sorted(set(pairs) - used_e - used_d)
        if unused:
            self._warn(
                f"LoRA {style}: {len(unused)} adapted modules have no weight in this model (e.g. {unused[0]})"
            )
        pipe.graphs.load_transformer(enc, dec)
        self._lora_key = key
        return {"lora_modules": len(used_e | used_d), "lora_merge_sec": round(time.monotonic() - started, 3)}

    # ---- generation -------------------------------------------------------------------------------------------
    def generate(
        self,
        request: GenerationRequest,
        progress: ProgressFn,
        cancel: CancelToken,
        on_audio: AudioChunkFn | None = None,
    ) -> GeneratedAudio:
        params = self.validate(request.params)
        pipe = self.pipeline
        if self._plan is not None and not self._plan.resident:
            self.check_memory(pipe.layout)  # nothing is open between generations: check again before loading
        p = SamplingParams(
            steps=params["inference_steps"],
            guidance_scale=params["guidance_scale"],
            scheduler=params["scheduler"],
            cfg_type=params["cfg_type"],
            omega=params["omega"],
            guidance_interval=params["guidance_interval"],
        )
        p = pipe.effective(p)
        timings: dict[str, float] = {}
        # Progress counts transformer evaluations, then the DCAE + vocoder decode as its cost in evaluations, so
        # the reporter's ETA (elapsed / done × remaining) covers the decode too.
        dtype = self.decoder_dtype(pipe.layout)
        evals = planned_evaluations(p)
        decode_evals = self._decode_evals or DECODE_EVALS_PRIOR[dtype]
        total = evals + decode_evals
        try:
            t0 = time.monotonic()
            info = self._apply_lora(params.get("lora"), params.get("lora_weight", 1.0))
            frames = frame_count(request.duration_sec)
            rng = np.random.default_rng(request.seed)
            noise = rng.standard_normal((1, 8, 16, frames), dtype=np.float32)
            cancel.check()
            cond = pipe.conditions(request.prompt, params.get("lyrics"), p)
            timings["conditions"] = time.monotonic() - t0

            def on_step(step: int, steps: int, evaluations: int) -> None:
                progress(
                    evaluations,
                    total,
                    current_step=step,
                    total_steps=steps,
                    evaluations=evaluations,
                    stage="diffusion",
                )

            t1 = time.monotonic()
            latents = pipe.sample(
                cond,
                noise,
                p,
                step_noise=lambda shape: rng.standard_normal(shape, dtype=np.float32),
                check=cancel.check,
                on_step=on_step,
            )
            timings["diffusion"] = time.monotonic() - t1

            def on_decode(fraction: float) -> None:
                progress(
                    evals + fraction * decode_evals,
                    total,
                    current_step=p.steps,
                    total_steps=p.steps,
                    evaluations=evals,
                    stage="decode",
                    decode_fraction=round(fraction, 3),
                )

            t2 = time.monotonic()
            audio = pipe.latents_to_audio(latents, cancel.check, on_decode)
            timings["decode"] = time.monotonic() - t2
            if timings["diffusion"] > 0 and evals:
                self._decode_evals = timings["decode"] / (timings["diffusion"] / evals)
        except (LofiError, Cancelled):
            raise
        except Exception as exc:
            log.exception("ace_step inference failed")
            raise LofiError(ErrorCode.MODEL_INFERENCE_FAILED, f"ace_step inference failed: {exc}") from exc
        finally:
            if not pipe.graphs.resident:
                pipe.graphs.close()
        info.update(
            latent_frames=frames,
            steps=p.steps,
            scheduler=p.scheduler,
            cfg_type=p.cfg_type,
            layout=pipe.layout.kind,
            erg=p.use_erg_diffusion,
            timings={k: round(v, 3) for k, v in timings.items()},
            decoder_variant=dtype,
            memory=self._plan.mode if self._plan else None,
        )
        return GeneratedAudio(samples=audio, sample_rate=OUTPUT_RATE, info=info)
