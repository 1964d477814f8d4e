"""`lofi-daemon serve`: the stdio JSON-RPC daemon's main loop and its exit conditions (stdin EOF,
`shutdown`, parent gone, idle timeout)."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
from typing import Any

from .config import Settings
from .logging_setup import setup_logging
from .process import pid_alive
from .rpc.server import Server, claim_stdio

log = logging.getLogger(__name__)

SIGNAL_CLOSE_SEC = 10.0  # how long a signal waits for the running generation step to notice its cancel


def serve(settings: Settings, args: argparse.Namespace) -> int:
    proto_in, proto_out = claim_stdio()
    log_file = setup_logging(settings.log_dir, args.log_level, args.log_file)
    if getattr(args, "generator", False):
        return _serve_generator(settings, args, proto_in, proto_out)
    from .daemon import Daemon  # after stdio is claimed: nothing imported later can write to the protocol
    from .rpc.dispatch import Dispatcher

    # The server reads requests into the dispatcher; the daemon registers its methods there and answers
    # through the server's writer.
    dispatcher = Dispatcher()
    server = Server(dispatcher, proto_in, proto_out)
    daemon = Daemon(settings, send=server.notify, log_file=log_file, dispatcher=dispatcher)
    server.on_message.append(daemon.touch)
    log.info(
        "lofi-daemon %s started (pid %d, parent %s)", daemon.status()["version"], os.getpid(), args.parent_pid
    )
    daemon.start()
    server.start()

    signalled: list[str] = []
    install_signal_handlers(signalled)
    reason = "?"
    while True:
        if server.closed.wait(0.2):
            reason = "stdin closed"
            break
        if signalled:
            reason = f"signal {signalled[0]}"
            break
        if daemon.stop_requested.is_set():
            reason = "shutdown requested"
            break
        if args.parent_pid and not pid_alive(args.parent_pid):
            reason = f"parent {args.parent_pid} is gone"
            break
        if args.idle_timeout and daemon.idle_seconds() > args.idle_timeout:
            reason = f"idle for {args.idle_timeout:g} s"
            break
    log.info("exiting: %s", reason)
    closer = threading.Thread(target=daemon.close, daemon=True)
    closer.start()
    # Exit within 1 s of EOF even if a model step is still running. A signal may wait for the running step to
    # see its cancel, so the worker never writes half a track; os._exit skips the C++ static destructors that
    # abort ("terminate called without an active exception") while an ONNX Runtime thread is still alive.
    closer.join(SIGNAL_CLOSE_SEC if signalled else 0.7)
    if closer.is_alive():
        log.warning("exiting before the generation worker stopped")
    logging.shutdown()
    os._exit(0)


def _serve_generator(settings: Settings, args: argparse.Namespace, proto_in: Any, proto_out: Any) -> int:
    """`serve --generator`: the headless remote end (remote/service.py) until stdin closes or a signal comes."""
    from .remote.service import GeneratorService
    from .rpc.dispatch import Dispatcher

    dispatcher = Dispatcher()
    server = Server(dispatcher, proto_in, proto_out)
    service = GeneratorService(settings, server.notify, dispatcher)
    log.info("lofi-daemon generator started (pid %d)", os.getpid())
    service.start()
    server.start()
    signalled: list[str] = []
    install_signal_handlers(signalled)
    while not server.closed.wait(0.2) and not signalled:
        if args.parent_pid and not pid_alive(args.parent_pid):
            break
    log.info("generator exiting")
    closer = threading.Thread(target=service.close, daemon=True)
    closer.start()
    closer.join(SIGNAL_CLOSE_SEC if signalled else 0.7)
    logging.shutdown()
    os._exit(0)


def install_signal_handlers(signalled: list[str]) -> None:
    """SIGINT, SIGTERM and SIGHUP end the daemon through the same clean path as `shutdown` (exit status 0).
    Without this SIGINT raised KeyboardInterrupt in the main thread and the interpreter's normal exit tore down
    ONNX Runtime under a running generation (SIGABRT)."""

    def on_signal(signum: int, _frame: object) -> None:
        signalled.append(signal.Signals(signum).name)

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(sig) is not signal.SIG_IGN:  # respect `nohup` and friends
            signal.signal(sig, on_signal)
