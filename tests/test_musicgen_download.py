"""Model download through the real huggingface_hub code against a local stand-in for the hub (127.0.0.1),
serving the tiny fixture under the real gabotechs/music_gen paths of the default CPU variant (small-int8)."""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np
import pytest
from lofi_daemon.backends.base import GenerationRequest
from lofi_daemon.backends.install import ensure_installed
from lofi_daemon.backends.musicgen import nbits
from lofi_daemon.backends.musicgen.backend import MusicGenBackend
from lofi_daemon.cancel import CancelToken
from lofi_daemon.config import Settings
from lofi_daemon.errors import ErrorCode, LofiError
from lofi_daemon.models import download as hub
from lofi_daemon.models.registry import MUSICGEN_VARIANTS, ModelFile

from tests.hub_server import HubFiles, HubServer, files_from_dir
from tests.musicgen_fixture import FIXTURE

VARIANT = MUSICGEN_VARIANTS["small-int8"]
# the default CPU variant's real repo paths, filled with the tiny model's files
REPO_FILES = {
    "small/tokenizer.json": "tokenizer.json",
    "small/config.json": "config.json",
    "small/generation_config.json": "generation_config.json",
    "small_fp32/text_encoder.onnx": "text_encoder.onnx",
    "small_fp32/encodec_decode.onnx": "encodec_decode.onnx",
    "small_i8/decoder_model_merged.onnx": "decoder_model_merged.onnx",
}


@pytest.fixture
def hub_env(tmp_path, monkeypatch):
    files = HubFiles(VARIANT.repo_id, files_from_dir(FIXTURE, REPO_FILES))
    with HubServer(files) as server:
        monkeypatch.setenv("HF_ENDPOINT", server.endpoint)
        monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
        monkeypatch.delenv("HF_HUB_CACHE", raising=False)
        monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        monkeypatch.setattr(hub, "RETRY_SLEEP_SEC", 0.0)
        # real model files are GBs, written 10 MB at a time; scale the chunk down to the tiny files so an
        # interrupted transfer leaves a partial `.incomplete` blob, as it would for a real one
        monkeypatch.setattr("huggingface_hub.constants.DOWNLOAD_CHUNK_SIZE", 64 * 1024)
        yield files


def hub_settings(tmp_path) -> Settings:
    return Settings(cache_dir=tmp_path / "cache", log_dir=tmp_path / "log", provider="cpu", threads=1)


def test_registry_paths_match_served_layout():
    assert {f.path for f in VARIANT.files} == set(REPO_FILES)


def test_no_download_without_consent(hub_env, tmp_path):
    backend = MusicGenBackend(hub_settings(tmp_path))
    assert not backend.is_installed()
    with pytest.raises(LofiError) as ei:
        backend.load()
    assert ei.value.code == ErrorCode.BACKEND_NOT_INSTALLED
    assert "download_backend" in ei.value.message and "allow_download" in ei.value.message
    with pytest.raises(LofiError) as ei:
        ensure_installed(backend, False, None, CancelToken())
    assert ei.value.code == ErrorCode.BACKEND_NOT_INSTALLED
    assert backend.status()["installed"] is False
    assert hub_env.requests == []  # nothing touched the network


def test_download_with_consent_notifies_progress_then_generates_offline(hub_env, tmp_path):
    sent = []
    backend = MusicGenBackend(hub_settings(tmp_path), lambda method, params: sent.append((method, params)))
    ensure_installed(backend, True, None, CancelToken())
    events = [p for m, p in sent if m == "download_progress"]
    assert events and all(e["backend"] == "musicgen" for e in events)
    assert events[-1]["state"] == "complete" and events[-1]["percent"] == 100.0
    assert events[-1]["files_completed"] == events[-1]["files_total"] == 6
    total = sum(len(b) for b in hub_env.files.values())
    assert events[-1]["bytes_downloaded"] == total
    completed = [e["files_completed"] for e in events]
    assert completed == sorted(completed)
    assert all(0 <= e["percent"] <= 100 for e in events)
    assert backend.is_installed()
    # + the in-place KV decoder (CPU): its version, KV precision and int8 kernel path
    tag = "nbits8" if nbits.fast_here() else "chain"
    assert backend.model_version() == f"musicgen-small-int8-main+kv6-kvf32-{tag}"

    # downloaded files are used as they are: later loads and generations never ask the server again
    n = len(hub_env.requests)
    audio = backend.generate(
        GenerationRequest("musicgen", "lofi", 0.5, 1, backend.validate({})),
        lambda *a, **k: None,
        CancelToken(),
    )
    assert audio.samples.shape == (16000, 1)
    assert len(hub_env.requests) == n
    backend.download(None, CancelToken())  # already there: no transfer
    assert [r for r in hub_env.requests[n:] if r[0] == "GET"] == []


