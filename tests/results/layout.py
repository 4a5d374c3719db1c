"""Compare the layout (not the values) of two InferenceData objects.

``assert_same_layout(hj_idata, pm_idata, ignore_stats=PYMC_ONLY_STATS)`` is how
tests check that hiddenjax returns what ``pm.sample`` returns: same groups,
same variables per group, same dims and coords per variable, same dtypes and
the same attr keys.
"""

from __future__ import annotations

from collections.abc import Collection

import numpy as np
import xarray as xr
from arviz import InferenceData

PYMC_ONLY_STATS = frozenset(
    {
        "perf_counter_diff",
        "perf_counter_start",
        "process_time_diff",
        "index_in_trajectory",
        "largest_eigval",
        "smallest_eigval",
    }
)
"""PyMC NUTS ``sample_stats`` that hiddenjax's sampler does not report today."""


def assert_same_layout(
    idata: InferenceData,
    reference: InferenceData,
    *,
    ignore_stats: Collection[str] = (),
    ignore_attrs: Collection[str] = (),
    dtype_groups: Collection[str] | None = None,
    order_groups: Collection[str] = (),
) -> None:
    """Assert that two InferenceData objects have the same layout; values are not compared.

    Parameters
    ----------
    idata, reference : arviz.InferenceData
        The objects to compare, e.g. from ``hj.sample`` and ``pm.sample``.
    ignore_stats : collection of str
        ``sample_stats`` (and ``warmup_sample_stats``) variables left out on both sides.
    ignore_attrs : collection of str
        Attr keys left out on both sides. Attr values are never compared, only keys.
    dtype_groups : collection of str, optional
        Groups whose variable dtypes must match; all groups by default.
    order_groups : collection of str
        Groups whose variables must also come in the same order. Only the
        posterior groups have a stable order in ``pm.sample``'s output; its
        ``sample_stats`` and ``log_likelihood`` orders vary from run to run.

    Raises
    ------
    AssertionError
        Listing every difference found.
    """
    problems = []
    groups_a, groups_b = set(idata.groups()), set(reference.groups())
    if groups_a != groups_b:
        problems.append(f"groups differ: only in first {sorted(groups_a - groups_b)}, "
                        f"only in second {sorted(groups_b - groups_a)}")
    problems += _attr_problems("InferenceData", idata.attrs, reference.attrs, ignore_attrs)
    for group in sorted(groups_a & groups_b):
        ignored = set(ignore_stats) if group.endswith("sample_stats") else set()
        check_dtype = dtype_groups is None or group in dtype_groups
        problems += _group_problems(group, idata[group], reference[group], ignored,
                                    ignore_attrs, check_dtype, group in order_groups)
    if problems:
        raise AssertionError("InferenceData layouts differ:\n- " + "\n- ".join(problems))


def _group_problems(group, a: xr.Dataset, b: xr.Dataset, ignored, ignore_attrs,
                    check_dtype: bool, check_order: bool) -> list[str]:
    names_a = [n for n in a.data_vars if n not in ignored]
    names_b = [n for n in b.data_vars if n not in ignored]
    problems = []
    if set(names_a) != set(names_b):
        problems.append(f"{group}: variables only in first {sorted(set(names_a) - set(names_b))}, "
                        f"only in second {sorted(set(names_b) - set(names_a))}")
    elif check_order and names_a != names_b:
        problems.append(f"{group}: variable order {names_a} != {names_b}")
    for name in (n for n in names_a if n in set(names_b)):
        problems += _variable_problems(f"{group}.{name}", a[name], b[name], check_dtype)
    problems += _attr_problems(group, a.attrs, b.attrs, ignore_attrs)
    return problems


def _variable_problems(where: str, a: xr.DataArray, b: xr.DataArray,
                       check_dtype: bool) -> list[str]:
    if a.dims != b.dims:
        return [f"{where}: dims {a.dims} != {b.dims}"]
    problems = []
    if check_dtype and a.dtype != b.dtype:
        problems.append(f"{where}: dtype {a.dtype} != {b.dtype}")
    for dim in a.dims:
        ca, cb = a[dim].values, b[dim].values
        if ca.dtype.kind != cb.dtype.kind or not np.array_equal(ca, cb):
            problems.append(f"{where}: coords of {dim!r} differ: {ca!r} != {cb!r}")
    return problems


def _attr_problems(where: str, a: dict, b: dict, ignore_attrs) -> list[str]:
    keys_a, keys_b = set(a) - set(ignore_attrs), set(b) - set(ignore_attrs)
    if keys_a == keys_b:
        return []
    return [f"{where}: attrs only in first {sorted(keys_a - keys_b)}, "
            f"only in second {sorted(keys_b - keys_a)}"]
