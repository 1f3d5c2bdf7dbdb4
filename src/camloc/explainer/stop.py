"""Stop a long run cleanly on SIGINT or SIGTERM: the first signal asks the run to stop after the current batch
(outputs stay whole), a second one stops at once (the current batch is dropped whole, temporary files removed).

    with StopOnSignals() as stop:
        for batch in ...:
            ...
            if stop.requested:
                break
"""

from __future__ import annotations

import signal
import threading
from types import FrameType, TracebackType

SIGNAL_NAMES = {signal.SIGINT: "SIGINT", signal.SIGTERM: "SIGTERM"}


class StopOnSignals:
    """Context manager: turns SIGINT / SIGTERM into `requested` (first) and KeyboardInterrupt (second).

    Only the main thread can install handlers; elsewhere (a server thread) it does nothing and never requests.
    """

    def __init__(self) -> None:
        self.signal_name: str | None = None
        self._previous: dict[int, object] = {}

    @property
    def requested(self) -> bool:
        return self.signal_name is not None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.signal_name = SIGNAL_NAMES.get(signal.Signals(signum), str(signum))

    def __enter__(self) -> StopOnSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in SIGNAL_NAMES:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]  # what signal.signal returned
        self._previous.clear()
