"""GET /metrics (metrics.allow): Prometheus's text format, counted in root.

Off by default (404, as for a page that does not exist, and prometheus_client
never imported); on, only for the listed addresses (the client's address as
the login throttle has it), to everyone else the same 404. Labels come from
fixed sets only: a route's pattern (never its path), a status class, a
scheduler command and failure kind, a login outcome, a worker's role and how
it ended; never a user, a job, a file, nor anything a client or a worker
chose. The counts move as a real daemon is used: a real PAM user logging in
(and failing to), a page, an API call, a job on the local scheduler; and on
the real Slurm cluster the shared status poll's rounds, the age of its last
good one and the scheduler commands that failed (a faulting squeue through
the wrapper scripts of test_slurm_faults)."""
import json
import os
import re
import subprocess
import sys
import urllib.error
import urllib.request

import pytest
import webtest

import flightjobd
from support import ROOT, Http, children, config_in, wait_for

ALLOW = {"allow": ["127.0.0.1/32", "::1/128"]}
SAMPLE_RE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def samples(text):
    """The exposition text -> {(name, frozenset of (label, value)): value}."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE_RE.match(line)
        assert m, "not a sample line: %r" % line
        out[m.group(1), frozenset(LABEL_RE.findall(m.group(2) or ""))] = float(m.group(3))
    return out


def value(found, name, **labels):
    """A sample's value (0 when it is not there)."""
    return found.get((name, frozenset(labels.items())), 0.0)


def label_values(text):
    """Every label value in the exposition text."""
    return {v for line in text.splitlines() if not line.startswith("#") for _, v in LABEL_RE.findall(line)}


def scrape(url):
    """(status, body text) of GET url/metrics from loopback."""
    try:
        with urllib.request.urlopen(url + "/metrics", timeout=60) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


# in process: the app as waitress serves it (App.served)


def served(tmp_path, remote="127.0.0.1", **sections):
    """(App, TestApp of what serve() serves) single-user, local scheduler."""
    app = flightjobd.make_app(config_in(tmp_path, **sections))
    return app, webtest.TestApp(app.served(), extra_environ={"REMOTE_ADDR": remote})


def test_off_by_default_a_404_like_any_missing_page_and_no_library_loaded(tmp_path):
    app, web = served(tmp_path)
    try:
        assert app.metrics.registry is None and app.served() is app.bottle
        off, missing = web.get("/metrics", status=404), web.get("/no-such-page", status=404)
        assert off.body == missing.body and off.content_type == "text/html"
    finally:
        app.pool.stop_all()
    code = ("import sys, support, flightjobd; a = flightjobd.make_app(support.config_in(__import__('pathlib')"
            ".Path(sys.argv[1]))); print('prometheus_client' in sys.modules); a.pool.stop_all()")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True,
                         cwd=os.path.join(ROOT, "tests"), timeout=60)  # a process of its own: nothing loaded yet
    assert out.stdout.strip() == "False", out.stderr[-2000:]


def test_only_listed_addresses_get_the_metrics(tmp_path):
    app, web = served(tmp_path, metrics={"allow": ["127.0.0.1/32", "192.0.2.0/28"]},
                      server={"trusted_proxies": ["198.51.100.1"]})
    try:
        r = web.get("/metrics")
        assert r.content_type == "text/plain" and "# TYPE flightjobd_http_requests_total counter" in r.text
        assert "Cache-Control" in r.headers and r.headers["Cache-Control"] == "no-store"
        assert web.get("/metrics", extra_environ={"REMOTE_ADDR": "192.0.2.9"}).status_int == 200
        missing = web.get("/no-such-page", status=404).body
        for remote, forwarded in (("192.0.2.77", None), ("10.1.2.3", None), ("::1", None),
                                  # a client naming an allowed address is believed only through a trusted proxy
                                  ("10.1.2.3", "127.0.0.1"), ("198.51.100.1", "203.0.113.5"),
                                  ("198.51.100.1", "127.0.0.1, 203.0.113.5")):
            headers = {"X-Forwarded-For": forwarded} if forwarded else {}
            refused = web.get("/metrics", headers=headers, extra_environ={"REMOTE_ADDR": remote}, status=404)
            assert refused.body == missing, (remote, forwarded)
        assert web.get("/metrics", headers={"X-Forwarded-For": "192.0.2.3"},
                       extra_environ={"REMOTE_ADDR": "198.51.100.1"}).status_int == 200
    finally:
        app.pool.stop_all()