def test_interrupted_transfer_resumes(hub_env, tmp_path):
    name = "small_i8/decoder_model_merged.onnx"
    hub_env.drop_once.add(name)
    progress = []
    paths = hub.download_variant(VARIANT, progress.append, CancelToken())
    gets = [r for r in hub_env.requests if r[0] == "GET" and r[1].endswith(name)]
    assert len(gets) == 2
    assert gets[0][2] is None  # first attempt: whole file, dropped halfway
    half = len(hub_env.files[name]) // 2
    # the second attempt asks only for the rest (from the last whole chunk written before the drop)
    assert gets[1][2] is not None and gets[1][2].startswith("bytes=")
    offset = int(gets[1][2][len("bytes=") :].rstrip("-"))
    assert 0 < offset <= half
    assert paths["decoder_merged"].read_bytes() == hub_env.files[name]
    assert progress[-1]["state"] == "complete"


def test_corrupted_file_is_detected_and_removed(hub_env, tmp_path):
    name = "small_fp32/text_encoder.onnx"
    hub_env.corrupt.add(name)
    events = []
    with pytest.raises(LofiError) as ei:
        hub.download_variant(VARIANT, events.append, CancelToken())
    assert ei.value.code == ErrorCode.MODEL_DOWNLOAD_FAILED
    assert name in ei.value.message and "sha256" in ei.value.message
    assert events[-1]["state"] == "error" and name in events[-1]["message"]
    assert hub.cached_files(VARIANT) is None
    assert hub.cached_file(VARIANT, VARIANT.file("text_encoder")) is None  # the bad file is gone
    hub_env.corrupt.clear()
    paths = hub.download_variant(VARIANT, None, CancelToken())  # a retry fetches it again, clean
    assert paths["text_encoder"].read_bytes() == hub_env.files[name]


def test_registry_size_and_hash_are_checked(hub_env):
    tok = hub_env.files["small/tokenizer.json"]
    good = hashlib.sha256(tok).hexdigest()
    for bad in (
        ModelFile("tokenizer", "small/tokenizer.json", size=len(tok) + 1),
        ModelFile("tokenizer", "small/tokenizer.json", size=len(tok), sha256="0" * 64),
    ):
        variant = dataclasses.replace(VARIANT, files=(bad,))
        with pytest.raises(LofiError) as ei:
            hub.download_variant(variant)
        assert ei.value.code == ErrorCode.MODEL_DOWNLOAD_FAILED and "small/tokenizer.json" in ei.value.message
    ok = dataclasses.replace(
        VARIANT, files=(ModelFile("tokenizer", "small/tokenizer.json", size=len(tok), sha256=good),)
    )
    assert hub.download_variant(ok)["tokenizer"].read_bytes() == tok


def test_missing_file_on_server_is_a_clear_download_error(hub_env):
    del hub_env.files["small_fp32/encodec_decode.onnx"]
    with pytest.raises(LofiError) as ei:
        hub.download_variant(VARIANT)
    assert ei.value.code == ErrorCode.MODEL_DOWNLOAD_FAILED
    assert "small_fp32/encodec_decode.onnx" in ei.value.message


def test_unreachable_hub_is_a_download_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # discard port: connection refused
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setattr(hub, "RETRY_SLEEP_SEC", 0.0)
    # huggingface_hub backs off 1+2+4+8+8 s before giving up on an unreachable host; skip the waiting
    monkeypatch.setattr("huggingface_hub.utils._http.time.sleep", lambda s: None)
    with pytest.raises(LofiError) as ei:
        hub.download_variant(VARIANT)
    assert ei.value.code == ErrorCode.MODEL_DOWNLOAD_FAILED
    assert "small/tokenizer.json" in ei.value.message


def test_cancel_between_files(hub_env):
    token = CancelToken()
    seen = []

    def progress(d):
        seen.append(d)
        if d["files_completed"] == 2:
            token.cancel()

    from lofi_daemon.errors import Cancelled

    with pytest.raises(Cancelled):
        hub.download_variant(VARIANT, progress, token)
    got = {r[1].rsplit("/resolve/main/", 1)[-1] for r in hub_env.requests if r[0] == "GET"}
    assert len(got) == 2  # the third file was never requested
    assert np.all([e["files_completed"] <= 2 for e in seen])


