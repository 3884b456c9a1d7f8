"""Omniglot as MACAW's Fig 6 trains on it: every character's drawings resized to 28×28, with the split
(paper_repro.omniglot), into one .npz; from the user's data under resources/omniglot, or at the smoke scale
from a generated stand-in in the same layout (params.fixture: never the real data)."""

import logging
import tempfile

import numpy as np

from paper_repro import io, omniglot

snakemake = globals()["snakemake"]
logging.basicConfig(filename=snakemake.log[0], level=logging.INFO, format="%(asctime)s %(message)s")
p = snakemake.params
if p.fixture:  # generated, read and deleted: no result but the .npz
    with tempfile.TemporaryDirectory() as stand_in:
        omniglot.write_fixture(stand_in, **p.fixture)
        images, names = omniglot.load(stand_in)
    source = f"a generated stand-in {p.fixture}"
else:
    images, names = omniglot.load(p.root)
    source = p.root
split = omniglot.split_characters(len(names), p.split_seed)
logging.info("%d characters x %d drawings from %s; split %s", len(names), images.shape[1], source,
             {k: len(v) for k, v in split.items()})
with io.atomic_path(snakemake.output.data) as tmp:
    with open(tmp, "wb") as f:
        np.savez(f, images=images, names=np.array(names), **{f"split_{k}": v for k, v in split.items()})
io.write_job_provenance(snakemake, {"root": p.root, "split_seed": p.split_seed, "fixture": p.fixture},
                        seeds={"split": p.split_seed}, device="cpu")
