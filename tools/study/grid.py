"""launch/study.sh's command line: the options, the grid's axes and its points.

A grid is a dict {axis: values}: an axis is a tuple of canonical keys that vary together (one key,
or several joined by '+' on the command line), its values a list of tuples of strings, one string a
key. The points are the grid's product in the axes' order, the last axis varying fastest.
"""
import configparser
import itertools
import os
import re
import sys

# Short names for config keys; micro_batches (m) is the harness's own key, not a config key.
ALIASES = {"dp": "parallel.dp", "pp": "parallel.pp", "schedule": "parallel.schedule",
           "virtual": "parallel.virtual", "layers": "model.layers", "micro_batches": "micro_batches",
           "train.micro_batches": "micro_batches", "m": "micro_batches"}


def usage_error(message):
    """Prints message as launch/study.sh's and exits 2 (a bad command line)."""
    print(f"launch/study.sh: {message}", file=sys.stderr)
    sys.exit(2)


def canonical(key):
    """key as section.key (aliases resolved), or micro_batches; a bad command line otherwise."""
    key = key.strip()
    key = ALIASES.get(key, key)
    if key != "micro_batches" and "." not in key:
        usage_error(f"grid key '{key}': give section.key (or dp, pp, schedule, virtual, layers, micro_batches)")
    return key


def add_axis(grid, key, text):
    """Adds KEY=V1,V2,... (linked keys: K1+K2=a:b,c:d) to grid, replacing the axes that share a key."""
    keys = tuple(canonical(k) for k in key.split("+"))
    values = [tuple(x.strip() for x in v.split(":")) for v in text.split(",") if v.strip()]
    if not values:
        usage_error(f"grid key {key}: no values")
    if any(len(v) != len(keys) for v in values):
        usage_error(f"grid key {key}: every value needs {len(keys)} part(s) joined by ':'")
    for old in [axis for axis in grid if set(axis) & set(keys)]:
        del grid[old]
    grid[keys] = values


def read_grid_file(grid, path):
    """Adds a grid file's axes to grid: INI, keys of [grid] as written, other sections' as section.key
    (a file without a section header is all [grid]), values comma-separated."""
    if not os.path.isfile(path):
        usage_error(f"--grid-file {path}: no such file")
    parser = configparser.ConfigParser(interpolation=None, strict=False, delimiters=("=",))
    parser.optionxform = str
    with open(path) as f:
        text = f.read()
    parser.read_string(text if text.lstrip().startswith("[") else "[grid]\n" + text)
    for section in parser.sections():
        for key, values in parser.items(section):
            add_axis(grid, key if section == "grid" else f"{section}.{key}", values)


def parse_args(argv, usage_path):
    """launch/study.sh's arguments as (opts, grid, overrides, mpirun_args); --help prints the comment
    at the top of usage_path (launch/study.sh) and exits 0, a bad command line exits 2.

    opts: config, out, warmup, peak_gflops, point_timeout, plots, repeat. overrides: {key: value}
    for every point (one-value grid keys included, the grid's own keys left out)."""
    opts = {"config": None, "out": "runs/study", "warmup": 2, "peak_gflops": None, "point_timeout": 0.0,
            "plots": True, "repeat": 1}
    grid, overrides, mpirun_args = {}, {}, []
    i = 0

    def value(name):
        nonlocal i
        arg = argv[i]
        if "=" in arg:
            return arg.split("=", 1)[1]
        if i + 1 >= len(argv):
            usage_error(f"{name} needs a value")
        i += 1
        return argv[i]

    while i < len(argv):
        arg = argv[i]
        name = arg.split("=", 1)[0]
        if arg == "--":
            mpirun_args = argv[i + 1:]
            break
        elif name == "--config":
            opts["config"] = value(name)
        elif name == "--out":
            opts["out"] = value(name)
        elif name == "--warmup":
            opts["warmup"] = int(value(name))
        elif name == "--peak-gflops":
            opts["peak_gflops"] = float(value(name))
        elif name == "--point-timeout":
            opts["point_timeout"] = float(value(name))
        elif name == "--repeat":
            opts["repeat"] = int(value(name))
            if opts["repeat"] < 1:
                usage_error("--repeat needs a count >= 1")
        elif name == "--no-plots":
            opts["plots"] = False
        elif name == "--grid":
            text = value(name)  # --grid KEY=V,... or --grid=KEY=V,...
            if "=" not in text:
                usage_error(f"--grid KEY=V1,V2,...: got '{text}'")
            add_axis(grid, *text.split("=", 1))
        elif name == "--grid-file":
            read_grid_file(grid, value(name))
        elif arg.startswith("--") and ("." in name or name[2:] in ALIASES):
            if "=" in arg:
                key, val = arg[2:].split("=", 1)
            elif i + 1 < len(argv):
                key, val = arg[2:], argv[i + 1]
                i += 1
            else:
                usage_error(f"{arg} needs a value")
            overrides[canonical(key)] = val
        elif arg in ("-h", "--help"):
            with open(usage_path) as f:
                print(f.read().split("set -euo")[0])
            sys.exit(0)
        else:
            usage_error(f"unknown option {arg}")
        i += 1
    if not opts["config"] or not os.path.isfile(opts["config"]):
        usage_error("--config FILE (readable) is required")
    if not grid:
        usage_error("give at least one --grid KEY=V1,V2,... or --grid-file FILE")
    for axis in list(grid):  # one value: a fixed setting
        if len(grid[axis]) == 1:
            overrides.update(zip(axis, grid.pop(axis)[0]))
    if not grid:
        usage_error("every grid key has one value: nothing to sweep")
    for axis in grid:
        for key in axis:
            overrides.pop(key, None)  # the grid wins
    sources = [k for axis in grid for k in axis] + list(overrides)
    if "micro_batches" in sources and "train.global_batch" in sources:
        usage_error("micro_batches sets train.global_batch: give one of them")
    return opts, grid, overrides, mpirun_args


def grid_keys(grid):
    """Every key of the grid, in the axes' order."""
    return [k for axis in grid for k in axis]


def points(grid):
    """The grid's points, {key: value} each, in order, the last axis varying fastest."""
    axes = list(grid)
    return [{k: v for axis, values in zip(axes, combo) for k, v in zip(axis, values)}
            for combo in itertools.product(*(grid[axis] for axis in axes))]


def short_name(index, point):
    """The point's directory name: its index and its values, e.g. 03_pp2_m4."""
    parts = []
    for key, val in point.items():
        label = {"micro_batches": "m"}.get(key, key.split(".")[-1])
        joined = f"{label}{val}" if re.fullmatch(r"[0-9.]+", val) else f"{label}-{val}"
        parts.append(re.sub(r"[^A-Za-z0-9_.-]", "_", joined))
    return f"{index:02d}_" + "_".join(parts)
