"""`hpc-hpo plot`: one page of pictures of an experiment, from its journal, frozen config and trial directories.

Gathering (`gather`, PlotData) is plain Python and separate from drawing (`draw`), which needs matplotlib,
the optional extra `hpc-hpo[plot]`, imported only there and only with the non-interactive Agg canvas. The
journal is read without the driver's lock (a torn last line is skipped), so a running experiment plots too:
its open runs are drawn up to now.
"""
from __future__ import annotations

import base64
import html
import io
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from .errors import HpoError
from .journal import iter_events
from .state import ExperimentState

PLOT_EXTRA = "pip install 'hpc-hpo[plot]'"
SUFFIXES = (".png", ".svg", ".html")
DEFAULT_NAME = "plot.png"
# The events that end a run of a trial (its process is over, whatever the outcome).
RUN_END_EVENTS = ("trial_ended", "trial_paused", "trial_interrupted", "trial_retry")
COLUMNS = 3  # small panels per row; wide panels (the node timeline) take a row of their own
PANEL_INCHES, DPI = 5.0, 100  # each small panel is 5 x 4 inches: a 3-column page is 1500 pixels wide
STATE_COLOURS = {"completed": "tab:green", "finished": "tab:olive", "stopped": "tab:red", "paused": "tab:orange",
                 "running": "tab:blue", "pending": "tab:gray", "interrupted": "tab:purple", "failed": "black",
                 "cancelled": "tab:brown"}


@dataclass(frozen=True)
class Curve:
    trial_id: str
    resources: list[float]
    values: list[float]
    state: str  # the trial's state now: what the scheduler last decided for it, or how its process ended


@dataclass(frozen=True)
class RunSpan:
    """One run (process, step or job) of a trial, from the journal: unix seconds; end None while it runs."""
    trial_id: str
    run: int
    start: float
    end: float | None


@dataclass(frozen=True)
class NodeSpan:
    node: str
    trial_id: str
    start: float  # seconds since the experiment was created
    end: float


@dataclass(frozen=True)
class Pareto:
    names: tuple[str, str]
    points: list[tuple[float, float]]
    front: list[tuple[float, float]]  # the non-dominated points, ordered along the first metric
    label: str = "reports"  # what the gray points are


@dataclass
class PlotData:
    name: str
    metric: str
    mode: str
    resource: str
    running: bool
    curves: list[Curve] = field(default_factory=list)
    levels: list[float] = field(default_factory=list)  # rung levels (the last one is the maximum)
    best_so_far: list[tuple[float, float]] = field(default_factory=list)  # (seconds since creation, best)
    rung_counts: list[tuple[float, int]] = field(default_factory=list)  # (level, trials that reached it)
    timeline: list[NodeSpan] = field(default_factory=list)
    pareto: Pareto | None = None
    params: dict[str, list[tuple[Any, float]]] = field(default_factory=dict)  # name -> (value, trial's best)


# --------------------------------------------------------------------------- gathering (no matplotlib)


def gather(directory: Path, now: float | None = None) -> PlotData:
    """Everything the page shows, read from the experiment directory (works while the driver runs)."""
    state, runs = read_journal(iter_events(directory / "journal.jsonl"))
    config = frozen_config(directory)
    origin = state.created_at or 0.0
    levels = rung_levels_of(config)
    return PlotData(
        name=state.name, metric=state.metric, mode=state.mode, resource=state.resource, running=not state.ended,
        curves=curves(state), levels=levels, best_so_far=best_so_far(state, origin),
        rung_counts=rung_counts(state, levels),
        timeline=timeline(runs, directory / "trials", origin, time.time() if now is None else now),
        pareto=pareto(state, component_modes(config, state)), params=param_points(state))


def read_journal(events: Iterable[dict[str, Any]]) -> tuple[ExperimentState, list[RunSpan]]:
    """The folded state, and each trial run's start and end as the journal says (the fold keeps neither)."""
    state = ExperimentState()
    open_runs: dict[str, tuple[int, float]] = {}
    spans: list[RunSpan] = []
    for event in events:
        if not state.apply(event):  # damaged or repeated: the fold left it out, and so do the runs
            continue
        kind, trial_id = event["type"], event.get("trial_id")
        if kind == "trial_started":
            open_runs[trial_id] = (state.trials[trial_id].runs, event["t"])
        elif kind in RUN_END_EVENTS and trial_id in open_runs:
            run, start = open_runs.pop(trial_id)
            spans.append(RunSpan(trial_id, run, start, event["t"]))
    spans += [RunSpan(trial_id, run, start, None) for trial_id, (run, start) in open_runs.items()]
    return state, spans


