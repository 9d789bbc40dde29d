"""``ganpipe``: run the pipeline, validate data, sample, export and compute FID from the command line.

Exit codes (documented in the README):
  0  success (for ``run``: the model passed every gate and was registered)
  1  internal error (a bug or an environment problem; the message says which)
  2  bad input: unknown option or value, missing file, bad params.yaml field, unreadable data
  3  data validation failed (Great Expectations report written; nothing trained)
  4  quality gate rejected the model (nothing registered)
  5  training diverged after the allowed rollbacks (nothing registered)
  6  the ONNX export does not reproduce PyTorch's output (nothing registered)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path
from typing import Callable

EXIT_OK, EXIT_INTERNAL, EXIT_BAD_INPUT, EXIT_VALIDATION, EXIT_GATES, EXIT_DIVERGED, EXIT_EXPORT = 0, 1, 2, 3, 4, 5, 6


def exit_code_for(error: BaseException) -> int:
    from ganmodels.data import DataError
    from ganmodels.export import OnnxMismatchError
    from ganmodels.metrics import InceptionWeightsNotFound
    from ganmodels.train import TrainingDiverged
    from pipelines.config import ConfigError
    from pipelines.validation import DataValidationError

    if isinstance(error, DataValidationError):
        return EXIT_VALIDATION
    if isinstance(error, TrainingDiverged):
        return EXIT_DIVERGED
    if isinstance(error, OnnxMismatchError):
        return EXIT_EXPORT
    if isinstance(error, (ConfigError, DataError, InceptionWeightsNotFound, FileNotFoundError, UsageError)):
        return EXIT_BAD_INPUT
    from pipelines.flow import GateRejected

    if isinstance(error, GateRejected):
        return EXIT_GATES
    return EXIT_INTERNAL


class UsageError(ValueError):
    """A command-line argument is wrong (exit code 2)."""


def _unwrap(error: BaseException) -> BaseException:
    """Prefect may wrap a task's exception; the typed cause decides the exit code."""
    seen = set()
    while id(error) not in seen:
        seen.add(id(error))
        if exit_code_for(error) != EXIT_INTERNAL:
            return error
        nxt = error.__cause__ or error.__context__
        if nxt is None:
            break
        error = nxt
    return error


def run_guarded(fn: Callable[[], object]) -> int:
    """Run ``fn``; map typed errors to exit codes with a one-paragraph message on stderr."""
    try:
        fn()
        return EXIT_OK
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BaseException as error:  # noqa: BLE001 (the CLI boundary)
        cause = _unwrap(error)
        code = exit_code_for(cause)
        if code == EXIT_INTERNAL:
            traceback.print_exception(error, file=sys.stderr)
            print(f"\nganpipe: internal error: {type(error).__name__}: {error}", file=sys.stderr)
        elif code != EXIT_GATES:
            print(f"ganpipe: {_label(code)}: {cause}", file=sys.stderr)
        return code


def _label(code: int) -> str:
    return {EXIT_BAD_INPUT: "bad input", EXIT_VALIDATION: "data validation failed",
            EXIT_DIVERGED: "training diverged", EXIT_EXPORT: "ONNX export check failed"}.get(code, "error")


# -- commands ---------------------------------------------------------------------------------


def cmd_run(args) -> int:
    from pipelines.flow import GateRejected, training_pipeline
    from pipelines.report import print_summary

    state: dict = {}
    started = time.time()

    def check_inputs():
        """Bad input fails here in a second, before Prefect or MLflow start (no run is created)."""
        from pipelines.config import load_run_config

        cfg = load_run_config(args.params, model=args.model, dataset=args.dataset, preset=args.preset,
                              overrides=args.set)
        root = cfg.data.root
        if cfg.data.name in ("folder", "npy") and root and not Path(root).exists():
            raise FileNotFoundError(f"--dataset {cfg.dataset}: {root} does not exist")

    code = run_guarded(check_inputs)
    if code != EXIT_OK:
        if args.summary_json:
            Path(args.summary_json).parent.mkdir(parents=True, exist_ok=True)
            Path(args.summary_json).write_text(json.dumps({"status": "bad_input", "exit_code": code}, indent=2))
        return code

    def go():
        try:
            state["summary"] = training_pipeline(model=args.model, dataset=args.dataset, preset=args.preset,
                                                 overrides=args.set, params_path=args.params,
                                                 project_dir=str(Path.cwd()), progress=not args.no_progress)
        except GateRejected as rejected:
            state["summary"] = rejected.summary
            raise

    code = run_guarded(go)
    summary = state.get("summary") or _failed_summary(since=started)
    if summary:
        print_summary(summary)
        if args.summary_json:
            Path(args.summary_json).parent.mkdir(parents=True, exist_ok=True)
            Path(args.summary_json).write_text(json.dumps({**summary, "exit_code": code}, indent=2, default=str))
    return code


