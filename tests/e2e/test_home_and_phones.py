"""The home page and phones (issue 27, items 1 and 5), in a real Chromium
against the real Slurm test cluster: a new user's one first step, their
jobs with states that change live (the tab's own poll), what the cluster
has free as sinfo says; at 390 px the job list as cards, its filters
folded, and no page a user can reach wider than the screen; the home page,
the job list and a job page pass axe at 1280 and 390 px. Screenshots in
test-output/screenshots (70-79)."""
import re

import pytest
from playwright.sync_api import expect

from support import wait_for


pytestmark = [pytest.mark.e2e, pytest.mark.slurm]

PHONE, LAPTOP = {"width": 390, "height": 844}, {"width": 1280, "height": 860}


def both_sizes(site, what, shot):
    """axe at 1280 and at 390 px on the page as it is, a screenshot of each."""
    page = site.page
    for name, size in (("", LAPTOP), ("-phone", PHONE)):
        page.set_viewport_size(size)
        page.wait_for_function("document.documentElement.clientWidth === %d" % size["width"])
        site.check_a11y("%s at %d px" % (what, size["width"]))
        if size is PHONE:
            fits(site, what, shot + name)
        else:
            site.shot(shot + name)
    page.set_viewport_size(LAPTOP)


def fits(site, what, shot):
    """The page is no wider than the phone's screen (no sideways scroll)."""
    width = site.page.evaluate("document.documentElement.scrollWidth")
    site.shot(shot)
    wide = [] if width <= PHONE["width"] else site.page.evaluate(  # what sticks out, to say so
        """w => Array.from(document.querySelectorAll('body *')).filter(e => e.getBoundingClientRect().right > w)
           .slice(0, 8).map(e => e.tagName + '.' + e.className + ' ' + Math.round(e.getBoundingClientRect().right))""",
        PHONE["width"])
    assert width <= PHONE["width"], "%s is %d px wide on a %d px screen: %s" % (what, width, PHONE["width"], wide)


def reload_until(site, selector, what, timeout=60):
    """The page, reloaded until selector is on it (a page shows what its request found)."""
    def there():
        if site.page.locator(selector).count():
            return True
        site.page.reload()
        return False
    wait_for(there, timeout, what, interval=0.5)


def test_home_first_step_live_jobs_and_what_is_free(slurm_site):
    site, page = slurm_site, slurm_site.page
    # a new user: one obvious first step, to the templates
    expect(page.locator("h1")).to_have_text("Job manager")
    step = page.locator(".first-step a.button")
    expect(step).to_have_text("Create your first job script")
    expect(page.locator("main .button.primary")).to_have_count(1)
    expect(page.locator("header [data-notify]")).to_have_count(0)  # moved to the jobs page
    # what is free, as sinfo says (the shared poll makes the summary once a page wants it)
    reload_until(site, "table[data-cluster] tr[data-partition]", "the partition summary on the home page")
    name, cpus = site.cluster.run("sinfo", "--noheader", "--format=%R %C").split()[:2]  # CPUs A/I/O/T
    row = page.locator("tr[data-partition='%s']" % name)
    expect(row.locator("[data-field=cores]")).to_have_text(re.compile(r"^\d+ of %s$" % cpus.split("/")[3]))
    both_sizes(site, "home, a new user", "70-home-first-step")
    step.click()
    expect(page).to_have_url(site.url + "/templates")

    # a running job on the home page, its state following Slurm's without a reload
    held, release = site.gate("home")
    job = site.submit(site.make_script("Home run", held)["id"])
    site.go("/")
    expect(page.locator(".first-step")).to_have_count(0)  # the user has a script now
    row = page.locator("table[data-activity-jobs] tr[data-job='%s']" % job["id"])
    expect(row.locator("a")).to_have_text(job["scheduler_id"])
    expect(row.locator(".badge")).to_have_text("Running", timeout=60000)
    assert site.cluster.run("squeue", "--noheader", "-j", job["scheduler_id"], "-o", "%T").strip() == "RUNNING"
    expect(page.locator("#jobs-counts")).to_contain_text("1 running, 0 pending")  # live too
    both_sizes(site, "home, a job running", "71-home-running")
    page.evaluate("window.notReloaded = true")
    release()
    expect(row.locator(".badge")).to_have_text("Completed", timeout=90000)
    expect(row.locator("[data-field=ended_at] time")).to_have_count(1)
    assert page.evaluate("window.notReloaded") is True
    assert site.cluster.run("sacct", "-n", "-X", "-P", "-j", job["scheduler_id"], "-o", "State").strip() == "COMPLETED"

    # the notification control is on the jobs page; the list and a job page pass axe at both sizes
    site.go("/jobs")
    expect(page.locator(".list-head button[data-notify]")).to_have_text("Notify me when jobs start or end")
    both_sizes(site, "jobs", "72-jobs")
    site.go("/jobs/" + job["id"])
    both_sizes(site, "job", "73-job")


