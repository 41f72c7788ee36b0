"""The app's server process (``workbench app``): Streamlit, with the pages' libraries imported
before it starts serving.

A page's first visit in a fresh Streamlit server imported pandas, pyarrow, polars, plotly,
numpy and the workbench's own services: 0.9 s of the Stats page's 1.6 s first render at 1M
detections, and most of every other page's. A server pays that once, when it starts, so that
no user's first visit does (``bench/scale.py`` measures both: ``cold_s`` in a bare process,
``first_visit_s`` after this warm-up).
"""

from __future__ import annotations

import importlib
import pkgutil
import sys

# What the pages import on top of the workbench package (pandas and pyarrow for
# st.dataframe, plotly for the charts, polars for the statistics, PIL for the images).
LIBRARIES = ("numpy", "pandas", "pyarrow", "polars", "plotly.express", "plotly.graph_objects",
             "PIL.Image", "sqlalchemy")


def warm_imports() -> list[str]:
    """Import the pages' libraries and every ``workbench.ui`` module; returns the names that
    failed to import (the page that needs one says why when it is opened)."""
    import logging

    # st.cache_data checks its options when a module is imported and, before the server's
    # runtime exists, warns that it would use a memory store: the caches themselves are made
    # on first call, inside the runtime. Quiet that one warning while warming.
    quiet = logging.getLogger("streamlit.runtime.caching.cache_data_api")
    no_runtime = _NoRuntimeWarning()
    quiet.addFilter(no_runtime)
    import workbench.ui as ui

    names = [*LIBRARIES, *(f"workbench.ui.{m.name}" for m in pkgutil.iter_modules(ui.__path__))]
    failed = []
    for name in names:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - a warm-up never stops the server from starting
            failed.append(name)
    quiet.removeFilter(no_runtime)
    return failed


class _NoRuntimeWarning:
    """A logging filter that drops st.cache_data's "No runtime found" warning."""

    def filter(self, record) -> bool:
        return "No runtime found" not in record.getMessage()


def main() -> None:
    """``python -m workbench.app_server [streamlit run options]``: warm, then serve app.py."""
    warm_imports()
    from streamlit.web import cli

    sys.argv = ["streamlit", "run", "app.py", *sys.argv[1:]]
    sys.exit(cli.main())


if __name__ == "__main__":
    main()
