"""The ``lcgee`` command line: the same code the notebooks drive.

    lcgee run PARAMS.yaml [--set key=value]... [--out DIR] [--force] [--debug]
    lcgee params check PARAMS.yaml [--set key=value]...
    lcgee params fields
    lcgee doctor PARAMS.yaml [--set key=value]... [--stac-url URL]
    lcgee evaluate RUN_DIR
    lcgee ee verify RUN_DIR [--region NAME] [--stac-url URL] [--no-chain]
    lcgee ee classify RUN_DIR [--region NAME] [--stac-url URL] [--no-chain]
    lcgee demo build [--seed N] [--size N]
    lcgee demo serve [--seed N] [--size N]

Errors print one paragraph (what, where, fix) and exit with status 2; ``--debug`` adds the
traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import time
import traceback
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from lcgee.errors import LcgeeError
from lcgee.layout import RunLayout
from lcgee.params import field_reference, load_params
from lcgee.procs import Terminated, handle_signals, run_scope
from lcgee.run import demo_endpoint, resolve_params, run
from lcgee.secrets import redact
from lcgee.stage import build_grid

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lcgee", description="Land-cover mapping from Sentinel-2, "
                                "trained locally, classified in Earth Engine.")
    p.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="run the notebook suite on a params file")
    r.add_argument("params", help="params YAML, e.g. params/demo.yaml; 'demo': the shipped demo")
    r.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a field, e.g. --set composite.method=median (repeatable)")
    r.add_argument("--out", help="output directory (default outputs/<name>)")
    r.add_argument("--notebooks", help="notebook directory (default: the checkout's notebooks/, "
                   "else the copy installed with lcgee)")
    r.add_argument("--force", action="store_true", help="rerun stages even if cached")
    r.add_argument("--no-progress", action="store_true", help="no progress bars")
    r.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                   help="show tracebacks and debug logs")

    pa = sub.add_parser("params", help="check params files or list fields")
    psub = pa.add_subparsers(dest="params_command", required=True)
    pc = psub.add_parser("check", help="validate a params file")
    pc.add_argument("params")
    pc.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    psub.add_parser("fields", help="list every field with its default and meaning")

    dr = sub.add_parser("doctor", help="check in seconds what a real run needs (STAC API, "
                        "a signed COG header, cloud source, Earth Engine)")
    dr.add_argument("params")
    dr.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    dr.add_argument("--stac-url", help="check this STAC API instead of stac.url")
    dr.add_argument("--no-ee-login", action="store_true",
                    help="check Earth Engine credentials and project without contacting it")

    evl = sub.add_parser("evaluate", help="rerun the evaluation of a finished run with its saved "
                         "model (block CV, held-out regions, baseline) and update metrics.json")
    evl.add_argument("run_dir", help="a finished run, e.g. outputs/demo")

    e = sub.add_parser("ee", help="Earth Engine export")
    esub = e.add_subparsers(dest="ee_command", required=True)
    ev = esub.add_parser("verify", help="dry run: export the run's model to Earth Engine tree "
                         "strings and a serialized request, evaluate it offline, compare")
    ev.add_argument("run_dir", help="a finished run, e.g. outputs/demo")
    ev.add_argument("--region", help="region to check (default: the first predict region)")
    ec = esub.add_parser("classify", help="dry run, then classify the run in Earth Engine "
                         "(needs ee.project and credentials), compare with the local map and "
                         "build the export tasks (started with ee.start_export: true)")
    ec.add_argument("run_dir", help="a finished run, e.g. outputs/demo")
    ec.add_argument("--region", help="region to compare (default: the first predict region)")
    for cmd in (ev, ec):
        cmd.add_argument("--stac-url", help="STAC API of the run's scenes for the whole-chain "
                         "check (default: stac.url of the run; the demo world is served here)")
        cmd.add_argument("--no-chain", action="store_true", help="skip the whole-chain check "
                         "(it reads the run's scenes again through the STAC API)")

    d = sub.add_parser("demo", help="the embedded demo world")
    dsub = d.add_subparsers(dest="demo_command", required=True)
    for name, text in (("build", "generate the demo world into the cache"),
                       ("serve", "serve it on loopback until Ctrl-C")):
        dp = dsub.add_parser(name, help=text)
        dp.add_argument("--seed", type=int, default=2021)
        dp.add_argument("--size", type=int, default=1536)
    return p


def _cmd_run(args: argparse.Namespace) -> int:
    result = run(args.params, args.overrides, out_dir=args.out,
                 notebooks_dir=Path(args.notebooks) if args.notebooks else None,
                 force=args.force, progress=not args.no_progress)
    for s in result.stages:
        state = "cached" if s.cached else f"{s.seconds:.1f} s"
        print(f"  {s.name:<24} {state}")
    print(f"Done: {result.run_dir}/ (run.json, executed notebooks, artifacts)")
    return 0


def _cmd_params(args: argparse.Namespace) -> int:
    if args.params_command == "fields":
        print(field_reference())
        return 0
    params = load_params(resolve_params(args.params), args.overrides)
    print(f"{args.params}: valid (run '{params.name}', digest {params.digest()[:12]})")
    return 0


def _cmd_doctor(args: argparse.Namespace) -> int:
    from lcgee.doctor import format_checks, run_checks  # heavy: the doctor's readers

    params = load_params(resolve_params(args.params), args.overrides)
    checks = run_checks(params, stac_url=args.stac_url, earth_engine_live=not args.no_ee_login)
    print(redact(format_checks(checks)))
    return 3 if any(c.status == "fail" for c in checks) else 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from lcgee.train_stage import evaluate_run  # heavy: LightGBM, only when it runs

    result = evaluate_run(Path(args.run_dir))
    print(result.block_cv.describe())
    print(result.summary().round(3).to_string())
    print(result.describe_area_adjusted())
    print(f"Updated {RunLayout(Path(args.run_dir)).metrics}")
    return 0


def _cmd_ee(args: argparse.Namespace) -> int:
    from lcgee.ee_stage import dry_run  # heavy: Earth Engine stage

    if args.ee_command == "classify":
        return _ee_classify(Path(args.run_dir), args.region, args)

    with _run_client(Path(args.run_dir), args) as client:
        result = dry_run(Path(args.run_dir), region=args.region, client=client)
    spec = result.spec
    print(f"{spec.n_trees} trees, {spec.payload_bytes() / 1e6:.2f} MB of tree strings, "
          f"route: {result.route}")
    print(result.table.to_string(index=False))
    bad = result.disagreements
    bad += _verify_water(Path(args.run_dir), args.region)
    print("OK: Earth Engine would reproduce the local labels" if bad == 0 else
          f"MISMATCH: {bad} disagreement(s); do not export this model")
    return 0 if bad == 0 else 3


@contextlib.contextmanager
def _run_client(run_dir: Path, args: argparse.Namespace) -> Iterator[Any]:
    """The run's STAC API client, as notebook 07 opens it for the dry run's whole-chain row:
    ``--stac-url``, else the run's ``stac.url``; a demo run's world is served on loopback while
    the block runs. None with ``--no-chain``."""
    if args.no_chain:
        yield None
        return
    from lcgee import search  # heavy: pystac-client, only when the chain row is asked for

    params = load_params(RunLayout(run_dir).params)
    if args.stac_url:
        yield search.open_client(args.stac_url, sign=params.stac.sign)
        return
    with run_scope(), demo_endpoint(params, progress=False) as demo_url:
        yield search.open_client(demo_url or params.stac.url, sign=params.stac.sign)


def _ee_classify(run_dir: Path, region: str | None, args: argparse.Namespace) -> int:
    """The live step of notebook 07: 0 when Earth Engine classified the run, 2 when skipped."""
    from lcgee.ee_stage import classify_in_earth_engine, dry_run  # heavy: Earth Engine stage

    layout = RunLayout(run_dir)
    params = load_params(layout.params)
    with _run_client(run_dir, args) as client:
        dry = dry_run(run_dir, region=region, client=client)
    if dry.disagreements:
        print(f"MISMATCH: {dry.disagreements} disagreement(s) in the dry run; not classifying "
              "with this model (see lcgee ee verify)")
        return 3
    grid = build_grid(params, run_dir)
    result = classify_in_earth_engine(params, grid, dry,
                                      cache_dir=layout.ee_tiles)
    print(redact(result.message))
    if result.export_table is not None:
        print(result.export_table.to_string(index=False))
    return 0 if result.ran else 2


def _verify_water(run_dir: Path, region: str | None) -> int:
    """The water CNN's dry run when notebook 09 made a model: number of failed checks."""
    from lcgee.water_stage import dry_run as water_dry_run  # heavy: JAX, only when it runs

    check = water_dry_run(run_dir, region=region)
    if check is None:
        return 0
    ok = check["max_probability_diff"] <= 1e-5 and check["class_disagreements"] == 0 \
        and check["nodata_agrees"]
    print(f"water CNN graph offline vs local ({check['region']}): {check['pixels']} px, "
          f"max |p_ee - p_local| {check['max_probability_diff']:.2e}, "
          f"{check['class_disagreements']} class disagreement(s), {check['ties']} exact tie(s), "
          f"payload {check['payload_bytes'] / 1e6:.2f} MB")
    return 0 if ok else 1