def test_download_backend_over_rpc_announces_completion_once(hub_env, daemon):
    d = daemon(LOFI_DEFAULT_BACKEND="musicgen", HF_HUB_OFFLINE="0")
    assert d.call("download_backend", {"backend": "musicgen"})["status"] == "started"
    d.wait_notification("download_progress", backend="musicgen", state="complete")
    d.call("ping")  # anything after the completion has been delivered by now
    finals = [
        n["params"]
        for n in d.notifications
        if n["method"] == "download_progress" and n["params"]["state"] != "downloading"
    ]
    assert [f["state"] for f in finals] == ["complete"]
    assert d.call("download_backend", {"backend": "musicgen"})["status"] == "already_installed"


# ---- a malicious or broken hub: server-supplied names never become paths -----------------------------------


def tree(root) -> set[str]:
    """Every file, folder and link under `root` (links not followed), as paths relative to it."""
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def outside_repo(root, before: set[str]) -> set[str]:
    """What appeared under `root` since `before`, except inside the repo's own cache folder."""
    repo = "hf/hub/models--" + VARIANT.repo_id.replace("/", "--")
    return {p for p in tree(root) - before if not (p == repo or p.startswith(repo + "/"))}


@pytest.mark.parametrize(
    "etag",
    [
        "../../../../escaped",  # lands at tmp_path/escaped (+ escaped.lock) through huggingface_hub's blob path
        "../../../escaped-" + "0" * 40,
        "not-a-hash",
        "0" * 39,
        "ABCDEF" + "0" * 58,  # upper case: the hub never sends it, and it would not match the blob name test
    ],
)
def test_malformed_etag_is_refused_before_any_write(hub_env, tmp_path, etag):
    name = "small/tokenizer.json"
    hub_env.etags[name] = etag
    (tmp_path / "hf").mkdir()
    before = tree(tmp_path)
    with pytest.raises(LofiError) as ei:
        hub.download_variant(VARIANT)
    assert ei.value.code == ErrorCode.MODEL_DOWNLOAD_FAILED
    assert "ETag" in ei.value.message and name in ei.value.message
    assert outside_repo(tmp_path, before) == set()
    assert not list((tmp_path / "hf").rglob("*escaped*"))
    assert [r for r in hub_env.requests if r[0] == "GET"] == []  # the body was never fetched


@pytest.mark.parametrize("commit", ["../../../../escaped", "main", "0" * 41, "g" * 40])
def test_malformed_commit_is_refused_before_any_write(hub_env, tmp_path, commit):
    hub_env.commit = commit
    (tmp_path / "hf").mkdir()
    before = tree(tmp_path)
    with pytest.raises(LofiError) as ei:
        hub.download_variant(VARIANT)
    assert ei.value.code == ErrorCode.MODEL_DOWNLOAD_FAILED and "commit" in ei.value.message
    assert outside_repo(tmp_path, before) == set()
    assert not list((tmp_path / "hf").rglob("*escaped*"))


def test_not_found_with_a_path_as_commit_writes_nothing(hub_env, tmp_path):
    """huggingface_hub records a 404 as an empty `.no_exist/<X-Repo-Commit>/<file>`; with `../` in the header
    that is an empty file (and folders) anywhere."""
    del hub_env.files["small/tokenizer.json"]
    hub_env.not_found_commit = "../../../../escaped"
    (tmp_path / "hf").mkdir()
    before = tree(tmp_path)
    with pytest.raises(LofiError) as ei:
        hub.download_variant(VARIANT)
    assert ei.value.code == ErrorCode.MODEL_DOWNLOAD_FAILED and "small/tokenizer.json" in ei.value.message
    assert outside_repo(tmp_path, before) == set()
    assert not list(tmp_path.rglob("*escaped*"))


def test_a_pinned_commit_must_be_what_the_hub_serves(hub_env, tmp_path):
    from tests.hub_server import COMMIT

    other = "f" * 40
    pinned = dataclasses.replace(VARIANT, commit=other)
    with pytest.raises(LofiError) as ei:
        hub.download_variant(pinned)
    assert ei.value.code == ErrorCode.MODEL_DOWNLOAD_FAILED and other in ei.value.message
    # the request asked for the pinned commit, not the branch
    assert all(f"/resolve/{other}/" in r[1] for r in hub_env.requests)
    assert pinned.model_version == VARIANT.model_version  # pinning does not change track identity
    ok = dataclasses.replace(VARIANT, commit=COMMIT)
    paths = hub.download_variant(ok)
    assert paths["tokenizer"].read_bytes() == hub_env.files["small/tokenizer.json"]
    assert f"/snapshots/{COMMIT}/" in str(paths["tokenizer"])
    assert hub.cached_files(ok) is not None


