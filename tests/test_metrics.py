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
from support import ROOT, Http, UnixUsers, config_in, wait_for

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
            ".Path(sys.argv[1]){})); print('prometheus_client' in sys.modules); a.pool.stop_all()")
    for extra, loaded in (("", "False"), (", metrics=%r" % ALLOW, "True")):
        out = subprocess.run([sys.executable, "-c", code.format(extra), str(tmp_path)], capture_output=True,
                             text=True, cwd=os.path.join(ROOT, "tests"), timeout=60)
        assert out.stdout.strip() == loaded, out.stderr[-2000:]


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
