"""ONNX Runtime sessions with the settings' provider and thread count.

`create_session` tries each planned provider in turn (logging every attempt) and reports when it had to fall
back, so "cuda" on a machine without a working CUDA setup still produces music on the CPU. `open_session` is
the same without announcing the plan's messages (for a caller that opens many sessions from one plan), and can
override initializers (merged LoRA weights).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import onnxruntime as ort

from ..config import Settings
from ..errors import ErrorCode, LofiError
from ..logging_setup import log_once
from .providers import CPU, PROVIDER_NAMES, ProviderPlan, plan_providers, short_name

log = logging.getLogger(__name__)

# warn(message): surfaces a fallback to the user (the backend forwards it as a `log` notification)
WarnFn = Callable[[str], None]


def session_options(settings: Settings) -> ort.SessionOptions:
    opts = ort.SessionOptions()
    if settings.threads and settings.threads > 0:
        opts.intra_op_num_threads = int(settings.threads)
    opts.inter_op_num_threads = 1
    # ORT's full graph optimisations gave no speed on these decoders but cost seconds of load time;
    # BASIC keeps the cheap constant folding.
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    opts.log_severity_level = 3  # errors only: ORT's warnings would flood the daemon log
    return opts


def _providers_arg(name: str) -> list[str]:
    full = PROVIDER_NAMES[name]
    return [full] if full == CPU else [full, CPU]


def announce(plan: ProviderPlan, warn: WarnFn | None = None) -> None:
    """Log (and tell the user) what the provider plan had to change, e.g. "cuda is not available"."""
    for msg in plan.messages:
        log_once(log, logging.WARNING, "%s", msg)
        if warn:
            warn(msg)


def create_session(
    path: str | Path,
    settings: Settings,
    plan: ProviderPlan | None = None,
    warn: WarnFn | None = None,
) -> ort.InferenceSession:
    """Open `path` on the best provider of `plan` (default: from settings.provider) that actually initialises."""
    plan = plan or plan_providers(settings.provider)
    announce(plan, warn)
    return open_session(path, settings, plan, warn)


def open_session(
    path: str | Path,
    settings: Settings,
    plan: ProviderPlan,
    warn: WarnFn | None = None,
    *,
    initializers: Mapping[str, np.ndarray] | None = None,
    threads: int | None = None,
    optimization: ort.GraphOptimizationLevel | None = None,
) -> ort.InferenceSession:
    """create_session without announcing the plan; `initializers` replace the graph's weights of those names,
    `threads` overrides settings.threads, `optimization` the graph optimisation level (BASIC by default)."""
    opts = session_options(settings)
    if threads:
        opts.intra_op_num_threads = threads
    if optimization is not None:
        opts.graph_optimization_level = optimization
    keep = []
    for name, value in (initializers or {}).items():
        # ORT uses this buffer as the initializer's data; it must live as long as the session.
        ov = ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(value, dtype=np.float32))
        keep.append(ov)
        opts.add_initializer(name, ov)
    last_error: Exception | None = None
    for name in plan.candidates:
        try:
            sess = ort.InferenceSession(str(path), sess_options=opts, providers=_providers_arg(name))
        except Exception as exc:  # onnxruntime raises several types; any of them means "try the next one"
            last_error = exc
            log.warning("provider %s failed for %s: %s", name, Path(path).name, exc)
            continue
        active = short_name(sess.get_providers()[0])
        if active != name:
            # ORT silently drops a provider it cannot initialise (e.g. CUDA libs missing)
            msg = (
                f"execution provider '{name}' could not be initialised for {Path(path).name}; using {active}"
            )
            log.warning("%s", msg)
            if warn:
                warn(msg)
        else:
            log.info("session %s on %s", Path(path).name, active)
        if keep:
            sess._lofi_keep = keep  # keeps the override buffers alive with the session
        return sess
    raise LofiError(
        ErrorCode.MODEL_LOAD_FAILED,
        f"could not load {Path(path).name}: {last_error}",
        file=str(path),
    )


def session_provider(sess: ort.InferenceSession) -> str:
    return short_name(sess.get_providers()[0])
