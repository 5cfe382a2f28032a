"""A site's Prometheus scraping GET /metrics after a person has used the
site in a real Chromium, on the real Slurm cluster: the pages browsed, the
login and the shared status poll's rounds are counted, by route pattern and
outcome, and nothing of the person (name, job, script) is in it."""
import pytest

from conftest import Site
from support import wait_for
from test_metrics import label_values, samples, value

pytestmark = [pytest.mark.e2e, pytest.mark.slurm]


@pytest.fixture
def slurm_site(browser, axe_path, make_daemon, unix_users, runtime, slurm_cluster):
    slurm_cluster.ensure(accounting=True)
    user = unix_users.create(prefix="fjxyz")
    daemon = make_daemon(server={"multi_user": True}, worker=runtime, templates={"site_dirs": []},
                         storage={"state_dir": "~/.local/share/flight-job"},
                         scheduler=slurm_cluster.scheduler(refresh_interval=1, background_refresh=1),
                         metrics={"allow": ["127.0.0.1/32"]})
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    context.set_default_timeout(15000)
    yield Site(daemon, user, context.new_page(), axe_path)
    context.close()
    slurm_cluster.run("scancel", "--user", user.name)


def test_a_scrape_after_browsing_counts_the_pages(slurm_site):
    site = slurm_site
    page = site.page
    site.login()  # GET /login, POST /login, then /
    job = site.submit(site.make_script("secret-name", "sleep 300")["id"])
    for path in ("/templates", "/scripts", "/jobs", "/jobs/" + job["id"]):
        assert site.go(path).status == 200
    site.shot("70-metrics-job-page-browsed")

    def scrape():  # as Prometheus would: no login needed
        scraped = page.context.request.get(site.url + "/metrics")
        assert scraped.status == 200 and scraped.headers["content-type"].startswith("text/plain")
        return scraped.text()
    text = wait_for(lambda: (lambda t: t if value(samples(t), "flightjobd_status_poll_rounds_total", outcome="ok")
                             else None)(scrape()), 90, "a good round of the shared status poll")
    found = samples(text)
    requests = "flightjobd_http_requests_total"
    for method, route, status in (("GET", "/login", "2xx"), ("POST", "/login", "3xx"), ("GET", "/", "2xx"),
                                  ("GET", "/templates", "2xx"), ("GET", "/scripts", "2xx"), ("GET", "/jobs", "2xx"),
                                  ("GET", "/jobs/<id>", "2xx"), ("POST", "/api/scripts", "2xx"),
                                  ("POST", "/api/jobs", "2xx"), ("GET", "/static/<path:path>", "2xx")):
        assert value(found, requests, method=method, route=route, status=status) >= 1, (method, route, status)
    assert value(found, "flightjobd_logins_total", outcome="success") == 1
    assert value(found, "flightjobd_status_poll_rounds_total", outcome="ok") >= 1
    assert value(found, "flightjobd_workers_running", role="user") >= 1
    for secret in (site.user.name, "secret-name", job["id"], site.user.home):
        assert secret not in text, secret
    assert job["scheduler_id"] not in label_values(text)

    site.go("/metrics")  # what Prometheus reads, as the browser shows it
    site.shot("71-metrics-scrape")
