"""MusicGen-small on ONNX Runtime: `MusicGenBackend(settings, notify)` implements backends.base.Backend."""

from .backend import MusicGenBackend

__all__ = ["MusicGenBackend"]
