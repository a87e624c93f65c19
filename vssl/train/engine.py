"""The pretraining loop: :func:`train_step` (one micro-step) and the epoch loop of
:func:`pretrain`, on Accelerate (device placement, DDP, mixed precision, gradient accumulation).

One call of :func:`pretrain` runs one (dataset, method, seed) job into ``out_dir``:

1. *Plan* (:mod:`vssl.train.plan`): validate everything (method, dataset and its files,
   augmentation preset, batch split across processes, existing outputs, the checkpoint to
   resume) before any model is built or MLflow run started; errors are ``ConfigError``
   subclasses and leave nothing behind. Then the main process locks the run folder
   (:mod:`vssl.train.run_lock`): a second trainer on it fails at once.
2. *Assemble* (:mod:`vssl.train.assembly`): the method (seeded), its optimiser and schedule
   and the online probe (a linear classifier on detached backbone features with its own SGD; its
   cross-entropy is added to the loss, so DDP averages its gradients with the rest).
3. *Train* (here): each epoch's batch order and augmentations depend only on (seed, epoch)
   (:mod:`vssl.train.loader`), and the global RNG (VSSL's reparameterisation noise) is reseeded
   from (seed, epoch, rank) at the start of every epoch, so stopping after epoch e and resuming
   gives exactly the numbers of an uninterrupted run (on CPU). A step never waits for the
   device: losses, the collapse statistic and the non-finite check stay on it and are read
   every ``log_every`` steps and at the epoch's end (:class:`vssl.train.guards.NonFiniteWatch`);
   CNNs run channels-last and compiled where ``pretrain.channels_last``/``compile`` say so.
4. After every epoch: every ``eval_every`` epochs (and at the end) the probe's top-1 on the
   test split, every ``knn_every`` epochs (and at the end) the kNN monitor
   (:mod:`vssl.train.monitor`), guards (:mod:`vssl.train.guards`),
   MLflow metrics, and every ``checkpoint_every`` epochs ``checkpoint.partial.pt`` +
   ``history.csv``; at the end ``checkpoint.pt`` (complete), ``history.csv`` and
   ``metrics.json`` (:mod:`vssl.train.records`).
5. SIGTERM/SIGINT (:mod:`vssl.train.signals`): the run stops before the next micro-step, saves
   its last completed epoch (kept in memory when the cadence did not checkpoint it) to
   ``checkpoint.partial.pt`` and raises ``Interrupted`` (exit 143/130).

Existing outputs: without ``--resume`` a directory that already holds a checkpoint (complete or
partial), metrics or history is an error unless ``--overwrite`` (which deletes those files
first). With ``--resume`` the checkpoint must match method, dataset, seed, epoch count and the
training configuration; a complete run is not retrained (its metrics.json is rewritten if
missing). docs/architecture.md, "Pretraining: resume and signals", has the details.
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from vssl.train import records
from vssl.train.plan import Plan, PretrainJob, plan_pretraining, process_state, use_cpu
from vssl.train.run_lock import hold_run_folder
from vssl.train.signals import Interrupted, StopSignals
from vssl.train.snapshot import StateSnapshot

log = logging.getLogger("vssl.train")


def train_step(
    accelerator: Any,
    model: nn.Module,
    optimizers: tuple[Any, ...],
    x1: Tensor,
    x2: Tensor,
    y: Tensor,
    check: Callable[[Tensor], None] | None = None,
    clip: tuple[list[Tensor], float] | None = None,
) -> dict[str, Tensor]:
    """One micro-step: forward (``TrainModule``), ``check(loss)`` (the engine's queues a
    non-finite test on the device, :class:`vssl.train.guards.NonFiniteWatch`, and never reads
    the loss back), backward of ``loss + probe_loss`` (Accelerate scales it by 1/accumulation
    steps), then the optimisers step and clear their gradients (only on the accumulation
    boundary: prepared optimisers skip otherwise). The scheduler and the EMA update belong to
    the caller. Nothing here waits for the device (benchmarks/throughput.py times this
    function).

    ``clip = (params, max_norm)``: on the accumulation boundary the global norm of these
    parameters' gradients is measured before they are clipped to ``max_norm`` (``inf``: measured,
    not clipped) and returned as ``out["grad_norm"]`` (a 0-d tensor on the device)."""
    with accelerator.accumulate(model):
        out = model(x1, x2, y)
        if check is not None:
            check(out["loss"])
        accelerator.backward(out["loss"] + out["probe_loss"])
        if clip is not None and accelerator.sync_gradients:
            params, max_norm = clip  # the method's parameters: the probe has its own loss
            norm = _grad_norm(accelerator, params, max_norm)
            if norm is not None:
                out["grad_norm"] = norm.detach()
        for opt in optimizers:
            opt.step()
        for opt in optimizers:
            opt.zero_grad(set_to_none=True)
    return out


def _grad_norm(accelerator: Any, params: list[Tensor], max_norm: float) -> Tensor | None:
    """The gradients' global norm before clipping (None where Accelerate's backend gives none),
    and the clip to ``max_norm`` unless it is ``inf``: then only the norm, which leaves the
    gradients untouched (no multiplication by 1)."""
    if math.isinf(max_norm):
        accelerator.unscale_gradients()  # fp16's loss scale; a no-op otherwise
        grads = [p.grad for p in params if p.grad is not None]
        return torch.nn.utils.get_total_norm(grads) if grads else None
    return accelerator.clip_grad_norm_(params, max_norm)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def pretrain(job: PretrainJob) -> dict[str, Any]:
    """Run one pretraining job (see the module docstring); returns the final metrics
    (``{}`` on non-main processes and for a ``stop_after`` run)."""
    # Denormal floats make CPU convolutions and BatchNorm ~3x slower here (measured on the
    # quick profile); flushing them to zero changes no result beyond 1e-38.
    torch.set_flush_denormal(True)
    # SIGTERM/SIGINT: see vssl.train.signals; `held`: the run folder's lock (main process)
    with StopSignals() as stop, contextlib.ExitStack() as held:
        plan = plan_pretraining(job, process_state())
        if process_state().is_main_process:
            held.enter_context(hold_run_folder(job.out_dir))  # before touching its files
        _prepare_folder(plan)
        ck = plan.resume_ckpt
        if ck is not None and ck.get("complete"):
            log.info(
                "%s is already complete (%d epochs); nothing to train", job.out_dir, ck["epoch"]
            )
            return records.restore_outputs(job.out_dir, ck, process_state().is_main_process)
        runner = _Runner(plan)
        runner.stop = stop
        metrics = runner.run()
    if stop.received is not None:
        log.warning("a stop signal arrived after the last training step; the run completed")
    return metrics


def _prepare_folder(plan: Plan) -> None:
    """Before training (main process, then a sync): remove the temporary files a write killed
    outright left in the run folder, and, when the plan starts over (``--overwrite``, or an
    incompatible checkpoint discarded), the run's files."""
    from vssl.io import remove_stale_temporaries

    state = process_state()
    out = Path(plan.job.out_dir)
    if state.is_main_process:
        for stale in remove_stale_temporaries(out, records.RUN_FILES):
            log.info("removed %s, left by an interrupted write", stale)
        if plan.start_over:
            for name in records.RUN_FILES:
                (out / name).unlink(missing_ok=True)
    state.wait_for_everyone()


