"""The job list for people who live in `squeue` (issue 27 item 3), in a
real Chromium against the real Slurm test cluster: a held job, one waiting
on a dependency and one waiting for resources each say why in words; the
partition, nodes / CPUs and elapsed of limit are what squeue says (asked
here, never written down); the columns chosen stay chosen across a logout;
select-all and bulk hold then release change the jobs in Slurm; the reason
changes live when Slurm's does. axe at 1280 px; screenshots 70-75."""
import re

import pytest
from playwright.sync_api import expect

from support import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slurm]



def squeue(site, sched):
    """What squeue says of a job: {reason, state, partition, nodes, cpus, time, limit} (%r %T %P %D %C %M %l)."""
    out = site.cluster.run("squeue", "-h", "-j", sched, "-o", "%r|%T|%P|%D|%C|%M|%l").strip()
    keys = ("reason", "state", "partition", "nodes", "cpus", "time", "limit")
    return dict(zip(keys, out.split("|"))) if out else {}


def seconds(text):
    """squeue's "12:03", "1:00:00", "1-00:00:00" in seconds."""
    days, _, rest = text.rpartition("-")
    parts = [int(p) for p in rest.split(":")]
    while len(parts) < 3:
        parts.insert(0, 0)
    return int(days or 0) * 86400 + parts[0] * 3600 + parts[1] * 60 + parts[2]


def cell(page, job, field):
    return page.locator("tr[data-job='%s'] td[data-field=%s]" % (job["id"], field))


def submit_text(site, name, directives, answers=None, template="serial"):
    """A script of the template with directives put after its first line, submitted."""
    script = site.api("POST", "/api/scripts", {"template": template, "name": name, "answers": {}})
    content = site.api("GET", "/api/scripts/%s" % script["id"])["content"].split("\n", 1)
    body = content[0] + "\n" + "".join(d + "\n" for d in directives) + content[1] + "\nsleep 600\n"
    site.api("PATCH", "/api/scripts/%s" % script["id"], {"content": body})
    return site.api("POST", "/api/jobs", {"script": script["id"], "answers": answers or {}})


