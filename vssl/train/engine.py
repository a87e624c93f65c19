"""The pretraining loop: :func:`train_step` (one micro-step) and the epoch loop of
:func:`pretrain`, on Accelerate (device placement, DDP, mixed precision, gradient accumulation).

One call of :func:`pretrain` runs one (dataset, method, seed) job into ``out_dir``:

1. *Plan* (:mod:`vssl.train.plan`): validate everything (method, dataset and its files,
   augmentation preset, batch split across processes, existing outputs, the checkpoint to
   resume) before any model is built or MLflow run started; errors are ``ConfigError``
   subclasses and leave nothing behind.
2. *Assemble* (:mod:`vssl.train.assembly`): the method (seeded), its optimiser and schedule
   and the online probe (a linear classifier on detached backbone features with its own SGD; its
   cross-entropy is added to the loss, so DDP averages its gradients with the rest).
3. *Train* (here): each epoch's batch order and augmentations depend only on (seed, epoch)
   (:mod:`vssl.train.loader`), and the global RNG (VSSL's reparameterisation noise) is reseeded
   from (seed, epoch, rank) at the start of every epoch, so stopping after epoch e and resuming
   gives exactly the numbers of an uninterrupted run (on CPU).
4. After every epoch: the probe's top-1 on the test split, every ``knn_every`` epochs (and at
   the end) the kNN monitor (:mod:`vssl.train.monitor`), guards (:mod:`vssl.train.guards`),
   MLflow metrics, and every ``checkpoint_every`` epochs (and at the end) ``checkpoint.pt`` +
   ``history.csv``; at the end ``metrics.json`` (:mod:`vssl.train.records`).

Existing outputs: without ``--resume`` a directory that already holds a checkpoint, metrics or
history is an error unless ``--overwrite`` (which deletes those three files first). With
``--resume`` the last checkpoint must match method, dataset, seed, epoch count and the training
configuration; a complete run is not retrained (its metrics.json is rewritten if missing).
"""

from __future__ import annotations

import contextlib
import logging
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
from vssl.train.checkpoint import CHECKPOINT_NAME
from vssl.train.plan import Plan, PretrainJob, plan_pretraining, process_state, use_cpu

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
    """One micro-step: forward (``TrainModule``), ``check(loss)`` before anything changes,
    backward of ``loss + probe_loss`` (Accelerate scales it by 1/accumulation steps), then the
    optimisers step and clear their gradients (only on the accumulation boundary: prepared
    optimisers skip otherwise). The scheduler and the EMA update belong to the caller."""
    with accelerator.accumulate(model):
        out = model(x1, x2, y)
        if check is not None:
            check(out["loss"])
        accelerator.backward(out["loss"] + out["probe_loss"])
        if clip is not None and accelerator.sync_gradients:
            params, max_norm = clip  # the method's parameters: the probe has its own loss
            accelerator.clip_grad_norm_(params, max_norm)
        for opt in optimizers:
            opt.step()
        for opt in optimizers:
            opt.zero_grad(set_to_none=True)
    return out


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
    plan = plan_pretraining(job, process_state())
    ck = plan.resume_ckpt
    if ck is not None and ck.get("complete"):
        log.info("%s is already complete (%d epochs); nothing to train", job.out_dir, ck["epoch"])
        return records.restore_outputs(job.out_dir, ck, process_state().is_main_process)
    if job.overwrite:
        state = process_state()
        if state.is_main_process:
            for name in records.OUTPUT_NAMES:
                (Path(job.out_dir) / name).unlink(missing_ok=True)
        state.wait_for_everyone()
    return _Runner(plan).run()


