from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from loyalty_ledger.kafka_settings import KafkaSettings
from loyalty_ledger.ops.produce import produce_file
from loyalty_ledger.ops.topics import create_topics
from support import CASES

LOYALTY = str(Path(sys.executable).with_name("loyalty"))


def test_exp(cli_env, database_url, kafka_bootstrap, kafka_settings: KafkaSettings, tmp_path):
    case = CASES[3]
    create_topics(kafka_settings, 1)
    produce_file(kafka_settings, str(case / "events.jsonl"))
    env = {**cli_env, "LOYALTY_KAFKA_BOOTSTRAP": kafka_bootstrap,
           "LOYALTY_KAFKA_TOPIC_PREFIX": kafka_settings.prefix, "LOYALTY_KAFKA_CONFIG": "debug=cgrp,group.instance.id=a"}
    args = [LOYALTY, "consume", "--group", "g", "--program", str(case / "program.toml"),
            "--batch-size", "50", "--batch-ms", "100", "--stop-when-idle", "3"]
    for i in range(2):
        log = tmp_path / f"{i}.log"
        t0 = time.monotonic()
        with open(log, "wb") as f:
            p = subprocess.Popen(args, env=env, stderr=f, stdout=f)
        seen = None
        while time.monotonic() - t0 < 30:
            if seen is None and b"assigned" in log.read_bytes():
                seen = time.monotonic() - t0
                time.sleep(0.5)
                break
            time.sleep(0.05)
        p.send_signal(signal.SIGKILL)
        p.wait()
        print(i, "assigned after", seen, log.read_text()[:3000])
    assert False
