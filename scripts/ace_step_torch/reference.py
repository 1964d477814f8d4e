"""A plain PyTorch implementation of upstream ACE-Step's text2music sampling, run on the project's PyTorch
model. It is deliberately written apart from the daemon's numpy loop (torch tensors, upstream-style in-place
forward hooks for ERG, the scheduler arithmetic spelled out again) so each checks the other in
tests/test_ace_step_parity.py. Random numbers are injected (initial noise, PingPong step noise).
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F

from .build import ERG


@contextmanager
def erg_hooks(modules, tau: float = ERG["tau"]):
    """Upstream ERG: scale the output of each module in place while the block runs."""

    def hook(module, inputs, output):
        output[:] *= tau
        return output

    handles = [m.register_forward_hook(hook) for m in modules]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def text_q_modules(umt5):
    lo, hi = ERG["text_encoder"]
    return [umt5.encoder.block[i].layer[0].SelfAttention.q for i in range(lo, hi)]


def lyric_q_modules(dit):
    lo, hi = ERG["lyric_encoder"]
    return [dit.lyric_encoder.encoders[i].self_attn.linear_q for i in range(lo, hi)]


def decoder_q_modules(dit):
    lo, hi = ERG["decoder"]
    blocks = dit.transformer_blocks
    return [
        m for i in range(lo, min(hi, len(blocks))) for m in (blocks[i].attn.to_q, blocks[i].cross_attn.to_q)
    ]


def torch_schedule(kind: str, n: int, shift: float = 3.0, sigma_max: float = 1.0):
    """Sigmas/timesteps exactly as the upstream scheduler classes build them (`sigma_max` < 1: the
    audio2audio scheduler, whose training timesteps end at sigma_max·1000)."""
    train = torch.from_numpy(np.linspace(1.0, sigma_max * 1000, 1000, dtype=np.float32)[::-1].copy())
    s = train / 1000
    s = shift * s / (1 + (shift - 1) * s)
    smax, smin = s[0].item(), s[-1].item()
    t = np.linspace(smax * 1000, smin * 1000, n) / 1000
    sig = torch.from_numpy(shift * t / (1 + (shift - 1) * t)).to(torch.float32)
    ts = sig * 1000
    sig = torch.cat([sig, torch.zeros(1)])
    if kind == "heun":
        ts = torch.cat([ts[:1], ts[1:].repeat_interleave(2)])
        sig = torch.cat([sig[:1], sig[1:-1].repeat_interleave(2), sig[-1:]])
    return ts, sig


def omega_w(omega: float) -> float:
    return 0.9 + 0.2 / (1 + np.exp(-0.1 * omega))


@torch.no_grad()
def conditions(models, ids, mask, lyric_ids, lyric_mask, erg_tag=True, erg_lyric=True):
    te, dit = models["text_encoder"], models["transformer"]
    ids, mask = torch.as_tensor(ids), torch.as_tensor(mask)
    lyric_ids, lyric_mask = torch.as_tensor(lyric_ids), torch.as_tensor(lyric_mask)
    text = te(input_ids=ids, attention_mask=mask).last_hidden_state
    text_null = None
    if erg_tag:
        with erg_hooks(text_q_modules(te)):
            text_null = te(input_ids=ids, attention_mask=mask).last_hidden_state
    spk = torch.zeros(1, dit.speaker_embedder.in_features)
    cond, cmask = dit.encode(text, mask, spk, lyric_ids, lyric_mask)
    if erg_lyric:
        with erg_hooks(lyric_q_modules(dit)):
            base = text_null if text_null is not None else torch.zeros_like(text)
            uncond, _ = dit.encode(base, mask, torch.zeros_like(spk), lyric_ids, lyric_mask)
    else:
        uncond, _ = dit.encode(
            torch.zeros_like(text), mask, torch.zeros_like(spk), torch.zeros_like(lyric_ids), lyric_mask
        )
    return cond, uncond, cmask


@torch.no_grad()
def sample(
    models,
    cond,
    uncond,
    cmask,
    noise,
    steps,
    guidance_scale=15.0,
    scheduler="euler",
    cfg_type="apg",
    omega=10.0,
    guidance_interval=0.5,
    decay=0.0,
    min_scale=3.0,
    erg_diffusion=True,
    step_noise=None,
    sigma_max=1.0,
    repaint=None,
):
    """`repaint` = (x0, z0, mask [F] bool, n_min): upstream's repaint/extend branch."""
    dit = models["transformer"]
    x = torch.as_tensor(noise).clone()
    timesteps, sigmas = torch_schedule(scheduler, steps, sigma_max=sigma_max)
    if repaint is not None:
        x0, z0 = torch.as_tensor(repaint[0]), torch.as_tensor(repaint[1])
        keep = ~torch.as_tensor(repaint[2])
        n_min = repaint[3]
    w = omega_w(omega)
    start = int(steps * ((1 - guidance_interval) / 2))  # from N, also for Heun (upstream quirk)
    end = int(steps * (guidance_interval / 2 + 0.5))
    amask = torch.ones(1, (x if repaint is None else x0).shape[-1])  # extend: the padded length
    running = 0
    heun_state = None
    evals = 0

    def model(xx, enc, t, erg=False):
        tt = t.expand(xx.shape[0])
        if erg:
            with erg_hooks(decoder_q_modules(dit)):
                return dit.decode(xx, amask, enc, cmask, tt)
        return dit.decode(xx, amask, enc, cmask, tt)

    for i, t in enumerate(timesteps):
        if repaint is not None:
            if i < n_min:
                continue
            if i == n_min:
                t_i = t / 1000
                zt_src = (1 - t_i) * x0 + t_i * z0
                x = x0.clone() + zt_src - x0
        if guidance_scale not in (0.0, 1.0) and start <= i < end:
            s = guidance_scale
            if decay > 0:
                s = guidance_scale - (guidance_scale - min_scale) * (i - start) / (end - start - 1) * decay
            c = model(x, cond, t)
            u = model(x, uncond, t, erg=erg_diffusion)
            evals += 2
            if cfg_type == "cfg":
                v = u + s * (c - u)
            elif cfg_type == "apg":
                diff = c - u
                running = diff + (-0.75) * running
                diff = running
                diff = diff * torch.minimum(
                    torch.ones_like(diff), 2.5 / diff.norm(p=2, dim=[-1, -2], keepdim=True)
                )
                v0, v1 = diff.double(), F.normalize(c.double(), dim=[-1, -2])
                par = (v0 * v1).sum(dim=[-1, -2], keepdim=True) * v1
                v = c + (s - 1) * ((v0 - par).float() + 0.0 * par.float())
            elif cfg_type == "cfg_star":
                if i <= 1:
                    v = c * 0.0
                else:
                    pf, nf = c.view(1, -1), u.view(1, -1)
                    a = ((pf * nf).sum(1, keepdim=True) / ((nf**2).sum(1, keepdim=True) + 1e-8)).view(
                        1, 1, 1, 1
                    )
                    v = u * a + s * (c - u * a)
        else:
            v = model(x, cond, t)
            evals += 1
        if repaint is not None:
            t_i = t / 1000
            t_im1 = timesteps[i + 1] / 1000 if i + 1 < len(timesteps) else torch.zeros_like(t_i)
            x = x + (t_im1 - t_i) * v
            x = torch.where(keep, (1 - t_im1) * x0 + t_im1 * z0, x)
        elif scheduler == "euler":
            dx = (sigmas[i + 1] - sigmas[i]) * v
            x = x + ((dx - dx.mean()) * w + dx.mean())
        elif scheduler == "pingpong":
            den = x - sigmas[i] * v
            x = (1 - sigmas[i + 1]) * den + sigmas[i + 1] * torch.as_tensor(step_noise(tuple(x.shape)))
        else:  # heun
            if heun_state is None:
                sg, sn = sigmas[i], sigmas[i + 1]
                d = (x - (x - v * sg)) / sg
                dt = sn - sg
                heun_state = (d, dt, x)
                dx = d * dt
                x = x + ((dx - dx.mean()) * w + dx.mean())
            else:
                d0, dt, x0 = heun_state
                sn = sigmas[i]
                d = 0.5 * (d0 + (x - (x - v * sn)) / sn)
                heun_state = None
                dx = d * dt
                x = x0 + ((dx - dx.mean()) * w + dx.mean())
    return x, evals


