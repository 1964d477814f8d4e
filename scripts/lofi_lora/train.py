"""`lofi-lora train`: a LoRA on ACE-Step's DiT with upstream's training semantics, on the project's PyTorch model.

Upstream (ace-step/ACE-Step `trainer.py`), kept exactly:
* LoRA (peft) r 256, α 32, rsLoRA on the DiT attention `to_q, to_k, to_v, to_out.0`; the lyric Conformer's
  `linear_q/k/v` with `--train-lyrics`, `speaker_embedder` with `--train-speaker`;
* flow matching: x_t = σ·ε + (1−σ)·x0 with σ from FlowMatchEulerDiscrete (1000 steps, shift 3) at a logit-normal
  index; the prediction is preconditioned to x0 (pred·(−σ) + x_t) and compared with x0 by masked MSE;
* condition dropout per sample: text states 15 %, speaker 50 %, lyrics (ids and mask) 15 %;
* AdamW lr 1e-4, weight decay 1e-2, betas (0.8, 0.9); 10 linear warm-up steps then linear decay to 0 at the last
  step; gradient-norm clip 0.5.
Left out: upstream's REPA loss against MERT/mHuBERT (ssl_coeff), which needs two more large models.

Ours: features are precomputed (features.py); bf16 autocast where the device has it (CUDA, CPUs with AMX or
AVX-512-BF16), fp32 otherwise; gradient checkpointing; one seeded generator drives the data order, noise,
timesteps and dropout, and is checkpointed with the optimizer and scheduler, so a resumed run continues
bit-for-bit; metrics go to metrics.jsonl and TensorBoard event files.
"""

from __future__ import annotations

import json
import logging
import math
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import checkpoints
from .errors import FAILED_INPUT, USAGE, LoraError

log = logging.getLogger("lofi_lora.train")

HELP = {"train": "train a LoRA on ACE-Step's DiT from precomputed features (upstream's loss and schedule)"}

ADAPTER = "lofi"
DIT_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]
LYRIC_TARGETS = ["linear_q", "linear_k", "linear_v"]
SPEAKER_TARGETS = ["speaker_embedder"]
STATE_FILE = "training_state.pt"
ADAPTER_FILE = "pytorch_lora_weights.safetensors"
NUM_TRAIN_TIMESTEPS = 1000


@dataclass
class TrainConfig:
    steps: int = 20000
    batch_size: int = 1
    rank: int = 256
    alpha: float = 32.0
    rslora: bool = True
    train_lyrics: bool = False
    train_speaker: bool = False
    lr: float = 1e-4
    weight_decay: float = 1e-2
    betas: tuple[float, float] = (0.8, 0.9)
    warmup: int = 10
    clip: float = 0.5
    shift: float = 3.0
    logit_mean: float = 0.0
    logit_std: float = 1.0
    dropout: dict[str, float] = field(default_factory=lambda: {"text": 0.15, "speaker": 0.5, "lyrics": 0.15})
    seed: int = 0
    precision: str = "auto"  # auto | fp32 | bf16
    gradient_checkpointing: bool = True

    def targets(self) -> list[str]:
        return (
            DIT_TARGETS
            + (LYRIC_TARGETS if self.train_lyrics else [])
            + (SPEAKER_TARGETS if self.train_speaker else [])
        )


# ---------------------------------------------------------------- device and precision


