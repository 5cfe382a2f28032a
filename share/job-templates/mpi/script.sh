#!/bin/bash
#
# MPI job: starts many copies ("tasks", or MPI ranks) of a program over one
# or more compute nodes; the copies work together by passing messages.
#
# How this file works
# -------------------
# Lines starting with "#SBATCH" are instructions for Slurm, the scheduler.
# bash treats them as comments; sbatch reads them when the job is submitted,
# but only those ABOVE the first real command, so keep them together here.
# To switch one off, add a second "#" in front: "##SBATCH ...".
#
# The number of nodes and tasks and the resources (partition, time limit,
# memory, account) are not set here: they are asked each time you submit and
# passed to sbatch on its command line, where they override any "#SBATCH"
# line with the same option.
# (Submitting by hand instead? Add lines such as "#SBATCH --nodes=2" and
# "#SBATCH --ntasks=64".)
#
# The script itself runs once, on the first node of the job; the launcher
# (srun or mpirun, below) starts the program's tasks on all the nodes.

# Run the job in this directory. It must exist when the job starts, and be
# on a file system that every node sees (e.g. your home directory).
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
# The output of all tasks ends up in this one file.
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
#     module load gcc openmpi
% end

echo "Job ${SLURM_JOB_ID:-(not run by Slurm)} started on $(hostname) at $(date)"
echo "Working directory: $(pwd)"
echo "Nodes: ${SLURM_JOB_NODELIST:-$(hostname)}; tasks: ${SLURM_NTASKS:-1}"

# ===========================================================================
# Your work goes below.
#
% if launcher == "mpirun":
# "mpirun" (from your MPI library) starts one copy of the program per task;
# it learns the nodes and the number of tasks from Slurm. For example:
#
#     mpirun -np "${SLURM_NTASKS}" ./my_mpi_program input.dat
% else:
# "srun" starts one copy of the program per task on the job's nodes, and
# tells each copy its rank; MPI libraries built for Slurm pick this up.
# Some sites need an extra option such as "srun --mpi=pmix". For example:
#
#     srun ./my_mpi_program input.dat
% end
#
# The job's exit code (what Slurm reports as success or failure) is the
# exit code of the LAST command.
# ===========================================================================
% if program:

PROGRAM={{q(program)}}
PROGRAM_ARGS=({{" ".join(q(a) for a in program_args.split())}})

if ! command -v "${PROGRAM}" >/dev/null 2>&1; then
    echo "ERROR: cannot find the MPI program ${PROGRAM} (looked in $(pwd)" \
         "and on PATH). Check its name, or load its module above." >&2
    exit 1
fi
% if launcher == "mpirun":

if command -v mpirun >/dev/null 2>&1; then
    mpirun -np "${SLURM_NTASKS:-1}" "${PROGRAM}" "${PROGRAM_ARGS[@]}"
else
    echo "ERROR: mpirun not found. Load your MPI library's module above." >&2
    exit 1
fi
% else:

if [ -n "${SLURM_JOB_ID:-}" ] && command -v srun >/dev/null 2>&1; then
    srun "${PROGRAM}" "${PROGRAM_ARGS[@]}"
else
    echo "Not running inside a Slurm job: starting a single copy directly."
    "${PROGRAM}" "${PROGRAM_ARGS[@]}"
fi
% end
% else:

# Example work (no MPI program was chosen): start one small shell per task,
# each saying where it runs. Replace this with your own program.
if [ -n "${SLURM_JOB_ID:-}" ] && command -v srun >/dev/null 2>&1; then
    srun bash -c 'echo "Task ${SLURM_PROCID} of ${SLURM_NTASKS} on $(hostname)"' \
        || echo "srun could not start the example tasks (see the message above)."
else
    echo "Not running inside a Slurm job (or srun is missing): one example task here."
    echo "Task 0 of 1 on $(hostname)"
fi
sleep 1
echo "Job finished at $(date)"
% end
