"""Which backends run remotely: wrap them in `RemoteBackend`s sharing one link, in the daemon's own backend dict
(the worker, the intake and prefetch hold that dict, so they all see the change)."""

from __future__ import annotations

import logging

from ..backends import canonical_name
from ..config import GeneratorSettings
from ..ports import Backend, Notify
from .backend import RemoteBackend
from .link import RemoteLink

log = logging.getLogger(__name__)


def apply_generator(
    backends: dict[str, Backend], generator: GeneratorSettings | None, notify: Notify, old: RemoteLink | None
) -> RemoteLink | None:
    """Unwrap what ran remotely, then wrap the backends `generator` names (all when it names none) around a new
    link, which starts connecting at once. Returns the new link (None without a generator)."""
    if old is not None:
        old.close()
    for name, backend in list(backends.items()):
        if isinstance(backend, RemoteBackend):
            backends[name] = backend.local
    if generator is None or not generator.cmd:
        return None
    link = RemoteLink(generator.cmd, generator.connect_timeout_sec)
    for name in map(canonical_name, generator.backends or list(backends)):
        if name not in backends:  # (initialize checks names; LOFI_GENERATOR_BACKENDS is only logged)
            log.warning("generator: no backend %r here; it stays unavailable remotely", name)
            continue
        backends[name] = RemoteBackend(backends[name], link, notify, retry=generator.retry)
    link.start()
    return link
