"""Root never opens a path in a user's home and never runs a scheduler
command: the root multi-user daemon runs under tests/audit_launch.py, which
records (Python audit hooks, plus wrappers for the stat family that CPython
does not audit) every path the root process opens, lists, stats, renames or
removes and every process it starts, while a real PAM user logs in, creates,
edits, submits, cancels, reads results and removes, through the pages and
the API. Then: no recorded path is in the user's home, and the only process
root ever starts is a worker launch.

Audit hooks see what Python code does in the root process; a C library
(PAM's modules) opening files itself is out of their sight."""
import http.client
import json
import os
import sys
import time
import urllib.parse

import pytest

import flightjobd
from support import ROOT
from test_hardening import Api

pytestmark = pytest.mark.root

LAUNCHER = os.path.join(ROOT, "tests", "audit_launch.py")
SCHEDULER_COMMANDS = {"sbatch", "squeue", "sacct", "scancel", "sinfo", "scontrol", "sacctmgr",
                      "srun", "salloc", "sstat", "sprio", "sshare", "strigger"}

# pamela loads libpam with ctypes.util.find_library("pam"), which runs this
# once, at the first login; no other process but workers is allowed
LIBRARY_LOOKUP = ["/sbin/ldconfig", "-p"]


class Session(Api):
    """A cookie session of a real PAM user (password login), with forms."""

    def __init__(self, daemon, user):
        self.user = user
        super().__init__(daemon)

    def login(self):
        status, headers, raw = self.raw("POST", "/api/login", {"username": self.user.name,
                                                              "password": self.user.password}, auth=False)
        assert status == 200, (status, raw)
        self.cookie = [v.split(";")[0] for k, v in headers if k.lower() == "set-cookie"
                       and v.startswith(flightjobd.COOKIE + "=")][0]
        self.csrf = json.loads(raw)["csrf_token"]

    def page(self, path, status=200):
        got, _, raw = self.raw("GET", path)
        assert got == status, (path, got, raw[:300])
        return raw.decode()

    def form(self, path, fields, status=303):
        body = urllib.parse.urlencode(dict(fields, csrf=self.csrf)).encode()
        conn = http.client.HTTPConnection("127.0.0.1", self.daemon.port, timeout=60)
        try:
            conn.request("POST", path, body=body, headers={
                "Cookie": self.cookie, "Content-Type": "application/x-www-form-urlencoded"})
            r = conn.getresponse()
            raw = r.read()
        finally:
            conn.close()
        assert r.status == status, (path, r.status, raw[:300])
        return r

    def ok(self, method, path, body=None, status=200, headers=None):
        got, data = self(method, path, body, headers)
        assert got == status, (method, path, got, data)
        return data

    def wait(self, job_id, until=flightjobd.FINISHED, timeout=120):
        end = time.time() + timeout
        while True:
            job = self.ok("GET", "/api/jobs/" + job_id)
            if job["state"] in until:
                return job
            assert time.time() < end, job
            time.sleep(0.3)


def start_audited(make_daemon, runtime, log, scheduler):
    d = make_daemon(start=False, server={"multi_user": True}, worker=runtime,
                    storage={"state_dir": "~/.local/share/flight-job"}, templates={"site_dirs": []},
                    scheduler=scheduler)
    d.argv = [sys.executable, LAUNCHER, str(log)]
    return d.start()


