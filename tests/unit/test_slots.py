from __future__ import annotations

import asyncio
import threading
from typing import Any

from agent_runner.slots import CountingSlotSupplier


class Ctx:
    """The SDK's contexts carry more; the supplier reads only slot_info."""

    def __init__(self, slot_info: Any = None) -> None:
        self.slot_info = slot_info
        self.permit = None


def test_idle_then_busy_then_stopped_as_the_sdk_drives_it() -> None:
    supplier = CountingSlotSupplier(1)

    async def scenario() -> list[dict[str, Any]]:
        seen = []
        await supplier.reserve_slot(Ctx())  # type: ignore[arg-type]  # a poller holds the one slot
        seen.append(supplier.view())
        supplier.mark_slot_used(Ctx("task"))  # type: ignore[arg-type]  # the poll brought a task
        waiting = asyncio.create_task(supplier.reserve_slot(Ctx()))  # type: ignore[arg-type]
        await asyncio.sleep(0.01)
        seen.append(supplier.view())  # busy: the next poller waits for the slot
        # The SDK releases from its own thread; the waiter is woken on its loop.
        releaser = threading.Thread(target=supplier.release_slot, args=(Ctx("task"),))
        releaser.start()
        releaser.join()
        await asyncio.wait_for(waiting, 2)
        seen.append(supplier.view())
        supplier.release_slot(Ctx())  # type: ignore[arg-type]  # polling stops: nothing held, nobody waits
        seen.append(supplier.view())
        return seen

    idle, busy, polling_again, stopped = asyncio.run(scenario())
    assert (idle["used"], idle["pollers"], idle["no_poller_since"]) == (0, 1, 0.0)
    assert (busy["used"], busy["pollers"]) == (1, 1)
    assert (polling_again["used"], polling_again["pollers"]) == (0, 1)
    assert (stopped["used"], stopped["pollers"]) == (0, 0)
    assert stopped["no_poller_since"] > 0


def test_try_reserve_refuses_when_full() -> None:
    supplier = CountingSlotSupplier(1)
    assert supplier.try_reserve_slot(Ctx()) is not None  # type: ignore[arg-type]
    assert supplier.try_reserve_slot(Ctx()) is None  # type: ignore[arg-type]
    assert supplier.view()["capacity"] == 1
