"""`lofi-lora prompts`, `metadata` and `dataset`: upstream's text files, the dataset folder's records, and the
Hugging Face dataset upstream's trainer reads."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import soundfile as sf
from lofi_daemon import presets

from scripts.lofi_lora import cli, dataset, metadata
from scripts.lofi_lora.errors import ENVIRONMENT, FAILED_INPUT, USAGE

FIXTURE = Path(__file__).parent / "fixtures" / "hf_dataset_upstream"


def run_json(capsys, *argv: str) -> tuple[int, dict]:
    code = cli.main([*argv, "--json", "--quiet"])
    out = capsys.readouterr().out.strip().splitlines()
    return code, json.loads(out[-1]) if out else {}


@pytest.fixture
def data(tmp_path, monkeypatch) -> Path:
    """A dataset folder with five prepared tracks (one second each: nothing here reads their length)."""
    d = tmp_path / "data"
    (d / "audio").mkdir(parents=True)
    rng = np.random.default_rng(1)
    for name in ("a", "b", "c", "d", "e"):
        sf.write(str(d / "audio" / f"{name}.flac"), rng.uniform(-0.5, 0.5, (48_000, 2)), 48_000)
    monkeypatch.setenv("LOFI_LORA_DATA_DIR", str(d))
    return d


def read(p: Path) -> str:
    return p.read_text(encoding="utf-8")


def test_batch_prompts_write_upstreams_files(data, capsys):
    code, res = run_json(capsys, "prompts", "--preset", "rainy_night", "--tags", "vinyl crackle, 70 bpm")
    assert code == 0 and res["counts"] == {"written": 5}
    want = presets.get("rainy_night").prompt + ", 70 bpm"  # "vinyl crackle" is already a preset tag
    assert read(data / "audio" / "a_prompt.txt") == want + "\n"
    assert read(data / "audio" / "a_lyrics.txt") == "[instrumental]\n"
    assert metadata.load(data).tracks["c"].preset == "rainy_night"
    # existing files are kept unless --force
    code, res = run_json(capsys, "prompts", "a", "--preset", "coffee_shop")
    assert res["tracks"]["a"]["status"] == "kept" and metadata.load(data).tracks["a"].preset == "rainy_night"
    code, res = run_json(capsys, "prompts", "a", "--preset", "coffee_shop", "--force")
    assert read(data / "audio" / "a_prompt.txt").strip() == presets.get("coffee_shop").prompt


def test_prompts_follow_metadata_assignment_and_need_lyrics_for_sung_presets(data, tmp_path, capsys):
    assert run_json(capsys, "metadata", "assign", "a", "b", "--preset", "lofi_rap")[0] == 0
    assert run_json(capsys, "metadata", "assign", "c", "--preset", "vocal_chops")[0] == 0
    lyrics = tmp_path / "lyrics"
    lyrics.mkdir()
    (lyrics / "a.txt").write_text("late night on the keys\nrain on the glass\n")
    code, res = run_json(capsys, "prompts", "--lyrics-dir", str(lyrics))
    t = res["tracks"]
    assert t["a"]["status"] == "written" and read(data / "audio" / "a_lyrics.txt").startswith("[verse]\nlate")
    assert t["b"]["status"] == "skipped" and "needs lyrics" in t["b"]["reason"]
    assert read(data / "audio" / "c_lyrics.txt").strip() == presets.get("vocal_chops").lyrics
    assert t["d"] == {"status": "skipped", "reason": "no preset: pass --preset or `metadata assign`"}
    assert res["counts"] == {"written": 2, "skipped": 3}


def test_interactive_prompts_read_answers_from_stdin(data, capsys, monkeypatch):
    listing = sorted(presets.presets().values(), key=lambda p: (presets.CATEGORIES.index(p.category), p.name))
    number = next(i for i, p in enumerate(listing, 1) if p.name == "male_vocal_lofi")
    answers = f"nonsense\n{number}\nwarm tape, 70 bpm\n[verse]\nhello\n[chorus]\nbye\n\n"
    monkeypatch.setattr("sys.stdin", io.StringIO(answers))
    code, res = run_json(capsys, "prompts", "b", "--interactive")
    assert code == 0 and res["tracks"]["b"]["preset"] == "male_vocal_lofi"
    assert read(data / "audio" / "b_lyrics.txt") == "[verse]\nhello\n[chorus]\nbye\n"
    assert read(data / "audio" / "b_prompt.txt").strip().endswith("low register, warm tape, 70 bpm")
    monkeypatch.setattr("sys.stdin", io.StringIO("rainy_night\n"))  # input ends before the tags question
    assert run_json(capsys, "prompts", "b", "-i")[0] == USAGE
    assert run_json(capsys, "prompts", "-i")[0] == USAGE  # five tracks: interactive needs one


def test_prompts_list_and_bad_names(data, capsys):
    code, res = run_json(capsys, "prompts", "--list")
    assert len(res["presets"]) == 38 and res["presets"]["christmas_lofi"]["extends"] == ["winter_fireplace"]
    code, res = run_json(capsys, "prompts", "--preset", "rainy_nite")
    assert code == USAGE and "rainy_night" in res["error"]
    assert run_json(capsys, "prompts", "zzz", "--preset", "rainy_night")[0] == USAGE


def test_metadata_records_sources_scores_and_distribution(data, capsys):
    run_json(capsys, "metadata", "assign", "a", "b", "--preset", "rainy_night")
    run_json(capsys, "metadata", "assign", "c", "--preset", "christmas_lofi")
    code, _ = run_json(
        capsys, "metadata", "source", "a", "b", "--provider", "Ann", "--licence", "CC-BY-4.0", "--cost", "2.5",
        "--date", "2026-11-01",
    )  # fmt: skip
    assert code == 0
    assert run_json(capsys, "metadata", "score", "a", "--rater", "bo", "--score", "4")[0] == 0
    assert run_json(capsys, "metadata", "score", "a", "--rater", "cy", "--score", "5")[0] == 0
    code, res = run_json(capsys, "metadata", "stats")
    dist = res["distribution"]
    assert dist["categories"] == {
        "core": 0, "seasonal": 1, "thematic": 2, "instrumental": 0, "vocal": 0, "unassigned": 2,
    }  # fmt: skip
    assert dist["presets"] == {"christmas_lofi": 1, "rainy_night": 2} and dist["cost"] == {"USD": 5.0}
    assert dist["licences"] == {"CC-BY-4.0": 2} and dist["mean_human_score"] == 4.5
    raw = json.loads((data / "metadata" / "tracks.json").read_text())
    assert raw["tracks"]["a"]["source"]["date"] == "2026-11-01"
    # bad input is refused before anything is written
    assert run_json(capsys, "metadata", "score", "a", "--rater", "x", "--score", "9")[0] == USAGE
    assert run_json(capsys, "metadata", "assign", "zz", "--preset", "rainy_night")[0] == USAGE
    assert run_json(capsys, "metadata", "source", "a", "--provider", "x")[0] == USAGE
    assert (
        run_json(capsys, "metadata", "source", "a", "--provider", "x", "--licence", "y", "--date", "1/2")[0]
        == USAGE
    )
    assert json.loads((data / "metadata" / "tracks.json").read_text()) == raw


def test_metadata_file_is_validated_by_its_schema(data, capsys):
    assert json.loads(metadata.SCHEMA.read_text()) == metadata.schema()
    path = metadata.tracks_path(data)
    path.parent.mkdir()
    path.write_text(json.dumps({"version": 1, "tracks": {"a": {"preset": "nope"}}}))
    code, res = run_json(capsys, "metadata", "check")
    assert code == FAILED_INPUT and "unknown preset" in res["error"]
    path.write_text(
        json.dumps({"version": 1, "tracks": {"a": {"human_scores": [{"rater": "x", "score": 0}]}}})
    )
    assert run_json(capsys, "metadata", "stats")[0] == FAILED_INPUT
    path.write_text(json.dumps({"version": 1, "tracks": {"a": {}, "gone": {}}}))
    code, res = run_json(capsys, "metadata", "check")
    assert code == 0 and res["orphans"] == ["gone"] and res["unrecorded"] == ["b", "c", "d", "e"]


def test_organize_moves_tracks_into_category_folders(data, capsys):
    run_json(capsys, "prompts", "a", "b", "--preset", "rainy_night")
    run_json(capsys, "metadata", "assign", "b", "--preset", "piano_lofi")
    code, res = run_json(capsys, "metadata", "organize", "--dry-run")
    assert res["moved"] == 6 and (data / "audio" / "a.flac").exists()
    code, res = run_json(capsys, "metadata", "organize")
    assert sorted(
        p.relative_to(data / "audio").as_posix() for p in (data / "audio").rglob("*_prompt.txt")
    ) == [
        "instrumental/b_prompt.txt",
        "thematic/a_prompt.txt",
    ]
    assert (data / "audio" / "thematic" / "a.flac").exists() and (data / "audio" / "c.flac").exists()
    # later steps find tracks in category folders
    code, res = run_json(capsys, "dataset", "--val-fraction", "0")
    assert code == 0 and res["counts"]["tracks"] == 2


def test_dataset_files_equal_what_datasets_writes(tmp_path):
    """The fixture is `Dataset.from_list(rows * 3).save_to_disk(...)` from datasets 3.4.1 (upstream's pin), as
    upstream's convert2hf_dataset.py calls it: our data file and info are byte for byte the same."""
    rows = [
        {
            "keys": "rain",
            "filename": "/data/audio/rain.flac",
            "tags": ["lofi hip hop", "mellow", "rhodes piano"],
            "speaker_emb_path": "",
            "norm_lyrics": "[instrumental]",
            "recaption": {},
        },
        {
            "keys": "café",
            "filename": "/data/audio/core/café.flac",
            "tags": ["jazz hop"],
            "speaker_emb_path": "",
            "norm_lyrics": "[verse]\nla la\n[chorus]\noh",
            "recaption": {},
        },
    ]
    dataset.write_hf_dataset(tmp_path / "ours", rows * 3, "0123456789abcdef")
    for name in (dataset.DATA_FILE, "dataset_info.json"):
        assert (tmp_path / "ours" / name).read_bytes() == (FIXTURE / name).read_bytes(), name
    ours, ref = (json.loads((d / "state.json").read_text()) for d in (tmp_path / "ours", FIXTURE))
    assert {**ours, "_fingerprint": None} == {**ref, "_fingerprint": None}


def _rows(folder: Path) -> list[dict]:
    with pa.memory_map(str(folder / dataset.DATA_FILE)) as f:
        return pa.ipc.open_stream(f).read_all().to_pylist()


def test_dataset_split_repeat_hash_and_counts(data, capsys):
    run_json(capsys, "prompts", "--preset", "lofi_hiphop")
    code, res = run_json(capsys, "dataset", "--repeat", "3", "--seed", "7")
    assert code == 0
    assert res["counts"] == {
        "tracks": 5, "train_tracks": 4, "validation_tracks": 1, "train_rows": 12, "validation_rows": 1,
        "skipped": 0,
    }  # fmt: skip
    out = data / "dataset"
    train, val = _rows(out / "train"), _rows(out / "validation")
    assert [r["keys"] for r in val] == res["validation_keys"]
    assert sorted({r["keys"] for r in train} | {r["keys"] for r in val}) == ["a", "b", "c", "d", "e"]
    assert len(train) == 12 and not {r["keys"] for r in train} & {r["keys"] for r in val}
    row = train[0]
    assert row["tags"] == presets.get("lofi_hiphop").tag_list and row["norm_lyrics"] == "[instrumental]"
    assert row["speaker_emb_path"] == "" and row["recaption"] == {} and Path(row["filename"]).is_absolute()
    assert json.loads((out / "manifest.json").read_text())["content_hash"] == res["content_hash"]
    # the same data and seed: the same split and hash; another seed or changed audio: another hash
    again = run_json(capsys, "dataset", "--repeat", "3", "--seed", "7", "--dry-run")[1]
    assert again["content_hash"] == res["content_hash"] and again["validation_keys"] == res["validation_keys"]
    assert (
        run_json(capsys, "dataset", "--repeat", "3", "--seed", "8", "--dry-run")[1]["content_hash"]
        != res["content_hash"]
    )
    sf.write(str(data / "audio" / "a.flac"), np.zeros((48_000, 2)), 48_000)
    assert (
        run_json(capsys, "dataset", "--repeat", "3", "--seed", "7", "--dry-run")[1]["content_hash"]
        != res["content_hash"]
    )


def test_dataset_reports_tracks_without_text_files(data, capsys):
    assert run_json(capsys, "dataset")[0] == FAILED_INPUT
    run_json(capsys, "prompts", "a", "b", "--preset", "lofi_hiphop")
    code, res = run_json(capsys, "dataset", "--dry-run")
    assert code == 0 and res["counts"]["tracks"] == 2 and set(res["skipped"]) == {"c", "d", "e"}
    assert "run `lofi-lora prompts`" in res["skipped"]["c"] and not (data / "dataset").exists()
    assert run_json(capsys, "dataset", "--repeat", "0")[0] == USAGE


def test_features_need_the_base_model_up_front(data, capsys, monkeypatch):
    run_json(capsys, "prompts", "--preset", "lofi_hiphop")
    monkeypatch.delenv("LOFI_ACE_STEP_DIR", raising=False)
    code, res = run_json(capsys, "dataset", "--features")
    assert code == ENVIRONMENT and "LOFI_ACE_STEP_DIR" in res["error"]
    assert not (data / "dataset").exists()


def test_loads_in_hugging_face_datasets_when_installed(data, capsys):
    datasets = pytest.importorskip(
        "datasets", reason="`datasets` cannot be installed beside this project's pins"
    )
    run_json(capsys, "prompts", "--preset", "lofi_hiphop")
    run_json(capsys, "dataset", "--repeat", "2")
    ds = datasets.load_from_disk(str(data / "dataset" / "train"))
    assert len(ds) == 8 and ds[0]["recaption"] == {}


def test_features_hook_gets_the_training_tracks_only(data, tmp_path, capsys, monkeypatch):
    """`--features` hands the trainer's precompute (features.build) the training rows, never the held-out ones."""
    import sys
    import types

    import scripts.lofi_lora as pkg

    calls = []
    fake = types.ModuleType("scripts.lofi_lora.features")
    fake.build = lambda rows, root, base, out, progress: (
        calls.append((list(progress(rows)), root, base, out))
        or [out / f"{r['keys']}.safetensors" for r in rows]
    )
    monkeypatch.setitem(sys.modules, "scripts.lofi_lora.features", fake)
    monkeypatch.setattr(pkg, "features", fake, raising=False)
    (tmp_path / "base").mkdir()
    monkeypatch.setenv("LOFI_ACE_STEP_DIR", str(tmp_path / "base"))
    run_json(capsys, "prompts", "--preset", "lofi_hiphop")
    code, res = run_json(capsys, "dataset", "--features", "--repeat", "5")
    assert code == 0 and res["features"] == 4 and res["features_dir"] == str(data / "features")
    ((rows, root, base, out),) = calls
    assert sorted(r["keys"] for r in rows) == sorted(set("abcde") - set(res["validation_keys"]))
    assert (root, base, out) == (data, tmp_path / "base", data / "features")


def test_prompts_dry_run_writes_nothing(data, capsys):
    code, res = run_json(capsys, "prompts", "--preset", "rainy_night", "--dry-run")
    assert code == 0 and res["counts"] == {"would write": 5}
    assert not list((data / "audio").glob("*.txt")) and not (data / "metadata").exists()
