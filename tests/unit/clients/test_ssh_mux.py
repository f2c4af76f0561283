"""virsh's ssh sessions are shared through a wrapper named in the URI's command parameter."""

import os
import subprocess
import urllib.parse

import pytest

from rally_lm.clients import ssh_mux


@pytest.fixture(autouse=True)
def fresh_mux(monkeypatch):
    monkeypatch.delenv("RALLY_LM_SSH_MULTIPLEX", raising=False)
    yield
    ssh_mux.close_all()


def _params(uri):
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(uri).query))


def test_ssh_uri_gains_the_wrapper_and_keeps_its_parameters():
    uri = "qemu+ssh://root@hv1:2222/system?keyfile=/k/id%20x&no_verify=1"
    shared = ssh_mux.shared(uri)
    parts = urllib.parse.urlsplit(shared)
    assert (parts.scheme, parts.netloc, parts.path) == ("qemu+ssh", "root@hv1:2222", "/system")
    params = _params(shared)
    assert params["keyfile"] == "/k/id x" and params["no_verify"] == "1"
    wrapper = params["command"]
    assert os.access(wrapper, os.X_OK)
    with open(wrapper) as script:
        text = script.read()
    assert "ControlMaster=auto" in text and f"ControlPersist={ssh_mux.PERSIST_SECONDS}" in text
    assert text.rstrip().endswith('"$@"')


def test_one_wrapper_per_process():
    assert _params(ssh_mux.shared("qemu+ssh://hv1/system"))["command"] == \
        _params(ssh_mux.shared("qemu+ssh://hv2/system"))["command"]


@pytest.mark.parametrize("uri", ["qemu+tls://hv1/system", "qemu+tcp://hv1/system",
                                 "qemu:///system",
                                 "qemu+ssh://hv1/system?command=/opt/my-ssh"])
def test_other_uris_are_used_as_given(uri):
    assert ssh_mux.shared(uri) == uri


def test_switched_off_by_the_environment(monkeypatch):
    monkeypatch.setenv("RALLY_LM_SSH_MULTIPLEX", "0")
    assert ssh_mux.shared("qemu+ssh://hv1/system") == "qemu+ssh://hv1/system"


def test_wrapper_passes_its_arguments_to_ssh(tmp_path, monkeypatch):
    # A stand-in ssh on PATH shows what the wrapper runs.
    fake = tmp_path / "ssh"
    fake.write_text('#!/bin/sh\nprintf "%s\\n" "$@"\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    wrapper = _params(ssh_mux.shared("qemu+ssh://hv1/system"))["command"]
    out = subprocess.run([wrapper, "-T", "hv1", "sh -c 'nc -U sock'"], capture_output=True,
                         text=True, check=True).stdout.splitlines()
    directory = os.path.dirname(wrapper)
    assert out == ["-o", "ControlMaster=auto", "-o", f"ControlPath={directory}/%C", "-o",
                   f"ControlPersist={ssh_mux.PERSIST_SECONDS}", "-T", "hv1",
                   "sh -c 'nc -U sock'"]


def test_close_all_removes_the_directory():
    wrapper = _params(ssh_mux.shared("qemu+ssh://hv1/system"))["command"]
    ssh_mux.close_all()
    assert not os.path.exists(os.path.dirname(wrapper))
    ssh_mux.close_all()  # twice is harmless


def test_close_all_asks_every_master_to_exit(tmp_path, monkeypatch):
    calls = tmp_path / "calls"
    fake = tmp_path / "ssh"
    fake.write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    directory = os.path.dirname(_params(ssh_mux.shared("qemu+ssh://hv1/system"))["command"])
    for name in ("aaaa", "bbbb"):  # what ControlPath=%C names the sockets
        open(os.path.join(directory, name), "w").close()
    ssh_mux.close_all()
    lines = sorted(calls.read_text().splitlines())
    assert lines == [f"-o ControlPath={directory}/{name} -O exit rally-lm-mux"
                     for name in ("aaaa", "bbbb")]
    assert not os.path.exists(directory)


def test_directories_of_dead_processes_are_swept_and_live_ones_kept(tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    orphan = tmp_path / f"{ssh_mux.PREFIX}{dead.pid}-abc"
    alive = tmp_path / f"{ssh_mux.PREFIX}{os.getpid()}-def"
    unnamed = tmp_path / f"{ssh_mux.PREFIX}old"
    other = tmp_path / "something-else-1"
    for directory in (orphan, alive, unnamed, other):
        directory.mkdir()
    (orphan / "ssh").write_text("#!/bin/sh\n")
    assert ssh_mux.sweep_orphans(str(tmp_path)) == [str(orphan)]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        p.name for p in (alive, unnamed, other))


def test_the_wrapper_directory_names_its_process():
    wrapper = _params(ssh_mux.shared("qemu+ssh://hv1/system"))["command"]
    name = os.path.basename(os.path.dirname(wrapper))
    assert name.startswith(f"{ssh_mux.PREFIX}{os.getpid()}-")


def test_a_master_already_gone_is_no_error_and_says_nothing(tmp_path, monkeypatch, capfd):
    # ssh -O exit on a socket whose master has exited: exit status 255, a complaint.
    fake = tmp_path / "ssh"
    fake.write_text('#!/bin/sh\necho "Control socket connect: No such file" >&2\nexit 255\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    directory = os.path.dirname(_params(ssh_mux.shared("qemu+ssh://hv1/system"))["command"])
    open(os.path.join(directory, "cccc"), "w").close()
    capfd.readouterr()
    ssh_mux.close_all()
    assert not os.path.exists(directory)
    assert capfd.readouterr() == ("", "")
