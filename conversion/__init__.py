"""Maintainers' tools: convert ORIGINAL checkpoints into speechzoo's config.json + model.safetensors.

``python -m conversion KIND SRC... --out DIR`` — the same command as ``speechzoo convert``; the format readers
live in ``zoo.formats`` because the runtime fallback uses them too.
"""
