"""A misbehaving remote generator for tests: speaks the framing on stdio and answers like `lofi-daemon serve
--generator` would, except for what its mode breaks.

  python -m tests.doubles.fake_generator old-protocol   handshake with another protocol version
  python -m tests.doubles.fake_generator corrupt        audio whose checksum does not match
  python -m tests.doubles.fake_generator extra          more audio than the request asked for
  python -m tests.doubles.fake_generator mute           accepts jobs and cancels, answers pings, never sends audio
  python -m tests.doubles.fake_generator odd-hello      a handshake with fields of the wrong types and escapes
  python -m tests.doubles.fake_generator hang           accepts a job, then answers nothing more (alive, stuck)
  python -m tests.doubles.fake_generator chatty-download  "downloads" first: DOWNLOAD_REPORTS progress messages in a
                                                       burst, then the file and the download complete, then the audio
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
from lofi_daemon.remote.protocol import GENERATOR_PROTOCOL, audio_digest, encode_audio
from lofi_daemon.rpc.framing import MessageReader, MessageWriter

RATE = 16000  # the tone backend's
ROOT = Path(__file__).resolve().parents[2]
DOWNLOAD_REPORTS = 2000
DOWNLOAD_BYTES = 1000  # per report


def command(mode: str) -> list[str]:
    """The `generator.cmd` that runs this double in `mode` with the checkout's lofi_daemon."""
    return [
        "env",
        f"PYTHONPATH={ROOT / 'daemon'}:{ROOT}",
        sys.executable,
        "-m",
        "tests.doubles.fake_generator",
        mode,
    ]


def download_burst(writer: MessageWriter, job_id: str) -> None:
    """Progress as an unpaced sender would give it (per chunk), then the two reports that end the download."""
    total = DOWNLOAD_REPORTS * DOWNLOAD_BYTES
    base = {"job_id": job_id, "file": "model.onnx", "bytes_total": total, "files_total": 1}
    for i in range(1, DOWNLOAD_REPORTS + 1):
        p = {**base, "bytes_downloaded": i * DOWNLOAD_BYTES, "files_completed": 0, "state": "downloading"}
        writer.write({"jsonrpc": "2.0", "method": "generator.download", "params": p})
    for files, state in ((1, "downloading"), (1, "complete")):
        p = {**base, "bytes_downloaded": total, "files_completed": files, "state": state}
        writer.write({"jsonrpc": "2.0", "method": "generator.download", "params": p})


def main(mode: str) -> None:
    reader = MessageReader(sys.stdin.buffer)
    writer = MessageWriter(sys.stdout.buffer)
    while (frame := reader.read()) is not None:
        msg = json.loads(frame.body)
        method, id_ = msg.get("method"), msg.get("id")
        if method == "initialize":
            version = GENERATOR_PROTOCOL + 98 if mode == "old-protocol" else GENERATOR_PROTOCOL
            backends = [{"name": "tone", "installed": True, "model_version": "tone-v1"}]
            result = {
                "role": "generator",
                "protocol_version": version,
                "version": "9.9",
                "backends": backends,
            }
            if mode == "odd-hello":
                result.update(backends=5, host={"x": 1}, version="\x1b[2J" * 1000)
            writer.write({"jsonrpc": "2.0", "id": id_, "result": result})
        elif method == "ping":
            writer.write({"jsonrpc": "2.0", "id": id_, "result": {"pong": True}})
        elif method == "generator.cancel":
            writer.write({"jsonrpc": "2.0", "id": id_, "result": {"cancelled": True}})
        elif method == "generator.generate":
            p = msg["params"]
            writer.write({"jsonrpc": "2.0", "id": id_, "result": {"accepted": True}})
            if mode == "hang":
                time.sleep(3600)
            if mode in ("mute", "hang"):
                continue
            if mode == "chatty-download":
                download_burst(writer, p["job_id"])
            seconds = p["duration_sec"] + (10 if mode == "extra" else 0)
            audio = np.full((int(seconds * RATE), 1), 0.25, np.float32)
            sent = audio.copy()
            if mode == "corrupt":
                sent[100] = 0.5  # one sample changed on the way
            writer.write(
                {
                    "jsonrpc": "2.0",
                    "method": "generator.audio",
                    "params": {
                        "job_id": p["job_id"],
                        "seq": 0,
                        "kind": "final",
                        "frames": len(sent),
                        "channels": 1,
                        "data": encode_audio(sent),
                    },
                }
            )
            done = {
                "job_id": p["job_id"],
                "frames": len(audio),
                "channels": 1,
                "sample_rate": RATE,
                "sha256": audio_digest(audio),
                "streamed": False,
                "info": {},
            }
            writer.write({"jsonrpc": "2.0", "method": "generator.done", "params": done})


if __name__ == "__main__":
    main(sys.argv[1])
