import socket
import sys
from pathlib import Path

import pytest

# tests import their helpers (hub_server) as top-level modules
sys.path.insert(0, str(Path(__file__).parent))

_LOOPBACK = ("localhost", "127.", "::1")


@pytest.fixture(autouse=True)
def no_internet(monkeypatch):
    """Tests reach loopback servers only: a lookup of any other host fails loudly instead of downloading."""
    resolve = socket.getaddrinfo

    def loopback_only(host, *args, **kwargs):
        if isinstance(host, bytes):
            host = host.decode()
        if host is None or not str(host).startswith(_LOOPBACK):
            raise OSError(f"tests may not reach the internet (tried {host!r}): serve the files from a loopback server")
        return resolve(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", loopback_only)
