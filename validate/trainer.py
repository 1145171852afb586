"""Train a schedule for real, stage by stage, measuring what costsim predicts.

At each stage boundary the model grows by the stage's operators, the train policy is
applied, and the optimizer is kept (new blocks join it), or replaced when the stage
asks for it or when widening changes every tensor's shape. Under torchrun a run trains
data parallel: DDP, or FSDP2 (``fully_shard``) when ``training.parallelism`` is zero3.
Once per stage, one extra micro-batch runs in eager mode under FlopCounterMode and the
saved-activation counter (its gradients are discarded), so the measured counted FLOPs
sit next to costsim's prediction. Every step's loss, every evaluation and every growth
event go to the store.
"""

from __future__ import annotations

import contextlib
import math
import os
import statistics
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

from costsim.engine import estimate_many, stage_shape, steps_per_stage
from costsim.errors import CostsimError
from costsim.hardware import load_gpu, preset_for_device
from costsim.loss import predict, profile_for_spec, stage_plans
from costsim.lr import lr_at
from costsim.profile import profile_for
from costsim.spec import ScheduleSpec, parse_spec
from costsim.store import Store
from costsim.text import binary_bytes
from validate.counting import count_micro_batch
from validate.data import TokenDataset
from validate.model import GPT, GPTShape

STEP_ROWS_PER_APPEND = 50
TIMING_WINDOW = 10  # steps between host waits for the device
WARMUP_STEPS = 2  # a stage's first steps: timed one by one, left out of its median step time


@dataclass(frozen=True)
class RunOptions:
    device: str = "auto"  # auto | cpu | cuda
    compile: bool = False
    cuda_graphs: bool = False
    max_steps: int | None = None
    tokens_scale: float = 1.0
    eval_every: int = 25
    eval_batches: int = 4
    checkpoint_every: int = 25
    run_dir: Path = Path("runs")
    progress: bool = True


@dataclass
class RunState:
    """Everything a checkpoint must restore to continue exactly."""

    stage: int = 0
    step_in_stage: int = 0
    step: int = 0
    tokens: float = 0.0
    flops_counted: float = 0.0
    wall_time_s: float = 0.0
    stage_step_times: list[float] = field(default_factory=list)  # this stage's, for its median


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise CostsimError("--device cuda: no CUDA device is visible; use --device cpu or auto")
    if name not in ("cpu", "cuda"):
        raise CostsimError(f"--device {name!r}: use auto, cpu or cuda")
    return torch.device(name)


def planned_steps(spec: ScheduleSpec, tokens_scale: float = 1.0, max_steps: int | None = None) -> list[int]:
    """Steps per stage after scaling tokens, capped proportionally at ``max_steps``."""
    steps = [max(1, math.ceil(s * tokens_scale)) for s in steps_per_stage(spec)]
    total = sum(steps)
    if max_steps is not None and total > max_steps:
        if max_steps < len(steps):
            raise CostsimError(
                f"--max-steps {max_steps} is fewer than the {len(steps)} stages; allow at least one step each")
        steps = [max(1, round(s * max_steps / total)) for s in steps]
        while sum(steps) > max_steps:  # rounding may overshoot by a step or two
            steps[int(np.argmax(steps))] -= 1
    return steps


