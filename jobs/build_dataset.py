"""Stage 1: build the counselling QA dataset from interview transcripts and/or synthetic calls.

The same as ``mentalchat dataset`` (``--help`` lists the options and examples); this file exists
because ``ray job submit -- python jobs/build_dataset.py ...`` needs a script to run. The command lives
in :mod:`mentalchat.dataset.stage`.
"""

import sys

from mentalchat.cli import job_main

if __name__ == "__main__":
    sys.exit(job_main("dataset", prog="jobs/build_dataset.py"))
