"""``ganpipe``: run the pipeline, validate data, sample, export, compare registered versions, serve the
MLflow UI and compute FID from the command line.

The exit codes are listed in ``pipelines.errors`` (and ``ganpipe --help``, and the README).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from pipelines.errors import EXIT_BAD_INPUT, EXIT_OK, ConfigError, GateRejected, UsageError, run_guarded

# -- commands ---------------------------------------------------------------------------------


def cmd_run(args) -> int:
    from pipelines.flow import training_pipeline
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
        from pipelines.tracking import connect_store

        connect_store(cfg, Path.cwd())  # a store that is down fails now (exit 8), not after training

    def check_resume():
        """A run name that names nothing fails here, before Prefect or MLflow start; the flow checks the rest
        (config, code and data against the run's record)."""
        from pipelines.runstate import find_run_dir

        if args.resume != "auto" and not args.resume.startswith("prefect.flow-run."):
            find_run_dir(Path.cwd(), args.resume)

    code = run_guarded(check_resume if args.resume else check_inputs)
    if code != EXIT_OK:
        if args.summary_json:
            Path(args.summary_json).parent.mkdir(parents=True, exist_ok=True)
            status = "bad_input" if code == EXIT_BAD_INPUT else "failed"
            Path(args.summary_json).write_text(json.dumps({"status": status, "exit_code": code}, indent=2))
        return code

    def go():
        try:
            state["summary"] = training_pipeline(model=args.model, dataset=args.dataset, preset=args.preset,
                                                 overrides=args.set, params_path=args.params,
                                                 project_dir=str(Path.cwd()), progress=not args.no_progress,
                                                 entry_point="ganpipe run", resume=args.resume, force=args.force,
                                                 nproc=args.nproc)
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
        cfg = load_run_config(args.params, dataset=args.dataset, overrides=args.set, evaluation=False)
        out = Path(args.out)
        result = validate_stage(cfg, out)
        print(f"data set {cfg.dataset!r}: {result['n_samples']} samples passed validation; Data Docs: {result['docs']}")

    return run_guarded(go)


def cmd_sample(args) -> int:
    import numpy as np

    from ganmodels.data.sources.npy import labels_path
    from ganmodels.io import atomic_path
    from pipelines.models import load_model_from_uri, sample_array

    def go():
        if args.n < 1:
            raise UsageError(f"--n must be >= 1, got {args.n}")
        if not args.out.endswith(".npy"):
            raise UsageError(f"--out must name a .npy file, got {args.out!r}")
        model = load_model_from_uri(args.model_uri)
        samples, labels = sample_array(model, args.n, seed=args.seed, classes=args.classes, truncation=args.truncation)
        out = Path(args.out)
        if labels is not None:  # labels first: samples.npy never appears without its labels
            with atomic_path(labels_path(out), suffix=".npy") as tmp:
                np.save(tmp, labels)
        with atomic_path(out, suffix=".npy") as tmp:
            np.save(tmp, samples)
        note = f" and their int64 class labels to {labels_path(out)}" if labels is not None else ""
        print(f"wrote {samples.shape} float32 samples to {out}{note}")

    return run_guarded(go)


def cmd_export(args) -> int:
    from ganmodels.export import check_onnx, export_onnx
    from pipelines.models import load_model_from_uri

    def go():
        model = load_model_from_uri(args.model_uri)
        targets = list(model.export_targets())
        if args.direction is not None:
            if f"generator_{args.direction}" not in targets:
                raise UsageError(f"--direction {args.direction}: model {model.name!r} exports {targets}")
            targets = [f"generator_{args.direction}"]
        out = Path(args.out)
        for target in targets:  # two-domain models without --direction: <out>_a2b.onnx and <out>_b2a.onnx
            path = out if len(targets) == 1 else out.with_name(f"{out.stem}_{target.removeprefix('generator_')}"
                                                              f"{out.suffix}")
            check = _export_checked(model, path, target, args.atol)
            print(f"wrote {path}; onnxruntime vs PyTorch max abs diff {check['max_abs_diff']:.3g} "
                  f"(batch sizes {check['batch_sizes']})")

    return run_guarded(go)


def _export_checked(model, out: Path, target: str, atol: float) -> dict:
    """Export and check under a temporary name in the same folder; only a model that passes the check
    takes the requested name (a failed check leaves the previous file, if any)."""
    from ganmodels.export import check_onnx, export_onnx

    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{out.name}.", dir=out.parent) as tmp:
        staged = export_onnx(model, Path(tmp) / out.name, target=target)
        check = check_onnx(staged, model, atol=atol, target=target)
        for side_file in Path(tmp).iterdir():  # external weights (large models) first, the .onnx last
            if side_file.name != out.name:
                os.replace(side_file, out.parent / side_file.name)
        os.replace(staged, out)
    return check


def cmd_translate(args) -> int:
    import numpy as np

    from ganmodels.io import atomic_path
    from pipelines.models import model_input_shape, read_inputs, translate_array

    def go():
        out = Path(args.out)
        inputs, names = read_inputs(args.input, model_input_shape(args.model_uri, args.direction))
        outputs = translate_array(args.model_uri, inputs, args.direction)
        if out.suffix == ".npy":
            with atomic_path(out, suffix=".npy") as tmp:
                np.save(tmp, outputs)
        else:
            from pipelines.artifacts import save_image

            for name, image in zip(names, outputs):
                save_image(image, out / f"{name}.png")
        print(f"translated {len(inputs)} input(s) {tuple(inputs.shape[1:])} -> {tuple(outputs.shape[1:])}; wrote {out}")

    return run_guarded(go)


def cmd_fid(args) -> int:
    from ganmodels.metrics import compute_fid
    from ganmodels.train import resolve_device
    from pipelines.models import load_images

    def go():
        a, b = load_images(args.a), load_images(args.b)
        try:
            device = resolve_device(args.device)
        except (ValueError, RuntimeError) as e:  # "cuda" without a GPU, or a malformed name
            raise ConfigError(f"--device {args.device}: {e}") from None
        fid = compute_fid(a, b, weights_path=args.inception_weights, batch_size=args.batch_size, device=device)
        print(f"FID {fid:.4f}  ({len(a)} vs {len(b)} images, {device})")

    return run_guarded(go)


def cmd_compare(args) -> int:
    from rich.console import Console

    from pipelines.compare import print_comparison, registered_versions, write_comparison_html
    from pipelines.report import print_ui_links

    def go():
        from mlflow.exceptions import MlflowException

        from pipelines.tracking import project_store

        client, uri = project_store(args.params, Path.cwd())
        names = [args.model_name] if args.model_name else sorted(m.name for m in client.search_registered_models())
        if not names:
            print(f"no registered models in {uri} yet: a run registers its model once it passes every gate")
            return
        models = {}
        for name in names:
            try:
                models[name] = registered_versions(client, name)
            except MlflowException:
                known = ", ".join(sorted(m.name for m in client.search_registered_models())) or "none"
                raise UsageError(f"no registered model {name!r} in {uri}; registered models: {known}") from None
        console = Console(width=160)
        for name, rows in models.items():
            print_comparison(console, name, rows)
            if rows:
                print_ui_links(console, rows[0].experiment_id, model_name=name, note="MLflow UI (`ganpipe ui`):")
        if args.html:
            print(f"wrote {write_comparison_html(client, models, args.html)}")

    return run_guarded(go)


def cmd_ui(args) -> int:
    from pipelines.ui import serve

    return run_guarded(lambda: serve(args.params, port=args.port, workers=args.workers))


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer")
    return value


def build_parser() -> argparse.ArgumentParser:
    from pipelines import errors

    parser = argparse.ArgumentParser(prog="ganpipe", description="Reproducible, gated GAN training.",
                                     epilog=errors.__doc__.split("\n\n")[1],
                                     formatter_class=argparse.RawTextHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    def data_options(p):
        p.add_argument("--dataset", default=None, help="data-set name (digits, glyphs, mnist, fashion-mnist, cifar10, "
                                                       "ring8, grid25, digits-sr, glyphs-sr, glyphs-edges), an image "
                                                       "folder, a paired folder (A/ and B/), a .npy or .npz array")
        p.add_argument("--task", default=None, choices=["sr", "edges"],
                       help="derive pairs from an image set: super-resolution (with --scale) or edges -> image "
                            "(same as --set data.task=...)")
        p.add_argument("--scale", type=int, default=None, help="--task sr: target size / input size (default 2)")
        p.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
        p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                       help="override a params.yaml value, e.g. --set train.steps=500 (repeatable)")

    run = sub.add_parser("run", help="run the whole pipeline (validate, prepare, train, evaluate, gate, export, register)")
    run.add_argument("--model", default=None, help="registered model (default: dcgan for images, mlp2d for 2D data, "
                                                   "pix2pix for paired images; cgan for class-conditional)")
    data_options(run)
    run.add_argument("--preset", default=None, help="smoke | default (params.yaml presets)")
    run.add_argument("--summary-json", default=None, help="also write the machine-readable run summary here")
    run.add_argument("--no-progress", action="store_true", help="no progress bars")
    run.add_argument("--resume", default=None, metavar="RUN",
                     help="continue an interrupted run (a name under runs/, or `latest`) from its last checkpoint, "
                          "in the same MLflow run, with its own settings; refused (exit 2) if params, code or "
                          "data changed")
    run.add_argument("--force", action="store_true",
                     help="train and register even when a registered version has the same data version, code "
                          "version and params (otherwise: \"up to date\", exit 0, nothing trained)")
    run.add_argument("--nproc", type=positive_int, default=None, metavar="N",
                     help="train on N data-parallel processes launched with torchrun (gloo on CPU, NCCL on GPUs; "
                          "the global batch stays train.batch_size); default run.nproc (1)")
    run.set_defaults(func=cmd_run)

    val = sub.add_parser("validate", help="validate a data set with Great Expectations")
    data_options(val)
    val.add_argument("--out", default="runs/validation", help="where the report and Data Docs go")
    val.set_defaults(func=cmd_validate)

    smp = sub.add_parser("sample", help="draw samples from a registered model or a checkpoint")
    smp.add_argument("model_uri", help="models:/NAME@ALIAS, models:/NAME/VERSION or a checkpoint path")
    smp.add_argument("--n", type=int, default=64)
    smp.add_argument("--out", required=True, help="output .npy: float32 (N, C, H, W) in [-1, 1] or (N, 2); "
                                                   "conditional models also write <out>.labels.npy (int64)")
    smp.add_argument("--seed", type=int, default=0)
    smp.add_argument("--class", dest="classes", type=int, action="append", default=None, metavar="K",
                     help="conditional models: only class K (repeatable; classes are drawn in turn); "
                          "default: every class in turn")
    smp.add_argument("--truncation", type=float, default=1.0, metavar="PSI",
                     help="StyleGAN2: truncation psi (1: none; e.g. 0.7 trades diversity for fidelity)")
    smp.set_defaults(func=cmd_sample)

    exp = sub.add_parser("export", help="export a generator to ONNX (dynamic batch) and check it in onnxruntime")
    exp.add_argument("model_uri", help="models:/NAME@ALIAS, models:/NAME/VERSION or a checkpoint path")
    exp.add_argument("--out", required=True)
    exp.add_argument("--atol", type=float, default=1e-4)
    exp.add_argument("--direction", choices=["a2b", "b2a"], default=None,
                     help="two-domain (CycleGAN) models: export one direction (default: both, as <out>_a2b.onnx "
                          "and <out>_b2a.onnx)")
    exp.set_defaults(func=cmd_export)

    trn = sub.add_parser("translate", help="apply a paired (pix2pix) model to inputs: super-resolve or translate")
    trn.add_argument("model_uri", help="models:/NAME@ALIAS, models:/NAME/VERSION, a checkpoint path or an exported "
                                       ".onnx file")
    trn.add_argument("input", help="an image folder or a .npy array of inputs (scaled like training data)")
    trn.add_argument("--out", required=True, help="a .npy file (float32 (N, C, H, W) in [-1, 1]) or a folder of PNGs")
    trn.add_argument("--direction", choices=["a2b", "b2a"], default=None,
                     help="two-domain (CycleGAN) models: translate domain A to B (default) or B to A")
    trn.set_defaults(func=cmd_translate)

    cmp_ = sub.add_parser("compare", help="registered versions side by side: aliases, metrics, gates, lineage")
    cmp_.add_argument("model_name", nargs="?", default=None,
                      help="registered model (e.g. dcgan-digits); default: every registered model")
    cmp_.add_argument("--html", default=None, metavar="OUT", help="also write a page with the sample grids here")
    cmp_.add_argument("--params", default="params.yaml", help="params file whose tracking section names the store")
    cmp_.set_defaults(func=cmd_compare)

    ui = sub.add_parser("ui", help="serve MLflow's UI for this project's store on 127.0.0.1 (until Ctrl-C)")
    ui.add_argument("--port", type=int, default=5000)
    ui.add_argument("--workers", type=int, default=2, help="server worker processes (default: 2)")
    ui.add_argument("--params", default="params.yaml", help="params file whose tracking section names the store")
    ui.set_defaults(func=cmd_ui)

    fid = sub.add_parser("fid", help="FID between two image sets (folders or .npy arrays)")
    fid.add_argument("a")
    fid.add_argument("b")
    fid.add_argument("--inception-weights", default=None, help="pytorch-fid weights file (pt_inception-2015-12-05-…pth)")
    fid.add_argument("--device", default="auto", help="auto (a GPU when present) | cpu | cuda | cuda:N")
    fid.add_argument("--batch-size", type=positive_int, default=None,
                     help="images per Inception forward (default: 50 on CPU, 250 on a GPU; FID does not depend on it)")
    fid.set_defaults(func=cmd_fid)
    return parser


def main(argv: list[str] | None = None) -> int:
    from pipelines.settings import setup_environment

    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse exits 2 on bad usage, 0 for --help
        return int(e.code or 0)
    for option in ("task", "scale"):  # shorthands for --set data.task=... / data.scale=...
        if getattr(args, option, None) is not None:
            args.set = [*args.set, f"data.{option}={getattr(args, option)}"]
    setup_environment()
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
