#!/usr/bin/env python3
"""CellProfiler's MeasureObjectSkeleton on ipscope's somata and neurite skeletons.

Input: the JSON the Rust test `skeleton_counts_agree_with_cellprofiler_measureobjectskeleton`
(crates/ipscope-cli/tests/cli/neurite.rs) writes with IPSCOPE_WRITE_CP_INPUT=FILE: for every field
of the demo neuron plate (`ipscope demo --kind neuron`, default parameters) the somata
ipscope finds (label = nucleus label) and its pruned neurite skeleton, as (start, length,
value) runs of nonzero pixels, row-major.

For each field this script runs CellProfiler 4.2.8's own module,
`cellprofiler.modules.measureobjectskeleton.MeasureObjectSkeleton.run`, in a CellProfiler
workspace (seed objects "Somata", skeleton image "Neurites", module defaults: fill holes up
to 10 px, no branchpoint image, no graph files), and records per seed object
ObjectSkeleton_{NumberTrunks, NumberNonTrunkBranches, NumberBranchEnds,
TotalObjectSkeletonLength}_Neurites, with the input runs (so the test can check that it
measured the same objects).

CellProfiler imports, at module load, packages the skeleton measurement never calls (AWS
S3 access, the Java bridge for Bio-Formats, psutil, docutils). When they are not
installed they are replaced by empty modules here; the measurement itself is CellProfiler's
and centrosome's code, unmodified.

Regenerate from the repository root:
    .venv/bin/pip install --no-deps cellprofiler==4.2.8 cellprofiler-core==4.2.8
    .venv/bin/pip install centrosome future h5py
    IPSCOPE_WRITE_CP_INPUT=/tmp/cp_input.json cargo test -p ipscope-cli --test cli \
        neurite::skeleton_counts_agree_with_cellprofiler
    .venv/bin/python testdata/reference/assays/cellprofiler_skeleton_ref.py /tmp/cp_input.json
Writes cellprofiler_skeleton.json next to this script.
"""

import importlib.abc
import importlib.util
import json
from importlib.metadata import version
import os
import sys
import types

import numpy as np

OUT = os.path.dirname(os.path.abspath(__file__))

STUBBED = []

# NumPy 2 removed aliases CellProfiler 4.2.8 (written for NumPy 1.x) still calls; restored
# with their NumPy 1 meaning.
for alias, value in {
    "sctype2char": lambda t: np.dtype(t).char,
    "float_": np.float64,
    "complex_": np.complex128,
    "product": np.prod,
    "cumproduct": np.cumprod,
    "alltrue": np.all,
    "sometrue": np.any,
}.items():
    if alias not in np.__dict__:
        setattr(np, alias, value)


class _Stubs(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Empty modules (and submodules) for packages CellProfiler imports but this never calls."""

    roots = {"boto3", "javabridge", "psutil", "bioformats", "docutils"}

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in self.roots:
            return importlib.util.spec_from_loader(name, self, is_package=True)
        return None

    def create_module(self, spec):
        STUBBED.append(spec.name)
        module = types.ModuleType(spec.name)
        module.__path__ = []
        module.__getattr__ = lambda attr: type(attr, (), {})
        return module

    def exec_module(self, module):
        pass


_Stubs.roots = {r for r in _Stubs.roots if importlib.util.find_spec(r) is None}
sys.meta_path.append(_Stubs())

from cellprofiler.modules.measureobjectskeleton import MeasureObjectSkeleton  # noqa: E402
from cellprofiler_core.image import Image, ImageSetList  # noqa: E402
from cellprofiler_core.measurement import Measurements  # noqa: E402
from cellprofiler_core.object import Objects, ObjectSet  # noqa: E402
from cellprofiler_core.pipeline import Pipeline  # noqa: E402
from cellprofiler_core.preferences import set_headless  # noqa: E402
from cellprofiler_core.workspace import Workspace  # noqa: E402

set_headless()  # as `cellprofiler -c`: no wx, preferences in memory


def image(runs, width, height, dtype):
    a = np.zeros(width * height, dtype)
    for start, length, value in runs:
        a[start : start + length] = value
    return a.reshape(height, width)


def measure(somata, skeleton):
    module = MeasureObjectSkeleton()
    module.set_module_num(1)
    module.seed_objects_name.value = "Somata"
    module.image_name.value = "Neurites"
    module.wants_branchpoint_image.value = False
    module.wants_objskeleton_graph.value = False
    image_set_list = ImageSetList()
    image_set = image_set_list.get_image_set(0)
    image_set.add("Neurites", Image(skeleton))
    object_set = ObjectSet()
    objects = Objects()
    objects.segmented = somata
    object_set.add_objects(objects, "Somata")
    measurements = Measurements()
    pipeline = Pipeline()
    pipeline.add_module(module)
    workspace = Workspace(pipeline, module, image_set, object_set, measurements, image_set_list)
    module.run(workspace)
    names = ["NumberTrunks", "NumberNonTrunkBranches", "NumberBranchEnds", "TotalObjectSkeletonLength"]
    values = {
        n: measurements.get_current_measurement("Somata", f"ObjectSkeleton_{n}_Neurites") for n in names
    }
    out = []
    for i in range(int(somata.max())):
        o = {"label": i + 1}
        for n in names:
            v = values[n][i]
            o[n] = float(v) if n == "TotalObjectSkeletonLength" else int(v)
        out.append(o)
    return out


def main():
    fields = json.load(open(sys.argv[1]))
    result = []
    for f in fields:
        w, h = f["width"], f["height"]
        somata = image(f["somata_runs"], w, h, np.int32)
        skeleton = image(f["skeleton_runs"], w, h, bool)
        result.append({**f, "objects": measure(somata, skeleton)})
    doc = {
        "generator": "testdata/reference/assays/cellprofiler_skeleton_ref.py",
        "cellprofiler": version("cellprofiler"),
        "cellprofiler_core": version("cellprofiler-core"),
        "centrosome": version("centrosome"),
        "numpy": np.__version__,
        "stubbed_modules": sorted(set(STUBBED)),
        "fields": result,
    }
    with open(os.path.join(OUT, "cellprofiler_skeleton.json"), "w") as fh:
        json.dump(doc, fh, separators=(",", ":"))
    print(f"{len(result)} fields, {sum(len(f['objects']) for f in result)} objects")


if __name__ == "__main__":
    main()
