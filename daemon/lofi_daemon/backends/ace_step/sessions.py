"""The one place ACE-Step creates onnxruntime sessions (switch to runtime/sessions.py once it lands)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import onnxruntime as ort

from .pipeline import SessionFactory


def session_factory(providers: Sequence[str] = ("CPUExecutionProvider",), threads: int = 0) -> SessionFactory:
    def make(path: str, initializers: Mapping[str, np.ndarray] | None) -> ort.InferenceSession:
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        keep = []
        for name, value in (initializers or {}).items():
            # Overrides the graph's initializer of that name (merged LoRA weights); the OrtValue must outlive
            # session creation, and ORT copies it into the session's own buffers.
            ov = ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(value, dtype=np.float32))
            keep.append(ov)
            opts.add_initializer(name, ov)
        sess = ort.InferenceSession(path, sess_options=opts, providers=list(providers))
        sess._lofi_keep = keep  # noqa: SLF001 - keep the buffers alive as long as the session
        return sess

    return make
