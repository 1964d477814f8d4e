"""The track cache in one process: metadata, formats, listing, LRU eviction, favourites, repair and rebuild."""

from __future__ import annotations

import json
import os
import sqlite3
import time

import numpy as np
import pytest
import soundfile as sf
from lofi_daemon.cache import tags as tags_mod
from lofi_daemon.cache.store import TrackStore
from lofi_daemon.errors import ErrorCode, LofiError

from tests.playback_helpers import dominant_freq, put_track, sine

RATE = 32000


@pytest.fixture
def store(tmp_path):
    s = TrackStore(tmp_path / "tracks")
    yield s
    s.close()


def test_put_writes_audio_and_full_metadata(store):
    x = sine(440, 2.0, RATE)
    t = put_track(store, "rainy jazz", x, RATE, seed=7, params={"guidance_scale": 3.0, "top_k": 250})
    d = t.to_dict()
    assert set(d) >= {
        "track_id",
        "path",
        "prompt",
        "backend",
        "params",
        "seed",
        "duration_sec",
        "sample_rate",
        "channels",
        "format",
        "model_version",
        "generation_time_sec",
        "created_at",
        "last_played",
        "play_count",
        "favourite",
    }
    assert d["path"].endswith(f"{t.track_id}.flac") and d["format"] == "flac"
    assert d["seed"] == 7 and d["params"] == {"guidance_scale": 3.0, "top_k": 250}
    assert d["duration_sec"] == pytest.approx(2.0) and d["sample_rate"] == RATE and d["channels"] == 1
    assert d["last_played"] is None and d["play_count"] == 0 and d["favourite"] is False
    assert store.get(t.track_id).to_dict() == d
    y, sr = store.read_audio(t.track_id)
    assert sr == RATE and y.shape == (x.shape[0], 1)
    # 16-bit FLAC: libsndfile writes round(32767·x) and reads it back /32768, so |y - x| <= (|x| + 0.5) / 32768
    assert np.max(np.abs(y - x)) <= (np.abs(x).max() + 0.5) / 32768
    assert not list(store.root.glob(".tmp-*"))


@pytest.mark.parametrize("fmt", ["wav", "ogg", "mp3"])
def test_other_formats_on_request(store, fmt):
    t = put_track(store, f"{fmt} track", sine(1000, 1.5, RATE, channels=2), RATE, fmt=fmt)
    assert t.format == fmt and t.path.endswith("." + fmt)
    y, sr = store.read_audio(t.track_id)
    assert sr == RATE and y.shape[1] == 2
    assert abs(dominant_freq(y[:, 0], sr) - 1000) < 5


def test_unknown_or_unsupported_format_is_a_cache_error(store, monkeypatch):
    with pytest.raises(LofiError) as e:
        put_track(store, "x", sine(440, 1, RATE), RATE, fmt="aiff")
    assert e.value.code == ErrorCode.CACHE_ERROR
    # a libsndfile without MPEG support: clear CACHE_ERROR naming the problem
    formats = {k: v for k, v in sf.available_formats().items() if k != "MP3"}
    monkeypatch.setattr(tags_mod.sf, "available_formats", lambda: formats)
    with pytest.raises(LofiError) as e:
        put_track(store, "x", sine(440, 1, RATE), RATE, fmt="mp3")
    assert e.value.code == ErrorCode.CACHE_ERROR and "mp3" in e.value.message


def test_clipping_instead_of_wraparound(store):
    x = np.full((RATE, 1), 1.7, np.float32)
    t = put_track(store, "loud", x, RATE)
    y, _ = store.read_audio(t.track_id)
    assert y.min() > 0.99  # wrapped 16-bit samples would be negative


