"""agent/rpo.py: how often ``max_rpo`` is checked and which jobs are watched (pure)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from dbcrate import config
from dbcrate.agent.rpo import alert_key, check_every, watched


def test_check_every_is_half_max_rpo_within_bounds() -> None:
    assert check_every(timedelta(seconds=1)) == 1.0
    assert check_every(timedelta(seconds=10)) == 5.0
    assert check_every(timedelta(minutes=5)) == 30.0
    assert alert_key("orders") == "orders/max_rpo"  # beside max_age's key (the job name)


def test_only_physical_jobs_with_max_rpo_are_watched(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    jobs = "".join(
        f'[[backup.jobs]]\nname = "{name}"\nurl = "postgresql://db/x"\n{extra}\n'
        for name, extra in (("plain", 'max_age = "1h"'), ("phys", 'mode = "physical"'),
                            ("rpo", 'mode = "physical"\nmax_rpo = "5m"')))
    cfg.write_text(f'[backup]\nencrypt = false\n[backup.targets.local]\npath = "{tmp_path}"\n'
                   + jobs)
    assert [(j.name, r) for j, r in watched(config.load(cfg))] == [
        ("rpo", timedelta(minutes=5))]
