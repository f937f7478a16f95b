"""Stage 3: answers to the benchmark questions from base models and every fine-tuned adapter
(``jobs/generate.py``); see :func:`mentalchat.generate.run.run_generate`."""
