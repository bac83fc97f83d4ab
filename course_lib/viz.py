"""Plots and widgets in one house style.

* :func:`use_house_style` sets one look for every figure in the course.
* :func:`interactive` shows ipywidgets sliders in JupyterLab, and renders the
  default once, statically, under papermill, CI or the grader (where no
  browser is there to move a slider, and widget output would be lost).
* :func:`show_source` prints a course_lib function's source in the notebook,
  so a lesson explains the code it runs instead of pasting a copy.
"""

from __future__ import annotations

import inspect
import os
from typing import Any
from collections.abc import Callable

#: One palette for the course: ours is always blue, the reference always orange.
COLORS: dict[str, str] = {
    "ours": "#1f77b4",
    "reference": "#ff7f0e",
    "second_reference": "#2ca02c",
    "theory": "#7f7f7f",
    "bad": "#d62728",
}
#: Environment variable that forces static widgets (set by `make run`, the tests and the grader).
STATIC_ENV = "COURSE_STATIC_WIDGETS"


def use_house_style() -> None:
    """Apply the course's matplotlib style (readable sizes, light grid, no top/right spines)."""
    import matplotlib as mpl

    mpl.rcParams.update(
        {
            "figure.figsize": (7.0, 4.2),
            "figure.dpi": 100,
            "axes.grid": True,
            "grid.alpha": 0.3,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.titlesize": 12,
            "axes.titleweight": "bold",
            "axes.labelsize": 11,
            "legend.frameon": False,
            "lines.linewidth": 2.0,
            "lines.markersize": 6,
            "axes.prop_cycle": mpl.cycler(color=list(COLORS.values())),
        }
    )


def figure(title: str, xlabel: str, ylabel: str, *, ncols: int = 1, figsize: tuple[float, float] | None = None):
    """A new figure with labelled axes (``ncols`` > 1 gives a row of panels sharing the labels).

    Returns ``(fig, ax)`` or ``(fig, axes)``.  Every course figure has a title
    and axis labels with units: a plot a reader has to decode is a bad plot.
    """
    import matplotlib.pyplot as plt

    use_house_style()
    if figsize is None:
        figsize = (5.0 * ncols, 4.0) if ncols > 1 else None
    fig, axes = plt.subplots(1, ncols, figsize=figsize, squeeze=False)
    for ax in axes[0]:
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
    if ncols > 1:
        fig.suptitle(title)
    else:
        axes[0, 0].set_title(title)
    return (fig, axes[0, 0]) if ncols == 1 else (fig, list(axes[0]))


def widgets_are_static() -> bool:
    """True under papermill/CI/the grader, where sliders cannot be moved."""
    return os.environ.get(STATIC_ENV, "") not in ("", "0") or os.environ.get("CI", "") not in ("", "0", "false")


def interactive(fn: Callable[..., Any], **controls: Any) -> Any:
    """``ipywidgets.interact(fn, **controls)`` in JupyterLab; one static call elsewhere.

    ``controls`` use ipywidgets' abbreviations: ``(lo, hi, step)`` tuples make
    sliders, lists make dropdowns, or pass a widget.  Give each a default via
    ``fn``'s keyword defaults; the static render calls ``fn()`` with those.
    """
    if widgets_are_static():
        print("(static render with the default settings; open the notebook in JupyterLab to move the controls)")
        return fn()
    import ipywidgets

    return ipywidgets.interact(fn, **controls)


def show_source(obj: Any) -> Any:
    """Display the source code of a course_lib function or class, highlighted.

    In a notebook it is displayed at once, wherever the call sits in the cell
    (a returned object would show only as a cell's last expression), and the
    call returns None.  Outside IPython it returns the ``Code`` object (or the
    plain text without IPython).
    """
    try:
        source = inspect.getsource(obj)
    except (TypeError, OSError) as err:
        raise ValueError(f"cannot show the source of {obj!r}: {err}") from None
    try:
        from IPython.display import Code
    except ImportError:
        return source
    return _show(Code(source, language="python"))


def _show(obj: Any) -> Any:
    """Display ``obj`` now when running in IPython/Jupyter (and return None); else return it."""
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:  # pragma: no cover - IPython comes with the kernel
        return obj
    if get_ipython() is None:
        return obj
    display(obj)
    return None


def show_table(rows: list[dict[str, Any]], *, floatfmt: str = "{:.4g}") -> Any:
    """Display a list of dicts as a table (a styled pandas DataFrame, index hidden).

    In a notebook the table is displayed at once, wherever the call sits in the
    cell, and the call returns None; outside IPython it returns the Styler.
    """
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover - pandas is a core dependency
        return rows
    df = pd.DataFrame(rows)
    return _show(df.style.format({c: floatfmt.format for c in df.select_dtypes("number").columns}, na_rep="-")
                 .hide(axis="index"))
