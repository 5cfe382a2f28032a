% rebase('base', page=page)
% sid = job.get('scheduler_id') or job_label(job)
% unfinished = job['state'] in UNFINISHED
% act = unfinished and job.get('managed', True)
<div data-live-job="{{job['id']}}" data-state="{{job['state']}}">
<h1>{{job_label(job)}}
% include('badge', job=job)
</h1>
% if not job['scheduler_state']['ok']:
<p class="notice warn" role="status">The scheduler did not answer, so this state may be out of date: {{job['scheduler_state']['message']}}</p>
% end
% if job['state'] == 'FAILED' and job.get('reason_text'):
<p class="error">This job failed: {{job['reason_text']}}.</p>
% end
% if done == 'time_limit' and job['state'] == 'PENDING':
<p class="notice" role="status" id="job-done">Done: the time limit is now {{job.get('time_limit') or 'the partition\'s default'}}.</p>
% end
% if problem.get(''):
<p class="error" role="alert" id="job-problem">{{problem['']}}</p>
% end
% pending = job['state'] == 'PENDING' and job.get('scheduler_id') and act
% if not job.get('managed', True):
<p class="notice" role="status" id="not-managed">This job runs {{job['where']}} ({{job['scheduler']}} scheduler), which this service does not manage: it is shown as last recorded, and cannot be cancelled or changed here.</p>
% end
% if job.get('never_runs') and act:
<div class="notice warn" role="status" id="never-runs">
  <p>This job {{job.get('reason_text') or 'will never run: the job it depends on did not end as required'}}. It stays in the queue until you cancel it.</p>
  <form method="post" action="/jobs/{{job['id']}}/cancel">
    <input type="hidden" name="csrf" value="{{page['csrf']}}">
    <button type="submit" class="danger">Cancel this job</button>
  </form>
</div>
% end
<div class="actions">
% if act:
  <a class="button danger" href="/jobs/{{job['id']}}/cancel" data-confirm="{{confirm_question('cancel', sid)}}" data-post="/jobs/{{job['id']}}/cancel">Cancel job</a>
% elif not unfinished:
  <a class="button danger" href="/jobs/{{job['id']}}/remove" data-confirm="{{confirm_question('remove', sid)}}" data-post="/jobs/{{job['id']}}/remove">Remove</a>
% end
% if pending:
  <form method="post" action="/jobs/{{job['id']}}/{{'release' if job.get('held') else 'hold'}}" class="inline">
    <input type="hidden" name="csrf" value="{{page['csrf']}}">
    % if job.get('held'):
    <button type="submit" id="release">Release (let it start)</button>
    % else:
    <button type="submit" id="hold">Hold (keep it from starting)</button>
    % end
  </form>
% end
% if job.get('script_id'):
  <a class="button{{' primary' if job.get('reason') == 'SubmissionRefused' else ''}}" id="again-with-answers" href="/scripts/{{job['script_id']}}/submit?from_job={{job['id']}}">{{'Edit the answers and submit again' if job.get('reason') == 'SubmissionRefused' else 'Submit the script again with these answers'}}</a>
  <a class="button" href="/scripts/{{job['script_id']}}/submit">Submit the script again with the defaults</a>
