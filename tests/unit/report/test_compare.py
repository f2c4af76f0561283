"""rally-lm compare: verdicts and exit codes a pipeline can gate on."""

import json

from rally_lm.cli.main import main
from rally_lm.report import cells
from tests.unit.report.synthetic import draw, report, rows

BASE = "11111111-1111-1111-1111-111111111111"
CAND = "22222222-2222-2222-2222-222222222222"


def pair_of_reports(tmp_path, downtime_shift=1.0, duration_shift=1.0, n=36, labels=None):
    base = report(tmp_path / "base.json", BASE,
                  rows(draw(400, 30, n, 1), draw(10, 0.5, n, 2)))
    cand = report(tmp_path / "cand.json", CAND,
                  rows([d * downtime_shift for d in draw(400, 30, n, 3)],
                       [d * duration_shift for d in draw(10, 0.5, n, 4)]), labels=labels)
    return base, cand


def test_a_real_regression_fails_the_pipeline(tmp_path, capsys):
    base, cand = pair_of_reports(tmp_path, downtime_shift=1.5)
    code = main(["compare", "--baseline", str(base), "--candidate", str(cand),
                 "--out", str(tmp_path / "out")])
    assert code == 1
    data = json.loads((tmp_path / "out" / "compare.json").read_text())
    verdicts = {(c["figure"], c["statistic"]): c["verdict"] for c in data["pairs"][0]["changes"]}
    assert verdicts[("client_downtime_ms", "p50")] == "worse"
    assert verdicts[("duration_s", "p50")] in ("no change", "inconclusive")
    assert data["worse"] is True
    page = (tmp_path / "out" / "compare.html").read_text()
    assert "WORSE" in page and "<script" not in page
    assert "**worse**" in capsys.readouterr().out


def test_the_same_setting_twice_passes(tmp_path):
    base, cand = pair_of_reports(tmp_path)
    assert main(["compare", "--baseline", str(base), "--candidate", str(cand),
                 "--out", str(tmp_path / "out")]) == 0
    data = json.loads((tmp_path / "out" / "compare.json").read_text())
    assert not any(c["verdict"] == "worse" for c in data["pairs"][0]["changes"])


def test_one_cell_each_of_different_kinds_is_compared_and_says_so(tmp_path):
    base, cand = pair_of_reports(tmp_path, duration_shift=1.6,
                                 labels={"storage": "ceph", "tunnelling": "on",
                                         "flavor": "lm.small"})
    assert main(["compare", "--baseline", str(base), "--candidate", str(cand),
                 "--out", str(tmp_path / "out")]) == 1
    data = json.loads((tmp_path / "out" / "compare.json").read_text())
    assert data["pairs"][0]["unlike"] == ("different cells: ceph / tunnelling off / lm.small "
                                          "against ceph / tunnelling on / lm.small")


def test_fewer_successes_are_worse(tmp_path):
    base = report(tmp_path / "b.json", BASE, rows([400.0] * 24, [10.0] * 24))
    outcomes = ["completed"] * 16 + ["error"] * 8
    cand = report(tmp_path / "c.json", CAND, rows([400.0] * 24, [10.0] * 24, outcomes))
    assert main(["compare", "--baseline", str(base), "--candidate", str(cand),
                 "--out", str(tmp_path / "out")]) == 1


def test_passes_of_one_cell_are_pooled(tmp_path):
    one = report(tmp_path / "one.json", BASE, rows([400.0] * 6, [10.0] * 6))
    two = report(tmp_path / "two.json", CAND, rows([420.0] * 6, [11.0] * 6))
    (pooled,) = cells.pool(cells.load([one, two]))
    assert pooled.task == f"{BASE}+{CAND}" and len(pooled.migrations) == 12
    assert [m["iteration"] for m in pooled.migrations] == [0] * 6 + [1] * 6


def test_another_network_backend_is_another_cell_and_compared_as_such(tmp_path):
    # linuxbridge before, OVN after: never pooled as passes of one cell; compared
    # one against the other, the comparison names the difference.
    linuxbridge = {"storage": "ceph", "tunnelling": "off", "flavor": "lm.small",
                   "network": "linuxbridge"}
    ovn = {**linuxbridge, "network": "ovn"}
    one = report(tmp_path / "lb.json", BASE, rows([400.0] * 6, [10.0] * 6), labels=linuxbridge)
    two = report(tmp_path / "ovn.json", CAND, rows([420.0] * 6, [11.0] * 6), labels=ovn)
    assert len(cells.pool(cells.load([one, two]))) == 2
    assert main(["compare", "--baseline", str(one), "--candidate", str(two),
                 "--out", str(tmp_path / "out")]) in (0, 1)
    data = json.loads((tmp_path / "out" / "compare.json").read_text())
    assert data["pairs"][0]["unlike"] == (
        "different cells: ceph / tunnelling off / lm.small / linuxbridge "
        "against ceph / tunnelling off / lm.small / ovn")


def test_a_study_on_another_network_is_compared_cell_by_cell_across_it(tmp_path, capsys):
    # Two flavors on linuxbridge, the same two on OVN: no cell is the same cell, so
    # without --across nothing pairs (exit 2); with it, each flavor with its own.
    sides = {}
    for side, network, task in (("base", "linuxbridge", BASE), ("cand", "ovn", CAND)):
        sides[side] = [report(tmp_path / f"{side}-{flavor}.json", task[:-1] + str(i),
                              rows([400.0 + i] * 6, [10.0] * 6),
                              labels={"storage": "ceph", "tunnelling": "off", "flavor": flavor,
                                      "network": network})
                       for i, flavor in enumerate(("lm.small", "lm.large"))]
    argv = ["compare", "--baseline", *map(str, sides["base"]),
            "--candidate", *map(str, sides["cand"]), "--out", str(tmp_path / "out")]
    assert main(argv) == 2
    assert "no cell of the candidate matches" in capsys.readouterr().err
    assert main([*argv, "--across", "network"]) == 0
    data = json.loads((tmp_path / "out" / "compare.json").read_text())
    assert sorted((p["baseline"]["cell"], p["candidate"]["cell"], p["unlike"])
                  for p in data["pairs"]) == [
        (f"ceph / tunnelling off / {f} / linuxbridge", f"ceph / tunnelling off / {f} / ovn",
         "across network: linuxbridge against ovn") for f in ("lm.large", "lm.small")]


def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    (tmp_path / "empty.json").write_text("[]")
    (tmp_path / "other.json").write_text('{"not": "rally"}')
    good = report(tmp_path / "g.json", BASE, rows([1.0] * 3, [1.0] * 3))
    for bad in ("empty.json", "other.json", "missing.json"):
        code = main(["compare", "--baseline", str(tmp_path / bad), "--candidate", str(good)])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and err[0].startswith("rally-lm compare: "), err
    assert main(["compare", "--baseline", str(good), "--candidate", str(good),
                 "--tolerance", "-1"]) == 2
