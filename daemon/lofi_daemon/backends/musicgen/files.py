"""Where a MusicGen's files are: a local directory in one of the three known layouts, or a hub variant.

Local directory layouts (all the optimum export):
* flat       — `text_encoder.onnx`, `decoder_model_merged[_sfx].onnx` (or the split pair), `encodec_decode.onnx`,
               `tokenizer.json`, `config.json` [, `generation_config.json`] in one folder (our builder's output)
* xenova     — Xenova/musicgen-small: tokenizer/config at the root, ONNX in `onnx/` with dtype suffixes
* gabotechs  — gabotechs/music_gen: tokenizer/config in `small/`, ONNX in `small_fp32/`, `small_i8/`, `small_fp16/`

The decoder precision is chosen by preference: the requested variant's dtype first, then (CPU) int8 → 4-bit →
fp32 → fp16, (GPU) fp16 → fp32 → int8 → 4-bit. fp16 is only a last resort on CPU (4× slower than fp32 there).
"""

from __future__ import annotations

from pathlib import Path

from ...models.local import LocalLayout
from ...models.registry import MUSICGEN_VARIANTS

# file-name suffixes of the Xenova/optimum dtype variants, and gabotechs' folders
SUFFIXES = {"int8": ("_quantized", "_int8", "_uint8"), "q4": ("_q4",), "fp32": ("",), "fp16": ("_fp16",)}
GABOTECHS_FOLDERS = {"int8": ("small_i8",), "q4": (), "fp32": ("small_fp32",), "fp16": ("small_fp16",)}
CPU_ORDER = ("int8", "q4", "fp32", "fp16")
GPU_ORDER = ("fp16", "fp32", "int8", "q4")
DTYPE_ALIASES = {"int8": "int8", "i8": "int8", "quantized": "int8", "q4": "q4", "int4": "q4", "fp32": "fp32"}
DTYPE_ALIASES["fp16"] = "fp16"

DECODER_FORMS = (("decoder_merged",), ("decoder", "decoder_with_past"))
DECODER_FILES = {
    "decoder_merged": "decoder_model_merged",
    "decoder": "decoder_model",
    "decoder_with_past": "decoder_with_past_model",
}


def dtype_order(requested: str | None, provider: str) -> tuple[str, ...]:
    """Decoder dtypes to look for, best first. `requested` may be a registry variant name or a dtype."""
    base = CPU_ORDER if provider == "cpu" else GPU_ORDER
    want = None
    if requested:
        if requested in MUSICGEN_VARIANTS:
            want = MUSICGEN_VARIANTS[requested].dtype
        else:
            want = DTYPE_ALIASES.get(requested.lower())
    return ((want,) + tuple(d for d in base if d != want)) if want else base


def local_layouts(requested: str | None, provider: str) -> list[LocalLayout]:
    order = dtype_order(requested, provider)
    # text encoder / EnCodec: full precision on CPU (fp16 ones are slow there), fp16 first on GPUs when asked
    aux_order = ("fp16", "fp32") if order[0] == "fp16" else ("fp32", "fp16")

    def names(stem: str, prefix: str = "", dtypes: tuple[str, ...] = order) -> tuple[str, ...]:
        return tuple(f"{prefix}{stem}{sfx}.onnx" for d in dtypes for sfx in SUFFIXES[d])

    def decoder_roles(prefix: str) -> dict[str, tuple[str, ...]]:
        return {role: names(stem, prefix) for role, stem in DECODER_FILES.items()}

    def aux_roles(prefix: str) -> dict[str, tuple[str, ...]]:
        return {
            "text_encoder": names("text_encoder", prefix, aux_order),
            "encodec_decode": names("encodec_decode", prefix, aux_order),
        }

    common = {"tokenizer": ("tokenizer.json",), "config": ("config.json",)}
    optional = {"generation_config": ("generation_config.json",)}
    required = ("tokenizer", "config", "text_encoder", "encodec_decode")

    gabo_dec = {
        role: tuple(f"{folder}/{stem}.onnx" for d in order for folder in GABOTECHS_FOLDERS[d])
        for role, stem in DECODER_FILES.items()
    }
    gabo_aux = {
        role: tuple(f"{folder}/{role}.onnx" for d in aux_order for folder in GABOTECHS_FOLDERS[d])
        for role in ("text_encoder", "encodec_decode")
    }
    return [
        LocalLayout(
            "flat",
            "text_encoder.onnx",
            {**common, **optional, **aux_roles(""), **decoder_roles("")},
            required,
            DECODER_FORMS,
        ),
        LocalLayout(
            "xenova",
            "onnx",
            {**common, **optional, **aux_roles("onnx/"), **decoder_roles("onnx/")},
            required,
            DECODER_FORMS,
        ),
        LocalLayout(
            "gabotechs",
            "small",
            {
                "tokenizer": ("small/tokenizer.json",),
                "config": ("small/config.json",),
                "generation_config": ("small/generation_config.json",),
                **gabo_aux,
                **gabo_dec,
            },
            required,
            DECODER_FORMS,
        ),
    ]


def pick_decoder(found: dict[str, Path]) -> dict[str, Path]:
    """Keep one decoder form: the merged file when present (measured: same speed, less RAM), else the split pair."""
    if "decoder_merged" in found:
        return {k: v for k, v in found.items() if k not in ("decoder", "decoder_with_past")}
    return {k: v for k, v in found.items() if k != "decoder_merged"}


def decoder_dtype(path_name: str) -> str:
    """The precision of a decoder file from its name (Xenova suffix or gabotechs folder)."""
    for d, folders in GABOTECHS_FOLDERS.items():
        if any(f"{folder}/" in path_name for folder in folders) and d != "fp32":
            return d
    stem = path_name.rsplit("/", 1)[-1].removesuffix(".onnx")
    for d in ("int8", "q4", "fp16"):
        if any(sfx and stem.endswith(sfx) for sfx in SUFFIXES[d]):
            return d
    return "fp32"
