"""``dbcrate agent --check`` and start-up errors through the real CLI (no database)."""

from __future__ import annotations

import json
import subprocess
from datetime import datetime
from pathlib import Path

from tests.lib.e2e import DBCRATE


def write(tmp: Path, job: str, agent: str = "") -> Path:
    cfg = tmp / "c.toml"
    cfg.write_text(f"""
[agent]
state_dir = "{tmp / 'state'}"
{agent}
[backup]
encrypt = false
[backup.targets.local]
path = "{tmp / 'b'}"
[[backup.jobs]]
name = "orders"
url = "postgresql://127.0.0.1:1/orders"
{job}
[[backup.jobs]]
name = "adhoc"
url = "postgresql://127.0.0.1:1/adhoc"
""")
    return cfg


def run(cfg: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([DBCRATE, "--config", str(cfg), "agent", *args], capture_output=True,
                          text=True, check=False, timeout=120)


def test_check_prints_the_next_three_runs_in_the_jobs_zone(tmp_path: Path) -> None:
    cfg = write(tmp_path, 'schedule = "30 2 * * *"\ntimezone = "Europe/Berlin"')
    proc = run(cfg, "--check")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "orders: 30 2 * * * (Europe/Berlin)"
    times = [datetime.fromisoformat(line.strip()) for line in lines[1:4]]
    assert [(t.hour, t.minute) for t in times] == [(2, 30)] * 3
    assert all(t.utcoffset() is not None for t in times)
    assert times == sorted(times)
    assert "adhoc: no schedule" in proc.stdout
    assert not (tmp_path / "state" / "agent.lock").exists()  # --check starts nothing


def test_a_bad_config_stops_the_agent_with_exit_2(tmp_path: Path) -> None:
    cfg = write(tmp_path, 'schedule = "0 3 * * *"', agent='grace_period = "ten minutes"')
    proc = run(cfg)
    assert proc.returncode == 2
    assert f"{cfg}: agent.grace_period: invalid duration" in proc.stderr
    assert "Traceback" not in proc.stderr
    as_json = run(cfg, "--log-format", "json")
    assert as_json.returncode == 2
    [line] = as_json.stderr.splitlines()
    obj = json.loads(line)
    assert obj["level"] == "error"
    assert f"{cfg}: agent.grace_period: invalid duration" in obj["msg"]