def tiny(spec: ScheduleSpec, vocab_size: int, steps_per_stage_: int = 12) -> ScheduleSpec:
    """The same schedule on a laptop-sized model: d_model 64 (stage widths keep their
    ratio to the final width), sequence 64, batch 8, about ``steps_per_stage_`` steps
    per stage, fp32, one device."""
    d_final = spec.model.d_model
    tokens_per_step = 8 * 64

    def width(stage) -> dict:
        d_model, _, _ = spec.stage_width(stage)
        factor = d_final // d_model
        if d_model == d_final:
            return {}
        return {"d_model": 64 // factor, "n_heads": max(1, 8 // factor), "d_ff": 256 // factor}

    total = sum(s.tokens for s in spec.stages)
    n = len(spec.stages)
    stages = [
        {**s.model_dump(exclude_none=True, exclude={"d_model", "n_heads", "d_ff"}), **width(s),
         "tokens": tokens_per_step * max(1, round(steps_per_stage_ * n * s.tokens / total))}
        for s in spec.stages
    ]
    kv = None if spec.model.n_kv_heads is None else max(1, 8 * spec.model.n_kv_heads // spec.model.n_heads)
    model = {**spec.model.model_dump(exclude_none=True), "d_model": 64, "n_heads": 8, "d_ff": 256, "seq_len": 64,
             "vocab_size": vocab_size}
    if kv is not None:
        model["n_kv_heads"] = kv
    training = {**spec.training.model_dump(), "micro_batch_size": 8, "batch_size": 8, "precision": "fp32",
                "parallelism": "ddp", "trainer_profile": "reference"}
    return parse_spec({"name": f"{spec.name or 'schedule'} (tiny)", "model": model, "training": training,
                       "hardware": {"gpu": "h200", "n_gpus": 1}, "stages": stages})


# ModelSpec variants the reference GPT builds one way only (costsim costs the others,
# for external models; training them here would measure a different model).
REFERENCE_GPT_BUILDS = {"norm": "layernorm", "positions": "learned", "qkv_bias": False}


def gpt_shape(spec: ScheduleSpec, index: int) -> GPTShape:
    stage = spec.stages[index]
    d_model, n_heads, d_ff = spec.stage_width(stage)
    m = spec.model
    if spec.training.trainer_profile != "reference":
        raise CostsimError(f"training.trainer_profile is {spec.training.trainer_profile!r}: validate trains costsim's "
                           "own trainer, whose memory the 'reference' profile describes; set trainer_profile: "
                           "reference to train this schedule")
    if spec.training.context_parallel > 1:
        raise CostsimError(f"training.context_parallel {spec.training.context_parallel}: validate trains data "
                           "parallel only; set it to 1 to train this schedule")
    if spec.training.shard_group is not None:
        raise CostsimError(f"training.shard_group {spec.training.shard_group}: validate trains full sharding only "
                           "(FSDP2's fully_shard over every rank); drop shard_group to train this schedule")
    for i in range(len(spec.stages)):
        tp, pp = spec.stage_parallel(i)
        if tp > 1 or pp > 1:
            stage = spec.stages[i]
            where = f"stages[{i}]" if stage.tensor_parallel or stage.pipeline_parallel else "training"
            raise CostsimError(f"{where}.tensor_parallel {tp} x pipeline_parallel {pp}: validate trains data "
                               "parallel only (under torchrun: DDP, or FSDP2 for parallelism zero3); set both to 1 "
                               "to train this schedule")
    if differs := [f"{k}: {getattr(m, k)}" for k, v in REFERENCE_GPT_BUILDS.items() if getattr(m, k) != v]:
        raise CostsimError(f"the model has {', '.join(differs)}, which the reference GPT does not build "
                           f"({', '.join(f'{k}: {v}' for k, v in REFERENCE_GPT_BUILDS.items())}); costsim estimates "
                           "it, but validate cannot train it")
    return GPTShape(vocab_size=m.vocab_size, seq_len=m.seq_len, n_layers=stage.layers, d_model=d_model,
                    n_heads=n_heads, n_kv_heads=spec.stage_kv_heads(stage), d_ff=d_ff, mlp=m.mlp,
                    tied_embeddings=m.tied_embeddings,
                    bias=m.bias)


def make_optimizer(model: GPT, spec: ScheduleSpec, device: torch.device) -> torch.optim.AdamW:
    """AdamW over every parameter; frozen ones have no gradient, and AdamW leaves them
    (and their decay) alone until they train again."""
    params = list({id(p): p for p in model.parameters()}.values())
    return torch.optim.AdamW(_param_groups(params, spec), fused=device.type == "cuda")


def _param_groups(params: list[torch.nn.Parameter], spec: ScheduleSpec) -> list[dict]:
    """Decay on >=2-D weights only (nanoGPT), every hyperparameter explicit so that a
    group added later, or rebuilt from a checkpoint, never falls back to a default."""
    t = spec.training
    common = {"lr": t.lr_schedule.lr, "betas": (t.beta1, t.beta2), "eps": t.eps}
    groups = [{**common, "params": [p for p in params if p.dim() >= 2], "weight_decay": t.weight_decay},
              {**common, "params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def add_new_parameters(optimizer: torch.optim.Optimizer, model: GPT, spec: ScheduleSpec) -> None:
    """Blocks added by depth growth join the running optimizer (the study's one AdamW)."""
    known = {id(p) for group in optimizer.param_groups for p in group["params"]}
    for group in _param_groups([p for p in model.parameters() if id(p) not in known], spec):
        optimizer.add_param_group(group)


def optimizer_group_names(model: GPT, optimizer: torch.optim.Optimizer) -> list[list[str]]:
    """Each optimizer group's parameters by name: what survives rebuilding the model."""
    names = {id(p): n for n, p in model.named_parameters()}
    return [[names[id(p)] for p in group["params"]] for group in optimizer.param_groups]


def full_training_state(model: GPT, optimizer: torch.optim.Optimizer) -> dict:
    """The model and its optimizer as one process holds them: what a checkpoint stores
    and ``Trainer._restore`` rebuilds. A plain model's tensors are returned as they are;
    an FSDP2 model's shards are gathered, so under FSDP every rank must call this."""
    gathered: dict[int, torch.Tensor] = {}  # tied weights appear twice in a state dict: gather them once
    optimizer_state = optimizer.state_dict()
    return {
        "shape": model.shape.__dict__, "final_n_layers": model.final_n_layers,
        "trainable": [p.requires_grad for p in model.parameters()],
        "model": {name: _gather(tensor, gathered) for name, tensor in model.state_dict().items()},
        "optimizer": {"param_groups": optimizer_state["param_groups"],
                      "state": {index: {key: _gather(value, gathered) for key, value in state.items()}
                                for index, state in optimizer_state["state"].items()}},
        "optimizer_groups": optimizer_group_names(model, optimizer),
    }


def _gather(tensor: torch.Tensor, gathered: dict[int, torch.Tensor]) -> torch.Tensor:
    """A sharded DTensor's full value, on the CPU: tensor by tensor, so the device never
    holds more than one gathered tensor beside its shards."""
    from torch.distributed.tensor import DTensor

    if not isinstance(tensor, DTensor):
        return tensor
    if id(tensor) not in gathered:
        gathered[id(tensor)] = tensor.full_tensor().cpu()
    return gathered[id(tensor)]


def _shard_like(value: torch.Tensor, param: torch.Tensor) -> torch.Tensor:
    """Optimizer state for a sharded parameter, sharded as the parameter is (AdamW's
    moments have its shape; its step count is a scalar and stays whole). Every rank
    holds the same full value, so each takes its own shard without communicating, as
    ``fully_shard`` does with the weights."""
    from torch.distributed.tensor import DTensor, distribute_tensor

    if not isinstance(param, DTensor) or value.shape != param.shape:
        return value
    return distribute_tensor(value.to(param.device), param.device_mesh, param.placements, src_data_rank=None)


def _is_sharded(model: torch.nn.Module) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


def available_host_memory_bytes() -> int | None:
    """Memory this process could still get: the least of Linux's MemAvailable, the room
    left under its cgroup's memory limit (v2 or v1), and its address-space limit
    (RLIMIT_AS) less what it already maps. None where none of them is known."""
    limits = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                limits.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            limit = Path(limit_file).read_text().strip()
            if limit.isdigit() and int(limit) < 2**60:
                limits.append(int(limit) - int(Path(usage_file).read_text().strip()))
                break
        except (OSError, ValueError):
            continue
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        if soft != resource.RLIM_INFINITY:
            mapped = int(Path("/proc/self/statm").read_text().split()[0]) * os.sysconf("SC_PAGE_SIZE")
            limits.append(soft - mapped)
    except (ImportError, OSError, ValueError):
        pass
    return max(0, min(limits)) if limits else None


def device_gpu_preset(device: torch.device) -> str | None:
    return preset_for_device(torch.cuda.get_device_name(device)) if device.type == "cuda" else None


def code_version() -> str:
    head = Path(__file__).resolve().parents[1] / ".git" / "HEAD"
    try:
        ref = head.read_text().strip()
        if ref.startswith("ref: "):
            return (head.parent / ref[5:]).read_text().strip()[:12]
        return ref[:12]
    except OSError:
        return "unknown"


class Trainer:
    """Runs one schedule; ``train()`` returns the final RunState."""

    def __init__(self, spec: ScheduleSpec, dataset: TokenDataset, store: Store, options: RunOptions,
                 run_id: str | None = None):
        if spec.model.vocab_size < dataset.vocab_size:
            raise CostsimError(
                f"model.vocab_size {spec.model.vocab_size} is smaller than the data's vocabulary "
                f"{dataset.vocab_size}; raise vocab_size or use other data"
            )
        self.spec, self.dataset, self.store, self.options = spec, dataset, store, options
        self.device = resolve_device(options.device)
        self.run_id = run_id or datetime.now(UTC).strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
        self.checkpoint_path = options.run_dir / self.run_id / "checkpoint.pt"
        self.steps = planned_steps(spec, options.tokens_scale, options.max_steps)
        self.state = RunState()
        t = spec.training
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        # FSDP2 for zero3; zero1 and zero2 train as DDP (their sharding only saves memory)
        self.fully_sharded = self.world > 1 and t.parallelism == "zero3"
        if self.world > 1:
            self._init_distributed()
        self.accumulation = t.batch_size // (t.micro_batch_size * self.world)
        self.tokens_per_step = t.batch_size * spec.model.seq_len
        # what this device really runs: bf16 autocast exists here only on a GPU, a CPU trains in fp32
        self.precision = t.precision if self.device.type == "cuda" else "fp32"
        self.autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if self.precision == "bf16-mixed"
                         else contextlib.nullcontext())
        torch.manual_seed(t.seed)
        if self.device.type == "cuda":
            torch.set_float32_matmul_precision("high")  # TF32 for fp32 runs, as the GPU presets assume
        self._predictions = self._predict()
        self._check_memory()  # before any tensor exists: an oversized model fails here, not in an OOM
        self.model = GPT(gpt_shape(spec, 0), final_n_layers=spec.stages[-1].layers).to(self.device)
        self.optimizer = make_optimizer(self.model, spec, self.device)
        self.generator = torch.Generator().manual_seed(t.seed + self.rank)
        self.val_batches = dataset.fixed_batches("val", options.eval_batches, t.micro_batch_size, spec.model.seq_len,
                                                 seed=t.seed)
        self._step_rows: list[dict] = []

    def _init_distributed(self) -> None:
        """Data parallel under torchrun: one process per GPU (NCCL), or per CPU (gloo)."""
        import torch.distributed as dist

        if self.spec.training.batch_size % (self.spec.training.micro_batch_size * self.world):
            raise CostsimError(f"training.batch_size must be a multiple of micro_batch_size x {self.world} processes")
        if self.device.type == "cuda":
            self.device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(self.device)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
        if self.fully_sharded:
            from torch.distributed.device_mesh import init_device_mesh

            self.mesh = init_device_mesh(self.device.type, (self.world,))

    # --- predictions -------------------------------------------------------------------

    def _predict(self):
        hw = self.spec.hardware
        preset = device_gpu_preset(self.device)
        gpu = load_gpu(preset or (hw.gpu if isinstance(hw.gpu, str) else "h200"))
        profile = profile_for(preset, None)
        spec = self.spec
        if self.precision != spec.training.precision:  # predict what runs: a CPU trains a bf16 spec in fp32
            spec = spec.model_copy(update={"training": spec.training.model_copy(update={"precision": self.precision})})
        # and the parallelism that runs: zero1 and zero2 train as DDP here, so they are predicted as DDP
        return estimate_many(stage_shape(spec), batch_size=spec.training.batch_size, gpu=gpu,
                             profile=profile, precision=self.precision, n_gpus=self.world,
                             parallelism="zero3" if self.fully_sharded else "ddp")

    def _check_memory(self) -> None:
        """Refuse a schedule whose predicted peak does not fit this device, saying by how
        much: the GPU's memory, or on a CPU the host memory now available, which every
        process of the run shares."""
        if self.device.type == "cuda":
            _, total = torch.cuda.mem_get_info(self.device)
            peaks, where, fix = self._predictions.peak_memory_bytes, "the GPU has", (
                "lower training.micro_batch_size or set training.recompute: full (python -m costsim.estimate SPEC "
                "suggests a setting that fits)")
        else:
            total = available_host_memory_bytes()
            if total is None:
                return
            peaks = self._predictions.peak_allocated_bytes * self.world
            where = "this machine has"
            fix = "add --tiny (the same schedule, laptop-sized) or use a smaller model or micro-batch"
        worst = int(np.argmax(peaks))
        if peaks[worst] > total:
            raise CostsimError(
                f"stage {worst} needs about {binary_bytes(peaks[worst])} but {where} {binary_bytes(total)} "
                f"(short by {binary_bytes(peaks[worst] - total)}); {fix}")

    # --- checkpoints ---------------------------------------------------------------------

    def save_checkpoint(self) -> None:
        """The full state, as one process holds it, whatever the parallelism: a run
        resumes under DDP, FSDP or in one process alike."""
        training = full_training_state(self.model, self.optimizer)  # under FSDP a collective: every rank gathers
        generators = self._every_ranks_generator()  # each rank draws its own batches: keep every rank's place
        if self.rank:
            return
        self.checkpoint_path.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "spec": self.spec.model_dump(mode="json"), **training,
            "state": self.state.__dict__, "generator": self.generator.get_state(), "generators": generators,
            "torch_rng": torch.get_rng_state(), "steps": self.steps,
        }
        temp = self.checkpoint_path.with_suffix(".tmp")
        torch.save(payload, temp)
        os.replace(temp, self.checkpoint_path)

    def _every_ranks_generator(self) -> list[torch.Tensor]:
        """Every rank's batch generator state (rank order); a collective under torchrun."""
        if self.world == 1:
            return [self.generator.get_state()]
        import torch.distributed as dist

        states: list = [None] * self.world
        dist.all_gather_object(states, self.generator.get_state())
        return states

    def load_checkpoint(self) -> None:
        payload = torch.load(self.checkpoint_path, map_location=self.device, weights_only=False)
        self._restore(payload)
        self.state = RunState(**payload["state"])
        # checkpoints from before every rank's was kept hold rank 0's only, which every rank then takes
        generators = payload.get("generators") or [payload["generator"]] * self.world
        if len(generators) != self.world:
            raise CostsimError(f"the checkpoint was written by {len(generators)} processes and this run has "
                               f"{self.world}; resume with the same torchrun --nproc-per-node")
        self.generator.set_state(generators[self.rank])
        torch.set_rng_state(payload["torch_rng"])
        self.steps = payload["steps"]

    def _restore(self, training: dict) -> None:
        """A plain model and optimizer from ``full_training_state``'s dict."""
        # building a model draws initial weights that are overwritten at once; drawing them
        # from the global RNG would change every later draw from it (new blocks' weights)
        with torch.random.fork_rng(devices=[]):
            self.model = GPT(GPTShape(**training["shape"]), final_n_layers=training["final_n_layers"])
        self.model.to(self.device)
        self.model.load_state_dict(training["model"])
        for flag, p in zip(training["trainable"], self.model.parameters()):
            p.requires_grad_(flag)
        self._rebuild_optimizer(training["optimizer"], training["optimizer_groups"])

    def _rebuild_optimizer(self, saved: dict, group_names: list[list[str]]) -> None:
        """The optimizer over the model's current parameters with the saved groups (which
        grow with the model) matched by name, and the saved state sharded as each
        parameter is."""
        by_name = dict(self.model.named_parameters())
        groups = [{**{k: v for k, v in group.items() if k != "params"}, "params": [by_name[n] for n in names]}
                  for group, names in zip(saved["param_groups"], group_names)]
        self.optimizer = torch.optim.AdamW(groups, fused=self.device.type == "cuda")
        params = [p for group in groups for p in group["params"]]  # the order state_dict numbers them in
        state = {index: {key: _shard_like(value, params[index]) for key, value in entry.items()}
                 for index, entry in saved["state"].items()}
        self.optimizer.load_state_dict({"param_groups": saved["param_groups"], "state": state})

    # --- stages --------------------------------------------------------------------------

    def _enter_stage(self, index: int, fresh: bool) -> None:
        """Grow, freeze and set up the optimizer for stage ``index`` (``fresh``: not resumed),
        on the plain model; ``_distribute`` then shards or wraps it for the stage."""
        if self.fully_sharded and _is_sharded(self.model):
            self._unshard()
        stage = self.spec.stages[index]
        if fresh and index > 0:
            depth_op, width_op = self.spec.growth_operators(index)
            d_model, n_heads, d_ff = self.spec.stage_width(stage)
            old = self.model.shape
            widened = (d_model, n_heads, d_ff) != (old.d_model, old.n_heads, old.d_ff)
            if widened:
                self.model.grow_width(d_model, n_heads, d_ff, width_op)
                self._event("grow_width", f"{old.d_model}->{d_model} by {width_op}")
            if stage.layers > old.n_layers:
                self.model.grow_depth(stage.layers, depth_op)
                self._event("grow_depth", f"{old.n_layers}->{stage.layers} by {depth_op}")
            if widened or stage.reset_optimizer:
                self.optimizer = make_optimizer(self.model, self.spec, self.device)
                self._event("optimizer_reset", "widened" if widened else "reset_optimizer")
        self.model.set_trainable(self.spec.n_trainable_blocks(index), not stage.freeze_embeddings)
        self.model.checkpoint_blocks(self.spec.training.recompute == "full")
        if fresh:
            add_new_parameters(self.optimizer, self.model, self.spec)

    # FSDP2 across growth: the model is sharded for a stage's training only. At a boundary
    # the shards (weights and AdamW state) are gathered into a plain model and optimizer,
    # which grow and freeze by the very code one process runs, and are then sharded
    # again. Growing a sharded model in place would need every operator, the width
    # tiling included, rewritten for DTensors, and fully_shard has no inverse to apply
    # before a module changes; a round trip through the full state costs a gather per
    # stage and keeps the growth exactly the single-process growth.

    def _unshard(self) -> None:
        self._restore(full_training_state(self.model, self.optimizer))

    def _shard(self) -> None:
        """FSDP2 over the plain model: one group per block, because a stage freezes whole
        blocks and a group's parameters should agree on requires_grad; the final norm (always
        trained) and an untied head (trained) in groups of their own, so that the root keeps
        the embeddings only (frozen or trained together; a tied head is the token embedding)."""
        from torch.distributed.fsdp import fully_shard

        saved = self.optimizer.state_dict()
        group_names = optimizer_group_names(self.model, self.optimizer)
        groups = [*self.model.blocks, self.model.ln_f]
        if not self.model.shape.tied_embeddings:
            groups.append(self.model.lm_head)
        for module in groups:
            fully_shard(module, mesh=self.mesh)
        fully_shard(self.model, mesh=self.mesh)
        self._rebuild_optimizer(saved, group_names)  # fully_shard replaced every parameter
        self._event("fully_shard", f"{len(groups) + 1} FSDP2 groups over {self.world} ranks")

    def _distribute(self):
        """The module a stage trains through: the sharded model, or the model under DDP."""
        if self.fully_sharded:
            self._shard()
        return self._compiled_forward()

    def _compiled_forward(self):
        module = self.model
        if self.world > 1 and not self.fully_sharded:
            from torch.nn.parallel import DistributedDataParallel

            device_ids = [self.device.index] if self.device.type == "cuda" else None
            module = DistributedDataParallel(module, device_ids=device_ids)
        if self.options.compile or self.options.cuda_graphs:
            module = torch.compile(module, mode="reduce-overhead" if self.options.cuda_graphs else None)
        return module

    def _measure_stage(self) -> tuple[int, int]:
        """Counted FLOPs and saved activation bytes of one micro-batch (eager, discarded)."""
        x, y = self.dataset.get_batch("train", self.spec.training.micro_batch_size, self.spec.model.seq_len,
                                      torch.Generator().manual_seed(0))
        with self.autocast:
            count = count_micro_batch(self.model, x.to(self.device), y.to(self.device))
        self.optimizer.zero_grad(set_to_none=True)
        return count.counted_flops, count.saved_activation_bytes

    # --- the loop ------------------------------------------------------------------------

    def _lr(self, index: int) -> float:
        t = self.spec.training
        if t.lr_reset_per_stage:
            return lr_at(t.lr_schedule, self.state.step_in_stage, self.steps[index])
        return lr_at(t.lr_schedule, self.state.step, sum(self.steps))

    def _next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        t = self.spec.training
        x, y = self.dataset.get_batch("train", t.micro_batch_size, self.spec.model.seq_len, self.generator)
        if self.device.type == "cuda":
            # from pinned memory the copy is asynchronous, so the host draws the next
            # batch while the GPU still works on this one
            x, y = x.pin_memory(), y.pin_memory()
        return x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)

    def _train_step(self, lr: float) -> torch.Tensor:
        """One optimizer step; returns its mean loss on the device, so nothing waits for it."""
        t = self.spec.training
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        total = torch.zeros((), device=self.device)
        for micro in range(self.accumulation):
            x, y = self._next_batch()
            # DDP all-reduces gradients once per step, on the last micro-batch; FSDP has no
            # no_sync and reduce-scatters every micro-batch, keeping gradients sharded as zero3 does
            sync = micro == self.accumulation - 1 or not hasattr(self.forward, "no_sync")
            with self.autocast, contextlib.nullcontext() if sync else self.forward.no_sync():
                _, loss = self.forward(x, y)
                (loss / self.accumulation).backward()
            total += loss.detach()
        if t.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), t.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return total / self.accumulation

    def _window_length(self, index: int) -> int:
        """Steps to launch before the host next waits for the device: one at a time while
        a stage warms up (compilation), else up to TIMING_WINDOW, ending where an
        evaluation, a checkpoint or the stage's end comes."""
        s, o = self.state, self.options
        if s.step_in_stage < WARMUP_STEPS:
            return 1
        return min(TIMING_WINDOW, self.steps[index] - s.step_in_stage, o.eval_every - s.step % o.eval_every,
                   o.checkpoint_every - s.step % o.checkpoint_every)

    def _train_window(self, index: int, n_steps: int, flops_per_step: int) -> tuple[float, float]:
        """Launch ``n_steps`` steps, then wait once for all of them and record each.

        A host sync per step would leave the GPU idle while Python launches the next one,
        so steps are timed by window: each gets the window's mean time. Returns the
        window's last loss and its time per step."""
        start = time.perf_counter()
        losses, lrs = [], []
        for _ in range(n_steps):
            lrs.append(self._lr(index))
            losses.append(self._train_step(lrs[-1]))
            self.state.step += 1
            self.state.step_in_stage += 1
        values = torch.stack(losses).tolist()  # waits for the window's last step
        per_step = (time.perf_counter() - start) / n_steps
        first = self.state.step - n_steps
        for i, (loss, lr) in enumerate(zip(values, lrs)):
            self.state.tokens += self.tokens_per_step
            self.state.flops_counted += flops_per_step
            self.state.wall_time_s += per_step
            self.state.stage_step_times.append(per_step)
            self._step_rows.append({
                "run_id": self.run_id, "step": first + i + 1, "stage_index": index, "tokens": self.state.tokens,
                "train_loss": loss, "wall_time_s": self.state.wall_time_s, "lr": lr,
                "record_id": f"{self.run_id}:step:{first + i + 1}"})
        return values[-1], per_step

    @torch.no_grad()
    def evaluate(self) -> float:
        self.model.eval()
        losses = []
        for x, y in self.val_batches:
            with self.autocast:
                _, loss = self.model(x.to(self.device), y.to(self.device))
            losses.append(loss.float())
        self.model.train()
        return float(torch.stack(losses).mean())

    def _event(self, kind: str, detail: str) -> None:
        if not self.rank:
            record_id = f"{self.run_id}:event:{self.state.step}:{kind}"
            self.store.append("events", [{"run_id": self.run_id, "step": self.state.step, "kind": kind,
                                          "detail": detail, "record_id": record_id}])

    def _log_eval(self) -> None:
        val = self.evaluate()
        if not self.rank:
            self.store.append("evals", [{
                "run_id": self.run_id, "step": self.state.step, "tokens": self.state.tokens,
                "flops_counted": self.state.flops_counted, "val_loss": val, "wall_time_s": self.state.wall_time_s,
                "record_id": f"{self.run_id}:eval:{self.state.step}"}])
            self.store.append("loss_predictions", self._loss_prediction_rows())
            self.store.record_status(self.run_id, "running")
        self.last_val_loss = val

    def _loss_prediction_rows(self) -> list[dict]:
        """The loss model's prediction for the evaluation just taken, stored beside it so that
        measured against predicted is one join on (run_id, step). None at step 0: the model
        predicts loss after training on tokens, not at initialisation. Computed at each
        evaluation (a few ms) rather than planned ahead, so it follows whatever steps a
        resumed run or a changed --eval-every really evaluates."""
        profile = profile_for_spec(self.spec)
        # after_boundary: an evaluation on entering a stage sees the grown model
        curve = predict(profile, stage_plans(self.spec, self.steps), at_tokens=np.array([float(self.state.tokens)]),
                        after_boundary=True)
        return [{"run_id": self.run_id, "step": self.state.step, "tokens": float(tokens),
                 "profile_name": profile.name, "interval_coverage": profile.interval,
                 "val_loss_predicted": float(loss), "val_loss_predicted_lower": float(lower),
                 "val_loss_predicted_upper": float(upper),
                 "record_id": f"{self.run_id}:loss_prediction:{self.state.step}:{profile.name}"}
                for tokens, loss, lower, upper in zip(curve.tokens, curve.loss, curve.lower, curve.upper)]

    def _flush_steps(self) -> None:
        if self._step_rows and not self.rank:
            self.store.append("steps", self._step_rows)
        self._step_rows = []

    def start(self) -> None:
        if self.rank:
            return
        # status (with this process as its writer) before the run itself: a kill between
        # the two must not leave a run that reads "running" forever
        self.store.record_status(self.run_id, "running")
        self.store.append("runs", [{
            "run_id": self.run_id, "started_at": datetime.now(UTC), "status": "running",
            "spec_json": self.spec.model_dump_json(), "code_version": code_version(),
            "torch_version": torch.__version__, "device": str(self.device) if self.device.type == "cpu"
            else torch.cuda.get_device_name(self.device), "seed": self.spec.training.seed, "kind": "train",
            "record_id": f"{self.run_id}:run"}])

    def train(self, resumed: bool = False) -> RunState:
        from tqdm import tqdm

        total_steps = sum(self.steps)
        bar = tqdm(total=total_steps, initial=self.state.step, disable=not self.options.progress or bool(self.rank),
                   unit="step", dynamic_ncols=True)
        self.last_val_loss = float("nan")
        first_stage = self.state.stage
        for index in range(first_stage, len(self.spec.stages)):
            resuming_this = resumed and index == first_stage and self.state.step_in_stage > 0
            self._enter_stage(index, fresh=not resuming_this)
            if not resuming_this:
                self.state.step_in_stage = 0
                self.state.stage_step_times = []
            # measured before sharding: the saved-activation counter tells weights by the parameters'
            # storage, and FSDP's gathered weights are other storage, freed after use (it fails on them)
            flops_per_micro, saved_bytes = self._measure_stage()
            self.forward = self._distribute()
            flops_per_step = flops_per_micro * self.accumulation * self.world
            if self.device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(self.device)
            while self.state.step_in_stage < self.steps[index]:
                if self.state.step % self.options.eval_every == 0:
                    self._log_eval()
                n_steps = self._window_length(index)
                loss, per_step = self._train_window(index, n_steps, flops_per_step)
                if not math.isfinite(loss):
                    self._diverged(index, loss)
                if len(self._step_rows) >= STEP_ROWS_PER_APPEND:
                    self._flush_steps()
                if self.state.step % self.options.checkpoint_every == 0:
                    self._flush_steps()
                    self.save_checkpoint()
                bar.update(n_steps)
                bar.set_postfix(stage=index, loss=f"{loss:.3f}", tok_s=f"{self.tokens_per_step / per_step:,.0f}")
            self._flush_steps()
            self._record_stage(index, flops_per_step, saved_bytes, self.state.stage_step_times)
            self.state.stage = index + 1
            self.state.step_in_stage = 0
        self._log_eval()
        bar.close()
        self.save_checkpoint()
        if not self.rank:
            self.store.record_status(self.run_id, "complete")
        if self.world > 1:
            # every rank leaves the group together, so none tears its connections down while
            # another still uses them (a rank exiting first could abort its peer under gloo)
            import torch.distributed as dist

            dist.barrier()
            dist.destroy_process_group()
        return self.state

    def _diverged(self, index: int, loss: float) -> None:
        """A NaN or infinite loss ends the run: stored as failed, said in one line."""
        self._flush_steps()
        self._event("diverged", f"training loss {loss} at step {self.state.step}")
        if not self.rank:
            self.store.record_status(self.run_id, "failed")
            self.store.flush()
        raise CostsimError(f"training diverged: loss {loss} at step {self.state.step} (stage {index}); the run is "
                           "stored as failed. Lower training.lr_schedule.lr or set training.grad_clip")

    def _record_stage(self, index: int, flops_per_step: int, saved_bytes: int, step_times: list[float]) -> None:
        if self.rank:
            return
        p = self._predictions
        reserved = {}
        if self.device.type == "cuda":
            measured_memory = float(torch.cuda.max_memory_allocated(self.device))
            predicted_memory = float(p.peak_allocated_bytes[index])
            reserved = {"peak_reserved_bytes": float(torch.cuda.max_memory_reserved(self.device)),
                        "peak_reserved_predicted_bytes": float(p.peak_memory_bytes[index])}
        else:  # on the CPU the exact, comparable quantity is the saved activations
            measured_memory, predicted_memory = float(saved_bytes), float(p.activation_bytes[index])
        timed = step_times[WARMUP_STEPS:] or step_times
        stage = self.spec.stages[index]
        self.store.append("stages", [{
            "run_id": self.run_id, "stage_index": index, "layers": stage.layers,
            "d_model": self.spec.stage_width(stage)[0], "tokens": self.steps[index] * self.tokens_per_step,
            "steps": self.steps[index], "flops_counted_per_step": float(flops_per_step),
            "flops_counted_predicted_per_step": float(p.flops_counted_per_step[index]),
            "peak_memory_bytes": measured_memory, "peak_memory_predicted_bytes": predicted_memory, **reserved,
            "step_time_s": statistics.median(timed),
            "step_time_predicted_s": float(p.step_time_s[index]) if self.device.type == "cuda" else None,
            "record_id": f"{self.run_id}:stage:{index}"}])
