"""Checking a PyTorch weights file before anything in it runs.

A ``.pt`` file is a pickle, and unpickling can call any function the file names: a checkpoint
whose ``__reduce__`` names ``os.system`` runs a command the moment ultralytics loads it. So a
file is read first without executing it: PyTorch lists the globals (classes and functions)
the pickle refers to beyond its own safe set, and every one of them must be a network layer
(a ``torch.nn.Module`` subclass) from torch, torchvision or ultralytics, or one of the few
plain data classes a YOLO checkpoint holds. Anything else is refused, naming the global. Only
then is the file loaded with ``torch.load(weights_only=True)`` (PyTorch's restricted
unpickler, which calls nothing outside that allow-list), and only after that is it handed to
ultralytics.

What this does not check: that the weights are any good, that a network layer's own code is
harmless (it is installed code, like any package), or files that are not pickles (a custom
extractor's ONNX or safetensors file is data, not code).
"""

from __future__ import annotations

import importlib
import zipfile
from pathlib import Path
from typing import Any

from workbench.errors import ValidationError

# Packages whose network layers a checkpoint may hold.
LAYER_PACKAGES = ("torch.", "torchvision.", "ultralytics.")
# Plain data classes that checkpoints of those packages hold besides layers.
DATA_GLOBALS = frozenset({
    "ultralytics.utils.IterableSimpleNamespace",
    "types.SimpleNamespace",
    "numpy.core.multiarray.scalar", "numpy._core.multiarray.scalar",
    "numpy.dtype", "numpy.core.multiarray._reconstruct", "numpy._core.multiarray._reconstruct",
    "numpy.ndarray", "builtins.set", "builtins.frozenset", "builtins.slice",
    "collections.defaultdict", "datetime.datetime", "datetime.date", "datetime.timedelta",
    "pathlib.PosixPath", "pathlib.WindowsPath", "pathlib.Path",
})
PICKLE_SUFFIXES = (".pt", ".pth", ".ckpt")


def _resolve(name: str):
    """The object a pickle global ``module.qualname`` names, or None; imports only modules
    of the allowed packages (installed code), never anything the file brings."""
    module_name, _, qualname = name.rpartition(".")
    while module_name:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            qualname = module_name.rpartition(".")[2] + "." + qualname
            module_name = module_name.rpartition(".")[0]
            continue
        value = module
        for part in qualname.split("."):
            value = getattr(value, part, None)
            if value is None:
                return None
        return value
    return None


def _allowed(name: str):
    """The class for an allowed global, or None."""
    import numpy  # noqa: F401 — numpy globals resolve only once it is imported
    import torch

    if name in DATA_GLOBALS or (name.startswith("numpy.dtypes.") and name.endswith("DType")):
        return _resolve(name)
    if not name.startswith(LAYER_PACKAGES):
        return None
    value = _resolve(name)
    if isinstance(value, type) and issubclass(value, torch.nn.Module):
        return value
    return None


def check_weights(path: Path | str, label: str | None = None) -> Any:
    """Refuse a weights file that would run code when loaded (see the module docstring);
    returns what the file holds, loaded without running anything."""
    import torch
    from torch.serialization import get_unsafe_globals_in_checkpoint, safe_globals

    path = Path(path)
    label = label or path.name
    if path.is_file() and path.stat().st_size and not zipfile.is_zipfile(path):
        raise ValidationError(
            f"{label} is not a loadable PyTorch checkpoint: it is not in the zip format that "
            "torch.save has written since PyTorch 1.6 (a legacy file cannot be checked "
            "without running it); load and re-save it with a current PyTorch where you trust it")
    try:
        names = get_unsafe_globals_in_checkpoint(str(path))
    except Exception as exc:  # not a zip/pickle torch file, truncated, …
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ValidationError(f"{label} is not a loadable PyTorch checkpoint ({reason})") from None
    allowed, refused = [], []
    for name in sorted(set(names)):
        value = _allowed(name)
        (allowed if value is not None else refused).append(value if value is not None else name)
    if refused:
        raise ValidationError(
            f"{label} refers to {refused[0]!r}"
            + (f" (and {len(refused) - 1} more: {', '.join(refused[1:4])})" if refused[1:] else "")
            + ", which is not a network layer or plain data: loading it could run code, so it "
            "was not loaded. Only checkpoints of torch/torchvision/ultralytics layers are "
            "accepted; re-save the model with ultralytics (model.save) from a trusted source")
    try:
        with safe_globals(allowed):
            return torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ValidationError(f"{label} does not load as plain weights ({reason[:300]}); it "
                              "was not loaded with code execution either") from None


def check_weights_in(folder: Path) -> list[Path]:
    """Check every pickle-based weights file in a folder (a custom extractor's); returns them."""
    found = sorted(p for p in Path(folder).rglob("*")
                   if p.is_file() and p.suffix.lower() in PICKLE_SUFFIXES)
    for file in found:
        check_weights(file, str(file.relative_to(folder)))
    return found
