"""dGSLM end to end: a two-speaker conversation → per-channel units → SpeechDLM continuation → stereo speech.

What fairseq's ``examples/textless_nlp/dgslm`` does with ``dgslm_utils.py`` (``HubertTokenizer``, the SpeechDLM hub
interface's ``sample``, ``HifiganVocoder.codes2wav``), as one module:

1. each channel (one speaker each) → dGSLM's Fisher HuBERT, layer 12 → k-means 500 units, one per 20 ms frame
   (NOT deduplicated: the SpeechDLM models run lengths itself);
2. both unit streams continued jointly by the SpeechDLM (sampling by default, as ``sample_speech_dlm.py``: 5 samples,
   the best-scoring kept); the generator's duration predictions already repeat each new unit for its predicted
   number of frames, so the result is again one unit per frame;
3. each channel vocoded by the dGSLM unit HiFi-GAN with the speaker the dGSLM demo gives it (0 for channel A, 4 for
   channel B), without its duration predictor (``code2wav(pred_dur=False)``), at 16 kHz.

The result is stereo: the prompt (resynthesised) followed by the continuation, one speaker per channel.

Units the vocoder cannot speak (``<unk>``, ``madeupword…``: the model may sample them, since fairseq only masks
them with ``unkpen``) are replaced by the unit before them, so that both channels keep one unit per frame.

Example (the released models; tiny converted copies load the same way through ``weights=``)::

    >>> dialogue = DialogueGSLM.from_pretrained()                          # doctest: +SKIP
    >>> stereo = dialogue.continue_dialogue(wav, seconds=20, seed=123)     # wav: (2, samples) at 16 kHz  # doctest: +SKIP
"""
from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence

import torch
from torch import nn
from tqdm.auto import tqdm

from ..download import load
from ..errors import InputError
from ..models.codebook import Codebook
from ..models.hifigan import CodeHiFiGAN
from ..models.speech_dlm import SpeechDLM, SpeechDLMHubInterface
from .gslm import SAMPLE_RATE, SpeechEncoder, dense_reader

#: The dense model, vocabulary, SpeechDLM and vocoder of the released dGSLM.
DENSE_MODEL = "hubert-fisher"
VOCAB_SIZE = 500
SPEECH_DLM = "speech_dlm_base"
VOCODER = "dgslm_fisher_hubert_km500"
#: Vocoder speaker of each channel, as ``dgslm_utils.HifiganVocoder`` speaks them.
SPEAKERS = (0, 4)
#: ``sample_speech_dlm.py``'s defaults: sampling, 5 samples per prompt (the best kept).
SAMPLES_PER_PROMPT = 5
#: What ``DialogueGSLM.from_pretrained(weights=...)`` may replace.
COMPONENTS = ("dense", "kmeans", "speech_dlm", "vocoder")


