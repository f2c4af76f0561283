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
    assert figures["evacuation_mean_s"] == pytest.approx((22 + 11 + 27) / 3)
    assert figures["downtime_per_migration_s"] == pytest.approx((1.5 / 3 + 0) / 2)
    assert figures["tcp_streams_with_loss"] == 1
    assert cell.provenance["repository"] == "osic/benchmarking_live-migration"
    assert cell.provenance["commit"] == "cf58997" and len(cell.provenance["sha256"]) == 64


def test_an_unknown_file_name_is_refused():
    with pytest.raises(ValueError, match="not a seed result file name"):
        baseline.load(Path(__file__))


def test_shapes_agree_differ_or_cannot_be_compared():
    ours = {("local", "on", "small"): {"duration_p50_s": 20.0, "evacuation_mean_s": 50.0,
                                       "refused": None},
            ("local", "off", "small"): {"duration_p50_s": 10.0, "evacuation_mean_s": 50.0,
                                        "refused": None},
            ("ceph", "on", "small"): {"refused": "libvirt refuses it"},
            ("ceph", "off", "small"): {"duration_p50_s": 5.0, "evacuation_mean_s": 20.0,
                                       "refused": None}}
    seed = {("local", "on", "small"): {"duration_p50_s": 30.0, "evacuation_mean_s": 90.0},
            ("local", "off", "small"): {"duration_p50_s": 20.0, "evacuation_mean_s": 30.0},
            ("ceph", "on", "small"): {"duration_p50_s": 9.0, "evacuation_mean_s": 9.0},
            ("ceph", "off", "small"): {"duration_p50_s": 3.0, "evacuation_mean_s": 9.0}}
    rows = {(r["comparison"], r["cell"], r["metric"]): r for r in baseline.ratios(ours, seed)}
    local = rows[("tunnelled vs native", "local / small", "duration_p50_s")]
    assert (local["ours"], local["seed"], local["shape"]) == (2.0, 1.5, "agree")
    evacuation = rows[("tunnelled vs native", "local / small", "evacuation_mean_s")]
    assert (evacuation["ours"], evacuation["seed"], evacuation["shape"]) == (1.0, 3.0, "differ")
    ceph = rows[("tunnelled vs native", "ceph / small", "duration_p50_s")]
    assert ceph["ours"] is None and ceph["ours_note"] == "libvirt refuses it"
    assert ceph["shape"] == "not comparable"
