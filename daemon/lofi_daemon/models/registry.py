"""Known downloadable model variants: which hub repo, which files (with sizes/hashes when known), which
providers each suits, and the `model_version` string that enters track identity.

Sizes and hashes: the hub cannot be reached from where this was written, so exact byte sizes and sha256 of the
real files are not known; `size` / `sha256` are None then and only the approximate size from the hub listing
(`approx_size`) is kept for progress estimates. When a value is known it is
checked after download. Never invent a hash here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

MB = 1_000_000


@dataclass(frozen=True)
class ModelFile:
    role: str  # what the backend uses it for, e.g. "text_encoder", "decoder_merged", "tokenizer"
    path: str  # path inside the repo
    approx_size: int | None = None  # from the hub listing; for progress totals only
    size: int | None = None  # exact bytes when known (checked)
    sha256: str | None = None  # when known (checked)


@dataclass(frozen=True)
class ModelVariant:
    backend: str
    name: str  # e.g. "small-int8"
    description: str
    repo_id: str
    revision: str  # a branch or commit; part of model_version
    files: tuple[ModelFile, ...]
    dtype: str  # "fp32" | "fp16" | "int8" | "q4"
    providers: tuple[str, ...]  # providers this variant is meant for ("cpu", "cuda", "coreml")
    version_tag: str  # stable name of the weights, e.g. "musicgen-small-int8"
    extra: dict = field(default_factory=dict)
    # The 40-hex commit of `revision` the files were checked against. When set, downloads ask for exactly this
    # commit and refuse anything else the hub answers. None until a real hash has been looked up on the hub
    # (`huggingface-cli` / the repo's "History" page) — never fill in a guessed one. Not part of model_version,
    # so pinning does not change the identity of tracks already made.
    commit: str | None = None

    @property
    def fetch_revision(self) -> str:
        """What downloads ask the hub for: the pinned commit when known, else the branch."""
        return self.commit or self.revision

    @property
    def model_version(self) -> str:
        return f"{self.version_tag}-{self.revision}"

    def file(self, role: str) -> ModelFile | None:
        for f in self.files:
            if f.role == role:
                return f
        return None

    @property
    def approx_total(self) -> int:
        return sum(f.approx_size or f.size or 0 for f in self.files)


def _gabotechs(
    folder: str, decoder: str, *, text_encoder_folder: str = "small_fp32"
) -> tuple[ModelFile, ...]:
    """gabotechs/music_gen: tokenizer/config in `small/`, ONNX per variant folder (int8 reuses fp32's encoder and
    EnCodec, as MusicGPT does)."""
    sizes = {
        "small_fp32/text_encoder.onnx": 439 * MB,
        "small_fp32/encodec_decode.onnx": 118 * MB,
        "small_fp32/decoder_model_merged.onnx": 1690 * MB,
        "small_fp16/text_encoder.onnx": 219 * MB,
        "small_fp16/encodec_decode.onnx": 59 * MB,
        "small_fp16/decoder_model.onnx": 846 * MB,
        "small_fp16/decoder_with_past_model.onnx": 744 * MB,
        "small_i8/decoder_model_merged.onnx": 426
        * MB,  # not in the listing seen; Xenova's int8 merged is 426 MB
    }
    common = (
        ModelFile("tokenizer", "small/tokenizer.json", approx_size=2_420_000),
        ModelFile("config", "small/config.json", approx_size=7_800),
        ModelFile("generation_config", "small/generation_config.json", approx_size=300),
    )
    te = f"{text_encoder_folder}/text_encoder.onnx"
    ec = f"{text_encoder_folder}/encodec_decode.onnx"
    onnx = [ModelFile("text_encoder", te, sizes.get(te)), ModelFile("encodec_decode", ec, sizes.get(ec))]
    if decoder == "merged":
        p = f"{folder}/decoder_model_merged.onnx"
        onnx.append(ModelFile("decoder_merged", p, sizes.get(p)))
    else:
        for role, fname in (
            ("decoder", "decoder_model.onnx"),
            ("decoder_with_past", "decoder_with_past_model.onnx"),
        ):
            p = f"{folder}/{fname}"
            onnx.append(ModelFile(role, p, sizes.get(p)))
    return common + tuple(onnx)


def _xenova(suffix: str, decoder_size: int, *, fp16_io: bool = False) -> tuple[ModelFile, ...]:
    """Xenova/musicgen-small: tokenizer/config at the root, ONNX in `onnx/` with a dtype suffix."""
    enc_suffix = "_fp16" if fp16_io else ""
    return (
        ModelFile("tokenizer", "tokenizer.json", approx_size=2_420_000),
        ModelFile("config", "config.json", approx_size=7_800),
        ModelFile("generation_config", "generation_config.json", approx_size=300),
        ModelFile("text_encoder", f"onnx/text_encoder{enc_suffix}.onnx", (219 if fp16_io else 439) * MB),
        ModelFile("encodec_decode", f"onnx/encodec_decode{enc_suffix}.onnx", (59 if fp16_io else 118) * MB),
        ModelFile("decoder_merged", f"onnx/decoder_model_merged{suffix}.onnx", decoder_size),
    )


GABOTECHS = "gabotechs/music_gen"
XENOVA = "Xenova/musicgen-small"
# The commits could not be looked up offline; "main" is what MusicGPT downloads. Pin a variant with
# `commit=` once its real 40-hex commit is known (see ModelVariant.commit).
REVISION = "main"

MUSICGEN_VARIANTS: dict[str, ModelVariant] = {
    v.name: v
    for v in (
        ModelVariant(
            "musicgen",
            "small-int8",
            "musicgen-small, 8-bit decoder (gabotechs small_i8), fp32 text encoder and EnCodec; CPU default",
            GABOTECHS,
            REVISION,
            _gabotechs("small_i8", "merged"),
            "int8",
            ("cpu", "cuda", "coreml"),
            "musicgen-small-int8",
        ),
        ModelVariant(
            "musicgen",
            "small-fp32",
            "musicgen-small, full-precision merged decoder (gabotechs small_fp32); ~2.3x slower than int8 on CPU",
            GABOTECHS,
            REVISION,
            _gabotechs("small_fp32", "merged"),
            "fp32",
            ("cpu", "cuda", "coreml"),
            "musicgen-small-fp32",
        ),
        ModelVariant(
            "musicgen",
            "small-fp16",
            "musicgen-small, fp16 split decoder (gabotechs small_fp16); for CUDA/CoreML only (4x slower on CPU)",
            GABOTECHS,
            REVISION,
            _gabotechs("small_fp16", "split", text_encoder_folder="small_fp16"),
            "fp16",
            ("cuda", "coreml"),
            "musicgen-small-fp16",
        ),
        ModelVariant(
            "musicgen",
            "xenova-small-quantized",
            "musicgen-small, transformers.js 8-bit merged decoder (Xenova onnx/*_quantized)",
            XENOVA,
            REVISION,
            _xenova("_quantized", 426 * MB),
            "int8",
            ("cpu", "cuda", "coreml"),
            "musicgen-small-xenova-quantized",
        ),
        ModelVariant(
            "musicgen",
            "xenova-small-q4",
            "musicgen-small, transformers.js 4-bit merged decoder (Xenova onnx/*_q4)",
            XENOVA,
            REVISION,
            _xenova("_q4", 302 * MB),
            "q4",
            ("cpu",),
            "musicgen-small-xenova-q4",
        ),
        ModelVariant(
            "musicgen",
            "xenova-small-fp32",
            "musicgen-small, transformers.js full-precision merged decoder",
            XENOVA,
            REVISION,
            _xenova("", 1690 * MB),
            "fp32",
            ("cpu", "cuda", "coreml"),
            "musicgen-small-xenova-fp32",
        ),
        ModelVariant(
            "musicgen",
            "xenova-small-fp16",
            "musicgen-small, transformers.js fp16 files; for CUDA/CoreML only",
            XENOVA,
            REVISION,
            _xenova("_fp16", 848 * MB, fp16_io=True),
            "fp16",
            ("cuda", "coreml"),
            "musicgen-small-xenova-fp16",
        ),
    )
}

VARIANTS: dict[str, dict[str, ModelVariant]] = {"musicgen": MUSICGEN_VARIANTS}

# Best default per provider: 8-bit on CPU (fastest there, and fp16 is slower than fp32 on CPUs); fp16 only on GPUs.
DEFAULTS: dict[str, dict[str, str]] = {
    "musicgen": {"cpu": "small-int8", "cuda": "small-fp16", "coreml": "small-fp16"},
}


def variants(backend: str) -> dict[str, ModelVariant]:
    return VARIANTS.get(backend, {})


def default_variant(backend: str, provider: str) -> ModelVariant:
    """The variant to use when the user did not pick one; never an fp16 variant on CPU."""
    name = DEFAULTS[backend].get(provider, DEFAULTS[backend]["cpu"])
    return VARIANTS[backend][name]


def get_variant(backend: str, name: str | None, provider: str = "cpu") -> ModelVariant:
    from ..errors import ErrorCode, LofiError

    if not name:
        return default_variant(backend, provider)
    try:
        return VARIANTS[backend][name]
    except KeyError:
        known = ", ".join(sorted(VARIANTS.get(backend, {})))
        raise LofiError(
            ErrorCode.MODEL_NOT_FOUND,
            f"unknown {backend} model variant '{name}' (known: {known})",
            variant=name,
        ) from None


# ---- ACE-Step -----------------------------------------------------------------------------------------------
# The only published ONNX export is lofi.nvim's (hub willibrandon/lofi-models, folder ace-step/; sizes from its
# README). It is the "reference" layout: it runs at lower fidelity (no ERG, fixed
# 128-frame DCAE, mono vocoder input; backends/ace_step/layout.py). The faithful "lofi" layout is produced
# locally from the PyTorch checkpoint by scripts/export_ace_step.py and used through models.ace_step.dir.
LOFI_MODELS = "willibrandon/lofi-models"
ACE_STEP_VARIANTS: dict[str, ModelVariant] = {
    "lofi-nvim-fp32": ModelVariant(
        "ace_step",
        "lofi-nvim-fp32",
        "ACE-Step v1 3.5B, lofi.nvim's fp32 ONNX export (reference layout: no ERG, fixed-window DCAE, mono "
        "vocoder input) — about 12.3 GB",
        LOFI_MODELS,
        REVISION,
        (
            ModelFile("tokenizer", "ace-step/tokenizer.json", approx_size=16_800_000),
            ModelFile("text_encoder", "ace-step/text_encoder.onnx", approx_size=1130 * MB),
            ModelFile("transformer_encoder", "ace-step/transformer_encoder.onnx", approx_size=424 * MB),
            ModelFile("transformer_decoder", "ace-step/transformer_decoder.onnx", approx_size=35_700_000),
            ModelFile(
                "transformer_decoder_weights",
                "ace-step/transformer_decoder_weights.bin",
                approx_size=9970 * MB,
            ),
            ModelFile("dcae_decoder", "ace-step/dcae_decoder.onnx", approx_size=317 * MB),
            ModelFile("vocoder", "ace-step/vocoder.onnx", approx_size=412 * MB),
        ),
        "fp32",
        ("cpu", "cuda", "coreml"),
        "ace-step-v1-lofi-nvim-fp32",
    )
}
VARIANTS["ace_step"] = ACE_STEP_VARIANTS
DEFAULTS["ace_step"] = {"cpu": "lofi-nvim-fp32", "cuda": "lofi-nvim-fp32", "coreml": "lofi-nvim-fp32"}


# ---- Riffusion ----------------------------------------------------------------------------------------------
# riffusion/riffusion-model-v1 publishes PyTorch weights in the diffusers layout only; no public plain-ONNX export
# of it was found (Qualcomm AI Hub's "Riffusion" is a device-compiled asset, not an ONNX repo), so the daemon runs
# a local export made once by scripts/export_riffusion.py --model <this download> (LOFI_RIFFUSION_DIR). The file
# names are the diffusers layout of the repo's first release and the sizes SD-1.5's fp32 sizes; neither could be
# checked against the hub from here, so nothing exact is recorded.
RIFFUSION_REPO = "riffusion/riffusion-model-v1"
RIFFUSION_VARIANTS: dict[str, ModelVariant] = {
    "v1-diffusers": ModelVariant(
        "riffusion",
        "v1-diffusers",
        "Riffusion v1 (SD-1.5 fine-tune), PyTorch weights in the diffusers layout; needs a one-time ONNX export "
        "(lofi-daemon convert riffusion) — about 4.3 GB",
        RIFFUSION_REPO,
        REVISION,
        (
            ModelFile("model_index", "model_index.json", approx_size=600),
            ModelFile("scheduler", "scheduler/scheduler_config.json", approx_size=400),
            ModelFile("tokenizer_vocab", "tokenizer/vocab.json", approx_size=1_060_000),
            ModelFile("tokenizer_merges", "tokenizer/merges.txt", approx_size=525_000),
            ModelFile("tokenizer_config", "tokenizer/tokenizer_config.json", approx_size=800),
            ModelFile("tokenizer_special", "tokenizer/special_tokens_map.json", approx_size=500),
            ModelFile("text_encoder_config", "text_encoder/config.json", approx_size=600),
            ModelFile("text_encoder", "text_encoder/pytorch_model.bin", approx_size=492 * MB),
            ModelFile("unet_config", "unet/config.json", approx_size=1_000),
            ModelFile("unet", "unet/diffusion_pytorch_model.bin", approx_size=3438 * MB),
            ModelFile("vae_config", "vae/config.json", approx_size=600),
            ModelFile("vae", "vae/diffusion_pytorch_model.bin", approx_size=335 * MB),
        ),
        "fp32",
        ("cpu", "cuda", "coreml"),
        "riffusion-v1",
    )
}
VARIANTS["riffusion"] = RIFFUSION_VARIANTS
DEFAULTS["riffusion"] = {"cpu": "v1-diffusers", "cuda": "v1-diffusers", "coreml": "v1-diffusers"}
