"""`lofi-lora evaluate` / `compare`: the Fréchet distance against its eigenvalue form, FAD of a set against itself
and with growing noise, CLAP with a tiny random model, and whole evaluations on the tiny fixture."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from scripts.lofi_lora import fad
from tests.ace_step_helpers import FIXTURE
from tests.lofi_lora_helpers import EMBEDDER, lofi_lora, random_adapter, tiny_clap, tone_set, write_wavs


def eigen_form(mu1, s1, mu2, s2) -> float:
    """The same distance without a matrix square root: tr((Σ1Σ2)^½) is the sum of the square roots of the
    eigenvalues of Σ1Σ2 (real and ≥ 0: it is similar to Σ1^½ Σ2 Σ1^½)."""
    ev = np.linalg.eigvals(s1 @ s2)
    return float(
        np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.sum(np.sqrt(np.abs(ev.real)))
    )


def test_frechet_distance_equals_the_eigenvalue_form():
    rng = np.random.default_rng(0)
    for dim in (1, 3, 12):
        a = rng.standard_normal((200, dim)) @ rng.standard_normal((dim, dim))
        b = rng.standard_normal((150, dim)) * 0.5 + 1.0
        got = fad.fad(a, b)
        want = eigen_form(*fad.statistics(a), *fad.statistics(b))
        assert got == pytest.approx(want, rel=1e-9, abs=1e-9)
    mu = np.array([1.0, -2.0])
    assert fad.frechet_distance(mu, np.eye(2), np.zeros(2), np.eye(2)) == pytest.approx(5.0)  # ‖μ‖² only


def test_fad_of_a_set_with_itself_is_zero_and_grows_with_noise():
    emb = fad.load_embedder(EMBEDDER)
    clean = fad.embed_waves(emb, tone_set(6))
    scale = np.trace(fad.statistics(clean)[1])
    assert fad.fad(clean, clean) < 1e-9 * scale
    dists = [fad.fad(clean, fad.embed_waves(emb, tone_set(6, noise=a, seed=1))) for a in (0.003, 0.03, 0.3)]
    assert 0 < dists[0] < dists[1] < dists[2]


def test_embedder_must_follow_the_plugin_contract(tmp_path):
    from scripts.lofi_lora.errors import USAGE, LoraError

    bad = tmp_path / "bad.py"
    bad.write_text("def embed(w):\n    return w\n")
    with pytest.raises(LoraError) as e:
        fad.load_embedder(bad)
    assert e.value.code == USAGE and "SAMPLE_RATE" in e.value.message


torch = pytest.importorskip("torch")


@pytest.mark.torch
def test_clap_scores_prompts_against_audio_reproducibly(tmp_path):
    from scripts.lofi_lora.clap import Clap

    clap = Clap(tiny_clap(tmp_path / "clap"))
    clips = tone_set(2, seconds=1.6)  # longer than max_length_s=1: rand_trunc crops one mel channel
    prompts = ["lofi piano", "jazz guitar"]
    s = clap.scores(prompts, clips)
    assert s.shape == (2,) and np.all(np.abs(s) <= 1 + 1e-9)
    assert np.array_equal(s, clap.scores(prompts, clips))
    assert not np.allclose(clap.text_embeds(prompts)[0], clap.text_embeds(prompts)[1])


@pytest.fixture(scope="module")
def judged(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("eval")
    torch.set_num_threads(1)
    return tmp, write_wavs(tmp / "validation", tone_set(4, seconds=0.4)), tiny_clap(tmp / "clap")


@pytest.mark.torch
def test_evaluate_reports_integrity_fad_clap_and_style_coverage(judged):
    tmp, reference, clap = judged
    adapter = random_adapter(tmp / "a", seed=1)
    code, res = lofi_lora(
        "evaluate",
        str(adapter),
        "--base",
        str(FIXTURE),
        "--reference",
        str(reference),
        "--embedder",
        str(EMBEDDER),
        "--clap-model",
        str(clap),
        "--seconds",
        "0.2",
        "--steps",
        "2",
        "--out",
        str(tmp / "clips"),
    )
    assert code == 0, res
    assert res["integrity"] == {"ok": True, "problems": []}
    assert res["fad"] > 0 and res["embedder"] == "random_embedder"
    cats = ["core", "instrumental", "seasonal", "thematic", "vocal"]
    assert res["style_coverage"]["categories"] == cats and sorted(res["clap_by_category"]) == cats
    assert -1 <= res["clap"] <= 1
    assert len(list((tmp / "clips" / "pytorch_lora_weights.safetensors").glob("*.wav"))) == 5


@pytest.mark.torch
def test_compare_names_the_best_checkpoint_and_skips_a_torn_one(judged):
    from scripts.lofi_lora import checkpoints

    tmp, reference, clap = judged
    root = tmp / "run" / "checkpoints"
    for step, seed in ((1, 2), (2, 3), (3, 4)):
        checkpoints.save(root, step, lambda d, s=seed: shutil.copy(random_adapter(tmp / f"r{s}", s), d))
    torn = root / "step-00000003" / "pytorch_lora_weights.safetensors"
    torn.write_bytes(torn.read_bytes()[:-3])
    prompts = tmp / "prompts.json"
    prompts.write_text(json.dumps([{"category": "core", "prompt": "lofi piano"}] * 2))
    code, res = lofi_lora(
        "compare",
        *(str(root / f"step-0000000{i}") for i in (1, 2, 3)),
        "--base",
        str(FIXTURE),
        "--reference",
        str(reference),
        "--embedder",
        str(EMBEDDER),
        "--prompts",
        str(prompts),
        "--seconds",
        "0.2",
        "--steps",
        "2",
    )
    assert code == 0, res
    entries = {e["adapter"]: e for e in res["checkpoints"]}
    assert not entries[str(root / "step-00000003")]["integrity"]["ok"]
    judged_ok = [e for e in res["checkpoints"] if e["integrity"]["ok"]]
    assert len(judged_ok) == 2 and judged_ok[0]["fad"] != judged_ok[1]["fad"]
    assert res["best"] == min(judged_ok, key=lambda e: e["fad"])["adapter"]


@pytest.mark.torch
def test_each_adapter_is_judged_on_the_base_alone(judged):
    """The generator loads each adapter into its one base model and removes it after: the base renders the same
    before and after, and an adapter renders differently from the base."""
    from scripts.lofi_lora.evaluate import Generator

    tmp, _, _ = judged
    gen = Generator(FIXTURE, seconds=0.1, steps=2, seed=0)
    prompts = [{"category": "core", "prompt": "lofi piano"}]
    before = gen.clips(None, 1.0, prompts)[0]
    styled = gen.clips(random_adapter(tmp / "g", seed=9, scale=0.1), 1.0, prompts)[0]
    after = gen.clips(None, 1.0, prompts)[0]
    assert np.array_equal(before, after) and not np.allclose(before, styled)
