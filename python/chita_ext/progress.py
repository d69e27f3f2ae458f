"""Progress for long phases: a tqdm bar on a terminal, one summary line otherwise.

Every long phase (gradients, a stage's lam search and solve, fine-tuning) gets one
:func:`phase`. On a terminal it is a tqdm bar with rate and ETA; when stderr is not a
terminal (a log file, CI) a bar's carriage returns would pile up, so the phase prints one
line when it ends: what it did, how long it took and at what rate.
"""
from __future__ import annotations

import sys
import time


class _Line:
    """A phase that reports once, on close, as one line on stderr."""

    def __init__(self, total, desc, unit):
        self.total, self.desc, self.unit = total, desc, unit
        self.n, self.t0, self.postfix = 0, time.perf_counter(), ""

    def update(self, k=1):
        self.n += k

    def set_postfix_str(self, text, refresh=True):
        self.postfix = text

    def close(self):
        dt = time.perf_counter() - self.t0
        rate = f", {self.n / dt:.3g} {self.unit}/s" if dt > 0 and self.n else ""
        extra = f" ({self.postfix})" if self.postfix else ""
        print(f"{self.desc}: {self.n} {self.unit} in {dt:.1f} s{rate}{extra}",
              file=sys.stderr, flush=True)


class _Null:
    def update(self, k=1):
        pass

    def set_postfix_str(self, text, refresh=True):
        pass

    def close(self):
        pass


def phase(total, desc: str, unit: str = "it", enabled: bool = True):
    """A progress reporter with ``update(k)``, ``set_postfix_str(s)`` and ``close()``."""
    if not enabled:
        return _Null()
    if getattr(sys.stderr, "isatty", lambda: False)():
        try:
            from tqdm.auto import tqdm
            return tqdm(total=total, desc=desc, unit=unit, leave=False, dynamic_ncols=True)
        except ImportError:  # pragma: no cover - tqdm is in the [torch] extra
            pass
    return _Line(total, desc, unit)
