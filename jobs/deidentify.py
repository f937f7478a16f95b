"""De-identify a JSONL file or a transcript folder with the dataset builder's de-identifier (an audit).

The same as ``mentalchat deidentify`` (``--help`` lists the options and examples); this file exists
because ``ray job submit -- python jobs/deidentify.py ...`` needs a script to run. The command lives
in :mod:`mentalchat.dataset.deid_command`.
"""

import sys

from mentalchat.cli import job_main

if __name__ == "__main__":
    sys.exit(job_main("deidentify", prog="jobs/deidentify.py"))
