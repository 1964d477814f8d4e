"""Riffusion's spectrogram images ⇄ audio (backends/riffusion/spectrogram.py): against an independent plain-torch
reference of torchaudio's InverseMelScale + GriffinLim with the same initial phase (tests/riffusion_reference.py),
and audio → image → audio on real signals (a tone keeps its pitch, a chirp keeps its path)."""

from __future__ import annotations

import numpy as np
import pytest
from lofi_daemon.backends.riffusion import spectrogram as S

SR = S.RIFFUSION_V1.sample_rate


def rel_err(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def band_spacing_hz(f: float) -> float:
    """Distance between neighbouring mel band centres around f (HTK, 512 bands over 0–10 kHz)."""
    p = S.RIFFUSION_V1
    step = 2595.0 * np.log10(1.0 + p.f_max / 700.0) / (p.n_mels + 1)
    m = 2595.0 * np.log10(1.0 + f / 700.0)
    return float(700.0 * (10 ** ((m + step) / 2595.0) - 1.0) - f)


def test_parameters_are_riffusion_v1s():
    p = S.RIFFUSION_V1
    assert (p.sample_rate, p.hop_length, p.win_length, p.n_fft, p.n_mels) == (44100, 441, 4410, 17640, 512)
    assert (p.f_min, p.f_max, p.power_for_image, p.max_value) == (0.0, 10000.0, 0.25, 30e6)
    assert (p.griffin_lim_iters, p.momentum) == (32, 0.99)
    assert p.samples_for_width(512) / SR == pytest.approx(5.11, abs=1e-9)  # 512 px ≈ 5.12 s of frames


def test_image_mel_round_trip_and_orientation():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, size=(512, 40), dtype=np.uint8)
    img[0, 0] = 0  # the loudest pixel sets the scale, as in a generated image
    mel = S.mel_from_image(img)
    assert mel.max() == pytest.approx(30e6) and mel.min() >= 0
    # row 0 of the image is the top = the highest mel band; white (255) is silence
    assert mel[-1, 0] == pytest.approx(30e6)
    assert np.all(mel[img[::-1] == 255] == 0)
    back = S.image_from_mel(mel)
    assert back.dtype == np.uint8 and back.shape == img.shape
    assert np.abs(back.astype(int) - img.astype(int)).max() <= 1  # riffusion truncates to uint8 too
    rgb = np.repeat(img[..., None], 3, axis=2)
    rgb[..., 1:] = 255  # mono decoding reads the first channel only
    assert np.array_equal(S.mel_from_image(rgb), mel)


@pytest.fixture(scope="module")
def ref():
    pytest.importorskip("torch")
    from tests import riffusion_reference

    riffusion_reference.torch.set_num_threads(2)
    return riffusion_reference


@pytest.mark.torch
def test_filterbank_and_inverse_mel_match_torch_reference(ref):
    fb = S.mel_filterbank()
    assert np.abs(fb - ref.melscale_fbanks().numpy()).max() < 1e-12
    rng = np.random.default_rng(1)
    mel = S.mel_from_image(rng.integers(0, 256, size=(512, 24), dtype=np.uint8)).astype(np.float64)
    want = ref.inverse_mel(ref.torch.from_numpy(mel)).numpy()
    got = S.converter(dtype=np.float64).linear_from_mel(mel)
    assert np.all(want[got.shape[0] :] == 0)  # nothing above 10 kHz: the product skips those bins
    assert rel_err(got, want[: got.shape[0]]) < 1e-10
    assert (want < 0).sum() == 0 and (want == 0).any()  # the ReLU really clamps something


