"""Training state (optimizer, LR schedule, RNG) in one safetensors file, without pickle.

``torch.save`` pickles, and unpickling a file runs whatever code it names: a
checkpoint folder someone hands over (or a tampered one) must not be able to do
that. Here a state object — nested dicts, lists and tuples of tensors, numpy
arrays and JSON scalars, which is all an optimizer, a scheduler or an RNG state
holds — is split into its tensors (stored as safetensors) and a JSON tree that
names them (stored in the safetensors header). Reading builds nothing but those
types back; a file that is not one of these is refused with a
:class:`~data_prep.outputs.ResumeError` naming it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from data_prep.outputs import ResumeError

#: The safetensors metadata key holding the JSON tree.
TREE_KEY = "asr_adapt_state"
_TAGS = ("__tensor__", "__tuple__", "__items__", "__ndarray__")


def _pack(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, torch.Tensor):
        name = f"t{len(tensors)}"
        tensors[name] = obj.detach().to("cpu").contiguous().clone()  # clone: no storage shared with another entry
        return {"__tensor__": name}
    if isinstance(obj, np.ndarray):
        return {"__ndarray__": obj.tolist(), "dtype": str(obj.dtype), "shape": list(obj.shape)}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, tuple):
        return {"__tuple__": [_pack(v, tensors) for v in obj]}
    if isinstance(obj, list):
        return [_pack(v, tensors) for v in obj]
    if isinstance(obj, dict):
        if all(isinstance(k, str) and k not in _TAGS for k in obj):
            return {k: _pack(v, tensors) for k, v in obj.items()}
        return {"__items__": [[_pack(k, tensors), _pack(v, tensors)] for k, v in obj.items()]}
    raise TypeError(f"cannot store a {type(obj).__name__} in a training-state file")


def _unpack(tree: Any, tensors) -> Any:
    if tree is None or isinstance(tree, (bool, int, float, str)):
        return tree
    if isinstance(tree, list):
        return [_unpack(v, tensors) for v in tree]
    if not isinstance(tree, dict):
        raise ValueError(f"unexpected {type(tree).__name__} in the state tree")
    if "__tensor__" in tree:
        return tensors(str(tree["__tensor__"]))
    if "__ndarray__" in tree:
        return np.asarray(tree["__ndarray__"], dtype=np.dtype(str(tree["dtype"]))).reshape(tree["shape"])
    if "__tuple__" in tree:
        return tuple(_unpack(v, tensors) for v in tree["__tuple__"])
    if "__items__" in tree:
        return {_hashable(_unpack(k, tensors)): _unpack(v, tensors) for k, v in tree["__items__"]}
    return {k: _unpack(v, tensors) for k, v in tree.items()}


def _hashable(key: Any) -> Any:
    if isinstance(key, (list, dict, torch.Tensor, np.ndarray)):
        raise ValueError("a mapping key that is not a scalar")
    return key


def save_state(obj: Any, path: str | os.PathLike) -> None:
    """Write ``obj`` (e.g. ``optimizer.state_dict()``) to ``path``."""
    tensors: dict[str, torch.Tensor] = {}
    tree = _pack(obj, tensors)
    save_file(tensors, str(path), metadata={TREE_KEY: json.dumps(tree)})


def load_state(path: str | os.PathLike) -> Any:
    """Read what :func:`save_state` wrote; anything else is a :class:`ResumeError` naming ``path``."""
    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            if TREE_KEY not in meta:
                raise ValueError(f"no {TREE_KEY!r} entry in its header")
            return _unpack(json.loads(meta[TREE_KEY]), f.get_tensor)
    except FileNotFoundError:
        raise ResumeError(f"{path}: missing from the checkpoint; rerun with --force to start afresh") from None
    except Exception as e:  # noqa: BLE001 - any malformed file: safetensors, JSON or tree errors alike
        detail = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ResumeError(f"{path}: not a training-state file of this toolkit ({detail}); it is not loaded: "
                          "rerun with --force to start afresh") from None  # fmt: skip
