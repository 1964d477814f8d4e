"""Backend discovery: the built-in generators plus optional extra backends named in LOFI_BACKEND_PLUGINS
("package.module:ClassName,..."), each constructed as Cls(settings, notify)."""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..config import Settings
from ..ports import Backend, Store

if TYPE_CHECKING:
    from .ace_step.backend import AceStepBackend
    from .musicgen.backend import MusicGenBackend

    # BUILTIN loads the classes by name, so nothing else shows mypy that they match the protocol
    _BUILTIN_CLASSES: tuple[type[Backend], ...] = (MusicGenBackend, AceStepBackend)

log = logging.getLogger(__name__)

BUILTIN = {
    "musicgen": "lofi_daemon.backends.musicgen.backend:MusicGenBackend",
    "ace_step": "lofi_daemon.backends.ace_step.backend:AceStepBackend",
    "riffusion": "lofi_daemon.backends.riffusion.backend:RiffusionBackend",
}
ALIASES = {"ace-step": "ace_step", "acestep": "ace_step", "music_gen": "musicgen", "music-gen": "musicgen"}
ENV_PLUGINS = "LOFI_BACKEND_PLUGINS"


def canonical_name(name: str) -> str:
    key = name.strip().lower()
    return ALIASES.get(key, key)


def _load_class(spec: str) -> type:
    module_name, _, attr = spec.partition(":")
    return getattr(importlib.import_module(module_name), attr)


def create_backends(
    settings: Settings,
    notify: Callable[[str, dict[str, Any]], None],
    environ: dict[str, str] | None = None,
    tracks: Store | None = None,
) -> dict[str, Backend]:
    """One instance of every backend. Those whose class sets `reads_tracks` (editing tasks on cached tracks) get
    the track cache as `tracks=`; without one (CLI tools, health) they refuse such requests."""
    env = os.environ if environ is None else environ
    specs = dict(BUILTIN)
    for spec in filter(None, (s.strip() for s in env.get(ENV_PLUGINS, "").split(","))):
        specs[f"plugin:{spec}"] = spec
    backends: dict[str, Backend] = {}
    for key, spec in specs.items():
        try:
            cls = _load_class(spec)
        except ModuleNotFoundError as exc:
            if key in BUILTIN and exc.name and spec.startswith(exc.name):
                log.warning("backend %s is not available in this build (%s)", key, exc)
                continue
            raise
        backend = (
            cls(settings, notify, tracks=tracks)
            if getattr(cls, "reads_tracks", False)
            else cls(settings, notify)
        )
        backends[backend.name] = backend
    return backends
