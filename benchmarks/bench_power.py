"""Does the parameter test (nnspec.power) catch one changed weight in wide float32 layers, and only then?

Random MLPs of 2 to 4 dense layers, 600 and 1024 wide (tanh, relu, gelu, sigmoid, elu, softplus; glorot or he
weights, small normal biases), and CNNs of three 3x3 convolutions (32 -> 64 -> 128 -> 64 channels on 16x16
images; relu or tanh), exported by nnspec and run by onnxruntime with every pre-activation exposed, on the
check's own inputs but the edge rows (seeded batches of 1, 7 and 64 rows: 72; the check leaves the edge rows
out of this test) plus extra random rows (nnspec.inputs.random_cases): the first none, 128, 256, 384 or 1024 of
the check's extra batch and its spare for every layer, or as the check does (`power_rows`): 512 rows for an MLP,
and the spare 512 for a layer whose rows are tested two by two.

  - faults: in each layer, its largest weight multiplied by 1.001 and by 1.00001, written into the
    initializer or applied by an inserted Mul by a mask; caught means the test flags that layer, located
    means the worst finding names that very weight; per number of extra rows.
  - false alarms: clean exports and files with every weight moved by one ulp (up, away from zero, or in a
    random direction), for the largest |z| seen against the threshold.
  - time: test_layers against one bare onnxruntime forward pass over the same rows.

    python benchmarks/bench_power.py           # 18 faulty MLPs and 2 CNNs, 100 clean MLPs (200 models)
    python benchmarks/bench_power.py --quick   # 6 + 1 and 12
"""

from __future__ import annotations

import argparse
import datetime
import math
import platform
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import compare, fmt_time, print_table  # noqa: E402

import nnspec  # noqa: E402
from nnspec import power  # noqa: E402
from nnspec.inputs import random_cases  # noqa: E402
from nnspec.onnxio.export import to_bytes  # noqa: E402
from nnspec.onnxio.model import with_outputs  # noqa: E402
from nnspec.onnxio.tamper import moved_one_ulp, scaled_entry  # noqa: E402
from nnspec.runners import OnnxRuntimeRunner  # noqa: E402

ACTIVATIONS = ("tanh", "relu", "gelu", "sigmoid", "elu", "softplus")
FACTORS = (1.001, 1.00001)
WAYS = ("initializer", "Mul by a mask")


