"""The track cache: audio files under one directory, indexed by SQLite (`index.py`: schema, rows, connections;
`tags.py`: the metadata each file carries and the formats). This module: put, get, evict, reconcile, rebuild.

Design rules:
- One file per track, `<track_id>.<ext>`, immutable once written. Every change of a final file name (rename in,
  unlink out) happens while holding SQLite's write lock (`BEGIN IMMEDIATE`), so several daemons sharing the
  directory see the files and the index change together.
- Writes are atomic: a temp file in the same directory (named with the writer's pid), fsync, rename, then the row.
  A writer killed mid-way leaves at most a temp file (removed by the next store that opens the directory once the
  pid is gone) or a complete file without a row (adopted from its tags).
- Every file carries its own metadata as JSON in the `comment` tag, so the index can be rebuilt from the files if the
  database is lost or corrupt: there are no sidecar files.
- lofi writes only into its own folder: the tracks folder and the index (with its -wal/-shm files) must be
  real files owned by the user, never symlinks (a link planted as index.sqlite3 would get lofi's table and WAL
  mode added to another database), and temp files are created exclusively without following links. A refused
  folder or index puts the store in an error state (`error`, reported by stats/health; every other call fails
  with CACHE_ERROR saying why) instead of stopping the daemon.
- LRU eviction by last access (put, playback, cache hits) against `max_mb` and an optional `max_tracks`;
  favourites and protected ids (the track playing) are never evicted.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import secrets
import shutil
import sqlite3
import stat
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from ..backends.base import GeneratedAudio, GenerationRequest
from ..errors import ErrorCode, LofiError
from ..process import pid_alive
from .index import COLUMNS, INDEX_NAME, SCHEMA, SORTS, ConnectionPool, Track
from .tags import (
    EXTENSIONS,
    check_format,
    decode_tag,
    encode_tag,
)

log = logging.getLogger(__name__)

_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)  # 0 where the OS has none (Windows: no user-made links there)
STALE_TEMP_SEC = 3600.0  # a temp file this old is abandoned even if its pid number is in use again


def unsafe_path_reason(path: Path, kind: str) -> str | None:
    """Why lofi must not open `path` (a symlink, or owned by another user), or None when it may / it is absent."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        return None
    except OSError as e:
        return f"cannot inspect {kind} {path}: {e}"
    if stat.S_ISLNK(st.st_mode):
        return (
            f"{kind} {path} is a symlink (to {os.readlink(path)}); lofi does not write through links. "
            "Remove the link (lofi creates a fresh one) or point cache_dir elsewhere"
        )
    if hasattr(os, "geteuid") and st.st_uid != os.geteuid():
        return f"{kind} {path} is owned by uid {st.st_uid}, not by you (uid {os.geteuid()}); lofi will not use it"
    return None


def unsafe_cache_reason(root: Path) -> str | None:
    """Why the tracks folder `root` or its index files must not be used, or None."""
    index = root / INDEX_NAME
    checks = [(root, "cache folder")] + [
        (Path(str(index) + suffix), "cache index") for suffix in ("", "-wal", "-shm", "-journal")
    ]
    for path, kind in checks:
        reason = unsafe_path_reason(path, kind)
        if reason:
            return reason
    return None


def _regular_file(path: Path) -> bool:
    try:
        return stat.S_ISREG(path.lstat().st_mode)
    except OSError:
        return False


INDEX_HEADROOM = 1_000_000  # bytes SQLite may need to record a write (WAL frames, a checkpoint)


def free_bytes(path: Path) -> int | None:
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None


def is_disk_full(exc: BaseException) -> bool:
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    if isinstance(exc, sqlite3.Error):
        return getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL or "disk is full" in str(exc)
    return False


