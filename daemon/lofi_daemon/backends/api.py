"""get_backends and download_backend."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from ..cancel import CancelToken
from ..config import Settings
from ..errors import ErrorCode, LofiError
from ..models.verify import repair_variant
from ..ports import Backend
from ..rpc.dispatch import Dispatcher
from ..rpc.schemas.generation import DownloadBackendParams
from . import canonical_name

log = logging.getLogger(__name__)


Notify = Callable[[str, dict[str, Any]], None]


def backend_info(
    backends: dict[str, Backend], downloads: dict[str, CancelToken], name: str
) -> dict[str, Any]:
    b = backends[name]
    info = {
        "name": b.name,
        "display_name": b.display_name,
        "sample_rate": b.sample_rate,
        "channels": b.channels,
        "min_duration_sec": b.min_duration_sec,
        "max_duration_sec": b.max_duration_sec,
        "default_duration_sec": b.default_duration_sec,
        "loaded": b.loaded,
        "downloading": name in downloads,
    }
    try:
        info.update(b.status())
        # a remote backend's status says what it knows without waiting for the link
        if "installed" not in info:
            info["installed"] = b.is_installed()
        if "model_version" not in info:
            info["model_version"] = b.model_version()
    except Exception as exc:  # a broken model dir must not break the listing
        log.exception("status of %s failed", name)
        info.update(installed=False, error=str(exc))
    return info


def resolve_backend(backends: dict[str, Backend], settings: Settings, name: str | None) -> str:
    key = canonical_name(name or settings.default_backend)
    if key not in backends:
        raise LofiError(
            ErrorCode.INVALID_BACKEND,
            f"unknown backend {name!r}; available: {', '.join(sorted(backends))}",
        )
    return key


def register(
    dispatcher: Dispatcher,
    *,
    backends: dict[str, Backend],
    settings: Settings,
    downloads: dict[str, CancelToken],
    notify: Notify,
) -> None:
    """`downloads` (backend name → its cancel token) is shared with the daemon, which cancels them on exit."""

    @dispatcher.method("get_backends")
    def get_backends(_: None) -> dict[str, Any]:
        return {
            "backends": [backend_info(backends, downloads, n) for n in backends],
            "default_backend": settings.default_backend,
        }

    @dispatcher.method("download_backend", DownloadBackendParams)
    def download_backend(p: DownloadBackendParams) -> dict[str, Any]:
        name = resolve_backend(backends, settings, p.backend)
        backend = backends[name]
        if p.variant:
            settings.models[name].variant = p.variant
        if name in downloads:
            return {"backend": name, "status": "already_downloading"}
        if p.repair:
            if getattr(backend, "local_dir", None) is not None or not hasattr(backend, "variant"):
                raise LofiError(
                    ErrorCode.INVALID_PARAMS,
                    f"{name} uses no downloaded model files, so there is nothing to repair; replace the files "
                    "in its model folder yourself",
                    param="repair",
                )
        elif backend.is_installed():
            return {"backend": name, "status": "already_installed"}
        token = CancelToken()
        downloads[name] = token

        announced: dict[str, str] = {}
        final: dict[str, Any] = {}

        def progress(info: dict[str, Any]) -> None:
            if info.get("state") == "complete":
                final.update(info)  # held back: announced below, once the download is forgotten
                return
            announced["state"] = info.get("state", "downloading")
            notify("download_progress", {"backend": name, "state": "downloading", **info})

        def run() -> None:
            outcome: dict[str, Any] = {"state": "complete", "percent": 100}
            try:
                if p.repair:
                    fetched = repair_variant(backend.variant(), progress, token)  # type: ignore[attr-defined]
                    backend.unload()  # the next job loads the fresh files
                    log.info("repaired %s: fetched %s again", name, ", ".join(fetched))
                    final["repaired"] = fetched
                else:
                    backend.download(progress, token)
                outcome = {**final, **outcome}
            except LofiError as exc:
                outcome = {"state": "error", "message": exc.message, "error_code": exc.code.name}
            except Exception as exc:
                log.exception("download of %s failed", name)
                outcome = {"state": "error", "message": str(exc)}
            # Forget the download before announcing its end, so a client reacting to the notification
            # already sees the final state; announce it only if the backend's own progress did not.
            downloads.pop(name, None)
            if announced.get("state") != outcome["state"]:
                notify("download_progress", {"backend": name, **outcome})

        # Downloads run beside the generation worker so other backends keep generating meanwhile.
        threading.Thread(target=run, name=f"download-{name}", daemon=True).start()
        return {"backend": name, "status": "repairing" if p.repair else "started"}
