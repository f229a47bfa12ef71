"""How many CPU kernels oneDNN keeps: every command that runs an encoder on clips of many lengths."""

from __future__ import annotations

import os

ONEDNN_KERNEL_CACHE = 16  # kernels oneDNN keeps, the last shapes seen (its default: 1024)


def bound_kernel_cache() -> None:
    """Keep oneDNN's cache of CPU kernels small (``ONEDNN_PRIMITIVE_CACHE_CAPACITY``, unless set).

    oneDNN keeps a kernel, with its buffers, for every input shape it has run, up to 1024 of them.
    The encoder's convolution sees a new shape with nearly every batch of trimmed clips (each batch
    is as long as its longest clip): about 2.7 MB a shape for whisper-base's stem, so a process's
    memory grew with the distinct clip lengths of its corpus (900 MB over the 150 batches of a cache
    build). oneDNN reads the setting when it makes its first kernel: the CLI sets it before any
    command runs, training and loading a recognizer set it for the Python API.
    """
    os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", str(ONEDNN_KERNEL_CACHE))
