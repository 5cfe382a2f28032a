% rebase('base', page=page)
<h1>Submit {{sub['script']['name']}}</h1>
<p class="lead">These answers become options of the scheduler's command and override the
script's own <code>#SBATCH</code> lines for this submission only. Next you will see a summary.</p>
% if sub['script'].get('origin'):
<p class="notice" role="status" id="from-script">This script was imported: the defaults below are the values of its own
<code>#SBATCH</code> lines{{' (' + ', '.join(q['text'] for q in sub['questions'] if q.get('from_script')) + ')' if any(q.get('from_script') for q in sub['questions']) else ' (it has none these questions ask)'}}; an empty answer leaves its line to apply.
% if sub['script']['origin']['in_place']:
Your file <code>{{sub['script']['origin']['file']}}</code> is read again at this submit and runs in its directory.
% end
</p>
% end
% if not sub['scheduler']['ok']:
<p class="notice warn" role="status">The scheduler did not answer: {{sub['scheduler']['message']}}</p>
% end
% src = sub.get('from_job')
% if src:
<div class="notice values-source" role="status" id="values-source">
  <p>Values from the answers of {{'job ' + src['scheduler_id'] if src['scheduler_id'] else src['label']}}, submitted {{!time_tag(src['submitted_at'])}}.
  <a href="/scripts/{{sub['script']['id']}}/submit">Reset to the defaults</a></p>
  % if src['dropped']:
  <p>Not used, as they no longer fit the questions:</p>
  <ul>
  % for d in src['dropped']:
    <li>{{d['text']}}: {{', '.join(map(str, d['value'])) if isinstance(d['value'], list) else d['value']}} ({{d['reason']}})</li>
  % end
  </ul>
  % end
</div>
% elif answers is None:
<p class="notice values-source" role="status" id="values-source">Values: the defaults.</p>
% end
% cluster = sub.get('cluster')
% if cluster and cluster['partitions']:
<section class="cluster" aria-labelledby="cluster-h">
<h2 id="cluster-h">Will it start soon?</h2>
% include('partitions', cluster=cluster, queues=sub['scheduler']['queues'])
</section>
% end
% notes = sub.get('job_defaults') or {}
% if notes:
% by_option = {q.get('option'): q['id'] for q in sub['questions']}
% vals = {q['id']: q['default'] if answers is None else answers.get(q['id'], q['default']) for q in sub['questions']}
% chosen = vals.get(by_option.get('partition')) or next((n for n, d in notes.items() if d['default']), '')
% no_mem = not vals.get(by_option.get('mem'))
% shown = chosen in notes and (notes[chosen]['exclusive'] or notes[chosen]['memory'] and no_mem)
<div class="notice warn" role="status" id="job-defaults" {{'' if shown else 'hidden'}} data-job-defaults data-mem-field="{{'q_' + by_option['mem'] if by_option.get('mem') else ''}}" data-partition-field="{{'q_' + by_option['partition'] if by_option.get('partition') else ''}}">
<p>Before you submit, what this cluster's defaults give a job:</p>
<ul>
% for name, d in notes.items():
% if d['exclusive']:
<li data-partition="{{name}}" data-default="{{'yes' if d['default'] else ''}}" {{'' if name == chosen else 'hidden'}}>{{d['exclusive']}}.</li>
% end
% if d['memory']:
<li data-partition="{{name}}" data-default="{{'yes' if d['default'] else ''}}" data-no-mem {{'' if name == chosen and no_mem else 'hidden'}}>On partition {{name}}: {{d['memory']}}. Ask for the memory the job needs (Memory, below) to leave the rest to others' jobs.</li>
% end
% end
</ul>
</div>
% end
% if errors:
<p class="error" role="alert">Some answers need another look: see the messages beside them.</p>
% end
% if errors.get(''):
<p class="error" role="alert">{{errors['']}}</p>
% end
% answers = answers
% shown = visible(sub['questions'], answers)
<form method="post" action="/scripts/{{sub['script']['id']}}/submit" class="questions">
  <input type="hidden" name="csrf" value="{{page['csrf']}}">
  % if src:
  <input type="hidden" name="from_job" value="{{src['id']}}">
  % end
  % for q in sub['questions']:
  % include('question', q=q)
  % end
  % if not sub['questions']:
  <p>This script has no questions to answer at submission.</p>
  % end
  % taken = sorted(set('--' + q['option'] for q in sub['questions'] if q.get('option')))
  <div class="question{{' has-error' if errors.get('extra_options') else ''}}" id="field-extra_options">
    <label for="extra_options">Extra scheduler options</label>
    <textarea id="extra_options" name="extra_options" rows="{{max(2, min(8, extra.count('\n') + 2))}}" aria-describedby="extra_options-help" spellcheck="false" autocapitalize="off" autocomplete="off" placeholder="--constraint=...">{{extra}}</textarea>
    <div class="help" id="extra_options-help">
      <p>Options of <code>sbatch</code> these questions do not ask, one a line, as on its command line: <code>--constraint=skylake</code>, <code>--mail-type=END</code>, <code>--gres gpu:1</code>. They join the command you see next.{{(' Not those the questions set (%s), nor' % ', '.join(taken)) if taken else ' Not'}} the ones that choose where output goes, run a program or read a file.</p>
      <details><summary>Options you may give</summary><p>{{', '.join('--' + n for n in EXTRA_ALLOWED if '--' + n not in taken)}}</p></details>
    </div>
    % if errors.get('extra_options'):
    <p class="field-error" role="alert">{{errors['extra_options']}}</p>
    % end
  </div>
  % if sub.get('after_choices') or after['job']:
  <fieldset class="question{{' has-error' if errors.get('after_job') or errors.get('after_type') else ''}}" id="field-after" aria-describedby="after-help">
    <legend>Start after one of my jobs</legend>
    <label for="after_job">Job</label>
    <select id="after_job" name="after_job">
      <option value="">No: start when the scheduler can</option>
      % for c in sub['after_choices']:
      <option value="{{c['id']}}" {{'selected' if c['id'] == after['job'] else ''}}>Job {{c['scheduler_id']}}: {{c['script_name']}} ({{STATE_LABELS.get(c['state'], c['state']).lower()}})</option>
      % end
    </select>
    <label for="after_type">Start it</label>
    <select id="after_type" name="after_type">
      % for kind, words in sub['dependency_types']:
      <option value="{{kind}}" {{'selected' if kind == after['type'] else ''}}>{{words}} ({{kind}})</option>
      % end
    </select>
    <p class="help" id="after-help">The job waits in the queue until the chosen job has ended as chosen; if it cannot end so, the job never runs and you can cancel it.</p>
    % for f in ('after_job', 'after_type'):
    % if errors.get(f):
    <p class="field-error" role="alert">{{errors[f]}}</p>
    % end
    % end
  </fieldset>
  % end
  <div class="actions">
    <button type="submit" name="action" value="update" class="js-hide">Update questions</button>
    <button type="submit" name="action" value="review" class="primary">Review</button>
  </div>
</form>
