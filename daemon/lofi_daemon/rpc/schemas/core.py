from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from .base import Strict
from .options import InitializeOptions

__all__ = ["ClientInfo", "InitializeOptions", "InitializeParams", "Strict"]


class ClientInfo(BaseModel):
    model_config = ConfigDict(strict=True)

    name: str = "unknown"
    version: str | None = None


class InitializeParams(BaseModel):
    # LSP clients add fields such as processId / capabilities; `options` is lofi's own and strict.
    model_config = ConfigDict(extra="allow", allow_inf_nan=False)

    client_info: ClientInfo | None = None
    options: InitializeOptions | None = None
