"""The benchmark report: a markdown table and PNG plots from ``results.json``.

Usage: ``python -m benchmarks.report docs/benchmarks/results.json`` re-renders
the README.md and plots next to the JSON without running anything.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

from benchmarks.models import MODELS

HIDDENJAX = ("hiddenjax (cold)", "hiddenjax (warm)")
LABELS = (*HIDDENJAX, "pymc", "nutpie", "numpyro", "blackjax")
"""Row order within a model."""
COLORS = dict(zip(LABELS, ("#1b7837", "#7fbf7b", "#2166ac", "#d6604d", "#8073ac", "#878787")))
"""One colour per sampler in every plot."""


def _fmt(value, digits: int = 2, unit: str = "") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if abs(value) >= 100:
        return f"{value:,.0f}{unit}"
    if 0 < abs(value) < 1:
        return f"{value:.2g}{unit}"
    return f"{value:.{digits}f}{unit}"


def _order(runs: list[dict]) -> list[str]:
    present = {r["model"] for r in runs}
    return [m for m in MODELS if m in present] + sorted(present - set(MODELS))


def _rows(runs: list[dict], model: str) -> list[dict]:
    rows = [r for r in runs if r["model"] == model and r["label"] != "floor"]
    return sorted(rows, key=lambda r: LABELS.index(r["label"]) if r["label"] in LABELS else 99)


def _floor(runs: list[dict], model: str) -> dict | None:
    for r in runs:
        if r["model"] == model and r["label"] == "floor" and r["status"] == "ok":
            return r
    return None


def best_peer(runs: list[dict], model: str) -> dict | None:
    """The peer (any sampler but hiddenjax) with the highest ESS per second on ``model``."""
    peers = [r for r in _rows(runs, model) if r["sampler"] != "hiddenjax" and r["status"] == "ok"]
    return max(peers, key=lambda r: r["ess_per_s"], default=None)


def _ratio(a, b):
    return None if a is None or not b else a / b


def _memory(r: dict) -> str:
    own = _fmt(r.get("peak_rss_mb"), 0)
    children = r.get("children_peak_rss_mb") or 0.0
    # Only PyMC samples in child processes; other children are short helpers (a C compiler).
    return f"{own} + {r['lanes']}×{children:,.0f}" if r["sampler"] == "pymc" else own


def _grads(r: dict) -> str:
    per = r.get("s_per_grad")
    text = _fmt(None if per is None else per * 1e6, 2)
    return f"≈{text}" if r.get("grads_warmup_estimated") and per is not None else text


def main_table(runs: list[dict]) -> list[str]:
    """One row per (model, sampler), ratios against the best peer of the same model."""
    lines = [
        "| model | sampler | wall (s) | start (s) | compile (s) | min bulk ESS | ESS/s "
        "| ESS/s ÷ best peer | ESS per 1000 grads | µs per grad | ÷ bare call "
        "| ÷ in-loop floor "
        "| peak RSS (MB) | divergences |",
        "|" + "---|" * 14,
    ]
    for model in _order(runs):
        peer, floor = best_peer(runs, model), _floor(runs, model)
        for r in _rows(runs, model):
            if r["status"] != "ok":
                lines.append(f"| {model} | {r['label']} | failed: {r['error']} |" + " |" * 11)
                continue
            per = r.get("s_per_grad")
            lines.append("| " + " | ".join([
                model, r["label"], _fmt(r["wall_s"]), _fmt(r["start_s"]), _fmt(r["compile_s"]),
                _fmt(r["ess_bulk_min"], 0), _fmt(r["ess_per_s"], 1),
                _fmt(_ratio(r["ess_per_s"], peer and peer["ess_per_s"])),
                _fmt(r["ess_per_1000_grads"], 1), _grads(r),
                _fmt(_ratio(per, floor and floor["bare_call_s"])),
                _fmt(_ratio(per, floor and floor["loop_floor_s"])),
                _memory(r), str(r.get("divergences", "n/a")),
            ]) + " |")
    return lines


def summary_table(runs: list[dict]) -> list[str]:
    """hiddenjax against the best peer, model by model, with geometric means."""
    lines = [
        "| model | best peer | peer ESS/s | hiddenjax cold ESS/s (ratio) | hiddenjax warm ESS/s "
        "(ratio) | cold start (s) | warm start (s) | hiddenjax µs/grad ÷ in-loop floor |",
        "|" + "---|" * 8,
    ]
    logs = {label: [] for label in HIDDENJAX}
    for model in _order(runs):
        peer, floor = best_peer(runs, model), _floor(runs, model)
        rows = {r["label"]: r for r in _rows(runs, model)}
        cells = [model, peer["label"] if peer else "n/a", _fmt(peer and peer["ess_per_s"], 1)]
        for label in HIDDENJAX:
            r = rows.get(label)
            if r is None or r["status"] != "ok":
                cells.append("failed" if r else "not run")
                continue
            ratio = _ratio(r["ess_per_s"], peer and peer["ess_per_s"])
            if ratio:
                logs[label].append(math.log(ratio))
            cells.append(f"{_fmt(r['ess_per_s'], 1)} ({_fmt(ratio)}×)")
        for label in HIDDENJAX:
            r = rows.get(label)
            cells.append(_fmt(r.get("start_s")) if r and r["status"] == "ok" else "n/a")
        cold = rows.get(HIDDENJAX[0])
        per = cold.get("s_per_grad") if cold and cold["status"] == "ok" else None
        cells.append(_fmt(_ratio(per, floor and floor["loop_floor_s"])))
        lines.append("| " + " | ".join(cells) + " |")
    means = [f"{math.exp(sum(v) / len(v)):.2f}×" if v else "n/a" for v in logs.values()]
    lines.append(f"| geometric mean | | | {means[0]} | {means[1]} | | | |")
    return lines


def _geomean(values: list[float]) -> float | None:
    return math.exp(sum(map(math.log, values)) / len(values)) if values else None


def mark(ok: bool) -> str:
    return "met" if ok else "**missed**"


def targets(runs: list[dict]) -> list[str]:
    """Issue 8's targets for hiddenjax, each marked met or missed with the measured value."""
    ratios = {label: [] for label in HIDDENJAX}
    worst_grad, worst_start = None, None
    for model in _order(runs):
        peer, floor = best_peer(runs, model), _floor(runs, model)
        rows = {r["label"]: r for r in _rows(runs, model) if r["status"] == "ok"}
        for label in HIDDENJAX:
            if peer and label in rows:
                ratios[label].append((rows[label]["ess_per_s"] / peer["ess_per_s"], model))
        warm, cold = rows.get(HIDDENJAX[1]), rows.get(HIDDENJAX[0])
        if warm and warm.get("start_s") is not None:
            worst_start = max(worst_start or (0.0, ""), (warm["start_s"], model))
        per = cold and cold.get("s_per_grad")
        if per and floor:
            worst_grad = max(worst_grad or (0.0, ""), (per / floor["loop_floor_s"], model))

    lines = ["| target | measured | |", "|---|---|---|"]
    ours = [r for r in runs if r["sampler"] == "hiddenjax"]
    failed = sorted({r["model"] for r in ours if r["status"] != "ok"})
    if ours:
        ran = "fails on " + ", ".join(failed) if failed else "all ran"
        lines.append(f"| hiddenjax samples every model | {ran} | {mark(not failed)} |")
    for label in HIDDENJAX:
        if ratios[label]:
            low, model = min(ratios[label])
            mean = _geomean([r for r, _ in ratios[label]])
            lines.append(f"| {label}: ESS/s ≥ 2× best peer on every model | lowest "
                         f"{low:.2f}× ({model}) | {mark(low >= 2)} |")
            lines.append(f"| {label}: geometric mean ≥ 2.5× | {mean:.2f}× "
                         f"| {mark(mean >= 2.5)} |")
    if worst_grad:
        lines.append(f"| time per gradient ≤ 1.15× the in-loop floor | worst "
                     f"{worst_grad[0]:.2f}× ({worst_grad[1]}) | {mark(worst_grad[0] <= 1.15)} |")
    if worst_start:
        lines.append(f"| warm start < 1 s | worst {worst_start[0]:.2f} s ({worst_start[1]}) "
                     f"| {mark(worst_start[0] < 1)} |")
    return lines if len(lines) > 2 else []


