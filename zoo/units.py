"""The units file: the one schema that every command producing discrete units writes and every command consuming
them reads (``speechzoo encode`` → ``vocode``, ``gslm synthesize``; see the README's "Units files").

JSON lines, UTF-8. The first line is a header that says what made the units; then one line per utterance::

    {"speechzoo_units": 1, "settings": {"system": "dpslm", "k": 500, "lmbda": 4500.0, "layer": 11, ...}}
    {"id": "spk1/0001", "source": "/data/corpus/spk1/0001.wav", "units": [71, 12, 408], "durations": [3, 1, 7]}

* ``speechzoo_units``: the schema version (:data:`VERSION`). ``settings``: the system and everything that decides the
  units (model names, revisions or weight folders, k, λ, layer, vocabulary size, deduplication): ``encode`` resumes
  a file only with the same settings, and consumers check what they depend on.
* ``id``: names the utterance's outputs, a relative ``/``-separated path that mirrors the input tree
  (``spk1/0001`` → ``OUT/spk1/0001.wav``). ``source``: the resolved path of the input it came from (resuming matches
  inputs by it). ``units``: unit ids (a list, or a space-separated string). ``durations`` (optional): frames per
  unit; the frame-level sequence is each unit repeated that many times (:meth:`UnitsRecord.frames`).
* Optional, for vocoders: ``speaker`` (id), ``f0`` (Hz, 200 frames/s, 0 = unvoiced), ``audio`` (a file to track F0
  from).

Files without the header are read too (settings unknown): JSON lines written by hand (``"name"`` is accepted for
``"id"``) and GSLM's quantized-units text, ``id|u1 u2 ...`` per line (``quantize_with_kmeans.py``; a line of bare
units is named by its line number).

    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "units.jsonl"
    >>> _ = path.write_text(header_line({"system": "gslm", "vocab_size": 100})
    ...                     + UnitsRecord("spk1/0001", [5, 7], [2, 1], "/data/spk1/0001.wav").to_line())
    >>> units = read(path)
    >>> units.settings, units.records[0].id, units.records[0].frames()
    ({'system': 'gslm', 'vocab_size': 100}, 'spk1/0001', [5, 5, 7])
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from .errors import InputError

#: The schema version written in the header line.
VERSION = 1
#: The header's key (its value is the version): a line with it is the header.
HEADER_KEY = "speechzoo_units"
#: Optional per-utterance fields that vocoders read.
EXTRA_FIELDS = ("speaker", "f0", "audio")


@dataclass
class UnitsRecord:
    """One utterance of a units file (see the module docstring for the fields)."""

    id: str
    units: list[int]
    durations: list[int] | None = None
    source: str | None = None
    extra: dict = field(default_factory=dict)

    def frames(self) -> list[int]:
        """The frame-level units: each unit repeated by its duration (the units as they are without durations)."""
        if self.durations is None:
            return list(self.units)
        return [u for u, d in zip(self.units, self.durations) for _ in range(d)]

    def to_line(self) -> str:
        """The record's JSON line, newline included."""
        record = {"id": self.id, "source": self.source, "units": self.units}
        if self.durations is not None:
            record["durations"] = self.durations
        return json.dumps({**record, **self.extra}) + "\n"


@dataclass
class UnitsFile:
    """A read units file: the header's settings (None when it has no header) and the records, in file order."""

    settings: dict | None
    records: list[UnitsRecord]


def header_line(settings: dict) -> str:
    """The header line of a units file made with ``settings`` (JSON values), newline included."""
    return json.dumps({HEADER_KEY: VERSION, "settings": settings}) + "\n"


