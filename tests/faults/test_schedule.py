"""The nemesis schedule generator: deterministic per seed, within its options, JSON round trip."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vvstore.harness.faults.run import (
    LINK_RUNS,
    LINK_WORKLOAD,
    SHORT_TIER_SEEDS,
    kill_cycles,
    link_run,
    short_tier,
)
from vvstore.harness.faults.schedule import (
    DEFAULT_KINDS,
    EXCLUSIVE_KINDS,
    FAULT_KINDS,
    LINK_KINDS,
    NETWORK_KINDS,
    OPT_IN_KINDS,
    Fault,
    Schedule,
    ScheduleOptions,
    generate,
    short_tier_options,
    soak_options,
)


def test_a_seed_always_gives_the_same_schedule() -> None:
    options = short_tier_options()
    assert generate(7, options) == generate(7, options)
    assert generate(7, options).faults != generate(8, options).faults


def test_the_schedule_depends_on_the_options_too() -> None:
    assert generate(7, short_tier_options()) != generate(7, short_tier_options(duration=30.0))


@given(st.integers(0, 2**32), st.floats(5.0, 120.0))
def test_faults_stay_within_the_options(seed: int, duration: float) -> None:
    options = short_tier_options(duration)
    schedule = generate(seed, options)

    for fault in schedule.faults:
        assert fault.kind in options.kinds
        assert options.first <= fault.at
        assert fault.at + fault.duration <= options.duration + 1e-9
        if fault.kind in NETWORK_KINDS:
            # The CI tier caps every partition at 5 s.
            assert fault.duration <= 5.0
        if fault.kind == "pause":
            assert fault.duration > 1.0  # longer than the 1 s client timeout
        assert set(fault.nodes) <= set(options.nodes)
    assert [f.at for f in schedule.faults] == sorted(f.at for f in schedule.faults)


@given(st.integers(0, 2**32))
def test_two_faults_of_one_lane_never_overlap(seed: int) -> None:
    schedule = generate(seed, short_tier_options(60.0))
    last_end: dict[str, float] = {}
    for fault in schedule.faults:
        for lane in fault.lanes:
            assert fault.at >= last_end.get(lane, 0.0), (lane, fault)
            last_end[lane] = fault.at + fault.duration
        if fault.kind in EXCLUSIVE_KINDS:
            assert fault.lanes == ("network", "process")


def test_only_the_chosen_kinds_are_drawn() -> None:
    options = ScheduleOptions(duration=60.0, kinds=("kill", "pause"))
    kinds = {fault.kind for seed in range(20) for fault in generate(seed, options).faults}
    assert kinds == {"kill", "pause"}


def test_the_short_tier_covers_every_kind_of_fault() -> None:
    counts: Counter[str] = Counter()
    for seed in SHORT_TIER_SEEDS:
        schedule = generate(seed, short_tier_options())
        assert schedule.faults, seed
        counts += schedule.counts()
    # Every kind drawn by default; the opt-in restore and churn have runs of their own.
    assert set(counts) == set(DEFAULT_KINDS)
    assert len(SHORT_TIER_SEEDS) >= 10
    assert len(short_tier()) == len(SHORT_TIER_SEEDS) + 1 + len(LINK_RUNS)


def test_the_short_tier_has_slow_and_lossy_links_under_non_ascii_keys() -> None:
    runs = [link_run(seed, kinds) for seed, kinds in LINK_RUNS]
    assert runs == short_tier()[-len(LINK_RUNS) :]
    drawn: Counter[str] = Counter()
    for options, schedule in runs:
        assert options.workload == LINK_WORKLOAD and LINK_WORKLOAD.key_alphabet == "unicode"
        counts = schedule.counts()
        # Each run draws every link kind it names (the seeds were chosen so).
        assert set(options.schedule.kinds) & set(LINK_KINDS) <= set(counts), options.seed
        drawn += counts
    assert set(LINK_KINDS) <= set(drawn)
    # Link runs take about as long as the short tier's others: 15 s of faults each.
    assert all(o.schedule.duration == 15.0 for o, _ in runs)


def test_link_kinds_are_opt_in_network_faults() -> None:
    assert set(LINK_KINDS) <= OPT_IN_KINDS & NETWORK_KINDS
    assert not set(LINK_KINDS) & set(DEFAULT_KINDS)
    options = ScheduleOptions()
    assert (options.slow_bandwidth, options.slow_latency) == (250_000.0, 0.04)  # 2 Mbit/s, 40 ms
    assert Fault(1.0, "slow_one_way", 2.0, ("A", "B")).text() == "slow bytes A -> B for 2.0 s"
    assert Fault(1.0, "lossy", 2.0, ("C",)).lanes == ("network",)


def test_kill_cycles_kill_every_node_in_turn() -> None:
    options, schedule = kill_cycles(5)
    assert [f.kind for f in schedule.faults] == ["kill"] * 5
    assert [f.victim for f in schedule.faults] == ["A", "B", "C", "A", "B"]
    assert options.durability == "mixed"  # so both full (A, C) and normal (B) nodes die


def test_a_twenty_minute_soak_plans_at_least_twenty_kills() -> None:
    schedule = generate(2026, soak_options(20))
    counts = schedule.counts()
    assert counts["kill"] >= 20
    assert set(counts) == set(DEFAULT_KINDS)
    long = [f.duration for f in schedule.faults if f.kind == "long_partition"]
    assert long and all(10.0 <= d <= 30.0 for d in long)
    gaps = [b.at - a.at for a, b in zip(schedule.faults, schedule.faults[1:], strict=False)]
    assert min(gaps) >= 5.0


def test_a_schedule_round_trips_through_json() -> None:
    schedule = generate(3, soak_options(2))
    assert Schedule.from_json(schedule.to_json()) == schedule
    links = link_run(11)[1]
    links = Schedule(links.seed, replace(links.options, loss=0.2, slow_latency=0.0), links.faults)
    assert Schedule.from_json(links.to_json()) == links
    assert Schedule.from_json(schedule.without(0).to_json()).faults == schedule.faults[1:]


def test_every_kind_describes_itself() -> None:
    faults = [
        Fault(
            1.0,
            kind,
            2.0,
            ("A", "B") if kind in ("one_way", "flap", "slow_one_way") else ("A",),
            0.5,
            cycles=3 if kind == "churn" else 0,
        )
        for kind in FAULT_KINDS
    ]
    lines = [fault.describe() for fault in faults]
    assert all(line.startswith("t=   1.0 s  ") for line in lines)
    assert "isolate A from the other nodes and from clients for 2.0 s" in lines[0]
    assert "bridge through A: B and C cannot see each other" in lines[2]
    assert Schedule(1, ScheduleOptions(), ()).describe() == ["(no faults)"]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"kinds": ("meteor",)}, "kinds"),
        ({"kinds": ()}, "kinds"),
        ({"nodes": ("A", "B")}, "nodes"),
        ({"gap": (3.0, 1.0)}, "gap"),
        ({"partition": (0.0, 1.0)}, "partition"),
        ({"duration": 0.0}, "duration"),
        ({"weights": (("kill", 0.0),)}, "weights"),
        ({"slow_bandwidth": 10.0}, "slow_bandwidth"),
        ({"slow_latency": 2.0}, "slow_latency"),
        ({"loss": 0.0}, "loss"),
        ({"loss": 0.9}, "loss"),
    ],
)
def test_bad_options_are_refused(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ScheduleOptions(**fields)  # type: ignore[arg-type]


def test_bad_faults_are_refused() -> None:
    with pytest.raises(ValueError, match="2 distinct"):
        Fault(1.0, "one_way", 1.0, ("A",))
    with pytest.raises(ValueError, match="period"):
        Fault(1.0, "flap", 1.0, ("A", "B"), 0.0)
    with pytest.raises(ValueError, match="unknown fault kind"):
        Fault(1.0, "meteor", 1.0, ("A",))
    with pytest.raises(ValueError, match="not a vvstore fault schedule"):
        Schedule.from_dict({"format": "other"})
