"""Issue 26, "done when": three hostile local users against twenty ordinary
ones, on the real Slurm cluster, through a real root multi-user daemon
(waitress, real PAM users, each user's worker, the shared status poll).

The hostile ones: a 1,000-task array whose tasks fail (its failure text
far past a status's bound), the rest of it cancelled while pending (one
sacct row of ~940 tasks), so the node is free for the others' jobs; a worker stopped (SIGSTOP) and stalled by the
user's own template code, flooded with requests; two downloads to
readers that never read, and template code that makes the user's own
worker answer the jobs list with 7.9 MB of the wrong shape. The ordinary
ones each submit a job and watch it: every answer they get is 200 and
each sees their job finished within a refresh or two of Slurm ending it."""
import contextlib
import os
import signal
import subprocess
import threading
import time

import pytest

from support import wait_for
from test_hostile import TIMEOUT, TURN, Client, at_once, job_in, never_reading, stalled, user_template, worker_of

pytestmark = [pytest.mark.slurm, pytest.mark.root]

REFRESH = 2  # scheduler.refresh_interval of the daemon
OVERSIZED = ("% import sys\n% sys.modules['__main__'].OPERATIONS['jobs.list'] = "
             "lambda *a, **k: {'jobs': 'x' * 7900000}\n#!/bin/bash\n")


def submit(client, body):
    s = client.json("POST", "/api/scripts", {"template": "serial"}, status=201)
    client.json("PATCH", "/api/scripts/" + s["id"], {"content": "#!/bin/bash\n%s\n" % body})
    return client.json("POST", "/api/jobs", {"script": s["id"], "answers": {}}, status=201)


def ended_at(cluster, sid):
    """When Slurm says the job ended (seconds since the epoch), or None."""
    text = cluster.run("sacct", "-n", "-X", "-P", "-j", sid, "-o", "End").strip()
    with contextlib.suppress(ValueError):
        return time.mktime(time.strptime(text.splitlines()[0], "%Y-%m-%dT%H:%M:%S"))
    return None


def test_three_hostile_users_never_stall_twenty_ordinary_ones(slurm_cluster, make_daemon, unix_users, runtime):
    slurm_cluster.ensure(accounting=True)
    d = make_daemon(server={"multi_user": True, "turn_wait": TURN, "download_timeout": 300},
                    worker=dict(runtime, request_timeout=TIMEOUT), templates={"site_dirs": []},
                    storage={"state_dir": "~/.local/share/flight-job"},
                    scheduler=slurm_cluster.scheduler(refresh_interval=REFRESH, background_refresh=REFRESH))
    failing, stopped, loader = [Client(d, unix_users.create(prefix="fji")) for _ in range(3)]
    others = [Client(d, unix_users.create(prefix="fji")) for _ in range(20)]
    for c in others:
        c.json("GET", "/api/jobs")
    big = "/api/jobs/%s/files/big.bin" % job_in(loader, "truncate -s 1G big.bin")[1]["id"]
    array = submit(failing, "#SBATCH --array=1-1000\n#SBATCH --output=/dev/null\nexit 1")
    sid = array["scheduler_id"]

    def failed():
        return slurm_cluster.run("sacct", "-n", "-P", "-j", sid, "-o", "State", "-s", "F").count("FAILED")
    wait_for(lambda: failed() >= 60, 180, "60 of the array's tasks failing")
    slurm_cluster.run("scancel", "--state=PENDING", sid)  # the rest cancelled: one row of ~940 tasks
    user_template(loader.user, "oversized", OVERSIZED)
    readers = [never_reading(d, loader, big) for _ in range(2)]
    stop, held, hostile = threading.Event(), [], []

    def stopping():
        stalled(stopped.user)
        while not stop.is_set():
            pid = worker_of(d, stopped.user)
            if pid:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGSTOP)
            held.extend(at_once(stopped, 6, "GET", "/api/templates"))

    def loading():  # the loader's oversized answers, and the failing array looked at
        while not stop.is_set():
            for c, path in ((loader, "/api/templates"), (loader, "/api/jobs"), (loader, "/jobs"),
                            (failing, "/api/jobs/" + array["id"])):
                hostile.append((path,) + c.timed("GET", path)[:2])
    threads = [threading.Thread(target=f) for f in (stopping, loading)]
    for t in threads:
        t.start()
    seen, lags = [], {}

    def ordinary(c):
        job = submit(c, "sleep 2")
        end = time.time() + 240
        while time.time() < end:
            status, seconds, data = c.timed("GET", "/api/jobs/" + job["id"])
            seen.append((status, seconds))
            if status == 200 and data["state"] == "COMPLETED":
                lags[c.user.name] = time.time() - (ended_at(slurm_cluster, job["scheduler_id"]) or time.time())
                return
            time.sleep(0.5)
    try:
        watchers = [threading.Thread(target=ordinary, args=(c,)) for c in others]
        for t in watchers:
            t.start()
        for t in watchers:
            t.join(300)
    finally:
        stop.set()
        for t in threads:
            t.join(60)
        for s in readers:
            s.close()
        subprocess.run(["scancel", sid], env=dict(os.environ, SLURM_CONF=slurm_cluster.conf), capture_output=True)
    print("20 ordinary users: %d answers, the slowest %.2f s; seen finished after Slurm ended them: %s; "
          "the hostile: %s" % (len(seen), max(s for _, s in seen), sorted(round(v, 1) for v in lags.values()),
                               sorted({(p, st) for p, st, _ in hostile})))
    assert {status for status, _ in seen} == {200}, [s for s in seen if s[0] != 200][:10]
    assert len(lags) == 20, "not every ordinary job was seen finished: %s" % sorted(lags)
    assert max(lags.values()) < 4 * REFRESH + 10, lags  # a generous bound: within a refresh or two
    assert all(status == 503 for status, _, _ in held), held[:10]
