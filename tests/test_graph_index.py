"""runtime/graph_index.py: pruning a graph in place keeps what its outputs need, in order, and nothing else."""

from __future__ import annotations

import numpy as np
from lofi_daemon.runtime.graph_index import prune
from onnx import TensorProto, helper, numpy_helper


def test_prune_keeps_what_the_outputs_need_in_order():
    w = [numpy_helper.from_array(np.full((2, 2), i, np.float32), f"w{i}") for i in range(3)]
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w0"], ["a"], name="live0"),
            helper.make_node("MatMul", ["x", "w1"], ["dead"], name="dead"),  # nothing reads it
            helper.make_node("MatMul", ["a", "w2"], ["y"], name="live1"),
            helper.make_node("Relu", ["dead"], ["dead2"], name="dead_too"),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 2])],
        w,
    )
    prune(graph)
    assert [n.name for n in graph.node] == ["live0", "live1"]
    assert [t.name for t in graph.initializer] == ["w0", "w2"]
    assert np.array_equal(numpy_helper.to_array(graph.initializer[1]), np.full((2, 2), 2, np.float32))
