"""The seed's result format, read by our own converter (a synthetic file in its format)."""

from pathlib import Path

import pytest

from rally_lm.report import baseline

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "seed" / \
    "lvm_tun_on_block_storage_synthetic.json"


def test_a_seed_file_becomes_cells_with_provenance():
    (cell,) = baseline.load(FIXTURE, "osic/benchmarking_live-migration@cf58997:x.json")
    assert (cell.storage, cell.tunnelling, cell.flavor) == ("local", "on", "small")
    # Iterations in numeric order (10 after 2), VMs missing from one iteration kept out.
    assert cell.per_iteration == [[10.0, 12.0], [11.0], [13.0, 14.0]]
    figures = cell.figures()
    assert figures["migrations"] == 5 and figures["planned"] == 6
    assert figures["duration_p50_s"] == 12.0
    # The seed's evacuation: one iteration's migration times summed, over complete
    # iterations only (the second lacks a VM). Defect of c38f188: 22, 11 and 27 averaged.
    assert figures["incomplete_iterations"] == 1 and figures["probable_timeouts"] == 0
    assert figures["evacuation_mean_s"] == pytest.approx((22 + 27) / 2)
    assert figures["downtime_per_migration_s"] == pytest.approx((1.5 / 3 + 0) / 2)
    assert figures["tcp_streams_with_loss"] == 1
    assert cell.provenance["repository"] == "osic/benchmarking_live-migration"
    assert cell.provenance["commit"] == "cf58997" and len(cell.provenance["sha256"]) == 64


def test_an_unknown_file_name_is_refused():
    with pytest.raises(ValueError, match="not a seed result file name"):
        baseline.load(Path(__file__))


def test_durations_at_rallys_wait_timeout_are_probable_timeouts():
    cell = baseline.BaselineCell("local", "on", "large", [[10.0, 400.3], [11.0, 12.0]], 2, 2,
                                 {}, {}, {})
    assert cell.durations == [10.0, 11.0, 12.0] and cell.probable_timeouts == 1
    assert cell.evacuations() == [23.0]


def spread(centre, n=24, width=0.05):
    return [centre * (1 + width * ((i % 7) - 3) / 3) for i in range(n)]


def test_ratio_verdicts_come_from_intervals_not_from_the_side_of_one():
    # Defect of c38f188: 1.13 against the seed's 4.73 was "agree" (both above 1).
    session = ("boot-a", "abc123")
    ours = {("local", "off", "medium"): {"durations": spread(11.3), "evacuations": spread(60),
                                         "refused": None, "session": session},
            ("ceph", "off", "medium"): {"durations": spread(10.0), "evacuations": spread(50),
                                        "refused": None, "session": session},
            ("local", "on", "medium"): {"refused": "libvirt refuses it"},
            ("ceph", "on", "medium"): {"durations": spread(10.1), "evacuations": spread(50),
                                       "refused": None, "session": ("boot-b", "abc123")}}
    seed = {("local", "off", "medium"): {"durations": spread(47.3), "evacuations": spread(300)},
            ("ceph", "off", "medium"): {"durations": spread(10.0), "evacuations": spread(50)},
            ("local", "on", "medium"): {"durations": spread(9.0), "evacuations": spread(9.0)},
            ("ceph", "on", "medium"): {"durations": spread(10.0), "evacuations": spread(50.0)}}
    rows = {(r["comparison"], r["cell"], r["metric"]): r for r in baseline.ratios(ours, seed)}
    storage = rows[("local (block) vs ceph (shared)", "off / medium", "duration p50")]
    assert storage["ours"].estimate == pytest.approx(1.13, abs=0.01)
    assert storage["seed"].estimate == pytest.approx(4.73, abs=0.01)
    assert storage["shape"] == "disagree"
    refused = rows[("tunnelled vs native", "local / medium", "duration p50")]
    assert refused["ours"] is None and refused["ours_note"] == "libvirt refuses it"
    assert refused["shape"] == "not comparable"
    # Two sessions: never paired silently.
    sessions = rows[("tunnelled vs native", "ceph / medium", "duration p50")]
    assert sessions["ours"] is None
    assert sessions["ours_note"] == ("not paired: different sessions (boot boot-b, commit "
                                     "abc123 against boot boot-a, commit abc123)")


def test_cells_of_unknown_sessions_are_paired_only_when_asked():
    unknown = {("local", "off", "small"): {"durations": spread(12.0), "evacuations": spread(60),
                                           "refused": None, "session": ("", "")},
               ("ceph", "off", "small"): {"durations": spread(10.0), "evacuations": spread(50),
                                          "refused": None, "session": ("", "")}}
    seed = {("local", "off", "small"): {"durations": spread(12.0), "evacuations": spread(60)},
            ("ceph", "off", "small"): {"durations": spread(10.0), "evacuations": spread(50)}}
    key = ("local (block) vs ceph (shared)", "off / small", "duration p50")
    left = {(r["comparison"], r["cell"], r["metric"]): r for r in baseline.ratios(unknown, seed)}
    assert left[key]["ours"] is None
    assert left[key]["ours_note"] == ("not paired: session unknown (recorded before rally_lm "
                                      "kept its provenance)")
    asked = {(r["comparison"], r["cell"], r["metric"]): r
             for r in baseline.ratios(unknown, seed, across_sessions=True)}
    assert asked[key]["ours"].estimate == pytest.approx(1.2)
    assert asked[key]["paired_anyway"].startswith("session unknown")


@pytest.mark.parametrize("ours, seed, shape", [
    ((1.5, 1.3, 1.7), (1.6, 1.4, 1.9), "agree"),
    ((1.0, 0.95, 1.05), (1.02, 0.97, 1.08), "agree"),
    ((1.13, 1.05, 1.2), (4.7, 4.0, 5.5), "disagree"),
    ((1.2, 0.9, 1.6), (1.5, 1.3, 1.7), "inconclusive"),
])
def test_the_verdict_rules(ours, seed, shape):
    from rally_lm.stats.intervals import Interval

    def interval(values):
        return Interval(values[0], values[1], values[2], 12, 0.95, "test")
    assert baseline.verdict(interval(ours), interval(seed))[0] == shape
