"""Devices and precision: the one place that touches JAX configuration and XLA flags.

Nothing here runs at import time; callers ask for a configuration explicitly.
"""

from __future__ import annotations

import os
import re
import sys
import warnings

_DEVICE_COUNT_FLAG = "--xla_force_host_platform_device_count"
PRECISIONS = ("float64", "float32")
DEVICES = ("auto", "cpu", "gpu")
CHAIN_METHODS = ("auto", "vectorized", "sequential")
"""How a device runs its chains (``runner.runs_vectorized`` decides ``"auto"``)."""


def check_chain_method(chain_method: str) -> str:
    """``chain_method`` itself, or a ValueError naming the accepted values."""
    if chain_method not in CHAIN_METHODS:
        raise ValueError(f"chain_method={chain_method!r} is not supported; use one of "
                         f"{', '.join(map(repr, CHAIN_METHODS))}.")
    return chain_method


MEMORY_BUDGET = 1 << 30
"""Bytes of draws a chunk may hold on a device that does not report its memory (CPU)."""


def memory_budget(device: str) -> int:
    """Bytes of draws one chunk may hold on ``device``: a quarter of its memory, else
    ``MEMORY_BUDGET``."""
    try:
        stats = resolve_devices(device)[0].memory_stats() or {}
    except Exception:  # backends without memory statistics
        stats = {}
    limit = stats.get("bytes_limit")
    return int(limit) // 4 if limit else MEMORY_BUDGET


def _jax_started() -> bool:
    """Whether JAX's backends already exist, so XLA flags can no longer change."""
    if "jax" not in sys.modules:
        return False
    try:
        from jax._src import xla_bridge

        return bool(xla_bridge._backends)
    except (ImportError, AttributeError):
        return True


CPU_COMPILE_FLAGS = ("--xla_cpu_use_fusion_emitters=false",)
"""XLA flags hiddenjax sets for compile time, each unless the user names it in XLA_FLAGS.

XLA's older elemental emitters compile a NUTS chunk program on CPU in 0.65 to
0.86 of the time its newer fusion emitters take, with the same accuracy of
elementwise functions; ``python -m benchmarks.compile_flags`` measures both
(docs/benchmarks/compile_flags.md). The same script measures the other
compile-time settings considered and not set: LLVM's optimisation level 0
compiles 1.5 to 2 times faster but runs data-heavy models 2.6 to 4.6 times slower per
gradient; fewer LLVM passes and other code-generation splits gained too
little to tell from run-to-run noise.
"""


def request_host_devices(count: int | None = None) -> int:
    """Expose ``count`` host CPU devices to XLA (default: one per core).

    Must run before JAX creates its backends to take effect; ``CPU_COMPILE_FLAGS``
    are set with it. Returns the number of host devices JAX will have.
    """
    count = int(count or os.cpu_count() or 1)
    flags = os.environ.get("XLA_FLAGS", "")
    if _DEVICE_COUNT_FLAG in flags:
        match = re.search(rf"{_DEVICE_COUNT_FLAG}=(\d+)", flags)
        count = int(match.group(1)) if match else count
    elif _jax_started():
        import jax

        have = len(jax.devices("cpu"))
        if have < count:
            warnings.warn(
                f"JAX was already started with {have} CPU device(s), so hiddenjax could "
                f"not expose {count}; chains will share {have} device(s).",
                RuntimeWarning,
                stacklevel=3,
            )
        return have
    else:
        flags = f"{flags} {_DEVICE_COUNT_FLAG}={count}"
    if not _jax_started():
        os.environ["XLA_FLAGS"] = with_compile_flags(flags)
    return count


def with_compile_flags(flags: str) -> str:
    """``flags`` with each of ``CPU_COMPILE_FLAGS`` whose name it lacks added."""
    names = {flag.split("=")[0] for flag in flags.split()}
    missing = [flag for flag in CPU_COMPILE_FLAGS if flag.split("=")[0] not in names]
    return " ".join([*flags.split(), *missing])


