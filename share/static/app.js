/* flightjobd pages: small additions on top of pages that work without it.
 *
 * - live job states on the jobs list and a job's page, by polling the JSON API;
 * - relative times ("3 minutes ago") that tick;
 * - confirm dialogs for delete / cancel / remove;
 * - ask_when questions shown and hidden as answers change;
 * - the submit page's note on what the cluster's defaults give a job,
 *   following the partition and memory chosen;
 * - long forms of questions asked step by step, each step checked before Next;
 * - a running job's output followed live;
 * - Tab in the script editor types a tab;
 * - an edit of a script kept in this browser until it is saved;
 * - on every page, the tab's title and icon show how many of the user's
 *   jobs run and mark one that just ended; browser notifications when a
 *   job starts or ends, once the user asked for them with a click; the
 *   home page's jobs follow the same poll;
 * - on a phone, a list's cells captioned by their column (the rows shown
 *   as cards by style.css) and the jobs page's filters folded away.
 *
 * Why polling and not server-sent events: the daemon is served by waitress,
 * which has a small fixed pool of threads, and an SSE stream holds one
 * thread for as long as a tab stays open. A handful of open tabs would
 * starve everyone else. Polling with backoff (2 s, doubling to 30 s while
 * nothing changes; an unfinished job's own page every 2 s, so its start and
 * end show within seconds) costs one short request now and then, and stops
 * as soon as every job shown has finished.
 *
 * The page's Content-Security-Policy is default-src 'self': no inline
 * scripts or handlers, so everything is wired up here.
 */
