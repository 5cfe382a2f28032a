% rebase('base', page=page)
<h1>Job manager</h1>
% if not scripts:
<section class="first-step card" aria-labelledby="first-h">
  <h2 id="first-h">Start here</h2>
  <p>A job script tells the cluster what to run and what it needs. Pick a template, answer a few
  questions, and you have a script to submit: no Slurm options to learn first.</p>
  <div class="actions"><a class="button primary" href="/templates">Create your first job script</a></div>
</section>
% else:
<p class="lead">Create job scripts from templates, submit them to the cluster and follow your jobs.</p>
% end
% if not scheduler['ok']:
<p class="notice warn" role="status">The scheduler did not answer, so states may be out of date: {{scheduler['message']}}</p>
% end
% if broken:
<p class="notice warn">{{broken}} job record{{' cannot' if broken == 1 else 's cannot'}} be read: the <a href="/jobs">jobs page</a> says why.</p>
% end
% if jobs:
<section class="home-jobs" aria-labelledby="jobs-h">
<div class="section-head">
  <h2 id="jobs-h">Your jobs</h2>
  <a href="/jobs">All {{total}} job{{'' if total == 1 else 's'}}</a>
</div>
<p class="muted" id="jobs-counts">
% for state in ('RUNNING', 'PENDING'):
<a href="/jobs?state={{state}}"><span data-count="{{state}}">{{counts[state]}}</span> {{STATE_LABELS[state].lower()}}</a>{{', ' if state == 'RUNNING' else '.'}}
% end
{{'Unfinished jobs first, then the newest.' if counts['RUNNING'] + counts['PENDING'] else 'The newest first.'}}
</p>
<div class="table-wrap">
<table class="list" data-activity-jobs>
<caption class="visually-hidden">Your unfinished jobs, then your newest ones</caption>
% times = (('submitted_at', 'Submitted'), ('started_at', 'Started'), ('ended_at', 'Ended'))
<thead><tr>
% for label in ('Job', 'Name', 'State') + tuple(label for _, label in times):
<th scope="col">{{label}}</th>
% end
</tr></thead>
<tbody>
% for job in jobs:
<tr data-job="{{job['id']}}" data-state="{{job['state']}}">
  <td data-label="Job"><a href="/jobs/{{job['id']}}">{{job.get('scheduler_id') or job_label(job)}}</a></td>
  <td class="wrap" data-label="Name">{{job.get('job_name') or job['script_name']}}</td>
  <td data-label="State">
  % include('badge', job=job)
  </td>
  % for key, label in times:
  <td data-field="{{key}}" data-label="{{label}}">{{!time_tag(job.get(key))}}</td>
  % end
</tr>
% end
</tbody></table>
</div>
</section>
% elif scripts:
<div class="empty card" data-icon="&#9654;">
  <h2>You have not submitted any jobs yet</h2>
  <p>Open one of your scripts and press <strong>Submit</strong>; its job appears here.</p>
  <div class="actions"><a class="button primary" href="/scripts">Submit a script</a></div>
</div>
% end
<section class="home-cluster" aria-labelledby="cluster-h">
<h2 id="cluster-h">Free on the cluster now</h2>
% if cluster and cluster['partitions']:
% include('partitions', cluster=cluster, queues=scheduler['queues'])
% elif cluster:
<p class="muted" id="cluster-none">None of the cluster's partitions takes your jobs: ask your site.</p>
% else:
<p class="muted" id="cluster-unknown">Not known yet: the scheduler has not said. Reload the page in a moment.</p>
% end
</section>
<ul class="entries" aria-label="Go to">
  <li><a class="entry entry-templates card" href="/templates"><strong>Browse script templates</strong>
    <span>Pick a template and answer a few questions to create a job script.</span></a></li>
  <li><a class="entry entry-scripts card" href="/scripts"><strong>Browse scripts</strong>
    <span>View, edit, submit or delete the job scripts you have created.</span></a></li>
  <li><a class="entry entry-jobs card" href="/jobs"><strong>Monitor jobs</strong>
    <span>Follow the jobs you have submitted, cancel them and read their results.</span></a></li>
</ul>
