"""Peak resident memory of each phase of a prune(), for checking the planner's formula.

Off by default. With ``CHITA_TRACE_RSS=1`` in the environment (or :func:`enable`), each
:func:`phase` records the process's peak RSS while it ran: on entry the kernel's high-water
mark (``VmHWM``) is reset through ``/proc/self/clear_refs``, on exit it is read. The time
between phases is credited to ``"other"``. prune() then reports the peaks in
``result.scale["measured_peak_gb"]`` beside the formula's parts.

It is off by default because resetting the high-water mark also lowers what
``getrusage().ru_maxrss`` reports for the rest of the process: a library should not do
that to its caller unasked.
"""
from __future__ import annotations

import os
from contextlib import contextmanager

_state = {"on": os.environ.get("CHITA_TRACE_RSS", "") not in ("", "0"), "depth": 0}
_peaks: dict = {}


def enable(on: bool = True) -> None:
    """Turn the tracing on (or off) for this process; clears the recorded peaks."""
    _state["on"] = bool(on)
    clear()


def clear() -> None:
    """Forget the peaks recorded so far (prune() calls this when it starts)."""
    _peaks.clear()
    if _state["on"] and not _state["depth"]:
        _reset()


def enabled() -> bool:
    return _state["on"]


def status_bytes(key: str) -> int:
    """A size line of /proc/self/status (``"VmRSS"``, ``"VmHWM"``), bytes; 0 if unknown."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _hwm() -> int:
    """The kernel's high-water mark of this process's RSS."""
    return status_bytes("VmHWM")


def _reset() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # 5: reset the peak RSS to the current RSS (Linux >= 4.0)
    except OSError:
        pass


def _credit(name: str) -> None:
    _peaks[name] = max(_peaks.get(name, 0), _hwm())


@contextmanager
def phase(name: str):
    """Record the peak RSS while the block runs under ``name`` (outermost phases only)."""
    if not _state["on"]:
        yield
        return
    if _state["depth"]:  # inside another phase: it is credited to the outer one
        _state["depth"] += 1
        try:
            yield
        finally:
            _state["depth"] -= 1
        return
    _credit("other")
    _reset()
    _state["depth"] = 1
    try:
        yield
    finally:
        _state["depth"] = 0
        _credit(name)
        _reset()


def peaks() -> dict:
    """``{phase: peak RSS bytes}`` recorded so far (``"other"`` included)."""
    if _state["on"]:
        _credit("other")
    return dict(_peaks)
