from __future__ import annotations

import pytest

from tests.daemon_client import DaemonProcess


@pytest.fixture
def daemon(tmp_path):
    """A real daemon subprocess with the tone test backend as default."""
    procs = []

    def start(*args: str, **env: str) -> DaemonProcess:
        env.setdefault("LOFI_DEFAULT_BACKEND", "tone")
        p = DaemonProcess(tmp_path, args, **env)
        procs.append(p)
        return p

    yield start
    for p in procs:
        p.close()
