"""Policy iteration: run a labelled example set through the classifier and score the answers.

    ../datasets.py   files -> Example values (also used by `policy lint`)
    endpoint.py      which policy and which classifier endpoint a command uses
    runner.py        examples -> ItemResult values: cache first, a fixed pool of workers
    cache.py         answers on disk, keyed by (policy digest, classifier input, model, effort)
    results.py       ItemResult: a Prediction or a Failure, never both
    scoring.py       results -> Summary (pure)
    compare.py       two runs -> metric deltas and flipped verdicts (pure)
    runs.py          EvalRun: a run's provenance, items and summary
    report.py        runs -> report.md (pure)
    export.py        runs -> results.jsonl rows and summary.json (pure)
    terminal.py      runs -> rich tables and the progress bar
    artifacts.py     the output directory on disk
"""
