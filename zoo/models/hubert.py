"""HuBERT (Hsu et al. 2021, https://arxiv.org/abs/2106.07447) and wav2vec 2.0 (Baevski et al. 2020,
https://arxiv.org/abs/2006.11477) as fairseq runs them for features, and GSLM's readers over them.

The two differ only in configuration: both are the backbone of :mod:`zoo.nn.wav2vec2` (a strided conv stack
to 50 Hz frames, LayerNorm + Linear, a grouped positional conv, post-LN "Base" or pre-LN "Large" transformer
blocks) without WavLM's relative position bias. Pretraining-only tensors (``mask_emb``, HuBERT's ``final_proj``
and ``label_embs_concat``, wav2vec 2.0's quantizer, ``project_q`` and ``final_proj``) are not kept.

The readers reproduce GSLM's (``speech2unit/pretrained/{hubert,w2v2}_feature_reader.py``), each with its own
``layer`` indexing:

* :class:`HubertFeatureReader` — ``layer`` is 1-based (the output of block L; -1, 0 and values above N give the
  last block); the waveform is layer-normalised over the whole utterance first when the checkpoint's task has
  ``normalize`` (HuBERT Large), then cut into ``max_chunk``-sample chunks encoded independently.
* :class:`Wav2VecFeatureReader` — ``layer`` is a 0-based Python index into the per-block outputs (0 = block 1,
  -1 = the last block); no normalisation and no chunking, whatever the checkpoint was trained with.

Neither applies the final encoder LayerNorm of a pre-LN model. Ragged batches give each item its own features
(the GroupNorm of HuBERT Base's first conv block normalises each item over its own frames).

Example::

    >>> import torch
    >>> config = HubertConfig(conv_layers=((32, 10, 5),) + ((32, 3, 2),) * 4 + ((32, 2, 2),) * 2,
    ...                       embed_dim=48, num_layers=3, num_heads=4, ffn_dim=96, pos_conv_kernel=16,
    ...                       pos_conv_groups=4)
    >>> reader = HubertFeatureReader(Hubert(config), layer=2)
    >>> reader(torch.randn(8000)).shape          # 0.5 s -> (8000 - 400) // 320 + 1 frames
    torch.Size([24, 48])
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import ConfigError, InputError
from ..modeling import PretrainedModel
from ..nn.wav2vec2 import EXTRACTOR_MODES, Chunk, Wav2Vec2Backbone, encode_chunks
from ..registry import SourceFile, Weights
from .feature_reader import SAMPLE_RATE, FeatureReader

#: The HuBERT reader's default chunk: 1.6 M samples (100 s at 16 kHz), each encoded on its own.
MAX_CHUNK = 1_600_000


@dataclass(frozen=True)
class HubertConfig:
    """What a HuBERT / wav2vec 2.0 model is at inference. Defaults are HuBERT Base; the fairseq cfg name of each
    field is given (dropouts, masking and pretraining heads do not change features)."""

    # (channels, kernel, stride) per conv block — conv_feature_layers
    conv_layers: tuple[tuple[int, int, int], ...] = ((512, 10, 5),) + ((512, 3, 2),) * 4 + ((512, 2, 2),) * 2
    extractor_mode: str = "default"         # extractor_mode: "default" (GroupNorm, Base) | "layer_norm" (Large)
    conv_bias: bool = False                 # conv_bias
    project_features: bool = True           # post_extract_proj exists (iff conv channels != embed_dim)
    embed_dim: int = 768                    # encoder_embed_dim
    num_layers: int = 12                    # encoder_layers
    num_heads: int = 12                     # encoder_attention_heads
    ffn_dim: int = 3072                     # encoder_ffn_embed_dim
    layer_norm_first: bool = False          # layer_norm_first: pre-LN blocks (Large)
    pos_conv_kernel: int = 128              # conv_pos
    pos_conv_groups: int = 16               # conv_pos_groups
    normalize: bool = False                 # task normalize: the HuBERT reader layer-norms the waveform first

    def __post_init__(self) -> None:
        if self.extractor_mode not in EXTRACTOR_MODES:
            raise ConfigError(f"extractor_mode must be one of {EXTRACTOR_MODES}, got {self.extractor_mode!r}")
        if self.embed_dim % self.num_heads:
            raise ConfigError(f"embed_dim {self.embed_dim} is not divisible by num_heads {self.num_heads}")


class Hubert(Wav2Vec2Backbone, PretrainedModel):
    """HuBERT: waveforms ``(B, N)`` at 16 kHz → features ``(B, T, embed_dim)`` at 50 Hz;
    ``model(waveforms, lengths, output_layer=L)`` as :meth:`~zoo.nn.wav2vec2.Wav2Vec2Backbone.forward` (fairseq's
    ``extract_features(source, padding_mask, mask=False, output_layer=L)``)."""

    config_class = HubertConfig
    model_type = "hubert"

    def __init__(self, config: HubertConfig) -> None:
        super().__init__(config)
        self.build_backbone(
            conv_layers=config.conv_layers, extractor_mode=config.extractor_mode, conv_bias=config.conv_bias,
            project_features=config.project_features, embed_dim=config.embed_dim, num_layers=config.num_layers,
            num_heads=config.num_heads, ffn_dim=config.ffn_dim, layer_norm_first=config.layer_norm_first,
            pos_conv_kernel=config.pos_conv_kernel, pos_conv_groups=config.pos_conv_groups)

    @property
    def sample_rate(self) -> int:
        """The rate of the audio the model reads (Hz)."""
        return SAMPLE_RATE


class Wav2Vec2(Hubert):
    """wav2vec 2.0: the same network as :class:`Hubert` (its own ``model_type``, so that the weights of one are
    never read as the other's)."""

    model_type = "wav2vec2"


# ------------------------------------------------------------------------------------------ GSLM readers
class HubertFeatureReader(FeatureReader):
    """GSLM's ``HubertFeatureReader(checkpoint_path, layer, max_chunk=1600000)`` over a loaded :class:`Hubert`.

    ``layer`` is 1-based: the output of block ``layer``; -1, 0 and values above N give the last block's output.
    """

    def __init__(self, model: Hubert, layer: int, max_chunk: int = MAX_CHUNK) -> None:
        super().__init__()
        if isinstance(layer, bool) or not isinstance(layer, int):
            raise InputError(f"layer must be an int (1-based block; -1 for the last), got {layer!r}")
        if isinstance(max_chunk, bool) or not isinstance(max_chunk, int) or max_chunk < model.receptive_field:
            raise InputError(f"max_chunk must be a whole number of samples of at least {model.receptive_field} "
                             f"(one frame), got {max_chunk!r}")
        self.model, self.layer, self.max_chunk = model.eval(), layer, max_chunk
        self.min_samples, self.hop_length = model.receptive_field, model.hop_length

    @property
    def dim(self) -> int:
        """Feature dimension."""
        return self.model.config.embed_dim

    def encode(self, wavs: torch.Tensor, lengths: list[int], *, progress: bool = False
               ) -> tuple[torch.Tensor, list[int]]:
        if self.model.config.normalize:  # whole-utterance F.layer_norm before chunking, each item over itself
            wavs = wavs.clone()
            for row, n in enumerate(lengths):
                wavs[row, :n] = F.layer_norm(wavs[row, :n], (n,))
        chunks, frames = [], []
        for item, n in enumerate(lengths):
            first = 0
            for start in range(0, n, self.max_chunk):
                stop = min(start + self.max_chunk, n)
                # a last piece shorter than one frame has no frames (the original's conv stack fails on it)
                count = self.model.num_frames(stop - start)
                if count:
                    chunks.append(Chunk(item, first, first + count, start, stop))
                first += count
            frames.append(first)
        return encode_chunks(self.model, wavs, chunks, self.layer, num_frames=frames, progress=progress,
                             desc="HuBERT chunks"), frames


class Wav2VecFeatureReader(FeatureReader):
    """GSLM's ``Wav2VecFeatureReader(checkpoint_path, layer)`` over a loaded :class:`Wav2Vec2`.

    ``layer`` indexes fairseq's ``layer_results`` as a Python list: 0 is block 1's output, -1 the last block's.
    The whole utterance is encoded at once, never normalised (the original ignores the task's ``normalize``).
    """

    def __init__(self, model: Hubert, layer: int) -> None:
        super().__init__()
        n = model.num_layers
        if isinstance(layer, bool) or not isinstance(layer, int) or not -n <= layer < n:
            raise InputError(f"layer={layer!r} does not index the {n} blocks' outputs: give 0 ... {n - 1} "
                             f"(0-based, as the original) or -{n} ... -1")
        self.model, self.layer = model.eval(), layer
        self.min_samples, self.hop_length = model.receptive_field, model.hop_length

    @property
    def dim(self) -> int:
        """Feature dimension."""
        return self.model.config.embed_dim

    def get_feats(self, source, channel_id: int | None = None) -> torch.Tensor:
        """The original's ``get_feats(file_path, channel_id=None)``, which also takes the 1-D waveform itself."""
        return self(self.read(source, channel_id))

    def encode(self, wavs: torch.Tensor, lengths: list[int], *, progress: bool = False
               ) -> tuple[torch.Tensor, list[int]]:
        frames = [self.model.num_frames(n) for n in lengths]
        chunks = [Chunk(item, 0, count, 0, n) for item, (n, count) in enumerate(zip(lengths, frames))]
        block = self.layer % self.model.num_layers + 1  # the 1-based block whose output layer_results[layer] is
        return encode_chunks(self.model, wavs, chunks, block, num_frames=frames, progress=progress,
                             desc="wav2vec 2.0"), frames


# ------------------------------------------------------------------------------------------ released weights
_FAIR = "https://dl.fbaipublicfiles.com/"


def _release(name: str, entry_point: str, url: str, sha256: str | None, *, converter: str, license: str,
             paper: str, description: str, frame_rate: float = SAMPLE_RATE / 320) -> Weights:
    return Weights(name=name, entry_point=entry_point, kwargs={"checkpoint": name}, converter=converter,
                   source_files=(SourceFile(url, sha256),), license=license, paper=paper, description=description,
                   sample_rate=SAMPLE_RATE, frame_rate=frame_rate)


#: The released checkpoints, selected by textlesslib's dense-model name. The layer GSLM and its successors read is
#: a reader setting, not part of the weights: it is in each description (and in the speech encoder's table).
WEIGHTS = (
    _release("hubert-base-ls960", "hubert_feature_reader",
             f"{_FAIR}hubert/hubert_base_ls960.pt",
             "1703cf8d2cdc76f8c046f5f6a9bcd224e0e6caf4744cad1a1f4199c32cac8c8d",
             converter="hubert", license="MIT", paper="https://arxiv.org/abs/2106.07447",
             description="HuBERT Base (LibriSpeech 960 h), 12 blocks, 768-dim features; GSLM's HuBERT k-means "
                         "50/100/200 cluster layer 6, the km500 set (Expresso vocoders) layer 9"),
    _release("hubert-fisher", "hubert_feature_reader",
             f"{_FAIR}textless_nlp/dgslm/checkpoints/hubert/hubert_fisher.pt", None,
             converter="hubert", license="CC-BY-NC-4.0", paper="https://arxiv.org/abs/2203.16502",
             description="dGSLM's HuBERT Base trained on Fisher (8 kHz telephone speech upsampled to 16 kHz); "
                         "the dGSLM k-means 500 units cluster layer 12"),
    _release("mhubert-base-vp_en_es_fr", "hubert_feature_reader",
             f"{_FAIR}hubert/mhubert_base_vp_en_es_fr_it3.pt",
             "23527cd6311a6617bfa199f574e2eed478cd6a58a634f4007165c10ec0019832",
             converter="hubert", license="CC-BY-NC-4.0", paper="https://arxiv.org/abs/2112.08352",
             description="multilingual HuBERT Base (VoxPopuli En/Es/Fr, 3rd iteration); the k-means 1000 units of "
                         "the speech-to-speech unit HiFi-GAN vocoders cluster layer 11"),
    _release("mhubert-base-vp_mls_cv_8lang", "hubert_feature_reader",
             f"{_FAIR}hubert/mhubert_base_vp_mls_cv_8lang_it3.pt",
             "fa82eaccb557465f4732662e3a744c30c953059147ac6a4c92f1f3e0daeda61e",
             converter="hubert", license="CC-BY-NC-4.0", paper="https://arxiv.org/abs/2308.05725",
             description="multilingual HuBERT Base (VoxPopuli, MLS, CommonVoice: 8 languages, 3rd iteration); the "
                         "Expresso k-means 2000 units cluster layer 12"),
    _release("mhubert-base-25hz", "hubert_feature_reader",
             f"{_FAIR}textless_nlp/twist/speech_tokenizer/mhubert_base_25hz_cp_mls_cv_sp_fisher.pt",
             "edf0f5be2581a568a236aeb2781a5607c5af25806e12f40f7f2391e861fe3cf0",
             converter="hubert", license="CC-BY-NC-4.0", paper="https://arxiv.org/abs/2305.13009",
             description="TWIST's multilingual HuBERT Base at 25 Hz (MLS, CommonVoice, Spotify, Fisher); the TWIST "
                         "k-means 500 units cluster layer 11", frame_rate=25.0),
    _release("w2v2-large-vox-new", "w2v2_feature_reader",
             f"{_FAIR}fairseq/wav2vec/wav2vec_vox_new.pt", None,
             converter="wav2vec2", license="MIT", paper="https://arxiv.org/abs/2006.11477",
             description="wav2vec 2.0 Large (LibriVox 60k h, 'vox_new'), 24 blocks, 1024-dim features: GSLM's "
                         "w2v2 model (the layer its k-means cluster was not recorded)"),
)
