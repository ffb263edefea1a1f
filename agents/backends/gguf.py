"""GGUF files as models: ``actor.model=path/to/x.gguf`` (any role's ``model`` key), and model files inside an
installed Python package: ``pkg://<package>/<file>`` (found without importing the package).

transformers reads a GGUF file and dequantises it (``from_pretrained(folder, gguf_file=name)``; 25-80 s for a
0.5 B model on two cores). That is done once per file: the result is saved as an ordinary HF folder in the
cache (``$CRITIQUE_GYM_CACHE``, default ``~/.cache/critique_gym``), keyed by the file's path, size and mtime,
and every later load reads the folder (under 3 s). The folder appears atomically, so two processes converting
the same file never leave a half-written one.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from storage import atomic_directory

__all__ = ["cache_dir", "is_gguf", "package_file", "resolve_model"]

CACHE_ENV = "CRITIQUE_GYM_CACHE"


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "critique_gym")


PACKAGE_SCHEME = "pkg://"


def is_gguf(model: str | os.PathLike) -> bool:
    return str(model).lower().endswith(".gguf")


def package_file(model: str) -> Path:
    """``pkg://<package>/<file>`` -> the file's path in the installed package."""
    import importlib.util

    package, _, name = model.removeprefix(PACKAGE_SCHEME).partition("/")
    spec = importlib.util.find_spec(package) if package else None
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"model {model!r}: no installed package {package!r}")
    path = Path(list(spec.submodule_search_locations)[0]) / name
    if not path.exists():
        raise FileNotFoundError(f"model {model!r}: package {package!r} has no file {name!r}")
    return path


def resolve_model(model: str | os.PathLike) -> str:
    """``model`` itself (a folder or hub id), a package's file, and for a GGUF file the cached HF folder
    converted from it."""
    if str(model).startswith(PACKAGE_SCHEME):
        model = package_file(str(model))
    if not is_gguf(model):
        return str(model)
    path = Path(model).expanduser().resolve()
    if not path.is_file():
        raise FileNotFoundError(f"GGUF model file not found: {model}")
    stat = path.stat()
    key = hashlib.sha256(f"{path}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    folder = cache_dir() / "gguf" / f"{path.stem}-{key}"
    if not (folder / "config.json").exists():
        _convert(path, folder)
    return str(folder)


def _convert(path: Path, folder: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    print(f"[gguf] converting {path.name} to an HF folder once: {folder}")
    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    model.hf_quantizer = None  # save_pretrained refuses a model that still names its GGUF quantizer
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    folder.parent.mkdir(parents=True, exist_ok=True)
    with atomic_directory(folder) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
