"""LoRA styles: a random rsLoRA adapter saved by diffusers (PEFT) and merged by the daemon in numpy into the ONNX
initializers gives the same transformer outputs and the same sampled latents as diffusers' `load_lora_adapter`
+ `set_weights_and_activate_adapters` on the PyTorch model (needs torch). What `lora` may name: a style in the
LoRA folder or a LoRA .safetensors file, with one answer for every other value (no torch needed)."""

from __future__ import annotations

import copy
import os

import pytest

from tests.ace_step_helpers import FIXTURE, fixed_inputs, rel_err
from tests.tolerances import ACE_CONDITIONS, ace_latents, f32_tol

TARGETS = ["speaker_embedder", "linear_q", "linear_k", "linear_v", "to_q", "to_k", "to_v", "to_out.0"]
WEIGHT = 0.7
COND_TOL = f32_tol(ACE_CONDITIONS)
LATENT_TOL = f32_tol(ace_latents(8))  # 8 Euler steps


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    torch = pytest.importorskip("torch")
    pytest.importorskip("peft")
    from diffusers.utils.peft_utils import set_weights_and_activate_adapters
    from peft import LoraConfig

    from scripts.export_ace_step import load_torch

    torch.set_num_threads(1)
    models = load_torch(FIXTURE)
    base = models["transformer"]
    # train-time side: an rsLoRA adapter with random A and B (B is zero-initialised by PEFT), saved by diffusers
    trainer = copy.deepcopy(base)
    trainer.add_adapter(
        LoraConfig(r=4, lora_alpha=8, use_rslora=True, target_modules=TARGETS, init_lora_weights=False),
        adapter_name="style",
    )
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
    peft_model.load_lora_adapter(
        str(out), weight_name="pytorch_lora_weights.safetensors", adapter_name="ace_step_lora", prefix=None
    )
    layer = peft_model.transformer_blocks[0].attn.to_q
    assert layer.use_rslora["ace_step_lora"] and layer.lora_alpha["ace_step_lora"] == 8
    set_weights_and_activate_adapters(peft_model, ["ace_step_lora"], [WEIGHT])
    return models, peft_model, out


@pytest.mark.torch
def test_lora_merge_matches_diffusers_peft(setup, tmp_path):
    from lofi_daemon.backends.ace_step.backend import AceStepBackend
    from lofi_daemon.backends.ace_step.pipeline import SamplingParams
    from lofi_daemon.config import Settings

    from scripts.ace_step_torch import reference as ref

    models, peft_model, lora_dir = setup
    b = AceStepBackend(
        Settings.from_env(
            {"LOFI_ACE_STEP_DIR": str(FIXTURE), "LOFI_CACHE_DIR": str(tmp_path), "LOFI_THREADS": "1"}
        )
    )
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
    # ONNX Runtime against PyTorch: float32 rounding only (tests/tolerances.py)
    assert rel_err(c.cond, tc.numpy()) < COND_TOL and rel_err(c.uncond, tu.numpy()) < COND_TOL
    tlat, _ = ref.sample(lora_models, tc, tu, tm, noise, 8)
    assert rel_err(lat, tlat.numpy()) < LATENT_TOL, rel_err(lat, tlat.numpy())

    # the style matters, and switching back to no LoRA restores the base weights
    base_c, base_u, base_m = ref.conditions(models, ids, mask, lyric_ids, lyric_mask)
    assert rel_err(c.cond, base_c.numpy()) > 1e-3
    b._apply_lora(None, 1.0)
    c0 = pipe.conditions_from_ids(ids, mask, lyric_ids, lyric_mask, p)
    assert rel_err(c0.cond, base_c.numpy()) < COND_TOL
    base_lat, _ = ref.sample(models, base_c, base_u, base_m, noise, 8)
    assert rel_err(pipe.sample(c0, noise, p), base_lat.numpy()) < LATENT_TOL


