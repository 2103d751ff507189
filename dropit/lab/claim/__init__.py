"""The paper's accuracy claim, tested: paired runs of plain and DropIT arms, their statistics, the mechanism.

    python -m dropit.lab.claim --out results/claim --protocol cnn --seeds 3

Modules: :mod:`~dropit.lab.claim.protocols` (the recipes and the arms),
:mod:`~dropit.lab.claim.study` (runs, resume, the summary ``claim.json``),
:mod:`~dropit.lab.claim.summary` (claim.json: per-arm statistics and the paired differences of
:mod:`dropit.lab.stats`),
:mod:`~dropit.lab.claim.mechanism` (gradient noise and DropIT's bias against an exact gradient),
:mod:`~dropit.lab.claim.figures` (plotly figures for the notebook),
:mod:`~dropit.lab.claim.markdown` (the table beside the paper's numbers, for the README and tables.md). See docs/claim.md.
"""
