"""`lofi-daemon serve`: the stdio JSON-RPC daemon's main loop and its exit conditions (stdin EOF,
`shutdown`, parent gone, idle timeout)."""

from __future__ import annotations

import argparse
import logging
import os
import threading
import time

from .config import Settings
from .logging_setup import setup_logging
from .process import pid_alive
from .rpc.server import Server, claim_stdio

log = logging.getLogger(__name__)


def serve(settings: Settings, args: argparse.Namespace) -> int:
    proto_in, proto_out = claim_stdio()
    log_file = setup_logging(settings.log_dir, args.log_level, args.log_file)
    from .daemon import Daemon  # after stdio is claimed: nothing imported later can write to the protocol

    server = Server(None, proto_in, proto_out)  # type: ignore[arg-type]
    daemon = Daemon(settings, send=server.notify, log_file=log_file)
    server.dispatcher = daemon.dispatcher
    server.on_message.append(daemon.touch)
    log.info(
        "lofi-daemon %s started (pid %d, parent %s)", daemon.status()["version"], os.getpid(), args.parent_pid
    )
    daemon.start()
    server.start()

    stop = threading.Event()
    reason = "?"
    while not stop.is_set():
        if server.closed.wait(0.2):
            reason = "stdin closed"
            break
        if daemon.stop_requested.is_set():
            reason = "shutdown requested"
            break
        if args.parent_pid and not pid_alive(args.parent_pid):
            reason = f"parent {args.parent_pid} is gone"
            break
        if (
            args.idle_timeout
            and daemon.is_idle()
            and time.monotonic() - daemon.last_activity > args.idle_timeout
        ):
            reason = f"idle for {args.idle_timeout:g} s"
            break
    log.info("exiting: %s", reason)
    closer = threading.Thread(target=daemon.close, daemon=True)
    closer.start()
    closer.join(0.7)  # exit within 1 s of EOF even if a model step is still running
    logging.shutdown()
    os._exit(0)
