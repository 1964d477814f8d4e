"""Style presets: one data file with a schema, inheritance, `generate preset=<name>` in the daemon and in Neovim."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from lofi_daemon import presets
from pydantic import ValidationError

from tests.nvim_helpers import embedded_nvim


def test_shipped_taxonomy_has_38_presets_in_5_categories():
    ps = presets.load()
    assert len(ps) == 38
    assert Counter(p.category for p in ps.values()) == {
        "core": 10,
        "seasonal": 8,
        "thematic": 10,
        "instrumental": 6,
        "vocal": 4,
    }
    for p in ps.values():
        assert list(p.tags) and set(p.tags) == set(presets.TAG_FIELDS), p.name
        assert p.prompt.split(", ") == p.tag_list  # upstream reads the prompt back by splitting on ", "


def test_committed_schema_is_the_models_schema():
    assert json.loads(presets.SCHEMA.read_text()) == presets.schema()


def test_inheritance_overrides_per_field_and_keeps_the_rest():
    ps = presets.presets()
    xmas, fire, root = ps["christmas_lofi"], ps["winter_fireplace"], ps["lofi_hiphop"]
    assert xmas.chain == ["christmas_lofi", "winter_fireplace", "lofi_hiphop"]
    assert xmas.tags["instruments"][:2] == ["celesta", "sleigh bells"]  # its own
    assert xmas.tags["mood"] == fire.tags["mood"] == ["cozy", "peaceful"]  # from its parent
    assert xmas.tags["tempo"] == root.tags["tempo"]  # from the root
    assert xmas.instrumental and xmas.prompt.endswith("instrumental")
    rap = ps["lofi_rap"]
    assert rap.needs_lyrics and not rap.instrumental and "instrumental" not in rap.tag_list
    assert ps["vocal_chops"].lyrics.startswith("[chorus]")
    # a duplicate tag across fields appears once ("lofi hip hop" is in tokyo_train's genre and its parent's)
    assert len(ps["boom_bap"].tag_list) == len(set(ps["boom_bap"].tag_list))


def _file(tmp_path, **over):
    base = {
        "version": 1,
        "categories": {"core": "x"},
        "presets": {
            "a": {"category": "core", "description": "a", "tags": {f: [f] for f in presets.TAG_FIELDS}},
            "b": {"category": "core", "description": "b", "extends": "a", "tags": {"mood": ["sad"]}},
        },
    }
    base["presets"].update(over)
    path = tmp_path / "p.json"
    path.write_text(json.dumps(base))
    return path


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            {"c": {"category": "core", "description": "c", "extends": "zzz", "tags": {}}},
            "unknown preset 'zzz'",
        ),
        (
            {
                "c": {"category": "core", "description": "c", "extends": "d", "tags": {}},
                "d": {"category": "core", "description": "d", "extends": "c", "tags": {}},
            },
            "cycle",
        ),
        ({"c": {"category": "core", "description": "c", "tags": {"mood": ["x"]}}}, "has no genre"),
        (
            {"c": {"category": "core", "description": "c", "extends": "a", "tags": {"mood": ["a, b"]}}},
            "commas",
        ),
        ({"c": {"category": "pop", "description": "c", "extends": "a", "tags": {}}}, "category"),
        ({"c": {"category": "core", "description": "c", "extends": "a", "tags": {"bpm": ["x"]}}}, "bpm"),
    ],
)
def test_bad_preset_files_are_refused_with_the_reason(tmp_path, extra, message):
    with pytest.raises(ValidationError, match=message):
        presets.load(_file(tmp_path, **extra))
    assert presets.load(_file(tmp_path))["b"].tags["mood"] == ["sad"]


def test_unknown_preset_suggests_the_nearest():
    with pytest.raises(KeyError, match="did you mean `rainy_night`"):
        presets.get("rainy_nite")


def test_generate_with_a_preset_uses_its_tags_then_the_words(daemon):
    d = daemon()
    want = presets.get("rainy_night").prompt
    r = d.call("generate", {"preset": "rainy_night", "duration_sec": 1, "seed": 3})
    done = d.wait_notification("generation_complete", track_id=r["track_id"])
    assert done["prompt"] == want
    r2 = d.call("generate", {"preset": "rainy_night", "prompt": "with cello", "duration_sec": 1, "seed": 3})
    done2 = d.wait_notification("generation_complete", track_id=r2["track_id"])
    assert done2["prompt"] == f"{want}, with cello" and r2["track_id"] != r["track_id"]
    # the same words typed out are the same track
    r3 = d.call("generate", {"prompt": want, "duration_sec": 1, "seed": 3})
    assert r3["track_id"] == r["track_id"]
    err = d.request("generate", {"preset": "rainy_nite"})["error"]
    assert err["data"]["error_code"] == "INVALID_PROMPT" and "rainy_night" in err["message"]
    assert d.request("generate", {})["error"]["data"]["error_code"] == "INVALID_PROMPT"


def test_neovim_completes_and_sends_preset_names(tmp_path):
    with embedded_nvim(tmp_path) as nvim:
        got = nvim.funcs.getcompletion("Lofi generate preset=", "cmdline")
        assert len(got) == 38 and "preset=rainy_night" in got and got == sorted(got)
        assert "preset=" in nvim.funcs.getcompletion("Lofi generate ", "cmdline")
        parsed = nvim.exec_lua("return require('lofi.args').parse_generate('preset=lofi_rap late night')")
        assert parsed == {"preset": "lofi_rap", "prompt": "late night"}
        # a preset alone is the whole prompt: the configured default prompt is not added to it
        sent = nvim.exec_lua(
            "local client = require('lofi.client') "
            "local sent = {} client.request = function(m, p) sent[#sent + 1] = p end "
            "require('lofi').generate('preset=rainy_night') require('lofi').generate('seed=1') return sent"
        )
        assert sent[0]["preset"] == "rainy_night" and "prompt" not in sent[0]
        assert sent[1]["prompt"]  # without a preset the default prompt still fills in
