"""Root never opens a path in a user's home and never runs a scheduler
command: the root multi-user daemon, and the fork server it starts (whose
forked children are root until their setuid), run under
tests/audit_launch.py, which records (Python audit hooks, plus wrappers for
the stat family that CPython does not audit) every path a root process
opens, lists, stats, renames or removes and every process it starts, while
a real PAM user goes through every route of the app (the list is taken from
the app: a route no step of the scenario reaches fails the test), through
the pages and the API: logs in, creates, edits, copies, saves as a
template, submits, holds, releases, limits, cancels a task, a job and
several, reads results and archives, resends a form kept through a login,
and removes. Then: no recorded path is in the user's home, and the only
processes root ever starts are workers (the fork server forks them).

Audit hooks see what Python code does in the root process; a C library
(PAM's modules) opening files itself is out of their sight."""
import html
import http.client
import json
import os
import re
import secrets
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


# the routes, as the app has them: each must be reached by the scenario
APP = flightjobd.make_app(flightjobd.Config({"scheduler": {"type": "local"}})).bottle


def route_of(method, path):
    """The (method, rule) of the app's route that serves this request."""
    raw = urllib.parse.unquote_to_bytes(path.split("?")[0]).decode("latin-1")
    route, _ = APP.router.match({"REQUEST_METHOD": method, "PATH_INFO": raw})
    return route.method, route.rule


def cookie_of(headers, name):
    return [v.split(";")[0] for k, v in headers if k.lower() == "set-cookie" and v.startswith(name + "=")][0]


def hidden_fields(page, action):
    """The hidden fields of the page's form that posts to action."""
    form = page.split('<form method="post" action="%s">' % action, 1)[1].split("</form>", 1)[0]
    return [(html.unescape(n), html.unescape(v)) for n, v in
            re.findall(r'<input type="hidden" name="([^"]*)" value="([^"]*)">', form)]


class Session(Api):
    """A cookie session of a real PAM user (password login), with forms;
    it keeps the route of every request it sends."""

    def __init__(self, daemon, user):
        self.user = user
        self.sent = set()
        super().__init__(daemon)

    def raw(self, method, path, *args, **kw):
        self.sent.add(route_of(method, path))
        return super().raw(method, path, *args, **kw)

    def login(self):
        status, headers, raw = self.raw("POST", "/api/login", {"username": self.user.name,
                                                              "password": self.user.password}, auth=False)
        assert status == 200, (status, raw)
        self.cookie = cookie_of(headers, flightjobd.COOKIE)
        self.csrf = json.loads(raw)["csrf_token"]

    def page(self, path, status=200):
        got, _, raw = self.raw("GET", path)
        assert got == status, (path, got, raw[:300])
        return raw.decode()

    def form(self, path, fields, status=303, cookie=True):
        """POST a form (fields: a dict or (name, value) pairs; the session's
        token added to a dict); the answer's status, headers and page."""
        if isinstance(fields, dict):
            fields = list(dict(fields, csrf=self.csrf).items())
        self.sent.add(route_of("POST", path))
        conn = http.client.HTTPConnection("127.0.0.1", self.daemon.port, timeout=60)
        try:
            conn.request("POST", path, body=urllib.parse.urlencode(fields).encode(), headers=dict(
                {"Content-Type": "application/x-www-form-urlencoded"}, **({"Cookie": cookie} if isinstance(
                    cookie, str) else {"Cookie": self.cookie} if cookie else {})))
            r = conn.getresponse()
            raw = r.read()
        finally:
            conn.close()
        assert r.status == status, (path, r.status, raw[:300])
        return r.getheaders(), raw.decode("utf-8", "replace")

    def ok(self, method, path, body=None, status=200, headers=None):
        got, data = self(method, path, body, headers)
        assert got == status, (method, path, got, data)
        return data

    def wait(self, job_id, until=flightjobd.FINISHED, timeout=120, test=None):
        end = time.time() + timeout
        while True:
            job = self.ok("GET", "/api/jobs/" + job_id)
            if (test or (lambda j: j["state"] in until))(job):
                return job
            assert time.time() < end, job
            time.sleep(0.3)

    def kept_form_resent(self, path, fields):
        """Logged out (the page's form), a form posted without a session is
        answered with the login page keeping it; logged in by that page, the
        form is sent again with the new session's token."""
        self.form("/logout", {})
        headers, page = self.form(path, fields, status=401, cookie=False)
        assert "Your session had ended" in page, page[:300]
        login = hidden_fields(page, "/login") + [("username", self.user.name), ("password", self.user.password)]
        headers, page = self.form("/login", login, status=200, cookie=cookie_of(headers, flightjobd.PRE_COOKIE))
        self.cookie = cookie_of(headers, flightjobd.COOKIE)
        self.csrf = self.ok("GET", "/api/session")["csrf_token"]
        resend = hidden_fields(page, path)
        assert ("csrf", self.csrf) in resend and sorted(fields.items()) == sorted(
            (n, v) for n, v in resend if n != "csrf"), resend
        self.form(path, resend)