def cpu_has_bf16(cpuinfo: str | None = None) -> bool:
    """True when the CPU computes bf16 natively (AMX-BF16 or AVX-512-BF16 in /proc/cpuinfo's flags)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return False
    flags = {
        f for line in cpuinfo.splitlines() if line.startswith("flags") for f in line.split(":", 1)[1].split()
    }
    return bool(flags & {"amx_bf16", "avx512_bf16"})


def pick_precision(requested: str, device: str) -> str:
    import torch

    supported = torch.cuda.is_bf16_supported() if device == "cuda" else cpu_has_bf16()
    if requested == "bf16" and not supported:
        raise LoraError(
            f"bf16 was asked for but this {device} has no native bf16; use --precision fp32", USAGE
        )
    if requested == "auto":
        return "bf16" if supported else "fp32"
    return requested


def autocast(device: str, precision: str):
    import torch

    if precision == "bf16":
        return torch.autocast(device_type=device, dtype=torch.bfloat16)
    return nullcontext()


# ---------------------------------------------------------------- upstream's flow-matching objective


def flow_schedule(shift: float, n: int = NUM_TRAIN_TIMESTEPS):
    """FlowMatchEulerDiscreteScheduler(num_train_timesteps=n, shift) at construction: (timesteps, sigmas)."""
    import numpy as np
    import torch

    t = np.linspace(1, n, n, dtype=np.float32)[::-1].copy()
    s = torch.from_numpy(t / n)
    s = shift * s / (1 + (shift - 1) * s)
    return s * n, s


def sample_timesteps(gen, bsz: int, cfg: TrainConfig, schedule):
    """Logit-normal index into the shifted schedule (upstream `get_timestep` + `get_sd3_sigmas`)."""
    import torch

    timesteps, sigmas = schedule
    u = torch.sigmoid(torch.normal(cfg.logit_mean, cfg.logit_std, size=(bsz,), generator=gen))
    idx = torch.clamp((u * NUM_TRAIN_TIMESTEPS).long(), 0, NUM_TRAIN_TIMESTEPS - 1)
    return timesteps[idx], sigmas[idx]


def collate(samples: list[dict]) -> dict:
    """Pad a batch to its longest latents, text and lyrics; masks mark the real entries."""
    import torch

    def pad(key, length, dim):
        out = []
        for s in samples:
            x = s[key]
            widths = [0, 0] * (x.ndim - 1 - dim) + [0, length - x.shape[dim]]
            out.append(torch.nn.functional.pad(x, widths))
        return torch.stack(out)

    frames = max(s["latents"].shape[-1] for s in samples)
    tokens = max(s["text_states"].shape[0] for s in samples)
    lyric = max(s["lyric_ids"].shape[0] for s in samples)
    attention = torch.zeros(len(samples), frames)
    for i, s in enumerate(samples):
        attention[i, : s["latents"].shape[-1]] = 1.0
    return {
        "latents": pad("latents", frames, 2).float(),
        "attention_mask": attention,
        "text_states": pad("text_states", tokens, 0).float(),
        "text_mask": pad("text_mask", tokens, 0).long(),
        "lyric_ids": pad("lyric_ids", lyric, 0).long(),
        "lyric_mask": pad("lyric_mask", lyric, 0).long(),
        "speaker_emb": torch.stack([s["speaker_emb"] for s in samples]).float(),
    }


def drop_conditions(batch: dict, gen, dropout: dict[str, float]) -> dict:
    """Upstream's classifier-free-guidance dropout, drawn in its order: text, speaker, lyrics."""
    import torch

    bsz = batch["latents"].shape[0]
    keep = {k: torch.rand(bsz, generator=gen) >= dropout[k] for k in ("text", "speaker", "lyrics")}
    out = dict(batch)
    out["text_states"] = batch["text_states"] * keep["text"][:, None, None]
    out["speaker_emb"] = batch["speaker_emb"] * keep["speaker"][:, None]
    out["lyric_ids"] = batch["lyric_ids"] * keep["lyrics"][:, None]
    out["lyric_mask"] = batch["lyric_mask"] * keep["lyrics"][:, None]
    return out


def flow_loss(model, batch: dict, gen, cfg: TrainConfig, schedule, device: str, precision: str):
    import torch
    import torch.nn.functional as F

    batch = drop_conditions(batch, gen, cfg.dropout)
    x0 = batch["latents"]
    bsz = x0.shape[0]
    noise = torch.randn(x0.shape, generator=gen)
    timesteps, sigmas = sample_timesteps(gen, bsz, cfg, schedule)
    sigmas = sigmas.view(bsz, 1, 1, 1)
    xt = sigmas * noise + (1.0 - sigmas) * x0
    b = {k: v.to(device) for k, v in batch.items()}
    xt, sigmas, timesteps, x0 = xt.to(device), sigmas.to(device), timesteps.to(device), x0.to(device)
    with autocast(device, precision):
        states, states_mask = model.encode(
            b["text_states"], b["text_mask"], b["speaker_emb"], b["lyric_ids"], b["lyric_mask"]
        )
        pred = model.decode(xt, b["attention_mask"], states, states_mask, timesteps)
    pred = pred.float() * (-sigmas) + xt  # precondition to an x0 estimate
    mask = b["attention_mask"][:, None, None, :].expand_as(x0)
    per_sample = F.mse_loss((pred * mask).reshape(bsz, -1), (x0 * mask).reshape(bsz, -1), reduction="none")
    return (per_sample.mean(1) * mask.reshape(bsz, -1).mean(1)).mean()


