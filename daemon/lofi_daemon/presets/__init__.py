"""Style presets: one data file (styles.json, schema styles.schema.json) read by `generate preset=<name>` and by
the `lofi-lora prompts` tool, so a LoRA is trained on the same words users generate with.

A preset may `extends` another: each tag field it gives replaces the parent's field, the others are inherited
(as are `lyrics` and `needs_lyrics`). The prompt is the tags in TAG_FIELDS order, duplicates dropped, joined by
", " (ACE-Step's training format: upstream splits the prompt on ", ").
"""

from __future__ import annotations

import difflib
import json
from functools import cache
from pathlib import Path
from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, model_validator

DATA = Path(__file__).with_name("styles.json")
SCHEMA = Path(__file__).with_name("styles.schema.json")
TAG_FIELDS = ("genre", "mood", "instruments", "tempo", "production", "atmosphere", "vocal_type")
Category = Literal["core", "seasonal", "thematic", "instrumental", "vocal"]
CATEGORIES: tuple[str, ...] = get_args(Category)
INSTRUMENTAL_LYRICS = "[instrumental]"


class Tags(BaseModel):
    model_config = ConfigDict(extra="forbid")

    genre: list[str] | None = Field(default=None, min_length=1, max_length=16)
    mood: list[str] | None = Field(default=None, min_length=1, max_length=16)
    instruments: list[str] | None = Field(default=None, min_length=1, max_length=16)
    tempo: list[str] | None = Field(default=None, min_length=1, max_length=16)
    production: list[str] | None = Field(default=None, min_length=1, max_length=16)
    atmosphere: list[str] | None = Field(default=None, min_length=1, max_length=16)
    vocal_type: list[str] | None = Field(default=None, min_length=1, max_length=16)


class PresetSpec(BaseModel):
    """One preset as written in styles.json (before inheritance)."""

    model_config = ConfigDict(extra="forbid")

    category: Category
    description: str = Field(min_length=1)
    extends: str | None = None
    tags: Tags
    lyrics: str | None = Field(default=None, min_length=1)
    needs_lyrics: bool | None = None

    @model_validator(mode="after")
    def _tags_are_words(self) -> PresetSpec:
        for name in TAG_FIELDS:
            for tag in getattr(self.tags, name) or []:
                # a comma would split the tag in two when the prompt is read back
                if not tag.strip() or "," in tag or "\n" in tag or tag != tag.strip():
                    raise ValueError(f"tag {tag!r} in {name}: tags are words without commas or outer spaces")
        return self


class PresetFile(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    schema_ref: str | None = Field(default=None, alias="$schema")
    version: Literal[1]
    categories: dict[Category, str]
    presets: dict[str, PresetSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _parents_exist_without_cycles(self) -> PresetFile:
        for name, spec in self.presets.items():
            seen = [name]
            while spec.extends is not None:
                if spec.extends not in self.presets:
                    raise ValueError(f"preset {seen[-1]!r} extends unknown preset {spec.extends!r}")
                if spec.extends in seen:
                    raise ValueError(
                        "presets extend each other in a cycle: " + " → ".join([*seen, spec.extends])
                    )
                seen.append(spec.extends)
                spec = self.presets[spec.extends]
        for name in self.presets:
            missing = [f for f in TAG_FIELDS if f not in resolve(self.presets, name).tags]
            if missing:
                raise ValueError(f"preset {name!r} has no {', '.join(missing)} (nor inherits any)")
        return self


class Preset(BaseModel):
    """A preset with its inheritance resolved."""

    name: str
    category: Category
    description: str
    chain: list[str]  # itself, then its ancestors
    tags: dict[str, list[str]]
    lyrics: str | None
    needs_lyrics: bool

    @property
    def tag_list(self) -> list[str]:
        out: list[str] = []
        for name in TAG_FIELDS:
            out += [t for t in self.tags.get(name, []) if t not in out]
        return out

    @property
    def prompt(self) -> str:
        return ", ".join(self.tag_list)

    @property
    def instrumental(self) -> bool:
        return self.lyrics is None and not self.needs_lyrics


def resolve(specs: dict[str, PresetSpec], name: str) -> Preset:
    chain = [name]
    while (parent := specs[chain[-1]].extends) is not None:
        chain.append(parent)
    tags: dict[str, list[str]] = {}
    lyrics: str | None = None
    needs: bool | None = None
    for link in reversed(chain):  # the root first, each child overriding
        spec = specs[link]
        tags.update({k: v for k, v in spec.tags.model_dump().items() if v is not None})
        lyrics = spec.lyrics if spec.lyrics is not None else lyrics
        needs = spec.needs_lyrics if spec.needs_lyrics is not None else needs
    own = specs[name]
    return Preset(
        name=name,
        category=own.category,
        description=own.description,
        chain=chain,
        tags=tags,
        lyrics=lyrics,
        needs_lyrics=bool(needs),
    )


def load(path: Path = DATA) -> dict[str, Preset]:
    """Every preset of a presets file, resolved (raises pydantic.ValidationError on a bad file)."""
    data = PresetFile.model_validate(json.loads(path.read_text(encoding="utf-8")))
    return {name: resolve(data.presets, name) for name in data.presets}


@cache
def presets() -> dict[str, Preset]:
    """The shipped presets (read once)."""
    return load()


def get(name: str) -> Preset:
    """The named preset; KeyError with a suggestion when there is none."""
    known = presets()
    if name not in known:
        near = difflib.get_close_matches(name, list(known), n=1)
        hint = f" (did you mean `{near[0]}`?)" if near else f"; known: {', '.join(sorted(known))}"
        raise KeyError(f"unknown preset `{name}`{hint}")
    return known[name]


def schema() -> dict[str, object]:
    return PresetFile.model_json_schema(by_alias=True)
