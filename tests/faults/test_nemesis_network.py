"""The nemesis's composition of overlapping network faults, and the workload's bookkeeping."""

from __future__ import annotations

from vvstore.harness.checker import History
from vvstore.harness.faults.nemesis import KillCheck, Network
from vvstore.harness.faults.workload import unacknowledged


class FakeProxy:
    """Records what the network sets, per direction, like the FaultProxy's policy table."""

    def __init__(self) -> None:
        self.modes: dict[tuple[str, str], str] = {}
        self.calls: list[tuple[str, str, str]] = []
        self.healed = 0

    def set_direction(self, a: str, b: str, mode: str) -> None:
        self.calls.append((a, b, mode))
        if mode == "pass":
            self.modes.pop((a, b), None)
        else:
            self.modes[(a, b)] = mode

    def heal(self) -> None:
        self.healed += 1
        self.modes.clear()


def test_overlapping_faults_compose_and_one_ending_does_not_heal_the_other() -> None:
    proxy = FakeProxy()
    network = Network(proxy)  # type: ignore[arg-type]

    split = network.add({("A", "B"): "drop", ("B", "A"): "drop"})
    flap = network.add({("A", "B"): "drop"})
    network.remove(flap)
    assert proxy.modes == {("A", "B"): "drop", ("B", "A"): "drop"}

    quiet = network.add({("A", "B"): "refuse", ("client", "A"): "refuse"})
    assert proxy.modes[("A", "B")] == "refuse"  # refuse wins over drop
    network.remove(quiet)
    assert proxy.modes == {("A", "B"): "drop", ("B", "A"): "drop"}

    network.remove(split)
    assert proxy.modes == {}


def test_only_changed_directions_are_set() -> None:
    proxy = FakeProxy()
    network = Network(proxy)  # type: ignore[arg-type]
    network.add({("A", "B"): "drop"})
    network.add({("A", "B"): "drop", ("C", "A"): "drop"})
    assert proxy.calls == [("A", "B", "drop"), ("C", "A", "drop")]


def test_clear_heals_everything() -> None:
    proxy = FakeProxy()
    network = Network(proxy)  # type: ignore[arg-type]
    network.add({("A", "B"): "drop"})
    network.clear()
    assert proxy.modes == {} and proxy.healed == 1
    assert network.effective() == {}


def test_a_kill_check_needs_the_same_actor_and_every_acknowledged_seq() -> None:
    kept = KillCheck("A", "normal", 3.0, "A~1", "A~1", acknowledged_seq=40, held_seq=40)
    short = KillCheck("A", "normal", 3.0, "A~1", "A~1", acknowledged_seq=40, held_seq=39)
    moved = KillCheck("A", "full", 3.0, "A~1", "A~2", acknowledged_seq=0, held_seq=0)
    assert kept.ok and not short.ok and not moved.ok
    assert kept.describe().endswith("holds seq 40, acknowledged up to 40: ok")
    assert "LOST ACKNOWLEDGED WRITES" in short.describe()
    assert "actor changed from A~1 to A~2" in moved.describe()


def test_unacknowledged_lists_keys_without_ok_or_fail() -> None:
    h = History()
    for process, (ik, outcomes) in enumerate(
        {"a": ["info", "ok"], "b": ["info", "info"], "c": ["fail"], "d": [None]}.items()
    ):
        for outcome in outcomes:
            op = h.invoke(process, "add", "k", 2, "A", 0.0, idempotency_key=ik)
            if outcome is not None:
                h.complete(op, outcome, 1.0)  # type: ignore[arg-type]
    assert unacknowledged(h.ops) == {"b": ("k", 2), "d": ("k", 2)}