def test_list_filters_sorts_and_limits(store):
    a = put_track(store, "Rainy jazz piano", sine(440, 1, RATE), RATE, seed=1)
    time.sleep(0.01)
    b = put_track(store, "sunny guitar", sine(440, 1, RATE), RATE, seed=2, backend="ace_step")
    time.sleep(0.01)
    c = put_track(store, "rainy night 100%_", sine(440, 3, RATE), RATE, seed=3)
    ids = lambda ts: [t.track_id for t in ts]  # noqa: E731
    assert ids(store.list_tracks()) == [c.track_id, b.track_id, a.track_id]
    assert ids(store.list_tracks(sort="oldest", limit=2)) == [a.track_id, b.track_id]
    assert ids(store.list_tracks(backend="ace_step")) == [b.track_id]
    assert set(ids(store.list_tracks(query="RAINY"))) == {a.track_id, c.track_id}
    assert ids(store.list_tracks(query="100%_")) == [c.track_id]  # LIKE wildcards are literal
    assert ids(store.list_tracks(sort="duration"))[0] == c.track_id
    store.mark_played(a.track_id)
    assert ids(store.list_tracks(sort="last_played"))[0] == a.track_id
    got = store.get(a.track_id)
    assert got.play_count == 1 and got.last_played is not None
    store.set_favourite(b.track_id, True)
    assert ids(store.list_tracks(favourite=True)) == [b.track_id]
    with pytest.raises(LofiError):
        store.list_tracks(sort="bogus")
    with pytest.raises(LofiError) as e:
        store.set_favourite("0" * 16, True)
    assert e.value.code == ErrorCode.TRACK_NOT_FOUND


def test_stats_delete_clear(store):
    a = put_track(store, "a", sine(440, 1, RATE), RATE, seed=1)
    b = put_track(store, "b", sine(440, 1, RATE), RATE, seed=2)
    c = put_track(store, "c", sine(440, 1, RATE), RATE, seed=3)
    st = store.stats()
    assert st["count"] == 3
    assert st["size_bytes"] == sum(os.path.getsize(t.path) for t in (a, b, c))
    assert st["dir"] == str(store.root) and st["max_mb"] == 500
    assert store.delete(a.track_id) and not os.path.exists(a.path)
    assert not store.delete(a.track_id)
    store.set_favourite(b.track_id, True)
    assert store.clear() == 1  # favourites kept by default
    assert [t.track_id for t in store.list_tracks()] == [b.track_id] and not os.path.exists(c.path)
    assert store.clear(keep_favourites=False) == 1 and store.stats()["count"] == 0


def test_lru_eviction_by_size_keeps_favourites_and_protected(tmp_path):
    store = TrackStore(tmp_path / "t")
    ts = [put_track(store, f"t{i}", sine(200 + 50 * i, 2, RATE), RATE, seed=i) for i in range(5)]
    size = max(os.path.getsize(t.path) for t in ts)
    time.sleep(0.01)
    store.touch(ts[0].track_id)  # recently used: must survive
    store.set_favourite(ts[1].track_id, True)  # oldest access but favourite: must survive
    store.protect = lambda: [ts[2].track_id]  # e.g. playing
    store.max_mb = (3.5 * size) / 1e6  # room for three
    evicted = store.evict()
    assert evicted == [ts[3].track_id, ts[4].track_id]  # least recently accessed non-favourites first
    assert {t.track_id for t in store.list_tracks()} == {ts[0].track_id, ts[1].track_id, ts[2].track_id}
    assert not os.path.exists(ts[3].path)
    # eviction runs after every put; the new track itself is never the victim
    new = put_track(store, "new", sine(900, 2, RATE), RATE, seed=99)
    assert store.get(new.track_id) is not None and store.get(ts[0].track_id) is None
    store.close()