def _failed_summary(since: float) -> dict | None:
    """The summary.json the flow wrote for this invocation even though it failed, if any.

    Only files written after ``since`` count: a run that failed before it created its run
    directory (e.g. a bad ``--set``) must not report an earlier run's summary as its own.
    """
    runs = sorted((p for p in Path("runs").glob("*/summary.json") if p.stat().st_mtime >= since),
                  key=lambda p: p.stat().st_mtime)
    return json.loads(runs[-1].read_text()) if runs else None


def cmd_validate(args) -> int:
    from pipelines.config import load_run_config
    from pipelines.stages import validate_stage

    def go():
        cfg = load_run_config(args.params, dataset=args.dataset, overrides=args.set)
        out = Path(args.out)
        result = validate_stage(cfg, out)
        print(f"data set {cfg.dataset!r}: {result['n_samples']} samples passed validation; Data Docs: {result['docs']}")

    return run_guarded(go)


def cmd_sample(args) -> int:
    import numpy as np

    from pipelines.models import load_generator_from_uri, sample_array

    def go():
        if args.n < 1:
            raise UsageError(f"--n must be >= 1, got {args.n}")
        if not args.out.endswith(".npy"):
            raise UsageError(f"--out must name a .npy file, got {args.out!r}")
        G = load_generator_from_uri(args.model_uri)
        samples = sample_array(G, args.n, seed=args.seed)
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.tmp.npy")
        np.save(tmp, samples)
        tmp.replace(out)
        print(f"wrote {samples.shape} float32 samples to {out}")

    return run_guarded(go)


def cmd_export(args) -> int:
    from ganmodels.export import check_onnx, export_onnx
    from pipelines.models import load_generator_from_uri

    def go():
        G = load_generator_from_uri(args.model_uri)
        path = export_onnx(G, args.out)
        check = check_onnx(path, G, atol=args.atol)
        print(f"wrote {path}; onnxruntime vs PyTorch max abs diff {check['max_abs_diff']:.3g} "
              f"(batch sizes {check['batch_sizes']})")

    return run_guarded(go)


def cmd_fid(args) -> int:
    from ganmodels.metrics import compute_fid
    from pipelines.models import load_images

    def go():
        a, b = load_images(args.a), load_images(args.b)
        fid = compute_fid(a, b, weights_path=args.inception_weights)
        print(f"FID {fid:.4f}  ({len(a)} vs {len(b)} images)")

    return run_guarded(go)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ganpipe", description="Reproducible, gated GAN training.",
                                     epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawTextHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    def data_options(p):
        p.add_argument("--dataset", default=None, help="data-set name (digits, mnist, fashion-mnist, cifar10, ring8, "
                                                       "grid25), an image folder or a .npy array")
        p.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
        p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                       help="override a params.yaml value, e.g. --set train.steps=500 (repeatable)")

    run = sub.add_parser("run", help="run the whole pipeline (validate, prepare, train, evaluate, gate, export, register)")
    run.add_argument("--model", default=None, help="registered model (default: dcgan for images, mlp2d for 2D data)")
    data_options(run)
    run.add_argument("--preset", default=None, help="smoke | default (params.yaml presets)")
    run.add_argument("--summary-json", default=None, help="also write the machine-readable run summary here")
    run.add_argument("--no-progress", action="store_true", help="no progress bars")
    run.set_defaults(func=cmd_run)

    val = sub.add_parser("validate", help="validate a data set with Great Expectations")
    data_options(val)
    val.add_argument("--out", default="runs/validation", help="where the report and Data Docs go")
    val.set_defaults(func=cmd_validate)

    smp = sub.add_parser("sample", help="draw samples from a registered model or a checkpoint")
    smp.add_argument("model_uri", help="models:/NAME@ALIAS, models:/NAME/VERSION or a checkpoint path")
    smp.add_argument("--n", type=int, default=64)
    smp.add_argument("--out", required=True, help="output .npy: float32 (N, C, H, W) in [-1, 1] or (N, 2)")
    smp.add_argument("--seed", type=int, default=0)
    smp.set_defaults(func=cmd_sample)

    exp = sub.add_parser("export", help="export a generator to ONNX (dynamic batch) and check it in onnxruntime")
    exp.add_argument("model_uri", help="models:/NAME@ALIAS, models:/NAME/VERSION or a checkpoint path")
    exp.add_argument("--out", required=True)
    exp.add_argument("--atol", type=float, default=1e-4)
    exp.set_defaults(func=cmd_export)

    fid = sub.add_parser("fid", help="FID between two image sets (folders or .npy arrays)")
    fid.add_argument("a")
    fid.add_argument("b")
    fid.add_argument("--inception-weights", default=None, help="pytorch-fid weights file (pt_inception-2015-12-05-…pth)")
    fid.set_defaults(func=cmd_fid)
    return parser


def main(argv: list[str] | None = None) -> int:
    from pipelines.settings import setup_environment

    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse exits 2 on bad usage, 0 for --help
        return int(e.code or 0)
    setup_environment()
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
