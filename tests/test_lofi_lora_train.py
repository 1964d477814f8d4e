"""`lofi-lora train` on the tiny fixture: upstream's schedule and objective, over-fitting a fixed batch, bit-for-bit
resume, torn checkpoints, metrics, and the base-model diagnostics."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.ace_step_helpers import FIXTURE
from tests.lofi_lora_helpers import lofi_lora, train_args, write_features

torch = pytest.importorskip("torch")
pytest.importorskip("peft")
pytest.importorskip("tensorboardX")

from scripts.lofi_lora import base, checkpoints, features, train  # noqa: E402
from scripts.lofi_lora.errors import ENVIRONMENT, FAILED_INPUT  # noqa: E402

pytestmark = pytest.mark.torch


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # same sums in the same order: bit-for-bit comparisons stay exact
    yield
    torch.set_num_threads(n)


def test_flow_schedule_is_upstreams_scheduler():
    from diffusers import FlowMatchEulerDiscreteScheduler

    ref = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0)
    timesteps, sigmas = train.flow_schedule(3.0)
    assert torch.equal(timesteps, ref.timesteps) and torch.equal(sigmas, ref.sigmas)


def test_learning_rate_warms_up_then_decays_linearly_to_zero():
    f = train.lr_lambda(warmup=10, steps=110)
    assert [f(s) for s in (0, 5, 10, 60, 110, 200)] == [0.0, 0.5, 1.0, 0.5, 0.0, 0.0]


def test_bf16_only_on_cpus_that_have_it():
    assert train.cpu_has_bf16("flags\t\t: fpu sse2 avx512f avx512_bf16\n")
    assert train.cpu_has_bf16("flags\t\t: fpu amx_bf16 amx_tile\n")
    assert not train.cpu_has_bf16("flags\t\t: fpu sse2 avx2 avx512f\n")


def test_condition_dropout_drops_each_condition_per_sample():
    batch = {
        "latents": torch.ones(4000, 1, 1, 1),
        "text_states": torch.ones(4000, 2, 3),
        "speaker_emb": torch.ones(4000, 5),
        "lyric_ids": torch.ones(4000, 7, dtype=torch.long),
        "lyric_mask": torch.ones(4000, 7, dtype=torch.long),
    }
    out = train.drop_conditions(
        batch, torch.Generator().manual_seed(0), {"text": 0.15, "speaker": 0.5, "lyrics": 0.15}
    )
    dropped = {
        "text": (out["text_states"].sum((1, 2)) == 0).float().mean().item(),
        "speaker": (out["speaker_emb"].sum(1) == 0).float().mean().item(),
        "lyrics": (out["lyric_ids"].sum(1) == 0).float().mean().item(),
    }
    assert torch.equal(out["lyric_ids"].sum(1) == 0, out["lyric_mask"].sum(1) == 0)  # ids and mask together
    # binomial(4000, p): 5 standard deviations are below 0.04
    assert abs(dropped["text"] - 0.15) < 0.03 and abs(dropped["lyrics"] - 0.15) < 0.03
    assert abs(dropped["speaker"] - 0.5) < 0.04


def fixed_draw_floor(trainer, samples, seed: int) -> float:
    """The least loss any weights can reach on one draw: the final layer maps each token's inner_dim vector h to
    its p·c = 128 outputs through the frozen matrix W [128, inner_dim] (+ bias), so only targets in W's column
    space are reachable; the least-squares residual outside it (a lower bound: h is also norm-constrained) is the
    floor. With the fixture's inner_dim 32, three quarters of a random target are out of reach."""
    g = torch.Generator().manual_seed(seed)
    torch.randperm(1, generator=g)  # what next_batch draws
    batch = train.drop_conditions(train.collate(samples), g, trainer.cfg.dropout)
    x0 = batch["latents"]
    noise = torch.randn(x0.shape, generator=g)
    _, sigma = train.sample_timesteps(g, 1, trainer.cfg, trainer.schedule)
    xt = sigma * noise + (1 - sigma) * x0
    target = ((xt - x0) / sigma).permute(0, 3, 2, 1).reshape(-1, 128)  # tokens × (p, c), as T2IFinalLayer
    layer = trainer.model.final_layer.linear
    w, b = layer.weight.detach().double(), layer.bias.detach().double()
    r = (target.double() - b).T
    coef = torch.linalg.lstsq(w, r).solution
    return float(sigma.item() ** 2 * ((r - w @ coef) ** 2).mean())