@pytest.mark.filterwarnings("ignore:Unknown REQUEST_METHOD")
def test_requests_are_counted_by_route_pattern_never_by_path(tmp_path):
    app, web = served(tmp_path, metrics=ALLOW)
    try:
        web.get("/login?token=" + app.auth.login_token, status=303)
        for _ in range(3):
            web.get("/api/scripts/no-such-fjxyz-script", status=404)
        web.get("/secret-name/fjxyz", status=404)
        web.request("/api/health", method="BREW", status=405)
        web.get("/api/health")
        text = web.get("/metrics").text
        found = samples(text)
        assert value(found, "flightjobd_http_requests_total", method="GET", route="/api/scripts/<id>",
                     status="4xx") == 3
        assert value(found, "flightjobd_http_requests_total", method="GET", route="/login", status="3xx") == 1
        assert value(found, "flightjobd_http_requests_total", method="GET", route="unmatched", status="4xx") == 1
        assert value(found, "flightjobd_http_requests_total", method="other", route="unmatched", status="4xx") == 1
        assert value(found, "flightjobd_http_requests_total", method="GET", route="/api/health", status="2xx") == 1
        assert value(found, "flightjobd_http_request_duration_seconds_count", route="/api/scripts/<id>") == 3
        assert value(found, "flightjobd_http_request_duration_seconds_bucket", route="/api/scripts/<id>",
                     le="+Inf") == 3
        assert "fjxyz" not in text and "secret-name" not in text and "BREW" not in text
        # the scrape counts itself from the next one on; a GET of it changes nothing else
        again = samples(web.get("/metrics").text)
        assert value(again, "flightjobd_http_requests_total", method="GET", route="/metrics", status="2xx") == 1
        assert {k: v for k, v in again.items() if "/metrics" not in str(k) and not k[0].startswith("process_")} \
            == {k: v for k, v in found.items() if "/metrics" not in str(k) and not k[0].startswith("process_")}
    finally:
        app.pool.stop_all()


def test_5xx_answers_are_counted_by_what_they_were(tmp_path, monkeypatch):
    app, web = served(tmp_path, metrics=ALLOW)
    try:
        web.get("/login?token=" + app.auth.login_token, status=303)
        monkeypatch.setattr(app.pool, "call", lambda *a, **kw: (_ for _ in ()).throw(
            flightjobd.Unavailable("Your worker ended unexpectedly")))
        web.get("/api/scripts", status=503)
        web.get("/scripts", status=503)
        monkeypatch.setattr(app.pool, "call", lambda *a, **kw: (_ for _ in ()).throw(RuntimeError("a bug")))
        web.get("/api/scripts", status=500)
        found = samples(web.get("/metrics").text)
        assert value(found, "flightjobd_http_errors_total", route="/api/scripts", code="unavailable") == 1
        assert value(found, "flightjobd_http_errors_total", route="/scripts", code="unavailable") == 1
        assert value(found, "flightjobd_http_errors_total", route="/api/scripts", code="internal") == 1
        assert value(found, "flightjobd_http_requests_total", method="GET", route="/api/scripts", status="5xx") == 2
    finally:
        app.pool.stop_all()


