"""Extra sbatch options in a real Chromium on the real Slurm cluster (issue
27, item 4): typed on the submit page, a bad line named beside the field
with the text kept, the options in the summary's exact command, submitted,
what Slurm made of them (scontrol) on the job page, and a --constraint no
node has refused in sbatch's own words beside the field; screenshots in
test-output/screenshots (74-78)."""

import pytest
from playwright.sync_api import expect

import flightjobd

pytestmark = [pytest.mark.e2e, pytest.mark.slurm]



def test_extra_options_typed_shown_submitted_and_refused_in_sbatchs_words(slurm_site):
    site, page = slurm_site, slurm_site.page
    script = site.make_script("extras")
    site.go("/scripts/%s/submit" % script["id"])
    field = page.locator("#extra_options")
    # a line that may not be given: named beside the field, nothing typed lost
    typed = "--comment='from the browser'\n--mail-type=END\n--begin=now+1hour\n--wrap=ls"
    field.fill(typed)
    page.click("button[value=review]")
    error = page.locator("#field-extra_options .field-error")
    expect(error).to_contain_text("Line 4 (--wrap=ls): --wrap is not allowed here: it runs a command line")
    expect(field).to_have_value(typed)
    site.check_a11y("the submit page with a bad extra option")
    site.shot("74-extra-options-refused-line")

    # the good ones: in the summary's exact command
    field.fill(typed.rsplit("\n", 1)[0])
    page.click("button[value=review]")
    expect(page.locator("h1")).to_have_text("Summary")
    expect(page.locator("#extra-options")).to_have_text("'--comment=from the browser' --mail-type=END --begin=now+1hour")
    command = page.locator("dt:text-is('Command') + dd").inner_text()
    assert command.startswith("sbatch --parsable") and \
        "'--comment=from the browser' --mail-type=END --begin=now+1hour" in command, command
    site.shot("75-extra-options-in-the-command")
    # back to the form and again: the lines come back as typed (the summary carries them in the browser's form)
    page.click("button[value=update]")
    expect(field).to_have_value(typed.rsplit("\n", 1)[0])
    page.click("button[value=review]")
    expect(page.locator("#extra-options")).to_have_text("'--comment=from the browser' --mail-type=END --begin=now+1hour")

    # submitted: Slurm has them, the job page shows them
    page.click("button[value=submit]")
    page.wait_for_url(site.url + "/jobs/*")
    job = site.api("GET", "/api/jobs/" + site.path().split("/")[-1])
    assert job["state"] == "PENDING" and job["scheduler_id"], job.get("reason_text")
    shown = flightjobd.parse_scontrol(site.cluster.run("scontrol", "show", "job", job["scheduler_id"]))
    assert shown["Comment"].strip() == "from the browser" and shown["MailType"] == "END"
    expect(page.locator("#extra-options")).to_contain_text("'--comment=from the browser' --mail-type=END")
    site.check_a11y("a job page with extra options")
    site.shot("76-extra-options-on-the-job-page")
    # submit again: the options come back as lines to edit
    page.click("#again-with-answers")
    expect(field).to_have_value('"--comment=from the browser"\n--mail-type=END\n--begin=now+1hour')

    # a constraint no node has: sbatch's own words beside the field
    field.fill("--constraint=nosuch")
    page.click("button[value=review]")
    page.click("button[value=submit]")
    page.wait_for_url(site.url + "/jobs/*")
    expect(page.locator("main")).to_contain_text("Invalid feature specification")
    page.click("#again-with-answers")
    expect(page.locator("#field-extra_options .field-error")).to_contain_text("Invalid feature specification")
    expect(field).to_have_value("--constraint=nosuch")
    site.check_a11y("the submit page with sbatch's refusal")
    site.shot("77-extra-options-sbatch-refused")
    # on a phone: the field and its help fit the screen
    page.set_viewport_size({"width": 390, "height": 844})
    page.click("summary:text('Options you may give')")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    site.shot("78-extra-options-phone")
