"""The Riffusion ONNX pipeline (numpy + onnxruntime) against diffusers on the tiny fixture's PyTorch weights:
each graph to 1e-5 relative, and whole sampling loops (DPM-Solver++ and DDIM, guidance on and off, negative
prompt) from the same initial noise to 1e-4 relative on the final latents."""

from __future__ import annotations

import numpy as np
import pytest

from tests.riffusion_helpers import diffusers_pipeline, rel_err, tiny_pipeline

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch


@pytest.fixture(scope="module")
def pipe():
    torch.set_num_threads(1)
    return tiny_pipeline()


def test_graphs_match_diffusers(pipe):
    ref = diffusers_pipeline()
    rng = np.random.default_rng(0)
    prompts = ["lofi hip hop beat with dusty piano", "", "Jazzy  CHILL guitar, 80 bpm!! café"]
    ids = pipe.tokenizer(prompts)
    assert (
        ids.tolist() == ref.tokenizer(prompts, padding="max_length", max_length=77, truncation=True).input_ids
    )
    with torch.no_grad():
        want = ref.text_encoder(torch.from_numpy(ids))[0].numpy()
    got = pipe.encode_text(prompts)
    assert got.shape == want.shape and rel_err(got, want) < 1e-5
    assert rel_err(got[0], got[1]) > 1e-2  # the prompt matters

    lat = rng.standard_normal((2, 4, 8, 16), dtype=np.float32)
    ctx = got[:2]
    with torch.no_grad():
        want = ref.unet(
            torch.from_numpy(lat), 421, encoder_hidden_states=torch.from_numpy(ctx)
        ).sample.numpy()
    out = pipe.unet(lat, 421.0, ctx)
    assert rel_err(out, want) < 1e-5 and rel_err(out, pipe.unet(lat, 20.0, ctx)) > 1e-3
    assert rel_err(out, pipe.unet(lat, 421.0, got[1:])) > 1e-3  # the text conditions the UNet

    with torch.no_grad():
        want = ref.vae.decode(torch.from_numpy(lat) / ref.vae.config.scaling_factor).sample.numpy()
    img = pipe.decode(lat)
    assert img.shape == (2, 3, 64, 128) and rel_err(img, want) < 1e-5


CASES = {
    "dpm_cfg": dict(scheduler="dpmsolver++", steps=12, g=7.0, neg=""),
    "dpm_cfg_negative": dict(scheduler="dpmsolver++", steps=20, g=7.0, neg="harsh noise"),
    "dpm_no_cfg": dict(scheduler="dpmsolver++", steps=8, g=1.0, neg=""),
    "ddim_cfg": dict(scheduler="ddim", steps=10, g=5.0, neg="drums"),
    # riffusion-model-v1's config predates `timestep_spacing`: from_config then uses each class's default
    "dpm_linspace": dict(scheduler="dpmsolver++", steps=15, g=7.0, neg="", spacing="linspace"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_sampling_loop_matches_diffusers(name, pipe):
    from lofi_daemon.backends.riffusion.pipeline import Sampling

    c = CASES[name]
    ref = diffusers_pipeline(c["scheduler"], spacing=c.get("spacing"))
    if c.get("spacing"):
        pipe = tiny_pipeline()
        pipe.scheduler_config = {**pipe.scheduler_config, "timestep_spacing": c["spacing"]}
    noise = np.random.default_rng(11).standard_normal((1, 4, 8, 16), dtype=np.float32)
    prompt = "jazzy chill guitar loop"
    with torch.no_grad():
        want = ref(prompt, negative_prompt=c["neg"] or None, height=64, width=128, num_inference_steps=c["steps"],
                   guidance_scale=c["g"], latents=torch.from_numpy(noise), output_type="latent").images.numpy()  # fmt: skip
    p = Sampling(steps=c["steps"], guidance_scale=c["g"], scheduler=c["scheduler"])
    steps = []
    got = pipe.sample(
        pipe.embeddings(prompt, c["neg"], c["g"]), noise, p, on_step=lambda i, n: steps.append((i, n))
    )
    assert steps == [(i + 1, c["steps"]) for i in range(c["steps"])]
    assert rel_err(got, want) < 1e-4, rel_err(got, want)
    assert rel_err(got, noise) > 0.1  # it really denoised
    with torch.no_grad():
        img = ref.image_processor.postprocess(
            ref.vae.decode(torch.from_numpy(got) / 0.18215).sample, output_type="np"
        )
    assert np.abs(pipe.image(got).astype(int) - (img[0] * 255).round().astype(int)).max() <= 1