def test_what_a_worker_says_of_failures_never_makes_a_new_label(tmp_path):
    metrics = flightjobd.Metrics(config_in(tmp_path, metrics=ALLOW))
    worker = flightjobd.Worker("nobody", config_in(tmp_path, metrics=ALLOW), False, metrics=metrics)
    assert worker._failed(bytearray(json.dumps([["squeue", "timeout", 2], ["sacct", "exit", 1]]).encode()))
    assert worker._failed(bytearray(json.dumps([["fjxyz-secret-name", "/home/fjxyz", 5]]).encode()))
    for bad in ([["squeue", "exit", 0]], [["squeue", "exit", 10 ** 6]], [["squeue", "exit"]], {"squeue": 1},
                [["squeue", "exit", 1]] * (flightjobd.FAILED_KINDS + 1), [["squeue", "exit", True]]):
        assert not worker._failed(bytearray(json.dumps(bad).encode())), bad
    assert not worker._failed(bytearray(b"not json"))
    text = metrics.text()[0].decode()
    found = samples(text)
    assert value(found, "flightjobd_scheduler_failures_total", command="squeue", kind="timeout") == 2
    assert value(found, "flightjobd_scheduler_failures_total", command="sacct", kind="exit") == 1
    assert value(found, "flightjobd_scheduler_failures_total", command="other", kind="other") == 5
    assert "fjxyz" not in text and "secret-name" not in text


def test_the_slurm_adapter_notes_each_failure_by_command_and_kind():
    answers = iter([flightjobd.SchedulerNoAnswer("squeue timed out"),
                    flightjobd.SchedulerError("squeue failed", returncode=1),
                    flightjobd.SchedulerError("Cannot run sacct"), "ok\n"])

    def run(argv, timeout, **kw):
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer
    slurm = flightjobd.SlurmScheduler(run=run)
    for command in ("squeue", "squeue", "sacct"):
        with pytest.raises(flightjobd.SchedulerError):
            slurm._run([command])
    assert slurm._run(["sinfo"]) == "ok\n"
    assert slurm.failures == {("squeue", "timeout"): 1, ("squeue", "exit"): 1, ("sacct", "start"): 1}
    assert slurm.counters == {"squeue": 2, "sacct": 1, "sinfo": 1}


# a real daemon as root: real PAM user, workers, the local scheduler


class Browser:
    """A client with a session cookie (the login form's JSON twin), as a
    person's browser would have it, against a daemon on loopback."""

    def __init__(self, url):
        import http.cookiejar
        self.url, self.csrf = url, None
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))

    def __call__(self, method, path, body=None):
        headers = {"Content-Type": "application/json"} if body is not None else {}
        if self.csrf and method != "GET":
            headers["X-CSRF-Token"] = self.csrf
        req = urllib.request.Request(self.url + path, json.dumps(body).encode() if body is not None else None,
                                     headers, method=method)
        try:
            with self.opener.open(req, timeout=60) as r:
                status, raw = r.status, r.read()
        except urllib.error.HTTPError as e:
            status, raw = e.code, e.read()
        answer = json.loads(raw) if raw and raw[:1] in b"[{" else raw
        if path == "/api/login" and status == 200:
            self.csrf = answer["csrf_token"]
        return status, answer


def metrics_of(daemon):
    status, text = scrape(daemon.url)
    assert status == 200, text[:300]
    return text, samples(text)


def workers(found):
    """(started, running, {how: ended}) of the user workers."""
    return (value(found, "flightjobd_workers_started_total", role="user"),
            value(found, "flightjobd_workers_running", role="user"),
            {how: value(found, "flightjobd_workers_ended_total", role="user", how=how) for how in flightjobd.WORKER_ENDS})


def owner(pid):
    with open("/proc/%d/status" % pid) as f:
        return int(next(line for line in f if line.startswith("Uid:")).split()[1])


