#!/bin/bash
#
# Exclusive job: one or more whole compute nodes, reserved for this job
# alone, with all their CPU cores.
#
# How this file works
# -------------------
# Lines starting with "#SBATCH" are instructions for Slurm, the scheduler.
# bash treats them as comments; sbatch reads them when the job is submitted,
# but only those ABOVE the first real command, so keep them together here.
# To switch one off, add a second "#" in front: "##SBATCH ...".
#
# Exclusive use, the number of nodes and the resources (partition, time
# limit, memory, account) are not set here: they are asked each time you
# submit and passed to sbatch on its command line ("Keep the nodes to myself"
# adds --exclusive), where they override any "#SBATCH" line with the same
# option.
# (Submitting by hand instead? Add the lines "#SBATCH --exclusive" and, for
# example, "#SBATCH --nodes=2".)
#
# The script itself runs once, on the first node of the job; use "srun" to
# run a command on every node (see the example below).

# Run the job in this directory. It must exist when the job starts.
#SBATCH --chdir={{sq(working_dir)}}
# Submitted from the web job manager, each job runs in a new folder of its own
# inside that directory, named after the script and numbered (analysis-1,
# analysis-2, ...), made at submit: the job's output and results stay apart
# from other jobs'. Delete the next line to run every job in the directory.
#FLIGHTJOB job-folder
% if job_name:

# The name shown in the job list and by "squeue".
#SBATCH --job-name={{sq(job_name)}}
% end

# Where the job's printed output goes (%j is replaced with the job number).
#SBATCH --output={{sq(output_file)}}
% if merge_output:
# Error messages go to the same file (no separate "--error" file).
% else:

# Where the job's error messages go.
#SBATCH --error={{sq(error_file)}}
% end
% if notify and mail_events:

# Email notifications: the address, and the events that send a message.
#SBATCH --mail-user={{sq(email)}}
#SBATCH --mail-type={{sq(",".join(mail_events))}}
% end

# ===========================================================================
# Your work goes below. Replace the example with your own commands, e.g.
#
#     module load gcc            # if your cluster uses environment modules
#     ./my_benchmark --threads "${SLURM_CPUS_ON_NODE}"
#     srun --ntasks-per-node=1 ./prepare_local_scratch   # once on every node
#
# The job's exit code (what Slurm reports as success or failure) is the
# exit code of the LAST command. Put the line "set -e" before your commands
# to stop the job at the first command that fails.
# ===========================================================================

echo "Job ${SLURM_JOB_ID:-(not run by Slurm)} started on $(hostname) at $(date)"
echo "Working directory: $(pwd)"
echo "Nodes in this job: ${SLURM_JOB_NODELIST:-$(hostname)}"

# Example work: show what this node gives the job. On a node of your own,
# the CPU cores for the job should match the cores the node has.
echo "CPU cores for the job on this node: ${SLURM_CPUS_ON_NODE:-$(nproc)}"
echo "CPU cores this node has: $(nproc --all)"
if command -v free >/dev/null 2>&1; then
    free -h
fi

# Run "hostname" once on every node of the job (only inside a Slurm job).
if [ -n "${SLURM_JOB_ID:-}" ] && command -v srun >/dev/null 2>&1; then
    srun --nodes="${SLURM_JOB_NUM_NODES:-1}" --ntasks="${SLURM_JOB_NUM_NODES:-1}" hostname \
        || echo "srun could not start the example (see the message above)."
fi
sleep 1

echo "Job finished at $(date)"
