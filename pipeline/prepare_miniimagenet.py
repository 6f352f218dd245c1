"""DVC stage (paper pipeline): MiniImagenet's three split files from the user's images.

The images come from the folder or archive named by params ``data.miniimagenet_images`` (there is
no official download: README "MiniImagenet"); the Ravi & Larochelle split CSVs from the mirrors
(``data.mirrors``, ``$METALEARNING_DATA_MIRRORS``, ``../shared/datasets/miniimagenet``)."""

import argparse
import sys
from pathlib import Path

from metalearning.data.miniimagenet import prepare_miniimagenet, ravi_split_rows
from metalearning.params import stage_params

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--out", type=Path, required=True, help="directory the miniimagenet_<split>.npz files go to")
parser.add_argument("--params", type=Path, default=Path("params.yaml"))
args = parser.parse_args()

params = stage_params(args.params)
source = params["data"].get("miniimagenet_images")
try:
    if source is None:
        raise FileNotFoundError(f"{args.params}: data.miniimagenet_images is not set: name the folder or archive of "
                                "the MiniImagenet images (README: MiniImagenet)")
    rows = ravi_split_rows(params["data"]["mirrors"])
    args.out.mkdir(parents=True, exist_ok=True)
    for split, path in prepare_miniimagenet(source, args.out, rows).items():
        print(f"{split}: {path}")
except (FileNotFoundError, ValueError) as err:
    print(f"{Path(__file__).name}: error: {err}", file=sys.stderr)
    raise SystemExit(1) from None