(function () {
  "use strict";

  var MIN_DELAY = 2000, MAX_DELAY = 30000;
  // The state words, from flightjobd.py (STATE_LABELS, SHOWN_RAW_STATES,
  // FINISHED, ENDING) through base.tpl's data-vocabulary; read in start().
  var VOCABULARY = { labels: {}, shown_raw: [], finished: [], ending: [] };

  function $all(sel, root) { return Array.prototype.slice.call((root || document).querySelectorAll(sel)); }

  function finished(state) { return VOCABULARY.finished.indexOf(state) >= 0; }

  function labelOf(state) {
    return VOCABULARY.labels[state] || state.charAt(0) + state.slice(1).toLowerCase();
  }

  // The same words as the server's state_label() and state_text().
  function ending(job) { return VOCABULARY.ending.indexOf(job.raw_state) >= 0 ? "Ending" : labelOf(job.state); }

  function stateLabel(job) {
    var raw = job.raw_state;
    return ending(job) + (raw && VOCABULARY.shown_raw.indexOf(raw) >= 0 ?
      " \u00b7 " + raw.replace(/_/g, " ").toLowerCase() : "");
  }

  function stateText(job) {
    return ending(job) + (job.reason_text && job.state !== "COMPLETED" ? " \u2014 " + job.reason_text : "") +
      (job.detail_pending ? " (its final figures are still coming)" : "");
  }

  /* ---- relative times ------------------------------------------------- */

  // Same words as the server's ago(): "3 minutes ago", "in 5 minutes".
  function ago(iso, now) {
    var t = Date.parse(iso);
    if (isNaN(t)) { return ""; }
    var delta = ((now || Date.now()) - t) / 1000;
    var future = delta < 0;
    delta = Math.abs(delta);
    var units = [[86400, "day"], [3600, "hour"], [60, "minute"], [1, "second"]];
    for (var i = 0; i < units.length; i++) {
      if (delta >= units[i][0] || units[i][0] === 1) {
        var n = Math.floor(delta / units[i][0]);
        var words = n + " " + units[i][1] + (n === 1 ? "" : "s");
        return future ? "in " + words : words + " ago";
      }
    }
    return "";
  }

  function tickTimes() {
    var now = Date.now();
    $all("time[data-ago]").forEach(function (el) {
      var text = ago(el.getAttribute("datetime"), now);
      if (text && el.textContent !== text) { el.textContent = text; }
    });
  }

  function timeElement(iso) {
    var el = document.createElement("time");
    el.setAttribute("datetime", iso);
    el.setAttribute("title", iso);
    el.setAttribute("data-ago", "");
    el.textContent = ago(iso);
    return el;
  }

  // Put a <time> for iso (or nothing) into a cell; true if it changed.
  function setTime(cell, iso) {
    if (!cell) { return false; }
    var old = cell.querySelector("time");
    var oldIso = old ? old.getAttribute("datetime") : null;
    if ((oldIso || null) === (iso || null)) { return false; }
    cell.textContent = "";
    if (iso) { cell.appendChild(timeElement(iso)); }
    return true;
  }

  // '1 h 5 min', as the pages write a duration (flightjobd's duration()).
  function duration(seconds) {
    seconds = Math.max(0, Math.floor(seconds));
    var parts = [[Math.floor(seconds / 86400), "d"], [Math.floor(seconds % 86400 / 3600), "h"],
                 [Math.floor(seconds % 3600 / 60), "min"], [seconds % 60, "s"]];
    var shown = parts.filter(function (p) { return p[0]; }).slice(0, 2).map(function (p) { return p[0] + " " + p[1]; });
    return shown.join(" ") || "0 s";
  }

  // A running job's run time counts on each second, on the daemon's clock
  // (the page says what its time was when drawn: a laptop's clock may differ).
  var LOADED = Date.now(), clockSkew = null;
  function tickRunTimes() {
    $all("[data-since]").forEach(function (el) {
      var since = Date.parse(el.getAttribute("data-since"));
      if (isNaN(since)) { return; }
      if (clockSkew === null) {
        var drawn = Date.parse(el.getAttribute("data-now"));
        clockSkew = isNaN(drawn) ? 0 : drawn - LOADED;
      }
      var text = duration((Date.now() + clockSkew - since) / 1000);
      if (el.textContent !== text) { el.textContent = text; }
    });
  }

  // The job's results, redrawn from the page itself (one template draws
  // them) when they changed; boxes the user ticked stay ticked. True if
  // they changed. Times in words are left out of the comparison.
  function refreshResults(holder) {
    return fetch(location.pathname, { credentials: "same-origin" }).then(function (r) {
      if (!r.ok) { throw new Error("HTTP " + r.status); }
      return r.text();
    }).then(function (text) {
      var fresh = new DOMParser().parseFromString(text, "text/html").getElementById("results");
      function plain(el) { return el.innerHTML.replace(/(<time[^>]*>)[^<]*<\/time>/g, "$1"); }
      if (!fresh || plain(fresh) === plain(holder)) { return false; }
      var ticked = $all("input[type=checkbox]:checked", holder).map(function (b) { return b.value; });
      holder.innerHTML = fresh.innerHTML;
      $all("input[type=checkbox]", holder).forEach(function (b) { if (ticked.indexOf(b.value) >= 0) { b.checked = true; } });
      tickTimes();
      return true;
    });
  }

  /* ---- live job states ------------------------------------------------ */

  function setBadge(badge, job) {
    if (!badge) { return; }
    var text = stateLabel(job);
    badge.className = "badge state-" + job.state.toLowerCase();
    if (badge.textContent !== text) { badge.textContent = text; }
  }

  function getJSON(url) {
    return fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (r) {
        if (!r.ok) { throw new Error("HTTP " + r.status); }
        return r.json();
      });
  }

  // Calls step() (which returns a promise of "changed?") with backoff (up
  // to maxDelay, default MAX_DELAY); stops when step resolves to null.
  // Waits while the tab is hidden, unless evenHidden (what a hidden tab
  // shows in its title must stay true).
  function poll(step, evenHidden, maxDelay) {
    var delay = MIN_DELAY, timer = null;
    function schedule() { timer = setTimeout(run, delay); }
    function run() {
      timer = null;
      if (document.hidden && !evenHidden) { schedule(); return; }
      step().then(function (changed) {
        tickTimes();  // keep every relative time on the page in step
        if (changed === null) { return; }
        delay = changed ? MIN_DELAY : Math.min(delay * 2, maxDelay || MAX_DELAY);
        schedule();
      }, function () {
        delay = Math.min(delay * 2, MAX_DELAY);  // the daemon may be restarting
        schedule();
      });
    }
    document.addEventListener("visibilitychange", function () {
      if (!document.hidden && timer !== null) {  // back to the tab: look now
        clearTimeout(timer);
        delay = MIN_DELAY;
        run();
      }
    });
    schedule();
  }

  // One row of a list of jobs (the jobs page's, the home page's) brought up
  // to what job says: its state, times and, when it has them, efficiency.
  function updateRow(tr, job) {
    var changed = updateCells(tr, job);
    Array.prototype.forEach.call(tr.cells, blank);
    return changed;
  }

  function updateCells(tr, job) {
    var changed = false;
    if (tr.getAttribute("data-state") !== job.state) {
      tr.setAttribute("data-state", job.state);
      changed = true;
    }
    setBadge(tr.querySelector('[data-field="state"]'), job);
    ["submitted_at", "started_at", "ended_at"].forEach(function (key) {
      if (key in job) { changed = setTime(tr.querySelector('[data-field="' + key + '"]'), job[key]) || changed; }
    });
    if (!("efficiency" in job)) { return changed; }  // a job in brief (/api/activity)
    var eff = job.efficiency || {};
    ["cpu_percent", "mem_percent", "time_percent"].forEach(function (key) {
      var cell = tr.querySelector('[data-field="' + key + '"]');
      if (cell) { cell.textContent = eff[key] == null ? "" : Math.round(eff[key]) + " %"; }
    });
    var mem = tr.querySelector('[data-field="mem_percent"]');
    if (mem && eff.mem_percent == null && eff.mem_used_mb != null) {  // nothing asked for: what it used
      mem.textContent = eff.mem_used_mb < 1024 ? Math.round(eff.mem_used_mb) + " MiB"
        : (eff.mem_used_mb / 1024).toFixed(1).replace(/\.0$/, "") + " GiB";
    }
    // the scheduler's columns, the same words as jobs.tpl's
    var known = job.nodes != null || job.cpus != null;
    var texts = {
      reason_text: job.state !== "COMPLETED" ? job.reason_text || "" : "", raw_state: job.raw_state || "",
      partition: job.partition || "", elapsed_of_limit: job.elapsed_of_limit || "",
      nodes: known ? [job.nodes, job.cpus].map(function (n) { return n == null ? "?" : String(n); }).join(" / ") : ""
    };
    Object.keys(texts).forEach(function (key) {
      var cell = tr.querySelector('[data-field="' + key + '"]');
      if (cell && cell.textContent !== texts[key]) {
        cell.textContent = texts[key];
        changed = changed || key !== "elapsed_of_limit";  // a run time ticks: no reason to look sooner
      }
    });
    return changed;
  }

  function unfinishedRows(root) {
    return $all("tr[data-job]", root).filter(function (tr) { return !finished(tr.getAttribute("data-state")); });
  }

  function liveJobsList(table) {
    if (!unfinishedRows(table).length) { return; }
    var url = "/api/jobs" + location.search;  // the same search, sort and page as the page's
    poll(function () {
      return getJSON(url).then(function (data) {
        var byId = {}, changed = false;
        (data.jobs || []).forEach(function (j) { byId[j.id] = j; });
        $all("tr[data-job]", table).forEach(function (tr) {
          var job = byId[tr.getAttribute("data-job")];
          if (job) { changed = updateRow(tr, job) || changed; }
        });
        return unfinishedRows(table).length ? changed : null;
      });
    });
  }

  /* ---- the jobs list: select all, the columns shown --------------------- */

  // The header's checkbox (name=all, which without JavaScript makes the bulk
  // page take every job of the page) ticks and unticks the rows' too, and
  // shows whether all, some or none of them are ticked.
  function selectAll(box) {
    var table = box.closest("table");
    function rows() { return $all('tbody input[type=checkbox][name=id]', table); }
    function show() {
      var ticked = rows().filter(function (r) { return r.checked; }).length;
      box.checked = ticked > 0 && ticked === rows().length;
      box.indeterminate = ticked > 0 && ticked < rows().length;
    }
    box.addEventListener("change", function () {
      rows().forEach(function (r) { r.checked = box.checked; });
      box.indeterminate = false;
    });
    table.addEventListener("change", function (event) { if (event.target !== box) { show(); } });
    show();
  }

  // The column choice: a box ticked or not shows or hides its column at once
  // and is kept for the user (POST /api/jobs/columns); without JavaScript
  // the form's button does the same.
  function chooseColumns(form) {
    var status = form.querySelector("[data-columns-status]");
    function say(text) { if (status) { status.textContent = text; status.hidden = !text; } }
    form.addEventListener("change", function () {
      var chosen = $all('input[name=column]', form).filter(function (c) { return c.checked; })
        .map(function (c) { return c.value; });
      $all('input[name=column]', form).forEach(function (c) {
        $all('table[data-live-jobs] [data-col="' + CSS.escape(c.value) + '"]').forEach(function (cell) {
          cell.hidden = !c.checked;
        });
      });
      say("Saving\u2026");
      fetch("/api/jobs/columns", { method: "POST", credentials: "same-origin",
        headers: { "Content-Type": "application/json", "Accept": "application/json", "X-CSRF-Token": csrfToken() },
        body: JSON.stringify({ columns: chosen }) }).then(function (r) {
        say(r.ok ? "Saved." : "Not saved (HTTP " + r.status + "): try again.");
      }, function () { say("Not saved: the service did not answer."); });
    });
  }

  function liveJob(box) {
    var id = box.getAttribute("data-live-job");
    if (finished(box.getAttribute("data-state"))) { return; }
    var reloadKey = "flightjob-reloaded-" + id, looks = 0, RESULTS_EVERY = 3;
    poll(function () {
      return getJSON("/api/jobs/" + encodeURIComponent(id)).then(function (job) {
        var changed = box.getAttribute("data-state") !== job.state;
        box.setAttribute("data-state", job.state);
        setBadge(box.querySelector('h1 [data-field="state"]'), job);
        var textCell = box.querySelector('[data-field="state-text"]');
        if (textCell) {
          var text = stateText(job);
          if (textCell.textContent !== text) { textCell.textContent = text; changed = true; }
        }
        ["started_at", "ended_at", "estimated_start_at"].forEach(function (key) {
          var row = box.querySelector('[data-row="' + key + '"]');
          var iso = key === "estimated_start_at" && job.state !== "PENDING" ? null : job[key];
          if (setTime(box.querySelector('dd[data-field="' + key + '"]'), iso)) { changed = true; }
          if (row) { row.hidden = !iso; }
        });
        var runRow = document.querySelector('[data-row="run_time"]');
        if (runRow) {
          var run = runRow.querySelector('[data-field="run_time"]');
          var since = job.raw_state === "RUNNING" && job.started_at ? job.started_at : "";
          run.setAttribute("data-since", since);
          if (!since && job.elapsed_s !== null && job.elapsed_s !== undefined) { run.textContent = duration(job.elapsed_s); }
          runRow.querySelector('[data-field="time_limit"]').textContent = job.time_limit ? " of " + job.time_limit + " allowed" : "";
          runRow.hidden = !since && (job.elapsed_s === null || job.elapsed_s === undefined);
          tickRunTimes();
        }
        var raw = box.querySelector('[data-field="raw_state"]');
        if (raw) { raw.textContent = job.raw_state || ""; raw.hidden = !job.raw_state || job.raw_state === job.state; }
        var exitRow = box.querySelector('[data-row="exit_code"]');
        if (exitRow && job.program_exit !== null && job.program_exit !== undefined) {
          exitRow.hidden = false;
          exitRow.querySelector("dd").textContent = String(job.program_exit);
        }
        if (job.state !== "PENDING") {  // started: no Hold, Release or new time limit any more
          $all('#time-limit, form[action$="/hold"], form[action$="/release"]', box).forEach(function (el) {
            el.parentNode.removeChild(el);
          });
        }
        if (finished(job.state)) {
          // Reload once so the results, run time and Remove button appear.
          // The mark in sessionStorage stops a reload loop should the page
          // ever come back still saying the job runs.
          var done = null;
          try { done = sessionStorage.getItem(reloadKey); } catch (e) { /* private mode */ }
          if (done !== job.state) {
            try { sessionStorage.setItem(reloadKey, job.state); } catch (e) { /* ignore */ }
            setTimeout(function () { location.reload(); }, 600);
          }
          return null;
        }
        // the results are drawn again every RESULTS_EVERY looks (a page, not a record)
        var results = document.querySelector("[data-live-results]");
        if (!results || job.state === "PENDING" || (looks++ % RESULTS_EVERY && !changed)) { return changed; }
        return refreshResults(results).then(function () { return changed; });
      });
    }, false, MIN_DELAY);  // an unfinished job's page looks every MIN_DELAY: its start and end show within seconds
    setInterval(tickRunTimes, 1000);
  }

  /* ---- the tab: running jobs in its title and icon; notifications ------- */

  // Every page of a logged-in user polls /api/activity (with the same
  // backoff: 2 s, doubling to 30 s while nothing changes, hidden tabs too,
  // as their title is what shows). The title reads "(2 running) Jobs ·
  // Flight Job" and the icon carries the count; a job that ended since the
  // last look puts a mark (a tick, or a cross when it did not complete)
  // before the title and a dot on the icon for MARK_MS of the tab being
  // seen. The unfinished jobs last seen are kept in sessionStorage (per
  // user), so a change between two pages of the tab is not missed: the
  // next page asks after those jobs (?watch=). Notifications (the
  // Notification API), from every page, only once the user pressed the
  // jobs page's button, which is when permission is asked; their choice
  // is kept in localStorage. The home page's list of jobs takes its states
  // from this same poll (no second one), watching its unfinished rows to
  // their end. The icon is drawn on a canvas into a data: URL, which the
  // CSP's img-src allows.
  var ACTIVITY = "flightjob-activity:", NOTIFY = "flightjob-notify:", MARK_MS = 30000;

  function readStored(kind, key) {
    var store = storage(kind);
    try { return store ? JSON.parse(store.getItem(key) || "null") : null; } catch (e) { return null; }
  }

  function writeStored(kind, key, value) {
    try { window[kind].setItem(key, JSON.stringify(value)); } catch (e) { /* full or blocked */ }
  }

  function jobWords(job) {
    return "Job " + (job.scheduler_id || job.id) + (job.name ? " (" + job.name + ")" : "");
  }

  function drawIcon(link, count, mark, plain) {
    if (!count && !mark) { link.href = plain; return; }
    var canvas = document.createElement("canvas");
    canvas.width = canvas.height = 32;
    var c = canvas.getContext("2d");
    if (!c) { return; }
    c.fillStyle = "#17344f";  // favicon.svg, drawn again
    c.beginPath();
    if (c.roundRect) { c.roundRect(0, 0, 32, 32, 7); } else { c.rect(0, 0, 32, 32); }
    c.fill();
    c.fillStyle = "#fff";
    c.beginPath(); c.moveTo(7, 25); c.lineTo(25, 7); c.lineTo(25, 25); c.closePath(); c.fill();
    c.fillStyle = "#6fb3ff";
    c.beginPath(); c.moveTo(7, 7); c.lineTo(25, 7); c.lineTo(7, 25); c.closePath(); c.fill();
    if (mark) {
      c.fillStyle = mark.state === "COMPLETED" ? "#1e8e3e" : "#c5221f";
      c.beginPath(); c.arc(26, 6, 6, 0, 2 * Math.PI); c.fill();
    }
    if (count) {
      var text = count > 99 ? "99+" : String(count);
      c.fillStyle = "#d93025";
      c.beginPath(); c.arc(21, 21, 11, 0, 2 * Math.PI); c.fill();
      c.fillStyle = "#fff";
      c.font = "bold " + (text.length > 2 ? 10 : text.length > 1 ? 13 : 16) + "px sans-serif";
      c.textAlign = "center";
      c.textBaseline = "middle";
      c.fillText(text, 21, 22);
    }
    link.href = canvas.toDataURL("image/png");
  }

  // Whether the user asked for notifications (kept per user in localStorage)
  // and the browser lets them be sent: every page of the tab sends them.
  function notifying(key) {
    return "Notification" in window && readStored("localStorage", key) === true && Notification.permission === "granted";
  }

  // The button that asks for them (the jobs page's).
  function notifyButton(button, key) {
    function on() { return notifying(key); }
    function show() {
      var blocked = Notification.permission === "denied";
      button.setAttribute("aria-pressed", on() ? "true" : "false");
      button.disabled = blocked;
      button.textContent = blocked ? "Notifications blocked by the browser" :
        on() ? "Notifications on" : "Notify me when jobs start or end";
    }
    button.addEventListener("click", function () {
      if (on()) { writeStored("localStorage", key, false); show(); return; }
      // asked only here, on the user's click, never on its own
      var asked = Notification.requestPermission(function (answer) { done(answer); });
      function done(answer) {
        writeStored("localStorage", key, answer === "granted");
        show();
      }
      if (asked && asked.then) { asked.then(done); }
    });
    button.hidden = false;
    show();
  }

  function tabActivity(user) {
    var title = document.title, link = document.querySelector('link[rel="icon"]');
    var plain = link ? link.getAttribute("href") : null;
    var key = ACTIVITY + user, notifyOn = function () { return notifying(NOTIFY + user); };
    var button = document.querySelector("[data-notify]");
    if (button && "Notification" in window) { notifyButton(button, NOTIFY + user); }
    // a list of jobs that follows this poll (the home page's): its rows
    // take each answer, and its unfinished jobs are watched to their end
    var rows = $all("table[data-activity-jobs]");

    function show(count, mark) {
      var prefix = (mark ? (mark.state === "COMPLETED" ? "\u2713 " : "\u2717 ") : "") +
        (count ? "(" + count + " running) " : "");
      if (document.title !== prefix + title) { document.title = prefix + title; }
      if (link) { drawIcon(link, count, mark, plain); }
    }

    function tell(job, started) {
      if (!notifyOn()) { return; }
      var what = started ? "started" : labelOf(job.state).toLowerCase();
      try {
        var n = new Notification(jobWords(job) + " " + what, {
          body: started ? "" : (job.reason_text || ""), tag: "flightjob-" + job.id + "-" + job.state });
        n.onclick = function () { window.focus(); location.href = "/jobs/" + encodeURIComponent(job.id); };
      } catch (e) { /* a browser that only notifies from a service worker */ }
    }

    var stored = readStored("sessionStorage", key) || {};
    show(stored.running || 0, stored.mark || null);  // as the last page left it, until the first answer
    poll(function () {
      var last = readStored("sessionStorage", key) || {};
      var seen = last.jobs || null, mark = last.mark || null;
      var watch = Object.keys(seen || {});
      rows.forEach(function (table) {
        unfinishedRows(table).forEach(function (tr) {
          var id = tr.getAttribute("data-job");
          if (watch.indexOf(id) < 0) { watch.push(id); }
        });
      });
      var url = "/api/activity" + (watch.length ? "?" + watch.slice(0, 100).map(function (id) {
        return "watch=" + encodeURIComponent(id);
      }).join("&") : "");
      return getJSON(url).then(function (data) {
        var now = {}, changed = false, byId = {};
        (data.unfinished || []).concat(data.watched || []).forEach(function (job) { byId[job.id] = job; });
        rows.forEach(function (table) {
          $all("tr[data-job]", table).forEach(function (tr) {
            var job = byId[tr.getAttribute("data-job")];
            if (job) { changed = updateRow(tr, job) || changed; }
          });
        });
        (data.unfinished || []).forEach(function (job) {
          now[job.id] = job.state;
          if (seen && seen[job.id] !== job.state && job.state === "RUNNING") { tell(job, true); changed = true; }
        });
        (data.watched || []).forEach(function (job) {
          if (!seen || !seen[job.id] || !finished(job.state)) { return; }
          tell(job, false);
          mark = { id: job.id, state: job.state, until: null };
          changed = true;
        });
        if (seen && Object.keys(seen).length !== Object.keys(now).length) { changed = true; }
        if (mark && !document.hidden) {  // the mark lasts MARK_MS of the tab being seen
          if (mark.until === null) { mark.until = Date.now() + MARK_MS; }
          if (Date.now() > mark.until) { mark = null; changed = true; }
        }
        $all("[data-count]").forEach(function (el) {  // the home page's counts
          var n = String((data.counts || {})[el.getAttribute("data-count")] || 0);
          if (el.textContent !== n) { el.textContent = n; }
        });
        var running = (data.counts || {}).RUNNING || 0;
        writeStored("sessionStorage", key, { jobs: now, mark: mark, running: running });
        show(running, mark);
        return changed;
      });
    }, true);
  }

  /* ---- following a running job's output -------------------------------- */

  function follow(pre) {
    var box = pre.closest("[data-live-job]");
    if (!box || finished(box.getAttribute("data-state"))) { return; }
    var url = "/api/jobs/" + encodeURIComponent(pre.getAttribute("data-job")) + "/output/" +
      encodeURIComponent(pre.getAttribute("data-follow")) + "?tail=65536";
    var label = pre.parentNode.querySelector("[data-following]");
    if (label) { label.hidden = false; }
    poll(function () {
      if (finished(box.getAttribute("data-state"))) {
        if (label) { label.hidden = true; }
        return Promise.resolve(null);
      }
      return fetch(url, { credentials: "same-origin" }).then(function (r) {
        if (r.status === 404) { return false; }  // no output file yet
        if (!r.ok) { throw new Error("HTTP " + r.status); }
        return r.text().then(function (text) {
          if (text === pre.textContent) { return false; }
          var atBottom = pre.scrollHeight - pre.scrollTop - pre.clientHeight < 24;
          pre.textContent = text;
          if (atBottom) { pre.scrollTop = pre.scrollHeight; }
          return true;
        });
      });
    });
  }

  /* ---- confirm dialogs ------------------------------------------------ */

  function csrfToken() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    if (meta) { return meta.getAttribute("content"); }
    var input = document.querySelector('form.logout input[name="csrf"]');
    return input ? input.value : "";
  }

  function postTo(url) {
    var form = document.createElement("form");
    form.method = "post";
    form.action = url;
    form.hidden = true;
    var input = document.createElement("input");
    input.type = "hidden";
    input.name = "csrf";
    input.value = csrfToken();
    form.appendChild(input);
    document.body.appendChild(form);
    form.submit();
  }

  document.addEventListener("click", function (event) {
    var link = event.target.closest ? event.target.closest("[data-confirm]") : null;
    if (!link || event.defaultPrevented || event.button !== 0 ||
        event.ctrlKey || event.metaKey || event.shiftKey || event.altKey) {
      return;  // new-tab clicks go to the confirmation page, which asks too
    }
    event.preventDefault();
    if (!window.confirm(link.getAttribute("data-confirm"))) { return; }
    var target = link.getAttribute("data-post");
    if (target) { postTo(target); } else { location.href = link.href; }
  });

  /* ---- ask_when questions --------------------------------------------- */

  // The current answer to question id, as the server would read the form:
  // a boolean checkbox gives "true"/"false", a group of checkboxes a list.
  function answerOf(form, id) {
    var fields = $all('[name="q_' + id + '"]', form);
    var boxes = fields.filter(function (f) { return f.type === "checkbox"; });
    var hiddenFalse = fields.some(function (f) { return f.type === "hidden"; });
    if (boxes.length === 1 && hiddenFalse) { return boxes[0].checked ? "true" : "false"; }
    if (boxes.length) { return boxes.filter(function (b) { return b.checked; }).map(function (b) { return b.value; }); }
    var radios = fields.filter(function (f) { return f.type === "radio"; });
    if (radios.length) {
      var on = radios.filter(function (r) { return r.checked; })[0];
      return on ? on.value : "";
    }
    var field = fields.filter(function (f) { return f.type !== "hidden"; })[0] || fields[0];
    return field ? field.value : "";
  }

  function applies(values, answer) {
    if (values === "true" || values === "false") {
      var truthy = ["true", "on", "yes", "1"].indexOf(String(answer).toLowerCase()) >= 0;
      return truthy === (values === "true");
    }
    var choices = values.split("|");
    if (Array.isArray(answer)) { return answer.some(function (v) { return choices.indexOf(v) >= 0; }); }
    return choices.indexOf(answer) >= 0;
  }

  function updateQuestions(form) {
    // In page order, so a question hidden because of an earlier one also
    // hides the questions that depend on it.
    $all(".question[data-ask-question]", form).forEach(function (div) {
      var id = div.getAttribute("data-ask-question");
      var controller = form.querySelector("#field-" + CSS.escape(id));
      var show = !(controller && controller.hidden) &&
        applies(div.getAttribute("data-ask-values"), answerOf(form, id));
      if (div.hidden === !show) { return; }
      div.hidden = !show;
      $all("[data-required]", div).forEach(function (f) { f.required = show; });
    });
  }

  function askWhen(form) {
    if (!form.querySelector(".question[data-ask-question]")) { return; }
    updateQuestions(form);
    form.addEventListener("change", function () { updateQuestions(form); });
    form.addEventListener("input", function () { updateQuestions(form); });
  }

  /* ---- what the cluster's defaults give a job -------------------------- */

  // The submit page's note on the partition chosen (the default one when
  // none is): its whole nodes, and all of a node's memory while Memory is
  // empty; shown and hidden as the answers change.
  function jobDefaults(note) {
    var partition = document.getElementById(note.getAttribute("data-partition-field"));
    var mem = document.getElementById(note.getAttribute("data-mem-field"));
    function update() {
      var chosen = partition ? partition.value : "", any = false;
      $all("li[data-partition]", note).forEach(function (li) {
        var here = chosen ? li.getAttribute("data-partition") === chosen : li.getAttribute("data-default") === "yes";
        li.hidden = !(here && !(li.hasAttribute("data-no-mem") && mem && mem.value.trim()));
        any = any || !li.hidden;
      });
      note.hidden = !any;
    }
    [partition, mem].forEach(function (f) {
      if (f) { f.addEventListener("change", update); f.addEventListener("input", update); }
    });
    update();
  }

  /* ---- long forms asked step by step ----------------------------------- */

  // A form whose questions are cut into steps (.steps[data-steps], each a
  // section.step with its heading) shows one step at a time, with Back and
  // Next and a list of the steps; what was typed stays in the form, so Back
  // keeps it. Next asks the server (form[data-check]) whether the step's
  // answers would be taken, and shows its messages beside them instead of
  // going on. A page sent back with errors opens at the first step that
  // has one. Without JavaScript every step is on the one page.
  function fieldError(div, text) {
    var p = div.querySelector(".field-error.from-check");
    if (!text) {
      if (p) { p.remove(); }
      div.classList.toggle("has-error", !!div.querySelector(".field-error"));
      return;
    }
    if (!p) {
      p = document.createElement("p");
      p.className = "field-error from-check";
      p.setAttribute("role", "alert");
      div.appendChild(p);
    }
    p.textContent = text;
    div.classList.add("has-error");
  }

  function steps(form) {
    var box = form.querySelector(".steps[data-steps]");
    if (!box) { return; }
    var sections = $all("section.step", box), current = 0;
    var finish = $all(".actions > button.primary", form).filter(function (b) { return !b.closest(".diverged"); });
    var list = document.createElement("ol");
    list.className = "step-list";
    list.setAttribute("aria-label", "Steps");
    sections.forEach(function (section, i) {
      var li = document.createElement("li");
      li.textContent = "Step " + (i + 1);
      list.appendChild(li);
    });
    box.insertBefore(list, box.firstChild);
    var nav = document.createElement("div");
    nav.className = "actions step-nav";
    var back = document.createElement("button"), next = document.createElement("button");
    back.type = next.type = "button";
    back.textContent = "Back";
    next.textContent = "Next";
    next.className = "primary";
    nav.appendChild(back);
    nav.appendChild(next);
    box.appendChild(nav);

    function show(i, focus) {
      current = i;
      sections.forEach(function (section, j) { section.hidden = j !== i; });
      $all("li", list).forEach(function (li, j) {
        if (j === i) { li.setAttribute("aria-current", "step"); } else { li.removeAttribute("aria-current"); }
        li.className = j < i ? "done" : "";
      });
      back.hidden = i === 0;
      next.hidden = i === sections.length - 1;
      finish.forEach(function (b) { b.hidden = i !== sections.length - 1; });
      if (focus) { sections[i].querySelector(".step-heading").focus(); }
    }

    function stepAnswers(section) {
      var answers = {};
      $all(".question[id^='field-']", form).forEach(function (div) {
        var id = div.id.slice("field-".length);
        if (!div.hidden) { answers[id] = answerOf(form, id); }
      });
      return answers;
    }

    function check(section) {
      // the browser's own checks first (a required field, a number's range)
      var bad = $all("input, select, textarea", section).filter(function (f) {
        return !f.closest("[hidden]") && f.willValidate && !f.checkValidity();
      })[0];
      if (bad) { bad.reportValidity(); return Promise.resolve(false); }
      var url = form.getAttribute("data-check");
      if (!url) { return Promise.resolve(true); }
      return fetch(url, {
        method: "POST", credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRF-Token": csrfToken() },
        body: JSON.stringify({ answers: stepAnswers(section) })
      }).then(function (r) {
        if (!r.ok) { return true; }  // cannot tell (a lost session...): the final submit checks
        return r.json().then(function (data) {
          var errors = data.errors || {}, first = null;
          $all(".question[id^='field-']", section).forEach(function (div) {
            var id = div.id.slice("field-".length), text = div.hidden ? null : errors[id];
            fieldError(div, text || null);
            if (text && !first) { first = div; }
          });
          if (first) {
            var field = first.querySelector("input:not([type=hidden]), select, textarea");
            if (field) { field.focus(); }
            return false;
          }
          return true;
        });
      }, function () { return true; });
    }

    form.addEventListener("input", function (event) {  // a message of Next's goes once the answer changes
      var div = event.target.closest && event.target.closest(".question");
      if (div && div.querySelector(".from-check")) { fieldError(div, null); }
    });
    back.addEventListener("click", function () { show(Math.max(0, current - 1), true); });
    next.addEventListener("click", function () {
      next.disabled = true;
      check(sections[current]).then(function (ok) {
        next.disabled = false;
        if (ok) { show(Math.min(sections.length - 1, current + 1), true); }
      });
    });
    form.addEventListener("keydown", function (event) {  // Enter in a field: Next, or on the last step the form's own
      if (event.key !== "Enter" || event.target.tagName !== "INPUT" || !event.target.closest(".steps") ||
          event.target.type === "submit" || event.target.type === "button") { return; }
      event.preventDefault();  // not the first submit button (the hidden "Update questions")
      if (current < sections.length - 1) { next.click(); } else if (finish[0]) { finish[0].click(); }
    });
    var failed = sections.filter(function (s) { return s.querySelector(".field-error"); })[0];
    show(failed ? sections.indexOf(failed) : 0, !!failed);
    var choose = form.querySelector(".diverged h2");  // a conflict to settle: there first
    if (choose && !failed) { choose.focus(); }
  }

  // The create page's job name follows the script's name (made safe for
  // --job-name as flightjobd.job_name_of does) until the user changes it.
  function followName(form) {
    var name = form.querySelector("#name"), job = form.querySelector("#q_job_name");
    var auto = form.querySelector("[name=job_name_auto]");
    if (!name || !job || !auto) { return; }
    var fallback = auto.value;
    name.addEventListener("input", function () {
      if (job.value !== auto.value) { return; }
      var safe = name.value.replace(/[^A-Za-z0-9_.\-]+/g, "-").replace(/^[-.]+|[-.]+$/g, "").slice(0, 64)
        .replace(/[-.]+$/, "");
      job.value = auto.value = safe || fallback;
    });
  }

  /* ---- a textarea that keeps tabs --------------------------------------- */

  function keepTabs(area) {
    var escaped = false;
    area.addEventListener("keydown", function (event) {
      if (event.key === "Escape") { escaped = true; return; }
      if (event.key !== "Tab" || event.shiftKey || event.ctrlKey || event.altKey || event.metaKey) {
        escaped = false;
        return;
      }
      if (escaped) { escaped = false; return; }  // Esc then Tab: leave the field
      event.preventDefault();
      var start = area.selectionStart, end = area.selectionEnd;
      area.setRangeText("\t", start, end, "end");
      area.dispatchEvent(new Event("input", { bubbles: true }));
    });
    area.addEventListener("blur", function () { escaped = false; });
  }

  /* ---- not losing an edit by leaving the page ---------------------------- */

  function warnUnsaved(form) {
    var dirty = false;
    form.addEventListener("input", function () { dirty = true; });
    form.addEventListener("submit", function () { dirty = false; });
    window.addEventListener("beforeunload", function (event) {
      if (dirty) { event.preventDefault(); event.returnValue = ""; }
    });
  }

  /* ---- drafts: an edit kept in this browser until it is saved ----------- */

  // A script's edit form (form[data-draft="USER/SCRIPT/FIELD"]) keeps what
  // is typed in localStorage, with the version it was based on, so that
  // neither an ended session, a restart of the daemon, a closed tab nor a
  // crashed browser loses it. (Without JavaScript the server keeps a form
  // posted after its session ended: see App.keep_form.) A draft goes when
  // its save is confirmed: the first page of that script after submitting
  // the form shows a newer version and no form for that field (not a
  // conflict, an error or the login page). Or by Discard, Cancel, logging
  // out (a shared computer), or after DRAFT_DAYS. An edit page opened while
  // a draft is kept restores it and says so; it keeps the version it was
  // based on, so saving it over a newer one is the conflict page, never a
  // silent overwrite.
  var DRAFT = "flightjob-draft:", SAVING = "flightjob-saving:", DRAFT_DAYS = 30;
  var FIELD_WORDS = { content: "the script", notes: "the notes", name: "the name" };

  function storage(kind) {
    try { return window[kind]; } catch (e) { return null; }  // blocked by the browser's settings
  }

  function readDraft(key) {
    var ls = storage("localStorage");
    try { return ls ? JSON.parse(ls.getItem(DRAFT + key) || "null") : null; } catch (e) { return null; }
  }

  function writeDraft(key, draft) {
    try { localStorage.setItem(DRAFT + key, JSON.stringify(draft)); } catch (e) { /* full or blocked */ }
  }

  function dropDraft(key) {
    try { localStorage.removeItem(DRAFT + key); } catch (e) { /* blocked */ }
    try { sessionStorage.removeItem(SAVING + key); } catch (e) { /* blocked */ }
  }

  // Drafts older than DRAFT_DAYS, or under prefix (all of one user's).
  function dropDrafts(prefix) {
    var ls = storage("localStorage");
    if (!ls) { return; }
    var oldest = Date.now() - DRAFT_DAYS * 86400000, keys = [];
    for (var i = 0; i < ls.length; i++) { keys.push(ls.key(i)); }
    keys.forEach(function (k) {
      if (!k || k.indexOf(DRAFT) !== 0) { return; }
      var draft = readDraft(k.slice(DRAFT.length));
      if (!draft || !(draft.at > oldest) || (prefix && k.indexOf(DRAFT + prefix) === 0)) { ls.removeItem(k); }
    });
  }

  function draftNote(text, actions) {
    var p = document.createElement("p");
    p.className = "notice warn draft-note";
    p.setAttribute("role", "status");
    p.appendChild(document.createTextNode(text + " "));
    actions.forEach(function (el) { p.appendChild(el); });
    return p;
  }

  // On every page of a script (its h1[data-drafts]): settle the drafts a
  // save confirmed; say which others are kept, for the fields not being edited.
  function settleDrafts(head) {
    var base = head.getAttribute("data-drafts"), etag = head.getAttribute("data-etag");
    var kept = [];
    Object.keys(FIELD_WORDS).forEach(function (field) {
      var key = base + "/" + field, draft = readDraft(key), saving = null;
      var editing = document.querySelector('form[data-draft="' + CSS.escape(key) + '"]');
      try { saving = sessionStorage.getItem(SAVING + key); } catch (e) { /* blocked */ }
      if (saving !== null) {  // the first page of this script since the form was sent decides
        try { sessionStorage.removeItem(SAVING + key); } catch (e) { /* blocked */ }
        if (draft && !editing && draft.etag !== etag) { dropDraft(key); return; }
      }
      if (draft && !editing) { kept.push(field); }
    });
    kept.forEach(function (field) {
      var link = document.createElement("a");
      link.href = location.pathname + "?edit=" + field;
      link.textContent = "Edit " + FIELD_WORDS[field] + " to go on with it";
      head.parentNode.insertBefore(draftNote("An unsaved draft of " + FIELD_WORDS[field] +
        " is kept in this browser.", [link]), head.nextSibling);
    });
  }

  function keepDraft(form) {
    var key = form.getAttribute("data-draft");
    var text = form.querySelector("[name=text]"), etag = form.querySelector("[name=etag]");
    if (!text || !etag) { return; }
    var timer = null;
    function save() {
      if (timer) { clearTimeout(timer); }
      timer = null;
      writeDraft(key, { text: text.value, etag: etag.value, at: Date.now() });
    }
    var draft = readDraft(key);
    if (draft && typeof draft.text === "string" && draft.text !== text.value) {
      var shown = { text: text.value, etag: etag.value };
      text.value = draft.text;
      etag.value = draft.etag;
      var discard = document.createElement("button");
      discard.type = "button";
      discard.className = "button small";
      discard.textContent = "Discard the draft";
      var note = draftNote("Restored your unsaved draft of " + FIELD_WORDS[key.split("/").pop()] + ", from " +
        new Date(draft.at).toLocaleString() + ". It is not saved yet: press Save to keep it.", [discard]);
      discard.addEventListener("click", function () {
        text.value = shown.text;
        etag.value = shown.etag;
        dropDraft(key);
        note.remove();
        text.focus();
      });
      form.parentNode.insertBefore(note, form);
      text.dispatchEvent(new Event("input", { bubbles: true }));  // unsaved: warn before leaving
    }
    form.addEventListener("input", function () { if (!timer) { timer = setTimeout(save, 300); } });
    form.addEventListener("submit", function () {
      save();
      try { sessionStorage.setItem(SAVING + key, etag.value); } catch (e) { /* blocked */ }
    });
    $all(".actions a", form).forEach(function (cancel) {  // Cancel: the user gives the edit up
      cancel.addEventListener("click", function () { if (timer) { clearTimeout(timer); timer = null; } dropDraft(key); });
    });
  }

  /* ---- phones ----------------------------------------------------------- */

  // A cell with nothing in it but spaces (a card leaves it out: CSS's :empty
  // would not, for the spaces), marked again whenever its row changes.
  function blank(td) {
    if (!td.children.length && !td.textContent.trim()) {
      td.setAttribute("data-blank", "");
    } else {
      td.removeAttribute("data-blank");
    }
  }

  // Each cell of a list gets its column's name (data-label), which style.css
  // shows beside it when a narrow screen shows the rows as cards: from the
  // table's own header, so any column is captioned.
  function captionCells(table) {
    var heads = $all("thead th", table).map(function (th) {
      var copy = th.cloneNode(true);
      $all('[aria-hidden="true"]', copy).forEach(function (el) { el.parentNode.removeChild(el); });
      return copy.textContent.replace(/\s+/g, " ").trim();
    });
    $all("tbody tr", table).forEach(function (tr) {
      Array.prototype.forEach.call(tr.cells, function (td, i) {
        if (heads[i] && !td.hasAttribute("data-label")) { td.setAttribute("data-label", heads[i]); }
        blank(td);
      });
    });
  }

  // A table wider than its box scrolls inside it (.table-wrap): then the box
  // takes the keyboard's focus, named by the table's caption, so it can be
  // scrolled without a mouse.
  function scrollable(wrap) {
    var caption = wrap.querySelector("caption");
    function fit() {
      var scrolls = wrap.scrollWidth > wrap.clientWidth;
      if (scrolls === wrap.hasAttribute("tabindex")) { return; }
      if (scrolls) {
        wrap.setAttribute("tabindex", "0");
        wrap.setAttribute("role", "region");
        if (caption) { wrap.setAttribute("aria-label", caption.textContent.trim()); }
      } else {
        ["tabindex", "role", "aria-label"].forEach(function (a) { wrap.removeAttribute(a); });
      }
    }
    fit();
    window.addEventListener("resize", fit);
  }

  // Filters in a <details data-collapse-narrow> (open as served, so they
  // show without JavaScript): folded on a narrow screen, open on a wide one.
  var NARROW = "(max-width: 37.5rem)";

  function collapseNarrow(details) {
    if (!window.matchMedia) { return; }
    var narrow = window.matchMedia(NARROW);
    function fit() { details.open = !narrow.matches; }
    fit();
    if (narrow.addEventListener) { narrow.addEventListener("change", fit); }
  }

  /* ---- start ------------------------------------------------------------ */

  function start() {
    VOCABULARY = JSON.parse(document.body.getAttribute("data-vocabulary") || "null") || VOCABULARY;
    document.documentElement.classList.add("js");
    $all(".js-hide").forEach(function (el) { el.hidden = true; });
    $all(".js-only").forEach(function (el) { el.hidden = false; });
    tickTimes();
    setInterval(tickTimes, 5000);
    $all("table.list").forEach(captionCells);
    $all(".table-wrap").forEach(scrollable);
    $all("details[data-collapse-narrow]").forEach(collapseNarrow);
    $all("table[data-live-jobs]").forEach(liveJobsList);
    $all("#select-all").forEach(selectAll);
    $all("form[data-columns]").forEach(chooseColumns);
    $all("[data-live-job]").forEach(liveJob);
    $all("pre[data-follow][data-job]").forEach(follow);
    $all("form").forEach(askWhen);
    $all("[data-job-defaults]").forEach(jobDefaults);
    $all("form").forEach(steps);
    $all("form").forEach(followName);
    $all("textarea[data-keep-tabs]").forEach(keepTabs);
    $all("form[data-warn-unsaved]").forEach(warnUnsaved);
    dropDrafts(null);
    $all("h1[data-drafts]").forEach(settleDrafts);
    $all("form[data-draft]").forEach(keepDraft);
    $all("form.logout[data-user]").forEach(function (form) {
      form.addEventListener("submit", function () { dropDrafts(form.getAttribute("data-user") + "/"); });
      tabActivity(form.getAttribute("data-user"));
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
}());