@torch.no_grad()
def latents_to_wave(models, latents):
    """Upstream MusicDCAE.decode(sr=None): de-scale, DCAE, de-normalise mel, vocode each channel → [2, n]."""
    z = torch.as_tensor(latents) / 0.1786 + (-1.9091)
    mel = models["dcae"].decoder(z)
    mel = (mel * 0.5 + 0.5) * (3.0 - (-11.0)) + (-11.0)
    voc = models["vocoder"]
    left = voc(mel[:, 0]).squeeze(1)
    right = voc(mel[:, 1]).squeeze(1)
    return torch.cat([left, right], dim=0)


# ---------------------------------------------------------------- the encode path (upstream MusicDCAE.encode)


def _hz_to_mel(f: torch.Tensor) -> torch.Tensor:
    """Slaney's mel scale (torchaudio `mel_scale="slaney"`): linear below 1 kHz, logarithmic above."""
    mel = 3.0 * f / 200.0
    log_part = 15.0 + torch.log(f / 1000.0) / (np.log(6.4) / 27.0)
    return torch.where(f >= 1000.0, log_part, mel)


def _mel_to_hz(m: torch.Tensor) -> torch.Tensor:
    hz = 200.0 * m / 3.0
    log_part = 1000.0 * torch.exp((np.log(6.4) / 27.0) * (m - 15.0))
    return torch.where(m >= 15.0, log_part, hz)


