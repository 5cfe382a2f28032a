"""Attacks, one a test: other users' items by id, path, `..` and symlink;
tampered metadata; CSRF on every state-changing route; XSS in every field a
page shows; session fixation, reuse, forgery; brute force; template code
trying to act as root; root and system users. (Earlier tests cover the
basics: tests/test_auth.py, test_scripts.py, test_jobs_local.py.)"""
import base64
import html
import json
import os
import pwd
import re
import secrets
import shlex
import signal
import subprocess
import time
import urllib.parse

import pytest
import webtest

import flightjobd
from support import api_login as login, chown_tree, makedirs_as, state_dir as state, wait_finished

XSS = ['<script>alert(1)</script>', '"><img src=x onerror=alert(2)>', "'><svg onload=alert(3)>"]
PAYLOAD = " ".join(XSS)


# another user's things, by id, path and symlink

# Another user's job reached by a symlink is 404, as a script is (README).
JOB_BY_SYMLINK = 404


def tree(path):
    """{relative name: bytes} of every file under path."""
    return {os.path.relpath(os.path.join(root, n), path): open(os.path.join(root, n), "rb").read()
            for root, dirs, files in os.walk(path) for n in files}


@pytest.mark.root
def test_symlinks_into_another_users_state_lead_nowhere(multi_app, unix_users):
    a, web = multi_app()
    alice, bob = unix_users.create(), unix_users.create()
    bweb = webtest.TestApp(a.bottle, extra_environ={"REMOTE_ADDR": "127.0.0.1"})
    bh = login(bweb, bob)
    bsid = bweb.post_json("/api/scripts", {"template": "serial", "name": "bob's", "notes": "bob secret notes"},
                          headers=bh).json["id"]
    bjid = bweb.post_json("/api/jobs", {"script": bsid, "answers": {}}, headers=bh).json["id"]
    wait_finished(bweb, bjid)
    before = tree(state(bob))

    ah = login(web, alice)
    web.post_json("/api/scripts", {"template": "serial", "name": "alice's"}, headers=ah)
    # alice (or anyone with her account) plants symlinks in her own state
    for kind, bid in (("scripts", bsid), ("jobs", bjid)):
        for name in (bid, "link-" + kind):
            link = os.path.join(state(alice), kind, name)
            os.symlink(os.path.join(state(bob), kind, bid), link)
            os.lchown(link, alice.uid, alice.gid)
    for sid in (bsid, "link-scripts"):
        for r in (web.get("/api/scripts/" + sid, status=404),
                  web.get("/scripts/" + sid, status=404),
                  web.patch_json("/api/scripts/" + sid, {"notes": "pwned"}, headers=dict(ah, **{"If-Match": "*"}),
                                 status=404),
                  web.post_json("/api/jobs", {"script": sid, "answers": {}}, headers=ah, status=404),
                  web.delete("/api/scripts/" + sid, headers=ah, status=404)):
            assert b"secret" not in r.body and b"Traceback" not in r.body, r.request.path
    for jid in (bjid, "link-jobs"):
        for r in [web.get("/api/jobs/" + jid + path, status=JOB_BY_SYMLINK)
                  for path in ("", "/files", "/files/job.out", "/output/stdout")] + [
                web.post("/api/jobs/%s/cancel" % jid, headers=ah, status=JOB_BY_SYMLINK),
                web.delete("/api/jobs/" + jid, headers=ah, status=JOB_BY_SYMLINK)]:
            assert b"secret" not in r.body and b"job.out" not in r.body, r.request.path
    # in her lists: her own script, and each link as a broken item saying why
    listing = web.get("/api/scripts").json["scripts"]
    assert [s["name"] for s in listing if not s.get("broken")] == ["alice's"]
    assert sorted(s["id"] for s in listing if s.get("broken")) == sorted([bsid, "link-scripts"])
    assert all("secret" not in json.dumps(s) for s in listing)
    jobs = web.get("/api/jobs").json
    assert jobs["total"] == 0 and sorted(b["id"] for b in jobs["broken"]) == sorted([bjid, "link-jobs"])
    assert all(b["broken"] and "cannot be read" in b["reason"] for b in jobs["broken"])
    assert "Scripts" in web.get("/scripts", status=200).text and "Jobs" in web.get("/jobs", status=200).text
    # bob's things are untouched
    assert tree(state(bob)) == before
    assert bweb.get("/api/jobs/" + bjid).json["state"] == "COMPLETED"


