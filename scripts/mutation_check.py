"""Mutation check: break the core claims on purpose and expect the test suite to notice.

Each mutation replaces one exact piece of code (or params.yaml) in a fresh copy of the repository's
tracked files and runs the tests that protect that claim; the mutation is "caught" when they fail.
The unmutated copy must pass the same tests first, or a failure would prove nothing. A mutation
whose code no longer appears verbatim is reported as stale: update it along with the code, so the
claim stays proven.

    .venv/bin/python scripts/mutation_check.py            # every mutation (~11 minutes on 2 cores)
    .venv/bin/python scripts/mutation_check.py -k resume  # the ones whose name contains "resume"

Mutations run ``--jobs`` at a time (default: 2, or 1 on a one-core machine), each in its own copy: the
test suite runs in one process, so in CI the second core would otherwise sit idle here.

Exit status 0 when every mutation is caught, 1 otherwise. tests/test_mutation_check.py runs it in CI.
To prove a new claim the same way, add a ``Mutation`` below: the file, the exact code, its broken
form, and the tests that must fail.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Mutation:
    name: str
    path: str  # relative to the repository root
    find: str  # exact text; must occur exactly once
    replace: str
    tests: tuple[str, ...]  # pytest node ids or files that must fail


MUTATIONS = (
    Mutation("resume ignores the checkpoint", "ganmodels/train/trainer.py",
             "        self.load_state_dict(load_checkpoint(path, self.device))\n", "        pass\n",
             ("tests/test_train.py::test_2k_steps_equal_1k_plus_resume_plus_1k",
              "tests/test_train.py::test_dcgan_resume_with_all_stabilisers")),
    Mutation("resume without a checkpoint starts fresh silently", "ganmodels/train/trainer.py",
             '            raise ResumeError(f"cannot resume: no checkpoint at {where}; train without resume to start a '
             'new run")\n', "            return None\n",
             ("tests/test_train.py::test_resume_without_a_checkpoint_is_an_explicit_choice",)),
    Mutation("the guard ignores the gradient-norm limit", "ganmodels/train/trainer.py",
             'limit = g.grad_norm_limit if key.endswith("grad_norm") else g.loss_limit',
             'limit = math.inf if key.endswith("grad_norm") else g.loss_limit',
             ("tests/test_train.py::test_the_gradient_norm_limit_alone_stops_a_run",
              "tests/test_train.py::test_the_guard_checks_before_the_update")),
    Mutation("the update is applied before the guard's check", "ganmodels/train/trainer.py",
             "        opt.zero_grad(set_to_none=True)\n        loss.backward()\n",
             "        opt.zero_grad(set_to_none=True)\n        loss.backward()\n        opt.step()\n",
             ("tests/test_train.py::test_the_guard_checks_before_the_update",)),
    Mutation("a non-finite state becomes the rollback target", "ganmodels/train/trainer.py",
             "        if check:\n            bad = _non_finite(state)", "        if False:\n            bad = _non_finite(state)",
             ("tests/test_train.py::test_a_non_finite_state_never_becomes_the_rollback_target",)),
    Mutation("the trainer ignores the seed", "ganmodels/train/trainer.py",
             "self.gen = torch.Generator().manual_seed(cfg.seed)", "self.gen = torch.Generator().manual_seed(0)",
             ("tests/test_train.py::test_same_seed_same_weights_and_only_the_seed_changes_them",)),
    Mutation("EMA moves the wrong way", "ganmodels/train/ema.py",
             "torch._foreach_lerp_(ema_params, params, 1.0 - beta)", "torch._foreach_lerp_(ema_params, params, beta)",
             ("tests/test_ema.py",)),
    Mutation("EMA is a no-op", "ganmodels/train/ema.py",
             "torch._foreach_lerp_(ema_params, params, 1.0 - beta)", "pass",
             ("tests/test_ema.py",)),
    Mutation("the ONNX check passes non-finite outputs", "ganmodels/export.py",
             "                if not np.isfinite(values).all():", "                if False:",
             ("tests/test_export.py::test_non_finite_outputs_never_pass",
              "tests/test_cli.py::test_export_of_a_model_with_nan_outputs_exits_6_and_leaves_no_file")),
    Mutation("compute_fid ignores its second set", "ganmodels/metrics/fid.py",
             "    mu_b, cov_b = feature_stats(inception_features(images_b,",
             "    mu_b, cov_b = feature_stats(inception_features(images_a,",
             ("tests/test_metrics_fid.py::test_compute_fid_of_two_different_sets_matches_an_independent_reference",)),
    Mutation("conditional accuracy compares a prediction with itself", "ganmodels/metrics/evaluate.py",
             'out["cond_accuracy"] = float((fake_pred == asked).mean())',
             'out["cond_accuracy"] = float((fake_pred == fake_pred).mean())',
             ("tests/test_metrics_evaluate.py::test_conditional_metrics_against_known_answers",)),
    Mutation("memorisation gate: authenticity measured against the held-out split", "ganmodels/metrics/evaluate.py",
             '    return {"authenticity": authenticity(train_f, fake_f),',
             '    return {"authenticity": authenticity(test_f, fake_f),',
             ("tests/test_metrics_memorisation.py::test_a_generator_that_returns_training_images_fails_the_shipped_gates",)),
    Mutation("memorisation gate: C_T forgets the held-out share of each cell", "ganmodels/metrics/memorisation.py",
             "    weights = test_share[used]\n", "    weights = np.ones(int(used.sum()))\n",
             ("tests/test_metrics_memorisation.py::test_ct_matches_an_independent_reference_with_unequal_cells",)),
    Mutation("params.yaml's mode gates weakened", "params.yaml",
             "      modes_fraction: {min: 1.0}", "      modes_fraction: {min: 0.1}",
             ("tests/test_gates.py",)),
    Mutation("params.yaml's reverse-KL gate weakened", "params.yaml",
             "      reverse_kl: {max: 0.05}", "      reverse_kl: {max: 5}",
             ("tests/test_gates.py",)),
    Mutation("a gate on a metric the run never produces passes silently", "pipelines/config.py",
             "        if metric not in produced:\n", "        if False:\n",
             ("tests/test_gates.py::test_bad_gates_are_config_errors",)),
    Mutation("a model trains on data of a kind it does not accept", "ganmodels/families/base.py",
             "        if self.accepts and not kind.satisfies(self.accepts):",
             "        if False:",
             ("tests/test_models.py",)),
    Mutation("paired inputs are drawn out of step with their targets", "ganmodels/families/paired.py",
             "return a[idx], b[idx]", "return a[idx], b[idx.flip(0)]",
             ("tests/test_families_paired.py",)),
    Mutation("the pix2pix generator loss drops its L1 weight", "ganmodels/families/paired.py",
             "return adversarial + self.l1_weight * l1,", "return adversarial + l1,",
             ("tests/test_families_paired.py",)),
    Mutation("CycleGAN's image pool never hands back an older fake", "ganmodels/families/unpaired.py",
             "            elif torch.rand((), generator=gen).item() < 0.5:", "            elif True:",
             ("tests/test_families_unpaired.py",)),
    Mutation("CycleGAN's cycle term skips the way back", "ganmodels/families/unpaired.py",
             "cycle = (self.G_BA(fake_b) - real_a).abs().mean()", "cycle = (fake_b - real_a).abs().mean()",
             ("tests/test_families_unpaired.py",)),
    Mutation("StyleGAN2's modulated convolution skips demodulation", "ganmodels/models/stylegan2.py",
             "        if self.demodulate:  # eq. 3", "        if False:  # eq. 3",
             ("tests/test_families_style.py",)),
    Mutation("StyleGAN2's path-length penalty loses its lazy weight", "ganmodels/families/style.py",
             'weight = float(self._cfg("pl_weight", 2.0)) * int(self._cfg("pl_every", 4))',
             'weight = float(self._cfg("pl_weight", 2.0))',
             ("tests/test_families_style.py",)),
    Mutation("the bicubic baseline is the output itself", "ganmodels/metrics/evaluate.py",
             "    baseline = bicubic_upsample(inputs, tuple(targets.shape[-2:]))",
             "    baseline = outputs",
             ("tests/test_metrics_image_quality.py",)),
    Mutation("pipelines modules import each other in a cycle", "pipelines/models.py",
             "from pipelines.errors import UsageError\n", "from pipelines.errors import UsageError\nimport pipelines.cli\n",
             ("tests/test_architecture.py",)),
    Mutation("a full disk mid-write is reported as an anonymous OSError", "ganmodels/io.py",
             "            raise StorageError(path, e) from e\n        raise\n", "            raise\n        raise\n",
             ("tests/test_io.py::test_disk_full_mid_write_is_a_storage_error_naming_the_file",)),
    Mutation("the store lock locks nothing", "pipelines/locks.py",
             "                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)\n", "                pass\n",
             ("tests/test_run_failures.py::test_store_lock_excludes_another_process_until_it_exits",)),
    Mutation("the MLflow schema is created outside the store lock", "pipelines/tracking.py",
             "            with _single_http_attempt(), store_lock(uri, project_dir):\n",
             "            with _single_http_attempt():\n",
             ("tests/test_run_failures.py::test_the_store_schema_is_created_only_under_the_store_lock",)),
    Mutation("a tracking server that is down is found only after the flow started", "pipelines/cli.py",
             "        connect_store(cfg, Path.cwd())  # a store that is down fails now (exit 8), not after training\n",
             "        pass\n",
             ("tests/test_run_failures.py::test_tracking_server_down_exits_8_before_training_within_the_retry_budget",)),
    Mutation("an image declaring a bomb's size is decoded", "ganmodels/data/sources/folder.py",
             "            if img.width * img.height > MAX_IMAGE_PIXELS:\n", "            if False:\n",
             ("tests/test_data_folder.py::test_decompression_bombs_are_refused_from_the_header",)),
    Mutation("a broken symbolic link is skipped silently", "ganmodels/data/sources/folder.py",
             "        if path.is_symlink() and not path.exists():", "        if False:",
             ("tests/test_data_folder.py::test_broken_symlinks_are_named",)),
    Mutation("a validation policy refusal hides the setting that changes it", "pipelines/validation/suites.py",
             "    if failure.get(\"check\") in POLICY_SETTINGS:\n", "    if False:\n",
             ("tests/test_validation.py::test_five_channel_image_fails_channels",)),
    Mutation("a failed pip step no longer fails the install", "scripts/install.sh",
             '  if ! .venv/bin/python -m pip install -q "$@" 2>&1 | { grep -v "is ignored" || [ $? -eq 1 ]; }; then',
             '  if ! { .venv/bin/python -m pip install -q "$@" 2>&1 | grep -v "is ignored" || true; }; then',
             ("tests/test_install.py",)),
    Mutation("installed PostgreSQL is never looked for, so a missing one is never installed", "scripts/install.sh",
             '    [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ] && return 1',
             '    return 1',
             ("tests/test_install.py",)),
    Mutation("runs against a tracking server write artifacts to a local path", "pipelines/tracking.py",
             '    return uri.startswith(("http://", "https://", "databricks"))',
             '    return False',
             ("tests/test_tracking.py",)),
    Mutation("a tracking server lost mid-run is an internal error, not exit 8", "pipelines/errors.py",
             "    if isinstance(error, TrackingUnavailable) or _is_tracking_failure(error):\n",
             "    if isinstance(error, TrackingUnavailable):\n",
             ("tests/test_run_failures.py::test_tracking_server_lost_mid_run_exits_8_keeps_the_checkpoint_and_registers_nothing",)),
    Mutation("a resumed registration creates a second version", "pipelines/registry.py",
             "    version = version_for_run(client, model_name, run_id)  # registered before this process was killed\n",
             "    version = None\n",
             ("tests/test_registry.py::test_promote_again_for_the_same_run_reuses_its_version",)),
    Mutation("a signal stops training without a checkpoint", "pipelines/interrupt.py",
             "            trainer.checkpoint()\n", "            pass\n",
             ("tests/test_resume.py::test_a_signal_while_training_checkpoints_the_finished_step_and_resume_is_exact",)),
    Mutation("the champion is judged on its old data", "pipelines/registry.py",
             "            champion_value = champion_rescore.value\n", "            pass\n",
             ("tests/test_registry.py::test_a_rescored_champion_decides_and_both_scores_are_recorded",)),
    Mutation("the up-to-date check ignores the code version", "pipelines/registry.py",
             'FINGERPRINT_TAGS = ("ganpipe.data_version", "ganpipe.code_version", "ganpipe.params_hash")',
             'FINGERPRINT_TAGS = ("ganpipe.data_version", "ganpipe.params_hash")',
             ("tests/test_registry.py::test_up_to_date_version_matches_all_three_fingerprint_tags",)),
    Mutation("checkpoint_seconds is ignored", "ganmodels/train/trainer.py",
             "        return seconds > 0 and time.monotonic() - self._last_checkpoint_time >= seconds\n",
             "        return False\n",
             ("tests/test_resume.py::test_checkpoint_seconds_adds_checkpoints_between_step_checkpoints",)),
    Mutation("style transfer counts translations left in their own domain", "ganmodels/metrics/evaluate.py",
             "style_transfer_a2b=float((to_b == STYLE_B).mean())", "style_transfer_a2b=float((to_b == STYLE_A).mean())",
             ("tests/test_families_unpaired.py::test_both_directions_against_known_answers",
              "tests/test_data_unpaired.py::test_glyphs_fonts_style_transfer_is_zero_for_doing_nothing_and_one_for_the_truth")),
    Mutation("glyphs-fonts scores translations against their own inputs", "ganmodels/data/sources/glyphs.py",
             "counterparts=[pick(i, not a) for i, a in zip(keep, in_a)]", "counterparts=[pick(i, a) for i, a in zip(keep, in_a)]",
             ("tests/test_data_unpaired.py::test_glyphs_fonts_truth_is_the_other_family_drawing_the_held_out_glyph",)),
    Mutation("glyphs-fonts keeps clamped repeats, so a truth can be a training image", "ganmodels/data/sources/glyphs.py",
             "    distinct = _distinct_drawings(sans, serif)\n", "    distinct = np.arange(len(labels))\n",
             ("tests/test_data_unpaired.py::test_glyphs_fonts_are_sans_and_serif_glyphs_that_share_no_glyph",)),
    Mutation("a resume ignores a changed config", "pipelines/runstate.py",
             "    changed = sorted(k for k in set(before) | set(now) if before.get(k) != now.get(k))\n",
             "    changed = []\n",
             ("tests/test_resume.py::test_resume_is_refused_when_config_code_or_data_changed",)),
    Mutation("data-parallel: gradients are not averaged over the processes", "ganmodels/train/trainer.py",
             "            numbers = distributed.average(params, numbers, self.process.world)\n",
             "            pass\n",
             ("tests/test_distributed.py::test_two_gloo_processes_train_the_weights_of_one[dcgan]",)),
    Mutation("data-parallel: each process draws numbers for its own rows only", "ganmodels/draws.py",
             "    return source.rows(fn((shape[0] * source.world, *shape[1:]), generator=gen, device=device))",
             "    return fn(shape, generator=gen, device=device)",
             ("tests/test_distributed.py::test_two_gloo_processes_train_the_weights_of_one[pix2pix]",)),
    Mutation("data-parallel: batch norm normalises each process's rows alone", "ganmodels/train/distributed.py",
             "        if type(child) is nn.BatchNorm2d:", "        if False:",
             ("tests/test_distributed.py::test_two_gloo_processes_train_the_weights_of_one[cgan]",)),
    Mutation("data-parallel: running-mean buffers (w_avg) drift apart", "ganmodels/train/trainer.py",
             "            distributed.average_buffers(self.networks.values(), self.process.world)\n",
             "            pass\n",
             ("tests/test_distributed.py::test_two_gloo_processes_train_the_weights_of_one[stylegan2]",)),
    Mutation("data-parallel: the path-length mean of one process's rows", "ganmodels/families/style.py",
             "lerp_(ctx.mean_all(lengths.mean().detach()),", "lerp_(lengths.mean().detach(),",
             ("tests/test_distributed.py::test_two_gloo_processes_train_the_weights_of_one[stylegan2]",)),
    Mutation("data-parallel: each process pools only its own fakes", "ganmodels/families/unpaired.py",
             "fake = ctx.rows(self._query_pool(domain, ctx.gather(fakes[domain]), ctx.gen))",
             "fake = self._query_pool(domain, fakes[domain], ctx.gen)",
             ("tests/test_distributed.py::test_two_gloo_processes_train_the_weights_of_one[cyclegan]",)),
    Mutation("data-parallel: a process count the batch cannot be split over starts anyway", "pipelines/training.py",
             "    if batch % nproc:\n", "    if False:\n",
             ("tests/test_threads.py::test_a_process_count_the_batch_cannot_be_split_over_is_bad_input",)),
    Mutation("device generator: resume keeps the new trainer's own stream", "ganmodels/train/trainer.py",
             "                self.device_gen.set_state(saved.cpu())\n", "                pass\n",
             ("tests/test_train.py::test_with_a_device_generator_resume_stays_exact",)),
    Mutation("device generator: a rollback replays the same draws", "ganmodels/train/trainer.py",
             "        for gen in dict.fromkeys((self.gen, self.device_gen)):",
             "        for gen in (self.gen,):",
             ("tests/test_train.py::test_a_rollback_does_not_replay_the_device_stream",)),
    Mutation("device generator: per-sample draws come from the CPU generator", "ganmodels/families/base.py",
             "return Shard(self.device_gen or self.gen, self.rank, self.world)",
             "return Shard(self.gen, self.rank, self.world)",
             ("tests/test_train.py::test_per_sample_draws_come_from_the_device_generator",)),
    Mutation("deferred reads: a checkpoint is written before the pending steps are checked",
             "ganmodels/train/trainer.py",
             "            if not sync:\n                continue\n",
             "            if due and self.step < total:\n                self._checkpoint()\n"
             "            if not sync:\n                continue\n",
             ("tests/test_train.py::test_no_unchecked_update_reaches_a_checkpoint",)),
    Mutation("deferred reads: the guard never checks the batched steps", "ganmodels/train/trainer.py",
             "        if self.sync_every > 1:  # with 1, ``_update`` checked",
             "        if False:  # with 1, ``_update`` checked",
             ("tests/test_train.py::test_a_deferred_guard_rolls_back_exactly_like_the_immediate_one",
              "tests/test_train.py::test_no_unchecked_update_reaches_a_checkpoint")),
    Mutation("deferred reads: a callback that needs the live state gets a later one", "ganmodels/train/trainer.py",
             "                    or any(cb.needs_live_state(self, self.step) for cb in self.callbacks))",
             ")",
             ("tests/test_train.py::test_steps_reach_callbacks_in_batches_and_live_where_asked",
              "tests/test_train.py::test_a_deferred_guard_rolls_back_exactly_like_the_immediate_one")),
    Mutation("deferred reads: only the last of a phase's repeated updates is checked",
             "ganmodels/train/trainer.py",
             "                    for key, value in checks:  # every update's",
             "                    for key, value in dict(checks).items():  # every update's",
             ("tests/test_train.py::test_the_guard_checks_every_repeat_of_a_phase",)),
    Mutation("deferred reads: steps after the bad one reach the callbacks", "ganmodels/train/trainer.py",
             "                    bad, steps = div, steps[:i]\n", "                    bad = div\n",
             ("tests/test_train.py::test_a_deferred_guard_rolls_back_exactly_like_the_immediate_one",)),
    Mutation("compile: R1's forward runs compiled (twice differentiated)", "ganmodels/losses.py",
             "    with differentiable_twice():\n        (grad,) = torch.autograd.grad(D(real).sum()",
             "    if True:\n        (grad,) = torch.autograd.grad(D(real).sum()",
             ("tests/test_compile.py::test_a_compiled_run_with_r1_resumes_bitwise",)),
    Mutation("compile: StyleGAN2's synthesis (differentiated twice) is compiled", "ganmodels/families/style.py",
             """return {"G.mapping": self.G.mapping, "D": self.D}""",
             """return {"G.mapping": self.G.mapping, "G.synthesis": self.G.synthesis, "D": self.D}""",
             ("tests/test_compile.py::test_stylegan2_path_length_runs_with_its_networks_compiled",)),
    Mutation("compile: train.compile compiles nothing", "ganmodels/train/trainer.py",
             "        compiled.compile_modules(self.model.step_modules(), self.device)", "        pass",
             ("tests/test_compile.py::test_compiled_training_matches_eager_in_every_family",)),
    Mutation("compile: a missing C++ compiler goes unnoticed", "ganmodels/compiled.py",
             "        if not any(shutil.which(c) for c in compilers):", "        if False:",
             ("tests/test_compile.py::test_without_a_compiler_the_run_trains_uncompiled_and_says_why",)),
    Mutation("cuda graph: the step pattern forgets whether the penalties are due", "ganmodels/train/trainer.py",
             "                self.step % self.cfg.reg_every == 0, self.step < self.cfg.ema_start)",
             "                self.step < self.cfg.ema_start)",
             ("tests/test_graphs.py::test_captured_steps_equal_eager_ones_bitwise",)),
    Mutation("cuda graph: a replay's numbers are kept, not copied (the next replay overwrites them)",
             "ganmodels/train/graphs.py", "        return graph.replay().clone()", "        return graph.replay()",
             ("tests/test_graphs.py::test_captured_steps_equal_eager_ones_bitwise",)),
    Mutation("cuda graph: a state load keeps the graphs (they hold the replaced optimiser state)",
             "ganmodels/train/trainer.py", "        if self.graphs is not None:  # the load replaces",
             "        if False:  # the load replaces",
             ("tests/test_graphs.py::test_a_rollback_drops_the_graphs_and_ends_like_the_eager_run",)),
    Mutation("cuda graph: the learning rate is a float a graph would bake in", "ganmodels/train/trainer.py",
             "                if self._lr_tensors is None:\n", "                if True:\n",
             ("tests/test_graphs.py::test_the_learning_rate_lives_on_the_device_and_follows_the_schedule",)),
    Mutation("cuda graph: a resumed optimiser takes the checkpoint's implementation flags",
             "ganmodels/train/trainer.py",
             """    opt.load_state_dict({**saved, "param_groups": [{**group, **flags} for group in saved["param_groups"]]})""",
             "    opt.load_state_dict(saved)",
             ("tests/test_graphs.py::test_an_optimiser_state_loads_with_this_runs_implementation",)),
    Mutation("cuda graph: a captured family's step reads a value on the host", "ganmodels/families/noise.py",
             """        logs = {"d_real": real_logits.detach().float().mean(), "d_fake": fake_logits.detach().float().mean()}""",
             """        logs = {"d_real": real_logits.detach().float().mean(), "d_fake": torch.tensor(float(fake_logits.mean()))}""",
             ("tests/test_graphs.py::test_a_capturable_step_does_no_host_work",)),
    Mutation("cuda graph: StyleGAN2 replaces its path-length mean instead of updating it in place",
             "ganmodels/families/style.py",
             """        self.pl_mean.lerp_(ctx.mean_all(lengths.mean().detach()), float(self._cfg("pl_decay", 0.01)))""",
             """        self.pl_mean = self.pl_mean.lerp(ctx.mean_all(lengths.mean().detach()), float(self._cfg("pl_decay", 0.01)))""",
             ("tests/test_graphs.py::test_every_model_is_captured_and_replays_bitwise[stylegan2]",)),
    Mutation("cuda graph: StyleGAN2 decides style mixing on the host", "ganmodels/families/style.py",
             "            cutoff = torch.where(draws.rand((), ctx.draws) < mixing, cutoff, num_ws).to(ws.device)",
             "            cutoff = cutoff if float(torch.rand((), generator=ctx.gen)) < mixing else num_ws",
             ("tests/test_graphs.py::test_a_capturable_step_does_no_host_work[stylegan2]",
              "tests/test_families_style.py::test_a_batch_that_does_not_mix_keeps_its_own_latent_and_draws_the_same_numbers")),
    Mutation("cuda graph: a phase also takes gradients for the other optimisers' networks",
             "ganmodels/train/trainer.py", "                with self._trains_only(phase.optimiser):",
             "                with contextlib.nullcontext():",
             ("tests/test_graphs.py::test_every_model_is_captured_and_replays_bitwise[cyclegan]",)),
    Mutation("data-parallel: a stop on one process is not a stop on all", "ganmodels/train/trainer.py",
             "                (stop,) = distributed.agree(bool(self._stop_reason))\n",
             "                stop = False\n",
             ("tests/test_distributed.py::test_a_stop_requested_on_one_process_stops_every_process",)),
)


def listing_problems(mutation: Mutation, root: Path = REPO) -> list[str]:
    """Why ``mutation`` can no longer be judged in ``root``: its code is not there exactly once (stale), or a
    test it names does not exist. Empty when it can be."""
    problems = []
    count = (root / mutation.path).read_text().count(mutation.find)
    if count != 1 or mutation.find == mutation.replace:
        problems.append(f"its code appears {count} times in {mutation.path} (must be exactly once)")
    for node in mutation.tests:
        path, _, test = node.partition("::")
        function = test.partition("[")[0]
        if not (root / path).is_file() or (function and f"def {function}(" not in (root / path).read_text()):
            problems.append(f"no test {node}")
    return problems


def copy_tracked_files(dst: Path) -> None:
    """The working-tree version of every file git tracks (uncommitted edits included), nothing else."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    for name in filter(None, listed.decode().split("\0")):
        src = REPO / name
        if src.is_file():
            (dst / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / name)


