"""The base ACE-Step model lofi-lora trains on: the project's PyTorch modules (scripts/ace_step_torch), read from
either of two folders, and a clear diagnostic (exit code 3) when the folder is missing or holds the wrong weights.

* a lofi export with PyTorch weights (`torch/configs.json` + `torch/<part>.safetensors`, as
  scripts/export_ace_step.py writes for the tiny fixture), tokenizers beside it;
* the published upstream checkpoint (`ace_step_transformer/`, `umt5-base/`, `music_dcae_f8c8/`, `music_vocoder/`).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from .errors import ENVIRONMENT, LoraError

PARTS = ("text_encoder", "transformer", "dcae", "vocoder")
UPSTREAM_DIRS = {
    "text_encoder": "umt5-base",
    "transformer": "ace_step_transformer",
    "dcae": "music_dcae_f8c8",
    "vocoder": "music_vocoder",
}


def layout(base: Path) -> str:
    """ "lofi" or "upstream"; a LoraError (environment) naming what is missing otherwise."""
    base = Path(base)
    if (base / "torch" / "configs.json").is_file():
        return "lofi"
    if (base / "ace_step_transformer" / "config.json").is_file():
        return "upstream"
    raise LoraError(
        f"{base} is no ACE-Step base model: it holds neither torch/configs.json (a lofi export with PyTorch "
        "weights) nor ace_step_transformer/config.json (the published ACE-Step-v1-3.5B checkpoint)",
        ENVIRONMENT,
    )


def fingerprint(base: Path) -> str:
    """A cheap identity of the base transformer (config + weight file names and sizes), stored in checkpoints so a
    resume onto different base weights is refused."""
    base = Path(base)
    if layout(base) == "lofi":
        files = [base / "torch" / "configs.json", base / "torch" / "transformer.safetensors"]
    else:
        d = base / "ace_step_transformer"
        files = [d / "config.json", *sorted(d.glob("*.safetensors"))]
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode())
        h.update(str(f.stat().st_size).encode() if f.exists() else b"-")
    h.update((files[0]).read_bytes())
    return h.hexdigest()[:16]


def load(base: Path, parts: tuple[str, ...] = ("transformer",)) -> dict:
    """The requested parts as float32 modules in eval mode (loaded strictly: wrong weights are an error)."""
    import torch  # noqa: F401  (the train extra)

    kind = layout(base)
    out = {}
    for part in parts:
        try:
            out[part] = _load_lofi(Path(base), part) if kind == "lofi" else _load_upstream(Path(base), part)
        except (RuntimeError, KeyError, ValueError, OSError) as e:
            raise LoraError(
                f"{base}: the {part} weights do not fit the ACE-Step model: {e}", ENVIRONMENT
            ) from e
        out[part].eval().requires_grad_(False)  # float32: every loader builds or casts to it
    return out


def _load_lofi(base: Path, part: str):
    from safetensors.torch import load_model

    from scripts.ace_step_torch import build
    from scripts.export_ace_step import _tuples

    d = base / "torch"
    cfg = json.loads((d / "configs.json").read_text())[part]
    builder = {
        "text_encoder": build.build_text_encoder,
        "transformer": build.build_transformer,
        "dcae": lambda c: build.build_dcae(_tuples(c)),
        "vocoder": build.build_vocoder,
    }[part]
    model = builder(cfg)
    weights = d / f"{part}.safetensors"
    if not weights.is_file():
        raise OSError(f"{weights} is missing")
    load_model(model, str(weights), strict=True)
    return model


def _load_upstream(base: Path, part: str):
    from safetensors.torch import load_file

    from scripts.ace_step_torch import build

    d = base / UPSTREAM_DIRS[part]
    if part == "text_encoder":
        from transformers import UMT5EncoderModel

        return UMT5EncoderModel.from_pretrained(str(d), attn_implementation="eager")
    if part == "dcae":
        from diffusers import AutoencoderDC

        return AutoencoderDC.from_pretrained(str(d))
    cfg = {k: v for k, v in json.loads((d / "config.json").read_text()).items() if not k.startswith("_")}
    model = build.build_transformer(cfg) if part == "transformer" else build.build_vocoder(cfg)
    sd = {}
    for f in sorted(d.glob("*.safetensors")):
        sd.update(load_file(str(f)))
    if part == "vocoder":  # the checkpoint's mel front end is not part of the inference vocoder
        sd = {k: v for k, v in sd.items() if not k.startswith("mel_transform.")}
    model.load_state_dict(sd, strict=True)
    return model


def tokenizer_file(base: Path) -> Path:
    base = Path(base)
    for f in (base / "tokenizer.json", base / "umt5-base" / "tokenizer.json"):
        if f.is_file():
            return f
    raise LoraError(f"{base}: no UMT5 tokenizer.json (beside the model or in umt5-base/)", ENVIRONMENT)
