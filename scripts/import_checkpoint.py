"""Import a released MoCo checkpoint (.pth.tar) into amortinv's format (docs/PAPER.md).

    python scripts/import_checkpoint.py hyper_resnet50_imagenet100-moco_2_checkpoint_0300.pth.tar \\
        --out checkpoints/paper-hyper-resnet50
    python scripts/import_checkpoint.py vit-b-300ep.pth.tar --out checkpoints/mocov3-vit-b \\
        --space rgb

The file is read with torch.load(weights_only=True): no code from it runs. Every key and
shape is checked; a file that differs is refused with the first few missing, unexpected and
misshapen keys. Writes OUT/encoder.safetensors (weights + card: the source file, its sha256,
the invariance space) and OUT/card.json, then loads the result back and encodes two images.
Exit status 1 with the reason on stderr when the file cannot be imported.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from amortinv import checkpoint
from amortinv.invariance import SPACES
from amortinv.released import ForeignCheckpointError, import_checkpoint


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("file", help="the released .pth.tar")
    parser.add_argument("--out", help="checkpoint folder to write (default: checkpoints/ + "
                        "the file's name without .pth.tar)")
    parser.add_argument("--space", default="spatial-appearance", choices=sorted(SPACES),
                        help="invariance space (the paper's ResNet: its 2-d spatial-appearance;"
                        " a MoCo-v3 ViT has none yet, pick the one you will pre-train with)")
    parser.add_argument("--image-size", type=int, default=224,
                        help="side inputs are resized to (the paper: 224)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the ViT's new invariance token")
    parser.add_argument("--verify", action=argparse.BooleanOptionalAction, default=True,
                        help="load the result back and encode two images")
    args = parser.parse_args()
    source = Path(args.file)
    out = Path(args.out) if args.out else Path("checkpoints") / source.name.removesuffix(
        ".tar").removesuffix(".pth")
    try:
        path = import_checkpoint(source, out, args.space, args.image_size,
                                 progress=lambda line: print(line, flush=True),
                                 verify=args.verify, seed=args.seed)
    except (ForeignCheckpointError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    (out / "card.json").write_text(json.dumps(checkpoint.read_meta(path), indent=2) + "\n")
    print(f"{path}: {path.stat().st_size / 1e9:.2f} GB, card in {out / 'card.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
