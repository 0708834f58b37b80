"""Where third-party log lines and warnings go: the run's `log.txt`, and the terminal only with `--verbose`.

transformers, huggingface_hub, kernels, bitsandbytes and torch log to Python's `logging` or call
`warnings.warn`. Left alone, their lines reach stderr (directly, or through logging's last-resort handler for
loggers without one) before or around our own one-line `error:` messages, and a user cannot tell ours from
theirs. The CLI calls `capture_library_output` once: every record goes to a buffer until a run folder is known,
then to `runs/<run>/log.txt` (`attach_run_log`). A command that never gets a run folder leaves its records in
`<cache>/logs/last.txt`. Our own messages print through rich consoles and are not affected.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
from collections import deque
from pathlib import Path

RUN_LOG = "log.txt"
_FORMAT = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%d %H:%M:%S")
_BUFFERED = 10_000  # records kept before a run folder is known; older ones are dropped, oldest first


class _Buffer(logging.Handler):
    """Keeps formatted records until `attach_run_log` writes them to the run's file."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: deque[str] = deque(maxlen=_BUFFERED)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(self.format(record))
        except Exception:  # noqa: BLE001 - a record that cannot be formatted must not break the command
            self.handleError(record)


_state: dict[str, logging.Handler | None] = {"buffer": None, "file": None}


def _writes_to_terminal(handler: logging.Handler) -> bool:
    stream = getattr(handler, "stream", None)
    return not isinstance(handler, logging.FileHandler) and stream in (
        sys.stderr,
        sys.stdout,
        sys.__stderr__,
        sys.__stdout__,
    )


def adopt_library_loggers() -> None:
    """Loggers that print to the terminal on their own (torch's, transformers' default handler) hand their records
    to ours instead. Call again after importing a library that installs its own handler (torch does at import)."""
    for name, logger in list(logging.Logger.manager.loggerDict.items()):
        if not isinstance(logger, logging.Logger) or name.startswith("tunesmith"):
            continue
        terminal = [h for h in logger.handlers if _writes_to_terminal(h)]
        for handler in terminal:
            logger.removeHandler(handler)
        if terminal:
            logger.propagate = True


def _quiet_transformers() -> None:
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:  # pragma: no cover - transformers is a dependency
        return
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_warning()
    hf_logging.disable_default_handler()
    hf_logging.enable_propagation()


def capture_library_output(verbose: bool = False) -> None:
    """Route every library's log records and Python warnings to the run log (and stderr if `verbose`)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    buffer = _Buffer()
    buffer.setFormatter(_FORMAT)
    root.addHandler(buffer)
    if verbose:
        terminal = logging.StreamHandler(sys.stderr)
        terminal.setFormatter(_FORMAT)
        root.addHandler(terminal)
    root.setLevel(logging.INFO if verbose else logging.WARNING)
    logging.captureWarnings(True)
    _state.update(buffer=buffer, file=None)
    _quiet_transformers()
    adopt_library_loggers()
    atexit.register(_write_unattached)


def attach_run_log(run_dir: Path) -> Path | None:
    """From now on, records go to `run_dir/log.txt` (appended), the buffered ones first; None when not capturing."""
    buffer = _state["buffer"]
    if not isinstance(buffer, _Buffer):
        return None
    path = run_dir / RUN_LOG
    current = _state["file"]
    if isinstance(current, logging.FileHandler) and Path(current.baseFilename) == path.resolve():
        return path
    try:
        with path.open("a", encoding="utf-8") as file:
            file.writelines(f"{line}\n" for line in buffer.lines)
        handler = logging.FileHandler(path, encoding="utf-8")
    except OSError:  # a read-only run folder (report, compare): records stay buffered
        return None
    handler.setFormatter(_FORMAT)
    buffer.lines.clear()
    root = logging.getLogger()
    if current is not None:
        root.removeHandler(current)
        current.close()
    root.removeHandler(buffer)
    root.addHandler(handler)
    _state["file"] = handler
    adopt_library_loggers()
    return path


def _write_unattached() -> None:
    """Records of a command that never had a run folder: `<cache>/logs/last.txt`, so nothing is lost."""
    buffer = _state["buffer"]
    if not isinstance(buffer, _Buffer) or not buffer.lines or _state["file"] is not None:
        return
    try:
        from tunesmith.models.cache import cache_dir

        folder = cache_dir() / "logs"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "last.txt").write_text("".join(f"{line}\n" for line in buffer.lines), encoding="utf-8")
    except OSError:
        pass  # a read-only cache must not turn a clean exit into a failure


def verbose_requested(argv: list[str]) -> bool:
    """`--verbose` anywhere on the command line (removed from `argv`), or TUNESMITH_VERBOSE=1."""
    found = "--verbose" in argv[1:]
    while "--verbose" in argv[1:]:
        argv.remove("--verbose")
    return found or os.environ.get("TUNESMITH_VERBOSE", "").strip().lower() in {"1", "true", "yes", "on"}
