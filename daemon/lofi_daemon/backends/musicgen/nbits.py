"""Turn a dynamically quantised int8 graph's matrix products into `com.microsoft.MatMulNBits` with 8-bit weights.

`onnxruntime.quantization.quantize_dynamic` (what the hub's `_quantized` decoders are) writes each product as
five nodes: DynamicQuantizeLinear(x) → MatMulInteger(xq, Wq) → Cast → Mul(x_scale · w_scale) → Mul. On a decoder
step (2 rows of activations) that chain is glue-bound: ~800 small nodes per step. MatMulNBits does the same
product in one node, from the very same int8 weights (stored as uint8 + 128 with a zero point of 128, so the
dequantised weights are bit-identical); with `accuracy_level` 4 it quantises the activations to int8 per block of
`block_size` (finer than the per-tensor scale of DynamicQuantizeLinear) and uses the CPU's int8 dot products
(AVX2 / AVX-512 VNNI / AMX); with 0 it dequantises the weights and multiplies in float32.
"""

from __future__ import annotations

import functools
import time

import numpy as np

from ...runtime.graph_index import prune
from .static_kv import Unsupported, _Graph

# One block per row for every product of musicgen-small (K ≤ 4096; narrower rows get one block of their K): the
# int8 file's weights have one scale per tensor, so the block only changes how MLAS tiles the activations. Against
# 1024 the logits were bit-identical on musicgen-small and the fc2 products ~1–3 % faster (docs/benchmarks.md).
BLOCK_SIZE = 4096


@functools.cache
def fast_here() -> bool:
    """Does this CPU run 8-bit MatMulNBits on its int8 kernels? Where MLAS has none for `accuracy_level` 4, the
    node dequantises its weights at every call: 24–120× slower than the chain it replaces (measured here with
    levels 0 and 1). Decided once per process by timing one 1024×1024 product both ways (a few ms); the
    chain is kept unless MatMulNBits is at most 3× slower (it was ~0.7× on AVX2/AVX-512 VNNI)."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    q = rng.integers(-127, 128, (1024, 1024), dtype=np.int8)
    graph = helper.make_graph(
        [
            helper.make_node("DynamicQuantizeLinear", ["x"], ["xq", "xs", "xz"]),
            helper.make_node("MatMulInteger", ["xq", "w", "xz", "wz"], ["yi"]),
            helper.make_node("Cast", ["yi"], ["yf"], to=TensorProto.FLOAT),
            helper.make_node("Mul", ["xs", "ws"], ["s"]),
            helper.make_node("Mul", ["yf", "s"], ["y"]),
        ],
        "probe",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 1024])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 1024])],
        [
            numpy_helper.from_array(q, "w"),
            numpy_helper.from_array(np.array(0, np.int8), "wz"),
            numpy_helper.from_array(np.array(0.01, np.float32), "ws"),
        ],
    )
    chain = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    rewritten = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    convert(rewritten)
    x = {"x": rng.standard_normal((2, 1024)).astype(np.float32)}
    best = []
    for model in (chain, rewritten):
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
        sess.run(None, x)
        times = []
        for _ in range(15):
            t = time.perf_counter()
            sess.run(None, x)
            times.append(time.perf_counter() - t)
        best.append(min(times))  # the least disturbed call: a busy neighbour only ever adds time
    return best[1] <= 3 * best[0]


def _weight(gr: _Graph, name: str) -> np.ndarray:
    try:
        return gr.constant(name)
    except Unsupported:
        raise Unsupported(f"{name} is not a constant weight") from None


def _pack(q: np.ndarray, zero: np.ndarray, scale: np.ndarray, block: int) -> tuple:
    """int8 weights [K, N] with zero points and scales (scalars, or one per column) → MatMulNBits' B
    [N, blocks, block] uint8, scales [N * blocks] float32, zero points [N * blocks] uint8."""
    k, n = q.shape
    blocks = -(-k // block)
    u = (q.astype(np.int16) + 128).astype(np.uint8).T  # [N, K]
    if k % block:
        u = np.pad(u, ((0, 0), (0, blocks * block - k)), constant_values=128)
    b = np.ascontiguousarray(u.reshape(n, blocks, block))
    scales = np.repeat(np.broadcast_to(scale.astype(np.float32).reshape(-1), (n,)), blocks)
    zps = np.repeat(np.broadcast_to((zero.astype(np.int16) + 128).astype(np.uint8).reshape(-1), (n,)), blocks)
    return b, np.ascontiguousarray(scales), np.ascontiguousarray(zps)


def convert(model, accuracy_level: int = 4, block: int = BLOCK_SIZE) -> int:
    """Rewrite every DynamicQuantizeLinear → MatMulInteger → Cast → Mul chain of `model` in place; → how many.
    Chains that do not match exactly (uint8 weights, a weight that is not a constant) are left as they are."""
    from onnx import helper, numpy_helper

    g = model.graph
    gr = _Graph(g)
    replace: dict[str, object] = {}  # output of the chain's last Mul → the MatMulNBits node
    dropped: set[str] = set()
    for node in g.node:
        if node.op_type != "MatMulInteger" or len(node.input) != 4:
            continue
        dql = gr.producer.get(node.input[0])
        if dql is None or dql.op_type != "DynamicQuantizeLinear" or node.input[2] != dql.output[2]:
            continue
        try:
            q, zero = _weight(gr, node.input[1]), _weight(gr, node.input[3])
        except Unsupported:
            continue
        if q.dtype != np.int8 or q.ndim != 2:
            continue
        cast = gr.consumers.get(node.output[0], [])
        if len(cast) != 1 or cast[0].op_type != "Cast":
            continue
        mul = gr.consumers.get(cast[0].output[0], [])
        if len(mul) != 1 or mul[0].op_type != "Mul":
            continue
        scales_name = next(i for i in mul[0].input if i != cast[0].output[0])
        scales_mul = gr.producer.get(scales_name)
        if scales_mul is None or scales_mul.op_type != "Mul" or dql.output[1] not in scales_mul.input:
            continue
        w_scale = _weight(gr, next(i for i in scales_mul.input if i != dql.output[1]))
        k, n = q.shape
        size = max(16, min(block, 1 << (k - 1).bit_length()))  # no block wider than the padded row
        b, scales, zps = _pack(q, zero, w_scale, size)
        base = node.input[1] + "/nbits"
        # straight into the graph, one tensor at a time: a list of them all would be a second copy of the weights
        g.initializer.append(numpy_helper.from_array(b, base + "/B"))
        g.initializer.append(numpy_helper.from_array(scales, base + "/scales"))
        g.initializer.append(numpy_helper.from_array(zps, base + "/zero_points"))
        replace[mul[0].output[0]] = helper.make_node(
            "MatMulNBits",
            [dql.input[0], base + "/B", base + "/scales", base + "/zero_points"],
            [mul[0].output[0]],
            name=node.name + "/nbits",
            domain="com.microsoft",
            K=k,
            N=n,
            bits=8,
            block_size=size,
            accuracy_level=accuracy_level,
        )
        dropped.update((node.output[0], cast[0].output[0]))
    nodes = []
    for node in g.node:
        out = node.output[0] if node.output else None
        if out in replace:
            nodes.append(replace[out])
        elif out not in dropped:
            nodes.append(node)
    del g.node[:]
    g.node.extend(nodes)
    if replace and not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    prune(g)  # the quantize/scale nodes and int8 initializers nothing reads any more
    return len(replace)
