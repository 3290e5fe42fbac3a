#!/usr/bin/env python3
"""CellProfiler's ImageQuality_PowerLogLogSlope and _FocusScore on generated images and ExampleHuman.

For each image this runs CellProfiler 4.2.8's own
`cellprofiler.modules.measureimagequality.MeasureImageQuality.calculate_power_spectrum`
(which calls centrosome's `radial_power_spectrum.rps`) and `calculate_focus_scores` (module
defaults: one scale, 20) in a CellProfiler workspace, on the image scaled to 0..1 as
CellProfiler loads it (uint16 / 65535, uint8 / 255), and records
`ImageQuality_PowerLogLogSlope_<image>` and `ImageQuality_FocusScore_<image>`.

Generated images (NumPy's PCG64, seed 2026, stored in the JSON as uint16): uniform noise,
blurred noise, synthetic nuclei with shot noise at odd and uneven sizes, the same nuclei
blurred, and the degenerate cases CellProfiler answers with 0 (a constant image, an image
under 24 px on a side). Real images: the three channels of CellProfiler's ExampleHuman field
(`cp_examplehuman/*.tif` under `$IPSCOPE_DATA`; the JSON holds their names, not their pixels).

Shims for NumPy 2 (CellProfiler 4.2.8 was written for NumPy 1): `np.NaN` is restored;
centrosome's `rps` is handed its image as an ndarray subclass that still has the `ptp()`
method NumPy 2 removed (the value is NumPy's `np.ptp`); and `calculate_power_spectrum`
stores the measurement, then fails on `float()` of the 1-element slope array while
formatting its display table, which this script catches after the value is stored. The
stand-ins for packages CellProfiler imports but never calls here come from
`cellprofiler_skeleton_ref.py`.

Regenerate from the repository root (see README.md in this directory for the install):
    IPSCOPE_DATA=../shared/data .venv/bin/python testdata/reference/assays/cellprofiler_image_quality_ref.py
Writes cellprofiler_image_quality.json next to this script.
"""

import base64
import glob
import json
import os
from importlib.metadata import version

import numpy as np

np.NaN = np.nan  # removed in NumPy 2; CellProfiler 4.2.8's modules still name it

import cellprofiler_skeleton_ref as stubs  # noqa: E402  (empty stand-ins, headless mode)
import centrosome.radial_power_spectrum as crps  # noqa: E402
import scipy.ndimage as ndi  # noqa: E402
import tifffile  # noqa: E402
from cellprofiler.modules.measureimagequality import O_SELECT, MeasureImageQuality  # noqa: E402
from cellprofiler_core.image import Image, ImageSetList  # noqa: E402
from cellprofiler_core.measurement import Measurements  # noqa: E402
from cellprofiler_core.object import ObjectSet  # noqa: E402
from cellprofiler_core.pipeline import Pipeline  # noqa: E402
from cellprofiler_core.workspace import Workspace  # noqa: E402

OUT = os.path.dirname(os.path.abspath(__file__))


class _WithPtp(np.ndarray):
    """An ndarray that still has NumPy 1's `ptp()` method (centrosome calls it)."""

    def ptp(self):
        return np.ptp(np.asarray(self))


_rps = crps.rps
crps.rps = lambda img: _rps(np.asarray(img).view(_WithPtp))


def cellprofiler_quality(pixels):
    """CellProfiler's PowerLogLogSlope and FocusScore of one grayscale image (floats, 0..1)."""
    module = MeasureImageQuality()
    module.set_module_num(1)
    module.images_choice.value = O_SELECT
    group = module.image_groups[0]
    group.image_names.value = "DNA"
    image_set_list = ImageSetList()
    image_set = image_set_list.get_image_set(0)
    image_set.add("DNA", Image(pixels))
    measurements = Measurements()
    pipeline = Pipeline()
    pipeline.add_module(module)
    workspace = Workspace(pipeline, module, image_set, ObjectSet(), measurements, image_set_list)
    try:
        module.calculate_power_spectrum(group, workspace)
    except TypeError as e:
        # NumPy 2: float() of the (1,)-shaped slope, in the display table built after the
        # measurement is stored.
        if "0-dimensional" not in str(e):
            raise
    module.calculate_focus_scores(group, workspace)

    def value(name):
        v = measurements.get_current_measurement("Image", f"ImageQuality_{name}_DNA")
        return float(np.asarray(v).reshape(-1)[0])

    return {"PowerLogLogSlope": value("PowerLogLogSlope"), "FocusScore": value("FocusScore")}


