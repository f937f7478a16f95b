"""Stage 2: QLoRA fine-tuning on Ray Train, one Ray Tune experiment over models x data configurations.

The same as ``mentalchat finetune`` (``--help`` lists the options and examples); this file exists
because ``ray job submit -- python jobs/finetune.py ...`` needs a script to run. The command lives
in :mod:`mentalchat.finetune.stage`.
"""

import sys

from mentalchat.cli import job_main

if __name__ == "__main__":
    sys.exit(job_main("finetune", prog="jobs/finetune.py"))
