"""Benchmark: our ONNX MusicGen pipeline vs transformers/torch on the same full-size random-weight weights.

    python scripts/build_musicgen.py --size small --out /work/bench-models/musicgen-small
    python scripts/quantize_musicgen.py /work/bench-models/musicgen-small --kinds int8 q4
    python scripts/bench_musicgen.py /work/bench-models/musicgen-small --seconds 10

Every configuration runs in its own process (so peak RSS is its own), one after the other, generating the same
number of tokens (seconds * 50 frames + 3 delay steps, CFG batch 2, guidance 3, top-k 250). Reports ms per
decoder step, text-encode and EnCodec time, wall time, real-time factor (wall / audio seconds) and peak RSS, plus
how much CPU *other* processes used meanwhile (the machine is shared; > 0.2 cores means the numbers are
contaminated). Also measures the logit drift of the quantized decoders against fp32 (teacher-forced).
Each ONNX configuration runs with the in-place KV cache (`static`, the CPU default) and with the export's own
Concat cache (`concat`, the reference), converted once before the runs. The header gives the CPU model, its
features, the measured memory read bandwidth and the weight-streaming floor (decoder bytes read per step ÷
bandwidth) that a step cannot beat.
Prints one JSON document and a markdown table. Not a test: nothing here asserts speed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "daemon"), str(REPO)]

from scripts.benchlib import (  # noqa: E402
    MIB,
    Watch,
    bandwidth_buffer,
    file_mib,
    machine_info,
    peak_rss_mib,
    read_bandwidth_gb_per_s,
)

PROMPT = "80s pop track with bassy drums and synth"
DECODERS = {
    "fp32": "decoder_model_merged.onnx",
    "int8": "decoder_model_merged_quantized.onnx",
    "q4": "decoder_model_merged_q4.onnx",
    # "before": the int8 file converted without nbits.py's MatMulNBits rewrite (the dynamic-int8 chains kept)
    "int8-chain": "decoder_model_merged_quantized.onnx",
    # "before": the int8 file converted without static_kv.fuse (cross-attention, GELU and Q/K/V left as exported)
    "int8-unfused": "decoder_model_merged_quantized.onnx",
    # "before": the int8 file with MatMulNBits blocks of 1024 (nbits.BLOCK_SIZE was 1024 until the fourth round)
    "int8-b1024": "decoder_model_merged_quantized.onnx",
}


def weight_bytes_per_step(static_path: Path) -> int:
    """Bytes of weights a decoder step reads: every initializer of the in-place graph but the embedding
    tables (a step gathers 4 rows of them)."""
    import onnx

    model = onnx.load(str(static_path), load_external_data=False)
    total = 0
    for t in model.graph.initializer:
        if "embed_tokens" in t.name:
            continue
        n = 1
        for d in t.dims:
            n *= d
        total += n * {1: 4, 3: 1, 2: 1, 10: 2, 7: 8, 6: 4, 22: 1, 21: 1}.get(t.data_type, 4)
    return total


# ---- child processes --------------------------------------------------------------------------------------
def _before_converted(model_dir: Path, kind: str, patch, is_before) -> tuple[Path, Path]:
    """The in-place KV conversion of the int8 decoder with `patch` (a mock.patch of the rewrite) in force, for
    before/after. The product converts in a child process, where a patch in this one would not reach: the
    before-variants convert in this process. `is_before(static model)` checks that the entry really is the
    before-graph (an entry built while the patch did not reach the child is removed and built again)."""
    import shutil
    from unittest import mock

    import onnx
    from lofi_daemon.backends.musicgen import static_kv

    def in_process(tmp: Path, cache_path: Path, first_path: Path | None) -> None:
        static_kv.write_converted(tmp, cache_path, first_path)

    root = bench_settings(model_dir, 0).cache_dir / "converted" / f"musicgen-{kind}"
    files = {"decoder_merged": model_dir / DECODERS[kind]}
    for attempt in range(2):
        with patch, mock.patch.object(static_kv, "_convert_in_child", in_process):
            static, cross = static_kv.converted(files, root)
        if is_before(onnx.load(str(static), load_external_data=False)):
            return static, cross
        if attempt == 0:
            shutil.rmtree(static.parent)
    raise RuntimeError(f"the {kind} conversion is not the before-graph it names")


def _ops(model) -> set[str]:
    return {n.op_type for n in model.graph.node}


def chain_converted(model_dir: Path) -> tuple[Path, Path]:
    """Without the MatMulNBits rewrite: the dynamic-int8 chains as exported."""
    from unittest import mock

    from lofi_daemon.backends.musicgen import nbits

    return _before_converted(
        model_dir,
        "int8-chain",
        mock.patch.object(nbits, "convert", lambda *a, **k: 0),
        lambda m: "MatMulInteger" in _ops(m) and "MatMulNBits" not in _ops(m),
    )


def unfused_converted(model_dir: Path) -> tuple[Path, Path]:
    """Without static_kv.fuse: cross-attention, GELU and Q/K/V as exported."""
    from unittest import mock

    from lofi_daemon.backends.musicgen import static_kv

    return _before_converted(
        model_dir,
        "int8-unfused",
        mock.patch.object(static_kv, "fuse", lambda *a, **k: {}),
        lambda m: not _ops(m) & {"MultiHeadAttention", "Gelu"},
    )


def b1024_converted(model_dir: Path) -> tuple[Path, Path]:
    """With MatMulNBits blocks of 1024 (nbits.BLOCK_SIZE until the fourth round)."""
    import functools
    from unittest import mock

    from lofi_daemon.backends.musicgen import nbits
    from onnx import helper

    def blocks(m) -> set[int]:
        return {
            helper.get_attribute_value(a)
            for n in m.graph.node
            if n.op_type == "MatMulNBits"
            for a in n.attribute
            if a.name == "block_size"
        }

    return _before_converted(
        model_dir,
        "int8-b1024",
        mock.patch.object(nbits, "convert", functools.partial(nbits.convert, block=1024)),
        lambda m: 1024 in blocks(m) and 4096 not in blocks(m),
    )


BEFORE = {
    "int8-chain": chain_converted,
    "int8-unfused": unfused_converted,
    "int8-b1024": b1024_converted,
}


def open_pipe(model_dir: Path, kind: str, kv: str, threads: int, base: dict | None = None):
    from lofi_daemon.backends.musicgen.pipeline import MusicGenPipeline, _StaticDecoder
    from lofi_daemon.runtime.sessions import create_session

    files = {**(base or model_files(model_dir)), "decoder_merged": model_dir / DECODERS[kind]}
    settings = bench_settings(model_dir, threads)
    if kind not in BEFORE or kv != "static":
        return MusicGenPipeline(files, settings, kv_cache=kv)
    pipe = MusicGenPipeline(files, settings, kv_cache="concat")
    static, cross = BEFORE[kind](model_dir)
    capacity = (
        int(round(pipe.window_sec * pipe.config.frame_rate)) + pipe.config.num_codebooks
    )  # as the pipeline
    pipe.decoder = _StaticDecoder(create_session(static, settings), create_session(cross, settings), capacity)
    pipe.kv_cache = "static"
    return pipe


def model_files(model_dir: Path) -> dict:
    return {
        "tokenizer": model_dir / "tokenizer.json",
        "config": model_dir / "config.json",
        "generation_config": model_dir / "generation_config.json",
        "text_encoder": model_dir / "text_encoder.onnx",
        "encodec_decode": model_dir / "encodec_decode.onnx",
    }


def bench_settings(model_dir: Path, threads: int):
    from lofi_daemon.config import Settings

    # converted decoders (static_kv.py) are kept beside the bench model, never in the user's cache
    return Settings(cache_dir=model_dir / ".bench-cache", provider="cpu", threads=threads)


def child_ort(
    model_dir: Path, decoder: str, seconds: float, threads: int, stream: bool = False, kv: str = "static"
) -> dict:
    from lofi_daemon.backends.musicgen.pipeline import SamplingParams
    from lofi_daemon.backends.musicgen.streaming import generate_streaming

    t0 = time.perf_counter()
    pipe = open_pipe(model_dir, decoder, kv, threads)
    load = time.perf_counter() - t0
    rss_loaded = peak_rss_mib()
    stamps: list[float] = []

    def progress(done, total, **kw):
        stamps.append(time.perf_counter())

    first_sound: dict[str, float] = {}
    if stream:
        from lofi_daemon.audio.stream import TrackStream

        rate = pipe.config.sample_rate
        track = TrackStream(
            "bench",
            rate,
            1,
            seconds,
            device_rate=lambda: rate,
            clock=time.perf_counter,
            on_done=lambda t: None,
        )

        def on_audio(chunk) -> None:
            # the player's start rule, checked at each chunk (between chunks it only gets stricter)
            track.push(chunk)
            if "sec" not in first_sound and track.can_start():
                first_sound["sec"] = time.perf_counter() - track.started

        res = generate_streaming(pipe, PROMPT, seconds, 0, SamplingParams(), progress, None, on_audio)
        first_sound.setdefault("sec", time.perf_counter() - track.started)  # it waited for the end
    else:
        res = pipe.generate(PROMPT, seconds, 0, SamplingParams(), progress=progress)
    steps = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
    return {
        "kv_cache": pipe.kv_cache,
        "load_sec": load,
        "text_encode_ms": res.timings["text_encode_sec"] * 1000,
        "decoder_steps": int(res.timings["decoder_steps"]),
        "ms_per_step": 1000 * res.timings["decoder_sec"] / res.timings["decoder_steps"],
        "ms_per_step_first50": 1000 * sum(steps[:50]) / max(1, len(steps[:50])),
        "ms_per_step_last50": 1000 * sum(steps[-50:]) / max(1, len(steps[-50:])),
        "encodec_sec": res.timings["encodec_sec"],
        "wall_sec": res.timings["total_sec"],
        "rtf": res.timings["total_sec"] / seconds,
        "rss_after_load_mib": rss_loaded,
        "peak_rss_mib": peak_rss_mib(),
        "decoder_mib": file_mib(model_dir / DECODERS[decoder]),
        "audio_samples": int(res.audio.shape[0]),
        **(
            {"first_audio_sec": res.timings["first_audio_sec"], "first_sound_sec": first_sound["sec"]}
            if stream
            else {}
        ),
        "ms_per_step_by_position": {
            f"{a}-{min(a + 250, len(steps))}": round(
                1000 * sum(steps[a : a + 250]) / len(steps[a : a + 250]), 1
            )
            for a in range(0, len(steps), 250)
        },
    }


def child_torch(model_dir: Path, seconds: float, threads: int) -> dict:
    import torch
    from tokenizers import Tokenizer
    from transformers import MusicgenForConditionalGeneration

    if threads:
        torch.set_num_threads(threads)
    t0 = time.perf_counter()
    model = MusicgenForConditionalGeneration.from_pretrained(model_dir / "pytorch").eval()
    load = time.perf_counter() - t0
    rss_loaded = peak_rss_mib()
    ids = torch.tensor([Tokenizer.from_file(str(model_dir / "tokenizer.json")).encode(PROMPT).ids])
    mask = torch.ones_like(ids)
    frames = int(round(seconds * 50))
    timing = {"encodec": 0.0}
    decode = model.audio_encoder.decode

    def timed_decode(*a, **k):
        t = time.perf_counter()
        out = decode(*a, **k)
        timing["encodec"] += time.perf_counter() - t
        return out

    model.audio_encoder.decode = timed_decode
    with torch.inference_mode():
        t = time.perf_counter()
        model.text_encoder(input_ids=ids, attention_mask=mask)
        text_ms = (time.perf_counter() - t) * 1000
        torch.manual_seed(0)
        t = time.perf_counter()
        audio = model.generate(
            input_ids=ids,
            attention_mask=mask,
            do_sample=True,
            top_k=250,
            guidance_scale=3.0,
            max_new_tokens=frames + 3,
        )
        wall = time.perf_counter() - t
    steps = frames + 3
    return {
        "load_sec": load,
        "text_encode_ms": text_ms,
        "decoder_steps": steps,
        "ms_per_step": 1000 * (wall - timing["encodec"] - text_ms / 1000) / steps,
        "encodec_sec": timing["encodec"],
        "wall_sec": wall,
        "rtf": wall / seconds,
        "rss_after_load_mib": rss_loaded,
        "peak_rss_mib": peak_rss_mib(),
        "audio_samples": int(audio.shape[-1]),
    }


def child_drift(model_dir: Path, kinds: list[str], steps: int, kv: str = "concat") -> dict:
    """Teacher-forced: run fp32 greedily for `steps`, feed the same inputs to each quantized decoder, compare
    the guided logits of every step. kv "static": the converted decoders the daemon runs (MatMulNBits, fused),
    "concat": the exported files as they are. The reference is always the exported fp32 decoder."""
    import numpy as np
    from lofi_daemon.backends.musicgen.pipeline import MusicGenPipeline, SamplingParams, _Decoder
    from lofi_daemon.backends.musicgen.sampling import apply_guidance
    from lofi_daemon.runtime.sessions import create_session

    settings = bench_settings(model_dir, 0)
    files = {
        "tokenizer": model_dir / "tokenizer.json",
        "config": model_dir / "config.json",
        "text_encoder": model_dir / "text_encoder.onnx",
        "encodec_decode": model_dir / "encodec_decode.onnx",
        "decoder_merged": model_dir / DECODERS["fp32"],
    }
    pipe = MusicGenPipeline(files, settings, kv_cache="concat")  # the reference: the export as it is
    frames = pipe.generate_frames(PROMPT, (steps - 3) / 50, 0, SamplingParams(top_k=1))[0]
    hidden, mask = pipe.encode_text(PROMPT)
    K, pad = 4, pipe.config.pad_token_id
    # the exact inputs of each step (delay pattern, no tail within `steps`)
    seq = np.full((K, steps + 1), pad, dtype=np.int64)
    for k in range(K):
        seq[k, k + 1 : k + 1 + len(frames)] = frames[:, k]

    def run(decoder: _Decoder) -> list[np.ndarray]:
        decoder.reset()
        out = []
        for p in range(steps):
            col = seq[:, p : p + 1]
            out.append(apply_guidance(decoder(np.concatenate([col, col]), hidden, mask), 3.0))
        return out

    ref = run(pipe.decoder)
    del pipe
    result = {}
    for kind in kinds:
        dec = (
            open_pipe(model_dir, kind, "static", 0).decoder
            if kv == "static"
            else _Decoder(create_session(model_dir / DECODERS[kind], settings), None)
        )
        got = run(dec)
        cos, overlap, agree = [], [], []
        for a, b in zip(ref, got, strict=True):
            for r in range(a.shape[0]):
                x, y = a[r].astype(np.float64), b[r].astype(np.float64)
                cos.append(float(x @ y / (np.linalg.norm(x) * np.linalg.norm(y))))
                ta, tb = set(np.argsort(-x)[:250]), set(np.argsort(-y)[:250])
                overlap.append(len(ta & tb) / 250)
                agree.append(float(np.argmax(x) == np.argmax(y)))
        result[kind] = {
            "cosine": float(np.mean(cos)),
            "top250_overlap": float(np.mean(overlap)),
            "argmax_agreement": float(np.mean(agree)),
        }
        del dec
    return result


_TORCH: dict = {}  # the transformers model, loaded once per process


def child_interleave(
    model_dir: Path,
    kinds: list[str],
    rounds: int,
    lengths: list[int],
    with_torch: bool,
    kvs: list[str],
    threads: int,
) -> dict:
    """All configurations in one process, alternating, a whole window of each of `lengths` decoder steps per
    round (from an empty cache): slow changes in the load of a shared machine hit every configuration alike.
    → {"<config>@<steps>": ...}"""
    out: dict = {}
    from lofi_daemon.backends.musicgen.pipeline import SamplingParams

    pipes = {f"{k}-{kv}": open_pipe(model_dir, k, kv, threads) for k in kinds for kv in kvs}
    # torch loads before the warm-up: its 2.4 GB of weights disturbed the next window's first steps
    if with_torch:
        from transformers import MusicgenForConditionalGeneration

        _TORCH["model"] = MusicgenForConditionalGeneration.from_pretrained(model_dir / "pytorch").eval()
    for pipe in pipes.values():
        # a short window first: the first generation of a pipeline allocates and faults in its KV buffers
        # (590 MiB) and ORT's arena, which would otherwise land on whichever configuration runs first
        pipe.generate_frames(PROMPT, 0.2, 0, SamplingParams())
    for steps in lengths:
        for name, r in _interleave_one(model_dir, pipes, rounds, steps, with_torch).items():
            out[f"{name}@{steps}"] = r
    return out


def _interleave_one(model_dir: Path, pipes: dict, rounds: int, steps: int, with_torch: bool) -> dict:
    import numpy as np
    from lofi_daemon.backends.musicgen.pipeline import SamplingParams

    model = ids = None
    if with_torch:
        import torch
        from transformers import MusicgenForConditionalGeneration

        model = (
            _TORCH.get("model")
            or MusicgenForConditionalGeneration.from_pretrained(model_dir / "pytorch").eval()
        )
        _TORCH["model"] = model
        ids = torch.tensor([next(iter(pipes.values())).tokenizer.encode(PROMPT).ids])
    frames = steps - 3
    out: dict[str, list[float]] = {k: [] for k in [*pipes, *(["torch"] if with_torch else [])]}
    split: dict[str, list[tuple[float, float]]] = {k: [] for k in pipes}
    # the read bandwidth right before and right after each window: its floor uses their mean, not a figure
    # from minutes away (it moved by a third within one quiet run here)
    bw: dict[str, list[float]] = {k: [] for k in pipes}
    buf = bandwidth_buffer()
    for _ in range(rounds):
        for k, pipe in pipes.items():
            before = read_bandwidth_gb_per_s(buf, passes=3)
            t: dict[str, float] = {}
            stamps: list[float] = []
            pipe.generate_frames(
                PROMPT,
                frames / 50,
                0,
                SamplingParams(),
                timings=t,
                progress=lambda *a, _s=stamps, **kw: _s.append(time.perf_counter()),
            )
            out[k].append(1000 * t["decoder_sec"] / steps)
            bw[k].append(round((before + read_bandwidth_gb_per_s(buf, passes=3)) / 2, 1))
            d = np.diff(stamps)
            split[k].append((1000 * float(d[:50].mean()), 1000 * float(d[-50:].mean())))
        if with_torch:
            with torch.inference_mode():
                t0 = time.perf_counter()
                model.generate(  # type: ignore[union-attr]
                    input_ids=ids,
                    attention_mask=torch.ones_like(ids),
                    do_sample=True,
                    top_k=250,
                    guidance_scale=3.0,
                    max_new_tokens=steps,
                )
                out["torch"].append(1000 * (time.perf_counter() - t0) / steps)
    result = {k: {"rounds_ms_per_step": v, "median_ms_per_step": float(np.median(v))} for k, v in out.items()}
    for k, pairs in split.items():
        result[k]["first50_last50_ms"] = [round(a, 1) for a in np.median(np.array(pairs), axis=0)]
        result[k]["read_gb_per_s_rounds"] = bw[k]
    return result


# ---- parent -----------------------------------------------------------------------------------------------
def run_child(args: list[str]) -> dict:
    with Watch() as w:  # the child is reaped inside the block, so its CPU counts as ours, not as foreign
        proc = subprocess.run([sys.executable, __file__, *args], stdout=subprocess.PIPE, text=True)
    out = proc.stdout
    result = json.loads(out.strip().splitlines()[-1]) if proc.returncode == 0 else {"error": proc.returncode}
    result["foreign_cpu_cores"] = round(w.foreign_cores, 2)
    return result


def table(results: dict, seconds: float) -> str:
    head = (
        "| pipeline | decoder file | ms/step (first 50 → last 50) | text enc | EnCodec | wall for "
        f"{seconds:g} s | RTF | speed-up vs torch | load | peak RSS | foreign CPU |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    torch_wall = results.get("torch", {}).get("wall_sec")
    rows = []
    for name, r in results.items():
        if name == "drift" or "error" in r:
            continue
        split = (
            f" ({r['ms_per_step_first50']:.1f} → {r['ms_per_step_last50']:.1f})"
            if "ms_per_step_first50" in r
            else ""
        )
        dec = f"{r['decoder_mib']:.0f} MiB" if "decoder_mib" in r else "safetensors"
        speed = f"{torch_wall / r['wall_sec']:.1f}×" if torch_wall else "–"
        rows.append(
            f"| {name} | {dec} | {r['ms_per_step']:.1f}{split} | {r['text_encode_ms']:.0f} ms | "
            f"{r['encodec_sec']:.2f} s | {r['wall_sec']:.1f} s | {r['rtf']:.2f} | {speed} | {r['load_sec']:.1f} s | "
            f"{r['peak_rss_mib']:.0f} MiB | {r['foreign_cpu_cores']:.2f} |"
        )
    out = head + "\n".join(rows)
    firsts = {k: r for k, r in results.items() if isinstance(r, dict) and "first_audio_sec" in r}
    if firsts:
        out += "\n\nPlay while generating: " + ", ".join(
            f"{k}: first chunk decoded {r['first_audio_sec']:.2f} s, first sound (the player's start rule) "
            f"{r['first_sound_sec']:.2f} s"
            for k, r in firsts.items()
        )
    if "drift" in results:
        out += "\n\n| decoder | cosine vs fp32 | top-250 overlap | argmax agreement |\n|---|---|---|---|\n"
        out += "\n".join(
            f"| {k} | {v['cosine']:.4f} | {v['top250_overlap']:.3f} | {v['argmax_agreement']:.3f} |"
            for k, v in results["drift"].items()
            if isinstance(v, dict) and "cosine" in v
        )
    return out


def convert_all(model_dir: Path, kinds: list[str]) -> dict:
    """Convert each decoder to the in-place KV form once, before any timed run; → seconds and weight bytes."""
    from lofi_daemon.backends.musicgen import static_kv

    out = {}
    for kind in kinds:
        t0 = time.perf_counter()
        static, _ = (
            BEFORE[kind](model_dir)
            if kind in BEFORE
            else static_kv.converted(
                {"decoder_merged": model_dir / DECODERS[kind]},
                bench_settings(model_dir, 0).cache_dir / "converted" / "musicgen",
            )
        )
        out[kind] = {
            "convert_sec": round(time.perf_counter() - t0, 1),
            "weight_bytes": weight_bytes_per_step(static),
            "kv_bytes_per_position": kv_bytes_per_position(static),
        }
    return out


def kv_bytes_per_position(static_path: Path, batch: int = 2) -> int:
    """Bytes of self-attention cache a step reads per cached position: every decoder K and V buffer's
    heads × head size × 4 bytes (float32), times the CFG batch."""
    import onnx

    model = onnx.load(str(static_path), load_external_data=False)
    total = 0
    for i in model.graph.input:
        if i.name.startswith("past_key_values.") and ".decoder." in i.name:
            dims = i.type.tensor_type.shape.dim
            total += batch * dims[1].dim_value * dims[3].dim_value * 4
    return total


def floor_ms(converted: dict, gb_per_s: float, steps: int = 0) -> float:
    """The floor of a step: the bytes it must read ÷ the read bandwidth. The weights, plus (given the window's
    `steps`) the KV cache at the window's mean position, steps / 2."""
    read = converted["weight_bytes"] + converted.get("kv_bytes_per_position", 0) * steps / 2
    return read / (gb_per_s * 1e9) * 1000


