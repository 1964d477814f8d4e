"""The UNet's CPU rewrite (backends/riffusion/unet_graph.py): every attention of an exported diffusers attention
block becomes one MultiHeadAttention that ONNX Runtime's CPU EP runs, with the same outputs; an attention with a
scale the rewrite does not know is left as it is; the daemon opens the UNet with ORT's full optimisation; and
lofi's own conversion without the current rewrite is refused with the command that redoes it. (The rewritten
fixture against diffusers: tests/test_riffusion_pipeline.py.)"""

from __future__ import annotations

import json
import shutil
from collections import Counter

import numpy as np
import onnxruntime as ort
import pytest
from lofi_daemon.backends.ace_step.sessions import session_factory
from lofi_daemon.backends.riffusion import backend as rb
from lofi_daemon.backends.riffusion import unet_graph
from lofi_daemon.backends.riffusion.pipeline import RiffusionPipeline
from lofi_daemon.config import Settings
from lofi_daemon.errors import ErrorCode, LofiError

from tests.riffusion_helpers import FIXTURE, rel_err


def ops(model) -> Counter:
    return Counter(n.op_type for n in model.graph.node)


def run(model, feed: dict[str, np.ndarray]) -> np.ndarray:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return sess.run(None, feed)[0]


def export_block(tmp_path, module, names: list[str], args: tuple):
    import onnx
    import torch

    path = tmp_path / "block.onnx"
    dynamic = {n: {0: "batch", 1: f"{n}_length"} for n in names}
    with torch.no_grad():
        torch.onnx.export(module, args, str(path), input_names=names, dynamic_axes=dynamic, dynamo=False)
    return onnx.load(str(path))


@pytest.mark.torch
def test_diffusers_self_and_cross_attention_become_multihead_attention(tmp_path):
    torch = pytest.importorskip("torch")
    from diffusers.models.attention import BasicTransformerBlock

    torch.manual_seed(0)
    block = BasicTransformerBlock(dim=32, num_attention_heads=4, attention_head_dim=8, cross_attention_dim=16)
    with torch.no_grad():
        for p in block.parameters():
            p.add_(torch.randn(p.shape) * 0.1)  # norms and biases off their 1/0 defaults
    block.eval()
    x, ctx = torch.randn(2, 24, 32), torch.randn(2, 7, 16)

    class Block(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.block = block

        def forward(self, x, ctx):
            return self.block(x, encoder_hidden_states=ctx)

    model = export_block(tmp_path, Block(), ["x", "ctx"], (x, ctx))
    assert ops(model)["Softmax"] == 2
    # other lengths than traced: the rewrite keeps the graph's dynamic shapes
    feed = {"x": np.random.default_rng(1).standard_normal((3, 40, 32), dtype=np.float32)}
    feed["ctx"] = np.random.default_rng(2).standard_normal((3, 5, 16), dtype=np.float32)
    want = run(model, feed)
    assert unet_graph.fuse_attention(model) == 2
    after = ops(model)
    assert after["MultiHeadAttention"] == 2 and after["Softmax"] == 0 and after["Transpose"] == 0
    mha = [n for n in model.graph.node if n.op_type == "MultiHeadAttention"]
    assert all(n.domain == "com.microsoft" and n.attribute[0].i == 4 for n in mha)
    got = run(model, feed)  # the CPU EP places it (an unknown op or domain would fail here)
    assert got.shape == want.shape and rel_err(got, want) < 1e-5
    with torch.no_grad():
        ref = block(torch.from_numpy(feed["x"]), encoder_hidden_states=torch.from_numpy(feed["ctx"])).numpy()
    assert rel_err(got, ref) < 1e-5


@pytest.mark.torch
def test_an_attention_with_another_scale_is_left_alone(tmp_path):
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F

    class Scaled(torch.nn.Module):
        def forward(self, x):
            q = x.reshape(x.shape[0], -1, 2, 8).transpose(1, 2)
            out = F.scaled_dot_product_attention(q, q, q, scale=0.5)
            return out.transpose(1, 2).reshape(x.shape[0], -1, 16)

    model = export_block(tmp_path, Scaled(), ["x"], (torch.randn(1, 6, 16),))
    feed = {"x": np.random.default_rng(0).standard_normal((1, 6, 16), dtype=np.float32)}
    want = run(model, feed)
    before = ops(model)
    assert unet_graph.fuse_attention(model) == 0
    assert ops(model) == before and rel_err(run(model, feed), want) == 0


def test_the_fixture_unet_is_rewritten_and_runs_fully_optimised():
    import onnx

    model = onnx.load(str(FIXTURE / "unet" / "model.onnx"))
    assert ops(model)["MultiHeadAttention"] == 8 and ops(model)["Softmax"] == 0  # 4 self + 4 cross
    index = json.loads((FIXTURE / "model_index.json").read_text())
    assert index[unet_graph.VERSION_KEY] == unet_graph.UNET_GRAPH_VERSION
    pipe = RiffusionPipeline(FIXTURE, session_factory(threads=1))
    level = {g: s.get_session_options().graph_optimization_level for g, s in pipe.sessions.items()}
    assert level["unet"] == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    assert level["text_encoder"] == level["vae_decoder"] == ort.GraphOptimizationLevel.ORT_ENABLE_BASIC


@pytest.mark.parametrize("version", [None, unet_graph.UNET_GRAPH_VERSION - 1])
def test_an_older_conversion_is_refused_with_the_command_that_redoes_it(tmp_path, version):
    backend = rb.RiffusionBackend(Settings(cache_dir=tmp_path / "cache", threads=1))
    converted = backend.converted_dir()
    shutil.copytree(FIXTURE, converted, ignore=shutil.ignore_patterns("torch"))
    assert backend.model_dir() == converted and backend.is_installed()  # the current one is used as it is
    index = json.loads((converted / "model_index.json").read_text())
    if version is None:
        del index[unet_graph.VERSION_KEY]
    else:
        index[unet_graph.VERSION_KEY] = version
    (converted / "model_index.json").write_text(json.dumps(index))
    with pytest.raises(LofiError) as err:
        backend.model_dir()
    assert err.value.code == ErrorCode.BACKEND_NOT_INSTALLED
    assert "lofi-daemon convert riffusion" in err.value.message and str(converted) in err.value.message
    assert not backend.is_installed() and backend.status()["installed"] is False
