"""ACE-Step's onnxruntime sessions: the settings' provider plan and thread count (runtime/sessions.py), plus
optional overriding initializers (merged LoRA weights)."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import onnxruntime as ort

from ...config import Settings
from ...runtime.providers import plan_providers
from ...runtime.sessions import announce, open_session
from .pipeline import SessionFactory


def session_factory(
    settings: Settings | None = None, warn: Callable[[str], None] | None = None, threads: int | None = None
) -> SessionFactory:
    """One provider plan (announced once) for the many sessions a pipeline opens and reopens."""
    settings = settings or Settings()
    plan = plan_providers(settings.provider)
    announce(plan, warn)

    def make(
        path: str,
        initializers: Mapping[str, np.ndarray] | None,
        optimization: ort.GraphOptimizationLevel | None = None,
    ) -> ort.InferenceSession:
        return open_session(
            path, settings, plan, warn, initializers=initializers, threads=threads, optimization=optimization
        )

    return make