@pytest.mark.torch
def test_griffin_lim_matches_torch_reference_with_same_initial_phase(ref):
    rng = np.random.default_rng(2)
    width = 48
    img = rng.integers(0, 256, size=(512, width), dtype=np.uint8)
    mel = S.mel_from_image(img).astype(np.float64)
    lin = ref.inverse_mel(ref.torch.from_numpy(mel))
    angles = rng.random(lin.shape) + 1j * rng.random(lin.shape)  # torchaudio's rand_init draw
    want = ref.griffin_lim(lin, ref.torch.from_numpy(angles)).numpy()
    c64 = S.converter(dtype=np.float64)
    full64 = c64.griffin_lim(c64.linear_from_mel(mel), angles=angles, rate=S.RIFFUSION_V1.sample_rate)
    assert full64.shape == want.shape == (S.RIFFUSION_V1.samples_for_width(width),)
    assert rel_err(full64, want) < 1e-8  # the same algorithm at full rate in float64: rounding only
    # the product iterates on the 22 kHz grid in float32: 32 momentum iterations keep the drift at float32
    # rounding × a few hundred (the grid's own error is below that: test_grid_griffin_lim_equals_full_rate)
    got32 = S.audio_from_mel(mel, angles=angles)
    assert rel_err(got32, want) < 1e-4
    # and the phase matters: another initial phase gives another waveform
    other = S.audio_from_mel(mel, angles=rng.random(lin.shape) + 1j * rng.random(lin.shape))
    assert rel_err(other, want) > 0.1