def test_overfits_a_fixed_batch(tmp_path):
    """One sample, and the same noise, timestep and dropout draw at every step: the LoRA must close most of the
    gap between the base model's loss and the floor of what any weights reach (computed above)."""
    samples = features.load_samples(write_features(tmp_path / "f", n=1))
    cfg = train.TrainConfig(steps=10_000, rank=8, alpha=8, lr=1e-2, warmup=0, precision="fp32")
    model = base.load(FIXTURE)["transformer"]
    model.transformer_blocks = model.transformer_blocks[:2]  # same block, fewer copies: a cheap test
    trainer = train.Trainer(model, samples, cfg)
    floor = fixed_draw_floor(trainer, samples, seed=7)
    losses = []
    for _ in range(40):
        trainer.gen.manual_seed(7)
        losses.append(trainer.train_step()["loss"])
    assert losses[0] > 1.5 * floor
    closed = (losses[0] - losses[-1]) / (losses[0] - floor)
    assert closed > 0.6, (losses[0], losses[-1], floor)
    assert losses[0] / losses[-1] > 1.4


def test_trains_writes_checkpoints_metrics_and_an_adapter(tmp_path):
    feats = write_features(tmp_path / "f")
    out = tmp_path / "run"
    code, res = lofi_lora(*train_args(feats, out, "--steps", "4", "--checkpoint-every", "2"))
    assert code == 0, res
    assert res["step"] == 4 and res["precision"] == "fp32" and res["resume_from"] is None
    manifest = json.loads((out / "checkpoints" / checkpoints.MANIFEST).read_text())["checkpoints"]
    assert sorted(manifest) == ["step-00000002", "step-00000004"]
    for name, entry in manifest.items():
        assert set(entry["files"]) == {train.ADAPTER_FILE, train.STATE_FILE}
        assert checkpoints.problems(out / "checkpoints" / name) == []
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4] and all(r["loss"] > 0 for r in rows)
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    # the adapter is a diffusers/PEFT file the daemon reads: upstream's config, DiT attention targets only
    from lofi_daemon.backends.ace_step.lora import read_lora

    pairs, cfg = read_lora(Path(res["adapter"]))
    assert (cfg.r, cfg.alpha, cfg.use_rslora) == (4, 8.0, True)
    n_blocks = 20
    assert len(pairs) == n_blocks * 2 * 4  # self- and cross-attention × to_q, to_k, to_v, to_out.0
    assert all(k.split(".")[-1] in ("to_q", "to_k", "to_v", "0") for k in pairs)


def final_adapter(out: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(out / train.ADAPTER_FILE))


def test_resume_is_bit_for_bit_and_skips_a_torn_checkpoint(tmp_path):
    feats = write_features(tmp_path / "f")
    straight = tmp_path / "straight"
    args = ("--steps", "6", "--checkpoint-every", "2")
    assert lofi_lora(*train_args(feats, straight, *args))[0] == 0
    straight_rows = (straight / "metrics.jsonl").read_text().splitlines()

    # a run that died after writing step 6's checkpoint but with step 6's adapter torn, and step 4 unlisted
    # (the crash came before the manifest was updated): resume must go back to step 2
    torn = tmp_path / "torn"
    shutil.copytree(straight, torn)
    (torn / train.ADAPTER_FILE).unlink()
    ckpts = torn / "checkpoints"
    f = ckpts / "step-00000006" / train.ADAPTER_FILE
    f.write_bytes(f.read_bytes()[:-7])
    manifest = json.loads((ckpts / checkpoints.MANIFEST).read_text())
    del manifest["checkpoints"]["step-00000004"]
    (ckpts / checkpoints.MANIFEST).write_text(json.dumps(manifest))
    code, res = lofi_lora(*train_args(feats, torn, *args))
    assert code == 0, res
    assert res["resume_from"].endswith("step-00000002")
    assert [s["checkpoint"] for s in res["skipped_checkpoints"]] == ["step-00000006", "step-00000004"]
    assert "hash" in res["skipped_checkpoints"][0]["problems"][0]
    a, b = final_adapter(straight), final_adapter(torn)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert (torn / "metrics.jsonl").read_text().splitlines() == straight_rows  # losses too, step for step


