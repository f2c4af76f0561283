"""A mode switch to the mode the testbed is in restarts nothing only when its computes match."""

import pytest

from rally_lm_testbed import hosts, policy, testbed


@pytest.fixture
def computes(monkeypatch):
    state = {"running": True, "links": {"hv1": {"shaped": False}, "hv2": {"shaped": False}}}
    monkeypatch.setattr(hosts, "running_pid", lambda daemon: 42 if state["running"] else None)
    monkeypatch.setattr(policy, "link_state", lambda host: state["links"][host.name])
    return state


def test_running_and_unshaped_as_nova_defaults_want(computes):
    assert testbed._computes_as_configured(policy.Policy())


def test_a_stopped_daemon_needs_the_restart(computes):
    computes["running"] = False
    assert not testbed._computes_as_configured(policy.Policy())


def test_a_shaped_link_where_the_policy_wants_none_needs_the_restart(computes):
    computes["links"]["hv2"] = {"shaped": True, "rate": "16Mbit", "bytes_sent_shaped": 0}
    assert not testbed._computes_as_configured(policy.Policy())


def test_the_link_at_the_policys_rate_on_both_hosts(computes):
    shaped = {"shaped": True, "rate": "160Mbit", "bytes_sent_shaped": 123}
    computes["links"] = {"hv1": shaped, "hv2": shaped}
    assert testbed._computes_as_configured(policy.Policy(link_mbit=160))
    computes["links"]["hv1"] = {"shaped": True, "rate": "40Mbit", "bytes_sent_shaped": 0}
    assert not testbed._computes_as_configured(policy.Policy(link_mbit=160))
    computes["links"]["hv1"] = {"shaped": False}
    assert not testbed._computes_as_configured(policy.Policy(link_mbit=160))


def test_a_compute_counts_as_restarted_only_after_reporting_in_a_later_second():
    from rally_lm_testbed import bootstrap

    stopped = 1796405667.8  # 2026-12-04T17:34:27.8Z
    # The old process's last report, in the same second: Nova keeps no fractions.
    assert not bootstrap._reported_after({"updated_at": "2026-12-04T17:34:27.000000"}, stopped)
    assert not bootstrap._reported_after({"updated_at": "2026-12-04T17:33:59.000000"}, stopped)
    assert not bootstrap._reported_after({"updated_at": None}, stopped)
    assert bootstrap._reported_after({"updated_at": "2026-12-04T17:34:28.000000"}, stopped)


@pytest.fixture
def storage_switch(monkeypatch):
    """set_mode from local to ceph storage with the daemons faked: guests_on answers
    from ``state["guests"]`` (one list per call, the last repeated)."""
    state = {"guests": [["instance-1"]], "restarted": [], "slept": 0.0, "clock": 0.0}

    def guests_on(host):
        listed = state["guests"][0] if len(state["guests"]) == 1 else state["guests"].pop(0)
        return listed if host.name == "hv1" else []

    def sleep(seconds):
        state["slept"] += seconds
        state["clock"] += seconds

    monkeypatch.setattr(testbed, "read_mode", lambda: {
        "storage": "local", "tunnelled": "off", "policy": policy.Policy().to_dict(),
        "network": "linuxbridge"})
    monkeypatch.setattr(testbed, "preflight", lambda backend: None)
    monkeypatch.setattr(testbed, "is_up", lambda: True)
    monkeypatch.setattr(testbed, "guests_on", guests_on)
    monkeypatch.setattr(testbed, "_restart_computes",
                        lambda mode: state["restarted"].append(mode["storage"]) or 0.0)
    monkeypatch.setattr(testbed, "write_mode", lambda mode: None)
    monkeypatch.setattr(testbed, "wait_computes", lambda since=None: None)
    monkeypatch.setattr(testbed, "log", lambda message: None)
    monkeypatch.setattr(testbed.time, "sleep", sleep)
    monkeypatch.setattr(testbed.time, "monotonic", lambda: state["clock"])
    return state


def test_a_storage_switch_with_guests_is_refused_at_once_by_default(storage_switch):
    with pytest.raises(RuntimeError, match=r"guests running: \{'hv1': \['instance-1'\]"):
        testbed.set_mode("ceph", None)
    assert storage_switch["restarted"] == [] and storage_switch["slept"] == 0.0


def test_a_storage_switch_waits_for_guests_being_deleted(storage_switch):
    storage_switch["guests"] = [["instance-1"], ["instance-1"], ["instance-1"], []]
    assert testbed.set_mode("ceph", None, guests_gone_within=180)["storage"] == "ceph"
    assert storage_switch["restarted"] == ["ceph"] and storage_switch["slept"] == 4.0


def test_guests_that_stay_past_the_wait_still_refuse_the_switch(storage_switch):
    with pytest.raises(RuntimeError, match="guests running"):
        testbed.set_mode("ceph", None, guests_gone_within=10)
    assert storage_switch["restarted"] == [] and storage_switch["slept"] == 10.0
