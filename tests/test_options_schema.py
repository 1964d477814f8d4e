"""`initialize` options: one strict schema, applied as a whole (a refused call changes nothing), a cache limit that
shrinks is reported and never deletes at once, and no non-finite number reaches the daemon's state."""

from __future__ import annotations

import json
import math

import pytest
from lofi_daemon.rpc.schemas.options import InitializeOptions
from pydantic import ValidationError

from tests.daemon_client import refusal
from tests.nvim_helpers import embedded_nvim


def error_of(reply):
    assert "error" in reply, reply
    return reply["error"]


def invalid(reply, field: str) -> str:
    """The error is INVALID_PARAMS and its message names `field`."""
    err = error_of(reply)
    assert (err["code"], err["data"]["error_code"]) == (-32602, "INVALID_PARAMS"), err
    assert field in err["message"], err
    return err["message"]


# ---- the plugin's options validate against the daemon's schema ------------------------------------------------


def plugin_options(tmp_path, setup: str) -> dict:
    """What lua/lofi/config.lua sends in `initialize`, JSON-encoded by Neovim exactly as on the wire."""
    with embedded_nvim(tmp_path) as nvim:
        nvim.exec_lua(setup)
        return json.loads(
            nvim.exec_lua("return vim.json.encode(require('lofi.config').initialize_options())")
        )


def test_plugin_default_options_validate(tmp_path):
    opts = plugin_options(tmp_path, "require('lofi.config').setup()")
    parsed = InitializeOptions.model_validate(opts)
    assert parsed.cache is not None and parsed.cache.max_mb == 500 and parsed.cache.format == "flac"
    assert parsed.playback is not None and parsed.playback.volume == pytest.approx(0.3)
    assert parsed.prefetch is not None and len(parsed.prefetch.presets or []) == 4


def test_plugin_customised_options_validate(tmp_path):
    opts = plugin_options(
        tmp_path,
        "require('lofi').setup({backend = 'ace_step', provider = 'cpu', threads = 2,"
        " models = {musicgen = {dir = '/m', variant = 'small-int8'}, ace_step = {variant = 'x'}},"
        " cache = {dir = '/tmp/c', max_mb = 12.5, max_tracks = 7, format = 'wav'},"
        " playback = {volume = 1, loop = 'track', crossfade_sec = 0, auto_play = false, stream = false,"
        "             device = 'pulse'},"
        " prefetch = {enabled = false, strategy = 'random_preset', trigger_percent = 75, presets = {'a', 'b'}}})",
    )
    parsed = InitializeOptions.model_validate(opts)
    assert parsed.default_backend == "ace_step" and parsed.threads == 2 and parsed.cache_dir == "/tmp/c"
    assert parsed.models is not None and parsed.models["musicgen"].dir == "/m"
    assert parsed.cache is not None and (parsed.cache.max_mb, parsed.cache.max_tracks) == (12.5, 7)
    assert (
        parsed.playback is not None and parsed.playback.loop == "track" and parsed.playback.device == "pulse"
    )
    assert parsed.prefetch is not None and parsed.prefetch.presets == ["a", "b"]


def test_plugin_generator_options_validate(tmp_path):
    """`generator` reaches the daemon as a list of words; one shell string runs through sh; none = no key."""
    opts = plugin_options(
        tmp_path,
        "require('lofi').setup({generator = {cmd = {'ssh', 'gpu-box', 'lofi-daemon', 'serve', '--generator'},"
        " backends = {'ace_step'}, retry = false, connect_timeout_sec = 60}})",
    )
    g = InitializeOptions.model_validate(opts).generator
    assert g is not None and g.cmd[:2] == ["ssh", "gpu-box"] and g.backends == ["ace_step"]
    assert (g.retry, g.connect_timeout_sec) == (False, 60)
    shell = plugin_options(
        tmp_path, "require('lofi').setup({generator = {cmd = 'ssh box lofi-daemon serve --generator'}})"
    )
    assert shell["generator"]["cmd"] == ["sh", "-c", "ssh box lofi-daemon serve --generator"]
    assert "generator" not in plugin_options(tmp_path, "require('lofi.config').setup()")


