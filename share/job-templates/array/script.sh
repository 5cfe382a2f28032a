#!/bin/bash
#
# Job array: Slurm runs this whole script once per task number. Each run (a
# "task") is an independent one-core job with its own number in the variable
# SLURM_ARRAY_TASK_ID, which the commands below use to pick their piece of
# work.
#
# How this file works
# -------------------
# Lines starting with "#SBATCH" are instructions for Slurm, the scheduler.
# bash treats them as comments; sbatch reads them when the job is submitted,
# but only those ABOVE the first real command, so keep them together here.
# To switch one off, add a second "#" in front: "##SBATCH ...".
#
# The task numbers (the array range, e.g. 1-10) and the resources
# (partition, time limit, memory, account) are not set here: they are asked
# each time you submit and passed to sbatch on its command line, where they
# override any "#SBATCH" line with the same option. Time and memory apply to
# each task separately.
# (Submitting by hand instead? Add lines such as "#SBATCH --array=1-10".)

# Run every task in this directory. It must exist when the job starts.
#SBATCH --chdir={{sq(working_dir)}}
# Submitted from the web job manager, each job runs in a new folder of its own
# inside that directory, named after the script and numbered (analysis-1,
# analysis-2, ...), made at submit: the job's output and results stay apart
# from other jobs'. Delete the next line to run every job in the directory.
#FLIGHTJOB job-folder
% if job_name:

# The name shown in the job list and by "squeue" (shared by all tasks).
#SBATCH --job-name={{sq(job_name)}}
% end

# Where each task's printed output goes: %A is replaced with the array's job
# number and %a with the task number, so every task gets its own file.
#SBATCH --output={{sq(output_file)}}
% if merge_output:
# Error messages go to the same file (no separate "--error" file).
% else:

# Where each task's error messages go.
#SBATCH --error={{sq(error_file)}}
% end

# Each task is one process, on one node, using one CPU core.
#SBATCH --nodes=1
#SBATCH --ntasks=1
% if notify and mail_events:

# Email notifications: the address, and the events that send a message.
# (Sent for the array as a whole, not for every task.)
#SBATCH --mail-user={{sq(email)}}
#SBATCH --mail-type={{sq(",".join(mail_events))}}
% end

# ===========================================================================
# Which task is this?
# ===========================================================================

# Slurm sets SLURM_ARRAY_TASK_ID to this task's number. Run outside an array
# (e.g. to test the script by hand), it is not set, so use 1.
if [ -n "${SLURM_ARRAY_TASK_ID:-}" ]; then
    TASK_ID="${SLURM_ARRAY_TASK_ID}"
else
    echo "Not running as part of a job array: acting as task 1."
    TASK_ID=1
fi
% if task_list:

# This task's input: line number TASK_ID of the list of inputs.
TASK_LIST={{q(task_list)}}
if [ ! -r "${TASK_LIST}" ]; then
    echo "ERROR: cannot read the list of inputs ${TASK_LIST}" >&2
    exit 1
fi
INPUT="$(sed -n "${TASK_ID}p" "${TASK_LIST}")"
if [ -z "${INPUT}" ]; then
    echo "ERROR: line ${TASK_ID} of ${TASK_LIST} is empty or missing;" \
         "is the array range longer than the list?" >&2
    exit 1
fi
% end

echo "Array job ${SLURM_ARRAY_JOB_ID:-(not run by Slurm)}, task ${TASK_ID}" \
     "(tasks ${SLURM_ARRAY_TASK_MIN:-?} to ${SLURM_ARRAY_TASK_MAX:-?})," \
     "on $(hostname) at $(date)"
echo "Working directory: $(pwd)"

# ===========================================================================
# Your work goes below. Use ${TASK_ID} to choose this task's piece of work,
# for example:
#
#     python3 simulate.py --seed "${TASK_ID}"             # a parameter
#     ./analyse "data/sample_${TASK_ID}.csv" > "result_${TASK_ID}.txt"
% if task_list:
#     ./analyse "${INPUT}" > "result_${TASK_ID}.txt"      # from the list
% end
#
# Write results to a file per task (as above) so tasks running at the same
# time do not overwrite each other. A task's exit code (success or failure
# in the job's task list) is the exit code of its LAST command.
# ===========================================================================

% if task_list:
echo "This task's input: ${INPUT}"
% else:
echo "This task would work on: input_${TASK_ID}.dat"
% end

# Example work: a small calculation from the task number.
echo "Task ${TASK_ID} squared is $(( TASK_ID * TASK_ID ))"
sleep 1

echo "Task ${TASK_ID} finished at $(date)"
