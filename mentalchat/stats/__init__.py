"""Stage 5: means with bootstrap CIs, gains over base models, win tables, inter-rater agreement
and the report (``jobs/stats.py``); see :func:`mentalchat.stats.run.run_stats`."""
