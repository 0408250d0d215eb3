"""The worker's own view of its task slots, from the SDK's slot-supplier interface.

The SDK asks a slot supplier for a permit before every poll, marks the permit used when a
poll brings a task, and releases it when the task is done or the poll came back empty. So a
supplier sees, without asking Temporal, what health needs: how many slots are in use, and
whether a poller is out there (holding a permit that is not in use, or waiting for a slot
to free up). A worker whose slots are all busy keeps one poller waiting for a slot; a worker
whose SDK stopped polling holds no such permit and has no one waiting. health.py judges it.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from typing import Any

from temporalio.worker import (
    CustomSlotSupplier,
    FixedSizeSlotSupplier,
    SlotMarkUsedContext,
    SlotPermit,
    SlotReleaseContext,
    SlotReserveContext,
    WorkerTuner,
)

# The SDK's default for workflow tasks; local activities and Nexus are unused here.
WORKFLOW_SLOTS = 100
OTHER_SLOTS = 100


class CountingSlotSupplier(CustomSlotSupplier):
    """A fixed number of slots, like the SDK's FixedSizeSlotSupplier, that also counts.

    The SDK calls reserve_slot on the worker's event loop, the other three methods from its
    own threads: the counts are under a lock, and a waiter is woken on its own loop."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._lock = threading.Lock()
        self._reserved = 0  # permits handed out and not yet released
        self._used = 0  # of those, permits carrying a task
        self._waiting = 0  # reserve_slot calls waiting for a slot to free up
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._no_poller_since = time.time()
        self._started = False  # a first permit was reserved: the SDK has begun to poll

    async def reserve_slot(self, ctx: SlotReserveContext) -> SlotPermit:
        loop = asyncio.get_running_loop()
        while True:
            with self._lock:
                if self._reserved < self.capacity:
                    self._reserved += 1
                    self._note()
                    return SlotPermit()
                waiter: asyncio.Future[None] = loop.create_future()
                self._waiters.append((loop, waiter))
                self._waiting += 1
                self._note()
            try:
                await waiter
            finally:
                with self._lock:
                    self._waiting -= 1
                    if (loop, waiter) in self._waiters:
                        self._waiters.remove((loop, waiter))
                    self._note()

    def try_reserve_slot(self, ctx: SlotReserveContext) -> SlotPermit | None:
        with self._lock:
            if self._reserved >= self.capacity:
                return None
            self._reserved += 1
            self._note()
        return SlotPermit()

    def mark_slot_used(self, ctx: SlotMarkUsedContext) -> None:
        with self._lock:
            self._used += 1
            self._note()

    def release_slot(self, ctx: SlotReleaseContext) -> None:
        with self._lock:
            if ctx.slot_info is not None:
                self._used -= 1
            self._reserved -= 1
            waiters, self._waiters = self._waiters, []
            self._note()
        for loop, waiter in waiters:  # each one tries again; there are only a few pollers
            with contextlib.suppress(RuntimeError):  # its loop is closed: the worker is gone
                loop.call_soon_threadsafe(_wake, waiter)

    def _note(self) -> None:
        pollers = self._reserved - self._used + self._waiting
        self._started = self._started or self._reserved > 0
        if pollers > 0:
            self._no_poller_since = 0.0
        elif not self._no_poller_since:
            self._no_poller_since = time.time()

    def view(self) -> dict[str, Any]:
        """What the heartbeat file records: capacity, slots in use, pollers out, since when none,
        and whether the SDK has begun to poll at all."""
        with self._lock:
            return {
                "capacity": self.capacity,
                "used": self._used,
                "pollers": self._reserved - self._used + self._waiting,
                "no_poller_since": self._no_poller_since,
                "started": self._started,
            }


class SlotView:
    """The suppliers of one SDK worker: pass tuner() to Worker(tuner=...), read view()."""

    def __init__(self, activity_slots: int, workflow_slots: int = WORKFLOW_SLOTS) -> None:
        self.workflow = CountingSlotSupplier(workflow_slots)
        self.activity = CountingSlotSupplier(activity_slots)

    def tuner(self) -> WorkerTuner:
        return WorkerTuner.create_composite(
            workflow_supplier=self.workflow,
            activity_supplier=self.activity,
            local_activity_supplier=FixedSizeSlotSupplier(OTHER_SLOTS),
            nexus_supplier=FixedSizeSlotSupplier(OTHER_SLOTS),
        )

    def view(self) -> dict[str, dict[str, Any]]:
        return {"workflow": self.workflow.view(), "activity": self.activity.view()}


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
