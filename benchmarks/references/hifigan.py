"""The original unit HiFi-GAN ``CodeGenerator`` (fairseq / speech-resynthesis / textlesslib), written plainly.

Weight norm stays torch's ``weight_norm`` parametrization, recomputed at every call, as in the original module; the
state dict keeps the original key names (``parametrizations.weight.original0/1`` for g / v), so speechzoo's
``hifigan`` converter reads what :func:`write_original` saves. ``tests/test_hifigan.py`` checks the converted
vocoders against it where the fixtures do not reach; ``benchmarks/bench_hifigan.py`` times it.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm


def _padding(kernel: int, dilation: int = 1) -> int:
    return (kernel * dilation - dilation) // 2


class ReferenceResBlock(nn.Module):
    """Both residual block types as the original writes them (``resblock`` "1": convs1/convs2; "2": convs)."""

    def __init__(self, kind: str, channels: int, kernel: int, dilations: list[int]) -> None:
        super().__init__()

        def conv(d):
            return weight_norm(nn.Conv1d(channels, channels, kernel, 1, dilation=d, padding=_padding(kernel, d)))

        self.kind = kind
        if kind == "1":
            self.convs1 = nn.ModuleList(conv(d) for d in dilations)
            self.convs2 = nn.ModuleList(conv(1) for _ in dilations)
        else:
            self.convs = nn.ModuleList(conv(d) for d in dilations[:2])

    def forward(self, x):
        if self.kind == "1":
            for c1, c2 in zip(self.convs1, self.convs2):
                xt = c2(F.leaky_relu(c1(F.leaky_relu(x, 0.1)), 0.1))
                x = xt + x
        else:
            for c in self.convs:
                x = c(F.leaky_relu(x, 0.1)) + x
        return x


class ReferenceDurationPredictor(nn.Module):
    def __init__(self, p: dict) -> None:
        super().__init__()
        k, h = p["var_pred_kernel_size"], p["var_pred_hidden_dim"]
        self.conv1 = nn.Sequential(nn.Conv1d(p["encoder_embed_dim"], h, k, padding=(k - 1) // 2), nn.ReLU())
        self.ln1 = nn.LayerNorm(h)
        self.conv2 = nn.Sequential(nn.Conv1d(h, h, k, padding=1), nn.ReLU())
        self.ln2 = nn.LayerNorm(h)
        self.proj = nn.Linear(h, 1)

    def forward(self, x):
        x = self.ln1(self.conv1(x.transpose(1, 2)).transpose(1, 2))
        x = self.ln2(self.conv2(x.transpose(1, 2)).transpose(1, 2))
        return self.proj(x).squeeze(2)


class ReferenceCodeGenerator(nn.Module):
    """fairseq/textlesslib ``CodeGenerator`` (raw or binned F0, speaker table or vector, style, extra features),
    written plainly from the original's code with weight norm as a parametrization. Its ``state_dict`` uses the original
    key names (``parametrizations.weight.original0/1`` for g/v), so the speechzoo converter reads it."""

    def __init__(self, h: dict) -> None:
        super().__init__()
        self.h = h
        c0 = h["upsample_initial_channel"]
        self.conv_pre = weight_norm(nn.Conv1d(h["model_in_dim"], c0, 7, 1, padding=3))
        self.ups = nn.ModuleList(weight_norm(nn.ConvTranspose1d(c0 // 2 ** i, c0 // 2 ** (i + 1), k, u,
                                                                padding=(k - u) // 2))
                                 for i, (u, k) in enumerate(zip(h["upsample_rates"], h["upsample_kernel_sizes"])))
        self.resblocks = nn.ModuleList(ReferenceResBlock(h.get("resblock", "1"), c0 // 2 ** (i + 1), k, d)
                                       for i in range(len(self.ups))
                                       for k, d in zip(h["resblock_kernel_sizes"], h["resblock_dilation_sizes"]))
        self.conv_post = weight_norm(nn.Conv1d(c0 // 2 ** len(self.ups), 1, 7, 1, padding=3))
        self.dict = nn.Embedding(h["num_embeddings"], h["embedding_dim"])
        self.dur_predictor = ReferenceDurationPredictor(h["dur_predictor_params"]) if h.get("dur_predictor_params") \
            else None
        self.f0_quant_embed = nn.Embedding(h["f0_quant_num_bin"], h["embedding_dim"]) if h.get("f0_quant_num_bin") \
            else None
        if h.get("embedder_params"):
            self.spkr = nn.Linear(h.get("embedder_dim", 256), h["embedding_dim"])
        elif h.get("multispkr"):
            self.spkr = nn.Embedding(h.get("num_speakers", 200), h["embedding_dim"])
        if h.get("multistyle"):
            self.style = nn.Embedding(h.get("num_styles", 100), h["embedding_dim"])

    @staticmethod
    def _upsample(signal, frames):
        if signal.dim() == 2:
            signal = signal.unsqueeze(2)
        return signal.repeat_interleave(frames // signal.shape[2], dim=2)

    def generator(self, x):
        x = self.conv_pre(x)
        k = len(self.h["resblock_kernel_sizes"])
        for i, up in enumerate(self.ups):
            x = up(F.leaky_relu(x, 0.1))
            xs = sum(self.resblocks[i * k + j](x) for j in range(k))
            x = xs / k
        return torch.tanh(self.conv_post(F.leaky_relu(x)))

    def forward(self, code, dur_prediction=False, f0=None, spkr=None, style=None, **extra):
        x = self.dict(code).transpose(1, 2)
        if self.dur_predictor is not None and dur_prediction:
            dur = torch.clamp(torch.round(torch.exp(self.dur_predictor(x.transpose(1, 2))) - 1).long(), min=1)
            x = torch.repeat_interleave(x, dur.view(-1), dim=2)
        if self.h.get("f0"):
            f0 = self.f0_quant_embed(f0.long()).transpose(1, 2) if self.f0_quant_embed else f0.unsqueeze(1)
            if x.shape[-1] < f0.shape[-1]:
                x = self._upsample(x, f0.shape[-1])
            else:
                f0 = self._upsample(f0, x.shape[-1])
            x = torch.cat([x, f0], dim=1)
        for name, ids in (("spkr", spkr), ("style", style)):
            if hasattr(self, name):
                x = torch.cat([x, self._upsample(getattr(self, name)(ids).transpose(1, 2), x.shape[-1])], dim=1)
        for feat in extra.values():
            x = torch.cat([x, self._upsample(feat, x.shape[-1])], dim=1)
        return self.generator(x)


def randomise(module: nn.Module, seed: int = 0) -> nn.Module:
    """Random weights whose activations stay O(1): weight-norm gains U(0.6, 1.2), everything else N(0, 0.3)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.endswith("original0"):
                p.copy_(torch.rand(p.shape, generator=g) * 0.6 + 0.6)
            else:
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return module.eval()


def write_original(reference: ReferenceCodeGenerator, directory: Path) -> tuple[Path, Path]:
    """Save ``reference`` as an original release: checkpoint ``g_00000001`` (``{"generator": state}``) and its
    ``config.json``; returns their paths, in the order ``python -m conversion hifigan`` takes them."""
    directory.mkdir(parents=True, exist_ok=True)
    torch.save({"generator": reference.state_dict()}, directory / "g_00000001")
    (directory / "config.json").write_text(json.dumps(reference.h))
    return directory / "g_00000001", directory / "config.json"
