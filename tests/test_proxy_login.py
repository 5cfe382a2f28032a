"""Sign-in through the site's proxy (auth.proxy_header), against a root
multi-user daemon process behind Debian's nginx as an authenticating proxy
on loopback (auth_basic with the proxy's own passwords, then X-Remote-User),
with real PAM users: who the proxy signs in needs no daemon password; an
account locked, expired or outside allow_groups is refused though the proxy
vouches; the header sent to the daemon by anyone but the proxy's account
(root, a local user, a tunnel: all from 127.0.0.1) is refused; logout hands
over to the proxy's logout URL."""
import base64
import http.client
import json
import os
import re
import subprocess
import urllib.parse

import pytest

import flightjobd
from support import Nginx, free_port, wait_for, write_toml
from test_metrics import samples, scrape, value

pytestmark = pytest.mark.root

HEADER = "X-Remote-User"


class Browser:
    """One HTTP client with a cookie, to a port on loopback; Basic
    credentials (the proxy's) when given."""

    def __init__(self, port, basic=None):
        self.port, self.basic, self.cookie = port, basic, None

    def __call__(self, method, path, body=None, headers=None, form=None):
        """(status, headers (lower-case names), text)."""
        headers = dict(headers or {})
        if self.basic:
            headers["Authorization"] = "Basic " + base64.b64encode(("%s:%s" % self.basic).encode()).decode()
        if self.cookie:
            headers["Cookie"] = "%s=%s" % (flightjobd.COOKIE, self.cookie)
        data = None
        if body is not None:
            data, headers["Content-Type"] = json.dumps(body).encode(), "application/json"
        if form is not None:
            data = urllib.parse.urlencode(form).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            conn.request(method, path, body=data, headers=headers)
            r = conn.getresponse()
            text = r.read().decode("utf-8", "replace")
        finally:
            conn.close()
        got = {}
        for k, v in r.getheaders():
            got.setdefault(k.lower(), []).append(v)
            if k.lower() == "set-cookie" and v.startswith(flightjobd.COOKIE + "="):
                self.cookie = v.split(";")[0].split("=", 1)[1].strip('"') or None
        return r.status, {k: v[-1] for k, v in got.items()}, text

    def json(self, method, path, body=None, headers=None, status=200):
        code, _, text = self(method, path, body, headers)
        assert code == status, (method, path, code, text[:500])
        return json.loads(text) if text else None


@pytest.fixture
def proxy_site(request, make_daemon, runtime, pam_service, unix_users):
    """alice (in the allowed group) and five who may not log in: bob (usermod
    -L), carol (chage -E 0), dave (not in auth.allow_groups), frank (a
    nologin shell, auth.deny_shells), erin (no such account). The daemon trusts X-Remote-User from 127.0.0.1 when
    the socket is www-data's (nginx's workers); nginx knows them all, with
    passwords of its own. request.param: more auth keys (indirect parametrization);
    with any, server.base_url is nginx's address."""
    group = unix_users.group()
    alice, bob, carol, frank = (unix_users.create(groups=[group]) for _ in range(4))
    dave = unix_users.create()
    subprocess.run(["usermod", "-s", "/usr/sbin/nologin", frank.name], check=True)
    subprocess.run(["usermod", "-L", bob.name], check=True)
    subprocess.run(["chage", "-E", "0", carol.name], check=True)
    port = free_port()
    logout = "http://127.0.0.1:%d/signed-out" % port
    more = getattr(request, "param", {})
    d = make_daemon(server={"multi_user": True, "trusted_proxies": ["127.0.0.1"],
                            **({"base_url": "http://127.0.0.1:%d/" % port} if more else {})}, worker=runtime,
                    auth={"pam_service": pam_service, "proxy_header": HEADER, "proxy_users": ["www-data"],
                          "proxy_logout_url": logout, "allow_groups": [group], "recheck_interval": 1, **more},
                    storage={"state_dir": "~/.local/share/flight-job"}, templates={"site_dirs": []},
                    metrics={"allow": ["127.0.0.1/32"]})
    proxy_passwords = {u.name: "proxy-" + u.name for u in (alice, bob, carol, dave, frank)}
    proxy_passwords["erin"] = "proxy-erin"
    nginx = Nginx(d.port, proxy_passwords, port)
    yield type("ProxySite", (), dict(d=d, nginx=nginx, logout=logout, alice=alice, bob=bob, carol=carol, dave=dave,
                                     frank=frank, via=lambda name: Browser(nginx.port, (name, proxy_passwords[name]))))
    nginx.stop()


