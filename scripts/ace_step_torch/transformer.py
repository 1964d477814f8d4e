"""ACE-Step's DiT (`ACEStepTransformer2DModel`): condition encoder (speaker, genre, lyric Conformer) + linear
attention decoder. Module names follow the checkpoint (`transformer_blocks.N.attn.to_q`, `lyric_encoder.encoders.N
.self_attn.linear_q`, ...). Modules the checkpoint holds but inference never uses (cross-attention `add_*`
projections, SSL projectors) exist so the weights load strictly; they are never called.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.loaders import PeftAdapterMixin
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from diffusers.models.modeling_utils import ModelMixin
from torch import nn


def rms_norm(x: torch.Tensor, eps: float) -> torch.Tensor:
    # Explicit formula: the legacy ONNX exporter has no symbolic for aten::rms_norm.
    # The model runs in float32 (upstream's norm upcasts to float32 too), so no casts: no-op Casts trip the
    # legacy exporter when constant folding is off.
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)


class RMSNorm(nn.Module):
    """Parameter-free RMSNorm (the checkpoint's norms have no affine weight)."""

    def __init__(self, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return rms_norm(x, self.eps)


def rope_tables(seq_len: int, dim: int, theta: float, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin tables [S, D] as upstream builds them: half-frequency table duplicated (cat(freqs, freqs))."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.int64, device=device).float() / dim))
    t = torch.arange(seq_len, dtype=torch.int64, device=device).type_as(inv_freq)
    freqs = torch.outer(t, inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos(), emb.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x [B, H, S, D]. Rotates interleaved pairs (x0, x1) -> (-x1, x0) but multiplies by the duplicated-half
    tables: this mix is what the released model was trained with, so it is kept exactly."""
    pairs = x.reshape(*x.shape[:-1], -1, 2)
    real, imag = pairs[..., 0], pairs[..., 1]
    rotated = torch.stack([-imag, real], dim=-1).flatten(3)
    return x * cos[None, None] + rotated * sin[None, None]


class Attention(nn.Module):
    """Projection container with diffusers' `Attention` parameter names (to_q/k/v, to_out.0, add_*)."""

    def __init__(self, dim: int, heads: int, head_dim: int, cross: bool) -> None:
        super().__init__()
        inner = heads * head_dim
        self.heads = heads
        self.head_dim = head_dim
        self.to_q = nn.Linear(dim, inner, bias=True)
        self.to_k = nn.Linear(dim, inner, bias=True)
        self.to_v = nn.Linear(dim, inner, bias=True)
        self.to_out = nn.ModuleList([nn.Linear(inner, dim, bias=True), nn.Dropout(0.0)])
        if cross:
            # Present in the checkpoint, unused at inference (the processor never calls them).
            self.add_q_proj = nn.Linear(dim, inner, bias=True)
            self.add_k_proj = nn.Linear(dim, inner, bias=True)
            self.add_v_proj = nn.Linear(dim, inner, bias=True)
            self.to_add_out = nn.Linear(inner, dim, bias=True)


def linear_self_attention(attn: Attention, x, mask, cos, sin) -> torch.Tensor:
    """Sana LiteLA: ReLU kernel linear attention with RoPE; cost O(S·D²) per head."""
    b, s, _ = x.shape
    h, d = attn.heads, attn.head_dim
    q = attn.to_q(x).view(b, s, h, d).permute(0, 2, 1, 3)  # [B,H,S,D]
    k = attn.to_k(x).view(b, s, h, d).permute(0, 2, 1, 3)
    v = attn.to_v(x).view(b, s, h, d).permute(0, 2, 3, 1)  # [B,H,D,S]
    q = apply_rope(q, cos, sin)
    k = apply_rope(k, cos, sin)
    m = mask[:, None, :, None].to(k.dtype)  # [B,1,S,1]
    q = F.relu(q * m)
    k = F.relu(k * m)
    v = v * m.permute(0, 1, 3, 2)
    v = F.pad(v, (0, 0, 0, 1), mode="constant", value=1.0)  # [B,H,D+1,S]
    vk = torch.matmul(v, k)  # [B,H,D+1,D]
    out = torch.matmul(vk, q.transpose(-1, -2))  # [B,H,D+1,S]
    out = out[:, :, :-1] / (out[:, :, -1:] + 1e-15)
    out = out.reshape(b, h * d, s).permute(0, 2, 1)
    return attn.to_out[0](out)


def cross_attention(attn: Attention, x, enc, mask, enc_mask, cos, sin, enc_cos, enc_sin) -> torch.Tensor:
    """Softmax attention from latent tokens to the condition sequence; RoPE on both sides, no pre-norm."""
    b, s, _ = x.shape
    h, d = attn.heads, attn.head_dim
    q = attn.to_q(x).view(b, s, h, d).transpose(1, 2)
    k = attn.to_k(enc).view(b, -1, h, d).transpose(1, 2)
    v = attn.to_v(enc).view(b, -1, h, d).transpose(1, 2)
    q = apply_rope(q, cos, sin)
    k = apply_rope(k, enc_cos, enc_sin)
    combined = mask[:, :, None] * enc_mask[:, None, :]
    bias = torch.where(combined == 1, 0.0, -torch.inf)[:, None].to(q.dtype)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
    out = out.transpose(1, 2).reshape(b, s, h * d)
    return attn.to_out[0](out)


class ConvLayer(nn.Module):
    def __init__(self, cin: int, cout: int, k: int, groups: int = 1, bias: bool = False, act: bool = False):
        super().__init__()
        self.conv = nn.Conv1d(cin, cout, k, padding=k // 2, groups=groups, bias=bias)
        self.act = nn.SiLU() if act else None

    def forward(self, x):
        x = self.conv(x)
        return self.act(x) if self.act is not None else x


class GLUMBConv(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.glu_act = nn.SiLU()
        self.inverted_conv = ConvLayer(dim, hidden * 2, 1, bias=True, act=True)
        self.depth_conv = ConvLayer(hidden * 2, hidden * 2, 3, groups=hidden * 2, bias=True)
        self.point_conv = ConvLayer(hidden, dim, 1, bias=False)

    def forward(self, x):
        x = self.depth_conv(self.inverted_conv(x.transpose(1, 2)))
        x, gate = torch.chunk(x, 2, dim=1)
        return self.point_conv(x * self.glu_act(gate)).transpose(1, 2)


class LinearTransformerBlock(nn.Module):
    def __init__(self, dim: int, heads: int, head_dim: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1 = RMSNorm(1e-6)
        self.attn = Attention(dim, heads, head_dim, cross=False)
        self.cross_attn = Attention(dim, heads, head_dim, cross=True)
        self.norm2 = RMSNorm(1e-6)
        self.ff = GLUMBConv(dim, int(dim * mlp_ratio))
        self.scale_shift_table = nn.Parameter(torch.randn(6, dim) / dim**0.5)

    def forward(self, x, mask, enc, enc_mask, rope, enc_rope, temb):
        n = x.shape[0]
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = (
            self.scale_shift_table[None] + temb.reshape(n, 6, -1)
        ).chunk(6, dim=1)
        h = self.norm1(x) * (1 + scale_msa) + shift_msa
        x = x + gate_msa * linear_self_attention(self.attn, h, mask, *rope)
        x = x + cross_attention(self.cross_attn, x, enc, mask, enc_mask, *rope, *enc_rope)
        h = self.norm2(x) * (1 + scale_mlp) + shift_mlp
        return x + gate_mlp * self.ff(h)


class PatchEmbed(nn.Module):
    def __init__(self, in_channels: int, embed_dim: int, patch_size) -> None:
        super().__init__()
        mid = in_channels * 256  # hard-coded upstream
        self.early_conv_layers = nn.Sequential(
            nn.Conv2d(in_channels, mid, kernel_size=tuple(patch_size), stride=tuple(patch_size), bias=True),
            nn.GroupNorm(32, mid, eps=1e-6, affine=True),
            nn.Conv2d(mid, embed_dim, kernel_size=1, bias=True),
        )

    def forward(self, latent):
        return self.early_conv_layers(latent).flatten(2).transpose(1, 2)


class T2IFinalLayer(nn.Module):
    def __init__(self, dim: int, patch_size, out_channels: int) -> None:
        super().__init__()
        self.norm_final = RMSNorm(1e-6)
        self.linear = nn.Linear(dim, patch_size[0] * patch_size[1] * out_channels, bias=True)
        self.scale_shift_table = nn.Parameter(torch.randn(2, dim) / dim**0.5)
        self.patch_size = patch_size
        self.out_channels = out_channels

    def forward(self, x, t):
        shift, scale = (self.scale_shift_table[None] + t[:, None]).chunk(2, dim=1)
        x = self.linear(self.norm_final(x) * (1 + scale) + shift)
        b, w = x.shape[0], x.shape[1]
        p, c = self.patch_size[0], self.out_channels
        # tokens [B, W, p*c] -> [B, c, p, W]
        return x.reshape(b, w, p, c).permute(0, 3, 2, 1).contiguous()


# ---- lyric Conformer (ESPnet/WeNet rel-pos encoder, pre-LN, no conv module, no macaron) ----


class RelPositionalEncoding(nn.Module):
    def __init__(self, d_model: int, max_len: int = 5000) -> None:
        super().__init__()
        self.xscale = math.sqrt(d_model)
        position = torch.arange(0, max_len, dtype=torch.float32).unsqueeze(1)
        div_term = torch.exp(
            torch.arange(0, d_model, 2, dtype=torch.float32) * -(math.log(10000.0) / d_model)
        )
        pos = torch.zeros(max_len, d_model)
        neg = torch.zeros(max_len, d_model)
        pos[:, 0::2] = torch.sin(position * div_term)
        pos[:, 1::2] = torch.cos(position * div_term)
        neg[:, 0::2] = torch.sin(-1 * position * div_term)
        neg[:, 1::2] = torch.cos(-1 * position * div_term)
        pe = torch.cat([torch.flip(pos, [0]), neg[1:]], dim=0).unsqueeze(0)
        self.register_buffer("pe", pe, persistent=False)

    def forward(self, x):
        size = x.size(1)
        center = self.pe.size(1) // 2
        return x * self.xscale, self.pe[:, center - size + 1 : center + size]


class LinearEmbed(nn.Module):
    def __init__(self, idim: int, odim: int) -> None:
        super().__init__()
        self.out = nn.Sequential(nn.Linear(idim, odim), nn.LayerNorm(odim, eps=1e-5), nn.Dropout(0.0))
        self.pos_enc = RelPositionalEncoding(odim)

    def forward(self, x):
        return self.pos_enc(self.out(x))


class RelPositionMultiHeadedAttention(nn.Module):
    def __init__(self, n_head: int, n_feat: int) -> None:
        super().__init__()
        self.h = n_head
        self.d_k = n_feat // n_head
        self.linear_q = nn.Linear(n_feat, n_feat)
        self.linear_k = nn.Linear(n_feat, n_feat)
        self.linear_v = nn.Linear(n_feat, n_feat)
        self.linear_out = nn.Linear(n_feat, n_feat)
        self.linear_pos = nn.Linear(n_feat, n_feat, bias=False)
        self.pos_bias_u = nn.Parameter(torch.empty(self.h, self.d_k))
        self.pos_bias_v = nn.Parameter(torch.empty(self.h, self.d_k))
        nn.init.xavier_uniform_(self.pos_bias_u)
        nn.init.xavier_uniform_(self.pos_bias_v)

    @staticmethod
    def rel_shift(x: torch.Tensor) -> torch.Tensor:
        # Exact for length 1 too, so it is applied unconditionally (export-safe).
        b, h, t1, t2 = x.shape
        padded = torch.cat([x.new_zeros(b, h, t1, 1), x], dim=-1).view(b, h, t2 + 1, t1)
        return padded[:, :, 1:].reshape(b, h, t1, t2)[:, :, :, : t2 // 2 + 1]

    def forward(self, x, mask, pos_emb):
        b = x.size(0)
        q = self.linear_q(x).view(b, -1, self.h, self.d_k)  # [B,T,H,D]
        k = self.linear_k(x).view(b, -1, self.h, self.d_k).transpose(1, 2)
        v = self.linear_v(x).view(b, -1, self.h, self.d_k).transpose(1, 2)
        p = self.linear_pos(pos_emb).view(pos_emb.size(0), -1, self.h, self.d_k).transpose(1, 2)
        ac = torch.matmul((q + self.pos_bias_u).transpose(1, 2), k.transpose(-2, -1))
        bd = self.rel_shift(torch.matmul((q + self.pos_bias_v).transpose(1, 2), p.transpose(-2, -1)))
        scores = (ac + bd) / math.sqrt(self.d_k)
        masked = mask.unsqueeze(1).eq(0)  # [B,1,1,T]
        attn = torch.softmax(scores.masked_fill(masked, -float("inf")), dim=-1).masked_fill(masked, 0.0)
        out = torch.matmul(attn, v).transpose(1, 2).reshape(b, -1, self.h * self.d_k)
        return self.linear_out(out)


class PositionwiseFeedForward(nn.Module):
    def __init__(self, idim: int, hidden: int) -> None:
        super().__init__()
        self.w_1 = nn.Linear(idim, hidden)
        self.activation = nn.SiLU()
        self.dropout = nn.Dropout(0.0)
        self.w_2 = nn.Linear(hidden, idim)

    def forward(self, x):
        return self.w_2(self.activation(self.w_1(x)))


class ConformerEncoderLayer(nn.Module):
    def __init__(self, size: int, heads: int, linear_units: int) -> None:
        super().__init__()
        self.self_attn = RelPositionMultiHeadedAttention(heads, size)
        self.feed_forward = PositionwiseFeedForward(size, linear_units)
        self.norm_ff = nn.LayerNorm(size, eps=1e-5)
        self.norm_mha = nn.LayerNorm(size, eps=1e-5)

    def forward(self, x, mask, pos_emb):
        x = x + self.self_attn(self.norm_mha(x), mask, pos_emb)
        return x + self.feed_forward(self.norm_ff(x))


class ConformerEncoder(nn.Module):
    def __init__(self, input_size: int, output_size: int, heads: int, linear_units: int, num_blocks: int):
        super().__init__()
        self.embed = LinearEmbed(input_size, output_size)
        self.after_norm = nn.LayerNorm(output_size, eps=1e-5)
        self.encoders = nn.ModuleList(
            [ConformerEncoderLayer(output_size, heads, linear_units) for _ in range(num_blocks)]
        )

    def forward(self, xs, pad_mask):
        mask = pad_mask.to(torch.bool).unsqueeze(1)  # [B,1,T]: full context (static_chunk_size 0)
        xs, pos_emb = self.embed(xs)
        for layer in self.encoders:
            xs = layer(xs, mask, pos_emb)
        return self.after_norm(xs)


class ACEStepTransformer2DModel(ModelMixin, ConfigMixin, PeftAdapterMixin):
    """Same config keys as the checkpoint's `ace_step_transformer/config.json`; the `lyric_encoder_*` keys are
    this project's additions so tiny models can shrink the Conformer (upstream hard-codes 1024/16/4096/6).
    Gradient checkpointing (diffusers' `enable_gradient_checkpointing`) recomputes each DiT block in backward:
    training keeps one block's activations instead of all of them."""

    _supports_gradient_checkpointing = True

    @register_to_config
    def __init__(
        self,
        in_channels: int = 8,
        num_layers: int = 24,
        inner_dim: int = 2560,
        attention_head_dim: int = 128,
        num_attention_heads: int = 20,
        mlp_ratio: float = 2.5,
        out_channels: int = 8,
        max_position: int = 32768,
        rope_theta: float = 1000000.0,
        speaker_embedding_dim: int = 512,
        text_embedding_dim: int = 768,
        ssl_encoder_depths=(8, 8),
        ssl_names=("mert", "m-hubert"),
        ssl_latent_dims=(1024, 768),
        lyric_encoder_vocab_size: int = 6693,
        lyric_hidden_size: int = 1024,
        patch_size=(16, 1),
        max_height: int = 16,
        max_width: int = 32768,
        lyric_encoder_heads: int = 16,
        lyric_encoder_linear_units: int = 4096,
        lyric_encoder_blocks: int = 6,
        **kwargs,
    ) -> None:
        super().__init__()
        self.gradient_checkpointing = False
        inner = num_attention_heads * attention_head_dim
        self.head_dim = attention_head_dim
        self.rope_theta = rope_theta
        self.transformer_blocks = nn.ModuleList(
            [
                LinearTransformerBlock(inner, num_attention_heads, attention_head_dim, mlp_ratio)
                for _ in range(num_layers)
            ]
        )
        self.time_proj = Timesteps(num_channels=256, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.timestep_embedder = TimestepEmbedding(in_channels=256, time_embed_dim=inner)
        self.t_block = nn.Sequential(nn.SiLU(), nn.Linear(inner, 6 * inner, bias=True))
        self.speaker_embedder = nn.Linear(speaker_embedding_dim, inner)
        self.genre_embedder = nn.Linear(text_embedding_dim, inner)
        self.lyric_embs = nn.Embedding(lyric_encoder_vocab_size, lyric_hidden_size)
        self.lyric_encoder = ConformerEncoder(
            lyric_hidden_size,
            lyric_hidden_size,
            lyric_encoder_heads,
            lyric_encoder_linear_units,
            lyric_encoder_blocks,
        )
        self.lyric_proj = nn.Linear(lyric_hidden_size, inner)
        self.projectors = nn.ModuleList(  # SSL alignment heads: training only
            [
                nn.Sequential(
                    nn.Linear(inner, 2 * inner),
                    nn.SiLU(),
                    nn.Linear(2 * inner, 2 * inner),
                    nn.SiLU(),
                    nn.Linear(2 * inner, d),
                )
                for d in ssl_latent_dims
            ]
        )
        self.proj_in = PatchEmbed(in_channels, inner, patch_size)
        self.final_layer = T2IFinalLayer(inner, patch_size, out_channels)

    def encode(
        self, encoder_text_hidden_states, text_attention_mask, speaker_embeds, lyric_token_idx, lyric_mask
    ):
        b = encoder_text_hidden_states.shape[0]
        spk = self.speaker_embedder(speaker_embeds).unsqueeze(1)
        text = self.genre_embedder(encoder_text_hidden_states)
        lyric = self.lyric_proj(self.lyric_encoder(self.lyric_embs(lyric_token_idx), lyric_mask))
        states = torch.cat([spk, text, lyric], dim=1)
        ones = torch.ones(b, 1, device=states.device, dtype=states.dtype)
        mask = torch.cat([ones, text_attention_mask.to(states.dtype), lyric_mask.to(states.dtype)], dim=1)
        return states, mask

    def decode(self, hidden_states, attention_mask, encoder_hidden_states, encoder_hidden_mask, timestep):
        embedded_timestep = self.timestep_embedder(self.time_proj(timestep).to(hidden_states.dtype))
        temb = self.t_block(embedded_timestep)
        x = self.proj_in(hidden_states)
        dev = x.device
        rope = rope_tables(x.shape[1], self.head_dim, self.rope_theta, dev)
        enc_rope = rope_tables(encoder_hidden_states.shape[1], self.head_dim, self.rope_theta, dev)
        checkpointed = self.gradient_checkpointing and torch.is_grad_enabled()
        for block in self.transformer_blocks:
            args = (x, attention_mask, encoder_hidden_states, encoder_hidden_mask, rope, enc_rope, temb)
            x = self._gradient_checkpointing_func(block, *args) if checkpointed else block(*args)
        return self.final_layer(x, embedded_timestep)
