"""The local S3 harness (pgp_testkit.locals3): class and CLI (scripts/locals3.py) for make demo."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from pgp_testkit.daemon import pid_alive
from pgp_testkit.locals3 import LocalS3, LocalS3Error

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "locals3.py"


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=120
    )


def test_class_start_use_stop(tmp_path: Path) -> None:
    with LocalS3(tmp_path) as server:
        assert server.is_running()
        assert server.endpoint_url == f"http://127.0.0.1:{server.port}"
        server.create_buckets("harness-bucket")
        client = server.client()
        client.put_object(Bucket="harness-bucket", Key="k", Body=b"v")
        assert client.get_object(Bucket="harness-bucket", Key="k")["Body"].read() == b"v"
        server.reset()
        assert client.list_buckets()["Buckets"] == []
        state = json.loads((tmp_path / "locals3.json").read_text())
        assert state["port"] == server.port and state["pid"] == server.pid
        pid = server.pid
    assert not server.is_running()
    assert not (tmp_path / "locals3.json").exists()
    assert pid is not None and not pid_alive(pid)


def test_listens_on_loopback_only(tmp_path: Path) -> None:
    with LocalS3(tmp_path) as server:
        port_hex = f":{server.port:04X}"
        listening = [
            fields[1]
            for fields in (line.split() for line in Path("/proc/net/tcp").read_text().splitlines())
            if fields[1].endswith(port_hex) and fields[3] == "0A"  # state LISTEN
        ]
        assert listening == [f"0100007F{port_hex}"]  # 127.0.0.1 only
        ipv6 = Path("/proc/net/tcp6")
        assert port_hex not in (ipv6.read_text() if ipv6.exists() else "")


def test_cli_start_status_env_stop(tmp_path: Path) -> None:
    state_dir = str(tmp_path / "s3")
    started = cli("start", "--state-dir", state_dir, "--bucket", "demo-pumps")
    assert started.returncode == 0, started.stderr
    info = json.loads(started.stdout)
    try:
        assert info["running"] is True
        # The server outlives the CLI process that started it.
        status = cli("status", "--state-dir", state_dir)
        assert status.returncode == 0 and json.loads(status.stdout)["pid"] == info["pid"]
        again = cli("start", "--state-dir", state_dir)  # idempotent: same server
        assert json.loads(again.stdout)["port"] == info["port"]

        env = cli("env", "--state-dir", state_dir)
        script = (
            f'{env.stdout}\n"{sys.executable}" -c "import boto3; '
            "print([b['Name'] for b in boto3.client('s3').list_buckets()['Buckets']])\""
        )
        listed = subprocess.run(
            ["bash", "-c", script],
            capture_output=True,
            text=True,
            timeout=60,
            env={k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
        )
        assert listed.stdout.strip() == "['demo-pumps']", listed.stderr
    finally:
        stopped = cli("stop", "--state-dir", state_dir)
    assert stopped.returncode == 0
    status = cli("status", "--state-dir", state_dir)
    assert status.returncode == 3 and json.loads(status.stdout)["running"] is False
    assert cli("stop", "--state-dir", state_dir).returncode == 0  # stopping twice is fine
    assert not pid_alive(info["pid"])  # gone, or a zombie awaiting init's reaping


def test_env_without_server_is_one_error_line(tmp_path: Path) -> None:
    proc = cli("env", "--state-dir", str(tmp_path))
    assert proc.returncode == 1
    assert proc.stderr.startswith("locals3: error: no server running for ")


def test_fixed_port_that_is_taken(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        with pytest.raises(LocalS3Error, match="moto server did not start"):
            LocalS3(tmp_path, port=busy.getsockname()[1]).start()


def test_stale_state_is_not_running(tmp_path: Path) -> None:
    (tmp_path / "locals3.json").write_text(json.dumps({"pid": 2**22 + 7, "port": 1}))
    server = LocalS3(tmp_path)
    assert not server.is_running()
    server.stop()  # nothing to kill, state forgotten
    assert not (tmp_path / "locals3.json").exists()
