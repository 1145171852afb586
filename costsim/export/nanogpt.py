"""nanoGPT (github.com/karpathy/nanoGPT): one train.py config file per stage.

train.py resumes from out_dir/ckpt.pt and counts iterations globally, so a stage file
sets max_iters to the steps of all stages so far, and the LR schedule runs over the
whole plan. The files are read back as data (``ast``), never executed.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from costsim.engine import divisors
from costsim.export.base import DTYPES, ExportError, ExportFormat, StagePlan, need, register
from costsim.lr import ConstantLR, CosineLR, WarmupStableDecayLR
from costsim.spec import ScheduleSpec

NANOGPT_EVAL_INTERVAL = 2000  # train.py's default
# train.py's globals a config file may set (configurator.py execs the file into them);
# vocab_size is no global there: the export writes it for the record, and reads it back
NANOGPT_KEYS = frozenset((
    "out_dir", "eval_interval", "log_interval", "eval_iters", "eval_only", "always_save_checkpoint", "init_from",
    "wandb_log", "wandb_project", "wandb_run_name", "dataset", "gradient_accumulation_steps", "batch_size",
    "block_size", "n_layer", "n_head", "n_embd", "dropout", "bias", "learning_rate", "max_iters", "weight_decay",
    "beta1", "beta2", "grad_clip", "decay_lr", "warmup_iters", "lr_decay_iters", "min_lr", "backend", "device",
    "dtype", "compile", "vocab_size",
))
NANOGPT_COMMENTS = {
    "init_from": "later stages resume out_dir/ckpt.pt as README.txt's growth step left it (its model_args rule)",
    "eval_interval": "divides max_iters, so ckpt.pt is written at this stage's last iteration",
    "vocab_size": "not read by train.py: it takes data/<dataset>/meta.pkl's, else 50304",
    "gradient_accumulation_steps": "micro-batches per step over all GPUs (train.py divides by the GPU count)",
    "max_iters": "global: the iterations of all stages so far",
    "lr_decay_iters": "the whole run's steps: the schedule follows the global iteration",
    "grad_clip": "0.0: no clipping",
}


def _nanogpt_lr(schedule: ConstantLR | CosineLR, total_steps: int) -> dict:
    """train.py's schedule fields. A constant rate with warmup runs the cosine path with
    min_lr = learning_rate (train.py warms up only when decay_lr is on)."""
    warmup = schedule.warmup_steps
    cosine = isinstance(schedule, CosineLR)
    return {
        "learning_rate": schedule.lr, "decay_lr": cosine or warmup > 0, "warmup_iters": warmup,
        # train.py divides by lr_decay_iters - warmup_iters once it reaches lr_decay_iters: keep them apart
        "lr_decay_iters": max(total_steps, warmup + 1),
        "min_lr": schedule.lr * schedule.min_lr_ratio if cosine else schedule.lr,
    }


def _nanogpt_schedule(values: dict, where: Path) -> dict:
    lr = need(values, "learning_rate", float, where)
    min_lr = need(values, "min_lr", float, where)
    warmup = need(values, "warmup_iters", int, where)
    if not need(values, "decay_lr", bool, where):
        return {"kind": "constant", "lr": lr, "warmup_steps": 0}
    if min_lr == lr:
        return {"kind": "constant", "lr": lr, "warmup_steps": warmup}
    # min_lr was written as lr x ratio: 12 digits undo the product's rounding
    return {"kind": "cosine", "lr": lr, "warmup_steps": warmup, "min_lr_ratio": round(min_lr / lr, 12)}


def _eval_interval(end_step: int) -> int:
    """train.py writes ckpt.pt only at multiples of eval_interval, and the next stage
    resumes from it, so the stage's end must be one: the largest divisor up to train.py's
    default, or the end itself when that divisor would evaluate every few iterations."""
    best = max(d for d in divisors(end_step) if d <= NANOGPT_EVAL_INTERVAL)
    return best if best * 20 >= min(end_step, NANOGPT_EVAL_INTERVAL) else end_step


def _python_config(values: dict, header: list[str]) -> str:
    lines = [f"# {h}" if h else "#" for h in header] + [""]
    for key, value in values.items():
        comment = NANOGPT_COMMENTS.get(key)
        lines.append(f"{key} = {value!r}" + (f"  # {comment}" if comment else ""))
    return "\n".join(lines) + "\n"


def _read_python_config(path: Path) -> dict:
    """A train.py config file as data, without executing it: only ``name = literal`` lines."""
    try:
        tree = ast.parse(path.read_text(), filename=str(path))
    except OSError as exc:
        raise ExportError(f"{path}: cannot read it ({exc.strerror})") from None
    except SyntaxError as exc:
        raise ExportError(f"{path}:{exc.lineno}: not Python ({exc.msg})") from None
    values = {}
    for node in tree.body:
        target = node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 else None
        if not isinstance(target, ast.Name):
            raise ExportError(f"{path}:{node.lineno}: only 'name = value' lines are read back")
        if target.id not in NANOGPT_KEYS:
            raise ExportError(f"{path}:{node.lineno}: {target.id} is no train.py setting; check the spelling")
        try:
            values[target.id] = ast.literal_eval(node.value)
        except ValueError:
            raise ExportError(f"{path}:{node.lineno}: {target.id} is not a literal value") from None
    return values


def _slug(name: str | None) -> str:
    return re.sub(r"[^a-z0-9]+", "-", (name or "").lower()).strip("-") or "costsim"


@register
class NanoGPT(ExportFormat):
    name = "nanogpt"
    trainer = "nanoGPT's train.py (github.com/karpathy/nanoGPT)"
    keeps_optimizer = True  # init_from='resume' loads ckpt.pt's optimizer state

    def refusals(self, spec: ScheduleSpec, stages: list[StagePlan]) -> list[str]:
        m, t = spec.model, spec.training
        found = [
            (m.mlp != "gelu", f"model.mlp {m.mlp} (nanoGPT's MLP is GELU)"),
            (m.n_kv_heads not in (None, m.n_heads), "grouped key/value heads (nanoGPT has one per head)"),
            (not m.tied_embeddings, "untied embeddings (nanoGPT ties the LM head to the token embedding)"),
            (m.norm != "layernorm", f"model.norm {m.norm} (nanoGPT uses LayerNorm)"),
            (m.positions != "learned", f"model.positions {m.positions} (nanoGPT learns a position table)"),
            (m.qkv_bias and not m.bias, "biases on q/k/v only (nanoGPT's bias is all Linear layers or none)"),
            (isinstance(t.lr_schedule, WarmupStableDecayLR), "a wsd schedule (train.py decays by cosine only)"),
            (t.eps != 1e-8, f"AdamW eps {t.eps:g} (train.py keeps PyTorch's 1e-08)"),
        ]
        odd_ff = [s.index for s in stages if s.d_ff != 4 * s.d_model]
        found.append((bool(odd_ff), f"d_ff other than 4 x d_model in stages {odd_ff} (nanoGPT's MLP is 4 x n_embd)"))
        constant = isinstance(t.lr_schedule, ConstantLR) and t.lr_schedule.warmup_steps == 0
        found.append((t.lr_reset_per_stage and len(stages) > 1 and not constant,
                      "an LR schedule restarted every stage (train.py's follows the global iteration)"))
        return [text for bad, text in found if bad]

    def files(self, spec: ScheduleSpec, stages: list[StagePlan]) -> dict[str, str]:
        m, t = spec.model, spec.training
        lr = _nanogpt_lr(t.lr_schedule, stages[-1].end_step)
        out = {}
        for s in stages:
            values = {
                "out_dir": f"out-{_slug(spec.name)}", "init_from": "scratch" if s.index == 0 else "resume",
                "always_save_checkpoint": True, "eval_interval": _eval_interval(s.end_step),
                "n_layer": s.layers, "n_head": s.n_heads, "n_embd": s.d_model, "block_size": m.seq_len,
                "vocab_size": m.vocab_size, "bias": m.bias, "dropout": 0.0,
                "batch_size": t.micro_batch_size, "gradient_accumulation_steps": t.batch_size // t.micro_batch_size,
                "max_iters": s.end_step, **lr,
                "weight_decay": t.weight_decay, "beta1": t.beta1, "beta2": t.beta2, "grad_clip": t.grad_clip or 0.0,
                "dtype": DTYPES[t.precision],
            }
            header = [f"costsim export: {spec.name or 'plan'}, {s.label} of {len(stages)}, for nanoGPT's train.py",
                      f"{s.layers} layers, d_model {s.d_model}, {s.n_heads} heads; iterations {s.first_step} to "
                      f"{s.end_step - 1} ({s.steps:,} steps, {s.tokens:,} tokens)",
                      "run as README.txt says (growth between stages is not train.py's)"]
            out[self._file(s.index)] = _python_config(values, header)
        return out

    @staticmethod
    def _file(index: int) -> str:
        return f"stage_{index:02d}.py"

    def command(self, spec: ScheduleSpec, stage: StagePlan) -> str:
        n = spec.hardware.n_gpus
        launch = "python" if n == 1 else f"torchrun --standalone --nproc_per_node={n}"
        return f'{launch} train.py "$EXPORT/{self._file(stage.index)}"'

    def growth_target(self, spec: ScheduleSpec, stage: StagePlan) -> str:
        checkpoint = f"out-{_slug(spec.name)}/ckpt.pt"
        if stage.grows:
            return f"on {checkpoint} (rewrite 'model', 'model_args' and 'optimizer': train.py resumes all three)"
        return (f"in train.py, which has no freezing (patch it), with {checkpoint}'s 'optimizer' matching the "
                "parameters that train")

    def notes(self, spec: ScheduleSpec, stages: list[StagePlan]) -> list[str]:
        t = spec.training
        notes = ["Set dataset in each stage file (train.py's default is openwebtext); the vocabulary comes from "
                 f"data/<dataset>/meta.pkl, else 50304 (this plan's: {spec.model.vocab_size})."]
        if t.recompute == "full":
            notes.append("train.py has no activation recompute, which the plan needs to fit micro-batches of "
                         f"{t.micro_batch_size}: if a stage runs out of memory, lower batch_size and raise "
                         "gradient_accumulation_steps by the same factor (tokens per step stay).")
        if t.parallelism != "ddp":
            notes.append(f"train.py is plain DDP; the plan shards with {t.parallelism} to fit memory: lower "
                         "batch_size as above if a stage runs out of memory.")
        if t.lr_schedule.warmup_steps:
            notes.append("train.py warms up as lr x (it+1)/(warmup_iters+1), costsim as lr x (step+1)/warmup_steps: "
                         "the peak comes one iteration later.")
        if t.seed != 1337:
            notes.append(f"train.py seeds 1337 + rank, not the plan's {t.seed}.")
        if spec.hardware.n_gpus > 8:
            notes.append("More than 8 GPUs: add torchrun's --nnodes/--node_rank/--master_addr for your cluster.")
        notes.append("At max_iters train.py saves ckpt.pt and then runs one more update that it does not save: the "
                     "next stage resumes from exactly the planned step.")
        if any(_eval_interval(s.end_step) == s.end_step > NANOGPT_EVAL_INTERVAL for s in stages):
            notes.append("Stages whose end has no divisor near train.py's eval_interval evaluate (and checkpoint) "
                         "only at their end.")
        return notes

    def read(self, directory: Path, plan: dict) -> dict:
        configs = [(directory / self._file(i), _read_python_config(directory / self._file(i)))
                   for i in range(len(plan.get("stages", [])))]
        where, last = configs[-1]  # run-wide settings: every stage file repeats them
        micro = need(last, "batch_size", int, where)
        batch = micro * need(last, "gradient_accumulation_steps", int, where)
        seq_len = need(last, "block_size", int, where)
        dtype = need(last, "dtype", str, where)
        precision = {v: k for k, v in DTYPES.items()}.get(dtype)
        if precision is None:
            raise ExportError(f"{where}: dtype {dtype!r} is not one costsim plans ({', '.join(DTYPES.values())})")
        stages, done = [], 0
        for path, values in configs:
            end = need(values, "max_iters", int, path)
            if end <= done:
                raise ExportError(f"{path}: max_iters {end} does not pass the previous stage's {done}")
            d_model = need(values, "n_embd", int, path)
            stages.append({"layers": need(values, "n_layer", int, path), "d_model": d_model,
                           "n_heads": need(values, "n_head", int, path), "d_ff": 4 * d_model,
                           "tokens": (end - done) * batch * seq_len})
            done = end
        grad_clip = need(last, "grad_clip", (int, float), where)
        return {
            "model": {"d_model": stages[-1]["d_model"], "n_heads": stages[-1]["n_heads"], "d_ff": stages[-1]["d_ff"],
                      "vocab_size": need(last, "vocab_size", int, where), "seq_len": seq_len,
                      "bias": need(last, "bias", bool, where), "tied_embeddings": True, "mlp": "gelu",
                      "norm": "layernorm", "positions": "learned", "qkv_bias": False},
            "training": {"micro_batch_size": micro, "batch_size": batch, "precision": precision, "eps": 1e-8,
                         "lr_schedule": _nanogpt_schedule(last, where),
                         "weight_decay": need(last, "weight_decay", float, where),
                         "beta1": need(last, "beta1", float, where), "beta2": need(last, "beta2", float, where),
                         "grad_clip": float(grad_clip) if grad_clip else None},
            "stages": stages,
        }
