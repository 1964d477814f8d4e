"""Close the loop: an adapter trained by `lofi-lora train` installs as a LoRA style the daemon lists, changes what
it generates, and equals `lofi-lora merge`'s merged model; upstream's adapter layout (the rap LoRA's keys and
config) loads both here and in diffusers' `load_lora_adapter`."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from tests.ace_step_helpers import FIXTURE, fixed_inputs, rel_err
from tests.lofi_lora_helpers import lofi_lora, train_args, write_features
from tests.tolerances import ACE_CONDITIONS, ace_latents, f32_tol

torch = pytest.importorskip("torch")
pytest.importorskip("peft")
pytest.importorskip("tensorboardX")

pytestmark = [pytest.mark.torch, pytest.mark.slow]

WEIGHT = 0.8
STEPS = 8  # sampler steps
COND_TOL = f32_tol(ACE_CONDITIONS)
LATENT_TOL = f32_tol(ace_latents(STEPS))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A style trained for a few steps at a high learning rate (so its effect is far above rounding), installed
    into a LoRA folder, and merged at WEIGHT."""
    tmp = tmp_path_factory.mktemp("loop")
    mp = pytest.MonkeyPatch()
    mp.setenv("LOFI_LORA_DIR", str(tmp / "styles"))
    torch.set_num_threads(1)
    feats = write_features(tmp / "features")
    code, res = lofi_lora(
        *train_args(feats, tmp / "run", "--steps", "3", "--lr", "3e-2", "--warmup", "0", "--install", "dusty")
    )
    assert code == 0, res
    code, merged = lofi_lora(
        "merge", res["adapter"], "--base", str(FIXTURE), "--out", str(tmp / "merged"), "--weight", str(WEIGHT)
    )
    assert code == 0, merged
    yield tmp, res, merged
    mp.undo()


def test_installed_style_is_listed_and_changes_the_daemons_output(trained, daemon):
    tmp, res, _ = trained
    assert res["installed"] == str(tmp / "styles" / "dusty" / "pytorch_lora_weights.safetensors")
    d = daemon(LOFI_ACE_STEP_DIR=str(FIXTURE), LOFI_THREADS="1", LOFI_LORA_DIR=str(tmp / "styles"))
    info = next(b for b in d.call("get_backends")["backends"] if b["name"] == "ace_step")
    assert info["lora_styles"] == ["dusty"]  # what :Lofi models shows and `lora=` completes
    params = {
        "prompt": "dusty lofi piano",
        "backend": "ace_step",
        "duration_sec": 5,
        "seed": 7,
        "inference_steps": 3,
        "format": "wav",
    }
    import soundfile as sf

    waves = []
    for extra in ({}, {"lora": "dusty", "lora_weight": WEIGHT}):
        r = d.call("generate", {**params, **extra})
        done = d.wait_notification("generation_complete", track_id=r["track_id"], timeout=180)
        waves.append(sf.read(done["path"], dtype="float32")[0])
    assert waves[0].shape == waves[1].shape
    assert rel_err(waves[1], waves[0]) > 1e-3


def test_daemon_with_the_style_equals_the_merged_model(trained, tmp_path):
    from lofi_daemon.backends.ace_step.backend import AceStepBackend
    from lofi_daemon.backends.ace_step.pipeline import SamplingParams
    from lofi_daemon.config import Settings

    from scripts.ace_step_torch import reference as ref
    from scripts.lofi_lora import base

    tmp, res, merged = trained
    check = merged["verification"]
    assert check["max_rel_error"] < check["tolerance"] and check["lora_effect"] > 1e-3
    b = AceStepBackend(
        Settings.from_env(
            {"LOFI_ACE_STEP_DIR": str(FIXTURE), "LOFI_CACHE_DIR": str(tmp_path), "LOFI_THREADS": "1"}
        )
    )
    params = b.validate({"lora": res["adapter"], "lora_weight": WEIGHT})
    b._apply_lora(params["lora"], params["lora_weight"])
    ids, mask, lyric_ids, lyric_mask, noise = fixed_inputs(frames=11)
    p = SamplingParams(steps=STEPS)
    c = b.pipeline.conditions_from_ids(ids, mask, lyric_ids, lyric_mask, p)
    lat = b.pipeline.sample(c, noise, p)

    models = base.load(FIXTURE, ("text_encoder",))
    models["transformer"] = base.load(merged["out"])["transformer"]
    tc, tu, tm = ref.conditions(models, ids, mask, lyric_ids, lyric_mask)
    assert rel_err(c.cond, tc.numpy()) < COND_TOL
    tlat, _ = ref.sample(models, tc, tu, tm, noise, STEPS)
    assert rel_err(lat, tlat.numpy()) < LATENT_TOL
    models["transformer"] = base.load(FIXTURE)["transformer"]
    base_lat, _ = ref.sample(models, *ref.conditions(models, ids, mask, lyric_ids, lyric_mask), noise, STEPS)
    assert rel_err(lat, base_lat.numpy()) > 100 * LATENT_TOL  # and the style matters


