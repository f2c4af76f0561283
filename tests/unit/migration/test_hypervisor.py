from pathlib import Path

import pytest

from rally_lm.migration import hypervisor

# As virsh spells them (virshDomainPausedReason); the testbed printed the
# incoming domain's "starting up" and "migrating" (see the fault tests).
GUEST_STATES = ["running (booted)", "running (unpaused)", "running (migrated)",
                "running (migration canceled)", "paused (user)", "paused (I/O error)"]
SHELL_STATES = ["paused (starting up)", "paused (migrating)", "paused (post-copy)"]
NO_GUEST_STATES = ["shut off (migrated)", "in shutdown (unknown)", "crashed (unknown)"]


@pytest.mark.parametrize("state", GUEST_STATES)
def test_a_running_or_paused_guest_runs_there(state):
    assert hypervisor.runs_guest(state) and not hypervisor.in_transit(state)


@pytest.mark.parametrize("state", SHELL_STATES)
def test_a_migration_shell_is_in_transit(state):
    assert hypervisor.in_transit(state) and not hypervisor.runs_guest(state)


@pytest.mark.parametrize("state", NO_GUEST_STATES)
def test_a_stopped_domain_runs_nothing(state):
    assert not hypervisor.runs_guest(state) and not hypervisor.in_transit(state)


# `virsh domjobinfo --completed` on hv2 after a testbed migration (libvirt from
# bookworm-backports), verbatim.
JOBINFO = (Path(__file__).resolve().parents[2] / "fixtures" / "libvirt"
           / "domjobinfo-completed-incoming.txt")


def test_completed_job_statistics_are_read_in_ms_and_bytes():
    stats = hypervisor.parse_domjobinfo(JOBINFO.read_text())
    assert stats["total_ms"] == 1471 and stats["downtime_ms"] == 103
    assert stats["setup_ms"] == 2 and stats["iterations"] == 4 and stats["dirty_rate"] == 0
    assert stats["data_processed"] == pytest.approx(114.451 * 1024**2)
    assert stats["memory_processed"] == pytest.approx(114.451 * 1024**2)
    # "Time elapsed w/o network" and "Downtime w/o network" are other figures.
    assert len(stats) == 7


def test_a_job_without_figures_gives_none():
    assert hypervisor.parse_domjobinfo("Job type:         None\n") == {}
