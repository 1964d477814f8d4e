"""The ONNX pipeline against transformers' MusicgenForConditionalGeneration on the same (tiny, random) weights.

Greedy decoding (top-k 1) makes both deterministic, so codes must be identical, not merely close.
"""

from __future__ import annotations

import numpy as np
import pytest
from lofi_daemon.backends.musicgen.pipeline import MusicGenPipeline, SamplingParams

from tests.musicgen_fixture import FIXTURE, PROMPTS, cpu_settings, fixture_files
from tests.tolerances import audio_tol

pytestmark = pytest.mark.torch
torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

GREEDY = SamplingParams(guidance_scale=3.0, top_k=1)


@pytest.fixture(scope="module")
def reference():
    """transformers model on the fixture's safetensors, with the codes it hands to EnCodec captured."""
    model = transformers.MusicgenForConditionalGeneration.from_pretrained(FIXTURE / "pytorch").eval()
    captured = {}
    decode = model.audio_encoder.decode

    def capture(codes, *args, **kwargs):
        captured["codes"] = codes.clone()
        return decode(codes, *args, **kwargs)

    model.audio_encoder.decode = capture

    def run(
        ids: list[int],
        new_frames: int,
        prompt_frames: np.ndarray | None = None,
        negative_ids: list[int] | None = None,
    ):
        input_ids = torch.tensor([ids])
        kwargs = {"attention_mask": torch.ones_like(input_ids)}
        if prompt_frames is not None:
            kwargs["decoder_input_ids"] = torch.tensor(np.ascontiguousarray(prompt_frames.T))
        if negative_ids is not None:
            # the guidance batch built by hand: transformers' T5 over [prompt, negative] as one padded batch,
            # handed to generate as the encoder outputs (generate then adds no zero row of its own)
            width = max(len(ids), len(negative_ids))
            rows = [ids, negative_ids]
            batch = torch.tensor([r + [0] * (width - len(r)) for r in rows])
            mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
            with torch.inference_mode():
                hidden = model.text_encoder(input_ids=batch, attention_mask=mask).last_hidden_state
            kwargs = {**kwargs, "encoder_outputs": (hidden,), "attention_mask": mask}
        with torch.inference_mode():
            audio = model.generate(
                input_ids,
                do_sample=False,
                guidance_scale=3.0,
                max_new_tokens=new_frames + 3,  # the delay pattern costs 3 extra steps
                **kwargs,
            )
        return captured["codes"][0, 0].numpy().T, audio[0, 0].numpy()

    return run


@pytest.fixture(scope="module", params=["static", "concat"])
def pipe(request):
    """Both decoder paths: the in-place KV cache (static_kv.py, the CPU default) and the export's own Concat cache."""
    pipe = MusicGenPipeline(fixture_files(), cpu_settings(), kv_cache=request.param)
    assert pipe.kv_cache == request.param
    return pipe


@pytest.mark.parametrize("frames", [7, 40, 125])
def test_greedy_codes_and_audio_match_transformers(pipe, reference, frames):
    outputs = []
    for prompt in PROMPTS:
        ours = pipe.generate_frames(prompt, frames / 50, seed=0, params=GREEDY)[0]
        ref_codes, ref_audio = reference(pipe.tokenizer.encode(prompt).ids, frames)
        assert ours.shape == ref_codes.shape == (frames, 4)
        assert np.array_equal(ours, ref_codes), f"{(ours != ref_codes).sum()} code mismatches for {prompt!r}"
        audio = pipe.decode(ours)
        assert audio.shape == ref_audio.shape
        err = np.abs(audio - ref_audio).max()
        assert err < audio_tol(len(ours), ref_audio), err  # same codes, ONNX Runtime against PyTorch EnCodec
        outputs.append(ours)
    # the test is only meaningful if different prompts lead to different codes
    assert not all(np.array_equal(outputs[0], o) for o in outputs[1:])


@pytest.mark.parametrize("negative", ["distorted noisy drums, harsh, loud, out of tune vocals", "vocals"])
def test_negative_prompt_is_the_unconditional_row_like_transformers(pipe, reference, negative):
    """The negative prompt's T5 states replace the zero row of the guidance batch; a negative prompt longer or
    shorter than the prompt pads the other row under a zero mask. Greedy codes equal transformers' generate
    with that batch as its encoder outputs, and differ from generating without it."""
    prompt = PROMPTS[1]
    params = SamplingParams(guidance_scale=3.0, top_k=1, negative_prompt=negative)
    ours = pipe.generate_frames(prompt, 0.8, seed=0, params=params)[0]
    ref_codes, _ = reference(
        pipe.tokenizer.encode(prompt).ids, 40, negative_ids=pipe.tokenizer.encode(negative).ids
    )
    assert np.array_equal(ours, ref_codes), f"{(ours != ref_codes).sum()} code mismatches"
    without = pipe.generate_frames(prompt, 0.8, seed=0, params=GREEDY)[0]
    assert not np.array_equal(ours, without)