# ---- upstream compatibility --------------------------------------------------------------------------------

# upstream's config/zh_rap_lora_config.json: what the released Chinese rap LoRA was trained with
RAP_CONFIG = {
    "r": 256,
    "lora_alpha": 32,
    "target_modules": [
        "speaker_embedder",
        "linear_q",
        "linear_k",
        "linear_v",
        "to_q",
        "to_k",
        "to_v",
        "to_out.0",
    ],
    "use_rslora": True,
}


def rap_layout_file(folder, with_metadata: bool, rank: int = 4):
    """A file with upstream's rap-LoRA layout: trainer.py saves with `save_lora_adapter`, so the keys are peft's
    state-dict names without the adapter name (`transformer_blocks.0.attn.to_q.lora_A.weight`, …) for all eight
    targets; diffusers ≥ 0.34 adds the LoraConfig as `lora_adapter_metadata`, older ones (the released file's
    era) write no metadata, and then every loader assumes α = r. Rank shrunk for the tiny model; values random."""
    import json

    from peft import LoraConfig
    from safetensors.numpy import save_file

    from scripts.lofi_lora import base

    model = base.load(FIXTURE)["transformer"]
    rng = np.random.default_rng(3)
    tensors = {}
    for name, m in model.named_modules():
        if isinstance(m, torch.nn.Linear) and any(
            name == t or name.endswith("." + t) for t in RAP_CONFIG["target_modules"]
        ):
            tensors[f"{name}.lora_A.weight"] = (0.1 * rng.standard_normal((rank, m.in_features))).astype(
                np.float32
            )
            tensors[f"{name}.lora_B.weight"] = (0.1 * rng.standard_normal((m.out_features, rank))).astype(
                np.float32
            )
    meta = {"format": "pt"}
    if with_metadata:
        config = LoraConfig(**dict(RAP_CONFIG, r=rank, lora_alpha=8)).to_dict()
        meta["lora_adapter_metadata"] = json.dumps(
            {k: sorted(v) if isinstance(v, set) else v for k, v in config.items()}
        )
    folder.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(folder / "pytorch_lora_weights.safetensors"), metadata=meta)
    return folder, model


@pytest.mark.parametrize("with_metadata", [True, False])
def test_upstream_rap_lora_layout_loads_here_and_in_diffusers(tmp_path, with_metadata):
    from lofi_daemon.backends.ace_step.lora import read_lora

    from scripts.lofi_lora import merge

    folder, model = rap_layout_file(tmp_path / "rap", with_metadata)
    pairs, cfg = read_lora(folder)
    assert any(k.startswith("speaker_embedder") for k in pairs)
    assert any(".self_attn.linear_q" in k for k in pairs)
    assert (cfg.alpha, cfg.use_rslora) == ((8.0, True) if with_metadata else (4.0, False))
    state, n = merge.merged_state(model, folder, 1.0)
    assert n == len(pairs)
    merged = copy.deepcopy(model)
    merged.load_state_dict(state)
    check = merge.verify(model, merged, folder, 1.0)  # diffusers' load_lora_adapter reads the same file
    assert check["max_rel_error"] < check["tolerance"] and check["lora_effect"] > 1e-2


def test_our_adapter_loads_with_upstreams_loader_call(trained):
    """Upstream's `ACEStepPipeline.load_lora` calls `load_lora_adapter(path, adapter_name=…, with_alpha=True)`
    on its transformer (a diffusers PeftAdapterMixin like ours): every tensor of our file must land."""
    from safetensors.torch import load_file

    from scripts.lofi_lora import base

    _, res, _ = trained
    model = base.load(FIXTURE)["transformer"]
    model.load_lora_adapter(res["adapter"], adapter_name="ace_step_lora", prefix=None)
    ours = load_file(res["adapter"])
    params = dict(model.named_parameters())
    for key, value in ours.items():
        name = key.replace(".lora_A.", ".lora_A.ace_step_lora.").replace(".lora_B.", ".lora_B.ace_step_lora.")
        assert torch.equal(params[name], value), key
