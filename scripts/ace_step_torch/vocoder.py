"""ADaMoSHiFiGAN V1 vocoder (ConvNeXt backbone + HiFi-GAN head), mono mel [B, 128, M] -> wave [B, 1, 512·M]
at 44.1 kHz. Convolutions use old-style weight norm (`weight_g` / `weight_v`) like the checkpoint; fold it with
`fold_weight_norm()` before export. The checkpoint's `mel_transform.*` buffers (encode path only)
are not modelled: load with `strict=False` and check that only those keys are left over.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn
from torch.nn.utils import remove_weight_norm, weight_norm


class LayerNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6, channels_first: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))
        self.eps = eps
        self.channels_first = channels_first

    def forward(self, x):
        if not self.channels_first:
            return F.layer_norm(x, tuple(self.weight.shape), self.weight, self.bias, self.eps)
        u = x.mean(1, keepdim=True)
        s = (x - u).pow(2).mean(1, keepdim=True)
        x = (x - u) / torch.sqrt(s + self.eps)
        return self.weight[:, None] * x + self.bias[:, None]


class ConvNeXtBlock(nn.Module):
    def __init__(self, dim: int, kernel_size: int = 7, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.dwconv = nn.Conv1d(dim, dim, kernel_size, padding=(kernel_size - 1) // 2, groups=dim)
        self.norm = LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, int(mlp_ratio * dim))
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(int(mlp_ratio * dim), dim)
        self.gamma = nn.Parameter(1e-6 * torch.ones(dim))

    def forward(self, x):
        y = self.dwconv(x).permute(0, 2, 1)
        y = self.pwconv2(self.act(self.pwconv1(self.norm(y))))
        return x + (self.gamma * y).permute(0, 2, 1)


class ConvNeXtEncoder(nn.Module):
    def __init__(self, input_channels: int, depths, dims, kernel_size: int = 7) -> None:
        super().__init__()
        self.channel_layers = nn.ModuleList(
            [
                nn.Sequential(
                    nn.Conv1d(input_channels, dims[0], 7, padding=3, padding_mode="replicate"),
                    LayerNorm(dims[0], channels_first=True),
                )
            ]
        )
        for i in range(len(depths) - 1):
            self.channel_layers.append(
                nn.Sequential(LayerNorm(dims[i], channels_first=True), nn.Conv1d(dims[i], dims[i + 1], 1))
            )
        self.stages = nn.ModuleList(
            [
                nn.Sequential(*[ConvNeXtBlock(dims[i], kernel_size) for _ in range(depths[i])])
                for i in range(len(depths))
            ]
        )
        self.norm = LayerNorm(dims[-1], channels_first=True)

    def forward(self, x):
        for layer, stage in zip(self.channel_layers, self.stages, strict=True):
            x = stage(layer(x))
        return self.norm(x)


def _pad(k: int, d: int = 1) -> int:
    return (k * d - d) // 2


class ResBlock1(nn.Module):
    def __init__(self, ch: int, k: int, dilations) -> None:
        super().__init__()
        self.convs1 = nn.ModuleList(
            [weight_norm(nn.Conv1d(ch, ch, k, 1, dilation=d, padding=_pad(k, d))) for d in dilations]
        )
        self.convs2 = nn.ModuleList(
            [weight_norm(nn.Conv1d(ch, ch, k, 1, padding=_pad(k))) for _ in dilations]
        )

    def forward(self, x):
        for c1, c2 in zip(self.convs1, self.convs2, strict=True):
            x = x + c2(F.silu(c1(F.silu(x))))
        return x


class HiFiGANGenerator(nn.Module):
    def __init__(
        self,
        upsample_rates,
        upsample_kernel_sizes,
        resblock_kernel_sizes,
        resblock_dilation_sizes,
        num_mels,
        upsample_initial_channel,
        pre_conv_kernel_size,
        post_conv_kernel_size,
    ) -> None:
        super().__init__()
        c0 = upsample_initial_channel
        self.conv_pre = weight_norm(
            nn.Conv1d(num_mels, c0, pre_conv_kernel_size, 1, padding=_pad(pre_conv_kernel_size))
        )
        self.ups = nn.ModuleList(
            [
                weight_norm(nn.ConvTranspose1d(c0 // 2**i, c0 // 2 ** (i + 1), k, u, padding=(k - u) // 2))
                for i, (u, k) in enumerate(zip(upsample_rates, upsample_kernel_sizes, strict=True))
            ]
        )
        self.num_kernels = len(resblock_kernel_sizes)
        self.resblocks = nn.ModuleList()
        ch = c0
        for i in range(len(self.ups)):
            ch = c0 // 2 ** (i + 1)
            for k, d in zip(resblock_kernel_sizes, resblock_dilation_sizes, strict=True):
                self.resblocks.append(ResBlock1(ch, k, d))
        self.conv_post = weight_norm(
            nn.Conv1d(ch, 1, post_conv_kernel_size, 1, padding=_pad(post_conv_kernel_size))
        )

    def forward(self, x):
        x = self.conv_pre(x)
        for i, up in enumerate(self.ups):
            x = up(F.silu(x))
            xs = self.resblocks[i * self.num_kernels](x)
            for j in range(1, self.num_kernels):
                xs = xs + self.resblocks[i * self.num_kernels + j](x)
            x = xs / self.num_kernels
        return torch.tanh(self.conv_post(F.silu(x)))


class ADaMoSHiFiGANV1(ModelMixin, ConfigMixin):
    @register_to_config
    def __init__(
        self,
        input_channels: int = 128,
        depths=(3, 3, 9, 3),
        dims=(128, 256, 384, 512),
        drop_path_rate: float = 0.0,
        kernel_sizes=(7,),
        upsample_rates=(4, 4, 2, 2, 2, 2, 2),
        upsample_kernel_sizes=(8, 8, 4, 4, 4, 4, 4),
        resblock_kernel_sizes=(3, 7, 11, 13),
        resblock_dilation_sizes=((1, 3, 5), (1, 3, 5), (1, 3, 5), (1, 3, 5)),
        num_mels: int = 512,
        upsample_initial_channel: int = 1024,
        use_template: bool = False,
        pre_conv_kernel_size: int = 13,
        post_conv_kernel_size: int = 13,
        sampling_rate: int = 44100,
        n_fft: int = 2048,
        win_length: int = 2048,
        hop_length: int = 512,
        f_min: int = 40,
        f_max: int = 16000,
        n_mels: int = 128,
    ) -> None:
        super().__init__()
        self.backbone = ConvNeXtEncoder(input_channels, depths, dims, kernel_sizes[0])
        self.head = HiFiGANGenerator(
            upsample_rates,
            upsample_kernel_sizes,
            resblock_kernel_sizes,
            resblock_dilation_sizes,
            num_mels,
            upsample_initial_channel,
            pre_conv_kernel_size,
            post_conv_kernel_size,
        )

    def forward(self, mel):
        return self.head(self.backbone(mel))

    def fold_weight_norm(self) -> None:
        for m in self.head.modules():
            if hasattr(m, "weight_g"):
                remove_weight_norm(m)
