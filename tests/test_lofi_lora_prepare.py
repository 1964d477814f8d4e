"""`lofi-lora prepare` / `validate` on synthetic audio with exact expected verdicts."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from scripts.lofi_lora import cli, quality
from scripts.lofi_lora.errors import ENVIRONMENT, FAILED_INPUT, USAGE

SR = 16_000  # sources at 16 kHz keep the files small; prepare resamples them to 48 kHz
PEAK = 10 ** (-1 / 20)


def tone(seconds: float, amp: float = 0.5, freq: float = 220.0, sr: int = SR) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def write(path: Path, audio: np.ndarray, sr: int = SR, **kw) -> Path:
    sf.write(str(path), audio, sr, **kw)
    return path


def run_json(capsys, *argv: str) -> tuple[int, dict]:
    code = cli.main([*argv, "--json", "--quiet"])
    out = capsys.readouterr().out.strip().splitlines()
    return code, json.loads(out[-1]) if out else {}


@pytest.fixture
def raw(tmp_path: Path) -> Path:
    """One file per rule, each in a different container."""
    d = tmp_path / "raw"
    d.mkdir()
    rng = np.random.default_rng(0)
    write(d / "tone.wav", tone(40))
    write(d / "noise.flac", (0.3 * rng.standard_normal((40 * SR, 2))).astype(np.float32))
    write(d / "vorbis.ogg", tone(35, freq=330), format="OGG", subtype="VORBIS")
    write(d / "layer3.mp3", tone(35, freq=440), format="MP3")
    write(d / "short.wav", tone(10))
    clipped = np.clip(tone(40, amp=2.0), -1, 1)  # a third of every period sits at full scale
    write(d / "clipped.wav", clipped)
    quiet = np.concatenate([tone(10), np.zeros(50 * SR, np.float32)])  # 50 of 60 s silent
    write(d / "silent.flac", quiet)
    return d


def test_every_rule_gives_its_exact_verdict(raw, tmp_path, capsys):
    out = tmp_path / "audio"
    code, res = run_json(capsys, "prepare", str(raw), "--out", str(out))
    assert code == 0, res
    verdicts = {Path(f["source"]).name: f["verdict"] for f in res["files"]}
    assert verdicts == {
        "tone.wav": "ok",
        "noise.flac": "ok",
        "vorbis.ogg": "ok",
        "layer3.mp3": "ok",
        "short.wav": "too_short",
        "clipped.wav": "clipping",
        "silent.flac": "silence",
    }
    assert res["verdicts"] == {"ok": 4, "too_short": 1, "clipping": 1, "silence": 1}
    assert sorted(p.name for p in out.glob("*.flac")) == [
        "layer3.flac",
        "noise.flac",
        "tone.flac",
        "vorbis.flac",
    ]
    assert json.loads((out / "prepare_report.json").read_text())["verdicts"] == res["verdicts"]
    by = {Path(f["source"]).name: f for f in res["files"]}
    # a clean tone at −6 dBFS scores every point; each component is shown
    assert by["tone.wav"]["components"] == {"clipping": 40.0, "silence": 40.0, "level": 20.0}
    assert by["tone.wav"]["score"] == 100.0
    # 50 of 60 s silent: 40 × (1 − 5/6) silence points, and the verdict names the flag
    assert by["silent.flac"]["components"]["silence"] == pytest.approx(40 / 6, abs=0.1)
    assert by["silent.flac"]["flags"] == ["silence"] and not by["silent.flac"]["usable"]
    assert by["clipped.wav"]["clipped_fraction"] > 0.3 and by["clipped.wav"]["components"]["clipping"] == 0.0
    assert by["short.wav"]["output"] is None and "shorter than 30 s" in by["short.wav"]["notes"][0]


def test_output_is_48k_stereo_at_minus_one_dbfs(raw, tmp_path, capsys):
    out = tmp_path / "audio"
    code, _ = run_json(capsys, "prepare", str(raw / "tone.wav"), "--out", str(out))
    assert code == 0
    audio, sr = sf.read(str(out / "tone.flac"), always_2d=True)
    assert sr == 48_000 and audio.shape == (40 * 48_000, 2)
    # 24-bit FLAC quantises to 2^-23; the resampler's ripple on a 220 Hz tone is far below 1e-3
    assert np.max(np.abs(audio)) == pytest.approx(PEAK, abs=1e-3)
    np.testing.assert_array_equal(audio[:, 0], audio[:, 1])


@pytest.mark.slow
def test_long_track_is_trimmed_at_its_quiet_point_with_a_fade(tmp_path, capsys):
    gap = (225.0, 226.0)  # the only quiet stretch inside the last 30 s before 240 s
    audio = tone(250)
    audio[int(gap[0] * SR) : int(gap[1] * SR)] = 0
    src = write(tmp_path / "long.wav", audio)
    code, res = run_json(capsys, "validate", str(src))
    assert code == 0 and res["verdict"] == "trimmed" and res["usable"]
    assert gap[0] < res["trimmed_at_sec"] <= gap[1]
    assert res["output_sec"] == res["trimmed_at_sec"] and res["duration_sec"] == 250.0
    out, rep = quality.process(np.repeat(tone(250, sr=48_000)[:, None], 2, axis=1))
    assert rep.verdict == "trimmed" and len(out) == int(rep.trimmed_at_sec * 48_000)
    # the fade ends at silence and the last 2 s never rise above the level before them
    assert np.max(np.abs(out[-10:])) < 1e-3
    assert np.max(np.abs(out[-48_000:])) < np.max(np.abs(out[-96_000:-48_000])) <= PEAK + 1e-6


def test_validate_writes_nothing_and_reports_components(raw, capsys):
    before = sorted(raw.iterdir())
    code, res = run_json(capsys, "validate", str(raw / "clipped.wav"))
    assert code == 0 and res["verdict"] == "clipping" and res["usable"] is False
    assert set(res["components"]) == {"clipping", "silence", "level"}
    assert res["score"] == sum(res["components"].values())
    assert sorted(raw.iterdir()) == before


def test_keep_flagged_and_mp3_320k(raw, tmp_path, capsys):
    out = tmp_path / "mp3"
    src = raw / "clipped.wav"
    code, res = run_json(capsys, "prepare", str(src), "--out", str(out), "--format", "mp3", "--keep-flagged")
    assert code == 0 and res["written"] == 1
    info = sf.info(str(out / "clipped.mp3"))
    assert info.samplerate == 48_000 and info.channels == 2
    kbps = (out / "clipped.mp3").stat().st_size * 8 / 40 / 1000
    assert 310 < kbps < 335  # constant 320 kbps plus headers


def test_dry_run_and_workers(raw, tmp_path, capsys):
    out = tmp_path / "audio"
    code, res = run_json(capsys, "prepare", str(raw), "--out", str(out), "--dry-run", "--workers", "2")
    assert code == 0 and res["written"] == 4 and res["dry_run"] is True
    assert not out.exists()


def test_data_dir_default_and_bad_arguments(raw, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LOFI_LORA_DATA_DIR", str(tmp_path / "data"))
    code, res = run_json(capsys, "prepare", str(raw / "tone.wav"))
    assert code == 0 and (tmp_path / "data" / "audio" / "tone.flac").is_file()
    assert run_json(capsys, "prepare", str(tmp_path / "nope"))[0] == USAGE
    assert run_json(capsys, "prepare", str(raw), "--workers", "0")[0] == USAGE
    (raw / "tone.flac").write_bytes((raw / "noise.flac").read_bytes())
    code, res = run_json(capsys, "prepare", str(raw), "--out", str(tmp_path / "x"))
    assert code == USAGE and "rename one" in res["error"]
    code, res = run_json(capsys, "prepare", str(raw / "noise.flac"), "--out", str(raw))
    assert code == USAGE and "replace its source" in res["error"]


def test_nothing_usable_fails_with_the_report(raw, tmp_path, capsys):
    code, res = run_json(capsys, "prepare", str(raw / "short.wav"), "--out", str(tmp_path / "o"))
    assert code == FAILED_INPUT and "too_short" in res["error"]
    assert (tmp_path / "o" / "prepare_report.json").is_file()


def test_garbage_file_is_unreadable(tmp_path, capsys):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF not really a wave file")
    code, res = run_json(capsys, "validate", str(bad))
    assert code == FAILED_INPUT and "cannot read audio" in res["error"]


def _fake_ffmpeg(bin_dir: Path, body: str) -> None:
    """An `ffmpeg` for the M4A path: it checks the decode command lofi-lora sends and answers like ffmpeg."""
    exe = bin_dir / "ffmpeg"
    exe.write_text(f"#!{sys.executable}\n{body}")
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)


def test_m4a_without_ffmpeg_is_an_environment_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    src = tmp_path / "song.m4a"
    src.write_bytes(b"\0" * 64)
    code, res = run_json(capsys, "validate", str(src))
    assert code == ENVIRONMENT and "needs ffmpeg" in res["error"]
    code, res = run_json(capsys, "prepare", str(src), "--out", str(tmp_path / "o"))
    assert code == FAILED_INPUT  # in a batch it is that file's verdict, and nothing else was usable
    report = json.loads((tmp_path / "o" / "prepare_report.json").read_text())
    assert report["files"][0]["verdict"] == "unreadable"


def test_m4a_decodes_through_ffmpeg_raw_float_stream(tmp_path, capsys, monkeypatch):
    """The fake decodes a WAV (named .m4a) with soundfile and streams f32le exactly as the real ffmpeg would for
    the flags sent: this checks the command line and the parsing of the stream, not ffmpeg itself."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _fake_ffmpeg(
        bin_dir,
        "import sys, soundfile as sf\n"
        "a = sys.argv[1:]\n"
        "assert a[a.index('-f') + 1] == 'f32le' and a[a.index('-ac') + 1] == '2' and a[-1] == 'pipe:1'\n"
        "assert a[a.index('-ar') + 1] == '48000' and '-nostdin' in a\n"
        "x, sr = sf.read(a[a.index('-i') + 1], dtype='float32')\n"
        "sys.stdout.buffer.write(x.astype('<f4').tobytes())\n",
    )
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    stereo = np.stack([tone(31, sr=48_000), tone(31, freq=300, sr=48_000)], axis=1)
    src = write(tmp_path / "song.m4a", stereo, sr=48_000, format="WAV", subtype="FLOAT")
    code, res = run_json(capsys, "prepare", str(src), "--out", str(tmp_path / "o"))
    assert code == 0 and res["files"][0]["verdict"] == "ok"
    audio, _ = sf.read(str(tmp_path / "o" / "song.flac"))
    expected = stereo * (PEAK / np.max(np.abs(stereo)))
    np.testing.assert_allclose(audio, expected, atol=2**-22)


