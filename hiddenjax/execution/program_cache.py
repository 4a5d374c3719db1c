"""Exported chunk programs kept on disk, so a new process skips tracing and lowering.

JAX's persistent compilation cache saves the XLA compile, but its key is the
lowered program, so a new process still traces and lowers the whole sampler
first (about a second for NUTS on a 2-core CPU, more than the compile it
saves). This cache keys the lowered program by what it is made of instead:

* the program's source: hiddenjax's own files and the JAX version;
* the program's settings (the sampler factory and its keywords, chunk size,
  chains, devices, precision flags);
* the model: the jaxprs of its log-density and gradient, its reported values
  and its log-likelihood, constants included, at the shapes of this run.

Data values are arguments of the program, so new data of the same shapes
(``pm.set_data``) finds the same entry. An entry is the ``jax.export``
serialisation of the lowered program (a flatbuffer of StableHLO, no pickle);
compiling it again finds the XLA executable in JAX's persistent cache.

Anything this cache cannot handle (a host callback in the program, a pytree
node it cannot name, an unreadable entry) falls back to tracing as before.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import os
import sys
from collections.abc import Callable
from pathlib import Path

import jax
import numpy as np

__all__ = ["CacheStats", "function_digest", "load", "program_key", "read_note", "store", "write_note"]

_FORMAT = b"hiddenjax-program-1\n"


class CacheStats:
    """Entries loaded and stored in this process (tests read these)."""

    loaded = 0
    stored = 0


def _folder() -> Path:
    from hiddenjax.execution.devices import cache_dir

    return Path(cache_dir()) / "programs"


@functools.cache
def _source_digest() -> str:
    """Digest of hiddenjax's own source files and the versions that shape a program."""
    digest = hashlib.sha256()
    package = Path(__file__).resolve().parents[1]
    for path in sorted(package.rglob("*.py")):
        digest.update(str(path.relative_to(package)).encode())
        digest.update(path.read_bytes())
    for name in ("jax", "jaxlib", "pytensor", "pymc"):
        digest.update(f"{name}={importlib.metadata.version(name)}".encode())
    return digest.hexdigest()


def _describe(factory: Callable) -> str | None:
    """A stable text for a program factory, or None when it has none.

    A module-level function, or a ``functools.partial`` of one with plain
    keyword values, names its program; a closure does not.
    """
    args, keywords = (), {}
    if isinstance(factory, functools.partial):
        factory, args, keywords = factory.func, factory.args, factory.keywords
    name = f"{getattr(factory, '__module__', '')}.{getattr(factory, '__qualname__', '')}"
    if "<" in name or not name.strip("."):
        return None
    plain = (bool, int, float, str, type(None))
    values = [*args, *keywords.values()]
    if not all(isinstance(v, plain) for v in values):
        return None
    return f"{name}{args!r}{sorted(keywords.items())!r}"


def function_digest(fn: Callable, *specs) -> str:
    """Digest of ``fn``'s jaxpr at ``specs``, its constants' values included."""
    closed = jax.make_jaxpr(fn)(*specs)
    digest = hashlib.sha256(str(closed.jaxpr).encode())
    for const in closed.consts:
        array = np.asarray(const)
        digest.update(f"{array.dtype}{array.shape}".encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def program_key(factory: Callable, settings: tuple, model_digests: tuple, devices) -> str | None:
    """The cache key of a chunk program, or None when it cannot be keyed safely."""
    if jax.process_count() > 1:
        return None  # each process would need the same entry at once; not worth it
    described = _describe(factory)
    if described is None:
        return None
    device = devices[0]
    parts = (
        _source_digest(), described, settings, model_digests,
        device.platform, device.device_kind, len(devices),
        bool(jax.config.jax_enable_x64), os.environ.get("XLA_FLAGS", ""),
    )
    return hashlib.sha256(repr(parts).encode()).hexdigest()


def _node_types(treedef) -> set[type]:
    """Every pytree node type under ``treedef``."""
    found = set()
    stack = [treedef]
    while stack:
        node = stack.pop()
        data = node.node_data()
        if data is not None:
            found.add(data[0])
        stack.extend(node.children())
    return found


def _is_namedtuple(cls: type) -> bool:
    return issubclass(cls, tuple) and isinstance(getattr(cls, "_fields", None), tuple)


def _serialized_name(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


_REGISTERED: set[type] = set()


def _register(cls: type) -> bool:
    """Make a NamedTuple type nameable in exported calling conventions."""
    if not _is_namedtuple(cls) or "<" in cls.__qualname__:
        return False
    if cls not in _REGISTERED:
        try:
            jax.export.register_namedtuple_serialization(cls, serialized_name=_serialized_name(cls))
        except ValueError:
            pass  # registered before, by us or by the program's author
        _REGISTERED.add(cls)
    return True


def _lookup(name: str) -> type | None:
    """The class ``module:qualname`` names, if its module is already imported."""
    module_name, _, qualname = name.partition(":")
    module = sys.modules.get(module_name)  # never import on a cache file's say-so
    obj = module
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
    return obj if isinstance(obj, type) else None


def store(key: str, exported: jax.export.Exported) -> bool:
    """Write ``exported`` under ``key``; False when it cannot be (it stays uncached)."""
    types = _node_types(exported.in_tree) | _node_types(exported.out_tree)
    custom = [t for t in types if t not in (tuple, list, dict, type(None))]
    if not all(_register(t) for t in custom):
        return False
    try:
        blob = exported.serialize()
    except (ValueError, TypeError, NotImplementedError):
        return False
    names = "\n".join(sorted(_serialized_name(t) for t in custom)).encode()
    if not _write(key, _FORMAT + len(names).to_bytes(8, "little") + names + bytes(blob)):
        return False
    CacheStats.stored += 1
    return True


def _write(name: str, content: bytes) -> bool:
    """Write ``content`` under ``name`` atomically (a reader sees all of it or none)."""
    folder = _folder()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        partial = folder / f"{name}.{os.getpid()}.tmp"
        partial.write_bytes(content)
        partial.replace(folder / name)
    except OSError:
        return False
    return True


def load(key: str) -> jax.export.Exported | None:
    """The program stored under ``key``, or None (absent, unreadable, or from elsewhere)."""
    try:
        raw = (_folder() / key).read_bytes()
    except OSError:
        return None
    if not raw.startswith(_FORMAT):
        return None
    raw = raw[len(_FORMAT):]
    size = int.from_bytes(raw[:8], "little")
    names = raw[8 : 8 + size].decode().split("\n") if size else []
    for name in names:
        cls = _lookup(name)
        if cls is None or not _register(cls):
            return None
    try:
        exported = jax.export.deserialize(bytearray(raw[8 + size :]))
    except Exception:  # a truncated or foreign file is a miss, never an error
        return None
    CacheStats.loaded += 1
    return exported


def read_note(name: str) -> str | None:
    """A short text kept beside the programs under ``name``, or None."""
    try:
        return (_folder() / name).read_text().strip() or None
    except (OSError, UnicodeDecodeError):
        return None


def write_note(name: str, text: str) -> None:
    """Keep ``text`` under ``name`` beside the programs (silently skipped when unwritable)."""
    _write(name, text.encode())
