"""False alarms on an execution provider: the fault measurement's random valid networks, checked as they are.

Each network is `nnspec.faults.random_spec` of seeds [2026, i] (the networks of tests/test_faults.py: half
chains of dense and activation layers, half graph networks of every other layer type; float32 and float64), a
fresh export checked by `nnspec.check(..., provider=P)`. On the CPU every one passes (the fault measurement's
rule); on another provider a failure is either a false alarm of the check or the provider computing something
other than the spec's arithmetic, and the first divergence (the layer that differs from its own inputs) says
which operator. Prints passes and failures per dtype, failures by the diverging layer's type and activation,
and the first few failing networks.

    python benchmarks/bench_provider.py --provider cuda --networks 2000   # needs onnxruntime-gpu and a GPU
    python benchmarks/bench_provider.py --networks 200                   # the CPU, as a baseline
"""

from __future__ import annotations

import argparse
import time
from collections import Counter

import numpy as np

import nnspec
from nnspec.faults import random_spec

SEED = 2026  # tests/test_faults.py's


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--provider", default="cpu", help="cpu or cuda")
    parser.add_argument("--networks", type=int, default=200)
    parser.add_argument("--show", type=int, default=5, help="failing networks to print in full")
    args = parser.parse_args()
    verdicts: Counter[tuple[str, str]] = Counter()
    where: Counter[tuple[str, str, str]] = Counter()
    shown, start = 0, time.perf_counter()
    for i in range(args.networks):
        spec = nnspec.from_dict(random_spec(np.random.default_rng([SEED, i])))
        report = nnspec.check(spec, provider=args.provider)
        verdicts[(spec.dtype, "pass" if report.passed else "FAIL")] += 1
        if report.passed:
            continue
        layer = (report.divergence or {}).get("layer")
        node = nnspec.graph(spec).node(layer) if layer else None
        activation = node.activation.name if node is not None and node.activation is not None else ""
        where[(spec.dtype, node.op if node is not None else "(end to end only)", activation)] += 1
        if shown < args.show:
            shown += 1
            print(f"===== network [{SEED}, {i}]\n{report}\n")
    took = time.perf_counter() - start
    print(f"{args.networks} random networks checked on the {args.provider} provider in {took:.0f} s")
    for (dtype, verdict), count in sorted(verdicts.items()):
        print(f"  {dtype:8} {verdict:5} {count}")
    if where:
        print("failures by the first layer that diverges from its own inputs (dtype, type, activation):")
        for (dtype, op, activation), count in where.most_common():
            print(f"  {count:5}  {dtype} {op} {activation}")


if __name__ == "__main__":
    main()
