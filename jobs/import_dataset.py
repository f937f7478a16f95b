"""Import MentalChat16K-format files (the released CSVs, or CSV/JSONL/Parquet with instruction, input,
output) as a ``qa_pairs`` dataset folder with a card.

The same as ``mentalchat import-dataset`` (``--help`` lists the options and examples); this file exists
because ``ray job submit -- python jobs/import_dataset.py ...`` needs a script to run. The command lives
in :mod:`mentalchat.dataset.import_command`.
"""

import sys

from mentalchat.cli import job_main

if __name__ == "__main__":
    sys.exit(job_main("import-dataset", prog="jobs/import_dataset.py"))
