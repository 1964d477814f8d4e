"""The in-place KV decoder (static_kv.py) against the export's own Concat cache, on the tiny fixture.

Code-for-code equality with transformers for both paths is in test_musicgen_reference.py (torch-marked); here,
without torch: the same logits step by step, the cache written in place at the right positions, the conversion
cached, and graphs it does not know refused.
"""

from __future__ import annotations

import collections

import numpy as np
import onnx
import pytest
from lofi_daemon.backends.musicgen import static_kv
from lofi_daemon.backends.musicgen.pipeline import MusicGenPipeline, _StaticDecoder
from lofi_daemon.errors import ErrorCode, LofiError

from tests.musicgen_fixture import FIXTURE, cpu_settings, fixture_files


@pytest.fixture(scope="module")
def pipes():
    return (
        MusicGenPipeline(fixture_files(), cpu_settings(), kv_cache="static"),
        MusicGenPipeline(fixture_files(), cpu_settings(), kv_cache="concat"),
    )


def test_same_logits_and_cache_step_by_step(pipes):
    static, concat = pipes
    assert isinstance(static.decoder, _StaticDecoder) and static.kv_cache == "static"
    hidden, mask = static.encode_text("rainy night jazz piano")
    rng = np.random.default_rng(0)
    K, V = 4, static.config.codebook_size
    ids = rng.integers(0, V, (K, 30))
    static.decoder.reset()
    concat.decoder.reset()
    # a prefill of 6 positions, then single steps: both paths see exactly the same inputs
    calls = [ids[:, :6]] + [ids[:, p : p + 1] for p in range(6, 30)]
    for cols in calls:
        batch = np.ascontiguousarray(np.concatenate([cols, cols]))
        a = static.decoder(batch, hidden, mask)
        b = concat.decoder(batch, hidden, mask)
        # float32 attention summed in another order over ≤ 30 positions of 64-wide heads: a few ulps of the
        # logits' scale (~1), far below the gap a wrong position or a stale cache entry makes (checked below)
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)
    assert static.decoder.length == 30
    for name in static.decoder.self_names:
        buf = static.decoder.buffers[name]
        ref = concat.decoder.past[name]  # [2, H, 30, D]
        np.testing.assert_allclose(buf[:, :, :30], ref, rtol=0, atol=1e-5)
        assert not buf[:, :, 30:].any()  # nothing written beyond the positions fed


def test_a_wrong_position_would_be_seen(pipes):
    """Sensitivity: feeding the cache length off by one changes the logits far beyond the tolerance above."""
    static, _ = pipes
    hidden, mask = static.encode_text("lofi")
    cols = np.random.default_rng(1).integers(0, static.config.codebook_size, (4, 8))
    batch = np.ascontiguousarray(np.concatenate([cols, cols]))
    static.decoder.reset()
    static.decoder(batch[:, :7], hidden, mask)
    right = static.decoder(batch[:, 7:8], hidden, mask)
    static.decoder.reset()
    static.decoder(batch[:, :7], hidden, mask)
    static.decoder.length = 6  # as if the position embedding and causal window were one step behind
    wrong = static.decoder(batch[:, 7:8], hidden, mask)
    assert np.abs(right - wrong).max() > 1e-3


def test_capacity_is_enforced(pipes):
    static, _ = pipes
    hidden, mask = static.encode_text("lofi")
    static.decoder.reset()
    cols = np.zeros((8, static.decoder.capacity + 1), dtype=np.int64)
    with pytest.raises(LofiError, match="capacity"):
        static.decoder(cols, hidden, mask)


def test_conversion_is_done_once_and_reused(tmp_path):
    files = {"decoder_merged": FIXTURE / "decoder_model_merged.onnx"}
    static, cross = static_kv.converted(files, tmp_path)
    stamp = static.stat().st_mtime_ns
    again, _ = static_kv.converted(files, tmp_path)
    assert again == static and again.stat().st_mtime_ns == stamp
    assert [p.name for p in tmp_path.iterdir()] == [static.parent.name]  # no temp folder left behind


