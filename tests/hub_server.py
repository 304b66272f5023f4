"""A loopback server that speaks the part of the Hugging Face Hub's file API that ``hf_hub_download`` uses,
plus plain file URLs (for original releases). Tests point ``HF_ENDPOINT`` at it, so the real download code runs
without the internet.

Repos are served at every revision. For each file the server announces what the real Hub announces: the commit, the
ETag (the SHA-256 for LFS files such as ``*.safetensors``, a git blob id otherwise) and the size. ``corrupt`` makes it
send other bytes than the ones it announced, as a broken mirror or a man in the middle would; ``fault`` makes the
next requests for a path misbehave as flaky servers do (:data:`FAULTS`), and ``slow`` sends every body in small
pieces with pauses, so that a test can kill a process in the middle of a download.

Tests take the ``loopback_hub`` fixture (tests/conftest.py: :func:`loopback_hub` with a fresh ``HF_HOME``) and add
the converted models it serves, usually the tiny stand-ins of a system's releases (tests/tiny_models.py)::

    def test_from_the_hub(loopback_hub, convert, tmp_path):
        loopback_hub.add_models(tiny_models.gslm(convert, tmp_path))
        gslm = GSLM.from_pretrained(dense="hubert", vocab_size=100)   # the registry's repos, downloaded

The notebooks run against the same server (tests/test_notebooks.py): the kernel inherits the environment that
:func:`loopback_hub` sets, plus ``SPEECHZOO_DEMO_HUB`` (:data:`DEMO_VARIABLE`).
"""
from __future__ import annotations

import hashlib
import threading
from collections import deque
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

COMMIT = "0123456789abcdef0123456789abcdef01234567"
_LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".ckpt")

#: How ``fault`` makes a response misbehave: "500" (an internal server error), "truncate" (the right Content-Length,
#: then the connection is closed half-way through the body), "short" (a Content-Length larger than the body sent),
#: "html" (an HTML page with status 200, as a login or error page served in place of the file), "stall" (the request
#: is accepted and never answered) and "drop" (the connection is closed before any response).
FAULTS = ("500", "truncate", "short", "html", "stall", "drop")
#: The environment variable a notebook reads to know it runs in CI against this server (its URL): its install cell
#: then does nothing, since the checkout under test is already installed.
DEMO_VARIABLE = "SPEECHZOO_DEMO_HUB"


