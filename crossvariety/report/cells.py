"""A table cell: one run file (or a pool of them) judged by its topics' qrels, its published
value's key and the cell it is tested against (crossvariety.report.paper builds them)."""
from dataclasses import dataclass, field


@dataclass
class Cell:
    labels: dict  # the row's label columns, in order ({"pair": "ca-fr", "queries": "ca", ...})
    topics: str  # topics whose qrels judge the run (irds:mmarco/v2/fr/dev/small)
    run: str  # run file name
    model: str  # the model's name in the published numbers (bge-m3, mt5-lt-afdt, ...)
    queries: str  # the query set's language in the published numbers (ca, fr, dt)
    role: str  # highres, variety, translated, original or fine-tuned (for the figures)
    group: str  # cells whose significance tests are corrected together
    baseline: int | None = None  # the cell (index) this one is tested against
    values: dict = field(default_factory=dict)  # measure -> (ours, p-value)
    pool: tuple = ()  # ((topics, run file name), ...): the cell is these runs evaluated as one
    # topic set (``topics`` is then their pool_spec); qids kept apart by topic set


def run_names(cell):
    """The run files a cell reads: its own, or those of its pool."""
    return [run for _, run in cell.pool] if cell.pool else [cell.run]
