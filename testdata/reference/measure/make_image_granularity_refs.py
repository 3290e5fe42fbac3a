"""Reference values for ipscope's image-level Granularity (the Image table's
`Granularity_<n>_<channel>`; crates/ipscope-core/tests/algorithms/measure_granularity.rs).

Peer: cp-measure 0.3.0's `get_granularity` (CellProfiler's MeasureGranularity as a library) with
CellProfiler's defaults (subsampling 0.25, background subsampling 0.25, element radius 10, 16
steps). cp-measure returns only the per-object spectrum; the image spectrum is CellProfiler's
own formula (cellprofiler/modules/measuregranularity.py, `run`, no image mask):

    startmean = mean(pixels); currentmean = startmean; startmean = max(startmean, eps)
    for i in 1..=16:
        prevmean = currentmean
        ero = erosion(ero, disk(1)); rec = reconstruction(ero, pixels, disk(1))
        currentmean = mean(rec)
        Granularity_i = (prevmean - currentmean) * 100 / startmean

applied to the arrays cp-measure itself computes: `pixels` (the subsampled, background-corrected
image) and every `rec` are captured from cp-measure's calls of
`skimage.morphology.reconstruction` (the mask argument and the result), so the subsampling,
background estimate and reconstructions are cp-measure's; only the three lines above are
transcribed. The script checks that the captured masks are one array (cp-measure's `pixels`).

Inputs are the real images that make_measure_refs.py uses (from $IPSCOPE_DATA, default
../shared/data); nothing from them is copied, only relative paths and the values
(12 significant digits).

    cd testdata/reference/measure && ../../../.venv/bin/python make_image_granularity_refs.py
"""

import json
import sys

import numpy as np
import skimage.morphology
import cp_measure
from cp_measure.core.measuregranularity import get_granularity

from make_measure_refs import DATA, HERE, inputs, read

_reconstruction = skimage.morphology.reconstruction
_calls = []


def _capture(seed, mask, *args, **kwargs):
    rec = _reconstruction(seed, mask, *args, **kwargs)
    _calls.append((mask, rec))
    return rec


def g(x):
    x = float(x)
    return None if not np.isfinite(x) else float(f"{x:.12g}")


def measure(img_rel, lab_rel):
    raw = read(img_rel)
    labels = read(lab_rel).astype(np.int64)
    pixels = raw.astype(np.float64) / float(np.iinfo(raw.dtype).max)
    present = np.unique(labels[labels > 0])
    contiguous = np.zeros(labels.max() + 1, np.int64)
    contiguous[present] = np.arange(1, len(present) + 1)
    _calls.clear()
    skimage.morphology.reconstruction = _capture
    try:
        get_granularity(contiguous[labels], pixels)
    finally:
        skimage.morphology.reconstruction = _reconstruction
    assert len(_calls) == 16, (img_rel, len(_calls))
    corrected = _calls[0][0]
    assert all(m is corrected or np.array_equal(m, corrected) for m, _ in _calls)
    startmean = float(np.mean(corrected))
    currentmean = startmean
    startmean = max(startmean, np.finfo(float).eps)
    spectrum = []
    for _, rec in _calls:
        prevmean = currentmean
        currentmean = float(np.mean(rec))
        spectrum.append(g((prevmean - currentmean) * 100 / startmean))
    return {"image": img_rel, "subsampled_shape": list(corrected.shape), "granularity": spectrum}


def main():
    if not DATA.is_dir():
        sys.exit(f"data not found: {DATA} (set IPSCOPE_DATA)")
    out = {
        "generator": "testdata/reference/measure/make_image_granularity_refs.py",
        "versions": {
            "numpy": np.__version__,
            "scikit-image": skimage.__version__,
            "cp-measure": getattr(cp_measure, "__version__", "0.3.0"),
        },
        "fields": [measure(i, l) for i, l in inputs()],
    }
    (HERE / "image_granularity.json").write_text(json.dumps(out, indent=1) + "\n")
    print(f"{len(out['fields'])} images -> image_granularity.json")


if __name__ == "__main__":
    main()