% end
</div>
% if job.get('origin') == 'outside':
<p class="notice" role="status">This job was submitted outside flightjobd (with <code>sbatch</code>, say); it is shown and followed here until it ends.</p>
% end
<dl class="facts">
  <div><dt>ID</dt><dd>{{sid}} <span class="muted">(on the {{job['scheduler']}} scheduler{{', ' + job['where'] if job.get('where') else ''}}; ours: {{job['id']}})</span></dd></div>
  % if job.get('script_id'):
  <div><dt>Script</dt><dd><a href="/scripts/{{job['script_id']}}">{{job['script_name']}}</a></dd></div>
  % if job.get('script_file'):
  <div id="ran-in-place"><dt>Ran where it is</dt><dd>your file <code>{{job['script_file']}}</code>, as it was when submitted (the job keeps a copy of that text), run in <code>{{job.get('run_in') or job.get('results_dir')}}</code>, where its output went</dd></div>
  % end
  % else:
  <div><dt>Job name</dt><dd>{{job['script_name']}} <span class="muted">(submitted outside flightjobd)</span></dd></div>
  % end
  <div><dt>State</dt><dd><span data-field="state-text">{{state_text(job)}}</span> <code data-field="raw_state" title="the scheduler's own word"{{!'' if job.get('raw_state') not in (None, job['state']) else ' hidden'}}>{{job.get('raw_state') or ''}}</code></dd></div>
  % dep = job.get('dependency')
  % if dep:
  <div id="dependency"><dt>Starts after</dt><dd><a href="/jobs/{{dep['job_id']}}">job {{dep['scheduler_id']}}</a> {{DEPENDENCY_TYPES.get(dep['type'], ('',))[0]}} <span class="muted">({{dep['type']}})</span></dd></div>
  % end
  % if pending:
  <div id="time-limit"><dt>Time limit</dt><dd>{{job.get('time_limit') or next(('%s (as asked)' % o[7:] for o in job.get('options') or [] if o.startswith('--time=')), 'the partition\'s default')}}
    <form method="post" action="/jobs/{{job['id']}}/time-limit" class="inline{{' has-error' if problem.get('time_limit') else ''}}">
      <input type="hidden" name="csrf" value="{{page['csrf']}}">
      <label for="time_limit">New time limit</label>
      <input id="time_limit" name="time_limit" value="{{limit if limit is not None else (job.get('time_limit') or '')}}" aria-describedby="time_limit-help" size="12">
      <button type="submit">Change</button>
      <p class="help" id="time_limit-help">D-HH:MM:SS, HH:MM:SS or minutes. While the job waits you may lower it, or raise it up to the longest its partition allows (Slurm's MaxTime); once it runs, only an administrator can change it.</p>
      % if problem.get('time_limit'):
      <p class="field-error" role="alert">{{problem['time_limit']}}</p>
      % end
    </form></dd></div>
  % end
  <div data-row="exit_code"{{!'' if job.get('program_exit') is not None else ' hidden'}}><dt>Exit code</dt><dd data-field="exit_code">{{'' if job.get('program_exit') is None else job['program_exit']}}</dd></div>
  <div><dt>Submitted</dt><dd data-field="submitted_at">{{!time_tag(job['submitted_at'])}}</dd></div>
  <div data-row="estimated_start_at"{{!'' if job['state'] == 'PENDING' and job.get('estimated_start_at') else ' hidden'}}><dt>Estimated start</dt><dd data-field="estimated_start_at">{{!time_tag(job.get('estimated_start_at'))}}</dd></div>
  <div data-row="started_at"{{!'' if job.get('started_at') else ' hidden'}}><dt>Started</dt><dd data-field="started_at">{{!time_tag(job.get('started_at'))}}</dd></div>
  <div data-row="ended_at"{{!'' if job.get('ended_at') else ' hidden'}}><dt>{{'Time since cancellation' if job['state'] == 'CANCELLED' else 'Ended'}}</dt><dd data-field="ended_at">{{!time_tag(job.get('ended_at'))}}</dd></div>
  % if job['state'] in ('COMPLETED', 'FAILED') and job.get('ended_at') and job.get('submitted_at'):
  <div><dt>Time to completion</dt><dd>{{duration(seconds_between(job['submitted_at'], job['ended_at']))}}</dd></div>
  % end
  % # a running job's run time counts on from its start (the record's is as of its last change)
  % running = job.get('raw_state') == 'RUNNING' and job.get('started_at')
  % run = seconds_between(job['started_at'], now_iso()) if running else job.get('elapsed_s')
  % if run is not None or unfinished:
  % # app.js counts a running job's run time on each second, and shows it (and the limit) once the job starts
  <div data-row="run_time"{{!'' if run is not None else ' hidden'}}><dt>Run time</dt><dd><span data-field="run_time" data-since="{{job['started_at'] if running else ''}}" data-now="{{now_iso()}}">{{duration(run)}}</span><span data-field="time_limit">{{(' of %s allowed' % job['time_limit']) if job.get('time_limit') else ''}}</span></dd></div>
  % end
  % eff = job.get('efficiency')
  % if not eff and job.get('cpu_time_s') is not None:
  <div><dt>CPU time</dt><dd>{{duration(job['cpu_time_s'])}}</dd></div>
  % end
  % if job.get('extra_options'):
  <div id="extra-options"><dt>Extra options</dt><dd><code>{{shell_words(job['extra_options'])}}</code> <span class="muted">(your own, beside the questions')</span></dd></div>
  % end
  % if job.get('options'):
  <div><dt>Scheduler options</dt><dd><code>{{shell_words(job['options'])}}</code></dd></div>
  % end
  % if job.get('command'):
  <div><dt>Command</dt><dd><code>{{shell_words(job['command'])}}</code></dd></div>
  % end
</dl>
% if eff:
<section class="efficiency" aria-labelledby="efficiency-h">
<h2 id="efficiency-h">Efficiency</h2>
<dl class="facts">
  % if eff['cpu_percent'] is not None:
  <div><dt>CPU</dt><dd><strong data-field="cpu_percent">{{'%g %%' % round(eff['cpu_percent'])}}</strong> <span class="muted">({{duration(eff['cpu_time_s'])}} of CPU time in {{duration(eff['cpu_alloc_s'])}} held{{(': %g %s for its run time; on average %g of them busy' % (eff['alloc_cpus'], 'CPU' if eff['alloc_cpus'] == 1 else 'CPUs', eff['cores_used'])) if eff['cores_used'] is not None else ''}})</span></dd></div>
  % end
  % if eff['mem_used_mb'] is not None:
  <div><dt>Memory</dt><dd><strong data-field="mem_used">{{mem_words(eff['mem_used_mb'])}}</strong>{{(' of %s (%g %%)' % ((('%s asked for' if eff['mem_asked'] else 'the node\'s default of %s') % mem_words(eff['mem_requested_mb'])), round(eff['mem_percent']))) if eff['mem_requested_mb'] else ''}} <span class="muted">(what it is: {{eff['mem_what']}})</span></dd></div>
  % end
  % if eff['time_percent'] is not None:
  <div><dt>Time</dt><dd><strong data-field="time_percent">{{'%g %%' % round(eff['time_percent'])}}</strong> of its time limit <span class="muted">({{duration(eff['time_used_s'])}} of {{duration(eff['time_limit_s'])}})</span></dd></div>
  % end
</dl>
% if eff['advice']:
<ul class="advice">
% for line in eff['advice']:
<li>{{line}}</li>
% end
</ul>
% end
</section>
% end
% if job.get('ignored_options'):
<div class="notice" role="status"><p>Not honoured by this scheduler:</p><ul>
% for n in job['ignored_options']:
<li>{{n}}</li>
% end
</ul></div>
% end
% if job.get('tasks'):
<h2>Array tasks</h2>
<div class="table-wrap">
<table class="list"><thead><tr><th scope="col">Task</th><th scope="col">State</th><th scope="col">Exit code</th><th scope="col">Reason</th><th scope="col">Output</th><th scope="col"><span class="visually-hidden">Cancel</span></th></tr></thead><tbody>
% for t in job['tasks']:
% num = t['id'].rpartition('_')[2]
<tr data-task="{{t['id']}}"><td>{{t['id']}}</td><td>
% include('badge', job=t)
</td><td>{{'' if t.get('exit_code') is None else t['exit_code']}}</td><td class="wrap">{{t.get('reason_text') or ''}}</td>
<td class="wrap">
% if t.get('output'):
<a href="/jobs/{{job['id']}}/files/{{quote(t['output'])}}">{{t['output']}}</a>
% end
</td><td>
% if act and t['state'] in UNFINISHED and num.isdigit():
<a class="button danger" href="/jobs/{{job['id']}}/tasks/{{num}}/cancel" data-confirm="{{confirm_question('cancel_task', t['id'])}}" data-post="/jobs/{{job['id']}}/tasks/{{num}}/cancel">Cancel task<span class="visually-hidden"> {{t['id']}}</span></a>
% end
</td></tr>
% end
</tbody></table>
</div>
% end
% if job['no_results']:
<p class="notice">This job was cancelled, so there are no results to show.</p>
% else:
% for which, text in outputs.items():
% if text or unfinished:
<section class="output" aria-labelledby="{{which}}-h">
  <div class="section-head"><h2 id="{{which}}-h">{{'Output' if which == 'stdout' else 'Errors'}}</h2>
  % if unfinished:
  <span class="following" data-following hidden>Following live</span>
  % end
  </div>
  <p class="muted"><code>{{job[which + '_path']}}</code>{{' (worked out here, not told by the scheduler: a guess)' if job.get('outputs_guessed') else ''}}</p>
  % if text and text['size'] > len(text['data']) * 3 // 4:
  <p class="muted">Showing the last part of {{human_size(text['size'])}}.</p>
  % end
  <pre class="code output" tabindex="0" role="region" aria-labelledby="{{which}}-h" data-follow="{{which}}" data-job="{{job['id']}}">{{text['text'] if text else ''}}</pre>
</section>
% end
% end
% # app.js redraws this from the page itself while the job runs (new files listed as they come)
<div id="results"{{!' data-live-results' if unfinished else ''}}>
% if files:
<section aria-labelledby="results-h">
<h2 id="results-h">Results directory</h2>
<p class="muted"><code>{{files['results_dir']}}</code></p>
% if unfinished:
<p class="muted">The job has not finished: results may still change.</p>
% end
% shown = [f for f in files['files'] if f['output'] or not f['name'].startswith('.')]
% if len(shown) < len(files['files']):
<p class="muted">Hidden files (names starting with a dot) are not listed.</p>
% end
% if archive_error:
<p class="error" role="alert" id="archive-error">{{archive_error}}</p>
% end
% if shown:
<form method="post" action="/jobs/{{job['id']}}/archive" class="archive">
<input type="hidden" name="csrf" value="{{page['csrf']}}">
<div class="actions">
  <a class="button" href="/jobs/{{job['id']}}/archive">Download all as .zip</a>
  <button type="submit" class="button">Download the chosen files as .zip</button>
</div>
<div class="table-wrap">
<table class="list"><thead><tr><th scope="col"><span class="visually-hidden">Choose</span></th><th scope="col">File</th><th scope="col">Size</th><th scope="col" class="opt">Modified</th><th scope="col"><span class="visually-hidden">Download</span></th></tr></thead><tbody>
% for loop_i, f in enumerate(shown[:200]):
<tr{{!' class="new"' if f['new'] else ''}}>
  <td><input type="checkbox" name="path" value="{{f['path']}}" id="pick-{{loop_i}}"{{!' checked' if f['path'] in chosen else ''}}{{!' aria-describedby="archive-error"' if archive_error else ''}}><label class="visually-hidden" for="pick-{{loop_i}}">Choose {{f['name']}}</label></td>
  <td class="wrap"><a href="/jobs/{{job['id']}}/files/{{quote(f['path'])}}">{{f['name']}}{{'/' if f['type'] == 'dir' else ''}}</a>{{' (job output)' if f['output'] else ''}}</td>
  <td>{{human_size(f['size']) if f['type'] == 'file' else ''}}</td>
  <td class="opt">{{!time_tag(f['modified_at'])}}</td>
  <td>
  % if f['type'] == 'file':
  <a href="/jobs/{{job['id']}}/download/{{quote(f['path'])}}">Download<span class="visually-hidden"> {{f['name']}}</span></a>
  % end
  </td>
</tr>
% end
</tbody></table>
</div>
</form>
% left = max(len(shown) - 200, 0) + files.get('more', 0)
% if left:
<p class="muted">{{'{:,}'.format(left)}} more entries are not listed: open the directory from a terminal to see them all.</p>
% end
% else:
<p class="muted">The directory is empty.</p>
% end
</section>
% elif not unfinished:
<p class="muted">No results directory to show.</p>
% end
</div>
% end
% if job.get('script_content') is not None:
<section class="submitted" aria-labelledby="script-h">
<h2 id="script-h">Submitted script</h2>
<details>
<summary>Show the exact script and answers this job was submitted with</summary>
<pre class="code numbered" tabindex="0" role="region" aria-labelledby="script-h"><code>{{!numbered_lines(job.get('script_content') or '')}}</code></pre>
% if job.get('answers'):
<h3>Submission answers</h3>
<dl class="facts">
% for k, v in job['answers'].items():
<div><dt>{{k}}</dt><dd>{{v if v not in (None, '', []) else '(default)'}}</dd></div>
% end
</dl>
% end
</details>
</section>
% end
</div>