def test_ffmpeg_failure_is_reported(tmp_path, capsys, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _fake_ffmpeg(bin_dir, "import sys\nsys.stderr.write('moov atom not found\\n')\nsys.exit(1)\n")
    monkeypatch.setenv("PATH", str(bin_dir))
    src = tmp_path / "broken.m4a"
    src.write_bytes(b"\0" * 64)
    code, res = run_json(capsys, "validate", str(src))
    assert code == FAILED_INPUT and "moov atom not found" in res["error"]


def test_silent_file_is_silence_not_a_crash():
    out, rep = quality.process(np.zeros((31 * 48_000, 2), np.float32))
    assert rep.verdict == "silence" and rep.silent_fraction == 1.0 and rep.components["level"] == 0.0


def test_real_ffmpeg_decodes_an_aac_m4a(tmp_path, capsys):
    import shutil
    import subprocess

    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        pytest.skip("ffmpeg is not installed (the fake-ffmpeg tests above cover the command and the stream)")
    wav = write(tmp_path / "src.wav", tone(31, sr=44_100), sr=44_100)
    m4a = tmp_path / "song.m4a"
    subprocess.run([ffmpeg, "-v", "error", "-i", str(wav), "-c:a", "aac", str(m4a)], check=True)
    code, res = run_json(capsys, "validate", str(m4a))
    assert code == 0 and res["verdict"] == "ok" and res["duration_sec"] == pytest.approx(31, abs=0.1)
