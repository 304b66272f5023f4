"""Corpus encoding throughput: ``speechzoo encode`` (GSLM units: HuBERT Base layer 6 + a 100-means) over a small
corpus, one process vs two torchrun processes, by batch size and audio-reading workers.

Released-size HuBERT Base (transformers' default HubertConfig, random weights, converted with ``zoo.formats.hubert``)
and a random 100 × 768 k-means, as the released ``hubert-base-ls960`` + ``km100`` have; the corpus is ``--files``
16 kHz flac files of 2–8 s cut from the LibriSpeech test file (tiled). Each row runs the real command in a fresh
process (``python -m zoo.cli encode`` or ``python -m torch.distributed.run --nproc-per-node 2 -m zoo.cli encode``),
wall clock from launch to exit, so start-up (imports, model loading: the ``1 file`` rows) is included; files/s and
audio-hours per hour are over the whole run. 2 CPU threads in all: one process with 2 threads, or two with 1 each.

The reference row is the loop of GSLM's ``quantize_with_kmeans.py`` and textlesslib's examples (and of ``speechzoo
encode`` before corpus runs): one process reading each file inline and encoding one file at a time
(``--num-workers 0 --batch-size 1``). Every row must write the same units (checked: the merged output is compared
byte for byte with the reference's).

    python -m benchmarks.bench_corpus             # released sizes
    python -m benchmarks.bench_corpus --quick     # a tiny HuBERT, 8 files: checks that it runs
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import soundfile
import torch
import transformers

from benchmarks.timing import timed
from zoo.formats import hubert as hubert_format
from zoo.models.codebook import Codebook

ROOT = Path(__file__).resolve().parents[1]
SPEECH = ROOT / "tests" / "data" / "librispeech-1272-128104-0000.flac"
THREADS = 2
LAYER = 6
K = 100
QUICK = {"hidden_size": 64, "num_hidden_layers": 6, "num_attention_heads": 4, "intermediate_size": 128,
         "conv_dim": (32,) * 7, "num_conv_pos_embeddings": 16, "num_conv_pos_embedding_groups": 4}
#: (processes, batch size, workers); the first is the reference loop
ROWS = [(1, 1, 0), (1, 1, 1), (1, 8, 1), (1, 8, 0), (2, 1, 0), (2, 8, 1)]


def make_models(directory: Path, quick: bool) -> tuple[Path, Path]:
    torch.manual_seed(0)
    reference = transformers.HubertModel(transformers.HubertConfig(**(QUICK if quick else {}))).eval()
    with tempfile.TemporaryDirectory() as saved:
        reference.save_pretrained(saved)
        dense = hubert_format.convert([saved]).save_pretrained(directory / "hubert")
    centroids = torch.randn(K, reference.config.hidden_size, generator=torch.Generator().manual_seed(1))
    kmeans = Codebook.from_tensor(centroids, layer=LAYER, dense_model="hubert-base-ls960")
    return dense, kmeans.save_pretrained(directory / "kmeans")


def make_corpus(directory: Path, files: int) -> float:
    """``files`` flac files of 2–8 s in two folders; returns their total duration in seconds."""
    speech, rate = soundfile.read(SPEECH, dtype="float32")
    lengths = torch.randint(2 * rate, 8 * rate, (files,), generator=torch.Generator().manual_seed(2)).tolist()
    tiled = torch.from_numpy(speech).repeat(9).numpy()
    for i, n in enumerate(lengths):
        path = directory / f"spk{i % 2}" / f"{i:04d}.flac"
        path.parent.mkdir(parents=True, exist_ok=True)
        start = (i * 7919) % rate
        soundfile.write(path, tiled[start: start + n], rate)
    return sum(lengths) / rate


def run(processes: int, batch_size: int, workers: int, inputs: list[str], models: tuple[Path, Path],
        out: Path) -> float:
    """Seconds from launch to exit of one ``speechzoo encode`` run."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]),
           "OMP_NUM_THREADS": str(THREADS // processes)}
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(processes)]
                if processes > 1 else [sys.executable])
    argv = [*launcher, "-m", "zoo.cli", "encode", *inputs, "--dense", "hubert-base-ls960", "--vocab-size", str(K),
            "--layer", str(LAYER), "--weights", f"dense={models[0]}", "--weights", f"quantizer={models[1]}",
            "--batch-size", str(batch_size), "--num-workers", str(workers), "-o", str(out)]
    seconds, result = timed(lambda: subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True,
                                                   check=False))
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{result.stderr[-3000:]}")
    return seconds


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=32)
    parser.add_argument("--quick", action="store_true", help="tiny HuBERT and 8 files, to check that it runs")
    args = parser.parse_args(argv)
    files = 8 if args.quick else args.files
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        models = make_models(tmp, args.quick)
        seconds = make_corpus(tmp / "corpus", files)
        one_file = min((tmp / "corpus").rglob("*.flac"))
        print(f"speechzoo encode, GSLM units: HuBERT {'quick' if args.quick else 'Base'} layer {LAYER} + k-means "
              f"{K}, random weights; {files} flac files, {seconds:.0f} s of audio; {THREADS} CPU threads in all; "
              f"CPU capability {torch.backends.cpu.get_cpu_capability()}; one run each, wall clock incl. start-up")
        print("| processes × threads | batch | workers | files | seconds | files/s | audio h / h | speed-up | same units |")
        print("|---|---|---|---|---|---|---|---|---|")
        reference_out, reference_seconds = None, None
        for processes, batch_size, workers in [(1, 1, 0), (2, 1, 0)]:  # start-up: 1 file
            t = run(processes, batch_size, workers, [str(one_file)], models, tmp / f"startup{processes}.jsonl")
            print(f"| {processes} × {THREADS // processes} | {batch_size} | {workers} | 1 | {t:.1f} | — | — | — | — |")
        for i, (processes, batch_size, workers) in enumerate(ROWS):
            out = tmp / f"units{i}.jsonl"
            t = run(processes, batch_size, workers, [str(tmp / "corpus")], models, out)
            if reference_out is None:
                reference_out, reference_seconds = out.read_bytes(), t
            same = "yes" if out.read_bytes() == reference_out else "NO"
            label = "reference loop" if i == 0 else f"{reference_seconds / t:.2f}×"
            print(f"| {processes} × {THREADS // processes} | {batch_size} | {workers} | {files} | {t:.1f} | "
                  f"{files / t:.2f} | {seconds / t:.1f} | {label} | {same} |")


if __name__ == "__main__":
    main()