def phase_table(runs: list[dict]) -> list[str]:
    """Seconds per internal step of ``hj.sample``, cold and warm, where they were timed."""
    rows = [r for r in runs
            if r["sampler"] == "hiddenjax" and r["status"] == "ok" and r.get("phases")]
    if not rows:
        return []
    phases = list(dict.fromkeys(p for r in rows for p in r["phases"]))
    lines = ["| model | run | wall (s) | " + " | ".join(phases) + " |",
             "|" + "---|" * (3 + len(phases))]
    for model in _order(rows):
        for r in _rows(rows, model):
            cells = [_fmt(r["phases"].get(p)) for p in phases]
            lines.append(f"| {model} | {r['label']} | {_fmt(r['wall_s'])} | "
                         + " | ".join(cells) + " |")
    return lines


def floor_table(runs: list[dict]) -> list[str]:
    lines = ["| model | dimension | bare jitted value-and-grad call (µs) | in-loop floor (µs) "
             "| lowering |", "|---|---|---|---|---|"]
    for model in _order(runs):
        floor = next((r for r in runs if r["model"] == model and r["label"] == "floor"), None)
        if floor is None:
            continue
        if floor["status"] != "ok":
            lines.append(f"| {model} | failed: {floor['error']} | | | |")
            continue
        lines.append(f"| {model} | {floor['dim']} | {_fmt(floor['bare_call_s'] * 1e6, 2)} | "
                     f"{_fmt(floor['loop_floor_s'] * 1e6, 3)} | {floor['floor_source']} |")
    return lines