@pytest.mark.root
def test_whole_state_dir_symlinked_to_another_user(multi_app, unix_users):
    a, web = multi_app()
    alice, bob = unix_users.create(), unix_users.create()
    bweb = webtest.TestApp(a.bottle, extra_environ={"REMOTE_ADDR": "127.0.0.1"})
    bsid = bweb.post_json("/api/scripts", {"template": "serial", "notes": "bob secret"}, headers=login(bweb, bob)).json["id"]
    makedirs_as(os.path.dirname(state(alice)), alice)
    os.symlink(state(bob), state(alice))
    os.lchown(state(alice), alice.uid, alice.gid)
    ah = login(web, alice)
    # her lists cannot be read (403); bob's script by its id is not hers (404)
    for path, status in (("/api/scripts", 403), ("/api/jobs", 403), ("/api/scripts/" + bsid, 404),
                         ("/scripts", 403), ("/jobs", 403)):
        r = web.get(path, status=status)
        assert b"secret" not in r.body and bsid.encode() not in r.body, path
    # creating fails whole, and says a retry will not help (403)
    r = web.post_json("/api/scripts", {"template": "serial"}, headers=ah, status=403)
    assert "Traceback" not in r.text and r.json["error"]["code"] == "forbidden"
    assert os.listdir(os.path.join(state(bob), "scripts")) == [bsid]


@pytest.mark.root
def test_template_dir_symlinked_to_another_users_and_a_template_reading_shadow(multi_app, unix_users):
    a, web = multi_app()
    alice, bob = unix_users.create(), unix_users.create()
    bob_templates = os.path.join(bob.home, ".config", "flight-job", "templates")
    makedirs_as(os.path.join(bob_templates, "bobs"), bob)
    with open(os.path.join(bob_templates, "bobs", "template.toml"), "w") as f:
        f.write('name = "Bob secret template"\nsynopsis = "s"\ndescription = "d"\n')
    with open(os.path.join(bob_templates, "bobs", "script.sh"), "w") as f:
        f.write("#!/bin/bash\necho bob\n")
    chown_tree(bob_templates, bob)
    os.chmod(bob.home, 0o700)
    alice_config = os.path.join(alice.home, ".config", "flight-job")
    makedirs_as(alice_config, alice)
    os.symlink(bob_templates, os.path.join(alice_config, "templates"))
    os.lchown(os.path.join(alice_config, "templates"), alice.uid, alice.gid)
    login(web, alice)
    listing = web.get("/api/templates").json
    assert "bobs" not in [t["id"] for t in listing["templates"]] + [p["id"] for p in listing["problems"]]
    web.get("/api/templates/bobs", status=404)
    web.get("/templates/bobs/create", status=404)
    assert "Bob secret" not in web.get("/templates").text
    # her own template whose script is a symlink to /etc/shadow: left out, nothing leaks
    os.unlink(os.path.join(alice_config, "templates"))
    makedirs_as(os.path.join(alice_config, "templates", "shadow"), alice)
    d = os.path.join(alice_config, "templates", "shadow")
    with open(os.path.join(d, "template.toml"), "w") as f:
        f.write('name = "Shadow"\nsynopsis = "s"\ndescription = "d"\n')
    os.symlink("/etc/shadow", os.path.join(d, "script.sh"))
    os.symlink("/etc/shadow", os.path.join(d, "notes.md"))
    chown_tree(d, alice)
    listing = web.get("/api/templates").json
    problem = [p for p in listing["problems"] if p["id"] == "shadow"]
    assert problem and "root:" not in json.dumps(listing)
    assert "root:" not in web.get("/templates").text


@pytest.mark.root
def test_tampered_job_metadata_cannot_reach_shadow_or_another_user(multi_app, unix_users):
    a, web = multi_app()
    alice, bob = unix_users.create(), unix_users.create()
    with open(os.path.join(bob.home, "secret"), "w") as f:
        f.write("bob's secret\n")
    os.chmod(bob.home, 0o700)
    h = login(web, alice)
    sid = web.post_json("/api/scripts", {"template": "serial"}, headers=h).json["id"]
    jid = web.post_json("/api/jobs", {"script": sid, "answers": {}}, headers=h).json["id"]
    wait_finished(web, jid)
    meta_path = os.path.join(state(alice), "jobs", jid, "meta.json")
    for results, stdout in (("/etc", "/etc/shadow"), (bob.home, bob.home + "/secret"), ("/root", "/root/.bashrc")):
        meta = json.load(open(meta_path))
        meta.update(results_dir=results, stdout_path=stdout, stderr_path=stdout)
        with open(meta_path, "w") as f:  # alice owns the file: she may write anything in it
            json.dump(meta, f)
        for path in ("/output/stdout", "/output/stderr", "/files/shadow", "/files/secret", "/files/.bashrc",
                     "/files/../shadow"):
            # unreadable is 403; missing (or `..`) is 404
            missing = path == "/files/../shadow" or (results == "/etc" and path in ("/files/secret", "/files/.bashrc"))
            r = web.get("/api/jobs/" + jid + path, status=404 if missing else 403)
            assert b"root:" not in r.body and b"secret" not in r.body.replace(b"/secret", b"")
        r = web.get("/jobs/" + jid, status=200)
        assert "root:" not in r.text and "bob&#039;s secret" not in r.text and "bob's secret" not in r.text
        if results != "/etc":  # /etc is listable by anyone anyway
            web.get("/api/jobs/%s/files" % jid, status=403)


