"""How a group of runs is executed: numerics, CUDA graphs, TF32, flush-to-zero, compilation.

None of it changes what a run is (its RunConfig, its run id); the result record states it under
environment.execution. Kept free of torch so that the sweep driver can carry it to its workers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

NUMERICS = ("exact", "fast")


@dataclass(frozen=True)
class ExecutionOptions:
    """numerics       "exact" (default: a single run is bit-identical to the reference loop) or
                   "fast" (fused head and optimizer, compiled on the CPU; within float rounding
                   of exact).
    cuda_graphs    on a GPU, replay the step as a CUDA graph (exact: forward and backward;
                   fast: the whole step, optimizer included).
    allow_tf32     let float32 matmuls on Ampere+ GPUs use TF32 (10-bit mantissa): faster, and
                   no longer the float32 arithmetic the results are stated in. Off by default.
    flush_denormal flush float32 denormals to zero on the CPU (benchmark.training.denormals).
    compile_cpu    fast numerics on the CPU: torch.compile the forward pass and the optimizer
                   (needs a C++ compiler; falls back to eager with a warning).
    """

    numerics: str = "exact"
    cuda_graphs: bool = True
    allow_tf32: bool = False
    flush_denormal: bool = True
    compile_cpu: bool = True

    def __post_init__(self) -> None:
        if self.numerics not in NUMERICS:
            raise ValueError(f"numerics must be one of {NUMERICS}, got {self.numerics!r}")

    def describe(self, device_type: str, group_size: int) -> dict[str, Any]:
        """What the result record states about how the run was executed on that device type."""
        on_gpu = device_type == "cuda"
        return {"numerics": self.numerics, "group_size": group_size,
                "compiled": self.numerics == "fast" and self.compile_cpu and not on_gpu,
                "cuda_graphs": self.cuda_graphs and on_gpu,
                "tf32": self.allow_tf32 and on_gpu,
                "flush_denormal": self.flush_denormal and not on_gpu}


def execution_from_args(args: Any) -> ExecutionOptions:
    """The options of benchmark.cli.add_execution_flags."""
    return ExecutionOptions(numerics=args.numerics, allow_tf32=args.tf32,
                            cuda_graphs=not args.no_cuda_graphs, compile_cpu=not args.no_compile)


def numerics_segments(previous: list[dict[str, Any]] | None, step: int, numerics: str
                      ) -> list[dict[str, Any]]:
    """Which numerics trained which steps of a run: [{"from_step", "numerics"}, ...], extended
    when a resumed run continues with other numerics than it was checkpointed with. previous
    None: a fresh run, or a checkpoint older than this record ("unrecorded" up to `step`)."""
    if previous is None:
        previous = [{"from_step": 0, "numerics": "unrecorded"}] if step > 0 else []
    segments = [dict(s) for s in previous]
    if not segments or segments[-1]["numerics"] != numerics:
        segments.append({"from_step": step, "numerics": numerics})
    return segments


def numerics_of(segments: list[dict[str, Any]]) -> str:
    """One word for the record: the numerics of every segment, or "mixed"."""
    kinds = {s["numerics"] for s in segments}
    return kinds.pop() if len(kinds) == 1 else "mixed"
