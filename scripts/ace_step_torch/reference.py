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


def torch_schedule(kind: str, n: int, shift: float = 3.0):
    """Sigmas/timesteps exactly as the upstream scheduler classes build them."""
    train = torch.from_numpy(np.linspace(1.0, 1000, 1000, dtype=np.float32)[::-1].copy())
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
):
    dit = models["transformer"]
    x = torch.as_tensor(noise).clone()
    timesteps, sigmas = torch_schedule(scheduler, steps)
    w = omega_w(omega)
    start = int(steps * ((1 - guidance_interval) / 2))  # from N, also for Heun (upstream quirk)
    end = int(steps * (guidance_interval / 2 + 0.5))
    amask = torch.ones(1, x.shape[-1])
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
        if scheduler == "euler":
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
