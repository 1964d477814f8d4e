"""JSON-RPC 2.0 dispatch: validate the envelope, validate params with pydantic, call the handler,
turn every failure into an error object with a stable code. Nothing a client sends can raise out of here."""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from ..errors import ErrorCode, LofiError

log = logging.getLogger(__name__)

Handler = Callable[[Any], Any]

MAX_BATCH = 100  # requests in one batch
MAX_JSON_VALUES = 20_000  # values in one message (a batch of 100 full generate requests is ~2,000)
MAX_JSON_DEPTH = 32  # nesting levels; the deepest valid request (initialize in a batch) has 6
_STRINGS = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_BRACKETS = re.compile(rb"[\[\]{}]")


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


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"number {text[:40]} is out of range")
    return value


def _is_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_shape(body: bytes) -> None:
    """Refuse a body that would cost too much to parse, before parsing it: too many values (each becomes a
    Python object) or too deep (json recurses and would raise RecursionError). Strings are cut out first so
    brackets and commas inside them do not count; a `"` byte is always a quote in UTF-8."""
    bare = _STRINGS.sub(b"", body)
    opens = bare.count(b"[") + bare.count(b"{")
    values = bare.count(b",") + opens
    if values > MAX_JSON_VALUES or bare.count(b"]") + bare.count(b"}") > MAX_JSON_VALUES:
        raise LofiError(ErrorCode.INVALID_REQUEST, f"message has over {MAX_JSON_VALUES} JSON values")
    depth = 0
    for bracket in _BRACKETS.findall(bare):
        depth += 1 if bracket in b"[{" else -1
        if depth > MAX_JSON_DEPTH:
            raise LofiError(ErrorCode.INVALID_REQUEST, f"JSON nested deeper than {MAX_JSON_DEPTH} levels")


def decode_json(body: bytes) -> Any:
    """Strict JSON: UTF-8 only, no NaN/Infinity tokens, no number that overflows a float, bounded size and
    depth. Every failure is a LofiError (PARSE_ERROR or INVALID_REQUEST), never another exception."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise LofiError(ErrorCode.PARSE_ERROR, f"invalid JSON: not UTF-8 ({exc.reason})") from None
    check_shape(body)
    try:
        return json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    except json.JSONDecodeError as exc:
        raise LofiError(ErrorCode.PARSE_ERROR, f"invalid JSON: {exc}") from None
    except (ValueError, RecursionError) as exc:  # an int over 4300 digits, NaN, 1e999
        raise LofiError(ErrorCode.PARSE_ERROR, f"invalid JSON: {str(exc)[:200]}") from None


class Reply:
    """The answer to a request whose handler finishes later, on another thread (`Dispatcher.defer`). Send it once
    with `result` or `error`; the transport writes it whenever it comes."""

    def __init__(self, send: Callable[[Any], None], id_: Any) -> None:
        self._send = send
        self._id = id_

    def result(self, value: Any) -> None:
        self._send({"jsonrpc": "2.0", "id": self._id, "result": value})

    def error(self, exc: LofiError) -> None:
        self._send({"jsonrpc": "2.0", "id": self._id, "error": exc.to_error()})


class Dispatcher:
    def __init__(self) -> None:
        self._methods: dict[str, Method] = {}
        self._after: list[Callable[[], None]] = []
        # where a deferred reply goes (the server's writer); None: every request is answered in place
        self.reply_sink: Callable[[Any], None] | None = None
        self._deferrable: Any = None  # the id of the request being handled, while its answer may come later

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

    def params_model(self, name: str) -> type[BaseModel] | None:
        return self._methods[name].params_model

    def after_response(self, fn: Callable[[], None]) -> None:
        """Run `fn` once the current response has been written (e.g. a notification that must follow it)."""
        self._after.append(fn)

    def defer(self) -> Reply | None:
        """Let the current handler answer later: it returns the Reply, and whoever finishes the work sends the
        answer through it, so the dispatch thread goes on to the next request meanwhile. None when the answer
        must come now (a notification, a batch member, no transport that can send later): then the handler
        does its work in place."""
        if self._deferrable is None or self.reply_sink is None:
            return None
        return Reply(self.reply_sink, self._deferrable)

    def take_after_response(self) -> list[Callable[[], None]]:
        pending, self._after = self._after, []
        return pending

    def dispatch_bytes(self, body: bytes) -> Any:
        """Handle one frame body. Returns the response (dict or list for a batch) or None. Never raises."""
        try:
            message = decode_json(body)
        except LofiError as exc:
            return {"jsonrpc": "2.0", "id": None, "error": exc.to_error()}
        if isinstance(message, list):
            if not message:
                return error_response(None, ErrorCode.INVALID_REQUEST, "empty batch")
            if len(message) > MAX_BATCH:
                return error_response(
                    None, ErrorCode.INVALID_REQUEST, f"batch of {len(message)} exceeds {MAX_BATCH} requests"
                )
            replies = [r for r in (self.dispatch(m) for m in message) if r is not None]
            return replies or None
        return self.dispatch(message, deferrable=True)

    def dispatch(self, message: Any, deferrable: bool = False) -> dict[str, Any] | None:
        """Handle one request; None when there is nothing to send now (a notification, or a reply the handler
        deferred: `deferrable` allows that, for a request that is not part of a batch)."""
        try:
            return self._dispatch(message, deferrable)
        except Exception:  # a bug in the envelope handling itself; the dispatch loop must go on
            log.exception("dispatch failed")
            return error_response(None, ErrorCode.INTERNAL_ERROR, "internal error while dispatching")
        finally:
            self._deferrable = None

    def _dispatch(self, message: Any, deferrable: bool = False) -> dict[str, Any] | None:
        if not isinstance(message, dict):
            return error_response(None, ErrorCode.INVALID_REQUEST, "a request must be a JSON object")
        id_ = message.get("id")
        is_notification = "id" not in message
        if not isinstance(id_, (str, int, type(None))) or isinstance(id_, bool):
            return error_response(None, ErrorCode.INVALID_REQUEST, "id must be a string, an integer or null")
        if isinstance(id_, str) and not _is_unicode(id_):
            # A lone surrogate cannot be echoed back in UTF-8, so the client could never match the reply.
            return error_response(None, ErrorCode.INVALID_REQUEST, "id is not valid Unicode (lone surrogate)")
        if message.get("jsonrpc") != "2.0":
            return error_response(id_, ErrorCode.INVALID_REQUEST, 'jsonrpc must be "2.0"')
        name = message.get("method")
        if not isinstance(name, str):
            if "result" in message or "error" in message:
                return None  # a response to a request we never send; ignore
            return error_response(id_, ErrorCode.INVALID_REQUEST, "method must be a string")
        if deferrable and not is_notification and id_ is not None:
            self._deferrable = id_
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
        if is_notification or isinstance(result, Reply):  # (a Reply: the answer comes through it later)
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