def lr_lambda(warmup: int, steps: int):
    def f(step: int) -> float:
        if step < warmup:
            return step / max(1, warmup)
        return max(0.0, 1.0 - (step - warmup) / max(1, steps - warmup))

    return f


# ---------------------------------------------------------------- the trainer


def attach_lora(model, cfg: TrainConfig):
    """peft LoRA on the targets; only the adapter trains. B starts at zero (peft's init): step 0 is the base."""
    from peft import LoraConfig

    model.requires_grad_(False)
    model.add_adapter(
        LoraConfig(r=cfg.rank, lora_alpha=cfg.alpha, use_rslora=cfg.rslora, target_modules=cfg.targets()),
        adapter_name=ADAPTER,
    )
    return model


class Trainer:
    def __init__(self, model, samples: list[dict], cfg: TrainConfig, device: str = "cpu") -> None:
        import torch

        if not samples:
            raise LoraError("no training samples", FAILED_INPUT)
        self.cfg = cfg
        self.device = device
        self.precision = pick_precision(cfg.precision, device)
        self.samples = samples
        self.model = attach_lora(model, cfg).to(device)
        if cfg.gradient_checkpointing:
            self.model.enable_gradient_checkpointing()
        self.model.train()
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(
            self.params, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=cfg.betas
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_lambda(cfg.warmup, cfg.steps))
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self.schedule = flow_schedule(cfg.shift)
        self.step = 0
        self.order: list[int] = []

    @property
    def trainable(self) -> int:
        return sum(p.numel() for p in self.params)

    def next_batch(self) -> dict:
        import torch

        picked = []
        while len(picked) < self.cfg.batch_size:
            if not self.order:  # a new epoch in a seeded order
                self.order = torch.randperm(len(self.samples), generator=self.gen).tolist()
            picked.append(self.samples[self.order.pop(0)])
        return collate(picked)

    def train_step(self) -> dict[str, float]:
        import torch

        batch = self.next_batch()
        loss = flow_loss(self.model, batch, self.gen, self.cfg, self.schedule, self.device, self.precision)
        if not torch.isfinite(loss):
            raise LoraError(f"the loss became {loss.item()} at step {self.step + 1}", FAILED_INPUT)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.params, self.cfg.clip)
        lr = self.scheduler.get_last_lr()[0]
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        return {"step": self.step, "loss": float(loss.item()), "grad_norm": float(grad_norm), "lr": lr}

    # ---- checkpoints

    def adapter_state(self) -> dict:
        from peft.utils import get_peft_model_state_dict

        return get_peft_model_state_dict(self.model, adapter_name=ADAPTER)

    def save_adapter(self, folder: Path) -> Path:
        self.model.save_lora_adapter(str(folder), adapter_name=ADAPTER)
        return Path(folder) / ADAPTER_FILE

    def write_checkpoint(self, folder: Path, fingerprint: str) -> None:
        import torch

        self.save_adapter(folder)
        torch.save(
            {
                "step": self.step,
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "generator": self.gen.get_state(),
                "order": torch.tensor(self.order, dtype=torch.long),
                "config": json.dumps(asdict(self.cfg)),
                "base": fingerprint,
            },
            Path(folder) / STATE_FILE,
        )

    def load_checkpoint(self, folder: Path, fingerprint: str) -> None:
        import torch
        from safetensors.torch import load_file

        state = torch.load(Path(folder) / STATE_FILE, map_location="cpu", weights_only=True)
        if state["base"] != fingerprint:
            raise LoraError(f"{folder} was trained on other base weights than --base", FAILED_INPUT)
        saved = json.loads(state["config"])
        for k in ("rank", "alpha", "rslora", "train_lyrics", "train_speaker"):
            if saved[k] != getattr(self.cfg, k):
                raise LoraError(f"{folder} has {k}={saved[k]}, this run {getattr(self.cfg, k)}", USAGE)
        weights = load_file(str(Path(folder) / ADAPTER_FILE))
        params = {n: p for n, p in self.model.named_parameters() if p.requires_grad}
        named = {
            k.replace(".lora_A.", f".lora_A.{ADAPTER}.").replace(".lora_B.", f".lora_B.{ADAPTER}."): v
            for k, v in weights.items()
        }
        if named.keys() != params.keys():
            raise LoraError(
                f"{folder}: its adapter tensors do not match this run's LoRA targets", FAILED_INPUT
            )
        with torch.no_grad():
            for name, value in named.items():
                params[name].copy_(value)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.gen.set_state(state["generator"])
        self.order = state["order"].tolist()
        self.step = int(state["step"])


