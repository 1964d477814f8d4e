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
import re
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field

from ...cache.index import Track
from ...cancel import CancelToken
from ...config import Settings
from ...errors import Cancelled, ErrorCode, LofiError
from ...models import download as hub
from ...models.local import files_fingerprint
from ...models.registry import ACE_STEP_VARIANTS, ModelVariant, default_variant
from ...ports import Store
from ..base import AudioChunkFn, GeneratedAudio, GenerationRequest, ProgressFn
from ..model_backend import ModelBackend, NotifyFn
from ..params import BackendParams, NegativePrompt, clean_text, one_of, parse_params
from . import decode as dec
from . import lora as lora_mod
from . import memory, tasks
from .decode import OUTPUT_RATE, Windowing
from .encode import ENCODER_FILE, SAMPLES_PER_LATENT
from .guidance import CFG_TYPES
from .layout import DECODER_FILES, DTYPE_ALIASES, ModelLayout, choose_decoder, detect, missing_files
from .pipeline import (
    DCAE_SHARE,
    STAGES,
    AceStepPipeline,
    Conditions,
    SamplingParams,
    flowedit_evaluations,
    frame_count,
    planned_evaluations,
)
from .schedulers import SCHEDULERS, Scheduler
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
# The editing tasks that encode their source's audio first, and that encode's cost as a share of the DCAE +
# vocoder decode: the encoder takes ≈ 0.8× the DCAE decoder's time (docs/benchmarks.md, "Encode path"), which
# is DCAE_SHARE of the decode.
ENCODING_TASKS = ("repaint", "extend", "audio2audio", "edit")
ENCODE_SHARE = 0.8 * DCAE_SHARE
available_memory_bytes = memory.available_memory_bytes  # tests replace it here


# Upstream's editing tasks (tasks.py). Each acts on a cached track, `source_track`; the params each one takes:
TASKS = ("text2music", "retake", "repaint", "extend", "audio2audio", "edit")
TASK_PARAMS: dict[str, tuple[str, ...]] = {
    "text2music": (),
    "retake": ("retake_variance",),
    "repaint": ("retake_variance", "repaint_start", "repaint_end"),
    "extend": ("retake_variance", "extend_left", "extend_right"),
    "audio2audio": ("ref_audio_strength",),
    "edit": ("edit_n_min", "edit_n_max", "edit_n_avg"),
}
# retake/repaint/extend of an ACE-Step track start from its noise: they inherit how it was sampled unless the
# request says otherwise (upstream's UI passes the source's settings along the same way)
INHERITED = (
    "inference_steps",
    "guidance_scale",
    "omega",
    "guidance_interval",
    "scheduler",
    "cfg_type",
    "lyrics",
    "lora",
    "lora_weight",
    "negative_prompt",
)
# upstream's defaults: retake_variance 0.5 (`__call__`), 1.0 for extend (its UI: new frames start from noise);
# ref_audio_strength 0.5; edit_n_min/max 0.6/1.0 (its UI's "only_lyrics" edit), n_avg 1
TASK_DEFAULTS: dict[str, dict[str, Any]] = {
    "retake": {"retake_variance": 0.5},
    "repaint": {"retake_variance": 0.5},
    "extend": {"retake_variance": 1.0},
    "audio2audio": {"ref_audio_strength": 0.5},
    "edit": {"edit_n_min": 0.6, "edit_n_max": 1.0, "edit_n_avg": 1},
}


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
    task: str | None = None  # one of TASKS, case-insensitive
    source_track: str | None = Field(default=None, pattern=r"^[0-9a-f]{16}$")
    retake_variance: float | None = Field(default=None, ge=0, le=1)
    repaint_start: float | None = Field(default=None, ge=0, le=240)
    repaint_end: float | None = Field(default=None, gt=0, le=240)
    extend_left: float | None = Field(default=None, ge=0, le=240)
    extend_right: float | None = Field(default=None, ge=0, le=240)
    ref_audio_strength: float | None = Field(default=None, ge=0, lt=1)
    edit_n_min: float | None = Field(default=None, ge=0, lt=1)
    edit_n_max: float | None = Field(default=None, gt=0, le=1)
    edit_n_avg: int | None = Field(default=None, ge=1, le=8)
    negative_prompt: NegativePrompt = ""


