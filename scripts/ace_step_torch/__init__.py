"""The project's own PyTorch definition of ACE-Step v1 (3.5B), used only by scripts/ and torch-marked tests.

Written from the published architecture (docs/model-formats.md) with parameter names
and shapes equal to the released checkpoint, so `load_state_dict` accepts the real weights unchanged. UMT5 comes
from transformers and the DCAE from diffusers. The daemon never imports this package.
"""
