"""A user-provided model directory (offline use): find which known layout it follows and where each file is.

Each backend describes its accepted layouts as `LocalLayout`s (role → candidate relative paths, best first).
Nothing here touches the network; a missing file is reported by name.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from ..errors import ErrorCode, LofiError


@dataclass(frozen=True)
class LocalLayout:
    name: str  # e.g. "flat", "gabotechs", "xenova"
    marker: str  # a relative path (file or folder) whose presence identifies the layout
    roles: dict[str, tuple[str, ...]]  # role → candidate relative paths, first existing wins
    required: tuple[str, ...]  # roles that must be found
    # at least one of these role groups must be complete (e.g. merged decoder, or the split pair)
    one_of: tuple[tuple[str, ...], ...] = ()


def resolve_local(
    directory: Path, layouts: list[LocalLayout], backend: str
) -> tuple[LocalLayout, dict[str, Path]]:
    """Return the matching layout and role → path; raise MODEL_NOT_FOUND naming the missing file."""
    directory = Path(directory).expanduser()
    if not directory.is_dir():
        raise LofiError(
            ErrorCode.MODEL_NOT_FOUND,
            f"{backend} model directory {directory} does not exist",
            dir=str(directory),
        )
    matching = [lay for lay in layouts if (directory / lay.marker).exists()] or layouts[:1]
    errors: list[str] = []
    for layout in matching:
        found: dict[str, Path] = {}
        for role, candidates in layout.roles.items():
            for rel in candidates:
                if (directory / rel).is_file():
                    found[role] = directory / rel
                    break
        missing = [layout.roles[r][0] for r in layout.required if r not in found]
        if layout.one_of and not any(all(r in found for r in group) for group in layout.one_of):
            # name the preferred form's files, e.g. decoder_model_merged.onnx
            missing += [layout.roles[r][0] for r in layout.one_of[0] if r not in found]
            alt = " or ".join(" + ".join(layout.roles[r][0] for r in group) for group in layout.one_of)
        else:
            alt = ""
        if not missing:
            return layout, found
        msg = f"missing {', '.join(missing)} in {directory} ({layout.name} layout)"
        if alt:
            msg += f"; the decoder may be {alt}"
        errors.append(msg)
    raise LofiError(
        ErrorCode.MODEL_NOT_FOUND,
        f"{backend} model directory is incomplete: " + "; ".join(errors),
        dir=str(directory),
        missing=errors,
    )


def files_fingerprint(paths: dict[str, Path]) -> str:
    """A short id of a set of local files from their names and sizes (cheap; no hashing of GBs at start)."""
    h = hashlib.sha256()
    for role in sorted(paths):
        p = paths[role]
        h.update(f"{role}:{p.name}:{p.stat().st_size};".encode())
    return h.hexdigest()[:12]
