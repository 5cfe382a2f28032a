% errors = fields.get('errors', {})
% copy = edit == 'copy'
<form method="post" action="/scripts/{{script['id']}}/{{'copy' if copy else 'save-as-template'}}" class="card rename" id="{{'copy' if copy else 'save-template'}}-form">
  <input type="hidden" name="csrf" value="{{page['csrf']}}">
  <h2>{{'Copy this script' if copy else 'Save as your own template'}}</h2>
  % if copy:
  <p class="help">A new script with this one's content, notes and answers; changing one later leaves the other as it is.</p>
  % else:
  <p class="help">A template in your own template directory, listed under Templates as yours: its script is this script's text as it is now, its questions those of {{script['template_name'] or script['template_id']}}.</p>
  % end
  % if errors.get(''):
  <p class="error" role="alert">{{errors['']}}</p>
  % end
  <div class="question{{' has-error' if errors.get('name') else ''}}">
    <label for="copy-name">{{'Name of the copy' if copy else 'Template name'}}</label>
    <input id="copy-name" name="name" value="{{fields.get('name', 'Copy of ' + script['name'] if copy else script['name'])}}" required>
    % if errors.get('name'):
    <p class="field-error" role="alert">{{errors['name']}}</p>
    % end
  </div>
  % if not copy:
  <div class="question{{' has-error' if errors.get('id') else ''}}">
    <label for="template-id">Template id (optional)</label>
    <input id="template-id" name="id" value="{{fields.get('id', '')}}" aria-describedby="template-id-help" pattern="[a-z0-9][a-z0-9_\-]{0,63}">
    <p class="help" id="template-id-help">Lowercase letters, digits, - and _; the name of its directory. Left empty, it is made from the name.</p>
    % if errors.get('id'):
    <p class="field-error" role="alert">{{errors['id']}}</p>
    % end
  </div>
  % end
  <div class="actions"><button class="primary" type="submit">{{'Copy' if copy else 'Save template'}}</button> <a href="/scripts/{{script['id']}}">Cancel</a></div>
</form>
