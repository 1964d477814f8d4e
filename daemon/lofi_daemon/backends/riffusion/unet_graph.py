"""Rewrite an exported Stable Diffusion UNet for ONNX Runtime's CPU: every attention becomes one
`com.microsoft.MultiHeadAttention` node, whose CPU kernel is a flash attention (tiles of the scores kept in cache)
where the exported graph materialises them: SD-1.5's self-attention over 64 × 64 latents is a [2, 8, 4096, 4096]
score tensor (1 GB) per layer, written and read three times (MatMul, Softmax, MatMul).

The export writes PyTorch's `scaled_dot_product_attention` (what diffusers' attention processor calls) as
    q, k, v = Reshape → Transpose of the projections [B, S, N·H]
    o = MatMul(Softmax(MatMul(q · √s, kᵀ · √s)), v) → Transpose → Reshape [B, S, N·H]
with s = 1 / √H computed from q's shape. The rewrite follows that structure from every Softmax, checks the scale
is the default one (MultiHeadAttention's own default), and leaves any attention it does not recognise as it is;
the graph's inputs, outputs and every other node stay the same. Nothing here needs torch (the converter runs it
once: scripts/export_riffusion.py); ONNX Runtime's CPU EP places every node it writes
(tests/test_riffusion_unet_graph.py).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...runtime.graph_index import GraphIndex, prune

# Bump when the rewrite changes: the converter records it (model_index.json's "lofi_unet_graph") and the backend
# asks for a new conversion when an older one is found.
UNET_GRAPH_VERSION = 1
VERSION_KEY = "lofi_unet_graph"


class _NoMatch(Exception):
    """This Softmax is not the attention pattern the rewrite knows."""


class _Graph(GraphIndex):
    error = _NoMatch

    def node(self, name: str, op: str, perm: list[int] | None = None):
        """`only`, and for a Transpose its permutation."""
        n = self.only(name, op)
        if perm is not None and next((list(a.ints) for a in n.attribute if a.name == "perm"), None) != perm:
            raise _NoMatch(f"{n.name}: transpose is not {perm}")
        return n

    def sole_consumer(self, name: str, op: str, perm: list[int] | None = None):
        users = self.consumers.get(name, [])
        if len(users) != 1:
            raise _NoMatch(f"{name} has {len(users)} consumers")
        return self.node(users[0].output[0], op, perm)

    def skip_casts(self, name: str) -> str:
        while (n := self.producer.get(name)) is not None and n.op_type == "Cast":
            name = n.input[0]
        return name


def _check_default_scale(gr: _Graph, mul, heads_tensor: str) -> str:
    """`mul` = x · √s with s = 1 / √(last dim of `heads_tensor`) (torch's default scale) → x."""
    x, factor = mul.input
    root = gr.node(gr.skip_casts(factor), "Sqrt")
    div = gr.node(gr.skip_casts(root.input[0]), "Div")
    if not np.allclose(gr.constant(div.input[0]), 1.0):
        raise _NoMatch(f"{div.name}: not the default attention scale")
    sqrt_d = gr.node(gr.skip_casts(div.input[1]), "Sqrt")
    shape = gr.node(gr.node(gr.skip_casts(sqrt_d.input[0]), "Slice").input[0], "Shape")
    if shape.input[0] != heads_tensor:
        raise _NoMatch(f"{mul.name}: the scale is not computed from the query's head size")
    return x


def _heads(gr: _Graph, name: str, perm: list[int]) -> tuple[str, int]:
    """Transpose(Reshape(x, [B, S, N, H]), perm) → (x, N)."""
    reshape = gr.node(gr.node(name, "Transpose", perm).input[0], "Reshape")
    concat = gr.node(reshape.input[1], "Concat")
    if len(concat.input) != 4:
        raise _NoMatch(f"{reshape.name}: not a reshape to heads")
    return reshape.input[0], int(gr.constant(concat.input[2]).reshape(-1)[0])


def _fuse_one(gr: _Graph, softmax):
    """→ (the MultiHeadAttention node, the name of the output it takes over)."""
    from onnx import helper

    if next((a.i for a in softmax.attribute if a.name == "axis"), -1) not in (-1, 3):
        raise _NoMatch(f"{softmax.name}: softmax not over the keys")
    scores = gr.node(softmax.input[0], "MatMul")
    q_mul, k_mul = (gr.node(i, "Mul") for i in scores.input)
    q_heads = gr.node(q_mul.input[0], "Transpose").output[0]
    q, n_q = _heads(gr, _check_default_scale(gr, q_mul, q_heads), [0, 2, 1, 3])
    k, n_k = _heads(gr, _check_default_scale(gr, k_mul, q_heads), [0, 2, 3, 1])
    weighted = gr.sole_consumer(softmax.output[0], "MatMul")
    if weighted.input[0] != softmax.output[0]:
        raise _NoMatch(f"{weighted.name}: the probabilities are not the left operand")
    v, n_v = _heads(gr, weighted.input[1], [0, 2, 1, 3])
    merged = gr.sole_consumer(
        gr.sole_consumer(weighted.output[0], "Transpose", [0, 2, 1, 3]).output[0], "Reshape"
    )
    if not n_q == n_k == n_v:
        raise _NoMatch(f"{softmax.name}: head counts differ")
    out = merged.output[0]
    mha = helper.make_node(
        "MultiHeadAttention",
        [q, k, v],
        [out],
        name=f"{softmax.name}/MultiHeadAttention",
        domain="com.microsoft",
        num_heads=n_q,
    )
    return mha, out


def fuse_attention(model) -> int:
    """Rewrite `model` (onnx.ModelProto) in place; returns how many attentions became MultiHeadAttention."""
    from onnx import helper

    graph = model.graph
    gr = _Graph(graph)
    replaced: dict[str, object] = {}  # output name → the MultiHeadAttention node producing it
    for n in list(graph.node):
        if n.op_type == "Softmax":
            try:
                mha, out = _fuse_one(gr, n)
            except _NoMatch:
                continue
            replaced[out] = mha
    if not replaced:
        return 0
    nodes = [replaced.get(n.output[0], n) if n.output else n for n in graph.node]
    del graph.node[:]
    # each MultiHeadAttention takes its merge Reshape's place: the order stays topological
    graph.node.extend(nodes)
    prune(graph)  # the replaced attentions' leftovers
    if not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    return len(replaced)


def rewrite_file(src: Path, dst: Path) -> int:
    """Load `src` (external data too), fuse its attention and save to `dst` (may be `src`), the weights beside it
    in `<name>_data` when the model is over 1 GB as optimum's export does; returns the count. The converter writes
    into a temporary folder it renames when complete, so a failure here leaves no half model in use."""
    import onnx

    model = onnx.load(str(src))
    count = fuse_attention(model)
    if sum(len(t.raw_data) for t in model.graph.initializer) > 1 << 30:
        data = dst.with_name(dst.name + "_data")
        data.unlink(missing_ok=True)  # onnx appends to an existing data file; the weights are in memory now
        onnx.save_model(model, str(dst), save_as_external_data=True, location=data.name)
    else:
        onnx.save_model(model, str(dst))
    return count
