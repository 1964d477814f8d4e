"""`lofi-daemon convert riffusion`: the one-time ONNX export of downloaded PyTorch weights into lofi's model
folder — clear refusals without the export tools, without weights or with a folder of something else, nothing
left behind by a failed export, and (torch) a real conversion of the tiny fixture's PyTorch weights that the
backend then finds and that computes what the committed fixture computes."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

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


def onnx_copy(dst):
    """The tiny fixture's ONNX export, as `lofi-daemon convert riffusion` leaves it."""
    shutil.copytree(FIXTURE, dst, ignore=shutil.ignore_patterns("torch"))
    return dst


def quantizer(returncode=0, writes=("model_int8.onnx", "model_int8.onnx.data")):
    """A stand-in for scripts/quantize_riffusion.py: writes `writes` beside its --out file, exits `returncode`."""
    calls = []

    def run(cmd, check):
        calls.append(cmd)
        out = cmd[cmd.index("--out") + 1]
        for name in writes:
            (Path(out).parent / name).write_text("new " + name)
        return subprocess.CompletedProcess(cmd, returncode)

    run.calls = calls
    return run


def test_int8_in_place_moves_the_new_files_in_and_replaces_an_older_int8(env):
    d = onnx_copy(env / "onnx")
    (d / "unet" / "model_int8.onnx").write_text("old")
    run = quantizer()
    assert convert.add_int8(d, run) == d / "unet" / "model_int8.onnx"
    assert run.calls[0][1:3] == [str(convert.QUANTIZER), str(d)]
    assert (d / "unet" / "model_int8.onnx").read_text() == "new model_int8.onnx"
    assert (d / "unet" / "model_int8.onnx.data").read_text() == "new model_int8.onnx.data"
    assert sorted(f.name for f in (d / "unet").iterdir()) == [
        "config.json",
        "model.onnx",
        "model_int8.onnx",
        "model_int8.onnx.data",
    ]  # no temporary folder left


def test_a_failed_quantisation_in_place_leaves_the_conversion_as_it_was(env, capsys):
    d = onnx_copy(env / "onnx")
    before = sorted(f.name for f in (d / "unet").iterdir())
    with pytest.raises(LofiError) as err:
        convert.add_int8(d, quantizer(returncode=1))
    assert err.value.code == ErrorCode.MODEL_LOAD_FAILED and "int8 failed (exit 1" in err.value.message
    assert sorted(f.name for f in (d / "unet").iterdir()) == before
    with pytest.raises(LofiError) as err:  # exit 0 but no model written
        convert.add_int8(d, quantizer(writes=("model_int8.onnx.data",)))
    assert "no model_int8.onnx written" in err.value.message
    assert sorted(f.name for f in (d / "unet").iterdir()) == before


def test_int8_needs_a_complete_conversion(env, monkeypatch, capsys):
    (env / "half" / "unet").mkdir(parents=True)
    with pytest.raises(LofiError) as err:
        convert.add_int8(env / "half", quantizer())
    assert (
        err.value.code == ErrorCode.MODEL_NOT_FOUND and "lofi-daemon convert riffusion" in err.value.message
    )
    # the command on a folder without a conversion converts first (here: no weights to convert, said so)
    monkeypatch.setattr(convert, "missing_export_modules", lambda: [])
    assert cli.main(["convert", "riffusion", "--int8", "--out", str(env / "half")]) == 1
    assert "lofi-daemon download riffusion" in capsys.readouterr().err


def test_convert_with_int8_quantises_inside_the_temporary_folder_and_a_failure_leaves_nothing(
    env, monkeypatch
):
    monkeypatch.setattr(convert, "missing_export_modules", lambda: [])
    src = diffusers_copy(env / "src")
    out = env / "models" / "riffusion-onnx"
    seen = []

    def export_then(quantize):
        def run(cmd, check):
            if cmd[1] == str(convert.SCRIPT):
                onnx_copy(Path(cmd[cmd.index("--out") + 1]))
                return subprocess.CompletedProcess(cmd, 0)
            seen.append(cmd[2])  # the folder quantised: the temporary one, never `out`
            return quantize(cmd, check)

        return run

    with pytest.raises(LofiError) as err:
        convert.convert(src, out, run=export_then(quantizer(returncode=1)), int8=True)
    assert "int8 failed (exit 1" in err.value.message
    assert list((env / "models").iterdir()) == [] and seen[0] != str(out)

    assert convert.convert(src, out, run=export_then(quantizer()), int8=True) == out
    assert (out / "unet" / "model_int8.onnx").is_file() and not convert.missing_files(out)
    assert [p.name for p in (env / "models").iterdir()] == ["riffusion-onnx"]


@pytest.mark.parametrize("outdated", [False, True])
def test_int8_on_lofis_own_conversion_reexports_an_outdated_one_first(env, monkeypatch, capsys, outdated):
    """Quantising an outdated UNet would leave a folder the backend still refuses, so `--int8` converts it again
    (here there are no weights to convert it from, which it says) instead of adding int8 to it."""
    own = RiffusionBackend(Settings.from_env()).converted_dir()
    onnx_copy(own)
    if outdated:
        index = own / "model_index.json"
        index.write_text(index.read_text().replace('"lofi_unet_graph"', '"lofi_unet_graph_old"'))
    monkeypatch.setattr(convert, "missing_export_modules", lambda: [])
    added = []
    monkeypatch.setattr(convert, "add_int8", lambda d: added.append(d) or d / "unet" / "model_int8.onnx")
    code = cli.main(["convert", "riffusion", "--int8"])
    out, err = capsys.readouterr()
    if outdated:
        assert code == 1 and added == [] and "converting it again" in out and "lofi-daemon download" in err
    else:
        assert code == 0 and added == [own] and "int8 UNet added" in out
