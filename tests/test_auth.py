"""Login with real PAM users, sessions, CSRF and the throttle."""
import subprocess
import time

import pytest
import webtest

import flightjobd

pytestmark = pytest.mark.root


def login(web, user, password, status):
    return web.post_json("/api/login", {"username": user, "password": password}, status=status)


def test_form_login_and_logout(multi_app, unix_users):
    a, web = multi_app()
    u = unix_users.create()
    page = web.get("/", status=303).follow()
    assert "Log in" in page.text
    form = page.forms[0]
    form["username"], form["password"] = u.name, u.password
    home = form.submit(status=303).follow()
    assert "Browse script templates" in home.text and u.name in home.text
    home.forms[0].submit(status=303)  # the logout form
    web.get("/", status=303)
    web.get("/api/scripts", status=401)


def test_api_login_wrong_password_and_basic(multi_app, unix_users):
    a, web = multi_app()
    u = unix_users.create()
    r = login(web, u.name, "wrong" + u.password, 401)
    assert r.json["error"]["code"] == "unauthorized"
    assert "password" in r.json["error"]["message"]
    assert login(web, u.name, u.password, 200).json["user"] == u.name
    fresh = webtest.TestApp(a.bottle, extra_environ={"REMOTE_ADDR": "127.0.0.2"})
    assert fresh.get("/api/scripts", headers=u.basic()).json["scripts"] == []
    bad = dict(u.basic())
    bad["Authorization"] = "Basic " + __import__("base64").b64encode(b"%s:nope" % u.name.encode()).decode()
    # never a Basic challenge: browsers would cache and replay the credentials
    assert fresh.get("/api/scripts", headers=bad, status=401).headers["WWW-Authenticate"].startswith("Session")
    # Basic needs no CSRF token: it carries no cookie a browser could replay
    fresh.post_json("/api/scripts", {"template": "serial"}, headers=u.basic(), status=201)


def test_expired_account_is_refused(multi_app, unix_users):
    a, web = multi_app()
    u = unix_users.create()
    subprocess.run(["chage", "-E", "0", u.name], check=True)
    login(web, u.name, u.password, 401)
    subprocess.run(["chage", "-E", "-1", u.name], check=True)
    login(web, u.name, u.password, 200)


def test_root_and_low_uids_are_refused(multi_app, unix_users, monkeypatch):
    u = unix_users.create(prefix="fjsys", uids=range(900, 1000))  # under min_uid 1000, over 900
    a, web = multi_app()
    login(web, u.name, u.password, 401)
    calls = []
    monkeypatch.setattr(flightjobd.Auth, "_pam", lambda self, user, pw: calls.append(user) or True)
    login(web, "root", "anything", 401)
    assert calls == []  # refused before PAM is even asked
    monkeypatch.undo()
    a2, web2 = multi_app(auth={"min_uid": 900})
    login(web2, u.name, u.password, 200)  # the same user passes a lower min_uid


def test_single_user_mode_admits_only_the_daemon_user(make_config, unix_users):
    a = flightjobd.make_app(make_config())
    web = webtest.TestApp(a.bottle, extra_environ={"REMOTE_ADDR": "127.0.0.1"})
    u = unix_users.create()
    login(web, u.name, u.password, 401)


def test_one_time_login_url(make_config):
    a = flightjobd.make_app(make_config())
    web = webtest.TestApp(a.bottle)
    token = a.auth.login_token
    web.get("/login?token=" + token, status=303)
    assert web.get("/api/session").json["user"] == a.daemon_user
    other = webtest.TestApp(a.bottle)
    assert "already been used" in other.get("/login?token=" + token, status=401).text
    other.get("/api/session", status=401)


def test_one_time_login_url_is_no_way_in_with_passwords_off(make_config):
    """auth.password_login = false: the single-user mode's link logs nobody in either (the daemon
    prints none then); the page says where the site signs people in."""
    a = flightjobd.make_app(make_config(server={"trusted_proxies": ["10.9.9.9"], "base_url": "https://hpc.example.org/"},
                                        auth={"proxy_header": "X-Remote-User", "proxy_logout_url": "/out",
                                              "password_login": False}))
    web = webtest.TestApp(a.bottle)
    page = web.get("/login?token=" + a.auth.login_token, status=401)
    assert "single sign-on: open\n<a href=\"https://hpc.example.org/\">" in page.text
    assert flightjobd.COOKIE not in web.cookies
    web.get("/api/session", status=401)


