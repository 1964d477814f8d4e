"""MusicGen on ONNX Runtime + numpy: tokenizer → T5 encoder → decoder loop with KV cache, delay pattern and
classifier-free guidance → EnCodec.

The graphs are the optimum export used by the hub repos (tensor contract: docs/model-formats.md).
Greedy output equals transformers' `generate(do_sample=False, guidance_scale=3)` code for code (tests).

Token layout. Codebook k is delayed by k steps: at sequence position p (0 = start token), codebook k carries
frame p - k - 1. With N decoder steps, frames 0 … N-4 are complete (N steps → N - 3 frames). Positions where a
codebook has no frame yet (p ≤ k) and, as in transformers, the tail triangle (p ≥ k + N - K + 2) are fed the pad
token (only this makes the last frames bit-exact with transformers).

Long tracks (> window): audiocraft's extend-stride scheme at token level. The first window generates
`window` frames; every next window re-reads the last (window - stride) frames as a prompt (teacher-forced, one
prefill call) and generates `stride` new frames. The whole frame sequence is decoded by EnCodec once at the end.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import onnxruntime as ort

from ...config import Settings
from ...errors import ErrorCode, LofiError
from ...runtime.sessions import WarnFn, create_session, session_provider
from . import static_kv
from .model_config import MusicGenConfig
from .sampling import apply_guidance, sample

if TYPE_CHECKING:
    from ...cancel import CancelToken

log = logging.getLogger(__name__)

# Context for decoding a piece [a, b) of a longer code sequence with EnCodec: its LSTM needs history, and its
# non-causal convolutions reach about 4 frames ahead (kernel 7 at the frame rate, plus the residual units after
# upsampling). On the tiny fixture (random codebooks) a lookahead of 3 frames left 1.3e-3 of error at a seam,
# 4 left 1.8e-7 (float32 rounding); one more frame is kept as a margin for real weights.
DECODE_LEFT_FRAMES = 50
DECODE_RIGHT_FRAMES = 5

_ORT_DTYPES: dict[str, type[np.generic]] = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
}


@dataclass
class SamplingParams:
    guidance_scale: float = 3.0
    top_k: int = 250
    top_p: float = 0.0
    temperature: float = 1.0
    negative_prompt: str = ""  # in place of the unconditional row of the guidance batch; "" = none


@dataclass
class GenerationResult:
    frames: np.ndarray  # int64 [T, K] un-delayed codes
    audio: np.ndarray | None  # float32 [samples] mono, None if not decoded
    timings: dict[str, float] = field(default_factory=dict)
    windows: list[dict[str, int]] = field(default_factory=list)


def _dtype(arg: ort.NodeArg) -> type[np.generic]:
    try:
        return _ORT_DTYPES[arg.type]
    except KeyError:
        raise LofiError(
            ErrorCode.MODEL_LOAD_FAILED, f"unsupported input type {arg.type} for {arg.name}"
        ) from None


class _Decoder:
    """One decoder call = one step for the whole CFG batch. Hides merged vs split files and the KV cache."""

    def __init__(
        self, merged: ort.InferenceSession | None, first: ort.InferenceSession | None, with_past=None
    ):
        self.merged, self.first, self.with_past = merged, first, with_past
        ref = merged or first
        assert ref is not None
        ins = {i.name: i for i in ref.get_inputs()}
        self.hidden_dtype = _dtype(ins["encoder_hidden_states"])
        kv_args = (merged or with_past).get_inputs()
        self.past_names = [i.name for i in kv_args if i.name.startswith("past_key_values.")]
        if not self.past_names:
            raise LofiError(ErrorCode.MODEL_LOAD_FAILED, "decoder graph has no past_key_values inputs")
        kv0 = next(i for i in kv_args if i.name == self.past_names[0])
        self.kv_dtype = _dtype(kv0)
        self.num_heads, self.head_dim = int(kv0.shape[1]), int(kv0.shape[3])
        self.reset()

    def reset(self) -> None:
        self.past: dict[str, np.ndarray] = {}

    @property
    def started(self) -> bool:
        """True once this window's first call has filled the cache (later calls pass only the new position)."""
        return bool(self.past)

    def __call__(self, input_ids: np.ndarray, hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """input_ids [2*K, L] (cond rows first); returns float32 logits of the last position [2*K, V]."""
        first_call = not self.past
        if self.merged is not None:
            feed: dict[str, Any] = {
                "input_ids": input_ids,
                "encoder_hidden_states": hidden,
                "encoder_attention_mask": mask,
                "use_cache_branch": np.array([not first_call]),
            }
            if first_call:
                empty = np.zeros((hidden.shape[0], self.num_heads, 0, self.head_dim), dtype=self.kv_dtype)
                feed.update({n: empty for n in self.past_names})
            else:
                feed.update(self.past)
            outs = self.merged.run(None, feed)
            names = [o.name for o in self.merged.get_outputs()]
        elif first_call:
            outs = self.first.run(  # type: ignore[union-attr]
                None,
                {"input_ids": input_ids, "encoder_hidden_states": hidden, "encoder_attention_mask": mask},
            )
            names = [o.name for o in self.first.get_outputs()]  # type: ignore[union-attr]
        else:
            outs = self.with_past.run(
                None, {"input_ids": input_ids, "encoder_attention_mask": mask, **self.past}
            )
            names = [o.name for o in self.with_past.get_outputs()]
        for name, value in zip(names, outs, strict=True):
            if not name.startswith("present."):
                continue
            past_name = "past_key_values." + name[len("present.") :]
            # Encoder (cross-attention) KV comes from the first call only: in the merged graph's cache branch
            # those outputs are empty dummies.
            if ".encoder." in name and not first_call:
                continue
            self.past[past_name] = value
        logits = outs[names.index("logits")]
        return np.asarray(logits[:, -1, :], dtype=np.float32)


class _StaticDecoder:
    """The same contract as `_Decoder` on the converted graphs of static_kv.py: the self-attention cache lives in
    preallocated buffers that GroupQueryAttention updates in place (bound as both input and output), the
    cross-attention keys/values are computed once per window, and a step binds nothing anew: its small inputs and
    its logits are arrays bound once and updated in place."""

    def __init__(self, static: ort.InferenceSession, cross: ort.InferenceSession, capacity: int) -> None:
        self.static, self.cross, self.capacity = static, cross, capacity
        ins = {i.name: i for i in cross.get_inputs()}
        self.hidden_dtype = _dtype(ins["encoder_hidden_states"])
        self.cross_inputs = set(ins)  # the export may leave some of input_ids / hidden / mask unused
        self.self_names = [
            i.name
            for i in static.get_inputs()
            if i.name.startswith("past_key_values.") and ".decoder." in i.name
        ]
        kv0 = next(i for i in static.get_inputs() if i.name == self.self_names[0])
        self.num_heads, self.head_dim = int(kv0.shape[1]), int(kv0.shape[3])
        self.kv_dtype = np.float32
        self.vocab = int(next(o for o in static.get_outputs() if o.name == "logits").shape[-1])
        self.cross_outputs = [o.name for o in cross.get_outputs()]
        self.buffers: dict[str, np.ndarray] = {}
        self.reset()

    def reset(self) -> None:
        self.length = 0  # positions in the cache
        self.binding: ort.IOBinding | None = None
        self._prefill_bound = False  # input_ids is bound to a prefill's ids, not to the step's array

    @property
    def started(self) -> bool:
        return self.binding is not None

    def _start(self, input_ids: np.ndarray, hidden: np.ndarray, mask: np.ndarray) -> ort.IOBinding:
        batch = hidden.shape[0]
        shape = (batch, self.num_heads, self.capacity, self.head_dim)
        if not self.buffers or next(iter(self.buffers.values())).shape != shape:
            self.buffers = {n: np.zeros(shape, dtype=np.float32) for n in self.self_names}
        cross = self.cross.run(
            self.cross_outputs,
            {
                k: v
                for k, v in (
                    ("input_ids", input_ids),
                    ("encoder_hidden_states", hidden),
                    ("encoder_attention_mask", mask),
                )
                if k in self.cross_inputs
            },
        )
        io = self.static.io_binding()
        bound = [np.ascontiguousarray(v) for v in cross]
        for name, value in zip(self.cross_outputs, bound, strict=True):
            io.bind_cpu_input("past_key_values." + name[len("present.") :], value)
        for name, buf in self.buffers.items():
            value = ort.OrtValue.ortvalue_from_numpy(buf)
            io.bind_ortvalue_input(name, value)
            io.bind_ortvalue_output("present." + name[len("past_key_values.") :], value)
        io.bind_cpu_input("encoder_attention_mask", mask)
        # A step's small inputs and its logits live in arrays bound once and updated in place: binding them
        # anew at every step cost ~0.3 ms of a ~18 ms step. The graph computes the last position's logits only,
        # so [rows, 1, vocab] also holds a prefill's.
        rows = input_ids.shape[0]
        self.step_inputs: dict[str, np.ndarray] = {
            "input_ids": np.zeros((rows, 1), dtype=np.int64),
            static_kv.PAST_LEN: np.zeros((), dtype=np.int64),
            static_kv.SEQLENS: np.zeros((batch,), dtype=np.int32),
            static_kv.TOTAL_LEN: np.zeros((), dtype=np.int32),
        }
        for name, arr in self.step_inputs.items():
            io.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(arr))
        self.logits = np.zeros((rows, 1, self.vocab), dtype=np.float32)
        io.bind_ortvalue_output("logits", ort.OrtValue.ortvalue_from_numpy(self.logits))
        self._keep = (bound, mask)  # bound inputs must outlive the binding
        return io

    def __call__(self, input_ids: np.ndarray, hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
        if self.binding is None:
            self.binding = self._start(input_ids, hidden, mask)
        io, new = self.binding, input_ids.shape[1]
        if self.length + new > self.capacity:
            raise LofiError(ErrorCode.INTERNAL_ERROR, "musicgen KV cache capacity exceeded")
        step = self.step_inputs
        if new == 1:
            step["input_ids"][...] = input_ids
            if self._prefill_bound:
                io.bind_ortvalue_input("input_ids", ort.OrtValue.ortvalue_from_numpy(step["input_ids"]))
                self._prefill_bound = False
        else:  # a prefill: its own ids, once
            io.bind_cpu_input("input_ids", input_ids)
            self._prefill_bound = True
        step[static_kv.PAST_LEN][...] = self.length
        step[static_kv.SEQLENS][...] = self.length + new - 1
        step[static_kv.TOTAL_LEN][...] = self.length + new
        self.static.run_with_iobinding(io)
        self.length += new
        return self.logits[:, -1, :].copy()  # the buffer is overwritten by the next call


class MusicGenPipeline:
    """Loaded sessions for one set of MusicGen files. Not thread-safe: one generation at a time."""

    def __init__(
        self,
        files: dict[str, Path],
        settings: Settings,
        *,
        warn: WarnFn | None = None,
        window_sec: float = 30.0,
        stride_sec: float = 18.0,
        kv_cache: str = "auto",
    ) -> None:
        """kv_cache: "static" (in-place buffers, static_kv.py), "concat" (the export's own cache) or "auto"
        (static on the CPU)."""
        from tokenizers import Tokenizer

        t0 = time.perf_counter()
        self.config = MusicGenConfig.from_files(files["config"], files.get("generation_config"))
        self.window_sec = float(window_sec)
        self.decode_chunk_frames = 1500  # one EnCodec call covers up to 30 s (memory bound for long tracks)
        self.stride_sec = float(stride_sec)
        try:
            self.tokenizer = Tokenizer.from_file(str(files["tokenizer"]))
        except Exception as exc:
            raise LofiError(ErrorCode.MODEL_LOAD_FAILED, f"cannot read tokenizer.json: {exc}") from exc
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()
        self.text_encoder = create_session(files["text_encoder"], settings, warn=warn)
        self.encodec = create_session(files["encodec_decode"], settings, warn=warn)
        self.provider = session_provider(self.text_encoder)
        self.decoder: _Decoder | _StaticDecoder = self._open_decoder(files, settings, warn, kv_cache)
        self.kv_cache = "static" if isinstance(self.decoder, _StaticDecoder) else "concat"
        self.load_sec = time.perf_counter() - t0

    def _open_decoder(
        self, files: dict[str, Path], settings: Settings, warn: WarnFn | None, kv_cache: str
    ) -> _Decoder | _StaticDecoder:
        """The in-place KV decoder (static_kv.py) on the CPU when the graph converts, else the exported one.
        GroupQueryAttention runs float32 on the CPU only (CUDA's takes fp16), so other providers keep the export."""
        if kv_cache == "static" or (kv_cache == "auto" and self.provider == "cpu"):
            try:
                static, cross = static_kv.converted(files, settings.cache_dir / "converted" / "musicgen")
                capacity = int(round(self.window_sec * self.config.frame_rate)) + self.config.num_codebooks
                return _StaticDecoder(
                    create_session(static, settings, warn=warn),
                    create_session(cross, settings, warn=warn),
                    capacity,
                )
            except static_kv.Unsupported as exc:
                log.info("musicgen decoder kept as exported (no in-place KV cache): %s", exc)
        if "decoder_merged" in files:
            return _Decoder(create_session(files["decoder_merged"], settings, warn=warn), None)
        return _Decoder(
            None,
            create_session(files["decoder"], settings, warn=warn),
            create_session(files["decoder_with_past"], settings, warn=warn),
        )

    # ---- text -------------------------------------------------------------------------------------------
    def encode_text(self, prompt: str, negative_prompt: str = "") -> tuple[np.ndarray, np.ndarray]:
        """→ CFG batch (hidden [2, S, D] in the decoder's dtype, mask int64 [2, S]): the conditional row, then the
        unconditional one: zero states and zero mask as transformers does for guidance, or the encoded negative
        prompt in their place (same batch, same cost). Rows of different lengths are padded with zero states under
        a zero mask, which the cross-attention ignores."""
        rows = [self._encode(prompt)]
        if negative_prompt:
            rows.append(self._encode(negative_prompt))
        else:
            rows.append((np.zeros_like(rows[0][0]), np.zeros_like(rows[0][1])))
        length = max(h.shape[1] for h, _ in rows)
        hidden = np.concatenate([np.pad(h, ((0, 0), (0, length - h.shape[1]), (0, 0))) for h, _ in rows])
        mask = np.concatenate([np.pad(m, ((0, 0), (0, length - m.shape[1]))) for _, m in rows])
        return hidden, mask

    def _encode(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """T5 over one text: hidden [1, S, D] in the decoder's dtype, mask int64 [1, S]."""
        ids = np.array([self.tokenizer.encode(text).ids], dtype=np.int64)
        mask = np.ones_like(ids)
        (hidden,) = self.text_encoder.run(["last_hidden_state"], {"input_ids": ids, "attention_mask": mask})
        return hidden.astype(self.decoder.hidden_dtype, copy=False), mask

    # ---- windows ----------------------------------------------------------------------------------------
    def frames_for(self, duration_sec: float) -> int:
        return int(np.ceil(round(duration_sec * self.config.frame_rate, 6)))

    def plan_windows(self, total_frames: int) -> list[dict[str, int]]:
        """[{prompt: frames re-read, new: frames generated, steps: decoder calls}] covering total_frames."""
        fr = self.config.frame_rate
        window = max(1, int(round(self.window_sec * fr)))
        stride = max(1, min(window, int(round(self.stride_sec * fr))))
        K = self.config.num_codebooks
        first = min(total_frames, window)
        plan = [{"prompt": 0, "new": first, "steps": first + K - 1}]
        done = first
        while done < total_frames:
            new = min(stride, total_frames - done)
            prompt = min(window - stride, done)
            # one prefill call over positions 0..prompt, then one call per further position: new + K - 1 calls
            plan.append({"prompt": prompt, "new": new, "steps": new + K - 1})
            done += new
        return plan

    # ---- decoding loop ----------------------------------------------------------------------------------
    def generate_frames(
        self,
        prompt: str,
        duration_sec: float,
        seed: int,
        params: SamplingParams,
        *,
        progress: Callable[..., None] | None = None,
        cancel: CancelToken | None = None,
        on_frames: Callable[[np.ndarray], None] | None = None,
        timings: dict[str, float] | None = None,
    ) -> tuple[np.ndarray, list[dict[str, int]]]:
        """Token frames [T, K] for `duration_sec`. progress(done, total, tokens_generated, tokens_estimated)
        after every decoder call; cancel.check() before every call; on_frames(new_frames) as frames settle."""
        timings = {} if timings is None else timings
        total_frames = self.frames_for(duration_sec)
        plan = self.plan_windows(total_frames)
        total_steps = sum(w["steps"] for w in plan)
        rng = np.random.default_rng(seed)
        t0 = time.perf_counter()
        hidden, mask = self.encode_text(prompt, params.negative_prompt)
        timings["text_encode_sec"] = time.perf_counter() - t0
        frames = np.zeros((0, self.config.num_codebooks), dtype=np.int64)
        state = {"done": 0}
        t_loop = time.perf_counter()

        def step_done(window_frames: int) -> None:
            state["done"] += 1
            if progress is not None:
                generated = int(len(frames)) + window_frames
                progress(
                    state["done"], total_steps, tokens_generated=generated, tokens_estimated=total_frames
                )

        for w in plan:
            prompt_frames = frames[len(frames) - w["prompt"] :] if w["prompt"] else frames[:0]
            new = self._window(
                prompt_frames, w["new"], hidden, mask, rng, params, cancel, step_done, on_frames
            )
            frames = np.concatenate([frames, new], axis=0)
        timings["decoder_sec"] = time.perf_counter() - t_loop
        timings["decoder_steps"] = float(total_steps)
        return frames, plan

    def continue_window(
        self,
        prompt: str,
        context: np.ndarray,
        new_frames: int,
        rng: np.random.Generator,
        params: SamplingParams,
        *,
        cancel: CancelToken | None = None,
        on_frames: Callable[[np.ndarray], None] | None = None,
    ) -> np.ndarray:
        """One window of the extend-stride scheme for a caller that keeps the sequence itself (the radio):
        `new_frames` frames [new, K] after `context` ([P, K] codes of what came before, P ≤ window - new; empty
        to begin). `generate_frames` is this, window after window, with one prompt."""
        limit = max(1, int(round(self.window_sec * self.config.frame_rate)))
        if len(context) + new_frames > limit:
            raise LofiError(
                ErrorCode.INTERNAL_ERROR,
                f"a window holds {limit} frames; {len(context)} of context + {new_frames} new do not fit",
            )
        hidden, mask = self.encode_text(prompt, params.negative_prompt)
        return self._window(
            context, new_frames, hidden, mask, rng, params, cancel, lambda _n: None, on_frames
        )

    def _window(
        self,
        prompt_frames: np.ndarray,
        new_frames: int,
        hidden: np.ndarray,
        mask: np.ndarray,
        rng: np.random.Generator,
        params: SamplingParams,
        cancel: CancelToken | None,
        step_done: Callable[[int], None],
        on_frames: Callable[[np.ndarray], None] | None,
    ) -> np.ndarray:
        """Generate `new_frames` frames after `prompt_frames` [P, K] in one decoder context."""
        cfg = self.config
        K, pad = cfg.num_codebooks, cfg.pad_token_id
        P = len(prompt_frames)
        N = P + new_frames + K - 1  # last position of this window; frames 0..N-K complete
        # seq[k, p]: token of codebook k at position p (delay pattern applied); -1 = not known yet
        seq = np.full((K, N + 1), -1, dtype=np.int64)
        for k in range(K):
            # BOS triangle: no frame before position k + 1. Position 0 holds the decoder start token, which
            # transformers' delay mask also overwrites with pad (both are 2048 in musicgen anyway).
            seq[k, : k + 1] = pad
            seq[k, k + 1 : k + 1 + P] = prompt_frames[:, k]
            seq[k, k + N - K + 2 :] = pad  # transformers' tail triangle
        self.decoder.reset()
        pos = P  # positions 0..P are fully known → one prefill call
        emitted = 0
        while pos < N:
            if cancel is not None:
                cancel.check()
            cols = seq[:, : pos + 1] if not self.decoder.started else seq[:, pos : pos + 1]
            ids = np.concatenate([cols, cols], axis=0)  # cond rows then uncond rows, [2K, L]
            logits = self.decoder(np.ascontiguousarray(ids), hidden, mask)
            guided = apply_guidance(logits, params.guidance_scale)
            tokens = sample(
                guided, rng, top_k=params.top_k, top_p=params.top_p, temperature=params.temperature
            )
            nxt = pos + 1
            for k in range(K):
                if seq[k, nxt] == -1:  # not forced by the prompt or the delay pattern
                    seq[k, nxt] = tokens[k]
            pos = nxt
            # frame f is complete once codebook K-1 has position f + K
            complete = min(pos - K + 1, P + new_frames) - P
            if on_frames is not None and complete > emitted:
                on_frames(self._unde_delay(seq, P + emitted, P + complete))
            emitted = max(emitted, complete)
            step_done(emitted)
        return self._unde_delay(seq, P, P + new_frames)

    @staticmethod
    def _unde_delay(seq: np.ndarray, start: int, stop: int) -> np.ndarray:
        K = seq.shape[0]
        return np.stack([seq[k, start + k + 1 : stop + k + 1] for k in range(K)], axis=1)

    # ---- audio ------------------------------------------------------------------------------------------
    def decode(self, frames: np.ndarray) -> np.ndarray:
        """EnCodec: frames [T, K] → float32 mono samples [T * hop]."""
        codes = np.ascontiguousarray(frames.T[None, None, :, :].astype(np.int64))  # [1, 1, K, T]
        (audio,) = self.encodec.run(["audio_values"], {"audio_codes": codes})
        return np.asarray(audio[0, 0], dtype=np.float32)

    def decode_track(self, frames: np.ndarray) -> np.ndarray:
        """The whole track's audio. Up to `decode_chunk_frames` (30 s) in one EnCodec call; longer tracks in
        30 s pieces, each with DECODE_LEFT_FRAMES of history and DECODE_RIGHT_FRAMES of lookahead, keeping only
        its own samples (a 120 s one-shot decode peaks at ~4.7 GB of RSS on the full-size EnCodec)."""
        T, chunk = len(frames), self.decode_chunk_frames
        if T <= chunk:
            return self.decode(frames)
        hop, left, right = self.config.hop_length, DECODE_LEFT_FRAMES, DECODE_RIGHT_FRAMES
        parts = []
        for a in range(0, T, chunk):
            b = min(T, a + chunk)
            lo, hi = max(0, a - left), min(T, b + right)
            parts.append(self.decode(frames[lo:hi])[(a - lo) * hop : (b - lo) * hop])
        return np.concatenate(parts)

    def generate(
        self,
        prompt: str,
        duration_sec: float,
        seed: int,
        params: SamplingParams | None = None,
        *,
        progress: Callable[..., None] | None = None,
        cancel: CancelToken | None = None,
    ) -> GenerationResult:
        params = params or SamplingParams()
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        frames, plan = self.generate_frames(
            prompt, duration_sec, seed, params, progress=progress, cancel=cancel, timings=timings
        )
        if cancel is not None:
            cancel.check()
        t1 = time.perf_counter()
        audio = self.decode_track(frames)
        timings["encodec_sec"] = time.perf_counter() - t1
        want = int(round(duration_sec * self.config.sample_rate))
        audio = audio[:want]
        timings["total_sec"] = time.perf_counter() - t0
        return GenerationResult(frames=frames, audio=audio, timings=timings, windows=plan)
