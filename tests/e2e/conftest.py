"""Fixtures for the browser tests: Debian's Chromium driven by Playwright
against flightjobd running for real (waitress on loopback, multi-user mode,
a real PAM user logging in through the login form, that user's worker, the
local scheduler).

Never a downloaded browser: /usr/bin/chromium only. axe-core comes from npm
(pinned in tests/e2e/package.json), installed here once if missing.
Screenshots go to test-output/screenshots/ at the top of the checkout.
"""
import json
import os
import re
import shutil
import subprocess

import pytest

from support import gate, need

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CI = os.environ.get("CI") == "true"
CHROMIUM = "/usr/bin/chromium"
AXE = os.path.join(HERE, "node_modules", "axe-core", "axe.min.js")
SHOTS = os.path.join(ROOT, "test-output", "screenshots")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="session")
def axe_path():
    """axe-core's browser bundle, `npm install`ed into tests/e2e once."""
    if not os.path.exists(AXE) and shutil.which("npm"):
        subprocess.run(["npm", "install", "--prefix", HERE, "--no-audit", "--no-fund"],
                       capture_output=True, timeout=300)
    need(os.path.exists(AXE), "axe-core is not installed: run `npm install --prefix tests/e2e`")
    return AXE


@pytest.fixture(scope="session")
def browser():
    need(os.path.exists(CHROMIUM), "%s is needed for the browser tests (apt install chromium)" % CHROMIUM)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        need(False, "playwright for Python is not installed (requirements-e2e.txt)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield b
        b.close()


class Site:
    """The daemon, the test user and helpers a test needs around a page."""

    def __init__(self, daemon, user, page, axe):
        self.daemon, self.user, self.page, self.axe = daemon, user, page, axe
        self.url = daemon.url
        self.errors = []
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.on("console", lambda m: self.errors.append(m.text)
                if "Content Security Policy" in m.text else None)

    def go(self, path):
        return self.page.goto(self.url + path)

    def path(self):
        return re.sub(r"^https?://[^/]+", "", self.page.url)

    def shot(self, name, full_page=True):
        os.makedirs(SHOTS, exist_ok=True)
        self.page.screenshot(path=os.path.join(SHOTS, name + ".png"), full_page=full_page)

    def confirmation_page(self, path, title, shot):
        """The no-JavaScript confirmation page at path: its heading, axe,
        a screenshot; then back out with "Keep it"."""
        from playwright.sync_api import expect
        self.go(path)
        expect(self.page.locator("h1")).to_have_text(title)
        self.check_a11y(title.lower() + " confirmation")
        self.shot(shot)
        self.page.click("text=Keep it")

    def dismiss_confirm(self, link, action, listen_ms=3000):
        """Click link, dismiss its confirm dialog, and listen listen_ms for
        a request to action (the URL an accepted dialog posts to at once, or
        the confirmation page without JavaScript): none may go out. Returns
        the dialog's question."""
        asked, sent = [], []

        def on_request(request):
            if request.url.split("?")[0] == self.url + action:
                sent.append("%s %s" % (request.method, request.url))
        self.page.on("request", on_request)
        try:
            self.page.once("dialog", lambda d: (asked.append(d.message), d.dismiss()))
            self.page.click(link)
            self.page.wait_for_timeout(listen_ms)
        finally:
            self.page.remove_listener("request", on_request)
        assert asked, "%s asked nothing" % link
        assert not sent, "the dismissed dialog still sent %s" % sent
        return asked[0]

    def accept_confirm(self, link, action):
        """Click link and accept its confirm dialog: the POST to action goes
        out. Returns the dialog's question."""
        asked = []
        self.page.once("dialog", lambda d: (asked.append(d.message), d.accept()))
        with self.page.expect_request(lambda r: r.method == "POST" and r.url == self.url + action):
            self.page.click(link)
        assert asked, "%s asked nothing" % link
        return asked[0]

    def gate(self, name):
        """support.gate() in the user's home: a job that stays RUNNING until
        the test has seen it so."""
        return gate(os.path.join(self.user.home, "gate-" + name))

    def check_a11y(self, what):
        """axe-core on the page as it is: no serious or critical violations."""
        # Not page.add_script_tag(): the pages' CSP (default-src 'self')
        # rightly blocks an injected inline script, and bypass_csp would hide
        # our own CSP mistakes. Evaluating the bundle is not subject to CSP.
        if not self.page.evaluate("typeof window.axe !== 'undefined'"):
            with open(self.axe) as f:
                self.page.evaluate(f.read() + "\n;undefined")
        result = self.page.evaluate("axe.run(document, {resultTypes: ['violations']})")
        bad = [v for v in result["violations"] if v["impact"] in ("serious", "critical")]
        assert not bad, "%s: accessibility violations:\n%s" % (what, json.dumps(
            [{"id": v["id"], "impact": v["impact"], "help": v["help"],
              "nodes": [n["target"] for n in v["nodes"]][:5]} for v in bad], indent=1))
        assert not self.errors, "%s: JavaScript errors or CSP violations: %s" % (what, self.errors)

    def login(self):
        self.go("/login")
        self.page.fill("#username", self.user.name)
        self.page.fill("#password", self.user.password)
        self.page.click("button[type=submit]")
        self.page.wait_for_url(self.url + "/")
        return self

    def api(self, method, path, body=None):
        """A JSON API call from inside the page, with its session cookie
        and CSRF token (the token comes from the page's meta tag)."""
        return self.page.evaluate(
            """async ([method, path, body]) => {
                const token = document.querySelector('meta[name=csrf-token]').content;
                const r = await fetch(path, {method, credentials: 'same-origin',
                    headers: {'Content-Type': 'application/json', 'X-CSRF-Token': token},
                    body: body === null ? undefined : JSON.stringify(body)});
                const text = await r.text();
                if (!r.ok) throw new Error(method + ' ' + path + ': ' + r.status + ' ' + text);
                return text ? JSON.parse(text) : null;
            }""", [method, path, body])

    def make_script(self, name, extra=""):
        """A serial script (through the API) with extra commands at its end."""
        script = self.api("POST", "/api/scripts", {"template": "serial", "name": name, "answers": {}})
        if extra:
            full = self.api("GET", "/api/scripts/%s" % script["id"])
            self.api("PATCH", "/api/scripts/%s" % script["id"], {"content": full["content"] + "\n" + extra + "\n"})
        return script

    def submit(self, script_id):
        return self.api("POST", "/api/jobs", {"script": script_id, "answers": {}})


@pytest.fixture
def site(browser, axe_path, make_daemon, unix_users, runtime, request):
    """A real PAM user, the daemon in multi-user mode, and a fresh browser
    page (laptop-sized) not yet logged in."""
    user = unix_users.create()
    daemon = make_daemon(server={"multi_user": True}, worker=runtime,
                         storage={"state_dir": "~/.local/share/flight-job"},
                         scheduler={"type": "local", "refresh_interval": 0, "background_refresh": 2},
                         templates={"site_dirs": []})
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    context.set_default_timeout(15000)
    page = context.new_page()
    yield Site(daemon, user, page, axe_path)
    context.close()


@pytest.fixture
def logged_in(site):
    return site.login()


@pytest.fixture
def slurm_site(browser, axe_path, make_daemon, unix_users, runtime, slurm_cluster):
    """A real PAM user logged in, the daemon in multi-user mode on the real
    Slurm test cluster (accounting on; site.cluster is it); the user's jobs
    cancelled afterwards."""
    slurm_cluster.ensure(accounting=True)
    user = unix_users.create()
    daemon = make_daemon(server={"multi_user": True}, worker=runtime,
                         storage={"state_dir": "~/.local/share/flight-job"},
                         scheduler=slurm_cluster.scheduler(background_refresh=2), templates={"site_dirs": []})
    context = browser.new_context(viewport={"width": 1280, "height": 860}, accept_downloads=True)
    context.set_default_timeout(20000)
    site = Site(daemon, user, context.new_page(), axe_path)
    site.cluster = slurm_cluster
    yield site.login()
    context.close()
    slurm_cluster.run("scancel", "--user", user.name)
