"""WavTokenizer speed on CPU: speechzoo vs a straightforward re-implementation in the original's module order.

The reference below follows nicolvisser/WavTokenizer's modules one to one: weight-norm parametrised encoder convs
(recomputed at every call), EnCodec's pad-then-conv wrappers, explicit bmm/softmax attention, LayerNorm followed by
an embedding-row scale and shift, and the head's complex product. Both models hold the same random weights of the
real ``small_600_24k_4096`` architecture, and the table also reports how far their outputs are apart.

    python -m benchmarks.bench_wavtokenizer            # 10 s of audio / codes, 2 threads (the reported numbers)
    python -m benchmarks.bench_wavtokenizer --quick    # 2 s, a smoke test
"""
from __future__ import annotations

import argparse
import math
import statistics

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from benchmarks.timing import timings
from zoo.models.wavtokenizer import SAMPLE_RATE, VARIANTS, WavTokenizer

THREADS = 2
VARIANT = "small_600_24k_4096"


# ------------------------------------------------------------------------------------------ reference
class RefSConv1d(nn.Module):
    """EnCodec's SConv1d: reflect padding (extra on the right for a full last window), weight-normed conv."""

    def __init__(self, conv: nn.Conv1d) -> None:
        super().__init__()
        plain = nn.Conv1d(conv.in_channels, conv.out_channels, conv.kernel_size[0], conv.stride[0],
                          dilation=conv.dilation[0])
        plain.load_state_dict(conv.state_dict())
        self.conv = weight_norm(plain)  # g = ‖w‖, v = w: the same effective weight, recomputed per call

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kernel = (self.conv.kernel_size[0] - 1) * self.conv.dilation[0] + 1
        stride = self.conv.stride[0]
        total = kernel - stride
        frames = (x.shape[-1] - kernel + total) / stride + 1
        extra = (math.ceil(frames) - 1) * stride + (kernel - total) - x.shape[-1]
        right = total // 2
        left, right = total - right, right + extra
        short = max(left, right) - x.shape[-1] + 1
        if short > 0:
            x = F.pad(x, (0, short))
        x = F.pad(x, (left, right), mode="reflect")
        return self.conv(x[..., : x.shape[-1] - max(short, 0)])


class RefResnet(nn.Module):
    def __init__(self, block) -> None:
        super().__init__()
        self.block = nn.Sequential(nn.ELU(), RefSConv1d(block.conv1), nn.ELU(), RefSConv1d(block.conv2))
        self.shortcut = RefSConv1d(block.shortcut)

    def forward(self, x):
        return self.shortcut(x) + self.block(x)


class RefLSTM(nn.Module):
    def __init__(self, lstm: nn.LSTM) -> None:
        super().__init__()
        self.lstm = nn.LSTM(lstm.input_size, lstm.hidden_size, lstm.num_layers)
        self.lstm.load_state_dict(lstm.state_dict())

    def forward(self, x):
        y, _ = self.lstm(x.permute(2, 0, 1))
        return y.permute(1, 2, 0) + x


def reference_encoder(encoder) -> nn.Sequential:
    """EnCodec's SEANetEncoder ``nn.Sequential`` in its original order, with ``encoder``'s weights."""
    layers = [RefSConv1d(encoder.conv_in)]
    for block in encoder.blocks:
        layers += [*(RefResnet(r) for r in block.residuals), nn.ELU(), RefSConv1d(block.downsample)]
    return nn.Sequential(*layers, RefLSTM(encoder.lstm), nn.ELU(), RefSConv1d(encoder.conv_out))


def group_norm(dim):
    return nn.GroupNorm(32, dim, eps=1e-6, affine=True)


def swish(x):
    return x * torch.sigmoid(x)


