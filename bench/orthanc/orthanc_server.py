"""Orthanc with its DICOMweb plugin (Debian packages), on loopback with temporary storage."""

import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import requests

PLUGIN_CANDIDATES = [
    "/usr/share/orthanc/plugins/libOrthancDicomWeb.so",
    "/usr/lib/orthanc/libOrthancDicomWeb.so.1.7",
]


def ensure_installed() -> str:
    """Install orthanc and orthanc-dicomweb with apt-get if missing; the plugin's path."""
    if shutil.which("Orthanc") is None or not any(Path(p).exists() for p in PLUGIN_CANDIDATES):
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-q"], check=True, env=env)
        subprocess.run(
            ["apt-get", "install", "-y", "--no-install-recommends", "orthanc", "orthanc-dicomweb"],
            check=True,
            env=env,
        )
    listed = subprocess.run(
        ["dpkg", "-L", "orthanc-dicomweb"], capture_output=True, text=True, check=False
    ).stdout.split()
    for path in [*PLUGIN_CANDIDATES, *listed]:
        if path.endswith(".so") and Path(path).exists():
            return path
    raise RuntimeError("The Orthanc DICOMweb plugin was not found (dpkg -L orthanc-dicomweb).")


def version() -> str:
    out = subprocess.run(["Orthanc", "--version"], capture_output=True, text=True, check=False)
    first = (out.stdout or out.stderr).splitlines()
    return first[0] if first else "Orthanc (unknown version)"


@dataclass
class Orthanc:
    """A running Orthanc: its process, URLs and DICOM address."""

    workdir: Path
    http_port: int = 8142
    dicom_port: int = 4343
    aet: str = "ORTHANC"
    process: subprocess.Popen | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dicomweb(self) -> str:
        return f"{self.base}/dicom-web"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def config(self, plugin: str) -> dict:
        return {
            "Name": "bench-orthanc",
            "StorageDirectory": str(self.workdir / "storage"),
            "IndexDirectory": str(self.workdir / "index"),
            "StorageCompression": False,
            "HttpServerEnabled": True,
            "HttpPort": self.http_port,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "SslEnabled": False,
            "KeepAlive": True,
            "TcpNoDelay": True,
            "HttpThreadsCount": 50,
            "DicomServerEnabled": True,
            "DicomAet": self.aet,
            "DicomPort": self.dicom_port,
            "DicomCheckCalledAet": False,
            "DicomAlwaysAllowStore": True,
            "DicomAlwaysAllowEcho": True,
            "UnknownSopClassAccepted": True,
            "DicomThreadsCount": 4,
            "SaveJobs": False,
            "Plugins": [plugin],
            "DicomWeb": {
                "Enable": True,
                "Root": "/dicom-web/",
                "EnableWado": False,
                "Ssl": False,
                "Host": f"127.0.0.1:{self.http_port}",
            },
        }

    def start(self, plugin: str, timeout: float = 60) -> None:
        for sub in ("storage", "index"):
            (self.workdir / sub).mkdir(parents=True, exist_ok=True)
        path = self.workdir / "orthanc.json"
        path.write_text(json.dumps(self.config(plugin), indent=2))
        log = (self.workdir / "orthanc.log").open("wb")
        # DCMTK (Orthanc's DICOM stack) reads TCP_NODELAY from the environment.
        env = dict(os.environ, TCP_NODELAY="1")
        self.process = subprocess.Popen(
            ["Orthanc", str(path)], stdout=log, stderr=subprocess.STDOUT, env=env
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Orthanc exited; see {self.workdir / 'orthanc.log'}")
            try:
                if requests.get(f"{self.base}/system", timeout=2).ok:
                    plugins = requests.get(f"{self.base}/plugins", timeout=2).json()
                    if "dicom-web" not in plugins:
                        raise RuntimeError(f"DICOMweb plugin not loaded: {plugins}")
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.2)
        raise RuntimeError("Orthanc did not answer in time")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
