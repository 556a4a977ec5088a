"""A transformers `TrainerCallback` that records the run for the explorer: one line in a Trainer script.

    trainer = Trainer(model=peft_model, args=args, train_dataset=data,
                      callbacks=[ExplorerCallback("runs/mine")])

Works with `Trainer` and its subclasses (TRL's `SFTTrainer`), one process or many (torchrun /
accelerate: DDP, FSDP with use_orig_params=True or FSDP2, DeepSpeed ZeRO-3). The hooks used:
- on_train_begin: the Recorder is made on every rank (the model is wrapped by then) and records the
  starting state; a forward hook on the model keeps each micro-batch's loss on the device;
- on_pre_optimizer_step: the learning rate of this step and, on recorded steps, the gradient norms
  (after the Trainer's clipping, before the optimizer uses them);
- on_step_end: `Recorder.step(global_step, loss, lr)`;
- on_log / on_evaluate: the held-out loss (and the Trainer's logged loss when the model returns none);
- on_train_end: the last record, the adapter (PEFT's save_pretrained into DIR/adapter), the end mark.

The loss recorded for a step is the one the Trainer logs for it with logging_steps=1: the model's own
loss summed over the step's micro-batches when the Trainer normalised it by the number of items in
the whole batch (scaled by the number of processes when it averaged tokens across devices), their
mean otherwise; averaged over the ranks. When the model returns no loss (a custom compute_loss, label
smoothing) the last loss the Trainer logged stands in.
"""

from __future__ import annotations

import torch
from transformers import TrainerCallback

from explorer.integrations.recorder import (
    DEFAULT_HEATMAP_SIZE,
    DEFAULT_INTERVAL_S,
    DEFAULT_SHARE,
    MAX_HEATMAPS,
    Recorder,
)


def _output_loss(output):
    if isinstance(output, dict) or hasattr(output, "keys"):
        return output.get("loss") if hasattr(output, "get") else None
    loss = getattr(output, "loss", None)
    if loss is None and isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        loss = output[0] if output[0].ndim == 0 else None
    return loss


class ExplorerCallback(TrainerCallback):
    def __init__(
        self,
        out_dir,
        *,
        every: int = 1,
        interval_s: float = DEFAULT_INTERVAL_S,
        share: float | None = DEFAULT_SHARE,
        heatmaps=None,
        heatmap_size: int = DEFAULT_HEATMAP_SIZE,
        max_heatmaps: int = MAX_HEATMAPS,
        adapter: str | None = None,
        overwrite: bool = False,
        save_adapter: bool = True,
    ):
        self.out_dir = out_dir
        self.options = dict(
            every=every,
            interval_s=interval_s,
            share=share,
            heatmaps=heatmaps,
            heatmap_size=heatmap_size,
            max_heatmaps=max_heatmaps,
            adapter=adapter,
            overwrite=overwrite,
            save_adapter=save_adapter,
        )
        self.recorder: Recorder | None = None
        self._hook = None
        self._micro: list[torch.Tensor] = []
        self._normalised = False  # the model divided by num_items_in_batch (the whole batch's count)
        self._logged_loss: float | None = None
        self._lr: float | None = None
        self._scale = 1

    # --- the Trainer's events ---------------------------------------------------------------------
    def on_train_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
        if model is None:
            raise ValueError("ExplorerCallback: the Trainer passed no model to on_train_begin")
        world = int(getattr(args, "world_size", 1) or 1)
        batch = args.per_device_train_batch_size * args.gradient_accumulation_steps * world
        self._scale = world if getattr(args, "average_tokens_across_devices", False) and world > 1 else 1
        self.recorder = Recorder(
            model,
            self.out_dir,
            start_step=int(state.global_step),
            lr=float(args.learning_rate),
            batch_size=int(batch),
            seed=int(args.seed),
            run_info={
                "loss": "the loss the Trainer logs for the step (logging_steps=1), averaged over the ranks",
                "grad_norm": "L2 norm of each module's adapter gradients after the Trainer's clipping, "
                "before the optimizer step",
                "trainer": {
                    "per_device_train_batch_size": args.per_device_train_batch_size,
                    "gradient_accumulation_steps": args.gradient_accumulation_steps,
                    "world_size": world,
                    "max_steps": int(state.max_steps or args.max_steps or 0),
                    "learning_rate": args.learning_rate,
                    "lr_scheduler_type": str(getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type)),
                    "max_grad_norm": args.max_grad_norm,
                    "seed": args.seed,
                },
            },
            **self.options,
        )
        if self.recorder.active:
            self._hook = model.register_forward_hook(self._on_forward, with_kwargs=True)

    def on_pre_optimizer_step(self, args, state, control, optimizer=None, **kwargs):
        if self.recorder is None:
            return
        if optimizer is not None:
            self._lr = float(optimizer.param_groups[0]["lr"])
        self.recorder.pre_optimizer_step()

    def on_step_end(self, args, state, control, **kwargs):
        if self.recorder is None:
            return
        self.recorder.step(int(state.global_step), loss=self._step_loss(), lr=self._lr)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.recorder is None or not logs:
            return
        if isinstance(logs.get("loss"), (int, float)):
            self._logged_loss = float(logs["loss"])
        if isinstance(logs.get("eval_loss"), (int, float)):
            self.recorder.eval_loss(float(logs["eval_loss"]), int(state.global_step))

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if self.recorder is not None and metrics and isinstance(metrics.get("eval_loss"), (int, float)):
            self.recorder.eval_loss(float(metrics["eval_loss"]), int(state.global_step))

    def on_train_end(self, args, state, control, **kwargs):
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
        if self.recorder is not None:
            self.recorder.close()

    # --- the loss ---------------------------------------------------------------------------------
    def _on_forward(self, module, args, kwargs, output):
        if not module.training:  # evaluation and generation
            return
        loss = _output_loss(output)
        if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
            return
        self._micro.append(loss.detach().reshape(()).float())
        self._normalised = kwargs.get("num_items_in_batch") is not None

    def _step_loss(self):
        micro, self._micro = self._micro, []
        if not micro:
            return self._logged_loss
        total = torch.stack(micro)
        if self._normalised:  # each micro-batch's share of the whole batch's mean
            return total.sum() * self._scale
        return total.mean()