def _cmd_demo(args: argparse.Namespace) -> int:
    from lcgee.demo.world import WorldSpec, build_world  # heavy: demo world generator

    world = build_world(WorldSpec(seed=args.seed, size=args.size))
    print(f"demo world: {world.root}")
    if args.demo_command == "serve":
        from lcgee.demo.serve import DemoServer  # heavy: demo servers

        with run_scope(), DemoServer(world.root) as srv:
            print(f"STAC API: {srv.stac_url}  files: {srv.files.url if srv.files else ''}")
            if srv.signed:  # imagery reads need a token, like Planetary Computer's
                print(f"to read its imagery from another process: export PC_SDK_SAS_URL="
                      f"{srv.files.sas_url} LCGEE_SIGNED_HOSTS={srv.files.netloc}")
            print("Ctrl-C to stop")
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                pass
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    restore_signals = handle_signals()
    try:
        return _dispatch(args)
    finally:
        restore_signals()


def _dispatch(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    handlers = {"run": _cmd_run, "params": _cmd_params, "demo": _cmd_demo, "ee": _cmd_ee,
                "doctor": _cmd_doctor, "evaluate": _cmd_evaluate}
    try:
        return handlers[args.command](args)
    except LcgeeError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"lcgee: error: {redact(exc.message)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        how = "terminated" if isinstance(exc, Terminated) else "interrupted"
        print(f"lcgee: {how}; finished stages are kept, rerun to resume", file=sys.stderr)
        return 143 if isinstance(exc, Terminated) else 130
    except Exception as exc:
        if args.debug:
            traceback.print_exc()
        print(f"lcgee: unexpected error: {type(exc).__name__}: {redact(str(exc))}. "
              "Rerun with --debug for the traceback and report it.", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
