% rebase('base', page=page)
<h1>Submit {{sub['script']['name']}}</h1>
<p class="lead">These answers become options of the scheduler's command and override the
script's own <code>#SBATCH</code> lines for this submission only. Next you will see a summary.</p>
% if not sub['scheduler']['ok']:
<p class="notice warn" role="status">The scheduler did not answer: {{sub['scheduler']['message']}}</p>
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
  % for q in sub['questions']:
  % include('question', q=q)
  % end
  % if not sub['questions']:
  <p>This script has no questions to answer at submission.</p>
  % end
  <div class="actions">
    <button type="submit" name="action" value="update" class="js-hide">Update questions</button>
    <button type="submit" name="action" value="review" class="primary">Review</button>
  </div>
</form>
