"""The peer: one containerized command submitted with submitit, as a researcher would.

    PEER_PYTHON bench/peer_submitit.py FOLDER IMAGE   # prints the job id

Run by bench/run.py in a fresh process per submission, with the bench's own
environment's Python (submitit is not a dependency of slurmc). The job is held
(``--hold``), like slurmc's in the same section, and cancelled by the bench.
"""

import sys

from submitit import AutoExecutor, helpers

folder, image = sys.argv[1], sys.argv[2]
executor = AutoExecutor(folder=folder, cluster="slurm")
executor.update_parameters(
    slurm_partition="small", timeout_min=10, slurm_additional_parameters={"hold": True}
)
job = executor.submit(helpers.CommandFunction(["ch-run", image, "--", "echo", "hi"]))
print(job.job_id)
