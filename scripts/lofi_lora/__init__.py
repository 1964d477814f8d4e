"""lofi-lora: make a LoRA style for ACE-Step from raw audio (prepare → prompts → dataset → train → evaluate →
merge → export/quantize). Installed by `scripts/setup --train`; never imported by the daemon."""

__version__ = "0.1.0"
