"""Test data stays hidden: the study selects on the validation split only, so a test file that is the validation
or training file, or shares rows with them (exact or near copies, by the data check's leakage rules), is refused
before any trial runs."""

from __future__ import annotations

from pathlib import Path

from tunesmith.config.schema import Config
from tunesmith.data.quality.leakage import leaks
from tunesmith.data.quality.near import Sketcher
from tunesmith.data.quality.rows import read_split
from tunesmith.data.quality.text import all_views
from tunesmith.errors import UserError


def check_test_file(cfg: Config, test: str) -> None:
    """Refuse `test` when it is, or overlaps, the file the study selects on (data.val, else data.train, whose
    held-out share is the validation split) or the training file."""
    data = cfg.data
    if not Path(test).is_file():
        raise UserError(f"tune.test: {test}: file not found")
    held = [(name, path) for name, path in (("val", data.val), ("train", data.train)) if path is not None]
    for name, path in held:
        if Path(path).resolve() == Path(test).resolve():
            raise UserError(
                f"tune.test {test} is the {name} file; the study selects on validation rows, so the test file must "
                "be one no trial sees"
            )
    test_rows = read_split("test", test, data.format, data.system_prompt).examples
    sketcher = Sketcher(data.check.near_duplicate_threshold, data.check.num_perm)
    for name, path in held:
        rows = read_split(name, path, data.format, data.system_prompt).examples
        found = leaks(all_views(test_rows), all_views(rows), sketcher)
        if found:
            first = min(found)
            where = f"{test}:{test_rows[first].line} copies {path}:{rows[found[first].of].line}"
            raise UserError(
                f"tune.test: {len(found)} row(s) of {test} copy rows of the {name} file ({where}); a test score "
                "on them would not be held out. Remove them (`tunesmith data clean`) or choose another test file"
            )