def _merged_sentence(merged: dict | None, date: str) -> str:
    """Which rows a ``--merge`` run measured, and when the others were."""
    if not merged:
        return ""
    return (f" **Merged table** (`--merge`): {', '.join(merged['samplers'])} on "
            f"{', '.join(merged['models'])} measured {date}; every other row comes from the "
            f"run of {merged['earlier']} on the same machine.")


def markdown(results: dict) -> str:
    runs, shape, info = results["runs"], results["config"]["shape"], results["machine"]
    versions = ", ".join(f"{k} {v}" for k, v in info["versions"].items() if v)
    failures = [r for r in runs if r["status"] != "ok"]
    parts = [
        "# Benchmarks",
        "",
        f"{shape['chains']} chains × ({shape['tune']} tune + {shape['draws']} draws), "
        f"seed {results['config']['seed']}, each (model, sampler) pair in a fresh process. "
        f"Measured {info['date']} on {info['cpu_count']} CPU cores ({info['platform']}); "
        f"{versions}.",
        "",
        "Generated by `python -m benchmarks.run` (see `benchmarks/README.md` for how each "
        "number is measured). Raw numbers: `results.json`."
        + (" PyMC rows ran after a throwaway run that filled PyTensor's on-disk C cache."
           if results["config"].get("pymc_primed") else "")
        + _merged_sentence(results["config"].get("merged"), info["date"]),
        "",
        "## hiddenjax against the best peer",
        "",
        *summary_table(runs),
        "",
        *(["## Targets (issue 8)", "", *targets(runs), ""] if targets(runs) else []),
        "## All pairs",
        "",
        *main_table(runs),
        "",
        "Ratios are against the same run's numbers. *start* is wall time outside the sampling "
        "loop (model reading, compilation or cache loading, initial points, result building). "
        "*µs per grad* is in-loop seconds × busy cores ÷ all gradient evaluations (warmup "
        "included); ≈ marks warmup gradients extrapolated from the kept draws because the tool "
        "does not return warmup statistics. Peak RSS is the worker's own, plus its largest "
        "child times the number of worker processes where the tool starts a pool.",
        "",
        *(["## Where hiddenjax's wall time goes", "",
            "Seconds in each internal step of `hj.sample` (the loop is *run chains* minus the "
            "chunk compile).", "", *phase_table(runs), ""] if phase_table(runs) else []),
        "## Gradient floors",
        "",
        *floor_table(runs),
        "",
    ]
    if failures:
        parts += ["## Failures", "", "| model | sampler | error |", "|---|---|---|"]
        parts += [f"| {r['model']} | {r['label']} | {r['error']} |" for r in failures]
        parts.append("")
    parts += ["## Plots", ""] + [f"![{title}]({name}.png)" for name, (title, _) in PLOTS.items()]
    parts.append("")
    return "\n".join(parts)


