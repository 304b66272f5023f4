"""GSLM unit-to-speech as the originals run it: fairseq's unit2speech Tacotron2, textlesslib's WaveGlow and denoiser.

Written plainly from the originals' code: the original module tree and state-dict names, Tacotron2's step-by-step
decoder with the prenet dropout drawn by ``F.dropout(training=True)`` (or replayed from given masks), WaveGlow with
``weight_norm`` hooks recomputed at every call, the whole ``cond_layer`` output per flow and a scripted fused
tanh·sigmoid (the original's own optimisation), the denoiser's STFT as convolutions with the windowed DFT basis.
``tests/test_gslm_u2s.py`` checks speechzoo against it where the fixture does not reach; ``benchmarks/bench_u2s.py``
times it.
"""
from __future__ import annotations

import itertools
import warnings
from argparse import Namespace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import weight_norm

from zoo.formats import tacotron2 as tacotron2_format
from zoo.formats import waveglow as waveglow_format

#: Upstream Tacotron2 hyper-parameters (spec §6) with GSLM's unit fields; n_symbols for a 100-unit code_dict.
TACOTRON2_HPARAMS = {
    "n_symbols": 103, "symbols_embedding_dim": 512, "encoder_n_convolutions": 3, "encoder_embedding_dim": 512,
    "encoder_kernel_size": 5, "n_mel_channels": 80, "n_frames_per_step": 1, "obs_dim": 0, "obs_n_class": 1,
    "lat_dim": 0, "lat_n_convolutions": 2, "lat_n_filters": 512, "lat_kernel_size": 3, "lat_n_blstms": 2,
    "attention_rnn_dim": 1024, "decoder_rnn_dim": 1024, "prenet_dim": 256, "max_decoder_steps": 2000,
    "gate_threshold": 0.5, "p_attention_dropout": 0.1, "p_decoder_dropout": 0.1, "attention_dim": 128,
    "attention_location_n_filters": 32, "attention_location_kernel_size": 31, "postnet_embedding_dim": 512,
    "postnet_kernel_size": 5, "postnet_n_convolutions": 5, "mask_padding": True, "fp16_run": False,
    "sampling_rate": 22050, "text_or_code": "code", "code_dict": "code_dict", "add_sos": True, "add_eos": True,
    "collapse_code": True, "code_key": "code"}
WAVEGLOW_HPARAMS = {"n_mel_channels": 80, "n_flows": 12, "n_group": 8, "n_early_every": 4, "n_early_size": 2,
                    "WN_config": {"n_layers": 8, "n_channels": 256, "kernel_size": 3}}
QUICK_TACOTRON2 = {**TACOTRON2_HPARAMS, "symbols_embedding_dim": 32, "encoder_embedding_dim": 32,
                   "attention_rnn_dim": 64, "decoder_rnn_dim": 64, "prenet_dim": 32, "attention_dim": 16,
                   "postnet_embedding_dim": 32}
QUICK_WAVEGLOW = {**WAVEGLOW_HPARAMS, "n_flows": 4, "WN_config": {"n_layers": 2, "n_channels": 16, "kernel_size": 3}}


# ------------------------------------------------------------------------------------------ reference Tacotron2
class LinearNorm(nn.Module):
    def __init__(self, n_in: int, n_out: int, bias: bool = True) -> None:
        super().__init__()
        self.linear_layer = nn.Linear(n_in, n_out, bias=bias)

    def forward(self, x):
        return self.linear_layer(x)


