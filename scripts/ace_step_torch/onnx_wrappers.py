"""Export wrappers: one module per ONNX graph, with ERG exposed as per-sample q-scale inputs.

Upstream ERG multiplies selected query projections by 0.01 with forward hooks on the unconditional pass. Here
each wrapper installs its hooks once (building two wrappers over one model would stack hooks — lab §5.3 item 8)
and the hooks multiply by a [B] input, so 1.0 = off, 0.01 = ERG, and cond/uncond can share one batch.
"""

from __future__ import annotations

import torch
from torch import nn

from .build import ERG

MEL_MIN, MEL_MAX = -11.0, 3.0
LATENT_SCALE, LATENT_SHIFT = 0.1786, -1.9091


class _ScaledHooks:
    """Forward hooks multiplying module outputs by the per-sample scale set for the current call."""

    def __init__(self, modules: list[nn.Module]) -> None:
        self.scale: torch.Tensor | None = None
        for m in modules:
            m.register_forward_hook(self._hook)

    def _hook(self, module, inputs, output):
        if self.scale is None:
            return output
        return output * self.scale.view(-1, *([1] * (output.dim() - 1)))


class TextEncoderWrapper(nn.Module):
    def __init__(self, umt5) -> None:
        super().__init__()
        self.model = umt5
        lo, hi = ERG["text_encoder"]
        self.hooks = _ScaledHooks([umt5.encoder.block[i].layer[0].SelfAttention.q for i in range(lo, hi)])

    def forward(self, input_ids, attention_mask, erg_q_scale):
        self.hooks.scale = erg_q_scale
        try:
            return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        finally:
            self.hooks.scale = None


class TransformerEncoderWrapper(nn.Module):
    def __init__(self, transformer) -> None:
        super().__init__()
        self.model = transformer
        lo, hi = ERG["lyric_encoder"]
        self.hooks = _ScaledHooks(
            [transformer.lyric_encoder.encoders[i].self_attn.linear_q for i in range(lo, hi)]
        )

    def forward(self, encoder_text_hidden_states, text_attention_mask, speaker_embeds, lyric_token_idx, lyric_mask,
                lyric_q_scale):  # fmt: skip
        self.hooks.scale = lyric_q_scale
        try:
            return self.model.encode(
                encoder_text_hidden_states, text_attention_mask, speaker_embeds, lyric_token_idx, lyric_mask
            )
        finally:
            self.hooks.scale = None


class TransformerDecoderWrapper(nn.Module):
    def __init__(self, transformer) -> None:
        super().__init__()
        self.model = transformer
        lo, hi = ERG["decoder"]
        blocks = transformer.transformer_blocks
        mods = [
            m
            for i in range(lo, min(hi, len(blocks)))
            for m in (blocks[i].attn.to_q, blocks[i].cross_attn.to_q)
        ]
        self.hooks = _ScaledHooks(mods)

    def forward(
        self, hidden_states, attention_mask, encoder_hidden_states, encoder_hidden_mask, timestep, erg_q_scale
    ):
        self.hooks.scale = erg_q_scale
        try:
            return self.model.decode(
                hidden_states, attention_mask, encoder_hidden_states, encoder_hidden_mask, timestep
            )
        finally:
            self.hooks.scale = None


class DcaeDecoderWrapper(nn.Module):
    """Latent [B,8,16,F] -> log-mel [B,2,128,8F], with the latent de-scaling and mel de-normalisation of
    upstream `MusicDCAE.decode` inside the graph."""

    def __init__(self, dcae) -> None:
        super().__init__()
        self.decoder = dcae.decoder

    def forward(self, latents):
        mel = self.decoder(latents / LATENT_SCALE + LATENT_SHIFT)
        return (mel * 0.5 + 0.5) * (MEL_MAX - MEL_MIN) + MEL_MIN


class VocoderWrapper(nn.Module):
    def __init__(self, vocoder) -> None:
        super().__init__()
        self.vocoder = vocoder

    def forward(self, mel):
        return self.vocoder(mel)