@pytest.mark.parametrize(
    "bad",
    [
        {"generator": {"cmd": ["ssh", ""]}},
        {"generator": {"cmd": ["x"], "connect_timeout_sec": 0}},
        {"cache": {"max_mb": float("nan")}},
        {"cache": {"max_mb": float("inf")}},
        {"playback": {"volume": float("nan")}},
        {"playback": {"crossfade_sec": float("inf")}},
        {"prefetch": {"trigger_percent": float("nan")}},
        {"threads": 2.0},
        {"threads": True},
        {"cache": {"max_tracks": True}},
        {"playback": {"auto_play": 1}},
        {"playback": {"volume": "0.5"}},
        {"prefetch": {"presets": ["  "]}},
        {"cache_dir": ""},
        {"models": {"musicgen": {"dir": "relative/models"}}},
        {"no_such_option": 1},
        {"playback": {"no_such_option": 1}},
    ],
)
def test_schema_refuses(bad):
    with pytest.raises(ValidationError):
        InitializeOptions.model_validate(bad)


# ---- through the real daemon ----------------------------------------------------------------------------------


def make_tracks(d, n: int, name: str = "keep") -> list[str]:
    ids = []
    for i in range(n):
        r = d.call("generate", {"prompt": f"{name} {i}", "duration_sec": 1, "seed": i})
        d.wait_notification("generation_complete", track_id=r["track_id"])
        ids.append(r["track_id"])
    return ids


@pytest.mark.parametrize(
    ("cache", "field"),
    [
        ({"max_mb": -1}, "max_mb"),
        ({"max_mb": 0}, "max_mb"),
        ({"max_tracks": 0.5}, "max_tracks"),
        ({"max_tracks": True}, "max_tracks"),
        ({"max_tracks": 0}, "max_tracks"),
        ({"max_mb": "abc", "max_tracks": 0.5}, "max_mb"),
        ({"format": "aiff"}, "format"),
    ],
)
def test_bad_cache_options_are_refused_and_delete_nothing(daemon, cache, field):
    d = daemon()
    ids = make_tracks(d, 2)
    invalid(d.request("initialize", {"options": {"cache": cache}}), f"options.cache.{field}")
    assert d.call("cache_stats")["max_mb"] == 500  # nothing of the refused call was applied
    assert sorted(t["track_id"] for t in d.call("cache_list")["tracks"]) == sorted(ids)
    # ... and nothing is deleted later either (once, a refused call left max_tracks=0 in force)
    ids += make_tracks(d, 1, "later")
    assert sorted(t["track_id"] for t in d.call("cache_list")["tracks"]) == sorted(ids)


def test_nan_max_mb_is_refused_and_cache_stats_keeps_working(daemon):
    d = daemon()
    ids = make_tracks(d, 1)
    body = b'{"jsonrpc": "2.0", "id": "nan", "method": "initialize", "params": {"options": {"cache": {"max_mb": NaN}}}}'
    d.send_raw(b"Content-Length: %d\r\n\r\n" % len(body) + body)
    # the NaN token is refused as params (or as JSON, by a stricter parser): either way it never reaches state
    assert refusal(d, "nan")["code"] in (-32602, -32700)
    stats = d.call("cache_stats")
    assert stats["max_mb"] == 500 and stats["count"] == 1
    assert [t["track_id"] for t in d.call("cache_list")["tracks"]] == ids


def test_shrinking_the_cache_limit_is_reported_and_applied_at_the_next_eviction(daemon):
    d = daemon()
    # nothing plays (the track playing and the next one are never evicted)
    d.call("initialize", {"options": {"playback": {"auto_play": False}, "prefetch": {"enabled": False}}})
    ids = make_tracks(d, 3)
    d.call("cache_favourite", {"track_id": ids[0]})
    init = d.call("initialize", {"options": {"cache": {"max_tracks": 1}}})
    # 3 tracks, limit 1, the favourite stays: the next eviction removes the 2 others, and the reply says so
    assert init["cache"] == {"max_mb": 500, "max_tracks": 1, "would_evict": 2}
    warning = d.wait_notification("log", level="warning")
    assert "removes the 2 least recently used" in warning["message"]
    assert len(d.call("cache_list")["tracks"]) == 3  # nothing deleted yet
    new = make_tracks(d, 1, "new")[0]
    kept = sorted(t["track_id"] for t in d.call("cache_list")["tracks"])
    assert kept == sorted([ids[0], new])
    again = d.call("initialize", {"options": {"cache": {"max_tracks": 5}}})
    assert again["cache"]["would_evict"] == 0


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"threads": "4"}, "options.threads"),
        ({"provider": 3}, "options.provider"),
        ({"cache": []}, "options.cache"),
        ({"playback": {"volume": "loud"}}, "options.playback.volume"),
        ({"playback": {"crossfade_sec": -1}}, "options.playback.crossfade_sec"),
        ({"playback": {"loop": "forever"}}, "options.playback.loop"),
        ({"prefetch": {"strategy": "psychic"}}, "options.prefetch.strategy"),
        ({"models": {"musicgen": {"dir": 5}}}, "options.models.musicgen.dir"),
        ({"models": {"nope": {"dir": "/x"}}}, "nope"),
        ({"default_backend": ""}, "options.default_backend"),
        ({"default_backend": "nope"}, "nope"),
        ({"frobnicate": True}, "options.frobnicate"),
    ],
)
def test_wrong_initialize_options_are_invalid_params(daemon, options, field):
    d = daemon()
    invalid(d.request("initialize", {"options": options}), field)
    assert d.call("ping")["pong"] is True