def test_without_the_tail_rule_the_last_frames_would_differ(pipe, reference, monkeypatch):
    """Sensitivity check: transformers' tail triangle is what makes the last frames exact. Dropping
    it (generate 3 frames more, cut them off) keeps every earlier frame but changes some of the last three."""
    import lofi_daemon.backends.musicgen.pipeline as mod

    real_window = mod.MusicGenPipeline._window

    def window_without_tail(self, prompt_frames, new_frames, *args):
        return real_window(self, prompt_frames, new_frames + 3, *args)[:new_frames]

    refs = [reference(pipe.tokenizer.encode(p).ids, 40)[0] for p in PROMPTS]
    monkeypatch.setattr(mod.MusicGenPipeline, "_window", window_without_tail)
    tails_differ = []
    for prompt, ref_codes in zip(PROMPTS, refs, strict=True):
        ours = pipe.generate_frames(prompt, 40 / 50, seed=0, params=GREEDY)[0]
        assert np.array_equal(ours[:-3], ref_codes[:-3])
        tails_differ.append(not np.array_equal(ours[-3:], ref_codes[-3:]))
    assert any(tails_differ)


def test_windowed_continuation_matches_transformers_audio_prompt(reference):
    """Beyond the window, each continuation equals transformers continuing from the same audio-code prompt."""
    short = MusicGenPipeline(fixture_files(), cpu_settings(), window_sec=1.0, stride_sec=0.6)
    ids = short.tokenizer.encode("lofi").ids
    frames, plan = short.generate_frames("lofi", 1.8, seed=0, params=GREEDY)
    assert [(w["prompt"], w["new"]) for w in plan] == [(0, 50), (20, 30), (20, 10)]
    first, _ = reference(ids, 50)
    assert np.array_equal(frames[:50], first)
    done = 50
    for w in plan[1:]:
        prompt = frames[done - w["prompt"] : done]
        ref, _ = reference(ids, w["new"], prompt_frames=prompt)
        assert np.array_equal(ref[: w["prompt"]], prompt)
        assert np.array_equal(frames[done : done + w["new"]], ref[w["prompt"] :])
        done += w["new"]


def test_split_decoder_pair_matches_merged(tmp_path, pipe, reference):
    """The split pair (decoder_model + decoder_with_past_model) is not committed: export it here from the
    fixture's PyTorch weights with the same exporter, and check it generates the same codes."""
    from scripts.build_musicgen import export_onnx

    out = tmp_path / "onnx"
    export_onnx(FIXTURE / "pytorch", out)
    files = fixture_files(merged=True)
    del files["decoder_merged"]
    files["decoder"] = out / "decoder_model.onnx"
    files["decoder_with_past"] = out / "decoder_with_past_model.onnx"
    for kv_cache in ("static", "concat"):  # the split pair converts to the in-place cache too
        split = MusicGenPipeline(files, cpu_settings(), kv_cache=kv_cache)
        assert split.kv_cache == kv_cache
        for prompt in PROMPTS[:2]:
            ours = split.generate_frames(prompt, 0.8, seed=0, params=GREEDY)[0]
            ref_codes, _ = reference(split.tokenizer.encode(prompt).ids, 40)
            assert np.array_equal(ours, ref_codes)
        sampled_split = split.generate_frames("lofi", 0.5, seed=9, params=SamplingParams())[0]
        sampled_merged = pipe.generate_frames("lofi", 0.5, seed=9, params=SamplingParams())[0]
        assert np.array_equal(sampled_split, sampled_merged)

    # fp16 graphs with fp16 inputs/outputs (hub `small_fp16`, Xenova `_fp16`): the pipeline reads the dtypes
    # from the sessions and casts hidden states / KV accordingly
    pytest.importorskip("onnx")
    from scripts.quantize_musicgen import quantize

    for role in ("decoder", "decoder_with_past"):
        src = files[role]
        files[role] = src.with_name(src.stem + "_fp16.onnx")
        quantize(src, files[role], "fp16")
    half = MusicGenPipeline(files, cpu_settings())
    assert half.kv_cache == "concat"  # GroupQueryAttention is float32-only on the CPU: the export is kept
    assert half.decoder.kv_dtype == np.float16 and half.decoder.hidden_dtype == np.float16
    codes = half.generate_frames(PROMPTS[0], 0.8, seed=0, params=GREEDY)[0]
    ref_codes, _ = reference(half.tokenizer.encode(PROMPTS[0]).ids, 40)
    assert (codes == ref_codes).mean() > 0.9
    assert np.isfinite(half.decode(codes)).all()
