"""lofi daemon: local AI-generated lofi music over JSON-RPC on stdio."""

__version__ = "0.1.0"
