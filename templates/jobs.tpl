% rebase('base', page=page)
<h1>Jobs</h1>
% if not scheduler['ok']:
<p class="notice warn" role="status">The scheduler did not answer, so states may be out of date: {{scheduler['message']}}</p>
% end
<form method="get" action="/jobs" class="filter">
  <label for="state">Show</label>
  <select id="state" name="state">
    <option value="">all jobs</option>
    % for s in states:
    <option value="{{s}}" {{'selected' if s == state else ''}}>{{s.lower()}}</option>
    % end
  </select>
  <button type="submit">Filter</button>
</form>
% for b in broken:
<p class="notice warn">Job record <code>{{b['id']}}</code> cannot be read: {{b['reason']}}</p>
% end
% if not jobs:
<div class="empty card">
  % if state:
  <p>No {{state.lower()}} jobs.</p>
  % else:
  <p>You have not submitted any jobs yet.</p>
  <a class="button primary" href="/scripts">Submit a script</a>
  % end
</div>
% else:
<table class="list" data-live-jobs>
<caption class="visually-hidden">Your jobs, newest first</caption>
<thead><tr><th scope="col">Job</th><th scope="col">Script</th><th scope="col">State</th><th scope="col">Submitted</th><th scope="col">Started</th><th scope="col">Ended</th></tr></thead>
<tbody>
% for job in jobs:
<tr data-job="{{job['id']}}" data-state="{{job['state']}}">
  <td><a href="/jobs/{{job['id']}}">{{job.get('scheduler_id') or job['id']}}</a></td>
  <td>{{job['script_name']}}</td>
  <td>% include('badge', job=job)
</td>
  % for key in ('submitted_at', 'started_at', 'ended_at'):
  <td data-field="{{key}}">% if job.get(key):
<time datetime="{{job[key]}}" title="{{job[key]}}" data-ago>{{ago(job[key])}}</time>% end
</td>
  % end
</tr>
% end
</tbody></table>
% pages = (total + per_page - 1) // per_page
% if pages > 1:
<nav class="pages" aria-label="Pages">
  % base = '/jobs?' + ('state=%s&' % state if state else '')
  % if page > 1:
  <a href="{{base}}page={{page - 1}}" rel="prev">Newer</a>
  % end
  <span>Page {{page}} of {{pages}} ({{total}} jobs)</span>
  % if page < pages:
  <a href="{{base}}page={{page + 1}}" rel="next">Older</a>
  % end
</nav>
% end
% end
