"""lofi-lora training benchmark: time and peak memory of one LoRA training step (scripts/lofi_lora/train.py's own
Trainer: upstream's loss, AdamW, clip) on the full-width ACE-Step DiT, fp32 vs bf16 autocast, with and without
gradient checkpointing, projected to the real 24 blocks.

The full 24-block model (3.5 B parameters, 14 GB in fp32) does not fit beside the other engineers on this machine,
so the DiT is layer-scaled as in bench_ace_step.py: full-width models with 1 and 3 blocks (the condition encoder
and lyric Conformer at full size) are measured, and 24 blocks = m₁ + 23·(m₃ − m₁)/2 for time and memory alike.
Every configuration runs in its own process (a clean peak RSS) after waiting for a quiet CPU, and records the CPU
other processes used meanwhile. LoRA: upstream's r 256, α 32, rsLoRA on to_q/k/v/to_out.0. Input: a 30 s clip
(322 latent frames, `--frames`), 64 prompt tokens, 100 lyric tokens, batch 1. Random weights.

    python scripts/bench_lofi_lora.py [--frames 322] [--repeats 2] [--threads 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "daemon")]

from scripts.benchlib import MIB, Watch, machine_info, peak_rss_mib, wait_quiet  # noqa: E402

LO, HI, FULL = 1, 3, 24
CONFIGS = [("fp32", False), ("fp32", True), ("bf16", False), ("bf16", True)]
QUIET_WAIT = float(os.environ.get("BENCH_QUIET_WAIT", "60"))
BUDGET_GIB = 24


def phase_step(a) -> dict:
    """One configuration: build, warm up with one step, then time `repeats` steps and keep the fastest
    (contamination by other processes only ever slows a step down)."""
    import torch

    torch.set_num_threads(a.threads)
    from scripts.ace_step_torch.build import REAL, build_transformer
    from scripts.lofi_lora import train

    torch.manual_seed(0)
    dit = build_transformer(dict(REAL["transformer"], num_layers=a.blocks))
    base_params = sum(p.numel() for p in dit.parameters())
    g = torch.Generator().manual_seed(0)
    sample = {
        "latents": torch.randn(8, 16, a.frames, generator=g),
        "text_states": torch.randn(64, 768, generator=g),
        "text_mask": torch.ones(64, dtype=torch.long),
        "lyric_ids": torch.randint(0, 6693, (100,), generator=g),
        "lyric_mask": torch.ones(100, dtype=torch.long),
        "speaker_emb": torch.randn(512, generator=g),
    }
    cfg = train.TrainConfig(precision=a.precision, gradient_checkpointing=a.ckpt, steps=1000)
    trainer = train.Trainer(dit, [sample], cfg)
    trainer.train_step()  # warm-up: optimizer state allocated, kernels chosen
    times, foreign = [], []
    for _ in range(a.repeats):
        with Watch() as w:
            trainer.train_step()
        times.append(w.sec)
        foreign.append(w.foreign_cores)
    return {
        "step_sec": min(times),
        "runs": [round(t, 2) for t in times],
        "foreign_cores": round(max(foreign), 2),
        "peak_rss_mib": round(peak_rss_mib(), 1),
        "base_params": base_params,
        "lora_params": trainer.trainable,
    }


def run_phase(**kw) -> dict:
    args = [sys.executable, __file__, "--phase", "step"]
    for k, v in kw.items():
        if v is True:
            args.append(f"--{k}")
        elif v not in (None, False):
            args += [f"--{k}", str(v)]
    waited, load = wait_quiet(QUIET_WAIT)
    print("·", kw, f"(waited {waited:.0f} s; other load {load:.2f} cores)", file=sys.stderr, flush=True)
    out = subprocess.run(args, capture_output=True, text=True, cwd=ROOT)
    if out.returncode != 0:
        raise SystemExit(f"phase failed:\n{out.stderr[-3000:]}")
    res = json.loads(out.stdout.strip().splitlines()[-1])
    res["load_before"] = round(load, 2)
    return res


def project(lo: float, hi: float) -> float:
    return lo + (FULL - LO) * (hi - lo) / (HI - LO)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--phase", choices=["step"])
    ap.add_argument("--blocks", type=int, default=LO)
    ap.add_argument("--frames", type=int, default=322)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    ap.add_argument("--ckpt", action="store_true", help="gradient checkpointing")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    if a.phase:
        print(json.dumps(phase_step(a)))
        return

    from scripts.lofi_lora.train import cpu_has_bf16

    res: dict = {
        "machine": machine_info(),
        "frames": a.frames,
        "threads": a.threads,
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "configs": {},
    }
    for precision, ckpt in CONFIGS:
        if precision == "bf16" and not cpu_has_bf16():
            continue
        m = {
            b: run_phase(
                blocks=b,
                frames=a.frames,
                repeats=a.repeats,
                threads=a.threads,
                precision=precision,
                ckpt=ckpt,
            )
            for b in (LO, HI)
        }
        key = f"{precision}{'+ckpt' if ckpt else ''}"
        res["configs"][key] = {
            "blocks": m,
            "step_sec_24": round(project(m[LO]["step_sec"], m[HI]["step_sec"]), 1),
            "peak_gib_24": round(project(m[LO]["peak_rss_mib"], m[HI]["peak_rss_mib"]) * MIB / 2**30, 2),
            "lora_params_24": int(project(m[LO]["lora_params"], m[HI]["lora_params"])),
            "base_params_24": int(project(m[LO]["base_params"], m[HI]["base_params"])),
        }
    res["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    print(json.dumps(res))
    if a.json:
        a.json.write_text(json.dumps(res, indent=1))
    rows = [
        "| config | 1 block: step, peak | 3 blocks: step, peak | 24 blocks (projected): step, peak | fits 24 GiB |",
        "|---|---|---|---|---|",
    ]
    for key, c in res["configs"].items():
        lo, hi = c["blocks"][LO], c["blocks"][HI]
        rows.append(
            f"| {key} | {lo['step_sec']:.2f} s, {lo['peak_rss_mib'] / 1024:.2f} GiB | "
            f"{hi['step_sec']:.2f} s, {hi['peak_rss_mib'] / 1024:.2f} GiB | "
            f"{c['step_sec_24']:.1f} s, {c['peak_gib_24']:.1f} GiB | "
            f"{'yes' if c['peak_gib_24'] < BUDGET_GIB else 'no'} |"
        )
    print("\n".join(rows), file=sys.stderr)


if __name__ == "__main__":
    main()