def test_phones_cards_folded_filters_and_no_page_wider_than_the_screen(slurm_site):
    site, page = slurm_site, slurm_site.page
    page.set_viewport_size(PHONE)  # a new user's empty lists
    for path, what in (("/jobs", "jobs, none yet"), ("/scripts", "scripts, none yet")):
        site.go(path)
        fits(site, what, "75-phone-empty-" + path.strip("/"))
    long_name = "A rather long script name that a phone has to wrap somewhere"
    script = site.make_script(long_name, "echo done")
    done = site.submit(script["id"])
    array = site.make_script("Array on a phone")
    site.api("PATCH", "/api/scripts/%s" % array["id"], {"content": (
        '#!/bin/bash\n#SBATCH --array=1-3\n#SBATCH --output=arr-%A_%a.out\necho "task $SLURM_ARRAY_TASK_ID"\n')})
    arr = site.submit(array["id"])
    for j in (done, arr):
        wait_for(lambda: site.api("GET", "/api/jobs/" + j["id"])["state"] == "COMPLETED", 180,
                 "job %s completing" % j["scheduler_id"], interval=1)
    page.set_viewport_size(PHONE)

    # the job list as cards: every cell captioned by its column, the state whole, the filters folded
    site.go("/jobs")
    card = page.locator("tr[data-job='%s']" % done["id"])
    assert card.evaluate("tr => getComputedStyle(tr).display") == "block"
    heads = [re.sub(r"[\u25b2\u25bc]", "", t).strip() for t in page.locator("table[data-live-jobs] thead th").all_inner_texts()]
    labels = card.locator("td").evaluate_all("tds => tds.map(td => td.getAttribute('data-label'))")
    assert [h for h in heads if h] == [lab for lab in labels if lab], (heads, labels)  # from the header, any column
    badge = card.locator(".badge")
    expect(badge).to_have_text("Completed")
    assert badge.evaluate("b => b.scrollWidth <= b.clientWidth && b.getBoundingClientRect().right <= innerWidth")
    expect(page.locator("#job-search")).to_be_hidden()
    filters_height = page.locator("details.filters").bounding_box()["height"]
    assert filters_height < 60, "the folded filters take %d px" % filters_height
    page.click("details.filters > summary")
    expect(page.locator("#q")).to_be_visible()
    page.fill("#q", "array")
    page.click("#job-search button[type=submit]")
    expect(page.locator("tr[data-job]")).to_have_count(1)
    expect(page.locator("details.filters > summary")).to_contain_text("(on)")
    fits(site, "the jobs list, searched", "74-phone-jobs-searched")
    page.set_viewport_size(LAPTOP)  # wide again: the filters open, no summary, a table
    expect(page.locator("#job-search")).to_be_visible()
    expect(page.locator("details.filters > summary")).to_be_hidden()
    assert page.locator("tr[data-job]").evaluate("tr => getComputedStyle(tr).display") == "table-row"
    page.set_viewport_size(PHONE)

    task = "%s_2" % arr["scheduler_id"]
    output = site.api("GET", "/api/jobs/%s?script=1" % arr["id"])["tasks"][1]["output"]
    pages = [
        ("/", "home"), ("/templates", "templates"), ("/templates/serial/create", "create"),
        ("/templates/mpi/create", "create, many questions"), ("/scripts", "scripts"),
        ("/scripts/%s" % script["id"], "a script"), ("/scripts/%s?edit=content" % script["id"], "script edit"),
        ("/scripts/%s?edit=notes" % script["id"], "notes edit"), ("/scripts/%s/delete" % script["id"], "delete"),
        ("/scripts/%s/submit" % script["id"], "submit"), ("/jobs", "jobs"), ("/jobs/%s" % done["id"], "a job"),
        ("/jobs/%s" % arr["id"], "an array job"), ("/jobs/%s/files/%s" % (arr["id"], output), "file view"),
        ("/jobs/%s/remove" % done["id"], "remove"), ("/jobs/%s/tasks/2/cancel" % arr["id"], "task cancel"),
        ("/jobs/bulk?action=remove&id=%s&id=%s" % (done["id"], arr["id"]), "bulk confirm"),
        ("/import", "import"), ("/jobs/20200101-000000000-abcdef", "404")]
    for n, (path, what) in enumerate(pages):
        site.go(path)
        fits(site, what, "75-phone-%02d-%s" % (n, re.sub(r"\W+", "-", what)))
    expect(page.locator("main")).to_contain_text("Not found")
    # the summary a submit shows before it is sent
    site.go("/scripts/%s/submit" % script["id"])
    page.click("button[value=review]")
    expect(page.locator("h1")).to_have_text("Summary")
    fits(site, "summary", "75-phone-summary")
    # the array job's page lists its tasks as cards, each output's link on the screen
    site.go("/jobs/%s" % arr["id"])
    expect(page.locator("tr[data-task='%s']" % task)).to_contain_text("Completed")
    link = page.locator("tr[data-task='%s'] a" % task, has_text=re.compile(r"arr-.*_2\.out"))
    assert link.evaluate("a => a.getBoundingClientRect().right <= innerWidth"), "the task's output is off the screen"
    link.click()
    expect(page.locator("main")).to_contain_text("task 2")
    # what a bulk action did
    site.go("/jobs/bulk?action=remove&id=%s" % done["id"])
    page.click("button.danger")
    expect(page.locator("#bulk-done")).to_contain_text("1 of 1 job removed")
    fits(site, "bulk done", "75-phone-bulk-done")
    # a form kept through a lost session: the login page keeping it, then the page that sends it again
    site.go("/scripts/%s?edit=content" % script["id"])
    page.fill("textarea#text", "#!/bin/bash\necho %s\n" % ("a long line that does not wrap " * 8))
    other = page.context.new_page()
    other.goto(site.url + "/")
    other.click("text=Log out")
    other.close()
    page.click("text=Save script")
    expect(page.locator("#kept-note")).to_be_visible()
    fits(site, "login keeping a form", "75-phone-login-kept")
    page.fill("#username", site.user.name)
    page.fill("#password", site.user.password)
    page.click("button[type=submit]")
    expect(page.locator("h1")).to_have_text("Send what you typed?")
    fits(site, "send what you typed", "75-phone-resume")
    # logged out: the login page
    page.click("text=Log out")
    expect(page).to_have_url(site.url + "/login")
    fits(site, "login", "75-phone-login")


def test_phones_without_javascript(slurm_site, browser):
    """At 390 px without JavaScript: no page wider than the screen, the
    home page's cards captioned by the server, the filters shown open."""
    site = slurm_site
    job = site.submit(site.make_script("No script", "true")["id"])
    context = browser.new_context(java_script_enabled=False, viewport=PHONE)
    site.page = page = context.new_page()
    try:
        site.login()
        reload_until(site, "table[data-cluster] tr[data-partition]", "the partition summary on the home page")
        cell = page.locator("tr[data-job='%s'] td[data-field=submitted_at]" % job["id"])
        assert cell.evaluate("td => getComputedStyle(td, '::before').content") == '"Submitted"'
        assert page.locator("table[data-cluster] td[data-field=cores]").first.evaluate(
            "td => getComputedStyle(td, '::before').content") == '"Cores free"'
        fits(site, "home without JavaScript", "76-phone-nojs-home")
        site.go("/jobs")
        expect(page.locator("#job-search")).to_be_visible()  # open as served: nothing folds it
        fits(site, "jobs without JavaScript", "76-phone-nojs-jobs")
        site.go("/jobs/" + job["id"])
        fits(site, "a job without JavaScript", "76-phone-nojs-job")
    finally:
        context.close()
