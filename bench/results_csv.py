"""Reading the CSVs of tileflash-bench and torch_sdpa.py (shared by plot.py and summarize.py)."""
import csv
import math


def read_rows(paths):
    """Rows of every CSV as dicts; lines starting with '#' (a recorded run's header comments) are skipped."""
    rows = []
    for path in paths:
        with open(path, newline="") as f:
            rows.extend(csv.DictReader(line for line in f if not line.startswith("#")))
    return rows


def number(text):
    """The cell as a float; NaN where it is empty or not a number (e.g. a run that ran out of memory)."""
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan
