"""Skip a test module when PortAudio cannot be loaded, with the reason.

`pytest.importorskip("sounddevice")` is not enough: sounddevice imports fine as a package, then raises OSError
("PortAudio library not found") when the C library is missing, which stops collection of the whole suite.
"""

from __future__ import annotations

import pytest


def require_portaudio():
    """Return the sounddevice module, or skip the calling module (import time) or test (run time)."""
    try:
        import sounddevice
    except ImportError as e:
        pytest.skip(f"sounddevice is not installed ({e})", allow_module_level=True)
    except OSError as e:  # the Python package is there, the PortAudio library is not
        pytest.skip(
            f"PortAudio is missing ({e}); Debian/Ubuntu: apt-get install libportaudio2",
            allow_module_level=True,
        )
    return sounddevice
