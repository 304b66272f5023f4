"""The weights cache and downloads under faults and concurrency: a loopback server that misbehaves (cut bodies,
lying Content-Lengths, 5xx, HTML pages with status 200, stalls, dropped connections), processes killed at each
stage, four processes loading into an empty cache at once, stale and corrupt cache entries, shared caches and
their permissions, and loading with the network down or off."""
from __future__ import annotations

import io
import json
import os
import signal
import socket
import stat
import tempfile
import time
import warnings
from pathlib import Path

import pytest
import torch

import zoo.download
import zoo.hub
from zoo.cli import main
from zoo.errors import WeightsError
from zoo.models.codebook import Codebook
from zoo.registry import SourceFile, Weights, all_weights, find

from harness import FIXTURES, python_process
from hub_server import FakeHub

CODEBOOK_PT = next((FIXTURES / "wavlm/codebook_argmin/original").glob("codebook-*.pt"))
CODEBOOK = torch.load(CODEBOOK_PT, weights_only=True)["codebook"]
RELEASE_PATH = "releases/codebook-layer-3-k-20-test.pt"


@pytest.fixture
def hub(loopback_hub, monkeypatch):
    monkeypatch.setattr(zoo.hub, "RETRY_BACKOFF", 0.01)
    monkeypatch.setattr(zoo.hub, "_unreachable", {})
    return loopback_hub


def checkpoint_bytes(codebook: torch.Tensor) -> bytes:
    buffer = io.BytesIO()
    torch.save({"codebook": codebook}, buffer)
    return buffer.getvalue()


