"""`lofi-lora merge`: a LoRA merged into the base transformer's weights (safetensors), verified by inference.

For every adapted Linear, W' = W + weight · scale · (B @ A), scale = α/√r (rsLoRA) or α/r, with the adapter read by
the daemon's own reader (so the merged file is what the daemon would play with `lora_weight=weight`). Before
writing, the merged model and the base model with the adapter applied through diffusers/peft (`load_lora_adapter`,
upstream's loading path) run the same seeded inputs; their outputs must agree to float32 rounding.

The output is a base-model folder of the input's layout holding the merged transformer; the other parts (text
encoder, DCAE, vocoder, tokenizers) are symbolic links to the input's, so `lofi-lora export --base OUT` makes an
ONNX model of the merged weights.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

from .errors import FAILED_INPUT, USAGE, LoraError

HELP = {"merge": "merge a LoRA into the base transformer weights (safetensors), verified by inference"}
U32 = 2.0**-24  # float32 unit roundoff


def add_arguments(p, command: str) -> None:
    p.add_argument("adapter", type=Path, help="LoRA file or folder (pytorch_lora_weights.safetensors)")
    p.add_argument("--base", type=Path, help="base ACE-Step model (else $LOFI_ACE_STEP_DIR)")
    p.add_argument("--out", type=Path, required=True, help="folder for the merged base model")
    p.add_argument(
        "--weight", type=float, default=1.0, help="LoRA strength merged in (the daemon's lora_weight)"
    )


def merged_state(model, adapter: Path, weight: float) -> tuple[dict, int]:
    """The transformer's state dict with the adapter merged in, and how many Linears it changed."""
    import torch
    from lofi_daemon.backends.ace_step.lora import read_lora

    try:
        pairs, cfg = read_lora(adapter)
    except (OSError, ValueError) as e:
        raise LoraError(f"{adapter} is not a LoRA file: {e}", FAILED_INPUT) from e
    state = {k: v.clone() for k, v in model.state_dict().items()}
    unknown = [m for m in pairs if f"{m}.weight" not in state]
    if unknown:
        raise LoraError(
            f"{adapter} adapts modules this model lacks ({', '.join(unknown[:3])}…): another base model?",
            FAILED_INPUT,
        )
    for module, (a, b) in pairs.items():
        w = state[f"{module}.weight"]
        if tuple(w.shape) != (b.shape[0], a.shape[1]):
            raise LoraError(
                f"{module}: LoRA {b.shape[0]}×{a.shape[1]} on a {tuple(w.shape)} weight", FAILED_INPUT
            )
        delta = torch.from_numpy(b) @ torch.from_numpy(a)
        state[f"{module}.weight"] = w + weight * cfg.scale_for(module, a.shape[0]) * delta
    return state, len(pairs)


def probe_inputs(model, frames: int = 8, seed: int = 0) -> tuple:
    """Seeded inputs of the model's own sizes: conditions and a noisy latent at a mid timestep."""
    import torch

    g = torch.Generator().manual_seed(seed)
    text_dim = model.genre_embedder.in_features
    vocab = model.lyric_embs.num_embeddings
    return (
        torch.randn(1, 6, text_dim, generator=g),
        torch.ones(1, 6, dtype=torch.long),
        torch.randn(1, model.speaker_embedder.in_features, generator=g),
        torch.randint(0, vocab, (1, 5), generator=g),
        torch.ones(1, 5, dtype=torch.long),
        torch.randn(1, 8, 16, frames, generator=g),
        torch.tensor([500.0]),
    )


def run_model(model, inputs):
    import torch

    text, text_mask, spk, lyric, lyric_mask, x, t = inputs
    with torch.no_grad():
        states, mask = model.encode(text, text_mask, spk, lyric, lyric_mask)
        return model.decode(x, torch.ones(1, x.shape[-1]), states, mask, t)


