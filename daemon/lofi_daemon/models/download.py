"""Model files from the Hugging Face hub (through huggingface_hub and its cache) or from a local directory.

* `cached_files(variant)` answers "is it installed?" without any network access.
* `download_variant(variant, progress, cancel)` fetches the missing files with `hf_hub_download` (one call per
  file; huggingface_hub resumes a `.incomplete` blob left by an interrupted transfer and checks the size the
  server announced), reports progress while bytes arrive, then checks integrity: the exact size and sha256 from
  the registry when known, and for LFS files the sha256 the hub announces as the file's ETag. A corrupted file
  is deleted (so a retry fetches it again) and reported as MODEL_DOWNLOAD_FAILED naming the file.
* Consent is the caller's business: nothing here runs unless asked to download; `cached_files` never downloads.

HF_ENDPOINT / HF_HOME / HF_HUB_CACHE are read at call time (huggingface_hub reads them once at import), so a
test or a user can point the daemon at a mirror or another cache without restarting Python.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import Cancelled, ErrorCode, LofiError
from .registry import ModelFile, ModelVariant

log = logging.getLogger(__name__)

ProgressFn = Callable[[dict[str, Any]], None]

_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
POLL_SEC = 0.25
RETRIES = 2  # extra attempts per file after a dropped connection (each resumes)
RETRY_SLEEP_SEC = 1.0


def hub_endpoint() -> str | None:
    return os.environ.get("HF_ENDPOINT") or None


def hub_cache_dir() -> Path:
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "huggingface"
    )
    return Path(home).expanduser() / "hub"


def _repo_dir(repo_id: str) -> Path:
    return hub_cache_dir() / ("models--" + repo_id.replace("/", "--"))


def cached_file(variant: ModelVariant, f: ModelFile) -> Path | None:
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(
        variant.repo_id, f.path, cache_dir=str(hub_cache_dir()), revision=variant.revision
    )
    return Path(found) if isinstance(found, str) and os.path.exists(found) else None


def cached_files(variant: ModelVariant) -> dict[str, Path] | None:
    """role → local path when every file of the variant is in the hub cache; None otherwise. No network."""
    out: dict[str, Path] = {}
    for f in variant.files:
        p = cached_file(variant, f)
        if p is None:
            return None
        out[f.role] = p
    return out


def missing_files(variant: ModelVariant) -> list[ModelFile]:
    return [f for f in variant.files if cached_file(variant, f) is None]


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def verify_file(path: Path, f: ModelFile, expected_sha256: str | None = None) -> None:
    """Raise MODEL_DOWNLOAD_FAILED if `path` does not match the known size / hash."""
    size = path.stat().st_size
    if f.size is not None and size != f.size:
        raise LofiError(
            ErrorCode.MODEL_DOWNLOAD_FAILED,
            f"{f.path}: size {size} bytes, expected {f.size}; the file is corrupted or incomplete",
            file=f.path,
        )
    want = f.sha256 or expected_sha256
    if want:
        got = sha256_file(path)
        if got != want.lower():
            raise LofiError(
                ErrorCode.MODEL_DOWNLOAD_FAILED,
                f"{f.path}: sha256 {got[:12]}… does not match the expected {want[:12]}…; the file is corrupted",
                file=f.path,
            )


def _discard(path: Path) -> None:
    """Remove a bad download: the snapshot link and the blob it points to, so a retry starts again."""
    try:
        blob = path.resolve()
        path.unlink(missing_ok=True)
        if blob != path:
            blob.unlink(missing_ok=True)
    except OSError as exc:
        log.warning("could not remove corrupted file %s: %s", path, exc)


class _ByteWatcher:
    """Polls the size of the `.incomplete` blobs of one repo while hf_hub_download runs, because
    hf_hub_download (0.36) has no progress callback of its own."""

    def __init__(self, repo_id: str, report: Callable[[int], None]) -> None:
        self._blobs = _repo_dir(repo_id) / "blobs"
        self._report = report
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="download-progress", daemon=True)

    def bytes_now(self) -> int:
        try:
            return sum(p.stat().st_size for p in self._blobs.glob("*.incomplete"))
        except OSError:
            return 0

    def _run(self) -> None:
        last = -1
        while not self._stop.wait(POLL_SEC):
            n = self.bytes_now()
            if n != last:
                last = n
                self._report(n)

    def __enter__(self) -> _ByteWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def download_variant(
    variant: ModelVariant,
    progress: ProgressFn | None = None,
    cancel: Any | None = None,
) -> dict[str, Path]:
    """Fetch every missing file of `variant` into the huggingface_hub cache; return role → path.

    progress(d) gets download_progress fields: file, bytes_downloaded, bytes_total, files_completed,
    files_total, percent, state ("downloading" | "complete" | "error"), message?. Cancellation is checked
    between files (a partly downloaded file resumes next time).
    """
    files = list(variant.files)
    sizes = [f.size or f.approx_size or 0 for f in files]  # replaced by the real size once a file is here
    done_bytes = 0
    report = progress or (lambda d: None)
    lock = threading.Lock()

    def emit(file: str, current: int, completed: int, state: str = "downloading", **extra: Any) -> None:
        with lock:
            got = done_bytes + current
            bytes_total = max(sum(sizes), got) or None
            pct = (
                100.0
                if state == "complete"
                else (min(99.0, 100.0 * got / bytes_total) if bytes_total else 0.0)
            )
            report(
                {
                    "file": file,
                    "bytes_downloaded": got,
                    "bytes_total": bytes_total,
                    "files_completed": completed,
                    "files_total": len(files),
                    "percent": round(pct, 1),
                    "state": state,
                    **extra,
                }
            )

    out: dict[str, Path] = {}
    for i, f in enumerate(files):
        if cancel is not None:
            cancel.check()
        path = cached_file(variant, f)
        if path is None:
            emit(f.path, 0, i)
            try:
                path = _fetch(variant, f, lambda n, f=f, i=i: emit(f.path, n, i))
            except Cancelled:
                raise
            except LofiError as exc:
                emit(f.path, 0, i, state="error", message=exc.message)
                raise
            try:
                verify_file(path, f, _lfs_sha256(path))
            except LofiError as exc:
                _discard(path)
                emit(f.path, 0, i, state="error", message=exc.message)
                raise
        else:
            verify_file(path, f)  # size only when known; hashing every start would cost seconds
        sizes[i] = path.stat().st_size
        done_bytes += sizes[i]
        out[f.role] = path
        emit(f.path, 0, i + 1)
    emit(files[-1].path if files else "", 0, len(files), state="complete")
    return out


def _fetch(variant: ModelVariant, f: ModelFile, on_bytes: Callable[[int], None]) -> Path:
    """hf_hub_download one file; a dropped connection is retried (resuming the `.incomplete` blob)."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, LocalEntryNotFoundError

    last: Exception | None = None
    for attempt in range(1 + RETRIES):
        if attempt:
            log.warning("retrying %s (attempt %d): %s", f.path, attempt + 1, last)
            time.sleep(RETRY_SLEEP_SEC * attempt)
        log.info("downloading %s/%s@%s", variant.repo_id, f.path, variant.revision)
        try:
            with _ByteWatcher(variant.repo_id, on_bytes):
                return Path(
                    hf_hub_download(
                        variant.repo_id,
                        f.path,
                        revision=variant.revision,
                        cache_dir=str(hub_cache_dir()),
                        endpoint=hub_endpoint(),
                    )
                )
        except (EntryNotFoundError, HfHubHTTPError, LocalEntryNotFoundError) as exc:
            # the server answered with an error, or could not be reached at all (huggingface_hub has already
            # retried that itself): trying again right away will not help
            last = exc
            break
        except (OSError, ValueError) as exc:  # dropped connection, truncated body, disk trouble
            last = exc
    raise LofiError(
        ErrorCode.MODEL_DOWNLOAD_FAILED,
        f"download of {variant.repo_id}/{f.path} failed: {last}",
        file=f.path,
        repo_id=variant.repo_id,
    ) from last


def _lfs_sha256(path: Path) -> str | None:
    """The hub stores LFS files under their sha256 (the ETag); a blob named like one must hash to it."""
    name = path.resolve().name
    return name if _SHA256_RE.match(name) else None
