% rebase('base', page=page)
<h1>Create script: {{template['name']}}</h1>
<p class="lead">{{template['description']}}</p>
% if template.get('unavailable'):
<p class="notice warn" role="status" data-field="unavailable">This template is not offered here: {{template['unavailable']}}. A job of it would wait for what this cluster cannot give.</p>
% end
% if errors:
<p class="error" role="alert">Some answers need another look: see the messages beside them. Your answers are kept.</p>
% end
% if errors.get(''):
<p class="error" role="alert">{{errors['']}}</p>
% end
% shown = visible(template['questions'], answers)
<form method="post" action="/templates/{{template['id']}}/create" class="questions" data-check="/api/templates/{{template['id']}}/check">
  <input type="hidden" name="csrf" value="{{page['csrf']}}">
  % if auto is not None:
  <input type="hidden" name="job_name_auto" value="{{auto}}">
  % end
  % def lead():
  <div class="question{{' has-error' if errors.get('name') else ''}}">
    <label for="name">Script name</label>
    <input id="name" name="name" value="{{name}}" aria-describedby="name-help" required>
    <p class="help" id="name-help">A name to recognise this script by in your list{{'; the job name follows it until you change that' if auto is not None else ''}}.</p>
    % if errors.get('name'):
    <p class="field-error" role="alert">{{errors['name']}}</p>
    % end
  </div>
  % end
  % def tail():
  <div class="question">
    <label for="notes">Notes</label>
    <textarea id="notes" name="notes" rows="4" aria-describedby="notes-help">{{notes or ''}}</textarea>
    <p class="help" id="notes-help">Anything you want to remember about this script.</p>
  </div>
  % end
  % include('questions', questions=template['questions'], lead=lead, tail=tail)
  <div class="actions">
    <button type="submit" name="action" value="update" class="js-hide">Update questions</button>
    <button type="submit" name="action" value="create" class="primary">Create script</button>
  </div>
</form>
