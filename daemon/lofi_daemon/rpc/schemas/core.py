from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class Strict(BaseModel):
    """Unknown fields are an error: a typo in a param name should not be silently ignored."""

    model_config = ConfigDict(extra="forbid")


class ClientInfo(BaseModel):
    name: str = "unknown"
    version: str | None = None


class ModelOptions(Strict):
    dir: str | None = None
    variant: str | None = None


class InitializeOptions(BaseModel):
    # Lenient: a newer plugin may send options this daemon does not know yet.
    model_config = ConfigDict(extra="allow")

    cache_dir: str | None = None
    provider: Literal["auto", "cpu", "cuda", "coreml"] | None = None
    threads: int | None = Field(default=None, ge=0, le=256)
    default_backend: str | None = None
    models: dict[str, ModelOptions] | None = None
    cache: dict[str, Any] | None = None
    playback: dict[str, Any] | None = None
    prefetch: dict[str, Any] | None = None


class InitializeParams(BaseModel):
    model_config = ConfigDict(extra="allow")  # LSP clients add fields such as processId / capabilities

    client_info: ClientInfo | None = None
    options: InitializeOptions | None = None
