"""Riffusion img2img from init audio: a cached track by id or a user's audio file, checked when the request arrives
(the same refusal for every unusable path), fingerprinted into the track identity, converted to spectrogram images
per clip, and used as each clip's img2img start on the tiny fixture."""

from __future__ import annotations

import hashlib
import os

import numpy as np
import pytest
import soundfile as sf
from lofi_daemon.backends.base import GenerationRequest, track_id_for
from lofi_daemon.backends.riffusion import init_audio
from lofi_daemon.backends.riffusion import spectrogram as S
from lofi_daemon.cancel import CancelToken
from lofi_daemon.errors import ErrorCode, LofiError

from tests.test_riffusion_backend import make

SR = S.RIFFUSION_V1.sample_rate


def tone(path, freq: float, sec: float = 2.0, rate: int = 22050, channels: int = 1):
    t = np.arange(int(sec * rate)) / rate
    x = 0.4 * np.sin(2 * np.pi * freq * t)
    sf.write(str(path), np.repeat(x[:, None], channels, axis=1), rate)
    return path


def test_a_file_is_fingerprinted_into_the_params_and_the_track_id(tmp_path):
    b = make(tmp_path)
    f = tone(tmp_path / "a.wav", 440.0)
    got = b.validate({"init": str(f), "init_strength": 0.4})
    assert got["init"] == str(f.resolve()) and got["init_strength"] == 0.4
    assert got["init_sha256"] == hashlib.sha256(f.read_bytes()).hexdigest()
    assert b.validate({})["init"] == "" and b.validate({})["init_sha256"] == ""
    ids = {track_id_for(GenerationRequest("riffusion", "lofi", 5.0, 1, got), "v")}
    tone(f, 660.0)  # other audio under the same name: another track
    again = b.validate({"init": str(f), "init_strength": 0.4})
    ids.add(track_id_for(GenerationRequest("riffusion", "lofi", 5.0, 1, again), "v"))
    assert len(ids) == 2
    # the canonical params validate to themselves (generate re-checks them) but the fingerprint is not a param
    assert b.validate({k: v for k, v in again.items() if k != "init_sha256"}) == again
    with pytest.raises(LofiError) as err:
        b.validate({"init_sha256": "0" * 64})
    assert err.value.code == ErrorCode.INVALID_PARAMS


def test_every_unusable_path_gets_the_same_refusal(tmp_path):
    b = make(tmp_path)
    (tmp_path / "dir").mkdir()
    (tmp_path / "text.wav").write_text("not audio")
    os.mkfifo(tmp_path / "fifo.wav")  # never opened: opening a FIFO would block the daemon
    tone(tmp_path / "short.wav", 440.0, sec=0.2)
    messages = set()
    for value in (
        "rel/a.wav",
        str(tmp_path / "absent.wav"),
        str(tmp_path / "dir"),
        str(tmp_path / "text.wav"),
        str(tmp_path / "fifo.wav"),
        str(tmp_path / "short.wav"),
    ):
        with pytest.raises(LofiError) as err:
            b.validate({"init": value})
        assert err.value.code == ErrorCode.INVALID_PARAMS and err.value.data["param"] == "init"
        messages.add(str(err.value).replace(repr(value), "…"))
    assert len(messages) == 1


def test_a_cached_track_by_id(tmp_path):
    b = make(tmp_path)
    tracks = b.settings.tracks_dir
    tracks.mkdir(parents=True)
    f = tone(tracks / "0123456789abcdef.flac", 440.0)
    got = b.validate({"init": "0123456789abcdef"})
    assert got["init"] == "track:0123456789abcdef"
    assert got["init_sha256"] == hashlib.sha256(f.read_bytes()).hexdigest()
    with pytest.raises(LofiError) as err:
        b.validate({"init": "fedcba9876543210"})
    assert err.value.code == ErrorCode.TRACK_NOT_FOUND
    with pytest.raises(LofiError) as err:  # both would choose each clip's start
        b.validate({"init": "0123456789abcdef", "denoising": 0.5})
    assert err.value.data["param"] == "init"
    with pytest.raises(LofiError) as err:
        b.validate({"init": "0123456789abcdef", "steps": 10, "init_strength": 0.05})
    assert err.value.data["param"] == "init_strength"
    assert b.validate({"steps": 1})["init_strength"] == 0.5  # only an init's strength must run a step


def test_clip_images_follow_the_source_and_loop_it(tmp_path):
    t = np.arange(int(3.0 * SR)) / SR
    audio = (0.3 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)
    width, step = 64, 40 * S.RIFFUSION_V1.hop_length
    images = init_audio.clip_images(audio, clips=3, width=width, step=step)
    assert [im.shape for im in images] == [(512, width, 3)] * 3
    assert all(np.array_equal(im[..., 0], im[..., 2]) for im in images)  # mono: three equal channels
    assert np.array_equal(
        images[0][..., 0], S.image_from_audio(audio[: S.RIFFUSION_V1.samples_for_width(width)])
    )
    assert np.array_equal(
        images[1][..., 0], S.image_from_audio(audio[step : step + S.RIFFUSION_V1.samples_for_width(width)])
    )
    # 440 Hz is the darkest row band in every image (row 0 is the top = highest band)
    mel_hz = np.array([S._mel_to_hz(m) for m in np.linspace(0, S._hz_to_mel(np.float64(10000.0)), 514)[1:-1]])
    darkest = 511 - np.argmin(images[0][..., 0].astype(int).sum(axis=1))
    assert abs(mel_hz[darkest] - 440.0) < 20.0
    short = init_audio.clip_images(audio[: SR // 2], clips=1, width=width, step=step)[0]
    looped = np.resize(audio[: SR // 2], S.RIFFUSION_V1.samples_for_width(width))
    assert np.array_equal(short[..., 0], S.image_from_audio(looped))


@pytest.mark.slow
def test_generation_starts_from_the_init_audio(tmp_path):
    b = make(tmp_path)
    a = tone(tmp_path / "a.wav", 440.0, sec=3.0, channels=2)
    c = tone(tmp_path / "c.wav", 2000.0, sec=3.0)

    def run(params):
        req = GenerationRequest("riffusion", "lofi", 5.0, 3, b.validate({"steps": 4, **params}))
        return b.generate(req, lambda *a, **k: None, CancelToken())

    plain = run({}).samples
    res = run({"init": str(a), "init_strength": 0.5})
    assert res.info["init"] == str(a.resolve())
    with_a = res.samples
    assert np.array_equal(with_a, run({"init": str(a), "init_strength": 0.5}).samples)  # reproducible
    with_c = run({"init": str(c), "init_strength": 0.5}).samples
    assert not np.allclose(with_a, plain, atol=1e-3) and not np.allclose(with_a, with_c, atol=1e-3)


def test_init_audio_changed_after_the_request_is_refused(tmp_path):
    b = make(tmp_path)
    f = tone(tmp_path / "a.wav", 440.0)
    req = GenerationRequest("riffusion", "lofi", 5.0, 3, b.validate({"steps": 2, "init": str(f)}))
    tone(f, 880.0)
    with pytest.raises(LofiError) as err:
        b.generate(req, lambda *a, **k: None, CancelToken())
    assert err.value.data["param"] == "init" and "changed" in str(err.value)
