"""The paper's figures from evaluated cells (crossvariety.report.paper), with matplotlib.

Two kinds, one panel per system, our values filled and the published ones hollow beside them:
- ``gap_chart``: per pair, the high-resource queries' value and the variety's (and the variety
  translated back, when present), joined by a line: the gap (RQ1, the FLORES main job);
- ``transfer_chart``: per query set, the original model's value -> the fine-tuned model's, an
  arrow (RQ2, RQ3);
- ``script_chart``: per model, native vs romanised queries joined by a line (the follow-up,
  *Lost in Transliteration*).
Each scatter carries a label ("ours: variety", "paper: original", ...; just "variety queries"
when the figure has no published value) so that a figure can be read back from its objects.
The y axis starts at 0 (a gap drawn from 0.35 looks larger than it is); a variety value that
differs from its high-resource one (corrected p < alpha) is marked † above its point.
"""
import math

import matplotlib

matplotlib.use("Agg")  # files only: no display needed
import matplotlib.pyplot as plt  # noqa: E402

from .paper import published_value  # noqa: E402
from ..runs import atomic_path  # noqa: E402

ROLES = {  # marker and colour of each kind of query set / model
    "highres": ("o", "tab:blue", "high-resource queries"),
    "variety": ("v", "tab:red", "variety queries"),
    "translated": ("s", "tab:green", "variety translated back"),
    "original": ("o", "tab:gray", "original model"),
    "fine-tuned": ("^", "tab:purple", "fine-tuned model"),
    "native": ("o", "tab:blue", "native-script queries"),
    "romanised": ("v", "tab:red", "romanised queries"),
}
OFFSET = 0.18  # published markers sit this far right of ours


def _panels(cells, key):
    """{panel title: [cells]} in first-seen order."""
    panels = {}
    for cell in cells:
        panels.setdefault(key(cell), []).append(cell)
    return panels


def _figure(count, title):
    columns = min(count, 2)
    rows = math.ceil(count / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(6.5 * columns, 3.6 * rows), squeeze=False)
    for ax in axes.flat[count:]:
        ax.remove()
    fig.suptitle(title)
    return fig, list(axes.flat[:count])


def _scatter(ax, xs, ys, role, source, alone=False):
    """``alone``: no published series in the figure, so "ours" would contrast with nothing."""
    marker, colour, name = ROLES[role]
    points = [(x, y) for x, y in zip(xs, ys) if y is not None and not math.isnan(y)]
    if not points:
        return
    x, y = zip(*points)
    if source == "ours":
        ax.scatter(x, y, marker=marker, color=colour, label=name if alone else f"ours: {name}",
                   zorder=3)
    else:
        ax.scatter(x, y, marker=marker, facecolors="none", edgecolors=colour,
                   label=f"paper: {name}", zorder=3)


def _value(cell, measure, source):
    if source == "ours":
        return cell.values.get(measure, (math.nan,))[0]
    value = published_value(cell, measure)
    return math.nan if value is None else value


def _published_in(cells, measure):
    return any(not math.isnan(_value(c, measure, "paper")) for c in cells)


def _significant(cell, measure, alpha):
    p = cell.values.get(measure, (math.nan, math.nan))[1]
    return not math.isnan(p) and p < alpha


def gap_chart(cells, measure, title, alpha=0.05):
    """High-resource vs variety (vs translated) per pair; one panel per model."""
    panels = _panels(cells, lambda c: c.labels["model"])
    fig, axes = _figure(len(panels), title)
    alone = not _published_in(cells, measure)
    for ax, (model, members) in zip(axes, panels.items()):
        pair_names = list(dict.fromkeys(c.labels["pair"] for c in members))
        for source, offset in (("ours", 0.0), ("paper", OFFSET)):
            for role in ("highres", "variety", "translated"):
                chosen = [c for c in members if c.role == role]
                _scatter(ax, [pair_names.index(c.labels["pair"]) + offset for c in chosen],
                         [_value(c, measure, source) for c in chosen], role, source, alone)
            for i, name in enumerate(pair_names):  # the gap: a line from high-resource down
                ys = [_value(c, measure, source) for c in members
                      if c.labels["pair"] == name and not math.isnan(_value(c, measure, source))]
                if len(ys) > 1:
                    ax.plot([i + offset] * 2, [min(ys), max(ys)], color="lightgray", zorder=1,
                            linestyle="-" if source == "ours" else ":")
        for cell in members:  # † above each of our values that differs from its baseline
            if cell.baseline is not None and _significant(cell, measure, alpha):
                ax.annotate("†", (pair_names.index(cell.labels["pair"]),
                                  _value(cell, measure, "ours")), xytext=(5, 2),
                            textcoords="offset points", fontsize="small")
        ax.set_xticks(range(len(pair_names)), pair_names)
        ax.set_title(model)
        ax.set_ylabel(measure)
        ax.set_ylim(0, 1.05)  # the measures are fractions: the gap at its true scale
        ax.legend(fontsize="small", title=f"† = differs from high-resource (p < {alpha:g})",
                  title_fontsize="x-small")
    fig.tight_layout()
    return fig