def test_conversion_runs_in_a_child_process(tmp_path, monkeypatch):
    """The daemon never builds the graphs itself (the build's peak memory stays in a child that exits): with the
    in-process build broken, converted() still produces graphs that load."""

    def in_process(*a, **k):
        raise AssertionError("built in the daemon process")

    monkeypatch.setattr(static_kv, "build", in_process)
    static, cross = static_kv.converted({"decoder_merged": FIXTURE / "decoder_model_merged.onnx"}, tmp_path)
    assert onnx.load(str(static)).graph.node and onnx.load(str(cross)).graph.node
    names = {p.name for p in static.parent.iterdir()}
    assert names - {static.name + ".data", cross.name + ".data"} == {static.name, cross.name, "source.json"}


def test_a_failing_conversion_is_a_clear_error_and_leaves_no_entry(tmp_path):
    broken = tmp_path / "decoder_model_merged.onnx"
    broken.write_bytes(b"not an onnx file")
    cache = tmp_path / "cache"
    with pytest.raises(
        LofiError, match=r"converting the musicgen decoder decoder_model_merged.onnx failed"
    ) as info:
        static_kv.converted({"decoder_merged": broken}, cache)
    assert info.value.code == ErrorCode.MODEL_LOAD_FAILED
    assert "Error" in info.value.data["details"]  # the child's traceback tail says what failed
    assert list(cache.iterdir()) == []  # neither an entry nor a temporary folder


