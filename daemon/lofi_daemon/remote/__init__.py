"""Remote generation: a `lofi-daemon serve --generator` elsewhere (a GPU box) runs the models, this daemon keeps
the cache, the player, prefetch and the editor. `link.py` is the local end of the connection, `backend.py` the
`Backend` that forwards jobs over it, `service.py` the headless remote end, `protocol.py` what they exchange."""
