% rebase('base', page=page)
<div class="list-head">
<h1>Jobs</h1>
% if jobs or state:
<form method="get" action="/jobs" class="filter">
  <label for="state">Show</label>
  <select id="state" name="state">
    <option value="">all jobs</option>
    % for s in states:
    <option value="{{s}}" {{'selected' if s == state else ''}}>{{STATE_LABELS[s].lower()}}</option>
    % end
  </select>
  <button type="submit">Filter</button>
</form>
% end
</div>
% if not scheduler['ok']:
<p class="notice warn" role="status">The scheduler did not answer, so states may be out of date: {{scheduler['message']}}</p>
% end
% for b in broken:
<p class="notice warn">Job record <code>{{b['id']}}</code> cannot be read: {{b['reason']}}</p>
% end
% if not jobs:
% if state:
<div class="empty card" data-icon="&#8709;">
  <h2>No {{state.lower()}} jobs</h2>
  <p>None of your jobs is {{state.lower()}} at the moment.</p>
  <div class="actions"><a class="button" href="/jobs">Show all jobs</a></div>
</div>
% else:
<div class="empty card" data-icon="&#9654;">
  <h2>You have not submitted any jobs yet</h2>
  <p>Jobs appear here when you submit a job script. Open one of your scripts and press
  <strong>Submit</strong>, or create a script from a template first.</p>
  <div class="actions">
    <a class="button primary" href="/scripts">Submit a script</a>
    <a class="button" href="/templates">Create a script</a>
  </div>
</div>
% end
% else:
<div class="table-wrap">
<table class="list" data-live-jobs>
<caption class="visually-hidden">Your jobs, newest first</caption>
<thead><tr><th scope="col">Job</th><th scope="col">Script</th><th scope="col">State</th><th scope="col">Submitted</th><th scope="col" class="opt">Started</th><th scope="col">Ended</th><th scope="col" class="opt"><abbr title="CPU efficiency: CPU time / (run time x CPUs)">CPU</abbr></th><th scope="col" class="opt"><abbr title="Memory used of the memory asked for (used, when none was asked for)">Memory</abbr></th><th scope="col" class="opt"><abbr title="Run time of the time limit">Time</abbr></th></tr></thead>
<tbody>
% for job in jobs:
<tr data-job="{{job['id']}}" data-state="{{job['state']}}">
  <td><a href="/jobs/{{job['id']}}">{{job.get('scheduler_id') or job['id']}}</a></td>
  <td class="wrap">{{job['script_name']}}{{!' <span class="muted" data-origin="outside">(outside flightjobd)</span>' if job.get('origin') == 'outside' else ''}}</td>
  <td>
  % include('badge', job=job)
  </td>
  % for key in ('submitted_at', 'started_at', 'ended_at'):
  <td data-field="{{key}}"{{!' class="opt"' if key == 'started_at' else ''}}>{{!time_tag(job.get(key))}}</td>
  % end
  % eff = job.get('efficiency') or {}
  <td class="opt" data-field="cpu_percent">{{'' if eff.get('cpu_percent') is None else '%g %%' % round(eff['cpu_percent'])}}</td>
  <td class="opt" data-field="mem_percent">{{'%g %%' % round(eff['mem_percent']) if eff.get('mem_percent') is not None else mem_words(eff['mem_used_mb']) if eff.get('mem_used_mb') is not None else ''}}</td>
  <td class="opt" data-field="time_percent">{{'' if eff.get('time_percent') is None else '%g %%' % round(eff['time_percent'])}}</td>
</tr>
% end
</tbody></table>
</div>
% pages = (total + per_page - 1) // per_page
% if pages > 1:
<nav class="pages" aria-label="Pages">
  % base = '/jobs?' + ('state=%s&' % state if state else '')
  % if page_no > 1:
  <a class="button" href="{{base}}page={{page_no - 1}}" rel="prev">Newer</a>
  % end
  <span>Page {{page_no}} of {{pages}} ({{total}} jobs)</span>
  % if page_no < pages:
  <a class="button" href="{{base}}page={{page_no + 1}}" rel="next">Older</a>
  % end
</nav>
% end
% end
