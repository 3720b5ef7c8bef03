"""Beat touches its heartbeat file after each pass of its loop: docker-compose's health check
for beat reads the file's age (a beat whose loop hangs goes unhealthy)."""

import os
import time
from pathlib import Path

from nexus.beat import NexusScheduler
from nexus.celery import app

# live_db: the scheduler closes and reopens its database connection as beat does, which a
# test transaction would not survive.


def test_each_pass_of_beats_loop_touches_the_heartbeat_file(live_db, settings, tmp_path, broker):
    heartbeat = tmp_path / "beat-heartbeat"
    settings.BEAT_HEARTBEAT_FILE = str(heartbeat)
    scheduler = NexusScheduler(app=app)
    scheduler.tick()
    assert heartbeat.exists()
    os.utime(heartbeat, (time.time() - 600, time.time() - 600))
    scheduler.tick()
    assert time.time() - heartbeat.stat().st_mtime < 60


def test_no_file_unless_configured(live_db, settings, tmp_path, broker, monkeypatch):
    touched = []
    monkeypatch.setattr(Path, "touch", lambda path, *args, **kwargs: touched.append(path))
    monkeypatch.chdir(tmp_path)
    settings.BEAT_HEARTBEAT_FILE = ""
    NexusScheduler(app=app).tick()
    assert touched == []
    assert list(tmp_path.iterdir()) == []
