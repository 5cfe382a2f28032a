"""Sign-in through the site's proxy, in a real Chromium on the real Slurm
test cluster: the browser goes through Debian's nginx (its own sign-in,
auth_basic, then X-Remote-User) and is signed in to Flight Job with no
password of ours, submits a job that runs on Slurm, logs out to the proxy's
logout page; reached directly, the login page says sign-in goes through the
proxy, and a forged header is refused. Screenshots in
test-output/screenshots (proxy-*)."""
import importlib.util
import os
import re

import pytest
from playwright.sync_api import expect

from support import Nginx, free_port

_spec = importlib.util.spec_from_file_location("e2e_fixtures", os.path.join(os.path.dirname(__file__), "conftest.py"))
_fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_fixtures)
Site = _fixtures.Site

pytestmark = [pytest.mark.e2e, pytest.mark.slurm]


@pytest.fixture
def proxy_site(browser, axe_path, make_daemon, unix_users, runtime, pam_service, slurm_cluster):
    slurm_cluster.ensure(accounting=True)
    group = unix_users.group()
    user = unix_users.create(groups=[group])
    port = free_port()
    daemon = make_daemon(server={"multi_user": True, "trusted_proxies": ["127.0.0.1"]}, worker=runtime,
                         auth={"pam_service": pam_service, "proxy_header": "X-Remote-User", "proxy_users": ["www-data"],
                               "proxy_logout_url": "http://127.0.0.1:%d/signed-out" % port, "allow_groups": [group]},
                         storage={"state_dir": "~/.local/share/flight-job"},
                         scheduler=slurm_cluster.scheduler(background_refresh=2), templates={"site_dirs": []})
    nginx = Nginx(daemon.port, {user.name: "proxy-secret-1"}, port)
    context = browser.new_context(viewport={"width": 1280, "height": 860},
                                  http_credentials={"username": user.name, "password": "proxy-secret-1"})
    context.set_default_timeout(20000)
    site = Site(daemon, user, context.new_page(), axe_path)
    site.url, site.nginx, site.cluster = nginx.url, nginx, slurm_cluster
    yield site
    context.close()
    nginx.stop()
    slurm_cluster.run("scancel", "--user", user.name)


def test_signed_in_by_the_proxy_a_user_runs_a_job_and_logs_out_to_the_proxy(proxy_site, browser):
    site, page = proxy_site, proxy_site.page
    site.go("/jobs")  # no login form of ours: the proxy signed the user in
    expect(page).to_have_url(site.url + "/jobs")
    expect(page.locator("header .who")).to_contain_text(site.user.name)
    site.check_a11y("jobs, signed in by the proxy")
    site.shot("proxy-1-jobs-signed-in-by-the-proxy")

    script = site.make_script("through the proxy", "echo ran-through-the-proxy")
    job = site.submit(script["id"])
    site.go("/jobs/" + job["id"])
    expect(page.locator("[data-live-job]")).to_have_attribute("data-state", "COMPLETED", timeout=240000)
    assert site.cluster.run("sacct", "-n", "-X", "-P", "-j", job["scheduler_id"], "-o", "User").strip() \
        in ("", site.user.name)  # ran on Slurm as the user (sacct may not have its record yet)
    expect(page.locator("a.button:has-text('Remove')")).to_be_visible()  # the page has reloaded itself, finished
    page.wait_for_load_state()
    expect(page.locator("main")).to_contain_text("ran-through-the-proxy", timeout=60000)
    site.check_a11y("a job page, signed in by the proxy")
    site.shot("proxy-2-job-on-slurm")

    page.click("text=Log out")
    expect(page).to_have_url(re.compile(r"^http://127\.0\.0\.1:%d/signed-out$" % site.nginx.port))
    expect(page.locator("h1")).to_have_text("You are signed out of the site")
    site.shot("proxy-3-logged-out-to-the-proxy")

    # reached directly (a tunnel, its own browser), the login page says where sign-in is
    direct = browser.new_context(viewport={"width": 1280, "height": 860})
    try:
        there = Site(site.daemon, site.user, direct.new_page(), site.axe)
        there.go("/login")
        expect(there.page.locator("#proxy-note")).to_contain_text("single sign-on")
        there.check_a11y("login, proxy mode")
        there.shot("proxy-4-login-page-in-proxy-mode")
    finally:
        direct.close()

    # the header sent straight to the daemon, not through the proxy: refused, nobody signed in
    forged = browser.new_context(viewport={"width": 1280, "height": 860},
                                 extra_http_headers={"X-Remote-User": site.user.name})
    try:
        there = Site(site.daemon, site.user, forged.new_page(), site.axe)
        response = there.go("/jobs")
        assert response.status == 403
        expect(there.page.locator("main")).to_contain_text("accepted only from the site")
        expect(there.page.locator("header .who")).to_have_count(0)
        assert not forged.cookies()
        there.shot("proxy-5-forged-header-refused")
    finally:
        forged.close()
