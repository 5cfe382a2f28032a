<span class="badge state-{{job['state'].lower()}}" data-field="state">{{state_label(job)}}</span>
