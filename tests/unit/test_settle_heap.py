"""``herald serve`` freezes its start-up heap so full collections stop walking it (README, W3)."""

from __future__ import annotations

import gc

from api.serving import YOUNG_GC_THRESHOLD, settle_heap


def test_settling_the_heap_freezes_what_exists_and_leaves_new_objects_to_the_collector() -> None:
    before = [[] for _ in range(3)]  # container objects the collector tracks
    thresholds = gc.get_threshold()
    try:
        settle_heap()
        assert gc.get_freeze_count() >= len(before)
        tracked = {id(o) for generation in (0, 1, 2) for o in gc.get_objects(generation)}
        assert not any(id(o) in tracked for o in before), "frozen objects are no longer scanned"
        after: list[object] = []
        assert any(o is after for o in gc.get_objects(0)), "what is allocated later is collected as usual"
        assert gc.get_threshold() == (YOUNG_GC_THRESHOLD, *thresholds[1:])
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)