def nuclei(rng, w, h, count, blur):
    """Bright elliptical nuclei on a dim background with Poisson noise, as uint16."""
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.full((h, w), 300.0)
    for _ in range(count):
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        a, b = rng.uniform(3, 7, 2)
        t = rng.uniform(0, np.pi)
        dy, dx = yy - cy, xx - cx
        u = (dx * np.cos(t) + dy * np.sin(t)) / a
        v = (-dx * np.sin(t) + dy * np.cos(t)) / b
        img += rng.uniform(800, 2500) * np.clip(1 - (u * u + v * v), 0, None)
    img = ndi.gaussian_filter(img, 1.0)
    if blur:
        img = ndi.gaussian_filter(img, blur)
    return np.clip(rng.poisson(img), 0, 65535).astype(np.uint16)


def generated():
    rng = np.random.default_rng(2026)
    noise = rng.integers(0, 65536, (64, 64), dtype=np.uint16)
    wide = ndi.gaussian_filter(rng.uniform(0, 40000, (80, 96)), 2.0).astype(np.uint16)
    state = rng.bit_generator.state
    sharp = nuclei(rng, 130, 97, 40, 0)
    rng.bit_generator.state = state
    blurred = nuclei(rng, 130, 97, 40, 2.5)
    tall = nuclei(rng, 41, 200, 12, 0)
    return [
        ("uniform noise 64x64", noise),
        ("blurred noise 96x80", wide),
        ("nuclei 130x97", sharp),
        ("nuclei 130x97 blurred", blurred),
        ("nuclei 41x200", tall),
        ("constant 48x48", np.full((48, 48), 1234, np.uint16)),
        ("small 23x100", rng.integers(0, 65536, (100, 23), dtype=np.uint16)),
    ]


def main():
    images = []
    for name, img in generated():
        h, w = img.shape
        images.append(
            {
                "name": name,
                "width": w,
                "height": h,
                "dtype": "u16le-b64",
                "data": base64.b64encode(img.astype("<u2").tobytes()).decode(),
                **cellprofiler_quality(img / 65535.0),
            }
        )
    data = os.environ.get("IPSCOPE_DATA", os.path.join(OUT, "..", "..", "..", "..", "shared", "data"))
    files = sorted(glob.glob(os.path.join(data, "cp_examplehuman", "*.tif")))
    if not files:
        raise SystemExit(f"no cp_examplehuman/*.tif under {data} (set IPSCOPE_DATA)")
    real = []
    for f in files:
        img = tifffile.imread(f)
        scale = float(np.iinfo(img.dtype).max)
        real.append(
            {
                "image": os.path.join("cp_examplehuman", os.path.basename(f)),
                **cellprofiler_quality(img / scale),
            }
        )
    doc = {
        "generator": "testdata/reference/assays/cellprofiler_image_quality_ref.py",
        "cellprofiler": version("cellprofiler"),
        "centrosome": version("centrosome"),
        "numpy": np.__version__,
        "scipy": version("scipy"),
        "stubbed_modules": sorted(set(stubs.STUBBED)),
        "generated": images,
        "examplehuman": real,
    }
    with open(os.path.join(OUT, "cellprofiler_image_quality.json"), "w") as fh:
        json.dump(doc, fh, separators=(",", ":"))
    for e in images + real:
        print(f"{e.get('name', e.get('image'))}: slope {e['PowerLogLogSlope']:.6f}, focus {e['FocusScore']:.6g}")


if __name__ == "__main__":
    main()