@pytest.mark.root
def test_forged_process_group_cannot_signal_another_user(multi_app, unix_users):
    """Cancel signals the pgid in the user's own status file: as the user, so a
    forged pgid pointing at another user's processes does nothing. The same
    forgery pointing at the user's own process group ends it: the cancel
    does send the signal, and bob's process is spared only by permissions."""
    a, web = multi_app()
    alice, bob = unix_users.create(), unix_users.create()
    victims = {u.name: subprocess.Popen(["sleep", "600"], user=u.uid, group=u.gid, start_new_session=True)
               for u in (alice, bob)}
    try:
        h = login(web, alice)
        sid = web.post_json("/api/scripts", {"template": "serial"}, headers=h).json["id"]
        jid = web.post_json("/api/jobs", {"script": sid, "answers": {}}, headers=h).json["id"]
        wait_finished(web, jid)
        job_meta = os.path.join(state(alice), "jobs", jid, "meta.json")
        meta = json.load(open(job_meta))
        for owner, local_id in ((bob, "99"), (alice, "98")):
            local = os.path.join(state(alice), "local", local_id)
            makedirs_as(local, alice)
            for path, data in ((os.path.join(local, "spec.json"), {"format": 1, "id": local_id}),
                               (os.path.join(local, "status.json"), {
                                   "format": 1, "state": "RUNNING", "pgid": victims[owner.name].pid,
                                   "supervisor": os.getpid()}),
                               (job_meta, dict(meta, state="RUNNING", scheduler_id=local_id, ended_at=None))):
                with open(path, "w") as f:
                    json.dump(data, f)
                os.chown(path, alice.uid, alice.gid)
            r = web.post("/api/jobs/%s/cancel" % jid, headers=h, status=200)
            assert (r.json["id"], r.json["scheduler_id"]) == (jid, local_id) and r.json["cancel_requested_at"]
        # alice's own process got the signal (after bob's cancel was answered)...
        assert victims[alice.name].wait(timeout=30) == -signal.SIGTERM
        # ...bob's never did
        with pytest.raises(subprocess.TimeoutExpired):
            victims[bob.name].wait(timeout=2)
    finally:
        for victim in victims.values():
            victim.kill()
            victim.wait()


@pytest.mark.root
def test_other_users_items_through_the_pages(multi_app, unix_users):
    a, web = multi_app()
    alice, bob = unix_users.create(), unix_users.create()
    h = login(web, alice)
    sid = web.post_json("/api/scripts", {"template": "serial", "notes": "alice notes"}, headers=h).json["id"]
    jid = web.post_json("/api/jobs", {"script": sid, "answers": {}}, headers=h).json["id"]
    wait_finished(web, jid)

    def alices():
        job = web.get("/api/jobs/" + jid).json
        job.pop("scheduler_state")  # the scheduler's counters, not the job
        return web.get("/api/scripts/" + sid).json, job, tree(state(alice))
    before = alices()
    b = webtest.TestApp(a.bottle, extra_environ={"REMOTE_ADDR": "127.0.0.1"})
    token = login(b, bob)["X-CSRF-Token"]
    fields = {"csrf": token, "field": "notes", "text": "bob was here", "action": "submit", "name": "x"}
    for path in ("/scripts/%s/edit" % sid, "/scripts/%s/delete" % sid, "/scripts/%s/submit" % sid,
                 "/jobs/%s/cancel" % jid, "/jobs/%s/remove" % jid):
        r = b.post(path, fields, status=404)  # never the success redirect (303)
        assert "alice notes" not in r.text and "Not found" in r.text, path
    # the same form on a template creates bob's own script, not alice's
    r = b.post("/templates/serial/create", fields, status=303)
    assert [s["id"] for s in b.get("/api/scripts").json["scripts"]] == [r.location.rsplit("/", 1)[1]]
    for path in ("/scripts/" + sid, "/scripts/%s/submit" % sid, "/jobs/" + jid, "/jobs/%s/files/x" % jid,
                 "/jobs/%s/download/x" % jid, "/jobs/%s/remove" % jid):
        b.get(path, status=404)
    assert alices() == before
    assert before[0]["notes"] == "alice notes" and before[1]["state"] == "COMPLETED"
    assert [s["id"] for s in web.get("/api/scripts").json["scripts"]] == [sid]
    # by path: a user name or home in the URL means nothing
    for path in ("/api/scripts/..%2F" + sid, "/api/scripts/%s%%2F..%%2F..%%2F%s" % (bob.name, sid),
                 "/api/jobs/..%2F..%2F" + bob.name, "/api/jobs/%s/files/%%2Fhome%%2F%s" % (jid, alice.name)):
        r = b.get(path, expect_errors=True)
        assert r.status_int == 404, path