class ConvNorm(nn.Module):
    def __init__(self, n_in: int, n_out: int, kernel: int, bias: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv1d(n_in, n_out, kernel, padding=(kernel - 1) // 2, bias=bias)

    def forward(self, x):
        return self.conv(x)


class Prenet(nn.Module):
    """Two bias-free layers with dropout p=0.5 always on; ``masks`` (an iterator of keep flags) replaces the draws
    when set, which is how the fixtures were recorded."""

    def __init__(self, n_in: int, dim: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList([LinearNorm(n_in, dim, bias=False), LinearNorm(dim, dim, bias=False)])
        self.masks = None

    def forward(self, x):
        for linear in self.layers:
            x = F.relu(linear(x))
            x = F.dropout(x, p=0.5, training=True) if self.masks is None else x * next(self.masks).to(x.dtype) * 2
        return x


class Encoder(nn.Module):
    def __init__(self, h: Namespace) -> None:
        super().__init__()
        e = h.encoder_embedding_dim
        self.convolutions = nn.ModuleList(nn.Sequential(ConvNorm(e, e, h.encoder_kernel_size), nn.BatchNorm1d(e))
                                          for _ in range(h.encoder_n_convolutions))
        self.lstm = nn.LSTM(e, e // 2, 1, batch_first=True, bidirectional=True)

    def inference(self, x):
        for conv in self.convolutions:
            x = F.relu(conv(x))
        return self.lstm(x.transpose(1, 2))[0]


class LocationLayer(nn.Module):
    def __init__(self, filters: int, kernel: int, dim: int) -> None:
        super().__init__()
        self.location_conv = ConvNorm(2, filters, kernel, bias=False)
        self.location_dense = LinearNorm(filters, dim, bias=False)

    def forward(self, weights_cat):
        return self.location_dense(self.location_conv(weights_cat).transpose(1, 2))


class Attention(nn.Module):
    def __init__(self, h: Namespace) -> None:
        super().__init__()
        self.query_layer = LinearNorm(h.attention_rnn_dim, h.attention_dim, bias=False)
        self.memory_layer = LinearNorm(h.encoder_embedding_dim, h.attention_dim, bias=False)
        self.v = LinearNorm(h.attention_dim, 1, bias=False)
        self.location_layer = LocationLayer(h.attention_location_n_filters, h.attention_location_kernel_size,
                                            h.attention_dim)

    def forward(self, query, memory, processed_memory, weights_cat):
        energies = self.v(torch.tanh(self.query_layer(query.unsqueeze(1)) + self.location_layer(weights_cat)
                                     + processed_memory)).squeeze(-1)
        weights = F.softmax(energies, dim=1)
        return torch.bmm(weights.unsqueeze(1), memory).squeeze(1), weights


class Decoder(nn.Module):
    def __init__(self, h: Namespace) -> None:
        super().__init__()
        self.h = h
        extra = h.encoder_embedding_dim + h.obs_dim + h.lat_dim
        self.prenet = Prenet(h.n_mel_channels * h.n_frames_per_step, h.prenet_dim)
        self.attention_rnn = nn.LSTMCell(h.prenet_dim + h.encoder_embedding_dim, h.attention_rnn_dim)
        self.attention_layer = Attention(h)
        self.decoder_rnn = nn.LSTMCell(h.attention_rnn_dim + extra, h.decoder_rnn_dim)
        self.linear_projection = LinearNorm(h.decoder_rnn_dim + extra, h.n_mel_channels * h.n_frames_per_step)
        self.gate_layer = LinearNorm(h.decoder_rnn_dim + extra, 1)

    def inference(self, memory, obs_and_lat):
        h, (b, n, e) = self.h, memory.shape
        zeros = memory.new_zeros
        att = (zeros(b, h.attention_rnn_dim), zeros(b, h.attention_rnn_dim))
        dec = (zeros(b, h.decoder_rnn_dim), zeros(b, h.decoder_rnn_dim))
        weights, weights_cum, context = zeros(b, n), zeros(b, n), zeros(b, e)
        processed = self.attention_layer.memory_layer(memory)
        frame = zeros(b, h.n_mel_channels * h.n_frames_per_step)
        frames, gates, alignments = [], [], []
        while True:
            att = self.attention_rnn(torch.cat((self.prenet(frame), context), -1), att)
            context, weights = self.attention_layer(att[0], memory, processed,
                                                    torch.cat((weights.unsqueeze(1), weights_cum.unsqueeze(1)), 1))
            weights_cum = weights_cum + weights
            x = torch.cat([att[0], context] + ([obs_and_lat] if obs_and_lat is not None else []), -1)
            dec = self.decoder_rnn(x, dec)
            x = torch.cat([dec[0], context] + ([obs_and_lat] if obs_and_lat is not None else []), -1)
            frame, gate = self.linear_projection(x), self.gate_layer(x)
            frames.append(frame)
            gates.append(gate)
            alignments.append(weights)
            if torch.sigmoid(gate) > h.gate_threshold:
                has_eos = True
                break
            if len(frames) == h.max_decoder_steps:
                has_eos = False
                break
        mel = torch.stack(frames, 1).reshape(b, -1, h.n_mel_channels).transpose(1, 2)
        return mel, torch.stack(gates, 1), torch.stack(alignments, 1), has_eos


class Postnet(nn.Module):
    def __init__(self, h: Namespace) -> None:
        super().__init__()
        dims = [h.n_mel_channels] + [h.postnet_embedding_dim] * (h.postnet_n_convolutions - 1) + [h.n_mel_channels]
        self.convolutions = nn.ModuleList(nn.Sequential(ConvNorm(i, o, h.postnet_kernel_size), nn.BatchNorm1d(o))
                                          for i, o in itertools.pairwise(dims))

    def forward(self, x):
        for conv in self.convolutions[:-1]:
            x = torch.tanh(conv(x))
        return self.convolutions[-1](x)


class Tacotron2(nn.Module):
    """The original ``Tacotron2`` at inference (one utterance; the latent encoder's weights are not built, as
    they are unused at inference: its ``lat_dim`` only sizes the zero latent)."""

    def __init__(self, h: Namespace) -> None:
        super().__init__()
        self.h = h
        self.embedding = nn.Embedding(h.n_symbols, h.symbols_embedding_dim)
        self.obs_embedding = nn.Embedding(h.obs_n_class, h.obs_dim) if h.obs_dim > 0 else None
        self.encoder, self.decoder, self.postnet = Encoder(h), Decoder(h), Postnet(h)

    def inference(self, ids, obs_labels=None, lat=None, masks=None):
        self.decoder.prenet.masks = None if masks is None else iter(masks.reshape(-1, *masks.shape[2:]))
        memory = self.encoder.inference(self.embedding(ids).transpose(1, 2))
        parts = []
        if self.obs_embedding is not None:
            parts.append(self.obs_embedding(torch.zeros(len(ids), dtype=torch.long) if obs_labels is None
                                            else obs_labels))
        if self.h.lat_dim > 0:
            parts.append(memory.new_zeros(len(ids), self.h.lat_dim) if lat is None else lat)
        mel, gates, alignments, has_eos = self.decoder.inference(memory, torch.cat(parts, -1) if parts else None)
        return [mel, mel + self.postnet(mel), gates, alignments, has_eos]


# ------------------------------------------------------------------------------------------ reference WaveGlow
def _add_tanh_sigmoid_multiply(a: torch.Tensor, b: torch.Tensor, n_channels: int) -> torch.Tensor:
    acts = a + b
    return torch.tanh(acts[:, :n_channels]) * torch.sigmoid(acts[:, n_channels:])


with warnings.catch_warnings():   # scripted as the original does (torch 2.x deprecates TorchScript)
    warnings.simplefilter("ignore", DeprecationWarning)
    fused_add_tanh_sigmoid_multiply = torch.jit.script(_add_tanh_sigmoid_multiply)


class WN(nn.Module):
    def __init__(self, n_in: int, n_cond: int, n_layers: int, n_channels: int, kernel_size: int) -> None:
        super().__init__()
        self.n_layers, self.n_channels = n_layers, n_channels
        self.start = weight_norm(nn.Conv1d(n_in, n_channels, 1))
        self.end = nn.Conv1d(n_channels, 2 * n_in, 1)
        self.cond_layer = weight_norm(nn.Conv1d(n_cond, 2 * n_channels * n_layers, 1))
        self.in_layers, self.res_skip_layers = nn.ModuleList(), nn.ModuleList()
        for i in range(n_layers):
            d = 2 ** i
            self.in_layers.append(weight_norm(nn.Conv1d(n_channels, 2 * n_channels, kernel_size, dilation=d,
                                                        padding=(kernel_size * d - d) // 2)))
            out = 2 * n_channels if i < n_layers - 1 else n_channels
            self.res_skip_layers.append(weight_norm(nn.Conv1d(n_channels, out, 1)))

    def forward(self, audio, spect):
        audio, c = self.start(audio), self.n_channels
        output = torch.zeros_like(audio)
        spect = self.cond_layer(spect)
        for i in range(self.n_layers):
            acts = fused_add_tanh_sigmoid_multiply(self.in_layers[i](audio), spect[:, 2 * c * i: 2 * c * (i + 1)], c)
            res_skip = self.res_skip_layers[i](acts)
            if i < self.n_layers - 1:
                audio = audio + res_skip[:, :c]
                output = output + res_skip[:, c:]
            else:
                output = output + res_skip
        return self.end(output)


class Invertible1x1Conv(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(c, c, 1, bias=False)
        w = torch.linalg.qr(torch.randn(c, c))[0]
        if torch.det(w) < 0:
            w[:, 0] = -w[:, 0]
        self.conv.weight.data = w[:, :, None]

    def forward(self, z, reverse: bool = False):
        if reverse:
            w_inverse = self.conv.weight.squeeze(-1).float().inverse()[:, :, None].to(z.dtype)
            return F.conv1d(z, w_inverse)
        return self.conv(z)


class WaveGlow(nn.Module):
    """The original ``WaveGlow`` (module tree of ``glow.py``); ``infer`` takes the latent as ``noise`` (the
    original draws it on CUDA), in the layout ``forward`` returns."""

    def __init__(self, n_mel_channels, n_flows, n_group, n_early_every, n_early_size, WN_config) -> None:
        super().__init__()
        self.upsample = nn.ConvTranspose1d(n_mel_channels, n_mel_channels, 1024, stride=256)
        self.n_flows, self.n_group, self.n_early_every, self.n_early_size = n_flows, n_group, n_early_every, \
            n_early_size
        self.WN, self.convinv = nn.ModuleList(), nn.ModuleList()
        n_half, n_remaining = n_group // 2, n_group
        for k in range(n_flows):
            if k % n_early_every == 0 and k > 0:
                n_half, n_remaining = n_half - n_early_size // 2, n_remaining - n_early_size
            self.convinv.append(Invertible1x1Conv(n_remaining))
            self.WN.append(WN(n_half, n_mel_channels * n_group, **WN_config))
        self.n_remaining_channels = n_remaining

    def _spect(self, spect, samples):
        spect = self.upsample(spect)[:, :, :samples]
        spect = spect.unfold(2, self.n_group, self.n_group).permute(0, 2, 1, 3)
        return spect.contiguous().view(spect.size(0), spect.size(1), -1).permute(0, 2, 1)

    def forward(self, spect, audio):
        """Training direction: audio ``(B, N)`` → the latent ``(B, n_group, N / n_group)``."""
        spect = self._spect(spect, audio.shape[1])
        audio = audio.unfold(1, self.n_group, self.n_group).permute(0, 2, 1)
        early = []
        for k in range(self.n_flows):
            if k % self.n_early_every == 0 and k > 0:
                early.append(audio[:, : self.n_early_size])
                audio = audio[:, self.n_early_size:]
            audio = self.convinv[k](audio)
            half = audio.size(1) // 2
            out = self.WN[k]((audio[:, :half]), spect)
            audio = torch.cat([audio[:, :half], torch.exp(out[:, half:]) * audio[:, half:] + out[:, :half]], 1)
        return torch.cat(early + [audio], 1)

    def infer(self, spect, sigma: float = 1.0, noise=None):
        spect = self._spect(spect, spect.shape[2] * 256)
        if noise is None:
            noise = torch.randn(spect.size(0), self.n_group, spect.size(2), dtype=spect.dtype)
        noise = noise.to(spect.dtype)
        blocks = list(noise[:, : self.n_group - self.n_remaining_channels].split(self.n_early_size, 1))
        audio = sigma * noise[:, self.n_group - self.n_remaining_channels:]
        for k in reversed(range(self.n_flows)):
            half = audio.size(1) // 2
            out = self.WN[k]((audio[:, :half]), spect)
            audio = torch.cat([audio[:, :half], (audio[:, half:] - out[:, :half]) / torch.exp(out[:, half:])], 1)
            audio = self.convinv[k](audio, reverse=True)
            if k % self.n_early_every == 0 and k > 0:
                audio = torch.cat((sigma * blocks.pop(), audio), 1)
        return audio.permute(0, 2, 1).contiguous().view(audio.size(0), -1)


class Denoiser(nn.Module):
    """The original ``Denoiser`` + ``STFT`` (pseudo-inverse by ``torch.linalg.pinv``, as ``np.linalg.pinv``)."""

    def __init__(self, waveglow: WaveGlow, filter_length: int = 1024, n_overlap: int = 4) -> None:
        super().__init__()
        n, hop = filter_length, filter_length // n_overlap
        self.n, self.hop = n, hop
        fourier = torch.fft.fft(torch.eye(n, dtype=torch.float64))[: n // 2 + 1]
        basis = torch.cat((fourier.real, fourier.imag))
        window = torch.hann_window(n, periodic=True, dtype=torch.float64)
        self.forward_basis = basis.float()[:, None] * window.float()
        self.inverse_basis = torch.linalg.pinv(n / hop * basis).T.float()[:, None] * window.float()
        self.window_sq = window ** 2
        mel = torch.zeros(1, waveglow.upsample.in_channels, 88, dtype=waveglow.upsample.weight.dtype)
        bias_audio = waveglow.infer(mel, sigma=0.0, noise=torch.zeros(1, waveglow.n_group, 88 * 256 // 8)).float()
        self.bias_spec = self.transform(bias_audio)[0][:, :, :1]

    def transform(self, x):
        x = F.pad(x[:, None, None], (self.n // 2, self.n // 2, 0, 0), mode="reflect")[:, 0]
        spec = F.conv1d(x, self.forward_basis, stride=self.hop)
        re, im = spec[:, : self.n // 2 + 1], spec[:, self.n // 2 + 1:]
        return torch.sqrt(re ** 2 + im ** 2), torch.atan2(im, re)

    def forward(self, audio, strength: float = 0.1):
        mag, phase = self.transform(audio.float())
        mag = torch.clamp(mag - self.bias_spec * strength, min=0.0)
        out = F.conv_transpose1d(torch.cat((mag * torch.cos(phase), mag * torch.sin(phase)), 1), self.inverse_basis,
                                 stride=self.hop)
        frames = mag.shape[-1]
        envelope = torch.zeros(self.n + self.hop * (frames - 1), dtype=torch.float64)
        for i in range(frames):
            envelope[i * self.hop: i * self.hop + self.n] += self.window_sq
        envelope = envelope.float()
        nonzero = envelope > torch.finfo(torch.float32).tiny
        out[:, :, nonzero] /= envelope[nonzero]
        out = out * (self.n / self.hop)
        return out[:, :, self.n // 2: -(self.n // 2)]


# ------------------------------------------------------------------------------------------ weights
def randomise(module: nn.Module, seed: int = 0, scale: float = 0.1) -> nn.Module:
    """Random weights whose activations stay O(1): weight-norm gains U(0.6, 1.2), BatchNorm statistics around
    (0, 1), everything else N(0, scale²); the invertible 1×1 convolutions stay orthonormal."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.state_dict().items():
            if name.endswith("num_batches_tracked") or name.startswith("convinv"):
                continue
            if name.endswith("weight_g"):
                p.copy_(torch.rand(p.shape, generator=g) * 0.6 + 0.6)
            elif name.endswith("running_var"):
                p.copy_(torch.rand(p.shape, generator=g) + 0.5)
            else:
                p.copy_(torch.randn(p.shape, generator=g) * scale)
    return module.eval()


def converted_tacotron2(reference: Tacotron2, directory: Path, codes: list[str]):
    """The reference's weights saved as a GSLM TTS checkpoint + code_dict, converted by speechzoo."""
    torch.save({"hparams": reference.h, "model_dict": reference.state_dict(), "iteration": 0}, directory / "tts.pt")
    (directory / "code_dict").write_text("".join(f"{c}\n" for c in codes))
    return tacotron2_format.convert([directory / "tts.pt", directory / "code_dict"])


def converted_waveglow(reference: WaveGlow, hparams: dict, directory: Path):
    """The reference's weights saved as textlesslib's standalone WaveGlow, converted by speechzoo."""
    torch.save({"hparams": hparams, "model_dict": reference.state_dict()}, directory / "waveglow.pt")
    return waveglow_format.convert([directory / "waveglow.pt"])
