"""A whole-disk cloud image like the ones operators use, built from Debian packages.

Debian bookworm with systemd, cloud-init (reading the config drive) and
python3, Debian's cloud kernel and initramfs, an ext4 root on ``/dev/vda1``
of an MBR-partitioned disk, and extlinux as the bootloader: a normal single
Glance image that boots the way clouds boot. Nothing of rally_lm is inside:
the workload agent arrives in the user data, as on an operator's cloud.

Built with mmdebstrap from the machine's apt sources on first use (a few
minutes) and cached in ``/var/cache/rally-lm/cloud-image/<key>/`` by a hash
of the recipe; the image is stored as qcow2.

Lifecycle: ``build()`` (install/configure in devstack's words) - the
testbed's bootstrap registers it in Glance.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from rally_lm_testbed import image

CACHE = image.CACHE / "cloud-image"
DISK_MIB = 2048
#: dbus: systemd-logind then turns ACPI's power button (Nova's soft reboot) into a
#: clean shutdown, as on any vendor image.
#: net-tools: cloud-init's ifupdown renderer adds routes with ``route add`` (post-up);
#: without it a static subnet's default gateway never reaches the guest, which then
#: answers its own subnet only - not a probe behind a router or a floating IP.
PACKAGES = ["systemd-sysv", "udev", "dbus", "linux-image-cloud-amd64", "initramfs-tools",
            "cloud-init", "python3", "ifupdown", "iproute2", "net-tools", "procps",
            "extlinux", "e2fsprogs", "netbase"]
#: cloud-init looks only where the testbed (and most private clouds) put its data; the
#: image has no locales package and no SSH server to make keys for (host keys given,
#: even none, are not generated; ``ssh_genkeytypes: []`` fails cloud-init's schema and
#: prints "Invalid cloud-config provided" on every boot).
CLOUD_CFG = """datasource_list: [ConfigDrive, NoCloud, None]
locale: C.UTF-8
ssh_keys: {}
"""
EXTLINUX_CFG = """DEFAULT linux
TIMEOUT 0
PROMPT 0
LABEL linux
  KERNEL /vmlinuz
  INITRD /initrd.img
  APPEND root=LABEL=root rw console=ttyS0 net.ifnames=0 quiet
"""
FSTAB = "LABEL=root / ext4 defaults 0 1\n"


@dataclasses.dataclass(frozen=True)
class CloudImage:
    path: Path
    key: str
    disk_mib: int = DISK_MIB


def recipe_key() -> str:
    recipe = "\n".join([*PACKAGES, CLOUD_CFG, EXTLINUX_CFG, FSTAB, str(DISK_MIB), "v1"])
    return hashlib.sha256(recipe.encode()).hexdigest()[:12]


def _run(argv: list[str], **kwargs) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, **kwargs)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}): "
                           f"{(proc.stderr or proc.stdout).strip()[-2000:]}")
    return proc.stdout


@contextlib.contextmanager
def _loop(disk: Path, offset: int) -> Iterator[str]:
    device = _run(["losetup", "--find", "--show", "--offset", str(offset), str(disk)]).strip()
    try:
        yield device
    finally:
        subprocess.run(["losetup", "--detach", device], capture_output=True)


@contextlib.contextmanager
def _mounted(device: str, where: Path) -> Iterator[Path]:
    where.mkdir(parents=True, exist_ok=True)
    _run(["mount", device, str(where)])
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], capture_output=True)


def build(cache: Path = CACHE, log=print) -> CloudImage:
    """Build (or reuse) the image; returns where the qcow2 file is."""
    key = recipe_key()
    target = cache / key
    result = CloudImage(path=target / "rally-lm-cloud.qcow2", key=key)
    if result.path.exists():
        return result
    missing = [t for t in ("mmdebstrap", "extlinux", "losetup", "qemu-img")
               if shutil.which(t) is None]
    if missing:
        raise RuntimeError(f"cannot build the cloud image without {', '.join(missing)}: "
                           "run tools/install-system-deps.sh")
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="rally-lm-cloud-", dir=cache) as tmp:
        work = Path(tmp)
        os.chmod(work, 0o755)
        root = work / "root"
        log("cloud image: mmdebstrap (Debian bookworm, systemd, cloud-init, python3)")
        _run(["mmdebstrap", "--variant=minbase", "--include=" + ",".join(PACKAGES),
              "--aptopt=Apt::Install-Recommends \"false\"",
              "--dpkgopt=path-exclude=/usr/share/doc/*",
              "--dpkgopt=path-exclude=/usr/share/man/*",
              "--dpkgopt=path-exclude=/usr/share/locale/*",
              "bookworm", str(root)], timeout=1800)
        _configure(root)
        disk = work / "disk.raw"
        log("cloud image: partition, ext4 root, extlinux")
        _make_disk(root, disk)
        log("cloud image: qcow2")
        _run(["qemu-img", "convert", "-O", "qcow2", "-c", str(disk), str(result.path) + ".tmp"],
             timeout=1800)
        os.replace(str(result.path) + ".tmp", result.path)
    return result


def _configure(root: Path) -> None:
    """What a cloud image vendor sets: fstab, hostname, cloud-init, bootloader config."""
    (root / "etc" / "fstab").write_text(FSTAB)
    (root / "etc" / "hostname").write_text("debian\n")
    (root / "etc" / "cloud" / "cloud.cfg.d" / "90-rally-lm-datasources.cfg").write_text(
        CLOUD_CFG)
    interfaces = root / "etc" / "network" / "interfaces"
    interfaces.write_text("source /etc/network/interfaces.d/*\nauto lo\n"
                          "iface lo inet loopback\n")
    (root / "boot" / "extlinux").mkdir(parents=True, exist_ok=True)
    (root / "boot" / "extlinux" / "extlinux.conf").write_text(EXTLINUX_CFG)
    # The kernel and initramfs under stable names at the root, as extlinux wants them.
    boot = root / "boot"
    kernel = sorted(boot.glob("vmlinuz-*"))[-1]
    initrd = sorted(boot.glob("initrd.img-*"))[-1]
    for link, real in (("vmlinuz", kernel), ("initrd.img", initrd)):
        path = root / link
        if path.is_symlink() or path.exists():
            path.unlink()
        path.symlink_to(Path("boot") / real.name)
    # No machine identity baked in: each instance gets its own on first boot.
    (root / "etc" / "machine-id").write_text("")


def _make_disk(root: Path, disk: Path) -> None:
    offset = 1 << 20
    with open(disk, "wb") as handle:
        handle.truncate(DISK_MIB << 20)
    _run(["sfdisk", "--quiet", str(disk)], input="label: dos\nstart=2048, type=83, bootable\n")
    with _loop(disk, offset) as device:
        _run(["mkfs.ext4", "-q", "-L", "root", "-O", "^metadata_csum,^64bit",
              device, str((DISK_MIB << 20) // 4096 - 256) + ""], timeout=300)
        with _mounted(device, disk.parent / "mnt") as mnt:
            _run(["cp", "-a", f"{root}/.", str(mnt)], timeout=1800)
            _run(["extlinux", "--install", str(mnt / "boot" / "extlinux")])
    mbr = Path("/usr/lib/EXTLINUX/mbr.bin")
    with open(disk, "r+b") as handle:
        handle.write(mbr.read_bytes()[:440])
