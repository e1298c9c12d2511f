"""Pack Hugging Face weights into parts small enough for the device tool, and unpack them.

The GPU machine this project is sometimes lent has no network and takes at most 64 MiB of
files per call, so encoder weights travel in parts over consecutive calls (copied to /tmp
there: files under the repo that a call does not carry are removed). ``pack`` writes 2-D
float tensors as int8 with one fp32 scale per row (``--int8``; max error half a step) or as
fp16, other float tensors as fp16 and integer tensors unchanged, split into ``--parts``
safetensors files of similar size, with the small config/tokenizer files beside part 0.
``unpack`` rebuilds an fp32 ``model.safetensors`` folder that ``transformers`` loads as usual.

    python bench/device_transport.py pack SRC_DIR OUT_DIR --parts 2 --int8 [--drop PREFIX]
    python bench/device_transport.py unpack OUT_DIR_1 [OUT_DIR_2 ...] --out MODEL_DIR
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

SCALE_SUFFIX = ".__int8_row_scale"


def _quantise_rows(tensor: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    scale = tensor.abs().amax(dim=1, keepdim=True).clamp_min(1e-12) / 127.0
    return torch.round(tensor / scale).clamp(-127, 127).to(torch.int8), scale.float()


def pack(source: Path, out: Path, parts: int, int8: bool, drop: tuple[str, ...] = ()) -> None:
    state = load_file(str(source / "model.safetensors"))
    state = {name: tensor for name, tensor in state.items() if not name.startswith(drop)}
    packed: dict[str, torch.Tensor] = {}
    worst = 0.0
    for name, tensor in state.items():
        if not tensor.is_floating_point():  # e.g. position_ids: copied as they are
            packed[name] = tensor
            continue
        tensor = tensor.float()
        if int8 and tensor.ndim == 2:
            q, scale = _quantise_rows(tensor)
            packed[name], packed[name + SCALE_SUFFIX] = q, scale
            worst = max(worst, float((q.float() * scale - tensor).abs().max()))
        else:
            packed[name] = tensor.half()
            worst = max(worst, float((tensor.half().float() - tensor).abs().max()))
    names = sorted(packed, key=lambda n: -packed[n].numel() * packed[n].element_size())
    buckets: list[dict[str, torch.Tensor]] = [{} for _ in range(parts)]
    sizes = [0] * parts
    for name in names:  # greedy: biggest tensor into the lightest part
        if name.endswith(SCALE_SUFFIX):
            continue
        target = sizes.index(min(sizes))
        for key in (name, name + SCALE_SUFFIX):
            if key in packed:
                buckets[target][key] = packed[key].contiguous()
                sizes[target] += packed[key].numel() * packed[key].element_size()
    for index, bucket in enumerate(buckets):
        folder = out / f"part{index}"
        folder.mkdir(parents=True, exist_ok=True)
        save_file(bucket, str(folder / "weights.safetensors"))
    for extra in source.iterdir():
        if extra.is_file() and extra.name != "model.safetensors" and extra.suffix != ".ini":
            shutil.copy2(extra, out / "part0" / extra.name)
    print(f"packed {len(state)} tensors into {parts} parts {sizes} bytes; max |error| {worst:.2e}")


def unpack(folders: list[Path], out: Path) -> None:
    packed: dict[str, torch.Tensor] = {}
    out.mkdir(parents=True, exist_ok=True)
    for folder in folders:
        packed.update(load_file(str(folder / "weights.safetensors")))
        for extra in folder.iterdir():
            if extra.name != "weights.safetensors":
                shutil.copy2(extra, out / extra.name)
    state = {}
    for name, tensor in packed.items():
        if name.endswith(SCALE_SUFFIX):
            continue
        scale = packed.get(name + SCALE_SUFFIX)
        if scale is not None:
            tensor = tensor.float() * scale
        elif tensor.is_floating_point():
            tensor = tensor.float()
        state[name] = tensor.contiguous()
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    print(f"unpacked {len(state)} tensors into {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pack")
    p.add_argument("source", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--parts", type=int, default=1)
    p.add_argument("--int8", action="store_true")
    p.add_argument(
        "--drop", action="append", default=[], help="Leave out tensors with this name prefix."
    )
    u = sub.add_parser("unpack")
    u.add_argument("folders", type=Path, nargs="+")
    u.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    if args.command == "pack":
        pack(args.source, args.out, args.parts, args.int8, tuple(args.drop))
    else:
        unpack(args.folders, args.out)


if __name__ == "__main__":
    main()