def test_a_daemon_s_counts_move_with_its_use_and_name_no_one(make_daemon, unix_users, runtime):
    user = unix_users.create(prefix="fjxyz")
    d = make_daemon(server={"multi_user": True}, worker=dict(runtime, idle_timeout=5),
                    storage={"state_dir": "~/.local/share/flight-job"}, templates={"site_dirs": []},
                    scheduler={"type": "local", "refresh_interval": 0, "background_refresh": 2}, metrics=ALLOW)
    _, before = metrics_of(d)
    assert value(before, "flightjobd_logins_total", outcome="failure") == 0
    b = Browser(d.url)
    assert b("POST", "/api/login", {"username": user.name, "password": "wrong"})[0] == 401
    assert b("POST", "/api/login", {"username": user.name, "password": user.password})[0] == 200
    assert b("GET", "/")[0] == 200
    assert b("GET", "/api/scripts")[0] == 200
    status, script = b("POST", "/api/scripts", {"template": "serial", "name": "secret-name",
                                                "answers": {"job_name": "secret-name"}})
    assert status == 201, script
    status, job = b("POST", "/api/jobs", {"script": script["id"], "answers": {}})
    assert status == 201, job
    job = wait_for(lambda: (lambda j: j if j["state"] in flightjobd.FINISHED else None)(
        b("GET", "/api/jobs/" + job["id"])[1]), 60, "the job finishing")
    assert job["state"] == "COMPLETED" and job["job_name"] == job["script_name"] == "secret-name"
    assert b("GET", "/jobs/" + job["id"])[0] == 200

    text, found = metrics_of(d)
    requests = "flightjobd_http_requests_total"
    assert value(found, "flightjobd_logins_total", outcome="success") == 1
    assert value(found, "flightjobd_logins_total", outcome="failure") == 1
    assert value(found, requests, method="POST", route="/api/login", status="4xx") == 1
    assert value(found, requests, method="POST", route="/api/login", status="2xx") == 1
    assert value(found, requests, method="GET", route="/", status="2xx") == 1
    assert value(found, requests, method="GET", route="/api/scripts", status="2xx") == 1
    assert value(found, requests, method="POST", route="/api/scripts", status="2xx") == 1
    assert value(found, requests, method="POST", route="/api/jobs", status="2xx") == 1
    assert value(found, requests, method="GET", route="/api/jobs/<id>", status="2xx") >= 1
    assert value(found, requests, method="GET", route="/jobs/<id>", status="2xx") == 1
    assert value(found, "flightjobd_http_request_duration_seconds_count", route="/api/jobs") == 1
    started, running, ended = workers(found)
    assert started >= workers(before)[0] + 1 and running == started - sum(ended.values()) >= 0
    assert value(found, "process_resident_memory_bytes") > 0
    # no user, job or script, nor anything of their names or paths, in any label or anywhere at all
    for secret in (user.name, "secret-name", job["id"], script["id"], user.home):
        assert secret not in text, secret
    assert str(user.uid) not in label_values(text)  # a number: its digits may turn up inside a sample's value
    assert label_values(text) <= set(flightjobd.HTTP_METHODS) | {"other", "unmatched", "2xx", "3xx", "4xx", "5xx"} \
        | set(flightjobd.LOGIN_OUTCOMES) | set(flightjobd.WORKER_ROLES) | set(flightjobd.WORKER_ENDS) \
        | {r[0] for r in flightjobd.ROUTES} | {str(b) for b in flightjobd.LATENCY_BUCKETS} | {"+Inf", "ok", "failed"}

    # a worker that dies is a crash; its successor, ended when idle, is stopped; root killed none

    assert b("GET", "/api/scripts")[0] == 200
    pid = next(p for p in children(d.proc.pid) if owner(p) == user.uid)
    _, found = metrics_of(d)
    os.kill(pid, 9)
    wait_for(lambda: workers(metrics_of(d)[1])[2]["crashed"] == workers(found)[2]["crashed"] + 1, 30,
             "the killed worker counted as crashed")
    assert b("GET", "/api/scripts")[0] == 200
    wait_for(lambda: workers(metrics_of(d)[1])[2]["stopped"] > workers(found)[2]["stopped"], 60,
             "the idle worker counted as stopped")
    wait_for(lambda: workers(metrics_of(d)[1])[1] == 0, 60, "no worker running")
    started, running, ended = workers(metrics_of(d)[1])
    assert started >= workers(found)[0] + 1 and running == started - sum(ended.values()) == 0
    assert ended["killed"] == 0


def test_a_client_not_in_the_allow_list_gets_no_metrics(make_daemon, unix_users, runtime):
    user = unix_users.create(prefix="fjxyz")
    d = make_daemon(server={"multi_user": True}, worker=runtime, templates={"site_dirs": []},
                    storage={"state_dir": "~/.local/share/flight-job"}, metrics={"allow": ["192.0.2.0/24"]})
    assert Http(d.url, user.name, user.password)("GET", "/api/scripts", status=200)["scripts"] == []
    status, body = scrape(d.url)
    missing = urllib.request.Request(d.url + "/no-such-page")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(missing, timeout=60)
    assert status == 404 and body == e.value.read().decode()
    assert "flightjobd_" not in body and user.name not in body