def scenario(s, slow_script):
    """Everything a user does, through pages, forms and the API."""
    s.page("/")
    s.page("/templates")
    assert "serial" in [t["id"] for t in s.ok("GET", "/api/templates")["templates"]]
    s.page("/templates/serial/create")
    s.form("/templates/serial/create", {"name": "audit by form", "q_working_dir": "~",
                                        "q_job_name": "audit", "q_output_file": "job-%j.out",
                                        "q_merge_output": "true"})
    script = s.ok("POST", "/api/scripts", {"template": "serial", "name": "audit", "notes": "first"}, status=201)
    sid = script["id"]
    content = ("#!/bin/bash\n#SBATCH --output=audit-%j.out\nmkdir -p audit-results\n"
               "echo result > audit-results/data.txt\nln -sf /etc/shadow audit-results/shadow\necho audited\n")
    script = s.ok("PATCH", "/api/scripts/" + sid, {"content": content}, headers={"If-Match": script["etag"]})
    s.page("/scripts")
    s.page("/scripts/" + sid)
    s.page("/scripts/%s?edit=notes" % sid)
    s.form("/scripts/%s/edit" % sid, {"field": "notes", "text": "edited by form", "etag": script["etag"]})
    assert s.ok("GET", "/api/scripts/" + sid)["notes"] == "edited by form"
    s.ok("GET", "/api/scripts/%s/submission" % sid)
    s.ok("POST", "/api/scripts/%s/preview" % sid, {"answers": {}})
    s.page("/scripts/%s/submit" % sid)
    job = s.ok("POST", "/api/jobs", {"script": sid, "answers": {}}, status=201)
    slow = s.ok("POST", "/api/scripts", {"template": "serial", "name": "slow"}, status=201)
    s.ok("PATCH", "/api/scripts/" + slow["id"], {"content": slow_script})
    s.form("/scripts/%s/submit" % slow["id"], {"action": "submit"})
    job = s.wait(job["id"])
    assert job["state"] == "COMPLETED", job
    jobs = s.ok("GET", "/api/jobs")["jobs"]
    slow_job = [j for j in jobs if j["script_id"] == slow["id"]][0]
    s.page("/jobs")
    s.page("/jobs/" + job["id"])
    names = [f["name"] for f in s.ok("GET", "/api/jobs/%s/files" % job["id"])["files"]]
    assert "audit-results" in names, names
    assert s.ok("GET", "/api/jobs/%s/output/stdout" % job["id"]) == b"audited\n"
    _, _, raw = s.raw("GET", "/api/jobs/%s/files/audit-results/data.txt" % job["id"])
    assert raw == b"result\n"
    s.ok("GET", "/api/jobs/%s/files/audit-results?list=1" % job["id"])
    s.ok("GET", "/api/jobs/%s/files/audit-results/shadow" % job["id"], status=403)
    s.page("/jobs/%s/files/audit-results/data.txt" % job["id"])
    s.page("/jobs/%s/download/audit-results/data.txt" % job["id"])
    # import: the picker, a file imported to run where it is, its plan (the file read again)
    s.page("/import")
    s.page("/import?path=audit-results")
    s.page("/import?file=audit-results/data.txt")
    s.ok("GET", "/api/import/files?path=audit-results")
    s.form("/import", {"source": "file", "path": "audit-results/data.txt", "in_place": "on"})
    imported = s.ok("POST", "/api/import", {"path": "audit-results/data.txt", "in_place": True}, status=201)
    assert s.ok("POST", "/api/scripts/%s/preview" % imported["id"], {"answers": {}})["run_in"].endswith(
        "/audit-results")
    # cancel one by the API and one by the form; remove by the API and by the form
    s.wait(slow_job["id"], until=("RUNNING",))
    s.page("/jobs/%s/cancel" % slow_job["id"])
    s.form("/jobs/%s/cancel" % slow_job["id"], {})
    assert s.wait(slow_job["id"])["state"] == "CANCELLED"
    other = s.ok("POST", "/api/jobs", {"script": slow["id"], "answers": {}}, status=201)
    s.ok("POST", "/api/jobs/%s/cancel" % other["id"])
    assert s.wait(other["id"])["state"] == "CANCELLED"
    s.ok("DELETE", "/api/jobs/" + job["id"], status=204)
    s.page("/jobs/%s/remove" % slow_job["id"])
    s.form("/jobs/%s/remove" % slow_job["id"], {})
    s.ok("DELETE", "/api/jobs/" + other["id"], status=204)
    assert s.ok("GET", "/api/jobs")["jobs"] == []
    s.page("/scripts/%s/delete" % sid)
    s.form("/scripts/%s/delete" % sid, {})
    s.ok("DELETE", "/api/scripts/" + slow["id"], status=204)
    s.ok("GET", "/api/health")
    s.ok("POST", "/api/logout")