def test_fifo_and_device_in_results_do_not_hang(client, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    sid = client.create_script()["id"]
    client.api("PATCH", "/api/scripts/" + sid, {"content": (
        "#!/bin/bash\n#SBATCH --chdir=%s\n#SBATCH --output=job.out\n"
        "mkfifo pipe\nln -s /dev/zero zero\nln -s /proc/self/environ env\necho done\n") % out})
    jid = client.submit(sid)["id"]
    assert client.wait_job(jid)["state"] == "COMPLETED"
    started = time.time()
    for path, status in (("pipe", 404), ("zero", 403), ("env", 403)):
        client.api("GET", "/api/jobs/%s/files/%s" % (jid, path), status=status)
        client.web.get("/jobs/%s/files/%s" % (jid, path), status=status)
    assert time.time() - started < 30  # a read that blocked would wait for request_timeout (60 s) each


# CSRF on every state-changing route


def state_changing_routes(app):
    return [(r.method, r.rule) for r in app.bottle.routes
            if r.method != "GET" and r.rule not in ("/login", "/api/login")]


def test_csrf_on_every_state_changing_route(client, tmp_path):
    """Every route that changes state refuses a cookie session without the
    token, or with another session's token; the login routes have their own
    guard (below and in test_auth)."""
    app = client.app
    routes = state_changing_routes(app)
    assert len(routes) >= 13
    sid = client.create_script(notes="kept")["id"]
    jid = client.submit(sid)["id"]
    client.wait_job(jid)
    other = app.auth.create(app.daemon_user)  # a second, valid session's token
    ids = {"id": sid}
    for method, rule in routes:
        path = re.sub(r"<(\w+)[^>]*>", lambda m: {"id": jid if "/jobs" in rule else ids["id"],
                                                          "action": "hold", "task": "1"}[m.group(1)], rule)
        for token in (None, "", other.csrf, client.csrf[:-1]):
            if rule.startswith("/api/"):
                headers = {"X-CSRF-Token": token} if token is not None else {}
                r = client.web.request(path, method=method, headers=headers, body=b'{"notes": "pwned", '
                                       b'"template": "serial", "script": "%s", "answers": {}}' % sid.encode(),
                                       content_type="application/json", expect_errors=True)
                assert r.status_int == 403 and r.json["error"]["code"] == "forbidden", (method, path, token, r)
            else:
                fields = {"field": "notes", "text": "pwned", "action": "submit", "name": "pwned"}
                if token is not None:
                    fields["csrf"] = token
                r = client.web.post(path, fields, expect_errors=True)
                assert r.status_int == 403 and "CSRF" in r.text, (method, path, token, r)
    # nothing happened: still logged in, one script, one job, notes unchanged
    assert client.api("GET", "/api/scripts/" + sid).json["notes"] == "kept"
    assert len(client.api("GET", "/api/scripts").json["scripts"]) == 1
    assert client.api("GET", "/api/jobs").json["total"] == 1
    # the login routes: the form needs its own token; the API only takes JSON,
    # which a cross-site form cannot send
    r = client.web.post("/api/login", "username=x&password=y", content_type="text/plain", expect_errors=True)
    assert r.status_int == 400
    r = client.web.post("/api/login", {"username": "x", "password": "y"}, expect_errors=True)
    assert r.status_int == 400


# security headers on every response


def assert_secured(r, what):
    """The headers of flightjobd.security_headers(), on any response."""
    assert r.headers.get("Content-Security-Policy") == flightjobd.CSP, (what, r.status, r.headers)
    assert r.headers.get("X-Content-Type-Options") == "nosniff", (what, r.status)
    assert r.headers.get("X-Frame-Options") == "DENY", (what, r.status)
    assert r.headers.get("Referrer-Policy") == "same-origin", (what, r.status)


def test_security_headers_on_every_response(client, monkeypatch):
    """Every route, logged in and not, with and without its CSRF token, and
    the responses no route gives: 404, 405, a domain error, a 500 from a
    route and a 500 from Bottle itself (an exception outside our plugin),
    static files and their 404s. Each carries the security headers."""
    app = client.app
    sid = client.create_script()["id"]
    jid = client.submit(sid)["id"]
    client.wait_job(jid)
    listed = client.api("GET", "/api/jobs/%s/files" % jid).json["files"]
    path = [f["path"] for f in listed if f["type"] == "file"][0]
    anon = webtest.TestApp(app.bottle, extra_environ={"REMOTE_ADDR": "127.0.0.1"})
    seen = set()

    def check(web, method, url, **kw):
        r = web.request(url, method=method, expect_errors=True, **kw)
        assert_secured(r, (method, url))
        seen.add(r.status_int)

    for route in app.bottle.routes:
        values = {"id": jid if route.rule.startswith("/api/jobs") or route.rule.startswith("/jobs")
                  else "serial" if "/templates/" in route.rule else sid,
                  "path": "style.css" if route.rule.startswith("/static/") else path,
                  "which": "stdout", "action": "cancel", "task": "1"}
        url = re.sub(r"<(\w+)[^>]*>", lambda m: values[m.group(1)], route.rule)
        if route.rule in ("/logout", "/api/logout") or route.method == "DELETE" or "/remove" in route.rule:
            check(client.web, route.method, url)  # refused for want of a CSRF token: nothing ends
        elif route.method == "GET":
            check(client.web, "GET", url)
        else:
            check(client.web, route.method, url, headers={"X-CSRF-Token": client.csrf},
                  body=("csrf=" + client.csrf).encode(), content_type="application/x-www-form-urlencoded")
        check(anon, route.method, url)
    for url in ("/no-such-page", "/api/no-such-thing", "/static/no-such.css", "/static/../flightjobd.py",
                "/scripts/no-such-script", "/api/jobs/no-such-job", "/jobs/%s/files/no-such-file" % jid):
        check(client.web, "GET", url)
        check(anon, "GET", url)
    for method, url in (("PUT", "/scripts"), ("DELETE", "/jobs"), ("PATCH", "/api/jobs")):
        check(client.web, method, url)

    def boom(*args, **kw):
        raise RuntimeError("forced")
    app.bottle.route("/forced-500", callback=boom, skip=True)  # outside the plugin: Bottle's 500
    check(client.web, "GET", "/forced-500")
    monkeypatch.setattr(app.pool, "call", boom)  # inside a route: our 500
    check(client.web, "GET", "/scripts")
    check(client.web, "GET", "/api/scripts")
    assert {200, 303, 400, 401, 403, 404, 405, 500} <= seen, seen


# XSS in every field a page shows


def tagged(field):
    """The payload, marked with the field it was typed into, so that a page's
    escaped text tells which field the page printed."""
    return "%s %s-field" % (PAYLOAD, field)


def escaped_in(text, page):
    """Whether page shows text escaped (Bottle's {{}} or html.escape)."""
    return flightjobd.bottle.html_escape(text) in page or html.escape(text) in page


XSS_TOML = '''name = %(tname)s
synopsis = %(synopsis)s
description = %(tdesc)s
tags = [%(tag)s]
[[question]]
id = "label"
text = %(qtext)s
description = %(qdesc)s
type = "text"
default = %(qdefault)s
[[question]]
id = "pick"
text = %(ptext)s
description = %(pdesc)s
type = "select"
default = "a"
options = [{ value = "a", label = %(optlabel)s }, { value = %(optvalue)s, label = "b" }]
[[submission_question]]
id = "comment"
text = %(sqtext)s
description = %(sqdesc)s
type = "text"
default = %(sqdefault)s
'''
XSS_FIELDS = ("tname", "synopsis", "tdesc", "tag", "qtext", "qdesc", "qdefault", "ptext", "pdesc", "optlabel",
              "optvalue", "sqtext", "sqdesc", "sqdefault", "tnotes", "name", "notes", "answer", "content",
              "stdout", "comment", "next")
FILE_NAME = XSS[1] + " file"  # a file name may hold anything but "/"


def test_xss_in_every_shown_field(make_app, tmp_path):
    """Every page that prints a field someone chose shows it, escaped, with
    200; error pages (exact status) never echo it raw."""
    client = make_app()
    d = tmp_path / "user-templates" / "xss"
    d.mkdir(parents=True)
    (d / "template.toml").write_text(XSS_TOML % {f: json.dumps(tagged(f)) for f in XSS_FIELDS})
    (d / "script.sh").write_text("#!/bin/bash\n# {{label}}\n")
    (d / "notes.md").write_text(tagged("tnotes"))
    out = tmp_path / "out"
    out.mkdir()
    t = client.api("GET", "/api/templates/xss").json
    assert t["name"] == tagged("tname")
    s = client.create_script("xss", name=tagged("name"), notes=tagged("notes"),
                             answers={"label": tagged("answer"), "pick": tagged("optvalue")})
    sid = s["id"]
    r = client.web.get("/scripts/" + sid, status=200)  # the answer, rendered into the script
    assert escaped_in(tagged("answer"), r.text) and not any(p in r.text for p in XSS)
    s = client.api("PATCH", "/api/scripts/" + sid, {"content": (
        "#!/bin/bash\n#SBATCH --chdir=%s\n#SBATCH --output=job.out\n#SBATCH --job-name=x\n"
        "mkdir d\ntouch %s d/%s\necho %s\necho %s >&2\n# %s\n") % (
            out, *[shlex.quote(x) for x in (FILE_NAME, FILE_NAME, tagged("stdout"), tagged("stdout"))],
            tagged("content"))}).json
    job = client.submit(sid, {"comment": tagged("comment")})
    jid = job["id"]
    assert client.wait_job(jid)["state"] == "COMPLETED"
    assert os.path.exists(out / FILE_NAME)
    quoted = urllib.parse.quote(FILE_NAME, safe="")
    script_page = ["tname", "name", "notes", "content"]
    pages = {  # path: (status, what it shows, escaped)
        "/templates": (200, ["tname", "synopsis", "tdesc", "tag"]),
        "/templates/xss/create": (200, ["tname", "tdesc", "qtext", "qdesc", "qdefault", "ptext", "pdesc",
                                        "optlabel", "optvalue", "tnotes"]),
        "/scripts": (200, ["tname", "name"]),
        "/scripts/" + sid: (200, script_page),
        "/scripts/%s?edit=content" % sid: (200, script_page),
        "/scripts/%s?edit=notes" % sid: (200, script_page),
        "/scripts/%s?edit=name" % sid: (200, script_page),
        "/scripts/%s/delete" % sid: (200, ["name"]),
        "/scripts/%s/submit" % sid: (200, ["name", "sqtext", "sqdesc", "sqdefault"]),
        "/jobs": (200, ["name"]),
        "/jobs/" + jid: (200, ["name", "content", "stdout", "comment", FILE_NAME]),
        "/jobs/%s/cancel" % jid: (200, []),  # the scheduler's job number is all they show
        "/jobs/%s/remove" % jid: (200, []),
        "/jobs/%s/files/job.out" % jid: (200, ["stdout"]),
        "/jobs/%s/files/%s" % (jid, quoted): (200, [FILE_NAME]),
        "/jobs/%s/files/d" % jid: (200, [FILE_NAME]),  # a directory's listing
        "/login?next=" + urllib.parse.quote("/" + tagged("next")): (200, []),  # kept %-encoded: below
        "/nosuch" + urllib.parse.quote(XSS[0]): (404, []),
        "/scripts/" + urllib.parse.quote(XSS[0], safe=""): (404, []),
        "/jobs/%s/files/%s" % (jid, urllib.parse.quote(XSS[0], safe="")): (404, []),
    }
    for path, (status, fields) in pages.items():
        r = client.web.get(path, status=status)
        for p in XSS:
            assert p not in r.text, (path, p)
        for field in fields:
            assert escaped_in(field if field == FILE_NAME else tagged(field), r.text), (path, field)
        if status == 200:  # error pages: the security-header test (issue 13)
            assert "default-src 'self'" in r.headers["Content-Security-Policy"], path
    # the page to go to after logging in is carried %-encoded, as we rebuilt it
    r = client.web.get("/login?next=" + urllib.parse.quote("/" + tagged("next")), status=200)
    assert 'value="%s"' % flightjobd.bottle.html_escape(flightjobd.safe_next("/" + tagged("next"))) in r.text
    assert flightjobd.safe_next("/" + tagged("next")).startswith("/%3Cscript%3E")
    # the summary page shows the answers given at submit, and the command
    r = client.form("/scripts/%s/submit" % sid, {"q_comment": tagged("comment"), "action": "preview"}, status=200)
    assert all(p not in r.text for p in XSS)
    assert escaped_in(tagged("comment"), r.text) and escaped_in(tagged("name"), r.text)
    # a form re-shown with errors echoes the typed text escaped
    r = client.form("/templates/xss/create", {"name": tagged("name") + "\x01", "q_label": tagged("answer")},
                    status=422)
    assert all(p not in r.text for p in XSS) and escaped_in(tagged("answer"), r.text)
    assert escaped_in(tagged("name") + "\x01", r.text)
    r = client.form("/scripts/%s/edit" % sid, {"field": "name", "text": tagged("typed") + "\x01", "etag": s["etag"]},
                    status=422)
    assert all(p not in r.text for p in XSS) and escaped_in(tagged("typed") + "\x01", r.text)
    # raw output and downloads are never HTML
    r = client.api("GET", "/api/jobs/%s/output/stdout" % jid)
    assert r.content_type == "text/plain" and r.headers["X-Content-Type-Options"] == "nosniff"
    r = client.api("GET", "/api/jobs/%s/files/job.out" % jid)
    assert r.headers["Content-Disposition"].startswith("attachment") and r.content_type == "application/octet-stream"
    r = client.web.get("/jobs/%s/download/job.out" % jid)
    assert r.headers["Content-Disposition"].startswith("attachment")


# sessions


@pytest.mark.root
def test_session_fixation_and_reuse_through_the_pages(multi_app, unix_users):
    a, web = multi_app()
    alice, bob = unix_users.create(), unix_users.create()
    web.set_cookie(flightjobd.COOKIE, "attacker-chosen")
    form = web.get("/login").forms[0]
    form["username"], form["password"] = alice.name, alice.password
    form.submit(status=303)
    sid = web.cookies[flightjobd.COOKIE]
    assert sid != "attacker-chosen" and sid in a.auth.sessions and "attacker-chosen" not in a.auth.sessions
    # logging in again (as someone else) in the same browser ends the old session
    login(web, bob)
    assert sid not in a.auth.sessions and web.cookies[flightjobd.COOKIE] != sid
    stolen = webtest.TestApp(a.bottle)
    stolen.set_cookie(flightjobd.COOKIE, sid)
    stolen.get("/api/scripts", status=401)
    # the logout form ends the session for good, wherever its cookie was copied
    sid2 = web.cookies[flightjobd.COOKIE]
    csrf = web.get("/api/session").json["csrf_token"]
    copy = webtest.TestApp(a.bottle)
    copy.set_cookie(flightjobd.COOKIE, sid2)
    assert copy.get("/api/session").json["user"] == bob.name
    web.post("/logout", {"csrf": csrf}, status=303)
    copy.get("/api/scripts", status=401)
    copy.get("/scripts", status=303)
    copy.post("/logout", {"csrf": csrf}, status=303)  # to the login page, not a second logout
    assert sid2 not in a.auth.sessions


def test_forged_and_expired_session_cookies(client, make_config):
    web, app = client.web, client.app
    real = web.cookies[flightjobd.COOKIE]
    other_app = flightjobd.make_app(make_config())  # a session of another daemon means nothing here
    foreign = other_app.auth.create(app.daemon_user).id
    flipped = real[:-1] + ("A" if real[-1] != "A" else "B")
    for forged in (secrets.token_urlsafe(32), flipped, real[:-1], real + "x", foreign, "", '"' + real + '"',
                   "x" * 5000, "../../etc/passwd", real.upper()):
        anon = webtest.TestApp(app.bottle)
        anon.set_cookie(flightjobd.COOKIE, forged)
        anon.get("/api/scripts", status=401)
        anon.get("/scripts", status=303)
        r = anon.post("/api/scripts", '{"template": "serial"}', content_type="application/json", status=401)
        assert "Traceback" not in r.text
    # expired: past the absolute limit the server forgets it, and the cookie is dead
    app.auth.sessions[real].created -= app.config["auth"]["session_max"] + 1
    web.get("/api/scripts", status=401)
    assert real not in app.auth.sessions
    web.get("/scripts", status=303)
    web.set_cookie(flightjobd.COOKIE, real)
    web.get("/api/scripts", status=401)
    other_app.pool.stop_all()


@pytest.mark.parametrize("base_url, setting, secure", [
    ("https://jobs.example.org/", "auto", True),
    ("http://jobs.example.org/", "auto", False),
    ("", "auto", False),
    ("http://jobs.example.org/", "always", True),
    ("https://jobs.example.org/", "never", False),
])
def test_cookies_are_secure_when_the_site_is_served_over_https(make_config, base_url, setting, secure):
    """server.base_url's scheme decides (auth.secure_cookies = auto), for the
    session cookie and the login form's own cookie alike."""
    app = flightjobd.make_app(make_config(server={"base_url": base_url}, auth={"secure_cookies": setting}))
    web = webtest.TestApp(app.bottle)
    try:
        cookies = {}
        for r in (web.get("/login?token=" + app.auth.login_token, status=303), web.get("/login", status=200)):
            for k, v in r.headerlist:
                if k == "Set-Cookie":
                    cookies[v.split("=", 1)[0]] = [a.strip().lower() for a in v.split(";")[1:]]
        assert set(cookies) == {flightjobd.COOKIE, flightjobd.PRE_COOKIE}
        for name, attributes in cookies.items():
            assert ("secure" in attributes) == secure, (name, attributes)
            assert "httponly" in attributes, (name, attributes)
    finally:
        app.pool.stop_all()


@pytest.mark.root
def test_brute_force_is_throttled_on_every_login_path(multi_app, unix_users, monkeypatch):
    a, web = multi_app(auth={"throttle_free": 2, "throttle_delay": 60, "basic_cache": 0})
    u = unix_users.create()
    calls = []
    real_pam = flightjobd.Auth._pam
    monkeypatch.setattr(flightjobd.Auth, "_pam", lambda self, user, pw: calls.append(user) or real_pam(self, user, pw))
    bad = {"Authorization": "Basic " + base64.b64encode(("%s:wrong" % u.name).encode()).decode()}
    web.get("/api/scripts", headers=bad, status=401)
    web.post_json("/api/login", {"username": u.name, "password": "wrong"}, status=401)
    form = web.get("/login").forms[0]
    form["username"], form["password"] = u.name, "wrong"
    form.submit(status=401)
    assert len(calls) == 3
    # now every path refuses, even with the right password, without asking PAM
    web.get("/api/scripts", headers=u.basic(), status=429)
    web.post_json("/api/login", {"username": u.name, "password": u.password}, status=429)
    form = web.get("/login").forms[0]
    form["username"], form["password"] = u.name, u.password
    assert "Too many" in form.submit(status=429).text
    assert len(calls) == 3
    # a thousand tries cost nothing more and let nobody in
    for i in range(200):
        web.post_json("/api/login", {"username": u.name, "password": "guess%d" % i}, status=429)
    assert len(calls) == 3


# code in templates, and who may log in


@pytest.mark.root
def test_user_template_code_runs_as_the_user_never_root(multi_app, unix_users, monkeypatch):
    a, web = multi_app()
    alice = unix_users.create()
    d = os.path.join(alice.home, ".config", "flight-job", "templates", "evil")
    makedirs_as(d, alice)
    with open(os.path.join(d, "template.toml"), "w") as f:
        f.write('name = "Evil"\nsynopsis = "s"\ndescription = "d"\n')
    marker = "/etc/flightjob-pwned-%d" % os.getpid()
    with open(os.path.join(d, "script.sh"), "w") as f:
        f.write("% import os\n"
                "% ok = os.access('/etc', os.W_OK) or os.access('/etc/shadow', os.R_OK)\n"
                "#!/bin/bash\n# uid={{os.getuid()}} euid={{os.geteuid()}} groups={{os.getgroups()}} "
                "root-access={{ok}}\n% os.system('touch " + marker + " 2>/dev/null')\n")
    chown_tree(d, alice)
    seen = []
    real_load = flightjobd.load_template
    monkeypatch.setattr(flightjobd, "load_template", lambda d, s: seen.append(d) or real_load(d, s))
    h = login(web, alice)
    content = web.post_json("/api/scripts", {"template": "evil"}, headers=h, status=201).json["content"]
    m = re.search(r"uid=(\d+) euid=(\d+) groups=\[([\d, ]*)\] root-access=(\w+)", content)
    assert m, content
    assert int(m.group(1)) == int(m.group(2)) == alice.uid
    assert 0 not in [int(g) for g in m.group(3).split(",") if g.strip()]
    assert m.group(4) == "False"
    assert not os.path.exists(marker)
    assert seen == []  # the daemon (root) never loaded the template
    worker_pid = a.pool.pids()[alice.name]
    assert os.stat("/proc/%d" % worker_pid).st_uid == alice.uid


@pytest.mark.root
def test_root_and_system_users_refused_even_with_the_right_password(multi_app, monkeypatch):
    a, web = multi_app(auth={"failure_delay": 0})
    asked = []
    monkeypatch.setattr(flightjobd.Auth, "_pam", lambda self, user, pw: asked.append(user) or True)  # every password "right"
    system = [p.pw_name for p in pwd.getpwall() if p.pw_uid < 1000 or p.pw_uid == 65534]
    system = [n for n in system if n in ("root", "daemon", "bin", "sys", "nobody")] + system[5:10]
    assert "root" in system and "nobody" in system
    for name in system:
        a.auth.failures.clear()
        web.post_json("/api/login", {"username": name, "password": "x"}, status=401)
        basic = {"Authorization": "Basic " + base64.b64encode(("%s:x" % name).encode()).decode()}
        web.get("/api/scripts", headers=basic, status=401)
        form = web.get("/login").forms[0]
        form["username"], form["password"] = name, "x"
        form.submit(status=401)
    for odd in ("root ", " root", "ROOT", "0", "root\n", "root:x", "#0"):
        a.auth.failures.clear()
        web.post_json("/api/login", {"username": odd, "password": "x"}, status=401)
    assert a.pool.pids() == {}  # no worker was ever started for them
    assert asked == []  # and PAM was never asked


def test_a_worker_answering_nonsense_cannot_flood_the_log(client, caplog, monkeypatch):
    """A user's worker may answer anything (their template code runs
    there); a page that cannot use the answer is a plain 500, and its
    traceback is logged at most TRACEBACKS_PER_MINUTE times a minute for
    that user, with one line saying the rest were not."""
    monkeypatch.setattr(client.app.pool, "call", lambda *a, **k: ["not", "a", "script", "list"])
    caplog.set_level("INFO", logger="flightjobd")
    for _ in range(3 * flightjobd.TRACEBACKS_PER_MINUTE):
        r = client.web.get("/scripts", status=500)
        assert "Traceback" not in r.text
    tracebacks = [rec for rec in caplog.records if rec.exc_info]
    assert 1 <= len(tracebacks) <= flightjobd.TRACEBACKS_PER_MINUTE + 1  # +1: the minute may turn
    assert sum("are not logged" in rec.getMessage() for rec in caplog.records) >= 1