# the real Slurm cluster: the shared status poll and the scheduler's failures


@pytest.mark.slurm
def test_poll_rounds_their_age_and_scheduler_failures_on_slurm(make_daemon, slurm_cluster, unix_users, runtime):
    from test_slurm_faults import HANG, Faults, fail
    slurm_cluster.ensure(accounting=True)
    faults = Faults()
    try:
        user = unix_users.create(prefix="fjxyz")
        d = make_daemon(server={"multi_user": True}, templates={"site_dirs": []},
                        worker=dict(runtime, path=faults.path, request_timeout=10),
                        storage={"state_dir": "~/.local/share/flight-job"}, metrics=ALLOW,
                        scheduler=slurm_cluster.scheduler(timeout=2, refresh_interval=1, background_refresh=1))
        api = Http(d.url, user.name, user.password)
        script = api("POST", "/api/scripts", {"template": "serial", "name": "secret-name"}, status=201)
        api("PATCH", "/api/scripts/" + script["id"], {"content": "#!/bin/bash\nsleep 300\n"}, status=200)
        faults.set("sbatch", fail("sbatch: error: Batch job submission failed: Invalid partition name specified"))
        refused = api("POST", "/api/jobs", {"script": script["id"], "answers": {}}, status=201)
        assert refused["state"] == "FAILED" and "Invalid partition name" in refused["reason_text"]
        _, found = metrics_of(d)
        assert value(found, "flightjobd_scheduler_failures_total", command="sbatch", kind="exit") == 1
        faults.clear()
        job = api("POST", "/api/jobs", {"script": script["id"], "answers": {}}, status=201)

        def seen(name, at_least, **labels):
            return wait_for(lambda: (lambda f: f if value(f, name, **labels) >= at_least else None)(metrics_of(d)[1]),
                            90, "%s%s reaching %s" % (name, labels, at_least))
        found = seen("flightjobd_status_poll_rounds_total", 1, outcome="ok")
        assert value(found, "flightjobd_status_poll_last_success_age_seconds") < 60
        assert value(found, "flightjobd_workers_running", role="status") == 1
        ok = value(found, "flightjobd_status_poll_rounds_total", outcome="ok")

        # squeue fails: failed rounds, squeue's failures by kind, the last good round ageing
        faults.set("squeue", fail("squeue: error: slurm_load_jobs error: Socket timed out on send/recv operation"))
        found = seen("flightjobd_status_poll_rounds_total", 2, outcome="failed")
        assert value(found, "flightjobd_scheduler_failures_total", command="squeue", kind="exit") >= 2
        age = value(found, "flightjobd_status_poll_last_success_age_seconds")
        faults.set("squeue", HANG)
        found = seen("flightjobd_scheduler_failures_total", 1, command="squeue", kind="timeout")
        assert value(found, "flightjobd_status_poll_last_success_age_seconds") > age + 2  # + scheduler.timeout
        age = value(found, "flightjobd_status_poll_last_success_age_seconds")
        ok_meanwhile = value(found, "flightjobd_status_poll_rounds_total", outcome="ok")
        assert ok_meanwhile <= ok + 1  # a round under way as squeue began to fail may still have been good

        # squeue answers again: good rounds, the age back to a round's
        faults.clear()
        found = seen("flightjobd_status_poll_rounds_total", ok_meanwhile + 1, outcome="ok")
        assert value(found, "flightjobd_status_poll_last_success_age_seconds") < age
        assert api("GET", "/api/jobs/" + job["id"])["state"] in ("PENDING", "RUNNING")
        api("POST", "/api/jobs/%s/cancel" % job["id"], {})
        text, found = metrics_of(d)
        for secret in (user.name, "secret-name", job["id"], script["id"], user.home):
            assert secret not in text, secret
        assert job["scheduler_id"] not in label_values(text)  # a number: as a label value, never
        assert value(found, "flightjobd_http_requests_total", method="POST", route="/api/jobs", status="2xx") == 2
        assert value(found, "flightjobd_logins_total", outcome="success") >= 1
    finally:
        faults.remove()
