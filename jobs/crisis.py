"""Flag crisis disclosures in a JSONL file, or check counsellor answers for escalation.

The same as ``mentalchat crisis`` (``--help`` lists the options and examples); this file exists
because ``ray job submit -- python jobs/crisis.py ...`` needs a script to run. The command lives in
:mod:`mentalchat.safety.command`.
"""

import sys

from mentalchat.cli import job_main

if __name__ == "__main__":
    sys.exit(job_main("crisis", prog="jobs/crisis.py"))
