"""Prefetch: the trigger rule, the three strategies, and whole sessions where the music never stops."""

from __future__ import annotations

import random
import threading
import time

import numpy as np
import pytest
from lofi_daemon.audio.player import Player
from lofi_daemon.cache.store import TrackStore
from lofi_daemon.errors import LofiError
from lofi_daemon.jobs.prefetch import DEFAULT_PRESETS, PrefetchConfig, Prefetcher

from tests.playback_helpers import ManualOutput, Recorder, dominant_freq, put_track, sine

DEV_RATE = 16000
GEN_RATE = 16000


class Harness:
    """Prefetcher wired to simple callables, like the daemon wires it."""

    def __init__(self, **config):
        self.enqueued: list[tuple[dict, str]] = []
        self.busy = False
        self.next = False
        self.tracks = {
            "cur": {
                "prompt": "rainy jazz",
                "backend": "musicgen",
                "duration_sec": 30.02,
                "params": {"guidance_scale": 4.0, "top_k": 100},
            }
        }
        self.p = Prefetcher(
            lambda req, priority: self.enqueued.append((req, priority)),
            track_info=self.tracks.get,
            queue_busy=lambda: self.busy,
            has_next=lambda: self.next,
            config=PrefetchConfig(**config),
            rng=random.Random(3),
        )


def test_triggers_once_past_the_threshold_at_prefetch_priority():
    h = Harness()
    h.p.on_progress("cur", 14.9, 30.0)
    assert h.enqueued == []
    h.p.on_progress("cur", 15.0, 30.0)
    h.p.on_progress("cur", 20.0, 30.0)
    assert len(h.enqueued) == 1
    req, priority = h.enqueued[0]
    assert priority == "prefetch"
    assert req["prompt"] == "rainy jazz" and req["backend"] == "musicgen" and req["duration_sec"] == 30.0
    assert req["guidance_scale"] == 4.0 and req["top_k"] == 100  # same settings, new seed
    assert 0 <= req["seed"] < 2**32
    # the same track starting again (loop, replay) re-arms the trigger
    h.p.on_progress("cur", 1.0, 30.0)
    h.p.on_progress("cur", 16.0, 30.0)
    assert len(h.enqueued) == 2 and h.enqueued[1][0]["seed"] != req["seed"]


def test_no_prefetch_while_something_is_queued_or_next_is_ready_or_disabled():
    h = Harness()
    h.busy = True
    h.p.on_progress("cur", 20.0, 30.0)
    h.busy, h.next = False, True
    h.p.on_progress("cur", 21.0, 30.0)
    h.next = False
    h.p.configure(enabled=False)
    h.p.on_progress("cur", 22.0, 30.0)
    assert h.enqueued == []
    h.p.configure(enabled=True, trigger_percent=80)
    h.p.on_progress("cur", 22.0, 30.0)
    assert h.enqueued == []
    h.p.on_progress("cur", 24.0, 30.0)
    assert len(h.enqueued) == 1


def test_preset_cycle_keeps_its_order_across_tracks():
    h = Harness(strategy="preset_cycle", presets=["a", "b", "c"])
    prompts = []
    for i in range(7):
        tid = f"t{i}"
        h.tracks[tid] = {"prompt": "x", "backend": "musicgen", "duration_sec": 10}
        h.p.on_progress(tid, 6, 10)
        prompts.append(h.enqueued[-1][0]["prompt"])
    assert prompts == ["a", "b", "c", "a", "b", "c", "a"]


def test_random_preset_never_repeats_immediately():
    h = Harness(strategy="random_preset", presets=["a", "b", "c"])
    prompts = []
    for i in range(60):
        h.tracks[f"t{i}"] = {"prompt": "x", "backend": "musicgen", "duration_sec": 10}
        h.p.on_progress(f"t{i}", 6, 10)
        prompts.append(h.enqueued[-1][0]["prompt"])
    assert all(a != b for a, b in zip(prompts, prompts[1:], strict=False))
    assert set(prompts) == {"a", "b", "c"}


def test_config_validation_and_defaults():
    h = Harness()
    cfg = h.p.configure()
    assert cfg == {
        "enabled": True,
        "strategy": "same_prompt",
        "presets": DEFAULT_PRESETS,
        "trigger_percent": 50.0,
    }
    assert all("lofi" in p for p in DEFAULT_PRESETS)
    for bad in ({"strategy": "shuffle"}, {"trigger_percent": 120}, {"presets": ["  "]}):
        with pytest.raises(LofiError):
            h.p.configure(**bad)


