% rebase('base', page=page)
% verb = {'cancel': 'cancel', 'remove': 'remove'}[action]
% able = [p for p in picks if p['can']]
<section class="card confirm" id="bulk-{{'done' if results else 'confirm'}}">
<h1>{{page['title']}}</h1>
% if results:
% done = [p for p in picks if p['done']]
<p role="status">{{len(done)}} of {{len(picks)}} {{'job' if len(picks) == 1 else 'jobs'}} {{'cancelled' if action == 'cancel' else 'removed'}}.</p>
% elif able:
<p>{{'Cancel' if action == 'cancel' else 'Remove'}} {{'this job' if len(able) == 1 else 'these %d jobs' % len(able)}}? {{'They stop at once and their results may be incomplete.' if action == 'cancel' else 'Their records leave the list; their result files are kept.'}}</p>
% else:
<p class="error" role="alert">None of the selected jobs can be {{'cancelled' if action == 'cancel' else 'removed'}}.</p>
% end
<ul class="bulk-jobs">
% for p in picks:
<li data-job="{{p['id']}}" data-done="{{'1' if p.get('done') else '0'}}">
  % if p.get('state'):
  <a href="/jobs/{{p['id']}}">{{'Job ' + p['scheduler_id'] if p.get('scheduler_id') else '(not submitted)'}}</a> {{p['name']}}
  % include('badge', job=p)
  % else:
  Job <code>{{p['id']}}</code>
  % end
  % if results:
  — {{('cancelled' if action == 'cancel' else 'removed') if p['done'] else 'left as it is: %s' % p['why']}}
  % elif not p['can']:
  — cannot be {{'cancelled' if action == 'cancel' else 'removed'}}: {{p['why']}}
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
    <button type="submit" class="danger">{{'Cancel' if action == 'cancel' else 'Remove'}} {{len(able)}} {{'job' if len(able) == 1 else 'jobs'}}</button>
    <a class="button" href="/jobs">Keep {{'it' if len(able) == 1 else 'them'}}</a>
  </div>
</form>
% end
</section>