def test_grid_samples_the_same_signal_and_spectra():
    """The 22 kHz grid sees the full-rate signal at its own sample times: both grids sample every hop boundary,
    where the ISTFTs agree to rounding (and a constant scale); the STFT of it equals the full rate's but for aliasing of the windowed
    spectrum's tails above 11 kHz (interior frames), and differs in the 5 frames at each end that read the
    reflected padding, the ones Griffin–Lim redoes at full rate."""
    c = S.converter(dtype=np.float64)
    grid = c.grid(S.GL_RATE)
    assert (grid.hop, grid.win, grid.n_fft) == (220, 2200, 8800)
    rng = np.random.default_rng(4)
    width = 40
    mag = c.linear_from_mel(S.mel_from_image(rng.integers(0, 256, size=(512, width), dtype=np.uint8)))
    spec = (mag * np.exp(2j * np.pi * rng.random(mag.shape))).T  # frames-major
    y_full, y_grid = c.full.istft(spec), grid.istft(spec)
    assert y_grid.shape == (S.GL_RATE // 100 * (width - 1),)
    # the inverse FFT divides by n_fft: the same sums over half the points give twice the samples (and the
    # forward FFT sums half as many: STFT(ISTFT) is the same on both grids)
    scale = c.full.n_fft / grid.n_fft
    assert rel_err(y_grid[:: grid.hop], scale * y_full[:: c.full.hop]) < 1e-12
    want = c.full.stft(y_full)
    got = grid.stft(y_grid)
    per_frame = np.linalg.norm(got - want, axis=1) / np.linalg.norm(want, axis=1)
    edge = c.edge
    assert edge == 5
    assert per_frame[edge:-edge].max() < 1e-7  # aliasing only (float32 rounding is 6e-8)
    assert per_frame[:edge].min() > 1e-5 and per_frame[-edge:].min() > 1e-5  # hence the full-rate edges
    # a 20 kHz grid (n_fft 8000, Nyquist on the band's edge) would alias the top bins' tails into the band
    g20 = c.grid(20000)
    alias20 = np.linalg.norm(g20.stft(g20.istft(spec)) - want, axis=1) / np.linalg.norm(want, axis=1)
    assert (
        alias20[edge:-edge].max() > 1e-4
        and np.median(alias20[edge:-edge]) > 1e3 * per_frame[edge:-edge].max()
    )


@pytest.mark.parametrize("kind", ["tones", "random"])
def test_grid_griffin_lim_equals_full_rate(kind):
    """Griffin–Lim on the 22 kHz grid (the product) against the full-rate iteration, both in float64: the grid
    moves the result less than float32 rounding moves the full-rate one, and the spectral convergence
    ‖ |STFT(y)| − magnitude ‖ / ‖magnitude‖ is the same to 1e-5."""
    rng = np.random.default_rng(5)
    width = 64
    if kind == "tones":
        t = np.arange(S.RIFFUSION_V1.samples_for_width(width)) / SR
        audio = sum(0.2 * np.sin(2 * np.pi * f * t) for f in (220, 440, 1234, 5000, 9500))
        img = S.image_from_audio(audio + 0.05 * rng.standard_normal(t.size))
    else:
        img = rng.integers(0, 256, size=(512, width), dtype=np.uint8)
    c64, c32 = S.converter(dtype=np.float64), S.converter()
    mag = c64.linear_from_mel(S.mel_from_image(img))
    angles = rng.random(mag.shape) + 1j * rng.random(mag.shape)
    full = S.RIFFUSION_V1.sample_rate
    want = c64.griffin_lim(mag, angles=angles, rate=full)
    grid64 = c64.griffin_lim(mag, angles=angles)
    full32 = c32.griffin_lim(mag, angles=angles, rate=full)
    assert rel_err(grid64, want) < rel_err(full32, want)

    def convergence(y):
        return np.linalg.norm(np.abs(c64.stft(y)) - mag) / np.linalg.norm(mag)

    assert abs(convergence(grid64) - convergence(want)) < 1e-5 * convergence(want)
    assert abs(convergence(c32.griffin_lim(mag, angles=angles)) - convergence(want)) < 1e-4 * convergence(
        want
    )


def test_on_grid_keeps_times_and_bins():
    g = S.RIFFUSION_V1.on_grid(22000)
    assert (g.hop_length, g.win_length, g.n_fft) == (220, 2200, 8800)
    assert g.sample_rate / g.n_fft == S.RIFFUSION_V1.sample_rate / S.RIFFUSION_V1.n_fft  # 2.5 Hz bins
    with pytest.raises(ValueError):
        S.RIFFUSION_V1.on_grid(22050)  # a hop of 220.5 samples


@pytest.mark.torch
def test_audio_to_image_matches_torch_mel_spectrogram(ref):
    t = np.arange(S.RIFFUSION_V1.samples_for_width(64)) / SR
    audio = 0.3 * np.sin(2 * np.pi * 523.25 * t) + 0.01 * np.random.default_rng(3).standard_normal(t.size)
    want = ref.mel_spectrogram(ref.torch.from_numpy(audio)).numpy()
    got = S.mel_from_audio(audio)
    assert got.shape == want.shape == (512, 64)
    assert rel_err(got, want) < 1e-5


def _round_trip(audio: np.ndarray) -> np.ndarray:
    img = S.image_from_audio(audio)
    assert img.dtype == np.uint8 and img.shape[0] == 512
    return S.audio_from_image(img, seed=5)


def test_tone_keeps_its_pitch():
    f0 = 440.0
    t = np.arange(S.RIFFUSION_V1.samples_for_width(512)) / SR
    out = _round_trip(0.5 * np.sin(2 * np.pi * f0 * t))
    assert out.shape == t.shape and np.isfinite(out).all()
    spec = np.abs(np.fft.rfft(out * np.hanning(out.size)))
    freqs = np.fft.rfftfreq(out.size, 1 / SR)
    peak = freqs[np.argmax(spec)]
    assert abs(peak - f0) <= band_spacing_hz(f0)  # the mel band holding the tone
    near = np.abs(freqs - f0) <= 4 * band_spacing_hz(f0)
    assert (spec[near] ** 2).sum() / (spec**2).sum() > 0.9  # and the energy stays there


def test_chirp_keeps_its_path():
    from scipy.signal import stft

    f_start, f_end = 200.0, 2000.0
    n = S.RIFFUSION_V1.samples_for_width(512)
    t = np.arange(n) / SR
    rate = (f_end - f_start) / t[-1]
    chirp = 0.5 * np.sin(2 * np.pi * (f_start * t + 0.5 * rate * t**2))
    out = _round_trip(chirp)
    nper = 4096
    freqs, times, z = stft(out, fs=SR, nperseg=nper, noverlap=nper - 1024, boundary=None, padded=False)
    track = freqs[np.argmax(np.abs(z), axis=0)]
    inst = f_start + rate * times
    # allowed: the mel band, the analysis bin, and the sweep within one analysis window
    tol = np.array([band_spacing_hz(f) for f in inst]) + SR / nper + rate * nper / SR
    ok = np.abs(track - inst) <= tol
    assert ok.mean() > 0.95, (ok.mean(), np.abs(track - inst).max())
    assert track[-1] - track[0] > 0.8 * (f_end - f_start)  # it really rises


def test_channel_images_follow_riffusions_layout():
    rng = np.random.default_rng(6)
    left, right = (rng.integers(0, 256, size=(512, 16), dtype=np.uint8) for _ in range(2))
    mono = np.repeat(left[..., None], 3, axis=2)
    assert [c.tolist() for c in S.channel_images(mono)] == [left.tolist()]
    assert [c.tolist() for c in S.channel_images(left)] == [left.tolist()]
    stereo = np.stack(
        [np.zeros_like(left), left, right], axis=2
    )  # riffusion writes R = 0, G = left, B = right
    assert [c.tolist() for c in S.channel_images(stereo)] == [left.tolist(), right.tolist()]
    same = np.stack([np.zeros_like(left), left, left], axis=2)
    assert [c.tolist() for c in S.channel_images(same)] == [left.tolist()]  # equal channels: mono
    # a VAE's near-gray output (channels a level apart) is mono; unrelated channels decode R as riffusion does
    near = np.clip(mono.astype(int) + rng.integers(-1, 2, size=mono.shape), 0, 255).astype(np.uint8)
    assert [c.tolist() for c in S.channel_images(near)] == [near[..., 0].tolist()]
    unrelated = np.stack([left, right, left[::-1]], axis=2)
    assert [c.tolist() for c in S.channel_images(unrelated)] == [left.tolist()]


# 40 and 33 frames on the 22 kHz grid (33 over 3 workers in chunks of 8: the last 5 frames lie in two workers'
# ranges); 12 at full rate, shorter than the padding
@pytest.mark.parametrize("width", [40, 33, 12])
@pytest.mark.parametrize(("threads", "chunk"), [(1, 32), (2, 4), (3, 8)])
def test_griffin_lim_is_the_same_however_the_frames_are_split(monkeypatch, width, threads, chunk):
    """Workers and chunks only reorder sums: with the edge frames' spectra split between workers (40 frames in
    chunks of 4 or 8 over 2–3 workers) the result equals the one-worker run to rounding. The end frames a
    worker redoes at full rate are read from the previous pass, never from the one writing them."""
    c = S.converter(dtype=np.float64)
    rng = np.random.default_rng(7)
    mag = c.linear_from_mel(S.mel_from_image(rng.integers(0, 256, size=(512, width), dtype=np.uint8)))
    angles = rng.random(mag.shape) + 1j * rng.random(mag.shape)
    want = c.griffin_lim(mag, angles=angles)
    monkeypatch.setattr(S, "THREADS", threads)
    monkeypatch.setattr(S, "CHUNK", chunk)
    got = c.griffin_lim(mag, angles=angles)
    assert rel_err(got, want) < 1e-12


@pytest.mark.parametrize("frames", [60, 12])  # 12 frames on the full grid: shorter than the padding
def test_repad_is_the_reflect_padded_istft(frames):
    c = S.converter(dtype=np.float64)
    g = c.grid(S.GL_RATE) if frames >= 6 * c.edge else c.full
    rng = np.random.default_rng(8)
    accs = [rng.standard_normal(g.padded_length(frames)) for _ in range(2)]
    out = np.full(g.padded_length(frames), np.nan)
    g.repad(accs, frames, out)
    assert np.array_equal(out, np.pad(g.finish(accs[0] + accs[1], frames), g.pad, mode="reflect"))


def test_inverse_mel_uses_the_tridiagonal_gram_matrix():
    """Each frequency lies in at most two neighbouring triangles, so the banded Cholesky solve is the exact
    minimum-norm inverse: the filter bank maps it back to the mel input wherever no clamp applies."""
    c = S.converter(dtype=np.float64)
    fb = S.mel_filterbank()[: c.n_active]
    coeffs = np.random.default_rng(9).random((512, 3))
    mel = fb.T @ (fb @ coeffs)  # a mel spectrum whose minimum-norm inverse is fb @ coeffs ≥ 0 (no clamping)
    assert rel_err(c.linear_from_mel(mel), fb @ coeffs) < 1e-10
    assert rel_err(fb.T @ c.linear_from_mel(mel), mel) < 1e-10


def test_griffin_lim_needs_an_iteration():
    c = S.Converter(S.SpectrogramParams(griffin_lim_iters=0), dtype=np.float64)
    with pytest.raises(ValueError, match="iteration"):
        c.griffin_lim(np.ones((c.n_active, 8)))
