"""Stage 3: answer the benchmark questions with base models and every fine-tuned adapter.

The same as ``mentalchat generate`` (``--help`` lists the options and examples); this file exists
because ``ray job submit -- python jobs/generate.py ...`` needs a script to run. The command lives
in :mod:`mentalchat.generate.stage`.
"""

import sys

from mentalchat.cli import job_main

if __name__ == "__main__":
    sys.exit(job_main("generate", prog="jobs/generate.py"))
