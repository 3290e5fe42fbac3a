"""Writes benches/peer/nuclei.cppipe: the scikit-image recipe's steps as a CellProfiler 4.2
pipeline, for `run.sh --cellprofiler`.

Run it with CellProfiler's own Python (benches/peer/install_cellprofiler.sh makes one):

    JAVA_HOME=... /path/to/cpvenv/bin/python benches/peer/make_cppipe.py

The pipeline is built with CellProfiler's module classes and saved by CellProfiler itself,
so the file is in the format that version reads:

* Images (TIFF files of the input folder) -> NamesAndTypes (every image is `DNA`, grey,
  intensities scaled by the file's bit depth, as CellProfiler does by default);
* IdentifyPrimaryObjects `Nuclei`: global two-class Otsu after a Gaussian of sigma 1
  (threshold smoothing scale 1.3488 = 2 x 0.6744 sigma), holes filled, objects under an
  equivalent diameter of 6 px discarded (CellProfiler takes whole pixels; the recipe's 30 px
  is a diameter of 6.18), border objects kept, clumps divided by shape with maxima at least
  7 px apart (full resolution), as the recipe's `peak_local_max(min_distance=7)`;
* MeasureObjectSizeShape (no Zernike or advanced features) and MeasureObjectIntensity;
* ExportToSpreadsheet: Image.csv and Nuclei.csv in the output folder, no prefix.
"""

import os
import sys

import cellprofiler_core.preferences as preferences

preferences.set_headless()

from cellprofiler_core.modules.groups import Groups  # noqa: E402
from cellprofiler_core.modules.images import Images  # noqa: E402
from cellprofiler_core.modules.metadata import Metadata  # noqa: E402
from cellprofiler_core.modules.namesandtypes import NamesAndTypes  # noqa: E402
from cellprofiler_core.pipeline import Pipeline  # noqa: E402

import cellprofiler.modules.exporttospreadsheet as exporttospreadsheet  # noqa: E402
import cellprofiler.modules.identifyprimaryobjects as identifyprimaryobjects  # noqa: E402
import cellprofiler.modules.measureobjectintensity as measureobjectintensity  # noqa: E402
import cellprofiler.modules.measureobjectsizeshape as measureobjectsizeshape  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def module(cls):
    m = cls()
    m.create_settings()
    return m


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "nuclei.cppipe")
    pipeline = Pipeline()

    images = module(Images)
    images.filter_choice.value = "Custom"
    images.filter.value = 'and (extension does istif)'
    metadata = module(Metadata)
    names = module(NamesAndTypes)
    names.assignment_method.value = "All images"
    names.single_load_as_choice.value = "Grayscale image"
    names.single_image_provider.value = "DNA"
    groups = module(Groups)

    nuclei = module(identifyprimaryobjects.IdentifyPrimaryObjects)
    nuclei.x_name.value = "DNA"
    nuclei.y_name.value = "Nuclei"
    nuclei.size_range.value = (6, 10000)
    nuclei.exclude_size.value = True
    nuclei.exclude_border_objects.value = False
    nuclei.unclump_method.value = "Shape"
    nuclei.watershed_method.value = "Shape"
    nuclei.automatic_smoothing.value = True
    nuclei.automatic_suppression.value = False
    nuclei.maxima_suppression_size.value = 7.0
    nuclei.low_res_maxima.value = False
    nuclei.fill_holes.value = "After both thresholding and declumping"
    nuclei.use_advanced.value = True
    t = nuclei.threshold
    t.threshold_scope.value = "Global"
    t.global_operation.value = "Otsu"
    t.two_class_otsu.value = "Two classes"
    t.threshold_smoothing_scale.value = 1.3488
    t.threshold_correction_factor.value = 1.0
    t.threshold_range.value = (0.0, 1.0)
    t.log_transform.value = False

    shape = module(measureobjectsizeshape.MeasureObjectSizeShape)
    shape.objects_list.value = "Nuclei"
    shape.calculate_zernikes.value = False
    shape.calculate_advanced.value = False

    intensity = module(measureobjectintensity.MeasureObjectIntensity)
    intensity.images_list.value = "DNA"
    intensity.objects_list.value = "Nuclei"

    export = module(exporttospreadsheet.ExportToSpreadsheet)
    export.wants_prefix.value = False
    export.wants_overwrite_without_warning.value = True
    export.wants_everything.value = True

    for n, m in enumerate(
        [images, metadata, names, groups, nuclei, shape, intensity, export], start=1
    ):
        m.set_module_num(n)
        pipeline.add_module(m)
    with open(out, "w") as f:
        pipeline.dump(f)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
