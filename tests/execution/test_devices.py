"""Device choice: the jaxlib LAPACK deadlock on several host devices is avoided."""

import subprocess
import sys
import textwrap
from types import SimpleNamespace

import pytest

from hiddenjax.execution.devices import CPU_COMPILE_FLAGS, pool_safe_devices, with_compile_flags

CPU = [SimpleNamespace(platform="cpu", id=i) for i in range(2)]
GPU = [SimpleNamespace(platform="gpu", id=i) for i in range(2)]
LAPACK = 'stablehlo.custom_call @lapack_dpotrf_ffi(%0) {api_version = 4 : i32}'


def test_lapack_programs_keep_one_host_device():
    assert pool_safe_devices(CPU, LAPACK) == CPU[:1]
    assert pool_safe_devices(CPU, "stablehlo.add %0, %1") == CPU
    assert pool_safe_devices(CPU[:1], LAPACK) == CPU[:1]
    assert pool_safe_devices(GPU, LAPACK) == GPU
    # Exported text carries source locations: a name that mentions LAPACK is no call.
    located = 'stablehlo.add %0, %1 loc("test_lapack_model")'
    assert pool_safe_devices(CPU, located) == CPU


# Batched Cholesky of 88 x 88 matrices inside the chunk loop, chains over two
# host devices: before the fix this hung at 0% CPU within a few chunks.
_SCRIPT = textwrap.dedent("""
    from hiddenjax.execution.devices import configure
    configure()
    from functools import partial
    import jax, jax.numpy as jnp, numpy as np
    from tests.execution.test_runner import metropolis_program
    from hiddenjax.execution.runner import ChainFunctions, RunPlan, Runner, run_chains

    n = 88
    def logdensity(theta, data):
        a = jnp.outer(theta, theta) + n * jnp.eye(n)
        return -0.5 * jnp.sum(theta ** 2) + jnp.sum(jnp.linalg.cholesky(a)) * 1e-6

    fns = ChainFunctions(logdensity, lambda theta, data: (theta[:2],), None)
    plan = RunPlan(tune=200, draws=800, seed=0, chunk_size=50, keep_warmup=False)
    runner = Runner(partial(metropolis_program, tune=200), fns, 200, 50, 8)
    result = run_chains(runner, (), np.zeros((8, n)), plan)
    print("devices", runner.mesh.devices.size, "done", result.steps_done)
""")


@pytest.mark.slow
def test_lapack_in_the_chunk_loop_does_not_hang():
    done = subprocess.run([sys.executable, "-c", _SCRIPT], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "done 1000" in done.stdout


def test_compile_flags_are_added_once_and_never_override_the_user():
    assert with_compile_flags("") == " ".join(CPU_COMPILE_FLAGS)
    assert with_compile_flags(with_compile_flags("--a=1")).split() == ["--a=1", *CPU_COMPILE_FLAGS]
    own = "--xla_cpu_use_fusion_emitters=true"
    assert with_compile_flags(own) == own


def test_configure_sets_the_compile_flags_in_a_fresh_process():
    code = textwrap.dedent("""
        import os
        os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=3"
        from hiddenjax.execution.devices import CPU_COMPILE_FLAGS, configure
        configure()
        import jax
        print(len(jax.devices()), all(f in os.environ["XLA_FLAGS"] for f in CPU_COMPILE_FLAGS))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["3", "True"]
