"""``speechzoo encode AUDIO_OR_DIR... --k 500 --lmbda 4500 -o units.jsonl``: speech to DP-SLM units.

Each file becomes one JSON line ``{"name": ..., "units": [...], "durations": [...]}``: its deduplicated units
(WavLM-Large layer-11 features quantised by DPDP over the released k-means codebook) and how many 20 ms frames
each lasted. Files are read in order, encoded in batches, and appended as they finish, so an interrupted run
resumes where it stopped: names already in the output are skipped.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from tqdm.auto import tqdm

from .. import audio
from ..models.wavlm import SAMPLE_RATE as WAVLM_RATE
from ..pipelines.dpslm import WAVLM_LAYER, SpeechToUnits
from .inputs import batches, expand
from .options import WeightsAlias, add_batch_size, add_device, add_out, add_weights, weights_by_name

#: Models of the speech-to-units pipeline that ``--weights NAME=DIR`` can replace.
COMPONENTS = ("wavlm", "codebook")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("encode", help="encode speech to DP-SLM units (JSON lines)",
                              description=__doc__.splitlines()[0])
    p.add_argument("inputs", nargs="+", type=Path, metavar="AUDIO_OR_DIR", help="audio files or folders of them")
    add_out(p, "JSON-lines file to write (or resume)", "--output")
    p.add_argument("--k", type=int, required=True, help="codebook size: 100, 200, 500, 1000 or 2000")
    p.add_argument("--lmbda", type=float, required=True, help="DPDP duration penalty (0: plain k-means units)")
    p.add_argument("--layer", type=int, default=WAVLM_LAYER, help="WavLM-Large layer (released codebooks: 11)")
    p.add_argument("--num-neighbors", type=int, help="codes each frame may take (default: 5%% of k, as DP-SLM)")
    add_device(p)
    add_batch_size(p, 8, "files per WavLM batch")
    add_weights(p, components=COMPONENTS)
    for name in COMPONENTS:  # the spellings before --weights NAME=DIR
        p.add_argument(f"--{name}-weights", dest="weights", action=WeightsAlias, component=name)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    files = expand(args.inputs)
    done = _names_in(args.out)
    todo = [f for f in files if str(f) not in done]
    if not todo:
        print(f"{args.out}: all {len(files)} files already encoded")
        return 0
    speech_to_units = SpeechToUnits.from_pretrained(args.k, args.lmbda, num_neighbors=args.num_neighbors,
                                                    layer=args.layer, map_location=args.device,
                                                    weights=weights_by_name(args.weights, COMPONENTS))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "a") as out, tqdm(total=len(todo), desc="encoding", unit="file") as bar:
        for batch in batches(todo, args.batch_size):
            wavs = [audio.load(f, sample_rate=WAVLM_RATE)[0][0] for f in batch]
            for path, units in zip(batch, speech_to_units(wavs, WAVLM_RATE, batch_size=args.batch_size)):
                out.write(json.dumps({"name": str(path), "units": units.units, "durations": units.durations}) + "\n")
            out.flush()
            bar.update(len(batch))
    print(f"wrote {len(todo)} files to {args.out}" + (f" ({len(done)} were already there)" if done else ""))
    return 0


def _names_in(path: Path) -> set[str]:
    """Names already encoded in an existing output; a half-written last line (a killed run) is dropped."""
    if not path.exists():
        return set()
    lines = path.read_text().splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        path.write_text("".join(lines[:-1]))
        lines = lines[:-1]
    return {json.loads(line)["name"] for line in lines if line.strip()}
