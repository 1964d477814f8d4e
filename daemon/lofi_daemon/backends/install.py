"""The consent gate for model files: one rule for the RPC, the CLI, the worker and prefetch."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..cancel import CancelToken
from ..errors import ErrorCode, LofiError
from ..ports import Backend

RPC_HINT = 'call download_backend {{"backend": "{name}"}} or generate with "allow_download": true'


def require_installed(backend: Backend, allow_download: bool, hint: str = RPC_HINT) -> None:
    """Raise BACKEND_NOT_INSTALLED unless the model is here or the user consented to downloading it.

    When the user pointed the backend at a model directory (LOFI_<NAME>_DIR, `models.<name>.dir`) nothing would be
    downloaded: the backend's own MODEL_NOT_FOUND naming the missing file is raised instead."""
    if backend.is_installed():
        return
    check = getattr(backend, "check_model", None)
    local_dir = getattr(backend, "local_dir", None)
    if check is not None and local_dir is not None:
        try:
            check()
        except LofiError as e:
            if e.code == ErrorCode.MODEL_NOT_FOUND:
                e.data.setdefault(
                    "hint",
                    f"put the missing files in {local_dir}, or unset LOFI_{backend.name.upper()}_DIR / "
                    f"models.{backend.name}.dir to use the downloadable model",
                )
            raise
    if allow_download:
        return
    raise LofiError(
        ErrorCode.BACKEND_NOT_INSTALLED,
        f"the {backend.name} model is not installed; download it first",
        backend=backend.name,
        hint=hint.format(name=backend.name, name_upper=backend.name.upper()),
    )


def ensure_installed(
    backend: Backend,
    allow_download: bool,
    progress: Callable[[dict[str, Any]], None] | None,
    cancel: CancelToken,
) -> None:
    """Download the model if it is missing and the user consented; BACKEND_NOT_INSTALLED otherwise."""
    require_installed(backend, allow_download)
    if not backend.is_installed():
        backend.download(progress, cancel)
