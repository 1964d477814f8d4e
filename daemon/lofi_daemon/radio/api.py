"""radio_start, radio_steer, radio_stop, radio_status: thin handlers over the daemon's one Radio."""

from __future__ import annotations

from typing import Any

from ..rpc.dispatch import Dispatcher
from ..rpc.schemas.radio import RadioStartParams, RadioSteerParams
from .plans import PLANS
from .session import Radio


def register(dispatcher: Dispatcher, *, radio: Radio) -> None:
    @dispatcher.method("radio_start", RadioStartParams)
    def radio_start(p: RadioStartParams) -> dict[str, Any]:
        return radio.start(p)

    @dispatcher.method("radio_steer", RadioSteerParams)
    def radio_steer(p: RadioSteerParams) -> dict[str, Any]:
        return radio.steer(p)

    @dispatcher.method("radio_stop")
    def radio_stop(_: None) -> dict[str, Any]:
        return radio.stop()

    @dispatcher.method("radio_status")
    def radio_status(_: None) -> dict[str, Any]:
        return {**radio.status(), "plans": sorted(PLANS)}
