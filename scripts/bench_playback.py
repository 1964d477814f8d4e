#!/usr/bin/env python3
"""Playback benchmark: mixer CPU cost, the real audio path's CPU cost, RPC latency while playing and generating,
and time-to-first-sound when a track is played while it is being generated.

    python scripts/bench_playback.py [--json out.json] [--quick]

Every cost is reported next to a reference measured in the same run (a bare copy-and-scale callback for the
mixer; an idle daemon for RPC latency), so numbers from different machines compare by ratio.

Devices: the mixer numbers need none. The real-path CPU number uses PortAudio → ALSA's `file` plugin on the
`null` slave (no clock: it pulls audio as fast as the callback makes it, so CPU seconds per audio second is
exactly the per-second cost of the callback path). RPC latency while playing needs a device that runs in real
time: a PulseAudio null sink if `pulseaudio` is installed (started and stopped by this script), else the ALSA
file device (which then spins a core: the numbers are marked `device: alsa-file (unpaced)`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "daemon"), str(ROOT)]

import numpy as np  # noqa: E402
from lofi_daemon.audio.mixer import Mixer, Source  # noqa: E402

from scripts.benchlib import machine_info  # noqa: E402

RATE = 48000
BLOCK = 512  # a typical callback size at 48 kHz (10.7 ms)


# ------------------------------------------------------------------------------------------- mixer CPU


def _noise(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (0.2 * rng.standard_normal((int(seconds * RATE), 2))).astype(np.float32)


def _cpu_per_audio_sec(render, audio_sec: float) -> float:
    out = np.zeros((BLOCK, 2), np.float32)
    blocks = int(audio_sec * RATE / BLOCK)
    t0 = time.process_time()
    for _ in range(blocks):
        render(out)
    return (time.process_time() - t0) / (blocks * BLOCK / RATE)


def bench_mixer(audio_sec: float) -> dict:
    a, b = _noise(30, 1), _noise(30, 2)

    # reference: the least a callback can do (copy the next block, scale it)
    pos = [0]

    def reference(out):
        p = pos[0] % (a.shape[0] - BLOCK)
        np.multiply(a[p : p + BLOCK], 0.3, out=out)
        pos[0] += BLOCK

    results = {"reference_copy_scale": _cpu_per_audio_sec(reference, audio_sec)}

    m = Mixer(RATE, 2, volume=0.3)
    m.end_policy = "loop"
    m.play(Source("a", a))
    results["steady"] = _cpu_per_audio_sec(m.render, audio_sec)

    # back-to-back crossfades: 4 s tracks with 2 s crossfades, so half of all audio is a two-voice seam
    m = Mixer(RATE, 2, volume=0.3)
    m.end_policy = "loop"
    short = [Source("x", a[: 4 * RATE]), Source("y", b[: 4 * RATE])]
    m.play(short[0])
    m.queue_next(short[1], short[0], short[1], short[0])
    turn = [0]

    def crossfading(out):
        if len(m.upcoming) < 2:
            turn[0] += 1
            m.queue_next(*(short[(turn[0] + k) % 2] for k in range(4)))
        m.render(out)

    results["crossfading"] = _cpu_per_audio_sec(crossfading, audio_sec)

    # volume moving all the time (per-sample ramps every block)
    m = Mixer(RATE, 2, volume=0.3)
    m.end_policy = "loop"
    m.play(Source("a", a))
    flip = [False]

    def ramping(out):
        flip[0] = not flip[0]
        m.set_volume(0.2 if flip[0] else 0.8)
        m.render(out)

    results["volume_ramping"] = _cpu_per_audio_sec(ramping, audio_sec)
    ref = results["reference_copy_scale"]
    return {
        "cpu_percent_of_one_core": {k: round(100 * v, 4) for k, v in results.items()},
        "ratio_to_reference": {
            k: round(v / ref, 2) for k, v in results.items() if k != "reference_copy_scale"
        },
        "audio_sec_per_case": audio_sec,
        "block_frames": BLOCK,
        "rate": RATE,
    }


# ----------------------------------------------------------------------------- real audio path (child)

ALSA_FILE_RC = """pcm.!default {{
    type plug
    slave {{ pcm "lofi_capture" format S16_LE rate 48000 channels 2 }}
}}
pcm.lofi_capture {{
    type file
    slave.pcm "null"
    format "raw"
    file "{capture}"
}}
"""


def child_device_cpu(tmp: Path, audio_sec: float) -> dict:
    """Run in a subprocess whose ALSA config points at the file device: the Player's real stream."""
    from lofi_daemon.audio.player import Player
    from lofi_daemon.cache.store import TrackStore

    from tests.playback_helpers import Recorder, put_track, sine

    store = TrackStore(tmp / "tracks")
    t = put_track(store, "bench", sine(440, 30.0, 32000, amp=0.5), 32000)
    player = Player(store, Recorder(), volume=0.3)
    player.set_loop("track")
    c0 = time.process_time()
    w0 = time.monotonic()
    player.play(t.track_id)
    while player.mixer.frames_rendered < audio_sec * player.mixer.rate:
        time.sleep(0.002)
    cpu = time.process_time() - c0
    wall = time.monotonic() - w0
    rendered = player.mixer.frames_rendered / player.mixer.rate
    player.close()
    return {"cpu_sec_per_audio_sec": cpu / rendered, "audio_sec": rendered, "wall_sec": wall}


