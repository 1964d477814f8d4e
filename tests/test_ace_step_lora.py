"""LoRA styles: a random rsLoRA adapter saved by diffusers (PEFT) and merged by the daemon in numpy into the ONNX
initializers gives the same transformer outputs and the same sampled latents as diffusers' `load_lora_adapter`
+ `set_weights_and_activate_adapters` on the PyTorch model."""

from __future__ import annotations

import copy

import pytest

from tests.ace_step_helpers import FIXTURE, fixed_inputs, rel_err

torch = pytest.importorskip("torch")
pytest.importorskip("peft")
pytestmark = pytest.mark.torch

TARGETS = ["speaker_embedder", "linear_q", "linear_k", "linear_v", "to_q", "to_k", "to_v", "to_out.0"]
WEIGHT = 0.7


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from diffusers.utils.peft_utils import set_weights_and_activate_adapters
    from peft import LoraConfig

    from scripts.export_ace_step import load_torch

    torch.set_num_threads(1)
    models = load_torch(FIXTURE)
    base = models["transformer"]
    # train-time side: an rsLoRA adapter with random A and B (B is zero-initialised by PEFT), saved by diffusers
    trainer = copy.deepcopy(base)
    trainer.add_adapter(LoraConfig(r=4, lora_alpha=8, use_rslora=True, target_modules=TARGETS, init_lora_weights=False),
                        adapter_name="style")  # fmt: skip
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for name, p in trainer.named_parameters():
            if "lora_" in name:
                p.copy_(0.08 * torch.randn(p.shape, generator=g))  # a realistic size: delta ~ 30 % of W
    out = tmp_path_factory.mktemp("lora") / "style"
    trainer.save_lora_adapter(str(out), adapter_name="style")
    # inference side as upstream ACEStepPipeline.load_lora does it, except that the file is named through
    # `weight_name` so diffusers honours the adapter metadata (rsLoRA, alpha) — called with a bare file path,
    # diffusers skips the metadata and assumes alpha = r (docs/model-formats.md, LoRA)
    peft_model = copy.deepcopy(base)
    peft_model.load_lora_adapter(str(out), weight_name="pytorch_lora_weights.safetensors",
                                 adapter_name="ace_step_lora", prefix=None)  # fmt: skip
    layer = peft_model.transformer_blocks[0].attn.to_q
    assert layer.use_rslora["ace_step_lora"] and layer.lora_alpha["ace_step_lora"] == 8
    set_weights_and_activate_adapters(peft_model, ["ace_step_lora"], [WEIGHT])
    return models, peft_model, out


def test_lora_merge_matches_diffusers_peft(setup, tmp_path):
    from lofi_daemon.backends.ace_step.backend import AceStepBackend
    from lofi_daemon.backends.ace_step.pipeline import SamplingParams
    from lofi_daemon.config import Settings

    from scripts.ace_step_torch import reference as ref

    models, peft_model, lora_dir = setup
    b = AceStepBackend(Settings.from_env({"LOFI_ACE_STEP_DIR": str(FIXTURE), "LOFI_CACHE_DIR": str(tmp_path),
                                          "LOFI_THREADS": "1"}))  # fmt: skip
    params = b.validate({"lora": str(lora_dir), "lora_weight": WEIGHT})
    assert params["lora"] == str(lora_dir.resolve())
    info = b._apply_lora(params["lora"], params["lora_weight"])
    n_targets = sum(1 for n, _ in peft_model.named_modules() if n.endswith(".lora_A"))
    assert info["lora_modules"] == n_targets > 100

    pipe = b.pipeline
    ids, mask, lyric_ids, lyric_mask, noise = fixed_inputs(frames=19)
    p = SamplingParams(steps=8)
    c = pipe.conditions_from_ids(ids, mask, lyric_ids, lyric_mask, p)
    lat = pipe.sample(c, noise, p)

    lora_models = dict(models, transformer=peft_model)
    tc, tu, tm = ref.conditions(lora_models, ids, mask, lyric_ids, lyric_mask)
    assert rel_err(c.cond, tc.numpy()) < 1e-5 and rel_err(c.uncond, tu.numpy()) < 1e-5
    tlat, _ = ref.sample(lora_models, tc, tu, tm, noise, 8)
    assert rel_err(lat, tlat.numpy()) < 1e-5, rel_err(lat, tlat.numpy())

    # the style matters, and switching back to no LoRA restores the base weights
    base_c, base_u, base_m = ref.conditions(models, ids, mask, lyric_ids, lyric_mask)
    assert rel_err(c.cond, base_c.numpy()) > 1e-3
    b._apply_lora(None, 1.0)
    c0 = pipe.conditions_from_ids(ids, mask, lyric_ids, lyric_mask, p)
    assert rel_err(c0.cond, base_c.numpy()) < 1e-5
    base_lat, _ = ref.sample(models, base_c, base_u, base_m, noise, 8)
    assert rel_err(pipe.sample(c0, noise, p), base_lat.numpy()) < 1e-5
