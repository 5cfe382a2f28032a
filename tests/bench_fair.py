"""`make bench` rows of fair shares (issue 26, item 3), against a root
multi-user daemon with real Unix users on the local scheduler, every
figure measured from a process of its own (tests/pollers.py):

- 3 hostile users (their workers stopped and stalled by their own
  template code, flooded with requests, 2 downloads each to readers that
  never read) and 20 others each looking at their jobs list every second:
  the others' answers, p50 / p99 / max, and how many were not 200;
- 100 and 300 ordinary users each polling their jobs list every 2 s (a
  job page left open): 503s (none is the target) and p99.

Run by tests/bench.py (`--only fair`); needs root (users, workers)."""
import contextlib
import os
import signal
import threading
import time

import pollers
from support import UnixUsers, install_pam_service, make_runtime


def sections(work, runtime, name):
    return {"server": {"multi_user": True},
            "worker": dict(runtime, idle_timeout=3600),
            "auth": {"session_dir": os.path.join(work, "sessions-" + name), "login_slots": 16, "failure_delay": 0},
            "storage": {"state_dir": "~/.local/share/flight-job"},
            "scheduler": {"type": "local", "refresh_interval": 0, "background_refresh": 0},
            "templates": {"site_dirs": []}}


def row(table, verdict, label, figures, target):
    ok = figures["refused"] == figures["failed"] == 0 and (target is None or figures["p99"] <= target)
    table.add(label, "p99 %.0f ms, %d of %d not 200" % (figures["p99"] * 1000, figures["refused"] + figures["failed"],
                                                        figures["requests"]),
              "p50 %.0f ms, slowest %.0f ms" % (figures["p50"] * 1000, figures["max"] * 1000),
              verdict(ok, "all 200" + (", p99 <= %.0f s" % target if target else "")))


def bench_fair(work, table, quick, Daemon, verdict, log):
    if os.geteuid() != 0 or not os.path.exists("/usr/bin/python3"):
        table.na("Fair shares: 3 hostile users and 20 others; 100 and 300 users polling", "needs root and /usr/bin/python3")
        return
    from test_hostile import Client, at_once, job_in, never_reading, stalled, worker_of
    install_pam_service()
    runtime = make_runtime(os.path.join(work, "runtime-fair"))
    users = UnixUsers()
    seconds, people = (15 if quick else 60), []
    try:
        d = Daemon(work, "fair-hostile", sections(work, runtime, "hostile"))
        d.start()
        try:
            attackers = [Client(d, users.create(prefix="fjb")) for _ in range(3)]
            others = [Client(d, users.create(prefix="fjb")) for _ in range(20)]
            files = {c.user.name: "/api/jobs/%s/files/big.bin" % job_in(c, "truncate -s 1G big.bin")[1]["id"]
                     for c in attackers}
            for c in others:
                c.json("GET", "/api/jobs")
            readers = [never_reading(d, c, files[c.user.name]) for c in attackers for _ in range(2)]
            stop = threading.Event()

            def attack(c):
                stalled(c.user)
                while not stop.is_set():
                    pid = worker_of(d, c.user)
                    if pid:
                        with contextlib.suppress(OSError):
                            os.kill(pid, signal.SIGSTOP)
                    at_once(c, 6, "GET", "/api/templates")
            threads = [threading.Thread(target=attack, args=(c,), daemon=True) for c in attackers]
            for t in threads:
                t.start()
            time.sleep(2)
            results = pollers.run(d.port, [c.cookie for c in others], seconds, 1.0, "/api/jobs")
            stop.set()
            for s in readers:
                s.close()
        finally:
            d.stop()
        row(table, verdict, "Fair shares: 3 hostile users (stopped, stalled, flooding, 2 never-read downloads each), "
            "20 others each GET /api/jobs every 1 s for %d s" % seconds, pollers.summary(results), 1.0)
        log("fair shares: hostile measured")
        for count in (100, 300) if not quick else (30,):
            d = Daemon(work, "fair-%d" % count, sections(work, runtime, str(count)))
            d.start()
            try:
                people += [users.create(prefix="fjb") for _ in range(count - len(people))]
                clients = [Client(d, u) for u in people[:count]]
                for c in clients:
                    c.json("GET", "/api/jobs")
                results = pollers.run(d.port, [c.cookie for c in clients], seconds, 2.0, "/api/jobs")
            finally:
                d.stop()
            row(table, verdict, "Fair shares: %d users each GET /api/jobs every 2 s for %d s (a job page left open)"
                % (count, seconds), pollers.summary(results), None)
            log("fair shares: %d users measured" % count)
    finally:
        users.remove_all()
