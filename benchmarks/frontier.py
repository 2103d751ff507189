"""The memory/speed frontier: DropIT, its lossy companions and activation checkpointing against the plain model.

    python benchmarks/frontier.py                          # CIFAR ResNet-18 and ViT-B/16, CPU, about 20 minutes
    python benchmarks/frontier.py --models tiny --rounds 2  # a narrow ResNet, a minute (the test)
    python benchmarks/frontier.py --json results/memory/frontier.json   # for the memory notebook and the report
    python benchmarks/frontier.py --compiled --json results/memory/frontier_compiled.json  # torch.compile'd rows,
                                                           # against the compiler's memory budget
    python benchmarks/frontier.py --models tiny --rounds 1 --configs "compiled plain,compiled budget 0.0,DropIT"

What is measured and how: :mod:`dropit.lab.measure.frontier`.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from dropit.lab.measure.frontier import main  # noqa: E402

if __name__ == "__main__":
    main()
