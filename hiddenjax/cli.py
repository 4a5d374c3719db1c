"""Command line: ``hiddenjax demo`` and ``hiddenjax sample FILE[:MODEL]``."""

from __future__ import annotations

import argparse
import runpy
import sys
import time


def _summary(idata) -> str:
    import arviz as az
    import pandas as pd

    with pd.option_context("display.width", 120, "display.max_columns", 20):
        return az.summary(idata).to_string()


def _load_model(target: str):
    """The ``pm.Model`` named ``MODEL`` (or the only one) defined by the script ``FILE``."""
    import pymc as pm

    path, _, name = target.partition(":")
    namespace = runpy.run_path(path, run_name="__hiddenjax__")
    if name:
        if not isinstance(namespace.get(name), pm.Model):
            raise SystemExit(f"{path} defines no pymc.Model called {name!r}.")
        return namespace[name]
    models = {k: v for k, v in namespace.items() if isinstance(v, pm.Model)}
    if len(models) != 1:
        found = ", ".join(sorted(models)) or "none"
        raise SystemExit(
            f"{path} must define exactly one pymc.Model (found: {found}); name one as FILE:MODEL."
        )
    return next(iter(models.values()))


def _run(model, args) -> int:
    import hiddenjax as hj

    start = time.perf_counter()
    idata = hj.sample(
        model=model, draws=args.draws, tune=args.tune, chains=args.chains,
        random_seed=args.seed, progressbar=not args.no_progress,
    )
    elapsed = time.perf_counter() - start
    print(_summary(idata))
    print(f"\nElapsed: {elapsed:.1f} s (compilation included)")
    if getattr(args, "out", None):
        idata.to_netcdf(args.out)
        print(f"Saved InferenceData to {args.out}")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hiddenjax", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="sample the eight-schools model and print a summary")
    run = sub.add_parser("sample", help="sample a PyMC model defined in a Python file")
    run.add_argument("target", metavar="FILE[:MODEL]")
    run.add_argument("--out", help="write the InferenceData to this netCDF file")
    for p in (demo, run):
        p.add_argument("--draws", type=int, default=1000)
        p.add_argument("--tune", type=int, default=1000)
        p.add_argument("--chains", type=int, default=4)
        p.add_argument("--seed", type=int, default=1)
        p.add_argument("--no-progress", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``hiddenjax`` command."""
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning, module="arviz")
    args = _parser().parse_args(argv)
    if args.command == "demo":
        from hiddenjax.examples import eight_schools

        print("hiddenjax demo: eight schools (non-centred), NUTS on JAX\n")
        return _run(eight_schools(), args)
    return _run(_load_model(args.target), args)


if __name__ == "__main__":
    sys.exit(main())