def test_who_the_proxy_signs_in_uses_pages_and_the_api_without_a_daemon_password(proxy_site):
    s = proxy_site
    status, headers, _ = Browser(s.nginx.port)("GET", "/")  # the proxy's own sign-in comes first
    assert status == 401 and headers["server"].startswith("nginx")
    status, headers, _ = Browser(s.nginx.port, (s.alice.name, s.alice.password))("GET", "/")  # the PAM password
    assert status == 401 and headers["server"].startswith("nginx")  # is not the proxy's: never reaches the daemon

    web = s.via(s.alice.name)
    status, headers, page = web("GET", "/")
    assert status == 200 and s.alice.name in page and "Log out" in page and web.cookie
    assert logins(s.d.url, "success") == 1  # a vouched sign-in counts as a login (/metrics)
    session = web.json("GET", "/api/session")
    assert session["user"] == s.alice.name
    csrf = session["csrf_token"]
    web.json("POST", "/api/scripts", {"template": "serial", "name": "via the proxy", "answers": {}}, status=403)
    made = web.json("POST", "/api/scripts", {"template": "serial", "name": "via the proxy", "answers": {}},
                    {"X-CSRF-Token": csrf}, status=201)  # the session's CSRF token, as usual
    assert [x["id"] for x in web.json("GET", "/api/scripts")["scripts"]] == [made["id"]]
    status, _, page = web("GET", "/scripts")
    assert status == 200 and "via the proxy" in page
    assert web.json("GET", "/api/session")["csrf_token"] == csrf  # one session, kept by its cookie
    job = web.json("POST", "/api/jobs", {"script": made["id"], "answers": {}}, {"X-CSRF-Token": csrf}, status=201)
    assert web.json("GET", "/api/jobs/%s" % job["id"])["script_id"] == made["id"]
    assert os.stat(os.path.join(s.alice.home, ".local", "share", "flight-job")).st_uid == s.alice.uid

    # a user signed in at the proxy cannot name another: nginx sets the header, whatever the client sent
    web2 = s.via(s.alice.name)
    assert web2.json("GET", "/api/session", headers={HEADER: s.dave.name})["user"] == s.alice.name

    # the proxy signs a different person in on the same browser: the old session ends, theirs begins
    old = web.cookie
    web.basic = (s.dave.name, "proxy-" + s.dave.name)
    assert web("GET", "/")[0] == 403  # dave may not (not in allow_groups): and alice's session did not carry on
    assert Browser(s.d.port)("GET", "/api/session", headers={"Cookie": "%s=%s" % (flightjobd.COOKIE, old)})[0] == 401


@pytest.mark.parametrize("who", ["bob", "carol", "dave", "frank", "erin"])
def test_the_proxy_cannot_vouch_for_a_locked_expired_unallowed_or_unknown_account(proxy_site, who):
    web = proxy_site.via(getattr(proxy_site, who).name if who != "erin" else "erin")
    for path in ("/", "/api/session", "/login"):
        status, headers, text = web("GET", path)
        assert status == 403, (path, status, text[:300])
        assert "may not use Flight Job here" in text and "set-cookie" not in headers
        assert path != "/api/session" or json.loads(text)["error"]["code"] == "sign_in_refused"
    assert web.cookie is None
    assert logins(proxy_site.d.url, "failure") == 3 and logins(proxy_site.d.url, "success") == 0