class FakeGenerator:
    """Test double for the queue + worker + backend: a request becomes a cached track after `gen_sec` of
    (simulated) playback time, then `generation_complete` reaches the player, like the daemon's worker."""

    def __init__(self, store, player, gen_sec: float) -> None:
        self.store, self.player, self.gen_sec = store, player, gen_sec
        self.pending: list[tuple[dict, float]] = []
        self.clock = 0.0
        self.made: list[tuple[str, dict]] = []

    def enqueue(self, request: dict, priority: str = "prefetch") -> None:
        assert priority == "prefetch"
        self.pending.append((request, self.clock + self.gen_sec))

    def tick(self, seconds: float) -> None:
        self.clock += seconds
        for item in list(self.pending):
            request, ready_at = item
            if self.clock >= ready_at:
                self.pending.remove(item)
                freq = 200 + 100 * (len(self.made) + 1)
                t = put_track(
                    self.store, request["prompt"], sine(freq, 4.0, GEN_RATE), GEN_RATE, seed=request["seed"]
                )
                self.made.append((t.track_id, request))
                self.player.on_generation_complete({"track_id": t.track_id})


def session(tmp_path, strategy: str, gen_sec: float, seconds: float):
    store = TrackStore(tmp_path / "tracks")
    rec = Recorder()
    holder = {}
    player = Player(
        store,
        rec,
        start_thread=False,
        volume=1.0,
        crossfade_sec=1.0,
        output_factory=lambda render, dev: holder.setdefault("out", ManualOutput(render, dev, rate=DEV_RATE)),
    )
    out = holder["out"]
    gen = FakeGenerator(store, player, gen_sec)
    prefetch = Prefetcher(
        gen.enqueue,
        track_info=lambda tid: store.get(tid).to_dict(),
        queue_busy=lambda: bool(gen.pending),
        has_next=lambda: bool(player.mixer.upcoming),
        config=PrefetchConfig(strategy=strategy, presets=["p1", "p2", "p3"]),
        rng=random.Random(7),
    )
    player.more_coming = lambda: prefetch.enabled or bool(gen.pending)
    player.progress_listeners.append(prefetch.on_progress)
    first = put_track(store, "first prompt", sine(200, 4.0, GEN_RATE), GEN_RATE, seed=5)
    player.play(first.track_id)

    def poll():
        gen.tick(out.block / DEV_RATE)
        player.poll()

    audio = out.pump(seconds, poll)
    player.close()
    store.close()
    return audio, rec, gen, first


