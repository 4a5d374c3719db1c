"""Ctrl-C keeps every finished draw; a killed run resumes from its checkpoint bit for bit."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import xarray as xr

import hiddenjax as hj
from hiddenjax.examples import eight_schools

ROOT = Path(__file__).parents[2]
RUN = dict(tune=100, chains=2, random_seed=3, chunk_size=25, progressbar=False,
           compute_convergence_checks=False)

SCRIPT = textwrap.dedent(
    """
    import sys
    import hiddenjax as hj
    from hiddenjax.examples import eight_schools

    idata = hj.sample(model=eight_schools(), draws=100_000, checkpoint=sys.argv[1],
                      **{RUN!r})
    idata.to_netcdf(sys.argv[2])
    """
).replace("{RUN!r}", repr(RUN))


def _start(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    checkpoint, out = tmp_path / "run.nc", tmp_path / "out.nc"
    proc = subprocess.Popen([sys.executable, str(script), str(checkpoint), str(out)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return proc, checkpoint, out


def _wait_for_progress(proc, checkpoint, steps: int, timeout: float = 300):
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, proc.communicate()[1].decode()[-3000:]
        if checkpoint.exists():
            with xr.open_dataset(checkpoint, engine="h5netcdf") as ds:
                if ds.attrs["done"] >= steps:
                    return
        time.sleep(0.2)
    proc.kill()
    raise AssertionError("the run made no progress")


def test_sigint_returns_a_prefix_of_the_uninterrupted_run(tmp_path):
    proc, checkpoint, out = _start(tmp_path)
    _wait_for_progress(proc, checkpoint, steps=150)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err.decode()[-3000:]
    assert b"interrupted" in err
    with xr.open_dataset(out, group="posterior", engine="h5netcdf") as posterior:
        kept = posterior.sizes["draw"]
        interrupted_mu = posterior["mu"].values
    assert 0 < kept < 100_000
    whole = hj.sample(model=eight_schools(), draws=kept, **RUN)
    np.testing.assert_array_equal(interrupted_mu, whole.posterior["mu"].values)


def test_sigkill_then_resume_gives_identical_draws(tmp_path):
    proc, checkpoint, _ = _start(tmp_path)
    _wait_for_progress(proc, checkpoint, steps=150)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    with xr.open_dataset(checkpoint, engine="h5netcdf") as ds:
        done = ds.attrs["done"]
    draws = done - RUN["tune"] + 60  # finish past the point of the kill
    resumed = hj.sample(model=eight_schools(), draws=draws, checkpoint=str(checkpoint), **RUN)
    whole = hj.sample(model=eight_schools(), draws=draws, **RUN)
    for name in ("mu", "tau", "theta"):
        np.testing.assert_array_equal(resumed.posterior[name], whole.posterior[name])
    np.testing.assert_array_equal(resumed.sample_stats["lp"], whole.sample_stats["lp"])
