% # What is free in each partition the user may use (the submit page, the home page): cluster from _partition_view
<div class="table-wrap">
<table class="list" data-cluster>
<caption class="visually-hidden">The partitions you may submit to: what is free in each</caption>
<thead><tr><th scope="col">Partition</th><th scope="col">Cores free</th><th scope="col">Nodes free</th><th scope="col">GPUs free</th><th scope="col">Jobs waiting</th></tr></thead>
<tbody>
% for p in cluster['partitions']:
<tr data-partition="{{p['name']}}">
  <td data-label="Partition">{{p['name']}}{{' (default)' if p['default'] else ''}}{{'' if p['state'] == 'up' else ' (%s)' % p['state']}}</td>
  <td data-field="cores" data-label="Cores free">{{p['cpus_free']}} of {{p['cpus_total']}}</td>
  <td data-field="nodes" data-label="Nodes free">{{'' if p['nodes_free'] is None else p['nodes_free']}} of {{p['nodes_total']}}</td>
  <td data-field="gpus" data-label="GPUs free">{{'%d of %d' % (p['gpus_free'], p['gpus_total']) if p['gpus_total'] else 'none'}}</td>
  <td data-field="waiting" data-label="Jobs waiting">{{'' if p['waiting'] is None else p['waiting']}}</td>
</tr>
% end
</tbody></table>
</div>
% if not queues:
<p class="muted">This machine: cores left idle going by its load average; jobs here never wait.</p>
% else:
<p class="muted">As of {{!time_tag(cluster['at'])}}{{', the same figures for every user' if cluster['shared'] else ''}}. Free means idle now: a job that fits may still wait behind jobs with a higher priority.</p>
% end