def transfer_chart(cells, measure, title):
    """Original -> fine-tuned model per query set (x: pair and query language); one panel per
    system. Arrows join each original value to the fine-tuned model's."""
    originals = [c for c in cells if c.role == "original"]
    panels = _panels(originals, lambda c: c.labels["model"])
    fig, axes = _figure(len(panels), title)
    alone = not _published_in(cells, measure)
    for ax, (model, members) in zip(axes, panels.items()):
        tuned = [c for c in cells if c.role == "fine-tuned" and cells[c.baseline] in members]
        ticks = list(dict.fromkeys(f"{c.labels['pair']}: {c.queries}" for c in members))
        for source, offset in (("ours", 0.0), ("paper", OFFSET)):
            for role, chosen in (("original", members), ("fine-tuned", tuned)):
                _scatter(ax, [ticks.index(f"{c.labels['pair']}: {c.queries}") + offset
                              for c in chosen], [_value(c, measure, source) for c in chosen],
                         role, source, alone)
            for cell in tuned:
                start, end = _value(cells[cell.baseline], measure, source), \
                    _value(cell, measure, source)
                if not (math.isnan(start) or math.isnan(end)):
                    x = ticks.index(f"{cell.labels['pair']}: {cell.queries}") + offset
                    ax.annotate("", (x, end), (x, start), arrowprops={
                        "arrowstyle": "->", "color": "black" if source == "ours" else "gray",
                        "linestyle": "-" if source == "ours" else ":"})
        ax.set_xticks(range(len(ticks)), ticks, rotation=30, ha="right", fontsize="small")
        ax.set_title(f"{model} -> {', '.join(dict.fromkeys(c.labels['model'] for c in tuned))}")
        ax.set_ylabel(measure)
        ax.set_ylim(0, 1.05)
        ax.legend(fontsize="small")
    fig.tight_layout()
    return fig


def script_chart(cells, measure, title, alpha=0.05):
    """Native vs romanised queries per model (x: the rows of a follow-up table), a line
    between the two; † above a value that differs from the original model's on the same
    queries (corrected p < alpha)."""
    models = list(dict.fromkeys(c.labels["model"] for c in cells))
    fig, (ax,) = _figure(1, title)
    fig.set_size_inches(max(6.5, 0.75 * len(models) + 2), 4.6)
    alone = not _published_in(cells, measure)
    for source, offset in (("ours", 0.0), ("paper", OFFSET)):
        for script in dict.fromkeys(c.labels["script"] for c in cells):
            chosen = [c for c in cells if c.labels["script"] == script]
            _scatter(ax, [models.index(c.labels["model"]) + offset for c in chosen],
                     [_value(c, measure, source) for c in chosen], script, source, alone)
        for i, model in enumerate(models):
            ys = [_value(c, measure, source) for c in cells if c.labels["model"] == model]
            ys = [y for y in ys if not math.isnan(y)]
            if len(ys) > 1:
                ax.plot([i + offset] * 2, [min(ys), max(ys)], color="lightgray", zorder=1,
                        linestyle="-" if source == "ours" else ":")
    for cell in cells:
        if cell.baseline is not None and _significant(cell, measure, alpha):
            ax.annotate("†", (models.index(cell.labels["model"]), _value(cell, measure, "ours")),
                        xytext=(5, 2), textcoords="offset points", fontsize="small")
    ax.set_xticks(range(len(models)), models, rotation=35, ha="right", fontsize="small")
    ax.set_ylabel(measure)
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize="small", title=f"† = differs from the original model (p < {alpha:g})",
              title_fontsize="x-small")
    fig.tight_layout()
    return fig


def save(fig, stem):
    """Write ``stem``.png and ``stem``.pdf, atomically; return their paths."""
    written = []
    for suffix in (".png", ".pdf"):
        path = stem.with_name(stem.name + suffix)
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=150)
        written.append(path)
    plt.close(fig)
    return written
