"""Playback: mixer (pure numpy), sound device output, player (playlist, notifications, streaming) and resampling."""
