"""The player: playlist, commands and notifications around the mixer and the sound device.

Threads: RPC handlers and the generation worker call the command methods; the device callback only calls
`Mixer.render`; a control thread (`poll`, every 50 ms) turns mixer events into notifications, keeps the next two
tracks decoded and queued in the mixer, reports position (≤ 1/s), tells progress listeners (prefetch) where the
track is, stops the device when nothing is audible and notices a device that went away. Lock order: player lock,
then mixer lock; the callback takes only the mixer lock.

Beside it: `stream.py` (a track played while it is generated, and when it may start), `playlist.py` (which
tracks come next), `mixer.py` (voices and crossfades), `output.py` (the PortAudio device).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from ..errors import ErrorCode, LofiError
from ..ports import Store
from .live import LiveStream
from .mixer import DEFAULT_CROSSFADE_SEC, END_LOOP, END_STOP, Mixer, Source
from .output import CHANNELS, DeviceOutput, Render
from .player_lock import PlayerLock
from .playlist import LOOP_MODES, LoopMode, remove, upcoming
from .resample import to_device
from .stream import TrackStream

log = logging.getLogger(__name__)

Notify = Callable[[str, dict[str, Any]], None]
POLL_SEC = 0.05
POSITION_EVERY_SEC = 1.0
IDLE_STOP_SEC = 0.5  # stop pulling from the device this long after the last audible sample
UPCOMING = 2  # tracks decoded and queued ahead of the current one
LIVE_LOW_WATER_SEC = 0.5  # a live stream this close to running dry (beyond the crossfade) is bridged


class Player:
    def __init__(
        self,
        store: Store,
        notify: Notify,
        *,
        device: int | str | None = None,
        volume: float = 0.3,
        crossfade_sec: float = DEFAULT_CROSSFADE_SEC,
        loop: LoopMode = "off",
        auto_play: bool = True,
        output_factory: Callable[[Render, int | str | None], Any] | None = None,
        start_thread: bool = True,
        lock: PlayerLock | None = None,
        more_coming: Callable[[], bool] = lambda: False,
        progress_listeners: Iterable[Callable[[str, float, float], None]] = (),
    ) -> None:
        self.store = store
        # one player per machine (player_lock.py); None: this player never defers to another
        self.lock = lock
        self._giving_way: int | None = None  # pid of the player this one is making room for
        self._deferred: set[str] = set()  # tracks auto-play left waiting for another player (said once each)
        self.notify = notify
        self.auto_play = auto_play
        # play a track while it is generated (backends that stream); off = start when it is complete
        self.stream_while_generating = True
        self.loop: LoopMode = loop
        factory = output_factory or (lambda render, dev: DeviceOutput(render, dev))
        self.output = factory(self._render, device)
        self.mixer = Mixer(self.output.probe_rate(), CHANNELS, volume=volume)
        self.mixer.crossfade_sec = crossfade_sec
        self.playlist: list[str] = []
        self.index = -1  # playlist position of the current track (-1: none)
        # True when more music is on its way (a generation queued/running, or prefetch on): at the end of the
        # playlist the current track then repeats instead of stopping.
        self.more_coming = more_coming
        # prefetch: fn(track_id, position_sec, duration_sec), called from the control thread
        self.progress_listeners = list(progress_listeners)
        self.device_error: str | None = None
        self._lock = threading.RLock()
        self._sources: dict[str, Source] = {}
        self._streams: dict[str, TrackStream] = {}
        self.clock: Callable[[], float] = time.monotonic  # wall clock for stream pacing (tests simulate it)
        self._autostart: str | None = None  # a stream to start as soon as it can
        # the radio's endless stream (live.py) and what the player does with it: "buffering" (not started yet),
        # "playing", "bridging" (a cached track plays while the generator catches up); on_user_end: the user took
        # playback away from it (stop, or played something else)
        self._live: LiveStream | None = None
        self._live_state = "buffering"
        self._live_on_user_end: Callable[[], None] | None = None
        self._live_warned = False
        self._durations: dict[str, float] = {}
        # A user's stop is final until the user plays again: auto-play, prefetch completions and failed commands
        # never clear it. Only `play`/`resume`/`toggle`/`skip` that succeed do, and a track the user asked to
        # generate (`_requested`) may still start by itself: that generate was the user's request to hear it.
        self._user_stopped = False
        self._requested: set[str] = set()
        # plays of a track that is still being generated (not in the cache yet): recorded when it is stored
        self._unrecorded_plays: dict[str, int] = {}
        self._warned_repeat: str | None = None
        self._last_position = 0.0
        self._silent_since: float | None = None
        self._stop_thread = threading.Event()
        self._thread: threading.Thread | None = None
        if start_thread:
            self._thread = threading.Thread(target=self._run, name="playback-control", daemon=True)
            self._thread.start()

    # ----------------------------------------------------------------------------------------- queries

    def _render(self, out: np.ndarray) -> None:
        self.mixer.render(out)

    @property
    def is_playing(self) -> bool:
        return self.mixer.state == "playing"

    def _duration(self, track_id: str | None) -> float | None:
        if track_id is None:
            return None
        src = self._sources.get(track_id)
        if src is not None and src.complete:
            return src.length / self.mixer.rate
        stream = self._streams.get(track_id)
        if stream is not None and stream.duration_sec:
            return float(stream.duration_sec)
        return self._durations.get(track_id)

    def state(self) -> dict[str, Any]:
        with self._lock:  # a consistent snapshot (commands and the control step hold this lock)
            return self._state()

    def _state(self) -> dict[str, Any]:
        m = self.mixer
        tid = m.track_id
        return {
            "state": m.state,
            "track_id": tid,
            "position_sec": round(m.position_frames / m.rate, 3),
            "duration_sec": self._duration(tid),
            "volume": round(m.volume, 4),
            "loop": self.loop,
            "crossfade_sec": m.crossfade_sec,
            "device_error": self.device_error,
            # another lofi daemon has the sound (one player per machine): its pid
            "playing_elsewhere": self.lock.holder()
            if self.lock is not None and m.state != "playing"
            else None,
        }

    def protected_ids(self) -> list[str]:
        """Tracks the cache must not evict: the playlist and whatever is sounding."""
        ids = list(self.playlist)
        if self.mixer.track_id:
            ids.append(self.mixer.track_id)
        return ids

    def has_next(self) -> bool:
        """A next track is already decoded and queued after the current one."""
        return bool(self.mixer.upcoming)

    def holds(self, track_id: str) -> bool:
        """`track_id` is in the playlist."""
        return track_id in self.playlist

    # ----------------------------------------------------------------------------------------- cache

    def release(self, track_id: str, delete: Callable[[], bool]) -> bool:
        """Let the cache delete `track_id`: refused (CACHE_ERROR) while it plays; once `delete()` removed it, it
        leaves the playlist too. Returns what `delete()` returned. One lock: it cannot start meanwhile."""
        with self._lock:
            if self.mixer.track_id == track_id:
                raise LofiError(
                    ErrorCode.CACHE_ERROR,
                    f"track {track_id} is playing; stop or skip it first",
                    track_id=track_id,
                )
            if not delete():
                return False
            if track_id in self.playlist:
                self.playlist_remove(track_id)
            return True

    def release_all(self, clear: Callable[[set[str]], int]) -> tuple[int, set[str]]:
        """Let the cache clear itself, keeping the playlist and what sounds: `clear(keep)` returns how many tracks
        it removed; playlist entries no longer in the cache leave the playlist. Returns (removed, keep)."""
        with self._lock:
            keep = set(self.protected_ids())
            removed = clear(keep)
            for tid in list(self.playlist):
                if self.store.get(tid) is None:
                    self.playlist_remove(tid)
            return removed, keep

    # ----------------------------------------------------------------------------------------- sources

    def _load(self, track_id: str) -> Source:
        src = self._sources.get(track_id)
        if src is not None:
            return src
        if track_id in self._streams:
            return self._streams[track_id].source
        track = self.store.require(track_id)
        samples, sr = self.store.read_audio(track_id)
        seamless = bool(track.params.get("loop"))  # made as a loop: it repeats without a crossfade
        audio = to_device(samples, sr, self.mixer.rate, CHANNELS, circular=seamless)
        src = Source(track_id, audio, seamless=seamless)
        self._sources[track_id] = src
        self._durations[track_id] = track.duration_sec
        return src

    def _upcoming_ids(self) -> list[str]:
        return upcoming(self.playlist, self.index, self.mixer.track_id, self.loop, UPCOMING)

    def _refresh(self) -> None:
        """Queue the next tracks in the mixer, set the end policy and drop decoded audio nobody needs."""
        cur = self.mixer.track_id
        if cur in self.playlist and not (
            0 <= self.index < len(self.playlist) and self.playlist[self.index] == cur
        ):
            self.index = self.playlist.index(cur)  # the mixer moved on before its event was handled
        wanted: list[Source] = []
        for tid in self._upcoming_ids() if self._live is None else []:
            stream = self._streams.get(tid)
            if stream is not None and not stream.can_start():
                break  # not safe to move on to it yet: the current track repeats meanwhile
            try:
                wanted.append(self._load(tid))
            except LofiError as e:
                log.warning("cannot queue %s: %s", tid, e.message)
                self._drop_from_playlist(tid)
                return self._refresh()
        if [s.track_id for s in wanted] != [s.track_id for s in self.mixer.upcoming] or any(
            a is not b for a, b in zip(wanted, self.mixer.upcoming, strict=False)
        ):
            self.mixer.queue_next(*wanted)
        policy = (
            END_LOOP
            if (self.loop != "off" or self._streams or self._live is not None or self._more_coming())
            else END_STOP
        )
        if self.mixer.end_policy != policy:
            self.mixer.end_policy = policy
        keep = {s.track_id for s in wanted} | set(filter(None, [self.mixer.track_id, self._autostart]))
        keep |= set(self._streams)
        for tid in list(self._sources):
            if tid not in keep:
                del self._sources[tid]  # a fading voice keeps its own reference until it is done

    def _more_coming(self) -> bool:
        try:
            return bool(self.more_coming())
        except Exception:  # noqa: BLE001 - a hook must never break playback
            log.exception("more_coming hook failed")
            return False

    def _drop_from_playlist(self, track_id: str) -> None:
        self.index = remove(self.playlist, self.index, track_id, self.mixer.track_id)

    # ----------------------------------------------------------------------------------------- device

    def _ensure_output(self) -> None:
        """Start pulling audio. On failure the mixer is paused (position kept) and AUDIO_DEVICE_ERROR raised.
        Takes the player lock first, asking another daemon that plays to give way (the user's play wins)."""
        if self.lock is not None and not self.lock.held:
            try:
                self.lock.acquire()
            except LofiError:
                self.mixer.pause()
                raise
        if self.output.failed.is_set() or self.device_error:
            self.output.close()
            self.output.reinitialise()
        try:
            self.output.start(self.mixer.rate)
        except LofiError as e:
            self.device_error = e.message
            self.mixer.pause()
            raise
        self.device_error = None
        self._silent_since = None

    def _on_device_failure(self) -> None:
        message = self.output.error or "the audio device failed"
        self.output.close()
        tid = self.mixer.track_id
        paused = self.mixer.pause()
        self.device_error = message
        if paused and tid:
            self.notify("playback_paused", {"track_id": tid, "position_sec": self.state()["position_sec"]})
        self.notify(
            "log",
            {
                "level": "error",
                "message": f"{message}; playback paused (AUDIO_DEVICE_ERROR)",
                "error_code": ErrorCode.AUDIO_DEVICE_ERROR.name,
            },
        )

    def devices(self) -> dict[str, Any]:
        with self._lock:
            return {"devices": self.output.devices(), "current": self.output.name}

    def set_device(self, device: int | str | None) -> dict[str, Any]:
        """Switch output device; playback carries on where it was (resampled if the rate differs)."""
        with self._lock:
            was_open = self.output.is_open
            self.output.close()
            self.output.reinitialise()
            old_device = self.output.device
            self.output.device = device
            try:
                info = self.output.resolve(device)
            except LofiError:
                self.output.device = old_device
                raise
            rate = int(info["default_samplerate"]) or self.mixer.rate
            if rate != self.mixer.rate:
                self._rebuild_mixer(rate)
            self.device_error = None
            if was_open and self.mixer.audible:
                self._ensure_output()
            return {"device": info["name"], "index": int(info["index"]), "sample_rate": rate, **self.state()}

    def _rebuild_mixer(self, rate: int) -> None:
        old = self.mixer
        tid, pos_sec, paused = old.track_id, old.position_frames / old.rate, old.state == "paused"
        new = Mixer(rate, CHANNELS, volume=old.volume)
        new.crossfade_sec = old.crossfade_sec
        self._sources.clear()  # decoded at the old rate
        self.mixer = new  # before loading: sources are resampled to self.mixer.rate
        for stream in self._streams.values():
            stream.retarget(rate)
        live = self._live
        if live is not None:
            live.retarget(old.rate, rate)
        if live is not None and tid == live.stream_id:
            new.play(live.source, crossfade=False)
            new.events.clear()
            if paused:
                new.pause()
        elif tid is not None:
            src = self._load(tid)
            new.play(src, crossfade=False)
            new.seek(int(pos_sec * rate))
            new.events.clear()
            if paused:
                new.pause()
        self._refresh()

    # ---------------------------------------------------------------------------------------- commands

    def play(self, track_id: str | None = None) -> dict[str, Any]:
        with self._lock:
            if track_id is None:
                if self.mixer.state == "paused":
                    return self.resume()
                if self.mixer.state == "playing":
                    return self.state()
                track_id = self._pick_start()
            if track_id not in self._streams:  # a track still being generated is not in the cache yet
                self.store.require(track_id)
            self._end_live_by_user(silence=False)  # the user chose another track: crossfade into it
            if track_id in self.playlist:
                self.index = self.playlist.index(track_id)
            else:
                self.index += 1
                self.playlist.insert(self.index, track_id)
            src = self._load(track_id)
            self.mixer.play(src, crossfade=self.mixer.state == "playing")
            self._user_stopped = False  # only now: a play that failed above leaves a user's stop in force
            self._refresh()
            self._ensure_output()
            return self.state()

    def _pick_start(self) -> str:
        if self.playlist:
            return self.playlist[self.index] if 0 <= self.index < len(self.playlist) else self.playlist[0]
        recent = self.store.list_tracks(limit=1, sort="created")
        if not recent:
            raise LofiError(
                ErrorCode.TRACK_NOT_FOUND, "nothing to play: the cache is empty; generate a track first"
            )
        return recent[0].track_id

    def pause(self) -> dict[str, Any]:
        with self._lock:
            if self.mixer.pause():
                self.notify("playback_paused", {"track_id": self.mixer.track_id, **self._pos()})
            return self.state()

    def resume(self) -> dict[str, Any]:
        with self._lock:
            if self.mixer.state == "stopped":
                return self.play()
            resumed = self.mixer.resume()
            self._user_stopped = False
            self._ensure_output()
            if resumed:
                self.notify("playback_resumed", {"track_id": self.mixer.track_id, **self._pos()})
            return self.state()

    def toggle(self) -> dict[str, Any]:
        with self._lock:
            return self.pause() if self.mixer.state == "playing" else self.play()

    def stop(self) -> dict[str, Any]:
        with self._lock:
            self._end_live_by_user()
            self._user_stopped = True
            self._requested.clear()  # silence wanted: tracks asked for earlier do not start by themselves either
            self.mixer.stop()
            self.index = -1  # the next `play` starts the playlist from the top
            self._poll_events()
            return self.state()

    def skip(self) -> dict[str, Any]:
        with self._lock:
            if self.mixer.track_id is None:
                raise LofiError(ErrorCode.TRACK_NOT_FOUND, "nothing is playing")
            self._refresh()
            if not self.mixer.skip():
                raise LofiError(ErrorCode.TRACK_NOT_FOUND, "no next track: the playlist ends here")
            self._user_stopped = False
            if self.mixer.state == "playing":
                self._ensure_output()
            self._poll_events()
            return self.state()

    def seek(self, position_sec: float) -> dict[str, Any]:
        with self._lock:
            if self.mixer.track_id is None:
                raise LofiError(ErrorCode.TRACK_NOT_FOUND, "nothing is playing")
            self.mixer.seek(int(round(position_sec * self.mixer.rate)))
            return self.state()

    def set_volume(self, level: float | None = None) -> dict[str, Any]:
        if level is not None:
            self.mixer.set_volume(level)
        return self.state()

    def set_loop(self, mode: LoopMode) -> dict[str, Any]:
        if mode not in LOOP_MODES:
            raise LofiError(ErrorCode.INVALID_PARAMS, f"loop must be one of {LOOP_MODES}")
        with self._lock:
            self.loop = mode
            self._refresh()
            return self.state()

    def set_crossfade(self, seconds: float) -> dict[str, Any]:
        self.mixer.set_crossfade(seconds)
        return self.state()

    def _pos(self) -> dict[str, Any]:
        s = self.state()
        return {"position_sec": s["position_sec"]}

    # ---------------------------------------------------------------------------------------- playlist

    def playlist_get(self) -> dict[str, Any]:
        with self._lock:
            return {
                "tracks": list(self.playlist),
                "current_index": self.index if self.mixer.track_id else None,
                "loop": self.loop,
            }

    def playlist_add(self, track_id: str, position: int | None = None) -> dict[str, Any]:
        with self._lock:
            if track_id not in self._streams:
                self.store.require(track_id)
            if track_id in self.playlist:
                self._drop_from_playlist(track_id)
            pos = len(self.playlist) if position is None else max(0, min(int(position), len(self.playlist)))
            self.playlist.insert(pos, track_id)
            if pos <= self.index:
                self.index += 1
            self._refresh()
            return self.playlist_get()

    def playlist_remove(self, track_id: str) -> dict[str, Any]:
        with self._lock:
            if track_id not in self.playlist:
                raise LofiError(ErrorCode.TRACK_NOT_FOUND, f"track {track_id} is not in the playlist")
            self._drop_from_playlist(track_id)
            self._refresh()
            return self.playlist_get()

    def playlist_clear(self) -> dict[str, Any]:
        """Empty the playlist; the track playing keeps playing (as the only entry)."""
        with self._lock:
            cur = self.mixer.track_id
            self.playlist = [cur] if cur else []
            self.index = 0 if cur else -1
            self._refresh()
            return self.playlist_get()

    # ------------------------------------------------------------------------------ daemon integration

    def on_generation_started(self, params: dict[str, Any]) -> None:
        """Subscriber of `generation_started`: a track the user asked for may auto-play even after a stop
        (a prefetch may not: it never ends a user's stop)."""
        if params.get("priority") != "prefetch" and params.get("track_id"):
            with self._lock:
                self._requested.add(params["track_id"])

    def _may_autostart(self, track_id: str) -> bool:
        """Auto-play may start `track_id` now: nothing plays, and no user stop is in force (or the user asked
        for this very track after stopping)."""
        if self._live is not None:
            return False  # the radio has the sound: finished tracks wait in the playlist
        return self.mixer.state == "stopped" and (not self._user_stopped or track_id in self._requested)

    def stream(
        self, track_id: str, sample_rate: int, channels: int, duration_sec: float | None = None
    ) -> TrackStream | None:
        """Play a track while it is generated (auto-play only; None when auto-play is off). It joins the
        playlist now and starts (or is crossfaded into) as soon as it can play through without a gap."""
        if not (self.auto_play and self.stream_while_generating):
            return None
        with self._lock:
            stream = TrackStream(
                track_id,
                sample_rate,
                channels,
                duration_sec,
                device_rate=lambda: self.mixer.rate,
                clock=lambda: self.clock(),
                on_done=self._stream_done,
            )
            self._streams[track_id] = stream
            if track_id not in self.playlist:
                self.playlist.append(track_id)
            if self._may_autostart(track_id):
                self._autostart = track_id
            self._refresh()
            return stream

    @contextmanager
    def streaming(
        self, track_id: str, sample_rate: int, channels: int, duration_sec: float | None = None
    ) -> Iterator[Callable[[np.ndarray], None] | None]:
        """For the generation worker: `with player.streaming(id, rate, ch, dur) as on_audio:
        backend.generate(..., on_audio=on_audio)`. Yields the chunk callback (None when auto-play is off);
        finishes the stream when the block ends normally, aborts it on any exception (cancel, failure)."""
        stream = self.stream(track_id, sample_rate, channels, duration_sec)
        try:
            yield stream.push if stream is not None else None
        except BaseException:
            if stream is not None:
                stream.abort()
            raise
        if stream is not None:
            stream.finish()

    def _stream_done(self, stream: TrackStream) -> None:
        with self._lock:
            if self._streams.get(stream.track_id) is not stream:
                return
            del self._streams[stream.track_id]
            if stream.source.length and not stream.aborted:
                self._sources[stream.track_id] = stream.source  # the same audio the cache now holds
            if stream.aborted and self.mixer.track_id != stream.track_id:
                self._drop_from_playlist(stream.track_id)
            if stream.aborted:
                self._requested.discard(stream.track_id)
                self._unrecorded_plays.pop(stream.track_id, None)  # it never reaches the cache
                if self._autostart == stream.track_id:
                    self._autostart = None
            self._refresh()

    def _start_pending_stream(self) -> None:
        tid = self._autostart
        if tid is None:
            return
        stream = self._streams.get(tid)
        if not self._may_autostart(tid):
            self._autostart = None
            return
        if stream is None:  # finished before it could start: it is a normal cached track now
            self._autostart = None
            if tid in self._sources:
                self._play_source(tid, self._sources[tid])
            return
        if stream.can_start():
            self._autostart = None
            self._play_source(tid, stream.source)

    def _play_source(self, track_id: str, src: Source) -> None:
        """Auto-play `track_id`, unless another daemon has the sound: auto-play never takes it away."""
        if track_id in self.playlist:
            self.index = self.playlist.index(track_id)
        if self.lock is not None and not self.lock.try_acquire():
            if track_id not in self._deferred:
                self._deferred.add(track_id)
                self.notify(
                    "log",
                    {
                        "level": "warning",  # the client shows warnings; the user must know why it is silent
                        "message": f"another lofi (pid {self.lock.holder() or '?'}, another Neovim?) is playing; "
                        "the new track waits in the playlist: play it to hear it here",
                    },
                )
            return
        self._requested.discard(track_id)
        self._user_stopped = False  # the user asked for this track (or never stopped)
        self.mixer.play(src, crossfade=False)
        self._refresh()
        try:
            self._ensure_output()
        except LofiError as e:
            self.notify("log", {"level": "warning", "message": f"cannot play {track_id}: {e.message}"})

    def on_generation_complete(self, params: dict[str, Any]) -> None:
        """Subscriber of `generation_complete`: auto-play adds the track to the playlist (and starts it when
        nothing is playing, unless the user stopped playback since)."""
        tid = params["track_id"]
        with self._lock:
            for _ in range(self._unrecorded_plays.pop(tid, 0)):
                self._record_play(tid)  # it was heard while it was generated; now the cache has it
            if not self.auto_play:
                self._requested.discard(tid)
                return
            if tid in self._streams or self.mixer.track_id == tid or self._autostart == tid:
                return  # streamed: already in the playlist (and maybe playing)
            try:
                if tid not in self.playlist:
                    self.playlist_add(tid)
                if self._may_autostart(tid):
                    self._play_source(tid, self._load(tid))
                self._requested.discard(tid)
            except LofiError as e:
                self.notify("log", {"level": "warning", "message": f"auto-play of {tid} failed: {e.message}"})

    # ------------------------------------------------------------------------- live stream (the radio)

    def live_start(
        self, stream_id: str, sample_rate: int, on_user_end: Callable[[], None] | None = None
    ) -> LiveStream:
        """An endless stream (the radio) that takes over the sound as soon as it can play without a gap,
        crossfading from whatever plays. Replaces any live stream there was. `on_user_end()` is called (under the
        player lock) when the user stops playback or plays a track instead."""
        with self._lock:
            self._drop_live()
            self._live = LiveStream(
                stream_id, sample_rate, device_rate=lambda: self.mixer.rate, clock=lambda: self.clock()
            )
            self._live_state = "buffering"
            self._live_on_user_end = on_user_end
            self._live_warned = False
            self._user_stopped = False  # starting the radio is the user's request to hear it
            self._autostart = None
            self._refresh()
            return self._live

    def live_stop(self) -> None:
        """End the live stream now (a de-click fade if it sounds); the playlist is left as it was."""
        with self._lock:
            self._drop_live()
            self._refresh()

    def live_status(self) -> dict[str, Any] | None:
        with self._lock:
            live = self._live
            if live is None:
                return None
            return {"state": self._live_state, "buffered_sec": round(live.ahead_sec, 2)}

    def _drop_live(self, silence: bool = True) -> None:
        """Forget the live stream; `silence`: stop it (or the bridge playing for it) now, else leave it sounding
        for the caller to crossfade away from."""
        live = self._live
        if live is None:
            return
        self._live = None
        self._live_on_user_end = None
        live.end()
        if not silence:
            return
        if self.mixer.current_source is live.source:
            self.mixer.stop()
            self._poll_events()
        elif self._live_state == "bridging" and self.mixer.track_id is not None:
            self.mixer.stop()  # the bridge was only there for the radio
            self._poll_events()

    def _end_live_by_user(self, silence: bool = True) -> None:
        if self._live is None:
            return
        callback = self._live_on_user_end
        self._drop_live(silence)
        if callback is not None:
            try:
                callback()
            except Exception:  # noqa: BLE001 - a hook must never break a command
                log.exception("live stream end hook failed")

    def _live_step(self) -> None:
        """Start the live stream once it can play through; bridge with a cached track before it runs dry, and
        come back (where it was left: the radio's music goes on from there) once it can play through again."""
        live = self._live
        if live is None:
            return
        sounding = self.mixer.current_source is live.source
        if self._live_state == "playing" and not sounding:
            if live.ended and self.mixer.track_id is None:
                self._live = None  # played out to the end
            return
        low = self.mixer.crossfade_sec + LIVE_LOW_WATER_SEC
        if self._live_state == "playing":
            if not live.ended and self.mixer.state != "paused" and live.ahead_sec < low:
                self._bridge(live)
            return
        # twice the low-water mark ahead before (re)starting: no flapping between the radio and a bridge
        if not live.can_play() or (not live.ended and live.ahead_sec < 2 * low):
            return
        if self.lock is not None and not self.lock.try_acquire():
            return  # another daemon has the sound; the user's play there wins
        self.mixer.play(live.source, crossfade=self.mixer.state == "playing", at=live.source.played)
        self._live_state = "playing"
        self._refresh()
        try:
            self._ensure_output()
        except LofiError as e:
            self.notify("log", {"level": "warning", "message": f"cannot play the radio: {e.message}"})

    def _bridge(self, live: LiveStream) -> None:
        """The generator fell behind: crossfade into a cached track (said once) instead of running dry."""
        source = None
        for track in self.store.list_tracks(limit=5, sort="created"):
            try:
                source = self._load(track.track_id)
                break
            except LofiError:
                continue
        if not self._live_warned:
            self._live_warned = True
            self.notify(
                "log",
                {
                    "level": "warning",
                    "message": "the radio is generating slower than real time"
                    + (
                        "; bridging with a cached track until it catches up"
                        if source
                        else " and there is no cached track to bridge with"
                    ),
                },
            )
        if source is None:
            return
        self.mixer.play(source, crossfade=True)
        self._live_state = "bridging"
        self._refresh()

    # --------------------------------------------------------------------------------- control loop

    def _run(self) -> None:
        while not self._stop_thread.wait(POLL_SEC):
            try:
                self.poll()
            except Exception:  # noqa: BLE001 - the control loop must survive anything
                log.exception("playback control step failed")

    def _poll_events(self) -> bool:
        """Turn mixer events into notifications. True if the current track changed."""
        changed = False
        while self.mixer.events:
            ev = self.mixer.events.popleft()
            kind, tid = ev[0], ev[1]
            if kind == "started":
                changed = True
                if tid in self.playlist:
                    self.index = self.playlist.index(tid)
                self._warned_repeat = None
                self._last_position = 0.0
                self.notify("playback_started", {"track_id": tid, "duration_sec": self._duration(tid)})
                self._record_play(tid)
            elif kind == "ended":
                changed = True
                self.notify("playback_ended", {"track_id": tid, "reason": ev[2]})
            elif kind == "looped":
                changed = True
                self._record_play(tid)  # it starts again from the top: heard once more
                if self.loop == "off" and self._warned_repeat != tid:
                    self._warned_repeat = tid
                    self.notify(
                        "log",
                        {
                            "level": "warning",
                            "message": "the next track is not ready yet; repeating the current one",
                        },
                    )
        return changed

    def _record_play(self, track_id: str) -> None:
        """A play counts when the track starts sounding, however it started (play, auto-play, playlist
        advance, loop or repeat)."""
        if self._live is not None and track_id == self._live.stream_id:
            return  # the radio is no track of the cache
        try:
            if not self.store.mark_played(track_id):  # still being generated (or deleted meanwhile)
                self._unrecorded_plays[track_id] = self._unrecorded_plays.get(track_id, 0) + 1
        except LofiError as e:
            log.warning("could not record play of %s: %s", track_id, e.message)

    def poll(self) -> None:
        """One control step (the control thread calls this every 50 ms; tests may call it directly)."""
        listeners: list[tuple[Callable[[str, float, float], None], tuple[str, float, float]]] = []
        with self._lock:
            if self.output.failed.is_set() and self.device_error is None:
                self._on_device_failure()
            self._give_way_if_asked()
            self._start_pending_stream()
            self._live_step()
            if self._poll_events() or self.mixer.track_id:
                self._refresh()
            tid = self.mixer.track_id
            now = time.monotonic()
            if tid is not None and self.mixer.state == "playing":
                pos = self.mixer.position_frames / self.mixer.rate
                dur = self._duration(tid) or 0.0
                if now - self._last_position >= POSITION_EVERY_SEC:
                    self._last_position = now
                    self.notify(
                        "playback_position",
                        {"track_id": tid, "position_sec": round(pos, 3), "duration_sec": dur},
                    )
                listeners = [(fn, (tid, pos, dur)) for fn in self.progress_listeners]
            # stop pulling from the device once nothing has been audible for a while (counted in rendered audio,
            # which is what the device consumed)
            rendered = self.mixer.frames_rendered
            if self.mixer.audible:
                self._silent_since = None
            elif self.output.active:
                if self._silent_since is None:
                    self._silent_since = rendered
                elif rendered - self._silent_since >= IDLE_STOP_SEC * self.mixer.rate:
                    self.output.stop()
            if self.lock is not None and self.lock.held and not self.output.active and not self.mixer.audible:
                self.lock.release()  # silent: another daemon may play now
        for fn, args in listeners:
            try:
                fn(*args)
            except Exception:  # noqa: BLE001
                log.exception("playback progress listener failed")

    def _give_way_if_asked(self) -> None:
        """Another daemon's user pressed play: stop as if our user had (nothing here restarts by itself),
        close the device so it is free, and let go of the lock."""
        if self.lock is None or not self.lock.held:
            return
        if self._giving_way is None:
            pid = self.lock.handover_requested()
            if pid is None:
                return
            self._giving_way = pid
            self._user_stopped = True
            self._autostart = None
            self.mixer.stop()  # a 10 ms de-click fade, rendered before the device is closed
            self.index = -1
            self._poll_events()
            self.notify(
                "log",
                {
                    "level": "warning",
                    "message": f"playback moved to another lofi (pid {pid}); play here to bring it back",
                },
            )
        if not self.mixer.audible:
            self.output.close()
            self.lock.release()
            self._giving_way = None

    def close(self) -> None:
        self._stop_thread.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(1.0)
        with self._lock:
            self.mixer.stop()
            self.output.close()
            if self.lock is not None:
                self.lock.release()
