"""The command line runs the same code path as the RPC."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from tests.daemon_client import CEILING, daemon_env


def run(tmp_path, *args, **env):
    return subprocess.run(
        [sys.executable, "-m", "lofi_daemon", *args],
        capture_output=True,
        text=True,
        env=daemon_env(tmp_path, **env),
        timeout=300,
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


def test_generate_with_a_preset_alone(tmp_path):
    out = run(tmp_path, "generate", "--preset", "rainy_night", "--backend", "tone", "--duration", "1")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["prompt"].startswith("lofi hip hop, melancholic")
    out = run(tmp_path, "generate", "--backend", "tone")
    assert out.returncode == 1 and "INVALID_PROMPT" in out.stderr


def test_health_json(tmp_path):
    out = run(tmp_path, "health", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["packages"]["onnxruntime"] and "CPUExecutionProvider" in data["providers"]
    assert any(b["name"] == "tone" and b["installed"] for b in data["backends"])
    assert "ok" in data["audio"] and data["cache"]["dir"].endswith("tracks")
    lyrics = data["lyrics"]["languages"]
    assert lyrics["ja"]["name"] == "Japanese" and set(lyrics["ja"]) == {"name", "available", "missing"}
    assert len(lyrics) == 17 and data["lyrics"]["setup"] == "scripts/setup --lyrics"


MAJOR = {"wav": "WAV", "flac": "FLAC", "ogg": "OGG", "mp3": "MP3"}


def gen_to(tmp_path, output, *extra):
    return run(
        tmp_path,
        "generate",
        "rainy night",
        "--backend",
        "tone",
        "--duration",
        "1.5",
        "--seed",
        "3",
        "--output",
        str(output),
        *extra,
    )


@pytest.mark.parametrize("fmt", ["wav", "ogg", "flac", "mp3"])
def test_output_is_written_in_the_format_its_name_says(tmp_path, fmt):
    if fmt == "mp3" and "MP3" not in sf.available_formats():
        pytest.skip("this libsndfile has no MP3 encoder")
    out_file = tmp_path / "music" / f"out.{fmt}"
    out = gen_to(tmp_path, out_file)
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    assert info["path"] == str(out_file) and info["format"] == fmt
    assert (info["sample_rate"], info["channels"]) == (16000, 1)
    written = sf.info(str(out_file))
    assert written.format == MAJOR[fmt]  # not FLAC bytes under another name
    assert (written.samplerate, written.channels) == (16000, 1)
    # a lossy encoder may pad a frame (mp3: 1152 samples) at either end
    assert abs(written.duration - 1.5) <= 2 * 1152 / 16000
    assert info["duration_sec"] == pytest.approx(written.duration, abs=1e-3)
    assert f"wrote {out_file} ({fmt}, 16000 Hz, 1 ch" in out.stderr
    assert [p.name for p in out_file.parent.iterdir()] == [out_file.name]  # no temp file left behind
    if fmt in ("wav", "flac"):  # lossless: the very samples of the cached track
        cached = next((tmp_path / "cache" / "tracks").glob(f"{info['track_id']}.*"))
        a, _ = sf.read(str(out_file), dtype="int16")
        b, _ = sf.read(str(cached), dtype="int16")
        np.testing.assert_array_equal(a, b)


def test_output_format_mismatch_or_unknown_is_refused_before_generating(tmp_path):
    out = gen_to(tmp_path, tmp_path / "x.mp3", "--format", "wav")
    assert out.returncode == 1 and "INVALID_PARAMS" in out.stderr
    assert "x.mp3 names the mp3 format but --format is wav" in out.stderr
    assert "generating" not in out.stderr and not (tmp_path / "x.mp3").exists()
    out = gen_to(tmp_path, tmp_path / "x.audio")
    assert out.returncode == 1 and "cannot tell the audio format" in out.stderr and "--format" in out.stderr
    assert not (tmp_path / "x.audio").exists()
    # --format decides for a name that says nothing
    out = gen_to(tmp_path, tmp_path / "x.audio", "--format", "wav")
    assert out.returncode == 0, out.stderr
    assert sf.info(str(tmp_path / "x.audio")).format == "WAV"


def test_output_that_cannot_be_written_is_a_clear_error(tmp_path):
    (tmp_path / "taken").write_text("a file, not a folder")
    out = gen_to(tmp_path, tmp_path / "taken" / "x.wav")
    assert out.returncode == 1 and "CACHE_ERROR" in out.stderr and "cannot write" in out.stderr
    assert "Traceback" not in out.stderr


def test_ctrl_c_cancels_the_generation_cleanly(tmp_path):
    """The first Ctrl-C cancels like :Lofi cancel: the step ends, exit status 130, no track and no traceback."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "lofi_daemon", "generate", "slow", "--backend", "tone", "--duration", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=daemon_env(tmp_path, LOFI_TONE_STEPS="1000", LOFI_TONE_STEP_SEC="0.05"),
        cwd=tmp_path,
        text=True,
    )
    err = ""
    while "%" not in err:  # progress shows the job is inside the backend's steps
        ch = proc.stderr.read(1)
        assert ch, f"the CLI ended early: {err}"
        err += ch
    proc.send_signal(signal.SIGINT)
    out, rest = proc.communicate(timeout=CEILING)
    err += rest
    assert proc.returncode == 130, err
    assert "cancelled; no track was written" in err and "Traceback" not in err
    assert out == ""
    assert not list((tmp_path / "cache").rglob("*.flac"))
