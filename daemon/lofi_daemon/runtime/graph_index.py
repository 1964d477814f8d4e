"""An index of an ONNX graph for structural rewrites: which node produces and which nodes consume each tensor, and
its constants. The rewrites (MusicGen's in-place KV cache and MatMulNBits, Riffusion's UNet attention) walk a graph
through it and give up, with their own exception, on a structure they do not know."""

from __future__ import annotations

import numpy as np


class GraphIndex:
    # what a failed match raises; each rewrite names its own, so its caller knows whose structure was not found
    error: type[Exception] = ValueError

    def __init__(self, graph) -> None:
        self.g = graph
        self.producer = {o: n for n in graph.node for o in n.output}
        self.consumers: dict[str, list] = {}
        for n in graph.node:
            for i in n.input:
                self.consumers.setdefault(i, []).append(n)
        self.inputs = {i.name for i in graph.input}
        self.consts = {t.name: t for t in graph.initializer}

    def only(self, name: str, op: str):
        """The `op` node producing `name`; `error` when another op (or a graph input) produces it."""
        n = self.producer.get(name)
        if n is None or n.op_type != op:
            raise self.error(f"expected {op} producing {name}, found {n.op_type if n else 'a graph input'}")
        return n

    def constant(self, name: str) -> np.ndarray:
        """The value of an initializer or a Constant node's output; `error` for anything computed."""
        from onnx import numpy_helper

        if name in self.consts:
            return numpy_helper.to_array(self.consts[name])
        n = self.producer.get(name)
        if n is not None and n.op_type == "Constant":
            for a in n.attribute:
                if a.name == "value":
                    return numpy_helper.to_array(a.t)
        raise self.error(f"{name} is not a constant")


def prune(graph) -> None:
    """Drop the nodes and initializers no graph output depends on, deleting them in place: re-adding the kept
    ones would copy every weight once more, and protobuf's arena keeps a deleted element's memory until the
    whole model is freed (a conversion's peak memory grew by the weights' size at every prune)."""
    producer = {o: n for n in graph.node for o in n.output}
    needed: set[str] = set()
    stack = [o.name for o in graph.output]
    while stack:
        name = stack.pop()
        if name in needed:
            continue
        needed.add(name)
        if (n := producer.get(name)) is not None:
            stack.extend(x for x in n.input if x)
    retain(graph.node, lambda n: any(o in needed for o in n.output))
    retain(graph.initializer, lambda t: t.name in needed)


def retain(field, keep) -> None:
    """Delete, in place, the elements of a repeated protobuf field that `keep` rejects (no copy of the rest)."""
    for i in range(len(field) - 1, -1, -1):
        if not keep(field[i]):
            del field[i]