def sha256(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def release(url: str, digest: str | None, name: str = "test-codebook", **fields) -> Weights:
    fields.setdefault("repo_id", "speechzoo/not-mirrored-yet")
    return Weights(name=name, entry_point="codebook", kwargs={}, converter="codebook",
                   source_files=(SourceFile(url, digest),), license="MIT", paper="", description="test", **fields)


def serve(hub: FakeHub, data: bytes | None = None, path: str = RELEASE_PATH, checksum: bool = True) -> Weights:
    data = CODEBOOK_PT.read_bytes() if data is None else data
    return release(hub.add_raw(path, data), sha256(data) if checksum else None)


def leftovers(root: Path) -> list[Path]:
    """What killed or failed runs may leave behind: partial downloads and temporary folders."""
    return [p for p in root.rglob("*") if p.name.endswith((".partial", ".incomplete")) or p.name.startswith(".tmp")]


def originals() -> list[Path]:
    return [p for p in (zoo.download.speechzoo_cache() / "originals").rglob("*") if p.is_file()]


def closed_port_url() -> str:
    """A loopback URL where nothing listens: connections are refused, as when the network is down."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


# ------------------------------------------------------------------------------------------ a misbehaving server
@pytest.mark.parametrize("fault", ["truncate", "short", "500", "drop"])
def test_a_failed_transfer_is_retried_and_leaves_nothing(hub, fault):
    entry = serve(hub)
    hub.fault(RELEASE_PATH, fault)
    assert torch.equal(zoo.download.load_release(Codebook, entry, progress=False).codebook, CODEBOOK)
    assert hub.gets(RELEASE_PATH) == 2
    assert not leftovers(zoo.hub.hf_home())


@pytest.mark.parametrize("checksum", [True, False])
def test_a_cut_body_is_never_kept_even_without_a_checksum(hub, checksum):
    entry = serve(hub, checksum=checksum)
    hub.fault(RELEASE_PATH, *["truncate"] * zoo.hub.DOWNLOAD_ATTEMPTS)
    with pytest.raises(WeightsError, match="could not download .*peer closed connection"):
        zoo.download.load_release(Codebook, entry, progress=False)
    assert hub.gets(RELEASE_PATH) == zoo.hub.DOWNLOAD_ATTEMPTS
    assert not originals() and not leftovers(zoo.hub.hf_home())


def test_retries_are_bounded(hub):
    entry = serve(hub)
    hub.fault(RELEASE_PATH, *["500"] * 10)
    with pytest.raises(WeightsError, match="HTTP 500"):
        zoo.download.load_release(Codebook, entry, progress=False)
    assert hub.gets(RELEASE_PATH) == zoo.hub.DOWNLOAD_ATTEMPTS
    assert not originals()


@pytest.mark.parametrize("checksum", [True, False])
def test_an_html_page_with_status_200_is_refused(hub, checksum):
    entry = serve(hub, checksum=checksum)
    hub.fault(RELEASE_PATH, "html")
    with pytest.raises(WeightsError, match="HTML page"):
        zoo.download.load_release(Codebook, entry, progress=False)
    assert hub.gets(RELEASE_PATH) == 1, "an HTML page is not retried"
    assert not originals() and not leftovers(zoo.hub.hf_home())
    # the next load, against a repaired server, downloads and converts
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*no published checksum")
        assert torch.equal(zoo.download.load_release(Codebook, entry, progress=False).codebook, CODEBOOK)


def test_a_stalled_server_times_out(hub, monkeypatch):
    monkeypatch.setenv("HF_HUB_DOWNLOAD_TIMEOUT", "1")
    entry = serve(hub)
    hub.fault(RELEASE_PATH, "stall")
    start = time.monotonic()
    assert torch.equal(zoo.download.load_release(Codebook, entry, progress=False).codebook, CODEBOOK)
    assert time.monotonic() - start < 30
    assert hub.gets(RELEASE_PATH) == 2

    hub.fault(RELEASE_PATH, *["stall"] * zoo.hub.DOWNLOAD_ATTEMPTS)
    with pytest.raises(WeightsError, match="could not download .*timed out"):
        zoo.hub.download_url(entry.source_url, zoo.hub.hf_home() / "x.pt", progress=False)
    assert not leftovers(zoo.hub.hf_home())


def test_an_original_that_fails_to_convert_is_removed(hub):
    entry = serve(hub, b"this is not a checkpoint", checksum=False)
    with pytest.raises(WeightsError, match="could not be converted.*downloaded files were removed"):
        zoo.download.load_release(Codebook, entry, progress=False)
    assert not originals()
    hub.add_raw(RELEASE_PATH, CODEBOOK_PT.read_bytes())  # the server is repaired
    with pytest.warns(UserWarning, match="no published checksum"):
        assert torch.equal(zoo.download.load_release(Codebook, entry, progress=False).codebook, CODEBOOK)


# ------------------------------------------------------------------------------------------ the Hub's transport
@pytest.fixture
def mirrored(hub, convert) -> Weights:
    hub.add_repo("someone/cb-mirror", convert("codebook", CODEBOOK_PT))
    return release(closed_port_url() + "/never-asked.pt", "0" * 64, name="test-mirrored",
                   repo_id="someone/cb-mirror", revision="main", mirrored=True)


def test_hub_transport_errors_are_one_weights_error(mirrored, hub):
    hub.fault("someone/cb-mirror/config.json", "drop", method="HEAD")  # httpx's RemoteProtocolError, not an OSError
    with pytest.raises(WeightsError, match="^downloading someone/cb-mirror@main/config.json from .* failed "
                                           r"\(Server disconnected without sending a response.\)"):
        zoo.download.load_release(Codebook, mirrored, progress=False)


def test_a_hub_500_gets_one_retry(mirrored, hub):
    hub.fault("someone/cb-mirror/model.safetensors", "500")
    assert torch.equal(zoo.download.load_release(Codebook, mirrored, progress=False).codebook, CODEBOOK)
    assert hub.gets("someone/cb-mirror/resolve/main/model.safetensors") == 2

    hub.fault("someone/cb-mirror/model.safetensors", "500", "500", "500")
    with pytest.raises(WeightsError, match="500"):
        Codebook.from_pretrained("someone/cb-mirror", force_download=True, progress=False)


# ------------------------------------------------------------------------------------------ offline, network down
def test_a_cached_release_loads_with_the_network_down_without_a_request(hub, monkeypatch):
    entry = serve(hub)
    zoo.download.load_release(Codebook, entry, progress=False)
    n_requests = len(hub.requests)

    monkeypatch.setenv("HF_ENDPOINT", closed_port_url())  # the Hub unreachable, HF_HUB_OFFLINE unset
    monkeypatch.setattr(time, "sleep", lambda seconds: pytest.fail(f"a retry slept {seconds} s"))
    connections = []

    def connect(sock, address):
        connections.append(address)
        raise ConnectionRefusedError(f"tests: no connection to {address}")

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect)
    assert torch.equal(zoo.download.load_release(Codebook, entry, progress=False).codebook, CODEBOOK)
    assert not connections and len(hub.requests) == n_requests


def test_an_entry_without_a_mirror_is_not_asked_on_the_hub(hub, monkeypatch):
    monkeypatch.delenv("HF_ENDPOINT")  # the public Hub, where speechzoo/not-mirrored-yet does not exist
    entry = serve(hub)
    assert not entry.mirrored and not zoo.download.ask_hub(entry)
    assert torch.equal(zoo.download.load_release(Codebook, entry, progress=False).codebook, CODEBOOK)
    assert hub.requests == [f"GET /{RELEASE_PATH}"]


def test_network_down_fails_fast_with_one_message_that_says_what_to_do(hub, monkeypatch):
    down = closed_port_url()
    monkeypatch.setenv("HF_ENDPOINT", down)
    monkeypatch.setattr(time, "sleep", lambda seconds: pytest.fail(f"a retry slept {seconds} s"))
    entry = release(f"{down}/{RELEASE_PATH}", sha256(CODEBOOK_PT.read_bytes()))
    with pytest.raises(WeightsError) as error:
        zoo.download.load_release(Codebook, entry, progress=False)
    message = str(error.value)
    assert "\n" not in message and "cannot reach" in message
    assert f"download {down}/{RELEASE_PATH}, run `python -m conversion codebook FILE... --out DIR` and pass " \
           "weights=DIR (CLI: --weights DIR)" in message


def test_offline_and_nothing_cached_says_so(hub, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    entry = serve(hub)
    with pytest.raises(WeightsError, match="test-codebook is not in the cache .* HF_HUB_OFFLINE is set: unset it "
                                           "to download it, or download http") as error:
        zoo.download.load_release(Codebook, entry, progress=False)
    assert "local_files_only" not in str(error.value)
    assert not hub.requests
    with pytest.raises(WeightsError, match="HF_HUB_OFFLINE is set; unset it") as error:
        Codebook.from_pretrained("someone/cb", progress=False)
    assert "local_files_only to False" not in str(error.value)


def test_a_mistyped_directory_is_not_taken_for_a_repo_id(hub, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()
    for name in ("./typo_dir", "../typo", str(tmp_path / "typo"), "~/typo-speechzoo", "a/b/c", "models/typo"):
        with pytest.raises(WeightsError, match=f"^no such directory: {name} "):
            Codebook.from_pretrained(name, progress=False)
    assert not hub.requests
    with pytest.raises(WeightsError, match="'someone/typo' was read as a Hub repo id: there is no directory"):
        Codebook.from_pretrained("someone/typo", progress=False)


# ------------------------------------------------------------------------------------------ stale and corrupt
def test_a_new_release_under_the_same_name_is_converted_again(hub):
    old = serve(hub)
    assert torch.equal(zoo.download.load_release(Codebook, old, progress=False).codebook, CODEBOOK)
    fixed = CODEBOOK * 2
    new = serve(hub, checkpoint_bytes(fixed), path="releases/v2/codebook-layer-3-k-20-test.pt")
    assert new.name == old.name and new.source_url != old.source_url
    assert torch.equal(zoo.download.load_release(Codebook, new, progress=False).codebook, fixed)
    converted = zoo.download.speechzoo_cache() / "converted" / new.name
    assert [p.name for p in converted.iterdir()] == [zoo.download.release_key(new)], "the stale copy is removed"


@pytest.mark.parametrize("damage", ["empty manifest", "half manifest", "no manifest", "no weights",
                                    "flipped bit", "other key"])
def test_a_damaged_conversion_is_made_again(hub, damage):
    entry = serve(hub)
    zoo.download.load_release(Codebook, entry, progress=False)
    folder = zoo.download.cached_conversion(entry)
    manifest = folder / zoo.download.MANIFEST
    weights = folder / "model.safetensors"
    if damage == "empty manifest":
        manifest.write_text("")
    elif damage == "half manifest":
        manifest.write_text(manifest.read_text()[:40])
    elif damage == "no manifest":
        manifest.unlink()
    elif damage == "no weights":
        weights.unlink()
    elif damage == "flipped bit":
        data = bytearray(weights.read_bytes())
        data[-1] ^= 1
        weights.write_bytes(bytes(data))
    else:
        manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "key": "0" * 16}))
    assert zoo.download.cached_conversion(entry) is None
    n_gets = hub.gets(RELEASE_PATH)
    assert torch.equal(zoo.download.load_release(Codebook, entry, progress=False).codebook, CODEBOOK)
    assert hub.gets(RELEASE_PATH) == n_gets, "the kept original is converted again, not downloaded again"
    assert zoo.download.cached_conversion(entry) == folder


def test_a_damaged_original_is_downloaded_again(hub):
    entry = serve(hub)
    zoo.download.load_release(Codebook, entry, progress=False)
    (original,) = originals()
    original.write_bytes(original.read_bytes()[:-1])
    (zoo.download.cached_conversion(entry) / zoo.download.MANIFEST).unlink()
    assert torch.equal(zoo.download.load_release(Codebook, entry, progress=False).codebook, CODEBOOK)
    assert hub.gets(RELEASE_PATH) == 2 and original.read_bytes() == CODEBOOK_PT.read_bytes()


def test_an_unverified_release_warns_once_and_records_what_was_downloaded(hub, capsys):
    entry = serve(hub, checksum=False)
    with pytest.warns(UserWarning, match="no published checksum.*recorded in the cache manifest"):
        zoo.download.load_release(Codebook, entry, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        zoo.download.load_release(Codebook, entry, progress=False)
    manifest = zoo.download.manifest(zoo.download.cached_conversion(entry))
    assert manifest["verified"] is False
    assert manifest["sources"] == [{"url": entry.source_url, "published_sha256": None, "published_md5": None,
                                    "sha256": sha256(CODEBOOK_PT.read_bytes())}]

    assert main(["list", "--json"]) == 0
    listed = {e["name"]: e["verified"] for e in json.loads(capsys.readouterr().out)}
    assert listed == {w.name: w.verified for w in all_weights()}
    assert listed[find("codebook", layer=11, k=500).name] is True and False in listed.values()


# ------------------------------------------------------------------------------------------ shared caches
@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_cache_files_honour_the_umask(hub, umask):
    entry = serve(hub)
    previous = os.umask(umask)
    try:
        zoo.download.load_release(Codebook, entry, progress=False)
    finally:
        os.umask(previous)
    folder = zoo.download.cached_conversion(entry)
    for path in [folder, *folder.iterdir(), *originals()]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o777 if path.is_dir() else 0o666) & ~umask, f"{path}: {oct(mode)}"


_AS_ANOTHER_USER = """
import os, sys
import filelock, httpx2, huggingface_hub.file_download, zoo.download
from zoo.errors import WeightsError
from zoo.models.codebook import Codebook
from zoo.registry import SourceFile, Weights
import zoo.formats.codebook  # loaded now: the checkout (e.g. a mktemp -d clone) may be unreadable to nobody
zoo.download.converter_version("codebook")
if os.geteuid() == 0:
    os.chdir("/")
    os.setuid(65534)  # root may write anywhere: the test runs as nobody
entry = Weights(name="test-codebook", entry_point="codebook", kwargs={}, converter="codebook",
                source_files=(SourceFile(sys.argv[1], None),), license="MIT", paper="", description="test",
                repo_id="speechzoo/not-mirrored-yet", mirrored=sys.argv[2] == "mirrored")
try:
    zoo.download.load_release(Codebook, entry, progress=False)
except WeightsError as e:
    print(e)
"""


@pytest.mark.parametrize("mirrored", ["mirrored", "not mirrored"])
def test_a_read_only_cache_is_named_with_what_to_do(hub, monkeypatch, mirrored):
    shared = Path(tempfile.mkdtemp(prefix="speechzoo-shared-"))  # /tmp: every user may enter it
    try:
        shared.chmod(0o755)
        (shared / "hf_home").mkdir(mode=0o555)
        (shared / "hf_home").chmod(0o555)
        monkeypatch.setenv("HF_HOME", str(shared / "hf_home"))
        if mirrored == "not mirrored":
            monkeypatch.delenv("HF_ENDPOINT")
        process = python_process(_AS_ANOTHER_USER, hub.add_raw(RELEASE_PATH, CODEBOOK_PT.read_bytes()), mirrored)
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
        assert "the cache location " + str(shared / "hf_home") in out
        assert "is not writable; point HF_HOME/HF_HUB_CACHE elsewhere, or fill it (on a machine that can write " \
               "it) and set HF_HUB_OFFLINE=1" in out
    finally:
        (shared / "hf_home").chmod(0o755)
        for path in sorted(shared.rglob("*"), reverse=True):
            path.rmdir() if path.is_dir() else path.unlink()
        shared.rmdir()


# ------------------------------------------------------------------------------------------ kills and races
_LOADER = """
import os, sys, time
from pathlib import Path
import zoo.download, zoo.formats.codebook, zoo.modeling
from zoo.models.codebook import Codebook
from zoo.registry import SourceFile, Weights
url, digest, stage, marker = sys.argv[1:5]
entry = Weights(name="test-codebook", entry_point="codebook", kwargs={}, converter="codebook",
                source_files=(SourceFile(url, digest or None),), license="MIT", paper="", description="test",
                repo_id=sys.argv[5], revision="main", mirrored=sys.argv[5] != "speechzoo/not-mirrored-yet")

def pause(function):  # signal the test, then wait to be killed
    def paused(*args, **kwargs):
        result = function(*args, **kwargs) if stage == "write" else None
        Path(marker).touch()
        time.sleep(60)
        return result
    return paused

if stage == "race":  # say it is ready, then wait for the others
    Path(f"{marker}.{os.getpid()}").touch()
    while not Path(marker).exists():
        time.sleep(0.01)
elif stage == "convert":
    zoo.formats.codebook.convert = pause(zoo.formats.codebook.convert)
elif stage == "write":
    zoo.modeling.PretrainedModel.save_pretrained = pause(zoo.modeling.PretrainedModel.save_pretrained)
print(float(zoo.download.load_release(Codebook, entry, progress=False).codebook.sum()))
"""


def start_loader(entry_url: str, digest: str | None, stage: str, marker: Path,
                 repo_id: str = "speechzoo/not-mirrored-yet"):
    return python_process(_LOADER, entry_url, digest or "", stage, marker, repo_id)


def wait_for(condition, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the subprocess never reached the stage to kill it at"
        time.sleep(0.02)


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["download", "hub download", "convert", "write"])
def test_a_load_killed_at_any_stage_is_followed_by_a_clean_load(hub, convert, tmp_path, stage):
    data = CODEBOOK_PT.read_bytes()
    entry = serve(hub, data)
    repo_id = "speechzoo/not-mirrored-yet"
    if stage == "hub download":
        repo_id = "someone/cb-mirror"
        hub.add_repo(repo_id, convert("codebook", CODEBOOK_PT))
    marker = tmp_path / "reached"
    if stage in ("download", "hub download"):
        hub.slow(0.2)
        suffix = ".partial" if stage == "download" else ".incomplete"
        marker_reached = lambda: any(p.name.endswith(suffix) for p in zoo.hub.hf_home().rglob("*"))  # noqa: E731
    else:
        marker_reached = marker.exists
    process = start_loader(entry.source_url, sha256(data), stage, marker, repo_id)
    try:
        wait_for(marker_reached)
    finally:
        process.kill()
        process.communicate()
    assert process.returncode == -signal.SIGKILL
    hub.slow(0)
    if stage == "hub download":
        entry = release(entry.source_url, sha256(data), repo_id=repo_id, revision="main", mirrored=True)
    assert zoo.download.cached_release(entry) is None, "a killed run left something that looks complete"
    assert torch.equal(zoo.download.load_release(Codebook, entry, progress=False).codebook, CODEBOOK)
    assert not leftovers(zoo.hub.hf_home())


@pytest.mark.slow
def test_four_processes_on_an_empty_cache_download_and_convert_once(hub, tmp_path):
    data = CODEBOOK_PT.read_bytes()
    entry = serve(hub, data)
    hub.slow(0.02)  # a download takes over a second, so the four overlap
    go = tmp_path / "go"
    processes = [start_loader(entry.source_url, sha256(data), "race", go) for _ in range(4)]
    wait_for(lambda: len(list(tmp_path.glob("go.*"))) == 4, timeout=240)  # all four imported, ready to load
    go.touch()
    results = [p.communicate(timeout=300) for p in processes]
    assert [p.returncode for p in processes] == [0] * 4, [err for _, err in results]
    assert {out.strip() for out, _ in results} == {str(float(CODEBOOK.sum()))}
    assert hub.gets(RELEASE_PATH) == 1, "the original was downloaded more than once"
    folder = zoo.download.cached_conversion(entry)
    assert folder is not None and zoo.download.manifest(folder)["verified"] is True
    assert not leftovers(zoo.hub.hf_home())