def network(seed: int, rng: np.random.Generator) -> nnspec.Spec:
    """2 to 4 dense layers of 600 or 1024 units on 600 or 1024 inputs, one activation throughout."""
    act = ACTIVATIONS[seed % len(ACTIVATIONS)]
    widths = [int(rng.choice([600, 1024])) for _ in range(int(rng.integers(3, 6)))]
    init = ("glorot_uniform", "he_normal")[seed // 4 % 2]
    layers = [
        {
            "type": "dense",
            "name": f"l{i}",
            "units": units,
            "activation": act,
            "weights": {"init": init, "seed": 1000 * seed + i},
            "bias": {"init": "normal", "seed": 1000 * seed + 500 + i},
        }
        for i, units in enumerate(widths[1:])
    ]
    return nnspec.from_dict(
        {
            "format": "nnspec/1",
            "name": f"{act}_{seed}",
            "inputs": [{"name": "x", "shape": [widths[0]]}],
            "layers": layers,
        }
    )


def conv_network(seed: int) -> nnspec.Spec:
    """Three 3x3 convolutions ('same', 32 -> 64 -> 128 -> 64 channels on 16x16 images: 288 to 1152 inputs per
    output position), relu or tanh, he or glorot weights."""
    act = ("relu", "tanh")[seed % 2]
    init = ("he_normal", "glorot_uniform")[seed % 2]
    layers = [
        {
            "type": "conv2d",
            "name": f"c{i}",
            "filters": filters,
            "kernel_size": 3,
            "padding": "same",
            "activation": act,
            "weights": {"init": init, "seed": 7000 + 10 * seed + i},
            "bias": {"init": "normal", "seed": 7500 + 10 * seed + i},
        }
        for i, filters in enumerate((64, 128, 64))
    ]
    return nnspec.from_dict(
        {"format": "nnspec/1", "name": f"cnn_{act}_{seed}", "inputs": [{"name": "img", "shape": [32, 16, 16]}],
         "layers": layers}
    )  # fmt: skip


def traced(graph: nnspec.ir.Graph, model: onnx.ModelProto) -> OnnxRuntimeRunner:
    names = [n.name for n in graph.nodes] + [p for n in graph.nodes if (p := power.pre_activation_name(n))]
    return OnnxRuntimeRunner(with_outputs(to_bytes(model), names))


def runs(graph: nnspec.ir.Graph, model: onnx.ModelProto, extra: int, seed: int) -> list[dict[str, np.ndarray]]:
    """The traced model's values on the check's cases but the edge batch (the check leaves it out of this test),
    then on one batch of `extra` rows and on its spare batch (`random_cases(..., part=1)`), as the check draws
    them (last two)."""
    runner = traced(graph, model)
    cases = [c.feeds for c in random_cases(graph, seed=seed) if not c.edges]
    if extra:
        for part in (0, 1):
            (batch,) = random_cases(graph, seed=seed, batch_sizes=(extra,), edges=False, single=True, part=part)
            cases.append(batch.feeds)
    return [{**feeds, **runner.run(feeds)} for feeds in cases]


def as_the_check(graph: nnspec.ir.Graph, values: list[dict[str, np.ndarray]]) -> tuple[dict, dict]:
    """(samples, spare) as the check hands them to `test_layers`, from `runs`: the spare batch for the layers
    tested two by two."""
    *base, first, second = values
    return power.collect_samples(graph, [*base, first]), power.collect_samples(graph, [second])


def joined(values: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
    """`runs` with its extra batch and the spare joined into one extra batch (the sweep's rows)."""
    *base, first, second = values
    return [*base, {k: np.concatenate([first[k], second[k]]) for k in first}]


def first_rows(values: list[dict[str, np.ndarray]], extra: int) -> list[dict[str, np.ndarray]]:
    """The runs with only the first `extra` rows of the last (extra) batch."""
    *base, last = values
    return base + ([{k: v[:extra] for k, v in last.items()}] if extra else [])


SWEEP = (0, 128, 256, 384, "power_rows", 1024)  # extra rows for every layer; "power_rows": as the check does
RAW_NETWORKS = 40  # clean networks also tested with no ulp tolerance (the statistic's own null tail)


def fault_table(count: int, convs: int) -> None:
    rng = np.random.default_rng(1)
    # (layers, factor, way, extra) -> [caught, located, faults, largest relative error of the estimated factor]
    tally: dict[tuple[str, float, str, int | str], list[float]] = {}
    missed: list[str] = []  # at power_rows
    specs = [network(seed, rng) for seed in range(count)] + [conv_network(seed) for seed in range(convs)]
    for seed, spec in enumerate(specs):
        graph = nnspec.graph(spec)
        model = nnspec.to_onnx(spec)
        most = power.power_rows(graph)
        tests = sum(power.count_tests(n) for n in graph.nodes)  # the threshold of a check of the whole network
        for node in graph.nodes:
            weights = node.params["weights"]
            index = tuple(int(i) for i in np.unravel_index(np.argmax(np.abs(weights)), weights.shape))
            for factor in FACTORS:
                for way in WAYS:
                    faulty = scaled_entry(model, f"{node.name}.weights", index, factor, way)
                    values = runs(graph, faulty, most, seed)
                    for extra in SWEEP:
                        if extra == "power_rows":
                            found, spare = as_the_check(graph, values)
                        else:
                            found, spare = power.collect_samples(graph, first_rows(joined(values), extra)), {}
                        mine = power.test_layers(graph, {node.name: found[node.name]}, "ort", tests=tests, spare=spare)[
                            0
                        ]
                        worst = mine.worst
                        located = worst is not None and worst.param == "weights" and worst.index == index
                        error = abs(worst.ratio - factor) / (factor - 1) if located else 0.0
                        row = tally.setdefault((node.op, factor, way, extra), [0, 0, 0, 0.0])
                        row[0] += not mine.passed
                        row[1] += located
                        row[2] += 1
                        row[3] = max(row[3], error)
                        if extra == "power_rows" and way == WAYS[0] and not located:
                            missed.append(
                                f"x{factor:g} in {spec.name} {node.name} ({math.prod(weights.shape[1:])} inputs): "
                                f"{'caught elsewhere' if not mine.passed else 'missed'}, "
                                f"{mine.blind / max(mine.tested, 1):.0%} of the layer's parameters blind"
                            )
        print(f"# faults: network {seed + 1}/{len(specs)} done", file=sys.stderr, flush=True)
    rows = [
        [op, f"x{factor:g}", way, str(extra), f"{c}/{n}", f"{n - c}", f"{loc}/{n}", f"{err:.2f}"]
        for (op, factor, way, extra), (c, loc, n, err) in sorted(
            tally.items(), key=lambda kv: (kv[0][0], -kv[0][1], kv[0][2], SWEEP.index(kv[0][3]))
        )
    ]
    header = [
        "layers",
        "fault",
        "written as",
        "extra rows",
        "caught",
        "missed",
        "located",
        "max error of the factor's change",
    ]
    print_table(header, rows)
    print("\nnot located with power_rows (initializer; the Mul runs alike):")
    for line in missed or ["none"]:
        print(f"  {line}")
    print()


def false_alarm_table(count: int) -> None:
    rng = np.random.default_rng(2)
    # kind -> [models, flagged, largest z (tolerance 1 ulp), largest raw |z| (tolerance 0, clean only)]
    tally: dict[str, list[float]] = {}
    thresholds = []
    for seed in range(count):
        spec = network(10_000 + seed, rng)
        graph = nnspec.graph(spec)
        model = nnspec.to_onnx(spec)
        how = ("up", "away", "random")[seed % 3]
        for kind, candidate in (("clean", model), (f"one ulp {how}", moved_one_ulp(model, how, seed))):
            samples, spare = as_the_check(graph, runs(graph, candidate, power.power_rows(graph), seed))
            results = power.test_layers(graph, samples, "ort", spare=spare)
            row = tally.setdefault(kind, [0, 0, 0.0, 0.0])
            row[0] += 1
            row[1] += any(not r.passed for r in results)
            row[2] = max(row[2], max(r.max_abs_z for r in results))
            if kind == "clean" and seed < RAW_NETWORKS:
                raw = power.test_layers(graph, samples, "ort", tolerated_ulps=0, spare=spare)
                row[3] = max(row[3], max(r.max_abs_z for r in raw))
            thresholds.append(results[0].threshold)
        if (seed + 1) % 20 == 0:
            print(f"# false alarms: {seed + 1}/{count} networks done", file=sys.stderr, flush=True)
    rows = [
        [kind, str(n), str(f), f"{z:.2f}", f"{raw:.2f}" if kind == "clean" else "-"]
        for kind, (n, f, z, raw) in tally.items()
    ]
    print_table(
        [
            "models",
            "count",
            "flagged",
            "largest z (tolerance applied where z > t without it)",
            f"largest z, no ulp tolerance (first {RAW_NETWORKS})",
        ],
        rows,
    )
    print(
        f"\nthreshold t = sqrt(2 ln(2M/alpha)), alpha = {power.ALPHA:g}: "
        f"{min(thresholds):.2f} to {max(thresholds):.2f}\n"
    )


def timing(repeats: int) -> None:
    rows = []
    for width, depth in ((1024, 4), (600, 3)):
        layers = [
            {
                "type": "dense",
                "name": f"l{i}",
                "units": width,
                "activation": "tanh",
                "weights": {"init": "glorot_uniform", "seed": i},
                "bias": {"init": "normal", "seed": 50 + i},
            }
            for i in range(depth)
        ]
        spec = nnspec.from_dict(
            {"format": "nnspec/1", "name": "t", "inputs": [{"name": "x", "shape": [width]}], "layers": layers}
        )
        graph = nnspec.graph(spec)
        model = nnspec.to_onnx(spec)
        first, second = (
            random_cases(graph, batch_sizes=(power.power_rows(graph),), edges=False, single=True, part=part)[0].feeds
            for part in (0, 1)
        )
        samples, spare = as_the_check(graph, runs(graph, model, power.power_rows(graph), 0))
        # the rows the check runs through the traced model for this test: the second half only where it is taken
        cases = [c.feeds for c in random_cases(graph) if not c.edges] + [first]
        asked: list[bool] = []  # whether some layer takes the second half (then the check runs it)
        power.test_layers(graph, samples, "ort", spare=lambda: asked.append(True) or spare)
        cases += [second] if asked else []
        bare = onnxruntime.InferenceSession(to_bytes(model), providers=["CPUExecutionProvider"])
        runner = traced(graph, model)
        timings = compare(
            {
                "forward": lambda b=bare, cs=cases: [b.run(None, dict(c)) for c in cs],
                "traced forward": lambda r=runner, cs=cases: [r.run(c) for c in cs],
                "test_layers": lambda g=graph, s=samples, sp=spare: power.test_layers(g, s, "ort", spare=sp),
            },
            repeats=repeats,
        )
        base = timings["forward"].median
        rows.append(
            [f"tanh {width} x {depth}", str(sum(len(next(iter(c.values()))) for c in cases))]
            + [f"{fmt_time(timings[k].median)} ({timings[k].median / base:.1f}x)" for k in timings]
        )
    print_table(["network", "rows", "bare forward", "traced forward", "test_layers"], rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer networks and repeats")
    parser.add_argument("--faulty", type=int, help="MLPs with faults (default 18, --quick 6)")
    parser.add_argument("--convs", type=int, help="CNNs with faults (default 2, --quick 1)")
    parser.add_argument("--clean", type=int, help="clean networks, each also with every weight moved by one ulp")
    parser.add_argument("--only", choices=("faults", "false-alarms", "time"), help="one table only")
    args = parser.parse_args()
    faulty = args.faulty if args.faulty is not None else (6 if args.quick else 18)
    convs = args.convs if args.convs is not None else (1 if args.quick else 2)
    clean = args.clean if args.clean is not None else (12 if args.quick else 100)
    print(
        f"# bench_power  {datetime.date.today()}  python {platform.python_version()}  numpy {np.__version__}  "
        f"onnxruntime {onnxruntime.__version__}  nnspec {nnspec.__version__}\n"
    )
    start = time.perf_counter()
    if args.only in (None, "faults"):
        fault_table(faulty, convs)
    if args.only in (None, "false-alarms"):
        false_alarm_table(clean)
    if args.only in (None, "time"):
        timing(3 if args.quick else 5)
    print(f"\n# {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
