"""ACE-Step text2music on onnxruntime + numpy: the upstream `ACEStepPipeline.__call__` defaults and
`text2music_diffusion_process` loop (sigma schedule, guidance interval, APG/CFG/CFG-zero*, ERG, omega
mean-shift), then DCAE + stereo vocoder with overlapped windows and 44.1 → 48 kHz resampling.

No torch here. `Graphs` hides the two ONNX layouts (ours and the reference's) behind one call signature.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from . import decode as dec
from .encode import ENCODER_FILE, encode_audio
from .guidance import MomentumBuffer, apg, cfg, cfg_zero_star, guidance_window, scale_at
from .layout import ModelLayout
from .schedulers import Scheduler
from .tasks import Repaint
from .text import PromptTokenizer, lyric_tokenizer_for

log = logging.getLogger(__name__)

ERG_TAU = 0.01
# the DCAE's share of the DCAE + vocoder time for a 30 s track at full size (8.6 s of 29 s, docs/benchmarks.md)
DCAE_SHARE = 0.3
SessionFactory = Callable[[str, Mapping[str, np.ndarray] | None], ort.InferenceSession]


def flowedit_evaluations(p: SamplingParams, n_min: float, n_max: float, n_avg: int) -> int:
    """Transformer evaluations `flowedit` runs: two guided predictions per average while editing, one after."""
    per_eval = 1 if p.guidance_scale in (0.0, 1.0) else 2
    lo, hi = min(int(p.steps * n_min), p.steps), min(int(p.steps * n_max), p.steps)
    return per_eval * (2 * n_avg * max(0, hi - lo) + p.steps - max(hi, lo))


def frame_count(duration_sec: float) -> int:
    """Latent frames for a duration: upstream's floor(d · 44100 / 512 / 8)."""
    return int(duration_sec * 44100 / 512 / 8)


@dataclass(frozen=True)
class SamplingParams:
    steps: int = 60
    guidance_scale: float = 15.0
    scheduler: str = "euler"
    cfg_type: str = "apg"
    omega: float = 10.0
    guidance_interval: float = 0.5
    guidance_interval_decay: float = 0.0
    min_guidance_scale: float = 3.0
    use_erg_tag: bool = True
    use_erg_lyric: bool = True
    use_erg_diffusion: bool = True
    zero_steps: int = 1
    use_zero_init: bool = True
    sigma_max: float = 1.0  # audio2audio's shortened schedule (tasks.py)


def planned_evaluations(p: SamplingParams, first: int = 0) -> int:
    """Transformer evaluations `sample` will run for p (cond + uncond inside the guidance window), starting at
    evaluation `first` (a repaint's n_min)."""
    sched = Scheduler(p.scheduler, p.steps, p.omega, sigma_max=p.sigma_max)
    n = sched.num_evaluations
    first = min(max(first, 0), n)
    if p.guidance_scale in (0.0, 1.0):
        return n - first
    start, end = guidance_window(sched.num_inference_steps, p.guidance_interval)
    return n - first + max(0, min(end, n) - max(start, first))