def test_max_tracks_limit(tmp_path):
    store = TrackStore(tmp_path / "t", max_tracks=2)
    ts = [put_track(store, f"t{i}", sine(440, 1, RATE), RATE, seed=i) for i in range(4)]
    assert [t.track_id for t in store.list_tracks(sort="oldest")] == [ts[2].track_id, ts[3].track_id]
    # a smaller limit reports what it would remove and deletes nothing until the next eviction
    assert store.configure(max_tracks=1) == 1
    assert len(store.list_tracks()) == 2
    assert store.evict() == [ts[2].track_id]
    assert [t.track_id for t in store.list_tracks()] == [ts[3].track_id]
    store.close()


def test_index_rebuilt_from_tags_when_database_is_lost_or_corrupt(tmp_path):
    root = tmp_path / "t"
    store = TrackStore(root)
    tracks = [
        put_track(store, "flac one", sine(440, 1, RATE), RATE, seed=1, params={"temperature": 0.9}),
        put_track(store, "wav two " + "x" * 3000, sine(440, 1, RATE), RATE, seed=2, fmt="wav"),  # long tag
        put_track(store, "ogg three", sine(440, 1, RATE, channels=2), RATE, seed=3, fmt="ogg"),
    ]
    before = {t.track_id: t.to_dict() for t in tracks}
    store.close()
    for p in root.glob("index.sqlite3*"):
        p.unlink()
    store = TrackStore(root)
    after = {t.track_id: t.to_dict() for t in store.list_tracks()}
    assert set(after) == set(before)
    for tid, d in before.items():
        for k in (
            "prompt",
            "backend",
            "params",
            "seed",
            "sample_rate",
            "channels",
            "format",
            "model_version",
            "generation_time_sec",
            "created_at",
            "path",
        ):
            assert after[tid][k] == d[k], k
        assert after[tid]["duration_sec"] == pytest.approx(d["duration_sec"], abs=1e-3)
    store.close()
    # a corrupt database file is moved aside and rebuilt the same way
    (root / "index.sqlite3").write_bytes(b"this is not a database" * 100)
    for p in root.glob("index.sqlite3-*"):
        p.unlink()
    store = TrackStore(root)
    assert {t.track_id for t in store.list_tracks()} == set(before)
    assert list(root.glob("index.sqlite3.corrupt-*"))
    store.close()


def test_reconcile_removes_dead_writers_temp_files_and_dangling_rows(tmp_path):
    root = tmp_path / "t"
    store = TrackStore(root)
    a = put_track(store, "a", sine(440, 1, RATE), RATE, seed=1)
    b = put_track(store, "b", sine(440, 1, RATE), RATE, seed=2)
    store.close()
    dead_pid = 2**22 + 12345  # above pid_max on this kernel config: never alive
    (root / f".tmp-{dead_pid}-abcd-{'f' * 16}.flac").write_bytes(b"partial")
    live = root / f".tmp-{os.getppid()}-abcd-{'e' * 16}.flac"  # a live writer's file is left alone
    live.write_bytes(b"in progress")
    os.unlink(b.path)  # a file removed behind our back
    (root / "notes.flac").write_bytes(b"not audio")  # unrelated junk is ignored, not adopted
    store = TrackStore(root)
    assert not (root / f".tmp-{dead_pid}-abcd-{'f' * 16}.flac").exists()
    assert live.exists()
    assert [t.track_id for t in store.list_tracks()] == [a.track_id]
    assert store.get(b.track_id) is None
    store.close()


def test_tag_payload_is_json_with_prefix(store):
    t = put_track(store, "tagged", sine(440, 1, RATE), RATE)
    with sf.SoundFile(t.path) as f:
        assert f.comment.startswith(tags_mod.TAG_PREFIX)
        meta = json.loads(f.comment[len(tags_mod.TAG_PREFIX) :])
    assert meta["track_id"] == t.track_id and meta["prompt"] == "tagged"