def test_reasons_where_and_how_long_from_squeue_chosen_columns_and_bulk_hold_release(slurm_site):
    site, page = slurm_site, slurm_site.page
    node_cpus = int(site.cluster.run("sinfo", "-h", "-N", "-o", "%c").split()[0])
    # one running on the long partition; then three that wait, each for its own reason
    hog = submit_text(site, "hog", [], {"partition": "long", "time": "0-02:00:00"})
    wait_for(lambda: squeue(site, hog["scheduler_id"]).get("state") == "RUNNING", 120, "the first job running")
    held = submit_text(site, "held", ["#SBATCH --hold"])
    after = submit_text(site, "after", ["#SBATCH --dependency=afterok:%s" % hog["scheduler_id"]])
    big = submit_text(site, "big", [], {"cpus_per_task": node_cpus, "time": "0-00:30:00"}, template="smp")
    waiting = {"held": held, "after": after, "big": big}
    reasons = {"held": ("JobHeldUser",), "after": ("Dependency",), "big": ("Resources", "Priority")}
    for what, job in waiting.items():
        wait_for(lambda: squeue(site, job["scheduler_id"]).get("reason") in reasons[what], 120,
                 "squeue giving %s its reason" % what)

    site.go("/jobs")
    expect(page.locator("th[data-col=partition]")).to_be_hidden()  # not shown until chosen
    # the columns chosen, with JavaScript: shown at once, kept by the service
    page.click("details.columns-box summary")
    for column in ("raw", "partition", "nodes"):
        with page.expect_response(lambda r: r.url.endswith("/api/jobs/columns") and r.ok):
            page.check("input[name=column][value=%s]" % column)
    expect(page.locator("[data-columns-status]")).to_have_text("Saved.")
    expect(page.locator("th[data-col=partition]")).to_be_visible()
    # each reason as squeue gave it, in words (the list follows the scheduler live: no reload)
    expected = {"held": "held by the user", "after": "waiting for the jobs it depends on",
                "big": re.compile("^waiting for (resources|higher-priority jobs)$")}
    for what, job in waiting.items():
        expect(cell(page, job, "reason_text")).to_have_text(expected[what], timeout=60000)
    words = {what: cell(page, job, "reason_text").inner_text() for what, job in waiting.items()}
    assert len(set(words.values())) == 3, words
    for job in waiting.values():
        expect(page.locator("tr[data-job='%s'] [data-field=state]" % job["id"])).to_have_text("Pending")
    # where, on what and how long: squeue's own, asked now
    for job in [hog] + list(waiting.values()):
        told = squeue(site, job["scheduler_id"])
        expect(cell(page, job, "partition")).to_have_text(told["partition"])
        expect(cell(page, job, "nodes")).to_have_text("%s / %s" % (told["nodes"], told["cpus"]))
        expect(cell(page, job, "raw_state")).to_have_text(told["state"])
        expect(cell(page, job, "elapsed_of_limit")).to_contain_text(" / " + told["limit"])
    for job in waiting.values():
        assert cell(page, job, "elapsed_of_limit").inner_text() == "0:00 / " + squeue(site, job["scheduler_id"])["limit"]
    assert squeue(site, hog["scheduler_id"])["partition"] == "long"
    assert squeue(site, big["scheduler_id"])["cpus"] == str(node_cpus)
    shown = cell(page, hog, "elapsed_of_limit").inner_text().split(" / ")[0]
    told = seconds(squeue(site, hog["scheduler_id"])["time"])
    assert 0 <= told - seconds(shown) <= 120, (shown, told)  # the list's last look, then squeue's now
    site.check_a11y("jobs list with the scheduler's columns")
    site.shot("70-jobs-squeue-columns")

    # the choice is the user's, not the browser session's: kept across a logout and login
    page.click("text=Log out")
    expect(page).to_have_url(site.url + "/login")
    site.login()
    site.go("/jobs")
    for column in ("raw", "partition", "nodes"):
        expect(page.locator("th[data-col=%s]" % column)).to_be_visible()
        expect(page.locator("input[name=column][value=%s]" % column)).to_be_checked()
    site.shot("71-jobs-columns-after-login")

    # live: held outside the page (scontrol, as root: an administrator's hold), the row says so without a reload
    site.cluster.run("scontrol", "hold", after["scheduler_id"])
    assert squeue(site, after["scheduler_id"])["reason"] == "JobHeldAdmin"
    expect(cell(page, after, "reason_text")).to_have_text("held by an administrator", timeout=60000)
    site.cluster.run("scontrol", "release", after["scheduler_id"])
    expect(cell(page, after, "reason_text")).to_have_text("waiting for the jobs it depends on", timeout=60000)

    # select all the waiting jobs, hold them; the one already held is said so, the others held in Slurm
    site.go("/jobs?state=PENDING")
    expect(page.locator("tbody tr[data-job]")).to_have_count(3)
    page.check("#select-all")
    for box in page.locator("tbody input[name=id]").all():
        expect(box).to_be_checked()
    page.click("button[value=hold]")
    expect(page.locator("h1")).to_have_text("Hold jobs")
    expect(page.locator("li[data-job='%s']" % held["id"])).to_contain_text("cannot be held: it is already held")
    site.check_a11y("bulk hold, asking")
    site.shot("72-bulk-hold-confirm")
    page.click("button:has-text('Hold 2 jobs')")
    expect(page.locator("#bulk-done [role=status]")).to_have_text("2 of 2 jobs held.")  # the confirmation sends the ones it can
    for job in waiting.values():
        assert squeue(site, job["scheduler_id"])["reason"] == "JobHeldUser", job
    site.shot("73-bulk-hold-done")

    # and release them all: Slurm lets each go (waiting again for what it waited for, or running)
    site.go("/jobs?state=PENDING")
    for job in waiting.values():
        expect(cell(page, job, "reason_text")).to_have_text("held by the user")
    page.check("#select-all")
    page.uncheck("tbody input[value='%s']" % big["id"])  # one unticked: select-all is no longer all
    assert page.eval_on_selector("#select-all", "b => !b.checked && b.indeterminate")
    page.check("tbody input[value='%s']" % big["id"])
    expect(page.locator("#select-all")).to_be_checked()
    page.click("button[value=release]")
    expect(page.locator("h1")).to_have_text("Release jobs")
    page.click("button:has-text('Release 3 jobs')")
    expect(page.locator("#bulk-done [role=status]")).to_have_text("3 of 3 jobs released.")
    for job in waiting.values():
        assert squeue(site, job["scheduler_id"]).get("reason") != "JobHeldUser", job
    wait_for(lambda: squeue(site, after["scheduler_id"])["reason"] == "Dependency", 120,
             "squeue saying the released job waits on its dependency again")
    site.check_a11y("bulk release, done")
    site.shot("74-bulk-release-done")
    site.go("/jobs")
    expect(cell(page, after, "reason_text")).to_have_text("waiting for the jobs it depends on", timeout=60000)
    site.shot("75-jobs-after-release")
