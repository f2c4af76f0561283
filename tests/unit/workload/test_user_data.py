"""User data that starts the agent: cloud-config for stock images, a script for the tiny one."""

import base64
import gzip
import subprocess
import sys

import pytest
import yaml

from rally_lm.task.contexts.nova.lm_workload import agent_argv, agent_user_data
from rally_lm.workload import status, user_data

AGENT = {"delivery": "cloud-init", "tcp_echo_port": 7, "udp_echo_port": 7,
         "dirty_rate_mib": 8, "dirty_working_set_mib": 64, "disk_fill_percent": 50,
         "disk_fill_path": "/"}


def test_cloud_config_carries_the_agent_and_starts_it_on_every_boot():
    text = agent_user_data(AGENT)
    assert text.startswith("#cloud-config\n")
    document = yaml.safe_load(text)
    files = {f["path"]: f for f in document["write_files"]}
    agent = files[user_data.AGENT_PATH]
    assert agent["encoding"] == "gz+b64"
    assert gzip.decompress(base64.b64decode(agent["content"])) == user_data.AGENT.read_bytes()
    runner = files[user_data.RUNNER_PATH]["content"]
    assert "--fill-path / --disk-fill 50" in runner and "--dirty-mib 64" in runner
    assert "platform-python" in runner  # RHEL 8 has no python3 by default
    unit = files[user_data.UNIT_PATH]["content"]
    assert "Restart=always" in unit and "WantedBy=multi-user.target" in unit
    assert "systemctl enable --now rally-lm-agent.service" in document["runcmd"][0][2]


def test_the_seed_workload_never_writes_a_raw_device_unless_named():
    assert "--disk" not in " ".join(agent_argv(AGENT)).replace("--disk-fill", "")
    dedicated = agent_argv({**AGENT, "disk_device": "/dev/vdb"})
    assert dedicated[dedicated.index("--disk") + 1] == "/dev/vdb"
    assert "--fill-path" not in dedicated


def test_tx_checksum_offload_is_left_alone_unless_turned_off():
    assert "--tx-checksum-offload" not in agent_argv(AGENT)
    assert "--tx-checksum-offload" not in agent_argv({**AGENT, "tx_checksum_offload": "keep"})
    off = agent_argv({**AGENT, "tx_checksum_offload": "off"})
    assert off[off.index("--tx-checksum-offload") + 1] == "off"
    runner = yaml.safe_load(agent_user_data({**AGENT, "tx_checksum_offload": "off"}))
    assert "--tx-checksum-offload off" in runner["write_files"][1]["content"]


def test_the_runner_script_is_valid_shell(tmp_path):
    runner = yaml.safe_load(agent_user_data(AGENT))["write_files"][1]["content"]
    script = tmp_path / "run-agent"
    script.write_text(runner)
    assert subprocess.run(["sh", "-n", str(script)]).returncode == 0


def test_the_image_delivery_is_a_script_for_an_agent_the_image_ships():
    text = agent_user_data({**AGENT, "delivery": "image"})
    assert text.startswith("#!/bin/sh\n") and "exec rally-lm-agent --tcp-echo 7" in text


def test_user_data_fits_novas_limit_and_an_oversized_one_is_refused(monkeypatch):
    encoded = len(base64.b64encode(agent_user_data(AGENT).encode()))
    assert encoded < user_data.MAX_USER_DATA / 4
    monkeypatch.setattr(user_data, "MAX_USER_DATA", 100)
    with pytest.raises(user_data.UserDataTooLarge, match="exceeds Nova's 100"):
        agent_user_data(AGENT)


def test_unknown_delivery_is_refused():
    with pytest.raises(ValueError, match="unknown agent delivery"):
        user_data.user_data([], "carrier-pigeon")


def test_status_lines_are_read_back_from_a_console_log():
    console = "\n".join([
        "[   15.5] cloud-init[295]: ci-info: ...",
        'rally-lm-agent: status {"disk": "filling", "disk_used_percent": 31.0}',
        'rally-lm-agent: status {"disk": "do',  # cut by the console's ring buffer
        '[  26.3] noise rally-lm-agent: status {"disk": "done", "disk_used_percent": 50.3}',
    ])
    assert status.latest(console) == {"disk": "done", "disk_used_percent": 50.3}
    assert len(status.statuses(console)) == 2
    assert status.latest("nothing here") is None
    assert status.refused("rally-lm-agent: refusing to write /dev/vda raw: /dev/vda1 holds "
                          "the filesystem mounted on /") == (
        "refusing to write /dev/vda raw: /dev/vda1 holds the filesystem mounted on /")


def test_the_agent_parses_its_command_line():
    sys.path.insert(0, str(user_data.AGENT.parent))
    from rally_lm.workload import agent

    args = agent.parse(agent_argv(AGENT))
    assert (args.fill_path, args.disk_fill, args.dirty_mib, args.dirty_rate) == ("/", 50, 64, 8)
    assert args.tx_checksum_offload == "keep"
    assert agent.parse(agent_argv({**AGENT, "tx_checksum_offload": "off"})
                       ).tx_checksum_offload == "off"
    with pytest.raises(SystemExit):
        agent.parse(["--fill-path", "/", "--disk", "/dev/vdb"])
