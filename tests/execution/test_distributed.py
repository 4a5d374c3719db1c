"""Two processes on 127.0.0.1 sample one model together, as one process would."""

import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

ROOT = Path(__file__).parents[2]
RUN = dict(draws=150, tune=150, chains=4, random_seed=9, progressbar=False,
           compute_convergence_checks=False)

WORKER = textwrap.dedent(
    """
    import sys
    import hiddenjax as hj
    from hiddenjax.examples import eight_schools

    coordinator, process_id, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    hj.init_distributed(coordinator, num_processes=2, process_id=process_id, local_devices=2)
    idata = hj.sample(model=eight_schools(), **{RUN!r})
    if process_id == 0:
        idata.to_netcdf(out)
    """
).replace("{RUN!r}", repr(RUN))


SINGLE = textwrap.dedent(
    """
    import sys
    import hiddenjax as hj
    from hiddenjax.examples import eight_schools

    hj.sample(model=eight_schools(), **{RUN!r}).to_netcdf(sys.argv[1])
    """
).replace("{RUN!r}", repr(RUN))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow  # three fresh processes: 35 s of the default suite
def test_two_processes_equal_one_process(tmp_path):
    script, out = tmp_path / "worker.py", tmp_path / "out.nc"
    script.write_text(WORKER)
    coordinator = f"127.0.0.1:{_free_port()}"
    procs = [
        subprocess.Popen([sys.executable, str(script), coordinator, str(i), str(out)], cwd=ROOT,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for i in range(2)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err.decode()[-3000:]
    with xr.open_dataset(out, group="posterior", engine="h5netcdf") as posterior:
        together = posterior["theta"].values
    # One process with the same four devices (one chain each) as the pair.
    single = tmp_path / "single.py"
    single.write_text(SINGLE)
    alone_out = tmp_path / "alone.nc"
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
    subprocess.run([sys.executable, str(single), str(alone_out)], cwd=ROOT, env=env, check=True,
                   capture_output=True)
    with xr.open_dataset(alone_out, group="posterior", engine="h5netcdf") as posterior:
        alone = posterior["theta"].values
    np.testing.assert_array_equal(together, alone)
