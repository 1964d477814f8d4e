"""Configurations (real and tiny) and builders for the four ACE-Step components.

Real configs are the published ones (ace_step_transformer/config.json, umt5-base, music_dcae_f8c8,
music_vocoder). Tiny configs keep every structural feature (block types, multiscale attention, ERG layer ranges,
weight norm, 7 upsamplers) and shrink widths and depths so the exported fixture stays a few MB.
"""

from __future__ import annotations

import torch
from diffusers import AutoencoderDC
from transformers import UMT5Config, UMT5EncoderModel

from .transformer import ACEStepTransformer2DModel
from .vocoder import ADaMoSHiFiGANV1

# Layer ranges upstream hooks for ERG (pipeline_ace_step.py): UMT5 blocks 8-9 SelfAttention.q, Conformer layers
# 4-5 linear_q, DiT blocks 15-19 attn.to_q and cross_attn.to_q; all scale the projection output by 0.01.
ERG = {"text_encoder": (8, 10), "lyric_encoder": (4, 6), "decoder": (15, 20), "tau": 0.01}

REAL = {
    "text_encoder": dict(
        vocab_size=256384,
        d_model=768,
        d_kv=64,
        d_ff=2048,
        num_layers=12,
        num_heads=12,
        relative_attention_num_buckets=32,
        relative_attention_max_distance=128,
        feed_forward_proj="gated-gelu",
        dropout_rate=0.0,
        layer_norm_epsilon=1e-6,
        tie_word_embeddings=False,
    ),
    "transformer": dict(),  # ACEStepTransformer2DModel defaults = the checkpoint config
    "dcae": dict(
        in_channels=2,
        latent_channels=8,
        attention_head_dim=32,
        encoder_block_types=("ResBlock", "ResBlock", "ResBlock", "EfficientViTBlock"),
        decoder_block_types=("ResBlock", "ResBlock", "ResBlock", "EfficientViTBlock"),
        encoder_block_out_channels=(128, 256, 512, 1024),
        decoder_block_out_channels=(128, 256, 512, 1024),
        encoder_layers_per_block=(2, 2, 3, 3),
        decoder_layers_per_block=(3, 3, 3, 3),
        encoder_qkv_multiscales=((), (), (5,), (5,)),
        decoder_qkv_multiscales=((), (), (5,), (5,)),
        upsample_block_type="interpolate",
        downsample_block_type="Conv",
        decoder_norm_types="rms_norm",
        decoder_act_fns="silu",
    ),
    "vocoder": dict(),  # ADaMoSHiFiGANV1 defaults = the checkpoint config
}

TINY = {
    "text_encoder": dict(
        REAL["text_encoder"], vocab_size=384, d_model=32, d_kv=8, d_ff=64, num_layers=10, num_heads=4
    ),
    "transformer": dict(
        num_layers=20,
        inner_dim=32,
        attention_head_dim=16,
        num_attention_heads=2,
        text_embedding_dim=32,
        speaker_embedding_dim=16,
        lyric_encoder_vocab_size=96,
        lyric_hidden_size=32,
        lyric_encoder_heads=4,
        lyric_encoder_linear_units=64,
        lyric_encoder_blocks=6,
        ssl_latent_dims=(8, 8),
    ),
    "dcae": dict(
        REAL["dcae"],
        attention_head_dim=8,
        encoder_block_out_channels=(16, 16, 32, 32),
        decoder_block_out_channels=(16, 16, 32, 32),
        encoder_layers_per_block=(1, 1, 1, 1),
        decoder_layers_per_block=(1, 1, 1, 1),
    ),
    "vocoder": dict(
        depths=(1, 1, 1, 1),
        dims=(16, 16, 32, 32),
        num_mels=32,
        upsample_initial_channel=128,
        resblock_kernel_sizes=(3, 7),
        resblock_dilation_sizes=((1, 3, 5), (1, 3, 5)),
    ),
}

CONFIGS = {"full": REAL, "tiny": TINY}


def build_text_encoder(cfg: dict) -> UMT5EncoderModel:
    return UMT5EncoderModel(UMT5Config(**cfg, attn_implementation="eager")).eval()


def build_transformer(cfg: dict) -> ACEStepTransformer2DModel:
    return ACEStepTransformer2DModel(**cfg).eval()


def build_dcae(cfg: dict) -> AutoencoderDC:
    return AutoencoderDC(**cfg).eval()


def build_vocoder(cfg: dict) -> ADaMoSHiFiGANV1:
    return ADaMoSHiFiGANV1(**cfg).eval()


def build_all(size: str) -> dict[str, torch.nn.Module]:
    c = CONFIGS[size]
    return {
        "text_encoder": build_text_encoder(c["text_encoder"]),
        "transformer": build_transformer(c["transformer"]),
        "dcae": build_dcae(c["dcae"]),
        "vocoder": build_vocoder(c["vocoder"]),
    }


@torch.no_grad()
def randomize_(models: dict[str, torch.nn.Module], seed: int = 0) -> None:
    """Give the random-weight models non-trivial values where default init is degenerate (zero/one/1e-6
    tensors), so every path matters in parity tests. Matrices keep their default init."""
    g = torch.Generator().manual_seed(seed)
    for model in models.values():
        for name, p in model.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            if leaf == "gamma":
                p.copy_(0.3 * torch.randn(p.shape, generator=g))
            elif leaf in ("bias",):
                p.copy_(0.02 * torch.randn(p.shape, generator=g))
            elif leaf == "weight" and p.ndim == 1:
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            elif leaf in ("scale_shift_table", "pos_bias_u", "pos_bias_v"):
                p.copy_(0.2 * torch.randn(p.shape, generator=g))
            elif leaf == "weight_g":
                # default init leaves the 7-stage HiFi-GAN head nearly input-independent (output std 5e-4);
                # a 2x gain per conv makes the waveform depend on the mel without saturating tanh
                p.mul_(2.0)