def start_audited(make_daemon, runtime, log, scheduler):
    d = make_daemon(start=False, server={"multi_user": True}, worker=runtime,
                    storage={"state_dir": "~/.local/share/flight-job"}, templates={"site_dirs": []},
                    scheduler=scheduler, metrics={"allow": ["127.0.0.1/32"]})
    d.argv = [sys.executable, LAUNCHER, str(log)]
    return d.start()


def scenario(s, slow_script):
    """Everything a user does, through pages, forms and the API: every
    route of the app (run_audited checks that none is left out)."""
    s.page("/login")
    s.page("/static/style.css")
    s.page("/")
    s.ok("GET", "/api/session")
    assert "flightjobd_status_poll_rounds_total" in s.page("/metrics")
    s.page("/templates")
    assert "serial" in [t["id"] for t in s.ok("GET", "/api/templates")["templates"]]
    s.ok("GET", "/api/templates/serial")
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
    s.ok("GET", "/api/scripts")
    s.page("/scripts/" + sid)
    s.page("/scripts/%s?edit=notes" % sid)
    s.form("/scripts/%s/edit" % sid, {"field": "notes", "text": "edited by form", "etag": script["etag"]})
    assert s.ok("GET", "/api/scripts/" + sid)["notes"] == "edited by form"
    # copies, and templates of the user's own (written in the home, by the worker)
    copy = s.ok("POST", "/api/scripts/%s/copy" % sid, {"name": "audit copy"}, status=201)
    s.form("/scripts/%s/copy" % sid, {"name": "audit copy by form"})
    s.ok("POST", "/api/scripts/%s/save-as-template" % sid, {"name": "Audit", "id": "audit-mine"}, status=201)
    s.form("/scripts/%s/save-as-template" % sid, {"name": "Audit by form", "id": "audit-form"})
    assert {"audit-mine", "audit-form"} <= {t["id"] for t in s.ok("GET", "/api/templates")["templates"]}
    # a script's answers changed (its text was edited above: the answers saved, the text kept) and a step checked
    s.ok("POST", "/api/templates/serial/check", {"answers": {"job_name": "audit"}})
    s.page("/scripts/%s/answers" % sid)
    changed = s.ok("PUT", "/api/scripts/%s/answers" % sid, {"answers": {"job_name": "audited"}, "text": "mine"})
    s.form("/scripts/%s/answers" % sid, {"etag": changed["etag"], "action": "update", "q_job_name": "again"},
           status=200)
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
    activity = s.ok("GET", "/api/activity?watch=" + job["id"])
    assert [w["id"] for w in activity["watched"]] == [job["id"]], activity
    names = [f["name"] for f in s.ok("GET", "/api/jobs/%s/files" % job["id"])["files"]]
    assert "audit-results" in names, names
    assert s.ok("GET", "/api/jobs/%s/output/stdout" % job["id"]) == b"audited\n"
    _, _, raw = s.raw("GET", "/api/jobs/%s/files/audit-results/data.txt" % job["id"])
    assert raw == b"result\n"
    s.ok("GET", "/api/jobs/%s/files/audit-results?list=1" % job["id"])
    s.ok("GET", "/api/jobs/%s/files/audit-results/shadow" % job["id"], status=403)
    s.page("/jobs/%s/files/audit-results/data.txt" % job["id"])
    s.page("/jobs/%s/download/audit-results/data.txt" % job["id"])
    # the results as archives, whole and chosen, by the API and the pages
    for method, path, body in (("GET", "/api/jobs/%s/archive" % job["id"], None),
                               ("POST", "/api/jobs/%s/archive" % job["id"], {"paths": ["audit-results"]}),
                               ("GET", "/jobs/%s/archive?path=audit-results" % job["id"], None)):
        status, headers, raw = s.raw(method, path, body)
        assert status == 200 and raw[:2] == b"PK", (method, path, status, raw[:200])
    _, raw = s.form("/jobs/%s/archive" % job["id"], {"path": "audit-results/data.txt"}, status=200)
    assert raw[:2] == "PK"
    # import: the picker, a file imported to run where it is, its plan (the file read again)
    s.page("/import")
    s.page("/import?path=audit-results")
    s.page("/import?file=audit-results/data.txt")
    s.ok("GET", "/api/import/files?path=audit-results")
    s.form("/import", {"source": "file", "path": "audit-results/data.txt", "in_place": "on"})
    imported = s.ok("POST", "/api/import", {"path": "audit-results/data.txt", "in_place": True}, status=201)
    assert s.ok("POST", "/api/scripts/%s/preview" % imported["id"], {"answers": {}})["run_in"].endswith(
        "/audit-results")
    # a job waiting for the slow one: held and released, its time limit lowered, by the API and the pages
    s.wait(slow_job["id"], until=("RUNNING",))
    waiting = s.ok("POST", "/api/jobs", {"script": copy["id"], "answers": {"time": "0-01:00:00"},
                                         "after": {"job": slow_job["id"], "type": "afterany"}}, status=201)
    wid = waiting["id"]
    s.wait(wid, test=lambda j: j["reason"] == "Dependency")
    assert s.ok("POST", "/api/jobs/%s/hold" % wid)["reason"] == "JobHeldUser"
    s.form("/jobs/%s/release" % wid, {})
    s.wait(wid, test=lambda j: j["reason"] == "Dependency")
    s.form("/jobs/%s/hold" % wid, {})
    assert s.ok("POST", "/api/jobs/%s/release" % wid)["reason"] != "JobHeldUser"
    assert s.ok("POST", "/api/jobs/%s/time-limit" % wid, {"time_limit": "30"})["time_limit"] == "0:30:00"
    s.form("/jobs/%s/time-limit" % wid, {"time_limit": "0:20:00"})
    assert s.wait(wid, test=lambda j: j["time_limit"] == "0:20:00")["state"] == "PENDING"
    # the list's select-all (all=1, the page's ids) and bulk hold, by the pages; bulk release by the API
    s.page("/jobs/bulk?action=hold&all=1&page_id=%s" % wid)
    s.form("/jobs/bulk", [("csrf", s.csrf), ("action", "hold"), ("id", wid)], status=200)
    s.wait(wid, test=lambda j: j["reason"] == "JobHeldUser")
    assert s.ok("POST", "/api/jobs/bulk", {"action": "release", "ids": [wid]})["jobs"][0]["done"]
    # the list's columns chosen, kept in the home by the worker: by the API and by the page's form
    assert s.ok("POST", "/api/jobs/columns", {"columns": ["raw", "partition"]})["columns"] == ["raw", "partition"]
    s.form("/jobs/columns", [("csrf", s.csrf), ("column", "nodes"), ("column", "reason")])
    assert s.ok("GET", "/api/jobs")["columns"] == ["reason", "nodes"]
    # an array job: one task cancelled by the page, one by the API, then the rest
    array = s.ok("POST", "/api/scripts", {"template": "serial", "name": "array"}, status=201)
    s.ok("PATCH", "/api/scripts/" + array["id"], {"content": slow_script.replace(
        "#!/bin/bash\n", "#!/bin/bash\n#SBATCH --array=1-3\n#SBATCH --output=array-%A_%a.out\n")})
    tasks = s.ok("POST", "/api/jobs", {"script": array["id"], "answers": {}}, status=201)
    s.wait(tasks["id"], test=lambda j: len(j.get("tasks") or []) == 3)
    s.page("/jobs/%s/tasks/2/cancel" % tasks["id"])
    s.form("/jobs/%s/tasks/2/cancel" % tasks["id"], {})
    s.ok("POST", "/api/jobs/%s/tasks/3/cancel" % tasks["id"])
    # cancel two at once, one by the form, one by the API; remove by the API, the form, and the bulk pages
    done = s.ok("POST", "/api/jobs/bulk", {"action": "cancel", "ids": [wid, tasks["id"]]})
    assert [j["done"] for j in done["jobs"]] == [True, True], done
    for jid in (wid, tasks["id"]):
        s.wait(jid)
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
    s.page("/jobs/bulk?action=remove&id=%s&id=%s" % (wid, tasks["id"]))
    s.form("/jobs/bulk", [("csrf", s.csrf), ("action", "remove"), ("id", wid)], status=200)
    assert s.ok("POST", "/api/jobs/bulk", {"action": "remove", "ids": [tasks["id"]]})["jobs"][0]["done"]
    assert s.ok("GET", "/api/jobs")["jobs"] == []
    # a form kept through a login, sent again
    s.kept_form_resent("/scripts/%s/edit" % sid, {"field": "notes", "text": "kept through a login",
                                                 "etag": s.ok("GET", "/api/scripts/" + sid)["etag"]})
    assert s.ok("GET", "/api/scripts/" + sid)["notes"] == "kept through a login"
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
    starts = {r["pid"]: r["mode"] for r in records if r["event"] == "audit.start"}
    daemon = [pid for pid, mode in starts.items() if "--fork-server" not in mode]
    servers = [pid for pid, mode in starts.items() if "--fork-server" in mode]
    assert len(daemon) == 1 and servers, "the daemon and its fork server were not both audited: %s" % starts
    paths = [r for r in records if "path" in r]
    processes = [r for r in records if "argv" in r and r["event"] != "audit.start"]
    # the hook saw the root processes at work: the daemon read its page
    # templates and started the user's worker (and the health probe's);
    # each forked child, as root, listed its descriptors to close them
    templates_dir = os.path.join(ROOT, "templates")
    assert [r for r in paths if r["event"] == "open" and r["path"].startswith(templates_dir)], \
        "the audit log shows no page template read: is the hook recording?"
    assert [r for r in paths if r["event"] == "test.stat"], "no stat recorded: are the wrappers in place?"
    forks = [r for r in processes if r["event"] == "os.fork"]
    assert len(forks) >= 2 and {r["pid"] for r in forks} <= set(servers), forks  # only the fork server forks
    children = {r["pid"] for r in paths if r["path"] == "/proc/self/fd"} - set(starts)
    assert len(children) >= 2, "no forked worker was recorded while it was root"
    # root never touched the user's home
    touched = [r for r in paths if inside(r["path"], user.home)]
    assert touched == [], "root touched the user's home: %s" % touched[:20]
    assert not [r for r in paths if r["dir_fd"]], "a stat relative to a directory descriptor"
    # and started nothing but the fork server (and the one library lookup
    # below); workers are forked from it
    # (subprocess may start a program with posix_spawn or exec: the same argv)
    for r in processes:
        if r["event"] == "os.fork":
            continue
        assert r["event"] in ("subprocess.Popen", "os.posix_spawn", "os.exec"), r
        assert r["pid"] in daemon, r
        argv = r["argv"]
        assert isinstance(argv, list) and not SCHEDULER_COMMANDS & {os.path.basename(a) for a in argv}, r
        if argv == LIBRARY_LOOKUP:
            continue
        assert argv[:2] == [runtime["python"], "-c"] and argv[-2] == runtime["program"] \
            and argv[-1] in ("--worker", "--fork-server"), r  # a worker, or the template workers fork from
        assert not inside(r.get("cwd") or "/", user.home), "a worker started in the home, as root: %s" % r


def audited_runtime(runtime, log):
    """worker.program for the fork server: this log's audit launcher, run
    on the runtime's copy of the daemon (it is put beside it)."""
    program = os.path.join(os.path.dirname(runtime["program"]), "audited-%s.py" % secrets.token_hex(4))
    with open(program, "w") as f:
        f.write("import runpy, sys\nsys.argv[1:1] = [%r]\nrunpy.run_path(%r, run_name='__main__')\n"
                % (str(log), LAUNCHER))
    os.chmod(program, 0o644)
    return dict(runtime, program=program)


def run_audited(make_daemon, runtime, unix_users, tmp_path, scheduler, slow_script):
    user = unix_users.create()
    log = tmp_path / "audit.jsonl"
    runtime = audited_runtime(runtime, log)
    try:
        d = start_audited(make_daemon, runtime, log, scheduler)
        s = Session(d, user)
        scenario(s, slow_script)
        d.stop()
    finally:
        os.unlink(runtime["program"])
    assert d.proc is None
    missing = sorted(set((r.method, r.rule) for r in APP.routes) - s.sent)
    assert missing == [], "routes the audited scenario never reached: %s" % missing
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
