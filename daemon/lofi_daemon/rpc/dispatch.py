"""JSON-RPC 2.0 dispatch: validate the envelope, validate params with pydantic, call the handler,
turn every failure into an error object with a stable code. Nothing a client sends can raise out of here."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from ..errors import ErrorCode, LofiError

log = logging.getLogger(__name__)

Handler = Callable[[Any], Any]


@dataclass
class Method:
    name: str
    handler: Handler
    params_model: type[BaseModel] | None


def error_response(id_: Any, code: ErrorCode, message: str, **data: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": id_, "error": LofiError(code, message, **data).to_error()}


def _pydantic_details(exc: ValidationError) -> list[dict[str, Any]]:
    return [
        {"field": ".".join(str(p) for p in e["loc"]) or "(params)", "problem": e["msg"]}
        for e in exc.errors(include_url=False)
    ]


class Dispatcher:
    def __init__(self) -> None:
        self._methods: dict[str, Method] = {}
        self._after: list[Callable[[], None]] = []

    def method(self, name: str, params_model: type[BaseModel] | None = None) -> Callable[[Handler], Handler]:
        def register(fn: Handler) -> Handler:
            if name in self._methods:
                raise ValueError(f"method {name!r} registered twice")
            self._methods[name] = Method(name, fn, params_model)
            return fn

        return register

    @property
    def method_names(self) -> list[str]:
        return sorted(self._methods)

    def after_response(self, fn: Callable[[], None]) -> None:
        """Run `fn` once the current response has been written (e.g. a notification that must follow it)."""
        self._after.append(fn)

    def take_after_response(self) -> list[Callable[[], None]]:
        pending, self._after = self._after, []
        return pending

    def dispatch_bytes(self, body: bytes) -> Any:
        """Handle one frame body. Returns the response (dict or list for a batch) or None."""
        try:
            message = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            return error_response(None, ErrorCode.PARSE_ERROR, f"invalid JSON: {exc}")
        if isinstance(message, list):
            if not message:
                return error_response(None, ErrorCode.INVALID_REQUEST, "empty batch")
            replies = [r for r in (self.dispatch(m) for m in message) if r is not None]
            return replies or None
        return self.dispatch(message)

    def dispatch(self, message: Any) -> dict[str, Any] | None:
        if not isinstance(message, dict):
            return error_response(None, ErrorCode.INVALID_REQUEST, "a request must be a JSON object")
        id_ = message.get("id")
        is_notification = "id" not in message
        if not isinstance(id_, (str, int, type(None))) or isinstance(id_, bool):
            return error_response(None, ErrorCode.INVALID_REQUEST, "id must be a string, an integer or null")
        if message.get("jsonrpc") != "2.0":
            return error_response(id_, ErrorCode.INVALID_REQUEST, 'jsonrpc must be "2.0"')
        name = message.get("method")
        if not isinstance(name, str):
            if "result" in message or "error" in message:
                return None  # a response to a request we never send; ignore
            return error_response(id_, ErrorCode.INVALID_REQUEST, "method must be a string")
        try:
            result = self._call(name, message.get("params"))
        except LofiError as exc:
            if is_notification:
                log.warning("notification %s failed: %s", name, exc.message)
                return None
            return {"jsonrpc": "2.0", "id": id_, "error": exc.to_error()}
        except Exception as exc:  # a bug in a handler must not take the daemon down
            log.exception("internal error in %s", name)
            if is_notification:
                return None
            return error_response(id_, ErrorCode.INTERNAL_ERROR, f"internal error in {name}: {exc}")
        if is_notification:
            return None
        return {"jsonrpc": "2.0", "id": id_, "result": result}

    def _call(self, name: str, params: Any) -> Any:
        method = self._methods.get(name)
        if method is None:
            raise LofiError(ErrorCode.METHOD_NOT_FOUND, f"method not found: {name}")
        if params is not None and not isinstance(params, (dict, list)):
            raise LofiError(ErrorCode.INVALID_PARAMS, "params must be an object or an array")
        if method.params_model is None:
            if params not in (None, {}, []):
                raise LofiError(ErrorCode.INVALID_PARAMS, f"{name} takes no params")
            result = method.handler(None)
        else:
            if isinstance(params, list):
                raise LofiError(ErrorCode.INVALID_PARAMS, f"{name} takes named params (an object)")
            try:
                parsed = method.params_model.model_validate(params or {})
            except ValidationError as exc:
                details = _pydantic_details(exc)
                first = details[0]
                raise LofiError(
                    ErrorCode.INVALID_PARAMS,
                    f"invalid params for {name}: {first['field']}: {first['problem']}",
                    details=details,
                ) from None
            result = method.handler(parsed)
        if isinstance(result, BaseModel):
            return result.model_dump(mode="json")
        return result
