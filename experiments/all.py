"""Every experiment in one run (one run id, one run.json, one testbed up): outlier, drift, monitoring,
explain, robustness, formats, parity, pipeline verification, and ease of deployment last (it restarts
the testbed). Experiments whose probe module this checkout lacks are listed and left out, and the run
records them under `skipped_experiments`; `--only a,b` picks a subset.

    python experiments/all.py [--platforms ...] [--repeats N] [--seed S] [--only a,b] [--resume RUN-ID]
"""

import argparse
import sys

from testbed.errors import ExperimentError, TestbedError
from testbed.experiment import add_arguments, load_spec, run_experiments

ORDER = ("parity", "pipeline_verify", "formats", "outlier", "drift", "monitoring", "explain", "robustness", "ease")


def main(argv=None) -> int:
    parser = add_arguments(argparse.ArgumentParser(description=__doc__))
    parser.add_argument("--only", help="comma-separated subset of: " + ", ".join(ORDER))
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.only.split(",")] if args.only else list(ORDER)
    specs, skipped = [], {}
    try:
        for name in names:
            spec = load_spec(name)
            try:
                spec.probe_fn()
            except ExperimentError as exc:
                if args.only:
                    raise
                skipped[name] = str(exc)
                print(f"skipping {name}: {exc}", file=sys.stderr)
                continue
            specs.append(spec)
        if not specs:
            raise ExperimentError("all", "no experiment can run in this checkout")
        args.run_id = args.run_id or None
        return run_experiments(specs, args, say=lambda m: print(m, file=sys.stderr, flush=True),
                               extra_header={"skipped_experiments": skipped})
    except TestbedError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted: finished units are kept; resume with --resume RUN-ID", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