@pytest.mark.parametrize("proxy_site", [{"password_login": False}], indirect=True)
def test_with_password_login_off_the_proxy_is_the_only_way_in(proxy_site):
    """auth.password_login = false: alice, reaching the daemon directly (as
    through an SSH tunnel), is refused with her right PAM password by the
    login form (its own token sent as a browser sends it, or none), by
    /api/login and by HTTP Basic on the API, each told to open the proxy's
    address (server.base_url) and counted as password_off; through the
    proxy she is signed in as before."""
    s = proxy_site
    sso = "This site signs you in through its single sign-on: open %s/" % s.nginx.url
    direct = Browser(s.d.port)
    status, headers, page = direct("GET", "/login")
    assert status == 200 and sso in words(page) and 'href="%s/"' % s.nginx.url in page, page
    assert 'type="password"' not in page and 'action="/login"' not in page  # no form to type a password into
    token = re.search(flightjobd.PRE_COOKIE + r"=([^;]+)", headers["set-cookie"]).group(1)
    form = {"login_csrf": token, "next": "/", "username": s.alice.name, "password": s.alice.password}
    for cookie in ("%s=%s" % (flightjobd.PRE_COOKIE, token), None):  # the form's token as a browser sends it; none
        status, _, page = direct("POST", "/login", form=form, headers={"Cookie": cookie} if cookie else {})
        assert status == 403 and sso in words(page) and direct.cookie is None, (status, page[:500])
    status, _, text = direct("POST", "/api/login", {"username": s.alice.name, "password": s.alice.password})
    assert status == 403 and direct.cookie is None, (status, text)
    error = json.loads(text)["error"]
    assert error["code"] == "password_login_off" and sso in error["message"]
    status, _, text = Browser(s.d.port, (s.alice.name, s.alice.password))("GET", "/api/scripts")  # HTTP Basic
    assert status == 403 and json.loads(text)["error"]["code"] == "password_login_off", (status, text)
    assert [logins(s.d.url, o) for o in ("password_off", "failure", "success")] == [4, 0, 0]

    web = s.via(s.alice.name)  # the proxy's sign-in still works
    status, _, page = web("GET", "/")
    assert status == 200 and s.alice.name in page and web.cookie
    assert web.json("GET", "/api/session")["user"] == s.alice.name
    assert logins(s.d.url, "success") == 1


def test_with_passwords_turned_off_a_session_is_honoured_only_through_the_proxy(proxy_site):
    """Sessions outlive a restart (the session store), so one made with a
    password while passwords were on would outlast turning them off: once
    off, a session is honoured only on the proxy's requests. Reached
    directly, a password's session and a proxy's session whose cookie is
    carried off to the daemon are not logged in (401); through the proxy
    the same session goes on."""
    s = proxy_site
    own = Browser(s.d.port)
    assert own.json("POST", "/api/login", {"username": s.alice.name, "password": s.alice.password})["user"]
    web = s.via(s.alice.name)
    csrf = web.json("GET", "/api/session")["csrf_token"]
    carried = Browser(s.d.port)
    carried.cookie = web.cookie
    assert own.json("GET", "/api/session")["user"] == carried.json("GET", "/api/session")["user"] == s.alice.name
    with open(s.d.config_path, "rb") as f:
        config = flightjobd._toml().loads(f.read().decode())
    config["auth"]["password_login"] = False
    config["server"]["base_url"] = s.nginx.url + "/"
    write_toml(s.d.config_path, config)
    s.d.stop()
    s.d.start()
    for browser in (own, carried):
        status, _, text = browser("GET", "/api/session")
        assert status == 401, (status, text)
        assert browser("GET", "/")[0] == 303  # to the login page
    assert web.json("GET", "/api/session") == {"user": s.alice.name, "csrf_token": csrf}


def words(page):
    """A page's text as read: tags dropped, white space one space."""
    return " ".join(re.sub(r"<[^>]+>", " ", page).split())


def logins(url, outcome):
    """The daemon's count of logins with this outcome (GET /metrics)."""
    status, text = scrape(url)
    assert status == 200, text[:300]
    return value(samples(text), "flightjobd_logins_total", outcome=outcome)


def test_a_lock_while_signed_in_through_the_proxy_ends_it(proxy_site):
    s = proxy_site
    web = s.via(s.alice.name)
    assert web.json("GET", "/api/session")["user"] == s.alice.name
    subprocess.run(["usermod", "-L", s.alice.name], check=True)
    wait_for(lambda: web("GET", "/api/scripts")[0] == 403, 30, "alice's proxy session refused once locked")
    assert Browser(s.nginx.port, web.basic)("GET", "/")[0] == 403  # nor a new one
    subprocess.run(["usermod", "-U", s.alice.name], check=True)
    assert Browser(s.nginx.port, web.basic)("GET", "/")[0] == 200


