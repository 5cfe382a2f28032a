% rebase('base', page=page)
<h1>Job manager</h1>
<p class="lead">Create job scripts from templates, submit them to the cluster and follow your jobs.</p>
<ul class="entries">
  <li><a class="entry entry-templates card" href="/templates"><strong>Browse script templates</strong>
    <span>Pick a template and answer a few questions to create a job script.</span></a></li>
  <li><a class="entry entry-scripts card" href="/scripts"><strong>Browse scripts</strong>
    <span>View, edit, submit or delete the job scripts you have created.</span></a></li>
  <li><a class="entry entry-jobs card" href="/jobs"><strong>Monitor jobs</strong>
    <span>Follow the jobs you have submitted, cancel them and read their results.</span></a></li>
</ul>
