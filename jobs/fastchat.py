"""Convert between FastChat llm_judge files and mentalchat's Parquet tables.

The same as ``mentalchat fastchat`` (``--help`` lists the options and examples); this file exists
because ``ray job submit -- python jobs/fastchat.py ...`` needs a script to run. The command lives
in :mod:`mentalchat.core.fastchat_command`.
"""

import sys

from mentalchat.cli import job_main

if __name__ == "__main__":
    sys.exit(job_main("fastchat", prog="jobs/fastchat.py"))