class _Runner:
    """State of one pretraining run (built only after planning)."""

    def __init__(self, plan: Plan) -> None:
        from accelerate import Accelerator
        from accelerate.utils import DistributedDataParallelKwargs

        from vssl.train.assembly import build_optimisers, build_train_module, grad_clip
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

        # Data on the device (batched augmentation) or per-sample in DataLoader workers.
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
            num_workers=self.params.data.num_workers,
        )
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
        self.start_epoch = int(ck["epoch"])
        self.record = records.RunRecord.from_checkpoint(ck, self.record.diagnostics)
        self.last_ckpt = str(self.out_dir / CHECKPOINT_NAME)
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
        """Save checkpoint.pt and history.csv of an unfinished run (main process), then sync."""
        if self.is_main:
            path = records.save_progress(self.out_dir, self._contents(epoch, False, None))
            self.last_ckpt = str(path)
        self.acc.wait_for_everyone()

    def _finish(self, epoch: int, metrics: dict[str, Any]) -> dict[str, Any]:
        """The complete checkpoint, metrics.json and the MLflow artifacts (one path for trained
        and untrained runs)."""
        contents = self._contents(epoch, True, metrics) if self.is_main else None
        return records.finish(self.acc, self.out_dir, contents, self.params)

    def _wall(self) -> float:
        return self.record.wall_time_s + (time.perf_counter() - self.t_start)

    def _final_metrics(self) -> dict[str, Any]:
        return records.final_metrics(
            self.plan,
            self.record,
            wall_time_s=self._wall(),
            world_size=self.acc.num_processes,
            device=self.device.type,
        )

    # -- evaluation ----------------------------------------------------------------------------

    def _evaluate(self, knn: bool) -> dict[str, float | None]:
        from vssl.train.monitor import evaluate

        return evaluate(
            self.method.backbone,
            self.probe if self.trainable else None,
            self.plan.test,
            self.plan.knn_train if knn else None,
            self.acc,
            batch_size=max(self.plan.micro_batch, 256),
            num_classes=self.plan.spec.num_classes,
        )

    def _knn_due(self, epoch_done: int) -> bool:
        every = self.params.pretrain.knn_every
        if every <= 0:
            return False
        return epoch_done % every == 0 or epoch_done == self.plan.total_epochs

    # -- training ------------------------------------------------------------------------------

    def _check_finite(self, loss: Tensor, epoch: int) -> None:
        """Raise NonFiniteLossError if the loss is NaN/inf on any process (all agree)."""
        from vssl.train.guards import raise_if_nonfinite

        step = self.record.global_step + 1
        raise_if_nonfinite(loss, self.acc, step, epoch + 1, self.last_ckpt)

    def _train_epoch(self, epoch: int, progress: Any) -> dict[str, Any]:
        from vssl.train.loader import STEP, mix_seed
        from vssl.train.monitor import embedding_spread

        _seed_everything(mix_seed(self.job.seed, STEP, epoch, self.acc.process_index))
        self.model.train()
        rec = self.record
        sums: dict[str, Tensor] = defaultdict(lambda: torch.zeros((), device=self.device))
        n_micro = 0
        lr = tau = None
        pc = self.params.pretrain
        t0 = time.perf_counter()
        for x1, x2, y in self.batches.epoch(epoch):
            out = train_step(
                self.acc,
                self.model,
                (self.optimizer, self.probe_opt),
                x1,
                x2,
                y,
                check=lambda loss, e=epoch: self._check_finite(loss, e),
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
                lr = self.scheduler.get_last_lr()[0]
                self.scheduler.step()
                rec.global_step += 1
                tau = self.method.momentum_update(rec.global_step, self.total_steps)
                self._report_step(epoch, sums, n_micro, lr, t0, progress, pc.log_every)
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        images = self.plan.steps_per_epoch * pc.batch_size
        rec.images_seen += images
        rec.train_time_s += dt
        means = {k: v / max(n_micro, 1) for k, v in sums.items()}
        if self.acc.num_processes > 1:
            keys = sorted(means)
            stacked = self.acc.reduce(torch.stack([means[k] for k in keys]), reduction="mean")
            means = dict(zip(keys, stacked, strict=True))
        row: dict[str, Any] = {k: float(v) for k, v in means.items()}
        row["online_probe_loss"] = row.pop("probe_loss", None)
        row.update(lr=lr, tau=tau, images_per_second=images / dt if dt > 0 else None)
        row["epoch_time_s"] = dt
        return row

    def _report_step(
        self,
        epoch: int,
        sums: dict[str, Tensor],
        n_micro: int,
        lr: float,
        t0: float,
        progress: Any,
        log_every: int,
    ) -> None:
        step_in_epoch = self.record.global_step - epoch * self.plan.steps_per_epoch
        if progress is None and step_in_epoch % log_every != 0:
            return
        ips = step_in_epoch * self.params.pretrain.batch_size / max(time.perf_counter() - t0, 1e-9)
        loss = float(sums["loss"]) / n_micro
        if progress is not None:
            progress.set_postfix(loss=f"{loss:.4f}", img_s=f"{ips:.0f}", refresh=False)
            progress.update(1)
        elif self.is_main:
            log.info(
                "epoch %d/%d step %d/%d loss %.4f lr %.4g img/s %.1f",
                epoch + 1,
                self.plan.total_epochs,
                step_in_epoch,
                self.plan.steps_per_epoch,
                loss,
                lr,
                ips,
            )

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
                        "total_epochs": self.plan.total_epochs,
                    }
                )
            if not self.trainable:
                return self._run_untrained()
            return self._train_loop()

    def _train_loop(self) -> dict[str, Any]:
        from vssl import tracking
        from vssl.train.guards import epoch_warnings

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
                    row.update(self._evaluate(knn=self._knn_due(epoch + 1)))
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
                    if done % pc.checkpoint_every == 0 or done == stop:
                        self._checkpoint(done)
            finally:
                if progress is not None:
                    progress.close()
        if self.job.stop_after is not None and self.job.stop_after < p.total_epochs:
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
        metrics["images_per_second"] = None
        if self.is_main:
            tracking.log_metrics({"knn_top1": ev["knn_top1"]}, step=0)
        return self._finish(0, metrics)
