% # The questions of a form, cut into steps (question_steps): app.js asks
% # them one step at a time; without JavaScript every step is on the page.
% # lead: a field of the form's own shown first (the create page's name),
% # tail: one shown last (its notes); each a function that writes it.
% steps = question_steps(questions)
% count = len(steps)
<div class="steps" {{'data-steps' if count > 1 else ''}}>
% for i, step in enumerate(steps):
<section class="step" id="step-{{i + 1}}" aria-labelledby="step-{{i + 1}}-h">
  % if count > 1:
  <h2 id="step-{{i + 1}}-h" class="step-heading" tabindex="-1">Step {{i + 1}} of {{count}}<span class="step-of">: {{', '.join(q['text'] for q in step if q['id'] in shown)}}</span></h2>
  % end
  % if i == 0 and lead:
  % lead()
  % end
  % for q in step:
  % include('question', q=q)
  % end
  % if i == count - 1 and tail:
  % tail()
  % end
</section>
% end
% if not steps and (lead or tail):
<section class="step">
  % if lead:
  % lead()
  % end
  % if tail:
  % tail()
  % end
</section>
% end
</div>
