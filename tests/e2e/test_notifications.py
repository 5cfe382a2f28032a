"""The tab of any page: its title and icon count the user's running jobs and
mark one that just ended; browser notifications when a job starts or ends,
asked for only when the user clicks for them (on the jobs page), then sent
from whichever page the tab shows."""
import base64
import os
import re

import pytest
from playwright.sync_api import expect

from conftest import SHOTS

pytestmark = pytest.mark.e2e

# window.Notification wrapped: every construction and every permission
# request is recorded (the real one is still asked, so the browser's
# permission is what the page sees)
WRAP = """
(() => {
  const Real = window.Notification;
  window.__notifications = [];
  window.__asked = 0;
  function Wrapped(title, options) { window.__notifications.push({title, body: (options || {}).body || ''}); }
  Object.defineProperty(Wrapped, 'permission', {get: () => Real.permission});
  Wrapped.requestPermission = function (callback) { window.__asked += 1; return Real.requestPermission(callback); };
  window.Notification = Wrapped;
})();
"""


def notes(page):
    return [n["title"] for n in page.evaluate("window.__notifications")]


def test_title_icon_and_notifications_follow_the_users_jobs(site):
    page = site.page
    page.context.grant_permissions(["notifications"], origin=site.url)
    page.add_init_script(WRAP)
    site.login()
    expect(page.locator("[data-notify]")).to_have_count(0)  # not in the header: on the jobs page
    site.go("/jobs")
    title = page.title()
    assert title == "Jobs · Flight Job"
    plain_icon = page.locator("link[rel=icon]").get_attribute("href")
    button = page.locator("button[data-notify]")
    expect(button).to_have_text("Notify me when jobs start or end")
    expect(button).to_have_attribute("aria-pressed", "false")

    held, release = site.gate("first")
    first = site.submit(site.make_script("First", held)["id"])
    expect(page).to_have_title("(1 running) " + title, timeout=45000)
    icon = page.locator("link[rel=icon]").get_attribute("href")
    assert icon.startswith("data:image/png;base64,") and icon != plain_icon
    # not asked for: no permission request and no notification, though the job started
    assert page.evaluate("window.__asked") == 0 and notes(page) == []

    page.click("button[data-notify]")  # asked now, on the click
    expect(button).to_have_attribute("aria-pressed", "true")
    expect(button).to_have_text("Notifications on")
    assert page.evaluate("window.__asked") == 1

    held2, release2 = site.gate("second")
    second = site.submit(site.make_script("Second", held2)["id"])
    expect(page).to_have_title("(2 running) " + title, timeout=45000)
    assert notes(page) == ["Job %s (Second) started" % second["scheduler_id"]]

    site.go("/")  # another page of the tab, without the button: it goes on from what the last one saw
    expect(page).to_have_title("(2 running) Job manager · Flight Job")
    release()
    expect(page).to_have_title("\u2713 (1 running) Job manager · Flight Job", timeout=45000)
    assert notes(page) == ["Job %s (First) completed" % first["scheduler_id"]]  # this page's own record
    expect(page.locator("tr[data-job='%s'] .badge" % first["id"])).to_have_text("Completed")  # the same poll
    site.check_a11y("home, a job just ended")
    site.shot("30-tab-title-and-notifications")
    icon = page.locator("link[rel=icon]").get_attribute("href")  # 1 running, a green mark: the tab's icon
    with open(os.path.join(SHOTS, "30-tab-icon.png"), "wb") as f:
        f.write(base64.b64decode(icon.split(",", 1)[1]))

    site.go("/jobs")
    expect(button).to_have_text("Notifications on")  # as the user left it
    page.click("button[data-notify]")  # off again: the second job's end is marked, not notified
    expect(button).to_have_attribute("aria-pressed", "false")
    release2()
    expect(page).to_have_title(re.compile("^\u2713 Jobs · Flight Job$"), timeout=45000)
    assert notes(page) == []  # this page's own record: the second job's end was not notified
    assert page.evaluate("window.__asked") == 0  # this page never asked: on, then off, from what was kept
    assert not site.errors, site.errors
