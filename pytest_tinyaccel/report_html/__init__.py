"""`--tinyaccel-report profile.html`: the profile as a page to look at.

`page` renders one self-contained HTML file (tables, failed checks, baseline
changes, per-layer charts and timelines, trace links, run metadata); `charts` draws
the per-layer charts with matplotlib (an optional extra: without it the page keeps
its tables and says how to get the charts); `data` holds what the session records
for the page (`Finding`, `PageData`). The same pieces feed pytest-html's report
when that plugin is installed (`case_fragment`, `tables_fragment`).

This package sits between the session and the baseline/report layers: it reads
rows, baseline changes and findings, and knows nothing of pytest.
"""

from .data import Finding, PageData, Top5Sample, top5_samples
from .page import SUFFIX, case_fragment, render_page, tables_fragment, write_page

__all__ = [
    "SUFFIX",
    "Finding",
    "PageData",
    "Top5Sample",
    "case_fragment",
    "render_page",
    "tables_fragment",
    "top5_samples",
    "write_page",
]
