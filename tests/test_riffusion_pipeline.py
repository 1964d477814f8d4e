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
        want = ref(
            prompt,
            negative_prompt=c["neg"] or None,
            height=64,
            width=128,
            num_inference_steps=c["steps"],
            guidance_scale=c["g"],
            latents=torch.from_numpy(noise),
            output_type="latent",
        ).images.numpy()
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


def test_vae_encoder_matches_diffusers(pipe):
    ref = diffusers_pipeline()
    img = np.random.default_rng(5).integers(0, 256, size=(64, 128, 3), dtype=np.uint8)
    x = torch.from_numpy((img.astype(np.float32) / 255 * 2 - 1).transpose(2, 0, 1)[None].copy())
    noise = np.random.default_rng(6).standard_normal((1, 4, 8, 16), dtype=np.float32)
    with torch.no_grad():
        dist = ref.vae.encode(x).latent_dist
        want_mean = dist.mean.numpy() * 0.18215
        want_sample = (dist.mean + dist.std * torch.from_numpy(noise)).numpy() * 0.18215
    assert rel_err(pipe.encode_image(img), want_mean) < 1e-5
    assert rel_err(pipe.encode_image(img, noise), want_sample) < 1e-5
    assert rel_err(want_sample, want_mean) > 1e-3  # the posterior's spread is real


IMG2IMG = {
    "dpm_075": dict(scheduler="dpmsolver++", steps=12, strength=0.75, g=7.0),
    "ddim_05": dict(scheduler="ddim", steps=10, strength=0.5, g=7.0),
    "dpm_03_no_cfg": dict(scheduler="dpmsolver++", steps=10, strength=0.3, g=1.0),
}


@pytest.mark.parametrize("name", sorted(IMG2IMG))
def test_img2img_loop_matches_diffusers(name, pipe):
    from diffusers import StableDiffusionImg2ImgPipeline
    from lofi_daemon.backends.riffusion.pipeline import Sampling

    c = IMG2IMG[name]
    ref = StableDiffusionImg2ImgPipeline(**diffusers_pipeline(c["scheduler"]).components)
    init = np.random.default_rng(12).standard_normal((1, 4, 8, 16), dtype=np.float32)
    # diffusers draws the img2img noise from the generator: draw the same tensor for our side
    noise = torch.randn((1, 4, 8, 16), generator=torch.Generator().manual_seed(3)).numpy()
    prompt = "funky drum break"
    with torch.no_grad():
        want = ref(
            prompt,
            image=torch.from_numpy(init),
            strength=c["strength"],
            num_inference_steps=c["steps"],
            guidance_scale=c["g"],
            generator=torch.Generator().manual_seed(3),
            output_type="latent",
        ).images
    p = Sampling(steps=c["steps"], guidance_scale=c["g"], scheduler=c["scheduler"])
    steps = []
    got = pipe.sample(
        pipe.embeddings(prompt, "", c["g"]),
        noise,
        p,
        init=init,
        strength=c["strength"],
        on_step=lambda i, n: steps.append((i, n)),
    )
    run = int(c["steps"] * c["strength"])
    assert steps == [(i + 1, run) for i in range(run)]
    assert rel_err(got, want.numpy()) < 1e-4, rel_err(got, want.numpy())
    assert rel_err(got, init) > 0.05  # it changed the image
