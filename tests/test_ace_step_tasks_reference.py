"""Upstream's editing tasks on the numpy loop against the PyTorch reference of upstream's maths
(scripts/ace_step_torch/reference.py: the repaint branch, the audio2audio schedule and FlowEdit, written after
`pipeline_ace_step.py`), on the tiny fixture's weights with injected noise. Tolerance: float32 rounding over the
chain of evaluations (tests/tolerances.py), as in tests/test_ace_step_parity.py; FlowEdit chains two
evaluations per step (source and target) and conditions twice."""

from __future__ import annotations

import numpy as np
import pytest
from lofi_daemon.backends.ace_step import tasks
from lofi_daemon.backends.ace_step.pipeline import SamplingParams

from tests.ace_step_helpers import FIXTURE, fixed_inputs, rel_err, tiny_pipeline
from tests.tolerances import ACE_CONDITIONS, ace_latents, f32_tol

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch

FRAMES = 13
STEPS = 8


@pytest.fixture(scope="module")
def models():
    from scripts.export_ace_step import load_torch

    torch.set_num_threads(1)
    return load_torch(FIXTURE)


@pytest.fixture(scope="module")
def pipe():
    return tiny_pipeline()


@pytest.fixture(scope="module")
def inputs(models, pipe):
    from scripts.ace_step_torch import reference as ref

    ids, mask, lyric_ids, lyric_mask, noise = fixed_inputs(frames=FRAMES, lyrics=True)
    p = SamplingParams(steps=STEPS, guidance_interval=1.0)
    c = pipe.conditions_from_ids(ids, mask, lyric_ids, lyric_mask, p)
    tc = ref.conditions(models, ids, mask, lyric_ids, lyric_mask)
    rng = np.random.default_rng(21)
    src = (0.5 * rng.standard_normal((1, 8, 16, FRAMES))).astype(np.float32)  # stands for encoded audio
    retake = rng.standard_normal((1, 8, 16, FRAMES), dtype=np.float32)
    return p, c, tc, noise, src, retake


def run_both(models, pipe, inputs, p, start, repaint=None):
    from scripts.ace_step_torch import reference as ref

    _, c, (tc, tu, tm), *_ = inputs
    ours = pipe.sample(c, start, p, repaint=repaint)
    plan = None if repaint is None else (repaint.x0, repaint.z0, repaint.mask, repaint.n_min)
    theirs, _ = ref.sample(
        models,
        tc,
        tu,
        tm,
        start,
        p.steps,
        p.guidance_scale,
        p.scheduler,
        p.cfg_type,
        guidance_interval=p.guidance_interval,
        sigma_max=p.sigma_max,
        repaint=plan,
    )
    return ours, theirs.numpy()


def test_repaint_equals_upstream_and_keeps_the_rest(models, pipe, inputs):
    p, _, _, noise, src, retake = inputs
    plan = tasks.repaint(src, noise, retake, 4, 9, variance=0.5, steps=STEPS)
    assert plan is not None and plan.n_min == 4 and plan.mask.sum() == 5
    ours, theirs = run_both(models, pipe, inputs, p, noise, plan)
    assert rel_err(ours, theirs) < f32_tol(ace_latents(STEPS)), rel_err(ours, theirs)
    # outside the range the source comes back exactly (the last step puts (1 − 0)·x0 + 0·z0 back)
    np.testing.assert_array_equal(ours[..., :4], src[..., :4])
    np.testing.assert_array_equal(ours[..., 9:], src[..., 9:])
    assert rel_err(ours[..., 4:9], src[..., 4:9]) > 0.1  # the range is regenerated


def test_extend_equals_upstream(models, pipe, inputs):
    p, _, _, noise, src, retake = inputs
    plan = tasks.extend(src, noise, retake, left=3, right=5, variance=1.0, steps=STEPS)
    assert plan.x0.shape[-1] == FRAMES + 8 and plan.n_min == 0
    ours, theirs = run_both(models, pipe, inputs, p, noise, plan)
    assert ours.shape == (1, 8, 16, FRAMES + 8)
    assert rel_err(ours, theirs) < f32_tol(ace_latents(STEPS)), rel_err(ours, theirs)
    np.testing.assert_array_equal(ours[..., 3 : 3 + FRAMES], src)
    # upstream's noise layout: retake[:left], the source's noise, retake[-right:]
    np.testing.assert_array_equal(plan.z0[..., :3], retake[..., :3])
    np.testing.assert_array_equal(plan.z0[..., 3 : 3 + FRAMES], noise)
    np.testing.assert_array_equal(plan.z0[..., -5:], retake[..., -5:])