@dataclass
class Conditions:
    cond: np.ndarray  # [1, S, D] encoder_hidden_states
    uncond: np.ndarray  # [1, S, D]
    mask: np.ndarray  # [1, S] float32 (shared by both in text2music, as upstream)
    # its own: FlowEdit's unconditional pass (lyric mask zeroed), or a negative prompt of another length
    uncond_mask: np.ndarray | None = None

    @property
    def null_mask(self) -> np.ndarray:
        return self.mask if self.uncond_mask is None else self.uncond_mask

    def batch(self) -> tuple[np.ndarray, np.ndarray]:
        """(cond + uncond states [2, S, D], masks [2, S]) for one batch-2 evaluation: the shorter branch padded
        with zero states under a zero mask."""
        width = max(self.cond.shape[1], self.uncond.shape[1])

        def pad(states: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            extra = width - states.shape[1]
            return np.pad(states, ((0, 0), (0, extra), (0, 0))), np.pad(mask, ((0, 0), (0, extra)))

        (cs, cm), (us, um) = pad(self.cond, self.mask), pad(self.uncond, self.null_mask)
        return np.concatenate([cs, us]), np.concatenate([cm, um])


def _inputs(sess: ort.InferenceSession) -> dict[str, Any]:
    return {i.name: i for i in sess.get_inputs()}


STAGES = ("text_encoder", "transformer_encoder", "transformer_decoder", "dcae_decoder", "vocoder")


class Graphs:
    """The five sessions with one calling convention. Reference-layout graphs lack the ERG inputs (ERG is then
    unavailable and requested ERG is dropped with a warning), take a [1] timestep (no cond/uncond batching),
    decode a fixed number of latent frames and vocode one channel per call.

    Sessions open on first use. With `resident=False` (memory.py's "low" plan) the pipeline releases each stage
    when it is done with it, so at most one of the five graphs is in memory at a time; with `resident=True` they
    stay open until the backend unloads. What the graphs' inputs reveal (ERG, batch timestep, a fixed DCAE length,
    a mono vocoder) is read when the stage first opens and kept."""

    def __init__(
        self,
        layout: ModelLayout,
        session: SessionFactory,
        files: Mapping[str, Any] | None = None,
        resident: bool = True,
    ) -> None:
        self.layout = layout
        self._session = session
        self.files = {stage: layout.path(f"{stage}.onnx") for stage in STAGES}
        self.files["dcae_encoder"] = layout.path(ENCODER_FILE)  # optional: only the editing tasks open it
        self.files.update(files or {})
        self.resident = resident
        self._open: dict[str, ort.InferenceSession] = {}
        self._overrides: dict[str, Mapping[str, np.ndarray] | None] = {}
        self._facts: dict[str, Any] = {}
        self.dcae_denormalized = layout.config.get("dcae_denormalized", True)
        self.on_open: Callable[[str], None] | None = (
            None  # called as a stage starts opening (benchmarks: RSS)
        )

    def session(self, stage: str) -> ort.InferenceSession:
        sess = self._open.get(stage)
        if sess is None:
            if self.on_open:
                self.on_open(stage)
            sess = self._session(str(self.files[stage]), self._overrides.get(stage))
            self._open[stage] = sess
            self._learn(stage, sess)
        return sess

    def release(self, stage: str, always: bool = False) -> None:
        """Done with `stage` for this generation: close it unless the sessions stay resident (or `always`)."""
        if always or not self.resident:
            self._open.pop(stage, None)

    def close(self) -> None:
        self._open.clear()

    @property
    def open_stages(self) -> list[str]:
        return [s for s in STAGES if s in self._open]

    def _learn(self, stage: str, sess: ort.InferenceSession) -> None:
        inputs = _inputs(sess)
        if stage == "text_encoder":
            self._facts["has_erg"] = "erg_q_scale" in inputs
        elif stage == "transformer_decoder":
            self._facts["batch_timestep"] = "erg_q_scale" in inputs  # ours: timestep [B]
        elif stage == "transformer_encoder":
            spk = inputs["speaker_embeds"].shape
            self._facts["speaker_dim"] = spk[1] if isinstance(spk[1], int) else None
        elif stage == "dcae_decoder":
            dshape = inputs["latents"].shape
            self._facts["dcae_fixed"] = dshape[3] if isinstance(dshape[3], int) else None
        elif stage == "vocoder":
            self._facts["vocoder_batch_one"] = sess.get_inputs()[0].shape[0] == 1

    def _fact(self, stage: str, key: str) -> Any:
        if key not in self._facts:  # opens the stage, which is about to run anyway; its user releases it
            self.session(stage)
        return self._facts[key]

    @property
    def has_erg(self) -> bool:
        return self._fact("text_encoder", "has_erg")

    @property
    def batch_timestep(self) -> bool:
        return self._fact("transformer_decoder", "batch_timestep")

    @property
    def speaker_dim(self) -> int | None:
        return self._fact("transformer_encoder", "speaker_dim")

    @property
    def dcae_fixed(self) -> int | None:
        return self._fact("dcae_decoder", "dcae_fixed")

    @property
    def vocoder_batch_one(self) -> bool:
        return self._fact("vocoder", "vocoder_batch_one")

    # back-compat names for the sessions (tests and benchmarks reach them directly)
    text_encoder = property(lambda self: self.session("text_encoder"))
    encoder = property(lambda self: self.session("transformer_encoder"))
    decoder = property(lambda self: self.session("transformer_decoder"))
    dcae = property(lambda self: self.session("dcae_decoder"))
    vocoder = property(lambda self: self.session("vocoder"))

    def load_transformer(
        self, enc_init: Mapping[str, np.ndarray] | None, dec_init: Mapping[str, np.ndarray] | None
    ) -> None:
        """Use these overriding initializers (merged LoRA weights; None = base weights) for the transformer
        sessions from now on; open sessions are closed and reopen with them on next use."""
        self._overrides["transformer_encoder"] = enc_init
        self._overrides["transformer_decoder"] = dec_init
        self._open.pop("transformer_encoder", None)
        self._open.pop("transformer_decoder", None)

    # -- conditioning

    def text(self, ids: np.ndarray, mask: np.ndarray, q_scale: float) -> np.ndarray:
        feeds = {"input_ids": ids, "attention_mask": mask}
        names = [i.name for i in self.text_encoder.get_inputs()]
        if "erg_q_scale" in names:
            feeds["erg_q_scale"] = np.full((ids.shape[0],), q_scale, np.float32)
        else:
            feeds = dict(zip(names, (ids, mask), strict=False))
        return self.text_encoder.run(None, feeds)[0].astype(np.float32)

    def encode(self, text, text_mask, speaker, lyric_ids, lyric_mask, lyric_q_scale: float):
        feeds = {
            "encoder_text_hidden_states": text.astype(np.float32),
            "text_attention_mask": text_mask.astype(np.int64),
            "speaker_embeds": speaker.astype(np.float32),
            "lyric_token_idx": lyric_ids.astype(np.int64),
            "lyric_mask": lyric_mask.astype(np.int64),
        }
        if "lyric_q_scale" in _inputs(self.encoder):
            feeds["lyric_q_scale"] = np.full((text.shape[0],), lyric_q_scale, np.float32)
        assert self.encoder is not None, "load_transformer() first"
        states, mask = self.encoder.run(["encoder_hidden_states", "encoder_hidden_mask"], feeds)
        return states.astype(np.float32), mask.astype(np.float32)

    # -- diffusion

    def velocity(self, x, enc, enc_mask, t: np.float32, q_scale) -> np.ndarray:
        """One transformer evaluation for a batch (q_scale per sample)."""
        b, frames = x.shape[0], x.shape[-1]
        feeds = {
            "hidden_states": x,
            "attention_mask": np.ones((b, frames), np.float32),
            "encoder_hidden_states": enc,
            "encoder_hidden_mask": enc_mask,
        }
        if self.batch_timestep:
            feeds["timestep"] = np.full((b,), t, np.float32)
            feeds["erg_q_scale"] = np.asarray(q_scale, np.float32).reshape(b)
        else:
            feeds["timestep"] = np.full((1,), t, np.float32)
        assert self.decoder is not None, "load_transformer() first"
        return self.decoder.run(["sample"], feeds)[0]

    # -- audio

    def mel(self, latents: np.ndarray) -> np.ndarray:
        out = self.dcae.run(None, {"latents": latents.astype(np.float32)})[0]
        if out.ndim == 3:  # some reference exports drop the channel axis
            out = out[:, None]
        if not self.dcae_denormalized:
            out = (out * 0.5 + 0.5) * 14.0 - 11.0
        return out

    def wave(self, mel: np.ndarray) -> np.ndarray:
        """mel [C, 128, M] → [C, 512·M]"""
        name = self.vocoder.get_inputs()[0].name
        if self.vocoder_batch_one:
            outs = [
                self.vocoder.run(None, {name: mel[c : c + 1]})[0].reshape(-1) for c in range(mel.shape[0])
            ]
            return np.stack(outs)
        return self.vocoder.run(None, {name: mel})[0].reshape(mel.shape[0], -1)


class AceStepPipeline:
    def __init__(
        self,
        layout: ModelLayout,
        session: SessionFactory,
        windowing: dec.Windowing | None = None,
        files: Mapping[str, Any] | None = None,
        resident: bool = True,
    ) -> None:
        self.layout = layout
        self.graphs = Graphs(layout, session, files, resident)
        cfg_ = layout.config
        self.prompt_tokenizer = PromptTokenizer(
            layout.path("tokenizer.json"), cfg_.get("text_max_length", 256)
        )
        self.lyric_tokenizer = lyric_tokenizer_for(layout)
        self.windowing = windowing or dec.Windowing()
        self.batch_cfg = False  # cond and uncond as one batch-2 call (useful on GPU; measured no gain on CPU)

    def effective(self, p: SamplingParams) -> SamplingParams:
        if self.graphs.has_erg:
            return p
        if p.use_erg_tag or p.use_erg_lyric or p.use_erg_diffusion:
            log.warning("reference ACE-Step layout has no ERG inputs; running without ERG")
        return replace(p, use_erg_tag=False, use_erg_lyric=False, use_erg_diffusion=False)

    # ---- stage 1: conditions

    def conditions(
        self, prompt: str, lyrics: str | None, p: SamplingParams, negative_prompt: str = ""
    ) -> Conditions:
        ids, tmask = self.prompt_tokenizer(prompt)
        lyric_ids, lyric_mask = self.lyric_tokenizer(lyrics)
        negative = self.prompt_tokenizer(negative_prompt) if negative_prompt else None
        return self.conditions_from_ids(ids, tmask, lyric_ids, lyric_mask, p, negative)

    def conditions_from_ids(
        self,
        ids,
        tmask,
        lyric_ids,
        lyric_mask,
        p: SamplingParams,
        negative: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> Conditions:
        """Upstream `get_text_embeddings(_null)` + the encode calls at the top of the diffusion process.
        `negative` (a negative prompt's ids and mask): its text states, at full strength and with its own mask,
        take the place of the unconditional branch's null text (zeros, or the ERG-tempered prompt); the rest of
        that branch is upstream's."""
        g = self.graphs
        text = g.text(ids, tmask, 1.0)
        if negative is not None:
            null, null_mask = g.text(*negative, 1.0), negative[1]
        elif p.use_erg_tag and p.use_erg_lyric:
            null, null_mask = g.text(ids, tmask, ERG_TAU), tmask
        else:
            null, null_mask = np.zeros_like(text), tmask
        g.release("text_encoder")
        speaker = np.zeros((1, self.speaker_dim), np.float32)
        cond, mask = g.encode(text, tmask, speaker, lyric_ids, lyric_mask, 1.0)
        if p.use_erg_lyric:
            uncond, umask = g.encode(null, null_mask, speaker, lyric_ids, lyric_mask, ERG_TAU)
        else:
            uncond, umask = g.encode(null, null_mask, speaker, np.zeros_like(lyric_ids), lyric_mask, 1.0)
        g.release("transformer_encoder")
        return Conditions(cond, uncond, mask, None if negative is None else umask)

    @property
    def speaker_dim(self) -> int:
        return self.graphs.speaker_dim or int(self.layout.config.get("speaker_dim", 512))

    # ---- stage 2: sampling

    def sample(
        self,
        c: Conditions,
        noise: np.ndarray,
        p: SamplingParams,
        step_noise: Callable[[tuple[int, ...]], np.ndarray] | None = None,
        check: Callable[[], None] | None = None,
        on_step: Callable[[int, int, int], None] | None = None,
        repaint: Repaint | None = None,
    ) -> np.ndarray:
        """Flow-matching loop from `noise` (the initial latents). `check()` runs before every transformer
        evaluation (cancellation); `on_step(user_step, total_steps, evaluations_done)` after every scheduler
        step. With `repaint` (tasks.py: repaint, extend) it is upstream's repaint branch: `noise` is ignored, the
        first n_min steps are skipped, and every step is a plain Euler step followed by putting the re-noised
        source back outside the mask."""
        try:
            return self._sample(c, noise, p, step_noise, check, on_step, repaint)
        finally:
            self.graphs.release("transformer_decoder")  # also when cancelled: a "low" plan never keeps it

    def _sample(self, c, noise, p, step_noise, check, on_step, repaint) -> np.ndarray:
        g = self.graphs
        sched = Scheduler(p.scheduler, p.steps, p.omega, step_noise, sigma_max=p.sigma_max)
        do_cfg = p.guidance_scale not in (0.0, 1.0)
        start, end = guidance_window(sched.num_inference_steps, p.guidance_interval)
        buffer = MomentumBuffer()
        uncond_q = ERG_TAU if p.use_erg_diffusion else 1.0
        batch = c.batch() if self.batch_cfg and g.batch_timestep else None
        x = noise.astype(np.float32)
        evaluations = 0
        thousand = np.float32(1000)
        for i, t in enumerate(sched.timesteps):
            if repaint is not None:
                if i < repaint.n_min:
                    continue
                if i == repaint.n_min:  # upstream: zt_edit + zt_src − x0, with zt_edit = x0
                    t_i = t / thousand
                    zt_src = (1 - t_i) * repaint.x0 + t_i * repaint.z0
                    x = (repaint.x0 + zt_src - repaint.x0).astype(np.float32)
            if do_cfg and start <= i < end:
                scale = scale_at(
                    i, start, end, p.guidance_scale, p.guidance_interval_decay, p.min_guidance_scale
                )
                if batch is not None:
                    if check:
                        check()
                    states, masks = batch
                    both = g.velocity(
                        np.concatenate([x, x]),
                        states,
                        masks,
                        t,
                        [1.0, uncond_q],
                    )
                    v_cond, v_uncond = both[:1], both[1:]
                else:
                    if check:
                        check()
                    v_cond = g.velocity(x, c.cond, c.mask, t, [1.0])
                    if check:
                        check()
                    v_uncond = g.velocity(x, c.uncond, c.null_mask, t, [uncond_q])
                evaluations += 2
                if p.cfg_type == "apg":
                    v = apg(v_cond, v_uncond, scale, buffer)
                elif p.cfg_type == "cfg":
                    v = cfg(v_cond, v_uncond, scale)
                elif p.cfg_type == "cfg_star":
                    v = cfg_zero_star(v_cond, v_uncond, scale, i, p.zero_steps, p.use_zero_init)
                else:
                    raise ValueError(f"unknown cfg_type {p.cfg_type!r}")
            else:
                if check:
                    check()
                v = g.velocity(x, c.cond, c.mask, t, [1.0])
                evaluations += 1
            if repaint is not None:
                t_i = t / thousand
                t_next = sched.timesteps[i + 1] / thousand if i + 1 < len(sched.timesteps) else np.float32(0)
                x = x + (t_next - t_i) * v.astype(np.float32)
                zt_src = (1 - t_next) * repaint.x0 + t_next * repaint.z0
                x = np.where(repaint.mask, x, zt_src).astype(np.float32)
            else:
                x = sched.step(v, x)
            if on_step and (sched.kind != "heun" or i % 2 == 0):
                on_step(sched.user_step(i), p.steps, evaluations)
        return x

    # ---- FlowEdit (upstream `flowedit_diffusion_process`: new tags/lyrics, same structure)

    def edit_conditions(self, prompt: str, lyrics: str | None) -> Conditions:
        """FlowEdit's conditioning: upstream runs the transformer's full forward with no ERG, its unconditional
        half on zero text, zero speaker and zero lyric ids with a zero lyric mask (so its own encoder mask)."""
        g = self.graphs
        ids, tmask = self.prompt_tokenizer(prompt)
        lyric_ids, lyric_mask = self.lyric_tokenizer(lyrics)
        text = g.text(ids, tmask, 1.0)
        g.release("text_encoder")
        speaker = np.zeros((1, self.speaker_dim), np.float32)
        cond, mask = g.encode(text, tmask, speaker, lyric_ids, lyric_mask, 1.0)
        zeros = np.zeros_like(lyric_ids)
        uncond, null_mask = g.encode(
            np.zeros_like(text), tmask, speaker, zeros, np.zeros_like(lyric_mask), 1.0
        )
        g.release("transformer_encoder")
        return Conditions(cond, uncond, mask, null_mask)

    def flowedit(
        self,
        src: Conditions,
        tar: Conditions,
        x_src: np.ndarray,
        p: SamplingParams,
        n_min: float,
        n_max: float,
        n_avg: int,
        noise: Callable[[tuple[int, ...]], np.ndarray],
        check: Callable[[], None] | None = None,
        on_step: Callable[[int, int, int], None] | None = None,
    ) -> np.ndarray:
        """Edit the source latents `x_src` from conditions `src` towards `tar`. Steps below ⌊steps·n_min⌋ are
        skipped; up to ⌊steps·n_max⌋ the edit follows the mean of `n_avg` velocity differences V_tar − V_src
        (each from fresh forward noise); after that it samples the target from the edit's noised state. Every
        step is plain Euler on the Euler schedule and guidance is APG on every step (upstream's flowedit
        ignores scheduler_type except for its broken pingpong branch, the guidance interval and cfg_type)."""
        try:
            return self._flowedit(src, tar, x_src, p, n_min, n_max, n_avg, noise, check, on_step)
        finally:
            self.graphs.release("transformer_decoder")

    def _guided(self, x, c: Conditions, t, p: SamplingParams, buffer: MomentumBuffer, check) -> np.ndarray:
        g = self.graphs
        if check:
            check()
        v_cond = g.velocity(x, c.cond, c.mask, t, [1.0])
        if p.guidance_scale in (0.0, 1.0):
            return v_cond
        if check:
            check()
        v_uncond = g.velocity(x, c.uncond, c.null_mask, t, [1.0])
        return apg(v_cond, v_uncond, p.guidance_scale, buffer)

    def _flowedit(self, src, tar, x_src, p, n_min, n_max, n_avg, noise, check, on_step) -> np.ndarray:
        sched = Scheduler("euler", p.steps, p.omega)
        ts, thousand = sched.timesteps, np.float32(1000)
        per_eval = 1 if p.guidance_scale in (0.0, 1.0) else 2
        buffer_src, buffer_tar = MomentumBuffer(), MomentumBuffer()
        no_momentum = MomentumBuffer(0.0)  # upstream passes no buffer for the target while editing
        lo, hi = int(p.steps * n_min), int(p.steps * n_max)
        x_src = x_src.astype(np.float32)
        zt_edit = x_src.copy()
        xt_tar: np.ndarray | None = None
        evaluations = 0
        for i, t in enumerate(ts):
            if i < lo:
                continue
            t_i = t / thousand
            t_next = ts[i + 1] / thousand if i + 1 < len(ts) else np.float32(0)
            if i < hi:
                delta = np.zeros_like(x_src)
                for _ in range(n_avg):
                    zt_src = (1 - t_i) * x_src + t_i * noise(x_src.shape).astype(np.float32)
                    zt_tar = zt_edit + zt_src - x_src
                    v_src = self._guided(zt_src, src, t, p, buffer_src, check)
                    v_tar = self._guided(zt_tar, tar, t, p, no_momentum, check)
                    delta = delta + (1 / n_avg) * (v_tar - v_src)
                    evaluations += 2 * per_eval
                zt_edit = (zt_edit + (t_next - t_i) * delta).astype(np.float32)
            else:
                if xt_tar is None:  # i == hi: noise the source to this step's sigma
                    sigma = sched.sigmas[i]
                    xt_src = sigma * noise(x_src.shape).astype(np.float32) + (1 - sigma) * x_src
                    xt_tar = zt_edit + xt_src - x_src
                v_tar = self._guided(xt_tar, tar, t, p, buffer_tar, check)
                evaluations += per_eval
                xt_tar = (xt_tar + (t_next - t_i) * v_tar).astype(np.float32)
            if on_step:
                on_step(i + 1, p.steps, evaluations)
        return zt_edit if xt_tar is None else xt_tar

    # ---- the encode path (editing tasks)

    @property
    def has_encoder(self) -> bool:
        return Path(self.graphs.files["dcae_encoder"]).exists()

    def encode_audio(
        self,
        audio: np.ndarray,
        sample_rate: int,
        check: Callable[[], None] | None = None,
        on_window: Callable[[int, int], None] | None = None,
    ) -> np.ndarray:
        """Audio ([n] or [n, channels], any rate) → latents [1, 8, 16, F] (encode.py), in windows for tracks
        longer than one. The encoder session is always closed afterwards: editing tasks are occasional, and
        the memory plan (memory.py) counts the five generation stages only."""
        w = self.windowing
        try:
            session = self.graphs.session("dcae_encoder")
            return encode_audio(
                audio, sample_rate, session, w.encoder_core, w.encoder_margin, check, on_window
            )
        finally:
            self.graphs.release("dcae_encoder", always=True)

    # ---- stage 3: audio

    def mel(
        self,
        latents: np.ndarray,
        check: Callable[[], None] | None = None,
        on_window: Callable[[int, int], None] | None = None,
    ) -> np.ndarray:
        """[1, 8, 16, F] → [2, 128, 8F] log-mel (windowed for long latents)."""
        w = self.windowing
        fixed = self.graphs.dcae_fixed
        core = w.dcae_core if fixed is None else max(1, fixed - 2 * min(w.dcae_margin, fixed // 4))
        margin = w.dcae_margin if fixed is None else min(w.dcae_margin, fixed // 4)
        try:
            out = dec.windowed(
                self.graphs.mel, latents, core, margin, dec.MEL_PER_LATENT, fixed, check, on_window
            )
        finally:
            self.graphs.release("dcae_decoder")
        return out[0]

    def waveform(
        self,
        mel: np.ndarray,
        check: Callable[[], None] | None = None,
        on_window: Callable[[int, int], None] | None = None,
    ) -> np.ndarray:
        """[2, 128, M] log-mel → [2, 512·M] at 44.1 kHz (windowed for long mels)."""
        w = self.windowing
        try:
            return dec.windowed(
                self.graphs.wave,
                mel,
                w.vocoder_core,
                w.vocoder_margin,
                dec.SAMPLES_PER_MEL,
                None,
                check,
                on_window,
            )
        finally:
            self.graphs.release("vocoder")

    def latents_to_audio(
        self,
        latents: np.ndarray,
        check: Callable[[], None] | None = None,
        on_progress: Callable[[float], None] | None = None,
    ) -> np.ndarray:
        """→ float32 [frames, 2] at 48 kHz. `on_progress(fraction)` after every DCAE and vocoder window, the
        fraction of the decode done (the DCAE is weighted DCAE_SHARE of it: its share of the time at full size,
        docs/benchmarks.md)."""

        def part(lo: float, span: float) -> Callable[[int, int], None] | None:
            if on_progress is None:
                return None
            return lambda done, total: on_progress(lo + span * done / total)

        mel = self.mel(latents, check, part(0.0, DCAE_SHARE))
        wave = self.waveform(mel, check, part(DCAE_SHARE, 1.0 - DCAE_SHARE))
        return dec.resample_to_output(wave)
