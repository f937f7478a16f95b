"""Answers and judgments as Inspect AI eval logs (``inspect view --log-dir DIR`` browses them).

The same as ``mentalchat inspect-logs`` (``--help`` lists the options); this file exists because
``ray job submit -- python jobs/inspect_logs.py ...`` needs a script to run. The command lives in
:mod:`mentalchat.core.inspect_command`.
"""

import sys

from mentalchat.cli import job_main

if __name__ == "__main__":
    sys.exit(job_main("inspect-logs", prog="jobs/inspect_logs.py"))
