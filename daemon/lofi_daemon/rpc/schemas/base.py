"""The one pydantic config every RPC schema shares: unknown fields, coerced types and non-finite numbers are errors.

JSON gives Python `NaN` and `Infinity` (and `1e999` overflows to infinity); a non-finite number that reached the
player or the cache once made every later status call fail, so no schema accepts one.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    """Unknown fields are an error (a typo in a param name is never silently ignored), types are not coerced
    ("30" is not a number, true is not 1) and every float is finite."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)
