"""The benchmark guest: Debian's kernel + a busybox initramfs + rally-lm-agent.

Built from Debian packages on first use and cached by kernel version. It
boots under software emulation in a few seconds, takes its address from the
config drive and runs its user_data, like a cloud image with cloud-init.
"""

from __future__ import annotations

import dataclasses
import gzip
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

CACHE = Path(os.environ.get("RALLY_LM_CACHE", "/var/cache/rally-lm"))
FILES = Path(__file__).parent / "files"
#: What the guest needs, by module name; dependencies are resolved from modules.dep.
MODULES = ["virtio_pci", "virtio_net", "virtio_blk", "ata_piix", "ahci", "sr_mod", "isofs",
           "vfat", "nls_cp437", "nls_utf8", "nls_ascii"]
ROOT_DISK_MIB = 64


@dataclasses.dataclass(frozen=True)
class GuestImage:
    kernel: Path
    ramdisk: Path
    root_disk: Path
    kernel_version: str


def _run(argv: list[str], cwd: Path | None = None) -> str:
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {proc.stderr.strip()[-2000:]}")
    return proc.stdout


def kernel_package() -> str:
    """The concrete linux-image package linux-image-amd64 points at."""
    out = _run(["apt-cache", "depends", "linux-image-amd64"])
    for line in out.splitlines():
        name = line.split(":")[-1].strip()
        if line.strip().startswith("Depends:") and name.startswith("linux-image-6"):
            return name
    raise RuntimeError("apt knows no linux-image-6.* package: run apt-get update")


def module_load_order(modules_dir: Path, wanted: list[str]) -> list[str]:
    """Module paths (relative to modules_dir) in an order insmod accepts."""
    deps: dict[str, list[str]] = {}
    by_name: dict[str, str] = {}
    for line in (modules_dir / "modules.dep").read_text().splitlines():
        path, _, rest = line.partition(":")
        deps[path] = rest.split()
        by_name[Path(path).name.removesuffix(".ko").replace("-", "_")] = path
    order: list[str] = []

    def visit(path: str) -> None:
        if path in order:
            return
        for dep in deps.get(path, []):
            visit(dep)
        order.append(path)

    for name in wanted:
        if name not in by_name:
            continue  # built into this kernel
        visit(by_name[name])
    return order


def build(cache: Path = CACHE) -> GuestImage:
    """Build (or reuse) the guest image; returns where its three files are."""
    package = kernel_package()
    version = package.removeprefix("linux-image-")
    target = cache / "guest" / version
    image = GuestImage(
        kernel=target / "vmlinuz",
        ramdisk=target / "initrd.img",
        root_disk=target / "root.raw",
        kernel_version=version,
    )
    agent_source = FILES / "agent.c"
    init_source = FILES / "guest-init.sh"
    stamp = target / "inputs"
    inputs = f"{agent_source.read_text()}\n{init_source.read_text()}"
    if stamp.exists() and stamp.read_text() == inputs and image.ramdisk.exists():
        return image

    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="rally-lm-guest-") as tmp:
        work = Path(tmp)
        os.chmod(work, 0o755)  # apt's _apt user writes the download here
        _run(["apt-get", "download", package], cwd=work)
        deb = next(work.glob("linux-image-*.deb"))
        _run(["dpkg-deb", "-x", str(deb), str(work / "kernel")])
        modules_dir = work / "kernel" / "lib" / "modules" / version
        # modules.dep is made at install time, not shipped in the package.
        _run([shutil.which("depmod") or "/sbin/depmod", "-b", str(work / "kernel"), version])
        root = work / "initramfs"
        (root / "bin").mkdir(parents=True)
        (root / "lib" / "modules").mkdir(parents=True)
        for name in ("proc", "sys", "dev", "tmp", "config"):
            (root / name).mkdir()
        shutil.copy(shutil.which("busybox") or "/bin/busybox", root / "bin" / "busybox")
        _run(["gcc", "-O2", "-static", "-o", str(root / "bin" / "rally-lm-agent"),
              str(agent_source)])
        order = module_load_order(modules_dir, MODULES)
        for path in order:
            shutil.copy(modules_dir / path, root / "lib" / "modules" / Path(path).name)
        (root / "modules.order").write_text("\n".join(Path(p).name for p in order) + "\n")
        shutil.copy(init_source, root / "init")
        os.chmod(root / "init", 0o755)
        cpio = subprocess.run(
            "find . | cpio -o -H newc --quiet", shell=True, cwd=root, capture_output=True,
            check=True,
        ).stdout
        image.ramdisk.write_bytes(gzip.compress(cpio, compresslevel=6))
        shutil.copy(work / "kernel" / "boot" / f"vmlinuz-{version}", image.kernel)
    with open(image.root_disk, "wb") as disk:
        disk.truncate(ROOT_DISK_MIB << 20)
    stamp.write_text(inputs)
    return image