def test_throttle_per_user_and_per_address(multi_app, unix_users):
    """A user name from one address is refused after throttle_free failures,
    never the user from elsewhere; an address that failed for many names is
    refused for every name (tests/test_login_security.py has the rest)."""
    a, web = multi_app(auth={"throttle_free": 2, "throttle_delay": 60, "throttle_address": 5,
                             "failure_delay": 0})
    u, v = unix_users.create(), unix_users.create()
    for _ in range(3):
        login(web, u.name, "bad", 401)
    r = login(web, u.name, u.password, 429)  # even the right password, from this address, for now
    assert "Too many" in r.json["error"]["message"]
    other = webtest.TestApp(a.bottle, extra_environ={"REMOTE_ADDR": "198.51.100.9"})  # (all of 127/8 is one address)
    login(other, u.name, u.password, 200)  # the user is not locked out from another address
    login(other, v.name, v.password, 200)
    for i in range(5):
        login(other, "nosuchuser%d" % i, "bad", 401)
    login(other, v.name, v.password, 429)  # and this address is refused for any user


def sleep_past(moment):
    """Sleep until time.time() is past moment (a little more, for clocks)."""
    time.sleep(max(0.0, moment + 0.2 - time.time()))


def test_sessions_expire_idle_and_absolute(multi_app, unix_users):
    """Each "ended" step waits until the limit has passed by the session's
    own clock; each "still valid" step has seconds of margin, so a busy
    machine changes neither."""
    a, web = multi_app(auth={"session_idle": 60, "session_max": 60})
    u = unix_users.create()
    login(web, u.name, u.password, 200)
    session = a.auth.sessions[web.cookies[flightjobd.COOKIE]]
    a.config["auth"]["session_idle"] = 3
    web.get("/api/scripts", status=200)
    sleep_past(session.seen + 3)
    web.get("/api/scripts", status=401)  # idle too long
    login(web, u.name, u.password, 200)
    session = a.auth.sessions[web.cookies[flightjobd.COOKIE]]
    a.config["auth"]["session_idle"], a.config["auth"]["session_max"] = 60, 4
    web.get("/api/scripts", status=200)  # active, but...
    sleep_past(session.created + 4)
    assert time.time() - session.seen < 60
    web.get("/api/scripts", status=401)  # ...past the absolute limit


def test_session_cookie_flags_and_fixation(multi_app, unix_users):
    a, web = multi_app()
    u = unix_users.create()
    web.set_cookie(flightjobd.COOKIE, "attacker-chosen")
    r = login(web, u.name, u.password, 200)
    cookie = [h for k, h in r.headerlist if k == "Set-Cookie" and h.startswith(flightjobd.COOKIE)][0]
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie.replace("Lax", "lax")
    assert "attacker-chosen" not in cookie
    sid = web.cookies[flightjobd.COOKIE]
    web.post("/api/logout", headers={"X-CSRF-Token": r.json["csrf_token"]}, status=200)
    stolen = webtest.TestApp(a.bottle)
    stolen.set_cookie(flightjobd.COOKIE, sid)
    stolen.get("/api/scripts", status=401)  # no reuse after logout


def test_state_changes_need_the_csrf_token(multi_app, unix_users):
    a, web = multi_app()
    u = unix_users.create()
    token = login(web, u.name, u.password, 200).json["csrf_token"]
    r = web.post_json("/api/scripts", {"template": "serial"}, status=403)
    assert "CSRF" in r.json["error"]["message"]
    web.post_json("/api/scripts", {"template": "serial"}, headers={"X-CSRF-Token": "x" + token}, status=403)
    sid = web.post_json("/api/scripts", {"template": "serial"}, headers={"X-CSRF-Token": token}, status=201).json["id"]
    page = web.post("/scripts/%s/delete" % sid, {}, status=403)
    assert "CSRF" in page.text
    web.post("/scripts/%s/delete" % sid, {"csrf": "wrong"}, status=403)
    web.get("/api/scripts/%s" % sid, status=200)
    web.post("/logout", {}, status=403)
    web.post("/scripts/%s/delete" % sid, {"csrf": token}, status=303)
    web.get("/api/scripts/%s" % sid, status=404)


def test_login_form_needs_its_own_token(multi_app, unix_users):
    a, web = multi_app()
    u = unix_users.create()
    r = web.post("/login", {"username": u.name, "password": u.password}, status=403)
    assert "expired" in r.text


def test_health_needs_no_login(client):
    r = client.web.__class__(client.app.bottle).get("/api/health")
    assert r.json["status"] == "ok" and r.json["scheduler"] == "local"
    assert r.json["scheduler_answers"] is True and r.json["version"] == flightjobd.__version__
