% rebase('base', page=page)
<h1>Summary</h1>
<p class="lead">Check the details, then submit. <strong>{{plan['script']['name']}}</strong> goes to the
{{plan['scheduler']}} scheduler.</p>
<dl class="facts">
% for q in plan['questions']:
  <dt>{{q['text']}}</dt><dd>{{ ', '.join(plan['answers'][q['id']]) if isinstance(plan['answers'][q['id']], list) else ('yes' if plan['answers'][q['id']] is True else ('no' if plan['answers'][q['id']] is False else (plan['answers'][q['id']] if plan['answers'][q['id']] not in (None, '') else '(default)'))) }}</dd>
% end
  % dep = plan.get('dependency')
  % if dep:
  <dt>Starts after</dt><dd>job {{dep['scheduler_id']}} {{DEPENDENCY_TYPES[dep['type']][0]}} <span class="muted">({{dep['type']}})</span></dd>
  % end
  % if plan.get('extra_options'):
  <dt>Extra options</dt><dd id="extra-options"><code>{{shell_words(plan['extra_options'])}}</code></dd>
  % end
  <dt>Scheduler options</dt><dd>{{shell_words(plan['options']) or '(none: the script\'s own directives apply)'}}</dd>
  <dt>Command</dt><dd><code>{{plan['command_text']}}</code></dd>
  <dt>Runs in</dt><dd><code>{{plan['outputs']['results_dir']}}</code></dd>
  % if plan.get('script_file'):
  <dt>Script</dt><dd id="runs-in-place">your file <code>{{plan['script_file']}}</code> as it is now (read at this submit; the job keeps a copy), run where it is: in its directory, where its output goes</dd>
  % end
  <dt>Output</dt><dd><code>{{plan['outputs']['stdout_path']}}</code></dd>
  % if plan['outputs']['stderr_path'] != plan['outputs']['stdout_path']:
  <dt>Errors</dt><dd><code>{{plan['outputs']['stderr_path']}}</code></dd>
  % end
</dl>
% if plan.get('job_defaults'):
<div class="notice warn" role="status" id="job-defaults"><p>What this cluster's defaults give the job:</p><ul>
% for w in plan['job_defaults']:
<li>{{w}}.</li>
% end
</ul><p>Ask for what the job needs (Memory, in the answers) to leave the rest to others' jobs.</p></div>
% end
% if plan['problems']:
<div class="notice warn{{' has-error' if problem else ''}}" role="{{'alert' if problem else 'status'}}" id="launch-problems"><p>{{problem or 'The job would fail at launch as things are:'}}</p><ul>
% for p in plan['problems']:
<li>it could not {{p['what']}} <code>{{p['path']}}</code>: {{p['why']}}</li>
% end
</ul>
% if all(p['missing'] for p in plan['problems']):
<p>Tick "Create the missing folders" below to have them made (as you) when you submit, or change the script.</p>
% else:
<p>Change the script, or the folders' permissions, before you submit.</p>
% end
</div>
% end
% if plan['ignored_options']:
<div class="notice warn" role="status"><p>Not honoured here:</p><ul>
% for n in plan['ignored_options']:
<li>{{n}}</li>
% end
</ul></div>
% end
<form method="post" action="/scripts/{{plan['script']['id']}}/submit">
  <input type="hidden" name="csrf" value="{{page['csrf']}}">
  % for key, value in raw_answers.items():
  % for v in (value if isinstance(value, list) else [value]):
  <input type="hidden" name="q_{{key}}" value="{{v}}">
  % end
  % end
  % if extra:
  <input type="hidden" name="extra_options" value="{{extra}}">
  % end
  % if after.get('job'):
  <input type="hidden" name="after_job" value="{{after['job']}}">
  <input type="hidden" name="after_type" value="{{after['type']}}">
  % end
  % if plan['problems'] and all(p['missing'] for p in plan['problems']):
  <p class="question"><input type="checkbox" id="make_folders" name="make_folders" value="yes"> <label for="make_folders">Create the missing folders: {{', '.join(sorted(set(p['folder'] for p in plan['problems'])))}}</label></p>
  % end
  <div class="actions">
    <button type="submit" name="action" value="update">Change answers</button>
    <button type="submit" name="action" value="submit" class="primary"><svg class="icon" aria-hidden="true" focusable="false" viewBox="0 0 24 24" width="18" height="18"><path fill="currentColor" d="M12 1.5c3.6 2.1 5.6 5.8 5.6 9.8 0 1.3-.2 2.6-.6 3.7l2.3 3.6-3.6-.7-1 2.1H9.3l-1-2.1-3.6.7L7 15c-.4-1.1-.6-2.4-.6-3.7 0-4 2-7.7 5.6-9.8zm0 6.3a2.1 2.1 0 100 4.2 2.1 2.1 0 000-4.2zM10.4 21h3.2L12 23.2z"/></svg> Submit</button>
  </div>
</form>
