"""Rewrite the hub's MusicGen decoder so its self-attention KV cache is updated in place.

The optimum export (what the hub repos ship) `Concat`s past and new keys/values in every layer at every step, so
each step reads and rewrites the whole cache (384 KB per position for musicgen-small) and ONNX Runtime allocates
fresh outputs: the step time grows with the position. This module turns the decoder into two graphs:

* `decoder_static_kv.onnx` — the decoder's cache path with every self-attention replaced by one
  `com.microsoft.GroupQueryAttention` node (kv heads = heads). Its `past_key_values.*.decoder.*` inputs are
  preallocated max-length buffers; bound as both input and output (IOBinding), GQA writes the new positions into
  them in place and attends over the first `seqlens_k + 1` only. It also serves the prefill of a window (GQA applies
  the causal mask), so the original decoder is not needed at run time.
  Logits are computed for the last position only (a prefill of a long prompt needs no others).
* `decoder_cross_kv.onnx` — the cross-attention keys/values from the text encoder's states, computed once per
  window (the part of the no-cache path that produces `present.*.encoder.*`: the K/V projections of the
  encoder states, nothing of the decoder stack).

A dynamically quantised int8 decoder (the hub's `_quantized` files) also gets its matrix products rewritten as
8-bit `MatMulNBits` on the same weights (nbits.py): a third fewer CPU cycles per step than the
DynamicQuantizeLinear → MatMulInteger → Cast → Mul chains.

The rewrite is structural (it follows tensors from the `present.*.decoder.*` outputs, not node names) and refuses
a graph it does not recognise, so the caller can fall back to the exported decoder. Quantised decoders (dynamic
int8, MatMulNBits) convert the same way: quantisation only touches the projections, never the attention itself.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from ...errors import ErrorCode, LofiError
from ...runtime.graph_index import GraphIndex, prune

log = logging.getLogger(__name__)

# Bump when the rewrite changes: it is part of the cache key of converted files and of the model version.
CONVERT_VERSION = 6  # 4: MHA, Gelu, packed QKV; 5: a SkipLayerNorm trial, not kept; 6: block 4096
STATIC_FILE, CROSS_FILE = "decoder_static_kv.onnx", "decoder_cross_kv.onnx"
PAST_LEN, SEQLENS, TOTAL_LEN = "past_sequence_length", "seqlens_k", "total_sequence_length"


class Unsupported(Exception):
    """The decoder graph does not have the structure this rewrite knows."""


# ---- graph helpers --------------------------------------------------------------------------------------------
class _Graph(GraphIndex):
    error = Unsupported

    def source(self, name: str) -> str:
        """Follow single-input Concat / Identity nodes (the export wraps some past inputs in them)."""
        while name in self.producer:
            n = self.producer[name]
            if n.op_type in ("Identity", "Concat") and len(n.input) == 1:
                name = n.input[0]
            else:
                break
        return name


def _strip_scale(gr: _Graph, name: str) -> tuple[str, float]:
    """Walk back through Mul-by-constant nodes: → (the unscaled tensor, the product of the constants)."""
    scale = 1.0
    while (n := gr.producer.get(name)) is not None and n.op_type == "Mul":
        a, b = n.input
        try:
            c = gr.constant(b)
            name = a
        except Unsupported:
            c = gr.constant(a)
            name = b
        if c.size != 1:
            raise Unsupported("attention scale is not a scalar")
        scale *= float(c.reshape(()))
    return name, scale


def _heads_input(gr: _Graph, name: str) -> str:
    """[B, H, L, D] tensor made by Transpose(Reshape(x)) → x, the projection output [B, L, H*D]."""
    t = gr.only(name, "Transpose")
    perm = next((list(a.ints) for a in t.attribute if a.name == "perm"), None)
    if perm != [0, 2, 1, 3]:
        raise Unsupported(f"unexpected head transpose {perm}")
    return gr.only(t.input[0], "Reshape").input[0]


def _attention(gr: _Graph, key: str, value: str) -> dict:
    """The export's attention over the head-split `key` / `value` tensors [B, H, T, D]:
    Softmax(scale_q · Q · scale_k · Kᵀ (+ mask)) · V, then Transpose + Reshape back to [B, S, H·D].
    → {"query": the projection output [B, S, H·D], "scale", "mask": the additive mask or None,
    "out": the Reshape's output}."""
    pv = [n for n in gr.g.node if n.op_type == "MatMul" and gr.source(n.input[1]) == value]
    if len(pv) != 1:
        raise Unsupported(f"{value} is not used by exactly one MatMul")
    softmax = gr.only(pv[0].input[0], "Softmax")
    mask = None
    scores = gr.producer.get(softmax.input[0])
    if (
        scores is not None and scores.op_type == "Add"
    ):  # an additive mask (cross-attention: the text's padding)
        mask = scores.input[1]
        scores = gr.producer.get(scores.input[0])
    if scores is None or scores.op_type != "MatMul":
        raise Unsupported("attention scores are not one MatMul (+ a mask)")
    q_heads, q_scale = _strip_scale(gr, scores.input[0])
    kt, k_scale = _strip_scale(gr, scores.input[1])
    kt_node = gr.only(kt, "Transpose")
    if gr.source(kt_node.input[0]) != key:
        raise Unsupported(f"scores do not read {key}")
    ctx_t = gr.consumers.get(pv[0].output[0], [])
    if len(ctx_t) != 1 or ctx_t[0].op_type != "Transpose":
        raise Unsupported("attention output is not transposed back")
    ctx_r = gr.consumers.get(ctx_t[0].output[0], [])
    if len(ctx_r) != 1 or ctx_r[0].op_type != "Reshape":
        raise Unsupported("attention output is not reshaped back")
    return {
        "query": _heads_input(gr, q_heads),
        "scale": q_scale * k_scale,
        "mask": mask,
        "out": ctx_r[0].output[0],
    }


def _rewrite_self_attention(gr: _Graph, layer: int, num_heads: int):
    """→ (the GQA node for decoder layer `layer`, the first output of each node it replaces: the two cache Concats
    and the Reshape that ends the attention; the rest of the old attention is left for `prune`)."""
    from onnx import helper

    key_out, value_out = f"present.{layer}.decoder.key", f"present.{layer}.decoder.value"
    kcat, vcat = gr.only(key_out, "Concat"), gr.only(value_out, "Concat")
    if len(kcat.input) != 2 or len(vcat.input) != 2:
        raise Unsupported("present KV is not Concat(past, new)")
    past_key, past_value = gr.source(kcat.input[0]), gr.source(vcat.input[0])
    if past_key not in gr.inputs or past_value not in gr.inputs:
        raise Unsupported("present KV does not extend a past input")
    key = _heads_input(gr, kcat.input[1])
    value = _heads_input(gr, vcat.input[1])
    att = _attention(gr, key_out, value_out)
    if att["mask"] is not None:
        raise Unsupported("self-attention has a mask GQA cannot take")  # GQA applies the causal mask itself
    gqa = helper.make_node(
        "GroupQueryAttention",
        [att["query"], key, value, past_key, past_value, SEQLENS, TOTAL_LEN],
        [att["out"], key_out, value_out],
        name=f"lofi/static_kv/layers.{layer}/GroupQueryAttention",
        domain="com.microsoft",
        num_heads=num_heads,
        kv_num_heads=num_heads,
        scale=att["scale"],
    )
    return gqa, (kcat.output[0], vcat.output[0], att["out"])


def _rewrite_cross_attention(gr: _Graph, layer: int, num_heads: int):
    """→ (one `com.microsoft.MultiHeadAttention` node for layer `layer`'s attention over the text, the output it
    replaces). It reads the cross K/V inputs [B, H, T, D] as they are (no per-step transpose of K) and takes the
    text's padding mask as its additive bias, as the export adds it; about 25 small nodes per layer become one."""
    from onnx import helper

    key, value = f"past_key_values.{layer}.encoder.key", f"past_key_values.{layer}.encoder.value"
    if key not in gr.inputs or value not in gr.inputs:
        raise Unsupported(f"no {key} input")
    att = _attention(gr, key, value)
    mha = helper.make_node(
        "MultiHeadAttention",
        [att["query"], key, value, "", "", att["mask"] or ""],
        [att["out"]],
        name=f"lofi/static_kv/layers.{layer}/CrossAttention",
        domain="com.microsoft",
        num_heads=num_heads,
        scale=att["scale"],
    )
    return mha, att["out"]


def _fuse_gelu(graph) -> int:
    """x · 0.5 · (1 + erf(x / √2)) as the export spells it (Div → Erf → Add → Mul → Mul) → one
    `com.microsoft.Gelu` node, the same exact-erf GELU; → how many."""
    from onnx import helper

    gr = _Graph(graph)

    def const(name: str, value: float) -> bool:
        try:
            c = gr.constant(name)
        except Unsupported:
            return False
        return c.size == 1 and abs(float(c.reshape(())) - value) <= 1e-6 * abs(value)

    replace: dict[str, object] = {}
    for erf in graph.node:
        if erf.op_type != "Erf":
            continue
        div, add = gr.producer.get(erf.input[0]), gr.consumers.get(erf.output[0], [])
        if div is None or div.op_type != "Div" or not const(div.input[1], 2**0.5):
            continue
        if len(add) != 1 or add[0].op_type != "Add" or not const(add[0].input[1], 1.0):
            continue
        x = div.input[0]
        mul = gr.consumers.get(add[0].output[0], [])
        if len(mul) != 1 or mul[0].op_type != "Mul" or set(mul[0].input) != {x, add[0].output[0]}:
            continue
        half = gr.consumers.get(mul[0].output[0], [])
        if len(half) != 1 or half[0].op_type != "Mul" or not const(half[0].input[1], 0.5):
            continue
        out = half[0].output[0]
        replace[out] = helper.make_node("Gelu", [x], [out], name=erf.name + "/gelu", domain="com.microsoft")
    _replace_outputs(graph, replace)
    return len(replace)


def _replace_outputs(graph, replace: dict) -> None:
    """Put each new node where the node producing the same output was; what only fed the old nodes is left for
    `prune`."""
    nodes = [replace.get(n.output[0], n) if n.output else n for n in graph.node]
    del graph.node[:]
    graph.node.extend(nodes)


def _pack_qkv(model) -> int:
    """Each GQA's query, key and value projections of the same input become one product with the three weights
    side by side (GQA takes packed QKV when key and value are absent): one call streaming 3 × N columns instead
    of three, which also splits better across threads. Done for float32 MatMul and for MatMulNBits with equal
    attributes; anything else is left as it is. → how many."""
    from onnx import helper, numpy_helper

    g = model.graph
    gr = _Graph(g)
    packed = 0
    for gqa in [n for n in g.node if n.op_type == "GroupQueryAttention"]:
        projs = [p for p in (gr.producer.get(i) for i in gqa.input[:3]) if p is not None]
        if len(projs) != 3 or len({p.op_type for p in projs}) != 1:
            continue
        if len({p.input[0] for p in projs}) != 1 or any(
            len(gr.consumers.get(p.output[0], [])) != 1 for p in projs
        ):
            continue
        op = projs[0].op_type
        base = projs[0].name + "/qkv"
        if op == "MatMul":
            try:
                ws = [gr.constant(p.input[1]) for p in projs]
            except Unsupported:
                continue
            if any(w.ndim != 2 for w in ws):
                continue
            g.initializer.append(numpy_helper.from_array(np.concatenate(ws, axis=1), base + "/W"))
            node = helper.make_node("MatMul", [projs[0].input[0], base + "/W"], [base], name=base)
        elif op == "MatMulNBits":
            attrs = [{a.name: helper.get_attribute_value(a) for a in p.attribute} for p in projs]
            if any(a.keys() - {"K", "N", "bits", "block_size", "accuracy_level"} for a in attrs):
                continue
            if any(
                {k: v for k, v in a.items() if k != "N"} != {k: v for k, v in attrs[0].items() if k != "N"}
                for a in attrs
            ):
                continue
            if len({len(p.input) for p in projs}) != 1 or len(projs[0].input) > 4:
                continue
            try:
                parts = [[gr.constant(i) for i in p.input[1:]] for p in projs]
            except Unsupported:
                continue
            names = []
            for j, role in enumerate(("B", "scales", "zero_points")[: len(parts[0])]):
                names.append(f"{base}/{role}")
                g.initializer.append(
                    numpy_helper.from_array(np.concatenate([q[j] for q in parts], axis=0), names[-1])
                )
            n_total = sum(int(a["N"]) for a in attrs)
            node = helper.make_node(
                "MatMulNBits",
                [projs[0].input[0], *names],
                [base],
                name=base,
                domain="com.microsoft",
                **{**attrs[0], "N": n_total},
            )
        else:
            continue
        gqa.input[0], gqa.input[1], gqa.input[2] = base, "", ""
        g.node.insert(list(g.node).index(projs[0]), node)
        packed += 1
    prune(g)
    return packed


def _replace_past_length(gr: _Graph) -> list:
    """The export reads the cache length as Shape(past_key)[2] (for the position embedding); a static buffer's
    shape is its capacity, so that value becomes the `past_sequence_length` input."""
    from onnx import helper

    new_nodes = []
    for n in list(gr.g.node):
        if n.op_type != "Shape" or not gr.source(n.input[0]).startswith("past_key_values."):
            continue
        if ".decoder." not in gr.source(n.input[0]):
            continue  # the cross-attention length is the text length: still a real shape
        for g in gr.consumers.get(n.output[0], []):
            if g.op_type != "Gather":
                raise Unsupported("cache shape is used other than by Gather")
            idx = gr.constant(g.input[1])
            if int(idx.reshape(-1)[0]) not in (2, -2):
                raise Unsupported("cache shape is read on an axis other than the sequence")
            if idx.ndim == 0:
                new_nodes.append(
                    helper.make_node("Identity", [PAST_LEN], [g.output[0]], name=g.name + "/len")
                )
            else:
                axes = g.name + "/axes"
                new_nodes.append(
                    helper.make_node(
                        "Constant",
                        [],
                        [axes],
                        value=helper.make_tensor(axes, 7, [1], [0]),
                    )
                )
                new_nodes.append(helper.make_node("Unsqueeze", [PAST_LEN, axes], [g.output[0]], name=g.name))
            gr.g.node.remove(g)
    return new_nodes


def _last_position_logits(graph) -> None:
    """Feed the final LayerNorm (and so the lm heads) only the last position: [B, L, D] → [B, 1, D]. Exact for
    every position the caller reads (LayerNorm and the heads work per position); a prefill of P positions then
    computes one row of logits instead of P."""
    from onnx import TensorProto, helper

    norms = [n for n in graph.node if n.op_type == "LayerNormalization"]
    if not norms:
        raise Unsupported("no final LayerNormalization before the lm heads")
    final = norms[-1]  # the graph is topologically sorted: the decoder's last norm comes after every layer's
    x = final.input[0]
    name = final.name + "/last_position"
    consts = [
        helper.make_tensor(f"{name}/{k}", TensorProto.INT64, [1], [v])
        for k, v in (("starts", -1), ("ends", 2**62), ("axes", 1))
    ]
    graph.initializer.extend(consts)
    node = helper.make_node("Slice", [x, *(c.name for c in consts)], [name], name=name)
    final.input[0] = name
    graph.node.insert(list(graph.node).index(final), node)


def _batch_from_encoder(graph) -> None:
    """The export reads the batch size of the cross-attention K/V reshape from the decoder's hidden states
    (Shape(hidden)[0]), which makes the encoder K/V of layer n depend on decoder layers 0..n-1. The batch is the
    same for the encoder states: reading it there leaves only the K/V projections in the graph once pruned."""
    from onnx import numpy_helper

    producer = {o: n for n in graph.node for o in n.output}
    consumers: dict[str, list] = {}
    for n in graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    decoder_side = {"input_ids"}
    for n in graph.node:  # topological order: one pass finds everything computed from the decoder tokens
        if any(i in decoder_side for i in n.input):
            decoder_side.update(n.output)

    def index(name: str) -> int | None:
        c = producer.get(name)
        if c is not None and c.op_type == "Constant":
            return int(numpy_helper.to_array(c.attribute[0].t).reshape(-1)[0])
        init = next((t for t in graph.initializer if t.name == name), None)
        return None if init is None else int(numpy_helper.to_array(init).reshape(-1)[0])

    for n in graph.node:
        if n.op_type != "Shape" or n.input[0] not in decoder_side:
            continue
        uses = consumers.get(n.output[0], [])
        if uses and all(u.op_type == "Gather" and index(u.input[1]) == 0 for u in uses):
            n.input[0] = "encoder_hidden_states"


def _standalone(model, branch_name: str | None, in_place: bool = False):
    """A model whose graph is the merged decoder's `If` branch (`then` = cache path, `else` = no-cache path),
    with the outer graph's inputs, initializers and the nodes before the `If`; or the model itself (split files).
    `in_place` rewrites `model` itself: no second copy of every weight, for a source that is not needed
    afterwards. A copy takes only the small constants (shapes, indices): `_add_weights` adds the weights its
    graph still reads once pruned, rather than a transient copy of them all."""
    from onnx import helper

    g = model.graph
    ifs = [n for n in g.node if n.op_type == "If"]
    if branch_name is None or not ifs:
        return model
    if len(ifs) != 1:
        raise Unsupported("more than one If in the decoder")
    branch = next((a.g for a in ifs[0].attribute if a.name == branch_name), None)
    if branch is None:
        raise Unsupported(f"If has no {branch_name}")
    nodes = [n for n in g.node if n is not ifs[0]] + list(branch.node)
    renames = [
        helper.make_node("Identity", [b.name], [o], name=f"lofi/out/{o}")
        for b, o in zip(branch.output, ifs[0].output, strict=True)
        if b.name != o
    ]
    if in_place:
        keep_inputs = [i for i in g.input if i.name != "use_cache_branch"]
        branch_inits = list(branch.initializer)
        del g.node[:]
        g.node.extend(nodes + renames)
        del g.input[:]
        g.input.extend(keep_inputs)
        g.initializer.extend(branch_inits)
        return model
    graph = helper.make_graph(
        nodes + renames,
        g.name,
        [i for i in g.input if i.name != "use_cache_branch"],
        list(g.output),
        [t for t in (*g.initializer, *branch.initializer) if _elements(t) <= SMALL_CONSTANT],
    )
    out = helper.make_model(graph, opset_imports=list(model.opset_import), ir_version=model.ir_version)
    return out


# a copied graph (`_standalone`) takes initializers of up to this many elements (scalars, shapes) at once
SMALL_CONSTANT = 16


def _elements(t) -> int:
    return int(np.prod(t.dims, dtype=np.int64))


def _add_weights(graph, source) -> None:
    """Copy into `graph` the large initializers of `source` (a merged decoder: its outer graph and `If` branches)
    that `graph`'s nodes read and it does not have yet."""
    have = {t.name for t in graph.initializer}
    wanted = {i for n in graph.node for i in n.input} - have
    branches = [a.g for n in source.graph.node if n.op_type == "If" for a in n.attribute if a.type == a.GRAPH]
    for g in (source.graph, *branches):
        for t in g.initializer:
            if t.name in wanted:
                graph.initializer.append(t)
                wanted.discard(t.name)


def _set_outputs(graph, keep) -> None:
    outs = [o for o in graph.output if keep(o.name)]
    del graph.output[:]
    graph.output.extend(outs)


def build(cache_path: Path, first_path: Path | None = None) -> tuple:
    """(static model, cross-KV model) from the merged decoder (`cache_path` alone) or the split pair
    (`cache_path` = decoder_with_past, `first_path` = decoder_model)."""
    import onnx
    from onnx import TensorProto, helper

    merged = first_path is None
    cache_src = onnx.load(str(cache_path))
    first_src = cache_src if merged else onnx.load(str(first_path))

    # -- cross-KV graph (the no-cache path's encoder presents) first: it keeps only a few weights, so its copy
    # of them all is gone before the static graph is built in the source itself (no second copy)
    cross = _standalone(first_src, "else_branch" if merged else None)
    _set_outputs(cross.graph, lambda n: n.startswith("present.") and ".encoder." in n)
    if not cross.graph.output:
        raise Unsupported("the first-step decoder has no present.*.encoder.* outputs")
    _batch_from_encoder(cross.graph)
    prune(cross.graph)
    _add_weights(cross.graph, first_src)
    used = {i for n in cross.graph.node for i in n.input}
    keep_inputs = [i for i in cross.graph.input if i.name in used]
    del cross.graph.input[:]
    cross.graph.input.extend(keep_inputs)
    del first_src

    # -- static graph: the cache path with GQA
    static = _standalone(cache_src, "then_branch" if merged else None, in_place=True)
    del cache_src
    g = static.graph
    _set_outputs(g, lambda n: ".encoder." not in n)  # the cache path's encoder outputs are dummies
    gr = _Graph(g)
    layers = sorted(
        int(o.name.split(".")[1])
        for o in g.output
        if o.name.startswith("present.") and o.name.endswith("key")
    )
    if not layers:
        raise Unsupported("no present.*.decoder.key outputs")
    kv_in = next(i for i in g.input if i.name == f"past_key_values.{layers[0]}.decoder.key")
    dims = kv_in.type.tensor_type.shape.dim
    if kv_in.type.tensor_type.elem_type != TensorProto.FLOAT or not dims[1].dim_value:
        raise Unsupported("the KV cache is not float32 with a fixed head count")
    num_heads = dims[1].dim_value
    at_end: dict[str, object] = {}  # output of the Reshape that ends an attention → its GQA
    dropped: set[str] = set()
    for layer in layers:
        gqa, (kcat, vcat, out) = _rewrite_self_attention(gr, layer, num_heads)
        at_end[out] = gqa
        dropped.update((kcat, vcat))
    nodes = []
    for n in g.node:
        if n.output and n.output[0] in at_end:
            nodes.append(at_end[n.output[0]])  # every input of the GQA is computed before this point
        elif not (n.output and n.output[0] in dropped):
            nodes.append(n)
    del g.node[:]
    g.node.extend(nodes)
    extra = _replace_past_length(_Graph(g))
    for n in reversed(extra):
        g.node.insert(0, n)
    g.input.extend(
        [
            helper.make_tensor_value_info(PAST_LEN, TensorProto.INT64, []),
            helper.make_tensor_value_info(SEQLENS, TensorProto.INT32, ["batch_size"]),
            helper.make_tensor_value_info(TOTAL_LEN, TensorProto.INT32, []),
        ]
    )
    _last_position_logits(g)
    prune(g)
    if not any(o.domain == "com.microsoft" for o in static.opset_import):
        static.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    if any(n.op_type == "Softmax" for n in g.node if "self_attn" in n.name):
        raise Unsupported("a self-attention was left unconverted")
    from . import nbits  # imports this module's graph helpers

    if nbits.fast_here():
        nbits.convert(static)  # a dynamic-int8 decoder's products become one MatMulNBits node each
    fuse(static, num_heads)
    used = {i for n in g.node for i in n.input}
    keep_inputs = [i for i in g.input if i.name in used]
    del g.input[:]
    g.input.extend(keep_inputs)

    return static, cross


def fuse(model, num_heads: int) -> dict[str, int]:
    """Fewer, bigger nodes per step (a decoder step is ~1100 small nodes; each one costs a dispatch and, with two
    threads, a hand-over between them): each cross-attention becomes one MultiHeadAttention, each GELU one Gelu,
    each self-attention's Q/K/V products one packed product. → how many of each."""
    g = model.graph
    gr = _Graph(g)
    layers = sorted(int(i.name.split(".")[1]) for i in g.input if i.name.endswith(".encoder.key"))
    replace = {}
    try:
        for layer in layers:
            node, out = _rewrite_cross_attention(gr, layer, num_heads)
            replace[out] = node
    except Unsupported as exc:  # a speed-up, not a requirement: the in-place cache works without it
        log.info("musicgen cross-attention left as exported: %s", exc)
        replace = {}
    # every layer slices the same padding mask to its text length, which is the same for all (the cross graph
    # projects one set of encoder states): the first layer's mask serves all, 4 nodes per layer fewer
    masks = [n.input[5] for n in replace.values()]
    for n in replace.values():
        n.input[5] = masks[0]
    _replace_outputs(g, replace)
    counts = {"cross_attention": len(replace), "gelu": _fuse_gelu(g)}
    prune(g)
    counts["qkv"] = _pack_qkv(model)
    log.info("musicgen decoder fused: %s", counts)
    return counts


def _save(model, path: Path) -> None:
    """The graph in `path`, the weights beside it in `path`.data, written tensor by tensor: no serialised copy of
    the whole model in memory (save_model would build one, 400 MB for musicgen-small), and protobuf's 2 GB limit
    never applies. ONNX Runtime also loads this layout with less resident memory (measured in benchmarks.md)."""
    import onnx

    onnx.save_model(
        model,
        str(path),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location=path.name + ".data",
    )


def cpu_path(dtype: str) -> dict[str, str]:
    """What the converted decoder of a `dtype` file runs on this CPU, for the model version and the status: the
    KV cache's precision, and the kernels of its products. For a dynamic-int8 file that depends on the CPU
    (nbits.fast_here: 8-bit MatMulNBits where MLAS has int8 kernels for it, else the quantize → MatMulInteger
    chains as exported), so the same file gives other rounding, and other tracks, on another CPU."""
    named = {"fp32": "float32 MatMul", "q4": "4-bit MatMulNBits", "fp16": "float16 MatMul"}
    out = {"kv_cache": "float32", "products": named.get(dtype, dtype), "tag": "kvf32"}
    if dtype == "int8":
        from . import nbits

        fast = nbits.fast_here()
        out["products"] = "int8 MatMulNBits (8-bit, accuracy 4)" if fast else "int8 MatMulInteger chains"
        out["tag"] += "-nbits8" if fast else "-chain"
    return out


def fingerprint(paths: list[Path]) -> str:
    """Cache key of the converted files: the sources' names, sizes and mtimes plus the rewrite's version."""
    from . import nbits

    h = hashlib.sha256(f"static-kv-{CONVERT_VERSION}-nbits{int(nbits.fast_here())}".encode())
    for p in paths:
        st = p.stat()
        h.update(f"{p.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def converted(files: dict[str, Path], cache_root: Path) -> tuple[Path, Path]:
    """Paths of the converted pair for these decoder files, building them on first use (atomically).

    The build runs in a child process: it peaks at about twice the decoder's size (1.1 GiB for musicgen-small's
    465 MB int8 file, 3.3 GiB for the 1.7 GB fp32 one; docs/benchmarks.md), and the daemon would keep part of
    that for the rest of its life. The child writes into a temporary folder that becomes the cache entry only
    once both graphs are saved."""
    if "decoder_merged" in files:
        cache_path, first_path = files["decoder_merged"], None
        sources = [cache_path]
    else:
        cache_path, first_path = files["decoder_with_past"], files["decoder"]
        sources = [cache_path, first_path]
    out = cache_root / fingerprint(sources)
    static, cross = out / STATIC_FILE, out / CROSS_FILE
    if static.exists() and cross.exists():
        return static, cross
    log.info("converting the musicgen decoder to an in-place KV cache (once) into %s", out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=out.parent))
    try:
        _convert_in_child(tmp, cache_path, first_path)
        (tmp / "source.json").write_text(
            json.dumps({"sources": [str(p) for p in sources], "version": CONVERT_VERSION}), encoding="utf-8"
        )
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # no partial entry: a later start converts again
        raise
    try:
        os.rename(tmp, out)
    except OSError:  # another process converted it meanwhile
        shutil.rmtree(tmp, ignore_errors=True)
    return static, cross


# the child's exit status for Unsupported; the reason is in the folder's UNSUPPORTED_FILE
UNSUPPORTED_EXIT = 3
UNSUPPORTED_FILE = "unsupported.txt"
# a ceiling against a stuck child, far above any real conversion (seconds to minutes)
CHILD_TIMEOUT_SEC = 3600.0


def _convert_in_child(tmp: Path, cache_path: Path, first_path: Path | None) -> None:
    """Run `write_converted` in a fresh interpreter of this checkout; its stdout is not ours (ours is the JSON-RPC
    channel), its stdin neither. → Unsupported(reason) for a graph it does not know, LofiError for any failure."""
    import lofi_daemon

    root = str(Path(lofi_daemon.__file__).resolve().parent.parent)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
    argv = [str(tmp), str(cache_path)] + ([str(first_path)] if first_path is not None else [])
    code = f"import sys; from {__name__} import _child_main; sys.exit(_child_main(sys.argv[1:]))"
    try:
        done = subprocess.run(
            [sys.executable, "-c", code, *argv],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
            timeout=CHILD_TIMEOUT_SEC,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:  # run() has killed it
        raise LofiError(
            ErrorCode.MODEL_LOAD_FAILED,
            f"converting the musicgen decoder {cache_path.name} took over {CHILD_TIMEOUT_SEC:.0f} s: stopped",
        ) from exc
    stderr = done.stderr.decode("utf-8", "replace").strip()
    for line in stderr.splitlines():
        log.debug("conversion: %s", line)
    if done.returncode == UNSUPPORTED_EXIT and (tmp / UNSUPPORTED_FILE).exists():
        raise Unsupported((tmp / UNSUPPORTED_FILE).read_text(encoding="utf-8"))
    if done.returncode != 0:
        tail = "\n".join(stderr.splitlines()[-6:]) or "(no output)"
        raise LofiError(
            ErrorCode.MODEL_LOAD_FAILED,
            f"converting the musicgen decoder {cache_path.name} failed (exit status {done.returncode}): {tail}",
            details=tail,
        )


def write_converted(folder: Path, cache_path: Path, first_path: Path | None = None) -> None:
    """Build the converted pair and save it into `folder` (the child's work)."""
    static_model, cross_model = build(cache_path, first_path)
    _save(static_model, folder / STATIC_FILE)
    _save(cross_model, folder / CROSS_FILE)


def _child_main(argv: list[str]) -> int:
    """Entry point of the conversion child: FOLDER DECODER [FIRST_DECODER] → exit status."""
    logging.basicConfig(
        level=logging.INFO, format="%(name)s: %(message)s"
    )  # onto stderr, which the parent reads
    folder, cache_path = Path(argv[0]), Path(argv[1])
    first_path = Path(argv[2]) if len(argv) > 2 else None
    try:
        write_converted(folder, cache_path, first_path)
    except Unsupported as exc:
        (folder / UNSUPPORTED_FILE).write_text(str(exc), encoding="utf-8")
        return UNSUPPORTED_EXIT
    return 0
