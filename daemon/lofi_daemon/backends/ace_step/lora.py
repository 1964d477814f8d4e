"""LoRA styles: a diffusers/PEFT `pytorch_lora_weights.safetensors` merged into the base ONNX weights.

For every adapted Linear, W' = W + weight · scale · (B @ A) with scale = α/√r for rsLoRA and α/r otherwise.
α, r and rsLoRA come from the adapter metadata diffusers writes into the file (`lora_adapter_metadata`), else
from a PEFT `adapter_config.json` beside it, else α = r (what diffusers' `load_lora_adapter` assumes).
The merged matrices replace the graph initializers (the exporter's `lora_name_map.json` says which
initializer holds which parameter, and whether it is stored transposed) through
`SessionOptions.add_initializer`, so generation runs at base speed — unlike an unmerged adapter (ONNX Runtime's
adapter API needs a graph exported with LoRA inputs), which adds two rank-r matmuls per adapted projection to
every evaluation.

Measured pitfall: onnxruntime ignores an `add_initializer` override when the initializer feeds a node that graph
optimisation constant-folds (a `Transpose` of a Linear weight, as the legacy exporter writes without constant
folding) — the folded original wins. The exporter therefore folds, so MatMuls consume the (pre-transposed,
renamed) initializer directly, and the name map finds each parameter's initializer by value.

Scale note: upstream's `load_lora(path)` calls diffusers' `load_lora_adapter` with a bare file path, and diffusers
then skips the file's metadata and assumes α = r (scale = lora_weight). We honour the adapter's own α / rsLoRA
(the scale it was trained with), as diffusers does when the metadata is read.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

WEIGHTS_NAME = "pytorch_lora_weights.safetensors"
_PREFIXES = ("base_model.model.", "transformer.", "ace_step_transformer.")


@dataclass(frozen=True)
class LoraConfig:
    r: int
    alpha: float
    use_rslora: bool
    rank_pattern: dict
    alpha_pattern: dict

    def scale_for(self, module: str, rank: int) -> float:
        alpha = next(
            (float(v) for k, v in self.alpha_pattern.items() if module.endswith(k.lstrip("^"))), None
        )
        alpha = self.alpha if alpha is None else alpha
        return alpha / (rank**0.5 if self.use_rslora else rank)


def resolve_file(path: Path) -> Path:
    path = Path(path).expanduser()
    return path / WEIGHTS_NAME if path.is_dir() else path


MAX_HEADER_BYTES = 100_000_000  # safetensors' own limit for the JSON header


def is_lora_file(path: Path) -> bool:
    """True when `path` (or `path`/pytorch_lora_weights.safetensors) is a readable regular `.safetensors` file whose
    header parses and names LoRA tensors: some `….lora_A.…` each with its `….lora_B.…`. Only the header is read
    (never the weights), and a FIFO or device is never opened for reading. Why it is not one is deliberately not
    said: the caller answers every failure with the same message, so `lora` is no file-existence oracle."""
    try:
        file = resolve_file(path)
        if file.suffix != ".safetensors":
            return False
        fd = os.open(file, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as fh:
            st = os.fstat(fh.fileno())
            if not stat.S_ISREG(st.st_mode):
                return False
            (n,) = struct.unpack("<Q", fh.read(8))
            if not 2 <= n <= min(MAX_HEADER_BYTES, st.st_size - 8):
                return False
            header = json.loads(fh.read(n))
    except (OSError, ValueError, struct.error):  # missing, unreadable, a folder, truncated, not JSON
        return False
    if not isinstance(header, dict):
        return False
    tensors = {k: v for k, v in header.items() if k != "__metadata__"}
    if not all(
        isinstance(v, dict) and {"dtype", "shape", "data_offsets"} <= v.keys() for v in tensors.values()
    ):
        return False
    a_keys = [k for k in tensors if ".lora_A." in k]
    return bool(a_keys) and all(k.replace(".lora_A.", ".lora_B.") in tensors for k in a_keys)


def read_lora(path: Path) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], LoraConfig]:
    """module name → (A [r, in], B [out, r]) and the adapter config."""
    from safetensors import safe_open

    file = resolve_file(path)
    tensors: dict[str, np.ndarray] = {}
    with safe_open(str(file), framework="numpy") as fh:
        meta = fh.metadata() or {}
        for key in fh.keys():
            tensors[key] = fh.get_tensor(key)
    cfg = _config(file, meta, tensors)
    pairs: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for key, value in tensors.items():
        if ".lora_A." not in key:
            continue
        module = key.split(".lora_A.")[0]
        for p in _PREFIXES:
            module = module.removeprefix(p)
        b = tensors.get(key.replace(".lora_A.", ".lora_B."))
        if b is None:
            raise ValueError(f"{file.name}: {key} has no matching lora_B")
        pairs[module] = (value.astype(np.float32), b.astype(np.float32))
    if not pairs:
        raise ValueError(f"{file.name} holds no lora_A/lora_B tensors")
    return pairs, cfg


def _config(file: Path, meta: dict, tensors: dict) -> LoraConfig:
    raw = None
    if "lora_adapter_metadata" in meta:
        raw = json.loads(meta["lora_adapter_metadata"])
    elif (file.parent / "adapter_config.json").exists():
        raw = json.loads((file.parent / "adapter_config.json").read_text())
    rank = next(int(v.shape[0]) for k, v in tensors.items() if ".lora_A." in k)
    if raw is None:
        return LoraConfig(rank, float(rank), False, {}, {})
    return LoraConfig(
        int(raw.get("r", rank)),
        float(raw.get("lora_alpha", raw.get("r", rank))),
        bool(raw.get("use_rslora", False)),
        dict(raw.get("rank_pattern") or {}),
        dict(raw.get("alpha_pattern") or {}),
    )


def merged_initializers(
    pairs: dict[str, tuple[np.ndarray, np.ndarray]],
    cfg: LoraConfig,
    weight: float,
    name_map: dict[str, dict],
    graph_dir: Path,
) -> tuple[dict[str, np.ndarray], set[str]]:
    """Initializer name → merged value for the modules of one graph, and the modules it covered. Base weights
    are memory-mapped from the graph's external data file at the offsets the exporter recorded."""
    out: dict[str, np.ndarray] = {}
    used: set[str] = set()
    for module, (a, b) in pairs.items():
        entry = name_map.get(f"{module}.weight")
        if entry is None:
            continue
        w = base_weight(graph_dir, entry)
        delta = np.float32(weight * cfg.scale_for(module, a.shape[0])) * (b @ a)  # [out, in]
        out[entry["initializer"]] = (w + (delta.T if entry["transposed"] else delta)).astype(np.float32)
        used.add(module)
    return out, used


def base_weight(graph_dir: Path, entry: dict) -> np.ndarray:
    shape = tuple(entry["shape"])
    mm = np.memmap(
        Path(graph_dir) / entry["file"], dtype="<f4", mode="r", offset=entry["offset"], shape=shape
    )
    return np.array(mm, dtype=np.float32)
