"""`lofi-lora evaluate` and `compare`: judge a trained adapter (or several checkpoints) by generating one clip per
style prompt with the base model + adapter, then

* integrity: the checkpoint's files hash to its manifest, the adapter parses and holds finite numbers;
* FAD of the generated clips against the validation audio (`--reference`), with an embedder from `--embedder`
  (fad.py) or CLAP's audio embeddings;
* CLAP: cosine similarity of each prompt with its clip (`--clap-model`), per style category;
* style coverage: the categories that got a clip.
`compare` evaluates each checkpoint on the same prompts, noise and references and names the best: the lowest FAD,
or without FAD the highest CLAP score.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np

from . import checkpoints
from .errors import FAILED_INPUT, USAGE, LoraError

log = logging.getLogger("lofi_lora.evaluate")

HELP = {
    "evaluate": "judge an adapter: checkpoint integrity, FAD against validation audio, CLAP prompt alignment",
    "compare": "evaluate several checkpoints on the same prompts and name the best",
}

# One prompt per style category (the taxonomy's five); `--prompts FILE` replaces them.
STYLE_PROMPTS = [
    {"category": "core", "prompt": "lofi hip hop, mellow piano, dusty drums, vinyl crackle, 80 bpm"},
    {"category": "seasonal", "prompt": "lofi, rainy autumn evening, warm rhodes, soft rain, 75 bpm"},
    {"category": "thematic", "prompt": "lofi, late night coding, calm synth pads, tape hiss, 70 bpm"},
    {"category": "instrumental", "prompt": "lofi jazz guitar, upright bass, brushed snare, 85 bpm"},
    {"category": "vocal", "prompt": "lofi, soft female humming, airy vocal chops, piano, 78 bpm"},
]
SAMPLE_RATE = 44100


def add_arguments(p, command: str) -> None:
    if command == "evaluate":
        p.add_argument("adapter", type=Path, help="checkpoint folder or LoRA file")
    else:
        p.add_argument("adapters", type=Path, nargs="+", help="checkpoint folders or LoRA files")
    p.add_argument("--base", type=Path, help="base ACE-Step model (else $LOFI_ACE_STEP_DIR)")
    p.add_argument("--reference", type=Path, help="validation audio folder (for FAD)")
    p.add_argument("--embedder", type=Path, help="FAD embedder: a .py file with SAMPLE_RATE and embed(wave)")
    p.add_argument("--clap-model", type=Path, help="a local transformers CLAP model folder")
    p.add_argument(
        "--prompts", type=Path, help='JSON list of {"category", "prompt"} (default: one per style)'
    )
    p.add_argument("--seconds", type=float, default=10.0, help="length of each generated clip")
    p.add_argument("--steps", type=int, default=27, help="sampler steps per clip")
    p.add_argument("--weight", type=float, default=1.0, help="LoRA strength")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, help="also write the generated clips here")


# ---------------------------------------------------------------- integrity


def adapter_file(path: Path) -> Path:
    from .install import WEIGHTS_NAME

    return path / WEIGHTS_NAME if path.is_dir() else path


def integrity(path: Path) -> list[str]:
    """What is wrong with a checkpoint or adapter (empty when intact)."""
    from lofi_daemon.backends.ace_step.lora import is_lora_file, read_lora

    path = Path(path)
    if not path.exists():
        return [f"{path} does not exist"]
    problems = []
    if path.is_dir() and (path.parent / checkpoints.MANIFEST).is_file():
        problems += checkpoints.problems(path)
    file = adapter_file(path)
    if not is_lora_file(file):
        return problems + [f"{file.name} is not a readable LoRA file"]
    try:
        pairs, _ = read_lora(file)
    except Exception as e:  # safetensors raises its own error type for a body cut short
        return problems + [f"{file.name} does not read: {e}"]
    bad = [m for m, (a, b) in pairs.items() if not (np.isfinite(a).all() and np.isfinite(b).all())]
    if bad:
        problems.append(f"non-finite values in {len(bad)} modules (e.g. {bad[0]})")
    return problems


# ---------------------------------------------------------------- generation


def load_prompts(path: Path | None) -> list[dict]:
    if path is None:
        return STYLE_PROMPTS
    try:
        items = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise LoraError(f"{path}: {e}", USAGE) from e
    if not isinstance(items, list) or not all(
        isinstance(i, dict) and isinstance(i.get("prompt"), str) and isinstance(i.get("category"), str)
        for i in items
    ):
        raise LoraError(f'{path} must be a JSON list of {{"category": …, "prompt": …}}', USAGE)
    return items


class Generator:
    """The base model's PyTorch parts and tokenizers; `clips(adapter)` renders every prompt with an adapter applied
    (diffusers/peft, as upstream loads one) through the project's reference sampler (Euler + APG, upstream's
    defaults otherwise), always from the same noise."""

    def __init__(self, base: Path, seconds: float, steps: int, seed: int) -> None:
        from lofi_daemon.backends.ace_step.text import PromptTokenizer

        from . import base as base_mod

        self.models = base_mod.load(base, ("text_encoder", "transformer", "dcae", "vocoder"))
        self.tokenizer = PromptTokenizer(base_mod.tokenizer_file(base))
        self.frames = max(1, math.ceil(seconds * SAMPLE_RATE / 4096))
        self.steps = steps
        self.seed = seed

    def clips(self, adapter: Path | None, weight: float, prompts: list[dict]) -> list[np.ndarray]:
        """One clip per prompt ([samples, 2] at 44.1 kHz). The adapter is loaded into the one base transformer
        and deleted afterwards (no second copy of a 14 GB model)."""
        import torch
        from diffusers.utils.peft_utils import set_weights_and_activate_adapters

        from scripts.ace_step_torch import reference as ref

        dit = self.models["transformer"]
        if adapter is not None:
            file = adapter_file(adapter)
            dit.load_lora_adapter(
                str(file.parent), weight_name=file.name, adapter_name="evaluated", prefix=None
            )
            set_weights_and_activate_adapters(dit, ["evaluated"], [weight])
        try:
            out = []
            for i, item in enumerate(prompts):
                ids, mask = self.tokenizer(item["prompt"])
                no_lyrics = np.zeros((1, 1), np.int64)
                cond, uncond, cmask = ref.conditions(self.models, ids, mask, no_lyrics, no_lyrics)
                g = torch.Generator().manual_seed(self.seed + i)
                noise = torch.randn((1, 8, 16, self.frames), generator=g)
                latents, _ = ref.sample(self.models, cond, uncond, cmask, noise, self.steps)
                out.append(ref.latents_to_wave(self.models, latents).numpy().T)  # [samples, 2]
            return out
        finally:
            if adapter is not None:
                dit.delete_adapters("evaluated")


# ---------------------------------------------------------------- scoring


class Judge:
    """FAD reference statistics and the CLAP model, loaded once for every adapter judged."""

    def __init__(self, reference: Path | None, embedder_path: Path | None, clap_path: Path | None) -> None:
        from . import fad

        self.clap = None
        if clap_path is not None:
            from .clap import Clap

            self.clap = Clap(clap_path)
        self.embedder = fad.load_embedder(embedder_path) if embedder_path else None
        if self.embedder is None and self.clap is not None:
            self.embedder = self.clap.embedder()
        self.reference = None
        if reference is not None:
            if self.embedder is None:
                raise LoraError("FAD needs --embedder or --clap-model", USAGE)
            self.reference = fad.embed_files(self.embedder, fad.audio_files(reference))

    def score(self, prompts: list[dict], clips: list[np.ndarray]) -> dict:
        from . import fad

        waves = [(c, SAMPLE_RATE) for c in clips]
        result: dict = {"fad": None, "clap": None, "clap_by_category": {}, "embedder": None}
        if self.reference is not None and self.embedder is not None:
            result["fad"] = fad.fad(fad.embed_waves(self.embedder, waves), self.reference)
            result["embedder"] = self.embedder.name
        if self.clap is not None:
            s = self.clap.scores([p["prompt"] for p in prompts], waves)
            result["clap"] = float(s.mean())
            by: dict[str, list[float]] = {}
            for p, v in zip(prompts, s, strict=True):
                by.setdefault(p["category"], []).append(float(v))
            result["clap_by_category"] = {k: float(np.mean(v)) for k, v in sorted(by.items())}
        cats = sorted({p["category"] for p in prompts})
        result["style_coverage"] = {"categories": cats, "clips": len(clips)}
        return result


def evaluate_one(path: Path, gen: Generator, judge: Judge, prompts: list[dict], args) -> dict:
    problems = integrity(path)
    entry: dict = {"adapter": str(path), "integrity": {"ok": not problems, "problems": problems}}
    if problems:
        return entry
    clips = gen.clips(path, args.weight, prompts)
    entry.update(judge.score(prompts, clips))
    if args.out:
        import soundfile as sf

        folder = Path(args.out) / path.name
        folder.mkdir(parents=True, exist_ok=True)
        for i, (p, c) in enumerate(zip(prompts, clips, strict=True)):
            sf.write(str(folder / f"{i:02d}-{p['category']}.wav"), c, SAMPLE_RATE)
        entry["clips_dir"] = str(folder)
    return entry


def best_of(entries: list[dict]) -> str | None:
    ok = [e for e in entries if e["integrity"]["ok"]]
    with_fad = [e for e in ok if e.get("fad") is not None]
    if with_fad:
        return min(with_fad, key=lambda e: e["fad"])["adapter"]
    with_clap = [e for e in ok if e.get("clap") is not None]
    return max(with_clap, key=lambda e: e["clap"])["adapter"] if with_clap else None


def run(args) -> dict:
    from . import base as base_mod
    from . import env

    paths = [args.adapter] if args.command == "evaluate" else list(args.adapters)
    base = env.ace_step_dir(args.base)
    base_mod.layout(base)
    prompts = load_prompts(args.prompts)
    if args.seconds <= 0 or args.steps < 1:
        raise LoraError("--seconds and --steps must be positive", USAGE)
    if args.dry_run:
        return {
            "adapters": [str(p) for p in paths],
            "prompts": len(prompts),
            "integrity": {str(p): integrity(p) for p in paths},
        }
    from tqdm import tqdm

    judge = Judge(args.reference, args.embedder, args.clap_model)
    gen = Generator(base, args.seconds, args.steps, args.seed)
    entries = [evaluate_one(Path(p), gen, judge, prompts, args) for p in tqdm(paths, disable=args.quiet)]
    if args.command == "evaluate":
        if not entries[0]["integrity"]["ok"]:
            raise LoraError(f"{paths[0]}: {'; '.join(entries[0]['integrity']['problems'])}", FAILED_INPUT)
        return entries[0]
    best = best_of(entries)
    if best is None:
        raise LoraError(
            "no checkpoint could be judged (all torn, or neither FAD nor CLAP asked for)", FAILED_INPUT
        )
    return {"checkpoints": entries, "best": best}
