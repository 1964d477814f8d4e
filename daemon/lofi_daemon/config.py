"""Daemon settings: defaults, then environment, then the client's `initialize` options.

Paths come from platformdirs so every OS gets its conventional location; every path can be overridden for
tests and for users who keep models or tracks elsewhere.
"""

from __future__ import annotations

import logging
import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import platformdirs

if TYPE_CHECKING:
    from .rpc.schemas.options import InitializeOptions

APP = "lofi"
log = logging.getLogger(__name__)

# Environment variables a user (or a test) can set; documented in docs/protocol.md.
ENV_MODEL_DIRS = {
    "musicgen": "LOFI_MUSICGEN_DIR",
    "ace_step": "LOFI_ACE_STEP_DIR",
    "riffusion": "LOFI_RIFFUSION_DIR",
}
ENV_CACHE_DIR = "LOFI_CACHE_DIR"
ENV_LOG_DIR = "LOFI_LOG_DIR"
ENV_PROVIDER = "LOFI_PROVIDER"
ENV_THREADS = "LOFI_THREADS"
ENV_DEFAULT_BACKEND = "LOFI_DEFAULT_BACKEND"
ENV_GENERATOR = "LOFI_GENERATOR"  # a shell command reaching `lofi-daemon serve --generator` (remote/)
ENV_GENERATOR_BACKENDS = "LOFI_GENERATOR_BACKENDS"  # comma-separated; empty = every backend


@dataclass
class ModelSettings:
    dir: Path | None = None  # local directory that overrides the hub (offline use)
    variant: str | None = None  # registry variant name; None = best for the provider


@dataclass
class GeneratorSettings:
    """A remote generator: `cmd`'s stdin/stdout reach a `lofi-daemon serve --generator` (e.g. over ssh)."""

    cmd: list[str]
    backends: list[str] | None = None  # the backends that run there; None = all
    retry: bool = True  # a link lost before any audio arrived connects again and retries once
    connect_timeout_sec: float = 30.0


@dataclass
class Settings:
    cache_dir: Path = field(default_factory=lambda: Path(platformdirs.user_cache_dir(APP)))
    log_dir: Path = field(default_factory=lambda: Path(platformdirs.user_log_dir(APP)))
    provider: str = "auto"  # auto | cpu | cuda | coreml
    threads: int = 0  # 0 = onnxruntime's default (all cores)
    models: dict[str, ModelSettings] = field(
        default_factory=lambda: {
            "musicgen": ModelSettings(),
            "ace_step": ModelSettings(),
            "riffusion": ModelSettings(),
        }
    )
    default_backend: str = "musicgen"
    idle_unload_sec: float = 600.0  # unload a resident model after this long without a job
    generator: GeneratorSettings | None = None

    @property
    def tracks_dir(self) -> Path:
        return self.cache_dir / "tracks"

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        s = cls()
        if env.get(ENV_CACHE_DIR):
            cache_dir = Path(env[ENV_CACHE_DIR]).expanduser()
            if cache_dir.is_absolute():
                s.cache_dir = cache_dir
            else:  # relative to what? the daemon's cwd is not the user's: keep the default and say so
                log.warning("%s=%s is not an absolute path; using %s", ENV_CACHE_DIR, cache_dir, s.cache_dir)
        if env.get(ENV_LOG_DIR):
            # a relative value means the directory the command was started in: pinned now, before anything moves
            s.log_dir = Path(env[ENV_LOG_DIR]).expanduser().absolute()
        if env.get(ENV_PROVIDER):
            s.provider = env[ENV_PROVIDER].strip().lower()
        if env.get(ENV_THREADS, "").strip().isdigit():
            s.threads = int(env[ENV_THREADS])
        if env.get(ENV_DEFAULT_BACKEND):
            s.default_backend = env[ENV_DEFAULT_BACKEND].strip()
        for backend, var in ENV_MODEL_DIRS.items():
            if env.get(var):
                s.models[backend].dir = Path(env[var]).expanduser().absolute()
        if env.get(ENV_GENERATOR, "").strip():
            names = [n.strip() for n in env.get(ENV_GENERATOR_BACKENDS, "").split(",") if n.strip()]
            s.generator = GeneratorSettings(shlex.split(env[ENV_GENERATOR]), names or None)
        return s

    def apply_options(self, options: InitializeOptions) -> None:
        """Merge the `options` of `initialize` (schema-validated; the daemon has checked the backend names)."""
        if options.cache_dir:
            self.cache_dir = absolute_cache_dir(options.cache_dir)
        if options.provider:
            self.provider = options.provider
        if options.threads is not None:
            self.threads = options.threads
        if options.default_backend:
            self.default_backend = options.default_backend
        for backend, m in (options.models or {}).items():
            model = self.models.setdefault(backend, ModelSettings())
            if m.dir:
                model.dir = Path(m.dir).expanduser()  # absolute: the schema refuses a relative one
            if m.variant:
                model.variant = m.variant
        g = options.generator
        if g is not None:
            self.generator = (
                GeneratorSettings(
                    list(g.cmd),
                    list(g.backends) if g.backends else None,
                    True if g.retry is None else g.retry,
                    30.0 if g.connect_timeout_sec is None else g.connect_timeout_sec,
                )
                if g.cmd
                else None
            )


def absolute_cache_dir(value: str) -> Path:
    """`cache_dir` from a client: `~` expanded, and absolute — a relative path would resolve against the daemon's
    working directory, which is not the user's (the plugin expands it against Neovim's)."""
    from .errors import ErrorCode, LofiError

    path = Path(value).expanduser()
    if not path.is_absolute():
        raise LofiError(
            ErrorCode.INVALID_PARAMS,
            f"cache_dir must be an absolute path, got {value!r}",
            hint="send an absolute path (the Neovim plugin expands cache.dir with fnamemodify(dir, ':p'))",
        )
    return path
