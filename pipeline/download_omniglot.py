"""DVC stage: fetch and MD5-verify the Omniglot archives of the active profile's variant."""

import argparse
from pathlib import Path

from metalearning.data.omniglot import download_omniglot
from metalearning.params import omniglot_variant, stage_params

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--out", type=Path, required=True, help="directory the archives are written to")
parser.add_argument("--params", type=Path, default=Path("params.yaml"))
args = parser.parse_args()

params = stage_params(args.params)
download_omniglot(omniglot_variant(params, args.params), args.out, mirrors=params["data"]["mirrors"])
