"""A human rating study in Label Studio: export (draw and blind), push, pull, import.

The same as ``mentalchat human-study`` (``--help`` lists the options and examples); this file
exists because ``ray job submit -- python jobs/human_study.py ...`` needs a script to run. The
command lives in :mod:`mentalchat.human_study.command`.
"""

import sys

from mentalchat.cli import job_main

if __name__ == "__main__":
    sys.exit(job_main("human-study", prog="jobs/human_study.py"))
