"""The XID event watcher: XIDs are events, not pollable state, so one thread waits for them."""

from __future__ import annotations

import logging
import threading

from ..runtime.logs import log
from .nvml import Nvml, pynvml

logger = logging.getLogger("powerplane.gpu")


class XidWatcher:
    """The one background task: wait on an NVML event set and count XIDs per GPU.

    Events cannot be polled afterwards, so a thread blocks in ``nvmlEventSetWait`` (with a short
    timeout, to notice shutdown).  Counts only grow: a scrape reads them, nothing resets them.
    """

    def __init__(self, nvml: Nvml, wait_ms: int = 500) -> None:
        self.nvml = nvml
        self.wait_ms = wait_ms
        self.counts: dict[int, dict[int, int]] = {}
        self.last: dict[int, int] = {}
        self.registered: set[int] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error = ""

    def start(self) -> None:
        nv = pynvml()
        try:
            self._set = nv.nvmlEventSetCreate()
        except Exception as exc:
            self.error = f"no NVML event set: {exc}"
            log(logger, logging.WARNING, "XID events unavailable", err=self.error)
            return
        for index in range(self.nvml.count):
            try:
                nv.nvmlDeviceRegisterEvents(
                    self.nvml.handle(index), nv.nvmlEventTypeXidCriticalError, self._set
                )
                self.registered.add(index)
            except nv.NVMLError_NotSupported:
                pass
            except Exception as exc:
                log(logger, logging.WARNING, "XID events unavailable for a GPU", gpu=index, err=str(exc))
        self._thread = threading.Thread(target=self._run, name="nvml-xid-events", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        nv = pynvml()
        while not self._stop.is_set():
            try:
                data = nv.nvmlEventSetWait(self._set, self.wait_ms)
            except nv.NVMLError_Timeout:
                continue
            except Exception as exc:
                # A lost GPU or a driver problem: keep waiting, but not in a tight loop.
                logger.debug("nvmlEventSetWait failed: %s", exc)
                self._stop.wait(1.0)
                continue
            if not data.eventType & nv.nvmlEventTypeXidCriticalError:
                continue
            try:
                index = int(nv.nvmlDeviceGetIndex(data.device))
            except Exception as exc:  # the GPU went away between the event and now
                logger.debug("XID event for an unknown GPU: %s", exc)
                continue
            xid = int(data.eventData)
            with self._lock:
                per_gpu = self.counts.setdefault(index, {})
                per_gpu[xid] = per_gpu.get(xid, 0) + 1
                self.last[index] = xid
            log(logger, logging.WARNING, "XID error", gpu=index, xid=xid)

    def snapshot(self, index: int) -> tuple[dict[int, int], int]:
        with self._lock:
            return dict(self.counts.get(index, {})), self.last.get(index, 0)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
            self._thread = None
            try:
                pynvml().nvmlEventSetFree(self._set)
            except Exception as exc:
                logger.debug("nvmlEventSetFree failed: %s", exc)
