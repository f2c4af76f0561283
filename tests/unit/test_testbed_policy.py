"""The testbed's migration policies: what Nova gets, what is refused, how they are named."""

import argparse

import pytest

from rally_lm_testbed import cli
from rally_lm_testbed.policy import Policy


def test_defaults_are_novas_own():
    assert Policy().nova_options() == {
        "live_migration_permit_post_copy": False,
        "live_migration_permit_auto_converge": False,
        "live_migration_timeout_action": "abort",
        "live_migration_completion_timeout": 800,
        "live_migration_downtime": 500,
        "live_migration_downtime_steps": 10,
        "live_migration_downtime_delay": 75,
        "live_migration_bandwidth": 0,
        "live_migration_with_native_tls": False,
    }
    assert Policy().name() == "nova-default"
    assert Policy().problems(tunnelled=True) == []


def test_names_say_what_differs():
    assert Policy(post_copy=True, timeout_action="force_complete",
                  completion_timeout=10).name() == "post-copy+force-complete+timeout10"
    assert Policy(auto_converge=True, native_tls=True, bandwidth_mib=40,
                  max_downtime_ms=300).name() == "auto-converge+tls+downtime300+bw40"
    # The link is the environment, not the policy.
    assert Policy(link_mbit=80).name() == "nova-default"


@pytest.mark.parametrize("policy, tunnelled, fragment", [
    (Policy(native_tls=True), True, "native TLS and tunnelling together"),
    (Policy(max_downtime_ms=50), False, "max downtime must be >= 100"),
    (Policy(downtime_steps=2), False, "downtime steps and delay must be >= 3"),
    (Policy(timeout_action="pause"), False, "timeout action must be one of"),
    (Policy(completion_timeout=-1), False, "completion timeout must be >= 0"),
    (Policy(bandwidth_mib=-1), False, "bandwidth must be >= 0"),
    (Policy(link_mbit=0), False, "link rate must be > 0"),
])
def test_what_nova_would_refuse_is_refused_first(policy, tunnelled, fragment):
    problems = policy.problems(tunnelled)
    assert len(problems) == 1 and fragment in problems[0]


def test_round_trips_through_the_mode_file():
    policy = Policy(post_copy=True, link_mbit=80.0)
    assert Policy.from_dict(policy.to_dict()) == policy
    assert Policy.from_dict(None) == Policy()
    # A mode file written by a newer version may know more fields.
    assert Policy.from_dict({"post_copy": True, "future_knob": 1}) == Policy(post_copy=True)


def test_command_line_sets_only_what_it_names():
    args = argparse.Namespace(post_copy="on", auto_converge=None, timeout_action=None,
                              completion_timeout=0, max_downtime=None, downtime_steps=None,
                              downtime_delay=None, bandwidth=None, native_tls="off",
                              link_rate="80")
    assert cli.policy_changes(args) == {"post_copy": True, "completion_timeout": 0,
                                        "native_tls": False, "link_mbit": 80.0}
    args.link_rate = "off"
    assert cli.policy_changes(args)["link_mbit"] is None


def test_a_link_rate_that_is_no_number_is_refused():
    args = argparse.Namespace(link_rate="fast")
    with pytest.raises(RuntimeError, match="--link-rate takes Mbit/s or off, not 'fast'"):
        cli.policy_changes(args)
