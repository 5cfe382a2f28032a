% rebase('base', page=page)
% sid = job.get('scheduler_id') or job['id']
<div data-live-job="{{job['id']}}" data-state="{{job['state']}}">
<h1>Job {{sid}} % include('badge', job=job)
</h1>
% if not job['scheduler_state']['ok']:
<p class="notice warn" role="status">The scheduler did not answer, so this state may be out of date: {{job['scheduler_state']['message']}}</p>
% end
<div class="actions">
% if job['state'] in ('PENDING', 'RUNNING'):
  <a class="button danger" href="/jobs/{{job['id']}}/cancel" data-confirm="Cancel job {{sid}}?" data-post="/jobs/{{job['id']}}/cancel">Cancel job</a>
% else:
  <a class="button danger" href="/jobs/{{job['id']}}/remove" data-confirm="Remove job {{sid}} from the list? Its result files are kept." data-post="/jobs/{{job['id']}}/remove">Remove</a>
% end
</div>
<dl class="facts">
  <dt>ID</dt><dd>{{sid}} <span class="muted">(on the {{job['scheduler']}} scheduler; ours: {{job['id']}})</span></dd>
  <dt>Script</dt><dd><a href="/scripts/{{job['script_id']}}">{{job['script_name']}}</a></dd>
  <dt>State</dt><dd data-field="state-text">{{job['state'].capitalize()}}{{(' — ' + job['reason_text']) if job.get('reason_text') and job['state'] != 'COMPLETED' else ''}}</dd>
  % if job.get('exit_code') is not None:
  <dt>Exit code</dt><dd data-field="exit_code">{{job['exit_code']}}</dd>
  % end
  <dt>Submitted</dt><dd><time datetime="{{job['submitted_at']}}" title="{{job['submitted_at']}}" data-ago>{{ago(job['submitted_at'])}}</time></dd>
  % if job['state'] == 'PENDING' and job.get('estimated_start_at'):
  <dt>Estimated start</dt><dd><time datetime="{{job['estimated_start_at']}}" title="{{job['estimated_start_at']}}" data-ago>{{ago(job['estimated_start_at'])}}</time></dd>
  % end
  % if job.get('started_at'):
  <dt>Started</dt><dd><time datetime="{{job['started_at']}}" title="{{job['started_at']}}" data-ago>{{ago(job['started_at'])}}</time></dd>
  % end
  % if job.get('ended_at'):
  <dt>{{'Cancelled' if job['state'] == 'CANCELLED' else 'Ended'}}</dt><dd><time datetime="{{job['ended_at']}}" title="{{job['ended_at']}}" data-ago>{{ago(job['ended_at'])}}</time></dd>
  % end
  % if job['state'] in ('COMPLETED', 'FAILED') and job.get('ended_at') and (job.get('started_at') or job.get('submitted_at')):
  <dt>Time to completion</dt><dd>{{duration(__import__('flightjobd').parse_iso(job['ended_at']) - __import__('flightjobd').parse_iso(job['submitted_at']))}}</dd>
  % elif job['state'] == 'CANCELLED' and job.get('ended_at'):
  <dt>Time since cancellation</dt><dd>{{ago(job['ended_at'])}}</dd>
  % end
  % if job.get('elapsed_s') is not None:
  <dt>Run time</dt><dd>{{duration(job['elapsed_s'])}}{{(' of ' + job['time_limit'] + ' allowed') if job.get('time_limit') else ''}}</dd>
  % end
  % if job.get('max_rss_mb') is not None:
  <dt>Memory used</dt><dd>{{'%.0f MiB' % job['max_rss_mb']}}{{(' of %.0f MiB requested' % job['requested_mem_mb']) if job.get('requested_mem_mb') else ''}}</dd>
  % end
  % if job.get('cpu_time_s') is not None:
  <dt>CPU time</dt><dd>{{duration(job['cpu_time_s'])}}</dd>
  % end
  % if job.get('options'):
  <dt>Scheduler options</dt><dd><code>{{' '.join(job['options'])}}</code></dd>
  % end
  % if job.get('command'):
  <dt>Command</dt><dd><code>{{' '.join(job['command'])}}</code></dd>
  % end
</dl>
% if job.get('notes'):
<div class="notice" role="status"><p>Not honoured by this scheduler:</p><ul>
% for n in job['notes']:
<li>{{n}}</li>
% end
</ul></div>
% end
% if job.get('tasks'):
<h2>Array tasks</h2>
<table class="list"><thead><tr><th scope="col">Task</th><th scope="col">State</th><th scope="col">Exit code</th><th scope="col">Reason</th></tr></thead><tbody>
% for t in job['tasks']:
<tr><td>{{t['id']}}</td><td>{{t['state'].capitalize()}}</td><td>{{'' if t.get('exit_code') is None else t['exit_code']}}</td><td>{{t.get('reason_text') or ''}}</td></tr>
% end
</tbody></table>
% end
% if job['state'] != 'CANCELLED':
% for which, text in outputs.items():
<section class="output">
  <h2>{{'Output' if which == 'stdout' else 'Errors'}} <span class="muted">{{job[which + '_path']}}</span></h2>
  % if text['size'] > len(text['data']) * 3 // 4:
  <p class="muted">Showing the last part of {{human_size(text['size'])}}.</p>
  % end
  <pre class="code output" data-follow="{{which}}" data-job="{{job['id']}}">{{text['text']}}</pre>
</section>
% end
% end
% if job['state'] == 'CANCELLED':
<p class="muted">This job was cancelled, so there are no results to show.</p>
% elif files:
<section aria-labelledby="results-h">
<h2 id="results-h">Results directory</h2>
<p class="muted"><code>{{files['results_dir']}}</code></p>
% if job['state'] in ('PENDING', 'RUNNING'):
<p class="muted">The job has not finished: results may still change.</p>
% end
<table class="list"><thead><tr><th scope="col">File</th><th scope="col">Size</th><th scope="col">Modified</th><th scope="col"><span class="visually-hidden">Download</span></th></tr></thead><tbody>
% for f in files['files'][:200]:
<tr{{!' class="new"' if f['new'] else ''}}>
  <td><a href="/jobs/{{job['id']}}/files/{{quote(f['path'])}}">{{f['name']}}{{'/' if f['type'] == 'dir' else ''}}</a>{{' (job output)' if f['output'] else ''}}</td>
  <td>{{human_size(f['size']) if f['type'] == 'file' else ''}}</td>
  <td><time datetime="{{f['modified_at']}}" title="{{f['modified_at']}}" data-ago>{{ago(f['modified_at'])}}</time></td>
  <td>% if f['type'] == 'file':
<a href="/jobs/{{job['id']}}/download/{{quote(f['path'])}}">Download<span class="visually-hidden"> {{f['name']}}</span></a>% end
</td>
</tr>
% end
</tbody></table>
</section>
% end
<section>
<h2>Submitted script</h2>
<pre class="code numbered"><code>{{!''.join('<span class="line">%s\n</span>' % line for line in __import__('html').escape(job.get('script_content') or '').split('\n'))}}</code></pre>
% if job.get('answers'):
<h3>Submission answers</h3>
<dl class="facts">
% for k, v in job['answers'].items():
<dt>{{k}}</dt><dd>{{v if v not in (None, '', []) else '(default)'}}</dd>
% end
</dl>
% end
</section>
</div>
