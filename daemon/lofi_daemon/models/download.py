"""Model files from the Hugging Face hub (through huggingface_hub and its cache) or from a local directory.

* `cached_files(variant)` answers "is it installed?" without any network access.
* `download_variant(variant, progress, cancel)` fetches the missing files into huggingface_hub's cache layout
  (blobs/<etag>, snapshots/<commit>/<path>, refs/<branch>), resuming a `.incomplete` blob left by an
  interrupted transfer, reports progress while bytes arrive, then checks integrity: the exact size and sha256
  from the registry when known, and the hash the hub announced as the file's ETag (sha256 for LFS files, the git
  blob sha1 for small ones). A corrupted file is deleted (so a retry fetches it again) and reported as
  MODEL_DOWNLOAD_FAILED naming the file.
* Server-supplied names never become paths unchecked: `hf_hub_download` joins the ETag and X-Repo-Commit headers
  into cache paths as they come (an ETag of `../../x` writes `x` anywhere; a 404 with X-Repo-Commit `../../x`
  creates empty files anywhere), and asks the server twice (a second answer could differ from a checked first
  one). So lofi asks once (`get_hf_file_metadata`), refuses anything but a 40-hex commit and a 40/64-hex ETag,
  and writes the bytes itself (huggingface_hub's `http_get`) under names built from those checked values.
  A variant pinned to a commit (registry `commit`) must be served from exactly that commit.
* Consent is the caller's business: nothing here runs unless asked to download; `cached_files` never downloads.

HF_ENDPOINT / HF_HOME / HF_HUB_CACHE are read at call time (huggingface_hub reads them once at import), so a
test or a user can point the daemon at a mirror or another cache without restarting Python.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import logging
import os
import re
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import Cancelled, ErrorCode, LofiError
from .registry import ModelFile, ModelVariant

if TYPE_CHECKING:
    from ..cancel import CancelToken

log = logging.getLogger(__name__)

ProgressFn = Callable[[dict[str, Any]], None]

_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_SHA1_RE = re.compile(r"^[0-9a-f]{40}$")  # a git commit, or a git blob id (the ETag of a non-LFS file)
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
        variant.repo_id, f.path, cache_dir=str(hub_cache_dir()), revision=variant.fetch_revision
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


def git_blob_sha1(path: Path, chunk: int = 1 << 20) -> str:
    """The git object id of a file's content: the ETag the hub sends for files not stored in LFS."""
    h = hashlib.sha1(b"blob %d\0" % path.stat().st_size)  # noqa: S324 - git's id, not a security hash
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def verify_file(path: Path, f: ModelFile, expected_sha256: str | None = None, *, deep: bool = True) -> None:
    """Raise MODEL_DOWNLOAD_FAILED if `path` does not match the known size, or (deep) the registry's sha256,
    `expected_sha256`, or the hash the blob is stored under (the ETag the hub announced: a sha256 for LFS
    files, the git blob id for small ones)."""
    size = path.stat().st_size
    if f.size is not None and size != f.size:
        raise LofiError(
            ErrorCode.MODEL_DOWNLOAD_FAILED,
            f"{f.path}: size {size} bytes, expected {f.size}; the file is corrupted or incomplete",
            file=f.path,
        )
    if not deep:
        return
    blob = path.resolve().name
    wants = {w.lower() for w in (f.sha256, expected_sha256) if w}
    if _SHA256_RE.match(blob):
        wants.add(blob)
    if wants:
        got = sha256_file(path)
        for want in sorted(wants):
            if got != want:
                raise LofiError(
                    ErrorCode.MODEL_DOWNLOAD_FAILED,
                    f"{f.path}: sha256 {got[:12]}… does not match the expected {want[:12]}…; the file is corrupted",
                    file=f.path,
                )
    elif _SHA1_RE.match(blob):
        got = git_blob_sha1(path)
        if got != blob:
            raise LofiError(
                ErrorCode.MODEL_DOWNLOAD_FAILED,
                f"{f.path}: git blob id {got[:12]}… does not match the announced {blob[:12]}…; the file is "
                "corrupted",
                file=f.path,
            )


def discard(path: Path) -> None:
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


