"""The command line runs the same code path as the RPC."""

from __future__ import annotations

import json
import subprocess
import sys

import soundfile as sf

from tests.daemon_client import daemon_env


def run(tmp_path, *args, **env):
    return subprocess.run(
        [sys.executable, "-m", "lofi_daemon", *args],
        capture_output=True,
        text=True,
        env=daemon_env(tmp_path, **env),
        timeout=60,
    )


def test_version(tmp_path):
    out = run(tmp_path, "--version")
    assert out.returncode == 0 and out.stdout.startswith("lofi-daemon 0.")


def test_generate_writes_a_track_and_copies_it(tmp_path):
    out = run(
        tmp_path,
        "generate",
        "rainy",
        "night",
        "--backend",
        "tone",
        "--duration",
        "1.5",
        "--seed",
        "3",
        "--output",
        str(tmp_path / "out.wav"),
        "--format",
        "wav",
    )
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    assert info["seed"] == 3 and info["path"] == str(tmp_path / "out.wav")
    audio, rate = sf.read(info["path"])
    assert rate == 16000 and len(audio) == 24000
    # The cache kept it: a second run is a cache hit with the same id.
    again = json.loads(
        run(
            tmp_path,
            "generate",
            "rainy night",
            "--backend",
            "tone",
            "--duration",
            "1.5",
            "--seed",
            "3",
            "--format",
            "wav",
        ).stdout
    )
    assert again["track_id"] == info["track_id"]


def test_generate_errors_clearly(tmp_path):
    out = run(tmp_path, "generate", "x", "--backend", "tone", "--duration", "500")
    assert out.returncode == 1 and "INVALID_DURATION" in out.stderr
    out = run(tmp_path, "generate", "x", "--backend", "tone", LOFI_TONE_NOT_INSTALLED="1")
    assert out.returncode == 1 and "BACKEND_NOT_INSTALLED" in out.stderr and "--allow-download" in out.stderr


def test_health_json(tmp_path):
    out = run(tmp_path, "health", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["packages"]["onnxruntime"] and "CPUExecutionProvider" in data["providers"]
    assert any(b["name"] == "tone" and b["installed"] for b in data["backends"])
    assert "ok" in data["audio"] and data["cache"]["dir"].endswith("tracks")