def read(path: str | Path, *, allow_empty: bool = False) -> UnitsFile:
    """Read a units file (JSON lines with or without the header, or GSLM's ``id|units`` text). Every problem is an
    :class:`InputError` naming the file and line; ids must be unique (they name output files)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"no units file at {path}")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise InputError(f"{path} is not a units file (it is not UTF-8 text: audio? give the JSON lines that "
                         "`speechzoo encode` writes, or 'id|u1 u2 ...' lines)") from None
    settings, records, seen = None, [], {}
    for number, line in enumerate(lines, start=1):
        line = line.strip()
        if not line:
            continue
        where = f"{path}:{number}"
        if line.startswith("{"):
            item = _json(line, where)
            if HEADER_KEY in item:
                settings = _header(item, where, first=not records and settings is None)
                continue
            record = _record(item, number, where)
        else:
            name, _, units = line.rpartition("|")
            record = UnitsRecord(name or str(number), _ints(units.split(), "units", where))
        if record.id in seen:
            raise InputError(f"{where}: the id {record.id!r} appears twice (also on line {seen[record.id]}); "
                             "output files would overwrite each other")
        seen[record.id] = number
        records.append(record)
    if not records and not allow_empty:
        raise InputError(f"{path} holds no utterances")
    return UnitsFile(settings, records)


def read_settings(path: str | Path) -> dict | None:
    """The settings of units file ``path`` from its header line alone (the rest is not read); None when the file
    has no header."""
    with open(path, encoding="utf-8") as f:
        first = f.readline().strip()
    if not first.startswith("{"):
        return None
    item = _json(first, f"{path}:1")
    return _header(item, f"{path}:1", first=True) if HEADER_KEY in item else None


def unit_count(settings: dict | None) -> int | None:
    """How many units the quantizer that made a file has (its ``k`` or ``vocab_size``); None when unknown.

        >>> unit_count({"system": "dpslm", "k": 500}), unit_count({"vocab_size": 100}), unit_count(None)
        (500, 100, None)
    """
    if not settings:
        return None
    count = settings.get("k", settings.get("vocab_size"))
    return count if isinstance(count, int) else None


def check_settings(path: str | Path, found: dict | None, wanted: dict) -> None:
    """Refuse to add to (or consume) units made with other settings: an :class:`InputError` listing each
    difference. Keys that ``wanted`` lacks are not compared."""
    if found is None:
        raise InputError(f"{path} has no speechzoo units header, so its settings are unknown; write to a new file")
    differ = [f"{k}: {found.get(k)!r} there, {v!r} here" for k, v in wanted.items() if found.get(k) != v]
    if differ:
        raise InputError(f"{path} was made with other settings ({'; '.join(differ)}); use the same settings or "
                         "another output file")


def _json(line: str, where: str) -> dict:
    try:
        item = json.loads(line)
    except json.JSONDecodeError as e:
        raise InputError(f"{where}: not valid JSON ({e})") from e
    if not isinstance(item, dict):
        raise InputError(f"{where}: a JSON line must be an object")
    return item


def _header(item: dict, where: str, first: bool) -> dict:
    if not first:
        raise InputError(f"{where}: a second header line; the header comes first, once")
    if item[HEADER_KEY] != VERSION:
        raise InputError(f"{where}: units schema version {item[HEADER_KEY]!r}; this speechzoo reads version "
                         f"{VERSION} (upgrade speechzoo)")
    if not isinstance(item.get("settings"), dict):
        raise InputError(f"{where}: the header's \"settings\" must be an object")
    return item["settings"]


def _record(item: dict, number: int, where: str) -> UnitsRecord:
    if "units" not in item:
        raise InputError(f"{where}: a JSON line needs \"units\"")
    units = item["units"]
    units = _ints(units.split() if isinstance(units, str) else units, "units", where)
    durations = item.get("durations")
    if durations is not None:
        durations = _ints(durations, "durations", where)
        if len(durations) != len(units) or min(durations) < 1:
            raise InputError(f"{where}: \"durations\" must give each of the {len(units)} units a count ≥ 1")
    item_id = item.get("id", item.get("name", number))
    source = item.get("source")
    return UnitsRecord(str(item_id), units, durations, None if source is None else str(source),
                       {k: item[k] for k in EXTRA_FIELDS if item.get(k) is not None})


def _ints(values, what: str, where: str) -> list[int]:
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise InputError(f"{where}: {what} must be a list of integers")
    try:
        numbers = [int(v) for v in values]
    except (TypeError, ValueError) as e:
        raise InputError(f"{where}: {what} must be integers ({e})") from e
    if not numbers:
        raise InputError(f"{where}: empty {what}")
    return numbers