def tolerance(model) -> float:
    """Merged and unmerged differ by summation order alone: 4·√n·u for a chain of n roundings (tests/tolerances.py),
    n bounded by the reduction lengths of every Linear (each output passes through at most all of them)."""
    import torch

    n = sum(m.in_features for m in model.modules() if isinstance(m, torch.nn.Linear))
    return 4.0 * math.sqrt(n) * U32


def verify(base_model, merged_model, adapter: Path, weight: float) -> dict:
    """Merged ≡ base + adapter applied by diffusers/peft, on seeded inputs: the relative difference and its bound."""
    import copy

    from diffusers.utils.peft_utils import set_weights_and_activate_adapters

    from .install import WEIGHTS_NAME

    folder, name = (adapter, WEIGHTS_NAME) if adapter.is_dir() else (adapter.parent, adapter.name)
    peft_model = copy.deepcopy(base_model)
    # weight_name makes diffusers read the adapter's metadata (α, rsLoRA); a bare path would assume α = r
    peft_model.load_lora_adapter(str(folder), weight_name=name, adapter_name="merge_check", prefix=None)
    set_weights_and_activate_adapters(peft_model, ["merge_check"], [weight])
    inputs = probe_inputs(base_model)
    want = run_model(peft_model, inputs)
    got = run_model(merged_model, inputs)
    base_out = run_model(base_model, inputs)
    rel = float((got - want).norm() / want.norm())
    return {
        "max_rel_error": rel,
        "tolerance": tolerance(base_model),
        "lora_effect": float((want - base_out).norm() / want.norm()),
    }


def write_merged(base: Path, kind: str, state: dict, out: Path) -> Path:
    from safetensors.torch import save_file

    from .base import PARTS, UPSTREAM_DIRS

    out.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.contiguous() for k, v in state.items()}
    if kind == "lofi":
        d = out / "torch"
        d.mkdir(exist_ok=True)
        shutil.copy(base / "torch" / "configs.json", d / "configs.json")
        for part in PARTS:
            if part != "transformer":
                _link(base / "torch" / f"{part}.safetensors", d / f"{part}.safetensors")
        for f in ("tokenizer.json", "lyric_tokenizer.json", "ace_step.json"):
            _link(base / f, out / f)
        dst = d / "transformer.safetensors"
    else:
        d = out / UPSTREAM_DIRS["transformer"]
        d.mkdir(exist_ok=True)
        shutil.copy(base / UPSTREAM_DIRS["transformer"] / "config.json", d / "config.json")
        for part, sub in UPSTREAM_DIRS.items():
            if part != "transformer":
                _link(base / sub, out / sub)
        dst = d / "diffusion_pytorch_model.safetensors"
    save_file(tensors, str(dst))
    return dst


def _link(src: Path, dst: Path) -> None:
    if src.exists() and not dst.exists():
        dst.symlink_to(src.resolve())


def run(args) -> dict:
    from . import base as base_mod
    from . import env

    base = env.ace_step_dir(args.base)
    kind = base_mod.layout(base)
    adapter = Path(args.adapter).expanduser()
    if not adapter.exists():
        raise LoraError(f"{adapter} does not exist", FAILED_INPUT)
    out = Path(args.out).expanduser()
    if out.resolve() == base.resolve():
        raise LoraError("--out must not be the base model folder", USAGE)
    model = base_mod.load(base)["transformer"]
    state, n = merged_state(model, adapter, args.weight)
    merged = base_mod.load(base)["transformer"]
    merged.load_state_dict(state, strict=True)
    check = verify(model, merged, adapter, args.weight)
    if check["max_rel_error"] > check["tolerance"]:
        raise LoraError(
            f"merged model differs from the adapter applied by {check['max_rel_error']:.2e} "
            f"(float32 allows {check['tolerance']:.2e})",
            FAILED_INPUT,
        )
    result = {"adapter": str(adapter), "weight": args.weight, "modules_merged": n, "verification": check}
    if args.dry_run:
        return result
    dst = write_merged(base, kind, state, out)
    (out / "merge.json").write_text(json.dumps({**result, "base": str(base)}, indent=1))
    return {**result, "out": str(out), "weights": str(dst)}