def floor_ratios(v: dict, converted: dict, steps: int) -> tuple[float, float]:
    """(÷ weight floor, ÷ floor with the KV cache): the median over rounds of each window's ms/step ÷ the floor
    at the bandwidth measured around that window."""
    import numpy as np

    pairs = list(zip(v["rounds_ms_per_step"], v["read_gb_per_s_rounds"], strict=True))
    return (
        float(np.median([ms / floor_ms(converted, gb) for ms, gb in pairs])),
        float(np.median([ms / floor_ms(converted, gb, steps) for ms, gb in pairs])),
    )


def header(info: dict, converted: dict) -> str:
    lines = [
        f"CPU: {info['cpu']} ({info['cores']} cores; {', '.join(info['features']) or 'no AVX2'}); "
        f"read bandwidth {info['read_gb_per_s']} GB/s (2 threads, 1 GiB)",
    ]
    for kind, c in converted.items():
        floor = floor_ms(c, info["read_gb_per_s"])
        lines.append(
            f"{kind}: {c['weight_bytes'] / MIB:.0f} MiB of weights per step → floor {floor:.1f} ms/step "
            f"(+ the KV cache: 0.375 MiB per position at fp32, batch 2); converted once in {c['convert_sec']} s"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model_dir", type=Path)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--variants", nargs="+", default=["int8", "q4", "fp32"], choices=sorted(DECODERS))
    ap.add_argument("--kv", nargs="+", default=["static", "concat"], choices=["static", "concat"])
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--stream", nargs="*", default=["int8"], help="variants also run with streaming decode")
    ap.add_argument("--drift-steps", type=int, default=20, help="0 = skip the logit drift check")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument(
        "--interleave",
        type=int,
        nargs="+",
        metavar="N",
        help="ROUNDS STEPS [STEPS ...]: A/B in one process, whole windows of each length (503 = 10 s, 1503 = 30 s)",
    )
    ap.add_argument("--child", choices=["ort", "torch", "drift", "interleave"], help=argparse.SUPPRESS)
    ap.add_argument("--decoder", help=argparse.SUPPRESS)
    ap.add_argument("--child-stream", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.child == "ort":
        res = child_ort(
            args.model_dir, args.decoder, args.seconds, args.threads, args.child_stream, args.kv[0]
        )
        print(json.dumps(res))
        return
    if args.child == "torch":
        print(json.dumps(child_torch(args.model_dir, args.seconds, args.threads)))
        return
    if args.child == "interleave":
        rounds, *lengths = args.interleave
        res = child_interleave(
            args.model_dir, args.variants, rounds, lengths, not args.no_torch, args.kv, args.threads
        )
        print(json.dumps(res))
        return
    if args.child == "drift":
        kinds = [k for k in args.variants if k != "fp32"]
        print(json.dumps(child_drift(args.model_dir, kinds, args.drift_steps, args.kv[0])))
        return

    info = machine_info()
    converted = convert_all(args.model_dir, args.variants) if "static" in args.kv else {}
    print(header(info, converted), file=sys.stderr, flush=True)
    common = [str(args.model_dir), "--seconds", str(args.seconds), "--threads", str(args.threads)]
    if args.interleave:
        flags = ["--no-torch"] if args.no_torch else []
        r = run_child(
            [
                *common,
                "--child",
                "interleave",
                "--variants",
                *args.variants,
                "--kv",
                *args.kv,
                *flags,
                "--interleave",
                *map(str, args.interleave),
            ]
        )
        print(json.dumps({"machine": info, "converted": converted, "results": r}, indent=1))
        print()
        print(header(info, converted))
        print(
            "\n| decoder @ steps | ms/step per round | median | first 50 → last 50 | late/early "
            "| read GB/s per round | ÷ weight floor | ÷ floor with KV | vs torch |"
            "\n|---|---|---|---|---|---|---|---|---|"
        )
        for k, v in r.items():
            if isinstance(v, dict):
                name, steps = k.rsplit("@", 1)
                ref = r.get(f"torch@{steps}", {}).get("median_ms_per_step")
                rounds = " / ".join(f"{x:.1f}" for x in v["rounds_ms_per_step"])
                ratio = f"{ref / v['median_ms_per_step']:.1f}×" if ref else "–"
                fl = v.get("first50_last50_ms")
                split = f"{fl[0]:.1f} → {fl[1]:.1f} | {fl[1] / fl[0]:.2f}" if fl else "– | –"
                kind = name.rsplit("-", 1)[0]
                gbs = v.get("read_gb_per_s_rounds")
                floor = "– | – | –"
                if gbs and kind in converted:
                    weights, with_kv = floor_ratios(v, converted[kind], int(steps))
                    floor = f"{' / '.join(f'{g:.0f}' for g in gbs)} | {weights:.2f} | {with_kv:.2f}"
                print(f"| {k} | {rounds} | {v['median_ms_per_step']:.1f} | {split} | {floor} | {ratio} |")
        print(f"\nforeign CPU during the run: {r['foreign_cpu_cores']} cores")
        return
    results: dict = {}
    for kind in args.variants:
        for kv in args.kv:
            print(f"# ort {kind} {kv} ...", file=sys.stderr, flush=True)
            results[f"ort-{kind}-{kv}"] = run_child(
                [*common, "--child", "ort", "--decoder", kind, "--kv", kv]
            )
    for kind in args.stream:
        print(f"# ort {kind} streaming ...", file=sys.stderr, flush=True)
        results[f"ort-{kind}-{args.kv[0]}-stream"] = run_child(
            [*common, "--child", "ort", "--decoder", kind, "--kv", args.kv[0], "--child-stream"]
        )
    if not args.no_torch:
        print("# transformers/torch ...", file=sys.stderr, flush=True)
        results["torch"] = run_child([*common, "--child", "torch"])
    if args.drift_steps and any(k != "fp32" for k in args.variants):
        print("# logit drift ...", file=sys.stderr, flush=True)
        results["drift"] = run_child(
            [
                *common,
                "--child",
                "drift",
                "--variants",
                *args.variants,
                "--drift-steps",
                str(args.drift_steps),
                "--kv",
                args.kv[0],
            ]
        )
    meta = {
        "seconds_of_audio": args.seconds,
        "prompt": PROMPT,
        "machine": info,
        "converted": converted,
        "threads": args.threads or "ort default",
    }
    print(json.dumps({"meta": meta, "results": results}, indent=1))
    print()
    print(header(info, converted))
    print()
    print(table(results, args.seconds))


if __name__ == "__main__":
    main()