PARAM_CODES = {
    "inference_steps": ErrorCode.INVALID_INFERENCE_STEPS,
    "guidance_scale": ErrorCode.INVALID_GUIDANCE_SCALE,
    "scheduler": ErrorCode.INVALID_SCHEDULER,
}


@dataclass
class TaskRun:
    """How one generation samples: its starting latents (their frames = the output's), params, noise source
    (PingPong's step noise; FlowEdit's forward noise), planned evaluations, and the repaint plan or the FlowEdit
    source/target conditions."""

    start: np.ndarray
    p: SamplingParams
    noise: Callable[[tuple[int, ...]], np.ndarray]
    evaluations: int
    repaint: tasks.Repaint | None = None
    edit: tuple[Conditions, Conditions] | None = None
    # output samples at 48 kHz for tasks on audio: the encoder pads the source to whole latent frames (a lofi
    # track re-encoded comes back a fraction of a sample longer, so one frame more), and upstream trims the
    # decoded audio to the source's duration the same way
    length: int | None = None


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

    reads_tracks = True  # create_backends passes the track cache: editing tasks read their source there

    def __init__(
        self,
        settings: Settings,
        notify: NotifyFn | None = None,
        *,
        windowing: Windowing | None = None,
        tracks: Store | None = None,
    ) -> None:
        super().__init__(settings, notify)
        self.windowing = windowing
        self._lora_key: tuple[str, float] | None = None
        self._plan: memory.MemoryPlan | None = None
        self._decode_evals: float | None = None  # measured DCAE + vocoder cost in evaluations
        self.tracks = tracks  # the track cache the editing tasks read their source from (None: no tasks)
        self._lyric_tokenizer: tuple[Path, LyricTokenizer] | None = (
            None  # for check_request before the model loads
        )

    # ---- parameters -------------------------------------------------------------------------------------
    def defaults(self) -> dict[str, Any]:
        """Sampling defaults for the active provider (the CPU preset on the CPU)."""
        return dict(CPU_DEFAULTS if self.provider == "cpu" else DEFAULTS)

    def validate(self, raw: Mapping[str, Any]) -> dict[str, Any]:
        source = self._source(raw)
        task = str(raw.get("task", "")).strip().lower()
        if source is not None and source.backend == self.name and task in ("retake", "repaint", "extend"):
            raw = {**{k: v for k, v in source.params.items() if k in INHERITED}, **raw}
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
            # whole: upstream keeps leading and trailing blank lines. Only their characters are bounded here:
            # tokenising takes 20–60 ms a line (language detection), too long for the RPC dispatch thread, so
            # the token limit is checked in the job (check_request), before the model loads.
            params["lyrics"] = p.lyrics
        if clean_text(p.negative_prompt):  # none: the track id of a request without one, as before it existed
            if task == "edit":
                raise LofiError(
                    ErrorCode.INVALID_PARAMS,
                    "task edit (FlowEdit) takes no negative_prompt: its unconditional pass stays upstream's",
                    param="negative_prompt",
                )
            params["negative_prompt"] = clean_text(p.negative_prompt)
        if p.lora is not None:
            params["lora"] = self._canonical_lora(p.lora)
            params["lora_weight"] = 1.0 if p.lora_weight is None else p.lora_weight
        elif p.lora_weight is not None:
            raise LofiError(ErrorCode.INVALID_PARAMS, "lora_weight needs a lora", param="lora_weight")
        params.update(self._task_params(p, source))
        return params

    # ---- editing tasks ------------------------------------------------------------------------------------
    def _source(self, raw: Mapping[str, Any]) -> Track | None:
        """The cached track `source_track` names (None when the request names none or names it badly: the
        params check then says what is wrong)."""
        track_id = raw.get("source_track")
        if not isinstance(track_id, str) or not re.fullmatch(r"[0-9a-f]{16}", track_id):
            return None
        if self.tracks is None:
            raise LofiError(
                ErrorCode.INVALID_PARAMS, "editing tasks need the daemon's track cache", param="source_track"
            )
        track = self.tracks.get(track_id)
        if track is None:
            raise LofiError(
                ErrorCode.TRACK_NOT_FOUND,
                f"no cached track {track_id}: editing tasks act on tracks in the cache",
                track_id=track_id,
                param="source_track",
            )
        return track

    def _task_params(self, p: AceStepParams, source: Track | None) -> dict[str, Any]:
        """The task and its params with upstream's defaults filled in (all part of the track identity); nothing
        for text2music, so its track ids are unchanged."""
        task = one_of(p.task or "text2music", TASKS, "task", self.name)
        given = [k for names in TASK_PARAMS.values() for k in names if getattr(p, k) is not None]
        for name in given:
            if name not in TASK_PARAMS[task]:
                raise LofiError(
                    ErrorCode.INVALID_PARAMS, f"{name} is not a param of the {task} task", param=name
                )
        if task == "text2music":
            if p.source_track is not None:
                raise LofiError(
                    ErrorCode.INVALID_PARAMS,
                    f"source_track needs a task ({', '.join(TASKS[1:])})",
                    param="source_track",
                )
            return {}
        if source is None:
            raise LofiError(
                ErrorCode.INVALID_PARAMS,
                f"the {task} task needs source_track, the id of a cached track",
                param="source_track",
            )
        out: dict[str, Any] = {"task": task, "source_track": source.track_id}
        out.update({k: v for k, v in TASK_DEFAULTS[task].items()})
        out.update({k: getattr(p, k) for k in given})
        if task == "retake" and source.backend != self.name:
            raise LofiError(
                ErrorCode.INVALID_PARAMS,
                f"retake makes variations of an ace_step track (its seed and settings); {source.track_id} is "
                f"a {source.backend} track: repaint it instead",
                param="source_track",
            )
        made_by = source.params.get("task", "text2music")
        if task == "retake" and made_by not in ("text2music", "retake"):
            raise LofiError(
                ErrorCode.INVALID_PARAMS,
                f"retake varies generated tracks and their variations; {source.track_id} was made by {made_by}: "
                "repaint it instead",
                param="source_track",
            )
        if task == "repaint":
            start = out.setdefault("repaint_start", 0.0)
            end = out.setdefault("repaint_end", round(source.duration_sec, 3))
            # frames are upstream's ⌊s · 44100 / 4096⌋: a range inside one 93 ms frame would repaint nothing
            if not (start < end <= source.duration_sec + 0.5 and frame_count(end) > frame_count(start)):
                raise LofiError(
                    ErrorCode.INVALID_PARAMS,
                    f"repaint range {start:g}–{end:g} s must be a non-empty part of the track "
                    f"(0–{source.duration_sec:.1f} s) spanning a latent frame (93 ms)",
                    param="repaint_end",
                )
        if task == "extend":
            left, right = out.setdefault("extend_left", 0.0), out.setdefault("extend_right", 0.0)
            total = source.duration_sec + left + right
            if left + right <= 0:
                raise LofiError(
                    ErrorCode.INVALID_PARAMS,
                    "extend needs extend_left or extend_right seconds",
                    param="extend_right",
                )
            if total > self.max_duration_sec:
                raise LofiError(
                    ErrorCode.INVALID_DURATION,
                    f"the extended track would be {total:.1f} s; ace_step makes at most {self.max_duration_sec:g} s",
                    max_duration_sec=self.max_duration_sec,
                )
        if (
            task == "audio2audio"
            and tasks.audio2audio_steps(p.inference_steps, out["ref_audio_strength"]) < 1
        ):
            raise LofiError(
                ErrorCode.INVALID_PARAMS,
                f"ref_audio_strength {out['ref_audio_strength']:g} leaves no step of {p.inference_steps}",
                param="ref_audio_strength",
            )
        if task == "edit" and not out["edit_n_min"] < out["edit_n_max"]:
            raise LofiError(
                ErrorCode.INVALID_PARAMS, "edit_n_min must be below edit_n_max", param="edit_n_min"
            )
        return out

    def check_request(self, request: GenerationRequest) -> None:
        """The checks too slow for `validate` (the RPC dispatch thread), run by the worker before the model loads:
        refuse lyrics longer than the lyric encoder takes (INVALID_PARAMS, as `validate` would) and say what the
        missing `lyrics` extra changes. Without the model files yet, `generate` tokenises with the same checks."""
        lyrics = request.params.get("lyrics")
        if not lyrics:
            return
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
        if tokenizer.available:  # (lyric_lang's detection cache makes generate's own tokenising cheap)
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
    def _prepare(
        self,
        params: dict[str, Any],
        request: GenerationRequest,
        pipe: AceStepPipeline,
        p: SamplingParams,
        check: Callable[[], None],
        on_encode: Callable[[int, int], None] | None = None,
    ) -> TaskRun:
        """The starting latents, noise source and loop of the request's task (tasks.py). retake, repaint and
        extend of an ACE-Step track start from the source's own noise (its seed), mixed with retake noise from
        the request's seed; text2music, audio2audio and edit draw from the request's seed."""
        task = params.get("task", "text2music")
        rng = np.random.default_rng(request.seed)

        def draw(gen: np.random.Generator) -> Callable[[tuple[int, ...]], np.ndarray]:
            return lambda shape: gen.standard_normal(shape, dtype=np.float32)

        if task == "text2music":
            start = draw(rng)((1, 8, 16, frame_count(request.duration_sec)))
            return TaskRun(start, p, draw(rng), planned_evaluations(p))
        assert self.tracks is not None
        source = self.tracks.require(params["source_track"])
        if task == "retake":
            frames = int(source.info.get("latent_frames") or round(source.duration_sec * 44100 / 4096))
            noise, src_rng = self._source_noise(source, frames, strict=True)
            retake = draw(rng)(noise.shape)
            start = tasks.mix(noise, retake, params["retake_variance"])
            return TaskRun(start, p, draw(src_rng), planned_evaluations(p))
        if not pipe.has_encoder:
            raise LofiError(
                ErrorCode.MODEL_NOT_FOUND,
                f"the {task} task needs the DCAE encoder ({ENCODER_FILE}) in {pipe.layout.dir}: add it with "
                f"`python scripts/export_ace_step.py --size full --checkpoint CKPT --out {pipe.layout.dir} "
                "--encoder-only` (the reference layout has none)",
                dir=str(pipe.layout.dir),
            )
        audio, rate = self.tracks.read_audio(source.track_id)
        src = pipe.encode_audio(audio, rate, check, on_encode)
        # A last latent frame less than half full of audio is dropped: a lofi track comes back from 48 kHz a
        # fraction of a sample longer than its frames, and upstream's extra, nearly silent frame would sit
        # between the track and a right extension (93 ms of silence).
        whole = max(1, round(audio.shape[0] * dec.MODEL_RATE / rate / SAMPLES_PER_LATENT))
        src = src[..., :whole]
        frames = src.shape[-1]
        length = round(audio.shape[0] * OUTPUT_RATE / rate)
        if task == "audio2audio":
            strength = params["ref_audio_strength"]
            pa = replace(p, steps=tasks.audio2audio_steps(p.steps, strength), sigma_max=1 - strength)
            top = Scheduler(pa.scheduler, pa.steps, pa.omega, sigma_max=pa.sigma_max).start_sigma
            start = tasks.noised_reference(src, draw(rng)(src.shape), top)
            return TaskRun(start, pa, draw(rng), planned_evaluations(pa), length=length)
        if task == "edit":
            source_prompt = source.prompt
            source_lyrics = source.params.get("lyrics") if source.backend == self.name else None
            edit = (
                pipe.edit_conditions(source_prompt, source_lyrics),
                pipe.edit_conditions(request.prompt, params.get("lyrics")),
            )
            n = flowedit_evaluations(p, params["edit_n_min"], params["edit_n_max"], params["edit_n_avg"])
            return TaskRun(src, p, draw(rng), n, edit=edit, length=length)
        noise, src_rng = self._source_noise(source, frames)
        variance = params["retake_variance"]
        plan: tasks.Repaint | None
        if task == "repaint":
            hi = min(frame_count(params["repaint_end"]), frames)
            plan = tasks.repaint(
                src,
                noise,
                draw(rng)(noise.shape),
                frame_count(params["repaint_start"]),
                hi,
                variance,
                p.steps,
            )
            if plan is None:  # the whole track: upstream makes it a retake
                return TaskRun(
                    tasks.mix(noise, draw(rng)(noise.shape), variance),
                    p,
                    draw(src_rng),
                    planned_evaluations(p),
                    length=length,
                )
        else:
            left, right = frame_count(params["extend_left"]), frame_count(params["extend_right"])
            retake = draw(rng)((1, 8, 16, max(frames, left, right)))
            plan = tasks.extend(src, noise, retake, left, right, variance, p.steps)
            length += round((left + right) * SAMPLES_PER_LATENT * OUTPUT_RATE / dec.MODEL_RATE)
        return TaskRun(
            plan.x0, p, draw(src_rng), planned_evaluations(p, plan.n_min), repaint=plan, length=length
        )

    def _source_noise(
        self, source: Track, frames: int, strict: bool = False
    ) -> tuple[np.ndarray, np.random.Generator]:
        """The initial noise `source` was sampled from and the generator its step noise continued from: its
        seed's for a text2music track, its source's mixed with its own retake noise for a retake (so a variation
        of a variation starts where that variation started). Tracks of other backends or tasks give their seed's
        noise (any Gaussian noise is a valid start for repaint and extend). `strict` (retake): a retake whose
        source was evicted cannot be reproduced, which is an error."""
        assert self.tracks is not None
        if source.backend == self.name and source.params.get("task") == "retake":
            parent = self.tracks.get(source.params["source_track"])
            if parent is not None:
                base, step_rng = self._source_noise(parent, frames, strict)
                own = np.random.default_rng(source.seed).standard_normal(base.shape, dtype=np.float32)
                return tasks.mix(base, own, source.params["retake_variance"]), step_rng
            if strict:
                raise LofiError(
                    ErrorCode.TRACK_NOT_FOUND,
                    f"{source.track_id} is a variation of {source.params['source_track']}, which is no longer "
                    "cached: its starting noise cannot be rebuilt (repaint it instead)",
                    track_id=source.params["source_track"],
                )
        gen = np.random.default_rng(source.seed)
        return gen.standard_normal((1, 8, 16, frames), dtype=np.float32), gen

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
        dtype = self.decoder_dtype(pipe.layout)
        decode_evals = self._decode_evals or DECODE_EVALS_PRIOR[dtype]
        try:
            t0 = time.monotonic()
            info = self._apply_lora(params.get("lora"), params.get("lora_weight", 1.0))
            cancel.check()
            # Progress counts the source's encode (editing tasks), transformer evaluations, then the DCAE +
            # vocoder decode, each as its cost in evaluations, so the reporter's ETA (elapsed / done × remaining)
            # covers all three. Until the task's evaluations are known the text2music count stands in.
            encode_evals = ENCODE_SHARE * decode_evals if params.get("task") in ENCODING_TASKS else 0.0

            def on_encode(done: int, windows: int) -> None:
                provisional = encode_evals + planned_evaluations(p) + decode_evals
                progress(done / windows * encode_evals, provisional, stage="encode", encode_windows=windows)

            run = self._prepare(params, request, pipe, p, cancel.check, on_encode)
            p = run.p
            frames = run.start.shape[-1]
            evals = run.evaluations
            total = encode_evals + evals + decode_evals
            cancel.check()
            cond = (
                pipe.conditions(request.prompt, params.get("lyrics"), p, params.get("negative_prompt", ""))
                if run.edit is None
                else None
            )
            timings["conditions"] = time.monotonic() - t0

            def on_step(step: int, steps: int, evaluations: int) -> None:
                progress(
                    encode_evals + evaluations,
                    total,
                    current_step=step,
                    total_steps=steps,
                    evaluations=evaluations,
                    stage="diffusion",
                )

            t1 = time.monotonic()
            if run.edit is not None:
                src, tar = run.edit
                latents = pipe.flowedit(
                    src,
                    tar,
                    run.start,
                    p,
                    params["edit_n_min"],
                    params["edit_n_max"],
                    params["edit_n_avg"],
                    run.noise,
                    check=cancel.check,
                    on_step=on_step,
                )
            else:
                assert cond is not None
                latents = pipe.sample(
                    cond, run.start, p, run.noise, check=cancel.check, on_step=on_step, repaint=run.repaint
                )
            timings["diffusion"] = time.monotonic() - t1

            def on_decode(fraction: float) -> None:
                progress(
                    encode_evals + evals + fraction * decode_evals,
                    total,
                    current_step=p.steps,
                    total_steps=p.steps,
                    evaluations=evals,
                    stage="decode",
                    decode_fraction=round(fraction, 3),
                )

            t2 = time.monotonic()
            audio = pipe.latents_to_audio(latents, cancel.check, on_decode)[: run.length]
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
        if "task" in params:
            info.update(task=params["task"], source_track=params["source_track"])
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
