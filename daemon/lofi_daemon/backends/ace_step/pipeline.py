"""ACE-Step text2music on onnxruntime + numpy: the upstream `ACEStepPipeline.__call__` defaults and
`text2music_diffusion_process` loop (sigma schedule, guidance interval, APG/CFG/CFG-zero*, ERG, omega
mean-shift), then DCAE + stereo vocoder with overlapped windows and 44.1 → 48 kHz resampling.

No torch here. `Graphs` hides the two ONNX layouts (ours and the reference's) behind one call signature.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import onnxruntime as ort

from . import decode as dec
from .guidance import MomentumBuffer, apg, cfg, cfg_zero_star, guidance_window, scale_at
from .layout import ModelLayout
from .schedulers import Scheduler
from .text import LyricTokenizer, PromptTokenizer

log = logging.getLogger(__name__)

ERG_TAU = 0.01
SessionFactory = Callable[[str, Mapping[str, np.ndarray] | None], ort.InferenceSession]


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


@dataclass
class Conditions:
    cond: np.ndarray  # [1, S, D] encoder_hidden_states
    uncond: np.ndarray  # [1, S, D]
    mask: np.ndarray  # [1, S] float32 (shared by both, as upstream)


def _inputs(sess: ort.InferenceSession) -> dict[str, Any]:
    return {i.name: i for i in sess.get_inputs()}


class Graphs:
    """The five sessions with one calling convention. Reference-layout graphs lack the ERG inputs (ERG is then
    unavailable and requested ERG is dropped with a warning), take a [1] timestep (no cond/uncond batching),
    decode a fixed number of latent frames and vocode one channel per call."""

    def __init__(self, layout: ModelLayout, session: SessionFactory) -> None:
        self.layout = layout
        self._session = session
        self.text_encoder = session(str(layout.path("text_encoder.onnx")), None)
        self.dcae = session(str(layout.path("dcae_decoder.onnx")), None)
        self.vocoder = session(str(layout.path("vocoder.onnx")), None)
        self.encoder: ort.InferenceSession | None = None
        self.decoder: ort.InferenceSession | None = None
        self.load_transformer(None, None)
        self.has_erg = "erg_q_scale" in _inputs(self.text_encoder) and "erg_q_scale" in _inputs(self.decoder)
        self.batch_timestep = self.has_erg  # ours: timestep [B]
        dshape = _inputs(self.dcae)["latents"].shape
        self.dcae_fixed = dshape[3] if isinstance(dshape[3], int) else None
        vshape = self.vocoder.get_inputs()[0].shape
        self.vocoder_batch_one = vshape[0] == 1
        self.dcae_denormalized = layout.config.get("dcae_denormalized", True)

    def load_transformer(
        self, enc_init: Mapping[str, np.ndarray] | None, dec_init: Mapping[str, np.ndarray] | None
    ):
        """(Re)create the encoder/decoder sessions, optionally with overriding initializers (LoRA)."""
        self.encoder = None
        self.decoder = None
        self.encoder = self._session(str(self.layout.path("transformer_encoder.onnx")), enc_init)
        self.decoder = self._session(str(self.layout.path("transformer_decoder.onnx")), dec_init)

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
    def __init__(self, layout: ModelLayout, session: SessionFactory, windowing: dec.Windowing | None = None):
        self.layout = layout
        self.graphs = Graphs(layout, session)
        cfg_ = layout.config
        self.prompt_tokenizer = PromptTokenizer(
            layout.path("tokenizer.json"), cfg_.get("text_max_length", 256)
        )
        lyric_path = layout.path("lyric_tokenizer.json")
        self.lyric_tokenizer = LyricTokenizer(
            lyric_path if lyric_path.exists() else None, cfg_["lyric_start_id"], cfg_["lyric_line_end_id"]
        )
        spk = _inputs(self.graphs.encoder)["speaker_embeds"].shape
        self.speaker_dim = spk[1] if isinstance(spk[1], int) else int(cfg_.get("speaker_dim", 512))
        self.windowing = windowing or dec.Windowing()
        self.batch_cfg = False  # cond and uncond as one batch-2 call (useful on GPU; measured no gain on CPU)

    def effective(self, p: SamplingParams) -> SamplingParams:
        if self.graphs.has_erg:
            return p
        if p.use_erg_tag or p.use_erg_lyric or p.use_erg_diffusion:
            log.warning("reference ACE-Step layout has no ERG inputs; running without ERG")
        return replace(p, use_erg_tag=False, use_erg_lyric=False, use_erg_diffusion=False)

    # ---- stage 1: conditions

    def conditions(self, prompt: str, lyrics: str | None, p: SamplingParams) -> Conditions:
        ids, tmask = self.prompt_tokenizer(prompt)
        lyric_ids, lyric_mask = self.lyric_tokenizer(lyrics)
        return self.conditions_from_ids(ids, tmask, lyric_ids, lyric_mask, p)

    def conditions_from_ids(self, ids, tmask, lyric_ids, lyric_mask, p: SamplingParams) -> Conditions:
        """Upstream `get_text_embeddings(_null)` + the encode calls at the top of the diffusion process."""
        g = self.graphs
        text = g.text(ids, tmask, 1.0)
        text_null = g.text(ids, tmask, ERG_TAU) if p.use_erg_tag else None
        speaker = np.zeros((1, self.speaker_dim), np.float32)
        cond, mask = g.encode(text, tmask, speaker, lyric_ids, lyric_mask, 1.0)
        if p.use_erg_lyric:
            base = text_null if text_null is not None else np.zeros_like(text)
            uncond, _ = g.encode(base, tmask, speaker, lyric_ids, lyric_mask, ERG_TAU)
        else:
            uncond, _ = g.encode(
                np.zeros_like(text), tmask, speaker, np.zeros_like(lyric_ids), lyric_mask, 1.0
            )
        return Conditions(cond, uncond, mask)

    # ---- stage 2: sampling

    def sample(
        self,
        c: Conditions,
        noise: np.ndarray,
        p: SamplingParams,
        step_noise: Callable[[tuple[int, ...]], np.ndarray] | None = None,
        check: Callable[[], None] | None = None,
        on_step: Callable[[int, int, int], None] | None = None,
    ) -> np.ndarray:
        """Flow-matching loop. `check()` runs before every transformer evaluation (cancellation);
        `on_step(user_step, total_steps, evaluations_done)` after every scheduler step."""
        g = self.graphs
        sched = Scheduler(p.scheduler, p.steps, p.omega, step_noise)
        do_cfg = p.guidance_scale not in (0.0, 1.0)
        start, end = guidance_window(sched.num_inference_steps, p.guidance_interval)
        buffer = MomentumBuffer()
        uncond_q = ERG_TAU if p.use_erg_diffusion else 1.0
        x = noise.astype(np.float32)
        evaluations = 0
        for i, t in enumerate(sched.timesteps):
            if do_cfg and start <= i < end:
                scale = scale_at(
                    i, start, end, p.guidance_scale, p.guidance_interval_decay, p.min_guidance_scale
                )
                if self.batch_cfg and g.batch_timestep:
                    if check:
                        check()
                    both = g.velocity(
                        np.concatenate([x, x]),
                        np.concatenate([c.cond, c.uncond]),
                        np.concatenate([c.mask, c.mask]),
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
                    v_uncond = g.velocity(x, c.uncond, c.mask, t, [uncond_q])
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
            x = sched.step(v, x)
            if on_step and (sched.kind != "heun" or i % 2 == 0):
                on_step(sched.user_step(i), p.steps, evaluations)
        return x

    # ---- stage 3: audio

    def mel(self, latents: np.ndarray, check: Callable[[], None] | None = None) -> np.ndarray:
        """[1, 8, 16, F] → [2, 128, 8F] log-mel (windowed for long latents)."""
        w = self.windowing
        fixed = self.graphs.dcae_fixed
        core = w.dcae_core if fixed is None else max(1, fixed - 2 * min(w.dcae_margin, fixed // 4))
        margin = w.dcae_margin if fixed is None else min(w.dcae_margin, fixed // 4)
        out = dec.windowed(self.graphs.mel, latents, core, margin, dec.MEL_PER_LATENT, fixed, check)
        return out[0]

    def waveform(self, mel: np.ndarray, check: Callable[[], None] | None = None) -> np.ndarray:
        """[2, 128, M] log-mel → [2, 512·M] at 44.1 kHz (windowed for long mels)."""
        w = self.windowing
        return dec.windowed(
            self.graphs.wave, mel, w.vocoder_core, w.vocoder_margin, dec.SAMPLES_PER_MEL, None, check
        )

    def latents_to_audio(self, latents: np.ndarray, check: Callable[[], None] | None = None) -> np.ndarray:
        """→ float32 [frames, 2] at 48 kHz"""
        return dec.resample_to_output(self.waveform(self.mel(latents, check), check))
