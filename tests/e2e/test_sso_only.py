"""auth.password_login = false, in a real Chromium: the site's proxy
(Debian's nginx, its own sign-in, then X-Remote-User) is the only way in.
Reached directly (as through an SSH tunnel), the login page says to use
the site's single sign-on, links its address (server.base_url) and has no
password form; a password posted anyway is refused and no session is made.
Through the proxy the user is signed in as before. Screenshots in
test-output/screenshots (proxy-6-, proxy-7-)."""
import importlib.util
import os

import pytest
from playwright.sync_api import expect

import flightjobd
from support import Nginx, free_port

_spec = importlib.util.spec_from_file_location("e2e_fixtures", os.path.join(os.path.dirname(__file__), "conftest.py"))
_fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_fixtures)
Site = _fixtures.Site

pytestmark = pytest.mark.e2e


def test_reached_directly_the_login_page_sends_to_the_sites_sign_in(browser, axe_path, make_daemon, unix_users,
                                                                    runtime, pam_service):
    user = unix_users.create()
    port = free_port()
    address = "http://127.0.0.1:%d/" % port
    daemon = make_daemon(server={"multi_user": True, "trusted_proxies": ["127.0.0.1"], "base_url": address},
                         worker=runtime, auth={"pam_service": pam_service, "proxy_header": "X-Remote-User",
                                               "proxy_users": ["www-data"], "password_login": False,
                                               "proxy_logout_url": address + "signed-out"},
                         storage={"state_dir": "~/.local/share/flight-job"},
                         scheduler={"type": "local", "refresh_interval": 0}, templates={"site_dirs": []})
    nginx = Nginx(daemon.port, {user.name: "proxy-secret-1"}, port)
    direct = browser.new_context(viewport={"width": 1280, "height": 860})
    proxied = browser.new_context(viewport={"width": 1280, "height": 860},
                                  http_credentials={"username": user.name, "password": "proxy-secret-1"})
    try:
        there = Site(daemon, user, direct.new_page(), axe_path)
        there.go("/login")  # (a page's redirect for someone not signed in goes to server.base_url: the proxy)
        page = there.page
        expect(page.locator("#proxy-note")).to_contain_text(
            "This site signs you in through its single sign-on: open " + address)
        expect(page.locator("#proxy-note a")).to_have_attribute("href", address)
        expect(page.locator("input[type=password]")).to_have_count(0)
        expect(page.locator("form[action='/login']")).to_have_count(0)
        there.check_a11y("login, the proxy the only way in")
        there.shot("proxy-6-login-sso-only")

        # a password posted anyway, with the login page's own token: refused, no session
        token = next(c["value"] for c in direct.cookies() if c["name"] == flightjobd.PRE_COOKIE)
        answer = page.request.post(daemon.url + "/login", form={
            "login_csrf": token, "next": "/", "username": user.name, "password": user.password})
        assert answer.status == 403 and "single sign-on" in answer.text()
        assert not [c for c in direct.cookies() if c["name"] == flightjobd.COOKIE]
        assert page.request.get(daemon.url + "/api/session").status == 401

        # through the proxy: signed in, no password of ours
        site = Site(daemon, user, proxied.new_page(), axe_path)
        site.url = nginx.url
        site.go("/")
        expect(site.page.locator("header .who")).to_contain_text(user.name)
        site.shot("proxy-7-signed-in-by-the-proxy-sso-only")
    finally:
        direct.close()
        proxied.close()
        nginx.stop()
