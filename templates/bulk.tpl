% rebase('base', page=page)
% title, button, done_word, effect, danger = words
% able = [p for p in picks if p['can']]
<section class="card confirm" id="bulk-{{'done' if results else 'confirm'}}">
<h1>{{page['title']}}</h1>
% if results:
% done = [p for p in picks if p['done']]
<p role="status">{{len(done)}} of {{len(picks)}} {{'job' if len(picks) == 1 else 'jobs'}} {{done_word}}.</p>
% elif able:
<p>{{button}} {{'this job' if len(able) == 1 else 'these %d jobs' % len(able)}}? {{effect}}</p>
% else:
<p class="error" role="alert">None of the selected jobs can be {{done_word}}.</p>
% end
<ul class="bulk-jobs">
% for p in picks:
<li data-job="{{p['id']}}" data-done="{{'1' if p.get('done') else '0'}}">
  % if p.get('state'):
  <a href="/jobs/{{p['id']}}">{{'Job ' + p['scheduler_id'] if p.get('scheduler_id') else '(not submitted)'}}</a> {{p['name']}}
  % include('badge', job=p)
  % if p.get('reason_text'):
  <span class="muted" data-field="reason_text">{{p['reason_text']}}</span>
  % end
  % else:
  Job <code>{{p['id']}}</code>
  % end
  % if results:
  — {{done_word if p['done'] else 'left as it is: %s' % p['why']}}
  % elif not p['can']:
  — cannot be {{done_word}}: {{p['why']}}
  % end
</li>
% end
</ul>
% if results or not able:
<div class="actions"><a class="button" href="/jobs">Back to the jobs</a></div>
% else:
<form method="post" action="/jobs/bulk">
  <input type="hidden" name="csrf" value="{{page['csrf']}}">
  <input type="hidden" name="action" value="{{action}}">
  % for p in able:
  <input type="hidden" name="id" value="{{p['id']}}">
  % end
  <div class="actions">
    <button type="submit"{{!' class="danger"' if danger else ' class="primary"'}}>{{button}} {{len(able)}} {{'job' if len(able) == 1 else 'jobs'}}</button>
    <a class="button" href="/jobs">Keep {{'it' if len(able) == 1 else 'them'}}</a>
  </div>
</form>
% end
</section>