def run_tests(root: Path, tests: tuple[str, ...], timeout: float) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests], cwd=root,
                          env=env, capture_output=True, text=True, timeout=timeout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-k", default="", help="only mutations whose name contains this text")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per test run")
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1), help="mutations run at once")
    parser.add_argument("--no-baseline", action="store_true",
                        help="skip running the tests unmutated first: only for a caller that fails when they fail "
                             "anyway (tests/test_mutation_check.py, inside the suite that runs them; saves ~4 min)")
    args = parser.parse_args(argv)
    chosen = [m for m in MUTATIONS if args.k.lower() in m.name.lower()]
    if not chosen:
        print(f"no mutation matches {args.k!r}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="ganpipe-mutation-") as tmp:
        pristine = Path(tmp) / "pristine"
        copy_tracked_files(pristine)
        stale = {m.name: "; ".join(problems) for m in chosen if (problems := listing_problems(m, pristine))}
        baseline_tests = tuple(dict.fromkeys(t for m in chosen if m.name not in stale for t in m.tests))
        jobs = max(1, args.jobs)
        if not args.no_baseline:
            start = time.perf_counter()
            with concurrent.futures.ThreadPoolExecutor(jobs) as pool:  # the selections split over the jobs
                baselines = list(pool.map(lambda part: run_tests(pristine, part, args.timeout),
                                          [baseline_tests[i::jobs] for i in range(jobs) if baseline_tests[i::jobs]]))
            for baseline in baselines:
                if baseline.returncode != 0:
                    print(f"the unmutated copy fails its tests, so no mutation can be judged:\n"
                          f"{baseline.stdout[-3000:]}")
                    return 1
            print(f"baseline: {len(baseline_tests)} test selections pass unmutated "
                  f"({time.perf_counter() - start:.0f} s)")

        def judge(index: int, mutation: Mutation) -> tuple[Mutation, str, str]:
            if mutation.name in stale:
                return mutation, "STALE", stale[mutation.name]
            copy = Path(tmp) / f"mutant-{index}"
            shutil.copytree(pristine, copy)
            target = copy / mutation.path
            target.write_text(target.read_text().replace(mutation.find, mutation.replace))
            t0 = time.perf_counter()
            result = run_tests(copy, mutation.tests, args.timeout)
            shutil.rmtree(copy, ignore_errors=True)
            verdict = "caught" if result.returncode == 1 else ("SURVIVED" if result.returncode == 0 else "ERROR")
            lines = [ln for ln in result.stdout.splitlines() if ln.startswith(("FAILED", "ERROR"))]
            print(f"{verdict:8} {mutation.name}", flush=True)
            return mutation, verdict, f"{time.perf_counter() - t0:.0f} s; " + (lines[0] if lines else
                                                                             result.stdout[-200:])

        with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
            results = list(pool.map(judge, range(len(chosen)), chosen))  # in the listed order
    print("\n| mutation | file | verdict | evidence |\n|---|---|---|---|")
    for mutation, verdict, evidence in results:
        print(f"| {mutation.name} | {mutation.path} | {verdict} | {evidence.strip()[:160]} |")
    survivors = [m.name for m, verdict, _ in results if verdict != "caught"]
    print(f"\n{len(results) - len(survivors)} of {len(results)} mutations caught" +
          (f"; not caught: {', '.join(survivors)}" if survivors else ""))
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main())
