"""Stage 1: build the counselling QA dataset.

Two paths feed one table in the MentalChat16K schema (``instruction``, ``input``, ``output``):

* interview: transcripts are read (:mod:`.readers`), de-identified (:mod:`.deid`), paraphrased
  by a local LLM into one caregiver question and one coach answer per page (:mod:`.paraphrase`);
* synthetic: patient messages over 33 weighted topics and one counsellor answer each
  (:mod:`.synthetic`), filtered (:mod:`.filters`, :mod:`.dedup`).

:mod:`.build` orchestrates both, runs the crisis audit (:mod:`.crisis`) and writes the tables and
the dataset card (:mod:`.card`) atomically.
"""

from mentalchat.dataset.config import DatasetConfig

__all__ = ["DatasetConfig"]
