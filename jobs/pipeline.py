"""The whole pipeline: build_dataset -> finetune -> generate -> judge -> stats, resumable.

The same as ``mentalchat pipeline`` (``--help`` lists the options and examples); this file exists
because ``ray job submit -- python jobs/pipeline.py ...`` needs a script to run. The command lives
in :mod:`mentalchat.pipeline.command`.
"""

import sys

from mentalchat.cli import job_main

if __name__ == "__main__":
    sys.exit(job_main("pipeline", prog="jobs/pipeline.py"))
