"""GenDistiller's parameters as a share of DistilHuBERT's, for teachers of every width and depth we ship or accept.

    python -m benchmarks.budget                       # widths 256-1024, 2-24 layers, pre-LN and post-LN teachers

Each teacher geometry gets three target layers spread over its depth (two for a 2-layer teacher); both students are
resolved as the trainer resolves them (`distill.models.resolve.resolve_student`) with a narrowed 128-channel front-end
and with the teacher's CNN copied, and counted on the meta device (no memory). `step_ffn_dims: auto` sizes the early
steps' feed-forward blocks from the budget (at most 0.75·D); the table gives the share with auto, the share without
any blocks, and auto's sizes.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Optional

from benchmarks.common import machine_info, markdown_table, pick_device, write_outputs
from distill.models import GenDistillerConfig, gendistiller_base_config
from distill.models.resolve import PARAMETER_BUDGET, TeacherFacts, resolve_student, share_of_distilhubert

WIDTHS = (256, 384, 512, 768, 1024)
DEPTHS = (2, 3, 4, 6, 12, 24)
FRONT_ENDS = (128, 0)  # narrowed channels; 0: the teacher's CNN copied


def shares(dim: int, num_layers: int, front_end_channels: int, pre_ln: bool) -> tuple[float, float, list[int]]:
    """GenDistiller's share of DistilHuBERT's parameters with step_ffn_dims auto, the same without any step blocks,
    and auto's block sizes, for a teacher of this geometry."""
    geometry = {**gendistiller_base_config().geometry, "dim": dim, "ffn_dim": 4 * dim, "num_heads": max(1, dim // 64),
                "num_layers": num_layers, "layer_norm_first": pre_ln}
    targets = sorted({max(1, round(num_layers * k / 3)) for k in (1, 2, 3)})
    options = dict(geometry=geometry, target_layers=targets, front_end_channels=front_end_channels,
                   cnn_grad_mult=1.0 if front_end_channels else 0.1)
    teacher = TeacherFacts("teacher", dim, num_layers, not pre_ln, 320, geometry)
    ours, bare = GenDistillerConfig(**options), GenDistillerConfig(step_ffn_dims=[], **options)
    sizes = resolve_student(ours, teacher).step_ffn_dims
    return share_of_distilhubert(ours, teacher), share_of_distilhubert(bare, teacher), sizes  # type: ignore[return-value]


def measure() -> list[dict[str, Any]]:
    return [{"dim": dim, "layers": layers, "front_end": channels or "copied", "pre_ln": pre_ln,
             **dict(zip(("share", "share_without_blocks", "step_ffn_dims"), shares(dim, layers, channels, pre_ln)))}
            for pre_ln in (True, False) for channels in FRONT_ENDS for dim in WIDTHS for layers in DEPTHS]


def render(rows: list[dict[str, Any]]) -> str:
    over = [row for row in rows if row["share"] > PARAMETER_BUDGET]
    table = markdown_table(["teacher", "front-end", "width", "layers", "share, auto", "share, no blocks", "auto's sizes"],
                           [["pre-LN" if r["pre_ln"] else "post-LN", r["front_end"], r["dim"], r["layers"],
                             f"{100 * r['share']:.1f}%", f"{100 * r['share_without_blocks']:.1f}%",
                             "/".join(map(str, r["step_ffn_dims"])) or "none"] for r in rows])
    return (f"GenDistiller / DistilHuBERT parameters, budget {100 * PARAMETER_BUDGET:.0f}%: {len(rows) - len(over)} of "
            f"{len(rows)} geometries within it; over it: "
            + (", ".join(f"{'pre' if r['pre_ln'] else 'post'}-LN {r['dim']}x{r['layers']} {r['front_end']}" for r in over)
               or "none") + ".\n\n" + table)


def main(argv: Optional[list[str]] = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/benchmarks/budget"))
    args = parser.parse_args(argv)
    rows = measure()
    setup = {"machine": machine_info(pick_device("cpu")),
             "command": " ".join(["python -m benchmarks.budget"] + (argv if argv is not None else sys.argv[1:]))}
    markdown = render(rows)
    write_outputs(args.out, "budget", {"setup": setup, "rows": rows}, markdown)
    print(markdown)
    return rows


if __name__ == "__main__":
    main()
