"""The int8 Riffusion UNet (scripts/quantize_riffusion.py: static int8 resnet convolutions and matrix products
calibrated along the sampling loop): selected with models.riffusion.variant = "int8", part of the model version (so of every track id),
refused clearly when not made yet, int8 exactly where it should be, and its drift over a whole sampling loop against
the fp32 UNet on the same weights measured (docs/benchmarks.md states it)."""

from __future__ import annotations

import shutil
from collections import Counter

import numpy as np
import pytest
from lofi_daemon import cli
from lofi_daemon.backends.ace_step.sessions import session_factory
from lofi_daemon.backends.riffusion import backend as rb
from lofi_daemon.backends.riffusion.pipeline import RiffusionPipeline, Sampling
from lofi_daemon.config import ModelSettings, Settings
from lofi_daemon.errors import ErrorCode, LofiError

from scripts.quantize_riffusion import INT8, int8_nodes
from tests.riffusion_helpers import FIXTURE, rel_err


@pytest.fixture(scope="module")
def with_int8(tmp_path_factory):
    d = tmp_path_factory.mktemp("riff") / "onnx"
    shutil.copytree(FIXTURE, d, ignore=shutil.ignore_patterns("torch"))
    # the way users make it: the quantizer as a child process, its file renamed into the existing conversion
    with pytest.MonkeyPatch.context() as env:
        env.setenv("LOFI_CACHE_DIR", str(d.parent / "cache"))
        env.setenv("LOFI_LOG_DIR", str(d.parent / "log"))
        assert cli.main(["convert", "riffusion", "--int8", "--out", str(d)]) == 0
    assert sorted(f.name for f in (d / "unet").iterdir()) == ["config.json", "model.onnx", INT8]
    return d


def backend(folder, variant=None, tmp=None):
    s = Settings(cache_dir=tmp / "cache", threads=1)
    s.models["riffusion"] = ModelSettings(dir=folder, variant=variant)
    return rb.RiffusionBackend(s)


def test_int8_is_selected_by_variant_and_enters_the_model_version(with_int8, tmp_path):
    fp32, int8 = backend(with_int8, None, tmp_path), backend(with_int8, "int8", tmp_path)
    assert (with_int8 / "unet" / INT8).is_file()
    assert fp32.status()["unet"] == "fp32" and int8.status()["unet"] == "int8"
    assert "-int8-" in int8.model_version() and int8.model_version() != fp32.model_version()
    assert (
        int8.is_installed() and backend(with_int8, "fp32", tmp_path).model_version() == fp32.model_version()
    )
    without = backend(FIXTURE, "int8", tmp_path)
    with pytest.raises(LofiError) as err:
        without.model_dir()
    assert (
        err.value.code == ErrorCode.MODEL_NOT_FOUND
        and f"`lofi-daemon convert riffusion --int8 --out {FIXTURE}`" in err.value.message
    )
    assert not without.is_installed()


def test_int8_quantises_the_resnet_convolutions_and_matrix_products_only(with_int8):
    import onnx

    graph = onnx.load(str(with_int8 / "unet" / INT8)).graph
    producer = {o: n for n in graph.node for o in n.output}
    int8_tables = {t.name for t in graph.initializer if t.data_type == onnx.TensorProto.INT8}

    def int8_weight(n) -> bool:  # an input dequantised from an int8 initializer
        return any(
            (d := producer.get(i)) is not None and d.input[:1] and d.input[0] in int8_tables for i in n.input
        )

    quantised = sorted(n.name for n in graph.node if n.op_type != "DequantizeLinear" and int8_weight(n))
    chosen = int8_nodes(FIXTURE / "unet" / "model.onnx")
    assert quantised == sorted(chosen)
    kinds = Counter(n.op_type for n in graph.node if n.name in chosen)
    assert kinds == {"Conv": 16, "MatMul": 40}  # 16 resnet convolutions of 33; no attention, no Gemm
    weights = [t for t in graph.initializer if t.data_type == onnx.TensorProto.INT8 and len(t.dims) in (2, 4)]
    assert len(weights) == 56  # an int8 table per node (per output channel scales beside it)


def test_int8_drift_over_a_whole_sampling_loop(with_int8):
    fp32 = RiffusionPipeline(with_int8, session_factory(threads=1))
    int8 = RiffusionPipeline(with_int8, session_factory(threads=1), "int8")
    ctx = fp32.embeddings("lofi piano", "", 7.0)
    noise = np.random.default_rng(0).standard_normal(fp32.latent_shape(*fp32.image_size), dtype=np.float32)
    p = Sampling(steps=30)
    want, got = fp32.sample(ctx, noise, p), int8.sample(ctx, noise, p)
    drift = rel_err(got, want)
    # a different graph (int8 weights), yet the same picture: 30 DPM-Solver++ steps with CFG 7 end within 5 %
    assert 1e-5 < drift < 0.05, drift
    print(f"int8 drift after 30 steps: {drift:.2e}")