def test_ckpt_path_resumes_from_the_named_checkpoint_and_refuses_a_torn_one(tmp_path):
    feats = write_features(tmp_path / "f")
    run = tmp_path / "run"
    assert lofi_lora(*train_args(feats, run, "--steps", "4", "--checkpoint-every", "2"))[0] == 0
    step2 = run / "checkpoints" / "step-00000002"
    code, res = lofi_lora(*train_args(feats, run, "--steps", "4", "--ckpt-path", str(step2), "--dry-run"))
    assert code == 0 and res["resume_from"] == str(step2)
    (step2 / train.STATE_FILE).write_bytes(b"torn")
    code, res = lofi_lora(*train_args(feats, run, "--steps", "4", "--ckpt-path", str(step2)))
    assert code == FAILED_INPUT and "torn" in res["error"]


def test_missing_or_wrong_base_model_fails_fast(tmp_path):
    feats = write_features(tmp_path / "f")
    code, res = lofi_lora(*train_args(feats, tmp_path / "run", "--base", str(tmp_path / "nope")))
    assert code == ENVIRONMENT and "does not exist" in res["error"]
    empty = tmp_path / "empty"
    empty.mkdir()
    code, res = lofi_lora(*train_args(feats, tmp_path / "run", "--base", str(empty)))
    assert code == ENVIRONMENT and "ace_step_transformer/config.json" in res["error"]
    wrong = tmp_path / "wrong"
    shutil.copytree(FIXTURE / "torch", wrong / "torch")
    shutil.copy(wrong / "torch" / "vocoder.safetensors", wrong / "torch" / "transformer.safetensors")
    code, res = lofi_lora(*train_args(feats, tmp_path / "run", "--base", str(wrong), "--steps", "1"))
    assert code == ENVIRONMENT and "do not fit" in res["error"]


def test_no_features_is_a_clear_input_error(tmp_path):
    (tmp_path / "f").mkdir()
    code, res = lofi_lora(*train_args(tmp_path / "f", tmp_path / "run"))
    assert code == FAILED_INPUT and "lofi-lora dataset" in res["error"]


def test_sample_audio_every_n_steps(tmp_path):
    import soundfile as sf

    feats = write_features(tmp_path / "f")
    out = tmp_path / "run"
    extra = ("--steps", "2", "--sample-every", "2", "--sample-seconds", "0.2", "--sample-steps", "2")
    code, res = lofi_lora(*train_args(feats, out, *extra))
    assert code == 0, res
    audio, sr = sf.read(str(out / "samples" / "step-00000002.wav"), dtype="float32")
    # 0.2 s → ceil(0.2·44100/4096) = 3 latent frames of 4096 samples each, stereo
    assert sr == 44100 and audio.shape == (3 * 4096, 2)
    assert float(abs(audio).max()) > 0 and bool(np.isfinite(audio).all())


@pytest.mark.skipif(not train.cpu_has_bf16(), reason="this CPU has no native bf16")
def test_bf16_autocast_trains_with_fp32_master_weights(tmp_path):
    samples = features.load_samples(write_features(tmp_path / "f"))
    model = base.load(FIXTURE)["transformer"]
    model.transformer_blocks = model.transformer_blocks[:2]
    trainer = train.Trainer(model, samples, train.TrainConfig(steps=3, rank=4, alpha=4, precision="auto"))
    assert trainer.precision == "bf16"
    rows = [trainer.train_step() for _ in range(3)]
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in rows)
    assert all(p.dtype == torch.float32 for p in trainer.params)
    assert any(
        p.abs().sum() > 0 for n, p in trainer.model.named_parameters() if "lora_B" in n
    )  # B moved off 0
