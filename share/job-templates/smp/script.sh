#!/bin/bash
#
# Multithreaded (SMP) job: one copy of a program using several CPU cores of
# one compute node, e.g. with threads or OpenMP.
#
# How this file works
# -------------------
# Lines starting with "#SBATCH" are instructions for Slurm, the scheduler.
# bash treats them as comments; sbatch reads them when the job is submitted,
# but only those ABOVE the first real command, so keep them together here.
# To switch one off, add a second "#" in front: "##SBATCH ...".
#
# The number of cores and the resources (partition, time limit, memory,
# account) are not set here: they are asked each time you submit and passed
# to sbatch on its command line, where they override any "#SBATCH" line with
# the same option.
# (Submitting by hand instead? Add lines such as "#SBATCH --cpus-per-task=8".)

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

# One task (one copy of the program) on one node. Its cores come from the
# "CPU cores" answer at submit time (--cpus-per-task).
#SBATCH --nodes=1
#SBATCH --ntasks=1
% if notify and mail_events:

# Email notifications: the address, and the events that send a message.
#SBATCH --mail-user={{sq(email)}}
#SBATCH --mail-type={{sq(",".join(mail_events))}}
% end

# ===========================================================================
# Threads
# ===========================================================================

# Start one thread per reserved core. Slurm puts the number of cores in
# SLURM_CPUS_PER_TASK; when it is not set (e.g. the script is run by hand),
# use 1. OpenMP programs read OMP_NUM_THREADS themselves; for other programs
# pass the number on, e.g. "mytool --threads ${OMP_NUM_THREADS}".
export OMP_NUM_THREADS="${SLURM_CPUS_PER_TASK:-1}"
% if pin_threads:

# Keep each OpenMP thread on its own core, neighbouring threads close
# together.
export OMP_PROC_BIND=close
export OMP_PLACES=cores
% end

# If you start your program with "srun" inside this script, tell srun to use
# the same number of cores (Slurm 22.05 and later no longer pass it on):
export SRUN_CPUS_PER_TASK="${OMP_NUM_THREADS}"

# ===========================================================================
# Your work goes below. Replace the example with your own commands, e.g.
#
#     module load gcc            # if your cluster uses environment modules
#     ./my_openmp_program input.dat
#     pigz -p "${OMP_NUM_THREADS}" big_file.tar
#
# The commands run on the compute node Slurm picked, in the working
# directory above. The job's exit code (what Slurm reports as success or
# failure) is the exit code of the LAST command. Put the line "set -e"
# before your commands to stop the job at the first command that fails.
# ===========================================================================

echo "Job ${SLURM_JOB_ID:-(not run by Slurm)} started on $(hostname) at $(date)"
echo "Working directory: $(pwd)"
echo "Using ${OMP_NUM_THREADS} thread(s)"

# Example work: one background worker per core, each sleeping a second;
# "wait" waits for them all.
for worker in $(seq 1 "${OMP_NUM_THREADS}"); do
    ( echo "Worker ${worker} of ${OMP_NUM_THREADS} running"; sleep 1 ) &
done
wait

echo "Job finished at $(date)"