def test_retake_is_text2music_from_mixed_noise(models, pipe, inputs):
    p, _, _, noise, src, retake = inputs
    assert tasks.repaint(src, noise, retake, 0, FRAMES, 0.5, STEPS) is None  # whole track: a retake
    start = tasks.mix(noise, retake, 0.3)
    ours, theirs = run_both(models, pipe, inputs, p, start)
    assert rel_err(ours, theirs) < f32_tol(ace_latents(STEPS)), rel_err(ours, theirs)
    original, _ = run_both(models, pipe, inputs, p, noise)
    assert 1e-3 < rel_err(ours, original) < 1.0  # a variation: different, and not unrelated


@pytest.mark.parametrize("strength", [0.3, 0.75])
def test_audio2audio_equals_upstream(models, pipe, inputs, strength):
    from dataclasses import replace

    from lofi_daemon.backends.ace_step.schedulers import Scheduler

    p, _, _, noise, src, _ = inputs
    steps = tasks.audio2audio_steps(STEPS, strength)
    pa = replace(p, steps=steps, sigma_max=1 - strength)
    sched = Scheduler("euler", steps, p.omega, sigma_max=1 - strength)
    start = tasks.noised_reference(src, noise, sched.start_sigma)
    # upstream: scheduler.sigma_max is the shifted top training sigma
    s = np.float32(1 - strength)
    assert sched.start_sigma == pytest.approx(3 * s / (1 + 2 * s), rel=1e-6)
    ours, theirs = run_both(models, pipe, inputs, pa, start)
    assert rel_err(ours, theirs) < f32_tol(ace_latents(steps)), rel_err(ours, theirs)
    # closer to the reference the stronger it is
    assert rel_err(ours, src) < rel_err(run_both(models, pipe, inputs, p, noise)[0], src)


@pytest.mark.parametrize(("n_min", "n_max", "n_avg"), [(0.25, 0.75, 2), (0.5, 1.0, 1)])
def test_flowedit_equals_upstream(models, pipe, inputs, n_min, n_max, n_avg):
    from scripts.ace_step_torch import reference as ref

    p, _, _, _, src, _ = inputs
    rng = np.random.default_rng(3)
    ids_a, mask_a, lyr_a, lmask_a, _ = fixed_inputs(frames=FRAMES, lyrics=True, seed=1)
    ids_b, mask_b, lyr_b, lmask_b, _ = fixed_inputs(frames=FRAMES, lyrics=True, seed=2)
    bank = rng.standard_normal((2 * STEPS * n_avg + 1, 1, 8, 16, FRAMES), dtype=np.float32)
    calls = {"np": 0, "torch": 0}

    def noise_for(side):
        def draw(shape):
            calls[side] += 1
            return bank[calls[side] - 1]

        return draw

    from lofi_daemon.backends.ace_step.pipeline import Conditions

    def conds(ids, mask, lyr, lmask):
        g = pipe.graphs
        text = g.text(ids, mask, 1.0)
        spk = np.zeros((1, pipe.speaker_dim), np.float32)
        cond, cm = g.encode(text, mask, spk, lyr, lmask, 1.0)
        unc, um = g.encode(np.zeros_like(text), mask, spk, np.zeros_like(lyr), np.zeros_like(lmask), 1.0)
        return Conditions(cond, unc, cm, um)

    c_src, c_tar = conds(ids_a, mask_a, lyr_a, lmask_a), conds(ids_b, mask_b, lyr_b, lmask_b)
    ours = pipe.flowedit(c_src, c_tar, src, p, n_min, n_max, n_avg, noise_for("np"))
    theirs = ref.flowedit(
        models,
        (ids_a, mask_a, lyr_a, lmask_a),
        (ids_b, mask_b, lyr_b, lmask_b),
        src,
        STEPS,
        p.guidance_scale,
        n_min,
        n_max,
        n_avg,
        noise_for("torch"),
    ).numpy()
    assert calls["np"] == calls["torch"] > 0
    tol = f32_tol(ACE_CONDITIONS + ace_latents(2 * STEPS))
    assert rel_err(ours, theirs) < tol, rel_err(ours, theirs)
    assert rel_err(ours, src) > 1e-2  # the edit moved the latents