@pytest.mark.parametrize("strategy", ["same_prompt", "preset_cycle", "random_preset"])
def test_three_track_session_has_no_gap_and_follows_the_strategy(tmp_path, strategy):
    # 4 s tracks, 1 s crossfades (a track hands over 3 s after it starts); prefetch starts at 2 s and takes
    # 0.5 s, so each next track is ready half a second before it is needed
    audio, rec, gen, first = session(tmp_path, strategy, gen_sec=0.5, seconds=12.5)
    mono = audio[:, 0]
    rms = np.sqrt(np.mean(mono[: (len(mono) // 400) * 400].reshape(-1, 400) ** 2, axis=1))
    assert rms[1:].min() > 0.25  # never silent, never a dip (equal-power crossfades of unrelated tones)
    started = [p["track_id"] for p in rec.of("playback_started")]
    assert started[:4] == [first.track_id] + [tid for tid, _ in gen.made[:3]]
    assert not [p for p in rec.of("log") if p["level"] == "warning"]  # never had to repeat a track
    # the tones change in order: 200 Hz, then 300, 400, 500 (one per generated track)
    for k, freq in enumerate((200, 300, 400, 500)):
        seg = mono[int((0.5 + 3 * k) * DEV_RATE) : int((2.5 + 3 * k) * DEV_RATE)]
        assert abs(dominant_freq(seg, DEV_RATE) - freq) < 3
    prompts = [req["prompt"] for _, req in gen.made[:3]]
    seeds = [req["seed"] for _, req in gen.made[:3]]
    if strategy == "same_prompt":
        assert prompts == ["first prompt"] * 3 and len(set(seeds + [5])) == 4
    elif strategy == "preset_cycle":
        assert prompts == ["p1", "p2", "p3"]
    else:
        assert all(a != b for a, b in zip(prompts, prompts[1:], strict=False))


def test_slow_generation_repeats_the_current_track_and_warns_once(tmp_path):
    # generation takes 5 s but only 2 s are left when it starts: the first track repeats (no silence), once
    audio, rec, gen, first = session(tmp_path, "same_prompt", gen_sec=5.0, seconds=12.0)
    mono = audio[:, 0]
    rms = np.sqrt(np.mean(mono[: (len(mono) // 400) * 400].reshape(-1, 400) ** 2, axis=1))
    assert rms[1:].min() > 0.25
    warnings = [p for p in rec.of("log") if p["level"] == "warning"]
    assert len(warnings) == 1 and "repeating" in warnings[0]["message"]
    started = [p["track_id"] for p in rec.of("playback_started")]
    assert started[:2] == [first.track_id, gen.made[0][0]]


class _CachedOnlyBackend:
    """Just what `build_job` asks of a backend; generating is never reached."""

    name = "musicgen"
    min_duration_sec, max_duration_sec, default_duration_sec = 1.0, 30.0, 10.0

    def validate(self, raw):
        return {"guidance_scale": 3.0}

    def model_version(self):
        return "test-v1"


def test_prefetch_cache_hit_is_announced_like_every_finished_track(tmp_path):
    """A prefetch whose track is already cached reaches the player the one way every finished track does: a
    `generation_complete` notification (cached), not a direct call into the player."""
    from lofi_daemon.config import Settings
    from lofi_daemon.jobs.api import make_enqueue
    from lofi_daemon.jobs.queue import JobQueue

    store = TrackStore(tmp_path / "tracks")
    track = put_track(store, "rain", sine(300, 4.0, GEN_RATE), GEN_RATE, seed=5)
    queue = JobQueue()
    rec = Recorder()
    settings = Settings(cache_dir=tmp_path / "cache", log_dir=tmp_path / "log", default_backend="musicgen")
    enqueue = make_enqueue({"musicgen": _CachedOnlyBackend()}, settings, store, queue, rec)
    reply = enqueue({"prompt": "rain", "backend": "musicgen", "duration_sec": 4.0, "seed": 5})
    assert reply == {"track_id": track.track_id, "status": "cached"}
    [done] = rec.of("generation_complete")
    assert done["track_id"] == track.track_id and done["cached"] is True and done["path"] == track.path
    assert not queue.busy  # nothing to generate
    store.close()


class _ConnectingBackend(_CachedOnlyBackend):
    """A remote generator whose link is still connecting: its track identity waits for `ready`."""

    def __init__(self):
        self.ready = threading.Event()

    def identity_waits(self):
        return not self.ready.is_set()

    def wait_identity(self, cancel):
        while not self.ready.wait(0.05):
            cancel.check()

    def model_version(self):
        assert self.ready.is_set(), "the identity was asked for before the handshake"
        return "remote-v1"

    def is_installed(self):
        return True


def test_prefetch_never_waits_for_a_remote_handshake_on_the_players_thread(tmp_path):
    """The player calls prefetch from its control thread, which also starts the next track: a remote link still
    connecting must not hold it. The request is queued once the handshake is done."""
    from lofi_daemon.config import Settings
    from lofi_daemon.jobs.api import make_enqueue
    from lofi_daemon.jobs.queue import JobQueue

    from tests.daemon_client import CEILING

    store = TrackStore(tmp_path / "tracks")
    queue = JobQueue()
    rec = Recorder()
    backend = _ConnectingBackend()
    settings = Settings(cache_dir=tmp_path / "cache", log_dir=tmp_path / "log", default_backend="musicgen")
    enqueue = make_enqueue({"musicgen": backend}, settings, store, queue, rec)
    returned = threading.Event()
    replies = []

    def player_thread():
        replies.append(enqueue({"prompt": "rain", "backend": "musicgen", "duration_sec": 4.0, "seed": 5}))
        returned.set()

    threading.Thread(target=player_thread, daemon=True).start()
    assert returned.wait(CEILING), "enqueue waited for the handshake"
    assert replies == [{"track_id": None, "status": "connecting"}]
    assert not queue.busy
    backend.ready.set()
    deadline = time.monotonic() + CEILING
    while not queue.busy and time.monotonic() < deadline:
        time.sleep(0.01)
    [job] = queue.waiting()
    assert job.request.prompt == "rain" and job.request.seed == 5 and job.priority == "prefetch"
    store.close()
