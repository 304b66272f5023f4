"""Card of SpeechTokenizer (``hubconf.speechtokenizer``)."""
from __future__ import annotations

from . import CardTemplate

SPEECHTOKENIZER_CITATION = """
@misc{zhang2023speechtokenizer,
  title = {SpeechTokenizer: Unified Speech Tokenizer for Speech Language Models},
  author = {Zhang, Xin and Zhang, Dong and Li, Shimin and Zhou, Yaqian and Qiu, Xipeng},
  year = {2023},
  eprint = {2308.16692},
  archivePrefix = {arXiv},
  primaryClass = {cs.CL}
}"""

TEMPLATES: dict[str, CardTemplate] = {
    "speechtokenizer": CardTemplate(
        notebooks=("speechtokenizer", "train_speechtokenizer"),
        title="SpeechTokenizer (`{variant}`)",
        tags=("audio", "speech", "audio-codec", "speech-tokenizer", "residual-vector-quantization", "textless"),
        datasets=("librispeech_asr",),
        pipeline_tag="audio-to-audio",
        summary="""\
A unified semantic/acoustic codec for 16 kHz speech: a SEANet encoder with a BiLSTM (hop 320), a residual vector
quantizer of **8 codebooks × 1024 entries at 50 Hz** (4 kbps) and a SEANet decoder. Codebook 0 was distilled
towards the average of all HuBERT-base layers, so `codes[0]` are semantic tokens and `codes[1:]` add the acoustic
detail (speaker, prosody, channel). Trained on LibriSpeech.""",
        usage="""
import torch
from zoo import audio

model = torch.hub.load("speechzoo/speechzoo", "speechtokenizer", trust_repo=True)   # eval mode; codebooks are frozen buffers
wav, sr = audio.load("speech.flac", sample_rate=model.sample_rate)  # (1, N) at 16 kHz
codes = model.encode(wav[None])              # (8, 1, ceil(N / 320)) int64
semantic_tokens = codes[0]                   # (1, T)
wav_out = model.decode(codes)                # (1, 1, 320 * T); trim to N if needed
acoustic_only = model.decode(codes[1:], st=1)
""",
        notes="""\
Batches of different lengths: `codes, frames = model.encode(padded, lengths=samples)` and
`wavs, samples = model.decode(codes, lengths=frames)`. Files: `speechzoo tokenize *.flac -o codes/` and
`speechzoo detokenize codes/ -o wavs/` (with `--n-q` / `--st` to pick quantizers).

As in the original, `encode(x, n_q=k)` keeps quantizers `0..k-1` (`n_q` is an end index) and `encode(x, st=i)`
restarts the residual at quantizer `i`; `decode(codes[i:j+1], st=i)` gives the audio of quantizers `i..j`.""",
        original_code="ZhangXInFD/SpeechTokenizer@30c96fb32a9fc06a2258c98119e237def051e46c (PyPI `speechtokenizer` "
                      "1.0.1)",
        release="fnlp/SpeechTokenizer@793c3ac97eeb36463bdbb5e1d5e5e9a6b16cc656, folder `{variant}/`; no SHA-256 of "
                "its config.json is on record: it is fetched from the pinned commit, and its model keys must fit "
                "the checkpoint's tensors",
        conversion="weight norm folded (g·v/‖v‖, dim 0), keys renamed, the 8 `embed` codebooks stacked, the "
                   "k-means/EMA training state (`inited`, `cluster_size`, `embed_avg`) dropped. Numbers are "
                   "otherwise unchanged",
        citation=SPEECHTOKENIZER_CITATION,
    ),
}