def mel_filterbank(n_freqs=1025, f_min=40.0, f_max=16000.0, n_mels=128, sample_rate=44100) -> torch.Tensor:
    """[n_freqs, n_mels]: torchaudio's `melscale_fbanks(..., norm="slaney", mel_scale="slaney")`, the filters of
    the vocoder's `mel_transform` (upstream LogMelSpectrogram), in float32 as torchaudio builds them."""
    freqs = torch.linspace(0, sample_rate // 2, n_freqs)
    # the end points in float64, as torchaudio computes them with Python's math
    m_min, m_max = (float(_hz_to_mel(torch.tensor(f, dtype=torch.float64))) for f in (f_min, f_max))
    m_pts = torch.linspace(m_min, m_max, n_mels + 2)
    f_pts = _mel_to_hz(m_pts)
    f_diff = f_pts[1:] - f_pts[:-1]
    slopes = f_pts.unsqueeze(0) - freqs.unsqueeze(1)
    down = -slopes[:, :-2] / f_diff[:-1]
    up = slopes[:, 2:] / f_diff[1:]
    fb = torch.clamp(torch.minimum(down, up), min=0.0)
    return fb * (2.0 / (f_pts[2 : n_mels + 2] - f_pts[:n_mels]))


@torch.no_grad()
def log_mel(audio: torch.Tensor) -> torch.Tensor:
    """[C, n] at 44.1 kHz → [C, 128, frames]: upstream LogMelSpectrogram (reflect pad (win-hop)/2 each side,
    uncentred STFT n_fft 2048 / hop 512 / periodic Hann, sqrt(|X|² + 1e-6), slaney mels 40 Hz–16 kHz,
    log of clamp 1e-5)."""
    n_fft, hop = 2048, 512
    y = F.pad(audio.unsqueeze(1), ((n_fft - hop) // 2, (n_fft - hop + 1) // 2), mode="reflect").squeeze(1)
    spec = torch.stft(
        y,
        n_fft,
        hop_length=hop,
        win_length=n_fft,
        window=torch.hann_window(n_fft),
        center=False,
        return_complex=True,
    )
    mag = torch.sqrt(torch.view_as_real(spec).pow(2).sum(-1) + 1e-6)
    mel = torch.matmul(mag.transpose(-1, -2), mel_filterbank()).transpose(-1, -2)
    return torch.log(torch.clamp(mel, min=1e-5))


@torch.no_grad()
def audio_to_latents(dcae, audio: torch.Tensor) -> torch.Tensor:
    """Upstream `MusicDCAE.encode` from 44.1 kHz stereo [2, n] (after its resampler): pad to a multiple of
    4096 samples, log-mel, normalise (mel+11)/14 then Normalize(0.5, 0.5), DCAE encoder, (z − shift)·scale
    → [1, 8, 16, n'/4096]."""
    n = audio.shape[-1]
    if n % 4096:
        audio = F.pad(audio, (0, 4096 - n % 4096))
    mel = log_mel(audio).unsqueeze(0)
    mel = (mel - (-11.0)) / (3.0 - (-11.0))
    mel = (mel - 0.5) / 0.5
    z = dcae.encoder(mel)
    return (z - (-1.9091)) * 0.1786


@torch.no_grad()
def flowedit(models, src_text, tar_text, x_src, steps, guidance_scale, n_min, n_max, n_avg, noise):
    """Upstream `flowedit_diffusion_process` (Euler): `src_text`/`tar_text` = (ids, mask, lyric_ids, lyric_mask),
    conditioned through the transformer's full forward with a zeroed unconditional half, no ERG; `noise(shape)`
    supplies the forward noises in upstream's order."""
    te, dit = models["text_encoder"], models["transformer"]
    spk = torch.zeros(1, dit.speaker_embedder.in_features)

    def conds(ids, mask, lyric_ids, lyric_mask):
        ids, mask = torch.as_tensor(ids), torch.as_tensor(mask)
        lyric_ids, lyric_mask = torch.as_tensor(lyric_ids), torch.as_tensor(lyric_mask)
        text = te(input_ids=ids, attention_mask=mask).last_hidden_state
        return (
            dit.encode(text, mask, spk, lyric_ids, lyric_mask),
            dit.encode(
                torch.zeros_like(text), mask, spk, torch.zeros_like(lyric_ids), torch.zeros_like(lyric_mask)
            ),
        )

    src, tar = conds(*src_text), conds(*tar_text)
    x_src = torch.as_tensor(x_src)
    amask = torch.ones(1, x_src.shape[-1])

    class Buffer:
        def __init__(self):
            self.running = 0

    def apg(c, u, buf):
        diff = c - u
        if buf is not None:
            buf.running = diff + (-0.75) * buf.running
            diff = buf.running
        diff = diff * torch.minimum(torch.ones_like(diff), 2.5 / diff.norm(p=2, dim=[-1, -2], keepdim=True))
        v0, v1 = diff.double(), F.normalize(c.double(), dim=[-1, -2])
        par = (v0 * v1).sum(dim=[-1, -2], keepdim=True) * v1
        return c + (guidance_scale - 1) * ((v0 - par).float() + 0.0 * par.float())

    def v(x, cond, t, buf):
        (c_states, c_mask), (u_states, u_mask) = cond
        tt = t.expand(1)
        c = dit.decode(x, amask, c_states, c_mask, tt)
        if guidance_scale in (0.0, 1.0):
            return c
        return apg(c, dit.decode(x, amask, u_states, u_mask, tt), buf)

    timesteps, sigmas = torch_schedule("euler", steps)
    buf_src, buf_tar = Buffer(), Buffer()
    zt_edit, xt_tar = x_src.clone(), None
    lo, hi = int(steps * n_min), int(steps * n_max)
    for i, t in enumerate(timesteps):
        if i < lo:
            continue
        t_i = t / 1000
        t_im1 = timesteps[i + 1] / 1000 if i + 1 < len(timesteps) else torch.zeros_like(t_i)
        if i < hi:
            delta = torch.zeros_like(x_src)
            for _ in range(n_avg):
                zt_src = (1 - t_i) * x_src + t_i * torch.as_tensor(noise(tuple(x_src.shape)))
                zt_tar = zt_edit + zt_src - x_src
                delta += (1 / n_avg) * (v(zt_tar, tar, t, None) - v(zt_src, src, t, buf_src))
            zt_edit = zt_edit + (t_im1 - t_i) * delta
        else:
            if i == hi:
                sigma = sigmas[i]
                xt_src = sigma * torch.as_tensor(noise(tuple(x_src.shape))) + (1.0 - sigma) * x_src
                xt_tar = zt_edit + xt_src - x_src
            xt_tar = xt_tar + (t_im1 - t_i) * v(xt_tar, tar, t, buf_tar)
    return zt_edit if xt_tar is None else xt_tar
