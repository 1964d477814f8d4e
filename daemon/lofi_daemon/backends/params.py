"""Strict per-backend generation parameters: each backend declares a pydantic model of exactly what it takes.

A parameter of another backend (`inference_steps` for MusicGen), a coerced type ("30", true for 1) or a non-finite
number is an error that names the parameter, never silently ignored or converted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import ErrorCode, LofiError


class BackendParams(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


P = TypeVar("P", bound=BackendParams)

# What the classifier-free guidance steers away from (every backend takes it; "" = none, the model's own
# unconditional branch). The same limit as the prompt.
MAX_NEGATIVE_PROMPT_CHARS = 1000
NegativePrompt = Annotated[str, Field(max_length=MAX_NEGATIVE_PROMPT_CHARS)]


def clean_text(value: str) -> str:
    """Runs of whitespace (newlines included) as one space, none at the ends: spellings that give the same
    tokens give the same track id."""
    return " ".join(value.split())


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def parse_params(
    model: type[P], raw: Mapping[str, Any], backend: str, codes: Mapping[str, ErrorCode] | None = None
) -> P:
    """Validate `raw` against `model`; LofiError naming the parameter (with its product code from `codes`,
    INVALID_PARAMS otherwise) on the first problem."""
    unknown = sorted(set(raw) - set(model.model_fields))
    if unknown:
        raise LofiError(
            ErrorCode.INVALID_PARAMS,
            f"{backend} does not take {', '.join(unknown)} (its params: {', '.join(model.model_fields)})",
            param=unknown[0],
            details=[{"field": name, "problem": f"is not a {backend} param"} for name in unknown],
        )
    try:
        return model.model_validate(dict(raw))
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        field = str(first["loc"][0]) if first["loc"] else "(params)"
        message = f"{field} for {backend}: {first['msg']}, got {_short(first.get('input'))}"
        bounds = _bounds(model, field)
        if bounds:
            message += f" (allowed: {bounds})"
        details = [{"field": field, "problem": first["msg"]}]  # the shape dispatch gives schema errors
        code = (codes or {}).get(field, ErrorCode.INVALID_PARAMS)
        raise LofiError(code, message, param=field, details=details) from None


def one_of(
    value: str,
    allowed: Sequence[str],
    field: str,
    backend: str,
    code: ErrorCode = ErrorCode.INVALID_PARAMS,
    aliases: Mapping[str, str] | None = None,
) -> str:
    """A choice among `allowed`, ignoring case and surrounding spaces (after `aliases`): its canonical spelling,
    or LofiError naming the choices."""
    key = value.strip().lower()
    key = (aliases or {}).get(key, key)
    if key not in allowed:
        raise LofiError(
            code, f"{field} must be one of {', '.join(allowed)} for {backend}, got {value!r}", param=field
        )
    return key


def _bounds(model: type[BaseModel], field: str) -> str:
    """ "between 1 and 10" from the field's ge/le constraints, or ""."""
    info = model.model_fields.get(field)
    lo = hi = None
    for m in info.metadata if info else ():
        lo = getattr(m, "ge", None) if getattr(m, "ge", None) is not None else lo
        hi = getattr(m, "le", None) if getattr(m, "le", None) is not None else hi
    return f"between {lo:g} and {hi:g}" if lo is not None and hi is not None else ""
