"""Progress bars for long cells: live in JupyterLab, one summary line in the saved notebook.

tqdm's notebook bar is a widget whose text fallback is its *first* state ("0%| | 0/80"):
that is what the book, which renders no widgets, would show. `progress_bar` displays
the bar under a display id and, when the work is done, replaces it with one line that
says what was done and how long it took, for the book and for a reopened notebook.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


def _in_kernel() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and hasattr(shell, "kernel")


@contextmanager
def progress_bar(
    total: float | None, desc: str, unit: str = "it", *, summary: str | None = None
) -> Iterator[Any]:
    """A tqdm bar to `update()`; in a notebook it ends as a summary line instead of a widget."""
    started = time.monotonic()
    if not _in_kernel():
        from tqdm import tqdm

        bar = tqdm(total=total, desc=desc, unit=unit)  # its last state stays: a summary
        try:
            yield bar
        finally:
            bar.close()
        return
    from IPython.display import display
    from tqdm.notebook import tqdm as notebook_tqdm

    bar = notebook_tqdm(total=total, desc=desc, unit=unit, display=False)
    handle = display(bar.container, display_id=True)
    try:
        yield bar
    finally:
        done = bar.n
        bar.close()
        line = summary or f"{desc}: {done:g} {unit} in {time.monotonic() - started:.1f} s"
        handle.update({"text/plain": line}, raw=True)


def wait(seconds: float, desc: str) -> None:
    """Sleep `seconds` (while background work runs) with a bar that counts them."""
    with progress_bar(seconds, desc, unit="s", summary=f"{desc}: waited {seconds:g} s") as bar:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            time.sleep(min(0.2, left))
            bar.n = round(seconds - max(deadline - time.monotonic(), 0.0), 1)
            bar.refresh()