def _bars(ax, runs: list[dict], value, log: bool = True) -> None:
    import numpy as np

    models = _order(runs)
    labels = [label for label in LABELS if any(r["label"] == label for r in runs)]
    width = 0.8 / max(len(labels), 1)
    for i, label in enumerate(labels):
        heights, where = [], np.arange(len(models)) + (i - (len(labels) - 1) / 2) * width
        for x, model in zip(where, models):
            r = next((r for r in runs if r["model"] == model and r["label"] == label), None)
            v = value(r, model) if r and r["status"] == "ok" else None
            heights.append(np.nan if v is None else v)
            if r and r["status"] != "ok":  # a failed pair is marked, never just left out
                ax.text(x, 0.01, "✗", transform=ax.get_xaxis_transform(), ha="center",
                        va="bottom", color=COLORS.get(label, "black"), fontsize=9)
        ax.bar(where, heights, width, label=label, color=COLORS.get(label))
    ax.set_xticks(np.arange(len(models)), models, rotation=30, ha="right")
    if log:
        ax.set_yscale("log")
    ax.legend(fontsize="small", title="✗ = failed", title_fontsize="small")
    ax.grid(axis="y", alpha=0.3)


def _per_floor(runs):
    def value(r, model):
        floor = _floor(runs, model)
        return _ratio(r.get("s_per_grad"), floor and floor["loop_floor_s"])
    return value


PLOTS = {
    "ess_per_second": ("Minimum bulk ESS per second of wall time (compile included)",
                       lambda runs: lambda r, m: r["ess_per_s"]),
    "wall_time": ("Wall time of the sampling call, seconds (compile included)",
                  lambda runs: lambda r, m: r["wall_s"]),
    "start_time": ("Seconds outside the sampling loop (compile or cache load, setup)",
                   lambda runs: lambda r, m: r.get("start_s")),
    "gradient_overhead": ("In-sampler time per gradient ÷ in-loop floor (1 = no overhead)",
                          _per_floor),
    "ess_per_1000_gradients": ("Minimum bulk ESS per 1000 post-warmup gradient evaluations",
                               lambda runs: lambda r, m: r.get("ess_per_1000_grads")),
}


def write_plots(results: dict, out: Path) -> list[Path]:
    """One PNG per entry of ``PLOTS``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs, written = results["runs"], []
    for name, (title, make_value) in PLOTS.items():
        fig, ax = plt.subplots(figsize=(10, 4.8), layout="constrained")
        _bars(ax, runs, make_value(runs))
        if name == "gradient_overhead":
            ax.axhline(1.0, color="black", lw=0.8)
        ax.set_title(title)
        path = out / f"{name}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def render(results: dict, out: Path, plots: bool = True) -> None:
    """Write ``README.md`` (and the plots) for ``results`` into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "README.md").write_text(markdown(results))
    if plots:
        write_plots(results, out)


if __name__ == "__main__":
    source = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/benchmarks/results.json")
    render(json.loads(source.read_text()), source.parent)
    print(f"wrote {source.parent / 'README.md'} and plots")