class _StopAtSignal:
    """``TrainBatches`` with ``check(epoch, micro)`` called before each micro-batch is drawn
    (and before an epoch's end), where a pending stop signal may end the run; other
    attributes are the wrapped object's."""

    def __init__(self, batches: Any, check: Callable[[int, int], None]) -> None:
        self._batches, self._check = batches, check

    def __getattr__(self, name: str) -> Any:
        return getattr(self._batches, name)

    def epoch(self, epoch: int) -> Any:
        micro = 0
        it = iter(self._batches.epoch(epoch))
        try:
            while True:
                self._check(epoch, micro)
                try:
                    batch = next(it)
                except StopIteration:
                    return
                micro += 1
                yield batch
        finally:
            # Close the epoch's batches now, joining any DataLoader workers: the stop's
            # traceback holds this frame, and workers left to the garbage collector outlive the
            # run; PyTorch's SIGCHLD handler then reports those killed by the same SIGTERM as
            # a crash, possibly at interpreter exit (and during the join itself, which
            # loader.shut_down_workers guards).
            close = getattr(it, "close", None)
            if close is not None:
                close()


# With several processes, how often (micro-steps) they agree on whether a signal arrived.
SIGNAL_SYNC_EVERY = 8


class _Runner:
    """State of one pretraining run (built only after planning)."""

    stop: StopSignals | None = None  # set by pretrain(); None: signals are not handled
    last_ckpt_epoch: int | None = None  # the completed epochs in last_ckpt
    _snapshot: StateSnapshot | None = None  # see _remember
    _snapshot_epoch: int | None = None  # the epoch it holds (None: the last one is on disk)
    _epoch_now = 0  # the epoch in progress (0-based)
    _interrupted: Interrupted | None = None  # the stop already under way (see _stop_on_signal)

    def __init__(self, plan: Plan) -> None:
        from accelerate import Accelerator
        from accelerate.utils import DistributedDataParallelKwargs

        from vssl.train.assembly import (
            build_optimisers,
            build_train_module,
            compile_train_module,
            grad_clip,
            resolve_compile_mode,
            use_channels_last,
            use_compile,
        )
        from vssl.train.guards import NonFiniteWatch
        from vssl.train.loader import TrainBatches

        self.plan, self.job, self.params = plan, plan.job, plan.job.params
        self.out_dir = Path(self.job.out_dir)
        self.acc = Accelerator(
            cpu=use_cpu(),
            mixed_precision=plan.mixed_precision,
            gradient_accumulation_steps=plan.accum,
            kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=False)],
        )
        self.device = self.acc.device
        self.is_main = self.acc.is_main_process
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed input sizes; determinism is a CPU promise

        _seed_everything(self.job.seed)
        sync_bn = self.acc.num_processes > 1 and self.device.type == "cuda"
        module = build_train_module(plan, sync_batchnorm=sync_bn)
        self.trainable = bool(getattr(module.method, "trainable", True))
        pc = self.params.pretrain
        self.channels_last = use_channels_last(
            pc.channels_last,
            self.device.type,
            self.params.backbone.name,
            width=self.params.backbone.width,
            image_size=plan.spec.image_size,
        )
        if self.channels_last:  # 4-D (convolution) weights only; the layout survives .to()
            module = module.to(memory_format=torch.channels_last)
        self.compiled = False
        self.compile_mode: str | None = None  # the torch.compile mode, where compiled
        if self.trainable and use_compile(pc.compile, self.device.type):
            self.compile_mode = resolve_compile_mode(
                pc.compile_mode, self.device.type, self.acc.num_processes
            )
            self.compiled = compile_train_module(module, self.compile_mode)
        self.total_steps = plan.steps_per_epoch * plan.total_epochs
        self.optimizer = self.scheduler = self.probe_opt = None
        if self.trainable:
            opts = build_optimisers(plan, module)
            self.scheduler = opts.scheduler
            self.model, self.optimizer, self.probe_opt = self.acc.prepare(
                module, opts.optimizer, opts.probe_optimizer
            )
        else:
            self.model = module.to(self.device)
        self.method = self.acc.unwrap_model(self.model).method
        self.probe = self.acc.unwrap_model(self.model).probe
        self.clip = grad_clip(plan, self.method)

        # Data on the device (batched augmentation), crops in DataLoader workers and the rest on
        # the device (split, image folders), or per sample in the workers.
        spec = plan.spec
        self.batches = TrainBatches(
            plan.train,
            plan.recipe,
            spec.mean,
            spec.std,
            gpu_augment=plan.gpu_augment,
            device=self.device,
            seed=self.job.seed,
            global_batch=self.params.pretrain.batch_size,
            accum=plan.accum,
            world=plan.world,
            rank=self.acc.process_index,
            num_workers=self.params.data.workers(),
            channels_last=self.channels_last,
            compile_augment=self.compiled,
        )
        self.nonfinite = NonFiniteWatch(self.device)
        for src in (plan.test, plan.knn_train):
            if "images" in src and plan.gpu_augment:
                src["images"] = src["images"].to(self.device)
                src["labels"] = src["labels"].to(self.device)

        diagnostics = list(getattr(self.method, "diagnostics", ()))
        self.record = records.RunRecord(diagnostics=diagnostics)
        self.start_epoch = 0
        self.last_ckpt: str | None = None
        if plan.resume_ckpt is not None:
            self._restore(plan.resume_ckpt)

    # -- checkpoint ----------------------------------------------------------------------------

    def _restore(self, ck: dict[str, Any]) -> None:
        from vssl.train.checkpoint import set_rng_state

        self.method.load_state_dict(ck["model"])
        if self.trainable:
            self.probe.load_state_dict(ck["online_probe"]["model"])
            self.optimizer.load_state_dict(ck["optimizer"])
            self.probe_opt.load_state_dict(ck["online_probe"]["optimizer"])
            self.scheduler.load_state_dict(ck["scheduler"])
        set_rng_state(ck["rng"])
        if ck.get("world_size", self.acc.num_processes) != self.acc.num_processes:
            log.warning(
                "resuming a %s-process run with %s processes: batches are split differently, "
                "so the numbers will not match an uninterrupted run exactly",
                ck.get("world_size"),
                self.acc.num_processes,
            )
        # Checkpoints from before the split path never split an image folder.
        was = ck.get("augment", "per_sample" if not self.plan.spec.in_memory else self.plan.augment)
        if was != self.plan.augment:
            log.warning(
                "resuming a run augmented %s with %s augmentation (pretrain.gpu_augment=%s on "
                "%s): the views are drawn differently, so the numbers will not match an "
                "uninterrupted run exactly",
                was,
                self.plan.augment,
                self.params.pretrain.gpu_augment,
                self.device.type,
            )
        self.start_epoch = int(ck["epoch"])
        self.record = records.RunRecord.from_checkpoint(ck, self.record.diagnostics)
        self.last_ckpt, self.last_ckpt_epoch = str(self.plan.resume_path), self.start_epoch
        log.info("resuming %s from epoch %d", self.last_ckpt, self.start_epoch)

    def _contents(self, epoch: int, complete: bool, final: dict | None) -> dict[str, Any]:
        return records.checkpoint_contents(
            self.plan,
            self.record,
            epoch=epoch,
            complete=complete,
            final=final,
            method=self.method,
            optimizer=self.optimizer,
            scheduler=self.scheduler,
            probe=self.probe if self.trainable else None,
            probe_optimizer=self.probe_opt,
            wall_time_s=self._wall(),
            world_size=self.acc.num_processes,
        )

    def _checkpoint(self, epoch: int) -> None:
        """Save checkpoint.partial.pt and history.csv of an unfinished run (main process), then
        sync. The state reaches the host through the snapshot's pinned buffers (one wait for
        all copies, instead of torch.save's blocking copy per tensor)."""
        if self.is_main:
            snapshot = self._host_state(epoch)
            path = records.save_progress(self.out_dir, snapshot.read())
            self.last_ckpt = str(path)
        self.last_ckpt_epoch, self._snapshot_epoch = epoch, None
        self.acc.wait_for_everyone()

    # -- stopping on SIGTERM / SIGINT (vssl.train.signals) -------------------------------------
    #
    # The state saved on a signal is that of the last completed epoch: a mid-epoch state would
    # need the loader to skip into an epoch and the epoch's running sums, and an epoch-boundary
    # state resumes bit-exactly on CPU like any periodic checkpoint. Epochs that the cadence
    # does not checkpoint are kept in memory for that purpose: a host copy in the main process,
    # refreshed in place and without waiting for the device (vssl.train.snapshot).

    def _remember(self, epoch: int) -> None:
        """After an epoch without a checkpoint: keep its state for a checkpoint on a signal."""
        if self.stop is None or not self.params.pretrain.checkpoint_on_signal:
            return
        if self.is_main:
            self._host_state(epoch)
        self._snapshot_epoch = epoch

    def _host_state(self, epoch: int) -> StateSnapshot:
        """Start copying the state after ``epoch`` completed epochs into the host snapshot."""
        if self._snapshot is None:
            self._snapshot = StateSnapshot()
        self._snapshot.update(self._contents(epoch, False, None))
        return self._snapshot

    def _signal_check(self, epoch: int, micro: int) -> None:
        """Before micro-step ``micro`` of ``epoch`` (0-based): stop if a signal arrived. Several
        processes agree (every ``SIGNAL_SYNC_EVERY`` micro-steps) so that all stop together."""
        self._epoch_now = epoch
        received = self.stop.received if self.stop is not None else None
        if self.acc.num_processes > 1:
            if micro % SIGNAL_SYNC_EVERY:
                return
            flag = torch.tensor([received or 0], device=self.device)
            received = int(self.acc.gather(flag).max()) or None
        if received:
            self._stop_on_signal(received, epoch, sync=True)

    def _stop_on_signal(self, signum: int, epoch: int, sync: bool) -> None:
        """Save the last completed epoch (if not on disk yet and ``checkpoint_on_signal``), tag
        the MLflow run and raise :class:`Interrupted` (the run then ends KILLED). ``sync``:
        wait for the other processes (False when they may not get here together)."""
        from vssl import tracking

        if self._interrupted is not None:
            # An error while stopping (a DataLoader worker found dead as the epoch's batches
            # close) is part of the same stop: it is saved and tagged already.
            raise self._interrupted
        step = self.record.global_step - epoch * self.plan.steps_per_epoch
        path, done, note = self.last_ckpt, self.last_ckpt_epoch, ""
        if self._snapshot_epoch is not None:
            if self.is_main and self._snapshot is not None:
                path = str(records.save_progress(self.out_dir, self._snapshot.read()))
            done = self._snapshot_epoch
        elif path is None:
            note = (
                "no epoch completed yet; a rerun starts over"
                if self.params.pretrain.checkpoint_on_signal
                else "pretrain.checkpoint_on_signal is false; a rerun starts over"
            )
        if sync:
            self.acc.wait_for_everyone()
        exc = Interrupted(
            signum, epoch=epoch + 1, step=step, checkpoint=path, checkpoint_epoch=done, note=note
        )
        if self.is_main:  # the CLI prints exc.message(), once
            tracking.set_tags({"interrupted": f"{exc.signal_name} at epoch {epoch + 1}"})
        self._interrupted = exc
        raise exc

    def _finish(self, epoch: int, metrics: dict[str, Any]) -> dict[str, Any]:
        """The complete checkpoint, metrics.json and the MLflow artifacts (one path for trained
        and untrained runs)."""
        from vssl import tracking

        contents = self._contents(epoch, True, metrics) if self.is_main else None
        out = records.finish(self.acc, self.out_dir, contents, self.params)
        if self.is_main:
            tracking.set_tags({"complete": "true"})
        return out

    def _wall(self) -> float:
        return self.record.wall_time_s + (time.perf_counter() - self.t_start)

    def _final_metrics(self) -> dict[str, Any]:
        from vssl.train.monitor import steady_images_per_second

        metrics = records.final_metrics(
            self.plan,
            self.record,
            wall_time_s=self._wall(),
            world_size=self.acc.num_processes,
            device=self.device.type,
        )
        metrics["images_per_second_steady"] = steady_images_per_second(
            self.record.history, first_epoch_here=self.start_epoch + 1
        )
        metrics["compile"] = self._compile_label()
        return metrics

    def _compile_label(self) -> str:
        """How the step ran: ``eager``, or the torch.compile mode (``reduce-overhead``: CUDA
        graphs)."""
        return self.compile_mode if self.compiled and self.compile_mode else "eager"

    # -- evaluation ----------------------------------------------------------------------------

    def _evaluate(self, knn: bool, probe: bool = True) -> dict[str, float | None]:
        """The monitors due: kNN if ``knn``, the online probe if ``probe`` or ``knn`` (the test
        features are there then); neither: no pass over the test split at all."""
        from vssl.train.monitor import evaluate

        if not (knn or probe):
            return {"online_probe_top1": None, "knn_top1": None}
        return evaluate(
            self.method.backbone,
            self.probe if self.trainable else None,
            self.plan.test,
            self.plan.knn_train if knn else None,
            self.acc,
            batch_size=max(self.plan.micro_batch, 256),
            num_classes=self.plan.spec.num_classes,
        )

    def _eval_due(self, epoch_done: int) -> bool:
        """The online probe's test pass: every ``eval_every`` epochs and after the last one."""
        every = self.params.pretrain.eval_every
        return epoch_done % every == 0 or epoch_done == self.plan.total_epochs

    def _knn_due(self, epoch_done: int) -> bool:
        every = self.params.pretrain.knn_every
        if every <= 0:
            return False
        return epoch_done % every == 0 or epoch_done == self.plan.total_epochs

    # -- training ------------------------------------------------------------------------------

    def _train_epoch(self, epoch: int, progress: Any) -> dict[str, Any]:
        """One epoch of training steps. No step reads a value back from the device: the loss
        sums, the collapse statistic and the non-finite check stay there, and the host reads
        them only every ``log_every`` optimiser steps (:meth:`_read_progress`) and at the end
        of the epoch (:meth:`_epoch_row`), before anything is evaluated or saved."""
        from vssl.train.loader import STEP, mix_seed
        from vssl.train.monitor import embedding_spread

        _seed_everything(mix_seed(self.job.seed, STEP, epoch, self.acc.process_index))
        self.model.train()
        rec = self.record
        sums: dict[str, Tensor] = defaultdict(lambda: torch.zeros((), device=self.device))
        n_micro = n_steps = 0  # micro-steps, optimiser steps
        lr = tau = None
        log_every = self.params.pretrain.log_every
        t0 = time.perf_counter()
        for x1, x2, y in self.batches.epoch(epoch):
            step = rec.global_step + 1  # the optimiser step this micro-step belongs to
            out = train_step(
                self.acc,
                self.model,
                (self.optimizer, self.probe_opt),
                x1,
                x2,
                y,
                check=lambda loss, s=step: self.nonfinite.observe(loss, s),
                clip=self.clip,
            )
            n_micro += 1
            if not rec.terms:
                rec.terms = records.loss_terms(out, rec.diagnostics)
            for k, v in out.items():
                if k not in ("feats", "z") and v.ndim == 0:
                    sums[k] += v.detach().float()
            sums["z_spread"] += embedding_spread(out["z"])
            if self.acc.sync_gradients:
                n_steps += 1
                lr = self.scheduler.get_last_lr()[0]
                self.scheduler.step()
                rec.global_step += 1
                tau = self.method.momentum_update(rec.global_step, self.total_steps)
                if progress is not None:
                    progress.update(1)
                step_in_epoch = rec.global_step - epoch * self.plan.steps_per_epoch
                if step_in_epoch % log_every == 0:
                    self._read_progress(epoch, step_in_epoch, sums, n_micro, lr, t0, progress)
        return self._epoch_row(sums, n_micro, n_steps, lr, tau, t0)

    def _check_nonfinite(self) -> None:
        """Stop (NonFiniteLossError) if any step so far had a non-finite loss: a host read."""
        self.nonfinite.raise_if_bad(
            self.acc, self.plan.steps_per_epoch, self.last_ckpt, self.record.global_step
        )

    def _read_progress(
        self,
        epoch: int,
        step_in_epoch: int,
        sums: dict[str, Tensor],
        n_micro: int,
        lr: float,
        t0: float,
        progress: Any,
    ) -> None:
        """Every ``log_every`` optimiser steps: the non-finite check, then the running loss and
        embedding spread on the progress bar or in a log line (one read of both)."""
        self._check_nonfinite()
        ips = step_in_epoch * self.params.pretrain.batch_size / max(time.perf_counter() - t0, 1e-9)
        loss, spread = (torch.stack([sums["loss"], sums["z_spread"]]) / n_micro).tolist()
        if progress is not None:
            progress.set_postfix(loss=f"{loss:.4f}", img_s=f"{ips:.0f}", refresh=False)
        elif self.is_main:
            log.info(
                "epoch %d/%d step %d/%d loss %.4f spread %.3f lr %.4g img/s %.1f",
                epoch + 1,
                self.plan.total_epochs,
                step_in_epoch,
                self.plan.steps_per_epoch,
                loss,
                spread,
                lr,
                ips,
            )

    def _epoch_row(
        self,
        sums: dict[str, Tensor],
        n_micro: int,
        n_steps: int,
        lr: float | None,
        tau: float | None,
        t0: float,
    ) -> dict[str, Any]:
        """The end of an epoch's training: the non-finite check (before the epoch is evaluated
        or saved), the epoch time and the history row of the epoch means (per micro-step; the
        gradient norm, measured once per optimiser step, per optimiser step)."""
        self._check_nonfinite()  # also waits for the device: the epoch time is complete
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        pc = self.params.pretrain
        images = self.plan.steps_per_epoch * pc.batch_size
        rec = self.record
        rec.images_seen += images
        rec.train_time_s += dt
        keys = list(sums)  # the same order on every process
        row: dict[str, Any] = {}
        if keys:
            means = torch.stack([sums[k] for k in keys]) / max(n_micro, 1)
            if self.acc.num_processes > 1:
                means = self.acc.reduce(means, reduction="mean")
            row = dict(zip(keys, means.tolist(), strict=True))
        if "grad_norm" in row and n_steps:
            row["grad_norm"] *= n_micro / n_steps
        row["online_probe_loss"] = row.pop("probe_loss", None)
        row.update(lr=lr, tau=tau, images_per_second=images / dt if dt > 0 else None)
        row["epoch_time_s"] = dt
        return row

    def _progress(self) -> Any:
        show = self.job.show_progress
        if show is None:
            show = sys.stderr.isatty()
        if not (show and self.is_main):
            return None
        from tqdm.auto import tqdm

        return tqdm(
            total=self.plan.steps_per_epoch * self.plan.total_epochs,
            initial=self.record.global_step,
            unit="step",
            dynamic_ncols=True,
        )

    # -- main loop -----------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        from vssl import tracking

        self.t_start = time.perf_counter()
        if self.stop is not None:
            # From here on a signal only stops the run at the next micro-step (or epoch) start.
            self.stop.defer()
            self.batches = _StopAtSignal(self.batches, self._signal_check)
        job = self.job
        ctx: Any = contextlib.nullcontext()
        if self.is_main:
            ctx = tracking.start_run(
                self.params,
                stage="pretrain",
                dataset=job.dataset,
                method=job.method,
                variant=job.variant,
                seed=job.seed,
                run_id=self.record.mlflow_run_id,
            )
        with ctx as active:
            if active is not None:
                self.record.mlflow_run_id = active.info.run_id
                tracking.set_tags(
                    {
                        "device": self.device.type,
                        "world_size": self.acc.num_processes,
                        "mixed_precision": self.plan.mixed_precision,
                        "gpu_augment": self.plan.gpu_augment,
                        "augment": self.plan.augment,
                        "compile": self._compile_label(),
                        "channels_last": self.channels_last,
                        "total_epochs": self.plan.total_epochs,
                        # the params log `data_root` as written; VSSL_DATA_ROOT may override it
                        "data_root": str(self.params.data_root_path().resolve()),
                        "complete": "false",  # "true" with the complete checkpoint
                    }
                )
            if not self.trainable:
                return self._run_untrained()
            return self._train_loop()

    def _train_loop(self) -> dict[str, Any]:
        from vssl import tracking
        from vssl.train.guards import NonFiniteLossError, epoch_warnings

        p, pc = self.plan, self.params.pretrain
        stop = self.job.stop_after or p.total_epochs
        logvar_bounds = self.method.logvar_bounds
        progress = self._progress()
        redirect: Any = contextlib.nullcontext()
        if progress is not None:
            from tqdm.contrib.logging import logging_redirect_tqdm

            # log lines go through tqdm.write, above the bar instead of through it
            redirect = logging_redirect_tqdm(loggers=[logging.getLogger("vssl")])
        with redirect:
            try:
                for epoch in range(self.start_epoch, min(stop, p.total_epochs)):
                    row = {"epoch": epoch + 1, **self._train_epoch(epoch, progress)}
                    t = time.perf_counter()
                    row.update(
                        self._evaluate(
                            knn=self._knn_due(epoch + 1), probe=self._eval_due(epoch + 1)
                        )
                    )
                    row["monitor_time_s"] = time.perf_counter() - t
                    self.record.monitor_time_s += row["monitor_time_s"]
                    self.record.history.append(row)
                    if self.is_main:
                        records.log_epoch(row, p.total_epochs)
                    for msg in epoch_warnings(row, logvar_bounds):
                        log.warning("epoch %d: %s", epoch + 1, msg)
                        if self.is_main:
                            tracking.set_tags({"warning": msg})
                    done = epoch + 1
                    if done == p.total_epochs:
                        break
                    t = time.perf_counter()
                    if done % pc.checkpoint_every == 0 or done == stop:
                        self._checkpoint(done)
                    else:
                        self._remember(done)
                    self.record.checkpoint_time_s += time.perf_counter() - t
            except Exception as e:
                received = self.stop.received if self.stop is not None else None
                if received is None or isinstance(e, NonFiniteLossError):
                    raise
                # An error while a signal is pending is its consequence (DataLoader workers
                # killed by the same SIGTERM): stop as for the signal, without a sync.
                log.warning("stopping on a signal after %s: %s", type(e).__name__, e)
                self._stop_on_signal(received, self._epoch_now, sync=False)
            finally:
                if progress is not None:
                    progress.close()
        if self.job.stop_after is not None and self.job.stop_after < p.total_epochs:
            if self.is_main:
                # FINISHED in MLflow, but resumable: say where it stands
                tracking.set_tags({"stopped_after_epoch": max(stop, self.start_epoch)})
            if stop <= self.start_epoch:
                log.info(
                    "the checkpoint already holds epoch %d of %d, past --stop-after %d; nothing "
                    "to train (resumable)",
                    self.start_epoch,
                    p.total_epochs,
                    stop,
                )
            else:
                log.info("stopped after epoch %d of %d (resumable)", stop, p.total_epochs)
            return {}
        return self._finish(p.total_epochs, self._final_metrics())

    def _run_untrained(self) -> dict[str, Any]:
        """The `random` method: save the initial weights (epoch 0), kNN on them, no probe."""
        from vssl import tracking

        ev = self._evaluate(knn=self.params.pretrain.knn_every > 0)
        self.record.history = []
        metrics = self._final_metrics()
        metrics.update(epochs=0, online_probe_top1=None, knn_top1=ev["knn_top1"])
        metrics["images_per_second"] = metrics["images_per_second_steady"] = None
        if self.is_main:
            tracking.log_metrics({"knn_top1": ev["knn_top1"]}, step=0)
        return self._finish(0, metrics)
