"""`lofi-lora <subcommand>`: one entry point, shared flags, one JSON result, documented exit codes.

Each subcommand lives in a module of this package (COMMANDS; one module may serve two subcommands) with
`HELP = {subcommand: one line}`, `add_arguments(parser, command)` and `run(args) -> dict` (the JSON result;
`args.command` names the subcommand). Modules are imported only when their subcommand runs, so `--help` and
`prepare` never pay for torch. Failures the user can act on raise `errors.LoraError`; its code is the exit code
(0 ok, 1 failed input, 2 usage, 3 environment).
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
from types import ModuleType
from typing import Any

from . import __version__
from .errors import ENVIRONMENT, OK, USAGE, LoraError

# subcommand → module (in scripts/lofi_lora/); the order is the pipeline's
COMMANDS = {
    "prepare": "prepare",
    "validate": "prepare",
    "prompts": "prompts",
    "metadata": "metadata",
    "dataset": "dataset",
    "train": "train",
    "evaluate": "evaluate",
    "compare": "evaluate",
    "merge": "merge",
    "export": "export",
    "quantize": "export",
}

log = logging.getLogger("lofi_lora")


class Unavailable:
    """A subcommand whose module needs a package this install lacks: listed, and its run says what to install
    (the other subcommands keep working)."""

    def __init__(self, name: str, package: str) -> None:
        self.message = f"`{name}` needs the {package} package: run scripts/setup --train"
        self.HELP = {name: f"(unavailable: needs {package})"}

    def add_arguments(self, parser: argparse.ArgumentParser, command: str) -> None:
        pass  # whatever follows is left unparsed: run() only reports what is missing

    def run(self, args: argparse.Namespace) -> dict[str, Any]:
        raise LoraError(self.message, ENVIRONMENT)


def _module(name: str) -> ModuleType | Unavailable | None:
    try:
        return importlib.import_module(f"{__package__}.{COMMANDS[name]}")
    except ModuleNotFoundError as e:
        if e.name == f"{__package__}.{COMMANDS[name]}":
            return None  # not written yet
        return Unavailable(name, (e.name or "a").split(".")[0])


def build_parser(commands: dict[str, ModuleType | Unavailable]) -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--verbose", "-v", action="store_true", help="log details to stderr")
    common.add_argument("--quiet", "-q", action="store_true", help="log only errors; no progress bars")
    common.add_argument("--dry-run", action="store_true", help="say what would be done; write nothing")
    common.add_argument("--json", action="store_true", help="print the result as one JSON object on stdout")
    p = argparse.ArgumentParser(
        prog="lofi-lora",
        description="Make a LoRA style for ACE-Step: prepare → prompts → dataset → train → evaluate → merge/export.",
        epilog="exit codes: 0 ok, 1 failed input, 2 usage, 3 environment (missing base model, package or tool)",
    )
    p.add_argument("--version", action="version", version=f"lofi-lora {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module in commands.items():
        sp = sub.add_parser(name, parents=[common], help=module.HELP[name], description=module.HELP[name])
        module.add_arguments(sp, name)
    return p


def _print_result(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(result, ensure_ascii=False, default=str))
        return
    for key, value in result.items():
        print(f"{key}: {value if not isinstance(value, (dict, list)) else json.dumps(value, default=str)}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        commands = {name: m for name in COMMANDS if (m := _module(name)) is not None}
    except LoraError as e:
        print(f"lofi-lora: {e.message}", file=sys.stderr)
        return e.code
    parser = build_parser(commands)
    try:
        args, extra = parser.parse_known_args(argv)
        if extra and not isinstance(commands[args.command], Unavailable):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    except SystemExit as e:  # --help, --version (0) or a usage error (2)
        return int(e.code or OK) if e.code in (0, None) else USAGE
    level = logging.DEBUG if args.verbose else logging.ERROR if args.quiet else logging.INFO
    logging.basicConfig(level=level, stream=sys.stderr, format="lofi-lora: %(message)s")
    module = commands[args.command]
    try:
        result = module.run(args)
    except LoraError as e:
        if args.json:
            print(json.dumps({"ok": False, "error": e.message, "exit_code": e.code}))
        print(f"lofi-lora {args.command}: {e.message}", file=sys.stderr)
        return e.code
    _print_result({"ok": True, "command": args.command, "dry_run": args.dry_run, **result}, args.json)
    return OK
