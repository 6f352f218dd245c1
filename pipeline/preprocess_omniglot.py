"""DVC stage: the downloaded Omniglot archives → one 28×28 uint8 array file with its checksum."""

import argparse
from pathlib import Path

from metalearning.data.archives import archive
from metalearning.data.omniglot import preprocess_omniglot, variant_archives
from metalearning.params import omniglot_variant, stage_params

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--raw", type=Path, required=True, help="directory of the downloaded archives")
parser.add_argument("--out", type=Path, required=True)
parser.add_argument("--params", type=Path, default=Path("params.yaml"))
args = parser.parse_args()

variant = omniglot_variant(stage_params(args.params), args.params)
preprocess_omniglot([args.raw / archive(name).name for name in variant_archives(variant)], args.out)
