#!/bin/bash
#
# Serial job: runs the commands below once, as one task on one CPU core.
#
# How this file works
# -------------------
# Lines starting with "#SBATCH" are instructions for Slurm, the scheduler.
# bash treats them as comments; sbatch reads them when the job is submitted,
# but only those ABOVE the first real command, so keep them together here.
# To switch one off, add a second "#" in front: "##SBATCH ...".
#
# The resources (partition, time limit, memory, account) are not set here:
# they are asked each time you submit and passed to sbatch on its command
# line, where they override any "#SBATCH" line with the same option.
# (Submitting by hand instead? Add lines such as "#SBATCH --time=0-01:00:00".)

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

# One task, on one node, using one CPU core (Slurm's default is one core per
# task).
#SBATCH --nodes=1
#SBATCH --ntasks=1
% if notify and mail_events:

# Email notifications: the address, and the events that send a message.
#SBATCH --mail-user={{sq(email)}}
#SBATCH --mail-type={{sq(",".join(mail_events))}}
% end

# ===========================================================================
# Your work goes below. Replace the example with your own commands, e.g.
#
#     module load python3        # if your cluster uses environment modules
#     python3 my_analysis.py input.csv > result.txt
#
# The commands run on the compute node Slurm picked, in the working
# directory above. The job's exit code (what Slurm reports as success or
# failure) is the exit code of the LAST command. Put the line "set -e"
# before your commands to stop the job at the first command that fails.
# ===========================================================================

echo "Job ${SLURM_JOB_ID:-(not run by Slurm)} started on $(hostname) at $(date)"
echo "Working directory: $(pwd)"

# Example work: count to three, one second apart.
for step in 1 2 3; do
    echo "Step ${step} of 3"
    sleep 1
done

echo "Job finished at $(date)"
