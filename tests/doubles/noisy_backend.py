"""A tone backend that writes to stdout in every way a careless library could."""

from __future__ import annotations

import os
import subprocess

from tests.doubles.tone_backend import ToneBackend


class NoisyBackend(ToneBackend):
    name = "noisy"

    def generate(self, request, progress, cancel, on_audio=None):
        print("PRINTED by a backend")
        os.write(1, b"RAW-FD1 written to fd 1\n")
        subprocess.run(["echo", "CHILD-PROCESS output"], check=True)
        return super().generate(request, progress, cancel, on_audio)
