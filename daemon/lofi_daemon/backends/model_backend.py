"""What the model backends (MusicGen, ACE-Step) share: where the model comes from (a local directory or a hub
variant), whether it is installed, the common part of `status()`, downloading with consent, warnings sent once,
and the lazily loaded pipeline. Each backend adds its own files check, local model version and status fields."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Generic, TypeVar

from ..cancel import CancelToken
from ..config import Settings
from ..errors import LofiError
from ..models import download as hub
from ..models.registry import ModelVariant, get_variant
from ..runtime.providers import plan_providers

NotifyFn = Callable[[str, dict[str, Any]], None]
PipelineT = TypeVar("PipelineT")


class ModelBackend(Generic[PipelineT]):
    name: str  # also the key in settings.models and in the variant registry
    variants: Mapping[str, ModelVariant]

    def __init__(self, settings: Settings, notify: NotifyFn | None = None) -> None:
        self.settings = settings
        self.notify = notify or (lambda method, params: None)
        self._pipeline: PipelineT | None = None
        self._warned: set[str] = set()

    # ---- where the model comes from -------------------------------------------------------------------------
    @property
    def provider(self) -> str:
        return plan_providers(self.settings.provider).preferred

    @property
    def local_dir(self) -> Path | None:
        m = self.settings.models.get(self.name)
        return Path(m.dir).expanduser() if m and m.dir else None

    @property
    def requested_variant(self) -> str | None:
        m = self.settings.models.get(self.name)
        return m.variant if m else None

    def variant_alias(self, name: str) -> str | None:
        """Another accepted spelling of a variant name (e.g. a dtype); None when there is none."""
        return None

    def variant(self) -> ModelVariant:
        """The hub variant in use (when no local directory is set); MODEL_NOT_FOUND for an unknown name."""
        name = self.requested_variant
        if name and name not in self.variants:
            name = self.variant_alias(name) or name
        return get_variant(self.name, name, self.provider)

    # ---- what each backend provides -------------------------------------------------------------------------
    def check_model(self) -> None:
        """Raise MODEL_NOT_FOUND / BACKEND_NOT_INSTALLED unless every model file is here (never downloads)."""
        raise NotImplementedError

    def local_model_version(self, local_dir: Path) -> str:
        """model_version of the model in a local directory (a fingerprint of its files)."""
        raise NotImplementedError

    # ---- install state and status ---------------------------------------------------------------------------
    def model_version(self) -> str:
        if self.local_dir is not None:
            return self.local_model_version(self.local_dir)
        return self.variant().model_version

    def is_installed(self) -> bool:
        try:
            self.check_model()
        except LofiError:
            return False
        return True

    def status(self) -> dict[str, Any]:
        """The common fields; backends add theirs (name, rates, durations and `loaded` are added by
        get_backends from the class attributes)."""
        out: dict[str, Any] = {
            "installed": self.is_installed(),
            "model_version": self.model_version(),
            "provider": self.provider,
            "variants": sorted(self.variants),
        }
        if self.local_dir is not None:
            out.update(source="local", dir=str(self.local_dir))
        else:
            v = self.variant()
            out.update(source="hub", variant=v.name, repo_id=v.repo_id, revision=v.revision)
            out["download_size_bytes"] = v.approx_total
            out["missing_files"] = [f.path for f in hub.missing_files(v)]
        return out

    def download(self, progress: Callable[[dict[str, Any]], None] | None, cancel: CancelToken) -> None:
        """Fetch the hub variant's files (the caller has the user's consent); resumes partial files. With a local
        directory set there is nothing to fetch: its files are checked instead. Without a `progress` callable
        the backend sends `download_progress` notifications itself."""
        if self.local_dir is not None:
            self.check_model()
            return
        hub.download_variant(self.variant(), progress or self._notify_download, cancel)

    def _notify_download(self, fields: dict[str, Any]) -> None:
        self.notify("download_progress", {"backend": self.name, **fields})

    # ---- lifecycle ------------------------------------------------------------------------------------------
    def _warn(self, message: str) -> None:
        """Tell the user once per message (a `log` notification at level "warning")."""
        if message not in self._warned:
            self._warned.add(message)
            self.notify("log", {"level": "warning", "message": message})

    def load(self) -> None:
        raise NotImplementedError

    def unload(self) -> None:
        self._pipeline = None

    @property
    def loaded(self) -> bool:
        return self._pipeline is not None

    @property
    def pipeline(self) -> PipelineT:
        self.load()
        assert self._pipeline is not None
        return self._pipeline
