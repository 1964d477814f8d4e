"""Command line: `lofi-daemon` serves JSON-RPC on stdio (the default); `generate` runs one job through the
same code path as the RPC; `health --json` reports the installation; `download` fetches a backend's model;
`convert riffusion` exports downloaded PyTorch weights to ONNX once."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import __version__
from .config import Settings
from .errors import LofiError
from .logging_setup import setup_logging

if TYPE_CHECKING:  # imported where used: --version and health must not pay for it
    from .daemon import Daemon

log = logging.getLogger("lofi_daemon")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lofi-daemon", description="lofi: local AI lofi music daemon")
    p.add_argument("--version", action="version", version=f"lofi-daemon {__version__}")
    p.add_argument(
        "--log-level",
        default=os.environ.get("LOFI_LOG_LEVEL", "info"),
        choices=["debug", "info", "warning", "error"],
    )
    p.add_argument("--log-file", type=Path, help="log here instead of the user log dir")
    sub = p.add_subparsers(dest="command")

    serve = sub.add_parser("serve", help="speak JSON-RPC on stdin/stdout (the default)")
    serve.add_argument(
        "--generator",
        action="store_true",
        help="run as a headless remote generator for another lofi-daemon (no player, no cache; docs/protocol.md)",
    )
    for target in (p, serve):
        target.add_argument("--parent-pid", type=int, help="exit when this process is gone")
        target.add_argument(
            "--idle-timeout",
            type=float,
            default=0.0,
            help="exit after this many seconds with no request, job or playback (0 = never)",
        )

    gen = sub.add_parser("generate", help="generate one track and print where it is")
    gen.add_argument("prompt", nargs="*", help="the words (may be left out with --preset)")
    gen.add_argument("--preset", help="a style preset: its tags come before the words")
    gen.add_argument("--duration", type=float)
    gen.add_argument("--seed", type=int)
    gen.add_argument("--backend")
    gen.add_argument(
        "--format",
        choices=["flac", "wav", "ogg", "mp3"],
        help="format of the --output file (default: the one its extension names; both must agree); "
        "without --output, the format the track is cached in",
    )
    gen.add_argument(
        "--output", "-o", type=Path, help="also write the track here, in the format its name says"
    )
    gen.add_argument("--play", action="store_true", help="play the track when it is ready")
    gen.add_argument("--allow-download", action="store_true", help="consent to downloading the model")
    gen.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="backend parameter, e.g. top_k=50 or inference_steps=27 (JSON values)",
    )

    health = sub.add_parser("health", help="report versions, providers, models, audio devices")
    health.add_argument("--json", action="store_true")

    dl = sub.add_parser("download", help="download a backend's model (this is your consent)")
    dl.add_argument("backend")
    dl.add_argument("--variant")
    dl.add_argument(
        "--repair",
        action="store_true",
        help="fetch again the files that fail verification (all if none fails)",
    )

    conv = sub.add_parser(
        "convert",
        help="export downloaded PyTorch weights to ONNX once (riffusion; needs scripts/setup --export)",
    )
    conv.add_argument("backend", choices=["riffusion"])
    conv.add_argument(
        "--model", type=Path, help="a diffusers-layout folder (default: the downloaded weights)"
    )
    conv.add_argument("--out", type=Path, help="where to write the export (default: lofi's model folder)")
    conv.add_argument(
        "--int8",
        action="store_true",
        help='also make the int8 UNet (models.riffusion.variant = "int8"); on an existing conversion '
        "(without --model) only adds it",
    )

    ver = sub.add_parser("verify", help="check the model files (sizes, hashes, ONNX structure); no network")
    ver.add_argument("backend", nargs="?", help="one backend (default: every backend with model files)")
    ver.add_argument("--json", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = Settings.from_env()
    command = args.command or "serve"
    if command == "serve":
        from .serve import serve

        return serve(settings, args)
    log_file = setup_logging(settings.log_dir, args.log_level, args.log_file)
    try:
        if command == "generate":
            return _generate(settings, args, log_file)
        if command == "health":
            return _health(settings, args)
        if command == "download":
            return _download(settings, args)
        if command == "verify":
            return _verify(settings, args)
        if command == "convert":
            return _convert(settings, args)
    except LofiError as exc:
        print(f"lofi-daemon: {exc.message} [{exc.code.name}]", file=sys.stderr)
        hint = exc.data.get("hint")
        if hint:
            print(f"  hint: {hint}", file=sys.stderr)
        return 1
    return 2


def _parse_params(items: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--param expects KEY=VALUE, got {item!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def _generate(settings: Settings, args: argparse.Namespace, log_file: Path | None) -> int:
    from pydantic import ValidationError

    from .backends.install import require_installed
    from .daemon import Daemon
    from .errors import ErrorCode
    from .jobs.api import build_job
    from .rpc.schemas.generation import GenerateParams

    done = threading.Event()
    outcome: dict[str, Any] = {}

    def send(method: str, params: dict[str, Any]) -> None:
        if method == "generation_progress":
            eta = params.get("eta_sec")
            print(
                f"\r  {params['percent']:3d}%  eta {eta:.0f} s   "
                if eta is not None
                else f"\r  {params['percent']:3d}%",
                end="",
                file=sys.stderr,
                flush=True,
            )
        elif method == "download_progress":
            print(
                f"\r  downloading {params.get('file', '')} {params.get('percent', 0):.0f}%   ",
                end="",
                file=sys.stderr,
                flush=True,
            )
        elif method in ("generation_complete", "generation_error", "generation_cancelled"):
            outcome["method"], outcome["params"] = method, params
            done.set()

    daemon = Daemon(settings, send=send, log_file=log_file)
    # one-shot CLI: play only on --play, and never queue more music
    daemon.player.auto_play = False
    daemon.prefetch.configure(enabled=False)
    out_fmt = None
    if args.output:  # refuse a bad name before minutes of generation, not after
        from .cache.export import output_format

        out_fmt = output_format(args.output, args.format)
    raw = {
        "prompt": " ".join(args.prompt),
        "preset": args.preset,
        "duration_sec": args.duration,
        "seed": args.seed,
        "backend": args.backend,
        "format": None if args.output else args.format,  # with --output, --format names the output's format
        "allow_download": args.allow_download,
        **_parse_params(args.param),
    }
    try:
        params = GenerateParams.model_validate({k: v for k, v in raw.items() if v is not None})
    except ValidationError as exc:
        raise LofiError(ErrorCode.INVALID_PARAMS, str(exc)) from None
    job = build_job(daemon.backends, daemon.settings, params, "high")
    track = daemon.store.get(job.track_id)
    started = time.monotonic()
    if track is None:
        require_installed(
            daemon.backends[job.request.backend],
            job.allow_download,
            hint="add --allow-download (or run `lofi-daemon download {name}`), "
            "or point LOFI_{name_upper}_DIR at a local model directory",
        )
        print(
            f"lofi: generating {job.request.duration_sec:g} s with {job.request.backend} "
            f"(seed {job.request.seed}) ...",
            file=sys.stderr,
        )
        daemon.queue.submit(job)
        daemon.queue.take()

        def on_sigint(_signum: int, _frame: object) -> None:
            # the first Ctrl-C cancels like :Lofi cancel (the step ends, nothing half-written is kept)
            if job.cancel.cancelled:
                raise KeyboardInterrupt
            print("\nlofi: cancelling… (Ctrl-C again to quit at once)", file=sys.stderr, flush=True)
            job.cancel.cancel()

        previous = signal.signal(signal.SIGINT, on_sigint)
        try:
            daemon.worker.run_job(job)
        finally:
            signal.signal(signal.SIGINT, previous)
            daemon.queue.done(job)
        print(file=sys.stderr)
        if outcome.get("method") == "generation_cancelled":
            print("lofi: cancelled; no track was written", file=sys.stderr)
            return 130  # the shell's code for "ended by SIGINT"
        if outcome.get("method") != "generation_complete":
            p = outcome.get("params", {})
            raise LofiError(
                ErrorCode(p.get("code", ErrorCode.MODEL_INFERENCE_FAILED)),
                p.get("message", "generation did not complete"),
            )
        track = daemon.store.require(job.track_id)
    written = {
        "path": track.path,
        "format": track.format,
        "sample_rate": track.sample_rate,
        "channels": track.channels,
        "duration_sec": track.duration_sec,
    }
    if args.output and out_fmt:
        from .cache.export import export_track

        written = export_track(daemon.store, job.track_id, args.output, out_fmt)
    elapsed = time.monotonic() - started
    print(
        f"lofi: wrote {written['path']} ({written['format']}, {written['sample_rate']} Hz, "
        f"{written['channels']} ch, {written['duration_sec']:g} s)",
        file=sys.stderr,
    )
    print(
        json.dumps(
            {
                "track_id": job.track_id,
                **written,
                "seed": job.request.seed,
                "prompt": job.request.prompt,  # as generated: a --preset's tags included
                "generation_time_sec": round(elapsed, 2),
            }
        )
    )
    if args.play:
        return _play(daemon, job.track_id)
    return 0


def _play(daemon: Daemon, track_id: str) -> int:
    from .errors import ErrorCode

    if daemon.player is None:
        raise LofiError(ErrorCode.AUDIO_DEVICE_ERROR, "playback is not available in this build")
    finished = threading.Event()
    daemon.subscribe("playback_ended", lambda p: finished.set() if p.get("track_id") == track_id else None)
    daemon.player.play(track_id)
    finished.wait()
    return 0


def _health(settings: Settings, args: argparse.Namespace) -> int:
    from .health import report

    data = report(settings)
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        for key, value in data.items():
            print(f"{key}: {value}")
    return 0


def _download(settings: Settings, args: argparse.Namespace) -> int:
    from .backends import canonical_name, create_backends
    from .cancel import CancelToken
    from .errors import ErrorCode

    name = canonical_name(args.backend)
    if args.variant:
        settings.models[name].variant = args.variant
    backends = create_backends(settings, lambda *_: None)
    if name not in backends:
        raise LofiError(ErrorCode.INVALID_BACKEND, f"unknown backend {args.backend!r}")
    backend = backends[name]
    if args.repair:
        from .models.verify import repair_variant

        if getattr(backend, "local_dir", None) is not None or not hasattr(backend, "variant"):
            raise LofiError(
                ErrorCode.INVALID_PARAMS, f"{name} uses no downloaded model files; nothing to repair"
            )
        fetched = repair_variant(backend.variant(), _print_progress, CancelToken())
        print(f"\n{name} repaired: fetched {', '.join(fetched)} again", file=sys.stderr)
        return 0
    if backend.is_installed():
        print(f"{name} is already installed")
        return 0

    backend.download(_print_progress, CancelToken())
    print(f"\n{name} installed", file=sys.stderr)
    return 0


def _convert(settings: Settings, args: argparse.Namespace) -> int:
    from .backends.riffusion import convert
    from .backends.riffusion.backend import RiffusionBackend
    from .backends.riffusion.pipeline import missing_files
    from .errors import ErrorCode

    backend = RiffusionBackend(settings)
    out = args.out.expanduser().absolute() if args.out else backend.converted_dir()
    if args.int8 and not args.model and out.is_dir() and not missing_files(out):
        if not backend.conversion_outdated(out):
            print(f"riffusion int8 UNet added: {convert.add_int8(out)}")
            return 0
        # quantising an outdated UNet would leave a folder the backend still refuses: export it again first
        print(f"{out} was converted by another lofi version: converting it again, then the int8 UNet")
    src = args.model.expanduser() if args.model else backend.downloaded_dir()
    if src is None:
        raise LofiError(
            ErrorCode.BACKEND_NOT_INSTALLED,
            "there are no Riffusion weights to convert: download them first with `lofi-daemon download "
            "riffusion` (your consent), or give --model DIR",
        )
    convert.convert(src, out, int8=args.int8)
    print(f"riffusion converted to ONNX{' (with the int8 UNet)' if args.int8 else ''}: {out}")
    if out != backend.converted_dir():
        print(f"  use it with LOFI_RIFFUSION_DIR={out} (or models.riffusion.dir)")
    return 0


def _print_progress(p: dict[str, Any]) -> None:
    print(f"\r  {p.get('file', '')} {p.get('percent', 0):.0f}%   ", end="", file=sys.stderr, flush=True)


def _verify(settings: Settings, args: argparse.Namespace) -> int:
    """Exit 0 when every checked model is intact, 1 when a file is missing or bad (each one is listed)."""
    from .backends import canonical_name, create_backends
    from .errors import ErrorCode
    from .models.verify import verify_backend

    backends = create_backends(settings, lambda *_: None)
    names = [canonical_name(args.backend)] if args.backend else list(backends)
    unknown = [n for n in names if n not in backends]
    if unknown:
        raise LofiError(ErrorCode.INVALID_BACKEND, f"unknown backend {args.backend!r}")
    reports = [r for r in (verify_backend(backends[n], deep=True) for n in names) if r]
    if args.json:
        print(json.dumps(reports, indent=2))
    else:
        for r in reports:
            print(f"{r['backend']} ({r['source']}): {'ok' if r['ok'] else 'NOT OK'}")
            for f in r["files"]:
                print(
                    f"  {'ok ' if f['ok'] else 'BAD'} {f['file']}" + ("" if f["ok"] else f": {f['problem']}")
                )
            if not r["ok"] and r["source"] == "hub":
                print(f"  repair: lofi-daemon download {r['backend']} --repair")
    return 0 if reports and all(r["ok"] for r in reports) else 1