def bench_device_cpu(audio_sec: float) -> dict:
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        (tmp / "alsa").mkdir()
        (tmp / "alsa" / "asoundrc").write_text(ALSA_FILE_RC.format(capture="/dev/null"))
        env = {**os.environ, "XDG_CONFIG_HOME": str(tmp)}
        out = subprocess.run(
            [sys.executable, __file__, "--child-device-cpu", str(tmp), str(audio_sec)],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if out.returncode != 0:
            return {"error": out.stderr.strip().splitlines()[-1] if out.stderr.strip() else "failed"}
        r = json.loads(out.stdout.strip().splitlines()[-1])
    return {
        "cpu_percent_of_one_core": round(100 * r["cpu_sec_per_audio_sec"], 3),
        "audio_sec": round(r["audio_sec"], 1),
        "includes": "PortAudio/ALSA callback thread, mixer, resampled 32 kHz track, control thread",
    }


# ------------------------------------------------------------------------------------------ RPC latency


class PulseNullSink:
    """A PulseAudio daemon with a null sink: a sound device that runs in real time without hardware."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.proc: subprocess.Popen | None = None

    def start(self) -> dict[str, str] | None:
        exe = shutil.which("pulseaudio")
        if exe is None:
            return None
        sock = self.tmp / "native"
        (self.tmp / "null.pa").write_text(
            f"load-module module-native-protocol-unix auth-anonymous=1 socket={sock}\n"
            "load-module module-null-sink sink_name=lofi_null rate=48000 channels=2\n"
            "set-default-sink lofi_null\n"
        )
        (self.tmp / "alsa").mkdir(exist_ok=True)
        (self.tmp / "alsa" / "asoundrc").write_text(
            "pcm.!default { type pulse }\nctl.!default { type pulse }\n"
        )
        env = {**os.environ, "XDG_RUNTIME_DIR": str(self.tmp)}
        self.proc = subprocess.Popen(
            [exe, "-n", "-F", str(self.tmp / "null.pa"), "--daemonize=no", "--exit-idle-time=-1"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(100):
            if sock.exists():
                return {"XDG_CONFIG_HOME": str(self.tmp), "PULSE_SERVER": f"unix:{sock}"}
            time.sleep(0.05)
        self.stop()
        return None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(5)


def _latencies(d, method: str, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        d.call(method)
        out.append(1000 * (time.perf_counter() - t0))
    return out


def _summary(ms: list[float]) -> dict:
    ms = sorted(ms)
    return {
        "p50_ms": round(statistics.median(ms), 3),
        "p99_ms": round(ms[min(len(ms) - 1, int(0.99 * len(ms)))], 3),
        "max_ms": round(ms[-1], 3),
        "n": len(ms),
    }


def bench_rpc(n: int, musicgen_dir: Path | None = None) -> dict:
    from tests.daemon_client import DaemonProcess

    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        pulse = PulseNullSink(tmp / "pulse")
        (tmp / "pulse").mkdir()
        audio_env = pulse.start()
        device = "pulseaudio null sink (real time)"
        if audio_env is None:
            (tmp / "alsa").mkdir()
            (tmp / "alsa" / "asoundrc").write_text(ALSA_FILE_RC.format(capture="/dev/null"))
            audio_env = {"XDG_CONFIG_HOME": str(tmp)}
            device = "alsa-file (unpaced: the callback spins a core)"
        try:
            (tmp / "daemon").mkdir()
            extra = {"LOFI_MUSICGEN_DIR": str(musicgen_dir), "LOFI_PROVIDER": "cpu"} if musicgen_dir else {}
            proc = DaemonProcess(
                tmp / "daemon",
                (),
                LOFI_DEFAULT_BACKEND="tone",
                LOFI_TONE_STEPS="40",
                LOFI_TONE_STEP_SEC="0.025",
                **audio_env,
                **extra,
            )
            proc.call("initialize", {"options": {"prefetch": {"enabled": False}}})
            result: dict = {"device": device}
            _latencies(proc, "ping", 20)  # warm up
            result["idle"] = {m: _summary(_latencies(proc, m, n)) for m in ("ping", "status")}
            first = proc.call("generate", {"prompt": "bench", "duration_sec": 60, "seed": 1})
            proc.wait_notification("playback_started", track_id=first["track_id"], timeout=60)
            result["playing"] = {m: _summary(_latencies(proc, m, n)) for m in ("ping", "status")}
            # keep the generator busy while measuring: a queue of jobs (the tone test backend: 40 steps of 25 ms)
            for seed in range(2, 8):
                proc.call("generate", {"prompt": "bench busy", "duration_sec": 5, "seed": seed})
            time.sleep(0.2)
            busy = {m: _summary(_latencies(proc, m, n)) for m in ("ping", "status")}
            busy["queue_still_busy"] = proc.call("queue_status")["running"] is not None
            result["playing_and_generating"] = busy
            state = proc.call("status")["playback"]
            result["still_playing"] = state["state"] == "playing"
            if musicgen_dir is not None:
                # the real MusicGen ONNX pipeline generating (CPU-bound inference threads) while we measure
                proc.call("queue_clear")
                for seed in range(10, 14):
                    proc.call(
                        "generate",
                        {
                            "prompt": "bench musicgen",
                            "backend": "musicgen",
                            "duration_sec": 30,
                            "seed": seed,
                            "priority": "high",
                        },
                    )
                proc.wait_notification("generation_started", timeout=120, backend="musicgen")
                t0 = time.monotonic()
                mg = {m: _summary(_latencies(proc, m, n)) for m in ("ping", "status")}
                running = proc.call("queue_status")["running"]
                mg["generating_throughout"] = running is not None and running["backend"] == "musicgen"
                mg["measure_sec"] = round(time.monotonic() - t0, 2)
                mg["model_dir"] = str(musicgen_dir)
                result["playing_and_generating_musicgen"] = mg
                result["still_playing_after_musicgen"] = proc.call("status")["playback"]["state"] == "playing"
            proc.call("shutdown")
            proc.proc.wait(10)
            idle = result["idle"]["ping"]["p50_ms"]
            result["ratio_p50_to_idle"] = {
                k: round(result[k]["ping"]["p50_ms"] / idle, 2)
                for k in ("playing", "playing_and_generating", "playing_and_generating_musicgen")
                if k in result
            }
            result["generator"] = "tone test backend (sleep-paced steps; no model CPU load)"
            return result
        finally:
            pulse.stop()


# -------------------------------------------------------------------------------- time to first sound


def bench_streaming(speeds: list[float]) -> dict:
    """Play-while-generating: a generator producing audio at `speed` × real time in 1 s chunks (MusicGen's
    decoder emits audio per window); the player starts the stream once it can play through without running dry.
    Simulated clock: measures the player's start rule and the mixer, not a model."""
    from lofi_daemon.audio.player import Player
    from lofi_daemon.cache.store import TrackStore

    from tests.playback_helpers import ManualOutput, Recorder

    out = {}
    for speed in speeds:
        with tempfile.TemporaryDirectory() as d:
            holder = {}
            player = Player(
                TrackStore(Path(d)),
                Recorder(),
                start_thread=False,
                output_factory=lambda r, dev, holder=holder: holder.setdefault(
                    "o", ManualOutput(r, dev, rate=RATE, block=BLOCK)
                ),
            )
            o = holder["o"]
            duration, sr = 30.0, 32000
            sim = {"now": 0.0}
            player.clock = lambda sim=sim: sim["now"]  # the generator's pace is simulated: so is the clock
            stream = player.stream("s" * 16, sr, 1, duration_sec=duration)
            chunk = sr  # 1 s of audio per chunk
            clock, produced, first_sound, silent_after_start = 0.0, 0, None, 0
            next_chunk_at = 1.0 / speed
            total = int(duration * sr)
            while True:
                step = BLOCK / RATE
                clock += step
                sim["now"] = clock
                if produced < total and clock >= next_chunk_at:
                    n = min(chunk, total - produced)
                    stream.push(np.full((n, 1), 0.25, np.float32))
                    produced += n
                    next_chunk_at += 1.0 / speed
                    if produced >= total:
                        stream.finish()
                player.poll()
                block = o.pump(step)
                loud = bool(np.abs(block).max() > 0)
                if first_sound is None and loud:
                    first_sound = clock
                elif first_sound is not None and not loud and player.mixer.state == "playing":
                    silent_after_start += 1
                if player.mixer.state == "stopped" and first_sound is not None:
                    break
                if clock > 10 * duration / min(speed, 1.0):
                    break
            player.close()
            out[f"{speed:g}x_realtime"] = {
                "generation_sec": round(duration / speed, 2),
                "time_to_first_sound_sec": round(first_sound, 2) if first_sound is not None else None,
                "underrun_blocks_after_start": silent_after_start,
            }
    return out


def bench_ttfs_musicgen(model_dir: Path, durations: list[float]) -> dict:
    """Real play-while-generating: the MusicGen backend streams `on_audio` chunks into the player, which plays
    them on an output paced in real time (a thread pulling 512-frame blocks on the clock). Time to first
    sound and total generation time are wall-clock seconds from the start of `generate`."""
    import importlib.util
    import threading

    if importlib.util.find_spec("lofi_daemon.backends.musicgen.streaming") is None:
        return {"skipped": "MusicGen streaming (backends/musicgen/streaming.py) is not in this checkout"}
    from lofi_daemon.audio.player import Player
    from lofi_daemon.backends.base import GenerationRequest, track_id_for
    from lofi_daemon.backends.musicgen.backend import MusicGenBackend
    from lofi_daemon.cache.store import TrackStore
    from lofi_daemon.cancel import CancelToken
    from lofi_daemon.config import Settings

    from tests.playback_helpers import ManualOutput, Recorder

    class PacedOutput(ManualOutput):
        """Pulls audio in real time like a sound card and notes when the first non-silent block came out."""

        def __init__(self, render, device=None):
            super().__init__(render, device, rate=RATE, block=BLOCK)
            self.first_sound_at: float | None = None
            self.silent_blocks_after_first = 0
            self._stop = threading.Event()
            threading.Thread(target=self._run, daemon=True).start()

        def _run(self):
            buf = np.zeros((BLOCK, 2), np.float32)
            period, due = BLOCK / RATE, time.perf_counter()
            while not self._stop.is_set():
                due += period
                if self.active:
                    self._render(buf)
                    loud = bool(np.abs(buf).max() > 0)
                    if loud and self.first_sound_at is None:
                        self.first_sound_at = time.perf_counter()
                    elif not loud and self.first_sound_at is not None:
                        self.silent_blocks_after_first += 1
                time.sleep(max(0.0, due - time.perf_counter()))

        def close(self):
            super().close()
            self._stop.set()

    settings = Settings.from_env({"LOFI_MUSICGEN_DIR": str(model_dir), "LOFI_PROVIDER": "cpu"})
    backend = MusicGenBackend(settings, lambda m, p: None)
    t = time.perf_counter()
    backend.load()
    result: dict = {"model_dir": str(model_dir), "load_sec": round(time.perf_counter() - t, 2)}
    with tempfile.TemporaryDirectory() as d:
        for duration in durations:
            holder: dict = {}
            player = Player(
                TrackStore(Path(d)),
                Recorder(),
                output_factory=lambda r, dev, holder=holder: holder.setdefault("o", PacedOutput(r, dev)),
            )
            out = holder["o"]
            req = GenerationRequest("musicgen", "lofi bench", duration, 1, backend.validate({}))
            tid = track_id_for(req, backend.model_version())
            t0 = time.perf_counter()
            with player.streaming(tid, backend.sample_rate, backend.channels, duration) as on_audio:
                backend.generate(req, lambda *a, **k: None, CancelToken(), on_audio=on_audio)
            total = time.perf_counter() - t0
            deadline = time.perf_counter() + duration + 5
            while out.first_sound_at is None and time.perf_counter() < deadline:
                time.sleep(0.01)
            first = None if out.first_sound_at is None else out.first_sound_at - t0
            gaps_during_generation = out.silent_blocks_after_first
            player.close()
            result[f"{duration:g}s_track"] = {
                "generation_sec": round(total, 2),
                "time_to_first_sound_sec": None if first is None else round(first, 2),
                "realtime_factor": round(duration / total, 2),
                "silent_blocks_after_first_sound": gaps_during_generation,
            }
    return result


# ---------------------------------------------------------------------------------------------- main


def table(res: dict) -> str:
    lines = ["| measurement | value |", "|---|---|"]
    m = res["mixer"]
    for k, v in m["cpu_percent_of_one_core"].items():
        ratio = m["ratio_to_reference"].get(k)
        lines.append(
            f"| mixer CPU, {k} | {v:.3f} % of one core" + (f" ({ratio}× reference)" if ratio else "") + " |"
        )
    dev = res.get("device_cpu", {})
    if "cpu_percent_of_one_core" in dev:
        lines.append(
            f"| real audio path CPU (PortAudio→ALSA, player) | {dev['cpu_percent_of_one_core']:.3f} % of one core |"
        )
    rpc = res.get("rpc")
    if rpc:
        for phase in ("idle", "playing", "playing_and_generating", "playing_and_generating_musicgen"):
            if phase not in rpc:
                continue
            for meth in ("ping", "status"):
                s = rpc[phase][meth]
                lines.append(
                    f"| RPC {meth} {phase.replace('_', ' ')} | p50 {s['p50_ms']} ms, p99 {s['p99_ms']} ms |"
                )
    for k, v in (res.get("streaming_musicgen") or {}).items():
        if isinstance(v, dict):
            lines.append(
                f"| MusicGen streamed, {k}: first sound / generation | {v['time_to_first_sound_sec']} s / "
                f"{v['generation_sec']} s ({v['realtime_factor']}× real time) |"
            )
        elif k == "skipped":
            lines.append(f"| MusicGen streamed | skipped: {v} |")
    for k, v in (res.get("streaming") or {}).items():
        lines.append(
            f"| stream {k}: first sound / generation | {v['time_to_first_sound_sec']} s / {v['generation_sec']} s "
            f"(underruns: {v['underrun_blocks_after_start']}) |"
        )
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", type=Path)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--child-device-cpu", nargs=2, metavar=("TMP", "SECONDS"))
    ap.add_argument("--skip-rpc", action="store_true")
    ap.add_argument(
        "--musicgen-dir",
        type=Path,
        help="MusicGen ONNX dir to generate with while measuring RPC "
        "(default: the tiny test fixture; a full-size model gives realistic CPU contention)",
    )
    args = ap.parse_args()
    if args.child_device_cpu:
        print(json.dumps(child_device_cpu(Path(args.child_device_cpu[0]), float(args.child_device_cpu[1]))))
        return 0
    audio_sec = 20.0 if args.quick else 120.0
    res = {"mixer": bench_mixer(audio_sec), "device_cpu": bench_device_cpu(60.0 if args.quick else 600.0)}
    if not args.skip_rpc:
        mg = args.musicgen_dir
        if mg is None and (ROOT / "tests" / "fixtures" / "musicgen-tiny" / "config.json").exists():
            mg = ROOT / "tests" / "fixtures" / "musicgen-tiny"
        res["rpc"] = bench_rpc(100 if args.quick else 500, mg)
    from lofi_daemon.audio.player import Player

    if hasattr(Player, "stream"):
        res["streaming"] = bench_streaming([0.5, 1.0, 2.0, 8.0])
        mg = args.musicgen_dir or ROOT / "tests" / "fixtures" / "musicgen-tiny"
        if (mg / "config.json").exists():
            res["streaming_musicgen"] = bench_ttfs_musicgen(mg, [10.0] if args.quick else [10.0, 30.0])
    res["machine"] = machine_info()
    text = json.dumps(res, indent=2)
    if args.json:
        args.json.write_text(text + "\n")
    print(text)
    print()
    print(table(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