def test_index_uses_wal(store):
    conn = sqlite3.connect(store.db_path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def test_writing_the_same_track_again_keeps_favourite_and_plays(store):
    t = put_track(store, "again", sine(440, 1, RATE), RATE, seed=4)
    store.set_favourite(t.track_id, True)
    store.mark_played(t.track_id)
    t2 = put_track(store, "again", sine(440, 1, RATE), RATE, seed=4, fmt="ogg")
    assert t2.track_id == t.track_id and t2.format == "ogg"
    got = store.get(t.track_id)
    assert got.favourite and got.play_count == 1 and got.path.endswith(".ogg")
    assert not os.path.exists(t.path)  # the old flac is gone, one file per track
    assert store.stats()["count"] == 1


# ---- planted links and foreign files: lofi writes only into its own folder --------------------------------


def other_database(path):
    """Somebody else's SQLite database (no WAL, no lofi table)."""
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE notes (body TEXT)")
    conn.execute("INSERT INTO notes VALUES ('mine')")
    conn.commit()
    conn.close()
    return path


def tables_and_mode(path):
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        return names, conn.execute("PRAGMA journal_mode").fetchone()[0]
    finally:
        conn.close()


@pytest.mark.parametrize("link", ["index.sqlite3", "index.sqlite3-wal"])
def test_symlinked_index_is_refused_and_reported(tmp_path, link):
    victim = other_database(tmp_path / "victim.db")
    root = tmp_path / "tracks"
    root.mkdir()
    os.symlink(victim if link == "index.sqlite3" else tmp_path / "victim-wal", root / link)
    s = TrackStore(root)  # does not raise: the daemon must come up and say what is wrong
    try:
        assert s.error is not None and "symlink" in s.error and link in s.error
        stats = s.stats()
        assert stats["error"] == s.error and stats["count"] == 0
        with pytest.raises(LofiError) as ei:
            put_track(s, "rain", sine(440, 0.5, RATE), RATE)
        assert ei.value.code == ErrorCode.CACHE_ERROR and "symlink" in ei.value.message
        with pytest.raises(LofiError) as ei:
            s.list_tracks()
        assert ei.value.code == ErrorCode.CACHE_ERROR
    finally:
        s.close()
    assert tables_and_mode(victim) == ({"notes"}, "delete")  # untouched: no lofi table, no WAL
    assert not (tmp_path / "victim-wal").exists()


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root to chown")
def test_index_owned_by_another_user_is_refused(tmp_path):
    root = tmp_path / "tracks"
    root.mkdir()
    s = TrackStore(root)
    s.close()
    os.chown(root / "index.sqlite3", 65534, 65534)
    s = TrackStore(root)
    try:
        assert s.error is not None and "owned by uid 65534" in s.error
    finally:
        s.close()


def test_symlinked_tracks_dir_is_refused(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.symlink(elsewhere, tmp_path / "tracks")
    s = TrackStore(tmp_path / "tracks")
    try:
        assert s.error is not None and "symlink" in s.error
    finally:
        s.close()
    assert list(elsewhere.iterdir()) == []


def test_planted_link_at_the_temp_name_is_not_followed(store, tmp_path, monkeypatch):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    x = sine(440, 0.5, RATE)
    # plant a link at the temp name the store is about to use, as a racing local process could
    real_temp_name = store._temp_name

    def planted(track_id, ext):
        p = real_temp_name(track_id, ext)
        if not p.is_symlink():
            os.symlink(victim, p)
        return p

    monkeypatch.setattr(store, "_temp_name", planted)
    with pytest.raises(LofiError) as ei:
        put_track(store, "rain", x, RATE)
    assert ei.value.code == ErrorCode.CACHE_ERROR
    assert victim.read_text() == "precious"
    assert [p for p in store.root.iterdir() if p.suffix == ".flac"] == []


def test_daemon_with_a_symlinked_index_answers_and_says_why(daemon, tmp_path):
    victim = other_database(tmp_path / "victim.db")
    tracks = tmp_path / "cache" / "tracks"  # the daemon fixture's cache
    tracks.mkdir(parents=True)
    os.symlink(victim, tracks / "index.sqlite3")
    d = daemon()
    assert d.call("ping")["pong"] is True
    stats = d.call("cache_stats")
    assert "symlink" in stats["error"] and stats["count"] == 0
    reply = d.request("cache_list")
    assert reply["error"]["code"] == ErrorCode.CACHE_ERROR and "symlink" in reply["error"]["message"]
    assert d.call("ping")["pong"] is True
    assert tables_and_mode(victim) == ({"notes"}, "delete")


def test_relative_cache_dir_is_rejected(daemon, tmp_path):
    d = daemon()
    before = d.call("status")["cache_dir"]
    reply = d.request("initialize", {"options": {"cache_dir": "relative/cache"}})
    assert reply["error"]["code"] == ErrorCode.INVALID_PARAMS
    assert "absolute" in reply["error"]["message"]
    assert d.call("status")["cache_dir"] == before


def test_relative_cache_dir_from_the_environment_is_not_used(tmp_path):
    from lofi_daemon.config import Settings

    default = Settings().cache_dir
    assert Settings.from_env({"LOFI_CACHE_DIR": "relative/cache"}).cache_dir == default
    assert Settings.from_env({"LOFI_CACHE_DIR": str(tmp_path)}).cache_dir == tmp_path


def test_an_index_row_naming_a_file_outside_the_folder_touches_nothing_there(store, tmp_path):
    """Rows are lofi's own, but an index edited by anything else must not make lofi read or delete outside its
    folder: such a row is treated as a track whose file is gone."""
    victim = tmp_path / "victim.flac"
    victim.write_bytes(b"precious")

    def poisoned():
        t = put_track(store, "rain", sine(440, 0.5, RATE), RATE)
        with store._write() as conn:
            conn.execute("UPDATE tracks SET file = ? WHERE track_id = ?", ("../victim.flac", t.track_id))
        return t.track_id

    assert store.get(poisoned()) is None  # its file is "gone": never a path outside the folder
    store.delete(poisoned())
    poisoned()
    store.clear(keep_favourites=False)
    poisoned()
    assert store.reconcile()["dropped_rows"] == 1
    assert victim.read_bytes() == b"precious"


def test_reconcile_adopts_only_regular_files(tmp_path):
    """A FIFO named like a track would block the daemon's start forever (reading it waits for a writer); a link
    would make lofi adopt a file outside its folder. Neither is adopted; both are left alone."""
    root = tmp_path / "tracks"
    s = TrackStore(root)
    t = put_track(s, "rain", sine(440, 0.5, RATE), RATE)
    outside = tmp_path / "outside.flac"
    os.replace(t.path, outside)  # a real lofi track, now outside the folder
    s.close()
    os.symlink(outside, root / "linked.flac")
    os.mkfifo(root / "pipe.flac")
    again = TrackStore(root)  # returns: before, reading pipe.flac blocked here
    try:
        assert again.error is None and again.list_tracks() == []
        assert (root / "pipe.flac").exists() and (root / "linked.flac").is_symlink()
    finally:
        again.close()


def test_adopt_moves_the_same_store_object_to_another_folder(tmp_path):
    """`initialize` may move the cache: the store everyone holds (worker, player, handlers) follows the move."""
    store = TrackStore(tmp_path / "old", protect=lambda: ["kept"])
    old = put_track(store, "old", sine(300, 1, RATE), RATE, seed=1)
    store.adopt(TrackStore(tmp_path / "new"))
    assert store.root == tmp_path / "new" and store.get(old.track_id) is None
    new = put_track(store, "new", sine(500, 1, RATE), RATE, seed=2)
    assert os.path.dirname(new.path) == str(tmp_path / "new") and store.get(new.track_id) is not None
    assert list(store.protect()) == ["kept"]  # the player's rule stays with the store
    store.close()
    reopened = TrackStore(tmp_path / "old")  # the old folder was left as it was
    assert reopened.get(old.track_id) is not None
    reopened.close()
