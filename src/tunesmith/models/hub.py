"""Loading from the Hugging Face Hub without hanging when it cannot be reached.

huggingface_hub retries a failed request five times with back-off (1+2+4+8+8 s) and transformers asks for
several files, so an offline `from_pretrained("org/name")` takes close to a minute before failing. We probe the
Hub once with a short timeout first; when it does not answer we load from the local HF cache only, and turn a
miss into one actionable line.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from tunesmith.errors import UserError

T = TypeVar("T")

PROBE_TIMEOUT_S = 3.0
_PROBE_TTL_S = 30.0  # a loader asks twice (tokenizer, model); don't pay the probe twice when offline
_last_probe: tuple[float, str, bool] | None = None  # (when, endpoint, reachable)


def offline_requested() -> bool:
    """Tell whether the user asked for offline mode (HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE).

    Read from the environment at call time: huggingface_hub reads it once at import, which is too early for a
    variable set later in the same process (tests, notebooks).
    """
    from huggingface_hub import constants

    flags = (os.environ.get("HF_HUB_OFFLINE"), os.environ.get("TRANSFORMERS_OFFLINE"))
    return constants.HF_HUB_OFFLINE or any((f or "").strip().upper() in {"1", "ON", "YES", "TRUE"} for f in flags)


def hub_reachable(timeout: float = PROBE_TIMEOUT_S) -> bool:
    """Tell, within about `timeout` seconds, whether the Hub endpoint answers at all (any HTTP status counts)."""
    global _last_probe
    from huggingface_hub import constants, get_session

    endpoint = constants.ENDPOINT
    now = time.monotonic()
    if _last_probe is not None and _last_probe[1] == endpoint and now - _last_probe[0] < _PROBE_TTL_S:
        return _last_probe[2]
    answers: list[bool] = []

    def probe() -> None:
        # huggingface_hub's own client, so HF_ENDPOINT, proxies and a custom client factory all apply.
        try:
            get_session().head(endpoint, timeout=timeout)
            answers.append(True)
        except Exception:  # any failure to get an answer (DNS, refused, TLS, timeout) means "not reachable"
            answers.append(False)

    # A thread bounds the whole probe: the client timeout does not cover a slow DNS resolver.
    thread = threading.Thread(target=probe, name="tunesmith-hub-probe", daemon=True)
    thread.start()
    thread.join(timeout + 1.0)
    reachable = bool(answers and answers[0])
    _last_probe = (now, endpoint, reachable)
    return reachable


def offline_message(repo_id: str) -> str:
    """The one-line error for a Hub id that cannot be fetched."""
    return (
        f"cannot download '{repo_id}' from the Hugging Face Hub (offline or unreachable); "
        "use a catalog model instead (`tunesmith models list`, e.g. smollm2-135m, fetched with "
        "`tunesmith models pull smollm2-135m`) or pass a local folder"
    )


def load_from_hub(
    loader: Callable[..., T], repo_id: str, offline_kwargs: dict[str, Any] | None = None, **kwargs: Any
) -> T:
    """Call `loader(repo_id, **kwargs)` (a `from_pretrained`), failing fast with a UserError when offline.

    When the Hub is unreachable or offline mode is on, only the local Hugging Face cache is used, and
    `offline_kwargs` are added (for loaders with look-ups that ignore `local_files_only`).
    """
    from huggingface_hub.errors import EntryNotFoundError

    local_only = offline_requested() or not hub_reachable()
    if local_only:
        kwargs = {**kwargs, **(offline_kwargs or {})}
    try:
        return loader(repo_id, local_files_only=local_only, **kwargs)
    except (OSError, EntryNotFoundError) as err:
        if local_only:
            raise UserError(offline_message(repo_id)) from err
        reason = next((ln.strip() for ln in str(err).splitlines() if ln.strip()), type(err).__name__)
        raise UserError(f"cannot load '{repo_id}' from the Hugging Face Hub: {reason}") from err