def test_an_unsupported_graph_in_the_child_is_still_unsupported(tmp_path):
    """The child's Unsupported keeps its meaning (the pipeline falls back to the export) and its reason."""
    with pytest.raises(static_kv.Unsupported, match="present"):
        static_kv.converted({"decoder_merged": FIXTURE / "text_encoder.onnx"}, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_graphs_it_does_not_know_are_refused(tmp_path):
    with pytest.raises(static_kv.Unsupported):
        static_kv.build(FIXTURE / "text_encoder.onnx")


def test_unconvertible_decoder_falls_back_to_the_export(monkeypatch):
    def refuse(*a, **k):
        raise static_kv.Unsupported("not this one")

    monkeypatch.setattr(static_kv, "converted", refuse)
    pipe = MusicGenPipeline(fixture_files(), cpu_settings())
    assert pipe.kv_cache == "concat"
    assert pipe.generate("lofi", 0.2, 1).audio.shape == (6400,)


def test_cross_graph_is_the_encoder_projections_only(pipes):
    """The cross-KV graph reads the encoder states only: no decoder token, no decoder layer (before the fix,
    layer n's encoder K/V pulled in decoder layers 0..n-1 through the batch size of a reshape)."""
    static, _ = pipes
    cross = static.decoder.cross
    assert "input_ids" not in {i.name for i in cross.get_inputs()}
    _, graph = static_kv.build(FIXTURE / "decoder_model_merged.onnx")
    layers = sum(1 for o in graph.graph.output if o.name.endswith(".encoder.key"))
    ops = [n.op_type for n in graph.graph.node]
    # the text states' projection to the decoder width (enc_to_dec_proj), then one K and one V per layer
    assert ops.count("MatMul") == 1 + 2 * layers
    assert "LayerNormalization" not in ops and "Softmax" not in ops
    # exactly the weights those nodes read
    assert {t.name for t in graph.graph.initializer} <= {i for n in graph.graph.node for i in n.input}


def test_the_cross_graph_never_copies_every_weight():
    """The no-cache branch as a graph of its own takes the small constants only; the weights its pruned graph
    reads come after (a copy of them all was the conversion's transient peak: 3.1 → 1.1 GB on musicgen-small)."""
    source = onnx.load(str(FIXTURE / "decoder_model_merged.onnx"))
    big = [t.name for t in source.graph.initializer if static_kv._elements(t) > static_kv.SMALL_CONSTANT]
    assert len(big) > 20  # the fixture's weights are large enough to tell
    copy = static_kv._standalone(source, "else_branch")
    assert not {t.name for t in copy.graph.initializer} & set(big)
    _, cross = static_kv.build(FIXTURE / "decoder_model_merged.onnx")
    assert 0 < len({t.name for t in cross.graph.initializer} & set(big)) < len(big)


def test_prefill_returns_the_last_position_only(pipes):
    """Logits come for the last position only, and they are the same as a step-by-step run's."""
    static, _ = pipes
    hidden, mask = static.encode_text("lofi")
    cols = np.random.default_rng(2).integers(0, static.config.codebook_size, (4, 9))
    batch = np.ascontiguousarray(np.concatenate([cols, cols]))
    static.decoder.reset()
    prefill = static.decoder(batch, hidden, mask)
    # the logits are written into a [rows, 1, vocab] array bound as the output: ORT refuses to write a longer
    # result into it, so a prefill that computed every position would have failed here
    assert static.decoder.logits.shape == (8, 1, static.config.codebook_size)
    static.decoder.reset()
    for p in range(9):
        stepwise = static.decoder(batch[:, p : p + 1], hidden, mask)
    np.testing.assert_allclose(prefill, stepwise, rtol=0, atol=1e-5)


def test_fewer_bigger_nodes_per_step():
    """Each layer's cross-attention is one MultiHeadAttention reading the cross K/V inputs as they are, each GELU
    one Gelu, and each self-attention's Q/K/V one packed product feeding GQA (whose key/value inputs are then
    absent); nothing of the export's attention glue is left (the logits stay equal: the tests above)."""
    static, _ = static_kv.build(FIXTURE / "decoder_model_merged.onnx")
    g = static.graph
    layers = sum(1 for i in g.input if i.name.endswith(".decoder.key"))
    ops = collections.Counter(n.op_type for n in g.node)
    assert ops["MultiHeadAttention"] == ops["GroupQueryAttention"] == ops["Gelu"] == layers
    assert ops["Softmax"] == ops["Erf"] == ops["Transpose"] == 0
    width = next(i for i in g.input if i.name == "past_key_values.0.decoder.key").type.tensor_type.shape.dim
    hidden = width[1].dim_value * width[3].dim_value
    consts = {t.name: t for t in g.initializer}
    producer = {o: n for n in g.node for o in n.output}
    for n in g.node:
        if n.op_type == "GroupQueryAttention":
            assert list(n.input[1:3]) == ["", ""]
            proj = producer[n.input[0]]
            assert proj.op_type == "MatMul" and list(consts[proj.input[1]].dims) == [hidden, 3 * hidden]
        if n.op_type == "MultiHeadAttention":
            assert n.input[1].startswith("past_key_values.") and n.input[1].endswith(".encoder.key")
            assert n.input[5]  # the text's padding mask (the CFG batch's second half is all padding)
    assert len({n.input[5] for n in g.node if n.op_type == "MultiHeadAttention"}) == 1  # one mask for all
    # what runs per layer: 3 LayerNorms, 3 residual Adds, 6 products, GQA, MHA, Gelu (45 before this rewrite)
    per_layer = [n.op_type for n in g.node if "layers.1/" in n.name and n.op_type != "Constant"]
    assert len(per_layer) == 15, per_layer


def test_a_cross_attention_it_does_not_know_stays_as_exported(monkeypatch):
    """The fusions are a speed-up, not a requirement: a cross-attention the rewrite does not recognise is left as
    exported, and the decoder still converts (in-place cache, packed QKV, Gelu) with the same logits."""

    def refuse(*a, **k):
        raise static_kv.Unsupported("not this one")

    monkeypatch.setattr(static_kv, "_rewrite_cross_attention", refuse)
    static, _ = static_kv.build(FIXTURE / "decoder_model_merged.onnx")
    ops = collections.Counter(n.op_type for n in static.graph.node)
    assert ops["MultiHeadAttention"] == 0 and ops["Softmax"] == ops["GroupQueryAttention"] == ops["Gelu"] > 0
    monkeypatch.setattr(static_kv, "fingerprint", lambda paths: "unfused-cross")
    # converted() builds in a child process, which the patch does not reach: build the cache entry here
    entry = cpu_settings().cache_dir / "converted" / "musicgen" / "unfused-cross"
    entry.mkdir(parents=True, exist_ok=True)
    static_kv.write_converted(entry, FIXTURE / "decoder_model_merged.onnx")
    pipe = MusicGenPipeline(fixture_files(), cpu_settings(), kv_cache="static")
    ref = MusicGenPipeline(fixture_files(), cpu_settings(), kv_cache="concat")
    hidden, mask = pipe.encode_text("lofi")
    cols = np.random.default_rng(4).integers(0, pipe.config.codebook_size, (4, 5))
    batch = np.ascontiguousarray(np.concatenate([cols, cols]))
    pipe.decoder.reset()
    ref.decoder.reset()
    np.testing.assert_allclose(pipe.decoder(batch, hidden, mask), ref.decoder(batch, hidden, mask), atol=1e-5)
