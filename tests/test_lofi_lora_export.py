"""`lofi-lora export` / `quantize` round trips on the tiny fixture: a merged model exports to graphs that match
PyTorch and that the daemon runs exactly like the base model with the LoRA applied; the quantised decoders shrink
by their tier's ratio and drift within their tier's rounding."""

from __future__ import annotations

import pytest

from tests.ace_step_helpers import FIXTURE, fixed_inputs, rel_err
from tests.lofi_lora_helpers import lofi_lora, random_adapter
from tests.tolerances import ace_latents, f32_tol

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")
pytest.importorskip("peft")

pytestmark = [pytest.mark.torch, pytest.mark.slow]
WEIGHT = 0.6
STEPS = 4


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("export")
    torch.set_num_threads(1)
    adapter = random_adapter(tmp / "style", seed=11)
    code, merged = lofi_lora(
        "merge", str(adapter), "--base", str(FIXTURE), "--out", str(tmp / "merged"), "--weight", str(WEIGHT)
    )
    assert code == 0, merged
    code, res = lofi_lora("export", "--base", str(tmp / "merged"), "--out", str(tmp / "onnx"))
    assert code == 0, res
    return tmp, adapter, res


def sample(model_dir, lora=None, frames=9):
    from lofi_daemon.backends.ace_step.backend import AceStepBackend
    from lofi_daemon.backends.ace_step.pipeline import SamplingParams
    from lofi_daemon.config import Settings

    b = AceStepBackend(
        Settings.from_env(
            {
                "LOFI_ACE_STEP_DIR": str(model_dir),
                "LOFI_THREADS": "1",
                "LOFI_CACHE_DIR": str(model_dir.parent / "cache"),
            }
        )
    )
    if lora is not None:
        params = b.validate({"lora": str(lora), "lora_weight": WEIGHT})
        b._apply_lora(params["lora"], params["lora_weight"])
    ids, mask, lyric_ids, lyric_mask, noise = fixed_inputs(frames=frames)
    p = SamplingParams(steps=STEPS)
    return b.pipeline.sample(b.pipeline.conditions_from_ids(ids, mask, lyric_ids, lyric_mask, p), noise, p)


def test_export_of_the_merged_model_runs_like_the_base_with_the_lora(exported):
    tmp, adapter, res = exported
    v = res["verification"]
    assert res["opset"] >= 17 and res["size"] == "tiny"
    assert v["encoder_rel_error"] <= v["tolerance"] and v["decoder_rel_error"] <= v["tolerance"]
    merged = sample(tmp / "onnx")
    with_lora = sample(FIXTURE, lora=adapter)
    assert rel_err(merged, with_lora) < f32_tol(ace_latents(STEPS))
    assert rel_err(merged, sample(FIXTURE)) > 1e-3  # the style is in the export
    # dynamic axes: another length runs too
    assert sample(tmp / "onnx", frames=13).shape[-1] == 13


def test_quantize_tiers_report_size_and_drift(exported):
    tmp, _, _ = exported
    code, res = lofi_lora("quantize", str(tmp / "onnx"), "--tiers", "fp16,int8,int4")
    assert code == 0, res
    t = res["tiers"]
    w = {k: v["weight_bytes"] for k, v in t.items() if isinstance(v, dict)}
    # fp16 halves every weight; int8 and int4 quantise only MatMul weights, and the tiny model's largest tensor is
    # proj_in's convolution (1 MB of its 2.8 MB), which stays float: int8 < 0.7×, int4 below int8
    assert w["fp16"] < 0.55 * w["fp32"] and w["int8"] < 0.7 * w["fp32"] and w["int4"] < w["int8"]
    # drift grows as bits shrink: fp16 rounds at 2^-11, int8 at 2^-8 of each weight's range, int4 at 2^-4
    assert 0 < t["fp16"]["rel_drift"] < 1e-2
    assert t["fp16"]["rel_drift"] < t["int8"]["rel_drift"] < t["int4"]["rel_drift"] < 1.0
    assert any("speaker embedder" in u for u in t["unquantised"])
    assert (tmp / "onnx" / "transformer_decoder_int8.onnx").exists()


def test_quantize_rejects_an_unknown_tier(tmp_path):
    from scripts.lofi_lora.errors import USAGE

    code, res = lofi_lora("quantize", str(tmp_path), "--tiers", "int2")
    assert code == USAGE and "int2" in res["error"]
