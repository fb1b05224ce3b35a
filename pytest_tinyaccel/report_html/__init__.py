"""`--tinyaccel-report profile.html`: the profile as a page to look at.

`page` renders one self-contained HTML file (pytest's count, every case's status
worst first, failed checks, baseline changes, the profiling tables, per-layer charts
and timelines, trace links, run metadata); `charts` draws the per-layer charts with
matplotlib (an optional extra: without it the page keeps its tables and says how to
get the charts); `data` holds what one page shows (`PageData`: the run record plus
the baseline and traces). The same pieces feed pytest-html's report when that plugin
is installed (`case_fragment`, `tables_fragment`).

This package sits above the baseline and report layers: it reads the run record and
the baseline changes, and knows nothing of pytest.
"""

from .data import PageData
from .page import SUFFIX, case_fragment, render_page, tables_fragment, write_page

__all__ = ["SUFFIX", "PageData", "case_fragment", "render_page", "tables_fragment", "write_page"]