AS_USER = r"""
import http.client, json, sys
conn = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=60)
conn.request("GET", sys.argv[2], headers=json.loads(sys.argv[3]))
r = conn.getresponse()
print(json.dumps([r.status, r.getheader("Set-Cookie"), r.read().decode()[:300]]))
"""


def as_account(name, port, path, headers):
    """A request to the daemon on loopback from a process of that account: (status, Set-Cookie, text)."""
    done = subprocess.run(["setpriv", "--reuid", name, "--regid", name, "--init-groups", "/usr/bin/python3", "-c",
                           AS_USER, str(port), path, json.dumps(headers)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_the_header_sent_to_the_daemon_by_anyone_but_the_proxy_is_refused(proxy_site):
    s = proxy_site
    direct = Browser(s.d.port)
    for path in ("/api/session", "/", "/login", "/api/scripts"):
        status, headers, text = direct("GET", path, headers={HEADER: s.alice.name})  # root, from 127.0.0.1
        assert status == 403 and "set-cookie" not in headers, (path, status, text[:300])
        assert "is accepted only from the site" in text
    assert direct("GET", "/api/session", headers={"X_Remote_User": s.alice.name})[0] == 401  # dropped by waitress
    # a local user (as through an SSH tunnel: the connection is theirs), naming another or themselves
    for named in (s.alice.name, s.dave.name, "root"):
        status, cookie, text = as_account(s.dave.name, s.d.port, "/api/session", {HEADER: named})
        assert status == 403 and cookie is None, (named, status, text)
    # the proxy's account itself is believed (what the check tells apart is the socket's owner, not the path)
    status, cookie, text = as_account("www-data", s.d.port, "/api/session", {HEADER: s.alice.name})
    assert status == 200 and json.loads(text)["user"] == s.alice.name and cookie
    assert as_account("www-data", s.d.port, "/api/session", {HEADER: ""})[0] == 401  # empty: nobody signed in
    # a user with a session of their own (made with their password) sends it beside a forged header: refused
    own = Browser(s.d.port)
    assert own.json("POST", "/api/login", {"username": s.alice.name, "password": s.alice.password})["user"]
    assert own("GET", "/api/session", headers={HEADER: s.bob.name})[0] == 403
    assert own.json("GET", "/api/session")["user"] == s.alice.name  # and without the header, as before
    with open(s.d.log_path) as f:
        assert "refused a request carrying X-Remote-User from 127.0.0.1 (socket of uid %d)" % s.dave.uid in f.read()


def test_logout_through_the_proxy_hands_over_to_its_logout_url(proxy_site):
    s = proxy_site
    web = s.via(s.alice.name)
    csrf = web.json("GET", "/api/session")["csrf_token"]
    session = web.cookie
    status, headers, _ = web("POST", "/logout", form={"csrf": csrf}, headers={"Host": "evil.example"})
    assert status == 303 and headers["location"] == s.logout  # from the config, whatever the request said
    assert Browser(s.d.port)("GET", "/api/session", headers={"Cookie": "%s=%s" % (flightjobd.COOKIE, session)})[0] == 401
    status, _, page = Browser(s.nginx.port)("GET", "/signed-out")
    assert status == 200 and "signed out of the site" in page
    # the API says where to go
    web = s.via(s.alice.name)
    csrf = web.json("GET", "/api/session")["csrf_token"]
    assert web.json("POST", "/api/logout", {}, {"X-CSRF-Token": csrf}) == {"logged_out": True, "logout_url": s.logout}
    # a password session reached directly (a tunnel) logs out to the login form, as before
    own = Browser(s.d.port)
    csrf = own.json("POST", "/api/login", {"username": s.alice.name, "password": s.alice.password})["csrf_token"]
    status, headers, _ = own("POST", "/logout", form={"csrf": csrf})
    assert status == 303 and headers["location"] == "/login"
    status, _, page = Browser(s.d.port)("GET", "/login")
    assert status == 200 and 'id="proxy-note"' in page and "single sign-on" in page


SPRAY = r"""
import http.client, json, sys
seen = []
for i in range(32):
    conn = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=60)
    conn.request("POST", "/api/login", body=json.dumps({"username": "fjspray%02d" % i, "password": "x"}),
                 headers={"Content-Type": "application/json", "X-Forwarded-For": "203.0.113.%d" % i})
    seen.append(conn.getresponse().status)
    conn.close()
print(json.dumps(seen))
"""


def test_a_local_user_on_the_trusted_loopback_is_not_the_proxy_for_forwarded_for_either(
        make_daemon, runtime, pam_service, unix_users):
    """With auth.proxy_users, 127.0.0.1 in server.trusted_proxies is the proxy only on www-data's
    sockets: a local user's connection from there is counted as theirs ("loopback uid N"), its
    X-Forwarded-For never read, so 32 failed logins, each naming another address, are one
    address's: refused after auth.throttle_address (30). Without proxy_users (before), each
    counted for the address it named, and none was refused."""
    mallory = unix_users.create()
    d = make_daemon(server={"multi_user": True, "trusted_proxies": ["127.0.0.1"]}, worker=runtime,
                    auth={"pam_service": pam_service, "proxy_users": ["www-data"], "failure_delay": 0},
                    storage={"state_dir": "~/.local/share/flight-job"}, templates={"site_dirs": []})
    done = subprocess.run(["setpriv", "--reuid", mallory.name, "--regid", mallory.name, "--init-groups",
                           "/usr/bin/python3", "-c", SPRAY, str(d.port)], capture_output=True, text=True, timeout=120)
    seen = json.loads(done.stdout)
    assert seen[:30] == [401] * 30 and seen[-1] == 429, seen


def test_a_client_keeping_no_cookie_through_the_proxy_holds_at_most_its_share_of_sessions(proxy_site):
    """Red team: each cookie-less request through the proxy made a session
    (a file in root's store, an entry in its memory), without bound. A user
    holds at most SESSIONS_PER_USER: a new one ends their oldest."""
    s = proxy_site
    first = s.via(s.alice.name)
    assert first.json("GET", "/api/session")["user"] == s.alice.name
    for _ in range(flightjobd.SESSIONS_PER_USER + 8):
        assert s.via(s.alice.name).json("GET", "/api/session")["user"] == s.alice.name  # a new client each time
    kept = Browser(s.d.port)
    kept.cookie = first.cookie
    assert kept("GET", "/api/session")[0] == 401  # the oldest ended
    with open(s.d.config_path, "rb") as f:
        store = flightjobd._toml().loads(f.read().decode())["auth"]["session_dir"]
    assert len(os.listdir(store)) <= flightjobd.SESSIONS_PER_USER, len(os.listdir(store))


def test_metrics_read_x_forwarded_for_only_from_the_proxy(make_daemon, runtime, pam_service, unix_users):
    """Red team: /metrics believed X-Forwarded-For from any socket on a
    trusted loopback address (a local user naming an allowed address read
    it), and a proxied request naming no client counted as the proxy's own
    address. Now: the proxy's account's socket is read for X-Forwarded-For
    and needs one; anyone else's is its own address."""
    local = unix_users.create()
    d = make_daemon(server={"multi_user": True, "trusted_proxies": ["127.0.0.1"]}, worker=runtime,
                    auth={"pam_service": pam_service, "proxy_header": HEADER, "proxy_users": ["www-data"],
                          "proxy_logout_url": "/signed-out"},
                    metrics={"allow": ["10.1.0.5/32"]}, templates={"site_dirs": []})
    allowed = {"X-Forwarded-For": "10.1.0.5"}
    assert as_account(local.name, d.port, "/metrics", allowed)[0] == 404  # a local user naming an allowed address
    assert Browser(d.port)("GET", "/metrics", headers=allowed)[0] == 404  # root's socket is not the proxy either
    assert as_account("www-data", d.port, "/metrics", allowed)[0] == 200  # the proxy, for an allowed client
    assert as_account("www-data", d.port, "/metrics", {})[0] == 404  # the proxy naming no client
    assert as_account("www-data", d.port, "/metrics", {"X-Forwarded-For": "unix:"})[0] == 404
    assert as_account("www-data", d.port, "/metrics", {"X-Forwarded-For": "203.0.113.5"})[0] == 404
