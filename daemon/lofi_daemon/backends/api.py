"""get_backends and download_backend."""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

from ..errors import ErrorCode, LofiError
from ..jobs.cancel import CancelToken
from ..models.verify import repair_variant
from ..rpc.dispatch import Dispatcher
from ..rpc.schemas.generation import DownloadBackendParams
from . import canonical_name

if TYPE_CHECKING:
    from ..daemon import Daemon

log = logging.getLogger(__name__)


def backend_info(daemon: Daemon, name: str) -> dict[str, Any]:
    b = daemon.backends[name]
    info = {
        "name": b.name,
        "display_name": b.display_name,
        "sample_rate": b.sample_rate,
        "channels": b.channels,
        "min_duration_sec": b.min_duration_sec,
        "max_duration_sec": b.max_duration_sec,
        "default_duration_sec": b.default_duration_sec,
        "loaded": b.loaded,
        "downloading": name in daemon.downloads,
    }
    try:
        info.update(b.status())
        info["installed"] = b.is_installed()
        info["model_version"] = b.model_version()
    except Exception as exc:  # a broken model dir must not break the listing
        log.exception("status of %s failed", name)
        info.update(installed=False, error=str(exc))
    return info


def resolve_backend(daemon: Daemon, name: str | None) -> str:
    key = canonical_name(name or daemon.settings.default_backend)
    if key not in daemon.backends:
        raise LofiError(
            ErrorCode.INVALID_BACKEND,
            f"unknown backend {name!r}; available: {', '.join(sorted(daemon.backends))}",
        )
    return key


def register(dispatcher: Dispatcher, daemon: Daemon) -> None:
    @dispatcher.method("get_backends")
    def get_backends(_: None) -> dict[str, Any]:
        return {
            "backends": [backend_info(daemon, n) for n in daemon.backends],
            "default_backend": daemon.settings.default_backend,
        }

    @dispatcher.method("download_backend", DownloadBackendParams)
    def download_backend(p: DownloadBackendParams) -> dict[str, Any]:
        name = resolve_backend(daemon, p.backend)
        backend = daemon.backends[name]
        if p.variant:
            daemon.settings.models[name].variant = p.variant
        if name in daemon.downloads:
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
        daemon.downloads[name] = token

        announced: dict[str, str] = {}
        final: dict[str, Any] = {}

        def progress(info: dict[str, Any]) -> None:
            if info.get("state") == "complete":
                final.update(info)  # held back: announced below, once the download is forgotten
                return
            announced["state"] = info.get("state", "downloading")
            daemon.notify("download_progress", {"backend": name, "state": "downloading", **info})

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
            daemon.downloads.pop(name, None)
            if announced.get("state") != outcome["state"]:
                daemon.notify("download_progress", {"backend": name, **outcome})

        # Downloads run beside the generation worker so other backends keep generating meanwhile.
        threading.Thread(target=run, name=f"download-{name}", daemon=True).start()
        return {"backend": name, "status": "repairing" if p.repair else "started"}