def test_git_blob_etag_is_checked_too(hub_env, tmp_path):
    """A small (non-LFS) file's ETag is its git blob id; a body that does not hash to it is refused."""
    name = "small/config.json"
    hub_env.corrupt.add(name)
    with pytest.raises(LofiError) as ei:
        hub.download_variant(VARIANT)
    assert ei.value.code == ErrorCode.MODEL_DOWNLOAD_FAILED and name in ei.value.message
    assert hub.cached_file(VARIANT, VARIANT.file("config")) is None


# ---- a corrupt model: refused at download, found by verify, repaired by fetching it again -----------------

DECODER = "small_i8/decoder_model_merged.onnx"


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def broken_onnx() -> bytes:
    """Parses as an ONNX model at the top level (ir_version, a graph field) but its graph is junk: what a bit
    flip inside a real model looks like to anything short of onnxruntime."""
    junk = bytes(range(256)) * 8
    return b"\x08\x08" + b"\x3a" + bytes([0x80 | (len(junk) & 0x7F), len(junk) >> 7]) + junk


@pytest.mark.parametrize("body", [b"<html>502 Bad Gateway</html>", b"\x08\x08\x3a\xff\xff\x03short"])
def test_corrupt_onnx_with_a_git_blob_etag_is_refused(hub_env, body):
    """A hub announcing the git blob id of what it serves (not a sha256) gets every hash check to pass; the
    ONNX structure check still refuses a file that is no model (here an error page, and a truncated one)."""
    hub_env.files[DECODER] = body
    hub_env.etags[DECODER] = git_blob_id(body)
    with pytest.raises(LofiError) as ei:
        hub.download_variant(VARIANT)
    assert ei.value.code == ErrorCode.MODEL_DOWNLOAD_FAILED and DECODER in ei.value.message
    assert "ONNX" in ei.value.message or "truncated" in ei.value.message
    assert hub.cached_file(VARIANT, VARIANT.file("decoder_merged")) is None  # not kept: a retry fetches it


def test_verify_finds_a_corrupted_file_and_repair_fetches_only_it(hub_env):
    from lofi_daemon.models import verify

    paths = hub.download_variant(VARIANT)
    assert all(r["ok"] for r in verify.verify_variant(VARIANT))
    blob = paths["decoder_merged"].resolve()
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte inside the graph
    blob.write_bytes(bytes(data))

    assert all(r["ok"] for r in verify.verify_variant(VARIANT, deep=False))  # cheap: structure only
    rows = {r["file"]: r for r in verify.verify_variant(VARIANT, deep=True)}
    assert not rows[DECODER]["ok"] and "sha256" in rows[DECODER]["problem"]
    assert all(r["ok"] for name, r in rows.items() if name != DECODER)

    n = len(hub_env.requests)
    assert verify.repair_variant(VARIANT, None, CancelToken()) == [DECODER]
    gets = [r[1] for r in hub_env.requests[n:] if r[0] == "GET"]
    assert len(gets) == 1 and gets[0].endswith(DECODER)
    assert paths["decoder_merged"].read_bytes() == hub_env.files[DECODER]
    assert all(r["ok"] for r in verify.verify_variant(VARIANT))


def test_load_failure_says_how_to_repair_and_repair_fixes_it(hub_env, daemon, tmp_path):
    """The hub once served a broken decoder under its own (consistent) sha256: download accepts it, loading
    fails. The error names the repair, `verify` finds nothing wrong with the hashes, and repair fetches
    everything again once the hub serves the right file."""
    good = hub_env.files[DECODER]
    hub_env.files[DECODER] = broken_onnx()
    d = daemon(LOFI_DEFAULT_BACKEND="musicgen", HF_HUB_OFFLINE="0", LOFI_THREADS="1")
    d.call("download_backend", {"backend": "musicgen"})
    d.wait_notification("download_progress", backend="musicgen", state="complete")
    assert d.call("download_backend", {"backend": "musicgen"})["status"] == "already_installed"

    r = d.call("generate", {"prompt": "lofi", "duration_sec": 5, "seed": 1})
    err = d.wait_notification("generation_error", track_id=r["track_id"])
    assert err["error_code"] == "MODEL_LOAD_FAILED"
    assert "lofi-daemon verify musicgen" in err["message"] and '"repair": true' in err["message"]
    assert err["hint"] in err["message"]

    hub_env.files[DECODER] = good  # the hub is fixed
    assert d.call("download_backend", {"backend": "musicgen", "repair": True})["status"] == "repairing"
    # every file verifies (the hub announced the broken file's own hash), so repair fetches them all
    done = d.wait_notification(
        "download_progress", backend="musicgen", repaired=[f.path for f in VARIANT.files]
    )
    assert done["state"] == "complete" and done["files_completed"] == 6
    r = d.call("generate", {"prompt": "lofi", "duration_sec": 5, "seed": 1})
    assert d.wait_notification("generation_complete", track_id=r["track_id"], timeout=120)["duration_sec"] > 0


