"""Progress bars for long jobs: tqdm on stderr, shown only on a terminal.

In a pipe or a log file a bar would write a carriage-return update many times a second; there the scripts' log
lines are the progress. Every script takes --no-progress to hide the bar on a terminal too.
"""
from __future__ import annotations

import sys


def progress_bar(iterable=None, *, enabled: bool = True, **kwargs):
    """A tqdm bar over `iterable` (or a manual one with total=...), disabled unless `enabled` and stderr is a
    terminal. kwargs go to tqdm (desc, total, unit, initial, leave, ...)."""
    from tqdm import tqdm

    show = enabled and sys.stderr.isatty()
    return tqdm(iterable, disable=not show, file=sys.stderr, dynamic_ncols=True, **kwargs)
