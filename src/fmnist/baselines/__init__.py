"""The README's 2017 scikit-learn baselines, run on today's scikit-learn, and the results dashboard.

Data flows one way: ``grid`` (the 143 configurations of ``baselines.json``) -> ``estimators``
(today's scikit-learn objects) -> ``runner`` (plans the run, resumes it, runs jobs ``n`` at a time
here or on Dask) -> ``job`` (one child process under operating-system limits, ``worker`` inside
it) -> ``results`` (the JSONL table, shared with the CNN benchmark's rows) -> ``report`` (one
offline HTML page). ``cli`` is ``fmnist bench sklearn | report | add | estimate``. Beside them:
``published`` (the paper's Table 3, what ``--best`` runs and the report compares with),
``additions.json`` (today's rows, ``--additions``), ``machine`` (the CPU line each row records),
``estimate`` (the full grid's CPU time scaled from a quick pass). Nothing here imports
scikit-learn at import time.
"""
