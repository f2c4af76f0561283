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
