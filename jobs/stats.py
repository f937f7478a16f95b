"""Stage 5: means with bootstrap CIs, gains (paired and mixed-effects), wins, agreement, length control,
judge controls and crisis safety, report.

The same as ``mentalchat stats`` (``--help`` lists the options and examples); this file exists
because ``ray job submit -- python jobs/stats.py ...`` needs a script to run. The command lives
in :mod:`mentalchat.stats.stage`.
"""

import sys

from mentalchat.cli import job_main

if __name__ == "__main__":
    sys.exit(job_main("stats", prog="jobs/stats.py"))
