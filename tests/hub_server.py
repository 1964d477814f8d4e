"""A tiny stand-in for the Hugging Face hub's file endpoint, on 127.0.0.1, for download tests.

It answers what huggingface_hub 0.36's `hf_hub_download` asks for:
    HEAD /{repo_id}/resolve/{revision}/{path}  → X-Repo-Commit, ETag (sha256 for LFS-like files, a git-style sha1
                                                 for small ones), Content-Length
    GET  same URL [Range: bytes=N-]            → 200 or 206 with Content-Range
Faults for tests: `drop_once` (send half of a file, then close the connection, the first time it is fetched) and
`corrupt` (serve bytes that differ from the announced hash, same size).
A malicious or broken hub: `etags` (path → the ETag to announce instead of the real one, e.g. `../../x`),
`commit` (the X-Repo-Commit to announce, e.g. `../../x`) and `not_found_commit` (an X-Repo-Commit sent with 404s).
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@dataclass
class HubFiles:
    repo_id: str
    files: dict[str, bytes]  # path in repo → content
    drop_once: set[str] = field(default_factory=set)
    corrupt: set[str] = field(default_factory=set)
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)  # (method, path, Range)
    etags: dict[str, str] = field(default_factory=dict)
    commit: str = COMMIT
    not_found_commit: str | None = None

    def etag(self, path: str) -> str:
        if path in self.etags:
            return self.etags[path]
        data = self.files[path]
        if path.endswith(".onnx"):  # LFS files: the hub's ETag is the content's sha256
            return hashlib.sha256(data).hexdigest()
        return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()  # git blob id

    def body(self, path: str) -> bytes:
        data = self.files[path]
        if path in self.corrupt:
            data = bytes([data[0] ^ 0xFF]) + data[1:]
        return data


def _handler(hub: HubFiles):
    prefix = f"/{hub.repo_id}/resolve/"

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # keep test output clean
            pass

        def _lookup(self) -> str | None:
            if not self.path.startswith(prefix):
                return None
            rest = self.path[len(prefix) :].split("?", 1)[0]
            _, _, path = rest.partition("/")
            return path if path in hub.files else None

        def _not_found(self) -> None:
            self.send_response(404)
            self.send_header("X-Error-Code", "EntryNotFound")
            self.send_header("X-Error-Message", "Entry not found")
            if hub.not_found_commit is not None:
                self.send_header("X-Repo-Commit", hub.not_found_commit)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_HEAD(self):  # noqa: N802
            path = self._lookup()
            hub.requests.append(("HEAD", self.path, None))
            if path is None:
                return self._not_found()
            self.send_response(200)
            self.send_header("X-Repo-Commit", hub.commit)
            self.send_header("ETag", f'"{hub.etag(path)}"')
            self.send_header("Content-Length", str(len(hub.files[path])))
            self.end_headers()

        def do_GET(self):  # noqa: N802
            path = self._lookup()
            rng = self.headers.get("Range")
            hub.requests.append(("GET", self.path, rng))
            if path is None:
                return self._not_found()
            data = hub.body(path)
            start = 0
            if rng and rng.startswith("bytes="):
                start = int(rng[len("bytes=") :].split("-")[0])
            chunk = data[start:]
            self.send_response(206 if start else 200)
            self.send_header("X-Repo-Commit", hub.commit)
            self.send_header("ETag", f'"{hub.etag(path)}"')
            self.send_header("Content-Length", str(len(chunk)))
            if start:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.end_headers()
            if path in hub.drop_once:
                hub.drop_once.discard(path)
                self.wfile.write(chunk[: len(chunk) // 2])
                self.wfile.flush()
                self.close_connection = True
                self.connection.close()
                return
            self.wfile.write(chunk)

    return Handler


class HubServer:
    def __init__(self, hub: HubFiles) -> None:
        self.hub = hub
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(hub))
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> HubServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def files_from_dir(directory: Path, mapping: dict[str, str]) -> dict[str, bytes]:
    """{path in repo: local file name} → {path in repo: bytes}."""
    return {repo_path: (directory / name).read_bytes() for repo_path, name in mapping.items()}