class ProgressThrottle:
    """Passes download progress on at most once per `interval` (POLL_SEC, the pace of the local byte watcher),
    and always a report that ends something (a file completed, the download complete or failed), so the last
    word is never dropped. For progress that arrives unpaced: a remote generator's, forwarded message by message."""

    def __init__(
        self, report: ProgressFn, interval: float = POLL_SEC, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._report = report
        self._interval = interval
        self._clock = clock
        self._last: float | None = None  # when the last report was passed on
        self._files = 0  # files_completed in the last report passed on

    def __call__(self, fields: dict[str, Any]) -> None:
        now = self._clock()
        files = fields.get("files_completed")
        ends = fields.get("state") in ("complete", "error") or (
            isinstance(files, int) and files > self._files
        )
        if not ends and self._last is not None and now - self._last < self._interval:
            return
        self._last = now
        if isinstance(files, int):
            self._files = max(self._files, files)
        self._report(fields)


def download_variant(
    variant: ModelVariant,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
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

    from .verify import check_onnx

    out: dict[str, Path] = {}
    for i, f in enumerate(files):
        if cancel is not None:
            cancel.check()
        path = cached_file(variant, f)
        if path is None:
            emit(f.path, 0, i)
            try:
                path = _fetch(variant, f, functools.partial(emit, f.path, completed=i))
            except Cancelled:
                raise
            except LofiError as exc:
                emit(f.path, 0, i, state="error", message=exc.message)
                raise
            try:
                verify_file(path, f)
                check_onnx(path, f.path)
            except LofiError as exc:
                discard(path)
                emit(f.path, 0, i, state="error", message=exc.message)
                raise
        else:  # hashing what is already here would cost seconds each time: size and ONNX structure only
            verify_file(path, f, deep=False)
            check_onnx(path, f.path)
        sizes[i] = path.stat().st_size
        done_bytes += sizes[i]
        out[f.role] = path
        emit(f.path, 0, i + 1)
    emit(files[-1].path if files else "", 0, len(files), state="complete")
    return out


def _fetch(variant: ModelVariant, f: ModelFile, on_bytes: Callable[[int], None]) -> Path:
    """Download one file; a dropped connection is retried (resuming the `.incomplete` blob)."""
    from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, LocalEntryNotFoundError

    last: Exception | None = None
    for attempt in range(1 + RETRIES):
        if attempt:
            log.warning("retrying %s (attempt %d): %s", f.path, attempt + 1, last)
            time.sleep(RETRY_SLEEP_SEC * attempt)
        log.info("downloading %s/%s@%s", variant.repo_id, f.path, variant.fetch_revision)
        try:
            with _ByteWatcher(variant.repo_id, on_bytes):
                return _fetch_once(variant, f)
        except (EntryNotFoundError, HfHubHTTPError, LocalEntryNotFoundError) as exc:
            # the server answered with an error: trying again right away will not help
            last = exc
            break
        except (
            _network_errors()
        ) as exc:  # dropped connection, refused connection, truncated body, disk trouble
            last = exc
    raise LofiError(
        ErrorCode.MODEL_DOWNLOAD_FAILED,
        f"download of {variant.repo_id}/{f.path} failed: {last}",
        file=f.path,
        repo_id=variant.repo_id,
    ) from last


@functools.cache
def _network_errors() -> tuple[type[Exception], ...]:
    """What a failed transfer raises: OSError and ValueError, plus the transport errors of the HTTP library this
    huggingface_hub uses — requests' are OSErrors (hub < 1.0), httpx's are not (hub ≥ 1.0 uses httpx or httpx2)."""
    errors: list[type[Exception]] = [OSError, ValueError]
    for module, name in (("httpx", "TransportError"), ("httpx2", "TransportError")):
        try:
            errors.append(getattr(importlib.import_module(module), name))
        except (ImportError, AttributeError):
            pass
    return tuple(errors)


def _refuse(variant: ModelVariant, f: ModelFile, what: str) -> LofiError:
    return LofiError(
        ErrorCode.MODEL_DOWNLOAD_FAILED,
        f"download of {variant.repo_id}/{f.path} refused: {what}; nothing was written",
        file=f.path,
        repo_id=variant.repo_id,
    )


def checked_metadata(
    variant: ModelVariant, f: ModelFile, commit: str | None, etag: str | None
) -> tuple[str, str]:
    """(commit, etag) when both are plain hashes (and the commit is the pinned one, if any); refused otherwise."""
    if not isinstance(commit, str) or not _SHA1_RE.match(commit):
        raise _refuse(
            variant, f, f"the hub answered a malformed commit id {commit!r:.80} (want 40 hex digits)"
        )
    if variant.commit and commit != variant.commit:
        raise _refuse(variant, f, f"the hub served commit {commit}, not the pinned {variant.commit}")
    if not isinstance(etag, str) or not (_SHA1_RE.match(etag) or _SHA256_RE.match(etag)):
        raise _refuse(
            variant, f, f"the hub answered a malformed ETag {etag!r:.80} (want a 40 or 64 hex digit hash)"
        )
    return commit, etag


def _fetch_once(variant: ModelVariant, f: ModelFile) -> Path:
    from huggingface_hub import get_hf_file_metadata, hf_hub_url
    from huggingface_hub.file_download import http_get
    from huggingface_hub.utils import WeakFileLock, build_hf_headers

    endpoint = hub_endpoint()
    url = hf_hub_url(variant.repo_id, f.path, revision=variant.fetch_revision, endpoint=endpoint)
    # the models are public: no token, so none can leak to wherever the hub's `Location` points
    meta = get_hf_file_metadata(url, token=False, endpoint=endpoint, library_name="lofi")  # the only HEAD
    commit, etag = checked_metadata(variant, f, meta.commit_hash, meta.etag)
    repo = _repo_dir(variant.repo_id)
    blob = repo / "blobs" / etag
    pointer = repo / "snapshots" / commit / Path(*f.path.split("/"))
    lock = hub_cache_dir() / ".locks" / repo.name / f"{etag}.lock"
    for folder in (blob.parent, pointer.parent, lock.parent):
        folder.mkdir(parents=True, exist_ok=True)
    with WeakFileLock(str(lock)):
        if not blob.exists():
            incomplete = blob.with_name(etag + ".incomplete")
            with open(incomplete, "ab") as fh:
                http_get(
                    meta.location,
                    fh,
                    resume_size=fh.tell(),
                    headers=build_hf_headers(token=False, library_name="lofi"),
                    expected_size=meta.size,
                    displayed_filename=f.path,
                )
            os.replace(incomplete, blob)
        if not os.path.lexists(pointer):
            _link(blob, pointer)
    if (
        variant.fetch_revision != commit
    ):  # remember which commit the branch pointed at, as huggingface_hub does
        (repo / "refs").mkdir(exist_ok=True)
        (repo / "refs" / variant.fetch_revision).write_text(commit)
    return pointer


def _link(blob: Path, pointer: Path) -> None:
    """snapshots/<commit>/<path> → blobs/<etag> as a relative symlink; a copy where symlinks are not allowed."""
    try:
        os.symlink(os.path.relpath(blob, pointer.parent), pointer)
    except OSError:
        shutil.copyfile(blob, pointer)