# ---------------------------------------------------------------- sample audio


def sample_audio(trainer: Trainer, decoders: dict, frames: int, steps: int, seed: int):
    """Generate from the first training sample's conditions with the model being trained (the project's PyTorch
    reference sampler, Euler + APG), decoded by the DCAE and vocoder → [2, samples] at 44.1 kHz."""
    import torch

    from scripts.ace_step_torch import reference as ref

    s = collate(trainer.samples[:1])
    dit = trainer.model
    dit.eval()
    try:
        with torch.no_grad():
            cond, cmask = dit.encode(
                s["text_states"], s["text_mask"], s["speaker_emb"], s["lyric_ids"], s["lyric_mask"]
            )
            uncond, _ = dit.encode(
                torch.zeros_like(s["text_states"]),
                s["text_mask"],
                torch.zeros_like(s["speaker_emb"]),
                torch.zeros_like(s["lyric_ids"]),
                s["lyric_mask"],
            )
            noise = torch.randn((1, 8, 16, frames), generator=torch.Generator().manual_seed(seed))
            models = {"transformer": dit, **decoders}
            latents, _ = ref.sample(models, cond, uncond, cmask, noise, steps, erg_diffusion=False)
            return ref.latents_to_wave(models, latents).numpy()
    finally:
        dit.train()


# ---------------------------------------------------------------- metrics


class Metrics:
    """metrics.jsonl (one object per step) and TensorBoard event files; a resume drops what came after it."""

    def __init__(self, out: Path, resume_step: int) -> None:
        from tensorboardX import SummaryWriter

        self.jsonl = out / "metrics.jsonl"
        if self.jsonl.exists():
            kept = [
                line
                for line in self.jsonl.read_text().splitlines()
                if line.strip() and json.loads(line).get("step", 0) <= resume_step
            ]
            self.jsonl.write_text("".join(f"{line}\n" for line in kept))
        self.fh = open(self.jsonl, "a")
        self.tb = SummaryWriter(str(out / "tensorboard"), purge_step=resume_step + 1 if resume_step else None)

    def write(self, row: dict[str, Any]) -> None:
        self.fh.write(json.dumps(row) + "\n")
        self.fh.flush()
        for k in ("loss", "lr", "grad_norm"):
            self.tb.add_scalar(f"train/{k}", row[k], row["step"])

    def close(self) -> None:
        self.fh.close()
        self.tb.close()


# ---------------------------------------------------------------- the subcommand


def add_arguments(p, command: str) -> None:
    d = TrainConfig()
    p.add_argument(
        "--data-dir", type=Path, help="dataset folder (else $LOFI_LORA_DATA_DIR); features/ inside"
    )
    p.add_argument("--features", type=Path, help="features folder (default: <data-dir>/features)")
    p.add_argument("--base", type=Path, help="base ACE-Step model (else $LOFI_ACE_STEP_DIR)")
    p.add_argument("--out", type=Path, required=True, help="run folder: checkpoints/, metrics, the adapter")
    p.add_argument("--steps", type=int, default=d.steps, help=f"optimizer steps (default {d.steps})")
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--rank", type=int, default=d.rank, help=f"LoRA rank (upstream {d.rank})")
    p.add_argument("--alpha", type=float, default=d.alpha, help=f"LoRA alpha (upstream {d.alpha:g})")
    p.add_argument("--no-rslora", dest="rslora", action="store_false", help="scale α/r instead of α/√r")
    p.add_argument("--train-lyrics", action="store_true", help="also adapt the lyric encoder (linear_q/k/v)")
    p.add_argument("--train-speaker", action="store_true", help="also adapt speaker_embedder")
    p.add_argument("--warmup", type=int, default=d.warmup, help="linear warm-up steps")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto")
    p.add_argument("--no-gradient-checkpointing", dest="gradient_checkpointing", action="store_false")
    p.add_argument(
        "--checkpoint-every", type=int, default=2000, help="steps between checkpoints (default 2000)"
    )
    p.add_argument("--ckpt-path", type=Path, help="resume from this checkpoint (default: the last valid one)")
    p.add_argument(
        "--no-resume", action="store_true", help="start over even if the run folder has checkpoints"
    )
    p.add_argument(
        "--sample-every", type=int, default=0, help="write samples/step-N.wav every N steps (0: never)"
    )
    p.add_argument("--sample-seconds", type=float, default=10.0)
    p.add_argument("--sample-steps", type=int, default=27, help="sampler steps of each sample")
    p.add_argument("--install", metavar="NAME", help="install the adapter as LoRA style NAME for the daemon")
    p.add_argument("--device", default="cpu", help="torch device (cpu, cuda)")