class FakeHub:
    def __init__(self) -> None:
        self.repos: dict[str, dict[str, bytes]] = {}
        self.raw: dict[str, bytes] = {}           # path -> bytes, for plain release URLs
        self.sent: dict[tuple[str, str], bytes] = {}  # (repo, file) -> bytes actually sent, if not the announced
        self.requests: list[str] = []
        self.authorizations: list[str | None] = []  # the Authorization header of each request
        self.faults: dict[tuple[str, str], deque[str]] = {}  # (method, path) -> the next responses' faults
        self.slow_seconds = 0.0  # with slow(): the pause between two pieces of a body
        self._stop = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> FakeHub:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()  # releases stalled requests
        self._server.shutdown()
        self._server.server_close()

    def add_repo(self, repo_id: str, directory: str | Path) -> None:
        self.repos[repo_id] = {p.name: p.read_bytes() for p in Path(directory).iterdir() if p.is_file()}

    def add_models(self, models: Mapping[str, tuple[object, str | Path]]) -> FakeHub:
        """Serve each converted directory under its registry entry's repo: ``{name: (entry, directory)}`` as
        tests/tiny_models.py builds them (an entry is a :class:`zoo.registry.Weights` or a repo id)."""
        for entry, directory in models.values():
            self.add_repo(getattr(entry, "repo_id", entry), directory)
        return self

    def add_raw(self, path: str, data: bytes) -> str:
        """Serve ``data`` at ``/path``; returns its URL."""
        self.raw["/" + path.lstrip("/")] = data
        return f"{self.url}/{path.lstrip('/')}"

    def corrupt(self, repo_id: str, filename: str, data: bytes) -> None:
        """Announce the genuine file's hash and size but send ``data``."""
        self.sent[(repo_id, filename)] = data

    def fault(self, path: str, *faults: str, method: str = "GET") -> None:
        """The next ``len(faults)`` ``method`` requests of ``path`` (a raw path, or ``org/name/filename`` for a repo
        file at any revision) misbehave, one fault each (:data:`FAULTS`); later ones are answered normally."""
        assert set(faults) <= set(FAULTS), faults
        self.faults.setdefault((method, "/" + path.lstrip("/")), deque()).extend(faults)

    def slow(self, seconds_per_piece: float) -> None:
        """Send every body in 64 pieces with a pause of ``seconds_per_piece`` between two."""
        self.slow_seconds = seconds_per_piece

    def gets(self, path: str) -> int:
        """How many GET requests asked for ``path`` (a raw path, or the ``/resolve/`` path of a repo file)."""
        return sum(r == f"GET /{path.lstrip('/')}" for r in self.requests)

    def _next_fault(self, method: str, path: str) -> str | None:
        parts = path.lstrip("/").split("/")
        keys = [(method, path)]
        if len(parts) >= 5 and parts[2] == "resolve":  # /{org}/{name}/resolve/{revision}/{filename}
            keys.append((method, "/" + "/".join(parts[:2] + parts[4:])))
        for key in keys:
            if self.faults.get(key):
                return self.faults[key].popleft()
        return None

    def _handler(self):
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep pytest output clean
                pass

            def do_HEAD(self) -> None:
                self._respond(body=False)

            def do_GET(self) -> None:
                self._respond(body=True)

            def _respond(self, body: bool) -> None:
                hub.requests.append(f"{self.command} {self.path}")
                hub.authorizations.append(self.headers.get("Authorization"))
                self.fault = hub._next_fault(self.command, self.path)
                if self.fault == "stall":
                    hub._stop.wait(60)
                    self.close_connection = True
                    return
                if self.fault == "drop":
                    self.close_connection = True
                    return
                if self.fault == "500":
                    return self._send(500, b"internal server error", {}, body)
                if self.fault == "html":
                    return self._send(200, b"<!DOCTYPE html><html><body>Sign in to continue</body></html>",
                                      {"Content-Type": "text/html; charset=utf-8"}, body)
                if self.path in hub.raw:
                    return self._send(200, hub.raw[self.path], {}, body)
                parts = self.path.lstrip("/").split("/")
                # /{org}/{name}/resolve/{revision}/{filename}
                if len(parts) < 5 or parts[2] != "resolve":
                    return self._send(404, b"not found", {"X-Error-Code": "EntryNotFound"}, body)
                repo_id, filename = "/".join(parts[:2]), "/".join(parts[4:])
                if repo_id not in hub.repos:
                    return self._send(404, b"repo not found", {"X-Error-Code": "RepoNotFound"}, body)
                files = hub.repos[repo_id]
                if filename not in files:
                    return self._send(404, b"entry not found", {"X-Error-Code": "EntryNotFound"}, body)
                announced = files[filename]
                data = hub.sent.get((repo_id, filename), announced)
                headers = {"X-Repo-Commit": COMMIT}
                if filename.endswith(_LFS_SUFFIXES):
                    digest = hashlib.sha256(announced).hexdigest()
                    headers.update({"ETag": f'"{digest}"', "X-Linked-Etag": f'"{digest}"',
                                    "X-Linked-Size": str(len(announced))})
                else:
                    blob = hashlib.sha1(b"blob %d\0" % len(announced) + announced).hexdigest()
                    headers["ETag"] = f'"{blob}"'
                self._send(200, data, headers, body)

            def _send(self, status: int, data: bytes, headers: dict[str, str], body: bool) -> None:
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                announced = len(data) + (1000 if self.fault == "short" else 0)
                self.send_header("Content-Length", str(announced))
                self.end_headers()
                if not body:
                    return
                if self.fault == "truncate":
                    data = data[: len(data) // 2]
                if self.fault in ("truncate", "short"):
                    self.close_connection = True
                if hub.slow_seconds and status == 200:
                    piece = max(1, len(data) // 64)
                    for start in range(0, len(data), piece):
                        self.wfile.write(data[start: start + piece])
                        self.wfile.flush()
                        if hub._stop.wait(hub.slow_seconds):
                            return
                else:
                    self.wfile.write(data)

        return Handler


@contextmanager
def loopback_hub(monkeypatch, home: str | Path) -> Iterator[FakeHub]:
    """A running :class:`FakeHub` with the environment of a user who never downloaded anything pointed at it:
    ``HF_ENDPOINT`` its URL, ``HF_HOME`` ``home``, and no ``HF_HUB_CACHE``, ``HF_HUB_OFFLINE`` or download timeout
    from the caller's environment (``monkeypatch`` undoes it all)."""
    monkeypatch.setenv("HF_HOME", str(home))
    for name in ("HF_HUB_CACHE", "HF_HUB_OFFLINE", "HF_HUB_DOWNLOAD_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)
    with FakeHub() as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        yield server