def test_a_refused_initialize_changes_nothing(daemon, tmp_path):
    d = daemon()
    before = d.call("initialize", {"options": {"playback": {"volume": 0.25}, "prefetch": {"enabled": False}}})
    state = d.call("status")["playback"]
    assert state["volume"] == pytest.approx(0.25)
    moved = tmp_path / "moved"
    reply = d.request(
        "initialize",
        {
            "options": {
                "cache_dir": str(moved),
                "default_backend": "musicgen",
                "playback": {"volume": 0.9},
                "prefetch": {"enabled": True},
                "cache": {"max_mb": -1},
            }
        },
    )
    invalid(reply, "options.cache.max_mb")
    status = d.call("status")
    assert status["cache_dir"] == before["cache_dir"] and not moved.exists()
    assert status["playback"]["volume"] == pytest.approx(0.25)
    assert d.call("prefetch_config")["enabled"] is False
    assert d.call("get_backends")["default_backend"] == "tone"


def test_no_non_finite_number_reaches_the_player(daemon):
    d = daemon()
    for method, params, field in [
        ("volume", {"level": 1e999}, "level"),
        ("crossfade", {"seconds": 1e999}, "seconds"),
        ("seek", {"position_sec": 1e999}, "position_sec"),
        ("prefetch_config", {"trigger_percent": -1e999}, "trigger_percent"),
        ("generate", {"prompt": "x", "duration_sec": 1e999}, "duration_sec"),
    ]:
        # json.dumps writes inf as the non-standard token Infinity; 1e999 is valid JSON that overflows to inf
        body = json.dumps({"jsonrpc": "2.0", "id": method, "method": method, "params": params})
        body = body.replace("Infinity", "1e999").encode()
        d.send_raw(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        err = refusal(d, method)  # refused as JSON (PARSE_ERROR) or by the schema, naming the field
        assert err["code"] == -32700 or field in err["message"], err
    state = d.call("status")["playback"]
    assert state["state"] == "stopped"
    assert all(math.isfinite(v) for v in state.values() if isinstance(v, float))
    assert d.call("pause")["state"] in ("stopped", "paused")


def test_plugin_config_refuses_what_the_daemon_would_refuse(tmp_path):
    with embedded_nvim(tmp_path) as nvim:
        ok, errors = nvim.exec_lua(
            "local c = require('lofi.config')"
            " local cfg = vim.tbl_deep_extend('force', c.defaults, {threads = 2.5, cache = {max_tracks = 0.5}})"
            " return {c.validate(cfg)}"
        )
    assert ok is False
    assert any("threads: expected an integer" in e for e in errors), errors
    assert any("cache.max_tracks: expected nil or an integer" in e for e in errors), errors


def test_every_rpc_schema_refuses_non_finite_numbers_and_coercion():
    """A guard for schemas added later: every params model shares the strict, finite-only config."""
    import importlib
    import pkgutil

    import lofi_daemon.rpc.schemas as schemas
    from pydantic import BaseModel

    models = []
    for info in pkgutil.iter_modules(schemas.__path__):
        module = importlib.import_module(f"{schemas.__name__}.{info.name}")
        models += [v for v in vars(module).values() if isinstance(v, type) and issubclass(v, BaseModel)]
    assert len(models) > 15
    for model in models:
        if model is BaseModel:
            continue
        assert model.model_config.get("allow_inf_nan") is False or not any(
            "float" in str(f.annotation) for f in model.model_fields.values()
        ), model
        if model.__name__ != "InitializeParams":  # LSP clients add their own fields at its top level
            assert model.model_config.get("strict") is True, model


def test_relative_environment_paths_are_pinned_at_start(tmp_path, monkeypatch):
    from lofi_daemon.config import Settings

    monkeypatch.chdir(tmp_path)
    s = Settings.from_env({"LOFI_LOG_DIR": "logs", "LOFI_MUSICGEN_DIR": "models/mg"})
    assert s.log_dir == tmp_path / "logs" and s.models["musicgen"].dir == tmp_path / "models" / "mg"
