"""nbits.py: the dynamic-int8 decoder's DynamicQuantizeLinear → MatMulInteger → Cast → Mul chains rewritten as
8-bit MatMulNBits on the same weights (done by the static KV conversion), against the chains they replace."""

from __future__ import annotations

import collections

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from lofi_daemon.backends.musicgen import nbits, static_kv
from lofi_daemon.backends.musicgen.pipeline import MusicGenPipeline, SamplingParams
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization import QuantType, quantize_dynamic

from tests.musicgen_fixture import FIXTURE, cpu_settings, fixture_files


def _quantize(src, dst) -> None:
    # exactly how scripts/quantize_musicgen.py (and the hub's `_quantized` files) quantise
    quantize_dynamic(
        src,
        dst,
        weight_type=QuantType.QInt8,
        per_channel=False,
        op_types_to_quantize=["MatMul", "Gemm"],
        extra_options={"EnableSubgraph": True},
    )


def _one_matmul(tmp_path, k: int, n: int, seed: int):
    """A quantised x[2, k] @ W[k, n] model → (path, W as its int8 weights dequantise to)."""
    w = np.random.default_rng(seed).standard_normal((k, n)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, n])],
        [numpy_helper.from_array(w, "w")],
    )
    src, dst = tmp_path / "f.onnx", tmp_path / "q.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), src)
    _quantize(src, dst)
    q = onnx.load(dst)
    inits = {t.name: numpy_helper.to_array(t) for t in q.graph.initializer}
    wq = next(v for v in inits.values() if v.dtype == np.int8 and v.ndim == 2)
    scale = next(v for name, v in inits.items() if name.endswith("_scale"))
    zero = next(v for name, v in inits.items() if name.endswith("_zero_point"))
    return q, (wq.astype(np.float32) - zero.astype(np.float32)) * scale


def _run(model, x):
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})[0]


@pytest.mark.parametrize("k", [64, 96, 2048])  # one block, a padded block, several blocks
def test_same_weights_bit_for_bit(tmp_path, k):
    """accuracy_level 0 dequantises the packed weights and multiplies in float32: the product equals x @ W for
    the int8 weights as the original chain dequantises them, to float32 rounding (k products of |x·w| ≲ 3)."""
    model, w = _one_matmul(tmp_path, k, 48, seed=k)
    assert nbits.convert(model, accuracy_level=0, block=1024) == 1
    ops = [n.op_type for n in model.graph.node]
    assert ops == ["MatMulNBits"]  # the quantize/scale glue is gone
    x = np.random.default_rng(1).standard_normal((2, k)).astype(np.float32)
    got = _run(model, x)
    np.testing.assert_allclose(got, x @ w, rtol=0, atol=k * 3 * 2e-7 * 4)
    assert np.abs(got - x @ w.T[::-1].T).max() > 1e-2  # a transposed or mis-ordered packing would be seen


@pytest.mark.parametrize("k", [1024, 4096])  # musicgen-small's widths: attention/fc1 rows and fc2's rows
def test_int8_activations_error_is_bounded(tmp_path, k):
    """accuracy_level 4 (the default) rounds x to int8 per row block: each x_i moves by ≤ max|x| / 127 / 2, so
    the product moves by ≤ that × Σ|w| per column. By default a row up to 4096 wide is one block."""
    model, w = _one_matmul(tmp_path, k, 32, seed=5)
    nbits.convert(model)
    (node,) = model.graph.node
    assert {a.name: a.i for a in node.attribute}["block_size"] == k
    x = np.random.default_rng(2).standard_normal((2, k)).astype(np.float32)
    bound = (np.abs(x).max(axis=1, keepdims=True) / 254) @ np.abs(w).sum(axis=0, keepdims=True)
    err = np.abs(_run(model, x) - x @ w)
    assert (err <= bound * 1.01 + 1e-4).all()


@pytest.fixture(scope="module")
def int8_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("int8")
    _quantize(FIXTURE / "decoder_model_merged.onnx", d / "decoder_model_merged_quantized.onnx")
    return {**fixture_files(), "decoder_merged": d / "decoder_model_merged_quantized.onnx"}


def test_int8_decoder_converts_and_stays_as_close_to_fp32(int8_files, monkeypatch):
    """The converted int8 decoder has no MatMulInteger left, and its logits are no further from the float32
    decoder's than those of the chains it replaces (teacher-forced, same tokens for all three)."""
    monkeypatch.setattr(nbits, "fast_here", lambda: True)  # whatever this CPU's probe says
    static, _ = static_kv.build(int8_files["decoder_merged"])
    ops = collections.Counter(n.op_type for n in static.graph.node)
    assert ops["MatMulInteger"] == 0 and ops["DynamicQuantizeLinear"] == 0 and ops["MatMulNBits"] > 0
    fp32 = MusicGenPipeline(fixture_files(), cpu_settings(), kv_cache="static")
    new = MusicGenPipeline(int8_files, cpu_settings(), kv_cache="static")
    old = MusicGenPipeline(int8_files, cpu_settings(), kv_cache="concat")
    hidden, mask = fp32.encode_text("rainy night jazz piano")
    ids = np.random.default_rng(3).integers(0, fp32.config.codebook_size, (4, 40))
    err: dict[str, list[float]] = {"new": [], "old": []}
    for p in (fp32, new, old):
        p.decoder.reset()
    for pos in range(40):
        col = np.ascontiguousarray(np.concatenate([ids[:, pos : pos + 1]] * 2))
        ref = fp32.decoder(col, hidden, mask)
        err["new"].append(float(np.abs(new.decoder(col, hidden, mask) - ref).max()))
        err["old"].append(float(np.abs(old.decoder(col, hidden, mask) - ref).max()))
    assert max(err["new"]) > 0  # it is quantised
    assert np.mean(err["new"]) <= 1.25 * np.mean(err["old"])


def test_int8_decoder_generates(int8_files):
    pipe = MusicGenPipeline(int8_files, cpu_settings(), kv_cache="static")
    res = pipe.generate("lofi", 0.3, 2, SamplingParams(top_k=1))
    assert res.frames.shape == (pipe.frames_for(0.3), 4) and np.isfinite(res.audio).all()


def test_a_cpu_without_int8_kernels_keeps_the_chains(int8_files, monkeypatch):
    """Where MatMulNBits would fall back to dequantising every call, the conversion keeps the chains, and the
    converted files get another cache key (so one cache never mixes the two graphs)."""
    key = static_kv.fingerprint([int8_files["decoder_merged"]])
    monkeypatch.setattr(nbits, "fast_here", lambda: False)
    static, _ = static_kv.build(int8_files["decoder_merged"])
    ops = collections.Counter(n.op_type for n in static.graph.node)
    assert ops["MatMulNBits"] == 0 and ops["MatMulInteger"] > 0
    assert static_kv.fingerprint([int8_files["decoder_merged"]]) != key


def test_the_cpu_probe_runs_both_graphs():
    """The probe builds and runs the chain and its rewrite (its verdict is a timing, never asserted here)."""
    assert isinstance(nbits.fast_here(), bool)
