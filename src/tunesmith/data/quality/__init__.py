"""Data quality: `tunesmith data check` and the check training runs first.

One small module per concern: `rows` (schema, via the readers and formats), `text` (normalised views),
`near` (MinHash LSH near-duplicate search), `duplicates`, `leakage`, `conflicts`, `labels`, `length`,
`report` (findings and severities), `check` (runs them all), `render` (tables, PNG) and `gate` (before training).
"""

from tunesmith.data.quality.check import check_files, check_splits
from tunesmith.data.quality.report import KINDS, CheckReport, Finding

__all__ = ["KINDS", "CheckReport", "Finding", "check_files", "check_splits"]
