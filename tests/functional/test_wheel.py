"""The operator's path: rally_lm installed from its wheel, run on someone else's cloud.

The testbed plays that cloud: an admin openrc and nothing else of it (no
testbed import, no hypervisor URIs), guests reached through floating IPs.
The wheel is installed into a venv of its own, outside the checkout; the
dependencies come from the test suite's venv (a path entry, so its editable
rally_lm is not what runs). Lean: one cell, one VM, one round trip.
"""

import json
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import yaml

from rally_lm_testbed import testbed

pytestmark = [pytest.mark.functional, pytest.mark.testbed]
ROOT = Path(__file__).resolve().parents[2]


def in_venv(venv: Path, *argv: str, cwd: Path, env: dict, timeout: float = 1800):
    return subprocess.run(testbed.probe_command([str(venv / "bin" / argv[0]), *argv[1:]]),
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def wheel_venv(testbed_session, tmp_path_factory):
    """A venv with only the wheel installed, the suite's site-packages for the rest."""
    work = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w",
                    str(work / "dist"), str(ROOT)], check=True, capture_output=True)
    (wheel,) = (work / "dist").glob("rally_lm-*.whl")
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = Path(subprocess.run([str(venv / "bin" / "python"), "-c",
                                "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    (site / "suite-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"),
                    "install", "-q", "--no-deps", str(wheel)], check=True, capture_output=True)
    # The suite's venv has rally's module, not this venv's console script.
    rally = venv / "bin" / "rally"
    rally.write_text(f"#!{venv / 'bin' / 'python'}\nimport sys\nfrom rally.cli.main import main"
                     "\nsys.exit(main())\n")
    rally.chmod(0o755)
    return work, venv


def test_the_wheel_runs_a_study_cell_against_the_testbed_as_a_cloud(wheel_venv):
    work, venv = wheel_venv
    testbed.set_mode("shared", "off")
    home = work / "home"
    (home / ".rally").mkdir(parents=True)
    # Where Rally looks for its configuration by default: an operator's own.
    (home / ".rally" / "rally.conf").write_text(
        f"[database]\nconnection = sqlite:///{home}/.rally/rally.db\n")
    env = {"PATH": f"{venv / 'bin'}:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(home),
           "LANG": "C.UTF-8", **testbed.credentials()}
    where = in_venv(venv, "python", "-c", "import rally_lm; print(rally_lm.__file__)",
                    cwd=work, env=env)
    assert where.stdout.strip().startswith(str(venv)), where.stdout + where.stderr
    copied = in_venv(venv, "rally-lm", "templates", "--out", "mine", cwd=work, env=env)
    assert copied.returncode == 0, copied.stderr
    template_args = yaml.safe_load(
        (work / "mine" / "task_templates" / "args" / "testbed-floating.yaml").read_text())
    cell = {k: template_args[k] for k in ("source_host", "target_host", "agent_delivery",
                                          "probe_via", "floating_network")}
    cell.update(storage="shared", tunnelling="off", dirty_rate_mib=4,
                dirty_working_set_mib=32, migration_timeout=300)
    (work / "my-cell.yaml").write_text(yaml.safe_dump(cell))
    for argv in (["rally", "db", "create"],
                 ["rally", "env", "create", "--name", "theirs", "--from-sysenv"]):
        done = in_venv(venv, *argv, cwd=work, env=env)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    study = in_venv(venv, "python", "-X", "importtime", "-m", "rally_lm.cli.main", "study",
                    "--cloud", "my-cell.yaml", "--flavors",
                    "lm.small.scaled-16,lm.medium.scaled-16,lm.large.scaled-16",
                    "--cells", "small", "--vms", "1", "--round-trips", "1", "--out", "st",
                    cwd=work, env=env)
    assert study.returncode == 0, study.stdout[-3000:] + study.stderr[-3000:]
    state = json.loads((work / "st" / "study.json").read_text())["cells"]
    assert state["shared-off-small"]["status"] == "done", state
    assert state["shared-off-small"]["migrations"] == 2
    assert (work / "st" / "comparison" / "comparison.html").exists()
    # Someone else's cloud: the study never reached for the testbed's code.
    assert "rally_lm_testbed" not in study.stderr
    # Its reports, stored from the study's directory.
    assert (work / "st" / state["shared-off-small"]["json"]).exists()
