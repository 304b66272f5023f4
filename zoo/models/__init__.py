"""One module per model family: its config dataclass, its modules, its released ``WEIGHTS`` and its loaders."""
