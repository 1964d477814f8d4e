"""`lofi-daemon convert riffusion`: the one-time ONNX export of downloaded PyTorch weights into lofi's model
folder — clear refusals without the export tools, without weights or with a folder of something else, nothing
left behind by a failed export, and (torch) a real conversion of the tiny fixture's PyTorch weights that the
backend then finds and that computes what the committed fixture computes."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
from lofi_daemon import cli
from lofi_daemon.backends.riffusion import convert
from lofi_daemon.backends.riffusion.backend import RiffusionBackend
from lofi_daemon.config import Settings
from lofi_daemon.errors import ErrorCode, LofiError

from tests.riffusion_helpers import FIXTURE, rel_err


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("LOFI_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("LOFI_LOG_DIR", str(tmp_path / "log"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.delenv("LOFI_RIFFUSION_DIR", raising=False)
    return tmp_path


def diffusers_copy(dst):
    """The tiny fixture as the hub lays riffusion out (diffusers): its PyTorch weights, tokenizer, scheduler."""
    shutil.copytree(FIXTURE / "torch", dst)
    for part in ("tokenizer", "scheduler"):
        shutil.copytree(FIXTURE / part, dst / part)
    return dst


def test_missing_export_tools_are_named_with_the_setup_step(env, monkeypatch, capsys):
    monkeypatch.setattr(convert, "missing_export_modules", lambda: ["torch", "optimum"])
    assert cli.main(["convert", "riffusion", "--model", str(diffusers_copy(env / "src"))]) == 1
    err = capsys.readouterr().err
    assert "torch, optimum" in err and "scripts/setup --export" in err and "BACKEND_NOT_INSTALLED" in err


def test_without_weights_it_says_to_download_first(env, monkeypatch, capsys):
    monkeypatch.setattr(convert, "missing_export_modules", lambda: [])
    assert cli.main(["convert", "riffusion"]) == 1
    assert "lofi-daemon download riffusion" in capsys.readouterr().err


def test_a_folder_of_something_else_is_refused(env, monkeypatch):
    monkeypatch.setattr(convert, "missing_export_modules", lambda: [])
    (env / "other").mkdir()
    with pytest.raises(LofiError) as err:
        convert.convert(env / "other", env / "out")
    assert err.value.code == ErrorCode.MODEL_NOT_FOUND and "diffusers" in err.value.message


def test_a_failed_export_leaves_nothing_behind(env, monkeypatch):
    monkeypatch.setattr(convert, "missing_export_modules", lambda: [])
    src = diffusers_copy(env / "src")
    out = env / "models" / "riffusion-onnx"

    def half_export(cmd, check):  # writes part of the layout, then fails
        tmp = cmd[cmd.index("--out") + 1]
        shutil.copytree(FIXTURE / "unet", f"{tmp}/unet")
        return subprocess.CompletedProcess(cmd, 1)

    with pytest.raises(LofiError) as err:
        convert.convert(src, out, run=half_export)
    assert err.value.code == ErrorCode.MODEL_LOAD_FAILED and "exit 1" in err.value.message
    assert list((env / "models").iterdir()) == []


@pytest.mark.torch
@pytest.mark.slow
def test_convert_the_tiny_pytorch_weights(env, capsys):
    pytest.importorskip("torch")
    pytest.importorskip("optimum.exporters.onnx")
    from lofi_daemon.backends.ace_step.sessions import session_factory
    from lofi_daemon.backends.riffusion.pipeline import RiffusionPipeline

    assert cli.main(["convert", "riffusion", "--model", str(diffusers_copy(env / "src"))]) == 0
    backend = RiffusionBackend(Settings.from_env())
    out = backend.converted_dir()
    assert str(out) in capsys.readouterr().out
    assert backend.is_installed() and backend.local_dir == out  # no setting needed
    new = RiffusionPipeline(out, session_factory(threads=1))
    old = RiffusionPipeline(FIXTURE, session_factory(threads=1))
    ctx = new.encode_text(["lofi piano", ""])
    assert rel_err(ctx, old.encode_text(["lofi piano", ""])) < 1e-6
    lat = np.random.default_rng(0).standard_normal((1, 4, 8, 8), dtype=np.float32)
    assert rel_err(new.unet(lat, 500.0, ctx[:1]), old.unet(lat, 500.0, ctx[:1])) < 1e-6
    assert rel_err(new.decode(lat), old.decode(lat)) < 1e-6
