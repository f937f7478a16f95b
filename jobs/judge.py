"""Stage 4: score answers with LLM judges (and import human ratings).

The same as ``mentalchat judge`` (``--help`` lists the options and examples); this file exists
because ``ray job submit -- python jobs/judge.py ...`` needs a script to run. The command lives
in :mod:`mentalchat.judge.stage`.
"""

import sys

from mentalchat.cli import job_main

if __name__ == "__main__":
    sys.exit(job_main("judge", prog="jobs/judge.py"))
