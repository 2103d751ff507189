"""The paper's tables reproduced: its numbers, our runs of its rows, the tables and the report.

    python -m dropit.lab.reproduce [--preset quick|paper]     # make reproduce
"""
