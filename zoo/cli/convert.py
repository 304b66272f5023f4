"""``speechzoo convert KIND SRC... --out DIR`` (also ``python -m conversion``): read an ORIGINAL checkpoint with its
``zoo.formats`` reader and write config.json + model.safetensors that ``weights=DIR`` loads.

``--help`` lists the files each KIND takes (:data:`SOURCES`, one entry per reader: a test keeps them in step)."""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import textwrap
from pathlib import Path

from .. import formats
from .options import add_out

#: KIND -> the SRC files it takes, in order, as the original releases name them (shown by ``--help``).
SOURCES = {
    "codebook": "codebook-layer-11-k-500-2c2dee95.pt (WavLM-codebooks / dpdp)",
    "cpc": "cpc_big_ll6kh_top_ctc.pt (GSLM's CPC)",
    "ellav": "ella-v-...-<sha8>.pt (ELLA-V; its config is inside)",
    "f0_vqvae": "g_XXXXXXXX config.json (speech-resynthesis F0 VQ-VAE)",
    "gslm_ulm": "checkpoint_best.pt dict.txt, or the release archive hubert100_lm.tgz",
    "hifigan": "g_XXXXXXXX config.json, or a release .tar.gz (unit HiFi-GAN vocoders)",
    "hubert": "hubert_base_ls960.pt (fairseq), or a transformers HubertModel directory",
    "kmeans": "km.bin (GSLM cluster_kmeans.py, joblib)",
    "speech_dlm": "speech_dlm_base.pt dict.unitA.txt dict.unitB.txt (dGSLM)",
    "speechtokenizer": "config.json SpeechTokenizer.pt",
    "tacotron2": "tts_checkpoint_best.pt code_dict (GSLM unit-to-speech)",
    "ulm": "mistral-ulm-k-...-<sha8>.pt [--config model_config.json]",
    "wav2vec2": "wav2vec_vox_new.pt (fairseq wav2vec 2.0)",
    "waveglow": "waveglow_256channels_standalone.pt or waveglow_256channels_new.pt",
    "wavlm": "WavLM-Large.pt ({'cfg', 'model'}), or a transformers WavLMModel directory",
    "wavtokenizer": "WavTokenizer_small_600_24k_4096.ckpt --config config.yaml|args.json",
}


def kinds() -> list[str]:
    """Every original format that has a reader in ``zoo.formats`` (the modules with ``convert``; the others hold
    layouts that several readers share)."""
    names = (m.name for m in pkgutil.iter_modules(formats.__path__) if not m.name.startswith("_"))
    return sorted(name for name in names if hasattr(importlib.import_module(f"zoo.formats.{name}"), "convert"))


def add_arguments(p: argparse.ArgumentParser) -> None:
    """KIND, SRC..., ``--config`` and ``-o/--out``, with the files of each KIND in the help's epilog."""
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.description = textwrap.fill(" ".join(__doc__.split("\n\n")[0].split()).replace("``", ""), 100)
    p.epilog = "KIND and the SRC files it takes:\n" + "\n".join(
        f"  {kind:<16} {SOURCES.get(kind, '(see zoo/formats/' + kind + '.py)')}" for kind in kinds())
    p.add_argument("kind", choices=kinds(), metavar="KIND", help="which original format SRC is in (listed below)")
    p.add_argument("src", nargs="+", type=Path, metavar="SRC", help="original file(s), in the order listed below")
    p.add_argument("--config", type=Path, help="the original's separate config file, for formats that need one")
    add_out(p, "directory to write config.json + model.safetensors")
    p.set_defaults(func=run)


def register(subparsers: argparse._SubParsersAction) -> None:
    add_arguments(subparsers.add_parser("convert", help="convert an original checkpoint to safetensors"))


def run(args: argparse.Namespace) -> int:
    module = importlib.import_module(f"zoo.formats.{args.kind}")
    options = {"config": args.config} if args.config is not None else {}
    model = module.convert(list(args.src), **options)
    model.save_pretrained(args.out)
    n = sum(t.numel() for t in model.state_dict().values())
    print(f"wrote {args.out}/config.json and model.safetensors ({type(model).__name__}, {n:,} values)")
    return 0