def configure(precision: str = "float64") -> None:
    """Set up JAX for hiddenjax: host devices, and 64-bit support when asked for.

    Float64 support is switched on in both precisions so that adaptation
    accumulators can stay in float64 when the model runs in float32.
    """
    if precision not in PRECISIONS:
        raise ValueError(
            f"precision={precision!r} is not supported; use one of {', '.join(PRECISIONS)}."
        )
    request_host_devices()
    import jax

    jax.config.update("jax_enable_x64", True)
    _enable_persistent_cache(jax)


def cache_dir() -> str:
    """Where compiled programs persist across processes (``HIDDENJAX_CACHE_DIR`` overrides)."""
    default = os.path.join(os.path.expanduser("~"), ".cache", "hiddenjax", "xla")
    return os.environ.get("HIDDENJAX_CACHE_DIR", default)


def _enable_persistent_cache(jax) -> None:
    """Let a second process reuse compiled programs instead of compiling again."""
    if jax.config.jax_compilation_cache_dir:
        return  # the user's own setting wins
    try:
        os.makedirs(cache_dir(), exist_ok=True)
    except OSError:
        return  # read-only home: compile every time rather than fail
    jax.config.update("jax_compilation_cache_dir", cache_dir())
    # Every program: loading even a small one (the start check, the chain init:
    # 0.05-0.15 s to compile each) is several times faster than compiling it.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)


def float_dtype(precision: str):
    """The numpy dtype of model values for ``precision``."""
    import numpy as np

    return np.float64 if precision == "float64" else np.float32


def resolve_devices(device: str = "auto") -> list:
    """The JAX devices chains may run on, for a plain device string."""
    if device not in DEVICES:
        raise ValueError(f"device={device!r} is not supported; use one of {', '.join(DEVICES)}.")
    import jax

    if device == "auto":
        return jax.devices()
    try:
        return jax.devices(device)
    except RuntimeError:
        raise ValueError(
            f"device={device!r} was asked for, but JAX finds no {device.upper()} on this "
            "machine. Use device='cpu' (or 'auto'), or install a GPU-enabled jaxlib "
            "(for NVIDIA GPUs: pip install 'jax[cuda12]')."
        ) from None


def init_distributed(coordinator: str, num_processes: int, process_id: int,
                     local_devices: int | None = None) -> None:
    """Join a multi-process run: chains are then sharded over every process's devices.

    Call it first thing in each process (before any sampling), with the same
    ``coordinator`` address ("host:port" of process 0) and ``num_processes``,
    and this process's ``process_id``. On CPU the processes talk through
    JAX's gloo collectives.
    """
    if not isinstance(coordinator, str) or ":" not in coordinator:
        raise ValueError(f"coordinator={coordinator!r} must be a 'host:port' string.")
    if not 0 <= process_id < num_processes:
        raise ValueError(
            f"process_id={process_id} must lie in [0, num_processes={num_processes})."
        )
    request_host_devices(local_devices)
    import jax

    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator, num_processes=num_processes, process_id=process_id)
    configure()


def pool_safe_devices(devices: list, program_text: str) -> list:
    """``devices``, cut to the first one where several host devices would deadlock.

    jaxlib 0.10 spreads the batch of a LAPACK call (Cholesky, eigh, SVD, LU,
    triangular solves, ...) over XLA's intra-op thread pool and waits for it.
    When several host CPU devices execute at once, every pool thread can end
    up waiting and the process hangs at 0% CPU; one device never does. So a
    CPU program (StableHLO text) that calls LAPACK runs on one device, its
    chains or draws vectorised there. GPUs are unaffected. Only custom calls
    count: the text may carry source locations whose names mention LAPACK.
    """
    calls_lapack = re.search(r"custom_call\s+@lapack_", program_text) is not None
    if len(devices) > 1 and devices[0].platform == "cpu" and calls_lapack:
        return list(devices[:1])
    return list(devices)
