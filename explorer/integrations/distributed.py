"""Where the adapter parameters live when several processes train, and how rank 0 gets all of them.

Only global rank 0 writes. The other ranks take part in the few collectives a recorded step needs
(every rank reaches them at the same step, because the recorded steps are decided on rank 0 and sent
along with the previous record's reduction), and never wait for the disk:
- single process, DDP, DeepSpeed ZeRO-1/2 ("replicated"): every rank holds whole parameters; rank 0
  reads its own copy, nothing is gathered.
- FSDP2 (`fully_shard`) and other DTensor sharding ("dtensor"): `DTensor.full_tensor()` of each adapter
  parameter (an all-gather of that small tensor).
- FSDP1 with `use_orig_params=True` ("fsdp1"): each rank holds a slice of each original parameter
  inside its shard of the flat parameter; the slices of just the adapter parameters are laid into one
  zero buffer at their offsets and summed onto rank 0 (`dist.reduce`: the slices are disjoint, so the
  sum is exact). The base weights are not gathered (one exception: the W0 heatmaps, once).
- DeepSpeed ZeRO-3 ("zero3"): `deepspeed.zero.GatheredParameters` on the adapter parameters and
  `deepspeed.utils.safe_get_full_grad` for their gradients (all ranks call both).
FSDP1 without `use_orig_params` hides the adapter parameters inside flat parameters: unsupported (the
recorder says so in one line and the run trains unrecorded).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

REPLICATED, DTENSOR, FSDP1, ZERO3 = "replicated", "dtensor", "fsdp1", "zero3"


def _dist():
    import torch.distributed as dist

    return dist if dist.is_available() and dist.is_initialized() else None


def _is_dtensor(t) -> bool:
    try:
        from torch.distributed.tensor import DTensor
    except ImportError:
        return False
    return isinstance(t, DTensor)


@dataclass
class Layout:
    """How the adapter parameters of one model are laid out over the processes."""

    rank: int = 0
    world: int = 1
    kind: str = REPLICATED
    unsupported: str | None = None  # one line: why this setup cannot be recorded
    comm_device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    # FSDP1: id(original parameter) -> (full shape, first flat index held here, last + 1); start ==
    # end when this rank holds none of it
    fsdp1_slices: dict[int, tuple[torch.Size, int, int]] = field(default_factory=dict)

    @property
    def is_writer(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1

    # --- detection --------------------------------------------------------------------------------
    @classmethod
    def unsupported_wrapping(cls, model: nn.Module) -> Layout | None:
        """A layout saying why, for a wrapping that hides the adapters' names (checked before they are
        looked for: FSDP1 without use_orig_params removes the original parameters from the modules)."""
        fsdp1 = _fsdp1_modules(model)
        if fsdp1 and not all(getattr(m, "_use_orig_params", False) for m in fsdp1):
            lay = cls._base()
            lay.unsupported = (
                "FSDP without use_orig_params=True keeps the LoRA factors inside flat parameters "
                "(set use_orig_params=True; accelerate: fsdp_use_orig_params: true)"
            )
            return lay
        return None

    @classmethod
    def _base(cls) -> Layout:
        dist = _dist()
        lay = cls()
        if dist is not None:
            lay.rank, lay.world = dist.get_rank(), dist.get_world_size()
            if dist.get_backend() == "nccl" and torch.cuda.is_available():
                lay.comm_device = torch.device("cuda", torch.cuda.current_device())
        return lay

    @classmethod
    def detect(cls, model: nn.Module, params: list[nn.Parameter]) -> Layout:
        lay = cls._base()
        if any(p.device.type == "meta" for p in params):
            lay.unsupported = "the adapter parameters are on the meta device (not materialised yet)"
            return lay
        if any(hasattr(p, "ds_id") for p in params):
            lay.kind = ZERO3
            try:
                import deepspeed  # noqa: F401
            except ImportError:
                lay.unsupported = "ZeRO-3 parameters (ds_id) but deepspeed cannot be imported"
            return lay
        if any(_is_dtensor(p) for p in params):
            lay.kind = DTENSOR
            return lay
        fsdp1 = _fsdp1_modules(model)
        if fsdp1:
            lay.kind = FSDP1
            lay.fsdp1_slices = _fsdp1_slices(fsdp1)
            missing = [p for p in params if id(p) not in lay.fsdp1_slices]
            if missing:
                lay.unsupported = "FSDP: some adapter parameters are in no FSDP unit this recorder can read"
            return lay
        return lay

    # --- full shapes and sizes --------------------------------------------------------------------
    def full_shape(self, p: torch.Tensor) -> torch.Size:
        if self.kind == FSDP1 and id(p) in self.fsdp1_slices:
            return self.fsdp1_slices[id(p)][0]
        if self.kind == ZERO3 and hasattr(p, "ds_shape"):
            return torch.Size(p.ds_shape)
        return p.shape  # DTensor: the global shape

    def count(self, params) -> int:
        """Number of elements of these parameters over all ranks (local figures only; no collective)."""
        total = 0
        for p in params:
            if self.kind == FSDP1 and id(p) in self.fsdp1_slices:
                total += math.prod(self.fsdp1_slices[id(p)][0])
            elif self.kind == ZERO3 and hasattr(p, "ds_numel"):
                total += int(p.ds_numel)
            else:
                total += p.numel()
        return total

    # --- gathering --------------------------------------------------------------------------------
    @torch.no_grad()
    def gather(self, params: list[torch.Tensor]) -> list[torch.Tensor] | None:
        """The whole of each parameter on rank 0 (detached; fp32 where it had to be gathered), None on
        the other ranks. Every rank calls it with the same parameters in the same order."""
        if not params:
            return [] if self.is_writer else None
        if self.kind == REPLICATED:
            return [p.detach() for p in params] if self.is_writer else None
        if self.kind == DTENSOR:
            out = [p.detach().full_tensor() if _is_dtensor(p) else p.detach() for p in params]
            return out if self.is_writer else None
        if self.kind == ZERO3:
            import deepspeed

            with deepspeed.zero.GatheredParameters(list(params), modifier_rank=None):
                out = [p.detach().clone() for p in params] if self.is_writer else None
            return out
        return self._gather_fsdp1(params)

    def _gather_fsdp1(self, params) -> list[torch.Tensor] | None:
        dist = _dist()
        shapes = [self.full_shape(p) for p in params]
        sizes = [math.prod(s) for s in shapes]
        buf = torch.zeros(sum(sizes), dtype=torch.float32, device=self.comm_device)
        offset = 0
        for p, n in zip(params, sizes):
            _, start, end = self.fsdp1_slices[id(p)]
            if end > start:
                buf[offset + start : offset + end] = p.detach().reshape(-1).to(buf.device, torch.float32)
            offset += n
        dist.reduce(buf, dst=0, op=dist.ReduceOp.SUM)
        if not self.is_writer:
            return None
        out, offset = [], 0
        device = params[0].device if params[0].device.type != "meta" else buf.device
        for shape, n in zip(shapes, sizes):
            out.append(buf[offset : offset + n].view(shape).to(device))
            offset += n
        return out

    # --- gradients ----------------------------------------------------------------------------------
    @torch.no_grad()
    def grad_sumsq(self, groups: list[list[torch.Tensor]]) -> torch.Tensor:
        """Per group: [sum of squared gradient entries held here, number of parameters with a gradient],
        flattened to (2 * groups,) float32 on the collective device. Summed over the ranks (see
        `reduce`) it gives each group's squared gradient norm: shards are disjoint, and a replicated
        gradient is counted on rank 0 only."""
        vals = []
        counts = []
        for ps in groups:
            total = torch.zeros((), dtype=torch.float32, device=self.comm_device)
            n = 0
            for p in ps:
                g = self._grad(p)
                if g is None:
                    continue
                n += 1
                total = total + g.detach().float().square().sum().to(self.comm_device)
            vals.append(total)
            counts.append(float(n))
        if not vals:
            return torch.zeros(0, dtype=torch.float32, device=self.comm_device)
        out = torch.stack([torch.stack(vals), torch.tensor(counts, device=self.comm_device)], 1).reshape(-1)
        if self.kind in (REPLICATED, ZERO3) and not self.is_writer:
            out = torch.zeros_like(out)  # whole gradients everywhere: count rank 0's only
        return out

    def _grad(self, p: torch.Tensor) -> torch.Tensor | None:
        if self.kind == ZERO3:
            from deepspeed.utils import safe_get_full_grad

            return safe_get_full_grad(p)
        g = p.grad
        if g is None:
            return None
        if _is_dtensor(g):
            local = g.to_local()
            # a shard replicated over some mesh dimensions (HSDP) is held that many times
            copies = 1
            for dim, placement in enumerate(g.placements):
                if placement.is_replicate():
                    copies *= g.device_mesh.size(dim)
            return local / math.sqrt(copies) if copies > 1 else local
        return g

    # --- reductions -------------------------------------------------------------------------------
    def reduce_sum(self, vec: torch.Tensor) -> torch.Tensor:
        """Sum over the ranks (every rank gets the result); the identity in one process."""
        dist = _dist()
        if dist is None or not self.distributed:
            return vec
        vec = vec.to(self.comm_device)
        dist.all_reduce(vec, op=dist.ReduceOp.SUM)
        return vec

    def agree(self, message: str | None) -> str | None:
        """Rank 0's message (an error, or None) on every rank."""
        dist = _dist()
        if dist is None or not self.distributed:
            return message
        box = [message if self.is_writer else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]


def _fsdp1_modules(model: nn.Module) -> list[nn.Module]:
    import sys

    fsdp = sys.modules.get("torch.distributed.fsdp.fully_sharded_data_parallel")
    if fsdp is None:
        return []
    cls = fsdp.FullyShardedDataParallel
    return [m for m in model.modules() if isinstance(m, cls)]


def _fsdp1_slices(units) -> dict[int, tuple[torch.Size, int, int]]:
    """id(original parameter) -> (full shape, start, end) of the flat slice this rank holds."""
    out: dict[int, tuple[torch.Size, int, int]] = {}
    for unit in units:
        handle = getattr(unit, "_handle", None)
        if handle is None:
            continue
        flat = handle.flat_param
        for p, info, shape in zip(flat._params, flat._shard_param_infos, flat._shapes):
            if info.in_shard:
                out[id(p)] = (torch.Size(shape), int(info.intra_param_start_idx), int(info.intra_param_end_idx) + 1)
            else:
                out[id(p)] = (torch.Size(shape), 0, 0)
    return out
