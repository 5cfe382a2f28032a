% qid = 'q_' + q['id']
% value = q['default'] if answers is None else answers.get(q['id'], q['default'])
% err = errors.get(q['id'])
% cond = q.get('ask_when')
<div class="question{{' has-error' if err else ''}}" id="field-{{q['id']}}"
  % if cond:
  data-ask-question="{{cond['question']}}" data-ask-values="{{repr(cond['equals']).lower() if 'equals' in cond else '|'.join(cond['one_of'])}}"
  % end
  {{'hidden' if q['id'] not in shown else ''}}>
% if q['type'] == 'boolean':
  <input type="hidden" name="{{qid}}" value="false">
  <input type="checkbox" id="{{qid}}" name="{{qid}}" value="true" {{'checked' if str(value).lower() in ('true', 'on', 'yes', '1') else ''}} aria-describedby="{{qid}}-help">
  <label for="{{qid}}" class="inline">{{q['text']}}</label>
% elif q['type'] == 'multiselect':
  <fieldset aria-describedby="{{qid}}-help"><legend>{{q['text']}}</legend>
  % for o in q['options']:
    <label class="inline"><input type="checkbox" name="{{qid}}" value="{{o['value']}}" {{'checked' if o['value'] in (value or []) else ''}}> {{o['label']}}</label>
  % end
  </fieldset>
% else:
  <label for="{{qid}}">{{q['text']}}{{' (required)' if q.get('required') else ''}}</label>
  % if q['type'] == 'select':
  <select id="{{qid}}" name="{{qid}}" aria-describedby="{{qid}}-help">
    % for o in q['options']:
    <option value="{{o['value']}}" {{'selected' if o['value'] == value else ''}}>{{o['label']}}</option>
    % end
  </select>
  % elif q['type'] == 'multiline':
  <textarea id="{{qid}}" name="{{qid}}" rows="4" aria-describedby="{{qid}}-help">{{value}}</textarea>
  % else:
  <input id="{{qid}}" name="{{qid}}" value="{{'' if value is None else value}}" aria-describedby="{{qid}}-help"
    type="{{ {'integer': 'number', 'number': 'number', 'email': 'email'}.get(q['type'], 'text') }}"
    {{'step=any' if q['type'] == 'number' else ''}} {{'required' if q.get('required') and q['id'] in shown else ''}} {{'data-required' if q.get('required') else ''}}>
  % end
% end
  <p class="help" id="{{qid}}-help">{{q['description']}}</p>
% if err:
  <p class="field-error" role="alert">{{err}}</p>
% end
</div>