def test_repair_of_a_local_model_folder_is_refused(daemon):
    from tests.musicgen_fixture import FIXTURE

    d = daemon(LOFI_DEFAULT_BACKEND="musicgen", LOFI_MUSICGEN_DIR=str(FIXTURE))
    reply = d.request("download_backend", {"backend": "musicgen", "repair": True})
    assert (
        reply["error"]["code"] == ErrorCode.INVALID_PARAMS
        and "nothing to repair" in reply["error"]["message"]
    )


def test_verify_cli_reports_and_download_repair_fixes(hub_env, tmp_path):
    import json
    import subprocess
    import sys

    from tests.daemon_client import daemon_env

    def cli(*args):
        env = daemon_env(tmp_path, HF_HUB_OFFLINE="0")
        return subprocess.run(
            [sys.executable, "-m", "lofi_daemon", *args], capture_output=True, text=True, env=env, timeout=120
        )

    assert cli("verify", "musicgen").returncode == 1  # nothing downloaded yet: every file is missing
    paths = hub.download_variant(VARIANT)
    out = cli("verify", "musicgen", "--json")
    assert out.returncode == 0, out.stdout + out.stderr
    assert json.loads(out.stdout)[0]["ok"] is True
    blob = paths["text_encoder"].resolve()
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF  # inside the graph: same size, same structure
    blob.write_bytes(bytes(data))
    out = cli("verify", "musicgen")
    assert out.returncode == 1 and "BAD small_fp32/text_encoder.onnx" in out.stdout
    assert "lofi-daemon download musicgen --repair" in out.stdout
    health = json.loads(cli("health", "--json").stdout)
    row = next(b for b in health["backends"] if b["name"] == "musicgen")
    assert row["verify"]["ok"] is True  # health is the cheap check: a same-size change needs the hashes
    out = cli("download", "musicgen", "--repair")
    assert out.returncode == 0 and "small_fp32/text_encoder.onnx" in out.stderr
    assert cli("verify", "musicgen").returncode == 0


def hub_connect_error() -> type[Exception]:
    """The "connection refused" error of the HTTP library the installed huggingface_hub really speaks (its
    session's): requests' (hub < 1.0, the test venv), httpx's (1.x) or httpx2's (≥ 2, a runtime-only install)."""
    import importlib

    from huggingface_hub import get_session

    library = importlib.import_module(type(get_session()).__module__.partition(".")[0])
    error = getattr(library, "ConnectError", None) or library.ConnectionError
    assert isinstance(error, type) and issubclass(error, Exception), (library, error)
    return error


def test_a_refused_connection_is_a_download_error_whatever_the_hub_speaks(tmp_path, monkeypatch):
    """Only requests' transport errors are OSErrors; httpx's and httpx2's (huggingface_hub ≥ 1.0, what a runtime-only
    install gets) are not. Whichever the installed hub uses, a refused connection must end as MODEL_DOWNLOAD_FAILED
    naming the file, after the retries."""
    from lofi_daemon.models import download

    connect_error = hub_connect_error()
    attempts = []

    def refuse(variant, f):
        attempts.append(f.path)
        raise connect_error("[Errno 111] Connection refused")

    monkeypatch.setattr(download, "_fetch_once", refuse)
    monkeypatch.setattr(download, "RETRY_SLEEP_SEC", 0.0)
    with pytest.raises(LofiError) as ei:
        download._fetch(VARIANT, VARIANT.files[0], lambda n: None)
    assert ei.value.code == ErrorCode.MODEL_DOWNLOAD_FAILED and "Connection refused" in ei.value.message
    assert VARIANT.files[0].path in ei.value.message and len(attempts) == 1 + download.RETRIES
