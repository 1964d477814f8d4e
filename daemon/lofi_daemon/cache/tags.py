"""The tag codec: each cached file carries its own metadata as JSON in its `comment` tag (so the index can be
rebuilt from the files), and the audio formats the cache writes."""

from __future__ import annotations

import base64
import json
import logging
import zlib
from typing import Any

import soundfile as sf

from ..errors import ErrorCode, LofiError

log = logging.getLogger(__name__)

TAG_PREFIX = "lofi-track:1:"  # plain JSON follows
TAG_PREFIX_Z = "lofi-track:1z:"  # base64(zlib(JSON)) follows; used when the plain form is too long
# libsndfile silently drops WAV INFO strings longer than about 2 kB in total; other containers take far more.
MAX_TAG_CHARS = {"wav": 1800}
# format -> (libsndfile major format, subtype, file extension)
FORMATS: dict[str, tuple[str, str, str]] = {
    "flac": ("FLAC", "PCM_16", "flac"),
    "wav": ("WAV", "PCM_16", "wav"),
    "ogg": ("OGG", "VORBIS", "ogg"),
    "mp3": ("MP3", "MPEG_LAYER_III", "mp3"),
}
EXTENSIONS = {ext: name for name, (_, _, ext) in FORMATS.items()}


def check_format(fmt: str) -> tuple[str, str, str]:
    """Return (major, subtype, ext) for a cache format name, or raise CACHE_ERROR if unsupported here."""
    fmt = (fmt or "").lower()
    if fmt not in FORMATS:
        raise LofiError(
            ErrorCode.CACHE_ERROR, f"unknown audio format {fmt!r}", details=f"choose one of {sorted(FORMATS)}"
        )
    major, subtype, ext = FORMATS[fmt]
    if major not in sf.available_formats() or subtype not in sf.available_subtypes(major):
        raise LofiError(
            ErrorCode.CACHE_ERROR,
            f"this libsndfile ({sf.__libsndfile_version__}) cannot write {fmt}",
            hint="use flac (default), wav or ogg, or install a libsndfile built with MPEG support",
        )
    return major, subtype, ext


def encode_tag(meta: dict[str, Any], fmt: str) -> str:
    text = json.dumps(meta, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    limit = MAX_TAG_CHARS.get(fmt)
    tag = TAG_PREFIX + text
    if limit is None or len(tag) <= limit:
        return tag
    tag = TAG_PREFIX_Z + base64.b64encode(zlib.compress(text.encode("utf-8"), 9)).decode("ascii")
    if len(tag) <= limit:
        return tag
    # Still too long for this container (e.g. long lyrics in a WAV): keep everything but the longest params.
    slim = dict(meta, params={k: v for k, v in meta["params"].items() if len(json.dumps(v)) <= 200})
    slim["info"] = {}
    slim["truncated"] = True
    log.warning("track %s: metadata too long for %s tags; long params not embedded", meta["track_id"], fmt)
    text = json.dumps(slim, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return TAG_PREFIX_Z + base64.b64encode(zlib.compress(text.encode("utf-8"), 9)).decode("ascii")


def decode_tag(tag: str) -> dict[str, Any] | None:
    try:
        if tag.startswith(TAG_PREFIX):
            return json.loads(tag[len(TAG_PREFIX) :])
        if tag.startswith(TAG_PREFIX_Z):
            return json.loads(zlib.decompress(base64.b64decode(tag[len(TAG_PREFIX_Z) :])).decode("utf-8"))
    except (ValueError, zlib.error):
        return None
    return None
