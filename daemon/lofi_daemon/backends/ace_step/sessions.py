"""ACE-Step's onnxruntime sessions: the settings' provider plan and thread count (runtime/), plus optional
overriding initializers (merged LoRA weights) through `SessionOptions.add_initializer`."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import onnxruntime as ort

from ...config import Settings
from ...errors import ErrorCode, LofiError
from ...logging_setup import log_once
from ...runtime.providers import CPU, PROVIDER_NAMES, plan_providers, short_name
from ...runtime.sessions import session_options
from .pipeline import SessionFactory

log = logging.getLogger(__name__)


def session_factory(settings: Settings | None = None, warn: Callable[[str], None] | None = None,
                    threads: int | None = None) -> SessionFactory:  # fmt: skip
    settings = settings or Settings()
    plan = plan_providers(settings.provider)
    for msg in plan.messages:
        log_once(log, logging.WARNING, "%s", msg)
        if warn:
            warn(msg)

    def make(path: str, initializers: Mapping[str, np.ndarray] | None) -> ort.InferenceSession:
        opts = session_options(settings)
        if threads:
            opts.intra_op_num_threads = threads
        keep = []
        for name, value in (initializers or {}).items():
            # ORT uses this buffer as the initializer's data; it must live as long as the session.
            ov = ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(value, dtype=np.float32))
            keep.append(ov)
            opts.add_initializer(name, ov)
        last: Exception | None = None
        for name in plan.candidates:
            full = PROVIDER_NAMES[name]
            try:
                sess = ort.InferenceSession(
                    path, sess_options=opts, providers=[full] if full == CPU else [full, CPU]
                )
            except Exception as exc:  # any ORT failure means: try the next provider
                last = exc
                log.warning("provider %s failed for %s: %s", name, Path(path).name, exc)
                continue
            active = short_name(sess.get_providers()[0])
            if active != name and warn:
                warn(
                    f"execution provider '{name}' could not be initialised for {Path(path).name}; using {active}"
                )
            sess._lofi_keep = keep  # noqa: SLF001 — keeps the override buffers alive with the session
            return sess
        raise LofiError(ErrorCode.MODEL_LOAD_FAILED, f"could not load {Path(path).name}: {last}", file=path)

    return make
