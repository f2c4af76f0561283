"""User data that starts the workload agent in a guest.

Two deliveries:

* ``cloud-init`` (default): cloud-config for stock cloud images (Ubuntu,
  Debian, CentOS/RHEL and friends). ``write_files`` carries the Python agent
  (gzip + base64) and a systemd unit that starts it on every boot; ``runcmd``
  enables it (or, without systemd, starts it in the background). The agent
  runs with whichever Python 3 the image has: cloud-init itself needs one.
* ``image``: a shell script for images that already ship ``rally-lm-agent``
  (the testbed's tiny image, which runs its user data as a script).

Nova accepts at most 65535 bytes of base64-encoded user data.
"""

from __future__ import annotations

import base64
import gzip
import shlex
from pathlib import Path

import yaml

AGENT = Path(__file__).with_name("agent.py")
AGENT_PATH = "/usr/local/lib/rally-lm/agent.py"
RUNNER_PATH = "/usr/local/lib/rally-lm/run-agent"
UNIT_PATH = "/etc/systemd/system/rally-lm-agent.service"
#: Nova's limit, on the base64-encoded user data.
MAX_USER_DATA = 65535
DELIVERIES = ("cloud-init", "image")


class UserDataTooLarge(ValueError):
    """The user data would be refused by Nova."""


def _runner(argv: list[str]) -> str:
    """A wrapper that finds the image's Python 3 (RHEL 8 has only platform-python)."""
    return "\n".join([
        "#!/bin/sh",
        "# rally_lm workload agent: run it with the Python 3 this image has.",
        "for python in python3 /usr/libexec/platform-python /usr/bin/python3; do",
        "    if command -v \"$python\" >/dev/null 2>&1; then",
        f"        exec \"$python\" {AGENT_PATH} {shlex.join(argv)}",
        "    fi",
        "done",
        "echo 'rally-lm-agent: no Python 3 in this image' >&2",
        "exit 1",
        "",
    ])


UNIT = """[Unit]
Description=rally_lm workload agent (echo for the probes, memory and disk load)
After=network.target

[Service]
ExecStart=/bin/sh """ + RUNNER_PATH + """
Restart=always
RestartSec=1

[Install]
WantedBy=multi-user.target
"""


def cloud_config(argv: list[str]) -> str:
    packed = base64.b64encode(gzip.compress(AGENT.read_bytes(), mtime=0)).decode()
    start = (f"if command -v systemctl >/dev/null 2>&1; then systemctl daemon-reload && "
             f"systemctl enable --now rally-lm-agent.service; else nohup /bin/sh {RUNNER_PATH} "
             f">/var/log/rally-lm-agent.log 2>&1 & fi")
    document = {
        "write_files": [
            {"path": AGENT_PATH, "permissions": "0755", "encoding": "gz+b64",
             "content": packed},
            {"path": RUNNER_PATH, "permissions": "0755", "content": _runner(argv)},
            {"path": UNIT_PATH, "permissions": "0644", "content": UNIT},
        ],
        "runcmd": [["sh", "-c", start]],
    }
    return "#cloud-config\n# rally_lm workload agent\n" + yaml.safe_dump(document,
                                                                           sort_keys=False)


def shell_script(argv: list[str]) -> str:
    return ("#!/bin/sh\n# rally-lm workload agent\nexec "
            + shlex.join(["rally-lm-agent", *argv]) + "\n")


def user_data(argv: list[str], delivery: str = "cloud-init") -> str:
    """The user data for a delivery; refuses what Nova would refuse."""
    if delivery not in DELIVERIES:
        raise ValueError(f"unknown agent delivery {delivery!r} ({', '.join(DELIVERIES)})")
    text = cloud_config(argv) if delivery == "cloud-init" else shell_script(argv)
    encoded = len(base64.b64encode(text.encode()))
    if encoded > MAX_USER_DATA:
        raise UserDataTooLarge(f"user data of {encoded} bytes (base64) exceeds Nova's "
                               f"{MAX_USER_DATA}")
    return text