def frozen_config(directory: Path) -> Any:
    """The experiment's own config (experiment.yaml), or None if it cannot be read: the plot then goes
    without what only the config says (rung levels, combined metrics' modes)."""
    from .config import EXPERIMENT_FILE, load_config
    try:
        return load_config(directory / EXPERIMENT_FILE, experiment_dir=str(directory))
    except HpoError:
        return None


def rung_levels_of(config: Any) -> list[float]:
    """The resource levels where the scheduler decides: rungs for the ASHA family, PBT's perturbation
    points, only the maximum for FIFO."""
    if config is None:
        return []
    from .schedulers.base import rung_levels
    spec, top = config.scheduler, float(config.resource.max)
    if spec.type == "fifo":
        return [top]
    if spec.type == "pbt":
        step = float(spec.perturbation_interval)
        return [step * k for k in range(1, int(top // step) + 1) if step * k < top] + [top]
    return [float(level) for level in rung_levels(top, spec.grace_period, spec.reduction_factor, spec.rung_levels)]


def curves(state: ExperimentState) -> list[Curve]:
    """Each reporting trial's finite values (a diverged trial's inf or NaN has no place on an axis)."""
    by_trial: dict[str, tuple[list[float], list[float]]] = {}
    for row in state.rows:
        if not math.isfinite(row.value):
            continue
        resources, values = by_trial.setdefault(row.trial_id, ([], []))
        resources.append(float(row.resource))
        values.append(row.value)
    return [Curve(trial_id, resources, values, state.trials[trial_id].state)
            for trial_id, (resources, values) in by_trial.items()]


def best_so_far(state: ExperimentState, origin: float) -> list[tuple[float, float]]:
    """A point at each strict improvement of the best value, and one at the last report (the step's end)."""
    points: list[tuple[float, float]] = []
    best: float | None = None
    for row in state.rows:
        if row.t is None:
            continue
        if state.is_better(row.value, best) and math.isfinite(row.value):
            best = row.value
            points.append((row.t - origin, best))
    last = max((row.t for row in state.rows if row.t is not None), default=None)
    if best is not None and last is not None and last - origin > points[-1][0]:
        points.append((last - origin, best))
    return points


def rung_counts(state: ExperimentState, levels: list[float]) -> list[tuple[float, int]]:
    """How many trials reported at or beyond each level."""
    reached = [trial.last_resource for trial in state.trials.values() if trial.last_resource is not None]
    return [(level, sum(1 for resource in reached if resource >= level - 1e-9)) for level in levels]


def timeline(runs: list[RunSpan], trials_dir: Path, origin: float, now: float) -> list[NodeSpan]:
    """Which trial ran on which node when: runs inside an allocation (Slurm steps, PBS) leave the nodes they
    hold in <tag>.nodes (and a packed step its node in <tag>.share), trial jobs (sbatch, qsub) the nodes they
    got, written by the job script when it starts. Local runs, and jobs of templates without {{ nodes_file }},
    leave none."""
    spans = []
    for run in runs:
        end = now if run.end is None else run.end
        for node in run_nodes(trials_dir / run.trial_id, run.trial_id, run.run):
            spans.append(NodeSpan(node, run.trial_id, run.start - origin, max(end, run.start) - origin))
    return spans


def run_nodes(trial_dir: Path, trial_id: str, run: int) -> list[str]:
    """The nodes one run held, from the files its tag names. A tag ends '-<trial>-<run>' (older drivers) or
    holds '-<trial>-<run>-' (then the experiment's id)."""
    if not trial_id.isdigit():  # a journal that names a path, not a trial: read nothing
        return []
    try:
        names = sorted(os.listdir(trial_dir))
    except OSError:
        return []
    nodes: list[str] = []
    for name in names:
        tag, _, suffix = name.rpartition(".")
        if suffix not in ("nodes", "share") or not _tag_of_run(tag, trial_id, run):
            continue
        for node in _nodes_in(trial_dir / name, suffix):
            if node not in nodes:
                nodes.append(node)
    return nodes


def _tag_of_run(tag: str, trial_id: str, run: int) -> bool:
    return tag.endswith(f"-{trial_id}-{run}") or f"-{trial_id}-{run}-" in tag


def _nodes_in(path: Path, suffix: str) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return []
    if suffix == "nodes":
        return text.split()
    try:
        node = json.loads(text.splitlines()[0]).get("node")
    except (ValueError, IndexError, AttributeError):
        return []
    return [node] if isinstance(node, str) and node else []


def component_modes(config: Any, state: ExperimentState) -> dict[str, str]:
    """Each combined metric's own direction, from the config; the objective's when the config is unreadable."""
    modes = {name: state.mode for name in state.combined}
    if config is not None:
        modes.update({c.name: c.mode for c in config.metric.components})
    return modes


def pareto(state: ExperimentState, modes: dict[str, str]) -> Pareto | None:
    """The first two combined metrics of every report, and the reports no other beats in both; with several
    objectives, the first two objectives of the trials at the highest resource (objective_front). None when
    the objective is a single metric."""
    if state.objectives:
        return objective_front(state)
    if len(state.combined) < 2:
        return None
    names = (state.combined[0], state.combined[1])
    points = []
    for row in state.rows:
        x, y = ((row.components or {}).get(name) for name in names)
        if isinstance(x, (int, float)) and isinstance(y, (int, float)) and math.isfinite(x) and math.isfinite(y):
            points.append((float(x), float(y)))
    return Pareto(names, points, pareto_front(points, modes.get(names[0], "min"), modes.get(names[1], "min")))


def objective_front(state: ExperimentState) -> Pareto:
    """Several objectives: each trial that reported at the highest resource any trial reported at, at its
    report there (what `hpc-hpo best` ranks), and their front in the first two objectives (with exactly two,
    the front `best` prints)."""
    from .results import objective_values

    names = (state.objectives[0], state.objectives[1])
    last = {row.trial_id: row for row in state.rows}  # each trial's furthest report
    top = max((row.resource for row in last.values()), default=None)
    points = []
    for row in last.values():
        x, y = objective_values(state, row)[:2]
        if row.resource == top and x is not None and y is not None and math.isfinite(x) and math.isfinite(y):
            points.append((x, y))
    front = pareto_front(points, state.modes[0], state.modes[1])
    return Pareto(names, points, front, label=f"trials at {state.resource} {top:g}" if top is not None else "trials")


def pareto_front(points: list[tuple[float, float]], mode_x: str, mode_y: str) -> list[tuple[float, float]]:
    """Non-dominated points: sorted along x from best to worst, each kept if its y beats every y before it."""
    sign_x, sign_y = (1 if mode_x == "min" else -1), (1 if mode_y == "min" else -1)
    front: list[tuple[float, float]] = []
    for x, y in sorted(set(points), key=lambda p: (sign_x * p[0], sign_y * p[1])):
        if not front or sign_y * y < sign_y * front[-1][1]:
            front.append((x, y))
    return front


def param_points(state: ExperimentState) -> dict[str, list[tuple[Any, float]]]:
    """Per hyperparameter: (value, the trial's best metric) for each trial that reported. A parameter with
    one value over all trials (a constant) says nothing and is left out."""
    result = {}
    for name in state.param_names:
        points = [(trial.config[name], trial.best_value) for trial in state.trials.values()
                  if name in trial.config and trial.best_value is not None and math.isfinite(trial.best_value)]
        if len({json.dumps(value, sort_keys=True, default=str) for value, _ in points}) > 1:
            result[name] = points
    return result


# --------------------------------------------------------------------------- drawing (matplotlib, Agg)


def check_output(path: Path) -> None:
    if path.suffix.lower() not in SUFFIXES:
        raise HpoError(f"-o '{path}': the file name must end in {', '.join(SUFFIXES)} (the format follows it); "
                       f"e.g. -o {path.with_suffix('.png').name}")


def require_matplotlib() -> Any:
    """The matplotlib module, or one line naming the extra that installs it."""
    try:
        import matplotlib
    except ImportError:
        raise HpoError(f"plotting needs matplotlib, which is not installed: {PLOT_EXTRA}") from None
    return matplotlib


def plot_experiment(directory: Path, output: Path | None = None) -> Path:
    """Gather and draw; returns the file written (default <experiment>/plot.png)."""
    path = output if output is not None else directory / DEFAULT_NAME
    check_output(path)
    require_matplotlib()
    draw(gather(directory), path)
    return path


Panel = tuple[str, Callable[[Any, PlotData], None], bool]  # title, drawing function, takes a whole row


def panels(data: PlotData) -> list[Panel]:
    """The page's panels in order: the same list decides the layout, so a test can count them."""
    result: list[Panel] = [("Learning curves", _draw_curves, False), ("Best so far", _draw_best, False),
                           ("Trials per rung", _draw_rungs, False)]
    if data.pareto is not None:
        result.append(("Pareto front", _draw_pareto, False))
    for name in data.params:
        result.append((f"Parameter {name}", _param_drawer(name), False))
    if data.timeline:
        result.append(("Nodes", _draw_timeline, True))
    return result


def page_rows(items: list[Panel]) -> int:
    small = sum(1 for _, _, wide in items if not wide)
    return math.ceil(small / COLUMNS) + sum(1 for _, _, wide in items if wide)


def draw(data: PlotData, path: Path) -> None:
    matplotlib = require_matplotlib()
    figure = _figure(data)
    suffix = path.suffix.lower()
    try:
        if suffix == ".html":
            path.write_text(_html(data, figure), encoding="utf-8")
        elif suffix == ".svg":
            with matplotlib.rc_context({"svg.fonttype": "none"}):  # text stays text: searchable, and a smaller file
                figure.savefig(path, format="svg")
        else:
            figure.savefig(path, format="png", dpi=DPI)
    except OSError as exc:
        raise HpoError(f"cannot write '{path}': {exc.strerror}") from None


def _figure(data: PlotData) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure  # a Figure without pyplot: no global state, no GUI backend

    items = panels(data)
    rows = page_rows(items)
    figure = Figure(figsize=(PANEL_INCHES * COLUMNS, 4.0 * rows), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)  # the non-interactive Agg canvas, whatever MPLBACKEND or matplotlibrc say
    figure.suptitle(_headline(data))
    grid = figure.add_gridspec(rows, COLUMNS)
    row, column = 0, 0
    for title, drawer, wide in items:
        if wide:
            row, column = (row + 1, 0) if column else (row, 0)
            axes = figure.add_subplot(grid[row, :])
            row += 1
        else:
            axes = figure.add_subplot(grid[row, column])
            row, column = (row + 1, 0) if column == COLUMNS - 1 else (row, column + 1)
        axes.set_title(title)
        drawer(axes, data)
    return figure


def _headline(data: PlotData) -> str:
    trials = len(data.curves)
    status = "running" if data.running else "ended"
    return f"experiment {data.name} ({status}): {trials} trials reported, {data.metric} ({data.mode})"


def _nothing_yet(axes: Any, what: str = "no reports yet") -> None:
    axes.text(0.5, 0.5, what, ha="center", va="center", transform=axes.transAxes, color="gray")


def _draw_curves(axes: Any, data: PlotData) -> None:
    if not data.curves:
        return _nothing_yet(axes)
    for curve in data.curves:
        # A trial stopped at its first report is a single point: a bigger marker keeps it visible.
        axes.plot(curve.resources, curve.values, color=STATE_COLOURS.get(curve.state, "gray"), alpha=0.7,
                  linewidth=1, marker=".", markersize=3 if len(curve.values) > 1 else 6)
    for level in data.levels:
        axes.axvline(level, color="gray", linestyle=":", linewidth=0.8)
    from matplotlib.lines import Line2D
    shown = sorted({curve.state for curve in data.curves})
    axes.legend([Line2D([], [], color=STATE_COLOURS.get(s, "gray")) for s in shown], shown, fontsize="small")
    axes.set_xlabel(data.resource + (" (dotted: rung levels)" if data.levels else ""))
    axes.set_ylabel(data.metric)


def _draw_best(axes: Any, data: PlotData) -> None:
    if not data.best_so_far:
        return _nothing_yet(axes)
    seconds, values = zip(*data.best_so_far)
    axes.step(seconds, values, where="post", color="tab:blue")
    axes.plot(seconds, values, "o", color="tab:blue", markersize=3)
    axes.set_xlabel("seconds since the experiment was created")
    axes.set_ylabel(f"best {data.metric}")


def _draw_rungs(axes: Any, data: PlotData) -> None:
    if not data.rung_counts:
        return _nothing_yet(axes, "no rung levels (config unreadable)")
    labels = [f"{level:g}" for level, _ in data.rung_counts]
    bars = axes.bar(labels, [count for _, count in data.rung_counts], color="tab:blue")
    axes.bar_label(bars)
    axes.set_xlabel(f"{data.resource} level")
    axes.set_ylabel("trials that reached it")


def _draw_pareto(axes: Any, data: PlotData) -> None:
    assert data.pareto is not None
    pareto = data.pareto
    if not pareto.points:
        return _nothing_yet(axes)
    axes.scatter(*zip(*pareto.points), s=8, color="lightgray", label=pareto.label)
    axes.plot(*zip(*pareto.front), "o-", color="tab:red", markersize=4, drawstyle="steps-post", label="front")
    axes.legend(fontsize="small")
    axes.set_xlabel(pareto.names[0])
    axes.set_ylabel(pareto.names[1])


def _param_drawer(name: str) -> Callable[[Any, PlotData], None]:
    def drawer(axes: Any, data: PlotData) -> None:
        values, metrics = zip(*data.params[name])
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            axes.scatter(values, metrics, s=12)
            if min(values) > 0 and max(values) / min(values) > 100:  # a log-scaled range, e.g. a learning rate
                axes.set_xscale("log")
        else:  # choices: one column per value, in order of first appearance
            labels = list(dict.fromkeys(json.dumps(v, default=str) if not isinstance(v, str) else v for v in values))
            positions = [labels.index(json.dumps(v, default=str) if not isinstance(v, str) else v) for v in values]
            axes.scatter(positions, metrics, s=12)
            axes.set_xticks(range(len(labels)), labels)
            axes.set_xlim(-0.5, len(labels) - 0.5)
        axes.set_xlabel(name)
        axes.set_ylabel(f"best {data.metric} of the trial")
    return drawer


def _draw_timeline(axes: Any, data: PlotData) -> None:
    nodes = sorted({span.node for span in data.timeline})
    states = {curve.trial_id: curve.state for curve in data.curves}  # the curves' colours: stopped runs stand out
    for row, node in enumerate(nodes):
        spans = [span for span in data.timeline if span.node == node]
        axes.broken_barh([(s.start, s.end - s.start) for s in spans], (row - 0.4, 0.8),
                         facecolors=[STATE_COLOURS.get(states.get(s.trial_id, ""), "gray") for s in spans],
                         edgecolor="white", alpha=0.8)
        for span in spans:
            axes.text((span.start + span.end) / 2, row, span.trial_id, ha="center", va="center", fontsize=6)
    axes.set_yticks(range(len(nodes)), nodes)
    axes.set_xlabel("seconds since the experiment was created (gaps: the node was idle)")
    axes.set_title(f"Nodes: busy {100 * busy_share(data.timeline):.0f}% of node time")


def busy_share(spans: list[NodeSpan]) -> float:
    """The share of node time some run held, from the first run's start to the last one's end."""
    if not spans:
        return 0.0
    first, last = min(s.start for s in spans), max(s.end for s in spans)
    nodes = {s.node for s in spans}
    if last <= first:
        return 0.0
    busy = sum(_union_length([(s.start, s.end) for s in spans if s.node == node]) for node in nodes)
    return busy / ((last - first) * len(nodes))


def _union_length(intervals: list[tuple[float, float]]) -> float:
    total, reach = 0.0, -math.inf
    for start, end in sorted(intervals):
        start = max(start, reach)
        if end > start:
            total += end - start
            reach = end
    return total


def _html(data: PlotData, figure: Any) -> str:
    """A self-contained page: the PNG inline as base64, the panel titles as text (for search and screen readers)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
    titles = "".join(f"<li>{html.escape(axes.get_title())}</li>" for axes in figure.axes)
    headline = html.escape(_headline(data))
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{headline}</title></head>\n<body>\n"
            f"<h1>{headline}</h1>\n<ul>{titles}</ul>\n"
            f"<img alt=\"{headline}\" src=\"data:image/png;base64,{encoded}\">\n</body></html>\n")
