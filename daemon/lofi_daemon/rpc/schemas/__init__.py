"""Pydantic models for RPC params. One module per area; results are plain dicts built by the handlers."""
