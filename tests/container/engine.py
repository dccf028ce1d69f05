"""A Docker engine of the test's own, and an Airflow-shaped base image made from Debian packages.

This machine kind has no Docker engine running and cannot pull images, but Debian's
``docker.io`` daemon runs as root with ``--storage-driver=overlay2 --iptables=false
--bridge=none`` (no bridge, no NAT rules: every container uses the host's network), on a
private socket, data root and exec root, so it shares nothing with any other engine. An
image's root filesystem can be made with ``debootstrap`` and brought in with ``docker
import``; tests/container/base/Dockerfile turns it into the base docker/Dockerfile needs.

Everything here is started and stopped by pid (the daemon, then anything still running
under its exec root), never by name.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
BASE_CONTEXT = HERE / "base"
DEBIAN_SUITE = "bookworm"  # Python 3.11, the lock's
DEBIAN_PACKAGES = ["python3", "python3-venv", "ca-certificates", "curl", "dumb-init", "libpq5"]
HOST_EXTRA_CA = Path("/usr/local/share/ca-certificates")


def debian_mirror() -> str:
    """The Debian mirror this machine's apt uses (deb822 or one-line sources), else deb.debian.org."""
    if os.environ.get("SIS_LEARNING_DEBIAN_MIRROR"):
        return os.environ["SIS_LEARNING_DEBIAN_MIRROR"]
    sources = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for source in sources:
        try:
            text = source.read_text()
        except OSError:
            continue
        for line in text.splitlines():
            words = line.split()
            candidates = words[1:] if words[:1] == ["URIs:"] else [w for w in words if w.startswith("http")]
            for word in candidates:
                if word.rstrip("/").endswith("/debian"):
                    return word
    return "http://deb.debian.org/debian"


def missing_tools() -> list[str]:
    return [tool for tool in ["dockerd", "debootstrap", "docker"] if shutil.which(tool) is None]


@dataclass
class DockerEngine:
    """``dockerd`` on a private socket, data root and exec root under ``root``."""

    root: Path
    process: subprocess.Popen | None = None
    log_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.socket = self.root / "docker.sock"
        self.data_root = self.root / "data"
        self.exec_root = self.root / "exec"
        self.log_path = self.root / "dockerd.log"

    @property
    def host(self) -> str:
        return f"unix://{self.socket}"

    def env(self, **extra: str) -> dict[str, str]:
        """The environment for docker and docker compose against this engine (classic builder: no BuildKit here)."""
        env = {key: value for key, value in os.environ.items() if not key.startswith(("DOCKER_", "COMPOSE_"))}
        env.update({"DOCKER_HOST": self.host, "DOCKER_BUILDKIT": "0", "DOCKER_CONFIG": str(self.root / "client")})
        env.update(extra)
        return env

    def start(self, timeout: float = 60) -> None:
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                # Lower CPU priority for the daemon and so every container: the rest of the suite keeps its share.
                [
                    "nice",
                    "-n",
                    "10",
                    "dockerd",
                    "--host",
                    self.host,
                    "--data-root",
                    str(self.data_root),
                    "--exec-root",
                    str(self.exec_root),
                    "--pidfile",
                    str(self.root / "dockerd.pid"),
                    "--storage-driver=overlay2",
                    "--iptables=false",
                    "--bridge=none",
                    "--ip-masq=false",
                    "--log-level=warn",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"dockerd exited with {self.process.returncode}: {self.log_tail()}")
            if self.docker("info", "--format", "{{.ServerVersion}}", check=False, timeout=20).returncode == 0:
                return
            time.sleep(0.5)
        raise RuntimeError(f"dockerd did not answer within {timeout:.0f}s: {self.log_tail()}")

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def docker(
        self, *arguments: str, check: bool = True, timeout: float = 600, input: bytes | None = None
    ) -> subprocess.CompletedProcess:
        result = subprocess.run(
            ["docker", *arguments], env=self.env(), capture_output=True, timeout=timeout, input=input
        )
        if check and result.returncode != 0:
            raise RuntimeError(
                f"docker {' '.join(arguments)}: {result.returncode}\n"
                f"{result.stdout.decode(errors='replace')[-3000:]}\n"
                f"{result.stderr.decode(errors='replace')[-3000:]}"
            )
        return result

    def own_pids(self) -> list[int]:
        """Processes still running from this engine: the daemon, its containerd, shims, containers' init.

        Found by this engine's private paths in their command lines (containerd and the shims
        carry the exec root) or by being the daemon's pid; never by a process name.
        """
        marker = str(self.root).encode()
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if marker in cmdline or (self.process and int(entry.name) == self.process.pid):
                found.append(int(entry.name))
        return found

    def stop(self, grace: float = 60) -> list[int]:
        """SIGTERM to the daemon's pid (it stops its containers and containerd), then SIGKILL by pid
        to anything of this engine still running; unmount what it left; remove its files.
        Returns the pids that had to be killed."""
        killed: list[int] = []
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)
                killed.append(self.process.pid)
        deadline = time.monotonic() + 15
        while self.own_pids() and time.monotonic() < deadline:
            time.sleep(0.5)
        for pid in self.own_pids():
            try:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            except ProcessLookupError:
                pass
        for mount in self.mounts():
            subprocess.run(["umount", "-l", mount], capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)
        return killed

    def mounts(self) -> list[str]:
        """Mount points under this engine's root, deepest first."""
        points = []
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            point = line.split()[4]
            if point.startswith(str(self.root) + "/"):
                points.append(point)
        return sorted(points, key=len, reverse=True)


def build_debian_base(engine: DockerEngine, workdir: Path, tag: str) -> dict[str, float]:
    """debootstrap -> docker import -> tests/container/base/Dockerfile, tagged ``tag``; seconds per step."""
    seconds: dict[str, float] = {}
    rootfs = workdir / "rootfs"
    started = time.monotonic()
    result = subprocess.run(
        [
            "debootstrap",
            "--variant=minbase",
            f"--include={','.join(DEBIAN_PACKAGES)}",
            DEBIAN_SUITE,
            str(rootfs),
            debian_mirror(),
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"debootstrap failed ({result.returncode}): {result.stdout[-2000:]}\n{result.stderr[-2000:]}"
        )
    seconds["debootstrap"] = time.monotonic() - started

    started = time.monotonic()
    rootfs_tag = f"{tag}-rootfs"
    tar = subprocess.Popen(["tar", "-C", str(rootfs), "--numeric-owner", "-c", "."], stdout=subprocess.PIPE)
    imported = subprocess.run(
        ["docker", "import", "-", rootfs_tag],
        stdin=tar.stdout,
        env=engine.env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    tar.stdout.close()
    tar.wait(timeout=60)
    if imported.returncode != 0 or tar.returncode != 0:
        raise RuntimeError(f"docker import failed: {imported.stderr[-2000:]}")
    shutil.rmtree(rootfs, ignore_errors=True)
    seconds["import"] = time.monotonic() - started

    started = time.monotonic()
    context = workdir / "base-context"
    shutil.copytree(BASE_CONTEXT, context)
    (context / "extra-ca").mkdir()
    for certificate in sorted(HOST_EXTRA_CA.glob("**/*.crt")) if HOST_EXTRA_CA.is_dir() else []:
        shutil.copy(certificate, context / "extra-ca" / certificate.name)
    engine.docker(
        "build",
        "--network",
        "host",
        "--build-arg",
        f"BASE_ROOTFS={rootfs_tag}",
        "--tag",
        tag,
        str(context),
        timeout=900,
    )
    seconds["base image"] = time.monotonic() - started
    return seconds
