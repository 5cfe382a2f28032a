#!/bin/bash
#
# GPU job: runs your commands on a compute node with one or more GPUs
# reserved for the job.
#
# How this file works
# -------------------
# Lines starting with "#SBATCH" are instructions for Slurm, the scheduler.
# bash treats them as comments; sbatch reads them when the job is submitted,
# but only those ABOVE the first real command, so keep them together here.
# To switch one off, add a second "#" in front: "##SBATCH ...".
#
# The number of GPUs and CPU cores and the resources (partition, time limit,
# memory, account) are not set here: they are asked each time you submit and
# passed to sbatch on its command line, where they override any "#SBATCH"
# line with the same option.
# (Submitting by hand instead? Add lines such as "#SBATCH --gpus=1"; on older
# clusters the form is "#SBATCH --gres=gpu:1".)

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

# One task (one copy of your program) on one node, so that all the job's
# GPUs are on the same node.
#SBATCH --nodes=1
#SBATCH --ntasks=1
% if notify and mail_events:

# Email notifications: the address, and the events that send a message.
#SBATCH --mail-user={{sq(email)}}
#SBATCH --mail-type={{sq(",".join(mail_events))}}
% end

# ===========================================================================
# Software
# ===========================================================================
% if modules:

# Load the modules chosen when this script was created. "module" is set up
# by the cluster's login scripts; if the job does not have it, look for the
# file that defines it.
MODULES=({{" ".join(q(m) for m in modules.split())}})
if ! type module >/dev/null 2>&1; then
    for init in /etc/profile.d/lmod.sh /etc/profile.d/modules.sh \
                /usr/share/lmod/lmod/init/bash /usr/share/modules/init/bash; do
        if [ -r "${init}" ]; then
            . "${init}"
            break
        fi
    done
fi
if type module >/dev/null 2>&1; then
    module load "${MODULES[@]}"
else
    echo "WARNING: no 'module' command on $(hostname); not loading: ${MODULES[*]}" >&2
fi
% else:

# Load the software your program needs here, e.g.:
#
#     module load cuda
% end

# Use as many CPU threads as cores were reserved (1 when run by hand).
export OMP_NUM_THREADS="${SLURM_CPUS_PER_TASK:-1}"

# ===========================================================================
# Your work goes below. Replace the example with your own commands, e.g.
#
#     python3 train.py --epochs 10
#     ./my_cuda_program input.dat
#
# Slurm makes only the job's GPUs visible to it (CUDA_VISIBLE_DEVICES), so
# programs use them without being told which ones. The job's exit code
# (what Slurm reports as success or failure) is the exit code of the LAST
# command. Put the line "set -e" before your commands to stop the job at the
# first command that fails.
# ===========================================================================

echo "Job ${SLURM_JOB_ID:-(not run by Slurm)} started on $(hostname) at $(date)"
echo "Working directory: $(pwd)"
echo "GPUs visible to the job: ${CUDA_VISIBLE_DEVICES:-none reported}"

# Example work: show the job's GPUs with nvidia-smi, NVIDIA's GPU tool.
if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi || echo "nvidia-smi is installed but could not list any GPU."
else
    echo "nvidia-smi is not installed on $(hostname): no NVIDIA driver here" \
         "(or the GPUs are from another vendor, e.g. AMD: try rocm-smi)."
fi
sleep 1

echo "Job finished at $(date)"
