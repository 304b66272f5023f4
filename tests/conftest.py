import sys
from pathlib import Path

# tests import their helpers (hub_server) as top-level modules
sys.path.insert(0, str(Path(__file__).parent))