def read_log(path):
    with open(path, encoding="utf-8", errors="surrogateescape") as f:
        return [json.loads(line) for line in f]


def inside(path, home):
    path = os.path.normpath(path)
    return any(path == h or path.startswith(h.rstrip("/") + "/")
               for h in {os.path.normpath(home), os.path.realpath(home)})


def check_log(records, user, runtime):
    """The assertions of the module docstring, on the recorded events."""
    paths = [r for r in records if "path" in r]
    processes = [r for r in records if "path" not in r]
    # the hook saw the root process at work: it read its page templates,
    # and started the user's worker (and the health probe's)
    templates_dir = os.path.join(ROOT, "templates")
    assert [r for r in paths if r["event"] == "open" and r["path"].startswith(templates_dir)], \
        "the audit log shows no page template read: is the hook recording?"
    assert [r for r in paths if r["event"] == "test.stat"], "no stat recorded: are the wrappers in place?"
    launches = [r for r in processes if r["event"] == "subprocess.Popen"]
    assert len(launches) >= 2, processes
    # root never touched the user's home
    touched = [r for r in paths if inside(r["path"], user.home)]
    assert touched == [], "root touched the user's home: %s" % touched[:20]
    assert not [r for r in paths if r["dir_fd"]], "a stat relative to a directory descriptor"
    # and started nothing but workers (and the one library lookup below)
    # (subprocess may start a program with posix_spawn or exec: the same argv)
    for r in processes:
        assert r["event"] in ("subprocess.Popen", "os.posix_spawn", "os.exec"), r
        argv = r["argv"]
        assert isinstance(argv, list) and not SCHEDULER_COMMANDS & {os.path.basename(a) for a in argv}, r
        if argv == LIBRARY_LOOKUP:
            continue
        assert argv[:2] == [runtime["python"], "-c"] and argv[-2] == runtime["program"] \
            and argv[-1] in ("--worker", "--fork-server"), r  # a worker, or the template workers fork from
        assert not inside(r.get("cwd") or "/", user.home), "a worker started in the home, as root: %s" % r


def run_audited(make_daemon, runtime, unix_users, tmp_path, scheduler, slow_script):
    user = unix_users.create()
    log = tmp_path / "audit.jsonl"
    d = start_audited(make_daemon, runtime, log, scheduler)
    scenario(Session(d, user), slow_script)
    d.stop()
    assert d.proc is None
    assert os.path.isfile(os.path.join(user.home, ".local/share/flight-job/.lock"))  # the worker did work there
    check_log(read_log(log), user, runtime)


def test_root_never_touches_a_home_nor_runs_a_scheduler_command(unix_users, runtime, make_daemon, tmp_path):
    # (unix_users first: its teardown, which deletes the user, runs after the daemon's)
    run_audited(make_daemon, runtime, unix_users, tmp_path,
                {"type": "local", "refresh_interval": 0, "background_refresh": 1},
                "#!/bin/bash\necho start\nsleep 60\n")


@pytest.mark.slurm
def test_root_never_touches_a_home_nor_runs_a_scheduler_command_on_slurm(
        unix_users, runtime, make_daemon, tmp_path, slurm_cluster):
    slurm_cluster.ensure(accounting=True)
    try:
        run_audited(make_daemon, runtime, unix_users, tmp_path,
                    slurm_cluster.scheduler(background_refresh=1),
                    "#!/bin/bash\n#SBATCH --time=5\necho start\nsleep 120\n")
    finally:
        for user in unix_users.created:
            slurm_cluster.run("scancel", "--user", user)