class DialogueGSLM(nn.Module):
    """dGSLM: :class:`~zoo.pipelines.gslm.SpeechEncoder` (per channel), the SpeechDLM hub interface and the unit
    HiFi-GAN; see the module docstring.

    ``encode`` → ``{"unitA": "u u ...", "unitB": ...}``; ``continue_units`` continues such dicts; ``vocode`` speaks
    one; ``continue_dialogue(s)`` does all three on stereo waveforms.
    """

    def __init__(self, speech_encoder: SpeechEncoder, speech_dlm: SpeechDLMHubInterface, vocoder: CodeHiFiGAN,
                 speakers: Sequence[int] = SPEAKERS) -> None:
        super().__init__()
        if len(speech_dlm.channels) != 2 or len(speakers) != 2:
            raise InputError(f"dGSLM speaks two channels; the SpeechDLM has {speech_dlm.channels} and the vocoder "
                             f"speakers are {tuple(speakers)}")
        if speech_encoder.deduplicate:
            raise InputError("the SpeechDLM reads one unit per frame: build the SpeechEncoder with deduplicate=False")
        self.speech_encoder, self.speech_dlm, self.vocoder = speech_encoder, speech_dlm, vocoder
        self.speakers = tuple(speakers)

    @classmethod
    def from_pretrained(cls, *, map_location: str | torch.device = "cpu", progress: bool = True,
                        dtype: torch.dtype | None = None, weights: Mapping[str, str | os.PathLike] | None = None
                        ) -> DialogueGSLM:
        """The released dGSLM: Fisher HuBERT layer 12, its k-means 500, ``speech_dlm_base`` and the dGSLM HiFi-GAN.
        ``weights`` replaces some by converted copies (keys "dense", "kmeans", "speech_dlm", "vocoder"); ``dtype``
        applies to the SpeechDLM and the vocoder (the reader and k-means stay float32)."""
        weights = dict(weights or {})
        unknown = set(weights) - set(COMPONENTS)
        if unknown:
            raise InputError(f"weights names {sorted(unknown)}; the dGSLM components are {', '.join(COMPONENTS)}")
        common = {"map_location": map_location, "progress": progress}
        kmeans = load(Codebook, "gslm_kmeans", weights.get("kmeans"), dense_model=DENSE_MODEL,
                      vocab_size=VOCAB_SIZE, **common)
        reader = dense_reader(kmeans.config.dense_model or DENSE_MODEL, kmeans.config.layer,
                              weights=weights.get("dense"), **common)
        encoder = SpeechEncoder(reader, kmeans, deduplicate=False, need_f0=False)
        speech_dlm = load(SpeechDLM, "speech_dlm", weights.get("speech_dlm"), variant=SPEECH_DLM, **common)
        vocoder = load(CodeHiFiGAN, "hifigan_unit_vocoder", weights.get("vocoder"), variant=VOCODER, **common)
        if dtype is not None:
            speech_dlm, vocoder = speech_dlm.to(dtype), vocoder.to(dtype)
        return cls(encoder, SpeechDLMHubInterface(speech_dlm).eval(), vocoder.eval())

    @property
    def channels(self) -> list[str]:
        """The SpeechDLM's channel names ("unitA", "unitB"), speaker A first."""
        return self.speech_dlm.channels

    @property
    def sample_rate(self) -> int:
        """Hz of the speech it writes (the vocoder's: 16000 for the released one)."""
        return self.vocoder.sample_rate

    @property
    def frame_rate(self) -> float:
        """Units per second (50 for Fisher HuBERT)."""
        return SAMPLE_RATE / self.speech_encoder.code_hop_size

    # ---------------------------------------------------------------- the three steps
    def encode(self, dialogues: Sequence[torch.Tensor], *, sample_rate: int = SAMPLE_RATE, batch_size: int = 8,
               progress: bool = False) -> list[dict[str, str]]:
        """Per dialogue ``(2, samples)`` (channel A, channel B) at ``sample_rate``: ``{"unitA": "u u ...",
        "unitB": ...}``, one unit per frame, the two channels cut to the same number of frames."""
        waves = []
        for i, wav in enumerate(dialogues):
            wav = torch.as_tensor(wav)
            if wav.ndim != 2 or wav.shape[0] != 2:
                raise InputError(f"dialogue {i} has shape {tuple(wav.shape)}; dGSLM needs two channels (2, samples), "
                                 "one speaker each: pass a stereo file, or two mono files (A then B)")
            if sample_rate != SAMPLE_RATE:
                wav = self.speech_encoder.maybe_resample(wav, sample_rate)
            waves.extend(wav.float())
        encoded = self.speech_encoder.encode(waves, batch_size=batch_size, progress=progress)
        out = []
        for a, b in zip(encoded[0::2], encoded[1::2]):
            frames = min(len(a["units"]), len(b["units"]))
            out.append({ch: " ".join(map(str, e["units"][:frames].tolist())) for ch, e in zip(self.channels, (a, b))})
        return out

    @torch.no_grad()
    def continue_units(self, prompts: Sequence[Mapping[str, str]], seconds: float, *, seed: int | None = None,
                       sampling: bool = True, beam: int = SAMPLES_PER_PROMPT, progress: bool = False,
                       **generation: object) -> list[dict[str, str]]:
        """Each prompt (``{"unitA": ..., "unitB": ...}``) and ``seconds`` of new dialogue after it, by
        ``SpeechDLMHubInterface.sample`` (``sampling=True, beam=5`` = 5 samples, the best kept; ``generation``:
        fairseq's options such as ``temperature``, ``sampling_topk``, ``duration_temperature``). ``seed`` seeds
        the global random state, as ``sample_speech_dlm.py --seed`` does."""
        if not seconds > 0:
            raise InputError(f"seconds must be positive, got {seconds}")
        new_units = math.ceil(seconds * self.frame_rate)
        limit = self.speech_dlm.max_positions - 1
        by_length: dict[int, list[int]] = {}
        for i, prompt in enumerate(prompts):
            length = len(next(iter(prompt.values())).split())
            if length + new_units > limit:
                raise InputError(f"prompt {i}: {length} frames + {new_units} new ones exceed the SpeechDLM's "
                                 f"{limit} positions ({limit / self.frame_rate:.0f} s): shorten the prompt or "
                                 "the continuation")
            by_length.setdefault(length, []).append(i)
        if seed is not None:
            torch.manual_seed(seed)
        out: list[dict[str, str]] = [{} for _ in prompts]
        for length, group in by_length.items():  # one batch per prompt length: max_len_b counts the prompt
            continued = self.speech_dlm.sample([prompts[i] for i in group], beam=beam, sampling=sampling,
                                               max_len_a=0, max_len_b=length + new_units, progress=progress,
                                               **generation)
            for i, units in zip(group, continued):
                out[i] = units
        return out

    @torch.no_grad()
    def vocode(self, units: Mapping[str, str]) -> torch.Tensor:
        """Stereo speech ``(2, samples)`` float32 at :attr:`sample_rate` of ``{"unitA": ..., "unitB": ...}``: each
        channel by the vocoder with its speaker (``SPEAKERS``)."""
        streams = [_speakable(units[ch], self.vocoder.config.num_embeddings, ch) for ch in self.channels]
        frames = min(len(s) for s in streams)
        codes = torch.stack([s[:frames] for s in streams]).to(self.vocoder.unit_embedding.weight.device)
        speakers = torch.tensor(self.speakers, device=codes.device)
        return self.vocoder(codes, speaker=speakers)[:, 0].float().cpu()

    # ---------------------------------------------------------------- all of it
    def continue_dialogue(self, wav: torch.Tensor, seconds: float, *, sample_rate: int = SAMPLE_RATE,
                          seed: int | None = None, progress: bool = False, **generation: object) -> torch.Tensor:
        """One conversation ``(2, samples)`` → stereo ``(2, samples)`` at :attr:`sample_rate`: the prompt
        resynthesised, then ``seconds`` of continued dialogue."""
        return self.continue_dialogues([wav], seconds, sample_rate=sample_rate, seed=seed, progress=progress,
                                       **generation)[0]

    def continue_dialogues(self, wavs: Sequence[torch.Tensor], seconds: float, *, sample_rate: int = SAMPLE_RATE,
                           seed: int | None = None, batch_size: int = 8, progress: bool = False,
                           **generation: object) -> list[torch.Tensor]:
        """:meth:`continue_dialogue` for each conversation (the reader runs in batches of ``batch_size``
        channels)."""
        prompts = self.encode(wavs, sample_rate=sample_rate, batch_size=batch_size, progress=progress)
        continued = self.continue_units(prompts, seconds, seed=seed, progress=progress, **generation)
        return [self.vocode(units) for units in tqdm(continued, desc="units → speech", unit="dialogue",
                                                      disable=not progress)]


def _speakable(units: str, vocabulary: int, channel: str) -> torch.Tensor:
    """``"u u <unk> u ..."`` → ``(T,)`` int64 unit ids, each token that is not a unit of ``0..vocabulary-1``
    replaced by the unit before it (the first real unit where the stream starts with one)."""
    ids = [int(t) if t.isdigit() and int(t) < vocabulary else None for t in units.split()]
    known = [i for i in ids if i is not None]
    if not known:
        raise InputError(f"channel {channel!r} holds no unit the vocoder can speak (units 0..{vocabulary - 1})")
    previous = known[0]
    for i, unit in enumerate(ids):
        ids[i] = previous = previous if unit is None else unit
    return torch.tensor(ids, dtype=torch.long)
