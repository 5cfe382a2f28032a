"""Site fit (issue 27 item 6) in a real Chromium against the real Slurm test
cluster: the GPU template greyed with why (the cluster has no GPUs), the
account a select of the user's own Slurm accounts, and the submit page and
its summary saying that partition whole gives a job asking no memory all of
the node's memory; screenshots in test-output/screenshots (70-73)."""
import importlib.util
import os
import subprocess

import pytest
from playwright.sync_api import expect

import flightjobd

_spec = importlib.util.spec_from_file_location("e2e_fixtures", os.path.join(os.path.dirname(__file__), "conftest.py"))
_fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_fixtures)
Site = _fixtures.Site

pytestmark = [pytest.mark.e2e, pytest.mark.slurm]


@pytest.fixture
def slurm_site(browser, axe_path, make_daemon, unix_users, runtime, slurm_cluster):
    """A user with two Slurm accounts of their own (fjtest, fjother), added
    by root as a site's administrator would, logged in."""
    slurm_cluster.ensure(accounting=True)
    user = unix_users.create()
    subprocess.run([slurm_cluster.script, "add-user", user.name], check=True, capture_output=True, timeout=60)
    slurm_cluster.run("sacctmgr", "-i", "add", "user", user.name, "account=fjother")
    daemon = make_daemon(server={"multi_user": True}, worker=runtime,
                         storage={"state_dir": "~/.local/share/flight-job"},
                         scheduler=slurm_cluster.scheduler(background_refresh=2), templates={"site_dirs": []})
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    context.set_default_timeout(20000)
    site = Site(daemon, user, context.new_page(), axe_path)
    site.cluster = slurm_cluster
    yield site.login()
    context.close()
    slurm_cluster.run("scancel", "--user", user.name)
    slurm_cluster.run("sacctmgr", "-i", "delete", "user", user.name)


def test_gpu_template_greyed_accounts_offered_and_whole_node_memory_said(slurm_site):
    site, page = slurm_site, slurm_site.page
    # the templates page: the GPU template greyed, saying why, with no way to create from it
    gpu = page.locator("#template-gpu")
    for _ in range(60):  # the shared poll's first partition summary comes a moment after the first look
        site.go("/templates")
        if "unavailable" in (gpu.get_attribute("class") or ""):
            break
        page.wait_for_timeout(1000)
    expect(gpu).to_have_class("card template unavailable")
    expect(gpu.locator("[data-field=unavailable]")).to_have_text("Not offered here: needs GPUs: this cluster has none.")
    expect(gpu.locator("a.button")).to_have_count(0)
    expect(page.locator("#template-serial a.button")).to_be_visible()
    site.check_a11y("templates, GPU greyed")
    gpu.scroll_into_view_if_needed()
    site.shot("70-gpu-template-greyed")

    # the submit page: the account is one of the user's own, the memory note follows the partition
    script = site.api("POST", "/api/scripts", {"template": "serial", "name": "site fit", "answers": {}})
    site.go("/scripts/%s/submit" % script["id"])
    options = page.locator("#q_account option")
    expect(options).to_have_text(["(your default account)", "fjother", "fjtest"])
    note = page.locator("#job-defaults")
    expect(note).to_be_hidden()  # debug, the default partition, has a memory default
    page.select_option("#q_partition", "whole")
    mem_mb = int(site.cluster.run("sinfo", "--noheader", "--Node", "--partition=whole", "--format=%m").split()[0])
    words = "No memory asked: this cluster gives the job all of the node's memory (%s)" % flightjobd.mem_words(mem_mb)
    expect(note).to_be_visible()
    expect(note).to_contain_text("On partition whole: " + words)
    page.fill("#q_mem", "500M")
    expect(note).to_be_hidden()
    page.fill("#q_mem", "")
    expect(note).to_be_visible()
    page.select_option("#q_account", "fjother")
    site.check_a11y("submit, account and memory note")
    page.locator("#field-partition").scroll_into_view_if_needed()
    site.shot("71-submit-account-and-memory-note")
    page.select_option("#q_partition", "excl")
    expect(note).to_contain_text("Partition excl gives each job whole nodes (OverSubscribe=EXCLUSIVE)")
    page.select_option("#q_partition", "whole")

    # the summary says it again, before the submit
    page.click("button[value=review]")
    expect(page.locator("h1")).to_have_text("Summary")
    expect(page.locator("#job-defaults")).to_contain_text(words)
    expect(page.locator("main")).to_contain_text("--account=fjother")
    site.check_a11y("summary, memory note")
    site.shot("72-summary-memory-note")

    # an account not theirs, typed past the select: refused before sbatch, naming theirs
    site.go("/scripts/%s/submit" % script["id"])
    page.evaluate("document.querySelector('#q_account').add(new Option('root', 'root'))")
    page.select_option("#q_account", "root")
    page.click("button[value=review]")
    expect(page.locator("#field-account .field-error")).to_have_text(
        "Account: 'root' is not one of the choices (fjother, fjtest)")
    assert site.api("GET", "/api/jobs")["jobs"] == []
    site.shot("73-account-not-theirs")