def config_from(args) -> TrainConfig:
    if args.steps < 1 or args.batch_size < 1 or args.rank < 1 or args.checkpoint_every < 1:
        raise LoraError("--steps, --batch-size, --rank and --checkpoint-every must be positive", USAGE)
    return TrainConfig(
        steps=args.steps,
        batch_size=args.batch_size,
        rank=args.rank,
        alpha=args.alpha,
        rslora=args.rslora,
        train_lyrics=args.train_lyrics,
        train_speaker=args.train_speaker,
        lr=args.lr,
        warmup=args.warmup,
        seed=args.seed,
        precision=args.precision,
        gradient_checkpointing=args.gradient_checkpointing,
    )


def run(args) -> dict:
    from . import base as base_mod
    from . import env, features

    cfg = config_from(args)
    base = env.ace_step_dir(args.base)
    base_mod.layout(base)  # fail fast: the base model is there and of a known kind
    feats_dir = args.features or env.data_dir(args.data_dir) / features.DIR
    samples = features.load_samples(feats_dir)
    out = Path(args.out).expanduser()
    ckpt_root = out / "checkpoints"
    resume, skipped = (None, [])
    if args.ckpt_path:
        resume = checkpoints.resolve(args.ckpt_path)
    elif not args.no_resume:
        resume, skipped = checkpoints.latest_valid(ckpt_root)
    for s in skipped:
        log.warning("skipping torn checkpoint %s: %s", s["checkpoint"], "; ".join(s["problems"]))
    plan = {
        "base": str(base),
        "samples": len(samples),
        "steps": cfg.steps,
        "targets": cfg.targets(),
        "resume_from": str(resume.path) if resume else None,
        "skipped_checkpoints": skipped,
    }
    if args.dry_run:
        return plan

    import soundfile as sf
    import torch
    from tqdm import tqdm

    fingerprint = base_mod.fingerprint(base)
    trainer = Trainer(base_mod.load(base)["transformer"], samples, cfg, args.device)
    if resume:
        trainer.load_checkpoint(resume.path, fingerprint)
    decoders = base_mod.load(base, ("dcae", "vocoder")) if args.sample_every else {}
    out.mkdir(parents=True, exist_ok=True)
    metrics = Metrics(out, trainer.step)
    first = last = None
    started = time.perf_counter()
    try:
        for _ in tqdm(range(trainer.step, cfg.steps), disable=args.quiet, desc="train", unit="step"):
            row = trainer.train_step()
            metrics.write(row)
            first = row["loss"] if first is None else first
            last = row["loss"]
            if trainer.step % args.checkpoint_every == 0 or trainer.step == cfg.steps:
                checkpoints.save(ckpt_root, trainer.step, lambda d: trainer.write_checkpoint(d, fingerprint))
            if args.sample_every and trainer.step % args.sample_every == 0:
                frames = max(1, math.ceil(args.sample_seconds * 44100 / 4096))
                wave = sample_audio(trainer, decoders, frames, args.sample_steps, cfg.seed)
                (out / "samples").mkdir(exist_ok=True)
                sf.write(str(out / "samples" / f"step-{trainer.step:08d}.wav"), wave.T, 44100)
    finally:
        metrics.close()
    adapter = trainer.save_adapter(out)
    (out / "train_config.json").write_text(
        json.dumps({**asdict(cfg), "precision": trainer.precision}, indent=1)
    )
    result = {
        **plan,
        "adapter": str(adapter),
        "step": trainer.step,
        "first_loss": first,
        "last_loss": last,
        "precision": trainer.precision,
        "trainable_params": trainer.trainable,
        "seconds": round(time.perf_counter() - started, 2),
        "threads": torch.get_num_threads(),
    }
    if args.install:
        from .install import install

        result["installed"] = str(install(adapter, args.install))
    return result