def disk_full(path: Path, need_bytes: int, **data: Any) -> LofiError:
    free = free_bytes(path)
    have = "unknown space" if free is None else f"{free / 1e6:.1f} MB"
    return LofiError(
        ErrorCode.DISK_FULL,
        f"disk full at {path}: {have} free, need {max(need_bytes, 1) / 1e6:.1f} MB",
        dir=str(path),
        free_bytes=free,
        need_bytes=need_bytes,
        hint="free some space there, or delete tracks (:Lofi cache clear), or move the cache (cache.dir)",
        **data,
    )


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return  # e.g. Windows: directories cannot be opened; rename is still atomic there
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class TrackStore:
    """Cache of generated tracks. Thread-safe (one SQLite connection per thread) and multi-process safe."""

    def __init__(
        self,
        root: Path,
        max_mb: float = 500,
        max_tracks: int | None = None,
        fmt: str = "flac",
        *,
        protect: Callable[[], Iterable[str]] | None = None,
    ) -> None:
        self.root = Path(root)
        self.max_mb = float(max_mb)
        self.max_tracks = max_tracks
        self.fmt = fmt.lower()
        check_format(self.fmt)
        # ids the owner wants kept whatever their age (e.g. the track playing and the next one)
        self.protect = protect
        self.db_path = self.root / INDEX_NAME
        self._pool = ConnectionPool(self.db_path, self._before_connect)
        self.error: str | None = None  # why the cache cannot be used, when it cannot
        try:
            try:
                self.root.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise LofiError(ErrorCode.CACHE_ERROR, f"cannot create cache dir {self.root}: {e}") from e
            self._open_index()
            self.reconcile()
        except LofiError as e:
            self.close()
            self.error = e.message
            log.error("track cache unusable: %s", e.message)

    def _refuse_unsafe(self) -> None:
        """CACHE_ERROR if the folder or the index files are links or someone else's (checked at every connect)."""
        reason = unsafe_cache_reason(self.root)
        if reason:
            raise LofiError(ErrorCode.CACHE_ERROR, reason, dir=str(self.root))

    # ----------------------------------------------------------------------------------------------- SQLite

    def _before_connect(self) -> None:
        if self.error is not None:
            raise LofiError(ErrorCode.CACHE_ERROR, self.error, dir=str(self.root))
        self._refuse_unsafe()

    def _conn(self) -> sqlite3.Connection:
        return self._pool.get()

    def _open_index(self) -> None:
        try:
            conn = self._conn()
            if conn.execute("PRAGMA quick_check").fetchone()[0] != "ok":
                raise sqlite3.DatabaseError("quick_check failed")
            conn.executescript(SCHEMA)
        except sqlite3.DatabaseError as e:
            # The index is only an index: move the broken one aside and rebuild it from the files' tags.
            log.warning("cache index %s is unusable (%s); rebuilding from the audio files", self.db_path, e)
            self.close()
            aside = self.db_path.with_name(f"{INDEX_NAME}.corrupt-{int(time.time())}")
            for suffix in ("", "-wal", "-shm"):
                p = Path(str(self.db_path) + suffix)
                if p.exists():
                    os.replace(p, Path(str(aside) + suffix))
            self._conn().executescript(SCHEMA)

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction holding SQLite's write lock for its whole length (BEGIN IMMEDIATE)."""
        conn = self._conn()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as e:
            raise LofiError(ErrorCode.CACHE_ERROR, f"cache index is busy or broken: {e}") from e
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException as e:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if is_disk_full(e):
                raise disk_full(self.root, INDEX_HEADROOM) from e
            raise

    def adopt(self, other: TrackStore) -> None:
        """Continue in `other`'s folder (`initialize` moved the cache; `other` was opened there first, so a refused
        move changes nothing). This object stays the one the worker, the player and the handlers hold."""
        self.close()
        other.close()
        self.root, self.db_path, self.error = other.root, other.db_path, other.error
        self._pool = ConnectionPool(self.db_path, self._before_connect)

    def close(self) -> None:
        self._pool.close()

    # -------------------------------------------------------------------------------------------- helpers

    def _path(self, file: str) -> Path:
        """<root>/<file>. A name that is not a plain file name (an index edited by something else) maps to a path
        that never exists, so lofi reads or unlinks nothing outside its folder; the row counts as a lost file."""
        if not file or file in (".", "..") or "/" in file or "\\" in file or "\0" in file:
            return self.root / ".lofi-invalid-file-name"
        return self.root / file

    def _row_to_track(self, row: sqlite3.Row) -> Track:
        return Track(
            track_id=row["track_id"],
            path=str(self._path(row["file"])),
            prompt=row["prompt"],
            backend=row["backend"],
            params=json.loads(row["params"]),
            seed=int(row["seed"]),
            duration_sec=float(row["duration_sec"]),
            sample_rate=int(row["sample_rate"]),
            channels=int(row["channels"]),
            format=row["format"],
            model_version=row["model_version"],
            generation_time_sec=float(row["generation_time_sec"]),
            created_at=float(row["created_at"]),
            last_played=row["last_played"],
            play_count=int(row["play_count"]),
            favourite=bool(row["favourite"]),
            size_bytes=int(row["size_bytes"]),
            info=json.loads(row["info"] or "{}"),
        )

    @staticmethod
    def _insert(conn: sqlite3.Connection, t: Track, file: str, last_access: float) -> None:
        conn.execute(
            f"INSERT OR REPLACE INTO tracks ({COLUMNS}) VALUES ({', '.join('?' * 19)})",
            (
                t.track_id,
                file,
                t.prompt,
                t.backend,
                json.dumps(t.params, sort_keys=True, ensure_ascii=False),
                int(t.seed),
                float(t.duration_sec),
                int(t.sample_rate),
                int(t.channels),
                t.format,
                t.model_version,
                float(t.generation_time_sec),
                float(t.created_at),
                t.last_played,
                int(t.play_count),
                int(bool(t.favourite)),
                int(t.size_bytes),
                float(last_access),
                json.dumps(t.info, sort_keys=True, ensure_ascii=False),
            ),
        )

    def _temp_name(self, track_id: str, ext: str) -> Path:
        return self.root / f".tmp-{os.getpid()}-{secrets.token_hex(4)}-{track_id}.{ext}"

    # ------------------------------------------------------------------------------------------- reading

    def get(self, track_id: str, *, touch: bool = False) -> Track | None:
        """The cached track, or None. A row whose file vanished is dropped. `touch` counts as an access (LRU)."""
        row = self._conn().execute("SELECT * FROM tracks WHERE track_id = ?", (track_id,)).fetchone()
        if row is None:
            return None
        if not self._path(row["file"]).is_file():
            self._best_effort(
                "drop the row of a vanished file",
                "DELETE FROM tracks WHERE track_id = ? AND file = ?",
                (track_id, row["file"]),
            )
            return None
        if touch:
            self.touch(track_id)
        return self._row_to_track(row)

    def _best_effort(self, what: str, sql: str, args: tuple[Any, ...]) -> None:
        """An index write on a read path (LRU time, play count, cleanup): reads keep working on a full disk."""
        try:
            with self._write() as conn:
                conn.execute(sql, args)
        except LofiError as e:
            log.warning("cache: could not %s: %s", what, e.message)

    def require(self, track_id: str) -> Track:
        t = self.get(track_id)
        if t is None:
            raise LofiError(
                ErrorCode.TRACK_NOT_FOUND, f"track {track_id} is not in the cache", track_id=track_id
            )
        return t

    def list_tracks(
        self,
        *,
        limit: int | None = None,
        sort: str = "created",
        backend: str | None = None,
        query: str | None = None,
        favourite: bool | None = None,
    ) -> list[Track]:
        if sort not in SORTS:
            raise LofiError(
                ErrorCode.INVALID_PARAMS, f"unknown sort {sort!r}", details=f"one of {sorted(SORTS)}"
            )
        where: list[str] = []
        args: list[Any] = []
        if backend:
            where.append("backend = ?")
            args.append(backend)
        if query:
            escaped = query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            where.append("prompt LIKE ? ESCAPE '\\'")
            args.append(f"%{escaped}%")
        if favourite is not None:
            where.append("favourite = ?")
            args.append(int(favourite))
        sql = "SELECT * FROM tracks"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY " + SORTS[sort]
        if limit is not None:
            sql += " LIMIT ?"
            args.append(int(limit))
        return [self._row_to_track(r) for r in self._conn().execute(sql, args).fetchall()]

    def stats(self) -> dict[str, Any]:
        if self.error is not None:
            return {
                "count": 0,
                "size_bytes": 0,
                "size_mb": 0.0,
                "max_mb": self.max_mb,
                "max_tracks": self.max_tracks,
                "favourites": 0,
                "oldest": None,
                "newest": None,
                "dir": str(self.root),
                "format": self.fmt,
                "error": self.error,
            }
        row = (
            self._conn()
            .execute(
                "SELECT COUNT(*) AS n, COALESCE(SUM(size_bytes), 0) AS size, MIN(created_at) AS oldest, "
                "MAX(created_at) AS newest, COALESCE(SUM(favourite), 0) AS favs FROM tracks"
            )
            .fetchone()
        )
        return {
            "count": int(row["n"]),
            "size_bytes": int(row["size"]),
            "size_mb": round(row["size"] / 1e6, 3),
            "max_mb": self.max_mb,
            "max_tracks": self.max_tracks,
            "favourites": int(row["favs"]),
            "oldest": row["oldest"],
            "newest": row["newest"],
            "dir": str(self.root),
            "format": self.fmt,
        }

    def read_audio(self, track_id: str) -> tuple[np.ndarray, int]:
        """Decode a cached track to float32 [frames, channels] at its native rate."""
        t = self.require(track_id)
        try:
            data, sr = sf.read(t.path, dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError, OSError) as e:
            raise LofiError(
                ErrorCode.CACHE_ERROR, f"cannot read track {track_id}: {e}", track_id=track_id
            ) from e
        return data, int(sr)

    def configure(
        self, max_mb: float | None = None, max_tracks: int | None = None, format: str | None = None
    ) -> int:
        """Apply `initialize` options (cache.max_mb / max_tracks / format; validated by the options schema).

        A smaller limit deletes nothing now: it applies at the next eviction (after the next put). Returns how many
        tracks that eviction would remove, so the caller can say so before anything is lost."""
        if format is not None:
            check_format(format)
            self.fmt = format.lower()
        if max_tracks is not None:
            self.max_tracks = max_tracks
        if max_mb is not None:
            self.max_mb = max_mb
        return len(self._victims(self._conn(), self._protected(())))

    # ------------------------------------------------------------------------------------------- writing

    def put(
        self,
        track_id: str,
        audio: GeneratedAudio,
        *,
        request: GenerationRequest,
        model_version: str,
        generation_time_sec: float,
        fmt: str | None = None,
    ) -> Track:
        """Write a finished generation atomically, index it, then evict old tracks over the limits."""
        fmt = (fmt or self.fmt).lower()
        major, subtype, ext = check_format(fmt)
        samples = np.asarray(audio.samples, dtype=np.float32)
        if samples.ndim == 1:
            samples = samples[:, None]
        if samples.ndim != 2 or samples.shape[0] == 0:
            raise LofiError(ErrorCode.CACHE_ERROR, f"track {track_id}: no audio to store", track_id=track_id)
        now = time.time()
        track = Track(
            track_id=track_id,
            path="",
            prompt=request.prompt,
            backend=request.backend,
            params=dict(request.params),
            seed=int(request.seed),
            duration_sec=samples.shape[0] / float(audio.sample_rate),
            sample_rate=int(audio.sample_rate),
            channels=int(samples.shape[1]),
            format=fmt,
            model_version=model_version,
            generation_time_sec=float(generation_time_sec),
            created_at=now,
            info=dict(audio.info or {}),
        )
        meta = track.to_dict()
        for k in ("path", "last_played", "play_count", "favourite", "size_bytes"):
            meta.pop(k)
        meta["requested_duration_sec"] = float(request.duration_sec)
        meta["info"] = track.info
        file = f"{track_id}.{ext}"
        tmp = self._temp_name(track_id, ext)
        # at most 16-bit PCM plus tags (compressed formats are smaller), and room for the index to record it
        need = samples.size * 2 + 64_000 + INDEX_HEADROOM
        free = free_bytes(self.root)
        if free is not None and free < need:
            raise disk_full(self.root, need, track_id=track_id)
        try:
            # Create the temp file ourselves, exclusively and without following a link planted at its name;
            # libsndfile then truncates that regular file.
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_NOFOLLOW, 0o644))
            # Integer PCM wraps around instead of clipping in libsndfile: clip first.
            clipped = np.clip(samples, -1.0, 1.0)
            with sf.SoundFile(
                tmp, "w", samplerate=track.sample_rate, channels=track.channels, format=major, subtype=subtype
            ) as f:
                f.title = f"lofi: {request.prompt[:80]}"
                f.artist = f"lofi ({request.backend})"
                f.software = "lofi"
                f.comment = encode_tag(meta, fmt)
                f.write(clipped)
            fd = os.open(tmp, os.O_RDWR | _O_NOFOLLOW)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            track.size_bytes = tmp.stat().st_size
            with self._write() as conn:
                old = conn.execute(
                    "SELECT file, favourite, play_count, last_played FROM tracks WHERE track_id = ?",
                    (track_id,),
                ).fetchone()
                os.replace(tmp, self._path(file))
                _fsync_dir(self.root)
                if old is not None:
                    # the same track written again (another format, a re-run): the user's marks stay
                    track.favourite = bool(old["favourite"])
                    track.play_count = int(old["play_count"])
                    track.last_played = old["last_played"]
                    if old["file"] != file:
                        self._path(old["file"]).unlink(missing_ok=True)
                self._insert(conn, track, file, now)
        except LofiError:
            raise
        except (OSError, RuntimeError, sf.LibsndfileError, sqlite3.Error) as e:
            # libsndfile reports a full disk as "System error." or a failed encoder start: ask the disk
            free = free_bytes(self.root)
            if is_disk_full(e) or (free is not None and free < need):
                raise disk_full(self.root, need, track_id=track_id) from e
            raise LofiError(
                ErrorCode.CACHE_ERROR, f"cannot store track {track_id}: {e}", track_id=track_id
            ) from e
        finally:
            tmp.unlink(missing_ok=True)
        track.path = str(self._path(file))
        try:
            self.evict(keep=(track_id,))
        except LofiError as e:  # the track is stored; eviction runs again after the next put
            log.warning("cache: eviction failed: %s", e.message)
        return track

    def touch(self, track_id: str) -> None:
        """Count an access for LRU eviction (best-effort: a full disk must not stop a cache hit)."""
        self._best_effort(
            "record an access",
            "UPDATE tracks SET last_access = ? WHERE track_id = ?",
            (time.time(), track_id),
        )

    def mark_played(self, track_id: str) -> bool:
        """Playback started: counts for LRU and the play statistics. False if the track is not in the cache.
        On a full disk this raises DISK_FULL, which the player logs: playing goes on."""
        now = time.time()
        with self._write() as conn:
            cur = conn.execute(
                "UPDATE tracks SET last_played = ?, last_access = ?, play_count = play_count + 1 WHERE track_id = ?",
                (now, now, track_id),
            )
            return cur.rowcount > 0

    def set_favourite(self, track_id: str, favourite: bool) -> Track:
        with self._write() as conn:
            cur = conn.execute(
                "UPDATE tracks SET favourite = ? WHERE track_id = ?", (int(bool(favourite)), track_id)
            )
            if cur.rowcount == 0:
                raise LofiError(
                    ErrorCode.TRACK_NOT_FOUND, f"track {track_id} is not in the cache", track_id=track_id
                )
        return self.require(track_id)

    def delete(self, track_id: str) -> bool:
        with self._write() as conn:
            row = conn.execute("SELECT file FROM tracks WHERE track_id = ?", (track_id,)).fetchone()
            if row is None:
                return False
            conn.execute("DELETE FROM tracks WHERE track_id = ?", (track_id,))
            self._path(row["file"]).unlink(missing_ok=True)
        return True

    def clear(self, *, keep_favourites: bool = True, keep: Iterable[str] = ()) -> int:
        """Delete every track (but favourites, unless told, and the ids in `keep`). Returns how many."""
        keep_ids = set(keep)
        with self._write() as conn:
            sql = "SELECT track_id, file FROM tracks" + (" WHERE favourite = 0" if keep_favourites else "")
            rows = [r for r in conn.execute(sql).fetchall() if r["track_id"] not in keep_ids]
            for r in rows:
                conn.execute("DELETE FROM tracks WHERE track_id = ?", (r["track_id"],))
                self._path(r["file"]).unlink(missing_ok=True)
        return len(rows)

    def _protected(self, keep: Iterable[str]) -> set[str]:
        keep_ids = set(keep)
        if self.protect is not None:
            try:
                keep_ids.update(self.protect())
            except Exception:  # the owner's callback must never break eviction
                log.exception("cache protect callback failed")
        return keep_ids

    def _victims(self, conn: sqlite3.Connection, keep_ids: set[str]) -> list[sqlite3.Row]:
        """Least-recently-accessed non-favourite tracks to remove until under max_mb and max_tracks."""
        limit_bytes = self.max_mb * 1e6
        total, count = conn.execute("SELECT COALESCE(SUM(size_bytes), 0), COUNT(*) FROM tracks").fetchone()
        victims: list[sqlite3.Row] = []
        if total <= limit_bytes and (self.max_tracks is None or count <= self.max_tracks):
            return victims
        rows = conn.execute(
            "SELECT track_id, file, size_bytes FROM tracks WHERE favourite = 0 "
            "ORDER BY last_access ASC, created_at ASC"
        ).fetchall()
        for r in rows:
            if total <= limit_bytes and (self.max_tracks is None or count <= self.max_tracks):
                break
            if r["track_id"] in keep_ids:
                continue
            victims.append(r)
            total -= r["size_bytes"]
            count -= 1
        return victims

    def evict(self, keep: Iterable[str] = ()) -> list[str]:
        """Remove least-recently-accessed tracks until under max_mb and max_tracks. Returns the evicted ids."""
        keep_ids = self._protected(keep)
        with self._write() as conn:
            victims = self._victims(conn, keep_ids)
            for r in victims:
                conn.execute("DELETE FROM tracks WHERE track_id = ?", (r["track_id"],))
                self._path(r["file"]).unlink(missing_ok=True)
        evicted = [r["track_id"] for r in victims]
        if evicted:
            log.info("cache: evicted %d track(s): %s", len(evicted), ", ".join(evicted))
        return evicted

    # ------------------------------------------------------------------------------- repair and rebuild

    def _read_tag(self, path: Path) -> Track | None:
        try:
            with sf.SoundFile(path) as f:
                meta = decode_tag(f.comment or "")
                frames, sr, ch = f.frames, f.samplerate, f.channels
        except (sf.LibsndfileError, RuntimeError, OSError):
            return None
        if not meta or meta.get("track_id") != path.stem:
            return None
        try:
            return Track(
                track_id=meta["track_id"],
                path=str(path),
                prompt=meta["prompt"],
                backend=meta["backend"],
                params=dict(meta.get("params") or {}),
                seed=int(meta["seed"]),
                duration_sec=frames / float(sr) if frames > 0 else float(meta["duration_sec"]),
                sample_rate=int(sr),
                channels=int(ch),
                format=EXTENSIONS.get(path.suffix.lstrip(".").lower(), meta.get("format", "")),
                model_version=meta["model_version"],
                generation_time_sec=float(meta.get("generation_time_sec", 0.0)),
                created_at=float(meta.get("created_at", path.stat().st_mtime)),
                size_bytes=path.stat().st_size,
                info=dict(meta.get("info") or {}),
            )
        except (KeyError, TypeError, ValueError):
            return None

    def reconcile(self) -> dict[str, int]:
        """Make the index and the directory agree: drop rows whose file is gone, adopt complete files that have
        no row (from their tags), and remove temp files of writers that died. Safe while other daemons run."""
        removed_temps = dropped_rows = adopted = 0
        now = time.time()
        for p in self.root.glob(".tmp-*"):
            parts = p.name.split("-")
            pid = int(parts[1]) if len(parts) > 2 and parts[1].isdigit() else -1
            try:
                age = now - p.stat().st_mtime
            except FileNotFoundError:
                continue
            if pid == os.getpid():
                continue  # ours: a put in progress in another thread
            if not pid_alive(pid) or age > STALE_TEMP_SEC:
                p.unlink(missing_ok=True)
                removed_temps += 1
        with self._write() as conn:
            rows = conn.execute("SELECT track_id, file FROM tracks").fetchall()
            indexed = {r["file"] for r in rows}
            for r in rows:
                if not self._path(r["file"]).is_file():
                    conn.execute("DELETE FROM tracks WHERE track_id = ?", (r["track_id"],))
                    dropped_rows += 1
            for p in sorted(self.root.iterdir()):
                if (
                    p.name.startswith(".")
                    or p.suffix.lstrip(".").lower() not in EXTENSIONS
                    or p.name in indexed
                    or not _regular_file(p)  # a FIFO would block the read forever; a link points elsewhere
                ):
                    continue
                t = self._read_tag(p)
                if t is None:
                    log.warning("cache: %s is not a readable lofi track; leaving it alone", p)
                    continue
                self._insert(conn, t, p.name, t.created_at)
                adopted += 1
        if removed_temps or dropped_rows or adopted:
            log.info(
                "cache reconcile: %d temp file(s) removed, %d row(s) dropped, %d file(s) adopted",
                removed_temps,
                dropped_rows,
                adopted,
            )
        return {"removed_temps": removed_temps, "dropped_rows": dropped_rows, "adopted": adopted}

    def rebuild_index(self) -> int:
        """Forget the index and rebuild it from the files' tags (play counts and favourites are lost)."""
        with self._write() as conn:
            conn.execute("DELETE FROM tracks")
        self.reconcile()
        return self.stats()["count"]