# ---- what `lora` may name ----------------------------------------------------------------------------------


def lora_backend(tmp_path, monkeypatch):
    from lofi_daemon.backends.ace_step.backend import AceStepBackend
    from lofi_daemon.config import Settings

    monkeypatch.delenv("LOFI_LORA_DIR", raising=False)
    return AceStepBackend(Settings(cache_dir=tmp_path / "cache", log_dir=tmp_path / "log"))


def save_lora(path, tensors=None):
    import numpy as np
    from safetensors.numpy import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    if tensors is None:
        tensors = {
            "transformer_blocks.0.attn.to_q.lora_A.weight": np.zeros((4, 8), np.float32),
            "transformer_blocks.0.attn.to_q.lora_B.weight": np.zeros((8, 4), np.float32),
        }
    save_file(tensors, str(path))
    return path


def lora_error(backend, value):
    from lofi_daemon.errors import ErrorCode, LofiError

    with pytest.raises(LofiError) as ei:
        backend.validate({"lora": value})
    assert ei.value.code == ErrorCode.INVALID_PARAMS
    return ei.value.message


def test_lora_names_a_style_or_a_lora_file(tmp_path, monkeypatch):
    b = lora_backend(tmp_path, monkeypatch)
    save_lora(b.lora_dir() / "dusty-tape" / "pytorch_lora_weights.safetensors")
    assert b.validate({"lora": "dusty-tape"})["lora"] == "dusty-tape"
    elsewhere = save_lora(tmp_path / "mine" / "pytorch_lora_weights.safetensors")
    assert b.validate({"lora": str(elsewhere)})["lora"] == str(elsewhere.resolve())
    assert b.validate({"lora": str(elsewhere.parent)})["lora"] == str(elsewhere.parent.resolve())
    other_name = save_lora(tmp_path / "styles" / "vinyl.safetensors")
    assert b.validate({"lora": str(other_name)})["lora"] == str(other_name)


def test_lora_is_no_file_existence_oracle(tmp_path, monkeypatch):
    """Every value that is not a style or a LoRA file gets the very same answer: whether a file exists, is
    readable, is a folder or holds something else is not revealed."""
    import numpy as np

    b = lora_backend(tmp_path, monkeypatch)
    save_lora(b.lora_dir() / "dusty-tape" / "pytorch_lora_weights.safetensors")
    secret = tmp_path / "secret.txt"
    secret.write_text("root:x:0:0")
    unreadable = save_lora(tmp_path / "locked" / "pytorch_lora_weights.safetensors")
    no_pairs = save_lora(tmp_path / "plain.safetensors", {"weight": np.zeros(3, np.float32)})
    no_b = save_lora(tmp_path / "half.safetensors", {"x.lora_A.weight": np.zeros((2, 2), np.float32)})
    renamed = tmp_path / "lora.safetensors"
    renamed.write_bytes(b"\xff" * 64)  # a .safetensors name, not a safetensors file
    fifo = tmp_path / "pipe.safetensors"
    os.mkfifo(fifo)  # opening a FIFO for reading would block the daemon forever
    values = [
        "/etc/shadow",
        "/etc/passwd",
        "/nonexistent",
        "/nonexistent/pytorch_lora_weights.safetensors",
        str(secret),
        str(tmp_path),
        str(no_pairs),
        str(no_b),
        str(renamed),
        str(fifo),
        "../../etc/passwd",
        "dusty-tape/../../../etc/passwd",
        "..",
        "no-such-style",
        "secret.txt",
        "lora/dusty-tape",  # relative: would resolve against the daemon's cwd
        str(unreadable.relative_to(tmp_path)),
    ]
    if os.geteuid() != 0:  # root reads everything
        unreadable.chmod(0)
        values.append(str(unreadable))
    messages = {lora_error(b, v) for v in values}
    assert len(messages) == 1, messages
    (message,) = messages
    assert "dusty-tape" in message and str(b.lora_dir()) in message