class RefResnetBlock(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.norm1, self.conv1 = group_norm(dim), nn.Conv1d(dim, dim, 3, padding=1)
        self.norm2, self.dropout, self.conv2 = group_norm(dim), nn.Dropout(0.1), nn.Conv1d(dim, dim, 3, padding=1)

    def forward(self, x):
        h = self.conv1(swish(self.norm1(x)))
        return x + self.conv2(self.dropout(swish(self.norm2(h))))


class RefAttnBlock(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.norm = group_norm(dim)
        self.q, self.k, self.v, self.proj_out = (nn.Conv1d(dim, dim, 1) for _ in range(4))

    def forward(self, x):
        h = self.norm(x)
        q, k, v = self.q(h), self.k(h), self.v(h)
        w = torch.softmax(torch.bmm(q.permute(0, 2, 1), k) * q.shape[1] ** -0.5, dim=2)
        return x + self.proj_out(torch.bmm(v, w.permute(0, 2, 1)))


class RefAdaLayerNorm(nn.Module):
    def __init__(self, rows, dim):
        super().__init__()
        self.dim, self.scale, self.shift = dim, nn.Embedding(rows, dim), nn.Embedding(rows, dim)

    def forward(self, x, cond):
        x = F.layer_norm(x, (self.dim,), eps=1e-6)
        return x * self.scale(cond) + self.shift(cond)


class RefConvNeXt(nn.Module):
    def __init__(self, dim, hidden, rows):
        super().__init__()
        self.dwconv = nn.Conv1d(dim, dim, 7, padding=3, groups=dim)
        self.norm = RefAdaLayerNorm(rows, dim)
        self.pwconv1, self.act, self.pwconv2 = nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x, cond):
        h = self.norm(self.dwconv(x).transpose(1, 2), cond)
        h = self.gamma * self.pwconv2(self.act(self.pwconv1(h)))
        return x + h.transpose(1, 2)


class RefBackbone(nn.Module):
    def __init__(self, config):
        super().__init__()
        dim, rows = config.dim, config.adanorm_num_embeddings
        self.embed = nn.Conv1d(config.input_channels, dim, 7, padding=3)
        self.norm = RefAdaLayerNorm(rows, dim)
        self.convnext = nn.ModuleList(RefConvNeXt(dim, config.intermediate_dim, rows) for _ in range(config.num_layers))
        self.final_layer_norm = nn.LayerNorm(dim, eps=1e-6)
        self.pos_net = nn.Sequential(RefResnetBlock(dim), RefResnetBlock(dim), RefAttnBlock(dim),
                                     RefResnetBlock(dim), RefResnetBlock(dim), group_norm(dim))

    def forward(self, x, cond):
        x = self.pos_net(self.embed(x))
        x = self.norm(x.transpose(1, 2), cond).transpose(1, 2)
        for block in self.convnext:
            x = block(x, cond)
        return self.final_layer_norm(x.transpose(1, 2))


class RefHead(nn.Module):
    def __init__(self, dim, n_fft, hop):
        super().__init__()
        self.out, self.n_fft, self.hop = nn.Linear(dim, n_fft + 2), n_fft, hop
        self.register_buffer("window", torch.hann_window(n_fft))

    def forward(self, x):
        mag, p = self.out(x).transpose(1, 2).chunk(2, dim=1)
        spec = torch.clip(torch.exp(mag), max=1e2) * (torch.cos(p) + 1j * torch.sin(p))
        pad, frames = (self.n_fft - self.hop) // 2, spec.shape[-1]
        size = (frames - 1) * self.hop + self.n_fft
        ifft = torch.fft.irfft(spec, self.n_fft, dim=1, norm="backward") * self.window[None, :, None]
        y = F.fold(ifft, (1, size), (1, self.n_fft), stride=(1, self.hop))[:, 0, 0, pad:-pad]
        envelope = F.fold(self.window.square().expand(1, frames, -1).transpose(1, 2), (1, size), (1, self.n_fft),
                          stride=(1, self.hop)).squeeze()[pad:-pad]
        assert (envelope > 1e-11).all()
        return y / envelope


class Reference(nn.Module):
    """The original's encode / codes_to_features / decode, in its module order, with ``model``'s weights."""

    def __init__(self, model: WavTokenizer) -> None:
        super().__init__()
        config = model.config
        self.encoder = reference_encoder(model.encoder)
        self.register_buffer("embed", model.quantizers[0].codebook.clone())
        self.backbone = RefBackbone(config.backbone)
        self.backbone.load_state_dict(model.backbone.state_dict())
        self.head = RefHead(config.backbone.dim, config.head.n_fft, config.head.hop_length)
        self.head.out.load_state_dict(model.head.out.state_dict())

    @torch.inference_mode()
    def encode(self, audio, bandwidth_id):
        x = self.encoder(audio.unsqueeze(1)).permute(0, 2, 1)
        flat, embed = x.reshape(-1, x.shape[-1]), self.embed.t()
        dist = -(flat.pow(2).sum(1, keepdim=True) - 2 * flat @ embed + embed.pow(2).sum(0, keepdim=True))
        codes = dist.max(dim=-1).indices.view(*x.shape[:-1])
        return F.embedding(codes, self.embed).permute(0, 2, 1), codes[None]

    @torch.inference_mode()
    def codes_to_features(self, codes):
        return F.embedding(codes, self.embed).sum(dim=0).transpose(1, 2)

    @torch.inference_mode()
    def decode(self, features, bandwidth_id):
        return self.head(self.backbone(features, bandwidth_id))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 s instead of 10 s, 2 repeats: a smoke test")
    parser.add_argument("--seconds", type=float, default=10.0, help="audio / codes duration")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    seconds, repeats = (2.0, 2) if args.quick else (args.seconds, args.repeats)
    torch.set_num_threads(THREADS)
    torch.manual_seed(0)

    model = WavTokenizer(VARIANTS[VARIANT]).eval()
    reference = Reference(model).eval()
    frames = math.ceil(seconds * model.config.frame_rate)
    codes = torch.randint(0, model.config.codebook_size, (1, 1, frames))
    audio = 0.1 * torch.randn(1, int(seconds * SAMPLE_RATE))
    bandwidth_id = torch.tensor([0])

    ours_features = model.codes_to_features(codes)
    runs = {
        "decode": (lambda: model.decode(model.codes_to_features(codes), bandwidth_id),
                   lambda: reference.decode(reference.codes_to_features(codes), bandwidth_id)),
        "encode": (lambda: model.encode(audio, bandwidth_id), lambda: reference.encode(audio, bandwidth_id)),
    }
    with torch.inference_mode():
        wav_diff = (model.decode(ours_features, bandwidth_id)
                    - reference.decode(ours_features, bandwidth_id)).abs().max()
        codes_agree = torch.equal(model.encode(audio, bandwidth_id)[1], reference.encode(audio, bandwidth_id)[1])

    print(f"WavTokenizer {VARIANT} (random weights), {seconds:g} s ({frames} frames), CPU, "
          f"torch {torch.__version__}, {THREADS} threads, {repeats} repeats after a warm-up\n")
    print("| task | speechzoo min / median (s) | reference min / median (s) | speed-up (median) |")
    print("|---|---|---|---|")
    for task, fns in runs.items():
        a, b = timings(*fns, repeats=repeats)
        print(f"| {task} | {min(a):.3f} / {statistics.median(a):.3f} | {min(b):.3f} / {statistics.median(b):.3f} "
              f"| {statistics.median(b) / statistics.median(a):.2f}× |")
    print(f"\noutputs: decode max |Δwav| = {wav_diff:.2e}; encode codes identical: {codes_agree}")


if __name__ == "__main__":
    main()
