"""MkDocs hooks for this site (listed under `hooks:` in mkdocs.yml).

TFP-style docstrings write subscripts and citations in plain prose, such as
x[i][j] or "[1][2]". Markdown reads `[i][j]` as a reference-style link, and
mkdocs-autorefs then warns that it cannot find the cross-reference target `j`,
which `mkdocs build --strict` turns into a failure. Such targets are never meant
as cross-references, so this hook downgrades to INFO the autorefs warnings whose
target is a bare, undotted word and that come from a docstring (a `.py` file).
Real cross-references name a dotted path (`tfp_vi_estimators.GradientEstimators`)
and keep failing the strict build when they are broken, as do warnings from the
Markdown pages in docs/.
"""

from __future__ import annotations

import logging
import re

_UNDOTTED_TARGET_FROM_DOCSTRING = re.compile(
    r"from \S+\.py:\d+: .*Could not find cross-reference target '[^'.]*'$"
)


class _ProseBracketsAreNotReferences(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.WARNING and _UNDOTTED_TARGET_FROM_DOCSTRING.search(
            record.getMessage()
        ):
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


def on_config(config, **kwargs):
    # Filters apply only on the logger a record is created on, so attach to each
    # of autorefs' own loggers (their module paths differ between versions).
    prose_filter = _ProseBracketsAreNotReferences()
    for name in list(logging.Logger.manager.loggerDict):
        if name.startswith("mkdocs.plugins.mkdocs_autorefs"):
            logging.getLogger(name).addFilter(prose_filter)
    return config
