#!/usr/bin/env bash
# Installs CellProfiler 4.2.8 (headless: no wxPython, no MySQL export) into a virtual
# environment, for `benches/peer/run.sh --cellprofiler`:
#
#   bash benches/peer/install_cellprofiler.sh [VENV]      # default .venv-cellprofiler
#   CELLPROFILER=.venv-cellprofiler/bin/cellprofiler \
#     JAVA_HOME=/usr/lib/jvm/java-17-openjdk-amd64 bash benches/peer/run.sh --cellprofiler
#
# CellProfiler 4.2.8 pins Python 3.8/3.9-era packages (scikit-image 0.18, scipy 1.9,
# python-javabridge 4.0.3) that have no wheels for newer Pythons. On Python 3.11 this
# installs CellProfiler and CellProfiler-core without their pins and the nearest versions
# that build there: numpy < 1.25, scipy 1.11, scikit-image 0.20, scikit-learn 1.3,
# python-javabridge 4.0.5 (4.0.3 does not compile on 3.11), built against that numpy.
# Headless runs (`cellprofiler -c -r`) need neither wxPython (GUI) nor mysqlclient
# (ExportToDatabase). Reading images goes through Bio-Formats, so a JDK is required
# (Debian: `apt-get install openjdk-17-jdk-headless`); JAVA_HOME is found from `javac`.
# Checked with Python 3.11.7 and OpenJDK 17: the pipeline of make_cppipe.py runs and its
# counts are within 1 % of the scikit-image recipe's on the bench plate.
set -euo pipefail
venv=${1:-.venv-cellprofiler}
py=${PYTHON:-python3}
if ! command -v javac > /dev/null; then
  echo "install_cellprofiler.sh: no JDK (javac) found; install one, e.g. openjdk-17-jdk-headless" >&2
  exit 1
fi
export JAVA_HOME=${JAVA_HOME:-$(dirname "$(dirname "$(readlink -f "$(command -v javac)")")")}
"$py" -m venv "$venv"
pip=("$venv/bin/pip" install --quiet)
"${pip[@]}" --no-deps cellprofiler==4.2.8.1 cellprofiler-core==4.2.8.1
"${pip[@]}" "numpy<1.25" "cython<3" setuptools wheel
"${pip[@]}" "scipy>=1.10,<1.12" "scikit-image>=0.19,<0.21" "scikit-learn>=1.2,<1.4" \
  "matplotlib<3.8" "h5py>=3.8,<3.10" "imageio<2.32" "tifffile<2022.4.22" "inflect<7" \
  joblib boto3 psutil Jinja2 Pillow requests six sentry-sdk docutils pyzmq mahotas \
  future deprecation
# Built against the numpy above (no build isolation, which would build with numpy 2).
"${pip[@]}" --no-build-isolation python-javabridge==4.0.5
"${pip[@]}" --no-deps --no-build-isolation centrosome==1.2.3 prokaryote==2.4.4 \
  python-bioformats==4.0.7
"$venv/bin/cellprofiler" --version > /dev/null 2>&1 || "$venv/bin/python" -c \
  "import cellprofiler.modules.identifyprimaryobjects"
echo "CellProfiler installed in $venv (JAVA_HOME=$JAVA_HOME)"
